//! What the store keeps, as versioned postcard records, and the domain types the rest of the
//! program sees instead of them.
//!
//! postcard writes fields positionally, so a struct that gains a field cannot decode its old
//! bytes. Every record is therefore an enum whose variants are versions: a new shape is a new
//! variant appended at the end, and old variants keep decoding forever. Enums inside records
//! (like [`Status`]) follow the same rule: append only.
//!
//! The record enums and their versioned structs are private to this file. The domain types
//! ([`Event`], [`Job`], [`Attempt`], [`Rejection`], [`BodyRef`]) carry no version and travel
//! through `http/` and `delivery/`; the `encode_*`/`decode_*` functions below are the only way
//! between the two, so a new record version changes this file alone. postcard writes variant
//! indexes and field order, never names: the names here can change, the order cannot.

use serde::{Deserialize, Serialize};

pub use super::chaos::ChaosMark;

/// The life of an event. Append new states at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    Received,
    Processing,
    Processed,
    Retrying,
    Failed,
    Duplicate,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Received, Status::Processing, Status::Processed, Status::Retrying, Status::Failed, Status::Duplicate];
    /// The statuses a stored event can have: a duplicate is counted under its first copy, never
    /// stored as an event, so no event is ever `Duplicate`.
    pub const STORED: [Status; 5] =
        [Status::Received, Status::Processing, Status::Processed, Status::Retrying, Status::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Processing => "processing",
            Status::Processed => "processed",
            Status::Retrying => "retrying",
            Status::Failed => "failed",
            Status::Duplicate => "duplicate",
        }
    }
}

/// How an event reached the store. Append new sources at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Source {
    /// A request to an endpoint: signed by the provider (or an edited copy of one, see
    /// [`Event::parent`]).
    #[default]
    Webhook,
    /// Read from the provider's API after its webhook was missed (`stagehook backfill`): it came
    /// over TLS with the configured credential, never with a webhook signature.
    Backfill,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Webhook, Source::Backfill];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Backfill => "backfill",
        }
    }
}

/// One error in an event's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEntry {
    pub at_ms: i64,
    pub message: String,
}

/// An accepted event's audit record: what it was, where from, and how its delivery goes. The
/// raw body is kept apart (see [`BodyRef`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub received_at_ms: i64,
    pub source_ip: String,
    /// Request headers, names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub signature_verified: bool,
    pub status: Status,
    /// Time from the request's arrival to its hand-over to the store (guards, verification,
    /// validation), in microseconds.
    pub processing_us: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub errors: Vec<ErrorEntry>,
    /// The event this one is an edited copy of (an edit and replay). A copy was made here, not
    /// received, so no provider signature of it was ever verified.
    pub parent: Option<ulid::Ulid>,
    pub source: Source,
}

/// Where one event's bytes are in the log, and their checksum, so damage is reported, not
/// served: its headers (encoded, the first `headers` bytes; none for an event stored before
/// headers moved out of the record), then its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRef {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
    pub crc32: u32,
    pub headers: u32,
}

/// An alert that is firing, as its evaluator last recorded it (`alerts/`): kept so that a
/// restart neither fires it again nor forgets to send its `resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertState {
    /// When the condition was first seen to hold.
    pub since_ms: i64,
    /// When its last notification (the firing one, or a repeat) was queued.
    pub last_sent_ms: i64,
}

/// A refused request kept in the bounded rejection log. Built by [`Rejection::bounded`]
/// (`rejection.rs`), which cuts every part that comes from the client, so one entry's size is
/// bounded whatever the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub at_ms: i64,
    pub provider: String,
    pub code: String,
    pub message: String,
    pub source_ip: String,
    pub headers: Vec<(String, String)>,
    /// The first bytes of the body only, so a flood of large bad requests cannot fill the disk.
    pub body_prefix: Vec<u8>,
    pub body_len: u64,
    /// Why a signature probably failed (a code and a detail), when it was worked out.
    pub diagnosis: Option<(String, String)>,
}

/// A pending delivery of one event to one target. Its key says when and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The URL, kept with the job so a config change does not redirect work already queued.
    pub target: String,
    /// The attempt this job will make, 1-based within its series.
    pub attempt: u32,
    /// 1 for the first delivery, one more for each replay.
    pub series: u32,
    /// What chaos delivery did to this job, when it did something (`[providers.<name>.chaos]`).
    pub chaos: Option<ChaosMark>,
}

