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

    #[test]
    fn accessors_and_display() {
        let t = Timestamp::new(-3003, Timescale::VIDEO);
        assert_eq!((t.ticks(), t.scale().ticks()), (-3003, 90_000));
        assert_eq!(t.to_string(), "-3003/90000");
        assert_eq!(t.as_secs_f64(), -3003.0 / 90_000.0);
        assert_eq!(Timestamp::from_millis(1500).as_secs_f64(), 1.5);
        assert_eq!(Timescale::new(48_000).map(Timescale::ticks), Some(48_000));
    }

    #[test]
    fn as_millis_floors_toward_negative_infinity() {
        assert_eq!(Timestamp::new(89, Timescale::VIDEO).as_millis(), 0);
        assert_eq!(Timestamp::new(90, Timescale::VIDEO).as_millis(), 1);
        assert_eq!(Timestamp::new(-1, Timescale::VIDEO).as_millis(), -1);
        assert_eq!(Timestamp::new(-90, Timescale::VIDEO).as_millis(), -1);
        assert_eq!(Timestamp::new(-91, Timescale::VIDEO).as_millis(), -2);
    }

    #[test]
    fn rescale_keeps_same_scale_rounds_halves_away_and_saturates() {
        let t = Timestamp::new(7, Timescale::VIDEO);
        assert_eq!(t.rescale(Timescale::VIDEO), t);
        let two = Timescale::new(2).unwrap();
        // 1/2 s and -1/2 s in a 1 Hz clock: halves round away from zero.
        let one = Timescale::new(1).unwrap();
        assert_eq!(Timestamp::new(1, two).rescale(one).ticks(), 1);
        assert_eq!(Timestamp::new(-1, two).rescale(one).ticks(), -1);
        // i64::MAX seconds in a 90 kHz clock does not fit: clamped, not wrapped.
        let max = Timestamp::new(i64::MAX, one).rescale(Timescale::VIDEO);
        assert_eq!(max.ticks(), i64::MAX);
        let min = Timestamp::new(i64::MIN, one).rescale(Timescale::VIDEO);
        assert_eq!(min.ticks(), i64::MIN);
    }

    proptest::proptest! {
        /// Milliseconds survive a trip through any finer clock (and back).
        #[test]
        fn millis_round_trip_through_finer_clocks(
            ms in -(1i64 << 40)..(1i64 << 40),
            scale in 1000u32..=192_000,
        ) {
            let to = Timescale::new(scale).unwrap();
            let there = Timestamp::from_millis(ms).rescale(to);
            proptest::prop_assert_eq!(there.rescale(Timescale::MILLIS).ticks(), ms);
        }
    }
}
