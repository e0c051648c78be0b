//! What each writer operation does to the batch being built: the per-operation state machine
//! (ingest with dedup, refusal, begin, outcome, replay, delete), on top of [`Pending`].
//!
//! Nothing here commits, flushes or retries: that is the writer's. Everything here reads through
//! [`Pending`] (so through [`Reads`]) and takes ids, body places and the time from an [`Env`],
//! so the tests below run every operation against a `BTreeMap` without a database.

use std::collections::BTreeMap;

use ulid::Ulid;

use super::keys;
use super::log::segment_counter;
use super::pending::{LoadError, Pending, Reads};
use super::record::encode_alert_state;
use super::record::{
    decode_attempt, decode_job, encode_attempt, encode_job, encode_rejection, BodyRef, DecodeError, ErrorEntry, Event,
    Job, Rejection, Source, Status,
};
use super::stats::{
    backfilled_counter, chaos_counter, dead_letters_counter, delivered_after_counter, delivery_hist_bucket_counter,
    duplicates_counter, events_counter, failures_counter, hist_bucket_counter, items_counter, minute_counter,
    rejected_counter, second_counter, CHAOS_REORDER, DELIVERY_HIST_SUM_US, HIST_SUM_US, QUEUE_DEPTH, RETENTION_DELETED,
};
use super::stats::{is_stored_only, stored_only_counter};
use super::{AlertChange, Ingested, NewEvent, Next, Outcome};
use crate::chaos::Draw;

/// What an operation needs from outside the batch: new ids, a place in the log, the time.
pub(super) trait Env {
    /// A new id, after every id given before (ids, and so keys, follow commit order).
    fn next_id(&mut self) -> Ulid;
    /// Stages an event's encoded headers and body for the commit and says where they will be.
    fn stage_body(&mut self, headers: &[u8], body: &[u8]) -> BodyRef;
    fn now_ms(&self) -> i64;
    /// The chaos drawn for the next event of `provider`, when its endpoint has chaos delivery;
    /// called once per event queued for delivery, in commit order.
    fn chaos(&mut self, _provider: &str) -> Option<Draw> {
        None
    }
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
        // The headers go to the log beside the body, which is what reads them: the record, which
        // every change of status rewrites, stays small.
        let body = self.env.stage_body(event.headers.as_bytes(), &event.body);
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
        // An edited copy is a person's deliberate delivery: chaos is for traffic.
        let draw =
            (event.parent.is_none() && !event.targets.is_empty()).then(|| self.env.chaos(&event.provider)).flatten();
        for (i, target) in event.targets.iter().enumerate() {
            let job = Job { target: target.clone(), attempt: 1, series: 1, chaos: None };
            let Some(draw) = draw else {
                add_job(p, &event.provider, event.received_at_ms, id, i as u8, job);
                self.jobs_added = true;
                continue;
            };
            let (jobs, actions) = super::chaos::jobs(event.received_at_ms, i as u8, draw);
            for (due_ms, target, chaos) in jobs {
                add_job(p, &event.provider, due_ms, id, target, Job { chaos, ..job.clone() });
            }
            actions.into_iter().for_each(|action| p.count(chaos_counter(&event.provider, action), 1));
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
                headers: Vec::new(),
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
        if o.attempt.chaos.is_some_and(|c| c.reordered_after.is_some()) {
            p.count(chaos_counter(&provider, CHAOS_REORDER), 1);
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
                let key = add_job(p, &provider, now, id, i as u8, Job { target, attempt: 1, series, chaos: None });
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
mod tests;
