//! The follower cache: [`CachedGraph`] wraps any [`GraphStore`] and serves its hot reads from a
//! [`FollowerCache`], either in-process ([`LocalCache`], the default) or Redis shared by every
//! instance (`redis::RedisCache`, feature `redis`, when `redis-url` is configured; see
//! [`crate::backends`]).
//!
//! ```text
//! reads:  CachedGraph ─► FollowerCache ─hit──────────────────────────────► caller
//!                             │ miss (one loader per key per instance)
//!                             └─► GraphStore ─► conditional fill ─► caller
//! writes: CachedGraph ─► GraphStore (durable) ─► FollowerCache::invalidate(both sides, counts)
//!                                                   └─ Redis: atomic DEL + PUBLISH social:invalidate
//!                                                        └─► every instance drops its near-cache entry
//! ```
//!
//! # What is cached
//!
//! | key (Redis name)           | value                                               | filled from |
//! | -------------------------- | --------------------------------------------------- | ----------- |
//! | `social:followers:{id}`    | first page of followers (≤ page size, default 1000 edges: id and `since`) and whether that is the whole list | `followers(id, None, page + 1)` |
//! | `social:followings:{id}`   | the same for the accounts `id` follows              | `following(id, None, page + 1)` |
//! | `social:counts:{id}`       | follower and following counts                       | `counts(id)` |
//! | `social:profile:{id}`      | the profile, or "none" (negative entries are cached too) | `profiles(&[id])` |
//! | `social:lease:{kind}:{id}` | fill lease (Redis only, see below), 30 s TTL         | — |
//!
//! Lists hold ids only; profiles live under their own keys, so a profile edit invalidates one
//! key. Very large lists are not cached whole: only their first page, which is what
//! `followers`/`following` with no cursor and `limit ≤ page size` return.
//!
//! # Queries answered from the cached lists
//!
//! `friends`, `common_following` and `recommendations` are computed from the same entries when
//! every list they read is cached whole (the account follows and is followed by at most a page
//! of accounts), and go to the store otherwise:
//!
//! | query | reads | store when |
//! | ----- | ----- | ---------- |
//! | `friends(u)` | followings and followers of `u` | either list is longer than a page |
//! | `common_following(a, b)` | followings of `a` and `b`, counts of each account both follow | either list is longer than a page |
//! | `recommendations(u)` | followings of `u`, followings of each of them (first `max_fanout`), counts of the candidates ranked | `u` follows nobody (popular fallback) or more than `max_followings`, or a limit exceeds the page size |
//!
//! Their answers are not cached: each call composes entries that are each as fresh as a
//! `followers`/`following`/`counts` read (below), so they need no invalidation of their own and
//! a follow is reflected in the very next call, for both accounts and for everyone whose
//! recommendations walk through them. Like the embedded store's own multi-lookup queries, a
//! call sees every write answered before it started and possibly some that land while it runs.
//! Caching the composed answers would save little more (recommendations are read once per
//! page view per user, so their hit rate is that of the user's return visits) and would need a
//! two-hop invalidation: a follow by `v` changes the recommendations of every follower of `v`.
//! Deeper pages, `is_following` and `popular` go to the store every time.
//!
//! Values are JSON. Entries live 24 h plus a random jitter of up to 1 h (so a cold start does not
//! expire everything at once); the per-instance near-cache in front of Redis keeps entries at
//! most 60 s. The in-process entries (the local cache, and the near-cache) are bounded in bytes:
//! each weighs what its value holds plus [`ENTRY_OVERHEAD`] for the map's own bookkeeping, and
//! entries not read lately go first (`map`: a sharded table with CLOCK-like eviction).
//!
//! # Consistency guarantees
//!
//! Assumption: once a store write has returned, every later store read sees it (the embedded
//! store and a single Neo4j leader both do).
//!
//! - **Same instance, read your writes.** When `follow`, `unfollow` or `put_profile` returns
//!   (successfully or not), every read *started* afterwards on the same instance reflects it.
//!   Writes go to the store first, then invalidate: the instance's own entries are dropped
//!   before the call returns, and a load that was already running is neither returned to later
//!   readers (loads are shared per key *and* invalidation stamp) nor cached (the fill guard
//!   below discards it). A read concurrent with the write may return either state. The write
//!   and its invalidation run on their own task, so a caller that is dropped mid-way (a client
//!   disconnecting) cannot leave a completed write uninvalidated.
//! - **Other instances (Redis).** The shared Redis entry is deleted before the write returns, so
//!   another instance that has no near-cache entry sees the write at once. One that does sees it
//!   as soon as the `social:invalidate` message reaches it (pub/sub delivery, normally well under
//!   a millisecond on a LAN). That is the only window in which a reader may see the state from
//!   before a completed write. If the subscription is lost (Redis restart, dropped connection,
//!   failed keep-alive ping), the near-cache is cleared and not used until the subscription is
//!   back, so missed messages cannot leave stale entries; the 60 s near TTL is a last safety net.
//! - **Fills never resurrect old state.** A fill that loaded from the store before an
//!   invalidation is discarded. In-process, every entry is stamped with the key's invalidation
//!   counter read before the load, and an entry whose stamp is out of date is never served. In
//!   Redis, a miss takes a *lease* (`SET social:lease:… <random token>` in the same script as the
//!   `GET`), an invalidation deletes the value and the lease atomically, and the fill is a script
//!   that `SET`s the value only if the lease still holds this loader's token. A lease token
//!   rather than a version counter: if Redis evicts or expires the bookkeeping key mid-load, a
//!   version counter would compare "absent" with "absent" and accept a stale fill, while a
//!   missing lease fails closed.
//! - **Redis outage.** On any Redis error (or a reply slower than the operation timeout) the
//!   cache logs one warning for the episode, clears the near-cache and serves every read from
//!   the store, without filling anything, until a background probe gets an answer again. Writes
//!   made during the outage record their keys; the probe first replays those invalidations (or,
//!   beyond 100 000 keys, deletes every cache key) and only then resumes caching, logging one
//!   line. So a Redis that comes back with its data (a pause, a partition) does not serve what
//!   those writes changed. Limit: while this instance cannot reach Redis, *other* instances that
//!   still can may serve the entries this instance's writes should have invalidated, until the
//!   replay.
//!
//! # Stampedes
//!
//! Concurrent misses on one key on one instance run one store load, on its own task; the others
//! wait for it. A read of many keys (`profiles(ids)`, the lists and counts a recommendation
//! walks) joins the loads already running for some of them and, in-process, loads all the
//! others with one store call (`counts_many`, `first_pages`,
//! `profiles`: one pass over the embedded store), shared per key with later callers like any
//! other load; with Redis each key is looked up and loaded on its own. Instances do not
//! coordinate loads with each other: N instances missing the same key at once make at most N
//! loads, and the lease lets at most one of them fill (none if an invalidation intervened).
//!
//! # Rendered pages
//!
//! The API answers a first page of followers or followings with [`GraphStore::render_page`]:
//! the list entry, the profiles it shows, and the API's renderer (JSON bytes). A render of a
//! page rendered lately too (its key still in its slot of a table of the last few thousand
//! renders), or of a page that had a rendered copy, puts a copy of the list entry with the
//! bytes in its place ([`FollowerCache::replace`], only if the entry is still the one read and
//! its key was not invalidated since), together with the [`Version`] of each profile, read
//! before the profiles were. A later read of the same limit serves the bytes if every profile
//! still has that version; otherwise it renders again. So a rendered page is exactly as fresh
//! as its list and its profiles read one by one: a follow or unfollow replaces the list entry
//! (and its rendered page) and a profile edit changes that profile's version. The bytes are
//! not in the entry's weight: they are charged to a budget of their own
//! ([`DEFAULT_PAGE_BYTES`]), and a page that does not fit is not kept (a kept copy that went
//! stale and could not be replaced is dropped, so stale copies do not hold the budget). Pages
//! read once (the long tail, a warm-up) get no copy. With Redis, pages are kept in the
//! near-cache only, and only while it is in use ([`FollowerCache::version`] is `None`
//! otherwise).
//!
//! # Metrics
//!
//! Hits, misses, fills, discarded stale fills, errors and store bypasses are counted per key kind
//! ([`FollowerCache::stats`], [`FollowerCache::render_prometheus`] for `/metrics`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::{join_all, BoxFuture};
use serde::{Deserialize, Serialize};

