//! The single writer: group commit.
//!
//! It runs on its own OS thread because sled's API blocks; nothing async runs here. Each turn it
//! takes everything that is pending (up to a bound), decides duplicates against the tree and the
//! batch itself, builds one `sled::Batch` with the records, bodies, dedup keys and new counter
//! values, applies it, flushes once, and only then answers the waiters and publishes the
//! counters. Each step of a commit is retried a few times; if it still fails, every waiter of
//! that batch gets `Unavailable` (a 503, so the provider retries). A batch that never reached the
//! tree leaves no trace; one that did but was not flushed is kept (counters included), and the
//! provider's retry is then acknowledged as a duplicate once a later flush succeeds.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use ulid::Ulid;

use super::record::{encode, EventRecord, EventV1, RejectionRecord, Status};
use super::stats::{duplicates_counter, events_counter, hist_bucket_counter, rejected_counter, Stats};
use super::{keys, Ingested, NewEvent, Rejected, StoreError};
use crate::clock::Clock;

pub(super) enum Op {
    Ingest(NewEvent, oneshot::Sender<Result<Ingested, StoreError>>),
    Reject(Rejected),
    Flush(oneshot::Sender<Result<(), StoreError>>),
    Shutdown(oneshot::Sender<()>),
}

/// Most operations in one batch, and most body bytes: bounds the latency one batch adds.
const MAX_OPS: usize = 2048;
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Waits between attempts of a commit step; the number of entries is the number of retries.
const RETRY_BACKOFF: [Duration; 3] = [Duration::from_millis(5), Duration::from_millis(25), Duration::from_millis(100)];

pub(super) struct Writer {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
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
}

