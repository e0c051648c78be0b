//! An independent SendGrid Event Webhook verifier, written the way sendgrid's SDKs verify
//! (`EventWebhook.verify_signature`; none of stagehook's code): ECDSA P-256 / SHA-256 over the
//! timestamp header's text followed by the raw body, the signature base64 DER, the key base64 DER
//! SubjectPublicKeyInfo. No timestamp window, as in the SDK; high-S signatures are accepted, as
//! the SDK's ECDSA library accepts them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// Every P-256 SubjectPublicKeyInfo starts with these 26 bytes; the 65-byte point follows.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

pub fn verify(headers: &[(String, String)], body: &[u8], public_key_b64: &str) -> Result<(), String> {
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let signature = header(SIGNATURE_HEADER).ok_or_else(|| format!("missing {SIGNATURE_HEADER}"))?;
    let timestamp = header(TIMESTAMP_HEADER).ok_or_else(|| format!("missing {TIMESTAMP_HEADER}"))?;

    let spki = STANDARD.decode(public_key_b64).map_err(|e| format!("public key is not base64: {e}"))?;
    let point = spki
        .strip_prefix(&P256_SPKI_PREFIX[..])
        .filter(|p| p.len() == 65)
        .ok_or("public key is not an uncompressed P-256 SubjectPublicKeyInfo")?;

    let mut timestamped_payload = timestamp.as_bytes().to_vec();
    timestamped_payload.extend_from_slice(body);
    let decoded_signature = STANDARD.decode(signature).map_err(|e| format!("signature is not base64: {e}"))?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .verify(&timestamped_payload, &decoded_signature)
        .map_err(|_| "signature does not verify".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    use serde_json::Value;
    use stagehook::providers::kind::Kind;
    use stagehook::providers::sendgrid::SendGrid;
    use stagehook::providers::sendgrid::Settings;
    use stagehook::providers::Provider;

    fn vector() -> Value {
        crate::support::vectors()["sendgrid"][0].clone()
    }

    fn headers(signature: &str, timestamp: &str) -> Vec<(String, String)> {
        // Lower case on purpose: header names are case-insensitive.
        vec![
            (SIGNATURE_HEADER.to_ascii_lowercase(), signature.into()),
            (TIMESTAMP_HEADER.to_ascii_lowercase(), timestamp.into()),
        ]
    }

    #[test]
    fn sdk_sendgrid_accepts_the_published_high_s_vector_with_its_key_only() {
        let v = vector();
        let (key, payload) = (v["public_key"].as_str().unwrap(), v["payload"].as_str().unwrap());
        let good = headers(v["signature"].as_str().unwrap(), v["timestamp"].as_str().unwrap());
        assert_eq!(verify(&good, payload.as_bytes(), key), Ok(()));
        assert!(verify(&good, payload.as_bytes(), v["must_reject_with_public_key"].as_str().unwrap()).is_err());
        assert!(verify(&good, payload.trim_end().as_bytes(), key).is_err(), "the trailing CRLF is signed");
        let later = headers(v["signature"].as_str().unwrap(), "1600112503");
        assert!(verify(&later, payload.as_bytes(), key).is_err());
        assert!(verify(&good[..1], payload.as_bytes(), key).is_err());
        assert!(verify(&good[1..], payload.as_bytes(), key).is_err());
    }

    #[test]
    fn sdk_sendgrid_accepts_what_stagehook_signs_with_a_staging_key() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let public = STANDARD.encode([&P256_SPKI_PREFIX[..], pair.public_key().as_ref()].concat());
        let c = Settings {
            public_key: Some(public.clone()),
            signing_key: Some(stagehook::secret::Secret::new(STANDARD.encode(pkcs8.as_ref()))),
            ..Settings::default()
        };
        let p = SendGrid::from_settings("sendgrid", &c).unwrap();
        let now = 1_700_000_000;
        // The fixtures README lists; an empty list would let the loop pass without a check.
        assert_eq!(p.sample_types(), ["batch", "delivered", "bounce"]);
        for kind in p.sample_types() {
            let sample = p.sample(Some(kind), now).unwrap();
            let signed = p.sign_delivery("http://app/sg", Some(sample.content_type), &sample.body, now);
            let sent: Vec<(String, String)> = signed.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            assert_eq!(verify(&sent, &sample.body, &public), Ok(()), "{kind}");
        }
    }
}
