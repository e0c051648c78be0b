//! The audit trail: duplicates stored once, every acknowledged event stored exactly once under
//! concurrent load, restarts keep events and stats (and a refusal just before the stop), the
//! rejection log stays bounded, a failing store answers 503 (never a 2xx for an event not
//! stored), a damaged or locked database is a clear error at open, a damaged body is reported,
//! not served, and body-log segments go with their last event.

use serde_json::{json, Value};
use stagehook::store::{NewEvent, Source, Store, StoreOptions};
use stagehook::{App, Clock};

use crate::support::{config, start, stripe_event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_stored_once_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let first = s.stripe(&stripe_event("evt_dup")).await.json();
    assert!(first.get("duplicate").is_none(), "{first}");
    let again = s.stripe(&stripe_event("evt_dup")).await;
    assert_eq!(again.status, 200);
    let again = again.json();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"], "a duplicate answers with the first copy's id");

    // Concurrent copies of one new event: exactly one is stored.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            crate::support::post_stripe(addr, &stripe_event("evt_race"), &[]).await.json()
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut fresh = 0;
    for t in tasks {
        let v = t.await.unwrap();
        ids.insert(v["id"].as_str().unwrap().to_string());
        if v.get("duplicate").is_none() {
            fresh += 1;
        }
    }
    assert_eq!((ids.len(), fresh), (1, 1));

    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["total_events"], 2, "{stats}");
    assert_eq!(stats["duplicates"], 20, "{stats}");
    assert_eq!(stats["by_provider"]["stripe"]["duplicates"], 20, "{stats}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_event_and_the_stats() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let r = s.stripe(&stripe_event(&format!("evt_keep_{i}"))).await;
        assert_eq!(r.status, 200);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    s.stripe(&stripe_event("evt_keep_0")).await;
    s.post("/staging/webhooks/stripe", &[("content-type", "application/json")], b"{}").await;
    // Refusals are counted asynchronously: wait until the count shows (not a flush), so that
    // only the shutdown itself makes it durable.
    let before = crate::support::until("the refusal to be counted", || async {
        let st = s.get("/staging/webhooks/stats").await.json();
        (st["rejections"].as_object().is_some_and(|r| !r.is_empty())).then_some(st)
    })
    .await;
    s.stop().await;

    let s = start(config(dir.path())).await;
    let after = s.get("/staging/webhooks/stats").await.json();
    for key in
        ["total_events", "by_status", "by_provider", "duplicates", "rejections", "processing_ms", "events_last_minute"]
    {
        assert_eq!(after[key], before[key], "{key}: {before} vs {after}");
    }
    assert_eq!(after["total_events"], 25);
    for (i, id) in ids.iter().enumerate() {
        let e = s.get(&format!("/staging/webhooks/events/{id}")).await;
        assert_eq!(e.status, 200);
        let e = e.json();
        assert_eq!(e["event_id"], format!("evt_keep_{i}"));
        assert_eq!(e["payload"], stripe_event(&format!("evt_keep_{i}")), "the raw body, unchanged");
        assert_eq!(e["status"], "processed", "no targets: processed at once");
        assert_eq!(e["signature_verified"], true);
        assert_eq!(e["event_type"], "payment_intent.succeeded");
        let sig = e["headers"].as_array().unwrap().iter().find(|h| h[0] == "stripe-signature").unwrap();
        assert!(sig[1].as_str().unwrap().contains("…(redacted, "), "signature values are shortened: {sig}");
    }
    // Still a duplicate after the restart.
    assert_eq!(s.stripe(&stripe_event("evt_keep_3")).await.json()["duplicate"], true);
    assert_eq!(s.get("/staging/webhooks/events/01ARZ3NDEKTSV4RRFFQ69G5FAV").await.code(), "not_found");
    assert_eq!(s.get("/staging/webhooks/events/not-an-id").await.code(), "not_found");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rejection_log_is_bounded_and_counts_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.store.rejection_log_size = 5;
    let s = start(c).await;
    let big_bad_body = format!("{{\"pad\":\"{}\"}}", "z".repeat(100_000));
    for i in 0..8 {
        let body = if i == 7 { big_bad_body.clone() } else { format!("{{\"n\":{i}}}") };
        let r = s
            .post(
                "/staging/webhooks/stripe",
                &[("content-type", "application/json"), ("stripe-signature", "t=1,v1=abc")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(r.code(), "invalid_signature");
    }
    // Refusals are counted asynchronously; a flush makes them visible.
    s.store.flush().await.unwrap();
    let log = s.get("/staging/webhooks/rejections?limit=100").await.json();
    let entries = log["rejections"].as_array().unwrap();
    assert_eq!(entries.len(), 5, "{log}");
    assert_eq!(entries[0]["body_len"], big_bad_body.len(), "newest first");
    assert!(entries[0]["body_prefix"].as_str().unwrap().len() <= 2048, "bodies are truncated");
    assert_eq!(entries[4]["body_prefix"], "{\"n\":3}");
    assert_eq!(entries[0]["source_ip"], "127.0.0.1");
    assert_eq!(s.get("/staging/webhooks/stats").await.json()["rejections"]["invalid_signature"], 8);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_answers_503_and_transient_failures_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    // Two failed flushes: the writer's retries absorb them.
    s.store.inject_flush_failures(2);
    let r = s.stripe(&stripe_event("evt_retry")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.store.find_by_event_id("stripe", "evt_retry").unwrap().is_some());

    // Every attempt fails (one plus three retries): the event is not known to be on disk, so
    // no 2xx.
    s.store.inject_flush_failures(4);
    let r = s.stripe(&stripe_event("evt_unflushed")).await;
    assert_eq!((r.status, r.code().as_str()), (503, "storage_unavailable"), "{}", r.text());
    assert!(r.header("retry-after").is_some());

    // The refused group left no trace: the provider's retry is stored as the first copy, once.
    assert!(s.store.find_by_event_id("stripe", "evt_unflushed").unwrap().is_none());
    let r = s.stripe(&stripe_event("evt_unflushed")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(r.json()["duplicate"], true, "{}", r.text());
    let stored = s.store.find_by_event_id("stripe", "evt_unflushed").unwrap().unwrap();
    assert_eq!(r.json()["id"], stored.to_string());
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["total_events"], 2, "{stats}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_locked_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let s = start(c.clone()).await;
    s.stripe(&stripe_event("evt_x")).await;
    // While it runs, a second instance on the same folder is refused with a reason.
    let second = App::open(c.clone(), Clock::system());
    let msg = second.err().expect("second open must fail").to_string();
    assert!(msg.contains("in use") || msg.contains("lock"), "{msg}");
    s.stop().await;

    // Overwrite every file of the database with garbage.
    let data = c.server.data_dir.clone();
    for entry in walk(&data) {
        std::fs::write(&entry, b"\x00\xffgarbage, not a sled database\xff\x00").unwrap();
    }
    let msg = App::open(c, Clock::system()).err().expect("a damaged database must not open").to_string();
    assert!(msg.contains(&data.display().to_string()), "names the folder: {msg}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Bodies live in segment files beside the database; a segment goes once retention (or a delete)
/// has removed every event whose body it holds, and never before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_segments_go_with_their_last_event() {
    use stagehook::store::{NewEvent, Store, StoreOptions};

    let dir = tempfile::tempdir().unwrap();
    // Segments of 2500 bytes hold two frames of a 1000-byte body and its writes (each frame
    // between 1250 and 2490 bytes long): the second fills the segment.
    let options = StoreOptions {
        cache_bytes: 8 << 20,
        rejection_log_size: 10,
        log_segment_bytes: 2500,
        tree_flush_every_ms: Some(stagehook::store::TREE_FLUSH_EVERY_MS),
    };
    let store = Store::open(dir.path(), options, Clock::system()).unwrap();
    let body = |i: usize| format!("{i:04}{}", "x".repeat(996)).into_bytes();
    let mut ids = Vec::new();
    for i in 0..10 {
        let e = NewEvent {
            provider: "stripe".into(),
            event_id: format!("evt_{i}"),
            event_type: "charge.succeeded".into(),
            received_at_ms: Clock::system().now_ms(),
            source_ip: "127.0.0.1".into(),
            headers: Default::default(),
            body: body(i).into(),
            processing_us: 1,
            targets: vec![],
            items: 1,
            parent: None,
            source: stagehook::store::Source::Webhook,
        };
        // One at a time, so each commit sees the segment it fills.
        ids.push(store.ingest(e).await.unwrap().id);
    }
    let segments = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("log"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(segments(), ["00000001.log", "00000002.log", "00000003.log", "00000004.log", "00000005.log"]);

    // The first five: the first two segments' bodies and one of the third's. Those two go; the
    // third stays; the delete's own frame starts a sixth, since the fifth is full.
    assert_eq!(store.delete(ids[..5].to_vec()).await.unwrap(), 5);
    assert_eq!(segments(), ["00000003.log", "00000004.log", "00000005.log", "00000006.log"]);
    for (i, id) in ids.iter().enumerate().skip(5) {
        assert_eq!(store.get_event(*id).unwrap().unwrap().1, body(i), "event {i} keeps its body");
    }
    assert!(store.get_event(ids[0]).unwrap().is_none());
    store.shutdown().await.unwrap();
    drop(store);

    // After a restart: bodies intact. The sixth, with no live body, went at open, and every
    // open appends to a segment of its own, the seventh.
    let store = Store::open(dir.path(), options, Clock::system()).unwrap();
    assert_eq!(segments(), ["00000003.log", "00000004.log", "00000005.log", "00000007.log"]);
    assert_eq!(store.get_event(ids[9]).unwrap().unwrap().1, body(9));
    // Emptying every segment: the one being appended to keeps its file, it is still written to.
    assert_eq!(store.delete(ids[5..].to_vec()).await.unwrap(), 5);
    assert_eq!(segments(), ["00000007.log"]);
    store.shutdown().await.unwrap();
}

/// A body that no longer reads back as it was stored (a segment edited or truncated) is never
/// served: the event's detail names the damage where the payload would be, a request that needs
/// the body is refused with its own code, and the event list and other events are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_body_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let s = start(c.clone()).await;
    let first = s.stripe(&stripe_event("evt_intact")).await.json();
    let second = s.stripe(&stripe_event("evt_damaged")).await.json();
    let segment = c.server.data_dir.join("log").join("00000001.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    // Inside the second body: a frame holds its bodies before its writes, which name the event too.
    let at = bytes.windows(11).position(|w| w == b"evt_damaged").unwrap() + 5;
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();

    let r = s.get(&format!("/staging/webhooks/events/{}", second["id"].as_str().unwrap())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.json();
    assert_eq!((e["payload"].clone(), e["payload_encoding"].clone()), (Value::Null, Value::Null), "{e}");
    assert!(e["damage"][0].as_str().unwrap().contains("checksum"), "{e}");
    assert_eq!(e["event_id"], "evt_damaged", "the record itself still reads: {e}");
    let r = s.get(&format!("/staging/webhooks/events/{}/curl", second["id"].as_str().unwrap())).await;
    assert_eq!((r.status, r.code()), (500, "storage_corrupt".to_string()), "{}", r.text());
    assert!(r.text().contains("checksum"), "{}", r.text());
    let r = s.get(&format!("/staging/webhooks/events/{}", first["id"].as_str().unwrap())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["damage"], serde_json::json!([]));
    let list = s.get("/staging/webhooks/events").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["events"].as_array().unwrap().len(), 2, "{}", list.text());
    s.stop().await;
}

/// Many connections at once, as in a provider's burst: every 2xx names an event that is stored
/// exactly once, with its body intact, and a copy sent again is answered with the first one's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrent_load_every_acknowledged_event_is_stored_exactly_once() {
    const TASKS: usize = 48;
    const PER_TASK: usize = 9;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.rate_limit_per_minute = 0; // one IP sends it all
    let s = start(c).await;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..PER_TASK {
                let body = stripe_event(&format!("evt_burst_{t}_{i}"));
                answers.push((body.clone(), crate::support::post_stripe(addr, &body, &[]).await));
            }
            // A provider's retry of the first, sent after its 2xx.
            let again = crate::support::post_stripe(addr, &answers[0].0, &[]).await;
            (answers, again)
        }));
    }
    let mut stored = std::collections::BTreeMap::new();
    for task in tasks {
        let (answers, again) = task.await.unwrap();
        let first_id = answers[0].1.json()["id"].as_str().unwrap().to_string();
        for (body, r) in answers {
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            assert!(v.get("duplicate").is_none(), "a new event is not a duplicate: {v}");
            let id = v["id"].as_str().unwrap().to_string();
            assert!(stored.insert(id, body).is_none(), "two events were given one id");
        }
        assert_eq!(again.status, 200);
        assert_eq!((again.json()["duplicate"].clone(), again.json()["id"].clone()), (true.into(), first_id.into()));
    }
    assert_eq!(stored.len(), TASKS * PER_TASK);
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["total_events"], TASKS * PER_TASK, "{stats}");
    assert_eq!(stats["duplicates"], TASKS, "{stats}");
    for (id, body) in &stored {
        let e = s.get(&format!("/staging/webhooks/events/{id}")).await;
        assert_eq!(e.status, 200, "{}", e.text());
        assert_eq!(e.json()["payload"], *body, "event {id}: the raw body, unchanged");
    }
    s.stop().await;
}

