//! The single writer: group commit.
//!
//! It runs on its own OS thread because sled's API blocks; nothing async runs here. Each turn it
//! takes everything that is pending (up to a bound), runs each operation through [`Ops`]
//! (`ops.rs`: what an operation does to the batch, duplicates decided against the tree and the
//! batch itself), and builds one batch with the records, dedup keys and new counter values. It
//! appends the batch and the new bodies to the log as one frame (`log/`), syncs the log once if
//! anyone waits on the group, applies the batch to sled's tree, and only then answers the
//! waiters and publishes the counters. Counters are the exception: written in every frame, they
//! reach the tree only at a *checkpoint* (their latest values and the log's watermark, in one
//! batch, every [`CHECKPOINT_EVERY`]), since a group of one event changes eight of them and each
//! sled insert costs the writer more than the whole frame. sled writes its own files on its own
//! schedule; recovery applies again every frame past the last checkpoint sled wrote. Each step of a commit is retried a few times; if it
//! still fails, every waiter of that batch gets `Unavailable` (a 503, so the provider retries),
//! and the group leaves no trace: a frame sled did not take is cut out of the log again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use ulid::Ulid;

use super::log::frame::Batch;
use super::log::{self, segment_counter, segment_of_counter, ApplyError, Log, LogError};
use super::ops::{Env, Ops};
use super::pending::Pending;
use super::record::{BodyRef, Rejection};
use super::stats::{expired_counter, Stats};
use super::{keys, AlertChange, CommitFailure, Ingested, NewEvent, Outcome, StoreError};
use crate::clock::Clock;

pub(super) enum Op {
    Ingest(NewEvent, oneshot::Sender<Result<Ingested, StoreError>>),
    /// A refusal to count by its code, and its rejection-log entry if it is to be kept.
    Reject(&'static str, Option<Rejection>),
    /// A delivery attempt started: `processing`. Not acknowledged; the outcome follows it.
    Begin(Ulid),
    /// Boxed: an attempt with its answer and chaos mark is by far the largest operation, and
    /// every operation in the queue would otherwise take its size.
    Outcome(Box<Outcome>, oneshot::Sender<Result<(), StoreError>>),
    /// New attempt series for these events, to these targets.
    Replay(Vec<(Ulid, Vec<String>)>, oneshot::Sender<Result<usize, StoreError>>),
    /// Retention: delete these events unless a delivery is pending.
    Delete(Vec<Ulid>, oneshot::Sender<Result<usize, StoreError>>),
    /// Alerts' state changes and the notifications they queue, in one batch.
    Alert(Vec<AlertChange>, oneshot::Sender<Result<usize, StoreError>>),
    /// The server is alive at this time (ms): overwrites the one heartbeat key.
    Heartbeat(i64, oneshot::Sender<Result<(), StoreError>>),
    /// An endpoint's last `check-app` report: its key and record.
    CheckReport(Vec<u8>, Vec<u8>, oneshot::Sender<Result<(), StoreError>>),
    Flush(oneshot::Sender<Result<(), StoreError>>),
    Shutdown(oneshot::Sender<()>),
}

/// Most operations in one batch, and most bytes of bodies and rejection-log entries: bounds the
/// latency one batch adds, and the memory a batch holds.
const MAX_OPS: usize = 2048;
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// How often changed counters and the watermark are written to the tree, at most: what recovery
/// applies again after a crash is the log since the last checkpoint sled wrote to disk.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// A commit this slow is logged with where its time went (a sign of a slow or busy disk).
const SLOW_COMMIT: Duration = Duration::from_millis(100);
/// Waits between attempts of a commit step; the number of entries is the number of retries.
const RETRY_BACKOFF: [Duration; 3] = [Duration::from_millis(5), Duration::from_millis(25), Duration::from_millis(100)];

pub(super) struct Writer {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    pub(super) log: Log,
    /// Set when a frame sled did not take could not be cut out of the log again: no later group
    /// may follow it there, so every write is refused until a restart recovers the store.
    pub(super) broken: Option<String>,
    /// The value of every counter in the tree; the base of the values each batch writes.
    pub(super) counters: BTreeMap<String, u64>,
    /// Keys of the rejection log, oldest first, to evict past `rejection_cap`.
    pub(super) rejections: VecDeque<Vec<u8>>,
    pub(super) rejection_cap: usize,
    pub(super) stats: Arc<Stats>,
    pub(super) clock: Clock,
    /// Monotonic within a millisecond, so ids (and keys) follow commit order.
    pub(super) ids: ulid::Generator,
    pub(super) fail_flushes: Arc<AtomicU32>,
    /// The last failed commit, for the health check; cleared by the next durable commit.
    pub(super) last_failure: Arc<parking_lot::Mutex<Option<CommitFailure>>>,
    /// The minute of the last sweep of old per-minute counters.
    pub(super) swept_minute: i64,
    /// Woken after a commit that queued jobs, so the delivery engine need not poll.
    pub(super) jobs_added: Arc<tokio::sync::Notify>,
    /// Per provider, a job the last replay queued, handed to the engine by `Store::take_replays`.
    pub(super) replays: Arc<parking_lot::Mutex<BTreeMap<String, Vec<u8>>>>,
    /// Where each committed batch's new events and changes of status go (`feed.rs`).
    pub(super) feed: Arc<super::feed::Feed>,
    /// Each chaos endpoint's settings and generator, by name; empty when no endpoint has chaos.
    pub(super) chaos: BTreeMap<String, crate::chaos::Chaos>,
    pub(super) checkpoint: Checkpoint,
}

/// What the tree lacks of the log: counters changed since the last checkpoint, and how far the
/// log reaches.
#[derive(Debug)]
pub(super) struct Checkpoint {
    /// Counters whose value in the tree is older than the mirror's (removed ones included).
    dirty: BTreeSet<String>,
    /// The end of the last frame whose group is in the tree (counters aside).
    logged: Option<log::Position>,
    /// The watermark the tree holds.
    saved: Option<log::Position>,
    at: Instant,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint { dirty: BTreeSet::new(), logged: None, saved: None, at: Instant::now() }
    }
}

