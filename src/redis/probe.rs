//! `redis.reachable`: whether the configured Redis answers, for `check-config` and
//! `/config/validate`; a connection of its own, apart from the serving client's.

use std::time::Duration;

use super::settings::{OnError, RedisSettings};
use crate::finding::{Finding, Severity};

/// `redis.reachable`, for `check-config` and `/config/validate`: whether the configured Redis
/// answers a PING within `redis.timeout` (and, for `rediss://`, completes the TLS handshake).
/// `None` when no backend uses Redis. Unreachable is an error under `on_error = "closed"`
/// (ingest would refuse everything) and a warning under `"open"`.
pub async fn probe(config: &RedisSettings) -> Option<Finding> {
    let url = config.redis.url.as_deref().filter(|_| config.used())?;
    let shown = crate::redact::url(url);
    let timeout = config.redis.timeout.0.max(Duration::from_secs(1));
    let answer = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| e.to_string())
    };
    let (severity, message) = match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(_)) => (Severity::Ok, format!("{shown} answers")),
        Ok(Err(e)) => (unreachable(config.redis.on_error), format!("{shown}: unreachable: {e}")),
        Err(_) => (unreachable(config.redis.on_error), format!("{shown}: no answer within {} ms", timeout.as_millis())),
    };
    Some(Finding::new("redis.reachable", severity, "redis.url", message))
}

fn unreachable(on_error: OnError) -> Severity {
    match on_error {
        OnError::Open => Severity::Warning,
        OnError::Closed => Severity::Error,
    }
}
