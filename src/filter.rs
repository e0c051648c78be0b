//! The event list's filters read from text: one parser for the query of
//! `GET /staging/webhooks/events` (and its `/export`), the body of `POST /staging/webhooks/replay`
//! and the flags of `stagehook export`, so each accepts the same spellings and refuses with the
//! same words; and the event-type patterns (`invoice.*`) of `stagehook listen --type` and of
//! a backfill's `types`.

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

/// Whether `event_type` matches one of `patterns` (all types when there is none): `*` matches
/// any run of characters, dots included; every other character only itself (`invoice.*`).
pub fn type_matches(patterns: &[String], event_type: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| glob(p.as_bytes(), event_type.as_bytes()))
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // The classic two-pointer match with one backtrack point: linear for one `*`, and never
    // worse than pattern × text.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod type_tests {
    use super::type_matches;

    #[test]
    fn type_patterns_match_with_stars_anywhere() {
        let cases = [
            ("invoice.*", "invoice.paid", true),
            ("invoice.*", "invoice.", true),
            ("invoice.*", "invoice.payment_failed", true),
            ("invoice.*", "invoiceitem.created", false),
            ("invoice.*", "charge.succeeded", false),
            ("invoice.paid", "invoice.paid.extra", false),
            ("*", "anything", true),
            ("*.succeeded", "charge.succeeded", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXXbYY", false),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("push", "push", true),
            ("push", "pushed", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(type_matches(&[pattern.to_string()], text), want, "{pattern} ~ {text}");
        }
        assert!(type_matches(&[], "anything"));
        assert!(type_matches(&["x".to_string(), "push".to_string()], "push"));
    }
}