impl Op {
    /// The bulk this operation adds to a batch: a body, or a rejection-log entry. The rest of
    /// an operation is small and fixed.
    fn bytes(&self) -> usize {
        match self {
            Op::Ingest(e, _) => e.body.len(),
            Op::Reject(_, Some(entry)) => entry.stored_bytes(),
            _ => 0,
        }
    }
}

enum Waiter {
    Ingest(oneshot::Sender<Result<Ingested, StoreError>>, Ingested),
    Done(oneshot::Sender<Result<(), StoreError>>),
    Count(oneshot::Sender<Result<usize, StoreError>>, usize),
}

impl Waiter {
    fn answer(self, result: Result<(), StoreError>) {
        match (self, result) {
            (Waiter::Ingest(ack, v), Ok(())) => drop(ack.send(Ok(v))),
            (Waiter::Done(ack), Ok(())) => drop(ack.send(Ok(()))),
            (Waiter::Count(ack, n), Ok(())) => drop(ack.send(Ok(n))),
            (Waiter::Ingest(ack, _), Err(e)) => drop(ack.send(Err(e))),
            (Waiter::Done(ack), Err(e)) => drop(ack.send(Err(e))),
            (Waiter::Count(ack, _), Err(e)) => drop(ack.send(Err(e))),
        }
    }
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut shutdown = None;
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.bytes();
            let mut ops = vec![first];
            while ops.len() < MAX_OPS && bytes < MAX_BYTES {
                match rx.try_recv() {
                    Ok(op) => {
                        bytes += op.bytes();
                        ops.push(op);
                    }
                    Err(_) => break,
                }
            }
            if let Some(pos) = ops.iter().position(|op| matches!(op, Op::Shutdown(_))) {
                // Commit what came before the shutdown; anything after it is refused below.
                let rest = ops.split_off(pos);
                self.commit(ops);
                let mut rest = rest.into_iter();
                if let Some(Op::Shutdown(ack)) = rest.next() {
                    shutdown = Some(ack);
                }
                for op in rest {
                    refuse(op, SHUTTING_DOWN);
                }
                break;
            }
            self.commit(ops);
        }
        rx.close();
        while let Ok(op) = rx.try_recv() {
            refuse(op, SHUTTING_DOWN);
        }
        if let Err(e) = self.log.write(true) {
            tracing::error!(error = %e, "final sync of the log failed");
        }
        self.checkpoint();
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final flush of the store failed; the next start applies the log again");
        }
        if let Some(ack) = shutdown {
            let _ = ack.send(());
        }
    }

    fn commit(&mut self, ops: Vec<Op>) {
        if let Some(why) = &self.broken {
            let why = format!("the store must be restarted: {why}");
            ops.into_iter().for_each(|op| refuse(op, &why));
            return;
        }
        match self.log.roll_if_full() {
            Ok(Some(closed)) if self.counters.get(&segment_counter(closed)).copied().unwrap_or(0) == 0 => {
                // No live body in it (refusals and deliveries alone wrote it): it can go at once.
                self.remove_segments(vec![closed]);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot start a new log segment; appending to the current one"),
        }
        let tree = self.tree.clone();
        let env = WriterEnv { ids: &mut self.ids, log: &mut self.log, clock: &self.clock, chaos: &mut self.chaos };
        let mut pending = Pending::new(&tree);
        if self.feed.recording() {
            pending.track_changes();
        }
        let mut m = Ops::new(pending, env);
        let mut waiters = Vec::with_capacity(ops.len());
        let mut new_rejections = Vec::new();
        let mut durable = false;

        for op in ops {
            // Every operation but a refusal count is waited on, and so must be durable. A heartbeat
            // is waited on too, but needs no sync of its own: the next group's sync takes it to
            // disk, and one lost in a crash is only a few seconds older than the truth.
            durable |= !matches!(op, Op::Reject(..) | Op::Begin(_) | Op::Heartbeat(..));
            let result = match op {
                Op::Ingest(event, ack) => match m.ingest(event) {
                    Ok(done) => Ok(Waiter::Ingest(ack, done)),
                    Err(e) => Err((Waiter::Ingest(ack, Ingested { id: Ulid::nil(), duplicate: false }), e)),
                },
                Op::Reject(code, log) => {
                    new_rejections.extend(m.reject(code, log));
                    continue;
                }
                Op::Begin(id) => {
                    if let Err(e) = m.begin(id) {
                        tracing::warn!(error = %e, %id, "could not mark the event processing");
                    }
                    continue;
                }
                Op::Outcome(o, ack) => match m.outcome(*o) {
                    Ok(()) => Ok(Waiter::Done(ack)),
                    Err(e) => Err((Waiter::Done(ack), e)),
                },
                Op::Replay(items, ack) => match m.replay(items) {
                    Ok(n) => Ok(Waiter::Count(ack, n)),
                    Err(e) => Err((Waiter::Count(ack, 0), e)),
                },
                Op::Delete(ids, ack) => match m.delete(ids) {
                    Ok(n) => Ok(Waiter::Count(ack, n)),
                    Err(e) => Err((Waiter::Count(ack, 0), e)),
                },
                Op::Alert(changes, ack) => match m.alert(changes) {
                    Ok(n) => Ok(Waiter::Count(ack, n)),
                    Err(e) => Err((Waiter::Count(ack, 0), e)),
                },
                Op::Heartbeat(at_ms, ack) => {
                    m.p.insert(keys::HEARTBEAT.to_vec(), at_ms.to_be_bytes().to_vec());
                    Ok(Waiter::Done(ack))
                }
                Op::CheckReport(key, record, ack) => {
                    m.p.insert(key, record);
                    Ok(Waiter::Done(ack))
                }
                Op::Flush(ack) => Ok(Waiter::Done(ack)),
                Op::Shutdown(_) => unreachable!("run() splits shutdown off before commit"),
            };
            match result {
                Ok(w) => waiters.push(w),
                // A read failed while preparing this one operation: it alone is refused. What it
                // already put in the batch is consistent on its own (each step writes whole
                // records), so the rest of the batch goes ahead.
                Err((w, e)) => w.answer(Err(StoreError::Unavailable(e.to_string()))),
            }
        }
        let Ops { mut p, jobs_added, replayed, .. } = m;

        // Bound the rejection log: evict the oldest in this same batch.
        let mut evicted = 0;
        let overflow = (self.rejections.len() + new_rejections.len()).saturating_sub(self.rejection_cap);
        for key in self.rejections.iter().take(overflow) {
            p.batch.remove(key.clone());
            evicted += 1;
        }
        // More new entries than the whole cap: keep only the newest of them.
        let skip_new = overflow.saturating_sub(evicted);
        for key in new_rejections.iter().take(skip_new) {
            p.batch.remove(key.clone());
        }

        // Per-minute and per-second counters older than what they serve go, at most once a minute.
        let now_ms = self.clock.now_ms();
        let (batch, delta, changes) = p.finish(now_ms);
        // The counters' new values: in the frame, and in the tree at the next checkpoint.
        let mut counters = Batch::default();
        let now_minute = now_ms.div_euclid(60_000);
        let mut expired = Vec::new();
        if now_minute != self.swept_minute {
            expired = self
                .counters
                .keys()
                .filter(|k| expired_counter(k, now_ms))
                .filter(|k| !delta.contains_key(*k))
                .cloned()
                .collect();
            for k in &expired {
                counters.remove(keys::counter_key(k));
            }
        }
        let mut emptied_segments = Vec::new();
        for (name, d) in &delta {
            let value = apply_delta(self.counters.get(name).copied().unwrap_or(0), *d);
            match segment_of_counter(name) {
                Some(segment) if value == 0 && segment != self.log.current_segment() => {
                    counters.remove(keys::counter_key(name));
                    emptied_segments.push(segment);
                }
                _ => counters.insert(keys::counter_key(name), &value.to_be_bytes()[..]),
            }
        }

        let outcome = self.apply(batch, counters, durable).map_err(|e| e.to_string());
        if outcome.is_ok() {
            self.checkpoint.dirty.extend(delta.keys().cloned());
            self.checkpoint.dirty.extend(expired.iter().cloned());
            // The batch is in the tree: the in-memory mirror must follow it, or the next batch
            // would write counters that disagree with the records.
            for (name, d) in &delta {
                let c = self.counters.entry(name.clone()).or_default();
                *c = apply_delta(*c, *d);
            }
            self.rejections.drain(..evicted);
            self.rejections.extend(new_rejections.into_iter().skip(skip_new));
            self.stats.set(&self.counters, delta.keys());
            if now_minute != self.swept_minute {
                for k in &expired {
                    self.counters.remove(k);
                }
                self.stats.remove(&expired);
                self.swept_minute = now_minute;
            }
            // Before the wake-up, so the engine finds the replayed jobs when it looks.
            self.replays.lock().extend(replayed);
            if jobs_added {
                self.jobs_added.notify_one();
            }
            self.feed.publish(changes);
            // No record points into these any more.
            for &segment in &emptied_segments {
                let name = segment_counter(segment);
                self.counters.remove(&name);
                self.stats.remove(&[name]);
            }
            // Before the answers, so a deletion's caller finds the files gone (it waits for a
            // flush: once a segment, at most).
            if !emptied_segments.is_empty() {
                self.remove_segments(emptied_segments);
            }
        }
        // Health follows before anyone is answered, so a client that got a 503 finds the store
        // degraded. Only a synced commit proves the disk takes writes again: a batch of refusal
        // counts is written without a sync, and may succeed while the disk is full.
        match &outcome {
            Ok(()) if durable => *self.last_failure.lock() = None,
            Ok(()) => {}
            Err(e) => *self.last_failure.lock() = Some(CommitFailure { at_ms: now_ms, error: e.clone() }),
        }
        match outcome {
            Ok(()) => waiters.into_iter().for_each(|w| w.answer(Ok(()))),
            Err(e) => {
                // Not durable, so not acknowledged, and not applied: the provider's retry is a
                // first copy again.
                tracing::error!(error = %e, "store commit failed after retries; answering 503");
                waiters.into_iter().for_each(|w| w.answer(Err(StoreError::Unavailable(e.clone()))));
                return;
            }
        }
        // After the answers: no waiter needs it.
        if self.checkpoint.at.elapsed() >= CHECKPOINT_EVERY {
            self.checkpoint();
        }
    }

    /// Appends the group's frame to the log (synced if anyone waits on it), then applies it to
    /// sled's tree; each step retried with back-off. On failure the group is nowhere: a frame
    /// that was written but not applied is cut out again.
    fn apply(&mut self, batch: Batch, counters: Batch, durable: bool) -> Result<(), CommitError> {
        let started = Instant::now();
        let Some(end) = self.log.seal(&[&batch, &counters]) else {
            // Nothing changed. A waiter (a flush) still needs earlier groups' frames synced.
            return match durable {
                true => retry(|| self.sync_step(true)),
                false => Ok(()),
            };
        };
        let start = self.log.end();
        if let Err(e) = retry(|| self.sync_step(durable)) {
            self.log.abandon();
            return Err(e);
        }
        let logged = Instant::now();
        // A group of refusal counts alone has nothing for the tree until the next checkpoint.
        let applied = match batch.is_empty() {
            true => Ok(()),
            false => retry(|| log::apply(&self.tree, batch.as_bytes(), None)),
        };
        if let Err(e) = applied {
            if let Err(cut) = self.log.cut(start) {
                let why = format!("a group the database did not take ({e}) could not be cut out of the log ({cut})");
                tracing::error!("{why}");
                self.broken = Some(why);
            }
            return Err(e.into());
        }
        self.checkpoint.logged = Some(end);
        let done = Instant::now();
        if durable {
            self.stats.commit_took(done.duration_since(started).as_micros() as u64);
        }
        if done.duration_since(started) >= SLOW_COMMIT {
            let ms = |from: Instant, to: Instant| to.duration_since(from).as_secs_f64() * 1000.0;
            tracing::warn!(
                log_ms = ms(started, logged),
                apply_ms = ms(logged, done),
                "slow store commit: every request of the batch waited this long"
            );
        }
        Ok(())
    }

    /// Writes the sealed frame, synced if `sync`; the step where a test injects failures.
    fn sync_step(&mut self, sync: bool) -> Result<(), CommitError> {
        if sync && self.fail_flushes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(CommitError::InjectedFlush);
        }
        self.log.write(sync).map_err(CommitError::from)
    }

    /// Writes the counters changed since the last checkpoint and the watermark to the tree, in
    /// one batch; returns whether the tree now holds all the log has. A failure is logged and
    /// retried at the next checkpoint: until then recovery would apply more of the log.
    fn checkpoint(&mut self) -> bool {
        let c = &mut self.checkpoint;
        c.at = Instant::now();
        if c.dirty.is_empty() && c.logged == c.saved {
            return true;
        }
        let mut writes = Batch::default();
        for name in &c.dirty {
            match self.counters.get(name) {
                Some(value) => writes.insert(keys::counter_key(name), value.to_be_bytes()),
                None => writes.remove(keys::counter_key(name)),
            }
        }
        match retry(|| log::apply(&self.tree, writes.as_bytes(), c.logged)) {
            Ok(()) => {
                c.dirty.clear();
                c.saved = c.logged;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the counters to the database; the next checkpoint tries again");
                false
            }
        }
    }

    /// Deletes log segments no record points into. A checkpoint and a flush come first: the
    /// tree's durable watermark must be past every frame in them, or recovery could need one
    /// that is gone.
    fn remove_segments(&mut self, segments: Vec<u32>) {
        if !self.checkpoint() {
            return;
        }
        if let Err(e) = self.db.flush() {
            tracing::warn!(error = %e, "cannot flush the database; empty log segments are kept until the next start");
            return;
        }
        segments.into_iter().for_each(|s| self.log.remove_segment(s));
    }
}

