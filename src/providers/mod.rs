//! Webhook providers behind one trait: verify a request, parse and validate its payload, and say
//! how to answer it.
//!
//! Providers are pure functions of (headers, body, URL, secrets, now): no I/O, no HTTP status
//! codes, no store. That keeps them table-testable against the providers' published vectors. A
//! refusal is a [`Refusal`] with a stable [`RefusalCode`]; `http/` turns it into a status.

pub mod api;
pub mod diagnose;
pub mod json;
pub mod kind;
pub mod registry;
pub(crate) mod signing;

// The kinds, one file each. They are declared here, outside the `kinds!` list, so that rustfmt
// reaches them (it does not format a module declared inside a macro).
pub mod github;
pub mod hmac;
pub mod sendgrid;
pub mod shopify;
pub mod slack;
pub mod standard;
pub mod stripe;
pub mod twilio;

// The registry: every kind, its name in `kind = "..."`, and its file and type. A kind is one file
// implementing `Provider` and `kind::Kind` (with its own settings type), its module above,
// and its line here.
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

pub use self::hmac::{HmacAlgorithm, SignatureEncoding};
pub use registry::{build, Endpoint, KindConfig};

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

/// Why a credential or a signature header cannot be read: a fixed reason that reads on from
/// what was read (`is not base64`), for the caller to put after the key or header it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

impl From<&'static str> for Malformed {
    fn from(reason: &'static str) -> Malformed {
        Malformed(reason)
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
    /// The endpoint name, used in routes, records and stats.
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

    /// Whether the signature covers the URL called (Twilio's does), so that a diagnosis tries
    /// the URLs the sender may have signed.
    fn signs_url(&self) -> bool {
        false
    }

    /// When the request says it was signed (Unix seconds), for kinds whose signature carries a
    /// timestamp: a diagnosis of a stale one says by how much.
    fn signed_at(&self, _req: &Inbound<'_>) -> Option<i64> {
        None
    }

    /// The fingerprints of the secrets it verifies with ([`crate::secret::Secret::fingerprint`]),
    /// for a diagnosis that blames the secret.
    fn secret_fingerprints(&self) -> Vec<String> {
        Vec::new()
    }

    /// What the kind alone can tell of a refused signature before the diagnosis tries anything
    /// again: a signature of a scheme it has no key for, or one that cannot be read.
    fn signature_diagnosis(&self, _req: &Inbound<'_>) -> Option<diagnose::Diagnosis> {
        None
    }

    /// The kind's own words for "nothing tried makes the signature verify", instead of the
    /// secret's mismatch (a public key's, for a kind that verifies with one).
    fn mismatch_diagnosis(&self, _req: &Inbound<'_>) -> Option<diagnose::Diagnosis> {
        None
    }

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

    /// Its read access to the provider's API, for recovering missed events (`backfill/`), or
    /// why there is none.
    fn api_access(&self) -> Result<&api::ApiAccess, api::NoApi> {
        Err(api::NoApi::NotOffered)
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

    /// How long the provider itself waits for the app's answer before it counts a delivery as
    /// failed, where its documentation publishes it (each kind cites the page). An attempt
    /// slower than this is flagged (`delivery/`), though stagehook's own `timeout` decides
    /// its outcome.
    fn delivery_timeout(&self) -> Option<std::time::Duration> {
        None
    }

    /// What the event in a stored `body` refers to, for its detail: Stripe's thin events carry a
    /// `related_object` (`id`, `type`, `url`) in place of the object itself. `None` for the kinds
    /// and events without one.
    fn related_object(&self, _body: &[u8]) -> Option<serde_json::Value> {
        None
    }

    /// The event types `stagehook send` has fixtures for; the first is the default.
    fn sample_types(&self) -> &'static [&'static str];

    /// A fixture of `event_type` (the default when `None`) with fresh unique ids, timestamps
    /// at `now_s`. An unknown type is an error that lists the known ones.
    fn sample(&self, event_type: Option<&str>, now_s: i64) -> Result<Sample, UnknownFixture>;
}

impl ProviderKind {
    /// The provider's name as its own documentation writes it, for messages about it ("slower
    /// than Slack's 3 s timeout").
    pub fn title(self) -> &'static str {
        match self {
            ProviderKind::Stripe => "Stripe",
            ProviderKind::Twilio => "Twilio",
            ProviderKind::Github => "GitHub",
            ProviderKind::Shopify => "Shopify",
            ProviderKind::Slack => "Slack",
            ProviderKind::Standard => "Standard Webhooks",
            ProviderKind::Sendgrid => "SendGrid",
            ProviderKind::Hmac => "HMAC",
        }
    }

    /// Whether the provider sends an event again by itself after a delivery that timed out.
    /// GitHub does not: it records the delivery as failed and leaves redelivery to a person
    /// (https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries).
    pub fn retries_after_timeout(self) -> bool {
        !matches!(self, ProviderKind::Github)
    }
}

