//! Opening sled's database: waiting briefly for a lock a closing store still holds, telling a
//! folder in use from a corrupt one, and loading the counters. Separate from the handle because
//! the validator and the CLI open (or probe) a data folder without starting a store.

use std::collections::BTreeMap;
use std::path::Path;

use super::keys;

/// Why sled would not open a data folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenFailure {
    /// Another process holds the folder's lock.
    #[error(
        "the folder is in use by another running stagehook (its lock is held); stop it or choose another --data-dir"
    )]
    InUse,
    /// sled found its own files damaged (or panicked reading them).
    #[error("the database is corrupt ({0}); move the folder aside or restore it")]
    Corrupt(String),
    /// Anything else: permissions, I/O.
    #[error("{0}")]
    Other(String),
}

/// How long opening waits for a held lock before it says the folder is in use: sled's flusher
/// thread lets go of the lock a moment after the last handle is dropped, so a store closed and
/// opened again in one process (a restart in-process) may find it still held.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether another process holds the database in `dir` (`None`: no database there yet). Asked
/// without opening it, so the validator can say so before `serve` tries.
#[cfg(unix)]
pub fn in_use(dir: &Path) -> Option<bool> {
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("db")).ok()?;
    // sled takes an exclusive advisory lock on its `db` file (fcntl, via fs2 on Unix: flock).
    // SAFETY: flock on a descriptor we own; it reads and writes no memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        // SAFETY: as above; we release what we just took.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        Some(false)
    } else {
        Some(true)
    }
}

#[cfg(not(unix))]
pub fn in_use(_dir: &Path) -> Option<bool> {
    None
}

/// Opens the sled database in `dir`, creating it if there is none.
pub(crate) fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, OpenFailure> {
    open_db_with(dir, cache_bytes, Some(super::TREE_FLUSH_EVERY_MS))
}

/// [`open_db`], with sled writing its files on its own every `flush_every_ms` (`None`: never).
pub(crate) fn open_db_with(dir: &Path, cache_bytes: u64, flush_every_ms: Option<u64>) -> Result<sled::Db, OpenFailure> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match open_db_once(dir, cache_bytes, flush_every_ms) {
            Err(OpenFailure::InUse) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other,
        }
    }
}

fn open_db_once(dir: &Path, cache_bytes: u64, flush_every_ms: Option<u64>) -> Result<sled::Db, OpenFailure> {
    let config = sled::Config::new().path(dir).cache_capacity(cache_bytes).flush_every_ms(flush_every_ms);
    // sled reports most damage as an error but can panic on some; either way the user gets a
    // message naming the folder instead of a backtrace.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(classify_open_error(e)),
        Err(_) => Err(OpenFailure::Corrupt("sled could not read its files".into())),
    }
}

/// The name of the one tree.
pub(crate) const TREE: &str = "stagehook";

pub(super) fn classify_open_error(e: sled::Error) -> OpenFailure {
    match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
            OpenFailure::InUse
        }
        sled::Error::Corruption { .. } => OpenFailure::Corrupt(e.to_string()),
        // sled says this of files it cannot parse as any version it knows; stagehook has only
        // ever written 0.34.7's format, so here it means damaged files.
        sled::Error::Unsupported(_) => OpenFailure::Corrupt(e.to_string()),
        other => OpenFailure::Other(other.to_string()),
    }
}

/// Why the counters could not be loaded at open.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoadCountersError {
    #[error("cannot read counters: {0}")]
    Read(#[from] sled::Error),
    #[error("counter {0} is not 8 bytes: the database is corrupt")]
    NotEightBytes(String),
}

pub(super) fn load_counters(tree: &sled::Tree) -> Result<BTreeMap<String, u64>, LoadCountersError> {
    let mut out = BTreeMap::new();
    for kv in tree.scan_prefix([keys::COUNTER]) {
        let (k, v) = kv?;
        let name = String::from_utf8_lossy(&k[1..]).into_owned();
        let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| LoadCountersError::NotEightBytes(name.clone()))?;
        out.insert(name, u64::from_be_bytes(bytes));
    }
    Ok(out)
}
