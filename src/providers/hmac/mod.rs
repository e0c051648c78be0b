//! Generic HMAC (`kind = "hmac"`): a signature header over a configurable signed content, for a
//! provider without a kind of its own. GitHub-, Shopify- and Slack-style schemes are plain
//! settings of it (see the tests); Stripe's is not, since its timestamp rides inside the signature
//! header, and neither is Standard Webhooks', whose key is base64-decoded.
//!
//! The rules, and why:
//!
//! - The HMAC key is the secret's raw UTF-8 bytes, never decoded: that is what GitHub, Shopify
//!   and Slack do, and a generic setting could not know which decoding another scheme wants.
//! - The signed bytes are `signed_content` with `{timestamp}` (the timestamp header's value,
//!   verbatim: the sender signed the text it sent, not a number we would re-format), `{id}` (the
//!   id header's value) and `{body}` (the raw body bytes, never converted to text, so a body that
//!   is not UTF-8 verifies too) replaced. Any other `{name}` is a configuration error, to catch a
//!   misspelled placeholder; braces not around a name are literal text. The template must contain
//!   `{body}`, or the body would not be authenticated at all.
//! - The header may carry several signatures, separated by commas or whitespace (a separator
//!   that occurs in `prefix` does not separate); each one starts with `prefix`, and items without
//!   it are ignored, like Stripe's `v0`. Any signature matching any configured secret passes, so
//!   both the sender and this endpoint can rotate. Every (secret, signature) pair is compared, in
//!   constant time, so the time taken does not tell which one matched.
//! - Digests are decoded and compared as bytes: hex in either case, base64 in the standard
//!   padded alphabet.
//! - The signature is checked before the timestamp, as in `stripe.rs`, so a forged old request
//!   reads `invalid_signature`; a timestamp more than `tolerance_seconds` from now, either way,
//!   is `stale_timestamp`.
//! - The dedup id comes from `id_header` or `id_pointer`; without either it is the hex SHA-256 of
//!   the body: with nothing else to tell two deliveries apart, identical bytes are taken for a
//!   retry of the same event, which is what dedup is for.
//!
//! The settings and their checks are in `settings.rs`, the signed bytes, digest and encodings in
//! `signature.rs`, and the id and type of an event in `event.rs`; this file holds the provider
//! and what it answers.

mod event;
mod settings;
mod signature;

use serde_json::json;
use warp::http::HeaderMap;

use super::signing;
use super::{
    fresh_id, header_str, inspected, original_header, pick, receipt, signature_text, Accepted, Answer, Check, Inbound,
    Parsed, Provider, Refusal, RefusalCode, Sample, Signed, UnknownFixture,
};
use crate::secret::Secret;
use event::set_pointer;
use signature::mac;

pub use settings::{HmacAlgorithm, Settings, SignatureEncoding};

/// The event type when no type source is configured.
pub const DEFAULT_TYPE: &str = "event";
/// The type the `stagehook send` fixture carries, in the body and in `type_header`.
pub const SAMPLE_EVENT_TYPE: &str = "sample.event";
const SAMPLE_TYPES: &[&str] = &["event"];

pub struct Hmac {
    pub name: String,
    /// Every accepted secret (rotation); deliveries are signed with the first.
    secrets: Vec<Secret>,
    header: &'static str,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: String,
    timestamp_header: Option<&'static str>,
    tolerance_s: u64,
    template: Vec<Part>,
    id_source: Option<Source>,
    type_source: Option<Source>,
}

/// A piece of `signed_content`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Vec<u8>),
    Body,
    Timestamp,
    Id,
}

/// Where an event's id or type is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Header(&'static str),
    Pointer(String),
}

impl Provider for Hmac {
    fn name(&self) -> &str {
        &self.name
    }

    fn secret_headers(&self) -> &[&'static str] {
        // The configured signature header only: the timestamp, id and type headers are signed
        // or read, not secret.
        std::slice::from_ref(&self.header)
    }

