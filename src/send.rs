//! `stagehook send`: fire realistic, correctly signed events at a stagehook (or straight at the
//! app with `--to`), like `stripe trigger` for every provider; with `--from`, the events of an
//! export, so a captured session becomes a fixture a test suite replays.
//!
//! A sample comes from the provider's own fixtures (fresh ids every time) or from a file, and is
//! signed by the provider's `sign_resend`, the same code that signs deliveries to the app (with
//! the sample's own headers as the original ones), so what `send` produces is exactly what the
//! provider's SDK and stagehook's verifier accept.

use std::time::Duration;

use bytes::Bytes;

use crate::config::{Config, ServerConfig};
use crate::delivery::client::Client;
use crate::providers::Endpoint;

/// What to send, as the command line gives it.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// The endpoint name: `stripe`, `twilio` (or `sms`), or a named endpoint.
    pub provider: String,
    /// A fixture type; the provider's default when `None`.
    pub event: Option<String>,
    /// The body to send instead of a fixture, as it is.
    pub payload: Option<Vec<u8>>,
    /// Where to send, the full URL; the running stagehook when `None`.
    pub to: Option<String>,
    /// The running stagehook's base URL; `server.bind`'s when `None`.
    pub server: Option<String>,
    pub count: u32,
}

/// Why nothing (more) could be sent; a refusal by the receiver is an answer, not one of these.
#[derive(Debug, thiserror::Error)]
pub enum SendFailure {
    #[error("no provider `{name}` in this configuration; there are: {known}")]
    UnknownProvider { name: String, known: String },
    #[error("`{0}` has no secret (or signing key) in this configuration, so there is nothing to sign with")]
    NothingToSign(String),
    /// The provider's fixture could not be made (an unknown event type lists the known ones).
    #[error("{0}")]
    Fixture(String),
    #[error("{0}")]
    Client(String),
    /// No answer; `connect` when no connection was made (so the request surely never arrived).
    #[error("{url}: {error}")]
    Post { url: String, error: String, connect: bool },
}

impl SendFailure {
    /// A stable code for `send --json`.
    pub fn code(&self) -> &'static str {
        match self {
            SendFailure::UnknownProvider { .. } => "unknown_provider",
            SendFailure::NothingToSign(_) => "nothing_to_sign",
            SendFailure::Fixture(_) => "unknown_fixture",
            SendFailure::Client(_) => "client",
            SendFailure::Post { .. } => "no_answer",
        }
    }
}

/// The outcome of one request.
#[derive(Debug, Clone)]
pub struct Sent {
    pub url: String,
    pub status: u16,
    pub body: String,
}

/// One line per endpoint: name, kind, path, whether it can verify, and its fixtures.
pub fn list(endpoints: &[Endpoint]) -> String {
    let mut out = String::new();
    for i in endpoints {
        let state = if i.configured { "configured" } else { "no secret" };
        let signs = if i.provider.can_sign() { "" } else { ", cannot sign (no signing_key)" };
        out.push_str(&format!(
            "{:<16} kind {:<9} POST /staging/webhooks/{:<12} {state}{signs}\n{:<16} fixtures: {}\n",
            i.provider.name(),
            i.kind.as_str(),
            i.path,
            "",
            i.provider.sample_types().join(", ")
        ));
    }
    out
}

/// The validator's findings that must stop `send` for `provider` before anything goes out: a
/// placeholder credential in its section. The running stagehook refused to start with it (same
/// finding, `provider.placeholder_secret`), so it verifies with the real secret from its
/// environment while `send`, run in another shell, would sign with the placeholder and get a
/// baffling `401 invalid_signature`. Empty when the provider is unknown: `send` says so itself.
pub fn refusals(
    config: &Config,
    endpoints: &[Endpoint],
    provider: &str,
    env: &std::collections::BTreeMap<String, String>,
) -> Vec<crate::finding::Finding> {
    let Some(endpoint) = find(endpoints, provider) else { return Vec::new() };
    let section = format!("providers.{}", endpoint.provider.name());
    // `Running`: the data folder's lock is none of `send`'s business (the server holds it).
    let report = crate::config::validate::validate(config, env, crate::config::validate::Context::Running);
    report
        .findings
        .into_iter()
        .filter(|f| f.severity == crate::finding::Severity::Error && f.id == "provider.placeholder_secret")
        .filter(|f| f.key == section || f.key.starts_with(&format!("{section}.")))
        .collect()
}

