//! The value checks of `[redis]`, `[dedup]` and `limits.backend`, whose types the Redis module
//! owns (`redis/settings.rs`).

use std::time::Duration;

use super::{err, Config, ConfigError};
use crate::redis::settings::{check_url, DedupBackend, DedupConfig, LimitsBackend, RedisConfig, RedisSettings};

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
    /// What the Redis module reads of the configuration ([`crate::redis::Redis::open`]).
    pub fn redis_settings(&self) -> RedisSettings {
        RedisSettings {
            redis: self.redis.clone(),
            limits: self.limits.backend,
            dedup: self.dedup.clone(),
            instance_id: self.server.instance_id().to_string(),
            host: super::host_name().to_string(),
            committed_for: self.retention.max_age.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::key_of;
    use crate::config::*;

    #[test]
    fn a_redis_backend_needs_a_redis_url_and_sound_settings() {
        let c = Config::default();
        assert_eq!((c.limits.backend, c.dedup.backend), (LimitsBackend::Memory, DedupBackend::Local));
        assert_eq!(c.redis.on_error, OnError::Open);
        c.check().unwrap();
        assert_eq!(key_of("[limits]\nbackend = \"redis\"\n"), "redis.url");
        assert_eq!(key_of("[dedup]\nbackend = \"redis\"\n"), "redis.url");
        assert_eq!(key_of("[limits]\nbackend = \"disk\"\n"), "limits.backend");
        let with =
            |extra: &str| format!("[dedup]\nbackend = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n{extra}");
        Config::from_toml(&with("")).unwrap().check().unwrap();
        for bad in ["http://127.0.0.1:6379", "redis://", "127.0.0.1:6379", "redis://127.0.0.1:port"] {
            let toml = format!("[limits]\nbackend = \"redis\"\n[redis]\nurl = \"{bad}\"\n");
            assert_eq!(key_of(&toml), "redis.url", "{bad}");
        }
        // A password in the URL is masked in the message.
        let e = Config::from_toml("[limits]\nbackend = \"redis\"\n[redis]\nurl = \"http://u:hunter2@h:1\"\n")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(!e.message.contains("hunter2"), "{e}");
        assert_eq!(key_of(&with("timeout = \"0s\"\n")), "redis.timeout");
        assert_eq!(key_of(&with("on_error = \"maybe\"\n")), "redis.on_error");
        let c = Config::from_toml("[dedup]\npending_expiry = \"500ms\"\n").unwrap();
        assert_eq!(c.check().unwrap_err().key, "dedup.pending_expiry");
        // rediss:// (TLS) and a URL from the environment.
        let env = BTreeMap::from([
            ("STAGEHOOK_REDIS_URL".to_string(), "rediss://cache.example:6380/1".to_string()),
            ("STAGEHOOK_LIMITS_BACKEND".to_string(), "redis".to_string()),
            ("STAGEHOOK_REDIS_ON_ERROR".to_string(), "closed".to_string()),
        ]);
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.redis.url.as_deref(), Some("rediss://cache.example:6380/1"));
        assert_eq!((c.limits.backend, c.redis.on_error), (LimitsBackend::Redis, OnError::Closed));
    }
}
