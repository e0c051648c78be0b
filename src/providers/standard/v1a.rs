//! Standard Webhooks' asymmetric scheme, `v1a`: Ed25519 over `{id}.{timestamp}.{body}`, with
//! keys serialised `whpk_<base64>` (public) and `whsk_<base64>` (secret), as
//! spec/standard-webhooks.md ("Signature scheme") defines them. Reading the keys and the
//! signatures, signing and verifying, and what a refused `v1a` signature says.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use super::{Standard, SECRET_BASE64, SECRET_PREFIX};
use crate::providers::diagnose::Diagnosis;

/// The prefixes of the asymmetric keys (spec/standard-webhooks.md, "Secret serialization").
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// RFC 8032: an Ed25519 public key and a seed are 32 bytes, a signature 64.
const ED25519_KEY_LEN: usize = 32;
const ED25519_SIGNATURE_LEN: usize = 64;

/// `{id}.{timestamp}.{body}`, the content both schemes sign.
fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// `base64(Ed25519(key, "{id}.{timestamp}.{body}"))`, the signature of a `v1a` entry.
pub fn sign_ed25519(key: &Ed25519KeyPair, id: &str, timestamp: i64, body: &[u8]) -> String {
    STANDARD.encode(key.sign(&signed_content(id, timestamp, body)))
}

/// Why a key or a `v1a` signature cannot be read: a reason that reads on from the key's name
/// (or the entry's), and never quotes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error(
        "is a whsk_ secret key; this takes the sender's whpk_ public key (a whsk_ key signs: it belongs in \
         signing_key, and in no file the sender does not own)"
    )]
    SigningKeyAsPublic,
    #[error("is a whpk_ public key, which cannot sign; this takes the whsk_ secret key")]
    PublicKeyAsSigning,
    #[error("is a whsec_ secret (v1, HMAC): it belongs in `secret`; this takes a {0} key")]
    HmacSecret(&'static str),
    #[error("is not base64 (after the `{0}` prefix, if any)")]
    NotBase64(&'static str),
    #[error("is not base64")]
    SignatureNotBase64,
    #[error("is base64url, not the standard base64 (`+`, `/`) the spec uses")]
    Base64Url,
    #[error("decodes to {0} bytes; an Ed25519 public key is 32")]
    PublicKeyLength(usize),
    #[error("decodes to {0} bytes; a whsk_ key is 32 (the seed) or 64 (the seed then its public key)")]
    SigningKeyLength(usize),
    #[error("decodes to {0} bytes; an Ed25519 signature is 64")]
    SignatureLength(usize),
    #[error(
        "is 64 bytes, the seed-then-public-key form, but its last 32 bytes are not the public key of its first \
         32: the key is damaged, or two keys were joined"
    )]
    HalvesDisagree,
    #[error("is not an Ed25519 seed")]
    NotASeed,
}

/// The 32 bytes of an Ed25519 public key written `whpk_<base64>` (or bare base64). Another kind
/// of key is named as such, so that a key pasted into the wrong setting says where it belongs.
pub fn decode_public_key(text: &str) -> Result<Vec<u8>, Unreadable> {
    let text = text.trim();
    if text.starts_with(SIGNING_KEY_PREFIX) {
        return Err(Unreadable::SigningKeyAsPublic);
    }
    if text.starts_with(SECRET_PREFIX) {
        return Err(Unreadable::HmacSecret("whpk_ public"));
    }
    let encoded = text.strip_prefix(PUBLIC_KEY_PREFIX).unwrap_or(text);
    let key = SECRET_BASE64.decode(encoded).map_err(|_| Unreadable::NotBase64(PUBLIC_KEY_PREFIX))?;
    if key.len() != ED25519_KEY_LEN {
        return Err(Unreadable::PublicKeyLength(key.len()));
    }
    Ok(key)
}

