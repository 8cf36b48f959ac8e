//! The thread-per-core runtime: one pinned monoio worker per core, each with its own
//! SO_REUSEPORT listeners, and a main thread that waits for SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use monoio::io::IntoPollIo;
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use zerocast_social::channels::secrets::PlaybackKeys;

use crate::config::{Config, Driver};
use crate::metrics::Limit;
use crate::publish::{ChannelsHandle, Mode as PublishMode};
use crate::tls::{CertStore, ALPN_HTTP1, ALPN_HTTPS};
use crate::transport::Tcp;
use crate::Ctx;

/// The server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// io_uring was asked for and the kernel refuses it.
    #[error(
        "io_uring is not available on this kernel (or is blocked by seccomp); use --driver epoll"
    )]
    NoUring,
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Building a runtime or a thread failed.
    #[error("starting worker: {0}")]
    Worker(std::io::Error),
    /// Installing the signal mask failed.
    #[error("signals: {0}")]
    Signals(std::io::Error),
    /// The social API could not start.
    #[error("social API: {0}")]
    Social(String),
    /// The social API's stores (or other backends) refused to open; `zerocast serve` keeps
    /// the media plane running without the social API.
    #[error("social API: {0}")]
    SocialBackends(String),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The HTTP/3 endpoint could not start.
    #[error("HTTP/3: {0}")]
    Quic(String),
    /// A setting cannot be used (e.g. a webhook host that does not resolve).
    #[error("{0}")]
    Config(String),
}

/// A TLS handshake must complete within this long (a client that stops mid-handshake is
/// dropped).
pub const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// The TLS acceptors of the media listeners, sharing one certificate store.
#[derive(Clone)]
struct TlsAcceptors {
    /// HTTPS: ALPN `h2`, then `http/1.1`.
    https: tokio_rustls::TlsAcceptor,
    /// RTMPS: no ALPN.
    rtmps: tokio_rustls::TlsAcceptor,
}

impl TlsAcceptors {
    fn new(certs: &Arc<CertStore>) -> Self {
        Self {
            https: certs.server_config(ALPN_HTTPS).into(),
            rtmps: certs.server_config(&[]).into(),
        }
    }
}

/// What a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listen {
    Rtmp,
    Http,
    Rtmps,
    Https,
}

/// The driver actually used.
pub fn resolve_driver(requested: Driver) -> Result<Driver, ServeError> {
    let uring = monoio::utils::detect_uring();
    match requested {
        Driver::Auto if uring => Ok(Driver::Uring),
        Driver::Auto => Ok(Driver::Epoll),
        Driver::Uring if !uring => Err(ServeError::NoUring),
        d => Ok(d),
    }
}

/// The social API running on its own small tokio runtime; `stop` is graceful (in-flight
/// requests finish, sockets get 1001).
pub type SocialHandle = crate::background::Background;

