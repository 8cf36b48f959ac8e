//! The one test suite every [`MessageStore`] + [`Outbox`] backend must pass.
//!
//! Instantiate it per backend from a test:
//!
//! ```no_run
//! # async fn t(store: zerocast_social::messaging::store::embedded::EmbeddedStore) {
//! zerocast_social::messaging::store::conformance::run(&store, 1).await;
//! # }
//! ```
//!
//! Every check panics (with a message) on failure. Each check uses fresh random users
//! (UUID v4), so the suite can run against a shared external database that already holds data
//! (ScyllaDB); only the outbox check touches shared state: it reads and acknowledges the
//! outbox of `node`, so pick a node id no running server uses. Message ids come from one
//! [`IdGenerator`] for `node`: do not run two suites with the same node at the same time.
//!
//! Concurrency is exercised with many in-flight calls on one task (`join_all`), which is what
//! the store sees from many connections.

use futures_util::future::join_all;
use uuid::Uuid;

use super::{Appended, MessageStore, Outbox, StoreError};
use crate::id::UserId;
use crate::id::{IdGenerator, MessageId};
use crate::messaging::model::{ConversationId, Event, Message, NewMessage, Page};

/// Runs every check of the suite against `store`, whose changes go to `node`'s outbox.
pub async fn run<S: MessageStore + Outbox>(store: &S, node: u16) {
    let ids = IdGenerator::new(node);
    append_and_duplicates(store, &ids).await;
    history_paging(store, &ids).await;
    conversations_and_unread(store, &ids).await;
    mark_read_forward_only(store, &ids).await;
    edit_and_delete(store, &ids).await;
    since_returns_missed(store, &ids).await;
    outbox_events(store, node, &ids).await;
}

fn user() -> UserId {
    UserId(Uuid::new_v4())
}

fn new_msg(
    ids: &IdGenerator,
    from: UserId,
    to: UserId,
    text: &str,
    cid: Option<&str>,
) -> NewMessage {
    NewMessage {
        id: ids.next(),
        from,
        to,
        content: text.to_owned(),
        client_id: cid.map(str::to_owned),
    }
}

fn ok<T>(r: Result<T, StoreError>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: unexpected error {e:?}"))
}

/// Appends and expects a new message.
async fn send<S: MessageStore>(
    store: &S,
    ids: &IdGenerator,
    from: UserId,
    to: UserId,
    text: &str,
) -> Message {
    match ok(
        store.append(new_msg(ids, from, to, text, None)).await,
        "append",
    ) {
        Appended::Created(m) => m,
        Appended::Duplicate(m) => panic!("append without client id returned a duplicate: {m:?}"),
    }
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "{what}: expected NotFound, got {r:?}"
    );
}

fn is_forbidden<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::Forbidden)),
        "{what}: expected Forbidden, got {r:?}"
    );
}

/// The whole history of `conv`, newest first, paged by 100.
async fn all_history<S: MessageStore>(store: &S, conv: ConversationId) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    loop {
        let page = Page {
            before: out.last().map(|m| m.id),
            after: None,
            limit: 100,
        };
        let p = ok(store.history(conv, page).await, "history");
        if p.is_empty() {
            return out;
        }
        out.extend(p);
    }
}

