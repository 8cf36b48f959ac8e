//! HTTP/3 through quinn + h3, on a tokio runtime of its own (quinn drives its UDP socket with
//! tokio) with one thread per worker core, reading the same hub snapshots as the monoio
//! workers. quinn's endpoint task only routes datagrams; each connection's packet protection,
//! congestion control and sends run in that connection's own task, so connections spread over
//! the threads.
//!
//! The router is the HTTP/1.1 one ([`super::route`]) with tokio's timer. Complete media goes
//! to `send_data` as the shared `Bytes`; a part still being written is sent chunk by chunk as
//! it arrives, like the other protocols.
//!
//! QUIC limits (docs/operations.md): [`MAX_CONNECTIONS`] open connections (further ones are
//! refused), a stateless retry to validate the address of any new client once
//! [`RETRY_ABOVE`] connections are open (a flood of spoofed Initials then costs one packet
//! each), [`MAX_STREAMS`] concurrent request streams per connection, [`IDLE`] idle timeout,
//! [`HANDSHAKE`] to complete a handshake and a 16 KiB header section.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::response::{http_head, preflight, Body, Response, PART_STALL};
use super::{route, timeout, Get, Rt, ViewerSlot};
use crate::background::Background;
use crate::metrics::Limit;
use crate::tls::CertStore;
use crate::Ctx;

/// Open QUIC connections at most; more are refused.
pub(crate) const MAX_CONNECTIONS: usize = 10_000;
/// Above this many open connections, a new client must prove its address (stateless retry).
pub(crate) const RETRY_ABOVE: usize = 1_000;
/// Concurrent request streams per connection.
pub(crate) const MAX_STREAMS: u32 = 128;
/// A connection with no traffic for this long is closed.
pub(crate) const IDLE: Duration = Duration::from_secs(30);
/// A handshake must complete within this long.
pub(crate) const HANDSHAKE: Duration = Duration::from_secs(10);
/// Largest request header section, bytes.
const MAX_FIELD_SECTION: u64 = 16 * 1024;
/// UDP receive and send buffers asked for. The default receive buffer (about 200 KiB)
/// overflows with a few hundred connections: every request, ACK and handshake of every client
/// lands on this one socket, and each drop costs a retransmission and a congestion-window cut
/// (a 1,000-viewer run dropped 250,000 datagrams). The kernel caps the value at
/// `net.core.rmem_max` / `wmem_max`; a smaller result is logged once.
const SOCKET_BUFFER: usize = 4 << 20;

/// tokio's timer for the router.
#[derive(Debug)]
struct Tokio;

impl Rt for Tokio {
    fn sleep(d: Duration) -> impl std::future::Future<Output = ()> {
        tokio::time::sleep(d)
    }
}

/// Binds UDP `ctx.config.https` and serves HTTP/3 on it from a new thread.
pub(crate) fn start(ctx: Arc<Ctx>, certs: &Arc<CertStore>) -> Result<Background, String> {
    let crypto = certs.quic_config()?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(MAX_STREAMS.into())
        // The client's control and QPACK streams, plus slack.
        .max_concurrent_uni_streams(8u32.into())
        .max_idle_timeout(Some(
            IDLE.try_into().map_err(|e| format!("idle timeout: {e}"))?,
        ));
    server.transport_config(Arc::new(transport));
    server
        .max_incoming(MAX_CONNECTIONS)
        .incoming_buffer_size(64 * 1024)
        .incoming_buffer_size_total(16 * 1024 * 1024);
    let addr = ctx.config.https;
    let threads = ctx.config.worker_count();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<SocketAddr, String>>();
    let thread = std::thread::Builder::new()
        .name("zerocast-h3".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("zerocast-h3")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let endpoint = match bind_udp(addr).and_then(|socket| {
                    quinn::Endpoint::new(
                        quinn::EndpointConfig::default(),
                        Some(server),
                        socket,
                        Arc::new(quinn::TokioRuntime),
                    )
                }) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("binding UDP {addr}: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(endpoint.local_addr().unwrap_or(addr)));
                accept_loop(&endpoint, ctx, stop_rx).await;
                endpoint.close(0u32.into(), b"shutting down");
                // Give the close frames a moment to leave.
                let _ =
                    tokio::time::timeout(Duration::from_millis(300), endpoint.wait_idle()).await;
            });
        })
        .map_err(|e| e.to_string())?;
    match ready_rx.recv() {
        Ok(Ok(addr)) => {
            tracing::info!(udp = %addr, "HTTP/3 listening");
            Ok(Background::new(stop_tx, thread))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the HTTP/3 thread ended at start".into()),
    }
}

/// A UDP socket bound to `addr`, with [`SOCKET_BUFFER`] buffers as far as the kernel allows.
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use std::os::fd::AsRawFd;
    let socket = std::net::UdpSocket::bind(addr)?;
    let fd = socket.as_raw_fd();
    for (opt, name) in [(libc::SO_RCVBUF, "rmem_max"), (libc::SO_SNDBUF, "wmem_max")] {
        let want = SOCKET_BUFFER as libc::c_int;
        let mut got: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: setsockopt/getsockopt on an open socket with pointers to c_ints and their
        // sizes, all living in this frame.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                std::ptr::from_ref(&want).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                std::ptr::from_mut(&mut got).cast(),
                &mut len,
            );
        }
        // Linux reports twice the usable size it granted.
        if (got as usize) / 2 < SOCKET_BUFFER {
            tracing::warn!(
                "HTTP/3: UDP socket buffer is {} KiB, not the {} KiB asked for; raise net.core.{name} (sysctl) for many viewers",
                got / 2 / 1024,
                SOCKET_BUFFER / 1024
            );
        }
    }
    Ok(socket)
}

