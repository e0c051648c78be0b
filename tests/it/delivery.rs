//! Delivery to the app under test (`fake_app.rs`): raw bytes and headers intact, signatures the
//! app's SDK accepts (replays and Twilio's target URL included), retries, permanent refusals,
//! `Retry-After`, timeouts, breakers, restarts mid-retry, replay, retention, the event list's
//! filters and cursors, shutdown with a delivery in flight, and an outage longer than the
//! breaker's window.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use stagehook::config::{Config, HumanDuration, Strategy};
use stagehook::Clock;

use crate::fake_app::{stripe_sdk_verify, twilio_sdk_validate, FakeApp, Reply};
use crate::support::{
    self, config, form, start, start_with_clock, stripe_event, twilio_signature, until, STRIPE_SECRET, TWILIO_TOKEN,
};

/// A config delivering Stripe events to `url`, with fast fixed retries.
fn delivering(dir: &Path, url: &str, attempts: u32, base_ms: u64) -> Config {
    let mut c = config(dir);
    c.providers.get_mut("stripe").unwrap().forward_to = vec![url.to_string()];
    c.retry.strategy = Strategy::Fixed;
    c.retry.max_attempts = attempts;
    c.retry.base_delay = HumanDuration(Duration::from_millis(base_ms));
    c.retry.jitter = 0.0;
    c
}