/// `stagehook send` asked for an event type that a provider has no fixture for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no fixture `{asked}`; known: {}", .known.join(", "))]
pub struct UnknownFixture {
    pub asked: String,
    /// The provider's [`Provider::sample_types`].
    pub known: &'static [&'static str],
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
fn pick(types: &'static [&'static str], event_type: Option<&str>) -> Result<&'static str, UnknownFixture> {
    match event_type {
        None => Ok(types[0]),
        Some(t) => {
            types.iter().copied().find(|k| *k == t).ok_or_else(|| UnknownFixture { asked: t.to_string(), known: types })
        }
    }
}

/// A header's value as text, if present and text.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A structural check that header `name` (shown as `shown`) is present, text and not blank, and
/// its trimmed value when it is.
fn required_header<'a>(headers: &'a HeaderMap, name: &str, shown: &str) -> (Check, Option<&'a str>) {
    match header_str(headers, name).map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => (Check::pass(shown, "present"), Some(v)),
        None => (Check::fail(shown, "required header is missing, empty or not text"), None),
    }
}

/// The signature header `name`, or `invalid_signature`: "missing {shown} header".
fn signature_value<'a>(
    headers: &'a HeaderMap,
    name: &str,
    shown: &str,
) -> Result<&'a warp::http::HeaderValue, Refusal> {
    headers.get(name).ok_or_else(|| Refusal::new(RefusalCode::InvalidSignature, format!("missing {shown} header")))
}

/// [`signature_value`] as text, or `invalid_signature`: "{shown} header is not text".
fn signature_text<'a>(headers: &'a HeaderMap, name: &str, shown: &str) -> Result<&'a str, Refusal> {
    signature_value(headers, name, shown)?
        .to_str()
        .map_err(|_| Refusal::new(RefusalCode::InvalidSignature, format!("{shown} header is not text")))
}

/// Where a delivery goes and the signature headers it carries (they replace the originals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
}

/// Why an inspection whose checks all passed gave no event: it reads the event from the same
/// places its checks look at, so this does not happen.
const NO_EVENT: &str = "no event in the request";

/// The event of an inspection (every check, and the event when they pass): the failed checks as
/// one refusal, else the event, else `invalid_payload` saying `none`.
fn inspected((checks, parsed): (Vec<Check>, Option<Parsed>), none: &'static str) -> Result<Parsed, Refusal> {
    refuse_failed(&checks)?;
    parsed.ok_or_else(|| Refusal::new(RefusalCode::InvalidPayload, none))
}

/// A body parsed as JSON, or the failed `body` check that says why it is not: not JSON, or a
/// key repeated in an object ([`json`]).
fn json_body(body: &[u8]) -> Result<serde_json::Value, Check> {
    json::parse(body).map_err(|e| Check::fail("body", e.said("not JSON: ")))
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
/// Written from borrowed fields, not built as a `Value` map: every accepted request answers
/// one. The fields are in the order a `Value` map wrote them (by name), so the bytes are the same.
fn receipt(accepted: &Accepted<'_>) -> Answer {
    #[derive(serde::Serialize)]
    struct Receipt<'a> {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
        event_id: &'a str,
        id: &'a str,
        received: bool,
    }
    let receipt =
        Receipt { duplicate: accepted.duplicate, event_id: accepted.event_id, id: accepted.id, received: true };
    let body = serde_json::to_vec(&receipt).expect("a struct of strings and booleans always serializes");
    Answer { content_type: "application/json", body }
}

/// The media type of a request, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(warp::http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(bare_media_type(v))
}

fn bare_media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// What the providers' unit tests share: the published vectors, header maps from pairs, and the
/// request a signed sample makes.
#[cfg(test)]
pub(crate) mod testing {
    use serde_json::Value;
    use warp::http::{HeaderMap, HeaderName, HeaderValue};

    use super::{Inbound, Parsed, Provider, Sample, Signed};

    pub const VECTORS: &str = include_str!("../../tests/vectors/signatures.json");

    /// One published vector: an object of `tests/vectors/signatures.json`, indexable as JSON.
    pub struct Vector(Value);

    impl Vector {
        /// The text at `key`; a vector without it is a broken fixture, so this panics naming it.
        pub fn str(&self, key: &str) -> &str {
            self.0[key].as_str().unwrap_or_else(|| panic!("the vector has no text `{key}`"))
        }

        /// The integer at `key`, likewise.
        pub fn int(&self, key: &str) -> i64 {
            self.0[key].as_i64().unwrap_or_else(|| panic!("the vector has no integer `{key}`"))
        }
    }

    impl std::ops::Deref for Vector {
        type Target = Value;

        fn deref(&self) -> &Value {
            &self.0
        }
    }

    /// The published vectors of one kind, as `signatures.json` names it (`github`,
    /// `standard_webhooks`...), in their order.
    pub fn vectors(kind: &str) -> Vec<Vector> {
        let all: Value = serde_json::from_str(VECTORS).expect("signatures.json is JSON");
        let Value::Array(list) = &all[kind] else { panic!("signatures.json has no list `{kind}`") };
        list.iter().cloned().map(Vector).collect()
    }

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

    /// Secrets from their values, in order.
    pub fn secrets(values: &[&str]) -> Vec<crate::secret::Secret> {
        values.iter().map(|s| crate::secret::Secret::new(*s)).collect()
    }

