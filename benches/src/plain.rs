//! Plain-HLS viewers: each one a task with one connection (see `viewers` for the protocols and
//! the workers), polling the media playlist and fetching each new segment once, like a player
//! without the low-latency extensions. They work against any HLS server: zerocast (its media
//! playlist without `_HLS_` parameters: the LL-HLS tags are there, a plain player ignores
//! them and reads the segment lines) and nginx-rtmp (a media playlist with relative MPEG-TS
//! segment URIs).
//!
//! ```text
//! GET URL ─ multivariant? ─ yes ─▶ GET its (last) variant's media playlist ─┐
//!               │ no: URL is the media playlist                              │
//!               ▼                                                            ▼
//!   newest segment listed ─▶ GET it ─▶ wait ─▶ GET media playlist ─▶ GET each segment with a
//!                                       ▲        higher sequence number, in order ─┐
//!                                       └───────────────────────────────────────────┘
//! ```
//!
//! The wait follows RFC 8216 §6.3.4: the next reload is sent a target duration after the
//! previous one was sent when that one listed something new, half a target duration after
//! it otherwise. A viewer starts at the newest complete segment, as a live player would after
//! its first playlist (hls.js starts further back, which changes no request rate).
//!
//! It measures every request's time (sent → body received) and each segment's lateness: body
//! received − the first time any viewer of the run saw the segment listed. With hundreds of
//! viewers polling at staggered times, that first sighting is within a few milliseconds of
//! the server listing the segment, so lateness needs no clock of the server's: it is the
//! polling delay (up to one target duration, by design) plus the fetch, and it grows beyond
//! one target duration when the server falls behind. It plays nothing and does not check
//! media bytes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use zerocast_packager::check;

use crate::client::Client;
use crate::stats::{ErrorKind, Stats};
use crate::viewers::{preflight, resolve, Fetcher, NewClient, Plan, Play, Rt, ERROR_BACKOFF};

/// Sightings kept before old ones are dropped (a 20-segment window needs 20).
const SIGHTINGS_KEPT: usize = 1024;
/// Sightings older than this are dropped when there are too many.
const SIGHTING_TTL: Duration = Duration::from_secs(120);

/// Plain-HLS viewers, sharing the first sighting of each segment across the whole run.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlainHls {
    sightings: Sightings,
}

impl Play for PlainHls {
    fn play<R: Rt, C: Client + 'static>(
        &self,
        plan: &Plan,
        stats: &RefCell<Stats>,
        new_client: &NewClient<C>,
    ) -> impl std::future::Future<Output = ()> {
        viewer::<R, C>(plan, &self.sightings, stats, new_client())
    }
}