/// A refusal is counted off the request path; one sent just before the stop is still counted,
/// and in the rejection log, after the restart: the shutdown writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_just_before_the_stop_is_counted_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let r = s
        .post(
            "/staging/webhooks/stripe",
            &[("content-type", "application/json"), ("stripe-signature", "t=1,v1=abc")],
            b"{\"last\":true}",
        )
        .await;
    assert_eq!(r.code(), "invalid_signature");
    s.stop().await;

    let s = start(config(dir.path())).await;
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["rejections"]["invalid_signature"], 1, "{stats}");
    let log = s.get("/staging/webhooks/rejections").await.json();
    assert_eq!(log["rejections"][0]["body_prefix"], "{\"last\":true}", "{log}");
    s.stop().await;
}

/// A Stripe event as `stagehook backfill` records it: read from the API, never signed.
pub(crate) fn backfilled(event_id: &str, received_at_ms: i64) -> NewEvent {
    NewEvent {
        provider: "stripe".into(),
        event_id: event_id.into(),
        event_type: "charge.succeeded".into(),
        received_at_ms,
        source_ip: "api.stripe.com".into(),
        headers: vec![("content-type".into(), "application/json".into())].into(),
        body: stripe_event(event_id).into_bytes().into(),
        processing_us: 0,
        targets: vec![],
        items: 1,
        parent: None,
        source: Source::Backfill,
    }
}