/// [`list`] as JSON, one object per endpoint, for `send --list --json`.
pub fn list_json(endpoints: &[Endpoint]) -> serde_json::Value {
    endpoints
        .iter()
        .map(|i| {
            serde_json::json!({
                "name": i.provider.name(),
                "kind": i.kind.as_str(),
                "path": format!("/staging/webhooks/{}", i.path),
                "configured": i.configured,
                "can_sign": i.provider.can_sign(),
                "fixtures": i.provider.sample_types(),
            })
        })
        .collect()
}

fn find<'a>(endpoints: &'a [Endpoint], name: &str) -> Option<&'a Endpoint> {
    endpoints.iter().find(|i| i.provider.name() == name || i.path == name)
}

/// The base URL `send` expects the running stagehook at: `--server`, else `server.bind`'s.
pub fn server_url(config: &Config, server: Option<&str>) -> String {
    match server {
        Some(s) => s.trim_end_matches('/').to_string(),
        None => ServerConfig::local_url(config.server.bind),
    }
}

/// The URL a request is signed for, and the URL it is sent to. They differ only when stagehook
/// sits behind `server.public_url` (Twilio signs the URL it calls): the signature covers the
/// public URL while the request goes to the local listener.
fn urls(config: &Config, path: &str, to: Option<&str>, server: Option<&str>) -> (String, String) {
    if let Some(to) = to {
        return (to.to_string(), to.to_string());
    }
    let local = server_url(config, server);
    let public = config.server.public_url.as_deref().map(|u| u.trim_end_matches('/').to_string());
    (
        format!("{}/staging/webhooks/{path}", public.unwrap_or_else(|| local.clone())),
        format!("{local}/staging/webhooks/{path}"),
    )
}

/// Builds, signs and sends `count` requests, one after the other, with the endpoints the
/// configuration built; every answer is returned, refusals included. An error is a problem before
/// any answer (unknown provider or fixture, nothing to sign with, no connection).
pub async fn send(
    config: &Config,
    endpoints: &[Endpoint],
    req: &SendRequest,
    now_s: impl Fn() -> i64,
) -> Result<Vec<Sent>, SendFailure> {
    let Some(endpoint) = find(endpoints, &req.provider) else {
        let names: Vec<&str> = endpoints.iter().map(|i| i.provider.name()).collect();
        return Err(SendFailure::UnknownProvider { name: req.provider.clone(), known: names.join(", ") });
    };
    let provider = &endpoint.provider;
    if !endpoint.configured || !provider.can_sign() {
        return Err(SendFailure::NothingToSign(provider.name().to_string()));
    }
    let urls = urls(config, &endpoint.path, req.to.as_deref(), req.server.as_deref());
    let client = Client::new().map_err(|e| SendFailure::Client(e.to_string()))?;
    let mut sent = Vec::new();
    // `--count 0` is refused by the command line; a library caller asking for none gets none.
    for _ in 0..req.count {
        let now = now_s();
        let sample = provider.sample(req.event.as_deref(), now).map_err(|e| SendFailure::Fixture(e.to_string()))?;
        let body = req.payload.clone().unwrap_or(sample.body);
        let content_type = vec![("content-type".into(), sample.content_type.to_string())];
        let msg = Message {
            content_type: Some(sample.content_type),
            body,
            original: &sample.headers,
            extra: content_type,
            keep: Vec::new(),
            timeout: SEND_TIMEOUT,
        };
        sent.push(sign_and_post(&client, endpoint, &urls, msg, now).await?);
    }
    Ok(sent)
}

