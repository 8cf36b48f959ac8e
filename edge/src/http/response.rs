//! A response before it is written, and writing it: one `writev` of a header `Bytes` and the
//! shared media `Bytes`, or chunked transfer coding for a part still being written.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::hub::{FileBody, Layer, Layers, LiveBody};
use crate::metrics::Kind;
use crate::transport::Transport;
use crate::Ctx;

/// A peer that does not take a write within this long is dropped as too slow.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// A part being written that gains no chunk for this long is abandoned.
pub(super) const PART_STALL: Duration = Duration::from_secs(10);
/// `Cache-Control` of media that never changes under its URL (init segments, parts, segments).
pub(super) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of an answer to a blocking playlist reload (`_HLS_msn`). Its URL names the
/// part it waited for, and every playlist that answers it lists that part, so a shared cache
/// may hand it to every viewer asking the same (one origin request per part however many
/// viewers wait behind the cache); the media playlist's URL changes with each stream instance,
/// so no key outlives its stream. A second: the viewers that wait for one part ask within a
/// part target of each other, and a late one costs one immediate origin answer.
pub(super) const BLOCKING_PLAYLIST: &str = "public, max-age=1";

/// A response before it is written, the same for every protocol.
pub(crate) struct Response {
    pub(super) status: u16,
    pub(super) content_type: &'static str,
    pub(super) cache: &'static str,
    pub(super) body: Body,
    pub(super) kind: Kind,
    pub(super) cors: Cors,
    /// More headers (the pages' `Content-Security-Policy`); `None` on media, boxed so that a
    /// response stays small.
    pub(super) headers: Option<Box<Headers>>,
}

/// Headers a response adds to the usual ones, as `(name, value)`.
#[derive(Debug, Default)]
pub(crate) struct Headers(pub(super) Vec<(&'static str, String)>);

/// Which browser origins may read a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cors {
    /// Any (`*`): playlists and media (players are often served from another origin).
    Any,
    /// The media API (`/api/streams`, `/metrics`): only the `media-api-cors` origins; resolved
    /// per request by [`Response::for_origin`] into one of the others.
    Api,
    /// This origin only (with `Vary: Origin`).
    Origin(String),
    /// No CORS headers: a browser on another origin cannot read the response.
    None,
}

/// The CORS headers of a response readable from another origin, after
/// `Access-Control-Allow-Origin`, and `Timing-Allow-Origin` so a player page can measure its
/// requests (Resource Timing).
const CORS: [(&str, &str); 3] = [
    ("access-control-allow-methods", "GET, HEAD, OPTIONS"),
    ("access-control-allow-headers", "*"),
    ("access-control-expose-headers", "*"),
];

impl Cors {
    /// The CORS headers to send, as `(name, value)` (no allocation: this is on every media
    /// response).
    fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let origin = match self {
            Cors::Any => Some("*"),
            Cors::Origin(o) => Some(o.as_str()),
            Cors::Api | Cors::None => None,
        };
        origin.into_iter().flat_map(|o| {
            let [methods, headers, expose] = CORS;
            // One origin rather than `*`: caches must keep one answer per origin.
            let n = if o == "*" { 5 } else { 6 };
            [
                ("access-control-allow-origin", o),
                methods,
                headers,
                expose,
                ("timing-allow-origin", o),
                ("vary", "origin"),
            ]
            .into_iter()
            .take(n)
        })
    }
}

/// What follows the header.
pub(crate) enum Body {
    /// No body.
    Empty,
    /// Complete buffers, written with one `writev`.
    Full(Vec<Bytes>),
    /// Complete media that is one range of the stream's memory file.
    File(FileBody),
    /// A part or segment being written: chunked transfer coding until it completes.
    Live(LiveBody),
}

/// Below this many bytes `writev` costs less than `sendfile` (measured in docs/design.md).
pub(super) const SENDFILE_MIN: usize = 16 * 1024;

impl Body {
    /// Complete media: from its memory file when it is one range of it, large enough and
    /// `sendfile` is on; else its buffers.
    pub(super) fn media(ctx: &Ctx, layers: &Arc<Layers>, layer: Layer) -> Body {
        if ctx.config.sendfile {
            let file = FileBody::new(layers, layer).filter(|f| f.span.len() >= SENDFILE_MIN);
            if let Some(f) = file {
                return Body::File(f);
            }
        }
        Body::Full(layers.get(layer).to_vec())
    }
}

impl Response {
    pub(super) fn new(status: u16, content_type: &'static str, body: Body, kind: Kind) -> Self {
        Self {
            status,
            content_type,
            cache: "no-cache",
            body,
            kind,
            cors: Cors::Any,
            headers: None,
        }
    }

