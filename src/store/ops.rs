//! What each writer operation does to the batch being built: the per-operation state machine
//! (ingest with dedup, refusal, begin, outcome, replay, delete), on top of [`Pending`].
//!
//! Nothing here commits, flushes or retries: that is the writer's. Everything here reads through
//! [`Pending`] (so through [`Reads`]) and takes ids, body places and the time from an [`Env`],
//! so the tests below run every operation against a `BTreeMap` without a database.

use std::collections::BTreeMap;

use ulid::Ulid;

use super::bodies::segment_counter;
use super::keys;
use super::pending::{LoadError, Pending, Reads};
use super::record::encode_alert_state;
use super::record::{
    decode_attempt, decode_job, encode_attempt, encode_job, encode_rejection, BodyRef, DecodeError, ErrorEntry, Event,
    Job, Rejection, Source, Status,
};
use super::stats::{
    backfilled_counter, dead_letters_counter, delivered_after_counter, delivery_hist_bucket_counter,
    duplicates_counter, events_counter, failures_counter, hist_bucket_counter, items_counter, minute_counter,
    rejected_counter, second_counter, DELIVERY_HIST_SUM_US, HIST_SUM_US, QUEUE_DEPTH, RETENTION_DELETED,
};
use super::stats::{is_stored_only, stored_only_counter};
use super::{AlertChange, Ingested, NewEvent, Next, Outcome};

/// What an operation needs from outside the batch: new ids, a place in the body log, the time.
pub(super) trait Env {
    /// A new id, after every id given before (ids, and so keys, follow commit order).
    fn next_id(&mut self) -> Ulid;
    /// Stages a body for the commit and says where it will be.
    fn stage_body(&mut self, body: &[u8]) -> BodyRef;
    fn now_ms(&self) -> i64;
}

/// Why one operation was refused while the batch was built; the rest of the batch goes ahead.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpError {
    #[error("dedup lookup failed: {0}")]
    Dedup(sled::Error),
    #[error("{0}")]
    Read(#[from] sled::Error),
    /// An event record that does not decode, where the operation needs it.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The event's latest attempt record does not decode, so a replay cannot number its series.
    #[error("{0}")]
    Attempt(#[from] DecodeError),
}

/// The batch being built, the environment it draws on, and whether it queued jobs.
pub(super) struct Ops<'t, R: Reads, E: Env> {
    pub p: Pending<'t, R>,
    env: E,
    /// Set when an operation queued a job, so the engine is woken after the commit.
    pub jobs_added: bool,
    /// A job a replay queued, per provider (the last one): the engine may send it at once as
    /// its breaker's probe, so a person's replay is not held back by an open breaker.
    pub replayed: BTreeMap<String, Vec<u8>>,
}

impl<'t, R: Reads, E: Env> Ops<'t, R, E> {
    pub fn new(p: Pending<'t, R>, env: E) -> Self {
        Ops { p, env, jobs_added: false, replayed: BTreeMap::new() }
    }

    /// Records an event, or finds its first copy (in the tree or earlier in this batch).
    pub fn ingest(&mut self, event: NewEvent) -> Result<Ingested, OpError> {
        let p = &mut self.p;
        let dedup = keys::dedup_key(&event.provider, &event.event_id);
        if event.parent.is_none() {
            let existing = p.get(&dedup).map_err(OpError::Dedup)?;
            if let Some(first) = existing.and_then(|v| keys::ulid_from(&v)) {
                p.count(duplicates_counter(&event.provider), 1);
                return Ok(Ingested { id: first, duplicate: true });
            }
        }
        let id = self.env.next_id();
        let body = self.env.stage_body(&event.body);
        p.count(segment_counter(body.segment), 1);
        if event.parent.is_none() {
            p.insert(dedup, u128::from(id).to_be_bytes().to_vec());
            // The histogram is of provider requests' handling; a copy was not one.
            p.count(hist_bucket_counter(event.processing_us), 1);
            p.count(HIST_SUM_US.to_string(), event.processing_us as i64);
        }
        p.count(minute_counter(&event.provider, event.received_at_ms.div_euclid(60_000)), 1);
        p.count(items_counter(&event.provider), i64::from(event.items));
        p.count(second_counter(event.received_at_ms.div_euclid(1000)), 1);
        if event.source == Source::Backfill {
            p.count(backfilled_counter(&event.provider), 1);
        }
        // With nowhere to deliver, recording is all the processing there is.
        let status = if event.targets.is_empty() { Status::Processed } else { Status::Received };
        for (i, target) in event.targets.iter().enumerate() {
            let job = Job { target: target.clone(), attempt: 1, series: 1 };
            add_job(p, &event.provider, event.received_at_ms, id, i as u8, job);
            self.jobs_added = true;
        }
        p.new_event(
            id,
            Event {
                provider: event.provider,
                event_id: event.event_id,
                event_type: event.event_type,
                received_at_ms: event.received_at_ms,
                source_ip: event.source_ip,
                headers: event.headers,
                body_len: event.body.len() as u64,
                signature_verified: event.parent.is_none() && event.source == Source::Webhook,
                status,
                processing_us: event.processing_us,
                attempts: 0,
                last_error: None,
                errors: Vec::new(),
                parent: event.parent,
                source: event.source,
            },
            body,
        );
        Ok(Ingested { id, duplicate: false })
    }

