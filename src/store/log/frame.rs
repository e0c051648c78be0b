//! The log's record of one group: a frame.
//!
//! A frame holds everything a group changed: the bodies of its new events, then every write of
//! its sled batch (inserts with their values, removals), in order. Each write is absolute (a
//! record whole, a counter's new value), so applying a frame again gives the same tree: replay
//! needs no knowledge of what an operation meant, only this format.
//!
//! ```text
//! frame  = magic (4) | payload length (u32) | bodies length (u32) | CRC-32 (u32) | payload
//! payload = bodies | writes
//! write  = 1 | key length (u32) | key | value length (u32) | value     (an insert)
//!        | 0 | key length (u32) | key                                  (a removal)
//! ```
//!
//! Integers are little-endian. The CRC covers the two lengths and the payload, so a frame cut
//! anywhere, or whose pages were never written (zeros), is told from a whole one.

/// Marks the start of every frame; a segment's tail of zeros or garbage does not have it.
pub const MAGIC: [u8; 4] = *b"SHG1";
/// Bytes before a frame's payload.
pub const HEADER: usize = 16;

const INSERT: u8 = 1;
const REMOVE: u8 = 0;

/// The writes of one group, encoded as they are made: what the frame holds and what is applied
/// to sled, from the same bytes.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    bytes: Vec<u8>,
}

impl Batch {
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.bytes.reserve(9 + key.len() + value.len());
        self.bytes.push(INSERT);
        put(&mut self.bytes, key);
        put(&mut self.bytes, value);
    }

    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.bytes.push(REMOVE);
        put(&mut self.bytes, key.as_ref());
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// One write read back from a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Write<'a> {
    Insert(&'a [u8], &'a [u8]),
    Remove(&'a [u8]),
}

/// The writes of an encoded batch, in order; `Err` where the bytes do not parse (never for a
/// frame that passed its CRC, whose bytes are the ones [`Batch`] made).
pub fn writes(mut bytes: &[u8]) -> impl Iterator<Item = Result<Write<'_>, BadFrame>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let parsed = (|| {
            let (&op, rest) = bytes.split_first()?;
            let (key, rest) = take(rest)?;
            let (write, rest) = match op {
                INSERT => {
                    let (value, rest) = take(rest)?;
                    (Write::Insert(key, value), rest)
                }
                REMOVE => (Write::Remove(key), rest),
                _ => return None,
            };
            Some((write, rest))
        })();
        match parsed {
            Some((write, rest)) => {
                bytes = rest;
                Some(Ok(write))
            }
            None => {
                bytes = &[];
                Some(Err(BadFrame("a write does not parse".into())))
            }
        }
    })
}

fn take(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rest = &bytes[4..];
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Why bytes of the log are not a whole frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFrame(pub String);

/// Starts a frame in `out`: room for its header, which [`seal`] fills.
pub fn open(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0; HEADER]);
}

/// Finishes the frame `out` holds (header room, then `bodies_len` bytes of bodies): appends the
/// writes, each part in turn, and fills in the header.
pub fn seal(out: &mut Vec<u8>, bodies_len: usize, writes: &[&[u8]]) {
    writes.iter().for_each(|part| out.extend_from_slice(part));
    let payload_len = (out.len() - HEADER) as u32;
    out[0..4].copy_from_slice(&MAGIC);
    out[4..8].copy_from_slice(&payload_len.to_le_bytes());
    out[8..12].copy_from_slice(&(bodies_len as u32).to_le_bytes());
    let crc = checksum(&out[4..12], &out[HEADER..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(lengths: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(lengths);
    h.update(payload);
    h.finalize()
}

/// A frame's header, read: how long its payload is and where its writes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub payload_len: u32,
    pub bodies_len: u32,
    crc: u32,
}

impl Header {
    /// `None` when the bytes are not a frame's header: no magic (zeros, garbage, or the end).
    pub fn parse(bytes: &[u8; HEADER]) -> Option<Header> {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"));
        if bytes[0..4] != MAGIC || u32_at(8) > u32_at(4) {
            return None;
        }
        Some(Header { payload_len: u32_at(4), bodies_len: u32_at(8), crc: u32_at(12) })
    }

    /// Whether `payload` is this frame's, whole.
    pub fn holds(&self, payload: &[u8]) -> bool {
        let mut lengths = [0; 8];
        lengths[..4].copy_from_slice(&self.payload_len.to_le_bytes());
        lengths[4..].copy_from_slice(&self.bodies_len.to_le_bytes());
        payload.len() == self.payload_len as usize && checksum(&lengths, payload) == self.crc
    }
}
