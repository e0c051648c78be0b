//! The one source of wall-clock time. Tests hold a handle and move it forward instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Milliseconds added to the system time; only tests change it.
    offset_ms: Arc<AtomicI64>,
    /// Reads no system time: `offset_ms` is the time itself (see [`Clock::frozen`]).
    frozen: bool,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that stands at `at_ms` and moves only when advanced: for tests that need a
    /// decision at an exact millisecond, which a running clock would drift past.
    pub fn frozen(at_ms: i64) -> Clock {
        Clock { offset_ms: Arc::new(AtomicI64::new(at_ms)), frozen: true }
    }

    /// Unix time in milliseconds.
    pub fn now_ms(&self) -> i64 {
        if self.frozen {
            return self.offset_ms.load(Ordering::Relaxed);
        }
        let sys = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        sys + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Unix time in seconds.
    pub fn now_s(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// Unix milliseconds as an RFC 3339 UTC time to the second, for a person to read in a log line.
pub fn rfc3339(unix_ms: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}
