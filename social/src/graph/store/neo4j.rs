//! The follow graph on Neo4j, through the `neo4rs` Bolt driver.
//!
//! Same semantics as every other [`GraphStore`], checked by the same
//! [conformance suite](super::conformance) (`tests/graph_neo4j.rs`, when `ZEROCAST_NEO4J_URI`
//! names a server).
//!
//! Follows and unfollows write their events to a transactional outbox of nodes in the same
//! statement as the change (see "Events"); this store is its own [`Outbox`] and
//! [`GraphStore::event_outbox`], relayed by the instance (`Backends::graph_outbox`).
//! **None of this has ever run against a Neo4j server**: the development machine has none.
//! It is compiled, linted and unit-tested (statement parameters, payloads, keys); the
//! conformance suite, outbox check included, runs only where `ZEROCAST_NEO4J_URI` is set.
//!
//! # Model
//!
//! ```text
//! (:User {id, followers, following, display_name, avatar_url, bio, updated_at})
//! (:User)-[:FOLLOWS {since}]->(:User)
//! (:ZcOutboxSeq {node, seq})                   one counter per instance node id
//! (:ZcOutbox {node, seq, key, payload})        one record per follow/unfollow that changed
//! ```
//!
//! `id` is the user's UUID as lower-case hyphenated text, so string order is the order of
//! [`UserId`]. `followers`/`following` are counters kept in the same transaction as the edges,
//! so [`counts`](GraphStore::counts) is one index lookup. A `:User` node exists once the user
//! has a profile or took part in a follow; a profile exists when `display_name` is set. Times
//! are Unix ms stored as integers (values above `i64::MAX` are refused).
//!
//! At [`Neo4jGraph::connect`] the uniqueness constraint on `:User(id)` (which also serves every
//! lookup by id), a range index on `:User(followers)` (for `popular`), a uniqueness constraint
//! on `:ZcOutboxSeq(node)` and a composite range index on `:ZcOutbox(node, seq)` are created if
//! absent.
//!
//! # Writes and concurrency
//!
//! `follow` and `unfollow` are ONE Cypher statement each, run in one explicit transaction:
//!
//! 1. `UNWIND` both ids (smaller first) and `MERGE` the two `:User` nodes. The uniqueness
//!    constraint makes a concurrent `MERGE` of the same id wait on the constraint's index-entry
//!    lock, so a user node is never duplicated.
//! 2. `SET u._lock = true` on both: a property write takes the node's exclusive write lock,
//!    held until commit (the Operations Manual's explicit-locking idiom against lost updates).
//!    The aggregation after it is a barrier: both locks are held before anything else runs, and
//!    they are taken in id order, which keeps `follow(a, b)` racing `follow(b, a)` from
//!    deadlocking in the common case.
//! 3. `MERGE (a)-[r:FOLLOWS]->(b) ON CREATE SET r.since = $now, r._new = true`. Every writer
//!    of an `a→b` edge holds both locks from step 2 until it commits, so this `MERGE` runs
//!    strictly after any earlier writer committed and reads its result (read-committed reads
//!    the latest committed state): exactly one of N concurrent duplicates creates the edge.
//!    We do not rely on `MERGE`'s own relationship locking, which changed with Neo4j 4.3's
//!    dense-node relationship-group locks.
//! 4. `r._new` tells whether this transaction created the edge; it is removed with the locks,
//!    and only then are `a.following` and `b.followers` incremented (still under the locks, so
//!    no increment is lost). The statement returns `created`.
//!
//! `unfollow` locks the same way (without creating nodes), re-reads the edge under the locks,
//! and deletes it and decrements both counters only if it was there, returning `removed`. So
//! 32 racing unfollows remove the edge once. `follow(a, a)` is [`GraphError::SelfFollow`]
//! before any query. A transaction that fails with a transient error (a detected deadlock) is
//! retried with backoff until the operation's deadline; the statements are idempotent.
//!
//! # Events
//!
//! Inside the `FOREACH` that runs only when the edge was created (removed), after the
//! counters, both statements also run
//!
//! ```text
//! MERGE (s:ZcOutboxSeq {node: $node})
//! SET s._lock = true
//! SET s.seq = coalesce(s.seq, 0) + 1
//! REMOVE s._lock
//! CREATE (:ZcOutbox {node: $node, seq: s.seq, key: $key, payload: $payload})
//! ```
//!
//! `$payload` is the [`Event`] as JSON (the form the other outboxes store), built in Rust
//! before the statement runs: [`Event::Followed`] with `since = $now` (the edge's time, since
//! only a created edge writes it) or [`Event::Unfollowed`]. `$key` is `user:<followee id>`, for
//! people reading the outbox; the relay derives the bus key from the event. `$node` is
//! [`Neo4jOptions::node`], the instance's node id. So:
//!
//! - The record commits or rolls back with the edge and the counters (one transaction); a
//!   follow that found the edge, an unfollow that found none, and a self-follow (refused
//!   before any query) write nothing.
//! - The counter's write lock is held to commit, and every writer takes it last (after both
//!   user locks and the edge), so one node's records commit in `seq` order and no committed
//!   number is ever below one a reader has already seen: a relay reading `seq > after` skips
//!   nothing. A rolled-back transaction also rolls back its increment. The counter is never
//!   deleted, so numbers are not reused after an acknowledgement or a restart. The
//!   uniqueness constraint keeps two first writers from creating two counters.
//! - [`Outbox::outbox_read`] returns `seq > after` in order (auto-commit read, through the
//!   composite index); [`Outbox::outbox_ack`] deletes `seq <= up_to` in one retried write
//!   transaction. As with every outbox, delivery is at least once.
//! - Neo4j reads are read-committed, not snapshots: a read could miss a record that commits
//!   while it runs yet see a later one, and acknowledging the later one would delete the
//!   missed one unpublished. Since one node's committed numbers are dense (an increment rolls
//!   back with its transaction) a read hands out rows only up to the first gap between two of
//!   them, and when its first row is not `after + 1` (normal after a restart, or the symptom)
//!   it reads again: every record that committed before the first read ended is then seen.
//!
//! Not guaranteed: order across nodes (as with messages), and throughput beyond one write
//! lock per node: every follow and unfollow through one instance serialises on its counter
//! for the length of its transaction.
//!
//! # Reads
//!
//! Auto-commit, parameterised statements (user data is never spliced into Cypher text; every
//! statement is a `const`, and a unit test checks that each `$param` it uses is bound by the
//! code that runs it and nothing else is). Lists are ordered `r.since DESC, other.id DESC` and
//! continue after a [`Cursor`] with `r.since < $since OR (r.since = $since AND other.id <
//! $after_id)`; without a cursor the bound is `(i64::MAX, "~")`, above every stored edge.
//! `friends` are ordered by when *the user* followed them. Recommendations expand the
//! `max_followings` most recent followings, from each of them the `max_fanout` most recent of
//! its followings (`collect(c)[0..$max_fanout]`, valid on Neo4j 4.4, 5 and Cypher 25), drop the
//! user and accounts already followed, count distinct paths per candidate and rank by paths,
//! followers, id. A user who follows nobody gets [`popular`](GraphStore::popular) (accounts
//! with at least one follower, by the index on `followers`), without themself.
//!
//! # Timeouts
//!
//! Every operation has a deadline ([`Neo4jOptions::timeout`], 2 s by default); past it the
//! call returns [`GraphError::Backend`]. The driver's work runs in a spawned task that the
//! deadline *abandons* but does not cancel: cancelling `neo4rs` between a request and its
//! response would return the connection to the pool with an unread response, and the pool's
//! `RESET` check reads one message only, so the next query on that connection could read the
//! previous one's answer. An abandoned task finishes (or fails) on its own and returns a clean
//! connection. Abandoned tasks keep their slot in a semaphore of
//! [`Neo4jOptions::max_in_flight`], so a stalled server costs bounded memory and further calls
//! fail at their deadline instead of queueing. (A connection to a host that vanished without a
//! TCP reset stays stalled until the OS gives up on it; the driver sets no keepalive.)
//!
//! # Limits
//!
//! - Neo4j cannot read one node's relationships in property order, so a page of followers of
//!   an account with N followers costs O(N) on the server (a top-k sort), and
//!   `recommendations` expands every edge of each expanded following before keeping the most
//!   recent `max_fanout`.
//! - `neo4j://` URIs are accepted, but `neo4rs` 0.8 has no client-side routing: point it at a
//!   single server (or a cluster member that accepts writes).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use neo4rs::{BoltType, ConfigBuilder, Graph, Neo4jErrorKind, Query};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use uuid::Uuid;