    /// Records alerts' new states with the notifications they send, so the two are durable
    /// together: after a crash either both are there or neither. A notification is an event of
    /// its notifier's lane, so its delivery is a job like any other. Returns how many were queued.
    pub fn alert(&mut self, changes: Vec<AlertChange>) -> Result<usize, OpError> {
        let mut queued = 0;
        for change in changes {
            // The notifications first: if one cannot be read for its duplicate check, the
            // state is left as it was, and the next evaluation tries again.
            for n in change.notifications {
                if !self.ingest(n)?.duplicate {
                    queued += 1;
                }
            }
            let key = keys::alert_key(&change.key);
            match change.state {
                Some(state) => self.p.insert(key, encode_alert_state(state)),
                None => self.p.remove(key),
            }
        }
        Ok(queued)
    }

    /// Counts a refusal and, when it is to be kept, adds its entry to the rejection log; returns
    /// the entry's key, for the writer to bound the log.
    pub fn reject(&mut self, code: &str, log: Option<Rejection>) -> Option<Vec<u8>> {
        self.p.count(rejected_counter(code), 1);
        let entry = log?;
        let key = keys::id_key(keys::REJECTION, self.env.next_id()).to_vec();
        self.p.insert_blind(&key, &encode_rejection(entry));
        Some(key)
    }

    /// A delivery starts: `processing`, from `received` or `retrying` only.
    pub fn begin(&mut self, id: Ulid) -> Result<(), OpError> {
        let status = self.p.event(id)?.map(|e| e.status);
        if matches!(status, Some(Status::Received | Status::Retrying)) {
            self.p.set_status(id, Status::Processing)?;
        }
        Ok(())
    }

    /// Records an attempt and what follows from it: done, a retry queued, or a dead letter.
    pub fn outcome(&mut self, o: Outcome) -> Result<(), OpError> {
        let p = &mut self.p;
        let event = match p.event(o.id) {
            Ok(event) => event,
            Err(LoadError::Damaged(_)) => return settle_without_record(p, o),
            Err(e) => return Err(e.into()),
        };
        let Some(event) = event else {
            // Deleted meanwhile: nothing to record, but the job must not run again, and the
            // queue is one shorter if it was still there.
            if p.get(&o.job_key)?.is_some() {
                p.count(QUEUE_DEPTH.into(), -1);
            }
            p.remove(o.job_key.clone());
            p.remove(keys::job_of_key(o.id, o.target).to_vec());
            return Ok(());
        };
        let provider = event.provider.clone();
        let seq = event.attempts;
        event.attempts += 1;
        if let Some(err) = &o.attempt.error {
            event.last_error = Some(err.clone());
            event.errors.push(ErrorEntry { at_ms: o.attempt.at_ms, message: err.clone() });
        }
        if let Some(reason) = o.failure_reason {
            p.count(failures_counter(reason), 1);
        }
        p.count(delivery_hist_bucket_counter(o.attempt.duration_us), 1);
        p.count(DELIVERY_HIST_SUM_US.to_string(), o.attempt.duration_us as i64);
        p.insert(keys::attempt_key(o.id, seq).to_vec(), encode_attempt(o.attempt.clone()));

        if !dequeue_attempted(p, &o)? {
            // A replay replaced this job while the attempt ran: the history keeps the attempt,
            // the new series decides what happens next.
            return Ok(());
        }
        match o.next {
            Next::Done => {
                p.count(delivered_after_counter(o.attempt.attempt), 1);
                let others = p.keys_with_prefix(&keys::id_key(keys::JOB_OF, o.id))?;
                let failed = p.event(o.id)?.is_some_and(|e| e.status == Status::Failed);
                if others.is_empty() && !failed {
                    p.set_status(o.id, Status::Processed)?;
                }
            }
            Next::RetryAt { due_ms, job } => {
                add_job(p, &provider, due_ms, o.id, o.target, job);
                self.jobs_added = true;
                p.set_status(o.id, Status::Retrying)?;
            }
            Next::DeadLetter => {
                p.count(dead_letters_counter(&provider), 1);
                p.set_status(o.id, Status::Failed)?;
            }
        }
        Ok(())
    }

