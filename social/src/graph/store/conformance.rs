//! The conformance suite every [`GraphStore`] backend must pass.
//!
//! Each check uses fresh random user ids, so the suite can run against a shared external
//! database. The brute-force check builds a random graph of a few thousand users and compares
//! every query with a computation over the same edges in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use crate::graph::{Cursor, Edge, GraphError, GraphStore, Profile, RecommendLimits, Side};
use crate::id::UserId;
use crate::messaging::model::{Event, EventKey};
use crate::messaging::store::Outbox;

fn user() -> UserId {
    UserId(Uuid::new_v4())
}

/// Runs every check.
pub async fn run<G: GraphStore>(g: Arc<G>) {
    outbox_events(&*g).await;
    profiles(&*g).await;
    follow_is_idempotent_and_counted(&*g).await;
    concurrent_duplicates(g.clone()).await;
    paging_returns_every_edge_once(&*g).await;
    batches_answer_like_single_reads(&*g).await;
    brute_force(&*g, 2_000, 20_000, 1).await;
}

/// With an [`event_outbox`](GraphStore::event_outbox): each follow or unfollow that changes the
/// graph leaves exactly one event in the outbox, there as soon as the call returns (written
/// with the change), in write order; a follow or unfollow that changes nothing (repeated, or
/// concurrent duplicates beyond the first) and a refused self-follow leave none. A backend
/// without an outbox is only checked to say so.
pub async fn outbox_events<G: GraphStore + ?Sized>(g: &G) {
    let Some((outbox, node)) = g.event_outbox() else {
        return;
    };
    let (a, b, c) = (user(), user(), user());
    let ours = [a, b, c];
    let followed = |follower, followee, since| Event::Followed {
        v: Event::VERSION,
        follower,
        followee,
        since,
    };
    let unfollowed = |follower, followee| Event::Unfollowed {
        v: Event::VERSION,
        follower,
        followee,
    };
    assert!(g.follow(a, b, 7_000).await.unwrap());
    // The event is in the outbox once the follow returned, with the edge.
    assert!(g.is_following(a, b).await.unwrap());
    let got = graph_events(outbox, node, &ours).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, followed(a, b, 7_000));
    // Repeated: nothing changes, nothing is written.
    assert!(!g.follow(a, b, 7_001).await.unwrap());
    // Concurrent duplicates: one edge, one event.
    let dups = futures_util::future::join_all((0..8).map(|i| g.follow(c, b, 7_100 + i))).await;
    let created = dups.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(created, 1);
    let since_cb = g.followers(b, None, 1).await.unwrap()[0].since;
    assert!(g.unfollow(a, b).await.unwrap());
    assert!(!g.unfollow(a, b).await.unwrap(), "second unfollow");
    assert!(!g.unfollow(c, a).await.unwrap(), "no such edge");
    assert!(g.follow(a, a, 7_200).await.is_err());
    assert!(g.follow(a, b, 7_300).await.unwrap());
    let got = graph_events(outbox, node, &ours).await;
    let events: Vec<Event> = got.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        events,
        vec![
            followed(a, b, 7_000),
            followed(c, b, since_cb),
            unfollowed(a, b),
            followed(a, b, 7_300),
        ]
    );
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "seqs increase");
    for e in &events {
        assert_eq!(e.key(), EventKey::Followee(b), "keyed by the followee");
        assert_eq!(e.conversation(), None);
    }
    // A round trip through the stored form keeps every field.
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["type"], "graph.followed");
    assert_eq!(json["v"], 1);
}

/// `node`'s outbox records whose event is a follow or unfollow between `users`, in order.
async fn graph_events(outbox: &dyn Outbox, node: u16, users: &[UserId]) -> Vec<(u64, Event)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = outbox.outbox_read(node, after, 1000).await.unwrap();
        let Some((last, _)) = page.last() else {
            return out;
        };
        after = *last;
        out.extend(page.into_iter().filter(|(_, e)| match e {
            Event::Followed {
                follower, followee, ..
            }
            | Event::Unfollowed {
                follower, followee, ..
            } => users.contains(follower) && users.contains(followee),
            _ => false,
        }));
    }
}

/// Profiles are stored, replaced and returned in order.
pub async fn profiles<G: GraphStore + ?Sized>(g: &G) {
    let (a, b) = (user(), user());
    let p = Profile {
        id: a,
        display_name: "Ada".into(),
        avatar_url: Some("https://example.com/a.png".into()),
        bio: "hi".into(),
        updated_at: 1,
    };
    g.put_profile(p.clone()).await.unwrap();
    let mut p2 = p.clone();
    p2.display_name = "Ada L.".into();
    p2.updated_at = 2;
    g.put_profile(p2.clone()).await.unwrap();
    assert_eq!(g.profiles(&[b, a]).await.unwrap(), vec![None, Some(p2)]);
}

