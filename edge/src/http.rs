//! HTTP/1.1 on the monoio workers: playlists, init segments, parts and segments from memory.
//!
//! A lean server rather than hyper: media responses are a header `Bytes` plus the shared media
//! `Bytes` handed to one `writev` (io_uring or epoll), and a part still being written is sent
//! with chunked transfer coding as its CMAF chunks arrive. `docs/design.md` gives the reasons.
//!
//! Requests are parsed with `httparse` from one read buffer per connection; keep-alive and
//! pipelining are handled by parsing the next request from what is left in the buffer.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::CancelableAsyncReadRent;
use monoio::net::TcpStream;
use zerocast_packager::{multivariant, Query, Reload, Skip};

use crate::hub::{lock, PartMedia, Stream};
use crate::iov::{with_deadline_or, write_all};
use crate::metrics::Kind;
use crate::Ctx;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE: Duration = Duration::from_secs(60);
/// A peer that does not take a write within this long is dropped as too slow.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// A response before it is written.
pub(crate) struct Response {
    status: u16,
    content_type: &'static str,
    pub(crate) cache: &'static str,
    body: Body,
    kind: Kind,
}

pub(crate) enum Body {
    Empty,
    Full(Vec<Bytes>),
    /// A part being written: chunked transfer coding until it completes.
    Live(Arc<Stream>, Arc<PartMedia>),
}

impl Response {
    pub(crate) fn new(status: u16, content_type: &'static str, body: Body, kind: Kind) -> Self {
        Self {
            status,
            content_type,
            cache: "no-cache",
            body,
            kind,
        }
    }

    fn text(status: u16, msg: &str) -> Self {
        let body = format!("{{\"error\":{}}}\n", json_string(msg));
        Self::new(
            status,
            "application/json",
            Body::Full(vec![Bytes::from(body)]),
            Kind::Other,
        )
    }

    fn not_found() -> Self {
        Self::text(404, "not found")
    }
}

/// Serves one HTTP connection until it closes, errs or idles out.
pub(crate) async fn serve_conn(mut stream: TcpStream, ctx: Arc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    let mut viewing: Option<Viewer> = None;
    loop {
        // Parse a request from what is buffered; read more while it is incomplete.
        let req = loop {
            match parse(&buf) {
                Ok(Some(req)) => break Some(req),
                Ok(None) if buf.len() >= MAX_HEAD => {
                    let _ = respond(
                        &mut stream,
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
                    let _ =
                        respond(&mut stream, Response::text(400, msg), false, false, &mut 0).await;
                    break None;
                }
            }
            match read_more(&mut stream, &mut buf, &ctx).await {
                Ok(true) => {}
                _ => break None,
            }
        };
        let Some(req) = req else { break };
        let _ = buf.split_to(req.head_len);
        if ctx.shutting_down() {
            break;
        }
        let started = Instant::now();
        let head = req.method == Method::Head;
        let resp = match req.method {
            Method::Options => preflight(),
            Method::Other => Response::text(405, "method not allowed"),
            Method::Get | Method::Head => route(&ctx, &req, &mut viewing).await,
        };
        let kind = resp.kind;
        let mut sent = 0;
        let ok = respond(&mut stream, resp, head, req.keep_alive, &mut sent).await;
        ctx.metrics.observe(kind, started.elapsed());
        ctx.metrics.bytes_out.fetch_add(sent, Ordering::Relaxed);
        if ok.is_err() || !req.keep_alive {
            break;
        }
    }
}

/// Reads into the spare capacity of `buf`; `Ok(false)` at EOF.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut, ctx: &Ctx) -> io::Result<bool> {
    buf.reserve(4096);
    let spare = std::mem::take(buf);
    let len = spare.len();
    let seen = ctx.shutdown_signal.seq();
    if ctx.shutting_down() {
        return Ok(false);
    }
    let stop = ctx.shutdown_signal.changed(seen);
    let (res, back) = with_deadline_or(IDLE, stop, |h| async move {
        let (r, b) = stream.cancelable_read(spare.slice_mut(len..), h).await;
        Ok((r, b.into_inner()))
    })
    .await?;
    *buf = back;
    Ok(res? > 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Options,
    Other,
}

#[derive(Debug)]
struct Request {
    method: Method,
    path: String,
    query: String,
    keep_alive: bool,
    head_len: usize,
}

/// Parses one request head; `Ok(None)` when more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<Request>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed request"),
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("OPTIONS") => Method::Options,
        _ => Method::Other,
    };
    let target = req.path.ok_or("no request target")?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut keep_alive = req.version == Some(1);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
            || h.name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err("request bodies are not accepted");
        }
    }
    Ok(Some(Request {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        keep_alive,
        head_len,
    }))
}

