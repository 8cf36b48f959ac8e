//! The Redis follower cache, shared by every instance, with a near-cache per instance.
//!
//! ```text
//! get_or_load(key)
//!   near-cache (in-process map, 60 s, stamped) ──hit──► value
//!   │ miss: one flight per (key, stamp) on this instance
//!   ├─ EVALSHA get_or_lease: GET social:{kind}:{id}; on nil SET social:lease:… token NX PX 30000
//!   │    value ─► near-cache ─► caller
//!   ├─ nil ─► GraphStore load
//!   └─ if we hold the lease: EVALSHA fill: SET value PX ttl+jitter only if the lease is still ours
//!
//! invalidate(keys)
//!   bump local stamps, drop near entries
//!   EVALSHA invalidate: DEL every value and lease, PUBLISH social:invalidate "<instance> k1 k2 …"
//!
//! subscriber task:  SUBSCRIBE social:invalidate ─► bump stamps, drop near entries
//!                   connection lost / ping fails ─► clear near-cache, stop using it until resubscribed
//! probe task:       while in an outage: PING; replay the invalidations recorded meanwhile; resume
//! ```
//!
//! Requires a single Redis (or a primary with its replicas for failover), not Redis Cluster: the
//! invalidation script touches keys of many users at once. Redis should not evict with
//! `allkeys-*` policies under memory pressure in ways that matter here: eviction of a value is
//! a miss, eviction of a lease fails closed (the fill is dropped). See the [module docs](super)
//! for the consistency guarantees.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, Script, Value};
use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::flight::{lock, SingleFlight};
use super::map::EntryMap;
use super::{
    error_text, jittered, load_one, CacheKey, CacheStats, CacheValue, Counters, FollowerCache,
    Loaded, Loader, Source, Stamp, Stamps, Version, DEFAULT_TTL, DEFAULT_TTL_JITTER,
};
use crate::graph::GraphError;

/// Why a Redis cache could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The Redis URL does not parse (the URL itself is not repeated: it may hold a password).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] ::redis::RedisError),
}

/// Settings of a [`RedisCache`].
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Entry lifetime in Redis before jitter (default 24 h).
    pub ttl: Duration,
    /// Maximum random extra lifetime (default 1 h).
    pub ttl_jitter: Duration,
    /// Lifetime of a near-cache entry (default 60 s). Pub/sub invalidates them; this bounds the
    /// damage of anything pub/sub could miss without the connection visibly dropping.
    pub near_ttl: Duration,
    /// Near-cache bound in bytes, weighed like the in-process cache (default 32 MiB).
    pub near_capacity: u64,
    /// Timeout of every Redis operation (default 1 s); a timeout counts as an outage.
    pub op_timeout: Duration,
    /// While in an outage, how often to try Redis again (default 500 ms).
    pub probe_interval: Duration,
    /// How often the subscriber pings its connection (default 5 s), and how long it waits
    /// before resubscribing after losing it (a tenth of that, at least 50 ms).
    pub keepalive: Duration,
    /// Lifetime of a fill lease (default 30 s): a load slower than this is not cached.
    pub lease_ttl: Duration,
    /// Pub/sub channel (default `social:invalidate`).
    pub channel: String,
    /// Invalidations remembered during an outage before falling back to deleting every cache
    /// key on recovery (default 100 000).
    pub pending_limit: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            ttl_jitter: DEFAULT_TTL_JITTER,
            near_ttl: Duration::from_secs(60),
            near_capacity: 32 << 20,
            op_timeout: Duration::from_secs(1),
            probe_interval: Duration::from_millis(500),
            keepalive: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            channel: "social:invalidate".into(),
            pending_limit: 100_000,
        }
    }
}

/// `GET` the value; on a miss take the fill lease if nobody holds it.
/// Returns the value, 1 (lease taken) or 0 (another loader holds it).
static GET_OR_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v then return v end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
",
    )
});

/// `SET` the value only if the lease still holds our token; 1 if set, 0 if not.
static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
",
    )
});

/// Deletes every key (values and their leases) and publishes the message, atomically.
static INVALIDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return #KEYS
",
    )
});

/// Every cache key pattern, for the purge after a long outage.
const PURGE_PATTERNS: [&str; 5] = [
    "social:followers:*",
    "social:followings:*",
    "social:counts:*",
    "social:profile:*",
    "social:lease:*",
];

