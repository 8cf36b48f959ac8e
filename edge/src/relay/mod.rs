//! Edge mode: following streams on an origin (`origin` in the config).
//!
//! A request for a stream this node does not have starts one follower for that name. The
//! follower reads the origin's LL-HLS exactly as a player does (multivariant playlist, media
//! playlist, init segment, then the preload-hinted part, streamed as the origin writes it,
//! and a blocking reload for the part after it), takes the frames back out of the fMP4
//! ([`zerocast_packager::demux`]) and publishes them into this node's hub as if they came
//! from an RTMP publisher. Viewers of the edge get the same URLs and semantics as on the
//! origin (blocking reloads, preload hints, parts streamed while written, DASH), from memory.
//!
//! - **Merged requests**: one follower per stream, whatever the number of viewers: the origin
//!   sees one request per part per edge, and one blocking reload.
//! - **Latency**: a frame is published when its CMAF chunk has arrived whole; the edge's own
//!   packager holds it until the next frame (for its duration), so a tier adds about one frame.
//! - **Edge of edge**: an edge serves the same LL-HLS, so another edge may follow it.
//! - **Failover and restarts**: when the origin fails, the follower releases the stream (the
//!   hub's grace window: viewers wait, then see a discontinuity), tries the next origin URL
//!   with a backoff, and continues the timeline on the same stream.
//! - **Linger**: a stream nobody watched for `edge-linger` is dropped, and its follower stops.
//! - **Bounded**: at most `max-streams` followers; a name the origin does not have is
//!   remembered as missing for [`MISSING_FOR`] (at most [`MAX_MISSING`] names), so a flood of
//!   unknown names costs the origin about one request per name per interval.
//!
//! Followers run on worker 0 (the hub carries their frames to every core).

mod client;
pub mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zerocast_core::Frame;
use zerocast_packager::check::{self, ParsedPlaylist, ParsedSegment};
use zerocast_packager::demux::{self, FragmentSplitter, Init};
use zerocast_packager::Pdt;

use crate::hub::{lock, Stream};
use crate::notify::Notify;
use crate::publish::{Grant, PublisherId};
use crate::sources::Role;
use crate::url::HttpUrl;
use crate::Ctx;
use client::Upstream;

/// A name the origin did not have is not asked for again for this long.
pub const MISSING_FOR: Duration = Duration::from_secs(2);
/// Names remembered as missing at most.
pub const MAX_MISSING: usize = 4096;
/// Largest playlist accepted from an origin.
const MAX_PLAYLIST: u64 = 1 << 20;
/// Largest init segment accepted.
const MAX_INIT: u64 = 1 << 20;
/// Largest part accepted (the fragment splitter also bounds each box).
const MAX_PART: u64 = demux::MAX_BOX;
/// Waits between failed attempts: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// An origin silent this long makes the follower release its stream: the stream's
/// `reconnect-grace` starts, and the next session continues it after a discontinuity.
const RELEASE_AFTER: Duration = Duration::from_secs(1);
/// A session with an origin that lasted this long was healthy (see the backoff).
const HEALTHY: Duration = Duration::from_secs(5);
/// The longest a viewer's request waits for a follower to find its stream.
pub const FIRST_PART_WAIT: Duration = Duration::from_secs(8);

/// The followers of this node.
#[derive(Debug)]
pub struct Relay {
    origins: Vec<HttpUrl>,
    linger: Duration,
    max: usize,
    state: Mutex<State>,
    /// Names were queued for the manager.
    wake: Notify,
    /// A follower claimed its stream, or gave up: viewers waiting for a name look again.
    pub changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Names with a follower (running or about to start).
    running: HashSet<String>,
    /// Names waiting for the manager to start their follower.
    queue: VecDeque<String>,
    /// Names the origins did not have, and when that was found.
    missing: HashMap<String, Instant>,
}

/// What [`Relay::want`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// A follower is on it.
    Following,
    /// The origins do not have it (recently asked).
    Missing,
    /// `max-streams` followers are running.
    Full,
}

