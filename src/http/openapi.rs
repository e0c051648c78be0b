//! `GET /staging/webhooks/openapi.json`: the OpenAPI 3.1 document of every route, kept in
//! `docs/openapi.json` and built into the binary. tests/it/openapi.rs holds the document and the
//! routes of `src/http/` to each other, and `.ci/run` validates it.
//!
//! It passes the origin checks like the dashboard's files but needs no token: it is the same
//! bytes for every stagehook and says nothing of this one (no provider, setting or count).

use std::sync::Arc;

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{origin, AppState};

/// The document, as in the repository.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path("staging")
        .and(warp::path("webhooks"))
        .and(warp::path("openapi.json"))
        .and(warp::path::end())
        .and(warp::get())
        .and(origin::guard(state))
        .map(|| {
            let mut res = Response::new(DOCUMENT.into());
            *res.status_mut() = StatusCode::OK;
            res.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
            res
        })
}
