//! Reading the store: point lookups and bounded scans straight from sled on the caller's thread
//! (the writer is never asked), and what a read gives back when stored bytes do not read back
//! intact (`Damage`, `StoredEvent`). Separate from the handle because reads share nothing with
//! the writer but the tree, and each answers damage in its place rather than failing.

use std::collections::BTreeMap;

use ulid::Ulid;

use super::{keys, log, record, AlertState, Attempt, Event, Job, Rejection, Source, Status, Store, StoreError};

/// The failure reason (`failures/storage_corrupt`) and error code of stored data that does not
/// read back intact.
pub const STORAGE_CORRUPT: &str = "storage_corrupt";

/// What is wrong with one stored item that does not read back as it was written: a record that
/// does not decode, a body cut short or failing its checksum. Unlike a failed read, it is not
/// transient: reading again gives the same answer, so whatever needs the item gives up on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Damage(pub String);

/// An event as read back for display: each part whole, or what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredEvent {
    Whole(Event, Vec<u8>),
    /// The record reads, its body does not.
    BodyDamaged(Event, Damage),
    /// The record itself does not decode, so nothing of it (not even where its body is) is known.
    RecordDamaged(Damage),
}

/// One entry of the rejection log as read back: its id, and the entry or what is wrong with it.
pub type RejectionEntry = (Ulid, Result<Rejection, Damage>);

/// A queued job that is due.
#[derive(Debug, Clone)]
pub struct DueJob {
    pub key: Vec<u8>,
    pub id: Ulid,
    pub target: u8,
    pub due_ms: i64,
    /// The job, or what is wrong with its record: a damaged job still leaves the queue (as a
    /// dead letter), so it is handed over like any other.
    pub job: Result<Job, Damage>,
}

/// What to list; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub provider: Option<String>,
    pub status: Option<Status>,
    pub event_type: Option<String>,
    /// Only events received at or after / before these times (ms).
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only events that came this way (a webhook, or a backfill from the provider's API).
    pub source: Option<Source>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        self.provider.as_ref().is_none_or(|p| *p == e.provider)
            && self.status.is_none_or(|s| s == e.status)
            && self.event_type.as_ref().is_none_or(|t| *t == e.event_type)
            && self.source.is_none_or(|s| s == e.source)
    }

    /// Whether an event whose record does not decode is listed: it counts as `failed`, and its
    /// provider, type and source are unknown, so a filter on any of them leaves it out.
    pub fn matches_damaged(&self) -> bool {
        self.provider.is_none()
            && self.event_type.is_none()
            && self.source.is_none()
            && self.status.is_none_or(|s| s == Status::Failed)
    }
}

/// A page of events, newest first.
#[derive(Debug)]
pub struct EventPage {
    /// Each event, or what is wrong with its record: one bad record is reported in its place,
    /// it never fails the page.
    pub events: Vec<(Ulid, Result<Event, Damage>)>,
    /// Where the next page starts, when there may be more.
    pub next_cursor: Option<Ulid>,
}

impl Store {
    /// The time (ms) of the last [`Store::heartbeat`], `None` when there never was one. Read at
    /// start, before the first heartbeat of this run, it is when the previous run was last
    /// alive (give or take its interval).
    pub fn last_heartbeat(&self) -> Result<Option<i64>, StoreError> {
        match self.inner.tree.get(keys::HEARTBEAT).map_err(read_err)? {
            None => Ok(None),
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(|b| Some(i64::from_be_bytes(b)))
                .map_err(|_| StoreError::Corrupt(format!("the heartbeat is {} bytes, not 8", v.len()))),
        }
    }

