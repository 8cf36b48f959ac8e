//! The scale-out message store: ScyllaDB (or Cassandra-compatible) through the `scylla` driver.
//!
//! Same semantics as the [embedded store](super::embedded), checked by the same
//! [conformance suite](super::conformance).
//!
//! # Schema
//!
//! Discord-style: a conversation's messages are split into time buckets so no partition grows
//! without bound. `bucket` = [`MessageId::unix_ms`] / [`MESSAGE_BUCKET_MS`] (10 days);
//! `conversation` is the 32-byte [`ConversationId::to_bytes`]; ids are `bigint` (Snowflake ids
//! stay below 2^63 until the 2090s; larger ids are refused, larger bounds clamped).
//!
//! | table                  | primary key                              | other columns              |
//! | ---------------------- | ---------------------------------------- | -------------------------- |
//! | `messages`             | ((conversation, bucket), id DESC)        | sender, recipient, content, client_id, edited_at, deleted |
//! | `conversation_buckets` | (conversation, bucket DESC)              | — (the non-empty buckets)  |
//! | `messages_by_id`       | (id)                                     | conversation, bucket       |
//! | `inbox`                | ((user_id, bucket), id)                  | conversation (both participants) |
//! | `inbox_buckets`        | (user_id, bucket)                        | —                          |
//! | `idempotency`          | ((sender, client_id))                    | id, recipient, content     |
//! | `conversations`        | (user_id, peer_id)                       | last_id                    |
//! | `read_markers`         | (user_id, conversation)                  | up_to                      |
//! | `outbox`               | ((node, bucket), seq)                    | event (JSON)               |
//! | `outbox_buckets`       | (node, bucket)                           | —                          |
//! | `outbox_acked`         | (node)                                   | acked                      |
//!
//! Paging walks buckets, but only non-empty ones: every write that adds a row to a bucketed
//! partition also upserts the bucket into its `*_buckets` index in the same batch. History
//! lists `conversation_buckets` in `[bucket(after), bucket(before)]` newest first and reads
//! bucket after bucket until the page is full, so it stops at the conversation's first bucket
//! without scanning empty time. `since` does the same forward over `inbox_buckets`.
//!
//! # Writes and durability
//!
//! Each change writes all its rows and its outbox record in ONE `LOGGED BATCH` (atomic across
//! partitions through ScyllaDB's batchlog) at [`ScyllaOptions::consistency`] (`QUORUM` by
//! default, or `LOCAL_QUORUM`). A call returns `Ok` once a quorum of replicas acknowledged the
//! batch. Durability is ScyllaDB's: its commitlog and replication, not an fsync made here. With
//! the default `commitlog_sync: periodic` an acknowledged write survives `kill -9` of zerocast
//! and of any ScyllaDB process, and the loss of a minority of replicas; to also survive power
//! loss of every replica at once, run ScyllaDB with `commitlog_sync: batch` (advised for a
//! single-node, RF 1 deployment). A [`StoreError::Backend`] means the change may or may not
//! have been applied (retrying an append with the same client id is safe).
//!
//! Statements are prepared once at [`ScyllaStore::connect`]; requests only bind values. Every
//! request has a bounded client-side timeout ([`ScyllaOptions::request_timeout`]).
//!
//! - **Idempotency**: `INSERT INTO idempotency ... IF NOT EXISTS` (a lightweight transaction,
//!   serial consistency `SERIAL`/`LOCAL_SERIAL`) claims `(from, client_id)` before the batch, so
//!   concurrent duplicates create exactly one message. The claim row carries the message's id,
//!   recipient and content: a loser waits (up to the request timeout) for the winner's batch and
//!   returns the stored message; if the winner died between claim and batch, the loser writes
//!   the claimed message itself (same id and content), so a client id can never stay stuck.
//!   LWT is not available on tablets keyspaces before ScyllaDB 2025.4, so the keyspace is
//!   created with tablets disabled ([`ScyllaOptions::disable_tablets`]).
//! - **"Newest wins" without read-before-write**: `conversations.last_id`,
//!   `read_markers.up_to` and `outbox_acked.acked` are written `USING TIMESTAMP` the id's own
//!   time (microseconds of its millisecond); on a tie ScyllaDB keeps the larger value, which for
//!   a positive `bigint` is the larger id. So concurrent writers converge on the maximum and a
//!   marker never moves back. `mark_read` reads the marker first to skip no-ops (no event).
//! - **Edit vs delete**: an edit does not touch `deleted`, and a tombstone is read back with
//!   empty content, so a racing edit cannot resurrect a deleted message.
//! - **Uniqueness of ids** is the caller's (one [`crate::id::IdGenerator`] per node), as with the
//!   embedded store; this backend does not spend a transaction to check it.
//!
//! # Outbox
//!
//! Sequence numbers are Snowflake ids made by the handle's own generator for its node: unique
//! and strictly increasing per node, time-ordered, so they keep increasing across restarts
//! (assuming one process per node id and a wall clock that does not jump back across a
//! restart) with no stored counter. Records are partitioned by `(node, minute)`
//! ([`OUTBOX_BUCKET_MS`]); `outbox_acked` keeps the acknowledged high-water mark, and an ack
//! drops the whole partitions below the acked minute (partition tombstones, not one per row).
//!
//! Concurrent writers finish out of seq order, so a reader could see seq 11 before seq 10
//! lands and acknowledge past it. `outbox_read` therefore returns only records below the
//! lowest seq still in flight in this process (the relay of a node runs in the process that
//! writes its outbox). A write that failed or was cancelled may still be applied later by
//! ScyllaDB's batchlog, so its seq keeps holding the relay back for [`OUTBOX_HOLD_MS`]:
//! events are delayed, not lost.
//!
//! # Limits
//!
//! - `unread` counts at most [`MAX_UNREAD_SCAN`] messages after the marker per conversation;
//!   `conversations` and `unread` read every conversation of the user (as the embedded store).
//! - `history` and `conversations` clamp `limit` to 1..=100, `since` to 1..=1000,
//!   `outbox_read` to 0..=10_000.
//! - Reads run at the same consistency as writes (`QUORUM` reads see `QUORUM` writes). A batch
//!   is atomic but not isolated: a reader may briefly see an index row before the message row;
//!   `since` then stops before it (the client asks again) and `conversations` falls back to the
//!   conversation's newest message.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{stream, StreamExt, TryStreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::frame::response::result::ColumnType;
use scylla::response::query_result::QueryResult;
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::{CellWriter, WrittenCellProof};
use scylla::serialize::SerializationError;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency, Statement};
use scylla::value::{CqlValue, Row};
use uuid::Uuid;

use super::{Appended, MessageStore, Outbox, StoreError};
use crate::id::UserId;
use crate::id::{IdGenerator, MessageId};
use crate::messaging::model::{
    ConversationId, ConversationSummary, Event, Message, NewMessage, Page, Unread, UnreadIn,
};

