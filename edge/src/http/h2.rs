//! HTTP/2 through hyper, on the monoio workers, for TLS connections that negotiated `h2`.
//!
//! The router is the HTTP/1.1 one ([`super::route`]); only framing differs. Complete media is
//! handed to hyper as the shared `Bytes`, one DATA frame source per buffer (h2 chains large
//! buffers into its writes instead of copying them); a part still being written is sent as
//! DATA frames as its CMAF chunks arrive.
//!
//! Limits (each a reviewed choice, see docs/operations.md): 128 concurrent streams, a 16 KiB
//! header list, 10 s to send a request head, and the rapid-reset defence (CVE-2023-44487):
//! h2 counts streams the client resets before they are answered and closes the connection
//! with `GOAWAY ENHANCE_YOUR_CALM` past [`MAX_PENDING_RESETS`], and the remote resets it
//! causes past [`MAX_ERROR_RESETS`].

use std::cell::Cell;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use monoio_compat::hyper::{MonoioExecutor, MonoioIo, MonoioTimer};

use super::response::{http_head, preflight, Body, Response, PART_STALL};
use super::{route, Get, Monoio, ViewerSlot, IDLE};
use crate::hub::LiveBody;
use crate::metrics::Limit;
use crate::transport::TlsStream;
use crate::Ctx;

/// Streams one connection may have open at once.
pub(crate) const MAX_STREAMS: u32 = 128;
/// Largest request header list (decoded), bytes.
pub(crate) const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Streams the client may open and reset before the server answers them; past this the
/// connection is closed (the rapid-reset attack, CVE-2023-44487).
pub(crate) const MAX_PENDING_RESETS: usize = 32;
/// Streams the server may reset because of client errors before it closes the connection.
pub(crate) const MAX_ERROR_RESETS: usize = 256;

/// Serves one HTTP/2 connection until the client goes away, errs, or the server shuts down
/// (then in-flight requests finish after a `GOAWAY`).
pub(crate) async fn serve_conn(tls: TlsStream, peer: SocketAddr, ctx: Arc<Ctx>) {
    let viewing = Rc::new(ViewerSlot::default());
    let opened = Instant::now();
    let activity = Rc::new(Activity {
        in_flight: Cell::new(0),
        last: Cell::new(opened),
    });
    let svc_ctx = ctx.clone();
    let svc_activity = activity.clone();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let ctx = svc_ctx.clone();
        let viewing = viewing.clone();
        let busy = Busy::new(&svc_activity);
        async move { Ok::<_, Infallible>(handle(&ctx, req, &viewing, busy).await) }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(MonoioExecutor);
    builder
        .timer(MonoioTimer)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_ERROR_RESETS)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let mut conn = pin!(builder.serve_connection(MonoioIo::new(tls), service));
    let seen = ctx.shutdown_signal.seq();
    // A connection with no request in flight for IDLE is closed (GOAWAY), like an idle
    // HTTP/1.1 keep-alive connection; answering PINGs does not keep it open.
    let idle = async {
        loop {
            monoio::time::sleep(Duration::from_secs(5)).await;
            if activity.in_flight.get() == 0 && activity.last.get().elapsed() >= IDLE {
                return;
            }
        }
    };
    // The first request must arrive within http-head-timeout, as on HTTP/1.1 (a client that
    // sends no preface, or no complete HEADERS, holds the connection otherwise: hyper's
    // graceful shutdown waits for the preface).
    let head_limit = Duration::from_millis(ctx.config.http_head_timeout);
    let first_request = async {
        monoio::time::sleep(head_limit).await;
        if activity.in_flight.get() == 0 && activity.last.get() == opened {
            return;
        }
        std::future::pending::<()>().await
    };
    let result = if ctx.shutting_down() {
        conn.as_mut().graceful_shutdown();
        conn.await
    } else {
        monoio::select! {
            r = conn.as_mut() => r,
            _ = ctx.shutdown_signal.changed(seen) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            _ = idle => {
                tracing::debug!(%peer, "h2 connection idle, closing");
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            _ = first_request => {
                // Nothing in flight to finish: drop the connection (closes the socket).
                ctx.metrics.count_limit(Limit::HttpHeadTimeout);
                tracing::warn!(%peer, "no HTTP/2 request within {} ms: connection closed", head_limit.as_millis());
                Ok(())
            }
        }
    };
    match result {
        Ok(()) => {}
        // A client that just went away is not worth a line.
        Err(e) if e.is_closed() || e.is_canceled() || e.is_incomplete_message() => {
            tracing::debug!(%peer, "h2 connection: {e}");
        }
        Err(e) => tracing::warn!(%peer, "h2 connection closed: {}", describe(&e)),
    }
}

