//! The embedded store: one sled tree holding the audit trail, dedup keys, counters and the
//! rejection log, and a log beside it holding the raw bodies and every group's writes, written by
//! a single group-commit writer.
//!
//! Only this module knows sled and postcard. Reads (`get_event`, `recent_rejections`) go straight
//! to sled from the caller's thread: they are short point lookups or bounded scans. Every write
//! goes through the writer thread in [`writer`], which batches what is pending, appends it to the
//! log as one frame, syncs once, applies it to sled as one atomic batch and only then answers
//! each waiter: that is what makes a 2xx durable without paying one fsync per request.
//!
//! This file holds the handle, its opening and closing, and the writes; the reads are in
//! `read.rs`, the opening of sled's files in `open.rs`, and the fault injection of tests in
//! `faults.rs`.

mod chaos;
mod faults;
pub mod feed;
mod keys;
mod log;
mod open;
mod ops;
mod pending;
mod read;
pub mod record;
pub mod rejection;
mod stats;
pub mod verify;
mod writer;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use ulid::Ulid;

use crate::clock::Clock;
use open::{classify_open_error, load_counters};
pub use record::{
    AlertState, Attempt, AttemptAnswer, AttemptOutcome, ChaosMark, CheckReport, ErrorEntry, Event, Job, Rejection,
    SlowerThan, Source, Status,
};
pub use stats::{Counters, EventCount, Histogram, Latency, Stats, Throughput};

#[cfg(any(test, feature = "testing"))]
pub use faults::InjectDamage;
pub use open::in_use;
pub(crate) use open::{open_db, open_db_with, OpenFailure, TREE};
pub use read::{Damage, DueJob, EventFilter, EventPage, RejectionEntry, StoredEvent, STORAGE_CORRUPT};

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened: locked by another process, unreadable, or corrupt.
    #[error("cannot open the database in {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    /// A write failed after its retries, or the writer is gone; nothing was acknowledged.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A record on disk does not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// The last commit that failed, until one succeeds again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitFailure {
    pub at_ms: i64,
    pub error: String,
}

/// An event's request headers, encoded once, as the log keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<u8>);

impl Headers {
    /// From the (name, raw value) pairs of a request, without an owned copy of each.
    pub fn from_raw<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Headers {
        Headers(record::encode_raw_headers(pairs))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<(String, String)>> for Headers {
    fn from(pairs: Vec<(String, String)>) -> Headers {
        Headers(record::encode_headers(pairs))
    }
}

/// An event to record, verified and parsed.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub received_at_ms: i64,
    pub source_ip: String,
    pub headers: Headers,
    pub body: Bytes,
    pub processing_us: u64,
    /// Where to deliver it: one job per target is queued in the same batch as the record.
    pub targets: Vec<String>,
    /// Provider events in the request: 1, or a batch's size (SendGrid), counted one by one.
    pub items: u32,
    /// The event this is an edited copy of (an edit and replay): a deliberate repeat, so it is
    /// never taken for a duplicate, and its copy of the provider's event id claims nothing.
    pub parent: Option<Ulid>,
    /// How it reached us; a backfilled event was never signed, so it is never `signature_verified`.
    pub source: Source,
}

/// The result of one delivery attempt, to record with what it means for the queue.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The job that was attempted; if a replay replaced it meanwhile, only history is written.
    pub job_key: Vec<u8>,
    pub id: Ulid,
    pub target: u8,
    pub attempt: Attempt,
    /// Counted under `failures/<reason>` when the attempt failed.
    pub failure_reason: Option<&'static str>,
    pub next: Next,
}

#[derive(Debug, Clone)]
pub enum Next {
    Done,
    RetryAt { due_ms: i64, job: Job },
    DeadLetter,
}

/// One alert's new state (`None`: it resolved), with the notifications that say so; written in
/// one batch by [`Store::record_alerts`].
#[derive(Debug, Clone)]
pub struct AlertChange {
    /// The alert's key (its rule and subject), chosen by `alerts/`.
    pub key: String,
    pub state: Option<AlertState>,
    pub notifications: Vec<NewEvent>,
}