/// Append stores what it is given; `(from, client_id)` makes it idempotent, also under 20
/// concurrent sends; `get` only shows a message to its participants.
pub async fn append_and_duplicates<S: MessageStore>(store: &S, ids: &IdGenerator) {
    let (a, b, c) = (user(), user(), user());
    let conv = ConversationId::between(a, b);

    let first = new_msg(ids, a, b, "hello", Some("c1"));
    let m = match ok(store.append(first.clone()).await, "append") {
        Appended::Created(m) => m,
        Appended::Duplicate(m) => panic!("fresh client id reported as duplicate: {m:?}"),
    };
    let expected = Message {
        id: first.id,
        conversation: conv,
        from: a,
        to: b,
        content: "hello".into(),
        client_id: Some("c1".into()),
        edited_at: None,
        deleted: false,
    };
    assert_eq!(m, expected);

    // Same sender and client id, new id and content: the original comes back.
    let again = ok(
        store.append(new_msg(ids, a, b, "other", Some("c1"))).await,
        "dup append",
    );
    assert_eq!(again, Appended::Duplicate(expected.clone()));
    // The key is per sender: b may use the same client id.
    let by_b = ok(
        store.append(new_msg(ids, b, a, "from b", Some("c1"))).await,
        "append b",
    );
    assert!(
        matches!(by_b, Appended::Created(_)),
        "client id is per sender: {by_b:?}"
    );

    // Messages without client id are never deduplicated.
    let n1 = send(store, ids, a, b, "same").await;
    let n2 = send(store, ids, a, b, "same").await;
    assert_ne!(n1.id, n2.id);

    assert_eq!(ok(store.get(a, m.id).await, "get by sender"), expected);
    assert_eq!(ok(store.get(b, m.id).await, "get by recipient"), expected);
    is_not_found(store.get(c, m.id).await, "get by a third user");
    is_not_found(store.get(a, ids.next()).await, "get of an unknown id");

    // 20 concurrent sends with one client id: exactly one is created.
    let racers: Vec<NewMessage> = (0..20)
        .map(|i| new_msg(ids, a, b, &format!("race {i}"), Some("race")))
        .collect();
    let results = join_all(racers.into_iter().map(|n| store.append(n))).await;
    let results: Vec<Appended> = results
        .into_iter()
        .map(|r| ok(r, "racing append"))
        .collect();
    let created = results
        .iter()
        .filter(|r| matches!(r, Appended::Created(_)))
        .count();
    assert_eq!(
        created, 1,
        "concurrent duplicates created {created} messages"
    );
    let winner = results[0].message().id;
    assert!(results.iter().all(|r| r.message().id == winner));

    let hist = all_history(store, conv).await;
    assert_eq!(
        hist.iter()
            .filter(|h| h.client_id.as_deref() == Some("race"))
            .count(),
        1
    );
    assert_eq!(hist.iter().filter(|h| h.id == m.id).count(), 1);
    // hello, from b, same, same, race.
    assert_eq!(hist.len(), 5, "{hist:?}");
}

/// 250 messages paged by 37 with `before` = last id of the previous page visit each message
/// once, newest first; `before`/`after` are exclusive; `limit` is clamped to 1..=100.
pub async fn history_paging<S: MessageStore>(store: &S, ids: &IdGenerator) {
    let (a, b, c) = (user(), user(), user());
    let conv = ConversationId::between(a, b);
    let news: Vec<NewMessage> = (0..250)
        .map(|i| {
            let (from, to) = if i % 3 == 0 { (b, a) } else { (a, b) };
            new_msg(ids, from, to, &format!("m{i}"), None)
        })
        .collect();
    let order: Vec<MessageId> = news.iter().map(|n| n.id).collect();
    for chunk in news.chunks(50) {
        for r in join_all(chunk.iter().cloned().map(|n| store.append(n))).await {
            ok(r, "append");
        }
    }
    // Another conversation of `a` does not leak in.
    send(store, ids, a, c, "elsewhere").await;

    let mut seen = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let page = Page {
            before,
            after: None,
            limit: 37,
        };
        let p = ok(store.history(conv, page).await, "history page");
        if p.is_empty() {
            break;
        }
        pages += 1;
        assert!(
            p.len() <= 37 && pages <= 7,
            "page {pages} has {} messages",
            p.len()
        );
        assert!(p.iter().all(|m| m.conversation == conv));
        before = p.last().map(|m| m.id);
        seen.extend(p.iter().map(|m| (m.id, m.content.clone())));
    }
    assert_eq!(pages, 7);
    let want: Vec<(MessageId, String)> = order
        .iter()
        .enumerate()
        .rev()
        .map(|(i, id)| (*id, format!("m{i}")))
        .collect();
    assert_eq!(
        seen, want,
        "paging must visit every message once, newest first"
    );

    let ids_of = |ms: Vec<Message>| ms.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let hist = |before: Option<usize>, after: Option<usize>, limit: usize| Page {
        before: before.map(|i| order[i]),
        after: after.map(|i| order[i]),
        limit,
    };
    let rev = |r: std::ops::Range<usize>| order[r].iter().rev().copied().collect::<Vec<_>>();

    let got = ids_of(ok(
        store.history(conv, hist(None, None, 0)).await,
        "limit 0",
    ));
    assert_eq!(got, vec![order[249]], "limit 0 is clamped to 1");
    let got = ids_of(ok(
        store.history(conv, hist(None, None, 1000)).await,
        "limit 1000",
    ));
    assert_eq!(got, rev(150..250), "limit is clamped to 100");
    let got = ids_of(ok(
        store.history(conv, hist(Some(0), None, 100)).await,
        "before first",
    ));
    assert!(got.is_empty(), "before the first message: {got:?}");
    let got = ids_of(ok(
        store.history(conv, hist(None, Some(249), 100)).await,
        "after last",
    ));
    assert!(got.is_empty(), "after the last message: {got:?}");
    let got = ids_of(ok(
        store.history(conv, hist(None, Some(239), 100)).await,
        "after",
    ));
    assert_eq!(got, rev(240..250), "after is exclusive");
    let got = ids_of(ok(
        store.history(conv, hist(Some(10), Some(4), 100)).await,
        "window",
    ));
    assert_eq!(got, rev(5..10), "before and after are exclusive");
    let got = ids_of(ok(
        store.history(conv, hist(Some(10), Some(4), 2)).await,
        "window",
    ));
    assert_eq!(got, rev(8..10), "a limited window keeps the newest");
    let got = ids_of(ok(
        store.history(conv, hist(Some(5), Some(4), 100)).await,
        "empty",
    ));
    assert!(got.is_empty());
    let got = ids_of(ok(
        store.history(conv, hist(Some(4), Some(4), 100)).await,
        "empty",
    ));
    assert!(got.is_empty());
    let got = ids_of(ok(
        store.history(conv, hist(Some(4), Some(10), 100)).await,
        "crossed",
    ));
    assert!(got.is_empty());
    let empty = ConversationId::between(b, c);
    assert!(ok(store.history(empty, Page::default()).await, "empty conv").is_empty());
}