/// Starts the social API (embedded store and bus) on a tokio runtime of its own thread; returns
/// once it listens, with a handle on its channel service (stream keys). With `certs`, it also
/// serves HTTPS and WSS on `config.api_https`. `live` tells the chat which streams are live;
/// browser pages from `page_ports` on the host a request names may call the API (the media
/// server's own pages; see `zerocast_social::api::cors::own_page`).
pub fn start_social(
    config: &Config,
    certs: Option<&Arc<CertStore>>,
    live: zerocast_social::chat::service::LiveCheck,
    page_ports: Vec<u16>,
) -> Result<(SocialHandle, ChannelsHandle), ServeError> {
    use zerocast_social::SocialServer;
    let mut cfg = config
        .social_config()
        .map_err(|e| ServeError::Social(e.to_string()))?;
    cfg.page_ports = page_ports;
    let tls = certs.map(|c| (config.api_https, c.server_config(ALPN_HTTP1)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Err((true, why)): a backend refused to open.
    let (ready_tx, ready_rx) = mpsc::channel::<Result<ChannelsHandle, (bool, String)>>();
    let fail = |tx: &mpsc::Sender<_>, why: String| {
        let _ = tx.send(Err((false, why)));
    };
    let thread = std::thread::Builder::new()
        .name("zerocast-social".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("zerocast-social")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    fail(&ready_tx, e.to_string());
                    return;
                }
            };
            rt.block_on(async move {
                let backends = match zerocast_social::backends::open_backends(&cfg).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err((true, format!("opening the social backends: {e}"))));
                        return;
                    }
                };
                let listener = match tokio::net::TcpListener::bind(cfg.api).await {
                    Ok(l) => l,
                    Err(e) => {
                        fail(&ready_tx, format!("binding {}: {e}", cfg.api));
                        return;
                    }
                };
                let secure = match tls {
                    Some((addr, config)) => {
                        let bound = match tokio::net::TcpListener::bind(addr).await {
                            Ok(l) => l,
                            Err(e) => {
                                fail(&ready_tx, format!("binding {addr}: {e}"));
                                return;
                            }
                        };
                        match zerocast_social::api::tls::TlsListener::new(bound, config) {
                            Ok(l) => {
                                tracing::info!(api_https = %addr, "social API listening over TLS (HTTPS, WSS)");
                                Some(l)
                            }
                            Err(e) => {
                                fail(&ready_tx, format!("{addr}: {e}"));
                                return;
                            }
                        }
                    }
                    None => None,
                };
                tracing::info!(api = %cfg.api, "social API listening");
                let server = SocialServer::with_live(cfg, backends, live);
                let _ = ready_tx.send(Ok(ChannelsHandle {
                    channels: server.state().channels.clone(),
                    graph: server.state().graph.clone(),
                    rt: tokio::runtime::Handle::current(),
                }));
                if let Err(e) = server
                    .run_with_tls(listener, secure, async {
                        let _ = stop_rx.await;
                    })
                    .await
                {
                    tracing::error!("social API: {e}");
                }
            });
        })
        .map_err(ServeError::Worker)?;
    match ready_rx.recv() {
        Ok(Ok(channels)) => Ok((SocialHandle::new(stop_tx, thread), channels)),
        Ok(Err((true, e))) => Err(ServeError::SocialBackends(e)),
        Ok(Err((false, e))) => Err(ServeError::Social(e)),
        Err(_) => Err(ServeError::Social(
            "the social thread ended at start".into(),
        )),
    }
}

/// The configured certificate, watched for changes; `None` without TLS.
fn load_certs(config: &Config) -> Result<Option<Arc<CertStore>>, ServeError> {
    let Some((cert, key)) = config.tls_files() else {
        return Ok(None);
    };
    let certs = CertStore::load(cert, key)?;
    certs
        .watch(Duration::from_secs(2))
        .map_err(ServeError::Worker)?;
    Ok(Some(certs))
}

