//! What the viewer loads (`hls`, `dash`) share: the protocol and its clients, the worker
//! threads and their runtimes, the staggered start, and the counting GET.
//!
//! ```text
//! run_worker(plan) ── one runtime per thread ──▶ worker: one task per viewer
//!                                                  │ sleeps until its stagger offset
//!                                                  ▼
//!                          Play::play (LL-HLS or DASH viewers) with a NewClient
//!                                                  │ each of its connections a Client
//!                                                  ▼
//!                                    Fetcher::get: counts requests, bytes, errors
//! ```
//!
//! A viewer is generic over its [`Client`] and its runtime ([`Rt`]): HTTP/1.1 and HTTP/2
//! viewers run on monoio workers (plain HTTP/1.1 on completion IO, TLS on monoio's poll-io),
//! HTTP/3 viewers on one current-thread tokio runtime per worker thread (quinn needs tokio).
//! Requests on one connection go out one at a time, whatever the protocol.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::client::{Client, ClientError, Conn, Plain, Response, Tls};
use crate::h2::H2Client;
use crate::h3::H3Client;
use crate::rng::Rng;
use crate::stats::{ErrorKind, Stats};

/// Pause after an error before starting again, so a failing server is not hammered.
pub(crate) const ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// Most time an HTTP/3 worker waits for its closed connections to drain before it ends.
const CLOSE_GRACE: Duration = Duration::from_millis(250);
/// Viewers start at a random offset within this window.
const STAGGER: Duration = Duration::from_secs(1);

/// The protocol viewers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// HTTP/1.1 over plain TCP (the hand-written client on completion IO).
    Http1,
    /// HTTP/1.1 over TLS, ALPN `http/1.1` (the same client over rustls).
    Https1,
    /// HTTP/2 over TLS, ALPN `h2` (hyper's client).
    H2,
    /// HTTP/3 over QUIC (quinn + h3), on tokio.
    H3,
}

impl Proto {
    /// For the report's title.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Proto::Http1 => "HTTP/1.1",
            Proto::Https1 => "HTTP/1.1 over TLS",
            Proto::H2 => "HTTP/2 over TLS",
            Proto::H3 => "HTTP/3 over QUIC",
        }
    }
}

/// What each viewer of a run does: follow LL-HLS playlists, or a low-latency DASH MPD. The
/// run's machinery (workers, runtimes, clients, stagger) is the same for both.
pub(crate) trait Play: Clone + 'static {
    /// Plays until `plan.end`, counting into `stats`; `new_client` makes its connections.
    fn play<R: Rt, C: Client + 'static>(
        &self,
        plan: &Plan,
        stats: &RefCell<Stats>,
        new_client: &NewClient<C>,
    ) -> impl Future<Output = ()>;
}

/// What every viewer of a run shares.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) proto: Proto,
    /// TCP address, or UDP for HTTP/3.
    pub(crate) addr: SocketAddr,
    /// `Host` header value (the `:authority` for HTTP/2 and HTTP/3).
    pub(crate) host: String,
    /// The URL's host alone: the name the server's certificate must be valid for.
    pub(crate) server_name: String,
    /// TLS client configuration offering the protocol's ALPN (not for plain HTTP/1.1).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// Path (and query) of the URL given: the multivariant playlist or the MPD.
    pub(crate) path: String,
    /// Connect, handshake, read and write timeout.
    pub(crate) timeout: Duration,
    /// When viewers start (before their stagger).
    pub(crate) start: Instant,
    /// When viewers stop issuing requests.
    pub(crate) end: Instant,
    /// When unfinished viewers are abandoned.
    pub(crate) hard_stop: Instant,
    /// Latency samples kept by one worker, per distribution.
    pub(crate) sample_cap: usize,
}

impl Plan {
    fn tls(&self) -> anyhow::Result<Tls> {
        let config = self.tls.clone().context("no TLS configuration")?;
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(config),
            name: crate::tls::server_name(&self.server_name)?,
        })
    }
}

/// Makes a viewer's clients, one per connection it wants (nothing connects before the first
/// request).
pub(crate) type NewClient<C> = Rc<dyn Fn() -> C>;

/// The timer and tasks of the runtime viewers run on.
pub(crate) trait Rt {
    /// Completes at `deadline`.
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()>;
    /// Runs `fut` as a task of the current thread; the returned future completes with it.
    fn spawn(fut: impl Future<Output = ()> + 'static) -> impl Future<Output = ()> + 'static;
    /// `fut`'s output, or `None` when `deadline` comes first.
    fn timeout_at<F: Future>(deadline: Instant, fut: F) -> impl Future<Output = Option<F::Output>>;
}

/// monoio's timer and tasks.
#[derive(Debug)]
pub(crate) struct Monoio;

impl Rt for Monoio {
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> {
        monoio::time::sleep_until(monoio::time::Instant::from_std(deadline))
    }

