//! HTTP on the monoio workers: playlists, init segments, parts and segments from memory.
//!
//! One router ([`route`]) answers every protocol: plain HTTP/1.1 and HTTP/1.1 over TLS here (a
//! lean server rather than hyper: media responses are a header `Bytes` plus the shared media
//! `Bytes` handed to one `writev`, and a part still being written is sent with chunked transfer
//! coding as its CMAF chunks arrive), HTTP/2 through hyper in [`h2`], and HTTP/3 through quinn
//! in [`h3`] on its own tokio thread. `docs/design.md` gives the reasons.
//!
//! Requests are parsed with `httparse` from one read buffer per connection; keep-alive and
//! pipelining are handled by parsing the next request from what is left in the buffer.
//!
//! This file holds the HTTP/1.1 connection loop, the router and the media handlers. Its
//! children are leaves it uses: [`request`] parses heads, [`response`] holds `Response` and
//! writes it, [`api`] answers `/api/streams` and `/metrics`, and [`h2`] / [`h3`] frame the
//! router's answers for their protocols.

mod api;
pub(crate) mod h2;
pub(crate) mod h3;
mod private;
pub(crate) mod request;
mod response;
mod web;

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use zerocast_packager::{multivariant, Pdt, Query, Reload, Skip};

use self::request::{parse, MediaFile, Method, MAX_HEAD};
pub(crate) use self::response::media_head;
use self::response::{preflight, respond, Body, Response};
use crate::hub::{Layer, Layers, LiveBody, PartMedia, Stream};
use crate::metrics::{Kind, Limit};
use crate::relay;
use crate::transport::Transport;
use crate::Ctx;
use zerocast_social::channels::secrets::TokenError;

/// An idle keep-alive connection is closed after this long.
const IDLE: Duration = Duration::from_secs(60);

/// Room for a request head each read asks for (heads are a few hundred bytes; a larger one
/// grows the buffer, which the connection keeps).
const READ_SIZE: usize = 1024;

/// Serves one HTTP/1.1 connection, plain or over TLS, until it closes, errs or idles out.
///
/// Deadlines: a request head must be complete within `http-head-timeout` of its first byte
/// (the first request: of the connection opening), else 408 and close (slowloris); between
/// keep-alive requests a connection may idle for [`IDLE`].
pub(crate) async fn serve_conn<S: Transport>(mut stream: S, peer: SocketAddr, ctx: Arc<Ctx>) {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let viewing = ViewerSlot::default();
    let head_limit = Duration::from_millis(ctx.config.http_head_timeout);
    // When the head being read must be complete; `None` while idle between requests.
    let mut head_due = Some(Instant::now() + head_limit);
    // Shutdown cuts an idle read short. One wait for the whole connection: its waker is
    // registered once, not once per request in the process-wide signal.
    let mut stop = ctx.shutdown_signal.changed(ctx.shutdown_signal.seq());
    loop {
        // Parse a request from what is buffered; read more while it is incomplete.
        let req = loop {
            match parse(&buf) {
                Ok(Some(req)) => break Some(req),
                Ok(None) if buf.len() >= MAX_HEAD => {
                    let _ = respond(
                        &mut stream,
                        &ctx,
                        Response::text(431, "request head too large"),
                        false,
                        false,
                        &mut 0,
                    )
                    .await;
                    break None;
                }
                Ok(None) => {}
                Err(msg) => {
                    tracing::debug!("bad request: {msg}");
                    let _ = respond(
                        &mut stream,
                        &ctx,
                        Response::text(400, msg),
                        false,
                        false,
                        &mut 0,
                    )
                    .await;
                    break None;
                }
            }
            if !buf.is_empty() && head_due.is_none() {
                head_due = Some(Instant::now() + head_limit);
            }
            let wait = match head_due {
                Some(due) => due.saturating_duration_since(Instant::now()),
                None => IDLE,
            };
            if ctx.shutting_down() {
                break None;
            }
            match stream.read_into(&mut buf, READ_SIZE, wait, &mut stop).await {
                Ok(n) if n > 0 => {}
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        && head_due.is_some()
                        && !ctx.shutting_down() =>
                {
                    ctx.metrics.count_limit(Limit::HttpHeadTimeout);
                    tracing::warn!(%peer, "request head not complete within {} ms: connection closed", head_limit.as_millis());
                    let _ = respond(
                        &mut stream,
                        &ctx,
                        Response::text(408, "request head took too long"),
                        false,
                        false,
                        &mut 0,
                    )
                    .await;
                    break None;
                }
                _ => break None,
            }
        };
        let Some(req) = req else { break };
        let _ = buf.split_to(req.head_len);
        head_due = None;
        if ctx.shutting_down() {
            break;
        }
        let started = Instant::now();
        let head = req.method == Method::Head;
        let resp = match req.method {
            Method::Options => preflight(&req.path),
            Method::Other => Response::text(405, "method not allowed"),
            Method::Get | Method::Head => {
                let get = Get {
                    path: &req.path,
                    query: &req.query,
                    authority: req.host.as_deref(),
                    secure: S::SECURE,
                    gzip: req.gzip,
                };
                route::<Monoio>(&ctx, &get, &viewing).await
            }
        }
        .for_origin(&ctx.config.media_api_cors, req.origin.as_deref());
        let kind = resp.kind;
        let mut sent = 0;
        let ok = respond(&mut stream, &ctx, resp, head, req.keep_alive, &mut sent).await;
        ctx.metrics.observe(kind, started.elapsed());
        ctx.metrics.add_bytes_out(sent);
        if ok.is_err() || !req.keep_alive {
            break;
        }
    }
}