    /// [`header_map`] of a JSON request: `content-type: application/json`, then `pairs`.
    pub fn json_headers(pairs: &[(&str, &str)]) -> HeaderMap {
        header_map(&[&[("content-type", "application/json")], pairs].concat())
    }

    /// A fixture signed as a delivery and received: see [`receive_sample`].
    pub struct Received {
        pub sample: Sample,
        pub signed: Signed,
        /// What the app receives: [`delivered_headers`].
        pub headers: HeaderMap,
        pub parsed: Parsed,
    }

    /// Makes a fixture of `kind` at `now_s`, signs it as a delivery at `now_s`, and checks that
    /// the request passes everything a provider asks of one: the precheck, the signature, every
    /// structural check, the parse.
    pub fn receive_sample(p: &dyn Provider, kind: &str, now_s: i64) -> Received {
        let sample = p.sample(Some(kind), now_s).unwrap();
        let signed = p.sign_delivery("http://app.test/hook", Some(sample.content_type), &sample.body, now_s);
        let headers = delivered_headers(&sample, &signed);
        let req = Inbound { headers: &headers, body: &sample.body, url: &signed.url, now_s };
        p.precheck(&headers).unwrap();
        p.verify(&req).unwrap();
        let checks = p.checks(&req);
        assert!(checks.iter().all(|c| c.ok), "{} {kind}: {checks:?}", p.name());
        let parsed = p.parse(&req).unwrap();
        Received { sample, signed, headers, parsed }
    }

    /// The headers a delivery carries, as pairs for [`header_map`].
    pub fn signed_pairs(signed: &Signed) -> Vec<(&str, &str)> {
        signed.headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// The headers of a signed sample as the app receives them: its content type, its own
    /// headers, and the signed ones, which replace a sample's header of the same name (as
    /// deliveries do).
    pub fn delivered_headers(sample: &Sample, signed: &Signed) -> HeaderMap {
        let mut h = header_map(&[("content-type", sample.content_type)]);
        let own = sample.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (k, v) in own.chain(signed_pairs(signed)) {
            h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::header_map;

    #[test]
    fn an_unknown_fixture_is_refused_naming_the_known_ones() {
        const TYPES: &[&str] = &["a.b", "c.d"];
        assert_eq!(pick(TYPES, None), Ok("a.b"));
        assert_eq!(pick(TYPES, Some("c.d")), Ok("c.d"));
        let e = pick(TYPES, Some("x")).unwrap_err();
        assert_eq!(e, UnknownFixture { asked: "x".into(), known: TYPES });
        assert_eq!(e.to_string(), "no fixture `x`; known: a.b, c.d");
    }

    #[test]
    fn shared_readers_word_their_refusals_and_checks_as_the_kinds_did() {
        fn refusal(r: Result<&str, Refusal>) -> Result<&str, (RefusalCode, String)> {
            r.map_err(|r| (r.code, r.message))
        }
        let invalid = RefusalCode::InvalidSignature;
        let h = header_map(&[("x-sig", "abc"), ("x-blank", " ")]);
        assert_eq!(refusal(signature_text(&h, "x-sig", "X-Sig")), Ok("abc"));
        let missing = refusal(signature_text(&h, "x-other", "X-Other"));
        assert_eq!(missing, Err((invalid, "missing X-Other header".into())));
        let mut h = h;
        h.insert("x-bin", warp::http::HeaderValue::from_bytes(b"\xff").unwrap());
        let not_text = refusal(signature_text(&h, "x-bin", "X-Bin"));
        assert_eq!(not_text, Err((invalid, "X-Bin header is not text".into())));
        assert_eq!(signature_value(&h, "x-bin", "X-Bin").unwrap().as_bytes(), b"\xff");

        assert_eq!(required_header(&h, "x-sig", "X-Sig"), (Check::pass("X-Sig", "present"), Some("abc")));
        for absent in ["x-blank", "x-bin", "x-other"] {
            let (check, value) = required_header(&h, absent, "Shown");
            assert_eq!(
                (check.ok, check.message.as_str(), value),
                (false, "required header is missing, empty or not text", None)
            );
        }

        assert_eq!(json_body(b"[1]"), Ok(serde_json::json!([1])));
        let not_json = json_body(b"{").unwrap_err();
        assert_eq!((not_json.field.as_str(), not_json.ok), ("body", false));
        assert!(not_json.message.starts_with("not JSON: "), "{}", not_json.message);

        let event = Parsed::one("e", "t");
        assert_eq!(inspected((vec![Check::pass("a", "ok")], Some(event.clone())), NO_EVENT), Ok(event.clone()));
        let none = inspected((vec![Check::pass("a", "ok")], None), NO_EVENT).unwrap_err();
        assert_eq!((none.code, none.message.as_str()), (RefusalCode::InvalidPayload, "no event in the request"));
        let failed = inspected((vec![Check::fail("a", "bad"), Check::fail("b", "worse")], Some(event)), NO_EVENT);
        assert_eq!(failed.unwrap_err().message, "a: bad; b: worse");
    }
}