/// Conversations come most recent first with the peer's unread messages counted.
pub async fn conversations_and_unread<S: MessageStore>(store: &S, ids: &IdGenerator) {
    let (u, p1, p2, p3) = (user(), user(), user(), user());
    let _m1 = send(store, ids, p1, u, "1").await;
    let _m2 = send(store, ids, p2, u, "2").await;
    let m3 = send(store, ids, p2, u, "3").await;
    let m4 = send(store, ids, u, p3, "4").await;
    let m5 = send(store, ids, p1, u, "5").await;

    let convs = ok(store.conversations(u, 10).await, "conversations");
    let got: Vec<(UserId, MessageId, u64)> = convs
        .iter()
        .map(|c| (c.peer, c.last_message.id, c.unread))
        .collect();
    assert_eq!(got, vec![(p1, m5.id, 2), (p3, m4.id, 0), (p2, m3.id, 2)]);
    assert_eq!(convs[0].last_message, m5);

    let two = ok(store.conversations(u, 2).await, "conversations limit 2");
    assert_eq!(two.iter().map(|c| c.peer).collect::<Vec<_>>(), vec![p1, p3]);

    let theirs = ok(store.conversations(p3, 10).await, "peer's conversations");
    assert_eq!(theirs.len(), 1);
    assert_eq!(
        (theirs[0].peer, theirs[0].last_message.id, theirs[0].unread),
        (u, m4.id, 1)
    );

    let unread = ok(store.unread(u).await, "unread");
    assert_eq!(unread.total, 4);
    let mut per: Vec<(UserId, u64)> = unread
        .conversations
        .iter()
        .map(|c| (c.peer, c.unread))
        .collect();
    per.sort();
    let mut want = vec![(p1, 2), (p2, 2)];
    want.sort();
    assert_eq!(
        per, want,
        "only conversations with unread messages are listed"
    );

    let nobody = user();
    assert!(ok(store.conversations(nobody, 10).await, "no conversations").is_empty());
    let none = ok(store.unread(nobody).await, "no unread");
    assert_eq!((none.total, none.conversations.len()), (0, 0));
}

