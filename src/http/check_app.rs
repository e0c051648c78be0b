//! `check-app` from the dashboard and the API ([`crate::check_app`]):
//!
//! - `POST /staging/webhooks/check-app` (admin): `{"endpoint", "target"?, "only"?}` runs the
//!   checks against the app, keeps the report as the endpoint's last one, and answers it (200,
//!   whether the checks passed or not: `ok` says). One run per endpoint at a time (409
//!   `check_running`). A `target` must be what a `forward_to` may be (400 `bad_target`).
//! - `GET /staging/webhooks/check-app?endpoint=NAME` (reader or admin): the last report (404
//!   `no_check_report` when there is none); without `endpoint`, every endpoint's (`null` for none).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Deserialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::errors::{json_response, ApiError};
use super::{admin, ok_json, read_body, reader, AppState};
use crate::check_app::{CheckName, Plan, Refused};
use crate::store::CheckReport;

/// The largest request body: a few fields.
const ASK_LIMIT: u64 = 16 * 1024;

/// The endpoints whose run is under way.
#[derive(Default)]
pub struct Running(Mutex<BTreeSet<String>>);

/// Holds an endpoint's place in [`Running`] until dropped, however the run ends.
struct Slot<'a>(&'a Running, String);

impl Running {
    fn take(&self, endpoint: &str) -> Option<Slot<'_>> {
        self.0.lock().insert(endpoint.to_string()).then(|| Slot(self, endpoint.to_string()))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0 .0.lock().remove(&self.1);
    }
}

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let base = warp::path("staging").and(warp::path("webhooks")).and(warp::path("check-app"));
    let run = base.and(warp::path::end()).and(warp::post()).and(admin(state.clone())).and(warp::body::stream()).then(
        |s: Arc<AppState>, body| async move {
            match read_body(body, ASK_LIMIT, None).await {
                Ok(bytes) => run(&s, &bytes).await.unwrap_or_else(ApiError::into_response),
                Err(e) => ApiError::from(e).into_response(),
            }
        },
    );
    let last = base
        .and(warp::path::end())
        .and(warp::get())
        .and(reader(state))
        .and(warp::query::<HashMap<String, String>>())
        .map(|s: Arc<AppState>, q: HashMap<String, String>| {
            last(&s, q.get("endpoint").map(String::as_str)).unwrap_or_else(ApiError::into_response)
        });
    run.or(last).unify()
}

/// The request's fields; unknown ones are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskJson {
    endpoint: String,
    target: Option<String>,
    #[serde(default)]
    only: Vec<String>,
}

async fn run(s: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let ask: AskJson = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_payload(format!("expected {{\"endpoint\", \"target\" (optional), \"only\" (optional)}}: {e}"))
    })?;
    let only = ask
        .only
        .iter()
        .map(|name| {
            CheckName::parse(name).ok_or_else(|| {
                let message = format!("no check `{name}`; known: {}", CheckName::known());
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_check", message)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(target) = &ask.target {
        if let Some(why) = crate::config::validate::target_refusal(&s.config, target) {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_target", why));
        }
    }
    let plan = Plan::new(&s.config, &s.endpoints, &ask.endpoint, ask.target.as_deref(), only).map_err(refused)?;
    let name = plan.endpoint.provider.name().to_string();
    let Some(_slot) = s.check_runs.take(&name) else {
        let message = format!("a check of `{name}` is under way; wait for its report");
        return Err(ApiError::new(StatusCode::CONFLICT, "check_running", message));
    };
    let report = crate::check_app::run(&plan, s.clock.now_s(), s.clock.now_ms()).await.map_err(refused)?;
    let json = serde_json::to_value(&report).map_err(|_| ApiError::internal())?;
    let record = CheckReport { at_ms: report.started_at_ms, json: json.to_string() };
    s.store.record_check_report(&name, record).await.map_err(ApiError::from)?;
    Ok(json_response(StatusCode::OK, &json))
}

fn last(s: &AppState, endpoint: Option<&str>) -> Result<Response, ApiError> {
    let Some(endpoint) = endpoint else { return all(s) };
    let name = s
        .endpoint_by_provider(endpoint)
        .map(|e| e.provider.name().to_string())
        .ok_or_else(|| refused(Refused::UnknownEndpoint { name: endpoint.to_string(), known: known(s) }))?;
    let none =
        || ApiError::new(StatusCode::NOT_FOUND, "no_check_report", format!("`{name}` has no check-app report yet"));
    let report = s.store.check_report(&name).map_err(ApiError::from)?.ok_or_else(none)?;
    let json: serde_json::Value = serde_json::from_str(&report.json)
        .map_err(|e| ApiError::storage_corrupt(format!("the report is not JSON: {e}")))?;
    Ok(ok_json(&json))
}

/// Every endpoint's last report (`null` for one never checked), in one answer that is never a
/// 404: the dashboard's panel reads it, so a page with no check run yet loads without a failure.
fn all(s: &AppState) -> Result<Response, ApiError> {
    let mut reports = serde_json::Map::new();
    for e in s.endpoints.iter() {
        let name = e.provider.name();
        let report = match s.store.check_report(name).map_err(ApiError::from)? {
            Some(r) => serde_json::from_str(&r.json)
                .map_err(|e| ApiError::storage_corrupt(format!("`{name}`'s report is not JSON: {e}")))?,
            None => serde_json::Value::Null,
        };
        reports.insert(name.to_string(), report);
    }
    Ok(ok_json(&serde_json::json!({ "reports": reports })))
}

fn known(s: &AppState) -> String {
    s.endpoints.iter().map(|e| e.provider.name()).collect::<Vec<_>>().join(", ")
}

fn refused(r: Refused) -> ApiError {
    let status = match r {
        Refused::UnknownEndpoint { .. } => StatusCode::NOT_FOUND,
        Refused::NothingToSign(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Refused::NoTarget(_) => StatusCode::CONFLICT,
        Refused::Client(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, r.code(), r.to_string())
}
