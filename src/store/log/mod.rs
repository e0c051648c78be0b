//! The log: the store's durability point, and where events' headers and raw bodies live.
//!
//! Each group the writer commits is appended here as one frame (`frame.rs`): the headers and
//! bodies of its new events, then every write of its sled batch. A group that anyone waits on is synced with
//! one `fdatasync`, then applied to sled (in memory; sled writes its own files on its own
//! schedule), and only then answered. So one sync makes a group durable, and every group that is
//! answered is already in sled's tree, where dedup and every reader find it.
//!
//! Each batch applied to sled also sets the *watermark* (`keys::LOG_APPLIED`): the end of the
//! frame it came from. After a crash sled holds a prefix of its batches, watermark included;
//! at open, [`recover`] applies every whole frame past the watermark again, in order, and sled is
//! complete before anything else reads it. Writes are absolute, so applying a frame twice is
//! harmless.
//!
//! The log is a series of segment files (`log/<n>.log`), each starting with [`SEGMENT_MAGIC`];
//! a new one is started once a segment is full and at every open (so nothing is ever appended
//! after a torn tail). A record keeps a small [`BodyRef`] to its body's bytes inside a frame.
//! The store counts live bodies per segment (`segment/<n>` counters, in the same batches as the
//! records), and deletes a segment once its count is zero and it is no longer appended to, after
//! a sled flush has made the watermark durable past it. Segments written before frames existed
//! (raw bodies back to back, no magic) still read by reference and are never replayed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::BodyRef;

pub mod frame;
mod recover;

pub use recover::{recover, Recovered};

/// A segment is closed and a new one started once it reaches this size, by default: small enough
/// that retention frees space in steps, large enough that the folder holds few files.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The first bytes of every segment of frames.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SHLOG\0\0\x01";

/// The counter that holds how many live bodies a segment has.
pub fn segment_counter(segment: u32) -> String {
    format!("segment/{segment:08}")
}

/// The segment a `segment/<n>` counter names.
pub fn segment_of_counter(name: &str) -> Option<u32> {
    name.strip_prefix("segment/")?.parse().ok()
}

/// The directory of the segments, inside the data directory: `log/`, or `bodies/` in a folder
/// that no stagehook with the log has opened yet (it renames it at open).
pub fn dir_of(data_dir: &Path) -> PathBuf {
    let log = data_dir.join("log");
    let old = data_dir.join("bodies");
    if !log.exists() && old.exists() {
        old
    } else {
        log
    }
}

/// The log's directory, made `log/` if the folder still has the `bodies/` of an earlier version
/// (whose segments read on as they are): renamed, and the rename synced, before any new frame.
pub fn take_over_old_dir(data_dir: &Path) -> Result<PathBuf, LogError> {
    let (log, old) = (data_dir.join("log"), data_dir.join("bodies"));
    if !log.exists() && old.exists() {
        std::fs::rename(&old, &log).map_err(|e| LogError::file("rename", &old, e))?;
        File::open(data_dir).and_then(|d| d.sync_all()).map_err(|e| LogError::file("sync", data_dir, e))?;
    }
    Ok(log)
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:08}.log"))
}

/// A place in the log: the end of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u32,
    pub offset: u64,
}

