//! Chat on ScyllaDB, in the message store's keyspace and session.
//!
//! ```text
//! chat_messages ((room), id bigint DESC, doc text)          -- rows with TTL ttl_secs
//! chat_claims   ((room, sender, client_id), id bigint, doc text) -- rows with TTL ttl_secs
//! chat_last     ((room, user_id), at bigint)                 -- rows with TTL = the slow interval
//! ```
//!
//! Retention: reads serve a room's newest `keep` messages (`LIMIT keep` on the newest-first
//! clustering order); rows older than that are not served and expire with their TTL
//! ([`DEFAULT_TTL_SECS`], 24 h), which bounds a room's partition to one TTL of its messages.
//! So on ScyllaDB a room's history is its newest `keep` messages of the last `ttl_secs`.
//!
//! Slow mode is a lightweight transaction per `(room, user)`: `INSERT ... IF NOT EXISTS`, and
//! when a record exists and the interval has passed, `UPDATE ... IF at = <the value read>`. Of
//! two concurrent posts by one user (through any instances) one wins the transaction; the other
//! is refused as slow mode. Idempotency is `INSERT ... IF NOT EXISTS` on `chat_claims`, claimed
//! after the slow-mode check (so a refused post leaves no claim); a lost claim answers with the
//! message of the winner. The claim row carries the message itself: if its writer died between
//! claim and insert, the next post with that client id (a retry, or a concurrent loser) writes
//! the claimed message, so a client id never stays stuck and an acknowledged message is never
//! lost. (An earlier version's `chat_idem` held only the id, and such a retry was refused for
//! the claim's whole TTL; that table is no longer used.)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use serde::{Deserialize, Serialize};

use super::{ChatPost, ChatStore, Posted, READ_MAX};
use crate::chat::rooms::ChatMessage;
use crate::id::MessageId;
use crate::messaging::store::scylla::{backend, not_applied, written_within, ScyllaStore};
use crate::messaging::store::StoreError;

/// How long chat rows live, seconds (24 h).
pub const DEFAULT_TTL_SECS: u64 = 24 * 3600;

/// What `chat_messages.doc` holds.
#[derive(Serialize, Deserialize)]
struct Stored {
    message: ChatMessage,
}

/// The chat store on a [`ScyllaStore`]'s session.
#[derive(Clone)]
pub struct ScyllaChat {
    store: ScyllaStore,
    ttl: i32,
    q: Arc<Prepared>,
}

impl std::fmt::Debug for ScyllaChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaChat")
            .field("keyspace", &self.store.keyspace())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

struct Prepared {
    insert: PreparedStatement,
    get: PreparedStatement,
    newest: PreparedStatement,
    newer: PreparedStatement,
    claim: PreparedStatement,
    idem: PreparedStatement,
    first_post: PreparedStatement,
    next_post: PreparedStatement,
}

/// The tables, in keyspace `ks`.
fn schema(ks: &str) -> [String; 3] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.chat_messages (room text, id bigint, doc text, \
             PRIMARY KEY (room, id)) WITH CLUSTERING ORDER BY (id DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.chat_claims (room text, sender uuid, \
             client_id text, id bigint, doc text, PRIMARY KEY ((room, sender, client_id)))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.chat_last (room text, user_id uuid, at bigint, \
             PRIMARY KEY ((room, user_id)))"
        ),
    ]
}

fn big(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| backend("value out of range for bigint"))
}

fn ttl_of(ms: u64) -> i32 {
    i32::try_from(ms.div_ceil(1000).max(1)).unwrap_or(i32::MAX)
}

/// How long a post that lost its client id's claim waits for the winner's message before
/// writing the claimed message itself.
const CLAIM_WAIT: Duration = Duration::from_secs(2);

impl ScyllaChat {
    /// Creates the tables if needed and prepares the statements; rows live
    /// [`DEFAULT_TTL_SECS`].
    pub async fn new(store: &ScyllaStore) -> Result<Self, StoreError> {
        Self::with_ttl(store, DEFAULT_TTL_SECS).await
    }

