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
/// any run of characters, dots included; `[...]` one character of a class (`[abc]`, a range
/// `[a-z]`, or all but them with `[!abc]` or `[^abc]`); every other character only itself
/// (`invoice.*`). A pattern [`type_pattern`] refuses matches nothing.
pub fn type_matches(patterns: &[String], event_type: &str) -> bool {
    let text: Vec<char> = event_type.chars().collect();
    patterns.is_empty() || patterns.iter().any(|p| tokens(p).is_ok_and(|p| glob(&p, &text)))
}

/// Whether `pattern` is an event-type pattern [`type_matches`] reads: every `[` closed by a
/// `]`, no empty class, no range backwards. The message says what is wrong and where.
pub fn type_pattern(pattern: &str) -> Result<(), FilterError> {
    tokens(pattern).map(drop)
}

/// One piece of a pattern.
enum Token {
    Star,
    Char(char),
    /// `[...]`: the ranges it lists (a single character is a range of one), or all but them.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Star => true,
            Token::Char(own) => *own == c,
            Token::Class { negated, ranges } => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated,
        }
    }
}

fn tokens(pattern: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push(Token::Star),
            '[' => {
                let Some(len) = chars[i + 1..].iter().position(|&c| c == ']') else {
                    return Err(FilterError(format!(
                        "`{pattern}`: the `[` at character {} is never closed by `]`",
                        i + 1
                    )));
                };
                let mut body = &chars[i + 1..i + 1 + len];
                let negated = matches!(body.first(), Some('!' | '^'));
                if negated {
                    body = &body[1..];
                }
                if body.is_empty() {
                    return Err(FilterError(format!("`{pattern}`: the class at character {} is empty", i + 1)));
                }
                let mut ranges = Vec::new();
                let mut j = 0;
                while j < body.len() {
                    if j + 2 < body.len() && body[j + 1] == '-' {
                        let (lo, hi) = (body[j], body[j + 2]);
                        if lo > hi {
                            return Err(FilterError(format!("`{pattern}`: the range `{lo}-{hi}` runs backwards")));
                        }
                        ranges.push((lo, hi));
                        j += 3;
                    } else {
                        ranges.push((body[j], body[j]));
                        j += 1;
                    }
                }
                out.push(Token::Class { negated, ranges });
                i += len + 1;
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    Ok(out)
}

fn glob(pattern: &[Token], text: &[char]) -> bool {
    // The classic two-pointer match with one backtrack point: linear for one `*`, and never
    // worse than pattern × text.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && matches!(pattern[p], Token::Star) {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p].matches(text[t]) {
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
    pattern[p..].iter().all(|t| matches!(t, Token::Star))
}

#[cfg(test)]
mod type_tests {
    use super::{type_matches, type_pattern};

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

    #[test]
    fn classes_match_one_character_of_their_set() {
        let cases = [
            ("invoice.[pv]*", "invoice.paid", true),
            ("invoice.[pv]*", "invoice.voided", true),
            ("invoice.[pv]*", "invoice.created", false),
            ("v[0-9].*", "v1.billing.meter", true),
            ("v[0-9].*", "vx.billing", false),
            ("[!i]*", "invoice.paid", false),
            ("[^i]*", "charge.succeeded", true),
            ("a[-]b", "a-b", true),
            ("a]b", "a]b", true),
            ("caf[é]", "café", true),
        ];
        for (pattern, text, want) in cases {
            type_pattern(pattern).unwrap();
            assert_eq!(type_matches(&[pattern.to_string()], text), want, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn a_malformed_class_is_refused_and_matches_nothing() {
        for (pattern, words) in
            [("invoice.[paid", "never closed"), ("a[]b", "empty"), ("a[!]b", "empty"), ("[z-a]", "backwards")]
        {
            let e = type_pattern(pattern).unwrap_err();
            assert!(e.0.contains(words), "{pattern}: {e}");
            assert!(!type_matches(&[pattern.to_string()], "invoice.[paid"), "{pattern}");
        }
    }
}
