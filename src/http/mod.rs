//! The only place that knows warp, HTTP status codes and JSON error shapes.
//!
//! [`routes`] is the whole server as one warp filter: ingest endpoints, read endpoints, one
//! rejection handler, and a last step that adds the security headers to every response (errors
//! and 404s included) and writes the one log line per request. Every route but ingest and the
//! probes (`health.rs`) passes the origin checks (`origin.rs`) after its path and method; those
//! that need the admin token then pass `auth.rs`. [`admin`] is the two, in that order.

mod alerts;
mod api;
pub mod auth;
mod backfill;
mod check_app;
mod client_ip;
mod dashboard;
mod edit;
pub mod errors;
mod events;
mod health;
mod ingest;
mod listeners;
mod metrics;
mod openapi;
pub mod origin;
pub mod server;
pub mod session;
mod stream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::http::{HeaderValue, Method};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

pub use client_ip::{client_ip, Client};
use errors::ApiError;

use crate::clock::Clock;
use crate::config::{Config, IpRange};
use crate::ratelimit::RateLimiter;
use crate::store::Store;

use crate::providers::Endpoint;

/// Everything a request handler may touch.
pub struct AppState {
    pub config: Config,
    /// The ingest endpoints, `POST /staging/webhooks/<path>`: the provider instances as
    /// [`Config::build`](crate::config::Config::build) made them, once, at startup.
    pub endpoints: Vec<Endpoint>,
    pub limiter: RateLimiter,
    /// The limiter's counts and the duplicate claims in Redis, when the config shares them
    /// (`limits.backend`, `dedup.backend`); `limiter` and the store decide alone otherwise, and
    /// while Redis is down under `redis.on_error = "open"`.
    pub redis: Option<Arc<crate::redis::Redis>>,
    /// Failed admin authentications per client (`auth.rs`): a second limiter of the same kind,
    /// fed only by failures, so guessing the token is slow and nothing else is limited.
    pub auth_failures: RateLimiter,
    /// Dashboard sessions, in memory only.
    pub sessions: session::Sessions,
    /// Set when the server stops, so that event streams end.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Event streams open now (`stream.rs`).
    pub streams: Arc<std::sync::atomic::AtomicUsize>,
    /// The listeners' reports and the listeners whose stream is open (`listeners.rs`), in
    /// memory only.
    pub listeners: Arc<listeners::Listeners>,
    /// The runs that recover missed events from the providers' APIs, in memory only.
    pub backfills: Arc<crate::backfill::runs::Backfills>,
    /// The endpoints whose `check-app` run is under way (`check_app.rs`): one at a time each.
    pub check_runs: check_app::Running,
    /// How many signature refusals a second are diagnosed (`providers::diagnose`).
    pub diagnoses: crate::providers::diagnose::Gate,
    pub store: Store,
    pub engine: Arc<crate::delivery::Engine>,
    /// The alert rules' evaluator, for `GET /staging/webhooks/alerts`.
    pub alerts: Arc<crate::alerts::Alerts>,
    pub clock: Clock,
    pub started: Instant,
    pub trusted_proxies: Vec<IpRange>,
    /// The isolation-relevant environment, captured at startup for the validation endpoint.
    pub env: std::collections::BTreeMap<String, String>,
    /// What connections did, and the budget of refusal log lines (`server.rs`).
    pub connections: Arc<server::ConnStats>,
    /// The hosts and origins that are this stagehook, read by the check (`config/origin.rs`).
    pub origin: crate::config::Origins,
    /// The address the listener got, set once by `App::serve`: with `bind` port 0 only the
    /// listener knows the port.
    pub listening: OnceLock<SocketAddr>,
    /// Set by `App::serve` when its shutdown future fires, so that `/readyz` answers 503 to the
    /// requests still being served in the grace period.
    pub shutting_down: AtomicBool,
    /// When the previous run was last alive: its last store heartbeat, read at open before this
    /// run wrote its first; `None` for a store that never had one. The events a provider sent
    /// after it were missed (backfill recovers them from the provider's API).
    pub down_since_ms: Option<i64>,
}

