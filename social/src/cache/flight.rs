//! One loader per key per instance ("singleflight").

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use futures_util::future::{BoxFuture, FutureExt, Shared};

type Flight<V> = Shared<BoxFuture<'static, V>>;

/// Concurrent callers of [`run`](Self::run) with the same key share one execution of the work.
///
/// The work runs as a [`Shared`] future, polled by whichever callers are waiting: if the caller
/// that started it is cancelled, the others keep driving it, and if every caller is cancelled
/// the next caller with the same key resumes it. The entry is removed when the work completes.
///
/// The caches put their invalidation stamp into the key, so a caller that arrives after an
/// invalidation never joins work that started before it.
pub(crate) struct SingleFlight<K, V: Clone> {
    /// Work in flight per key, with an id so only that flight's callers remove it.
    inflight: Mutex<HashMap<K, (u64, Flight<V>)>>,
    next_id: AtomicU64,
}

impl<K, V: Clone> std::fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inflight.lock().map_or(0, |m| m.len());
        f.debug_struct("SingleFlight")
            .field("inflight", &n)
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            inflight: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Runs `make()` unless work for `key` is already in flight, in which case it waits for that
    /// work's result instead. The bool is `true` for the caller that started the work.
    pub(crate) async fn run<F>(&self, key: K, make: F) -> (V, bool)
    where
        F: FnOnce() -> BoxFuture<'static, V>,
    {
        let (id, fut, leader) = {
            let mut map = lock(&self.inflight);
            match map.get(&key) {
                Some((id, fut)) => (*id, fut.clone(), false),
                None => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let fut = make().shared();
                    map.insert(key.clone(), (id, fut.clone()));
                    (id, fut, true)
                }
            }
        };
        let out = fut.await;
        // No await between completion and removal, so the first caller to see the result removes
        // the entry (the id check keeps a newer flight for the same key in place).
        let mut map = lock(&self.inflight);
        if map.get(&key).is_some_and(|(i, _)| *i == id) {
            map.remove(&key);
        }
        (out, leader)
    }
}

/// Locks a std mutex, ignoring poisoning: the guarded maps stay consistent after any panic
/// (every critical section is a single insert, remove or read).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
