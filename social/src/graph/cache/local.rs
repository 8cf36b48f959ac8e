//! The in-process follower cache (the default when no Redis is configured): an [`EntryMap`]
//! with invalidation stamps and one load per key.
//!
//! Only correct for a single instance: nothing tells it about writes made through another
//! process. See the [module docs](super) for the guarantees.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use super::flight::SingleFlight;
use super::map::EntryMap;
use super::{
    error_text, jittered, CacheKey, CacheStats, CacheValue, Counters, FollowerCache, LoadFuture,
    Loaded, Source, Stamp, Stamps, DEFAULT_CAPACITY, DEFAULT_TTL, DEFAULT_TTL_JITTER,
};
use crate::graph::GraphError;

/// Settings of a [`LocalCache`].
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Entry lifetime before jitter (default 24 h).
    pub ttl: Duration,
    /// Maximum random extra lifetime (default 1 h).
    pub ttl_jitter: Duration,
    /// Bound in bytes: each entry weighs its value's data plus
    /// [`ENTRY_OVERHEAD`](super::ENTRY_OVERHEAD) (default [`DEFAULT_CAPACITY`], 128 MiB).
    pub capacity: u64,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            ttl_jitter: DEFAULT_TTL_JITTER,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

/// In-process [`FollowerCache`]: TTL with jitter, one load per key at a time, and invalidation
/// stamps so a load overtaken by an invalidation is never served.
#[derive(Debug, Clone)]
pub struct LocalCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    map: EntryMap,
    stamps: Stamps,
    flights: SingleFlight<(CacheKey, Stamp)>,
    counters: Counters,
    cfg: LocalConfig,
}

impl LocalCache {
    /// An empty cache.
    pub fn new(cfg: LocalConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                map: EntryMap::new(cfg.capacity),
                stamps: Stamps::new(),
                flights: SingleFlight::new(),
                counters: Counters::default(),
                cfg,
            }),
        }
    }

    /// Entries held, and their weight in bytes (at most about the configured capacity).
    pub fn usage(&self) -> (usize, u64) {
        self.inner.map.usage()
    }
}

impl Inner {
    /// The value of `key` if an entry loaded under its current stamp is held; counts the hit.
    fn hit(&self, key: &CacheKey, stamp: Stamp, now: Instant) -> Option<Arc<CacheValue>> {
        let v = self.map.get(key, stamp, now)?;
        Counters::bump(&self.counters.kind(key.kind).hits);
        Some(v)
    }

    async fn load_and_fill(&self, key: CacheKey, stamp: Stamp, load: LoadFuture) -> Loaded {
        let value = Arc::new(load.await.map_err(error_text)?);
        let c = self.counters.kind(key.kind);
        if self.stamps.stamp(&key) == stamp {
            // Even if an invalidation lands between this check and the insert, the entry carries
            // the old stamp and is never served.
            let ttl = jittered(self.cfg.ttl, self.cfg.ttl_jitter);
            self.map
                .insert(key, stamp, value.clone(), ttl, Instant::now());
            Counters::bump(&c.fills);
        } else {
            Counters::bump(&c.stale_discards);
        }
        Ok((value, Source::Store))
    }
}

