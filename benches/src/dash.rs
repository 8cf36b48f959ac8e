//! Low-latency DASH viewers: each one a task with a connection for the MPD and one per track
//! (see `viewers` for the protocols and the workers), like a browser player's parallel
//! requests.
//!
//! ```text
//! MPD connection:   GET index.mpd ─ every minimumUpdatePeriod ─▶ GET index.mpd ─▶ …
//!                        │ shared, latest wins
//! video connection:      ├─▶ GET init (once per URL) ─▶ GET newest segment N (chunked while
//! audio connection:      └─▶ …                          it is written) ─▶ GET N+1 ─▶ …
//!                                                       TTFB: request → response head
//!                                                       lateness: last byte − segment end
//! ```
//!
//! The first segment of a track is the newest the MPD lists (the last `S`: in a low-latency
//! MPD, the one being written). Then the next number, at once when the MPD says segments are
//! served while they are written (`availabilityTimeComplete="false"`: the server holds the
//! request until the segment starts), else at its availability time (end − availability
//! time offset). A `$Time$` template can only address listed segments: the viewer waits for
//! an MPD that lists the next one. A 404 (the server refuses a held request whose segment
//! starts a new Period) sends the track back to the newest listed segment it has not received.
//!
//! A segment's end is the start of the next listed segment in the latest MPD, or its own
//! `t + d` (a forecast for the segment being written); lateness compares it with the arrival
//! of the last byte on the server's clock, which the `UTCTiming` resource gives once, before
//! the run (both on loopback: the offset is tiny, but the arithmetic is the same as a
//! player's). It plays nothing and does not check media bytes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};

use crate::client::Client;
use crate::mpd::{self, Kind, Mpd};
use crate::stats::{ErrorKind, Stats};
use crate::viewers::{preflight, Fetcher, NewClient, Plan, Play, Rt, ERROR_BACKOFF};

impl Play for Setup {
    fn play<R: Rt, C: Client + 'static>(
        &self,
        plan: &Plan,
        stats: &RefCell<Stats>,
        new_client: &NewClient<C>,
    ) -> impl std::future::Future<Output = ()> {
        viewer::<R, C>(plan, self, stats, new_client)
    }
}

/// How the viewers schedule and time their requests, settled before the run.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// Request the next segment as soon as the previous one is received, when the MPD says
    /// segments are served while written; otherwise (or when false) at its availability time.
    pub(crate) eager: bool,
    /// The MPD is refreshed at most this often (zero: every `minimumUpdatePeriod`).
    pub(crate) min_update_period: Duration,
    /// Server clock − local clock, microseconds.
    pub(crate) clock_offset_us: i64,
    /// Where the offset came from, for the report.
    pub(crate) clock: String,
}

/// Fetches and parses the MPD once (a server that does not serve one is one clear error),
/// then its `UTCTiming` resource for the clock offset (failing that, the local clock).
pub(crate) fn setup(
    plan: &Plan,
    eager: bool,
    min_update_period: Duration,
) -> anyhow::Result<Setup> {
    let (sys0, inst0) = (unix_now_us(), Instant::now());
    let mut got = preflight(plan, &[&plan.path])?;
    let (_, r) = got.pop().context("no preflight response")?;
    if r.status != 200 {
        bail!(
            "GET {}: {} {}",
            plan.path,
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        );
    }
    let text = std::str::from_utf8(&r.body).with_context(|| format!("{}: not UTF-8", plan.path))?;
    let mpd = mpd::parse(text, &plan.path).with_context(|| plan.path.clone())?;
    let Some(time) = mpd.utc_timing else {
        return Ok(Setup {
            eager,
            min_update_period,
            clock_offset_us: 0,
            clock: "local (the MPD has no UTCTiming)".to_owned(),
        });
    };
    let (clock_offset_us, clock) = match preflight(plan, &[&time]) {
        Ok(mut v) => match v.pop() {
            Some((sent, r)) if r.status == 200 => {
                let text = String::from_utf8_lossy(&r.body);
                match mpd::date_time_us(text.trim()) {
                    Ok(server_us) => {
                        // The server read its clock about halfway between request and answer.
                        let mid = (sent - inst0) + (r.head_at - sent) / 2;
                        let local_us = sys0 + i64::try_from(mid.as_micros()).unwrap_or(0);
                        let offset = server_us - local_us;
                        let ms = offset as f64 / 1e3;
                        (
                            offset,
                            format!("UTCTiming {time}: server − local {ms:+.1} ms"),
                        )
                    }
                    Err(e) => (0, format!("local (UTCTiming {time}: {e})")),
                }
            }
            Some((_, r)) => (0, format!("local (UTCTiming {time}: {})", r.status)),
            None => (0, format!("local (UTCTiming {time}: no response)")),
        },
        Err(e) => (0, format!("local (UTCTiming {time}: {e:#})")),
    };
    Ok(Setup {
        eager,
        min_update_period,
        clock_offset_us,
        clock,
    })
}