/// A refused request as it arrived, for [`Store::reject`]: always counted by `code`; kept in the
/// rejection log when it has a `body` (signature and payload failures). The store cuts what it
/// keeps to its bounds ([`rejection`]), so the caller passes every part as it is.
pub struct RejectionParts<'a, H> {
    pub at_ms: i64,
    pub provider: &'a str,
    pub code: &'static str,
    pub message: &'a str,
    /// The client: formatted only when the entry is kept.
    pub source_ip: &'a dyn std::fmt::Display,
    /// The request's headers as (name, raw value) pairs in arrival order; read only when the
    /// entry is kept, and then only what fits is copied.
    pub headers: H,
    pub body: Option<&'a [u8]>,
    /// Why a signature probably failed: a code and a detail.
    pub diagnosis: Option<(&'a str, &'a str)>,
}

/// What the store made of an event: our id for it, and whether it had been seen before (then the
/// id is the first copy's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub id: Ulid,
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub cache_bytes: u64,
    pub rejection_log_size: usize,
    /// Size at which the log starts a new segment file.
    pub log_segment_bytes: u64,
    /// How often sled writes the tree to its own files, on its own thread (`None`: only when the
    /// store flushes it). Every answered group is durable in the log already; this bounds how
    /// much of the log the next start applies again after a crash.
    pub tree_flush_every_ms: Option<u64>,
}

pub use log::{Recovered, DEFAULT_SEGMENT_BYTES};

/// sled's own default: the tail a crash leaves to recovery is about this much of the log.
pub const TREE_FLUSH_EVERY_MS: u64 = 500;

/// A cheap, cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    tree: sled::Tree,
    /// The log's directory, read from any thread; only the writer appends to it.
    log_dir: PathBuf,
    /// What recovery applied again at open.
    recovered: Recovered,
    tx: mpsc::Sender<writer::Op>,
    stats: Arc<Stats>,
    /// The writer thread, joined once at shutdown.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Woken when jobs are queued.
    jobs_added: Arc<tokio::sync::Notify>,
    /// Per provider, a job the latest replay queued, until the engine takes it (in memory only:
    /// after a restart a replayed job simply waits its turn). Held for an insert or a take.
    replays: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    /// New events and changes of status, for readers of the live stream.
    feed: Arc<feed::Feed>,
    /// Flushes still to fail on purpose (fault injection for tests of the 503 path). The writer
    /// holds the other handle; only the test-only API sets it from here.
    #[cfg(any(test, feature = "testing"))]
    fail_flushes: Arc<AtomicU32>,
    /// Event reads still to fail on purpose (the same, for reads).
    fail_reads: AtomicU32,
    /// Set by the writer when a commit fails, cleared when a durable one succeeds; read by the
    /// health check. A `parking_lot` mutex: held for a clone, never across an await.
    last_failure: Arc<Mutex<Option<CommitFailure>>>,
}

/// Pending writes the writer queue holds before callers wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 16 * 1024;

impl Store {
    pub fn open(dir: &Path, options: StoreOptions, clock: Clock) -> Result<Store, StoreError> {
        Store::open_with_chaos(dir, options, clock, BTreeMap::new())
    }

