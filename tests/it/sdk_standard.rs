//! An independent Standard Webhooks verifier, written the way the official standardwebhooks
//! libraries verify (none of stagehook's code), so integration tests can check what an app would
//! accept: headers looked up case-insensitively; all three required; the timestamp an integer
//! within 5 minutes either way; then any `v1` entry of the signature header equal, in constant
//! time, to `HMAC-SHA256(base64-decoded secret, "{id}.{timestamp}.{body}")`.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET_PREFIX: &str = "whsec_";
const TOLERANCE_IN_SECONDS: i64 = 5 * 60;

/// The libraries pad a secret before decoding it, so both padded and unpadded secrets work.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub fn verify(headers: &[(String, String)], body: &[u8], secret: &str, now_s: i64) -> Result<(), String> {
    let header = |name: &str| {
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    };
    let (Some(msg_id), Some(msg_signature), Some(msg_timestamp)) =
        (header("webhook-id"), header("webhook-signature"), header("webhook-timestamp"))
    else {
        return Err("Missing required headers".into());
    };

    let timestamp: i64 = msg_timestamp.parse().map_err(|_| "Invalid Signature Headers".to_string())?;
    if now_s.saturating_sub(timestamp) > TOLERANCE_IN_SECONDS {
        return Err("Message timestamp too old".into());
    }
    if timestamp > now_s.saturating_add(TOLERANCE_IN_SECONDS) {
        return Err("Message timestamp too new".into());
    }

    let key = SECRET_BASE64
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|e| format!("Invalid webhook secret: {e}"))?;
    if key.is_empty() {
        return Err("webhook secret may not be empty".into());
    }
    let mut to_sign = format!("{msg_id}.{timestamp}.").into_bytes();
    to_sign.extend_from_slice(body);

    for versioned_sig in msg_signature.split(' ') {
        let Some((version, signature)) = versioned_sig.split_once(',') else {
            continue;
        };
        if version != "v1" {
            continue;
        }
        let Ok(sig_bytes) = STANDARD.decode(signature) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
        mac.update(&to_sign);
        // `verify_slice` compares in constant time.
        if mac.verify_slice(&sig_bytes).is_ok() {
            return Ok(());
        }
    }
    Err("No matching signature found".into())
}

#[cfg(test)]
mod tests {
    use super::verify;
    use serde_json::Value;
    use stagehook::providers::kind::Kind;
    use stagehook::providers::standard::Settings;
    use stagehook::providers::standard::Standard;
    use stagehook::providers::Provider;

    fn vector() -> Value {
        crate::support::vectors()["standard_webhooks"][0].clone()
    }

    fn headers(id: &str, ts: i64, signature: &str) -> Vec<(String, String)> {
        // Mixed case on purpose: header names are case-insensitive.
        vec![
            ("Webhook-Id".into(), id.into()),
            ("WEBHOOK-TIMESTAMP".into(), ts.to_string()),
            ("webhook-signature".into(), signature.into()),
        ]
    }

    #[test]
    fn sdk_standard_accepts_the_published_vector_within_the_window_only() {
        let v = vector();
        let (secret, id, payload) =
            (v["secret"].as_str().unwrap(), v["msg_id"].as_str().unwrap(), v["payload"].as_str().unwrap());
        let ts = v["timestamp"].as_i64().unwrap();
        let good = headers(id, ts, v["signature"].as_str().unwrap());
        for now in [ts - 300, ts, ts + 300] {
            assert_eq!(verify(&good, payload.as_bytes(), secret, now), Ok(()), "at {now}");
        }
        assert_eq!(verify(&good, payload.as_bytes(), secret, ts + 301), Err("Message timestamp too old".into()));
        assert_eq!(verify(&good, payload.as_bytes(), secret, ts - 301), Err("Message timestamp too new".into()));
        let near_miss = headers(id, ts, v["must_reject_signature"].as_str().unwrap());
        assert!(verify(&near_miss, payload.as_bytes(), secret, ts).is_err());
        assert!(verify(&good, b"{\"test\": 2432232315}", secret, ts).is_err());
        assert!(verify(&good, payload.as_bytes(), "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", ts).is_err());
        assert_eq!(verify(&good[1..], payload.as_bytes(), secret, ts), Err("Missing required headers".into()));
        // Rotation: the right signature among others.
        let several = format!("v1,AAAA v1a,xyz {}", v["signature"].as_str().unwrap());
        assert_eq!(verify(&headers(id, ts, &several), payload.as_bytes(), secret, ts), Ok(()));
    }

    #[test]
    fn sdk_standard_accepts_what_stagehook_signs_for_delivery() {
        let secret = vector()["secret"].as_str().unwrap().to_string();
        let c = Settings { secret: Some(stagehook::secret::Secret::new(secret.clone())), ..Settings::default() };
        let p = Standard::from_settings("standard", &c).unwrap();
        let now = 1_700_000_000;
        // The fixtures README lists; an empty list would let the loop pass without a check.
        assert_eq!(p.sample_types(), ["user.created", "invoice.paid"]);
        for kind in p.sample_types() {
            let sample = p.sample(Some(kind), now).unwrap();
            let signed = p.sign_delivery("http://app/hook", Some(sample.content_type), &sample.body, now);
            let sent: Vec<(String, String)> = signed.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            assert_eq!(verify(&sent, &sample.body, &secret, now + 60), Ok(()), "{kind}");
        }
    }
}
