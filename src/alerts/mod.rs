//! Alerts: the `[[alerts]]` rules, evaluated every [`EVERY`] over what the store and the
//! delivery engine count, and their notifications.
//!
//! - `rules.rs`: what a rule says about a snapshot of the figures ([`rules::holding`]), and the
//!   one rule of firing ([`rules::step`]): once when a condition starts, one `resolved` when it
//!   ends, nothing in between unless `repeat`. Pure functions.
//! - `notify.rs`: the messages, each notifier kind's body, and the signer of a notifier's lane.
//!
//! A notification is an event of its notifier's own delivery lane (`notify.<name>`, with its
//! own breaker), queued in the same batch that records the alert's new state
//! (`Store::record_alerts`): it is delivered, retried and held back like any delivery, survives
//! a restart, and a restart finds the alert firing and neither fires it again nor forgets its
//! `resolved`. Notifiers' lanes are left out of every figure, so an alert never feeds on its
//! own notifications.

pub mod notify;
pub mod rules;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{AlertRule, Config, NotifierKind};
use crate::delivery::breaker::State;
use crate::delivery::Engine;
use crate::store::{AlertChange, AlertState, EventFilter, Status, Store};
use notify::{Message, Phase};
use rules::{Figures, Holding, ProviderFigures, Step};

/// How often the rules are evaluated. The figures are in-memory counters and one short queue
/// read per provider, so this is cheap.
pub const EVERY: Duration = Duration::from_secs(1);

/// The longest window of history kept when no rule asks for one.
const MIN_HISTORY: Duration = Duration::from_secs(60);

/// An alert that is firing (a rule that holds for one subject): its rule, its subject and its
/// state.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub rule: usize,
    pub subject: String,
    pub state: AlertState,
    /// The latest figure, and in words; `None` after a restart until the next evaluation.
    pub figure: Option<f64>,
    pub detail: Option<String>,
}

/// The last notification of a notifier, as its lane stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct LastNotification {
    pub id: ulid::Ulid,
    pub event_type: String,
    pub at_ms: i64,
    pub status: Status,
    pub attempts: u32,
    pub last_error: Option<String>,
}

pub struct Alerts {
    rules: Vec<AlertRule>,
    notifiers: BTreeMap<String, NotifierKind>,
    store: Store,
    engine: Arc<Engine>,
    clock: Clock,
    /// The firing alerts by key (rule index, kind, subject): what the store holds, read at
    /// startup and kept in step with it. A `parking_lot` mutex, never held across an await.
    firing: Mutex<BTreeMap<String, Firing>>,
    /// Earlier snapshots, oldest first, as far back as the longest window.
    history: Mutex<VecDeque<Figures>>,
    /// Per provider, the count of requests taken (events and duplicates) last seen, and when it
    /// last grew: the `no_events` silence.
    received: Mutex<BTreeMap<String, (u64, i64)>>,
    keep_ms: i64,
    /// Stored states whose rule is gone (the rules changed): removed at the first evaluation,
    /// without a message.
    stale: Mutex<Vec<String>>,
    /// How many evaluations have finished, see [`Alerts::evaluations`].
    evaluations: AtomicU64,
}

/// The key of one alert (a rule and a subject) in the store: stable while the rules keep their
/// order.
pub fn alert_key(rule: usize, r: &AlertRule, subject: &str) -> String {
    format!("{rule}/{}/{subject}", r.when.as_str())
}

