//! `GET /api/v1/ws`: the WebSocket protocol (documented in `docs/social.md`).
//!
//! Two tasks per socket. The writer owns the sink: it replays what the client missed (`since`),
//! then writes frames from the connection's bounded queue, pings, closes with 4001 when the
//! queue overflowed and with 4003 when the token expires (a timer set at the upgrade). The
//! reader parses client frames ([`parse_client_frame`]) and answers through the same queue, so
//! acks and pushes keep one order.
//!
//! A socket opened without a token is anonymous and read-only: it may subscribe to rooms
//! (history on join, then live chat), unsubscribe and ping; any other frame gets a
//! `sign_in_required` error. It counts against the listener's connection caps (total and per
//! address) like any other, holds the same bounded queue, and replays no direct messages.
//!
//! Limits: a browser `Origin` must be in `cors_origins` (403 at the upgrade); a user has at
//! most `max_sockets_per_user` sockets (one more gets an error frame and close 4004), a socket
//! at most `max_subscriptions` rooms (one more gets an error frame); typing notices reach only
//! users the sender shares a conversation with, at most one per `typing_interval`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::error::ApiError;
use super::extract::bearer;
use super::state::AppState;
use crate::auth::Verified;
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
    /// The token expired: get a new one and reconnect with `since`.
    pub(crate) const TOKEN_EXPIRED: u16 = 4003;
    /// The user already has `max_sockets_per_user` sockets open.
    pub(crate) const TOO_MANY_SOCKETS: u16 = 4004;
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
    // Browsers always send `Origin` on a WebSocket upgrade (and cannot forge it); a client
    // without one is not a browser, and CORS does not concern it.
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !super::cors::origin_allowed(&st.config, origin.as_bytes(), &headers) {
            return super::cors::origin_refused();
        }
    }
    let Ok(Query(q)) = q else {
        return ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            "bad since or access_token",
        )
        .into_response();
    };
    let token = q.access_token.clone().or_else(|| bearer(&headers));
    let verified = match token.map(|t| st.keys.verify_full(&t, crate::now_ms() / 1000)) {
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => return ApiError::from(e).into_response(),
        // No token: an anonymous, read-only socket.
        None => None,
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
        .on_upgrade(move |socket| run(socket, st, verified, q.since))
}

/// When a token refused from `refused_from` (Unix seconds) stops being valid, on tokio's
/// clock; `None` when that is too far away to represent (the socket then never expires).
fn expiry(refused_from: u64) -> Option<tokio::time::Instant> {
    let now_ms = crate::now_ms();
    let left_ms = refused_from.saturating_mul(1000).saturating_sub(now_ms);
    tokio::time::Instant::now().checked_add(Duration::from_millis(left_ms))
}

