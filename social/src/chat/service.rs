//! Posting to a room and moderating it, shared by REST and WebSocket.

use std::sync::Arc;

use super::rooms::{ChatError, ChatMessage, Rooms};
use crate::events::bus::{BusError, BusMessage, EventBus};
use crate::id::{IdGenerator, UserId};
use crate::limits::{LimitError, Limits};

/// Why a chat message was not posted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// Empty, too large, or over the sender's rate.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The room's rules (bans, slow mode, name).
    #[error(transparent)]
    Room(#[from] ChatError),
    /// The bus did not take it.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Live chat of one instance.
#[derive(Debug)]
pub struct Chat {
    rooms: Rooms,
    bus: Arc<dyn EventBus>,
    ids: Arc<IdGenerator>,
    limits: Arc<Limits>,
}

impl Chat {
    /// Chat over `rooms`, posting through `bus`.
    pub fn new(
        rooms: Rooms,
        bus: Arc<dyn EventBus>,
        ids: Arc<IdGenerator>,
        limits: Arc<Limits>,
    ) -> Self {
        Self {
            rooms,
            bus,
            ids,
            limits,
        }
    }

    /// The rooms, for reads and owner actions without further rules.
    pub fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    /// Posts `content` from `from` to `room` at `now_ms`: checks size, rate, bans and slow
    /// mode, then publishes to every instance (which records it and pushes it to the room's
    /// sockets when it comes back from the bus).
    pub async fn post(
        &self,
        from: UserId,
        room: &str,
        content: String,
        now_ms: u64,
    ) -> Result<ChatMessage, PostError> {
        self.limits.check_content(&content)?;
        self.limits.take(from)?;
        self.rooms.admit(room, from, now_ms)?;
        let message = ChatMessage {
            id: self.ids.next_at(now_ms),
            room: room.to_owned(),
            from,
            content,
            at: now_ms,
        };
        self.bus
            .publish_ephemeral(BusMessage::Chat {
                message: message.clone(),
            })
            .await?;
        Ok(message)
    }

    /// A chat message arrived from the bus (from any instance, this one included).
    pub fn received(&self, message: &ChatMessage) {
        self.rooms.record(message);
    }

    /// Bans `user` from `room` for `seconds` from `now_ms`, or for good (owner only).
    pub fn ban(
        &self,
        room: &str,
        by: UserId,
        user: UserId,
        seconds: Option<u64>,
        now_ms: u64,
    ) -> Result<(), ChatError> {
        let until = seconds.map(|s| now_ms.saturating_add(s.saturating_mul(1000)));
        self.rooms.ban(room, by, user, until)
    }
}
