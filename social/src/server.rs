//! The HTTP API (`/api/v1`): REST routes, the WebSocket upgrade, and the background tasks
//! (outbox relay, bus consumer) of one server instance.

use std::future::Future;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::auth::{AuthError, Keys};
use crate::bus::{BusMessage, EventBus, InProcessBus};
use crate::cache::moka::{MokaCache, MokaConfig};
use crate::cache::redis::{RedisCache, RedisConfig};
use crate::cache::{CachedGraph, FollowerCache};
use crate::chat::{ChatError, ChatMessage, Rooms};
use crate::config::SocialConfig;
use crate::graph::GraphStore;
use crate::hub::{Frame, Hub};
use crate::id::{IdGenerator, MessageId};
use crate::model::{ConversationId, Event, NewMessage, Page, UserId};
use crate::ratelimit::RateLimiter;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Appended, Store, StoreError};

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    /// Settings.
    pub config: SocialConfig,
    /// Token keys.
    pub keys: Keys,
    /// Messages and outbox.
    pub store: Arc<dyn Store>,
    /// Events between instances.
    pub bus: Arc<dyn EventBus>,
    /// The follow graph (behind its cache).
    pub graph: Arc<dyn GraphStore>,
    /// The follower cache in front of `graph` (for its counters).
    pub cache: Arc<dyn FollowerCache>,
    /// This instance's sockets.
    pub hub: Hub,
    /// Live-chat rooms.
    pub rooms: Rooms,
    /// Message ids.
    pub ids: IdGenerator,
    /// Per-user send limits.
    pub limiter: RateLimiter,
    /// Wakes the outbox relay after a write.
    pub relay_wake: Arc<Notify>,
    /// Stops background tasks.
    pub stop: Arc<Notify>,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl std::fmt::Debug for dyn GraphStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GraphStore")
    }
}

impl std::fmt::Debug for dyn EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventBus")
    }
}

/// An error as the API returns it: a status and `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_ms: Option<u64>,
}

impl ApiError {
    /// An error with this status, machine code and human message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        if let Some(ms) = self.retry_after_ms {
            body["error"]["retry_after_ms"] = json!(ms);
        }
        let mut r = (self.status, Json(body)).into_response();
        if let Some(ms) = self.retry_after_ms {
            if let Ok(v) = header::HeaderValue::from_str(&ms.div_ceil(1000).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => {
                Self::new(StatusCode::NOT_FOUND, "not_found", "no such message")
            }
            StoreError::Forbidden => Self::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only the sender may change a message",
            ),
            other => {
                tracing::error!("store: {other}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage",
                    "storage unavailable",
                )
            }
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        let (status, code) = match e {
            ChatError::SlowMode(_) => (StatusCode::TOO_MANY_REQUESTS, "slow_mode"),
            ChatError::Banned(_) => (StatusCode::FORBIDDEN, "banned"),
            ChatError::NotOwner => (StatusCode::FORBIDDEN, "not_owner"),
            ChatError::BadName => (StatusCode::BAD_REQUEST, "bad_room"),
        };
        let mut err = Self::new(status, code, e.to_string());
        if let ChatError::SlowMode(ms) = e {
            err.retry_after_ms = Some(ms);
        }
        err
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub UserId);

/// The bearer token of a request, from `Authorization: Bearer` or the `access_token` query
/// parameter (browsers cannot set headers on WebSocket requests).
pub fn bearer(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_owned());
        }
    }
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("access_token=").map(str::to_owned))
}

impl FromRequestParts<Arc<AppState>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers, parts.uri.query()).ok_or(AuthError::Missing)?;
        Ok(Auth(st.keys.verify(&token, crate::now_ms() / 1000)?))
    }
}

/// `Json<T>` whose rejections are API errors with JSON bodies.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::bad("invalid_body", e.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::bad("invalid_json", e.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_type",
                "expected Content-Type: application/json",
            )),
            Err(e) => Err(ApiError::new(e.status(), "invalid_body", e.body_text())),
        }
    }
}

/// A body or query field that is a user id.
fn user_id(s: &str) -> Result<UserId, ApiError> {
    Uuid::parse_str(s)
        .map(UserId)
        .map_err(|_| ApiError::bad("invalid_user", format!("{s:?} is not a user id")))
}

