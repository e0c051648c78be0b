//! The runs of one stagehook: at most one per endpoint at a time, each in its own task, their
//! reports kept in memory (the last [`KEPT`]) for the API and the dashboard, and the downtime
//! the start found.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;

use super::run::{self, Plan, Report, State, Trigger};
use super::Window;
use crate::clock::Clock;
use crate::providers::api::{ApiAccess, NoApi};
use crate::providers::Endpoint;
use crate::store::Store;

/// The reports kept, newest last.
pub const KEPT: usize = 50;

/// The window of a run that names no start: the last day, so that a first backfill on a new
/// staging does not send the app a month of old events.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What a person (or a schedule) asks of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ask {
    pub endpoint: String,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub types: Vec<String>,
    pub dry_run: bool,
}

/// Why a run was not started. Each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no endpoint `{0}`")]
    UnknownEndpoint(String),
    #[error("endpoint `{0}`: {1}")]
    NoApi(String, NoApi),
    #[error("{0}")]
    BadWindow(String),
    #[error("a backfill of `{endpoint}` is already running (run {id})")]
    Running { endpoint: String, id: u64 },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownEndpoint(_) => "unknown_endpoint",
            Refusal::NoApi(_, NoApi::NotOffered) => "no_events_api",
            Refusal::NoApi(_, NoApi::NotConfigured(_)) => "api_not_configured",
            Refusal::BadWindow(_) => "bad_window",
            Refusal::Running { .. } => "backfill_running",
        }
    }
}

/// The downtime found at the start: from the previous run's last heartbeat to this start, and
/// what its reconciliation added so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Downtime {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Events the start's runs added; `None` until they end (or when `backfill.on_start` is off).
    pub backfilled: Option<u64>,
}

/// Every run of this process.
#[derive(Default)]
pub struct Backfills {
    runs: Mutex<VecDeque<Report>>,
    running: Mutex<HashSet<String>>,
    next_id: AtomicU64,
    changed: Notify,
    downtime: Mutex<Option<Downtime>>,
}

impl Backfills {
    /// Resolves `ask`'s window against `access`'s retention, starting at `now_ms`.
    pub fn plan(access: &ApiAccess, ask: &Ask, now_ms: i64) -> Result<Plan, Refusal> {
        let until_ms = ask.until_ms.unwrap_or(now_ms).min(now_ms);
        let since_ms = ask.since_ms.unwrap_or(until_ms - DEFAULT_WINDOW.as_millis() as i64);
        if since_ms > until_ms {
            return Err(Refusal::BadWindow(format!(
                "the window starts ({since_ms}) after it ends ({until_ms}); `since` is the earlier time"
            )));
        }
        let floor = now_ms - access.retention().as_millis() as i64;
        if until_ms < floor {
            return Err(Refusal::BadWindow(format!(
                "the window ends before the {} days the provider's API keeps",
                access.retention().as_secs() / 86_400
            )));
        }
        let cut_from_ms = (since_ms < floor).then_some(since_ms);
        Ok(Plan {
            window: Window { since_ms: since_ms.max(floor), until_ms },
            cut_from_ms,
            types: ask.types.clone(),
            dry_run: ask.dry_run,
        })
    }