use crate::graph::{
    render_fresh, Counts, Cursor, Edge, GraphError, GraphStore, PageRenderer, Profile, Ranking,
    RecommendLimits, Recommendation, Side,
};
use crate::id::UserId;
use crate::messaging::store::Outbox;

mod flight;
pub mod local;
mod map;
#[cfg(feature = "redis")]
pub mod redis;

pub use self::local::{LocalCache, LocalConfig};
#[cfg(feature = "redis")]
pub use self::redis::{CacheError, RedisCache, RedisConfig};

/// Default number of edges cached per list (the first page).
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// Bytes an in-process cache entry costs beyond its value's own allocations: its table slot
/// (key, stamp, value pointer, expiry, reference bit: 56 bytes and a control byte, about 90 at
/// the table's usual load of 5/8) and the shared value (64 bytes with the allocator's header).
pub const ENTRY_OVERHEAD: u32 = 160;

/// Default bound of the in-process cache, bytes: about the whole read set of a graph of
/// 100,000 users and 1,000,000 edges (`benches/scripts/graph-load.sh`: every profile, count and
/// first page once warm; its lists and counts hit 99.4% at this size, 92% at 64 MiB, where the
/// 160 bytes of [`ENTRY_OVERHEAD`] of 400,000 entries alone fill the budget).
pub const DEFAULT_CAPACITY: u64 = 128 << 20;

/// Default bound of the rendered first pages kept with their lists, bytes, apart from
/// [`DEFAULT_CAPACITY`]: only pages rendered twice within a few thousand renders are kept (the
/// hot ones: about 400 pages of up to 50 profiles, under 10 KB each, in the 100,000-user load).
pub const DEFAULT_PAGE_BYTES: u64 = 8 << 20;

/// Default lifetime of a cache entry, before jitter.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Default maximum jitter added to [`DEFAULT_TTL`].
pub const DEFAULT_TTL_JITTER: Duration = Duration::from_secs(3600);

/// What a cache key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// First page of a user's followers.
    Followers,
    /// First page of the accounts a user follows.
    Followings,
    /// A user's counts.
    Counts,
    /// A user's profile.
    Profile,
}

impl KeyKind {
    /// Every kind, in metrics order.
    pub const ALL: [KeyKind; 4] = [
        KeyKind::Followers,
        KeyKind::Followings,
        KeyKind::Counts,
        KeyKind::Profile,
    ];

    /// The kind's name in keys and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Followers => "followers",
            KeyKind::Followings => "followings",
            KeyKind::Counts => "counts",
            KeyKind::Profile => "profile",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn parse(s: &str) -> Option<Self> {
        KeyKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One cache entry's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// What it holds.
    pub kind: KeyKind,
    /// Whose.
    pub user: UserId,
}

impl CacheKey {
    /// Followers list of `user`.
    pub fn followers(user: UserId) -> Self {
        Self {
            kind: KeyKind::Followers,
            user,
        }
    }

    /// Followings list of `user`.
    pub fn followings(user: UserId) -> Self {
        Self {
            kind: KeyKind::Followings,
            user,
        }
    }

    /// Counts of `user`.
    pub fn counts(user: UserId) -> Self {
        Self {
            kind: KeyKind::Counts,
            user,
        }
    }

    /// Profile of `user`.
    pub fn profile(user: UserId) -> Self {
        Self {
            kind: KeyKind::Profile,
            user,
        }
    }

    /// The Redis key: `social:{kind}:{uuid}`.
    pub fn redis_key(&self) -> String {
        format!("social:{}:{}", self.kind.as_str(), self.user.0)
    }

    /// The inverse of [`redis_key`](Self::redis_key).
    pub fn parse_redis_key(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("social:")?;
        let (kind, id) = rest.split_once(':')?;
        Some(Self {
            kind: KeyKind::parse(kind)?,
            user: UserId(uuid::Uuid::parse_str(id).ok()?),
        })
    }

    /// The keys a follow or unfollow between `from` and `to` changes.
    pub fn for_edge(from: UserId, to: UserId) -> [CacheKey; 4] {
        [
            CacheKey::followings(from),
            CacheKey::followers(to),
            CacheKey::counts(from),
            CacheKey::counts(to),
        ]
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "social:{}:{}", self.kind.as_str(), self.user.0)
    }
}

/// The first page of a follower or following list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgePage {
    /// Newest first, at most the page size.
    pub edges: Vec<Edge>,
    /// Whether `edges` is the whole list.
    pub complete: bool,
    /// The first page as the API last rendered it, with the versions of the profiles it shows
    /// (in-process only: never serialised, never compared; see [`CachedGraph::render_page`]).
    #[serde(skip)]
    pub rendered: Option<Arc<Rendered>>,
}