/// Invalidations in one script call.
const INVALIDATE_CHUNK: usize = 256;

fn lease_key(k: &CacheKey) -> String {
    format!("social:lease:{}:{}", k.kind.as_str(), k.user.0)
}

/// A failed Redis operation.
#[derive(Debug)]
enum OpError {
    Timeout,
    Redis(RedisError),
}

impl OpError {
    /// Whether this means "Redis is unreachable" rather than "this command was refused".
    fn is_outage(&self) -> bool {
        match self {
            OpError::Timeout => true,
            OpError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
            }
        }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Timeout => f.write_str("operation timed out"),
            OpError::Redis(e) => e.fmt(f),
        }
    }
}

/// Invalidations recorded during an outage.
#[derive(Debug, Default)]
struct Pending {
    keys: HashSet<CacheKey>,
    /// Too many to remember: delete every cache key on recovery.
    purge: bool,
}

/// [`FollowerCache`] on Redis, shared by instances, with a per-instance near-cache kept
/// coherent by pub/sub. Dropping the last clone stops its background tasks.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("instance", &self.inner.instance)
            .field("down", &self.inner.down())
            .field("subscribed", &self.inner.subscribed.load(Ordering::SeqCst))
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

/// Aborts the background tasks on drop.
#[derive(Debug)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

struct Inner {
    conn: ConnectionManager,
    near: EntryMap,
    stamps: Stamps,
    flights: SingleFlight<(CacheKey, Stamp)>,
    counters: Counters,
    /// In an outage: serve from the store. Written only with `pending` locked.
    down: AtomicBool,
    /// The subscriber is subscribed (near-cache usable).
    subscribed: AtomicBool,
    pending: Mutex<Pending>,
    /// Identifies this instance's messages, which it skips (it applied them already).
    instance: String,
    cfg: RedisConfig,
}

impl RedisCache {
    /// Connects to Redis at `url` (`redis://[:password@]host:port[/db]`) and starts the
    /// subscriber and probe tasks (on the current tokio runtime).
    ///
    /// Only an unparsable URL is an error: if Redis does not answer, the cache starts in an
    /// outage (logging one warning, serving from the store) and recovers when it does.
    pub async fn connect(url: &str, cfg: RedisConfig) -> Result<Self, CacheError> {
        let client = Client::open(url).map_err(CacheError::InvalidUrl)?;
        let mgr_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.op_timeout))
            .set_response_timeout(Some(cfg.op_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), mgr_cfg)
            .map_err(CacheError::InvalidUrl)?;
        let near = EntryMap::new(cfg.near_capacity);
        let inner = Arc::new(Inner {
            conn,
            near,
            stamps: Stamps::new(),
            flights: SingleFlight::new(),
            counters: Counters::default(),
            down: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            pending: Mutex::new(Pending::default()),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            cfg,
        });
        if let Err(e) = inner.ping().await {
            inner.mark_down(&e);
        }
        let tasks = Tasks(vec![
            tokio::spawn(subscriber(Arc::downgrade(&inner), client)),
            tokio::spawn(probe(Arc::downgrade(&inner))),
        ]);
        Ok(Self {
            inner,
            _tasks: Arc::new(tasks),
        })
    }

    /// Whether the near-cache is in use (subscribed to invalidations and Redis answering).
    pub fn near_cache_active(&self) -> bool {
        self.inner.near_usable()
    }
}

impl Inner {
    fn down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    fn near_usable(&self) -> bool {
        !self.down() && self.subscribed.load(Ordering::SeqCst)
    }

    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, OpError> {
        match tokio::time::timeout(self.cfg.op_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(OpError::Redis(e)),
            Err(_) => Err(OpError::Timeout),
        }
    }

    async fn ping(&self) -> Result<(), OpError> {
        let mut conn = self.conn.clone();
        self.timed(::redis::cmd("PING").query_async::<Value>(&mut conn))
            .await
            .map(drop)
    }

    /// Enters an outage (if not in one): one warning, near-cache cleared and unused.
    fn mark_down(&self, why: &OpError) {
        let mut p = lock(&self.pending);
        self.mark_down_locked(&mut p, why);
    }

