//! The in-process entry map behind both caches: the whole [`LocalCache`](super::LocalCache),
//! and the near-cache in front of Redis.
//!
//! ```text
//! key ─SipHash─► shard (1 of 64): RwLock<HashMap<key, Slot>>   (slot: stamp, value, expiry, bit)
//!   get:    read lock, one table probe, stamp and expiry checked, reference bit set, Arc cloned
//!   insert: write lock; over the shard's byte budget ─► sweep (second chance) to 7/8 of it
//! ```
//!
//! Why not a general-purpose cache crate: the graph reads are many small lookups (a page of
//! followers is one list and 50 profiles), and under load a lookup in moka (the previous
//! backend) cost about 2 µs of CPU, most of it chasing the pointers of its hash table buckets
//! and recording each read for its LRU queues; the two were 45% of the server's CPU in the
//! follow-graph load (`docs/social.md`). Here a lookup is one probe of a SwissTable that holds
//! the key, the stamp and the expiry inline (56 bytes a slot, and one control byte), and
//! recording a read is setting a flag that is usually set already.
//!
//! Eviction is "not recently used": every entry has a reference bit, set when it is read. When
//! an insert would take a shard over its budget, a sweep first walks the whole shard, drops the
//! entries that expired or were not read since the previous sweep (or since they came, for the
//! new ones), and clears the bit of the others; if what is left (all read lately) is still over
//! 7/8 of the budget, it drops entries in table order (hash order: at random) until it is not.
//! So an entry stays as long as it is read at least once between two sweeps of its shard, that
//! is, while a good part of a budget's worth of other entries is filled; an entry read once is
//! the first to go. A sweep is O(entries of the shard) and frees at least an eighth of its
//! budget, so its cost per insert is bounded.
//!
//! Validity is not this map's business: an entry carries the [`Stamp`] it was loaded under,
//! and `get` returns it only for the stamp the caller read (see [`Stamps`](super::Stamps)).
//! Expired and out-of-date entries are not served and go at the next sweep, or when the key is
//! filled again.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use super::{CacheKey, CacheValue, Stamp};

/// Shards: enough that two cores rarely meet on one lock, few enough that each holds many
/// entries (the budget is split evenly).
const SHARDS: usize = 64;

/// A bounded map of stamped cache entries; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct EntryMap {
    shards: Box<[RwLock<Shard>]>,
    /// Byte budget of one shard.
    budget: u64,
    /// Keyed SipHash, so that clients choosing user ids cannot collide keys on purpose.
    hasher: RandomState,
    /// Expiry times are whole seconds since this.
    origin: Instant,
}

#[derive(Debug)]
struct Shard {
    map: HashMap<CacheKey, Slot, RandomState>,
    /// Sum of the entries' weights.
    weight: u64,
}

/// One entry, kept small (it is a table slot): 32 bytes, 56 with its key (see the test
/// `slots_stay_small`).
#[derive(Debug)]
struct Slot {
    stamp: Stamp,
    value: Arc<CacheValue>,
    /// Seconds since the map's origin at which the entry is no longer served.
    expires: u32,
    /// Read since the last sweep.
    used: AtomicBool,
}

impl Slot {
    fn weight(&self) -> u64 {
        u64::from(self.value.weight())
    }
}

