//! The outbox relay: durable events reach the bus only through it. The store writes each
//! event in the same atomic write as the change; the relay publishes them in order and
//! acknowledges them only after the bus has them, so a bus outage delays events and never
//! fails a send.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::bus::EventBus;
use crate::messaging::model::Event;
use crate::messaging::store::Store;

/// Relays `node`'s outbox to `bus` until `stop` fires: read a batch, publish, acknowledge.
/// Wakes on `wake` (after each write) and at least once a second (to retry after an outage).
pub async fn run_relay(
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    node: u16,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
) {
    let mut after = 0;
    let mut backoff = Duration::from_millis(50);
    // One warning per outage, one line when it ends.
    let mut outage = false;
    loop {
        let batch = match store.outbox_read(node, after, 512).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("outbox read: {e}");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.notified() => return,
            }
            continue;
        }
        let last = batch.last().map_or(after, |(seq, _)| *seq);
        let events: Vec<Event> = batch.into_iter().map(|(_, e)| e).collect();
        match bus.publish(&events).await {
            Ok(()) => {
                if std::mem::take(&mut outage) {
                    tracing::info!("event bus back: outbox draining");
                }
                backoff = Duration::from_millis(50);
                after = last;
                if let Err(e) = store.outbox_ack(node, last).await {
                    tracing::warn!("outbox ack: {e}");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut outage, true) {
                    tracing::warn!("event bus unavailable, events wait in the outbox: {e}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.notified() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use tokio::sync::broadcast;

    use super::*;
    use crate::events::bus::{BusError, BusMessage};
    use crate::id::{IdGenerator, UserId};
    use crate::messaging::model::NewMessage;
    use crate::messaging::store::embedded::EmbeddedStore;
    use crate::messaging::store::{MessageStore, Outbox};

    /// A bus that refuses the first `fail` publishes, then records what it is given.
    struct FlakyBus {
        fail: AtomicUsize,
        got: Mutex<Vec<Event>>,
        tx: broadcast::Sender<BusMessage>,
    }

    #[async_trait]
    impl EventBus for FlakyBus {
        async fn publish(&self, events: &[Event]) -> Result<(), BusError> {
            if self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(BusError("broker down".into()));
            }
            self.got.lock().unwrap().extend_from_slice(events);
            Ok(())
        }

        async fn publish_ephemeral(&self, _: BusMessage) -> Result<(), BusError> {
            Ok(())
        }

        fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
            self.tx.subscribe()
        }
    }

    #[tokio::test]
    async fn an_outage_delays_events_and_loses_none_in_order() {
        let dir = std::env::temp_dir().join(format!("zerocast-relay-{}", uuid::Uuid::new_v4()));
        let store = EmbeddedStore::open(&dir, 3).unwrap();
        let ids = IdGenerator::new(3);
        let (a, b) = (UserId(uuid::Uuid::new_v4()), UserId(uuid::Uuid::new_v4()));
        let mut sent = Vec::new();
        for i in 0..5 {
            let m = store
                .append(NewMessage {
                    id: ids.next(),
                    from: a,
                    to: b,
                    content: format!("m{i}"),
                    client_id: None,
                })
                .await
                .unwrap();
            sent.push(m.message().id);
        }
        let bus = Arc::new(FlakyBus {
            fail: AtomicUsize::new(3),
            got: Mutex::new(Vec::new()),
            tx: broadcast::channel(8).0,
        });
        let (wake, stop) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let relay = tokio::spawn(run_relay(
            Arc::new(store.clone()),
            bus.clone(),
            3,
            wake,
            stop.clone(),
        ));
        // Three refusals (50 + 100 + 200 ms of backoff), then everything, once, in order.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while bus.got.lock().unwrap().len() < 5 {
            assert!(std::time::Instant::now() < deadline, "events never arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got: Vec<_> = bus
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                Event::MessageCreated { message, .. } => message.id,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(got, sent);
        assert_eq!(bus.fail.load(Ordering::SeqCst), 0);
        // Acknowledged: nothing is left in the outbox.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !store.outbox_read(3, 0, 10).await.unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "outbox not acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // `notify_waiters` wakes only a relay that is waiting at that moment; a relay busy
        // reading the outbox would miss it, so the test ends it outright.
        drop(stop);
        relay.abort();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
