//! Webhook providers behind one trait: verify a request, parse and validate its payload, and say
//! how to answer it.
//!
//! Providers are pure functions of (headers, body, URL, secrets, now): no I/O, no HTTP status
//! codes, no store. That keeps them table-testable against the providers' published vectors. A
//! refusal is a [`Refusal`] with a stable [`RefusalCode`]; `http/` turns it into a status.

pub mod registry;
pub mod settings;

// The registry: every kind, its name in `kind = "..."`, and its file and type. A kind is one file
// implementing `Provider` and `registry::Kind`, plus its line here.
registry::kinds! {
    Stripe = "stripe" => stripe::Stripe,
    Twilio = "twilio" => twilio::Twilio,
    Github = "github" => github::Github,
    Shopify = "shopify" => shopify::Shopify,
    Slack = "slack" => slack::Slack,
    Standard = "standard" => standard::Standard,
    Sendgrid = "sendgrid" => sendgrid::SendGrid,
    Hmac = "hmac" => hmac::Hmac,
}

use warp::http::HeaderMap;

pub(crate) use registry::nonempty_secrets;
pub use registry::{build, Instance};
pub use settings::{HmacAlgorithm, InstanceConfig, SignatureEncoding};

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
    /// How many provider events the request carries: 1, or the size of a batch (SendGrid).
    pub items: u32,
}

impl Parsed {
    pub fn one(event_id: impl Into<String>, event_type: impl Into<String>) -> Parsed {
        Parsed { event_id: event_id.into(), event_type: event_type.into(), items: 1 }
    }
}

/// A realistic request for `stagehook send`, before it is signed: fresh unique ids, the
/// provider's non-signature headers (ids, topics), and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
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
    /// The request body, for answers that echo part of it (Slack's challenge).
    pub body: &'a [u8],
}

pub trait Provider: Send + Sync + 'static {
    /// The instance name, used in routes, records and stats.
    fn name(&self) -> &str;

    /// The headers that carry this provider's signatures or credentials, lowercase: every
    /// header `sign_resend` writes whose value depends on the secret, and none that only carries
    /// an id or a timestamp. Whatever shows stored headers shortens these (`redact::headers`).
    /// Required, so a new kind cannot forget it.
    fn secret_headers(&self) -> &[&'static str];

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

    /// [`Provider::sign_delivery`] for a request whose original headers are known (a delivery,
    /// a replay, `stagehook send`). A scheme that signs a header's value keeps that value, so
    /// the app sees the same message id on every attempt (Standard Webhooks' `webhook-id`).
    fn sign_resend(
        &self,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
        _original: &[(String, String)],
        now_s: i64,
    ) -> Signed {
        self.sign_delivery(target, content_type, body, now_s)
    }

    /// Whether `sign_delivery` can sign at all (SendGrid needs a private key that only
    /// SendGrid has, unless a staging key is configured). When it cannot, deliveries carry the
    /// original signature headers unchanged.
    fn can_sign(&self) -> bool {
        true
    }

    /// The media type of a body `/validate` builds from a JSON object: JSON, unless the kind
    /// receives forms.
    fn dry_run_media_type(&self) -> &'static str {
        "application/json"
    }

    /// The event types `stagehook send` has fixtures for; the first is the default.
    fn sample_types(&self) -> &'static [&'static str];

    /// A fixture of `event_type` (the default when `None`) with fresh unique ids, timestamps
    /// at `now_s`. An unknown type is an error that lists the known ones.
    fn sample(&self, event_type: Option<&str>, now_s: i64) -> Result<Sample, String>;
}

/// A header's value from a list of (lowercase name, value) pairs.
pub fn original_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// A fresh unique id with a prefix, for fixtures (`evt_01J...`).
pub fn fresh_id(prefix: &str) -> String {
    format!("{prefix}{}", ulid::Ulid::new())
}

/// A random-looking version 4 UUID, for fixtures' delivery ids (GitHub, Shopify, Slack).
fn fresh_uuid() -> String {
    let mut b = ulid::Ulid::new().to_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Unix seconds as an RFC 3339 UTC time, for fixtures' timestamps.
fn rfc3339(unix_s: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix_s).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The fixture named `event_type`, or the first, or an error listing them.
fn pick<'a>(types: &'a [&'a str], event_type: Option<&str>) -> Result<&'a str, String> {
    match event_type {
        None => Ok(types[0]),
        Some(t) => types
            .iter()
            .copied()
            .find(|k| *k == t)
            .ok_or_else(|| format!("no fixture `{t}`; known: {}", types.join(", "))),
    }
}

/// A header's value as text, if present and text.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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

/// Refuses a request whose media type is none of `allowed`: "{what} {allowed}{hint}, got ...".
fn require_media_type(headers: &HeaderMap, allowed: &[&str], what: &str, hint: &str) -> Result<(), Refusal> {
    let got = media_type(headers);
    if got.as_deref().is_some_and(|m| allowed.contains(&m)) {
        return Ok(());
    }
    Err(Refusal::new(
        RefusalCode::UnsupportedMediaType,
        format!("{what} {}{hint}, got {}", allowed.join(" or "), got.as_deref().unwrap_or("no Content-Type")),
    ))
}

/// The JSON receipt of an accepted event, for providers that read no particular answer.
fn receipt(accepted: &Accepted<'_>) -> Answer {
    let mut body = serde_json::json!({"received": true, "id": accepted.id, "event_id": accepted.event_id});
    if accepted.duplicate {
        body["duplicate"] = serde_json::Value::Bool(true);
    }
    Answer { content_type: "application/json", body: body.to_string().into_bytes() }
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

/// What the providers' unit tests share: the published vectors and a header map from pairs.
#[cfg(test)]
pub(crate) mod testing {
    use warp::http::{HeaderMap, HeaderName, HeaderValue};

    use super::Provider;

    pub const VECTORS: &str = include_str!("../../tests/vectors/signatures.json");

    /// Checks a provider's `secret_headers` against its own signing. `a` and `b` differ only in
    /// their secret (or signing key), so a header `sign_resend` writes whose value differs
    /// between them carries the signature and must be listed. And every listed header is one
    /// that signing writes, in lowercase: a misspelt name would protect nothing.
    pub fn assert_secret_headers_cover_signing(a: &dyn Provider, b: &dyn Provider) {
        const NOW: i64 = 1_700_000_000;
        let listed = a.secret_headers();
        assert_eq!(listed, b.secret_headers());
        assert!(!listed.is_empty(), "{} lists no header", a.name());
        for kind in a.sample_types() {
            let sample = a.sample(Some(kind), NOW).unwrap();
            let sign = |p: &dyn Provider| {
                p.sign_resend("https://app.test/hook", Some(sample.content_type), &sample.body, &sample.headers, NOW)
            };
            let (x, y) = (sign(a), sign(b));
            assert_eq!(x.headers.len(), y.headers.len(), "{kind}");
            for ((name, one), (other_name, other)) in x.headers.iter().zip(&y.headers) {
                assert_eq!(name, other_name, "{kind}");
                if one != other {
                    assert!(listed.contains(name), "{}: {name} carries the signature but is not listed", a.name());
                }
            }
            for name in listed {
                assert_eq!(*name, name.to_ascii_lowercase());
                assert!(x.headers.iter().any(|(h, _)| h == name), "{}: {name} is listed but not signed", a.name());
            }
        }
    }

    /// Later pairs of the same name are added, not replaced (repeated headers).
    pub fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }
}
