//! The event bus, and the outbox relay that feeds it.
//!
//! Durable events (message created/edited/deleted, read markers) reach the bus only through
//! the outbox: the store writes them in the same atomic write as the change, and the relay
//! publishes them in order and acknowledges them only after the bus has them. A bus outage
//! delays events and never fails a send. Ephemeral messages (typing, live chat) go straight to
//! the bus, best effort.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, Notify};

use crate::chat::ChatMessage;
use crate::model::{Event, UserId};
use crate::store::Store;

/// Everything that travels between instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BusMessage {
    /// A durable event from an outbox.
    Event {
        /// The event.
        event: Event,
    },
    /// `from` is typing to `to`.
    Typing {
        /// Who types.
        from: UserId,
        /// To whom.
        to: UserId,
    },
    /// A live-chat message.
    Chat {
        /// The message.
        message: ChatMessage,
    },
}

/// The bus failed to take a message.
#[derive(Debug, thiserror::Error)]
#[error("event bus: {0}")]
pub struct BusError(pub String);

/// Carries [`BusMessage`]s to every instance (this one included).
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes durable events in order; `Ok` only once the bus holds them.
    async fn publish(&self, events: &[Event]) -> Result<(), BusError>;
    /// Publishes an ephemeral message, best effort.
    async fn publish_ephemeral(&self, msg: BusMessage) -> Result<(), BusError>;
    /// Every message any instance publishes from now on.
    fn subscribe(&self) -> broadcast::Receiver<BusMessage>;
}

/// The embedded default: a broadcast channel inside this process.
#[derive(Debug)]
pub struct InProcessBus {
    tx: broadcast::Sender<BusMessage>,
}

impl InProcessBus {
    /// A bus whose slowest subscriber may lag `capacity` messages before losing some.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity).0,
        }
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(16 * 1024)
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, events: &[Event]) -> Result<(), BusError> {
        for e in events {
            // No subscriber is not an error: nobody is connected.
            let _ = self.tx.send(BusMessage::Event { event: e.clone() });
        }
        Ok(())
    }

    async fn publish_ephemeral(&self, msg: BusMessage) -> Result<(), BusError> {
        let _ = self.tx.send(msg);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.tx.subscribe()
    }
}

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
