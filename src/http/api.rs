//! The read endpoints and the dry-run validator.
//!
//! - `GET  /staging/webhooks/test`: health.
//! - `GET  /staging/webhooks/stats`: counters, O(1) in the number of stored events.
//! - `POST /staging/webhooks/validate`: what a payload (and signature) would make of it, storing
//!   nothing.
//! - `GET  /staging/webhooks/rejections?limit=N`: the newest entries of the rejection log.
//! - `GET  /staging/webhooks/config/validate[?offline=true]`: the configuration report (secrets
//!   redacted), with the forward targets probed unless `offline=true`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use warp::http::{HeaderMap, HeaderName, HeaderValue};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::errors::ApiError;
use super::{admin, ok_json, read_body, reader, AppState};
use crate::providers::Inbound;
use crate::redis::State as RedisState;
use crate::store::Status;

/// Largest body `/validate` takes: a payload plus its headers.
const VALIDATE_LIMIT: u64 = 2 * 1024 * 1024;

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let base = warp::path("staging").and(warp::path("webhooks"));
    let test = base
        .and(warp::path("test"))
        .and(warp::path::end())
        .and(warp::get())
        .and(admin(state.clone()))
        .map(|s: Arc<AppState>| health(&s));
    let stats = base
        .and(warp::path("stats"))
        .and(warp::path::end())
        .and(warp::get())
        .and(reader(state.clone()))
        .map(|s: Arc<AppState>| stats(&s));
    let validate = base
        .and(warp::path("validate"))
        .and(warp::path::end())
        .and(warp::post())
        .and(admin(state.clone()))
        .and(warp::body::stream())
        .then(|s: Arc<AppState>, body| async move {
            match read_body(body, VALIDATE_LIMIT, None).await {
                Ok(bytes) => validate(&s, &bytes).unwrap_or_else(ApiError::into_response),
                Err(e) => ApiError::from(e).into_response(),
            }
        });
    let rejections = base
        .and(warp::path("rejections"))
        .and(warp::path::end())
        .and(warp::get())
        .and(admin(state.clone()))
        .and(warp::query::<BTreeMap<String, String>>().or(warp::any().map(BTreeMap::new)).unify())
        .map(|s: Arc<AppState>, q: BTreeMap<String, String>| {
            rejections(&s, &q).unwrap_or_else(ApiError::into_response)
        });
    let config = base
        .and(warp::path("config"))
        .and(warp::path("validate"))
        .and(warp::path::end())
        .and(warp::get())
        .and(admin(state.clone()))
        .and(warp::query::<BTreeMap<String, String>>().or(warp::any().map(BTreeMap::new)).unify())
        .then(|s: Arc<AppState>, q: BTreeMap<String, String>| async move {
            use crate::config::validate;
            let mut report = validate::validate(&s.config, &s.env, validate::Context::Running);
            // `?offline=true` skips the probe of the forward targets, as `check-config --offline`.
            if q.get("offline").map(String::as_str) != Some("true") {
                report.findings.extend(validate::probe_targets(&s.config).await);
                report.findings.extend(crate::redis::probe(&s.config.redis_settings()).await);
            }
            ok_json(&report.to_json())
        });
    test.or(stats).unify().or(validate).unify().or(rejections).unify().or(config).unify()
}

/// Degraded, with the reason, while the store writer is gone or its last commit failed (a full
/// disk): then ingest answers 503, and the health check must not say otherwise. Degraded too
/// while a shared Redis does not answer (`"redis": "down"`): the instance acts alone or refuses;
/// and while no provider is configured, when every ingest endpoint answers 503. `reason` is
/// for a person, `reason_code` (the first cause, in that order) for a program.
fn health(s: &AppState) -> Response {
    let running = s.store.writer_running();
    let failure = s.store.commit_failure();
    let store_reason = match (&failure, running) {
        (_, false) => Some("the store writer has stopped".to_string()),
        (Some(f), true) => Some(format!("the last store commit failed: {}", f.error)),
        (None, true) => None,
    };
    let writable = store_reason.is_none();
    let redis = s.redis.as_ref().map(|r| r.status());
    let redis_reason = redis.and_then(|r| match r.state {
        RedisState::Up => None,
        RedisState::Down => Some(format!("Redis does not answer: {}", r.on_error.meanwhile())),
        RedisState::Connecting => Some("Redis has not answered yet".to_string()),
    });
    // With no provider's secret set, every ingest endpoint answers 503 provider_not_configured:
    // the store may be fine, but this stagehook takes no webhook, and "ok" would hide it.
    let unconfigured = (!s.endpoints.iter().any(|e| e.configured)).then(|| {
        "no provider configured: every ingest endpoint answers 503 provider_not_configured until a \
         provider's secret is set (see `stagehook check-config`)"
            .to_string()
    });
    let reason_code = if store_reason.is_some() {
        if running {
            Some("store_commit_failed")
        } else {
            Some("store_writer_stopped")
        }
    } else if let Some(r) = redis.filter(|r| r.state != RedisState::Up) {
        Some(if r.state == RedisState::Connecting { "redis_connecting" } else { "redis_unavailable" })
    } else if unconfigured.is_some() {
        Some("no_provider_configured")
    } else {
        None
    };
    let reason = store_reason.or(redis_reason).or(unconfigured);
    let providers: Map<String, Value> = s
        .endpoints
        .iter()
        .map(|e| {
            (
                e.provider.name().to_string(),
                json!({"configured": e.configured, "path": format!("/staging/webhooks/{}", e.path)}),
            )
        })
        .collect();
    ok_json(&json!({
        "instance": s.config.server.instance_id(),
        "status": if reason.is_none() { "ok" } else { "degraded" },
        "reason": reason,
        "reason_code": reason_code,
        "redis": redis.map(|r| r.state.as_str()),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": s.started.elapsed().as_secs(),
        "store": {
            "writable": writable,
            "last_error": failure.as_ref().map(|f| &f.error),
            "last_error_at_ms": failure.as_ref().map(|f| f.at_ms),
        },
        "providers": providers,
    }))
}

