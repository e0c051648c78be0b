//! The event list's filters read from text: one parser for the query of
//! `GET /staging/webhooks/events` (and its `/export`), the body of `POST /staging/webhooks/replay`
//! and the flags of `stagehook export`, so each accepts the same spellings and refuses with the
//! same words.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::store::{EventFilter, Source, Status};

/// A filter value that does not parse; the message names the field and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// The filter named by `provider`, `status`, `type`, `source`, `since` and `until` (other keys are not
/// filters and are left to the caller).
pub fn from_query(q: &BTreeMap<String, String>) -> Result<EventFilter, FilterError> {
    let text_time = |field: &str| q.get(field).map(|t| time(field, &Value::String(t.clone()))).transpose();
    Ok(EventFilter {
        provider: q.get("provider").cloned(),
        status: q.get("status").map(|st| status(st)).transpose()?,
        event_type: q.get("type").cloned(),
        since_ms: text_time("since")?.flatten(),
        until_ms: text_time("until")?.flatten(),
        source: q.get("source").map(|s| source(s)).transpose()?,
    })
}

/// How events came to be stored: `webhook` or `backfill`.
pub fn source(s: &str) -> Result<Source, FilterError> {
    Source::ALL.into_iter().find(|src| src.as_str() == s).ok_or_else(|| {
        let all: Vec<&str> = Source::ALL.iter().map(|s| s.as_str()).collect();
        FilterError(format!("source `{s}`: unknown source; one of {}", all.join(", ")))
    })
}

/// An event status to filter by. `duplicate` is refused like an unknown status: no stored event
/// has it (duplicates are counted under `/stats`), so a filter on it would always be empty.
pub fn status(s: &str) -> Result<Status, FilterError> {
    Status::STORED.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
        let all: Vec<&str> = Status::STORED.iter().map(|s| s.as_str()).collect();
        let why = if s == Status::Duplicate.as_str() {
            "duplicates are counted, never stored as events (see /stats)"
        } else {
            "unknown status"
        };
        FilterError(format!("status `{s}`: {why}; one of {}", all.join(", ")))
    })
}

/// A time as RFC 3339 (`2026-11-28T10:00:00Z`) or Unix milliseconds.
pub fn time(field: &str, v: &Value) -> Result<Option<i64>, FilterError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_i64().map(Some).ok_or_else(|| FilterError(format!("{field}: not a time"))),
        // A query string has no numbers, only text: digits there are Unix milliseconds too.
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map(Some).map_err(|_| FilterError(format!("{field}: `{s}` is out of range")))
        }
        Value::String(s) => humantime::parse_rfc3339_weak(s)
            .map(|t| Some(t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)))
            .map_err(|_| FilterError(format!("{field}: `{s}` is not RFC 3339 or Unix milliseconds"))),
        _ => Err(FilterError(format!("{field}: not a time"))),
    }
}
