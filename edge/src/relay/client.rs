//! One keep-alive HTTP/1.1 connection to an origin, GET only, on a monoio worker: the request
//! head out, the response head in, then the body piece by piece as the origin sends it (a part
//! being written arrives frame by frame).
//!
//! Every connect, write and read has a deadline; shutdown interrupts a read. Any error drops
//! the connection, and the next request opens a fresh one. A request on a reused connection
//! that the origin had closed meanwhile is retried once on a new connection.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;

use super::wire::{parse_head, BodyDecoder, Piece, MAX_HEAD};
use crate::transport::{Tcp, Transport};
use crate::url::HttpUrl;
use crate::Ctx;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence while waiting for a response or body bytes. A blocking request is held by
/// the origin for at most `block-limit` target durations (6 s with the defaults).
pub(crate) const READ_IDLE: Duration = Duration::from_secs(15);
const READ_SIZE: usize = 64 * 1024;

/// A client of one origin.
pub(crate) struct Upstream {
    url: HttpUrl,
    conn: Option<Conn>,
    /// The body being read, if any.
    body: Option<BodyDecoder>,
    /// The origin closes the connection after the current response.
    close: bool,
}

struct Conn {
    tcp: Tcp,
    buf: BytesMut,
    /// Requests sent on it.
    used: u32,
}

impl Upstream {
    pub(crate) fn new(url: HttpUrl) -> Self {
        Self {
            url,
            conn: None,
            body: None,
            close: false,
        }
    }

    /// The origin's URL.
    pub(crate) fn url(&self) -> &HttpUrl {
        &self.url
    }

    /// Sends `GET target` and reads the response head: its status. The body, at most `limit`
    /// bytes, is then read with [`Upstream::piece`] or [`Upstream::body`].
    pub(crate) async fn get(&mut self, ctx: &Ctx, target: &str, limit: u64) -> Result<u16, String> {
        if self.body.take().is_some() {
            // The last body was not read to its end: its connection cannot carry another.
            self.conn = None;
        }
        let req = Bytes::from(format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: zerocast-edge\r\n\r\n",
            self.url.host
        ));
        let mut retried = false;
        loop {
            let reused = self.conn.as_ref().is_some_and(|c| c.used > 0);
            match self.exchange(ctx, &req, limit).await {
                Ok((status, decoder, close)) => {
                    self.body = Some(decoder);
                    self.close = close;
                    return Ok(status);
                }
                Err((e, nothing_read)) => {
                    self.conn = None;
                    // A keep-alive connection the origin closed while idle: try a fresh one.
                    if reused && nothing_read && !retried && !ctx.shutting_down() {
                        retried = true;
                        continue;
                    }
                    return Err(format!("GET {target} from {}: {e}", self.url.host));
                }
            }
        }
    }

    /// Writes the request and reads the head. The error says whether any response byte came.
    async fn exchange(
        &mut self,
        ctx: &Ctx,
        req: &Bytes,
        limit: u64,
    ) -> Result<(u16, BodyDecoder, bool), (String, bool)> {
        if self.conn.is_none() {
            let tcp = connect(&self.url).await.map_err(|e| (e, true))?;
            self.conn = Some(Conn {
                tcp: Tcp::new(tcp),
                buf: BytesMut::with_capacity(READ_SIZE),
                used: 0,
            });
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(("no connection".into(), true));
        };
        conn.used += 1;
        conn.tcp
            .write_bufs(std::slice::from_ref(req), WRITE_TIMEOUT)
            .await
            .map_err(|e| (format!("write: {e}"), true))?;
        loop {
            match parse_head(&conn.buf) {
                Ok(Some((head, len))) => {
                    let _ = conn.buf.split_to(len);
                    return Ok((
                        head.status,
                        BodyDecoder::new(head.framing, limit),
                        head.close,
                    ));
                }
                Ok(None) => {}
                Err(e) => return Err((e, false)),
            }
            let before = conn.buf.len();
            let n = read(ctx, conn, MAX_HEAD)
                .await
                .map_err(|e| (e, before == 0))?;
            if n == 0 {
                return Err(("connection closed before a response".into(), before == 0));
            }
        }
    }

    /// The next piece of the body as it arrives; `None` once it is complete.
    pub(crate) async fn piece(&mut self, ctx: &Ctx) -> Result<Option<Bytes>, String> {
        let result = self.next_piece(ctx).await;
        if result.is_err() {
            self.conn = None;
            self.body = None;
        }
        result
    }

    async fn next_piece(&mut self, ctx: &Ctx) -> Result<Option<Bytes>, String> {
        let (Some(conn), Some(body)) = (self.conn.as_mut(), self.body.as_mut()) else {
            return Ok(None);
        };
        let mut eof = false;
        loop {
            match body.next(&mut conn.buf, eof)? {
                Piece::Data(b) => return Ok(Some(b)),
                Piece::Done => {
                    self.body = None;
                    if self.close {
                        self.conn = None;
                    }
                    return Ok(None);
                }
                Piece::NeedMore => eof = read(ctx, conn, READ_SIZE).await? == 0,
            }
        }
    }

    /// The whole body (playlists and init segments: small, gathered into one buffer; the
    /// limit given to [`Upstream::get`] bounds it).
    pub(crate) async fn body(&mut self, ctx: &Ctx) -> Result<Bytes, String> {
        let mut all = BytesMut::new();
        while let Some(p) = self.piece(ctx).await? {
            all.extend_from_slice(&p);
        }
        Ok(all.freeze())
    }
}

async fn connect(url: &HttpUrl) -> Result<TcpStream, String> {
    match monoio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(url.addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(format!("connect {}: {e}", url.addr)),
        Err(_) => Err(format!(
            "connect {}: no answer within {} ms",
            url.addr,
            CONNECT_TIMEOUT.as_millis()
        )),
    }
}

/// One read into the connection's buffer; shutdown interrupts it.
async fn read(ctx: &Ctx, conn: &mut Conn, want: usize) -> Result<usize, String> {
    let seen = ctx.shutdown_signal.seq();
    if ctx.shutting_down() {
        return Err("shutting down".into());
    }
    let stop = ctx.shutdown_signal.changed(seen);
    conn.tcp
        .read_into(&mut conn.buf, want, READ_IDLE, stop)
        .await
        .map_err(|e: io::Error| format!("read: {e}"))
}
