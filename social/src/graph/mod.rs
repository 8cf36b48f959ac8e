//! The follow graph: profiles, follow edges, and the queries built on them.
//!
//! One trait, [`GraphStore`], with its backends in [`store`]: an embedded default (keyspaces in
//! the same fjall database as messages: forward, backward, counts) and Neo4j at scale (feature
//! `neo4j`). Every backend passes the same conformance suite (`store::conformance`, feature
//! `testing`). Reads go through the follower cache ([`cache`]: in-process, or Redis with
//! feature `redis`), and [`service`] holds the rules the API applies before writing.
//!
//! Owns: profiles, follow edges, counts, recommendations. Calls nothing else in the crate but
//! [`crate::id`] (and the embedded message store's database, which it shares).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};

use crate::id::UserId;
use crate::messaging::store::Outbox;

pub mod cache;
pub mod service;
pub mod store;

/// A user's public profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The user.
    pub id: UserId,
    /// Display name, 1-64 characters.
    pub display_name: String,
    /// Avatar URL (http or https), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// Free text, at most 512 bytes.
    #[serde(default)]
    pub bio: String,
    /// Last change, Unix ms.
    pub updated_at: u64,
}

/// One follow edge as seen from one side: the other account and when the follow happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// The account on the other side.
    pub user: UserId,
    /// When the follow was made, Unix ms.
    pub since: u64,
}

/// Where a page of edges continues: strictly older than `(since, user)` in newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `since` of the last edge of the previous page.
    pub since: u64,
    /// `user` of the last edge of the previous page.
    pub user: UserId,
}

impl Cursor {
    /// The cursor after `e`.
    pub fn after(e: &Edge) -> Self {
        Self {
            since: e.since,
            user: e.user,
        }
    }

    /// `since.user-uuid`, for URLs.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.since, self.user.0)
    }

    /// The inverse of [`encode`](Self::encode).
    pub fn decode(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('.')?;
        Some(Self {
            since: a.parse().ok()?,
            user: UserId(uuid::Uuid::parse_str(b).ok()?),
        })
    }
}

/// Follower and following counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Counts {
    /// Accounts following the user.
    pub followers: u64,
    /// Accounts the user follows.
    pub following: u64,
}

/// A recommended account and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The account.
    pub user: UserId,
    /// Distinct accounts the caller follows that follow it (0 for the popular fallback).
    pub paths: u64,
    /// Its follower count (used to break ties and for the fallback).
    pub followers: u64,
}

/// The ranking of [`GraphStore::recommendations`], shared by the backends that walk the graph
/// themselves (the embedded store, and the cache when it holds every list the walk reads).
///
/// Candidates come in with their number of distinct paths. [`next_group`](Self::next_group)
/// yields them by groups of equal paths, most paths first, until `limit` are chosen; the caller
/// looks up the follower counts of that group only (and drops accounts it must exclude), and
/// hands the group back to [`add`](Self::add), which ranks it by followers, then by id.
#[derive(Debug)]
pub(crate) struct Ranking {
    /// By paths, descending.
    cands: Vec<(UserId, u64)>,
    next: usize,
    out: Vec<Recommendation>,
    limit: usize,
}

impl Ranking {
    pub(crate) fn new(paths: HashMap<UserId, u64>, limit: usize) -> Self {
        let mut cands: Vec<(UserId, u64)> = paths.into_iter().collect();
        cands.sort_unstable_by_key(|c| std::cmp::Reverse(c.1));
        Self {
            out: Vec::with_capacity(limit.min(cands.len())),
            cands,
            next: 0,
            limit,
        }
    }

    /// The next group of candidates with equal paths (and that number), or `None` once `limit`
    /// are chosen or every candidate was seen.
    pub(crate) fn next_group(&mut self) -> Option<(u64, &[(UserId, u64)])> {
        if self.out.len() >= self.limit {
            return None;
        }
        let rest = self.cands.get(self.next..)?;
        let p = rest.first()?.1;
        let n = rest.iter().take_while(|c| c.1 == p).count();
        self.next += n;
        Some((p, &rest[..n])) // n <= rest.len(): counted over `rest`
    }

    /// Adds the members kept of the group last returned, with their follower counts.
    pub(crate) fn add(&mut self, mut group: Vec<Recommendation>) {
        group.sort_unstable_by(|x, y| y.followers.cmp(&x.followers).then(x.user.cmp(&y.user)));
        let room = self.limit.saturating_sub(self.out.len());
        self.out.extend(group.into_iter().take(room));
    }

    pub(crate) fn finish(self) -> Vec<Recommendation> {
        self.out
    }
}

/// Why a graph operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Following yourself.
    #[error("cannot follow yourself")]
    SelfFollow,
    /// The backend failed.
    #[error("graph backend: {0}")]
    Backend(String),
}