/// A backfilled event is stored as one, never as verified, and counted per provider; the count
/// is exact after a restart, and a webhook event beside it stays a webhook's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfilled_event_keeps_its_source_and_count_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let webhook = s.stripe_id(&stripe_event("evt_hook")).await;
    let id = s.store.ingest(backfilled("evt_back", crate::support::now_s() * 1000)).await.unwrap().id.to_string();
    let again = s.store.ingest(backfilled("evt_back", crate::support::now_s() * 1000)).await.unwrap();
    assert!(again.duplicate, "a second backfill of the same event is a duplicate");
    s.stop().await;

    let s = start(config(dir.path())).await;
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!((stats["backfilled"].as_u64(), stats["total_events"].as_u64()), (Some(1), Some(2)), "{stats}");
    assert_eq!(stats["by_provider"]["stripe"]["backfilled"], 1, "{stats}");
    let e = s.get(&format!("/staging/webhooks/events/{id}")).await.json();
    assert_eq!((&e["source"], &e["signature_verified"]), (&json!("backfill"), &json!(false)), "{e}");
    let w = s.get(&format!("/staging/webhooks/events/{webhook}")).await.json();
    assert_eq!((&w["source"], &w["signature_verified"]), (&json!("webhook"), &json!(true)), "{w}");
    s.stop().await;
}

