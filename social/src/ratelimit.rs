//! Per-user token buckets.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::UserId;

/// One token bucket per user: `rate` tokens per second, at most `burst` stored.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<UserId, (f64, u64)>>,
}

impl RateLimiter {
    /// A limiter allowing `rate` per second with bursts of `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `user` at `now_ms`; on refusal, how many ms until one is available.
    pub fn take(&self, user: UserId, now_ms: u64) -> Result<(), u64> {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > 100_000 {
            // Full buckets carry no information: forget them.
            let burst = self.burst;
            b.retain(|_, (tokens, _)| *tokens < burst);
        }
        let (tokens, last) = b.entry(user).or_insert((self.burst, now_ms));
        let elapsed = now_ms.saturating_sub(*last) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate * 1000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills() {
        let r = RateLimiter::new(10.0, 3.0);
        let u = UserId(uuid::Uuid::new_v4());
        assert!(r.take(u, 0).is_ok());
        assert!(r.take(u, 0).is_ok());
        assert!(r.take(u, 0).is_ok());
        assert_eq!(r.take(u, 0), Err(100));
        assert!(r.take(u, 100).is_ok());
    }
}
