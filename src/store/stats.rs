//! Counters that make `/stats` O(1): kept by the store writer, mirrored to disk in the same batch
//! as the change they count, and published here once that batch is in the tree.
//!
//! The counter names are private to the store: everything outside it reads counters through the
//! typed accessors of [`Counters`]; the writer and `pending.rs` name them through the functions
//! below.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::record::Status;

/// Counter names. Per-provider counters end in `/<provider>`.
pub(super) fn events_counter(provider: &str, status: &str) -> String {
    format!("events/{provider}/{status}")
}
/// Provider events received, a batch counting each of its events (never decreases).
pub(super) fn items_counter(provider: &str) -> String {
    format!("items/{provider}")
}

/// Events of one provider recorded from its API rather than received as webhooks (`stagehook
/// backfill`), cumulative: retention deleting one does not lower it.
pub(super) fn backfilled_counter(provider: &str) -> String {
    format!("backfilled/{provider}")
}

/// Events of one provider stored without a target (neither a route nor `forward_to` took their
/// type), still stored and never attempted: `processed`, since recording them was all there was
/// to do, but not delivered. A replay to a target, or retention, takes an event out of it.
pub(super) fn stored_only_counter(provider: &str) -> String {
    format!("stored_only/{provider}")
}

/// Whether an event in this state counts under [`stored_only_counter`].
pub(super) fn is_stored_only(status: Status, attempts: u32) -> bool {
    status == Status::Processed && attempts == 0
}

pub(super) fn duplicates_counter(provider: &str) -> String {
    format!("duplicates/{provider}")
}
/// Accepted events of one provider in one minute (Unix minutes), for the throughput chart.
pub(super) fn minute_counter(provider: &str, minute: i64) -> String {
    format!("minute/{provider}/{minute:010}")
}

/// How long per-minute counters are kept.
pub const MINUTES_KEPT: i64 = 120;

/// Accepted events, all providers, in one second (Unix seconds), for `events_last_minute`.
/// Persisted like every counter, so a restart knows the last minute without scanning events.
pub(super) fn second_counter(second: i64) -> String {
    format!("second/{second:012}")
}

/// How long per-second counters are kept: past the minute they serve, until the next sweep.
pub const SECONDS_KEPT: i64 = 120;

/// Whether a counter is a per-minute or per-second one that is too old to keep.
pub(super) fn expired_counter(name: &str, now_ms: i64) -> bool {
    if let Some(rest) = name.strip_prefix("minute/") {
        let minute = rest.rsplit_once('/').and_then(|(_, m)| m.parse::<i64>().ok());
        return minute.is_some_and(|m| m < now_ms.div_euclid(60_000) - MINUTES_KEPT);
    }
    if let Some(second) = name.strip_prefix("second/") {
        return second.parse::<i64>().is_ok_and(|s| s < now_ms.div_euclid(1000) - SECONDS_KEPT);
    }
    false
}

/// Per-provider accepted events for each of the 60 minutes up to `now_minute`, oldest first.
fn throughput(counters: &BTreeMap<String, u64>, now_minute: i64) -> (Vec<i64>, BTreeMap<String, Vec<u64>>) {
    let minutes: Vec<i64> = (now_minute - 59..=now_minute).collect();
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (k, v) in counters.range("minute/".to_string()..) {
        let Some(rest) = k.strip_prefix("minute/") else { break };
        let Some((provider, minute)) = rest.rsplit_once('/') else { continue };
        let Ok(minute) = minute.parse::<i64>() else { continue };
        if let Some(i) = minute.checked_sub(minutes[0]).filter(|i| (0..60).contains(i)) {
            out.entry(provider.to_string()).or_insert_with(|| vec![0; 60])[i as usize] += v;
        }
    }
    (minutes, out)
}

/// Jobs in the delivery queue, all providers.
pub(super) const QUEUE_DEPTH: &str = "queue/depth";