/// The timer of the runtime a request is served on: monoio on the workers (HTTP/1.1 and
/// HTTP/2), tokio for HTTP/3. The router waits (blocking reloads, the next part) through it.
pub(crate) trait Rt {
    /// Completes after `d`.
    fn sleep(d: Duration) -> impl Future<Output = ()>;
}

/// The monoio workers' timer.
#[derive(Debug)]
pub(crate) struct Monoio;

impl Rt for Monoio {
    fn sleep(d: Duration) -> impl Future<Output = ()> {
        monoio::time::sleep(d)
    }
}

/// `f`'s output, or `None` when `d` passes first.
pub(crate) async fn timeout<R: Rt, F: Future>(d: Duration, f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    let mut sleep = pin!(R::sleep(d));
    poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Counts a connection as a viewer of one stream while it keeps asking for it.
pub(crate) struct Viewer(Arc<Stream>);

/// A connection's viewer slot. HTTP/2 and HTTP/3 serve many requests of one connection at
/// once (HTTP/3 from several threads), so the slot is locked only for the instant of
/// [`Viewer::watch`], never across an `.await`.
pub(crate) type ViewerSlot = std::sync::Mutex<Option<Viewer>>;

impl Viewer {
    fn watch(slot: &ViewerSlot, stream: &Arc<Stream>) {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|v| Arc::ptr_eq(&v.0, stream)) {
            return;
        }
        stream.viewer_joined();
        *slot = Some(Viewer(stream.clone()));
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.0.viewer_left();
    }
}

/// A GET or HEAD request as every protocol sees it.
pub(crate) struct Get<'a> {
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    /// `Host` or `:authority`, when usable in a URL ([`request::valid_authority`]).
    pub(crate) authority: Option<&'a str>,
    /// Arrived over TLS.
    pub(crate) secure: bool,
    /// The client accepts a gzip-compressed body (`Accept-Encoding`).
    pub(crate) gzip: bool,
}

impl<'a> Get<'a> {
    /// An HTTP/2 or HTTP/3 request (always over TLS here).
    pub(crate) fn of<B>(req: &'a http::Request<B>) -> Self {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .filter(|a| request::valid_authority(a));
        let gzip = req
            .headers()
            .get_all(http::header::ACCEPT_ENCODING)
            .iter()
            .any(|v| request::accepts_gzip(v.as_bytes()));
        Self {
            path: req.uri().path(),
            query: req.uri().query().unwrap_or(""),
            authority,
            secure: true,
            gzip,
        }
    }

    /// The absolute URL of `path` on the listener this request came to; the bare path when
    /// the request named no usable host.
    fn url(&self, path: &str) -> String {
        match self.authority {
            Some(a) => format!("{}://{a}{path}", if self.secure { "https" } else { "http" }),
            None => path.to_owned(),
        }
    }
}