impl Relay {
    /// Followers of streams on `origins` (tried in order on failure), each stopping after
    /// `linger` without viewers; at most `max` at once.
    pub fn new(origins: Vec<HttpUrl>, linger: Duration, max: usize) -> Self {
        Self {
            origins,
            linger,
            max: max.max(1),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            changed: Notify::new(),
        }
    }

    /// Asks for `name` to be followed (starting a follower if none is on it).
    pub fn want(&self, name: &str) -> Wanted {
        let mut st = lock(&self.state);
        if st.running.contains(name) {
            return Wanted::Following;
        }
        if let Some(t) = st.missing.get(name) {
            if t.elapsed() < MISSING_FOR {
                return Wanted::Missing;
            }
            st.missing.remove(name);
        }
        if st.running.len() >= self.max {
            return Wanted::Full;
        }
        st.running.insert(name.to_owned());
        st.queue.push_back(name.to_owned());
        drop(st);
        self.wake.notify_all();
        Wanted::Following
    }

    /// The follower of `name` stopped; `missing`: because no origin had it (or answered).
    fn stopped(&self, name: &str, missing: bool) {
        let mut st = lock(&self.state);
        st.running.remove(name);
        if missing {
            if st.missing.len() >= MAX_MISSING {
                let now = Instant::now();
                st.missing
                    .retain(|_, t| now.duration_since(*t) < MISSING_FOR);
                if st.missing.len() >= MAX_MISSING {
                    st.missing.clear();
                }
            }
            st.missing.insert(name.to_owned(), Instant::now());
        }
        drop(st);
        self.changed.notify_all();
    }

    fn take_queued(&self) -> Vec<String> {
        lock(&self.state).queue.drain(..).collect()
    }
}

/// Starts the followers asked for, until shutdown. Runs on worker 0.
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let Some(relay) = ctx.relay.as_ref() else {
        return;
    };
    loop {
        let seen = relay.wake.seq();
        for name in relay.take_queued() {
            monoio::spawn(follow(ctx.clone(), name));
        }
        let shut = ctx.shutdown_signal.seq();
        if ctx.shutting_down() {
            return;
        }
        monoio::select! {
            _ = relay.wake.changed(seen) => {}
            _ = ctx.shutdown_signal.changed(shut) => return,
        }
    }
}

/// Why a session with an origin ended.
enum End {
    /// The origin ended the stream (`EXT-X-ENDLIST`).
    Ended,
    /// Nobody watched for `edge-linger`.
    Idle,
    Shutdown,
}

/// Why a session with an origin failed.
enum Failure {
    /// The origin does not have the stream.
    NotFound,
    /// Anything else: the origin is down, restarted, slow or sent something wrong.
    Other(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Other(e)
    }
}

impl From<&str> for Failure {
    fn from(e: &str) -> Self {
        Failure::Other(e.to_owned())
    }
}