/// `/recovery/stats` once the queue is empty: its counters follow the records a moment after the
/// batch that changed both is applied (once it is flushed), so they are polled, not read once.
async fn queue_drained(s: &support::TestServer) -> Value {
    until("the queue to drain", || async {
        let rec = s.get("/staging/webhooks/recovery/stats").await.json();
        (rec["queue_depth"] == 0).then_some(rec)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_raw_bytes_and_headers_signed_for_the_app() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(delivering(dir.path(), &app.url("/webhooks/stripe"), 3, 10)).await;
    // Pretty-printed, with a trailing newline: the app must get exactly these bytes.
    let body = "{\n  \"id\": \"evt_raw\",\n  \"type\": \"charge.succeeded\",\n  \"created\": 1,\n  \"livemode\": false,\n  \"data\": {\"object\": {\"amount\": 2000}}\n}\n";
    // Headers about the hop to stagehook, and stagehook's own names, sent by the provider (or
    // a forger): none of them may reach the app as sent.
    let hop = [
        ("user-agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)"),
        ("host", "provider-side.example"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "provider-side.example"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic c2VjcmV0"),
        ("x-stagehook-event-id", "forged"),
        ("x-stagehook-attempt", "99"),
        ("x-stagehook-anything", "forged"),
    ];
    let r = support::post_stripe(s.addr, body, &hop).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();

    let got = app.wait_for(1).await;
    let d = &got[0];
    assert_eq!(d.path, "/webhooks/stripe");
    assert_eq!(d.body, body.as_bytes(), "raw body unchanged");
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert_eq!(d.header("user-agent"), Some("Stripe/1.0 (+https://stripe.com/docs/webhooks)"));
    assert_eq!(d.header("x-stagehook-event-id"), Some(id.as_str()));
    assert_eq!(d.header("x-stagehook-attempt"), Some("1"));
    for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "keep-alive", "proxy-authorization"] {
        assert_eq!(d.header(name), None, "{name} is about the hop to stagehook: {:?}", d.headers);
    }
    // The test client sent `connection: close`; the app's connection is the delivery client's own.
    assert_ne!(d.header("connection"), Some("close"), "{:?}", d.headers);
    assert_eq!(d.header("host"), Some(app.addr.to_string().as_str()), "the target's host, not the provider's");
    assert_eq!(d.header("x-stagehook-anything"), None, "stagehook's names are its own: {:?}", d.headers);
    for name in ["host", "x-stagehook-event-id", "x-stagehook-attempt", "content-length"] {
        assert_eq!(d.headers.iter().filter(|(k, _)| k == name).count(), 1, "one {name}: {:?}", d.headers);
    }
    let sig = d.header("stripe-signature").unwrap();
    stripe_sdk_verify(&d.body, sig, STRIPE_SECRET, 300, support::now_s()).expect("the app's SDK accepts it");

    let e = support::wait_status(&s, &id, "processed").await;
    assert_eq!(e["attempts"], 1);
    let h = &e["history"][0];
    assert_eq!((h["attempt"].clone(), h["series"].clone(), h["status"].clone()), (json!(1), json!(1), json!(200)));
    assert_eq!(h["outcome"], "delivered");
    assert_eq!(h["target"], app.url("/webhooks/stripe"));
    assert_eq!(e["delivery_pending"], false);
    queue_drained(&s).await;
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["by_status"]["processed"], 1, "{stats}");
    assert_eq!(stats["by_status"]["received"], 0, "{stats}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_hours_later_is_signed_afresh() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The server lives five hours in the past: the first delivery's signature is old by now.
    let clock = Clock::system();
    clock.advance(-5 * 3600 * 1000);
    let s = start_with_clock(delivering(dir.path(), &app.url("/hook"), 3, 10), clock.clone()).await;
    let body = stripe_event("evt_old");
    let sig = support::stripe_header(STRIPE_SECRET, clock.now_s(), body.as_bytes());
    let r = s
        .post(
            "/staging/webhooks/stripe",
            &[("content-type", "application/json"), ("stripe-signature", &sig)],
            body.as_bytes(),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let first = app.wait_for(1).await[0].clone();
    let err =
        stripe_sdk_verify(&first.body, first.header("stripe-signature").unwrap(), STRIPE_SECRET, 300, support::now_s());
    assert_eq!(err.unwrap_err(), "Timestamp outside the tolerance zone");
    support::wait_status(&s, &id, "processed").await;

    // Five hours later, a replay: a new series whose signature the SDK accepts now.
    clock.advance(5 * 3600 * 1000);
    let r =
        s.post(&format!("/staging/webhooks/events/{id}/replay"), &[("content-type", "application/json")], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["replayed"], 1);
    let second = app.wait_for(2).await[1].clone();
    assert_eq!(second.body, first.body);
    stripe_sdk_verify(&second.body, second.header("stripe-signature").unwrap(), STRIPE_SECRET, 300, support::now_s())
        .expect("a replay verifies at the app");
    let e = support::wait_status(&s, &id, "processed").await;
    let series: Vec<Value> = e["history"].as_array().unwrap().iter().map(|h| h["series"].clone()).collect();
    assert_eq!(series, [json!(1), json!(2)], "history kept across series");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_deliveries_are_signed_for_the_target_url() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    let target = app.url("/twilio/sms?tenant=7");
    c.providers.get_mut("twilio").unwrap().forward_to = vec![target.clone()];
    let s = start(c).await;
    let params = [("MessageSid", "SM900"), ("From", "+15005550006"), ("To", "+15005550001"), ("Body", "ñandú & co")];
    let form_sig = twilio_signature(TWILIO_TOKEN, "http://127.0.0.1/staging/webhooks/sms", &params);
    let r = s
        .post(
            "/staging/webhooks/sms",
            &[("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", &form_sig)],
            form(&params).as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A JSON one too: its hash travels in the delivery URL.
    let body = json!({"MessageSid": "SM901", "From": "+1", "To": "+2"}).to_string();
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
    let path = format!("/staging/webhooks/sms?bodySHA256={hash}");
    let json_sig = twilio_signature(TWILIO_TOKEN, &format!("http://127.0.0.1{path}"), &[]);
    let r = s
        .post(&path, &[("content-type", "application/json"), ("x-twilio-signature", &json_sig)], body.as_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let got = app.wait_for(2).await;
    let mut kinds = Vec::new();
    for d in &got {
        let url = if d.query.is_empty() { app.url(&d.path) } else { app.url(&format!("{}?{}", d.path, d.query)) };
        let is_json = d.header("content-type") == Some("application/json");
        assert!(url.starts_with(&target), "{url}");
        assert!(
            twilio_sdk_validate(&url, &d.body, is_json, d.header("x-twilio-signature").unwrap(), TWILIO_TOKEN),
            "twilio's validator accepts the delivery to {url}"
        );
        // Signed afresh for this target: the signature its own request came with is not what
        // the app gets, and would not validate there.
        let original = if is_json { &json_sig } else { &form_sig };
        assert_ne!(d.header("x-twilio-signature"), Some(original.as_str()), "{url}");
        assert!(!twilio_sdk_validate(&url, &d.body, is_json, original, TWILIO_TOKEN), "{url}");
        kinds.push(is_json);
    }
    kinds.sort();
    assert_eq!(kinds, [false, true], "one form and one JSON delivery");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_the_last_attempt_then_dead_lettered() {
    let app = FakeApp::start().await;
    app.set_default(Reply::status(500));
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &app.url("/hook"), 3, 100);
    c.circuit_breaker.failure_threshold = 50;
    let s = start(c).await;
    let id = s.stripe(&stripe_event("evt_5xx")).await.json()["id"].as_str().unwrap().to_string();
    let e = support::wait_status(&s, &id, "failed").await;
    let got = app.received();
    assert_eq!(got.len(), 3);
    let attempts: Vec<&str> = got.iter().map(|d| d.header("x-stagehook-attempt").unwrap()).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    for pair in got.windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_millis(90), "fixed 100 ms between attempts");
    }
    let outcomes: Vec<&str> = e["history"].as_array().unwrap().iter().map(|h| h["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["will_retry", "will_retry", "failed"]);
    assert_eq!(e["history"][2]["status"], 500);
    assert_eq!(e["last_error"], "HTTP 500: fake app says 500");
    assert_eq!(e["delivery_pending"], false);
    let rec = queue_drained(&s).await;
    assert_eq!(rec["failure_reasons"]["http_5xx"], 3, "{rec}");
    assert_eq!(rec["dead_letters"], 1);
    assert_eq!(rec["queue_depth"], 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_permanent_and_retry_after_is_honoured() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(delivering(dir.path(), &app.url("/hook"), 5, 10)).await;
    app.script([Reply::status(422)]);
    let id = s.stripe(&stripe_event("evt_4xx")).await.json()["id"].as_str().unwrap().to_string();
    let e = support::wait_status(&s, &id, "failed").await;
    assert_eq!(e["attempts"], 1, "a 4xx is not retried");

    // 429 with Retry-After: 1 s, although the schedule says 10 ms.
    app.script([Reply { status: 429, retry_after: Some(1), delay: Duration::ZERO }, Reply::status(200)]);
    let id = s.stripe(&stripe_event("evt_429")).await.json()["id"].as_str().unwrap().to_string();
    support::wait_status(&s, &id, "processed").await;
    let got = app.received();
    let gap = got[2].at - got[1].at;
    assert!(gap >= Duration::from_millis(950), "Retry-After honoured: {gap:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_pauses_attempts_probes_and_closes() {
    let app = FakeApp::start().await;
    app.set_default(Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &app.url("/hook"), 50, 10);
    c.circuit_breaker.failure_threshold = 3;
    c.circuit_breaker.recovery_timeout = HumanDuration(Duration::from_millis(1500));
    // Twilio delivers to an app that is up: its lane shows the loop keeps going meanwhile.
    let other = FakeApp::start().await;
    c.providers.get_mut("twilio").unwrap().forward_to = vec![other.url("/sms")];
    let s = start(c).await;
    let id = s.stripe(&stripe_event("evt_cb")).await.json()["id"].as_str().unwrap().to_string();
    let rec = until("the breaker to open", || async {
        let rec = s.get("/staging/webhooks/recovery/stats").await.json();
        (rec["providers"]["stripe"]["breaker"]["state"] == "open").then_some(rec)
    })
    .await;
    let b = &rec["providers"]["stripe"]["breaker"];
    assert_eq!(b["consecutive_failures"], 3);
    assert!(b["next_probe_ms"].as_i64().unwrap() > b["opened_at_ms"].as_i64().unwrap());
    // While open, the due job waits: no attempt is spent, though the loop is running (another
    // provider's event, queued after the stripe job fell due, is delivered).
    let params = [("MessageSid", "SM_CB"), ("From", "+1"), ("To", "+2")];
    let r = s.sms(&params).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sms = s.store.find_by_event_id("twilio", "SM_CB").unwrap().unwrap().to_string();
    support::wait_status(&s, &sms, "processed").await;
    assert_eq!(other.received().len(), 1);
    assert_eq!(app.received().len(), 3);
    assert_eq!(support::event_json(&s, &id).await["attempts"], 3);
    assert_eq!(
        s.get("/staging/webhooks/recovery/stats").await.json()["providers"]["stripe"]["breaker"]["state"],
        "open"
    );

    // The app recovers; after the recovery timeout one probe goes through and closes it.
    app.set_default(Reply::status(200));
    support::wait_status(&s, &id, "processed").await;
    assert_eq!(app.received().len(), 4);
    let rec = s.get("/staging/webhooks/recovery/stats").await.json();
    assert_eq!(rec["providers"]["stripe"]["breaker"]["state"], "closed");
    assert_eq!(rec["providers"]["stripe"]["breaker"]["consecutive_failures"], 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_retry_resumes_without_loss_or_double_count() {
    let app = FakeApp::start().await;
    app.script([Reply::status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let c = delivering(dir.path(), &app.url("/hook"), 5, 700);
    let s = start(c.clone()).await;
    let id = s.stripe(&stripe_event("evt_restart")).await.json()["id"].as_str().unwrap().to_string();
    support::wait_status(&s, &id, "retrying").await;
    assert_eq!(app.received().len(), 1, "one attempt before the stop");
    s.stop().await;
    assert_eq!(app.received().len(), 1, "the retry was not due yet: nothing sent while stopping");

    let s = start(c).await;
    let e = support::wait_status(&s, &id, "processed").await;
    assert_eq!(app.received().len(), 2, "one failed attempt, one delivery");
    assert_eq!(e["attempts"], 2);
    queue_drained(&s).await;
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["total_events"], 1);
    assert_eq!(stats["by_status"]["processed"], 1, "{stats}");
    assert_eq!(stats["by_status"]["retrying"], 0, "{stats}");
    let rec = s.get("/staging/webhooks/recovery/stats").await.json();
    assert_eq!(rec["queue_depth"], 0);
    assert_eq!(rec["delivered_after_attempts"]["2"], 1, "{rec}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_single_and_bulk_and_409_without_target() {
    let app = FakeApp::start().await;
    app.set_default(Reply::status(400));
    let dir = tempfile::tempdir().unwrap();
    let s = start(delivering(dir.path(), &app.url("/hook"), 3, 10)).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(s.stripe(&stripe_event(&format!("evt_rp{i}"))).await.json()["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        support::wait_status(&s, id, "failed").await;
    }
    let listed = s.get("/staging/webhooks/events?status=failed&provider=stripe").await.json();
    assert_eq!(listed["events"].as_array().unwrap().len(), 3, "{listed}");

    app.set_default(Reply::status(200));
    let r = s
        .post(
            "/staging/webhooks/replay",
            &[("content-type", "application/json")],
            br#"{"status": "failed", "provider": "stripe"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["replayed"], 3);
    for id in &ids {
        let e = support::wait_status(&s, id, "processed").await;
        assert_eq!(e["attempts"], 2, "history kept: one refused, one delivered");
    }
    assert_eq!(app.received().len(), 6);

    // Twilio has no target here: nothing to replay to.
    let params = [("MessageSid", "SM1"), ("From", "+1"), ("To", "+2")];
    s.sms(&params).await;
    let sms = s.store.find_by_event_id("twilio", "SM1").unwrap().unwrap();
    let r =
        s.post(&format!("/staging/webhooks/events/{sms}/replay"), &[("content-type", "application/json")], b"").await;
    assert_eq!((r.status, r.code().as_str()), (409, "no_target"));
    let r =
        s.post("/staging/webhooks/replay", &[("content-type", "application/json")], br#"{"provider": "twilio"}"#).await;
    assert_eq!((r.json()["replayed"].clone(), r.json()["skipped_no_target"].clone()), (json!(0), json!(1)));
    let r = s.post("/staging/webhooks/replay", &[("content-type", "application/json")], br#"{"status": "lost"}"#).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"));
    let r = s
        .post(
            "/staging/webhooks/events/01ARZ3NDEKTSV4RRFFQ69G5FAV/replay",
            &[("content-type", "application/json")],
            b"",
        )
        .await;
    assert_eq!(r.code(), "not_found");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_newest_first_with_filters_and_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    for i in 0..7 {
        s.stripe(&stripe_event(&format!("evt_l{i}"))).await;
    }
    let page = s.get("/staging/webhooks/events?limit=3").await.json();
    let ids: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["evt_l6", "evt_l5", "evt_l4"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page = s.get(&format!("/staging/webhooks/events?limit=3&cursor={cursor}")).await.json();
    let ids: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["evt_l3", "evt_l2", "evt_l1"]);
    let page =
        s.get("/staging/webhooks/events?type=payment_intent.succeeded&status=processed&provider=stripe").await.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 7);
    let page = s.get("/staging/webhooks/events?provider=twilio").await.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 0);
    assert_eq!(s.get("/staging/webhooks/events?status=nope").await.code(), "invalid_payload");

    // A time window, in Unix milliseconds or RFC 3339: `since` inclusive, `until` exclusive.
    let all = s.get("/staging/webhooks/events").await.json();
    let at = |e: &serde_json::Value| e["received_at_ms"].as_i64().unwrap();
    let l3 = all["events"].as_array().unwrap().iter().find(|e| e["event_id"] == "evt_l3").map(at).unwrap();
    let srv = &s;
    let window = |q: String| async move {
        let page = srv.get(&format!("/staging/webhooks/events?{q}")).await.json();
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["event_id"].as_str().unwrap().to_string(), at(e)))
            .collect::<Vec<_>>()
    };
    let since = window(format!("since={l3}")).await;
    assert!(since.iter().any(|(id, _)| id == "evt_l3") && since.iter().all(|(_, t)| *t >= l3), "{since:?}");
    let until = window(format!("until={l3}")).await;
    assert!(until.iter().all(|(id, t)| id != "evt_l3" && *t < l3), "{until:?}");
    assert_eq!(since.len() + until.len(), 7);
    assert_eq!(window("since=2000-01-01T00:00:00Z".into()).await.len(), 7);
    assert_eq!(window("until=2000-01-01T00:00:00Z".into()).await.len(), 0);
    assert_eq!(s.get("/staging/webhooks/events?since=yesterday").await.code(), "invalid_payload");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_events_but_keeps_those_with_pending_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.retention.max_age = HumanDuration(Duration::from_secs(3600));
    c.retention.interval = HumanDuration(Duration::from_millis(50));
    // Twilio delivers to a port nobody listens on, retrying only after a day. The port stays
    // bound (not listening: connections are refused) so no other process can take it meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = held.local_addr().unwrap();
    c.providers.get_mut("twilio").unwrap().forward_to = vec![format!("http://{dead}/down")];
    c.retry.base_delay = HumanDuration(Duration::from_secs(86_400));
    c.retry.max_delay = HumanDuration(Duration::from_secs(86_400));
    let clock = Clock::system();
    let s = start_with_clock(c, clock.clone()).await;
    for i in 0..3 {
        s.stripe(&stripe_event(&format!("evt_ret{i}"))).await;
    }
    let params = [("MessageSid", "SM_KEEP"), ("From", "+1"), ("To", "+2")];
    s.sms(&params).await;
    let keep = s.store.find_by_event_id("twilio", "SM_KEEP").unwrap().unwrap().to_string();
    support::wait_status(&s, &keep, "retrying").await;

    clock.advance(2 * 3600 * 1000);
    until("retention to run", || async {
        let st = s.get("/staging/webhooks/stats").await.json();
        (st["total_events"] == 1).then_some(())
    })
    .await;
    assert!(s.store.find_by_event_id("stripe", "evt_ret0").unwrap().is_none(), "dedup keys go with the event");
    assert_eq!(support::event_json(&s, &keep).await["delivery_pending"], true);
    assert_eq!(s.get("/staging/webhooks/recovery/stats").await.json()["retention_deleted"], 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_breaker_window_loses_nothing() {
    let mut app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &app.url("/hook"), 1000, 50);
    c.retry.max_delay = HumanDuration(Duration::from_millis(200));
    c.circuit_breaker.failure_threshold = 3;
    c.circuit_breaker.recovery_timeout = HumanDuration(Duration::from_millis(400));
    let s = start(c).await;
    app.go_down().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let r = s.stripe(&stripe_event(&format!("evt_out{i}"))).await;
        assert_eq!(r.status, 200);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until("the breaker to open during the outage", || async {
        let rec = s.get("/staging/webhooks/recovery/stats").await.json();
        (rec["providers"]["stripe"]["breaker"]["state"] == "open").then_some(())
    })
    .await;
    app.restart().await;
    let mut failed_attempts = 0;
    for id in &ids {
        let e = support::wait_status(&s, id, "processed").await;
        let history = e["history"].as_array().unwrap();
        let delivered = history.iter().filter(|h| h["outcome"] == "delivered").count();
        assert_eq!(delivered, 1, "{id}: {history:?}");
        assert_eq!(history.len() as u64, e["attempts"].as_u64().unwrap());
        assert_eq!(history.last().unwrap()["outcome"], "delivered");
        failed_attempts += history.len() - 1;
    }
    assert!(failed_attempts > 0, "the outage cost attempts");
    // Every event reached the app exactly once: nothing lost, nothing twice.
    let got = app.received();
    let mut per_event: Vec<&str> = got.iter().map(|d| d.header("x-stagehook-event-id").unwrap()).collect();
    per_event.sort();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(per_event, expected);
    let rec = queue_drained(&s).await;
    assert_eq!(rec["providers"]["stripe"]["breaker"]["state"], "closed");
    assert_eq!(rec["queue_depth"], 0);
    assert!(rec["failure_reasons"]["connect"].as_u64().unwrap() >= 3, "{rec}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_delivery_in_flight_finish() {
    let app = FakeApp::start().await;
    app.set_default(Reply { status: 200, retry_after: None, delay: Duration::from_millis(700) });
    let dir = tempfile::tempdir().unwrap();
    let c = delivering(dir.path(), &app.url("/hook"), 3, 10);
    let s = start(c.clone()).await;
    let id = s.stripe(&stripe_event("evt_inflight_d")).await.json()["id"].as_str().unwrap().to_string();
    app.wait_for(1).await;
    s.stop().await;
    let s = start(c).await;
    let e = support::event_json(&s, &id).await;
    assert_eq!(e["status"], "processed", "the delivery in flight was recorded before the store closed: {e}");
    // A later event goes through: had the first one's job stayed queued, it was due earlier and
    // would have been sent first.
    app.set_default(Reply::status(200));
    let later = s.stripe(&stripe_event("evt_after_restart")).await.json()["id"].as_str().unwrap().to_string();
    support::wait_status(&s, &later, "processed").await;
    let sent: Vec<String> =
        app.received().iter().map(|d| d.header("x-stagehook-event-id").unwrap().to_string()).collect();
    assert_eq!(sent, [id.clone(), later], "the first was not attempted again");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_times_out_and_is_retried() {
    let app = FakeApp::start().await;
    app.script([Reply { status: 200, retry_after: None, delay: Duration::from_secs(3) }]);
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &app.url("/slow"), 3, 10);
    c.providers.get_mut("stripe").unwrap().timeout = HumanDuration(Duration::from_millis(300));
    let s = start(c).await;
    let id = s.stripe(&stripe_event("evt_slow")).await.json()["id"].as_str().unwrap().to_string();
    let e = support::wait_status(&s, &id, "processed").await;
    let h = e["history"].as_array().unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0]["error"], "timed out");
    assert_eq!(h[0]["status"], Value::Null);
    assert!(h[0]["duration_us"].as_u64().unwrap() < 2_000_000, "cut off at the timeout, not the app's 3 s");
    assert_eq!(h[1]["status"], 200);
    let rec = s.get("/staging/webhooks/recovery/stats").await.json();
    assert_eq!(rec["failure_reasons"]["timeout"], 1, "{rec}");
    s.stop().await;
}
