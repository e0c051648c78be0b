//! Webhook providers behind one trait: verify a request, parse and validate its payload, and say
//! how to answer it.
//!
//! Providers are pure functions of (headers, body, URL, secrets, now): no I/O, no HTTP status
//! codes, no store. That keeps them table-testable against the providers' published vectors. A
//! refusal is a [`Refusal`] with a stable [`RefusalCode`]; `http/` turns it into a status.

pub mod stripe;
pub mod twilio;

use warp::http::HeaderMap;

/// What a provider is given about one inbound request.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The URL as the provider called it (`server.public_url` or the Host header, plus path and
    /// query). Twilio signs it; others ignore it.
    pub url: &'a str,
    /// Unix time, seconds.
    pub now_s: i64,
}

/// A verified, well-formed event, ready to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The provider's own id, the key for duplicate detection.
    pub event_id: String,
    pub event_type: String,
}

/// Why a request was refused; each code is stable and machine-readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalCode {
    InvalidSignature,
    StaleTimestamp,
    InvalidPayload,
    UnsupportedMediaType,
    LivemodeEvent,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::InvalidSignature => "invalid_signature",
            RefusalCode::StaleTimestamp => "stale_timestamp",
            RefusalCode::InvalidPayload => "invalid_payload",
            RefusalCode::UnsupportedMediaType => "unsupported_media_type",
            RefusalCode::LivemodeEvent => "livemode_event",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: RefusalCode,
    /// Says what was wrong and how to fix it; never contains a secret.
    pub message: String,
}

impl Refusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }
}

/// One named structural check, for the `/validate` report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub field: String,
    pub ok: bool,
    pub message: String,
}

impl Check {
    fn pass(field: &str, message: impl Into<String>) -> Check {
        Check { field: field.to_string(), ok: true, message: message.into() }
    }
    fn fail(field: &str, message: impl Into<String>) -> Check {
        Check { field: field.to_string(), ok: false, message: message.into() }
    }
}

/// The body and content type a provider expects in a 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// What the store made of an accepted event, for the provider's answer.
#[derive(Debug, Clone)]
pub struct Accepted<'a> {
    pub id: &'a str,
    pub event_id: &'a str,
    pub duplicate: bool,
}

pub trait Provider: Send + Sync + 'static {
    /// The instance name, used in routes, records and stats.
    fn name(&self) -> &str;

    /// Cheap checks before any hashing (content type).
    fn precheck(&self, headers: &HeaderMap) -> Result<(), Refusal>;

    /// Checks the signature (and its timestamp) exactly as the provider's official SDK does.
    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal>;

    /// Every structural check of the payload, passed or failed.
    fn checks(&self, req: &Inbound<'_>) -> Vec<Check>;

    /// Parses a verified request into the event to record, or refuses it.
    fn parse(&self, req: &Inbound<'_>) -> Result<Parsed, Refusal>;

    /// The 2xx answer the provider expects.
    fn answer(&self, accepted: &Accepted<'_>) -> Answer;

    /// Signs a delivery of `body` to `target` afresh, exactly as the provider would have signed
    /// a request to that URL at `now_s`, so the app's own SDK accepts it (a replay included).
    fn sign_delivery(&self, target: &str, content_type: Option<&str>, body: &[u8], now_s: i64) -> Signed;
}

/// Where a delivery goes and the signature headers it carries (they replace the originals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
}

/// Turns failed checks into one `invalid_payload` refusal that lists them all.
fn refuse_failed(checks: &[Check]) -> Result<(), Refusal> {
    let failed: Vec<String> = checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.field, c.message)).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Refusal::new(RefusalCode::InvalidPayload, failed.join("; ")))
    }
}

/// The media type of a request, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(warp::http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(bare_media_type(v))
}

fn bare_media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Compares two byte strings in constant time (for equal lengths; a length is no secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
