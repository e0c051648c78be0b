//! Crash consistency, shown: what a power cut can leave of the data folder, and what stagehook
//! makes of it when it starts again.
//!
//! A power cut leaves each file as the disk last holds it: everything synced before the cut, and
//! any part of what was written after it. A group is answered once its frame is synced in the log
//! and applied to sled's tree; sled writes its own files later, on its own schedule, and the
//! next start applies again every whole frame past the watermark sled holds (`store/log/`).
//!
//! - Snapshots of a running ingest. A copy made file by file while the server writes need not be a
//!   state a power cut can leave (sled's own file, read while sled writes it, may mix pages of
//!   different moments; such copies passed here in a few dozen tries, which proves nothing). The
//!   copy is therefore taken while the whole server process is stopped (`SIGSTOP`, then every
//!   thread seen stopped in `/proc`): each file is then exactly what the kernel holds at one
//!   instant, synced or not, which is the cut where every write reached the disk, and a 2xx read
//!   before the stop is known to be for a synced group. Most copies catch sled behind the log,
//!   so the start after them recovers groups; the test asserts some did.
//! - The log's last group torn. sled told never to write on its own, so the log is all that
//!   holds the groups; the last frame cut at every byte boundary, zeroed from a random point (pages
//!   a disk never wrote) and followed by garbage; an earlier frame torn.
//! - Bodies torn under a tree that names them. A clean stop leaves sled complete; then the log's
//!   bytes are cut or zeroed, as a disk that lost a record's pages leaves them.
//!
//! What they check holds whatever the store's files are: every event acknowledged before the cut
//! reads back byte for byte, nothing is there that was never sent, a body that does not read back
//! is damage (`storage_corrupt`) and never another body, and `store verify` names exactly what is
//! wrong (no dedup key or queued job without its event). The first test knows nothing of the
//! files but that the data folder holds them all; the others find groups and bodies by their
//! bytes in the log's segment, which is what a change of the log's layout changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use stagehook::store::verify::{verify, Item, Report};
use stagehook::store::{
    EventFilter, NewEvent, Source, Store, StoreError, StoreOptions, StoredEvent, DEFAULT_SEGMENT_BYTES,
};
use stagehook::Clock;
use ulid::Ulid;

use crate::support::{self, request, run_binary, spawn_binary, stripe_event, write_config};

/// Copies every file of `from` into `to`, recursively, byte for byte as it is now.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::write(&target, std::fs::read(entry.path()).unwrap()).unwrap();
        }
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        cache_bytes: 4 << 20,
        rejection_log_size: 100,
        log_segment_bytes: DEFAULT_SEGMENT_BYTES,
        tree_flush_every_ms: Some(stagehook::store::TREE_FLUSH_EVERY_MS),
    }
}

/// Every event stored in the folder's store, oldest first.
fn all_events(store: &Store) -> Vec<Ulid> {
    let (mut out, mut after) = (Vec::new(), None);
    loop {
        let page = store.events_after(&EventFilter::default(), after, 500, 100_000).unwrap();
        out.extend(page.events.iter().map(|(id, _)| *id));
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => return out,
        }
    }
}

fn sound(data: &Path) -> Report {
    let report = verify(data).unwrap();
    assert!(report.sound(), "store verify finds damage in {}: {:#?}", data.display(), report.findings);
    report
}

