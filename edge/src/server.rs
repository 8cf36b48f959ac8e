//! The thread-per-core runtime: one pinned monoio worker per core, each with its own
//! SO_REUSEPORT listeners, and a main thread that waits for SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use monoio::net::{ListenerOpts, TcpListener};

use crate::config::{Config, Driver};
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

/// The social API running on its own small tokio runtime.
#[derive(Debug)]
pub struct SocialHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SocialHandle {
    /// Stops the API (graceful: in-flight requests finish, sockets get 1001) and waits up to
    /// `limit` for it.
    pub fn stop(mut self, limit: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let deadline = Instant::now() + limit;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Starts the social API (embedded store and bus) on a tokio runtime of its own thread; returns
/// once it listens.
pub fn start_social(config: &Config) -> Result<SocialHandle, ServeError> {
    use zerocast_social::SocialServer;
    let cfg = config
        .social_config()
        .map_err(|e| ServeError::Social(e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
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
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let backends = match zerocast_social::backends::open_backends(&cfg).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("opening the social backends: {e}")));
                        return;
                    }
                };
                let listener = match tokio::net::TcpListener::bind(cfg.api).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("binding {}: {e}", cfg.api)));
                        return;
                    }
                };
                tracing::info!(api = %cfg.api, "social API listening");
                let _ = ready_tx.send(Ok(()));
                let server = SocialServer::new(cfg, backends);
                if let Err(e) = server
                    .run(listener, async {
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
        Ok(Ok(())) => Ok(SocialHandle {
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => Err(ServeError::Social(e)),
        Err(_) => Err(ServeError::Social(
            "the social thread ended at start".into(),
        )),
    }
}

/// Runs only the social API until SIGINT or SIGTERM (`zerocast social`).
pub fn run_social(config: Config) -> Result<(), ServeError> {
    let mask = block_signals()?;
    let social = start_social(&config)?;
    let sig = wait_signal(&mask);
    tracing::info!(signal = sig, "shutting down");
    social.stop(Duration::from_millis(900));
    tracing::info!("stopped");
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), ServeError> {
    let mask = block_signals()?;
    let social = if config.social {
        Some(start_social(&config)?)
    } else {
        None
    };
    let driver = resolve_driver(config.driver)?;
    let workers = config.worker_count();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ctx = Arc::new(Ctx::new(config.clone()));
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
        let ready = ready_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("zerocast-w{i}"))
            .spawn(move || {
                if let Err(e) = monoio::utils::bind_to_cpu_set([i % cores]) {
                    tracing::warn!(worker = i, "could not pin to core: {e:?}");
                }
                let res = match driver {
                    Driver::Uring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                        .with_entries(1024)
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(worker(i, ctx, ready.clone()))),
                    _ => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(worker(i, ctx, ready.clone()))),
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
    tracing::info!(
        "ready: rtmp://{}/live/NAME, http://{}/live/NAME/index.m3u8",
        config.rtmp,
        config.http
    );
    let sig = wait_signal(&mask);
    tracing::info!(signal = sig, "shutting down");
    ctx.shutdown();
    let social_stop =
        social.map(|s| std::thread::spawn(move || s.stop(Duration::from_millis(700))));
    // Workers give in-flight responses up to 700 ms, so the process exits within a second.
    for h in handles {
        let _ = h.join();
    }
    if let Some(t) = social_stop {
        let _ = t.join();
    }
    tracing::info!(open = ctx.connections.load(Ordering::Relaxed), "stopped");
    Ok(())
}

async fn worker(i: usize, ctx: Arc<Ctx>, ready: mpsc::Sender<Result<(), ServeError>>) {
    let opts = ListenerOpts::new().reuse_port(true).backlog(4096);
    let bind = |addr| {
        TcpListener::bind_with_config(addr, &opts)
            .map_err(|source| ServeError::Bind { addr, source })
    };
    let (rtmp, http) = match (bind(ctx.config.rtmp), bind(ctx.config.http)) {
        (Ok(r), Ok(h)) => (r, h),
        (Err(e), _) | (_, Err(e)) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    if i == 0 {
        monoio::spawn(sweeper(ctx.clone()));
    }
    let r = monoio::spawn(accept_loop(rtmp, ctx.clone(), true));
    accept_loop(http, ctx.clone(), false).await;
    r.await;
    // Let this core's connections see the shutdown and finish their current response; the
    // runtime (and any task still running) goes away when this returns.
    let deadline = Instant::now() + Duration::from_millis(700);
    while ctx.connections.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, rtmp: bool) {
    loop {
        let seen = ctx.shutdown_signal.seq();
        if ctx.shutting_down() {
            return;
        }
        let accepted = monoio::select! {
            a = listener.accept() => a,
            _ = ctx.shutdown_signal.changed(seen) => {
                tracing::debug!(rtmp, "listener closed");
                return;
            }
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        monoio::spawn(async move {
            let _guard = ConnGuard::new(&ctx.connections);
            if rtmp {
                crate::rtmp::serve_conn(stream, peer, ctx.clone()).await;
            } else {
                crate::http::serve_conn(stream, ctx.clone()).await;
            }
        });
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

struct ConnGuard<'a>(&'a AtomicUsize);

impl<'a> ConnGuard<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and every thread spawned after), so that
/// `wait_signal` receives them synchronously.
fn block_signals() -> Result<libc::sigset_t, ServeError> {
    // SAFETY: plain libc calls on a zeroed, then initialised, sigset_t owned by this frame.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(ServeError::Signals(std::io::Error::from_raw_os_error(rc)));
        }
        Ok(set)
    }
}

fn wait_signal(set: &libc::sigset_t) -> &'static str {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` was initialised by `block_signals`; `sig` is a valid out pointer.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    match (rc, sig) {
        (0, libc::SIGINT) => "SIGINT",
        (0, libc::SIGTERM) => "SIGTERM",
        _ => "unknown",
    }
}
