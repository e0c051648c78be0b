//! `stagehook tail`: the running stagehook's live stream (`GET /staging/webhooks/events/stream`)
//! printed one line per new event and per change of status (a delivery's outcome among them):
//! coloured on a terminal, plain when piped, or the message's JSON with `--json`. It reconnects
//! with `Last-Event-ID` when the connection drops, so nothing is missed that the server still
//! holds; when it missed more, it says so on stderr.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The longest wait between two attempts to reconnect.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Tail {
    /// The running stagehook's base URL (`http://127.0.0.1:8080`).
    pub server: String,
    pub token: Option<String>,
    pub provider: Option<String>,
    pub status: Option<String>,
    pub json: bool,
    pub colour: bool,
}

/// Why tailing stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The server refused the stream (a bad filter, a wrong token): retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// Nothing answered at the start.
    #[error("cannot reach stagehook at {url}: {error}")]
    Unreachable { url: String, error: String },
}

impl Tail {
    fn url(&self) -> String {
        let mut query = Vec::new();
        for (k, v) in [("provider", &self.provider), ("status", &self.status)] {
            if let Some(v) = v {
                query.push(format!("{k}={}", urlencoding(v)));
            }
        }
        let q = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
        format!("{}/staging/webhooks/events/stream{q}", self.server.trim_end_matches('/'))
    }

    /// Prints until the server refuses the stream; reconnects on anything else.
    pub async fn run(&self, out: &mut impl Write) -> Result<(), TailError> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut last_id: Option<String> = None;
        let mut backoff = Duration::from_millis(250);
        let mut connected_once = false;
        loop {
            let mut req = hyper::Request::get(self.url());
            if let Some(token) = &self.token {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            if let Some(id) = &last_id {
                req = req.header("last-event-id", id.as_str());
            }
            let req = req.body(Empty::new()).map_err(|e| TailError::Refused(e.to_string()))?;
            let res = match client.request(req).await {
                Ok(res) => res,
                Err(e) if !connected_once => {
                    return Err(TailError::Unreachable { url: self.server.clone(), error: e.to_string() })
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let status = res.status();
            if status.is_client_error() {
                let body = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let message = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                return Err(TailError::Refused(format!("{status}: {message}")));
            }
            if !status.is_success() {
                // Too many streams, or the server is stopping: later.
                tokio::time::sleep(MAX_BACKOFF).await;
                continue;
            }
            connected_once = true;
            backoff = Duration::from_millis(250);
            let mut body = res.into_body();
            let mut text = String::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(chunk) = frame.into_data() else { continue };
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    if let Some(m) = parse(&block) {
                        if !m.id.is_empty() {
                            last_id = Some(m.id.clone());
                        }
                        self.print(out, &m);
                    }
                }
            }
            // The stream ended (the server stopped or restarted): reconnect where it left off.
            tokio::time::sleep(backoff).await;
        }
    }

    fn print(&self, out: &mut impl Write, m: &Message) {
        let line = match m.event.as_str() {
            "reset" => {
                eprintln!("stagehook tail: some changes were missed (the server restarted or they were too many)");
                return;
            }
            "event" | "status" if self.json => {
                let mut data = m.data.clone();
                if let Some(o) = data.as_object_mut() {
                    o.insert("kind".into(), Value::String(m.event.clone()));
                }
                data.to_string()
            }
            "event" | "status" => self.text(&m.event, &m.data),
            _ => return,
        };
        // A reader that went away (`| head`) ends nothing here; the next write fails the same.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn text(&self, kind: &str, d: &Value) -> String {
        let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
        let at = d["at_ms"].as_i64().map(clock).unwrap_or_default();
        let status = s("status");
        let what = if kind == "event" {
            format!("new {} {}", s("type"), self.paint(&status, &status))
        } else {
            let error = d["last_error"].as_str().filter(|_| status != "processed" && status != "processing");
            let attempts = d["attempts"].as_u64().unwrap_or(0);
            let mut w = format!("-> {}", self.paint(&status, &status));
            if attempts > 0 {
                w.push_str(&format!(" (attempt {attempts})"));
            }
            if let Some(e) = error {
                w.push_str(&format!(": {e}"));
            }
            w
        };
        format!("{at}  {:<10} {:<28} {what}", s("provider"), s("event_id"))
    }

    fn paint(&self, status: &str, text: &str) -> String {
        if !self.colour {
            return text.to_string();
        }
        let code = match status {
            "processed" => "32",
            "failed" => "31",
            "retrying" | "processing" => "33",
            _ => "36",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// `HH:MM:SS` (UTC) of a time in ms since the epoch.
fn clock(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()[11..19].to_string()
}

pub(crate) fn urlencoding(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One Server-Sent Events message (`stagehook listen` reads the stream with it too).
pub(crate) struct Message {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// One Server-Sent Events block; `None` for a comment (the keep-alive).
pub(crate) fn parse(block: &str) -> Option<Message> {
    let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_string()));
    let data = field("data:")?;
    Some(Message {
        event: field("event:").unwrap_or_else(|| "message".into()),
        id: field("id:").unwrap_or_default(),
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(colour: bool) -> Tail {
        Tail { server: "http://x".into(), token: None, provider: None, status: None, json: false, colour }
    }

    #[test]
    fn a_change_is_one_line_coloured_only_on_a_terminal() {
        let block = "event: status\nid: ab.3\ndata: {\"provider\":\"stripe\",\"event_id\":\"evt_1\",\"type\":\"t\",\"status\":\"retrying\",\"attempts\":2,\"last_error\":\"HTTP 500\",\"at_ms\":0}\n\n";
        let m = parse(block).unwrap();
        assert_eq!((m.event.as_str(), m.id.as_str()), ("status", "ab.3"));
        let plain = tail(false).text(&m.event, &m.data);
        assert_eq!(plain, format!("00:00:00  {:<10} {:<28} -> retrying (attempt 2): HTTP 500", "stripe", "evt_1"));
        assert!(tail(true).text(&m.event, &m.data).contains("\x1b[33mretrying\x1b[0m"));
        assert!(parse(": keep-alive\n\n").is_none());
        let with = Tail { provider: Some("stripe eu".into()), status: Some("failed".into()), ..tail(false) };
        assert_eq!(with.url(), "http://x/staging/webhooks/events/stream?provider=stripe%20eu&status=failed");
    }
}