use crate::graph::{
    Counts, Cursor, Edge, GraphError, GraphStore, Profile, RecommendLimits, Recommendation,
};
use crate::id::UserId;
use crate::messaging::model::{Event, EventKey};
use crate::messaging::store::{Outbox, StoreError};

/// The Bolt port used when the URI names none.
pub const DEFAULT_PORT: u16 = 7687;
/// Default deadline of one graph operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Environment variable naming the server; the graph stays embedded when it is unset.
pub const URI_ENV: &str = "ZEROCAST_NEO4J_URI";
/// Environment variable with the user name (default `neo4j`).
pub const USER_ENV: &str = "ZEROCAST_NEO4J_USER";
/// Environment variable with the password (default empty, for a server without auth).
pub const PASSWORD_ENV: &str = "ZEROCAST_NEO4J_PASSWORD";
/// Bound used instead of a cursor: above every stored `(since, id)`.
const NO_CURSOR_ID: &str = "~";

fn backend(op: &str, e: impl fmt::Display) -> GraphError {
    GraphError::Backend(format!("neo4j {op}: {e}"))
}

fn corrupt(what: &str) -> GraphError {
    GraphError::Backend(format!("neo4j: unexpected stored value: {what}"))
}

// ---------------------------------------------------------------------------------------------
// Connection settings
// ---------------------------------------------------------------------------------------------

/// A parsed `ZEROCAST_NEO4J_URI`: `[scheme://]host[:port][/]` with scheme `bolt` (default),
/// `bolt+s`, `bolt+ssc`, `neo4j`, `neo4j+s` or `neo4j+ssc` and port 7687 by default.
/// Credentials, a path (database) or a query are refused: they have their own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neo4jUri {
    /// Scheme, lower-cased.
    pub scheme: String,
    /// Host name, IPv4 address, or IPv6 address in brackets.
    pub host: String,
    /// Bolt port.
    pub port: u16,
}

impl Neo4jUri {
    /// Parses `uri`; see the type docs.
    pub fn parse(uri: &str) -> Result<Self, GraphError> {
        let bad = |why: &str| GraphError::Backend(format!("bad Neo4j URI {uri:?}: {why}"));
        let trimmed = uri.trim();
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("bolt".to_owned(), trimmed),
        };
        if !matches!(
            scheme.as_str(),
            "bolt" | "bolt+s" | "bolt+ssc" | "neo4j" | "neo4j+s" | "neo4j+ssc"
        ) {
            return Err(bad(&format!("unknown scheme {scheme:?}")));
        }
        if rest.contains(['?', '#']) {
            return Err(bad("query strings and fragments are not supported"));
        }
        let authority = match rest.split_once('/') {
            Some((a, "")) => a,
            Some(_) => {
                return Err(bad(
                    "a path is not supported (database: ZEROCAST_NEO4J_DATABASE)",
                ))
            }
            None => rest,
        };
        if authority.contains('@') {
            return Err(bad(&format!(
                "credentials in the URI are not supported ({USER_ENV}, {PASSWORD_ENV})"
            )));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        Ok(Self { scheme, host, port })
    }
}

impl fmt::Display for Neo4jUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(a: &str) -> Option<(String, u16)> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
    if let Some(v6) = a.strip_prefix('[') {
        let (addr, tail) = v6.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        let p = match tail {
            "" => DEFAULT_PORT,
            t => port(t.strip_prefix(':')?)?,
        };
        return Some((format!("[{addr}]"), p));
    }
    let (host, p) = match a.split_once(':') {
        Some((h, p)) => (h, port(p)?),
        None => (a, DEFAULT_PORT),
    };
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    ok.then(|| (host.to_owned(), p))
}

/// Tunables of [`Neo4jGraph::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Neo4jOptions {
    /// Deadline of each operation, retries included (default 2 s).
    pub timeout: Duration,
    /// Deadline of connecting and creating the schema (default 30 s).
    pub connect_timeout: Duration,
    /// Size of the connection pool (default 16).
    pub max_connections: usize,
    /// Operations running at once, including ones abandoned at their deadline that have not
    /// finished yet (default 4 × `max_connections`).
    pub max_in_flight: usize,
    /// Database to use; the server's `neo4j` database when `None`.
    pub database: Option<String>,
    /// Rows fetched per round trip (default 500).
    pub fetch_size: usize,
    /// This instance's node id (default 0): follows and unfollows write their events to this
    /// node's outbox, which this instance's relay reads. Two instances must not share one.
    pub node: u16,
}

impl Default for Neo4jOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(30),
            max_connections: 16,
            max_in_flight: 64,
            database: None,
            fetch_size: 500,
            node: 0,
        }
    }
}

impl Neo4jOptions {
    /// Defaults, then the process environment; see [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Self, GraphError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Defaults, then `ZEROCAST_NEO4J_TIMEOUT_MS`, `ZEROCAST_NEO4J_CONNECT_TIMEOUT_MS`,
    /// `ZEROCAST_NEO4J_MAX_CONNECTIONS` (1-1024; `max_in_flight` follows at 4×) and
    /// `ZEROCAST_NEO4J_DATABASE`, read through `get`. Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, GraphError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bad = |k: &str, v: &str, want: &str| {
            GraphError::Backend(format!("bad {k}={v:?}: want {want}"))
        };
        let mut o = Self::default();
        let ms = |k: &str| -> Result<Option<Duration>, GraphError> {
            get(k)
                .map(|v| {
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| (1..=3_600_000).contains(n))
                        .map(Duration::from_millis)
                        .ok_or_else(|| bad(k, &v, "milliseconds, 1 to 3600000"))
                })
                .transpose()
        };
        if let Some(t) = ms("ZEROCAST_NEO4J_TIMEOUT_MS")? {
            o.timeout = t;
        }
        if let Some(t) = ms("ZEROCAST_NEO4J_CONNECT_TIMEOUT_MS")? {
            o.connect_timeout = t;
        }
        if let Some(v) = get("ZEROCAST_NEO4J_MAX_CONNECTIONS") {
            let k = "ZEROCAST_NEO4J_MAX_CONNECTIONS";
            o.max_connections = v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| bad(k, &v, "1 to 1024"))?;
            o.max_in_flight = o.max_connections * 4;
        }
        if let Some(v) = get("ZEROCAST_NEO4J_DATABASE") {
            o.database = Some(validate_database(&v)?);
        }
        Ok(o)
    }
}

/// A Neo4j database name: letters, digits, `.` and `-`, starting with a letter, 3-63 chars.
fn validate_database(db: &str) -> Result<String, GraphError> {
    let ok = (3..=63).contains(&db.len())
        && db.starts_with(|c: char| c.is_ascii_alphabetic())
        && db
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    if ok {
        Ok(db.to_ascii_lowercase())
    } else {
        Err(GraphError::Backend(format!(
            "bad Neo4j database name {db:?}: letters, digits, . and - (starting with a letter), \
             3 to 63 characters"
        )))
    }
}

/// Everything [`Neo4jGraph::connect`] needs, as `zerocast serve` reads it from the
/// environment.
#[derive(Clone)]
pub struct Neo4jSettings {
    /// The server.
    pub uri: Neo4jUri,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Tunables.
    pub options: Neo4jOptions,
}

