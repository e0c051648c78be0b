//! Chaos delivery (`[providers.<name>.chaos]`): an endpoint's events reach the app the way a
//! provider may deliver them in production: some twice, some late, some out of order.
//!
//! This module is a leaf, like `duration.rs`: the settings (checked as they are read, so an error
//! names its key, `providers.stripe.chaos.duplicate`), whether a target is on this machine, and
//! the draw of one event's chaos from a seeded generator. The store's writer draws when it queues
//! an event's jobs (`store/ops.rs`), so what was done is durable with the jobs and follows commit
//! order, which is what makes a seed reproduce a run.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest `delay` and `reorder_window` take. Chaos imitates a provider's habits, which are
/// seconds to minutes late; an hour is already past what any staging run waits for.
pub const MAX_CHAOS_DURATION: Duration = Duration::from_secs(3600);

/// A duplicate goes out this long after its first delivery is due, at least and at most (ms):
/// "a little later", as a provider's retry of a delivery it thinks was lost.
pub const DUPLICATE_AFTER_MS: (u64, u64) = (1000, 5000);

/// `[providers.<name>.chaos]`. Present means on, but each action is off at its default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChaosConfig {
    /// The share of events delivered a second time, a little later, from 0.0 to 1.0.
    #[serde(deserialize_with = "share")]
    pub duplicate: f64,
    /// Each job is due up to this much later, at random, so events due within it are shuffled.
    #[serde(deserialize_with = "window", serialize_with = "show_duration")]
    pub reorder_window: Duration,
    /// The extra delay before an event's first attempt, drawn from this range.
    pub delay: DelayRange,
    /// Seeds the endpoint's generator, so a run can be reproduced; random when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Chaos on a target that is not this machine: refused unless set.
    pub allow_remote: bool,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            duplicate: 0.0,
            reorder_window: Duration::ZERO,
            delay: DelayRange(Duration::ZERO, Duration::ZERO),
            seed: None,
            allow_remote: false,
        }
    }
}

fn share<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(serde::de::Error::custom(format!("{v} is not a share between 0.0 and 1.0")));
    }
    Ok(v)
}

fn window<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded(&String::deserialize(d)?)
}

fn show_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// A duration as settings write them (`"300ms"`, `"20s"`), at most [`MAX_CHAOS_DURATION`].
fn bounded<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| E::custom(format!("`{text}` is not a duration like \"300ms\" or \"20s\": {e}")))?;
    if d > MAX_CHAOS_DURATION {
        return Err(E::custom(format!("`{text}` is longer than 1h, the most chaos waits")));
    }
    Ok(d)
}

/// `"a..b"`: a delay drawn between `a` and `b`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayRange(pub Duration, pub Duration);

impl<'de> Deserialize<'de> for DelayRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let Some((a, b)) = text.split_once("..") else {
            return Err(serde::de::Error::custom(format!("`{text}` is not a range like \"0s..20s\"")));
        };
        let (a, b) = (bounded::<D::Error>(a)?, bounded::<D::Error>(b)?);
        if a > b {
            return Err(serde::de::Error::custom(format!("`{text}` starts after it ends")));
        }
        Ok(DelayRange(a, b))
    }
}

impl Serialize for DelayRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = |d: Duration| humantime::format_duration(d).to_string();
        s.serialize_str(&format!("{}..{}", f(self.0), f(self.1)))
    }
}

/// Whether a target URL's host is this machine (`localhost`, `*.localhost`, a loopback
/// address), the only place chaos goes without `allow_remote`. Not a URL: not this machine.
pub fn is_loopback_target(url: &str) -> bool {
    let Some(host) = url.parse::<hyper::Uri>().ok().and_then(|u| u.host().map(|h| h.to_ascii_lowercase())) else {
        return false;
    };
    let host = host.trim_matches(['[', ']']);
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What chaos does to one event: drawn once, applied to each of its targets' jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Draw {
    /// Added to the first attempt's due time (`delay`).
    pub delay_ms: u64,
    /// Added too, within `reorder_window`: the shuffle.
    pub reorder_ms: u64,
    /// When the event is delivered twice: how long after the first delivery is due.
    pub duplicate_after_ms: Option<u64>,
}

