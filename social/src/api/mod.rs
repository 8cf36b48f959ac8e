//! The HTTP API (`/api/v1`): the router and one instance's server ([`SocialServer`]), one file
//! per resource ([`messages`], [`rooms`], [`graph`]), the WebSocket protocol ([`ws`]), errors
//! ([`error`]), extractors ([`extract`]), `/metrics` and the OpenAPI document.
//!
//! Handlers stay thin: extract, call one service of the domain ([`crate::messaging`],
//! [`crate::chat`], [`crate::graph`]), map the result. Nothing in the domain imports this
//! module.

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::backends::{open_backends, Backends};
use crate::channels::secrets::PlaybackKeys;
use crate::channels::Channels;
use crate::chat::service::{Chat, LiveCheck};
use crate::config::SocialConfig;
use crate::id::IdGenerator;
use crate::limits::Limits;
use crate::messaging::service::Messaging;
use crate::realtime::{fanout, Connections};

mod caps;
pub mod cors;
pub mod error;
pub mod extract;
mod graph;
mod messages;
mod metrics;
pub mod openapi;
mod rooms;
pub mod state;
mod streams;
pub mod tls;
pub mod ws;

pub use error::ApiError;
pub use state::AppState;

/// One server instance: state plus background tasks.
#[derive(Debug, Clone)]
pub struct SocialServer {
    state: Arc<AppState>,
}

impl SocialServer {
    /// An instance over its backends, with no media plane beside it (chat rooms exist for
    /// reserved stream names only).
    pub fn new(config: SocialConfig, backends: Backends) -> Self {
        Self::with_live(config, backends, Arc::new(|_: &str| false))
    }

    /// An instance over its backends; `live` tells which stream names are live on the media
    /// plane (their chat rooms exist even if nobody reserved the name).
    pub fn with_live(config: SocialConfig, backends: Backends, live: LiveCheck) -> Self {
        let Backends {
            store,
            chat,
            channels,
            bus,
            graph,
            cache,
            graph_outbox,
        } = backends;
        // The graph's events go to the messages' outbox unless it has its own.
        let relay_wake = Arc::new(Notify::new());
        let graph_relay_wake = match graph_outbox {
            Some(_) => Arc::new(Notify::new()),
            None => relay_wake.clone(),
        };
        // One id generator and one limiter per instance, shared by DMs and chat, REST and
        // WebSocket.
        let ids = Arc::new(IdGenerator::new(config.node));
        let limits = Arc::new(Limits::new(
            config.rate_per_sec,
            config.rate_burst,
            config.max_message_bytes,
        ));
        let channels = Channels::new(
            channels,
            PlaybackKeys::from_secret(&config.jwt_secret),
            config.max_streams_per_user,
        );
        let state = AppState {
            keys: config.keys(),
            messaging: Messaging::new(store, ids.clone(), limits.clone(), relay_wake),
            chat: Chat::new(
                chat,
                config.room_history,
                channels.clone(),
                live,
                bus.clone(),
                ids,
                limits,
            ),
            channels,
            graph,
            cache,
            bus,
            graph_outbox,
            graph_relay_wake,
            conns: Connections::new(),
            stop: Arc::new(Notify::new()),
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
            .route("/api/v1/openapi.json", get(openapi::document))
            .route("/metrics", get(metrics::render))
            .route("/api/v1/ws", get(ws::upgrade))
            .merge(messages::routes())
            .merge(rooms::routes())
            .merge(streams::routes())
            .merge(graph::routes())
            .fallback(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
            })
            .layer(DefaultBodyLimit::max(64 * 1024))
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                cors::layer,
            ))
            .with_state(self.state.clone())
    }

    /// Starts the outbox relays (messages, and the graph's own if any), the bus consumer and
    /// the room sweeper. Call once per instance. Each stops when the server does (see
    /// [`until_stopped`]).
    pub fn start_background(&self) {
        let st = self.state.clone();
        tokio::spawn(until_stopped(self.state.stop.clone(), async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let conns = &st.conns;
                st.chat
                    .sweep(crate::now_ms(), |room| conns.room_has_members(room))
                    .await;
            }
        }));
        let st = self.state.clone();
        tokio::spawn(until_stopped(
            self.state.stop.clone(),
            crate::events::relay::run_relay(
                st.messaging.store().clone(),
                st.bus.clone(),
                st.config.node,
                st.messaging.relay_wake().clone(),
            ),
        ));
        if let Some(outbox) = &st.graph_outbox {
            tokio::spawn(until_stopped(
                self.state.stop.clone(),
                crate::events::relay::run_relay(
                    outbox.clone(),
                    st.bus.clone(),
                    st.config.node,
                    st.graph_relay_wake.clone(),
                ),
            ));
        }
        let st = self.state.clone();
        let mut rx = st.bus.subscribe();
        tokio::spawn(until_stopped(self.state.stop.clone(), async move {
            loop {
                match rx.recv().await {
                    Ok(m) => fanout::deliver(&st.conns, &st.chat, m),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("bus consumer lagged: {n} messages not pushed (clients recover with since)");
                    }
                    Err(_) => return,
                }
            }
        }));
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.run_with_tls(listener, None, shutdown).await
    }

    /// Serves on `listener`, and over TLS on `tls` when given, until `shutdown` completes;
    /// both finish their in-flight requests.
    pub async fn run_with_tls(
        self,
        listener: TcpListener,
        tls: Option<tls::TlsListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.start_background();
        let stop = self.state.stop.clone();
        let app = self.router();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // Small frames (acks, pushes) must not wait for Nagle behind the peer's delayed ACK.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let limits = (
            self.state.config.header_read_timeout,
            self.state.config.conn_idle_timeout,
        );
        // One pair of caps over both ports.
        let caps = caps::ConnCaps::new(
            self.state.config.max_connections,
            self.state.config.max_connections_per_ip,
        );
        let plain = serve_http1(
            listener,
            app.clone(),
            limits,
            caps.clone(),
            stopped(stop_rx.clone()),
        );
        let r = match tls {
            Some(tls) => {
                let secure = serve_http1(tls, app, limits, caps, stopped(stop_rx));
                let (a, b) = tokio::join!(plain, secure);
                a.and(b)
            }
            None => plain.await,
        };
        stop.notify_waiters();
        r
    }
}

