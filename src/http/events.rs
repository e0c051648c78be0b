//! The event API and the delivery controls:
//!
//! - `GET  /staging/webhooks/events?provider=&status=&type=&limit=&cursor=`: newest first.
//! - `GET  /staging/webhooks/events/export?provider=&status=&type=&since=&until=`: every match,
//!   oldest first, as NDJSON (`crate::export`), streamed.
//! - `GET  /staging/webhooks/events/<id>`: one event with its raw payload, attempt history and
//!   its listeners' latest reports (`listeners.rs`).
//! - `POST /staging/webhooks/events/<id>/replay`: a new attempt series for one event; with an
//!   edit in its body, a new event, the edited copy (`edit.rs`).
//! - `POST /staging/webhooks/replay`: a new series for every event a filter matches.
//! - `GET  /staging/webhooks/recovery/stats`: breakers, retry settings, queue, dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use ulid::Ulid;
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::errors::ApiError;
use super::{admin, edit, ok_json, read_body, reader, AppState};
use crate::store::{
    Attempt, AttemptAnswer, ChaosMark, Damage, Event, EventFilter, SlowerThan, Status, StoreError, StoredEvent,
    STORAGE_CORRUPT,
};

/// Most events one page returns, and most records one page request reads.
const MAX_PAGE: usize = 500;
const SCAN_LIMIT: usize = 20_000;
/// Most events one bulk replay re-queues.
const MAX_REPLAY: usize = 10_000;

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let base = warp::path("staging").and(warp::path("webhooks"));
    let query = || warp::query::<BTreeMap<String, String>>().or(warp::any().map(BTreeMap::new)).unify();
    let list = base
        .and(warp::path("events"))
        .and(warp::path::end())
        .and(warp::get())
        .and(reader(state.clone()))
        .and(query())
        .map(|s: Arc<AppState>, q: BTreeMap<String, String>| list(&s, &q).unwrap_or_else(ApiError::into_response));
    // Before `one`, whose `{id}` would take `export` for an id.
    let export = base
        .and(warp::path("events"))
        .and(warp::path("export"))
        .and(warp::path::end())
        .and(warp::get())
        .and(reader(state.clone()))
        .and(query())
        .then(|s: Arc<AppState>, q: BTreeMap<String, String>| async move {
            export(s, &q).await.unwrap_or_else(ApiError::into_response)
        });
    let one = base
        .and(warp::path("events"))
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(reader(state.clone()))
        .map(|id: String, s: Arc<AppState>| event(&s, &id).unwrap_or_else(ApiError::into_response));
    let replay_one = base
        .and(warp::path("events"))
        .and(warp::path::param::<String>())
        .and(warp::path("replay"))
        .and(warp::path::end())
        .and(warp::post())
        .and(admin(state.clone()))
        .and(super::server::peer())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(|id: String, s: Arc<AppState>, peer, headers: HeaderMap, body| async move {
            let limit = edit::request_limit(s.config.limits.max_body_bytes);
            let replayed = match read_body(body, limit, None).await {
                Ok(bytes) => replay_one(&s, &id, &bytes, peer, &headers).await,
                Err(e) => Err(ApiError::from(e)),
            };
            replayed.unwrap_or_else(ApiError::into_response)
        });
    let curl = base
        .and(warp::path("events"))
        .and(warp::path::param::<String>())
        .and(warp::path("curl"))
        .and(warp::path::end())
        .and(warp::get())
        .and(admin(state.clone()))
        .map(|id: String, s: Arc<AppState>| curl(&s, &id).unwrap_or_else(ApiError::into_response));
    let replay_many = base
        .and(warp::path("replay"))
        .and(warp::path::end())
        .and(warp::post())
        .and(admin(state.clone()))
        .and(warp::body::stream())
        .then(|s: Arc<AppState>, body| async move {
            match read_body(body, 64 * 1024, None).await {
                Ok(bytes) => replay_many(&s, &bytes).await.unwrap_or_else(ApiError::into_response),
                Err(e) => ApiError::from(e).into_response(),
            }
        });
    let recovery = base
        .and(warp::path("recovery"))
        .and(warp::path("stats"))
        .and(warp::path::end())
        .and(warp::get())
        .and(admin(state.clone()))
        .map(|s: Arc<AppState>| recovery(&s));
    list.or(export)
        .unify()
        .or(one)
        .unify()
        .or(replay_one)
        .unify()
        .or(curl)
        .unify()
        .or(replay_many)
        .unify()
        .or(recovery)
        .unify()
}

