//! Per-client rate limiting: at most `limit` requests in any 60-second window, exactly.
//!
//! Each client keeps the times of its acceptances that are less than 60 s old, oldest first, as
//! `u32` millisecond offsets from a base of its own: a request is let in iff fewer than `limit`
//! are kept, and a refused one may retry when the oldest turns 60 s old. A fixed-minute
//! approximation would let up to twice the limit through across a minute's turn. A client's
//! ring grows with what it was let in (4 bytes an acceptance, up to `limit`) and shrinks again
//! when its requests slow down; see [`RateLimiter::sweep`] and README "Rate limiter memory".
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

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::clock::Clock;

/// The window: a request counts against its client for this long after it was let in.
pub const WINDOW_MS: i64 = 60_000;

/// A client whose ring has this many slots or fewer is never shrunk: reallocating it would cost
/// more than the few bytes it could give back.
const SMALL_RING: usize = 16;

/// Past this, a client's offsets are moved to a newer base (after ~24 days of a ring that never
/// emptied), long before a `u32` of milliseconds runs out at ~49.
const REBASE_AFTER_MS: i64 = (u32::MAX / 2) as i64;

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

/// One client's window. 48 bytes in the map, plus 4 bytes on the heap per slot of `accepted`.
#[derive(Debug, Clone, Default)]
struct Window {
    /// Ms since the epoch that the offsets in `accepted` count from.
    base: i64,
    /// The last request, allowed or not, ms since the epoch: what eviction orders by.
    seen: i64,
    /// When the client's requests were let in, ms after `base`, oldest first; at most `limit`,
    /// and those 60 s old or more are dropped whenever the client is checked or swept.
    accepted: VecDeque<u32>,
}

impl Window {
    /// Ms since the epoch at which acceptance `offset` turns 60 s old and stops counting.
    fn frees_at(&self, offset: u32) -> i64 {
        self.base + i64::from(offset) + WINDOW_MS
    }

    /// Drops acceptances that are 60 s old; gives back room a burst left behind.
    fn expire(&mut self, now: i64) {
        while self.accepted.front().is_some_and(|&t| self.frees_at(t) <= now) {
            self.accepted.pop_front();
        }
        let (len, cap) = (self.accepted.len(), self.accepted.capacity());
        if cap > SMALL_RING && cap > 4 * len {
            self.accepted.shrink_to((2 * len).max(SMALL_RING));
        }
    }

    /// How many acceptances still count at `now`, and the oldest of them, without dropping any.
    fn live(&self, now: i64) -> (usize, Option<u32>) {
        let expired = self.accepted.partition_point(|&t| self.frees_at(t) <= now);
        (self.accepted.len() - expired, self.accepted.get(expired).copied())
    }

    /// Records an acceptance at `now`, with room for at most `limit`.
    fn accept(&mut self, now: i64, limit: usize) {
        if self.accepted.is_empty() || now - self.base > REBASE_AFTER_MS {
            self.rebase(now);
        }
        // A clock that stepped back must not put an acceptance before an earlier one: the ring
        // stays in order, and the acceptance counts for as long as the one before it.
        let last = self.accepted.back().copied().unwrap_or(0);
        let offset = (now - self.base).clamp(i64::from(last), i64::from(u32::MAX)) as u32;
        if self.accepted.len() == self.accepted.capacity() {
            // Doubling, but never past the limit: a client at its limit holds `limit` slots.
            let len = self.accepted.len();
            self.accepted.reserve_exact(len.max(4).min(limit - len).max(1));
        }
        self.accepted.push_back(offset);
    }

    /// Moves `base` to a minute before `now`, keeping every acceptance's time.
    fn rebase(&mut self, now: i64) {
        let base = now - WINDOW_MS;
        let shift = base - self.base;
        for t in self.accepted.iter_mut() {
            // Acceptances older than the new base have expired (`expire` ran first); one that is
            // not, under a clock that stepped back, keeps its slot at the new base.
            *t = (i64::from(*t) - shift).clamp(0, i64::from(u32::MAX)) as u32;
        }
        self.base = base;
    }
}

