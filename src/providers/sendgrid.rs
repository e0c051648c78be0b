//! SendGrid Event Webhook, signed: `X-Twilio-Email-Event-Webhook-Signature` (base64 of a DER
//! ECDSA signature) and `X-Twilio-Email-Event-Webhook-Timestamp`.
//!
//! Verified as sendgrid's SDKs do (`EventWebhook.verify_signature`): ECDSA P-256 with SHA-256
//! over the timestamp header's text followed by the raw body, with the verification key from the
//! Mail Settings page (base64 DER SubjectPublicKeyInfo). SendGrid's signatures are not normalised
//! to low S, and the SDKs accept them as they are; so does ring, which the published (high-S)
//! vector tests. The SDKs have no timestamp window, so neither has this provider: the timestamp
//! header is required (it is signed) but its age is not checked.
//!
//! The body is a batch: a JSON array of events, recorded as one event whose `items` is the size
//! of the batch. Its dedup id is the `sg_event_id` of a single event, or `<first sg_event_id>:<n>`
//! for a batch of n > 1 (SendGrid retries a batch as it was, so the pair is stable; the count
//! keeps a batch apart from a single event that happens to lead it). Its type is the `event` of
//! a single event, or `batch`.
//!
//! Stagehook cannot sign as SendGrid. With a staging `signing_key` (PKCS#8 P-256), deliveries and
//! `stagehook send` are signed with it and a fresh timestamp, and its own public key is accepted
//! alongside the configured ones; without it, deliveries keep SendGrid's own headers, which still
//! verify at the app: the body is unchanged and there is no time window.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING,
};
use serde_json::{json, Value};
use warp::http::HeaderMap;

use super::kind::{ConfigError, Kind, Rotation, Surroundings};
use super::{
    header_str, json_body, pick, receipt, refuse_failed, require_media_type, Accepted, Answer, Check, Inbound, Parsed,
    Provider, Refusal, RefusalCode, Sample, Signed, UnknownFixture,
};
use crate::finding::{Finding, Severity};
use crate::providers::Malformed;
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// The fixtures of `stagehook send`; the first is the default.
const SAMPLE_TYPES: &[&str] = &["batch", "delivered", "bounce"];

/// The type recorded for a request of more than one event.
pub const BATCH_TYPE: &str = "batch";

/// DER object identifiers (contents only) met in a SubjectPublicKeyInfo.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A section of kind `sendgrid`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The verification key, base64 DER (SubjectPublicKeyInfo) of a P-256 key.
    pub public_key: Option<String>,
    /// Further verification keys (several SendGrid webhooks posting to one endpoint).
    pub secrets: Vec<Secret>,
    /// A base64 PKCS#8 P-256 private key, for `stagehook send` and re-signing deliveries in
    /// staging; without it deliveries carry SendGrid's own signature unchanged.
    pub signing_key: Option<Secret>,
}

pub struct SendGrid {
    pub name: String,
    /// Uncompressed P-256 points (65 bytes) of every accepted verification key.
    public_keys: Vec<Vec<u8>>,
    /// The staging key deliveries are signed with, if any.
    signing_key: Option<EcdsaKeyPair>,
}