/// One request to sign and send.
struct Message<'a> {
    content_type: Option<&'a str>,
    body: Vec<u8>,
    /// The headers it came with: kept, but for those the fresh signature replaces.
    original: &'a [(String, String)],
    /// Headers added after those.
    extra: Vec<(String, String)>,
    /// The provider's `forward_headers`: credentials of `original` kept rather than dropped.
    keep: Vec<String>,
    /// The whole exchange's bound.
    timeout: Duration,
}

/// Signs `msg` for the endpoint's URL with its provider's `sign_resend` at `now` and posts it.
async fn sign_and_post(
    client: &Client,
    endpoint: &Endpoint,
    (sign_url, send_url): &(String, String),
    msg: Message<'_>,
    now: i64,
) -> Result<Sent, SendFailure> {
    let signed = endpoint.provider.sign_resend(sign_url, msg.content_type, &msg.body, msg.original, now);
    // The signature may move into the URL (Twilio's bodySHA256); the request follows it.
    let url = match signed.url.strip_prefix(sign_url.as_str()) {
        Some(rest) => format!("{send_url}{rest}"),
        None => signed.url.clone(),
    };
    let mut headers = crate::delivery::resent_headers(msg.original, &signed, &msg.keep);
    headers.extend(msg.extra);
    if crate::providers::original_header(&headers, "user-agent").is_none() {
        headers.push(("user-agent".into(), format!("stagehook-send/{}", env!("CARGO_PKG_VERSION"))));
    }
    let answer =
        client.post(&url, &headers, Bytes::from(msg.body), msg.timeout).await.map_err(|e| SendFailure::Post {
            url: url.clone(),
            error: e.to_string(),
            connect: matches!(e, crate::delivery::client::SendError::Connect(_)),
        })?;
    Ok(Sent { url, status: answer.status, body: String::from_utf8_lossy(&answer.body).into_owned() })
}

/// How long `send` waits for each answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The outcome of sending one exported event again.
#[derive(Debug)]
pub struct Resent {
    pub provider: String,
    pub event_id: String,
    /// The answer (a refusal included), or why there was none.
    pub result: Result<Sent, SendFailure>,
}

/// `send --from`: sends an exported event again, as its provider would, to the running
/// stagehook (or `to`): the body byte for byte, the headers it was received with (redacted ones
/// included; they carry nothing secret) except those the fresh signature replaces, signed by
/// the `sign_resend` of the configured endpoint of its provider at `now`. An event whose
/// provider is not configured, or cannot sign, fails alone; the others still go.
pub async fn resend(
    config: &Config,
    endpoints: &[Endpoint],
    event: &crate::export::Exported,
    client: &Client,
    to: (Option<&str>, Option<&str>),
    now: i64,
) -> Resent {
    resend_within(config, endpoints, event, client, to, now, SEND_TIMEOUT).await
}

/// [`resend`], waiting at most `timeout` for the answer (`stagehook listen --timeout`).
pub async fn resend_within(
    config: &Config,
    endpoints: &[Endpoint],
    event: &crate::export::Exported,
    client: &Client,
    (to, server): (Option<&str>, Option<&str>),
    now: i64,
    timeout: Duration,
) -> Resent {
    let result = async {
        let Some(endpoint) = find(endpoints, &event.provider) else {
            let names: Vec<&str> = endpoints.iter().map(|i| i.provider.name()).collect();
            return Err(SendFailure::UnknownProvider { name: event.provider.clone(), known: names.join(", ") });
        };
        if !endpoint.configured || !endpoint.provider.can_sign() {
            return Err(SendFailure::NothingToSign(endpoint.provider.name().to_string()));
        }
        let urls = urls(config, &endpoint.path, to, server);
        let content_type = crate::providers::original_header(&event.headers, "content-type");
        let keep = config.targets(&event.provider).map(|t| t.forward_headers).unwrap_or_default();
        let msg = Message {
            content_type,
            body: event.body.clone(),
            original: &event.headers,
            extra: Vec::new(),
            keep,
            timeout,
        };
        sign_and_post(client, endpoint, &urls, msg, now).await
    }
    .await;
    Resent { provider: event.provider.clone(), event_id: event.event_id.clone(), result }
}
