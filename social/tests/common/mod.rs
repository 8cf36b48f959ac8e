//! Shared by the API tests: an in-process server on a loopback port, a raw HTTP/1.1 client, a
//! WebSocket client; and what the Kafka tests share.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as Ws;
use uuid::Uuid;
use zerocast_social::auth::Keys;
use zerocast_social::backends::Backends;
use zerocast_social::events::bus::BusMessage;
use zerocast_social::id::UserId;
use zerocast_social::messaging::model::{ConversationId, Event};
use zerocast_social::messaging::store::embedded::EmbeddedStore;
use zerocast_social::{SocialConfig, SocialServer};

pub const SECRET: &[u8] = b"test-secret-0123456789";

pub struct Api {
    pub addr: std::net::SocketAddr,
    pub keys: Keys,
    _dir: Option<TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A config for tests: rate limits out of the way.
pub fn test_config(dir: &std::path::Path) -> SocialConfig {
    let mut cfg = SocialConfig::new(dir.to_path_buf(), SECRET.to_vec());
    cfg.rate_per_sec = 1000.0;
    cfg.rate_burst = 1000.0;
    cfg
}

/// A server on the embedded defaults in a fresh temp dir (removed with the `Api`).
pub async fn start(tune: impl FnOnce(&mut SocialConfig)) -> Api {
    let dir = std::env::temp_dir().join(format!("zerocast-social-test-{}", Uuid::new_v4()));
    let mut cfg = test_config(&dir);
    tune(&mut cfg);
    let store = EmbeddedStore::open(&dir.join("messages"), cfg.node).unwrap();
    let mut api = start_with(cfg, Backends::embedded(store)).await;
    api._dir = Some(TempDir(dir));
    api
}

/// A server over the given backends on a loopback port.
pub async fn start_with(cfg: SocialConfig, backends: Backends) -> Api {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = SocialServer::new(cfg, backends);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(listener, async {
        let _ = rx.await;
    }));
    Api {
        addr,
        keys: Keys::new(SECRET),
        _dir: None,
        stop: Some(tx),
    }
}

/// A client of a server already listening on `addr` (started some other way), whose tokens
/// are signed with [`SECRET`].
pub fn client(addr: std::net::SocketAddr) -> Api {
    Api {
        addr,
        keys: Keys::new(SECRET),
        _dir: None,
        stop: None,
    }
}

pub fn user() -> UserId {
    UserId(Uuid::new_v4())
}

impl Api {
    pub fn token(&self, u: UserId) -> String {
        self.keys.issue(u, zerocast_social::now_ms() / 1000, 3600)
    }

    /// Reserves stream `name` for the holder of `token` (which makes its chat room).
    pub async fn reserve_stream(&self, token: &str, name: &str) {
        let body = serde_json::json!({ "name": name }).to_string();
        let (s, v) = self
            .call("POST", "/api/v1/streams", Some(token), Some(&body))
            .await;
        assert_eq!(s, 201, "reserving {name}: {v}");
    }

    /// One request on a fresh connection; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        let (status, head, rest) = self.raw(&req).await;
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(&rest)
        } else {
            rest
        };
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// One raw request on a fresh connection; returns the status, the head (lowercased) and
    /// the body as sent.
    pub async fn raw(&self, req: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    pub async fn send(
        &self,
        from: UserId,
        to: UserId,
        content: &str,
        client_id: Option<&str>,
    ) -> (u16, Value) {
        let body = json!({"to": to, "content": content, "client_id": client_id}).to_string();
        self.call(
            "POST",
            "/api/v1/messages",
            Some(&self.token(from)),
            Some(&body),
        )
        .await
    }

    pub async fn ws(&self, u: UserId, since: Option<&str>) -> Socket {
        let mut url = format!(
            "ws://{}/api/v1/ws?access_token={}",
            self.addr,
            self.token(u)
        );
        if let Some(s) = since {
            url.push_str(&format!("&since={s}"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Socket(ws)
    }
}

pub fn dechunk(mut s: &str) -> String {
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

pub struct Socket(
    pub tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
);

impl Socket {
    pub async fn send(&mut self, v: Value) {
        self.0.send(Ws::Text(v.to_string().into())).await.unwrap();
    }

    /// The next JSON text frame of type `kind` (others skipped), within 10 s.
    pub async fn expect(&mut self, kind: &str) -> Value {
        self.expect_within(kind, 10).await
    }

    /// The next JSON text frame of type `kind` (others skipped), within `secs`.
    pub async fn expect_within(&mut self, kind: &str, secs: u64) -> Value {
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

    /// The next `message` frame whose content is `content` (others skipped).
    pub async fn expect_message(&mut self, content: &str) -> Value {
        loop {
            let m = self.expect("message").await;
            if m["message"]["content"] == content {
                return m;
            }
        }
    }

    /// `message` frames for message `id` arriving within `window`.
    pub async fn count_message(&mut self, id: &str, window: Duration) -> usize {
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

    /// The close code the server sends, within `secs`.
    pub async fn closed_with(&mut self, secs: u64) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.0.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Ws::Close(f)))) => return f.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

impl Socket {
    pub async fn expect_any(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.0.next())
                .await
                .expect("a frame within 5 s")
                .expect("open")
                .expect("frame");
            if let Ws::Text(t) = m {
                return serde_json::from_str(&t).unwrap();
            }
        }
    }
}

impl Api {
    /// A request as `user` with an optional JSON body.
    pub async fn call_as(
        &self,
        method: &str,
        path: &str,
        user: UserId,
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        self.call(method, path, Some(&self.token(user)), body.as_deref())
            .await
    }
}

/// (conversation, seq) of a received durable event: the Kafka tests send each message's
/// sequence number as its content.
pub fn seq_of(m: &BusMessage) -> Option<(ConversationId, u64)> {
    match m {
        BusMessage::Event {
            event: Event::MessageCreated { message, .. },
        } => Some((message.conversation, message.content.parse().ok()?)),
        _ => None,
    }
}
