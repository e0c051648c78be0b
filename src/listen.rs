//! `stagehook listen`: a developer's machine follows a shared staging stagehook over an outbound
//! HTTP(S) connection and delivers each stored event to the local app, signed afresh with the
//! machine's own (local) secret by the provider's `sign_resend` ([`crate::send::resend_within`]),
//! so the app's SDK accepts it as if the provider had called it.
//!
//! The store is the source of truth, not the live stream: the listener keeps the id of the last
//! event it handled (its cursor) in a state file and reads
//! `GET /staging/webhooks/events/export?after=<cursor>` in pages; the stream
//! (`GET /staging/webhooks/events/stream`) only says when to read again. So after a kill, a
//! sleep, a network drop or a server restart it resumes from the store, in arrival order: at
//! least once, and an event the app answered 2xx (and whose cursor was written) never again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Config;
use crate::delivery::client::Client;
use crate::export::Exported;
use crate::providers::Endpoint;
use crate::send::SendFailure;
use crate::tail::urlencoding;
use crate::Clock;

/// Events read from one export request before it is closed and they are delivered: the
/// connection is never held open while the app takes its time.
pub const PAGE: usize = 100;
/// The longest wait between two attempts to reach the staging stagehook.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The first wait after a failure to reach it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The first wait between two attempts of one local delivery; it doubles.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// A stream that says nothing for this long is taken for dead (the server sends a comment every
/// 15 s, `http::stream::KEEP_ALIVE`): after a laptop's sleep, a connection can hang unseen.
pub const STREAM_SILENCE: Duration = Duration::from_secs(45);
/// How much of the app's answer a report carries.
pub const REPORT_BODY_BYTES: usize = 2048;
/// The bound of each request to the staging stagehook but the stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where each provider's events go: a URL per endpoint name, and one for every other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    pub default: Option<String>,
    pub by_name: BTreeMap<String, String>,
}

impl Targets {
    /// `--forward-to URL` (every provider) or `--forward-to NAME=URL`, repeated.
    pub fn parse(flags: &[String]) -> Result<Targets, TargetError> {
        let mut targets = Targets::default();
        for flag in flags {
            let shown = crate::redact::url(flag);
            let (name, url) = match flag.split_once('=') {
                // A URL's query has `=` too: a name is only what comes before `=` when it has
                // no `:` or `/`.
                Some((name, url)) if !name.contains([':', '/']) => (Some(name), url),
                _ => (None, flag.as_str()),
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(TargetError(format!("--forward-to {shown}: not an http(s) URL")));
            }
            match name {
                Some("") => return Err(TargetError(format!("--forward-to {shown}: the name before `=` is empty"))),
                Some(name) => {
                    if targets.by_name.insert(name.to_string(), url.to_string()).is_some() {
                        return Err(TargetError(format!("--forward-to: `{name}` is given twice")));
                    }
                }
                None if targets.default.is_some() => {
                    return Err(TargetError(
                        "--forward-to: two URLs without a name; give the second as NAME=URL".into(),
                    ))
                }
                None => targets.default = Some(url.to_string()),
            }
        }
        Ok(targets)
    }

    /// Where `provider`'s events go.
    pub fn of(&self, provider: &str) -> Option<&str> {
        self.by_name.get(provider).or(self.default.as_ref()).map(String::as_str)
    }
}

/// A `--forward-to` that is not `URL` or `NAME=URL`, for a person to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// Whether `url` may carry the token in the clear: `https`, or `http` to this machine.
pub fn is_safe_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What the listener keeps between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The id of the last event handled (delivered, failed or skipped); none before the first.
    pub cursor: Option<String>,
    /// Where the first run started: events stored from then on (Unix ms).
    pub since_ms: i64,
}

/// Why the listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The staging stagehook refused (a wrong token, an unknown provider): retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// The state file cannot be read or written: the place would be lost.
    #[error("state file {path}: {error}")]
    State { path: String, error: String },
    /// The HTTP client cannot be built.
    #[error("{0}")]
    Client(String),
}