    fn spawn(fut: impl Future<Output = ()> + 'static) -> impl Future<Output = ()> + 'static {
        monoio::spawn(fut)
    }

    async fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Option<F::Output> {
        let deadline = monoio::time::Instant::from_std(deadline);
        monoio::time::timeout_at(deadline, fut).await.ok()
    }
}

/// tokio's timer and local tasks (inside a `LocalSet`).
#[derive(Debug)]
pub(crate) struct Tokio;

impl Rt for Tokio {
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline))
    }

    fn spawn(fut: impl Future<Output = ()> + 'static) -> impl Future<Output = ()> + 'static {
        let handle = tokio::task::spawn_local(fut);
        async move {
            let _ = handle.await;
        }
    }

    async fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Option<F::Output> {
        let deadline = tokio::time::Instant::from_std(deadline);
        tokio::time::timeout_at(deadline, fut).await.ok()
    }
}

/// Runs `viewers` viewers (numbered from `first`), each playing `play`, on the current
/// thread's own runtime.
pub(crate) fn run_worker<P: Play>(
    plan: Plan,
    play: P,
    first: u64,
    viewers: u64,
) -> anyhow::Result<Stats> {
    let (addr, timeout, host) = (plan.addr, plan.timeout, plan.host.clone());
    match plan.proto {
        Proto::Http1 => on_monoio(worker::<Monoio, _, _>(
            &plan,
            &play,
            first,
            viewers,
            Rc::new(move || Conn::new(addr, host.clone(), timeout, Plain)),
        )),
        Proto::Https1 => {
            let tls = plan.tls()?;
            on_monoio(worker::<Monoio, _, _>(
                &plan,
                &play,
                first,
                viewers,
                Rc::new(move || Conn::new(addr, host.clone(), timeout, tls.clone())),
            ))
        }
        Proto::H2 => {
            let tls = plan.tls()?;
            on_monoio(worker::<Monoio, _, _>(
                &plan,
                &play,
                first,
                viewers,
                Rc::new(move || H2Client::new(addr, &host, timeout, tls.clone())),
            ))
        }
        Proto::H3 => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async {
                let tls = plan.tls.clone().context("no TLS configuration")?;
                // One UDP socket for the worker's viewers, each with its own QUIC connections.
                let endpoint = crate::h3::endpoint(addr, tls)?;
                let (ep, name) = (endpoint.clone(), plan.server_name.clone());
                let new_client: NewClient<H3Client> =
                    Rc::new(move || H3Client::new(ep.clone(), addr, &host, &name, timeout));
                let stats = worker::<Tokio, _, _>(&plan, &play, first, viewers, new_client).await;
                // Viewers that ended dropped their connections; close what is left, and give
                // the CONNECTION_CLOSE frames a moment to leave.
                endpoint.close(0u32.into(), b"done");
                let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
                Ok(stats)
            })
        }
    }
}

/// Runs `fut` on a new monoio runtime (io_uring where the kernel has it) with a timer.
fn on_monoio<F: Future>(fut: F) -> anyhow::Result<F::Output> {
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    Ok(rt.block_on(fut))
}

/// GETs each of `paths` in turn on one connection of its own before the run, so that an
/// untrusted certificate or a server that does not speak the protocol fails once, clearly.
/// Returns each response (any status) and when its request was sent.
pub(crate) fn preflight(plan: &Plan, paths: &[&str]) -> anyhow::Result<Vec<(Instant, Response)>> {
    let (addr, timeout) = (plan.addr, plan.timeout);
    // Time for the connection tasks to close the connection cleanly (HTTP/2 GOAWAY, QUIC
    // CONNECTION_CLOSE) once the client is dropped.
    const GRACE: Duration = Duration::from_millis(100);
    let res = match plan.proto {
        Proto::Http1 => {
            let client = Conn::new(addr, plan.host.clone(), timeout, Plain);
            on_monoio(probe::<Monoio, _>(client, paths, GRACE))?
        }
        Proto::Https1 => {
            let client = Conn::new(addr, plan.host.clone(), timeout, plan.tls()?);
            on_monoio(probe::<Monoio, _>(client, paths, GRACE))?
        }
        Proto::H2 => {
            let client = H2Client::new(addr, &plan.host, timeout, plan.tls()?);
            on_monoio(probe::<Monoio, _>(client, paths, GRACE))?
        }
        Proto::H3 => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async {
                let tls = plan.tls.clone().context("no TLS configuration")?;
                let endpoint = crate::h3::endpoint(addr, tls)?;
                let client = H3Client::new(
                    endpoint.clone(),
                    addr,
                    &plan.host,
                    &plan.server_name,
                    timeout,
                );
                let res = probe::<Tokio, _>(client, paths, GRACE).await;
                let _ = tokio::time::timeout(GRACE, endpoint.wait_idle()).await;
                anyhow::Ok(res)
            })?
        }
    };
    res.map_err(|(path, e)| {
        anyhow::anyhow!(
            "{}: {} error: GET {path}: {}",
            plan.proto.label(),
            e.kind.label(),
            e.detail
        )
    })
}