    /// Resolves [`Cors::Api`] for a request from `origin` (its `Origin` header): `*` when
    /// `allowed` has `*`, the origin when `allowed` lists it, no CORS headers otherwise.
    pub(super) fn for_origin(mut self, allowed: &[String], origin: Option<&[u8]>) -> Self {
        if self.cors == Cors::Api {
            self.cors = if allowed.iter().any(|a| a == "*") {
                Cors::Any
            } else {
                origin
                    .filter(|o| {
                        allowed
                            .iter()
                            .any(|a| a.trim_end_matches('/').as_bytes().eq_ignore_ascii_case(o))
                    })
                    .and_then(|o| std::str::from_utf8(o).ok())
                    .map_or(Cors::None, |o| Cors::Origin(o.to_owned()))
            };
        }
        self
    }

    /// A JSON `{"error": msg}` body.
    pub(super) fn text(status: u16, msg: &str) -> Self {
        let body = format!("{{\"error\":{}}}\n", json_string(msg));
        Self::new(
            status,
            "application/json",
            Body::Full(vec![Bytes::from(body)]),
            Kind::Other,
        )
    }

    pub(super) fn not_found() -> Self {
        Self::text(404, "not found")
    }
}

impl Body {
    /// The length of a body known in full; `None` for a part still being written.
    pub(super) fn len(&self) -> Option<usize> {
        match self {
            Body::Empty => Some(0),
            Body::Full(bufs) => Some(bufs.iter().map(Bytes::len).sum()),
            Body::File(f) => Some(f.span.len()),
            Body::Live(..) => None,
        }
    }
}

/// The status line and headers of `resp` for HTTP/2 and HTTP/3 (which carry no
/// `Connection`, `Transfer-Encoding` or reason phrase), with the body's length when known.
pub(super) fn http_head(ctx: &Ctx, resp: &Response) -> http::Response<()> {
    let mut r = http::Response::new(());
    *r.status_mut() =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    let mut put = |name: &'static str, value: &str| {
        // Every value here is ASCII we wrote ourselves; skip (never panic on) anything else.
        if let Ok(v) = http::HeaderValue::from_str(value) {
            h.insert(http::HeaderName::from_static(name), v);
        }
    };
    put("content-type", resp.content_type);
    put("cache-control", resp.cache);
    for (name, value) in resp.cors.headers() {
        put(name, value);
    }
    for (name, value) in resp.headers.iter().flat_map(|h| &h.0) {
        put(name, value);
    }
    if let Some(alt) = &ctx.alt_svc {
        put("alt-svc", alt);
    }
    if let Some(n) = resp.body.len() {
        put("content-length", &n.to_string());
    }
    r
}

/// The answer to a CORS preflight for `path` (the media API's paths answer only its origins).
pub(super) fn preflight(path: &str) -> Response {
    let mut r = Response::new(204, "text/plain", Body::Empty, Kind::Other);
    if is_api_path(path) {
        r.cors = Cors::Api;
    }
    r
}

/// Whether `path` is one of the media API's (`/api/streams`, `/metrics`: readable
/// cross-origin only by `media-api-cors`).
pub(super) fn is_api_path(path: &str) -> bool {
    matches!(path.trim_start_matches('/'), "api/streams" | "metrics")
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The HTTP/1.1 status line and headers of `resp`, through the blank line that ends them:
/// `Content-Length: body_len`, or chunked transfer coding when `body_len` is `None` (a part
/// still being written).
pub(super) fn head(
    resp: &Response,
    body_len: Option<usize>,
    alt_svc: Option<&str>,
    keep_alive: bool,
) -> BytesMut {
    let mut h = BytesMut::with_capacity(320);
    let _ = std::fmt::Write::write_fmt(
        &mut StrBuf(&mut h),
        format_args!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nCache-Control: {}\r\n",
            resp.status,
            reason(resp.status),
            resp.content_type,
            resp.cache
        ),
    );
    for (name, value) in resp.cors.headers() {
        let _ =
            std::fmt::Write::write_fmt(&mut StrBuf(&mut h), format_args!("{name}: {value}\r\n"));
    }
    for (name, value) in resp.headers.iter().flat_map(|h| &h.0) {
        let _ =
            std::fmt::Write::write_fmt(&mut StrBuf(&mut h), format_args!("{name}: {value}\r\n"));
    }
    if let Some(alt) = alt_svc {
        let _ = std::fmt::Write::write_fmt(&mut StrBuf(&mut h), format_args!("alt-svc: {alt}\r\n"));
    }
    if !keep_alive {
        h.put_slice(b"Connection: close\r\n");
    }
    match body_len {
        Some(len) => {
            let _ = std::fmt::Write::write_fmt(
                &mut StrBuf(&mut h),
                format_args!("Content-Length: {len}\r\n\r\n"),
            );
        }
        None => h.put_slice(b"Transfer-Encoding: chunked\r\n\r\n"),
    }
    h
}

