//! Cross-site and DNS-rebinding protection for everything but ingest: the admin API and the
//! dashboard, with or without `server.admin_token`.
//!
//! A page the developer happens to open must not be able to replay the store into their app (a
//! `text/plain` or empty cross-site POST needs no CORS preflight), nor, after pointing a name of
//! its own at 127.0.0.1 (DNS rebinding), read payloads and freshly signed `curl` commands. Two
//! rules, checked after a route's path and method (unknown paths stay 404) and before the admin
//! token:
//!
//! - Every request's `Host` names this stagehook: a loopback name or address (`localhost`,
//!   127.0.0.0/8, `[::1]`), the bind address (for a 0.0.0.0 or [::] bind, the address of this
//!   machine that the connection arrived at), the host of `server.public_url`, or an entry of
//!   `server.allowed_hosts`; any port. Else `403 host_not_allowed`: a rebinding page always
//!   arrives with its own name in `Host`. A request without `Host` (HTTP/1.0) is no browser's.
//! - Every state-changing request (any method but GET, HEAD and OPTIONS) is
//!   `Content-Type: application/json`, which no page can send to another origin without a CORS
//!   preflight that stagehook never grants; carries no `Sec-Fetch-Site` but `same-origin` or
//!   `none`; and carries no `Origin` but this stagehook's own (see [`is_own_origin`]).
//!   Else `403 cross_origin_refused`, except for a request that only lacks the `Content-Type`:
//!   browsers mark cross-site requests with either header, so it comes from a client that is no
//!   browser (curl, scripts), and `415 unsupported_media_type` tells it what to add.
//!
//! Ingest is exempt: providers and tunnels send any Host and no Origin, and a page gains
//! nothing by posting an event it cannot sign.

use std::net::SocketAddr;
use std::sync::Arc;

use warp::http::header::{CONTENT_TYPE, HOST, ORIGIN};
use warp::http::uri::{Authority, Uri};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::{Filter, Rejection};

use super::errors::ApiError;
use super::{with_state, AppState};
use crate::config::origin::{host_of, is_bare, origin_of, Host, Origins};

/// Passes requests that may reach the route; put after path and method, before the token.
pub fn guard(state: Arc<AppState>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and(warp::header::headers_cloned())
        .and(super::server::local())
        .and(with_state(state))
        .and_then(|method: Method, headers: HeaderMap, local: Option<SocketAddr>, state: Arc<AppState>| async move {
            check(&state.origin, &method, &headers, state.listening(), local).map_err(warp::reject::custom)
        })
        .untuple_one()
}