/// How an attempt ended. Append new outcomes at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptOutcome {
    Delivered,
    WillRetry,
    /// The last attempt of its series failed, or the app refused for good.
    Failed,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::WillRetry => "will_retry",
            AttemptOutcome::Failed => "failed",
        }
    }
}

/// One delivery attempt, in the event's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub series: u32,
    pub attempt: u32,
    pub at_ms: i64,
    pub target: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_us: u64,
    pub outcome: AttemptOutcome,
    /// What the app answered, when it answered (a transport error has none).
    pub answer: Option<AttemptAnswer>,
    /// The provider's published delivery timeout, when the attempt took longer than it.
    pub slower_than: Option<SlowerThan>,
    /// What chaos delivery did to this attempt's job, when it did something.
    pub chaos: Option<ChaosMark>,
}

/// What the app answered to one attempt, as much of it as is kept: bounded by the delivery
/// client (headers) and `delivery.capture_body_bytes` (body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptAnswer {
    /// Response headers, names lowercase, in the order received; stored whole, redacted
    /// wherever they are shown, like request headers.
    pub headers: Vec<(String, String)>,
    /// The first bytes of the body.
    pub body: Vec<u8>,
    /// The body's whole length: more than `body.len()` when the body was cut.
    pub body_len: u64,
}

/// A provider's published delivery timeout that an attempt took longer than.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowerThan {
    /// The provider as its documentation names it (`Slack`).
    pub provider: String,
    pub timeout_ms: u64,
    /// Whether that provider would have sent the event again (GitHub does not).
    pub retried: bool,
}

/// Stored bytes that do not decode as the record they should be.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(postcard::Error);

/// An event record, with where its body is (`None`: inline, from before the log). A
/// webhook's event that is not a copy stays `V1` or `V2`, and a webhook's copy `V3`, byte for
/// byte what earlier versions wrote; only a backfilled event needs `V4`, which says so.
pub fn encode_event(mut event: Event, body: Option<BodyRef>) -> Vec<u8> {
    let parent = event.parent.take();
    let source = event.source;
    let fields = EventFields::from(event);
    encode(&match (body, parent, source) {
        (None, None, Source::Webhook) => EventRecord::V1(fields),
        (Some(body), None, Source::Webhook) => EventRecord::V2(fields, body.into()),
        (body, Some(parent), Source::Webhook) => {
            EventRecord::V3(fields, body.map(BodyRefRecord::from), u128::from(parent))
        }
        (body, parent, source) => {
            EventRecord::V4(fields, body.map(BodyRefRecord::from), parent.map(u128::from), SourceRecord::from(source))
        }
    })
}

pub fn decode_event(bytes: &[u8]) -> Result<(Event, Option<BodyRef>), DecodeError> {
    Ok(match decode::<EventRecord>(bytes)? {
        EventRecord::V1(fields) => (fields.into(), None),
        EventRecord::V2(fields, body) => (fields.into(), Some(body.into())),
        EventRecord::V3(fields, body, parent) => {
            (Event { parent: Some(parent.into()), ..fields.into() }, body.map(BodyRef::from))
        }
        EventRecord::V4(fields, body, parent, source) => (
            Event { parent: parent.map(ulid::Ulid::from), source: source.into(), ..fields.into() },
            body.map(BodyRef::from),
        ),
    })
}

/// A job without chaos stays `V1`, byte for byte what earlier versions wrote.
pub fn encode_job(job: Job) -> Vec<u8> {
    let Job { target, attempt, series, chaos } = job;
    let v1 = JobV1 { target, attempt, series };
    match chaos {
        None => encode(&JobRecord::V1(v1)),
        Some(mark) => encode(&JobRecord::V2(v1, ChaosV1::from(mark))),
    }
}

pub fn decode_job(bytes: &[u8]) -> Result<Job, DecodeError> {
    let (JobV1 { target, attempt, series }, chaos) = match decode(bytes)? {
        JobRecord::V1(v1) => (v1, None),
        JobRecord::V2(v1, chaos) => (v1, Some(ChaosMark::from(chaos))),
    };
    Ok(Job { target, attempt, series, chaos })
}

pub fn encode_alert_state(state: AlertState) -> Vec<u8> {
    let AlertState { since_ms, last_sent_ms } = state;
    encode(&AlertStateRecord::V1(AlertStateV1 { since_ms, last_sent_ms }))
}

