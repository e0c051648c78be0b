//! The dashboard: `GET /` and `GET /dashboard/<file>` serve the files of `assets/`, embedded in
//! the binary (debug builds too); `POST /dashboard/session` trades the admin token for a session
//! (`session.rs`) in an HttpOnly cookie, and `POST /dashboard/logout` ends it.
//!
//! The static files hold no data, so they are served without the token; every API call the page
//! makes is authorised like anyone else's. The page gets its own Content-Security-Policy: only
//! its own scripts, styles and API, nothing inline.

use std::sync::Arc;

use std::net::SocketAddr;

use rust_embed::RustEmbed;
use serde::Deserialize;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::auth;
use super::errors::ApiError;
use super::{client_ip, origin, read_body, with_state, AppState};

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The dashboard's policy: its own files and API only.
pub const DASHBOARD_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    // The origin checks, on every route after its path and method (and, for files, after the
    // file is found), so that unknown paths stay 404.
    let guard = origin::guard(state.clone());
    let index = warp::path::end().and(warp::get()).and(guard.clone()).map(|| asset("index.html"));
    let file = warp::path("dashboard")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and_then(|name: String| async move {
            if mime(&name).is_none() || Assets::get(&name).is_none() {
                return Err(warp::reject::not_found());
            }
            Ok(name)
        })
        .and(guard.clone())
        .map(|name: String| asset(&name));
    let session = warp::path("dashboard")
        .and(warp::path("session"))
        .and(warp::path::end())
        .and(warp::post())
        .and(guard.clone())
        .and(with_state(state.clone()))
        .and(super::server::peer())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(|s: Arc<AppState>, peer: Option<SocketAddr>, headers: HeaderMap, body| async move {
            match read_body(body, 4096, None).await {
                Ok(bytes) => session(&s, peer, &headers, &bytes).unwrap_or_else(ApiError::into_response),
                Err(e) => ApiError::from(e).into_response(),
            }
        });
    // Whether this browser is signed in, for the page's "Log out" control (the cookie is
    // HttpOnly, so the page cannot look). It tells no more than a 401 would, and it grants nothing.
    let status = warp::path("dashboard")
        .and(warp::path("session"))
        .and(warp::path::end())
        .and(warp::get())
        .and(guard.clone())
        .and(with_state(state.clone()))
        .and(warp::header::headers_cloned())
        .map(|s: Arc<AppState>, headers: HeaderMap| {
            let signed_in = auth::session_cookies(&headers).any(|id| s.sessions.valid(id));
            super::ok_json(&serde_json::json!({
                "token_required": s.config.server.admin_token.is_some(),
                "signed_in": signed_in,
            }))
        });
    // No token needed: it ends only the session the request names, and answers the same
    // whether there was one.
    let logout = warp::path("dashboard")
        .and(warp::path("logout"))
        .and(warp::path::end())
        .and(warp::post())
        .and(guard)
        .and(with_state(state))
        .and(warp::header::headers_cloned())
        .map(|s: Arc<AppState>, headers: HeaderMap| logout(&s, &headers));
    index.or(file).unify().or(session).unify().or(status).unify().or(logout).unify()
}

fn asset(name: &str) -> Response {
    let Some(file) = Assets::get(name) else {
        return ApiError::not_found(format!("no dashboard file `{name}`")).into_response();
    };
    let mime = mime(name).unwrap_or("application/octet-stream");
    let mut res = Response::new(file.data.into_owned().into());
    res.headers_mut().insert("content-type", HeaderValue::from_static(mime));
    res.headers_mut().insert("content-security-policy", HeaderValue::from_static(DASHBOARD_CSP));
    res
}

/// The types the dashboard is made of; anything else in `assets/` (notes) is not served.
fn mime(name: &str) -> Option<&'static str> {
    Some(match name.rsplit('.').next()? {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

fn session(s: &AppState, peer: Option<SocketAddr>, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let Some(token) = &s.config.server.admin_token else {
        // No token: every endpoint is open, and there is nothing to sign in to.
        return Ok(no_content());
    };
    let login: Option<Login> = serde_json::from_slice(body).ok();
    // The right token signs in before the failure limit is looked at (see `auth.rs`).
    if !login.as_ref().is_some_and(|l| auth::token_matches(token, &l.token)) {
        // A read token is a right credential, but a session is the admin's.
        if login.as_ref().is_some_and(|l| auth::is_read_token(s, &l.token)) {
            return Err(auth::read_only());
        }
        let client = client_ip(peer, headers, &s.trusted_proxies);
        if let Some(refusal) = auth::refused(s, &client, "dashboard sign-in", "/dashboard/session") {
            return Err(refusal);
        }
        if login.is_none() {
            return Err(ApiError::invalid_payload("expected {\"token\": \"...\"}"));
        }
        auth::failed(s, &client, "dashboard sign-in", "/dashboard/session");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong admin token"));
    }
    let id = s.sessions.open().map_err(|e| {
        tracing::error!(error = %e, "no session could be opened");
        ApiError::internal()
    })?;
    // A session this browser held before is replaced, not left to expire.
    for old in auth::session_cookies(headers) {
        s.sessions.close(old);
    }
    let mut res = no_content();
    let cookie = HeaderValue::from_str(&auth::session_cookie(s, &id)).expect("a hex id and fixed attributes");
    res.headers_mut().insert("set-cookie", cookie);
    Ok(res)
}

fn logout(s: &AppState, headers: &HeaderMap) -> Response {
    for id in auth::session_cookies(headers) {
        s.sessions.close(id);
    }
    let mut res = no_content();
    let cookie = HeaderValue::from_str(&auth::cleared_cookie(s)).expect("fixed attributes");
    res.headers_mut().insert("set-cookie", cookie);
    res
}

fn no_content() -> Response {
    let mut res = Response::new(Vec::<u8>::new().into());
    *res.status_mut() = StatusCode::NO_CONTENT;
    res
}
