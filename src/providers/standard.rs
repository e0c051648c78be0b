//! Standard Webhooks (and Svix, which wrote the standard): `webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64> [v1a,<base64> ...]`.
//!
//! Verified as the official standardwebhooks libraries do. The key is the base64 decoding of the
//! secret after its `whsec_` prefix (a secret without the prefix is decoded too; padding may be
//! left off, as the Python library allows). The signed content is `{id}.{timestamp}.{raw body}`,
//! HMAC-SHA256, base64. The signature header holds space-separated `version,signature` entries,
//! any of which may match, which is how the sender rotates secrets. The headers are also accepted
//! under their Svix names (`svix-id`, `svix-timestamp`, `svix-signature`) when the `webhook-*` set
//! is incomplete.
//!
//! The spec's asymmetric scheme is accepted too (spec/standard-webhooks.md, "Signature scheme":
//! Ed25519, signature identifier `v1a`, keys "base64 encoded, prefixed with `whsk_` for the secret
//! key, and `whpk_` for the public key"): a `v1a` entry is the base64 Ed25519 signature (64 bytes)
//! of the same content. Each version counts only when the endpoint has its key (`v1` a secret,
//! `v1a` a public key), so a request verifies when any `v1` matches any secret or any `v1a`
//! verifies with any public key. The reference libraries have no `v1a` yet, so the spec's key
//! format is all there is to follow: a public key is the 32 bytes of RFC 8032; a `whsk_` key is
//! met in both serialisations in use, the 32-byte seed and the 64-byte seed followed by its public
//! key (Go's `ed25519.PrivateKey`, libsodium's secret key).
//!
//! The order of the checks is the libraries': the three headers must be present and non-empty;
//! the timestamp must be an integer within the tolerance, too old and too far in the future both
//! refused (`stale_timestamp`); only then is the signature compared. So, unlike Stripe, a forged
//! request with an old timestamp reads `stale_timestamp`, not `invalid_signature`.
//!
//! The message id is part of the signed content, and a delivery is signed without knowing the
//! original one, so deliveries (and `stagehook send`) carry a fresh `msg_` id with their fresh
//! timestamp and signature: the app sees a new `webhook-id` on every delivery attempt, replays
//! included. The dedup key recorded here is the id of the request as received. A delivery is
//! signed `v1` with the first secret and `v1a` with the `signing_key`, each when there is one;
//! an endpoint with neither (public keys only) cannot sign, and its deliveries carry the
//! sender's own signature headers unchanged.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use warp::http::HeaderMap;

use self::v1a::{decode_public_key, decode_signing_key, entries, sign_ed25519};
pub use self::v1a::{public_key_text, Unreadable, MAX_V1A_ENTRIES, PUBLIC_KEY_PREFIX, SIGNING_KEY_PREFIX};
use super::diagnose::Diagnosis;
use super::kind::{ConfigError, Kind, Rotation};
use super::signing::{self, HmacSha256};
use super::{
    fresh_id, header_str, json_body, original_header, pick, receipt, refuse_failed, require_media_type, rfc3339,
    Accepted, Answer, Check, Inbound, Parsed, Provider, Refusal, RefusalCode, Sample, Signed, UnknownFixture,
};
use crate::finding::{Finding, Severity};
use crate::providers::Malformed;
use crate::secret::Secret;

mod v1a;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";
pub const SVIX_ID_HEADER: &str = "svix-id";
pub const SVIX_TIMESTAMP_HEADER: &str = "svix-timestamp";
pub const SVIX_SIGNATURE_HEADER: &str = "svix-signature";
pub const SECRET_PREFIX: &str = "whsec_";
/// Secrets are standard base64; the padding is optional, as the Python library accepts both.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The fixtures of `stagehook send`; the first is the default.
const SAMPLE_TYPES: &[&str] = &["user.created", "invoice.paid"];

/// A section of kind `standard` (Standard Webhooks, Svix).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The signing secret, `whsec_<base64>` (or bare base64).
    pub secret: Option<Secret>,
    /// Several secrets accepted at once (rotation); deliveries and `send` sign with the first
    /// of `secret` then `secrets`.
    pub secrets: Vec<Secret>,
    /// The sender's Ed25519 public key, `whpk_<base64>`, for `v1a` signatures. Not a secret.
    pub public_key: Option<String>,
    /// Further public keys accepted at once (rotation).
    pub public_keys: Vec<String>,
    /// An Ed25519 secret key, `whsk_<base64>` (the 32-byte seed, or the seed then the public
    /// key), that signs deliveries, replays and `send` with `v1a`; its public key is accepted too.
    pub signing_key: Option<Secret>,
    /// Accepted distance of the signed timestamp from now, either way.
    pub tolerance_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            secret: None,
            secrets: Vec::new(),
            public_key: None,
            public_keys: Vec::new(),
            signing_key: None,
            tolerance_seconds: 300,
        }
    }
}

