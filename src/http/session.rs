//! Dashboard sessions: a random id per sign-in, kept in memory, never the admin token.
//!
//! The id is 256 bits from the operating system's CSPRNG (`ring::rand::SystemRandom`), sent once
//! in the cookie and kept here only as its SHA-256 digest, so neither a memory dump nor a timing
//! of the lookup gives a usable id away. A session lasts `server.session_ttl` from sign-in,
//! however often it is used, ends at logout, and ends with the process: nothing is written to
//! disk, so a restart signs everyone out.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::clock::Clock;

/// Most sessions held at once; the oldest is dropped to make room. Only a holder of the admin
/// token can open one, so this bounds memory against a script that signs in in a loop, not
/// against strangers; a few people on one staging receiver need a handful. An entry is about
/// 80 bytes (digest twice, expiry, map overhead): 4096 of them is a third of a megabyte.
pub const MAX_SESSIONS: usize = 4096;

/// Random bytes in a session id (hex-encoded in the cookie: 64 characters).
const ID_BYTES: usize = 32;

type Digest32 = [u8; 32];

pub struct Sessions {
    ttl_ms: i64,
    clock: Clock,
    rng: SystemRandom,
    /// A `parking_lot` mutex, not a tokio one: it is held for a few map operations and never
    /// across an await.
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Live sessions by the digest of their id, with when each expires (ms since the epoch).
    live: HashMap<Digest32, i64>,
    /// Digests in order of sign-in, which is also the order of expiry (one ttl for all). It may
    /// still name sessions ended by logout; they are skipped when reached. Never longer than
    /// [`MAX_SESSIONS`].
    order: VecDeque<Digest32>,
}

/// Why no session could be opened.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct NoRandom;

impl Sessions {
    pub fn new(ttl: std::time::Duration, clock: Clock) -> Sessions {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        Sessions { ttl_ms, clock, rng: SystemRandom::new(), table: Mutex::new(Table::default()) }
    }

    /// Opens a session and returns its id, the only copy there is.
    pub fn open(&self) -> Result<String, NoRandom> {
        let mut id = [0u8; ID_BYTES];
        self.rng.fill(&mut id).map_err(|_| NoRandom)?;
        let id = hex::encode(id);
        let now = self.clock.now_ms();
        let mut t = self.table.lock();
        t.drop_expired(now);
        while t.order.len() >= MAX_SESSIONS {
            if let Some(oldest) = t.order.pop_front() {
                t.live.remove(&oldest);
            }
        }
        let digest = digest(&id);
        t.live.insert(digest, now.saturating_add(self.ttl_ms));
        t.order.push_back(digest);
        Ok(id)
    }

    /// Whether `id` names a live session. An expired one is forgotten on the way.
    pub fn valid(&self, id: &str) -> bool {
        if id.is_empty() {
            return false;
        }
        let digest = digest(id);
        let now = self.clock.now_ms();
        let mut t = self.table.lock();
        match t.live.get(&digest) {
            Some(&expires) if now < expires => true,
            Some(_) => {
                t.live.remove(&digest);
                false
            }
            None => false,
        }
    }

    /// Ends the session `id` names, if any.
    pub fn close(&self, id: &str) {
        self.table.lock().live.remove(&digest(id));
    }

    /// Forgets expired sessions (the periodic sweep; opening one also does it).
    pub fn sweep(&self) {
        let now = self.clock.now_ms();
        self.table.lock().drop_expired(now);
    }

    /// Live sessions and sessions not yet swept.
    pub fn len(&self) -> usize {
        self.table.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cookie's `Max-Age`: the ttl in whole seconds, rounded up so that the browser never
    /// drops the cookie before the server ends the session.
    pub fn max_age_s(&self) -> i64 {
        (self.ttl_ms.saturating_add(999) / 1000).max(1)
    }
}

impl Table {
    /// Sessions expire in the order they were opened, so the expired ones are at the front.
    fn drop_expired(&mut self, now: i64) {
        while let Some(front) = self.order.front() {
            match self.live.get(front) {
                Some(&expires) if now < expires => break,
                Some(_) => {
                    self.live.remove(front);
                }
                None => {} // Ended by logout (or dropped as expired at a lookup).
            }
            self.order.pop_front();
        }
    }
}

fn digest(id: &str) -> Digest32 {
    Sha256::digest(id.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_session_lives_for_its_ttl_and_ends_at_close() {
        // A stopped clock: on the system's, a millisecond passing between `open` and the
        // first check would end the session a millisecond early.
        let clock = Clock::frozen(1_700_000_000_000);
        let s = Sessions::new(Duration::from_secs(60), clock.clone());
        let a = s.open().unwrap();
        let b = s.open().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 * ID_BYTES);
        assert!(s.valid(&a) && s.valid(&b));
        assert!(!s.valid("") && !s.valid(&a[1..]) && !s.valid(&a.to_uppercase()));
        s.close(&a);
        assert!(!s.valid(&a) && s.valid(&b));
        clock.advance(59_999);
        assert!(s.valid(&b));
        clock.advance(1);
        assert!(!s.valid(&b));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_oldest() {
        let clock = Clock::system();
        let s = Sessions::new(Duration::from_secs(3600), clock.clone());
        let first = s.open().unwrap();
        let second = s.open().unwrap();
        let mut last = String::new();
        for _ in 0..MAX_SESSIONS - 1 {
            last = s.open().unwrap();
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(!s.valid(&first), "the oldest made room");
        assert!(s.valid(&second) && s.valid(&last));
        // Logged-out sessions do not let the order grow past the bound either.
        for _ in 0..2 * MAX_SESSIONS {
            let id = s.open().unwrap();
            s.close(&id);
        }
        assert!(s.table.lock().order.len() <= MAX_SESSIONS);
    }

    #[test]
    fn the_sweep_forgets_expired_sessions() {
        let clock = Clock::system();
        let s = Sessions::new(Duration::from_millis(1500), clock.clone());
        s.open().unwrap();
        s.open().unwrap();
        assert_eq!(s.max_age_s(), 2);
        clock.advance(1500);
        s.sweep();
        assert!(s.is_empty());
        assert!(s.table.lock().order.is_empty());
    }
}