impl Position {
    pub fn encode(self) -> [u8; 12] {
        let mut out = [0; 12];
        out[..4].copy_from_slice(&self.segment.to_be_bytes());
        out[4..].copy_from_slice(&self.offset.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Position> {
        let bytes: &[u8; 12] = bytes.try_into().ok()?;
        Some(Position {
            segment: u32::from_be_bytes(bytes[..4].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[4..].try_into().ok()?),
        })
    }
}

/// Applies writes of the log to the tree as one atomic batch, with the watermark `at` when every
/// write up to there is in the batch or already in the tree: a frame at recovery, a group's
/// records at commit (without a watermark), counters at a checkpoint.
pub(super) fn apply(tree: &sled::Tree, writes: &[u8], at: Option<Position>) -> Result<(), ApplyError> {
    let mut batch = sled::Batch::default();
    for write in frame::writes(writes) {
        match write? {
            frame::Write::Insert(k, v) => batch.insert(k, v),
            frame::Write::Remove(k) => batch.remove(k),
        }
    }
    if let Some(at) = at {
        batch.insert(&super::keys::LOG_APPLIED[..], &at.encode()[..]);
    }
    tree.apply_batch(batch)?;
    Ok(())
}

/// Why a frame could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Frame(#[from] frame::BadFrame),
    #[error("{0}")]
    Tree(#[from] sled::Error),
}

/// The writer's side: appends, owned by the writer thread alone.
pub(super) struct Log {
    dir: PathBuf,
    segment: u32,
    file: File,
    /// Bytes of the segment that are written (synced or not).
    len: u64,
    /// Whether bytes were written since the last sync.
    unsynced: bool,
    /// The frame being built: room for its header, then the bodies staged so far; empty when no
    /// body is staged.
    staged: Vec<u8>,
    segment_bytes: u64,
}

impl Log {
    /// Opens the log for appending: always in a segment of its own, so that nothing is appended
    /// after whatever the last run left at the end of its segment (a torn frame, frames sled
    /// already applied).
    pub fn open(dir: PathBuf, segment_bytes: u64) -> Result<Log, LogError> {
        std::fs::create_dir_all(&dir).map_err(|e| LogError::file("create", &dir, e))?;
        let newest = list_segments(&dir)?.into_iter().max();
        let segment = match newest {
            // A segment of the magic alone (or nothing, if the last start was cut before the
            // magic reached the disk) holds no frame: it is taken over.
            Some(n) if only_magic(&segment_path(&dir, n)) => n,
            Some(n) => n + 1,
            None => 1,
        };
        let (file, len) = open_segment(&dir, segment)?;
        Ok(Log { dir, segment, file, len, unsynced: false, staged: Vec::new(), segment_bytes })
    }

    /// The segment being appended to: never deleted, however few live bodies it holds.
    pub fn current_segment(&self) -> u32 {
        self.segment
    }

    /// Stages an event's encoded headers and its body, back to back, for the frame being built,
    /// and says where they will be.
    pub fn stage(&mut self, headers: &[u8], body: &[u8]) -> BodyRef {
        if self.staged.is_empty() {
            frame::open(&mut self.staged);
        }
        let offset = self.len + self.staged.len() as u64;
        self.staged.extend_from_slice(headers);
        self.staged.extend_from_slice(body);
        let mut crc = crc32fast::Hasher::new();
        crc.update(headers);
        crc.update(body);
        let (headers, len) = (headers.len() as u32, (headers.len() + body.len()) as u32);
        BodyRef { segment: self.segment, offset, len, crc32: crc.finalize(), headers }
    }

    /// Finishes the frame with the group's writes, in the order given; nothing is written yet.
    /// `None` when the group changed nothing (no body and no write), so there is no frame.
    pub fn seal(&mut self, writes: &[&frame::Batch]) -> Option<Position> {
        if self.staged.is_empty() && writes.iter().all(|w| w.is_empty()) {
            return None;
        }
        if self.staged.is_empty() {
            frame::open(&mut self.staged);
        }
        let bodies_len = self.staged.len() - frame::HEADER;
        let parts: Vec<&[u8]> = writes.iter().map(|w| w.as_bytes()).collect();
        frame::seal(&mut self.staged, bodies_len, &parts);
        Some(Position { segment: self.segment, offset: self.len + self.staged.len() as u64 })
    }

    /// Writes the sealed frame, and syncs the log if `sync` (everything written before it too).
    /// On failure the segment is cut back to where it was, so a retry writes the frame at the
    /// same offsets its references name.
    pub fn write(&mut self, sync: bool) -> Result<(), LogError> {
        if !self.staged.is_empty() {
            if let Err(e) = self.file.write_all(&self.staged) {
                let _ = self.file.set_len(self.len);
                return Err(LogError::Write(e));
            }
            self.unsynced = true;
        }
        if sync && self.unsynced {
            if let Err(e) = self.file.sync_data() {
                let _ = self.file.set_len(self.len);
                return Err(LogError::Write(e));
            }
            self.unsynced = false;
        }
        self.len += self.staged.len() as u64;
        self.staged.clear();
        Ok(())
    }

    /// Drops the frame being built, for a commit that will not happen.
    pub fn abandon(&mut self) {
        self.staged.clear();
    }

    /// Takes the last frame back out of the log (it was written, but sled did not take it): cut
    /// to `to` and synced, so recovery never finds it.
    pub fn cut(&mut self, to: u64) -> Result<(), LogError> {
        self.file.set_len(to).and_then(|()| self.file.sync_data()).map_err(LogError::Write)?;
        self.len = to;
        self.unsynced = false;
        Ok(())
    }

    /// Where the next frame starts.
    pub fn end(&self) -> u64 {
        self.len
    }

    /// Starts a new segment if this one is full; returns the one it closed. Called between
    /// commits only, so every staged reference of a commit names one segment. The closed segment
    /// is synced first: a frame synced in the next one must never outlive one before it.
    pub fn roll_if_full(&mut self) -> Result<Option<u32>, LogError> {
        if self.len < self.segment_bytes {
            return Ok(None);
        }
        if self.unsynced {
            self.file.sync_data().map_err(LogError::Write)?;
            self.unsynced = false;
        }
        let (file, len) = open_segment(&self.dir, self.segment + 1)?;
        self.segment += 1;
        self.file = file;
        self.len = len;
        Ok(Some(self.segment - 1))
    }

    /// At open: deletes every older segment without live bodies (a crash can leave one behind
    /// after the batch that emptied it). Called once recovery has made sled whole and durable.
    pub fn remove_dead_segments(&self, counters: &std::collections::BTreeMap<String, u64>) {
        let Ok(segments) = list_segments(&self.dir) else { return };
        for segment in segments {
            if counters.get(&segment_counter(segment)).copied().unwrap_or(0) == 0 {
                self.remove_segment(segment);
            }
        }
    }

    /// Deletes a segment no record points into any more. The caller has flushed sled since the
    /// segment's last frame was applied, so recovery never needs it.
    pub fn remove_segment(&self, segment: u32) {
        if segment == self.segment {
            return;
        }
        if let Err(e) = std::fs::remove_file(segment_path(&self.dir, segment)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, segment, "could not delete an empty log segment");
            }
        }
    }
}

