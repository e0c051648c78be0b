//! Notifiers: what a message says, the body each kind posts, and how it is signed. A
//! notification is stored as an event of its notifier's lane (`notify.<name>`), so the delivery
//! engine sends it, retries it and holds it behind the lane's breaker like any delivery.

use std::sync::Arc;

use crate::config::{NotifierConfig, NotifierKind, RuleKind};
use crate::delivery::Resign;
use crate::providers::{self, standard, Signed};
use crate::secret::Secret;
use crate::store::NewEvent;

/// The lane of a notifier. A provider name holds no `.` (`config::valid_endpoint_name`), so
/// the two can never meet.
pub fn lane_name(notifier: &str) -> String {
    format!("notify.{notifier}")
}

/// The target a notifier's job carries: its name, not its URL. The URL is a credential (a
/// Slack webhook's token is in its path) and would otherwise be shown in the attempt history;
/// the lane's signer puts the configured URL in its place when it sends.
pub fn job_target(notifier: &str) -> String {
    format!("notifier:{notifier}")
}

/// How long a notifier may take to answer one message.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the message says the alert starts (or still holds, for a repeat) or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Firing,
    Resolved,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Firing => "firing",
            Phase::Resolved => "resolved",
        }
    }
}

/// One alert message, before a notifier gives it its shape.
#[derive(Debug, Clone)]
pub struct Message {
    /// `alerts[<n>]`.
    pub rule: String,
    pub when: RuleKind,
    /// The provider, or empty for a rule over all providers.
    pub subject: String,
    pub phase: Phase,
    pub since_ms: i64,
    pub at_ms: i64,
    pub figure: f64,
    pub detail: String,
    /// The dashboard's URL (`server.public_url` when set).
    pub dashboard: String,
}

impl Message {
    /// The line a person reads: what, which provider, since when, the figure, where to look.
    pub fn text(&self) -> String {
        let what = self.when.as_str();
        let whom =
            if self.subject.is_empty() { "all providers".to_string() } else { format!("provider {}", self.subject) };
        let since = rfc3339(self.since_ms);
        match self.phase {
            Phase::Firing => {
                format!(
                    "[FIRING] {what} ({}) on {whom} since {since}: {}. Dashboard: {}",
                    self.rule, self.detail, self.dashboard
                )
            }
            Phase::Resolved => format!(
                "[RESOLVED] {what} ({}) on {whom}, which held from {since} to {}. Dashboard: {}",
                self.rule,
                rfc3339(self.at_ms),
                self.dashboard
            ),
        }
    }

    /// The body `kind` posts.
    pub fn body(&self, kind: NotifierKind) -> Vec<u8> {
        let value = match kind {
            NotifierKind::Slack => serde_json::json!({ "text": self.text() }),
            // Standard Webhooks' payload shape: `type`, `timestamp`, `data`.
            NotifierKind::Webhook => serde_json::json!({
                "type": format!("alert.{}", self.phase.as_str()),
                "timestamp": rfc3339(self.at_ms),
                "data": {
                    "rule": self.rule,
                    "when": self.when.as_str(),
                    "provider": (!self.subject.is_empty()).then_some(&self.subject),
                    "status": self.phase.as_str(),
                    "since": rfc3339(self.since_ms),
                    "figure": self.figure,
                    "detail": self.detail,
                    "text": self.text(),
                    "dashboard": self.dashboard,
                },
            }),
        };
        serde_json::to_vec(&value).expect("a JSON value serializes")
    }

    /// The notification for `notifier`, as the event its lane stores and delivers.
    pub fn event(&self, notifier: &str, kind: NotifierKind) -> NewEvent {
        let id = providers::fresh_id("msg_");
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if kind == NotifierKind::Webhook {
            // Kept with the stored message, so every retry carries the same `webhook-id` and the
            // receiver can drop a second copy.
            headers.push((standard::ID_HEADER.to_string(), id.clone()));
        }
        let body = self.body(kind);
        NewEvent {
            provider: lane_name(notifier),
            event_id: id,
            event_type: format!("alert.{}", self.phase.as_str()),
            received_at_ms: self.at_ms,
            source_ip: "stagehook".into(),
            headers: headers.into(),
            body: body.into(),
            processing_us: 0,
            targets: vec![job_target(notifier)],
            items: 1,
            parent: None,
            source: crate::store::Source::Webhook,
        }
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A notifier lane's signer: posts to the configured URL, signed with Standard Webhooks for a
/// `webhook` notifier.
pub struct Signer {
    url: Secret,
    secret: Option<Secret>,
}

impl Signer {
    pub fn new(c: &NotifierConfig) -> Arc<Signer> {
        Arc::new(Signer { url: c.url.clone(), secret: c.secret.clone() })
    }
}

impl Resign for Signer {
    fn sign_resend(&self, _target: &str, body: &[u8], original: &[(String, String)], now_s: i64) -> Signed {
        let url = self.url.expose();
        let Some(secret) = &self.secret else { return Signed { url: url.to_string(), headers: Vec::new() } };
        // `Config::check` decoded this secret already; a key that fails here cannot happen, and
        // an empty one would sign nothing a receiver accepts.
        let key = standard::decode_secret(secret.expose()).unwrap_or_default();
        let id = providers::original_header(original, standard::ID_HEADER)
            .map_or_else(|| providers::fresh_id("msg_"), str::to_string);
        standard::sign_message(&key, url, body, id, now_s)
    }
}
