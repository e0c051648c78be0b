//! The single writer: group commit.
//!
//! It runs on its own OS thread because sled's API blocks; nothing async runs here. Each turn it
//! takes everything that is pending (up to a bound), runs each operation through [`Ops`]
//! (`ops.rs`: what an operation does to the batch, duplicates decided against the tree and the
//! batch itself), builds one `sled::Batch` with the records, bodies, dedup keys and new counter
//! values, applies it, flushes once, and only then answers the waiters and publishes the
//! counters. Each step of a commit is retried a few times; if it still fails, every waiter of
//! that batch gets `Unavailable` (a 503, so the provider retries). A batch that never reached the
//! tree leaves no trace; one that did but was not flushed is kept (counters included), and the
//! provider's retry is then acknowledged as a duplicate once a later flush succeeds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use ulid::Ulid;

use super::bodies::{segment_counter, segment_of_counter, BodyLog, BodyLogError};
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
/// A commit this slow is logged with where its time went (a sign of a slow or busy disk).
const SLOW_COMMIT: Duration = Duration::from_millis(100);
/// Waits between attempts of a commit step; the number of entries is the number of retries.
const RETRY_BACKOFF: [Duration; 3] = [Duration::from_millis(5), Duration::from_millis(25), Duration::from_millis(100)];

pub(super) struct Writer {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    pub(super) bodies: BodyLog,
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
                    refuse(op);
                }
                break;
            }
            self.commit(ops);
        }
        rx.close();
        while let Ok(op) = rx.try_recv() {
            refuse(op);
        }
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final flush of the store failed");
        }
        if let Some(ack) = shutdown {
            let _ = ack.send(());
        }
    }

    fn commit(&mut self, ops: Vec<Op>) {
        if let Err(e) = self.bodies.roll_if_full() {
            tracing::warn!(error = %e, "cannot start a new body segment; appending to the current one");
        }
        let tree = self.tree.clone();
        let env =
            WriterEnv { ids: &mut self.ids, bodies: &mut self.bodies, clock: &self.clock, chaos: &mut self.chaos };
        let mut pending = Pending::new(&tree);
        if self.feed.recording() {
            pending.track_changes();
        }
        let mut m = Ops::new(pending, env);
        let mut waiters = Vec::with_capacity(ops.len());
        let mut new_rejections = Vec::new();
        let mut needs_flush = false;

        for op in ops {
            // Every operation but a refusal count is waited on, and so must be durable. A heartbeat
            // is waited on too, but needs no fsync of its own: sled's flusher writes it within
            // half a second, and one lost in a crash is only a few seconds older than the truth.
            needs_flush |= !matches!(op, Op::Reject(..) | Op::Begin(_) | Op::Heartbeat(..));
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
        let (mut batch, delta, changes) = p.finish(now_ms);
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
                batch.remove(keys::counter_key(k));
            }
        }
        let mut emptied_segments = Vec::new();
        for (name, d) in &delta {
            let value = apply_delta(self.counters.get(name).copied().unwrap_or(0), *d);
            match segment_of_counter(name) {
                Some(segment) if value == 0 && segment != self.bodies.current_segment() => {
                    batch.remove(keys::counter_key(name));
                    emptied_segments.push(segment);
                }
                _ => batch.insert(keys::counter_key(name), &value.to_be_bytes()[..]),
            }
        }

        let outcome = self.apply(batch, needs_flush).map_err(|f| match f {
            Failure::NotApplied(e) => Failure::NotApplied(e.to_string()),
            Failure::NotFlushed(e) => Failure::NotFlushed(e.to_string()),
        });
        if !matches!(outcome, Err(Failure::NotApplied(_))) {
            // The batch is in the tree (durable or not): the in-memory mirror must follow it, or
            // the next batch would write counters that disagree with the records.
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
        }
        if outcome.is_ok() {
            self.feed.publish(changes);
            // No record points into these any more, durably: their files can go.
            for segment in emptied_segments {
                let name = segment_counter(segment);
                self.counters.remove(&name);
                self.stats.remove(&[name]);
                self.bodies.remove_segment(segment);
            }
        }
        // Health follows before anyone is answered, so a client that got a 503 finds the store
        // degraded. Only a flushed commit proves the disk takes writes again: a batch of refusal
        // counts applies to memory even when the disk is full.
        match &outcome {
            Ok(()) if needs_flush => *self.last_failure.lock() = None,
            Ok(()) => {}
            Err(Failure::NotApplied(e) | Failure::NotFlushed(e)) => {
                *self.last_failure.lock() = Some(CommitFailure { at_ms: now_ms, error: e.clone() });
            }
        }
        match outcome {
            Ok(()) => waiters.into_iter().for_each(|w| w.answer(Ok(()))),
            Err(Failure::NotApplied(e) | Failure::NotFlushed(e)) => {
                // Not durable, so not acknowledged: the provider retries. If the batch was
                // applied but not flushed, the retry finds the event and is acknowledged as a
                // duplicate only after a later flush succeeds.
                tracing::error!(error = %e, "store commit failed after retries; answering 503");
                waiters.into_iter().for_each(|w| w.answer(Err(StoreError::Unavailable(e.clone()))));
            }
        }
    }

    /// Applies the batch atomically, then, if anyone waits for durability, flushes; each step is
    /// retried with back-off, and a flush retry does not apply the batch again.
    fn apply(&mut self, batch: sled::Batch, needs_flush: bool) -> Result<(), Failure<CommitError>> {
        let started = Instant::now();
        // Bodies first: the batch must never point at bytes that are not on disk.
        if let Err(e) = retry(|| self.bodies.commit()) {
            self.bodies.abandon();
            return Err(Failure::NotApplied(e.into()));
        }
        let bodies_done = Instant::now();
        retry(|| self.tree.apply_batch(batch.clone())).map_err(|e| Failure::NotApplied(e.into()))?;
        let applied = Instant::now();
        if needs_flush {
            retry(|| {
                if self.fail_flushes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                    return Err(CommitError::InjectedFlush);
                }
                self.db.flush().map(drop).map_err(CommitError::from)
            })
            .map_err(Failure::NotFlushed)?;
        }
        let done = Instant::now();
        if needs_flush {
            self.stats.commit_took(done.duration_since(started).as_micros() as u64);
        }
        if done.duration_since(started) >= SLOW_COMMIT {
            let ms = |from: Instant, to: Instant| to.duration_since(from).as_secs_f64() * 1000.0;
            tracing::warn!(
                bodies_ms = ms(started, bodies_done),
                apply_ms = ms(bodies_done, applied),
                flush_ms = ms(applied, done),
                "slow store commit: every request of the batch waited this long"
            );
        }
        Ok(())
    }
}