pub fn decode_alert_state(bytes: &[u8]) -> Result<AlertState, DecodeError> {
    let AlertStateRecord::V1(AlertStateV1 { since_ms, last_sent_ms }) = decode(bytes)?;
    Ok(AlertState { since_ms, last_sent_ms })
}

/// The last `check-app` report of an endpoint: when it ran, and the report as its documented
/// JSON (`check_app::Report`), whose shape the API and `--json` promise, so the record stays
/// readable whatever the report type becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub at_ms: i64,
    pub json: String,
}

pub fn encode_check_report(report: CheckReport) -> Vec<u8> {
    let CheckReport { at_ms, json } = report;
    encode(&CheckReportRecord::V1(CheckReportV1 { at_ms, json }))
}

pub fn decode_check_report(bytes: &[u8]) -> Result<CheckReport, DecodeError> {
    let CheckReportRecord::V1(CheckReportV1 { at_ms, json }) = decode(bytes)?;
    Ok(CheckReport { at_ms, json })
}

/// An attempt with neither an answer nor a slow flag (a transport error within the provider's
/// timeout, a dead letter of damaged data) stays `V1`, byte for byte what earlier versions wrote;
/// one without chaos stays `V1` or `V2`; only chaos makes a `V3`.
pub fn encode_attempt(attempt: Attempt) -> Vec<u8> {
    let Attempt { series, attempt, at_ms, target, status, error, duration_us, outcome, answer, slower_than, chaos } =
        attempt;
    let v1 = AttemptV1 { series, attempt, at_ms, target, status, error, duration_us, outcome };
    let answer = answer.map(|AttemptAnswer { headers, body, body_len }| AnswerV1 { headers, body, body_len });
    let slower_than =
        slower_than.map(|SlowerThan { provider, timeout_ms, retried }| SlowerV1 { provider, timeout_ms, retried });
    match (answer, slower_than, chaos) {
        (None, None, None) => encode(&AttemptRecord::V1(v1)),
        (answer, slower_than, None) => encode(&AttemptRecord::V2(v1, answer, slower_than)),
        (answer, slower_than, Some(mark)) => encode(&AttemptRecord::V3(
            v1,
            answer,
            slower_than,
            ChaosV1::from(mark),
            mark.reordered_after.map(u128::from),
        )),
    }
}

pub fn decode_attempt(bytes: &[u8]) -> Result<Attempt, DecodeError> {
    let (v1, answer, slower_than, chaos) = match decode(bytes)? {
        AttemptRecord::V1(v1) => (v1, None, None, None),
        AttemptRecord::V2(v1, answer, slower) => (v1, answer, slower, None),
        AttemptRecord::V3(v1, answer, slower, chaos, after) => (
            v1,
            answer,
            slower,
            Some(ChaosMark { reordered_after: after.map(ulid::Ulid::from), ..ChaosMark::from(chaos) }),
        ),
    };
    let AttemptV1 { series, attempt, at_ms, target, status, error, duration_us, outcome } = v1;
    Ok(Attempt {
        series,
        attempt,
        at_ms,
        target,
        status,
        error,
        duration_us,
        outcome,
        answer: answer.map(|AnswerV1 { headers, body, body_len }| AttemptAnswer { headers, body, body_len }),
        slower_than: slower_than.map(|SlowerV1 { provider, timeout_ms, retried }| SlowerThan {
            provider,
            timeout_ms,
            retried,
        }),
        chaos,
    })
}

/// An entry without a diagnosis stays `V1`, byte for byte what earlier versions wrote.
pub fn encode_rejection(rejection: Rejection) -> Vec<u8> {
    let Rejection { at_ms, provider, code, message, source_ip, headers, body_prefix, body_len, diagnosis } = rejection;
    let v1 = RejectionV1 { at_ms, provider, code, message, source_ip, headers, body_prefix, body_len };
    match diagnosis {
        None => encode(&RejectionRecord::V1(v1)),
        Some((code, detail)) => encode(&RejectionRecord::V2(v1, code, detail)),
    }
}

