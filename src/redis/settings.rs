//! The settings of what several stagehooks share, and where: `[redis]`, `[dedup]` and
//! `limits.backend`, read and checked by `config` (which re-exports them), and [`RedisSettings`], all
//! that [`super::Redis`] reads of the configuration. A leaf below `config`: it names nothing of
//! the crate but [`crate::duration`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// What [`super::Redis::open`] and [`super::probe`] read, gathered from the whole configuration
/// by `Config::sharing`.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub redis: RedisConfig,
    /// `limits.backend`.
    pub limits: LimitsBackend,
    pub dedup: DedupConfig,
    /// `server.instance_id`.
    pub instance_id: String,
    /// This machine's name, which the presence shows to another process; `instance_id` is it
    /// when `server.instance_id` is not set.
    pub host: String,
    /// How long a committed claim lasts: as long as an event is kept (`retention.max_age`).
    pub committed_for: Duration,
}

impl RedisSettings {
    /// Whether a backend uses Redis.
    pub fn used(&self) -> bool {
        self.limits == LimitsBackend::Redis || self.dedup.backend == DedupBackend::Redis
    }
}

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

/// Checks that `url` is one the client can connect to, without connecting; the error says why
/// not.
pub fn check_url(url: &str) -> Result<(), impl std::fmt::Display> {
    redis::Client::open(url).map(|_| ())
}