/// What the operations draw on: the writer's id generator, log and clock.
struct WriterEnv<'w> {
    ids: &'w mut ulid::Generator,
    log: &'w mut Log,
    clock: &'w Clock,
    chaos: &'w mut BTreeMap<String, crate::chaos::Chaos>,
}

impl Env for WriterEnv<'_> {
    fn next_id(&mut self) -> Ulid {
        let now = UNIX_EPOCH + Duration::from_millis(self.clock.now_ms().max(0) as u64);
        // The generator only fails when 80 random bits overflow within one millisecond.
        self.ids.generate_from_datetime(now).unwrap_or_else(|_| Ulid::from_datetime(now))
    }

    fn stage_body(&mut self, headers: &[u8], body: &[u8]) -> BodyRef {
        self.log.stage(headers, body)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn chaos(&mut self, provider: &str) -> Option<crate::chaos::Draw> {
        // Without chaos anywhere, the map is empty and this is one length check per event.
        if self.chaos.is_empty() {
            return None;
        }
        self.chaos.get_mut(provider).map(crate::chaos::Chaos::draw)
    }
}

/// Why one step of a commit failed.
#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("injected flush failure")]
    InjectedFlush,
}

const SHUTTING_DOWN: &str = "the store is shutting down";

/// Runs `step` once and then once per back-off entry until it succeeds; the last error if none
/// did.
fn retry<E>(mut step: impl FnMut() -> Result<(), E>) -> Result<(), E> {
    let mut result = step();
    for backoff in RETRY_BACKOFF {
        if result.is_ok() {
            break;
        }
        std::thread::sleep(backoff);
        result = step();
    }
    result
}

