//! Channels in the embedded store: the same fjall database, writer thread and group commit as
//! messages and the graph ([`crate::messaging::store::embedded`]).
//!
//! | keyspace   | key                        | value          |
//! | ---------- | -------------------------- | -------------- |
//! | `channels` | name                       | [`Channel`] JSON |
//! | `owned`    | owner (16) \| name         | ()             |
//! | `bans`     | name \| 0x00 \| user (16)  | [`Ban`] JSON   |
//!
//! Names never contain 0x00, so a name's bans are exactly the prefix `name | 0x00`. Creating
//! checks the name and the owner's count on the writer thread, which runs one job at a time:
//! two concurrent creates of one name cannot both succeed, and the count is exact.

use async_trait::async_trait;

use super::ChannelStore;
use crate::channels::{Ban, Channel, ChannelError};
use crate::id::UserId;
use crate::messaging::store::embedded::{backend, EmbeddedStore};
use crate::messaging::store::StoreError;

fn err(e: StoreError) -> ChannelError {
    ChannelError::Backend(e.to_string())
}

fn owned_key(owner: UserId, name: &str) -> Vec<u8> {
    let mut k = owner.0.as_bytes().to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn bans_prefix(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k
}

fn ban_key(name: &str, user: UserId) -> Vec<u8> {
    let mut k = bans_prefix(name);
    k.extend_from_slice(user.0.as_bytes());
    k
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(backend)
}

/// What a writer job decided, beside store errors.
enum Outcome<T> {
    Done(T),
    Refused(ChannelError),
}

impl EmbeddedStore {
    async fn channel_job<T, F>(&self, f: F) -> Result<T, ChannelError>
    where
        T: Send + 'static,
        F: FnOnce(&mut crate::messaging::store::embedded::Writer) -> Result<Outcome<T>, StoreError>
            + Send
            + 'static,
    {
        let out = self
            .write(move |w| {
                let o = f(w)?;
                let sync = matches!(o, Outcome::Done(_));
                Ok((o, sync))
            })
            .await
            .map_err(err)?;
        match out {
            Outcome::Done(v) => Ok(v),
            Outcome::Refused(e) => Err(e),
        }
    }
}

#[async_trait]
impl ChannelStore for EmbeddedStore {
    async fn create(&self, channel: Channel, max_owned: usize) -> Result<(), ChannelError> {
        self.channel_job(move |w| {
            let sp = w.spaces();
            if sp.channels.get(&channel.name).map_err(backend)?.is_some() {
                return Ok(Outcome::Refused(ChannelError::Taken));
            }
            let owned = sp.owned.prefix(channel.owner.0.as_bytes()).count();
            if owned >= max_owned {
                return Ok(Outcome::Refused(ChannelError::TooMany(max_owned)));
            }
            let mut b = w.batch();
            b.insert(&sp.channels, channel.name.as_bytes(), json(&channel)?);
            b.insert(&sp.owned, owned_key(channel.owner, &channel.name), []);
            w.commit_plain(b)?;
            Ok(Outcome::Done(()))
        })
        .await
    }

    async fn get(&self, name: &str) -> Result<Option<Channel>, ChannelError> {
        let name = name.to_owned();
        self.read(
            move |sp| match sp.channels.get(name.as_bytes()).map_err(backend)? {
                Some(v) => serde_json::from_slice(&v).map(Some).map_err(backend),
                None => Ok(None),
            },
        )
        .await
        .map_err(err)
    }

    async fn owned_by(&self, owner: UserId) -> Result<Vec<Channel>, ChannelError> {
        self.read(move |sp| {
            let mut out = Vec::new();
            for g in sp.owned.prefix(owner.0.as_bytes()) {
                let k = g.key().map_err(backend)?;
                let name = k.get(16..).ok_or_else(|| backend("corrupt owned key"))?;
                if let Some(v) = sp.channels.get(name).map_err(backend)? {
                    out.push(serde_json::from_slice::<Channel>(&v).map_err(backend)?);
                }
            }
            Ok(out)
        })
        .await
        .map_err(err)
    }

    async fn update(&self, channel: Channel) -> Result<(), ChannelError> {
        self.channel_job(move |w| {
            let sp = w.spaces();
            let Some(old) = sp.channels.get(&channel.name).map_err(backend)? else {
                return Ok(Outcome::Refused(ChannelError::NotFound));
            };
            let old: Channel = serde_json::from_slice(&old).map_err(backend)?;
            if old.owner != channel.owner {
                return Ok(Outcome::Refused(ChannelError::NotFound));
            }
            let mut b = w.batch();
            b.insert(&sp.channels, channel.name.as_bytes(), json(&channel)?);
            w.commit_plain(b)?;
            Ok(Outcome::Done(()))
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<bool, ChannelError> {
        let name = name.to_owned();
        self.channel_job(move |w| {
            let sp = w.spaces();
            let Some(old) = sp.channels.get(&name).map_err(backend)? else {
                return Ok(Outcome::Done(false));
            };
            let old: Channel = serde_json::from_slice(&old).map_err(backend)?;
            let mut b = w.batch();
            b.remove(&sp.channels, name.as_bytes());
            b.remove(&sp.owned, owned_key(old.owner, &name));
            for g in sp.bans.prefix(bans_prefix(&name)) {
                b.remove(&sp.bans, g.key().map_err(backend)?);
            }
            w.commit_plain(b)?;
            Ok(Outcome::Done(true))
        })
        .await
    }

    async fn bans(&self, name: &str) -> Result<Vec<Ban>, ChannelError> {
        let prefix = bans_prefix(name);
        self.read(move |sp| {
            sp.bans
                .prefix(prefix)
                .map(|g| {
                    let v = g.value().map_err(backend)?;
                    serde_json::from_slice(&v).map_err(backend)
                })
                .collect()
        })
        .await
        .map_err(err)
    }

    async fn put_ban(&self, name: &str, ban: Ban) -> Result<(), ChannelError> {
        let key = ban_key(name, ban.user);
        self.channel_job(move |w| {
            let sp = w.spaces();
            let mut b = w.batch();
            b.insert(&sp.bans, key, json(&ban)?);
            w.commit_plain(b)?;
            Ok(Outcome::Done(()))
        })
        .await
    }

    async fn lift_ban(&self, name: &str, user: UserId) -> Result<bool, ChannelError> {
        let key = ban_key(name, user);
        self.channel_job(move |w| {
            let sp = w.spaces();
            if sp.bans.get(&key).map_err(backend)?.is_none() {
                return Ok(Outcome::Done(false));
            }
            let mut b = w.batch();
            b.remove(&sp.bans, key);
            w.commit_plain(b)?;
            Ok(Outcome::Done(true))
        })
        .await
    }
}
