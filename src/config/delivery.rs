//! Settings of the delivery engine: where events go, how failed deliveries are retried, when a
//! provider's breaker opens, and how long events are kept. The retry policy and the resolved
//! targets, which the engine reads, are its own (`delivery/settings.rs`), re-exported here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::delivery::settings::{RetryConfig, RouteTargets, Strategy, Targets};
use crate::duration::HumanDuration;

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
    /// How much of the app's answer to each attempt is kept, from the start of its body, in
    /// bytes: 0 (headers only) to [`MAX_CAPTURE_BODY_BYTES`].
    pub capture_body_bytes: usize,
}

/// The most of an answer's body an attempt can keep: what the delivery client reads of it.
pub const MAX_CAPTURE_BODY_BYTES: usize = crate::delivery::client::MAX_RESPONSE_BODY;

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig { concurrency: 8, capture_body_bytes: 8 * 1024 }
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

/// Whether `url` is an absolute http(s) URL with a host.
pub fn is_http_url(url: &str) -> bool {
    match url.parse::<hyper::Uri>() {
        Ok(uri) => {
            matches!(uri.scheme_str(), Some("http") | Some("https")) && uri.host().is_some_and(|h| !h.is_empty())
        }
        Err(_) => false,
    }
}