/// Reads and writes of a shard keep its state consistent at every step (a panic cannot leave a
/// half-updated shard that matters: at worst `weight` is off until the entries go), so a
/// poisoned lock is used as is.
fn read(l: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write(l: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl EntryMap {
    /// An empty map holding about `capacity` bytes of entries (as [`CacheValue`] weighs them).
    pub(crate) fn new(capacity: u64) -> Self {
        let hasher = RandomState::new();
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        map: HashMap::with_hasher(hasher.clone()),
                        weight: 0,
                    })
                })
                .collect(),
            budget: capacity / SHARDS as u64,
            hasher,
            origin: Instant::now(),
        }
    }

    fn shard(&self, key: &CacheKey) -> &RwLock<Shard> {
        // The table hashes the key again with the same keys: take the shard from bits it does
        // not use for its bucket (the low ones) or its tag (the top 7).
        let hash = self.hasher.hash_one(key);
        &self.shards[((hash >> 32) as usize) % SHARDS] // < SHARDS == shards.len()
    }

    /// `now` in whole seconds since the origin, saturating.
    fn secs(&self, now: Instant) -> u32 {
        let s = now.saturating_duration_since(self.origin).as_secs();
        u32::try_from(s).unwrap_or(u32::MAX)
    }

    /// The value of `key` if its entry was loaded under `stamp` and has not expired at `now`.
    pub(crate) fn get(
        &self,
        key: &CacheKey,
        stamp: Stamp,
        now: Instant,
    ) -> Option<Arc<CacheValue>> {
        let s = read(self.shard(key));
        let slot = s.map.get(key)?;
        if slot.stamp != stamp || slot.expires <= self.secs(now) {
            return None;
        }
        // Most reads find the bit set: a load, no store, so hot entries are not written to.
        if !slot.used.load(Ordering::Relaxed) {
            slot.used.store(true, Ordering::Relaxed);
        }
        Some(slot.value.clone())
    }

    /// Stores `value` for `key`, loaded under `stamp`, for `ttl` from `now`; may evict. Expiry is
    /// kept in whole seconds: an entry lives at most `ttl` rounded down to a second (at least
    /// one second), and at least a second less than that.
    pub(crate) fn insert(
        &self,
        key: CacheKey,
        stamp: Stamp,
        value: Arc<CacheValue>,
        ttl: Duration,
        now: Instant,
    ) {
        let weight = u64::from(value.weight());
        let now_s = self.secs(now);
        let ttl_s = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).max(1);
        let mut s = write(self.shard(&key));
        // Room first, so the new entry is not swept out by its own insert.
        if s.weight + weight > self.budget {
            Self::sweep(&mut s, self.budget - self.budget / 8, now_s);
        }
        let slot = Slot {
            stamp,
            value,
            expires: now_s.saturating_add(ttl_s),
            // Unmarked: a new entry stays until the next sweep, and after it only if read.
            used: AtomicBool::new(false),
        };
        if let Some(old) = s.map.insert(key, slot) {
            s.weight -= old.weight();
        }
        s.weight += weight;
    }

    /// Puts `new` in place of the entry of `key` if that entry is `old` and was loaded under
    /// `stamp`; keeps its expiry and reference bit. Returns whether it did. May leave the shard
    /// over its budget until the next insert sweeps it.
    pub(crate) fn replace(
        &self,
        key: &CacheKey,
        stamp: Stamp,
        old: &Arc<CacheValue>,
        new: Arc<CacheValue>,
    ) -> bool {
        let weight = u64::from(new.weight());
        let mut s = write(self.shard(key));
        let Some(slot) = s.map.get_mut(key) else {
            return false;
        };
        if slot.stamp != stamp || !Arc::ptr_eq(&slot.value, old) {
            return false;
        }
        let before = slot.weight();
        slot.value = new;
        s.weight = s.weight - before + weight;
        true
    }

    /// Drops the entry of `key`, if any.
    pub(crate) fn remove(&self, key: &CacheKey) {
        let mut s = write(self.shard(key));
        if let Some(old) = s.map.remove(key) {
            s.weight -= old.weight();
        }
    }

    /// Drops every entry.
    // Only the near-cache in front of Redis is cleared at once (on an outage or a lost
    // subscription).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut s = write(shard);
            s.map = HashMap::with_hasher(self.hasher.clone());
            s.weight = 0;
        }
    }

    /// Entries held, and their weight in bytes.
    pub(crate) fn usage(&self) -> (usize, u64) {
        self.shards.iter().fold((0, 0), |(n, w), shard| {
            let s = read(shard);
            (n + s.map.len(), w + s.weight)
        })
    }

    /// Evicts until the shard weighs at most `target` (see the module docs); `now` in seconds
    /// since the origin.
    fn sweep(s: &mut Shard, target: u64, now: u32) {
        let Shard { map, weight } = s;
        // What expired or was not read since the previous sweep goes; the rest loses its mark.
        map.retain(|_, slot| {
            if slot.expires <= now || !slot.used.swap(false, Ordering::Relaxed) {
                *weight -= slot.weight();
                return false;
            }
            true
        });
        // Everything left was read since the previous sweep: take the first in table order,
        // which is hash order, until the shard is within its budget again.
        if *weight > target {
            map.retain(|_, slot| {
                if *weight <= target {
                    return true;
                }
                *weight -= slot.weight();
                false
            });
        }
        // A table that grew for a burst keeps its size when emptied: give back the slack.
        if map.capacity() > 4 * map.len().max(16) {
            map.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Counts;
    use crate::id::UserId;

    fn key(n: u128) -> CacheKey {
        CacheKey::counts(UserId(uuid::Uuid::from_u128(n)))
    }

    fn value(n: u64) -> Arc<CacheValue> {
        Arc::new(CacheValue::Counts(Counts {
            followers: n,
            following: 0,
        }))
    }

    const S0: Stamp = Stamp { epoch: 0, gen: 0 };
    const S1: Stamp = Stamp { epoch: 0, gen: 1 };
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn slots_stay_small() {
        // ENTRY_OVERHEAD counts on this: a slot with its key, one control byte, at the table's
        // load factor.
        assert!(std::mem::size_of::<(CacheKey, Slot)>() <= 56);
    }

    #[test]
    fn serves_only_the_stamp_it_was_loaded_under_until_it_expires() {
        let m = EntryMap::new(1 << 20);
        let t = Instant::now();
        m.insert(key(1), S0, value(7), HOUR, t);
        assert_eq!(m.get(&key(1), S0, t), Some(value(7)));
        assert_eq!(m.get(&key(1), S1, t), None);
        assert_eq!(m.get(&key(2), S0, t), None);
        assert_eq!(m.get(&key(1), S0, t + HOUR), None);
        // A fill under the new stamp replaces the entry.
        m.insert(key(1), S1, value(8), HOUR, t);
        assert_eq!(m.get(&key(1), S1, t), Some(value(8)));
        assert_eq!(m.usage(), (1, u64::from(value(8).weight())));
        m.remove(&key(1));
        assert_eq!(m.get(&key(1), S1, t), None);
        assert_eq!(m.usage(), (0, 0));
        // Replaced only while it is the same entry under the same stamp.
        let v1 = value(1);
        m.insert(key(3), S0, v1.clone(), HOUR, t);
        assert!(!m.replace(&key(3), S1, &v1, value(2)));
        assert!(!m.replace(&key(3), S0, &value(1), value(2)));
        assert!(m.replace(&key(3), S0, &v1, value(2)));
        assert_eq!(m.get(&key(3), S0, t), Some(value(2)));
        assert!(!m.replace(&key(4), S0, &v1, value(2)));
        m.clear();
        assert_eq!(m.usage(), (0, 0));
    }

    #[test]
    fn stays_within_its_budget_and_keeps_what_is_read() {
        let w = u64::from(value(0).weight());
        // Room for about 64 entries per shard.
        let m = EntryMap::new(64 * w * SHARDS as u64);
        let t = Instant::now();
        let hot: Vec<CacheKey> = (0..200).map(key).collect();
        for k in &hot {
            m.insert(*k, S0, value(1), HOUR, t);
        }
        for n in 1_000..50_000u128 {
            m.insert(key(n), S0, value(2), HOUR, t);
            // The hot keys are read all along.
            if n % 16 == 0 {
                for k in &hot {
                    let _ = m.get(k, S0, t);
                }
            }
        }
        let (entries, weight) = m.usage();
        assert!(weight <= 64 * w * SHARDS as u64, "{weight}");
        // A sweep keeps only what was read since the previous one (here about 3 hot keys a
        // shard), so a shard holds anywhere from that to its budget: about half full on
        // average (1,874-2,300 of 4,096 entries over runs, the hash seed differing). Far from
        // empty is what this checks.
        assert!(entries > 16 * SHARDS, "{entries}");
        let kept = hot.iter().filter(|k| m.get(k, S0, t).is_some()).count();
        assert!(kept > 190, "{kept} of 200 hot keys kept");
    }

    #[test]
    fn expired_entries_go_first() {
        let w = u64::from(value(0).weight());
        let budget = 16 * w * SHARDS as u64;
        let m = EntryMap::new(budget);
        let t = Instant::now();
        for n in 0..(16 * SHARDS as u128) {
            m.insert(key(n), S0, value(1), Duration::from_secs(1), t);
        }
        // Two new entries per shard on average, each read once: the sweeps they cause drop
        // the expired entries, never a new one.
        let later = t + Duration::from_secs(2);
        let fresh: Vec<CacheKey> = (0..(2 * SHARDS as u128))
            .map(|n| key(n + 100_000))
            .collect();
        for k in &fresh {
            m.insert(*k, S0, value(1), HOUR, later);
            assert!(m.get(k, S0, later).is_some());
        }
        assert!(fresh.iter().all(|k| m.get(k, S0, later).is_some()));
        assert!(m.usage().1 <= budget);
        // A new entry nobody reads is the first to go.
        let unread = key(1 << 64);
        m.insert(unread, S0, value(1), HOUR, later);
        for n in 0..(32 * SHARDS as u128) {
            let k = key(n + 200_000);
            m.insert(k, S0, value(1), HOUR, later);
            let _ = m.get(&k, S0, later);
        }
        assert!(m.get(&unread, S0, later).is_none());
    }
}
