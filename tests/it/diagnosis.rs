//! Why a signature failed: each diagnosis code from a realistic cause, kept on the rejection and
//! never told to the sender, and a forged flood diagnosed no more than the cap allows.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use stagehook::clock::Clock;
use stagehook::config::Config;

use crate::support::*;

const OTHER_SECRET: &str = "whsec_other_0123456789abcdef0123456789ab";
const GITHUB_SECRET: &str = "github-secret-for-diagnosis";

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[limits]\nrate_limit_per_minute = 0\n\
         [providers.stripe]\nsecret = \"{STRIPE_SECRET}\"\n[providers.twilio]\nauth_token = \"{TWILIO_TOKEN}\"\n\
         [providers.stripe_eu]\nkind = \"stripe\"\nsecret = \"{OTHER_SECRET}\"\n\
         [providers.github]\nsecret = \"{GITHUB_SECRET}\"\n",
        dir.join("data").display()
    );
    Config::from_toml(&text).unwrap()
}

/// The newest rejection's diagnosis, after checking the sender got the plain refusal.
async fn diagnosis_of(s: &TestServer, r: Resp, code: &str) -> (String, String) {
    assert_eq!((r.status, r.code()), (401, code.to_string()), "{}", r.text());
    assert!(
        !r.text().contains("diagnosis") && !r.text().contains("mismatch"),
        "the sender learns nothing: {}",
        r.text()
    );
    // The log is written behind the reply: wait for the writer.
    s.store.flush().await.unwrap();
    let log = s.get("/staging/webhooks/rejections?limit=1").await.json();
    let d = &log["rejections"][0]["diagnosis"];
    (
        d["code"].as_str().unwrap_or_else(|| panic!("no diagnosis: {log}")).to_string(),
        d["detail"].as_str().unwrap().to_string(),
    )
}

