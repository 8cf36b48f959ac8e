//! LL-HLS viewers: each one a task with its own connection, over HTTP/1.1 (plain or TLS),
//! HTTP/2 or HTTP/3.
//!
//! A viewer plays like an LL-HLS player that only follows the live edge:
//!
//! ```text
//! GET index.m3u8 ──last line──▶ GET stream.m3u8 ──▶ next part (M, P)
//!       ▲                                              │
//!       │ 404                                          ▼
//!       └──── 400/503/error ◀── GET stream.m3u8?_HLS_msn=M&_HLS_part=P   (blocks)
//!                                     │ 200: response complete = announcement
//!                                     ▼
//!                          GET every newly listed part: latency = receipt − announcement
//! ```
//!
//! It does not fetch the preload hint, segments or the init segment, and plays nothing.
//!
//! The viewer is generic over its [`Client`] and its runtime ([`Rt`]): HTTP/1.1 and HTTP/2
//! viewers run on monoio workers (plain HTTP/1.1 on completion IO, TLS on monoio's poll-io),
//! HTTP/3 viewers on one current-thread tokio runtime per worker thread (quinn needs tokio).
//! Requests of one viewer go out one at a time, on one connection, whatever the protocol.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use zerocast_packager::check::{self, ParsedPlaylist};

use crate::client::{Client, ClientError, Conn, Plain, Response, Tls};
use crate::h2::H2Client;
use crate::h3::H3Client;
use crate::stats::{ErrorKind, Stats};

/// Pause after an error before starting again, so a failing server is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);
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
    /// Path of the multivariant playlist, e.g. `/live/demo/index.m3u8`.
    pub(crate) index_path: String,
    /// Connect, handshake, read and write timeout.
    pub(crate) timeout: Duration,
    /// When viewers start (before their stagger).
    pub(crate) start: Instant,
    /// When viewers stop issuing requests.
    pub(crate) end: Instant,
    /// When unfinished viewers are abandoned.
    pub(crate) hard_stop: Instant,
    /// Latency samples kept by one worker.
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