/// Waits until every thread of `pid` is stopped: `kill` returns before the signal has reached
/// them all.
#[cfg(target_os = "linux")]
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let all = tasks.filter_map(Result::ok).all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // The state follows the command name's closing parenthesis.
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            matches!(state, Some('T' | 't'))
        });
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "stagehook {pid} did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One copy of the folder, and what the client knew when it was taken.
struct Snapshot {
    dir: tempfile::TempDir,
    /// When the server was stopped: a 2xx that arrived before this was for a flushed event.
    cut: Instant,
    /// Every event sent before the copy was finished (body by provider's id).
    sent: BTreeMap<String, String>,
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_mid_ingest_keeps_every_acked_event() {
    let dir = tempfile::tempdir().unwrap();
    // A target nobody listens on: every event queues a job, and delivery writes attempts and
    // reschedules jobs while events arrive, so the cuts fall among every kind of write.
    let config = write_config(dir.path(), "forward_to = [\"http://127.0.0.1:9/hook\"]\n");
    let mut server = spawn_binary(&["serve", "--config", config.to_str().unwrap()], &[("RUST_LOG", "warn")]).await;
    let (addr, pid) = (server.addr, server.child.id().unwrap());
    let sent: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let acked: Arc<Mutex<Vec<(String, Ulid, Instant)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));

    let mut workers = Vec::new();
    for w in 0..4 {
        let (sent, acked, done) = (sent.clone(), acked.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::SeqCst) {
                let event_id = format!("evt_cut_{w}_{i}");
                i += 1;
                let body = stripe_event(&event_id);
                // Known as sent before a byte of it leaves: a copy can only hold what is here.
                sent.lock().insert(event_id.clone(), body.clone());
                let raw = support::stripe_request(&body, &[]);
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else { return };
                match support::exchange(stream, &raw).await {
                    Ok(r) if r.status == 200 => {
                        let id = Ulid::from_string(r.json()["id"].as_str().unwrap()).unwrap();
                        acked.lock().push((event_id, id, Instant::now()));
                    }
                    Ok(r) => panic!("unexpected {}: {}", r.status, r.text()),
                    Err(_) => return,
                }
            }
        }));
    }

    let mut snapshots = Vec::new();
    for k in [10, 30, 60, 100, 140, 180, 220, 260] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().len() < k {
            assert!(Instant::now() < deadline, "only {} acknowledged", acked.lock().len());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // An arbitrary point past the k-th acknowledgement, mid-commit as likely as not.
        tokio::time::sleep(Duration::from_micros(fastrand::u64(0..3000))).await;
        let cut = Instant::now();
        server.signal("STOP");
        wait_stopped(pid);
        let copy = tempfile::tempdir().unwrap();
        copy_folder(&dir.path().join("data"), &copy.path().join("data"));
        let sent = sent.lock().clone();
        server.signal("CONT");
        snapshots.push(Snapshot { dir: copy, cut, sent });
    }
    done.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    server.signal("TERM");
    assert_eq!(server.wait().await.code(), Some(0));
    let acked = acked.lock().clone();

    let mut recovered = 0;
    for snap in &snapshots {
        let data = snap.dir.path().join("data");
        let before: Vec<_> = acked.iter().filter(|(_, _, at)| *at < snap.cut).collect();
        // No dedup key, job or attempt without its event; every body named reads back. verify
        // applies the log's tail the tree lacks first, as a start would.
        recovered += sound(&data).recovered;

        let store = Store::open(&data, options(), Clock::system()).unwrap();
        recovered += store.recovered().groups;
        for (event_id, id, _) in &before {
            match store.read_event(*id).unwrap() {
                Some(StoredEvent::Whole(e, body)) => {
                    assert_eq!(&e.event_id, event_id);
                    assert_eq!(body, snap.sent[event_id].as_bytes(), "{event_id} reads back another body");
                }
                other => panic!("{event_id} was acknowledged as {id} before the cut, and reads {other:?}"),
            }
            assert_eq!(store.find_by_event_id("stripe", event_id).unwrap(), Some(*id), "{event_id}'s dedup key");
        }
        // Whatever else made it (acknowledged after the cut, or never) was sent, and is whole.
        let stored = all_events(&store);
        assert!(stored.len() >= before.len());
        for id in stored {
            let Some(StoredEvent::Whole(e, body)) = store.read_event(id).unwrap() else {
                panic!("{id} is stored but does not read back whole");
            };
            let sent = snap.sent.get(&e.event_id).unwrap_or_else(|| panic!("{} was never sent", e.event_id));
            assert_eq!(body, sent.as_bytes(), "{} reads back another body", e.event_id);
        }
        store.shutdown().await.unwrap();
        drop(store);
        let report = sound(&data);
        assert!(report.checked.events >= before.len() as u64, "{:?}", report.checked);
    }
    assert!(recovered > 0, "no copy caught the tree behind the log: recovery was never exercised");

    // The last copy through the command a person runs, and as a server that takes new events.
    let last = snapshots.last().unwrap().dir.path();
    let (code, out) = run_binary(&["store", "verify", "--data-dir", last.join("data").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("all sound"), "{out}");
    let s = support::start(support::config(last)).await;
    let id = s.post_stripe_event("evt_after_the_cut").await;
    let e = s.get(&format!("/staging/webhooks/events/{id}")).await.json();
    assert_eq!(e["payload"], stripe_event("evt_after_the_cut").as_str(), "{e}");
    s.stop().await;
    sound(&last.join("data"));
}