impl Settings {
    /// Every configured public key with the key it is written at, `public_key` first.
    fn public_keys_named(&self, name: &str) -> Vec<(String, &str)> {
        let single = self.public_key.iter().map(|k| (format!("providers.{name}.public_key"), k.as_str()));
        let listed = self
            .public_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("providers.{name}.public_keys[{i}]"), k.as_str()));
        single.chain(listed).collect()
    }
}

pub struct Standard {
    pub name: String,
    /// The decoded keys of every accepted secret (rotation); deliveries are signed with the first.
    keys: Vec<Vec<u8>>,
    /// The fingerprints of those secrets, for a diagnosis that blames the secret.
    fingerprints: Vec<String>,
    /// Every accepted Ed25519 public key (32 bytes): the configured ones, then the signing key's.
    public_keys: Vec<Vec<u8>>,
    /// The configured public keys as written (`whpk_...`), for a diagnosis that blames the key.
    public_keys_shown: Vec<String>,
    /// The key deliveries are signed `v1a` with, if any.
    signing_key: Option<Ed25519KeyPair>,
    /// Accepted distance of `webhook-timestamp` from now, in either direction.
    pub tolerance_s: i64,
}

impl Standard {
    /// Signs `{id}.{now}.{body}` with the first secret (`v1`) and the signing key (`v1a`), each
    /// when there is one. Both header sets are returned because the Svix libraries read `svix-*`
    /// first: an original `svix-*` set left in place would shadow the fresh signature. With
    /// neither key nothing is signed and nothing replaces the sender's own headers.
    fn sign_with_id(&self, target: &str, body: &[u8], id: String, now_s: i64) -> Signed {
        let mut entries = Vec::new();
        if let Some(key) = self.keys.first() {
            entries.push(signature_header(key, &id, now_s, body));
        }
        if let Some(pair) = &self.signing_key {
            entries.push(format!("v1a,{}", sign_ed25519(pair, &id, now_s, body)));
        }
        if entries.is_empty() {
            return Signed { url: target.to_string(), headers: Vec::new() };
        }
        signed_headers(target, id, now_s, entries.join(" "))
    }
}

impl Kind for Standard {
    const KEYS: &'static [&'static str] =
        &["secret", "secrets", "public_key", "public_keys", "signing_key", "tolerance_seconds"];

    type Settings = Settings;

    /// Decodes every secret and key up front, so a malformed one stops startup with the key it
    /// came from instead of refusing every request later. No secret and no public key is not an
    /// error: the endpoint is then unconfigured.
    fn from_settings(name: &str, c: &Settings) -> Result<Standard, ConfigError> {
        let has_single = c.secret.is_some();
        let mut keys = Vec::new();
        let secrets = Self::rotation(c).all();
        for (i, secret) in secrets.iter().enumerate() {
            let key_name = match (has_single, i) {
                (true, 0) => format!("providers.{name}.secret"),
                (true, i) => format!("providers.{name}.secrets[{}]", i - 1),
                (false, i) => format!("providers.{name}.secrets[{i}]"),
            };
            keys.push(decode_secret(secret.expose()).map_err(|m| ConfigError::new(key_name, m.0))?);
        }
        let mut public_keys = Vec::new();
        let mut public_keys_shown = Vec::new();
        for (key_name, text) in c.public_keys_named(name) {
            public_keys.push(decode_public_key(text).map_err(|m| ConfigError::new(key_name, m.to_string()))?);
            public_keys_shown.push(text.trim().to_string());
        }
        let signing_key = match &c.signing_key {
            Some(key) => Some(
                decode_signing_key(key.expose())
                    .map_err(|m| ConfigError::new(format!("providers.{name}.signing_key"), m.to_string()))?,
            ),
            None => None,
        };
        // What stagehook signs itself must pass its own endpoint (`stagehook send`).
        if let Some(own) = signing_key.as_ref().map(|k| k.public_key().as_ref().to_vec()) {
            if !public_keys.contains(&own) {
                public_keys.push(own);
            }
        }
        let tolerance_s = i64::try_from(c.tolerance_seconds).unwrap_or(i64::MAX);
        Ok(Standard {
            name: name.to_string(),
            keys,
            fingerprints: secrets.iter().map(Secret::fingerprint).collect(),
            public_keys,
            public_keys_shown,
            signing_key,
            tolerance_s,
        })
    }

    fn rotation(c: &Settings) -> Rotation<'_> {
        Rotation::new(&c.secret, &c.secrets)
    }

    fn tolerance_seconds(c: &Settings) -> Option<u64> {
        Some(c.tolerance_seconds)
    }

    /// A secret or a public key: with public keys only the endpoint verifies `v1a`.
    fn has_credentials(c: &Settings) -> bool {
        !Self::rotation(c).all().is_empty() || c.public_key.is_some() || !c.public_keys.is_empty()
    }

    fn credential_format(secret: &Secret) -> Result<(), Malformed> {
        decode_secret(secret.expose()).map(drop)
    }

    /// An endpoint that verifies with public keys only has nothing to sign with: its deliveries
    /// carry the sender's own headers, which the app accepts only within its timestamp tolerance.
    fn section_findings(name: &str, c: &Settings, out: &mut Vec<Finding>) {
        let has_public = c.public_key.is_some() || !c.public_keys.is_empty();
        if has_public && Self::rotation(c).all().is_empty() && c.signing_key.is_none() {
            out.push(Finding::new(
                "provider.cannot_sign",
                Severity::Warning,
                &format!("providers.{name}.signing_key"),
                format!(
                    "{name} verifies v1a signatures with public keys only and has no signing_key (nor secret), so \
                     it cannot sign: deliveries carry the sender's own webhook-signature, which the app accepts \
                     only within its timestamp tolerance (a replay later is refused), and edit-and-replay and \
                     `stagehook send` are refused; set signing_key = \"whsk_...\" to a staging key whose whpk_ \
                     public key the app trusts"
                ),
            ));
        }
    }
}

