//! Per-user limits shared by direct messages and live chat, over REST and WebSocket alike: a
//! token bucket per user (governor's GCRA over a sharded map, so senders do not queue on one
//! lock) and the content size limit.
//!
//! Memory stays bounded: every [`SWEEP_EVERY`] checks, keys whose bucket has refilled (their
//! state is indistinguishable from a fresh one) are dropped, so the map holds at most the
//! users who sent recently plus one sweep interval of others, however many users ever sent.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::Quota;

use crate::id::UserId;

/// Checks between two sweeps of refilled buckets.
pub const SWEEP_EVERY: u64 = 4096;

/// Why a message was refused before it reached a store or a room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Empty content.
    #[error("content is empty")]
    Empty,
    /// Content over the size limit.
    #[error("content is {len} bytes; the limit is {limit}")]
    TooLarge {
        /// Bytes of UTF-8 sent.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The user's bucket is empty.
    #[error("too many messages; retry in {retry_after_ms} ms")]
    RateLimited {
        /// When the next message would be accepted.
        retry_after_ms: u64,
    },
}

type Keyed<C> = governor::RateLimiter<
    UserId,
    DefaultKeyedStateStore<UserId>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// The limits of one server instance.
pub struct Limits<C: Clock = DefaultClock> {
    limiter: Keyed<C>,
    max_message_bytes: usize,
    checks: AtomicU64,
}

impl<C: Clock> std::fmt::Debug for Limits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("users", &self.limiter.len())
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

impl Limits {
    /// `rate` messages per second sustained, bursts of `burst`, content of at most
    /// `max_message_bytes`.
    pub fn new(rate: f64, burst: f64, max_message_bytes: usize) -> Self {
        Self::with_clock(rate, burst, max_message_bytes, DefaultClock::default())
    }
}

impl<C: Clock> Limits<C> {
    /// As [`new`](Limits::new), reading time from `clock` (tests use a fake clock).
    pub fn with_clock(rate: f64, burst: f64, max_message_bytes: usize, clock: C) -> Self {
        Self {
            limiter: governor::RateLimiter::dashmap_with_clock(quota(rate, burst), clock),
            max_message_bytes,
            checks: AtomicU64::new(0),
        }
    }

    /// Checks that `content` is neither empty nor over the size limit.
    pub fn check_content(&self, content: &str) -> Result<(), LimitError> {
        if content.is_empty() {
            return Err(LimitError::Empty);
        }
        if content.len() > self.max_message_bytes {
            return Err(LimitError::TooLarge {
                len: content.len(),
                limit: self.max_message_bytes,
            });
        }
        Ok(())
    }

    /// Takes one message from `user`'s bucket.
    pub fn take(&self, user: UserId) -> Result<(), LimitError> {
        let r = self.limiter.check_key(&user).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            LimitError::RateLimited {
                retry_after_ms: wait.as_millis().max(1).try_into().unwrap_or(u64::MAX),
            }
        });
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        r
    }

    /// Drops the buckets that have refilled, and the map's spare capacity.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Users with a bucket in memory now.
    pub fn tracked_users(&self) -> usize {
        self.limiter.len()
    }
}

/// governor's quota for `rate`/s with bursts of `burst`; absurd values are clamped, not
/// refused: one message per 1000 s at the slowest, a million a second at the fastest, bursts
/// of 1 to a million (governor's arithmetic overflows far beyond that).
fn quota(rate: f64, burst: f64) -> Quota {
    let per = if rate.is_finite() && rate > 0.0 {
        1.0 / rate
    } else {
        1000.0
    };
    let period = Duration::from_secs_f64(per.clamp(1e-6, 1000.0));
    let burst = NonZeroU32::new(burst.clamp(1.0, 1e6) as u32).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn user() -> UserId {
        UserId(uuid::Uuid::new_v4())
    }

    fn limits(rate: f64, burst: f64) -> (Limits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Limits::with_clock(rate, burst, 16, clock.clone()), clock)
    }

    #[test]
    fn bursts_then_refills() {
        let (l, clock) = limits(10.0, 3.0);
        let u = user();
        assert!(l.take(u).is_ok());
        assert!(l.take(u).is_ok());
        assert!(l.take(u).is_ok());
        assert_eq!(
            l.take(u),
            Err(LimitError::RateLimited {
                retry_after_ms: 100
            })
        );
        // Another user has a bucket of their own.
        assert!(l.take(user()).is_ok());
        clock.advance(Duration::from_millis(100));
        assert!(l.take(u).is_ok());
        assert!(l.take(u).is_err());
    }

    #[test]
    fn the_documented_limits_hold() {
        // 10 messages/s, bursts of 20: 20 at once, then one per 100 ms.
        let (l, clock) = limits(10.0, 20.0);
        let u = user();
        let ok = (0..30).filter(|_| l.take(u).is_ok()).count();
        assert_eq!(ok, 20);
        let mut sent = 0;
        for _ in 0..100 {
            clock.advance(Duration::from_millis(10));
            sent += usize::from(l.take(u).is_ok());
        }
        // One second later: ten more, not twenty.
        assert_eq!(sent, 10);
    }

    #[test]
    fn content_limits() {
        let (l, _) = limits(10.0, 20.0);
        assert_eq!(l.check_content(""), Err(LimitError::Empty));
        assert!(l.check_content("sixteen bytes ok").is_ok());
        assert_eq!(
            l.check_content("seventeen bytes!!"),
            Err(LimitError::TooLarge { len: 17, limit: 16 })
        );
    }

    #[test]
    fn memory_stays_bounded_with_200k_distinct_senders() {
        let (l, clock) = limits(10.0, 20.0);
        let mut peak = 0;
        for _ in 0..200_000 {
            assert!(l.take(user()).is_ok());
            clock.advance(Duration::from_millis(1));
            peak = peak.max(l.tracked_users());
        }
        // Only buckets that have not refilled survive a sweep: here the last ~100 ms of
        // senders, plus at most one sweep interval.
        assert!(
            peak <= SWEEP_EVERY as usize + 200,
            "peak {peak} users tracked"
        );
        clock.advance(Duration::from_secs(10));
        l.sweep();
        assert_eq!(l.tracked_users(), 0);
    }

    #[test]
    fn a_busy_user_is_not_forgotten_by_a_sweep() {
        let (l, _clock) = limits(10.0, 2.0);
        let u = user();
        assert!(l.take(u).is_ok());
        assert!(l.take(u).is_ok());
        l.sweep();
        // Still limited: the empty bucket was kept.
        assert!(l.take(u).is_err());
    }

    #[test]
    fn absurd_settings_are_clamped() {
        for (rate, burst) in [
            (0.0, 0.0),
            (-1.0, -5.0),
            (f64::INFINITY, 1e12),
            (f64::NAN, f64::NAN),
        ] {
            let (l, _) = limits(rate, burst);
            assert!(l.take(user()).is_ok(), "rate {rate} burst {burst}");
        }
    }
}
