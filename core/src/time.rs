//! Typed media time.

use std::fmt;

/// Ticks per second of a track's clock (90 000 for video, the sample rate for audio).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timescale(u32);

impl Timescale {
    /// Milliseconds: the clock of RTMP and FLV timestamps.
    pub const MILLIS: Self = Self(1000);
    /// The 90 kHz clock used for video tracks.
    pub const VIDEO: Self = Self(90_000);

    /// A timescale of `ticks` per second; `None` for zero.
    pub const fn new(ticks: u32) -> Option<Self> {
        if ticks == 0 {
            None
        } else {
            Some(Self(ticks))
        }
    }

    /// Ticks per second.
    pub const fn ticks(self) -> u32 {
        self.0
    }
}

/// A point on a track's timeline: a signed tick count in a [`Timescale`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    ticks: i64,
    scale: Timescale,
}

impl Timestamp {
    /// `ticks` ticks of `scale`.
    pub const fn new(ticks: i64, scale: Timescale) -> Self {
        Self { ticks, scale }
    }

    /// A millisecond timestamp, as RTMP carries them.
    pub const fn from_millis(ms: i64) -> Self {
        Self::new(ms, Timescale::MILLIS)
    }

    /// The tick count.
    pub const fn ticks(self) -> i64 {
        self.ticks
    }

    /// The clock this timestamp counts in.
    pub const fn scale(self) -> Timescale {
        self.scale
    }

    /// The same instant in another timescale, rounded to the nearest tick.
    pub fn rescale(self, to: Timescale) -> Self {
        if to == self.scale {
            return self;
        }
        let num = i128::from(self.ticks) * i128::from(to.0);
        let den = i128::from(self.scale.0);
        // Round half away from zero; `den` is never zero (Timescale::new refuses it).
        let q = if num >= 0 {
            (num + den / 2) / den
        } else {
            (num - den / 2) / den
        };
        Self::new(
            q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            to,
        )
    }

    /// Seconds as a float, for display and playlist durations.
    pub fn as_secs_f64(self) -> f64 {
        self.ticks as f64 / f64::from(self.scale.0)
    }

    /// Whole milliseconds (rounded toward negative infinity).
    pub fn as_millis(self) -> i64 {
        self.rescale_floor(Timescale::MILLIS)
    }

    fn rescale_floor(self, to: Timescale) -> i64 {
        let num = i128::from(self.ticks) * i128::from(to.0);
        num.div_euclid(i128::from(self.scale.0)) as i64
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ticks, self.scale.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_to_nearest() {
        let t = Timestamp::from_millis(21);
        assert_eq!(t.rescale(Timescale::VIDEO).ticks(), 1890);
        let audio = Timescale::new(44_100).unwrap();
        // 21 ms * 44.1 = 926.1 -> 926
        assert_eq!(t.rescale(audio).ticks(), 926);
        assert_eq!(Timestamp::from_millis(-21).rescale(audio).ticks(), -926);
        assert_eq!(Timestamp::new(1890, Timescale::VIDEO).as_millis(), 21);
    }

    #[test]
    fn zero_timescale_is_refused() {
        assert!(Timescale::new(0).is_none());
    }
}
