//! `KafkaBus` over the real Kafka protocol: librdkafka's mock cluster (3 brokers, in this
//! process), or the broker at `ZEROCAST_KAFKA_BROKERS` when that is set, e.g. a tansu broker:
//!
//! ```text
//! cargo install tansu --no-default-features --features dynostore
//! tansu broker --storage-engine memory://tansu/      # listens on localhost:9092
//! ZEROCAST_KAFKA_BROKERS=localhost:9092 cargo test -p zerocast-social --test kafka_bus
//! ```
//!
//! The outage test needs to stop brokers, so it always runs on a mock cluster.
#![cfg(feature = "kafka")]
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

mod common;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::sync::broadcast;
use uuid::Uuid;
use zerocast_social::chat::ChatMessage;
use zerocast_social::events::bus::{BusMessage, EventBus};
use zerocast_social::events::kafka::{KafkaBus, KafkaOptions};
use zerocast_social::id::MessageId;
use zerocast_social::id::UserId;
use zerocast_social::messaging::model::{ConversationId, Event, Message};

/// Where the brokers are; keeps the mock cluster (if any) alive.
struct Kafka {
    brokers: String,
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
}

const PARTITIONS: i32 = 6;

fn kafka(topic: &str) -> Kafka {
    match std::env::var("ZEROCAST_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => Kafka {
            brokers: b,
            mock: None,
        },
        _ => mock(topic),
    }
}

fn mock(topic: &str) -> Kafka {
    let m = MockCluster::new(3).expect("mock cluster");
    // The mock has no CreateTopics; make the topic as the admin API would.
    m.create_topic(topic, PARTITIONS, 3).expect("mock topic");
    Kafka {
        brokers: m.bootstrap_servers(),
        mock: Some(m),
    }
}

fn topic() -> String {
    format!("zerocast-test-{}", Uuid::new_v4())
}

fn opts(k: &Kafka, topic: &str, name: &str) -> KafkaOptions {
    let mut o = KafkaOptions::new(
        &k.brokers,
        topic,
        &format!("zerocast-{name}-{}", Uuid::new_v4()),
    );
    o.partitions = PARTITIONS;
    o
}

fn user() -> UserId {
    UserId(Uuid::new_v4())
}

/// Event number `seq` of a conversation: a message whose content is `seq`.
fn event(from: UserId, to: UserId, seq: u64) -> Event {
    Event::MessageCreated {
        v: Event::VERSION,
        message: Message {
            id: MessageId((1 << 40) + seq),
            conversation: ConversationId::between(from, to),
            from,
            to,
            content: seq.to_string(),
            client_id: None,
            edited_at: None,
            deleted: false,
        },
    }
}

/// Receives until `want` durable events arrived (or `within` passed).
async fn collect(
    rx: &mut broadcast::Receiver<BusMessage>,
    want: usize,
    within: Duration,
) -> Vec<(ConversationId, u64)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(m)) => got.extend(common::seq_of(&m)),
            Ok(Err(e)) => panic!("subscriber: {e}"),
            Err(_) => break,
        }
    }
    got
}

