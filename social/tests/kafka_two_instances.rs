//! Two social server instances sharing one store and one Kafka topic deliver across instances.
//!
//! One `EmbeddedStore` (node 1 and node 2 handles, so each instance relays its own outbox),
//! two `SocialServer`s on their own loopback ports, each with its own `KafkaBus` on
//! librdkafka's mock cluster (or `ZEROCAST_KAFKA_BROKERS`, see `tests/kafka_bus.rs`). Users
//! connect by WebSocket to different instances.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as Ws;
use uuid::Uuid;
use zerocast_social::auth::Keys;
use zerocast_social::kafka::KafkaBus;
use zerocast_social::model::UserId;
use zerocast_social::server::Backends;
use zerocast_social::store::embedded::EmbeddedStore;
use zerocast_social::{SocialConfig, SocialServer};

const SECRET: &[u8] = b"test-secret-0123456789";

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Instance {
    addr: std::net::SocketAddr,
    keys: Keys,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn instance(
    dir: &std::path::Path,
    store: EmbeddedStore,
    node: u16,
    brokers: &str,
    topic: &str,
) -> Instance {
    let mut cfg = SocialConfig::new(dir.to_path_buf(), SECRET.to_vec());
    cfg.node = node;
    cfg.rate_per_sec = 1000.0;
    cfg.rate_burst = 1000.0;
    let group = format!("zerocast-{node}-{}", Uuid::new_v4());
    let bus = KafkaBus::connect(brokers, topic, &group)
        .await
        .expect("kafka bus");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut backends = Backends::embedded(store);
    backends.bus = Arc::new(bus);
    let server = SocialServer::new(cfg, backends);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(listener, async {
        let _ = rx.await;
    }));
    Instance {
        addr,
        keys: Keys::new(SECRET),
        _stop: tx,
    }
}

impl Instance {
    fn token(&self, u: UserId) -> String {
        self.keys.issue(u, zerocast_social::now_ms() / 1000, 3600)
    }

    /// One request on a fresh connection; status and JSON body.
    async fn call(&self, method: &str, path: &str, user: UserId, body: &str) -> (u16, Value) {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.token(user),
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_owned()
        };
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    async fn ws(&self, u: UserId) -> Socket {
        let url = format!(
            "ws://{}/api/v1/ws?access_token={}",
            self.addr,
            self.token(u)
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Socket(ws)
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

struct Socket(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>);

impl Socket {
    async fn send(&mut self, v: Value) {
        self.0.send(Ws::Text(v.to_string().into())).await.unwrap();
    }

    /// The next JSON frame of type `kind` (others skipped), within `secs`.
    async fn expect_within(&mut self, kind: &str, secs: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let m = tokio::time::timeout_at(deadline, self.0.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind} frame within {secs} s"))
                .expect("socket open")
                .expect("frame");
            if let Ws::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == kind {
                    return v;
                }
            }
        }
    }

    async fn expect(&mut self, kind: &str) -> Value {
        self.expect_within(kind, 10).await
    }

    /// The next `message` frame whose content is `content` (others skipped).
    async fn expect_message(&mut self, content: &str) -> Value {
        loop {
            let m = self.expect("message").await;
            if m["message"]["content"] == content {
                return m;
            }
        }
    }

    /// `message` frames for message `id` arriving within `window`.
    async fn count_message(&mut self, id: &str, window: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + window;
        let mut n = 0;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, self.0.next()).await {
            if let Ws::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                n += usize::from(v["type"] == "message" && v["message"]["id"] == id);
            }
        }
        n
    }
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
    let _cleanup = TempDir(dir.clone());
    let store = EmbeddedStore::open(&dir.join("messages"), 1).unwrap();
    let one = instance(&dir, store.clone(), 1, &brokers, &topic).await;
    let two = instance(&dir, store.with_node(2), 2, &brokers, &topic).await;

    let (a, b) = (UserId(Uuid::new_v4()), UserId(Uuid::new_v4()));
    let mut wa = one.ws(a).await;
    let mut wb = two.ws(b).await;

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
        .call(
            "POST",
            &format!("/api/v1/conversations/{a}/read"),
            b,
            &json!({"up_to": id}).to_string(),
        )
        .await;
    assert_eq!(s, 200);
    let receipt = wa.expect("read").await;
    let read_latency = t.elapsed();
    assert_eq!(receipt["reader"], json!(b));
    assert_eq!(receipt["up_to"], id);

    // B replies over REST on instance 2; A gets it on instance 1. Typing crosses too.
    let (s, sent) = two
        .call(
            "POST",
            "/api/v1/messages",
            b,
            &json!({"to": a, "content": "hello from two"}).to_string(),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {sent}");
    let reply = wa.expect_message("hello from two").await;
    assert_eq!(reply["message"]["from"], json!(b));
    wb.send(json!({"type": "typing", "to": a})).await;
    assert_eq!(wa.expect("typing").await["from"], json!(b));

    // Live chat: B watches a room on instance 2, A chats on instance 1.
    wb.send(json!({"type": "subscribe", "room": "show"})).await;
    wb.expect("subscribed").await;
    wa.send(json!({"type": "chat", "room": "show", "content": "gg", "client_id": "c"}))
        .await;
    wa.expect("chat_ack").await;
    assert_eq!(wb.expect("chat").await["message"]["content"], "gg");

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
