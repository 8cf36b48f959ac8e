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
    error_text, jittered, CacheKey, CacheStats, CacheValue, Counters, FollowerCache, KeyKind,
    LoadFuture, Loaded, Loader, Source, Stamp, Stamps, Version, DEFAULT_CAPACITY, DEFAULT_TTL,
    DEFAULT_TTL_JITTER,
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

/// What [`Inner::lookup`] found: each key's value or `None`, and the missed keys with their
/// stamps.
type Lookup = (Vec<Option<Arc<CacheValue>>>, Vec<(CacheKey, Stamp)>);

impl Inner {
    /// The value of `key` if an entry loaded under its current stamp is held; counts the hit.
    fn hit(&self, key: &CacheKey, stamp: Stamp, now: Instant) -> Option<Arc<CacheValue>> {
        let v = self.map.get(key, stamp, now)?;
        Counters::bump(&self.counters.kind(key.kind).hits);
        Some(v)
    }

    /// The values of `keys` held under their current stamps (hits counted), and the keys
    /// missed with the stamps read before their lookups.
    fn lookup(&self, keys: &[CacheKey], now: Instant) -> Lookup {
        let mut got = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        let mut hits = [0u64; KeyKind::ALL.len()];
        for key in keys {
            let stamp = self.stamps.stamp(key);
            let v = self.map.get(key, stamp, now);
            match &v {
                Some(_) => hits[key.kind.index()] += 1,
                None => missing.push((*key, stamp)),
            }
            got.push(v);
        }
        // One counter update per kind and call, not per key: the counters are shared by
        // every core.
        for (kind, n) in KeyKind::ALL.into_iter().zip(hits) {
            if n > 0 {
                let c = &self.counters.kind(kind).hits;
                c.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
        (got, missing)
    }

    /// Runs `load` for `keys` (each with the stamp read before its lookup) and fills every
    /// value whose key was not invalidated since.
    async fn load_and_fill(&self, keys: Vec<(CacheKey, Stamp)>, load: LoadFuture) -> Vec<Loaded> {
        let values = match load.await {
            Ok(v) if v.len() == keys.len() => v,
            Ok(v) => {
                let e = format!(
                    "cache loader returned {} values for {} keys",
                    v.len(),
                    keys.len()
                );
                return vec![Err(e); keys.len()];
            }
            Err(e) => return vec![Err(error_text(e)); keys.len()],
        };
        let ttl = jittered(self.cfg.ttl, self.cfg.ttl_jitter);
        let now = Instant::now();
        keys.into_iter()
            .zip(values)
            .map(|((key, stamp), value)| {
                let value = Arc::new(value);
                let c = self.counters.kind(key.kind);
                if self.stamps.stamp(&key) == stamp {
                    // Even if an invalidation lands between this check and the insert, the
                    // entry carries the old stamp and is never served.
                    self.map.insert(key, stamp, value.clone(), ttl, now);
                    Counters::bump(&c.fills);
                } else {
                    Counters::bump(&c.stale_discards);
                }
                Ok((value, Source::Store))
            })
            .collect()
    }

    /// Loads `missing` (keys with their stamps) through the flights: keys another caller is
    /// loading are joined, the others loaded by one call of `load`.
    async fn load_many(
        self: &Arc<Self>,
        missing: Vec<(CacheKey, Stamp)>,
        load: &Loader,
    ) -> Vec<Loaded> {
        for (k, _) in &missing {
            Counters::bump(&self.counters.kind(k.kind).misses);
        }
        let inner = self.clone();
        let make = move |keys: Vec<(CacheKey, Stamp)>| -> BoxFuture<'static, Vec<Loaded>> {
            let fut = load(keys.iter().map(|(k, _)| *k).collect());
            Box::pin(async move { inner.load_and_fill(keys, fut).await })
        };
        self.flights.run_many(missing, make).await
    }
}

#[async_trait]
impl FollowerCache for LocalCache {
    async fn get_or_load(
        &self,
        key: CacheKey,
        load: &Loader,
    ) -> Result<Arc<CacheValue>, GraphError> {
        let stamp = self.inner.stamps.stamp(&key);
        if let Some(v) = self.inner.hit(&key, stamp, Instant::now()) {
            return Ok(v);
        }
        let mut out = self.inner.load_many(vec![(key, stamp)], load).await;
        match out.pop() {
            Some(Ok((v, _))) => Ok(v),
            Some(Err(e)) => Err(GraphError::Backend(e)),
            None => Err(GraphError::Backend(format!("no value loaded for {key}"))),
        }
    }

