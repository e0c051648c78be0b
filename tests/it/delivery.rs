//! Delivery to the app under test: raw bytes and headers intact, signatures the app's SDK
//! accepts, retries, permanent refusals, `Retry-After`, timeouts, breakers (one per provider,
//! shared by its targets), `delivery.concurrency`, restarts mid-retry, shutdown with a delivery
//! in flight, and an outage longer than the breaker's window. The config, the waits (on the
//! queue, the breaker, the engine) and the replays that `replay_and_retention` shares are here too.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use stagehook::config::{Config, HumanDuration, Strategy};

use crate::fake_app::{stripe_sdk_verify, twilio_sdk_validate, FakeApp, Reply};
use crate::support::{
    self, config, start, stripe_event, twilio_signature, until, TestServer, STRIPE_SECRET, TWILIO_TOKEN,
};

/// A config delivering Stripe events to `urls`, with `attempts` fixed retries `base` apart and no
/// jitter. `max_delay` is raised to `base` where it is shorter, as the config requires; it caps
/// only an app's `Retry-After` here.
pub(crate) fn delivering(dir: &Path, urls: &[String], attempts: u32, base: Duration) -> Config {
    let mut c = config(dir);
    c.providers.get_mut("stripe").unwrap().forward_to = urls.to_vec();
    c.retry.strategy = Strategy::Fixed;
    c.retry.max_attempts = attempts;
    c.retry.base_delay = HumanDuration(base);
    c.retry.max_delay = HumanDuration(base.max(c.retry.max_delay.0));
    c.retry.jitter = 0.0;
    c
}

/// Polls `/recovery/stats` until the queue depth is `n`, and returns them: the counters follow
/// the records a moment after the batch that changed both is applied (once it is flushed).
pub(crate) async fn queue_depth_becomes(s: &TestServer, n: u64) -> Value {
    until(&format!("queue depth {n}"), || async {
        let rec = s.recovery().await;
        (rec["queue_depth"] == n).then_some(rec)
    })
    .await
}

/// Polls `/recovery/stats` until Stripe's breaker is `state`, and returns them.
pub(crate) async fn breaker_becomes(s: &TestServer, state: &str) -> Value {
    until(&format!("the breaker to be {state}"), || async {
        let rec = s.recovery().await;
        (rec["providers"]["stripe"]["breaker"]["state"] == state).then_some(rec)
    })
    .await
}

/// Waits until the engine has begun two looks at the queue since the call: the first of them began
/// after the call and has finished, so every delivery it meant to start is in flight by then.
pub(crate) async fn two_engine_passes(s: &TestServer) {
    let from = s.engine.passes();
    until("two looks of the engine at the queue", || async { (s.engine.passes() >= from + 2).then_some(()) }).await;
}

/// Replays the event `id`, which is accepted, and returns the answer.
pub(crate) async fn replay_event(s: &TestServer, id: &str) -> Value {
    replay(s, &format!("/staging/webhooks/events/{id}/replay"), b"").await
}

/// Replays the events that `filter` (JSON, or empty for every event) selects, which is accepted,
/// and returns the answer.
pub(crate) async fn replay_where(s: &TestServer, filter: &[u8]) -> Value {
    replay(s, "/staging/webhooks/replay", filter).await
}

