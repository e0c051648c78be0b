//! `GET /staging/webhooks/events/stream`: the store's feed as Server-Sent Events, for the
//! dashboard and `stagehook tail`. Each new event is an `event` message and each change of
//! status a `status` message, with the event list's filters (`provider`, `status`, `type`). Each
//! message's id is `<boot>.<seq>` (`store/feed.rs`): a client that reconnects with
//! `Last-Event-ID` (or `?last_event_id=`) gets what it missed, or a `reset` message when the
//! feed no longer holds it (then it reloads what it shows).
//!
//! A stream opened with `listener=<name>` (and optionally `listener_host`, `listener_filters`)
//! is a listener's (`stagehook listen`): it is listed by `GET /staging/webhooks/listeners` while
//! it stays open (`listeners.rs`).
//!
//! For the admin and read tokens (`server.read_tokens`). At most [`MAX_STREAMS`] are open at once (then `503 too_many_streams`), and each
//! sends a comment every [`KEEP_ALIVE`] so that proxies and the client see it alive.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::sse::Event as Message;
use warp::{Filter, Rejection, Reply};

use super::errors::ApiError;
use super::events::event_filter;
use super::listeners::{label, Connected, Listener, MAX_FILTERS_CHARS, MAX_HOST_CHARS, MAX_NAME_CHARS};
use super::{reader, AppState};
use crate::store::feed::{Change, Missed};
use crate::store::EventFilter;

/// The most streams open at once.
pub const MAX_STREAMS: usize = 32;
/// How often an idle stream sends a comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path("staging")
        .and(warp::path("webhooks"))
        .and(warp::path("events"))
        .and(warp::path("stream"))
        .and(warp::path::end())
        .and(warp::get())
        .and(reader(state))
        .and(warp::query::<BTreeMap<String, String>>().or(warp::any().map(BTreeMap::new)).unify())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(super::server::peer())
        .and(warp::header::headers_cloned())
        .map(|s: Arc<AppState>, q: BTreeMap<String, String>, last: Option<String>, peer, headers: HeaderMap| {
            let last = last.or_else(|| q.get("last_event_id").cloned());
            let client = super::client_ip(peer, &headers, &s.trusted_proxies);
            open(s, &q, last, &client).unwrap_or_else(ApiError::into_response)
        })
}

/// One open stream's place in the count, given back when the stream is dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The listener a stream's query names (`listener`, `listener_host`, `listener_filters`), if
/// any; each bounded, `400 invalid_payload` past its bound.
fn listener(q: &BTreeMap<String, String>) -> Result<Option<Listener>, ApiError> {
    let Some(name) = q.get("listener") else { return Ok(None) };
    let name = label("listener", name, MAX_NAME_CHARS)?;
    let host = q.get("listener_host").map(|h| label("listener_host", h, MAX_HOST_CHARS)).transpose()?;
    let filters = q
        .get("listener_filters")
        .filter(|f| !f.is_empty())
        .map(|f| label("listener_filters", f, MAX_FILTERS_CHARS))
        .transpose()?;
    Ok(Some(Listener { name, host, filters }))
}

fn open(
    s: Arc<AppState>,
    q: &BTreeMap<String, String>,
    last: Option<String>,
    client: &super::Client,
) -> Result<Response, ApiError> {
    let filter = event_filter(q)?;
    let listener = listener(q)?;
    if s.streams.fetch_add(1, Ordering::AcqRel) >= MAX_STREAMS {
        s.streams.fetch_sub(1, Ordering::AcqRel);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!("{MAX_STREAMS} event streams are open already; close one or retry later"),
        )
        .with_header("retry-after", 5));
    }
    let slot = Slot(s.streams.clone());
    let feed = s.store.feed().clone();
    // Subscribed before the place is read: nothing published in between is lost.
    let wake = feed.subscribe();
    let (after, reset) = match last.as_deref().map(|id| feed.resume_from(id)) {
        Some(Ok(seq)) => (seq, false),
        Some(Err(Missed)) => (feed.last(), true),
        None => (feed.last(), false),
    };
    let stop = s.stopping.subscribe();
    let listener = listener.map(|l| s.listeners.connect(l, client, s.clock.now_ms()));
    let reader =
        Reader { feed, wake, stop, after, reset, filter, queue: VecDeque::new(), _slot: slot, _listener: listener };
    let messages = futures_util::stream::unfold(reader, |mut r| async move {
        let message = r.next().await?;
        Some((Ok::<_, Infallible>(message), r))
    });
    let mut res = warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(messages)).into_response();
    res.extensions_mut().insert(super::server::LongLived);
    Ok(res)
}

struct Reader {
    feed: Arc<crate::store::feed::Feed>,
    wake: tokio::sync::watch::Receiver<u64>,
    /// Set when the server stops: the stream ends, so shutdown does not wait for it.
    stop: tokio::sync::watch::Receiver<bool>,
    /// The last change this reader has been given (or skipped).
    after: u64,
    /// A `reset` is owed: the reader missed changes.
    reset: bool,
    filter: EventFilter,
    queue: VecDeque<Change>,
    _slot: Slot,
    /// The listener this stream registered, listed until the stream ends.
    _listener: Option<Connected>,
}

impl Reader {
    /// The next message, waiting for the feed when there is none; `None` when the server stops.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if std::mem::take(&mut self.reset) {
                self.queue.clear();
                let id = format!("{}.{}", self.feed.boot(), self.after);
                return Some(Message::default().event("reset").id(id).data("{}"));
            }
            if let Some(c) = self.queue.pop_front() {
                if matches(&self.filter, &c) {
                    return Some(message(self.feed.boot(), &c));
                }
                continue;
            }
            match self.feed.since(self.after) {
                Ok(changes) if changes.is_empty() => {
                    tokio::select! {
                        changed = self.wake.changed() => changed.ok()?,
                        _ = self.stop.wait_for(|stopping| *stopping) => return None,
                    }
                }
                Ok(changes) => {
                    self.after = changes.last().map_or(self.after, |c| c.seq);
                    self.queue.extend(changes);
                }
                Err(Missed) => {
                    self.after = self.feed.last();
                    self.reset = true;
                }
            }
        }
    }
}

fn matches(f: &EventFilter, c: &Change) -> bool {
    f.provider.as_ref().is_none_or(|p| *p == c.provider)
        && f.status.is_none_or(|s| s.as_str() == c.status)
        && f.event_type.as_ref().is_none_or(|t| *t == c.event_type)
}

fn message(boot: &str, c: &Change) -> Message {
    let data = json!({
        "id": c.id.to_string(),
        "provider": c.provider,
        "event_id": c.event_id,
        "type": c.event_type,
        "status": c.status,
        "attempts": c.attempts,
        "last_error": c.last_error,
        "at_ms": c.at_ms,
    });
    Message::default().event(c.kind).id(format!("{boot}.{}", c.seq)).data(data.to_string())
}