/// One server instance: state plus background tasks.
#[derive(Debug, Clone)]
pub struct SocialServer {
    state: Arc<AppState>,
}

impl SocialServer {
    /// An instance over its backends.
    pub fn new(config: SocialConfig, backends: Backends) -> Self {
        let Backends {
            store,
            bus,
            graph,
            cache,
        } = backends;
        let state = AppState {
            keys: Keys::new(&config.jwt_secret),
            hub: Hub::new(),
            rooms: Rooms::new(config.room_history),
            ids: IdGenerator::new(config.node),
            limiter: RateLimiter::new(config.rate_per_sec, config.rate_burst),
            relay_wake: Arc::new(Notify::new()),
            stop: Arc::new(Notify::new()),
            store,
            bus,
            graph,
            cache,
            config,
        };
        Self {
            state: Arc::new(state),
        }
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/api/v1/health",
                get(|| async { Json(json!({"ok": true})) }),
            )
            .route("/api/v1/openapi.json", get(crate::openapi::document))
            .route("/metrics", get(metrics))
            .route("/api/v1/messages", post(send))
            .route(
                "/api/v1/messages/{id}",
                get(get_message).patch(edit).delete(delete),
            )
            .route("/api/v1/conversations", get(conversations))
            .route("/api/v1/conversations/{peer}/messages", get(history))
            .route("/api/v1/conversations/{peer}/read", post(mark_read))
            .route("/api/v1/unread", get(unread))
            .route("/api/v1/rooms/{room}", get(room_settings))
            .route(
                "/api/v1/rooms/{room}/messages",
                get(room_history).post(room_post),
            )
            .route("/api/v1/rooms/{room}/claim", post(room_claim))
            .route("/api/v1/rooms/{room}/slow-mode", put(room_slow_mode))
            .route("/api/v1/rooms/{room}/bans", post(room_ban))
            .route(
                "/api/v1/rooms/{room}/bans/{user}",
                axum::routing::delete(room_unban),
            )
            .route("/api/v1/ws", get(crate::ws::upgrade))
            .merge(crate::graph_api::routes())
            .fallback(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
            })
            .layer(DefaultBodyLimit::max(64 * 1024))
            .with_state(self.state.clone())
    }

    /// Starts the outbox relay and the bus consumer. Call once per instance.
    pub fn start_background(&self) {
        let st = self.state.clone();
        tokio::spawn(crate::bus::run_relay(
            st.store.clone(),
            st.bus.clone(),
            st.config.node,
            st.relay_wake.clone(),
            st.stop.clone(),
        ));
        let st = self.state.clone();
        let mut rx = st.bus.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(m) => deliver(&st, m),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("bus consumer lagged: {n} messages not pushed (clients recover with since)");
                        }
                        Err(_) => return,
                    },
                    _ = st.stop.notified() => return,
                }
            }
        });
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.start_background();
        let stop = self.state.stop.clone();
        let app = self.router();
        // Small frames (acks, pushes) must not wait for Nagle behind the peer's delayed ACK.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        stop.notify_waiters();
        r
    }
}

/// The backends of one instance.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Messages and their outbox.
    pub store: Arc<dyn Store>,
    /// Events between instances.
    pub bus: Arc<dyn EventBus>,
    /// The follow graph, already wrapped in its cache.
    pub graph: Arc<dyn GraphStore>,
    /// That cache.
    pub cache: Arc<dyn FollowerCache>,
}

impl Backends {
    /// The embedded defaults over one embedded store: messages and graph in `store`, the
    /// in-process bus, an in-process (moka) follower cache.
    pub fn embedded(store: EmbeddedStore) -> Self {
        let graph: Arc<dyn GraphStore> = Arc::new(store.clone());
        let cache: Arc<dyn FollowerCache> = Arc::new(MokaCache::new(MokaConfig::default()));
        Self {
            store: Arc::new(store),
            bus: Arc::new(InProcessBus::default()),
            graph: Arc::new(CachedGraph::new(graph, cache.clone())),
            cache,
        }
    }
}

