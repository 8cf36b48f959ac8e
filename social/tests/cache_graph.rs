//! The follower cache over the embedded graph store: read-your-writes on one instance and across
//! instances sharing a real `redis-server`, fills racing invalidations (forced interleaving),
//! one load per key, first-page caching of large lists, and Redis killed / paused mid-run.
//!
//! Every Redis test starts its own `redis-server` on a free port (no persistence), killed on drop.
#![cfg(feature = "redis")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tempfile::TempDir;
use tokio::sync::oneshot;
use uuid::Uuid;
use zerocast_social::graph::cache::{
    CacheStats, CachedGraph, FollowerCache, KeyKind, LocalCache, LocalConfig, RedisCache,
    RedisConfig,
};
use zerocast_social::graph::store::conformance;
use zerocast_social::graph::{
    Counts, Cursor, Edge, GraphError, GraphStore, Profile, RecommendLimits, Recommendation, Side,
};
use zerocast_social::id::UserId;
use zerocast_social::messaging::store::embedded::EmbeddedStore;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn user() -> UserId {
    UserId(Uuid::new_v4())
}

static CLOCK: AtomicU64 = AtomicU64::new(1_000);

fn now() -> u64 {
    CLOCK.fetch_add(1, Ordering::Relaxed)
}

fn profile(id: UserId, name: &str) -> Profile {
    Profile {
        id,
        display_name: name.into(),
        avatar_url: None,
        bio: String::new(),
        updated_at: now(),
    }
}