/// Runs only the social API until SIGINT or SIGTERM (`zerocast social`).
pub fn run_social(config: Config) -> Result<(), ServeError> {
    let mask = block_signals()?;
    let certs = load_certs(&config)?;
    let (social, _) = start_social(
        &config,
        certs.as_ref(),
        Arc::new(|_: &str| false),
        Vec::new(),
    )?;
    // The social plane frees as unevenly as the media plane: a follow-graph build leaves its
    // request buffers and store batches free in every thread's arena.
    crate::heap::start();
    let sig = wait_stop_signal(&mask, certs.as_deref());
    tracing::info!(signal = sig, "shutting down");
    social.stop(Duration::from_millis(900));
    tracing::info!("stopped");
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), ServeError> {
    let mask = block_signals()?;
    let certs = load_certs(&config)?;
    let auth = config
        .publish_policy()
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let origins = config
        .origins()
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let relay = (!origins.is_empty()).then(|| {
        crate::relay::Relay::new(
            origins,
            Duration::from_millis(config.edge_linger),
            config.max_streams,
        )
    });
    let ctx = Arc::new(Ctx::new(config.clone(), auth, relay));
    let social = if config.social {
        let hub = ctx.clone();
        let live = Arc::new(move |name: &str| hub.hub.is_live(name));
        // The pages this process serves (HTTP, and HTTPS with a certificate) may call the API
        // from their own origin.
        let mut page_ports = vec![config.http.port()];
        if certs.is_some() {
            page_ports.push(config.https.port());
        }
        match start_social(&config, certs.as_ref(), live, page_ports) {
            Ok((social, channels)) => {
                ctx.auth.set_channels(channels);
                Some(social)
            }
            // A store that will not open (damaged, or held by another process) takes the
            // social API down, not the media plane: viewers keep watching.
            Err(ServeError::SocialBackends(e)) => {
                tracing::error!("social API disabled, media keeps serving: {e}");
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    match config.social_config() {
        Ok(c) => ctx
            .auth
            .set_playback(PlaybackKeys::from_secret(&c.jwt_secret)),
        Err(e) => tracing::warn!("no token secret, private streams cannot be played: {e}"),
    }
    if ctx.auth.mode() == PublishMode::Keys && social.is_none() {
        tracing::warn!("publish-auth = keys without the social API in this process: only publish-trusted-nets may publish (unreserved names)");
    }
    let driver = resolve_driver(config.driver)?;
    let workers = config.worker_count();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tls = certs.as_ref().map(TlsAcceptors::new);
    let h3 = match &certs {
        Some(c) => Some(crate::http::h3::start(ctx.clone(), c).map_err(ServeError::Quic)?),
        None => None,
    };
    tracing::info!(
        driver = if driver == Driver::Uring { "io_uring" } else { "epoll" },
        workers,
        rtmp = %config.rtmp,
        http = %config.http,
        "zerocast starting"
    );
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let ctx = ctx.clone();
        let tls = tls.clone();
        let ready = ready_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("zerocast-w{i}"))
            .spawn(move || {
                if let Err(e) = monoio::utils::bind_to_cpu_set([i % cores]) {
                    tracing::warn!(worker = i, "could not pin to core: {e:?}");
                }
                let res = match driver {
                    Driver::Uring => uring_runtime(i)
                        .map(|mut rt| rt.block_on(worker(i, ctx, tls, ready.clone()))),
                    _ => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(worker(i, ctx, tls, ready.clone()))),
                };
                if let Err(e) = res {
                    let _ = ready.send(Err(ServeError::Worker(e)));
                }
            })
            .map_err(ServeError::Worker)?;
        handles.push(h);
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                ctx.shutdown();
                return Err(e);
            }
            Err(_) => break,
        }
    }
    crate::heap::start();
    tracing::info!(
        "ready: rtmp://{}/live/NAME, http://{}/live/NAME/index.m3u8",
        config.rtmp,
        config.http
    );
    if certs.is_some() {
        tracing::info!(
            "ready: rtmps://{}/live/NAME, https://{}/live/NAME/index.m3u8 (HTTP/2, HTTP/1.1; HTTP/3 on UDP)",
            config.rtmps,
            config.https
        );
    }
    let sig = wait_stop_signal(&mask, certs.as_deref());
    tracing::info!(signal = sig, "shutting down");
    ctx.shutdown();
    if let Some(h3) = h3 {
        h3.stop(Duration::from_millis(500));
    }
    let social_stop =
        social.map(|s| std::thread::spawn(move || s.stop(Duration::from_millis(700))));
    // Workers give in-flight responses up to 700 ms, so the process exits within a second.
    for h in handles {
        let _ = h.join();
    }
    if let Some(t) = social_stop {
        let _ = t.join();
    }
    tracing::info!(open = ctx.metrics.connections(), "stopped");
    Ok(())
}

