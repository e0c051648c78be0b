//! An app's own GitHub-style check, written from GitHub's docs ("Validating webhook deliveries")
//! and independently of `providers::hmac`, so tests can ask whether what stagehook delivers is
//! what such an app accepts.

#![allow(dead_code)]

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// As in GitHub's docs: `"sha256=" + hex(HMAC-SHA256(secret, body))` must equal the
/// `X-Hub-Signature-256` header, compared in constant time. Header names are matched without
/// regard to case, as HTTP has them.
pub fn verify_github_style(headers: &[(String, String)], body: &[u8], secret: &str) -> Result<(), String> {
    let signature = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-hub-signature-256"))
        .map(|(_, value)| value.as_str())
        .ok_or("x-hub-signature-256 header is missing")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    // `hmac.compare_digest` in the docs: unequal lengths fail at once, equal ones in constant time.
    let same = expected.len() == signature.len() && bool::from(expected.as_bytes().ct_eq(signature.as_bytes()));
    if same {
        Ok(())
    } else {
        Err("request signatures didn't match".to_string())
    }
}

#[test]
fn github_vectors_pass_the_sdk_style_check() {
    let v = crate::support::vectors();
    for vector in v["github"].as_array().unwrap() {
        let secret = vector["secret"].as_str().unwrap();
        let body = vector["payload"].as_str().unwrap().as_bytes();
        let headers = vec![("X-Hub-Signature-256".to_string(), vector["header"].as_str().unwrap().to_string())];
        verify_github_style(&headers, body, secret).unwrap();
        assert!(verify_github_style(&headers, &[body, b"!"].concat(), secret).is_err());
        assert!(verify_github_style(&headers, body, "another secret").is_err());
        assert!(verify_github_style(&[], body, secret).is_err());
    }
}

#[test]
fn sdk_style_check_accepts_what_a_github_style_hmac_instance_delivers() {
    use stagehook::providers::hmac::Hmac as HmacProvider;
    use stagehook::providers::hmac::Settings;
    use stagehook::providers::kind::Kind;
    use stagehook::providers::Provider;
    use stagehook::secret::Secret;

    let c = Settings {
        header: Some("X-Hub-Signature-256".into()),
        prefix: "sha256=".into(),
        secret: Some(Secret::new("It's a Secret to Everybody")),
        ..Settings::default()
    };
    let provider = HmacProvider::from_settings("github-like", &c).unwrap();
    let body = br#"{"action":"opened","number":1}"#;
    let signed = provider.sign_delivery("http://127.0.0.1:9/hook", Some("application/json"), body, 1_700_000_000);
    let headers: Vec<(String, String)> = signed.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    verify_github_style(&headers, body, "It's a Secret to Everybody").unwrap();
    assert!(verify_github_style(&headers, body, "not the secret").is_err());
}
