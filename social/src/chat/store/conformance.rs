//! The conformance suite every [`ChatStore`] backend must pass.
//!
//! Each check uses fresh random rooms and users, so the suite can run against a shared external
//! database.

use std::sync::Arc;

use uuid::Uuid;

use super::{ChatPost, ChatStore, Posted};
use crate::chat::rooms::ChatMessage;
use crate::id::{IdGenerator, MessageId, UserId};

fn user() -> UserId {
    UserId(Uuid::new_v4())
}

fn room() -> String {
    format!("r{}", &Uuid::new_v4().simple().to_string()[..12])
}

fn msg(ids: &IdGenerator, room: &str, from: UserId, at: u64, text: &str) -> ChatMessage {
    ChatMessage {
        id: ids.next_at(at),
        room: room.to_owned(),
        from,
        content: text.to_owned(),
        at,
    }
}

fn plain(message: ChatMessage, keep: usize) -> ChatPost {
    ChatPost {
        message,
        client_id: None,
        slow_ms: 0,
        keep,
    }
}

fn created(p: Posted) -> ChatMessage {
    match p {
        Posted::Created(m) => m,
        other => panic!("expected Created, got {other:?}"),
    }
}

fn ids_of(ms: &[ChatMessage]) -> Vec<MessageId> {
    ms.iter().map(|m| m.id).collect()
}

/// Runs every check.
pub async fn run<S: ChatStore>(s: Arc<S>) {
    history_and_paging(&*s).await;
    idempotent_posts(&*s).await;
    retention(&*s).await;
    slow_mode(&*s).await;
    concurrent_slow_mode_one_winner(s.clone()).await;
}

/// Posts come back in id order on `recent` and `since`; paging visits each once; rooms are
/// separate (also a room whose name extends another's).
pub async fn history_and_paging<S: ChatStore + ?Sized>(s: &S) {
    let ids = IdGenerator::new(7);
    let (r, r2) = (room(), room());
    let r_longer = format!("{r}0");
    let a = user();
    assert!(s.recent(&r, 50, 100).await.unwrap().is_empty());
    let t0 = 1_700_000_000_000;
    let mut sent = Vec::new();
    for i in 0..25u64 {
        sent.push(created(
            s.post(plain(msg(&ids, &r, a, t0 + i, &format!("m{i}")), 100))
                .await
                .unwrap(),
        ));
    }
    s.post(plain(msg(&ids, &r2, a, t0, "other room"), 100))
        .await
        .unwrap();
    s.post(plain(msg(&ids, &r_longer, a, t0, "longer name"), 100))
        .await
        .unwrap();
    let recent = s.recent(&r, 10, 100).await.unwrap();
    assert_eq!(
        ids_of(&recent),
        ids_of(&sent[15..]),
        "newest 10, oldest first"
    );
    assert_eq!(recent.last().unwrap().content, "m24");
    assert_eq!(s.recent(&r, 1000, 100).await.unwrap(), sent);
    // Paging by id cursor from the start visits every message once, in order.
    let mut seen = Vec::new();
    let mut after = MessageId(0);
    loop {
        let page = s.since(&r, after, 7, 100).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().unwrap().id;
        seen.extend(page);
    }
    assert_eq!(seen, sent);
    assert_eq!(
        ids_of(&s.since(&r, sent[20].id, 100, 100).await.unwrap()),
        ids_of(&sent[21..])
    );
    assert!(s.since(&r, sent[24].id, 100, 100).await.unwrap().is_empty());
    assert_eq!(s.recent(&r2, 100, 100).await.unwrap().len(), 1);
    assert_eq!(s.recent(&r_longer, 100, 100).await.unwrap().len(), 1);
}