/// Opens the configured backends: ScyllaDB when `scylla_uri` is set, else the embedded store
/// under `data_dir/messages` (which also holds the follow graph unless `ZEROCAST_NEO4J_URI`
/// selects Neo4j); Kafka when `kafka_brokers`
/// is set, else the in-process bus; Redis for the follower cache when `redis_url` is set, else
/// an in-process cache.
pub async fn open_backends(config: &SocialConfig) -> std::io::Result<Backends> {
    use crate::store::scylla::{ScyllaOptions, ScyllaStore, ScyllaUri, DEFAULT_KEYSPACE};
    let io = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let dir = config.data_dir.join("messages");
    // Opened once, and only if a role uses it (messages or the graph).
    let mut embedded: Option<EmbeddedStore> = None;
    let mut open_embedded = || -> std::io::Result<EmbeddedStore> {
        if let Some(e) = &embedded {
            return Ok(e.clone());
        }
        let e = EmbeddedStore::open(&dir, config.node).map_err(|e| io(&e))?;
        embedded = Some(e.clone());
        Ok(e)
    };
    let store: Arc<dyn Store> = match config.scylla_uri.as_deref().map(str::trim) {
        Some(uri) if !uri.is_empty() => {
            let uri = ScyllaUri::parse(uri).map_err(|e| io(&e))?;
            let opts = ScyllaOptions::from_env().map_err(|e| io(&e))?;
            let s = ScyllaStore::connect_with(&uri, DEFAULT_KEYSPACE, config.node, opts)
                .await
                .map_err(|e| io(&e))?;
            tracing::info!("message store: ScyllaDB");
            Arc::new(s)
        }
        _ => {
            tracing::info!(dir = %dir.display(), "message store: embedded");
            Arc::new(open_embedded()?)
        }
    };
    let bus: Arc<dyn EventBus> = match config.kafka_brokers.as_deref().map(str::trim) {
        Some(brokers) if !brokers.is_empty() => {
            let group = format!("zerocast-{}-{}", config.node, Uuid::new_v4());
            let b = crate::kafka::KafkaBus::connect(brokers, &config.kafka_topic, &group)
                .await
                .map_err(|e| io(&e))?;
            tracing::info!(topic = %config.kafka_topic, "event bus: Kafka");
            Arc::new(b)
        }
        _ => Arc::new(InProcessBus::default()),
    };
    let graph: Arc<dyn GraphStore> =
        match crate::graph::neo4j::Neo4jSettings::from_env().map_err(|e| io(&e))? {
            Some(s) => {
                let g = s.connect().await.map_err(|e| io(&e))?;
                tracing::info!("follow graph: Neo4j");
                Arc::new(g)
            }
            None => Arc::new(open_embedded()?),
        };
    let cache: Arc<dyn FollowerCache> = match config.redis_url.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => {
            let c = RedisCache::connect(url, RedisConfig::default())
                .await
                .map_err(|e| io(&e))?;
            tracing::info!("follower cache: Redis with a near-cache");
            Arc::new(c)
        }
        _ => Arc::new(MokaCache::new(MokaConfig::default())),
    };
    Ok(Backends {
        store,
        bus,
        graph: Arc::new(CachedGraph::new(graph, cache.clone())),
        cache,
    })
}

/// Opens the configured backends, listens on `config.api` and serves until `shutdown`.
pub async fn serve(
    config: SocialConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let backends = open_backends(&config).await?;
    let listener = TcpListener::bind(config.api).await?;
    tracing::info!(api = %config.api, "social API listening");
    SocialServer::new(config, backends)
        .run(listener, shutdown)
        .await
}

/// Pushes one bus message to this instance's sockets.
pub(crate) fn deliver(st: &AppState, m: BusMessage) {
    match m {
        BusMessage::Event { event } => {
            let (body, users, created) = match &event {
                Event::MessageCreated { message, .. } => (
                    json!({"type": "message", "message": message}),
                    [message.from, message.to],
                    Some(message.id),
                ),
                Event::MessageEdited { message, .. } => (
                    json!({"type": "edited", "message": message}),
                    [message.from, message.to],
                    None,
                ),
                Event::MessageDeleted { message, .. } => (
                    json!({"type": "deleted", "message": message}),
                    [message.from, message.to],
                    None,
                ),
                Event::Read {
                    conversation,
                    reader,
                    up_to,
                    ..
                } => (
                    json!({"type": "read", "conversation": conversation, "reader": reader, "up_to": up_to}),
                    [conversation.a, conversation.b],
                    None,
                ),
            };
            let mut frame = Frame::new(&body);
            frame.created = created;
            st.hub.to_user(users[0], &frame);
            if users[1] != users[0] {
                st.hub.to_user(users[1], &frame);
            }
        }
        BusMessage::Typing { from, to } => {
            st.hub
                .to_user(to, &Frame::new(&json!({"type": "typing", "from": from})));
        }
        BusMessage::Chat { message } => {
            st.rooms.record(&message);
            let room = message.room.clone();
            st.hub.to_room(
                &room,
                &Frame::new(&json!({"type": "chat", "message": message})),
            );
        }
    }
}