    fn precheck(&self, _headers: &HeaderMap) -> Result<(), Refusal> {
        // Any content type: the scheme signs bytes, and a body that must be JSON is checked as a
        // payload, where the refusal can say which pointer needed it.
        Ok(())
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        let invalid = |m: String| Refusal::new(RefusalCode::InvalidSignature, m);
        if self.secrets.is_empty() {
            return Err(invalid(format!("no secret is configured for providers.{}", self.name)));
        }
        let value = signature_text(req.headers, self.header, self.header)?;
        let candidates = self.candidates(value);
        if candidates.is_empty() {
            return Err(invalid(if self.prefix.is_empty() {
                format!("{} header is empty", self.header)
            } else {
                format!("{} header has no signature starting with `{}`", self.header, self.prefix)
            }));
        }
        let decoded: Vec<Vec<u8>> = candidates.iter().filter_map(|s| self.decode(s)).collect();
        if decoded.is_empty() {
            return Err(invalid(format!(
                "{} header has no {} signature; check `encoding`",
                self.header,
                self.encoding_name()
            )));
        }
        let timestamp = match self.timestamp_header {
            Some(name) => {
                let text = header_str(req.headers, name).ok_or_else(|| invalid(format!("missing {name} header")))?;
                let seconds = text
                    .parse::<i64>()
                    .map_err(|_| invalid(format!("{name} header `{text}` is not a Unix time in seconds")))?;
                Some((name, text, seconds))
            }
            None => None,
        };
        let id = match &self.id_source {
            Some(Source::Header(name)) if self.uses(&Part::Id) => header_str(req.headers, name)
                .ok_or_else(|| invalid(format!("missing {name} header, which is part of the signed content")))?,
            _ => "",
        };
        let signed = self.signed_bytes(timestamp.map_or("", |(_, text, _)| text), id, req.body);
        let matched = signing::any_matches(&self.secrets, &decoded, |secret| {
            mac(self.algorithm, secret.expose().as_bytes(), &signed)
        });
        if !matched {
            return Err(invalid(format!(
                "no signature in {} matches the payload for the configured secret; check the secret, algorithm, encoding and signed_content",
                self.header
            )));
        }
        if let Some((name, _, seconds)) = timestamp {
            let skew = req.now_s.abs_diff(seconds);
            if skew > self.tolerance_s {
                let when = if seconds < req.now_s { "old" } else { "in the future" };
                return Err(Refusal::new(
                    RefusalCode::StaleTimestamp,
                    format!(
                        "{name} {seconds} is {skew} s {when}, more than the {} s tolerance (it must be Unix seconds)",
                        self.tolerance_s
                    ),
                ));
            }
        }
        Ok(())
    }

    fn signed_at(&self, req: &Inbound<'_>) -> Option<i64> {
        req.headers.get(self.timestamp_header?)?.to_str().ok()?.trim().parse().ok()
    }

    fn secret_fingerprints(&self) -> Vec<String> {
        self.secrets.iter().map(Secret::fingerprint).collect()
    }

    fn checks(&self, req: &Inbound<'_>) -> Vec<Check> {
        self.inspect(req).0
    }

    fn parse(&self, req: &Inbound<'_>) -> Result<Parsed, Refusal> {
        inspected(self.inspect(req), "no event id or type")
    }

    fn answer(&self, accepted: &Accepted<'_>) -> Answer {
        receipt(accepted)
    }

    /// Signs with the first secret. With a timestamp header, `now_s` is sent in it, as the app
    /// checks it against its own tolerance. When `{id}` is signed, the original id header is not
    /// at hand here, so a fresh `evt_<ulid>` is signed and sent in `id_header`: the app then sees
    /// a new id on every attempt, and cannot use it to recognise a retry.
    fn sign_delivery(&self, target: &str, content_type: Option<&str>, body: &[u8], now_s: i64) -> Signed {
        self.sign_resend(target, content_type, body, &[], now_s)
    }

    /// When `{id}` is signed, the original id header is kept, so every attempt carries the id
    /// the sender gave the event; a request without one gets a fresh id.
    fn sign_resend(
        &self,
        target: &str,
        _content_type: Option<&str>,
        body: &[u8],
        original: &[(String, String)],
        now_s: i64,
    ) -> Signed {
        let secret = signing::signing_secret(&self.secrets);
        let timestamp = now_s.to_string();
        let id = match &self.id_source {
            Some(Source::Header(name)) if self.uses(&Part::Id) => {
                let kept = original_header(original, name).map(str::to_string);
                Some((*name, kept.unwrap_or_else(|| fresh_id("evt_"))))
            }
            _ => None,
        };
        let signed = self.signed_bytes(&timestamp, id.as_ref().map_or("", |(_, v)| v.as_str()), body);
        let mut headers = vec![(self.header, self.signature(secret, &signed))];
        if let Some(name) = self.timestamp_header {
            headers.push((name, timestamp));
        }
        headers.extend(id);
        Signed { url: target.to_string(), headers }
    }