impl Kind for SendGrid {
    const KEYS: &'static [&'static str] = &["public_key", "secrets", "signing_key"];
    const CREDENTIAL: &'static str = "public_key";
    const API_HOSTS: &'static [&'static str] = &["sendgrid.com", "*.sendgrid.com"];
    const ISOLATION_ENV: &'static [&'static str] = &["SENDGRID_API_KEY"];

    type Settings = Settings;

    /// Reads `public_key`, then every entry of `secrets` as a further public key (several
    /// SendGrid webhooks, each with its own key, may post to one endpoint), then `signing_key`.
    /// A key that is set but malformed is an error naming it; no key at all is not (the
    /// endpoint is then unconfigured).
    fn from_settings(name: &str, c: &Settings) -> Result<SendGrid, ConfigError> {
        let mut public_keys = Vec::new();
        if let Some(key) = &c.public_key {
            public_keys.push(parse_public_key(key).map_err(|m| {
                ConfigError::new(
                    format!("providers.{name}.public_key"),
                    format!("is not base64 DER of a P-256 key: {m}"),
                )
            })?);
        }
        for (i, key) in c.secrets.iter().enumerate() {
            public_keys.push(parse_public_key(key.expose()).map_err(|m| {
                ConfigError::new(
                    format!("providers.{name}.secrets[{i}]"),
                    format!("is not base64 DER of a P-256 public key: {m}"),
                )
            })?);
        }
        let signing_key = match &c.signing_key {
            Some(key) => Some(parse_signing_key(key.expose()).ok_or_else(|| {
                ConfigError::new(
                    format!("providers.{name}.signing_key"),
                    "is not base64 PKCS#8 of a P-256 private key \
                     (with its public key, as `openssl genpkey` writes it)",
                )
            })?),
            None => None,
        };
        // What stagehook signs itself must pass its own endpoint (`stagehook send`).
        if let Some(own) = signing_key.as_ref().map(|k| k.public_key().as_ref().to_vec()) {
            if !public_keys.contains(&own) {
                public_keys.push(own);
            }
        }
        Ok(SendGrid { name: name.to_string(), public_keys, signing_key })
    }

    /// Its `secrets` are further public keys; it reads no `secret`.
    fn rotation(c: &Settings) -> Rotation<'_> {
        Rotation { secret: None, secrets: &c.secrets }
    }

    fn has_credentials(c: &Settings) -> bool {
        c.public_key.is_some()
    }

    /// A SendGrid API key in reach. SendGrid has no test mode (unlike Stripe's `sk_test_`), so
    /// every `SG.` key belongs to a real account and can send real mail: a warning, never `ok`.
    fn findings(_built_in: Option<&Settings>, around: &Surroundings<'_>, out: &mut Vec<Finding>) {
        for name in Self::ISOLATION_ENV {
            let Some(v) = around.env.get(*name).filter(|v| !v.is_empty()) else { continue };
            let key = Secret::new(v.clone());
            out.push(if v.starts_with("SG.") {
                Finding::new(
                    "isolation.sendgrid_api_key",
                    Severity::Warning,
                    &format!("env {name}"),
                    format!(
                        "{} is a SendGrid API key; SendGrid has no test-mode keys, so it belongs to a real account \
                         that sends real mail: make sure it is not production's (a staging account or subuser)",
                        key.fingerprint()
                    ),
                )
            } else {
                Finding::new(
                    "isolation.sendgrid_key_format",
                    Severity::Warning,
                    &format!("env {name}"),
                    format!("{} is not a recognisable SendGrid API key (SG....)", key.fingerprint()),
                )
            });
        }
    }
}

/// Base64 of a DER document, PEM armour and line breaks tolerated.
fn decode_base64_der(text: &str) -> Option<Vec<u8>> {
    let joined: String =
        text.lines().filter(|l| !l.trim_start().starts_with("-----")).flat_map(|l| l.split_whitespace()).collect();
    STANDARD.decode(joined).ok()
}

/// The uncompressed point of a base64 DER SubjectPublicKeyInfo of a P-256 key.
pub fn parse_public_key(text: &str) -> Result<Vec<u8>, Malformed> {
    let der = decode_base64_der(text).ok_or("not base64")?;
    p256_point_from_spki(&der)
}

