//! An independent check of `X-Hub-Signature-256`, written the way @octokit/webhooks-methods'
//! `verify(secret, eventPayload, signature)` is, for tests to judge what stagehook delivers:
//! secret, payload and signature are all required; the expected value is the whole string
//! `sha256=` + lowercase hex of HMAC-SHA256 over the payload; lengths must agree, then the bytes
//! are compared in constant time (Node's `timingSafeEqual`). No timestamp, so `now_s` is unused.

#![allow(dead_code)]

use hmac::{Hmac, Mac};
use sha2::Sha256;
use stagehook::providers::github::Github;
use stagehook::providers::Provider;
use stagehook::secret::Secret;

/// The first value of `name`, its case ignored as in HTTP.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn sign(secret: &str, payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(payload.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn timing_safe_equal(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn verify(headers: &[(String, String)], body: &[u8], secret: &str, _now_s: i64) -> Result<(), String> {
    let signature = header(headers, "x-hub-signature-256").unwrap_or("");
    if secret.is_empty() || body.is_empty() || signature.is_empty() {
        return Err("secret, eventPayload & signature required".into());
    }
    let payload = std::str::from_utf8(body).map_err(|_| "eventPayload must be a string".to_string())?;
    let expected = sign(secret, payload);
    if signature.len() != expected.len() || !timing_safe_equal(signature.as_bytes(), expected.as_bytes()) {
        return Err("signature does not match".into());
    }
    Ok(())
}

fn signed(value: &str) -> Vec<(String, String)> {
    vec![("X-Hub-Signature-256".to_string(), value.to_string())]
}

#[test]
fn published_vectors_pass_and_altered_ones_fail() {
    for (secret, payload, header) in crate::support::signed_vectors("github") {
        verify(&signed(&header), payload.as_bytes(), &secret, 0).unwrap();
        assert!(verify(&signed(&header), format!("{payload}\n").as_bytes(), &secret, 0).is_err());
        assert!(verify(&signed(&header), payload.as_bytes(), "wrong", 0).is_err());
        assert!(verify(&signed(&header.to_uppercase()), payload.as_bytes(), &secret, 0).is_err());
        assert!(verify(&signed(&header[7..]), payload.as_bytes(), &secret, 0).is_err());
        assert!(verify(&[], payload.as_bytes(), &secret, 0).is_err());
    }
}

#[test]
fn stagehook_deliveries_pass() {
    let p = Github::new("github", vec![Secret::new("first"), Secret::new("second")]);
    // The fixtures README lists; an empty list would let the loop pass without a check.
    assert_eq!(p.sample_types(), ["push", "ping"]);
    for kind in p.sample_types() {
        let sample = p.sample(Some(kind), 1_700_000_000).unwrap();
        let s = p.sign_delivery("http://app/hook", Some(sample.content_type), &sample.body, 1_700_000_000);
        let headers: Vec<(String, String)> = s.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        verify(&headers, &sample.body, "first", 0).unwrap();
        assert!(verify(&headers, &sample.body, "second", 0).is_err());
    }
}
