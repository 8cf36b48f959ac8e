//! Channels on ScyllaDB, in the message store's keyspace and session.
//!
//! ```text
//! channels          (name text PRIMARY KEY, owner uuid, doc text)
//! channels_by_owner ((owner), name)            -- the owner's index
//! channel_bans      ((name), user_id, doc text)
//! ```
//!
//! `create` is a lightweight transaction (`INSERT ... IF NOT EXISTS`), so of two concurrent
//! creates of one name exactly one wins. The per-owner cap is checked by a read before it and
//! is not atomic with it (two concurrent creates by one owner may both pass; documented on
//! [`ChannelStore`]). `update` is `UPDATE ... IF owner = ?` (a transaction too), so it cannot
//! resurrect a deleted channel or move one to another owner.

use std::sync::Arc;

use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use uuid::Uuid;

use super::ChannelStore;
use crate::channels::{Ban, Channel, ChannelError};
use crate::id::UserId;
use crate::messaging::store::scylla::ScyllaStore;

fn backend(e: impl std::fmt::Display) -> ChannelError {
    ChannelError::Backend(e.to_string())
}

/// The channel store on a [`ScyllaStore`]'s session.
#[derive(Clone)]
pub struct ScyllaChannels {
    store: ScyllaStore,
    q: Arc<Prepared>,
}

impl std::fmt::Debug for ScyllaChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaChannels")
            .field("keyspace", &self.store.keyspace())
            .finish_non_exhaustive()
    }
}

struct Prepared {
    insert: PreparedStatement,
    get: PreparedStatement,
    update: PreparedStatement,
    delete: PreparedStatement,
    own: PreparedStatement,
    disown: PreparedStatement,
    owned: PreparedStatement,
    bans: PreparedStatement,
    put_ban: PreparedStatement,
    get_ban: PreparedStatement,
    lift_ban: PreparedStatement,
    drop_bans: PreparedStatement,
}

/// The tables, in keyspace `ks`.
fn schema(ks: &str) -> [String; 3] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.channels (name text PRIMARY KEY, owner uuid, doc text)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.channels_by_owner (owner uuid, name text, \
             PRIMARY KEY (owner, name))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.channel_bans (name text, user_id uuid, doc text, \
             PRIMARY KEY (name, user_id))"
        ),
    ]
}

impl ScyllaChannels {
    /// Creates the tables if needed and prepares the statements.
    pub async fn new(store: &ScyllaStore) -> Result<Self, ChannelError> {
        let s = store.session();
        let ks = store.keyspace();
        for cql in schema(ks) {
            s.query_unpaged(cql, ()).await.map_err(backend)?;
        }
        let p = |cql: String| async move { s.prepare(cql).await.map_err(backend) };
        let q = Prepared {
            insert: p(format!(
                "INSERT INTO {ks}.channels (name, owner, doc) VALUES (?, ?, ?) IF NOT EXISTS"
            ))
            .await?,
            get: p(format!("SELECT doc FROM {ks}.channels WHERE name = ?")).await?,
            update: p(format!(
                "UPDATE {ks}.channels SET doc = ? WHERE name = ? IF owner = ?"
            ))
            .await?,
            delete: p(format!("DELETE FROM {ks}.channels WHERE name = ?")).await?,
            own: p(format!(
                "INSERT INTO {ks}.channels_by_owner (owner, name) VALUES (?, ?)"
            ))
            .await?,
            disown: p(format!(
                "DELETE FROM {ks}.channels_by_owner WHERE owner = ? AND name = ?"
            ))
            .await?,
            owned: p(format!(
                "SELECT name FROM {ks}.channels_by_owner WHERE owner = ?"
            ))
            .await?,
            bans: p(format!("SELECT doc FROM {ks}.channel_bans WHERE name = ?")).await?,
            put_ban: p(format!(
                "INSERT INTO {ks}.channel_bans (name, user_id, doc) VALUES (?, ?, ?)"
            ))
            .await?,
            get_ban: p(format!(
                "SELECT doc FROM {ks}.channel_bans WHERE name = ? AND user_id = ?"
            ))
            .await?,
            lift_ban: p(format!(
                "DELETE FROM {ks}.channel_bans WHERE name = ? AND user_id = ?"
            ))
            .await?,
            drop_bans: p(format!("DELETE FROM {ks}.channel_bans WHERE name = ?")).await?,
        };
        Ok(Self {
            store: store.clone(),
            q: Arc::new(q),
        })
    }

    fn session(&self) -> &Session {
        self.store.session()
    }

    async fn docs<T: serde::de::DeserializeOwned>(
        &self,
        res: QueryResult,
    ) -> Result<Vec<T>, ChannelError> {
        let rows = res.into_rows_result().map_err(backend)?;
        rows.rows::<(String,)>()
            .map_err(backend)?
            .map(|r| {
                let (doc,) = r.map_err(backend)?;
                serde_json::from_str(&doc).map_err(backend)
            })
            .collect()
    }
}