impl fmt::Debug for Neo4jSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Neo4jSettings")
            .field("uri", &self.uri)
            .field("user", &self.user)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Neo4jSettings {
    /// From the process environment; see [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Option<Self>, GraphError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// `None` when [`URI_ENV`] is unset or empty; else the parsed URI, [`USER_ENV`] (default
    /// `neo4j`), [`PASSWORD_ENV`] (default empty) and [`Neo4jOptions::from_lookup`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, GraphError> {
        let Some(uri) = get(URI_ENV).filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        Ok(Some(Self {
            uri: Neo4jUri::parse(&uri)?,
            user: get(USER_ENV)
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "neo4j".to_owned()),
            password: get(PASSWORD_ENV).unwrap_or_default(),
            options: Neo4jOptions::from_lookup(&get)?,
        }))
    }

    /// [`Neo4jGraph::connect`] with these settings.
    pub async fn connect(self) -> Result<Neo4jGraph, GraphError> {
        Neo4jGraph::connect(
            &self.uri.to_string(),
            &self.user,
            &self.password,
            self.options,
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------------

/// Uniqueness of `:User(id)`; its index serves every lookup by id.
const SCHEMA_USER_ID: &str =
    "CREATE CONSTRAINT user_id IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE";

/// Range index on the follower counter, for `popular`.
const SCHEMA_USER_FOLLOWERS: &str =
    "CREATE INDEX user_followers IF NOT EXISTS FOR (u:User) ON (u.followers)";

/// One sequence counter per node: a concurrent first `MERGE` of a node's counter waits on
/// this constraint's index-entry lock instead of creating a second counter.
const SCHEMA_OUTBOX_SEQ: &str = "CREATE CONSTRAINT zc_outbox_seq_node IF NOT EXISTS \
     FOR (s:ZcOutboxSeq) REQUIRE s.node IS UNIQUE";

/// Composite range index serving the outbox read (`node` equal, `seq` above the cursor, in
/// order) and the acknowledgement. Not a composite uniqueness constraint, which Neo4j 4.4
/// lacks: the counter already makes `(node, seq)` unique.
const SCHEMA_OUTBOX: &str =
    "CREATE INDEX zc_outbox_node_seq IF NOT EXISTS FOR (o:ZcOutbox) ON (o.node, o.seq)";

const PUT_PROFILE: &str = "
MERGE (u:User {id: $id})
  ON CREATE SET u.followers = 0, u.following = 0
SET u.display_name = $display_name,
    u.avatar_url = $avatar_url,
    u.bio = $bio,
    u.updated_at = $updated_at";

const PROFILES: &str = "
UNWIND $ids AS wanted
MATCH (u:User {id: wanted})
WHERE u.display_name IS NOT NULL
RETURN u.id AS id, u.display_name AS display_name, u.avatar_url AS avatar_url,
       u.bio AS bio, u.updated_at AS updated_at";

/// See the module docs, "Writes and concurrency". `$pair` is `[$from, $to]` sorted.
const FOLLOW: &str = "
UNWIND $pair AS uid
MERGE (u:User {id: uid})
  ON CREATE SET u.followers = 0, u.following = 0
SET u._lock = true
WITH count(u) AS locked
MATCH (a:User {id: $from})
MATCH (b:User {id: $to})
MERGE (a)-[r:FOLLOWS]->(b)
  ON CREATE SET r.since = $now, r._new = true
WITH a, b, r, coalesce(r._new, false) AS created
REMOVE r._new, a._lock, b._lock
FOREACH (once IN CASE WHEN created THEN [1] ELSE [] END |
  SET a.following = coalesce(a.following, 0) + 1,
      b.followers = coalesce(b.followers, 0) + 1
  MERGE (s:ZcOutboxSeq {node: $node})
  SET s._lock = true
  SET s.seq = coalesce(s.seq, 0) + 1
  REMOVE s._lock
  CREATE (:ZcOutbox {node: $node, seq: s.seq, key: $key, payload: $payload}))
RETURN created";

/// The mirror of [`FOLLOW`]; creates no node.
const UNFOLLOW: &str = "
UNWIND $pair AS uid
OPTIONAL MATCH (u:User {id: uid})
FOREACH (n IN CASE WHEN u IS NULL THEN [] ELSE [u] END | SET n._lock = true)
WITH collect(u) AS locked
OPTIONAL MATCH (a:User {id: $from})-[r:FOLLOWS]->(b:User {id: $to})
WITH locked, a, b, r, r IS NOT NULL AS removed
FOREACH (once IN CASE WHEN removed THEN [1] ELSE [] END |
  DELETE r
  SET a.following = coalesce(a.following, 1) - 1,
      b.followers = coalesce(b.followers, 1) - 1
  MERGE (s:ZcOutboxSeq {node: $node})
  SET s._lock = true
  SET s.seq = coalesce(s.seq, 0) + 1
  REMOVE s._lock
  CREATE (:ZcOutbox {node: $node, seq: s.seq, key: $key, payload: $payload}))
FOREACH (n IN locked | REMOVE n._lock)
RETURN removed";

const IS_FOLLOWING: &str = "
MATCH (a:User {id: $from})-[r:FOLLOWS]->(b:User {id: $to})
RETURN count(r) > 0 AS following";

const FOLLOWERS: &str = "
MATCH (me:User {id: $user})<-[r:FOLLOWS]-(other:User)
WHERE r.since < $since OR (r.since = $since AND other.id < $after_id)
RETURN other.id AS id, r.since AS since
ORDER BY since DESC, id DESC
LIMIT $limit";

const FOLLOWING: &str = "
MATCH (me:User {id: $user})-[r:FOLLOWS]->(other:User)
WHERE r.since < $since OR (r.since = $since AND other.id < $after_id)
RETURN other.id AS id, r.since AS since
ORDER BY since DESC, id DESC
LIMIT $limit";

/// Both directions; ordered and paged by when the user followed the friend.
const FRIENDS: &str = "
MATCH (me:User {id: $user})-[r:FOLLOWS]->(other:User)-[:FOLLOWS]->(me)
WHERE r.since < $since OR (r.since = $since AND other.id < $after_id)
RETURN other.id AS id, r.since AS since
ORDER BY since DESC, id DESC
LIMIT $limit";

const COUNTS: &str = "
OPTIONAL MATCH (u:User {id: $user})
RETURN coalesce(u.followers, 0) AS followers, coalesce(u.following, 0) AS following";

/// Two `MATCH` clauses, so `common_following(a, a)` is everything `a` follows.
const COMMON_FOLLOWING: &str = "
MATCH (a:User {id: $a})-[:FOLLOWS]->(c:User)
MATCH (b:User {id: $b})-[:FOLLOWS]->(c)
RETURN c.id AS id, 0 AS paths, coalesce(c.followers, 0) AS followers
ORDER BY followers DESC, id ASC
LIMIT $limit";

const RECOMMENDATIONS: &str = "
MATCH (me:User {id: $user})-[f:FOLLOWS]->(x:User)
WITH me, x, f.since AS followed
ORDER BY followed DESC, x.id DESC
LIMIT $max_followings
MATCH (x)-[g:FOLLOWS]->(c:User)
WITH me, x, c, g.since AS fanned
ORDER BY fanned DESC, c.id DESC
WITH me, x, collect(c)[0..$max_fanout] AS fanout
UNWIND fanout AS c
WITH me, x, c
WHERE c <> me AND NOT (me)-[:FOLLOWS]->(c)
WITH c, count(DISTINCT x) AS paths
RETURN c.id AS id, paths, coalesce(c.followers, 0) AS followers
ORDER BY paths DESC, followers DESC, id ASC
LIMIT $limit";

const POPULAR: &str = "
MATCH (u:User)
WHERE u.followers > 0
RETURN u.id AS id, 0 AS paths, u.followers AS followers
ORDER BY followers DESC, id ASC
LIMIT $limit";

/// Records of one node after a cursor, in sequence order (the composite index).
const OUTBOX_READ: &str = "
MATCH (o:ZcOutbox {node: $node})
WHERE o.seq > $after
RETURN o.seq AS seq, o.payload AS payload
ORDER BY seq ASC
LIMIT $limit";

/// Forgets one node's records up to and including a sequence number. The counter node stays,
/// so a later record never reuses an acknowledged number.
const OUTBOX_ACK: &str = "
MATCH (o:ZcOutbox {node: $node})
WHERE o.seq <= $up_to
DELETE o";

/// Every statement with its name, for the tests that check them.
#[cfg(test)]
const STATEMENTS: [(&str, &str); 18] = [
    ("schema_user_id", SCHEMA_USER_ID),
    ("schema_user_followers", SCHEMA_USER_FOLLOWERS),
    ("schema_outbox_seq", SCHEMA_OUTBOX_SEQ),
    ("schema_outbox", SCHEMA_OUTBOX),
    ("put_profile", PUT_PROFILE),
    ("profiles", PROFILES),
    ("follow", FOLLOW),
    ("unfollow", UNFOLLOW),
    ("is_following", IS_FOLLOWING),
    ("followers", FOLLOWERS),
    ("following", FOLLOWING),
    ("friends", FRIENDS),
    ("counts", COUNTS),
    ("common_following", COMMON_FOLLOWING),
    ("recommendations", RECOMMENDATIONS),
    ("popular", POPULAR),
    ("outbox_read", OUTBOX_READ),
    ("outbox_ack", OUTBOX_ACK),
];

/// A user id as stored: lower-case hyphenated UUID text (ordered like [`UserId`]).
fn uid(u: UserId) -> String {
    u.0.hyphenated().to_string()
}

fn parse_uid(s: &str) -> Result<UserId, GraphError> {
    Uuid::parse_str(s)
        .map(UserId)
        .map_err(|_| corrupt(&format!("user id {s:?}")))
}

/// A time in Unix ms as a Neo4j integer.
fn ms(v: u64, what: &str) -> Result<i64, GraphError> {
    i64::try_from(v).map_err(|_| GraphError::Backend(format!("{what} {v} is out of range")))
}

fn count(v: i64, what: &str) -> Result<u64, GraphError> {
    u64::try_from(v).map_err(|_| corrupt(&format!("negative {what} {v}")))
}

fn limit_v(n: usize) -> BoltType {
    BoltType::from(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `(since, after_id)` of the page condition: strictly older than the cursor, or everything.
fn cursor_params(after: Option<Cursor>) -> (i64, String) {
    match after {
        // Stored times fit in i64, so a later cursor admits every edge.
        Some(c) => match i64::try_from(c.since) {
            Ok(s) => (s, uid(c.user)),
            Err(_) => (i64::MAX, NO_CURSOR_ID.to_owned()),
        },
        None => (i64::MAX, NO_CURSOR_ID.to_owned()),
    }
}

/// The stored form of an outbox event: its JSON, as the embedded and ScyllaDB outboxes keep it
/// (and as the bus carries it).
fn outbox_payload(e: &Event) -> Result<String, GraphError> {
    serde_json::to_string(e).map_err(|err| backend("outbox payload", err))
}

/// The record's bus key as text, for operators reading the outbox: `user:<followee uuid>` for
/// a graph event (the same key as [`EventKey::to_bytes`], spelled out), the conversation's
/// `dm:<a>:<b>` otherwise. The relay does not read it: the key is derived from the payload.
fn outbox_key(e: &Event) -> String {
    match e.key() {
        EventKey::Followee(u) => format!("user:{}", uid(u)),
        EventKey::Conversation(c) => c.to_string(),
    }
}

/// One outbox row back to `(seq, event)`.
fn outbox_record(seq: i64, payload: &str) -> Result<(u64, Event), StoreError> {
    let seq = u64::try_from(seq)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| StoreError::Backend(format!("neo4j outbox: bad seq {seq}")))?;
    let event = serde_json::from_str(payload)
        .map_err(|e| StoreError::Backend(format!("neo4j outbox: record {seq}: {e}")))?;
    Ok((seq, event))
}

/// How much of an outbox read to hand out, and whether to read again first: the rows up to
/// the first gap between two of them (one node's sequence numbers are dense: a rolled-back
/// transaction rolls back its increment too), and whether the first row is not `after + 1`.
/// That gap is normal after a restart (the relay starts at `after` 0, past acknowledged
/// records); it is also how a record missed by a read it committed during shows, so the
/// caller confirms it with a second read (see the module docs, "Events").
fn contiguous(after: u64, seqs: impl Iterator<Item = u64>) -> (usize, bool) {
    let mut prev: Option<u64> = None;
    let mut gap_first = false;
    let mut n = 0;
    for s in seqs {
        match prev {
            None => gap_first = Some(s) != after.checked_add(1),
            Some(p) if Some(s) != p.checked_add(1) => break,
            Some(_) => {}
        }
        prev = Some(s);
        n += 1;
    }
    (n, gap_first)
}

/// An outbox cursor (`after` or `up_to`) as a Neo4j integer: stored sequence numbers are
/// positive `i64`, so anything larger means "all of them".
fn seq_param(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A statement with the values of its parameters. Built only by the constructors below, each
/// of which the unit tests check against the statement text.
#[derive(Debug, Clone)]
struct Bound {
    name: &'static str,
    cypher: &'static str,
    params: Vec<(&'static str, BoltType)>,
}

impl Bound {
    fn new(
        name: &'static str,
        cypher: &'static str,
        params: Vec<(&'static str, BoltType)>,
    ) -> Self {
        debug_assert_eq!(
            {
                let mut k: Vec<&str> = params.iter().map(|(k, _)| *k).collect();
                k.sort_unstable();
                k
            },
            param_names(cypher),
            "{name}"
        );
        Self {
            name,
            cypher,
            params,
        }
    }

    fn query(&self) -> Query {
        neo4rs::query(self.cypher).params(self.params.iter().map(|(k, v)| (*k, v.clone())))
    }

    fn schema() -> [Self; 4] {
        [
            Self::new("schema_user_id", SCHEMA_USER_ID, vec![]),
            Self::new("schema_user_followers", SCHEMA_USER_FOLLOWERS, vec![]),
            Self::new("schema_outbox_seq", SCHEMA_OUTBOX_SEQ, vec![]),
            Self::new("schema_outbox", SCHEMA_OUTBOX, vec![]),
        ]
    }

    fn put_profile(p: &Profile) -> Result<Self, GraphError> {
        Ok(Self::new(
            "put_profile",
            PUT_PROFILE,
            vec![
                ("id", uid(p.id).into()),
                ("display_name", p.display_name.clone().into()),
                ("avatar_url", p.avatar_url.clone().into()),
                ("bio", p.bio.clone().into()),
                ("updated_at", ms(p.updated_at, "updated_at")?.into()),
            ],
        ))
    }

    fn profiles(ids: Vec<String>) -> Self {
        Self::new("profiles", PROFILES, vec![("ids", ids.into())])
    }

    fn pair(from: UserId, to: UserId) -> BoltType {
        let (lo, hi) = if from <= to { (from, to) } else { (to, from) };
        vec![uid(lo), uid(hi)].into()
    }

    /// `node` is whose outbox gets the [`Event::Followed`] if the edge is created.
    fn follow(from: UserId, to: UserId, now_ms: u64, node: u16) -> Result<Self, GraphError> {
        let event = Event::Followed {
            v: Event::VERSION,
            follower: from,
            followee: to,
            since: now_ms,
        };
        Ok(Self::new(
            "follow",
            FOLLOW,
            vec![
                ("pair", Self::pair(from, to)),
                ("from", uid(from).into()),
                ("to", uid(to).into()),
                ("now", ms(now_ms, "follow time")?.into()),
                ("node", i64::from(node).into()),
                ("key", outbox_key(&event).into()),
                ("payload", outbox_payload(&event)?.into()),
            ],
        ))
    }

    /// `node` is whose outbox gets the [`Event::Unfollowed`] if the edge is removed.
    fn unfollow(from: UserId, to: UserId, node: u16) -> Result<Self, GraphError> {
        let event = Event::Unfollowed {
            v: Event::VERSION,
            follower: from,
            followee: to,
        };
        Ok(Self::new(
            "unfollow",
            UNFOLLOW,
            vec![
                ("pair", Self::pair(from, to)),
                ("from", uid(from).into()),
                ("to", uid(to).into()),
                ("node", i64::from(node).into()),
                ("key", outbox_key(&event).into()),
                ("payload", outbox_payload(&event)?.into()),
            ],
        ))
    }

    fn outbox_read(node: u16, after: i64, limit: usize) -> Self {
        Self::new(
            "outbox_read",
            OUTBOX_READ,
            vec![
                ("node", i64::from(node).into()),
                ("after", after.into()),
                ("limit", limit_v(limit)),
            ],
        )
    }

    fn outbox_ack(node: u16, up_to: i64) -> Self {
        Self::new(
            "outbox_ack",
            OUTBOX_ACK,
            vec![("node", i64::from(node).into()), ("up_to", up_to.into())],
        )
    }

    fn is_following(from: UserId, to: UserId) -> Self {
        Self::new(
            "is_following",
            IS_FOLLOWING,
            vec![("from", uid(from).into()), ("to", uid(to).into())],
        )
    }

    fn page(
        name: &'static str,
        cypher: &'static str,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Self {
        let (since, after_id) = cursor_params(after);
        Self::new(
            name,
            cypher,
            vec![
                ("user", uid(user).into()),
                ("since", since.into()),
                ("after_id", after_id.into()),
                ("limit", limit_v(limit)),
            ],
        )
    }

    fn followers(user: UserId, after: Option<Cursor>, limit: usize) -> Self {
        Self::page("followers", FOLLOWERS, user, after, limit)
    }

    fn following(user: UserId, after: Option<Cursor>, limit: usize) -> Self {
        Self::page("following", FOLLOWING, user, after, limit)
    }

    fn friends(user: UserId, after: Option<Cursor>, limit: usize) -> Self {
        Self::page("friends", FRIENDS, user, after, limit)
    }

    fn counts(user: UserId) -> Self {
        Self::new("counts", COUNTS, vec![("user", uid(user).into())])
    }

    fn common_following(a: UserId, b: UserId, limit: usize) -> Self {
        Self::new(
            "common_following",
            COMMON_FOLLOWING,
            vec![
                ("a", uid(a).into()),
                ("b", uid(b).into()),
                ("limit", limit_v(limit)),
            ],
        )
    }

    fn recommendations(user: UserId, limit: usize, limits: RecommendLimits) -> Self {
        Self::new(
            "recommendations",
            RECOMMENDATIONS,
            vec![
                ("user", uid(user).into()),
                ("max_followings", limit_v(limits.max_followings)),
                ("max_fanout", limit_v(limits.max_fanout)),
                ("limit", limit_v(limit)),
            ],
        )
    }

    fn popular(limit: usize) -> Self {
        Self::new("popular", POPULAR, vec![("limit", limit_v(limit))])
    }
}

/// The distinct `$name` parameters of a statement, sorted (string literals skipped).
fn param_names(cypher: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let b = cypher.as_bytes();
    let mut quote = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' || c == b'`' => quote = Some(c),
            None if c == b'$' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                names.push(&cypher[start..end]);
                i = end;
                continue;
            }
            None => {}
        }
        i += 1;
    }
    names.sort_unstable();
    names.dedup();
    names
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ProfileRow {
    id: String,
    display_name: String,
    avatar_url: Option<String>,
    bio: Option<String>,
    updated_at: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct EdgeRow {
    id: String,
    since: i64,
}

impl EdgeRow {
    fn edge(self) -> Result<Edge, GraphError> {
        Ok(Edge {
            user: parse_uid(&self.id)?,
            since: count(self.since, "since")?,
        })
    }
}

#[derive(Debug, Deserialize)]
struct RankRow {
    id: String,
    paths: i64,
    followers: i64,
}

impl RankRow {
    fn recommendation(self) -> Result<Recommendation, GraphError> {
        Ok(Recommendation {
            user: parse_uid(&self.id)?,
            paths: count(self.paths, "paths")?,
            followers: count(self.followers, "followers")?,
        })
    }
}

#[derive(Debug, Deserialize)]
struct CountsRow {
    followers: i64,
    following: i64,
}

#[derive(Debug, Deserialize)]
struct CreatedRow {
    created: bool,
}

#[derive(Debug, Deserialize)]
struct RemovedRow {
    removed: bool,
}

#[derive(Debug, Deserialize)]
struct FollowingRow {
    following: bool,
}

#[derive(Debug, Deserialize)]
struct OutboxRow {
    seq: i64,
    payload: String,
}

fn one<R>(rows: Vec<R>, op: &str) -> Result<R, GraphError> {
    let n = rows.len();
    let mut it = rows.into_iter();
    match (it.next(), n) {
        (Some(r), 1) => Ok(r),
        _ => Err(backend(op, format!("expected one row, got {n}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Running statements
// ---------------------------------------------------------------------------------------------

/// Whether a failed transaction may be retried as is (a deadlock, a leader switch...).
/// Errors during `PULL`/`COMMIT` reach us as text only, hence the code match.
fn is_transient(e: &neo4rs::Error) -> bool {
    match e {
        neo4rs::Error::Neo4j(e) => e.kind() == Neo4jErrorKind::Transient,
        neo4rs::Error::UnexpectedMessage(m) => {
            m.contains("Neo.TransientError.")
                && !m.contains("Neo.TransientError.Transaction.Terminated")
                && !m.contains("Neo.TransientError.Transaction.LockClientStopped")
        }
        _ => false,
    }
}

fn decode<R: DeserializeOwned>(row: &neo4rs::Row) -> Result<R, neo4rs::Error> {
    row.to::<R>().map_err(neo4rs::Error::DeserializationError)
}

/// Runs a read in an auto-commit transaction and returns every row.
async fn read_rows<R: DeserializeOwned>(graph: Graph, q: Query) -> Result<Vec<R>, neo4rs::Error> {
    let mut stream = graph.execute(q).await?;
    let mut rows = Vec::new();
    while let Some(row) = stream.next().await? {
        rows.push(decode(&row)?);
    }
    Ok(rows)
}

/// Runs one statement in an explicit transaction and commits it.
async fn write_once<R: DeserializeOwned>(graph: &Graph, q: Query) -> Result<Vec<R>, neo4rs::Error> {
    let mut txn = graph.start_txn().await?;
    let mut stream = txn.execute(q).await?;
    let mut rows = Vec::new();
    while let Some(row) = stream.next(txn.handle()).await? {
        rows.push(decode(&row)?);
    }
    // On any error above, dropping `txn` returns the connection to the pool, whose `RESET`
    // rolls the transaction back.
    txn.commit().await?;
    Ok(rows)
}

/// [`write_once`], retried after transient failures while `deadline` allows.
async fn write_rows<R: DeserializeOwned>(
    graph: Graph,
    q: Query,
    deadline: Instant,
) -> Result<Vec<R>, neo4rs::Error> {
    let mut backoff = Duration::from_millis(4);
    loop {
        match write_once(&graph, q.clone()).await {
            Err(e) if is_transient(&e) => {
                // Jitter, so racing transactions do not meet again at the same moment.
                let jitter = Duration::from_micros((Uuid::new_v4().as_u128() % 4_000) as u64);
                let wait = backoff + jitter;
                if Instant::now() + wait >= deadline {
                    return Err(e);
                }
                tracing::debug!(error = %e, "neo4j: retrying transaction");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
            r => return r,
        }
    }
}

/// Runs `work` in its own task and waits for it until `deadline`; see the module docs,
/// "Timeouts". The task holds a permit of `slots` until it finishes, even when abandoned.
async fn run_bounded<T, F>(
    op: &str,
    deadline: Instant,
    limit: Duration,
    slots: &Arc<Semaphore>,
    work: F,
) -> Result<T, GraphError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, neo4rs::Error>> + Send + 'static,
{
    let timed_out = || backend(op, format!("no answer within {limit:?}"));
    let permit = match tokio::time::timeout_at(deadline, Arc::clone(slots).acquire_owned()).await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => return Err(backend(op, "closed")),
        Err(_) => return Err(timed_out()),
    };
    let task = tokio::spawn(async move {
        let _permit = permit;
        work.await
    });
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(r)) => r.map_err(|e| backend(op, e)),
        Ok(Err(join)) => Err(backend(op, join)),
        Err(_) => Err(timed_out()),
    }
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// The follow graph in Neo4j. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Neo4jGraph {
    inner: Arc<Inner>,
}

struct Inner {
    graph: Graph,
    uri: String,
    timeout: Duration,
    slots: Arc<Semaphore>,
    node: u16,
}

impl fmt::Debug for Neo4jGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Neo4jGraph")
            .field("uri", &self.inner.uri)
            .field("timeout", &self.inner.timeout)
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

impl Neo4jGraph {
    /// Connects to `uri` (see [`Neo4jUri`]) as `user`, then creates the constraints and indexes
    /// (the users' and the outbox's) if absent, all within [`Neo4jOptions::connect_timeout`].
    /// Fails with [`GraphError::Backend`] on a bad URI or option, an unreachable server, or
    /// refused credentials.
    pub async fn connect(
        uri: &str,
        user: &str,
        password: &str,
        options: Neo4jOptions,
    ) -> Result<Self, GraphError> {
        let parsed = Neo4jUri::parse(uri)?;
        if options.timeout.is_zero() || options.connect_timeout.is_zero() {
            return Err(GraphError::Backend(
                "Neo4j timeouts must be positive".into(),
            ));
        }
        let mut config = ConfigBuilder::default()
            .uri(parsed.to_string())
            .user(user)
            .password(password)
            .max_connections(options.max_connections.max(1))
            .fetch_size(options.fetch_size.max(1));
        if let Some(db) = &options.database {
            config = config.db(validate_database(db)?);
        }
        let config = config.build().map_err(|e| backend("config", e))?;
        let slots = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
        let deadline = Instant::now() + options.connect_timeout;
        let graph = run_bounded(
            "connect",
            deadline,
            options.connect_timeout,
            &slots,
            async move {
                let graph = Graph::connect(config).await?;
                for stmt in Bound::schema() {
                    graph.run(stmt.query()).await?;
                }
                Ok(graph)
            },
        )
        .await?;
        tracing::info!(uri = %parsed, "Neo4j follow graph ready");
        Ok(Self {
            inner: Arc::new(Inner {
                graph,
                uri: parsed.to_string(),
                timeout: options.timeout,
                slots,
                node: options.node,
            }),
        })
    }

    /// The per-operation deadline.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The node whose outbox this handle's follows and unfollows write to
    /// ([`Neo4jOptions::node`]).
    pub fn node(&self) -> u16 {
        self.inner.node
    }

    async fn read<R>(&self, b: Bound) -> Result<Vec<R>, GraphError>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let i = &self.inner;
        let deadline = Instant::now() + i.timeout;
        let work = read_rows::<R>(i.graph.clone(), b.query());
        run_bounded(b.name, deadline, i.timeout, &i.slots, work).await
    }

    async fn write<R>(&self, b: Bound) -> Result<Vec<R>, GraphError>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let i = &self.inner;
        let deadline = Instant::now() + i.timeout;
        let work = write_rows::<R>(i.graph.clone(), b.query(), deadline);
        run_bounded(b.name, deadline, i.timeout, &i.slots, work).await
    }

    async fn edges(&self, b: Bound, limit: usize) -> Result<Vec<Edge>, GraphError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read::<EdgeRow>(b)
            .await?
            .into_iter()
            .map(EdgeRow::edge)
            .collect()
    }
}

#[async_trait]
impl GraphStore for Neo4jGraph {
    async fn put_profile(&self, p: Profile) -> Result<(), GraphError> {
        self.write::<serde::de::IgnoredAny>(Bound::put_profile(&p)?)
            .await?;
        Ok(())
    }

    async fn profiles(&self, ids: &[UserId]) -> Result<Vec<Option<Profile>>, GraphError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut wanted: Vec<String> = ids.iter().map(|u| uid(*u)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut found = HashMap::new();
        for r in self.read::<ProfileRow>(Bound::profiles(wanted)).await? {
            let id = parse_uid(&r.id)?;
            let profile = Profile {
                id,
                display_name: r.display_name,
                avatar_url: r.avatar_url,
                bio: r.bio.unwrap_or_default(),
                updated_at: count(r.updated_at.unwrap_or(0), "updated_at")?,
            };
            found.insert(id, profile);
        }
        Ok(ids.iter().map(|u| found.get(u).cloned()).collect())
    }

    async fn follow(&self, from: UserId, to: UserId, now_ms: u64) -> Result<bool, GraphError> {
        if from == to {
            return Err(GraphError::SelfFollow);
        }
        let rows = self
            .write::<CreatedRow>(Bound::follow(from, to, now_ms, self.node())?)
            .await?;
        Ok(one(rows, "follow")?.created)
    }

    async fn unfollow(&self, from: UserId, to: UserId) -> Result<bool, GraphError> {
        if from == to {
            return Ok(false);
        }
        let rows = self
            .write::<RemovedRow>(Bound::unfollow(from, to, self.node())?)
            .await?;
        Ok(one(rows, "unfollow")?.removed)
    }

    fn event_outbox(&self) -> Option<(&dyn Outbox, u16)> {
        Some((self, self.node()))
    }

    async fn is_following(&self, from: UserId, to: UserId) -> Result<bool, GraphError> {
        if from == to {
            return Ok(false);
        }
        let rows = self
            .read::<FollowingRow>(Bound::is_following(from, to))
            .await?;
        Ok(one(rows, "is_following")?.following)
    }

    async fn followers(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        self.edges(Bound::followers(user, after, limit), limit)
            .await
    }

    async fn following(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        self.edges(Bound::following(user, after, limit), limit)
            .await
    }

    async fn counts(&self, user: UserId) -> Result<Counts, GraphError> {
        let r = one(self.read::<CountsRow>(Bound::counts(user)).await?, "counts")?;
        Ok(Counts {
            followers: count(r.followers, "followers")?,
            following: count(r.following, "following")?,
        })
    }

    async fn friends(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        self.edges(Bound::friends(user, after, limit), limit).await
    }

    async fn common_following(
        &self,
        a: UserId,
        b: UserId,
        limit: usize,
    ) -> Result<Vec<UserId>, GraphError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read::<RankRow>(Bound::common_following(a, b, limit))
            .await?
            .into_iter()
            .map(|r| parse_uid(&r.id))
            .collect()
    }

    async fn recommendations(
        &self,
        user: UserId,
        limit: usize,
        limits: RecommendLimits,
    ) -> Result<Vec<Recommendation>, GraphError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = self
            .read::<RankRow>(Bound::recommendations(user, limit, limits))
            .await?;
        if rows.is_empty() && self.counts(user).await?.following == 0 {
            let mut popular = self.popular(limit.saturating_add(1)).await?;
            popular.retain(|r| r.user != user);
            popular.truncate(limit);
            return Ok(popular);
        }
        rows.into_iter().map(RankRow::recommendation).collect()
    }

    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, GraphError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read::<RankRow>(Bound::popular(limit))
            .await?
            .into_iter()
            .map(RankRow::recommendation)
            .collect()
    }
}

/// The outbox of follow and unfollow events (see the module docs, "Events"). Reads are
/// auto-commit; an acknowledgement is one write transaction, retried like the others.
#[async_trait]
impl Outbox for Neo4jGraph {
    async fn outbox_read(
        &self,
        node: u16,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        // Stored seqs are positive i64: nothing is above a larger cursor.
        let Ok(cursor) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let read = || async {
            let rows = self
                .read::<OutboxRow>(Bound::outbox_read(node, cursor, limit))
                .await
                .map_err(store_err)?;
            rows.into_iter()
                .map(|r| outbox_record(r.seq, &r.payload))
                .collect::<Result<Vec<_>, StoreError>>()
        };
        // See the module docs, "Events": a read can miss a record that commits while it runs
        // yet see a later one. Stop before a gap; a gap right after the cursor is read again
        // (a second read sees every record that committed before the first one ended).
        let mut records = read().await?;
        let (mut keep, gap_first) = contiguous(after, records.iter().map(|(s, _)| *s));
        if gap_first {
            records = read().await?;
            keep = contiguous(after, records.iter().map(|(s, _)| *s)).0;
        }
        records.truncate(keep);
        Ok(records)
    }

    async fn outbox_ack(&self, node: u16, up_to: u64) -> Result<(), StoreError> {
        if up_to == 0 {
            return Ok(());
        }
        self.write::<serde::de::IgnoredAny>(Bound::outbox_ack(node, seq_param(up_to)))
            .await
            .map_err(store_err)?;
        Ok(())
    }
}

fn store_err(e: GraphError) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(n: u128) -> UserId {
        UserId(Uuid::from_u128(n))
    }

    #[test]
    fn uri_parsing() {
        let p = |s: &str| Neo4jUri::parse(s).map(|u| u.to_string());
        assert_eq!(p("localhost").unwrap(), "bolt://localhost:7687");
        assert_eq!(p(" db.internal:7688 ").unwrap(), "bolt://db.internal:7688");
        assert_eq!(p("bolt://10.0.0.5").unwrap(), "bolt://10.0.0.5:7687");
        assert_eq!(
            p("NEO4J+S://graph.example.com/").unwrap(),
            "neo4j+s://graph.example.com:7687"
        );
        assert_eq!(p("bolt+ssc://[::1]:9999").unwrap(), "bolt+ssc://[::1]:9999");
        assert_eq!(p("[fe80::1]").unwrap(), "bolt://[fe80::1]:7687");
        for bad in [
            "",
            "http://h",
            "bolt://",
            "bolt://h:0",
            "bolt://h:70000",
            "bolt://h:x",
            "bolt://user:pw@h",
            "bolt://h/mydb",
            "bolt://h?routing=x",
            "bolt://h#f",
            "bolt://a b",
            "bolt://[::1",
            "bolt://[nothex]:1",
            "bolt://h1,h2",
        ] {
            assert!(Neo4jUri::parse(bad).is_err(), "{bad:?} accepted");
        }
        // The message names the settings to use instead, and never echoes a secret elsewhere.
        let e = Neo4jUri::parse("bolt://u:secret@h")
            .unwrap_err()
            .to_string();
        assert!(e.contains(PASSWORD_ENV), "{e}");
    }

    #[test]
    fn options_from_lookup() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let d = Neo4jOptions::from_lookup(env(&[])).unwrap();
        assert_eq!(d, Neo4jOptions::default());
        assert_eq!(d.timeout, Duration::from_secs(2));
        let o = Neo4jOptions::from_lookup(env(&[
            ("ZEROCAST_NEO4J_TIMEOUT_MS", "750"),
            ("ZEROCAST_NEO4J_CONNECT_TIMEOUT_MS", " 5000 "),
            ("ZEROCAST_NEO4J_MAX_CONNECTIONS", "8"),
            ("ZEROCAST_NEO4J_DATABASE", "Graph-1"),
        ]))
        .unwrap();
        assert_eq!(o.timeout, Duration::from_millis(750));
        assert_eq!(o.connect_timeout, Duration::from_secs(5));
        assert_eq!((o.max_connections, o.max_in_flight), (8, 32));
        assert_eq!(o.database.as_deref(), Some("graph-1"));
        // Empty means unset.
        assert_eq!(
            Neo4jOptions::from_lookup(env(&[("ZEROCAST_NEO4J_TIMEOUT_MS", "")])).unwrap(),
            d
        );
        for (k, v) in [
            ("ZEROCAST_NEO4J_TIMEOUT_MS", "0"),
            ("ZEROCAST_NEO4J_TIMEOUT_MS", "2s"),
            ("ZEROCAST_NEO4J_CONNECT_TIMEOUT_MS", "-1"),
            ("ZEROCAST_NEO4J_MAX_CONNECTIONS", "0"),
            ("ZEROCAST_NEO4J_MAX_CONNECTIONS", "5000"),
            ("ZEROCAST_NEO4J_DATABASE", "x"),
            ("ZEROCAST_NEO4J_DATABASE", "1db"),
            ("ZEROCAST_NEO4J_DATABASE", "db`) MATCH"),
        ] {
            let get = move |name: &str| (name == k).then(|| v.to_owned());
            assert!(
                Neo4jOptions::from_lookup(get).is_err(),
                "{k}={v:?} accepted"
            );
        }
    }

    #[test]
    fn settings_from_lookup() {
        assert!(Neo4jSettings::from_lookup(|_| None).unwrap().is_none());
        assert!(
            Neo4jSettings::from_lookup(|k| (k == URI_ENV).then(|| " ".into()))
                .unwrap()
                .is_none()
        );
        let s = Neo4jSettings::from_lookup(|k| match k {
            URI_ENV => Some("graph:7687".into()),
            PASSWORD_ENV => Some("hunter2".into()),
            _ => None,
        })
        .unwrap()
        .unwrap();
        assert_eq!(s.uri.to_string(), "bolt://graph:7687");
        assert_eq!((s.user.as_str(), s.password.as_str()), ("neo4j", "hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"), "password in Debug");
        assert!(Neo4jSettings::from_lookup(|k| (k == URI_ENV).then(|| "http://x".into())).is_err());
    }

    #[test]
    fn cursor_bounds() {
        assert_eq!(cursor_params(None), (i64::MAX, "~".to_owned()));
        let c = Cursor {
            since: 1_700_000_000_000,
            user: u(0xabcdef),
        };
        assert_eq!(
            cursor_params(Some(c)),
            (
                1_700_000_000_000,
                "00000000-0000-0000-0000-000000abcdef".to_owned()
            )
        );
        // Beyond any storable time: everything is older.
        let far = Cursor {
            since: u64::MAX,
            user: u(1),
        };
        assert_eq!(cursor_params(Some(far)), cursor_params(None));
        // The no-cursor id sorts above every stored id, so the bound admits every edge.
        assert!(uid(UserId(Uuid::from_u128(u128::MAX))).as_str() < NO_CURSOR_ID);
        // The URL form round-trips.
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("x.y"), None);
    }

    #[test]
    fn stored_ids_sort_like_user_ids() {
        let mut ids: Vec<UserId> = (0..200).map(|_| UserId(Uuid::new_v4())).collect();
        ids.extend([u(0), u(u128::MAX), u(0xf << 64), u(0xa)]);
        let mut by_text = ids.clone();
        by_text.sort_by_key(|x| uid(*x));
        ids.sort();
        assert_eq!(ids, by_text);
        assert_eq!(parse_uid(&uid(u(42))).unwrap(), u(42));
        assert!(parse_uid("nope").is_err());
    }

    /// One constructor call per statement, with sample values.
    fn every_binding() -> Vec<Bound> {
        let p = Profile {
            id: u(1),
            display_name: "Ada".into(),
            avatar_url: None,
            bio: String::new(),
            updated_at: 5,
        };
        let c = Some(Cursor {
            since: 9,
            user: u(3),
        });
        let mut all = Bound::schema().to_vec();
        all.extend([
            Bound::put_profile(&p).unwrap(),
            Bound::profiles(vec![uid(u(1))]),
            Bound::follow(u(2), u(1), 7, 3).unwrap(),
            Bound::unfollow(u(1), u(2), 3).unwrap(),
            Bound::is_following(u(1), u(2)),
            Bound::followers(u(1), None, 10),
            Bound::following(u(1), c, 10),
            Bound::friends(u(1), c, 10),
            Bound::counts(u(1)),
            Bound::common_following(u(1), u(2), 10),
            Bound::recommendations(u(1), 10, RecommendLimits::default()),
            Bound::popular(10),
            Bound::outbox_read(3, 0, 512),
            Bound::outbox_ack(3, 7),
        ]);
        all
    }

    #[test]
    fn every_param_is_bound_and_every_binding_is_used() {
        let all = every_binding();
        for (name, cypher) in STATEMENTS.iter() {
            let b: Vec<&Bound> = all.iter().filter(|b| b.cypher == *cypher).collect();
            assert!(!b.is_empty(), "{name} has no binding under test");
            for b in b {
                assert_eq!(b.name, *name, "binding named after its statement");
                let mut keys: Vec<&str> = b.params.iter().map(|(k, _)| *k).collect();
                keys.sort_unstable();
                let n = keys.len();
                keys.dedup();
                assert_eq!(keys.len(), n, "{name}: a parameter bound twice");
                assert_eq!(keys, param_names(cypher), "{name}: {cypher}");
                let q = b.query();
                for k in param_names(cypher) {
                    assert!(q.has_param_key(k), "{name}: ${k} missing from the query");
                }
            }
        }
        assert_eq!(
            param_names("RETURN '$x' AS a, $y, $y, `$z`, \"$w\" + $v_2"),
            ["v_2", "y"]
        );
    }

    #[test]
    fn statements_are_well_formed() {
        for (name, cypher) in STATEMENTS.iter() {
            let balanced =
                |o: char, c: char| cypher.matches(o).count() == cypher.matches(c).count();
            assert!(
                balanced('(', ')') && balanced('[', ']') && balanced('{', '}'),
                "{name}"
            );
            assert_eq!(cypher.matches('\'').count() % 2, 0, "{name}");
            // Values only ever enter as parameters: no literal strings at all.
            assert!(!cypher.contains(['\'', '"']), "{name} has a string literal");
            // Every read and write names the label, so the id constraint's index applies.
            if cypher.contains("{id: ") {
                assert!(cypher.contains(":User {id: "), "{name}");
            }
        }
        // The write statements take both node locks (in id order) before touching the edge.
        for w in [FOLLOW, UNFOLLOW] {
            let lock = w
                .find("SET u._lock = true")
                .or_else(|| w.find("SET n._lock = true"));
            let edge = w.find("[r:FOLLOWS]").unwrap();
            assert!(lock.is_some_and(|l| l < edge), "{w}");
            assert!(w.contains("UNWIND $pair"), "{w}");
            assert!(w.contains("REMOVE"), "locks are cleared: {w}");
        }
        assert!(FOLLOW.contains("ON CREATE SET r.since = $now"));
        let Some(BoltType::List(pair)) = Bound::follow(u(9), u(2), 1, 0)
            .unwrap()
            .params
            .into_iter()
            .find(|(k, _)| *k == "pair")
            .map(|(_, v)| v)
        else {
            panic!("pair is a list");
        };
        let pair: Vec<String> = pair
            .value
            .into_iter()
            .filter_map(|v| match v {
                BoltType::String(s) => Some(s.value),
                _ => None,
            })
            .collect();
        assert_eq!(pair, [uid(u(2)), uid(u(9))], "smaller id first");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut p = Profile {
            id: u(1),
            display_name: "x".into(),
            avatar_url: None,
            bio: String::new(),
            updated_at: u64::MAX,
        };
        assert!(Bound::put_profile(&p).is_err());
        p.updated_at = 1;
        assert!(Bound::put_profile(&p).is_ok());
        assert!(Bound::follow(u(1), u(2), u64::MAX, 0).is_err());
        assert!(count(-1, "x").is_err());
        assert_eq!(count(3, "x").unwrap(), 3);
        assert!(matches!(limit_v(usize::MAX), BoltType::Integer(i) if i.value == i64::MAX));
    }

    #[test]
    fn transient_errors_are_recognised() {
        let pulled = |code: &str| {
            neo4rs::Error::UnexpectedMessage(format!(
                "unexpected response for PULL: Failure(Failure {{ metadata: {{code: {code:?}}} }})"
            ))
        };
        assert!(is_transient(&pulled(
            "Neo.TransientError.Transaction.DeadlockDetected"
        )));
        assert!(!is_transient(&pulled(
            "Neo.TransientError.Transaction.Terminated"
        )));
        assert!(!is_transient(&pulled(
            "Neo.ClientError.Statement.SyntaxError"
        )));
        assert!(!is_transient(&neo4rs::Error::ConnectionError));
    }

    #[test]
    fn outbox_payload_and_key() {
        let followed = Event::Followed {
            v: Event::VERSION,
            follower: u(1),
            followee: u(0xb),
            since: 7_000,
        };
        let unfollowed = Event::Unfollowed {
            v: Event::VERSION,
            follower: u(1),
            followee: u(0xb),
        };
        for e in [&followed, &unfollowed] {
            // The payload is the event's JSON (as the other outboxes store it) and decodes back.
            let p = outbox_payload(e).unwrap();
            assert_eq!(p, serde_json::to_string(e).unwrap());
            assert_eq!(outbox_record(5, &p).unwrap(), (5, e.clone()));
            // Keyed by the followee, like the bus key.
            assert_eq!(outbox_key(e), "user:00000000-0000-0000-0000-00000000000b");
        }
        let json: serde_json::Value =
            serde_json::from_str(&outbox_payload(&followed).unwrap()).unwrap();
        assert_eq!(json["type"], "graph.followed");
        assert_eq!(json["since"], 7_000);
        // Stored values that cannot come from this adapter are errors, not panics.
        let p = outbox_payload(&followed).unwrap();
        assert!(outbox_record(0, &p).is_err());
        assert!(outbox_record(-3, &p).is_err());
        assert!(outbox_record(1, "{").is_err());
        assert!(outbox_record(1, r#"{"type":"nope"}"#).is_err());
        // Cursors beyond the stored range mean "all of them".
        assert_eq!(seq_param(9), 9);
        assert_eq!(seq_param(u64::MAX), i64::MAX);
    }

    #[test]
    fn outbox_reads_stop_at_gaps() {
        let c = |after: u64, s: &[u64]| contiguous(after, s.iter().copied());
        assert_eq!(c(0, &[]), (0, false));
        assert_eq!(c(4, &[]), (0, false));
        assert_eq!(c(0, &[1, 2, 3]), (3, false));
        assert_eq!(c(4, &[5, 6, 7]), (3, false));
        // A record missed inside the batch: hand out the rows before it only.
        assert_eq!(c(4, &[5, 6, 8, 9]), (2, false));
        // Right after the cursor (or after a restart): confirmed by a second read.
        assert_eq!(c(4, &[6, 7]), (2, true));
        assert_eq!(c(0, &[1000, 1001, 1003]), (2, true));
        assert_eq!(c(u64::MAX, &[1]), (1, true));
    }

    #[test]
    fn follow_and_unfollow_carry_their_event() {
        let param = |b: &Bound, k: &str| -> BoltType {
            b.params
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{k} not bound"))
        };
        let text = |v: BoltType| match v {
            BoltType::String(s) => s.value,
            other => panic!("{other:?}"),
        };
        let f = Bound::follow(u(2), u(9), 1_234, 7).unwrap();
        assert!(matches!(param(&f, "node"), BoltType::Integer(i) if i.value == 7));
        let e: Event = serde_json::from_str(&text(param(&f, "payload"))).unwrap();
        assert_eq!(
            e,
            Event::Followed {
                v: Event::VERSION,
                follower: u(2),
                followee: u(9),
                since: 1_234,
            }
        );
        assert_eq!(text(param(&f, "key")), format!("user:{}", uid(u(9))));
        let un = Bound::unfollow(u(2), u(9), 7).unwrap();
        let e: Event = serde_json::from_str(&text(param(&un, "payload"))).unwrap();
        assert_eq!(
            e,
            Event::Unfollowed {
                v: Event::VERSION,
                follower: u(2),
                followee: u(9),
            }
        );
        let r = Bound::outbox_read(7, 0, usize::MAX);
        assert!(matches!(param(&r, "limit"), BoltType::Integer(i) if i.value == i64::MAX));
    }

    #[test]
    fn outbox_record_is_written_only_with_the_change() {
        // The outbox write sits inside the FOREACH that runs only when the edge was created
        // (removed), after the counters, and takes the node's counter lock before reading it.
        for (w, flag) in [(FOLLOW, "created"), (UNFOLLOW, "removed")] {
            let guard = w
                .find(&format!(
                    "FOREACH (once IN CASE WHEN {flag} THEN [1] ELSE [] END |"
                ))
                .unwrap();
            let merge = w.find("MERGE (s:ZcOutboxSeq {node: $node})").unwrap();
            let lock = w.find("SET s._lock = true").unwrap();
            let incr = w.find("SET s.seq = coalesce(s.seq, 0) + 1").unwrap();
            let create = w
                .find("CREATE (:ZcOutbox {node: $node, seq: s.seq, key: $key, payload: $payload}))")
                .unwrap();
            assert!(
                guard < merge && merge < lock && lock < incr && incr < create,
                "{w}"
            );
            // The counter is taken after both user locks and the edge: one lock order.
            assert!(w.find("[r:FOLLOWS]").unwrap() < merge, "{w}");
            // Exactly one outbox record per statement.
            assert_eq!(w.matches(":ZcOutbox {").count(), 1, "{w}");
            assert_eq!(w.matches("ZcOutboxSeq").count(), 1, "{w}");
        }
        assert!(SCHEMA_OUTBOX_SEQ
            .ends_with("IF NOT EXISTS FOR (s:ZcOutboxSeq) REQUIRE s.node IS UNIQUE"));
        assert!(OUTBOX_READ.contains("ORDER BY seq ASC"));
        assert!(OUTBOX_ACK.contains("o.seq <= $up_to"));
        assert!(
            !OUTBOX_ACK.contains("ZcOutboxSeq"),
            "the counter is never deleted"
        );
    }

    #[test]
    fn one_row_exactly() {
        assert_eq!(one(vec![7], "x").unwrap(), 7);
        assert!(one(Vec::<u8>::new(), "x").is_err());
        assert!(one(vec![1, 2], "x").is_err());
    }

    #[tokio::test]
    async fn deadline_abandons_without_cancelling() {
        let slots = Arc::new(Semaphore::new(1));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let limit = Duration::from_millis(50);
        let started = Instant::now();
        let r = run_bounded("slow", started + limit, limit, &slots, async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.send(());
            Ok(1u8)
        })
        .await;
        match r {
            Err(GraphError::Backend(m)) => assert!(m.contains("slow") && m.contains("50ms"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_millis(190));
        // The abandoned work still holds the only slot: the next call fails at its deadline.
        let r = run_bounded("next", Instant::now() + limit, limit, &slots, async {
            Ok(2u8)
        })
        .await;
        assert!(matches!(r, Err(GraphError::Backend(_))));
        // ... and it was not cancelled: it completes and frees the slot.
        rx.await.expect("abandoned work ran to completion");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = run_bounded("after", Instant::now() + limit, limit, &slots, async {
            Ok(3u8)
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        // Driver errors become Backend errors naming the operation.
        let r: Result<(), _> = run_bounded("op", Instant::now() + limit, limit, &slots, async {
            Err(neo4rs::Error::ConnectionError)
        })
        .await;
        assert!(matches!(r, Err(GraphError::Backend(m)) if m.starts_with("neo4j op: ")));
    }
}
