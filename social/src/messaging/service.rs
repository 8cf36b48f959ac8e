//! The direct-message operations, shared by REST and WebSocket: validate, rate-limit, store,
//! wake the outbox relay.

use std::sync::Arc;

use tokio::sync::Notify;

use super::model::{ConversationId, ConversationSummary, Message, NewMessage, Page, Unread};
use super::store::{Appended, Store, StoreError};
use crate::id::{IdGenerator, MessageId, UserId};
use crate::limits::{LimitError, Limits};

/// Why a direct-message operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    /// A message to oneself.
    #[error("cannot send a message to yourself")]
    SelfRecipient,
    /// `client_id` empty or over 128 bytes.
    #[error("client_id must be 1 to 128 bytes")]
    BadClientId,
    /// A read marker naming a message of another conversation.
    #[error("no such message in this conversation")]
    NotInConversation,
    /// Empty, too large, or over the sender's rate.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Direct messaging of one instance.
#[derive(Debug)]
pub struct Messaging {
    store: Arc<dyn Store>,
    ids: Arc<IdGenerator>,
    limits: Arc<Limits>,
    relay_wake: Arc<Notify>,
}

impl Messaging {
    /// Messaging over `store`; every change wakes `relay_wake` (the outbox relay).
    pub fn new(
        store: Arc<dyn Store>,
        ids: Arc<IdGenerator>,
        limits: Arc<Limits>,
        relay_wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            ids,
            limits,
            relay_wake,
        }
    }

    /// Fired after every change: the outbox relay waits on it.
    pub fn relay_wake(&self) -> &Arc<Notify> {
        &self.relay_wake
    }

    /// The store, for reads.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether `a` and `b` share a conversation (at least one message, in either direction,
    /// deleted or not): who may see the other's typing notices.
    pub async fn are_partners(&self, a: UserId, b: UserId) -> Result<bool, MessagingError> {
        if a == b {
            return Ok(false);
        }
        let page = Page {
            before: None,
            after: None,
            limit: 1,
        };
        let one = self
            .store
            .history(ConversationId::between(a, b), page)
            .await?;
        Ok(!one.is_empty())
    }

    /// Validates, rate-limits and durably stores a message from `from` to `to`; idempotent by
    /// `client_id`.
    pub async fn send(
        &self,
        from: UserId,
        to: UserId,
        content: String,
        client_id: Option<String>,
    ) -> Result<Appended, MessagingError> {
        if to == from {
            return Err(MessagingError::SelfRecipient);
        }
        self.limits.check_content(&content)?;
        if client_id
            .as_ref()
            .is_some_and(|c| c.is_empty() || c.len() > 128)
        {
            return Err(MessagingError::BadClientId);
        }
        self.limits.take(from)?;
        let appended = self
            .store
            .append(NewMessage {
                id: self.ids.next(),
                from,
                to,
                content,
                client_id,
            })
            .await?;
        if matches!(appended, Appended::Created(_)) {
            self.relay_wake.notify_one();
        }
        Ok(appended)
    }

    /// Replaces the content of `user`'s own message.
    pub async fn edit(
        &self,
        user: UserId,
        id: MessageId,
        content: String,
        now_ms: u64,
    ) -> Result<Message, MessagingError> {
        self.limits.check_content(&content)?;
        let m = self.store.edit(user, id, content, now_ms).await?;
        self.relay_wake.notify_one();
        Ok(m)
    }

    /// Turns `user`'s own message into a tombstone.
    pub async fn delete(
        &self,
        user: UserId,
        id: MessageId,
        now_ms: u64,
    ) -> Result<Message, MessagingError> {
        let m = self.store.delete(user, id, now_ms).await?;
        self.relay_wake.notify_one();
        Ok(m)
    }

    /// Moves `me`'s read marker in the conversation with `peer` forward to `up_to`, which must
    /// be a message of that conversation; returns the marker in force.
    pub async fn mark_read(
        &self,
        me: UserId,
        peer: UserId,
        up_to: MessageId,
    ) -> Result<MessageId, MessagingError> {
        let conv = ConversationId::between(me, peer);
        let m = self.store.get(me, up_to).await?;
        if m.conversation != conv {
            return Err(MessagingError::NotInConversation);
        }
        let marker = self.store.mark_read(me, conv, up_to).await?;
        self.relay_wake.notify_one();
        Ok(marker)
    }

    /// One message, if `me` takes part in its conversation.
    pub async fn get(&self, me: UserId, id: MessageId) -> Result<Message, MessagingError> {
        Ok(self.store.get(me, id).await?)
    }

    /// A page of the conversation between `me` and `peer`, newest first. Only the caller's
    /// own conversations exist for the caller: the id is derived from both.
    pub async fn history(
        &self,
        me: UserId,
        peer: UserId,
        page: Page,
    ) -> Result<Vec<Message>, MessagingError> {
        let conv = ConversationId::between(me, peer);
        Ok(self.store.history(conv, page).await?)
    }

    /// `me`'s conversations, most recent first.
    pub async fn conversations(
        &self,
        me: UserId,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, MessagingError> {
        Ok(self.store.conversations(me, limit).await?)
    }

    /// `me`'s unread counts.
    pub async fn unread(&self, me: UserId) -> Result<Unread, MessagingError> {
        Ok(self.store.unread(me).await?)
    }
}
