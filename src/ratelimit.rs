//! Per-client rate limiting: a sliding window over 60 s, kept in a `DashMap`.
//!
//! Each client holds two fixed-window counters (this minute and the previous one); the sliding
//! count is `current + previous × (time left of the previous window in the slide)`. That is O(1)
//! memory per client whatever the limit, which matters when load tests raise the limit to
//! millions.
//!
//! A client is an IPv4 address, or an IPv6 address cut to its first `ipv6_prefix` bits: one
//! host commonly holds a whole /64, so keying by the full address would let it rotate through
//! 2^64 addresses and never meet the limit. An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is its
//! IPv4 address. A client a trusted proxy names without an address (`unknown`, an obfuscated
//! `_id`) is keyed by that name.
//!
//! Memory is bounded: idle clients are evicted by [`RateLimiter::sweep`], and when `max_ips` are
//! tracked (a spoofed-address flood), the least recently seen tenth is evicted before a new
//! client is admitted. Active clients are the most recently seen, so a flood of new addresses
//! never resets the window of a client that is still sending (nor of one that is being refused).

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::clock::Clock;

const WINDOW_MS: i64 = 60_000;

/// The default of `limits.ipv6_prefix`: a /64 is what one subscriber or one server gets.
pub const DEFAULT_IPV6_PREFIX: u32 = 64;

/// What the limiter counts under. 24 bytes: an IPv6 address is two `u64`s rather than a
/// `u128`, whose 16-byte alignment would make every key 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    /// The address with every bit past the prefix cleared, high half first.
    V6(u64, u64),
    /// A hash of a name a trusted proxy gave instead of an address.
    Named(u64),
}

/// 16 bytes: with its key, a tracked client takes 40 bytes of the map, as an `IpAddr` key did.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The current fixed window: minutes since the epoch.
    minute: u32,
    current: u32,
    previous: u32,
    /// The last request, allowed or not, in ms into the current window: every request rolls
    /// the window to its own minute first, so the last one is always inside it.
    seen_ms: u16,
}

impl Window {
    /// When the client was last seen, ms since the epoch: what eviction orders by.
    fn last_seen(&self) -> i64 {
        i64::from(self.minute) * WINDOW_MS + i64::from(self.seen_ms)
    }
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
    ipv6_prefix: u32,
    /// The mask that keeps the first `ipv6_prefix` bits of an IPv6 address.
    ipv6_mask: u128,
    windows: DashMap<Key, Window>,
    /// Held while evicting, so that concurrent new clients of a full table evict once, not once
    /// each. Never taken on the path of a known client.
    evicting: Mutex<()>,
    clock: Clock,
}

impl RateLimiter {
    /// `limit` requests per client per minute; 0 turns the limiter off. IPv6 clients are keyed
    /// by their first `ipv6_prefix` bits (clamped to 1..=128; the config checks the range).
    pub fn new(limit: u32, max_ips: usize, ipv6_prefix: u32, clock: Clock) -> RateLimiter {
        let prefix = ipv6_prefix.clamp(1, 128);
        RateLimiter {
            limit,
            max_ips: max_ips.max(1),
            ipv6_prefix: prefix,
            ipv6_mask: u128::MAX << (128 - prefix),
            windows: DashMap::new(),
            evicting: Mutex::new(()),
            clock,
        }
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
        self.check_key(self.key(ip))
    }

    /// [`RateLimiter::check`] for a client known only by a name (`unknown`, `_hidden`).
    pub fn check_named(&self, name: &str) -> Decision {
        self.check_key(named_key(name))
    }

    /// What [`RateLimiter::check`] would decide now, without counting anything or starting to
    /// track the client: for a limiter that counts failures, asked before each attempt.
    pub fn peek(&self, ip: IpAddr) -> Decision {
        self.peek_key(self.key(ip))
    }

    /// [`RateLimiter::peek`] for a client known only by a name.
    pub fn peek_named(&self, name: &str) -> Decision {
        self.peek_key(named_key(name))
    }

