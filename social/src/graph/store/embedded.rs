//! The embedded follow graph: [`GraphStore`] for [`EmbeddedStore`], in the same fjall database
//! as the messages and written through the same writer thread.
//!
//! # Layout
//!
//! Keys are big-endian, so byte order is numeric order; `!x` is `u64::MAX - x`, so the newest
//! (or largest) sorts first. Every key of a keyspace has the same length.
//!
//! | keyspace   | key                                  | value                           |
//! | ---------- | ------------------------------------ | ------------------------------- |
//! | `fwd`      | from (16) \| !since (8) \| to (16)   | empty                           |
//! | `bwd`      | to (16) \| !since (8) \| from (16)   | empty                           |
//! | `edges`    | from (16) \| to (16)                 | since (8)                       |
//! | `gcounts`  | user (16)                            | followers (8) \| following (8)  |
//! | `profiles` | user (16)                            | [`Profile`] JSON                |
//! | `popular`  | !followers (8) \| user (16)          | empty                           |
//!
//! `fwd` and `bwd` are the newest-first adjacency lists (ties on `since` by the other id,
//! ascending); `edges` answers "does `from` follow `to`, since when"; `popular` lists every
//! account with at least one follower, most followed first, then by id.
//!
//! # Writes: atomicity and durability
//!
//! `follow`, `unfollow` and `put_profile` run on the store's single writer thread (see
//! [`crate::messaging::store::embedded`]). A follow checks `edges` and, if the edge is new,
//! commits ONE batch holding the `fwd`, `bwd` and `edges` entries, both `gcounts` records, the
//! target's `popular` entry moved from its old count to its new one, and an
//! [`Event::Followed`] record in the outbox of the handle's node; unfollow removes the same
//! entries and adds [`Event::Unfollowed`] in one batch. A follow or unfollow that changes
//! nothing writes nothing, so it has no event. That outbox is the store's one outbox: with the
//! messages in this store too, one relay publishes both kinds in write order; beside ScyllaDB
//! messages it holds the graph's events only and has a relay of its own. Because the writer
//! thread serialises every write, the check-and-write is atomic: concurrent duplicate follows
//! create one edge, one count increment and one event. Every answer, also
//! "nothing changed", waits for the fsync of its commit group (the edge it saw may have been
//! created earlier in the same group), so an acknowledged follow survives `kill -9`.
//! Following yourself is [`GraphError::SelfFollow`], rejected before reaching the writer.
//!
//! # Reads and their cost
//!
//! Reads run on tokio's blocking pool. Each range scan sees one consistent state; a query made
//! of several lookups (friends, common, recommendations) sees every write answered before it
//! started and possibly some that commit while it runs. `F(u)` is the number of accounts `u`
//! follows, `k` the requested limit (clamped to [`MAX_PAGE`]); a lookup is a point read of the
//! LSM tree (`O(log n)` plus its block cache).
//!
//! - `followers` / `following`: one range scan of `bwd` / `fwd` from the cursor (exclusive),
//!   reading `k` entries: `O(log n + k)`.
//! - `counts`, `is_following`: one lookup each. `profiles(ids)`: one lookup per id.
//! - `counts_many`, `first_pages`: the same per user, all in one read
//!   (one trip to the blocking pool: the cache loads its misses of one request this way).
//! - `friends`: walks `fwd` of the user from the cursor (newest first) and keeps accounts with
//!   an `edges` entry back: one lookup per scanned following, at most [`MAX_FRIENDS_SCAN`] per
//!   call. A user following more than that may get a short page before the end.
//! - `common_following(a, b)`: scans the smaller following set (at most [`MAX_COMMON_SCAN`]
//!   entries), one `edges` lookup in the other account per entry, then one `gcounts` lookup per
//!   hit for the ordering: `O(min(F(a), F(b)) + hits · log hits)`.
//! - `recommendations`: reads the user's `max_followings` most recent followings, then at most
//!   `max_fanout` most recent followings of each (this caps the fan-out through huge accounts),
//!   counting distinct paths per candidate in a hash map: at most
//!   `max_followings · (1 + max_fanout)` scanned entries. Candidates are sorted by paths; only
//!   the groups of equal paths needed to fill `k` get their follower counts looked up (and, when
//!   the user follows more than `max_followings` accounts, an `edges` lookup to exclude accounts
//!   they already follow). A user who follows nobody gets `popular` (minus themselves).
//! - `popular`: one scan of the `popular` index, `O(log n + k)`.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;