/// Follows one stream until it ends, nobody watches it, or no origin has it.
async fn follow(ctx: Arc<Ctx>, name: String) {
    let Some(relay) = ctx.relay.as_ref() else {
        return;
    };
    let mut f = Follower {
        ctx: &ctx,
        relay,
        name: &name,
        stream: None,
        conn: 0,
        idle_since: None,
        resume: None,
        outage: None,
    };
    let mut origin = 0;
    let mut failures = 0u32;
    let end = loop {
        let mut up = Upstream::new(relay.origins[origin].clone());
        let began = Instant::now();
        let failure = match f.session(&mut up).await {
            Ok(end) => break Some(end),
            Err(e) => e,
        };
        // A short outage is ridden out: the next session resumes after the last part fetched,
        // with no discontinuity. A longer one releases the stream (its grace window starts).
        if f.outage.get_or_insert_with(Instant::now).elapsed() >= RELEASE_AFTER {
            f.release();
        }
        // A session that streamed for a while ends a streak of failures: back off from the
        // start again, and log the first failure of the new streak.
        if began.elapsed() >= HEALTHY {
            failures = 0;
        }
        if let Failure::Other(e) = failure {
            if failures.is_multiple_of(20) {
                tracing::warn!(stream = %name, origin = %up.url().host, "edge: {e}");
            }
        }
        failures += 1;
        origin = (origin + 1) % relay.origins.len();
        // No stream yet and every origin answered (404) or failed once: the viewers get a 404.
        if f.stream.is_none() && failures as usize >= relay.origins.len() {
            break None;
        }
        // The hub ended the stream (no origin had it for `reconnect-grace`).
        if f.stream.as_ref().is_some_and(|s| s.has_ended()) {
            break Some(End::Ended);
        }
        if ctx.shutting_down() {
            break Some(End::Shutdown);
        }
        if f.idle() {
            break Some(End::Idle);
        }
        let wait = BACKOFF.0 * 2u32.saturating_pow(failures.min(8) - 1);
        monoio::time::sleep(wait.min(BACKOFF.1)).await;
    };
    match end {
        Some(End::Ended) => {
            if let Some(s) = &f.stream {
                ctx.hub.finish(s, f.conn);
                tracing::info!(stream = %name, "edge: the origin ended the stream");
            }
        }
        Some(End::Idle) => {
            f.release();
            if let Some(s) = &f.stream {
                ctx.hub.forget(s);
                tracing::info!(stream = %name, "edge: nobody watched for {} ms, stopped following", relay.linger.as_millis());
            }
        }
        Some(End::Shutdown) => {}
        // Not found, or no origin answered: either way the name is not asked for again for a
        // moment (a waiting viewer gets a 404 instead of a retry loop).
        None => tracing::debug!(stream = %name, "edge: no origin has the stream"),
    }
    relay.stopped(&name, end.is_none());
}

/// The next part to fetch from the origin.
#[derive(Debug, Clone)]
struct Next {
    /// Its URI as listed (relative to the media playlist).
    uri: String,
    /// Its position as a blocking reload names it: (`_HLS_msn`, `_HLS_part`).
    pos: (u64, usize),
    /// The init segment in force for it.
    map: Option<String>,
    /// Its program date time (Unix ms), when the playlist gives it.
    start_ms: Option<i64>,
}

struct Follower<'a> {
    ctx: &'a Ctx,
    relay: &'a Relay,
    name: &'a str,
    /// The stream this follower publishes into, once claimed.
    stream: Option<Arc<Stream>>,
    /// Its publisher id in the hub for the current session.
    conn: u64,
    idle_since: Option<Instant>,
    /// The origin's media playlist (it names the stream instance) and the last part fetched
    /// from it: a new session with the same instance goes on after that part.
    resume: Option<(String, (u64, usize))>,
    /// Since when no part came.
    outage: Option<Instant>,
}