    /// Starts a run of `ask` in its own task and returns its id, or says why not.
    pub fn start(
        self: &Arc<Self>,
        endpoints: &[Endpoint],
        store: &Store,
        clock: &Clock,
        ask: Ask,
        trigger: Trigger,
    ) -> Result<u64, Refusal> {
        let endpoint = endpoints
            .iter()
            .find(|e| e.provider.name() == ask.endpoint)
            .ok_or_else(|| Refusal::UnknownEndpoint(ask.endpoint.clone()))?
            .clone();
        let access = endpoint.provider.api_access().map_err(|e| Refusal::NoApi(ask.endpoint.clone(), e))?.clone();
        let now_ms = clock.now_ms();
        let plan = Self::plan(&access, &ask, now_ms)?;
        let name = endpoint.provider.name().to_string();
        if !self.running.lock().insert(name.clone()) {
            let id = self
                .runs
                .lock()
                .iter()
                .rev()
                .find(|r| r.endpoint == name && r.state == State::Running)
                .map_or(0, |r| r.id);
            return Err(Refusal::Running { endpoint: name, id });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut report = Report::new(id, &name, trigger, &plan, now_ms);
        self.update(&report);
        let (this, store, clock) = (self.clone(), store.clone(), clock.clone());
        tokio::spawn(async move {
            let known_store = store.clone();
            let known_name = name.clone();
            let known: super::Known =
                Arc::new(move |id: &str| matches!(known_store.find_by_event_id(&known_name, id), Ok(Some(_))));
            match super::listing::Lister::new(&access, plan.window, plan.types.clone(), known) {
                Ok(mut lister) => {
                    run::run(&endpoint, &store, &clock, &mut lister, &mut report, |r| this.update(r)).await;
                }
                Err(e) => {
                    report.state = State::Failed;
                    report.finished_at_ms = Some(clock.now_ms());
                    report.error = Some(e.into());
                    this.update(&report);
                }
            }
            log_end(&report);
            this.running.lock().remove(&name);
            this.changed.notify_waiters();
        });
        Ok(id)
    }

    /// Keeps `report` as its run's latest, and wakes whoever waits on a run.
    fn update(&self, report: &Report) {
        let mut runs = self.runs.lock();
        match runs.iter_mut().rev().find(|r| r.id == report.id) {
            Some(r) => *r = report.clone(),
            None => {
                if runs.len() == KEPT {
                    runs.pop_front();
                }
                runs.push_back(report.clone());
            }
        }
        drop(runs);
        self.changed.notify_waiters();
    }

    /// The run's latest report, if it is still kept.
    pub fn report(&self, id: u64) -> Option<Report> {
        self.runs.lock().iter().rev().find(|r| r.id == id).cloned()
    }

    /// The kept reports, newest first.
    pub fn recent(&self) -> Vec<Report> {
        self.runs.lock().iter().rev().cloned().collect()
    }

    /// The run's report once it has ended, or its latest after `timeout`.
    pub async fn wait(&self, id: u64, timeout: Duration) -> Option<Report> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            let report = self.report(id)?;
            if report.state != State::Running {
                return Some(report);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.report(id);
            }
        }
    }

    pub fn downtime(&self) -> Option<Downtime> {
        *self.downtime.lock()
    }

    pub fn set_downtime(&self, downtime: Downtime) {
        *self.downtime.lock() = Some(downtime);
    }
}

/// One log line per run, so that the log says what each recovered.
fn log_end(r: &Report) {
    match &r.error {
        None => tracing::info!(
            endpoint = %r.endpoint,
            trigger = ?r.trigger,
            since_ms = r.window.since_ms,
            until_ms = r.window.until_ms,
            listed = r.listed,
            already_stored = r.already_stored,
            added = r.added,
            refused = r.refused,
            dry_run = r.dry_run,
            "backfill done"
        ),
        Some(e) => tracing::warn!(
            endpoint = %r.endpoint,
            trigger = ?r.trigger,
            added = r.added,
            code = e.code,
            error = %e.message,
            "backfill failed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::api::StripeApi;
    use crate::secret::Secret;

    const DAY: i64 = 86_400_000;

    fn stripe() -> ApiAccess {
        ApiAccess::Stripe(StripeApi { base: "http://127.0.0.1:9".into(), key: Secret::new("rk_test_x") })
    }

    /// No start is the last day; a start before what the provider keeps is cut to it and said;
    /// an end in the future is now; a window that ends before it starts, or before the
    /// retention, is refused.
    #[test]
    fn windows_default_to_a_day_and_are_cut_to_the_providers_retention() {
        let now = 100 * DAY;
        let ask = |since: Option<i64>, until: Option<i64>| Ask { since_ms: since, until_ms: until, ..Ask::default() };
        let p = Backfills::plan(&stripe(), &ask(None, None), now).unwrap();
        assert_eq!((p.window, p.cut_from_ms), (Window { since_ms: now - DAY, until_ms: now }, None));
        let p = Backfills::plan(&stripe(), &ask(Some(now - 40 * DAY), Some(now + DAY)), now).unwrap();
        assert_eq!(
            (p.window, p.cut_from_ms),
            (Window { since_ms: now - 30 * DAY, until_ms: now }, Some(now - 40 * DAY))
        );
        let refused = |since, until| Backfills::plan(&stripe(), &ask(since, until), now).unwrap_err().code();
        assert_eq!(refused(Some(now - DAY), Some(now - 2 * DAY)), "bad_window");
        assert_eq!(refused(Some(now - 50 * DAY), Some(now - 40 * DAY)), "bad_window");
    }
}