impl AppState {
    /// Where stagehook listens: the listener's address once serving, else `server.bind`.
    pub fn listening(&self) -> SocketAddr {
        self.listening.get().copied().unwrap_or(self.config.server.bind)
    }

    /// stagehook's own base URL, for every URL it signs or prints: see
    /// [`crate::config::ServerConfig::base_url`].
    pub fn base_url(&self) -> String {
        self.config.server.base_url(self.listening())
    }

    fn endpoint(&self, path: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.path == path)
    }

    fn endpoint_by_provider(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.provider.name() == name || e.path == name)
    }

    /// Stored headers as the API shows them: through the one redaction step, with the list of
    /// the provider that received them. A provider no longer configured gives no list, so only
    /// the generic credentials are redacted.
    fn shown_headers(&self, provider: &str, headers: &[(String, String)]) -> Vec<(String, String)> {
        crate::redact::event_headers(&self.endpoints, provider, headers)
    }
}

/// The per-request facts only a handler knows, carried to the log line in the response's
/// extensions.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    pub provider: Option<String>,
    pub event_id: Option<String>,
    pub code: Option<&'static str>,
}

/// The six headers every response carries.
pub const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("x-xss-protection", "1; mode=block"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("content-security-policy", "default-src 'none'"),
    ("cache-control", "no-cache, no-store, must-revalidate"),
];

/// The whole server.
pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let connections = state.connections.clone();
    // Ingest first: it is the hot path, and no other route's path is an endpoint's.
    let app = ingest::filter(state.clone())
        .or(health::filter(state.clone()))
        .or(metrics::filter(state.clone()))
        .or(openapi::filter(state.clone()))
        .or(api::filter(state.clone()))
        .or(backfill::filter(state.clone()))
        .or(check_app::filter(state.clone()))
        // Before the events' routes, where `stream` would be taken for an event id.
        .or(stream::filter(state.clone()))
        .or(listeners::filter(state.clone()))
        .or(events::filter(state.clone()))
        .or(alerts::filter(state.clone()))
        .or(dashboard::filter(state))
        .recover(errors::handle_rejection);
    warp::any().map(Instant::now).and(warp::method()).and(warp::path::full()).and(app).map(
        move |start: Instant, method: Method, path: warp::path::FullPath, reply| {
            finish(start, &method, path.as_str(), Reply::into_response(reply), &connections)
        },
    )
}

/// The server on `server.metrics_bind`: `GET /metrics` alone, without the admin token.
pub fn metrics_routes(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let connections = state.connections.clone();
    let app = metrics::unguarded(state).recover(errors::handle_rejection);
    warp::any().map(Instant::now).and(warp::method()).and(warp::path::full()).and(app).map(
        move |start: Instant, method: Method, path: warp::path::FullPath, reply| {
            finish(start, &method, path.as_str(), Reply::into_response(reply), &connections)
        },
    )
}

fn finish(start: Instant, method: &Method, path: &str, mut res: Response, connections: &server::ConnStats) -> Response {
    let headers = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        // A handler may set its own policy (the dashboard's); every other header is fixed.
        if name == "content-security-policy" && headers.contains_key(name) {
            continue;
        }
        headers.insert(name, HeaderValue::from_static(value));
    }
    let log = res.extensions_mut().remove::<RequestLog>().unwrap_or_default();
    if !connections.may_log(res.status().as_u16()) {
        return res;
    }
    tracing::info!(
        target: "stagehook::request",
        method = %method,
        path,
        status = res.status().as_u16(),
        duration_us = start.elapsed().as_micros() as u64,
        provider = log.provider.as_deref(),
        event_id = log.event_id.as_deref(),
        code = log.code,
        "request"
    );
    res
}

