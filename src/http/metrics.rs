//! `GET /metrics`: the Prometheus text exposition format, behind the origin checks and the admin
//! token like every admin route (Prometheus sends the token with `authorization.credentials`).
//!
//! Every value is read at scrape time from what already exists: the store's counters (the same
//! accessors `/stats` and `/recovery/stats` read, so the numbers agree), the breakers, the
//! connection counts and `/proc`. The request path does no work for it. Labels are bounded: a
//! endpoint, an event status, a refusal code, a failure reason.

use std::path::Path;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{admin, AppState};
use crate::delivery::breaker::State;

/// The media type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`, the one route of this file.
fn route() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path("metrics").and(warp::path::end()).and(warp::get())
}

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    route().and(admin(state)).map(|s: Arc<AppState>| scrape(&s))
}

/// `GET /metrics` on `server.metrics_bind`: no token, any `Host`. Whoever can reach that address
/// may read the counts, which is what the operator chose it for.
pub fn unguarded(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    route().map(move || scrape(&state))
}

fn scrape(s: &AppState) -> Response {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape::of(s)));
    let mut body = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut body, &registry);
    let mut res = Response::new(body.into());
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    res
}

/// One labelled value.
type Sample = (Vec<(&'static str, String)>, f64);

/// What one scrape shows, read once, then encoded.
#[derive(Debug)]
struct Scrape {
    counters: Vec<Family>,
    gauges: Vec<Family>,
    processing: crate::store::Histogram,
    delivery: crate::store::Histogram,
    commits: crate::store::Histogram,
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    samples: Vec<Sample>,
}

fn family(name: &'static str, help: &'static str, unit: Option<Unit>, samples: Vec<Sample>) -> Family {
    Family { name, help, unit, samples }
}

fn labelled<'a>(label: &'static str, values: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<Sample> {
    values.into_iter().map(|(v, n)| (vec![(label, v.to_string())], n as f64)).collect()
}

fn single(v: f64) -> Vec<Sample> {
    vec![(Vec::new(), v)]
}

impl Scrape {
    fn of(s: &AppState) -> Scrape {
        let counters = s.store.stats().counters();
        let now_ms = s.clock.now_ms();
        let lanes = s.engine.lanes();
        let events = counters
            .events()
            .map(|e| {
                (vec![("provider", e.provider.to_string()), ("status", e.status.as_str().to_string())], e.count as f64)
            })
            .collect();
        let breakers = lanes
            .iter()
            .map(|l| {
                let state = match l.breaker.state {
                    State::Closed => 0.0,
                    State::HalfOpen => 1.0,
                    State::Open => 2.0,
                };
                (vec![("provider", l.name.clone())], state)
            })
            .collect();
        let oldest_due = lanes
            .iter()
            .filter_map(|l| {
                let due = s.store.oldest_job_ms(&l.name).ok().flatten()?;
                Some((vec![("provider", l.name.clone())], ((now_ms - due).max(0) as f64) / 1000.0))
            })
            .collect();
        // The endpoints whose provider publishes a delivery timeout, 0 until one is exceeded.
        let slower = lanes
            .iter()
            .filter(|l| l.provider_timeout.is_some())
            .map(|l| (vec![("provider", l.name.clone())], l.slower_than_provider as f64))
            .collect();
        let dead_letters =
            lanes.iter().map(|l| (vec![("provider", l.name.clone())], counters.dead_letters(&l.name) as f64)).collect();
        // Every endpoint, 0 until it has one, so a rate over the series needs no `or vector(0)`.
        let mut backfilled: std::collections::BTreeMap<&str, u64> =
            s.endpoints.iter().map(|e| (e.provider.name(), 0)).collect();
        backfilled.extend(counters.backfilled());
        // Likewise every endpoint: events stored with no target to deliver to (`/stats`' `stored_only`).
        let mut stored_only: std::collections::BTreeMap<&str, u64> =
            s.endpoints.iter().map(|e| (e.provider.name(), 0)).collect();
        stored_only.extend(counters.stored_only());
        let process = Process::read();
        Scrape {
            processing: counters.processing_histogram(),
            delivery: counters.delivery_histogram(),
            commits: s.store.stats().commit_histogram(),
            counters: vec![
                family(
                    "stagehook_events_received",
                    "Provider events received and stored, a batch counting each of its events",
                    None,
                    labelled("provider", counters.items()),
                ),
                family(
                    "stagehook_events_backfilled",
                    "Events recorded from a provider's API after their webhook was missed (stagehook backfill)",
                    None,
                    labelled("provider", backfilled),
                ),
                family(
                    "stagehook_duplicates",
                    "Events received again and answered as duplicates, never stored twice",
                    None,
                    labelled("provider", counters.duplicates()),
                ),
                family(
                    "stagehook_rejections",
                    "Refused ingest requests by error code (rate_limited among them)",
                    None,
                    labelled("code", counters.rejected()),
                ),
                family(
                    "stagehook_delivery_attempts",
                    "Delivery attempts by outcome: delivered (a 2xx) or failed",
                    None,
                    labelled(
                        "outcome",
                        [
                            ("delivered", counters.delivered_after().values().sum()),
                            ("failed", counters.failure_reasons().values().sum()),
                        ],
                    ),
                ),
                family(
                    "stagehook_deliveries_slower_than_provider",
                    "Delivery attempts since startup that took longer than the provider's published delivery timeout (the provider would have given up on them)",
                    None,
                    slower,
                ),
                family(
                    "stagehook_chaos_actions",
                    "Chaos delivery's actions by endpoint and action: duplicate (a second delivery queued), delay (a first attempt delayed), reorder (an attempt that went out after an event that arrived later)",
                    None,
                    counters
                        .chaos()
                        .into_iter()
                        .flat_map(|(provider, actions)| {
                            actions.into_iter().map(move |(action, n)| {
                                (vec![("provider", provider.to_string()), ("action", action.to_string())], n as f64)
                            })
                        })
                        .collect(),
                ),
                family(
                    "stagehook_delivery_failures",
                    "Failed delivery attempts by reason",
                    None,
                    labelled("reason", counters.failure_reasons()),
                ),
                family(
                    "stagehook_retention_deleted",
                    "Events deleted by retention",
                    None,
                    single(counters.retention_deleted() as f64),
                ),
            ],
            gauges: vec![
                family(
                    "stagehook_build_info",
                    "The version of this stagehook",
                    None,
                    vec![(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1.0)],
                ),
                family("stagehook_events", "Stored events by their current status", None, events),
                family("stagehook_dead_letters", "Deliveries given up (dead letters) by provider", None, dead_letters),
                family(
                    "stagehook_events_stored_only",
                    "Events stored with no target to deliver to (processed, never attempted), by provider",
                    None,
                    labelled("provider", stored_only),
                ),
                family(
                    "stagehook_breaker_state",
                    "Circuit breaker per provider: 0 closed, 1 half-open, 2 open",
                    None,
                    breakers,
                ),
                family("stagehook_queue_depth", "Delivery jobs queued", None, single(counters.queue_depth() as f64)),
                family(
                    "stagehook_queue_oldest_due_age",
                    "How long the oldest queued job of a provider has been due (negative ages are 0)",
                    Some(Unit::Seconds),
                    oldest_due,
                ),
                family(
                    "stagehook_deliveries_in_flight",
                    "Deliveries being made now",
                    None,
                    single(s.engine.in_flight() as f64),
                ),
                family(
                    "stagehook_listeners",
                    "Listeners (stagehook listen) whose event stream is open now",
                    None,
                    single(s.listeners.active_count() as f64),
                ),
                family(
                    "stagehook_store_size",
                    "The data folder's files on disk",
                    Some(Unit::Bytes),
                    single(folder_bytes(&s.config.server.data_dir) as f64),
                ),
                family("process_resident_memory", "Resident memory", Some(Unit::Bytes), single(process.rss_bytes)),
                family("process_open_fds", "Open file descriptors", None, single(process.open_fds)),
                family(
                    "process_start_time",
                    "When the process started, since the Unix epoch",
                    Some(Unit::Seconds),
                    single(process.start_time_s),
                ),
            ],
        }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (f, counter) in self.counters.iter().map(|f| (f, true)).chain(self.gauges.iter().map(|f| (f, false))) {
            let kind = if counter { ConstCounter::new(0.0).metric_type() } else { ConstGauge::new(0.0).metric_type() };
            let mut m = encoder.encode_descriptor(f.name, f.help, f.unit.as_ref(), kind)?;
            for (labels, v) in &f.samples {
                // An unlabelled value is the family's only one.
                let m = if labels.is_empty() { m.encode_family(&NONE)? } else { m.encode_family(labels)? };
                if counter {
                    ConstCounter::new(*v).encode(m)?;
                } else {
                    ConstGauge::new(*v).encode(m)?;
                }
            }
        }
        for (name, help, h) in [
            (
                "stagehook_ingest_processing",
                "From a request's arrival to its hand-over to the store, for each event stored",
                &self.processing,
            ),
            (
                "stagehook_delivery_duration",
                "A delivery attempt, from sending to the answer or the error",
                &self.delivery,
            ),
            (
                "stagehook_store_commit_duration",
                "A store commit someone waited for (bodies synced, batch applied and flushed), since this process started",
                &self.commits,
            ),
        ] {
            // The store's buckets are cumulative; the encoder adds them up itself.
            let mut below = 0;
            let buckets: Vec<(f64, u64)> = h
                .bounds
                .iter()
                .map(|&(le, cumulative)| {
                    let n = cumulative - below;
                    below = cumulative;
                    (le, n)
                })
                .collect();
            let mut m = encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
            m.encode_histogram::<NoLabelSet>(h.sum_s, h.count, &buckets, None)?;
        }
        Ok(())
    }
}

/// The empty label set.
const NONE: [(&str, &str); 0] = [];

/// What `/proc/self` says of this process; 0 where it cannot be read.
struct Process {
    rss_bytes: f64,
    open_fds: f64,
    start_time_s: f64,
}

impl Process {
    fn read() -> Process {
        let rss_kb = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").trim().to_string()))
            })
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0);
        Process { rss_bytes: rss_kb * 1024.0, open_fds, start_time_s: start_time_s() }
    }
}

/// The process's start: the boot time plus its start in clock ticks after boot (`/proc/self/stat`
/// field 22).
fn start_time_s() -> f64 {
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<f64>().ok())));
    let ticks = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
        // The command name, field 2, may hold spaces: count from the closing parenthesis.
        let rest = &s[s.rfind(')')? + 2..];
        rest.split(' ').nth(19)?.parse::<f64>().ok()
    });
    // SAFETY: sysconf reads a constant of the system; it touches no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match (boot, ticks) {
        (Some(boot), Some(ticks)) if hz > 0.0 => boot + ticks / hz,
        _ => 0.0,
    }
}

/// The bytes of every file under `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => folder_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