/// A heartbeat overwrites the last one and reads back after the store is closed and opened
/// again; a store that never had one says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_heartbeat_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        cache_bytes: 1 << 20,
        rejection_log_size: 100,
        log_segment_bytes: 1 << 20,
        tree_flush_every_ms: Some(stagehook::store::TREE_FLUSH_EVERY_MS),
    };
    let store = Store::open(dir.path(), options, Clock::system()).unwrap();
    assert_eq!(store.last_heartbeat().unwrap(), None);
    store.heartbeat(1_700_000_000_000).await.unwrap();
    store.heartbeat(1_700_000_005_000).await.unwrap();
    assert_eq!(store.last_heartbeat().unwrap(), Some(1_700_000_005_000));
    store.shutdown().await.unwrap();
    drop(store);

    let store = Store::open(dir.path(), options, Clock::system()).unwrap();
    assert_eq!(store.last_heartbeat().unwrap(), Some(1_700_000_005_000));
    store.shutdown().await.unwrap();
    drop(store);
    let report = stagehook::store::verify::verify(dir.path()).unwrap();
    assert!(report.findings.is_empty(), "the heartbeat is a known key: {:?}", report.findings);
}

/// Serves `app` on a free port until the sender is used or dropped.
fn serve(app: App) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    (stop, serving)
}

/// A serving app beats while it runs and once more as it stops; the next app opened on its
/// data folder knows that last beat as `down_since_ms`, and the first one ever knows none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_app_knows_when_the_previous_run_was_last_alive() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::frozen(1_700_000_000_000);
    let first = App::open(config(dir.path()), clock.clone()).unwrap();
    assert_eq!(first.down_since_ms(), None);
    let store = first.store().clone();
    let (stop, serving) = serve(first);
    crate::support::until("the first heartbeat", || async {
        (store.last_heartbeat().unwrap() == Some(1_700_000_000_000)).then_some(())
    })
    .await;
    clock.advance(3_000);
    let _ = stop.send(());
    serving.await.unwrap();
    drop(store);

    let second = App::open(config(dir.path()), Clock::frozen(1_700_000_600_000)).unwrap();
    assert_eq!(second.down_since_ms(), Some(1_700_000_003_000), "the first run's stop");
    let (stop, serving) = serve(second);
    let _ = stop.send(());
    serving.await.unwrap();
    let third = App::open(config(dir.path()), Clock::frozen(1_700_000_900_000)).unwrap();
    assert_eq!(third.down_since_ms(), Some(1_700_000_600_000), "the second run's, not the first's");
    third.store().shutdown().await.unwrap();
}
