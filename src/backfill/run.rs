//! One backfill run: read the provider's pages, keep what the store lacks, check each payload
//! as an arrival's would be, and record the rest as events of `Source::Backfill`, one page per
//! group commit, so that they are queued for the app like any event.
//!
//! What a run did is its [`Report`], filled in as it goes: an error from the provider's API stops
//! the run, and what it recorded before stays recorded (a second run skips it).

use bytes::Bytes;
use serde::Serialize;
use warp::http::{HeaderMap, HeaderName, HeaderValue};

use super::{ApiError, Fetched, Page, Window};
use crate::clock::Clock;
use crate::providers::{Endpoint, Inbound};
use crate::store::{NewEvent, RejectionParts, Source, Store, StoreError};

/// What a backfilled event records as its client: the provider's API, not a client, sent it.
pub const BACKFILL_SOURCE: &str = "backfill";

/// The events of a dry run that a report lists at most (the counts go on).
const DRY_RUN_LIST: usize = 1000;
/// The refusals a report lists at most (the count goes on).
const REFUSED_LIST: usize = 100;

/// A listing to read, page by page, oldest first.
pub trait Pages {
    fn next_page(&mut self) -> impl std::future::Future<Output = Result<Option<Page>, ApiError>> + Send;
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `stagehook backfill`, the API or the dashboard.
    Manual,
    /// The start after a downtime (`backfill.on_start`).
    Start,
    /// The periodic reconciliation (`backfill.every`).
    Every,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Done,
    /// Stopped by an error (see [`Report::error`]); what it recorded before stays.
    Failed,
}

/// An event the run refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub event_id: String,
    pub code: &'static str,
    pub message: String,
}

/// An event a dry run would add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WouldAdd {
    pub event_id: String,
    pub event_type: String,
    pub created_ms: i64,
}

/// Why a run stopped early: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunError {
    pub code: &'static str,
    pub message: String,
}

impl From<ApiError> for RunError {
    fn from(e: ApiError) -> RunError {
        RunError { code: e.code(), message: e.to_string() }
    }
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> RunError {
        RunError { code: "store_unavailable", message: format!("the store could not record the events: {e}") }
    }
}

/// What a run did, as `POST /staging/webhooks/backfill` and `stagehook backfill` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub id: u64,
    pub endpoint: String,
    pub trigger: Trigger,
    pub state: State,
    pub dry_run: bool,
    pub types: Vec<String>,
    /// The window the run covers: the one asked for, cut to what the provider's API keeps.
    pub window: WindowJson,
    /// The start of the asked window, when the provider's retention cut it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut_from_ms: Option<i64>,
    /// Events the provider listed in the window.
    pub listed: u64,
    /// Of those, the ones the store already held.
    pub already_stored: u64,
    /// Recorded now (a dry run: would be).
    pub added: u64,
    pub refused: u64,
    pub refusals: Vec<Refused>,
    /// A dry run's events that would be added (the first 1000).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_add: Vec<WouldAdd>,
    pub started_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowJson {
    pub since_ms: i64,
    pub until_ms: i64,
}

impl From<Window> for WindowJson {
    fn from(w: Window) -> WindowJson {
        WindowJson { since_ms: w.since_ms, until_ms: w.until_ms }
    }
}

impl Report {
    pub fn new(id: u64, endpoint: &str, trigger: Trigger, plan: &Plan, started_at_ms: i64) -> Report {
        Report {
            id,
            endpoint: endpoint.to_string(),
            trigger,
            state: State::Running,
            dry_run: plan.dry_run,
            types: plan.types.clone(),
            window: plan.window.into(),
            cut_from_ms: plan.cut_from_ms,
            listed: 0,
            already_stored: 0,
            added: 0,
            refused: 0,
            refusals: Vec::new(),
            would_add: Vec::new(),
            started_at_ms,
            finished_at_ms: None,
            error: None,
        }
    }

    fn refuse(&mut self, event_id: &str, code: &'static str, message: String) {
        self.refused += 1;
        if self.refusals.len() < REFUSED_LIST {
            self.refusals.push(Refused { event_id: event_id.to_string(), code, message });
        }
    }
}

/// What a run is asked to do, its window already resolved and cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub window: Window,
    /// The asked start, when retention cut it.
    pub cut_from_ms: Option<i64>,
    /// Globs over event types (`invoice.*`); empty: every type.
    pub types: Vec<String>,
    pub dry_run: bool,
}

