//! Serving connections: the accept loop, and the numbers that bound what one client can hold.
//!
//! warp's own `serve` runs hyper without a timer or any limit, so a client that opens a
//! connection and never finishes its headers holds a socket for ever. stagehook serves warp's
//! filter as a hyper HTTP/1.1 service itself and enforces, per connection:
//!
//! - `header_timeout`: from connect until the first request's headers are complete;
//! - `idle_timeout`: from the end of a response until the next request's headers are complete
//!   (which also bounds a response the client never reads);
//! - `body_timeout`: from the end of a request's headers until its whole body has arrived
//!   (the body itself fails, and the handler answers `408`);
//! - `min_body_rate` after `body_rate_grace`: a body that has not arrived whole at once must
//!   keep up an average rate, else it fails and the handler answers `408 body_too_slow`;
//! - `max_inflight_body_bytes`: the bytes of bodies that are still arriving, held in memory by
//!   their handlers, summed over every connection; a body that would take the sum past it fails,
//!   and the handler answers `503 too_many_body_bytes`;
//! - `max_connections`: at the cap, a new connection takes the place of the connection that has
//!   waited longest for a request, if that wait is [`EVICT_AFTER`] or more (a slow or idle
//!   client); failing that, of the request whose body is furthest behind the minimum rate
//!   counted from the end of its head, without a grace (it has delivered fewer than
//!   `min_body_rate` bytes for each second it has been arriving; it is answered `408
//!   body_too_slow`). A body that arrived whole with its head, or that keeps up with the rate,
//!   is never the one. Otherwise the new connection is refused at once with a `503`, never
//!   queued;
//! - `max_header_bytes`: hyper answers `431` to a larger request head, however its bytes arrive.
//!
//! An early refusal (a handler that answers without reading the body) drains the unread body,
//! bounded in bytes and time, before the answer is sent (unless the connections are near the
//! cap: a draining connection cannot be evicted), so a client that writes its whole body
//! before reading reads the answer instead of a reset connection.
//!
//! HTTP/2 over cleartext is off on purpose: providers and tunnels speak HTTP/1.1 to an origin,
//! and one protocol means one set of limits. hyper refuses the HTTP/2 preface.
//!
//! What clients cause (timeouts, refusals, broken connections) is counted, logged at debug level
//! one by one, and summarised once a minute at info level, so a flood cannot fill a disk.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use warp::http::{HeaderValue, Request};
use warp::reply::Response;
use warp::Filter;

use crate::config::ServerConfig;

/// A waiting connection is evicted to make room only after waiting this long, so a client that
/// has just connected and is about to send its request is never the one displaced.
pub const EVICT_AFTER: Duration = Duration::from_secs(1);

/// How long a connection evicted while its body arrives has to write its `408` before it is
/// closed all the same: the answer is small, and a client that does not read it loses nothing.
const EVICTED_ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// What a request whose body is still arriving holds beside its body's buffer, charged to
/// `max_inflight_body_bytes` with it: the handler's state, the parsed head, the body's timer.
/// Measured: 3 000 connections each sending the head and one byte of a 1 000-byte body took
/// 17 KB each more than 3 000 that sent nothing. Without it, a flood of bodies of a byte or two
/// took 30 KB a connection, a full cap's worth of connections, for a budget charge of 1 KB each.
const BODY_OVERHEAD: u64 = 16 * 1024;

/// The share of `max_connections`, in percent, from which an early refusal's body is not
/// drained (see [`Shared::crowded`]).
const CROWDED_PERCENT: usize = 90;

/// How often the server looks for the end of a burst, after which the allocator is asked to
/// give back the memory the burst took (see [`crate::allocator::collect_soon`]).
const BURST_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A burst, for [`BURST_CHECK_EVERY`]: this many connections open at once, or this many body
/// bytes in flight; it has ended when what is open has fallen to half of its peak.
const BURST_CONNECTIONS: usize = 1000;
const BURST_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// Checks in a row that ask for a collection once a burst has ended: a worker collects only
/// when it parks, and each is sure to have parked after one of these.
const COLLECT_ROUNDS: u32 = 3;

