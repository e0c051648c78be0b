//! Events as NDJSON, one event a line, out of a store and back in: the one line encoding of
//! `GET /staging/webhooks/events/export`, `stagehook export`, `stagehook import` and
//! `stagehook send --from`.
//!
//! A line is a JSON object:
//!
//! ```json
//! {"v":1,"id":"01J…","provider":"stripe","event_id":"evt_1","event_type":"charge.succeeded",
//!  "received_at_ms":1764500000000,"headers":[["content-type","application/json"],…],
//!  "body":"{\"id\":\"evt_1\",…}"}
//! ```
//!
//! - `v`: the format's version (1). A reader refuses a version it does not know.
//! - `id`: stagehook's id of the event in the store it came from; for reference only, an import
//!   gives each event a new one.
//! - `headers`: `[name, value]` pairs in arrival order, redacted exactly as
//!   `GET /staging/webhooks/events/{id}` shows them ([`crate::redact::event_headers`]): a
//!   signature is cut short, so an exported event is signed afresh when it is sent again.
//! - The body's exact bytes: `body`, a JSON string, when they are valid UTF-8 (JSON escapes keep
//!   every character, a trailing newline included), else `body_base64` (standard alphabet, with
//!   padding). A line has exactly one of the two.
//!
//! Lines are written oldest event first, the order the events were stored, so an import stores
//! them in their first order again.

use std::io::BufRead;

use base64::Engine;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::providers::Instance;
use crate::store::{EventFilter, NewEvent, Store, StoreError, StoredEvent};

/// The format version this build writes and reads.
pub const VERSION: u64 = 1;

/// The media type of an export.
pub const MEDIA_TYPE: &str = "application/x-ndjson";

/// What an import records as an event's source address: the file, not a client, sent it.
pub const IMPORT_SOURCE: &str = "import";

/// Events one page of an export holds, and the records it reads at most: an export holds one
/// page in memory, whatever the store's size.
const PAGE: usize = 100;
const SCAN_LIMIT: usize = 20_000;

/// Events an import hands to the store writer at once: enough for the group commit to batch
/// them, few enough to hold in memory.
const IMPORT_BATCH: usize = 256;

/// One exported event, as a line carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub received_at_ms: i64,
    /// As shown (redacted), in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The line as JSON. Unknown fields are refused: a misspelt field in a hand-edited fixture is
/// an error, not a silently missing value.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    v: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    provider: String,
    event_id: String,
    event_type: String,
    received_at_ms: i64,
    headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

/// Why a line is not an exported event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not an exported event: {0}")]
    Json(String),
    #[error("format version {0} is not known to this stagehook (it reads version {VERSION})")]
    Version(u64),
    #[error("`{0}` is empty")]
    Empty(&'static str),
    #[error("has both `body` and `body_base64`; an event has one body")]
    TwoBodies,
    #[error("has neither `body` nor `body_base64`")]
    NoBody,
    #[error("`body_base64` is not base64: {0}")]
    Base64(String),
}

/// The line (with its newline) for the event `id`, whose headers are already redacted.
pub fn encode_line(id: Option<Ulid>, event: &Exported) -> Vec<u8> {
    let (body, body_base64) = match std::str::from_utf8(&event.body) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&event.body))),
    };
    let line = Line {
        v: VERSION,
        id: id.map(|id| id.to_string()),
        provider: event.provider.clone(),
        event_id: event.event_id.clone(),
        event_type: event.event_type.clone(),
        received_at_ms: event.received_at_ms,
        headers: event.headers.clone(),
        body,
        body_base64,
    };
    // Strings, numbers and pairs of strings: serializing cannot fail.
    let mut out = serde_json::to_vec(&line).expect("a line serializes");
    out.push(b'\n');
    out
}