/// The Ed25519 key pair of a `whsk_<base64>` key (or bare base64) in either serialisation in
/// use: the 32-byte seed, or the 64-byte seed followed by its public key, whose second half must
/// then be the public key of the first.
pub fn decode_signing_key(text: &str) -> Result<Ed25519KeyPair, Unreadable> {
    let text = text.trim();
    if text.starts_with(PUBLIC_KEY_PREFIX) {
        return Err(Unreadable::PublicKeyAsSigning);
    }
    if text.starts_with(SECRET_PREFIX) {
        return Err(Unreadable::HmacSecret("whsk_ Ed25519"));
    }
    let encoded = text.strip_prefix(SIGNING_KEY_PREFIX).unwrap_or(text);
    let bytes = SECRET_BASE64.decode(encoded).map_err(|_| Unreadable::NotBase64(SIGNING_KEY_PREFIX))?;
    match bytes.len() {
        ED25519_KEY_LEN => Ed25519KeyPair::from_seed_unchecked(&bytes).map_err(|_| Unreadable::NotASeed),
        ED25519_SIGNATURE_LEN => {
            let (seed, public) = bytes.split_at(ED25519_KEY_LEN);
            Ed25519KeyPair::from_seed_and_public_key(seed, public).map_err(|_| Unreadable::HalvesDisagree)
        }
        n => Err(Unreadable::SigningKeyLength(n)),
    }
}

/// `whpk_<base64>`, the public key of a signing key as the spec serialises it.
pub fn public_key_text(key: &Ed25519KeyPair) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(key.public_key().as_ref()))
}

/// The most `v1a` entries of one header tried: a sender lists one per key it rotates through,
/// and each try is an Ed25519 verification per public key, so a forged header full of entries
/// must not cost more than a few.
pub const MAX_V1A_ENTRIES: usize = 8;

/// The `v1a` signature of an entry: standard base64 of 64 bytes.
fn decode_v1a(signature: &str) -> Result<Vec<u8>, Unreadable> {
    let bytes = STANDARD.decode(signature).map_err(|_| {
        if signature.contains(['-', '_']) {
            Unreadable::Base64Url
        } else {
            Unreadable::SignatureNotBase64
        }
    })?;
    if bytes.len() != ED25519_SIGNATURE_LEN {
        return Err(Unreadable::SignatureLength(bytes.len()));
    }
    Ok(bytes)
}

/// What a signature header holds, by version.
pub(super) struct Entries<'a> {
    /// The decoded `v1` digests; undecodable ones never match.
    pub(super) v1: Vec<Vec<u8>>,
    /// How many `v1` entries there are, decodable or not.
    pub(super) v1_count: usize,
    /// The `v1a` entries as written, the first [`MAX_V1A_ENTRIES`].
    pub(super) v1a: Vec<&'a str>,
}

pub(super) fn entries(header: &str) -> Entries<'_> {
    let mut out = Entries { v1: Vec::new(), v1_count: 0, v1a: Vec::new() };
    for (version, signature) in header.split(' ').filter_map(|entry| entry.split_once(',')) {
        match version {
            "v1" => {
                out.v1_count += 1;
                out.v1.extend(STANDARD.decode(signature).ok());
            }
            "v1a" if out.v1a.len() < MAX_V1A_ENTRIES => out.v1a.push(signature),
            _ => {}
        }
    }
    out
}

impl Standard {
    /// Whether any of `signatures` (`v1a` entries as written) verifies with any public key.
    pub(super) fn verifies_v1a(&self, signatures: &[&str], id: &str, timestamp: i64, body: &[u8]) -> bool {
        let decoded: Vec<Vec<u8>> = signatures.iter().filter_map(|s| decode_v1a(s).ok()).collect();
        if decoded.is_empty() || self.public_keys.is_empty() {
            return false;
        }
        let content = signed_content(id, timestamp, body);
        self.public_keys.iter().any(|key| {
            let key = UnparsedPublicKey::new(&ED25519, key);
            decoded.iter().any(|sig| key.verify(&content, sig).is_ok())
        })
    }