impl EdgePage {
    /// A page of `edges` with nothing rendered.
    pub fn new(edges: Vec<Edge>, complete: bool) -> Self {
        Self {
            edges,
            complete,
            rendered: None,
        }
    }
}

/// A rendered first page kept with its list: the answer to a first-page request of `limit`
/// edges, valid while the list entry is served and every profile it shows still has the
/// version it had when the page was rendered. Its bytes are charged to the rendered-page
/// budget of its [`CachedGraph`] until it is dropped.
#[derive(Debug)]
pub struct Rendered {
    /// The request's limit.
    pub limit: usize,
    /// [`FollowerCache::version`] of the profile of each of the first `limit` edges, read
    /// before the profiles were.
    pub versions: Box<[Version]>,
    /// What the renderer wrote.
    pub body: Bytes,
    /// Released on drop.
    _charge: Charge,
}

impl PartialEq for Rendered {
    /// Always equal: a rendered page is a cache of its list, not part of its value.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Rendered {}

/// Bytes of the rendered pages a [`CachedGraph`] keeps, bounded apart from the entries: a
/// page is kept only if its bytes fit.
#[derive(Debug)]
struct PageBudget {
    used: AtomicU64,
    cap: u64,
}

impl PageBudget {
    /// A charge of `bytes`, or `None` when they do not fit.
    fn charge(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.cap {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return None;
        }
        Some(Charge {
            budget: self.clone(),
            bytes,
        })
    }
}

/// Bytes taken from a [`PageBudget`], given back on drop.
#[derive(Debug)]
struct Charge {
    budget: Arc<PageBudget>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The version of a cache key on this instance: while it is unchanged, no invalidation of the
/// key reached this instance since it was read (see [`FollowerCache::version`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(Stamp);

/// A cached value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheValue {
    /// A followers or followings first page.
    Edges(EdgePage),
    /// Counts.
    Counts(Counts),
    /// A profile, or `None` when the user has none. Shared: handed out without copying, and the
    /// other values are small (every cached value is as large as the largest kind).
    Profile(Option<Arc<Profile>>),
}

impl CacheValue {
    /// Approximate bytes the entry holds, for the in-process capacity bounds: the value's heap
    /// allocations plus [`ENTRY_OVERHEAD`].
    fn weight(&self) -> u32 {
        let data = match self {
            // A rendered page is charged to its own budget (see `PageBudget`).
            CacheValue::Edges(p) => heap(p.edges.len().saturating_mul(std::mem::size_of::<Edge>())),
            CacheValue::Counts(_) | CacheValue::Profile(None) => 0,
            CacheValue::Profile(Some(p)) => {
                heap(std::mem::size_of::<Profile>() + 16)
                    + heap(p.display_name.len())
                    + heap(p.bio.len())
                    + p.avatar_url.as_ref().map_or(0, |u| heap(u.len()))
            }
        };
        u32::try_from(data)
            .unwrap_or(u32::MAX)
            .saturating_add(ENTRY_OVERHEAD)
    }
}

/// What an allocation of `n` bytes takes from the heap: nothing for 0, else with the
/// allocator's 8-byte header, in 16-byte steps, at least 32 (glibc's chunks).
fn heap(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n.saturating_add(8).next_multiple_of(16).max(32)
    }
}

/// What a cache calls on a miss: starts loading the values of `keys` from the store, which
/// resolve in the order of `keys`, one per key. A cache calls it only for keys it misses, once
/// for all the keys of a [`FollowerCache::get_many`] that are not already being loaded.
pub type Loader = dyn Fn(Vec<CacheKey>) -> LoadFuture + Send + Sync;

/// The load a [`Loader`] starts. It is polled at most once.
pub type LoadFuture = BoxFuture<'static, Result<Vec<CacheValue>, GraphError>>;

/// The value of one key, from `load`.
// Only the Redis cache loads key by key.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn load_one(load: &Loader, key: CacheKey) -> BoxFuture<'static, Result<CacheValue, GraphError>> {
    let fut = load(vec![key]);
    Box::pin(async move {
        let mut v = fut.await?;
        match (v.pop(), v.is_empty()) {
            (Some(one), true) => Ok(one),
            _ => Err(GraphError::Backend(format!(
                "cache loader returned another number of values than one for {key}"
            ))),
        }
    })
}

