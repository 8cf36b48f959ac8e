//! `GET /api/v1/ws`: the WebSocket protocol (documented in `docs/social.md`).
//!
//! Two tasks per socket. The writer owns the sink: it replays what the client missed (`since`),
//! then writes frames from the connection's bounded queue, pings, and closes with 4001 when the
//! queue overflowed. The reader parses client frames and answers through the same queue, so
//! acks and pushes keep one order.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::error::ApiError;
use super::extract::bearer;
use super::state::AppState;
use crate::auth::AuthError;
use crate::events::bus::BusMessage;
use crate::id::{MessageId, UserId};
use crate::messaging::store::Appended;
use crate::realtime::{Conn, ConnRx, Frame};

/// Close codes (also in docs/social.md).
pub(crate) mod close {
    /// Normal closure.
    pub(crate) const NORMAL: u16 = 1000;
    /// Server shutting down.
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// Too many invalid frames.
    pub(crate) const POLICY: u16 = 1008;
    /// A frame over the size limit.
    pub(crate) const TOO_BIG: u16 = 1009;
    /// The client did not keep up with its outbound queue; reconnect with `since`.
    pub(crate) const SLOW: u16 = 4001;
    /// No frame or pong within the idle timeout.
    pub(crate) const IDLE: u16 = 4002;
}

/// Replay pages while recovering.
const REPLAY_PAGE: usize = 500;
/// Invalid frames tolerated before the socket is closed with 1008.
const MAX_BAD_FRAMES: u32 = 20;

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    since: Option<MessageId>,
}

pub(crate) async fn upgrade(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(Query(q)) = q else {
        return ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            "bad since or access_token",
        )
        .into_response();
    };
    let token = q.access_token.clone().or_else(|| bearer(&headers, None));
    let user = match token.map(|t| st.keys.verify(&t, crate::now_ms() / 1000)) {
        Some(Ok(u)) => u,
        Some(Err(e)) => return ApiError::from(e).into_response(),
        None => return ApiError::from(AuthError::Missing).into_response(),
    };
    let max = st.config.max_frame_bytes;
    // Per-socket buffers sized to the frame limit, not tungstenite's 128 KiB default (which
    // dominated the memory of thousands of idle sockets). A frame just over the limit is read
    // whole and answered with 1009; a far larger one may leave unread bytes, and the close then
    // reaches the peer as a TCP reset.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(2 * max)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| run(socket, st, user, q.since))
}

