//! `stagehook store verify`: walks every record of a stopped store and every body it names, and
//! reports each item that does not read back as it was written.
//!
//! It opens the folder as the server does (so a running stagehook's lock refuses it), recovery
//! included: after a crash the log holds groups (and counters) the tree lacks, which the next
//! start would apply (`log/recover.rs`); they are applied first, so what is checked is what a
//! server would serve. Nothing else is written: no writer is started and no segment is touched.
//! The walk is one pass over the tree in
//! key order, plus point lookups for the cross-references that are cheap to check (an event's
//! dedup key, a job's index entry and event); it holds no per-event state, so its memory does not
//! grow with the store. Each finding is typed; the binary prints them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ulid::Ulid;

use super::log::{self, segment_of_counter};
use super::record::{decode_attempt, decode_event, decode_job, decode_rejection, BodyRef};
use super::{keys, open_db, OpenFailure, TREE};

/// What kind of stored item a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Event,
    Body,
    Job,
    JobIndex,
    Attempt,
    Rejection,
    Counter,
    DedupKey,
    /// The database as a whole (sled could not open or read it).
    Database,
    /// A key with no known prefix or shape.
    Key,
    /// A firing alert's state.
    AlertState,
    /// An endpoint's last `check-app` report.
    CheckReport,
}

impl Item {
    pub fn as_str(self) -> &'static str {
        match self {
            Item::Event => "event record",
            Item::Body => "body",
            Item::Job => "delivery job",
            Item::JobIndex => "job index",
            Item::Attempt => "attempt record",
            Item::Rejection => "rejection record",
            Item::Counter => "counter",
            Item::DedupKey => "dedup key",
            Item::Database => "database",
            Item::Key => "key",
            Item::AlertState => "alert state",
            Item::CheckReport => "check-app report",
        }
    }
}

/// One damaged item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub item: Item,
    /// The event it belongs to, when the key says.
    pub event: Option<Ulid>,
    /// What is wrong, for a person.
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.event {
            Some(id) => write!(f, "event {id}: {}: {}", self.item.as_str(), self.problem),
            None => write!(f, "{}: {}", self.item.as_str(), self.problem),
        }
    }
}

/// How many items of each kind the walk read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checked {
    pub events: u64,
    pub bodies: u64,
    pub jobs: u64,
    pub attempts: u64,
    pub rejections: u64,
    pub counters: u64,
    pub dedup_keys: u64,
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events, {} bodies, {} delivery jobs, {} attempts, {} rejections, {} counters, {} dedup keys",
            self.events, self.bodies, self.jobs, self.attempts, self.rejections, self.counters, self.dedup_keys
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub checked: Checked,
    /// Groups of the log the tree lacked, applied before the walk.
    pub recovered: u64,
}