/// Events retention deleted, all providers (never decreases).
pub(super) const RETENTION_DELETED: &str = "retention/deleted";

/// Failed attempts by reason (`connect`, `timeout`, `http_5xx`, `storage_corrupt`, ...).
pub(super) fn failures_counter(reason: &str) -> String {
    format!("failures/{reason}")
}

/// Successful deliveries by the attempt (within its series) that succeeded.
pub(super) fn delivered_after_counter(attempt: u32) -> String {
    format!("delivered_after/{attempt}")
}

/// Jobs of one provider that became dead letters, cumulative.
pub(super) fn dead_letters_counter(provider: &str) -> String {
    format!("dead_letters/{provider}")
}

/// Chaos actions of one provider, cumulative: `chaos/<provider>/<action>`.
pub(super) fn chaos_counter(provider: &str, action: &str) -> String {
    format!("chaos/{provider}/{action}")
}
/// A second delivery queued (`duplicate`).
pub(super) const CHAOS_DUPLICATE: &str = "duplicate";
/// A first attempt delayed (`delay`).
pub(super) const CHAOS_DELAY: &str = "delay";
/// An attempt that went out after an event that arrived later (`reorder_window`).
pub(super) const CHAOS_REORDER: &str = "reorder";

pub(super) fn rejected_counter(code: &str) -> String {
    format!("rejected/{code}")
}
/// Processing times (arrival to hand-over to the store): `hist/<bucket>`.
const PROCESSING_HIST: &str = "hist/";

/// Log-scale histogram buckets: four per doubling, so any percentile is within about 19 %.
const BUCKETS: usize = 128;

/// The microseconds of processing the histogram counted, summed (for `/metrics`' `_sum`). Outside
/// `hist/`, which `percentiles` reads as buckets. Counted from the version that added it, so a
/// data folder of an earlier one starts it at 0 with its buckets already full.
pub(super) const HIST_SUM_US: &str = "histsum/us";

/// Delivery attempts' durations: the same buckets as processing times, under their own prefix.
const DELIVERY_HIST: &str = "dhist/";
pub(super) const DELIVERY_HIST_SUM_US: &str = "dhistsum/us";

pub(super) fn delivery_hist_bucket_counter(us: u64) -> String {
    bucket_counter(DELIVERY_HIST, us)
}

pub(super) fn hist_bucket_counter(us: u64) -> String {
    bucket_counter(PROCESSING_HIST, us)
}

/// The counter under `prefix` of the bucket of a sample of `us` microseconds.
fn bucket_counter(prefix: &str, us: u64) -> String {
    format!("{prefix}{:03}", bucket_of(us))
}

/// The bucket of a sample of `us` microseconds.
fn bucket_of(us: u64) -> usize {
    let b = (4.0 * ((us + 1) as f64).log2()).floor() as usize;
    b.min(BUCKETS - 1)
}

/// The counts of a histogram's buckets, kept under `prefix`.
fn buckets(counters: &BTreeMap<String, u64>, prefix: &str) -> [u64; BUCKETS] {
    let mut buckets = [0u64; BUCKETS];
    for (k, v) in counters.range(prefix.to_string()..) {
        let Some(b) = k.strip_prefix(prefix) else { break };
        if let Ok(i) = b.parse::<usize>() {
            buckets[i.min(BUCKETS - 1)] += v;
        }
    }
    buckets
}

/// The microseconds a bucket stands for: its geometric middle.
fn bucket_value_us(b: usize) -> f64 {
    (2f64.powf((b as f64 + 0.5) / 4.0) - 1.0).max(0.0)
}

/// The live counters, as the last committed batch left them.
pub struct Stats {
    counters: RwLock<BTreeMap<String, u64>>,
    /// The durations of the commits someone waited for, since this process started: kept in
    /// memory only, as a process's own figure (Prometheus takes a restart's reset in its stride).
    commits: [AtomicU64; BUCKETS],
    commits_sum_us: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::with_counters(BTreeMap::new())
    }
}

