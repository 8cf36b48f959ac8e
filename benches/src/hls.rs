//! LL-HLS viewers: each one a task on a monoio worker, with one keep-alive connection.
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

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use zerocast_packager::check::{self, ParsedPlaylist};

use crate::client::{ClientError, Conn, Response};
use crate::stats::{ErrorKind, Stats};

/// Pause after an error before starting again, so a failing server is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// Viewers start at a random offset within this window.
const STAGGER: Duration = Duration::from_secs(1);

/// What every viewer of a run shares.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) addr: SocketAddr,
    /// `Host` header value.
    pub(crate) host: String,
    /// Path of the multivariant playlist, e.g. `/live/demo/index.m3u8`.
    pub(crate) index_path: String,
    /// Connect, read and write timeout.
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

/// Runs `viewers` viewers (numbered from `first`) on the current thread's own runtime.
pub(crate) fn run_worker(plan: Plan, first: u64, viewers: u64) -> anyhow::Result<Stats> {
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    Ok(rt.block_on(worker(plan, first, viewers)))
}

async fn worker(plan: Plan, first: u64, viewers: u64) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::new(plan.sample_cap)));
    let running = Rc::new(Cell::new(0u64));
    let handles: Vec<_> = (first..first + viewers)
        .map(|id| {
            running.set(running.get() + 1);
            let guard = Running(running.clone());
            let (plan, stats) = (plan.clone(), stats.clone());
            monoio::spawn(async move {
                let _guard = guard;
                viewer(&plan, &stats, id).await;
            })
        })
        .collect();
    let all = async {
        for h in handles {
            h.await;
        }
    };
    let hard_stop = monoio::time::Instant::from_std(plan.hard_stop);
    if monoio::time::timeout_at(hard_stop, all).await.is_err() {
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

async fn viewer(plan: &Plan, stats: &RefCell<Stats>, id: u64) {
    // Seeded by the viewer number: the same run plan staggers the same way every time.
    let mut rng = SplitMix(id);
    let offset = STAGGER.mul_f64(rng.unit());
    monoio::time::sleep_until(monoio::time::Instant::from_std(plan.start + offset)).await;
    let mut v = Viewer {
        plan,
        stats,
        conn: Conn::new(plan.addr, plan.host.clone(), plan.timeout),
    };
    let mut media: Option<String> = None;
    while Instant::now() < plan.end {
        let path = match &media {
            Some(p) => p.clone(),
            None => match v.media_path().await {
                Some(p) => p,
                None => {
                    monoio::time::sleep(ERROR_BACKOFF).await;
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
            monoio::time::sleep(ERROR_BACKOFF).await;
        }
    }
}

struct Viewer<'a> {
    plan: &'a Plan,
    stats: &'a RefCell<Stats>,
    conn: Conn,
}

impl Viewer<'_> {
    /// GETs `target`; counts the request, its bytes and any error. `None` when it failed.
    async fn get(&mut self, target: &str) -> Result<Response, ClientError> {
        let res = self.conn.get(target).await;
        let mut s = self.stats.borrow_mut();
        s.bytes += self.conn.take_bytes_read();
        s.connects += self.conn.take_connects();
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