/// Answers a GET (or HEAD), the same on every protocol. `viewing` is the connection's slot
/// that counts it as a viewer of the stream it asks for.
pub(crate) async fn route<R: Rt>(ctx: &Ctx, req: &Get<'_>, viewing: &ViewerSlot) -> Response {
    let query = req.query;
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "streams"] => api::streams(ctx),
        ["api", "streams", name] => api::stream(ctx, name),
        ["metrics"] => api::metrics(ctx),
        ["time"] => time(),
        [""] => web::home(ctx, req),
        ["watch", name] => web::watch(ctx, req, name),
        ["studio"] => web::studio(ctx, req),
        ["web", file] => web::asset(file, req),
        ["live", name, index @ ("index.m3u8" | "index.mpd")] => match find::<R>(ctx, name).await {
            Some(s) => {
                let token = match playback_gate(ctx, &s, query) {
                    Ok(t) => t,
                    Err(refusal) => return *refusal,
                };
                Viewer::watch(viewing, &s);
                if *index == "index.mpd" {
                    mpd::<R>(ctx, &s, token, &req.url("/time")).await
                } else {
                    multivariant_playlist::<R>(ctx, &s, token).await
                }
            }
            None => Response::not_found(),
        },
        ["live", name, epoch, file] => {
            let Some(s) = find::<R>(ctx, name).await else {
                return Response::not_found();
            };
            let token = match playback_gate(ctx, &s, query) {
                Ok(t) => t,
                Err(refusal) => return *refusal,
            };
            if *epoch != s.epoch {
                return Response::text(404, "stream instance not found (restarted?)");
            }
            Viewer::watch(viewing, &s);
            let mut resp = media_file::<R>(ctx, &s, file, query).await;
            if let Some(token) = token {
                private_response(&mut resp, token);
            }
            resp
        }
        _ => Response::not_found(),
    }
}

/// The stream `name`: in the hub, or, on an edge, once its follower found it on an origin and
/// has a complete segment (waiting at most [`relay::FIRST_PART_WAIT`] in all).
async fn find<R: Rt>(ctx: &Ctx, name: &str) -> Option<Arc<Stream>> {
    if let Some(s) = ctx.hub.get(name) {
        return Some(s);
    }
    let relay = ctx.relay.as_ref()?;
    if !crate::hub::valid_name(name) {
        return None;
    }
    let deadline = Instant::now() + relay::FIRST_PART_WAIT;
    loop {
        let seen = relay.changed.seq();
        if let Some(s) = ctx.hub.get(name) {
            // Players want a whole segment in their first playlist (hls.js reports an empty
            // playlist otherwise): the follower starts a segment back and catches up at once.
            let left = deadline.saturating_duration_since(Instant::now());
            wait_for::<R, _>(&s, left, || {
                let v = s.view();
                let pl = v.playlist.as_ref()?;
                (pl.is_ended() || pl.segments().any(|seg| seg.complete)).then_some(())
            })
            .await;
            return Some(s);
        }
        if relay.want(name) != relay::Wanted::Following {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || timeout::<R, _>(left, relay.changed.changed(seen))
                .await
                .is_none()
        {
            return None;
        }
    }
}

/// For a private stream, the request's valid playback token (`Ok(Some)`) or a 403; `Ok(None)`
/// for a public stream (the refusal boxed: a `Response` is too large for an `Err`).
fn playback_gate<'q>(
    ctx: &Ctx,
    s: &Stream,
    query: &'q str,
) -> Result<Option<&'q str>, Box<Response>> {
    if !s.is_private() {
        return Ok(None);
    }
    let verdict = match (private::param(query, "token"), ctx.auth.playback()) {
        (None, _) => Err(TokenError::Missing),
        (Some(_), None) => Err(TokenError::Invalid),
        (Some(t), Some(keys)) => keys
            .verify(&s.name, t, zerocast_social::now_ms() / 1000)
            .map(|()| t),
    };
    verdict.map(Some).map_err(|e| {
        ctx.metrics.count_playback_refused();
        tracing::debug!(stream = %s.name, "playback refused: {e}");
        Box::new(Response::text(403, &e.to_string()))
    })
}