impl Alerts {
    /// Reads the firing alerts the store kept. A damaged state is logged and dropped: the
    /// alert fires again if it still holds, which is better than never resolving.
    pub fn new(config: &Config, store: Store, engine: Arc<Engine>, clock: Clock) -> Alerts {
        let rules = config.alerts.clone();
        let mut firing = BTreeMap::new();
        let mut stale = Vec::new();
        match store.alert_states() {
            Ok(states) => {
                for (key, state) in states {
                    match (parse_key(&key, &rules), state) {
                        (Some((rule, subject)), Ok(state)) => {
                            firing.insert(key, Firing { rule, subject, state, figure: None, detail: None });
                        }
                        (None, _) => stale.push(key),
                        (Some(_), Err(damage)) => {
                            tracing::error!(%damage, "an alert's stored state is damaged");
                            stale.push(key);
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the alerts' state"),
        }
        let keep = rules.iter().filter_map(|r| r.window).map(|w| w.0).max().unwrap_or(MIN_HISTORY).max(MIN_HISTORY);
        Alerts {
            notifiers: config.notifiers.iter().map(|(n, c)| (n.clone(), c.kind)).collect(),
            rules,
            store,
            engine,
            clock,
            firing: Mutex::new(firing),
            history: Mutex::default(),
            received: Mutex::default(),
            keep_ms: keep.as_millis() as i64,
            stale: Mutex::new(stale),
            evaluations: AtomicU64::new(0),
        }
    }

    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// The firing alerts, by key.
    pub fn firing(&self) -> BTreeMap<String, Firing> {
        self.firing.lock().clone()
    }

    /// How many evaluations have finished since the start, each with its notifications recorded.
    /// It exists so that a caller can tell "the rules were looked at and nothing followed" from
    /// "the rules have not been looked at yet": once it has grown by two since a moment, one
    /// whole evaluation began after that moment.
    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Acquire)
    }

    /// Each notifier's latest notification (its lane's newest event), by notifier name.
    pub fn last_notifications(&self) -> BTreeMap<String, Option<LastNotification>> {
        self.notifiers
            .keys()
            .map(|name| {
                let filter = EventFilter { provider: Some(notify::lane_name(name)), ..Default::default() };
                // A bounded read: one page of one event, scanning at most a few thousand records.
                let last = match self.store.list_events(&filter, None, 1, 4096) {
                    Ok(page) => page.events.into_iter().find_map(|(id, e)| e.ok().map(|e| (id, e))).map(|(id, e)| {
                        LastNotification {
                            id,
                            event_type: e.event_type,
                            at_ms: e.received_at_ms,
                            status: e.status,
                            attempts: e.attempts,
                            last_error: e.last_error,
                        }
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, notifier = %name, "cannot read the last notification");
                        None
                    }
                };
                (name.clone(), last)
            })
            .collect()
    }

    /// Evaluates every [`EVERY`] until `stop` turns true. `dashboard` is the URL messages link to.
    pub async fn run(self: Arc<Self>, dashboard: String, mut stop: watch::Receiver<bool>) {
        if self.rules.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            self.evaluate(&dashboard).await;
        }
    }

    /// One evaluation: the figures now, each rule's alerts that hold, and the notifications
    /// and state changes that follow, recorded in one batch.
    pub async fn evaluate(&self, dashboard: &str) {
        self.evaluate_once(dashboard).await;
        self.evaluations.fetch_add(1, Ordering::AcqRel);
    }

    async fn evaluate_once(&self, dashboard: &str) {
        let now = self.figures();
        let history: Vec<Figures> = self.history.lock().iter().cloned().collect();
        let mut holding: BTreeMap<String, (usize, Holding)> = BTreeMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            for h in rules::holding(rule, &now, &history) {
                holding.insert(alert_key(i, rule, &h.subject), (i, h));
            }
        }
        let firing = self.firing();
        let mut changes: Vec<AlertChange> = self
            .stale
            .lock()
            .iter()
            .map(|key| AlertChange { key: key.clone(), state: None, notifications: Vec::new() })
            .collect();
        let mut after = firing.clone();
        // Every key that holds or was firing (a state whose rule is gone was dropped at startup).
        let keys: Vec<String> = holding.keys().chain(firing.keys()).cloned().collect();
        for key in keys.into_iter().collect::<std::collections::BTreeSet<_>>() {
            let state = firing.get(&key).map(|f| f.state);
            let now_holding = holding.get(&key);
            let rule_index = now_holding.map(|(i, _)| *i).or_else(|| firing.get(&key).map(|f| f.rule));
            let Some(rule_index) = rule_index else { continue };
            let rule = &self.rules[rule_index];
            if now_holding.is_none() && state.is_some() && rules::undecided(rule, &firing[&key].subject, &now) {
                continue;
            }
            let step = rules::step(state.as_ref(), now_holding.is_some(), now.at_ms, rule.repeat.map(|d| d.0));
            let subject = now_holding.map_or_else(|| firing[&key].subject.clone(), |(_, h)| h.subject.clone());
            let (new_state, phase) = match step {
                Step::Quiet => {
                    if let (Some(f), Some((_, h))) = (after.get_mut(&key), now_holding) {
                        f.figure = Some(h.figure);
                        f.detail = Some(h.detail.clone());
                    }
                    continue;
                }
                Step::Fire => {
                    let since = now_holding.and_then(|(_, h)| h.since_ms).unwrap_or(now.at_ms);
                    (Some(AlertState { since_ms: since, last_sent_ms: now.at_ms }), Phase::Firing)
                }
                Step::Repeat => {
                    // `step` repeats only what has a state.
                    let Some(s) = state else { continue };
                    (Some(AlertState { last_sent_ms: now.at_ms, ..s }), Phase::Firing)
                }
                Step::Resolve => (None, Phase::Resolved),
            };
            let since_ms = new_state.or(state).map_or(now.at_ms, |s| s.since_ms);
            let message = Message {
                rule: format!("alerts[{rule_index}]"),
                when: rule.when,
                subject: subject.clone(),
                phase,
                since_ms,
                at_ms: now.at_ms,
                figure: now_holding.map_or(0.0, |(_, h)| h.figure),
                detail: now_holding.map_or_else(String::new, |(_, h)| h.detail.clone()),
                dashboard: dashboard.to_string(),
            };
            let notifications =
                rule.notify.iter().filter_map(|n| self.notifiers.get(n).map(|kind| message.event(n, *kind))).collect();
            tracing::warn!(
                target: "stagehook::alert",
                rule = %message.rule,
                when = rule.when.as_str(),
                subject = %subject,
                status = phase.as_str(),
                "{}",
                message.text()
            );
            match new_state {
                Some(state) => {
                    let (figure, detail) = now_holding.map(|(_, h)| (h.figure, h.detail.clone())).unzip();
                    after.insert(key.clone(), Firing { rule: rule_index, subject, state, figure, detail });
                }
                None => {
                    after.remove(&key);
                }
            }
            changes.push(AlertChange { key, state: new_state, notifications });
        }
        if !changes.is_empty() {
            if let Err(e) = self.store.record_alerts(changes).await {
                // Nothing changed: the next evaluation finds the same and tries again.
                tracing::error!(error = %e, "alert notifications not recorded; trying again");
                self.keep_history(now);
                return;
            }
        }
        self.stale.lock().clear();
        *self.firing.lock() = after;
        self.keep_history(now);
    }

