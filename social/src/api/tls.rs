//! The API over TLS (HTTPS and WSS): a listener whose accepted connections are completed
//! TLS handshakes, for `axum::serve`.
//!
//! The certificate comes from the caller as a `rustls::ServerConfig` (the `zerocast` binary
//! builds it from its one certificate store, reloaded on SIGHUP); this crate reads no files.
//! Handshakes run in tasks of their own, so a client that stalls mid-handshake holds one task
//! until [`HANDSHAKE`] passes, never the accept loop; at most [`MAX_HANDSHAKES`] run at once
//! (further connections are closed at once), which bounds the memory spent before a client
//! has proven anything.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A TLS handshake must complete within this long.
pub const HANDSHAKE: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at most.
pub const MAX_HANDSHAKES: usize = 512;

/// Accepts TCP connections and hands out those that completed a TLS handshake.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` (call inside a tokio runtime).
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("social API (TLS) accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "social API: {MAX_HANDSHAKES} TLS handshakes in progress, connection closed");
                    continue;
                };
                // Small frames (acks, pushes) must not wait for Nagle.
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(%peer, "social API: TLS handshake failed: {e}")
                        }
                        Err(_) => tracing::warn!(
                            %peer,
                            "social API: TLS handshake timed out after {} s",
                            HANDSHAKE.as_secs()
                        ),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
