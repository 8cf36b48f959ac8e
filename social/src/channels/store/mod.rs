//! Channel storage behind one trait, with an embedded default and ScyllaDB.
//!
//! Every backend passes the same conformance suite (`conformance`, feature `testing`).

use async_trait::async_trait;

use super::{Ban, Channel, ChannelError};
use crate::id::UserId;

#[cfg(feature = "testing")]
pub mod conformance;
pub mod embedded;
#[cfg(feature = "scylla")]
pub mod scylla;

/// Durable channels and their chat bans.
///
/// Contract, checked by the conformance suite:
/// - every mutating call returns only once the change is durable;
/// - `create` fails with [`ChannelError::Taken`] if the name exists (two concurrent creates of
///   one name: exactly one wins), and with [`ChannelError::TooMany`] if the owner already owns
///   `max_owned` channels (exact on the embedded store; on ScyllaDB two concurrent creates by
///   one owner may both pass the count);
/// - `update` replaces a channel that exists (same name and owner), else
///   [`ChannelError::NotFound`];
/// - `delete` removes the channel, its owner index entry and its bans;
/// - `owned_by` lists by name.
#[async_trait]
pub trait ChannelStore: Send + Sync + 'static {
    /// Stores a new channel.
    async fn create(&self, channel: Channel, max_owned: usize) -> Result<(), ChannelError>;
    /// One channel by name.
    async fn get(&self, name: &str) -> Result<Option<Channel>, ChannelError>;
    /// The channels `owner` owns, by name.
    async fn owned_by(&self, owner: UserId) -> Result<Vec<Channel>, ChannelError>;
    /// Replaces an existing channel.
    async fn update(&self, channel: Channel) -> Result<(), ChannelError>;
    /// Removes a channel and its bans; `false` if there was none.
    async fn delete(&self, name: &str) -> Result<bool, ChannelError>;
    /// The bans of a channel's room (expired ones may be included).
    async fn bans(&self, name: &str) -> Result<Vec<Ban>, ChannelError>;
    /// Sets (or replaces) a ban.
    async fn put_ban(&self, name: &str, ban: Ban) -> Result<(), ChannelError>;
    /// Lifts a ban; `false` if there was none.
    async fn lift_ban(&self, name: &str, user: UserId) -> Result<bool, ChannelError>;
}

impl std::fmt::Debug for dyn ChannelStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelStore")
    }
}
