//! The runs nobody asks for: after a downtime (`backfill.on_start`), and periodically
//! (`backfill.every`), for every endpoint whose provider's API is configured. They run in the
//! background; ingest never waits for them.

use std::sync::Arc;
use std::time::Duration;

use super::run::{State, Trigger};
use super::runs::{Ask, Backfills, Downtime};
use crate::clock::{rfc3339, Clock};
use crate::providers::Endpoint;
use crate::store::Store;

/// How far before the last heartbeat a start's window begins: heartbeats are seconds apart, and
/// an event the provider created just before the stop may have been in flight. Duplicates cost
/// nothing (the store skips them).
pub const SLACK: Duration = Duration::from_secs(60);

/// How long a scheduled run may take before the schedule stops waiting on it (it goes on).
const RUN_WAIT: Duration = Duration::from_secs(3600);

/// The endpoints a schedule covers: those whose provider's API is configured.
fn with_api(endpoints: &[Endpoint]) -> Vec<String> {
    endpoints.iter().filter(|e| e.provider.api_access().is_ok()).map(|e| e.provider.name().to_string()).collect()
}

/// The start's reconciliation: the window from the previous run's last heartbeat (less
/// [`SLACK`]) to now, each endpoint in turn. Records the downtime for the API and the dashboard,
/// and logs what it recovered.
pub async fn after_downtime(
    backfills: Arc<Backfills>,
    endpoints: Arc<[Endpoint]>,
    store: Store,
    clock: Clock,
    last_heartbeat_ms: i64,
    run: bool,
) {
    let now_ms = clock.now_ms();
    let mut downtime = Downtime { from_ms: last_heartbeat_ms, to_ms: now_ms, backfilled: None };
    backfills.set_downtime(downtime);
    if !run {
        let (from, to) = (rfc3339(last_heartbeat_ms), rfc3339(now_ms));
        tracing::info!(from_ms = last_heartbeat_ms, to_ms = now_ms, "down from {from} to {to}");
        return;
    }
    let mut added = 0;
    for name in with_api(&endpoints) {
        let ask = Ask {
            endpoint: name,
            since_ms: Some(last_heartbeat_ms - SLACK.as_millis() as i64),
            until_ms: Some(now_ms),
            ..Ask::default()
        };
        added += run_to_end(&backfills, &endpoints, &store, &clock, ask, Trigger::Start).await;
    }
    downtime.backfilled = Some(added);
    backfills.set_downtime(downtime);
    let (from, to) = (rfc3339(last_heartbeat_ms), rfc3339(now_ms));
    tracing::info!(
        from_ms = last_heartbeat_ms,
        to_ms = now_ms,
        backfilled = added,
        "down from {from} to {to}; backfilled {added} events"
    );
}

/// The periodic reconciliation: every `every`, the window of the last `every` (plus
/// [`SLACK`]), each endpoint in turn, until `stop` says the server stops.
pub async fn every(
    backfills: Arc<Backfills>,
    endpoints: Arc<[Endpoint]>,
    store: Store,
    clock: Clock,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let span = (every + SLACK).as_millis() as i64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now_ms = clock.now_ms();
        for name in with_api(&endpoints) {
            let ask = Ask { endpoint: name, since_ms: Some(now_ms - span), until_ms: Some(now_ms), ..Ask::default() };
            run_to_end(&backfills, &endpoints, &store, &clock, ask, Trigger::Every).await;
        }
    }
}

/// Starts a run and waits for its end; returns what it added. A run already going for the
/// endpoint (a person's) is left to cover it.
async fn run_to_end(
    backfills: &Arc<Backfills>,
    endpoints: &[Endpoint],
    store: &Store,
    clock: &Clock,
    ask: Ask,
    trigger: Trigger,
) -> u64 {
    let name = ask.endpoint.clone();
    match backfills.start(endpoints, store, clock, ask, trigger) {
        Ok(id) => match backfills.wait(id, RUN_WAIT).await {
            Some(r) if r.state != State::Running => r.added,
            _ => 0,
        },
        Err(e) => {
            tracing::warn!(endpoint = %name, code = e.code(), "backfill not started: {e}");
            0
        }
    }
}
