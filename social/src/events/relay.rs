//! The outbox relay: durable events reach the bus only through it. The store writes each
//! event (a message change, a follow or unfollow) in the same atomic write as the change; the
//! relay publishes them in order and acknowledges them only after the bus has them, so a bus
//! outage delays events and never fails a send or a follow.
//!
//! One relay runs per outbox: the message store's, and the graph's when it is not the same
//! store (an embedded graph beside messages in ScyllaDB, or Neo4j's own outbox nodes; see
//! [`crate::backends::Backends::graph_outbox`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::bus::EventBus;
use crate::messaging::model::Event;
use crate::messaging::store::Outbox;

/// Relays `node`'s outbox to `bus`, forever: read a batch, publish, acknowledge. Wakes on
/// `wake` (after each write) and at least once a second (to retry after an outage). It stops
/// when its task is dropped (the server runs it under `until_stopped`); every event it did not
/// acknowledge stays in the outbox for the next run.
pub async fn run_relay(
    store: Arc<dyn Outbox>,
    bus: Arc<dyn EventBus>,
    node: u16,
    wake: Arc<Notify>,
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
                tokio::time::sleep(backoff).await;
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
    use crate::events::bus::{BusError, BusMessage, InProcessBus};
    use crate::graph::GraphStore;
    use crate::id::{IdGenerator, UserId};
    use crate::messaging::model::EventKey;
    use crate::messaging::model::NewMessage;
    use crate::messaging::store::embedded::EmbeddedStore;
    use crate::messaging::store::MessageStore;

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
        let relay = tokio::spawn(run_relay(
            Arc::new(store.clone()),
            bus.clone(),
            3,
            Arc::new(Notify::new()),
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
        relay.abort();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn temp_store(node: u16) -> (std::path::PathBuf, EmbeddedStore) {
        let dir = std::env::temp_dir().join(format!("zerocast-relay-{}", uuid::Uuid::new_v4()));
        let store = EmbeddedStore::open(&dir, node).unwrap();
        (dir, store)
    }

    /// The next durable event on `rx`, within 10 s.
    async fn next_event(rx: &mut broadcast::Receiver<BusMessage>) -> Event {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("an event within 10 s")
                .unwrap();
            if let BusMessage::Event { event } = m {
                return event;
            }
        }
    }

    #[tokio::test]
    async fn follows_and_unfollows_reach_the_bus_in_order_keyed_by_the_followee() {
        let (dir, store) = temp_store(4);
        let bus = Arc::new(InProcessBus::default());
        let mut rx = bus.subscribe();
        let wake = Arc::new(Notify::new());
        let relay = tokio::spawn(run_relay(
            Arc::new(store.clone()),
            bus.clone(),
            4,
            wake.clone(),
        ));
        let (a, b, c) = (user(), user(), user());
        assert!(store.follow(a, b, 10).await.unwrap());
        wake.notify_one();
        assert!(store.follow(c, b, 11).await.unwrap());
        // A repeated follow changes nothing and emits nothing.
        assert!(!store.follow(a, b, 12).await.unwrap());
        assert!(store.unfollow(a, b).await.unwrap());
        assert!(!store.unfollow(a, b).await.unwrap());
        assert!(store.follow(b, a, 13).await.unwrap());
        wake.notify_one();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(next_event(&mut rx).await);
        }
        let followed = |follower, followee, since| Event::Followed {
            v: Event::VERSION,
            follower,
            followee,
            since,
        };
        let unfollowed = Event::Unfollowed {
            v: Event::VERSION,
            follower: a,
            followee: b,
        };
        assert_eq!(
            got,
            vec![
                followed(a, b, 10),
                followed(c, b, 11),
                unfollowed,
                followed(b, a, 13)
            ]
        );
        let keys: Vec<EventKey> = got.iter().map(Event::key).collect();
        assert_eq!(
            keys,
            vec![
                EventKey::Followee(b),
                EventKey::Followee(b),
                EventKey::Followee(b),
                EventKey::Followee(a)
            ]
        );
        assert_eq!(
            keys[0].to_bytes(),
            [b"user:".as_slice(), b.0.as_bytes()].concat()
        );
        // Nothing more: the repeated follow and unfollow emitted no event.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            rx.try_recv().is_err(),
            "an event for a follow that changed nothing"
        );
        relay.abort();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_follow_during_an_outage_is_delivered_when_the_bus_is_back() {
        let (dir, store) = temp_store(5);
        let bus = Arc::new(FlakyBus {
            fail: AtomicUsize::new(3),
            got: Mutex::new(Vec::new()),
            tx: broadcast::channel(8).0,
        });
        let (a, b) = (user(), user());
        let relay = tokio::spawn(run_relay(
            Arc::new(store.clone()),
            bus.clone(),
            5,
            Arc::new(Notify::new()),
        ));
        // Succeeds while the bus refuses: the event waits in the outbox.
        assert!(store.follow(a, b, 20).await.unwrap());
        assert!(store.unfollow(a, b).await.unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while bus.got.lock().unwrap().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "events never arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(bus.fail.load(Ordering::SeqCst), 0, "the bus refused first");
        let got = bus.got.lock().unwrap().clone();
        assert!(
            matches!(got[0], Event::Followed { follower, followee, since: 20, .. } if follower == a && followee == b),
            "{got:?}"
        );
        assert!(matches!(got[1], Event::Unfollowed { .. }), "{got:?}");
        assert_eq!(got.len(), 2);
        relay.abort();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn user() -> UserId {
        UserId(uuid::Uuid::new_v4())
    }
}