/// One endpoint's chaos: its settings and its generator, advanced once per event in the order
/// the writer commits them.
#[derive(Debug)]
pub struct Chaos {
    config: ChaosConfig,
    rng: fastrand::Rng,
}

impl Chaos {
    pub fn new(config: ChaosConfig) -> Chaos {
        let rng = config.seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Chaos { config, rng }
    }

    /// The next event's chaos. Always four numbers are drawn, whatever is switched on, so a
    /// seed gives each event the same draw whichever actions a run enables.
    pub fn draw(&mut self) -> Draw {
        let ms = |d: Duration| d.as_millis() as u64;
        let c = &self.config;
        let delay_ms = self.rng.u64(ms(c.delay.0)..=ms(c.delay.1));
        let reorder_ms = self.rng.u64(0..=ms(c.reorder_window));
        let roll = self.rng.f64();
        let after = self.rng.u64(DUPLICATE_AFTER_MS.0..=DUPLICATE_AFTER_MS.1);
        Draw { delay_ms, reorder_ms, duplicate_after_ms: (roll < c.duplicate).then_some(after) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<ChaosConfig, toml::de::Error> {
        toml::from_str(toml)
    }

    #[test]
    fn settings_read_and_refuse_out_of_range_values() {
        let c = parse("duplicate = 0.5\nreorder_window = \"10s\"\ndelay = \"0s..300ms\"\nseed = 7\n").unwrap();
        assert_eq!(c.delay, DelayRange(Duration::ZERO, Duration::from_millis(300)));
        assert_eq!((c.reorder_window, c.seed, c.allow_remote), (Duration::from_secs(10), Some(7), false));
        for (toml, words) in [
            ("duplicate = 1.5", "between 0.0 and 1.0"),
            ("duplicate = -0.1", "between 0.0 and 1.0"),
            ("delay = \"5s..1s\"", "starts after it ends"),
            ("delay = \"5s\"", "range like"),
            ("delay = \"0s..2h\"", "longer than 1h"),
            ("reorder_window = \"61m\"", "longer than 1h"),
            ("reorder_window = \"soon\"", "not a duration"),
            ("duplicates = 0.5", "unknown field"),
        ] {
            let e = parse(toml).expect_err(toml);
            assert!(e.message().contains(words), "{toml}: {e}");
        }
    }

    #[test]
    fn loopback_targets_are_this_machine() {
        for url in ["http://localhost:3000/h", "http://127.0.0.1/h", "http://127.8.0.1/h", "http://[::1]:80/h"] {
            assert!(is_loopback_target(url), "{url}");
        }
        for url in ["https://app.example/h", "http://10.0.0.2/h", "http://localhost.example/h", "nonsense"] {
            assert!(!is_loopback_target(url), "{url}");
        }
    }

    /// A seed gives the same draws; each stays within its setting.
    #[test]
    fn a_seed_reproduces_the_draws_within_their_ranges() {
        let config = parse("duplicate = 0.5\nreorder_window = \"2s\"\ndelay = \"100ms..300ms\"\nseed = 42\n").unwrap();
        let (mut a, mut b) = (Chaos::new(config.clone()), Chaos::new(config));
        let draws: Vec<Draw> = (0..200).map(|_| a.draw()).collect();
        assert_eq!(draws, (0..200).map(|_| b.draw()).collect::<Vec<_>>());
        assert!(draws.iter().all(|d| (100..=300).contains(&d.delay_ms) && d.reorder_ms <= 2000));
        let twice = draws.iter().filter(|d| d.duplicate_after_ms.is_some()).count();
        assert!((50..150).contains(&twice), "{twice}");
        assert!(draws.iter().filter_map(|d| d.duplicate_after_ms).all(|ms| (1000..=5000).contains(&ms)));
        let off = Chaos::new(ChaosConfig::default()).draw();
        assert_eq!((off.delay_ms, off.reorder_ms, off.duplicate_after_ms), (0, 0, None));
    }
}