/// How often the summary of what clients caused is logged (when anything happened).
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Request log lines with a status of 400 or more written per summary period; the rest are
/// counted and summarised, so that 404, 413 or 429 floods cannot fill a disk.
pub const REFUSAL_LINES_PER_MINUTE: u64 = 60;

/// The body of the answer to a connection over `max_connections`.
const REFUSED_BODY: &str =
    "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections; retry shortly\"}}\n";

/// File descriptors kept free of connections for the store, its body log and deliveries.
pub const RESERVED_FDS: usize = 256;

/// The numbers of [`serve`], from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub drain_bytes: u64,
    pub drain_timeout: Duration,
    /// Bytes a second a body must average once `body_rate_grace` has passed; 0: no minimum.
    pub min_body_rate: u64,
    pub body_rate_grace: Duration,
    pub max_inflight_body_bytes: u64,
    /// After shutdown begins, how long open requests may take before their connections close.
    pub grace: Duration,
}

impl Limits {
    pub fn from_config(server: &ServerConfig) -> Limits {
        Limits {
            header_timeout: server.header_timeout.0,
            body_timeout: server.body_timeout.0,
            idle_timeout: server.idle_timeout.0,
            max_connections: server.max_connections,
            max_header_bytes: server.max_header_bytes,
            drain_bytes: server.refusal_drain_bytes,
            drain_timeout: server.refusal_drain_timeout.0,
            min_body_rate: server.min_body_rate,
            body_rate_grace: server.body_rate_grace.0,
            max_inflight_body_bytes: server.max_inflight_body_bytes,
            grace: Duration::from_secs(server.shutdown_grace_seconds),
        }
    }
}

/// The client's address, as the accept loop saw it (the direct peer).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The direct peer: from [`serve`], or from warp's own server and `warp::test`.
pub fn peer() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<Peer>().and(warp::addr::remote()).map(|p: Option<Peer>, r| p.map(|Peer(a)| a).or(r))
}

/// The address the connection arrived at, on this machine: which interface a client reached
/// when the bind is 0.0.0.0 or [::] (`origin.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Local(pub SocketAddr);

/// The connection's local address: from [`serve`]; `None` under `warp::test`.
pub fn local() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<Local>().map(|l: Option<Local>| l.map(|Local(a)| a))
}

/// Why the server cut a body short: the error the body yields, which the handler answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyCut {
    /// `body_timeout` passed before the body was complete.
    #[error("the body did not arrive within the body timeout")]
    Timeout,
    /// The body fell behind `min_body_rate`.
    #[error("the body arrived more slowly than the minimum body rate")]
    TooSlow,
    /// The connection was evicted at `max_connections`: the slowest body there was.
    #[error("the body arrived the slowest while the connections were at their cap")]
    Evicted,
    /// `max_inflight_body_bytes` had no room for the body's bytes.
    #[error("the bodies still arriving hold all the memory set aside for them")]
    NoRoom,
}

/// What happened to connections, for the summary line and the API. Counts since startup.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub evicted: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub body_timeouts: AtomicU64,
    /// Bodies cut for falling behind `min_body_rate`, or evicted as the slowest at the cap
    /// (those are also in `evicted`).
    pub body_too_slow: AtomicU64,
    /// Bodies refused because `max_inflight_body_bytes` had no room for them.
    pub body_bytes_refused: AtomicU64,
    /// Bytes of the bodies still arriving now, as counted against `max_inflight_body_bytes`.
    pub inflight_body_bytes: AtomicU64,
    /// Connections that ended with a protocol or I/O error (half-sent requests, resets).
    pub errors: AtomicU64,
    /// `accept` failures, such as running out of file descriptors.
    pub accept_errors: AtomicU64,
    /// Request lines of refusals written, and those left out, in the current summary period.
    refusal_lines: AtomicU64,
    pub refusal_lines_suppressed: AtomicU64,
}