    fn mark_down_locked(&self, _pending: &mut Pending, why: &OpError) {
        if !self.down.swap(true, Ordering::SeqCst) {
            self.counters.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                error = %why,
                "Redis follower cache unavailable: serving the graph store directly until Redis answers"
            );
            // Flag first, then the epoch: see `Stamps`.
            self.stamps.bump_all();
            self.near.clear();
        }
    }

    fn set_subscribed(&self, on: bool) {
        self.subscribed.store(on, Ordering::SeqCst);
        self.stamps.bump_all();
        if !on {
            self.near.clear();
        }
    }

    /// Records `keys` for replay and enters an outage.
    fn defer(&self, keys: &[CacheKey], why: &OpError) {
        let mut p = lock(&self.pending);
        self.add_pending(&mut p, keys);
        self.mark_down_locked(&mut p, why);
    }

    fn add_pending(&self, p: &mut Pending, keys: &[CacheKey]) {
        if p.purge {
            return;
        }
        p.keys.extend(keys.iter().copied());
        if p.keys.len() > self.cfg.pending_limit {
            p.keys.clear();
            p.purge = true;
        }
    }

    /// A read-path error: counted, and an outage if Redis is unreachable.
    fn read_failed(&self, key: &CacheKey, e: &OpError) {
        Counters::bump(&self.counters.kind(key.kind).errors);
        if e.is_outage() {
            self.mark_down(e);
        } else {
            tracing::debug!(key = %key, error = %e, "Redis follower cache command failed");
        }
    }

    async fn invalidate_remote(&self, keys: &[CacheKey]) -> Result<(), OpError> {
        for chunk in keys.chunks(INVALIDATE_CHUNK) {
            let mut msg = self.instance.clone();
            let mut inv = INVALIDATE.prepare_invoke();
            for k in chunk {
                inv.key(k.redis_key()).key(lease_key(k));
                msg.push(' ');
                msg.push_str(&k.redis_key());
            }
            inv.arg(&self.cfg.channel).arg(msg);
            let mut conn = self.conn.clone();
            self.timed(inv.invoke_async::<Value>(&mut conn)).await?;
        }
        Ok(())
    }

    /// Deletes every cache key and tells every instance to clear its near-cache.
    async fn purge_remote(&self) -> Result<(), OpError> {
        let mut conn = self.conn.clone();
        for pattern in PURGE_PATTERNS {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = self
                    .timed(
                        ::redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut conn),
                    )
                    .await?;
                if !keys.is_empty() {
                    self.timed(
                        ::redis::cmd("DEL")
                            .arg(&keys)
                            .query_async::<Value>(&mut conn),
                    )
                    .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        let msg = format!("{} *", self.instance);
        self.timed(
            ::redis::cmd("PUBLISH")
                .arg(&self.cfg.channel)
                .arg(msg)
                .query_async::<Value>(&mut conn),
        )
        .await
        .map(drop)
    }

    /// While in an outage: if Redis answers, replays the recorded invalidations and resumes.
    async fn try_recover(&self) {
        if self.ping().await.is_err() {
            return;
        }
        let mut replayed = 0usize;
        loop {
            let batch = {
                let mut p = lock(&self.pending);
                if p.keys.is_empty() && !p.purge {
                    // Under the lock: a concurrent invalidation either got recorded before this
                    // point (and was replayed) or will see `down == false` and go to Redis.
                    self.down.store(false, Ordering::SeqCst);
                    break;
                }
                std::mem::take(&mut *p)
            };
            let keys: Vec<CacheKey> = batch.keys.iter().copied().collect();
            let r = if batch.purge {
                self.purge_remote().await
            } else {
                self.invalidate_remote(&keys).await
            };
            if let Err(e) = r {
                let mut p = lock(&self.pending);
                if batch.purge {
                    p.purge = true;
                    p.keys.clear();
                } else {
                    self.add_pending(&mut p, &keys);
                }
                tracing::debug!(error = %e, "Redis follower cache: replay failed, still in outage");
                return;
            }
            replayed += if batch.purge { 1 } else { keys.len() };
        }
        tracing::info!(
            replayed_invalidations = replayed,
            "Redis follower cache recovered: caching resumed"
        );
    }

    async fn on_message(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let mut parts = text.split(' ');
        if parts.next() == Some(self.instance.as_str()) {
            return; // Applied locally before publishing.
        }
        self.counters
            .remote_invalidations
            .fetch_add(1, Ordering::Relaxed);
        for p in parts {
            if p == "*" {
                self.stamps.bump_all();
                self.near.clear();
            } else if let Some(k) = CacheKey::parse_redis_key(p) {
                self.stamps.bump(&k);
                self.near.remove(&k);
            }
        }
    }

    fn near_put(&self, key: CacheKey, stamp: Stamp, value: &Arc<CacheValue>) {
        // `stamp` was read before the flags were checked ok and before Redis was read; any
        // later outage, lost subscription or invalidation changes the stamp and kills the entry.
        if self.near_usable() {
            let now = Instant::now();
            self.near
                .insert(key, stamp, value.clone(), self.cfg.near_ttl, now);
        }
    }

    /// The flight body: Redis, else the store and a leased fill.
    async fn through(
        &self,
        key: CacheKey,
        stamp: Stamp,
        use_near: bool,
        load: BoxFuture<'static, Result<CacheValue, GraphError>>,
    ) -> Loaded {
        let c = self.counters.kind(key.kind);
        let episode = self.counters.outages.load(Ordering::SeqCst);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let lease_ms = self.cfg.lease_ttl.as_millis() as u64;
        let mut conn = self.conn.clone();
        let looked = self
            .timed(
                GET_OR_LEASE
                    .key(key.redis_key())
                    .key(lease_key(&key))
                    .arg(&token)
                    .arg(lease_ms)
                    .invoke_async::<Value>(&mut conn),
            )
            .await;
        let leased = match looked {
            Ok(Value::BulkString(bytes)) => match serde_json::from_slice::<CacheValue>(&bytes) {
                Ok(v) => {
                    let v = Arc::new(v);
                    if use_near {
                        self.near_put(key, stamp, &v);
                    }
                    return Ok((v, Source::Cache));
                }
                Err(e) => {
                    Counters::bump(&c.errors);
                    tracing::warn!(key = %key, error = %e, "undecodable follower cache entry, deleting it");
                    if let Err(e) = self.invalidate_remote(&[key]).await {
                        self.defer(&[key], &e);
                    }
                    false
                }
            },
            Ok(Value::Int(1)) => true,
            Ok(_) => false,
            Err(e) => {
                self.read_failed(&key, &e);
                false
            }
        };
        let value = Arc::new(load.await.map_err(error_text)?);
        if !leased || self.down() || self.counters.outages.load(Ordering::SeqCst) != episode {
            return Ok((value, Source::Store));
        }
        let bytes = match serde_json::to_vec(&*value) {
            Ok(b) => b,
            Err(_) => return Ok((value, Source::Store)), // Plain data: cannot fail.
        };
        let ttl_ms = jittered(self.cfg.ttl, self.cfg.ttl_jitter).as_millis() as u64;
        let filled = self
            .timed(
                FILL.key(key.redis_key())
                    .key(lease_key(&key))
                    .arg(&token)
                    .arg(bytes)
                    .arg(ttl_ms)
                    .invoke_async::<i64>(&mut conn),
            )
            .await;
        match filled {
            Ok(1) => {
                Counters::bump(&c.fills);
                if use_near {
                    self.near_put(key, stamp, &value);
                }
            }
            Ok(_) => Counters::bump(&c.stale_discards),
            Err(e) => self.read_failed(&key, &e),
        }
        Ok((value, Source::Store))
    }
}

