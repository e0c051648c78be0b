//! What the store keeps, as versioned postcard records.
//!
//! postcard writes fields positionally, so a struct that gains a field cannot decode its old
//! bytes. Every record is therefore an enum whose variants are versions: a new shape is a new
//! variant appended at the end, and old variants keep decoding forever. Enums inside records
//! (like [`Status`]) follow the same rule: append only.

use serde::{Deserialize, Serialize};

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

/// One error in an event's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    pub at_ms: i64,
    pub message: String,
}

/// The audit record of one accepted event. The raw body is kept apart, so status updates never
/// rewrite it and listings never read it: in the body log (`V2`, which says where), or, for
/// events recorded before the body log, under its own key (`V1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventRecord {
    V1(EventV1),
    V2(EventV1, BodyRef),
}

impl EventRecord {
    pub fn into_parts(self) -> (EventV1, Option<BodyRef>) {
        match self {
            EventRecord::V1(e) => (e, None),
            EventRecord::V2(e, body) => (e, Some(body)),
        }
    }

    pub fn from_parts(event: EventV1, body: Option<BodyRef>) -> EventRecord {
        match body {
            None => EventRecord::V1(event),
            Some(body) => EventRecord::V2(event, body),
        }
    }
}

/// Where one body is in the body log, and its checksum, so damage is reported, not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyRef {
    V1 { segment: u32, offset: u64, len: u32, crc32: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventV1 {
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
}

/// A refused request kept in the bounded rejection log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectionRecord {
    V1(RejectionV1),
}

/// Built by [`RejectionV1::bounded`] (`rejection.rs`), which cuts every part that comes from the
/// client, so one entry's size is bounded whatever the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionV1 {
    pub at_ms: i64,
    pub provider: String,
    pub code: String,
    pub message: String,
    pub source_ip: String,
    pub headers: Vec<(String, String)>,
    /// The first bytes of the body only, so a flood of large bad requests cannot fill the disk.
    pub body_prefix: Vec<u8>,
    pub body_len: u64,
}

/// A pending delivery of one event to one target. Its key says when and for whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobRecord {
    V1(JobV1),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobV1 {
    /// The URL, kept with the job so a config change does not redirect work already queued.
    pub target: String,
    /// The attempt this job will make, 1-based within its series.
    pub attempt: u32,
    /// 1 for the first delivery, one more for each replay.
    pub series: u32,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptRecord {
    V1(AttemptV1),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptV1 {
    pub series: u32,
    pub attempt: u32,
    pub at_ms: i64,
    pub target: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_us: u64,
    pub outcome: AttemptOutcome,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encodes every record type into a Vec")
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EventRecord {
        EventRecord::V1(EventV1 {
            provider: "stripe".into(),
            event_id: "evt_1".into(),
            event_type: "charge.succeeded".into(),
            received_at_ms: 1_700_000_000_000,
            source_ip: "127.0.0.1".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body_len: 2,
            signature_verified: true,
            status: Status::Received,
            processing_us: 12,
            attempts: 0,
            last_error: None,
            errors: vec![],
        })
    }

    #[test]
    fn records_round_trip() {
        let r = sample();
        assert_eq!(decode::<EventRecord>(&encode(&r)).unwrap(), r);
    }

    /// The first byte is the version tag; a later variant must not change how V1 reads.
    #[test]
    fn v1_is_tagged_zero() {
        assert_eq!(encode(&sample())[0], 0);
        // Status is an append-only enum too: `Received` is 0, `Duplicate` 5.
        assert_eq!(encode(&Status::Duplicate), vec![5]);
    }

    #[test]
    fn v2_carries_the_body_reference_and_v1_still_reads() {
        let (event, _) = sample().into_parts();
        let body = BodyRef::V1 { segment: 3, offset: 4096, len: 1024, crc32: 0xdead_beef };
        let v2 = EventRecord::from_parts(event.clone(), Some(body));
        let bytes = encode(&v2);
        assert_eq!(bytes[0], 1);
        assert_eq!(decode::<EventRecord>(&bytes).unwrap().into_parts(), (event.clone(), Some(body)));
        assert_eq!(decode::<EventRecord>(&encode(&sample())).unwrap().into_parts(), (event, None));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<EventRecord>(&[7, 1, 2, 3]).is_err());
        assert!(decode::<EventRecord>(&[]).is_err());
    }
}
