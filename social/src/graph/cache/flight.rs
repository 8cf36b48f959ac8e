//! One loader per key per instance ("singleflight").

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use super::Loaded;

type Flight = Shared<BoxFuture<'static, Loaded>>;
type FlightMap<K> = Arc<Mutex<HashMap<K, (u64, Flight)>>>;

/// Concurrent callers of [`run`](Self::run) with the same key share one execution of the work.
///
/// The work runs as its own tokio task, so it completes (and removes its entry, and fills the
/// cache) even if every caller is cancelled: cancelling a caller is safe and leaks nothing.
///
/// The caches put their invalidation stamp into the key, so a caller that arrives after an
/// invalidation never joins work that started before it.
pub(crate) struct SingleFlight<K> {
    inflight: FlightMap<K>,
    next_id: AtomicU64,
}

impl<K> std::fmt::Debug for SingleFlight<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inflight.lock().map_or(0, |m| m.len());
        f.debug_struct("SingleFlight")
            .field("inflight", &n)
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> SingleFlight<K> {
    pub(crate) fn new() -> Self {
        Self {
            inflight: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
        }
    }

    /// Runs `make()` on a new task unless work for `key` is already in flight, in which case it
    /// waits for that work's result instead. Must be called within a tokio runtime.
    pub(crate) async fn run<F>(&self, key: K, make: F) -> Loaded
    where
        F: FnOnce() -> BoxFuture<'static, Loaded>,
    {
        let fut = {
            let mut map = lock(&self.inflight);
            match map.get(&key) {
                Some((_, fut)) => fut.clone(),
                None => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let work = make();
                    let (map_ref, k) = (self.inflight.clone(), key.clone());
                    let task = tokio::spawn(async move {
                        let out = work.await;
                        let mut map = lock(&map_ref);
                        if map.get(&k).is_some_and(|(i, _)| *i == id) {
                            map.remove(&k);
                        }
                        out
                    });
                    let fut: BoxFuture<'static, Loaded> = Box::pin(async move {
                        task.await
                            .unwrap_or_else(|e| Err(format!("cache load task failed: {e}")))
                    });
                    let fut = fut.shared();
                    map.insert(key, (id, fut.clone()));
                    fut
                }
            }
        };
        fut.await
    }
}

/// Locks a std mutex, ignoring poisoning: the guarded state stays consistent after any panic
/// (every critical section is a few inserts, removes or reads that cannot panic halfway).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