impl Report {
    pub fn sound(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Why the walk could not run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A running stagehook holds the folder's lock.
    #[error("{} is in use by a running stagehook (its lock is held); stop it first, then verify", .0.display())]
    InUse(PathBuf),
    /// There is no database in the folder (verify never creates one).
    #[error("there is no stagehook database in {}", .0.display())]
    NoDatabase(PathBuf),
    /// sled could not open it for another reason (permissions, I/O).
    #[error("cannot open {}: {reason}", path.display())]
    CannotOpen { path: PathBuf, reason: String },
}

/// sled's cache for the walk: it reads each page about once, so a small one does.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Walks the store in `dir`. Damage sled itself finds at open is a finding, not an error.
pub fn verify(dir: &Path) -> Result<Report, VerifyError> {
    // sled would create a database where there is none; verify must not.
    if !dir.join("conf").is_file() && !dir.join("db").is_file() {
        return Err(VerifyError::NoDatabase(dir.to_path_buf()));
    }
    let db = match open_db(dir, CACHE_BYTES) {
        Ok(db) => db,
        Err(OpenFailure::InUse) => return Err(VerifyError::InUse(dir.to_path_buf())),
        Err(OpenFailure::Corrupt(e)) => {
            let finding = Finding { item: Item::Database, event: None, problem: format!("sled cannot open it: {e}") };
            return Ok(Report { findings: vec![finding], checked: Checked::default(), recovered: 0 });
        }
        Err(OpenFailure::Other(reason)) => return Err(VerifyError::CannotOpen { path: dir.to_path_buf(), reason }),
    };
    // Opening a missing tree would create it: a database without one holds nothing to check.
    if !db.tree_names().iter().any(|n| n.as_ref() == TREE.as_bytes()) {
        return Ok(Report::default());
    }
    let cannot = |reason: String| VerifyError::CannotOpen { path: dir.to_path_buf(), reason };
    let tree = db.open_tree(TREE).map_err(|e| cannot(e.to_string()))?;
    let recovered = log::recover(&log::dir_of(dir), &tree).map_err(|e| cannot(e.to_string()))?;
    if recovered.groups > 0 {
        db.flush().map_err(|e| cannot(format!("cannot flush the recovered groups: {e}")))?;
    }
    let mut walk = Walk {
        tree: &tree,
        log_dir: log::dir_of(dir),
        report: Report::default(),
        named: BTreeMap::new(),
        counted: BTreeMap::new(),
        events_whole: true,
    };
    walk.run();
    walk.report.recovered = recovered.groups;
    Ok(walk.report)
}

struct Walk<'a> {
    tree: &'a sled::Tree,
    log_dir: PathBuf,
    report: Report,
    /// Bodies each segment's records name, to hold against its `segment/<n>` counter.
    named: BTreeMap<u32, u64>,
    counted: BTreeMap<u32, u64>,
    /// Whether every event record decoded, so that `named` is complete.
    events_whole: bool,
}