use async_trait::async_trait;
use fjall::Keyspace;

use crate::graph::{
    Counts, Cursor, Edge, GraphError, GraphStore, Profile, Ranking, RecommendLimits,
    Recommendation, Side,
};
use crate::id::UserId;
use crate::messaging::model::Event;
use crate::messaging::store::embedded::{EmbeddedStore, Spaces, Writer};
use crate::messaging::store::{Outbox, StoreError};

/// Every list query returns at most this many entries (larger limits are clamped).
pub const MAX_PAGE: usize = 10_000;
/// `friends` scans at most this many of the user's followings per call.
pub const MAX_FRIENDS_SCAN: usize = 100_000;
/// `common_following` scans at most this many followings of the account following fewer.
pub const MAX_COMMON_SCAN: usize = 100_000;

const ID: usize = 16;
const DIR_KEY: usize = ID + 8 + ID;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn graph_err(e: StoreError) -> GraphError {
    match e {
        StoreError::Backend(s) => GraphError::Backend(s),
        other => GraphError::Backend(other.to_string()),
    }
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, StoreError> {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| backend("corrupt graph: short integer"))
}

fn uid_at(b: &[u8], at: usize) -> Result<UserId, StoreError> {
    b.get(at..at + ID)
        .and_then(|s| uuid::Uuid::from_slice(s).ok())
        .map(UserId)
        .ok_or_else(|| backend("corrupt graph: short user id"))
}

/// `owner | !since | other`, the key of `fwd` (owner = from) and `bwd` (owner = to).
fn dir_key(owner: UserId, since: u64, other: UserId) -> [u8; DIR_KEY] {
    let mut k = [0u8; DIR_KEY];
    k[..ID].copy_from_slice(owner.0.as_bytes());
    k[ID..ID + 8].copy_from_slice(&(!since).to_be_bytes());
    k[ID + 8..].copy_from_slice(other.0.as_bytes());
    k
}

/// The other side and time of a `fwd`/`bwd` key.
fn dir_edge(k: &[u8]) -> Result<Edge, StoreError> {
    if k.len() != DIR_KEY {
        return Err(backend("corrupt graph: bad adjacency key"));
    }
    Ok(Edge {
        user: uid_at(k, ID + 8)?,
        since: !u64_at(k, ID)?,
    })
}

fn edge_key(from: UserId, to: UserId) -> [u8; 2 * ID] {
    let mut k = [0u8; 2 * ID];
    k[..ID].copy_from_slice(from.0.as_bytes());
    k[ID..].copy_from_slice(to.0.as_bytes());
    k
}

fn popular_key(followers: u64, user: UserId) -> [u8; 8 + ID] {
    let mut k = [0u8; 8 + ID];
    k[..8].copy_from_slice(&(!followers).to_be_bytes());
    k[8..].copy_from_slice(user.0.as_bytes());
    k
}

fn counts_value(c: Counts) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&c.followers.to_be_bytes());
    v[8..].copy_from_slice(&c.following.to_be_bytes());
    v
}

/// `owner`'s adjacency list in `ks` (`fwd` or `bwd`), newest first, strictly after `after`.
fn adjacency(
    ks: &Keyspace,
    owner: UserId,
    after: Option<Cursor>,
) -> impl Iterator<Item = Result<Edge, StoreError>> {
    let lo = match after {
        Some(c) => Bound::Excluded(dir_key(owner, c.since, c.user)),
        // `!since` of u64::MAX is 0: the smallest key of the owner.
        None => Bound::Included(dir_key(owner, u64::MAX, UserId(uuid::Uuid::nil()))),
    };
    let hi = Bound::Included(dir_key(
        owner,
        0,
        UserId(uuid::Uuid::from_bytes([0xff; ID])),
    ));
    ks.range((lo, hi))
        .map(|g| dir_edge(&g.key().map_err(backend)?))
}

