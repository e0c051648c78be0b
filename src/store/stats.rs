//! Counters that make `/stats` O(1): kept by the store writer, mirrored to disk in the same batch
//! as the change they count, and published here once that batch is in the tree.

use std::collections::BTreeMap;

use parking_lot::RwLock;

/// Counter names. Per-provider counters end in `/<provider>`.
pub fn events_counter(provider: &str, status: &str) -> String {
    format!("events/{provider}/{status}")
}
/// Provider events received, a batch counting each of its events (never decreases).
pub fn items_counter(provider: &str) -> String {
    format!("items/{provider}")
}

pub fn duplicates_counter(provider: &str) -> String {
    format!("duplicates/{provider}")
}
/// Accepted events of one provider in one minute (Unix minutes), for the throughput chart.
pub fn minute_counter(provider: &str, minute: i64) -> String {
    format!("minute/{provider}/{minute:010}")
}

/// How long per-minute counters are kept.
pub const MINUTES_KEPT: i64 = 120;

/// Accepted events, all providers, in one second (Unix seconds), for `events_last_minute`.
/// Persisted like every counter, so a restart knows the last minute without scanning events.
pub fn second_counter(second: i64) -> String {
    format!("second/{second:012}")
}

/// How long per-second counters are kept: past the minute they serve, until the next sweep.
pub const SECONDS_KEPT: i64 = 120;

/// Whether a counter is a per-minute or per-second one that is too old to keep.
pub fn expired_counter(name: &str, now_ms: i64) -> bool {
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
pub fn throughput(counters: &BTreeMap<String, u64>, now_minute: i64) -> (Vec<i64>, BTreeMap<String, Vec<u64>>) {
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
pub const QUEUE_DEPTH: &str = "queue/depth";

pub fn rejected_counter(code: &str) -> String {
    format!("rejected/{code}")
}
fn hist_counter(bucket: usize) -> String {
    format!("hist/{bucket:03}")
}

/// Log-scale histogram buckets: four per doubling, so any percentile is within about 19 %.
const BUCKETS: usize = 128;

pub fn hist_bucket_counter(us: u64) -> String {
    let b = (4.0 * ((us + 1) as f64).log2()).floor() as usize;
    hist_counter(b.min(BUCKETS - 1))
}

/// The microseconds a bucket stands for: its geometric middle.
fn bucket_value_us(b: usize) -> f64 {
    (2f64.powf((b as f64 + 0.5) / 4.0) - 1.0).max(0.0)
}

pub struct Stats {
    counters: RwLock<BTreeMap<String, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::with_counters(BTreeMap::new())
    }
}

impl Stats {
    pub fn with_counters(counters: BTreeMap<String, u64>) -> Stats {
        Stats { counters: RwLock::new(counters) }
    }

    /// Publishes the writer's values of the counters named in `changed`.
    pub fn set<'a>(&self, values: &BTreeMap<String, u64>, changed: impl Iterator<Item = &'a String>) {
        let mut c = self.counters.write();
        for k in changed {
            c.insert(k.clone(), values.get(k).copied().unwrap_or(0));
        }
    }

    pub fn remove(&self, names: &[String]) {
        let mut c = self.counters.write();
        for k in names {
            c.remove(k);
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counters.read().get(name).copied().unwrap_or(0)
    }

    /// Events accepted in the 60 seconds up to `now_s`.
    pub fn last_minute(&self, now_s: i64) -> u64 {
        let c = self.counters.read();
        c.range(second_counter(now_s - 59)..=second_counter(now_s)).map(|(_, n)| n).sum()
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counters.read().clone()
    }
}

/// p50, p95 and p99 in milliseconds from the `hist/` counters, and the sample count.
pub fn percentiles(counters: &BTreeMap<String, u64>) -> ([f64; 3], u64) {
    let mut buckets = [0u64; BUCKETS];
    for (k, v) in counters.range("hist/".to_string()..) {
        let Some(b) = k.strip_prefix("hist/") else {
            break;
        };
        if let Ok(i) = b.parse::<usize>() {
            buckets[i.min(BUCKETS - 1)] += v;
        }
    }
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