/// Reads SubjectPublicKeyInfo exactly: `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 },
/// BIT STRING (0 unused bits) 04 || X || Y }` and nothing more. ring takes only the bare point, so
/// the wrapping is checked here, where a wrong key can still be told apart from a wrong signature.
pub fn p256_point_from_spki(der: &[u8]) -> Result<Vec<u8>, Malformed> {
    const NOT_SPKI: &str = "not a DER SubjectPublicKeyInfo";
    let (spki, rest) = der_element(der, 0x30).ok_or(NOT_SPKI)?;
    if !rest.is_empty() {
        return Err(Malformed("trailing bytes after the key"));
    }
    let (algorithm, rest) = der_element(spki, 0x30).ok_or(NOT_SPKI)?;
    let (bits, rest) = der_element(rest, 0x03).ok_or(NOT_SPKI)?;
    if !rest.is_empty() {
        return Err(Malformed(NOT_SPKI));
    }
    let (oid, params) = der_element(algorithm, 0x06).ok_or(NOT_SPKI)?;
    match oid {
        OID_EC_PUBLIC_KEY => {}
        OID_RSA => return Err(Malformed("an RSA key; SendGrid's verification key is EC P-256")),
        OID_ED25519 => return Err(Malformed("an Ed25519 key; SendGrid's verification key is EC P-256")),
        _ => return Err(Malformed("not an EC key (algorithm is not id-ecPublicKey)")),
    }
    match der_element(params, 0x06) {
        Some((OID_P256, [])) => {}
        Some((_, [])) => return Err(Malformed("an EC key on another curve than P-256")),
        _ => return Err(Malformed("EC parameters are not a named curve")),
    }
    match bits {
        [0, point @ ..] if point.len() == 65 && point[0] == 0x04 => Ok(point.to_vec()),
        [0, 0x02 | 0x03, ..] => Err(Malformed("a compressed point; SendGrid's keys are uncompressed")),
        _ => Err(Malformed("the key is not a 65-byte uncompressed P-256 point")),
    }
}

/// One DER element of `tag` at the start of `input`: its contents and what follows.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        n if n < 0x80 => (usize::from(n), rest),
        0x81 => {
            let (&n, rest) = rest.split_first()?;
            (usize::from(n), rest)
        }
        0x82 => {
            let (n, rest) = rest.split_at_checked(2)?;
            (usize::from(n[0]) << 8 | usize::from(n[1]), rest)
        }
        // Keys are small; longer forms are not ours.
        _ => return None,
    };
    rest.split_at_checked(len)
}

fn parse_signing_key(text: &str) -> Option<EcdsaKeyPair> {
    let der = decode_base64_der(text)?;
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &SystemRandom::new()).ok()
}

/// The bytes SendGrid signs: the timestamp header's text, then the raw body.
fn signed_content(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(timestamp.len() + body.len());
    content.extend_from_slice(timestamp.as_bytes());
    content.extend_from_slice(body);
    content
}

/// `base64(DER ECDSA-P256-SHA256(timestamp + body))`, as SendGrid signs; `None` only when the
/// system's random source fails.
pub fn sign(key: &EcdsaKeyPair, timestamp: &str, body: &[u8]) -> Option<String> {
    let signature = key.sign(&SystemRandom::new(), &signed_content(timestamp, body)).ok()?;
    Some(STANDARD.encode(signature.as_ref()))
}

/// Whether `signature` (DER) is valid over `timestamp + body` for the uncompressed `point`.
pub fn verify_with(point: &[u8], timestamp: &str, body: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(&signed_content(timestamp, body), signature).is_ok()
}

impl Provider for SendGrid {
    fn name(&self) -> &str {
        &self.name
    }

    fn secret_headers(&self) -> &[&'static str] {
        // The timestamp is signed, not secret.
        &[SIGNATURE_HEADER]
    }

