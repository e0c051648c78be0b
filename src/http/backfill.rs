//! Recovering missed events from the providers' APIs (`backfill/`), all behind the admin token:
//!
//! - `POST /staging/webhooks/backfill`: starts a run (`{"endpoint", "since", "until", "types",
//!   "dry_run", "wait_seconds"}`) and answers its report once it ends (200), or as it stands
//!   after `wait_seconds` (202, `state: "running"`; read it on at the URL in `Location`).
//! - `GET /staging/webhooks/backfill`: each endpoint's API access, the downtime the start found,
//!   and the last runs, newest first.
//! - `GET /staging/webhooks/backfill/<run>`: one run's report.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::errors::{json_response, ApiError};
use super::{admin, ok_json, read_body, AppState};
use crate::backfill::run::Trigger;
use crate::backfill::runs::{Ask, Refusal};
use crate::providers::api::NoApi;

/// The largest request body: a few fields.
const ASK_LIMIT: u64 = 64 * 1024;
/// How long a request waits for its run by default, and at most.
const WAIT_DEFAULT_S: u64 = 30;
const WAIT_MAX_S: u64 = 300;
/// Type globs one run takes at most.
const MAX_TYPES: usize = 100;

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let base = warp::path("staging").and(warp::path("webhooks")).and(warp::path("backfill"));
    let start = base.and(warp::path::end()).and(warp::post()).and(admin(state.clone())).and(warp::body::stream()).then(
        |s: Arc<AppState>, body| async move {
            match read_body(body, ASK_LIMIT, None).await {
                Ok(bytes) => start(&s, &bytes).await.unwrap_or_else(ApiError::into_response),
                Err(e) => ApiError::from(e).into_response(),
            }
        },
    );
    let list = base.and(warp::path::end()).and(warp::get()).and(admin(state.clone())).map(|s: Arc<AppState>| list(&s));
    let one = base.and(warp::path::param::<String>()).and(warp::path::end()).and(warp::get()).and(admin(state)).map(
        |id: String, s: Arc<AppState>| {
            let report = id.parse().ok().and_then(|id| s.backfills.report(id));
            match report {
                Some(r) => ok_json(&serde_json::to_value(r).unwrap_or_default()),
                None => ApiError::not_found(format!("no backfill run `{id}` (the last 50 are kept)")).into_response(),
            }
        },
    );
    start.or(list).unify().or(one).unify()
}

/// The request's fields. Unknown fields are refused, so a misspelt `dry_run` never starts a
/// real run.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AskJson {
    endpoint: String,
    #[serde(default)]
    since: Value,
    #[serde(default)]
    until: Value,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    dry_run: bool,
    wait_seconds: Option<u64>,
}

async fn start(s: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let ask: AskJson = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_payload(format!(
            "expected {{\"endpoint\", \"since\", \"until\", \"types\", \"dry_run\", \"wait_seconds\"}}: {e}"
        ))
    })?;
    if ask.types.len() > MAX_TYPES || ask.types.iter().any(|t| t.is_empty() || t.len() > 200) {
        return Err(bad_window(format!("`types` takes at most {MAX_TYPES} non-empty globs of at most 200 characters")));
    }
    for t in &ask.types {
        crate::filter::type_pattern(t).map_err(|e| bad_window(format!("types: {e}")))?;
    }
    let now_ms = s.clock.now_ms();
    let since_ms = when("since", &ask.since, now_ms)?;
    let until_ms = when("until", &ask.until, now_ms)?;
    let wait = Duration::from_secs(ask.wait_seconds.unwrap_or(WAIT_DEFAULT_S).min(WAIT_MAX_S));
    let ask = Ask { endpoint: ask.endpoint, since_ms, until_ms, types: ask.types, dry_run: ask.dry_run };
    let id = s.backfills.start(&s.endpoints, &s.store, &s.clock, ask, Trigger::Manual).map_err(refused)?;
    let report = s.backfills.wait(id, wait).await.ok_or_else(|| ApiError::not_found("the run's report is gone"))?;
    let running = report.state == crate::backfill::run::State::Running;
    let body = serde_json::to_value(&report).unwrap_or_default();
    let mut res = json_response(if running { StatusCode::ACCEPTED } else { StatusCode::OK }, &body);
    if running {
        if let Ok(v) = format!("/staging/webhooks/backfill/{id}").parse() {
            res.headers_mut().insert("location", v);
        }
    }
    Ok(res)
}

/// A time field: a duration ago (`"2h"`), a time (RFC 3339, or Unix milliseconds), or absent.
fn when(field: &str, v: &Value, now_ms: i64) -> Result<Option<i64>, ApiError> {
    if let Some(d) = v.as_str().and_then(|t| humantime::parse_duration(t).ok()) {
        return Ok(Some(now_ms - d.as_millis() as i64));
    }
    crate::filter::time(field, v).map_err(|e| bad_window(format!("{e} (or a duration ago, `2h`)")))
}

fn bad_window(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_window", message)
}

fn refused(r: Refusal) -> ApiError {
    let status = match r {
        Refusal::UnknownEndpoint(_) => StatusCode::NOT_FOUND,
        Refusal::NoApi(..) => StatusCode::UNPROCESSABLE_ENTITY,
        Refusal::BadWindow(_) => StatusCode::BAD_REQUEST,
        Refusal::Running { .. } => StatusCode::CONFLICT,
    };
    ApiError::new(status, r.code(), r.to_string())
}

fn list(s: &AppState) -> Response {
    let endpoints: Vec<Value> = s
        .endpoints
        .iter()
        .map(|e| {
            let (api, message) = match e.provider.api_access() {
                Ok(_) => ("ready", None),
                Err(no @ NoApi::NotOffered) => ("not_offered", Some(no.to_string())),
                Err(no @ NoApi::NotConfigured(_)) => ("not_configured", Some(no.to_string())),
            };
            json!({"endpoint": e.provider.name(), "api": api, "message": message})
        })
        .collect();
    ok_json(&json!({
        "endpoints": endpoints,
        "downtime": s.backfills.downtime(),
        "runs": s.backfills.recent(),
    }))
}
