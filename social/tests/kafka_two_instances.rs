//! Two social server instances sharing one store and one Kafka topic deliver across instances.
//!
//! One `EmbeddedStore` (node 1 and node 2 handles, so each instance relays its own outbox),
//! two `SocialServer`s on their own loopback ports, each with its own `KafkaBus` on
//! librdkafka's mock cluster (or `ZEROCAST_KAFKA_BROKERS`, see `tests/kafka_bus.rs`). Users
//! connect by WebSocket to different instances.
#![cfg(feature = "kafka")]
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::{json, Value};
use uuid::Uuid;
use zerocast_social::backends::Backends;
use zerocast_social::events::kafka::KafkaBus;
use zerocast_social::id::UserId;
use zerocast_social::messaging::store::embedded::EmbeddedStore;

use common::Api;

async fn instance(
    dir: &std::path::Path,
    store: EmbeddedStore,
    node: u16,
    brokers: &str,
    topic: &str,
) -> Api {
    let mut cfg = common::test_config(dir);
    cfg.node = node;
    let group = format!("zerocast-{node}-{}", Uuid::new_v4());
    let bus = KafkaBus::connect(brokers, topic, &group)
        .await
        .expect("kafka bus");
    let mut backends = Backends::embedded(store);
    backends.bus = Arc::new(bus);
    common::start_with(cfg, backends).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_a_store_and_a_topic_deliver_across_instances() {
    let topic = format!("zerocast-test-{}", Uuid::new_v4());
    let mock: Option<MockCluster<'static, DefaultProducerContext>>;
    let brokers = match std::env::var("ZEROCAST_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => {
            mock = None;
            b
        }
        _ => {
            let m = MockCluster::new(3).expect("mock cluster");
            m.create_topic(&topic, 6, 3).expect("mock topic");
            let b = m.bootstrap_servers();
            mock = Some(m);
            b
        }
    };

    let dir = std::env::temp_dir().join(format!("zerocast-kafka-two-{}", Uuid::new_v4()));
    let _cleanup = common::TempDir(dir.clone());
    let store = EmbeddedStore::open(&dir.join("messages"), 1).unwrap();
    let one = instance(&dir, store.clone(), 1, &brokers, &topic).await;
    let two = instance(&dir, store.with_node(2), 2, &brokers, &topic).await;

    let (a, b) = (UserId(Uuid::new_v4()), UserId(Uuid::new_v4()));
    let mut wa = one.ws(a, None).await;
    let mut wb = two.ws(b, None).await;

    // A on instance 1 sends; A gets the ack, B gets the message on instance 2.
    let t = Instant::now();
    wa.send(json!({"type": "send", "to": b, "content": "hello from one", "client_id": "x"}))
        .await;
    let ack = wa.expect("ack").await;
    assert_eq!(ack["client_id"], "x");
    let id = ack["id"].as_str().unwrap().to_owned();
    let got = wb.expect_message("hello from one").await;
    let message_latency = t.elapsed();
    assert_eq!(got["message"]["id"], id);
    assert_eq!(got["message"]["content"], "hello from one");
    assert_eq!(got["message"]["from"], json!(a));

    // B reads on instance 2 (REST); the receipt reaches A on instance 1.
    let t = Instant::now();
    let (s, _) = two
        .call_as(
            "POST",
            &format!("/api/v1/conversations/{a}/read"),
            b,
            Some(json!({"up_to": id})),
        )
        .await;
    assert_eq!(s, 200);
    let receipt = wa.expect("read").await;
    let read_latency = t.elapsed();
    assert_eq!(receipt["reader"], json!(b));
    assert_eq!(receipt["up_to"], id);

    // B replies over REST on instance 2; A gets it on instance 1. Typing crosses too.
    let (s, sent) = two
        .call_as(
            "POST",
            "/api/v1/messages",
            b,
            Some(json!({"to": a, "content": "hello from two"})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {sent}");
    let reply = wa.expect_message("hello from two").await;
    assert_eq!(reply["message"]["from"], json!(b));
    wb.send(json!({"type": "typing", "to": a})).await;
    assert_eq!(wa.expect("typing").await["from"], json!(b));

    // Live chat: A reserves the stream "show" (its room is A's) on instance 1; B watches the
    // room on instance 2, A chats on instance 1.
    let (s, v) = one
        .call_as("POST", "/api/v1/streams", a, Some(json!({"name": "show"})))
        .await;
    assert_eq!(s, 201, "{v}");
    wb.send(json!({"type": "subscribe", "room": "show"})).await;
    wb.expect("subscribed").await;
    wa.send(json!({"type": "chat", "room": "show", "content": "gg", "client_id": "c"}))
        .await;
    wa.expect("chat_ack").await;
    assert_eq!(wb.expect("chat").await["message"]["content"], "gg");

    // Moderation is shared: A bans B on instance 1, and B cannot chat through instance 2 (the
    // ban is in the shared store; the bus tells instance 2 to drop its cached rules).
    let (s, v) = one
        .call_as(
            "POST",
            "/api/v1/rooms/show/bans",
            a,
            Some(json!({"user": b})),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let mut refused = Value::Null;
    for _ in 0..100 {
        let (s, v) = two
            .call_as(
                "POST",
                "/api/v1/rooms/show/messages",
                b,
                Some(json!({"content": "still here?"})),
            )
            .await;
        if s == 403 {
            refused = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused["error"]["code"], "banned", "{refused}");

    // Each event was pushed once: each instance relays only its own node's outbox.
    assert_eq!(wb.count_message(&id, Duration::from_millis(1500)).await, 0);

    println!(
        "across instances: message in {message_latency:?}, read receipt in {read_latency:?} ({})",
        if mock.is_some() {
            "mock cluster: an idle fetch waits fetch.wait.max.ms = 500 ms"
        } else {
            "real broker"
        }
    );
    drop(wa);
    drop(wb);
    drop(one);
    drop(two);
    drop(mock);
}