fn stats(s: &AppState) -> Response {
    let counters = s.store.stats().counters();
    let mut by_provider: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut by_status: BTreeMap<&str, u64> = Status::ALL.iter().map(|st| (st.as_str(), 0)).collect();
    let (mut total, mut duplicates) = (0u64, 0u64);
    for e in &s.endpoints {
        by_provider.entry(e.provider.name().to_string()).or_default();
    }
    for e in counters.events() {
        total += e.count;
        *by_status.entry(e.status.as_str()).or_default() += e.count;
        let p = by_provider.entry(e.provider.to_string()).or_default();
        let statuses = p.entry("by_status").or_insert_with(|| json!({}));
        statuses[e.status.as_str()] = json!(e.count);
        bump(p, "events", e.count);
    }
    for (provider, n) in counters.duplicates() {
        duplicates += n;
        bump(by_provider.entry(provider.to_string()).or_default(), "duplicates", n);
    }
    for (provider, n) in counters.items() {
        bump(by_provider.entry(provider.to_string()).or_default(), "items_received", n);
    }
    // Part of `processed`, but never delivered: they had no target. Every provider shows it,
    // so that a dashboard's columns add up without guessing a missing key.
    let mut stored_only = 0u64;
    for p in by_provider.values_mut() {
        p.entry("stored_only").or_insert(json!(0));
    }
    for (provider, n) in counters.stored_only() {
        stored_only += n;
        let p = by_provider.entry(provider.to_string()).or_default();
        p.insert("stored_only".into(), json!(n));
    }
    // Only providers that had events backfilled show the key, as with `duplicates`.
    for (provider, n) in counters.backfilled() {
        bump(by_provider.entry(provider.to_string()).or_default(), "backfilled", n);
    }
    // Only endpoints with chaos delivery that did something show the key: actions by name.
    for (provider, actions) in counters.chaos() {
        by_provider.entry(provider.to_string()).or_default().insert("chaos".into(), json!(actions));
    }
    // Duplicates are never stored as events of their own; they show under their status here.
    by_status.insert(Status::Duplicate.as_str(), duplicates);
    let rejections = counters.rejected();
    let latency = counters.latency();
    let throughput = counters.throughput(s.clock.now_ms().div_euclid(60_000));
    let (minutes, mut per_provider) = (throughput.minutes, throughput.providers);
    for e in &s.endpoints {
        per_provider.entry(e.provider.name().to_string()).or_insert_with(|| vec![0; minutes.len()]);
    }
    ok_json(&json!({
        // Which replica answered: each instance counts only what it stored itself.
        "instance": s.config.server.instance_id(),
        "total_events": total,
        "by_status": by_status,
        "by_provider": by_provider,
        "duplicates": duplicates,
        "stored_only": stored_only,
        "backfilled": counters.backfilled_total(),
        "rejections": rejections,
        "rejected_total": rejections.values().sum::<u64>(),
        "processing_ms": {"p50": latency.p50_ms, "p95": latency.p95_ms, "p99": latency.p99_ms, "samples": latency.samples},
        "events_last_minute": s.store.stats().last_minute(s.clock.now_s()),
        "uptime_seconds": s.started.elapsed().as_secs(),
        "throughput": {"minutes": minutes, "providers": per_provider},
        "connections": s.connections.snapshot(),
        "redis": s.redis.as_ref().map(|r| {
            let r = r.status();
            json!({
                "state": r.state.as_str(),
                "on_error": r.on_error.as_str(),
                "limits": r.limits,
                "dedup": r.dedup,
                "duplicates_elsewhere": r.duplicates_elsewhere,
                "in_progress": r.in_progress,
                "errors": r.errors,
            })
        }),
    }))
}