impl Walk<'_> {
    fn find(&mut self, item: Item, event: Option<Ulid>, problem: impl Into<String>) {
        self.report.findings.push(Finding { item, event, problem: problem.into() });
    }

    fn exists(&mut self, key: &[u8]) -> Option<bool> {
        match self.tree.contains_key(key) {
            Ok(found) => Some(found),
            Err(e) => {
                self.find(Item::Database, None, format!("a lookup failed: {e}"));
                None
            }
        }
    }

    fn run(&mut self) {
        for kv in self.tree.iter() {
            let (k, v) = match kv {
                Ok(kv) => kv,
                Err(e) => {
                    // sled cannot go on past a page it cannot read.
                    self.find(Item::Database, None, format!("the walk stopped: {e}"));
                    return;
                }
            };
            match k.first().copied() {
                Some(keys::EVENT) => self.event(&k, &v),
                Some(keys::BODY) => self.inline_body(&k),
                Some(keys::DEDUP) => self.dedup(&k, &v),
                Some(keys::COUNTER) => self.counter(&k, &v),
                Some(keys::REJECTION) => self.rejection(&k, &v),
                Some(keys::ATTEMPT) => self.attempt(&k, &v),
                Some(keys::JOB) => self.job(&k, &v),
                Some(keys::JOB_OF) => self.job_index(&k, &v),
                Some(keys::ALERT) => self.alert_state(&k, &v),
                Some(keys::CHECK_REPORT) => self.check_report(&k, &v),
                Some(b'h') if *k == keys::HEARTBEAT => self.heartbeat(&v),
                Some(b'w') if *k == keys::LOG_APPLIED => self.watermark(&v),
                _ => self.find(Item::Key, None, format!("unknown key {}", hex(&k))),
            }
        }
        if self.events_whole {
            self.segment_counts();
        }
    }

    fn event(&mut self, k: &[u8], v: &[u8]) {
        self.report.checked.events += 1;
        let Some(id) = id_key(k) else {
            return self.find(Item::Key, None, format!("malformed event key {}", hex(k)));
        };
        let (event, body) = match decode_event(v) {
            Ok(r) => r,
            Err(e) => {
                self.events_whole = false;
                return self.find(Item::Event, Some(id), format!("does not decode: {e}"));
            }
        };
        match body {
            Some(r @ BodyRef { segment, len, headers, .. }) => {
                self.report.checked.bodies += 1;
                *self.named.entry(segment).or_default() += 1;
                let len = u64::from(len.saturating_sub(headers));
                if len != event.body_len {
                    self.find(
                        Item::Body,
                        Some(id),
                        format!("the record says {} bytes, its body {len}", event.body_len),
                    );
                }
                match log::read_parts(&self.log_dir, r) {
                    Err(e) => self.find(Item::Body, Some(id), e.to_string()),
                    Ok((headers, _)) => {
                        if let Err(e) = super::record::decode_headers(&headers) {
                            self.find(Item::Body, Some(id), format!("its headers do not decode: {e}"));
                        }
                    }
                }
            }
            None => match self.tree.get(keys::id_key(keys::BODY, id)) {
                Ok(inline) => {
                    self.report.checked.bodies += 1;
                    let len = inline.map_or(0, |b| b.len() as u64);
                    if len != event.body_len {
                        self.find(
                            Item::Body,
                            Some(id),
                            format!("the record says {} bytes, its body {len}", event.body_len),
                        );
                    }
                }
                Err(e) => self.find(Item::Body, Some(id), format!("cannot be read: {e}")),
            },
        }
        match self.tree.get(keys::dedup_key(&event.provider, &event.event_id)) {
            Ok(Some(first)) if keys::ulid_from(&first) == Some(id) => {}
            Ok(Some(first)) => self.find(
                Item::DedupKey,
                Some(id),
                format!("{} {} names {}", event.provider, event.event_id, describe_id(&first)),
            ),
            Ok(None) => self.find(
                Item::DedupKey,
                Some(id),
                format!("{} {} is missing: a resend would be stored again", event.provider, event.event_id),
            ),
            Err(e) => self.find(Item::DedupKey, Some(id), format!("cannot be read: {e}")),
        }
    }

    fn inline_body(&mut self, k: &[u8]) {
        let Some(id) = id_key(k) else {
            return self.find(Item::Key, None, format!("malformed body key {}", hex(k)));
        };
        if self.exists(&keys::id_key(keys::EVENT, id)) == Some(false) {
            self.find(Item::Body, Some(id), "belongs to no event");
        }
    }

    fn dedup(&mut self, k: &[u8], v: &[u8]) {
        self.report.checked.dedup_keys += 1;
        let name = String::from_utf8_lossy(&k[1..]).replace('\0', " ");
        let Some(id) = keys::ulid_from(v) else {
            return self.find(Item::DedupKey, None, format!("{name}: the value is {} bytes, not an id", v.len()));
        };
        if self.exists(&keys::id_key(keys::EVENT, id)) == Some(false) {
            self.find(Item::DedupKey, Some(id), format!("{name} names an event that is not stored"));
        }
    }

    fn counter(&mut self, k: &[u8], v: &[u8]) {
        self.report.checked.counters += 1;
        let Ok(name) = std::str::from_utf8(&k[1..]) else {
            return self.find(Item::Counter, None, format!("name is not UTF-8: {}", hex(k)));
        };
        let Ok(bytes) = <[u8; 8]>::try_from(v) else {
            return self.find(Item::Counter, None, format!("{name}: {} bytes, not 8", v.len()));
        };
        if let Some(segment) = segment_of_counter(name) {
            self.counted.insert(segment, u64::from_be_bytes(bytes));
        }
    }

    fn heartbeat(&mut self, v: &[u8]) {
        if v.len() != 8 {
            self.find(Item::Key, None, format!("the heartbeat is {} bytes, not 8", v.len()));
        }
    }

    /// The log's watermark must decode, or recovery could not tell which frames to apply again.
    fn watermark(&mut self, v: &[u8]) {
        if log::Position::decode(v).is_none() {
            self.find(Item::Key, None, format!("the log's watermark is {} bytes, not 12", v.len()));
        }
    }

    fn check_report(&mut self, k: &[u8], v: &[u8]) {
        if let Err(e) = super::record::decode_check_report(v) {
            self.find(Item::CheckReport, None, format!("{} does not decode: {e}", String::from_utf8_lossy(&k[1..])));
        }
    }

    fn alert_state(&mut self, k: &[u8], v: &[u8]) {
        if let Err(e) = super::record::decode_alert_state(v) {
            self.find(Item::AlertState, None, format!("{} does not decode: {e}", String::from_utf8_lossy(&k[1..])));
        }
    }

    fn rejection(&mut self, k: &[u8], v: &[u8]) {
        self.report.checked.rejections += 1;
        let Some(id) = id_key(k) else {
            return self.find(Item::Key, None, format!("malformed rejection key {}", hex(k)));
        };
        if let Err(e) = decode_rejection(v) {
            self.find(Item::Rejection, None, format!("{id} does not decode: {e}"));
        }
    }

    fn attempt(&mut self, k: &[u8], v: &[u8]) {
        self.report.checked.attempts += 1;
        let (Some(id), Some(seq)) = (keys::ulid_from(k.get(1..17).unwrap_or_default()), keys::attempt_seq(k)) else {
            return self.find(Item::Key, None, format!("malformed attempt key {}", hex(k)));
        };
        if let Err(e) = decode_attempt(v) {
            self.find(Item::Attempt, Some(id), format!("attempt {seq} does not decode: {e}"));
        }
        // One lookup per event, at its first attempt: the rest share the answer.
        if seq == 0 && self.exists(&keys::id_key(keys::EVENT, id)) == Some(false) {
            self.find(Item::Attempt, Some(id), "attempts of an event that is not stored");
        }
    }

    fn job(&mut self, k: &[u8], v: &[u8]) {
        self.report.checked.jobs += 1;
        let (Some((_, id, target)), Some(provider)) = (keys::parse_job_key(k), keys::job_provider(k)) else {
            return self.find(Item::Key, None, format!("malformed job key {}", hex(k)));
        };
        if let Err(e) = decode_job(v) {
            self.find(Item::Job, Some(id), format!("{provider} target {target}: does not decode: {e}"));
        }
        match self.tree.get(keys::job_of_key(id, target)) {
            Ok(Some(index)) if index.as_ref() == k => {}
            Ok(_) => {
                self.find(Item::JobIndex, Some(id), format!("{provider} target {target}: the index does not name it"))
            }
            Err(e) => self.find(Item::JobIndex, Some(id), format!("cannot be read: {e}")),
        }
        if self.exists(&keys::id_key(keys::EVENT, id)) == Some(false) {
            self.find(
                Item::Job,
                Some(id),
                format!("{provider} target {target}: queued for an event that is not stored"),
            );
        }
    }

    fn job_index(&mut self, k: &[u8], v: &[u8]) {
        let (Some(id), Some(&target)) = (keys::ulid_from(k.get(1..17).unwrap_or_default()), k.get(17)) else {
            return self.find(Item::Key, None, format!("malformed job index key {}", hex(k)));
        };
        let names = keys::parse_job_key(v).map(|(_, i, t)| (i, t));
        if names != Some((id, target)) {
            return self.find(Item::JobIndex, Some(id), format!("target {target}: names another job"));
        }
        if self.exists(v) == Some(false) {
            self.find(Item::JobIndex, Some(id), format!("target {target}: names a job that is not queued"));
        }
    }

    /// A segment whose counter is below the bodies its records name would be deleted under them.
    fn segment_counts(&mut self) {
        let segments: std::collections::BTreeSet<u32> = self.named.keys().chain(self.counted.keys()).copied().collect();
        for segment in segments {
            let (named, counted) =
                (self.named.get(&segment).copied().unwrap_or(0), self.counted.get(&segment).copied().unwrap_or(0));
            if named != counted {
                self.find(
                    Item::Counter,
                    None,
                    format!(
                        "{}: {counted} live bodies counted, {named} named by records",
                        log::segment_counter(segment)
                    ),
                );
            }
        }
    }
}

