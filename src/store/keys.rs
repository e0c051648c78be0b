//! The key layout of the one sled tree.
//!
//! Everything lives in a single tree so that one `sled::Batch` (atomic within a tree) can hold an
//! event record (which says where its body is in the log, synced before the batch that points at
//! it), its dedup key and its counters: a crash leaves all of them or none. Prefixes
//! keep the kinds apart; ids are ULIDs stored big-endian, so key order is arrival order.
//!
//! | prefix | key                                              | value                   |
//! |--------|--------------------------------------------------|-------------------------|
//! | `e`    | id                                               | `EventRecord`           |
//! | `b`    | id                                               | raw body (events from before the log)      |
//! | `d`    | provider, NUL, provider's event id               | id                      |
//! | `a`    | id, attempt number (u32)                         | `AttemptRecord`         |
//! | `q`    | provider, NUL, due time (ms, u64), id, target    | `JobRecord`             |
//! | `j`    | id, target                                       | the job's `q` key       |
//! | `c`    | counter name                                     | u64                     |
//! | `r`    | id                                               | `RejectionRecord`       |
//! | `s`    | alert key (rule and subject, see `alerts/`)      | `AlertStateRecord`      |
//! | `h`    | (nothing: the one key is `h`)                    | last heartbeat, ms (i64, big-endian) |
//! | `k`    | endpoint name                                    | `CheckReportRecord` (`check-app`'s last report) |
//! | `w`    | (nothing: the one key is `w`)                    | the log's watermark: segment (u32), offset (u64), big-endian |
//!
//! The queue is ordered by due time within each provider, so the delivery engine reads the
//! due jobs of a provider whose breaker is closed and never touches those of one that is open.

use ulid::Ulid;

pub const EVENT: u8 = b'e';
pub const BODY: u8 = b'b';
pub const DEDUP: u8 = b'd';
pub const COUNTER: u8 = b'c';
pub const REJECTION: u8 = b'r';
pub const ATTEMPT: u8 = b'a';
pub const JOB: u8 = b'q';
pub const JOB_OF: u8 = b'j';
pub const ALERT: u8 = b's';
/// `k` + endpoint name: the last `check-app` report of that endpoint.
pub const CHECK_REPORT: u8 = b'k';
/// The running server's last sign of life: one key, overwritten every few seconds, so the next
/// start knows when the previous run stopped (see `Store::heartbeat`).
pub const HEARTBEAT: [u8; 1] = [b'h'];
/// The log's watermark: the end of the last frame applied to the tree (see `log/`), set in every
/// batch, so that after a crash the tree says itself how far it is durable.
pub const LOG_APPLIED: [u8; 1] = [b'w'];

/// `k` + the endpoint's name: its last `check-app` report.
pub fn check_report_key(endpoint: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + endpoint.len());
    k.push(CHECK_REPORT);
    k.extend_from_slice(endpoint.as_bytes());
    k
}

/// `s` + the alert's key: the state of one firing alert.
pub fn alert_key(alert: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + alert.len());
    k.push(ALERT);
    k.extend_from_slice(alert.as_bytes());
    k
}

/// `q` + provider + NUL: the start of one provider's queue.
pub fn job_prefix(provider: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + provider.len());
    k.push(JOB);
    k.extend_from_slice(provider.as_bytes());
    k.push(0);
    k
}

pub fn job_key(provider: &str, due_ms: i64, id: Ulid, target: u8) -> Vec<u8> {
    let mut k = job_prefix(provider);
    k.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&u128::from(id).to_be_bytes());
    k.push(target);
    k
}

/// Due time, id and target index of a job key.
pub fn parse_job_key(key: &[u8]) -> Option<(i64, Ulid, u8)> {
    let n = key.len();
    if n < 1 + 1 + 8 + 16 + 1 {
        return None;
    }
    let due = u64::from_be_bytes(key[n - 25..n - 17].try_into().ok()?) as i64;
    Some((due, ulid_from(&key[n - 17..n - 1])?, key[n - 1]))
}

/// The provider a job key belongs to.
pub fn job_provider(key: &[u8]) -> Option<&str> {
    let n = key.len();
    if n < 1 + 1 + 8 + 16 + 1 || key[n - 26] != 0 {
        return None;
    }
    std::str::from_utf8(&key[1..n - 26]).ok()
}

/// `j` + id + target: where an event's job for one target is.
pub fn job_of_key(id: Ulid, target: u8) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..17].copy_from_slice(&id_key(JOB_OF, id));
    k[17] = target;
    k
}

/// The sequence number of an attempt key.
pub fn attempt_seq(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(17..21)?.try_into().ok()?)).filter(|_| key.len() == 21)
}

pub fn attempt_key(id: Ulid, seq: u32) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[..17].copy_from_slice(&id_key(ATTEMPT, id));
    k[17..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn id_key(prefix: u8, id: Ulid) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(&u128::from(id).to_be_bytes());
    k
}

/// The id in a prefixed key.
pub fn id_of(key: &[u8]) -> Option<Ulid> {
    ulid_from(key.get(1..)?)
}

/// An id stored as 16 big-endian bytes.
pub fn ulid_from(bytes: &[u8]) -> Option<Ulid> {
    let bytes: [u8; 16] = bytes.try_into().ok()?;
    Some(Ulid::from(u128::from_be_bytes(bytes)))
}

/// `d` + provider + NUL + the provider's event id. A provider name never contains NUL.
pub fn dedup_key(provider: &str, event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + provider.len() + event_id.len());
    k.push(DEDUP);
    k.extend_from_slice(provider.as_bytes());
    k.push(0);
    k.extend_from_slice(event_id.as_bytes());
    k
}

pub fn counter_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(COUNTER);
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_and_attempt_keys_read_back() {
        let id = Ulid::new();
        let k = job_key("shop-eu", 1_700_000_000_000, id, 3);
        assert_eq!(parse_job_key(&k), Some((1_700_000_000_000, id, 3)));
        assert_eq!(job_provider(&k), Some("shop-eu"));
        assert_eq!(job_provider(&k[..20]), None);
        assert_eq!(attempt_seq(&attempt_key(id, 70_000)), Some(70_000));
        assert_eq!(attempt_seq(&id_key(ATTEMPT, id)), None);
    }
}
