//! Live chat shared by instances and kept across restarts.
//!
//! Two social server instances on their own loopback ports share one embedded store (node 1
//! and node 2 handles) and one event bus: a ban made on one is enforced by the other as soon as
//! the next bus delivery has reached it; slow mode counts a post made on either; history and
//! `since` pages are the same on both, read from the store. A restart (the store closed and
//! reopened on the same directory) keeps the owner, bans, slow mode and history.

use std::sync::Arc;

mod common;

use serde_json::{json, Value};
use uuid::Uuid;
use zerocast_social::backends::Backends;
use zerocast_social::channels::secrets::PlaybackKeys;
use zerocast_social::channels::Channels;
use zerocast_social::chat::{Chat, ChatError, PostError};
use zerocast_social::events::bus::{EventBus, InProcessBus};
use zerocast_social::id::{IdGenerator, MessageId, UserId};
use zerocast_social::limits::Limits;
use zerocast_social::messaging::store::embedded::EmbeddedStore;

use common::{Api, Socket};

fn code(v: &Value) -> String {
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

async fn instance(dir: &std::path::Path, store: EmbeddedStore, bus: Arc<InProcessBus>) -> Api {
    let mut cfg = common::test_config(dir);
    cfg.node = store.node();
    let mut backends = Backends::embedded(store);
    backends.bus = bus;
    common::start_with(cfg, backends).await
}

async fn post(
    api: &Api,
    user: UserId,
    room: &str,
    content: &str,
    cid: Option<&str>,
) -> (u16, Value) {
    let body = json!({"content": content, "client_id": cid}).to_string();
    api.call(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&api.token(user)),
        Some(&body),
    )
    .await
}

