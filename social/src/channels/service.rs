//! The rules of channels: reserving names, keys, privacy, playback tokens, moderators.

use std::sync::Arc;

use super::secrets::{self, PlaybackKeys, MAX_TOKEN_TTL_SECS};
use super::store::ChannelStore;
use super::{valid_name, Ban, Channel, ChannelError};
use crate::id::UserId;

/// The longest slow mode an owner may set.
pub const MAX_SLOW_MODE_SECS: u64 = 3600;
/// The most moderators of one channel.
pub const MAX_MODERATORS: usize = 100;

/// A channel with the publish key that was just issued for it (shown once, never stored).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The channel as stored.
    pub channel: Channel,
    /// The publish key in clear.
    pub key: String,
}

/// Who a publish key belongs to, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishGrant {
    /// The channel's owner.
    pub owner: UserId,
    /// Whether playback needs a token.
    pub private: bool,
}

/// Why a publish key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishDenied {
    /// Nobody reserved the name.
    #[error("stream name not registered: create it with POST /api/v1/streams")]
    Unregistered,
    /// No `?key=` was given.
    #[error("a stream key is required: publish to NAME?key=KEY")]
    MissingKey,
    /// The key does not match (wrong, or rotated).
    #[error("wrong stream key")]
    WrongKey,
    /// The store could not be read.
    #[error("{0}")]
    Unavailable(String),
}

/// The channel service of one instance.
#[derive(Debug, Clone)]
pub struct Channels {
    store: Arc<dyn ChannelStore>,
    playback: PlaybackKeys,
    max_per_user: usize,
}

fn key() -> Result<String, ChannelError> {
    secrets::new_key().map_err(|e| ChannelError::Backend(format!("no randomness: {e}")))
}