impl Follower<'_> {
    /// Nobody has watched the stream for `edge-linger`.
    fn idle(&mut self) -> bool {
        let Some(s) = &self.stream else {
            return false;
        };
        if s.stats.viewers.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            self.idle_since = None;
            return false;
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        since.elapsed() >= self.relay.linger
    }

    /// The session's publisher leaves the stream: viewers wait through the grace window,
    /// then see a discontinuity when a new session continues it.
    fn release(&mut self) {
        if let Some(s) = &self.stream {
            if self.conn != 0 {
                self.ctx.hub.release(s, self.conn);
                self.conn = 0;
            }
        }
    }

    /// One session with one origin: from its multivariant playlist to the end of the stream,
    /// or the first failure.
    async fn session(&mut self, up: &mut Upstream) -> Result<End, Failure> {
        let ctx = self.ctx;
        let base = format!("{}live/{}/", with_slash(&up.url().path), self.name);
        let (status, text) = get_text(ctx, up, &format!("{base}index.m3u8")).await?;
        match status {
            200 => {}
            404 => return Err(Failure::NotFound),
            s => return Err(format!("multivariant playlist: status {s}").into()),
        }
        let media_uri = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or("multivariant playlist lists no media playlist")?;
        let media = resolve(&base, media_uri.split('?').next().unwrap_or(""));
        let dir = media[..=media.rfind('/').unwrap_or(0)].to_owned();
        let mut pl = playlist(ctx, up, &media).await?;
        let mut last = None;
        let mut queue = match &self.resume {
            // The same instance of the stream (a dropped connection, an origin that answered
            // late): no part twice.
            Some((path, pos)) if *path == media => {
                last = Some(*pos);
                after(&pl, *pos)
            }
            // A new instance (the origin restarted, or another origin): the edge's stream
            // continues it after a discontinuity.
            _ => {
                self.release();
                start(&pl)
            }
        };
        let mut init: Option<(String, Init)> = None;
        loop {
            if ctx.shutting_down() {
                return Ok(End::Shutdown);
            }
            if self.idle() {
                return Ok(End::Idle);
            }
            let Some(next) = queue.pop_front() else {
                if pl.ended {
                    return Ok(End::Ended);
                }
                let Some((msn, part)) = last else {
                    return Err("the origin's playlist lists no part".into());
                };
                // A blocking reload for the part just fetched: answered at once, it lists that
                // part and hints the next.
                let target = format!("{media}?_HLS_msn={msn}&_HLS_part={part}");
                pl = playlist(ctx, up, &target).await?;
                queue = after(&pl, (msn, part));
                if queue.is_empty() && !pl.ended {
                    return Err("the origin's playlist has no part after the last one".into());
                }
                continue;
            };
            let map = next.map.clone().ok_or("a part without EXT-X-MAP")?;
            let i = match init {
                Some((uri, i)) if uri == map => i,
                _ => self.load_init(up, &resolve(&dir, &map)).await?,
            };
            self.fetch_part(up, &i, &resolve(&dir, &next.uri), next.start_ms)
                .await?;
            init = Some((map, i));
            self.outage = None;
            self.resume = Some((media.clone(), next.pos));
            last = Some(next.pos);
        }
    }

    /// Fetches an init segment and hands its tracks to the stream, claiming the stream (or
    /// continuing it, after a discontinuity) on the session's first.
    async fn load_init(&mut self, up: &mut Upstream, uri: &str) -> Result<Init, Failure> {
        let ctx = self.ctx;
        let status = up.get(ctx, uri, MAX_INIT).await?;
        let body = up.body(ctx).await?;
        if status != 200 {
            return Err(format!("init segment {uri}: status {status}").into());
        }
        let init = demux::read_init(&body).map_err(|e| format!("init segment {uri}: {e}"))?;
        if self.conn == 0 {
            let conn = ctx.hub.next_conn_id();
            let grant = Grant::to(PublisherId::Relay);
            let stream = ctx
                .hub
                .claim(self.name, (conn, Role::Primary), grant, crate::unix_ms())
                .map_err(|e| e.to_string())?;
            if self.stream.is_none() {
                tracing::info!(stream = %self.name, origin = %up.url().host, "edge: following");
            }
            self.stream = Some(stream);
            self.conn = conn;
            self.relay.changed.notify_all();
        }
        if let Some(s) = &self.stream {
            for t in &init.tracks {
                s.track_from(self.conn, t.clone());
            }
        }
        Ok(init)
    }

    /// Fetches one part, publishing each frame as soon as its fragment has arrived whole.
    async fn fetch_part(
        &mut self,
        up: &mut Upstream,
        init: &Init,
        uri: &str,
        start_ms: Option<i64>,
    ) -> Result<(), Failure> {
        let ctx = self.ctx;
        let status = up.get(ctx, uri, MAX_PART).await?;
        if status != 200 {
            // Drain a short error body so the connection stays usable.
            let _ = up.body(ctx).await;
            return Err(format!("part {uri}: status {status}").into());
        }
        let Some(stream) = self.stream.clone() else {
            return Err("a part before the init segment".into());
        };
        let mut splitter = FragmentSplitter::new();
        // Wall-clock time of the part's first frame: its program date time on the origin.
        let mut clock: Option<(i64, i64)> = None;
        while let Some(piece) = up.piece(ctx).await? {
            splitter.push(&piece);
            while let Some(fragment) = splitter.next_fragment().map_err(|e| e.to_string())? {
                let frames = demux::read_fragment(init, &fragment).map_err(|e| e.to_string())?;
                for frame in frames {
                    let wall = wall_clock(&mut clock, start_ms, &frame);
                    stream.frame_from(self.conn, frame, wall, &ctx.metrics);
                }
            }
        }
        if splitter.buffered() > 0 {
            return Err(format!("part {uri} ended inside a fragment").into());
        }
        ctx.metrics.count_relay_part();
        Ok(())
    }
}