fn bump(map: &mut Map<String, Value>, key: &str, n: u64) {
    let v = map.entry(key).or_insert(json!(0));
    *v = json!(v.as_u64().unwrap_or(0) + n);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateRequest {
    provider: String,
    /// A repeated key is refused, as in a body that arrives: re-encoded, one of the two would
    /// silently go.
    #[serde(deserialize_with = "crate::providers::json::unique_value")]
    payload: Value,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    /// For Twilio: the URL the request was sent to; defaults to this server's own path.
    #[serde(default)]
    url: Option<String>,
}

fn validate(s: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let req: ValidateRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_payload(format!("expected {{\"provider\", \"payload\", \"headers\"?, \"url\"?}}: {e}"))
    })?;
    let endpoint = s
        .endpoint_by_provider(&req.provider)
        .ok_or_else(|| ApiError::invalid_payload(format!("unknown provider `{}`", req.provider)))?;
    let mut headers = HeaderMap::new();
    for (k, v) in req.headers.iter().flatten() {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| ApiError::invalid_payload(format!("bad header name `{k}`")))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| ApiError::invalid_payload(format!("bad value for header `{k}`")))?;
        headers.insert(name, value);
    }
    // The raw body is what gets signed: a string payload is taken byte for byte; an object is
    // re-encoded (compact JSON, or a form for form-based providers), which only verifies if the
    // signer used the same encoding.
    let media_type = endpoint.provider.dry_run_media_type();
    let form = media_type == "application/x-www-form-urlencoded";
    let raw: Vec<u8> = match &req.payload {
        Value::String(text) => text.as_bytes().to_vec(),
        Value::Object(obj) if form && !headers.contains_key("content-type") => {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (k, v) in obj {
                form.append_pair(k, &v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
            }
            form.finish().into_bytes()
        }
        other => other.to_string().into_bytes(),
    };
    if !headers.contains_key("content-type") {
        headers.insert("content-type", HeaderValue::from_static(media_type));
    }
    let url = req.url.clone().unwrap_or_else(|| format!("{}/staging/webhooks/{}", s.base_url(), endpoint.path));
    let inbound = Inbound { headers: &headers, body: &raw, url: &url, now_s: s.clock.now_s() };
    let checks = endpoint.provider.checks(&inbound);
    let structure_ok = checks.iter().all(|c| c.ok);
    let signature = match (&req.headers, endpoint.configured) {
        (None, _) => {
            json!({"checked": false, "message": "no headers given; signature not checked"})
        }
        (Some(_), false) => {
            json!({"checked": false, "message": "provider has no secret configured"})
        }
        (Some(_), true) => match endpoint.provider.verify(&inbound) {
            Ok(()) => json!({"checked": true, "ok": true, "message": "signature valid"}),
            Err(r) => {
                json!({"checked": true, "ok": false, "code": r.code.as_str(), "message": r.message})
            }
        },
    };
    let valid = structure_ok && signature.get("ok").and_then(Value::as_bool).unwrap_or(true);
    Ok(ok_json(&json!({
        "provider": endpoint.provider.name(),
        "valid": valid,
        "structure": {"ok": structure_ok, "checks": checks},
        "signature": signature,
    })))
}

fn rejections(s: &AppState, q: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let limit = match q.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| ApiError::invalid_payload("limit must be a whole number"))?.min(1000),
        None => 100,
    };
    let entries = s.store.recent_rejections(limit)?;
    let items: Vec<Value> = entries
        .iter()
        .map(|(id, r)| match r {
            Ok(r) => json!({
                "id": id.to_string(),
                "at_ms": r.at_ms,
                "provider": r.provider,
                "code": r.code,
                "message": r.message,
                "source_ip": r.source_ip,
                "body_len": r.body_len,
                "body_prefix": String::from_utf8_lossy(&r.body_prefix),
                "headers": s.shown_headers(&r.provider, &r.headers),
                "diagnosis": r.diagnosis.as_ref().map(|(code, detail)| json!({"code": code, "detail": detail})),
                "damage": [],
            }),
            Err(damage) => damaged_rejection(*id, damage),
        })
        .collect();
    Ok(ok_json(&json!({"rejections": items})))
}

/// An entry of the rejection log that does not decode: listed in its place, as the event list
/// lists a damaged event, rather than failing the whole log. Only its id (and so when it was
/// written) is known; `message` says what is wrong.
fn damaged_rejection(id: ulid::Ulid, damage: &crate::store::Damage) -> Value {
    json!({
        "id": id.to_string(),
        "at_ms": id.timestamp_ms(),
        "provider": null,
        "code": null,
        "message": format!("{}: {damage}", crate::store::STORAGE_CORRUPT),
        "source_ip": null,
        "body_len": null,
        "body_prefix": null,
        "headers": [],
        "diagnosis": null,
        "damage": [damage.0],
    })
}
