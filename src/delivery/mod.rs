//! The delivery engine: hands every recorded event to the app under test.
//!
//! It learns about work only from the queue in the store. One loop reads each provider's due
//! jobs in due order (skipping providers whose circuit breaker is open, so their jobs wait
//! without spending attempts; a job a person's replay queued is the exception: it goes out at
//! once as the open breaker's probe, so the app's recovery is seen without waiting out the
//! breaker's `recovery_timeout`), and runs up to `delivery.concurrency` deliveries at once. A
//! delivery re-signs the raw body for its target, posts it, and records the attempt and its
//! consequence (done, retry at a time, dead letter) in one durable batch; until that batch is
//! written the job stays queued, so a crash or shutdown mid-delivery loses nothing: the job is
//! simply attempted again. A job whose stored data is damaged (its record, or its event's record
//! or body) is not attempted: it becomes a dead letter with reason `storage_corrupt` the same
//! way, so it is neither retried for ever nor in the way of the jobs behind it.

pub mod breaker;
pub mod client;
pub mod policy;
pub mod settings;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use ulid::Ulid;

use crate::clock::Clock;
use crate::providers::{Provider, ProviderKind, Signed};
use crate::store::{
    Attempt, AttemptAnswer, AttemptOutcome, ChaosMark, DueJob, Job, Next, Outcome, SlowerThan, Store, StoreError,
    STORAGE_CORRUPT,
};
use breaker::{Breaker, Permit, Snapshot};
use client::{Client, ClientError};
use policy::{classify_status, RetryPolicy, Verdict};
use settings::{RetryConfig, RouteTargets, Targets};

/// The longest the loop sleeps without looking at the queue, in case a wake-up was missed.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// After a failure to record an outcome, how long the job rests before it is tried again.
const STORE_BACKOFF: Duration = Duration::from_secs(1);
/// `delivery.capture_body_bytes`' default, for an engine not told otherwise.
const DEFAULT_CAPTURE_BODY_BYTES: usize = 8 * 1024;

/// The headers of a request sent again (a delivery, a `curl` re-send): the original ones, minus
/// hop-by-hop ones, stagehook's own, the credentials of [`CREDENTIAL_HEADERS`] unless `keep`
/// (the provider's `forward_headers`, lowercase) names them, and those the fresh signature
/// replaces; then the signature.
pub fn resent_headers(original: &[(String, String)], signed: &Signed, keep: &[String]) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = original
        .iter()
        .filter(|(k, _)| !never_forwarded(k))
        .filter(|(k, _)| {
            !CREDENTIAL_HEADERS.iter().any(|c| c.eq_ignore_ascii_case(k)) || keep.contains(&k.to_ascii_lowercase())
        })
        .filter(|(k, _)| !signed.headers.iter().any(|(s, _)| s.eq_ignore_ascii_case(k)))
        .cloned()
        .collect();
    headers.extend(signed.headers.iter().map(|(k, v)| (k.to_string(), v.clone())));
    headers
}

/// Whether a request header is never sent again, whatever `forward_headers` says: it describes
/// the hop to stagehook, or is stagehook's own (a delivery sets its own).
pub fn never_forwarded(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    HOP_HEADERS.contains(&name.as_str()) || name.starts_with("x-stagehook-")
}

/// Credentials of the hop to stagehook, not of the event: a tunnel's basic auth, a proxy's or
/// a browser's session. No provider sends them, so a delivery (and a `curl` re-send) drops them
/// unless the provider's `forward_headers` names them; the stored record keeps them.
pub const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Request headers that describe the hop to stagehook, not the event: never forwarded.
const HOP_HEADERS: [&str; 13] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "expect",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// How a lane that is not a provider's signs what it sends: a notifier's (`alerts/`). Like
/// [`Provider::sign_resend`], it returns the URL to post to and the headers to add; the job's
/// target is what the lane makes of it (a notifier's job names the notifier, whose URL is a
/// credential and stays in the configuration).
pub trait Resign: Send + Sync + 'static {
    fn sign_resend(&self, target: &str, body: &[u8], original: &[(String, String)], now_s: i64) -> Signed;
}