/// Limits of the recommendation walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecommendLimits {
    /// At most this many of the caller's followings are expanded (the most recent ones).
    pub max_followings: usize,
    /// From each of them, at most this many of their followings are read (the most recent):
    /// this caps the fan-out through very large accounts.
    pub max_fanout: usize,
}

impl Default for RecommendLimits {
    fn default() -> Self {
        Self {
            max_followings: 1000,
            max_fanout: 1000,
        }
    }
}

/// Which list of an account: who follows it, or whom it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Accounts following the user ([`GraphStore::followers`]).
    Followers,
    /// Accounts the user follows ([`GraphStore::following`]).
    Following,
}

/// Writes the answer to a page request: the page's edges (at most the limit), the profile of
/// each (in order), and the limit asked for. It must depend on nothing else, since a cache may
/// keep what it wrote and serve it again while none of its inputs changed.
pub type PageRenderer =
    dyn Fn(&[Edge], &[Option<Arc<Profile>>], usize) -> bytes::Bytes + Send + Sync;

/// A page of `side` of `user`: [`GraphStore::followers`] or [`GraphStore::following`].
async fn page_of<G: GraphStore + ?Sized>(
    g: &G,
    side: Side,
    user: UserId,
    after: Option<Cursor>,
    limit: usize,
) -> Result<Vec<Edge>, GraphError> {
    match side {
        Side::Followers => g.followers(user, after, limit).await,
        Side::Following => g.following(user, after, limit).await,
    }
}

/// The first page of `side` of each of `users`, asked concurrently: what
/// [`GraphStore::first_pages`] does by default.
async fn first_pages_each<G: GraphStore + ?Sized>(
    g: &G,
    side: Side,
    users: &[UserId],
    limit: usize,
) -> Result<Vec<Vec<Edge>>, GraphError> {
    try_join_all(users.iter().map(|u| page_of(g, side, *u, None, limit))).await
}

/// A page of `side` of `user` read from `g` and rendered, with nothing kept: what
/// [`GraphStore::render_page`] does by default, and a cache for pages it does not keep.
pub(crate) async fn render_fresh<G: GraphStore + ?Sized>(
    g: &G,
    side: Side,
    user: UserId,
    after: Option<Cursor>,
    limit: usize,
    render: &PageRenderer,
) -> Result<bytes::Bytes, GraphError> {
    let edges = page_of(g, side, user, after, limit).await?;
    let ids: Vec<UserId> = edges.iter().map(|e| e.user).collect();
    let profiles = g.shared_profiles(&ids).await?;
    Ok(render(&edges, &profiles, limit))
}

