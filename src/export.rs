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
//! - `id`: stagehook's id of the event in the store it came from; an import gives each event a
//!   new one, and uses this one only to find the parent of an edited copy.
//! - `parent_id`, on an edited copy (edit and replay) only: the `id` of the event it copies. An
//!   import links the copy to that event's new id when the event is on an earlier line (as it
//!   always is in an export that holds both: a copy is stored after its parent), and otherwise
//!   keeps this id, as its store keeps it once retention has deleted the parent.
//! - `source`, on an event that did not come as a webhook only: `"backfill"` for one read from
//!   the provider's API. An import keeps it, so the event is still never `signature_verified`;
//!   a line without it is a webhook's, as every line written before the field existed.
//! - `headers`: `[name, value]` pairs in arrival order, redacted exactly as
//!   `GET /staging/webhooks/events/{id}` shows them ([`crate::redact::event_headers`]): a
//!   signature is cut short, so an exported event is signed afresh when it is sent again.
//! - The body's exact bytes: `body`, a JSON string, when they are valid UTF-8 (JSON escapes keep
//!   every character, a trailing newline included), else `body_base64` (standard alphabet, with
//!   padding). A line has exactly one of the two.
//!
//! Lines are written oldest event first, the order the events were stored, so an import stores
//! them in their first order again.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use base64::Engine;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::providers::Endpoint;
use crate::store::{EventFilter, NewEvent, Source, Store, StoreError, StoredEvent};

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
    /// Its id in the store it came from (`id`); any text in a hand-written line.
    pub id: Option<String>,
    /// For an edited copy, the id of the event it copies (`parent_id`).
    pub parent_id: Option<Ulid>,
    /// How it reached the store it came from (`source`, written for a backfill only).
    pub source: Source,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
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
    #[error("`parent_id` `{0}` is not an event id")]
    ParentId(String),
    #[error("`source` `{0}` is not known; one of webhook, backfill")]
    Source(String),
    #[error("provider `{name}` is not an endpoint name: {reason}")]
    Provider { name: String, reason: String },
    #[error("the body is {len} bytes, over the {limit}-byte limit (`limits.max_body_bytes`, or `--max-body-bytes`)")]
    TooLarge { len: usize, limit: u64 },
}