/// Checks before the run that the URL serves a playlist this viewer can follow (a server
/// that does not is one clear error, not one per request).
pub(crate) fn setup(plan: &Plan) -> anyhow::Result<PlainHls> {
    let mut path = plan.path.clone();
    // At most one multivariant playlist, then a media playlist.
    for _ in 0..2 {
        let (_, r) = preflight(plan, &[&path])?
            .pop()
            .context("no preflight response")?;
        let text = std::str::from_utf8(&r.body).with_context(|| format!("{path}: not UTF-8"))?;
        if r.status != 200 {
            bail!("GET {path}: {} {}", r.status, text.trim());
        }
        match variant_uri(text) {
            Some(uri) => path = resolve(&path, uri),
            None => {
                let listing = Listing::parse(text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
                if listing.segments.is_empty() {
                    bail!("{path}: no complete segment listed yet");
                }
                return Ok(PlainHls::default());
            }
        }
    }
    bail!("{}: a multivariant playlist that lists another", plan.path)
}

/// The first time any viewer of the run saw each segment listed, by path.
#[derive(Debug, Clone, Default)]
struct Sightings(Arc<Mutex<HashMap<String, Instant>>>);

impl Sightings {
    /// Records that `path` was seen listed at `at`; returns the first sighting (`at` if this
    /// is it).
    fn saw(&self, path: &str, at: Instant) -> Instant {
        // A poisoned lock only means another worker panicked; the map is still consistent.
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(first) = map.get(path) {
            return *first;
        }
        if map.len() >= SIGHTINGS_KEPT {
            map.retain(|_, t| at.saturating_duration_since(*t) < SIGHTING_TTL);
        }
        map.insert(path.to_owned(), at);
        at
    }
}

/// The URI of a multivariant playlist's last variant; `None` for a media playlist.
fn variant_uri(text: &str) -> Option<&str> {
    if !text.lines().any(|l| l.starts_with("#EXT-X-STREAM-INF:")) {
        return None;
    }
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
}

/// What a plain player reads from a media playlist.
#[derive(Debug, PartialEq)]
struct Listing {
    /// `EXT-X-TARGETDURATION`.
    target: Duration,
    /// Complete segments in order: (media sequence number, URI as written). An LL-HLS
    /// playlist's trailing parts (the segment being written) are not one.
    segments: Vec<(u64, String)>,
}

impl Listing {
    fn parse(text: &str) -> Result<Self, String> {
        let pl = check::parse(text)?;
        let target = pl
            .target_duration
            .filter(|t| *t > 0)
            .ok_or("no EXT-X-TARGETDURATION")?;
        if pl.skipped > 0 {
            return Err("EXT-X-SKIP in a playlist asked for in full".into());
        }
        let segments = pl
            .segments
            .into_iter()
            .filter_map(|s| Some((s.msn, s.uri?)))
            .collect();
        Ok(Self {
            target: Duration::from_secs(target),
            segments,
        })
    }

    /// The segments to fetch after having fetched up to `last`: every newer one, or the newest
    /// alone at the start (`None`) or when the sequence went back (a new stream instance).
    fn fresh(&self, last: Option<u64>) -> &[(u64, String)] {
        let newest = self.segments.len().saturating_sub(1);
        match last {
            Some(l) if self.segments.last().is_some_and(|(n, _)| *n >= l) => {
                let from = self.segments.partition_point(|(n, _)| *n <= l);
                &self.segments[from..]
            }
            _ => &self.segments[newest..],
        }
    }
}

/// When to send the next reload (RFC 8216 §6.3.4): a target duration after the previous
/// request was sent if it listed something new, half of one otherwise.
fn next_reload(sent: Instant, target: Duration, changed: bool) -> Instant {
    sent + if changed { target } else { target / 2 }
}

/// Where a viewer goes next after a failure.
enum Step {
    /// Fetch the playlist given on the command line again (the stream or its instance
    /// changed).
    Restart,
    /// Fetch the media playlist again, from the newest segment.
    Reload,
}

/// One viewer on one connection, from its start until the end of the run.
async fn viewer<R: Rt, C: Client>(
    plan: &Plan,
    sightings: &Sightings,
    stats: &RefCell<Stats>,
    client: C,
) {
    let mut v = Viewer {
        plan,
        sightings,
        http: Fetcher { stats, client },
    };
    let backoff = || R::sleep_until(Instant::now() + ERROR_BACKOFF);
    // The media playlist's path, and the first response when the URL given is one.
    let mut media: Option<String> = None;
    while Instant::now() < plan.end {
        let (path, first) = match media.take() {
            Some(p) => (p, None),
            None => match v.start().await {
                Ok(start) => start,
                Err(()) => {
                    backoff().await;
                    continue;
                }
            },
        };
        match v.follow::<R>(&path, first).await {
            None => return,
            Some(Step::Restart) => {}
            Some(Step::Reload) => media = Some(path),
        }
        backoff().await;
    }
}

struct Viewer<'a, C> {
    plan: &'a Plan,
    sightings: &'a Sightings,
    http: Fetcher<'a, C>,
}

