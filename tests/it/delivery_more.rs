//! Delivery promises beyond the basics: what a replay does to queued and in-flight work (and,
//! during an open breaker, that it goes out at once as the probe), the bulk replay's filter,
//! `delivery.concurrency`, several targets behind one breaker (seen half-open through the API),
//! queued jobs keeping their URL after a configuration change, when the next attempt is due, and
//! retention's caps, startup run and the statuses it keeps.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use stagehook::config::{Config, HumanDuration, Strategy};
use stagehook::Clock;

use crate::fake_app::{FakeApp, Reply};
use crate::support::{self, config, start, start_with_clock, stripe_event, until};

const DAY: Duration = Duration::from_secs(86_400);

fn delivering(dir: &Path, urls: &[String], attempts: u32, base: Duration) -> Config {
    let mut c = config(dir);
    c.providers.get_mut("stripe").unwrap().forward_to = urls.to_vec();
    c.retry.strategy = Strategy::Fixed;
    c.retry.max_attempts = attempts;
    c.retry.base_delay = HumanDuration(base);
    c.retry.max_delay = HumanDuration(base.max(Duration::from_secs(1)));
    c.retry.jitter = 0.0;
    c
}

async fn recovery(s: &support::TestServer) -> Value {
    s.get("/staging/webhooks/recovery/stats").await.json()
}

/// Polls `/recovery/stats` until the queue depth is `n`: the counters follow the records a moment
/// after the batch that changed both is applied (once it is flushed).
async fn queue_depth_becomes(s: &support::TestServer, n: u64) -> Value {
    until(&format!("queue depth {n}"), || async {
        let rec = recovery(s).await;
        (rec["queue_depth"] == n).then_some(rec)
    })
    .await
}

