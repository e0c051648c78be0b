//! An independent check of a Slack request, written the way slack_sdk's `SignatureVerifier`
//! (`is_valid_request`) is, for tests to judge what stagehook delivers: header names lowercased;
//! both `X-Slack-Request-Timestamp` and `X-Slack-Signature` required; a timestamp more than
//! 300 s from now, either way, refused first; then `v0=` + hex of HMAC-SHA256(signing secret,
//! `v0:{timestamp}:{body}`) with the timestamp as written, compared in constant time
//! (`hmac.compare_digest`).

#![allow(dead_code)]

use hmac::{Hmac, Mac};
use sha2::Sha256;
use stagehook::providers::slack::Slack;
use stagehook::providers::Provider;
use stagehook::secret::Secret;

const TOLERANCE_S: i64 = 60 * 5;

pub fn generate_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn compare_digest(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn verify(headers: &[(String, String)], body: &[u8], secret: &str, now_s: i64) -> Result<(), String> {
    let normalized: Vec<(String, &str)> = headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str())).collect();
    let get = |name: &str| normalized.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let (Some(timestamp), Some(signature)) = (get("x-slack-request-timestamp"), get("x-slack-signature")) else {
        return Err("missing X-Slack-Request-Timestamp or X-Slack-Signature".into());
    };
    let ts: i64 = timestamp.trim().parse().map_err(|_| format!("timestamp {timestamp:?} is not an integer"))?;
    if (now_s - ts).abs() > TOLERANCE_S {
        return Err(format!("timestamp {ts} is more than {TOLERANCE_S} s from now ({now_s})"));
    }
    let body = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    if !compare_digest(&generate_signature(secret, timestamp, body), signature) {
        return Err("signature does not match".into());
    }
    Ok(())
}

struct Vector {
    secret: String,
    timestamp: i64,
    payload: String,
    header: String,
}

fn vectors() -> Vec<Vector> {
    let v = crate::support::vectors();
    v["slack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Vector {
            secret: e["secret"].as_str().unwrap().into(),
            timestamp: e["timestamp"].as_i64().unwrap(),
            payload: e["payload"].as_str().unwrap().into(),
            header: e["header"].as_str().unwrap().into(),
        })
        .collect()
}

fn headers(signature: &str, timestamp: i64) -> Vec<(String, String)> {
    vec![
        ("X-Slack-Signature".to_string(), signature.to_string()),
        ("X-Slack-Request-Timestamp".to_string(), timestamp.to_string()),
    ]
}

#[test]
fn published_vectors_pass_within_five_minutes_either_way() {
    for v in vectors() {
        let h = headers(&v.header, v.timestamp);
        for now in [v.timestamp, v.timestamp + 300, v.timestamp - 300] {
            verify(&h, v.payload.as_bytes(), &v.secret, now).unwrap();
        }
        for now in [v.timestamp + 301, v.timestamp - 301] {
            assert!(verify(&h, v.payload.as_bytes(), &v.secret, now).is_err(), "{now}");
        }
        let tampered = v.payload.replace("roadrunner", "coyote");
        assert!(verify(&h, tampered.as_bytes(), &v.secret, v.timestamp).is_err());
        assert!(verify(&h, v.payload.as_bytes(), "wrong", v.timestamp).is_err());
        assert!(verify(&h[..1], v.payload.as_bytes(), &v.secret, v.timestamp).is_err());
        assert!(verify(&h[1..], v.payload.as_bytes(), &v.secret, v.timestamp).is_err());
    }
}

#[test]
fn stagehook_deliveries_pass_at_the_time_they_are_signed() {
    let p =
        Slack { name: "slack".into(), secrets: vec![Secret::new("first"), Secret::new("second")], tolerance_s: 300 };
    let now = 1_700_000_000;
    // The fixtures README lists; an empty list would let the loop pass without a check.
    assert_eq!(p.sample_types(), ["event_callback", "url_verification", "slash_command"]);
    for kind in p.sample_types() {
        let sample = p.sample(Some(kind), now).unwrap();
        let s = p.sign_delivery("http://app/slack", Some(sample.content_type), &sample.body, now + 3600);
        let headers: Vec<(String, String)> = s.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        verify(&headers, &sample.body, "first", now + 3600).unwrap();
        assert!(verify(&headers, &sample.body, "second", now + 3600).is_err());
        assert!(verify(&headers, &sample.body, "first", now).is_err(), "an hour-old signature is stale");
    }
}