/// Width of a `messages` / `inbox` time bucket: 10 days.
pub const MESSAGE_BUCKET_MS: u64 = 10 * 24 * 3600 * 1000;
/// Width of an `outbox` partition: one minute.
pub const OUTBOX_BUCKET_MS: u64 = 60 * 1000;
/// `unread` scans at most this many messages after the read marker in each conversation.
pub const MAX_UNREAD_SCAN: usize = 10_000;
/// How long the seq of a write with unknown outcome holds back `outbox_read` (see module docs).
pub const OUTBOX_HOLD_MS: u64 = 120_000;
/// Keyspace used when neither the URI nor the caller names one.
pub const DEFAULT_KEYSPACE: &str = "zerocast";
const DEFAULT_PORT: u16 = 9042;
const HISTORY_MAX: usize = 100;
const SINCE_MAX: usize = 1000;
const OUTBOX_READ_MAX: usize = 10_000;
/// Reads issued at once by `conversations`, `unread` and `since`.
const FANOUT: usize = 16;
/// Client-side timeout of schema statements (schema agreement can take seconds).
const DDL_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn backend(e: impl fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// What `read` finds once it finds something, asked again with a backoff (5 ms doubling to
/// 200 ms) for at most `wait`; `None` if it never did: how a post that lost an idempotency
/// claim waits for the winner's write before completing it itself.
pub(crate) async fn written_within<T, F, Fut>(
    wait: Duration,
    mut read: F,
) -> Result<Option<T>, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, StoreError>>,
{
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = read().await? {
            return Ok(Some(v));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// The row a lightweight transaction found in its way: `None` when it applied, else the values
/// of its columns `cols` (ScyllaDB returns `[applied]` and the existing row's columns, found by
/// name; a column it did not return is `None`). Shared by every ScyllaDB store here.
pub(crate) fn not_applied(
    res: QueryResult,
    cols: &[&str],
) -> Result<Option<Vec<Option<CqlValue>>>, StoreError> {
    let res = res.into_rows_result().map_err(backend)?;
    let idx = |name: &str| res.column_specs().get_by_name(name).map(|(i, _)| i);
    let applied = idx("[applied]").ok_or_else(|| backend("transaction result lacks [applied]"))?;
    let row: Row = res.first_row().map_err(backend)?;
    let get = |i: usize| row.columns.get(i).cloned().flatten();
    if matches!(get(applied), Some(CqlValue::Boolean(true))) {
        return Ok(None);
    }
    Ok(Some(cols.iter().map(|c| idx(c).and_then(get)).collect()))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("corrupt store: {what}"))
}

// ---------------------------------------------------------------------------------------------
// Connection settings
// ---------------------------------------------------------------------------------------------

/// A parsed `ZEROCAST_SCYLLA_URI`: `host[:port][,host[:port]...]` or
/// `scylla://[user:password@]host[:port][,...][/keyspace]`. The port defaults to 9042.
#[derive(Clone, PartialEq, Eq)]
pub struct ScyllaUri {
    /// Contact points, each `host:port` (IPv6 as `[addr]:port`).
    pub nodes: Vec<String>,
    /// Keyspace named by the URI path, if any (validated, lower-cased).
    pub keyspace: Option<String>,
    /// `user:password` of the URI, if any.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for ScyllaUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaUri")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

impl ScyllaUri {
    /// Parses `uri`; see the type docs.
    pub fn parse(uri: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Backend(format!("bad ScyllaDB URI: {why}"));
        let uri = uri.trim();
        let rest = match uri.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("scylla") => rest,
            Some((scheme, _)) => return Err(bad(&format!("unknown scheme {scheme:?}"))),
            None => uri,
        };
        if rest.contains(['?', '#']) {
            return Err(bad("query strings are not supported"));
        }
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                if user.is_empty() {
                    return Err(bad("empty user name"));
                }
                (Some((user.to_owned(), pass.to_owned())), hosts)
            }
            None => (None, authority),
        };
        let nodes = hosts
            .split(',')
            .map(|h| normalize_host(h.trim()).ok_or_else(|| bad(&format!("bad host {h:?}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let keyspace = match path.map(|p| p.trim_end_matches('/')) {
            None | Some("") => None,
            Some(ks) => Some(validate_keyspace(ks)?),
        };
        Ok(Self {
            nodes,
            keyspace,
            credentials,
        })
    }
}

/// `host`, `host:port`, `v4:port`, `[v6]`, `[v6]:port` or a bare IPv6 address, as `host:port`.
fn normalize_host(h: &str) -> Option<String> {
    let ok_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    let ok_port = |p: &str| p.parse::<u16>().is_ok_and(|p| p != 0);
    if let Some(v6) = h.strip_prefix('[') {
        let (addr, tail) = v6.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        return match tail {
            "" => Some(format!("[{addr}]:{DEFAULT_PORT}")),
            t => t
                .strip_prefix(':')
                .filter(|p| ok_port(p))
                .map(|p| format!("[{addr}]:{p}")),
        };
    }
    if h.matches(':').count() > 1 {
        return h
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| format!("[{a}]:{DEFAULT_PORT}"));
    }
    match h.split_once(':') {
        Some((host, port)) if ok_name(host) && ok_port(port) => Some(format!("{host}:{port}")),
        Some(_) => None,
        None if ok_name(h) => Some(format!("{h}:{DEFAULT_PORT}")),
        None => None,
    }
}

/// A keyspace name CQL accepts unquoted: a letter, then letters, digits, `_`; at most 48.
/// Lower-cased, as CQL folds unquoted names. It is spliced into schema and statement text (at
/// connect time only), so nothing else may pass.
fn validate_keyspace(ks: &str) -> Result<String, StoreError> {
    let mut chars = ks.chars();
    let valid = ks.len() <= 48
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(ks.to_ascii_lowercase())
    } else {
        Err(StoreError::Backend(format!(
            "bad keyspace name {ks:?}: letters, digits and _ (starting with a letter), at most 48"
        )))
    }
}

/// Keyspace replication, used only when the keyspace is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy` with this replication factor (one datacenter).
    Simple {
        /// Copies of each row.
        replication_factor: u32,
    },
    /// `NetworkTopologyStrategy`: `(datacenter, replication factor)` pairs.
    NetworkTopology(Vec<(String, u32)>),
}

impl Default for Replication {
    fn default() -> Self {
        Self::Simple {
            replication_factor: 1,
        }
    }
}

impl Replication {
    /// `"3"` (SimpleStrategy, RF 3) or `"dc1:3,dc2:3"` (NetworkTopologyStrategy).
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Backend(format!("bad replication {s:?}: want 3 or dc1:3,dc2:3"));
        let rf = |n: &str| n.trim().parse::<u32>().ok().filter(|n| *n > 0);
        let s = s.trim();
        if !s.contains(':') {
            return rf(s)
                .map(|replication_factor| Self::Simple { replication_factor })
                .ok_or_else(bad);
        }
        let dcs = s
            .split(',')
            .map(|p| {
                let (dc, n) = p.split_once(':').ok_or_else(bad)?;
                let dc = dc.trim();
                let dc_ok = !dc.is_empty()
                    && dc
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                match (dc_ok, rf(n)) {
                    (true, Some(n)) => Ok((dc.to_owned(), n)),
                    _ => Err(bad()),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::NetworkTopology(dcs))
    }

    /// The CQL map literal.
    fn cql(&self) -> String {
        match self {
            Self::Simple { replication_factor } => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}")
            }
            Self::NetworkTopology(dcs) => {
                let mut s = String::from("{'class': 'NetworkTopologyStrategy'");
                for (dc, n) in dcs {
                    // `dc` was checked by `parse`; drop anything a hand-built value adds.
                    let dc: String = dc
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                        .collect();
                    s.push_str(&format!(", '{dc}': {n}"));
                }
                s.push('}');
                s
            }
        }
    }
}

/// Tunables of [`ScyllaStore::connect_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScyllaOptions {
    /// Replication of the keyspace when it is created (default SimpleStrategy, RF 1).
    pub replication: Replication,
    /// Consistency of every read and write: `Quorum` (default) or `LocalQuorum` (multi-DC).
    pub consistency: Consistency,
    /// Serial consistency of the idempotency transaction: `Serial` or `LocalSerial`.
    pub serial_consistency: SerialConsistency,
    /// Client-side timeout of each request (default 5 s).
    pub request_timeout: Duration,
    /// Timeout of opening a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Create the keyspace with `tablets = {'enabled': false}` (default true: lightweight
    /// transactions need vnodes before ScyllaDB 2025.4). Retried without the option for
    /// servers that do not know it.
    pub disable_tablets: bool,
}

impl Default for ScyllaOptions {
    fn default() -> Self {
        Self {
            replication: Replication::default(),
            consistency: Consistency::Quorum,
            serial_consistency: SerialConsistency::Serial,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            disable_tablets: true,
        }
    }
}

impl ScyllaOptions {
    /// Defaults, then the process environment; see [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Self, StoreError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Defaults, then `ZEROCAST_SCYLLA_REPLICATION` (`3` or `dc1:3,dc2:3`) and
    /// `ZEROCAST_SCYLLA_CONSISTENCY` (`quorum` or `local_quorum`) read through `get`, when set.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, StoreError> {
        let mut o = Self::default();
        if let Some(r) = get("ZEROCAST_SCYLLA_REPLICATION") {
            o.replication = Replication::parse(&r)?;
        }
        if let Some(c) = get("ZEROCAST_SCYLLA_CONSISTENCY") {
            o = o.with_consistency(&c)?;
        }
        Ok(o)
    }

    /// Sets `consistency` (and the matching serial consistency) from `quorum`,
    /// `local_quorum`, `each_quorum` or `all`.
    pub fn with_consistency(mut self, name: &str) -> Result<Self, StoreError> {
        let (c, s) = match name.trim().to_ascii_lowercase().as_str() {
            "quorum" => (Consistency::Quorum, SerialConsistency::Serial),
            "local_quorum" => (Consistency::LocalQuorum, SerialConsistency::LocalSerial),
            "each_quorum" => (Consistency::EachQuorum, SerialConsistency::Serial),
            "all" => (Consistency::All, SerialConsistency::Serial),
            _ => {
                return Err(StoreError::Backend(format!(
                    "bad consistency {name:?}: quorum, local_quorum, each_quorum or all"
                )))
            }
        };
        self.consistency = c;
        self.serial_consistency = s;
        Ok(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and buckets
// ---------------------------------------------------------------------------------------------

/// A u64 id as a CQL `bigint`, if it fits.
fn to_i64(v: u64) -> Option<i64> {
    i64::try_from(v).ok()
}

/// A stored `bigint` id back to u64.
fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt("negative id"))
}

/// The `messages` / `inbox` bucket of an id.
fn message_bucket(id: u64) -> i32 {
    let b = MessageId(id).unix_ms() / MESSAGE_BUCKET_MS;
    i32::try_from(b).unwrap_or(i32::MAX)
}

/// The `outbox` partition of a seq.
fn outbox_bucket(seq: u64) -> i32 {
    let b = MessageId(seq).unix_ms() / OUTBOX_BUCKET_MS;
    i32::try_from(b).unwrap_or(i32::MAX)
}