#[async_trait]
impl FollowerCache for RedisCache {
    async fn get_or_load(
        &self,
        key: CacheKey,
        load: &Loader,
    ) -> Result<Arc<CacheValue>, GraphError> {
        let inner = &self.inner;
        let c = inner.counters.kind(key.kind);
        if inner.down() {
            Counters::bump(&c.misses);
            Counters::bump(&c.bypassed);
            return load_one(load, key).await.map(Arc::new);
        }
        // Stamp before the flags (see `Stamps`): a transition after this kills what we insert.
        let stamp = inner.stamps.stamp(&key);
        let use_near = inner.near_usable();
        if use_near {
            if let Some(v) = inner.near.get(&key, stamp, Instant::now()) {
                if inner.near_usable() {
                    Counters::bump(&c.hits);
                    Counters::bump(&c.near_hits);
                    return Ok(v);
                }
            }
        }
        let shared = self.inner.clone();
        let make = move |_: Vec<(CacheKey, Stamp)>| -> BoxFuture<'static, Vec<Loaded>> {
            let load = load_one(load, key);
            Box::pin(async move { vec![shared.through(key, stamp, use_near, load).await] })
        };
        let out = inner.flights.run((key, stamp), make).await;
        match out {
            Ok((v, Source::Cache)) => {
                Counters::bump(&c.hits);
                Ok(v)
            }
            Ok((v, Source::Store)) => {
                Counters::bump(&c.misses);
                Ok(v)
            }
            Err(e) => {
                Counters::bump(&c.misses);
                Err(GraphError::Backend(e))
            }
        }
    }

    async fn peek_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CacheValue>>> {
        let inner = &self.inner;
        let now = Instant::now();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // As in `get_or_load`: the stamp before the flags, and the flags again after the read.
            let stamp = inner.stamps.stamp(key);
            let mut hit = None;
            if !inner.down() && inner.near_usable() {
                if let Some(v) = inner.near.get(key, stamp, now) {
                    if inner.near_usable() {
                        let c = inner.counters.kind(key.kind);
                        Counters::bump(&c.hits);
                        Counters::bump(&c.near_hits);
                        hit = Some(v);
                    }
                }
            }
            out.push(hit);
        }
        out
    }

    fn version(&self, key: &CacheKey) -> Option<Version> {
        let inner = &self.inner;
        // As in `get_or_load`: the stamp before the flags. Without the near-cache in use, an
        // invalidation from another instance may be missed without a stamp change.
        let stamp = inner.stamps.stamp(key);
        (!inner.down() && inner.near_usable()).then_some(Version(stamp))
    }

    fn replace(&self, key: CacheKey, old: &Arc<CacheValue>, new: CacheValue) {
        let inner = &self.inner;
        let stamp = inner.stamps.stamp(&key);
        if !inner.down() && inner.near_usable() {
            inner.near.replace(&key, stamp, old, Arc::new(new));
        }
    }

    async fn invalidate(&self, keys: &[CacheKey]) {
        let inner = &self.inner;
        for k in keys {
            inner.stamps.bump(k);
            inner.near.remove(k);
            inner.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut p = lock(&inner.pending);
            if inner.down() {
                inner.add_pending(&mut p, keys);
                return;
            }
        }
        if let Err(e) = inner.invalidate_remote(keys).await {
            for k in keys {
                Counters::bump(&inner.counters.kind(k.kind).errors);
            }
            inner.defer(keys, &e);
        }
    }

    fn stats(&self) -> CacheStats {
        let usage = self.inner.near.usage();
        self.inner
            .counters
            .snapshot("redis", !self.inner.down(), usage)
    }
}

