//! The body log: raw request bodies, appended to segment files beside the sled database.
//!
//! Bodies are most of the bytes an event brings and are never changed, yet inside sled every
//! insert rewrites whole 16-entry leaf nodes, so kilobyte values cost the writer copies and the
//! disk about twice their size in stale node versions. Here a body is written once, sequentially;
//! the event record in sled keeps only a small [`BodyRef`] to it.
//!
//! Order within one commit: the bodies of the batch are appended and synced first, then the sled
//! batch naming them is applied and flushed. A crash in between leaves bytes no record points
//! at, which are harmless: they are never read, and their segment goes when its last live body
//! does. The store counts live bodies per segment (`segment/<n>` counters, in the same batches as
//! the records), and deletes a segment file once its count reaches zero and it is no longer the
//! one being appended to.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::BodyRef;

/// A segment is closed and a new one started once it reaches this size, by default: small enough
/// that retention frees space in steps, large enough that the folder holds few files.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The counter that holds how many live bodies a segment has.
pub fn segment_counter(segment: u32) -> String {
    format!("segment/{segment:08}")
}

/// The segment a `segment/<n>` counter names.
pub fn segment_of_counter(name: &str) -> Option<u32> {
    name.strip_prefix("segment/")?.parse().ok()
}

/// The directory of the segments, inside the data directory.
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("bodies")
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:08}.log"))
}

/// The writer's side: appends, owned by the writer thread alone.
pub(super) struct BodyLog {
    dir: PathBuf,
    segment: u32,
    file: File,
    /// Bytes of the segment that are on disk (orphans of a crashed commit included).
    len: u64,
    /// Bodies staged for the commit being built, appended at `len`.
    staged: Vec<u8>,
    segment_bytes: u64,
}

impl BodyLog {
    /// Opens the newest segment for appending, creating the directory and the first segment.
    pub fn open(dir: PathBuf, segment_bytes: u64) -> Result<BodyLog, BodyLogError> {
        std::fs::create_dir_all(&dir).map_err(|e| BodyLogError::file("create", &dir, e))?;
        let newest = list_segments(&dir)?.into_iter().max().unwrap_or(1);
        let (file, len) = open_segment(&dir, newest)?;
        Ok(BodyLog { dir, segment: newest, file, len, staged: Vec::new(), segment_bytes })
    }

    /// The segment being appended to: never deleted, however few live bodies it holds.
    pub fn current_segment(&self) -> u32 {
        self.segment
    }

    /// Stages a body for the next [`commit`](Self::commit) and says where it will be.
    pub fn stage(&mut self, body: &[u8]) -> BodyRef {
        let offset = self.len + self.staged.len() as u64;
        self.staged.extend_from_slice(body);
        BodyRef { segment: self.segment, offset, len: body.len() as u32, crc32: crc32fast::hash(body) }
    }

    /// Writes and syncs the staged bodies. On failure the segment is cut back to where it was, so
    /// a retry writes at the same offsets the staged references name.
    pub fn commit(&mut self) -> Result<(), BodyLogError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.staged).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            return Err(BodyLogError::Write(e));
        }
        self.len += self.staged.len() as u64;
        self.staged.clear();
        Ok(())
    }

    /// Drops what was staged for a commit that will not happen.
    pub fn abandon(&mut self) {
        self.staged.clear();
    }

    /// Starts a new segment if this one is full. Called between commits only, so every staged
    /// reference of a commit names one segment.
    pub fn roll_if_full(&mut self) -> Result<(), BodyLogError> {
        if self.len < self.segment_bytes {
            return Ok(());
        }
        let (file, len) = open_segment(&self.dir, self.segment + 1)?;
        self.segment += 1;
        self.file = file;
        self.len = len;
        Ok(())
    }

    /// At open: deletes every older segment without live bodies (a crash can leave one behind
    /// after the batch that emptied it, or bytes of a commit that never reached the tree).
    pub fn remove_dead_segments(&self, counters: &std::collections::BTreeMap<String, u64>) {
        let Ok(segments) = list_segments(&self.dir) else { return };
        for segment in segments {
            if counters.get(&segment_counter(segment)).copied().unwrap_or(0) == 0 {
                self.remove_segment(segment);
            }
        }
    }

    /// Deletes a segment no record points into any more.
    pub fn remove_segment(&self, segment: u32) {
        if segment == self.segment {
            return;
        }
        if let Err(e) = std::fs::remove_file(segment_path(&self.dir, segment)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, segment, "could not delete an empty body segment");
            }
        }
    }
}

/// A body-log file operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyLogError {
    /// Creating, opening, reading or listing a file or the directory.
    #[error("cannot {action} {}: {source}", path.display())]
    File { action: &'static str, path: PathBuf, source: std::io::Error },
    /// Appending or syncing the staged bodies.
    #[error("body log write failed: {0}")]
    Write(std::io::Error),
}