/// The local clock, Unix microseconds.
fn unix_now_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// What a viewer's connections share: the latest MPD.
struct Shared {
    mpd: RefCell<Rc<Mpd>>,
    /// When the latest MPD's request was sent.
    fetched: Cell<Instant>,
    /// `Setup::min_update_period`.
    min_update_period: Duration,
}

impl Shared {
    fn mpd(&self) -> Rc<Mpd> {
        self.mpd.borrow().clone()
    }

    /// When the next MPD is due (a moment after it, for a track waiting for it to list a
    /// segment); `None` when the MPD is not refreshed.
    fn next_refresh(&self) -> Option<Instant> {
        let mpd = self.mpd.borrow();
        let period = mpd.minimum_update_period.filter(|_| mpd.dynamic)?;
        Some(self.fetched.get() + period.max(self.min_update_period))
    }
}

/// One viewer, from its start until the end of the run.
pub(crate) async fn viewer<R: Rt, C: Client>(
    plan: &Plan,
    setup: &Setup,
    stats: &RefCell<Stats>,
    new_client: &NewClient<C>,
) {
    let mut http = Fetcher {
        stats,
        client: new_client(),
    };
    let (first, fetched) = loop {
        if Instant::now() >= plan.end {
            return;
        }
        let sent = Instant::now();
        match fetch_mpd(&mut http, &plan.path).await {
            Some(mpd) => break (mpd, sent),
            None => R::sleep_until(Instant::now() + ERROR_BACKOFF).await,
        }
    };
    let kinds: Vec<Kind> = first.period.tracks.iter().map(|t| t.kind).collect();
    let shared = Shared {
        mpd: RefCell::new(Rc::new(first)),
        fetched: Cell::new(fetched),
        min_update_period: setup.min_update_period,
    };
    let tracks = kinds.into_iter().map(|kind| {
        let http = Fetcher {
            stats,
            client: new_client(),
        };
        follow::<R, C>(plan, setup, &shared, kind, http)
    });
    futures_util::future::join(
        refresh::<R, C>(plan, &shared, http),
        futures_util::future::join_all(tracks),
    )
    .await;
}

/// GETs and parses the MPD; errors are counted. `None` when it failed.
async fn fetch_mpd<C: Client>(http: &mut Fetcher<'_, C>, path: &str) -> Option<Mpd> {
    let r = http.get(path).await.ok()?;
    let parsed = std::str::from_utf8(&r.body)
        .map_err(|_| "not UTF-8".to_owned())
        .and_then(|text| mpd::parse(text, path).map_err(|e| e.to_string()));
    match parsed {
        Ok(mpd) => {
            http.stats.borrow_mut().mpds += 1;
            Some(mpd)
        }
        Err(e) => {
            http.error(ErrorKind::BadMpd, &format!("{path}: {e}"));
            None
        }
    }
}

/// Fetches the MPD every `minimumUpdatePeriod` (from the previous request) until the run
/// ends; a failed fetch is counted and retried at the next period.
async fn refresh<R: Rt, C: Client>(plan: &Plan, shared: &Shared, mut http: Fetcher<'_, C>) {
    while let Some(due) = shared.next_refresh() {
        if due >= plan.end {
            return;
        }
        R::sleep_until(due).await;
        let sent = Instant::now();
        if let Some(mpd) = fetch_mpd(&mut http, &plan.path).await {
            *shared.mpd.borrow_mut() = Rc::new(mpd);
        } else {
            R::sleep_until(Instant::now() + ERROR_BACKOFF).await;
        }
        shared.fetched.set(sent);
    }
}