    /// The client `ip` is counted as, for messages: the address, or an IPv6 prefix such as
    /// `2001:db8:1:2::/64`.
    pub fn bucket_of(&self, ip: IpAddr) -> String {
        match self.key(ip) {
            Key::V4(v4) => std::net::Ipv4Addr::from(v4).to_string(),
            Key::V6(hi, lo) => {
                let net = std::net::Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo));
                match self.ipv6_prefix {
                    128 => net.to_string(),
                    prefix => format!("{net}/{prefix}"),
                }
            }
            Key::Named(_) => ip.to_string(),
        }
    }

    fn key(&self, ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(v4) => Key::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::V4(v4.into()),
                None => {
                    let net = u128::from(v6) & self.ipv6_mask;
                    Key::V6((net >> 64) as u64, net as u64)
                }
            },
        }
    }

    fn check_key(&self, key: Key) -> Decision {
        if self.limit == 0 {
            return Decision { allowed: true, limit: 0, remaining: u32::MAX, retry_after_s: 0 };
        }
        let now = self.clock.now_ms();
        // A known client costs one lookup under one shard's lock; only a new one looks at the
        // table's size (a read of every shard) and may have to make room.
        if let Some(mut w) = self.windows.get_mut(&key) {
            return self.decide(&mut w, now, true);
        }
        if self.windows.len() >= self.max_ips {
            self.make_room();
        }
        let fresh = Window { minute: minute_of(now), current: 0, previous: 0, seen_ms: 0 };
        let mut w = self.windows.entry(key).or_insert(fresh);
        self.decide(&mut w, now, true)
    }

    fn peek_key(&self, key: Key) -> Decision {
        if self.limit == 0 {
            return Decision { allowed: true, limit: 0, remaining: u32::MAX, retry_after_s: 0 };
        }
        let now = self.clock.now_ms();
        let fresh = Window { minute: minute_of(now), current: 0, previous: 0, seen_ms: 0 };
        // A copy: peeking neither counts nor moves when the client was last seen.
        let mut w = self.windows.get(&key).map(|w| *w).unwrap_or(fresh);
        self.decide(&mut w, now, false)
    }

    /// Decides about one request; `count` says whether an allowed one uses up the window.
    fn decide(&self, w: &mut Window, now: i64, count: bool) -> Decision {
        let limit = self.limit;
        roll(w, now);
        let elapsed = now.rem_euclid(WINDOW_MS);
        w.seen_ms = elapsed as u16;
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
        if count {
            w.current += 1;
        }
        let remaining = (limit as f64 - estimate - 1.0).floor().max(0.0) as u32;
        Decision { allowed: true, limit, remaining, retry_after_s: 0 }
    }

    /// Drops clients that sent nothing in the last two windows; they carry no state that matters.
    pub fn sweep(&self) {
        let minute = i64::from(minute_of(self.clock.now_ms()));
        self.windows.retain(|_, w| minute - i64::from(w.minute) < 2);
    }

    /// Clients tracked now: IPv4 addresses, IPv6 prefixes and names.
    pub fn tracked_ips(&self) -> usize {
        self.windows.len()
    }

    /// Evicts the least recently seen tenth of a full table (at least one client). Finding them
    /// is O(n) with `select_nth_unstable`, once per n/10 new clients: O(1) per new client,
    /// amortised. Idle clients are the least recently seen, so they go first.
    fn make_room(&self) {
        let _one_at_a_time = self.evicting.lock();
        if self.windows.len() < self.max_ips {
            return; // Another thread made room while this one waited.
        }
        let mut seen: Vec<(i64, Key)> = self.windows.iter().map(|e| (e.value().last_seen(), *e.key())).collect();
        let evict = (seen.len() / 10).max(1).min(seen.len());
        if evict < seen.len() {
            seen.select_nth_unstable_by_key(evict, |(last_seen, _)| *last_seen);
        }
        for (_, key) in &seen[..evict] {
            self.windows.remove(key);
        }
    }
}

/// The key of a client a trusted proxy names without an address.
fn named_key(name: &str) -> Key {
    // SipHash with fixed keys: the name comes from a trusted proxy, not from the client, so
    // nobody picks names to collide; a collision would only share a bucket.
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    Key::Named(h.finish())
}

fn roll(w: &mut Window, now: i64) {
    let minute = minute_of(now);
    if minute == w.minute {
        return;
    }
    w.previous = if i64::from(minute) - i64::from(w.minute) == 1 { w.current } else { 0 };
    w.current = 0;
    w.minute = minute;
}