/// The event a line carries (without its newline).
pub fn decode_line(text: &[u8]) -> Result<Exported, LineError> {
    let line: Line = serde_json::from_slice(text).map_err(|e| LineError::Json(e.to_string()))?;
    if line.v != VERSION {
        return Err(LineError::Version(line.v));
    }
    // The provider and its event id are the duplicate key: without them nothing can be stored.
    if line.provider.is_empty() {
        return Err(LineError::Empty("provider"));
    }
    if line.event_id.is_empty() {
        return Err(LineError::Empty("event_id"));
    }
    let body = match (line.body, line.body_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => {
            base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| LineError::Base64(e.to_string()))?
        }
        (Some(_), Some(_)) => return Err(LineError::TwoBodies),
        (None, None) => return Err(LineError::NoBody),
    };
    Ok(Exported {
        provider: line.provider,
        event_id: line.event_id,
        event_type: line.event_type,
        received_at_ms: line.received_at_ms,
        headers: line.headers,
        body,
    })
}

/// Pages through the events a filter matches, oldest first, as lines. Each call reads one page
/// (bounded reads; sled is blocking, so async callers run it on a blocking thread).
#[derive(Debug)]
pub struct Exporter {
    filter: EventFilter,
    after: Option<Ulid>,
    done: bool,
    /// Lines written so far.
    pub exported: u64,
    /// Events left out because their record or body does not read back (`stagehook store
    /// verify` names them).
    pub damaged: u64,
}

impl Exporter {
    pub fn new(filter: EventFilter) -> Exporter {
        Exporter { filter, after: None, done: false, exported: 0, damaged: 0 }
    }

    /// The next lines, never empty; `None` once every match is written. Headers are redacted
    /// with the list of the instance in `instances` that received the event.
    pub fn next_lines(&mut self, store: &Store, instances: &[Instance]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        // A page may be empty yet not the last (the scan bound was reached first): go on.
        while out.is_empty() && !self.done {
            let page = store.events_after(&self.filter, self.after, PAGE, SCAN_LIMIT)?;
            match page.next_cursor {
                Some(c) => self.after = Some(c),
                None => self.done = true,
            }
            for (id, record) in page.events {
                if record.is_err() {
                    self.damaged += 1;
                    continue;
                }
                match store.read_event(id)? {
                    Some(StoredEvent::Whole(e, body)) => {
                        let headers = crate::redact::event_headers(instances, &e.provider, &e.headers);
                        let event = Exported {
                            provider: e.provider,
                            event_id: e.event_id,
                            event_type: e.event_type,
                            received_at_ms: e.received_at_ms,
                            headers,
                            body,
                        };
                        out.extend_from_slice(&encode_line(Some(id), &event));
                        self.exported += 1;
                    }
                    Some(StoredEvent::BodyDamaged(..) | StoredEvent::RecordDamaged(_)) => self.damaged += 1,
                    // Deleted (retention) since the page was read: no longer there to export.
                    None => {}
                }
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub imported: u64,
    /// Lines whose provider and event id the store had already (or that came earlier in the
    /// file): skipped, as a provider's retry is.
    pub skipped: u64,
}

/// Why an import (or a `send --from`) stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the file: {0}")]
    Read(std::io::Error),
    /// Line numbers count from 1, as an editor shows them.
    #[error("line {line}: {error}")]
    Line { line: usize, error: LineError },
    #[error("{0}")]
    Store(StoreError),
}

/// Every event of an export file with its line number; blank lines are passed over. Stops at
/// the first line that cannot be read or decoded.
pub fn lines(reader: impl BufRead) -> impl Iterator<Item = Result<(usize, Exported), ImportError>> {
    let mut failed = false;
    reader.split(b'\n').enumerate().filter_map(move |(i, line)| {
        if failed {
            return None;
        }
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                failed = true;
                return Some(Err(ImportError::Read(e)));
            }
        };
        let text = line.strip_suffix(b"\r").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(decode_line(text).map(|e| (i + 1, e)).map_err(|error| {
            failed = true;
            ImportError::Line { line: i + 1, error }
        }))
    })
}

/// Checks every line of a file: the number of events, or the first line that is not one. An
/// import checks the whole file first, so a malformed line stores nothing.
pub fn check(reader: impl BufRead) -> Result<u64, ImportError> {
    let mut n = 0;
    for line in lines(reader) {
        line?;
        n += 1;
    }
    Ok(n)
}