/// Follows one track's live edge on its own connection until the run ends.
async fn follow<R: Rt, C: Client>(
    plan: &Plan,
    setup: &Setup,
    shared: &Shared,
    kind: Kind,
    mut http: Fetcher<'_, C>,
) {
    let backoff = || R::sleep_until(Instant::now() + ERROR_BACKOFF);
    // The segment to request next (`None`: the newest listed), the Period it belongs to, the
    // last segment received (with its Period), the init segment received, and since when
    // the MPD has not listed the segment wanted.
    let mut next: Option<u64> = None;
    let mut period: Option<(Option<String>, i64)> = None;
    let mut received: Option<((Option<String>, i64), u64)> = None;
    let mut init: Option<String> = None;
    let mut unlisted_since: Option<Instant> = None;
    while Instant::now() < plan.end {
        let mpd = shared.mpd();
        let Some(track) = mpd.track(kind) else {
            http.error(
                ErrorKind::BadMpd,
                &format!("{}: no {} AdaptationSet any more", plan.path, kind.label()),
            );
            backoff().await;
            continue;
        };
        let key = (mpd.period.id.clone(), mpd.period.start_us);
        if period.as_ref() != Some(&key) {
            // A new Period (a publisher reconnect): go on if it lists the next number, else
            // start again at its newest segment.
            if next.is_some_and(|n| track.find(n).is_none()) {
                next = None;
            }
            period = Some(key);
        }
        match track.init_path() {
            Ok(Some(path)) if init.as_ref() != Some(&path) => {
                if http.get(&path).await.is_ok() {
                    http.stats.borrow_mut().inits += 1;
                    init = Some(path);
                } else {
                    backoff().await;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                http.error(ErrorKind::BadMpd, &format!("{}: {e}", plan.path));
                backoff().await;
                continue;
            }
        }

        let first_listed = track.segments.first().map_or(0, |s| s.number);
        // `Err(n)`: segment n can only be asked for once an MPD lists it.
        let seg = match next {
            None => match track.segments.last() {
                // Back at the live edge after a refusal: what was received already is not
                // asked for again; wait for an MPD listing something newer (or a new Period).
                Some(s)
                    if received
                        .as_ref()
                        .is_some_and(|(k, n)| period.as_ref() == Some(k) && s.number <= *n) =>
                {
                    Err(s.number + 1)
                }
                s => Ok(s.copied()),
            },
            Some(n) if n < first_listed => Ok(None),
            // Only the MPD can tell where a `$Time$` segment starts.
            Some(n) if track.needs_time() => track.find(n).map(|s| Some(*s)).ok_or(n),
            Some(n) => Ok(track.segment(n)),
        };
        let seg = match seg {
            Ok(seg) => seg,
            Err(n) => {
                let since = *unlisted_since.get_or_insert_with(Instant::now);
                if since.elapsed() > plan.timeout {
                    let detail = format!(
                        "{}: segment {n} of the {} track not listed after {:?}",
                        plan.path,
                        kind.label(),
                        plan.timeout
                    );
                    http.error(ErrorKind::Timeout, &detail);
                    (next, unlisted_since) = (None, None);
                    continue;
                }
                let wake = shared
                    .next_refresh()
                    .map_or(Instant::now() + ERROR_BACKOFF, |d| {
                        d.max(Instant::now()) + Duration::from_millis(10)
                    });
                R::sleep_until(wake).await;
                continue;
            }
        };
        unlisted_since = None;
        let Some(seg) = seg else {
            // Fell behind the MPD's window: back to the live edge.
            next = None;
            continue;
        };
        let path = match track.media_path(&seg) {
            Ok(p) => p,
            Err(e) => {
                http.error(ErrorKind::BadMpd, &format!("{}: {e}", plan.path));
                backoff().await;
                continue;
            }
        };
        let eager = setup.eager && !track.availability_time_complete;
        if !eager {
            let at = mpd.availability_start_us + track.available_us(&seg) - setup.clock_offset_us;
            let wait = at - unix_now_us();
            if wait > 0 {
                let wake = Instant::now() + Duration::from_micros(wait.unsigned_abs());
                if wake >= plan.end {
                    return;
                }
                R::sleep_until(wake).await;
            }
        }

        let sent = Instant::now();
        match http.get(&path).await {
            Ok(r) => {
                let done_us = unix_now_us() + setup.clock_offset_us;
                // The end as the latest MPD knows it, if it is still the same Period.
                let latest = shared.mpd();
                let same_period = |m: &Mpd| {
                    period.as_ref().is_some_and(|(id, start)| {
                        *id == m.period.id && *start == m.period.start_us
                    })
                };
                let end_us = latest
                    .track(kind)
                    .filter(|_| same_period(&latest))
                    .and_then(|t| t.find(seg.number).map(|s| t.end_us(s)))
                    .map_or_else(
                        || mpd.availability_start_us + track.end_us(&seg),
                        |end| latest.availability_start_us + end,
                    );
                let mut s = http.stats.borrow_mut();
                s.ttfb
                    .push_duration(r.head_at.saturating_duration_since(sent));
                s.lateness.push(done_us - end_us);
                next = Some(seg.number + 1);
                received = period.clone().map(|k| (k, seg.number));
            }
            Err(e) => {
                if e.kind == ErrorKind::Status404 {
                    next = None;
                }
                backoff().await;
            }
        }
    }
}