/// A filter value that does not parse: `400 invalid_payload`, with the parser's words.
fn bad_filter(e: crate::filter::FilterError) -> ApiError {
    ApiError::invalid_payload(e.0)
}

/// The event list's filters from its query (`provider`, `status`, `type`, `source`, `since`,
/// `until`), as every route that takes them reads them.
pub(super) fn event_filter(q: &BTreeMap<String, String>) -> Result<EventFilter, ApiError> {
    crate::filter::from_query(q).map_err(bad_filter)
}

fn list(s: &AppState, q: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_payload("limit must be a whole number"))?
            .clamp(1, MAX_PAGE),
        None => 50,
    };
    let cursor = match q.get("cursor") {
        Some(c) => Some(Ulid::from_string(c).map_err(|_| ApiError::invalid_payload("cursor is not an event id"))?),
        None => None,
    };
    let filter = event_filter(q)?;
    if let Some(after) = q.get("after") {
        if let Some(key) = ["cursor", "q"].into_iter().find(|k| q.contains_key(*k)) {
            return Err(ApiError::invalid_payload(format!(
                "`after` pages in arrival order and `{key}` newest first: give one of them"
            )));
        }
        let after = Ulid::from_string(after)
            .map_err(|_| ApiError::invalid_payload(format!("after: `{after}` is not an event id (a ULID)")))?;
        return after_page(s, &filter, after, limit);
    }
    if let Some(q) = q.get("q").map(|q| q.trim()).filter(|q| !q.is_empty()) {
        return Ok(ok_json(&json!({"events": search(s, &filter, q)?, "next_cursor": null})));
    }
    let page = s.store.list_events(&filter, cursor, limit, SCAN_LIMIT)?;
    let events = summaries(s, &page)?;
    Ok(ok_json(&json!({"events": events, "next_cursor": page.next_cursor.map(|c| c.to_string())})))
}

/// `?after=<id>`: the events stored after `after`, oldest first (arrival order), and the id to
/// resume after (`next_after`), or null once nothing more is stored: a reader that keeps the
/// last id it took misses nothing and takes nothing twice, however long it was away.
fn after_page(s: &AppState, filter: &EventFilter, after: Ulid, limit: usize) -> Result<Response, ApiError> {
    let page = s.store.events_after(filter, Some(after), limit, SCAN_LIMIT)?;
    let events = summaries(s, &page)?;
    Ok(ok_json(&json!({"events": events, "next_after": page.next_cursor.map(|c| c.to_string())})))
}

/// A page's events as the list shows them, damaged ones in their place.
fn summaries(s: &AppState, page: &crate::store::EventPage) -> Result<Vec<Value>, ApiError> {
    page.events
        .iter()
        .map(|(id, e)| match e {
            Ok(e) => with_next_attempt(s, *id, summary(*id, e)),
            Err(damage) => with_next_attempt(s, *id, damaged_summary(*id, damage)),
        })
        .collect()
}

