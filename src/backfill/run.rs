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
    pub window: Window,
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

impl Report {
    pub fn new(id: u64, endpoint: &str, trigger: Trigger, plan: &Plan, started_at_ms: i64) -> Report {
        Report {
            id,
            endpoint: endpoint.to_string(),
            trigger,
            state: State::Running,
            dry_run: plan.dry_run,
            types: plan.types.clone(),
            window: plan.window,
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
        let targets = endpoint.targets_for(&parsed.event_type);
        events.push(NewEvent {
            provider: name.clone(),
            event_id: parsed.event_id,
            event_type: parsed.event_type,
            received_at_ms: now_ms,
            source_ip: BACKFILL_SOURCE.to_string(),
            headers: headers.into(),
            body: Bytes::from(body),
            processing_us: 0,
            targets,
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use super::*;
    use crate::providers::registry::ProviderKind;
    use crate::providers::stripe::Stripe;
    use crate::secret::Secret;
    use crate::store::{EventFilter, StoreOptions};

    /// Pages handed out in order, then an error if one is queued.
    struct Scripted(VecDeque<Result<Page, ApiError>>);

    impl Pages for Scripted {
        async fn next_page(&mut self) -> Result<Option<Page>, ApiError> {
            self.0.pop_front().transpose()
        }
    }

    fn stripe() -> Endpoint {
        let provider = Stripe::new("stripe", vec![Secret::new("whsec_0123456789abcdef0123456789abcdef")], 300);
        Endpoint {
            path: "stripe".into(),
            kind: ProviderKind::Stripe,
            provider: Arc::new(provider),
            configured: true,
            targets: vec!["http://127.0.0.1:9/hook".into()],
            routes: Vec::new(),
        }
    }

    fn event(n: u32, livemode: bool) -> Fetched {
        let body = serde_json::json!({
            "id": format!("evt_{n:04}"), "object": "event", "type": "invoice.paid", "created": 1_700_000_000 + n,
            "livemode": livemode, "api_version": "2024-06-20", "pending_webhooks": 1,
            "data": {"object": {"id": format!("in_{n}"), "object": "invoice"}},
        });
        Fetched {
            event_id: format!("evt_{n:04}"),
            created_ms: (1_700_000_000 + i64::from(n)) * 1000,
            headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    fn page(listed: u64, missing: impl IntoIterator<Item = Fetched>) -> Result<Page, ApiError> {
        Ok(Page { listed, missing: missing.into_iter().collect() })
    }

    fn plan(dry_run: bool) -> Plan {
        Plan { window: Window { since_ms: 0, until_ms: i64::MAX }, cut_from_ms: None, types: vec![], dry_run }
    }

    fn open() -> (tempfile::TempDir, Store, Clock) {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            cache_bytes: 1 << 20,
            rejection_log_size: 10,
            log_segment_bytes: 1 << 20,
            tree_flush_every_ms: Some(crate::store::TREE_FLUSH_EVERY_MS),
        };
        let clock = Clock::frozen(1_800_000_000_000);
        let store = Store::open(dir.path(), options, clock.clone()).unwrap();
        (dir, store, clock)
    }

    async fn go(store: &Store, clock: &Clock, pages: Vec<Result<Page, ApiError>>, dry_run: bool) -> Report {
        let mut report = Report::new(1, "stripe", Trigger::Manual, &plan(dry_run), clock.now_ms());
        run(&stripe(), store, clock, &mut Scripted(pages.into()), &mut report, |_| {}).await;
        report
    }

    fn stored(store: &Store) -> Vec<crate::store::Event> {
        let page = store.events_after(&EventFilter::default(), None, 1000, 10_000).unwrap();
        page.events.into_iter().map(|(_, e)| e.unwrap()).collect()
    }

    /// Pages become events in the pages' order, marked as backfilled and never as verified, each
    /// with a delivery queued; a live event is refused and reported, and the rest still go in.
    #[tokio::test]
    async fn pages_are_recorded_in_order_as_backfilled_and_a_bad_payload_is_refused() {
        let (_dir, store, clock) = open();
        let report = go(
            &store,
            &clock,
            vec![page(3, [event(1, false), event(2, false)]), page(2, [event(3, true), event(4, false)])],
            false,
        )
        .await;
        assert_eq!(report.state, State::Done);
        assert_eq!((report.listed, report.already_stored, report.added, report.refused), (5, 1, 3, 1));
        assert_eq!(report.refusals[0].event_id, "evt_0003");
        assert_eq!(report.refusals[0].code, "livemode_event");
        let events = stored(&store);
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["evt_0001", "evt_0002", "evt_0004"]);
        for e in &events {
            assert_eq!(e.source, Source::Backfill);
            assert!(!e.signature_verified, "a backfilled event was never signed");
            assert_eq!(e.source_ip, BACKFILL_SOURCE);
            assert!(store.has_pending_job(store.find_by_event_id("stripe", &e.event_id).unwrap().unwrap()).unwrap());
        }
        assert_eq!(store.recent_rejections(10).unwrap().len(), 1, "the refusal is in the rejection log");
        store.shutdown().await.unwrap();
    }

    /// A dry run records nothing and lists what it would add; an error from the API stops a run
    /// and keeps what it recorded, and a second run adds only the rest.
    #[tokio::test]
    async fn a_dry_run_adds_nothing_and_a_failed_run_keeps_its_pages() {
        let (_dir, store, clock) = open();
        let dry = go(&store, &clock, vec![page(2, [event(1, false), event(2, false)])], true).await;
        assert_eq!((dry.added, dry.would_add.len()), (2, 2));
        assert_eq!(dry.would_add[1].event_id, "evt_0002");
        assert!(stored(&store).is_empty());

        let failed = go(
            &store,
            &clock,
            vec![page(2, [event(1, false), event(2, false)]), Err(ApiError::Unavailable("HTTP 503".into()))],
            false,
        )
        .await;
        assert_eq!(failed.state, State::Failed);
        assert_eq!(failed.error.as_ref().unwrap().code, "api_unavailable");
        assert_eq!(failed.added, 2);

        let again = go(&store, &clock, vec![page(3, [event(1, false), event(2, false), event(3, false)])], false).await;
        assert_eq!((again.added, again.already_stored), (1, 2), "the store skips what the failed run recorded");
        assert_eq!(stored(&store).len(), 3);
        store.shutdown().await.unwrap();
    }
}