    /// Takes the figures as the server starts, before it serves, so that a window reaching back
    /// before the first evaluation counts from the start (refusals made before the evaluator's
    /// first tick included).
    pub fn mark_start(&self) {
        self.keep_history(self.figures());
    }

    fn keep_history(&self, now: Figures) {
        let mut history = self.history.lock();
        let oldest = now.at_ms - self.keep_ms;
        history.push_back(now);
        // Keep one snapshot at least as old as the longest window, so a window's base exists.
        while history.len() > 2 && history[1].at_ms <= oldest {
            history.pop_front();
        }
    }

    /// The figures now: the providers' lanes only (never the notifiers').
    fn figures(&self) -> Figures {
        let at_ms = self.clock.now_ms();
        let counters = self.store.stats().counters();
        let mut taken: BTreeMap<&str, u64> = BTreeMap::new();
        for e in counters.events() {
            *taken.entry(e.provider).or_default() += e.count;
        }
        for (p, n) in counters.duplicates() {
            *taken.entry(p).or_default() += n;
        }
        let mut received = self.received.lock();
        let mut providers = BTreeMap::new();
        for lane in self.engine.lanes() {
            let count = taken.get(lane.name.as_str()).copied().unwrap_or(0);
            let seen =
                received.entry(lane.name.clone()).or_insert_with(|| (count, self.last_event_before(&lane.name, at_ms)));
            // Retention lowers the count of stored events: only a rise is a new event.
            if count > seen.0 {
                *seen = (count, at_ms);
            } else {
                seen.0 = count;
            }
            let last_event_ms = seen.1;
            // A read of the first key under the provider's queue prefix: sled answers it from
            // its cache without blocking for long, like the other reads on async threads.
            let oldest_due_ms = match self.store.oldest_job_ms(&lane.name) {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, provider = %lane.name, "cannot read the queue for the alerts");
                    None
                }
            };
            let open = lane.breaker.state != State::Closed;
            providers.insert(
                lane.name.clone(),
                ProviderFigures {
                    breaker_open_since_ms: if open { Some(lane.breaker.opened_at_ms.unwrap_or(at_ms)) } else { None },
                    breaker_failures: lane.breaker.consecutive_failures,
                    dead_letters: counters.dead_letters(&lane.name),
                    sent: lane.sent,
                    failed: lane.failed,
                    oldest_due_ms,
                    last_event_ms,
                },
            );
        }
        let rejected = counters.rejected().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Figures { at_ms, providers, rejected }
    }
}

impl Alerts {
    /// When `provider` last received something, as far as the store knows at startup: its
    /// newest stored event, or the start of a `no_events` silence that was firing when it
    /// stopped (a restart must not end a silence), else `now` (the silence starts here).
    fn last_event_before(&self, provider: &str, now: i64) -> i64 {
        let filter = EventFilter { provider: Some(provider.to_string()), ..Default::default() };
        // One page of one event, scanning a bounded number of records: once per provider.
        let newest = match self.store.list_events(&filter, None, 1, 4096) {
            Ok(page) => page.events.into_iter().find_map(|(_, e)| e.ok()).map(|e| e.received_at_ms),
            Err(_) => None,
        };
        let silent_since = self
            .firing
            .lock()
            .values()
            .filter(|f| f.subject == provider && self.rules[f.rule].when == crate::config::RuleKind::NoEvents)
            .map(|f| f.state.since_ms)
            .max();
        newest.into_iter().chain(silent_since).max().unwrap_or(now)
    }
}

/// The rule and subject of a stored key, when a rule of that index and kind still exists.
fn parse_key(key: &str, rules: &[AlertRule]) -> Option<(usize, String)> {
    let mut parts = key.splitn(3, '/');
    let index: usize = parts.next()?.parse().ok()?;
    let when = parts.next()?;
    let subject = parts.next()?.to_string();
    (rules.get(index)?.when.as_str() == when).then_some((index, subject))
}