impl State {
    /// The state in `path`, or `None` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<State>, ListenError> {
        let fail = |error: String| ListenError::State { path: path.display().to_string(), error };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| fail(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Writes the state to a temporary file, syncs it and renames it over `path`: a crash leaves
    /// the old state or the new one, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), ListenError> {
        let fail = |e: std::io::Error| ListenError::State { path: path.display().to_string(), error: e.to_string() };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = path.with_extension("json.partial");
        let mut file = std::fs::File::create(&tmp).map_err(fail)?;
        file.write_all(&serde_json::to_vec(self).expect("the state serializes")).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)?;
        // The rename itself is durable once the folder is synced.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub id: String,
    pub provider: String,
    pub event_type: String,
    pub event_id: String,
    /// The app's last answer, if any.
    pub status: Option<u16>,
    pub duration_ms: u64,
    pub attempts: u32,
    pub ok: bool,
    pub error: Option<String>,
    /// Not sent: no target or no local secret for its provider (the error says which flag).
    pub skipped: bool,
    /// The start of the app's last answer, for the report.
    pub body: String,
    /// When the staging stagehook stored the event, and when the app's last answer came (or
    /// the last attempt gave up), both Unix ms: how far behind the listener is.
    pub received_at_ms: i64,
    pub answered_at_ms: i64,
}

impl Outcome {
    /// The `--json` line.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id, "provider": self.provider, "event_type": self.event_type, "event_id": self.event_id,
            "status": self.status, "duration_ms": self.duration_ms, "attempts": self.attempts, "ok": self.ok,
            "error": self.error, "received_at_ms": self.received_at_ms, "answered_at_ms": self.answered_at_ms,
            "body": self.body,
        });
        if self.skipped {
            v["skipped"] = true.into();
        }
        v
    }

    /// The text line.
    pub fn to_text(&self) -> String {
        let head = format!("{:<10} {:<28} {:<28} {}", self.provider, self.event_type, self.event_id, self.id);
        let what = match (&self.status, &self.error) {
            _ if self.skipped => format!("skipped: {}", self.error.as_deref().unwrap_or("")),
            (Some(status), _) if self.ok => format!("-> {status} in {} ms", self.duration_ms),
            (Some(status), _) => {
                format!("-> {status} in {} ms, failed after {} attempts", self.duration_ms, self.attempts)
            }
            (None, error) => {
                format!("-> failed after {} attempts: {}", self.attempts, error.as_deref().unwrap_or("no answer"))
            }
        };
        format!("{head}  {what}")
    }

    /// The body of `POST /events/{id}/listeners`.
    pub fn report(&self, name: &str, host: &str) -> Value {
        json!({
            "name": name, "host": host, "status": self.status, "duration_ms": self.duration_ms,
            "body": self.body, "error": self.error,
        })
    }
}

/// One listener: what the command line gave.
pub struct Listen {
    /// The staging stagehook's base URL, without a trailing `/`.
    pub server: String,
    pub token: Option<String>,
    pub name: String,
    pub host: String,
    pub targets: Targets,
    /// Endpoint names to follow; all when empty.
    pub providers: Vec<String>,
    /// Event type patterns ([`crate::filter::type_matches`]); all when empty.
    pub types: Vec<String>,
    pub state_path: PathBuf,
    /// Where a first run starts (Unix ms); now when `None`.
    pub since_ms: Option<i64>,
    pub json: bool,
    pub report: bool,
    pub timeout: Duration,
    pub retries: u32,
    /// The local configuration: the secrets to sign with.
    pub config: Config,
    pub endpoints: Vec<Endpoint>,
    pub clock: Clock,
}

/// A request to the staging stagehook that did not work out.
enum Trouble {
    /// Retrying will not help.
    Refused(String),
    /// Later, perhaps.
    Transient(String),
}

type Getter = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

