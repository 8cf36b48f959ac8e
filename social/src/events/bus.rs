//! The event bus: what travels between instances ([`BusMessage`]), the [`EventBus`] trait, and
//! its embedded default ([`InProcessBus`]).
//!
//! Durable events (message created/edited/deleted, read markers) reach the bus only through
//! the outbox relay ([`super::relay`]). Ephemeral messages (typing, live chat) go straight to
//! the bus, best effort.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::chat::rooms::ChatMessage;
use crate::id::UserId;
use crate::messaging::model::Event;

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
    /// A chat room's rules (owner, moderators, slow mode, bans) changed in the store: every
    /// instance drops its cached copy.
    RoomChanged {
        /// The room (stream name).
        room: String,
    },
}

/// The bus failed to take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

impl std::fmt::Debug for dyn EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventBus")
    }
}