/// Read markers only move forward, unread counts follow them (tombstones still count), and
/// only participants may move them.
pub async fn mark_read_forward_only<S: MessageStore>(store: &S, ids: &IdGenerator) {
    let (u, p, outsider) = (user(), user(), user());
    let conv = ConversationId::between(u, p);
    let m1 = send(store, ids, p, u, "1").await;
    let m2 = send(store, ids, p, u, "2").await;
    let m3 = send(store, ids, p, u, "3").await;
    let m4 = send(store, ids, u, p, "mine").await;
    assert_eq!(unread_total(store, u).await, 3, "own messages do not count");

    assert_eq!(
        ok(store.mark_read(u, conv, m2.id).await, "mark_read"),
        m2.id
    );
    assert_eq!(unread_total(store, u).await, 1);
    assert_eq!(
        ok(store.mark_read(u, conv, m1.id).await, "mark_read back"),
        m2.id
    );
    assert_eq!(unread_total(store, u).await, 1, "a marker never moves back");
    is_not_found(
        store.mark_read(outsider, conv, m3.id).await,
        "outsider mark_read",
    );

    assert_eq!(
        ok(store.mark_read(u, conv, m4.id).await, "mark_read all"),
        m4.id
    );
    let unread = ok(store.unread(u).await, "unread");
    assert_eq!((unread.total, unread.conversations.len()), (0, 0));
    let convs = ok(store.conversations(u, 10).await, "conversations");
    assert_eq!((convs.len(), convs[0].unread), (1, 0));
    // p has not read u's message.
    assert_eq!(ok(store.unread(p).await, "peer unread").total, 1);

    // A deleted unread message still counts once.
    let m5 = send(store, ids, p, u, "oops").await;
    ok(store.delete(p, m5.id, crate::now_ms()).await, "delete");
    assert_eq!(unread_total(store, u).await, 1, "tombstones count");
    assert_eq!(
        ok(store.mark_read(u, conv, m5.id).await, "mark_read"),
        m5.id
    );
    assert_eq!(unread_total(store, u).await, 0);
}

/// Only the sender edits or deletes; others get Forbidden (participant) or NotFound; a delete
/// leaves a tombstone that cannot be edited.
pub async fn edit_and_delete<S: MessageStore>(store: &S, ids: &IdGenerator) {
    let (a, b, c) = (user(), user(), user());
    let conv = ConversationId::between(a, b);
    let orig = match ok(
        store.append(new_msg(ids, a, b, "draft", Some("e1"))).await,
        "append",
    ) {
        Appended::Created(m) => m,
        Appended::Duplicate(m) => panic!("unexpected duplicate {m:?}"),
    };
    let id = orig.id;

    is_forbidden(store.edit(b, id, "x".into(), 1).await, "edit by recipient");
    is_not_found(store.edit(c, id, "x".into(), 1).await, "edit by outsider");
    is_not_found(
        store.edit(a, ids.next(), "x".into(), 1).await,
        "edit of unknown id",
    );
    let t1 = crate::now_ms();
    let edited = ok(store.edit(a, id, "final".into(), t1).await, "edit");
    assert_eq!(
        edited,
        Message {
            content: "final".into(),
            edited_at: Some(t1),
            ..orig.clone()
        }
    );
    assert_eq!(ok(store.get(b, id).await, "get edited"), edited);

    is_forbidden(store.delete(b, id, 2).await, "delete by recipient");
    is_not_found(store.delete(c, id, 2).await, "delete by outsider");
    is_not_found(store.delete(a, ids.next(), 2).await, "delete of unknown id");
    let tomb = ok(store.delete(a, id, crate::now_ms()).await, "delete");
    assert!(tomb.deleted && tomb.content.is_empty(), "{tomb:?}");
    assert_eq!(
        (tomb.id, tomb.from, tomb.to, tomb.conversation),
        (id, a, b, conv)
    );
    assert_eq!(ok(store.get(b, id).await, "get tombstone"), tomb);
    let hist = ok(store.history(conv, Page::default()).await, "history");
    assert_eq!(hist, vec![tomb.clone()], "the tombstone stays in history");
    is_forbidden(
        store.edit(a, id, "again".into(), 3).await,
        "edit of a tombstone",
    );
    is_not_found(
        store.edit(c, id, "again".into(), 3).await,
        "outsider edit of a tombstone",
    );
    // Resending with the same client id returns the tombstone, not a new message.
    let again = ok(
        store.append(new_msg(ids, a, b, "draft", Some("e1"))).await,
        "resend",
    );
    assert_eq!(again, Appended::Duplicate(tomb));
}