/// A message signed the Standard Webhooks way with `key`, for `target`: both header sets. The
/// one signer of the scheme: deliveries of `standard` events and the `webhook` notifier's
/// messages (`alerts/`) go through it.
pub fn sign_message(key: &[u8], target: &str, body: &[u8], id: String, now_s: i64) -> Signed {
    let signature = signature_header(key, &id, now_s, body);
    signed_headers(target, id, now_s, signature)
}

/// Both header sets of a message signed `signature` (one or more space-separated entries).
fn signed_headers(target: &str, id: String, now_s: i64, signature: String) -> Signed {
    let timestamp = now_s.to_string();
    Signed {
        url: target.to_string(),
        headers: vec![
            (ID_HEADER, id.clone()),
            (TIMESTAMP_HEADER, timestamp.clone()),
            (SIGNATURE_HEADER, signature.clone()),
            (SVIX_ID_HEADER, id),
            (SVIX_TIMESTAMP_HEADER, timestamp),
            (SVIX_SIGNATURE_HEADER, signature),
        ],
    }
}

/// The HMAC key of a `whsec_<base64>` secret (or of bare base64).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, Malformed> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = SECRET_BASE64.decode(encoded).map_err(|_| "is not base64 (after the `whsec_` prefix, if any)")?;
    if key.is_empty() {
        // The libraries refuse an empty key outright; an HMAC under it would prove nothing.
        return Err(Malformed("is empty"));
    }
    Ok(key)
}

/// `base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    STANDARD.encode(mac(key, id, timestamp, body))
}

/// The `webhook-signature` value the sender would put on `body`: one `v1` entry.
pub fn signature_header(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", sign(key, id, timestamp, body))
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> hmac::digest::Output<HmacSha256> {
    let timestamp = timestamp.to_string();
    signing::mac::<HmacSha256>(key, [id.as_bytes(), b".", timestamp.as_bytes(), b".", body])
}

/// The three signature headers of a request, from one naming scheme only.
#[derive(Debug, PartialEq, Eq)]
pub struct SignatureHeaders<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

/// Neither naming scheme has its three signature headers; `missing` are those of the
/// `webhook-*` set that are absent or empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing or empty {} header (or the whole svix-id/-timestamp/-signature set)", .missing.join(", "))]
pub struct MissingSignatureHeaders {
    pub missing: Vec<&'static str>,
}

/// The `webhook-*` set when all three are present and non-empty, else the `svix-*` set; mixing
/// the two would pair an id with a signature it was never signed with.
pub fn signature_headers(headers: &HeaderMap) -> Result<SignatureHeaders<'_>, MissingSignatureHeaders> {
    let set = |names: [&'static str; 3]| {
        let values = names.map(|n| header_str(headers, n).filter(|v| !v.is_empty()));
        match values {
            [Some(id), Some(timestamp), Some(signature)] => Ok(SignatureHeaders { id, timestamp, signature }),
            _ => Err(names.iter().zip(values).filter(|(_, v)| v.is_none()).map(|(n, _)| *n).collect::<Vec<_>>()),
        }
    };
    match set([ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER]) {
        Ok(found) => Ok(found),
        Err(missing) => set([SVIX_ID_HEADER, SVIX_TIMESTAMP_HEADER, SVIX_SIGNATURE_HEADER])
            .map_err(|_| MissingSignatureHeaders { missing }),
    }
}

