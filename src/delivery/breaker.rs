//! A circuit breaker per provider: closed → open after `failure_threshold` consecutive failures
//! → half-open after `recovery_timeout`, letting one probe through → closed on its success, open
//! again on its failure. While it is open, due jobs wait without spending attempts; a person's
//! replay does not wait: it goes out at once as the probe (`probe_now`).

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

/// What the breaker lets through right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: go ahead.
    Allowed,
    /// Half-open: this delivery is the one probe.
    Probe,
    /// Open, or half-open with its probe out: wait until `until_ms` (or the probe's outcome).
    Denied { until_ms: Option<i64> },
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub state: State,
    pub consecutive_failures: u32,
    pub opened_at_ms: Option<i64>,
    /// When an open breaker lets its probe through.
    pub next_probe_ms: Option<i64>,
}

pub struct Breaker {
    name: String,
    threshold: u32,
    recovery_ms: i64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
    opened_at_ms: Option<i64>,
    probe_out: bool,
}

impl Breaker {
    pub fn new(name: &str, threshold: u32, recovery_ms: i64) -> Breaker {
        Breaker {
            name: name.to_string(),
            threshold: threshold.max(1),
            recovery_ms,
            inner: Mutex::new(Inner { state: State::Closed, failures: 0, opened_at_ms: None, probe_out: false }),
        }
    }

    pub fn acquire(&self, now_ms: i64) -> Permit {
        let mut i = self.inner.lock();
        if i.state == State::Open {
            let reopen = i.opened_at_ms.unwrap_or(now_ms) + self.recovery_ms;
            if now_ms < reopen {
                return Permit::Denied { until_ms: Some(reopen) };
            }
            i.state = State::HalfOpen;
            i.probe_out = false;
            tracing::info!(provider = %self.name, "circuit breaker half-open: sending one probe");
        }
        match i.state {
            State::Closed => Permit::Allowed,
            State::HalfOpen if !i.probe_out => {
                i.probe_out = true;
                Permit::Probe
            }
            _ => Permit::Denied { until_ms: None },
        }
    }

    /// A person's replay while the breaker is open: half-open at once, with the replayed job as
    /// the one probe, rather than the replay waiting out `recovery_timeout`. `None` unless the
    /// breaker is open (closed or half-open, the replay takes its turn like any job).
    pub fn probe_now(&self) -> Option<Permit> {
        let mut i = self.inner.lock();
        if i.state != State::Open {
            return None;
        }
        i.state = State::HalfOpen;
        i.probe_out = true;
        tracing::info!(provider = %self.name, "circuit breaker half-open: a replay goes out as the probe");
        Some(Permit::Probe)
    }

    /// Records how a delivery that held a permit went.
    pub fn record(&self, permit: Permit, failed: bool, now_ms: i64) {
        let mut i = self.inner.lock();
        if permit == Permit::Probe {
            i.probe_out = false;
        }
        if !failed {
            if i.state != State::Closed && permit == Permit::Probe {
                tracing::info!(provider = %self.name, "circuit breaker closed: the probe succeeded");
                i.state = State::Closed;
                i.opened_at_ms = None;
            }
            if i.state == State::Closed {
                i.failures = 0;
            }
            return;
        }
        i.failures = i.failures.saturating_add(1);
        let trip = match i.state {
            State::Closed => i.failures >= self.threshold,
            State::HalfOpen => permit == Permit::Probe,
            State::Open => false,
        };
        if trip {
            i.state = State::Open;
            i.opened_at_ms = Some(now_ms);
            tracing::warn!(
                provider = %self.name,
                consecutive_failures = i.failures,
                recovery_ms = self.recovery_ms,
                "circuit breaker open: deliveries paused"
            );
        }
    }

    /// Gives back a permit that was not used for a delivery (nothing was sent), so a probe slot
    /// is not held forever.
    pub fn release(&self, permit: Permit) {
        if permit == Permit::Probe {
            self.inner.lock().probe_out = false;
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let i = self.inner.lock();
        Snapshot {
            state: i.state,
            consecutive_failures: i.failures,
            opened_at_ms: i.opened_at_ms,
            next_probe_ms: (i.state == State::Open).then(|| i.opened_at_ms.unwrap_or(0) + self.recovery_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_once_and_closes() {
        let b = Breaker::new("stripe", 3, 60_000);
        for _ in 0..2 {
            assert_eq!(b.acquire(0), Permit::Allowed);
            b.record(Permit::Allowed, true, 0);
        }
        assert_eq!(b.snapshot().state, State::Closed);
        b.record(Permit::Allowed, true, 1_000);
        let s = b.snapshot();
        assert_eq!((s.state, s.consecutive_failures, s.next_probe_ms), (State::Open, 3, Some(61_000)));
        assert_eq!(b.acquire(30_000), Permit::Denied { until_ms: Some(61_000) });
        // After the recovery timeout exactly one probe goes out.
        assert_eq!(b.acquire(61_000), Permit::Probe);
        assert_eq!(b.snapshot().state, State::HalfOpen);
        assert_eq!(b.acquire(61_001), Permit::Denied { until_ms: None });
        // The probe fails: open again, for a full recovery timeout.
        b.record(Permit::Probe, true, 62_000);
        assert_eq!(b.acquire(100_000), Permit::Denied { until_ms: Some(122_000) });
        assert_eq!(b.acquire(122_000), Permit::Probe);
        b.record(Permit::Probe, false, 122_500);
        let s = b.snapshot();
        assert_eq!((s.state, s.consecutive_failures, s.opened_at_ms), (State::Closed, 0, None));
        assert_eq!(b.acquire(122_600), Permit::Allowed);
    }

    #[test]
    fn an_unused_probe_is_given_back() {
        let b = Breaker::new("stripe", 1, 10);
        b.record(Permit::Allowed, true, 0);
        assert_eq!(b.acquire(10), Permit::Probe);
        b.release(Permit::Probe);
        assert_eq!(b.acquire(11), Permit::Probe, "the slot is free again");
        assert_eq!(b.snapshot().state, State::HalfOpen);
    }

    #[test]
    fn a_replay_probes_an_open_breaker_at_once() {
        let b = Breaker::new("stripe", 1, 60_000);
        assert_eq!(b.probe_now(), None, "closed: the replay takes its turn");
        b.record(Permit::Allowed, true, 0);
        assert_eq!(b.probe_now(), Some(Permit::Probe), "long before the recovery timeout");
        assert_eq!(b.snapshot().state, State::HalfOpen);
        assert_eq!(b.probe_now(), None, "one probe at a time");
        assert_eq!(b.acquire(1_000), Permit::Denied { until_ms: None }, "due retries still wait");
        // The app is still down: open again, for a full recovery timeout from now.
        b.record(Permit::Probe, true, 2_000);
        assert_eq!(b.acquire(3_000), Permit::Denied { until_ms: Some(62_000) });
        assert_eq!(b.probe_now(), Some(Permit::Probe));
        b.record(Permit::Probe, false, 4_000);
        assert_eq!(b.acquire(4_001), Permit::Allowed, "the app is back: closed");
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new("twilio", 2, 1000);
        b.record(Permit::Allowed, true, 0);
        b.record(Permit::Allowed, false, 0);
        b.record(Permit::Allowed, true, 0);
        assert_eq!(b.snapshot().state, State::Closed);
    }
}