fn id_key(k: &[u8]) -> Option<Ulid> {
    (k.len() == 17).then(|| keys::id_of(k)).flatten()
}

fn describe_id(v: &[u8]) -> String {
    keys::ulid_from(v).map_or_else(|| format!("{} bytes that are not an id", v.len()), |id| format!("event {id}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::store::{NewEvent, Store, StoreOptions};

    fn problems(report: &Report) -> Vec<(Item, String)> {
        report.findings.iter().map(|f| (f.item, f.problem.clone())).collect()
    }

    /// Cross-references that do not hold are findings too: a missing dedup key, a counter of the
    /// wrong size, an index entry naming no job, a segment counter that disagrees with the records.
    #[tokio::test]
    async fn broken_cross_references_are_findings() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            cache_bytes: 1 << 20,
            rejection_log_size: 10,
            log_segment_bytes: 1 << 20,
            tree_flush_every_ms: Some(super::super::TREE_FLUSH_EVERY_MS),
        };
        let store = Store::open(dir.path(), options, Clock::system()).unwrap();
        let mut ids = Vec::new();
        for n in 0..2 {
            let e = NewEvent {
                provider: "stripe".into(),
                event_id: format!("evt_{n}"),
                event_type: "charge.succeeded".into(),
                received_at_ms: 1_700_000_000_000,
                source_ip: "127.0.0.1".into(),
                headers: Default::default(),
                body: "{}".into(),
                processing_us: 1,
                targets: vec!["http://app/hook".into()],
                items: 1,
                parent: None,
                source: crate::store::Source::Webhook,
            };
            ids.push(store.ingest(e).await.unwrap().id);
        }
        let report = crate::store::CheckReport { at_ms: 1_700_000_000_000, json: "{}".into() };
        store.record_check_report("stripe", report.clone()).await.unwrap();
        assert_eq!(store.check_report("stripe").unwrap(), Some(report));
        assert_eq!(store.check_report("sms").unwrap(), None);
        store.shutdown().await.unwrap();
        drop(store);
        let sound = verify(dir.path()).unwrap();
        assert!(sound.sound(), "{:?}", sound.findings);
        assert_eq!((sound.checked.events, sound.checked.bodies, sound.checked.jobs), (2, 2, 2));

        {
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree(TREE).unwrap();
            tree.remove(keys::dedup_key("stripe", "evt_0")).unwrap();
            tree.insert(keys::counter_key("queue/depth"), &[0u8; 4][..]).unwrap();
            let job = tree.get(keys::job_of_key(ids[1], 0)).unwrap().unwrap();
            tree.remove(job).unwrap();
            tree.insert(keys::counter_key(&log::segment_counter(1)), &1u64.to_be_bytes()[..]).unwrap();
            tree.insert(keys::check_report_key("sms"), &[9u8][..]).unwrap();
            db.flush().unwrap();
        }
        let report = verify(dir.path()).unwrap();
        let found = problems(&report);
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found.iter().any(|(item, what)| *item == Item::CheckReport && what.starts_with("sms does not decode")));
        assert!(found.contains(&(Item::DedupKey, "stripe evt_0 is missing: a resend would be stored again".into())));
        assert!(found.contains(&(Item::Counter, "queue/depth: 4 bytes, not 8".into())));
        assert!(found.contains(&(Item::JobIndex, "target 0: names a job that is not queued".into())));
        assert!(found.contains(&(Item::Counter, "segment/00000001: 1 live bodies counted, 2 named by records".into())));
        let dedup = report.findings.iter().find(|f| f.item == Item::DedupKey).unwrap();
        assert_eq!(dedup.event, Some(ids[0]), "the finding names its event");
        assert!(dedup.to_string().starts_with(&format!("event {}: dedup key: ", ids[0])), "{dedup}");
    }
}
