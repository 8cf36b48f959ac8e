//! Posting to a room and moderating it, shared by REST and WebSocket.
//!
//! A room's rules live in the channel store; this instance caches them ([`Rooms`]) and drops
//! the cache when any instance announces a change on the bus ([`BusMessage::RoomChanged`]), or
//! after [`super::rooms::RULES_TTL`] if such a notice was lost. A post is stored in the chat
//! store ([`ChatStore`]: history, slow-mode records, client ids) before it is acknowledged and
//! fanned out on the bus ([`BusMessage::Chat`]); history is read from the store.

use std::sync::Arc;

use super::rooms::{ChatError, ChatMessage, RoomRules, RoomSettings, Rooms};
use super::store::{valid_client_id, ChatPost, ChatStore, Posted};
use crate::channels::{valid_name, Channel, ChannelError, Channels};
use crate::events::bus::{BusError, BusMessage, EventBus};
use crate::id::{IdGenerator, MessageId, UserId};
use crate::limits::{LimitError, Limits};
use crate::messaging::store::StoreError;

/// Whether a stream is live now (the media plane's answer; `false` without one).
pub type LiveCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Why a chat message was not posted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// Empty, too large, or over the sender's rate.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The room's rules (bans, slow mode, name, existence).
    #[error(transparent)]
    Room(#[from] ChatError),
    /// The rules could not be read.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The bus did not take it.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The chat store failed (the message may or may not be stored; retrying with the same
    /// client id is safe).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A post that was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The stored message.
    pub message: ChatMessage,
    /// The client id repeated an earlier post: this is that post's message, nothing new was
    /// stored or published.
    pub duplicate: bool,
}

/// Live chat of one instance.
pub struct Chat {
    rooms: Rooms,
    store: Arc<dyn ChatStore>,
    keep: usize,
    channels: Channels,
    live: LiveCheck,
    bus: Arc<dyn EventBus>,
    ids: Arc<IdGenerator>,
    limits: Arc<Limits>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("rooms", &self.rooms.len())
            .finish_non_exhaustive()
    }
}

impl Chat {
    /// Chat storing messages in `store` (each room keeps its newest `keep`), with the rules of
    /// `channels`, fanning out through `bus`; `live` says which unreserved stream names have a
    /// room because they are live.
    pub fn new(
        store: Arc<dyn ChatStore>,
        keep: usize,
        channels: Channels,
        live: LiveCheck,
        bus: Arc<dyn EventBus>,
        ids: Arc<IdGenerator>,
        limits: Arc<Limits>,
    ) -> Self {
        Self {
            rooms: Rooms::new(),
            store,
            keep: keep.max(1),
            channels,
            live,
            bus,
            ids,
            limits,
        }
    }

    /// This instance's cache of room rules.
    pub fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    /// The channels (their rules are the rooms' rules).
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// Whether `room` is live now.
    pub fn is_live(&self, room: &str) -> bool {
        (self.live)(room)
    }

    /// The room's rules, from the cache or the store; [`ChatError::NoSuchRoom`] unless the name
    /// is reserved or live.
    pub async fn rules(&self, room: &str) -> Result<Arc<RoomRules>, PostError> {
        if !valid_name(room) {
            return Err(ChatError::BadName.into());
        }
        if let Some(r) = self.rooms.cached_rules(room) {
            return Ok(r);
        }
        let epoch = self.rooms.epoch();
        let channel = self.channels.store().get(room).await?;
        if channel.is_none() && !self.is_live(room) {
            return Err(ChatError::NoSuchRoom.into());
        }
        let bans = match &channel {
            Some(_) => self.channels.store().bans(room).await?,
            None => Vec::new(),
        };
        let rules = Arc::new(RoomRules::new(channel.as_ref(), &bans));
        self.rooms.set_rules(room, rules.clone(), epoch);
        Ok(rules)
    }

    /// The room's settings, if it exists.
    pub async fn settings(&self, room: &str) -> Result<RoomSettings, PostError> {
        Ok(self.rules(room).await?.settings.clone())
    }

    /// The room's history (its newest messages, oldest first), if it exists.
    pub async fn history(&self, room: &str) -> Result<Vec<ChatMessage>, PostError> {
        self.rules(room).await?;
        Ok(self.store.recent(room, self.keep, self.keep).await?)
    }