/// What signs a lane's deliveries.
enum Signer {
    Provider(Arc<dyn Provider>),
    Notifier(Arc<dyn Resign>),
}

/// One provider's deliveries (or one notifier's): its signer, targets, policy and breaker.
pub struct Lane {
    name: String,
    signer: Signer,
    targets: Targets,
    breaker: Breaker,
    policy: RetryPolicy,
    /// Attempts sent and those that failed, since startup, for the `failure_rate` alert (which
    /// reads differences over its window, so a restart's zero does no harm).
    sent: AtomicU64,
    failed: AtomicU64,
    /// The provider's published delivery timeout, its kind's, when it publishes one.
    provider_timeout: Option<ProviderTimeout>,
    /// Attempts since startup that took longer than `provider_timeout` (`/metrics`).
    slower: AtomicU64,
    /// With chaos delivery: the latest-arrived event (the highest id) whose first delivery has
    /// gone out since startup, so that one that goes out after it is recorded as reordered.
    /// `None` inside for a chaos lane before its first delivery; the outer `None` without chaos.
    chaos_latest: Option<Mutex<Option<Ulid>>>,
}

/// A provider's published delivery timeout, and whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderTimeout {
    pub kind: ProviderKind,
    pub timeout: Duration,
}

/// What `/recovery/stats` shows of one lane: its breaker now, and the settings it delivers with.
#[derive(Debug, Clone)]
pub struct LaneStatus {
    pub name: String,
    pub breaker: Snapshot,
    /// The target URLs whole: whoever shows them masks them.
    pub targets: Vec<String>,
    /// The provider's routes, their URLs whole too.
    pub routes: Vec<RouteTargets>,
    pub timeout: Duration,
    pub retry: RetryConfig,
    /// A notifier's lane, not a provider's: never counted in the alerts' figures.
    pub notifier: bool,
    /// Attempts sent since startup, and how many of them failed.
    pub sent: u64,
    pub failed: u64,
    /// The provider's published delivery timeout, and the attempts since startup that took
    /// longer than it.
    pub provider_timeout: Option<ProviderTimeout>,
    pub slower_than_provider: u64,
}

impl Lane {
    pub fn new(provider: Arc<dyn Provider>, targets: Targets, breaker: Breaker) -> Lane {
        let name = provider.name().to_string();
        Lane::with_signer(name, Signer::Provider(provider), targets, breaker)
    }

    /// A notifier's lane, named `name` (which no provider name can be, see `alerts/`).
    pub fn notifier(name: String, signer: Arc<dyn Resign>, targets: Targets, breaker: Breaker) -> Lane {
        Lane::with_signer(name, Signer::Notifier(signer), targets, breaker)
    }

    fn with_signer(name: String, signer: Signer, targets: Targets, breaker: Breaker) -> Lane {
        Lane {
            name,
            policy: RetryPolicy(targets.retry.clone()),
            signer,
            targets,
            breaker,
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            provider_timeout: None,
            slower: AtomicU64::new(0),
            chaos_latest: None,
        }
    }

    /// A lane whose endpoint has chaos delivery: its first deliveries are watched for order.
    pub fn with_chaos(mut self, on: bool) -> Lane {
        self.chaos_latest = on.then(Mutex::default);
        self
    }

    /// Notes that `job` of event `id` goes out now; on a chaos lane, a first delivery (not a
    /// duplicate, not a replay) that goes out after an event that arrived later is marked
    /// `reordered_after` that event. Called in the order deliveries start.
    fn note_start(&self, id: Ulid, job: &mut Job) {
        let Some(latest) = &self.chaos_latest else { return };
        let first = job.attempt == 1 && job.series == 1;
        if !first || job.chaos.is_some_and(|c| c.duplicate_after_ms.is_some()) {
            return;
        }
        let mut latest = latest.lock();
        match *latest {
            Some(later) if later > id => {
                job.chaos = Some(ChaosMark { reordered_after: Some(later), ..job.chaos.unwrap_or_default() });
            }
            _ => *latest = Some(id),
        }
    }