async fn history(api: &Api, user: UserId, query: &str) -> Vec<Value> {
    let (s, v) = api
        .call(
            "GET",
            &format!("/api/v1/rooms/show/messages{query}"),
            Some(&api.token(user)),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["messages"].as_array().cloned().unwrap_or_default()
}

fn contents(ms: &[Value]) -> Vec<&str> {
    ms.iter().filter_map(|m| m["content"].as_str()).collect()
}

/// Posts `marker` as the room's owner on `from` and waits until `watcher` (subscribed to the
/// room on the other instance) receives it: every bus message published before it (a room
/// change notice) has then been handled by that instance.
async fn one_bus_delivery(from: &Api, owner: UserId, watcher: &mut Socket, marker: &str) {
    let (s, v) = post(from, owner, "show", marker, None).await;
    assert_eq!(s, 201, "{v}");
    loop {
        let f = watcher.expect("chat").await;
        if f["message"]["content"] == marker {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_enforce_the_same_bans_and_slow_mode_and_serve_the_same_history() {
    let dir = std::env::temp_dir().join(format!("zerocast-chat-two-{}", Uuid::new_v4()));
    let _cleanup = common::TempDir(dir.clone());
    let store = EmbeddedStore::open(&dir.join("messages"), 1).unwrap();
    let bus = Arc::new(InProcessBus::default());
    let a = instance(&dir, store.clone(), bus.clone()).await;
    let b = instance(&dir, store.with_node(2), bus.clone()).await;
    let (owner, viewer, other) = (common::user(), common::user(), common::user());

    a.reserve_stream(&a.token(owner), "show").await;
    // Instance B watches the room over a WebSocket (the bus's deliveries show up there).
    let mut watch = b.ws(other, None).await;
    watch
        .send(json!({"type": "subscribe", "room": "show"}))
        .await;
    let sub = watch.expect("subscribed").await;
    assert_eq!(sub["history"], json!([]));
    assert_eq!(sub["settings"]["owner"], json!(owner));

    // A post on A is in B's history at once: history is the store's, not B's memory.
    let (s, v) = post(&a, viewer, "show", "first", None).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(contents(&history(&b, viewer, "").await), ["first"]);
    // B has the room's rules cached now (it just served them), without a ban.
    let (s, v) = post(&b, viewer, "show", "second", None).await;
    assert_eq!(s, 201, "{v}");

    // Ban on A: once the next bus delivery has reached B, B refuses the viewer too (its cached
    // rules, valid for 30 s, were dropped by the room-change notice).
    let (s, _) = a
        .call(
            "POST",
            "/api/v1/rooms/show/bans",
            Some(&a.token(owner)),
            Some(&json!({"user": viewer}).to_string()),
        )
        .await;
    assert_eq!(s, 204);
    one_bus_delivery(&a, owner, &mut watch, "banned one").await;
    let (s, v) = post(&b, viewer, "show", "after ban", None).await;
    assert_eq!((s, code(&v)), (403, "banned".into()), "{v}");
    let (s, v) = post(&a, viewer, "show", "after ban", None).await;
    assert_eq!((s, code(&v)), (403, "banned".into()), "{v}");

    // Slow mode set on A; a post on A, then at once one on B: B refuses it, because the time
    // of the last post is in the store, checked and written with the message.
    let (s, _) = a
        .call(
            "PUT",
            "/api/v1/rooms/show/slow-mode",
            Some(&a.token(owner)),
            Some(r#"{"seconds":60}"#),
        )
        .await;
    assert_eq!(s, 200);
    one_bus_delivery(&a, owner, &mut watch, "slow now").await;
    let (s, v) = post(&a, other, "show", "slow one", None).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(&b, other, "show", "slow two", None).await;
    assert_eq!((s, code(&v)), (429, "slow_mode".into()), "{v}");
    let (s, v) = post(&a, other, "show", "slow three", None).await;
    assert_eq!((s, code(&v)), (429, "slow_mode".into()), "{v}");
    // The owner is exempt, on both.
    assert_eq!(post(&b, owner, "show", "owner on b", None).await.0, 201);

    // A client id repeated through the other instance returns the first message, stores
    // nothing and fans nothing out.
    let (s, first) = post(&a, owner, "show", "once", Some("cid-1")).await;
    assert_eq!(s, 201);
    let (s, again) = post(&b, owner, "show", "once", Some("cid-1")).await;
    assert_eq!(s, 200, "a repeat answers 200 with the first message");
    assert_eq!(first["message"]["id"], again["message"]["id"]);
    let (s, v) = post(&b, owner, "show", "bad", Some("")).await;
    assert_eq!((s, code(&v)), (400, "invalid_client_id".into()), "{v}");
    let (s, _) = post(&a, owner, "show", "after dup", None).await;
    assert_eq!(s, 201);
    let mut seen = Vec::new();
    loop {
        let f = watch.expect("chat").await;
        let c = f["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        seen.push(c.clone());
        if c == "after dup" {
            break;
        }
    }
    assert_eq!(seen, ["slow one", "owner on b", "once", "after dup"]);

    // Both instances serve the same history, in id order, and the same `since` pages. Ids are
    // time-ordered to the millisecond: two posts through different instances within one
    // millisecond sort by node, so only the set of messages is compared, not their post order.
    let mut expected = [
        "first",
        "second",
        "banned one",
        "slow now",
        "slow one",
        "owner on b",
        "once",
        "after dup",
    ];
    expected.sort_unstable();
    let on_a = history(&a, viewer, "").await;
    let on_b = history(&b, viewer, "").await;
    let mut got = contents(&on_a);
    got.sort_unstable();
    assert_eq!(got, expected);
    let ids: Vec<u64> = on_a
        .iter()
        .map(|m| m["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "id order: {ids:?}");
    assert_eq!(on_a, on_b);
    let mut paged = Vec::new();
    let mut cursor = "0".to_owned();
    for page in 0.. {
        let api = if page % 2 == 0 { &a } else { &b };
        let (s, v) = api
            .call(
                "GET",
                &format!("/api/v1/rooms/show/messages?since={cursor}&limit=3"),
                Some(&api.token(viewer)),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        paged.extend(v["messages"].as_array().cloned().unwrap_or_default());
        match v["next_since"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, on_a);
    let (s, v) = a
        .call(
            "GET",
            "/api/v1/rooms/show/messages?since=nope",
            Some(&a.token(viewer)),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_id".into()), "{v}");
}

fn chat_over(store: &EmbeddedStore, bus: Arc<dyn EventBus>, keep: usize) -> Chat {
    let channels = Channels::new(
        Arc::new(store.clone()),
        PlaybackKeys::from_secret(common::SECRET),
        10,
    );
    Chat::new(
        Arc::new(store.clone()),
        keep,
        channels,
        Arc::new(|_: &str| false),
        bus,
        Arc::new(IdGenerator::new(store.node())),
        Arc::new(Limits::new(1000.0, 1000.0, 4096)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_owner_bans_slow_mode_and_history() {
    let dir = std::env::temp_dir().join(format!("zerocast-chat-restart-{}", Uuid::new_v4()));
    let _cleanup = common::TempDir(dir.clone());
    let (owner, banned, slowed, timed_out) = (
        common::user(),
        common::user(),
        common::user(),
        common::user(),
    );
    let t = zerocast_social::now_ms();
    let keep = 5;
    let before: Vec<MessageId>;
    {
        let store = EmbeddedStore::open(&dir, 1).unwrap();
        let chat = chat_over(&store, Arc::new(InProcessBus::default()), keep);
        chat.channels()
            .create(owner, "show", false, t)
            .await
            .unwrap();
        chat.set_slow_mode("show", owner, 30).await.unwrap();
        chat.ban("show", owner, banned, None, t).await.unwrap();
        chat.ban("show", owner, timed_out, Some(600), t)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..7u64 {
            ids.push(
                chat.post(owner, "show", format!("m{i}"), None, t + i)
                    .await
                    .unwrap()
                    .message
                    .id,
            );
        }
        ids.push(
            chat.post(slowed, "show", "slow".into(), Some("c".into()), t + 10)
                .await
                .unwrap()
                .message
                .id,
        );
        // Retention: the newest `keep`.
        before = ids[ids.len() - keep..].to_vec();
        let h = chat.history("show").await.unwrap();
        assert_eq!(h.iter().map(|m| m.id).collect::<Vec<_>>(), before);
        drop(chat);
        drop(store); // closes the database (waits for the writer thread)
    }

    let store = EmbeddedStore::open(&dir, 1).unwrap();
    let chat = chat_over(&store, Arc::new(InProcessBus::default()), keep);
    let settings = chat.settings("show").await.unwrap();
    assert_eq!(settings.owner, Some(owner));
    assert_eq!(settings.slow_mode_secs, 30);
    let h = chat.history("show").await.unwrap();
    assert_eq!(h.iter().map(|m| m.id).collect::<Vec<_>>(), before);
    assert_eq!(h.last().unwrap().content, "slow");
    let since = chat.since("show", before[2], 100).await.unwrap();
    assert_eq!(since.iter().map(|m| m.id).collect::<Vec<_>>(), before[3..]);
    assert!(matches!(
        chat.post(banned, "show", "x".into(), None, t + 20).await,
        Err(PostError::Room(ChatError::Banned(None)))
    ));
    assert!(matches!(
        chat.post(timed_out, "show", "x".into(), None, t + 20).await,
        Err(PostError::Room(ChatError::Banned(Some(_))))
    ));
    // The slow-mode record of the last post before the restart still holds...
    assert!(matches!(
        chat.post(slowed, "show", "again".into(), None, t + 1010)
            .await,
        Err(PostError::Room(ChatError::SlowMode(29_000)))
    ));
    // ...and so does its client id.
    let dup = chat
        .post(slowed, "show", "slow".into(), Some("c".into()), t + 1020)
        .await
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(Some(&dup.message.id), before.last());
    let later = chat
        .post(slowed, "show", "later".into(), None, t + 30_010)
        .await
        .unwrap();
    assert!(!later.duplicate);
    assert_eq!(
        chat.history("show").await.unwrap().last(),
        Some(&later.message)
    );
    // The sweep forgets slow-mode records older than the longest slow mode (here: pretending
    // an hour passed, then posting at the old time, which only a forgotten record allows).
    chat.sweep(t + 30_011 + 3_600_000, |_| false).await;
    chat.post(slowed, "show", "swept".into(), None, t + 30_020)
        .await
        .unwrap();
}
