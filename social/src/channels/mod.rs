//! Channels: a stream name owned by a user.
//!
//! A user reserves a name (`POST /api/v1/streams`) and gets a publish key; whoever presents a
//! valid key may publish that name, and only the owner's keys may resume it in its reconnect
//! grace window. The channel also carries the stream's chat room rules: its owner, moderators,
//! slow mode and bans, durable in the store and the same on every instance.
//!
//! | file | owns |
//! | --- | --- |
//! | [`secrets`] | stream keys (random, stored as SHA-256, compared in constant time) and signed playback tokens |
//! | [`service`] | the rules: who may create, rotate, delete, moderate; key and token checks |
//! | [`store`] | [`ChannelStore`] and its backends (embedded, ScyllaDB) |
//!
//! Nothing here knows about RTMP or HTTP: the media plane calls
//! [`service::Channels::verify_publish`] and [`secrets::PlaybackKeys::verify`].

use serde::{Deserialize, Serialize};

use crate::id::UserId;

pub mod secrets;
pub mod service;
pub mod store;

pub use service::Channels;
pub use store::ChannelStore;

/// Stream names: 1-128 of `[A-Za-z0-9_.-]`, not starting with a dot (the RTMP name, the URL
/// path segment and the chat room name are the same string).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// One reserved stream name and its rules, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// The stream name.
    pub name: String,
    /// Who reserved it.
    pub owner: UserId,
    /// Playlists and media need a playback token.
    #[serde(default)]
    pub private: bool,
    /// SHA-256 of the current publish key, hex.
    pub key_hash: String,
    /// When the current key was issued, Unix ms.
    pub key_issued_at: u64,
    /// When the name was reserved, Unix ms.
    pub created_at: u64,
    /// Seconds between two chat messages of one user (0 = off).
    #[serde(default)]
    pub slow_mode_secs: u64,
    /// Users who may ban and time out in the chat room (besides the owner).
    #[serde(default)]
    pub moderators: Vec<UserId>,
}

impl Channel {
    /// The owner or a moderator.
    pub fn may_moderate(&self, user: UserId) -> bool {
        self.owner == user || self.moderators.contains(&user)
    }
}

/// A ban (`until: None`) or a timeout (until Unix ms) in a channel's chat room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// Who.
    pub user: UserId,
    /// Until when (Unix ms); `None` for good.
    pub until: Option<u64>,
}

impl Ban {
    /// Still in force at `now_ms`.
    pub fn active(&self, now_ms: u64) -> bool {
        self.until.is_none_or(|t| t > now_ms)
    }
}

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Not a valid stream name.
    #[error("invalid stream name: 1-128 of A-Z a-z 0-9 _ . -")]
    BadName,
    /// Another user (or the caller) already reserved it.
    #[error("stream name already taken")]
    Taken,
    /// No such channel.
    #[error("no such stream")]
    NotFound,
    /// The caller is not its owner (or a moderator, where that suffices).
    #[error("not allowed: only the stream's owner may do this")]
    Forbidden,
    /// The caller owns the maximum number of streams.
    #[error("you already own {0} streams, the most allowed")]
    TooMany(usize),
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The backend failed; the operation may or may not have happened.
    #[error("channel store: {0}")]
    Backend(String),
}