    /// The lane of a provider of `kind`: its attempts are measured against the delivery timeout
    /// the provider publishes ([`Provider::delivery_timeout`]), if any.
    pub fn of_kind(mut self, kind: ProviderKind) -> Lane {
        if let Signer::Provider(p) = &self.signer {
            self.provider_timeout = p.delivery_timeout().map(|timeout| ProviderTimeout { kind, timeout });
        }
        self
    }

    /// The provider's timeout `took` is longer than, to flag the attempt with (and count it).
    fn slower_than(&self, took: Duration) -> Option<SlowerThan> {
        let ProviderTimeout { kind, timeout } = self.provider_timeout?;
        if took <= timeout {
            return None;
        }
        self.slower.fetch_add(1, Ordering::Relaxed);
        Some(SlowerThan {
            provider: kind.title().to_string(),
            timeout_ms: timeout.as_millis() as u64,
            retried: kind.retries_after_timeout(),
        })
    }

    fn sign(
        &self,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
        original: &[(String, String)],
        now_s: i64,
    ) -> Signed {
        match &self.signer {
            Signer::Provider(p) => p.sign_resend(target, content_type, body, original, now_s),
            Signer::Notifier(n) => n.sign_resend(target, body, original, now_s),
        }
    }

    fn status(&self) -> LaneStatus {
        LaneStatus {
            name: self.name.clone(),
            breaker: self.breaker.snapshot(),
            targets: self.targets.urls.clone(),
            routes: self.targets.routes.clone(),
            timeout: self.targets.timeout,
            retry: self.targets.retry.clone(),
            notifier: matches!(self.signer, Signer::Notifier(_)),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            provider_timeout: self.provider_timeout,
            slower_than_provider: self.slower.load(Ordering::Relaxed),
        }
    }
}

pub struct Engine {
    store: Store,
    clock: Clock,
    client: Client,
    lanes: Vec<Lane>,
    concurrency: usize,
    /// Keys of the jobs being delivered right now, so the loop does not start them twice.
    in_flight: Mutex<HashSet<Vec<u8>>>,
    /// Per provider, a job a replay queued that may go out as its open breaker's probe; filled
    /// from `Store::take_replays` and kept while there is no room to start it.
    replays: Mutex<BTreeMap<String, Vec<u8>>>,
    /// How many times the loop has looked at the queue, see [`Engine::passes`].
    passes: AtomicU64,
    /// How much of each answer's body an attempt keeps (`delivery.capture_body_bytes`).
    capture_body_bytes: usize,
}

impl Engine {
    pub fn new(store: Store, clock: Clock, lanes: Vec<Lane>, concurrency: usize) -> Result<Engine, ClientError> {
        Ok(Engine {
            store,
            clock,
            client: Client::new()?,
            lanes,
            concurrency,
            in_flight: Mutex::default(),
            replays: Mutex::default(),
            passes: AtomicU64::new(0),
            capture_body_bytes: DEFAULT_CAPTURE_BODY_BYTES,
        })
    }

    /// Keeps the first `bytes` of each answer's body in its attempt (`delivery.capture_body_bytes`).
    pub fn capturing(mut self, bytes: usize) -> Engine {
        self.capture_body_bytes = bytes;
        self
    }

    /// Each provider's lane status, in configuration order (notifiers' lanes are not
    /// providers': see [`Engine::all_lanes`]).
    pub fn lanes(&self) -> Vec<LaneStatus> {
        self.lanes.iter().map(Lane::status).filter(|l| !l.notifier).collect()
    }

    /// Every lane's status, the notifiers' after the providers'.
    pub fn all_lanes(&self) -> Vec<LaneStatus> {
        self.lanes.iter().map(Lane::status).collect()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().len()
    }