/// A frame's wall-clock time: its part's program date time on the origin plus its offset in
/// the part, so the edge's `PROGRAM-DATE-TIME` matches the origin's; the arrival time when the
/// playlist gave none.
fn wall_clock(clock: &mut Option<(i64, i64)>, start_ms: Option<i64>, frame: &Frame) -> i64 {
    let ms = frame.dts.as_millis();
    match start_ms {
        Some(start) => {
            let (wall, media) = *clock.get_or_insert((start, ms));
            wall + (ms - media)
        }
        None => crate::unix_ms(),
    }
}

/// Where to start in a first playlist: the first part of the newest complete segment whose
/// parts are still listed (so the edge has a whole segment as soon as it has caught up, which
/// players want before they start), else the last independent part; then every part after it,
/// and the hinted part. Either way the edge's stream starts at a keyframe.
fn start(pl: &ParsedPlaylist) -> VecDeque<Next> {
    let all = listed(pl);
    let complete = pl
        .segments
        .iter()
        .rev()
        .find(|s| s.uri.is_some() && s.parts.first().is_some_and(|p| p.independent))
        .and_then(|s| all.iter().position(|(n, _)| n.pos == (s.msn, 0)));
    let from = complete
        .or_else(|| all.iter().rposition(|(_, independent)| *independent))
        .unwrap_or(all.len().saturating_sub(1));
    let mut q: VecDeque<Next> = all.into_iter().skip(from).map(|(n, _)| n).collect();
    q.extend(hinted(pl));
    q
}

/// The parts after `pos` in `pl`, then the hinted part.
fn after(pl: &ParsedPlaylist, pos: (u64, usize)) -> VecDeque<Next> {
    let mut q: VecDeque<Next> = listed(pl)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.pos > pos)
        .collect();
    q.extend(hinted(pl));
    q
}

/// Every listed part, with whether it is independent.
fn listed(pl: &ParsedPlaylist) -> Vec<(Next, bool)> {
    let mut out = Vec::new();
    for seg in &pl.segments {
        let mut at = start_ms(seg);
        for (i, p) in seg.parts.iter().enumerate() {
            out.push((
                Next {
                    uri: p.uri.clone(),
                    pos: (seg.msn, i),
                    map: seg.map.clone(),
                    start_ms: at.map(|ms| ms.round() as i64),
                },
                p.independent,
            ));
            at = at.map(|ms| ms + p.duration * 1000.0);
        }
    }
    out
}

/// A segment's `PROGRAM-DATE-TIME`, Unix ms (fractional: parts add their durations to it).
fn start_ms(seg: &ParsedSegment) -> Option<f64> {
    seg.program_date_time
        .as_deref()
        .and_then(Pdt::parse_us)
        .map(|us| us as f64 / 1000.0)
}

/// The preload-hinted part, at the position a blocking reload for it names.
fn hinted(pl: &ParsedPlaylist) -> Option<Next> {
    let uri = pl.preload_hint.clone()?;
    let pos = pl.next_part()?;
    let last = pl.segments.last()?;
    // The hinted part starts where the last segment's listed media ends.
    let start_ms = start_ms(last).map(|s| {
        let listed = match last.duration {
            Some(d) if last.uri.is_some() => d,
            _ => last.parts.iter().map(|p| p.duration).sum(),
        };
        (s + listed * 1000.0).round() as i64
    });
    Some(Next {
        uri,
        pos,
        map: last.map.clone(),
        start_ms,
    })
}

async fn get_text(ctx: &Ctx, up: &mut Upstream, target: &str) -> Result<(u16, String), Failure> {
    let status = up.get(ctx, target, MAX_PLAYLIST).await?;
    let body = up.body(ctx).await?;
    let text = String::from_utf8(body.into()).map_err(|_| format!("{target}: not UTF-8"))?;
    Ok((status, text))
}