/// A read-through cache of the follow graph's hot reads.
///
/// Both implementations: one load per key per instance at a time, fills guarded against racing
/// invalidations, TTL with jitter, and counters per [`KeyKind`]. `get_or_load` is cancel-safe:
/// the load runs on its own task, so a cancelled caller leaves it to finish (and fill, unless an
/// invalidation overtook it) for the other waiters. A cancelled `invalidate` may have dropped
/// only some of its keys, so [`CachedGraph`] runs each write and its invalidation on a task of
/// their own, which a disconnecting client cannot cut short.
#[async_trait]
pub trait FollowerCache: Send + Sync + fmt::Debug + 'static {
    /// The value for `key`: from the cache, else from `load` (called only on a miss, and the
    /// load shared with concurrent callers for the same key) and then cached unless an
    /// invalidation of `key` happened since the lookup began. A cache failure is never an
    /// error here: the value then comes from `load`.
    async fn get_or_load(
        &self,
        key: CacheKey,
        load: &Loader,
    ) -> Result<Arc<CacheValue>, GraphError>;

    /// The values of `keys`, in order, as [`get_or_load`](Self::get_or_load) would return
    /// them. The in-process cache loads every missing key that no other caller is loading with
    /// one call of `load` (one store pass); the default asks `get_or_load` for each miss.
    async fn get_many(
        &self,
        keys: &[CacheKey],
        load: &Loader,
    ) -> Result<Vec<Arc<CacheValue>>, GraphError> {
        let mut got = self.peek_many(keys).await;
        let missing: Vec<usize> = (0..got.len()).filter(|i| got[*i].is_none()).collect();
        if !missing.is_empty() {
            let loaded = join_all(missing.iter().map(|i| self.get_or_load(keys[*i], load))).await;
            for (i, v) in missing.into_iter().zip(loaded) {
                got[i] = Some(v?);
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// The values of `keys` this instance holds and may serve now (in-process; with Redis, its
    /// near-cache), each counted as a hit, or `None` where a read would need
    /// [`get_or_load`](Self::get_or_load) (which counts the miss).
    async fn peek_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CacheValue>>>;

    /// The version of `key` on this instance: read it before reading the value, and while it
    /// compares equal, no invalidation of `key` has reached this instance since, so the value
    /// read is still what a read would return. `None` when this instance cannot tell (Redis
    /// unreachable, or its invalidations possibly missed): then derive nothing from the value
    /// that outlives the request.
    fn version(&self, key: &CacheKey) -> Option<Version>;

    /// Puts `new` in place of `old` as the entry of `key`, if `old` is still the entry this
    /// instance serves for it (same value, not invalidated since); otherwise does nothing.
    /// For in-process additions to an entry (a rendered page), never sent to a shared cache.
    fn replace(&self, key: CacheKey, old: &Arc<CacheValue>, new: CacheValue);

    /// Drops `keys` everywhere (this instance at once, others through Redis pub/sub). Call it
    /// after the store write that changed them has completed.
    async fn invalidate(&self, keys: &[CacheKey]);

    /// Counters and state.
    fn stats(&self) -> CacheStats;

    /// Appends the counters in Prometheus text format.
    fn render_prometheus(&self, out: &mut String) {
        self.stats().render_prometheus(out);
    }
}

/// Counters of one key kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindStats {
    /// Reads served from the cache (near-cache or Redis).
    pub hits: u64,
    /// Of `hits`, those served by the in-process near-cache in front of Redis.
    pub near_hits: u64,
    /// Reads that went to the store (including `bypassed`).
    pub misses: u64,
    /// Values written to the cache after a load.
    pub fills: u64,
    /// Loads whose fill was refused because an invalidation overtook them.
    pub stale_discards: u64,
    /// Cache errors (Redis errors and timeouts, undecodable entries).
    pub errors: u64,
    /// Of `misses`, reads served by the store without trying the cache (Redis outage).
    pub bypassed: u64,
}

/// A snapshot of a cache's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// `"local"` or `"redis"`.
    pub backend: String,
    /// Followers lists.
    pub followers: KindStats,
    /// Followings lists.
    pub followings: KindStats,
    /// Counts.
    pub counts: KindStats,
    /// Profiles.
    pub profile: KindStats,
    /// Keys invalidated by this instance.
    pub invalidations: u64,
    /// Invalidation messages received from Redis pub/sub (all instances, including this one).
    pub remote_invalidations: u64,
    /// Redis outage episodes (one warning is logged per episode).
    pub outages: u64,
    /// Whether the backend is currently answering (always true in-process).
    pub available: bool,
    /// Entries held in this process (the local cache, or the near-cache in front of Redis).
    pub entries: u64,
    /// Their weight in bytes (data plus [`ENTRY_OVERHEAD`] each), bounded by the capacity.
    pub bytes: u64,
}

impl CacheStats {
    /// The counters of `kind`.
    pub fn kind(&self, kind: KeyKind) -> &KindStats {
        match kind {
            KeyKind::Followers => &self.followers,
            KeyKind::Followings => &self.followings,
            KeyKind::Counts => &self.counts,
            KeyKind::Profile => &self.profile,
        }
    }

    /// Sum over every kind.
    pub fn total(&self) -> KindStats {
        let mut t = KindStats::default();
        for k in KeyKind::ALL {
            let s = self.kind(k);
            t.hits += s.hits;
            t.near_hits += s.near_hits;
            t.misses += s.misses;
            t.fills += s.fills;
            t.stale_discards += s.stale_discards;
            t.errors += s.errors;
            t.bypassed += s.bypassed;
        }
        t
    }

    /// Hits over lookups, 0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        let t = self.total();
        let n = t.hits + t.misses;
        if n == 0 {
            0.0
        } else {
            t.hits as f64 / n as f64
        }
    }

    /// Appends the counters in Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        type Field = fn(&KindStats) -> u64;
        let per_kind: [(&str, &str, Field); 7] = [
            ("hits", "Follower-cache reads served from the cache.", |s| {
                s.hits
            }),
            (
                "near_hits",
                "Follower-cache hits served by the in-process near-cache.",
                |s| s.near_hits,
            ),
            (
                "misses",
                "Follower-cache reads served by the graph store.",
                |s| s.misses,
            ),
            (
                "fills",
                "Follower-cache entries written after a load.",
                |s| s.fills,
            ),
            (
                "stale_discards",
                "Follower-cache fills refused because an invalidation overtook them.",
                |s| s.stale_discards,
            ),
            ("errors", "Follower-cache backend errors.", |s| s.errors),
            (
                "bypassed",
                "Follower-cache reads sent to the store during an outage.",
                |s| s.bypassed,
            ),
        ];
        let b = &self.backend;
        for (name, help, field) in per_kind {
            let _ = writeln!(out, "# HELP zerocast_social_cache_{name}_total {help}");
            let _ = writeln!(out, "# TYPE zerocast_social_cache_{name}_total counter");
            for k in KeyKind::ALL {
                let _ = writeln!(
                    out,
                    "zerocast_social_cache_{name}_total{{backend=\"{b}\",kind=\"{}\"}} {}",
                    k.as_str(),
                    field(self.kind(k))
                );
            }
        }
        let scalars: [(&str, &str, &str, u64); 6] = [
            (
                "invalidations_total",
                "counter",
                "Follower-cache keys invalidated by this instance.",
                self.invalidations,
            ),
            (
                "remote_invalidations_total",
                "counter",
                "Follower-cache invalidation messages received over Redis pub/sub.",
                self.remote_invalidations,
            ),
            (
                "outages_total",
                "counter",
                "Follower-cache backend outage episodes.",
                self.outages,
            ),
            (
                "up",
                "gauge",
                "Whether the follower-cache backend is answering.",
                u64::from(self.available),
            ),
            (
                "entries",
                "gauge",
                "Follower-cache entries held in this process.",
                self.entries,
            ),
            (
                "bytes",
                "gauge",
                "Weight of the follower-cache entries held in this process, bytes.",
                self.bytes,
            ),
        ];
        for (name, ty, help, v) in scalars {
            let _ = writeln!(out, "# HELP zerocast_social_cache_{name} {help}");
            let _ = writeln!(out, "# TYPE zerocast_social_cache_{name} {ty}");
            let _ = writeln!(out, "zerocast_social_cache_{name}{{backend=\"{b}\"}} {v}");
        }
    }
}