enum Waiter {
    Ingest(oneshot::Sender<Result<Ingested, StoreError>>, Ingested),
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut shutdown = None;
        while let Some(first) = rx.blocking_recv() {
            let mut ops = vec![first];
            let mut bytes = 0;
            while ops.len() < MAX_OPS && bytes < MAX_BYTES {
                match rx.try_recv() {
                    Ok(op) => {
                        if let Op::Ingest(e, _) = &op {
                            bytes += e.body.len();
                        }
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
        let mut batch = sled::Batch::default();
        let mut delta: BTreeMap<String, u64> = BTreeMap::new();
        let mut waiters = Vec::with_capacity(ops.len());
        let mut in_batch: HashMap<Vec<u8>, Ulid> = HashMap::new();
        let mut new_rejections = Vec::new();
        let mut accepted_at: Vec<i64> = Vec::new();
        let mut needs_flush = false;

        for op in ops {
            match op {
                Op::Ingest(event, ack) => {
                    needs_flush = true;
                    let dedup = keys::dedup_key(&event.provider, &event.event_id);
                    let existing = match in_batch.get(&dedup) {
                        Some(id) => Ok(Some(*id)),
                        // A read on this thread: the writer is the only one who inserts dedup
                        // keys, so what it reads here cannot change under it.
                        None => self.tree.get(&dedup).map(|v| v.and_then(|v| keys::ulid_from(&v))),
                    };
                    match existing {
                        Err(e) => {
                            let _ = ack.send(Err(StoreError::Unavailable(format!("dedup lookup failed: {e}"))));
                        }
                        Ok(Some(first)) => {
                            *delta.entry(duplicates_counter(&event.provider)).or_default() += 1;
                            waiters.push(Waiter::Ingest(ack, Ingested { id: first, duplicate: true }));
                        }
                        Ok(None) => {
                            let id = self.next_id();
                            in_batch.insert(dedup.clone(), id);
                            batch.insert(&keys::id_key(keys::BODY, id)[..], &event.body[..]);
                            batch.insert(dedup, &u128::from(id).to_be_bytes()[..]);
                            *delta.entry(events_counter(&event.provider, Status::Received.as_str())).or_default() += 1;
                            *delta.entry(hist_bucket_counter(event.processing_us)).or_default() += 1;
                            accepted_at.push(event.received_at_ms);
                            let record = EventRecord::V1(EventV1 {
                                provider: event.provider,
                                event_id: event.event_id,
                                event_type: event.event_type,
                                received_at_ms: event.received_at_ms,
                                source_ip: event.source_ip,
                                headers: event.headers,
                                body_len: event.body.len() as u64,
                                signature_verified: true,
                                status: Status::Received,
                                processing_us: event.processing_us,
                                attempts: 0,
                                last_error: None,
                                errors: Vec::new(),
                            });
                            batch.insert(&keys::id_key(keys::EVENT, id)[..], encode(&record));
                            waiters.push(Waiter::Ingest(ack, Ingested { id, duplicate: false }));
                        }
                    }
                }
                Op::Reject(r) => {
                    *delta.entry(rejected_counter(r.code)).or_default() += 1;
                    if let Some(entry) = r.log {
                        let key = keys::id_key(keys::REJECTION, self.next_id()).to_vec();
                        batch.insert(key.clone(), encode(&RejectionRecord::V1(entry)));
                        new_rejections.push(key);
                    }
                }
                Op::Flush(ack) => {
                    needs_flush = true;
                    waiters.push(Waiter::Flush(ack));
                }
                Op::Shutdown(_) => unreachable!("run() splits shutdown off before commit"),
            }
        }

        // Bound the rejection log: evict the oldest in this same batch.
        let mut evicted = 0;
        let overflow = (self.rejections.len() + new_rejections.len()).saturating_sub(self.rejection_cap);
        for key in self.rejections.iter().take(overflow) {
            batch.remove(key.clone());
            evicted += 1;
        }
        // More new entries than the whole cap: keep only the newest of them.
        let skip_new = overflow.saturating_sub(evicted);
        for key in new_rejections.iter().take(skip_new) {
            batch.remove(key.clone());
        }

        for (name, d) in &delta {
            let value = self.counters.get(name).copied().unwrap_or(0) + d;
            batch.insert(keys::counter_key(name), &value.to_be_bytes()[..]);
        }

        let outcome = self.apply(batch, needs_flush);
        if !matches!(outcome, Err(Failure::NotApplied(_))) {
            // The batch is in the tree (durable or not): the in-memory mirror must follow it, or
            // the next batch would write counters that disagree with the records.
            for (name, d) in &delta {
                *self.counters.entry(name.clone()).or_default() += d;
            }
            self.rejections.drain(..evicted);
            self.rejections.extend(new_rejections.into_iter().skip(skip_new));
            self.stats.add(&delta);
            for ms in accepted_at {
                self.stats.note_accepted(ms.div_euclid(1000), 1);
            }
        }
        match outcome {
            Ok(()) => {
                for w in waiters {
                    match w {
                        Waiter::Ingest(ack, outcome) => drop(ack.send(Ok(outcome))),
                        Waiter::Flush(ack) => drop(ack.send(Ok(()))),
                    }
                }
            }
            Err(Failure::NotApplied(e) | Failure::NotFlushed(e)) => {
                // Not durable, so not acknowledged: the provider retries. If the batch was
                // applied but not flushed, the retry finds the event and is acknowledged as a
                // duplicate only after a later flush succeeds.
                tracing::error!(error = %e, "store commit failed after retries; answering 503");
                for w in waiters {
                    let err = StoreError::Unavailable(e.clone());
                    match w {
                        Waiter::Ingest(ack, _) => drop(ack.send(Err(err))),
                        Waiter::Flush(ack) => drop(ack.send(Err(err))),
                    }
                }
            }
        }
    }

    /// Applies the batch atomically, then, if anyone waits for durability, flushes; each step is
    /// retried with back-off, and a flush retry does not apply the batch again.
    fn apply(&self, batch: sled::Batch, needs_flush: bool) -> Result<(), Failure> {
        retry(|| self.tree.apply_batch(batch.clone()).map_err(|e| e.to_string())).map_err(Failure::NotApplied)?;
        if !needs_flush {
            return Ok(());
        }
        retry(|| {
            if self.fail_flushes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err("injected flush failure".to_string());
            }
            self.db.flush().map(drop).map_err(|e| e.to_string())
        })
        .map_err(Failure::NotFlushed)
    }

    fn next_id(&mut self) -> Ulid {
        let now = UNIX_EPOCH + Duration::from_millis(self.clock.now_ms().max(0) as u64);
        // The generator only fails when 80 random bits overflow within one millisecond.
        self.ids.generate_from_datetime(now).unwrap_or_else(|_| Ulid::from_datetime(now))
    }
}

/// How a commit failed: before the batch reached the tree, or after (in the tree, not on disk).
enum Failure {
    NotApplied(String),
    NotFlushed(String),
}

/// Runs `step` once and then once per back-off entry until it succeeds.
fn retry(mut step: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let mut last = String::new();
    for backoff in std::iter::once(Duration::ZERO).chain(RETRY_BACKOFF) {
        std::thread::sleep(backoff);
        match step() {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn refuse(op: Op) {
    let err = || StoreError::Unavailable("the store is shutting down".into());
    match op {
        Op::Ingest(_, ack) => drop(ack.send(Err(err()))),
        Op::Flush(ack) => drop(ack.send(Err(err()))),
        Op::Shutdown(ack) => drop(ack.send(())),
        Op::Reject(_) => {}
    }
}