    fn precheck(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        require_media_type(headers, &["application/json"], "SendGrid events are", "")
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        let invalid = |m: &str| Refusal::new(RefusalCode::InvalidSignature, m);
        let signature = header_str(req.headers, SIGNATURE_HEADER)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid("missing or empty X-Twilio-Email-Event-Webhook-Signature header"))?;
        let timestamp = header_str(req.headers, TIMESTAMP_HEADER)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid("missing or empty X-Twilio-Email-Event-Webhook-Timestamp header"))?;
        let signature = STANDARD
            .decode(signature.trim())
            .map_err(|_| invalid("X-Twilio-Email-Event-Webhook-Signature is not base64"))?;
        if self.public_keys.iter().any(|point| verify_with(point, timestamp, req.body, &signature)) {
            Ok(())
        } else {
            Err(invalid(
                "the signature does not verify over timestamp + body with the configured public key; \
                 check public_key against the Event Webhook's verification key",
            ))
        }
    }

    fn checks(&self, req: &Inbound<'_>) -> Vec<Check> {
        batch_checks(req.body)
    }

    fn parse(&self, req: &Inbound<'_>) -> Result<Parsed, Refusal> {
        refuse_failed(&batch_checks(req.body))?;
        let value = super::json::parse(req.body)
            .map_err(|e| Refusal::new(RefusalCode::InvalidPayload, e.said("body is not JSON: ")))?;
        let events = value.as_array().map(Vec::as_slice).unwrap_or_default();
        let first = events.first().cloned().unwrap_or_default();
        let first_id = first["sg_event_id"].as_str().unwrap_or_default();
        let (event_id, event_type) = match events.len() {
            1 => (first_id.to_string(), first["event"].as_str().unwrap_or_default().to_string()),
            n => (format!("{first_id}:{n}"), BATCH_TYPE.to_string()),
        };
        Ok(Parsed { event_id, event_type, items: u32::try_from(events.len()).unwrap_or(u32::MAX) })
    }

    fn sign_delivery(&self, target: &str, _content_type: Option<&str>, body: &[u8], now_s: i64) -> Signed {
        let timestamp = now_s.to_string();
        let headers = match self.signing_key.as_ref().and_then(|key| sign(key, &timestamp, body)) {
            Some(signature) => vec![(SIGNATURE_HEADER, signature), (TIMESTAMP_HEADER, timestamp)],
            // Nothing replaces SendGrid's own headers, which the app verifies as they are.
            None => Vec::new(),
        };
        Signed { url: target.to_string(), headers }
    }

    fn can_sign(&self) -> bool {
        self.signing_key.is_some()
    }

    fn answer(&self, accepted: &Accepted<'_>) -> Answer {
        receipt(accepted)
    }

    fn sample_types(&self) -> &'static [&'static str] {
        SAMPLE_TYPES
    }

    fn sample(&self, event_type: Option<&str>, now_s: i64) -> Result<Sample, UnknownFixture> {
        let kind = pick(SAMPLE_TYPES, event_type)?;
        let message = Message::fresh();
        let events = match kind {
            "delivered" => vec![message.event("delivered", now_s)],
            "bounce" => vec![message.event("bounce", now_s)],
            _ => vec![
                message.event("processed", now_s - 2),
                message.event("delivered", now_s - 1),
                message.event("open", now_s),
            ],
        };
        // SendGrid posts compact JSON ending in CRLF.
        let mut body = serde_json::to_vec(&events).unwrap_or_default();
        body.extend_from_slice(b"\r\n");
        Ok(Sample { content_type: "application/json", headers: Vec::new(), body })
    }
}

/// One sent message, whose events a sample reports.
struct Message {
    id: String,
}

impl Message {
    fn fresh() -> Message {
        Message { id: random_token() }
    }

    fn event(&self, event: &str, at: i64) -> Value {
        let mut e = json!({
            "email": "recipient@example.com",
            "timestamp": at,
            "event": event,
            "category": ["stagehook"],
            "sg_event_id": random_token(),
            "sg_message_id": format!("{}.recvd-stagehook-1-0.0", self.id),
        });
        let extra = match event {
            "processed" => json!({"smtp-id": format!("<{}@ismtpd0001p1iad1.sendgrid.net>", self.id)}),
            "delivered" => json!({
                "smtp-id": format!("<{}@ismtpd0001p1iad1.sendgrid.net>", self.id),
                "response": "250 2.0.0 OK", "ip": "192.0.2.10", "tls": 1,
            }),
            "open" => json!({
                "sg_machine_open": false, "ip": "198.51.100.7",
                "useragent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
            }),
            _ => json!({
                "smtp-id": format!("<{}@ismtpd0001p1iad1.sendgrid.net>", self.id),
                "type": "bounce", "status": "5.1.1", "bounce_classification": "Invalid Address",
                "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
                "ip": "192.0.2.10", "tls": 1,
            }),
        };
        if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
            e.extend(extra.clone());
        }
        e
    }
}

/// A fresh unique token shaped like SendGrid's ids (URL-safe base64, no prefix).
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(ulid::Ulid::new().to_bytes())
}

