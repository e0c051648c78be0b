//! Each operation's batch, table-tested over `pending.rs`'s view without a database.

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

    fn stage_body(&mut self, headers: &[u8], body: &[u8]) -> BodyRef {
        let offset = self.staged;
        let len = (headers.len() + body.len()) as u32;
        self.staged += u64::from(len);
        BodyRef { segment: 1, offset, len, crc32: 0, headers: headers.len() as u32 }
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
                Step::Damage(n) => drop(w.tree.insert(keys::id_key(keys::EVENT, w.ids[n]).to_vec(), vec![0xff, 0xff])),
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
        headers: Default::default(),
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
        chaos: None,
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
                counters: &[("delivered_after/1", 1), ("events/stripe/processed", 1), ("events/stripe/processing", 0)],
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
    let resolve = AlertChange { key: "0/breaker_open/stripe".into(), state: None, notifications: vec![note("msg_2")] };
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