fn per_conversation(got: &[(ConversationId, u64)]) -> HashMap<ConversationId, Vec<u64>> {
    let mut by: HashMap<ConversationId, Vec<u64>> = HashMap::new();
    for (c, s) in got {
        by.entry(*c).or_default().push(*s);
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_receives_every_event_in_order_per_conversation() {
    let topic = topic();
    let k = kafka(&topic);
    let publisher = KafkaBus::connect_with(opts(&k, &topic, "a")).await.unwrap();
    let other = KafkaBus::connect_with(opts(&k, &topic, "b")).await.unwrap();
    let mut rx_other = other.subscribe();
    let mut rx_self = publisher.subscribe();

    const CONVERSATIONS: usize = 8;
    const PER: u64 = 60;
    let pairs: Vec<(UserId, UserId)> = (0..CONVERSATIONS).map(|_| (user(), user())).collect();
    // Interleaved across conversations, published in relay-sized batches.
    let all: Vec<Event> = (0..PER)
        .flat_map(|s| pairs.iter().map(move |(a, b)| event(*a, *b, s)))
        .collect();
    let t0 = Instant::now();
    for batch in all.chunks(50) {
        publisher.publish(batch).await.expect("publish");
    }
    let published = t0.elapsed();

    let got = collect(&mut rx_other, all.len(), Duration::from_secs(30)).await;
    let received = t0.elapsed();
    assert_eq!(got.len(), all.len(), "the other instance got every event");
    let by = per_conversation(&got);
    assert_eq!(by.len(), CONVERSATIONS);
    let want: Vec<u64> = (0..PER).collect();
    for (c, seqs) in &by {
        assert_eq!(seqs, &want, "conversation {c} in order, once");
    }
    // The publishing instance hears its own events too (the hub relies on it).
    let own = collect(&mut rx_self, all.len(), Duration::from_secs(30)).await;
    assert_eq!(per_conversation(&own), by);
    println!(
        "{} events, {CONVERSATIONS} conversations, {PARTITIONS} partitions: published (acks=all) in {published:?}, all received by the other instance after {received:?}",
        all.len()
    );

    // Ephemeral messages reach the other instance too.
    let (a, b) = pairs[0];
    publisher
        .publish_ephemeral(BusMessage::Typing { from: a, to: b })
        .await
        .expect("typing");
    let chat = ChatMessage {
        id: MessageId(7),
        room: "stream-1".into(),
        from: a,
        content: "hi chat".into(),
        at: 1,
    };
    publisher
        .publish_ephemeral(BusMessage::Chat {
            message: chat.clone(),
        })
        .await
        .expect("chat");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(10), rx_other.recv())
            .await
            .expect("ephemeral within 10 s")
            .unwrap();
        seen.push(m);
    }
    assert!(seen.contains(&BusMessage::Typing { from: a, to: b }));
    assert!(seen.contains(&BusMessage::Chat { message: chat }));
    assert_eq!(publisher.outages(), 0);
    drop(k.mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_publish_and_loses_nothing_once_brokers_are_back() {
    let topic = topic();
    let k = mock(&topic);
    let m = k.mock.as_ref().unwrap();
    let mut o = opts(&k, &topic, "a");
    o.delivery_timeout = Duration::from_secs(3);
    o.ephemeral_timeout = Duration::from_millis(500);
    let publisher = KafkaBus::connect_with(o).await.unwrap();
    let other = KafkaBus::connect_with(opts(&k, &topic, "b")).await.unwrap();
    let mut rx = other.subscribe();

    let pairs: Vec<(UserId, UserId)> = (0..3).map(|_| (user(), user())).collect();
    let events = |range: std::ops::Range<u64>| -> Vec<Event> {
        range
            .flat_map(|s| pairs.iter().map(move |(a, b)| event(*a, *b, s)))
            .collect()
    };

    publisher.publish(&events(0..10)).await.expect("before");
    assert_eq!(
        collect(&mut rx, 30, Duration::from_secs(20)).await.len(),
        30
    );

    // Every broker down: publish fails (the relay keeps the batch in the outbox) ...
    m.broker_down(-1).unwrap();
    let held = events(10..20);
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), publisher.publish(&held))
        .await
        .expect("publish gives up within its delivery timeout");
    assert!(r.is_err(), "publish while all brokers are down: {r:?}");
    let failed_after = t.elapsed();
    let t = Instant::now();
    let r = publisher
        .publish_ephemeral(BusMessage::Typing {
            from: pairs[0].0,
            to: pairs[0].1,
        })
        .await;
    assert!(r.is_err(), "ephemeral while down: {r:?}");
    let ephemeral_failed_after = t.elapsed();
    assert!(
        ephemeral_failed_after < Duration::from_secs(2),
        "{ephemeral_failed_after:?}"
    );
    assert!(!publisher.is_available());
    // ... and again, as the relay retries: still one outage episode (one warn line).
    assert!(publisher.publish(&held).await.is_err());
    assert_eq!(publisher.outages(), 1);

    // Brokers back: retry like the relay until the held batch goes through, then carry on.
    m.broker_up(-1).unwrap();
    let t = Instant::now();
    let mut attempts = 1;
    while let Err(e) = publisher.publish(&held).await {
        assert!(t.elapsed() < Duration::from_secs(60), "no recovery: {e}");
        attempts += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered_after = t.elapsed();
    assert!(publisher.is_available());
    publisher.publish(&events(20..30)).await.expect("after");

    // The consumer of the other instance reconnected by itself and got all of it; copies
    // from failed attempts may precede the last one, whose order is the publish order.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = |g: &[(ConversationId, u64)]| {
        let by = per_conversation(g);
        by.len() == 3 && by.values().all(|s| s.last() == Some(&29))
    };
    while !done(&got) && Instant::now() < deadline {
        got.extend(collect(&mut rx, 1, Duration::from_secs(1)).await);
    }
    let by = per_conversation(&got);
    let mut duplicates = 0;
    for (c, seqs) in &by {
        let mut last_copies: Vec<u64> = Vec::new();
        for (i, s) in seqs.iter().enumerate() {
            if !seqs[i + 1..].contains(s) {
                last_copies.push(*s);
            } else {
                duplicates += 1;
            }
        }
        assert_eq!(
            last_copies,
            (10..30).collect::<Vec<_>>(),
            "conversation {c}: nothing lost, in order ({seqs:?})"
        );
    }
    assert_eq!(by.len(), 3);
    assert_eq!(publisher.outages(), 1, "one outage, one episode");
    println!(
        "outage: publish failed after {failed_after:?}, ephemeral after {ephemeral_failed_after:?}; \
         held batch delivered {recovered_after:?} after brokers came back ({attempts} attempts); \
         {} events received after the outage, {duplicates} duplicates; {} outage episode(s)",
        got.len(),
        publisher.outages()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_skipped() {
    let topic = topic();
    let k = kafka(&topic);
    let bus = KafkaBus::connect_with(opts(&k, &topic, "a")).await.unwrap();
    let mut rx = bus.subscribe();
    let (a, b) = (user(), user());
    let key = ConversationId::between(a, b).to_bytes();
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &k.brokers)
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let garbage: [&[u8]; 4] = [
        b"not json",
        br#"{"kind":"from_the_future","x":1}"#,
        br#"{"kind":"event","event":{"type":"message.created","v":1}}"#,
        b"",
    ];
    for g in garbage {
        raw.send(
            FutureRecord::to(&topic).key(&key[..]).payload(g),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    }
    // Same key, so the same partition, after the garbage.
    bus.publish(&[event(a, b, 1)]).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the valid record within 10 s")
        .unwrap();
    assert_eq!(common::seq_of(&m), Some((ConversationId::between(a, b), 1)));
    drop(k.mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_when_no_broker_answers() {
    let mut o = KafkaOptions::new("127.0.0.1:1", "t", "g");
    o.connect_timeout = Duration::from_secs(2);
    let t = Instant::now();
    let r = KafkaBus::connect_with(o).await;
    assert!(r.is_err());
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_creates_a_missing_topic() {
    let topic = topic();
    // No pre-created topic: a real broker gets CreateTopics; the mock cluster (which has no
    // CreateTopics) auto-creates it for the producer's metadata request.
    let (brokers, _mock) = match std::env::var("ZEROCAST_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => (b, None),
        _ => {
            let m = MockCluster::new(3).expect("mock cluster");
            (m.bootstrap_servers(), Some(m))
        }
    };
    let k = Kafka {
        brokers,
        mock: None,
    };
    let t = Instant::now();
    let a = KafkaBus::connect_with(opts(&k, &topic, "a")).await.unwrap();
    let connected = t.elapsed();
    let b = KafkaBus::connect_with(opts(&k, &topic, "b")).await.unwrap();
    let mut rx = b.subscribe();
    let (x, y) = (user(), user());
    a.publish(&[event(x, y, 0), event(x, y, 1)]).await.unwrap();
    let got = collect(&mut rx, 2, Duration::from_secs(10)).await;
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), vec![0, 1]);
    println!("first connect (creating {topic}) took {connected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_events_reach_every_instance_in_order_per_followee() {
    let topic = topic();
    let k = kafka(&topic);
    let publisher = KafkaBus::connect_with(opts(&k, &topic, "a")).await.unwrap();
    let other = KafkaBus::connect_with(opts(&k, &topic, "b")).await.unwrap();
    let mut rx = other.subscribe();
    const FOLLOWEES: usize = 6;
    const PER: u64 = 40;
    let followees: Vec<UserId> = (0..FOLLOWEES).map(|_| user()).collect();
    let follower = user();
    // Per followee: followed at 0, unfollowed, followed at 2, unfollowed, ... interleaved
    // across followees; the unfollow of step s is told apart by its position only.
    let step = |followee: UserId, s: u64| match s % 2 {
        0 => Event::Followed {
            v: Event::VERSION,
            follower,
            followee,
            since: s,
        },
        _ => Event::Unfollowed {
            v: Event::VERSION,
            follower,
            followee,
        },
    };
    let all: Vec<Event> = (0..PER)
        .flat_map(|s| followees.iter().map(move |f| step(*f, s)))
        .collect();
    for batch in all.chunks(50) {
        publisher.publish(batch).await.expect("publish");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut by: HashMap<UserId, Vec<Event>> = HashMap::new();
    let mut n = 0;
    while n < all.len() {
        let m = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("every follow event within 30 s")
            .unwrap();
        if let BusMessage::Event { event } = m {
            let (Event::Followed { followee, .. } | Event::Unfollowed { followee, .. }) = &event
            else {
                continue;
            };
            by.entry(*followee).or_default().push(event.clone());
            n += 1;
        }
    }
    assert_eq!(by.len(), FOLLOWEES);
    for f in &followees {
        let want: Vec<Event> = (0..PER).map(|s| step(*f, s)).collect();
        assert_eq!(by[f], want, "followee {f}: in order, once");
    }
    drop(k.mock);
}