impl Provider for Standard {
    fn delivery_timeout(&self) -> Option<std::time::Duration> {
        // The spec recommends a request timeout "between 15 and 30s"; a sender may use 15 s:
        // https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md#request-timeouts
        Some(std::time::Duration::from_secs(15))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn secret_headers(&self) -> &[&'static str] {
        &[SIGNATURE_HEADER, SVIX_SIGNATURE_HEADER]
    }

    fn precheck(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        require_media_type(headers, &["application/json"], "Standard Webhooks events are", "")
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        let invalid = |m: &str| Refusal::new(RefusalCode::InvalidSignature, m);
        let h = signature_headers(req.headers).map_err(|m| invalid(&m.to_string()))?;
        let timestamp: i64 =
            h.timestamp.parse().map_err(|_| invalid("webhook-timestamp is not an integer number of seconds"))?;
        // i128: a timestamp near i64's ends must not overflow the subtraction.
        let age = i128::from(req.now_s) - i128::from(timestamp);
        if age > i128::from(self.tolerance_s) {
            return Err(Refusal::new(
                RefusalCode::StaleTimestamp,
                format!("webhook-timestamp {timestamp} is {age} s old, more than the {} s tolerance", self.tolerance_s),
            ));
        }
        if -age > i128::from(self.tolerance_s) {
            return Err(Refusal::new(
                RefusalCode::StaleTimestamp,
                format!(
                    "webhook-timestamp {timestamp} is {} s in the future, more than the {} s tolerance; \
                     check the sender's clock",
                    -age, self.tolerance_s
                ),
            ));
        }
        let given = entries(h.signature);
        let by_v1 = signing::any_matches(&self.keys, &given.v1, |key| mac(key, h.id, timestamp, req.body));
        if by_v1 || self.verifies_v1a(&given.v1a, h.id, timestamp, req.body) {
            Ok(())
        } else {
            Err(invalid(&self.unmatched(&given)))
        }
    }

    fn signed_at(&self, req: &Inbound<'_>) -> Option<i64> {
        signature_headers(req.headers).ok()?.timestamp.parse().ok()
    }

    fn checks(&self, req: &Inbound<'_>) -> Vec<Check> {
        let id = match message_id(req.headers) {
            Some(_) => Check::pass(ID_HEADER, "message id (the dedup key)"),
            None => Check::fail(ID_HEADER, "missing or empty (and no svix-id either)"),
        };
        let mut checks = vec![id];
        checks.extend(body_checks(req.body));
        checks
    }

    fn parse(&self, req: &Inbound<'_>) -> Result<Parsed, Refusal> {
        refuse_failed(&self.checks(req))?;
        let value = super::json::parse(req.body)
            .map_err(|e| Refusal::new(RefusalCode::InvalidPayload, e.said("body is not JSON: ")))?;
        Ok(Parsed::one(message_id(req.headers).unwrap_or_default(), value["type"].as_str().unwrap_or_default()))
    }

    fn secret_fingerprints(&self) -> Vec<String> {
        self.fingerprints.clone()
    }

    fn can_sign(&self) -> bool {
        !self.keys.is_empty() || self.signing_key.is_some()
    }

    fn signature_diagnosis(&self, req: &Inbound<'_>) -> Option<Diagnosis> {
        self.v1a_diagnosis(&entries(signature_headers(req.headers).ok()?.signature))
    }

    fn mismatch_diagnosis(&self, req: &Inbound<'_>) -> Option<Diagnosis> {
        self.v1a_mismatch(&entries(signature_headers(req.headers).ok()?.signature))
    }

    fn sign_delivery(&self, target: &str, _content_type: Option<&str>, body: &[u8], now_s: i64) -> Signed {
        // Without the original request there is no id to keep: a fresh one is signed.
        self.sign_with_id(target, body, fresh_id("msg_"), now_s)
    }

    fn sign_resend(
        &self,
        target: &str,
        _content_type: Option<&str>,
        body: &[u8],
        original: &[(String, String)],
        now_s: i64,
    ) -> Signed {
        // The spec keeps `webhook-id` across retries so that apps can deduplicate on it: every
        // delivery of one event carries the id the sender gave it.
        let id = original_header(original, ID_HEADER).or_else(|| original_header(original, SVIX_ID_HEADER));
        self.sign_with_id(target, body, id.map_or_else(|| fresh_id("msg_"), str::to_string), now_s)
    }

    fn answer(&self, accepted: &Accepted<'_>) -> Answer {
        receipt(accepted)
    }

    fn sample_types(&self) -> &'static [&'static str] {
        SAMPLE_TYPES
    }