    /// Why no entry of a header verified, in the refusal's words: each version present is
    /// answered for, a version the endpoint has no key for says so.
    pub(super) fn unmatched(&self, given: &Entries<'_>) -> String {
        let mut why = Vec::new();
        if !given.v1a.is_empty() {
            why.push(if self.public_keys.is_empty() {
                "webhook-signature has a v1a (Ed25519) signature but this endpoint has no public_key to verify it \
                 with; set public_key to the sender's whpk_ key"
            } else {
                "no v1a signature in webhook-signature verifies with the configured public keys"
            });
        }
        if given.v1_count > 0 || given.v1a.is_empty() {
            why.push(match (self.keys.is_empty(), given.v1_count) {
                (false, _) => "no v1 signature in webhook-signature matches the payload for the configured secret",
                (true, 0) => "webhook-signature has no v1a signature to verify with the configured public keys",
                (true, _) => {
                    "webhook-signature has a v1 (HMAC) signature but this endpoint has no secret to verify it with"
                }
            });
        }
        why.join("; ")
    }

    /// What the `v1a` entries alone tell of a refusal ([`Provider::signature_diagnosis`]): a
    /// signature no public key here could verify, or none that can be read.
    pub(super) fn v1a_diagnosis(&self, given: &Entries<'_>) -> Option<Diagnosis> {
        // A v1 entry this endpoint has a secret for may still explain the refusal.
        if given.v1a.is_empty() || (given.v1_count > 0 && !self.keys.is_empty()) {
            return None;
        }
        if self.public_keys.is_empty() {
            let detail = format!(
                "the request is signed v1a (Ed25519){} and this endpoint has no public key: set \
                 providers.{}.public_key to the sender's whpk_ key",
                if given.v1_count > 0 { ", its v1 signature has no secret here," } else { "" },
                self.name
            );
            return Some(Diagnosis::new("no_public_key", detail));
        }
        let problems: Vec<String> = given
            .v1a
            .iter()
            .enumerate()
            .filter_map(|(i, sig)| decode_v1a(sig).err().map(|why| format!("v1a entry {} {why}", i + 1)))
            .collect();
        (problems.len() == given.v1a.len()).then(|| {
            Diagnosis::new(
                "malformed_signature",
                format!(
                    "no v1a signature can be read: {}; the sender writes the signature differently from the \
                     spec's `v1a,<base64 of 64 bytes>`",
                    problems.join("; ")
                ),
            )
        })
    }