/// GETs `paths` with `client`, drops it, then waits `grace`.
async fn probe<R: Rt, C: Client>(
    mut client: C,
    paths: &[&str],
    grace: Duration,
) -> Result<Vec<(Instant, Response)>, (String, ClientError)> {
    let mut out = Vec::new();
    let mut res = Ok(());
    for path in paths {
        let sent = Instant::now();
        match client.get(path).await {
            Ok(r) => out.push((sent, r)),
            Err(e) => {
                res = Err(((*path).to_owned(), e));
                break;
            }
        }
    }
    drop(client);
    R::sleep_until(Instant::now() + grace).await;
    res.map(|()| out)
}

/// Runs the viewers as tasks of the current thread, each with clients from `new_client`,
/// until they all end or the hard stop.
async fn worker<R: Rt, C: Client + 'static, P: Play>(
    plan: &Plan,
    play: &P,
    first: u64,
    viewers: u64,
    new_client: NewClient<C>,
) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::new(plan.sample_cap)));
    let running = Rc::new(Cell::new(0u64));
    let handles: Vec<_> = (first..first + viewers)
        .map(|id| {
            running.set(running.get() + 1);
            let guard = Running(running.clone());
            let (plan, play, stats, new_client) = (
                plan.clone(),
                play.clone(),
                stats.clone(),
                new_client.clone(),
            );
            R::spawn(async move {
                let _guard = guard;
                // Seeded by the viewer number: the same run plan staggers the same way every
                // time.
                let offset = STAGGER.mul_f64(Rng(id).unit());
                R::sleep_until(plan.start + offset).await;
                play.play::<R, C>(&plan, &stats, &new_client).await;
            })
        })
        .collect();
    let all = async {
        for h in handles {
            h.await;
        }
    };
    if R::timeout_at(plan.hard_stop, all).await.is_none() {
        let n = running.get();
        for _ in 0..n {
            stats
                .borrow_mut()
                .error(ErrorKind::HardStop, "viewer still running at the hard stop");
        }
    }
    // The spawned tasks (and their `Rc`s) go away with the runtime; take the counters now.
    stats.replace(Stats::default())
}

/// Counts live viewer tasks; decremented when a task ends.
struct Running(Rc<Cell<u64>>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// One connection of a viewer, counting into the worker's [`Stats`].
pub(crate) struct Fetcher<'a, C> {
    pub(crate) stats: &'a RefCell<Stats>,
    pub(crate) client: C,
}

impl<C: Client> Fetcher<'_, C> {
    /// GETs `target`; counts the request, its bytes and any error (a status other than 200
    /// is one).
    pub(crate) async fn get(&mut self, target: &str) -> Result<Response, ClientError> {
        let res = self.client.get(target).await;
        let mut s = self.stats.borrow_mut();
        s.bytes += self.client.take_bytes_read();
        s.connects += self.client.take_connects();
        match res {
            Ok(r) => {
                s.requests += 1;
                if r.status == 200 {
                    Ok(r)
                } else {
                    let detail = format!(
                        "GET {target}: {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body).trim()
                    );
                    let kind = ErrorKind::from_status(r.status);
                    s.error(kind, &detail);
                    Err(ClientError::new(kind, detail))
                }
            }
            Err(e) => {
                s.error(e.kind, &format!("GET {target}: {}", e.detail));
                Err(e)
            }
        }
    }

    /// Counts an error found in a response (a playlist or MPD that does not parse).
    pub(crate) fn error(&self, kind: ErrorKind, detail: &str) {
        self.stats.borrow_mut().error(kind, detail);
    }
}

/// Resolves `uri` against the path (and query) `base`, as a browser would for the common cases:
/// absolute URLs on the same server, absolute paths, and paths relative to `base`'s directory.
pub(crate) fn resolve(base: &str, uri: &str) -> String {
    if let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    {
        return rest
            .find('/')
            .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned());
    }
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let base = base.split(['?', '#']).next().unwrap_or("");
    let dir = base.rfind('/').map_or("/", |i| &base[..=i]);
    let mut out = dir.to_owned();
    let mut rest = uri;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            rest = r;
            // Drop the last directory of `out` (which ends with '/'), never the root.
            let trimmed = &out[..out.len() - 1];
            let cut = trimmed.rfind('/').map_or(1, |i| i + 1);
            out.truncate(cut);
        } else {
            break;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_uris() {
        let index = "/live/demo/index.m3u8";
        let media = resolve(index, "123/stream.m3u8");
        assert_eq!(media, "/live/demo/123/stream.m3u8");
        assert_eq!(
            resolve(&format!("{media}?_HLS_msn=1"), "part7.m4s"),
            "/live/demo/123/part7.m4s"
        );
        assert_eq!(resolve(&media, "../x.m3u8"), "/live/demo/x.m3u8");
        assert_eq!(resolve("/a.m3u8", "../../x"), "/x");
        assert_eq!(resolve(&media, "/abs/p.m4s"), "/abs/p.m4s");
        assert_eq!(resolve(&media, "http://h:1/q/p.m4s"), "/q/p.m4s");
    }
}
