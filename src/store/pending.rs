//! One batch being built: writes go to a [`Batch`] (the group's frame in the log, then sled's batch) and are remembered, so that later
//! operations in the same batch read what earlier ones wrote (a duplicate of an event first seen
//! in this batch, a status set by an attempt that starts and ends in the same batch).
//!
//! It reads what is already stored through [`Reads`], which the tree implements and the tests
//! implement with a `BTreeMap`, so the operations on top of it (`ops.rs`) run without a database.

use std::collections::{BTreeMap, HashMap};

use ulid::Ulid;

use super::feed::Change;
use super::keys;
use super::log::frame::Batch;
use super::record::{decode_event, encode_event, BodyRef, Event, Status};
use super::stats::{events_counter, is_stored_only, stored_only_counter};

/// What is already stored, as a batch reads it. A read on the writer's own thread: nothing else
/// writes, so what it reads cannot change under the batch.
pub(super) trait Reads {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, sled::Error>;
    /// The keys under `prefix`, in order.
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, sled::Error>;
    /// The value of the last key under `prefix`.
    fn last_value_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, sled::Error>;
}

impl Reads for sled::Tree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, sled::Error> {
        Ok(sled::Tree::get(self, key)?.map(|v| v.to_vec()))
    }

    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, sled::Error> {
        self.scan_prefix(prefix).keys().map(|k| k.map(|k| k.to_vec())).collect()
    }

    fn last_value_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, sled::Error> {
        self.scan_prefix(prefix).values().next_back().transpose().map(|v| v.map(|v| v.to_vec()))
    }
}

/// Why an event record could not be loaded into the batch.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoadError {
    /// sled could not read it.
    #[error("{0}")]
    Read(#[from] sled::Error),
    /// It is there but does not decode: nothing this batch does can change that.
    #[error("{0}")]
    Damaged(String),
}

pub(super) struct Pending<'a, R: Reads> {
    tree: &'a R,
    /// The group's writes, as the log's frame and sled's batch will hold them.
    pub batch: Batch,
    /// Latest value of each small key written in this batch (`None`: removed).
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Event records read or changed in this batch, written once at the end.
    events: BTreeMap<Ulid, (Event, Option<BodyRef>)>,
    pub delta: BTreeMap<String, i64>,
    /// Each new event and change of status, in order, for the feed: kept only when it records.
    transitions: Option<Vec<(Ulid, Status, bool)>>,
}