// ---- the send path, shared by REST and WebSocket ----

/// Validates, rate-limits and stores a message; wakes the relay. Returns the stored message.
pub(crate) async fn send_message(
    st: &AppState,
    from: UserId,
    to: UserId,
    content: String,
    client_id: Option<String>,
) -> Result<Appended, ApiError> {
    if to == from {
        return Err(ApiError::bad(
            "invalid_recipient",
            "cannot send a message to yourself",
        ));
    }
    check_content(st, &content)?;
    if let Some(c) = &client_id {
        if c.is_empty() || c.len() > 128 {
            return Err(ApiError::bad(
                "invalid_client_id",
                "client_id must be 1 to 128 bytes",
            ));
        }
    }
    if let Err(ms) = st.limiter.take(from, crate::now_ms()) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many messages; retry in {ms} ms"),
        );
        e.retry_after_ms = Some(ms);
        return Err(e);
    }
    let appended = st
        .store
        .append(NewMessage {
            id: st.ids.next(),
            from,
            to,
            content,
            client_id,
        })
        .await?;
    if matches!(appended, Appended::Created(_)) {
        st.relay_wake.notify_one();
    }
    Ok(appended)
}

pub(crate) fn check_content(st: &AppState, content: &str) -> Result<(), ApiError> {
    if content.is_empty() {
        return Err(ApiError::bad("empty_message", "content is empty"));
    }
    if content.len() > st.config.max_message_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
            format!(
                "content is {} bytes; the limit is {}",
                content.len(),
                st.config.max_message_bytes
            ),
        ));
    }
    Ok(())
}

/// Posts a live-chat message (shared by REST and WebSocket).
pub(crate) async fn post_chat(
    st: &AppState,
    from: UserId,
    room: &str,
    content: String,
) -> Result<ChatMessage, ApiError> {
    check_content(st, &content)?;
    let now = crate::now_ms();
    if let Err(ms) = st.limiter.take(from, now) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many messages",
        );
        e.retry_after_ms = Some(ms);
        return Err(e);
    }
    st.rooms.admit(room, from, now)?;
    let message = ChatMessage {
        id: st.ids.next(),
        room: room.to_owned(),
        from,
        content,
        at: now,
    };
    st.bus
        .publish_ephemeral(BusMessage::Chat {
            message: message.clone(),
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "bus", e.to_string()))?;
    Ok(message)
}

// ---- REST handlers ----

/// Prometheus text: sockets, slow-consumer closes, follower-cache counters.
async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(4096);
    let _ = writeln!(out, "# TYPE zerocast_ws_connections gauge");
    let _ = writeln!(out, "zerocast_ws_connections {}", st.hub.connections());
    let _ = writeln!(out, "# TYPE zerocast_ws_slow_closes_total counter");
    let _ = writeln!(
        out,
        "zerocast_ws_slow_closes_total {}",
        st.hub
            .slow_closes
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    st.cache.stats().render_prometheus(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[derive(Debug, Deserialize)]
struct SendBody {
    to: String,
    content: String,
    #[serde(default)]
    client_id: Option<String>,
}

async fn send(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Body(b): Body<SendBody>,
) -> Result<Response, ApiError> {
    let to = user_id(&b.to)?;
    let appended = send_message(&st, me, to, b.content, b.client_id).await?;
    let status = match appended {
        Appended::Created(_) => StatusCode::CREATED,
        Appended::Duplicate(_) => StatusCode::OK,
    };
    Ok((status, Json(json!({ "message": appended.message() }))).into_response())
}

fn message_id(s: &str) -> Result<MessageId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad("invalid_id", format!("{s:?} is not a message id")))
}

async fn get_message(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = st.store.get(me, message_id(&id)?).await?;
    Ok(Json(json!({ "message": m })))
}

#[derive(Debug, Deserialize)]
struct EditBody {
    content: String,
}

