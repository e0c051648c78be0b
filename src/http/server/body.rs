//! A request's body as the handler reads it: held to `body_timeout`, to `min_body_rate` once it
//! has had to wait, to eviction at the cap and to the budget of bytes in flight; why it was cut
//! (`BodyCut`); and the rest of a body the handler left unread, drained before an early answer.
//! Separate because it is the one part of serving that runs inside the handler's reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use parking_lot::Mutex;

use super::bookkeeping::{Arriving, Conn, Shared, ACTIVE, BODY, EVICTED};

/// What a request whose body is still arriving holds beside its body's buffer, charged to
/// `max_inflight_body_bytes` with it: the handler's state, the parsed head, the body's timer.
/// Measured: 3 000 connections each sending the head and one byte of a 1 000-byte body took
/// 17 KB each more than 3 000 that sent nothing. Without it, a flood of bodies of a byte or two
/// took 30 KB a connection, a full cap's worth of connections, for a budget charge of 1 KB each.
const BODY_OVERHEAD: u64 = 16 * 1024;

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

/// Reads and discards the rest of a body; true when it ended within the bounds.
pub(super) async fn drain(mut body: Incoming, max_bytes: u64, within: Duration) -> bool {
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
pub(super) struct Handoff {
    pub(super) rest: Option<Incoming>,
    pub(super) cut: Option<BodyCut>,
}

/// A request body held to `body_timeout` and, once it has had to wait for bytes, to the minimum
/// rate, the connection cap's eviction and the budget of bytes in flight.
///
/// A body that arrives whole at once (most webhooks: a few KB in the segment of the head) costs
/// nothing more than a field or two. One that has to wait enters `Shared::bodies` and charges
/// the budget with what the handler holds of it: its bytes so far, or the room a reader reserves
/// for a declared length ([`crate::http::RESERVE_AHEAD`]), whichever is more, and
/// [`BODY_OVERHEAD`]; the charge grows with its bytes and is given back when the body ends or is
/// dropped.
pub(super) struct Timed {
    pub(super) inner: Option<Incoming>,
    pub(super) deadline: tokio::time::Instant,
    /// Made only when the body is not all there at once, which small bodies usually are; it
    /// stands at the earlier of `deadline` and the time the body falls behind the minimum rate.
    pub(super) sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    pub(super) cut: Option<BodyCut>,
    pub(super) handoff: Arc<Mutex<Handoff>>,
    pub(super) shared: Arc<Shared>,
    pub(super) conn: Arc<Conn>,
    /// When the head ended, ms since `Shared::epoch`.
    pub(super) started_ms: u64,
    pub(super) declared: Option<u64>,
    pub(super) received: u64,
    pub(super) charged: u64,
    /// The body's entry in `Shared::bodies`, once it has had to wait.
    pub(super) key: Option<(u64, u64)>,
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
        let reserved = self.declared.unwrap_or(0).min(crate::http::RESERVE_AHEAD);
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
