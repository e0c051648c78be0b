//! Admin authentication: when `server.admin_token` is set, every endpoint but ingest requires
//! `Authorization: Bearer <token>` or a live dashboard session (`session.rs`) in the
//! `stagehook_session` cookie. Ingest never does: providers authenticate with their signatures.
//!
//! The right credential always passes. A live session and the right token (compared in constant
//! time, [`token_matches`]) are looked at before anything else, so that no one who shares the
//! admin's address can lock the admin out: behind a tunnel or a proxy without
//! `server.trusted_proxies`, every client is the same address (127.0.0.1).
//!
//! Wrong guesses are limited per client: a request that carries a credential (an
//! `Authorization` header or a session cookie) that does not let it in is a failure, and so is a
//! wrong token at `POST /dashboard/session`. After [`AUTH_FAILURES_PER_MINUTE`] of them within
//! 60 s, the client's wrong guesses are answered `429 too_many_auth_failures` (and logged, within
//! the refusal lines' budget) until the oldest failure is 60 s old. Since the right token still
//! passes, the limit slows no guesser down: what makes guessing hopeless is the token's length,
//! which the validator holds to at least
//! [`MIN_TOKEN_CHARS`](crate::config::validate::MIN_TOKEN_CHARS) characters wherever other machines
//! reach stagehook (`admin_token.weak`); the limit makes a guessing script visible (429s and
//! log lines). A request without any credential (the dashboard's first look) is `401` but no
//! failure.
//!
//! A read token (`server.read_tokens`) is let in like the admin token, but only by the routes
//! that read ([`reader`]: the events, their export and stream, `/stats`, the listeners and a
//! listener's report); every other route answers it `403 read_only_token` ([`admin`]). A read
//! token is a right credential, so it is never counted as a failure.

use std::net::SocketAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use warp::http::{HeaderMap, StatusCode};
use warp::{Filter, Rejection};

use super::errors::ApiError;
use super::{client_ip, with_state, AppState, Client};
use crate::secret::Secret;

/// The cookie that holds a dashboard session's id.
pub const SESSION_COOKIE: &str = "stagehook_session";

/// Failed authentications a client may make in any 60 s window before its wrong guesses are
/// answered 429. A person who mistypes the token a few times never meets it.
pub const AUTH_FAILURES_PER_MINUTE: u32 = 10;

/// The 401 for a request with no credential, or one that did not let it in. `clear_cookie` is
/// the `Set-Cookie` that removes a dead session cookie, so a browser stops sending it (and stops
/// counting failures) after the first refusal.
fn unauthorized(clear_cookie: Option<String>) -> ApiError {
    let err = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this endpoint needs the admin token: Authorization: Bearer <server.admin_token>",
    )
    .with_header("www-authenticate", "Bearer realm=\"stagehook\"");
    match clear_cookie {
        Some(cookie) => err.with_header("set-cookie", cookie),
        None => err,
    }
}

/// What a request that got in may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The admin token, a dashboard session, or no `admin_token` configured at all.
    Admin,
    /// One of `server.read_tokens`.
    Read,
}

/// The 403 for a read token at a route that changes something or needs the admin.
pub fn read_only() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "read_only_token",
        "a read token may only read events, their export and stream, /stats and the listeners, and report a listener's delivery; this endpoint needs the admin token",
    )
}

/// Yields the state when no token is configured or the request carries the admin's
/// credential; a read token is `403 read_only_token`. Put after path and method, so unknown
/// paths stay 404 and wrong methods 405, and so that it runs once per request.
pub fn admin(state: Arc<AppState>) -> impl Filter<Extract = (Arc<AppState>,), Error = Rejection> + Clone {
    access(state).and_then(|access: Access, state: Arc<AppState>| async move {
        match access {
            Access::Admin => Ok(state),
            Access::Read => Err(warp::reject::custom(read_only())),
        }
    })
}

/// Like [`admin`], but a read token is let in too: for the routes that only read.
pub fn reader(state: Arc<AppState>) -> impl Filter<Extract = (Arc<AppState>,), Error = Rejection> + Clone {
    access(state).map(|_: Access, state: Arc<AppState>| state)
}

fn access(state: Arc<AppState>) -> impl Filter<Extract = (Access, Arc<AppState>), Error = Rejection> + Clone {
    warp::header::headers_cloned().and(super::server::peer()).and(warp::path::full()).and(with_state(state)).and_then(
        |headers: HeaderMap, peer: Option<SocketAddr>, path: warp::path::FullPath, state: Arc<AppState>| async move {
            authenticate(&state, peer, &headers, path.as_str()).map(|access| (access, state))
        },
    )
    .untuple_one()
}

fn authenticate(
    state: &AppState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    path: &str,
) -> Result<Access, Rejection> {
    let Some(token) = &state.config.server.admin_token else { return Ok(Access::Admin) };
    let sessions: Vec<&str> = session_cookies(headers).collect();
    if sessions.iter().any(|id| state.sessions.valid(id)) {
        return Ok(Access::Admin);
    }
    let has_authorization = headers.contains_key("authorization");
    if !has_authorization && sessions.is_empty() {
        return Err(warp::reject::custom(unauthorized(None)));
    }
    // Before the limiter: the right token passes whoever else guessed from this address.
    if bearer_tokens(headers).any(|given| token_matches(token, given)) {
        return Ok(Access::Admin);
    }
    if bearer_tokens(headers).any(|given| is_read_token(state, given)) {
        return Ok(Access::Read);
    }
    let what = if has_authorization { "bearer token" } else { "session" };
    let client = client_ip(peer, headers, &state.trusted_proxies);
    if let Some(refusal) = refused(state, &client, what, path) {
        return Err(warp::reject::custom(refusal));
    }
    failed(state, &client, what, path);
    let clear_cookie = (!sessions.is_empty()).then(|| cleared_cookie(state));
    Err(warp::reject::custom(unauthorized(clear_cookie)))
}

