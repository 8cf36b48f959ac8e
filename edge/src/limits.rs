//! Limits shared by every worker: open connections per client address, and a log-line budget
//! for events a flood can repeat.
//!
//! ```text
//! accept (any core) ─► PerIp::acquire(peer ip) ─► IpSlot (held by the connection's task)
//!                         │ full: refused                 └─ drop: count - 1, entry gone at 0
//!                         ▼
//!                 16 shards: Mutex<HashMap<IpKey, count>>
//! ```
//!
//! The map holds one entry per address with an open connection, so its size is bounded by
//! `max-connections`; a shard's lock is held for one hash-map operation.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::hub::lock;

const SHARDS: usize = 16;

/// The address a connection is counted under: an IPv4 address (IPv4-mapped IPv6 included), or
/// an IPv6 /64, the smallest prefix a site is normally given (one host can use all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(IpAddr);

impl IpKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !u128::from(u64::MAX);
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl fmt::Display for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

type Shard = Mutex<HashMap<IpKey, usize>>;

/// Open connections per client address, over every media listener and worker.
#[derive(Debug)]
pub struct PerIp {
    max: usize,
    shards: Arc<[Shard]>,
}

impl PerIp {
    /// At most `max` connections per [`IpKey`]; 0 counts nothing and refuses nothing.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Counts a new connection from `ip`, or `None` when its address already has `max` open.
    #[must_use]
    pub fn acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        if self.max == 0 {
            return Some(IpSlot(None));
        }
        let key = IpKey::of(ip);
        let shard = shard_of(&key);
        {
            let mut map = lock(self.shards.get(shard)?);
            let n = map.entry(key).or_insert(0);
            if *n >= self.max {
                return None;
            }
            *n += 1;
        }
        Some(IpSlot(Some((self.shards.clone(), shard, key))))
    }

    /// Open connections counted for `ip`'s address.
    pub fn count(&self, ip: IpAddr) -> usize {
        let key = IpKey::of(ip);
        self.shards
            .get(shard_of(&key))
            .and_then(|s| lock(s).get(&key).copied())
            .unwrap_or(0)
    }

    /// Addresses with at least one open connection.
    pub fn addresses(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

fn shard_of(key: &IpKey) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish() as usize % SHARDS
}

/// One open connection counted in [`PerIp`]; dropping it uncounts it.
#[derive(Debug)]
pub struct IpSlot(Option<(Arc<[Shard]>, usize, IpKey)>);

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some((shards, shard, key)) = self.0.take() else {
            return;
        };
        let Some(shard) = shards.get(shard) else {
            return;
        };
        let mut map = lock(shard);
        if let Entry::Occupied(mut e) = map.entry(key) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// A budget of log lines for an event a flood can repeat, shared by every worker: a burst of
/// `burst` lines, then `per_sec` a second; lines over budget are counted and the next line
/// written says how many were held back.
#[derive(Debug)]
pub struct LogBudget {
    burst: f64,
    per_sec: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
    held: u64,
}

impl LogBudget {
    /// A budget of `burst` lines, refilled at `per_sec` a second.
    pub fn new(burst: u32, per_sec: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
            state: Mutex::new(Bucket {
                tokens: f64::from(burst),
                at: None,
                held: 0,
            }),
        }
    }

    /// `Some(lines held back since the last one written)` when a line may be written now.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut b = lock(&self.state);
        if let Some(at) = b.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.per_sec;
            b.tokens = (b.tokens + refill).min(self.burst);
        }
        b.at = Some(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(std::mem::take(&mut b.held))
        } else {
            b.held += 1;
            None
        }
    }
}

/// `" (N more since the last line)"`, or nothing when no line was held back.
pub fn held_back(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more since the last line)")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_each_address_and_forgets_it_at_zero() {
        let p = PerIp::new(2);
        let a1 = p.acquire(ip("10.0.0.1")).unwrap();
        let a2 = p.acquire(ip("::ffff:10.0.0.1")).unwrap();
        assert!(
            p.acquire(ip("10.0.0.1")).is_none(),
            "the third from one address"
        );
        let b = p.acquire(ip("10.0.0.2")).unwrap();
        assert_eq!((p.count(ip("10.0.0.1")), p.addresses()), (2, 2));
        drop(a1);
        let a3 = p.acquire(ip("10.0.0.1")).unwrap();
        drop((a2, a3, b));
        assert_eq!(p.addresses(), 0, "entries go when their count reaches zero");
        assert_eq!(p.count(ip("10.0.0.1")), 0);
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let p = PerIp::new(1);
        let _a = p.acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(p.acquire(ip("2001:db8:1:2:ffff::9")).is_none(), "same /64");
        let _b = p.acquire(ip("2001:db8:1:3::1")).unwrap();
        assert_eq!(
            IpKey::of(ip("2001:db8:1:2:abcd::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn zero_means_no_cap_and_no_map() {
        let p = PerIp::new(0);
        let slots: Vec<_> = (0..1000)
            .map(|_| p.acquire(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(p.addresses(), 0);
        drop(slots);
    }

    #[test]
    fn counts_across_threads() {
        let p = Arc::new(PerIp::new(50));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    (0..40)
                        .filter_map(|_| p.acquire(ip("10.0.0.7")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let held: Vec<Vec<IpSlot>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 50);
        drop(held);
        assert_eq!(p.addresses(), 0);
    }

    #[test]
    fn log_budget_holds_back_a_flood_and_reports_it() {
        let b = LogBudget::new(3, 2);
        let t0 = Instant::now();
        let admitted: Vec<_> = (0..10).map(|_| b.admit(t0)).collect();
        assert_eq!(admitted.iter().filter(|a| a.is_some()).count(), 3);
        // Half a second refills one line, which reports the seven held back.
        assert_eq!(b.admit(t0 + Duration::from_millis(500)), Some(7));
        assert_eq!(b.admit(t0 + Duration::from_millis(500)), None);
        assert_eq!(held_back(0), "");
        assert_eq!(held_back(7), " (7 more since the last line)");
    }
}