/// Follow/unfollow return whether they changed anything, and the counts follow.
pub async fn follow_is_idempotent_and_counted<G: GraphStore + ?Sized>(g: &G) {
    let (a, b) = (user(), user());
    assert!(matches!(
        g.follow(a, a, 1).await,
        Err(GraphError::SelfFollow)
    ));
    assert!(g.follow(a, b, 10).await.unwrap());
    assert!(
        !g.follow(a, b, 11).await.unwrap(),
        "second follow changes nothing"
    );
    assert!(g.is_following(a, b).await.unwrap());
    assert!(!g.is_following(b, a).await.unwrap());
    let ca = g.counts(a).await.unwrap();
    let cb = g.counts(b).await.unwrap();
    assert_eq!(
        (ca.following, ca.followers, cb.following, cb.followers),
        (1, 0, 0, 1)
    );
    // The first follow's time stays.
    assert_eq!(
        g.followers(b, None, 10).await.unwrap(),
        vec![Edge { user: a, since: 10 }]
    );
    assert!(g.unfollow(a, b).await.unwrap());
    assert!(!g.unfollow(a, b).await.unwrap());
    assert_eq!(g.counts(b).await.unwrap().followers, 0);
    assert_eq!(g.counts(a).await.unwrap().following, 0);
    assert!(g.followers(b, None, 10).await.unwrap().is_empty());
}

/// Concurrent duplicate follows create one edge; concurrent unfollows remove it once.
pub async fn concurrent_duplicates<G: GraphStore>(g: Arc<G>) {
    let (a, b) = (user(), user());
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let g = g.clone();
            tokio::spawn(async move { g.follow(a, b, 100 + i).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap());
    }
    assert_eq!(created, 1);
    assert_eq!(g.counts(b).await.unwrap().followers, 1);
    assert_eq!(g.counts(a).await.unwrap().following, 1);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let g = g.clone();
            tokio::spawn(async move { g.unfollow(a, b).await.unwrap() })
        })
        .collect();
    let mut removed = 0;
    for t in tasks {
        removed += usize::from(t.await.unwrap());
    }
    assert_eq!(removed, 1);
    assert_eq!(g.counts(b).await.unwrap().followers, 0);
}

/// Paging with the cursor visits every edge exactly once, newest first, also when several
/// edges share a timestamp.
pub async fn paging_returns_every_edge_once<G: GraphStore + ?Sized>(g: &G) {
    let star = user();
    let mut fans = Vec::new();
    for i in 0..257u64 {
        let f = user();
        // Groups of three share a timestamp.
        g.follow(f, star, 1_000 + i / 3).await.unwrap();
        fans.push(Edge {
            user: f,
            since: 1_000 + i / 3,
        });
    }
    for limit in [1usize, 10, 100] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = g.followers(star, after, limit).await.unwrap();
            assert!(page.len() <= limit);
            if page.is_empty() {
                break;
            }
            after = page.last().map(Cursor::after);
            seen.extend(page);
        }
        assert_eq!(seen.len(), fans.len(), "limit {limit}");
        let set: BTreeSet<_> = seen.iter().map(|e| e.user).collect();
        assert_eq!(set.len(), fans.len(), "limit {limit}: an edge came twice");
        assert!(
            seen.windows(2).all(|w| w[0].since >= w[1].since),
            "newest first"
        );
    }
    let c = g.counts(star).await.unwrap();
    assert_eq!(c.followers, 257);
}

/// `counts_many` and `first_pages` (both sides) answer each user in order, as
/// `counts`, `followers` and `following` do (a user repeated, and one unknown, included).
pub async fn batches_answer_like_single_reads<G: GraphStore + ?Sized>(g: &G) {
    let us: Vec<UserId> = (0..6).map(|_| user()).collect();
    for (i, a) in us.iter().enumerate() {
        for b in us.iter().skip(i + 1).take(i + 1) {
            g.follow(*a, *b, 5_000 + i as u64).await.unwrap();
            g.follow(*b, *a, 6_000 + i as u64).await.unwrap();
        }
    }
    let mut asked = us.clone();
    asked.push(us[2]);
    asked.push(user());
    let counts = g.counts_many(&asked).await.unwrap();
    let followers = g.first_pages(Side::Followers, &asked, 3).await.unwrap();
    let following = g.first_pages(Side::Following, &asked, 3).await.unwrap();
    assert_eq!(counts.len(), asked.len());
    for (i, u) in asked.iter().enumerate() {
        assert_eq!(counts[i], g.counts(*u).await.unwrap(), "counts of #{i}");
        assert_eq!(followers[i], g.followers(*u, None, 3).await.unwrap());
        assert_eq!(following[i], g.following(*u, None, 3).await.unwrap());
    }
    assert!(followers.iter().any(|f| f.len() == 3), "no list was cut");
    assert!(g.counts_many(&[]).await.unwrap().is_empty());
}