async fn worker(
    i: usize,
    ctx: Arc<Ctx>,
    tls: Option<TlsAcceptors>,
    ready: mpsc::Sender<Result<(), ServeError>>,
) {
    let opts = ListenerOpts::new().reuse_port(true).backlog(4096);
    let bind = |addr| {
        TcpListener::bind_with_config(addr, &opts)
            .map_err(|source| ServeError::Bind { addr, source })
    };
    let mut wanted = vec![
        (Listen::Rtmp, ctx.config.rtmp),
        (Listen::Http, ctx.config.http),
    ];
    if tls.is_some() {
        wanted.push((Listen::Rtmps, ctx.config.rtmps));
        wanted.push((Listen::Https, ctx.config.https));
    }
    let mut listeners = Vec::with_capacity(wanted.len());
    for (kind, addr) in wanted {
        match bind(addr) {
            Ok(l) => listeners.push((kind, l)),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    }
    let _ = ready.send(Ok(()));
    drop(ready);
    if i == 0 {
        monoio::spawn(sweeper(ctx.clone()));
        monoio::spawn(crate::relay::run(ctx.clone()));
    }
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(kind, l)| monoio::spawn(accept_loop(l, ctx.clone(), kind, tls.clone())))
        .collect();
    for l in loops {
        l.await;
    }
    // Let this core's connections see the shutdown and finish their current response; the
    // runtime (and any task still running) goes away when this returns.
    let deadline = Instant::now() + Duration::from_millis(700);
    while ctx.metrics.connections() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    kind: Listen,
    tls: Option<TlsAcceptors>,
) {
    let mut backoff = AcceptBackoff::default();
    let mut refusals = LogEvery::new(Duration::from_secs(1));
    loop {
        let seen = ctx.shutdown_signal.seq();
        if ctx.shutting_down() {
            return;
        }
        let accepted = monoio::select! {
            a = listener.accept() => a,
            _ = ctx.shutdown_signal.changed(seen) => {
                tracing::debug!(?kind, "listener closed");
                return;
            }
        };
        let first = match accepted {
            Ok(x) => {
                backoff.reset();
                x
            }
            Err(e) => {
                // Out of descriptors (or another accept error): wait, longer each time, and
                // say so at most once a second instead of once per attempt.
                let wait = backoff.next();
                if let Some(more) = refusals.tick() {
                    tracing::warn!(
                        ?kind,
                        "accept: {e} (retrying in {wait:?}; {more} more since the last line)"
                    );
                }
                monoio::time::sleep(wait).await;
                continue;
            }
        };
        // One accept completes per turn of the event loop, and a turn is long when thousands
        // of viewers are being served: take every connection already queued now, or a burst
        // of clients waits in the backlog (at ~30 ms a turn, 1,000 took half a minute).
        for (stream, peer) in std::iter::once(first).chain(accept_queued(&listener, ACCEPT_BATCH)) {
            admit(stream, peer, &ctx, kind, &tls, &mut refusals);
        }
    }
}

/// Connections taken from a listener's queue at most per accepted one.
const ACCEPT_BATCH: usize = 256;

/// Connections already waiting in `listener`'s accept queue, taken without waiting (at most
/// `max`): `poll(2)` with no timeout says whether one is queued, then `accept4(2)` takes it.
/// Each worker has its own `SO_REUSEPORT` listener, so no other thread empties this queue
/// between the two. The new sockets get the listener's blocking mode, as the driver's own
/// accept gives them (blocking for io_uring, non-blocking for epoll).
fn accept_queued(listener: &TcpListener, max: usize) -> Vec<(TcpStream, SocketAddr)> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let fd = listener.as_raw_fd();
    // SAFETY: fcntl on the listener's open descriptor.
    let nonblocking = unsafe { libc::fcntl(fd, libc::F_GETFL) } & libc::O_NONBLOCK != 0;
    let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    let mut out = Vec::new();
    while out.len() < max {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout.
        if unsafe { libc::poll(&mut p, 1, 0) } != 1 || p.revents & libc::POLLIN == 0 {
            break;
        }
        // SAFETY: accept4 on the listener; the address is not asked for.
        let conn = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), flags) };
        if conn < 0 {
            break;
        }
        // SAFETY: `conn` is a new descriptor owned by nothing else.
        let std_stream = unsafe { std::net::TcpStream::from_raw_fd(conn) };
        let Ok(peer) = std_stream.peer_addr() else {
            continue;
        };
        if let Ok(stream) = TcpStream::from_std(std_stream) {
            out.push((stream, peer));
        }
    }
    out
}