/// A [`GraphStore`] whose hot reads go through a [`FollowerCache`].
///
/// Cached: `followers`/`following` with no cursor and `limit ≤ page size`, `counts`, and
/// `profiles`; `friends`, `common_following` and `recommendations` are computed from those
/// entries when they hold whole lists (see the [module docs](self)). Everything else goes to
/// the store. Writes go to the store, then invalidate.
#[derive(Clone)]
pub struct CachedGraph {
    store: Arc<dyn GraphStore>,
    cache: Arc<dyn FollowerCache>,
    page: usize,
    /// Loads missing entries from `store`, several keys in one pass.
    loader: Arc<Loader>,
    /// Which first pages were rendered lately (kept on their second render).
    recent: Arc<RecentRenders>,
    /// Bytes of the rendered pages kept.
    pages: Arc<PageBudget>,
}

impl fmt::Debug for CachedGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedGraph")
            .field("cache", &self.cache)
            .field("page", &self.page)
            .finish_non_exhaustive()
    }
}

/// Slots of [`RecentRenders`].
const RECENT_RENDERS: usize = 4096;

/// Which first pages were rendered lately: a page rendered while its key is still in its slot
/// (fewer than about [`RECENT_RENDERS`] other renders since) is read often enough to keep. A
/// page read once, as in a warm-up or the long tail, is never kept, so it takes no room in the
/// rendered-page budget that a hot page could use.
#[derive(Debug)]
struct RecentRenders(Box<[AtomicU64]>);

impl RecentRenders {
    fn new() -> Self {
        Self((0..RECENT_RENDERS).map(|_| AtomicU64::new(0)).collect())
    }

    /// Records a render of `key`; whether the previous render in its slot was of `key` too.
    fn again(&self, key: &CacheKey) -> bool {
        // User ids are random; one an attacker picks can at worst get its page kept.
        let (a, b) = key.user.0.as_u64_pair();
        let h = (a ^ b.rotate_left(29) ^ (key.kind as u64)) | 1;
        let slot = &self.0[(h as usize) % RECENT_RENDERS]; // < RECENT_RENDERS == len
        slot.swap(h, Ordering::Relaxed) == h
    }
}

impl CachedGraph {
    /// `store` behind `cache`, caching first pages of [`DEFAULT_PAGE_SIZE`] edges.
    pub fn new(store: Arc<dyn GraphStore>, cache: Arc<dyn FollowerCache>) -> Self {
        Self {
            loader: store_loader(store.clone(), DEFAULT_PAGE_SIZE),
            recent: Arc::new(RecentRenders::new()),
            pages: Arc::new(PageBudget {
                used: AtomicU64::new(0),
                cap: DEFAULT_PAGE_BYTES,
            }),
            store,
            cache,
            page: DEFAULT_PAGE_SIZE,
        }
    }

    /// Caches the first `page` edges of each list instead (at least 1). Every instance sharing
    /// a Redis must use the same value.
    pub fn with_page_size(mut self, page: usize) -> Self {
        self.page = page.max(1);
        self.loader = store_loader(self.store.clone(), self.page);
        self
    }

