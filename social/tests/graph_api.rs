//! The follow-graph API over real loopback sockets: one server instance in this process over
//! the embedded store and its in-process follower cache.

mod common;

use serde_json::json;

use common::user;

async fn start() -> common::Api {
    common::start(|_| {}).await
}

#[tokio::test]
async fn follow_is_idempotent_under_concurrent_duplicates_and_counted() {
    let api = std::sync::Arc::new(start().await);
    let (a, b) = (user(), user());
    let (s, e) = api
        .call_as("PUT", &format!("/api/v1/users/me/following/{a}"), a, None)
        .await;
    assert_eq!(s, 400);
    assert_eq!(e["error"]["code"], "self_follow");

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                api.call_as("PUT", &format!("/api/v1/users/me/following/{b}"), a, None)
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, 200);
        created += usize::from(v["created"] == true);
    }
    assert_eq!(created, 1, "exactly one of the duplicates created the edge");
    let (_, c) = api
        .call_as("GET", &format!("/api/v1/users/{b}/counts"), a, None)
        .await;
    assert_eq!(
        (c["followers"].as_u64(), c["following"].as_u64()),
        (Some(1), Some(0))
    );
    let (_, f) = api
        .call_as("GET", &format!("/api/v1/users/{a}/following/{b}"), b, None)
        .await;
    assert_eq!(f["following"], true);

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                api.call_as(
                    "DELETE",
                    &format!("/api/v1/users/me/following/{b}"),
                    a,
                    None,
                )
                .await
            })
        })
        .collect();
    let mut removed = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, 200);
        removed += usize::from(v["removed"] == true);
    }
    assert_eq!(removed, 1);
    // The cached counts were invalidated: the next read is right.
    let (_, c) = api
        .call_as("GET", &format!("/api/v1/users/{b}/counts"), a, None)
        .await;
    assert_eq!(c["followers"], 0);
    let (_, f) = api
        .call_as("GET", &format!("/api/v1/users/{a}/following/{b}"), b, None)
        .await;
    assert_eq!(f["following"], false);
}

