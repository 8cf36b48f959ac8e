//! The values of direct messaging: conversations, messages, read state, and the events the
//! outbox keeps and the event bus carries.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::id::{MessageId, UserId};

/// A one-to-one conversation: the two participants, smaller id first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConversationId {
    /// The participant with the smaller id.
    pub a: UserId,
    /// The other participant.
    pub b: UserId,
}

impl ConversationId {
    /// The conversation between `x` and `y` (in either order).
    pub fn between(x: UserId, y: UserId) -> Self {
        if x <= y {
            Self { a: x, b: y }
        } else {
            Self { a: y, b: x }
        }
    }

    /// The participant who is not `me`, if `me` takes part.
    pub fn peer_of(&self, me: UserId) -> Option<UserId> {
        if me == self.a {
            Some(self.b)
        } else if me == self.b {
            Some(self.a)
        } else {
            None
        }
    }

    /// Whether `user` takes part.
    pub fn includes(&self, user: UserId) -> bool {
        self.a == user || self.b == user
    }

    /// 32 bytes that sort as the id does (storage keys, Kafka keys).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..16].copy_from_slice(self.a.0.as_bytes());
        k[16..].copy_from_slice(self.b.0.as_bytes());
        k
    }

    /// The inverse of [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let a = Uuid::from_slice(b.get(..16)?).ok()?;
        let c = Uuid::from_slice(b.get(16..32)?).ok()?;
        Some(Self::between(UserId(a), UserId(c)))
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dm:{}:{}", self.a, self.b)
    }
}

impl Serialize for ConversationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut it = s.strip_prefix("dm:").unwrap_or("").split(':');
        let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
            return Err(serde::de::Error::custom("expected dm:<uuid>:<uuid>"));
        };
        let a = Uuid::parse_str(a).map_err(serde::de::Error::custom)?;
        let b = Uuid::parse_str(b).map_err(serde::de::Error::custom)?;
        Ok(Self::between(UserId(a), UserId(b)))
    }
}

/// A stored direct message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Time-ordered id.
    pub id: MessageId,
    /// The conversation.
    pub conversation: ConversationId,
    /// Who sent it.
    pub from: UserId,
    /// Who it is for.
    pub to: UserId,
    /// UTF-8 text (empty once deleted).
    pub content: String,
    /// The sender's idempotency key, if given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
    /// When it was last edited (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub edited_at: Option<u64>,
    /// Deleted by its sender: a tombstone, content cleared.
    #[serde(default)]
    pub deleted: bool,
}

/// A message to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The id to give it (made by the caller's [`crate::id::IdGenerator`]).
    pub id: MessageId,
    /// Sender.
    pub from: UserId,
    /// Recipient.
    pub to: UserId,
    /// Text.
    pub content: String,
    /// Idempotency key.
    pub client_id: Option<String>,
}

/// One entry of "my conversations".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// The other participant.
    pub peer: UserId,
    /// The newest message.
    pub last_message: Message,
    /// Messages from the peer after my read marker.
    pub unread: u64,
}

/// A page request for history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Page {
    /// Only messages with a smaller id.
    pub before: Option<MessageId>,
    /// Only messages with a larger id.
    pub after: Option<MessageId>,
    /// At most this many (1..=100).
    pub limit: usize,
}

/// Unread counts of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Unread {
    /// Sum over conversations.
    pub total: u64,
    /// Conversations with unread messages.
    pub conversations: Vec<UnreadIn>,
}

/// Unread messages in one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadIn {
    /// The other participant.
    pub peer: UserId,
    /// Messages from them after my read marker.
    pub unread: u64,
}

/// Something that happened in a conversation or in the follow graph: what the outbox keeps
/// and the event bus carries.
///
/// Versioned JSON (`"v": 1`), keyed on the bus by [`Event::key`]: a conversation's events by
/// the conversation, follows and unfollows by the followee, so each stays in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum Event {
    /// A message was stored.
    #[serde(rename = "message.created")]
    MessageCreated {
        /// Schema version.
        v: u32,
        /// The message.
        message: Message,
    },
    /// A message's content was replaced.
    #[serde(rename = "message.edited")]
    MessageEdited {
        /// Schema version.
        v: u32,
        /// The message after the edit.
        message: Message,
    },
    /// A message became a tombstone.
    #[serde(rename = "message.deleted")]
    MessageDeleted {
        /// Schema version.
        v: u32,
        /// The tombstone.
        message: Message,
    },
    /// A participant read the conversation up to a message.
    #[serde(rename = "conversation.read")]
    Read {
        /// Schema version.
        v: u32,
        /// The conversation.
        conversation: ConversationId,
        /// Who read.
        reader: UserId,
        /// Their marker now.
        up_to: MessageId,
    },
    /// `follower` started following `followee` (a follow that created the edge; a repeated
    /// follow changes nothing and has no event).
    #[serde(rename = "graph.followed")]
    Followed {
        /// Schema version.
        v: u32,
        /// Who follows.
        follower: UserId,
        /// Whom.
        followee: UserId,
        /// When the edge was created, ms since the Unix epoch (the edge's `since`).
        since: u64,
    },
    /// `follower` stopped following `followee` (an unfollow that removed the edge).
    #[serde(rename = "graph.unfollowed")]
    Unfollowed {
        /// Schema version.
        v: u32,
        /// Who followed.
        follower: UserId,
        /// Whom.
        followee: UserId,
    },
}

/// What an [`Event`] is keyed by on the bus: its events stay in the order they were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKey {
    /// A conversation's messages and read markers.
    Conversation(ConversationId),
    /// Follows and unfollows of this account (the followee).
    Followee(UserId),
}

impl EventKey {
    /// The key's bytes (a Kafka record key): the conversation's 32 bytes, or `user:` and the
    /// followee's 16 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Conversation(c) => c.to_bytes().to_vec(),
            Self::Followee(u) => [b"user:".as_slice(), u.0.as_bytes()].concat(),
        }
    }
}

impl Event {
    /// The current schema version.
    pub const VERSION: u32 = 1;

    /// The bus key: the conversation of a message or read marker, the followee of a follow
    /// or unfollow.
    pub fn key(&self) -> EventKey {
        match self {
            Self::MessageCreated { message, .. }
            | Self::MessageEdited { message, .. }
            | Self::MessageDeleted { message, .. } => EventKey::Conversation(message.conversation),
            Self::Read { conversation, .. } => EventKey::Conversation(*conversation),
            Self::Followed { followee, .. } | Self::Unfollowed { followee, .. } => {
                EventKey::Followee(*followee)
            }
        }
    }

    /// The conversation the event belongs to; `None` for follow-graph events.
    pub fn conversation(&self) -> Option<ConversationId> {
        match self.key() {
            EventKey::Conversation(c) => Some(c),
            EventKey::Followee(_) => None,
        }
    }
}