    /// A `v1a` signature that no configured public key verifies, when only it could have
    /// ([`Provider::mismatch_diagnosis`]).
    pub(super) fn v1a_mismatch(&self, given: &Entries<'_>) -> Option<Diagnosis> {
        let v1_could = given.v1_count > 0 && !self.keys.is_empty();
        if given.v1a.is_empty() || self.public_keys.is_empty() || v1_could {
            return None;
        }
        let own = self.signing_key.as_ref().map(public_key_text);
        let shown: Vec<&str> = self.public_keys_shown.iter().map(String::as_str).chain(own.as_deref()).collect();
        Some(Diagnosis::new(
            "key_mismatch",
            format!(
                "the v1a signature verifies with none of this endpoint's public keys ({}), and no other body or \
                 endpoint makes it: the sender signs with another key pair; set public_key to the whpk_ key the \
                 sender publishes",
                shown.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{code, headers_of, provider, signed, vector};
    use super::super::*;
    use super::*;
    use crate::providers::testing::receive_sample;
    use crate::providers::{Inbound, Provider, RefusalCode, Signed};
    use crate::secret::Secret;

    // RFC 8032 section 7.1, TEST 1: a seed and its public key, written as the spec serialises
    // keys (spec/standard-webhooks.md, "Secret serialization": base64 after `whsk_`/`whpk_`), in
    // both serialisations of the secret key in use (the seed; the seed then its public key). The
    // `v1a` signature of the published v1 vector's content was made with Python's `cryptography`
    // (`Ed25519PrivateKey.from_private_bytes(seed).sign(b'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.
    // {"test": 2432232314}')`), an implementation independent of ring; Ed25519 signatures are
    // deterministic, so ring must write the same bytes.
    const SEED_KEY: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
    const FULL_KEY: &str =
        "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg==";
    const PUBLIC_KEY: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const V1A_SIGNATURE: &str =
        "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw==";
    /// RFC 8032 TEST 1's signature of the empty message.
    const RFC_EMPTY_SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    /// Another key pair: the seed of 32 bytes 0x07.
    const OTHER_SEED_KEY: &str = "whsk_BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

    fn asymmetric(settings: Settings) -> Standard {
        Standard::from_settings("std", &settings).unwrap()
    }

    fn public_only(keys: &[&str]) -> Standard {
        asymmetric(Settings { public_keys: keys.iter().map(|k| k.to_string()).collect(), ..Settings::default() })
    }

    fn config_error(settings: Settings) -> String {
        crate::providers::kind::said(&Standard::from_settings("std", &settings).err().unwrap())
    }

    fn other_public_key() -> String {
        public_key_text(&decode_signing_key(OTHER_SEED_KEY).unwrap())
    }

    #[test]
    fn the_v1a_vector_signs_and_verifies_in_both_key_serialisations() {
        let v = vector();
        let (id, payload, ts) = (v.str("msg_id"), v.str("payload"), v.int("timestamp"));
        for key in [SEED_KEY, FULL_KEY] {
            let pair = decode_signing_key(key).unwrap();
            assert_eq!(public_key_text(&pair), PUBLIC_KEY, "{key}");
            assert_eq!(format!("v1a,{}", sign_ed25519(&pair, id, ts, payload.as_bytes())), V1A_SIGNATURE);
            assert_eq!(hex::encode(pair.sign(b"")), RFC_EMPTY_SIGNATURE);
        }
        // Bare base64 and unpadded base64 read the same key.
        let bare = decode_public_key(PUBLIC_KEY.strip_prefix("whpk_").unwrap().trim_end_matches('=')).unwrap();
        assert_eq!(bare, decode_public_key(PUBLIC_KEY).unwrap());

        let p = public_only(&[PUBLIC_KEY]);
        assert_eq!(code(&p, &signed(id, ts, V1A_SIGNATURE), payload.as_bytes(), ts), None);
        // The body, the id or the timestamp changed: refused.
        assert_eq!(
            code(&p, &signed(id, ts, V1A_SIGNATURE), b"{\"test\": 2432232315}", ts),
            Some(RefusalCode::InvalidSignature)
        );
        assert_eq!(
            code(&p, &signed("msg_other", ts, V1A_SIGNATURE), payload.as_bytes(), ts),
            Some(RefusalCode::InvalidSignature)
        );
        assert_eq!(
            code(&p, &signed(id, ts + 1, V1A_SIGNATURE), payload.as_bytes(), ts),
            Some(RefusalCode::InvalidSignature)
        );
        // Another key pair's public key: refused, saying the public keys did not verify it.
        let other = public_only(&[&other_public_key()]);
        let h = signed(id, ts, V1A_SIGNATURE);
        let r = other.verify(&Inbound { headers: &h, body: payload.as_bytes(), url: "", now_s: ts }).unwrap_err();
        assert_eq!(r.code, RefusalCode::InvalidSignature);
        assert!(r.message.contains("no v1a signature in webhook-signature verifies"), "{}", r.message);
        // Rotation: any configured public key.
        assert_eq!(code(&public_only(&[&other_public_key(), PUBLIC_KEY]), &h, payload.as_bytes(), ts), None);
        let single = asymmetric(Settings { public_key: Some(PUBLIC_KEY.into()), ..Settings::default() });
        assert_eq!(code(&single, &h, payload.as_bytes(), ts), None);
        // The time is checked first, as for v1.
        assert_eq!(code(&p, &h, payload.as_bytes(), ts + 301), Some(RefusalCode::StaleTimestamp));
    }

    #[test]
    fn each_version_counts_only_with_its_key_and_either_is_enough() {
        let v = vector();
        let (id, payload, ts) = (v.str("msg_id"), v.str("payload"), v.int("timestamp"));
        let (v1, v1a, bad_v1) = (v.str("signature"), V1A_SIGNATURE, v.str("must_reject_signature"));
        let secret_only = provider(&[v.str("secret")]);
        let public_key_only = public_only(&[PUBLIC_KEY]);
        let both = asymmetric(Settings {
            secret: Some(Secret::new(v.str("secret"))),
            public_key: Some(PUBLIC_KEY.into()),
            ..Settings::default()
        });
        let other_key = other_public_key();
        let wrong_key_only = public_only(&[&other_key]);
        let ok = None;
        let no = Some(RefusalCode::InvalidSignature);
        for (header, secret, public, both_, wrong) in [
            (format!("{v1} {v1a}"), ok, ok, ok, no),
            (format!("{v1a} {v1}"), ok, ok, ok, no),
            (format!("{bad_v1} {v1a}"), no, ok, ok, no),
            (v1a.to_string(), no, ok, ok, no),
            (v1.to_string(), ok, no, ok, no),
            // A v1 entry's bytes under v1a, and the reverse, never count.
            (format!("v1a,{}", v1.strip_prefix("v1,").unwrap()), no, no, no, no),
            (format!("v1,{}", v1a.strip_prefix("v1a,").unwrap()), no, no, no, no),
        ] {
            let h = signed(id, ts, &header);
            let body = payload.as_bytes();
            assert_eq!(code(&secret_only, &h, body, ts), secret, "secret only: {header}");
            assert_eq!(code(&public_key_only, &h, body, ts), public, "public key only: {header}");
            assert_eq!(code(&both, &h, body, ts), both_, "both: {header}");
            assert_eq!(code(&wrong_key_only, &h, body, ts), wrong, "another public key: {header}");
        }
        // A v1a signature where no public key is configured says so.
        let h = signed(id, ts, v1a);
        let r = secret_only.verify(&Inbound { headers: &h, body: payload.as_bytes(), url: "", now_s: ts }).unwrap_err();
        assert!(r.message.contains("v1a (Ed25519) signature but this endpoint has no public_key"), "{}", r.message);
        let h = signed(id, ts, v1);
        let r =
            public_key_only.verify(&Inbound { headers: &h, body: payload.as_bytes(), url: "", now_s: ts }).unwrap_err();
        assert!(r.message.contains("v1 (HMAC) signature but this endpoint has no secret"), "{}", r.message);
    }

    #[test]
    fn public_keys_configure_an_endpoint_and_malformed_keys_stop_startup_by_name() {
        let c = Settings { public_keys: vec![PUBLIC_KEY.into()], ..Settings::default() };
        assert!(Standard::has_credentials(&c));
        assert!(!Standard::has_credentials(&Settings::default()));
        // A signing key alone verifies its own signatures but configures nothing to receive.
        assert!(!Standard::has_credentials(&Settings {
            signing_key: Some(Secret::new(SEED_KEY)),
            ..Settings::default()
        }));
        let other = other_public_key();
        for (settings, key, says) in [
            (
                Settings { public_keys: vec![other.clone(), "whpk_not*base64".into()], ..Settings::default() },
                "providers.std.public_keys[1] ",
                "is not base64",
            ),
            (
                Settings {
                    public_key: Some(other.clone()),
                    public_keys: vec![PUBLIC_KEY.into(), "whpk_YWJjZA==".into()],
                    ..Settings::default()
                },
                "providers.std.public_keys[1] ",
                "decodes to 4 bytes; an Ed25519 public key is 32",
            ),
            (
                Settings { public_key: Some(SEED_KEY.into()), ..Settings::default() },
                "providers.std.public_key ",
                "whsk_",
            ),
            (
                Settings { public_key: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()), ..Settings::default() },
                "providers.std.public_key ",
                "belongs in `secret`",
            ),
            (
                Settings { signing_key: Some(Secret::new(PUBLIC_KEY)), ..Settings::default() },
                "providers.std.signing_key ",
                "cannot sign",
            ),
            (
                Settings { signing_key: Some(Secret::new("whsk_YWJjZA==")), ..Settings::default() },
                "providers.std.signing_key ",
                "decodes to 4 bytes; a whsk_ key is 32 (the seed) or 64",
            ),
        ] {
            let e = config_error(settings);
            assert!(e.starts_with(key) && e.contains(says), "{e}");
        }
        // The 64-byte form whose halves disagree: the seed of one key, the public key of another.
        let mut mixed = STANDARD.decode(FULL_KEY.strip_prefix("whsk_").unwrap()).unwrap();
        mixed[32..].copy_from_slice(&STANDARD.decode(other.strip_prefix("whpk_").unwrap()).unwrap());
        let mixed = format!("whsk_{}", STANDARD.encode(&mixed));
        let e = config_error(Settings { signing_key: Some(Secret::new(mixed.clone())), ..Settings::default() });
        assert!(e.starts_with("providers.std.signing_key ") && e.contains("not the public key of its first 32"), "{e}");
        assert!(!e.contains(&mixed[5..20]), "the key is never quoted: {e}");
    }

    #[test]
    fn a_signing_key_signs_v1a_beside_v1_and_without_one_nothing_is_signed() {
        let v = vector();
        let body = br#"{"type":"a.b","data":{}}"#;
        let public_key = decode_public_key(PUBLIC_KEY).unwrap();
        let ed25519_verifies = |s: &Signed| {
            let get = |n: &str| s.headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()).unwrap();
            let (id, ts) = (get(ID_HEADER), get(TIMESTAMP_HEADER).parse::<i64>().unwrap());
            let header = get(SIGNATURE_HEADER);
            assert_eq!(header, get(SVIX_SIGNATURE_HEADER));
            let sig = header.split(' ').find_map(|e| e.strip_prefix("v1a,")).unwrap();
            let content = format!("{id}.{ts}.{}", std::str::from_utf8(body).unwrap());
            UnparsedPublicKey::new(&ED25519, &public_key)
                .verify(content.as_bytes(), &STANDARD.decode(sig).unwrap())
                .is_ok()
        };
        // With a secret too: `v1` then `v1a`, space-separated, each verifying on its own.
        let both = asymmetric(Settings {
            secret: Some(Secret::new(v.str("secret"))),
            signing_key: Some(Secret::new(FULL_KEY)),
            ..Settings::default()
        });
        assert!(both.can_sign());
        let s = both.sign_delivery("http://app/hook", Some("application/json"), body, 1_000);
        let header = &s.headers.iter().find(|(k, _)| *k == SIGNATURE_HEADER).unwrap().1;
        let versions: Vec<&str> = header.split(' ').filter_map(|e| e.split_once(',')).map(|(v, _)| v).collect();
        assert_eq!(versions, ["v1", "v1a"]);
        assert!(ed25519_verifies(&s));
        assert_eq!(code(&provider(&[v.str("secret")]), &headers_of(&s), body, 1_000), None, "v1 alone verifies");
        assert_eq!(code(&public_only(&[PUBLIC_KEY]), &headers_of(&s), body, 1_000), None, "v1a alone verifies");
        // Without a secret: `v1a` only; the endpoint accepts its own signing key (`send`).
        let signer = asymmetric(Settings {
            public_key: Some(other_public_key()),
            signing_key: Some(Secret::new(SEED_KEY)),
            ..Settings::default()
        });
        let s = signer.sign_delivery("http://app/hook", Some("application/json"), body, 1_000);
        assert!(ed25519_verifies(&s));
        assert!(!s.headers.iter().any(|(_, v)| v.contains("v1,")), "{s:?}");
        for kind in signer.sample_types() {
            receive_sample(&signer, kind, 1_000);
        }
        // Public keys only: nothing to sign with; the sender's own headers go through unchanged.
        let verifier = public_only(&[PUBLIC_KEY]);
        assert!(!verifier.can_sign());
        let s = verifier.sign_resend("http://app/hook", Some("application/json"), body, &[], 1_000);
        assert_eq!(s, Signed { url: "http://app/hook".into(), headers: Vec::new() });
        // The signature headers carry the signing key's signature: listed as secret.
        let other = asymmetric(Settings { signing_key: Some(Secret::new(OTHER_SEED_KEY)), ..Settings::default() });
        let mine = asymmetric(Settings { signing_key: Some(Secret::new(SEED_KEY)), ..Settings::default() });
        crate::providers::testing::assert_secret_headers_cover_signing(&mine, &other);
    }

    #[test]
    fn a_public_key_only_endpoint_is_warned_that_it_cannot_sign() {
        let mut out = Vec::new();
        let verify_only = Settings { public_key: Some(PUBLIC_KEY.into()), ..Settings::default() };
        Standard::section_findings("std", &verify_only, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].id, out[0].key.as_str()), ("provider.cannot_sign", "providers.std.signing_key"));
        for signs in [
            Settings { signing_key: Some(Secret::new(SEED_KEY)), ..verify_only.clone() },
            Settings { secret: Some(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")), ..verify_only.clone() },
            Settings::default(),
        ] {
            let mut out = Vec::new();
            Standard::section_findings("std", &signs, &mut out);
            assert!(out.is_empty(), "{out:?}");
        }
    }

    /// The diagnosis of a refused `v1a` request, as `http/ingest.rs` asks for it.
    fn diagnosis(p: Standard, header: &str, body: &[u8]) -> crate::providers::diagnose::Diagnosis {
        let v = vector();
        let (id, ts) = (v.str("msg_id"), v.int("timestamp"));
        let h = signed(id, ts, header);
        let req = Inbound { headers: &h, body, url: "http://127.0.0.1/staging/webhooks/std", now_s: ts };
        let refusal = p.verify(&req).unwrap_err();
        let endpoint = crate::providers::Endpoint {
            path: "std".into(),
            kind: crate::providers::ProviderKind::Standard,
            provider: std::sync::Arc::new(p),
            configured: true,
            targets: Vec::new(),
            routes: Vec::new(),
        };
        crate::providers::diagnose::diagnose(&endpoint, std::slice::from_ref(&endpoint), &req, &refusal, false).unwrap()
    }

    #[test]
    fn a_refused_v1a_signature_is_diagnosed() {
        let payload = vector().str("payload").to_string();
        let body = payload.as_bytes();
        let d = diagnosis(public_only(&[&other_public_key()]), V1A_SIGNATURE, body);
        assert_eq!(d.code, "key_mismatch", "{}", d.detail);
        assert!(d.detail.contains(&other_public_key()), "{}", d.detail);
        // The sender signed the compact body; a proxy added spaces.
        let d = diagnosis(public_only(&[PUBLIC_KEY]), V1A_SIGNATURE, br#"{"test":2432232314}"#);
        assert_eq!(d.code, "body_modified", "{}", d.detail);
        let d = diagnosis(provider(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]), V1A_SIGNATURE, body);
        assert_eq!(d.code, "no_public_key", "{}", d.detail);
        assert!(d.detail.contains("providers.standard.public_key"), "{}", d.detail);
        let url_safe = format!("v1a,{}", base64::engine::general_purpose::URL_SAFE.encode([0xfb_u8; 64]));
        for (header, says) in [
            ("v1a,not base64!".to_string(), "v1a entry 1 is not base64"),
            ("v1a,AAAA".to_string(), "v1a entry 1 decodes to 3 bytes; an Ed25519 signature is 64"),
            (url_safe, "base64url"),
        ] {
            let d = diagnosis(public_only(&[PUBLIC_KEY]), &header, body);
            assert_eq!(d.code, "malformed_signature", "{}", d.detail);
            assert!(d.detail.contains(says), "{}", d.detail);
        }
    }
}