fn counts_of(sp: &Spaces, user: UserId) -> Result<Counts, StoreError> {
    match sp.gcounts.get(user.0.as_bytes()).map_err(backend)? {
        Some(v) => Ok(Counts {
            followers: u64_at(&v, 0)?,
            following: u64_at(&v, 8)?,
        }),
        None => Ok(Counts::default()),
    }
}

fn follows(sp: &Spaces, from: UserId, to: UserId) -> Result<bool, StoreError> {
    sp.edges.contains_key(edge_key(from, to)).map_err(backend)
}

fn page(
    ks: &Keyspace,
    owner: UserId,
    after: Option<Cursor>,
    limit: usize,
) -> Result<Vec<Edge>, StoreError> {
    adjacency(ks, owner, after)
        .take(limit.min(MAX_PAGE))
        .collect()
}

/// The first `limit` edges of `side` of each of `users`, in order, in one read: what
/// `GraphStore::first_pages` answers.
async fn first_pages(
    store: &EmbeddedStore,
    side: Side,
    users: &[UserId],
    limit: usize,
) -> Result<Vec<Vec<Edge>>, GraphError> {
    let users = users.to_vec();
    store
        .read(move |sp| {
            let ks = match side {
                Side::Followers => &sp.bwd,
                Side::Following => &sp.fwd,
            };
            users.iter().map(|u| page(ks, *u, None, limit)).collect()
        })
        .await
        .map_err(graph_err)
}

/// Writer job: the follow (see the module docs), its event in `node`'s outbox.
/// `(created, needs_sync)`.
fn follow_job(
    w: &mut Writer,
    node: u16,
    from: UserId,
    to: UserId,
    now_ms: u64,
) -> Result<(bool, bool), StoreError> {
    let sp = w.spaces();
    if follows(&sp, from, to)? {
        // Wait for the group's fsync anyway: the edge may be from this very group.
        return Ok((false, true));
    }
    let mut cf = counts_of(&sp, from)?;
    let mut ct = counts_of(&sp, to)?;
    let mut b = w.batch();
    b.insert(&sp.fwd, dir_key(from, now_ms, to), [0u8; 0]);
    b.insert(&sp.bwd, dir_key(to, now_ms, from), [0u8; 0]);
    b.insert(&sp.edges, edge_key(from, to), now_ms.to_be_bytes());
    if ct.followers > 0 {
        b.remove(&sp.popular, popular_key(ct.followers, to));
    }
    cf.following += 1;
    ct.followers += 1;
    b.insert(&sp.popular, popular_key(ct.followers, to), [0u8; 0]);
    b.insert(&sp.gcounts, *from.0.as_bytes(), counts_value(cf));
    b.insert(&sp.gcounts, *to.0.as_bytes(), counts_value(ct));
    let event = Event::Followed {
        v: Event::VERSION,
        follower: from,
        followee: to,
        since: now_ms,
    };
    w.commit_event(b, node, &event)?;
    Ok((true, true))
}

/// Writer job: the unfollow, its event in `node`'s outbox. `(removed, needs_sync)`.
fn unfollow_job(
    w: &mut Writer,
    node: u16,
    from: UserId,
    to: UserId,
) -> Result<(bool, bool), StoreError> {
    let sp = w.spaces();
    let Some(v) = sp.edges.get(edge_key(from, to)).map_err(backend)? else {
        return Ok((false, true));
    };
    let since = u64_at(&v, 0)?;
    let mut cf = counts_of(&sp, from)?;
    let mut ct = counts_of(&sp, to)?;
    let mut b = w.batch();
    b.remove(&sp.fwd, dir_key(from, since, to));
    b.remove(&sp.bwd, dir_key(to, since, from));
    b.remove(&sp.edges, edge_key(from, to));
    if ct.followers > 0 {
        b.remove(&sp.popular, popular_key(ct.followers, to));
    }
    cf.following = cf.following.saturating_sub(1);
    ct.followers = ct.followers.saturating_sub(1);
    if ct.followers > 0 {
        b.insert(&sp.popular, popular_key(ct.followers, to), [0u8; 0]);
    }
    b.insert(&sp.gcounts, *from.0.as_bytes(), counts_value(cf));
    b.insert(&sp.gcounts, *to.0.as_bytes(), counts_value(ct));
    let event = Event::Unfollowed {
        v: Event::VERSION,
        follower: from,
        followee: to,
    };
    w.commit_event(b, node, &event)?;
    Ok((true, true))
}

