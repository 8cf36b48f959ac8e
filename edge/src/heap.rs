//! Gives the heap's free memory back to the kernel, so that RSS falls when streams end and
//! viewers leave (glibc only).
//!
//! glibc's `free` returns memory to the kernel only from the top of an arena's heap (and for
//! blocks it `mmap`ed, 128 KiB and up). Media is freed in whatever order frames, parts and
//! segments leave the window, each worker thread allocates from its own arena, and a buffer
//! allocated on one core is often freed on another: after a stream ended, its memory stayed
//! in RSS, free but held, for as long as the process ran (measured with one stream: 91 MB
//! held, 16 MB after a `malloc_trim(0)` from a debugger). `malloc_trim(0)` gives back every
//! whole free page of every arena (`madvise(MADV_DONTNEED)`); the pages are faulted in again
//! only if the memory is used again.
//!
//! ```text
//! zerocast-heap thread: every INTERVAL ─ mallinfo2().fordblks >= MIN_FREE? ─ malloc_trim(0)
//! ```
//!
//! A thread of its own, not a worker: a trim holds each arena's lock while it walks that
//! arena, and `mallinfo2` (which decides whether to trim) costs about as much as walking the
//! free lists. A worker allocating meanwhile waits for that arena's lock, not for the whole
//! trim. The trims are logged at `debug` (`ZEROCAST_LOG=zerocast_edge::heap=debug`) with what
//! they took and gave back.
//!
//! Other C libraries, or a global allocator of the binary's choosing, have their own policies:
//! there, [`start`] does nothing.

use std::time::Duration;

/// How often the heap's free memory is looked at.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Free heap memory, bytes, below which no trim is tried: a live server's heap always holds
/// some (buffers freed and soon reused), and giving that back would only make the next
/// allocations fault their pages in again.
pub(crate) const MIN_FREE: usize = 8 << 20;

/// Starts the thread that trims the heap, once per process; later calls do nothing.
pub(crate) fn start() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static STARTED: std::sync::Once = std::sync::Once::new();
        STARTED.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("zerocast-heap".into())
                .spawn(|| loop {
                    std::thread::sleep(INTERVAL);
                    glibc::trim_if_worth_it();
                });
            if let Err(e) = spawned {
                tracing::warn!("no heap trimming thread: {e}");
            }
        });
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::time::Instant;

    use super::MIN_FREE;

    /// Trims when the heap holds at least [`MIN_FREE`] bytes free.
    pub(super) fn trim_if_worth_it() {
        // SAFETY: mallinfo2 takes no arguments and only reads the allocator's own state
        // (under its locks); glibc 2.33 and later.
        let free = unsafe { libc::mallinfo2() }.fordblks;
        if free < MIN_FREE {
            return;
        }
        let before = rss_kib();
        let start = Instant::now();
        // SAFETY: malloc_trim(0) takes the allocator's locks itself; 0 keeps no padding.
        unsafe { libc::malloc_trim(0) };
        let took = start.elapsed();
        tracing::debug!(
            free_kib = free >> 10,
            rss_before_kib = before,
            rss_after_kib = rss_kib(),
            took_us = took.as_micros() as u64,
            "heap trimmed"
        );
    }

    /// Resident set size, KiB, from `/proc/self/statm` (0 when unreadable).
    fn rss_kib() -> u64 {
        let pages = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        pages * u64::try_from(page).unwrap_or(4096) / 1024
    }
}