/// A random graph with a power-law-ish degree distribution, checked query by query against a
/// brute-force computation. `checked` users are examined in depth.
pub async fn brute_force<G: GraphStore + ?Sized>(g: &G, users: usize, edges: usize, seed: u64) {
    let ids: Vec<UserId> = (0..users).map(|_| user()).collect();
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        // xorshift64*
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut out: HashMap<UserId, BTreeMap<UserId, u64>> = HashMap::new();
    let mut inn: HashMap<UserId, BTreeMap<UserId, u64>> = HashMap::new();
    let mut t = 1_000_000u64;
    for _ in 0..edges {
        let from = ids[(next() % users as u64) as usize];
        // Targets skewed toward low indices: a few very popular accounts.
        let r = (next() % 1_000_000) as f64 / 1_000_000.0;
        let to = ids[((r * r * r) * users as f64) as usize % users];
        if from == to {
            continue;
        }
        t += 1;
        if g.follow(from, to, t).await.unwrap() {
            out.entry(from).or_default().insert(to, t);
            inn.entry(to).or_default().insert(from, t);
        }
    }
    let empty = BTreeMap::new();
    let outs = |u: &UserId| out.get(u).unwrap_or(&empty);
    let ins = |u: &UserId| inn.get(u).unwrap_or(&empty);
    let followers_n = |u: &UserId| ins(u).len() as u64;
    for (k, u) in ids.iter().enumerate().filter(|(k, _)| k % 97 == 0) {
        // Counts.
        let c = g.counts(*u).await.unwrap();
        assert_eq!(
            (c.following, c.followers),
            (outs(u).len() as u64, ins(u).len() as u64)
        );
        // Friends: both directions, newest-followed first.
        let mut friends: Vec<Edge> = outs(u)
            .iter()
            .filter(|(v, _)| ins(u).contains_key(v))
            .map(|(v, s)| Edge {
                user: *v,
                since: *s,
            })
            .collect();
        friends.sort_by(|a, b| b.since.cmp(&a.since).then(b.user.cmp(&a.user)));
        let got = g.friends(*u, None, 10_000).await.unwrap();
        let got_set: BTreeSet<_> = got.iter().map(|e| e.user).collect();
        let want_set: BTreeSet<_> = friends.iter().map(|e| e.user).collect();
        assert_eq!(got_set, want_set, "friends of user {k}");
        // Common followings with another user.
        let other = ids[(k * 7 + 3) % users];
        let mut common: Vec<UserId> = outs(u)
            .keys()
            .filter(|v| outs(&other).contains_key(v))
            .copied()
            .collect();
        common.sort_by(|a, b| followers_n(b).cmp(&followers_n(a)).then(a.cmp(b)));
        assert_eq!(
            g.common_following(*u, other, 10_000).await.unwrap(),
            common,
            "common of {k}"
        );
        // Recommendations: distinct paths through the accounts u follows.
        let mut paths: HashMap<UserId, u64> = HashMap::new();
        for v in outs(u).keys() {
            for w in outs(v).keys() {
                if w != u && !outs(u).contains_key(w) {
                    *paths.entry(*w).or_default() += 1;
                }
            }
        }
        let mut want: Vec<(UserId, u64)> = paths.into_iter().collect();
        want.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(followers_n(&b.0).cmp(&followers_n(&a.0)))
                .then(a.0.cmp(&b.0))
        });
        want.truncate(50);
        let got = g
            .recommendations(*u, 50, RecommendLimits::default())
            .await
            .unwrap();
        if outs(u).is_empty() {
            // Fallback: popular accounts, never the user.
            assert!(got.iter().all(|r| r.paths == 0 && r.user != *u));
        } else {
            let got: Vec<(UserId, u64)> = got.iter().map(|r| (r.user, r.paths)).collect();
            assert_eq!(got, want, "recommendations of user {k}");
        }
    }
    // Popular: by follower count.
    let pop = g.popular(10).await.unwrap();
    assert!(pop.windows(2).all(|w| w[0].followers >= w[1].followers));
}
