//! One batch being built: writes go to a `sled::Batch` and are remembered, so that later
//! operations in the same batch read what earlier ones wrote (a duplicate of an event first seen
//! in this batch, a status set by an attempt that starts and ends in the same batch).

use std::collections::{BTreeMap, HashMap};

use ulid::Ulid;

use super::keys;
use super::record::{decode_event, encode_event, BodyRef, Event, Status};
use super::stats::events_counter;

/// Why an event record could not be loaded into the batch.
#[derive(Debug)]
pub(super) enum LoadError {
    /// sled could not read it.
    Read(String),
    /// It is there but does not decode: nothing this batch does can change that.
    Damaged(String),
}

impl From<LoadError> for String {
    fn from(e: LoadError) -> String {
        match e {
            LoadError::Read(m) | LoadError::Damaged(m) => m,
        }
    }
}

pub(super) struct Pending<'a> {
    tree: &'a sled::Tree,
    pub batch: sled::Batch,
    /// Latest value of each small key written in this batch (`None`: removed).
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Event records read or changed in this batch, written once at the end.
    events: BTreeMap<Ulid, (Event, Option<BodyRef>)>,
    pub delta: BTreeMap<String, i64>,
}

impl<'a> Pending<'a> {
    pub fn new(tree: &'a sled::Tree) -> Pending<'a> {
        Pending {
            tree,
            batch: sled::Batch::default(),
            writes: HashMap::new(),
            events: BTreeMap::new(),
            delta: BTreeMap::new(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, sled::Error> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            // A read on the writer's own thread: nothing else writes, so it cannot change under us.
            None => Ok(self.tree.get(key)?.map(|v| v.to_vec())),
        }
    }

    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch.insert(key.clone(), value.clone());
        self.writes.insert(key, Some(value));
    }

    /// For large values never read back in the same batch (bodies): not remembered.
    pub fn insert_blind(&mut self, key: &[u8], value: &[u8]) {
        self.batch.insert(key, value);
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.batch.remove(key.clone());
        self.writes.insert(key, None);
    }

    /// Keys under `prefix` as this batch would leave them.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, sled::Error> {
        let mut out = Vec::new();
        for k in self.tree.scan_prefix(prefix).keys() {
            let k = k?.to_vec();
            if !matches!(self.writes.get(&k), Some(None)) {
                out.push(k);
            }
        }
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
        self.events.insert(id, (event, Some(body)));
    }

    /// The event as this batch sees it, loaded for change.
    pub fn event(&mut self, id: Ulid) -> Result<Option<&mut Event>, LoadError> {
        Ok(self.load(id)?.map(|(e, _)| e))
    }

    /// Where the event's body is in the body log (`None` for an event from before the log).
    pub fn body_ref(&mut self, id: Ulid) -> Result<Option<BodyRef>, LoadError> {
        Ok(self.load(id)?.and_then(|(_, body)| *body))
    }

    fn load(&mut self, id: Ulid) -> Result<Option<&mut (Event, Option<BodyRef>)>, LoadError> {
        if !self.events.contains_key(&id) {
            let Some(bytes) = self.get(&keys::id_key(keys::EVENT, id)).map_err(|e| LoadError::Read(e.to_string()))?
            else {
                return Ok(None);
            };
            let event = decode_event(&bytes)
                .map_err(|e| LoadError::Damaged(format!("event {id}: the record does not decode: {e}")))?;
            self.events.insert(id, event);
        }
        Ok(self.events.get_mut(&id))
    }

    /// Moves an event to `status`, with its counters.
    pub fn set_status(&mut self, id: Ulid, status: Status) -> Result<(), String> {
        let Some(e) = self.event(id)? else { return Ok(()) };
        if e.status == status {
            return Ok(());
        }
        let (provider, old) = (e.provider.clone(), e.status);
        e.status = status;
        self.count(events_counter(&provider, old.as_str()), -1);
        self.count(events_counter(&provider, status.as_str()), 1);
        Ok(())
    }

    /// Drops an event from this batch's changes (it is being deleted).
    pub fn forget_event(&mut self, id: Ulid) {
        self.events.remove(&id);
    }

    /// Writes the changed event records into the batch and hands it over.
    pub fn finish(mut self) -> (sled::Batch, BTreeMap<String, i64>) {
        for (id, (e, body)) in std::mem::take(&mut self.events) {
            self.batch.insert(&keys::id_key(keys::EVENT, id)[..], encode_event(e, body));
        }
        (self.batch, self.delta)
    }
}
