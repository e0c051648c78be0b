//! The developers' listeners (`stagehook listen`), as the server knows them:
//!
//! - `POST /staging/webhooks/events/<id>/listeners`: a listener's report of what the app on its
//!   machine answered to one event. `GET /staging/webhooks/events/<id>` shows the latest report
//!   of each listener name ([`Listeners::reports_json`]).
//! - `GET /staging/webhooks/listeners`: the listeners whose stream is open now, each registered
//!   by its stream's `listener` parameters ([`Listeners::connect`], `stream.rs`).
//!
//! Both are kept in memory only and lost at a restart: a report says what one developer's app
//! did, which the next delivery says again, and the store's writer is kept for what must survive.
//! Memory is bounded: reports for at most [`MAX_EVENTS`] events (the least recently reported
//! forgotten first), at most [`MAX_NAMES`] listener names per event, each report's `body` cut
//! to [`MAX_BODY_BYTES`]; active listeners are bounded by the stream cap (`stream::MAX_STREAMS`).
//! For the admin and read tokens (`auth.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use ulid::Ulid;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::errors::ApiError;
use super::{ok_json, read_body, reader, AppState, Client};

/// Events whose reports are kept; the least recently reported is forgotten first.
pub const MAX_EVENTS: usize = 10_000;
/// Listener names kept per event; a new name takes the place of the one that reported last
/// longest ago.
pub const MAX_NAMES: usize = 16;
/// The bytes of a report's `body` (and of its `error`) kept; the rest is cut at a character.
pub const MAX_BODY_BYTES: usize = 2048;
/// The longest report request read: a body far past what is kept is a client's mistake.
const REPORT_LIMIT: u64 = 64 * 1024;
/// Bounds of a listener's name, its host and its filters' text, in characters.
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_HOST_CHARS: usize = 255;
pub const MAX_FILTERS_CHARS: usize = 512;

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let base = warp::path("staging").and(warp::path("webhooks"));
    let report = base
        .and(warp::path("events"))
        .and(warp::path::param::<String>())
        .and(warp::path("listeners"))
        .and(warp::path::end())
        .and(warp::post())
        .and(reader(state.clone()))
        .and(warp::body::stream())
        .then(|id: String, s: Arc<AppState>, body| async move {
            match read_body(body, REPORT_LIMIT, None).await {
                Ok(bytes) => report(&s, &id, &bytes).unwrap_or_else(ApiError::into_response),
                Err(e) => ApiError::from(e).into_response(),
            }
        });
    let active = base
        .and(warp::path("listeners"))
        .and(warp::path::end())
        .and(warp::get())
        .and(reader(state))
        .map(|s: Arc<AppState>| ok_json(&json!({"listeners": s.listeners.active_json()})));
    report.or(active).unify()
}

/// One report as a listener sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    name: String,
    host: String,
    status: Option<u16>,
    duration_ms: u64,
    body: String,
    error: Option<String>,
}

fn report(s: &AppState, id: &str, body: &[u8]) -> Result<Response, ApiError> {
    let ulid = Ulid::from_string(id).map_err(|_| ApiError::not_found(format!("no event `{id}`")))?;
    let r: Report = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_payload(format!(
            "expected {{\"name\", \"host\", \"status\", \"duration_ms\", \"body\", \"error\"}}: {e}"
        ))
    })?;
    let name = label("name", &r.name, MAX_NAME_CHARS)?;
    let host = label("host", &r.host, MAX_HOST_CHARS)?;
    // A point read of one record, as the event detail does on the request's thread.
    if s.store.get_record(ulid)?.is_none() {
        return Err(ApiError::not_found(format!("no event `{id}`")));
    }
    let kept = Delivered {
        host,
        status: r.status,
        duration_ms: r.duration_ms,
        body: cut(r.body),
        error: r.error.map(cut),
        at_ms: s.clock.now_ms(),
    };
    s.listeners.record(ulid, name, kept);
    Ok(ok_json(&json!({"ok": true})))
}

/// A name, a host or a filter's text: 1 to `max` characters, no control character (they go
/// into log lines and the dashboard).
pub fn label(what: &str, text: &str, max: usize) -> Result<String, ApiError> {
    let n = text.chars().count();
    if n == 0 || n > max {
        return Err(ApiError::invalid_payload(format!("{what} must be 1 to {max} characters, not {n}")));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::invalid_payload(format!("{what} must not hold control characters")));
    }
    Ok(text.to_string())
}

/// `text` cut to at most [`MAX_BODY_BYTES`], at a character boundary.
fn cut(mut text: String) -> String {
    let end = crate::text::cut(&text, MAX_BODY_BYTES).len();
    text.truncate(end);
    text
}

/// What one listener reported of one event.
#[derive(Debug, Clone)]
struct Delivered {
    host: String,
    status: Option<u16>,
    duration_ms: u64,
    body: String,
    error: Option<String>,
    at_ms: i64,
}

/// The reports of one event, by listener name, and when it was last reported (its place in
/// the eviction order).
struct EventReports {
    by_name: BTreeMap<String, Delivered>,
    tick: u64,
}

/// A listener whose stream is open.
#[derive(Debug, Clone)]
struct Active {
    name: String,
    host: Option<String>,
    filters: Option<String>,
    client: String,
    since_ms: i64,
    /// The last event it reported: id, status, when.
    last: Option<(Ulid, Option<u16>, i64)>,
}

