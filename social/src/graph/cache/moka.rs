//! The in-process follower cache (the default when no Redis is configured).
//!
//! Only correct for a single instance: nothing tells it about writes made through another
//! process. See the [module docs](super) for the guarantees.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use super::flight::SingleFlight;
use super::{
    error_text, jittered, weigh, CacheKey, CacheStats, CacheValue, Counters, FollowerCache,
    LoadFuture, Loaded, PerEntryTtl, Source, Stamp, Stamped, Stamps, DEFAULT_TTL,
    DEFAULT_TTL_JITTER,
};
use crate::graph::GraphError;

/// Settings of a [`MokaCache`].
#[derive(Debug, Clone)]
pub struct MokaConfig {
    /// Entry lifetime before jitter (default 24 h).
    pub ttl: Duration,
    /// Maximum random extra lifetime (default 1 h).
    pub ttl_jitter: Duration,
    /// Capacity in weight units: one per cached edge plus one per entry (default 5 000 000,
    /// roughly 5 000 full 1000-edge pages and a million small entries; ~40 bytes per unit).
    pub capacity: u64,
}

impl Default for MokaConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            ttl_jitter: DEFAULT_TTL_JITTER,
            capacity: 5_000_000,
        }
    }
}

/// In-process [`FollowerCache`] on moka: TTL with jitter, one load per key at a time, and
/// invalidation stamps so a load overtaken by an invalidation is never served.
#[derive(Debug, Clone)]
pub struct MokaCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cache: ::moka::future::Cache<CacheKey, Stamped>,
    stamps: Stamps,
    flights: SingleFlight<(CacheKey, Stamp)>,
    counters: Counters,
    cfg: MokaConfig,
}

impl MokaCache {
    /// An empty cache.
    pub fn new(cfg: MokaConfig) -> Self {
        let cache = ::moka::future::Cache::builder()
            .max_capacity(cfg.capacity)
            .weigher(weigh)
            .expire_after(PerEntryTtl)
            .build();
        Self {
            inner: Arc::new(Inner {
                cache,
                stamps: Stamps::new(),
                flights: SingleFlight::new(),
                counters: Counters::default(),
                cfg,
            }),
        }
    }
}

impl Inner {
    async fn load_and_fill(&self, key: CacheKey, stamp: Stamp, load: LoadFuture) -> Loaded {
        let value = Arc::new(load.await.map_err(error_text)?);
        let c = self.counters.kind(key.kind);
        if self.stamps.stamp(&key) == stamp {
            // Even if an invalidation lands between this check and the insert, the entry carries
            // the old stamp and is never served.
            let ttl = jittered(self.cfg.ttl, self.cfg.ttl_jitter);
            self.cache
                .insert(
                    key,
                    Stamped {
                        stamp,
                        value: value.clone(),
                        ttl,
                    },
                )
                .await;
            Counters::bump(&c.fills);
        } else {
            Counters::bump(&c.stale_discards);
        }
        Ok((value, Source::Store))
    }
}

#[async_trait]
impl FollowerCache for MokaCache {
    async fn get_or_load(
        &self,
        key: CacheKey,
        load: LoadFuture,
    ) -> Result<Arc<CacheValue>, GraphError> {
        let c = self.inner.counters.kind(key.kind);
        let stamp = self.inner.stamps.stamp(&key);
        if let Some(e) = self.inner.cache.get(&key).await {
            if e.stamp == stamp {
                Counters::bump(&c.hits);
                return Ok(e.value);
            }
        }
        Counters::bump(&c.misses);
        let inner = self.inner.clone();
        let make = move || -> BoxFuture<'static, Loaded> {
            Box::pin(async move { inner.load_and_fill(key, stamp, load).await })
        };
        let out = self.inner.flights.run((key, stamp), make).await;
        out.map(|(v, _)| v).map_err(GraphError::Backend)
    }

    async fn invalidate(&self, keys: &[CacheKey]) {
        for k in keys {
            self.inner.stamps.bump(k);
            self.inner.cache.invalidate(k).await;
            Counters::bump(&self.inner.counters.invalidations);
        }
    }

    fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot("moka", true)
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

    #[tokio::test]
    async fn hit_after_fill_and_miss_after_invalidate() {
        let c = MokaCache::new(MokaConfig::default());
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
        let c = MokaCache::new(MokaConfig::default());
        let k = CacheKey::counts(UserId(uuid::Uuid::new_v4()));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let slow: LoadFuture = Box::pin(async move {
            let _ = started_tx.send(());
            let _ = rx.await;
            Ok(CacheValue::Counts(Counts::default()))
        });
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
        let c = MokaCache::new(MokaConfig::default());
        let k = CacheKey::counts(UserId(uuid::Uuid::new_v4()));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let slow: LoadFuture = Box::pin(async move {
            let _ = started_tx.send(());
            let _ = rx.await;
            Ok(CacheValue::Counts(Counts {
                followers: 5,
                following: 0,
            }))
        });
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