/// A private stream's answer: playlists list URIs that carry the token on, and no shared
/// cache may keep anything.
fn private_response(resp: &mut Response, token: &str) {
    resp.cache = match resp.cache {
        response::IMMUTABLE => "private, max-age=31536000, immutable",
        response::BLOCKING_PLAYLIST => "private, max-age=1",
        other => other,
    };
    debug_assert!(!resp.cache.starts_with("public"), "{}", resp.cache);
    if resp.status == 200 && resp.content_type == "application/vnd.apple.mpegurl" {
        // Playlists are one buffer (rendered text); no media byte passes here.
        if let Body::Full(bufs) = &resp.body {
            if let [text] = bufs.as_slice() {
                resp.body = Body::Full(vec![private::tokenize_playlist(text, token)]);
            }
        }
    }
}

async fn multivariant_playlist<R: Rt>(ctx: &Ctx, s: &Arc<Stream>, token: Option<&str>) -> Response {
    // A player may ask right after the publisher connected: wait (bounded) for the first part.
    let ready = wait_for::<R, _>(s, ctx.block_limit(s), || {
        s.view().playlist.is_some().then_some(())
    })
    .await;
    if ready.is_none() {
        return Response::text(503, "stream is not ready yet");
    }
    let tracks = s.view().tracks.clone();
    let mut text = String::new();
    let mut uri = format!("{}/stream.m3u8", s.epoch);
    if let Some(t) = token {
        uri = private::with_token(&uri, t);
    }
    let _ = multivariant::render(
        &mut text,
        &multivariant::Variant {
            tracks: &tracks,
            bandwidth: s.bandwidth(),
            frame_rate: s.frame_rate(),
            uri: &uri,
        },
    );
    Response::new(
        200,
        "application/vnd.apple.mpegurl",
        Body::Full(vec![Bytes::from(text)]),
        Kind::Playlist,
    )
}

/// The DASH MPD of the stream (cached per playlist version and time URL; a private stream's
/// carries the token in every URL and is rendered per request).
async fn mpd<R: Rt>(ctx: &Ctx, s: &Arc<Stream>, token: Option<&str>, utc_timing: &str) -> Response {
    let ready = wait_for::<R, _>(s, ctx.block_limit(s), || {
        let m = s.view();
        (m.playlist.is_some() && !m.tracks.is_empty()).then_some(())
    })
    .await;
    let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
    let Some(body) = ready.and_then(|()| s.mpd(utc_timing, &query, crate::unix_ms())) else {
        return Response::text(503, "stream is not ready yet");
    };
    Response::new(
        200,
        "application/dash+xml",
        Body::Full(vec![body]),
        Kind::Playlist,
    )
}

/// `GET /time`: the server's clock as ISO 8601 with milliseconds, for the MPD's `UTCTiming`.
fn time() -> Response {
    Response::new(
        200,
        "text/plain",
        Body::Full(vec![Bytes::from(Pdt(crate::unix_ms()).to_string())]),
        Kind::Other,
    )
}

async fn media_file<R: Rt>(ctx: &Ctx, s: &Arc<Stream>, file: &str, query: &str) -> Response {
    let layer = |track: Option<u32>| track.map_or(Layer::Muxed, Layer::Track);
    match MediaFile::parse(file) {
        Some(MediaFile::MediaPlaylist) => media_playlist::<R>(ctx, s, query).await,
        Some(MediaFile::Init { track, version }) => {
            let init = s
                .view()
                .inits
                .get(&version)
                .map(|l| l.get(layer(track)).to_vec())
                .filter(|b| !b.is_empty());
            match init {
                Some(b) => immutable(Response::new(200, "video/mp4", Body::Full(b), Kind::Init)),
                None => Response::not_found(),
            }
        }
        Some(MediaFile::Segment { track, msn }) => segment::<R>(ctx, s, msn, layer(track)).await,
        Some(MediaFile::Part(id)) => match part::<R>(ctx, s, id).await {
            Some(pm) => {
                let body = match pm.complete_layers() {
                    Some(layers) => Body::media(ctx, &layers, Layer::Muxed),
                    None => Body::Live(LiveBody::part(s.clone(), id, pm, Layer::Muxed)),
                };
                immutable(Response::new(200, "video/mp4", body, Kind::Part))
            }
            None => Response::not_found(),
        },
        None => Response::not_found(),
    }
}

/// Parts, segments and init segments never change once named.
fn immutable(mut r: Response) -> Response {
    r.cache = response::IMMUTABLE;
    r
}

/// What a segment request finds.
enum Found {
    Complete(Arc<Layers>),
    /// Being written: its first part.
    Open(u64, Arc<PartMedia>),
}