impl Channels {
    /// Channels in `store`; playback tokens signed with `playback`; at most `max_per_user`
    /// channels per owner.
    pub fn new(store: Arc<dyn ChannelStore>, playback: PlaybackKeys, max_per_user: usize) -> Self {
        Self {
            store,
            playback,
            max_per_user,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ChannelStore> {
        &self.store
    }

    /// One channel.
    pub async fn get(&self, name: &str) -> Result<Option<Channel>, ChannelError> {
        if !valid_name(name) {
            return Err(ChannelError::BadName);
        }
        self.store.get(name).await
    }

    /// Reserves `name` for `owner` and issues its first key.
    pub async fn create(
        &self,
        owner: UserId,
        name: &str,
        private: bool,
        now_ms: u64,
    ) -> Result<Issued, ChannelError> {
        if !valid_name(name) {
            return Err(ChannelError::BadName);
        }
        let key = key()?;
        let channel = Channel {
            name: name.to_owned(),
            owner,
            private,
            key_hash: secrets::hash_key(&key),
            key_issued_at: now_ms,
            created_at: now_ms,
            slow_mode_secs: 0,
            moderators: Vec::new(),
        };
        self.store
            .create(channel.clone(), self.max_per_user)
            .await?;
        Ok(Issued { channel, key })
    }

    /// The caller's channels.
    pub async fn list(&self, owner: UserId) -> Result<Vec<Channel>, ChannelError> {
        self.store.owned_by(owner).await
    }

    /// The channel if `by` owns it.
    pub async fn owned(&self, by: UserId, name: &str) -> Result<Channel, ChannelError> {
        match self.get(name).await? {
            Some(c) if c.owner == by => Ok(c),
            Some(_) => Err(ChannelError::Forbidden),
            None => Err(ChannelError::NotFound),
        }
    }

    /// Replaces the key: the old one stops working at once.
    pub async fn rotate(
        &self,
        by: UserId,
        name: &str,
        now_ms: u64,
    ) -> Result<Issued, ChannelError> {
        let mut channel = self.owned(by, name).await?;
        let key = key()?;
        channel.key_hash = secrets::hash_key(&key);
        channel.key_issued_at = now_ms;
        self.store.update(channel.clone()).await?;
        Ok(Issued { channel, key })
    }

    /// Releases the name (and its room's rules).
    pub async fn delete(&self, by: UserId, name: &str) -> Result<(), ChannelError> {
        self.owned(by, name).await?;
        self.store.delete(name).await?;
        Ok(())
    }

    /// Changes the owner's settings: privacy, slow mode.
    pub async fn configure(
        &self,
        by: UserId,
        name: &str,
        private: Option<bool>,
        slow_mode_secs: Option<u64>,
    ) -> Result<Channel, ChannelError> {
        let mut channel = self.owned(by, name).await?;
        if let Some(p) = private {
            channel.private = p;
        }
        if let Some(s) = slow_mode_secs {
            if s > MAX_SLOW_MODE_SECS {
                return Err(ChannelError::Invalid(format!(
                    "slow mode is at most {MAX_SLOW_MODE_SECS} seconds"
                )));
            }
            channel.slow_mode_secs = s;
        }
        self.store.update(channel.clone()).await?;
        Ok(channel)
    }

    /// Adds or removes a moderator (owner only).
    pub async fn set_moderator(
        &self,
        by: UserId,
        name: &str,
        user: UserId,
        moderator: bool,
    ) -> Result<Channel, ChannelError> {
        let mut channel = self.owned(by, name).await?;
        channel.moderators.retain(|m| *m != user);
        if moderator && user != channel.owner {
            if channel.moderators.len() >= MAX_MODERATORS {
                return Err(ChannelError::Invalid(format!(
                    "a stream has at most {MAX_MODERATORS} moderators"
                )));
            }
            channel.moderators.push(user);
        }
        self.store.update(channel.clone()).await?;
        Ok(channel)
    }

    /// Bans (`seconds: None`) or times out `user` in `name`'s room: the owner or a moderator,
    /// never against the owner or, for a moderator, another moderator.
    pub async fn ban(
        &self,
        by: UserId,
        name: &str,
        user: UserId,
        seconds: Option<u64>,
        now_ms: u64,
    ) -> Result<Ban, ChannelError> {
        let channel = self.moderated(by, name).await?;
        if user == channel.owner || (by != channel.owner && channel.moderators.contains(&user)) {
            return Err(ChannelError::Forbidden);
        }
        let until = seconds.map(|s| now_ms.saturating_add(s.saturating_mul(1000)));
        let ban = Ban { user, until };
        self.store.put_ban(name, ban).await?;
        Ok(ban)
    }

    /// Lifts a ban (owner or moderator).
    pub async fn unban(&self, by: UserId, name: &str, user: UserId) -> Result<bool, ChannelError> {
        self.moderated(by, name).await?;
        self.store.lift_ban(name, user).await
    }

    async fn moderated(&self, by: UserId, name: &str) -> Result<Channel, ChannelError> {
        match self.get(name).await? {
            Some(c) if c.may_moderate(by) => Ok(c),
            Some(_) => Err(ChannelError::Forbidden),
            None => Err(ChannelError::NotFound),
        }
    }

    /// A playback token for `name`, valid `ttl_secs` from `now_secs` (owner only).
    pub async fn playback_token(
        &self,
        by: UserId,
        name: &str,
        ttl_secs: u64,
        now_secs: u64,
    ) -> Result<(String, u64), ChannelError> {
        self.owned(by, name).await?;
        if ttl_secs == 0 || ttl_secs > MAX_TOKEN_TTL_SECS {
            return Err(ChannelError::Invalid(format!(
                "ttl must be 1..={MAX_TOKEN_TTL_SECS} seconds"
            )));
        }
        let exp = now_secs.saturating_add(ttl_secs);
        Ok((self.playback.mint(name, exp), exp))
    }

    /// Checks a publisher's key for `name`.
    pub async fn verify_publish(
        &self,
        name: &str,
        key: Option<&str>,
    ) -> Result<PublishGrant, PublishDenied> {
        let channel = match self.store.get(name).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(PublishDenied::Unregistered),
            Err(e) => return Err(PublishDenied::Unavailable(e.to_string())),
        };
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or(PublishDenied::MissingKey)?;
        if !secrets::key_matches(key, &channel.key_hash) {
            return Err(PublishDenied::WrongKey);
        }
        Ok(PublishGrant {
            owner: channel.owner,
            private: channel.private,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::store::embedded::EmbeddedStore;

    fn u() -> UserId {
        UserId(uuid::Uuid::new_v4())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_rotation_moderation_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 1).unwrap();
        let playback = PlaybackKeys::from_secret(b"s");
        let ch = Channels::new(Arc::new(store), playback.clone(), 2);
        let (owner, other, moderator) = (u(), u(), u());

        let first = ch.create(owner, "demo", false, 1).await.unwrap();
        assert_eq!(
            ch.create(other, "demo", false, 1).await.unwrap_err(),
            ChannelError::Taken
        );
        assert_eq!(
            ch.create(owner, "bad name", false, 1).await.unwrap_err(),
            ChannelError::BadName
        );
        let grant = ch.verify_publish("demo", Some(&first.key)).await.unwrap();
        assert_eq!(grant.owner, owner);
        assert_eq!(
            ch.verify_publish("demo", None).await,
            Err(PublishDenied::MissingKey)
        );
        assert_eq!(
            ch.verify_publish("nope", Some(&first.key)).await,
            Err(PublishDenied::Unregistered)
        );

        // Rotation: the old key stops, the new one works; only the owner may rotate.
        assert_eq!(
            ch.rotate(other, "demo", 2).await.unwrap_err(),
            ChannelError::Forbidden
        );
        let second = ch.rotate(owner, "demo", 2).await.unwrap();
        assert_eq!(
            ch.verify_publish("demo", Some(&first.key)).await,
            Err(PublishDenied::WrongKey)
        );
        assert!(ch.verify_publish("demo", Some(&second.key)).await.is_ok());

        // Moderation: owner names a moderator; the moderator bans a viewer but not the owner.
        ch.set_moderator(owner, "demo", moderator, true)
            .await
            .unwrap();
        assert_eq!(
            ch.ban(other, "demo", moderator, None, 0).await.unwrap_err(),
            ChannelError::Forbidden
        );
        assert_eq!(
            ch.ban(moderator, "demo", owner, None, 0).await.unwrap_err(),
            ChannelError::Forbidden
        );
        let ban = ch
            .ban(moderator, "demo", other, Some(60), 1000)
            .await
            .unwrap();
        assert_eq!(ban.until, Some(61_000));
        assert!(ch.unban(moderator, "demo", other).await.unwrap());

        // Playback tokens: owner only, bounded ttl, verifiable with the same keys.
        assert_eq!(
            ch.playback_token(other, "demo", 60, 100).await.unwrap_err(),
            ChannelError::Forbidden
        );
        assert!(ch.playback_token(owner, "demo", 0, 100).await.is_err());
        let (token, exp) = ch.playback_token(owner, "demo", 60, 100).await.unwrap();
        assert_eq!(exp, 160);
        assert!(playback.verify("demo", &token, 150).is_ok());

        // The per-user cap.
        ch.create(owner, "second", true, 3).await.unwrap();
        assert_eq!(
            ch.create(owner, "third", false, 3).await.unwrap_err(),
            ChannelError::TooMany(2)
        );
        ch.delete(owner, "second").await.unwrap();
        assert_eq!(ch.list(owner).await.unwrap().len(), 1);
    }
}
