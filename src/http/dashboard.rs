//! The dashboard: `GET /` and `GET /dashboard/<file>` serve the files of `assets/`, embedded in
//! the binary (debug builds too), and `POST /dashboard/session` turns the admin token into an
//! HttpOnly session cookie.
//!
//! The static files hold no data, so they are served without the token; every API call the page
//! makes is authorised like anyone else's. The page gets its own Content-Security-Policy: only
//! its own scripts, styles and API, nothing inline.

use std::sync::Arc;

use rust_embed::RustEmbed;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::auth::SESSION_COOKIE;
use super::errors::ApiError;
use super::{origin, read_body, with_state, AppState};

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
        .and(guard)
        .and(with_state(state))
        .and(warp::body::stream())
        .then(|s: Arc<AppState>, body| async move {
            match read_body(body, 4096, None).await {
                Ok(bytes) => session(&s, &bytes).unwrap_or_else(ApiError::into_response),
                Err(e) => ApiError::from(e).into_response(),
            }
        });
    index.or(file).unify().or(session).unify()
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

fn session(s: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let login: Login =
        serde_json::from_slice(body).map_err(|_| ApiError::invalid_payload("expected {\"token\": \"...\"}"))?;
    if let Some(token) = &s.config.server.admin_token {
        let ok = subtle::ConstantTimeEq::ct_eq(
            &Sha256::digest(login.token.as_bytes())[..],
            &Sha256::digest(token.expose().as_bytes())[..],
        );
        if !bool::from(ok) {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong admin token"));
        }
    }
    let mut res = Response::new(Vec::<u8>::new().into());
    *res.status_mut() = StatusCode::NO_CONTENT;
    // The cookie holds the token itself: HttpOnly keeps it from scripts, SameSite=Strict from
    // other sites' requests.
    let cookie = format!("{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", login.token);
    let value = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::invalid_payload("the token has characters a cookie cannot hold"))?;
    res.headers_mut().insert("set-cookie", value);
    Ok(res)
}