/// Reads `pages` to the end, recording what the store lacks, and updates `report` after each
/// page (through `progress`, so a caller can show a run in flight). Returns when the listing
/// ends or fails; the error is in the report.
pub async fn run<P: Pages>(
    endpoint: &Endpoint,
    store: &Store,
    clock: &Clock,
    pages: &mut P,
    report: &mut Report,
    mut progress: impl FnMut(&Report),
) {
    let outcome = loop {
        let page = match pages.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => break Ok(()),
            Err(e) => break Err(RunError::from(e)),
        };
        if let Err(e) = record_page(endpoint, store, clock, page, report).await {
            break Err(e);
        }
        progress(report);
    };
    report.finished_at_ms = Some(clock.now_ms());
    match outcome {
        Ok(()) => report.state = State::Done,
        Err(e) => {
            report.state = State::Failed;
            report.error = Some(e);
        }
    }
    progress(report);
}

/// One page: each missing event checked as an arrival's payload is, then the good ones recorded
/// in one group commit, in the page's order (the provider's creation order).
async fn record_page(
    endpoint: &Endpoint,
    store: &Store,
    clock: &Clock,
    page: Page,
    report: &mut Report,
) -> Result<(), RunError> {
    report.listed += page.listed;
    report.already_stored += page.listed.saturating_sub(page.missing.len() as u64);
    let name = endpoint.provider.name().to_string();
    let now_ms = clock.now_ms();
    let mut events = Vec::with_capacity(page.missing.len());
    for fetched in page.missing {
        let Fetched { event_id, created_ms, headers, body } = fetched;
        let map = header_map(&headers);
        let inbound = Inbound { headers: &map, body: &body, url: "", now_s: now_ms.div_euclid(1000) };
        let parsed = match endpoint.provider.parse(&inbound) {
            Ok(parsed) => parsed,
            Err(refusal) => {
                let code = refusal.code.as_str();
                store.reject(RejectionParts {
                    at_ms: now_ms,
                    provider: &name,
                    code,
                    message: &format!("backfill: {}", refusal.message),
                    source_ip: &BACKFILL_SOURCE,
                    headers: headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
                    body: Some(&body),
                    diagnosis: None,
                });
                report.refuse(&event_id, code, refusal.message);
                continue;
            }
        };
        if report.dry_run {
            if store.find_by_event_id(&name, &parsed.event_id)?.is_some() {
                report.already_stored += 1;
                continue;
            }
            report.added += 1;
            if report.would_add.len() < DRY_RUN_LIST {
                report.would_add.push(WouldAdd {
                    event_id: parsed.event_id,
                    event_type: parsed.event_type,
                    created_ms,
                });
            }
            continue;
        }
        events.push(NewEvent {
            provider: name.clone(),
            event_id: parsed.event_id,
            event_type: parsed.event_type,
            received_at_ms: now_ms,
            source_ip: BACKFILL_SOURCE.to_string(),
            headers,
            body: Bytes::from(body),
            processing_us: 0,
            targets: endpoint.targets.clone(),
            items: parsed.items,
            parent: None,
            source: Source::Backfill,
        });
    }
    if events.is_empty() {
        return Ok(());
    }
    // The writer takes the page as one group: one sync for up to a page of events, and the
    // ids it gives follow the page's order.
    for ingested in store.ingest_all(events).await? {
        if ingested.duplicate {
            // Arrived by webhook (or another run) since the page was listed.
            report.already_stored += 1;
        } else {
            report.added += 1;
        }
    }
    Ok(())
}

/// The fetched headers as a request's, for the provider's `parse`; a pair that is not a valid
/// header is left out (the provider then says what is missing).
fn header_map(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            map.append(k, v);
        }
    }
    map
}

/// Whether an event type matches one of `globs` (`*` any run of characters); no glob: all.
pub fn type_matches(globs: &[String], event_type: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| crate::listen::glob_matches(g, event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_event_types() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(type_matches(&[], "anything"));
        assert!(type_matches(&g(&["invoice.*"]), "invoice.paid"));
        assert!(!type_matches(&g(&["invoice.*"]), "charge.succeeded"));
        assert!(type_matches(&g(&["charge.failed", "*.paid"]), "invoice.paid"));
        assert!(!type_matches(&g(&["push"]), "pushed"));
    }
}
