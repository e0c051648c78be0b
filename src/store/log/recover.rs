//! Recovery at open: the frames sled had not durably applied when the last run stopped are
//! applied again, in order, before anything reads the tree.
//!
//! Sled holds a prefix of the batches it was given (each atomic, each with the watermark: the
//! end of the frame it came from). Every frame past the watermark is applied again; those sled
//! already had are written again with the same values. A segment is read frame by frame up to
//! the first bytes that are not a whole frame: the torn end of a write that was never
//! acknowledged (or pages a disk never wrote), which is where that run's log ended. Later
//! segments were started by later runs, and are read as well.

use std::fs::File;
use std::path::Path;

use super::frame::{Header, HEADER};
use super::{apply, list_segments, segment_path, ApplyError, LogError, Position, SEGMENT_MAGIC};
use crate::store::keys;

/// What recovery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Frames applied again.
    pub groups: u64,
    /// Their bytes, bodies included.
    pub bytes: u64,
}

/// Why recovery could not finish: the store does not open, since sled would be missing
/// acknowledged groups.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot read the log's watermark: {0}")]
    Watermark(sled::Error),
    #[error("cannot apply the log's frame ending at {}+{}: {source}", at.segment, at.offset)]
    Apply { at: Position, source: ApplyError },
}

/// Applies every whole frame of the log in `dir` that lies past the watermark `tree` holds.
pub fn recover(dir: &Path, tree: &sled::Tree) -> Result<Recovered, RecoverError> {
    let mut done = Recovered::default();
    if !dir.exists() {
        return Ok(done);
    }
    let applied = match tree.get(keys::LOG_APPLIED).map_err(RecoverError::Watermark)? {
        None => None,
        Some(v) => match Position::decode(&v) {
            Some(at) => Some(at),
            None => {
                // Damage that `store verify` reports. Replaying from any other point could set
                // keys back to older values, so nothing is replayed.
                tracing::warn!("the log's watermark does not decode; no frame is applied again");
                return Ok(done);
            }
        },
    };
    let mut segments = list_segments(dir)?;
    segments.sort_unstable();
    for segment in segments {
        let from = match applied {
            Some(at) if segment < at.segment => continue,
            Some(at) if segment == at.segment => at.offset.max(SEGMENT_MAGIC.len() as u64),
            _ => SEGMENT_MAGIC.len() as u64,
        };
        let path = segment_path(dir, segment);
        let file = File::open(&path).map_err(|e| LogError::file("open", &path, e))?;
        let size = file.metadata().map_err(|e| LogError::file("read", &path, e))?.len();
        let mut magic = [0; SEGMENT_MAGIC.len()];
        if super::read_exact_at(&file, &mut magic, 0).is_err() || magic != SEGMENT_MAGIC {
            // Bodies from before the log had frames: nothing to apply.
            continue;
        }
        let mut at = from;
        while let Some((header, payload)) = read_frame(&file, at, size) {
            let end = Position { segment, offset: at + (HEADER + payload.len()) as u64 };
            apply(tree, &payload[header.bodies_len as usize..], Some(end))
                .map_err(|source| RecoverError::Apply { at: end, source })?;
            done.groups += 1;
            done.bytes += end.offset - at;
            at = end.offset;
        }
        if at < size {
            tracing::warn!(
                segment,
                bytes = size - at,
                "the log's segment ends with bytes that are not a whole frame: a write cut short, \
                 never acknowledged; they are left in place and never read"
            );
        }
    }
    Ok(done)
}

/// The frame at `at`, if a whole one is there.
fn read_frame(file: &File, at: u64, size: u64) -> Option<(Header, Vec<u8>)> {
    if at.checked_add(HEADER as u64)? > size {
        return None;
    }
    let mut head = [0; HEADER];
    super::read_exact_at(file, &mut head, at).ok()?;
    let header = Header::parse(&head)?;
    // A damaged length may name up to 4 GiB: what the segment cannot hold is not allocated.
    if at + (HEADER as u64) + u64::from(header.payload_len) > size {
        return None;
    }
    let mut payload = vec![0; header.payload_len as usize];
    super::read_exact_at(file, &mut payload, at + HEADER as u64).ok()?;
    header.holds(&payload).then_some((header, payload))
}