    /// A new attempt series, due now, for each event to its targets; returns how many events.
    pub fn replay(&mut self, items: Vec<(Ulid, Vec<String>)>) -> Result<usize, OpError> {
        let now = self.env.now_ms();
        let p = &mut self.p;
        let mut replayed = 0;
        for (id, targets) in items {
            let Some(event) = p.event(id)? else { continue };
            let provider = event.provider.clone();
            // After the latest series recorded or still queued: an attempt in flight has no
            // record yet, and its job stays queued until its outcome is, so a replay during a
            // series' first attempt must still count past that series.
            let mut series = last_series(p, id)?;
            let queued = p.keys_with_prefix(&keys::id_key(keys::JOB_OF, id))?;
            for key in &queued {
                if let Some(job_key) = p.get(key)? {
                    if let Some(Ok(job)) = p.get(&job_key)?.map(|v| decode_job(&v)) {
                        series = series.max(job.series);
                    }
                }
            }
            let series = series + 1;
            // Cancel what is still queued: the new series replaces it.
            for key in queued {
                if let Some(job_key) = p.get(&key)? {
                    p.remove(job_key);
                    p.count(QUEUE_DEPTH.into(), -1);
                }
                p.remove(key);
            }
            for (i, target) in targets.into_iter().enumerate() {
                let key = add_job(p, &provider, now, id, i as u8, Job { target, attempt: 1, series });
                self.replayed.insert(provider.clone(), key);
                self.jobs_added = true;
            }
            p.set_status(id, Status::Received)?;
            replayed += 1;
        }
        Ok(replayed)
    }