/// A log file operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Creating, opening, reading or listing a file or the directory.
    #[error("cannot {action} {}: {source}", path.display())]
    File { action: &'static str, path: PathBuf, source: std::io::Error },
    /// Appending or syncing a frame.
    #[error("log write failed: {0}")]
    Write(std::io::Error),
}

impl LogError {
    fn file(action: &'static str, path: &Path, source: std::io::Error) -> LogError {
        LogError::File { action, path: path.to_path_buf(), source }
    }
}

/// Opens a segment for appending; a new one gets the magic, synced with its directory entry
/// before any frame or record names it.
fn open_segment(dir: &Path, segment: u32) -> Result<(File, u64), LogError> {
    let path = segment_path(dir, segment);
    let mut file =
        OpenOptions::new().create(true).append(true).open(&path).map_err(|e| LogError::file("open", &path, e))?;
    let mut len = file.metadata().map_err(|e| LogError::file("read", &path, e))?.len();
    if len < SEGMENT_MAGIC.len() as u64 {
        file.set_len(0)
            .and_then(|()| file.write_all(&SEGMENT_MAGIC))
            .and_then(|()| file.sync_data())
            .map_err(|e| LogError::file("start", &path, e))?;
        len = SEGMENT_MAGIC.len() as u64;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok((file, len))
}

/// Whether a segment holds its magic and nothing else, or a part of it (a cut start), or is empty.
/// A segment from before frames holds bodies, which never begin with the magic's bytes.
fn only_magic(path: &Path) -> bool {
    let small = std::fs::metadata(path).is_ok_and(|m| m.len() <= SEGMENT_MAGIC.len() as u64);
    small && std::fs::read(path).is_ok_and(|bytes| SEGMENT_MAGIC.starts_with(&bytes))
}

fn list_segments(dir: &Path) -> Result<Vec<u32>, LogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::file("list", dir, e))?;
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
#[cfg(test)]
pub fn read(dir: &Path, r: BodyRef) -> Result<Vec<u8>, ReadError> {
    read_parts(dir, r).map(|(_, body)| body)
}

/// Reads an event's encoded headers (empty when its record holds them) and its body back,
/// checking their length and checksum.
pub fn read_parts(dir: &Path, r: BodyRef) -> Result<(Vec<u8>, Vec<u8>), ReadError> {
    let BodyRef { segment, offset, len, crc32, headers } = r;
    let path = segment_path(dir, segment);
    let at = || format!("body at {}+{offset} ({len} bytes)", path.display());
    let classify = |e: std::io::Error, what: String| match e.kind() {
        // A record names these bytes, so they were synced before it was written: a missing
        // file or a short one is damage, not a passing condition.
        std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof => ReadError::Damaged(format!("{what}: {e}")),
        _ => ReadError::Io(format!("{what}: {e}")),
    };
    let segment = || format!("log segment {}", path.display());
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
    if headers > len {
        return Err(ReadError::Damaged(format!("{}: its headers' length {headers} is past its end", at())));
    }
    let body = buf.split_off(headers as usize);
    Ok((buf, body))
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
mod tests;