    /// [`new`](Self::new) with rows living `ttl_secs` (at least 1 s).
    pub async fn with_ttl(store: &ScyllaStore, ttl_secs: u64) -> Result<Self, StoreError> {
        let s = store.session();
        let ks = store.keyspace();
        for cql in schema(ks) {
            s.query_unpaged(cql, ()).await.map_err(backend)?;
        }
        let p = |cql: String| async move { s.prepare(cql).await.map_err(backend) };
        let q = Prepared {
            insert: p(format!(
                "INSERT INTO {ks}.chat_messages (room, id, doc) VALUES (?, ?, ?) USING TTL ?"
            ))
            .await?,
            get: p(format!(
                "SELECT doc FROM {ks}.chat_messages WHERE room = ? AND id = ?"
            ))
            .await?,
            newest: p(format!(
                "SELECT doc FROM {ks}.chat_messages WHERE room = ? LIMIT ?"
            ))
            .await?,
            newer: p(format!(
                "SELECT doc FROM {ks}.chat_messages WHERE room = ? AND id > ? LIMIT ?"
            ))
            .await?,
            claim: p(format!(
                "INSERT INTO {ks}.chat_claims (room, sender, client_id, id, doc) \
                 VALUES (?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
            ))
            .await?,
            idem: p(format!(
                "SELECT id, doc FROM {ks}.chat_claims \
                 WHERE room = ? AND sender = ? AND client_id = ?"
            ))
            .await?,
            first_post: p(format!(
                "INSERT INTO {ks}.chat_last (room, user_id, at) VALUES (?, ?, ?) \
                 IF NOT EXISTS USING TTL ?"
            ))
            .await?,
            next_post: p(format!(
                "UPDATE {ks}.chat_last USING TTL ? SET at = ? WHERE room = ? AND user_id = ? \
                 IF at = ?"
            ))
            .await?,
        };
        Ok(Self {
            store: store.clone(),
            ttl: ttl_of(ttl_secs.saturating_mul(1000)),
            q: Arc::new(q),
        })
    }

    fn session(&self) -> &Session {
        self.store.session()
    }

    fn docs(res: QueryResult) -> Result<Vec<ChatMessage>, StoreError> {
        let rows = res.into_rows_result().map_err(backend)?;
        rows.rows::<(String,)>()
            .map_err(backend)?
            .map(|r| {
                let (doc,) = r.map_err(backend)?;
                serde_json::from_str::<Stored>(&doc)
                    .map(|s| s.message)
                    .map_err(backend)
            })
            .collect()
    }

    async fn message(&self, room: &str, id: i64) -> Result<Option<ChatMessage>, StoreError> {
        let res = self
            .session()
            .execute_unpaged(&self.q.get, (room, id))
            .await
            .map_err(backend)?;
        Ok(Self::docs(res)?.pop())
    }

    /// The earlier message with this client id, if one was claimed (and its claim has not
    /// expired): the stored message, or the claimed one, completed now ([`Self::existing`]).
    async fn earlier(
        &self,
        room: &str,
        from: uuid::Uuid,
        client_id: &str,
    ) -> Result<Option<ChatMessage>, StoreError> {
        let res = self
            .session()
            .execute_unpaged(&self.q.idem, (room, from, client_id))
            .await
            .map_err(backend)?;
        let rows = res.into_rows_result().map_err(backend)?;
        match rows.maybe_first_row::<(i64, String)>().map_err(backend)? {
            Some((id, doc)) => self.existing(room, id, &doc).await.map(Some),
            None => Ok(None),
        }
    }

    /// The message a claim row names: the stored one, once its writer (maybe still in flight
    /// on another instance) wrote it; if it does not appear within [`CLAIM_WAIT`], its writer
    /// died between claim and insert, and the claimed message (`doc`: the same id and content)
    /// is written now.
    async fn existing(&self, room: &str, id: i64, doc: &str) -> Result<ChatMessage, StoreError> {
        if let Some(m) = written_within(CLAIM_WAIT, || self.message(room, id)).await? {
            return Ok(m);
        }
        let claimed = serde_json::from_str::<Stored>(doc)
            .map_err(backend)?
            .message;
        tracing::warn!(%room, id = %claimed.id, "completing a chat message whose first writer did not finish");
        self.session()
            .execute_unpaged(&self.q.insert, (room, id, doc, self.ttl))
            .await
            .map_err(backend)?;
        Ok(claimed)
    }

    /// Slow mode's check-and-record: `None` if `at` may post, else the wait in ms.
    async fn admit(
        &self,
        room: &str,
        user: uuid::Uuid,
        at: u64,
        slow_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let ttl = ttl_of(slow_ms);
        let res = self
            .session()
            .execute_unpaged(&self.q.first_post, (room, user, big(at)?, ttl))
            .await
            .map_err(backend)?;
        let Some(found) = not_applied(res, &["at"])? else {
            return Ok(None);
        };
        let Some(CqlValue::BigInt(old)) = found[0] else {
            return Err(backend("slow-mode transaction lacks the existing time"));
        };
        let next = u64::try_from(old).unwrap_or(0).saturating_add(slow_ms);
        if at < next {
            return Ok(Some((next - at).min(slow_ms)));
        }
        let res = self
            .session()
            .execute_unpaged(&self.q.next_post, (ttl, big(at)?, room, user, old))
            .await
            .map_err(backend)?;
        // Lost to a concurrent post of the same user: that one took the slot.
        Ok(not_applied(res, &[])?.map(|_| slow_ms))
    }
}

