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
//! zerocast-heap thread: every INTERVAL ─ free heap grew by MIN_GROWTH since the last trim? ─ malloc_trim(0)
//! ```
//!
//! A thread of its own, not a worker: a trim holds each arena's lock while it walks that
//! arena, and `mallinfo2` (which decides whether to trim) costs about as much as walking the
//! free lists. A worker allocating meanwhile waits for that arena's lock, not for the whole
//! trim; how long depends on how much it gives back (`madvise` under the lock): measured on
//! this project's 2-core machine under load ~8, 1-11 ms for ~4 MB, 0.28 s for 137 MB and
//! 0.84 s for 150 MB (10 streams' windows; 10,000 connections closing). So it trims only when
//! the free heap grew by [`MIN_GROWTH`] since its low point (memory freed in a burst: a stream
//! forgotten, many viewers gone), not while a steady server's free heap hovers (10 live streams
//! hold 8-10 MB free, reused as fast as it is freed: trimming it every 10 s gave back ~4 MB
//! that was faulted in again at once). The trims are logged at `debug`
//! (`ZEROCAST_LOG=zerocast_edge::heap=debug`) with what they took and gave back.
//!
//! Other C libraries have their own policies: there, [`start`] does nothing. Under another
//! allocator (`LD_PRELOAD` jemalloc, say), `mallinfo2` reports glibc's own unused heap, which
//! never grows: the thread never trims.

use std::time::Duration;

/// How often the heap's free memory is looked at.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Growth of the free heap memory, bytes, since its lowest point after the last trim, that
/// makes a trim worth it. A live server's heap always holds some free memory (buffers freed
/// and soon reused); giving that back would only make the next allocations fault their pages
/// in again.
pub(crate) const MIN_GROWTH: usize = 8 << 20;

/// Starts the thread that trims the heap, once per process; later calls do nothing.
pub(crate) fn start() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static STARTED: std::sync::Once = std::sync::Once::new();
        STARTED.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("zerocast-heap".into())
                .spawn(|| {
                    let mut low = usize::MAX;
                    loop {
                        std::thread::sleep(INTERVAL);
                        glibc::trim_if_worth_it(&mut low);
                    }
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

    use super::MIN_GROWTH;

    /// Trims when the heap's free bytes are [`MIN_GROWTH`] above `low`, their lowest value
    /// since the last trim (which the trim resets to what is free then).
    pub(super) fn trim_if_worth_it(low: &mut usize) {
        // SAFETY: mallinfo2 takes no arguments and only reads the allocator's own state
        // (under its locks); glibc 2.33 and later.
        let free = unsafe { libc::mallinfo2() }.fordblks;
        *low = (*low).min(free);
        if free - *low < MIN_GROWTH {
            return;
        }
        // A trim leaves the free chunks free (only their pages go): count from here.
        *low = free;
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