    /// Retention: deletes these events, each unless a delivery of it is queued; returns how many.
    pub fn delete(&mut self, ids: Vec<Ulid>) -> Result<usize, OpError> {
        let p = &mut self.p;
        let mut deleted = 0;
        for id in ids {
            if !p.keys_with_prefix(&keys::id_key(keys::JOB_OF, id))?.is_empty() {
                continue; // A delivery is pending: never delete under it.
            }
            let event = match p.event(id) {
                Ok(event) => event.cloned(),
                // Without the record, neither its body's segment nor its dedup key is known:
                // deleting part of it would leave the rest to dangle. It is passed over, like an
                // event with a pending delivery, so it never holds up the events after it.
                Err(LoadError::Damaged(what)) => {
                    tracing::warn!(%id, damage = %what, "retention passes over an event whose record does not decode");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(event) = event else { continue };
            if let Some(BodyRef { segment, .. }) = p.body_ref(id)? {
                p.count(segment_counter(segment), -1);
            }
            p.forget_event(id);
            p.remove(keys::id_key(keys::EVENT, id).to_vec());
            p.remove(keys::id_key(keys::BODY, id).to_vec());
            // Only this event's own claim: an edited copy shares its parent's event id, and
            // deleting the copy must not let the provider's retry of the parent in again.
            let dedup = keys::dedup_key(&event.provider, &event.event_id);
            if p.get(&dedup)?.and_then(|v| keys::ulid_from(&v)) == Some(id) {
                p.remove(dedup);
            }
            for seq in 0..event.attempts {
                p.remove(keys::attempt_key(id, seq).to_vec());
            }
            p.count(events_counter(&event.provider, event.status.as_str()), -1);
            if is_stored_only(event.status, event.attempts) {
                p.count(stored_only_counter(&event.provider), -1);
            }
            p.count(RETENTION_DELETED.into(), 1);
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// The series of the event's latest attempt (0 before any), as the tree has it: attempts of this
/// batch are not counted, exactly as before the batch view existed.
fn last_series<R: Reads>(p: &Pending<R>, id: Ulid) -> Result<u32, OpError> {
    match p.base().last_value_with_prefix(&keys::id_key(keys::ATTEMPT, id))? {
        None => Ok(0),
        Some(v) => Ok(decode_attempt(&v)?.series),
    }
}

/// The outcome of a job whose event record does not decode: the record cannot be changed
/// without losing what is left of it, so the job alone is settled. Nothing can be delivered for an
/// event that cannot be read, so whatever the outcome asked, the job leaves the queue as a dead
/// letter; its attempt is kept in the history and counted.
fn settle_without_record<R: Reads>(p: &mut Pending<R>, o: Outcome) -> Result<(), OpError> {
    let attempts = p.keys_with_prefix(&keys::id_key(keys::ATTEMPT, o.id))?;
    let seq = attempts.last().and_then(|k| keys::attempt_seq(k)).map_or(0, |n| n + 1);
    p.insert(keys::attempt_key(o.id, seq).to_vec(), encode_attempt(o.attempt.clone()));
    if let Some(reason) = o.failure_reason {
        p.count(failures_counter(reason), 1);
    }
    if !dequeue_attempted(p, &o)? {
        return Ok(());
    }
    if let Some(provider) = keys::job_provider(&o.job_key) {
        p.count(dead_letters_counter(provider), 1);
    }
    Ok(())
}

/// Takes the attempted job and its index entry off the queue, unless a replay replaced the job
/// while the attempt ran; says whether it did.
fn dequeue_attempted<R: Reads>(p: &mut Pending<R>, o: &Outcome) -> Result<bool, OpError> {
    let job_of = keys::job_of_key(o.id, o.target).to_vec();
    if p.get(&job_of)?.as_deref() != Some(&o.job_key[..]) {
        return Ok(false);
    }
    p.remove(o.job_key.clone());
    p.remove(job_of);
    p.count(QUEUE_DEPTH.into(), -1);
    Ok(true)
}

/// Queues a job and its index entry; returns the job's key.
fn add_job<R: Reads>(p: &mut Pending<R>, provider: &str, due_ms: i64, id: Ulid, target: u8, job: Job) -> Vec<u8> {
    let key = keys::job_key(provider, due_ms, id, target);
    p.insert(keys::job_of_key(id, target).to_vec(), key.clone());
    p.insert(key.clone(), encode_job(job));
    p.count(QUEUE_DEPTH.into(), 1);
    key
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;

    use super::*;
    use crate::store::record::{decode_event, AttemptOutcome};
    use crate::store::{Attempt, Outcome};

    const NOW: i64 = 1_700_000_000_000;
    const APP: &str = "http://app/hook";

    /// Ids in order, bodies one after another in segment 1, and a clock that stands still.
    #[derive(Default)]
    struct TestEnv {
        ids: u128,
        staged: u64,
    }

    impl Env for &mut TestEnv {
        fn next_id(&mut self) -> Ulid {
            self.ids += 1;
            Ulid::from_parts(NOW as u64, self.ids)
        }

        fn stage_body(&mut self, body: &[u8]) -> BodyRef {
            let offset = self.staged;
            self.staged += body.len() as u64;
            BodyRef { segment: 1, offset, len: body.len() as u32, crc32: 0 }
        }

        fn now_ms(&self) -> i64 {
            NOW
        }
    }

    /// A store without a database: the tree is a map, and a batch is applied to it whole.
    #[derive(Default)]
    struct World {
        tree: BTreeMap<Vec<u8>, Vec<u8>>,
        counters: BTreeMap<String, i64>,
        env: TestEnv,
        /// Our id of each event ingested, by the number the steps give it.
        ids: BTreeMap<u32, Ulid>,
    }

    impl World {
        fn batch<T>(&mut self, f: impl FnOnce(&mut Ops<BTreeMap<Vec<u8>, Vec<u8>>, &mut TestEnv>) -> T) -> T {
            let mut ops = Ops::new(Pending::new(&self.tree), &mut self.env);
            let out = f(&mut ops);
            let (writes, delta) = ops.p.into_writes();
            for (k, v) in writes {
                match v {
                    Some(v) => self.tree.insert(k, v),
                    None => self.tree.remove(&k),
                };
            }
            for (name, d) in delta {
                *self.counters.entry(name).or_default() += d;
            }
            out
        }

        fn counter(&self, name: &str) -> i64 {
            self.counters.get(name).copied().unwrap_or(0)
        }

        fn event(&self, n: u32) -> Option<Event> {
            let bytes = self.tree.get(&keys::id_key(keys::EVENT, self.ids[&n])[..])?;
            Some(decode_event(bytes).unwrap().0)
        }

        /// The event's queued job for target 0: its key and record.
        fn job(&self, n: u32) -> Option<(Vec<u8>, Job)> {
            let key = self.tree.get(&keys::job_of_key(self.ids[&n], 0)[..])?.clone();
            let job = decode_job(&self.tree[&key]).unwrap();
            Some((key, job))
        }
    }

    /// One step of a scenario.
    #[derive(Clone, Copy)]
    enum Step {
        /// Event `n` (provider event id `evt_n`) with this many targets.
        Ingest(u32, usize),
        Begin(u32),
        /// The outcome of event `n`'s queued job (target 0).
        Outcome(u32, Then),
        Replay(u32),
        Delete(u32),
        /// Event `n`'s record stops decoding, as a faulty write would leave it.
        Damage(u32),
        /// Event `n`'s record is gone while its job is still queued.
        Vanish(u32),
        /// The batch so far is committed; the next steps are a new batch.
        Commit,
    }

    #[derive(Clone, Copy)]
    enum Then {
        Done,
        Retry,
        DeadLetter,
    }

    /// What each step answered, in order (ingest: `dup`/`new`; replay and delete: the count;
    /// begin and outcome: `ok`; any error: `err`).
    fn run(steps: &[Step]) -> (World, Vec<String>) {
        let mut w = World::default();
        let mut answers = Vec::new();
        let mut batch: Vec<Step> = Vec::new();
        for &step in steps.iter().chain([Step::Commit].iter()) {
            if !matches!(step, Step::Commit) {
                batch.push(step);
                continue;
            }
            // Jobs and ids are looked up before the batch, as the engine sees the queue.
            let prepared: Vec<(Step, Option<Outcome>)> = batch
                .drain(..)
                .map(|s| match s {
                    Step::Outcome(n, then) => {
                        let (key, job) = w.job(n).expect("a queued job to have an outcome for");
                        (s, Some(outcome(w.ids[&n], key, job, then)))
                    }
                    _ => (s, None),
                })
                .collect();
            for (s, _) in &prepared {
                match s {
                    Step::Damage(n) => {
                        drop(w.tree.insert(keys::id_key(keys::EVENT, w.ids[n]).to_vec(), vec![0xff, 0xff]))
                    }
                    Step::Vanish(n) => drop(w.tree.remove(&keys::id_key(keys::EVENT, w.ids[n])[..])),
                    _ => {}
                }
            }
            let ids = w.ids.clone();
            let got: Vec<(Option<(u32, Ulid)>, String)> = w.batch(|ops| {
                prepared
                    .into_iter()
                    .filter(|(s, _)| !matches!(s, Step::Damage(_) | Step::Vanish(_)))
                    .map(|(s, o)| match s {
                        Step::Ingest(n, targets) => match ops.ingest(new_event(n, targets)) {
                            Ok(done) => (Some((n, done.id)), if done.duplicate { "dup" } else { "new" }.to_string()),
                            Err(_) => (None, "err".into()),
                        },
                        Step::Begin(n) => (None, answer(ops.begin(ids[&n]).map(|()| "ok"))),
                        Step::Outcome(..) => (None, answer(ops.outcome(o.unwrap()).map(|()| "ok"))),
                        Step::Replay(n) => (None, answer(ops.replay(vec![(ids[&n], vec![APP.into()])]))),
                        Step::Delete(n) => (None, answer(ops.delete(vec![ids[&n]]))),
                        Step::Damage(_) | Step::Vanish(_) | Step::Commit => unreachable!(),
                    })
                    .collect()
            });
            for (id, a) in got {
                if let Some((n, id)) = id {
                    w.ids.entry(n).or_insert(id);
                }
                answers.push(a);
            }
        }
        (w, answers)
    }

    fn answer<T: ToString>(r: Result<T, OpError>) -> String {
        r.map_or_else(|_| "err".into(), |v| v.to_string())
    }

    fn new_event(n: u32, targets: usize) -> NewEvent {
        NewEvent {
            provider: "stripe".into(),
            event_id: format!("evt_{n}"),
            event_type: "charge.succeeded".into(),
            received_at_ms: NOW,
            source_ip: "192.0.2.1".into(),
            headers: vec![],
            body: Bytes::from_static(b"{}"),
            processing_us: 1,
            targets: (0..targets).map(|i| format!("{APP}/{i}")).collect(),
            items: 1,
            parent: None,
            source: Default::default(),
        }
    }

    fn outcome(id: Ulid, job_key: Vec<u8>, job: Job, then: Then) -> Outcome {
        let (outcome, next, reason) = match then {
            Then::Done => (AttemptOutcome::Delivered, Next::Done, None),
            Then::Retry => (
                AttemptOutcome::WillRetry,
                Next::RetryAt { due_ms: NOW + 1000, job: Job { attempt: job.attempt + 1, ..job.clone() } },
                Some("http_5xx"),
            ),
            Then::DeadLetter => (AttemptOutcome::Failed, Next::DeadLetter, Some("http_4xx")),
        };
        let attempt = Attempt {
            series: job.series,
            attempt: job.attempt,
            at_ms: NOW,
            target: job.target.clone(),
            status: Some(if reason.is_some() { 500 } else { 200 }),
            error: reason.map(|r| r.to_string()),
            duration_us: 1,
            outcome,
            answer: None,
            slower_than: None,
        };
        Outcome { job_key, id, target: 0, attempt, failure_reason: reason, next }
    }

    /// What a scenario must leave: event 0's status (`None`: no record), the queue depth, and
    /// counters that must hold these values.
    struct Expect {
        answers: &'static [&'static str],
        status: Option<Status>,
        queue: i64,
        counters: &'static [(&'static str, i64)],
    }

    use Step::*;
    use Then::*;

    #[test]
    fn each_operation_changes_the_batch_as_it_should() {
        let table: Vec<(&str, Vec<Step>, Expect)> = vec![
            (
                "an event with targets is received, with one job per target",
                vec![Ingest(0, 2)],
                Expect {
                    answers: &["new"],
                    status: Some(Status::Received),
                    queue: 2,
                    counters: &[("events/stripe/received", 1), ("items/stripe", 1), ("segment/00000001", 1)],
                },
            ),
            (
                "an event without targets is processed at once",
                vec![Ingest(0, 0)],
                Expect {
                    answers: &["new"],
                    status: Some(Status::Processed),
                    queue: 0,
                    counters: &[("events/stripe/processed", 1), ("stored_only/stripe", 1)],
                },
            ),
            (
                "a stored-only event replayed to a target is stored only no more",
                vec![Ingest(0, 0), Commit, Replay(0)],
                Expect {
                    answers: &["new", "1"],
                    status: Some(Status::Received),
                    queue: 1,
                    counters: &[("events/stripe/processed", 0), ("stored_only/stripe", 0)],
                },
            ),
            (
                "retention deletes a stored-only event from its count",
                vec![Ingest(0, 0), Commit, Delete(0)],
                Expect {
                    answers: &["new", "1"],
                    status: None,
                    queue: 0,
                    counters: &[("events/stripe/processed", 0), ("stored_only/stripe", 0)],
                },
            ),
            (
                "a duplicate in the same batch is found in the batch",
                vec![Ingest(0, 1), Ingest(0, 1)],
                Expect {
                    answers: &["new", "dup"],
                    status: Some(Status::Received),
                    queue: 1,
                    counters: &[("duplicates/stripe", 1), ("events/stripe/received", 1), ("segment/00000001", 1)],
                },
            ),
            (
                "a duplicate in a later batch is found in the tree",
                vec![Ingest(0, 1), Commit, Ingest(0, 1)],
                Expect {
                    answers: &["new", "dup"],
                    status: Some(Status::Received),
                    queue: 1,
                    counters: &[("duplicates/stripe", 1)],
                },
            ),
            (
                "begin moves a received event to processing",
                vec![Ingest(0, 1), Commit, Begin(0)],
                Expect {
                    answers: &["new", "ok"],
                    status: Some(Status::Processing),
                    queue: 1,
                    counters: &[("events/stripe/received", 0), ("events/stripe/processing", 1)],
                },
            ),
            (
                "begin moves a retrying event to processing",
                vec![Ingest(0, 1), Commit, Outcome(0, Retry), Commit, Begin(0)],
                Expect {
                    answers: &["new", "ok", "ok"],
                    status: Some(Status::Processing),
                    queue: 1,
                    counters: &[("events/stripe/retrying", 0), ("events/stripe/processing", 1)],
                },
            ),
            (
                "begin leaves a processed event alone",
                vec![Ingest(0, 0), Commit, Begin(0)],
                Expect {
                    answers: &["new", "ok"],
                    status: Some(Status::Processed),
                    queue: 0,
                    counters: &[("events/stripe/processing", 0)],
                },
            ),
            (
                "a delivered attempt processes the event and empties the queue",
                vec![Ingest(0, 1), Commit, Begin(0), Outcome(0, Done)],
                Expect {
                    answers: &["new", "ok", "ok"],
                    status: Some(Status::Processed),
                    queue: 0,
                    counters: &[
                        ("delivered_after/1", 1),
                        ("events/stripe/processed", 1),
                        ("events/stripe/processing", 0),
                    ],
                },
            ),
            (
                "one delivered target of two leaves the event in delivery",
                vec![Ingest(0, 2), Commit, Begin(0), Outcome(0, Done)],
                Expect { answers: &["new", "ok", "ok"], status: Some(Status::Processing), queue: 1, counters: &[] },
            ),
            (
                "a failed attempt with attempts left queues the next one",
                vec![Ingest(0, 1), Commit, Begin(0), Outcome(0, Retry)],
                Expect {
                    answers: &["new", "ok", "ok"],
                    status: Some(Status::Retrying),
                    queue: 1,
                    counters: &[("failures/http_5xx", 1), ("events/stripe/retrying", 1)],
                },
            ),
            (
                "a last failed attempt is a dead letter",
                vec![Ingest(0, 1), Commit, Outcome(0, DeadLetter)],
                Expect {
                    answers: &["new", "ok"],
                    status: Some(Status::Failed),
                    queue: 0,
                    counters: &[("dead_letters/stripe", 1), ("failures/http_4xx", 1), ("events/stripe/failed", 1)],
                },
            ),
            (
                "a replay cancels the queued job and queues a new series",
                vec![Ingest(0, 2), Commit, Begin(0), Replay(0)],
                Expect {
                    answers: &["new", "ok", "1"],
                    status: Some(Status::Received),
                    queue: 1,
                    counters: &[("events/stripe/received", 1), ("events/stripe/processing", 0)],
                },
            ),
            (
                "an outcome of a job a replay replaced only joins the history",
                vec![Ingest(0, 1), Commit, Outcome(0, DeadLetter), Replay(0)],
                Expect {
                    answers: &["new", "ok", "1"],
                    status: Some(Status::Received),
                    queue: 1,
                    counters: &[("dead_letters/stripe", 1)],
                },
            ),
            (
                "retention never deletes under a queued delivery",
                vec![Ingest(0, 1), Commit, Delete(0)],
                Expect {
                    answers: &["new", "0"],
                    status: Some(Status::Received),
                    queue: 1,
                    counters: &[("retention/deleted", 0)],
                },
            ),
            (
                "retention deletes a settled event and its counts",
                vec![Ingest(0, 0), Commit, Delete(0)],
                Expect {
                    answers: &["new", "1"],
                    status: None,
                    queue: 0,
                    counters: &[("retention/deleted", 1), ("events/stripe/processed", 0), ("segment/00000001", 0)],
                },
            ),
            (
                "a delivered replay and retention in one batch",
                vec![Ingest(0, 1), Commit, Outcome(0, Done), Commit, Replay(0), Commit, Outcome(0, Done), Delete(0)],
                Expect {
                    answers: &["new", "ok", "1", "ok", "1"],
                    status: None,
                    queue: 0,
                    counters: &[("retention/deleted", 1)],
                },
            ),
            (
                // The job and its index entry go, and the queue depth with them.
                "an outcome for an event gone meanwhile drops its job and records nothing",
                vec![Ingest(0, 1), Commit, Vanish(0), Outcome(0, Done)],
                Expect { answers: &["new", "ok"], status: None, queue: 0, counters: &[("delivered_after/1", 0)] },
            ),
            (
                "an undecodable event's job is settled as a dead letter, and retention passes it over",
                vec![Ingest(0, 1), Commit, Damage(0), Outcome(0, Done), Delete(0)],
                Expect {
                    answers: &["new", "ok", "0"],
                    status: None,
                    queue: 0,
                    counters: &[("dead_letters/stripe", 1), ("delivered_after/1", 0), ("retention/deleted", 0)],
                },
            ),
            (
                "begin and replay of an undecodable event are refused",
                vec![Ingest(0, 1), Commit, Damage(0), Begin(0), Replay(0)],
                Expect { answers: &["new", "err", "err"], status: None, queue: 1, counters: &[] },
            ),
        ];
        for (name, steps, expect) in table {
            let (w, answers) = run(&steps);
            assert_eq!(answers, expect.answers, "{name}");
            let status = if steps.iter().any(|s| matches!(s, Damage(_))) { None } else { w.event(0).map(|e| e.status) };
            if steps.iter().any(|s| matches!(s, Vanish(_))) {
                assert!(w.job(0).is_none(), "{name}: the job is gone");
            }
            assert_eq!(status, expect.status, "{name}");
            assert_eq!(w.counter(QUEUE_DEPTH), expect.queue, "{name}: queue depth");
            for (counter, value) in expect.counters {
                assert_eq!(w.counter(counter), *value, "{name}: {counter}");
            }
        }
    }

    /// A replay numbers its series after the latest one recorded; the attempts of the replayed
    /// series start again at 1.
    #[test]
    fn a_replay_follows_the_latest_series() {
        let (w, _) = run(&[Ingest(0, 1), Commit, Outcome(0, Retry), Commit, Replay(0), Commit, Replay(0)]);
        let (_, job) = w.job(0).unwrap();
        assert_eq!((job.series, job.attempt), (3, 1));
        assert_eq!(w.event(0).unwrap().attempts, 1);
    }

    /// An attempt that starts and ends in one batch reads the status the batch set.
    #[test]
    fn begin_and_outcome_in_one_batch() {
        let (w, answers) = run(&[Ingest(0, 1), Commit, Begin(0), Outcome(0, Done)]);
        assert_eq!(answers, ["new", "ok", "ok"]);
        let e = w.event(0).unwrap();
        assert_eq!((e.status, e.attempts), (Status::Processed, 1));
        assert_eq!(w.counter("events/stripe/processed"), 1);
        assert_eq!(w.counter("events/stripe/received") + w.counter("events/stripe/processing"), 0);
    }

    /// An edited copy shares its parent's provider event id: it is never a duplicate, claims
    /// nothing, and deleting it leaves the parent's claim, so the provider's retry of the
    /// parent is still a duplicate.
    #[test]
    fn an_edited_copy_is_no_duplicate_and_its_deletion_keeps_the_parents_claim() {
        let mut w = World::default();
        let first = w.batch(|ops| ops.ingest(new_event(0, 0)).unwrap());
        let copy = w.batch(|ops| ops.ingest(NewEvent { parent: Some(first.id), ..new_event(0, 0) }).unwrap());
        assert!(!copy.duplicate);
        assert_ne!(copy.id, first.id);
        let stored = decode_event(&w.tree[&keys::id_key(keys::EVENT, copy.id)[..]]).unwrap().0;
        assert_eq!((stored.parent, stored.signature_verified), (Some(first.id), false));
        assert_eq!(w.counter("events/stripe/processed"), 2);
        assert_eq!(w.batch(|ops| ops.delete(vec![copy.id]).unwrap()), 1);
        let retry = w.batch(|ops| ops.ingest(new_event(0, 0)).unwrap());
        assert_eq!((retry.id, retry.duplicate), (first.id, true));
    }

    /// A backfilled event is recorded as such, never as verified, and counted under its provider;
    /// one the store already has is a duplicate and counts nothing more.
    #[test]
    fn a_backfilled_event_is_counted_and_never_verified() {
        let mut w = World::default();
        let backfill = |n| NewEvent { source: Source::Backfill, ..new_event(n, 0) };
        let webhook = w.batch(|ops| ops.ingest(new_event(0, 0)).unwrap());
        let first = w.batch(|ops| ops.ingest(backfill(1)).unwrap());
        let again = w.batch(|ops| [ops.ingest(backfill(1)).unwrap(), ops.ingest(backfill(0)).unwrap()]);
        assert_eq!(again.map(|i| (i.id, i.duplicate)), [(first.id, true), (webhook.id, true)]);
        let stored = decode_event(&w.tree[&keys::id_key(keys::EVENT, first.id)[..]]).unwrap().0;
        assert_eq!((stored.source, stored.signature_verified), (Source::Backfill, false));
        assert_eq!((w.counter("backfilled/stripe"), w.counter("events/stripe/processed")), (1, 2));
    }

    /// An alert's state and its notifications land in one batch; resolving removes the state,
    /// and a notification already recorded is not queued again.
    #[test]
    fn an_alert_change_writes_its_state_with_its_notifications() {
        use crate::store::{AlertChange, AlertState};
        let mut w = World::default();
        let note = |id: &str| NewEvent {
            provider: "notify.ops".into(),
            event_id: id.into(),
            targets: vec!["notifier:ops".into()],
            ..new_event(0, 0)
        };
        let state = AlertState { since_ms: NOW - 5000, last_sent_ms: NOW };
        let fire =
            AlertChange { key: "0/breaker_open/stripe".into(), state: Some(state), notifications: vec![note("msg_1")] };
        let queued = w.batch(|ops| ops.alert(vec![fire.clone()]).unwrap());
        assert_eq!(queued, 1);
        let stored = &w.tree[&keys::alert_key("0/breaker_open/stripe")];
        assert_eq!(crate::store::record::decode_alert_state(stored).unwrap(), state);
        assert_eq!(w.counter("events/notify.ops/received"), 1);
        assert_eq!(w.counter("queue/depth"), 1);
        assert_eq!(w.batch(|ops| ops.alert(vec![fire]).unwrap()), 0, "the same message is not queued twice");
        let resolve =
            AlertChange { key: "0/breaker_open/stripe".into(), state: None, notifications: vec![note("msg_2")] };
        assert_eq!(w.batch(|ops| ops.alert(vec![resolve]).unwrap()), 1);
        assert!(!w.tree.contains_key(&keys::alert_key("0/breaker_open/stripe")));
        assert_eq!((w.counter("events/notify.ops/received"), w.counter("queue/depth")), (2, 2));
    }

    /// A refusal is counted; only one with an entry adds to the log.
    #[test]
    fn a_refusal_is_counted_and_logged_only_with_an_entry() {
        let mut w = World::default();
        let entry = Rejection::bounded(NOW, "stripe", "invalid_signature", "no", "192.0.2.1", [], b"{}");
        let keys = w.batch(|ops| [ops.reject("rate_limited", None), ops.reject("invalid_signature", Some(entry))]);
        assert!(keys[0].is_none() && keys[1].as_ref().is_some_and(|k| k[0] == keys::REJECTION));
        assert_eq!((w.counter("rejected/rate_limited"), w.counter("rejected/invalid_signature")), (1, 1));
    }
}