async fn replay(s: &support::TestServer, path: &str, body: &[u8]) -> Value {
    let r = s.post(path, &[("content-type", "application/json")], body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Waits until the engine has begun two looks at the queue since the call: the first of them began
/// after the call and has finished, so every delivery it meant to start is in flight by then.
async fn two_engine_passes(s: &support::TestServer) {
    let from = s.engine.passes();
    until("two looks of the engine at the queue", || async { (s.engine.passes() >= from + 2).then_some(()) }).await;
}

fn ids_sent(app: &FakeApp) -> Vec<String> {
    app.received().iter().map(|d| d.header("x-stagehook-event-id").unwrap().to_string()).collect()
}

/// A replay cancels the event's queued retry (due in a day), and an attempt of the old series
/// still in flight when the replay comes is recorded but decides nothing: its failure queues no
/// retry, and it does not take the new series' job out of the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_cancels_queued_jobs_and_outranks_the_old_series_in_flight() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &[app.url("/hook")], 5, DAY);
    // One at a time: the new series' job waits while the old series' attempt is out.
    c.delivery.concurrency = 1;
    let s = start(c).await;

    // Queued: a retry a day away.
    app.script([Reply::status(500)]);
    let queued = s.stripe(&stripe_event("evt_queued")).await.json()["id"].as_str().unwrap().to_string();
    support::wait_status(&s, &queued, "retrying").await;
    queue_depth_becomes(&s, 1).await;
    assert_eq!(replay(&s, &format!("/staging/webhooks/events/{queued}/replay"), b"").await["replayed"], 1);
    let e = support::wait_status(&s, &queued, "processed").await;
    assert_eq!(e["delivery_pending"], false, "the day-away retry was cancelled: {e}");
    queue_depth_becomes(&s, 0).await;

    // In flight: the app holds the old series' attempt until the replay is in, then refuses it.
    app.script([Reply::status(500)]);
    app.hold();
    let held = s.stripe(&stripe_event("evt_held")).await.json()["id"].as_str().unwrap().to_string();
    app.wait_for(3).await;
    assert_eq!(replay(&s, &format!("/staging/webhooks/events/{held}/replay"), b"").await["replayed"], 1);
    assert_eq!(support::event_json(&s, &held).await["status"], "received", "a replay sets the status back");
    assert_eq!(s.engine.in_flight(), 1, "the old series' attempt was still out when the replay came");
    app.release();
    let e = support::wait_status(&s, &held, "processed").await;
    let h: Vec<(Value, Value, Value)> = e["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["series"].clone(), h["attempt"].clone(), h["status"].clone()))
        .collect();
    assert!(h.contains(&(json!(1), json!(1), json!(500))), "the old attempt is in the history: {e}");
    assert!(h.contains(&(json!(2), json!(1), json!(200))), "{e}");
    assert_eq!(h.len(), 2, "{e}");
    assert_eq!(e["delivery_pending"], false, "the old series' failure queued no retry: {e}");
    queue_depth_becomes(&s, 0).await;
    assert_eq!(ids_sent(&app), [queued.clone(), queued, held.clone(), held]);
    s.stop().await;
}

/// The bulk replay: an empty body matches every event, `since` is inclusive, `until` exclusive,
/// `limit` takes the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulk_replay_filter_selects_by_time_and_limit() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(delivering(dir.path(), &[app.url("/hook")], 3, Duration::from_millis(10))).await;
    let mut ids = Vec::new();
    let mut at = Vec::new();
    for i in 0..4 {
        let id = s.stripe(&stripe_event(&format!("evt_bulk{i}"))).await.json()["id"].as_str().unwrap().to_string();
        let e = support::wait_status(&s, &id, "processed").await;
        at.push(e["received_at_ms"].as_i64().unwrap());
        ids.push(id);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
    let mut expected = ids.clone();

    let cases: [(String, Vec<usize>); 4] = [
        (format!(r#"{{"since": {}}}"#, at[2]), vec![3, 2]),
        (format!(r#"{{"until": {}}}"#, at[1]), vec![0]),
        (r#"{"limit": 2}"#.to_string(), vec![3, 2]),
        (String::new(), vec![3, 2, 1, 0]),
    ];
    for (filter, picked) in cases {
        let r = replay(&s, "/staging/webhooks/replay", filter.as_bytes()).await;
        assert_eq!(r["replayed"], picked.len(), "{filter}: {r}");
        expected.extend(picked.iter().map(|&i| ids[i].clone()));
        app.wait_for(expected.len()).await;
        for &i in &picked {
            support::wait_status(&s, &ids[i], "processed").await;
        }
        let mut sent = ids_sent(&app);
        let mut want = expected.clone();
        sent.sort();
        want.sort();
        assert_eq!(sent, want, "{filter}");
    }
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
        ids.push(s.stripe(&stripe_event(&format!("evt_cc{i}"))).await.json()["id"].as_str().unwrap().to_string());
    }
    app.wait_for(2).await;
    two_engine_passes(&s).await;
    let rec = recovery(&s).await;
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
    let id = s.stripe(&stripe_event("evt_two")).await.json()["id"].as_str().unwrap().to_string();
    // One failure at each target opens it: the count is the provider's, not a target's.
    let rec = until("the shared breaker to open", || async {
        let rec = recovery(&s).await;
        (rec["providers"]["stripe"]["breaker"]["state"] == "open").then_some(rec)
    })
    .await;
    assert_eq!((a.received().len(), b.received().len()), (1, 1), "{rec}");
    assert_eq!(rec["providers"]["stripe"]["breaker"]["consecutive_failures"], 2);

    // The probe is held by the app: the breaker is half-open meanwhile.
    for app in [&a, &b] {
        app.set_default(Reply::status(200));
        app.hold();
    }
    until("the breaker to be half-open", || async {
        (recovery(&s).await["providers"]["stripe"]["breaker"]["state"] == "half_open").then_some(())
    })
    .await;
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
    assert_eq!(recovery(&s).await["providers"]["stripe"]["breaker"]["state"], "closed");
    s.stop().await;
}

/// Retention runs at startup, deletes dead letters like any event, and keeps at most
/// `max_events` (the newest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_at_startup_caps_the_count_and_deletes_dead_letters() {
    let app = FakeApp::start().await;
    app.set_default(Reply::status(422));
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &[app.url("/hook")], 3, Duration::from_millis(10));
    c.retention.max_age = HumanDuration(Duration::from_secs(3600));
    c.retention.interval = HumanDuration(DAY);
    // The first run lives two hours in the past.
    let clock = Clock::system();
    clock.advance(-2 * 3600 * 1000);
    let s = start_with_clock(c.clone(), clock.clone()).await;
    let body = stripe_event("evt_dead");
    let sig = support::stripe_header(support::STRIPE_SECRET, clock.now_s(), body.as_bytes());
    let r = s
        .post(
            "/staging/webhooks/stripe",
            &[("content-type", "application/json"), ("stripe-signature", &sig)],
            body.as_bytes(),
        )
        .await;
    let dead = r.json()["id"].as_str().unwrap().to_string();
    support::wait_status(&s, &dead, "failed").await;
    s.stop().await;

    // Two hours later, a restart: the daily clean-up runs at once, and the dead letter goes.
    clock.advance(2 * 3600 * 1000);
    let s = start_with_clock(c.clone(), clock.clone()).await;
    until("retention at startup", || async {
        (s.get(&format!("/staging/webhooks/events/{dead}")).await.status == 404).then_some(())
    })
    .await;
    // The counters follow the records once the batch is flushed: polled, then exact.
    let rec = until("retention's count", || async {
        let rec = recovery(&s).await;
        (rec["retention_deleted"].as_u64() >= Some(1)).then_some(rec)
    })
    .await;
    assert_eq!(rec["retention_deleted"], 1, "{rec}");
    app.set_default(Reply::status(200));
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = s.stripe(&stripe_event(&format!("evt_cap{i}"))).await.json()["id"].as_str().unwrap().to_string();
        support::wait_status(&s, &id, "processed").await;
        ids.push(id);
    }
    s.stop().await;

    let mut capped = c;
    capped.retention.max_events = 2;
    let s = start_with_clock(capped, clock).await;
    until("the oldest beyond max_events to go", || async {
        (s.get("/staging/webhooks/stats").await.json()["total_events"] == 2).then_some(())
    })
    .await;
    for (i, id) in ids.iter().enumerate() {
        let status = s.get(&format!("/staging/webhooks/events/{id}")).await.status;
        assert_eq!(status, if i >= 3 { 200 } else { 404 }, "evt_cap{i}");
    }
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
    let id = s.stripe(&stripe_event("evt_moved")).await.json()["id"].as_str().unwrap().to_string();
    support::wait_status(&s, &id, "retrying").await;
    s.stop().await;

    let mut moved = c;
    moved.providers.get_mut("stripe").unwrap().forward_to = vec![new.url("/new")];
    let s = start(moved).await;
    let e = support::wait_status(&s, &id, "processed").await;
    assert_eq!((old.received().len(), new.received().len()), (2, 0), "{e}");
    assert_eq!(e["history"][1]["target"], old.url("/old"));
    assert_eq!(replay(&s, &format!("/staging/webhooks/events/{id}/replay"), b"").await["replayed"], 1);
    new.wait_for(1).await;
    support::wait_status(&s, &id, "processed").await;
    assert_eq!(old.received().len(), 2);
    s.stop().await;
}

/// Retention passes over `received` and `processing` events (their delivery is queued) while it
/// deletes an old event beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_received_and_processing_events() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Twilio has no target: its event is processed at once, and is the one retention may take.
    let mut c = delivering(dir.path(), &[app.url("/hook")], 3, Duration::from_millis(10));
    c.delivery.concurrency = 1;
    c.retention.max_age = HumanDuration(Duration::from_secs(3600));
    c.retention.interval = HumanDuration(Duration::from_millis(50));
    let clock = Clock::system();
    let s = start_with_clock(c, clock.clone()).await;
    let params = [("MessageSid", "SM_OLD"), ("From", "+1"), ("To", "+2")];
    let r = s.sms(&params).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The first delivery is held by the app (processing); the second waits for the one slot.
    app.hold();
    let busy = s.stripe(&stripe_event("evt_busy")).await.json()["id"].as_str().unwrap().to_string();
    app.wait_for(1).await;
    let waiting = s.stripe(&stripe_event("evt_waiting")).await.json()["id"].as_str().unwrap().to_string();
    assert_eq!(support::event_json(&s, &busy).await["status"], "processing");
    assert_eq!(support::event_json(&s, &waiting).await["status"], "received");

    clock.advance(2 * 3600 * 1000);
    until("retention to delete the old processed event", || async {
        (recovery(&s).await["retention_deleted"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    assert_eq!(recovery(&s).await["retention_deleted"], 1, "only the event without a queued delivery");
    assert!(s.store.find_by_event_id("twilio", "SM_OLD").unwrap().is_none());
    for id in [&busy, &waiting] {
        assert_eq!(s.get(&format!("/staging/webhooks/events/{id}")).await.status, 200, "{id} kept");
    }
    // Kept, the waiting event is delivered once the slot is free. Its record may go at once
    // afterwards (it is two hours old and nothing is queued for it any more): the app's copy is
    // what shows the delivery.
    app.release();
    app.wait_for(2).await;
    assert_eq!(ids_sent(&app), [busy, waiting]);
    s.stop().await;
}

/// Trap: a person fixes the app and replays while the breaker is open. The replay goes out at once
/// as the breaker's probe, well before `recovery_timeout` (60 s here); the app answers, the breaker
/// closes and the event that was waiting follows. While the app is still down, a bulk replay sends
/// one probe only, which keeps the breaker open, and the rest of it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_during_an_open_breaker_goes_out_at_once_as_its_probe() {
    let app = FakeApp::start().await;
    app.set_default(Reply::status(500));
    let dir = tempfile::tempdir().unwrap();
    let mut c = delivering(dir.path(), &[app.url("/hook")], 2, Duration::from_millis(10));
    c.circuit_breaker.failure_threshold = 2;
    c.circuit_breaker.recovery_timeout = HumanDuration(Duration::from_secs(60));
    let s = start(c).await;
    let breaker = |rec: &Value| rec["providers"]["stripe"]["breaker"].clone();
    let post = |evt: &'static str| {
        let s = &s;
        async move { s.stripe(&stripe_event(evt)).await.json()["id"].as_str().unwrap().to_string() }
    };

    // Two failed attempts: a dead letter, and the breaker open.
    let dead = post("evt_dead").await;
    support::wait_status(&s, &dead, "failed").await;
    let rec = until("the breaker to open", || async {
        let rec = recovery(&s).await;
        (breaker(&rec)["state"] == "open").then_some(rec)
    })
    .await;
    let opened = breaker(&rec)["opened_at_ms"].as_i64().unwrap();
    let waiting = post("evt_waiting").await;

    // The app is fixed; the replay does not wait for the probe a minute away.
    app.set_default(Reply::status(200));
    replay(&s, &format!("/staging/webhooks/events/{dead}/replay"), b"").await;
    let e = support::wait_status(&s, &dead, "processed").await;
    let delivered_at = e["history"].as_array().unwrap().last().unwrap()["at_ms"].as_i64().unwrap();
    assert!(delivered_at < opened + 60_000, "sent before the breaker's own probe: {e}");
    // The breaker closed on it, and the event held back follows.
    support::wait_status(&s, &waiting, "processed").await;
    assert_eq!(breaker(&recovery(&s).await)["state"], "closed");

    // The app is down again: a new dead letter opens the breaker once more; an event behind it waits.
    app.set_default(Reply::status(500));
    let down1 = post("evt_down1").await;
    let first = support::wait_status(&s, &down1, "failed").await;
    until("the breaker to open again", || async { (breaker(&recovery(&s).await)["state"] == "open").then_some(()) })
        .await;
    let down = [down1, post("evt_down2").await];
    assert_eq!(support::event_json(&s, &down[1]).await["status"], "received");
    let sent = app.received().len();
    let body = format!(r#"{{"since": {}}}"#, first["received_at_ms"]);
    assert_eq!(replay(&s, "/staging/webhooks/replay", body.as_bytes()).await["replayed"], 2);
    // One probe goes out and fails: the breaker stays open and the other replayed job waits.
    let probed = until("the probe's failure", || async {
        for id in &down {
            let e = support::event_json(&s, id).await;
            if e["status"] == "retrying" {
                return Some(id.clone());
            }
        }
        None
    })
    .await;
    assert_eq!(app.received().len(), sent + 1);
    assert_eq!(breaker(&recovery(&s).await)["state"], "open");
    let other = down.iter().find(|id| **id != probed).unwrap();
    // From here the app holds its answers: an attempt started while the breaker is open stays in
    // flight, where the engine counts it, or has been answered already, where the app counts it.
    app.hold();
    until("nothing in flight once the probe is recorded", || async { (s.engine.in_flight() == 0).then_some(()) }).await;
    two_engine_passes(&s).await;
    assert_eq!(s.engine.in_flight(), 0, "a retry does not start while the breaker is open");
    assert_eq!(app.received().len(), sent + 1, "a retry does not start while the breaker is open");
    assert_eq!(support::event_json(&s, other).await["status"], "received", "it waits for a probe");

    // Fixed again: replaying the waiting one closes the breaker and the retry follows.
    app.set_default(Reply::status(200));
    app.release();
    replay(&s, &format!("/staging/webhooks/events/{other}/replay"), b"").await;
    for id in &down {
        support::wait_status(&s, id, "processed").await;
    }
    s.stop().await;
}

/// The event list and detail say when the queued attempt is due (`next_attempt_at_ms`, `null`
/// once nothing is queued) beside the last error; a filter on `duplicate`, which no stored event
/// has, is refused with the statuses there are rather than answered with an always-empty page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_say_when_the_next_attempt_is_due() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A stopped clock: the retry is due exactly a day after the failed attempt.
    let clock = Clock::frozen(1_795_896_521_000);
    let s = start_with_clock(delivering(dir.path(), &[app.url("/hook")], 5, DAY), clock.clone()).await;
    app.script([Reply::status(500)]);
    let id = s.stripe(&stripe_event("evt_next")).await.json()["id"].as_str().unwrap().to_string();
    let e = support::wait_status(&s, &id, "retrying").await;
    let due = 1_795_896_521_000 + DAY.as_millis() as i64;
    assert_eq!(e["next_attempt_at_ms"], due, "{e}");
    let list = s.get("/staging/webhooks/events?status=retrying").await.json();
    let entry = &list["events"][0];
    assert_eq!((entry["id"].as_str(), entry["next_attempt_at_ms"].as_i64()), (Some(id.as_str()), Some(due)));
    assert_eq!(entry["last_error"], "HTTP 500: fake app says 500", "{list}");

    clock.advance(DAY.as_millis() as i64);
    let e = support::wait_status(&s, &id, "processed").await;
    assert_eq!(e["next_attempt_at_ms"], serde_json::Value::Null, "{e}");
    let list = s.get("/staging/webhooks/events").await.json();
    assert_eq!(list["events"][0]["next_attempt_at_ms"], serde_json::Value::Null, "{list}");

    let r = s.get("/staging/webhooks/events?status=duplicate").await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"));
    let text = r.text();
    assert!(text.contains("received, processing, processed, retrying, failed"), "{text}");
    let r =
        s.post("/staging/webhooks/replay", &[("content-type", "application/json")], br#"{"status":"duplicate"}"#).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"));
    s.stop().await;
}