/// Fetches and parses a media playlist.
async fn playlist(ctx: &Ctx, up: &mut Upstream, target: &str) -> Result<ParsedPlaylist, Failure> {
    let (status, text) = get_text(ctx, up, target).await?;
    match status {
        200 => check::parse(&text).map_err(|e| format!("{target}: {e}").into()),
        // The stream instance is gone (the origin restarted): start over.
        404 => Err(format!("{target}: 404 (the origin restarted or the stream ended)").into()),
        s => Err(format!("{target}: status {s}").into()),
    }
}

fn with_slash(path: &str) -> String {
    let p = path.split('?').next().unwrap_or("/");
    if p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    }
}

/// `uri` (absolute path or relative) against the directory `dir` (ending in `/`).
fn resolve(dir: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        uri.to_owned()
    } else if let Some(rest) = uri.split_once("://").map(|(_, r)| r) {
        // An absolute URL: its path (the origin is the host this client talks to).
        rest.find('/')
            .map_or("/".to_owned(), |i| rest[i..].to_owned())
    } else {
        format!("{dir}{uri}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:4
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MAP:URI=\"init1.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z
#EXT-X-PART:DURATION=0.2,URI=\"part20.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI=\"part21.m4s\"
#EXTINF:0.4,
seg4.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.400Z
#EXT-X-PART:DURATION=0.2,URI=\"part22.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI=\"part23.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part24.m4s\"
";

    #[test]
    fn starts_at_a_keyframe_and_follows_the_hint() {
        let pl = check::parse(LIVE).unwrap();
        let q = start(&pl);
        // From the newest complete segment on.
        let uris: Vec<_> = q.iter().map(|n| n.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "part20.m4s",
                "part21.m4s",
                "part22.m4s",
                "part23.m4s",
                "part24.m4s"
            ]
        );
        let t0 = Pdt::parse_us("2023-11-14T22:13:20.000Z").unwrap() / 1000;
        let starts: Vec<_> = q.iter().map(|n| n.start_ms.unwrap() - t0).collect();
        assert_eq!(starts, [0, 200, 400, 600, 800]);
        assert_eq!(q[4].pos, (5, 2));
        // Without a complete segment listed with its parts: the last independent part.
        let open = LIVE.replace("#EXTINF:0.4,\nseg4.m4s\n", "");
        let q = start(&check::parse(&open).unwrap());
        assert_eq!(q.front().unwrap().uri, "part22.m4s");
        assert!(q.iter().all(|n| n.map.as_deref() == Some("init1.mp4")));
        // After part 23 (5, 1): only the hint; after an older part, the ones missed too.
        let a: Vec<_> = after(&pl, (5, 1)).into_iter().map(|n| n.uri).collect();
        assert_eq!(a, ["part24.m4s"]);
        let a: Vec<_> = after(&pl, (4, 1)).into_iter().map(|n| n.uri).collect();
        assert_eq!(a, ["part22.m4s", "part23.m4s", "part24.m4s"]);
    }

    #[test]
    fn resolves_uris() {
        assert_eq!(resolve("/live/a/e1/", "part3.m4s"), "/live/a/e1/part3.m4s");
        assert_eq!(
            resolve("/live/a/", "e1/stream.m3u8"),
            "/live/a/e1/stream.m3u8"
        );
        assert_eq!(resolve("/live/a/", "/x/y.mp4"), "/x/y.mp4");
        assert_eq!(resolve("/live/a/", "http://h:1/z/p.m4s"), "/z/p.m4s");
        assert_eq!(with_slash("/"), "/");
        assert_eq!(with_slash("/edge"), "/edge/");
    }

    #[test]
    fn wants_are_bounded_and_missing_names_are_remembered() {
        let r = Relay::new(vec![], Duration::from_secs(1), 2);
        assert_eq!(r.want("a"), Wanted::Following);
        assert_eq!(r.want("a"), Wanted::Following);
        assert_eq!(r.want("b"), Wanted::Following);
        assert_eq!(r.want("c"), Wanted::Full);
        assert_eq!(r.take_queued(), ["a", "b"]);
        r.stopped("a", true);
        assert_eq!(r.want("a"), Wanted::Missing);
        r.stopped("b", false);
        assert_eq!(r.want("b"), Wanted::Following);
    }
}