/// What the limiter decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until a request would be allowed again (0 when allowed): the time until the
    /// oldest acceptance is 60 s old, rounded up.
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
    /// `limit` requests per client in any 60 s; 0 turns the limiter off. IPv6 clients are keyed
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

    fn off(&self) -> Decision {
        decide(0, 0, None, 0)
    }

    fn check_key(&self, key: Key) -> Decision {
        if self.limit == 0 {
            return self.off();
        }
        let now = self.clock.now_ms();
        // A known client costs one lookup under one shard's lock; only a new one looks at the
        // table's size (a read of every shard) and may have to make room.
        if let Some(mut w) = self.windows.get_mut(&key) {
            return self.count(&mut w, now);
        }
        if self.windows.len() >= self.max_ips {
            self.make_room();
        }
        let mut w = self.windows.entry(key).or_default();
        self.count(&mut w, now)
    }

    fn peek_key(&self, key: Key) -> Decision {
        if self.limit == 0 {
            return self.off();
        }
        let now = self.clock.now_ms();
        // Peeking neither counts, nor drops old acceptances, nor moves when the client was seen.
        let (live, oldest) = self.windows.get(&key).map_or((0, None), |w| {
            let (live, oldest) = w.live(now);
            (live, oldest.map(|t| w.frees_at(t)))
        });
        decide(self.limit, live, oldest, now)
    }

    /// Decides about one request and, if it passes, counts it.
    fn count(&self, w: &mut Window, now: i64) -> Decision {
        w.expire(now);
        w.seen = now;
        let oldest = w.accepted.front().map(|&t| w.frees_at(t));
        let d = decide(self.limit, w.accepted.len(), oldest, now);
        if d.allowed {
            w.accept(now, self.limit as usize);
        }
        d
    }

    /// Drops clients none of whose acceptances still count (they carry no state that matters),
    /// and gives back the room of rings whose clients slowed down.
    pub fn sweep(&self) {
        let now = self.clock.now_ms();
        self.windows.retain(|_, w| {
            w.expire(now);
            !w.accepted.is_empty()
        });
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
        let mut seen: Vec<(i64, Key)> = self.windows.iter().map(|e| (e.value().seen, *e.key())).collect();
        let evict = (seen.len() / 10).max(1).min(seen.len());
        if evict < seen.len() {
            seen.select_nth_unstable_by_key(evict, |(last_seen, _)| *last_seen);
        }
        for (_, key) in &seen[..evict] {
            self.windows.remove(key);
        }
    }
}

/// The decision for a client of `limit` (0: the limiter is off) with `live` acceptances under 60 s old, the oldest of
/// which stops counting at `oldest_frees_at`: one rule for every backend of the limiter.
pub fn decide(limit: u32, live: usize, oldest_frees_at: Option<i64>, now: i64) -> Decision {
    if limit == 0 {
        // Off: everything passes, and nothing is counted.
        return Decision { allowed: true, limit: 0, remaining: u32::MAX, retry_after_s: 0 };
    }
    if live < limit as usize {
        return Decision { allowed: true, limit, remaining: limit - live as u32 - 1, retry_after_s: 0 };
    }
    let wait_ms = oldest_frees_at.map_or(0, |at| at - now).max(1);
    Decision { allowed: false, limit, remaining: 0, retry_after_s: ((wait_ms + 999) / 1000) as u64 }
}

