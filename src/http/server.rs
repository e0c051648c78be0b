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
//! - `max_connections`: at the cap, a new connection takes the place of the connection that has
//!   waited longest for a request, if that wait is [`EVICT_AFTER`] or more (a slow or idle
//!   client, never one whose request is being handled); otherwise it is refused at once with a
//!   `503`, never queued;
//! - `max_header_bytes`: hyper answers `431` to a larger request head.
//!
//! An early refusal (a handler that answers without reading the body) drains the unread body,
//! bounded in bytes and time, before the answer is sent, so a client that writes its whole body
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

/// The error a body yields when `body_timeout` passes before it is complete.
#[derive(Debug)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the body did not arrive within the body timeout")
    }
}

impl std::error::Error for BodyTimeout {}

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

/// A connection is waiting for a request (since `since`), or handling one.
const WAITING: u8 = 0;
const ACTIVE: u8 = 1;
const EVICTED: u8 = 2;

struct Conn {
    id: u64,
    phase: AtomicU8,
    /// When the current wait began, in ms since `Shared::epoch`.
    since_ms: AtomicU64,
    /// Whether a request has been handled (then the wait is bounded by `idle_timeout`).
    served: AtomicU8,
    evict: Notify,
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

    /// Closes the connection that has waited longest, if it has waited [`EVICT_AFTER`].
    fn evict_one(&self) -> bool {
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
        all_closed: Notify::new(),
    });
    // 0: serving; 1: finish open requests, then close; 2: close now.
    let (stop_tx, stop_rx) = watch::channel(0u8);
    let summary = tokio::spawn(summarise(shared.stats.clone()));
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
    builder.max_buf_size(shared.limits.max_header_bytes);
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
        let leftover = Arc::new(Mutex::new(None));
        let body = Timed {
            inner: Some(body),
            deadline: tokio::time::Instant::now() + limits.body_timeout,
            sleep: None,
            timed_out: false,
            leftover: leftover.clone(),
        };
        let handled = self.inner.borrow_mut().call(Request::from_parts(parts, body));
        let (shared, conn) = (self.shared.clone(), self.conn.clone());
        Box::pin(async move {
            let Ok(mut res) = handled.await;
            // warp has dropped the request by now: a body it did not read to its end is here.
            let rest = leftover.lock().take();
            if let Some(rest) = rest {
                let worth_it = !expects_continue && declared.is_none_or(|n| n <= limits.drain_bytes);
                if !worth_it || !drain(rest, limits.drain_bytes, limits.drain_timeout).await {
                    res.headers_mut().insert("connection", HeaderValue::from_static("close"));
                }
            }
            if res.status() == warp::http::StatusCode::REQUEST_TIMEOUT {
                shared.stats.body_timeouts.fetch_add(1, Ordering::Relaxed);
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

/// A request body held to a deadline. When dropped before its end, it hands what is left to the
/// service, which drains it.
struct Timed {
    inner: Option<Incoming>,
    deadline: tokio::time::Instant,
    /// Made only when the body is not all there at once, which small bodies usually are.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: bool,
    leftover: Arc<Mutex<Option<Incoming>>>,
}

impl Body for Timed {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(None);
        }
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if frame.is_none() {
                    this.inner = None;
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.timed_out = true;
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        // A body that timed out belongs to a client too slow to drain for.
        if let Some(inner) = self.inner.take().filter(|b| !self.timed_out && !b.is_end_stream()) {
            *self.leftover.lock() = Some(inner);
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
