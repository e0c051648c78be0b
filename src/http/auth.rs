//! The admin token: when `server.admin_token` is set, every endpoint but ingest requires it,
//! as `Authorization: Bearer <token>` or the dashboard's session cookie. Ingest never does:
//! providers authenticate with their signatures.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use warp::http::HeaderMap;
use warp::{Filter, Rejection};

use super::{with_state, AppState};

/// The cookie the dashboard keeps the token in.
pub const SESSION_COOKIE: &str = "stagehook_session";

#[derive(Debug)]
pub struct Unauthorized;

impl warp::reject::Reject for Unauthorized {}

/// Yields the state when no token is configured or the request carries it; put after path and
/// method, so unknown paths stay 404 and wrong methods 405.
pub fn admin(state: Arc<AppState>) -> impl Filter<Extract = (Arc<AppState>,), Error = Rejection> + Clone {
    warp::header::headers_cloned().and(with_state(state)).and_then(
        |headers: HeaderMap, state: Arc<AppState>| async move {
            if authorized(&state, &headers) {
                Ok(state)
            } else {
                Err(warp::reject::custom(Unauthorized))
            }
        },
    )
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.config.server.admin_token else { return true };
    let bearer = headers
        .get_all("authorization")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let cookies = headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='));
    // Hashing both sides first makes the comparison constant-time whatever the lengths.
    let want = Sha256::digest(token.expose().as_bytes());
    let mut ok = false;
    for given in bearer.chain(cookies) {
        ok |= bool::from(subtle::ConstantTimeEq::ct_eq(&Sha256::digest(given.trim().as_bytes())[..], &want[..]));
    }
    ok
}
