//! The background clean-up: deletes events older than `retention.max_age` and, when
//! `retention.max_events` is set, the oldest beyond it. It works in small batches through the
//! store writer, so requests never wait long behind it, and it never deletes an event whose
//! delivery is still queued.

use std::time::Duration;

use crate::clock::Clock;
use crate::config::RetentionConfig;
use crate::store::Store;

/// Events deleted per store batch.
const BATCH: usize = 256;
/// A pause between batches, so ingest keeps the writer most of the time.
const PAUSE: Duration = Duration::from_millis(10);

/// Runs one clean-up pass; returns how many events it deleted.
pub async fn sweep(store: &Store, config: &RetentionConfig, clock: &Clock) -> usize {
    let mut deleted = 0;
    loop {
        let before_ms = clock.now_ms() - config.max_age.0.as_millis() as i64;
        let total = store.stats().counters().total_events();
        let ids = match store.expired(before_ms, config.max_events, total, BATCH) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "retention could not read events");
                return deleted;
            }
        };
        if ids.is_empty() {
            return deleted;
        }
        match store.delete(ids).await {
            Ok(0) => return deleted,
            Ok(n) => deleted += n,
            Err(e) => {
                tracing::error!(error = %e, "retention could not delete events");
                return deleted;
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Runs [`sweep`] every `interval`, forever.
pub async fn run(store: Store, config: RetentionConfig, clock: Clock) {
    let mut tick = tokio::time::interval(config.interval.0);
    loop {
        tick.tick().await;
        let n = sweep(&store, &config, &clock).await;
        if n > 0 {
            tracing::info!(deleted = n, "retention removed old events");
        }
    }
}