/// The error with its sources (hyper's own message is only "http2 error").
fn describe(e: &hyper::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A connection's requests in flight, and when the last one ended.
struct Activity {
    in_flight: Cell<usize>,
    last: Cell<Instant>,
}

/// One request in flight, from its head until its response body is dropped (sent or reset).
struct Busy(Rc<Activity>);

impl Busy {
    fn new(a: &Rc<Activity>) -> Self {
        a.in_flight.set(a.in_flight.get() + 1);
        Self(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
        self.0.last.set(Instant::now());
    }
}

async fn handle(
    ctx: &Arc<Ctx>,
    req: http::Request<hyper::body::Incoming>,
    viewing: &ViewerSlot,
    busy: Busy,
) -> http::Response<MediaBody> {
    let started = Instant::now();
    let head = req.method() == http::Method::HEAD;
    let resp = match *req.method() {
        http::Method::GET | http::Method::HEAD => {
            route::<Monoio>(ctx, &Get::of(&req), viewing).await
        }
        http::Method::OPTIONS => preflight(req.uri().path()),
        _ => Response::text(405, "method not allowed"),
    }
    .for_origin(
        &ctx.config.media_api_cors,
        req.headers()
            .get(http::header::ORIGIN)
            .map(|o| o.as_bytes()),
    );
    ctx.metrics.observe(resp.kind, started.elapsed());
    let mut r = into_http(ctx, resp, head);
    r.body_mut().busy = Some(busy);
    r
}

/// `resp` as a hyper response; a HEAD answer keeps the headers (and the length of a complete
/// body) and drops the body.
fn into_http(ctx: &Arc<Ctx>, mut resp: Response, head: bool) -> http::Response<MediaBody> {
    let parts = http_head(ctx, &resp);
    let body = match std::mem::replace(&mut resp.body, Body::Empty) {
        _ if head => MediaBody::full(ctx, Vec::new()),
        Body::Empty => MediaBody::full(ctx, Vec::new()),
        Body::Full(bufs) => MediaBody::full(ctx, bufs),
        Body::File(f) => MediaBody::full(ctx, f.bufs()),
        Body::Live(live) => MediaBody::live(ctx, live),
    };
    parts.map(|()| body)
}

/// A response body of shared `Bytes`: complete buffers, then (for a part still being written)
/// each CMAF chunk as it arrives. Bytes sent are added to the server's `bytes_out`.
pub(crate) struct MediaBody {
    ctx: Arc<Ctx>,
    /// Marks the request in flight until the body is dropped.
    busy: Option<Busy>,
    queue: VecDeque<Bytes>,
    live: Option<Live>,
}

struct Live {
    body: LiveBody,
    /// Waiting for the next chunk: `false` when the part stalled.
    wait: Option<Pin<Box<dyn Future<Output = bool>>>>,
}

impl MediaBody {
    fn full(ctx: &Arc<Ctx>, bufs: Vec<Bytes>) -> Self {
        Self {
            ctx: ctx.clone(),
            busy: None,
            queue: bufs.into(),
            live: None,
        }
    }

    fn live(ctx: &Arc<Ctx>, body: LiveBody) -> Self {
        Self {
            ctx: ctx.clone(),
            busy: None,
            queue: VecDeque::new(),
            live: Some(Live { body, wait: None }),
        }
    }
}

impl http_body::Body for MediaBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.queue.pop_front() {
                this.ctx.metrics.add_bytes_out(b.len() as u64);
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            let Some(live) = &mut this.live else {
                return Poll::Ready(None);
            };
            if let Some(wait) = &mut live.wait {
                match wait.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(true) => live.wait = None,
                    Poll::Ready(false) => {
                        this.live = None;
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "part stalled",
                        ))));
                    }
                }
            }
            // Read the sequence number before the chunks, so a chunk added in between wakes us.
            let seen = live.body.stream().chunks.seq();
            let (chunks, complete) = live.body.take();
            let got = !chunks.is_empty();
            this.queue.extend(chunks);
            if complete {
                this.live = None;
            } else if !got {
                let stream = live.body.stream().clone();
                live.wait = Some(Box::pin(async move {
                    monoio::time::timeout(PART_STALL, stream.chunks.changed(seen))
                        .await
                        .is_ok()
                }));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.queue.is_empty() && self.live.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let queued: usize = self.queue.iter().map(Bytes::len).sum();
        if self.live.is_none() {
            SizeHint::with_exact(queued as u64)
        } else {
            let mut h = SizeHint::new();
            h.set_lower(queued as u64);
            h
        }
    }
}