impl ConnStats {
    /// Whether a request log line with this status may be written now.
    pub fn may_log(&self, status: u16) -> bool {
        if status < 400 {
            return true;
        }
        if self.refusal_lines.fetch_add(1, Ordering::Relaxed) < REFUSAL_LINES_PER_MINUTE {
            return true;
        }
        self.refusal_lines_suppressed.fetch_add(1, Ordering::Relaxed);
        false
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "open": self.open.load(Ordering::Relaxed),
            "accepted": get(&self.accepted),
            "refused": get(&self.refused),
            "evicted": get(&self.evicted),
            "header_timeouts": get(&self.header_timeouts),
            "idle_timeouts": get(&self.idle_timeouts),
            "body_timeouts": get(&self.body_timeouts),
            "body_too_slow": get(&self.body_too_slow),
            "body_bytes_refused": get(&self.body_bytes_refused),
            "inflight_body_bytes": get(&self.inflight_body_bytes),
            "errors": get(&self.errors),
            "accept_errors": get(&self.accept_errors),
        })
    }
}

/// Marks a response whose body streams for as long as its client listens (the event stream):
/// its connection counts as handling a request until the body ends, so neither `idle_timeout`
/// nor eviction cuts it, and it closes then. Such routes bound their own number.
#[derive(Debug, Clone, Copy)]
pub struct LongLived;

/// A connection is waiting for a request (since `since`), handling one, or handling one whose
/// body is still arriving (the candidates for eviction after the waiting ones).
const WAITING: u8 = 0;
const ACTIVE: u8 = 1;
const EVICTED: u8 = 2;
const BODY: u8 = 3;

struct Conn {
    id: u64,
    phase: AtomicU8,
    /// When the current wait began, in ms since `Shared::epoch`.
    since_ms: AtomicU64,
    /// Whether a request has been handled (then the wait is bounded by `idle_timeout`).
    served: AtomicU8,
    evict: Notify,
    /// Set when the connection was evicted while its body arrived: it answers before closing.
    evicted_body: AtomicU8,
    /// Wakes the request's body when the connection is evicted, so that it fails at once.
    body_waker: AtomicWaker,
}

/// A body in `Shared::bodies`: its connection.
struct Arriving {
    conn: Arc<Conn>,
}