/// Write timestamp (µs) of a "newest wins" cell holding `id`: the id's millisecond.
fn cell_ts(id: u64) -> i64 {
    i64::try_from(MessageId(id).unix_ms().saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Inclusive id range `(lo, hi)` as `bigint`s for exclusive `after`/`before`; `None` if empty.
fn id_range(after: Option<u64>, before: Option<u64>) -> Option<(i64, i64)> {
    let lo = match after {
        Some(a) => a.checked_add(1)?,
        None => 0,
    };
    let hi = match before {
        Some(b) => b.checked_sub(1)?,
        None => u64::MAX,
    };
    let lo = to_i64(lo)?;
    let hi = to_i64(hi).unwrap_or(i64::MAX);
    (lo <= hi).then_some((lo, hi))
}

/// `bigint` id range to bucket range.
fn bucket_range(lo: i64, hi: i64, bucket: fn(u64) -> i32) -> (i32, i32) {
    // Both are non-negative (from `id_range`).
    (bucket(lo.unsigned_abs()), bucket(hi.unsigned_abs()))
}

// ---------------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------------

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Int(i32),
    BigInt(i64),
    Blob(Vec<u8>),
    Text(String),
    Uuid(Uuid),
    /// Leaves the column alone (no tombstone, unlike null).
    Unset,
}

impl SerializeValue for V {
    fn serialize<'b>(
        &self,
        typ: &ColumnType,
        writer: CellWriter<'b>,
    ) -> Result<WrittenCellProof<'b>, SerializationError> {
        match self {
            Self::Int(v) => v.serialize(typ, writer),
            Self::BigInt(v) => v.serialize(typ, writer),
            Self::Blob(v) => v.serialize(typ, writer),
            Self::Text(v) => v.serialize(typ, writer),
            Self::Uuid(v) => v.serialize(typ, writer),
            Self::Unset => scylla::value::Unset.serialize(typ, writer),
        }
    }
}

fn conv_v(c: &ConversationId) -> V {
    V::Blob(c.to_bytes().to_vec())
}

fn user_v(u: UserId) -> V {
    V::Uuid(u.0)
}

/// Ids reaching a statement were checked by the caller; clamp defensively.
fn id_v(id: u64) -> V {
    V::BigInt(to_i64(id).unwrap_or(i64::MAX))
}

fn limit_v(n: usize) -> V {
    V::Int(i32::try_from(n).unwrap_or(i32::MAX))
}

/// Columns of a message row, in the order [`MsgRow`] reads them.
const MSG_COLS: &str = "id, sender, recipient, content, client_id, edited_at, deleted";
type MsgRow = (
    i64,
    Uuid,
    Uuid,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<bool>,
);

/// Every statement the store prepares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Q {
    InsertMessage,
    EditMessage,
    TombstoneMessage,
    InsertById,
    InsertInbox,
    InsertInboxBucket,
    InsertConvBucket,
    UpsertConversation,
    UpsertReadMarker,
    InsertOutbox,
    InsertOutboxBucket,
    ClaimIdempotency,
    SelectById,
    SelectMessage,
    SelectHistory,
    SelectConvBuckets,
    SelectUnreadScan,
    SelectInboxBuckets,
    SelectInbox,
    SelectConversations,
    SelectReadMarker,
    SelectOutboxAcked,
    SelectOutboxBuckets,
    SelectOutbox,
    UpsertOutboxAcked,
    DeleteOutboxPartition,
    DeleteOutboxBucketIndex,
}

impl Q {
    const ALL: [Q; 27] = [
        Q::InsertMessage,
        Q::EditMessage,
        Q::TombstoneMessage,
        Q::InsertById,
        Q::InsertInbox,
        Q::InsertInboxBucket,
        Q::InsertConvBucket,
        Q::UpsertConversation,
        Q::UpsertReadMarker,
        Q::InsertOutbox,
        Q::InsertOutboxBucket,
        Q::ClaimIdempotency,
        Q::SelectById,
        Q::SelectMessage,
        Q::SelectHistory,
        Q::SelectConvBuckets,
        Q::SelectUnreadScan,
        Q::SelectInboxBuckets,
        Q::SelectInbox,
        Q::SelectConversations,
        Q::SelectReadMarker,
        Q::SelectOutboxAcked,
        Q::SelectOutboxBuckets,
        Q::SelectOutbox,
        Q::UpsertOutboxAcked,
        Q::DeleteOutboxPartition,
        Q::DeleteOutboxBucketIndex,
    ];

    /// The statement text for keyspace `ks` (validated), built once at connect.
    fn cql(self, ks: &str) -> String {
        match self {
            Q::InsertMessage => format!(
                "INSERT INTO {ks}.messages (conversation, bucket, id, sender, recipient, content, \
                 client_id, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, false)"
            ),
            Q::EditMessage => format!(
                "UPDATE {ks}.messages SET content = ?, edited_at = ? \
                 WHERE conversation = ? AND bucket = ? AND id = ?"
            ),
            Q::TombstoneMessage => format!(
                "UPDATE {ks}.messages SET content = '', deleted = true, edited_at = ? \
                 WHERE conversation = ? AND bucket = ? AND id = ?"
            ),
            Q::InsertById => format!(
                "INSERT INTO {ks}.messages_by_id (id, conversation, bucket) VALUES (?, ?, ?)"
            ),
            Q::InsertInbox => format!(
                "INSERT INTO {ks}.inbox (user_id, bucket, id, conversation) VALUES (?, ?, ?, ?)"
            ),
            Q::InsertInboxBucket => {
                format!("INSERT INTO {ks}.inbox_buckets (user_id, bucket) VALUES (?, ?)")
            }
            Q::InsertConvBucket => format!(
                "INSERT INTO {ks}.conversation_buckets (conversation, bucket) VALUES (?, ?)"
            ),
            Q::UpsertConversation => format!(
                "UPDATE {ks}.conversations USING TIMESTAMP ? SET last_id = ? \
                 WHERE user_id = ? AND peer_id = ?"
            ),
            Q::UpsertReadMarker => format!(
                "UPDATE {ks}.read_markers USING TIMESTAMP ? SET up_to = ? \
                 WHERE user_id = ? AND conversation = ?"
            ),
            Q::InsertOutbox => {
                format!("INSERT INTO {ks}.outbox (node, bucket, seq, event) VALUES (?, ?, ?, ?)")
            }
            Q::InsertOutboxBucket => {
                format!("INSERT INTO {ks}.outbox_buckets (node, bucket) VALUES (?, ?)")
            }
            Q::ClaimIdempotency => format!(
                "INSERT INTO {ks}.idempotency (sender, client_id, id, recipient, content) \
                 VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"
            ),
            Q::SelectById => {
                format!("SELECT conversation, bucket FROM {ks}.messages_by_id WHERE id = ?")
            }
            Q::SelectMessage => format!(
                "SELECT {MSG_COLS} FROM {ks}.messages \
                 WHERE conversation = ? AND bucket = ? AND id = ?"
            ),
            Q::SelectHistory => format!(
                "SELECT {MSG_COLS} FROM {ks}.messages \
                 WHERE conversation = ? AND bucket = ? AND id >= ? AND id <= ? LIMIT ?"
            ),
            Q::SelectConvBuckets => format!(
                "SELECT bucket FROM {ks}.conversation_buckets \
                 WHERE conversation = ? AND bucket >= ? AND bucket <= ?"
            ),
            Q::SelectUnreadScan => format!(
                "SELECT sender FROM {ks}.messages \
                 WHERE conversation = ? AND bucket = ? AND id >= ? LIMIT ?"
            ),
            Q::SelectInboxBuckets => {
                format!("SELECT bucket FROM {ks}.inbox_buckets WHERE user_id = ? AND bucket >= ?")
            }
            Q::SelectInbox => format!(
                "SELECT id, conversation FROM {ks}.inbox \
                 WHERE user_id = ? AND bucket = ? AND id >= ? LIMIT ?"
            ),
            Q::SelectConversations => {
                format!("SELECT peer_id, last_id FROM {ks}.conversations WHERE user_id = ?")
            }
            Q::SelectReadMarker => format!(
                "SELECT up_to FROM {ks}.read_markers WHERE user_id = ? AND conversation = ?"
            ),
            Q::SelectOutboxAcked => {
                format!("SELECT acked FROM {ks}.outbox_acked WHERE node = ?")
            }
            Q::SelectOutboxBuckets => format!(
                "SELECT bucket FROM {ks}.outbox_buckets \
                 WHERE node = ? AND bucket >= ? AND bucket <= ?"
            ),
            Q::SelectOutbox => format!(
                "SELECT seq, event FROM {ks}.outbox \
                 WHERE node = ? AND bucket = ? AND seq >= ? AND seq <= ? LIMIT ?"
            ),
            Q::UpsertOutboxAcked => {
                format!("UPDATE {ks}.outbox_acked USING TIMESTAMP ? SET acked = ? WHERE node = ?")
            }
            Q::DeleteOutboxPartition => {
                format!("DELETE FROM {ks}.outbox WHERE node = ? AND bucket = ?")
            }
            Q::DeleteOutboxBucketIndex => {
                format!("DELETE FROM {ks}.outbox_buckets WHERE node = ? AND bucket < ?")
            }
        }
    }

    /// Safe to retry: everything but the lightweight transaction.
    fn idempotent(self) -> bool {
        self != Q::ClaimIdempotency
    }
}

/// A statement with its values.
#[derive(Debug, Clone, PartialEq)]
struct Bound {
    q: Q,
    vals: Vec<V>,
}

impl Bound {
    fn new(q: Q, vals: Vec<V>) -> Self {
        Self { q, vals }
    }

    fn insert_message(m: &Message) -> Self {
        Self::new(
            Q::InsertMessage,
            vec![
                conv_v(&m.conversation),
                V::Int(message_bucket(m.id.0)),
                id_v(m.id.0),
                user_v(m.from),
                user_v(m.to),
                V::Text(m.content.clone()),
                m.client_id.clone().map_or(V::Unset, V::Text),
            ],
        )
    }