/// Counts a connection as a viewer of one stream while it keeps asking for it.
struct Viewer(Arc<Stream>);

impl Viewer {
    fn watch(slot: &mut Option<Viewer>, stream: &Arc<Stream>) {
        if slot.as_ref().is_some_and(|v| Arc::ptr_eq(&v.0, stream)) {
            return;
        }
        stream.stats.viewers.fetch_add(1, Ordering::Relaxed);
        *slot = Some(Viewer(stream.clone()));
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.0.stats.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn route(ctx: &Ctx, req: &Request, viewing: &mut Option<Viewer>) -> Response {
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "streams"] => crate::api::streams(ctx),
        ["metrics"] => crate::api::metrics(ctx),
        ["live", name, "index.m3u8"] => match ctx.hub.get(name) {
            Some(s) => {
                Viewer::watch(viewing, &s);
                multivariant_playlist(ctx, &s).await
            }
            None => Response::not_found(),
        },
        ["live", name, epoch, file] => {
            let Some(s) = ctx.hub.get(name) else {
                return Response::not_found();
            };
            if *epoch != s.epoch {
                return Response::text(404, "stream instance not found (restarted?)");
            }
            Viewer::watch(viewing, &s);
            media_file(ctx, &s, file, &req.query).await
        }
        _ => Response::not_found(),
    }
}

