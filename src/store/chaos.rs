//! What chaos delivery (`crate::chaos`) leaves in the store: the mark on a job and on its
//! attempt ([`ChaosMark`]), and the jobs an event's draw queues ([`jobs`]), which the ingest
//! operation (`ops.rs`) adds to its batch, so what chaos decided is durable with them.

use ulid::Ulid;

use super::stats::{CHAOS_DELAY, CHAOS_DUPLICATE};
use crate::chaos::Draw;

/// The target index of a duplicate's job: its first job's plus this, clear of the at most 16
/// targets an endpoint has (`config/check.rs`), so each has its own place in the queue.
pub(super) const DUPLICATE_TARGET: u8 = 64;

/// What chaos delivery did to one job, and so to its attempt. A job records what was decided
/// when it was queued; its attempt adds what was seen when it went out (`reordered_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChaosMark {
    /// The extra delay before the first attempt (`delay`).
    pub delay_ms: u64,
    /// The extra due offset within `reorder_window`.
    pub reorder_ms: u64,
    /// A second delivery of the event (`duplicate`), due this long after the first.
    pub duplicate_after_ms: Option<u64>,
    /// The first delivery of an event that chaos delivers twice: a duplicate follows.
    pub duplicated: bool,
    /// Our id of an event that arrived later and went out before this one, in the same lane.
    pub reordered_after: Option<Ulid>,
}

impl ChaosMark {
    /// Whether the mark says anything at all.
    pub fn is_empty(&self) -> bool {
        *self == ChaosMark::default()
    }

    /// What was done, one phrase each: `duplicate`, `delayed 12 s`, `reordered after <id>`.
    pub fn actions(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.duplicate_after_ms.is_some() {
            out.push("duplicate".to_string());
        }
        if self.duplicated {
            out.push("duplicated: a second delivery follows".to_string());
        }
        if self.delay_ms > 0 {
            out.push(format!("delayed {}", seconds(self.delay_ms)));
        }
        if let Some(id) = self.reordered_after {
            out.push(format!("reordered after {id}"));
        }
        out
    }
}

/// `12 s`, `0.35 s`: milliseconds as seconds, without trailing zeros.
fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{} s", format!("{:.3}", ms as f64 / 1000.0).trim_end_matches('0'))
    }
}

/// A job to queue: its due time, its target index and its mark.
pub(super) type ChaosJob = (i64, u8, Option<ChaosMark>);

/// The jobs of an event's first delivery to one target as chaos drew it: the first, due later by the delay and the reorder offset, then the duplicate
/// when one was drawn; and the actions to count (`stats::chaos_counter`).
pub(super) fn jobs(received_ms: i64, target: u8, draw: Draw) -> (Vec<ChaosJob>, Vec<&'static str>) {
    let mark = ChaosMark {
        delay_ms: draw.delay_ms,
        reorder_ms: draw.reorder_ms,
        duplicated: draw.duplicate_after_ms.is_some(),
        ..ChaosMark::default()
    };
    let due_ms = received_ms.saturating_add((draw.delay_ms + draw.reorder_ms) as i64);
    let mut jobs = vec![(due_ms, target, (!mark.is_empty()).then_some(mark))];
    let mut actions = Vec::new();
    if draw.delay_ms > 0 {
        actions.push(CHAOS_DELAY);
    }
    if let Some(after_ms) = draw.duplicate_after_ms {
        // Marked a duplicate only: its due time has the delay in it, but the delay is the first
        // delivery's action.
        let duplicate = ChaosMark { duplicate_after_ms: Some(after_ms), ..ChaosMark::default() };
        jobs.push((due_ms.saturating_add(after_ms as i64), target + DUPLICATE_TARGET, Some(duplicate)));
        actions.push(CHAOS_DUPLICATE);
    }
    (jobs, actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_says_each_action_in_a_phrase() {
        let mark = ChaosMark {
            delay_ms: 12_000,
            duplicate_after_ms: Some(2500),
            reordered_after: Some(Ulid::from(99u128)),
            ..ChaosMark::default()
        };
        let said = mark.actions();
        assert_eq!(said[..2], ["duplicate".to_string(), "delayed 12 s".to_string()]);
        assert!(said[2].starts_with("reordered after 0000"), "{said:?}");
        assert_eq!(ChaosMark { delay_ms: 350, ..ChaosMark::default() }.actions(), ["delayed 0.35 s"]);
        let first = ChaosMark { duplicated: true, ..ChaosMark::default() };
        assert_eq!(first.actions(), ["duplicated: a second delivery follows"]);
        assert!(ChaosMark::default().is_empty() && !first.is_empty());
    }

    #[test]
    fn a_draw_becomes_a_later_job_and_a_duplicate_in_its_own_place() {
        let draw = Draw { delay_ms: 300, reorder_ms: 50, duplicate_after_ms: Some(2000) };
        let (queued, actions) = jobs(1000, 1, draw);
        let first = ChaosMark { delay_ms: 300, reorder_ms: 50, duplicated: true, ..ChaosMark::default() };
        let second = ChaosMark { duplicate_after_ms: Some(2000), ..ChaosMark::default() };
        assert_eq!(queued, [(1350, 1, Some(first)), (3350, 65, Some(second))]);
        assert_eq!(actions, [CHAOS_DELAY, CHAOS_DUPLICATE]);
        assert_eq!(jobs(1000, 0, Draw::default()), (vec![(1000, 0, None)], vec![]));
    }
}