/// The line (with its newline) for an event whose headers are already redacted.
pub fn encode_line(event: &Exported) -> Vec<u8> {
    let (body, body_base64) = match std::str::from_utf8(&event.body) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&event.body))),
    };
    let line = Line {
        v: VERSION,
        id: event.id.clone(),
        parent_id: event.parent_id.map(|p| p.to_string()),
        // Absent for a webhook's event, so its line is what it was before sources were kept.
        source: (event.source != Source::Webhook).then(|| event.source.as_str().to_string()),
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
    let parent_id = match line.parent_id {
        Some(p) => Some(Ulid::from_string(&p).map_err(|_| LineError::ParentId(p))?),
        None => None,
    };
    let source = match line.source {
        None => Source::Webhook,
        Some(s) => crate::filter::source(&s).map_err(|_| LineError::Source(s))?,
    };
    let body = match (line.body, line.body_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => {
            base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| LineError::Base64(e.to_string()))?
        }
        (Some(_), Some(_)) => return Err(LineError::TwoBodies),
        (None, None) => return Err(LineError::NoBody),
    };
    Ok(Exported {
        id: line.id,
        parent_id,
        source,
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

    /// Only the events stored after `id`, in arrival order (ids are ULIDs, so their order is the
    /// order of arrival): a reader that remembers the last id it took resumes where it stopped,
    /// whatever happened in between (`stagehook listen`).
    pub fn after(mut self, id: Ulid) -> Exporter {
        self.after = Some(id);
        self
    }

    /// The next lines, never empty; `None` once every match is written. Headers are redacted
    /// with the list of the endpoint in `endpoints` that received the event.
    pub fn next_lines(&mut self, store: &Store, endpoints: &[Endpoint]) -> Result<Option<Vec<u8>>, StoreError> {
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
                        let headers = crate::redact::event_headers(endpoints, &e.provider, &e.headers);
                        let event = Exported {
                            id: Some(id.to_string()),
                            parent_id: e.parent,
                            source: e.source,
                            provider: e.provider,
                            event_id: e.event_id,
                            event_type: e.event_type,
                            received_at_ms: e.received_at_ms,
                            headers,
                            body,
                        };
                        out.extend_from_slice(&encode_line(&event));
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
    /// Lines the store had already (or that came earlier in the file), skipped as a provider's
    /// retry is: an event whose provider and event id it holds, or an edited copy of the same
    /// event received at the same time with the same event id and body.
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
    /// Every line [`check`] refused (the first [`MAX_REFUSALS_NAMED`]), and how many more.
    #[error("{}", refusals(.lines, *.more))]
    Refused { lines: Vec<(usize, LineError)>, more: u64 },
    #[error("{0}")]
    Store(StoreError),
}

/// Refused lines an import names; a file of garbage has one refusal a line, and the person
/// needs the first few to see what is wrong.
pub const MAX_REFUSALS_NAMED: usize = 20;

fn refusals(lines: &[(usize, LineError)], more: u64) -> String {
    let mut out: Vec<String> = lines.iter().map(|(line, error)| format!("line {line}: {error}")).collect();
    if more > 0 {
        out.push(format!("and {more} more lines refused"));
    }
    out.join("; ")
}

/// Every event of an export file with its line number; blank lines are passed over. Stops at
/// the first line that cannot be read or decoded.
pub fn lines(reader: impl BufRead) -> impl Iterator<Item = Result<(usize, Exported), ImportError>> {
    let mut failed = false;
    numbered(reader).filter_map(move |line| {
        if failed {
            return None;
        }
        let line = match line {
            Ok((n, Ok(e))) => Ok((n, e)),
            Ok((line, Err(error))) => Err(ImportError::Line { line, error }),
            Err(e) => Err(e),
        };
        failed = line.is_err();
        Some(line)
    })
}

/// Each line that is not blank, numbered from 1, decoded or why not; a read error ends it.
fn numbered(reader: impl BufRead) -> impl Iterator<Item = Result<(usize, Result<Exported, LineError>), ImportError>> {
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
        Some(Ok((i + 1, decode_line(text))))
    })
}

/// What an import takes beyond a well-formed line: what the server would take.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The largest body (`limits.max_body_bytes`, or `import --max-body-bytes`).
    pub max_body_bytes: u64,
}

/// What [`check`] found: the number of events, and the ids that edited copies name as their
/// parent, whose new ids the import remembers.
#[derive(Debug, Default)]
pub struct Checked {
    pub events: u64,
    pub parents: HashSet<Ulid>,
}

/// A provider name an import takes: an endpoint's name as the configuration's own rule has it
/// (`config::valid_endpoint_name`: it becomes a URL path and a key prefix of the store), or a
/// notifier's lane, `notify.<name>`, whose notifications are stored as events too.
// A String: the configuration's own message, which becomes part of a refused line's.
pub fn valid_provider(name: &str) -> Result<(), String> {
    crate::config::valid_endpoint_name(name.strip_prefix("notify.").unwrap_or(name))
}

/// Checks every line of a file against the format and `rules`, as an import does before it
/// stores anything: what it found, or every line it refuses (a line can be refused for one
/// reason at a time).
pub fn check(reader: impl BufRead, rules: &Rules) -> Result<Checked, ImportError> {
    let mut checked = Checked::default();
    let (mut refused, mut more) = (Vec::new(), 0u64);
    for line in numbered(reader) {
        let (n, decoded) = line?;
        let verdict = decoded.and_then(|e| {
            valid_provider(&e.provider).map_err(|reason| LineError::Provider { name: e.provider.clone(), reason })?;
            if e.body.len() as u64 > rules.max_body_bytes {
                return Err(LineError::TooLarge { len: e.body.len(), limit: rules.max_body_bytes });
            }
            Ok(e)
        });
        match verdict {
            Ok(e) => {
                checked.events += 1;
                checked.parents.extend(e.parent_id);
            }
            Err(error) if refused.len() < MAX_REFUSALS_NAMED => refused.push((n, error)),
            Err(_) => more += 1,
        }
    }
    if refused.is_empty() {
        Ok(checked)
    } else {
        Err(ImportError::Refused { lines: refused, more })
    }
}

