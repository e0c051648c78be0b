//! The value checks of `[redis]`, `[dedup]` and `limits.backend`, whose types the Redis module
//! owns (`shared/settings.rs`).

use std::time::Duration;

use super::{err, Config, ConfigError};
use crate::shared::settings::{check_url, DedupBackend, DedupConfig, LimitsBackend, RedisConfig, Sharing};

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
            if let Err(e) = check_url(url) {
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

impl Config {
    /// What the Redis module reads of the configuration ([`crate::shared::Shared::open`]).
    pub fn sharing(&self) -> Sharing {
        Sharing {
            redis: self.redis.clone(),
            limits: self.limits.backend,
            dedup: self.dedup.clone(),
            instance_id: self.server.instance_id().to_string(),
            host: super::host_name().to_string(),
            committed_for: self.retention.max_age.0,
        }
    }
}