    fn edit_message(m: &Message) -> Self {
        Self::new(
            Q::EditMessage,
            vec![
                V::Text(m.content.clone()),
                m.edited_at.map_or(V::Unset, id_v),
                conv_v(&m.conversation),
                V::Int(message_bucket(m.id.0)),
                id_v(m.id.0),
            ],
        )
    }

    fn tombstone_message(m: &Message) -> Self {
        Self::new(
            Q::TombstoneMessage,
            vec![
                m.edited_at.map_or(V::Unset, id_v),
                conv_v(&m.conversation),
                V::Int(message_bucket(m.id.0)),
                id_v(m.id.0),
            ],
        )
    }

    fn insert_by_id(m: &Message) -> Self {
        Self::new(
            Q::InsertById,
            vec![
                id_v(m.id.0),
                conv_v(&m.conversation),
                V::Int(message_bucket(m.id.0)),
            ],
        )
    }

    fn insert_inbox(user: UserId, m: &Message) -> Self {
        Self::new(
            Q::InsertInbox,
            vec![
                user_v(user),
                V::Int(message_bucket(m.id.0)),
                id_v(m.id.0),
                conv_v(&m.conversation),
            ],
        )
    }

    fn insert_inbox_bucket(user: UserId, id: u64) -> Self {
        Self::new(
            Q::InsertInboxBucket,
            vec![user_v(user), V::Int(message_bucket(id))],
        )
    }

    fn insert_conv_bucket(conv: &ConversationId, id: u64) -> Self {
        Self::new(
            Q::InsertConvBucket,
            vec![conv_v(conv), V::Int(message_bucket(id))],
        )
    }

    fn upsert_conversation(user: UserId, peer: UserId, last: u64) -> Self {
        Self::new(
            Q::UpsertConversation,
            vec![
                V::BigInt(cell_ts(last)),
                id_v(last),
                user_v(user),
                user_v(peer),
            ],
        )
    }

    fn upsert_read_marker(user: UserId, conv: &ConversationId, up_to: u64) -> Self {
        Self::new(
            Q::UpsertReadMarker,
            vec![
                V::BigInt(cell_ts(up_to)),
                id_v(up_to),
                user_v(user),
                conv_v(conv),
            ],
        )
    }

    fn insert_outbox(node: u16, seq: u64, event_json: String) -> Self {
        Self::new(
            Q::InsertOutbox,
            vec![
                V::Int(i32::from(node)),
                V::Int(outbox_bucket(seq)),
                id_v(seq),
                V::Text(event_json),
            ],
        )
    }

    fn insert_outbox_bucket(node: u16, seq: u64) -> Self {
        Self::new(
            Q::InsertOutboxBucket,
            vec![V::Int(i32::from(node)), V::Int(outbox_bucket(seq))],
        )
    }

    fn claim_idempotency(m: &Message, client_id: &str) -> Self {
        Self::new(
            Q::ClaimIdempotency,
            vec![
                user_v(m.from),
                V::Text(client_id.to_owned()),
                id_v(m.id.0),
                user_v(m.to),
                V::Text(m.content.clone()),
            ],
        )
    }

    fn select_by_id(id: i64) -> Self {
        Self::new(Q::SelectById, vec![V::BigInt(id)])
    }

    fn select_message(conv: &ConversationId, bucket: i32, id: i64) -> Self {
        Self::new(
            Q::SelectMessage,
            vec![conv_v(conv), V::Int(bucket), V::BigInt(id)],
        )
    }

    fn select_history(conv: &ConversationId, bucket: i32, lo: i64, hi: i64, n: usize) -> Self {
        Self::new(
            Q::SelectHistory,
            vec![
                conv_v(conv),
                V::Int(bucket),
                V::BigInt(lo),
                V::BigInt(hi),
                limit_v(n),
            ],
        )
    }

    fn select_conv_buckets(conv: &ConversationId, lo: i32, hi: i32) -> Self {
        Self::new(
            Q::SelectConvBuckets,
            vec![conv_v(conv), V::Int(lo), V::Int(hi)],
        )
    }

    fn select_unread_scan(conv: &ConversationId, bucket: i32, lo: i64, n: usize) -> Self {
        Self::new(
            Q::SelectUnreadScan,
            vec![conv_v(conv), V::Int(bucket), V::BigInt(lo), limit_v(n)],
        )
    }

    fn select_inbox_buckets(user: UserId, lo: i32) -> Self {
        Self::new(Q::SelectInboxBuckets, vec![user_v(user), V::Int(lo)])
    }

    fn select_inbox(user: UserId, bucket: i32, lo: i64, n: usize) -> Self {
        Self::new(
            Q::SelectInbox,
            vec![user_v(user), V::Int(bucket), V::BigInt(lo), limit_v(n)],
        )
    }

    fn select_conversations(user: UserId) -> Self {
        Self::new(Q::SelectConversations, vec![user_v(user)])
    }

    fn select_read_marker(user: UserId, conv: &ConversationId) -> Self {
        Self::new(Q::SelectReadMarker, vec![user_v(user), conv_v(conv)])
    }

    fn select_outbox_acked(node: u16) -> Self {
        Self::new(Q::SelectOutboxAcked, vec![V::Int(i32::from(node))])
    }

    fn select_outbox_buckets(node: u16, lo: i32, hi: i32) -> Self {
        Self::new(
            Q::SelectOutboxBuckets,
            vec![V::Int(i32::from(node)), V::Int(lo), V::Int(hi)],
        )
    }

    fn select_outbox(node: u16, bucket: i32, lo: i64, hi: i64, n: usize) -> Self {
        Self::new(
            Q::SelectOutbox,
            vec![
                V::Int(i32::from(node)),
                V::Int(bucket),
                V::BigInt(lo),
                V::BigInt(hi),
                limit_v(n),
            ],
        )
    }

    fn upsert_outbox_acked(node: u16, up_to: i64) -> Self {
        Self::new(
            Q::UpsertOutboxAcked,
            vec![
                V::BigInt(cell_ts(up_to.unsigned_abs())),
                V::BigInt(up_to),
                V::Int(i32::from(node)),
            ],
        )
    }

    fn delete_outbox_partition(node: u16, bucket: i32) -> Self {
        Self::new(
            Q::DeleteOutboxPartition,
            vec![V::Int(i32::from(node)), V::Int(bucket)],
        )
    }

    fn delete_outbox_bucket_index(node: u16, below: i32) -> Self {
        Self::new(
            Q::DeleteOutboxBucketIndex,
            vec![V::Int(i32::from(node)), V::Int(below)],
        )
    }
}

/// All rows a new message writes (outbox record excluded), in batch order.
fn append_rows(m: &Message) -> Vec<Bound> {
    let id = m.id.0;
    vec![
        Bound::insert_message(m),
        Bound::insert_by_id(m),
        Bound::insert_inbox(m.conversation.a, m),
        Bound::insert_inbox(m.conversation.b, m),
        Bound::insert_inbox_bucket(m.conversation.a, id),
        Bound::insert_inbox_bucket(m.conversation.b, id),
        Bound::insert_conv_bucket(&m.conversation, id),
        Bound::upsert_conversation(m.from, m.to, id),
        Bound::upsert_conversation(m.to, m.from, id),
    ]
}