impl Stats {
    pub(super) fn with_counters(counters: BTreeMap<String, u64>) -> Stats {
        Stats {
            counters: RwLock::new(counters),
            commits: [const { AtomicU64::new(0) }; BUCKETS],
            commits_sum_us: AtomicU64::new(0),
        }
    }

    /// Counts a commit that someone waited for, of `us` microseconds.
    pub(super) fn commit_took(&self, us: u64) {
        self.commits[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.commits_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The durations of the store's commits that someone waited for (the bodies' sync, the batch
    /// applied and flushed), since this process started, for `/metrics`.
    pub fn commit_histogram(&self) -> Histogram {
        let buckets: [u64; BUCKETS] = std::array::from_fn(|i| self.commits[i].load(Ordering::Relaxed));
        cumulative(&buckets, self.commits_sum_us.load(Ordering::Relaxed))
    }

    /// Publishes the writer's values of the counters named in `changed`.
    pub(super) fn set<'a>(&self, values: &BTreeMap<String, u64>, changed: impl Iterator<Item = &'a String>) {
        let mut c = self.counters.write();
        for k in changed {
            c.insert(k.clone(), values.get(k).copied().unwrap_or(0));
        }
    }

    pub(super) fn remove(&self, names: &[String]) {
        let mut c = self.counters.write();
        for k in names {
            c.remove(k);
        }
    }

    /// Events accepted in the 60 seconds up to `now_s`.
    pub fn last_minute(&self, now_s: i64) -> u64 {
        let c = self.counters.read();
        c.range(second_counter(now_s - 59)..=second_counter(now_s)).map(|(_, n)| n).sum()
    }

    /// A copy of every counter, all from the same moment, to read through its accessors.
    pub fn counters(&self) -> Counters {
        Counters { values: self.counters.read().clone() }
    }
}

/// Stored events of one provider in one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCount<'a> {
    pub provider: &'a str,
    pub status: Status,
    pub count: u64,
}

/// Processing time (arrival to hand-over to the store) percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Events measured.
    pub samples: u64,
}

/// Durations as a cumulative histogram: `(upper bound in seconds, samples at or below)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: Vec<(f64, u64)>,
    pub sum_s: f64,
    pub count: u64,
}

/// The cumulative histogram of bucket counts and their sum in microseconds, as
/// [`Counters::histogram`] describes it.
fn cumulative(buckets: &[u64; BUCKETS], sum_us: u64) -> Histogram {
    let count = buckets.iter().sum();
    let bounds = (10..=26)
        .map(|k: u32| {
            let below: u64 = buckets[..(4 * k as usize).min(BUCKETS)].iter().sum();
            (((1u64 << k) - 2) as f64 / 1e6, below)
        })
        .collect();
    Histogram { bounds, sum_s: sum_us as f64 / 1e6, count }
}

/// Accepted events per provider in each of the last 60 minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throughput {
    /// Unix minutes, oldest first.
    pub minutes: Vec<i64>,
    /// One count per minute of `minutes`, for each provider that had any.
    pub providers: BTreeMap<String, Vec<u64>>,
}

/// A consistent copy of the counters ([`Stats::counters`]). A counter never written reads 0 and
/// is absent from the maps; one written and back at 0 is present with 0.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    values: BTreeMap<String, u64>,
}

