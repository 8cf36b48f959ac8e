//! The embedded (fjall) message store: the conformance suite, reopen, group commit and
//! durability across `kill -9` of a real child process.
#![allow(clippy::print_stdout)] // tests report their numbers

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use uuid::Uuid;
use zerocast_social::id::UserId;
use zerocast_social::id::{IdGenerator, MessageId};
use zerocast_social::messaging::model::{ConversationId, Event, NewMessage, Page};
use zerocast_social::messaging::store::embedded::EmbeddedStore;
use zerocast_social::messaging::store::{conformance, Appended, MessageStore, Outbox};

/// The kill -9 child runs when this names its store directory.
const CHILD_ENV: &str = "ZEROCAST_STORE_CHILD";
const CHILD_NODE: u16 = 5;
const KILL_AFTER_ACKS: usize = 300;

/// A temp dir on the target disk (not tmpfs), so fsyncs cost what they cost.
fn tmp() -> TempDir {
    tempfile::Builder::new()
        .prefix("store-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

fn user() -> UserId {
    UserId(Uuid::new_v4())
}

fn msg(ids: &IdGenerator, from: UserId, to: UserId, text: &str, cid: Option<&str>) -> NewMessage {
    NewMessage {
        id: ids.next(),
        from,
        to,
        content: text.into(),
        client_id: cid.map(Into::into),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_embedded() {
    let dir = tmp();
    let store = EmbeddedStore::open(dir.path(), 1).expect("open");
    conformance::run(&store, 1).await;
    // A second node's handle on the same database passes too, with its own outbox.
    conformance::run(&store.with_node(2), 2).await;
    let (writes, fsyncs) = store.stats();
    println!("conformance: {writes} writes, {fsyncs} fsyncs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_conformance_embedded_and_reopen() {
    use zerocast_social::channels::store::conformance as channels;
    use zerocast_social::channels::{Ban, Channel, ChannelStore};
    let dir = tmp();
    let store = EmbeddedStore::open(dir.path(), 1).expect("open");
    channels::run(Arc::new(store.clone())).await;
    // Channels and bans survive a reopen (the durable half of chat moderation).
    let owner = user();
    let c = Channel {
        name: "kept".into(),
        owner,
        private: true,
        key_hash: "ab".repeat(32),
        key_issued_at: 1,
        created_at: 1,
        slow_mode_secs: 30,
        moderators: vec![user()],
    };
    store.create(c.clone(), 10).await.unwrap();
    let ban = Ban {
        user: user(),
        until: None,
    };
    store.put_ban("kept", ban).await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path(), 1).expect("reopen");
    assert_eq!(ChannelStore::get(&store, "kept").await.unwrap(), Some(c));
    assert_eq!(store.bans("kept").await.unwrap(), vec![ban]);
    assert_eq!(store.owned_by(owner).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_conformance_embedded() {
    use zerocast_social::chat::store::{conformance as chat, ChatPost, ChatStore, Posted};
    use zerocast_social::chat::ChatMessage;
    let dir = tmp();
    let store = EmbeddedStore::open(dir.path(), 1).expect("open");
    chat::run(Arc::new(store.clone())).await;
    // Forgetting old slow-mode records (the sweep; ScyllaDB expires them by TTL instead).
    let ids = IdGenerator::new(1);
    let a = user();
    let post = |at: u64| ChatPost {
        message: ChatMessage {
            id: ids.next_at(at),
            room: "sweep".into(),
            from: a,
            content: "s".into(),
            at,
        },
        client_id: None,
        slow_ms: 10_000,
        keep: 10,
    };
    assert!(matches!(
        store.post(post(1_000)).await.unwrap(),
        Posted::Created(_)
    ));
    assert_eq!(
        store.post(post(2_000)).await.unwrap(),
        Posted::SlowMode(9_000)
    );
    store.forget_posts_before(1_000).await.unwrap();
    assert_eq!(
        store.post(post(2_000)).await.unwrap(),
        Posted::SlowMode(9_000)
    );
    store.forget_posts_before(1_001).await.unwrap();
    assert!(matches!(
        store.post(post(2_000)).await.unwrap(),
        Posted::Created(_)
    ));
    // Retention deleted the idempotency entries of the messages it dropped (none left over).
    let r = "trim";
    for i in 0..30u64 {
        let mut p = post(10_000 + i);
        p.message.room = r.into();
        p.slow_ms = 0;
        p.keep = 3;
        p.client_id = Some(format!("c{i}"));
        store.post(p).await.unwrap();
    }
    let mut again = post(20_000);
    again.message.room = r.into();
    again.slow_ms = 0;
    again.keep = 3;
    again.client_id = Some("c0".into());
    assert!(
        matches!(store.post(again).await.unwrap(), Posted::Created(_)),
        "c0 fell out of retention: a new message"
    );
    assert_eq!(store.recent(r, 100, 3).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_have_separate_outboxes() {
    let dir = tmp();
    let one = EmbeddedStore::open(dir.path(), 1).expect("open");
    let two = one.with_node(2);
    assert_eq!((one.node(), two.node()), (1, 2));
    let ids = IdGenerator::new(2);
    let m = two
        .append(msg(&ids, user(), user(), "x", None))
        .await
        .expect("append");
    // Both handles read the same data.
    assert_eq!(
        one.get(m.message().from, m.message().id)
            .await
            .expect("get"),
        *m.message()
    );
    assert!(one.outbox_read(1, 0, 100).await.expect("read").is_empty());
    let recs = one.outbox_read(2, 0, 100).await.expect("read");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].0, 1, "seqs start at 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_outbox_survive_reopen() {
    let dir = tmp();
    let ids = IdGenerator::new(3);
    let (a, b) = (user(), user());
    let conv = ConversationId::between(a, b);

    let store = EmbeddedStore::open(dir.path(), 3).expect("open");
    let m1 = store
        .append(msg(&ids, a, b, "one", Some("r1")))
        .await
        .expect("append");
    let m2 = store
        .append(msg(&ids, b, a, "two", None))
        .await
        .expect("append");
    let m1 = store
        .edit(a, m1.message().id, "one!".into(), 42)
        .await
        .expect("edit");
    store.mark_read(b, conv, m1.id).await.expect("mark_read");
    let events = store.outbox_read(3, 0, 100).await.expect("outbox");
    assert_eq!(events.len(), 4);
    let history = store.history(conv, Page::default()).await.expect("history");
    let convs = store.conversations(a, 10).await.expect("conversations");
    let unread = (
        store.unread(a).await.expect("unread"),
        store.unread(b).await.expect("unread"),
    );
    drop(store);

    let store = EmbeddedStore::open(dir.path(), 3).expect("reopen");
    assert_eq!(store.get(b, m1.id).await.expect("get"), m1);
    assert_eq!(
        store.get(a, m2.message().id).await.expect("get"),
        *m2.message()
    );
    assert_eq!(
        store.history(conv, Page::default()).await.expect("history"),
        history
    );
    assert_eq!(
        store.conversations(a, 10).await.expect("conversations"),
        convs
    );
    assert_eq!(
        (
            store.unread(a).await.expect("unread"),
            store.unread(b).await.expect("unread")
        ),
        unread
    );
    assert_eq!(store.outbox_read(3, 0, 100).await.expect("outbox"), events);
    // Idempotency survives too.
    let again = store
        .append(msg(&ids, a, b, "one", Some("r1")))
        .await
        .expect("resend");
    assert_eq!(again, Appended::Duplicate(m1.clone()));
    // The outbox sequence continues after the last record.
    let m3 = store
        .append(msg(&ids, a, b, "three", None))
        .await
        .expect("append");
    let recs = store.outbox_read(3, 4, 100).await.expect("outbox");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].0, 5);
    assert!(matches!(&recs[0].1, Event::MessageCreated { message, .. } if message == m3.message()));
    // Acknowledge everything, reopen: the sequence still does not restart.
    store.outbox_ack(3, 5).await.expect("ack");
    drop(store);

    let store = EmbeddedStore::open(dir.path(), 3).expect("reopen");
    assert!(store
        .outbox_read(3, 0, 100)
        .await
        .expect("outbox")
        .is_empty());
    store
        .append(msg(&ids, b, a, "four", None))
        .await
        .expect("append");
    let recs = store.outbox_read(3, 0, 100).await.expect("outbox");
    assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fsyncs() {
    let dir = tmp();
    let store = EmbeddedStore::open(dir.path(), 4).expect("open");
    let ids = Arc::new(IdGenerator::new(4));
    let users: Vec<UserId> = (0..10).map(|_| user()).collect();

    // Baseline: one caller at a time pays one fsync per write.
    for i in 0..10 {
        store
            .append(msg(&ids, users[0], users[1], &format!("seq {i}"), None))
            .await
            .expect("append");
    }
    let (w0, f0) = store.stats();
    assert_eq!((w0, f0), (10, 10), "sequential appends: one fsync each");

    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let store = store.clone();
            let n = msg(
                &ids,
                users[i % 10],
                users[(i + 1) % 10],
                &format!("c {i}"),
                None,
            );
            tokio::spawn(async move { store.append(n).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.expect("task").expect("append");
        assert!(matches!(r, Appended::Created(_)));
    }
    let (w1, f1) = store.stats();
    let (writes, fsyncs) = (w1 - w0, f1 - f0);
    println!("group commit: 1000 concurrent appends -> {writes} writes, {fsyncs} fsyncs");
    assert_eq!(writes, 1000);
    assert!(
        fsyncs < writes / 4,
        "{fsyncs} fsyncs for {writes} writes: no grouping"
    );

    // Closed loop: 50 callers, each sending its next message once the previous one is acked.
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (store, ids, users) = (store.clone(), Arc::clone(&ids), users.clone());
            tokio::spawn(async move {
                for j in 0..20 {
                    let n = msg(
                        &ids,
                        users[i % 10],
                        users[(i + 3) % 10],
                        &format!("{i}/{j}"),
                        None,
                    );
                    store.append(n).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let (w2, f2) = store.stats();
    let (writes, fsyncs) = (w2 - w1, f2 - f1);
    println!(
        "group commit: 50 callers x 20 sequential appends -> {writes} writes, {fsyncs} fsyncs"
    );
    assert_eq!(writes, 1000);
    assert!(
        fsyncs < writes / 4,
        "{fsyncs} fsyncs for {writes} writes: no grouping"
    );
    let total: usize = store
        .conversations(users[0], 100)
        .await
        .expect("conversations")
        .len();
    assert_eq!(total, 4, "user 0 talks to users 1, 9, 3 and 7");
}

fn child_users() -> (UserId, UserId) {
    (
        UserId(Uuid::from_u128(0xA11CE)),
        UserId(Uuid::from_u128(0xB0B)),
    )
}

/// The child side of [`acknowledged_appends_survive_kill_9`]: appends from many tasks and
/// prints each acknowledged id. Does nothing unless started by that test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = EmbeddedStore::open(Path::new(&dir), CHILD_NODE).expect("open");
    let ids = Arc::new(IdGenerator::new(CHILD_NODE));
    let (a, b) = child_users();
    for t in 0..32 {
        let (store, ids) = (store.clone(), Arc::clone(&ids));
        tokio::spawn(async move {
            for i in 0u64.. {
                let n = msg(
                    &ids,
                    a,
                    b,
                    &format!("task {t} msg {i}"),
                    Some(&format!("{t}-{i}")),
                );
                let Ok(done) = store.append(n).await else {
                    break;
                };
                // Acknowledged: tell the parent at once.
                let mut out = std::io::stdout().lock();
                if writeln!(out, "ACK {}", done.message().id)
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    // The parent kills us long before this; do not linger if it died.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// Every append acknowledged before `kill -9` is there after reopening.
#[test]
fn acknowledged_appends_survive_kill_9() {
    let dir = tmp();
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "kill9_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut lines = BufReader::new(child.stdout.take().expect("child stdout"));
    let mut acked = Vec::new();
    let mut line = String::new();
    let parse = |line: &str, acked: &mut Vec<MessageId>| {
        // Lines arrive whole (one small write each); ignore the harness's own output.
        if let Some(id) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ACK ")) {
            acked.push(MessageId(id.parse().expect("id")));
        }
    };
    while acked.len() < KILL_AFTER_ACKS {
        line.clear();
        let n = lines.read_line(&mut line).expect("read child");
        assert!(n > 0, "child exited after {} acks", acked.len());
        parse(&line, &mut acked);
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    let before_kill = acked.len();
    // Acks the child printed before it died, still in the pipe.
    loop {
        line.clear();
        if lines.read_line(&mut line).expect("read child") == 0 {
            break;
        }
        parse(&line, &mut acked);
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path(), CHILD_NODE).expect("reopen after kill");
        let (a, b) = child_users();
        let mut missing = Vec::new();
        for id in &acked {
            match store.get(b, *id).await {
                Ok(m) => assert_eq!((m.id, m.from), (*id, a)),
                Err(e) => missing.push((*id, e)),
            }
        }
        let conv = ConversationId::between(a, b);
        let mut stored = 0;
        let mut before = None;
        loop {
            let page = Page {
                before,
                after: None,
                limit: 100,
            };
            let p = store.history(conv, page).await.expect("history");
            let Some(last) = p.last() else { break };
            before = Some(last.id);
            stored += p.len();
        }
        let events = store
            .outbox_read(CHILD_NODE, 0, 10_000)
            .await
            .expect("outbox");
        println!(
            "kill -9 ({status}): {} acked ({before_kill} when killed), {} missing, {stored} \
             stored, {} outbox records",
            acked.len(),
            missing.len(),
            events.len()
        );
        assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
        assert!(stored >= acked.len());
        assert_eq!(
            events.len(),
            stored,
            "every stored message has its outbox record"
        );
    });
}