/// Stores every event of `reader` (already [`check`]ed, which says which ids are parents) as
/// received, in file order, without delivering it: an imported event is `processed`, with no
/// delivery queued, so loading a capture never sends a request to the app (`stagehook send
/// --from` does that, on purpose). What the store has already is skipped and counted
/// ([`Imported::skipped`]). An edited copy is stored as a copy (no duplicate claim of its own)
/// of its parent's new id.
pub async fn import(store: &Store, reader: impl BufRead, checked: &Checked) -> Result<Imported, ImportError> {
    let mut run = Run {
        store,
        parents: &checked.parents,
        done: Imported::default(),
        batch: Vec::with_capacity(IMPORT_BATCH),
        new_ids: HashMap::new(),
        copies: HashMap::new(),
        scanned_from: None,
    };
    for line in lines(reader) {
        let (_, e) = line?;
        let source = e.id.as_deref().and_then(|id| Ulid::from_string(id).ok()).filter(|id| run.parents.contains(id));
        let parent = match e.parent_id {
            None => None,
            Some(named) => {
                // The parent's new id must be known, and so must every copy stored before this
                // one: what is pending goes in first. Copies are few, so batches stay large.
                run.flush().await?;
                let (parent, known_before) = match run.new_ids.get(&named) {
                    Some(&(id, duplicate)) => (id, duplicate),
                    // Not on an earlier line: the id is kept, as the source store keeps it once
                    // retention deleted the parent. It may be in this store (an export imported
                    // back), so earlier copies of it are looked for.
                    None => (named, true),
                };
                if let Some(existing) = run.existing_copy(parent, known_before, &e)? {
                    // A copy of this copy (an edit of an edit) goes with the one already here.
                    if let Some(source) = source {
                        run.new_ids.insert(source, (existing, true));
                    }
                    run.done.skipped += 1;
                    continue;
                }
                Some(parent)
            }
        };
        run.batch.push((
            source,
            NewEvent {
                provider: e.provider,
                event_id: e.event_id,
                event_type: e.event_type,
                received_at_ms: e.received_at_ms,
                source_ip: IMPORT_SOURCE.to_string(),
                headers: e.headers.into(),
                body: e.body.into(),
                processing_us: 0,
                targets: Vec::new(),
                items: 1,
                parent,
                source: e.source,
            },
        ));
        if run.batch.len() == IMPORT_BATCH {
            run.flush().await?;
        }
    }
    run.flush().await?;
    Ok(run.done)
}

/// One import in progress.
struct Run<'a> {
    store: &'a Store,
    /// Source ids that copies name as their parent.
    parents: &'a HashSet<Ulid>,
    done: Imported,
    /// Events not yet handed to the store, each with its source id when it is a parent.
    batch: Vec<(Option<Ulid>, NewEvent)>,
    /// A parent's source id: its id here, and whether the store had it before (a duplicate).
    new_ids: HashMap<Ulid, (Ulid, bool)>,
    /// The copies in this store of each parent, as far as they are known (see `scanned_from`):
    /// their id, event id, reception time and body length.
    copies: HashMap<Ulid, Vec<(Ulid, String, i64, u64)>>,
    /// Every stored event after this id was read for `copies` (up to the end of the store at
    /// the time; those stored since are this import's own, added as they are stored).
    scanned_from: Option<Ulid>,
}

