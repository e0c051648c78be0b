//! Refusals as HTTP: every error is `{"error": {"code", "message"}}` with a stable code, and
//! [`handle_rejection`] turns warp's own rejections (unknown path, wrong method) into the same
//! shape.

use std::convert::Infallible;

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Rejection;

use super::RequestLog;
use crate::providers::RefusalCode;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
}

/// A filter that refuses a request (the origin checks, the admin token) rejects with the answer
/// itself, and [`handle_rejection`] gives it as it is.
impl warp::reject::Reject for ApiError {}

/// The `Retry-After` of `redis_unavailable`: about how long Redis takes to come back from a
/// restart, and how soon a recovery is noticed (`redis::DOWN_PING_MAX`).
const REDIS_RETRY_AFTER_S: u64 = 5;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), headers: Vec::new() }
    }

    pub fn payload_too_large(limit: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than the {limit}-byte limit"),
        )
    }

    pub fn invalid_payload(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_payload", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A replay of an event whose provider has no `forward_to` target.
    pub fn no_target(provider: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_target",
            format!("{provider} has no forward_to target, so there is nowhere to replay to"),
        )
    }

    /// `no_target` for one event type: the endpoint delivers other types, but none of its routes
    /// takes this one and it has no `forward_to` of its own.
    pub fn no_target_for(provider: &str, event_type: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_target",
            format!(
                "{provider} has no target for `{event_type}` (no route takes it and there is no forward_to), \
                 so there is nowhere to replay to"
            ),
        )
    }

    pub fn storage_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the event could not be stored; retry later",
        )
    }

    /// Redis, which this instance shares its limits and duplicates through, does not answer, and
    /// `redis.on_error` is `closed`.
    pub fn redis_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            "the shared rate limit and duplicate detection (Redis) do not answer; retry later",
        )
        .with_header("retry-after", REDIS_RETRY_AFTER_S)
    }

    pub fn storage_corrupt(what: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::store::STORAGE_CORRUPT,
            format!("stored data is damaged: {what}"),
        )
    }

    pub fn internal() -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }

    pub fn with_header(mut self, name: &'static str, value: impl ToString) -> ApiError {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut res = json_response(self.status, &body);
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                res.headers_mut().insert(name, v);
            }
        }
        res.extensions_mut().insert(RequestLog { code: Some(self.code), ..Default::default() });
        res
    }
}

impl From<crate::providers::Refusal> for ApiError {
    fn from(r: crate::providers::Refusal) -> ApiError {
        let status = match r.code {
            RefusalCode::InvalidSignature | RefusalCode::StaleTimestamp => StatusCode::UNAUTHORIZED,
            RefusalCode::InvalidPayload | RefusalCode::LivemodeEvent => StatusCode::BAD_REQUEST,
            RefusalCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        };
        ApiError::new(status, r.code.as_str(), r.message)
    }
}

/// Every route's answer to a store error, in this one place: damage is not transient, so it is
/// `500 storage_corrupt` naming what is damaged rather than an invitation to retry; anything
/// else (a failed read, a write that failed its retries, a stopped writer) is
/// `503 storage_unavailable`. Logged here, so no route logs it again.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "store operation failed");
        match e {
            crate::store::StoreError::Corrupt(what) => ApiError::storage_corrupt(what),
            // Not `storage_unavailable()`'s words: most of these are reads, not a stored event.
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the store could not be read or written; retry later",
            ),
        }
    }
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut res = Response::new(body.to_string().into());
    *res.status_mut() = status;
    res.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    res
}

/// The last word on every request no route took.
pub async fn handle_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    let err = if rejection.is_not_found() {
        ApiError::not_found("no such endpoint")
    } else if let Some(e) = rejection.find::<ApiError>() {
        e.clone()
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        ApiError::internal()
    };
    Ok(err.into_response())
}
