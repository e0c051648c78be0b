//! What the delivery engine reads of the configuration: the retry policy (`[retry]`, with a
//! provider's overrides applied) and where a provider's events go. Read and checked by `config`,
//! which re-exports them; a leaf below it, naming nothing of the crate but [`crate::duration`].

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

/// Where one provider's events go and how they are retried, resolved from the config.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The default targets (`forward_to`): every event no route takes.
    pub urls: Vec<String>,
    /// The provider's routes, for whoever shows where events go; which targets an event takes is
    /// picked when it is queued, so the engine itself never reads them.
    pub routes: Vec<RouteTargets>,
    pub timeout: Duration,
    pub retry: RetryConfig,
    /// Headers kept that deliveries drop by default (`providers.<name>.forward_headers`,
    /// lowercase).
    pub forward_headers: Vec<String>,
}

/// One route of a provider as its lane shows it: the event types it takes, where they go, and
/// whether they go to the default targets too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTargets {
    pub types: Vec<String>,
    pub urls: Vec<String>,
    pub also_default: bool,
}
