//! The records' round trips, and the fixed bytes of every earlier version, which must decode for
//! ever.

use super::*;

fn sample() -> Event {
    Event {
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
        parent: None,
        source: Source::Webhook,
    }
}

#[test]
fn a_check_report_round_trips_tagged_v1() {
    let report = CheckReport { at_ms: 1_700_000_000_000, json: "{\"ok\":true}".into() };
    let bytes = encode_check_report(report.clone());
    assert_eq!(bytes[0], 0);
    assert_eq!(decode_check_report(&bytes).unwrap(), report);
    assert!(decode_check_report(&[7]).is_err());
}

#[test]
fn records_round_trip() {
    let bytes = encode_event(sample(), None);
    assert_eq!(decode_event(&bytes).unwrap(), (sample(), None));
}

/// The first byte is the version tag; a later variant must not change how V1 reads.
#[test]
fn v1_is_tagged_zero() {
    assert_eq!(encode_event(sample(), None)[0], 0);
    // Status is an append-only enum too: `Received` is 0, `Duplicate` 5.
    assert_eq!(encode(&Status::Duplicate), vec![5]);
}

#[test]
fn v2_carries_the_body_reference_and_v1_still_reads() {
    let body = BodyRef { segment: 3, offset: 4096, len: 1024, crc32: 0xdead_beef, headers: 0 };
    let bytes = encode_event(sample(), Some(body));
    assert_eq!(bytes[0], 1);
    assert_eq!(decode_event(&bytes).unwrap(), (sample(), Some(body)));
    assert_eq!(decode_event(&encode_event(sample(), None)).unwrap(), (sample(), None));
}

/// A copy's parent survives the round trip, with a body reference or without; an event
/// that is not a copy keeps its V1/V2 tag, so the change costs its records nothing.
#[test]
fn v3_carries_the_parent_and_plain_events_keep_their_tags() {
    let body = BodyRef { segment: 1, offset: 8, len: 2, crc32: 7, headers: 0 };
    let copy = Event { parent: Some(ulid::Ulid::from(u128::MAX - 5)), ..sample() };
    let bytes = encode_event(copy.clone(), Some(body));
    assert_eq!(bytes[0], 2);
    assert_eq!(decode_event(&bytes).unwrap(), (copy.clone(), Some(body)));
    assert_eq!(decode_event(&encode_event(copy.clone(), None)).unwrap(), (copy, None));
    assert_eq!(encode_event(sample(), Some(body))[0], 1);
}

/// A backfilled event is `V4`, with or without a body reference or a parent, and reads back
/// as backfilled; the source's own tags are fixed (webhook 0, backfill 1).
#[test]
fn v4_carries_the_source_and_webhook_events_keep_their_tags() {
    let body = BodyRef { segment: 2, offset: 16, len: 2, crc32: 9, headers: 0 };
    let backfilled = Event { source: Source::Backfill, signature_verified: false, ..sample() };
    for (event, body) in [
        (backfilled.clone(), Some(body)),
        (backfilled.clone(), None),
        (Event { parent: Some(ulid::Ulid::from(42u128)), ..backfilled.clone() }, Some(body)),
    ] {
        let bytes = encode_event(event.clone(), body);
        assert_eq!(bytes[0], 3);
        assert_eq!(decode_event(&bytes).unwrap(), (event, body));
    }
    assert_eq!((encode(&SourceRecord::Webhook), encode(&SourceRecord::Backfill)), (vec![0], vec![1]));
    assert_eq!(*encode_event(backfilled, None).last().unwrap(), 1, "the source is the last byte");
    let copy = Event { parent: Some(ulid::Ulid::from(7u128)), ..sample() };
    assert_eq!(
        [encode_event(sample(), None)[0], encode_event(sample(), Some(body))[0], encode_event(copy, None)[0]],
        [0, 1, 2]
    );
}

/// An alert's state keeps its bytes: version tag 0, then two zigzag varints.
#[test]
fn alert_state_round_trips_in_its_v1_bytes() {
    let state = AlertState { since_ms: 1_700_000_000_000, last_sent_ms: 1_700_000_060_000 };
    let bytes = encode_alert_state(state);
    assert_eq!(bytes[0], 0);
    assert_eq!(decode_alert_state(&bytes).unwrap(), state);
    assert_eq!(encode_alert_state(AlertState { since_ms: 1, last_sent_ms: -1 }), vec![0, 2, 1]);
    assert!(decode_alert_state(&[1, 2, 3]).is_err());
}