    /// [`Store::open`], with chaos delivery for the endpoints named in `chaos`: the writer
    /// draws each of their events' chaos as it queues the jobs (see `crate::chaos`).
    pub fn open_with_chaos(
        dir: &Path,
        options: StoreOptions,
        clock: Clock,
        chaos: BTreeMap<String, crate::chaos::ChaosConfig>,
    ) -> Result<Store, StoreError> {
        let open_err = |reason: String| StoreError::Open { path: dir.to_path_buf(), reason };
        std::fs::create_dir_all(dir).map_err(|e| open_err(format!("cannot create the folder: {e}")))?;
        let db =
            open_db_with(dir, options.cache_bytes, options.tree_flush_every_ms).map_err(|e| open_err(e.to_string()))?;
        let tree = db.open_tree(TREE).map_err(|e| open_err(classify_open_error(e).to_string()))?;

        // sled must hold every acknowledged group before anything reads it: the log's frames it
        // had not durably applied are applied again, and flushed, first.
        let log_dir = log::take_over_old_dir(dir).map_err(|e| open_err(e.to_string()))?;
        let recovered = log::recover(&log_dir, &tree).map_err(|e| open_err(e.to_string()))?;
        if recovered.groups > 0 {
            db.flush().map_err(|e| open_err(format!("cannot flush the recovered groups: {e}")))?;
            tracing::warn!(
                groups = recovered.groups,
                bytes = recovered.bytes,
                "the last run did not stop cleanly: applied the log's groups the database had not written"
            );
        }
        let counters = load_counters(&tree).map_err(|e| open_err(e.to_string()))?;
        let log = log::Log::open(log_dir.clone(), options.log_segment_bytes).map_err(|e| open_err(e.to_string()))?;
        log.remove_dead_segments(&counters);
        let stats = Arc::new(Stats::with_counters(counters.clone()));
        let rejections: VecDeque<Vec<u8>> =
            tree.scan_prefix([keys::REJECTION]).keys().filter_map(Result::ok).map(|k| k.to_vec()).collect();

        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let fail_flushes = Arc::new(AtomicU32::new(0));
        let last_failure = Arc::new(Mutex::new(None));
        let jobs_added = Arc::new(tokio::sync::Notify::new());
        let replays = Arc::new(Mutex::new(BTreeMap::new()));
        let feed = Arc::new(feed::Feed::default());
        let w = writer::Writer {
            db,
            tree: tree.clone(),
            log,
            broken: None,
            counters,
            rejections,
            rejection_cap: options.rejection_log_size,
            stats: stats.clone(),
            clock,
            ids: ulid::Generator::new(),
            fail_flushes: fail_flushes.clone(),
            last_failure: last_failure.clone(),
            jobs_added: jobs_added.clone(),
            replays: replays.clone(),
            swept_minute: 0,
            feed: feed.clone(),
            chaos: chaos.into_iter().map(|(name, c)| (name, crate::chaos::Chaos::new(c))).collect(),
            checkpoint: Default::default(),
        };
        let thread = std::thread::Builder::new()
            .name("stagehook-store".into())
            .spawn(move || w.run(rx))
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                tree,
                log_dir,
                recovered,
                tx,
                stats,
                thread: Mutex::new(Some(thread)),
                jobs_added,
                replays,
                feed,
                #[cfg(any(test, feature = "testing"))]
                fail_flushes,
                fail_reads: AtomicU32::new(0),
                last_failure,
            }),
        })
    }

    /// Records an event durably (or finds its first copy) and returns only once it is on disk.
    pub async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(writer::Op::Ingest(event, ack)).await?;
        done.await.map_err(|_| gone())?
    }

    /// Records events in the order given (their ids follow it), each durably or found as a
    /// duplicate as [`Store::ingest`] does, and answers once every one is on disk: they are all
    /// queued before the first answer is awaited, so the writer commits them in as few flushes
    /// as it can. For an import, whose order is the file's.
    pub async fn ingest_all(&self, events: Vec<NewEvent>) -> Result<Vec<Ingested>, StoreError> {
        let mut answers = Vec::with_capacity(events.len());
        for event in events {
            let (ack, done) = oneshot::channel();
            self.send(writer::Op::Ingest(event, ack)).await?;
            answers.push(done);
        }
        let mut out = Vec::with_capacity(answers.len());
        for done in answers {
            out.push(done.await.map_err(|_| gone())??);
        }
        Ok(out)
    }

    /// Counts a refusal and logs it if asked. Never waits: under a flood, when the writer queue is
    /// full, the refusal is dropped rather than slowing the requests that are being refused.
    /// The entry is cut to its bounds here, on the caller's thread, before it is queued.
    pub fn reject<'h, H>(&self, r: RejectionParts<'_, H>)
    where
        H: IntoIterator<Item = (&'h str, &'h [u8])>,
    {
        let log = r.body.map(|body| {
            let source_ip = r.source_ip.to_string();
            Rejection::bounded(r.at_ms, r.provider, r.code, r.message, &source_ip, r.headers, body)
                .diagnosed(r.diagnosis)
        });
        if self.inner.tx.try_send(writer::Op::Reject(r.code, log)).is_err() {
            tracing::debug!("writer queue full; a rejection went uncounted");
        }
    }

    /// Marks an event `processing` as its delivery starts. Not waited on: the outcome that
    /// follows goes through the same queue, so it cannot overtake this.
    pub async fn begin(&self, id: Ulid) {
        let _ = self.inner.tx.send(writer::Op::Begin(id)).await;
    }

    /// Records an attempt and its consequence (done, retry, dead letter) in one durable batch.
    pub async fn record_outcome(&self, outcome: Outcome) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(writer::Op::Outcome(Box::new(outcome), ack)).await?;
        done.await.map_err(|_| gone())?
    }

    /// Starts a new attempt series for each event, to the given targets; returns how many.
    pub async fn replay(&self, items: Vec<(Ulid, Vec<String>)>) -> Result<usize, StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(writer::Op::Replay(items, ack)).await?;
        done.await.map_err(|_| gone())?
    }

    /// Deletes these events (unless a delivery is pending); returns how many went.
    pub async fn delete(&self, ids: Vec<Ulid>) -> Result<usize, StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(writer::Op::Delete(ids, ack)).await?;
        done.await.map_err(|_| gone())?
    }

    /// Records alerts' state changes and queues their notifications, durably, in one batch;
    /// returns how many notifications were queued (one already recorded is not queued again).
    pub async fn record_alerts(&self, changes: Vec<AlertChange>) -> Result<usize, StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(writer::Op::Alert(changes, ack)).await?;
        done.await.map_err(|_| gone())?
    }

    /// Records that the server is alive at `now_ms`, overwriting the previous heartbeat: one small
    /// key in the next batch, without an fsync of its own, so it is cheap to call every few
    /// seconds. [`Store::last_heartbeat`] reads it back, after a restart too.
    pub async fn heartbeat(&self, now_ms: i64) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(writer::Op::Heartbeat(now_ms, ack)).await?;
        done.await.map_err(|_| gone())?
    }

    /// Keeps `report` as the endpoint's last `check-app` report, replacing the one before:
    /// durably, in the next batch.
    pub async fn record_check_report(&self, endpoint: &str, report: CheckReport) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        let bytes = record::encode_check_report(report);
        self.send(writer::Op::CheckReport(keys::check_report_key(endpoint), bytes, ack)).await?;
        done.await.map_err(|_| gone())?
    }

    /// Resolves when a commit queued new jobs (or at once, if one did since the last call).
    pub async fn jobs_added(&self) {
        self.inner.jobs_added.notified().await
    }

    /// Takes, per provider, the key of a job the replays committed since the last call queued.
    pub fn take_replays(&self) -> BTreeMap<String, Vec<u8>> {
        std::mem::take(&mut *self.inner.replays.lock())
    }

    /// New events and changes of status as they are committed, for the live stream.
    pub fn feed(&self) -> &Arc<feed::Feed> {
        &self.inner.feed
    }

    /// Waits until everything sent before this call is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(writer::Op::Flush(ack)).await?;
        done.await.map_err(|_| gone())?
    }

    /// Writes what is pending, flushes, and stops the writer. Later writes fail with
    /// `Unavailable`; reads keep working.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        if self.inner.tx.send(writer::Op::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
        let thread = self.inner.thread.lock().take();
        if let Some(t) = thread {
            tokio::task::spawn_blocking(move || t.join()).await.ok();
        }
        Ok(())
    }

    /// The groups recovery applied again when the store opened (none after a clean stop).
    pub fn recovered(&self) -> Recovered {
        self.inner.recovered
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Whether the writer is running, so writes can be acknowledged.
    pub fn writer_running(&self) -> bool {
        !self.inner.tx.is_closed()
    }

    /// The last commit that failed, if no durable commit has succeeded since: while this is set,
    /// writes are likely answered 503 (a full disk, a failing device).
    pub fn commit_failure(&self) -> Option<CommitFailure> {
        self.inner.last_failure.lock().clone()
    }

    /// Whether writes are being acknowledged: the writer runs and its last commit did not fail.
    pub fn writable(&self) -> bool {
        self.writer_running() && self.commit_failure().is_none()
    }

    async fn send(&self, op: writer::Op) -> Result<(), StoreError> {
        self.inner.tx.send(op).await.map_err(|_| gone())
    }
}