#[tokio::test]
async fn followers_pages_return_every_edge_once_and_reads_reflect_changes() {
    let api = start().await;
    let star = user();
    let mut fans = Vec::new();
    for _ in 0..75 {
        let f = user();
        let (s, _) = api
            .call_as(
                "PUT",
                &format!("/api/v1/users/me/following/{star}"),
                f,
                None,
            )
            .await;
        assert_eq!(s, 200);
        fans.push(f);
    }
    // Read once (fills the cache), then change the graph and read again.
    let first = api
        .call_as(
            "GET",
            &format!("/api/v1/users/{star}/followers?limit=10"),
            star,
            None,
        )
        .await;
    assert_eq!(first.0, 200);
    let late = user();
    api.call_as(
        "PUT",
        &format!("/api/v1/users/me/following/{star}"),
        late,
        None,
    )
    .await;
    fans.push(late);
    let (_, again) = api
        .call_as(
            "GET",
            &format!("/api/v1/users/{star}/followers?limit=10"),
            star,
            None,
        )
        .await;
    assert_eq!(
        again["users"][0]["id"],
        json!(late),
        "the newest follower shows at once"
    );

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/users/{star}/followers?limit=20{cursor}");
        let (s, page) = api.call_as("GET", &path, star, None).await;
        assert_eq!(s, 200, "{page}");
        for u in page["users"].as_array().unwrap() {
            seen.push(u["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let mut want: Vec<String> = fans.iter().map(|f| f.0.to_string()).collect();
    let mut got = seen.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "every follower exactly once");
    assert_eq!(seen[0], late.0.to_string(), "newest first");

    let (s, _) = api
        .call_as(
            "GET",
            &format!("/api/v1/users/{star}/followers?cursor=garbage"),
            star,
            None,
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api
        .call_as(
            "GET",
            &format!("/api/v1/users/{star}/followers?limit=1000"),
            star,
            None,
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn profiles_friends_common_and_recommendations() {
    let api = start().await;
    let (me, x, y, z, w) = (user(), user(), user(), user(), user());
    for (who, name) in [(me, "Me"), (x, "X"), (y, "Y"), (z, "Zed"), (w, "W")] {
        let (s, _) = api
            .call_as(
                "PUT",
                "/api/v1/users/me/profile",
                who,
                Some(json!({"display_name": name, "bio": "hello"})),
            )
            .await;
        assert_eq!(s, 200);
    }
    let (s, _) = api
        .call_as(
            "PUT",
            "/api/v1/users/me/profile",
            me,
            Some(json!({"display_name": ""})),
        )
        .await;
    assert_eq!(s, 400);
    // A profile edit is visible at once (its own cache key).
    let (_, u) = api
        .call_as("GET", &format!("/api/v1/users/{z}"), me, None)
        .await;
    assert_eq!(u["profile"]["display_name"], "Zed");
    api.call_as(
        "PUT",
        "/api/v1/users/me/profile",
        z,
        Some(json!({"display_name": "Z"})),
    )
    .await;
    let (_, u) = api
        .call_as("GET", &format!("/api/v1/users/{z}"), me, None)
        .await;
    assert_eq!(u["profile"]["display_name"], "Z");
    let (s, _) = api
        .call_as("GET", &format!("/api/v1/users/{}", user()), me, None)
        .await;
    assert_eq!(s, 404);

    // me -> x, me -> y; x -> z, y -> z, x -> w; z -> me (so z and me are friends once me -> z).
    for (a, b) in [(me, x), (me, y), (x, z), (y, z), (x, w), (z, me), (y, w)] {
        api.call_as("PUT", &format!("/api/v1/users/me/following/{b}"), a, None)
            .await;
    }
    let (_, r) = api
        .call_as("GET", "/api/v1/recommendations?limit=10", me, None)
        .await;
    let recs = r["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "{r}");
    assert_eq!(recs[0]["reason"], "followed by 2 people you follow");
    assert_eq!(
        recs[0]["profile"]["display_name"]
            .as_str()
            .map(|n| n == "Z" || n == "W"),
        Some(true)
    );
    // A newcomer who follows nobody gets popular accounts.
    let (_, r) = api
        .call_as("GET", "/api/v1/recommendations?limit=3", user(), None)
        .await;
    assert_eq!(r["recommendations"][0]["reason"], "popular on zerocast");

    api.call_as("PUT", &format!("/api/v1/users/me/following/{z}"), me, None)
        .await;
    let (_, f) = api
        .call_as("GET", &format!("/api/v1/users/{me}/friends"), me, None)
        .await;
    assert_eq!(f["users"][0]["id"], json!(z));
    let (_, c) = api
        .call_as(
            "GET",
            &format!("/api/v1/users/{x}/common-following/{y}"),
            me,
            None,
        )
        .await;
    let common: Vec<&str> = c["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(common.len(), 2);
}

#[tokio::test]
async fn a_new_follower_is_pushed_to_the_followee_once() {
    let api = start().await;
    let (a, b) = (user(), user());
    let mut ws = api.ws(b, None).await;
    // The socket is registered once it answers.
    ws.send(json!({"type": "ping"})).await;
    ws.expect("pong").await;
    let path = format!("/api/v1/users/me/following/{b}");
    let (s, v) = api.call_as("PUT", &path, a, None).await;
    assert_eq!((s, v["created"].as_bool()), (200, Some(true)));
    let f = ws.expect_within("follower", 5).await;
    assert_eq!(f["follower"], a.to_string());
    assert!(f["since"].as_u64().is_some(), "{f}");
    // A repeated follow changes nothing and pushes nothing; an unfollow pushes nothing; a
    // follow after it is new again. So the next follower frame is that follow's.
    let (_, v) = api.call_as("PUT", &path, a, None).await;
    assert_eq!(v["created"], false);
    let (_, v) = api.call_as("DELETE", &path, a, None).await;
    assert_eq!(v["removed"], true);
    let c = user();
    let (_, v) = api
        .call_as("PUT", &format!("/api/v1/users/me/following/{b}"), c, None)
        .await;
    assert_eq!(v["created"], true);
    let f = ws.expect_within("follower", 5).await;
    assert_eq!(f["follower"], c.to_string(), "pushed once per new edge");
}

/// The embedded graph beside messages in another store (as beside ScyllaDB): its outbox gets a
/// relay of its own, so its events still reach the bus.
#[tokio::test]
async fn a_graph_with_its_own_outbox_has_its_events_relayed() {
    use std::sync::Arc;

    use zerocast_social::backends::Backends;
    use zerocast_social::events::InProcessBus;
    use zerocast_social::graph::cache::local::{LocalCache, LocalConfig};
    use zerocast_social::graph::cache::{CachedGraph, FollowerCache};
    use zerocast_social::messaging::store::embedded::EmbeddedStore;

    let dir = std::env::temp_dir().join(format!("zerocast-social-test-{}", uuid::Uuid::new_v4()));
    let _guard = common::TempDir(dir.clone());
    let cfg = common::test_config(&dir);
    let messages = EmbeddedStore::open(&dir.join("messages"), cfg.node).unwrap();
    let graph = EmbeddedStore::open(&dir.join("graph"), cfg.node).unwrap();
    let cache: Arc<dyn FollowerCache> = Arc::new(LocalCache::new(LocalConfig::default()));
    let backends = Backends {
        store: Arc::new(messages.clone()),
        channels: Arc::new(messages.clone()),
        chat: Arc::new(messages),
        bus: Arc::new(InProcessBus::default()),
        graph: Arc::new(CachedGraph::new(Arc::new(graph.clone()), cache.clone())),
        cache,
        graph_outbox: Some(Arc::new(graph)),
    };
    let api = common::start_with(cfg, backends).await;
    let (a, b) = (user(), user());
    let mut ws = api.ws(b, None).await;
    ws.send(json!({"type": "ping"})).await;
    ws.expect("pong").await;
    let (_, v) = api
        .call_as("PUT", &format!("/api/v1/users/me/following/{b}"), a, None)
        .await;
    assert_eq!(v["created"], true);
    let f = ws.expect_within("follower", 5).await;
    assert_eq!(f["follower"], a.to_string());
}