    /// The last `check-app` report of `endpoint`, if one was kept.
    pub fn check_report(&self, endpoint: &str) -> Result<Option<record::CheckReport>, StoreError> {
        let Some(v) = self.inner.tree.get(keys::check_report_key(endpoint)).map_err(read_err)? else {
            return Ok(None);
        };
        record::decode_check_report(&v)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("the last check-app report of {endpoint} does not decode: {e}")))
    }

    /// The state of every firing alert, by key; one whose record does not decode is its
    /// `Damage`. A short prefix scan: there is one entry per firing alert.
    pub fn alert_states(&self) -> Result<BTreeMap<String, Result<AlertState, Damage>>, StoreError> {
        let mut out = BTreeMap::new();
        for kv in self.inner.tree.scan_prefix([keys::ALERT]) {
            let (k, v) = kv.map_err(read_err)?;
            let key = String::from_utf8_lossy(&k[1..]).into_owned();
            let state = record::decode_alert_state(&v)
                .map_err(|e| Damage(format!("alert {key}: its state does not decode: {e}")));
            out.insert(key, state);
        }
        Ok(out)
    }

    /// The queued job under `key` (from [`Store::take_replays`]), or `None` once it has left the
    /// queue (delivered, replaced by another replay, deleted). Due or not: a replay is due now.
    pub fn queued_job(&self, key: &[u8]) -> Result<Option<DueJob>, StoreError> {
        let Some((due_ms, id, target)) = keys::parse_job_key(key) else { return Ok(None) };
        let Some(v) = self.inner.tree.get(key).map_err(read_err)? else { return Ok(None) };
        let job = record::decode_job(&v)
            .map_err(|e| Damage(format!("event {id}: its delivery job (target {target}) does not decode: {e}")));
        Ok(Some(DueJob { key: key.to_vec(), id, target, due_ms, job }))
    }

    /// Due jobs of one provider in due order, up to `limit`, passing over those `skip` says are
    /// taken; also when the first job after them is due.
    pub fn due_jobs(
        &self,
        provider: &str,
        now_ms: i64,
        limit: usize,
        skip: impl Fn(&[u8]) -> bool,
    ) -> Result<(Vec<DueJob>, Option<i64>), StoreError> {
        let mut due = Vec::new();
        for kv in self.inner.tree.scan_prefix(keys::job_prefix(provider)) {
            let (k, v) = kv.map_err(read_err)?;
            let Some((due_ms, id, target)) = keys::parse_job_key(&k) else { continue };
            if skip(&k) {
                continue;
            }
            if due_ms > now_ms || due.len() >= limit {
                return Ok((due, Some(due_ms)));
            }
            // A record that does not decode is handed over as damaged, in its place: the scan
            // goes on past it, so the rest of the provider's queue is never held up by it.
            let job = match record::decode_job(&v) {
                Ok(job) => Ok(job),
                Err(e) => Err(Damage(format!("event {id}: its delivery job (target {target}) does not decode: {e}"))),
            };
            due.push(DueJob { key: k.to_vec(), id, target, due_ms, job });
        }
        Ok((due, None))
    }

    /// The due time of a provider's first queued job.
    pub fn oldest_job_ms(&self, provider: &str) -> Result<Option<i64>, StoreError> {
        let first = self.inner.tree.scan_prefix(keys::job_prefix(provider)).keys().next();
        Ok(first.transpose().map_err(read_err)?.and_then(|k| keys::parse_job_key(&k)).map(|(due, _, _)| due))
    }

    /// The event's delivery attempts, oldest first; one that does not decode is reported in its
    /// place rather than failing the history.
    pub fn attempts(&self, id: Ulid) -> Result<Vec<Result<Attempt, Damage>>, StoreError> {
        let mut out = Vec::new();
        for kv in self.inner.tree.scan_prefix(keys::id_key(keys::ATTEMPT, id)) {
            let (k, v) = kv.map_err(read_err)?;
            out.push(match record::decode_attempt(&v) {
                Ok(a) => Ok(a),
                Err(e) => {
                    let seq = keys::attempt_seq(&k).map_or_else(|| "?".into(), |n| n.to_string());
                    Err(Damage(format!("event {id}: attempt record {seq} does not decode: {e}")))
                }
            });
        }
        Ok(out)
    }

    /// When the event's next delivery attempt is due (the earliest of its queued jobs), if one is
    /// queued. A due time in the past means the job waits for room or for its breaker.
    pub fn next_attempt_ms(&self, id: Ulid) -> Result<Option<i64>, StoreError> {
        let mut next: Option<i64> = None;
        for kv in self.inner.tree.scan_prefix(keys::id_key(keys::JOB_OF, id)) {
            let (_, job_key) = kv.map_err(read_err)?;
            if let Some((due_ms, _, _)) = keys::parse_job_key(&job_key) {
                next = Some(next.map_or(due_ms, |n| n.min(due_ms)));
            }
        }
        Ok(next)
    }

    /// Whether a delivery of the event is queued.
    pub fn has_pending_job(&self, id: Ulid) -> Result<bool, StoreError> {
        Ok(self.inner.tree.scan_prefix(keys::id_key(keys::JOB_OF, id)).next().transpose().map_err(read_err)?.is_some())
    }

    /// Events newest first, starting below `cursor`. Reads at most `scan_limit` records, so a
    /// filter that matches rarely answers with a partial page and a cursor, never a long scan.
    pub fn list_events(
        &self,
        filter: &EventFilter,
        cursor: Option<Ulid>,
        limit: usize,
        scan_limit: usize,
    ) -> Result<EventPage, StoreError> {
        self.injected_read_failure()?;
        let low = keys::id_key(keys::EVENT, Ulid::from_parts(filter.since_ms.unwrap_or(0).max(0) as u64, 0));
        let high = match (cursor, filter.until_ms) {
            (Some(c), _) => keys::id_key(keys::EVENT, c),
            (None, Some(until)) => keys::id_key(keys::EVENT, Ulid::from_parts(until.max(0) as u64, 0)),
            (None, None) => {
                let mut k = [0xffu8; 17];
                k[0] = keys::EVENT;
                k
            }
        };
        page(self.inner.tree.range(low..high).rev(), filter, limit, scan_limit)
    }

    /// Events oldest first (in the order they were stored), starting after `after`: the order an
    /// export writes, so that importing it stores the events in their first order again. Bounded
    /// like [`Store::list_events`]: at most `scan_limit` records read per call.
    pub fn events_after(
        &self,
        filter: &EventFilter,
        after: Option<Ulid>,
        limit: usize,
        scan_limit: usize,
    ) -> Result<EventPage, StoreError> {
        self.injected_read_failure()?;
        let since = keys::id_key(keys::EVENT, Ulid::from_parts(filter.since_ms.unwrap_or(0).max(0) as u64, 0));
        let low = match after {
            // Just past the cursor: its own key is the smallest key above it with a 0 appended.
            Some(c) => {
                let mut k = keys::id_key(keys::EVENT, c).to_vec();
                k.push(0);
                k.max(since.to_vec())
            }
            None => since.to_vec(),
        };
        let high = match filter.until_ms {
            Some(until) => keys::id_key(keys::EVENT, Ulid::from_parts(until.max(0) as u64, 0)).to_vec(),
            None => {
                let mut k = vec![0xffu8; 17];
                k[0] = keys::EVENT;
                k
            }
        };
        if low >= high {
            return Ok(EventPage { events: Vec::new(), next_cursor: None });
        }
        page(self.inner.tree.range(low..high), filter, limit, scan_limit)
    }

    /// Ids of events older than `before_ms`, and of the oldest beyond `max_events` (0: no cap),
    /// oldest first, at most `limit`.
    pub fn expired(&self, before_ms: i64, max_events: u64, total: u64, limit: usize) -> Result<Vec<Ulid>, StoreError> {
        let over = if max_events > 0 { total.saturating_sub(max_events) } else { 0 };
        let mut out = Vec::new();
        for (i, k) in self.inner.tree.scan_prefix([keys::EVENT]).keys().enumerate() {
            let Some(id) = keys::id_of(&k.map_err(read_err)?) else { continue };
            if (id.timestamp_ms() as i64) >= before_ms && i as u64 >= over {
                break;
            }
            if out.len() >= limit {
                break;
            }
            // Passed over, not counted: a pending delivery keeps its event.
            if !self.has_pending_job(id)? {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The record and raw body of one event by our id; `Corrupt` when either is damaged.
    pub fn get_event(&self, id: Ulid) -> Result<Option<(Event, Vec<u8>)>, StoreError> {
        let Some((mut event, body)) = self.record(id)? else {
            return Ok(None);
        };
        let body = self.body(id, &mut event, body)?.map_err(|d| StoreError::Corrupt(d.0))?;
        Ok(Some((event, body)))
    }

    /// One event by our id, for display: whatever of it reads back, and what is wrong with the
    /// rest. `Err` only when the store cannot be read at all.
    pub fn read_event(&self, id: Ulid) -> Result<Option<StoredEvent>, StoreError> {
        self.injected_read_failure()?;
        let Some(bytes) = self.inner.tree.get(keys::id_key(keys::EVENT, id)).map_err(read_err)? else {
            return Ok(None);
        };
        let (mut event, body) = match record::decode_event(&bytes) {
            Ok(parts) => parts,
            Err(e) => return Ok(Some(StoredEvent::RecordDamaged(record_damage(id, &e)))),
        };
        Ok(Some(match self.body(id, &mut event, body)? {
            Ok(bytes) => StoredEvent::Whole(event, bytes),
            Err(damage) => StoredEvent::BodyDamaged(event, damage),
        }))
    }

    /// An event's body, and its headers into `event` when the log holds them: the outer error is
    /// a failed read (try later), the inner one damage.
    fn body(
        &self,
        id: Ulid,
        event: &mut Event,
        at: Option<record::BodyRef>,
    ) -> Result<Result<Vec<u8>, Damage>, StoreError> {
        match at {
            Some(r) => match log::read_parts(&self.inner.log_dir, r) {
                Ok((headers, body)) => match record::decode_headers(&headers) {
                    Ok(h) if !headers.is_empty() => {
                        event.headers = h;
                        Ok(Ok(body))
                    }
                    Ok(_) => Ok(Ok(body)),
                    Err(e) => Ok(Err(Damage(format!("event {id}: its headers in the log do not decode: {e}")))),
                },
                Err(log::ReadError::Damaged(e)) => Ok(Err(Damage(format!("event {id}: {e}")))),
                Err(log::ReadError::Io(e)) => Err(StoreError::Unavailable(format!("event {id}: {e}"))),
            },
            // Written before the log: the body is inline.
            None => {
                let inline = self.inner.tree.get(keys::id_key(keys::BODY, id)).map_err(read_err)?;
                Ok(Ok(inline.map(|b| b.to_vec()).unwrap_or_default()))
            }
        }
    }

    /// The record of one event by our id, without reading its body: nor its headers, then, when
    /// the log holds them beside the body (every event stored since they moved there).
    pub fn get_record(&self, id: Ulid) -> Result<Option<Event>, StoreError> {
        Ok(self.record(id)?.map(|(event, _)| event))
    }

    fn record(&self, id: Ulid) -> Result<Option<(Event, Option<record::BodyRef>)>, StoreError> {
        let Some(bytes) = self.inner.tree.get(keys::id_key(keys::EVENT, id)).map_err(read_err)? else {
            return Ok(None);
        };
        let parts = record::decode_event(&bytes).map_err(|e| StoreError::Corrupt(record_damage(id, &e).0))?;
        Ok(Some(parts))
    }

    /// Our id for a provider's event id, if it was recorded.
    pub fn find_by_event_id(&self, provider: &str, event_id: &str) -> Result<Option<Ulid>, StoreError> {
        let v = self.inner.tree.get(keys::dedup_key(provider, event_id)).map_err(read_err)?;
        Ok(v.and_then(|v| keys::ulid_from(&v)))
    }

    /// The newest entries of the rejection log, newest first. An entry that does not decode is
    /// returned in its place as its `Damage`, as the event lists do, so one bad record never
    /// hides the rest of the log.
    pub fn recent_rejections(&self, limit: usize) -> Result<Vec<RejectionEntry>, StoreError> {
        let mut out = Vec::new();
        for kv in self.inner.tree.scan_prefix([keys::REJECTION]).rev().take(limit) {
            let (k, v) = kv.map_err(read_err)?;
            let id = keys::id_of(&k).unwrap_or_default();
            let r = record::decode_rejection(&v)
                .map_err(|e| Damage(format!("rejection {id}: the record does not decode: {e}")));
            out.push((id, r));
        }
        Ok(out)
    }
}

/// One page of event records from `records` (a range of the tree, in either direction): at most
/// `limit` that `filter` takes, reading at most `scan_limit`; the cursor is the last one read.
fn page(
    records: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    filter: &EventFilter,
    limit: usize,
    scan_limit: usize,
) -> Result<EventPage, StoreError> {
    let mut events = Vec::new();
    let mut last = None;
    for (scanned, kv) in records.enumerate() {
        if scanned >= scan_limit || events.len() >= limit {
            return Ok(EventPage { events, next_cursor: last });
        }
        let (k, v) = kv.map_err(read_err)?;
        let Some(id) = keys::id_of(&k) else { continue };
        last = Some(id);
        match record::decode_event(&v) {
            Ok((e, _)) => {
                if filter.matches(&e) {
                    events.push((id, Ok(e)));
                }
            }
            Err(e) if filter.matches_damaged() => events.push((id, Err(record_damage(id, &e)))),
            Err(_) => {}
        }
    }
    Ok(EventPage { events, next_cursor: None })
}

fn record_damage(id: Ulid, e: &record::DecodeError) -> Damage {
    Damage(format!("event {id}: the record does not decode: {e}"))
}

pub(super) fn read_err(e: sled::Error) -> StoreError {
    StoreError::Unavailable(format!("read failed: {e}"))
}