/// State shared by the accept loop and every connection.
struct Shared {
    limits: Limits,
    stats: Arc<ConnStats>,
    epoch: Instant,
    next_id: AtomicU64,
    /// Connections by the start of their latest wait for a request, oldest first: the
    /// candidates for eviction. A connection handling a request keeps its entry until the
    /// response, when the entry moves to the new wait's start: one lock per request, never held
    /// across an await.
    waiting: Mutex<BTreeMap<(u64, u64), Arc<Conn>>>,
    /// Bodies still arriving that did not arrive whole at once, by the time they fall (or fell)
    /// behind the minimum rate counted from the end of their head, without the grace
    /// ([`Timed::behind_from`]), furthest behind first: those whose time has passed are the
    /// candidates for eviction after the waiting connections. A body's entry moves as its
    /// bytes arrive.
    bodies: Mutex<BTreeMap<(u64, u64), Arriving>>,
    /// The sum of what `bodies` hold, against `max_inflight_body_bytes`.
    inflight: AtomicU64,
    all_closed: Notify,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn open(&self) -> Arc<Conn> {
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
    fn begin(&self, conn: &Conn) {
        let _ = conn.phase.compare_exchange(WAITING, ACTIVE, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The response is ready: the connection waits for the next request.
    fn end(&self, conn: &Arc<Conn>) {
        let since = self.now_ms();
        conn.served.store(1, Ordering::Relaxed);
        let mut waiting = self.waiting.lock();
        waiting.remove(&(conn.since_ms.load(Ordering::Acquire), conn.id));
        conn.since_ms.store(since, Ordering::Release);
        if conn.phase.compare_exchange(ACTIVE, WAITING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            waiting.insert((since, conn.id), conn.clone());
        }
    }

    fn close(&self, conn: &Conn) {
        self.waiting.lock().remove(&(conn.since_ms.load(Ordering::Acquire), conn.id));
        if self.stats.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_closed.notify_one();
        }
    }

    /// Closes the connection that has waited longest, if it has waited [`EVICT_AFTER`]; else
    /// cuts the body furthest behind the minimum rate, if it is behind it.
    fn evict_one(&self) -> bool {
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
    fn crowded(&self) -> bool {
        self.stats.open.load(Ordering::Relaxed) * 100 >= self.limits.max_connections * CROWDED_PERCENT
    }

    /// Takes `more` bytes from the budget of bodies in flight; false when it has no room.
    fn charge(&self, more: u64) -> bool {
        let max = self.limits.max_inflight_body_bytes;
        let taken = self
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_add(more).filter(|&n| n <= max));
        if taken.is_ok() {
            self.stats.inflight_body_bytes.fetch_add(more, Ordering::Relaxed);
        }
        taken.is_ok()
    }

    fn uncharge(&self, bytes: u64) {
        self.inflight.fetch_sub(bytes, Ordering::AcqRel);
        self.stats.inflight_body_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// How long the connection may still wait, or `None` when its time is up; with the counter
    /// to bump then.
    fn time_left(&self, conn: &Conn) -> Result<Duration, &AtomicU64> {
        if conn.phase.load(Ordering::Acquire) != WAITING {
            // Handling a request, which has deadlines of its own.
            return Ok(self.limits.idle_timeout.max(self.limits.header_timeout));
        }
        let (limit, counter) = if conn.served.load(Ordering::Relaxed) == 0 {
            (self.limits.header_timeout, &self.stats.header_timeouts)
        } else {
            (self.limits.idle_timeout, &self.stats.idle_timeouts)
        };
        let waited = Duration::from_millis(self.now_ms().saturating_sub(conn.since_ms.load(Ordering::Acquire)));
        limit.checked_sub(waited).filter(|d| !d.is_zero()).ok_or(counter)
    }
}

/// `wanted` connections, or fewer when the open-file limit cannot hold them beside
/// [`RESERVED_FDS`] and `reserve` more. The soft limit is first raised to the hard one, as most
/// servers do, since the soft default (often 1024) is meant for programs that are not servers.
pub fn fit_to_fd_limit(wanted: usize, reserve: usize) -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return wanted;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    let room = (lim.rlim_cur as usize).saturating_sub(RESERVED_FDS + reserve).max(1);
    if room < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = lim.rlim_cur,
            "server.max_connections is above what the open-file limit leaves room for; using {room}"
        );
    }
    wanted.min(room)
}

/// Serves `filter` on `listener` until `shutdown` resolves; then stops accepting, lets open
/// requests finish for up to `limits.grace`, and closes what is left.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: Limits,
    stats: Arc<ConnStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let shared = Arc::new(Shared {
        limits,
        stats,
        epoch: Instant::now(),
        next_id: AtomicU64::new(0),
        waiting: Mutex::new(BTreeMap::new()),
        bodies: Mutex::new(BTreeMap::new()),
        inflight: AtomicU64::new(0),
        all_closed: Notify::new(),
    });
    // 0: serving; 1: finish open requests, then close; 2: close now.
    let (stop_tx, stop_rx) = watch::channel(0u8);
    let summary = tokio::spawn(summarise(shared.stats.clone()));
    let bursts = tokio::spawn(watch_bursts(shared.stats.clone()));
    // Written without waiting: the socket is new, so its send buffer has room.
    let refused = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{REFUSED_BODY}",
        REFUSED_BODY.len()
    );
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors, most likely: back off briefly rather than spin; the
                // open connections' timeouts free descriptors.
                shared.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.stats.open.load(Ordering::Acquire) >= limits.max_connections && !shared.evict_one() {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            let _ = stream.try_write(refused.as_bytes());
            continue;
        }
        let conn = shared.open();
        tokio::spawn(connection(shared.clone(), conn, stream, peer, filter.clone(), stop_rx.clone()));
    }
    drop(listener);
    let _ = stop_tx.send(1);
    let deadline = tokio::time::Instant::now() + limits.grace;
    while shared.stats.open.load(Ordering::Acquire) > 0 {
        tokio::select! {
            () = shared.all_closed.notified() => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!("requests still open after {:?}; closing them", limits.grace);
                let _ = stop_tx.send(2);
                break;
            }
        }
    }
    summary.abort();
    bursts.abort();
}