fn friends_of(
    sp: &Spaces,
    user: UserId,
    after: Option<Cursor>,
    limit: usize,
) -> Result<Vec<Edge>, StoreError> {
    let limit = limit.min(MAX_PAGE);
    let mut out = Vec::new();
    for e in adjacency(&sp.fwd, user, after).take(MAX_FRIENDS_SCAN) {
        if out.len() >= limit {
            break;
        }
        let e = e?;
        if follows(sp, e.user, user)? {
            out.push(e);
        }
    }
    Ok(out)
}

fn common_of(sp: &Spaces, a: UserId, b: UserId, limit: usize) -> Result<Vec<UserId>, StoreError> {
    let (small, other) = if counts_of(sp, a)?.following <= counts_of(sp, b)?.following {
        (a, b)
    } else {
        (b, a)
    };
    let mut hits = Vec::new();
    for e in adjacency(&sp.fwd, small, None).take(MAX_COMMON_SCAN) {
        let e = e?;
        if follows(sp, other, e.user)? {
            hits.push((counts_of(sp, e.user)?.followers, e.user));
        }
    }
    hits.sort_unstable_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    Ok(hits
        .into_iter()
        .take(limit.min(MAX_PAGE))
        .map(|(_, u)| u)
        .collect())
}

fn popular_of(
    sp: &Spaces,
    limit: usize,
    except: Option<UserId>,
) -> Result<Vec<Recommendation>, StoreError> {
    let mut out = Vec::new();
    for g in sp.popular.iter() {
        if out.len() >= limit.min(MAX_PAGE) {
            break;
        }
        let k = g.key().map_err(backend)?;
        let user = uid_at(&k, 8)?;
        if Some(user) == except {
            continue;
        }
        out.push(Recommendation {
            user,
            paths: 0,
            followers: !u64_at(&k, 0)?,
        });
    }
    Ok(out)
}

fn recommend(
    sp: &Spaces,
    user: UserId,
    limit: usize,
    limits: RecommendLimits,
) -> Result<Vec<Recommendation>, StoreError> {
    let limit = limit.min(MAX_PAGE);
    // The most recent `max_followings` followings; `complete` if that is all of them.
    let mut expand = Vec::new();
    let mut complete = true;
    for e in adjacency(&sp.fwd, user, None) {
        if expand.len() >= limits.max_followings {
            complete = false;
            break;
        }
        expand.push(e?.user);
    }
    if expand.is_empty() && complete {
        return popular_of(sp, limit, Some(user));
    }
    let followed: HashSet<UserId> = expand.iter().copied().collect();
    let mut paths: HashMap<UserId, u64> = HashMap::new();
    for v in &expand {
        for e in adjacency(&sp.fwd, *v, None).take(limits.max_fanout) {
            let w = e?.user;
            if w != user && !followed.contains(&w) {
                *paths.entry(w).or_default() += 1;
            }
        }
    }
    // Only the groups needed get their follower counts (and, if `followed` is not the whole
    // following set, their exclusion lookups).
    let mut rank = Ranking::new(paths, limit);
    while let Some((p, group)) = rank.next_group() {
        let mut kept = Vec::with_capacity(group.len());
        for (w, _) in group {
            if !complete && follows(sp, user, *w)? {
                continue;
            }
            kept.push(Recommendation {
                user: *w,
                paths: p,
                followers: counts_of(sp, *w)?.followers,
            });
        }
        rank.add(kept);
    }
    Ok(rank.finish())
}

#[async_trait]
impl GraphStore for EmbeddedStore {
    async fn put_profile(&self, p: Profile) -> Result<(), GraphError> {
        let v = serde_json::to_vec(&p).map_err(|e| GraphError::Backend(e.to_string()))?;
        self.write(move |w| {
            let sp = w.spaces();
            let mut b = w.batch();
            b.insert(&sp.profiles, *p.id.0.as_bytes(), v);
            w.commit_plain(b)?;
            Ok(((), true))
        })
        .await
        .map_err(graph_err)
    }

