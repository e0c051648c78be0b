//! `[redis]` and `[dedup]`, and `limits.backend`: what several stagehooks share, and where.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{err, ConfigError, HumanDuration};

/// `[redis]`: the Redis server that instances share their rate limit and duplicates through.
/// Read only when `limits.backend` or `dedup.backend` is `redis`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS.
    pub url: Option<String>,
    /// What ingest does while Redis is unreachable: act alone (`open`) or refuse (`closed`).
    pub on_error: OnError,
    /// Put before every key stagehook writes, so that several groups can share one Redis.
    pub key_prefix: String,
    /// How long one Redis call may take before it counts as a failure (and Redis as down). Only
    /// the calls in flight when Redis stops answering wait this long; later ones do not wait.
    /// Under overload a call also waits for a turn on a busy core: too short a timeout takes
    /// that for an outage.
    pub timeout: HumanDuration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            on_error: OnError::Open,
            key_prefix: "stagehook:".to_string(),
            timeout: HumanDuration(Duration::from_secs(1)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fall back to the instance's own limiter and duplicate detection, with a warning.
    Open,
    /// Answer ingest with `503 redis_unavailable`, so the provider retries later.
    Closed,
}

impl OnError {
    /// What ingest does while Redis is down, for the health check and the log.
    pub fn meanwhile(self) -> &'static str {
        match self {
            OnError::Open => "this instance limits and detects duplicates alone",
            OnError::Closed => "ingest answers 503 redis_unavailable",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Open => "open",
            OnError::Closed => "closed",
        }
    }
}

/// `limits.backend`: where the rate limit's counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitsBackend {
    /// In this process: each instance limits alone.
    #[default]
    Memory,
    /// In Redis: every instance sharing it sees one count per client.
    Redis,
}

/// `dedup.backend`: who decides that an event was received before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupBackend {
    /// This instance's store alone.
    #[default]
    Local,
    /// A claim in Redis first, so that an event retried onto another instance is recorded once.
    Redis,
}

/// `[dedup]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    pub backend: DedupBackend,
    /// How long a claim lasts before its instance commits the event. A claim that outlives it
    /// (its instance died between claim and commit) expires, and the provider's next retry is
    /// recorded; until then another instance answers `409 in_progress`.
    pub pending_expiry: HumanDuration,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig { backend: DedupBackend::Local, pending_expiry: HumanDuration(Duration::from_secs(30)) }
    }
}

/// The URL schemes the client speaks.
const SCHEMES: [&str; 2] = ["redis://", "rediss://"];

pub(super) fn check(redis: &RedisConfig, dedup: &DedupConfig, limits: LimitsBackend) -> Result<(), ConfigError> {
    let used = limits == LimitsBackend::Redis || dedup.backend == DedupBackend::Redis;
    match &redis.url {
        None if used => {
            let backend = if limits == LimitsBackend::Redis { "limits.backend" } else { "dedup.backend" };
            return Err(err(
                "redis.url",
                format!("{backend} is `redis`: set redis.url (or STAGEHOOK_REDIS_URL), e.g. redis://127.0.0.1:6379/0"),
            ));
        }
        Some(url) if !SCHEMES.iter().any(|s| url.starts_with(s) && url.len() > s.len()) => {
            return Err(err("redis.url", format!("`{}` is not a redis:// or rediss:// URL", crate::redact::url(url))));
        }
        Some(url) => {
            if let Err(e) = crate::shared::check_url(url) {
                return Err(err("redis.url", format!("`{}`: {e}", crate::redact::url(url))));
            }
        }
        None => {}
    }
    if redis.timeout.0.is_zero() {
        return Err(err("redis.timeout", "must be longer than 0s"));
    }
    if dedup.pending_expiry.0 < Duration::from_secs(1) {
        return Err(err("dedup.pending_expiry", "must be at least 1s"));
    }
    Ok(())
}