/// An attempt with the app's answer or a slow flag is `V2` and reads back whole; one with
/// neither keeps its `V1` bytes, and the fixed `V1` bytes below (an attempt recorded before
/// answers were kept) still decode, with no answer.
#[test]
fn v2_attempts_carry_the_answer_and_v1_bytes_still_read() {
    let v1 = will_retry();
    let old = unhex("000102d0afabfef9620f687474703a2f2f6170702f686f6f6b01f70301084854545020353033dc0b01");
    assert_eq!(decode_attempt(&old).unwrap(), v1);
    assert_eq!(encode_attempt(v1.clone()), old);
    let answer = AttemptAnswer {
        headers: vec![("content-type".into(), "text/html".into()), ("set-cookie".into(), "s=1".into())],
        body: b"<h1>down</h1>".to_vec(),
        body_len: 20_000,
    };
    let slow = SlowerThan { provider: "Slack".into(), timeout_ms: 3000, retried: true };
    for (answer, slower_than) in [(Some(answer.clone()), None), (None, Some(slow.clone())), (Some(answer), Some(slow))]
    {
        let attempt = Attempt { answer, slower_than, ..v1.clone() };
        let bytes = encode_attempt(attempt.clone());
        assert_eq!(bytes[0], 1);
        assert_eq!(decode_attempt(&bytes).unwrap(), attempt);
    }
}