fn stripe_post(sig: &str, body: &[u8]) -> (Vec<(&'static str, String)>, Vec<u8>) {
    (vec![("content-type", "application/json".into()), ("stripe-signature", sig.to_string())], body.to_vec())
}

async fn send(s: &TestServer, path: &str, (headers, body): (Vec<(&'static str, String)>, Vec<u8>)) -> Resp {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.post(path, &headers, &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cause_gets_its_code_and_the_sender_only_the_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;

    // Twilio signed the tunnel's https URL; the tunnel forwarded the request with its Host, over
    // plain HTTP, and public_url is unset.
    let params = [("MessageSid", "SM1"), ("From", "+15550001"), ("To", "+15550002"), ("Body", "hi")];
    let sig = twilio_signature(TWILIO_TOKEN, "https://tunnel.example/staging/webhooks/sms", &params);
    let headers = [
        ("host", "tunnel.example"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("x-twilio-signature", sig.as_str()),
    ];
    let r = s.post("/staging/webhooks/sms", &headers, form(&params).as_bytes()).await;
    let (code, detail) = diagnosis_of(&s, r, "invalid_signature").await;
    assert_eq!(code, "url_mismatch", "{detail}");
    assert!(detail.contains("https://tunnel.example/staging/webhooks/sms"), "{detail}");
    assert!(detail.contains("server.public_url = \"https://tunnel.example\""), "{detail}");

    // Stripe signed the compact body; a proxy pretty-printed it on the way.
    let compact = r#"{"created":1700000000,"data":{"object":{"amount":2000,"id":"pi_1","object":"payment_intent"}},"id":"evt_pretty","livemode":false,"object":"event","type":"payment_intent.succeeded"}"#;
    let sig = stripe_header(STRIPE_SECRET, now_s(), compact.as_bytes());
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(compact).unwrap()).unwrap();
    let r = send(&s, "/staging/webhooks/stripe", stripe_post(&sig, pretty.as_bytes())).await;
    let (code, detail) = diagnosis_of(&s, r, "invalid_signature").await;
    assert_eq!(code, "body_modified", "{detail}");
    assert!(detail.contains("compact"), "{detail}");

    // Signed with the secret of another endpoint (stripe_eu's).
    let body = stripe_event("evt_other");
    let sig = stripe_header(OTHER_SECRET, now_s(), body.as_bytes());
    let r = send(&s, "/staging/webhooks/stripe", stripe_post(&sig, body.as_bytes())).await;
    let (code, detail) = diagnosis_of(&s, r, "invalid_signature").await;
    assert_eq!(code, "wrong_endpoint", "{detail}");
    assert!(detail.contains("`stripe_eu`") && detail.contains("/staging/webhooks/stripe_eu"), "{detail}");

    // Signed 400 s ago: valid, but beyond Stripe's 300 s tolerance.
    let body = stripe_event("evt_old");
    let sig = stripe_header(STRIPE_SECRET, now_s() - 400, body.as_bytes());
    let r = send(&s, "/staging/webhooks/stripe", stripe_post(&sig, body.as_bytes())).await;
    let (code, detail) = diagnosis_of(&s, r, "stale_timestamp").await;
    assert_eq!(code, "clock_skew", "{detail}");
    assert!(detail.contains("40") && detail.contains("s ago"), "{detail}");

    // GitHub's scheme is hex; the sender wrote the digest in base64.
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    mac.update(body);
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig = format!("sha256={b64}");
    let headers = [
        ("content-type", "application/json"),
        ("x-github-event", "ping"),
        ("x-github-delivery", "d-1"),
        ("x-hub-signature-256", sig.as_str()),
    ];
    let r = s.post("/staging/webhooks/github", &headers, body).await;
    let (code, detail) = diagnosis_of(&s, r, "invalid_signature").await;
    assert_eq!(code, "encoding_mismatch", "{detail}");
    assert!(detail.contains("base64 to hex"), "{detail}");

    // A secret nobody here has: only the secret itself can be blamed, by its fingerprint.
    let body = stripe_event("evt_unknown_secret");
    let sig = stripe_header("whsec_nobody_has_this_one_0123456789", now_s(), body.as_bytes());
    let r = send(&s, "/staging/webhooks/stripe", stripe_post(&sig, body.as_bytes())).await;
    let (code, detail) = diagnosis_of(&s, r, "invalid_signature").await;
    assert_eq!(code, "secret_mismatch", "{detail}");
    let fingerprint = stagehook::secret::Secret::new(STRIPE_SECRET).fingerprint();
    assert!(detail.contains(&fingerprint), "{detail} names {fingerprint}");
    assert!(!detail.contains(STRIPE_SECRET), "never the secret itself: {detail}");
    s.stop().await;
}

/// Twilio signed the tunnel's URL and the tunnel passed a plain Host and no forwarding headers:
/// nothing in the request names the URL Twilio called, so without `public_url` the diagnosis
/// blames the URL stagehook had to guess, says how to set it, and does not blame the token. With
/// `public_url` set, a wrong token is the token's fault again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_signed_behind_an_unnamed_tunnel_is_blamed_on_the_url_not_the_token() {
    let params = [("MessageSid", "SM2"), ("From", "+15550001"), ("To", "+15550002"), ("Body", "hi")];
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let r = s.sms_signed_for("https://abc123.tunnel.example/staging/webhooks/sms", &params).await;
    let (code, detail) = diagnosis_of(&s, r, "invalid_signature").await;
    assert_eq!(code, "url_unknown", "{detail}");
    assert!(detail.contains("as http://127.0.0.1/staging/webhooks/sms"), "{detail}");
    assert!(detail.contains("server.public_url = \"https://"), "{detail}");
    assert!(detail.contains("STAGEHOOK_SERVER_PUBLIC_URL"), "{detail}");
    assert!(!detail.contains("the secret differs"), "{detail}");
    s.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.public_url = Some("https://abc123.tunnel.example".into());
    let s = start(c).await;
    let sig = twilio_signature(
        "fedcba9876543210fedcba9876543210",
        "https://abc123.tunnel.example/staging/webhooks/sms",
        &params,
    );
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", sig.as_str())];
    let r = s.post("/staging/webhooks/sms", &headers, form(&params).as_bytes()).await;
    let (code, detail) = diagnosis_of(&s, r, "invalid_signature").await;
    assert_eq!(code, "secret_mismatch", "{detail}");
    s.stop().await;
}

/// A flood of forged requests within one second of the clock: every one is refused, at most
/// `diagnose::PER_SECOND` are diagnosed, and the next second diagnoses again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_flood_is_diagnosed_no_more_than_the_cap_allows() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::frozen(now_s() * 1000);
    let s = start_with_clock(config(dir.path()), clock.clone()).await;
    let body = stripe_event("evt_forged");
    let forged = format!("t={},v1={}", clock.now_ms() / 1000, "ab".repeat(32));
    for _ in 0..40 {
        let r = send(&s, "/staging/webhooks/stripe", stripe_post(&forged, body.as_bytes())).await;
        assert_eq!(r.status, 401);
    }
    let diagnosed =
        |log: &Value| log["rejections"].as_array().unwrap().iter().filter(|r| !r["diagnosis"].is_null()).count();
    // The log is written behind the replies: wait for the writer.
    s.store.flush().await.unwrap();
    let log = s.get("/staging/webhooks/rejections?limit=1000").await.json();
    assert_eq!(log["rejections"].as_array().unwrap().len(), 40, "every refusal is logged");
    assert_eq!(diagnosed(&log), stagehook::providers::diagnose::PER_SECOND as usize, "diagnosed in one second");
    clock.advance(1000);
    let r = send(&s, "/staging/webhooks/stripe", stripe_post(&forged, body.as_bytes())).await;
    assert_eq!(r.status, 401);
    s.store.flush().await.unwrap();
    let log = s.get("/staging/webhooks/rejections?limit=1000").await.json();
    assert_eq!(
        diagnosed(&log),
        stagehook::providers::diagnose::PER_SECOND as usize + 1,
        "a new second, a new allowance"
    );
    s.stop().await;
}