/// The head [`respond`] writes before a media body: a 200 with `content_type`, immutable or
/// `no-cache` caching, CORS for any origin (see [`crate::bench::http1_media_head`]).
pub(crate) fn media_head(
    content_type: &'static str,
    immutable: bool,
    body_len: Option<usize>,
    alt_svc: Option<&str>,
    keep_alive: bool,
) -> BytesMut {
    let mut resp = Response::new(200, content_type, Body::Empty, Kind::Other);
    if immutable {
        resp.cache = IMMUTABLE;
    }
    head(&resp, body_len, alt_svc, keep_alive)
}

/// Writes a response, adding the bytes written to `sent`; errors mean the connection is
/// unusable.
pub(super) async fn respond<S: Transport>(
    stream: &mut S,
    ctx: &Ctx,
    resp: Response,
    head_only: bool,
    keep_alive: bool,
    sent: &mut u64,
) -> io::Result<()> {
    let h = head(&resp, resp.body.len(), ctx.alt_svc.as_deref(), keep_alive);
    match resp.body {
        Body::Empty => {
            *sent += h.len() as u64;
            stream.write_bufs(&[h.freeze()], WRITE_DEADLINE).await
        }
        Body::Full(mut bufs) => {
            if head_only {
                bufs.clear();
            }
            bufs.insert(0, h.freeze());
            *sent += bufs.iter().map(|b| b.len() as u64).sum::<u64>();
            stream.write_bufs(&bufs, WRITE_DEADLINE).await
        }
        Body::File(f) => {
            *sent += h.len() as u64;
            if head_only {
                return stream.write_bufs(&[h.freeze()], WRITE_DEADLINE).await;
            }
            *sent += f.span.len() as u64;
            stream.write_file(h.freeze(), &f, WRITE_DEADLINE).await?;
            if S::SENDFILE {
                ctx.metrics.add_bytes_sendfile(f.span.len() as u64);
            }
            Ok(())
        }
        Body::Live(live) => {
            *sent += h.len() as u64;
            stream.write_bufs(&[h.freeze()], WRITE_DEADLINE).await?;
            if head_only {
                return Ok(());
            }
            stream_live(stream, live, sent).await
        }
    }
}

/// Sends a part or segment as its chunks arrive, with chunked transfer coding, until it is
/// complete.
async fn stream_live<S: Transport>(
    stream: &mut S,
    mut live: LiveBody,
    sent_bytes: &mut u64,
) -> io::Result<()> {
    let s = live.stream().clone();
    loop {
        let seen = s.chunks.seq();
        let (chunks, complete) = live.take();
        if !chunks.is_empty() {
            let len: usize = chunks.iter().map(Bytes::len).sum();
            let mut bufs = Vec::with_capacity(chunks.len() + 2);
            bufs.push(Bytes::from(format!("{len:x}\r\n")));
            bufs.extend(chunks);
            bufs.push(Bytes::from_static(b"\r\n"));
            *sent_bytes += bufs.iter().map(|b| b.len() as u64).sum::<u64>();
            stream.write_bufs(&bufs, WRITE_DEADLINE).await?;
        }
        if complete {
            return stream
                .write_bufs(&[Bytes::from_static(b"0\r\n\r\n")], WRITE_DEADLINE)
                .await;
        }
        // A part never takes longer than a few part targets; bound the wait anyway.
        if monoio::time::timeout(PART_STALL, s.chunks.changed(seen))
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
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_of_a_part_and_of_a_playlist() {
        let part = media_head("video/mp4", true, Some(1234), Some("h3=\":443\""), true);
        assert_eq!(
            &part[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n\
              Cache-Control: public, max-age=31536000, immutable\r\n\
              access-control-allow-origin: *\r\n\
              access-control-allow-methods: GET, HEAD, OPTIONS\r\n\
              access-control-allow-headers: *\r\n\
              access-control-expose-headers: *\r\n\
              timing-allow-origin: *\r\n\
              alt-svc: h3=\":443\"\r\n\
              Content-Length: 1234\r\n\r\n"
        );
        let live = media_head("application/vnd.apple.mpegurl", false, None, None, false);
        let live = std::str::from_utf8(&live).unwrap();
        assert!(live.contains("\r\nCache-Control: no-cache\r\n"), "{live}");
        assert!(
            live.ends_with("\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "{live}"
        );
    }
}