/// The key of a client a trusted proxy names without an address.
fn named_key(name: &str) -> Key {
    // SipHash with fixed keys: the name comes from a trusted proxy, not from the client, so
    // nobody picks names to collide; a collision would only share a bucket.
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    Key::Named(h.finish())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_101st_request_in_a_minute_is_refused_and_others_pass() {
        let clock = Clock::frozen(T0);
        let rl = RateLimiter::new(100, 1000, 64, clock.clone());
        for i in 0..100 {
            let d = rl.check(ip("10.0.0.1"));
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 99 - i);
        }
        let d = rl.check(ip("10.0.0.1"));
        assert!(!d.allowed);
        assert_eq!((d.remaining, d.retry_after_s), (0, 60), "{d:?}");
        assert!(rl.check(ip("10.0.0.2")).allowed);
        // Two minutes later the window has slid past everything.
        clock.advance(120_000);
        assert!(rl.check(ip("10.0.0.1")).allowed);
    }

    /// A minute boundary, so that ":59" and "1:30" below fall where a limiter of fixed minutes
    /// would turn over.
    pub(crate) const T0: i64 = 1_700_000_040_000;

    /// What one step of [`drive`] expects: allowed, or refused with this `Retry-After`.
    const PASS: Option<u64> = None;
    const fn refused(retry_after_s: u64) -> Option<u64> {
        Some(retry_after_s)
    }

    /// `(at_ms, n, expect)`: `n` requests `at_ms` after `T0`, each with this outcome.
    pub(crate) type Step = (i64, u32, Option<u64>);

    /// The edge cases of the promise "at most `limit` requests in any 60-second window", as a
    /// table that every backend of the limiter must answer alike: `(name, limit, steps)`.
    #[rustfmt::skip]
    pub(crate) const WINDOW_CASES: &[(&str, u32, &[Step])] = &[
        // 100 at :59, then 50 at 1:30: 31 s apart, so the 50 are refused until the first
        // 100 are 60 s old, at 1:59; then all 100 slots free at once.
        ("issue", 100, &[(59_000, 100, PASS), (90_000, 50, refused(29)), (118_999, 1, refused(1)),
                         (119_000, 100, PASS), (119_000, 1, refused(60))]),
        // A request exactly 60 000 ms after another is in a new window; 1 ms earlier is not.
        ("boundary", 2, &[(0, 2, PASS), (59_999, 1, refused(1)), (60_000, 2, PASS),
                          (60_000, 1, refused(60)), (119_999, 1, refused(1)), (120_000, 1, PASS)]),
        // Retry-After is the time until the oldest acceptance leaves, rounded up to seconds.
        ("limit 1", 1, &[(0, 1, PASS), (1, 1, refused(60)), (58_999, 1, refused(2)),
                         (59_000, 1, refused(1)), (59_001, 1, refused(1)), (60_000, 1, PASS),
                         (60_000, 1, refused(60))]),
        // Spread-out acceptances leave one at a time, each 60 s after it was let in.
        ("staggered", 3, &[(0, 1, PASS), (20_000, 1, PASS), (40_000, 1, PASS), (50_000, 1, refused(10)),
                           (60_000, 1, PASS), (60_000, 1, refused(20)), (80_000, 1, PASS),
                           (100_000, 1, PASS), (100_001, 1, refused(20)), (120_000, 1, PASS)]),
        // Refused requests are not counted: a client hammering while refused still gets in
        // once its acceptances are 60 s old.
        ("refusals uncounted", 2, &[(0, 2, PASS), (1_000, 50, refused(59)), (30_000, 50, refused(30)),
                                    (59_500, 50, refused(1)), (60_000, 2, PASS)]),
        // A limit of 0 turns the limiter off: everything passes, nobody is tracked.
        ("limit 0", 0, &[(0, 1000, PASS), (1, 1000, PASS)]),
    ];

    /// Runs one case of [`WINDOW_CASES`]: for each `(at_ms, n, expect)`, `n` requests from one
    /// client `at_ms` after `T0` (times never go back; `clock` starts at `T0`), each decided by
    /// `check`, and checks every decision (allowed or not, `Retry-After`, `remaining`).
    pub(crate) fn drive(name: &str, limit: u32, steps: &[Step], clock: &Clock, check: &mut dyn FnMut() -> Decision) {
        let mut at = 0;
        let mut live: Vec<i64> = Vec::new();
        for (step, &(at_ms, n, expect)) in steps.iter().enumerate() {
            clock.advance(at_ms - at);
            at = at_ms;
            for i in 0..n {
                let d = check();
                let what = format!("{name}: step {step}, request {i} at {at_ms} ms: {d:?}");
                assert_eq!(d.allowed, expect.is_none(), "{what}");
                assert_eq!(d.retry_after_s, expect.unwrap_or(0), "{what}");
                live.retain(|&t| at_ms - t < WINDOW_MS);
                if limit > 0 && d.allowed {
                    assert_eq!(d.remaining as usize, limit as usize - live.len() - 1, "{what}");
                    live.push(at_ms);
                }
            }
        }
    }

    #[test]
    fn the_limit_holds_in_every_60_second_window() {
        for (name, limit, steps) in WINDOW_CASES {
            let clock = Clock::frozen(T0);
            let rl = RateLimiter::new(*limit, 1000, 64, clock.clone());
            let client = ip("192.0.2.7");
            // `peek` just before each check must agree with it.
            drive(name, *limit, steps, &clock, &mut || {
                let peeked = rl.peek(client);
                let d = rl.check(client);
                assert_eq!(peeked, d, "{name}: peek disagreed");
                d
            });
            if *limit == 0 {
                assert_eq!(rl.tracked_ips(), 0, "{name}");
            }
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// The promise itself, by brute force: the times a client was let in; a request is let
        /// in iff fewer than `limit` of them are less than 60 000 ms old.
        #[derive(Default)]
        struct Model {
            accepted: Vec<i64>,
        }

        impl Model {
            fn live(&self, now: i64) -> Vec<i64> {
                self.accepted.iter().copied().filter(|&t| now - t < WINDOW_MS).collect()
            }
        }

        /// Gaps between requests: bursts, spreads, and the window's edges.
        fn gap() -> impl Strategy<Value = i64> {
            prop_oneof![Just(0i64), 0i64..2_000, 0i64..70_000, 59_000i64..61_000, Just(WINDOW_MS)]
        }

        proptest! {
            #![proptest_config(crate::proptest_cases(256))]

            /// For random request times from a few clients, the limiter decides as the model
            /// does, with the model's `remaining`, and its `Retry-After` is the model's time
            /// until a slot frees, rounded up to seconds: a request sent that many seconds later
            /// is let in, one sent a second earlier is not.
            #[test]
            fn the_limiter_decides_as_the_brute_force_model(
                limit in 1u32..6,
                requests in proptest::collection::vec((0usize..3, gap()), 1..120),
            ) {
                let clock = Clock::frozen(T0);
                let rl = RateLimiter::new(limit, 1000, 64, clock.clone());
                let clients = [ip("10.0.0.1"), ip("2001:db8::1"), ip("10.0.0.2")];
                let mut models = [Model::default(), Model::default(), Model::default()];
                let mut now = T0;
                for (n, (who, gap)) in requests.into_iter().enumerate() {
                    clock.advance(gap);
                    now += gap;
                    let (client, model) = (clients[who], &mut models[who]);
                    let live = model.live(now);
                    let d = rl.check(client);
                    let allow = (live.len() as u32) < limit;
                    prop_assert_eq!(d.allowed, allow, "request {} at +{} ms, live {:?}", n, now - T0, live);
                    if allow {
                        model.accepted.push(now);
                        prop_assert_eq!(d.remaining, limit - live.len() as u32 - 1);
                        prop_assert_eq!(d.retry_after_s, 0);
                        continue;
                    }
                    prop_assert_eq!(d.remaining, 0);
                    let frees_in_ms = live.iter().min().unwrap() + WINDOW_MS - now;
                    let retry_s = (frees_in_ms + 999) / 1000;
                    prop_assert_eq!(d.retry_after_s, retry_s as u64, "request {} at +{} ms", n, now - T0);
                    // Retry-After on the limiter itself: a second early is refused, on time passes.
                    clock.advance(retry_s * 1000 - 1000);
                    prop_assert!(!rl.peek(client).allowed, "a second before Retry-After");
                    clock.advance(1000);
                    prop_assert!(rl.peek(client).allowed, "at Retry-After");
                    clock.advance(-retry_s * 1000);
                }
            }
        }
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

    /// What the comments on `Key` and `Window` and README "Rate limiter memory" promise: a
    /// tracked client is 72 bytes in the map, plus its ring.
    #[test]
    fn a_tracked_client_stays_small() {
        assert_eq!((std::mem::size_of::<Key>(), std::mem::size_of::<Window>()), (24, 48));
        assert_eq!(std::mem::size_of::<(Key, Window)>(), 72);
    }

    /// A client's ring never has more slots than the limit, however it grows, and gives its
    /// room back once its acceptances are 60 s old; the sweep drops it when none still count.
    #[test]
    fn a_ring_holds_at_most_the_limit_and_shrinks_when_idle() {
        let clock = Clock::frozen(T0);
        let client = ip("192.0.2.9");
        let slots = |rl: &RateLimiter| rl.windows.get(&rl.key(client)).map(|w| w.accepted.capacity());
        for limit in [1, 5, 100, 1000] {
            let rl = RateLimiter::new(limit, 10, 64, clock.clone());
            while rl.check(client).allowed {
                assert!(slots(&rl).unwrap() <= limit as usize, "limit {limit}: {:?}", slots(&rl));
            }
            assert_eq!(rl.windows.get(&rl.key(client)).unwrap().accepted.len(), limit as usize);
            clock.advance(WINDOW_MS);
            assert!(rl.check(client).allowed);
            assert!(slots(&rl).unwrap() <= SMALL_RING.max(4), "limit {limit}: {:?}", slots(&rl));
            clock.advance(WINDOW_MS);
            rl.sweep();
            assert_eq!(slots(&rl), None, "limit {limit}");
        }
    }

    /// A client that never lets its ring empty outlives a `u32` of milliseconds from its base
    /// (~49 days): its offsets move to a newer base and keep their times.
    #[test]
    fn a_client_busy_for_months_keeps_exact_times() {
        let clock = Clock::frozen(T0);
        let rl = RateLimiter::new(2, 10, 64, clock.clone());
        let client = ip("192.0.2.10");
        assert!(rl.check(client).allowed);
        // One request every 30 s for 50 days: each lets the one from 60 s before leave.
        for step in 0..(50 * 24 * 3600 / 30) {
            clock.advance(30_000);
            assert!(rl.check(client).allowed, "step {step}");
            assert_eq!(rl.check(client).retry_after_s, 30, "step {step}");
        }
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