/// A small Stripe event, so that cutting its every byte stays quick.
fn small_event(n: usize) -> String {
    format!(r#"{{"id":"evt_torn_{n}","object":"event","type":"a.b","created":1,"data":{{"object":{{}}}}}}"#)
}

/// The folder of `data` copied into a new temp dir (as `data/`), with the log's segment `segment`
/// changed by `change`.
fn copy_with(data: &Path, segment: &Path, change: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let copy = tempfile::tempdir().unwrap();
    let to = copy.path().join("data");
    copy_folder(data, &to);
    let at = to.join(segment.strip_prefix(data).unwrap());
    let mut bytes = std::fs::read(&at).unwrap();
    change(&mut bytes);
    std::fs::write(&at, bytes).unwrap();
    (copy, to)
}

/// An event of the store-level tests below, with a job, so that a job without its event would
/// show.
fn new_event(n: usize) -> NewEvent {
    let body = small_event(n);
    NewEvent {
        provider: "stripe".into(),
        event_id: format!("evt_torn_{n}"),
        event_type: "a.b".into(),
        received_at_ms: Clock::system().now_ms(),
        source_ip: "127.0.0.1".into(),
        headers: vec![("stripe-signature".into(), format!("t=1,v1={n:064}"))].into(),
        body: body.into(),
        processing_us: 1,
        targets: vec!["http://127.0.0.1:9/hook".into()],
        items: 1,
        parent: None,
        source: Source::Webhook,
    }
}

/// Opens the copy and checks that exactly the first `whole` events are there, each with its body,
/// dedup key and job, and the rest are not; and that the folder is sound after recovery.
async fn check_recovered(data: &Path, ids: &[Ulid], whole: usize, what: &str) {
    sound(data);
    let store = Store::open(data, options(), Clock::system()).unwrap();
    for (n, id) in ids.iter().enumerate() {
        let read = store.read_event(*id).unwrap();
        let dedup = store.find_by_event_id("stripe", &format!("evt_torn_{n}")).unwrap();
        if n < whole {
            match read {
                Some(StoredEvent::Whole(_, body)) => assert_eq!(body, small_event(n).as_bytes(), "{what}: event {n}"),
                other => panic!("{what}: event {n} was synced, and reads {other:?}"),
            }
            assert_eq!(dedup, Some(*id), "{what}: event {n}'s dedup key");
            assert!(store.has_pending_job(*id).unwrap(), "{what}: event {n}'s job");
        } else {
            assert!(read.is_none() && dedup.is_none(), "{what}: event {n}'s group was not whole, yet it is there");
        }
    }
    assert_eq!(all_events(&store).len(), whole, "{what}");
    let (due, _) = store.due_jobs("stripe", i64::MAX, 100, |_| false).unwrap();
    assert_eq!(due.len(), whole, "{what}: a job for each event there, and none for one that is not");
    store.shutdown().await.unwrap();
    drop(store);
    let report = sound(data);
    assert_eq!(report.checked.events, whole as u64, "{what}");
}

/// The log's last group torn at every byte, with sled behind it: every group whose frame is whole
/// is recovered (event, body, dedup key, job), the torn one is not there at all, and the folder is
/// sound. So is it when the frame's pages were never written, when garbage follows the last frame,
/// and when an earlier frame is torn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_log_recovers_every_whole_group_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // sled never writes its files on its own: all the groups are in the log alone.
    let options = StoreOptions { tree_flush_every_ms: None, ..options() };
    let store = Store::open(&data, options, Clock::system()).unwrap();
    // sled's files as they are before the first group: sled may write its buffers to its files
    // without syncing them, so the state where it wrote nothing durable is made of these files
    // and the log of later.
    let base = tempfile::tempdir().unwrap();
    copy_folder(&data, &base.path().join("data"));
    let base = base.path().join("data");
    let segment = data.join("log").join("00000001.log");
    let mut ids = Vec::new();
    let mut ends = Vec::new();
    for n in 0..6 {
        // One at a time: one event, one group, one frame.
        ids.push(store.ingest(new_event(n)).await.unwrap().id);
        ends.push(std::fs::metadata(&segment).unwrap().len() as usize);
    }
    // The writer is idle and sled writes nothing on its own: the files hold still while copied.
    let log = std::fs::read(&segment).unwrap();
    assert_eq!(log.len(), ends[5]);
    // sled's files of then, with the log of now, changed.
    let copy_with = |change: &dyn Fn(&mut Vec<u8>)| {
        copy_with(&base, &base.join("log").join("00000001.log"), |b| {
            *b = log.clone();
            change(b);
        })
    };
    let last = ends[4];
    for cut in last..=log.len() {
        let (_copy, to) = copy_with(&|b| b.truncate(cut));
        let whole = if cut == log.len() { 6 } else { 5 };
        check_recovered(&to, &ids, whole, &format!("cut at {cut}")).await;
    }
    for _ in 0..3 {
        let from = fastrand::usize(last..log.len());
        let (_copy, to) = copy_with(&|b| b[from..].fill(0));
        check_recovered(&to, &ids, 5, &format!("zeros from {from}")).await;
    }
    let (_copy, to) = copy_with(&|b| b.extend_from_slice(b"\x53\x48\x47\x31 not a frame"));
    check_recovered(&to, &ids, 6, "garbage after the last frame").await;
    // An earlier frame torn (a disk that lost its pages): the groups before it are there, and
    // nothing of it or after it, though their frames are whole.
    let from = fastrand::usize(ends[1]..ends[2]);
    let (_copy, to) = copy_with(&|b| b[from..ends[2]].fill(0));
    check_recovered(&to, &ids, 2, &format!("the third frame zeroed from {from}")).await;
    store.shutdown().await.unwrap();
}

