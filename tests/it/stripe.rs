//! `POST /staging/webhooks/stripe`: the published vectors through the real endpoint, timestamps,
//! payload validation, live mode, and the answer.

use serde_json::json;
use stagehook::Clock;

use crate::support::{self, config, start, start_with_clock, stripe_event, stripe_header, STRIPE_SECRET};

const PATH: &str = "/staging/webhooks/stripe";

/// A server whose clock reads `at` (unix seconds) and whose Stripe secret is `secret`.
async fn server_at(dir: &std::path::Path, secret: &str, at: i64) -> support::TestServer {
    let mut c = config(dir);
    c.providers.get_mut("stripe").unwrap().settings = stagehook::providers::stripe::Settings {
        secret: Some(stagehook::secret::Secret::new(secret)),
        ..Default::default()
    }
    .into();
    let clock = Clock::system();
    clock.advance((at - support::now_s()) * 1000);
    start_with_clock(c, clock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_vectors_verify_within_tolerance_and_are_stale_after() {
    let v = support::vectors();
    let vector = &v["stripe"][0];
    let secret = vector["secret"].as_str().unwrap();
    let payload = vector["payload"].as_str().unwrap();
    let header = vector["header"].as_str().unwrap();
    let headers = [("content-type", "application/json"), ("stripe-signature", header)];

    let dir = tempfile::tempdir().unwrap();
    let s = server_at(dir.path(), secret, vector["valid_at"].as_i64().unwrap()).await;
    let r = s.post(PATH, &headers, payload.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["received"], true);
    assert_eq!(body["event_id"], "evt_123");
    assert!(body["id"].as_str().unwrap().len() == 26, "a ULID: {body}");

    // Every malformed header the SDKs reject is refused here too, with the same code.
    for bad in vector_rejects(&v) {
        let r =
            s.post(PATH, &[("content-type", "application/json"), ("stripe-signature", &bad)], payload.as_bytes()).await;
        assert_eq!((r.status, r.code().as_str()), (401, "invalid_signature"), "header {bad:?}");
    }
    // The body changed by one byte no longer matches.
    let tampered = payload.replacen("cus_123", "cus_124", 1);
    let r = s.post(PATH, &headers, tampered.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (401, "invalid_signature"));
    s.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let s = server_at(dir.path(), secret, vector["invalid_at"].as_i64().unwrap()).await;
    let r = s.post(PATH, &headers, payload.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (401, "stale_timestamp"), "{}", r.text());
    s.stop().await;
}

fn vector_rejects(v: &serde_json::Value) -> Vec<String> {
    v["stripe"][1]["must_reject_headers"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_old_are_refused_future_pass_as_in_the_sdks() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let send = |id: &str, t: i64| {
        let body = stripe_event(id);
        let sig = stripe_header(STRIPE_SECRET, t, body.as_bytes());
        let addr = s.addr;
        async move {
            support::request(
                addr,
                "POST",
                PATH,
                &[("content-type", "application/json"), ("stripe-signature", &sig)],
                body.as_bytes(),
            )
            .await
        }
    };
    let now = support::now_s();
    assert_eq!(send("evt_edge", now - 290).await.status, 200);
    let stale = send("evt_stale", now - 301).await;
    assert_eq!((stale.status, stale.code().as_str()), (401, "stale_timestamp"));
    // stripe's SDKs refuse only timestamps older than the tolerance; a clock ahead passes.
    assert_eq!(send("evt_future", now + 3600).await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_v1_entry_may_match_for_secret_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let body = stripe_event("evt_rot");
    let t = support::now_s();
    let good = stripe_header(STRIPE_SECRET, t, body.as_bytes());
    let old = stripe_header("whsec_old", t, body.as_bytes());
    let header = format!("{old},{},v0=deadbeef", good.split(',').nth(1).unwrap());
    let r = s.post(PATH, &[("content-type", "application/json"), ("stripe-signature", &header)], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A v0 (test-mode legacy) signature alone does not count.
    let v0_only = format!("t={t},v0={}", good.split("v1=").nth(1).unwrap());
    let r =
        s.post(PATH, &[("content-type", "application/json"), ("stripe-signature", &v0_only)], body.as_bytes()).await;
    assert_eq!(r.code(), "invalid_signature");
    let r = s.post(PATH, &[("content-type", "application/json")], body.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (401, "invalid_signature"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_validated_after_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let cases = [
        (json!({"id": "ch_1", "type": "a", "created": 1, "data": {"object": {}}}), "id"),
        (json!({"id": "evt_1", "created": 1, "data": {"object": {}}}), "type"),
        (json!({"id": "evt_1", "type": "a", "created": "yesterday", "data": {"object": {}}}), "created"),
        (json!({"id": "evt_1", "type": "a", "created": 1.5, "data": {"object": {}}}), "created"),
        (json!({"id": "evt_1", "type": "a", "created": 1, "data": {}}), "data.object"),
        (json!(["evt_1"]), "body"),
    ];
    for (payload, field) in cases {
        let r = s.stripe(&payload.to_string()).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{payload}");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains(field), "{payload}: {}", r.text());
    }
    let r = s.stripe("{not json").await;
    assert_eq!(r.code(), "invalid_payload");

    let live = json!({"id": "evt_live", "type": "a", "created": 1, "livemode": true, "data": {"object": {}}});
    let r = s.stripe(&live.to_string()).await;
    assert_eq!((r.status, r.code().as_str()), (400, "livemode_event"));

    let r = s.post(PATH, &[("content-type", "text/plain")], stripe_event("evt_t").as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (415, "unsupported_media_type"));

    // None of the refused events was stored; each refusal was counted by its code (refusals are
    // counted asynchronously: a flush makes them visible).
    s.store.flush().await.unwrap();
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["total_events"], 0);
    assert_eq!(stats["rejections"]["invalid_payload"], 7);
    assert_eq!(stats["rejections"]["livemode_event"], 1);
    assert_eq!(stats["rejections"]["unsupported_media_type"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_secret_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers.remove("stripe");
    let s = start(c).await;
    let r = s.stripe(&stripe_event("evt_1")).await;
    assert_eq!((r.status, r.code().as_str()), (503, "provider_not_configured"));
    assert!(!r.text().contains(STRIPE_SECRET));
    s.stop().await;
}