pub fn decode_rejection(bytes: &[u8]) -> Result<Rejection, DecodeError> {
    let (v1, diagnosis) = match decode(bytes)? {
        RejectionRecord::V1(v1) => (v1, None),
        RejectionRecord::V2(v1, code, detail) => (v1, Some((code, detail))),
    };
    let RejectionV1 { at_ms, provider, code, message, source_ip, headers, body_prefix, body_len } = v1;
    Ok(Rejection { at_ms, provider, code, message, source_ip, headers, body_prefix, body_len, diagnosis })
}

/// The codec itself, for the append-only enums records embed ([`Status`], [`AttemptOutcome`]);
/// records go through the functions above.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encodes every record type into a Vec")
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    postcard::from_bytes(bytes).map_err(DecodeError)
}

// The records as stored. Private: a new shape is a new variant here and a change to the
// conversions above, nothing else.

/// The audit record of one accepted event. The raw body is kept apart, so status updates never
/// rewrite it and listings never read it: in the log (`V2`, which says where), or, for
/// events recorded before the log, under its own key (`V1`). Both versions carry the same
/// [`EventFields`]; `V2` adds the body's place, `V3` (an edited copy) the event it copies, `V4`
/// (an event that did not come as a webhook) how it came, with an optional parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum EventRecord {
    V1(EventFields),
    V2(EventFields, BodyRefRecord),
    V3(EventFields, Option<BodyRefRecord>, u128),
    V4(EventFields, Option<BodyRefRecord>, Option<u128>, SourceRecord),
}

/// [`Source`] as stored: its own append-only enum, so the domain type can be renamed or gain
/// derives without touching bytes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum SourceRecord {
    Webhook,
    Backfill,
}

impl From<Source> for SourceRecord {
    fn from(s: Source) -> SourceRecord {
        match s {
            Source::Webhook => SourceRecord::Webhook,
            Source::Backfill => SourceRecord::Backfill,
        }
    }
}

impl From<SourceRecord> for Source {
    fn from(s: SourceRecord) -> Source {
        match s {
            SourceRecord::Webhook => Source::Webhook,
            SourceRecord::Backfill => Source::Backfill,
        }
    }
}

/// The fields of [`EventRecord`] `V1` and `V2`. A new field means a new struct and a new
/// variant, never a change here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EventFields {
    provider: String,
    event_id: String,
    event_type: String,
    received_at_ms: i64,
    source_ip: String,
    headers: Vec<(String, String)>,
    body_len: u64,
    signature_verified: bool,
    status: Status,
    processing_us: u64,
    attempts: u32,
    last_error: Option<String>,
    errors: Vec<ErrorV1>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ErrorV1 {
    at_ms: i64,
    message: String,
}

impl From<Event> for EventFields {
    fn from(e: Event) -> EventFields {
        EventFields {
            provider: e.provider,
            event_id: e.event_id,
            event_type: e.event_type,
            received_at_ms: e.received_at_ms,
            source_ip: e.source_ip,
            headers: e.headers,
            body_len: e.body_len,
            signature_verified: e.signature_verified,
            status: e.status,
            processing_us: e.processing_us,
            attempts: e.attempts,
            last_error: e.last_error,
            // Same layout both ways, so the vector is reused, not copied.
            errors: e.errors.into_iter().map(|x| ErrorV1 { at_ms: x.at_ms, message: x.message }).collect(),
        }
    }
}

impl From<EventFields> for Event {
    fn from(e: EventFields) -> Event {
        Event {
            provider: e.provider,
            event_id: e.event_id,
            event_type: e.event_type,
            received_at_ms: e.received_at_ms,
            source_ip: e.source_ip,
            headers: e.headers,
            body_len: e.body_len,
            signature_verified: e.signature_verified,
            status: e.status,
            processing_us: e.processing_us,
            attempts: e.attempts,
            last_error: e.last_error,
            errors: e.errors.into_iter().map(|x| ErrorEntry { at_ms: x.at_ms, message: x.message }).collect(),
            parent: None,
            source: Source::Webhook,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum BodyRefRecord {
    V1 {
        segment: u32,
        offset: u64,
        len: u32,
        crc32: u32,
    },
    /// The event's headers are in the log before its body, no longer in its record.
    V2 {
        segment: u32,
        offset: u64,
        len: u32,
        crc32: u32,
        headers: u32,
    },
}

impl From<BodyRef> for BodyRefRecord {
    fn from(BodyRef { segment, offset, len, crc32, headers }: BodyRef) -> BodyRefRecord {
        match headers {
            0 => BodyRefRecord::V1 { segment, offset, len, crc32 },
            headers => BodyRefRecord::V2 { segment, offset, len, crc32, headers },
        }
    }
}

impl From<BodyRefRecord> for BodyRef {
    fn from(r: BodyRefRecord) -> BodyRef {
        match r {
            BodyRefRecord::V1 { segment, offset, len, crc32 } => BodyRef { segment, offset, len, crc32, headers: 0 },
            BodyRefRecord::V2 { segment, offset, len, crc32, headers } => {
                BodyRef { segment, offset, len, crc32, headers }
            }
        }
    }
}

/// An event's headers as the log holds them, before its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum HeadersRecord {
    V1(Vec<(String, String)>),
}

/// The headers' bytes for the log. Empty when there are none, so an event without headers
/// needs no header part.
pub fn encode_headers(headers: Vec<(String, String)>) -> Vec<u8> {
    encode_raw_headers(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())))
}