/// Segment `msn` in `layer`. A complete segment is sent whole. A track's segment still being
/// written (LL-DASH) is sent chunk by chunk as it is produced, and the segment after the newest
/// one is waited for (bounded, like a blocking playlist reload: 503 when it did not start in
/// time); LL-HLS players never ask for an incomplete muxed segment, so that is a 404.
async fn segment<R: Rt>(ctx: &Ctx, s: &Arc<Stream>, msn: u64, layer: Layer) -> Response {
    let mut waited = false;
    let found = wait_for::<R, _>(s, ctx.block_limit(s), || {
        let m = s.view();
        if let Some(seg) = m.segments.get(&msn) {
            return Some(Some(Found::Complete(seg.clone())));
        }
        if layer == Layer::Muxed {
            return Some(None);
        }
        if let Some((first, pm)) = m.open_segment(msn) {
            // Asked for before it existed, as the continuation of the Period the player knew,
            // but it starts a new one (the publisher came back): that number is not the
            // media the player expects.
            if waited && pm.starts_period() {
                return Some(None);
            }
            return Some(Some(Found::Open(first, pm)));
        }
        waited = true;
        let next = m.newest_msn().map_or(0, |n| n + 1);
        if m.ended || msn != next {
            return Some(None);
        }
        None
    })
    .await;
    let body = match found {
        Some(Some(Found::Complete(seg))) if seg.has(layer) => Body::media(ctx, &seg, layer),
        Some(Some(Found::Open(first, pm))) => {
            Body::Live(LiveBody::segment(s.clone(), first, pm, layer))
        }
        // Waited `block-limit` target durations: like a blocking playlist reload, try again.
        None => return Response::text(503, "the requested segment did not start in time"),
        _ => return Response::not_found(),
    };
    immutable(Response::new(200, "video/mp4", body, Kind::Segment))
}

/// Finds part `id`, waiting (bounded) when it is the next one to be produced.
async fn part<R: Rt>(ctx: &Ctx, s: &Arc<Stream>, id: u64) -> Option<Arc<PartMedia>> {
    wait_for::<R, _>(s, ctx.block_limit(s), || {
        let m = s.view();
        if let Some(pm) = m.parts.get(&id) {
            return Some(Some(pm.clone()));
        }
        let next = m.playlist.as_ref().map_or(0, |p| p.next_part_id());
        // Only the hinted part (and the one after it) is worth waiting for.
        if m.ended || id < next || id > next + 1 {
            return Some(None);
        }
        None
    })
    .await
    .flatten()
}

/// Re-evaluates `check` after every playlist change until it returns `Some`, for at most
/// `limit`; `None` when the time is up. The sequence number is read before each check, so a
/// change between the check and the wait is never missed.
async fn wait_for<R: Rt, T>(
    s: &Stream,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        let seen = s.playlist.seq();
        if let Some(v) = check() {
            return Some(v);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || timeout::<R, _>(left, s.playlist.changed(seen))
                .await
                .is_none()
        {
            return None;
        }
    }
}

async fn media_playlist<R: Rt>(ctx: &Ctx, s: &Arc<Stream>, query: &str) -> Response {
    let q = match Query::parse(query) {
        Ok(q) => q,
        Err(e) => return Response::text(400, &e.to_string()),
    };
    let answer = wait_for::<R, _>(s, ctx.block_limit(s), || {
        match s.view().playlist.as_ref().map(|p| p.reload(&q)) {
            Some(Reload::Ready) => Some(Ok(())),
            Some(Reload::BadRequest(why)) => Some(Err(why)),
            Some(Reload::Wait) | None => None,
        }
    })
    .await;
    match answer {
        Some(Ok(())) => {}
        Some(Err(why)) => return Response::text(400, why),
        None => return Response::text(503, "the requested part did not arrive in time"),
    }
    let skip = if q.skip == Skip::No {
        Skip::No
    } else {
        Skip::Yes
    };
    match s.rendered(skip) {
        Some(text) => {
            let mut r = Response::new(
                200,
                "application/vnd.apple.mpegurl",
                Body::Full(vec![text]),
                Kind::Playlist,
            );
            // A playlist without a directive is whatever is newest: `no-cache`.
            if q.msn.is_some() {
                r.cache = response::BLOCKING_PLAYLIST;
            }
            r
        }
        None => Response::text(503, "stream is not ready yet"),
    }
}