/// A job or attempt with chaos is `V2` (job) or `V3` (attempt) and reads back whole; one
/// without keeps its `V1`/`V2` bytes, and the fixed bytes below (written before chaos existed:
/// a job, an attempt with an answer) still decode, with no chaos.
#[test]
fn chaos_marks_are_new_versions_and_old_jobs_and_attempts_still_read() {
    let job = Job { target: "http://app/hook".into(), attempt: 2, series: 1, chaos: None };
    let old_job = unhex("000f687474703a2f2f6170702f686f6f6b0201");
    assert_eq!(decode_job(&old_job).unwrap(), job);
    assert_eq!(encode_job(job.clone()), old_job);
    let mark = ChaosMark {
        delay_ms: 12_000,
        reorder_ms: 340,
        duplicate_after_ms: Some(2500),
        duplicated: false,
        reordered_after: None,
    };
    let marked = Job { chaos: Some(mark), ..job.clone() };
    let bytes = encode_job(marked.clone());
    assert_eq!(bytes[0], 1);
    assert_eq!(decode_job(&bytes).unwrap(), marked);

    let answered = Attempt {
        series: 1,
        attempt: 1,
        at_ms: 1_700_000_001_000,
        target: "http://app/hook".into(),
        status: Some(200),
        error: None,
        duration_us: 900,
        outcome: AttemptOutcome::Delivered,
        answer: Some(AttemptAnswer { headers: vec![], body: b"ok".to_vec(), body_len: 2 }),
        slower_than: None,
        chaos: None,
    };
    let old_attempt = unhex("010101d0afabfef9620f687474703a2f2f6170702f686f6f6b01c801008407000100026f6b0200");
    assert_eq!(decode_attempt(&old_attempt).unwrap(), answered);
    assert_eq!(encode_attempt(answered.clone()), old_attempt);
    for chaos in [
        Some(ChaosMark { reordered_after: Some(ulid::Ulid::from(99u128)), ..mark }),
        Some(ChaosMark { delay_ms: 5, ..ChaosMark::default() }),
    ] {
        for answer in [answered.answer.clone(), None] {
            let attempt = Attempt { chaos, answer, ..answered.clone() };
            let bytes = encode_attempt(attempt.clone());
            assert_eq!(bytes[0], 2);
            assert_eq!(decode_attempt(&bytes).unwrap(), attempt);
        }
    }
    let first = ChaosMark { duplicated: true, ..ChaosMark::default() };
    assert_eq!(decode_job(&encode_job(Job { chaos: Some(first), ..job })).unwrap().chaos, Some(first));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(decode_event(&[7, 1, 2, 3]).is_err());
    assert!(decode_event(&[]).is_err());
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// Bytes written by the code that named its records `EventV1`, `JobV1`, `AttemptV1` and
/// `RejectionV1` and exposed them: they decode to the domain types, and encoding those gives
/// the same bytes back, so renaming and hiding the records changed nothing on disk.
#[test]
fn records_written_before_the_domain_types_decode_byte_for_byte() {
    let event = Event {
        status: Status::Retrying,
        attempts: 2,
        last_error: Some("HTTP 500".into()),
        errors: vec![ErrorEntry { at_ms: 1_700_000_000_500, message: "HTTP 500".into() }],
        ..sample()
    };
    let body = BodyRef { segment: 3, offset: 4096, len: 2, crc32: 0xdead_beef, headers: 0 };
    let job = Job { target: "http://app/hook".into(), attempt: 2, series: 1, chaos: None };
    let attempt = will_retry();
    let rejection = Rejection {
        at_ms: 1_700_000_002_000,
        provider: "stripe".into(),
        code: "invalid_signature".into(),
        message: "no match".into(),
        source_ip: "192.0.2.1".into(),
        headers: vec![("stripe-signature".into(), "t=1,v1=ab".into())],
        body_prefix: b"{}".to_vec(),
        body_len: 2,
        diagnosis: None,
    };
    let v1 = unhex(concat!(
        "0006737472697065056576745f31106368617267652e73756363656564656480a0abfef962093132372e302e302e3101",
        "0c636f6e74656e742d74797065106170706c69636174696f6e2f6a736f6e0201030c020108485454502035303001e8a7",
        "abfef962084854545020353030"
    ));
    let v2 = unhex(concat!(
        "0106737472697065056576745f31106368617267652e73756363656564656480a0abfef962093132372e302e302e3101",
        "0c636f6e74656e742d74797065106170706c69636174696f6e2f6a736f6e0201030c020108485454502035303001e8a7",
        "abfef9620848545450203530300003802002effdb6f50d"
    ));
    let (job_bytes, attempt_bytes, rejection_bytes) = (
        unhex("000f687474703a2f2f6170702f686f6f6b0201"),
        unhex("000102d0afabfef9620f687474703a2f2f6170702f686f6f6b01f70301084854545020353033dc0b01"),
        unhex(concat!(
            "00a0bfabfef9620673747269706511696e76616c69645f7369676e6174757265086e6f206d61746368093139322e302e",
            "322e3101107374726970652d7369676e617475726509743d312c76313d6162027b7d02"
        )),
    );
    assert_eq!(decode_event(&v1).unwrap(), (event.clone(), None));
    assert_eq!(decode_event(&v2).unwrap(), (event.clone(), Some(body)));
    assert_eq!(decode_job(&job_bytes).unwrap(), job);
    assert_eq!(decode_attempt(&attempt_bytes).unwrap(), attempt);
    assert_eq!(decode_rejection(&rejection_bytes).unwrap(), rejection);
    assert_eq!(encode_event(event.clone(), None), v1);
    assert_eq!(encode_event(event, Some(body)), v2);
    assert_eq!(encode_job(job), job_bytes);
    assert_eq!(encode_attempt(attempt), attempt_bytes);
    assert_eq!(encode_rejection(rejection), rejection_bytes);
}

/// A request's headers encoded from its map without owned copies are the bytes the owned pairs
/// encode to, a value that is not UTF-8 included; none at all is no bytes.
#[test]
fn raw_headers_encode_as_their_owned_pairs_do() {
    let raw: [(&str, &[u8]); 3] = [("content-type", b"application/json"), ("x-bin", b"a\xffb"), ("x-e", b"")];
    let owned: Vec<(String, String)> =
        raw.iter().map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned())).collect();
    let bytes = encode_raw_headers(raw.iter().copied());
    assert_eq!(bytes, encode_headers(owned.clone()));
    assert_eq!(decode_headers(&bytes).unwrap(), owned);
    assert!(encode_raw_headers([]).is_empty() && encode_headers(vec![]).is_empty());
    assert_eq!(decode_headers(&[]).unwrap(), Vec::<(String, String)>::new());
}

/// An attempt that will be retried, with neither an answer, a slow flag nor chaos: `V1`'s shape.
fn will_retry() -> Attempt {
    Attempt {
        series: 1,
        attempt: 2,
        at_ms: 1_700_000_001_000,
        target: "http://app/hook".into(),
        status: Some(503),
        error: Some("HTTP 503".into()),
        duration_us: 1500,
        outcome: AttemptOutcome::WillRetry,
        answer: None,
        slower_than: None,
        chaos: None,
    }
}
