//! The HTTP client that posts deliveries: hyper-util's pooled client (already part of warp's
//! tree) with rustls on ring for https targets, and the Mozilla roots compiled in, so the
//! binary needs no system certificate store.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

/// How much of an error response's body an attempt keeps, to say why the app refused.
const ERROR_BODY_PREFIX: usize = 200;
/// Responses are read (so the connection can be reused) up to this much, then dropped.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// What the app answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The start of the body, for the attempt's history (non-2xx only).
    pub body_prefix: String,
    /// The body, up to 64 KiB (`stagehook send` prints it).
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    Connect(String),
    Timeout,
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

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(m) => write!(f, "connect error: {m}"),
            SendError::Timeout => f.write_str("timed out"),
            SendError::Other(m) => write!(f, "transport error: {m}"),
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

    /// POSTs `body` to `url` with `headers`, all within `timeout`.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, SendError> {
        let mut req = hyper::Request::post(url);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
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
            let mut body = res.into_body();
            let mut kept = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Ok(data) = frame.into_data() {
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
            Ok(Answer { status, retry_after, body_prefix, body: kept })
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| SendError::Timeout)?
    }
}

/// The connector deliveries use (plain TCP for http, rustls on ring with the compiled-in roots
/// for https); the validator's target probe connects with it too, so "reachable" means a
/// delivery could connect.
pub fn connector(connect_timeout: Duration) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, ClientError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
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