/// Keeps the subscription to the invalidation channel; while it is not subscribed the
/// near-cache is off.
async fn subscriber(weak: Weak<Inner>, client: Client) {
    let Some((channel, keepalive, op_timeout)) = weak
        .upgrade()
        .map(|i| (i.cfg.channel.clone(), i.cfg.keepalive, i.cfg.op_timeout))
    else {
        return;
    };
    let retry = (keepalive / 10).max(Duration::from_millis(50));
    loop {
        let connected = tokio::time::timeout(op_timeout, async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, RedisError>(ps)
        })
        .await;
        if let Ok(Ok(ps)) = connected {
            let Some(inner) = weak.upgrade() else { return };
            inner.set_subscribed(true);
            drop(inner);
            let (mut sink, mut stream) = ps.split();
            let mut tick = tokio::time::interval(keepalive);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    msg = stream.next() => match msg {
                        Some(m) => {
                            let Some(inner) = weak.upgrade() else { return };
                            inner.on_message(m.get_payload_bytes()).await;
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        let pong = tokio::time::timeout(op_timeout, sink.ping::<Value>()).await;
                        if !matches!(pong, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            let Some(inner) = weak.upgrade() else { return };
            inner.set_subscribed(false);
            tracing::debug!("Redis follower cache: invalidation subscription lost, near-cache off");
        }
        if weak.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(retry).await;
    }
}

/// While in an outage, tries Redis every `probe_interval`.
async fn probe(weak: Weak<Inner>) {
    let Some(every) = weak.upgrade().map(|i| i.cfg.probe_interval) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.down() {
            inner.try_recover().await;
        }
    }
}
