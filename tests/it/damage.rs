//! Damage is contained and visible. Records garbled while the server is stopped
//! (`Store::inject_damage`, or a body byte flipped on disk): a body that fails its checksum, a
//! job record or an event record that does not decode each make that one delivery a dead letter
//! (`storage_corrupt`) while the rest of the provider's queue is delivered, and listings still
//! answer; `store verify` through the real binary exits 0 on a sound store, 1 naming each damaged
//! item and 2 while the folder is in use; a rejection log entry that does not decode is listed in
//! its place (in the API and the dashboard's panel); and the health check says `degraded` after
//! injected flush failures until a commit succeeds again.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use stagehook::config::{Config, HumanDuration, Strategy};
use stagehook::store::{InjectDamage, Store, StoreOptions};
use stagehook::Clock;
use ulid::Ulid;

use crate::fake_app::{FakeApp, Reply};
use crate::support::{self, config, run_binary, start, start_with_clock, stripe_event, until, TestServer};
use crate::webdriver::Browser;

const HOUR_MS: i64 = 3600 * 1000;

async fn event(s: &TestServer, id: &str) -> Value {
    let r = s.get(&format!("/staging/webhooks/events/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Stripe events delivered to `url`; a failed attempt is retried only an hour later, so after
/// one round of 503s the jobs wait in the queue for the test to damage them.
fn delivering(dir: &Path, url: &str) -> Config {
    let mut c = config(dir);
    c.providers.get_mut("stripe").unwrap().forward_to = vec![url.to_string()];
    c.retry.strategy = Strategy::Fixed;
    c.retry.max_attempts = 5;
    c.retry.base_delay = HumanDuration(Duration::from_secs(3600));
    c.retry.max_delay = HumanDuration(Duration::from_secs(2 * 3600));
    c.retry.jitter = 0.0;
    c.circuit_breaker.failure_threshold = 100;
    c
}

/// Records one event per name, lets each fail its first attempt (503), and stops the server with
/// every job still queued. Returns the events' ids, in the order of `names`.
async fn queued(c: &Config, clock: &Clock, app: &FakeApp, names: &[&str]) -> Vec<String> {
    app.set_default(Reply::status(503));
    let s = start_with_clock(c.clone(), clock.clone()).await;
    let mut ids = Vec::new();
    for name in names {
        let r = s.stripe(&stripe_event(name)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    // A refusal too, so the store holds every kind of record.
    let bad = s
        .post(
            "/staging/webhooks/stripe",
            &[("content-type", "application/json"), ("stripe-signature", "t=1,v1=00")],
            b"{}",
        )
        .await;
    assert_eq!(bad.code(), "invalid_signature");
    for id in &ids {
        until(&format!("{id} to wait for its retry"), || async {
            let e = event(&s, id).await;
            (e["status"] == "retrying").then_some(())
        })
        .await;
    }
    s.store.flush().await.unwrap();
    s.stop().await;
    ids
}

/// Flips one byte of the stored body that holds `marker`, in the log on disk: its first
/// appearance, since a frame holds its bodies before its writes (the record names the event too).
fn flip_body_byte(data_dir: &Path, marker: &str) {
    let mut segments: Vec<_> = std::fs::read_dir(data_dir.join("log")).unwrap().map(|e| e.unwrap().path()).collect();
    segments.sort();
    for segment in segments {
        let mut bytes = std::fs::read(&segment).unwrap();
        if let Some(at) = bytes.windows(marker.len()).position(|w| w == marker.as_bytes()) {
            bytes[at] ^= 0x20;
            std::fs::write(&segment, &bytes).unwrap();
            return;
        }
    }
    panic!("no segment holds {marker}");
}

/// Damages records of a stopped store, as a faulty write would.
async fn damage(data_dir: &Path, id: &str, what: InjectDamage) {
    let options = StoreOptions {
        cache_bytes: 1 << 20,
        rejection_log_size: 100,
        log_segment_bytes: 1 << 20,
        tree_flush_every_ms: Some(stagehook::store::TREE_FLUSH_EVERY_MS),
    };
    let store = Store::open(data_dir, options, Clock::system()).unwrap();
    assert_eq!(store.inject_damage(Ulid::from_string(id).unwrap(), what).unwrap(), 1);
    store.shutdown().await.unwrap();
}

/// Requests the app got whose body holds `marker`.
fn received_with(app: &FakeApp, marker: &str) -> usize {
    app.received().iter().filter(|r| String::from_utf8_lossy(&r.body).contains(marker)).count()
}

/// Waits until nothing is queued or being delivered.
async fn drained(s: &TestServer) -> Value {
    until("the queue to drain", || async {
        let rec = s.get("/staging/webhooks/recovery/stats").await.json();
        (rec["queue_depth"] == 0 && rec["in_flight"] == 0).then_some(rec)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_body_or_job_record_is_a_dead_letter_and_the_rest_is_delivered() {
    let mut app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = delivering(dir.path(), &app.url("/hook"));
    let clock = Clock::system();
    let names = ["evt_first_ok", "evt_bad_body", "evt_bad_job", "evt_last_ok"];
    let ids = queued(&c, &clock, &app, &names).await;

    // While it is stopped: one body byte flipped in its segment file, one job record garbled.
    flip_body_byte(&c.server.data_dir, "evt_bad_body");
    damage(&c.server.data_dir, &ids[2], InjectDamage::JobRecords).await;

    // An hour later, with the app answering, every job falls due.
    app.set_default(Reply::status(200));
    clock.advance(2 * HOUR_MS);
    let s = start_with_clock(c.clone(), clock.clone()).await;
    let rec = drained(&s).await;
    for i in [0, 3] {
        let e = event(&s, &ids[i]).await;
        assert_eq!(e["status"], "processed", "{e}");
        assert_eq!(received_with(&app, names[i]), 2, "the 503, then the delivery");
    }
    for (i, what) in [(1, "fails its checksum"), (2, "does not decode")] {
        let e = event(&s, &ids[i]).await;
        assert_eq!(e["status"], "failed", "a dead letter: {e}");
        assert_eq!(e["delivery_pending"], false, "{e}");
        let last_error = e["last_error"].as_str().unwrap();
        assert!(last_error.starts_with("storage_corrupt: ") && last_error.contains(what), "{last_error}");
        let last = e["history"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["outcome"].as_str(), last["status"].clone()), (Some("failed"), Value::Null), "{e}");
        assert_eq!(last["error"].as_str(), Some(last_error));
        assert_eq!(received_with(&app, names[i]), 1, "only the first 503: nothing is sent after the damage");
    }
    // The body is reported where the payload would be, never served.
    let e = event(&s, &ids[1]).await;
    assert_eq!(e["payload"], Value::Null);
    assert!(e["damage"][0].as_str().unwrap().contains("checksum"), "{e}");

    let failed = s.get("/staging/webhooks/events?status=failed").await.json();
    let listed: Vec<&str> = failed["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()], "{failed}");
    assert_eq!(rec["failure_reasons"]["storage_corrupt"], 2, "{rec}");
    assert_eq!(rec["dead_letters"], 2, "{rec}");

    // Settled once: later passes of the engine find nothing to retry. A replay queued after the
    // clock moved on is a job the engine must take in a pass that reads the whole queue up to
    // the new time, so once it is delivered and the queue is drained again, such a pass ran.
    clock.advance(2 * HOUR_MS);
    let r = s
        .post(&format!("/staging/webhooks/events/{}/replay", ids[0]), &[("content-type", "application/json")], b"")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    until("the replay to be delivered", || async { (received_with(&app, names[0]) == 3).then_some(()) }).await;
    let rec = drained(&s).await;
    assert_eq!((rec["failure_reasons"]["storage_corrupt"].clone(), rec["dead_letters"].clone()), (2.into(), 2.into()));
    s.stop().await;
    app.go_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_event_record_is_a_dead_letter_and_listings_still_answer() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = delivering(dir.path(), &app.url("/hook"));
    let clock = Clock::system();
    let names = ["evt_before", "evt_bad_record", "evt_after"];
    let ids = queued(&c, &clock, &app, &names).await;
    damage(&c.server.data_dir, &ids[1], InjectDamage::EventRecord).await;

    app.set_default(Reply::status(200));
    clock.advance(2 * HOUR_MS);
    let s = start_with_clock(c.clone(), clock.clone()).await;
    let rec = drained(&s).await;
    assert_eq!(rec["failure_reasons"]["storage_corrupt"], 1, "{rec}");
    for i in [0, 2] {
        assert_eq!(event(&s, &ids[i]).await["status"], "processed");
    }
    assert_eq!(received_with(&app, "evt_bad_record"), 1, "only the first 503");

    // The list answers, with the bad record in its place, as a dead letter that says why.
    let all = s.get("/staging/webhooks/events").await;
    assert_eq!(all.status, 200, "{}", all.text());
    let all = all.json();
    let listed: Vec<&str> = all["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()], "{all}");
    let bad = &all["events"][1];
    assert_eq!(bad["status"], "failed");
    assert!(bad["last_error"].as_str().unwrap().starts_with("storage_corrupt: "), "{bad}");
    assert!(bad["damage"][0].as_str().unwrap().contains("does not decode"), "{bad}");
    let failed = s.get("/staging/webhooks/events?status=failed").await.json();
    assert_eq!(failed["events"].as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed["events"][0]["id"], ids[1].as_str());
    // Its provider is unknown, so a filter on one leaves it out.
    let stripe = s.get("/staging/webhooks/events?provider=stripe").await.json();
    assert_eq!(stripe["events"].as_array().unwrap().len(), 2, "{stripe}");
    let found = s.get(&format!("/staging/webhooks/events?q={}", ids[1])).await.json();
    assert_eq!(found["events"][0]["status"], "failed", "{found}");

    // The detail: what is left of it, its history with the dead letter, and the damage.
    let e = event(&s, &ids[1]).await;
    assert_eq!(e["status"], "failed");
    assert_eq!(e["delivery_pending"], false);
    let history = e["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "the 503 and the dead letter: {e}");
    assert!(history[1]["error"].as_str().unwrap().starts_with("storage_corrupt: "), "{e}");
    // Replaying it alone needs the record: refused, naming the damage.
    let r = s
        .post(&format!("/staging/webhooks/events/{}/replay", ids[1]), &[("content-type", "application/json")], b"")
        .await;
    assert_eq!((r.status, r.code().as_str()), (500, "storage_corrupt"), "{}", r.text());
    // Bulk replay passes over it: there is no provider to send it for.
    let r = s
        .post("/staging/webhooks/replay", &[("content-type", "application/json")], br#"{"status":"failed"}"#)
        .await
        .json();
    assert_eq!((r["replayed"].clone(), r["skipped_damaged"].clone()), (0.into(), 1.into()), "{r}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_verify_names_damaged_events_and_passes_a_sound_store() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = delivering(dir.path(), &app.url("/hook"));
    let data = c.server.data_dir.clone();
    let data_arg = data.to_str().unwrap();
    let ids = queued(&c, &Clock::system(), &app, &["evt_v_ok", "evt_v_body", "evt_v_job", "evt_v_record"]).await;

    // Events, bodies, queued jobs, attempts, a rejection, counters and dedup keys, all sound.
    let (code, out) = run_binary(&["store", "verify", "--data-dir", data_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checked 4 events, 4 bodies, 4 delivery jobs, 4 attempts, 1 rejections"), "{out}");
    assert!(out.contains("all sound"), "{out}");

    flip_body_byte(&data, "evt_v_body");
    damage(&data, &ids[2], InjectDamage::JobRecords).await;
    damage(&data, &ids[3], InjectDamage::EventRecord).await;
    let (code, out) = run_binary(&["store", "verify", "--data-dir", data_arg]);
    assert_eq!(code, 1, "{out}");
    let damaged: Vec<&str> = out.lines().filter(|l| l.starts_with("damaged: ")).collect();
    assert_eq!(damaged.len(), 3, "one line per damaged item: {out}");
    assert!(damaged.iter().any(|l| l.contains(&ids[1]) && l.contains("body") && l.contains("checksum")), "{out}");
    assert!(damaged.iter().any(|l| l.contains(&ids[2]) && l.contains("delivery job")), "{out}");
    assert!(damaged.iter().any(|l| l.contains(&ids[3]) && l.contains("event record")), "{out}");
    assert!(!out.contains(&ids[0]), "the sound event is not named: {out}");
    assert!(out.contains("3 damaged items"), "{out}");

    // While a stagehook runs on the folder, verify refuses to read under it.
    let s = start(c.clone()).await;
    let (code, out) = run_binary(&["store", "verify", "--data-dir", data_arg]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("in use by a running stagehook"), "{out}");
    s.stop().await;

    // Files sled itself cannot read are damage too.
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, b"\x00\xffgarbage, not a sled database\xff\x00").unwrap();
        }
    }
    let (code, out) = run_binary(&["store", "verify", "--data-dir", data_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("damaged: database: sled cannot open it"), "{out}");

    // A folder without a database is not checked, and not created either.
    let empty = dir.path().join("nothing-here");
    let (code, out) = run_binary(&["store", "verify", "--data-dir", empty.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no stagehook database"), "{out}");
    assert!(!empty.exists());
}

/// Three refusals in the rejection log, then the middle one's record garbled while the server
/// is stopped. Returns the entries' ids, newest first, as `/rejections` lists them.
async fn damaged_rejection_log(c: &Config) -> Vec<String> {
    let s = start(c.clone()).await;
    for _ in 0..3 {
        assert_eq!(support::post_badly_signed(s.addr).await.code(), "invalid_signature");
    }
    let ids = until("three refusals in the log", || async {
        let log = s.get("/staging/webhooks/rejections").await.json();
        let ids: Vec<String> =
            log["rejections"].as_array()?.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        (ids.len() == 3).then_some(ids)
    })
    .await;
    s.store.flush().await.unwrap();
    s.stop().await;
    let options = StoreOptions {
        cache_bytes: 1 << 20,
        rejection_log_size: 100,
        log_segment_bytes: 1 << 20,
        tree_flush_every_ms: Some(stagehook::store::TREE_FLUSH_EVERY_MS),
    };
    let store = Store::open(&c.server.data_dir, options, Clock::system()).unwrap();
    assert_eq!(store.inject_damage(Ulid::from_string(&ids[1]).unwrap(), InjectDamage::RejectionRecord).unwrap(), 1);
    store.shutdown().await.unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_rejection_is_listed_in_its_place_and_store_verify_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let ids = damaged_rejection_log(&c).await;

    let s = start(c.clone()).await;
    let r = s.get("/staging/webhooks/rejections").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let log = r.json();
    let listed: Vec<&str> = log["rejections"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ids, "every entry, in its place: {log}");
    for i in [0, 2] {
        let sound = &log["rejections"][i];
        assert_eq!(
            (sound["code"].as_str(), sound["damage"].clone()),
            (Some("invalid_signature"), Value::Array(vec![]))
        );
    }
    let bad = &log["rejections"][1];
    assert_eq!((bad["code"].clone(), bad["provider"].clone()), (Value::Null, Value::Null), "{bad}");
    assert!(bad["message"].as_str().unwrap().starts_with("storage_corrupt: "), "{bad}");
    let damage = bad["damage"][0].as_str().unwrap();
    assert!(damage.contains(&ids[1]) && damage.contains("does not decode"), "{bad}");
    let id = Ulid::from_string(&ids[1]).unwrap();
    assert_eq!(bad["at_ms"], id.timestamp_ms(), "when it was written, from its id: {bad}");
    // A shorter page counts it like any entry.
    let two = s.get("/staging/webhooks/rejections?limit=2").await.json();
    assert_eq!(two["rejections"].as_array().unwrap().len(), 2, "{two}");
    assert_eq!(two["rejections"][1]["id"], ids[1].as_str());
    s.stop().await;

    let data = c.server.data_dir.to_str().unwrap().to_string();
    let (code, out) =
        tokio::task::spawn_blocking(move || run_binary(&["store", "verify", "--data-dir", &data])).await.unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("3 rejections"), "{out}");
    let damaged: Vec<&str> = out.lines().filter(|l| l.starts_with("damaged: ")).collect();
    assert_eq!(damaged.len(), 1, "{out}");
    assert!(damaged[0].contains("rejection record") && damaged[0].contains(&ids[1]), "{out}");
    assert!(!out.contains(&ids[0]) && !out.contains(&ids[2]), "only the damaged entry is named: {out}");
}

/// The dashboard's rejection panel (which is read together with the configuration report) shows
/// the sound entries and the damaged one in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_a_damaged_rejection_in_its_place() {
    let scenario = async {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let ids = damaged_rejection_log(&c).await;
        let s = start(c).await;
        let browser = Browser::start().await;
        browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
        let rows = browser
            .wait("the rejection log", || async {
                let rows = browser
                    .eval("return [...document.querySelectorAll('#rejections tbody tr')].map(r => [r.className, r.textContent]);", serde_json::json!([]))
                    .await;
                let rows: Vec<(String, String)> = serde_json::from_value(rows).unwrap_or_default();
                (rows.len() == 3).then_some(rows)
            })
            .await;
        assert!(rows[0].1.contains("invalid_signature") && rows[2].1.contains("invalid_signature"), "{rows:?}");
        assert_eq!(rows[1].0, "damaged", "{rows:?}");
        assert!(rows[1].1.contains("storage_corrupt") && rows[1].1.contains(&ids[1]), "{rows:?}");
        assert!(browser.count("#config-report li").await > 0, "the configuration report beside it still shows");
        browser.quit().await;
        s.stop().await;
    };
    tokio::time::timeout(Duration::from_secs(240), Box::pin(scenario)).await.expect("the browser scenario finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_degraded_after_a_failed_commit_until_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let health = s.get("/staging/webhooks/test").await.json();
    assert_eq!((health["status"].as_str(), health["store"]["writable"].as_bool()), (Some("ok"), Some(true)));
    assert_eq!(health["reason"], Value::Null);

    // Every flush of one commit fails, as on a full disk: the event gets a 503, and so does
    // the health check's verdict.
    s.store.inject_flush_failures(4);
    let r = s.stripe(&stripe_event("evt_disk_full")).await;
    assert_eq!((r.status, r.code().as_str()), (503, "storage_unavailable"), "{}", r.text());
    let health = s.get("/staging/webhooks/test").await.json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store"]["writable"], false, "{health}");
    assert!(health["reason"].as_str().unwrap().contains("injected flush failure"), "{health}");
    assert!(health["store"]["last_error"].as_str().unwrap().contains("injected flush failure"), "{health}");
    assert!(health["store"]["last_error_at_ms"].as_i64().is_some(), "{health}");
    // Refusals alone are not written durably, so they prove nothing: still degraded.
    support::post_badly_signed(s.addr).await;
    // Once its batch is in (the refusal is counted), the store is still degraded.
    until("the refusal to be counted", || async {
        let stats = s.get("/staging/webhooks/stats").await.json();
        (stats["rejections"]["invalid_signature"] == 1).then_some(())
    })
    .await;
    assert_eq!(s.get("/staging/webhooks/test").await.json()["status"], "degraded");

    // The provider's retry commits: the store is healthy again.
    let r = s.stripe(&stripe_event("evt_disk_full")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let health = s.get("/staging/webhooks/test").await.json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["store"]["writable"], true);
    assert_eq!((health["reason"].clone(), health["store"]["last_error"].clone()), (Value::Null, Value::Null));
    s.stop().await;
}
