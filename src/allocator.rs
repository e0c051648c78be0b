//! The allocator of every stagehook binary: mimalloc, tuned to give memory back promptly.
//!
//! The hot path allocates and frees small objects from several threads at once (request
//! handlers, the store writer, sled's I/O threads): under glibc's malloc, allocation was a
//! quarter of the writer's time, and the same load ran about 45 % faster with mimalloc. Its
//! defaults hold on to freed memory, though (peak RSS 96 MB became 170 MB in an 8-second load
//! run), so arenas are committed on demand. Freed pages are purged after a second: purged at
//! once, the pages the hot path empties and fills again all the time were given back and
//! faulted in again, a third of the handlers' CPU and a fifth of the writer's at 64 connections
//! (36 against 25 µs and 24.5 against 19.3 µs per request, `scripts/loadtest.sh`'s events), for
//! 9 MB less peak RSS over a million-event ingest (110 against 119 MB). Each binary declares
//! `#[global_allocator] static A: Allocator = Allocator;` and calls [`tune`] first thing.

pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_t` values, from mimalloc.h (the same in mimalloc 2 and 3).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long a freed page stays committed before it is given back, in milliseconds.
const PURGE_AFTER_MS: std::ffi::c_long = 1000;

/// Runs [`tune`] before `main`, before Rust's runtime makes its first allocation: mimalloc
/// reserves its first arena then, and an arena committed eagerly is never purged, whatever the
/// options say later.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_BEFORE_MAIN: extern "C" fn() = {
    extern "C" fn run() {
        tune();
    }
    run
};

/// Sets mimalloc's options. On Linux this already ran before `main`.
pub fn tune() {
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; it is safe to
    // call at any time, from any thread.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_AFTER_MS);
    }
}

/// Bumped when the server has seen a burst end (many connections or body bytes gone again):
/// each worker collects once when it next parks and sees a new value. See [`collect_soon`].
static COLLECT_ROUND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Asks every runtime worker to hand its freed pages back the next time it parks. Called by the
/// server when a burst (thousands of slow bodies) has ended, never on a steady load.
pub fn collect_soon() {
    COLLECT_ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Called when a runtime worker parks (it has nothing to do): hands the thread's freed pages
/// back if [`collect_soon`] asked for it since the thread last did. mimalloc purges a freed page
/// only when the thread that owns it allocates or frees again, and a worker that a burst left
/// idle would otherwise keep the burst's memory for as long as it stays idle.
///
/// Not on every park, nor once a second: a worker parks thousands of times a second under load,
/// and collecting once a second gave back the pages the hot path fills again, which then
/// faulted in again (the cost of a short purge delay, above); a 64-connection load test had
/// measured 0.89 of the throughput of the build before it. Here a park costs one atomic load.
pub fn collect_when_idle() {
    thread_local! {
        static SEEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let round = COLLECT_ROUND.load(std::sync::atomic::Ordering::Relaxed);
    if SEEN.with(|seen| seen.replace(round)) != round {
        // SAFETY: mi_collect only walks the calling thread's heap and mimalloc's own arenas.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}