/// How long in-flight requests get to finish after shutdown starts.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves HTTP/1.1 (with WebSocket upgrades) on `listener` until `shutdown`, then lets
/// in-flight requests finish for up to [`DRAIN`].
///
/// Like `axum::serve`, plus the two deadlines `(header_read, idle)`: axum serves without a
/// timer, so hyper's header-read timeout never applied and a connection that sent nothing
/// stayed open forever (descriptor exhaustion). hyper's deadline starts at a head's first
/// byte; [`IdleIo`] closes connections on which nothing moves at all.
async fn serve_http1<L>(
    mut listener: L,
    app: Router,
    (header_read, idle): (std::time::Duration, std::time::Duration),
    caps: Arc<caps::ConnCaps>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut refusals = caps::EverySecond::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let slot = match caps.acquire(addr.ip()) {
            Ok(slot) => slot,
            Err(hit) => {
                // Closed before hyper reads a byte; one line per second at most.
                if refusals.admit() {
                    tracing::warn!(peer = %addr, "social API: {hit:?} connection cap reached: connection closed");
                }
                drop(io);
                continue;
            }
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        // The slot lives in the connection's IO, so an upgraded connection (a WebSocket, which
        // hyper hands over and stops serving) keeps its place under the caps until it closes.
        let io = TokioIo::new(IdleIo::new(io, idle, slot));
        let conn = builder.serve_connection_with_upgrades(io, svc);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("social API connection: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "social API: connections still open {} s after shutdown",
            DRAIN.as_secs()
        );
    }
    Ok(())
}

/// A connection's IO that fails once nothing was read or written for `limit`, and holds the
/// connection's place under the caps for as long as it lives.
struct IdleIo<T> {
    inner: T,
    limit: std::time::Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    _slot: caps::ConnSlot,
}

impl<T> IdleIo<T> {
    fn new(inner: T, limit: std::time::Duration, slot: caps::ConnSlot) -> Self {
        Self {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            _slot: slot,
        }
    }

    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.limit;
        self.deadline.as_mut().reset(at);
    }

    /// `Ready(error)` when the deadline passed (registers the waker otherwise).
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Error> {
        self.deadline
            .as_mut()
            .poll(cx)
            .map(|()| std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle"))
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.expired(cx).map(Err),
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.expired(cx).map(Err),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
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

/// Runs `task` until it ends or `stop` fires, then drops it (and what it holds: the relay's
/// bus). `Notify::notify_waiters` (the server's stop) wakes only tasks waiting at that moment;
/// a task busy elsewhere when it fires (the relay inside a publish that waits out a bus outage)
/// would miss it and run on, so the wait is registered (`enable`) before `task` first runs.
async fn until_stopped(stop: Arc<Notify>, task: impl Future<Output = ()>) {
    let stopped = stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    tokio::select! {
        _ = stopped => {}
        _ = task => {}
    }
}
