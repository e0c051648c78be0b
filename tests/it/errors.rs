//! The Errors table of docs/api.md, row by row where the tests elsewhere do not already cover a
//! row: each code with its status, its body, and the six security headers every answer carries;
//! `storage_unavailable` for a replay or a read the store cannot serve (and the next one
//! succeeding), the admin bodies' size caps, and a bad `/rejections?limit=`.

use crate::fake_app::FakeApp;
use crate::support::{self, assert_security_headers, config, start, stripe_event, Resp};

const JSON: (&str, &str) = ("content-type", "application/json");

fn assert_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!((r.status, r.code().as_str()), (status, code), "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    assert!(!r.json()["error"]["message"].as_str().unwrap().is_empty(), "{what}");
    assert_security_headers(r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_cannot_be_written_is_storage_unavailable_and_nothing_is_lost() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::forwarding(dir.path(), "stripe", app.url("/stripe"))).await;
    let id = s.post_stripe_event("evt_unavailable").await;
    app.wait_for(1).await;
    // The delivery's outcome is written too: wait for it, or it would take the injected failures.
    let event = format!("/staging/webhooks/events/{id}");
    let settled = |attempts: u64| {
        let (s, event) = (&s, &event);
        support::until("the delivery's outcome", move || async move {
            let e = s.get(event).await.json();
            (e["attempts"] == attempts && e["delivery_pending"] == false).then_some(())
        })
    };
    settled(1).await;
    s.store.flush().await.unwrap();

    // The writer's retries all fail: the replay is refused, not acknowledged.
    s.store.inject_flush_failures(4);
    let r = s.post(&format!("/staging/webhooks/events/{id}/replay"), &[JSON], b"").await;
    assert_error(&r, 503, "storage_unavailable", "replay one");
    s.store.flush().await.unwrap();
    // As for ingest, the refused replay left no trace: no new attempt series.
    let e = s.get(&event).await.json();
    assert_eq!((e["attempts"].clone(), e["delivery_pending"].clone()), (1.into(), false.into()), "{e}");
    s.store.inject_flush_failures(4);
    let r = s.post("/staging/webhooks/replay", &[JSON], b"{}").await;
    assert_error(&r, 503, "storage_unavailable", "replay all");

    // Once a flush succeeds again, the same replay goes through and the event is still there.
    s.store.flush().await.unwrap();
    let r = s.post(&format!("/staging/webhooks/events/{id}/replay"), &[JSON], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_security_headers(&r);
    let e = s.get(&format!("/staging/webhooks/events/{id}")).await;
    assert_eq!((e.status, e.json()["event_id"].as_str()), (200, Some("evt_unavailable")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bodies_have_their_own_size_caps() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    // `/validate` takes up to 2 MiB, over the 1 MiB ingest cap: a body just under is read.
    let under = format!(r#"{{"provider":"stripe","payload":"{}"}}"#, "a".repeat(2 * 1024 * 1024 - 64));
    let r = s.post("/staging/webhooks/validate", &[JSON], under.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text().chars().take(300).collect::<String>());
    assert_security_headers(&r);
    let over = vec![b' '; 2 * 1024 * 1024 + 1];
    let r = s.post("/staging/webhooks/validate", &[JSON], &over).await;
    assert_error(&r, 413, "payload_too_large", "/validate over 2 MiB");

    // `/replay` takes up to 64 KiB: whitespace around an empty filter is still a filter.
    let under = format!("{{}}{}", " ".repeat(64 * 1024 - 2));
    let r = s.post("/staging/webhooks/replay", &[JSON], under.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let over = format!("{{}}{}", " ".repeat(64 * 1024 - 1));
    let r = s.post("/staging/webhooks/replay", &[JSON], over.as_bytes()).await;
    assert_error(&r, 413, "payload_too_large", "/replay over 64 KiB");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rejections_limit_is_invalid_payload() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    for bad in ["abc", "-1", "1.5", "", "99999999999999999999999"] {
        let r = s.get(&format!("/staging/webhooks/rejections?limit={bad}")).await;
        assert_error(&r, 400, "invalid_payload", &format!("limit={bad}"));
    }
    let r = s.get("/staging/webhooks/rejections?limit=5").await;
    assert_eq!(r.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_answer_carries_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers.get_mut("twilio").unwrap().settings = stagehook::providers::twilio::Settings::default().into();
    let s = start(c).await;
    let id = s.post_stripe_event("evt_headers").await;
    s.store.flush().await.unwrap();

    // JSON 200s.
    for path in [
        "/staging/webhooks/test".to_string(),
        "/staging/webhooks/stats".to_string(),
        "/staging/webhooks/events".to_string(),
        format!("/staging/webhooks/events/{id}"),
        format!("/staging/webhooks/events/{id}/curl"),
        "/staging/webhooks/rejections".to_string(),
        "/staging/webhooks/recovery/stats".to_string(),
        "/staging/webhooks/config/validate".to_string(),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        assert_security_headers(&r);
    }
    let r = s.stripe(&stripe_event("evt_headers_2")).await;
    assert_eq!(r.status, 200);
    assert_security_headers(&r);

    // 400, 415, 409, 503.
    let r = s.get("/staging/webhooks/events?status=nope").await;
    assert_error(&r, 400, "invalid_payload", "bad query");
    let r = s.post("/staging/webhooks/stripe", &[("content-type", "text/plain")], b"{}").await;
    assert_error(&r, 415, "unsupported_media_type", "text/plain to Stripe");
    let r = s.post(&format!("/staging/webhooks/events/{id}/replay"), &[JSON], b"").await;
    assert_error(&r, 409, "no_target", "replay without a target");
    let r = s
        .post("/staging/webhooks/sms", &[("content-type", "application/x-www-form-urlencoded")], b"MessageSid=SM1")
        .await;
    assert_error(&r, 503, "provider_not_configured", "Twilio without a token");

    // 500: a record that does not decode.
    let ulid = id.parse().unwrap();
    assert_eq!(s.store.inject_damage(ulid, stagehook::store::InjectDamage::EventRecord).unwrap(), 1);
    let r = s.get(&format!("/staging/webhooks/events/{id}/curl")).await;
    assert_error(&r, 500, "storage_corrupt", "curl of a damaged event");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_of_the_store_is_storage_unavailable_and_the_next_one_answers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let r = s.stripe(&stripe_event("evt_read_fault")).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    s.store.inject_read_failures(2);
    for path in ["/staging/webhooks/events".to_string(), format!("/staging/webhooks/events/{id}")] {
        let r = s.get(&path).await;
        assert_eq!((r.status, r.code().as_str()), (503, "storage_unavailable"), "{path}: {}", r.text());
        assert_security_headers(&r);
    }
    let r = s.get(&format!("/staging/webhooks/events/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.stop().await;
}