fn apply_delta(value: u64, delta: i64) -> u64 {
    if delta >= 0 {
        value.saturating_add(delta as u64)
    } else {
        value.saturating_sub(delta.unsigned_abs())
    }
}

fn refuse(op: Op, why: &str) {
    let reason = || Err(StoreError::Unavailable(why.to_string()));
    match op {
        Op::Ingest(_, ack) => Waiter::Ingest(ack, Ingested { id: Ulid::nil(), duplicate: false }).answer(reason()),
        Op::Outcome(_, ack) | Op::Flush(ack) | Op::Heartbeat(_, ack) | Op::CheckReport(_, _, ack) => {
            Waiter::Done(ack).answer(reason())
        }
        Op::Replay(_, ack) | Op::Delete(_, ack) | Op::Alert(_, ack) => Waiter::Count(ack, 0).answer(reason()),
        Op::Shutdown(ack) => drop(ack.send(())),
        Op::Reject(..) | Op::Begin(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's byte budget counts rejection-log entries as well as bodies: a flood of refused
    /// requests cannot make one batch hold 2048 entries' worth of headers unaccounted.
    #[test]
    fn rejection_entries_count_against_the_batch_budget() {
        let big = vec![b'h'; 4096];
        let headers = (0..12).map(|_| ("x-pad", big.as_slice()));
        let entry = Rejection::bounded(0, "stripe", "invalid_signature", "no", "192.0.2.1", headers, &[b'b'; 4096]);
        let expected = entry.stored_bytes();
        assert!(expected > 4096, "{expected}");
        assert_eq!(Op::Reject("invalid_signature", Some(entry)).bytes(), expected);
        assert_eq!(Op::Reject("rate_limited", None).bytes(), 0);
    }
}
