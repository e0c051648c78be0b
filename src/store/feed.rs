//! The feed of what happens to events: each new event and each change of status, in commit
//! order, published by the writer once its batch is in the tree. `GET /events/stream` and
//! `stagehook tail` read it.
//!
//! It is memory only and bounded: the newest [`RING`] changes, numbered from 1 in this process's
//! life (`boot` tells lives apart). A reader that fell further behind, or that resumes with an
//! id of another life, is told it missed some ([`Missed`]) and reloads what it shows. Until a
//! first reader subscribes the writer records nothing, so a stagehook nobody tails pays nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;
use ulid::Ulid;

/// How many changes the feed keeps for readers that resume.
pub const RING: usize = 4096;

/// One change of one event, as a reader gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its place in the feed: 1, 2, ... in this process's life.
    pub seq: u64,
    /// `event` for a new event, `status` for a change of status.
    pub kind: &'static str,
    pub id: Ulid,
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub status: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When it was committed (ms since the epoch).
    pub at_ms: i64,
}

/// The reader asked for changes the feed no longer holds (or never held: another life's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed;

pub struct Feed {
    boot: String,
    on: AtomicBool,
    ring: Mutex<VecDeque<Change>>,
    /// The last change's `seq`, watched by readers.
    last: watch::Sender<u64>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            boot: format!("{:08x}", fastrand::u32(..)),
            on: AtomicBool::new(false),
            ring: Mutex::new(VecDeque::new()),
            last: watch::Sender::new(0),
        }
    }
}

impl Feed {
    /// This process's life, part of every id a reader sees (`<boot>.<seq>`).
    pub fn boot(&self) -> &str {
        &self.boot
    }

    /// Starts recording (if it had not) and gives a receiver that changes with each publication.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.on.store(true, Ordering::Release);
        self.last.subscribe()
    }

    /// Whether anyone ever subscribed: before that, the writer records nothing.
    pub fn recording(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// The last published `seq` (0: none yet).
    pub fn last(&self) -> u64 {
        *self.last.borrow()
    }

    /// Numbers and keeps `changes` (their `seq` is set here), dropping the oldest past [`RING`],
    /// and wakes the readers.
    pub(super) fn publish(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let mut ring = self.ring.lock();
        let mut seq = self.last();
        for mut c in changes {
            seq += 1;
            c.seq = seq;
            ring.push_back(c);
        }
        while ring.len() > RING {
            ring.pop_front();
        }
        drop(ring);
        self.last.send_replace(seq);
    }

    /// The changes after `after`, oldest first, or [`Missed`] when some of them are gone.
    pub fn since(&self, after: u64) -> Result<Vec<Change>, Missed> {
        let ring = self.ring.lock();
        let last = self.last();
        if after > last {
            return Err(Missed);
        }
        let first = ring.front().map_or(last + 1, |c| c.seq);
        if after + 1 < first {
            return Err(Missed);
        }
        Ok(ring.iter().filter(|c| c.seq > after).cloned().collect())
    }

    /// Reads a reader's resume id (`<boot>.<seq>`): the seq when it is of this life.
    pub fn resume_from(&self, last_event_id: &str) -> Result<u64, Missed> {
        match last_event_id.split_once('.') {
            Some((boot, seq)) if boot == self.boot => seq.parse().map_err(|_| Missed),
            _ => Err(Missed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(i: u32) -> Change {
        Change {
            seq: 0,
            kind: "event",
            id: Ulid::from_parts(1, u128::from(i)),
            provider: "stripe".into(),
            event_id: format!("evt_{i}"),
            event_type: "t".into(),
            status: "received",
            attempts: 0,
            last_error: None,
            at_ms: 1,
        }
    }

    #[test]
    fn a_reader_gets_what_came_after_its_place_or_hears_it_missed_some() {
        let feed = Feed::default();
        assert!(!feed.recording());
        let mut rx = feed.subscribe();
        assert!(feed.recording());
        feed.publish((0..3).map(change).collect());
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 3);
        assert_eq!(feed.since(1).unwrap().iter().map(|c| c.seq).collect::<Vec<_>>(), [2, 3]);
        assert!(feed.since(3).unwrap().is_empty());
        assert_eq!(feed.since(4), Err(Missed), "a place beyond the end is another life's");
        feed.publish((0..RING as u32).map(change).collect());
        assert_eq!(feed.since(2), Err(Missed), "fallen out of the ring");
        assert_eq!(feed.since(3).unwrap().len(), RING);
        let id = format!("{}.7", feed.boot());
        assert_eq!(feed.resume_from(&id), Ok(7));
        let other_life = if feed.boot() == "00000000" { "00000001.7" } else { "00000000.7" };
        assert_eq!(feed.resume_from(other_life), Err(Missed), "another life's id");
        assert_eq!(feed.resume_from("junk"), Err(Missed));
    }
}
