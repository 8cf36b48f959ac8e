//! A cross-core "something changed" signal.
//!
//! The publishing core calls [`Notify::notify_all`]; tasks on any core await
//! [`Notify::changed`] with the sequence number they last saw. Waking a task of another monoio
//! core goes through monoio's cross-thread waker (the `sync` feature). The lock is held only to
//! push or take the waker list, never across an `.await`.

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
    wakers: Mutex<Vec<Waker>>,
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
        let wakers = match self.wakers.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once the sequence number differs from `seen`. Cancel-safe: dropping the future
    /// leaves at most a stale waker, removed by the next notification.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed { notify: self, seen }
    }
}

/// The future of [`Notify::changed`].
#[derive(Debug)]
pub struct Changed<'a> {
    notify: &'a Notify,
    seen: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.seq() != self.seen {
            return Poll::Ready(());
        }
        {
            let mut wakers = match self.notify.wakers.lock() {
                Ok(w) => w,
                Err(p) => p.into_inner(),
            };
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        // A notification may have landed between the first check and the push.
        if self.notify.seq() != self.seen {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