    fn sample(&self, event_type: Option<&str>, now_s: i64) -> Result<Sample, UnknownFixture> {
        let kind = pick(SAMPLE_TYPES, event_type)?;
        let data = match kind {
            "invoice.paid" => json!({
                "id": fresh_id("inv_"), "customer_id": fresh_id("cus_"), "amount_due": 4900, "amount_paid": 4900,
                "currency": "usd", "status": "paid", "paid_at": rfc3339(now_s),
                "lines": [{"description": "Pro plan (monthly)", "amount": 4900, "quantity": 1}],
            }),
            _ => json!({
                "id": fresh_id("user_"), "email": "ada@example.com", "name": "Ada Lovelace",
                "created_at": rfc3339(now_s), "email_verified": false,
            }),
        };
        let event = json!({"type": kind, "timestamp": rfc3339(now_s), "data": data});
        Ok(Sample {
            content_type: "application/json",
            // Replaced by the id `sign_delivery` signs; kept so an unsigned sample is complete.
            headers: vec![(ID_HEADER.to_string(), fresh_id("msg_"))],
            body: serde_json::to_vec(&event).unwrap_or_default(),
        })
    }
}

/// The message id the request was signed with: from the set `verify` read, else whichever id
/// header there is (a dry run of `/validate` may come unsigned).
fn message_id(headers: &HeaderMap) -> Option<&str> {
    match signature_headers(headers) {
        Ok(h) => Some(h.id),
        Err(_) => [ID_HEADER, SVIX_ID_HEADER].iter().find_map(|n| header_str(headers, n).filter(|v| !v.is_empty())),
    }
}