impl Counters {
    fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    /// Counters under `prefix` (which ends in `/`), by the rest of their name, in name order.
    fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        self.values.range(prefix.to_string()..).map_while(move |(k, v)| k.strip_prefix(prefix).map(|rest| (rest, *v)))
    }

    /// Stored events by provider and status, in name order. Duplicates are never stored as
    /// events, so no count is `Duplicate`.
    pub fn events(&self) -> impl Iterator<Item = EventCount<'_>> + '_ {
        self.under("events/").filter_map(|(rest, count)| {
            let (provider, status) = rest.split_once('/')?;
            let status = Status::ALL.into_iter().find(|s| s.as_str() == status)?;
            Some(EventCount { provider, status, count })
        })
    }

    /// Stored events, all providers and statuses.
    pub fn total_events(&self) -> u64 {
        self.events().map(|e| e.count).sum()
    }

    /// Requests found to repeat an event already stored, by provider.
    pub fn duplicates(&self) -> BTreeMap<&str, u64> {
        self.under("duplicates/").collect()
    }

    /// Events stored without a target and never attempted, by provider (see
    /// [`stored_only_counter`]): part of their provider's `processed` count.
    pub fn stored_only(&self) -> BTreeMap<&str, u64> {
        self.under("stored_only/").collect()
    }

    /// Provider events received (a batch counts each of its events), by provider.
    pub fn items(&self) -> BTreeMap<&str, u64> {
        self.under("items/").collect()
    }

    /// Events recorded from a provider's API (backfilled), by provider, cumulative.
    pub fn backfilled(&self) -> BTreeMap<&str, u64> {
        self.under("backfilled/").collect()
    }

    /// Events recorded from providers' APIs, all providers, cumulative.
    pub fn backfilled_total(&self) -> u64 {
        self.under("backfilled/").map(|(_, n)| n).sum()
    }

    /// Chaos actions by provider, then action (`duplicate`, `delay`, `reorder`), cumulative.
    pub fn chaos(&self) -> BTreeMap<&str, BTreeMap<&str, u64>> {
        let mut out: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
        for (rest, n) in self.under("chaos/") {
            if let Some((provider, action)) = rest.rsplit_once('/') {
                out.entry(provider).or_default().insert(action, n);
            }
        }
        out
    }

    /// Refused requests by error code.
    pub fn rejected(&self) -> BTreeMap<&str, u64> {
        self.under("rejected/").collect()
    }

    /// The processing-time histogram for `/metrics`: see [`Counters::histogram`].
    pub fn processing_histogram(&self) -> Histogram {
        self.histogram(PROCESSING_HIST, HIST_SUM_US)
    }

    /// Delivery attempts' durations (request sent to answer or error), for `/metrics`.
    pub fn delivery_histogram(&self) -> Histogram {
        self.histogram(DELIVERY_HIST, DELIVERY_HIST_SUM_US)
    }

    /// A log-scale histogram kept under `prefix` (`<prefix><bucket>`) and `sum_key`: for every
    /// fourth bucket boundary (each doubling, from 1 ms to about 67 s), the boundary in seconds
    /// and how many samples were at most that long; then the sum in seconds and the count. The
    /// boundaries are exact: a sample of `us` microseconds is in a bucket below `2^k - 1` µs
    /// iff `us ≤ 2^k - 2`.
    fn histogram(&self, prefix: &str, sum_key: &str) -> Histogram {
        cumulative(&buckets(&self.values, prefix), self.values.get(sum_key).copied().unwrap_or(0))
    }

    pub fn latency(&self) -> Latency {
        let ([p50_ms, p95_ms, p99_ms], samples) = percentiles(&self.values);
        Latency { p50_ms, p95_ms, p99_ms, samples }
    }

    /// Accepted events per provider for each of the 60 minutes up to `now_minute`.
    pub fn throughput(&self, now_minute: i64) -> Throughput {
        let (minutes, providers) = throughput(&self.values, now_minute);
        Throughput { minutes, providers }
    }

    /// Jobs in the delivery queue, all providers.
    pub fn queue_depth(&self) -> u64 {
        self.get(QUEUE_DEPTH)
    }

    /// A provider's dead letters: its stored events whose delivery failed for good (`failed`).
    pub fn dead_letters(&self, provider: &str) -> u64 {
        self.get(&events_counter(provider, Status::Failed.as_str()))
    }

    /// Stored `failed` events, all providers.
    pub fn dead_letters_total(&self) -> u64 {
        self.events().filter(|e| e.status == Status::Failed).map(|e| e.count).sum()
    }

    /// Jobs of a provider that ever became dead letters (cumulative; deleting the event does
    /// not lower it).
    pub fn dead_lettered_jobs(&self, provider: &str) -> u64 {
        self.get(&dead_letters_counter(provider))
    }

    /// Successful deliveries by the attempt (within its series) that succeeded, as text.
    pub fn delivered_after(&self) -> BTreeMap<&str, u64> {
        self.under("delivered_after/").collect()
    }

    /// Failed attempts by reason.
    pub fn failure_reasons(&self) -> BTreeMap<&str, u64> {
        self.under("failures/").collect()
    }

    /// Events retention deleted.
    pub fn retention_deleted(&self) -> u64 {
        self.get(RETENTION_DELETED)
    }
}