/// Asks the allocator to give memory back when a burst of connections or body bytes has ended
/// ([`BURST_CONNECTIONS`], [`BURST_BODY_BYTES`]): the workers it left idle would otherwise keep
/// what the burst freed. A steady load, however fast, never asks.
async fn watch_bursts(stats: Arc<ConnStats>) {
    let mut tick = tokio::time::interval(BURST_CHECK_EVERY);
    let (mut peak_open, mut peak_bytes, mut rounds) = (0usize, 0u64, 0u32);
    loop {
        tick.tick().await;
        let open = stats.open.load(Ordering::Relaxed);
        let bytes = stats.inflight_body_bytes.load(Ordering::Relaxed);
        peak_open = peak_open.max(open);
        peak_bytes = peak_bytes.max(bytes);
        let ended = (peak_open >= BURST_CONNECTIONS && open <= peak_open / 2)
            || (peak_bytes >= BURST_BODY_BYTES && bytes <= peak_bytes / 2);
        if ended {
            (peak_open, peak_bytes, rounds) = (open, bytes, COLLECT_ROUNDS);
        }
        if rounds > 0 {
            rounds -= 1;
            crate::allocator::collect_soon();
        }
    }
}

async fn connection<F>(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    stream: TcpStream,
    peer: SocketAddr,
    filter: F,
    mut stop: watch::Receiver<u8>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    // One warp service per connection, as warp's own server has: cloning the filter clones
    // every handle in it.
    let local = stream.local_addr().ok();
    let svc =
        Service { inner: RefCell::new(warp::service(filter)), shared: shared.clone(), conn: conn.clone(), peer, local };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // `max_buf_size` alone is checked only while a head is incomplete, and one read may bring
    // more than it (the buffer grows by doubling), so a large head sent in one write was parsed
    // whole; `max_header_size` is also checked against the parsed head's length.
    builder.max_buf_size(shared.limits.max_header_bytes).max_header_size(shared.limits.max_header_bytes);
    let served = builder.serve_connection(TokioIo::new(stream), svc);
    let mut served = std::pin::pin!(served);
    let mut stopping = false;
    let recheck = shared.limits.idle_timeout.min(shared.limits.header_timeout);
    loop {
        if !stopping && *stop.borrow() >= 1 {
            stopping = true;
            served.as_mut().graceful_shutdown();
        }
        let wait = match shared.time_left(&conn) {
            // The phase may change while this sleeps (a request begins and ends), and the next
            // wait may be the shorter one: looking again after the shorter timeout never checks
            // late, without a wake-up for every request.
            Ok(wait) => wait.min(recheck),
            Err(counter) => {
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "connection timed out waiting for a request");
                break;
            }
        };
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            () = tokio::time::sleep(wait) => {}
            () = conn.evict.notified() => {
                if conn.evicted_body.load(Ordering::Acquire) == 1 {
                    // Its body has failed: the handler answers 408, briefly waited for.
                    let _ = tokio::time::timeout(EVICTED_ANSWER_WITHIN, served.as_mut()).await;
                }
                tracing::debug!(%peer, "connection closed to make room for a new one");
                break;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() >= 2 {
                    break;
                }
            }
        }
    }
    shared.close(&conn);
}