impl<C: Client> Viewer<'_, C> {
    fn bad_playlist(&self, detail: String) {
        self.http.error(ErrorKind::BadPlaylist, &detail);
    }

    /// GETs `target`, counting its time when it succeeds.
    async fn get(&mut self, target: &str) -> Result<bytes::Bytes, ErrorKind> {
        let sent = Instant::now();
        let r = self.http.get(target).await.map_err(|e| e.kind)?;
        self.http
            .stats
            .borrow_mut()
            .request_time
            .push_duration(sent.elapsed());
        Ok(r.body)
    }

    /// GETs and parses a media playlist; `Ok(Err(path))` when it is a multivariant one, with
    /// the path of its (last) variant.
    async fn playlist(&mut self, target: &str) -> Result<Result<Listing, String>, Step> {
        let body = self.get(target).await.map_err(|kind| match kind {
            ErrorKind::Status404 => Step::Restart,
            _ => Step::Reload,
        })?;
        let Ok(text) = std::str::from_utf8(&body) else {
            self.bad_playlist(format!("{target}: not UTF-8"));
            return Err(Step::Reload);
        };
        if let Some(uri) = variant_uri(text) {
            return Ok(Err(resolve(target, uri)));
        }
        match Listing::parse(text) {
            Ok(l) => {
                self.http.stats.borrow_mut().full_playlists += 1;
                Ok(Ok(l))
            }
            Err(e) => {
                self.bad_playlist(format!("{target}: {e}"));
                Err(Step::Reload)
            }
        }
    }

    /// Fetches the URL given: the media playlist's path and, when the URL is the media
    /// playlist itself, that first response (with when it was sent), so it is not asked for
    /// twice. `Err` when it failed (counted).
    async fn start(&mut self) -> Result<(String, Option<(Instant, Listing)>), ()> {
        let index = self.plan.path.clone();
        let sent = Instant::now();
        match self.playlist(&index).await {
            Ok(Ok(listing)) => Ok((index, Some((sent, listing)))),
            Ok(Err(media)) => Ok((media, None)),
            Err(_) => Err(()),
        }
    }

    /// Follows `media` until the run ends (`None`) or something fails (`Some(step)`, the
    /// error already counted). `first` is a response to use before the first reload.
    async fn follow<R: Rt>(
        &mut self,
        media: &str,
        mut first: Option<(Instant, Listing)>,
    ) -> Option<Step> {
        let mut last: Option<u64> = None;
        while Instant::now() < self.plan.end {
            let (sent, listing) = match first.take() {
                Some(f) => f,
                None => {
                    let sent = Instant::now();
                    match self.playlist(media).await {
                        Ok(Ok(l)) => (sent, l),
                        Ok(Err(_)) => {
                            self.bad_playlist(format!("{media}: a multivariant playlist"));
                            return Some(Step::Restart);
                        }
                        Err(step) => return Some(step),
                    }
                }
            };
            let listed_at = Instant::now();
            if listing.segments.is_empty() {
                self.bad_playlist(format!("{media}: no complete segment"));
                return Some(Step::Reload);
            }
            let fresh = listing.fresh(last);
            let changed = !fresh.is_empty();
            for (msn, uri) in fresh {
                let path = resolve(media, uri);
                let seen = self.sightings.saw(&path, listed_at);
                if self.get(&path).await.is_err() {
                    return Some(Step::Reload);
                }
                let mut s = self.http.stats.borrow_mut();
                s.segments += 1;
                s.lateness.push_duration(seen.elapsed());
                last = Some(*msn);
            }
            let due = next_reload(sent, listing.target, changed);
            if due >= self.plan.end {
                return None;
            }
            R::sleep_until(due).await;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What nginx-rtmp 1.2 (Debian's libnginx-mod-rtmp) wrote with `hls_fragment 1s`.
    const NGINX: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:5\n\
        #EXT-X-TARGETDURATION:1\n#EXT-X-DISCONTINUITY\n#EXTINF:1.000,\ndemo-5.ts\n\
        #EXTINF:1.000,\ndemo-6.ts\n#EXTINF:1.000,\ndemo-7.ts\n";

    /// zerocast's media playlist as a client without `_HLS_` parameters gets it (shortened).
    const ZEROCAST: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n\
        #EXT-X-MEDIA-SEQUENCE:3\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6,CAN-SKIP-UNTIL=6\n\
        #EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MAP:URI=\"init1.mp4\"\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-11-30T07:20:58.784Z\n#EXTINF:1,\nseg3.m4s\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-11-30T07:20:59.784Z\n\
        #EXT-X-PART:DURATION=0.2,URI=\"part20.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.2,URI=\"part21.m4s\"\n#EXTINF:1,\nseg4.m4s\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-11-30T07:21:00.784Z\n\
        #EXT-X-PART:DURATION=0.2,URI=\"part25.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.2,URI=\"part26.m4s\"\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part27.m4s\"\n";

    const MULTIVARIANT: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
        #EXT-X-STREAM-INF:BANDWIDTH=3118997,CODECS=\"avc1.64001f,mp4a.40.2\",\
        RESOLUTION=1280x720,FRAME-RATE=29.998\n1a22b540e5e/stream.m3u8\n";

    fn segs(l: &[(u64, String)]) -> Vec<(u64, &str)> {
        l.iter().map(|(n, u)| (*n, u.as_str())).collect()
    }

    #[test]
    fn reads_nginx_rtmp_playlists() {
        assert_eq!(variant_uri(NGINX), None);
        let l = Listing::parse(NGINX).unwrap();
        assert_eq!(l.target, Duration::from_secs(1));
        assert_eq!(
            segs(&l.segments),
            [(5, "demo-5.ts"), (6, "demo-6.ts"), (7, "demo-7.ts")]
        );
        assert_eq!(resolve("/hls/demo.m3u8", "demo-7.ts"), "/hls/demo-7.ts");
    }

    #[test]
    fn reads_zerocast_playlists() {
        assert_eq!(variant_uri(MULTIVARIANT), Some("1a22b540e5e/stream.m3u8"));
        let l = Listing::parse(ZEROCAST).unwrap();
        assert_eq!(l.target, Duration::from_secs(1));
        // The parts after seg4 (the segment being written) are not a segment.
        assert_eq!(segs(&l.segments), [(3, "seg3.m4s"), (4, "seg4.m4s")]);
        let media = resolve("/live/demo/index.m3u8", "1a22b540e5e/stream.m3u8");
        assert_eq!(
            resolve(&media, "seg4.m4s"),
            "/live/demo/1a22b540e5e/seg4.m4s"
        );
    }

    #[test]
    fn rejects_what_a_plain_player_cannot_follow() {
        assert!(Listing::parse("#EXTM3U\n#EXTINF:1,\na.ts\n").is_err());
        assert!(Listing::parse("not a playlist").is_err());
        let skipped = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n\
            #EXTINF:1,\nseg9.m4s\n";
        assert!(Listing::parse(skipped).is_err());
    }

    #[test]
    fn picks_the_segments_to_fetch() {
        let l = Listing::parse(NGINX).unwrap();
        // Start at the newest, then every newer one in order, then nothing until a new one.
        assert_eq!(segs(l.fresh(None)), [(7, "demo-7.ts")]);
        assert_eq!(segs(l.fresh(Some(5))), [(6, "demo-6.ts"), (7, "demo-7.ts")]);
        assert!(l.fresh(Some(7)).is_empty());
        // Fell behind the window: everything listed is newer.
        assert_eq!(l.fresh(Some(2)).len(), 3);
        // The sequence went back (a new stream): the newest alone.
        assert_eq!(segs(l.fresh(Some(40))), [(7, "demo-7.ts")]);
    }

    #[test]
    fn paces_reloads_like_a_player() {
        let t = Instant::now();
        let target = Duration::from_secs(1);
        assert_eq!(next_reload(t, target, true), t + target);
        assert_eq!(next_reload(t, target, false), t + target / 2);
    }

    #[test]
    fn keeps_the_first_sighting() {
        let s = Sightings::default();
        let t = Instant::now();
        assert_eq!(s.saw("/a", t), t);
        assert_eq!(s.saw("/a", t + Duration::from_secs(1)), t);
        assert_eq!(
            s.saw("/b", t + Duration::from_secs(2)),
            t + Duration::from_secs(2)
        );
    }
}