/// Events whose id or provider event id is exactly `q`: point lookups, never a scan.
fn search(s: &AppState, filter: &EventFilter, q: &str) -> Result<Vec<Value>, ApiError> {
    let mut ids: Vec<Ulid> = Ulid::from_string(q).ok().into_iter().collect();
    for e in &s.endpoints {
        if let Some(id) = s.store.find_by_event_id(e.provider.name(), q)? {
            ids.push(id);
        }
    }
    let mut out = Vec::new();
    for id in ids {
        match s.store.get_record(id) {
            Ok(Some(e)) if filter.matches(&e) => out.push(with_next_attempt(s, id, summary(id, &e))?),
            Ok(_) => {}
            Err(StoreError::Corrupt(what)) if filter.matches_damaged() => {
                out.push(with_next_attempt(s, id, damaged_summary(id, &Damage(what)))?)
            }
            Err(StoreError::Corrupt(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Adds `next_attempt_at_ms`: when the event's queued delivery is due, `null` when none is queued.
/// A time already past means the job waits for room or for its provider's open breaker.
fn with_next_attempt(s: &AppState, id: Ulid, mut v: Value) -> Result<Value, ApiError> {
    v["next_attempt_at_ms"] = json!(s.store.next_attempt_ms(id)?);
    Ok(v)
}

fn summary(id: Ulid, e: &Event) -> Value {
    json!({
        "id": id.to_string(),
        "provider": e.provider,
        "event_id": e.event_id,
        "event_type": e.event_type,
        "received_at_ms": e.received_at_ms,
        "status": e.status.as_str(),
        "attempts": e.attempts,
        "last_error": e.last_error,
        "body_len": e.body_len,
        "parent_id": e.parent.map(|p| p.to_string()),
        "source": e.source.as_str(),
        "damage": [],
    })
}

/// An event whose record does not decode: listed in its place as `failed`, with what is wrong,
/// rather than failing the page. Only its id (and so when it was stored) is known.
fn damaged_summary(id: Ulid, damage: &Damage) -> Value {
    json!({
        "id": id.to_string(),
        "provider": null,
        "event_id": null,
        "event_type": null,
        "received_at_ms": id.timestamp_ms(),
        "status": Status::Failed.as_str(),
        "attempts": null,
        "last_error": format!("{STORAGE_CORRUPT}: {damage}"),
        "body_len": null,
        "parent_id": null,
        "source": null,
        "damage": [damage.0],
    })
}

/// One event: whatever of it reads back, with `damage` naming each part that does not.
fn event(s: &AppState, id: &str) -> Result<Response, ApiError> {
    let ulid = Ulid::from_string(id).map_err(|_| ApiError::not_found(format!("no event `{id}`")))?;
    let stored = s.store.read_event(ulid)?.ok_or_else(|| ApiError::not_found(format!("no event `{id}`")))?;
    let mut history = Vec::new();
    let mut damage = Vec::new();
    for a in s.store.attempts(ulid)? {
        match a {
            Ok(a) => history.push(a),
            Err(d) => damage.push(d.0),
        }
    }
    let pending = s.store.has_pending_job(ulid)?;
    let (mut v, e, body) = match &stored {
        StoredEvent::Whole(e, body) => (summary(ulid, e), Some(e), Some(body.as_slice())),
        StoredEvent::BodyDamaged(e, d) => {
            damage.insert(0, d.0.clone());
            (summary(ulid, e), Some(e), None)
        }
        StoredEvent::RecordDamaged(d) => {
            damage.insert(0, d.0.clone());
            (damaged_summary(ulid, d), None, None)
        }
    };
    v["damage"] = json!(damage);
    let mut v = with_next_attempt(s, ulid, v)?;
    v["listeners"] = s.listeners.reports_json(ulid);
    if let Value::Object(into) = &mut v {
        let headers = e.map(|e| s.shown_headers(&e.provider, &e.headers)).unwrap_or_default();
        // The app's answers are redacted as the event's request headers are.
        let provider = e.map(|e| e.provider.as_str()).unwrap_or_default();
        let shown = |answer: &[(String, String)]| s.shown_headers(provider, answer);
        if let Value::Object(extra) = event_json(e, headers, body, &history, pending, &shown) {
            into.extend(extra);
        }
    }
    v["related_object"] = related_object(s, e, body);
    Ok(ok_json(&v))
}

/// Stored headers as they may be shown (`AppState::shown_headers` for one provider).
type ShowHeaders<'a> = dyn Fn(&[(String, String)]) -> Vec<(String, String)> + 'a;

/// What the event refers to in place of carrying it (a Stripe thin event's `related_object`),
/// read from its body by its provider; `null` for any other event.
fn related_object(s: &AppState, e: Option<&Event>, body: Option<&[u8]>) -> Value {
    let (Some(e), Some(body)) = (e, body) else { return Value::Null };
    let endpoint = s.endpoints.iter().find(|x| x.provider.name() == e.provider);
    endpoint.and_then(|x| x.provider.related_object(body)).unwrap_or(Value::Null)
}

/// The detail fields beyond the summary; `null` (or empty) for the parts that do not read back.
/// `headers` are the record's, already redacted; each attempt's target is shown masked (the job
/// that sends keeps the whole URL), and the headers of its answer through `shown`.
fn event_json(
    e: Option<&Event>,
    headers: Vec<(String, String)>,
    body: Option<&[u8]>,
    attempts: &[Attempt],
    pending: bool,
    shown: &ShowHeaders<'_>,
) -> Value {
    let (payload, encoding) = match body.map(std::str::from_utf8) {
        None => (Value::Null, Value::Null),
        Some(Ok(text)) => (Value::String(text.to_string()), json!("utf8")),
        Some(Err(_)) => {
            (Value::String(base64::engine::general_purpose::STANDARD.encode(body.unwrap_or_default())), json!("base64"))
        }
    };
    json!({
        "source_ip": e.map(|e| &e.source_ip),
        "headers": headers,
        "signature_verified": e.map(|e| e.signature_verified),
        "processing_us": e.map(|e| e.processing_us),
        "errors": e.map(|e| e.errors.iter().map(|x| json!({"at_ms": x.at_ms, "message": x.message})).collect::<Vec<_>>()).unwrap_or_default(),
        "delivery_pending": pending,
        "history": attempts.iter().map(|a| json!({
            "series": a.series,
            "attempt": a.attempt,
            "at_ms": a.at_ms,
            "target": crate::redact::url(&a.target),
            "status": a.status,
            "error": a.error,
            "duration_us": a.duration_us,
            "outcome": a.outcome.as_str(),
            "response": a.answer.as_ref().map(|answer| answer_json(answer, shown)),
            "slower_than_provider": a.slower_than.as_ref().map(slower_json),
            "chaos": a.chaos.as_ref().map(chaos_json),
        })).collect::<Vec<_>>(),
        "payload": payload,
        "payload_encoding": encoding,
    })
}

/// What the app answered to one attempt: its headers (redacted by `shown`), its content type,
/// and the start of its body: as text when it is UTF-8 (`body_encoding: "utf8"`; a character
/// cut in two at the capture limit is left out), else as base64 (`"base64"`). `body_bytes` is
/// the body's whole length, `body_truncated` whether more came than was kept.
fn answer_json(answer: &AttemptAnswer, shown: &ShowHeaders<'_>) -> Value {
    let truncated = answer.body_len > answer.body.len() as u64;
    let (body, encoding) = match std::str::from_utf8(&answer.body) {
        Ok(text) => (text.to_string(), "utf8"),
        // Only the capture limit cut a character: the text before it is the answer's start.
        Err(e) if truncated && e.error_len().is_none() => {
            (String::from_utf8_lossy(&answer.body[..e.valid_up_to()]).into_owned(), "utf8")
        }
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(&answer.body), "base64"),
    };
    let content_type = answer.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v);
    json!({
        "headers": shown(&answer.headers),
        "content_type": content_type,
        "body": body,
        "body_encoding": encoding,
        "body_bytes": answer.body_len,
        "body_truncated": truncated,
    })
}

/// What chaos delivery did to one attempt (`[providers.<name>.chaos]`): its actions, one phrase
/// each, and the figures they came from.
fn chaos_json(c: &ChaosMark) -> Value {
    let actions = c.actions();
    let message = if actions.is_empty() {
        // Only a reorder offset, and the attempt still went out in arrival order.
        format!("chaos: kept its place (reorder offset {} ms)", c.reorder_ms)
    } else {
        format!("chaos: {}", actions.join(", "))
    };
    json!({
        "message": message,
        "actions": actions,
        "duplicate": c.duplicate_after_ms.is_some(),
        "duplicated": c.duplicated,
        "duplicate_after_ms": c.duplicate_after_ms,
        "delay_ms": c.delay_ms,
        "reorder_offset_ms": c.reorder_ms,
        "reordered_after": c.reordered_after.map(|id| id.to_string()),
    })
}

/// The provider's published timeout an attempt took longer than, and what that means.
fn slower_json(slow: &SlowerThan) -> Value {
    let seconds = slow.timeout_ms as f64 / 1000.0;
    let then = if slow.retried {
        "the provider would have retried"
    } else {
        "the provider would have recorded a failed delivery"
    };
    json!({
        "provider": slow.provider,
        // Whole seconds as an integer (every published one so far), else a fraction.
        "timeout_s": if slow.timeout_ms.is_multiple_of(1000) { json!(slow.timeout_ms / 1000) } else { json!(seconds) },
        "message": format!("slower than {}'s {seconds} s timeout: {then}", slow.provider),
    })
}

/// The targets an event of this provider and type is delivered to now (its routes, as they are
/// configured now, or the provider's `forward_to`); none for a provider no longer served.
fn targets_of(s: &AppState, provider: &str, event_type: &str) -> Vec<String> {
    s.endpoints.iter().find(|e| e.provider.name() == provider).map(|e| e.targets_for(event_type)).unwrap_or_default()
}

async fn replay_one(
    s: &AppState,
    id: &str,
    body: &[u8],
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let ulid = Ulid::from_string(id).map_err(|_| ApiError::not_found(format!("no event `{id}`")))?;
    if let Some(changes) = edit::Edit::read(body)? {
        return edit::replay_edited(s, ulid, changes, peer, headers).await;
    }
    let e = s.store.get_record(ulid)?.ok_or_else(|| ApiError::not_found(format!("no event `{id}`")))?;
    let targets = targets_of(s, &e.provider, &e.event_type);
    if targets.is_empty() {
        return Err(ApiError::no_target_for(&e.provider, &e.event_type));
    }
    let masked: Vec<String> = targets.iter().map(|u| crate::redact::url(u)).collect();
    let n = s.store.replay(vec![(ulid, targets)]).await?;
    Ok(ok_json(&json!({"replayed": n, "id": id, "targets": masked})))
}

/// A shell command that sends the event to stagehook again, signed afresh for that URL. The URL
/// is stagehook's own (`AppState::base_url`), never the request's `Host`: with Twilio, whose
/// auth token covers the whole account, a signature for a URL of the caller's choosing would be
/// valid at that URL.
fn curl(s: &AppState, id: &str) -> Result<Response, ApiError> {
    let ulid = Ulid::from_string(id).map_err(|_| ApiError::not_found(format!("no event `{id}`")))?;
    let (e, body) = s.store.get_event(ulid)?.ok_or_else(|| ApiError::not_found(format!("no event `{id}`")))?;
    let endpoint = s
        .endpoints
        .iter()
        .find(|x| x.provider.name() == e.provider)
        .ok_or_else(|| ApiError::not_found(format!("no endpoint for provider `{}`", e.provider)))?;
    let url = format!("{}/staging/webhooks/{}", s.base_url(), endpoint.path);
    let content_type = e.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
    let signed = endpoint.provider.sign_resend(&url, content_type, &body, &e.headers, s.clock.now_s());
    let mut cmd = format!("curl -sS -X POST {}", shell_quote(&signed.url));
    // The original headers too: some providers carry the event's id and type there (GitHub).
    // Not the credentials of the hop (a tunnel's basic auth), as a delivery drops them: the
    // command would print them in clear.
    let keep = s.config.targets(&e.provider).map(|t| t.forward_headers).unwrap_or_default();
    for (name, value) in crate::delivery::resent_headers(&e.headers, &signed, &keep) {
        cmd.push_str(&format!(" -H {}", shell_quote(&format!("{name}: {value}"))));
    }
    cmd.push_str(&format!(" --data-binary {}", ansi_c_quote(&body)));
    Ok(ok_json(&json!({"command": cmd, "url": signed.url})))
}

/// `'text'` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `$'...'` (bash, zsh): every byte exactly, newlines and non-ASCII included.
fn ansi_c_quote(bytes: &[u8]) -> String {
    let mut out = String::from("$'");
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ReplayFilter {
    status: Option<String>,
    provider: Option<String>,
    source: Option<String>,
    since: Value,
    until: Value,
    limit: Option<usize>,
}

async fn replay_many(s: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let f: ReplayFilter = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayFilter::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::invalid_payload(format!(
                "expected {{\"status\", \"provider\", \"source\", \"since\", \"until\", \"limit\"}}: {e}"
            ))
        })?
    };
    let limit = f.limit.unwrap_or(1000).clamp(1, MAX_REPLAY);
    let filter = EventFilter {
        provider: f.provider,
        status: f.status.as_deref().map(crate::filter::status).transpose().map_err(bad_filter)?,
        event_type: None,
        since_ms: crate::filter::time("since", &f.since).map_err(bad_filter)?,
        until_ms: crate::filter::time("until", &f.until).map_err(bad_filter)?,
        source: f.source.as_deref().map(crate::filter::source).transpose().map_err(bad_filter)?,
    };
    let mut items = Vec::new();
    let mut skipped = 0;
    let mut damaged = 0;
    // How many of the replayed events go to each target (masked), for the answer.
    let mut sent_to: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut cursor = None;
    // Page through the matches; the store bounds each page's scan.
    loop {
        let page = s.store.list_events(&filter, cursor, limit - items.len(), SCAN_LIMIT)?;
        for (id, e) in page.events {
            // A record that does not decode names no provider, so there is nowhere to send it.
            let Ok(e) = e else {
                damaged += 1;
                continue;
            };
            let targets = targets_of(s, &e.provider, &e.event_type);
            if targets.is_empty() {
                skipped += 1;
            } else {
                for url in &targets {
                    *sent_to.entry(crate::redact::url(url)).or_insert(0u64) += 1;
                }
                items.push((id, targets));
            }
        }
        match page.next_cursor {
            Some(c) if items.len() < limit => cursor = Some(c),
            _ => break,
        }
    }
    let replayed = if items.is_empty() { 0 } else { s.store.replay(items).await? };
    Ok(ok_json(&json!({
        "replayed": replayed,
        "skipped_no_target": skipped,
        "skipped_damaged": damaged,
        "targets": sent_to,
    })))
}

/// Pages of the export in flight between the page reader and the connection: the reader stays
/// at most this far ahead of a slow client.
const EXPORT_AHEAD: usize = 2;

/// `GET /events/export`: every event the list's filters match, oldest first, one NDJSON line
/// each ([`crate::export`]), streamed a page at a time. The first page is read before the
/// answer starts, so a store that cannot be read gets its JSON error; a read that fails later
/// ends the body before its end, so the client sees a broken transfer, never a short file that
/// looks whole.
async fn export(s: Arc<AppState>, q: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    if let Some(key) = ["q", "cursor", "limit"].into_iter().find(|k| q.contains_key(*k)) {
        return Err(ApiError::invalid_payload(format!(
            "`{key}` is not an export filter; an export takes provider, status, type, source, since, until and after, and writes every match"
        )));
    }
    let filter = crate::filter::from_query(q).map_err(bad_filter)?;
    let mut exporter = crate::export::Exporter::new(filter);
    if let Some(after) = q.get("after") {
        let id = Ulid::from_string(after)
            .map_err(|_| ApiError::invalid_payload(format!("after: `{after}` is not an event id (a ULID)")))?;
        exporter = exporter.after(id);
    }
    // sled reads block: the pages are read on a blocking thread, the first before answering.
    let reader = s.clone();
    let (first, mut exporter) = tokio::task::spawn_blocking(move || {
        let lines = exporter.next_lines(&reader.store, &reader.endpoints);
        (lines, exporter)
    })
    .await
    .map_err(|e| ApiError::from(StoreError::Unavailable(format!("the export reader stopped: {e}"))))?;
    let mut next = first?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(EXPORT_AHEAD);
    tokio::task::spawn_blocking(move || {
        while let Some(lines) = next {
            // A client that went away dropped the receiver: stop reading.
            if tx.blocking_send(Ok(lines)).is_err() {
                return;
            }
            next = match exporter.next_lines(&s.store, &s.endpoints) {
                Ok(lines) => lines,
                Err(e) => {
                    tracing::error!(error = %e, "export stopped: store read failed");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
        }
        if exporter.damaged > 0 {
            tracing::warn!(
                exported = exporter.exported,
                damaged = exporter.damaged,
                "export left out events that do not read back (see `stagehook store verify`)"
            );
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let mut res = warp::reply::stream(body).into_response();
    res.headers_mut().insert("content-type", warp::http::HeaderValue::from_static(crate::export::MEDIA_TYPE));
    Ok(res)
}

fn recovery(s: &AppState) -> Response {
    let counters = s.store.stats().counters();
    let mut providers = Map::new();
    for lane in s.engine.lanes() {
        let b = &lane.breaker;
        let r = &lane.retry;
        providers.insert(
            lane.name.clone(),
            json!({
                "breaker": {
                    "state": b.state,
                    "consecutive_failures": b.consecutive_failures,
                    "opened_at_ms": b.opened_at_ms,
                    "next_probe_ms": b.next_probe_ms,
                },
                "targets": lane.targets.iter().map(|u| crate::redact::url(u)).collect::<Vec<_>>(),
                "routes": lane.routes.iter().map(|r| json!({
                    "types": r.types,
                    "targets": r.urls.iter().map(|u| crate::redact::url(u)).collect::<Vec<_>>(),
                    "also_default": r.also_default,
                })).collect::<Vec<_>>(),
                "timeout_ms": lane.timeout.as_millis() as u64,
                "retry": {
                    "strategy": format!("{:?}", r.strategy).to_lowercase(),
                    "max_attempts": r.max_attempts,
                    "base_delay_ms": r.base_delay.0.as_millis() as u64,
                    "max_delay_ms": r.max_delay.0.as_millis() as u64,
                    "jitter": r.jitter,
                },
                "oldest_due_ms": s.store.oldest_job_ms(&lane.name).ok().flatten(),
                "dead_letters": counters.dead_letters(&lane.name),
            }),
        );
    }
    let cb = &s.config.circuit_breaker;
    ok_json(&json!({
        "providers": providers,
        "circuit_breaker": {"failure_threshold": cb.failure_threshold, "recovery_timeout_ms": cb.recovery_timeout.0.as_millis() as u64},
        "queue_depth": counters.queue_depth(),
        "in_flight": s.engine.in_flight(),
        "dead_letters": counters.dead_letters_total(),
        "delivered_after_attempts": counters.delivered_after(),
        "failure_reasons": counters.failure_reasons(),
        "retention_deleted": counters.retention_deleted(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag's message says what the provider would have done: GitHub records a failure and
    /// does not retry by itself; the others retry. A timeout that is not whole seconds keeps its
    /// fraction.
    #[test]
    fn the_slow_flag_says_what_the_provider_would_have_done() {
        let slow = |provider: &str, timeout_ms, retried| {
            slower_json(&SlowerThan { provider: provider.into(), timeout_ms, retried })
        };
        assert_eq!(
            slow("Slack", 3000, true),
            json!({"provider": "Slack", "timeout_s": 3,
                   "message": "slower than Slack's 3 s timeout: the provider would have retried"})
        );
        assert_eq!(
            slow("GitHub", 10_000, false)["message"],
            "slower than GitHub's 10 s timeout: the provider would have recorded a failed delivery"
        );
        assert_eq!(slow("X", 2500, true)["timeout_s"], json!(2.5));
    }
}
