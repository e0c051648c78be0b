//! The bookkeeping the accept loop and every connection share: each connection's phase (waiting,
//! handling a request, receiving a body, evicted), the connections waiting for a request and the
//! bodies still arriving, ordered for eviction at `max_connections`, and the budget of body bytes
//! in flight. Separate because it is the one state that crosses connections: every lock and
//! atomic of the server is here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{ConnStats, Limits, EVICT_AFTER};

/// The share of `max_connections`, in percent, from which an early refusal's body is not
/// drained (see [`Shared::crowded`]).
const CROWDED_PERCENT: usize = 90;

/// A connection is waiting for a request (since `since`), handling one, or handling one whose
/// body is still arriving (the candidates for eviction after the waiting ones).
pub(super) const WAITING: u8 = 0;
pub(super) const ACTIVE: u8 = 1;
pub(super) const EVICTED: u8 = 2;
pub(super) const BODY: u8 = 3;

pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) phase: AtomicU8,
    /// When the current wait began, in ms since `Shared::epoch`.
    pub(super) since_ms: AtomicU64,
    /// Whether a request has been handled (then the wait is bounded by `idle_timeout`).
    pub(super) served: AtomicU8,
    pub(super) evict: Notify,
    /// Set when the connection was evicted while its body arrived: it answers before closing.
    pub(super) evicted_body: AtomicU8,
    /// Wakes the request's body when the connection is evicted, so that it fails at once.
    pub(super) body_waker: AtomicWaker,
}

/// A body in `Shared::bodies`: its connection.
pub(super) struct Arriving {
    pub(super) conn: Arc<Conn>,
}

/// State shared by the accept loop and every connection.
pub(super) struct Shared {
    pub(super) limits: Limits,
    pub(super) stats: Arc<ConnStats>,
    pub(super) epoch: Instant,
    pub(super) next_id: AtomicU64,
    /// Connections by the start of their latest wait for a request, oldest first: the
    /// candidates for eviction. A connection handling a request keeps its entry until the
    /// response, when the entry moves to the new wait's start: one lock per request, never held
    /// across an await.
    pub(super) waiting: Mutex<BTreeMap<(u64, u64), Arc<Conn>>>,
    /// Bodies still arriving that did not arrive whole at once, by the time they fall (or fell)
    /// behind the minimum rate counted from the end of their head, without the grace
    /// ([`Timed::behind_from`](super::body::Timed::behind_from)), furthest behind first: those
    /// whose time has passed are the candidates for eviction after the waiting connections. A
    /// body's entry moves as its bytes arrive.
    pub(super) bodies: Mutex<BTreeMap<(u64, u64), Arriving>>,
    /// The sum of what `bodies` hold, against `max_inflight_body_bytes`.
    pub(super) inflight: AtomicU64,
    pub(super) all_closed: Notify,
}

impl Shared {
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn open(&self) -> Arc<Conn> {
        let since = self.now_ms();
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            phase: AtomicU8::new(WAITING),
            since_ms: AtomicU64::new(since),
            served: AtomicU8::new(0),
            evict: Notify::new(),
            evicted_body: AtomicU8::new(0),
            body_waker: AtomicWaker::new(),
        });
        self.waiting.lock().insert((since, conn.id), conn.clone());
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        conn
    }

    /// A request's headers are complete: the connection is no longer a candidate for eviction.
    /// Its entry stays where it is, and eviction passes over it. A connection evicted a moment
    /// before stays evicted: it is closing, and this request goes with it.
    pub(super) fn begin(&self, conn: &Conn) {
        let _ = conn.phase.compare_exchange(WAITING, ACTIVE, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The response is ready: the connection waits for the next request.
    pub(super) fn end(&self, conn: &Arc<Conn>) {
        let since = self.now_ms();
        conn.served.store(1, Ordering::Relaxed);
        let mut waiting = self.waiting.lock();
        waiting.remove(&(conn.since_ms.load(Ordering::Acquire), conn.id));
        conn.since_ms.store(since, Ordering::Release);
        if conn.phase.compare_exchange(ACTIVE, WAITING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            waiting.insert((since, conn.id), conn.clone());
        }
    }

    pub(super) fn close(&self, conn: &Conn) {
        self.waiting.lock().remove(&(conn.since_ms.load(Ordering::Acquire), conn.id));
        if self.stats.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_closed.notify_one();
        }
    }

    /// Closes the connection that has waited longest, if it has waited [`EVICT_AFTER`]; else
    /// cuts the body furthest behind the minimum rate, if it is behind it.
    pub(super) fn evict_one(&self) -> bool {
        self.evict_waiting() || self.evict_body()
    }

    fn evict_waiting(&self) -> bool {
        let oldest_allowed = self.now_ms().saturating_sub(EVICT_AFTER.as_millis() as u64);
        let mut waiting = self.waiting.lock();
        while let Some(entry) = waiting.first_entry() {
            let (since, _) = *entry.key();
            if since > oldest_allowed {
                return false;
            }
            let conn = entry.remove();
            // A connection handling a request is not waiting: its entry goes (its response
            // puts it back), and the next one is looked at.
            if conn.phase.compare_exchange(WAITING, EVICTED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                conn.evict.notify_one();
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    fn evict_body(&self) -> bool {
        let now = self.now_ms();
        loop {
            // The first body is the furthest behind: if it is not behind, none is.
            let Arriving { conn } = {
                let mut bodies = self.bodies.lock();
                let Some(entry) = bodies.first_entry().filter(|e| e.key().0 < now) else { return false };
                entry.remove()
            };
            // The body leaves the map here; its charge is given back when it is dropped. One
            // whose request has just moved on is passed over, as `evict_waiting` does, and the
            // next one behind is looked at.
            if conn.phase.compare_exchange(BODY, EVICTED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                conn.evicted_body.store(1, Ordering::Release);
                conn.body_waker.wake();
                conn.evict.notify_one();
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
    }

    /// Whether the connections open are close to `max_connections` ([`CROWDED_PERCENT`] of it):
    /// then an early refusal is not drained.
    pub(super) fn crowded(&self) -> bool {
        self.stats.open.load(Ordering::Relaxed) * 100 >= self.limits.max_connections * CROWDED_PERCENT
    }

    /// Takes `more` bytes from the budget of bodies in flight; false when it has no room.
    pub(super) fn charge(&self, more: u64) -> bool {
        let max = self.limits.max_inflight_body_bytes;
        let taken = self
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_add(more).filter(|&n| n <= max));
        if taken.is_ok() {
            self.stats.inflight_body_bytes.fetch_add(more, Ordering::Relaxed);
        }
        taken.is_ok()
    }

    pub(super) fn uncharge(&self, bytes: u64) {
        self.inflight.fetch_sub(bytes, Ordering::AcqRel);
        self.stats.inflight_body_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}