    fn sample_types(&self) -> &'static [&'static str] {
        SAMPLE_TYPES
    }

    /// A JSON event whose id and type are wherever the configuration reads them. When `{id}` is
    /// signed, `sign_delivery` sends a fresh id in `id_header` that differs from the body's `id`;
    /// the header is the one that counts, the body's is informational.
    fn sample(&self, event_type: Option<&str>, now_s: i64) -> Result<Sample, UnknownFixture> {
        pick(SAMPLE_TYPES, event_type)?;
        let id = fresh_id("evt_");
        let mut body = json!({
            "id": id, "type": SAMPLE_EVENT_TYPE, "created": now_s,
            "data": {"object": {"id": fresh_id("obj_"), "message": "Hello from stagehook"}},
        });
        let mut headers = Vec::new();
        for (source, value) in [(&self.id_source, id.as_str()), (&self.type_source, SAMPLE_EVENT_TYPE)] {
            match source {
                Some(Source::Header(name)) => headers.push((name.to_string(), value.to_string())),
                Some(Source::Pointer(pointer)) => set_pointer(&mut body, pointer, json!(value)),
                None => {}
            }
        }
        Ok(Sample {
            content_type: "application/json",
            headers,
            body: serde_json::to_vec_pretty(&body).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use sha2::{Digest, Sha256};
    use warp::http::HeaderValue;

    use super::*;
    use crate::providers::kind::Kind;
    use crate::providers::testing::{header_map as headers, receive_sample, signed_pairs, vectors, Received};

    const NOW: i64 = 1_700_000_000;

    pub(super) fn config(header: &str, secret: &str) -> Settings {
        Settings { header: Some(header.to_string()), secret: Some(Secret::new(secret)), ..Settings::default() }
    }

    pub(super) fn build(c: &Settings) -> Hmac {
        Hmac::from_settings("test", c).unwrap()
    }

    pub(super) fn github(secret: &str) -> Settings {
        Settings { prefix: "sha256=".into(), ..config("X-Hub-Signature-256", secret) }
    }

    fn slack(secret: &str) -> Settings {
        Settings {
            prefix: "v0=".into(),
            timestamp_header: Some("x-slack-request-timestamp".into()),
            signed_content: "v0:{timestamp}:{body}".into(),
            ..config("x-slack-signature", secret)
        }
    }

    fn verify(p: &Hmac, h: &HeaderMap, body: &[u8], now_s: i64) -> Result<(), Refusal> {
        p.verify(&Inbound { headers: h, body, url: "http://app.test/hook", now_s })
    }

    fn parse(p: &Hmac, h: &HeaderMap, body: &[u8]) -> Result<Parsed, Refusal> {
        p.parse(&Inbound { headers: h, body, url: "", now_s: NOW })
    }

    /// The headers of a delivery signed by `p` at `now_s`, as the app receives them.
    fn signed(p: &Hmac, body: &[u8], now_s: i64) -> HeaderMap {
        let s = p.sign_delivery("http://app.test/hook", Some("application/json"), body, now_s);
        assert_eq!(s.url, "http://app.test/hook");
        headers(&signed_pairs(&s))
    }

    fn code(r: Result<(), Refusal>) -> RefusalCode {
        r.unwrap_err().code
    }

    #[test]
    fn github_vectors_verify() {
        for vector in vectors("github") {
            let p = build(&github(vector["secret"].as_str().unwrap()));
            let body = vector["payload"].as_str().unwrap().as_bytes();
            let h = headers(&[("x-hub-signature-256", vector["header"].as_str().unwrap())]);
            verify(&p, &h, body, NOW).unwrap();
            // What stagehook sends for the same body is byte for byte what GitHub sent.
            assert_eq!(signed(&p, body, NOW)["x-hub-signature-256"], vector["header"].as_str().unwrap());
            let upper = format!("sha256={}", vector["header"].as_str().unwrap()[7..].to_ascii_uppercase());
            verify(&p, &headers(&[("x-hub-signature-256", &upper)]), body, NOW).unwrap();
            assert_eq!(code(verify(&p, &h, &[body, b" "].concat(), NOW)), RefusalCode::InvalidSignature);
        }
    }

    #[test]
    fn shopify_vector_verifies() {
        let v = &vectors("shopify")[0];
        let c = Settings {
            encoding: SignatureEncoding::Base64,
            ..config("x-shopify-hmac-sha256", v["secret"].as_str().unwrap())
        };
        let p = build(&c);
        let body = v["payload"].as_str().unwrap().as_bytes();
        let h = headers(&[("x-shopify-hmac-sha256", v["header"].as_str().unwrap())]);
        verify(&p, &h, body, NOW).unwrap();
        assert_eq!(signed(&p, body, NOW)["x-shopify-hmac-sha256"], v["header"].as_str().unwrap());
        assert_eq!(code(verify(&p, &h, b"{\"foo\": \"baz\"}", NOW)), RefusalCode::InvalidSignature);
    }

    #[test]
    fn slack_vector_verifies_within_tolerance_both_ways() {
        let v = &vectors("slack")[0];
        let p = build(&slack(v["secret"].as_str().unwrap()));
        let ts = v["timestamp"].as_i64().unwrap();
        let body = v["payload"].as_str().unwrap().as_bytes();
        let h = headers(&[
            ("x-slack-signature", v["header"].as_str().unwrap()),
            ("x-slack-request-timestamp", &ts.to_string()),
        ]);
        verify(&p, &h, body, ts + 10).unwrap();
        verify(&p, &h, body, ts - 300).unwrap();
        verify(&p, &h, body, ts + 300).unwrap();
        let stale = verify(&p, &h, body, ts + 301).unwrap_err();
        assert_eq!(stale.code, RefusalCode::StaleTimestamp);
        assert!(stale.message.contains("301 s old"), "{}", stale.message);
        let future = verify(&p, &h, body, ts - 301).unwrap_err();
        assert_eq!(future.code, RefusalCode::StaleTimestamp);
        assert!(future.message.contains("in the future"), "{}", future.message);
        // The timestamp is signed: moving it breaks the signature before it is judged stale.
        let moved = headers(&[
            ("x-slack-signature", v["header"].as_str().unwrap()),
            ("x-slack-request-timestamp", &(ts + 1).to_string()),
        ]);
        assert_eq!(code(verify(&p, &moved, body, ts)), RefusalCode::InvalidSignature);
        let missing = headers(&[("x-slack-signature", v["header"].as_str().unwrap())]);
        assert_eq!(code(verify(&p, &missing, body, ts)), RefusalCode::InvalidSignature);
        let milliseconds =
            headers(&[("x-slack-signature", v["header"].as_str().unwrap()), ("x-slack-request-timestamp", "soon")]);
        assert_eq!(code(verify(&p, &milliseconds, body, ts)), RefusalCode::InvalidSignature);
    }

    #[test]
    fn slack_style_deliveries_carry_a_fresh_timestamp() {
        let p = build(&slack("s3cret"));
        let h = signed(&p, b"a=1", NOW);
        assert_eq!(h["x-slack-request-timestamp"], NOW.to_string().as_str());
        verify(&p, &h, b"a=1", NOW + 5).unwrap();
        assert_eq!(code(verify(&p, &h, b"a=1", NOW + 3600)), RefusalCode::StaleTimestamp);
    }

    #[test]
    fn sha1_and_sha512_round_trip() {
        for (algorithm, encoding, len) in [
            (HmacAlgorithm::Sha1, SignatureEncoding::Hex, 40),
            (HmacAlgorithm::Sha1, SignatureEncoding::Base64, 28),
            (HmacAlgorithm::Sha512, SignatureEncoding::Hex, 128),
            (HmacAlgorithm::Sha512, SignatureEncoding::Base64, 88),
        ] {
            let p = build(&Settings { algorithm, encoding, ..config("x-sig", "k") });
            let h = signed(&p, b"\xff\x00 not utf-8", NOW);
            assert_eq!(h["x-sig"].len(), len, "{algorithm:?} {encoding:?}");
            verify(&p, &h, b"\xff\x00 not utf-8", NOW).unwrap();
            assert_eq!(code(verify(&p, &h, b"\xff\x01 not utf-8", NOW)), RefusalCode::InvalidSignature);
        }
        // A known SHA-1 value (RFC 2202's second HMAC-SHA1 case), so the round trip is not all.
        let p = build(&Settings { algorithm: HmacAlgorithm::Sha1, ..config("x-sig", "Jefe") });
        let h = headers(&[("x-sig", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")]);
        verify(&p, &h, b"what do ya want for nothing?", NOW).unwrap();
        // And RFC 4231's second HMAC-SHA512 case.
        let p = build(&Settings { algorithm: HmacAlgorithm::Sha512, ..config("x-sig", "Jefe") });
        let h = headers(&[(
            "x-sig",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        )]);
        verify(&p, &h, b"what do ya want for nothing?", NOW).unwrap();
    }

    #[test]
    fn refusals_for_tampering_wrong_secret_and_missing_or_malformed_headers() {
        let p = build(&github("right"));
        let h = signed(&p, b"{}", NOW);
        assert_eq!(code(verify(&p, &h, b"{ }", NOW)), RefusalCode::InvalidSignature);
        let wrong = build(&github("wrong"));
        let refusal = verify(&wrong, &h, b"{}", NOW).unwrap_err();
        assert_eq!(refusal.code, RefusalCode::InvalidSignature);
        assert!(!refusal.message.contains("wrong") && !refusal.message.contains("right"), "{}", refusal.message);
        let missing = verify(&p, &HeaderMap::new(), b"{}", NOW).unwrap_err();
        assert_eq!(missing.code, RefusalCode::InvalidSignature);
        assert!(missing.message.contains("x-hub-signature-256"), "{}", missing.message);
        let digest = h["x-hub-signature-256"].to_str().unwrap()[7..].to_string();
        let no_prefix = verify(&p, &headers(&[("x-hub-signature-256", &digest)]), b"{}", NOW).unwrap_err();
        assert!(no_prefix.message.contains("starting with `sha256=`"), "{}", no_prefix.message);
        let not_hex = verify(&p, &headers(&[("x-hub-signature-256", "sha256=zz")]), b"{}", NOW).unwrap_err();
        assert!(not_hex.message.contains("no hex signature"), "{}", not_hex.message);
        assert_eq!(
            code(verify(&p, &headers(&[("x-hub-signature-256", "")]), b"{}", NOW)),
            RefusalCode::InvalidSignature
        );
        let unconfigured = build(&Settings { secret: None, ..github("x") });
        assert_eq!(code(verify(&unconfigured, &h, b"{}", NOW)), RefusalCode::InvalidSignature);
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let p = build(&github("k"));
        let good = signed(&p, b"x", NOW)["x-hub-signature-256"].to_str().unwrap().to_string();
        let bad = format!("sha256={}", "0".repeat(64));
        for value in
            [format!("{bad},{good}"), format!("{bad} {good}"), format!("{good}, {bad}"), format!("v0=aa,{good}")]
        {
            verify(&p, &headers(&[("x-hub-signature-256", &value)]), b"x", NOW).unwrap();
        }
        verify(&p, &headers(&[("x-hub-signature-256", &format!("{bad},{bad}"))]), b"x", NOW).unwrap_err();
        // A prefix with a comma in it (Standard Webhooks' `v1,`): only whitespace separates.
        let p = build(&Settings { prefix: "v1,".into(), encoding: SignatureEncoding::Base64, ..config("sig", "k") });
        let good = signed(&p, b"x", NOW)["sig"].to_str().unwrap().to_string();
        assert!(good.starts_with("v1,"));
        verify(&p, &headers(&[("sig", &format!("v1,AAAA {good}"))]), b"x", NOW).unwrap();
    }

    #[test]
    fn rotation_accepts_every_secret_and_signs_with_the_first() {
        let c = Settings { secrets: vec![Secret::new("old")], ..github("new") };
        let p = build(&c);
        let by_new = signed(&build(&github("new")), b"x", NOW);
        let by_old = signed(&build(&github("old")), b"x", NOW);
        let by_other = signed(&build(&github("other")), b"x", NOW);
        verify(&p, &by_new, b"x", NOW).unwrap();
        verify(&p, &by_old, b"x", NOW).unwrap();
        assert_eq!(code(verify(&p, &by_other, b"x", NOW)), RefusalCode::InvalidSignature);
        assert_eq!(signed(&p, b"x", NOW), by_new);
        // `secrets` alone works too.
        let p = build(&Settings { secret: None, secrets: vec![Secret::new("a"), Secret::new("old")], ..github("") });
        verify(&p, &by_old, b"x", NOW).unwrap();
    }

    #[test]
    fn id_from_header_pointer_or_body_hash() {
        let body = br#"{"id":"evt_9","kind":{"name":"order.paid"},"n":7}"#;
        let by_hash = build(&config("sig", "k"));
        let parsed = parse(&by_hash, &HeaderMap::new(), body).unwrap();
        assert_eq!(parsed, Parsed::one(hex::encode(Sha256::digest(body)), DEFAULT_TYPE));
        // Without a pointer the body need not be JSON.
        parse(&by_hash, &HeaderMap::new(), b"\xff binary").unwrap();

        let by_header = build(&Settings {
            id_header: Some("X-Request-Id".into()),
            type_header: Some("x-event".into()),
            ..config("sig", "k")
        });
        let h = headers(&[("x-request-id", "req_1"), ("x-event", "push")]);
        assert_eq!(parse(&by_header, &h, b"not json").unwrap(), Parsed::one("req_1", "push"));
        let refusal = parse(&by_header, &headers(&[("x-event", "push")]), b"").unwrap_err();
        assert_eq!(refusal.code, RefusalCode::InvalidPayload);
        assert!(refusal.message.contains("x-request-id"), "{}", refusal.message);

        let by_pointer = build(&Settings {
            id_pointer: Some("/id".into()),
            type_pointer: Some("/kind/name".into()),
            ..config("sig", "k")
        });
        assert_eq!(parse(&by_pointer, &HeaderMap::new(), body).unwrap(), Parsed::one("evt_9", "order.paid"));
        let numeric = build(&Settings { id_pointer: Some("/n".into()), ..config("sig", "k") });
        assert_eq!(parse(&numeric, &HeaderMap::new(), body).unwrap().event_id, "7");
        let not_json = parse(&by_pointer, &HeaderMap::new(), b"id=1").unwrap_err();
        assert_eq!(not_json.code, RefusalCode::InvalidPayload);
        assert!(not_json.message.contains("body: not JSON"), "{}", not_json.message);
        let absent = parse(&by_pointer, &HeaderMap::new(), br#"{"id":""}"#).unwrap_err();
        assert!(absent.message.contains("id: JSON pointer `/id`"), "{}", absent.message);
        assert!(absent.message.contains("type: JSON pointer `/kind/name`"), "{}", absent.message);

        let checks = by_pointer.checks(&Inbound { headers: &HeaderMap::new(), body, url: "", now_s: NOW });
        assert_eq!(
            checks.iter().map(|c| (c.field.as_str(), c.ok)).collect::<Vec<_>>(),
            [("body", true), ("id", true), ("type", true)]
        );
    }

    #[test]
    fn signed_id_header_is_minted_per_delivery() {
        let c = Settings {
            id_header: Some("webhook-id".into()),
            timestamp_header: Some("webhook-timestamp".into()),
            signed_content: "{id}.{timestamp}.{body}".into(),
            ..config("webhook-signature", "k")
        };
        let p = build(&c);
        let h = signed(&p, b"{}", NOW);
        let id = h["webhook-id"].to_str().unwrap().to_string();
        assert!(id.starts_with("evt_"), "{id}");
        verify(&p, &h, b"{}", NOW).unwrap();
        assert_eq!(parse(&p, &h, b"{}").unwrap().event_id, id);
        assert_ne!(signed(&p, b"{}", NOW)["webhook-id"], id.as_str());
        // The id is signed: another one breaks the signature.
        let mut forged = h.clone();
        forged.insert("webhook-id", HeaderValue::from_static("evt_other"));
        assert_eq!(code(verify(&p, &forged, b"{}", NOW)), RefusalCode::InvalidSignature);
        forged.remove("webhook-id");
        assert_eq!(code(verify(&p, &forged, b"{}", NOW)), RefusalCode::InvalidSignature);
    }

    #[test]
    fn samples_verify_and_parse_once_signed() {
        let configs = [
            github("k"),
            Settings { id_header: Some("x-id".into()), type_header: Some("x-type".into()), ..github("k") },
            Settings { id_pointer: Some("/meta/event~1id".into()), type_pointer: Some("/type".into()), ..slack("k") },
            Settings { id_header: Some("x-id".into()), signed_content: "{id}:{body}".into(), ..config("x-sig", "k") },
        ];
        for c in configs {
            let p = build(&c);
            assert_eq!(p.sample_types(), ["event"]);
            assert!(p.sample(Some("nope"), NOW).unwrap_err().to_string().contains("known: event"));
            // The caller's merge: the signed headers replace the sample's.
            let Received { sample, headers: h, parsed, .. } = receive_sample(&p, SAMPLE_TYPES[0], NOW);
            let body: Value = serde_json::from_slice(&sample.body).unwrap();
            assert_eq!(body["created"], NOW);
            if c.id_header.is_some() || c.id_pointer.is_some() {
                assert!(parsed.event_id.starts_with("evt_"), "{parsed:?}");
            }
            if c.signed_content.contains("{id}") {
                assert_eq!(parsed.event_id, h["x-id"].to_str().unwrap());
            } else if c.id_header.is_some() {
                assert_eq!(parsed.event_id, body["id"].as_str().unwrap());
            }
            if c.type_header.is_some() || c.type_pointer.is_some() {
                assert_eq!(parsed.event_type, SAMPLE_EVENT_TYPE);
            }
            if c.id_pointer.is_some() {
                assert_eq!(body["meta"]["event/id"], body["id"]);
            }
        }
    }

    #[test]
    fn answer_says_received_and_duplicate() {
        let p = build(&github("k"));
        let a = p.answer(&Accepted { id: "01J", event_id: "e1", duplicate: true, body: b"" });
        assert_eq!(a.content_type, "application/json");
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v, json!({"received": true, "id": "01J", "event_id": "e1", "duplicate": true}));
        assert!(p.precheck(&headers(&[("content-type", "text/plain")])).is_ok());
        assert!(p.precheck(&HeaderMap::new()).is_ok());
    }

    /// Found by the property tests (tests/it/fuzz.rs): with `id_pointer = ""` (the whole body)
    /// the sample was an object, which has no id there, so its own endpoint refused it.
    #[test]
    fn a_whole_body_pointer_gets_a_sample_that_is_the_id() {
        let p = build(&Settings { id_pointer: Some(String::new()), ..config("x-signature", "k") });
        let sample = p.sample(None, NOW).unwrap();
        let s = p.sign_delivery("http://app.test/hook", Some(sample.content_type), &sample.body, NOW);
        let h = headers(&[("content-type", sample.content_type), (s.headers[0].0, &s.headers[0].1)]);
        verify(&p, &h, &sample.body, NOW).unwrap();
        let parsed = parse(&p, &h, &sample.body).unwrap();
        assert!(parsed.event_id.starts_with("evt_"), "{parsed:?}");
        assert_eq!(serde_json::from_slice::<Value>(&sample.body).unwrap(), Value::String(parsed.event_id));
    }

    #[test]
    fn the_configured_header_is_listed_as_secret_and_the_timestamp_and_id_are_not() {
        let with = |secret| {
            build(&Settings {
                timestamp_header: Some("X-Acme-Timestamp".into()),
                id_header: Some("x-acme-id".into()),
                signed_content: "{id}.{timestamp}.{body}".into(),
                ..config("X-Acme-Signature", secret)
            })
        };
        crate::providers::testing::assert_secret_headers_cover_signing(&with("a"), &with("b"));
        assert_eq!(with("a").secret_headers(), ["x-acme-signature"]);
        crate::providers::testing::assert_secret_headers_cover_signing(&build(&github("a")), &build(&github("b")));
    }
}