/// A repeated `(room, from, client_id)` stores nothing and returns the first message; the same
/// client id from another user or in another room is a new message.
pub async fn idempotent_posts<S: ChatStore + ?Sized>(s: &S) {
    let ids = IdGenerator::new(8);
    let (r, r2) = (room(), room());
    let (a, b) = (user(), user());
    let t = 1_700_000_100_000;
    let post = |room: &str, from: UserId, at: u64, text: &str| ChatPost {
        message: msg(&ids, room, from, at, text),
        client_id: Some("c-1".into()),
        slow_ms: 0,
        keep: 100,
    };
    let first = created(s.post(post(&r, a, t, "hello")).await.unwrap());
    match s.post(post(&r, a, t + 5, "hello again")).await.unwrap() {
        Posted::Duplicate(m) => assert_eq!(m, first),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    created(s.post(post(&r, b, t + 6, "b's")).await.unwrap());
    created(s.post(post(&r2, a, t + 7, "other room")).await.unwrap());
    let h = s.recent(&r, 100, 100).await.unwrap();
    assert_eq!(h.len(), 2, "the duplicate was not stored: {h:?}");
    assert_eq!(h[0], first);
}

/// A room serves its newest `keep` messages and no older ones, through `recent` and `since`.
pub async fn retention<S: ChatStore + ?Sized>(s: &S) {
    let ids = IdGenerator::new(9);
    let r = room();
    let a = user();
    let t = 1_700_000_200_000;
    let mut sent = Vec::new();
    for i in 0..12u64 {
        sent.push(created(
            s.post(plain(msg(&ids, &r, a, t + i, &format!("k{i}")), 5))
                .await
                .unwrap(),
        ));
    }
    let newest5 = ids_of(&sent[7..]);
    assert_eq!(ids_of(&s.recent(&r, 100, 5).await.unwrap()), newest5);
    assert_eq!(
        ids_of(&s.since(&r, MessageId(0), 100, 5).await.unwrap()),
        newest5
    );
    assert_eq!(
        ids_of(&s.since(&r, sent[2].id, 2, 5).await.unwrap()),
        ids_of(&sent[7..9]),
        "a cursor older than the history starts at its oldest message"
    );
    assert_eq!(
        ids_of(&s.since(&r, sent[9].id, 100, 5).await.unwrap()),
        ids_of(&sent[10..])
    );
}

/// Slow mode refuses a second post inside the interval with the remaining wait, admits one at
/// its end, applies per user and room, and stores nothing when it refuses.
pub async fn slow_mode<S: ChatStore + ?Sized>(s: &S) {
    let ids = IdGenerator::new(10);
    let (r, r2) = (room(), room());
    let (a, b) = (user(), user());
    let t = 1_700_000_300_000;
    let slow = |room: &str, from: UserId, at: u64| ChatPost {
        message: msg(&ids, room, from, at, "s"),
        client_id: None,
        slow_ms: 2000,
        keep: 100,
    };
    created(s.post(slow(&r, a, t)).await.unwrap());
    assert_eq!(
        s.post(slow(&r, a, t + 500)).await.unwrap(),
        Posted::SlowMode(1500)
    );
    created(s.post(slow(&r, b, t + 500)).await.unwrap());
    created(s.post(slow(&r2, a, t + 500)).await.unwrap());
    // Without slow mode (off, or an exempt sender) nothing is checked.
    created(
        s.post(plain(msg(&ids, &r, a, t + 600, "exempt"), 100))
            .await
            .unwrap(),
    );
    // A clock behind the recorded post waits at most the interval.
    assert_eq!(
        s.post(slow(&r, a, t - 10_000)).await.unwrap(),
        Posted::SlowMode(2000)
    );
    created(s.post(slow(&r, a, t + 2000)).await.unwrap());
    assert_eq!(
        s.post(slow(&r, a, t + 2001)).await.unwrap(),
        Posted::SlowMode(1999)
    );
    assert_eq!(s.recent(&r, 100, 100).await.unwrap().len(), 4);
}

/// Of many concurrent posts by one user in one room under slow mode, exactly one is stored.
pub async fn concurrent_slow_mode_one_winner<S: ChatStore>(s: Arc<S>) {
    let r = room();
    let a = user();
    let t = 1_700_000_400_000;
    let ids = Arc::new(IdGenerator::new(11));
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let (s, r, ids) = (s.clone(), r.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            s.post(ChatPost {
                message: msg(&ids, &r, a, t + i, "race"),
                client_id: None,
                slow_ms: 60_000,
                keep: 100,
            })
            .await
            .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Posted::Created(_) => won += 1,
            Posted::SlowMode(_) => {}
            Posted::Duplicate(m) => panic!("no client id, yet a duplicate: {m:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.recent(&r, 100, 100).await.unwrap().len(), 1);
}