    async fn profiles(&self, ids: &[UserId]) -> Result<Vec<Option<Profile>>, GraphError> {
        let ids = ids.to_vec();
        self.read(move |sp| {
            ids.iter()
                .map(
                    |id| match sp.profiles.get(id.0.as_bytes()).map_err(backend)? {
                        Some(v) => serde_json::from_slice(&v).map(Some).map_err(backend),
                        None => Ok(None),
                    },
                )
                .collect()
        })
        .await
        .map_err(graph_err)
    }

    async fn follow(&self, from: UserId, to: UserId, now_ms: u64) -> Result<bool, GraphError> {
        if from == to {
            return Err(GraphError::SelfFollow);
        }
        let node = self.node();
        self.write(move |w| follow_job(w, node, from, to, now_ms))
            .await
            .map_err(graph_err)
    }

    async fn unfollow(&self, from: UserId, to: UserId) -> Result<bool, GraphError> {
        if from == to {
            return Ok(false);
        }
        let node = self.node();
        self.write(move |w| unfollow_job(w, node, from, to))
            .await
            .map_err(graph_err)
    }

    fn event_outbox(&self) -> Option<(&dyn Outbox, u16)> {
        Some((self, self.node()))
    }

    async fn is_following(&self, from: UserId, to: UserId) -> Result<bool, GraphError> {
        self.read(move |sp| follows(sp, from, to))
            .await
            .map_err(graph_err)
    }

    async fn followers(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        self.read(move |sp| page(&sp.bwd, user, after, limit))
            .await
            .map_err(graph_err)
    }

    async fn following(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        self.read(move |sp| page(&sp.fwd, user, after, limit))
            .await
            .map_err(graph_err)
    }

    async fn counts(&self, user: UserId) -> Result<Counts, GraphError> {
        self.read(move |sp| counts_of(sp, user))
            .await
            .map_err(graph_err)
    }

    async fn counts_many(&self, users: &[UserId]) -> Result<Vec<Counts>, GraphError> {
        let users = users.to_vec();
        self.read(move |sp| users.iter().map(|u| counts_of(sp, *u)).collect())
            .await
            .map_err(graph_err)
    }

    async fn first_pages(
        &self,
        side: Side,
        users: &[UserId],
        limit: usize,
    ) -> Result<Vec<Vec<Edge>>, GraphError> {
        first_pages(self, side, users, limit).await
    }

    async fn friends(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError> {
        self.read(move |sp| friends_of(sp, user, after, limit))
            .await
            .map_err(graph_err)
    }

    async fn common_following(
        &self,
        a: UserId,
        b: UserId,
        limit: usize,
    ) -> Result<Vec<UserId>, GraphError> {
        self.read(move |sp| common_of(sp, a, b, limit))
            .await
            .map_err(graph_err)
    }

    async fn recommendations(
        &self,
        user: UserId,
        limit: usize,
        limits: RecommendLimits,
    ) -> Result<Vec<Recommendation>, GraphError> {
        self.read(move |sp| recommend(sp, user, limit, limits))
            .await
            .map_err(graph_err)
    }

    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, GraphError> {
        self.read(move |sp| popular_of(sp, limit, None))
            .await
            .map_err(graph_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_newest_and_most_followed_first() {
        let (a, b) = (
            UserId(uuid::Uuid::from_u128(1)),
            UserId(uuid::Uuid::from_u128(2)),
        );
        assert!(dir_key(a, 10, b) < dir_key(a, 9, a));
        assert!(dir_key(a, 10, a) < dir_key(a, 10, b));
        assert!(dir_key(a, 0, b) < dir_key(b, u64::MAX, a));
        assert_eq!(
            dir_edge(&dir_key(a, 77, b)).ok(),
            Some(Edge { user: b, since: 77 })
        );
        assert!(popular_key(5, b) < popular_key(4, a));
        assert!(popular_key(5, a) < popular_key(5, b));
        assert!(dir_edge(&[0u8; 3]).is_err());
    }
}