#[async_trait]
impl FollowerCache for LocalCache {
    async fn get_or_load(
        &self,
        key: CacheKey,
        load: LoadFuture,
    ) -> Result<Arc<CacheValue>, GraphError> {
        let stamp = self.inner.stamps.stamp(&key);
        if let Some(v) = self.inner.hit(&key, stamp, Instant::now()) {
            return Ok(v);
        }
        Counters::bump(&self.inner.counters.kind(key.kind).misses);
        let inner = self.inner.clone();
        let make = move || -> BoxFuture<'static, Loaded> {
            Box::pin(async move { inner.load_and_fill(key, stamp, load).await })
        };
        let out = self.inner.flights.run((key, stamp), make).await;
        out.map(|(v, _)| v).map_err(GraphError::Backend)
    }

    async fn peek_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CacheValue>>> {
        let now = Instant::now();
        keys.iter()
            .map(|key| {
                let stamp = self.inner.stamps.stamp(key);
                self.inner.hit(key, stamp, now)
            })
            .collect()
    }

    async fn invalidate(&self, keys: &[CacheKey]) {
        for k in keys {
            self.inner.stamps.bump(k);
            self.inner.map.remove(k);
            Counters::bump(&self.inner.counters.invalidations);
        }
    }

    fn stats(&self) -> CacheStats {
        self.inner
            .counters
            .snapshot("local", true, self.inner.map.usage())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Counts;
    use crate::id::UserId;

    fn counts(n: u64) -> LoadFuture {
        Box::pin(async move {
            Ok(CacheValue::Counts(Counts {
                followers: n,
                following: 0,
            }))
        })
    }

    /// A load of `followers` that signals when it has started and then waits for the returned
    /// sender before it completes.
    fn slow_counts(
        followers: u64,
    ) -> (
        LoadFuture,
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let slow: LoadFuture = Box::pin(async move {
            let _ = started_tx.send(());
            let _ = rx.await;
            Ok(CacheValue::Counts(Counts {
                followers,
                following: 0,
            }))
        });
        (slow, started_rx, tx)
    }

    #[tokio::test]
    async fn hit_after_fill_and_miss_after_invalidate() {
        let c = LocalCache::new(LocalConfig::default());
        let k = CacheKey::counts(UserId(uuid::Uuid::new_v4()));
        let v = c.get_or_load(k, counts(1)).await.unwrap();
        assert_eq!(
            *v,
            CacheValue::Counts(Counts {
                followers: 1,
                following: 0
            })
        );
        let v = c.get_or_load(k, counts(2)).await.unwrap();
        assert_eq!(
            *v,
            CacheValue::Counts(Counts {
                followers: 1,
                following: 0
            })
        );
        c.invalidate(&[k]).await;
        let v = c.get_or_load(k, counts(3)).await.unwrap();
        assert_eq!(
            *v,
            CacheValue::Counts(Counts {
                followers: 3,
                following: 0
            })
        );
        let s = c.stats().counts;
        assert_eq!((s.hits, s.misses, s.fills), (1, 2, 2));
    }

    #[tokio::test]
    async fn load_overtaken_by_invalidation_is_not_cached() {
        let c = LocalCache::new(LocalConfig::default());
        let k = CacheKey::counts(UserId(uuid::Uuid::new_v4()));
        let (slow, started_rx, tx) = slow_counts(0);
        let c2 = c.clone();
        let t = tokio::spawn(async move { c2.get_or_load(k, slow).await });
        started_rx.await.unwrap();
        c.invalidate(&[k]).await;
        let _ = tx.send(());
        t.await.unwrap().unwrap();
        let v = c.get_or_load(k, counts(7)).await.unwrap();
        assert_eq!(
            *v,
            CacheValue::Counts(Counts {
                followers: 7,
                following: 0
            })
        );
        assert_eq!(c.stats().counts.stale_discards, 1);
    }

    #[tokio::test]
    async fn cancelled_caller_leaves_the_load_to_finish_and_fill() {
        let c = LocalCache::new(LocalConfig::default());
        let k = CacheKey::counts(UserId(uuid::Uuid::new_v4()));
        let (slow, started_rx, tx) = slow_counts(5);
        let c2 = c.clone();
        let t = tokio::spawn(async move { c2.get_or_load(k, slow).await });
        started_rx.await.unwrap();
        t.abort();
        let _ = t.await;
        let _ = tx.send(());
        for _ in 0..100 {
            if c.stats().counts.fills == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let v = c.get_or_load(k, counts(9)).await.unwrap();
        assert_eq!(
            *v,
            CacheValue::Counts(Counts {
                followers: 5,
                following: 0
            })
        );
        assert_eq!(
            format!("{:?}", c.inner.flights),
            "SingleFlight { inflight: 0 }"
        );
    }
}