async fn accept_loop(
    endpoint: &quinn::Endpoint,
    ctx: Arc<Ctx>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
            _ = &mut stop => return,
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            tracing::warn!(peer = %incoming.remote_address(), "h3: connection refused, {MAX_CONNECTIONS} open");
            incoming.refuse();
            continue;
        }
        if open.load(Ordering::Relaxed) >= RETRY_ABOVE && !incoming.remote_address_validated() {
            let _ = incoming.retry();
            continue;
        }
        let ctx = ctx.clone();
        let open = open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            if let Err(e) = serve_conn(incoming, ctx).await {
                tracing::debug!(%peer, "h3 connection: {e}");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn serve_conn(incoming: quinn::Incoming, ctx: Arc<Ctx>) -> Result<(), String> {
    let conn = match tokio::time::timeout(HANDSHAKE, incoming).await {
        Ok(r) => r.map_err(|e| format!("handshake: {e}"))?,
        Err(_) => return Err("handshake timed out".into()),
    };
    // The per-address cap shared with the TCP listeners, counted once the handshake proved
    // the address (an Initial packet's source can be spoofed; a completed handshake cannot).
    let Some(_slot) = ctx.per_ip.acquire(conn.remote_address().ip()) else {
        ctx.metrics.count_limit(Limit::MaxConnectionsPerIp);
        conn.close(0x0107u32.into(), b"too many connections from this address");
        return Err(format!(
            "max-connections-per-ip ({}) reached: connection closed",
            ctx.config.max_connections_per_ip
        ));
    };
    let mut h3 = h3::server::builder()
        .max_field_section_size(MAX_FIELD_SECTION)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
        .map_err(|e| e.to_string())?;
    let viewing = Arc::new(ViewerSlot::default());
    let seen = ctx.shutdown_signal.seq();
    loop {
        if ctx.shutting_down() {
            let _ = h3.shutdown(0).await;
            return Ok(());
        }
        let next = tokio::select! {
            r = h3.accept() => r,
            _ = ctx.shutdown_signal.changed(seen) => {
                let _ = h3.shutdown(0).await;
                return Ok(());
            }
        };
        let resolver = match next {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let ctx = ctx.clone();
        let viewing = viewing.clone();
        tokio::spawn(async move {
            match resolver.resolve_request().await {
                Ok((req, stream)) => {
                    if let Err(e) = answer(&ctx, req, stream, &viewing).await {
                        tracing::debug!("h3 request: {e}");
                    }
                }
                Err(e) => tracing::debug!("h3 request head: {e}"),
            }
        });
    }
}

type RequestStream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Sends `bufs` as DATA frames, counting their bytes.
async fn send_all(
    ctx: &Ctx,
    stream: &mut RequestStream,
    bufs: Vec<Bytes>,
) -> Result<(), h3::error::StreamError> {
    for b in bufs {
        ctx.metrics.add_bytes_out(b.len() as u64);
        stream.send_data(b).await?;
    }
    Ok(())
}

async fn answer(
    ctx: &Ctx,
    req: http::Request<()>,
    mut stream: RequestStream,
    viewing: &ViewerSlot,
) -> Result<(), h3::error::StreamError> {
    let started = Instant::now();
    let head = req.method() == http::Method::HEAD;
    let resp = match *req.method() {
        http::Method::GET | http::Method::HEAD => {
            route::<Tokio>(ctx, &Get::of(&req), viewing).await
        }
        http::Method::OPTIONS => preflight(req.uri().path()),
        _ => Response::text(405, "method not allowed"),
    }
    .for_origin(
        &ctx.config.media_api_cors,
        req.headers()
            .get(http::header::ORIGIN)
            .map(|o| o.as_bytes()),
    );
    ctx.metrics.observe(resp.kind, started.elapsed());
    stream.send_response(http_head(ctx, &resp)).await?;
    let mut resp = resp;
    let body = std::mem::replace(&mut resp.body, Body::Empty);
    if !head {
        match body {
            Body::Empty => {}
            Body::Full(bufs) => send_all(ctx, &mut stream, bufs).await?,
            Body::File(f) => send_all(ctx, &mut stream, f.bufs()).await?,
            Body::Live(mut live) => {
                let s = live.stream().clone();
                loop {
                    let seen = s.chunks.seq();
                    let (chunks, complete) = live.take();
                    for b in chunks {
                        ctx.metrics.add_bytes_out(b.len() as u64);
                        stream.send_data(b).await?;
                    }
                    if complete {
                        break;
                    }
                    if timeout::<Tokio, _>(PART_STALL, s.chunks.changed(seen))
                        .await
                        .is_none()
                    {
                        stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                        return Ok(());
                    }
                }
            }
        }
    }
    stream.finish().await
}