/// The embedded store in a temp dir (kept alive by the returned guard).
fn embedded() -> (Arc<dyn GraphStore>, TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("cache-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), 1).expect("open store");
    (Arc::new(store), dir)
}

/// What a paused `followers` call signals and waits for.
struct Gate {
    loaded: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// A wrapper around the real store that counts `followers` calls and, when armed, pauses the
/// next one *after* it has read the store, until the test releases it. This forces the
/// interleaving "load reads old state → write + invalidation → load tries to fill".
struct Pausing {
    inner: Arc<dyn GraphStore>,
    gate: Mutex<Option<Gate>>,
    follower_loads: AtomicUsize,
    /// Calls of `counts_many` and `first_pages` of followings.
    batches: AtomicUsize,
    /// Calls of `counts` and `following`.
    singles: AtomicUsize,
}

impl Pausing {
    fn new(inner: Arc<dyn GraphStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gate: Mutex::new(None),
            follower_loads: AtomicUsize::new(0),
            batches: AtomicUsize::new(0),
            singles: AtomicUsize::new(0),
        })
    }

    /// Arms the gate: returns (signalled once the paused load has read the store, release).
    fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (loaded_tx, loaded_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.gate.lock().unwrap() = Some(Gate {
            loaded: loaded_tx,
            release: release_rx,
        });
        (loaded_rx, release_tx)
    }

    fn loads(&self) -> usize {
        self.follower_loads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl GraphStore for Pausing {
    async fn put_profile(&self, p: Profile) -> Result<(), GraphError> {
        self.inner.put_profile(p).await
    }
    async fn profiles(&self, ids: &[UserId]) -> Result<Vec<Option<Profile>>, GraphError> {
        self.inner.profiles(ids).await
    }
    async fn follow(&self, from: UserId, to: UserId, now_ms: u64) -> Result<bool, GraphError> {
        self.inner.follow(from, to, now_ms).await
    }
    async fn unfollow(&self, from: UserId, to: UserId) -> Result<bool, GraphError> {
        self.inner.unfollow(from, to).await
    }
    async fn is_following(&self, from: UserId, to: UserId) -> Result<bool, GraphError> {
        self.inner.is_following(from, to).await
    }
    async fn followers(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        let r = self.inner.followers(user, after, limit).await;
        self.follower_loads.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().take();
        if let Some(g) = gate {
            let _ = g.loaded.send(());
            let _ = g.release.await;
        } else {
            // Widen the window in which concurrent readers pile up on one load.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        r
    }
    async fn following(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        self.singles.fetch_add(1, Ordering::SeqCst);
        self.inner.following(user, after, limit).await
    }
    async fn counts(&self, user: UserId) -> Result<Counts, GraphError> {
        self.singles.fetch_add(1, Ordering::SeqCst);
        self.inner.counts(user).await
    }
    async fn counts_many(&self, users: &[UserId]) -> Result<Vec<Counts>, GraphError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.inner.counts_many(users).await
    }
    async fn first_pages(
        &self,
        side: Side,
        users: &[UserId],
        limit: usize,
    ) -> Result<Vec<Vec<Edge>>, GraphError> {
        match side {
            // Follower lists load one at a time, through `followers` (counted, and held by
            // the gate).
            Side::Followers => {
                futures_util::future::try_join_all(
                    users.iter().map(|u| self.followers(*u, None, limit)),
                )
                .await
            }
            Side::Following => {
                self.batches.fetch_add(1, Ordering::SeqCst);
                self.inner.first_pages(side, users, limit).await
            }
        }
    }
    async fn friends(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        self.inner.friends(user, after, limit).await
    }
    async fn common_following(
        &self,
        a: UserId,
        b: UserId,
        limit: usize,
    ) -> Result<Vec<UserId>, GraphError> {
        self.inner.common_following(a, b, limit).await
    }
    async fn recommendations(
        &self,
        user: UserId,
        limit: usize,
        limits: RecommendLimits,
    ) -> Result<Vec<Recommendation>, GraphError> {
        self.inner.recommendations(user, limit, limits).await
    }
    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, GraphError> {
        self.inner.popular(limit).await
    }
}

fn ids(edges: &[Edge]) -> Vec<UserId> {
    edges.iter().map(|e| e.user).collect()
}

/// Everything the cache serves for `u`, read through `g`.
async fn view(g: &dyn GraphStore, u: UserId) -> (Vec<Edge>, Vec<Edge>, Counts, Option<Profile>) {
    (
        g.followers(u, None, 100).await.unwrap(),
        g.following(u, None, 100).await.unwrap(),
        g.counts(u).await.unwrap(),
        g.profiles(&[u]).await.unwrap().pop().flatten(),
    )
}

/// Asserts that `cached` answers exactly what the store answers for `users`.
async fn assert_matches_store(cached: &dyn GraphStore, store: &dyn GraphStore, users: &[UserId]) {
    for u in users {
        assert_eq!(view(cached, *u).await, view(store, *u).await, "user {u}");
    }
}

// ---------------------------------------------------------------------------------------------
// Redis fixture

/// A `redis-server` child on a free port, without persistence, killed on drop.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut s = Self { port, child: None };
        s.restart();
        s
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers PING.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    fn pause(&self) {
        self.signal("-STOP");
    }

    fn resume(&self) {
        self.signal("-CONT");
    }

    /// Redis data, read directly with the synchronous protocol (`GET key`), for assertions.
    fn get(&self, key: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let cmd = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
        s.write_all(cmd.as_bytes()).ok()?;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = s.read(&mut buf).ok()?;
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if text.starts_with("$-1\r\n") {
                return None;
            }
            if let Some(rest) = text.strip_prefix('$') {
                let (len, body) = rest.split_once("\r\n")?;
                let len: usize = len.parse().ok()?;
                if body.len() >= len + 2 {
                    return Some(body[..len].to_owned());
                }
            }
            if n == 0 {
                return None;
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A paused server ignores SIGTERM but not SIGKILL; `kill` sends SIGKILL.
            self.kill();
        }
    }
}

fn test_config() -> RedisConfig {
    RedisConfig {
        op_timeout: Duration::from_millis(400),
        probe_interval: Duration::from_millis(100),
        keepalive: Duration::from_millis(500),
        ..RedisConfig::default()
    }
}

async fn redis_cache(server: &RedisServer) -> Arc<RedisCache> {
    let c = Arc::new(
        RedisCache::connect(&server.url(), test_config())
            .await
            .expect("connect"),
    );
    // Wait for the invalidation subscription, so the near-cache is in play.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c.near_cache_active() {
        assert!(Instant::now() < deadline, "subscription never came up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c
}

fn graph(store: Arc<dyn GraphStore>, cache: &Arc<RedisCache>) -> CachedGraph {
    CachedGraph::new(store, cache.clone() as Arc<dyn FollowerCache>)
}

/// Polls `read` until it equals `want`, for at most `window` (pub/sub delivery); then checks
/// that it stays equal. Returns how long it took.
async fn converges<T, F, Fut>(window: Duration, want: &T, mut read: F) -> Duration
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let t = Instant::now();
    loop {
        let got = read().await;
        if got == *want {
            break;
        }
        assert!(t.elapsed() < window, "still {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = t.elapsed();
    for _ in 0..5 {
        assert_eq!(read().await, *want, "went stale again");
    }
    took
}

async fn wait_available(c: &dyn FollowerCache, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.stats().available != up {
        assert!(
            Instant::now() < deadline,
            "cache never became available={up}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hits(s: &CacheStats) -> u64 {
    s.total().hits
}

// ---------------------------------------------------------------------------------------------
// In-process

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_writes_are_visible_to_the_next_read() {
    let (store, _dir) = embedded();
    let cache = Arc::new(LocalCache::new(LocalConfig::default()));
    let g = CachedGraph::new(store.clone(), cache.clone());
    let (a, b, c) = (user(), user(), user());
    g.put_profile(profile(b, "Bea")).await.unwrap();
    g.follow(c, b, now()).await.unwrap();

    // Warm every kind, then the same reads hit.
    assert_matches_store(&g, &*store, &[a, b, c]).await;
    let before = cache.stats();
    assert_matches_store(&g, &*store, &[a, b, c]).await;
    let after = cache.stats();
    for k in KeyKind::ALL {
        assert!(after.kind(k).hits > before.kind(k).hits, "{k:?} not cached");
        assert_eq!(after.kind(k).misses, before.kind(k).misses, "{k:?} missed");
    }

    // A follow changes both sides' lists and counts.
    assert!(g.follow(a, b, now()).await.unwrap());
    assert_eq!(ids(&g.followers(b, None, 10).await.unwrap()), vec![a, c]);
    assert_eq!(ids(&g.following(a, None, 10).await.unwrap()), vec![b]);
    assert_eq!(g.counts(a).await.unwrap().following, 1);
    assert_eq!(g.counts(b).await.unwrap().followers, 2);
    assert_matches_store(&g, &*store, &[a, b, c]).await;

    // An unfollow too.
    assert!(g.unfollow(c, b).await.unwrap());
    assert_eq!(ids(&g.followers(b, None, 10).await.unwrap()), vec![a]);
    assert_eq!(g.counts(c).await.unwrap().following, 0);
    assert_matches_store(&g, &*store, &[a, b, c]).await;

    // A profile edit invalidates that profile only (the lists stay cached).
    let hits_before = cache.stats().followers.hits;
    g.put_profile(profile(b, "Beatrice")).await.unwrap();
    assert_eq!(
        g.profiles(&[b]).await.unwrap()[0]
            .as_ref()
            .unwrap()
            .display_name,
        "Beatrice"
    );
    g.followers(b, None, 10).await.unwrap();
    assert_eq!(cache.stats().followers.hits, hits_before + 1);
    assert_matches_store(&g, &*store, &[a, b, c]).await;
}

/// The whole graph conformance suite (including the brute-force comparison) through the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cached_graph_passes_the_graph_conformance_suite() {
    let (store, _dir) = embedded();
    let cache = Arc::new(LocalCache::new(LocalConfig::default()));
    conformance::run(Arc::new(CachedGraph::new(store, cache.clone()))).await;
    assert!(cache.stats().total().hits > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fill_racing_an_invalidation_is_never_cached() {
    let (store, _dir) = embedded();
    let pausing = Pausing::new(store.clone());
    let cache = Arc::new(LocalCache::new(LocalConfig::default()));
    let g = Arc::new(CachedGraph::new(pausing.clone(), cache.clone()));
    let (a, b) = (user(), user());

    // The load reads "no followers", then pauses before it can fill.
    let (loaded, release) = pausing.arm();
    let reader = tokio::spawn({
        let g = g.clone();
        async move { g.followers(b, None, 10).await.unwrap() }
    });
    loaded.await.unwrap();
    // Meanwhile: follow (store write + invalidation) completes.
    g.follow(a, b, now()).await.unwrap();
    // A read started now must not join the paused load: it sees the follow.
    assert_eq!(ids(&g.followers(b, None, 10).await.unwrap()), vec![a]);
    release.send(()).unwrap();
    // The racing read may return the old state (it overlapped the write)...
    assert!(reader.await.unwrap().is_empty());
    // ...but its value was not cached.
    assert_eq!(ids(&g.followers(b, None, 10).await.unwrap()), vec![a]);
    assert_eq!(cache.stats().followers.stale_discards, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_concurrent_misses_share_one_load() {
    let (store, _dir) = embedded();
    let pausing = Pausing::new(store.clone());
    let cache = Arc::new(LocalCache::new(LocalConfig::default()));
    let g = Arc::new(CachedGraph::new(pausing.clone(), cache));
    let (a, b) = (user(), user());
    store.follow(a, b, now()).await.unwrap();
    let readers: Vec<_> = (0..32)
        .map(|_| {
            let g = g.clone();
            tokio::spawn(async move { g.followers(b, None, 10).await.unwrap() })
        })
        .collect();
    for r in readers {
        assert_eq!(ids(&r.await.unwrap()), vec![a]);
    }
    assert_eq!(
        pausing.loads(),
        1,
        "one store load for 32 concurrent misses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_large_lists_cache_the_first_page_only() {
    let (store, _dir) = embedded();
    let pausing = Pausing::new(store.clone());
    let cache = Arc::new(LocalCache::new(LocalConfig::default()));
    let g = CachedGraph::new(pausing.clone(), cache.clone()).with_page_size(5);
    let star = user();
    for _ in 0..12 {
        store.follow(user(), star, now()).await.unwrap();
    }
    let all = store.followers(star, None, 100).await.unwrap();
    assert_eq!(all.len(), 12);
    // First page (any limit up to 5): cached.
    assert_eq!(g.followers(star, None, 5).await.unwrap(), all[..5]);
    assert_eq!(g.followers(star, None, 3).await.unwrap(), all[..3]);
    assert_eq!(pausing.loads(), 1);
    assert_eq!(cache.stats().followers.hits, 1);
    // More than a page, or a later page: the store.
    assert_eq!(g.followers(star, None, 12).await.unwrap(), all);
    let next = Some(Cursor::after(&all[4]));
    assert_eq!(g.followers(star, next, 5).await.unwrap(), all[5..10]);
    assert_eq!(pausing.loads(), 3);
    // The count is cached separately and exact.
    assert_eq!(g.counts(star).await.unwrap().followers, 12);
    // A new follower shows on the first page at once.
    let newest = user();
    g.follow(newest, star, now()).await.unwrap();
    assert_eq!(g.followers(star, None, 1).await.unwrap()[0].user, newest);
    assert_eq!(g.counts(star).await.unwrap().followers, 13);
}

/// A cold `recommendations` loads what it misses in one store call per step (the caller's
/// followings; theirs; the follower counts of a group of candidates), not one per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cold_recommendations_load_their_misses_in_batches() {
    let (store, _dir) = embedded();
    let pausing = Pausing::new(store.clone());
    let cache = Arc::new(LocalCache::new(LocalConfig::default()));
    let g = CachedGraph::new(pausing.clone(), cache.clone());
    let u = user();
    let vs: Vec<UserId> = (0..6).map(|_| user()).collect();
    for v in &vs {
        store.follow(u, *v, now()).await.unwrap();
        // Each followed account follows 4 new ones: 24 candidates with one path each.
        for _ in 0..4 {
            store.follow(*v, user(), now()).await.unwrap();
        }
    }
    let limits = RecommendLimits::default();
    let recs = g.recommendations(u, 50, limits).await.unwrap();
    assert_eq!(recs, store.recommendations(u, 50, limits).await.unwrap());
    assert_eq!(recs.len(), 24);
    // u's followings, then the six lists at once, then the 24 counts (one group) at once.
    assert_eq!(pausing.batches.load(Ordering::SeqCst), 3);
    assert_eq!(pausing.singles.load(Ordering::SeqCst), 0);
    assert_eq!(cache.stats().counts.fills, 24);
    assert_eq!(cache.stats().followings.fills, 7);
    // Warm now: no store call at all.
    g.recommendations(u, 50, limits).await.unwrap();
    assert_eq!(pausing.batches.load(Ordering::SeqCst), 3);
}

/// A first page rendered through the cache is kept with its list and served again, until the
/// list or one of the profiles it shows changes: never a page older than the last write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rendered_pages_are_reused_until_their_list_or_a_profile_changes() {
    let (store, _dir) = embedded();
    let cache = Arc::new(LocalCache::new(LocalConfig::default()));
    let g = CachedGraph::new(store.clone(), cache.clone());
    let (star, a, b) = (user(), user(), user());
    g.put_profile(profile(a, "Ada")).await.unwrap();
    g.put_profile(profile(b, "Bea")).await.unwrap();
    g.follow(a, star, now()).await.unwrap();
    g.follow(b, star, now()).await.unwrap();
    let renders = Arc::new(AtomicUsize::new(0));
    let r = renders.clone();
    // Names of the page's accounts, and how many renders so far.
    let render = move |edges: &[Edge], profiles: &[Option<Arc<Profile>>], limit: usize| {
        let n = r.fetch_add(1, Ordering::SeqCst);
        let names: Vec<String> = profiles
            .iter()
            .map(|p| {
                p.as_ref()
                    .map_or("-".to_owned(), |p| p.display_name.clone())
            })
            .collect();
        assert!(edges.len() <= limit);
        Bytes::from(format!("{} {n}", names.join(",")))
    };
    let page = || async {
        let b = g
            .render_page(Side::Followers, star, None, 10, &render)
            .await
            .unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    };
    // Rendered twice (read once, it would not be kept), then served as is.
    let first = page().await;
    assert!(first.starts_with("Bea,Ada 0"), "{first}");
    let first = page().await;
    assert!(first.starts_with("Bea,Ada 1"), "{first}");
    let kept = renders.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(page().await, first);
    }
    assert_eq!(
        renders.load(Ordering::SeqCst),
        kept,
        "a kept page was rendered again"
    );
    // A profile it shows changes: rendered again, with the new name.
    g.put_profile(profile(a, "Adele")).await.unwrap();
    assert!(page().await.starts_with("Bea,Adele "));
    // The list changes: rendered again.
    let c = user();
    g.follow(c, star, now()).await.unwrap();
    assert!(page().await.starts_with("-,Bea,Adele "));
    g.unfollow(b, star).await.unwrap();
    assert!(page().await.starts_with("-,Adele "));
    // Another limit, and a later page, render from what is current too.
    let two = g
        .render_page(Side::Followers, star, None, 1, &render)
        .await
        .unwrap();
    assert!(two.starts_with(b"- "));
    let all = g.followers(star, None, 10).await.unwrap();
    let later = g
        .render_page(
            Side::Followers,
            star,
            Some(Cursor::after(&all[0])),
            10,
            &render,
        )
        .await
        .unwrap();
    assert!(later.starts_with(b"Adele "));
}

/// `friends`, `common_following` and `recommendations` through the cache, against the store.
async fn assert_composed_match(
    cached: &dyn GraphStore,
    store: &dyn GraphStore,
    u: UserId,
    v: UserId,
) {
    let limits = RecommendLimits::default();
    assert_eq!(
        cached.friends(u, None, 100).await.unwrap(),
        store.friends(u, None, 100).await.unwrap(),
        "friends"
    );
    assert_eq!(
        cached.common_following(u, v, 100).await.unwrap(),
        store.common_following(u, v, 100).await.unwrap(),
        "common"
    );
    assert_eq!(
        cached.recommendations(u, 20, limits).await.unwrap(),
        store.recommendations(u, 20, limits).await.unwrap(),
        "recommendations"
    );
}

fn users(recs: &[Recommendation]) -> Vec<UserId> {
    recs.iter().map(|r| r.user).collect()
}

/// The composed queries are answered from cached lists and counts (a second round misses
/// nothing), and every follow or unfollow shows in the next call: the caller's own, a friend's
/// (two hops away) and a candidate's follower count (the tie-break).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_friends_common_and_recommendations_come_from_the_cache_and_see_every_write() {
    let (store, _dir) = embedded();
    let cache = Arc::new(LocalCache::new(LocalConfig::default()));
    let g = CachedGraph::new(store.clone(), cache.clone());
    let (u, v1, v2, w1, w2, w3) = (user(), user(), user(), user(), user(), user());
    for (from, to) in [
        (u, v1),
        (v1, u),
        (u, v2),
        (v1, w1),
        (v1, w2),
        (v2, w1),
        (v2, u),
    ] {
        g.follow(from, to, now()).await.unwrap();
    }
    assert_composed_match(&g, &*store, u, v1).await;
    let limits = RecommendLimits::default();
    let first = g.recommendations(u, 20, limits).await.unwrap();
    assert_eq!(users(&first), vec![w1, w2]);
    assert_eq!(first[0].paths, 2);

    // Once warm, the same questions miss nothing.
    let ask = || async {
        g.friends(u, None, 10).await.unwrap();
        g.friends(v1, None, 10).await.unwrap();
        g.common_following(v1, v2, 10).await.unwrap();
        g.common_following(u, v1, 10).await.unwrap();
        g.recommendations(u, 20, limits).await.unwrap();
        g.recommendations(v2, 20, limits).await.unwrap();
    };
    ask().await;
    let before = cache.stats().total();
    ask().await;
    let after = cache.stats().total();
    assert_eq!(after.misses, before.misses, "composed reads missed");
    assert!(after.hits > before.hits);

    // The caller follows a candidate: gone from its recommendations, now a friend if mutual.
    g.follow(u, w2, now()).await.unwrap();
    assert_eq!(
        users(&g.recommendations(u, 20, limits).await.unwrap()),
        vec![w1]
    );
    g.follow(w2, u, now()).await.unwrap();
    assert_eq!(
        ids(&g.friends(u, None, 10).await.unwrap()),
        vec![w2, v2, v1]
    );
    assert_composed_match(&g, &*store, u, v1).await;

    // Two hops away: someone the caller follows follows a new account.
    g.follow(v2, w3, now()).await.unwrap();
    assert_eq!(
        users(&g.recommendations(u, 20, limits).await.unwrap()),
        vec![w1, w3]
    );
    // Equal paths rank by follower count: w3 gets more followers than w1, and a second path.
    for _ in 0..3 {
        g.follow(user(), w3, now()).await.unwrap();
    }
    g.follow(v1, w3, now()).await.unwrap();
    let recs = g.recommendations(u, 20, limits).await.unwrap();
    assert_eq!(users(&recs), vec![w3, w1]);
    assert_eq!((recs[0].paths, recs[0].followers), (2, 5));
    assert_composed_match(&g, &*store, u, v2).await;

    // Unfollows too, on either hop.
    g.unfollow(v1, w3).await.unwrap();
    g.unfollow(v2, w1).await.unwrap();
    let recs = g.recommendations(u, 20, limits).await.unwrap();
    assert_eq!(users(&recs), vec![w3, w1]);
    assert_eq!((recs[0].paths, recs[1].paths), (1, 1));
    assert_composed_match(&g, &*store, u, v1).await;
    g.unfollow(w2, u).await.unwrap();
    assert_eq!(ids(&g.friends(u, None, 10).await.unwrap()), vec![v2, v1]);
    // Cursors page the cached friends like the store's.
    let all = g.friends(u, None, 10).await.unwrap();
    let next = Some(Cursor::after(&all[0]));
    assert_eq!(
        g.friends(u, next, 10).await.unwrap(),
        store.friends(u, next, 10).await.unwrap()
    );
}

/// Lists longer than the cached page (and callers following nobody) go to the store, whose
/// answers the cache returns unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_composed_queries_over_long_lists_fall_back_to_the_store() {
    let (store, _dir) = embedded();
    let cache = Arc::new(LocalCache::new(LocalConfig::default()));
    let g = CachedGraph::new(store.clone(), cache.clone()).with_page_size(3);
    let (u, v) = (user(), user());
    let limits = RecommendLimits {
        max_followings: 3,
        max_fanout: 3,
    };
    // u follows 5 accounts (more than a page), each following a few more.
    let mut followed = Vec::new();
    for _ in 0..5 {
        let x = user();
        g.follow(u, x, now()).await.unwrap();
        g.follow(v, x, now()).await.unwrap();
        g.follow(x, u, now()).await.unwrap();
        for _ in 0..4 {
            g.follow(x, user(), now()).await.unwrap();
        }
        followed.push(x);
    }
    assert_eq!(
        g.friends(u, None, 100).await.unwrap(),
        store.friends(u, None, 100).await.unwrap()
    );
    assert_eq!(g.friends(u, None, 100).await.unwrap().len(), 5);
    assert_eq!(
        g.common_following(u, v, 100).await.unwrap(),
        store.common_following(u, v, 100).await.unwrap()
    );
    assert_eq!(
        g.recommendations(u, 20, limits).await.unwrap(),
        store.recommendations(u, 20, limits).await.unwrap()
    );
    // A caller following nobody gets the popular fallback, as from the store.
    let loner = user();
    assert_eq!(
        g.recommendations(loner, 5, limits).await.unwrap(),
        store.recommendations(loner, 5, limits).await.unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Redis

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_writes_on_one_instance_are_seen_on_both() {
    let server = RedisServer::start();
    let (store, _dir) = embedded();
    let (ca, cb) = (redis_cache(&server).await, redis_cache(&server).await);
    let (ga, gb) = (graph(store.clone(), &ca), graph(store.clone(), &cb));
    let (a, b, c) = (user(), user(), user());
    ga.put_profile(profile(b, "Bea")).await.unwrap();
    ga.follow(c, b, now()).await.unwrap();

    // Warm both instances; B's second round is served by its near-cache.
    assert_matches_store(&ga, &*store, &[a, b, c]).await;
    assert_matches_store(&gb, &*store, &[a, b, c]).await;
    assert!(cb.stats().total().hits > 0, "B read what A filled");
    let near_before = cb.stats().total().near_hits;
    assert_matches_store(&gb, &*store, &[a, b, c]).await;
    assert!(cb.stats().total().near_hits > near_before);
    assert!(
        server.get(&format!("social:followers:{}", b.0)).is_some(),
        "list is in Redis"
    );

    let mut worst = Duration::ZERO;
    // Follow on A: A sees it at once; B within the pub/sub window, then never the old state.
    assert!(ga.follow(a, b, now()).await.unwrap());
    assert_eq!(ids(&ga.followers(b, None, 10).await.unwrap()), vec![a, c]);
    assert_eq!(ga.counts(a).await.unwrap().following, 1);
    worst = worst.max(
        converges(Duration::from_secs(1), &vec![a, c], || async {
            ids(&gb.followers(b, None, 10).await.unwrap())
        })
        .await,
    );
    worst = worst.max(
        converges(Duration::from_secs(1), &vec![b], || async {
            ids(&gb.following(a, None, 10).await.unwrap())
        })
        .await,
    );
    assert_eq!(gb.counts(b).await.unwrap().followers, 2);
    assert_matches_store(&ga, &*store, &[a, b, c]).await;
    assert_matches_store(&gb, &*store, &[a, b, c]).await;

    // Unfollow on B: B at once, A within the window.
    assert!(gb.unfollow(c, b).await.unwrap());
    assert_eq!(ids(&gb.followers(b, None, 10).await.unwrap()), vec![a]);
    worst = worst.max(
        converges(Duration::from_secs(1), &vec![a], || async {
            ids(&ga.followers(b, None, 10).await.unwrap())
        })
        .await,
    );
    worst = worst.max(
        converges(Duration::from_secs(1), &0, || async {
            ga.counts(c).await.unwrap().following
        })
        .await,
    );

    // Profile update on A: A at once, B within the window; the lists stay cached.
    ga.put_profile(profile(b, "Beatrice")).await.unwrap();
    let name = |p: Vec<Option<Profile>>| p[0].as_ref().map(|p| p.display_name.clone());
    assert_eq!(
        name(ga.profiles(&[b]).await.unwrap()).as_deref(),
        Some("Beatrice")
    );
    worst = worst.max(
        converges(
            Duration::from_secs(1),
            &Some("Beatrice".to_owned()),
            || async { name(gb.profiles(&[b]).await.unwrap()) },
        )
        .await,
    );
    assert_matches_store(&ga, &*store, &[a, b, c]).await;
    assert_matches_store(&gb, &*store, &[a, b, c]).await;

    // A third instance, started now, has no near-cache: it must see everything at once.
    let cc = redis_cache(&server).await;
    assert_matches_store(&graph(store.clone(), &cc), &*store, &[a, b, c]).await;

    assert!(cb.stats().remote_invalidations > 0 && ca.stats().remote_invalidations > 0);
    assert_eq!(ca.stats().outages + cb.stats().outages, 0);
    eprintln!("slowest cross-instance convergence (pub/sub window): {worst:?}");
}

/// The whole graph conformance suite through the Redis cache (one instance; the cross-instance
/// cases are the tests that follow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cached_graph_passes_the_graph_conformance_suite() {
    let server = RedisServer::start();
    let (store, _dir) = embedded();
    let cache = redis_cache(&server).await;
    conformance::run(Arc::new(graph(store, &cache))).await;
    let s = cache.stats();
    assert!(s.total().hits > 0 && s.outages == 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fill_racing_an_invalidation_is_never_cached() {
    let server = RedisServer::start();
    let (store, _dir) = embedded();
    let pausing = Pausing::new(store.clone());
    let (ca, cb) = (redis_cache(&server).await, redis_cache(&server).await);
    let ga = Arc::new(graph(pausing.clone(), &ca));
    let gb = graph(store.clone(), &cb);
    let (a, b, x) = (user(), user(), user());

    // Round 1, the write on the same instance. A's load takes the lease, reads "nobody", pauses.
    let (loaded, release) = pausing.arm();
    let reader = tokio::spawn({
        let ga = ga.clone();
        async move { ga.followers(b, None, 10).await.unwrap() }
    });
    loaded.await.unwrap();
    ga.follow(a, b, now()).await.unwrap();
    assert_eq!(ids(&ga.followers(b, None, 10).await.unwrap()), vec![a]);
    release.send(()).unwrap();
    assert!(
        reader.await.unwrap().is_empty(),
        "overlapping read: old state allowed"
    );
    assert_eq!(ids(&ga.followers(b, None, 10).await.unwrap()), vec![a]);
    assert_eq!(ids(&gb.followers(b, None, 10).await.unwrap()), vec![a]);
    assert_eq!(ca.stats().followers.stale_discards, 1);

    // Round 2, the write on the *other* instance. Drop the cached list first.
    ga.unfollow(x, b).await.unwrap(); // nothing to remove; invalidates b's lists
    let (loaded, release) = pausing.arm();
    let reader = tokio::spawn({
        let ga = ga.clone();
        async move { ga.followers(b, None, 10).await.unwrap() }
    });
    loaded.await.unwrap(); // A holds the lease and the state [a]
    gb.follow(x, b, now()).await.unwrap(); // B: store write, DEL value + lease, publish
    release.send(()).unwrap();
    assert_eq!(ids(&reader.await.unwrap()), vec![a]);
    assert_eq!(
        ca.stats().followers.stale_discards,
        2,
        "fill refused: lease gone"
    );
    // Neither Redis nor either instance holds the stale list.
    assert_eq!(server.get(&format!("social:followers:{}", b.0)), None);
    converges(Duration::from_secs(1), &vec![x, a], || async {
        ids(&ga.followers(b, None, 10).await.unwrap())
    })
    .await;
    assert_eq!(ids(&gb.followers(b, None, 10).await.unwrap()), vec![x, a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_concurrent_misses_share_one_load_per_instance() {
    let server = RedisServer::start();
    let (store, _dir) = embedded();
    let pausing = Pausing::new(store.clone());
    let ca = redis_cache(&server).await;
    let ga = Arc::new(graph(pausing.clone(), &ca));
    let (a, b) = (user(), user());
    store.follow(a, b, now()).await.unwrap();
    let readers: Vec<_> = (0..32)
        .map(|_| {
            let g = ga.clone();
            tokio::spawn(async move { g.followers(b, None, 10).await.unwrap() })
        })
        .collect();
    for r in readers {
        assert_eq!(ids(&r.await.unwrap()), vec![a]);
    }
    assert_eq!(pausing.loads(), 1);
    assert_eq!(ca.stats().followers.fills, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_degrades_to_the_store_and_recovers() {
    let mut server = RedisServer::start();
    let (store, _dir) = embedded();
    let (ca, cb) = (redis_cache(&server).await, redis_cache(&server).await);
    let (ga, gb) = (graph(store.clone(), &ca), graph(store.clone(), &cb));
    let users: Vec<UserId> = (0..6).map(|_| user()).collect();
    for (i, u) in users.iter().enumerate() {
        ga.put_profile(profile(*u, &format!("u{i}"))).await.unwrap();
        for v in &users[..i] {
            ga.follow(*u, *v, now()).await.unwrap();
        }
    }
    assert_matches_store(&ga, &*store, &users).await;
    assert_matches_store(&gb, &*store, &users).await;
    assert_matches_store(&gb, &*store, &users).await;
    assert!(cb.stats().total().near_hits > 0);

    server.kill();

    // Writes and reads keep working on both instances, and every answer is the store's.
    for round in 0..3 {
        let (g, other) = if round % 2 == 0 {
            (&ga, &gb)
        } else {
            (&gb, &ga)
        };
        let (x, y) = (users[round], users[5 - round]);
        g.follow(x, y, now()).await.unwrap();
        g.unfollow(users[5], users[round]).await.unwrap();
        g.put_profile(profile(x, &format!("renamed {round}")))
            .await
            .unwrap();
        assert_matches_store(g, &*store, &users).await;
        assert_matches_store(other, &*store, &users).await;
    }
    for c in [&ca, &cb] {
        let s = c.stats();
        assert!(!s.available);
        assert_eq!(s.outages, 1, "one warning per outage episode: {s:?}");
        assert!(s.total().bypassed > 0);
        assert!(s.total().errors > 0);
    }

    server.restart();
    wait_available(&*ca, true).await;
    wait_available(&*cb, true).await;
    // Answers stay right while the cache refills, and hits come back.
    assert_matches_store(&ga, &*store, &users).await;
    assert_matches_store(&gb, &*store, &users).await;
    let (ha, hb) = (hits(&ca.stats()), hits(&cb.stats()));
    assert_matches_store(&ga, &*store, &users).await;
    assert_matches_store(&gb, &*store, &users).await;
    assert!(
        hits(&ca.stats()) > ha && hits(&cb.stats()) > hb,
        "cache hits again"
    );
    // And invalidation across instances works again.
    gb.unfollow(users[1], users[0]).await.unwrap();
    converges(
        Duration::from_secs(1),
        &store.followers(users[0], None, 100).await.unwrap(),
        || async { ga.followers(users[0], None, 100).await.unwrap() },
    )
    .await;
    assert_eq!(ca.stats().outages, 1);
    assert_eq!(cb.stats().outages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_mid_run_replays_invalidations_before_caching_again() {
    // Unlike a restart without persistence, a paused Redis comes back with its data: the
    // invalidations of writes made meanwhile must be replayed before anyone reads it again.
    let server = RedisServer::start();
    let (store, _dir) = embedded();
    let ca = redis_cache(&server).await;
    let ga = graph(store.clone(), &ca);
    let (a, b, c) = (user(), user(), user());
    ga.follow(c, b, now()).await.unwrap();
    assert_matches_store(&ga, &*store, &[a, b, c]).await;
    let key = format!("social:followers:{}", b.0);
    assert!(server.get(&key).is_some());

    server.pause();
    // The first write's invalidation times out: outage. Answers come from the store.
    ga.follow(a, b, now()).await.unwrap();
    assert!(!ca.stats().available);
    ga.put_profile(profile(b, "Bea")).await.unwrap();
    assert_matches_store(&ga, &*store, &[a, b, c]).await;
    server.resume();

    wait_available(&*ca, true).await;
    // Redis no longer holds the list from before the follow.
    if let Some(v) = server.get(&key) {
        assert!(
            v.contains(&a.0.to_string()),
            "stale list left in Redis: {v}"
        );
    }
    // A fresh instance (no near-cache, reads Redis directly) and the old one agree with the store.
    let cb = redis_cache(&server).await;
    assert_matches_store(&graph(store.clone(), &cb), &*store, &[a, b, c]).await;
    assert_matches_store(&ga, &*store, &[a, b, c]).await;
    assert_eq!(ca.stats().outages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_at_start_serves_the_store_then_recovers() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let (store, _dir) = embedded();
    let ca = Arc::new(
        RedisCache::connect(&url, test_config())
            .await
            .expect("connect"),
    );
    let ga = graph(store.clone(), &ca);
    let (a, b) = (user(), user());
    ga.follow(a, b, now()).await.unwrap();
    assert_matches_store(&ga, &*store, &[a, b]).await;
    assert_eq!(ca.stats().outages, 1);
    server.restart();
    wait_available(&*ca, true).await;
    assert_matches_store(&ga, &*store, &[a, b]).await;
    let h = hits(&ca.stats());
    assert_matches_store(&ga, &*store, &[a, b]).await;
    assert!(hits(&ca.stats()) > h);
    let mut metrics = String::new();
    ca.render_prometheus(&mut metrics);
    assert!(metrics.contains("zerocast_social_cache_outages_total{backend=\"redis\"} 1"));
}