/// Structural checks of a Standard Webhooks payload: `type` is required (it is the event type);
/// `timestamp` and `data` are the spec's recommendation, checked for shape when present.
pub fn body_checks(body: &[u8]) -> Vec<Check> {
    let value = match json_body(body) {
        Ok(v) => v,
        Err(check) => return vec![check],
    };
    let Some(obj) = value.as_object() else {
        return vec![Check::fail("body", "must be a JSON object ({\"type\", \"timestamp\", \"data\"})")];
    };
    vec![
        match obj.get("type").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Check::pass("type", "event type"),
            _ => Check::fail("type", "missing, empty or not a string"),
        },
        match obj.get("timestamp") {
            Some(Value::String(s)) if !s.is_empty() => Check::pass("timestamp", "event time"),
            None => Check::pass("timestamp", "absent (recommended by the spec, not required)"),
            Some(_) => Check::fail("timestamp", "must be a non-empty string (RFC 3339)"),
        },
        match obj.get("data") {
            Some(Value::Object(_)) => Check::pass("data", "object"),
            None => Check::pass("data", "absent (the event may be squashed into the top level)"),
            Some(_) => Check::fail("data", "must be an object"),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    use crate::providers::testing::{
        self, json_headers as headers, receive_sample, signed_pairs, vectors, Received, Vector,
    };

    pub(super) fn vector() -> Vector {
        vectors("standard_webhooks").remove(0)
    }

    pub(super) fn provider(secrets: &[&str]) -> Standard {
        let c = Settings { secrets: testing::secrets(secrets), ..Settings::default() };
        Standard::from_settings("standard", &c).unwrap()
    }

    pub(super) fn signed(id: &str, ts: i64, sig: &str) -> HeaderMap {
        headers(&[(ID_HEADER, id), (TIMESTAMP_HEADER, &ts.to_string()), (SIGNATURE_HEADER, sig)])
    }

    pub(super) fn code(p: &Standard, h: &HeaderMap, body: &[u8], now_s: i64) -> Option<RefusalCode> {
        p.verify(&Inbound { headers: h, body, url: "", now_s }).err().map(|r| r.code)
    }

    #[test]
    fn published_vector_verifies_and_its_near_miss_does_not() {
        let v = vector();
        let (secret, id, payload) = (v.str("secret"), v.str("msg_id"), v.str("payload"));
        let ts = v.int("timestamp");
        let key = decode_secret(secret).unwrap();
        assert_eq!(signature_header(&key, id, ts, payload.as_bytes()), v.str("signature"));
        let p = provider(&[secret]);
        let h = signed(id, ts, v.str("signature"));
        assert_eq!(code(&p, &h, payload.as_bytes(), ts), None);
        let h = signed(id, ts, v.str("must_reject_signature"));
        assert_eq!(code(&p, &h, payload.as_bytes(), ts), Some(RefusalCode::InvalidSignature));
    }

    #[test]
    fn the_rust_library_vector_signs_the_same() {
        // standard-webhooks libraries/rust test_sign.
        let key = decode_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            signature_header(&key, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn tampered_body_wrong_secret_and_wrong_id_are_refused() {
        let v = vector();
        let (id, payload, sig) = (v.str("msg_id"), v.str("payload"), v.str("signature"));
        let ts = v.int("timestamp");
        let p = provider(&[v.str("secret")]);
        let h = signed(id, ts, sig);
        assert_eq!(code(&p, &h, b"{\"test\": 2432232315}", ts), Some(RefusalCode::InvalidSignature));
        let other = provider(&["whsec_bm90IHRoZSBzZWNyZXQgeW91IGFyZSBsb29raW5n"]);
        assert_eq!(code(&other, &h, payload.as_bytes(), ts), Some(RefusalCode::InvalidSignature));
        let h = signed("msg_other", ts, sig);
        assert_eq!(code(&p, &h, payload.as_bytes(), ts), Some(RefusalCode::InvalidSignature));
        let refusal = p.verify(&Inbound { headers: &h, body: payload.as_bytes(), url: "", now_s: ts }).unwrap_err();
        assert!(!refusal.message.contains("MfKQ9r8G"), "{}", refusal.message);
    }

    #[test]
    fn missing_headers_are_named_as_before() {
        let e = signature_headers(&headers(&[(TIMESTAMP_HEADER, "1"), (SVIX_ID_HEADER, "msg_1")])).unwrap_err();
        assert_eq!(e, MissingSignatureHeaders { missing: vec![ID_HEADER, SIGNATURE_HEADER] });
        assert_eq!(
            e.to_string(),
            "missing or empty webhook-id, webhook-signature header (or the whole svix-id/-timestamp/-signature set)"
        );
    }

    #[test]
    fn every_missing_or_empty_header_is_refused() {
        let v = vector();
        let p = provider(&[v.str("secret")]);
        let ts = v.int("timestamp").to_string();
        let all =
            [(ID_HEADER, v.str("msg_id")), (TIMESTAMP_HEADER, ts.as_str()), (SIGNATURE_HEADER, v.str("signature"))];
        for skip in 0..3 {
            for empty in [false, true] {
                let pairs: Vec<(&str, &str)> = all
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip || empty)
                    .map(|(i, (k, v))| (*k, if i == skip { "" } else { *v }))
                    .collect();
                let h = headers(&pairs);
                let r = p
                    .verify(&Inbound { headers: &h, body: v.str("payload").as_bytes(), url: "", now_s: 0 })
                    .unwrap_err();
                assert_eq!(r.code, RefusalCode::InvalidSignature, "{pairs:?}");
                assert!(r.message.contains(all[skip].0), "{}", r.message);
            }
        }
        let mut h2 = signed("msg_1", 0, "v1,x");
        h2.insert(TIMESTAMP_HEADER, "12.5".parse().unwrap());
        assert_eq!(code(&p, &h2, b"{}", 12), Some(RefusalCode::InvalidSignature));
    }

    #[test]
    fn timestamps_are_refused_both_ways_beyond_the_tolerance() {
        let p = provider(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let body = br#"{"type":"a.b"}"#;
        let ts = 1_700_000_000;
        let sig = signature_header(&p.keys[0], "msg_1", ts, body);
        let h = signed("msg_1", ts, &sig);
        assert_eq!(code(&p, &h, body, ts + 300), None);
        assert_eq!(code(&p, &h, body, ts - 300), None);
        assert_eq!(code(&p, &h, body, ts + 301), Some(RefusalCode::StaleTimestamp));
        assert_eq!(code(&p, &h, body, ts - 301), Some(RefusalCode::StaleTimestamp));
        // The libraries check the time before the signature: a forged old request reads stale.
        let forged = signed("msg_1", ts, "v1,AAAA");
        assert_eq!(code(&p, &forged, body, ts + 3600), Some(RefusalCode::StaleTimestamp));
        // Extreme values neither overflow nor pass.
        for extreme in [i64::MIN, i64::MAX] {
            let h = signed("msg_1", extreme, &sig);
            assert_eq!(code(&p, &h, body, ts), Some(RefusalCode::StaleTimestamp));
        }
        let mut wide = provider(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        wide.tolerance_s = 3600;
        assert_eq!(code(&wide, &h, body, ts + 3600), None);
    }

    #[test]
    fn rotation_accepts_any_secret_and_any_v1_entry() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let new = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let p = provider(&[new, old]);
        let body = br#"{"type":"a.b"}"#;
        let by_old = sign(&decode_secret(old).unwrap(), "msg_1", 10, body);
        let h = signed("msg_1", 10, &format!("v1,{by_old}"));
        assert_eq!(code(&p, &h, body, 10), None);
        // Other versions, garbage and a wrong v1 around the right one.
        let noisy = format!("v1a,{by_old} v2,abc junk v1,not-base64! v1,{} v1,{by_old}", STANDARD.encode([0u8; 32]));
        assert_eq!(code(&p, &signed("msg_1", 10, &noisy), body, 10), None);
        // Only `v1` counts, even with the right bytes.
        assert_eq!(
            code(&p, &signed("msg_1", 10, &format!("v2,{by_old}")), body, 10),
            Some(RefusalCode::InvalidSignature)
        );
    }

    #[test]
    fn svix_names_are_accepted_as_a_whole_set() {
        let p = provider(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let body = br#"{"type":"a.b"}"#;
        let sig = signature_header(&p.keys[0], "msg_svix", 10, body);
        let h = headers(&[(SVIX_ID_HEADER, "msg_svix"), (SVIX_TIMESTAMP_HEADER, "10"), (SVIX_SIGNATURE_HEADER, &sig)]);
        assert_eq!(code(&p, &h, body, 10), None);
        assert_eq!(
            p.parse(&Inbound { headers: &h, body, url: "", now_s: 10 }).unwrap(),
            Parsed::one("msg_svix", "a.b")
        );
        // An incomplete webhook-* set does not borrow from the svix-* set.
        let mixed = headers(&[(ID_HEADER, "msg_svix"), (SVIX_TIMESTAMP_HEADER, "10"), (SIGNATURE_HEADER, &sig)]);
        assert_eq!(code(&p, &mixed, body, 10), Some(RefusalCode::InvalidSignature));
    }

    #[test]
    fn config_decodes_secrets_and_names_a_bad_one() {
        assert_eq!(
            provider(&["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).keys,
            provider(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).keys
        );
        // Unpadded base64 (the Python library pads it).
        assert_eq!(decode_secret("whsec_YWJjZA").unwrap(), b"abcd");
        assert_eq!(decode_secret("whsec_YWJjZA==").unwrap(), b"abcd");
        let c = Settings {
            secret: Some(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
            secrets: vec![Secret::new("whsec_not*base64SECRETPART")],
            ..Settings::default()
        };
        let e = crate::providers::kind::said(&Standard::from_settings("svix", &c).err().unwrap());
        assert!(e.starts_with("providers.svix.secrets[0] "), "{e}");
        assert!(!e.contains("SECRETPART"), "{e}");
        let c = Settings { secret: Some(Secret::new("whsec_")), ..Settings::default() };
        assert!(crate::providers::kind::said(&Standard::from_settings("svix", &c).err().unwrap())
            .starts_with("providers.svix.secret "));
        // No secret: the endpoint is unconfigured, not broken; nothing verifies.
        let p = Standard::from_settings("svix", &Settings::default()).unwrap();
        assert!(p.keys.is_empty());
        assert_eq!(code(&p, &signed("msg_1", 10, "v1,AAAA"), b"{}", 10), Some(RefusalCode::InvalidSignature));
    }

    pub(super) fn headers_of(signed: &Signed) -> HeaderMap {
        headers(&signed_pairs(signed))
    }

    #[test]
    fn a_resend_keeps_the_original_message_id() {
        let p = provider(&["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]);
        let body = br#"{"type":"a.b","data":{}}"#;
        let original = vec![("webhook-id".to_string(), "msg_kept".to_string())];
        let signed = p.sign_resend("http://app/hook", Some("application/json"), body, &original, 1_000);
        let get = |n: &str| signed.headers.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!((get(ID_HEADER), get(SVIX_ID_HEADER)), ("msg_kept".to_string(), "msg_kept".to_string()));
        let svix = vec![("svix-id".to_string(), "msg_svix".to_string())];
        let signed = p.sign_resend("http://app/hook", Some("application/json"), body, &svix, 1_000);
        assert!(signed.headers.iter().any(|(k, v)| *k == ID_HEADER && v == "msg_svix"));
    }

    #[test]
    fn sign_delivery_verifies_with_a_fresh_id_under_both_names() {
        let p = provider(&["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let body = br#"{"type":"a.b","data":{}}"#;
        let a = p.sign_delivery("http://app/hook", Some("application/json"), body, 1_000);
        let b = p.sign_delivery("http://app/hook", Some("application/json"), body, 1_000);
        assert_eq!(a.url, "http://app/hook");
        let get = |s: &Signed, n: &str| s.headers.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert!(get(&a, ID_HEADER).starts_with("msg_"));
        assert_ne!(get(&a, ID_HEADER), get(&b, ID_HEADER));
        assert_eq!(get(&a, TIMESTAMP_HEADER), "1000");
        for (w, s) in [
            (ID_HEADER, SVIX_ID_HEADER),
            (TIMESTAMP_HEADER, SVIX_TIMESTAMP_HEADER),
            (SIGNATURE_HEADER, SVIX_SIGNATURE_HEADER),
        ] {
            assert_eq!(get(&a, w), get(&a, s));
        }
        assert_eq!(code(&p, &headers_of(&a), body, 1_000), None);
        // Signed with the first secret: a provider holding only it agrees.
        let first = provider(&["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]);
        assert_eq!(code(&first, &headers_of(&a), body, 1_200), None);
    }

    #[test]
    fn every_sample_signs_verifies_and_parses() {
        let p = provider(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let now = 1_700_000_000;
        for kind in p.sample_types() {
            // The signed headers replace the sample's of the same name, as deliveries do.
            let Received { sample, signed, parsed, .. } = receive_sample(&p, kind, now);
            assert_eq!(sample.content_type, "application/json");
            let sent_id = &signed.headers.iter().find(|(k, _)| *k == ID_HEADER).unwrap().1;
            assert_eq!(parsed, Parsed::one(sent_id.clone(), *kind));
        }
        let a = p.sample(None, now).unwrap();
        let b = p.sample(None, now).unwrap();
        assert_ne!(a.body, b.body, "fresh ids each time");
        assert!(String::from_utf8_lossy(&a.body).contains("\"user.created\""));
        assert!(p.sample(Some("nope"), now).unwrap_err().to_string().contains("user.created"));
    }

    #[test]
    fn structure_is_checked_and_refused_as_invalid_payload() {
        let p = provider(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let h = signed("msg_1", 0, "v1,AAAA");
        for (body, field) in [
            (&b"[1,2]"[..], "body"),
            (b"nope", "body"),
            (br#"{"data":{}}"#, "type"),
            (br#"{"type":""}"#, "type"),
            (br#"{"type":"a.b","timestamp":5}"#, "timestamp"),
            (br#"{"type":"a.b","data":[1]}"#, "data"),
        ] {
            let req = Inbound { headers: &h, body, url: "", now_s: 0 };
            let failed: Vec<String> = p.checks(&req).into_iter().filter(|c| !c.ok).map(|c| c.field).collect();
            assert_eq!(failed, vec![field.to_string()], "{}", String::from_utf8_lossy(body));
            let r = p.parse(&req).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidPayload);
        }
        let no_id = headers(&[]);
        let req = Inbound { headers: &no_id, body: br#"{"type":"a.b"}"#, url: "", now_s: 0 };
        assert_eq!(p.parse(&req).unwrap_err().code, RefusalCode::InvalidPayload);
        let bare = br#"{"type":"a.b"}"#;
        assert_eq!(
            p.parse(&Inbound { headers: &h, body: bare, url: "", now_s: 0 }).unwrap(),
            Parsed::one("msg_1", "a.b")
        );
        let mut text = HeaderMap::new();
        text.insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(p.precheck(&text).unwrap_err().code, RefusalCode::UnsupportedMediaType);
    }

    #[test]
    fn both_signature_headers_are_listed_as_secret_and_ids_and_timestamps_are_not() {
        let (a, b) =
            (provider(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]), provider(&["whsec_c2VjcmV0LXR3by0wMTIzNDU2Nzg5"]));
        crate::providers::testing::assert_secret_headers_cover_signing(&a, &b);
        for plain in [ID_HEADER, TIMESTAMP_HEADER, SVIX_ID_HEADER, SVIX_TIMESTAMP_HEADER] {
            assert!(!a.secret_headers().contains(&plain), "{plain}");
        }
    }
}