/// Schema statements for keyspace `ks` (validated): the keyspace first, then the tables.
fn schema(ks: &str, replication: &Replication, disable_tablets: bool) -> Vec<String> {
    let tablets = if disable_tablets {
        " AND tablets = {'enabled': false}"
    } else {
        ""
    };
    vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {} AND durable_writes = true{tablets}",
            replication.cql()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.messages (conversation blob, bucket int, id bigint, \
             sender uuid, recipient uuid, content text, client_id text, edited_at bigint, \
             deleted boolean, PRIMARY KEY ((conversation, bucket), id)) \
             WITH CLUSTERING ORDER BY (id DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.conversation_buckets (conversation blob, bucket int, \
             PRIMARY KEY (conversation, bucket)) WITH CLUSTERING ORDER BY (bucket DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.messages_by_id (id bigint, conversation blob, \
             bucket int, PRIMARY KEY (id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.inbox (user_id uuid, bucket int, id bigint, \
             conversation blob, PRIMARY KEY ((user_id, bucket), id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.inbox_buckets (user_id uuid, bucket int, \
             PRIMARY KEY (user_id, bucket))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.idempotency (sender uuid, client_id text, id bigint, \
             recipient uuid, content text, PRIMARY KEY ((sender, client_id)))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.conversations (user_id uuid, peer_id uuid, \
             last_id bigint, PRIMARY KEY (user_id, peer_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.read_markers (user_id uuid, conversation blob, \
             up_to bigint, PRIMARY KEY (user_id, conversation))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.outbox (node int, bucket int, seq bigint, \
             event text, PRIMARY KEY ((node, bucket), seq))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.outbox_buckets (node int, bucket int, \
             PRIMARY KEY (node, bucket))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.outbox_acked (node int, acked bigint, \
             PRIMARY KEY (node))"
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Outbox sequence numbers
// ---------------------------------------------------------------------------------------------

/// Seq allocation of one node in this process, and the seqs whose batch has not (surely)
/// landed; see the module docs.
#[derive(Debug)]
struct Seqs {
    ids: IdGenerator,
    /// Seq → `None` while its write runs, `Some(until_ms)` while held after a failure.
    pending: BTreeMap<u64, Option<u64>>,
}

impl Seqs {
    fn new(node: u16) -> Self {
        Self {
            ids: IdGenerator::new(node),
            pending: BTreeMap::new(),
        }
    }

    /// A new seq, in flight until [`finish`](Self::finish).
    fn begin(&mut self, now_ms: u64) -> u64 {
        let s = self.ids.next_at(now_ms).0;
        self.pending.insert(s, None);
        s
    }

    fn finish(&mut self, seq: u64, ok: bool, now_ms: u64) {
        if ok {
            self.pending.remove(&seq);
        } else {
            self.pending
                .insert(seq, Some(now_ms.saturating_add(OUTBOX_HOLD_MS)));
        }
    }

    /// Every record with a smaller seq has landed or never will: the lowest pending seq, or
    /// (none pending) a fresh seq, below every seq allocated later.
    fn horizon(&mut self, now_ms: u64) -> u64 {
        self.pending
            .retain(|_, until| until.is_none_or(|u| u > now_ms));
        match self.pending.keys().next() {
            Some(s) => *s,
            None => self.ids.next_at(now_ms).0,
        }
    }
}

fn lock(m: &Mutex<Seqs>) -> MutexGuard<'_, Seqs> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks its seq finished when dropped: failed unless [`SeqGuard::ok`] was set (a cancelled
/// write may still land).
struct SeqGuard {
    seqs: Arc<Mutex<Seqs>>,
    seq: u64,
    ok: bool,
}

impl Drop for SeqGuard {
    fn drop(&mut self) {
        lock(&self.seqs).finish(self.seq, self.ok, crate::now_ms());
    }
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// Message store on ScyllaDB; see the [module docs](self).
///
/// Cheap to clone; clones and [`with_node`](Self::with_node) handles share one session.
#[derive(Clone)]
pub struct ScyllaStore {
    shared: Arc<Shared>,
    node: u16,
}

struct Shared {
    session: Session,
    keyspace: String,
    prepared: HashMap<Q, PreparedStatement>,
    request_timeout: Duration,
    /// Per node: seq allocation and in-flight seqs, shared by every handle of the node.
    seqs: Mutex<HashMap<u16, Arc<Mutex<Seqs>>>>,
}

impl fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace", &self.shared.keyspace)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl ScyllaStore {
    /// Connects with default [`ScyllaOptions`]; see [`connect_with`](Self::connect_with).
    pub async fn connect(uri: &str, keyspace: &str, node: u16) -> Result<Self, StoreError> {
        Self::connect_with(
            &ScyllaUri::parse(uri)?,
            keyspace,
            node,
            ScyllaOptions::default(),
        )
        .await
    }

    /// Connects to `uri`, creates the keyspace (the URI's, else `keyspace`) and the tables if
    /// they do not exist, and prepares every statement. This handle's changes go to `node`'s
    /// outbox.
    pub async fn connect_with(
        uri: &ScyllaUri,
        keyspace: &str,
        node: u16,
        opts: ScyllaOptions,
    ) -> Result<Self, StoreError> {
        let ks = match &uri.keyspace {
            Some(k) => validate_keyspace(k)?,
            None => validate_keyspace(keyspace)?,
        };
        let profile = ExecutionProfile::builder()
            .consistency(opts.consistency)
            .serial_consistency(Some(opts.serial_consistency))
            .request_timeout(Some(opts.request_timeout))
            .build()
            .into_handle();
        let mut builder = SessionBuilder::new()
            .known_nodes(&uri.nodes)
            .connection_timeout(opts.connect_timeout)
            .default_execution_profile_handle(profile);
        if let Some((user, pass)) = &uri.credentials {
            builder = builder.user(user, pass);
        }
        let session = builder.build().await.map_err(backend)?;

        let ddl = |cql: &str| {
            let mut s = Statement::new(cql);
            s.set_request_timeout(Some(DDL_TIMEOUT));
            s
        };
        let stmts = schema(&ks, &opts.replication, opts.disable_tablets);
        if let Err(e) = session.query_unpaged(ddl(&stmts[0]), ()).await {
            if !opts.disable_tablets {
                return Err(backend(e));
            }
            // A server without tablets (ScyllaDB < 6, Cassandra) rejects the option.
            let plain = schema(&ks, &opts.replication, false);
            session
                .query_unpaged(ddl(&plain[0]), ())
                .await
                .map_err(|e2| backend(format!("create keyspace: {e}; without tablets: {e2}")))?;
            tracing::info!(keyspace = %ks, "keyspace created without the tablets option");
        }
        for cql in &stmts[1..] {
            session.query_unpaged(ddl(cql), ()).await.map_err(backend)?;
        }

        let mut prepared = HashMap::new();
        for q in Q::ALL {
            let mut p = session.prepare(q.cql(&ks)).await.map_err(backend)?;
            let want = placeholders(&q.cql(&ks));
            let got = p.get_variable_col_specs().len();
            if got != want {
                return Err(backend(format!(
                    "{q:?}: server expects {got} values, {want} bound"
                )));
            }
            p.set_is_idempotent(q.idempotent());
            prepared.insert(q, p);
        }
        tracing::info!(keyspace = %ks, nodes = ?uri.nodes, node, "ScyllaDB message store ready");
        Ok(Self {
            shared: Arc::new(Shared {
                session,
                keyspace: ks,
                prepared,
                request_timeout: opts.request_timeout,
                seqs: Mutex::new(HashMap::new()),
            }),
            node,
        })
    }

    /// A handle on the same session whose changes go to `node`'s outbox.
    pub fn with_node(&self, node: u16) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            node,
        }
    }

    /// The node whose outbox this handle writes.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// The session (other roles' tables live in the same keyspace).
    pub fn session(&self) -> &Session {
        &self.shared.session
    }

    /// The keyspace in use.
    pub fn keyspace(&self) -> &str {
        &self.shared.keyspace
    }

    /// Drops the whole keyspace and every message in it. For tests.
    pub async fn drop_keyspace(&self) -> Result<(), StoreError> {
        let mut s = Statement::new(format!("DROP KEYSPACE IF EXISTS {}", self.shared.keyspace));
        s.set_request_timeout(Some(DDL_TIMEOUT));
        self.shared
            .session
            .query_unpaged(s, ())
            .await
            .map_err(backend)?;
        Ok(())
    }

    fn seqs(&self, node: u16) -> Arc<Mutex<Seqs>> {
        let mut map = self.shared.seqs.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry(node)
                .or_insert_with(|| Arc::new(Mutex::new(Seqs::new(node)))),
        )
    }

    fn stmt(&self, q: Q) -> Result<&PreparedStatement, StoreError> {
        self.shared
            .prepared
            .get(&q)
            .ok_or_else(|| backend(format!("statement {q:?} not prepared")))
    }

    async fn exec(&self, b: Bound) -> Result<QueryResult, StoreError> {
        self.shared
            .session
            .execute_unpaged(self.stmt(b.q)?, &b.vals)
            .await
            .map_err(backend)
    }

    async fn rows<R>(&self, b: Bound) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let res = self.exec(b).await?.into_rows_result().map_err(backend)?;
        let rows = res.rows::<R>().map_err(backend)?;
        rows.collect::<Result<Vec<R>, _>>().map_err(backend)
    }

    /// Rows of a statement whose result may be large, read page by page.
    async fn paged_rows<R>(&self, b: Bound) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + Send + 'static,
    {
        let pager = self
            .shared
            .session
            .execute_iter(self.stmt(b.q)?.clone(), &b.vals)
            .await
            .map_err(backend)?;
        pager
            .rows_stream::<R>()
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)
    }

    /// Applies `rows` plus `event` (into this handle's outbox) as one logged batch.
    async fn commit(&self, mut rows: Vec<Bound>, event: &Event) -> Result<(), StoreError> {
        let json = serde_json::to_string(event).map_err(backend)?;
        let seqs = self.seqs(self.node);
        let seq = lock(&seqs).begin(crate::now_ms());
        let mut guard = SeqGuard {
            seqs,
            seq,
            ok: false,
        };
        rows.push(Bound::insert_outbox(self.node, seq, json));
        rows.push(Bound::insert_outbox_bucket(self.node, seq));
        let mut batch = Batch::new(BatchType::Logged);
        let mut values = Vec::with_capacity(rows.len());
        for b in rows {
            batch.append_statement(self.stmt(b.q)?.clone());
            values.push(b.vals);
        }
        batch.set_is_idempotent(true);
        self.shared
            .session
            .batch(&batch, values)
            .await
            .map_err(backend)?;
        guard.ok = true;
        Ok(())
    }

    async fn write_new(&self, m: &Message) -> Result<(), StoreError> {
        let event = Event::MessageCreated {
            v: Event::VERSION,
            message: m.clone(),
        };
        self.commit(append_rows(m), &event).await
    }

    async fn message_in(
        &self,
        conv: &ConversationId,
        id: i64,
    ) -> Result<Option<Message>, StoreError> {
        let rows: Vec<MsgRow> = self
            .rows(Bound::select_message(
                conv,
                message_bucket(id.unsigned_abs()),
                id,
            ))
            .await?;
        rows.into_iter()
            .next()
            .map(|r| message_of(*conv, r))
            .transpose()
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let Some(id) = to_i64(id.0) else {
            return Ok(None);
        };
        let rows: Vec<(Vec<u8>, Option<i32>)> = self.rows(Bound::select_by_id(id)).await?;
        let Some((conv, _bucket)) = rows.into_iter().next() else {
            return Ok(None);
        };
        let conv = ConversationId::from_bytes(&conv).ok_or_else(|| corrupt("bad conversation"))?;
        self.message_in(&conv, id).await
    }

    async fn visible(&self, user: UserId, id: MessageId) -> Result<Message, StoreError> {
        match self.message(id).await? {
            Some(m) if m.conversation.includes(user) => Ok(m),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn own_live(&self, user: UserId, id: MessageId) -> Result<Message, StoreError> {
        let m = self.visible(user, id).await?;
        if m.from != user || m.deleted {
            return Err(StoreError::Forbidden);
        }
        Ok(m)
    }

    async fn marker(&self, user: UserId, conv: &ConversationId) -> Result<u64, StoreError> {
        let rows: Vec<(Option<i64>,)> = self.rows(Bound::select_read_marker(user, conv)).await?;
        match rows.into_iter().next().and_then(|r| r.0) {
            Some(v) => to_u64(v),
            None => Ok(0),
        }
    }

    /// Buckets of `conv` in `[lo, hi]`, newest first.
    async fn conv_buckets(
        &self,
        conv: &ConversationId,
        lo: i32,
        hi: i32,
    ) -> Result<Vec<i32>, StoreError> {
        let rows: Vec<(i32,)> = self.rows(Bound::select_conv_buckets(conv, lo, hi)).await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// `user`'s conversations as (peer, newest id), newest first.
    async fn conv_list(&self, user: UserId) -> Result<Vec<(UserId, u64)>, StoreError> {
        let rows: Vec<(Uuid, Option<i64>)> =
            self.paged_rows(Bound::select_conversations(user)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (peer, last) in rows {
            if let Some(last) = last {
                out.push((UserId(peer), to_u64(last)?));
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.1));
        Ok(out)
    }

    /// Messages from `peer` after `user`'s read marker (scans ≤ [`MAX_UNREAD_SCAN`]).
    async fn unread_in(&self, user: UserId, peer: UserId) -> Result<u64, StoreError> {
        let conv = ConversationId::between(user, peer);
        let marker = self.marker(user, &conv).await?;
        let Some((lo, _)) = id_range(Some(marker), None) else {
            return Ok(0);
        };
        let mut buckets = self
            .conv_buckets(&conv, message_bucket(lo.unsigned_abs()), i32::MAX)
            .await?;
        buckets.reverse();
        let (mut scanned, mut n) = (0, 0);
        for bucket in buckets {
            if scanned >= MAX_UNREAD_SCAN {
                break;
            }
            let rows: Vec<(Uuid,)> = self
                .rows(Bound::select_unread_scan(
                    &conv,
                    bucket,
                    lo,
                    MAX_UNREAD_SCAN - scanned,
                ))
                .await?;
            scanned += rows.len();
            n += rows.iter().filter(|r| r.0 == peer.0).count() as u64;
        }
        Ok(n)
    }

    async fn history_page(
        &self,
        conv: ConversationId,
        page: Page,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let Some((lo, hi)) = id_range(page.after.map(|a| a.0), page.before.map(|b| b.0)) else {
            return Ok(Vec::new());
        };
        let (blo, bhi) = bucket_range(lo, hi, message_bucket);
        let mut out = Vec::with_capacity(limit);
        for bucket in self.conv_buckets(&conv, blo, bhi).await? {
            let rows: Vec<MsgRow> = self
                .rows(Bound::select_history(
                    &conv,
                    bucket,
                    lo,
                    hi,
                    limit - out.len(),
                ))
                .await?;
            for r in rows {
                out.push(message_of(conv, r)?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn summary(
        &self,
        user: UserId,
        peer: UserId,
        last: u64,
    ) -> Result<Option<ConversationSummary>, StoreError> {
        let conv = ConversationId::between(user, peer);
        let found = match to_i64(last) {
            Some(id) => self.message_in(&conv, id).await?,
            None => None,
        };
        let last_message = match found {
            Some(m) => m,
            // The index row landed before the message row (batches are not isolated).
            None => match self
                .history_page(conv, Page::default(), 1)
                .await?
                .into_iter()
                .next()
            {
                Some(m) => m,
                None => return Ok(None),
            },
        };
        Ok(Some(ConversationSummary {
            peer,
            last_message,
            unread: self.unread_in(user, peer).await?,
        }))
    }

    /// The message `(from, client_id)` already claimed: the stored one, or (its writer died
    /// between claim and batch) the claimed one, written now.
    async fn existing(&self, claim: Claim) -> Result<Appended, StoreError> {
        let written = written_within(self.shared.request_timeout, || self.message(claim.id));
        if let Some(m) = written.await? {
            return Ok(Appended::Duplicate(m));
        }
        let m = Message {
            id: claim.id,
            conversation: ConversationId::between(claim.from, claim.to),
            from: claim.from,
            to: claim.to,
            content: claim.content,
            client_id: Some(claim.client_id),
            edited_at: None,
            deleted: false,
        };
        tracing::warn!(id = %m.id, "completing a message whose first writer did not finish");
        self.write_new(&m).await?;
        Ok(Appended::Duplicate(m))
    }
}

/// What an idempotency row claims.
#[derive(Debug)]
struct Claim {
    id: MessageId,
    from: UserId,
    to: UserId,
    content: String,
    client_id: String,
}

/// Reads the result of the `IF NOT EXISTS` claim: `None` if applied, else the existing claim.
fn claim_result(
    res: QueryResult,
    from: UserId,
    client_id: &str,
) -> Result<Option<Claim>, StoreError> {
    let Some(found) = not_applied(res, &["id", "recipient", "content"])? else {
        return Ok(None);
    };
    match <[Option<CqlValue>; 3]>::try_from(found) {
        Ok(
            [Some(CqlValue::BigInt(id)), Some(CqlValue::Uuid(to)), Some(CqlValue::Text(content))],
        ) => Ok(Some(Claim {
            id: MessageId(to_u64(id)?),
            from,
            to: UserId(to),
            content,
            client_id: client_id.to_owned(),
        })),
        other => Err(corrupt(&format!("idempotency row {other:?}"))),
    }
}

fn message_of(conv: ConversationId, r: MsgRow) -> Result<Message, StoreError> {
    let (id, sender, recipient, content, client_id, edited_at, deleted) = r;
    let (from, to) = (UserId(sender), UserId(recipient));
    if ConversationId::between(from, to) != conv {
        return Err(corrupt("message outside its conversation"));
    }
    let deleted = deleted.unwrap_or(false);
    Ok(Message {
        id: MessageId(to_u64(id)?),
        conversation: conv,
        from,
        to,
        // A racing edit may have rewritten a tombstone's content: a tombstone shows none.
        content: if deleted {
            String::new()
        } else {
            content.unwrap_or_default()
        },
        client_id,
        edited_at: edited_at.map(to_u64).transpose()?,
        deleted,
    })
}

/// Bind markers in a statement, outside string literals.
fn placeholders(cql: &str) -> usize {
    let mut in_str = false;
    let mut n = 0;
    for c in cql.chars() {
        match c {
            '\'' => in_str = !in_str,
            '?' if !in_str => n += 1,
            _ => {}
        }
    }
    n
}

#[async_trait]
impl MessageStore for ScyllaStore {
    async fn append(&self, new: NewMessage) -> Result<Appended, StoreError> {
        if to_i64(new.id.0).is_none() {
            return Err(backend(format!("message id {} out of range", new.id)));
        }
        let m = Message {
            id: new.id,
            conversation: ConversationId::between(new.from, new.to),
            from: new.from,
            to: new.to,
            content: new.content,
            client_id: new.client_id,
            edited_at: None,
            deleted: false,
        };
        if let Some(cid) = &m.client_id {
            let res = self.exec(Bound::claim_idempotency(&m, cid)).await?;
            if let Some(claim) = claim_result(res, m.from, cid)? {
                return self.existing(claim).await;
            }
        }
        self.write_new(&m).await?;
        Ok(Appended::Created(m))
    }

    async fn get(&self, viewer: UserId, id: MessageId) -> Result<Message, StoreError> {
        self.visible(viewer, id).await
    }

    async fn history(&self, conv: ConversationId, page: Page) -> Result<Vec<Message>, StoreError> {
        let limit = page.limit.clamp(1, HISTORY_MAX);
        self.history_page(conv, page, limit).await
    }

    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let limit = limit.clamp(1, HISTORY_MAX);
        let mut list = self.conv_list(user).await?;
        list.truncate(limit);
        let found: Vec<Option<ConversationSummary>> = stream::iter(list)
            .map(|(peer, last)| self.summary(user, peer, last))
            .buffered(FANOUT)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn mark_read(
        &self,
        user: UserId,
        conv: ConversationId,
        up_to: MessageId,
    ) -> Result<MessageId, StoreError> {
        if !conv.includes(user) {
            return Err(StoreError::NotFound);
        }
        let old = self.marker(user, &conv).await?;
        if up_to.0 <= old {
            return Ok(MessageId(old));
        }
        if to_i64(up_to.0).is_none() {
            return Err(backend(format!("message id {up_to} out of range")));
        }
        let event = Event::Read {
            v: Event::VERSION,
            conversation: conv,
            reader: user,
            up_to,
        };
        self.commit(
            vec![Bound::upsert_read_marker(user, &conv, up_to.0)],
            &event,
        )
        .await?;
        Ok(up_to)
    }

    async fn unread(&self, user: UserId) -> Result<Unread, StoreError> {
        let list = self.conv_list(user).await?;
        let counts: Vec<UnreadIn> = stream::iter(list)
            .map(|(peer, _)| async move {
                let unread = self.unread_in(user, peer).await?;
                Ok::<_, StoreError>(UnreadIn { peer, unread })
            })
            .buffered(FANOUT)
            .try_collect()
            .await?;
        let conversations: Vec<UnreadIn> = counts.into_iter().filter(|c| c.unread > 0).collect();
        Ok(Unread {
            total: conversations.iter().map(|c| c.unread).sum(),
            conversations,
        })
    }

    async fn edit(
        &self,
        user: UserId,
        id: MessageId,
        content: String,
        now_ms: u64,
    ) -> Result<Message, StoreError> {
        let mut m = self.own_live(user, id).await?;
        m.content = content;
        m.edited_at = Some(now_ms);
        let event = Event::MessageEdited {
            v: Event::VERSION,
            message: m.clone(),
        };
        self.commit(vec![Bound::edit_message(&m)], &event).await?;
        Ok(m)
    }

    async fn delete(
        &self,
        user: UserId,
        id: MessageId,
        now_ms: u64,
    ) -> Result<Message, StoreError> {
        let mut m = self.own_live(user, id).await?;
        m.content.clear();
        m.deleted = true;
        m.edited_at = Some(now_ms);
        let event = Event::MessageDeleted {
            v: Event::VERSION,
            message: m.clone(),
        };
        self.commit(vec![Bound::tombstone_message(&m)], &event)
            .await?;
        Ok(m)
    }

    async fn since(
        &self,
        user: UserId,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let limit = limit.clamp(1, SINCE_MAX);
        let Some((lo, _)) = id_range(Some(after.0), None) else {
            return Ok(Vec::new());
        };
        let buckets: Vec<(i32,)> = self
            .rows(Bound::select_inbox_buckets(
                user,
                message_bucket(lo.unsigned_abs()),
            ))
            .await?;
        let mut refs: Vec<(ConversationId, i64)> = Vec::new();
        for (bucket,) in buckets {
            let rows: Vec<(i64, Vec<u8>)> = self
                .rows(Bound::select_inbox(user, bucket, lo, limit - refs.len()))
                .await?;
            for (id, conv) in rows {
                let conv =
                    ConversationId::from_bytes(&conv).ok_or_else(|| corrupt("bad conversation"))?;
                refs.push((conv, id));
            }
            if refs.len() >= limit {
                break;
            }
        }
        let found: Vec<Option<Message>> = stream::iter(refs)
            .map(|(conv, id)| async move { self.message_in(&conv, id).await })
            .buffered(FANOUT)
            .try_collect()
            .await?;
        // Stop before a message whose row has not landed yet: the client asks again from the
        // last one it got, so nothing is skipped.
        Ok(found.into_iter().map_while(|m| m).collect())
    }
}

#[async_trait]
impl Outbox for ScyllaStore {
    async fn outbox_read(
        &self,
        node: u16,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let limit = limit.min(OUTBOX_READ_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Taken before reading: records below it that will ever exist have landed.
        let horizon = lock(&self.seqs(node)).horizon(crate::now_ms());
        let acked: Vec<(Option<i64>,)> = self.rows(Bound::select_outbox_acked(node)).await?;
        let acked = match acked.into_iter().next().and_then(|r| r.0) {
            Some(a) => to_u64(a)?,
            None => 0,
        };
        let Some((lo, hi)) = id_range(Some(after.max(acked)), Some(horizon)) else {
            return Ok(Vec::new());
        };
        let (blo, bhi) = bucket_range(lo, hi, outbox_bucket);
        let buckets: Vec<(i32,)> = self
            .rows(Bound::select_outbox_buckets(node, blo, bhi))
            .await?;
        let mut out = Vec::new();
        for (bucket,) in buckets {
            let rows: Vec<(i64, String)> = self
                .rows(Bound::select_outbox(
                    node,
                    bucket,
                    lo,
                    hi,
                    limit - out.len(),
                ))
                .await?;
            for (seq, json) in rows {
                out.push((to_u64(seq)?, serde_json::from_str(&json).map_err(backend)?));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn outbox_ack(&self, node: u16, up_to: u64) -> Result<(), StoreError> {
        let up_to = to_i64(up_to).unwrap_or(i64::MAX);
        // The mark hides every record ≤ up_to at once; partitions wholly below its minute go.
        self.exec(Bound::upsert_outbox_acked(node, up_to)).await?;
        let below = outbox_bucket(up_to.unsigned_abs());
        let old: Vec<(i32,)> = self
            .rows(Bound::select_outbox_buckets(node, i32::MIN, below - 1))
            .await?;
        for (bucket,) in old {
            self.exec(Bound::delete_outbox_partition(node, bucket))
                .await?;
        }
        self.exec(Bound::delete_outbox_bucket_index(node, below))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::EPOCH_MS;

    fn uid(n: u128) -> UserId {
        UserId(Uuid::from_u128(n))
    }

    fn msg(id: u64, client_id: Option<&str>, edited: Option<u64>) -> Message {
        Message {
            id: MessageId(id),
            conversation: ConversationId::between(uid(2), uid(1)),
            from: uid(2),
            to: uid(1),
            content: "hi".into(),
            client_id: client_id.map(Into::into),
            edited_at: edited,
            deleted: false,
        }
    }

    #[test]
    fn uri_parsing() {
        let u = ScyllaUri::parse("10.0.0.1:9043,db2").unwrap();
        assert_eq!(u.nodes, vec!["10.0.0.1:9043", "db2:9042"]);
        assert_eq!((u.keyspace, u.credentials), (None, None));

        let u = ScyllaUri::parse(" scylla://alice:s3cr:et@h1:19042,[::1]:9000,[fe80::1]/Chat_1/ ")
            .unwrap();
        assert_eq!(u.nodes, vec!["h1:19042", "[::1]:9000", "[fe80::1]:9042"]);
        assert_eq!(u.keyspace.as_deref(), Some("chat_1"));
        assert_eq!(u.credentials, Some(("alice".into(), "s3cr:et".into())));
        assert!(!format!("{u:?}").contains("s3cr"), "password not in Debug");

        assert_eq!(ScyllaUri::parse("::1").unwrap().nodes, vec!["[::1]:9042"]);
        assert_eq!(
            ScyllaUri::parse("SCYLLA://h").unwrap().nodes,
            vec!["h:9042"]
        );
        for bad in [
            "",
            "http://h:9042",
            "h:0",
            "h:99999",
            "h:x",
            "h,,g",
            "scylla://h/ks;drop",
            "scylla://h/1ks",
            "scylla://h?x=1",
            "[zz]:1",
            "@h",
            "h o:1",
        ] {
            assert!(ScyllaUri::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn keyspace_names() {
        assert_eq!(
            validate_keyspace("Zerocast_Test_9").unwrap(),
            "zerocast_test_9"
        );
        assert!(validate_keyspace(&"k".repeat(48)).is_ok());
        for bad in ["", "_k", "9k", "k-1", "k.t", "k\"", &"k".repeat(49)] {
            assert!(validate_keyspace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replication_and_consistency() {
        assert_eq!(
            Replication::parse("3").unwrap(),
            Replication::Simple {
                replication_factor: 3
            }
        );
        let nts = Replication::parse("dc1:3, dc-2:2").unwrap();
        assert_eq!(
            nts.cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc-2': 2}"
        );
        assert_eq!(
            Replication::default().cql(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        for bad in ["0", "x", "dc1:", "dc1:0", ":3", "d'c:3"] {
            assert!(Replication::parse(bad).is_err(), "{bad:?}");
        }
        let o = ScyllaOptions::default()
            .with_consistency("LOCAL_QUORUM")
            .unwrap();
        assert_eq!(
            (o.consistency, o.serial_consistency),
            (Consistency::LocalQuorum, SerialConsistency::LocalSerial)
        );
        assert!(ScyllaOptions::default().with_consistency("one").is_err());
    }

    #[test]
    fn bucket_math() {
        let at = |ms: u64, seq: u64| IdGenerator::new(3).next_at(ms).0 + seq;
        // Ids of one bucket share it; the next millisecond after a boundary starts a new one.
        let boundary = (EPOCH_MS / MESSAGE_BUCKET_MS + 1) * MESSAGE_BUCKET_MS;
        assert_eq!(
            message_bucket(at(boundary - 1, 0)) + 1,
            message_bucket(at(boundary, 0))
        );
        assert_eq!(
            message_bucket(at(boundary, 0)),
            message_bucket(at(boundary + 5000, 7))
        );
        assert_eq!(
            i64::from(message_bucket(at(boundary, 0))),
            i64::try_from(boundary / MESSAGE_BUCKET_MS).unwrap()
        );
        let minute = (EPOCH_MS / OUTBOX_BUCKET_MS + 10) * OUTBOX_BUCKET_MS;
        assert_eq!(
            outbox_bucket(at(minute - 1, 0)) + 1,
            outbox_bucket(at(minute, 0))
        );
        // Buckets are monotonic in the id, also at the extremes.
        let mut prev = i32::MIN;
        for id in [0, 1, 1 << 40, 1 << 62, i64::MAX as u64, u64::MAX] {
            let b = message_bucket(id);
            assert!(b >= prev && b > 0);
            prev = b;
            assert!(outbox_bucket(id) > 0);
        }
        // Newest-wins timestamps: microseconds of the id's millisecond.
        assert_eq!(
            cell_ts(at(EPOCH_MS + 1, 5)),
            i64::try_from((EPOCH_MS + 1) * 1000).unwrap()
        );
        assert!(cell_ts(at(EPOCH_MS + 1, 0)) < cell_ts(at(EPOCH_MS + 2, 0)));
    }

    #[test]
    fn id_ranges() {
        assert_eq!(id_range(None, None), Some((0, i64::MAX)));
        assert_eq!(id_range(Some(4), Some(10)), Some((5, 9)));
        assert_eq!(id_range(Some(4), Some(5)), None);
        assert_eq!(id_range(Some(4), Some(4)), None);
        assert_eq!(id_range(Some(10), Some(4)), None);
        assert_eq!(id_range(None, Some(0)), None);
        assert_eq!(id_range(Some(u64::MAX), None), None);
        assert_eq!(id_range(Some(i64::MAX as u64), None), None);
        assert_eq!(id_range(None, Some(u64::MAX)), Some((0, i64::MAX)));
        assert_eq!(to_i64(u64::MAX), None);
        assert!(to_u64(-1).is_err());
        assert_eq!(to_u64(7).ok(), Some(7));
        let (lo, hi) = bucket_range(0, i64::MAX, message_bucket);
        assert!(lo <= hi);
    }

    #[test]
    fn key_encoding() {
        let m = msg(1 << 30, Some("c"), None);
        let V::Blob(conv) = conv_v(&m.conversation) else {
            panic!("conversation is a blob");
        };
        assert_eq!(conv.len(), 32);
        assert_eq!(ConversationId::from_bytes(&conv), Some(m.conversation));
        assert_eq!(user_v(uid(9)), V::Uuid(Uuid::from_u128(9)));
        assert_eq!(id_v(u64::MAX), V::BigInt(i64::MAX));
        assert_eq!(limit_v(usize::MAX), V::Int(i32::MAX));
        // Optional columns are left unset (no tombstone), not written as null.
        assert_eq!(Bound::insert_message(&m).vals[6], V::Text("c".into()));
        assert_eq!(Bound::insert_message(&msg(5, None, None)).vals[6], V::Unset);
    }

    #[test]
    fn message_rows() {
        let m = msg(1 << 30, Some("c"), Some(77));
        let row = |deleted: Option<bool>, content: Option<&str>| -> MsgRow {
            (
                1 << 30,
                uid(2).0,
                uid(1).0,
                content.map(Into::into),
                Some("c".into()),
                Some(77),
                deleted,
            )
        };
        assert_eq!(
            message_of(m.conversation, row(Some(false), Some("hi"))).unwrap(),
            m
        );
        assert_eq!(
            message_of(m.conversation, row(None, Some("hi"))).unwrap(),
            m
        );
        let tomb = message_of(m.conversation, row(Some(true), Some("raced edit"))).unwrap();
        assert!(tomb.deleted && tomb.content.is_empty());
        let elsewhere = ConversationId::between(uid(1), uid(3));
        assert!(message_of(elsewhere, row(None, Some("hi"))).is_err());
        let mut neg = row(None, None);
        neg.0 = -1;
        assert!(message_of(m.conversation, neg).is_err());
    }

    /// One binder call per statement, with sample values.
    fn every_binding() -> Vec<Bound> {
        let m = msg(1 << 30, Some("c"), Some(5));
        let conv = m.conversation;
        let mut all = append_rows(&m);
        all.extend([
            Bound::edit_message(&m),
            Bound::tombstone_message(&m),
            Bound::upsert_read_marker(uid(1), &conv, 9),
            Bound::insert_outbox(3, 1 << 30, "{}".into()),
            Bound::insert_outbox_bucket(3, 1 << 30),
            Bound::claim_idempotency(&m, "c"),
            Bound::select_by_id(1),
            Bound::select_message(&conv, 1, 1),
            Bound::select_history(&conv, 1, 0, 9, 100),
            Bound::select_conv_buckets(&conv, 0, 9),
            Bound::select_unread_scan(&conv, 1, 0, 10),
            Bound::select_inbox_buckets(uid(1), 0),
            Bound::select_inbox(uid(1), 1, 0, 10),
            Bound::select_conversations(uid(1)),
            Bound::select_read_marker(uid(1), &conv),
            Bound::select_outbox_acked(3),
            Bound::select_outbox_buckets(3, 0, 9),
            Bound::select_outbox(3, 1, 0, 9, 10),
            Bound::upsert_outbox_acked(3, 9),
            Bound::delete_outbox_partition(3, 1),
            Bound::delete_outbox_bucket_index(3, 1),
        ]);
        all
    }

    #[test]
    fn placeholders_match_bound_values() {
        let all = every_binding();
        for q in Q::ALL {
            assert!(
                all.iter().any(|b| b.q == q),
                "{q:?} has no binding under test"
            );
        }
        for b in &all {
            assert_eq!(
                placeholders(&b.q.cql("ks")),
                b.vals.len(),
                "{:?}: {}",
                b.q,
                b.q.cql("ks")
            );
        }
        assert_eq!(placeholders("SET a = '?', b = ?"), 1);
    }

    #[test]
    fn statements_are_well_formed() {
        let verbs = [
            "INSERT INTO ks.",
            "UPDATE ks.",
            "SELECT ",
            "DELETE FROM ks.",
        ];
        for q in Q::ALL {
            let cql = q.cql("ks");
            assert!(verbs.iter().any(|v| cql.starts_with(v)), "{cql}");
            assert_eq!(cql.matches('(').count(), cql.matches(')').count(), "{cql}");
            assert_eq!(cql.matches('\'').count() % 2, 0, "{cql}");
            assert!(cql.contains(" ks."), "qualified table: {cql}");
            assert!(!cql.contains("  "), "{cql}");
            assert_eq!(q.idempotent(), !cql.contains(" IF "), "{cql}");
            if cql.starts_with("SELECT") || cql.starts_with("UPDATE") || cql.starts_with("DELETE") {
                assert!(cql.contains(" WHERE "), "{cql}");
            }
        }
        let ddl = schema("ks", &Replication::default(), true);
        assert!(ddl[0].starts_with("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {"));
        assert!(ddl[0].ends_with("AND tablets = {'enabled': false}"));
        assert!(!schema("ks", &Replication::default(), false)[0].contains("tablets"));
        let tables: Vec<&str> = ddl[1..]
            .iter()
            .map(|s| {
                assert!(s.starts_with("CREATE TABLE IF NOT EXISTS ks."), "{s}");
                assert!(s.contains("PRIMARY KEY ("), "{s}");
                assert_eq!(s.matches('(').count(), s.matches(')').count(), "{s}");
                assert_eq!(placeholders(s), 0, "{s}");
                s["CREATE TABLE IF NOT EXISTS ks.".len()..]
                    .split(' ')
                    .next()
                    .unwrap_or_default()
            })
            .collect();
        // Every table a statement names exists.
        for q in Q::ALL {
            let cql = q.cql("ks");
            let table = cql
                .split("ks.")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .unwrap_or_default();
            assert!(tables.contains(&table), "{q:?} names unknown table {table}");
        }
    }

    #[test]
    fn outbox_seqs_hold_back_readers() {
        let t = EPOCH_MS + 1_000_000;
        let mut s = Seqs::new(4);
        let a = s.begin(t);
        let b = s.begin(t);
        assert!(a < b && MessageId(a).node() == 4);
        // b landed first: readers stop below a.
        s.finish(b, true, t);
        assert_eq!(s.horizon(t), a);
        // a failed: it may still land, so it holds readers back for a while.
        s.finish(a, false, t);
        assert_eq!(s.horizon(t + OUTBOX_HOLD_MS - 1), a);
        let h = s.horizon(t + OUTBOX_HOLD_MS + 1);
        assert!(h > b, "released after the hold");
        // Nothing pending: the horizon is above every seq made so far, below later ones.
        let c = s.begin(t);
        assert!(c > h);
        assert_eq!(s.horizon(t), c);
        s.finish(c, true, t);
        assert!(s.horizon(t) > c);
    }

    #[test]
    fn seq_guard_marks_failure_on_drop() {
        let seqs = Arc::new(Mutex::new(Seqs::new(1)));
        let seq = lock(&seqs).begin(crate::now_ms());
        drop(SeqGuard {
            seqs: Arc::clone(&seqs),
            seq,
            ok: false,
        });
        assert_eq!(
            lock(&seqs).pending.get(&seq).map(Option::is_some),
            Some(true)
        );
        let seq2 = lock(&seqs).begin(crate::now_ms());
        drop(SeqGuard {
            seqs: Arc::clone(&seqs),
            seq: seq2,
            ok: true,
        });
        assert!(!lock(&seqs).pending.contains_key(&seq2));
    }
}