/// `listening` is the address stagehook listens on (port 0 resolved); `local` the address
/// of this machine that the connection arrived at, when known.
pub fn check(
    origins: &Origins,
    method: &Method,
    headers: &HeaderMap,
    listening: SocketAddr,
    local: Option<SocketAddr>,
) -> Result<(), ApiError> {
    let host = match headers.get(HOST) {
        None => None,
        Some(value) => {
            let text = value.to_str().ok().filter(|t| {
                t.parse::<Authority>()
                    .ok()
                    .and_then(|a| host_of(a.host()))
                    .is_some_and(|h| is_own_host(origins, &h, listening, local))
            });
            let Some(text) = text else {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "host_not_allowed",
                    format!(
                        "Host `{}` is not this stagehook's; if it is (a proxy's or tunnel's name), set \
                         server.public_url or add it to server.allowed_hosts",
                        shown(value)
                    ),
                ));
            };
            Some(text)
        }
    };
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let refuse = |message: String| Err(ApiError::new(StatusCode::FORBIDDEN, "cross_origin_refused", message));
    if let Some(site) = headers.get("sec-fetch-site") {
        if !(site.as_bytes().eq_ignore_ascii_case(b"same-origin") || site.as_bytes().eq_ignore_ascii_case(b"none")) {
            return refuse(format!("Sec-Fetch-Site: {}: the request comes from another site's page", shown(site)));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let own = origin.to_str().ok().is_some_and(|o| is_own_origin(origins, o, host, listening, local));
        if !own {
            return refuse(format!(
                "Origin `{}` is not this stagehook's; if it is, add it to server.allowed_origins",
                shown(origin)
            ));
        }
    }
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json"));
    if !json {
        // A browser marks a cross-site request with Origin or Sec-Fetch-Site, refused above; what
        // is left is a page of our own or a client that is no browser, most often `curl -d`,
        // which sends a form type: a 415 that says what to add reads right to it, and the request
        // is refused all the same.
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "{method} needs Content-Type: application/json (with curl: -H 'Content-Type: application/json'){}",
                headers.get(CONTENT_TYPE).map(|v| format!("; got `{}`", shown(v))).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

fn is_own_host(origins: &Origins, host: &Host, listening: SocketAddr, local: Option<SocketAddr>) -> bool {
    let bind = listening.ip().to_canonical();
    let own_address = match host {
        Host::Ip(ip) => *ip == bind || (bind.is_unspecified() && local.is_some_and(|l| l.ip().to_canonical() == *ip)),
        Host::Name(_) => false,
    };
    host.is_loopback() || own_address || origins.lists_host(host)
}

/// An `Origin` is this stagehook's when it is `public_url`'s or in `allowed_origins`, or
/// when it is `http://` and one of: the request's own `Host` (already found to be ours: a
/// page may call the origin it was loaded from, by whichever of our names or through a
/// port mapping); the bind address (unless 0.0.0.0 or [::]) or the connection's local
/// address, with the port; a loopback name or address with the listening port, when
/// stagehook listens on loopback or on every interface. `null` (a sandboxed or `file:`
/// page) never is.
fn is_own_origin(
    origins: &Origins,
    origin: &str,
    host: Option<&str>,
    listening: SocketAddr,
    local: Option<SocketAddr>,
) -> bool {
    let Some(uri) = origin.parse::<Uri>().ok().filter(is_bare) else { return false };
    let Some(normal) = origin_of(&uri) else { return false };
    if origins.lists_origin(&normal) {
        return true;
    }
    let http = |authority: String| format!("http://{authority}").parse::<Uri>().ok().and_then(|u| origin_of(&u));
    let bind = (!listening.ip().is_unspecified()).then_some(listening);
    let mut ours = host.map(str::to_string).into_iter().chain(bind.into_iter().chain(local).map(|a| a.to_string()));
    if ours.any(|authority| http(authority).as_ref() == Some(&normal)) {
        return true;
    }
    let on_loopback = listening.ip().is_loopback() || listening.ip().is_unspecified();
    on_loopback
        && normal.starts_with("http://")
        && uri.host().and_then(host_of).is_some_and(|h| h.is_loopback())
        && uri.port_u16().unwrap_or(80) == listening.port()
}

/// A header value for a message: text, at most 100 characters.
fn shown(value: &HeaderValue) -> String {
    let text = String::from_utf8_lossy(value.as_bytes());
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check` on a server with `toml` as its `[server]`, listening at `listening` and reached at
    /// `local`; the refusal's code, or `ok`.
    fn check(toml: &str, listening: &str, local: Option<&str>, method: &str, headers: &[(&str, &str)]) -> &'static str {
        let config = crate::Config::from_toml(&format!("[server]\n{toml}")).unwrap();
        let origins = Origins::new(&config.server).unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(warp::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        match super::check(&origins, &method, &map, listening.parse().unwrap(), local.map(|l| l.parse().unwrap())) {
            Ok(()) => "ok",
            Err(e) => e.code,
        }
    }

    const LOOP: &str = "127.0.0.1:8080";
    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn reads_answer_only_to_our_own_hosts() {
        let tunnel = "public_url = \"https://abc.tunnel.example/base/\"\nallowed_hosts = [\"stagehook.lan\", \"::2\"]";
        for (toml, listening, local, host, want) in [
            ("", LOOP, None, Some("127.0.0.1:8080"), "ok"),
            ("", LOOP, None, Some("127.0.0.1"), "ok"),
            ("", LOOP, None, Some("127.9.9.9:1"), "ok"),
            ("", LOOP, None, Some("LocalHost:8080"), "ok"),
            ("", LOOP, None, Some("[::1]:8080"), "ok"),
            ("", LOOP, None, None, "ok"),
            ("", LOOP, None, Some("evil.example"), "host_not_allowed"),
            ("", LOOP, None, Some("evil.example:8080"), "host_not_allowed"),
            ("", LOOP, None, Some("localhost.evil.example"), "host_not_allowed"),
            ("", LOOP, None, Some("localhost."), "host_not_allowed"),
            ("", LOOP, None, Some("10.0.0.1:8080"), "host_not_allowed"),
            ("", LOOP, None, Some(""), "host_not_allowed"),
            ("", LOOP, None, Some("a b"), "host_not_allowed"),
            (tunnel, LOOP, None, Some("abc.tunnel.example"), "ok"),
            (tunnel, LOOP, None, Some("ABC.tunnel.example:443"), "ok"),
            (tunnel, LOOP, None, Some("stagehook.lan:8080"), "ok"),
            (tunnel, LOOP, None, Some("[::2]:8080"), "ok"),
            (tunnel, LOOP, None, Some("tunnel.example"), "host_not_allowed"),
            // A specific bind answers to its own address; every interface, to the one reached.
            ("", "192.168.1.5:8080", None, Some("192.168.1.5:8080"), "ok"),
            ("", "192.168.1.5:8080", None, Some("192.168.1.6:8080"), "host_not_allowed"),
            ("", "0.0.0.0:8080", Some("192.168.1.5:8080"), Some("192.168.1.5:8080"), "ok"),
            ("", "[::]:8080", Some("[::ffff:192.168.1.5]:8080"), Some("192.168.1.5"), "ok"),
            ("", "0.0.0.0:8080", Some("192.168.1.5:8080"), Some("192.168.1.6:8080"), "host_not_allowed"),
            // An address in Host is never a rebinding page's, even the bind's "every interface".
            ("", "0.0.0.0:8080", None, Some("0.0.0.0:8080"), "ok"),
        ] {
            let headers: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
            assert_eq!(check(toml, listening, local, "GET", &headers), want, "{toml} {listening} {host:?}");
        }
    }

    #[test]
    fn changes_need_json_from_our_own_origin() {
        let tunnel = "public_url = \"https://abc.tunnel.example\"\nallowed_origins = [\"https://ui.example:8443\"]";
        let any = "0.0.0.0:8080";
        let docker = Some("172.17.0.2:8080");
        for (toml, listening, local, headers, want) in [
            ("", LOOP, None, vec![JSON], "ok"),
            ("", LOOP, None, vec![("content-type", "Application/JSON; charset=utf-8")], "ok"),
            ("", LOOP, None, vec![], "unsupported_media_type"),
            ("", LOOP, None, vec![("content-type", "text/plain")], "unsupported_media_type"),
            ("", LOOP, None, vec![("content-type", "application/jsonx")], "unsupported_media_type"),
            ("", LOOP, None, vec![JSON, ("sec-fetch-site", "same-origin")], "ok"),
            ("", LOOP, None, vec![JSON, ("sec-fetch-site", "none")], "ok"),
            ("", LOOP, None, vec![JSON, ("sec-fetch-site", "same-site")], "cross_origin_refused"),
            ("", LOOP, None, vec![JSON, ("sec-fetch-site", "cross-site")], "cross_origin_refused"),
            // The dashboard's own requests, by whichever loopback name it was opened.
            ("", LOOP, None, vec![JSON, ("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")], "ok"),
            ("", LOOP, None, vec![JSON, ("host", "localhost:8080"), ("origin", "http://localhost:8080")], "ok"),
            ("", LOOP, None, vec![JSON, ("host", "127.0.0.1:8080"), ("origin", "http://localhost:8080")], "ok"),
            ("", LOOP, None, vec![JSON, ("origin", "http://[::1]:8080")], "ok"),
            ("", "127.0.0.1:80", None, vec![JSON, ("host", "127.0.0.1"), ("origin", "http://127.0.0.1")], "ok"),
            // Another local port, another site, no site at all.
            (
                "",
                LOOP,
                None,
                vec![JSON, ("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:3000")],
                "cross_origin_refused",
            ),
            (
                "",
                LOOP,
                None,
                vec![JSON, ("host", "127.0.0.1:8080"), ("origin", "http://localhost:3000")],
                "cross_origin_refused",
            ),
            (
                "",
                LOOP,
                None,
                vec![JSON, ("host", "127.0.0.1:8080"), ("origin", "https://127.0.0.1:8080")],
                "cross_origin_refused",
            ),
            (
                "",
                LOOP,
                None,
                vec![JSON, ("host", "127.0.0.1:8080"), ("origin", "http://evil.example")],
                "cross_origin_refused",
            ),
            ("", LOOP, None, vec![JSON, ("host", "127.0.0.1:8080"), ("origin", "null")], "cross_origin_refused"),
            ("", LOOP, None, vec![JSON, ("origin", "http://127.0.0.1:8080/x")], "cross_origin_refused"),
            ("", LOOP, None, vec![JSON, ("origin", "http://u@127.0.0.1:8080")], "cross_origin_refused"),
            // The Host is checked first, whatever the Origin says.
            (
                "",
                LOOP,
                None,
                vec![JSON, ("host", "evil.example:8080"), ("origin", "http://evil.example:8080")],
                "host_not_allowed",
            ),
            // public_url and allowed_origins.
            (
                tunnel,
                LOOP,
                None,
                vec![JSON, ("host", "abc.tunnel.example"), ("origin", "https://abc.tunnel.example")],
                "ok",
            ),
            (tunnel, LOOP, None, vec![JSON, ("host", "127.0.0.1:8080"), ("origin", "https://ui.example:8443")], "ok"),
            (
                tunnel,
                LOOP,
                None,
                vec![JSON, ("host", "127.0.0.1:8080"), ("origin", "https://ui.example")],
                "cross_origin_refused",
            ),
            // Every interface: the one reached, loopback, or a port mapping in front (Docker).
            ("", any, docker, vec![JSON, ("host", "172.17.0.2:8080"), ("origin", "http://172.17.0.2:8080")], "ok"),
            ("", any, docker, vec![JSON, ("host", "127.0.0.1:9000"), ("origin", "http://127.0.0.1:9000")], "ok"),
            (
                "",
                any,
                docker,
                vec![JSON, ("host", "127.0.0.1:9000"), ("origin", "http://0.0.0.0:8080")],
                "cross_origin_refused",
            ),
            (
                "",
                any,
                docker,
                vec![JSON, ("host", "172.17.0.2:8080"), ("origin", "http://172.17.0.3:8080")],
                "cross_origin_refused",
            ),
        ] {
            assert_eq!(check(toml, listening, local, "POST", &headers), want, "{toml} {listening} {headers:?}");
        }
        // Reads need neither.
        let cross = [("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")];
        for method in ["GET", "HEAD", "OPTIONS"] {
            assert_eq!(check("", LOOP, None, method, &cross), "ok", "{method}");
        }
        for method in ["PUT", "DELETE", "PATCH"] {
            assert_eq!(check("", LOOP, None, method, &[]), "unsupported_media_type", "{method}");
        }
    }
}