/// Opens the copy's store and checks that the events `damaged` names are reported as damage and
/// every other reads back its own body; and that `store verify` finds exactly those bodies.
async fn check_torn(data: &Path, ids: &[Ulid], bodies: &[String], damaged: impl Fn(usize) -> bool, what: &str) {
    let report = verify(data).unwrap();
    let mut found: Vec<_> = report.findings.iter().map(|f| (f.item == Item::Body).then_some(f.event)).collect();
    found.sort();
    let expected: Vec<_> = (0..ids.len()).filter(|&n| damaged(n)).map(|n| Some(Some(ids[n]))).collect();
    assert_eq!(found, expected, "{what}: store verify says {:#?}", report.findings);

    let store = Store::open(data, options(), Clock::system()).unwrap();
    for (n, (id, body)) in ids.iter().zip(bodies).enumerate() {
        match (damaged(n), store.read_event(*id).unwrap()) {
            (false, Some(StoredEvent::Whole(_, bytes))) => assert_eq!(bytes, body.as_bytes(), "{what}: event {n}"),
            (true, Some(StoredEvent::BodyDamaged(..))) => {
                assert!(matches!(store.get_event(*id), Err(StoreError::Corrupt(_))), "{what}: event {n}")
            }
            (d, other) => panic!("{what}: event {n} (damaged: {d}) reads {other:?}"),
        }
    }
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_body_is_damage_never_another_body() {
    let dir = tempfile::tempdir().unwrap();
    let s = support::start(support::config(dir.path())).await;
    let bodies: Vec<String> = (0..8).map(small_event).collect();
    let mut ids = Vec::new();
    for body in &bodies {
        let r = s.stripe(body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        ids.push(Ulid::from_string(r.json()["id"].as_str().unwrap()).unwrap());
    }
    s.stop().await;
    let data = dir.path().join("data");

    // The log's segment holds each body once, in the order they were acknowledged, each before
    // its group's writes (which name the event too): a body is the first place its bytes appear.
    let segment = data.join("log").join("00000001.log");
    let log = std::fs::read(&segment).unwrap();
    let find = |b: &str| log.windows(b.len()).position(|w| w == b.as_bytes()).unwrap();
    let starts: Vec<usize> = bodies.iter().map(|b| find(b)).collect();
    let ends: Vec<usize> = starts.iter().zip(&bodies).map(|(s, b)| s + b.len()).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "in order: {starts:?}");
    let last = ids.len() - 1;

    // The last body cut at every byte boundary (the whole of it too, and the writes after it:
    // then nothing is damaged).
    for cut in starts[last]..=log.len() {
        let (_copy, to) = copy_with(&data, &segment, |b| b.truncate(cut));
        check_torn(&to, &ids, &bodies, |n| n == last && cut < ends[last], &format!("cut at {cut}")).await;
    }
    // An earlier body torn: cut there, or its pages never written (zeros to the end, the length
    // kept); every body from there on is damaged.
    for _ in 0..3 {
        let cut = fastrand::usize(starts[0]..ends[last - 1]);
        let from = |n: usize| ends[n] > cut;
        let (_copy, to) = copy_with(&data, &segment, |b| b.truncate(cut));
        check_torn(&to, &ids, &bodies, from, &format!("cut at {cut}")).await;
        let (_copy, to) = copy_with(&data, &segment, |b| b[cut..].fill(0));
        check_torn(&to, &ids, &bodies, from, &format!("zeros from {cut}")).await;
    }
    // Bytes past the last frame: a write that was never acknowledged. Nothing is damaged.
    let (_orphans, to) = copy_with(&data, &segment, |b| b.extend_from_slice(&b"{\"id\":\"evt_torn_never\""[..]));
    check_torn(&to, &ids, &bodies, |_| false, "an unacknowledged tail").await;

    // The server starts on a log whose last body is cut in half, names the damage, sends it to
    // no one, and takes new events, which go to a segment of their own: the cut body still reads
    // as damage, never as a new one.
    let cut = starts[last] + bodies[last].len() / 2;
    let (copy, to) = copy_with(&data, &segment, |b| b.truncate(cut));
    let s = support::start(support::forwarding(copy.path(), "stripe", "http://127.0.0.1:9/hook".into())).await;
    let e = s.get(&format!("/staging/webhooks/events/{}", ids[last])).await.json();
    assert!(e["payload"].is_null() && !e["damage"].as_array().unwrap().is_empty(), "{e}");
    // Sent again, it is a dead letter for its damage: the cut body never leaves either.
    let json = [("content-type", "application/json")];
    let r = request(s.addr, "POST", &format!("/staging/webhooks/events/{}/replay", ids[last]), &json, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let path = format!("/staging/webhooks/events/{}", ids[last]);
    let e = support::until("the replay's dead letter", || async {
        let e = s.get(&path).await.json();
        (e["delivery_pending"] == false && e["status"] == "failed").then_some(e)
    })
    .await;
    assert!(e["last_error"].as_str().unwrap().starts_with("storage_corrupt: "), "{e}");
    let mut after = Vec::new();
    for n in 100..103 {
        let body = small_event(n);
        let r = s.stripe(&body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_string();
        let e = s.get(&format!("/staging/webhooks/events/{id}")).await.json();
        assert_eq!(e["payload"], body.as_str(), "{e}");
        after.push((Ulid::from_string(&id).unwrap(), body));
    }
    let e = s.get(&format!("/staging/webhooks/events/{}", ids[last])).await.json();
    assert!(e["payload"].is_null(), "the cut body is never served: {e}");
    s.stop().await;
    let (ids, bodies): (Vec<Ulid>, Vec<String>) = ids.iter().copied().zip(bodies).chain(after).unzip();
    check_torn(&to, &ids, &bodies, |n| n == last, "after new events").await;
}