async fn replay(s: &TestServer, path: &str, body: &[u8]) -> Value {
    let r = s.post_json(path, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The event ids of the deliveries the app got, in the order it got them.
pub(crate) fn ids_sent(app: &FakeApp) -> Vec<String> {
    app.received().iter().map(|d| d.header("x-stagehook-event-id").unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_raw_bytes_and_headers_signed_for_the_app() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(delivering(dir.path(), &[app.url("/webhooks/stripe")], 3, Duration::from_millis(10))).await;
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
    queue_depth_becomes(&s, 0).await;
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["by_status"]["processed"], 1, "{stats}");
    assert_eq!(stats["by_status"]["received"], 0, "{stats}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_deliveries_are_signed_for_the_target_url() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let target = app.url("/twilio/sms?tenant=7");
    let s = start(support::forwarding(dir.path(), "twilio", target.clone())).await;
    let params = [("MessageSid", "SM900"), ("From", "+15005550006"), ("To", "+15005550001"), ("Body", "ñandú & co")];
    let form_sig = twilio_signature(TWILIO_TOKEN, "http://127.0.0.1/staging/webhooks/sms", &params);
    // The signature `sms` sends, for the URL Twilio called.
    let r = s.sms(&params).await;
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
    let mut c = delivering(dir.path(), &[app.url("/hook")], 3, Duration::from_millis(100));
    c.circuit_breaker.failure_threshold = 50;
    let s = start(c).await;
    let id = s.post_stripe_event("evt_5xx").await;
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
    let rec = queue_depth_becomes(&s, 0).await;
    assert_eq!(rec["failure_reasons"]["http_5xx"], 3, "{rec}");
    assert_eq!(rec["dead_letters"], 1);
    assert_eq!(rec["queue_depth"], 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_permanent_and_retry_after_is_honoured() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(delivering(dir.path(), &[app.url("/hook")], 5, Duration::from_millis(10))).await;
    app.script([Reply::status(422)]);
    let id = s.post_stripe_event("evt_4xx").await;
    let e = support::wait_status(&s, &id, "failed").await;
    assert_eq!(e["attempts"], 1, "a 4xx is not retried");

    // 429 with Retry-After: 1 s, although the schedule says 10 ms.
    app.script([Reply { status: 429, retry_after: Some(1), delay: Duration::ZERO }, Reply::status(200)]);
    let id = s.post_stripe_event("evt_429").await;
    support::wait_status(&s, &id, "processed").await;
    let got = app.received();
    let gap = got[2].at - got[1].at;
    assert!(gap >= Duration::from_millis(950), "Retry-After honoured: {gap:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_times_out_and_is_retried() {
    let app = FakeApp::start().await;
    app.script([Reply { status: 200, retry_after: None, delay: Duration::from_secs(3) }]);
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &[app.url("/slow")], 3, Duration::from_millis(10));
    c.providers.get_mut("stripe").unwrap().timeout = HumanDuration(Duration::from_millis(300));
    let s = start(c).await;
    let id = s.post_stripe_event("evt_slow").await;
    let e = support::wait_status(&s, &id, "processed").await;
    let h = e["history"].as_array().unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0]["error"], "timed out");
    assert_eq!(h[0]["status"], Value::Null);
    assert!(h[0]["duration_us"].as_u64().unwrap() < 2_000_000, "cut off at the timeout, not the app's 3 s");
    assert_eq!(h[1]["status"], 200);
    let rec = s.recovery().await;
    assert_eq!(rec["failure_reasons"]["timeout"], 1, "{rec}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_pauses_attempts_probes_and_closes() {
    let app = FakeApp::start().await;
    app.set_default(Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &[app.url("/hook")], 50, Duration::from_millis(10));
    c.circuit_breaker.failure_threshold = 3;
    c.circuit_breaker.recovery_timeout = HumanDuration(Duration::from_millis(1500));
    // Twilio delivers to an app that is up: its lane shows the loop keeps going meanwhile.
    let other = FakeApp::start().await;
    c.providers.get_mut("twilio").unwrap().forward_to = vec![other.url("/sms")];
    let s = start(c).await;
    let id = s.post_stripe_event("evt_cb").await;
    let rec = breaker_becomes(&s, "open").await;
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
    assert_eq!(s.recovery().await["providers"]["stripe"]["breaker"]["state"], "open");

    // The app recovers; after the recovery timeout one probe goes through and closes it.
    app.set_default(Reply::status(200));
    support::wait_status(&s, &id, "processed").await;
    assert_eq!(app.received().len(), 4);
    let rec = s.recovery().await;
    assert_eq!(rec["providers"]["stripe"]["breaker"]["state"], "closed");
    assert_eq!(rec["providers"]["stripe"]["breaker"]["consecutive_failures"], 0);
    s.stop().await;
}

/// Two targets for one provider: each gets every event, with its own history entries, and their
/// failures count towards one breaker, which `/recovery/stats` shows `half_open` while its
/// probe is out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_targets_share_one_breaker_seen_half_open() {
    let (a, b) = (FakeApp::start().await, FakeApp::start().await);
    a.set_default(Reply::status(503));
    b.set_default(Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &[a.url("/a"), b.url("/b")], 50, Duration::from_millis(5000));
    c.retry.max_delay = HumanDuration(Duration::from_secs(5));
    c.circuit_breaker.failure_threshold = 2;
    c.circuit_breaker.recovery_timeout = HumanDuration(Duration::from_millis(800));
    let s = start(c).await;
    let id = s.post_stripe_event("evt_two").await;
    // One failure at each target opens it: the count is the provider's, not a target's.
    let rec = breaker_becomes(&s, "open").await;
    assert_eq!((a.received().len(), b.received().len()), (1, 1), "{rec}");
    assert_eq!(rec["providers"]["stripe"]["breaker"]["consecutive_failures"], 2);

    // The probe is held by the app: the breaker is half-open meanwhile.
    for app in [&a, &b] {
        app.set_default(Reply::status(200));
        app.hold();
    }
    breaker_becomes(&s, "half_open").await;
    a.release();
    b.release();
    let e = support::wait_status(&s, &id, "processed").await;
    let mut delivered: Vec<String> = e["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["outcome"] == "delivered")
        .map(|h| h["target"].as_str().unwrap().to_string())
        .collect();
    delivered.sort();
    let mut want = vec![a.url("/a"), b.url("/b")];
    want.sort();
    assert_eq!(delivered, want, "{e}");
    assert_eq!(s.recovery().await["providers"]["stripe"]["breaker"]["state"], "closed");
    s.stop().await;
}

/// At most `delivery.concurrency` attempts run at once; the others wait, `received`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_bounds_the_deliveries_in_flight() {
    let app = FakeApp::start().await;
    app.set_default(Reply { status: 200, retry_after: None, delay: Duration::from_millis(600) });
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &[app.url("/hook")], 3, Duration::from_millis(10));
    c.delivery.concurrency = 2;
    let s = start(c).await;
    // The app holds the first two answers while the engine looks at the queue twice more.
    app.hold();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.post_stripe_event(&format!("evt_cc{i}")).await);
    }
    app.wait_for(2).await;
    two_engine_passes(&s).await;
    let rec = s.recovery().await;
    assert_eq!(rec["in_flight"], 2, "{rec}");
    let page = s.get("/staging/webhooks/events?status=received").await.json();
    let waiting = page["events"].as_array().unwrap().len();
    assert_eq!(waiting, 3, "two in flight, the other three wait: {page}");
    assert_eq!(app.received().len(), 2);
    app.release();
    for id in &ids {
        support::wait_status(&s, id, "processed").await;
    }
    // Each attempt is held 600 ms: with two at a time, the third starts after the first ends,
    // the fifth after the third.
    let got = app.received();
    assert_eq!(got.len(), 5);
    assert!(got[2].at - got[0].at >= Duration::from_millis(550), "{:?}", got[2].at - got[0].at);
    assert!(got[4].at - got[2].at >= Duration::from_millis(550), "{:?}", got[4].at - got[2].at);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_retry_resumes_without_loss_or_double_count() {
    let app = FakeApp::start().await;
    app.script([Reply::status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let c = delivering(dir.path(), &[app.url("/hook")], 5, Duration::from_millis(700));
    let s = start(c.clone()).await;
    let id = s.post_stripe_event("evt_restart").await;
    support::wait_status(&s, &id, "retrying").await;
    assert_eq!(app.received().len(), 1, "one attempt before the stop");
    s.stop().await;
    assert_eq!(app.received().len(), 1, "the retry was not due yet: nothing sent while stopping");

    let s = start(c).await;
    let e = support::wait_status(&s, &id, "processed").await;
    assert_eq!(app.received().len(), 2, "one failed attempt, one delivery");
    assert_eq!(e["attempts"], 2);
    queue_depth_becomes(&s, 0).await;
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["total_events"], 1);
    assert_eq!(stats["by_status"]["processed"], 1, "{stats}");
    assert_eq!(stats["by_status"]["retrying"], 0, "{stats}");
    let rec = s.recovery().await;
    assert_eq!(rec["queue_depth"], 0);
    assert_eq!(rec["delivered_after_attempts"]["2"], 1, "{rec}");
    s.stop().await;
}

/// A queued retry keeps the URL its series started with across a restart with another
/// `forward_to`; a replay then uses the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_keep_their_url_after_a_config_change() {
    let (old, new) = (FakeApp::start().await, FakeApp::start().await);
    old.script([Reply::status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let c = delivering(dir.path(), &[old.url("/old")], 5, Duration::from_millis(1500));
    let s = start(c.clone()).await;
    let id = s.post_stripe_event("evt_moved").await;
    support::wait_status(&s, &id, "retrying").await;
    s.stop().await;

    let mut moved = c;
    moved.providers.get_mut("stripe").unwrap().forward_to = vec![new.url("/new")];
    let s = start(moved).await;
    let e = support::wait_status(&s, &id, "processed").await;
    assert_eq!((old.received().len(), new.received().len()), (2, 0), "{e}");
    assert_eq!(e["history"][1]["target"], old.url("/old"));
    assert_eq!(replay_event(&s, &id).await["replayed"], 1);
    new.wait_for(1).await;
    support::wait_status(&s, &id, "processed").await;
    assert_eq!(old.received().len(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_delivery_in_flight_finish() {
    let app = FakeApp::start().await;
    app.set_default(Reply { status: 200, retry_after: None, delay: Duration::from_millis(700) });
    let dir = tempfile::tempdir().unwrap();
    let c = delivering(dir.path(), &[app.url("/hook")], 3, Duration::from_millis(10));
    let s = start(c.clone()).await;
    let id = s.post_stripe_event("evt_inflight_d").await;
    app.wait_for(1).await;
    s.stop().await;
    let s = start(c).await;
    let e = support::event_json(&s, &id).await;
    assert_eq!(e["status"], "processed", "the delivery in flight was recorded before the store closed: {e}");
    // A later event goes through: had the first one's job stayed queued, it was due earlier and
    // would have been sent first.
    app.set_default(Reply::status(200));
    let later = s.post_stripe_event("evt_after_restart").await;
    support::wait_status(&s, &later, "processed").await;
    let sent = ids_sent(&app);
    assert_eq!(sent, [id.clone(), later], "the first was not attempted again");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_breaker_window_loses_nothing() {
    let mut app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &[app.url("/hook")], 1000, Duration::from_millis(50));
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
    breaker_becomes(&s, "open").await;
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
    let mut per_event = ids_sent(&app);
    per_event.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(per_event, expected);
    let rec = queue_depth_becomes(&s, 0).await;
    assert_eq!(rec["providers"]["stripe"]["breaker"]["state"], "closed");
    assert_eq!(rec["queue_depth"], 0);
    assert!(rec["failure_reasons"]["connect"].as_u64().unwrap() >= 3, "{rec}");
    s.stop().await;
}