impl Run<'_> {
    /// Hands the pending events to the store, in order: ids follow the file, and the writer
    /// commits a batch in few flushes.
    async fn flush(&mut self) -> Result<(), ImportError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(IMPORT_BATCH));
        let (sources, events): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let copies: Vec<_> = events
            .iter()
            .map(|e| e.parent.map(|p| (p, e.event_id.clone(), e.received_at_ms, e.body.len() as u64)))
            .collect();
        let stored = self.store.ingest_all(events).await.map_err(ImportError::Store)?;
        for ((source, copy), done) in sources.into_iter().zip(copies).zip(stored) {
            if let Some(source) = source {
                self.new_ids.insert(source, (done.id, done.duplicate));
            }
            if done.duplicate {
                self.done.skipped += 1;
                continue;
            }
            self.done.imported += 1;
            if let Some((parent, event_id, at_ms, len)) = copy {
                self.copies.entry(parent).or_default().push((done.id, event_id, at_ms, len));
            }
        }
        Ok(())
    }

    /// The copy of `parent` the store holds received when `e` was, with its event id and its
    /// body byte for byte, if there is one. A parent that this import stored has only the copies
    /// it stored since; one that was there before may have others, read once from the store.
    fn existing_copy(&mut self, parent: Ulid, known_before: bool, e: &Exported) -> Result<Option<Ulid>, ImportError> {
        if known_before && self.scanned_from.is_none_or(|from| parent < from) {
            self.scan_copies(parent).map_err(ImportError::Store)?;
        }
        let Some(candidates) = self.copies.get(&parent) else { return Ok(None) };
        for (id, event_id, at_ms, len) in candidates {
            if (event_id, *at_ms, *len) != (&e.event_id, e.received_at_ms, e.body.len() as u64) {
                continue;
            }
            if let Some(StoredEvent::Whole(_, body)) = self.store.read_event(*id).map_err(ImportError::Store)? {
                if body == e.body {
                    return Ok(Some(*id));
                }
            }
        }
        Ok(None)
    }

    /// Reads the copies stored after `from` (a copy is always stored after its parent) up to
    /// where an earlier read started.
    fn scan_copies(&mut self, from: Ulid) -> Result<(), StoreError> {
        let until = self.scanned_from;
        let mut after = Some(from);
        'pages: while let Some(cursor) = after {
            let page = self.store.events_after(&EventFilter::default(), Some(cursor), PAGE, SCAN_LIMIT)?;
            for (id, record) in page.events {
                if until.is_some_and(|u| id >= u) {
                    break 'pages;
                }
                let Ok(e) = record else { continue };
                let Some(parent) = e.parent else { continue };
                let known = self.copies.entry(parent).or_default();
                if !known.iter().any(|(k, ..)| *k == id) {
                    known.push((id, e.event_id, e.received_at_ms, e.body_len));
                }
            }
            after = page.next_cursor;
        }
        self.scanned_from = Some(from);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(body: &[u8]) -> Exported {
        Exported {
            id: None,
            parent_id: None,
            source: Source::Webhook,
            provider: "stripe".into(),
            event_id: "evt_1".into(),
            event_type: "charge.succeeded".into(),
            received_at_ms: 1_764_500_000_123,
            headers: vec![("content-type".into(), "application/json".into()), ("x-a".into(), "1".into())],
            body: body.to_vec(),
        }
    }

    fn round_trip(body: &[u8]) -> Vec<u8> {
        let line = encode_line(&Exported { id: Some(Ulid::nil().to_string()), ..event(body) });
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line: {}", String::from_utf8_lossy(&line));
        let back = decode_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(back, Exported { id: Some(Ulid::nil().to_string()), ..event(body) });
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
        let base = String::from_utf8(encode_line(&event(b"{}"))).unwrap();
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
        let orphan = base.replace("\"v\":1", "\"v\":1,\"parent_id\":\"evt_0\"");
        assert_eq!(decode_line(orphan.trim_end().as_bytes()), Err(LineError::ParentId("evt_0".into())));
        let unknown = base.replace("\"v\":1", "\"v\":1,\"bodyy\":\"x\"");
        assert!(decode_line(unknown.trim_end().as_bytes()).unwrap_err().to_string().contains("bodyy"));
    }

    /// A backfilled event's line says so and reads back as one; a webhook's line has no
    /// `source`, as before the field existed; a source this build does not know is refused.
    #[test]
    fn a_backfilled_events_line_carries_its_source() {
        let backfilled = Exported { source: Source::Backfill, ..event(b"{}") };
        let line = encode_line(&backfilled);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["source"], "backfill");
        assert_eq!(decode_line(&line[..line.len() - 1]).unwrap(), backfilled);
        let webhook = String::from_utf8(encode_line(&event(b"{}"))).unwrap();
        assert!(!webhook.contains("source"), "{webhook}");
        let said = webhook.replace("\"v\":1", "\"v\":1,\"source\":\"webhook\"");
        assert_eq!(decode_line(said.trim_end().as_bytes()).unwrap(), event(b"{}"));
        let odd = webhook.replace("\"v\":1", "\"v\":1,\"source\":\"api\"");
        assert_eq!(decode_line(odd.trim_end().as_bytes()), Err(LineError::Source("api".into())));
    }

    #[test]
    fn lines_number_from_one_skip_blank_lines_and_stop_at_the_first_bad_one() {
        let good = encode_line(&event(b"{}"));
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
        let rules = Rules { max_body_bytes: 1 << 20 };
        let refused = check(&file[..], &rules).unwrap_err();
        assert!(
            matches!(&refused, ImportError::Refused { lines, more: 0 } if lines.len() == 1 && lines[0].0 == 4),
            "{refused:?}"
        );
        assert_eq!(check(&good[..], &rules).unwrap().events, 1);
    }

    #[test]
    fn providers_are_endpoint_names_or_notifier_lanes() {
        for good in ["stripe", "twilio", "eu-stripe_2", "notify.ops"] {
            assert_eq!(valid_provider(good), Ok(()), "{good}");
        }
        for bad in ["", "Stripe", "a/b", "../x", "events", "notify.", "notify.Ops", "x\0y", "notify.notify.x"] {
            assert!(valid_provider(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn check_names_every_refused_line_up_to_a_bound() {
        let rules = Rules { max_body_bytes: 2 };
        let line = |provider: &str, body: &[u8]| encode_line(&Exported { provider: provider.into(), ..event(body) });
        let mut file = [line("stripe", b"{}"), line("Bad", b"{}"), line("stripe", b"{}  ")].concat();
        let Err(ImportError::Refused { lines, more: 0 }) = check(&file[..], &rules) else { panic!() };
        assert_eq!(lines.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2, 3]);
        assert!(matches!(lines[1].1, LineError::TooLarge { len: 4, limit: 2 }), "{lines:?}");
        for _ in 0..MAX_REFUSALS_NAMED {
            file.extend_from_slice(b"not json\n");
        }
        let refused = check(&file[..], &rules).unwrap_err();
        assert!(matches!(&refused, ImportError::Refused { lines, more: 2 } if lines.len() == MAX_REFUSALS_NAMED));
        assert!(refused.to_string().starts_with("line 2: provider `Bad`"), "{refused}");
        assert!(refused.to_string().ends_with("; and 2 more lines refused"), "{refused}");
    }

    /// More events than a page: every one exported, oldest first, over several pages; imported
    /// into a second store in the same order (a second import skips them all); a damaged record
    /// counted and left out; a time filter that starts mid-way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_cover_every_event_in_order_and_an_import_keeps_it() {
        use crate::clock::Clock;
        use crate::store::{InjectDamage, StoreOptions};
        let options = StoreOptions {
            cache_bytes: 1 << 20,
            rejection_log_size: 10,
            log_segment_bytes: 1 << 20,
            tree_flush_every_ms: Some(crate::store::TREE_FLUSH_EVERY_MS),
        };
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
            file.extend_from_slice(&encode_line(e));
        }
        let checked = Checked::default();
        assert_eq!(import(&store, &file[..], &checked).await.unwrap(), Imported { imported: n as u64, skipped: 0 });
        assert_eq!(import(&store, &file[..], &checked).await.unwrap(), Imported { imported: 0, skipped: n as u64 });

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
        // The ids are this store's; the rest is as imported.
        let no_id = |l: Result<(usize, Exported), ImportError>| Exported { id: None, ..l.unwrap().1 };
        let back: Vec<Exported> = lines(&out[..]).map(no_id).collect();
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
        let later: Vec<Exported> = lines(&later[..]).map(no_id).collect();
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
            let line = encode_line(&e);
            prop_assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            prop_assert_eq!(decode_line(&line[..line.len() - 1]).unwrap(), e);
        }
    }
}
