//! One loader per key per instance ("singleflight"), with several keys loaded by one job.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::{join_all, BoxFuture, FutureExt, Shared};

use super::Loaded;

type Flight = Shared<BoxFuture<'static, Loaded>>;
type FlightMap<K> = Arc<Mutex<HashMap<K, (u64, Flight)>>>;

/// Concurrent callers of [`run_many`](Self::run_many) share the work for a key: a key already
/// in flight is waited for, and the keys not in flight are loaded by one job, whose result each
/// of them then resolves to.
///
/// The job runs as its own tokio task, so it completes (and removes its keys, and fills the
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

impl<K: Hash + Eq + Clone + Send + Sync + 'static> SingleFlight<K> {
    pub(crate) fn new() -> Self {
        Self {
            inflight: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
        }
    }

    /// [`run_many`](Self::run_many) for one key.
    // Only the Redis cache loads key by key.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) async fn run<F>(&self, key: K, make: F) -> Loaded
    where
        F: FnOnce(Vec<K>) -> BoxFuture<'static, Vec<Loaded>>,
    {
        let mut out = self.run_many(vec![key], make).await;
        out.pop()
            .unwrap_or_else(|| Err("cache load lost its result".to_owned()))
    }

    /// The results for `keys`, in order. Keys in flight are waited for; the others (each once,
    /// however often it repeats in `keys`) are handed to `make`, whose job runs on a new task
    /// and must return one result per key it was given, in order. Must be called within a
    /// tokio runtime.
    pub(crate) async fn run_many<F>(&self, keys: Vec<K>, make: F) -> Vec<Loaded>
    where
        F: FnOnce(Vec<K>) -> BoxFuture<'static, Vec<Loaded>>,
    {
        let flights: Vec<Flight> = {
            let mut map = lock(&self.inflight);
            // Each key's flight, or the index of a key the new job loads.
            let mut slots: Vec<Result<Flight, usize>> = Vec::with_capacity(keys.len());
            let mut new: Vec<K> = Vec::new();
            let mut new_index: HashMap<K, usize> = HashMap::new();
            for k in keys {
                if let Some((_, f)) = map.get(&k) {
                    slots.push(Ok(f.clone()));
                } else if let Some(j) = new_index.get(&k) {
                    slots.push(Err(*j));
                } else {
                    new_index.insert(k.clone(), new.len());
                    slots.push(Err(new.len()));
                    new.push(k);
                }
            }
            let mut created: Vec<Flight> = Vec::with_capacity(new.len());
            if !new.is_empty() {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let n = new.len();
                let work = make(new.clone());
                let (map_ref, mine) = (self.inflight.clone(), new.clone());
                let task = tokio::spawn(async move {
                    let out = work.await;
                    let mut map = lock(&map_ref);
                    for k in &mine {
                        if map.get(k).is_some_and(|(i, _)| *i == id) {
                            map.remove(k);
                        }
                    }
                    out
                });
                let job: BoxFuture<'static, Arc<Vec<Loaded>>> = Box::pin(async move {
                    Arc::new(match task.await {
                        Ok(out) if out.len() == n => out,
                        Ok(out) => {
                            let e =
                                format!("cache load returned {} values for {n} keys", out.len());
                            vec![Err(e); n]
                        }
                        Err(e) => vec![Err(format!("cache load task failed: {e}")); n],
                    })
                });
                let job = job.shared();
                for (j, k) in new.into_iter().enumerate() {
                    let job = job.clone();
                    let one: BoxFuture<'static, Loaded> = Box::pin(async move {
                        // j < n == the job's result length (checked above).
                        job.await[j].clone()
                    });
                    let one = one.shared();
                    map.insert(k, (id, one.clone()));
                    created.push(one);
                }
            }
            slots
                .into_iter()
                .map(|s| match s {
                    Ok(f) => f,
                    Err(j) => created[j].clone(), // j < created.len(): one per new key
                })
                .collect()
        };
        join_all(flights).await
    }
}

/// Locks a std mutex, ignoring poisoning: the guarded state stays consistent after any panic
/// (every critical section is a few inserts, removes or reads that cannot panic halfway).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::cache::{CacheValue, Source};
    use crate::graph::Counts;

    fn value(n: u64) -> Loaded {
        Ok((
            Arc::new(CacheValue::Counts(Counts {
                followers: n,
                following: 0,
            })),
            Source::Store,
        ))
    }

    #[tokio::test]
    async fn keys_in_flight_are_joined_and_the_rest_loaded_by_one_job() {
        let f = Arc::new(SingleFlight::<u32>::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let f2 = f.clone();
        // A job for keys 1 and 2 that waits.
        let first = tokio::spawn(async move {
            f2.run_many(vec![1, 2], |keys| {
                assert_eq!(keys, vec![1, 2]);
                Box::pin(async move {
                    let _ = rx.await;
                    keys.iter().map(|k| value(u64::from(*k) * 10)).collect()
                })
            })
            .await
        });
        while format!("{f:?}") != "SingleFlight { inflight: 2 }" {
            tokio::task::yield_now().await;
        }
        // Keys 2 (in flight) and 3, 3 again (new, loaded once).
        let f3 = f.clone();
        let second = tokio::spawn(async move {
            f3.run_many(vec![2, 3, 3], |keys| {
                assert_eq!(keys, vec![3]);
                Box::pin(async move { vec![value(33)] })
            })
            .await
        });
        let _ = tx.send(());
        let n = |l: &Loaded| match l {
            Ok((v, _)) => match **v {
                CacheValue::Counts(c) => c.followers,
                _ => 0,
            },
            Err(_) => u64::MAX,
        };
        let a: Vec<u64> = first.await.unwrap().iter().map(n).collect();
        let b: Vec<u64> = second.await.unwrap().iter().map(n).collect();
        assert_eq!(a, vec![10, 20]);
        assert_eq!(b, vec![20, 33, 33]);
        assert_eq!(format!("{f:?}"), "SingleFlight { inflight: 0 }");
        // A job that returns the wrong number of results fails each key, and leaves nothing.
        let out = f
            .run_many(vec![7, 8], |_| Box::pin(async move { vec![value(1)] }))
            .await;
        assert!(out.iter().all(Result::is_err));
        assert_eq!(format!("{f:?}"), "SingleFlight { inflight: 0 }");
    }
}