/// The gate of every admin and dashboard route that needs the token, after its path and
/// method: the origin checks (`origin.rs`), then the admin token (`auth.rs`).
fn admin(state: Arc<AppState>) -> impl Filter<Extract = (Arc<AppState>,), Error = Rejection> + Clone {
    origin::guard(state.clone()).and(auth::admin(state))
}

/// The gate of the routes a read token may use too (`server.read_tokens`): the origin checks,
/// then the admin token or a read token.
fn reader(state: Arc<AppState>) -> impl Filter<Extract = (Arc<AppState>,), Error = Rejection> + Clone {
    origin::guard(state.clone()).and(auth::reader(state))
}

fn with_state(state: Arc<AppState>) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Why reading a body stopped.
pub enum BodyError {
    TooLarge,
    /// `server.body_timeout` passed before the body was complete.
    TimedOut,
    /// The body fell behind `server.min_body_rate`, or was the slowest when the connections were
    /// at `server.max_connections` (`evicted`).
    TooSlow {
        evicted: bool,
    },
    /// `server.max_inflight_body_bytes` had no room for the body.
    NoRoom,
    Broken(String),
}

/// The most a body buffer reserves ahead of the bytes that have arrived: a declared
/// `Content-Length` is a promise, not bytes, so a client that declares 1 MiB and sends nothing
/// costs no more than this.
const RESERVE_AHEAD: u64 = 64 * 1024;

/// The `Retry-After` of `too_many_body_bytes`: about the minimum rate's grace, after which the
/// slow bodies holding the budget have been cut.
const BODY_BYTES_RETRY_AFTER_S: u64 = 5;

/// Reads a body, refusing it as soon as it grows past `limit`: a chunked body (no
/// Content-Length) is held to the same limit as a declared one, without buffering the excess.
pub async fn read_body<S, B>(stream: S, limit: u64, size_hint: Option<u64>) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|e| match std::error::Error::source(&e).and_then(|s| s.downcast_ref()) {
            Some(server::BodyCut::Timeout) => BodyError::TimedOut,
            Some(server::BodyCut::TooSlow) => BodyError::TooSlow { evicted: false },
            Some(server::BodyCut::Evicted) => BodyError::TooSlow { evicted: true },
            Some(server::BodyCut::NoRoom) => BodyError::NoRoom,
            None => BodyError::Broken(e.to_string()),
        })?;
        if (buf.len() + chunk.remaining()) as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        if buf.is_empty() {
            // The first bytes: room for what was declared, within reason, so that a body that
            // arrives in pieces is copied once.
            let want = size_hint.unwrap_or(0).min(limit).min(RESERVE_AHEAD) as usize;
            buf.reserve(want.max(chunk.remaining()));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// The declared Content-Length, if any and well-formed.
fn content_length(headers: &warp::http::HeaderMap) -> Option<u64> {
    headers.get(warp::http::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// A JSON 200 response.
fn ok_json(body: &serde_json::Value) -> Response {
    errors::json_response(warp::http::StatusCode::OK, body)
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        match e {
            BodyError::TooLarge => ApiError::new(
                warp::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than the limit",
            ),
            BodyError::TimedOut => ApiError::new(
                warp::http::StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body did not arrive within server.body_timeout",
            ),
            BodyError::TooSlow { evicted } => ApiError::new(
                warp::http::StatusCode::REQUEST_TIMEOUT,
                "body_too_slow",
                if evicted {
                    "the body arrived the slowest while server.max_connections were open; the connection made room for another"
                } else {
                    "the body arrived more slowly than server.min_body_rate"
                },
            ),
            BodyError::NoRoom => ApiError::new(
                warp::http::StatusCode::SERVICE_UNAVAILABLE,
                "too_many_body_bytes",
                "the bodies still arriving hold server.max_inflight_body_bytes; retry shortly",
            )
            .with_header("retry-after", BODY_BYTES_RETRY_AFTER_S),
            BodyError::Broken(m) => ApiError::invalid_payload(format!("the body could not be read: {m}")),
        }
    }
}
