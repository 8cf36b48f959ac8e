//! The HTTP API (`/api/v1`): the router and one instance's server ([`SocialServer`]), one file
//! per resource ([`messages`], [`rooms`], [`graph`]), the WebSocket protocol ([`ws`]), errors
//! ([`error`]), extractors ([`extract`]), `/metrics` and the OpenAPI document.
//!
//! Handlers stay thin: extract, call one service of the domain ([`crate::messaging`],
//! [`crate::chat`], [`crate::graph`]), map the result. Nothing in the domain imports this
//! module.

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::auth::Keys;
use crate::backends::{open_backends, Backends};
use crate::chat::rooms::Rooms;
use crate::chat::service::Chat;
use crate::config::SocialConfig;
use crate::id::IdGenerator;
use crate::limits::Limits;
use crate::messaging::service::Messaging;
use crate::realtime::{fanout, Connections};

pub mod error;
pub mod extract;
mod graph;
mod messages;
mod metrics;
pub mod openapi;
mod rooms;
pub mod state;
pub mod tls;
mod ws;

pub use error::ApiError;
pub use state::AppState;

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
        // One id generator and one limiter per instance, shared by DMs and chat, REST and
        // WebSocket.
        let ids = Arc::new(IdGenerator::new(config.node));
        let limits = Arc::new(Limits::new(
            config.rate_per_sec,
            config.rate_burst,
            config.max_message_bytes,
        ));
        let state = AppState {
            keys: Keys::new(&config.jwt_secret),
            messaging: Messaging::new(store, ids.clone(), limits.clone(), Arc::new(Notify::new())),
            chat: Chat::new(Rooms::new(config.room_history), bus.clone(), ids, limits),
            graph,
            cache,
            bus,
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
            .merge(graph::routes())
            .fallback(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
            })
            .layer(DefaultBodyLimit::max(64 * 1024))
            .with_state(self.state.clone())
    }

    /// Starts the outbox relay and the bus consumer. Call once per instance.
    pub fn start_background(&self) {
        let st = self.state.clone();
        tokio::spawn(crate::events::relay::run_relay(
            st.messaging.store().clone(),
            st.bus.clone(),
            st.config.node,
            st.messaging.relay_wake().clone(),
            st.stop.clone(),
        ));
        let st = self.state.clone();
        let mut rx = st.bus.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(m) => fanout::deliver(&st.conns, &st.chat, m),
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
        let plain = axum::serve(listener, app.clone())
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future();
        let r = match tls {
            Some(tls) => {
                let secure = axum::serve(tls, app)
                    .with_graceful_shutdown(stopped(stop_rx))
                    .into_future();
                let (a, b) = tokio::join!(plain, secure);
                a.and(b)
            }
            None => plain.await,
        };
        stop.notify_waiters();
        r
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
