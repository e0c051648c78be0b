//! One connection: the loop that holds it to `header_timeout` and `idle_timeout` between
//! requests and closes it when evicted or at shutdown, and the hyper service that hands each
//! request to warp's filter with its body timed and an unread body drained. Separate from the
//! accept loop because everything here is per connection.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::watch;
use warp::http::{HeaderValue, Request};
use warp::reply::Response;
use warp::Filter;

use super::body::{drain, BodyCut, Handoff, Timed};
use super::bookkeeping::{Conn, Shared, WAITING};
use super::{Local, Peer};

/// How long a connection evicted while its body arrives has to write its `408` before it is
/// closed all the same: the answer is small, and a client that does not read it loses nothing.
const EVICTED_ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Marks a response whose body streams for as long as its client listens (the event stream):
/// its connection counts as handling a request until the body ends, so neither `idle_timeout`
/// nor eviction cuts it, and it closes then. Such routes bound their own number.
#[derive(Debug, Clone, Copy)]
pub struct LongLived;

pub(super) async fn connection<F>(
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
        let declared = crate::http::content_length(&parts.headers);
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

impl Shared {
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