impl<'a, R: Reads> Pending<'a, R> {
    pub fn new(tree: &'a R) -> Pending<'a, R> {
        Pending {
            tree,
            batch: Batch::default(),
            writes: HashMap::new(),
            events: BTreeMap::new(),
            delta: BTreeMap::new(),
            transitions: None,
        }
    }

    /// Remembers each new event and change of status, for [`finish`](Self::finish) to give.
    pub fn track_changes(&mut self) {
        self.transitions = Some(Vec::new());
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, sled::Error> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.tree.get(key),
        }
    }

    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch.insert(&key, &value);
        self.writes.insert(key, Some(value));
    }

    /// For large values never read back in the same batch (bodies): not remembered.
    pub fn insert_blind(&mut self, key: &[u8], value: &[u8]) {
        self.batch.insert(key, value);
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.batch.remove(&key);
        self.writes.insert(key, None);
    }

    /// Keys under `prefix` as this batch would leave them.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, sled::Error> {
        let mut out = self.tree.keys_with_prefix(prefix)?;
        out.retain(|k| !matches!(self.writes.get(k), Some(None)));
        for (k, v) in &self.writes {
            if v.is_some() && k.starts_with(prefix) && !out.contains(k) {
                out.push(k.clone());
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn count(&mut self, name: String, by: i64) {
        *self.delta.entry(name).or_default() += by;
    }

    pub fn new_event(&mut self, id: Ulid, event: Event, body: BodyRef) {
        self.count(events_counter(&event.provider, event.status.as_str()), 1);
        if is_stored_only(event.status, event.attempts) {
            self.count(stored_only_counter(&event.provider), 1);
        }
        if let Some(t) = &mut self.transitions {
            t.push((id, event.status, true));
        }
        self.events.insert(id, (event, Some(body)));
    }

    /// The event as this batch sees it, loaded for change.
    pub fn event(&mut self, id: Ulid) -> Result<Option<&mut Event>, LoadError> {
        Ok(self.load(id)?.map(|(e, _)| e))
    }

    /// Where the event's body is in the log (`None` for an event from before the log).
    pub fn body_ref(&mut self, id: Ulid) -> Result<Option<BodyRef>, LoadError> {
        Ok(self.load(id)?.and_then(|(_, body)| *body))
    }

    fn load(&mut self, id: Ulid) -> Result<Option<&mut (Event, Option<BodyRef>)>, LoadError> {
        if !self.events.contains_key(&id) {
            let Some(bytes) = self.get(&keys::id_key(keys::EVENT, id))? else {
                return Ok(None);
            };
            let event = decode_event(&bytes)
                .map_err(|e| LoadError::Damaged(format!("event {id}: the record does not decode: {e}")))?;
            self.events.insert(id, event);
        }
        Ok(self.events.get_mut(&id))
    }

    /// Moves an event to `status`, with its counters.
    pub fn set_status(&mut self, id: Ulid, status: Status) -> Result<(), LoadError> {
        let Some(e) = self.event(id)? else { return Ok(()) };
        if e.status == status {
            return Ok(());
        }
        let (provider, old, attempts) = (e.provider.clone(), e.status, e.attempts);
        e.status = status;
        self.count(events_counter(&provider, old.as_str()), -1);
        self.count(events_counter(&provider, status.as_str()), 1);
        // Attempts only grow, and only while an event is not `processed`: a stored-only event
        // leaves the count when its status changes (a replay), and none joins it here.
        let stored_only = i64::from(is_stored_only(status, attempts)) - i64::from(is_stored_only(old, attempts));
        if stored_only != 0 {
            self.count(stored_only_counter(&provider), stored_only);
        }
        if let Some(t) = &mut self.transitions {
            t.push((id, status, false));
        }
        Ok(())
    }

    /// What was stored before this batch, without its writes.
    pub fn base(&self) -> &R {
        self.tree
    }

    /// Drops an event from this batch's changes (it is being deleted).
    pub fn forget_event(&mut self, id: Ulid) {
        self.events.remove(&id);
    }

    /// Writes the changed event records into the batch and hands it over, with the changes
    /// for the feed when tracked (each with its event as the batch leaves it, stamped `at_ms`).
    pub fn finish(mut self, at_ms: i64) -> (Batch, BTreeMap<String, i64>, Vec<Change>) {
        let changes = self.transitions.take().unwrap_or_default();
        let changes = changes
            .into_iter()
            .filter_map(|(id, status, new)| {
                let (e, _) = self.events.get(&id)?;
                Some(Change {
                    seq: 0,
                    kind: if new { "event" } else { "status" },
                    id,
                    provider: e.provider.clone(),
                    event_id: e.event_id.clone(),
                    event_type: e.event_type.clone(),
                    status: status.as_str(),
                    attempts: e.attempts,
                    last_error: e.last_error.clone(),
                    at_ms,
                })
            })
            .collect();
        for (id, (e, body)) in std::mem::take(&mut self.events) {
            self.batch.insert(&keys::id_key(keys::EVENT, id)[..], encode_event(e, body));
        }
        (self.batch, self.delta, changes)
    }

    /// What [`finish`](Self::finish) would write, as (key, value or removal) pairs: for tests,
    /// which keep the tree in a map. Blind inserts are not in it.
    #[cfg(test)]
    pub fn into_writes(mut self) -> (Vec<Write>, BTreeMap<String, i64>) {
        let mut out: Vec<Write> = self.writes.drain().collect();
        for (id, (e, body)) in std::mem::take(&mut self.events) {
            out.push((keys::id_key(keys::EVENT, id).to_vec(), Some(encode_event(e, body))));
        }
        (out, self.delta)
    }
}

/// A key and its new value, or `None` when it is removed.
#[cfg(test)]
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// The tree of the tests: what is stored, in key order.
#[cfg(test)]
impl Reads for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, sled::Error> {
        Ok(BTreeMap::get(self, key).cloned())
    }

    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, sled::Error> {
        Ok(self.range(prefix.to_vec()..).map_while(|(k, _)| k.starts_with(prefix).then(|| k.clone())).collect())
    }

    fn last_value_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, sled::Error> {
        Ok(self.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).last().map(|(_, v)| v.clone()))
    }
}