    /// The wrapped store.
    pub fn store(&self) -> &Arc<dyn GraphStore> {
        &self.store
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<dyn FollowerCache> {
        &self.cache
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The first `limit` edges of the cached list `key` (`limit` at most one page).
    async fn first_page(&self, key: CacheKey, limit: usize) -> Result<Vec<Edge>, GraphError> {
        let v = self.value(key).await?;
        Ok(edges_of(&v, key)?
            .edges
            .iter()
            .take(limit)
            .copied()
            .collect())
    }

    /// The value of `key`, from the cache or loaded.
    async fn value(&self, key: CacheKey) -> Result<Arc<CacheValue>, GraphError> {
        self.cache.get_or_load(key, &*self.loader).await
    }

    /// The values of `keys`, in order: the cached ones, and the others loaded together.
    async fn values(&self, keys: &[CacheKey]) -> Result<Vec<Arc<CacheValue>>, GraphError> {
        self.cache.get_many(keys, &*self.loader).await
    }

    /// Both lists of `keys` when both are cached whole, else `None`.
    async fn whole_lists(
        &self,
        keys: [CacheKey; 2],
    ) -> Result<Option<[Arc<CacheValue>; 2]>, GraphError> {
        let v = self.values(&keys).await?;
        let whole = |i: usize| -> Result<bool, GraphError> {
            let v = v.get(i).ok_or_else(|| mismatch(keys[i]))?;
            Ok(edges_of(v, keys[i])?.complete)
        };
        if !(whole(0)? && whole(1)?) {
            return Ok(None);
        }
        let [a, b]: [Arc<CacheValue>; 2] = v.try_into().map_err(|_| mismatch(keys[0]))?;
        Ok(Some([a, b]))
    }

    /// Follower counts of `users`, in order.
    async fn followers_of(&self, users: &[UserId]) -> Result<Vec<u64>, GraphError> {
        self.values_of(users, CacheKey::counts, |v| match v {
            CacheValue::Counts(c) => Some(c.followers),
            _ => None,
        })
        .await
    }

    /// The cached values of `key(u)` for each of `users`, through `pick`; a value of another
    /// kind than `pick` takes is a mismatch.
    async fn values_of<T>(
        &self,
        users: &[UserId],
        key: fn(UserId) -> CacheKey,
        pick: impl Fn(&CacheValue) -> Option<T>,
    ) -> Result<Vec<T>, GraphError> {
        let keys: Vec<CacheKey> = users.iter().map(|u| key(*u)).collect();
        let values = self.values(&keys).await?;
        keys.iter()
            .zip(&values)
            .map(|(k, v)| pick(v).ok_or_else(|| mismatch(*k)))
            .collect()
    }

    /// Runs the store write, then invalidates `keys`, on a task of its own: a caller dropped
    /// mid-way (a client that disconnects) cannot leave a completed write uninvalidated. The
    /// keys are invalidated whatever the outcome, also when nothing changed or on a backend
    /// error (which may come after the write was applied): it is cheap, and it heals an entry
    /// left stale by a crash between an earlier write and its invalidation.
    async fn write<T, F, Fut>(&self, op: F, keys: Vec<CacheKey>) -> Result<T, GraphError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn GraphStore>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, GraphError>> + Send + 'static,
    {
        let (store, cache) = (self.store.clone(), self.cache.clone());
        tokio::spawn(async move {
            let r = op(store).await;
            cache.invalidate(&keys).await;
            r
        })
        .await
        .unwrap_or_else(|e| Err(GraphError::Backend(format!("graph write task failed: {e}"))))
    }
}

/// The [`Loader`] of a [`CachedGraph`]: the keys of each kind in one store call, the kinds
/// concurrently.
fn store_loader(store: Arc<dyn GraphStore>, page: usize) -> Arc<Loader> {
    Arc::new(move |keys: Vec<CacheKey>| -> LoadFuture {
        let store = store.clone();
        Box::pin(async move { load_from(&*store, page, &keys).await })
    })
}

/// The values of `keys` from `store`, in order; lists are cached up to `page` edges.
async fn load_from(
    store: &dyn GraphStore,
    page: usize,
    keys: &[CacheKey],
) -> Result<Vec<CacheValue>, GraphError> {
    let of = |kind: KeyKind| -> Vec<UserId> {
        keys.iter()
            .filter(|k| k.kind == kind)
            .map(|k| k.user)
            .collect()
    };
    let (followers, followings, counts, profiles) = (
        of(KeyKind::Followers),
        of(KeyKind::Followings),
        of(KeyKind::Counts),
        of(KeyKind::Profile),
    );
    let want = page.saturating_add(1);
    let lists = |edges: Vec<Vec<Edge>>| -> Vec<CacheValue> {
        edges
            .into_iter()
            .map(|mut edges| {
                let complete = edges.len() <= page;
                edges.truncate(page);
                // Kept for hours: give back what the collecting Vec grew beyond its length.
                edges.shrink_to_fit();
                CacheValue::Edges(EdgePage::new(edges, complete))
            })
            .collect()
    };
    let (followers, followings, counts, profiles) = futures_util::future::try_join4(
        async {
            if followers.is_empty() {
                return Ok(Vec::new());
            }
            Ok(lists(
                store.first_pages(Side::Followers, &followers, want).await?,
            ))
        },
        async {
            if followings.is_empty() {
                return Ok(Vec::new());
            }
            Ok(lists(
                store
                    .first_pages(Side::Following, &followings, want)
                    .await?,
            ))
        },
        async {
            if counts.is_empty() {
                return Ok(Vec::new());
            }
            let c = store.counts_many(&counts).await?;
            Ok::<_, GraphError>(c.into_iter().map(CacheValue::Counts).collect::<Vec<_>>())
        },
        async {
            if profiles.is_empty() {
                return Ok(Vec::new());
            }
            let p = store.profiles(&profiles).await?;
            Ok::<_, GraphError>(
                p.into_iter()
                    .map(|p| CacheValue::Profile(p.map(Arc::new)))
                    .collect::<Vec<_>>(),
            )
        },
    )
    .await?;
    let mut by_kind = [
        followers.into_iter(),
        followings.into_iter(),
        counts.into_iter(),
        profiles.into_iter(),
    ];
    keys.iter()
        .map(|k| {
            by_kind[k.kind.index()] // index() < 4 by construction of KeyKind
                .next()
                .ok_or_else(|| GraphError::Backend(format!("the store returned no value for {k}")))
        })
        .collect()
}

fn mismatch(key: CacheKey) -> GraphError {
    GraphError::Backend(format!("cache entry {key} holds another kind of value"))
}

/// The list in a followers/followings entry.
fn edges_of(v: &CacheValue, key: CacheKey) -> Result<&EdgePage, GraphError> {
    match v {
        CacheValue::Edges(p) => Ok(p),
        _ => Err(mismatch(key)),
    }
}

/// The users of a cached list, for membership tests.
fn user_set(v: &CacheValue, key: CacheKey) -> Result<HashSet<UserId>, GraphError> {
    Ok(edges_of(v, key)?.edges.iter().map(|e| e.user).collect())
}

/// Whether `e` comes strictly after `c` in newest-first order (ties on `since` by id,
/// ascending), as the stores page.
fn after_cursor(e: &Edge, c: Option<Cursor>) -> bool {
    c.is_none_or(|c| e.since < c.since || (e.since == c.since && e.user > c.user))
}

#[async_trait]
impl GraphStore for CachedGraph {
    async fn put_profile(&self, p: Profile) -> Result<(), GraphError> {
        let key = CacheKey::profile(p.id);
        self.write(
            move |store| async move { store.put_profile(p).await },
            vec![key],
        )
        .await
    }

    async fn profiles(&self, ids: &[UserId]) -> Result<Vec<Option<Profile>>, GraphError> {
        Ok(self
            .shared_profiles(ids)
            .await?
            .into_iter()
            .map(|p| p.as_deref().cloned())
            .collect())
    }

    async fn shared_profiles(
        &self,
        ids: &[UserId],
    ) -> Result<Vec<Option<Arc<Profile>>>, GraphError> {
        self.values_of(ids, CacheKey::profile, |v| match v {
            CacheValue::Profile(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    async fn follow(&self, from: UserId, to: UserId, now_ms: u64) -> Result<bool, GraphError> {
        if from == to {
            return Err(GraphError::SelfFollow);
        }
        let keys = CacheKey::for_edge(from, to).to_vec();
        self.write(
            move |store| async move { store.follow(from, to, now_ms).await },
            keys,
        )
        .await
    }

    async fn unfollow(&self, from: UserId, to: UserId) -> Result<bool, GraphError> {
        let keys = CacheKey::for_edge(from, to).to_vec();
        self.write(
            move |store| async move { store.unfollow(from, to).await },
            keys,
        )
        .await
    }

    fn event_outbox(&self) -> Option<(&dyn Outbox, u16)> {
        self.store.event_outbox()
    }

    async fn is_following(&self, from: UserId, to: UserId) -> Result<bool, GraphError> {
        self.store.is_following(from, to).await
    }

    async fn followers(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        if after.is_none() && limit <= self.page {
            self.first_page(CacheKey::followers(user), limit).await
        } else {
            self.store.followers(user, after, limit).await
        }
    }

    async fn following(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        if after.is_none() && limit <= self.page {
            self.first_page(CacheKey::followings(user), limit).await
        } else {
            self.store.following(user, after, limit).await
        }
    }

    async fn counts(&self, user: UserId) -> Result<Counts, GraphError> {
        let key = CacheKey::counts(user);
        match &*self.value(key).await? {
            CacheValue::Counts(c) => Ok(*c),
            _ => Err(mismatch(key)),
        }
    }

    async fn counts_many(&self, users: &[UserId]) -> Result<Vec<Counts>, GraphError> {
        self.values_of(users, CacheKey::counts, |v| match v {
            CacheValue::Counts(c) => Some(*c),
            _ => None,
        })
        .await
    }

    async fn render_page(
        &self,
        side: Side,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
        render: &PageRenderer,
    ) -> Result<Bytes, GraphError> {
        let key = match side {
            Side::Followers => CacheKey::followers(user),
            Side::Following => CacheKey::followings(user),
        };
        if after.is_some() || limit > self.page {
            // Not a cached page: `followers`/`following` go to the store.
            return render_fresh(self, side, user, after, limit, render).await;
        }
        let entry = self.value(key).await?;
        let list = edges_of(&entry, key)?;
        let edges = list.edges.get(..limit).unwrap_or(&list.edges);
        let version = |e: &Edge| self.cache.version(&CacheKey::profile(e.user));
        if let Some(r) = &list.rendered {
            // The list is the one served now (the lookup checked it); the profiles are the ones
            // rendered if none was invalidated since its version was read.
            if r.limit == limit
                && r.versions.len() == edges.len()
                && edges
                    .iter()
                    .zip(r.versions.iter())
                    .all(|(e, v)| version(e) == Some(*v))
            {
                return Ok(r.body.clone());
            }
        }
        // Versions before the profiles: an invalidation in between makes them unequal later.
        let versions: Option<Box<[Version]>> = edges.iter().map(version).collect();
        let ids: Vec<UserId> = edges.iter().map(|e| e.user).collect();
        let profiles = self.shared_profiles(&ids).await?;
        let body = render(edges, &profiles, limit);
        if let Some(versions) = versions {
            if list.rendered.is_some() || self.recent.again(&key) {
                let bytes = body.len() + versions.len() * std::mem::size_of::<Version>() + 64;
                let rendered = self.pages.charge(bytes as u64).map(|charge| {
                    Arc::new(Rendered {
                        limit,
                        versions,
                        body: body.clone(),
                        _charge: charge,
                    })
                });
                // No room: drop the stale copy rather than let it hold the budget until the
                // entry expires.
                if rendered.is_some() || list.rendered.is_some() {
                    let kept = CacheValue::Edges(EdgePage {
                        edges: list.edges.clone(),
                        complete: list.complete,
                        rendered,
                    });
                    self.cache.replace(key, &entry, kept);
                }
            }
        }
        Ok(body)
    }

    async fn friends(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        let keys = [CacheKey::followings(user), CacheKey::followers(user)];
        let Some([out, back]) = self.whole_lists(keys).await? else {
            return self.store.friends(user, after, limit).await;
        };
        let back = user_set(&back, keys[1])?;
        Ok(edges_of(&out, keys[0])?
            .edges
            .iter()
            .filter(|e| after_cursor(e, after) && back.contains(&e.user))
            .take(limit)
            .copied()
            .collect())
    }

    async fn common_following(
        &self,
        a: UserId,
        b: UserId,
        limit: usize,
    ) -> Result<Vec<UserId>, GraphError> {
        let keys = [CacheKey::followings(a), CacheKey::followings(b)];
        let Some([la, lb]) = self.whole_lists(keys).await? else {
            return self.store.common_following(a, b, limit).await;
        };
        let in_b = user_set(&lb, keys[1])?;
        let both: Vec<UserId> = edges_of(&la, keys[0])?
            .edges
            .iter()
            .map(|e| e.user)
            .filter(|u| in_b.contains(u))
            .collect();
        let followers = self.followers_of(&both).await?;
        let mut ranked: Vec<(u64, UserId)> = followers.into_iter().zip(both).collect();
        ranked.sort_unstable_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
        Ok(ranked.into_iter().take(limit).map(|(_, u)| u).collect())
    }

    async fn recommendations(
        &self,
        user: UserId,
        limit: usize,
        limits: RecommendLimits,
    ) -> Result<Vec<Recommendation>, GraphError> {
        if limits.max_followings > self.page || limits.max_fanout > self.page {
            return self.store.recommendations(user, limit, limits).await;
        }
        let key = CacheKey::followings(user);
        let mine = self.value(key).await?;
        let mine = edges_of(&mine, key)?;
        // Nobody followed (the popular fallback), or more than the walk expands: then the store
        // also checks each candidate against the whole following set.
        if !mine.complete || mine.edges.is_empty() || mine.edges.len() > limits.max_followings {
            return self.store.recommendations(user, limit, limits).await;
        }
        let followed: HashSet<UserId> = mine.edges.iter().map(|e| e.user).collect();
        let keys: Vec<CacheKey> = mine
            .edges
            .iter()
            .map(|e| CacheKey::followings(e.user))
            .collect();
        let lists = self.values(&keys).await?;
        let mut paths: HashMap<UserId, u64> = HashMap::new();
        for (k, v) in keys.iter().zip(&lists) {
            for e in edges_of(v, *k)?.edges.iter().take(limits.max_fanout) {
                if e.user != user && !followed.contains(&e.user) {
                    *paths.entry(e.user).or_default() += 1;
                }
            }
        }
        let mut rank = Ranking::new(paths, limit);
        while let Some((p, group)) = rank.next_group() {
            let users: Vec<UserId> = group.iter().map(|(w, _)| *w).collect();
            let followers = self.followers_of(&users).await?;
            let group = users
                .into_iter()
                .zip(followers)
                .map(|(user, followers)| Recommendation {
                    user,
                    paths: p,
                    followers,
                })
                .collect();
            rank.add(group);
        }
        Ok(rank.finish())
    }

    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, GraphError> {
        self.store.popular(limit).await
    }
}

// ---- shared machinery of both caches ----

/// Per-kind atomic counters.
#[derive(Debug, Default)]
struct Counters {
    kinds: [KindCounters; 4],
    invalidations: AtomicU64,
    remote_invalidations: AtomicU64,
    outages: AtomicU64,
}

#[derive(Debug, Default)]
struct KindCounters {
    hits: AtomicU64,
    near_hits: AtomicU64,
    misses: AtomicU64,
    fills: AtomicU64,
    stale_discards: AtomicU64,
    errors: AtomicU64,
    bypassed: AtomicU64,
}

impl KindCounters {
    fn snapshot(&self) -> KindStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KindStats {
            hits: l(&self.hits),
            near_hits: l(&self.near_hits),
            misses: l(&self.misses),
            fills: l(&self.fills),
            stale_discards: l(&self.stale_discards),
            errors: l(&self.errors),
            bypassed: l(&self.bypassed),
        }
    }
}

impl Counters {
    fn kind(&self, k: KeyKind) -> &KindCounters {
        &self.kinds[k.index()] // index() < 4 by construction of KeyKind
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters, with the backend's name and state and its map's `(entries, bytes)`.
    fn snapshot(&self, backend: &str, available: bool, usage: (usize, u64)) -> CacheStats {
        CacheStats {
            backend: backend.to_owned(),
            followers: self.kind(KeyKind::Followers).snapshot(),
            followings: self.kind(KeyKind::Followings).snapshot(),
            counts: self.kind(KeyKind::Counts).snapshot(),
            profile: self.kind(KeyKind::Profile).snapshot(),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            remote_invalidations: self.remote_invalidations.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
            available,
            entries: usage.0 as u64,
            bytes: usage.1,
        }
    }
}

/// Invalidation stamps: a global epoch and a striped per-key counter.
///
/// An entry is stamped with `stamp(key)` read *before* its value was loaded, and is served only
/// while `stamp(key)` still equals that. Invalidating a key bumps its stripe; clearing
/// everything bumps the epoch. Two keys sharing a stripe (1 in 65 536) only cost each other an
/// extra miss. Because validity is checked on every read, no lock is needed between "check the
/// stamp" and "insert": an entry inserted after its stamp went out of date is simply dead.
#[derive(Debug)]
struct Stamps {
    epoch: AtomicU64,
    stripes: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

const STRIPES: usize = 1 << 16;

impl Stamps {
    fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
        }
    }

    fn stripe(&self, key: &CacheKey) -> &AtomicU64 {
        let i = (self.hasher.hash_one(key) as usize) & (STRIPES - 1);
        &self.stripes[i] // i < STRIPES == stripes.len()
    }

    fn stamp(&self, key: &CacheKey) -> Stamp {
        // Epoch first: a clear that bumps the epoch after we read it makes the stamp stale.
        let epoch = self.epoch.load(Ordering::SeqCst);
        Stamp {
            epoch,
            gen: self.stripe(key).load(Ordering::SeqCst),
        }
    }

    fn bump(&self, key: &CacheKey) {
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
    }

    // Only a shared cache (Redis) needs to invalidate everything at once.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn bump_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// See [`Stamps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Stamp {
    epoch: u64,
    gen: u64,
}

/// Where a shared load's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The shared cache (Redis).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Cache,
    /// The store.
    Store,
}

/// A shared load's result (errors as text: the waiters each get a copy).
type Loaded = Result<(Arc<CacheValue>, Source), String>;

fn error_text(e: GraphError) -> String {
    match e {
        GraphError::Backend(s) => s,
        other => other.to_string(),
    }
}

/// `base` plus a uniformly random duration below `jitter`.
fn jittered(base: Duration, jitter: Duration) -> Duration {
    let j = jitter.as_millis() as u64;
    if j == 0 {
        return base;
    }
    let r = (uuid::Uuid::new_v4().as_u128() as u64) % j;
    base + Duration::from_millis(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_keys_round_trip() {
        let u = UserId(uuid::Uuid::new_v4());
        for k in KeyKind::ALL {
            let key = CacheKey { kind: k, user: u };
            assert_eq!(CacheKey::parse_redis_key(&key.redis_key()), Some(key));
            assert_eq!(key.to_string(), key.redis_key());
        }
        assert_eq!(
            CacheKey::followers(u).redis_key(),
            format!("social:followers:{}", u.0)
        );
        assert_eq!(CacheKey::parse_redis_key("social:lease:followers:x"), None);
        assert_eq!(CacheKey::parse_redis_key("*"), None);
    }

    #[test]
    fn stamps_change_on_bump() {
        let s = Stamps::new();
        let k = CacheKey::counts(UserId(uuid::Uuid::new_v4()));
        let a = s.stamp(&k);
        s.bump(&k);
        let b = s.stamp(&k);
        assert_ne!(a, b);
        s.bump_all();
        assert_ne!(b, s.stamp(&k));
    }

    #[test]
    fn entries_weigh_their_bytes() {
        let u = UserId(uuid::Uuid::new_v4());
        let edges = vec![Edge { user: u, since: 1 }; 10];
        let page = CacheValue::Edges(EdgePage::new(edges, true));
        assert_eq!(page.weight(), ENTRY_OVERHEAD + 256);
        // 40 bytes: with the Arc's counts still the 64-byte chunk ENTRY_OVERHEAD counts.
        assert!(std::mem::size_of::<CacheValue>() <= 40);
        assert_eq!(
            CacheValue::Counts(Counts::default()).weight(),
            ENTRY_OVERHEAD
        );
        let p = Profile {
            id: u,
            display_name: "Ada".into(),
            avatar_url: Some("https://a/b".into()),
            bio: "hi".into(),
            updated_at: 0,
        };
        // The shared profile, and three strings in the smallest chunks.
        let boxed = heap(std::mem::size_of::<Profile>() + 16) as u32;
        assert_eq!(
            CacheValue::Profile(Some(Arc::new(p))).weight(),
            ENTRY_OVERHEAD + boxed + 3 * 32
        );
        assert_eq!(CacheValue::Profile(None).weight(), ENTRY_OVERHEAD);
    }

    #[test]
    fn rendered_pages_are_charged_to_their_budget_until_dropped() {
        let budget = Arc::new(PageBudget {
            used: AtomicU64::new(0),
            cap: 100,
        });
        let a = budget.charge(60).unwrap();
        assert!(budget.charge(50).is_none(), "over the budget");
        let b = budget.charge(40).unwrap();
        assert_eq!(budget.used.load(Ordering::Relaxed), 100);
        drop(a);
        assert_eq!(budget.used.load(Ordering::Relaxed), 40);
        assert!(budget.charge(60).is_some());
        drop(b);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10), Duration::from_secs(2));
            assert!(d >= Duration::from_secs(10) && d < Duration::from_secs(12));
        }
        assert_eq!(
            jittered(Duration::from_secs(3), Duration::ZERO),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn prometheus_has_every_kind() {
        let mut s = CacheStats {
            backend: "local".into(),
            available: true,
            ..Default::default()
        };
        s.followers.hits = 3;
        let mut out = String::new();
        s.render_prometheus(&mut out);
        assert!(out
            .contains("zerocast_social_cache_hits_total{backend=\"local\",kind=\"followers\"} 3"));
        assert!(out.contains("kind=\"profile\""));
        assert!(out.contains("zerocast_social_cache_up{backend=\"local\"} 1"));
    }
}