    /// The room's messages after `after` (an id cursor), oldest first, at most `limit`
    /// (1..=[`super::store::READ_MAX`]), if the room exists.
    pub async fn since(
        &self,
        room: &str,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, PostError> {
        self.rules(room).await?;
        Ok(self.store.since(room, after, limit, self.keep).await?)
    }

    /// Posts `content` from `from` to `room` at `now_ms`: checks size, client id, rate, the
    /// room's existence, bans; stores it durably (the store applies slow mode and the client
    /// id), then publishes it to every instance, which push it to the room's sockets. A repeated
    /// client id returns the first message and publishes nothing.
    pub async fn post(
        &self,
        from: UserId,
        room: &str,
        content: String,
        client_id: Option<String>,
        now_ms: u64,
    ) -> Result<Accepted, PostError> {
        self.limits.check_content(&content)?;
        if client_id.as_deref().is_some_and(|c| !valid_client_id(c)) {
            return Err(ChatError::BadClientId.into());
        }
        self.limits.take(from)?;
        let rules = self.rules(room).await?;
        let slow_ms = rules.admit(from, now_ms)?;
        let message = ChatMessage {
            id: self.ids.next_at(now_ms),
            room: room.to_owned(),
            from,
            content,
            at: now_ms,
        };
        let post = ChatPost {
            message,
            client_id,
            slow_ms,
            keep: self.keep,
        };
        match self.store.post(post).await? {
            Posted::Created(message) => {
                // Stored: it is in the history every instance serves. The bus only pushes it
                // to the sockets now in the room; if that fails they see it on their next
                // history read, so the post still succeeds.
                if let Err(e) = self
                    .bus
                    .publish_ephemeral(BusMessage::Chat {
                        message: message.clone(),
                    })
                    .await
                {
                    tracing::warn!(room, "chat message stored, live fan-out failed: {e}");
                }
                Ok(Accepted {
                    message,
                    duplicate: false,
                })
            }
            Posted::Duplicate(message) => Ok(Accepted {
                message,
                duplicate: true,
            }),
            Posted::SlowMode(wait) => Err(ChatError::SlowMode(wait).into()),
        }
    }

    /// Some instance changed `room`'s rules.
    pub fn room_changed(&self, room: &str) {
        self.rooms.invalidate(room);
    }

    /// Tells every instance (this one included) that `room`'s rules changed; best effort, the
    /// cache expires anyway.
    pub async fn announce(&self, room: &str) {
        self.rooms.invalidate(room);
        if let Err(e) = self
            .bus
            .publish_ephemeral(BusMessage::RoomChanged {
                room: room.to_owned(),
            })
            .await
        {
            tracing::warn!(room, "announcing a room change: {e}");
        }
    }

    /// Bans `user` from `room` for `seconds` from `now_ms`, or for good (owner or moderator).
    pub async fn ban(
        &self,
        room: &str,
        by: UserId,
        user: UserId,
        seconds: Option<u64>,
        now_ms: u64,
    ) -> Result<(), ChannelError> {
        self.channels.ban(by, room, user, seconds, now_ms).await?;
        self.announce(room).await;
        Ok(())
    }

    /// Lifts a ban (owner or moderator).
    pub async fn unban(&self, room: &str, by: UserId, user: UserId) -> Result<(), ChannelError> {
        self.channels.unban(by, room, user).await?;
        self.announce(room).await;
        Ok(())
    }

    /// Sets slow mode (owner only).
    pub async fn set_slow_mode(
        &self,
        room: &str,
        by: UserId,
        secs: u64,
    ) -> Result<Channel, ChannelError> {
        let c = self.channels.configure(by, room, None, Some(secs)).await?;
        self.announce(room).await;
        Ok(c)
    }

    /// Adds or removes a moderator (owner only).
    pub async fn set_moderator(
        &self,
        room: &str,
        by: UserId,
        user: UserId,
        moderator: bool,
    ) -> Result<Channel, ChannelError> {
        let c = self
            .channels
            .set_moderator(by, room, user, moderator)
            .await?;
        self.announce(room).await;
        Ok(c)
    }

    /// Forgets idle cached rules (keeping live rooms and those `keep` holds), and the slow-mode
    /// records older than the longest slow mode.
    pub async fn sweep(&self, now_ms: u64, keep: impl Fn(&str) -> bool) {
        self.rooms
            .sweep(super::rooms::IDLE_ROOM, |n| keep(n) || self.is_live(n));
        let horizon = now_ms.saturating_sub(crate::channels::service::MAX_SLOW_MODE_SECS * 1000);
        if let Err(e) = self.store.forget_posts_before(horizon).await {
            tracing::warn!("forgetting old slow-mode records: {e}");
        }
    }
}
