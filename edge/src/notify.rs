//! A cross-core "something changed" signal.
//!
//! The publishing core calls [`Notify::notify_all`]; tasks on any core await
//! [`Notify::changed`] with the sequence number they last saw. Waking a task of another monoio
//! core goes through monoio's cross-thread waker (the `sync` feature). The lock is held only to
//! insert, replace or remove one waker, or to take the whole set, never across an `.await`.
//!
//! Each waiting future owns one slot, keyed by a number, and removes it when dropped: the set
//! holds exactly the tasks waiting now, however many connections came and went.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// A broadcast wake-up with a sequence number, so no notification between a check and a wait
/// is lost.
#[derive(Debug, Default)]
pub struct Notify {
    seq: AtomicU64,
    next_key: AtomicU64,
    waiters: Mutex<HashMap<u64, Waker>>,
}

impl Notify {
    /// A new signal at sequence 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current sequence number: read it *before* checking the condition you wait for.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::AcqRel);
        let waiters = std::mem::take(&mut *self.lock());
        for (_, w) in waiters {
            w.wake();
        }
    }

    /// Tasks waiting now.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Resolves once the sequence number differs from `seen`. Cancel-safe: dropping the future
    /// removes its waker.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed {
            notify: self,
            seen,
            key: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waker>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The future of [`Notify::changed`].
#[derive(Debug)]
pub struct Changed<'a> {
    notify: &'a Notify,
    seen: u64,
    key: Option<u64>,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.seq() != self.seen {
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(k) => k,
            None => {
                let k = self.notify.next_key.fetch_add(1, Ordering::Relaxed);
                self.key = Some(k);
                k
            }
        };
        {
            let mut waiters = self.notify.lock();
            match waiters.get_mut(&key) {
                Some(w) if w.will_wake(cx.waker()) => {}
                Some(w) => w.clone_from(cx.waker()),
                None => {
                    waiters.insert(key, cx.waker().clone());
                }
            }
        }
        // A notification may have landed between the first check and the insert.
        if self.notify.seq() != self.seen {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            self.notify.lock().remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn dropped_waiters_leave_nothing_behind() {
        let n = Notify::new();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            for _ in 0..100 {
                let seen = n.seq();
                let r = monoio::time::timeout(Duration::from_millis(1), n.changed(seen)).await;
                assert!(r.is_err());
            }
        });
        assert_eq!(n.waiting(), 0);
    }

    #[test]
    fn wakes_a_task_on_another_thread() {
        let n = Arc::new(Notify::new());
        let seen = n.seq();
        let waiter = {
            let n = n.clone();
            std::thread::spawn(move || {
                let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    monoio::time::timeout(Duration::from_secs(10), n.changed(seen))
                        .await
                        .is_ok()
                })
            })
        };
        while n.waiting() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        n.notify_all();
        assert!(waiter.join().unwrap(), "the waiter was not woken");
        assert_eq!(n.waiting(), 0);
    }
}
