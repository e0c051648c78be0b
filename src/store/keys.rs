//! The key layout of the one sled tree.
//!
//! Everything lives in a single tree so that one `sled::Batch` (atomic within a tree) can hold an
//! event, its body, its dedup key and its counters: a crash leaves all of them or none. Prefixes
//! keep the kinds apart; ids are ULIDs stored big-endian, so key order is arrival order.

use ulid::Ulid;

pub const EVENT: u8 = b'e';
pub const BODY: u8 = b'b';
pub const DEDUP: u8 = b'd';
pub const COUNTER: u8 = b'c';
pub const REJECTION: u8 = b'r';

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