/// The follow graph's storage.
///
/// Contract, checked by the conformance suite (`store::conformance`, feature `testing`):
/// - `follow`/`unfollow` are idempotent (the bool says whether anything changed) and atomic
///   with the counts, also under concurrent duplicates; following yourself is `SelfFollow`.
/// - `followers`/`following` are newest first, paged by [`Cursor`] (exclusive), every edge once.
/// - `friends` are accounts followed in both directions, newest-followed first.
/// - `common_following(a, b)` are accounts both follow, most-followed first, then by id.
/// - `recommendations` are friends-of-friends (accounts followed by accounts the user follows)
///   ranked by the number of distinct paths, then by follower count, then by id, excluding the
///   user and accounts they already follow, within [`RecommendLimits`]. Only a user who
///   follows nobody gets the `popular` fallback (with `paths` 0).
/// - `popular` are accounts by follower count, descending, then by id.
#[async_trait]
pub trait GraphStore: Send + Sync + 'static {
    /// Creates or replaces a profile.
    async fn put_profile(&self, p: Profile) -> Result<(), GraphError>;
    /// Profiles of `ids`, in order (`None` where there is none).
    async fn profiles(&self, ids: &[UserId]) -> Result<Vec<Option<Profile>>, GraphError>;
    /// [`profiles`](Self::profiles), shared: a cache hands out the profiles it holds instead of
    /// copying them (a page of 50 followers would copy 150 strings). The default wraps
    /// `profiles`.
    async fn shared_profiles(
        &self,
        ids: &[UserId],
    ) -> Result<Vec<Option<Arc<Profile>>>, GraphError> {
        Ok(self
            .profiles(ids)
            .await?
            .into_iter()
            .map(|p| p.map(Arc::new))
            .collect())
    }
    /// `from` follows `to` at `now_ms`; `true` if the edge is new. A backend with an
    /// [`event_outbox`](Self::event_outbox) writes [`Event::Followed`](crate::messaging::model::Event::Followed) there atomically with a
    /// new edge, and nothing when the edge existed.
    async fn follow(&self, from: UserId, to: UserId, now_ms: u64) -> Result<bool, GraphError>;
    /// `from` stops following `to`; `true` if there was an edge. With an
    /// [`event_outbox`](Self::event_outbox),
    /// [`Event::Unfollowed`](crate::messaging::model::Event::Unfollowed) is written atomically with
    /// the removal, and nothing when there was no edge.
    async fn unfollow(&self, from: UserId, to: UserId) -> Result<bool, GraphError>;
    /// The outbox this backend writes its follow and unfollow events to, and the node whose
    /// records they are; `None` if it writes none (the default). The embedded store writes
    /// them beside its messages' outbox; Neo4j into `:ZcOutbox` nodes in the follow's own
    /// transaction.
    fn event_outbox(&self) -> Option<(&dyn Outbox, u16)> {
        None
    }
    /// Whether `from` follows `to`.
    async fn is_following(&self, from: UserId, to: UserId) -> Result<bool, GraphError>;
    /// Who follows `user`, newest first.
    async fn followers(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError>;
    /// Whom `user` follows, newest first.
    async fn following(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError>;
    /// Follower and following counts.
    async fn counts(&self, user: UserId) -> Result<Counts, GraphError>;
    /// [`counts`](Self::counts) of each of `users`, in order: one pass where the backend can
    /// (a cache loads its misses with it). The default asks `counts` for each, concurrently.
    async fn counts_many(&self, users: &[UserId]) -> Result<Vec<Counts>, GraphError> {
        try_join_all(users.iter().map(|u| self.counts(*u))).await
    }
    /// The first `limit` edges of `side` ([`followers`](Self::followers) or
    /// [`following`](Self::following)) of each of `users`, in order; like
    /// [`counts_many`](Self::counts_many).
    async fn first_pages(
        &self,
        side: Side,
        users: &[UserId],
        limit: usize,
    ) -> Result<Vec<Vec<Edge>>, GraphError> {
        first_pages_each(self, side, users, limit).await
    }
    /// A page of `side` of `user` (from `after`, at most `limit` edges) with the profiles of
    /// its accounts, as `render` writes it. A cache may keep the first page it rendered and
    /// serve it again while neither the list nor any of its profiles changed; the default
    /// renders every time.
    async fn render_page(
        &self,
        side: Side,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
        render: &PageRenderer,
    ) -> Result<bytes::Bytes, GraphError> {
        render_fresh(self, side, user, after, limit, render).await
    }
    /// Accounts that follow `user` and that `user` follows, newest-followed first.
    async fn friends(
        &self,
        user: UserId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<Edge>, GraphError>;
    /// Accounts both `a` and `b` follow.
    async fn common_following(
        &self,
        a: UserId,
        b: UserId,
        limit: usize,
    ) -> Result<Vec<UserId>, GraphError>;
    /// Friend-of-friend recommendations for `user`.
    async fn recommendations(
        &self,
        user: UserId,
        limit: usize,
        limits: RecommendLimits,
    ) -> Result<Vec<Recommendation>, GraphError>;
    /// The most followed accounts.
    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, GraphError>;
}

impl std::fmt::Debug for dyn GraphStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GraphStore")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_takes_groups_by_paths_then_followers_then_id() {
        let u = |n: u128| UserId(uuid::Uuid::from_u128(n));
        let paths: HashMap<UserId, u64> = [
            (u(1), 1),
            (u(2), 3),
            (u(3), 1),
            (u(4), 3),
            (u(5), 2),
            (u(6), 1),
        ]
        .into();
        let followers = |id: UserId| match id.0.as_u128() {
            2 => 10,
            4 => 10,
            5 => 0,
            n => 100 - n as u64,
        };
        let mut rank = Ranking::new(paths, 4);
        let mut asked = Vec::new();
        while let Some((p, group)) = rank.next_group() {
            let mut ids: Vec<UserId> = group.iter().map(|(w, _)| *w).collect();
            ids.sort();
            asked.push((p, ids.clone()));
            let group = ids
                .into_iter()
                .map(|user| Recommendation {
                    user,
                    paths: p,
                    followers: followers(user),
                })
                .collect();
            rank.add(group);
        }
        // The 1-path group is asked for (one place is left), then no more.
        assert_eq!(
            asked,
            vec![
                (3, vec![u(2), u(4)]),
                (2, vec![u(5)]),
                (1, vec![u(1), u(3), u(6)]),
            ]
        );
        let got: Vec<(UserId, u64)> = rank.finish().iter().map(|r| (r.user, r.paths)).collect();
        assert_eq!(got, vec![(u(2), 3), (u(4), 3), (u(5), 2), (u(1), 1)]);
        // Nothing to rank, or nothing wanted.
        assert!(Ranking::new(HashMap::new(), 5).next_group().is_none());
        assert!(Ranking::new([(u(1), 1)].into(), 0).next_group().is_none());
    }
}
