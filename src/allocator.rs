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

/// How often a worker thread that goes idle gives back what it freed.
const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Called when a runtime worker parks (it has nothing to do): at most once a [`COLLECT_EVERY`]
/// per thread, hands the thread's freed pages back. mimalloc purges a freed page only when the
/// thread that owns it allocates or frees again, and a worker that a burst (thousands of slow
/// bodies) left idle would otherwise keep the burst's memory for as long as it stays idle.
pub fn collect_when_idle() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    let due = LAST.with(|last| match last.get() {
        Some(t) if now.duration_since(t) < COLLECT_EVERY => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        // SAFETY: mi_collect only walks the calling thread's heap and mimalloc's own arenas.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}