/// Runs `viewers` viewers (numbered from `first`) on the current thread's own runtime.
pub(crate) fn run_worker(plan: Plan, first: u64, viewers: u64) -> anyhow::Result<Stats> {
    let (addr, timeout) = (plan.addr, plan.timeout);
    match plan.proto {
        Proto::Http1 => on_monoio(worker::<Monoio, _>(&plan, first, viewers, || {
            Conn::new(addr, plan.host.clone(), timeout, Plain)
        })),
        Proto::Https1 => {
            let tls = plan.tls()?;
            on_monoio(worker::<Monoio, _>(&plan, first, viewers, || {
                Conn::new(addr, plan.host.clone(), timeout, tls.clone())
            }))
        }
        Proto::H2 => {
            let tls = plan.tls()?;
            on_monoio(worker::<Monoio, _>(&plan, first, viewers, || {
                H2Client::new(addr, &plan.host, timeout, tls.clone())
            }))
        }
        Proto::H3 => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async {
                let tls = plan.tls.clone().context("no TLS configuration")?;
                // One UDP socket for the worker's viewers, each with its own QUIC connection.
                let endpoint = crate::h3::endpoint(addr, tls)?;
                let stats = worker::<Tokio, _>(&plan, first, viewers, || {
                    let p = &plan;
                    H3Client::new(endpoint.clone(), addr, &p.host, &p.server_name, timeout)
                })
                .await;
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

/// One GET of the multivariant playlist on a connection of its own, so that an untrusted
/// certificate or a server that does not speak the protocol fails once, clearly, before the
/// run. Any HTTP status passes. Nothing to check for plain HTTP/1.1.
pub(crate) fn preflight(plan: &Plan) -> anyhow::Result<()> {
    let (addr, timeout, path) = (plan.addr, plan.timeout, plan.index_path.as_str());
    // Time for the connection tasks to close the connection cleanly (HTTP/2 GOAWAY, QUIC
    // CONNECTION_CLOSE) once the client is dropped.
    const GRACE: Duration = Duration::from_millis(100);
    let res = match plan.proto {
        Proto::Http1 => return Ok(()),
        Proto::Https1 => {
            let client = Conn::new(addr, plan.host.clone(), timeout, plan.tls()?);
            on_monoio(probe::<Monoio, _>(client, path, GRACE))?
        }
        Proto::H2 => {
            let client = H2Client::new(addr, &plan.host, timeout, plan.tls()?);
            on_monoio(probe::<Monoio, _>(client, path, GRACE))?
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
                let res = probe::<Tokio, _>(client, path, GRACE).await;
                let _ = tokio::time::timeout(GRACE, endpoint.wait_idle()).await;
                anyhow::Ok(res)
            })?
        }
    };
    res.map_err(|e| {
        anyhow::anyhow!(
            "{}: {} error: GET {path}: {}",
            plan.proto.label(),
            e.kind.label(),
            e.detail
        )
    })
}

/// GETs `path` with `client`, drops it, then waits `grace`.
async fn probe<R: Rt, C: Client>(
    mut client: C,
    path: &str,
    grace: Duration,
) -> Result<(), ClientError> {
    let res = client.get(path).await.map(drop);
    drop(client);
    R::sleep_until(Instant::now() + grace).await;
    res
}

/// Runs the viewers as tasks of the current thread, each with a client from `client`, until
/// they all end or the hard stop.
async fn worker<R: Rt, C: Client + 'static>(
    plan: &Plan,
    first: u64,
    viewers: u64,
    client: impl Fn() -> C,
) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::new(plan.sample_cap)));
    let running = Rc::new(Cell::new(0u64));
    let handles: Vec<_> = (first..first + viewers)
        .map(|id| {
            running.set(running.get() + 1);
            let guard = Running(running.clone());
            let (plan, stats, client) = (plan.clone(), stats.clone(), client());
            R::spawn(async move {
                let _guard = guard;
                viewer::<R, C>(&plan, &stats, id, client).await;
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

/// Where a viewer goes next.
enum Step {
    /// Fetch the multivariant playlist again (the stream or its instance changed).
    Restart,
    /// Fetch the full media playlist again.
    Reload,
}

async fn viewer<R: Rt, C: Client>(plan: &Plan, stats: &RefCell<Stats>, id: u64, client: C) {
    // Seeded by the viewer number: the same run plan staggers the same way every time.
    let mut rng = SplitMix(id);
    let offset = STAGGER.mul_f64(rng.unit());
    R::sleep_until(plan.start + offset).await;
    let mut v = Viewer {
        plan,
        stats,
        client,
    };
    let backoff = || R::sleep_until(Instant::now() + ERROR_BACKOFF);
    let mut media: Option<String> = None;
    while Instant::now() < plan.end {
        let path = match &media {
            Some(p) => p.clone(),
            None => match v.media_path().await {
                Some(p) => p,
                None => {
                    backoff().await;
                    continue;
                }
            },
        };
        let step = v.follow(&path).await;
        if matches!(step, Some(Step::Restart)) {
            media = None;
        } else {
            media = Some(path);
        }
        if step.is_some() {
            backoff().await;
        }
    }
}

struct Viewer<'a, C> {
    plan: &'a Plan,
    stats: &'a RefCell<Stats>,
    client: C,
}

impl<C: Client> Viewer<'_, C> {
    /// GETs `target`; counts the request, its bytes and any error. `None` when it failed.
    async fn get(&mut self, target: &str) -> Result<Response, ClientError> {
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

    fn bad_playlist(&self, detail: String) {
        self.stats
            .borrow_mut()
            .error(ErrorKind::BadPlaylist, &detail);
    }

    /// Fetches the multivariant playlist and returns the media playlist's path.
    async fn media_path(&mut self) -> Option<String> {
        let index = self.plan.index_path.clone();
        let r = self.get(&index).await.ok()?;
        let text = String::from_utf8_lossy(&r.body);
        match text.lines().map(str::trim).rfind(|l| !l.is_empty()) {
            Some(uri) if !uri.starts_with('#') => Some(resolve(&index, uri)),
            _ => {
                self.bad_playlist(format!("{index}: no media playlist URI on the last line"));
                None
            }
        }
    }

    /// Fetches and parses a media playlist.
    async fn playlist(&mut self, target: &str) -> Result<ParsedPlaylist, Step> {
        let r = self.get(target).await.map_err(|e| match e.kind {
            ErrorKind::Status404 => Step::Restart,
            _ => Step::Reload,
        })?;
        let text = std::str::from_utf8(&r.body).map_err(|_| {
            self.bad_playlist(format!("{target}: not UTF-8"));
            Step::Reload
        })?;
        check::parse(text).map_err(|e| {
            self.bad_playlist(format!("{target}: {e}"));
            Step::Reload
        })
    }

    /// Follows the live edge of `media` with blocking reloads until the run ends (`None`) or
    /// something fails (`Some(step)`, the error already counted).
    async fn follow(&mut self, media: &str) -> Option<Step> {
        let mut pl = match self.playlist(media).await {
            Ok(pl) => pl,
            Err(step) => return Some(step),
        };
        self.stats.borrow_mut().full_playlists += 1;
        // Parts listed in the first playlist were announced before we looked.
        let mut seen = pl.last_part();
        while Instant::now() < self.plan.end {
            let Some((msn, part)) = pl.next_part() else {
                self.bad_playlist(format!("{media}: no segments or parts"));
                return Some(Step::Reload);
            };
            let target = format!("{media}?_HLS_msn={msn}&_HLS_part={part}");
            pl = match self.playlist(&target).await {
                Ok(pl) => pl,
                Err(step) => return Some(step),
            };
            let announced = Instant::now();
            self.stats.borrow_mut().reloads += 1;
            if pl.last_part().is_none_or(|last| last < (msn, part)) {
                let detail = format!("{target}: answered with last part {:?}", pl.last_part());
                self.stats
                    .borrow_mut()
                    .error(ErrorKind::StaleReload, &detail);
                return Some(Step::Reload);
            }
            let fresh: Vec<String> = pl
                .segments
                .iter()
                .flat_map(|s| s.parts.iter().enumerate().map(move |(i, p)| (s.msn, i, p)))
                .filter(|(m, i, _)| seen.is_none_or(|s| (*m, *i) > s))
                .map(|(_, _, p)| resolve(media, &p.uri))
                .collect();
            seen = pl.last_part();
            for uri in fresh {
                if self.get(&uri).await.is_err() {
                    return Some(Step::Reload);
                }
                let latency = announced.elapsed();
                self.stats.borrow_mut().part_latency(latency);
            }
        }
        None
    }
}

/// Resolves `uri` against the path (and query) `base`, as a browser would for the common cases:
/// absolute URLs on the same server, absolute paths, and paths relative to `base`'s directory.
fn resolve(base: &str, uri: &str) -> String {
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

/// splitmix64: enough randomness for start offsets, no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
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

    #[test]
    fn stagger_is_in_range() {
        let mut r = SplitMix(7);
        assert!((0..1000).map(|_| r.unit()).all(|u| (0.0..1.0).contains(&u)));
    }
}
