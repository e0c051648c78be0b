//! The HTTP client that posts deliveries: hyper-util's pooled client (already part of warp's
//! tree) with rustls on ring for https targets, and the Mozilla roots compiled in, so the
//! binary needs no system certificate store.
//!
//! A user and password in a target URL (`https://user:pass@app.test/hook`, a `forward_to` or a
//! notifier's URL) never reach the client's URI: hyper-util's pool logs the URI's authority at
//! debug level, password included. [`post`](Client::post) takes them out and sends them as
//! `Authorization: Basic`, the target's own credential, which replaces any `Authorization` among
//! the headers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

/// How much of an error response's body an attempt keeps, to say why the app refused.
const ERROR_BODY_PREFIX: usize = 200;
/// Responses are read (so the connection can be reused) up to this much, then dropped.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Most response headers an answer keeps, and most bytes of each one's name and of its value:
/// an attempt's record stays bounded whatever the app sends (about 40 KiB of headers at most).
pub const MAX_ANSWER_HEADERS: usize = 64;
const MAX_HEADER_NAME: usize = 128;
const MAX_HEADER_VALUE: usize = 512;

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// What the app answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The start of the body, for the attempt's error (non-2xx only).
    pub body_prefix: String,
    /// The body, up to 64 KiB (`stagehook send` prints it; a delivery keeps the first
    /// `delivery.capture_body_bytes` of it).
    pub body: Vec<u8>,
    /// How many bytes the body had in all, `body` being at most the first 64 KiB of them.
    pub body_len: u64,
    /// The response headers, names lowercase, in the order received: at most
    /// [`MAX_ANSWER_HEADERS`], each name and value cut to a bounded length.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("connect error: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("transport error: {0}")]
    Other(String),
}

impl SendError {
    pub fn reason(&self) -> &'static str {
        match self {
            SendError::Connect(_) => "connect",
            SendError::Timeout => "timeout",
            SendError::Other(_) => "transport",
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

impl Client {
    pub fn new() -> Result<Client, ClientError> {
        let https = connector(Duration::from_secs(5))?;
        let inner = HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https);
        Ok(Client { inner })
    }

    /// POSTs `body` to `url` with `headers`, all within `timeout`; the URL's userinfo, if any,
    /// as `Authorization: Basic` (see the module's comment).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, SendError> {
        let (url, basic) = split_userinfo(url);
        let mut req = hyper::Request::post(url.as_ref());
        for (k, v) in headers {
            if basic.is_some() && k.eq_ignore_ascii_case("authorization") {
                continue;
            }
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(basic) = basic {
            req = req.header("authorization", basic);
        }
        let req = req.body(Full::new(body)).map_err(|e| SendError::Other(format!("bad request: {e}")))?;
        let exchange = async {
            let res = self.inner.request(req).await.map_err(|e| {
                if e.is_connect() {
                    SendError::Connect(error_chain(&e))
                } else {
                    SendError::Other(error_chain(&e))
                }
            })?;
            let status = res.status().as_u16();
            let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            let headers = res
                .headers()
                .iter()
                .take(MAX_ANSWER_HEADERS)
                .map(|(k, v)| {
                    (cut(k.as_str(), MAX_HEADER_NAME), cut(&String::from_utf8_lossy(v.as_bytes()), MAX_HEADER_VALUE))
                })
                .collect();
            let mut body = res.into_body();
            let mut kept = Vec::new();
            let mut body_len = 0u64;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Ok(data) = frame.into_data() {
                    body_len += data.len() as u64;
                    if kept.len() < MAX_RESPONSE_BODY {
                        kept.extend_from_slice(&data[..data.len().min(MAX_RESPONSE_BODY - kept.len())]);
                    }
                }
            }
            let body_prefix = if (200..300).contains(&status) {
                String::new()
            } else {
                String::from_utf8_lossy(&kept[..kept.len().min(ERROR_BODY_PREFIX)]).into_owned()
            };
            Ok(Answer { status, retry_after, body_prefix, body: kept, body_len, headers })
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| SendError::Timeout)?
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> String {
    crate::text::cut(text, max).to_string()
}

/// The connector deliveries use (plain TCP for http, rustls on ring with the compiled-in roots
/// for https); the validator's target probe connects with it too, so "reachable" means a
/// delivery could connect.
pub fn connector(connect_timeout: Duration) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, ClientError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    // A request goes out whole at once: its body, written after the head, would otherwise wait
    // for the app's delayed ACK of the head (Nagle), 40 ms or more on Linux, on every delivery.
    http.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// `url` without the userinfo of its authority, and the `Authorization: Basic` value the
/// userinfo stands for (`user:password`, each part percent-decoded as a browser or curl does; a
/// lone user has an empty password). A URL without userinfo comes back as it is, borrowed.
pub fn split_userinfo(url: &str) -> (std::borrow::Cow<'_, str>, Option<String>) {
    let Some(start) = url.find("://").map(|i| i + 3) else { return (url.into(), None) };
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    let Some(at) = url[start..end].rfind('@').map(|i| start + i) else { return (url.into(), None) };
    let userinfo = &url[start..at];
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut pair = percent_decode(user);
    pair.push(b':');
    pair.extend(percent_decode(password));
    let basic = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair));
    (format!("{}{}", &url[..start], &url[at + 1..]).into(), Some(basic))
}

/// `%XX` escapes decoded; anything else, a malformed escape included, kept as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// An error with its causes, which is where hyper keeps the useful part ("connection refused").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_userinfo_leaves_the_url_as_a_basic_header() {
        let basic =
            |pair: &str| format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair));
        let cases = [
            ("http://u:p@127.0.0.1:3000/hook?x=1", "http://127.0.0.1:3000/hook?x=1", Some(basic("u:p"))),
            ("https://user%40corp:p%3Ass%2Fw@app.test", "https://app.test", Some(basic("user@corp:p:ss/w"))),
            ("http://token@app.test/h", "http://app.test/h", Some(basic("token:"))),
            ("http://a:b@c@app.test/h", "http://app.test/h", Some(basic("a:b@c"))),
            ("http://app.test/h?next=a@b", "http://app.test/h?next=a@b", None),
            ("http://app.test/a@b", "http://app.test/a@b", None),
            ("http://app.test", "http://app.test", None),
            ("not a url", "not a url", None),
        ];
        for (url, want, auth) in cases {
            let (got, basic) = split_userinfo(url);
            assert_eq!((got.as_ref(), basic), (want, auth), "{url}");
        }
        assert_eq!(percent_decode("%41%zz%4"), b"A%zz%4");
    }

    /// A kept header is cut on a character boundary, never in the middle of one.
    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("abcdef", 4), "abcd");
        assert_eq!(cut("ab", 4), "ab");
        assert_eq!(cut("aé", 2), "a", "é is two bytes: cutting at 2 would split it");
        assert_eq!(cut("", 0), "");
    }
}
