//! Fault injection for tests: flushes and reads that fail on purpose, and records overwritten
//! with bytes that do not decode, to exercise the 503 paths and damage handling against a real
//! database. Built only for tests and the `testing` feature, but for the one check every event
//! read makes (a relaxed load); kept apart so the store's real paths read without it.

use std::sync::atomic::Ordering;

#[cfg(any(test, feature = "testing"))]
use ulid::Ulid;

#[cfg(any(test, feature = "testing"))]
use super::{keys, read::read_err};
use super::{Store, StoreError};

impl Store {
    /// Makes the next `n` flush attempts fail, to exercise retries and the 503 path in tests.
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_flush_failures(&self, n: u32) {
        self.inner.fail_flushes.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` event reads (`list_events`, `read_event`) fail as a failing disk
    /// would, to exercise the 503 path of reads in tests.
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_read_failures(&self, n: u32) {
        self.inner.fail_reads.store(n, Ordering::SeqCst);
    }

    pub(super) fn injected_read_failure(&self) -> Result<(), StoreError> {
        let fail = &self.inner.fail_reads;
        // One relaxed load when nothing is injected, which is always outside tests.
        if fail.load(Ordering::Relaxed) > 0
            && fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return Err(StoreError::Unavailable("read failed: injected read failure".into()));
        }
        Ok(())
    }

    /// Overwrites a stored record with bytes that do not decode, as a faulty write or an old bug
    /// would leave it: every job record of the event, its event record, or the rejection log's
    /// entry `id`. Returns how many records it damaged. For tests of damage handling only: it writes past the writer, so use
    /// it while the event is not being delivered.
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_damage(&self, id: Ulid, what: InjectDamage) -> Result<usize, StoreError> {
        // A version tag far past any variant: postcard refuses it, as it would a torn record.
        const GARBAGE: &[u8] = &[0xff, 0xff, 0xff, 0x7f, 0x00];
        let tree = &self.inner.tree;
        let keys: Vec<Vec<u8>> = match what {
            InjectDamage::EventRecord => vec![keys::id_key(keys::EVENT, id).to_vec()],
            InjectDamage::RejectionRecord => vec![keys::id_key(keys::REJECTION, id).to_vec()],
            InjectDamage::JobRecords => tree
                .scan_prefix(keys::id_key(keys::JOB_OF, id))
                .values()
                .filter_map(Result::ok)
                .map(|v| v.to_vec())
                .collect(),
        };
        let mut n = 0;
        for k in keys {
            if tree.get(&k).map_err(read_err)?.is_some() {
                tree.insert(k, GARBAGE).map_err(read_err)?;
                n += 1;
            }
        }
        tree.flush().map_err(read_err)?;
        Ok(n)
    }
}

/// Which records [`Store::inject_damage`] damages.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Copy)]
pub enum InjectDamage {
    JobRecords,
    EventRecord,
    /// An entry of the rejection log; its id is the `id` that `/rejections` lists.
    RejectionRecord,
}
