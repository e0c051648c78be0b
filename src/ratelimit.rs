//! Per-client-IP rate limiting: a sliding window over 60 s, kept in a `DashMap`.
//!
//! Each IP holds two fixed-window counters (this minute and the previous one); the sliding count
//! is `current + previous × (time left of the previous window in the slide)`. That is O(1) memory
//! per IP whatever the limit, which matters when load tests raise the limit to millions. Memory is
//! bounded: idle IPs are evicted by [`RateLimiter::sweep`], and when more than `max_ips` are
//! tracked (a spoofed-address flood), the limiter evicts before it admits new ones.

use std::net::IpAddr;

use dashmap::DashMap;

use crate::clock::Clock;

const WINDOW_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    /// Start of the current fixed window, ms since the epoch, a multiple of `WINDOW_MS`.
    start: i64,
    current: u32,
    previous: u32,
}

/// What the limiter decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until a request would be allowed again (0 when allowed).
    pub retry_after_s: u64,
}

pub struct RateLimiter {
    limit: u32,
    max_ips: usize,
    windows: DashMap<IpAddr, Window>,
    clock: Clock,
}

impl RateLimiter {
    /// `limit` requests per IP per minute; 0 turns the limiter off.
    pub fn new(limit: u32, max_ips: usize, clock: Clock) -> RateLimiter {
        RateLimiter { limit, max_ips: max_ips.max(1), windows: DashMap::new(), clock }
    }

    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Counts one request from `ip` and says whether it may pass. A refused request is not
    /// counted, so a client that backs off gets through as soon as the window slides.
    pub fn check(&self, ip: IpAddr) -> Decision {
        if self.limit == 0 {
            return Decision { allowed: true, limit: 0, remaining: u32::MAX, retry_after_s: 0 };
        }
        let now = self.clock.now_ms();
        if self.windows.len() >= self.max_ips && !self.windows.contains_key(&ip) {
            self.make_room(now);
        }
        let limit = self.limit;
        let mut entry = self.windows.entry(ip).or_insert(Window {
            start: now - now.rem_euclid(WINDOW_MS),
            current: 0,
            previous: 0,
        });
        let w = entry.value_mut();
        roll(w, now);
        let elapsed = now - w.start;
        let weight = (WINDOW_MS - elapsed) as f64 / WINDOW_MS as f64;
        let estimate = w.current as f64 + w.previous as f64 * weight;
        if estimate + 1.0 > limit as f64 {
            // Find when the estimate drops below the limit: the previous window's share shrinks
            // linearly over this window; past its end only `current` counts.
            let retry_ms = if w.previous > 0 && (w.current as f64) + 1.0 <= limit as f64 {
                let need = (estimate + 1.0 - limit as f64) / w.previous as f64;
                (need * WINDOW_MS as f64).ceil() as i64
            } else {
                WINDOW_MS - elapsed
            };
            return Decision {
                allowed: false,
                limit,
                remaining: 0,
                retry_after_s: ((retry_ms + 999) / 1000).max(1) as u64,
            };
        }
        w.current += 1;
        let remaining = (limit as f64 - estimate - 1.0).floor().max(0.0) as u32;
        Decision { allowed: true, limit, remaining, retry_after_s: 0 }
    }

    /// Drops IPs that sent nothing in the last two windows; they carry no state that matters.
    pub fn sweep(&self) {
        let now = self.clock.now_ms();
        self.windows.retain(|_, w| now - w.start < 2 * WINDOW_MS);
    }

    pub fn tracked_ips(&self) -> usize {
        self.windows.len()
    }

    fn make_room(&self, now: i64) {
        self.windows.retain(|_, w| now - w.start < 2 * WINDOW_MS);
        if self.windows.len() < self.max_ips {
            return;
        }
        // Still full of active IPs: forget an arbitrary tenth. Those clients start afresh, which
        // errs on the side of letting providers through; memory stays bounded either way.
        let drop: Vec<IpAddr> = self.windows.iter().take(self.max_ips / 10 + 1).map(|e| *e.key()).collect();
        for ip in drop {
            self.windows.remove(&ip);
        }
    }
}

fn roll(w: &mut Window, now: i64) {
    let start = now - now.rem_euclid(WINDOW_MS);
    if start == w.start {
        return;
    }
    w.previous = if start - w.start == WINDOW_MS { w.current } else { 0 };
    w.current = 0;
    w.start = start;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_101st_request_in_a_minute_is_refused_and_others_pass() {
        let clock = Clock::system();
        let rl = RateLimiter::new(100, 1000, clock.clone());
        for i in 0..100 {
            let d = rl.check(ip("10.0.0.1"));
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 99 - i);
        }
        let d = rl.check(ip("10.0.0.1"));
        assert!(!d.allowed);
        assert!(d.retry_after_s >= 1 && d.retry_after_s <= 60, "{d:?}");
        assert!(rl.check(ip("10.0.0.2")).allowed);
        // Two minutes later the window has slid past everything.
        clock.advance(120_000);
        assert!(rl.check(ip("10.0.0.1")).allowed);
    }

    #[test]
    fn the_window_slides_rather_than_resets() {
        let clock = Clock::system();
        // Align to just after a window boundary so the arithmetic is predictable.
        let now = clock.now_ms();
        clock.advance(WINDOW_MS - now.rem_euclid(WINDOW_MS) + 1);
        let rl = RateLimiter::new(10, 1000, clock.clone());
        for _ in 0..10 {
            assert!(rl.check(ip("10.0.0.1")).allowed);
        }
        // Just into the next window nearly all of the previous one still counts.
        clock.advance(WINDOW_MS);
        assert!(!rl.check(ip("10.0.0.1")).allowed);
        // Halfway through, half of it has slid out.
        clock.advance(WINDOW_MS / 2 + 1000);
        let mut passed = 0;
        while rl.check(ip("10.0.0.1")).allowed {
            passed += 1;
        }
        assert!((4..=6).contains(&passed), "{passed}");
    }

    #[test]
    fn memory_stays_bounded_under_many_ips() {
        let rl = RateLimiter::new(5, 100, Clock::system());
        for i in 0..10_000u32 {
            rl.check(IpAddr::from(i.to_be_bytes()));
        }
        assert!(rl.tracked_ips() <= 100, "{}", rl.tracked_ips());
    }

    #[test]
    fn sweep_evicts_idle_ips() {
        let clock = Clock::system();
        let rl = RateLimiter::new(5, 100, clock.clone());
        rl.check(ip("10.0.0.1"));
        clock.advance(3 * WINDOW_MS);
        rl.check(ip("10.0.0.2"));
        rl.sweep();
        assert_eq!(rl.tracked_ips(), 1);
    }

    #[test]
    fn zero_turns_it_off() {
        let rl = RateLimiter::new(0, 10, Clock::system());
        for _ in 0..1000 {
            assert!(rl.check(ip("10.0.0.1")).allowed);
        }
        assert_eq!(rl.tracked_ips(), 0);
    }
}
