//! A runtime on a thread of its own (the social API's, HTTP/3's), stopped with a signal and a
//! bounded wait.

use std::time::{Duration, Instant};

/// A thread running a runtime until told to stop.
#[derive(Debug)]
pub struct Background {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// A thread that ends (gracefully) once `stop` fires.
    pub(crate) fn new(
        stop: tokio::sync::oneshot::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    ) -> Self {
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Tells the thread to stop and waits up to `limit` for it; a thread still busy then is
    /// left to the process exit.
    pub fn stop(mut self, limit: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let deadline = Instant::now() + limit;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