/// [`encode_headers`] of (name, raw value) pairs as a request carries them, without an owned
/// copy of each: the same bytes, a value that is not UTF-8 kept as lossily as an owned copy
/// would keep it.
pub fn encode_raw_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    #[derive(Serialize)]
    enum HeadersRecordRef<'a> {
        V1(Vec<(&'a str, std::borrow::Cow<'a, str>)>),
    }
    let pairs: Vec<_> = headers.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(v))).collect();
    match pairs.is_empty() {
        true => Vec::new(),
        false => encode(&HeadersRecordRef::V1(pairs)),
    }
}

pub fn decode_headers(bytes: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    match bytes.is_empty() {
        true => Ok(Vec::new()),
        false => decode(bytes).map(|HeadersRecord::V1(h)| h),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum RejectionRecord {
    V1(RejectionV1),
    /// With a diagnosis: its code and detail.
    V2(RejectionV1, String, String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RejectionV1 {
    at_ms: i64,
    provider: String,
    code: String,
    message: String,
    source_ip: String,
    headers: Vec<(String, String)>,
    body_prefix: Vec<u8>,
    body_len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum JobRecord {
    V1(JobV1),
    /// With what chaos delivery decided for it.
    V2(JobV1, ChaosV1),
}

/// What chaos decided for a job, as stored in a job (`JobRecord::V2`) and in its attempt
/// (`AttemptRecord::V3`, which adds the event it went out after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ChaosV1 {
    delay_ms: u64,
    reorder_ms: u64,
    duplicate_after_ms: Option<u64>,
    duplicated: bool,
}

impl From<ChaosMark> for ChaosV1 {
    fn from(m: ChaosMark) -> ChaosV1 {
        ChaosV1 {
            delay_ms: m.delay_ms,
            reorder_ms: m.reorder_ms,
            duplicate_after_ms: m.duplicate_after_ms,
            duplicated: m.duplicated,
        }
    }
}

impl From<ChaosV1> for ChaosMark {
    fn from(c: ChaosV1) -> ChaosMark {
        ChaosMark {
            delay_ms: c.delay_ms,
            reorder_ms: c.reorder_ms,
            duplicate_after_ms: c.duplicate_after_ms,
            duplicated: c.duplicated,
            reordered_after: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct JobV1 {
    target: String,
    attempt: u32,
    series: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum CheckReportRecord {
    V1(CheckReportV1),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CheckReportV1 {
    at_ms: i64,
    json: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum AlertStateRecord {
    V1(AlertStateV1),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AlertStateV1 {
    since_ms: i64,
    last_sent_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum AttemptRecord {
    V1(AttemptV1),
    /// With what the app answered and, when the attempt was slower than its provider's
    /// published timeout, that timeout.
    V2(AttemptV1, Option<AnswerV1>, Option<SlowerV1>),
    /// With what chaos delivery did: what its job was given, and the event (our id) that arrived
    /// later and went out before it.
    V3(AttemptV1, Option<AnswerV1>, Option<SlowerV1>, ChaosV1, Option<u128>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AnswerV1 {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    body_len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SlowerV1 {
    provider: String,
    timeout_ms: u64,
    retried: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AttemptV1 {
    series: u32,
    attempt: u32,
    at_ms: i64,
    target: String,
    status: Option<u16>,
    error: Option<String>,
    duration_us: u64,
    outcome: AttemptOutcome,
}

#[cfg(test)]
pub(crate) mod tests;