async fn run(socket: WebSocket, st: Arc<AppState>, user: UserId, since: Option<MessageId>) {
    let (conn, rx) = st.conns.register(user, st.config.outbound_queue);
    let rooms = Arc::new(Mutex::new(HashSet::new()));
    let (sink, stream) = socket.split();
    let last_seen = Arc::new(std::sync::Mutex::new(Instant::now()));
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<(u16, &'static str)>();
    let mut writer = tokio::spawn(write_loop(
        sink,
        st.clone(),
        user,
        since,
        rx,
        close_rx,
        last_seen.clone(),
    ));
    let reader = read_loop(stream, &st, &conn, rooms.clone(), last_seen);
    tokio::select! {
        why = reader => {
            if let Some(why) = why {
                let _ = close_tx.send(why);
            } else {
                drop(close_tx);
            }
            // Give the writer a moment to flush the close frame.
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
            writer.abort();
        }
        _ = &mut writer => {}
    }
    let rooms = rooms.lock().await.clone();
    st.conns.unregister(&conn, &rooms);
}

async fn write_loop(
    sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    st: Arc<AppState>,
    user: UserId,
    since: Option<MessageId>,
    mut q: ConnRx,
    mut close_rx: tokio::sync::oneshot::Receiver<(u16, &'static str)>,
    last_seen: Arc<std::sync::Mutex<Instant>>,
) {
    let mut sink = Sink {
        inner: sink,
        timeout: st.config.write_timeout,
    };
    // Recovery: everything after `since`, in order, then the live stream (minus duplicates).
    let mut replayed = since.unwrap_or_default();
    if let Some(mut after) = since {
        loop {
            let page = match st.messaging.store().since(user, after, REPLAY_PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("replay for {user}: {e}");
                    let _ = sink.send(close_frame(1011, "replay failed; retry")).await;
                    return;
                }
            };
            for m in &page {
                let f = json!({"type": "message", "message": m, "replay": true}).to_string();
                if !sink.send(WsMessage::Text(f.into())).await {
                    return;
                }
            }
            match page.last() {
                Some(m) if page.len() == REPLAY_PAGE => after = m.id,
                Some(m) => {
                    replayed = m.id;
                    break;
                }
                None => break,
            }
        }
        let f = json!({"type": "live", "last": replayed}).to_string();
        if !sink.send(WsMessage::Text(f.into())).await {
            return;
        }
    }
    let mut ping = tokio::time::interval(st.config.ping_interval);
    ping.tick().await;
    loop {
        tokio::select! {
            f = q.rx.recv() => {
                let Some(f) = f else { return };
                if f.created.is_some_and(|id| id <= replayed) {
                    continue;
                }
                if !sink.send(WsMessage::Text(Utf8Bytes::from(&*f.text))).await {
                    return;
                }
            }
            _ = q.kick.notified() => {
                if q.slow.load(Ordering::Relaxed) {
                    st.conns.slow_closes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%user, "websocket closed: outbound queue full (slow consumer)");
                    sink.close_slow().await;
                    return;
                }
            }
            _ = ping.tick() => {
                let idle = last_seen.lock().map(|t| t.elapsed()).unwrap_or_default();
                if idle > st.config.idle_timeout {
                    let _ = sink.send(close_frame(close::IDLE, "idle timeout")).await;
                    return;
                }
                if !sink.send(WsMessage::Ping(Default::default())).await {
                    return;
                }
            }
            why = &mut close_rx => {
                let (code, reason) = why.unwrap_or((close::NORMAL, ""));
                let _ = sink.send(close_frame(code, reason)).await;
                return;
            }
            _ = st.stop.notified() => {
                let _ = sink.send(close_frame(close::GOING_AWAY, "server shutting down")).await;
                return;
            }
        }
    }
}

/// The socket's sink with the write deadline: a client that does not read is dropped.
struct Sink {
    inner: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    timeout: Duration,
}

/// How long a close frame may wait behind the data already queued to a slow client.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

impl Sink {
    async fn send(&mut self, m: WsMessage) -> bool {
        match tokio::time::timeout(self.timeout, self.inner.send(m)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                // The client does not read: tell it why (after what is already queued) and go.
                self.close_slow().await;
                false
            }
        }
    }

    async fn close_slow(&mut self) {
        let f = close_frame(close::SLOW, "slow consumer: reconnect with since");
        let _ = tokio::time::timeout(CLOSE_GRACE, self.inner.send(f)).await;
    }
}

fn close_frame(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Frames a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Send {
        to: uuid::Uuid,
        content: String,
        #[serde(default)]
        client_id: Option<String>,
    },
    Read {
        peer: uuid::Uuid,
        up_to: MessageId,
    },
    Typing {
        to: uuid::Uuid,
    },
    Subscribe {
        room: String,
    },
    Unsubscribe {
        room: String,
    },
    Chat {
        room: String,
        content: String,
        #[serde(default)]
        client_id: Option<String>,
    },
    Ping,
}