/// `since` returns exactly the messages of all the user's conversations after an id, oldest
/// first, honouring `limit`.
pub async fn since_returns_missed<S: MessageStore>(store: &S, ids: &IdGenerator) {
    let (a, b, c) = (user(), user(), user());
    let m1 = send(store, ids, a, b, "seen").await;
    let m2 = send(store, ids, b, a, "missed 1").await;
    let _other = send(store, ids, b, c, "not a's").await;
    let m3 = send(store, ids, c, a, "missed 2").await;
    let m4 = send(store, ids, a, c, "own, from another device").await;

    let got = ok(store.since(a, m1.id, 100).await, "since");
    assert_eq!(got, vec![m2.clone(), m3.clone(), m4.clone()]);
    let got = ok(store.since(a, MessageId(0), 100).await, "since 0");
    assert_eq!(got, vec![m1, m2.clone(), m3.clone(), m4.clone()]);
    let got = ok(store.since(a, MessageId(0), 0).await, "since limit 0");
    assert_eq!(got.len(), 1, "limit 0 is clamped to 1");
    let got = ok(store.since(a, m2.id, 1).await, "since limit 1");
    assert_eq!(got, vec![m3]);
    assert!(ok(store.since(a, m4.id, 100).await, "nothing new").is_empty());
    assert!(ok(store.since(user(), MessageId(0), 100).await, "stranger").is_empty());
}

/// Every change of `node`'s handle leaves one event in `node`'s outbox, in order; no-ops leave
/// none; acknowledging removes them and sequence numbers keep increasing.
pub async fn outbox_events<S: MessageStore + Outbox>(store: &S, node: u16, ids: &IdGenerator) {
    let (a, b) = (user(), user());
    let conv = ConversationId::between(a, b);
    let m = match ok(
        store.append(new_msg(ids, a, b, "hi", Some("o1"))).await,
        "append",
    ) {
        Appended::Created(m) => m,
        Appended::Duplicate(m) => panic!("unexpected duplicate {m:?}"),
    };
    ok(
        store.append(new_msg(ids, a, b, "hi", Some("o1"))).await,
        "duplicate",
    );
    let edited = ok(
        store.edit(a, m.id, "hi!".into(), crate::now_ms()).await,
        "edit",
    );
    is_forbidden(
        store.edit(b, m.id, "no".into(), 1).await,
        "edit by recipient",
    );
    ok(store.mark_read(b, conv, m.id).await, "mark_read");
    ok(
        store.mark_read(b, conv, m.id).await,
        "mark_read again (no-op)",
    );
    let tomb = ok(store.delete(a, m.id, crate::now_ms()).await, "delete");

    let events = outbox_of(store, node, conv).await;
    let want = vec![
        Event::MessageCreated {
            v: Event::VERSION,
            message: m,
        },
        Event::MessageEdited {
            v: Event::VERSION,
            message: edited,
        },
        Event::Read {
            v: Event::VERSION,
            conversation: conv,
            reader: b,
            up_to: tomb.id,
        },
        Event::MessageDeleted {
            v: Event::VERSION,
            message: tomb,
        },
    ];
    assert_eq!(events.iter().map(|e| e.1.clone()).collect::<Vec<_>>(), want);
    assert!(
        events.windows(2).all(|w| w[0].0 < w[1].0),
        "seqs increase: {events:?}"
    );
    let last = events[3].0;

    // Reading respects `after` and `limit`.
    let from_second = ok(store.outbox_read(node, events[0].0, 1).await, "outbox_read");
    assert_eq!(from_second.len(), 1);
    assert!(from_second[0].0 > events[0].0 && from_second[0].0 <= events[1].0);

    ok(store.outbox_ack(node, last).await, "ack");
    ok(store.outbox_ack(node, last).await, "ack again");
    assert!(
        outbox_of(store, node, conv).await.is_empty(),
        "acked records are gone"
    );
    let left = ok(store.outbox_read(node, 0, 100).await, "outbox_read");
    assert!(
        left.iter().all(|(s, _)| *s > last),
        "nothing at or before the ack: {left:?}"
    );

    let next = send(store, ids, b, a, "after ack").await;
    let events = outbox_of(store, node, conv).await;
    assert_eq!(events.len(), 1);
    assert!(events[0].0 > last, "seqs keep increasing after an ack");
    assert!(matches!(&events[0].1, Event::MessageCreated { message, .. } if *message == next));
    ok(store.outbox_ack(node, events[0].0).await, "ack");
}

async fn unread_total<S: MessageStore>(store: &S, user: UserId) -> u64 {
    ok(store.unread(user).await, "unread").total
}

/// `node`'s outbox records about `conv`, in order.
async fn outbox_of<S: Outbox>(store: &S, node: u16, conv: ConversationId) -> Vec<(u64, Event)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = ok(store.outbox_read(node, after, 1000).await, "outbox_read");
        let Some(last) = page.last() else {
            return out;
        };
        after = last.0;
        out.extend(
            page.into_iter()
                .filter(|(_, e)| e.conversation() == Some(conv)),
        );
    }
}