/// A worker's io_uring runtime. Completions' task work is deferred until the worker waits for
/// events (`DEFER_TASKRUN`, with `SINGLE_ISSUER`, Linux 6.1+): run at the end of any other
/// syscall, a socket's receive work ran in the middle of the next `sendfile` and fought the
/// other core's softirq for the socket lock (`__pv_queued_spin_lock_slowpath`, 6 % of the
/// server's time in the closed-loop load). A kernel that refuses the flags gets a plain ring.
fn uring_runtime(
    worker: usize,
) -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let mut flags = io_uring::IoUring::builder();
    flags
        .setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    let builder = || {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(1024)
            .enable_timer()
    };
    builder().uring_builder(flags).build().or_else(|e| {
        tracing::info!(worker, "io_uring without deferred task work ({e})");
        builder().build()
    })
}

/// Serves an accepted connection on this worker, unless a connection cap refuses it.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: &Arc<Ctx>,
    kind: Listen,
    tls: &Option<TlsAcceptors>,
    refusals: &mut LogEvery,
) {
    if ctx.metrics.connections() >= ctx.config.max_connections {
        ctx.metrics.count_limit(Limit::MaxConnections);
        if let Some(more) = refusals.tick() {
            tracing::warn!(%peer, ?kind, "max-connections ({}) reached: connection closed ({more} more since the last line)", ctx.config.max_connections);
        }
        drop(stream);
        return;
    }
    let Some(ip_slot) = ctx.per_ip.acquire(peer.ip()) else {
        ctx.metrics.count_limit(Limit::MaxConnectionsPerIp);
        if let Some(more) = refusals.tick() {
            let max = ctx.config.max_connections_per_ip;
            let key = crate::limits::IpKey::of(peer.ip());
            tracing::warn!(%peer, ?kind, "max-connections-per-ip ({max}) reached for {key}: connection closed ({more} more since the last line)");
        }
        drop(stream);
        return;
    };
    let guard = ConnGuard::new(ctx.clone());
    let ctx = ctx.clone();
    let tls = tls.clone();
    // A task's future is as large as its largest branch, and every connection's task is
    // allocated at that size for its whole life. Plain HTTP/1.1 connections are the many (each
    // viewer keeps one alive): they must not pay for the RTMP, TLS and HTTP/2 state machines,
    // which are boxed (one more allocation per such connection). Before, every idle keep-alive
    // viewer held an 11.6 KiB task (heaptrack, 2,000 idle connections).
    monoio::spawn(async move {
        let _guard = (guard, ip_slot);
        let _ = stream.set_nodelay(true);
        match (kind, tls) {
            (Listen::Http, _) => crate::http::serve_conn(Tcp::new(stream), peer, ctx.clone()).await,
            (Listen::Rtmp, _) => {
                Box::pin(crate::rtmp::serve_conn(Tcp::new(stream), peer, ctx.clone())).await;
            }
            (Listen::Rtmps, Some(tls)) => {
                Box::pin(async {
                    if let Some(s) = handshake(stream, peer, &ctx, &tls.rtmps, "rtmps").await {
                        crate::rtmp::serve_conn(s, peer, ctx.clone()).await;
                    }
                })
                .await;
            }
            (Listen::Https, Some(tls)) => {
                Box::pin(async {
                    if let Some(s) = handshake(stream, peer, &ctx, &tls.https, "https").await {
                        if s.get_ref().1.alpn_protocol() == Some(b"h2") {
                            crate::http::h2::serve_conn(s, peer, ctx.clone()).await;
                        } else {
                            crate::http::serve_conn(s, peer, ctx.clone()).await;
                        }
                    }
                })
                .await;
            }
            (Listen::Rtmps | Listen::Https, None) => {}
        }
    });
}