#[async_trait]
impl ChatStore for ScyllaChat {
    async fn post(&self, post: ChatPost) -> Result<Posted, StoreError> {
        let ChatPost {
            message,
            client_id,
            slow_ms,
            keep: _,
        } = post;
        let room = message.room.as_str();
        let from = message.from.0;
        if let Some(cid) = &client_id {
            if let Some(m) = self.earlier(room, from, cid).await? {
                return Ok(Posted::Duplicate(m));
            }
        }
        if slow_ms > 0 {
            if let Some(wait) = self.admit(room, from, message.at, slow_ms).await? {
                return Ok(Posted::SlowMode(wait));
            }
        }
        let id = big(message.id.0)?;
        let doc = serde_json::to_string(&Stored {
            message: message.clone(),
        })
        .map_err(backend)?;
        if let Some(cid) = &client_id {
            let res = self
                .session()
                .execute_unpaged(&self.q.claim, (room, from, cid, id, &doc, self.ttl))
                .await
                .map_err(backend)?;
            if let Some(found) = not_applied(res, &["id", "doc"])? {
                let (Some(CqlValue::BigInt(first)), Some(CqlValue::Text(first_doc))) =
                    (&found[0], &found[1])
                else {
                    return Err(backend("idempotency claim result lacks its id or message"));
                };
                let m = self.existing(room, *first, first_doc).await?;
                return Ok(Posted::Duplicate(m));
            }
        }
        self.session()
            .execute_unpaged(&self.q.insert, (room, id, doc, self.ttl))
            .await
            .map_err(backend)?;
        Ok(Posted::Created(message))
    }

    async fn recent(
        &self,
        room: &str,
        limit: usize,
        keep: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let take = limit.clamp(1, READ_MAX).min(keep.max(1));
        let take = i32::try_from(take).unwrap_or(i32::MAX);
        let res = self
            .session()
            .execute_unpaged(&self.q.newest, (room, take))
            .await
            .map_err(backend)?;
        let mut out = Self::docs(res)?;
        out.reverse();
        Ok(out)
    }

    async fn since(
        &self,
        room: &str,
        after: MessageId,
        limit: usize,
        keep: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        // The newest `keep` with id > after are exactly the history's messages after `after`.
        let window = i32::try_from(keep.max(1)).unwrap_or(i32::MAX);
        let res = self
            .session()
            .execute_unpaged(&self.q.newer, (room, big(after.0)?, window))
            .await
            .map_err(backend)?;
        let mut out = Self::docs(res)?;
        out.reverse();
        out.truncate(limit.clamp(1, READ_MAX));
        Ok(out)
    }

    async fn forget_posts_before(&self, _before_ms: u64) -> Result<(), StoreError> {
        // Slow-mode rows expire by their TTL (the interval they enforce).
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds_and_saturate() {
        assert_eq!(ttl_of(0), 1, "a TTL of 0 would mean no expiry");
        assert_eq!(ttl_of(1), 1);
        assert_eq!(ttl_of(1000), 1);
        assert_eq!(ttl_of(1001), 2);
        assert_eq!(ttl_of(60_000), 60);
        assert_eq!(ttl_of(u64::MAX), i32::MAX);
    }

    #[test]
    fn ids_and_times_fit_bigint_or_are_refused() {
        assert_eq!(big(0).unwrap(), 0);
        assert_eq!(big(i64::MAX as u64).unwrap(), i64::MAX);
        assert!(big(u64::MAX).is_err());
    }

    #[test]
    fn tables_cluster_newest_first_and_key_lwt_rows_alone() {
        let [messages, idem, last] = schema("ks");
        assert!(messages.contains("PRIMARY KEY (room, id)"), "{messages}");
        assert!(
            messages.contains("CLUSTERING ORDER BY (id DESC)"),
            "{messages}"
        );
        assert!(
            idem.contains("PRIMARY KEY ((room, sender, client_id))"),
            "{idem}"
        );
        assert!(last.contains("PRIMARY KEY ((room, user_id))"), "{last}");
        for t in [&messages, &idem, &last] {
            assert!(t.starts_with("CREATE TABLE IF NOT EXISTS ks."), "{t}");
        }
    }
}