/// Reads until the socket ends; returns the close to send, if the server closes it.
async fn read_loop(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    st: &AppState,
    conn: &Conn,
    rooms: Arc<Mutex<HashSet<String>>>,
    last_seen: Arc<std::sync::Mutex<Instant>>,
) -> Option<(u16, &'static str)> {
    let mut bad = 0u32;
    loop {
        let msg = match tokio::time::timeout(st.config.idle_timeout, stream.next()).await {
            Err(_) => return Some((close::IDLE, "idle timeout")),
            Ok(None) => return None,
            Ok(Some(Err(e))) => {
                let text = e.to_string();
                tracing::debug!(user = %conn.user, "websocket read: {text}");
                return if text.contains("too long")
                    || text.contains("Space limit")
                    || text.contains("size")
                {
                    Some((close::TOO_BIG, "frame too large"))
                } else {
                    None
                };
            }
            Ok(Some(Ok(m))) => m,
        };
        if let Ok(mut t) = last_seen.lock() {
            *t = Instant::now();
        }
        let text = match msg {
            WsMessage::Text(t) => t,
            WsMessage::Close(_) => return None,
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            WsMessage::Binary(_) => {
                bad += 1;
                reply(
                    conn,
                    json!({"type": "error", "code": "bad_frame", "message": "binary frames are not supported"}),
                );
                if bad > MAX_BAD_FRAMES {
                    return Some((close::POLICY, "too many invalid frames"));
                }
                continue;
            }
        };
        let frame: ClientFrame = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                bad += 1;
                reply(
                    conn,
                    json!({"type": "error", "code": "bad_frame", "message": e.to_string()}),
                );
                if bad > MAX_BAD_FRAMES {
                    return Some((close::POLICY, "too many invalid frames"));
                }
                continue;
            }
        };
        handle(st, conn, &rooms, frame).await;
    }
}

fn reply(conn: &Conn, v: serde_json::Value) {
    conn.send(&Frame::new(&v));
}

fn error_frame(e: impl Into<ApiError>, client_id: Option<&str>) -> serde_json::Value {
    let e = e.into();
    json!({"type": "error", "code": e.code(), "message": e.message(), "client_id": client_id})
}

async fn handle(st: &AppState, conn: &Conn, rooms: &Mutex<HashSet<String>>, frame: ClientFrame) {
    let me = conn.user;
    match frame {
        ClientFrame::Send {
            to,
            content,
            client_id,
        } => {
            let cid = client_id.clone();
            match st.messaging.send(me, UserId(to), content, client_id).await {
                Ok(a) => {
                    let m = a.message();
                    reply(
                        conn,
                        json!({
                            "type": "ack",
                            "client_id": cid,
                            "id": m.id,
                            "conversation": m.conversation,
                            "duplicate": matches!(a, Appended::Duplicate(_)),
                        }),
                    );
                }
                Err(e) => reply(conn, error_frame(e, cid.as_deref())),
            }
        }
        ClientFrame::Read { peer, up_to } => {
            match st.messaging.mark_read(me, UserId(peer), up_to).await {
                Ok(marker) => reply(
                    conn,
                    json!({"type": "read_ack", "peer": peer, "up_to": marker}),
                ),
                Err(e) => reply(conn, error_frame(e, None)),
            }
        }
        ClientFrame::Typing { to } => {
            // Ephemeral and best effort: never let a slow bus stall this socket's reads.
            let bus = st.bus.clone();
            tokio::spawn(async move {
                let _ = bus
                    .publish_ephemeral(BusMessage::Typing {
                        from: me,
                        to: UserId(to),
                    })
                    .await;
            });
        }
        ClientFrame::Subscribe { room } => match st.chat.history(&room).await {
            Ok(history) => {
                st.conns.join(&room, conn);
                rooms.lock().await.insert(room.clone());
                let settings = st.chat.settings(&room).await.unwrap_or_default();
                reply(
                    conn,
                    json!({"type": "subscribed", "room": room, "history": history, "settings": settings}),
                );
            }
            Err(e) => reply(conn, error_frame(e, None)),
        },
        ClientFrame::Unsubscribe { room } => {
            st.conns.leave(&room, conn);
            rooms.lock().await.remove(&room);
            reply(conn, json!({"type": "unsubscribed", "room": room}));
        }
        ClientFrame::Chat {
            room,
            content,
            client_id,
        } => match st.chat.post(me, &room, content, crate::now_ms()).await {
            Ok(m) => reply(
                conn,
                json!({"type": "chat_ack", "client_id": client_id, "id": m.id, "room": room}),
            ),
            Err(e) => reply(conn, error_frame(e, client_id.as_deref())),
        },
        ClientFrame::Ping => reply(conn, json!({"type": "pong"})),
    }
}