/// Logs, once a minute, what clients caused in that minute, when anything did.
async fn summarise(stats: Arc<ConnStats>) {
    let mut tick = tokio::time::interval(SUMMARY_EVERY);
    tick.tick().await;
    let counters = |s: &ConnStats| {
        [
            s.refused.load(Ordering::Relaxed),
            s.evicted.load(Ordering::Relaxed),
            s.header_timeouts.load(Ordering::Relaxed),
            s.idle_timeouts.load(Ordering::Relaxed),
            s.body_timeouts.load(Ordering::Relaxed),
            s.errors.load(Ordering::Relaxed),
            s.accept_errors.load(Ordering::Relaxed),
            s.body_too_slow.load(Ordering::Relaxed),
            s.body_bytes_refused.load(Ordering::Relaxed),
        ]
    };
    let mut last = counters(&stats);
    loop {
        tick.tick().await;
        let now = counters(&stats);
        let d: Vec<u64> = now.iter().zip(last.iter()).map(|(n, l)| n - l).collect();
        last = now;
        stats.refusal_lines.store(0, Ordering::Relaxed);
        let suppressed = stats.refusal_lines_suppressed.swap(0, Ordering::Relaxed);
        if d.iter().all(|&n| n == 0) && suppressed == 0 {
            continue;
        }
        tracing::info!(
            target: "stagehook::connections",
            open = stats.open.load(Ordering::Relaxed),
            refused = d[0],
            evicted = d[1],
            header_timeouts = d[2],
            idle_timeouts = d[3],
            body_timeouts = d[4],
            errors = d[5],
            accept_errors = d[6],
            body_too_slow = d[7],
            body_bytes_refused = d[8],
            request_lines_suppressed = suppressed,
            "clients in the last minute"
        );
    }
}

/// One connection's service: warp's filter, with the request marked active while it is handled,
/// its body held to `body_timeout`, and an unread body drained before an early answer.
struct Service<S> {
    /// Called through `&mut`, one request at a time: HTTP/1.1 handles a connection's requests
    /// in turn, and the future `call` returns does not borrow it.
    inner: RefCell<S>,
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
}

impl<S> hyper::service::Service<Request<Incoming>> for Service<S>
where
    S: tower_service::Service<Request<Timed>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.shared.begin(&self.conn);
        let limits = self.shared.limits;
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(Peer(self.peer));
        if let Some(local) = self.local {
            parts.extensions.insert(Local(local));
        }
        // A client that asked for `100 Continue` has not sent its body; reading it would ask for
        // it, only to throw it away.
        let expects_continue =
            parts.headers.get("expect").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let declared = super::content_length(&parts.headers);
        let handoff = Arc::new(Mutex::new(Handoff::default()));
        let body = Timed {
            inner: Some(body),
            deadline: tokio::time::Instant::now() + limits.body_timeout,
            sleep: None,
            cut: None,
            handoff: handoff.clone(),
            shared: self.shared.clone(),
            conn: self.conn.clone(),
            started_ms: self.shared.now_ms(),
            declared,
            received: 0,
            charged: 0,
            key: None,
        };
        let handled = self.inner.borrow_mut().call(Request::from_parts(parts, body));
        let (shared, conn) = (self.shared.clone(), self.conn.clone());
        Box::pin(async move {
            let Ok(mut res) = handled.await;
            // warp has dropped the request by now: a body it did not read to its end is here.
            let Handoff { rest, cut } = std::mem::take(&mut *handoff.lock());
            if let Some(rest) = rest {
                // Near the cap, a connection draining a refused body would hold its place for
                // up to the drain timeout, and no eviction could take it: a flood refused early
                // (429, 401) would fill the cap with drains and lock genuine events out.
                let worth_it =
                    !expects_continue && declared.is_none_or(|n| n <= limits.drain_bytes) && !shared.crowded();
                if !worth_it || !drain(rest, limits.drain_bytes, limits.drain_timeout).await {
                    res.headers_mut().insert("connection", HeaderValue::from_static("close"));
                }
            }
            if let Some(cut) = cut {
                // The rest of a body that was cut is not read: the connection goes with it.
                let counter = match cut {
                    BodyCut::Timeout => &shared.stats.body_timeouts,
                    BodyCut::TooSlow | BodyCut::Evicted => &shared.stats.body_too_slow,
                    BodyCut::NoRoom => &shared.stats.body_bytes_refused,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                res.headers_mut().insert("connection", HeaderValue::from_static("close"));
            }
            if res.extensions().get::<LongLived>().is_some() {
                // Still handling its request while the body streams; closed when it ends.
                res.headers_mut().insert("connection", HeaderValue::from_static("close"));
            } else {
                shared.end(&conn);
            }
            Ok(res)
        })
    }
}