async fn run(
    socket: WebSocket,
    st: Arc<AppState>,
    token: Option<Verified>,
    since: Option<MessageId>,
) {
    // An anonymous socket is registered under an id of its own, which no message addresses.
    let anonymous = token.is_none();
    let user = token
        .as_ref()
        .map_or_else(|| UserId(uuid::Uuid::new_v4()), |t| t.user);
    let cap = st.config.max_sockets_per_user;
    let (conn, rx) = match st
        .conns
        .register_capped(user, st.config.outbound_queue, cap)
    {
        Ok(c) => c,
        Err(max) => {
            tracing::info!(%user, "websocket refused: {max} sockets open (max-sockets-per-user)");
            let mut socket = socket;
            let f = json!({"type": "error", "code": "too_many_sockets",
                "message": format!("at most {max} sockets per user; close another first")});
            let _ = tokio::time::timeout(st.config.write_timeout, async {
                socket.send(WsMessage::Text(f.to_string().into())).await?;
                socket
                    .send(close_frame(close::TOO_MANY_SOCKETS, "too many sockets"))
                    .await
            })
            .await;
            return;
        }
    };
    let rooms = Arc::new(Mutex::new(HashSet::new()));
    let (sink, stream) = socket.split();
    let last_seen = Arc::new(std::sync::Mutex::new(Instant::now()));
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<(u16, &'static str)>();
    let who = Who {
        user,
        since: since.filter(|_| !anonymous),
        expires: token.and_then(|t| expiry(t.refused_from)),
    };
    let mut writer = tokio::spawn(write_loop(
        sink,
        st.clone(),
        who,
        rx,
        close_rx,
        last_seen.clone(),
    ));
    let reader = read_loop(stream, &st, &conn, anonymous, rooms.clone(), last_seen);
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

/// Whose socket the writer serves: the user, where its replay starts, when its token expires.
struct Who {
    user: UserId,
    since: Option<MessageId>,
    expires: Option<tokio::time::Instant>,
}

async fn write_loop(
    sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    st: Arc<AppState>,
    Who {
        user,
        since,
        expires,
    }: Who,
    mut q: ConnRx,
    mut close_rx: tokio::sync::oneshot::Receiver<(u16, &'static str)>,
    last_seen: Arc<std::sync::Mutex<Instant>>,
) {
    let expired = async {
        match expires {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let mut expired = std::pin::pin!(expired);
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
            () = &mut expired => {
                tracing::debug!(%user, "websocket closed: token expired");
                let f = close_frame(close::TOKEN_EXPIRED, "token expired: reconnect with a new token and since");
                let _ = sink.send(f).await;
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

/// Parses one client text frame (the WebSocket protocol's only parser of peer bytes; public
/// for the fuzz target). An error's text is what the client gets in its `bad_frame` error.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, serde_json::Error> {
    serde_json::from_str(text)
}

/// Frames a client may send (see `docs/social.md`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ClientFrame {
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
    anonymous: bool,
    rooms: Arc<Mutex<HashSet<String>>>,
    last_seen: Arc<std::sync::Mutex<Instant>>,
) -> Option<(u16, &'static str)> {
    let mut bad = 0u32;
    let mut local = Local {
        anonymous,
        ..Local::default()
    };
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
        let frame = match parse_client_frame(&text) {
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
        handle(st, conn, &rooms, &mut local, frame).await;
    }
}

fn reply(conn: &Conn, v: serde_json::Value) {
    conn.send(&Frame::new(&v));
}

fn error_frame(e: impl Into<ApiError>, client_id: Option<&str>) -> serde_json::Value {
    let e = e.into();
    let mut f =
        json!({"type": "error", "code": e.code(), "message": e.message(), "client_id": client_id});
    if let Some(ms) = e.retry_after_ms() {
        f["retry_after_ms"] = json!(ms);
    }
    f
}

/// What one socket's reader remembers between frames.
#[derive(Debug, Default)]
struct Local {
    /// Opened without a token: it may only subscribe, unsubscribe and ping.
    anonymous: bool,
    /// Users this socket's user was found to share a conversation with (typing goes to them).
    partners: HashSet<UserId>,
    /// Whether the subscription cap was already logged for this socket (one line per socket).
    subs_cap_logged: bool,
}

/// Partners remembered per socket, at most (then the cache starts over).
const MAX_PARTNERS_CACHED: usize = 1024;

async fn handle(
    st: &AppState,
    conn: &Conn,
    rooms: &Mutex<HashSet<String>>,
    local: &mut Local,
    frame: ClientFrame,
) {
    let me = conn.user;
    if local.anonymous
        && !matches!(
            frame,
            ClientFrame::Subscribe { .. } | ClientFrame::Unsubscribe { .. } | ClientFrame::Ping
        )
    {
        let client_id = match &frame {
            ClientFrame::Send { client_id, .. } | ClientFrame::Chat { client_id, .. } => {
                client_id.clone()
            }
            _ => None,
        };
        reply(
            conn,
            json!({"type": "error", "code": "sign_in_required", "client_id": client_id,
                "message": "this socket has no token: it may read rooms; sign in to send"}),
        );
        return;
    }
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
            let to = UserId(to);
            let interval = st.config.typing_interval;
            if !st.conns.typing_allowed(me, Instant::now(), interval) {
                let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
                reply(
                    conn,
                    json!({"type": "error", "code": "typing_rate_limited",
                        "message": format!("at most one typing notice per {ms} ms"),
                        "retry_after_ms": ms}),
                );
                return;
            }
            if !local.partners.contains(&to) {
                match st.messaging.are_partners(me, to).await {
                    Ok(true) => {
                        if local.partners.len() >= MAX_PARTNERS_CACHED {
                            local.partners.clear();
                        }
                        local.partners.insert(to);
                    }
                    Ok(false) => {
                        st.conns
                            .refused
                            .typing_stranger
                            .fetch_add(1, Ordering::Relaxed);
                        reply(
                            conn,
                            json!({"type": "error", "code": "not_a_partner",
                                "message": "typing notices go only to users you share a conversation with"}),
                        );
                        return;
                    }
                    Err(e) => {
                        reply(conn, error_frame(e, None));
                        return;
                    }
                }
            }
            // Ephemeral and best effort: never let a slow bus stall this socket's reads.
            let bus = st.bus.clone();
            tokio::spawn(async move {
                let _ = bus
                    .publish_ephemeral(BusMessage::Typing { from: me, to })
                    .await;
            });
        }
        ClientFrame::Subscribe { room }
            if at_subscription_cap(st, conn, rooms, local, &room).await =>
        {
            reply(
                conn,
                json!({"type": "error", "code": "too_many_subscriptions", "room": room,
                    "message": format!("at most {} rooms per socket; unsubscribe first", st.config.max_subscriptions)}),
            );
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
        } => match st
            .chat
            .post(me, &room, content, client_id.clone(), crate::now_ms())
            .await
        {
            Ok(a) => reply(
                conn,
                json!({"type": "chat_ack", "client_id": client_id, "id": a.message.id, "room": room}),
            ),
            Err(e) => reply(conn, error_frame(e, client_id.as_deref())),
        },
        ClientFrame::Ping => reply(conn, json!({"type": "pong"})),
    }
}

/// Whether subscribing to `room` would take this socket over `max_subscriptions` (a room it
/// is already in does not count); counts and logs (once per socket) a refusal.
async fn at_subscription_cap(
    st: &AppState,
    conn: &Conn,
    rooms: &Mutex<HashSet<String>>,
    local: &mut Local,
    room: &str,
) -> bool {
    let max = st.config.max_subscriptions;
    let rooms = rooms.lock().await;
    if rooms.len() < max || rooms.contains(room) {
        return false;
    }
    st.conns
        .refused
        .subscriptions
        .fetch_add(1, Ordering::Relaxed);
    if !local.subs_cap_logged {
        local.subs_cap_logged = true;
        tracing::info!(user = %conn.user, "websocket subscribe refused: {max} rooms (max-subscriptions)");
    }
    true
}
