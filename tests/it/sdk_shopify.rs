//! An independent check of a Shopify webhook, written the way shopify-app-js'
//! `shopify.webhooks.validate` is, for tests to judge what stagehook delivers: an empty body is
//! refused, then a missing `X-Shopify-Hmac-Sha256`; the header must equal base64 of
//! HMAC-SHA256(client secret, raw body), compared like its `safeCompare` (both JSON-quoted,
//! equal lengths, constant time); then the topic, shop domain, API version and webhook id
//! headers must all be present. No timestamp, so `now_s` is unused.

#![allow(dead_code)]

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use stagehook::providers::shopify::Shopify;
use stagehook::providers::Provider;
use stagehook::secret::Secret;

/// The first value of `name`, its case ignored as in HTTP.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

fn create_sha256_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn safe_compare(a: &str, b: &str) -> bool {
    let (a, b) = (serde_json::to_string(a).unwrap(), serde_json::to_string(b).unwrap());
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn verify(headers: &[(String, String)], body: &[u8], secret: &str, _now_s: i64) -> Result<(), String> {
    if body.is_empty() {
        return Err("missing_body".into());
    }
    let hmac = header(headers, "x-shopify-hmac-sha256").ok_or("missing_hmac")?;
    if !safe_compare(hmac, &create_sha256_hmac(secret, body)) {
        return Err("invalid_hmac".into());
    }
    let missing: Vec<&str> =
        ["x-shopify-topic", "x-shopify-shop-domain", "x-shopify-api-version", "x-shopify-webhook-id"]
            .into_iter()
            .filter(|name| header(headers, name).is_none())
            .collect();
    if !missing.is_empty() {
        return Err(format!("missing_headers: {}", missing.join(", ")));
    }
    Ok(())
}

fn headers(hmac: &str) -> Vec<(String, String)> {
    [
        ("X-Shopify-Hmac-Sha256", hmac),
        ("X-Shopify-Topic", "orders/create"),
        ("X-Shopify-Shop-Domain", "example.myshopify.com"),
        ("X-Shopify-API-Version", "2024-10"),
        ("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn published_vectors_pass_and_altered_ones_fail() {
    for (secret, payload, hmac) in crate::support::signed_vectors("shopify") {
        verify(&headers(&hmac), payload.as_bytes(), &secret, 0).unwrap();
        let tampered = payload.replace("bar", "baz");
        assert_eq!(verify(&headers(&hmac), tampered.as_bytes(), &secret, 0).unwrap_err(), "invalid_hmac");
        assert_eq!(verify(&headers(&hmac), payload.as_bytes(), "wrong", 0).unwrap_err(), "invalid_hmac");
        assert_eq!(verify(&headers(&hmac), b"", &secret, 0).unwrap_err(), "missing_body");
        let mut h = headers(&hmac);
        h.retain(|(k, _)| k != "X-Shopify-Hmac-Sha256");
        assert_eq!(verify(&h, payload.as_bytes(), &secret, 0).unwrap_err(), "missing_hmac");
        let mut h = headers(&hmac);
        h.retain(|(k, _)| k != "X-Shopify-Topic");
        assert!(verify(&h, payload.as_bytes(), &secret, 0).unwrap_err().contains("x-shopify-topic"));
    }
}

#[test]
fn stagehook_samples_and_deliveries_pass() {
    let p = Shopify { name: "shopify".into(), secrets: vec![Secret::new("first"), Secret::new("second")] };
    // The fixtures README lists; an empty list would let the loop pass without a check.
    assert_eq!(p.sample_types(), ["orders/create", "orders/paid"]);
    for topic in p.sample_types() {
        let sample = p.sample(Some(topic), 1_700_000_000).unwrap();
        let s = p.sign_delivery("http://app/hook", Some(sample.content_type), &sample.body, 1_700_000_000);
        let mut headers = sample.headers.clone();
        headers.extend(s.headers.iter().map(|(k, v)| (k.to_string(), v.clone())));
        verify(&headers, &sample.body, "first", 0).unwrap();
        assert!(verify(&headers, &sample.body, "second", 0).is_err());
    }
}