/// p50, p95 and p99 in milliseconds from the `hist/` counters, and the sample count.
fn percentiles(counters: &BTreeMap<String, u64>) -> ([f64; 3], u64) {
    let buckets = buckets(counters, PROCESSING_HIST);
    let total: u64 = buckets.iter().sum();
    let mut out = [0.0; 3];
    if total == 0 {
        return (out, 0);
    }
    for (slot, q) in out.iter_mut().zip([0.50, 0.95, 0.99]) {
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                *slot = (bucket_value_us(b) / 1000.0 * 1000.0).round() / 1000.0;
                break;
            }
        }
    }
    (out, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_land_in_the_right_bucket() {
        let mut c = BTreeMap::new();
        for (us, n) in [(100u64, 90u64), (10_000, 9), (1_000_000, 1)] {
            *c.entry(hist_bucket_counter(us)).or_default() += n;
        }
        let ([p50, p95, p99], n) = percentiles(&c);
        assert_eq!(n, 100);
        assert!((0.08..0.12).contains(&p50), "{p50}");
        assert!((8.0..12.0).contains(&p95), "{p95}");
        assert!((8.0..12.0).contains(&p99), "{p99}");
    }

    /// A commit's duration lands in the first bucket at or above it, and the sum keeps it whole.
    #[test]
    fn commit_durations_fill_the_histogram() {
        let s = Stats::default();
        s.commit_took(1500);
        s.commit_took(40_000);
        let h = s.commit_histogram();
        let below = |secs: f64| h.bounds.iter().find(|(le, _)| (*le - secs).abs() < 1e-9).map(|(_, n)| *n);
        assert_eq!(
            (below(0.001022), below(0.002046), below(0.032766), below(0.065534)),
            (Some(0), Some(1), Some(1), Some(2))
        );
        assert_eq!(h.count, 2);
        assert!((h.sum_s - 0.0415).abs() < 1e-9, "{}", h.sum_s);
    }

    /// Every boundary is exact: an event of `2^k - 2` µs is at or below the boundary
    /// `(2^k - 2)` µs, one of `2^k - 1` µs is not, at every doubling the histogram shows.
    #[test]
    fn the_processing_histogram_has_exact_boundaries() {
        for k in 10..=26u32 {
            let (on, past) = ((1u64 << k) - 2, (1u64 << k) - 1);
            let mut values = BTreeMap::new();
            for us in [on, past, 5] {
                *values.entry(hist_bucket_counter(us)).or_default() += 1;
            }
            values.insert(HIST_SUM_US.to_string(), on + past + 5);
            let h = Counters { values }.processing_histogram();
            assert_eq!(h.count, 3);
            assert!((h.sum_s - (on + past + 5) as f64 / 1e6).abs() < 1e-9);
            let (le, below) = h.bounds[(k - 10) as usize];
            assert_eq!(le, on as f64 / 1e6, "k {k}");
            assert_eq!(below, 2, "k {k}: 5 µs and {on} µs, not {past} µs");
            assert!(h.bounds.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "cumulative");
        }
    }

    #[test]
    fn last_minute_sums_the_last_sixty_seconds() {
        let values: BTreeMap<String, u64> =
            [(second_counter(999), 7), (second_counter(1000), 3), (second_counter(1059), 2), (second_counter(1060), 1)]
                .into_iter()
                .collect();
        let s = Stats::with_counters(values);
        assert_eq!(s.last_minute(1059), 5);
        assert_eq!(s.last_minute(1060), 3);
        assert_eq!(s.last_minute(2000), 0);
    }

    /// Each accessor reads its own kind of counter and no other, including those that sort next
    /// to it (`dead_letters/` beside `delivered_after/`, `events/` beside `items/`).
    #[test]
    fn accessors_read_their_own_counters() {
        let values: BTreeMap<String, u64> = [
            (events_counter("stripe", "processed"), 4),
            (events_counter("stripe", "failed"), 2),
            (events_counter("sms", "failed"), 1),
            (events_counter("sms", "received"), 0),
            (duplicates_counter("stripe"), 3),
            (items_counter("sms"), 9),
            (backfilled_counter("stripe"), 13),
            (backfilled_counter("sms"), 1),
            (chaos_counter("stripe", CHAOS_DUPLICATE), 4),
            (chaos_counter("stripe", CHAOS_REORDER), 2),
            (stored_only_counter("stripe"), 4),
            (rejected_counter("invalid_signature"), 5),
            (dead_letters_counter("stripe"), 7),
            (delivered_after_counter(2), 6),
            (failures_counter("timeout"), 8),
            (QUEUE_DEPTH.to_string(), 11),
            (RETENTION_DELETED.to_string(), 12),
        ]
        .into_iter()
        .collect();
        let c = Stats::with_counters(values).counters();
        let events: Vec<(&str, Status, u64)> = c.events().map(|e| (e.provider, e.status, e.count)).collect();
        assert_eq!(
            events,
            [
                ("sms", Status::Failed, 1),
                ("sms", Status::Received, 0),
                ("stripe", Status::Failed, 2),
                ("stripe", Status::Processed, 4)
            ]
        );
        assert_eq!(c.total_events(), 7);
        assert_eq!((c.dead_letters("stripe"), c.dead_letters("sms"), c.dead_letters("none")), (2, 1, 0));
        assert_eq!(c.dead_letters_total(), 3);
        assert_eq!(c.dead_lettered_jobs("stripe"), 7);
        assert_eq!(c.duplicates(), BTreeMap::from([("stripe", 3)]));
        assert_eq!(c.items(), BTreeMap::from([("sms", 9)]));
        assert_eq!(c.backfilled(), BTreeMap::from([("sms", 1), ("stripe", 13)]));
        assert_eq!(c.backfilled_total(), 14);
        assert_eq!(c.chaos(), BTreeMap::from([("stripe", BTreeMap::from([("duplicate", 4), ("reorder", 2)]))]));
        assert_eq!(c.stored_only(), BTreeMap::from([("stripe", 4)]));
        assert_eq!(c.rejected(), BTreeMap::from([("invalid_signature", 5)]));
        assert_eq!(c.delivered_after(), BTreeMap::from([("2", 6)]));
        assert_eq!(c.failure_reasons(), BTreeMap::from([("timeout", 8)]));
        assert_eq!((c.queue_depth(), c.retention_deleted()), (11, 12));
        assert_eq!(c.latency().samples, 0);
    }

    #[test]
    fn old_minute_and_second_counters_expire() {
        let now_ms = 10_000 * 60_000;
        assert!(expired_counter(&minute_counter("stripe", 10_000 - MINUTES_KEPT - 1), now_ms));
        assert!(!expired_counter(&minute_counter("stripe", 10_000 - MINUTES_KEPT), now_ms));
        assert!(expired_counter(&second_counter(600_000 - SECONDS_KEPT - 1), now_ms));
        assert!(!expired_counter(&second_counter(600_000 - SECONDS_KEPT), now_ms));
        assert!(!expired_counter("events/stripe/received", now_ms));
    }
}