/// Reads and discards the rest of a body; true when it ended within the bounds.
async fn drain(mut body: Incoming, max_bytes: u64, within: Duration) -> bool {
    use http_body_util::BodyExt;
    let read = async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > max_bytes {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(within, read).await.unwrap_or(false)
}

/// What a request's body leaves the service when it is dropped: the rest of a body the handler
/// did not read (to drain), or why the server cut it.
#[derive(Default)]
struct Handoff {
    rest: Option<Incoming>,
    cut: Option<BodyCut>,
}

/// A request body held to `body_timeout` and, once it has had to wait for bytes, to the minimum
/// rate, the connection cap's eviction and the budget of bytes in flight.
///
/// A body that arrives whole at once (most webhooks: a few KB in the segment of the head) costs
/// nothing more than a field or two. One that has to wait enters `Shared::bodies` and charges
/// the budget with what the handler holds of it: its bytes so far, or the room a reader reserves
/// for a declared length ([`super::RESERVE_AHEAD`]), whichever is more, and [`BODY_OVERHEAD`];
/// the charge grows with its bytes and is given back when the body ends or is dropped.
struct Timed {
    inner: Option<Incoming>,
    deadline: tokio::time::Instant,
    /// Made only when the body is not all there at once, which small bodies usually are; it
    /// stands at the earlier of `deadline` and the time the body falls behind the minimum rate.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    cut: Option<BodyCut>,
    handoff: Arc<Mutex<Handoff>>,
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    /// When the head ended, ms since `Shared::epoch`.
    started_ms: u64,
    declared: Option<u64>,
    received: u64,
    charged: u64,
    /// The body's entry in `Shared::bodies`, once it has had to wait.
    key: Option<(u64, u64)>,
}

impl Timed {
    /// When, in ms since `Shared::epoch`, the body falls behind the minimum rate counted from
    /// the end of its head, with the bytes it has: a millisecond for every `min_body_rate / 1000`
    /// bytes. From then on it may be evicted at the cap. With no minimum, the bodies are still
    /// ordered and evicted as if it were a byte a second.
    fn behind_from(&self) -> u64 {
        let rate = self.shared.limits.min_body_rate.max(1);
        let credit_ms = self.received.saturating_mul(1000) / rate;
        self.started_ms.saturating_add(credit_ms)
    }

    /// When the body is cut for falling behind the minimum rate: [`Timed::behind_from`] and the
    /// grace.
    fn behind_at(&self) -> u64 {
        self.behind_from().saturating_add(self.shared.limits.body_rate_grace.as_millis() as u64)
    }

    /// What the handler holds of this body, as charged to the budget: its buffer, and the
    /// request's own state ([`BODY_OVERHEAD`]); never more than the whole budget, so that a body
    /// of `limits.max_body_bytes` fits when it is alone.
    fn holding(&self) -> u64 {
        let reserved = self.declared.unwrap_or(0).min(super::RESERVE_AHEAD);
        (self.received.max(reserved) + BODY_OVERHEAD).min(self.shared.limits.max_inflight_body_bytes)
    }

    /// Brings the charge and the entry in `Shared::bodies` up to date with the bytes received;
    /// enters the body there the first time. Fails when the budget has no room.
    fn track(&mut self) -> Result<(), BodyCut> {
        let more = self.holding().saturating_sub(self.charged);
        if more > 0 {
            if !self.shared.charge(more) {
                return Err(BodyCut::NoRoom);
            }
            self.charged += more;
        }
        let key = (self.behind_from(), self.conn.id);
        if self.key == Some(key) {
            return Ok(());
        }
        let mut bodies = self.shared.bodies.lock();
        match self.key {
            Some(old) => {
                // Gone when the connection was evicted: then it stays out.
                if let Some(entry) = bodies.remove(&old) {
                    bodies.insert(key, entry);
                }
            }
            None => {
                if self.conn.phase.compare_exchange(ACTIVE, BODY, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    bodies.insert(key, Arriving { conn: self.conn.clone() });
                }
            }
        }
        self.key = Some(key);
        Ok(())
    }

    /// Leaves `Shared::bodies` and gives the charge back; the connection is handling its
    /// request again, unless it was evicted.
    fn untrack(&mut self) -> bool {
        if self.charged > 0 {
            self.shared.uncharge(self.charged);
            self.charged = 0;
        }
        let Some(key) = self.key.take() else { return true };
        self.shared.bodies.lock().remove(&key);
        match self.conn.phase.compare_exchange(BODY, ACTIVE, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(phase) => phase != EVICTED,
        }
    }

    fn fail(&mut self, cut: BodyCut) -> Poll<Option<Result<Frame<Bytes>, BodyFailure>>> {
        self.cut = Some(cut);
        self.untrack();
        Poll::Ready(Some(Err(Box::new(cut))))
    }
}

/// What a [`Timed`] body fails with: a [`BodyCut`], or hyper's own error.
type BodyFailure = Box<dyn std::error::Error + Send + Sync>;

impl Body for Timed {
    type Data = Bytes;
    type Error = BodyFailure;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.cut.is_some() {
            return Poll::Ready(None);
        }
        if this.key.is_some() && this.conn.phase.load(Ordering::Acquire) == EVICTED {
            return this.fail(BodyCut::Evicted);
        }
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.inner = None;
                if !this.untrack() {
                    // Evicted as its last bytes came: the connection is closing.
                    return this.fail(BodyCut::Evicted);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.key.is_some() {
                        if let Err(cut) = this.track() {
                            return this.fail(cut);
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => {
                if let Err(cut) = this.track() {
                    return this.fail(cut);
                }
                this.conn.body_waker.register(cx.waker());
                if this.conn.phase.load(Ordering::Acquire) == EVICTED {
                    return this.fail(BodyCut::Evicted);
                }
                let rate_on = this.shared.limits.min_body_rate > 0;
                let epoch = this.shared.epoch;
                let behind = tokio::time::Instant::from_std(epoch + Duration::from_millis(this.behind_at()));
                let wake_at = if rate_on { this.deadline.min(behind) } else { this.deadline };
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake_at)));
                while sleep.as_mut().poll(cx).is_ready() {
                    // The deadline it stood at has passed; the rate's may have moved since, as
                    // bytes arrived.
                    let now = tokio::time::Instant::now();
                    if now >= this.deadline {
                        return this.fail(BodyCut::Timeout);
                    }
                    if rate_on && now >= behind {
                        return this.fail(BodyCut::TooSlow);
                    }
                    sleep.as_mut().reset(wake_at);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.cut.is_some() || self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.untrack();
        let mut handoff = self.handoff.lock();
        handoff.cut = self.cut;
        // A body that was cut belongs to a client too slow to drain for.
        if let Some(inner) = self.inner.take().filter(|b| self.cut.is_none() && !b.is_end_stream()) {
            handoff.rest = Some(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_lines_are_budgeted_and_the_rest_counted() {
        let stats = ConnStats::default();
        for _ in 0..REFUSAL_LINES_PER_MINUTE {
            assert!(stats.may_log(404));
        }
        assert!(!stats.may_log(429));
        assert!(!stats.may_log(413));
        // Accepted requests are always logged: no client can cause them unsigned.
        assert!(stats.may_log(200));
        assert_eq!(stats.refusal_lines_suppressed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn max_connections_is_kept_below_the_open_file_limit() {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes only the struct passed to it.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let hard = lim.rlim_max as usize;
        if hard > 1 << 24 {
            return; // Unlimited for practical purposes: nothing to fit.
        }
        assert_eq!(fit_to_fd_limit(hard * 2, 8), hard - RESERVED_FDS - 8);
        assert_eq!(fit_to_fd_limit(100, 8), 100.min(hard - RESERVED_FDS - 8));
    }
}
