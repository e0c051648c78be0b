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
//!
//! This file holds the numbers and the accept loop; what connections share (eviction, the
//! budget of body bytes) is in `bookkeeping.rs`, a request body's deadlines in `body.rs`, and
//! one connection's deadlines and service in `connection.rs`.

mod body;
mod bookkeeping;
mod connection;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use warp::reply::Response;
use warp::Filter;

use crate::config::ServerConfig;
use bookkeeping::Shared;
use connection::connection;

pub use body::BodyCut;
pub use connection::LongLived;

/// A waiting connection is evicted to make room only after waiting this long, so a client that
/// has just connected and is about to send its request is never the one displaced.
pub const EVICT_AFTER: Duration = Duration::from_secs(1);

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

/// File descriptors kept free of connections for the store, its log and deliveries.
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
        // Small writes go out at once: an event stream's message, written while the previous one
        // is not yet acknowledged, would otherwise wait for the peer's delayed ACK (Nagle),
        // 40 ms or more on Linux, before a dashboard or a listener hears of the event.
        let _ = stream.set_nodelay(true);
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