#[derive(Default)]
struct Inner {
    events: HashMap<Ulid, EventReports>,
    /// The events by their last report's tick: the first is the least recently reported.
    order: BTreeMap<u64, Ulid>,
    tick: u64,
    active: BTreeMap<u64, Active>,
    next_active: u64,
}

/// The listeners' reports and the active listeners. A `parking_lot::Mutex`: every operation is
/// a few map changes with nothing awaited while it is held.
#[derive(Default)]
pub struct Listeners {
    inner: Mutex<Inner>,
}

/// Who opened a stream as a listener: its stream's `listener`, `listener_host` and
/// `listener_filters` parameters.
pub struct Listener {
    pub name: String,
    pub host: Option<String>,
    pub filters: Option<String>,
}

/// An active listener's place, given back (and its disconnection logged) when its stream ends.
pub struct Connected {
    listeners: Arc<Listeners>,
    key: u64,
}

impl Drop for Connected {
    fn drop(&mut self) {
        let gone = self.listeners.inner.lock().active.remove(&self.key);
        if let Some(a) = gone {
            tracing::info!(
                target: "stagehook::listeners",
                listener = %a.name,
                host = a.host.as_deref(),
                client = %a.client,
                filters = a.filters.as_deref(),
                "listener disconnected"
            );
        }
    }
}

impl Listeners {
    fn record(&self, id: Ulid, name: String, d: Delivered) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner.tick += 1;
        let tick = inner.tick;
        for a in inner.active.values_mut().filter(|a| a.name == name) {
            a.last = Some((id, d.status, d.at_ms));
        }
        let reports = inner.events.entry(id).or_insert_with(|| EventReports { by_name: BTreeMap::new(), tick });
        inner.order.remove(&reports.tick);
        reports.tick = tick;
        inner.order.insert(tick, id);
        if !reports.by_name.contains_key(&name) && reports.by_name.len() >= MAX_NAMES {
            let oldest = reports.by_name.iter().min_by_key(|(_, d)| d.at_ms).map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                reports.by_name.remove(&oldest);
            }
        }
        reports.by_name.insert(name, d);
        while inner.events.len() > MAX_EVENTS {
            let Some((_, evicted)) = inner.order.pop_first() else { break };
            inner.events.remove(&evicted);
        }
    }

    /// The latest report of each listener name for `id`, for the event detail.
    pub fn reports_json(&self, id: Ulid) -> Value {
        let inner = self.inner.lock();
        let reports = inner.events.get(&id).map(|r| {
            r.by_name
                .iter()
                .map(|(name, d)| {
                    json!({
                        "name": name,
                        "host": d.host,
                        "status": d.status,
                        "duration_ms": d.duration_ms,
                        "body": d.body,
                        "error": d.error,
                        "at_ms": d.at_ms,
                    })
                })
                .collect::<Vec<_>>()
        });
        Value::Array(reports.unwrap_or_default())
    }

    /// Registers a listener whose stream opens now, logging its connection; it stays listed
    /// until the returned place is dropped.
    pub fn connect(self: &Arc<Self>, l: Listener, client: &Client, now_ms: i64) -> Connected {
        tracing::info!(
            target: "stagehook::listeners",
            listener = %l.name,
            host = l.host.as_deref(),
            client = %client,
            filters = l.filters.as_deref(),
            "listener connected"
        );
        let mut inner = self.inner.lock();
        inner.next_active += 1;
        let key = inner.next_active;
        let active = Active {
            name: l.name,
            host: l.host,
            filters: l.filters,
            client: client.to_string(),
            since_ms: now_ms,
            last: None,
        };
        inner.active.insert(key, active);
        Connected { listeners: self.clone(), key }
    }

    /// How many listeners have a stream open now.
    pub fn active_count(&self) -> usize {
        self.inner.lock().active.len()
    }

    fn active_json(&self) -> Vec<Value> {
        let inner = self.inner.lock();
        inner
            .active
            .values()
            .map(|a| {
                json!({
                    "name": a.name,
                    "host": a.host,
                    "filters": a.filters,
                    "client": a.client,
                    "since_ms": a.since_ms,
                    "last_event": a.last.map(|(id, status, at_ms)| json!({"id": id.to_string(), "status": status, "at_ms": at_ms})),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(at_ms: i64) -> Delivered {
        Delivered { host: "h".into(), status: Some(200), duration_ms: 1, body: String::new(), error: None, at_ms }
    }

    #[test]
    fn reports_are_bounded_per_event_and_in_events() {
        let l = Listeners::default();
        let id = Ulid::new();
        for i in 0..(MAX_NAMES as i64 + 4) {
            l.record(id, format!("n{i}"), delivered(i));
        }
        let names: Vec<String> =
            l.reports_json(id).as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(names.len(), MAX_NAMES);
        assert!(!names.contains(&"n0".to_string()) && names.contains(&"n19".to_string()), "{names:?}");
        let first = Ulid::new();
        l.record(first, "a".into(), delivered(0));
        for _ in 0..MAX_EVENTS {
            l.record(Ulid::new(), "a".into(), delivered(0));
        }
        assert_eq!(l.inner.lock().events.len(), MAX_EVENTS);
        assert_eq!(l.reports_json(first), json!([]), "the least recently reported goes first");
    }

    #[test]
    fn a_body_is_cut_at_a_character() {
        assert_eq!(cut("é".repeat(2000)).len(), MAX_BODY_BYTES);
        assert_eq!(cut(format!("a{}", "é".repeat(2000))).len(), MAX_BODY_BYTES - 1);
        assert_eq!(cut("short".into()), "short");
    }
}