/// The server side of a TLS handshake, bounded by [`TLS_HANDSHAKE`]; a failure is logged as
/// one line naming the peer.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: &Ctx,
    acceptor: &tokio_rustls::TlsAcceptor,
    port: &'static str,
) -> Option<crate::transport::TlsStream> {
    let poll = match stream.into_poll_io() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%peer, port, "TLS: cannot switch the socket to poll mode: {e}");
            return None;
        }
    };
    match monoio::time::timeout(TLS_HANDSHAKE, acceptor.accept(poll)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::warn!(%peer, port, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            ctx.metrics.count_limit(Limit::TlsHandshakeTimeout);
            tracing::warn!(%peer, port, "TLS handshake timed out after {} s", TLS_HANDSHAKE.as_secs());
            None
        }
    }
}

async fn sweeper(ctx: Arc<Ctx>) {
    let grace = Duration::from_millis(ctx.config.reconnect_grace);
    let linger = Duration::from_millis(ctx.config.ended_linger);
    while !ctx.shutting_down() {
        monoio::time::sleep(Duration::from_millis(250)).await;
        ctx.hub.sweep(Instant::now(), grace, linger);
    }
}

/// Counts one open connection from accept until the connection's task ends.
struct ConnGuard(Arc<Ctx>);

impl ConnGuard {
    fn new(ctx: Arc<Ctx>) -> Self {
        ctx.metrics.open_connection();
        Self(ctx)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.metrics.close_connection();
    }
}

/// Waits between failed accepts: 10 ms, doubling to 1 s, back to 10 ms after a success.
#[derive(Debug, Default)]
struct AcceptBackoff(u32);

impl AcceptBackoff {
    fn next(&mut self) -> Duration {
        let ms = (10u64 << self.0.min(7)).min(1000);
        self.0 = self.0.saturating_add(1);
        Duration::from_millis(ms)
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Lets a repeated log line through at most once per `every`; counts the ones held back.
#[derive(Debug)]
struct LogEvery {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl LogEvery {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written now.
    fn tick(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and every thread spawned after), so that
/// `wait_signal` receives them synchronously.
fn block_signals() -> Result<libc::sigset_t, ServeError> {
    // SAFETY: plain libc calls on a zeroed, then initialised, sigset_t owned by this frame.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(ServeError::Signals(std::io::Error::from_raw_os_error(rc)));
        }
        Ok(set)
    }
}

/// Waits for SIGINT or SIGTERM; a SIGHUP in between reloads the TLS certificate.
fn wait_stop_signal(set: &libc::sigset_t, certs: Option<&CertStore>) -> &'static str {
    loop {
        match wait_signal(set) {
            "SIGHUP" => match certs {
                Some(c) => c.log_reload("SIGHUP", c.reload()),
                None => tracing::info!("SIGHUP: no TLS certificate configured, nothing to reload"),
            },
            sig => return sig,
        }
    }
}

fn wait_signal(set: &libc::sigset_t) -> &'static str {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` was initialised by `block_signals`; `sig` is a valid out pointer.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    match (rc, sig) {
        (0, libc::SIGINT) => "SIGINT",
        (0, libc::SIGTERM) => "SIGTERM",
        (0, libc::SIGHUP) => "SIGHUP",
        _ => "unknown",
    }
}
