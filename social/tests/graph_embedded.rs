//! The embedded (fjall) follow graph: the conformance suite, the brute-force check with timings,
//! durability across reopen, and the fan-out cap through an account that follows 50,000 others.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use tempfile::TempDir;
use uuid::Uuid;
use zerocast_social::graph::store::conformance;
use zerocast_social::graph::{
    Counts, Cursor, Edge, GraphError, GraphStore, Profile, RecommendLimits, Recommendation,
};
use zerocast_social::id::UserId;
use zerocast_social::messaging::store::embedded::EmbeddedStore;

/// A temp dir on the target disk (not tmpfs), so fsyncs cost what they cost.
fn tmp() -> TempDir {
    tempfile::Builder::new()
        .prefix("graph-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

fn user() -> UserId {
    UserId(Uuid::new_v4())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_embedded() {
    let dir = tmp();
    let store = EmbeddedStore::open(dir.path(), 1).expect("open");
    let stats = store.clone();
    let t = Instant::now();
    conformance::run(Arc::new(store)).await;
    let (writes, fsyncs) = stats.stats();
    eprintln!(
        "graph conformance (incl. brute force 2,000 users / 20,000 edges): {:.1?}, \
         {writes} writes, {fsyncs} fsyncs",
        t.elapsed()
    );
}

/// Delegates to the store and adds up the time spent in `follow` and in everything else.
struct Timed {
    g: EmbeddedStore,
    follow_ns: AtomicU64,
    other_ns: AtomicU64,
}

impl Timed {
    fn add(&self, follow: bool, t: Instant) {
        let ns = t.elapsed().as_nanos() as u64;
        let c = if follow {
            &self.follow_ns
        } else {
            &self.other_ns
        };
        c.fetch_add(ns, Ordering::Relaxed);
    }
}

#[async_trait]
impl GraphStore for Timed {
    async fn put_profile(&self, p: Profile) -> Result<(), GraphError> {
        let t = Instant::now();
        let r = self.g.put_profile(p).await;
        self.add(false, t);
        r
    }
    async fn profiles(&self, ids: &[UserId]) -> Result<Vec<Option<Profile>>, GraphError> {
        let t = Instant::now();
        let r = self.g.profiles(ids).await;
        self.add(false, t);
        r
    }
    async fn follow(&self, from: UserId, to: UserId, now_ms: u64) -> Result<bool, GraphError> {
        let t = Instant::now();
        let r = self.g.follow(from, to, now_ms).await;
        self.add(true, t);
        r
    }
    async fn unfollow(&self, from: UserId, to: UserId) -> Result<bool, GraphError> {
        let t = Instant::now();
        let r = self.g.unfollow(from, to).await;
        self.add(false, t);
        r
    }
    async fn is_following(&self, from: UserId, to: UserId) -> Result<bool, GraphError> {
        let t = Instant::now();
        let r = self.g.is_following(from, to).await;
        self.add(false, t);
        r
    }
    async fn followers(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        let t = Instant::now();
        let r = self.g.followers(user, after, limit).await;
        self.add(false, t);
        r
    }
    async fn following(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        let t = Instant::now();
        let r = self.g.following(user, after, limit).await;
        self.add(false, t);
        r
    }
    async fn counts(&self, user: UserId) -> Result<Counts, GraphError> {
        let t = Instant::now();
        let r = self.g.counts(user).await;
        self.add(false, t);
        r
    }
    async fn friends(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        let t = Instant::now();
        let r = self.g.friends(user, after, limit).await;
        self.add(false, t);
        r
    }
    async fn common_following(
        &self,
        a: UserId,
        b: UserId,
        limit: usize,
    ) -> Result<Vec<UserId>, GraphError> {
        let t = Instant::now();
        let r = self.g.common_following(a, b, limit).await;
        self.add(false, t);
        r
    }
    async fn recommendations(
        &self,
        user: UserId,
        limit: usize,
        limits: RecommendLimits,
    ) -> Result<Vec<Recommendation>, GraphError> {
        let t = Instant::now();
        let r = self.g.recommendations(user, limit, limits).await;
        self.add(false, t);
        r
    }
    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, GraphError> {
        let t = Instant::now();
        let r = self.g.popular(limit).await;
        self.add(false, t);
        r
    }
}

/// The brute-force comparison alone, timed: the 20,000 sequential follows (each waits for its
/// own fsync, nothing to group with) and the query checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_timing() {
    let dir = tmp();
    let g = Timed {
        g: EmbeddedStore::open(dir.path(), 1).expect("open"),
        follow_ns: AtomicU64::new(0),
        other_ns: AtomicU64::new(0),
    };
    let t = Instant::now();
    conformance::brute_force(&g, 2_000, 20_000, 7).await;
    let total = t.elapsed();
    let follows = Duration::from_nanos(g.follow_ns.load(Ordering::Relaxed));
    let checks = Duration::from_nanos(g.other_ns.load(Ordering::Relaxed));
    let (writes, fsyncs) = g.g.stats();
    eprintln!(
        "brute force 2,000 users / 20,000 edges: total {total:.1?}; 20,000 sequential follows \
         {follows:.1?} ({:.0} µs each, {writes} writes, {fsyncs} fsyncs); checks {checks:.1?}",
        follows.as_micros() as f64 / 20_000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_counts_and_profiles_survive_reopen() {
    let dir = tmp();
    let (a, b, c) = (user(), user(), user());
    let p = Profile {
        id: a,
        display_name: "Ada".into(),
        avatar_url: None,
        bio: String::new(),
        updated_at: 5,
    };
    {
        let g = EmbeddedStore::open(dir.path(), 1).expect("open");
        assert!(g.follow(a, b, 10).await.unwrap());
        assert!(g.follow(a, c, 11).await.unwrap());
        assert!(g.follow(c, b, 12).await.unwrap());
        assert!(g.follow(b, a, 13).await.unwrap());
        assert!(g.unfollow(b, a).await.unwrap());
        g.put_profile(p.clone()).await.unwrap();
        // Dropping the last handle waits for the writer and closes the database.
    }
    let g = EmbeddedStore::open(dir.path(), 1).expect("reopen");
    assert!(g.is_following(a, b).await.unwrap());
    assert!(g.is_following(c, b).await.unwrap());
    assert!(!g.is_following(b, a).await.unwrap());
    assert_eq!(
        g.counts(a).await.unwrap(),
        Counts {
            followers: 0,
            following: 2
        }
    );
    assert_eq!(
        g.counts(b).await.unwrap(),
        Counts {
            followers: 2,
            following: 0
        }
    );
    assert_eq!(
        g.following(a, None, 10).await.unwrap(),
        vec![Edge { user: c, since: 11 }, Edge { user: b, since: 10 }]
    );
    assert_eq!(
        g.followers(b, None, 10).await.unwrap(),
        vec![Edge { user: c, since: 12 }, Edge { user: a, since: 10 }]
    );
    let pop = g.popular(10).await.unwrap();
    assert_eq!(
        pop.iter()
            .map(|r| (r.user, r.followers))
            .collect::<Vec<_>>(),
        vec![(b, 2), (c, 1)]
    );
    assert_eq!(g.profiles(&[a, b]).await.unwrap(), vec![Some(p), None]);
    // Still writable after reopen, with the counts carried on.
    assert!(g.follow(b, c, 20).await.unwrap());
    assert_eq!(g.counts(c).await.unwrap().followers, 2);
}

/// A user follows an account that follows 50,000 others: the recommendation walk reads at most
/// `max_fanout` of them (the most recent), and finishes quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_through_a_huge_account_is_capped() {
    const N: usize = 50_000;
    let dir = tmp();
    let g = Arc::new(EmbeddedStore::open(dir.path(), 1).expect("open"));
    let (me, celeb, friend) = (user(), user(), user());
    let targets: Vec<UserId> = (0..N).map(|_| user()).collect();
    let t = Instant::now();
    // Concurrent follows share fsyncs (group commit).
    let created: usize = stream::iter(targets.iter().enumerate())
        .map(|(i, to)| {
            let g = g.clone();
            let to = *to;
            async move { usize::from(g.follow(celeb, to, 1_000 + i as u64).await.unwrap()) }
        })
        .buffer_unordered(256)
        .fold(0, |n, c| async move { n + c })
        .await;
    assert_eq!(created, N);
    let (writes, fsyncs) = g.stats();
    eprintln!(
        "{N} concurrent follows: {:.1?} ({writes} writes, {fsyncs} fsyncs)",
        t.elapsed()
    );
    assert_eq!(g.counts(celeb).await.unwrap().following, N as u64);

    // `me` follows the celebrity and an ordinary account, which follows the newest target and
    // `other`, whom `me` already follows (longest ago).
    let other = user();
    g.follow(me, other, 0).await.unwrap();
    g.follow(me, celeb, 1).await.unwrap();
    g.follow(me, friend, 2).await.unwrap();
    g.follow(friend, targets[N - 1], 3).await.unwrap();
    g.follow(friend, other, 4).await.unwrap();

    let newest: HashSet<UserId> = targets[N - 1_000..].iter().copied().collect();
    let limits = RecommendLimits {
        max_followings: 1000,
        max_fanout: 1000,
    };
    let t = Instant::now();
    let recs = g.recommendations(me, 10_000, limits).await.unwrap();
    eprintln!(
        "recommendations through a 50,000-following account (max_fanout 1000): {:.1?}",
        t.elapsed()
    );
    // Everything comes through the celebrity's 1,000 most recent followings (the friend's
    // only new candidate is among them): at most 1,000 candidates.
    assert!(recs.len() <= 1000, "{}", recs.len());
    assert!(recs.iter().all(|r| newest.contains(&r.user)));
    assert_eq!(recs.len(), 1000);
    // Two paths (celebrity and friend) rank first; then the single-path ones.
    assert_eq!((recs[0].user, recs[0].paths), (targets[N - 1], 2));
    assert!(recs[1..].iter().all(|r| r.paths == 1));

    // A smaller cap is honoured too, and the user's own follows stay excluded when they
    // follow more accounts than are expanded.
    let recs = g
        .recommendations(
            me,
            10_000,
            RecommendLimits {
                max_followings: 1,
                max_fanout: 10,
            },
        )
        .await
        .unwrap();
    // Only `friend` (the most recent following) is expanded; `other` is already followed.
    assert_eq!(
        recs.iter().map(|r| (r.user, r.paths)).collect::<Vec<_>>(),
        vec![(targets[N - 1], 1)]
    );

    // Every target follows the celebrity back: 50,000 friends, 50,001 followers (with `me`).
    let t = Instant::now();
    stream::iter(targets.iter().enumerate())
        .map(|(i, from)| {
            let g = g.clone();
            let from = *from;
            async move { assert!(g.follow(from, celeb, 100_000 + i as u64).await.unwrap()) }
        })
        .buffer_unordered(256)
        .collect::<()>()
        .await;
    eprintln!("{N} more concurrent follows: {:.1?}", t.elapsed());
    assert_eq!(g.counts(celeb).await.unwrap().followers, N as u64 + 1);
    let pop = g.popular(1).await.unwrap();
    assert_eq!((pop[0].user, pop[0].followers), (celeb, N as u64 + 1));
    let t = Instant::now();
    let friends = g.friends(celeb, None, 100).await.unwrap();
    eprintln!("friends page of 100 of the celebrity: {:.1?}", t.elapsed());
    assert_eq!(friends.len(), 100);
    assert_eq!(friends[0].user, targets[N - 1]);
    // A follower of the celebrity (one of the targets, following only it) gets at most
    // `max_fanout` candidates through it, never itself.
    let fan = targets[0];
    let t = Instant::now();
    let recs = g.recommendations(fan, 10_000, limits).await.unwrap();
    eprintln!(
        "recommendations for a follower of the celebrity: {:.1?}",
        t.elapsed()
    );
    assert_eq!(recs.len(), 1000);
    assert!(recs
        .iter()
        .all(|r| r.user != fan && newest.contains(&r.user)));
    // Ties on paths: by follower count (each has one, from the celebrity, except the one `friend`
    // follows too), then by id.
    assert_eq!((recs[0].user, recs[0].followers), (targets[N - 1], 2));
    assert!(recs[1..].windows(2).all(|w| w[0].user < w[1].user));

    // Paging the huge following list visits everything once.
    let t = Instant::now();
    let mut after = None;
    let mut seen = 0;
    loop {
        let page = g.following(celeb, after, 1_000).await.unwrap();
        if page.is_empty() {
            break;
        }
        seen += page.len();
        after = page.last().map(Cursor::after);
    }
    assert_eq!(seen, N);
    eprintln!("paging {N} followings by 1,000: {:.1?}", t.elapsed());
}