/// `[applied]` of a lightweight transaction's result.
fn applied(res: QueryResult) -> Result<bool, ChannelError> {
    let res = res.into_rows_result().map_err(backend)?;
    let (i, _) = res
        .column_specs()
        .get_by_name("[applied]")
        .ok_or_else(|| backend("transaction result lacks [applied]"))?;
    let row: scylla::value::Row = res.first_row().map_err(backend)?;
    Ok(matches!(
        row.columns.get(i).cloned().flatten(),
        Some(CqlValue::Boolean(true))
    ))
}

fn uuid(u: UserId) -> Uuid {
    u.0
}

#[async_trait]
impl ChannelStore for ScyllaChannels {
    async fn create(&self, channel: Channel, max_owned: usize) -> Result<(), ChannelError> {
        let owned = self.owned_by(channel.owner).await?.len();
        if owned >= max_owned {
            return Err(ChannelError::TooMany(max_owned));
        }
        let doc = serde_json::to_string(&channel).map_err(backend)?;
        // The owner index first: a crash between the two leaves an index entry pointing at
        // nothing, which `owned_by` skips, never a channel its owner cannot list.
        self.session()
            .execute_unpaged(&self.q.own, (uuid(channel.owner), &channel.name))
            .await
            .map_err(backend)?;
        let res = self
            .session()
            .execute_unpaged(&self.q.insert, (&channel.name, uuid(channel.owner), doc))
            .await
            .map_err(backend)?;
        if applied(res)? {
            return Ok(());
        }
        // Someone else's (or an earlier) channel: undo our index entry unless it is ours.
        let existing = self.get(&channel.name).await?;
        if existing.is_none_or(|c| c.owner != channel.owner) {
            self.session()
                .execute_unpaged(&self.q.disown, (uuid(channel.owner), &channel.name))
                .await
                .map_err(backend)?;
        }
        Err(ChannelError::Taken)
    }

    async fn get(&self, name: &str) -> Result<Option<Channel>, ChannelError> {
        let res = self
            .session()
            .execute_unpaged(&self.q.get, (name,))
            .await
            .map_err(backend)?;
        Ok(self.docs::<Channel>(res).await?.pop())
    }

    async fn owned_by(&self, owner: UserId) -> Result<Vec<Channel>, ChannelError> {
        let res = self
            .session()
            .execute_unpaged(&self.q.owned, (uuid(owner),))
            .await
            .map_err(backend)?;
        let rows = res.into_rows_result().map_err(backend)?;
        let names: Vec<String> = rows
            .rows::<(String,)>()
            .map_err(backend)?
            .map(|r| r.map(|(n,)| n).map_err(backend))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(c) = self.get(&n).await? {
                if c.owner == owner {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    async fn update(&self, channel: Channel) -> Result<(), ChannelError> {
        let doc = serde_json::to_string(&channel).map_err(backend)?;
        let res = self
            .session()
            .execute_unpaged(&self.q.update, (doc, &channel.name, uuid(channel.owner)))
            .await
            .map_err(backend)?;
        if applied(res)? {
            Ok(())
        } else {
            Err(ChannelError::NotFound)
        }
    }

    async fn delete(&self, name: &str) -> Result<bool, ChannelError> {
        let Some(c) = self.get(name).await? else {
            return Ok(false);
        };
        let s = self.session();
        s.execute_unpaged(&self.q.drop_bans, (name,))
            .await
            .map_err(backend)?;
        s.execute_unpaged(&self.q.delete, (name,))
            .await
            .map_err(backend)?;
        s.execute_unpaged(&self.q.disown, (uuid(c.owner), name))
            .await
            .map_err(backend)?;
        Ok(true)
    }

    async fn bans(&self, name: &str) -> Result<Vec<Ban>, ChannelError> {
        let res = self
            .session()
            .execute_unpaged(&self.q.bans, (name,))
            .await
            .map_err(backend)?;
        self.docs(res).await
    }

    async fn put_ban(&self, name: &str, ban: Ban) -> Result<(), ChannelError> {
        let doc = serde_json::to_string(&ban).map_err(backend)?;
        self.session()
            .execute_unpaged(&self.q.put_ban, (name, uuid(ban.user), doc))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn lift_ban(&self, name: &str, user: UserId) -> Result<bool, ChannelError> {
        let res = self
            .session()
            .execute_unpaged(&self.q.get_ban, (name, uuid(user)))
            .await
            .map_err(backend)?;
        if self.docs::<Ban>(res).await?.is_empty() {
            return Ok(false);
        }
        self.session()
            .execute_unpaged(&self.q.lift_ban, (name, uuid(user)))
            .await
            .map_err(backend)?;
        Ok(true)
    }
}