    /// How many times the loop has begun to look at the due jobs. It exists so that a caller can
    /// tell "the engine looked and held a job back" from "the engine has not looked yet": once it
    /// has grown by two since a moment, one whole look began after that moment and every
    /// delivery it decided to start is in flight.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Acquire)
    }

    /// Runs until `stop` turns true, then waits up to `grace` for deliveries in flight; any
    /// still running after that stay queued and are attempted again after a restart.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>, grace: Duration) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            let wake_at = self.dispatch_due(&done_tx, &mut tasks);
            let now = self.clock.now_ms();
            let wait = wake_at.map_or(MAX_IDLE, |t| Duration::from_millis((t - now).max(0) as u64)).min(MAX_IDLE);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.store.jobs_added() => {}
                _ = done_rx.recv() => {}
                _ = stop.changed() => {}
            }
            while tasks.try_join_next().is_some() {}
        }
        let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(in_flight = self.in_flight(), "deliveries still running at shutdown stay queued");
            tasks.abort_all();
        }
    }

    /// Starts every due delivery there is room for; returns when to look again.
    fn dispatch_due(
        self: &Arc<Self>,
        done: &mpsc::UnboundedSender<()>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Option<i64> {
        self.passes.fetch_add(1, Ordering::AcqRel);
        let now = self.clock.now_ms();
        let mut wake_at: Option<i64> = None;
        let mut soonest = |t: i64| wake_at = Some(wake_at.map_or(t, |w: i64| w.min(t)));
        self.replays.lock().extend(self.store.take_replays());
        for (lane_index, lane) in self.lanes.iter().enumerate() {
            let free = self.concurrency.saturating_sub(self.in_flight());
            if free == 0 {
                break;
            }
            let replayed = self.replays.lock().remove(&lane.name);
            if let Some(work) = replayed.and_then(|key| self.replay_probe(lane, &key)) {
                self.start(lane_index, work, done, tasks);
                continue;
            }
            let due = {
                let in_flight = self.in_flight.lock();
                self.store.due_jobs(&lane.name, now, free, |k| in_flight.contains(k))
            };
            let (jobs, next) = match due {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(error = %e, provider = %lane.name, "cannot read the delivery queue");
                    soonest(now + STORE_BACKOFF.as_millis() as i64);
                    continue;
                }
            };
            if let Some(t) = next {
                soonest(t);
            }
            let mut denied = false;
            for DueJob { key, id, target, job, .. } in jobs {
                let work = match job {
                    // Nothing is sent for a damaged job, so it needs no permit: it leaves the queue
                    // even while the breaker holds the provider's deliveries back.
                    Err(damage) => Work::Settle(Queued { key, id, target }, None, damage.0),
                    Ok(_) if denied => continue,
                    Ok(job) => match lane.breaker.acquire(now) {
                        Permit::Denied { until_ms } => {
                            if let Some(t) = until_ms {
                                soonest(t);
                            }
                            denied = true;
                            continue;
                        }
                        permit => {
                            let mut job = job;
                            lane.note_start(id, &mut job);
                            Work::Deliver(Queued { key, id, target }, job, permit)
                        }
                    },
                };
                self.start(lane_index, work, done, tasks);
            }
        }
        wake_at
    }

    /// A job a person's replay queued, to send at once as the probe of its provider's open
    /// breaker; `None` when the breaker is not open (the job then takes its turn in the queue)
    /// or the job is no longer queued. Only a replay does this: a due retry never starts while
    /// the breaker is open.
    fn replay_probe(&self, lane: &Lane, key: &[u8]) -> Option<Work> {
        if self.in_flight.lock().contains(key) {
            return None;
        }
        let found = match self.store.queued_job(key) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, provider = %lane.name, "cannot read a replayed job");
                None
            }
        };
        let DueJob { key, id, target, job: Ok(job), .. } = found? else { return None };
        let permit = lane.breaker.probe_now()?;
        Some(Work::Deliver(Queued { key, id, target }, job, permit))
    }

    /// Runs one piece of work in its own task, its job marked in flight until its outcome is
    /// recorded.
    fn start(
        self: &Arc<Self>,
        lane_index: usize,
        work: Work,
        done: &mpsc::UnboundedSender<()>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        let key = match &work {
            Work::Deliver(at, ..) | Work::Settle(at, ..) => at.key.clone(),
        };
        self.in_flight.lock().insert(key.clone());
        let engine = self.clone();
        let done = done.clone();
        tasks.spawn(async move {
            let recorded = match work {
                Work::Deliver(at, job, permit) => engine.deliver(lane_index, at, job, permit).await,
                Work::Settle(at, job, damage) => {
                    engine.dead_letter_damaged(lane_index, at, job.as_ref(), &damage).await
                }
            };
            if !recorded {
                tokio::time::sleep(STORE_BACKOFF).await;
            }
            engine.in_flight.lock().remove(&key);
            let _ = done.send(());
        });
    }

    /// One attempt; returns whether its outcome was recorded.
    async fn deliver(&self, lane_index: usize, at: Queued, job: Job, permit: Permit) -> bool {
        let lane = &self.lanes[lane_index];
        let Queued { key, id, target } = at;
        self.store.begin(id).await;
        let (event, body) = match self.store.get_event(id) {
            Ok(Some(found)) => found,
            Ok(None) => {
                // The event is gone: release its job without an attempt.
                lane.breaker.release(permit);
                let attempt = attempt_record(
                    &job,
                    self.clock.now_ms(),
                    None,
                    Some("event deleted".into()),
                    0,
                    AttemptOutcome::Failed,
                );
                let outcome =
                    Outcome { job_key: key, id, target, attempt, failure_reason: None, next: Next::DeadLetter };
                return self.store.record_outcome(outcome).await.is_ok();
            }
            Err(StoreError::Corrupt(damage)) => {
                // Reading again gives the same bytes: retrying would spin on it for ever.
                lane.breaker.release(permit);
                return self.dead_letter_damaged(lane_index, Queued { key, id, target }, Some(&job), &damage).await;
            }
            Err(e) => {
                tracing::error!(error = %e, %id, "cannot read the event to deliver");
                lane.breaker.release(permit);
                return false;
            }
        };
        let now_ms = self.clock.now_ms();
        let content_type = event.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
        let signed = lane.sign(&job.target, content_type, &body, &event.headers, now_ms.div_euclid(1000));
        let mut headers = resent_headers(&event.headers, &signed, &lane.targets.forward_headers);
        headers.push(("x-stagehook-event-id".into(), id.to_string()));
        headers.push(("x-stagehook-attempt".into(), job.attempt.to_string()));

        let started = Instant::now();
        let result = self.client.post(&signed.url, &headers, Bytes::from(body), lane.targets.timeout).await;
        let took = started.elapsed();
        let duration_us = took.as_micros() as u64;
        // Flagged whatever the outcome: a provider that gave up would have sent it again even if
        // stagehook, waiting longer, saw a 2xx.
        let slower_than = lane.slower_than(took);
        let (verdict, status, error) = match &result {
            Ok(answer) => {
                // A `Retry-After` date is read against the engine's clock, like every due time.
                let now = UNIX_EPOCH + Duration::from_millis(self.clock.now_ms().max(0) as u64);
                let verdict = classify_status(answer.status, answer.retry_after.as_deref(), now);
                let error = (verdict != Verdict::Delivered).then(|| {
                    let body = answer.body_prefix.trim();
                    if body.is_empty() {
                        format!("HTTP {}", answer.status)
                    } else {
                        format!("HTTP {}: {body}", answer.status)
                    }
                });
                (verdict, Some(answer.status), error)
            }
            Err(e) => (Verdict::Retry { reason: e.reason(), retry_after: None }, None, Some(e.to_string())),
        };
        let finished_ms = self.clock.now_ms();
        lane.breaker.record(permit, verdict.is_failure(), finished_ms);
        lane.sent.fetch_add(1, Ordering::Relaxed);
        if verdict != Verdict::Delivered {
            lane.failed.fetch_add(1, Ordering::Relaxed);
        }

        let (next, outcome, reason) = match &verdict {
            Verdict::Delivered => (Next::Done, AttemptOutcome::Delivered, None),
            Verdict::Retry { reason, retry_after } => {
                match lane.policy.next_delay(job.attempt, *retry_after, fastrand::f64() * 2.0 - 1.0) {
                    Some(delay) => {
                        // A duplicate's retries are still the duplicate; the delay and the shuffle
                        // were the first attempt's.
                        let chaos =
                            job.chaos.filter(|c| c.duplicate_after_ms.is_some() || c.duplicated).map(|c| ChaosMark {
                                duplicate_after_ms: c.duplicate_after_ms,
                                duplicated: c.duplicated,
                                ..ChaosMark::default()
                            });
                        let next_job =
                            Job { target: job.target.clone(), attempt: job.attempt + 1, series: job.series, chaos };
                        let due_ms = finished_ms + delay.as_millis() as i64;
                        (Next::RetryAt { due_ms, job: next_job }, AttemptOutcome::WillRetry, Some(*reason))
                    }
                    None => (Next::DeadLetter, AttemptOutcome::Failed, Some(*reason)),
                }
            }
            Verdict::Permanent { reason } => (Next::DeadLetter, AttemptOutcome::Failed, Some(*reason)),
        };
        tracing::info!(
            target: "stagehook::delivery",
            provider = %lane.name,
            %id,
            // Masked: the log may go where the target's credentials must not. The request
            // above was sent to the whole URL.
            url = %crate::redact::url(&job.target),
            attempt = job.attempt,
            series = job.series,
            status,
            error = error.as_deref(),
            outcome = outcome.as_str(),
            duration_us,
            "delivery attempt"
        );
        let mut attempt = attempt_record(&job, now_ms, status, error, duration_us, outcome);
        attempt.slower_than = slower_than;
        attempt.answer = result.ok().map(|answer| {
            let mut body = answer.body;
            body.truncate(self.capture_body_bytes);
            AttemptAnswer { headers: answer.headers, body, body_len: answer.body_len }
        });
        let recorded = self
            .store
            .record_outcome(Outcome { job_key: key, id, target, attempt, failure_reason: reason, next })
            .await;
        if let Err(e) = &recorded {
            tracing::error!(error = %e, %id, "delivery outcome not recorded; the job stays queued");
        }
        recorded.is_ok()
    }

    /// Makes a job whose stored data is damaged (its record, its event's record or body) a dead
    /// letter with reason `storage_corrupt`, in one batch like any outcome; returns whether that
    /// was recorded.
    async fn dead_letter_damaged(&self, lane_index: usize, at: Queued, job: Option<&Job>, damage: &str) -> bool {
        let lane = &self.lanes[lane_index];
        let Queued { key, id, target } = at;
        let now_ms = self.clock.now_ms();
        let error = format!("{STORAGE_CORRUPT}: {damage}");
        tracing::error!(
            target: "stagehook::delivery",
            provider = %lane.name,
            %id,
            damage,
            outcome = AttemptOutcome::Failed.as_str(),
            "stored data is damaged: the delivery is a dead letter"
        );
        let attempt = match job {
            Some(job) => attempt_record(job, now_ms, None, Some(error), 0, AttemptOutcome::Failed),
            // The job's own record is unreadable: its series, attempt and URL are unknown (0, "").
            None => Attempt {
                series: 0,
                attempt: 0,
                at_ms: now_ms,
                target: String::new(),
                status: None,
                error: Some(error),
                duration_us: 0,
                outcome: AttemptOutcome::Failed,
                answer: None,
                slower_than: None,
                chaos: None,
            },
        };
        let outcome = Outcome {
            job_key: key,
            id,
            target,
            attempt,
            failure_reason: Some(STORAGE_CORRUPT),
            next: Next::DeadLetter,
        };
        let recorded = self.store.record_outcome(outcome).await;
        if let Err(e) = &recorded {
            tracing::error!(error = %e, %id, "dead letter not recorded; the job stays queued");
        }
        recorded.is_ok()
    }
}

/// Where a due job sits in the queue.
struct Queued {
    key: Vec<u8>,
    id: Ulid,
    target: u8,
}

/// What to do with a due job.
enum Work {
    /// Send it, under the breaker's permit.
    Deliver(Queued, Job, Permit),
    /// Its stored data is damaged: settle it as a dead letter without sending anything. The job
    /// is `None` when its own record is what is damaged.
    Settle(Queued, Option<Job>, String),
}

fn attempt_record(
    job: &Job,
    at_ms: i64,
    status: Option<u16>,
    error: Option<String>,
    duration_us: u64,
    outcome: AttemptOutcome,
) -> Attempt {
    Attempt {
        series: job.series,
        attempt: job.attempt,
        at_ms,
        target: job.target.clone(),
        status,
        error,
        duration_us,
        outcome,
        answer: None,
        slower_than: None,
        chaos: job.chaos,
    }
}