/// The 429 for a wrong guess from a client that has used up its failures, or `None` when it may
/// still fail. Call it only once the credential is known to be wrong: the right one always
/// passes. A refused guess is logged like a failure, within the refusal lines' budget, but not
/// counted again (the window would never end for a script that keeps guessing).
pub fn refused(state: &AppState, client: &Client, what: &'static str, path: &str) -> Option<ApiError> {
    let d = match client {
        Client::Addr(ip) => state.auth_failures.peek(*ip),
        Client::Named(name) => state.auth_failures.peek_named(name),
    };
    if d.allowed {
        return None;
    }
    if state.connections.may_log(429) {
        tracing::warn!(target: "stagehook::auth", client = %client, credential = what, path, refused = true, "authentication failed");
    }
    let counted_as = client.bucket(&state.auth_failures);
    let err = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_auth_failures",
        format!(
            "more than {AUTH_FAILURES_PER_MINUTE} failed authentications in a minute from {counted_as}; retry after {} s",
            d.retry_after_s
        ),
    )
    .with_header("retry-after", d.retry_after_s);
    Some(err)
}

/// Counts and logs one failed authentication. The line names the client and what failed, never
/// what was sent; it shares the refusal lines' budget, so a flood from many addresses writes a
/// bounded log.
pub fn failed(state: &AppState, client: &Client, what: &'static str, path: &str) {
    match client {
        Client::Addr(ip) => state.auth_failures.check(*ip),
        Client::Named(name) => state.auth_failures.check_named(name),
    };
    if state.connections.may_log(401) {
        tracing::warn!(target: "stagehook::auth", client = %client, credential = what, path, "authentication failed");
    }
}

/// Whether `given` is the admin token. Both sides are hashed first, which makes the comparison
/// constant-time whatever their lengths. Empty never matches, whatever is configured.
pub fn token_matches(token: &Secret, given: &str) -> bool {
    let given = given.trim();
    if given.is_empty() || token.expose().trim().is_empty() {
        return false;
    }
    let want = Sha256::digest(token.expose().as_bytes());
    bool::from(subtle::ConstantTimeEq::ct_eq(&Sha256::digest(given.as_bytes())[..], &want[..]))
}

/// Whether `given` is one of `server.read_tokens`, each compared as [`token_matches`] does. Every
/// token is compared, so the time taken does not say which one matched.
pub fn is_read_token(state: &AppState, given: &str) -> bool {
    state.config.server.read_tokens.iter().fold(false, |found, t| token_matches(t, given) | found)
}

fn bearer_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers.get_all("authorization").iter().filter_map(|v| v.to_str().ok()).filter_map(|v| {
        let (scheme, rest) = v.trim_start().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(rest)
    })
}

/// The values of every `stagehook_session` cookie the request carries (a browser may send two
/// of one name, for two paths).
pub fn session_cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .map(str::trim)
}

/// The cookie that carries a new session: HttpOnly (no script reads it), SameSite=Strict (no
/// other site's page sends it), for the whole server, for as long as the session lives, and
/// `Secure` when stagehook is reached over https (`server.public_url`).
pub fn session_cookie(state: &AppState, id: &str) -> String {
    format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        state.sessions.max_age_s(),
        secure(state)
    )
}

/// The cookie that makes a browser forget its session.
pub fn cleared_cookie(state: &AppState) -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}", secure(state))
}

fn secure(state: &AppState) -> &'static str {
    match &state.config.server.public_url {
        Some(url) if url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")) => "; Secure",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn credentials_are_read_as_browsers_and_clients_send_them() {
        let h = headers(&[
            ("authorization", "Bearer one"),
            ("authorization", "bearer two"),
            ("authorization", "BEARER  three "),
            ("authorization", "Basic Zm9vOmJhcg=="),
        ]);
        assert_eq!(bearer_tokens(&h).collect::<Vec<_>>(), ["one", "two", " three "]);
        let h = headers(&[
            ("cookie", "theme=dark; stagehook_session=abc ; stagehook_sessionx=no"),
            ("cookie", "stagehook_session="),
            ("cookie", "x=1;stagehook_session= def"),
        ]);
        assert_eq!(session_cookies(&h).collect::<Vec<_>>(), ["abc", "", "def"]);
    }

    #[test]
    fn empty_never_matches() {
        let token = Secret::new("the-admin-token");
        assert!(token_matches(&token, "the-admin-token"));
        assert!(token_matches(&token, " the-admin-token "));
        for given in ["", " ", "the-admin-toke", "the-admin-token2"] {
            assert!(!token_matches(&token, given), "{given:?}");
        }
        for blank in ["", "  "] {
            assert!(!token_matches(&Secret::new(blank), blank));
            assert!(!token_matches(&Secret::new(blank), ""));
        }
    }
}
