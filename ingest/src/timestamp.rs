//! Repair of RTMP media timestamps.
//!
//! RTMP carries a 32-bit millisecond timestamp per message. Publishers get it wrong in three
//! ways that a packager must never see:
//!
//! - it wraps after 2^32 ms (49.7 days);
//! - it steps back by a few milliseconds to a few hundred (encoder jitter, audio resampling,
//!   interleaving bugs);
//! - it restarts from zero (an encoder restarted its clock, a relay switched sources).
//!
//! [`Unwrapper`] turns the raw values of one track into an `i64` millisecond timeline that
//! never decreases. It keeps no clock and never fails.

/// Extends one track's 32-bit RTMP timestamps into a non-decreasing `i64` millisecond timeline.
///
/// - Wrap: consecutive values are compared modulo 2^32 (as a signed 32-bit difference), so
///   `0xFFFF_FFF0` followed by `0x10` moves forward by 32 ms.
/// - Small backward step (at most [`tolerance_ms`](Self::tolerance_ms)): the output is clamped
///   to the previous output; the raw timeline is kept, so later timestamps are not shifted.
/// - Large backward step (a reset): the timeline is rebased so the new value lands one typical
///   frame step after the previous output, and later values continue from there.
///
/// Forward jumps of any size are kept as they are (a publisher may pause).
///
/// ```
/// use zerocast_ingest::timestamp::Unwrapper;
///
/// let mut u = Unwrapper::new();
/// assert_eq!(u.extend(u32::MAX - 9), i64::from(u32::MAX) - 9);
/// assert_eq!(u.extend(10), i64::from(u32::MAX) + 11); // across the wrap
/// ```
#[derive(Debug, Clone)]
pub struct Unwrapper {
    tolerance_ms: u32,
    state: Option<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// The last raw value seen.
    last_raw: u32,
    /// The raw timeline, extended across wraps (before repair).
    last_ext: i64,
    /// Added to the extended raw timeline to get the output.
    offset: i64,
    /// The last value returned.
    last_out: i64,
    /// The last forward step, used to place the first value after a reset.
    last_step: i64,
}

/// Forward steps larger than this are not remembered as a "typical frame step".
const MAX_REMEMBERED_STEP_MS: i64 = 1_000;

impl Unwrapper {
    /// Backward steps up to this many milliseconds are clamped; larger ones rebase.
    pub const DEFAULT_TOLERANCE_MS: u32 = 500;

    /// An unwrapper with [`DEFAULT_TOLERANCE_MS`](Self::DEFAULT_TOLERANCE_MS).
    pub const fn new() -> Self {
        Self::with_tolerance(Self::DEFAULT_TOLERANCE_MS)
    }

    /// An unwrapper that clamps backward steps up to `tolerance_ms` and rebases larger ones.
    pub const fn with_tolerance(tolerance_ms: u32) -> Self {
        Self {
            tolerance_ms,
            state: None,
        }
    }

    /// The clamping tolerance in milliseconds.
    pub const fn tolerance_ms(&self) -> u32 {
        self.tolerance_ms
    }

    /// The last value returned by [`extend`](Self::extend), if any.
    pub fn last(&self) -> Option<i64> {
        self.state.map(|s| s.last_out)
    }

    /// Maps the next raw timestamp of this track onto the repaired timeline.
    ///
    /// The result is never smaller than the previous result.
    pub fn extend(&mut self, raw: u32) -> i64 {
        let Some(s) = self.state.as_mut() else {
            let first = i64::from(raw);
            self.state = Some(State {
                last_raw: raw,
                last_ext: first,
                offset: 0,
                last_out: first,
                last_step: 0,
            });
            return first;
        };
        // Signed distance modulo 2^32: handles the wrap in both directions.
        let delta = i64::from(raw.wrapping_sub(s.last_raw) as i32);
        let ext = s.last_ext.saturating_add(delta);
        s.last_raw = raw;
        s.last_ext = ext;
        let mut out = ext.saturating_add(s.offset);
        if out < s.last_out {
            let back = s.last_out.saturating_sub(out);
            if back <= i64::from(self.tolerance_ms) {
                out = s.last_out;
            } else {
                let target = s.last_out.saturating_add(s.last_step);
                s.offset = s.offset.saturating_add(target.saturating_sub(out));
                out = target;
            }
        } else {
            let step = out - s.last_out;
            if step <= MAX_REMEMBERED_STEP_MS {
                s.last_step = step;
            }
        }
        s.last_out = out;
        out
    }
}

impl Default for Unwrapper {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(u: &mut Unwrapper, raw: &[u32]) -> Vec<i64> {
        raw.iter().map(|&r| u.extend(r)).collect()
    }

    #[test]
    fn passes_well_formed_timestamps_through() {
        let mut u = Unwrapper::new();
        assert_eq!(run(&mut u, &[0, 33, 66, 100]), [0, 33, 66, 100]);
        assert_eq!(u.last(), Some(100));
    }

    #[test]
    fn extends_across_the_wrap() {
        let mut u = Unwrapper::new();
        let base = i64::from(u32::MAX);
        assert_eq!(
            run(&mut u, &[u32::MAX - 20, u32::MAX, 12, 45]),
            [base - 20, base, base + 13, base + 46]
        );
    }

    #[test]
    fn clamps_small_backward_steps_without_shifting_later_ones() {
        let mut u = Unwrapper::new();
        assert_eq!(
            run(&mut u, &[1000, 1040, 1010, 1080, 1120]),
            [1000, 1040, 1040, 1080, 1120]
        );
    }

    #[test]
    fn rebases_after_a_reset_to_zero() {
        let mut u = Unwrapper::new();
        // 40 ms steps, then the publisher restarts its clock at 0.
        assert_eq!(
            run(&mut u, &[3_600_000, 3_600_040, 0, 40, 80]),
            [3_600_000, 3_600_040, 3_600_080, 3_600_120, 3_600_160]
        );
    }

    #[test]
    fn small_negative_start_is_clamped_not_wrapped() {
        let mut u = Unwrapper::new();
        // 100 then "-200" as u32: a 300 ms backward step.
        assert_eq!(
            run(&mut u, &[100, 100u32.wrapping_sub(300), 140]),
            [100, 100, 140]
        );
    }

    #[test]
    fn tolerance_is_configurable() {
        let mut u = Unwrapper::with_tolerance(0);
        assert_eq!(run(&mut u, &[100, 140, 139, 179]), [100, 140, 180, 220]);
    }

    proptest! {
        #[test]
        fn output_never_decreases(raw in proptest::collection::vec(any::<u32>(), 0..200)) {
            let mut u = Unwrapper::new();
            let out = run(&mut u, &raw);
            for w in out.windows(2) {
                prop_assert!(w[0] <= w[1], "{out:?}");
            }
        }

        #[test]
        fn forward_steps_are_kept(start in any::<u32>(), steps in proptest::collection::vec(0u32..100_000, 0..100)) {
            let mut u = Unwrapper::new();
            let mut raw = start;
            let mut expected = i64::from(start);
            prop_assert_eq!(u.extend(raw), expected);
            for s in steps {
                raw = raw.wrapping_add(s);
                expected += i64::from(s);
                prop_assert_eq!(u.extend(raw), expected);
            }
        }
    }
}