/// What the operations draw on: the writer's id generator, body log and clock.
struct WriterEnv<'w> {
    ids: &'w mut ulid::Generator,
    bodies: &'w mut BodyLog,
    clock: &'w Clock,
    chaos: &'w mut BTreeMap<String, crate::chaos::Chaos>,
}

impl Env for WriterEnv<'_> {
    fn next_id(&mut self) -> Ulid {
        let now = UNIX_EPOCH + Duration::from_millis(self.clock.now_ms().max(0) as u64);
        // The generator only fails when 80 random bits overflow within one millisecond.
        self.ids.generate_from_datetime(now).unwrap_or_else(|_| Ulid::from_datetime(now))
    }

    fn stage_body(&mut self, body: &[u8]) -> BodyRef {
        self.bodies.stage(body)
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

/// How a commit failed: before the batch reached the tree, or after (in the tree, not on disk).
/// The commit keeps the reason as text: it goes to the health check and to every waiter.
enum Failure<E = String> {
    NotApplied(E),
    NotFlushed(E),
}

/// Why one step of a commit failed.
#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error(transparent)]
    Bodies(#[from] BodyLogError),
    #[error("{0}")]
    Tree(#[from] sled::Error),
    #[error("injected flush failure")]
    InjectedFlush,
}

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

fn refuse(op: Op) {
    let reason = || Err(StoreError::Unavailable("the store is shutting down".into()));
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
