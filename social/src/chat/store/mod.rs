//! Chat message storage behind one trait, with the embedded default and ScyllaDB.
//!
//! Every backend passes the same conformance suite (`conformance`, feature `testing`).
//!
//! A room's history lives here, not in any instance's memory: every instance serves the same
//! history on join and the same `since` pages, and a restart keeps it. The slow-mode record of
//! each poster (when they last posted in a room) lives here too, checked and written in the same
//! step as the message, so two instances cannot both let one user through inside the interval.

use async_trait::async_trait;

use super::rooms::ChatMessage;
use crate::id::MessageId;
use crate::messaging::store::StoreError;

#[cfg(feature = "testing")]
pub mod conformance;
pub mod embedded;
#[cfg(feature = "scylla")]
pub mod scylla;

/// Longest client id accepted for idempotent chat posts, bytes.
pub const MAX_CLIENT_ID: usize = 128;
/// Most messages one read returns.
pub const READ_MAX: usize = 1000;

/// A message to store, with the room's rules that apply to storing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPost {
    /// The message (its id made by the caller's [`crate::id::IdGenerator`], time-ordered).
    pub message: ChatMessage,
    /// The sender's idempotency key: a second post with the same room, sender and client id
    /// stores nothing and returns the first message.
    pub client_id: Option<String>,
    /// Slow mode for this sender, ms (0: off, or the sender is exempt): refused if the
    /// sender's previous slow-mode post in this room was less than this long before
    /// `message.at`.
    pub slow_ms: u64,
    /// Retention: the room's newest `keep` messages form its history (at least 1).
    pub keep: usize,
}

/// What [`ChatStore::post`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// Stored now (durably).
    Created(ChatMessage),
    /// The same sender already posted this client id in this room: that message.
    Duplicate(ChatMessage),
    /// Slow mode: nothing stored; the sender may post again in this many ms.
    SlowMode(u64),
}

/// Durable chat history and slow-mode records.
///
/// Contract, checked by the conformance suite:
/// - `post` returns only once the message is durable; it is idempotent by
///   `(room, from, client_id)` (while the first message is still within retention), and its
///   slow-mode check-and-record is atomic: of two concurrent posts by one user in one room under
///   slow mode, at most one is stored, whichever instance each came through.
/// - Retention: a room's history is its newest `keep` messages. The embedded store deletes the
///   older ones in the write that pushes them out; ScyllaDB stops serving them at once and its
///   rows expire by TTL (see [`scylla`]).
/// - `recent` returns the newest `limit` messages (≤ `keep`), oldest first.
/// - `since` returns messages of the history with id > `after`, oldest first, at most `limit`;
///   paging with `after = last id of the previous page` visits each message of the history
///   once.
/// - A room's slow-mode records older than [`crate::channels::service::MAX_SLOW_MODE_SECS`]
///   may be forgotten (`forget_posts_before`).
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// Stores a message unless slow mode refuses it or it repeats a client id.
    async fn post(&self, post: ChatPost) -> Result<Posted, StoreError>;
    /// The newest `limit` messages of `room`'s history (at most `keep`), oldest first.
    async fn recent(
        &self,
        room: &str,
        limit: usize,
        keep: usize,
    ) -> Result<Vec<ChatMessage>, StoreError>;
    /// Messages of `room`'s history (its newest `keep`) after `after`, oldest first.
    async fn since(
        &self,
        room: &str,
        after: MessageId,
        limit: usize,
        keep: usize,
    ) -> Result<Vec<ChatMessage>, StoreError>;
    /// Forgets slow-mode records of posts before `before_ms` (Unix ms); the periodic sweep
    /// calls this. Backends that expire them by themselves do nothing.
    async fn forget_posts_before(&self, before_ms: u64) -> Result<(), StoreError>;
}

impl std::fmt::Debug for dyn ChatStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatStore")
    }
}

/// A client id the stores accept: 1-[`MAX_CLIENT_ID`] bytes without control characters.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CLIENT_ID && !id.chars().any(char::is_control)
}
