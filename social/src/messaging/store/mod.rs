//! Message storage behind one trait, with an embedded default and a scale-out backend.
//!
//! Every backend passes the same conformance suite (`conformance`, compiled with the `testing`
//! feature for the tests only). ScyllaDB is behind the `scylla` feature.

use async_trait::async_trait;

use crate::id::MessageId;
use crate::id::UserId;
use crate::messaging::model::{
    ConversationId, ConversationSummary, Message, NewMessage, Page, Unread,
};

#[cfg(feature = "testing")]
pub mod conformance;
pub mod embedded;
#[cfg(feature = "scylla")]
pub mod scylla;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such message, or not visible to the caller.
    #[error("message not found")]
    NotFound,
    /// The caller may not change this message (not its sender).
    #[error("not allowed")]
    Forbidden,
    /// The backend failed; the operation may or may not have happened.
    #[error("storage backend: {0}")]
    Backend(String),
}

/// What `append` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored now.
    Created(Message),
    /// A message with the same sender and client id already existed: that one.
    Duplicate(Message),
}

impl Appended {
    /// The stored message either way.
    pub fn message(&self) -> &Message {
        match self {
            Self::Created(m) | Self::Duplicate(m) => m,
        }
    }
}

/// Durable message storage.
///
/// Contract, checked by the conformance suite (`conformance`, feature `testing`):
/// - `append` returns only once the message (and its outbox event, for stores that keep the
///   outbox) is durable: it survives `kill -9` of the process. It is idempotent by
///   `(from, client_id)`.
/// - `history` returns newest first, by id, honouring `before`/`after` (exclusive) and `limit`;
///   paging with `before = last id of the previous page` visits every message exactly once.
/// - `conversations` is most recent first; `unread` counts the peer's messages after the
///   caller's read marker (tombstones included: a deleted unread message still counts once).
/// - `mark_read` only moves a marker forward.
/// - `since` returns messages of every conversation of `user` with id > `after`, oldest first.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Stores a new message (durably) or returns the existing one with the same client id.
    async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError>;
    /// One message by id, if `viewer` takes part in its conversation.
    async fn get(&self, viewer: UserId, id: MessageId) -> Result<Message, StoreError>;
    /// A page of a conversation's history, newest first.
    async fn history(&self, conv: ConversationId, page: Page) -> Result<Vec<Message>, StoreError>;
    /// The caller's conversations, most recent first.
    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError>;
    /// Moves `user`'s read marker in `conv` forward to `up_to`; returns the marker now in force.
    async fn mark_read(
        &self,
        user: UserId,
        conv: ConversationId,
        up_to: MessageId,
    ) -> Result<MessageId, StoreError>;
    /// Unread counts of `user`.
    async fn unread(&self, user: UserId) -> Result<Unread, StoreError>;
    /// Replaces the content of `user`'s own message.
    async fn edit(
        &self,
        user: UserId,
        id: MessageId,
        content: String,
        now_ms: u64,
    ) -> Result<Message, StoreError>;
    /// Turns `user`'s own message into a tombstone.
    async fn delete(&self, user: UserId, id: MessageId, now_ms: u64)
        -> Result<Message, StoreError>;
    /// Messages of all of `user`'s conversations after `after`, oldest first, at most `limit`.
    async fn since(
        &self,
        user: UserId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;
}

/// Durable outbox records: every change a store makes writes its [`crate::messaging::model::Event`] in the
/// same atomic write, into the outbox of the node (server instance) that made it. That node
/// relays them to the event bus in order and acknowledges them, so a bus outage delays events
/// but loses none.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Up to `limit` records of `node` with sequence > `after`, in order.
    async fn outbox_read(
        &self,
        node: u16,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, crate::messaging::model::Event)>, StoreError>;
    /// Forgets `node`'s records up to and including `up_to`.
    async fn outbox_ack(&self, node: u16, up_to: u64) -> Result<(), StoreError>;
}

/// A complete backend: messages and their outbox.
pub trait Store: MessageStore + Outbox {}

impl<T: MessageStore + Outbox> Store for T {}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl std::fmt::Debug for dyn Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}