/// Stores every event of `reader` (already [`check`]ed) as received, in file order, without
/// delivering it: an imported event is `processed`, with no delivery queued, so loading a
/// capture never sends a request to the app (`stagehook send --from` does that, on purpose).
/// A provider and event id the store has already are skipped and counted.
pub async fn import(store: &Store, reader: impl BufRead) -> Result<Imported, ImportError> {
    let mut done = Imported::default();
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut lines = lines(reader).peekable();
    while let Some(line) = lines.next() {
        let (_, e) = line?;
        batch.push(NewEvent {
            provider: e.provider,
            event_id: e.event_id,
            event_type: e.event_type,
            received_at_ms: e.received_at_ms,
            source_ip: IMPORT_SOURCE.to_string(),
            headers: e.headers,
            body: e.body.into(),
            processing_us: 0,
            targets: Vec::new(),
            items: 1,
            parent: None,
        });
        if batch.len() == IMPORT_BATCH || lines.peek().is_none() {
            // In order, so ids follow the file; the writer commits a batch in few flushes.
            let batch = std::mem::replace(&mut batch, Vec::with_capacity(IMPORT_BATCH));
            for done_one in store.ingest_all(batch).await.map_err(ImportError::Store)? {
                if done_one.duplicate {
                    done.skipped += 1;
                } else {
                    done.imported += 1;
                }
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(body: &[u8]) -> Exported {
        Exported {
            provider: "stripe".into(),
            event_id: "evt_1".into(),
            event_type: "charge.succeeded".into(),
            received_at_ms: 1_764_500_000_123,
            headers: vec![("content-type".into(), "application/json".into()), ("x-a".into(), "1".into())],
            body: body.to_vec(),
        }
    }

    fn round_trip(body: &[u8]) -> Vec<u8> {
        let line = encode_line(Some(Ulid::nil()), &event(body));
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line: {}", String::from_utf8_lossy(&line));
        let back = decode_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(back, event(body));
        line
    }

    #[test]
    fn utf8_bodies_are_text_and_others_base64() {
        let line = round_trip("{\"name\":\"Zoë ✓ 日本\"}\n".as_bytes());
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["body"], "{\"name\":\"Zoë ✓ 日本\"}\n");
        assert!(v.get("body_base64").is_none());
        let line = round_trip(b"Body=caf\xe9&From=%2B1555");
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["body_base64"], base64::engine::general_purpose::STANDARD.encode(b"Body=caf\xe9&From=%2B1555"));
        assert!(v.get("body").is_none());
        round_trip(b"");
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let base = String::from_utf8(encode_line(None, &event(b"{}"))).unwrap();
        let cases: [(String, LineError); 6] = [
            (base.replace("\"v\":1", "\"v\":2"), LineError::Version(2)),
            (base.replace("\"evt_1\"", "\"\""), LineError::Empty("event_id")),
            (base.replace("\"body\":\"{}\"", "\"body\":\"{}\",\"body_base64\":\"\""), LineError::TwoBodies),
            (base.replace(",\"body\":\"{}\"", ""), LineError::NoBody),
            (base.replace("\"body\":\"{}\"", "\"body_base64\":\"*\""), LineError::Base64(String::new())),
            ("{\"v\":1".to_string(), LineError::Json(String::new())),
        ];
        for (text, want) in cases {
            let got = decode_line(text.trim_end().as_bytes()).unwrap_err();
            assert_eq!(std::mem::discriminant(&got), std::mem::discriminant(&want), "{text}: {got}");
        }
        let unknown = base.replace("\"v\":1", "\"v\":1,\"bodyy\":\"x\"");
        assert!(decode_line(unknown.trim_end().as_bytes()).unwrap_err().to_string().contains("bodyy"));
    }

    #[test]
    fn lines_number_from_one_skip_blank_lines_and_stop_at_the_first_bad_one() {
        let good = encode_line(None, &event(b"{}"));
        // A line ended CRLF, a blank line, a line, a bad line, a line.
        let mut file = good[..good.len() - 1].to_vec();
        file.extend_from_slice(b"\r\n   \n");
        file.extend_from_slice(&good);
        file.extend_from_slice(b"not json\n");
        file.extend_from_slice(&good);
        let got: Vec<_> = lines(&file[..]).collect();
        assert_eq!(got.len(), 3, "two events, then the error, then nothing");
        assert_eq!(got[0].as_ref().unwrap().0, 1);
        assert_eq!(got[1].as_ref().unwrap().0, 3);
        assert!(matches!(got[2], Err(ImportError::Line { line: 4, .. })), "{:?}", got[2]);
        assert!(matches!(check(&file[..]), Err(ImportError::Line { line: 4, .. })));
        assert_eq!(check(&good[..]).unwrap(), 1);
    }

    /// More events than a page: every one exported, oldest first, over several pages; imported
    /// into a second store in the same order (a second import skips them all); a damaged record
    /// counted and left out; a time filter that starts mid-way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_cover_every_event_in_order_and_an_import_keeps_it() {
        use crate::clock::Clock;
        use crate::store::{InjectDamage, StoreOptions};
        let options = StoreOptions { cache_bytes: 1 << 20, rejection_log_size: 10, body_segment_bytes: 1 << 20 };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a"), options, Clock::system()).unwrap();
        let n = PAGE * 2 + 37;
        let events: Vec<Exported> = (0..n)
            .map(|i| Exported {
                event_id: format!("evt_{i:04}"),
                body: format!("{{\"n\":{i}}}").into_bytes(),
                ..event(b"")
            })
            .collect();
        let mut file = Vec::new();
        for e in &events {
            file.extend_from_slice(&encode_line(None, e));
        }
        assert_eq!(import(&store, &file[..]).await.unwrap(), Imported { imported: n as u64, skipped: 0 });
        assert_eq!(import(&store, &file[..]).await.unwrap(), Imported { imported: 0, skipped: n as u64 });

        let export_all = |store: &Store, filter: EventFilter| {
            let mut exporter = Exporter::new(filter);
            let (mut out, mut pages) = (Vec::new(), 0);
            while let Some(lines) = exporter.next_lines(store, &[]).unwrap() {
                out.extend_from_slice(&lines);
                pages += 1;
            }
            (out, pages, exporter)
        };
        let (out, pages, exporter) = export_all(&store, EventFilter::default());
        assert_eq!(pages, 3);
        assert_eq!((exporter.exported, exporter.damaged), (n as u64, 0));
        let back: Vec<Exported> = lines(&out[..]).map(|l| l.unwrap().1).collect();
        let names = |v: &[Exported]| v.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>().join(" ");
        assert_eq!(names(&back), names(&events), "every event, oldest first");
        assert_eq!(back, events);

        // Starting from the 150th event's id time: it and those after it (ids of one
        // millisecond share it, so at least those).
        let ids: Vec<Ulid> = lines(&out[..])
            .map(|l| l.unwrap().0)
            .zip(out.split(|b| *b == b'\n'))
            .map(|(_, raw)| {
                serde_json::from_slice::<serde_json::Value>(raw).unwrap()["id"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        let since = ids[150].timestamp_ms() as i64;
        let (later, _, _) = export_all(&store, EventFilter { since_ms: Some(since), ..Default::default() });
        let later: Vec<Exported> = lines(&later[..]).map(|l| l.unwrap().1).collect();
        let first = events.iter().position(|e| e == &later[0]).unwrap();
        assert!(first <= 150 && ids[first].timestamp_ms() as i64 >= since);
        assert_eq!(later, events[first..], "from there on, in order");

        store.inject_damage(ids[5], InjectDamage::EventRecord).unwrap();
        let (_, _, exporter) = export_all(&store, EventFilter::default());
        assert_eq!((exporter.exported, exporter.damaged), (n as u64 - 1, 1));
        store.shutdown().await.unwrap();
    }

    proptest! {
        #![proptest_config(crate::proptest_cases(256))]
        #[test]
        fn any_body_and_headers_survive_a_line(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            text in ".{0,40}",
            headers in proptest::collection::vec((".{0,10}", ".{0,20}"), 0..5),
        ) {
            let mut e = event(&body);
            e.event_type = text;
            e.headers = headers;
            let line = encode_line(None, &e);
            prop_assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            prop_assert_eq!(decode_line(&line[..line.len() - 1]).unwrap(), e);
        }
    }
}
