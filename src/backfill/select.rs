//! What the listers share: how much of its window the pages so far have covered.

use super::Window;

/// What [`Lister::covered`] answers, from the newest creation time a lister has listed.
pub fn covered(window: Window, newest_listed_ms: Option<i64>, done: bool) -> Window {
    let until_ms = match (done, newest_listed_ms) {
        (true, _) => window.until_ms,
        (false, Some(ms)) => ms - 1,
        (false, None) => window.since_ms - 1,
    };
    Window { since_ms: window.since_ms, until_ms }
}