fn gone() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written before the log holds event records without a body reference,
    /// the body under its own key: such events still read back whole and can still be deleted.
    #[tokio::test]
    async fn events_from_before_the_body_log_still_read_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let id = Ulid::new();
        let event = Event {
            provider: "stripe".into(),
            event_id: "evt_old".into(),
            event_type: "charge.succeeded".into(),
            received_at_ms: 1_700_000_000_000,
            source_ip: "127.0.0.1".into(),
            headers: vec![],
            body_len: 14,
            signature_verified: true,
            status: Status::Processed,
            processing_us: 10,
            attempts: 0,
            last_error: None,
            errors: vec![],
            parent: None,
            source: Source::Webhook,
        };
        {
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("stagehook").unwrap();
            tree.insert(keys::id_key(keys::EVENT, id), record::encode_event(event.clone(), None)).unwrap();
            tree.insert(keys::id_key(keys::BODY, id), &b"{\"id\":\"old\"}\n\n"[..]).unwrap();
            tree.insert(keys::dedup_key("stripe", "evt_old"), &u128::from(id).to_be_bytes()[..]).unwrap();
            tree.insert(keys::counter_key("events/stripe/processed"), &1u64.to_be_bytes()[..]).unwrap();
            db.flush().unwrap();
        }
        let options = StoreOptions {
            cache_bytes: 1 << 20,
            rejection_log_size: 10,
            log_segment_bytes: 1 << 20,
            tree_flush_every_ms: Some(TREE_FLUSH_EVERY_MS),
        };
        let store = Store::open(dir.path(), options, Clock::system()).unwrap();
        assert_eq!(store.get_event(id).unwrap(), Some((event, b"{\"id\":\"old\"}\n\n".to_vec())));
        assert_eq!(store.delete(vec![id]).await.unwrap(), 1);
        assert_eq!(store.get_event(id).unwrap(), None);
        assert!(store.inner.tree.get(keys::id_key(keys::BODY, id)).unwrap().is_none(), "the inline body goes too");
        assert_eq!(store.stats().counters().total_events(), 0);
        store.shutdown().await.unwrap();
    }

    fn options() -> StoreOptions {
        StoreOptions {
            cache_bytes: 1 << 20,
            rejection_log_size: 10,
            log_segment_bytes: 1 << 20,
            tree_flush_every_ms: Some(TREE_FLUSH_EVERY_MS),
        }
    }

    fn new_event(n: u32, targets: &[&str]) -> NewEvent {
        NewEvent {
            provider: "stripe".into(),
            event_id: format!("evt_{n}"),
            event_type: "charge.succeeded".into(),
            received_at_ms: 1_700_000_000_000 + i64::from(n),
            source_ip: "127.0.0.1".into(),
            headers: Default::default(),
            body: format!("{{\"n\":{n}}}").into(),
            processing_us: 1,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            items: 1,
            parent: None,
            source: Source::Webhook,
        }
    }

    /// An event's headers live in the log beside its body, not in its record (which every change
    /// of status rewrites): the record holds none, reading the event gives them back, across a
    /// change of status and a restart.
    #[tokio::test]
    async fn headers_are_kept_in_the_log_not_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let headers = vec![("stripe-signature".to_string(), "t=1,v1=abc".to_string()), ("x-a".into(), "b".into())];
        let event = NewEvent { headers: headers.clone().into(), ..new_event(0, &["http://app/hook"]) };
        let store = Store::open(dir.path(), options(), Clock::system()).unwrap();
        let id = store.ingest(event).await.unwrap().id;
        let (record, body) =
            record::decode_event(&store.inner.tree.get(keys::id_key(keys::EVENT, id)).unwrap().unwrap()).unwrap();
        assert!(record.headers.is_empty(), "{record:?}");
        assert!(body.unwrap().headers > 0);
        assert_eq!(
            store.get_event(id).unwrap().unwrap(),
            (Event { headers: headers.clone(), ..record }, b"{\"n\":0}".to_vec())
        );
        store.begin(id).await;
        store.flush().await.unwrap();
        assert_eq!(store.get_event(id).unwrap().unwrap().0.status, Status::Processing);
        store.shutdown().await.unwrap();
        drop(store);
        let store = Store::open(dir.path(), options(), Clock::system()).unwrap();
        assert_eq!(store.get_event(id).unwrap().unwrap().0.headers, headers);
        assert!(matches!(store.read_event(id).unwrap(), Some(StoredEvent::Whole(e, _)) if e.headers == headers));
        assert!(store.get_record(id).unwrap().unwrap().headers.is_empty());
        store.shutdown().await.unwrap();
    }

    /// A job record that does not decode is handed over in its place, as damaged, and the scan
    /// goes on to the jobs after it.
    #[tokio::test]
    async fn a_damaged_job_is_passed_over_not_a_failed_scan() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), options(), Clock::system()).unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(store.ingest(new_event(n, &["http://app/hook"])).await.unwrap().id);
        }
        assert_eq!(store.inject_damage(ids[1], InjectDamage::JobRecords).unwrap(), 1);
        let (due, next) = store.due_jobs("stripe", i64::MAX, 10, |_| false).unwrap();
        assert_eq!(next, None);
        let seen: Vec<(Ulid, bool)> = due.iter().map(|d| (d.id, d.job.is_ok())).collect();
        assert_eq!(seen, [(ids[0], true), (ids[1], false), (ids[2], true)]);
        assert!(due[1].job.as_ref().unwrap_err().0.contains("does not decode"));
        store.shutdown().await.unwrap();
    }

    /// An event record that does not decode: listed in its place (only where a filter could
    /// match it), settled as a dead letter when its job's outcome comes, and passed over by
    /// retention, which goes on with the events after it.
    #[tokio::test]
    async fn an_undecodable_record_is_listed_settled_and_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), options(), Clock::system()).unwrap();
        let bad = store.ingest(new_event(0, &["http://app/hook"])).await.unwrap().id;
        let good = store.ingest(new_event(1, &[])).await.unwrap().id;
        assert_eq!(store.inject_damage(bad, InjectDamage::EventRecord).unwrap(), 1);

        let page = store.list_events(&EventFilter::default(), None, 10, 100).unwrap();
        assert_eq!(page.events.len(), 2);
        assert!(page.events[0].1.is_ok() && page.events[1].1.is_err(), "{page:?}");
        let failed = EventFilter { status: Some(Status::Failed), ..Default::default() };
        assert_eq!(store.list_events(&failed, None, 10, 100).unwrap().events.len(), 1);
        let stripe = EventFilter { provider: Some("stripe".into()), ..Default::default() };
        assert_eq!(store.list_events(&stripe, None, 10, 100).unwrap().events.len(), 1);
        assert!(matches!(store.read_event(bad).unwrap(), Some(StoredEvent::RecordDamaged(_))));
        assert!(matches!(store.get_event(bad), Err(StoreError::Corrupt(_))));

        let (due, _) = store.due_jobs("stripe", i64::MAX, 10, |_| false).unwrap();
        let job = due[0].job.clone().unwrap();
        let attempt = Attempt {
            series: job.series,
            attempt: job.attempt,
            at_ms: 1,
            target: job.target,
            status: None,
            error: Some("storage_corrupt: the record".into()),
            duration_us: 0,
            outcome: AttemptOutcome::Failed,
            answer: None,
            slower_than: None,
            chaos: None,
        };
        let outcome = Outcome {
            job_key: due[0].key.clone(),
            id: bad,
            target: 0,
            attempt,
            failure_reason: Some(STORAGE_CORRUPT),
            next: Next::DeadLetter,
        };
        store.record_outcome(outcome).await.unwrap();
        assert!(!store.has_pending_job(bad).unwrap());
        assert_eq!(store.attempts(bad).unwrap().len(), 1);
        let counters = store.stats().counters();
        assert_eq!(counters.failure_reasons().get(STORAGE_CORRUPT), Some(&1));
        assert_eq!(counters.dead_lettered_jobs("stripe"), 1);
        assert_eq!(counters.queue_depth(), 0);

        // Oldest first: the bad record does not stop the good one going.
        assert_eq!(store.delete(vec![bad, good]).await.unwrap(), 1);
        assert!(store.get_record(good).unwrap().is_none());
        assert!(matches!(store.read_event(bad).unwrap(), Some(StoredEvent::RecordDamaged(_))));
        store.shutdown().await.unwrap();
    }

    /// A committed replay hands the engine one of the jobs it queued, per provider, once; the job
    /// reads back by its key until it leaves the queue. A new event's job is no replay.
    #[tokio::test]
    async fn a_replay_hands_its_job_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::frozen(1_700_000_001_000);
        let store = Store::open(dir.path(), options(), clock.clone()).unwrap();
        let id = store.ingest(new_event(0, &["http://app/hook"])).await.unwrap().id;
        assert!(store.take_replays().is_empty(), "a first delivery is not a replay");
        assert_eq!(store.replay(vec![(id, vec!["http://app/again".into()])]).await.unwrap(), 1);
        let replays = store.take_replays();
        assert_eq!(replays.keys().collect::<Vec<_>>(), ["stripe"]);
        let due = store.queued_job(&replays["stripe"]).unwrap().unwrap();
        let job = due.job.unwrap();
        assert_eq!((due.id, job.series, job.attempt, job.target.as_str()), (id, 2, 1, "http://app/again"));
        assert!(store.take_replays().is_empty(), "taken once");
        // Replayed again, a moment later: the first replay's job has left the queue.
        clock.advance(1);
        store.replay(vec![(id, vec!["http://app/hook".into()])]).await.unwrap();
        assert!(store.queued_job(&replays["stripe"]).unwrap().is_none());
        store.shutdown().await.unwrap();
    }

    /// An attempt record that does not decode is reported in its place in the history.
    #[tokio::test]
    async fn a_damaged_attempt_is_reported_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), options(), Clock::system()).unwrap();
        let id = store.ingest(new_event(0, &[])).await.unwrap().id;
        let attempt = Attempt {
            series: 1,
            attempt: 1,
            at_ms: 1,
            target: "http://app/hook".into(),
            status: Some(500),
            error: None,
            duration_us: 1,
            outcome: AttemptOutcome::WillRetry,
            answer: None,
            slower_than: None,
            chaos: None,
        };
        let tree = &store.inner.tree;
        tree.insert(keys::attempt_key(id, 0), record::encode_attempt(attempt.clone())).unwrap();
        tree.insert(keys::attempt_key(id, 1), &[0xff, 0xff][..]).unwrap();
        let history = store.attempts(id).unwrap();
        assert_eq!(history[0], Ok(attempt));
        assert!(history[1].as_ref().unwrap_err().0.contains("attempt record 1 does not decode"), "{history:?}");
        store.shutdown().await.unwrap();
    }

    /// A failed commit is remembered until a durable one succeeds.
    #[tokio::test]
    async fn a_failed_commit_is_remembered_until_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), options(), Clock::system()).unwrap();
        assert!(store.writable());
        store.inject_flush_failures(4);
        assert!(store.ingest(new_event(0, &[])).await.is_err());
        assert!(!store.writable());
        assert!(store.commit_failure().unwrap().error.contains("injected flush failure"));
        store.flush().await.unwrap();
        assert!(store.writable());
        assert_eq!(store.commit_failure(), None);
        store.shutdown().await.unwrap();
        assert!(!store.writable(), "a stopped writer takes no writes");
    }

    /// After shutdown every write is refused as unavailable (a 503 to the client), never lost
    /// silently or left waiting; reads still work.
    #[tokio::test]
    async fn writes_after_shutdown_are_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), options(), Clock::system()).unwrap();
        let first = store.ingest(new_event(0, &[])).await.unwrap();
        store.shutdown().await.unwrap();
        let unavailable = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Unavailable(_)));
        assert!(unavailable(store.ingest(new_event(1, &[])).await.map(drop)));
        assert!(unavailable(store.replay(vec![(first.id, vec!["http://app/hook".into()])]).await.map(drop)));
        assert!(unavailable(store.flush().await));
        assert!(store.get_record(first.id).unwrap().is_some());
    }
}