    async fn get_many(
        &self,
        keys: &[CacheKey],
        load: &Loader,
    ) -> Result<Vec<Arc<CacheValue>>, GraphError> {
        let (mut got, missing) = self.inner.lookup(keys, Instant::now());
        if !missing.is_empty() {
            let mut loaded = self.inner.load_many(missing, load).await.into_iter();
            for slot in got.iter_mut().filter(|s| s.is_none()) {
                match loaded.next() {
                    Some(Ok((v, _))) => *slot = Some(v),
                    Some(Err(e)) => return Err(GraphError::Backend(e)),
                    None => return Err(GraphError::Backend("a loaded value is missing".into())),
                }
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    async fn peek_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CacheValue>>> {
        self.inner.lookup(keys, Instant::now()).0
    }

    fn version(&self, key: &CacheKey) -> Option<Version> {
        Some(Version(self.inner.stamps.stamp(key)))
    }

    fn replace(&self, key: CacheKey, old: &Arc<CacheValue>, new: CacheValue) {
        let stamp = self.inner.stamps.stamp(&key);
        self.inner.map.replace(&key, stamp, old, Arc::new(new));
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::graph::Counts;
    use crate::id::UserId;

    fn counted(n: u64) -> CacheValue {
        CacheValue::Counts(Counts {
            followers: n,
            following: 0,
        })
    }

    /// A loader answering `n` followers for every key.
    fn counts(n: u64) -> impl Fn(Vec<CacheKey>) -> LoadFuture + Send + Sync {
        move |keys: Vec<CacheKey>| -> LoadFuture {
            Box::pin(async move { Ok(keys.iter().map(|_| counted(n)).collect()) })
        }
    }

    /// A loader of `followers` that signals when its load has started and then waits for the
    /// returned sender before it completes (the first load only; later ones answer at once).
    fn slow_counts(
        followers: u64,
    ) -> (
        impl Fn(Vec<CacheKey>) -> LoadFuture + Send + Sync,
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let gate = Mutex::new(Some((started_tx, rx)));
        let slow = move |keys: Vec<CacheKey>| -> LoadFuture {
            let gate = gate.lock().unwrap().take();
            Box::pin(async move {
                if let Some((started, rx)) = gate {
                    let _ = started.send(());
                    let _ = rx.await;
                }
                Ok(keys.iter().map(|_| counted(followers)).collect())
            })
        };
        (slow, started_rx, tx)
    }

    #[tokio::test]
    async fn hit_after_fill_and_miss_after_invalidate() {
        let c = LocalCache::new(LocalConfig::default());
        let k = CacheKey::counts(UserId(uuid::Uuid::new_v4()));
        let v = c.get_or_load(k, &counts(1)).await.unwrap();
        assert_eq!(*v, counted(1));
        let v = c.get_or_load(k, &counts(2)).await.unwrap();
        assert_eq!(*v, counted(1));
        c.invalidate(&[k]).await;
        let v = c.get_or_load(k, &counts(3)).await.unwrap();
        assert_eq!(*v, counted(3));
        let s = c.stats().counts;
        assert_eq!((s.hits, s.misses, s.fills), (1, 2, 2));
    }

    #[tokio::test]
    async fn the_loader_runs_only_on_a_miss_and_once_for_every_key_missed() {
        let c = LocalCache::new(LocalConfig::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (calls2, asked2) = (calls.clone(), asked.clone());
        let load = move |keys: Vec<CacheKey>| -> LoadFuture {
            let (calls, asked) = (&calls2, &asked2);
            calls.fetch_add(1, Ordering::SeqCst);
            asked.lock().unwrap().push(keys.len());
            Box::pin(async move {
                Ok(keys
                    .iter()
                    .map(|k| counted(k.user.0.as_u128() as u64))
                    .collect())
            })
        };
        let k = |n: u128| CacheKey::counts(UserId(uuid::Uuid::from_u128(n)));
        c.get_or_load(k(1), &load).await.unwrap();
        c.get_or_load(k(1), &load).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a hit called the loader");
        // Five keys, one cached, one repeated: one call for the three others.
        let got = c
            .get_many(&[k(2), k(1), k(3), k(4), k(2)], &load)
            .await
            .unwrap();
        let got: Vec<CacheValue> = got.iter().map(|v| (**v).clone()).collect();
        assert_eq!(
            got,
            vec![counted(2), counted(1), counted(3), counted(4), counted(2)]
        );
        assert_eq!(*asked.lock().unwrap(), vec![1, 3]);
        // All cached now.
        c.get_many(&[k(4), k(3), k(2)], &load).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Each lookup counts (the repeated key missed twice); each key is filled once.
        let s = c.stats().counts;
        assert_eq!((s.hits, s.misses, s.fills), (5, 5, 4));
    }

    #[tokio::test]
    async fn load_overtaken_by_invalidation_is_not_cached() {
        let c = LocalCache::new(LocalConfig::default());
        let k = CacheKey::counts(UserId(uuid::Uuid::new_v4()));
        let (slow, started_rx, tx) = slow_counts(0);
        let c2 = c.clone();
        let t = tokio::spawn(async move { c2.get_or_load(k, &slow).await });
        started_rx.await.unwrap();
        c.invalidate(&[k]).await;
        let _ = tx.send(());
        t.await.unwrap().unwrap();
        let v = c.get_or_load(k, &counts(7)).await.unwrap();
        assert_eq!(*v, counted(7));
        assert_eq!(c.stats().counts.stale_discards, 1);
    }

    #[tokio::test]
    async fn cancelled_caller_leaves_the_load_to_finish_and_fill() {
        let c = LocalCache::new(LocalConfig::default());
        let k = CacheKey::counts(UserId(uuid::Uuid::new_v4()));
        let (slow, started_rx, tx) = slow_counts(5);
        let c2 = c.clone();
        let t = tokio::spawn(async move { c2.get_or_load(k, &slow).await });
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
        let v = c.get_or_load(k, &counts(9)).await.unwrap();
        assert_eq!(*v, counted(5));
        assert_eq!(
            format!("{:?}", c.inner.flights),
            "SingleFlight { inflight: 0 }"
        );
    }
}
