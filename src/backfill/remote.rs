//! `stagehook backfill`'s side: asks the running stagehook for a run
//! (`POST /staging/webhooks/backfill`) and follows it to its end
//! (`GET /staging/webhooks/backfill/<run>`), so the command prints the whole report however long
//! the provider's API takes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long one request may take: the server answers a run within its `wait_seconds` (below),
/// so this is that plus room.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the server holds each request for the run to end.
const WAIT_SECONDS: u64 = 60;
/// The largest answer read: a report lists at most 1000 events and 100 refusals.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

type Http = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why the command could not get a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The server refused the request: its code and message.
    #[error("{message}")]
    Refused { status: u16, code: String, message: String },
    /// Nothing (or not stagehook) answered.
    #[error("{0}")]
    Unreachable(String),
}

/// What the command asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The running stagehook's base URL.
    pub server: String,
    pub token: Option<String>,
}

impl Remote {
    /// Starts a run of `ask` (the request's JSON fields) and returns its report once it ended.
    pub async fn run(&self, mut ask: serde_json::Map<String, Value>) -> Result<Value, RemoteError> {
        let http = client()?;
        ask.insert("wait_seconds".into(), WAIT_SECONDS.into());
        let body = Bytes::from(serde_json::to_vec(&ask).unwrap_or_default());
        let base = format!("{}/staging/webhooks/backfill", self.server);
        let mut report = self.call(&http, hyper::Request::post(&base), body).await?;
        // 202: still running; its report is at its own URL.
        while report["state"] == "running" {
            let id = report["id"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(500)).await;
            report = self.call(&http, hyper::Request::get(format!("{base}/{id}")), Bytes::new()).await?;
        }
        Ok(report)
    }

    /// One request to the running stagehook's API: `path` (with its query) under the server's
    /// URL, `body` sent as JSON when given. Its JSON answer, or the API's refusal with its code
    /// (`stagehook mcp` asks everything it shows this way).
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, RemoteError> {
        let http = client()?;
        let req = hyper::Request::builder().method(method).uri(format!("{}{path}", self.server));
        let body = body.map(|b| Bytes::from(serde_json::to_vec(b).unwrap_or_default())).unwrap_or_default();
        self.call(&http, req, body).await
    }

    async fn call(
        &self,
        http: &Http,
        mut req: hyper::http::request::Builder,
        body: Bytes,
    ) -> Result<Value, RemoteError> {
        let shown = crate::redact::url(&self.server);
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| RemoteError::Unreachable(format!("bad server URL {shown}: {e}")))?;
        let exchange = async {
            let res = http.request(req).await.map_err(|e| {
                RemoteError::Unreachable(format!(
                    "cannot reach stagehook at {shown}: {} (is it running? give its URL with --server)",
                    crate::delivery::client::error_chain(&e)
                ))
            })?;
            let status = res.status().as_u16();
            let bytes = Limited::new(res.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| RemoteError::Unreachable(format!("{shown}: the answer broke off: {e}")))?
                .to_bytes();
            Ok::<_, RemoteError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| RemoteError::Unreachable(format!("{shown} did not answer within {REQUEST_TIMEOUT:?}")))??;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
            RemoteError::Unreachable(format!(
                "{shown} answered HTTP {status} with something that is not stagehook's JSON"
            ))
        })?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let code = value["error"]["code"].as_str().unwrap_or("refused").to_string();
        let mut message = value["error"]["message"].as_str().unwrap_or("refused").to_string();
        if status == 401 {
            message.push_str(" (the command sends --token or STAGEHOOK_TOKEN where it takes one, else the configuration's server.admin_token)");
        }
        Err(RemoteError::Refused { status, code, message })
    }
}

/// The HTTP(S) client of one run or one request.
fn client() -> Result<Http, RemoteError> {
    let connector = crate::delivery::client::connector(Duration::from_secs(10))
        .map_err(|e| RemoteError::Unreachable(e.to_string()))?;
    Ok(HyperClient::builder(TokioExecutor::new()).build(connector))
}
