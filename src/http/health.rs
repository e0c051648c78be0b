//! The probes of load balancers, systemd and Kubernetes:
//!
//! - `GET /healthz`: alive. The process answers, so it need not be restarted.
//! - `GET /readyz`: ready. The store takes writes (its writer runs and its last commit did not
//!   fail), shutdown has not begun, and, under `redis.on_error = "closed"`, Redis answers;
//!   otherwise `503` with a stable `reason`, so traffic goes elsewhere while a 2xx could not
//!   mean "durably stored" (or ingest refuses everything).
//!
//! Both answer any `Host` and need no token, unlike every other read endpoint (`origin.rs`,
//! `auth.rs`): a probe names the address it was given (a pod IP, a node name), never one of
//! ours, and carries no credential. That is safe because they expose nothing: no data, no
//! configuration, no error text (the detail is at the token-guarded `/staging/webhooks/test`),
//! only a fixed verdict that a DNS-rebinding page could not use.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::errors::json_response;
use super::{with_state, AppState};
use crate::config::OnError;

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let healthz = warp::path("healthz").and(warp::path::end()).and(warp::get()).map(alive);
    let readyz = warp::path("readyz")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state(state))
        .map(|s: Arc<AppState>| ready(&s));
    healthz.or(readyz).unify()
}

fn alive() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// Why the server is not ready, as a stable code; `None` when it is.
pub fn not_ready(s: &AppState) -> Option<&'static str> {
    if s.shutting_down.load(Ordering::Acquire) {
        // First: during shutdown the writer stops too, and the cause is the shutdown.
        Some("shutting_down")
    } else if !s.store.writer_running() {
        Some("store_writer_stopped")
    } else if s.store.commit_failure().is_some() {
        Some("store_commit_failed")
    } else if s.redis.as_ref().is_some_and(|r| r.on_error() == OnError::Closed && !r.is_up()) {
        // Ingest answers 503 until Redis answers: the balancer should send traffic elsewhere.
        Some("redis_unavailable")
    } else {
        None
    }
}

fn ready(s: &AppState) -> Response {
    match not_ready(s) {
        None => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Some(reason) => {
            let mut res =
                json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "unavailable", "reason": reason}));
            res.extensions_mut().insert(super::RequestLog { code: Some(reason), ..Default::default() });
            res
        }
    }
}