impl BodyLogError {
    fn file(action: &'static str, path: &Path, source: std::io::Error) -> BodyLogError {
        BodyLogError::File { action, path: path.to_path_buf(), source }
    }
}

fn open_segment(dir: &Path, segment: u32) -> Result<(File, u64), BodyLogError> {
    let path = segment_path(dir, segment);
    let file =
        OpenOptions::new().create(true).append(true).open(&path).map_err(|e| BodyLogError::file("open", &path, e))?;
    let len = file.metadata().map_err(|e| BodyLogError::file("read", &path, e))?.len();
    // A new segment's directory entry must be durable before records point into it.
    if len == 0 {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok((file, len))
}

fn list_segments(dir: &Path) -> Result<Vec<u32>, BodyLogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| BodyLogError::file("list", dir, e))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect())
}

/// Why a body could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not what was written: the segment is gone or cut short, or the body fails
    /// its checksum. Reading again gives the same answer.
    #[error("{0}")]
    Damaged(String),
    /// The read itself failed (out of file handles, an I/O error): it may work later.
    #[error("{0}")]
    Io(String),
}

/// Reads a body back, checking its length and checksum.
pub fn read(dir: &Path, r: BodyRef) -> Result<Vec<u8>, ReadError> {
    let BodyRef { segment, offset, len, crc32 } = r;
    let path = segment_path(dir, segment);
    let at = || format!("body at {}+{offset} ({len} bytes)", path.display());
    let classify = |e: std::io::Error, what: String| match e.kind() {
        // A record names these bytes, so they were synced before it was written: a missing
        // file or a short one is damage, not a passing condition.
        std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof => ReadError::Damaged(format!("{what}: {e}")),
        _ => ReadError::Io(format!("{what}: {e}")),
    };
    let segment = || format!("body segment {}", path.display());
    let file = File::open(&path).map_err(|e| classify(e, segment()))?;
    // A damaged reference may name up to 4 GiB: what the segment cannot hold is not allocated.
    let size = file.metadata().map_err(|e| classify(e, segment()))?.len();
    if offset.checked_add(u64::from(len)).is_none_or(|end| end > size) {
        return Err(ReadError::Damaged(format!("{} runs past the segment's end ({size} bytes)", at())));
    }
    let mut buf = vec![0; len as usize];
    read_exact_at(&file, &mut buf, offset).map_err(|e| classify(e, at()))?;
    if crc32fast::hash(&buf) != crc32 {
        return Err(ReadError::Damaged(format!("{} fails its checksum", at())));
    }
    Ok(buf)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_back_across_reopen_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = BodyLog::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
        let a = log.stage(b"first body");
        let b = log.stage(b"");
        let c = log.stage(&[7u8; 3000]);
        log.commit().unwrap();
        assert_eq!(read(dir.path(), a).unwrap(), b"first body");
        assert_eq!(read(dir.path(), b).unwrap(), b"");
        assert_eq!(read(dir.path(), c).unwrap(), vec![7u8; 3000]);

        // Reopened, it appends after what is there.
        drop(log);
        let mut log = BodyLog::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
        let d = log.stage(b"after reopen");
        log.commit().unwrap();
        let BodyRef { offset, .. } = d;
        assert_eq!(offset, 10 + 3000);
        assert_eq!(read(dir.path(), d).unwrap(), b"after reopen");
        assert_eq!(read(dir.path(), a).unwrap(), b"first body");
    }

    #[test]
    fn a_full_segment_rolls_and_an_old_one_can_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = BodyLog::open(dir.path().to_path_buf(), 1).unwrap();
        let first = log.stage(b"x");
        log.commit().unwrap();
        log.roll_if_full().unwrap(); // 1 byte: full
        assert_eq!(log.current_segment(), 2);
        let second = log.stage(b"y");
        log.commit().unwrap();
        assert!(matches!(second, BodyRef { segment: 2, offset: 0, .. }));
        log.remove_segment(2); // the current segment stays
        assert_eq!(read(dir.path(), second).unwrap(), b"y");
        log.remove_segment(1);
        assert!(matches!(read(dir.path(), first), Err(ReadError::Damaged(m)) if m.contains("00000001.log")));
        // Reopening continues the newest segment.
        drop(log);
        assert_eq!(BodyLog::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap().current_segment(), 2);
    }

    #[test]
    fn damage_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = BodyLog::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
        let r = log.stage(b"{\"id\":\"evt_1\"}");
        log.commit().unwrap();
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read(dir.path(), r), Err(ReadError::Damaged(m)) if m.contains("checksum")));
        // Cut short, or gone: damage too, never a passing I/O condition to retry.
        std::fs::write(&path, &bytes[..4]).unwrap();
        assert!(matches!(read(dir.path(), r), Err(ReadError::Damaged(_))));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(read(dir.path(), r), Err(ReadError::Damaged(_))));
    }

    #[test]
    fn a_reference_past_the_end_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = BodyLog::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
        let BodyRef { segment, crc32, .. } = log.stage(b"abc");
        log.commit().unwrap();
        for (offset, len) in [(0, u32::MAX), (1, 3), (3, 1), (u64::MAX, 1), (u64::MAX - 1, u32::MAX)] {
            let e = read(dir.path(), BodyRef { segment, offset, len, crc32 }).unwrap_err();
            assert!(e.to_string().contains("runs past the segment's end (3 bytes)"), "{e}");
        }
        assert_eq!(read(dir.path(), BodyRef { segment, offset: 3, len: 0, crc32: 0 }).unwrap(), b"");

        // Found by the property test below: past the end of an empty segment, an empty body (whose
        // checksum is 0) read as present.
        let dir = tempfile::tempdir().unwrap();
        let mut log = BodyLog::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
        log.stage(b"");
        log.commit().unwrap();
        let e = read(dir.path(), BodyRef { segment: 1, offset: 1, len: 0, crc32: 0 }).unwrap_err();
        assert!(e.to_string().contains("runs past the segment's end (0 bytes)"), "{e}");
    }

    #[test]
    fn abandoned_bodies_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = BodyLog::open(dir.path().to_path_buf(), DEFAULT_SEGMENT_BYTES).unwrap();
        log.stage(b"never");
        log.abandon();
        let r = log.stage(b"kept");
        log.commit().unwrap();
        assert!(matches!(r, BodyRef { offset: 0, len: 4, .. }));
        assert_eq!(std::fs::read(segment_path(dir.path(), 1)).unwrap(), b"kept");
    }

    mod properties {
        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::*;

        /// A reference changed in one field, or made up.
        #[derive(Debug, Clone)]
        enum Probe {
            Segment(u32),
            Offset(u64),
            Len(u32),
            Crc(u32),
            Any(BodyRef),
        }

        fn probe() -> impl Strategy<Value = (Index, Probe)> {
            let near = || prop_oneof![0u64..300, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()];
            let any_ref = (0u32..4, near(), prop_oneof![0u32..300, Just(u32::MAX), any::<u32>()], any::<u32>())
                .prop_map(|(segment, offset, len, crc32)| BodyRef { segment, offset, len, crc32 });
            let change = prop_oneof![
                prop_oneof![0u32..4, any::<u32>()].prop_map(Probe::Segment),
                near().prop_map(Probe::Offset),
                prop_oneof![0u32..300, Just(u32::MAX)].prop_map(Probe::Len),
                any::<u32>().prop_map(Probe::Crc),
                any_ref.prop_map(Probe::Any),
            ];
            (any::<Index>(), change)
        }

        proptest! {
            // Each case syncs a few segment writes: fewer cases than elsewhere.
            #![proptest_config(crate::proptest_cases(32))]

            /// Every reference the log gave reads back its body; any other reads the bytes it
            /// names when they are there and pass its checksum, or is an error: never a panic,
            /// never damaged or made-up bytes.
            #[test]
            fn any_reference_reads_its_body_or_an_error(
                bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 1..8),
                probes in prop::collection::vec(probe(), 1..16),
            ) {
                let dir = tempfile::tempdir().unwrap();
                // Small segments, so the references name several.
                let mut log = BodyLog::open(dir.path().to_path_buf(), 100).unwrap();
                let mut refs = Vec::new();
                for body in &bodies {
                    refs.push(log.stage(body));
                    log.commit().unwrap();
                    log.roll_if_full().unwrap();
                }
                for (r, body) in refs.iter().zip(&bodies) {
                    prop_assert_eq!(&read(dir.path(), *r).unwrap(), body);
                }
                for (which, probe) in probes {
                    let BodyRef { segment, offset, len, crc32 } = refs[which.index(refs.len())];
                    let r = match probe {
                        Probe::Segment(segment) => BodyRef { segment, offset, len, crc32 },
                        Probe::Offset(offset) => BodyRef { segment, offset, len, crc32 },
                        Probe::Len(len) => BodyRef { segment, offset, len, crc32 },
                        Probe::Crc(crc32) => BodyRef { segment, offset, len, crc32 },
                        Probe::Any(r) => r,
                    };
                    if let Ok(bytes) = read(dir.path(), r) {
                        let BodyRef { segment, offset, len, crc32 } = r;
                        let file = std::fs::read(segment_path(dir.path(), segment)).unwrap();
                        let there =
                            usize::try_from(offset).ok().and_then(|at| file.get(at..at.checked_add(len as usize)?));
                        prop_assert_eq!(Some(&bytes[..]), there, "{:?}", r);
                        prop_assert_eq!(crc32fast::hash(&bytes), crc32);
                    }
                }
            }
        }
    }
}