/// Structural checks of a SendGrid batch: a non-empty array of objects, each with the fields
/// stagehook records (`event`, `sg_event_id`) and the `timestamp` every event carries.
pub fn batch_checks(body: &[u8]) -> Vec<Check> {
    let value = match json_body(body) {
        Ok(v) => v,
        Err(check) => return vec![check],
    };
    let Some(events) = value.as_array() else {
        return vec![Check::fail("body", "must be a JSON array of events")];
    };
    if events.is_empty() {
        return vec![Check::fail("body", "an empty array: a batch holds at least one event")];
    }
    if let Some(i) = events.iter().position(|e| !e.is_object()) {
        return vec![Check::fail("body", format!("events[{i}] is not an object"))];
    }
    let field = |name: &str, ok: fn(&Value) -> bool, wanted: &str| {
        let bad: Vec<String> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.get(name).is_some_and(ok))
            .map(|(i, _)| i.to_string())
            .collect();
        if bad.is_empty() {
            Check::pass(name, format!("{wanted} in every event"))
        } else {
            Check::fail(name, format!("missing or not {wanted} in events [{}]", bad.join(", ")))
        }
    };
    let non_empty_str: fn(&Value) -> bool = |v| v.as_str().is_some_and(|s| !s.is_empty());
    vec![
        Check::pass("body", format!("{} event{}", events.len(), if events.len() == 1 { "" } else { "s" })),
        field("event", non_empty_str, "a non-empty string"),
        field("sg_event_id", non_empty_str, "a non-empty string"),
        field("timestamp", |v| v.is_i64() || v.is_u64(), "an integer"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    use crate::providers::testing::{
        self, json_headers as headers, receive_sample, signed_pairs, vectors, Received, Vector,
    };

    /// `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 0 unused bits`, then the
    /// 65-byte point: the whole SubjectPublicKeyInfo of a P-256 key but for the point.
    const SPKI_P256_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];

    fn vector() -> Vector {
        vectors("sendgrid").remove(0)
    }

    /// A fresh key pair: (base64 PKCS#8 private key, base64 SPKI public key).
    fn fixture_key_pair() -> (String, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let spki = [&SPKI_P256_PREFIX[..], pair.public_key().as_ref()].concat();
        (STANDARD.encode(pkcs8.as_ref()), STANDARD.encode(spki))
    }

    fn provider(public_key: Option<&str>, secrets: &[&str], signing_key: Option<&str>) -> SendGrid {
        let c = Settings {
            public_key: public_key.map(str::to_string),
            secrets: testing::secrets(secrets),
            signing_key: signing_key.map(Secret::new),
        };
        SendGrid::from_settings("sendgrid", &c).unwrap()
    }

    fn code(p: &SendGrid, h: &HeaderMap, body: &[u8]) -> Option<RefusalCode> {
        p.verify(&Inbound { headers: h, body, url: "", now_s: 0 }).err().map(|r| r.code)
    }

    fn vector_request(v: &Vector) -> (HeaderMap, Vec<u8>) {
        let h = headers(&[(SIGNATURE_HEADER, v.str("signature")), (TIMESTAMP_HEADER, v.str("timestamp"))]);
        (h, v.str("payload").as_bytes().to_vec())
    }

    /// A provider holding the published key, and the published request.
    fn published() -> (SendGrid, HeaderMap, Vec<u8>) {
        let v = vector();
        let (h, body) = vector_request(&v);
        (provider(Some(v.str("public_key")), &[], None), h, body)
    }

    /// The S of a DER ECDSA signature, as 32 big-endian bytes.
    fn s_of(der: &[u8]) -> Vec<u8> {
        let (seq, _) = der_element(der, 0x30).unwrap();
        let (_, rest) = der_element(seq, 0x02).unwrap();
        let (s, _) = der_element(rest, 0x02).unwrap();
        let s = if s.len() == 33 { &s[1..] } else { s };
        [vec![0; 32 - s.len()], s.to_vec()].concat()
    }

    #[test]
    fn published_high_s_vector_verifies_and_another_key_refuses_it() {
        let v = vector();
        // The order of P-256, halved: S above it is "high".
        let half_n = hex::decode("7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8").unwrap();
        let sig = STANDARD.decode(v.str("signature")).unwrap();
        assert!(s_of(&sig) > half_n, "the vector is expected to be high-S");

        let (h, body) = vector_request(&v);
        assert!(body.ends_with(b"\r\n"));
        let p = provider(v["public_key"].as_str(), &[], None);
        // No time window: the vector is years old and still verifies, as in the SDK.
        for now_s in [0, 1_600_112_502, 4_000_000_000] {
            assert_eq!(p.verify(&Inbound { headers: &h, body: &body, url: "", now_s }), Ok(()));
        }
        let other = provider(v["must_reject_with_public_key"].as_str(), &[], None);
        assert_eq!(code(&other, &h, &body), Some(RefusalCode::InvalidSignature));
    }

    #[test]
    fn tampered_body_timestamp_or_signature_is_refused() {
        let (p, h, body) = published();
        let tampered = String::from_utf8(body.clone()).unwrap().replace("dropped", "dropper");
        assert_eq!(code(&p, &h, tampered.as_bytes()), Some(RefusalCode::InvalidSignature));
        assert_eq!(code(&p, &h, body.strip_suffix(b"\r\n").unwrap()), Some(RefusalCode::InvalidSignature));
        let mut later = h.clone();
        later.insert(TIMESTAMP_HEADER, "1600112503".parse().unwrap());
        assert_eq!(code(&p, &later, &body), Some(RefusalCode::InvalidSignature));
        let mut garbled = h.clone();
        garbled.insert(SIGNATURE_HEADER, "not base64!".parse().unwrap());
        assert_eq!(code(&p, &garbled, &body), Some(RefusalCode::InvalidSignature));
        let mut not_der = h.clone();
        not_der.insert(SIGNATURE_HEADER, STANDARD.encode([1u8; 64]).parse().unwrap());
        assert_eq!(code(&p, &not_der, &body), Some(RefusalCode::InvalidSignature));
    }

    #[test]
    fn both_headers_are_required() {
        let (p, h, body) = published();
        for name in [SIGNATURE_HEADER, TIMESTAMP_HEADER] {
            for empty in [false, true] {
                let mut without = h.clone();
                if empty {
                    without.insert(name, "".parse().unwrap());
                } else {
                    without.remove(name);
                }
                let r = p.verify(&Inbound { headers: &without, body: &body, url: "", now_s: 0 }).unwrap_err();
                assert_eq!(r.code, RefusalCode::InvalidSignature);
                assert!(r.message.to_ascii_lowercase().contains(name), "{}", r.message);
            }
        }
    }

    #[test]
    fn config_names_the_bad_key_and_refuses_other_key_kinds() {
        let bad = |public_key: &str| {
            let c = Settings { public_key: Some(public_key.to_string()), ..Settings::default() };
            crate::providers::kind::said(&SendGrid::from_settings("mail", &c).err().unwrap())
        };
        let der = |tag: u8, content: &[u8]| [&[tag, content.len() as u8][..], content].concat();
        let spki =
            |alg: Vec<u8>, bits: Vec<u8>| STANDARD.encode(der(0x30, &[der(0x30, &alg), der(0x03, &bits)].concat()));
        let ec_alg = |curve: &[u8]| [der(0x06, OID_EC_PUBLIC_KEY), der(0x06, curve)].concat();
        let point = [&[0u8, 0x04][..], &[7u8; 64]].concat();

        assert!(bad("%%%").starts_with("providers.mail.public_key is not base64 DER of a P-256 key: not base64"));
        assert!(bad("AAAA").ends_with("not a DER SubjectPublicKeyInfo"));
        let rsa = [der(0x06, OID_RSA), vec![0x05, 0x00]].concat();
        assert!(bad(&spki(rsa, vec![0, 1, 2])).ends_with("an RSA key; SendGrid's verification key is EC P-256"));
        assert!(bad(&spki(der(0x06, OID_ED25519), vec![0; 33])).contains("Ed25519"));
        let p384 = ec_alg(&[0x2b, 0x81, 0x04, 0x00, 0x22]);
        assert!(bad(&spki(p384, point.clone())).ends_with("another curve than P-256"));
        let compressed = [&[0u8, 0x02][..], &[7u8; 32]].concat();
        assert!(
            bad(&spki(ec_alg(OID_P256), compressed)).ends_with("compressed point; SendGrid's keys are uncompressed")
        );
        let good = spki(ec_alg(OID_P256), point.clone());
        assert_eq!(parse_public_key(&good).unwrap(), point[1..].to_vec());
        let mut trailing = STANDARD.decode(&good).unwrap();
        trailing.push(0);
        assert!(bad(&STANDARD.encode(trailing)).ends_with("trailing bytes after the key"));

        // The published key, also as PEM.
        let v = vector();
        let published = v.str("public_key");
        assert_eq!(parse_public_key(published).unwrap().len(), 65);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &published[..64],
            &published[64..]
        );
        assert_eq!(parse_public_key(&pem).unwrap(), parse_public_key(published).unwrap());

        let c = Settings { secrets: vec![Secret::new(published), Secret::new("AAAA")], ..Settings::default() };
        assert!(crate::providers::kind::said(&SendGrid::from_settings("mail", &c).err().unwrap())
            .starts_with("providers.mail.secrets[1] "));
        let c = Settings { signing_key: Some(Secret::new("bm90IGEga2V5SECRETPART")), ..Settings::default() };
        let e = crate::providers::kind::said(&SendGrid::from_settings("mail", &c).err().unwrap());
        assert!(e.starts_with("providers.mail.signing_key is not base64 PKCS#8"), "{e}");
        assert!(!e.contains("SECRETPART"));

        // Nothing configured: the endpoint is unconfigured, not broken; nothing verifies.
        let p = SendGrid::from_settings("mail", &Settings::default()).unwrap();
        assert!(!p.can_sign());
        let (h, body) = vector_request(&v);
        assert_eq!(code(&p, &h, &body), Some(RefusalCode::InvalidSignature));
    }

    #[test]
    fn several_keys_from_secrets_are_accepted() {
        let v = vector();
        let (_, other) = fixture_key_pair();
        let p = provider(Some(&other), &[v.str("public_key")], None);
        let (h, body) = vector_request(&v);
        assert_eq!(code(&p, &h, &body), None);
        let p = provider(None, &[&other, v.str("public_key")], None);
        assert_eq!(code(&p, &h, &body), None);
        let p = provider(Some(&other), &[], None);
        assert_eq!(code(&p, &h, &body), Some(RefusalCode::InvalidSignature));
    }

    fn headers_of(signed: &Signed) -> HeaderMap {
        headers(&signed_pairs(signed))
    }

    #[test]
    fn sign_delivery_with_a_staging_key_verifies_and_without_one_passes_through() {
        let (private, public) = fixture_key_pair();
        let body = br#"[{"email":"a@example.com","event":"delivered","sg_event_id":"x","timestamp":1}]"#;

        let p = provider(Some(&public), &[], Some(&private));
        assert!(p.can_sign());
        let signed = p.sign_delivery("http://app/sg", Some("application/json"), body, 1_700_000_000);
        assert_eq!(signed.url, "http://app/sg");
        let h = headers_of(&signed);
        assert_eq!(h.get(TIMESTAMP_HEADER).unwrap(), "1700000000");
        assert_eq!(code(&p, &h, body), None);
        // The app, holding only the staging public key, agrees.
        assert_eq!(code(&provider(Some(&public), &[], None), &h, body), None);

        // The signing key's own public key is accepted without being configured.
        let v = vector();
        let own = provider(v["public_key"].as_str(), &[], Some(&private));
        assert_eq!(code(&own, &headers_of(&own.sign_delivery("http://x/", None, body, 5)), body), None);
        let (req_h, req_body) = vector_request(&v);
        assert_eq!(code(&own, &req_h, &req_body), None);

        let unsigned = provider(v["public_key"].as_str(), &[], None);
        assert!(!unsigned.can_sign());
        assert_eq!(
            unsigned.sign_delivery("http://x/", None, body, 5),
            Signed { url: "http://x/".into(), headers: vec![] }
        );
    }

    #[test]
    fn every_sample_signs_verifies_and_parses_as_a_counted_batch() {
        let (private, public) = fixture_key_pair();
        let p = provider(Some(&public), &[], Some(&private));
        let now = 1_700_000_000;
        for kind in p.sample_types() {
            let Received { sample: s, parsed, .. } = receive_sample(&p, kind, now);
            assert!(s.body.ends_with(b"]\r\n"));
            let events: Vec<Value> = serde_json::from_slice(&s.body).unwrap();
            let first = events[0]["sg_event_id"].as_str().unwrap();
            if *kind == "batch" {
                let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
                assert_eq!(kinds, ["processed", "delivered", "open"]);
                assert_eq!(parsed, Parsed { event_id: format!("{first}:3"), event_type: "batch".into(), items: 3 });
            } else {
                assert_eq!(parsed, Parsed { event_id: first.into(), event_type: kind.to_string(), items: 1 });
            }
        }
        let (a, b) = (p.sample(None, now).unwrap(), p.sample(None, now).unwrap());
        assert_ne!(a.body, b.body, "fresh ids each time");
        assert!(p.sample(Some("nope"), now).unwrap_err().to_string().contains("batch, delivered, bounce"));
    }

    #[test]
    fn batches_are_counted_and_structure_is_checked() {
        let p = provider(None, &[], None);
        let h = headers(&[]);
        let parse = |body: &str| p.parse(&Inbound { headers: &h, body: body.as_bytes(), url: "", now_s: 0 });
        let ev = |id: &str, event: &str| {
            format!(r#"{{"email":"a@example.com","event":"{event}","sg_event_id":"{id}","timestamp":1}}"#)
        };
        assert_eq!(parse(&format!("[{}]", ev("A", "open"))).unwrap(), Parsed::one("A", "open"));
        let two = format!("[{},{}]", ev("A", "processed"), ev("B", "delivered"));
        assert_eq!(parse(&two).unwrap(), Parsed { event_id: "A:2".into(), event_type: "batch".into(), items: 2 });
        // The vector's payload parses as SendGrid sent it.
        let v = vector();
        let vector_body = v.str("payload");
        let parsed = parse(vector_body).unwrap();
        assert_eq!(parsed, Parsed::one("ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA", "dropped"));

        for (body, field) in [
            ("{}".to_string(), "body"),
            ("[]".into(), "body"),
            ("nope".into(), "body"),
            (format!("[{},3]", ev("A", "open")), "body"),
            (format!(r#"[{},{{"event":"open","timestamp":1}}]"#, ev("A", "open")), "sg_event_id"),
            (r#"[{"sg_event_id":"A","timestamp":1}]"#.into(), "event"),
            (r#"[{"sg_event_id":"A","event":"open","timestamp":"1"}]"#.into(), "timestamp"),
        ] {
            let req = Inbound { headers: &h, body: body.as_bytes(), url: "", now_s: 0 };
            let failed: Vec<String> = p.checks(&req).into_iter().filter(|c| !c.ok).map(|c| c.field).collect();
            assert_eq!(failed, vec![field.to_string()], "{body}");
            assert_eq!(parse(&body).unwrap_err().code, RefusalCode::InvalidPayload, "{body}");
        }
        let mut text = HeaderMap::new();
        text.insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
        assert_eq!(p.precheck(&text).unwrap_err().code, RefusalCode::UnsupportedMediaType);
    }

    #[test]
    fn the_signature_header_is_listed_as_secret_and_the_timestamp_is_not() {
        let ((private_a, public_a), (private_b, _)) = (fixture_key_pair(), fixture_key_pair());
        let a = provider(Some(&public_a), &[], Some(&private_a));
        let b = provider(Some(&public_a), &[], Some(&private_b));
        crate::providers::testing::assert_secret_headers_cover_signing(&a, &b);
        assert!(!a.secret_headers().contains(&TIMESTAMP_HEADER));
    }
}