async fn multivariant_playlist(ctx: &Ctx, s: &Arc<Stream>) -> Response {
    // A player may ask right after the publisher connected: wait (bounded) for the first part.
    let ready = wait_for(s, ctx.block_limit(s), || {
        lock(&s.media).playlist.is_some().then_some(())
    })
    .await;
    if ready.is_none() {
        return Response::text(503, "stream is not ready yet");
    }
    let tracks = lock(&s.media).tracks.clone();
    let mut text = String::new();
    let uri = format!("{}/stream.m3u8", s.epoch);
    let bandwidth = s
        .stats
        .peak_bps
        .load(Ordering::Relaxed)
        .max(s.bitrate() * 5 / 4)
        .max(100_000);
    let _ = multivariant::render(
        &mut text,
        &multivariant::Variant {
            tracks: &tracks,
            bandwidth,
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

async fn media_file(ctx: &Ctx, s: &Arc<Stream>, file: &str, query: &str) -> Response {
    if file == "stream.m3u8" {
        return media_playlist(ctx, s, query).await;
    }
    let immutable = |mut r: Response| {
        r.cache = "public, max-age=31536000, immutable";
        r
    };
    if let Some(v) = numbered(file, "init", ".mp4") {
        let init = lock(&s.media).inits.get(&(v as u32)).cloned();
        return match init {
            Some(b) => immutable(Response::new(
                200,
                "video/mp4",
                Body::Full(vec![b]),
                Kind::Init,
            )),
            None => Response::not_found(),
        };
    }
    if let Some(msn) = numbered(file, "seg", ".m4s") {
        let seg = lock(&s.media).segments.get(&msn).cloned();
        return match seg {
            Some(bufs) => immutable(Response::new(
                200,
                "video/mp4",
                Body::Full(bufs.as_ref().clone()),
                Kind::Segment,
            )),
            None => Response::not_found(),
        };
    }
    if let Some(id) = numbered(file, "part", ".m4s") {
        return match part(ctx, s, id).await {
            Some(pm) => {
                let (chunks, complete) = pm.chunks_from(0);
                let body = if complete {
                    Body::Full(chunks)
                } else {
                    Body::Live(s.clone(), pm)
                };
                immutable(Response::new(200, "video/mp4", body, Kind::Part))
            }
            None => Response::not_found(),
        };
    }
    Response::not_found()
}

/// Finds part `id`, waiting (bounded) when it is the next one to be produced.
async fn part(ctx: &Ctx, s: &Arc<Stream>, id: u64) -> Option<Arc<PartMedia>> {
    wait_for(s, ctx.block_limit(s), || {
        let m = lock(&s.media);
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
async fn wait_for<T>(
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
            || monoio::time::timeout(left, s.playlist.changed(seen))
                .await
                .is_err()
        {
            return None;
        }
    }
}

async fn media_playlist(ctx: &Ctx, s: &Arc<Stream>, query: &str) -> Response {
    let q = match Query::parse(query) {
        Ok(q) => q,
        Err(e) => return Response::text(400, &e.to_string()),
    };
    let answer = wait_for(s, ctx.block_limit(s), || {
        match lock(&s.media).playlist.as_ref().map(|p| p.reload(&q)) {
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
        Some(text) => Response::new(
            200,
            "application/vnd.apple.mpegurl",
            Body::Full(vec![text]),
            Kind::Playlist,
        ),
        None => Response::text(503, "stream is not ready yet"),
    }
}

/// `prefix{N}suffix` → N.
fn numbered(file: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let n = file.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn preflight() -> Response {
    Response::new(204, "text/plain", Body::Empty, Kind::Other)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a response, adding the bytes written to `sent`; errors mean the connection is
/// unusable.
async fn respond(
    stream: &mut TcpStream,
    resp: Response,
    head_only: bool,
    keep_alive: bool,
    sent: &mut u64,
) -> io::Result<()> {
    let mut h = BytesMut::with_capacity(256);
    let _ = std::fmt::Write::write_fmt(
        &mut StrBuf(&mut h),
        format_args!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nCache-Control: {}\r\n\
             Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n\
             Access-Control-Allow-Headers: *\r\nAccess-Control-Expose-Headers: *\r\n",
            resp.status,
            reason(resp.status),
            resp.content_type,
            resp.cache
        ),
    );
    if !keep_alive {
        h.put_slice(b"Connection: close\r\n");
    }
    match resp.body {
        Body::Empty => {
            h.put_slice(b"Content-Length: 0\r\n\r\n");
            *sent += h.len() as u64;
            write_all(stream, &[h.freeze()], WRITE_DEADLINE).await
        }
        Body::Full(mut bufs) => {
            let len: usize = bufs.iter().map(Bytes::len).sum();
            let _ = std::fmt::Write::write_fmt(
                &mut StrBuf(&mut h),
                format_args!("Content-Length: {len}\r\n\r\n"),
            );
            if head_only {
                bufs.clear();
            }
            bufs.insert(0, h.freeze());
            *sent += bufs.iter().map(|b| b.len() as u64).sum::<u64>();
            write_all(stream, &bufs, WRITE_DEADLINE).await
        }
        Body::Live(s, pm) => {
            h.put_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            *sent += h.len() as u64;
            write_all(stream, &[h.freeze()], WRITE_DEADLINE).await?;
            if head_only {
                return Ok(());
            }
            stream_part(stream, &s, &pm, sent).await
        }
    }
}

/// Sends a part as its chunks arrive, with chunked transfer coding, until it is complete.
async fn stream_part(
    stream: &mut TcpStream,
    s: &Stream,
    pm: &PartMedia,
    sent_bytes: &mut u64,
) -> io::Result<()> {
    let mut sent = 0;
    loop {
        let seen = s.chunks.seq();
        let (chunks, complete) = pm.chunks_from(sent);
        if !chunks.is_empty() {
            sent += chunks.len();
            let len: usize = chunks.iter().map(Bytes::len).sum();
            let mut bufs = Vec::with_capacity(chunks.len() + 2);
            bufs.push(Bytes::from(format!("{len:x}\r\n")));
            bufs.extend(chunks);
            bufs.push(Bytes::from_static(b"\r\n"));
            *sent_bytes += bufs.iter().map(|b| b.len() as u64).sum::<u64>();
            write_all(stream, &bufs, WRITE_DEADLINE).await?;
        }
        if complete {
            return write_all(stream, &[Bytes::from_static(b"0\r\n\r\n")], WRITE_DEADLINE).await;
        }
        // A part never takes longer than a few part targets; bound the wait anyway.
        if monoio::time::timeout(Duration::from_secs(10), s.chunks.changed(seen))
            .await
            .is_err()
        {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "part stalled"));
        }
    }
}

/// `fmt::Write` into a `BytesMut`.
struct StrBuf<'a>(&'a mut BytesMut);

impl std::fmt::Write for StrBuf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// A JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let r = parse(b"GET /live/a/index.m3u8?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET")
            .unwrap()
            .unwrap();
        assert_eq!(r.path, "/live/a/index.m3u8");
        assert_eq!(r.query, "x=1");
        assert!(r.keep_alive);
        assert_eq!(r.head_len, 48);
        assert!(parse(b"GET / HTTP/1.1\r\nHost").unwrap().is_none());
        assert!(parse(b"\x00\x01 / HTTP/1.1\r\n\r\n").is_err());
        let r = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        assert!(parse(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").is_err());
    }

    #[test]
    fn numbered_names() {
        assert_eq!(numbered("part12.m4s", "part", ".m4s"), Some(12));
        assert_eq!(numbered("part.m4s", "part", ".m4s"), None);
        assert_eq!(numbered("part-1.m4s", "part", ".m4s"), None);
        assert_eq!(
            numbered("part99999999999999999999999.m4s", "part", ".m4s"),
            None
        );
    }
}