async fn edit(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(id): Path<String>,
    Body(b): Body<EditBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_content(&st, &b.content)?;
    let m = st
        .store
        .edit(me, message_id(&id)?, b.content, crate::now_ms())
        .await?;
    st.relay_wake.notify_one();
    Ok(Json(json!({ "message": m })))
}

async fn delete(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = st
        .store
        .delete(me, message_id(&id)?, crate::now_ms())
        .await?;
    st.relay_wake.notify_one();
    Ok(Json(json!({ "message": m })))
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    #[serde(default)]
    limit: Option<usize>,
}

async fn conversations(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    q: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 100);
    let list = st.store.conversations(me, limit).await?;
    Ok(Json(json!({ "conversations": list })))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn history(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(peer): Path<String>,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("invalid_query", e.body_text()))?;
    let peer = user_id(&peer)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad("invalid_limit", "limit must be 1 to 100"));
    }
    let page = Page {
        before: q.before.as_deref().map(message_id).transpose()?,
        after: q.after.as_deref().map(message_id).transpose()?,
        limit,
    };
    // Only the caller's own conversations exist for the caller: the id is derived from both.
    let conv = ConversationId::between(me, peer);
    let messages = st.store.history(conv, page).await?;
    let next = if messages.len() == limit {
        messages.last().map(|m| m.id.to_string())
    } else {
        None
    };
    Ok(Json(json!({ "messages": messages, "next_before": next })))
}

#[derive(Debug, Deserialize)]
struct ReadBody {
    up_to: MessageId,
}

pub(crate) async fn do_mark_read(
    st: &AppState,
    me: UserId,
    peer: UserId,
    up_to: MessageId,
) -> Result<MessageId, ApiError> {
    let conv = ConversationId::between(me, peer);
    // The marker may only name a message of this conversation.
    let m = st.store.get(me, up_to).await?;
    if m.conversation != conv {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such message in this conversation",
        ));
    }
    let marker = st.store.mark_read(me, conv, up_to).await?;
    st.relay_wake.notify_one();
    Ok(marker)
}

async fn mark_read(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(peer): Path<String>,
    Body(b): Body<ReadBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let peer = user_id(&peer)?;
    let marker = do_mark_read(&st, me, peer, b.up_to).await?;
    Ok(Json(json!({ "read_up_to": marker })))
}

async fn unread(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::to_value(st.store.unread(me).await?).unwrap_or_default(),
    ))
}

async fn room_settings(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        json!({ "room": room, "settings": st.rooms.settings(&room)? }),
    ))
}

async fn room_history(
    State(st): State<Arc<AppState>>,
    Auth(_): Auth,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        json!({ "room": room, "messages": st.rooms.history(&room)? }),
    ))
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    content: String,
}

async fn room_post(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(room): Path<String>,
    Body(b): Body<ChatBody>,
) -> Result<Response, ApiError> {
    let m = post_chat(&st, me, &room, b.content).await?;
    Ok((StatusCode::CREATED, Json(json!({ "message": m }))).into_response())
}

async fn room_claim(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        json!({ "room": room, "settings": st.rooms.claim(&room, me)? }),
    ))
}

#[derive(Debug, Deserialize)]
struct SlowBody {
    seconds: u64,
}

async fn room_slow_mode(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(room): Path<String>,
    Body(b): Body<SlowBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if b.seconds > 3600 {
        return Err(ApiError::bad("invalid_slow_mode", "at most 3600 seconds"));
    }
    Ok(Json(
        json!({ "room": room, "settings": st.rooms.set_slow_mode(&room, me, b.seconds)? }),
    ))
}

#[derive(Debug, Deserialize)]
struct BanBody {
    user: String,
    /// A timeout of this many seconds; absent for a ban.
    #[serde(default)]
    seconds: Option<u64>,
}

async fn room_ban(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path(room): Path<String>,
    Body(b): Body<BanBody>,
) -> Result<StatusCode, ApiError> {
    let user = user_id(&b.user)?;
    let until = b
        .seconds
        .map(|s| crate::now_ms().saturating_add(s.saturating_mul(1000)));
    st.rooms.ban(&room, me, user, until)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn room_unban(
    State(st): State<Arc<AppState>>,
    Auth(me): Auth,
    Path((room, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    st.rooms.unban(&room, me, user_id(&user)?)?;
    Ok(StatusCode::NO_CONTENT)
}