/// Minutes since the epoch: a `u32` lasts until the year 10 000.
fn minute_of(now_ms: i64) -> u32 {
    now_ms.div_euclid(WINDOW_MS).clamp(0, i64::from(u32::MAX)) as u32
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
        let rl = RateLimiter::new(100, 1000, 64, clock.clone());
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
        let rl = RateLimiter::new(10, 1000, 64, clock.clone());
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
        let rl = RateLimiter::new(5, 100, 64, Clock::system());
        for i in 0..10_000u32 {
            rl.check(IpAddr::from(i.to_be_bytes()));
        }
        assert!(rl.tracked_ips() <= 100, "{}", rl.tracked_ips());
    }

    #[test]
    fn peeking_counts_nothing_and_tracks_no_one() {
        let rl = RateLimiter::new(3, 100, 64, Clock::system());
        for _ in 0..10 {
            assert!(rl.peek(ip("10.0.0.1")).allowed);
        }
        assert_eq!(rl.tracked_ips(), 0);
        for _ in 0..3 {
            assert!(rl.check(ip("10.0.0.1")).allowed);
        }
        let d = rl.peek(ip("10.0.0.1"));
        assert!(!d.allowed && d.retry_after_s >= 1, "{d:?}");
        assert!(rl.peek(ip("10.0.0.2")).allowed);
        assert!(rl.peek_named("unknown").allowed);
    }

    #[test]
    fn sweep_evicts_idle_ips() {
        let clock = Clock::system();
        let rl = RateLimiter::new(5, 100, 64, clock.clone());
        rl.check(ip("10.0.0.1"));
        clock.advance(3 * WINDOW_MS);
        rl.check(ip("10.0.0.2"));
        rl.sweep();
        assert_eq!(rl.tracked_ips(), 1);
    }

    /// Uses up `rl`'s limit for `who`, then says whether `other` shares its bucket.
    fn shares_bucket(rl: &RateLimiter, who: &str, other: &str) -> bool {
        while rl.check(ip(who)).allowed {}
        !rl.check(ip(other)).allowed
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_prefix() {
        // (prefix, address that uses up the limit, another address, same bucket?)
        let cases = [
            (64, "2001:db8:1:2::1", "2001:db8:1:2::2", true),
            (64, "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true),
            (64, "2001:db8:1:2::1", "2001:db8:1:3::1", false),
            (48, "2001:db8:1:2::1", "2001:db8:1:3::1", true),
            (48, "2001:db8:1:2::1", "2001:db8:2:2::1", false),
            (128, "2001:db8:1:2::1", "2001:db8:1:2::2", false),
            (1, "2001:db8::1", "7fff::1", true),
            (1, "2001:db8::1", "8000::1", false),
            // An IPv4-mapped address is its IPv4 address, whatever the prefix.
            (64, "::ffff:10.0.0.1", "10.0.0.1", true),
            (64, "10.0.0.1", "::ffff:10.0.0.1", true),
            (64, "::ffff:10.0.0.1", "::ffff:10.0.0.2", false),
            (128, "10.0.0.1", "10.0.0.2", false),
        ];
        for (prefix, who, other, same) in cases {
            let rl = RateLimiter::new(3, 1000, prefix, Clock::system());
            assert_eq!(shares_bucket(&rl, who, other), same, "/{prefix}: {who} and {other}");
        }
    }

    #[test]
    fn a_named_client_has_a_bucket_of_its_own() {
        let rl = RateLimiter::new(2, 1000, 64, Clock::system());
        while rl.check_named("unknown").allowed {}
        assert!(!rl.check_named("unknown").allowed);
        assert!(rl.check_named("_hidden").allowed);
        assert!(rl.check(ip("0.0.0.0")).allowed);
        assert!(rl.check(ip("10.0.0.1")).allowed);
    }

    /// A full table evicts the least recently seen: a client that keeps sending, here one that
    /// is being refused, keeps its window while ten thousand new addresses pass through a table
    /// of a hundred.
    #[test]
    fn a_flood_of_new_clients_evicts_the_least_recently_seen() {
        let clock = Clock::system();
        let rl = RateLimiter::new(5, 100, 64, clock.clone());
        let active = ip("192.0.2.1");
        while rl.check(active).allowed {}
        for i in 0..10_000u32 {
            clock.advance(1);
            rl.check(IpAddr::from((0x0a00_0000 | i).to_be_bytes()));
            if i % 20 == 0 {
                assert!(!rl.check(active).allowed, "the active client's window was reset after {i} new clients");
            }
            assert!(rl.tracked_ips() <= 100);
        }
        // The newest of the flood are still tracked; the oldest were evicted.
        assert!(!rl.check(active).allowed);
        let tracked = |i: u32| rl.windows.contains_key(&Key::V4(0x0a00_0000 | i));
        assert!(tracked(9_999) && !tracked(0) && !tracked(5_000));
    }

    /// What the comments on `Key` and `Window` promise: a tracked client costs what it did when
    /// the key was an `IpAddr`.
    #[test]
    fn a_tracked_client_stays_small() {
        assert_eq!((std::mem::size_of::<Key>(), std::mem::size_of::<Window>()), (24, 16));
        assert_eq!(std::mem::size_of::<(Key, Window)>(), std::mem::size_of::<(IpAddr, [i64; 2])>());
    }

    #[test]
    fn zero_turns_it_off() {
        let rl = RateLimiter::new(0, 10, 64, Clock::system());
        for _ in 0..1000 {
            assert!(rl.check(ip("10.0.0.1")).allowed);
        }
        assert_eq!(rl.tracked_ips(), 0);
    }
}