impl Listen {
    /// Listens until the staging stagehook refuses or the state cannot be written; rides out
    /// everything else (a server down, a stream cap, a network gone) with a backoff.
    pub async fn run(&self, out: &mut impl Write) -> Result<(), ListenError> {
        let connector = crate::delivery::client::connector(Duration::from_secs(10))
            .map_err(|e| ListenError::Client(e.to_string()))?;
        let getter: Getter = HyperClient::builder(TokioExecutor::new()).build(connector);
        let client = Client::new().map_err(|e| ListenError::Client(e.to_string()))?;
        let mut state = match State::load(&self.state_path)? {
            Some(state) => {
                if self.since_ms.is_some() {
                    eprintln!(
                        "stagehook listen: --since is for a first run; resuming from {} instead",
                        self.state_path.display()
                    );
                }
                state
            }
            None => {
                let state = State { cursor: None, since_ms: self.since_ms.unwrap_or_else(|| self.clock.now_ms()) };
                state.save(&self.state_path)?;
                state
            }
        };
        eprintln!(
            "stagehook listen: following {} as {} (state in {})",
            crate::redact::url(&self.server),
            self.name,
            self.state_path.display()
        );
        let mut backoff = FIRST_BACKOFF;
        loop {
            let stream = self.open_stream(&getter).await;
            // Caught up after the stream is open: nothing stored in between is missed.
            match self.catch_up(&getter, &client, &mut state, out).await {
                Ok(()) => {}
                Err(Trouble::Refused(m)) => return Err(ListenError::Refused(m)),
                Err(Trouble::Transient(m)) => {
                    eprintln!("stagehook listen: {m}; retrying in {} s", backoff.as_secs_f32());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            let body = match stream {
                Ok(body) => body,
                Err(Trouble::Refused(m)) => return Err(ListenError::Refused(m)),
                Err(Trouble::Transient(m)) => {
                    eprintln!("stagehook listen: {m}; retrying in {} s", backoff.as_secs_f32());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = FIRST_BACKOFF;
            match self.follow(body, &getter, &client, &mut state, out).await {
                Err(Trouble::Refused(m)) => return Err(ListenError::Refused(m)),
                Err(Trouble::Transient(m)) => eprintln!("stagehook listen: {m}; reconnecting"),
                Ok(()) => eprintln!("stagehook listen: the stream ended; reconnecting"),
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// Reads the stream; each new event (or a `reset`: changes were missed) is a reason to read
    /// the export again. Ends when the stream does, or falls silent.
    async fn follow(
        &self,
        mut body: hyper::body::Incoming,
        getter: &Getter,
        client: &Client,
        state: &mut State,
        out: &mut impl Write,
    ) -> Result<(), Trouble> {
        let mut text = String::new();
        loop {
            let frame = match tokio::time::timeout(STREAM_SILENCE, body.frame()).await {
                Err(_) => return Err(Trouble::Transient("the stream fell silent".into())),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(Trouble::Transient(format!("the stream broke: {e}"))),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(chunk) = frame.into_data() else { continue };
            text.push_str(&String::from_utf8_lossy(&chunk));
            let mut wake = false;
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                wake |= crate::tail::parse(&block).is_some_and(|m| m.event == "event" || m.event == "reset");
            }
            if wake {
                self.catch_up(getter, client, state, out).await?;
            }
        }
    }

    fn base(&self, path: &str) -> String {
        format!("{}/staging/webhooks{path}", self.server)
    }

    /// The one provider the server can filter on; with several, the filter is ours.
    fn server_provider(&self) -> Option<&str> {
        match self.providers.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The stream's URL, with who listens and for what, for the server's list of listeners.
    fn stream_url(&self) -> String {
        let mut query = Vec::new();
        if let Some(p) = self.server_provider() {
            query.push(format!("provider={}", urlencoding(p)));
        }
        query.push(format!("listener={}", urlencoding(&self.name)));
        query.push(format!("listener_host={}", urlencoding(&self.host)));
        query.push(format!("listener_filters={}", urlencoding(&self.filters_text())));
        format!("{}?{}", self.base("/events/stream"), query.join("&"))
    }

    /// The filters, as a person reads them: `provider=stripe type=invoice.*`, or `all events`.
    pub fn filters_text(&self) -> String {
        let mut parts: Vec<String> = self.providers.iter().map(|p| format!("provider={p}")).collect();
        parts.extend(self.types.iter().map(|t| format!("type={t}")));
        if parts.is_empty() {
            "all events".into()
        } else {
            parts.join(" ")
        }
    }

    fn get(&self, url: &str) -> Result<hyper::Request<Full<Bytes>>, Trouble> {
        let mut req = hyper::Request::get(url);
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        req.body(Full::new(Bytes::new())).map_err(|e| Trouble::Refused(format!("bad URL: {e}")))
    }

    /// A request's answer, or why not: a 4xx is a refusal (but 408 and 429), anything else later.
    async fn send(
        &self,
        getter: &Getter,
        url: &str,
        what: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Trouble> {
        let shown = crate::redact::url(url);
        let res = tokio::time::timeout(REQUEST_TIMEOUT, getter.request(self.get(url)?))
            .await
            .map_err(|_| Trouble::Transient(format!("{what}: no answer from {shown}")))?
            .map_err(|e| {
                Trouble::Transient(format!(
                    "{what}: cannot reach {shown}: {}",
                    crate::delivery::client::error_chain(&e)
                ))
            })?;
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let body = tokio::time::timeout(REQUEST_TIMEOUT, res.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let parsed = serde_json::from_slice::<Value>(&body).ok();
        let code = parsed.as_ref().and_then(|v| v["error"]["code"].as_str().map(str::to_string));
        let message = parsed
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        let text = format!("{what}: {shown} answered {status}: {message}");
        if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            let hint = match status.as_u16() {
                401 | 403 => " (give the staging stagehook's token with --token or STAGEHOOK_TOKEN)",
                _ => "",
            };
            return Err(Trouble::Refused(format!("{text}{hint}")));
        }
        if code.as_deref() == Some("too_many_streams") {
            return Err(Trouble::Transient(format!("{what}: the staging stagehook has too many open streams")));
        }
        Err(Trouble::Transient(text))
    }

    async fn open_stream(&self, getter: &Getter) -> Result<hyper::body::Incoming, Trouble> {
        Ok(self.send(getter, &self.stream_url(), "stream").await?.into_body())
    }

    /// The export after the cursor (or from the first run's start), at most [`PAGE`] events.
    async fn page(&self, getter: &Getter, state: &State) -> Result<Vec<Exported>, Trouble> {
        let mut query = match &state.cursor {
            Some(id) => vec![format!("after={}", urlencoding(id))],
            None => vec![format!("since={}", state.since_ms)],
        };
        if let Some(p) = self.server_provider() {
            query.push(format!("provider={}", urlencoding(p)));
        }
        let url = format!("{}?{}", self.base("/events/export"), query.join("&"));
        let mut body = self.send(getter, &url, "export").await?.into_body();
        let mut events = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        while events.len() < PAGE {
            let frame = match tokio::time::timeout(REQUEST_TIMEOUT, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                // A broken transfer: what came whole is good; the rest is read again next time.
                Ok(Some(Err(_))) | Err(_) if !events.is_empty() => break,
                Ok(Some(Err(e))) => return Err(Trouble::Transient(format!("export: the transfer broke: {e}"))),
                Err(_) => return Err(Trouble::Transient("export: the transfer stalled".into())),
            };
            let Ok(chunk) = frame.into_data() else { continue };
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let event = crate::export::decode_line(&line[..line.len() - 1]).map_err(|e| {
                    Trouble::Refused(format!(
                        "export: a line this stagehook cannot read ({e}); is it older than the server?"
                    ))
                })?;
                if event.id.is_none() {
                    return Err(Trouble::Refused("export: a line without its `id`".into()));
                }
                events.push(event);
                if events.len() == PAGE {
                    break;
                }
            }
        }
        Ok(events)
    }

    /// Reads the export page after page, handling each event and moving the cursor past it,
    /// until a page comes back empty.
    async fn catch_up(
        &self,
        getter: &Getter,
        client: &Client,
        state: &mut State,
        out: &mut impl Write,
    ) -> Result<(), Trouble> {
        loop {
            let page = self.page(getter, state).await?;
            if page.is_empty() {
                return Ok(());
            }
            for event in page {
                if self.wanted(&event) {
                    let outcome = self.deliver(client, &event).await;
                    // A reader that went away (`| head`) ends nothing here.
                    let line = if self.json { outcome.to_json().to_string() } else { outcome.to_text() };
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                    if self.report && !outcome.skipped {
                        self.send_report(client, &outcome).await;
                    }
                }
                state.cursor = event.id.clone();
                state.save(&self.state_path).map_err(|e| Trouble::Refused(e.to_string()))?;
            }
        }
    }

    fn wanted(&self, event: &Exported) -> bool {
        (self.providers.is_empty() || self.providers.contains(&event.provider))
            && crate::filter::type_matches(&self.types, &event.event_type)
    }

    /// Delivers one event to its target, retrying connection failures, 5xx, 408 and 429.
    async fn deliver(&self, client: &Client, event: &Exported) -> Outcome {
        let mut outcome = Outcome {
            id: event.id.clone().unwrap_or_default(),
            provider: event.provider.clone(),
            event_type: event.event_type.clone(),
            event_id: event.event_id.clone(),
            status: None,
            duration_ms: 0,
            attempts: 0,
            ok: false,
            error: None,
            skipped: false,
            body: String::new(),
            received_at_ms: event.received_at_ms,
            answered_at_ms: self.clock.now_ms(),
        };
        let p = &event.provider;
        let Some(to) = self.targets.of(p) else {
            outcome.skipped = true;
            outcome.error =
                Some(format!("no target for `{p}`: add --forward-to {p}=URL (or a --forward-to URL for all)"));
            return outcome;
        };
        let signs = self.endpoints.iter().any(|e| e.provider.name() == p && e.configured && e.provider.can_sign());
        if !signs {
            outcome.skipped = true;
            outcome.error = Some(format!(
                "no local secret for `{p}`: add --secret {p}=SECRET or a [providers.{p}] section to --config"
            ));
            return outcome;
        }
        let mut wait = RETRY_BACKOFF;
        loop {
            outcome.attempts += 1;
            let started = Instant::now();
            let now = self.clock.now_s();
            let sent = crate::send::resend_within(
                &self.config,
                &self.endpoints,
                event,
                client,
                (Some(to), None),
                now,
                self.timeout,
            )
            .await;
            outcome.duration_ms = started.elapsed().as_millis() as u64;
            outcome.answered_at_ms = self.clock.now_ms();
            let retry = match sent.result {
                Ok(answer) => {
                    outcome.status = Some(answer.status);
                    outcome.ok = (200..300).contains(&answer.status);
                    outcome.error = (!outcome.ok).then(|| format!("the app answered {}", answer.status));
                    outcome.body = prefix(&answer.body, REPORT_BODY_BYTES);
                    matches!(answer.status, 408 | 429 | 500..=599)
                }
                Err(SendFailure::Post { error, connect, .. }) => {
                    outcome.status = None;
                    outcome.body.clear();
                    outcome.error = Some(format!("{}: {error}", crate::redact::url(to)));
                    connect
                }
                Err(e) => {
                    outcome.error = Some(e.to_string());
                    false
                }
            };
            if !retry || outcome.attempts > self.retries {
                return outcome;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }

    /// `POST /events/{id}/listeners`; a failure is a warning, never the end.
    async fn send_report(&self, client: &Client, outcome: &Outcome) {
        let url = self.base(&format!("/events/{}/listeners", urlencoding(&outcome.id)));
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(token) = &self.token {
            headers.push(("authorization".into(), format!("Bearer {token}")));
        }
        let body = Bytes::from(outcome.report(&self.name, &self.host).to_string());
        let warning = match client.post(&url, &headers, body, REQUEST_TIMEOUT).await {
            Ok(answer) if (200..300).contains(&answer.status) => return,
            Ok(answer) => format!("answered {}: {}", answer.status, answer.body_prefix),
            Err(e) => e.to_string(),
        };
        eprintln!("stagehook listen: warning: the report of {} was not taken: {warning}", outcome.id);
    }
}

/// The first `max` bytes of `text`, cut at a character's boundary.
fn prefix(text: &str, max: usize) -> String {
    crate::text::cut(text, max).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_a_default_and_one_per_name() {
        let t = Targets::parse(&["http://127.0.0.1:3000/hooks?x=1".into(), "twilio=http://127.0.0.1:3000/sms".into()])
            .unwrap();
        assert_eq!(t.of("stripe"), Some("http://127.0.0.1:3000/hooks?x=1"));
        assert_eq!(t.of("twilio"), Some("http://127.0.0.1:3000/sms"));
        assert!(Targets::parse(&["ftp://x".into()]).is_err());
        assert!(Targets::parse(&["http://a".into(), "http://b".into()]).is_err());
        assert!(Targets::parse(&["=http://a".into()]).is_err());
        assert_eq!(Targets::parse(&[]).unwrap().of("stripe"), None);
    }

    #[test]
    fn plain_http_is_safe_only_to_this_machine() {
        for (url, safe) in [
            ("https://staging.example.com", true),
            ("http://127.0.0.1:8080", true),
            ("http://localhost:8080/", true),
            ("http://[::1]:8080", true),
            ("http://u:p@127.0.0.2", true),
            ("http://staging.example.com", false),
            ("http://10.0.0.5:8080", false),
            ("http://localhost.example.com", false),
            ("ftp://127.0.0.1", false),
        ] {
            assert_eq!(is_safe_url(url), safe, "{url}");
        }
    }

    #[test]
    fn the_state_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/listen.json");
        assert_eq!(State::load(&path).unwrap(), None);
        let state = State { cursor: Some("01J".into()), since_ms: 5 };
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), Some(state));
        assert!(!path.with_extension("json.partial").exists());
        std::fs::write(&path, "{").unwrap();
        assert!(State::load(&path).is_err());
    }

    #[test]
    fn a_prefix_cuts_at_a_character() {
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(prefix("abc", 10), "abc");
    }
}
