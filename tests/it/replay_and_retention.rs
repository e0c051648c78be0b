//! What becomes of an event once it is stored: how the event list shows it (filters, cursors, a
//! time window, when its next attempt is due), how a replay sends it again (one or in bulk,
//! signed afresh, over queued and in-flight attempts, through an open breaker), and when
//! retention deletes it (by age, by count, at startup, never while a delivery is queued).
//! `delivery` holds the delivery attempt itself and the config and waits both modules use.

use std::time::Duration;

use serde_json::{json, Value};
use stagehook::config::HumanDuration;
use stagehook::Clock;

use crate::delivery::{
    breaker_becomes, delivering, ids_sent, queue_depth_becomes, replay_event, replay_where, two_engine_passes,
};
use crate::fake_app::{stripe_sdk_verify, FakeApp, Reply};
use crate::support::{self, config, start, start_with_clock, stripe_event, until, STRIPE_SECRET};

const DAY: Duration = Duration::from_secs(86_400);

// The event list.

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

    // `after=<id>` pages the other way, in arrival order, resuming after the last id taken.
    let oldest = s.get("/staging/webhooks/events?after=00000000000000000000000000&limit=2").await.json();
    let ids: Vec<&str> = oldest["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["evt_l0", "evt_l1"]);
    let mut after = oldest["next_after"].as_str().unwrap().to_string();
    let mut rest = Vec::new();
    for _ in 0..10 {
        let page = s.get(&format!("/staging/webhooks/events?after={after}&limit=2&provider=stripe")).await.json();
        rest.extend(page["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_string()));
        match page["next_after"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    assert_eq!(rest, ["evt_l2", "evt_l3", "evt_l4", "evt_l5", "evt_l6"], "each once, in arrival order");
    for q in [
        "after=evt_l1",
        "after=00000000000000000000000000&cursor=00000000000000000000000000",
        "after=00000000000000000000000000&q=evt_l1",
    ] {
        assert_eq!(s.get(&format!("/staging/webhooks/events?{q}")).await.code(), "invalid_payload", "{q}");
    }

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
    let id = s.post_stripe_event("evt_next").await;
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
    let r = s.post_json("/staging/webhooks/replay", br#"{"status":"duplicate"}"#).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"));
    s.stop().await;
}

// Replay.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_hours_later_is_signed_afresh() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The server lives five hours in the past: the first delivery's signature is old by now.
    let clock = Clock::system();
    clock.advance(-5 * 3600 * 1000);
    let s = start_with_clock(delivering(dir.path(), &[app.url("/hook")], 3, Duration::from_millis(10)), clock.clone())
        .await;
    let r = s.stripe_at_its_clock(&stripe_event("evt_old")).await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let first = app.wait_for(1).await[0].clone();
    let err =
        stripe_sdk_verify(&first.body, first.header("stripe-signature").unwrap(), STRIPE_SECRET, 300, support::now_s());
    assert_eq!(err.unwrap_err(), "Timestamp outside the tolerance zone");
    support::wait_status(&s, &id, "processed").await;

    // Five hours later, a replay: a new series whose signature the SDK accepts now.
    clock.advance(5 * 3600 * 1000);
    assert_eq!(replay_event(&s, &id).await["replayed"], 1);
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
async fn replay_single_and_bulk_and_409_without_target() {
    let app = FakeApp::start().await;
    app.set_default(Reply::status(400));
    let dir = tempfile::tempdir().unwrap();
    let s = start(delivering(dir.path(), &[app.url("/hook")], 3, Duration::from_millis(10))).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(s.post_stripe_event(&format!("evt_rp{i}")).await);
    }
    for id in &ids {
        support::wait_status(&s, id, "failed").await;
    }
    let listed = s.get("/staging/webhooks/events?status=failed&provider=stripe").await.json();
    assert_eq!(listed["events"].as_array().unwrap().len(), 3, "{listed}");

    app.set_default(Reply::status(200));
    let r = replay_where(&s, br#"{"status": "failed", "provider": "stripe"}"#).await;
    assert_eq!(r["replayed"], 3);
    for id in &ids {
        let e = support::wait_status(&s, id, "processed").await;
        assert_eq!(e["attempts"], 2, "history kept: one refused, one delivered");
    }
    assert_eq!(app.received().len(), 6);

    // Twilio has no target here: nothing to replay to.
    let params = [("MessageSid", "SM1"), ("From", "+1"), ("To", "+2")];
    s.sms(&params).await;
    let sms = s.store.find_by_event_id("twilio", "SM1").unwrap().unwrap();
    let r = s.post_json(&format!("/staging/webhooks/events/{sms}/replay"), b"").await;
    assert_eq!((r.status, r.code().as_str()), (409, "no_target"));
    let r = s.post_json("/staging/webhooks/replay", br#"{"provider": "twilio"}"#).await;
    assert_eq!((r.json()["replayed"].clone(), r.json()["skipped_no_target"].clone()), (json!(0), json!(1)));
    let r = s.post_json("/staging/webhooks/replay", br#"{"status": "lost"}"#).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"));
    let r = s.post_json("/staging/webhooks/events/01ARZ3NDEKTSV4RRFFQ69G5FAV/replay", b"").await;
    assert_eq!(r.code(), "not_found");
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
        let id = s.post_stripe_event(&format!("evt_bulk{i}")).await;
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
        let r = replay_where(&s, filter.as_bytes()).await;
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
    let queued = s.post_stripe_event("evt_queued").await;
    support::wait_status(&s, &queued, "retrying").await;
    queue_depth_becomes(&s, 1).await;
    assert_eq!(replay_event(&s, &queued).await["replayed"], 1);
    let e = support::wait_status(&s, &queued, "processed").await;
    assert_eq!(e["delivery_pending"], false, "the day-away retry was cancelled: {e}");
    queue_depth_becomes(&s, 0).await;

    // In flight: the app holds the old series' attempt until the replay is in, then refuses it.
    app.script([Reply::status(500)]);
    app.hold();
    let held = s.post_stripe_event("evt_held").await;
    app.wait_for(3).await;
    assert_eq!(replay_event(&s, &held).await["replayed"], 1);
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

    // Two failed attempts: a dead letter, and the breaker open.
    let dead = s.post_stripe_event("evt_dead").await;
    support::wait_status(&s, &dead, "failed").await;
    let rec = breaker_becomes(&s, "open").await;
    let opened = breaker(&rec)["opened_at_ms"].as_i64().unwrap();
    let waiting = s.post_stripe_event("evt_waiting").await;

    // The app is fixed; the replay does not wait for the probe a minute away.
    app.set_default(Reply::status(200));
    replay_event(&s, &dead).await;
    let e = support::wait_status(&s, &dead, "processed").await;
    let delivered_at = e["history"].as_array().unwrap().last().unwrap()["at_ms"].as_i64().unwrap();
    assert!(delivered_at < opened + 60_000, "sent before the breaker's own probe: {e}");
    // The breaker closed on it, and the event held back follows.
    support::wait_status(&s, &waiting, "processed").await;
    assert_eq!(breaker(&s.recovery().await)["state"], "closed");

    // The app is down again: a new dead letter opens the breaker once more; an event behind it waits.
    app.set_default(Reply::status(500));
    let down1 = s.post_stripe_event("evt_down1").await;
    let first = support::wait_status(&s, &down1, "failed").await;
    breaker_becomes(&s, "open").await;
    let down = [down1, s.post_stripe_event("evt_down2").await];
    assert_eq!(support::event_json(&s, &down[1]).await["status"], "received");
    let sent = app.received().len();
    let body = format!(r#"{{"since": {}}}"#, first["received_at_ms"]);
    assert_eq!(replay_where(&s, body.as_bytes()).await["replayed"], 2);
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
    assert_eq!(breaker(&s.recovery().await)["state"], "open");
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
    replay_event(&s, other).await;
    for id in &down {
        support::wait_status(&s, id, "processed").await;
    }
    s.stop().await;
}

// Retention.

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
    c.retry.base_delay = HumanDuration(DAY);
    c.retry.max_delay = HumanDuration(DAY);
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
    assert_eq!(s.recovery().await["retention_deleted"], 3);
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
    let busy = s.post_stripe_event("evt_busy").await;
    app.wait_for(1).await;
    let waiting = s.post_stripe_event("evt_waiting").await;
    assert_eq!(support::event_json(&s, &busy).await["status"], "processing");
    assert_eq!(support::event_json(&s, &waiting).await["status"], "received");

    clock.advance(2 * 3600 * 1000);
    until("retention to delete the old processed event", || async {
        (s.recovery().await["retention_deleted"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    assert_eq!(s.recovery().await["retention_deleted"], 1, "only the event without a queued delivery");
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
    let r = s.stripe_at_its_clock(&stripe_event("evt_dead")).await;
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
        let rec = s.recovery().await;
        (rec["retention_deleted"].as_u64() >= Some(1)).then_some(rec)
    })
    .await;
    assert_eq!(rec["retention_deleted"], 1, "{rec}");
    app.set_default(Reply::status(200));
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = s.post_stripe_event(&format!("evt_cap{i}")).await;
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
