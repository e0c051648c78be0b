//! Settings of the delivery engine: where events go, how failed deliveries are retried, when a
//! provider's breaker opens, and how long events are kept.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// `base_delay` every time.
    Fixed,
    /// `base_delay × attempt`.
    Linear,
    /// `base_delay × 2^(attempt-1)`.
    Exponential,
}

/// `[retry]`: the global retry policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub strategy: Strategy,
    /// Attempts in one series, the first included; after the last the event is `failed`.
    pub max_attempts: u32,
    pub base_delay: HumanDuration,
    pub max_delay: HumanDuration,
    /// Each delay is moved by a random share of itself up to this fraction, either way, so that
    /// retries of many events do not arrive at the app in lockstep.
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            strategy: Strategy::Exponential,
            max_attempts: 5,
            base_delay: HumanDuration(Duration::from_secs(1)),
            max_delay: HumanDuration(Duration::from_secs(300)),
            jitter: 0.2,
        }
    }
}

/// `[providers.<name>.retry]`: any key set here replaces the global one for that provider.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOverride {
    pub strategy: Option<Strategy>,
    pub max_attempts: Option<u32>,
    pub base_delay: Option<HumanDuration>,
    pub max_delay: Option<HumanDuration>,
    pub jitter: Option<f64>,
}

impl RetryOverride {
    pub fn over(&self, global: &RetryConfig) -> RetryConfig {
        RetryConfig {
            strategy: self.strategy.unwrap_or(global.strategy),
            max_attempts: self.max_attempts.unwrap_or(global.max_attempts),
            base_delay: self.base_delay.unwrap_or(global.base_delay),
            max_delay: self.max_delay.unwrap_or(global.max_delay),
            jitter: self.jitter.unwrap_or(global.jitter),
        }
    }
}

/// `[circuit_breaker]`: per provider, shared by its targets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed deliveries that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through.
    pub recovery_timeout: HumanDuration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failure_threshold: 5, recovery_timeout: HumanDuration(Duration::from_secs(60)) }
    }
}

/// `[delivery]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Deliveries in flight at once, across providers.
    pub concurrency: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig { concurrency: 8 }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Events older than this are deleted (never while a delivery is pending).
    pub max_age: HumanDuration,
    /// Keep at most this many events, oldest deleted first; 0 means no limit.
    pub max_events: u64,
    /// How often the clean-up runs.
    pub interval: HumanDuration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age: HumanDuration(Duration::from_secs(30 * 86_400)),
            max_events: 0,
            interval: HumanDuration(Duration::from_secs(60)),
        }
    }
}

/// Where one provider's events go and how they are retried, resolved from the config.
#[derive(Debug, Clone)]
pub struct Targets {
    pub urls: Vec<String>,
    pub timeout: Duration,
    pub retry: RetryConfig,
    /// Headers kept that deliveries drop by default (`providers.<name>.forward_headers`,
    /// lowercase).
    pub forward_headers: Vec<String>,
}

/// Whether `url` is an absolute http(s) URL with a host.
pub fn is_http_url(url: &str) -> bool {
    match url.parse::<hyper::Uri>() {
        Ok(uri) => {
            matches!(uri.scheme_str(), Some("http") | Some("https")) && uri.host().is_some_and(|h| !h.is_empty())
        }
        Err(_) => false,
    }
}
