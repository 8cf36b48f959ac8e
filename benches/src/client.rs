//! What a viewer needs from an HTTP client ([`Client`]), and a tiny HTTP/1.1 client: one
//! keep-alive connection, GET only, no pipelining, over plain TCP or TLS.
//!
//! Just enough for a load generator on loopback: write the request, then read the response
//! head and a `Content-Length` or chunked body with the edge's own parser (`wire`), from one
//! read buffer, however the reads split it. Every connect, TLS handshake, read and write has a deadline, and any error
//! closes the connection, so the next request starts on a fresh one.
//!
//! Plain TCP runs on monoio's completion IO: reads and writes are cancelled in the kernel when
//! their deadline passes (dropping an io_uring op does not cancel it). TLS runs rustls over
//! monoio's poll-io view of the socket (readiness-based, so a timed-out read or write is
//! simply dropped).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{
    CancelHandle, CancelableAsyncReadRent, CancelableAsyncWriteRent, Canceller, IntoPollIo,
};
use monoio::net::tcp::stream_poll::TcpStreamPoll;
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::stats::ErrorKind;
use crate::wire;

/// An HTTP client of one viewer: GETs on its own connection(s), reopened after an error.
pub(crate) trait Client {
    /// GETs `target` (an origin-form path and query). A non-200 status is a response, not an
    /// error.
    async fn get(&mut self, target: &str) -> Result<Response, ClientError>;
    /// Bytes received since the last call (see each client for what it counts).
    fn take_bytes_read(&mut self) -> u64;
    /// Connections opened since the last call.
    fn take_connects(&mut self) -> u64;
}

/// Largest response body accepted, by every client (a whole segment fits with room to spare).
pub(crate) const MAX_BODY: usize = 64 * 1024 * 1024;

/// A failed request: what kind of failure (for the error table) and what exactly happened.
#[derive(Debug)]
pub(crate) struct ClientError {
    pub(crate) kind: ErrorKind,
    pub(crate) detail: String,
}

impl ClientError {
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(e: &io::Error, during: &str) -> Self {
        let kind = if e.kind() == io::ErrorKind::TimedOut {
            ErrorKind::Timeout
        } else {
            ErrorKind::Io
        };
        Self::new(kind, format!("{during}: {e}"))
    }
}

/// A complete response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
    /// When the response head was complete (time to first byte, near enough).
    pub(crate) head_at: Instant,
}

/// How a [`Conn`] opens its byte stream: [`Plain`] TCP or [`Tls`].
pub(crate) trait Connector {
    /// The open stream.
    type Stream: Transport;
    /// Connects to `addr` (and, for TLS, completes the handshake), each step within `timeout`.
    async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Self::Stream, ClientError>;
}

/// The reads and writes a [`Conn`] needs from its stream.
pub(crate) trait Transport {
    /// Reads into the spare capacity of `buf`; fails with `TimedOut` when nothing arrives
    /// within `timeout`. `Ok(0)` is end of stream. On error `buf` may be lost (the connection
    /// is dropped anyway).
    async fn read_more(&mut self, buf: &mut BytesMut, timeout: Duration) -> io::Result<usize>;
    /// Writes all of `data`; fails when the peer takes none of a write within `timeout`.
    async fn write_all(&mut self, data: Bytes, timeout: Duration) -> io::Result<()>;
}

/// Plain TCP on monoio's completion IO.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plain;

impl Connector for Plain {
    type Stream = TcpStream;

    async fn connect(&self, addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ClientError> {
        tcp_connect(addr, timeout).await
    }
}

/// TCP connect within `timeout`, with `TCP_NODELAY`.
pub(crate) async fn tcp_connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ClientError> {
    // A connect on loopback completes or fails at once; a plain timeout is enough here.
    let stream = monoio::time::timeout(timeout, TcpStream::connect_addr(addr))
        .await
        .map_err(|_| ClientError::new(ErrorKind::Connect, "connect timed out"))?
        .map_err(|e| ClientError::new(ErrorKind::Connect, format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

impl Transport for TcpStream {
    async fn read_more(&mut self, buf: &mut BytesMut, timeout: Duration) -> io::Result<usize> {
        let owned = std::mem::take(buf);
        let len = owned.len();
        let stream = &mut *self;
        // The buffer comes back on success only; on error the connection is dropped anyway.
        let (n, back) = with_deadline(timeout, |h| async move {
            let (r, b) = stream.cancelable_read(owned.slice_mut(len..), h).await;
            r.map(|n| (n, b.into_inner()))
        })
        .await?;
        *buf = back;
        Ok(n)
    }

    async fn write_all(&mut self, data: Bytes, timeout: Duration) -> io::Result<()> {
        let mut off = 0;
        while off < data.len() {
            let chunk = data.slice(off..);
            let stream = &mut *self;
            let n = with_deadline(timeout, |h| async move {
                stream.cancelable_write(chunk, h).await.0
            })
            .await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
            }
            off += n;
        }
        Ok(())
    }
}

/// A TLS connection on a monoio worker.
pub(crate) type TlsStream = tokio_rustls::client::TlsStream<TcpStreamPoll>;

/// TLS (rustls) over monoio's poll-io view of the TCP socket.
#[derive(Clone)]
pub(crate) struct Tls {
    /// Its configuration offers one ALPN protocol, which the server must pick.
    pub(crate) connector: tokio_rustls::TlsConnector,
    /// The name the certificate must be valid for (and SNI, for a DNS name).
    pub(crate) name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("config", self.connector.config())
            .field("name", &self.name)
            .finish()
    }
}

impl Tls {
    /// TCP connect, then the TLS handshake, each within `timeout`; the server must choose the
    /// ALPN protocol offered.
    pub(crate) async fn handshake(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<TlsStream, ClientError> {
        let tcp = tcp_connect(addr, timeout).await?;
        let poll = tcp
            .into_poll_io()
            .map_err(|e| ClientError::new(ErrorKind::Connect, format!("poll-io: {e}")))?;
        let tls = monoio::time::timeout(timeout, self.connector.connect(self.name.clone(), poll))
            .await
            .map_err(|_| ClientError::new(ErrorKind::Tls, "TLS handshake timed out"))?
            .map_err(|e| {
                ClientError::new(
                    ErrorKind::Tls,
                    crate::tls::hint(format!("TLS handshake: {e}")),
                )
            })?;
        let (_, session) = tls.get_ref();
        let offered = self.connector.config().alpn_protocols.first();
        if session.alpn_protocol() != offered.map(Vec::as_slice) {
            return Err(ClientError::new(
                ErrorKind::Tls,
                format!(
                    "TLS: the server chose ALPN {:?}",
                    session.alpn_protocol().map(String::from_utf8_lossy)
                ),
            ));
        }
        Ok(tls)
    }
}

impl Connector for Tls {
    type Stream = TlsStream;

    async fn connect(&self, addr: SocketAddr, timeout: Duration) -> Result<TlsStream, ClientError> {
        self.handshake(addr, timeout).await
    }
}

impl Transport for TlsStream {
    async fn read_more(&mut self, buf: &mut BytesMut, timeout: Duration) -> io::Result<usize> {
        monoio::time::timeout(timeout, self.read_buf(buf))
            .await
            .map_err(|_| timed_out(timeout))?
    }

    async fn write_all(&mut self, data: Bytes, timeout: Duration) -> io::Result<()> {
        let mut off = 0;
        while off < data.len() {
            let n = monoio::time::timeout(timeout, self.write(&data[off..]))
                .await
                .map_err(|_| timed_out(timeout))??;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
            }
            off += n;
        }
        monoio::time::timeout(timeout, self.flush())
            .await
            .map_err(|_| timed_out(timeout))?
    }
}

fn timed_out(timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no progress in {timeout:?}"),
    )
}

/// One keep-alive HTTP/1.1 connection to one server, reopened after an error. Counts the
/// bytes of the HTTP byte stream (heads, bodies, chunk framing; after decryption for TLS).
#[derive(Debug)]
pub(crate) struct Conn<C: Connector = Plain> {
    addr: SocketAddr,
    host: String,
    timeout: Duration,
    connector: C,
    stream: Option<C::Stream>,
    buf: BytesMut,
    /// Bytes read from the socket (heads and bodies) since the last [`Client::take_bytes_read`].
    bytes_read: u64,
    /// Connections opened since the last [`Client::take_connects`].
    connects: u64,
}

impl<C: Connector> Client for Conn<C> {
    async fn get(&mut self, target: &str) -> Result<Response, ClientError> {
        Conn::get(self, target).await
    }

    fn take_bytes_read(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_read)
    }

    fn take_connects(&mut self) -> u64 {
        std::mem::take(&mut self.connects)
    }
}

impl<C: Connector> Conn<C> {
    /// `host` goes into the `Host` header; `timeout` bounds every connect, handshake, read and
    /// write.
    pub(crate) fn new(addr: SocketAddr, host: String, timeout: Duration, connector: C) -> Self {
        Self {
            addr,
            host,
            timeout,
            connector,
            stream: None,
            buf: BytesMut::new(),
            bytes_read: 0,
            connects: 0,
        }
    }

    /// GETs `target` (an origin-form path and query). Any error closes the connection.
    ///
    /// Not cancel-safe: dropping the future mid-response leaves the connection out of step;
    /// the deadlines inside make dropping it unnecessary.
    pub(crate) async fn get(&mut self, target: &str) -> Result<Response, ClientError> {
        let res = self.exchange(target).await;
        if res.is_err() {
            self.stream = None;
            self.buf = BytesMut::new();
        }
        res
    }

    async fn exchange(&mut self, target: &str) -> Result<Response, ClientError> {
        if self.stream.is_none() {
            self.connect().await?;
        }
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: zerocast-load\r\n\r\n",
            self.host
        );
        self.write_all(Bytes::from(req)).await?;
        let head = self.read_head().await?;
        let head_at = Instant::now();
        let body = self.read_body(head.framing).await?;
        if head.close {
            self.stream = None;
            self.buf = BytesMut::new();
        }
        Ok(Response {
            status: head.status,
            body,
            head_at,
        })
    }

    async fn connect(&mut self) -> Result<(), ClientError> {
        let stream = self.connector.connect(self.addr, self.timeout).await?;
        self.stream = Some(stream);
        self.buf = BytesMut::with_capacity(16 * 1024);
        self.connects += 1;
        Ok(())
    }

    async fn write_all(&mut self, data: Bytes) -> Result<(), ClientError> {
        let stream = self.stream.as_mut().ok_or_else(closed)?;
        stream
            .write_all(data, self.timeout)
            .await
            .map_err(|e| ClientError::io(&e, "write"))
    }

    /// Reads more bytes into `buf`, with room for at least `want` more; `during` names the
    /// step for error messages.
    async fn fill(&mut self, want: usize, during: &str) -> Result<(), ClientError> {
        let stream = self.stream.as_mut().ok_or_else(closed)?;
        self.buf.reserve(want.clamp(16 * 1024, MAX_BODY));
        let n = stream
            .read_more(&mut self.buf, self.timeout)
            .await
            .map_err(|e| ClientError::io(&e, during))?;
        if n == 0 {
            return Err(ClientError::new(
                ErrorKind::Closed,
                format!("{during}: server closed the connection"),
            ));
        }
        self.bytes_read += n as u64;
        Ok(())
    }

    async fn read_head(&mut self) -> Result<wire::Head, ClientError> {
        loop {
            if let Some((head, len)) = wire::parse_head(&self.buf).map_err(malformed)? {
                self.buf.advance(len);
                return Ok(head);
            }
            self.fill(0, "waiting for the response head").await?;
        }
    }

    /// The body, one `Bytes` without a copy when it is one `Content-Length` run.
    async fn read_body(&mut self, framing: wire::Framing) -> Result<Bytes, ClientError> {
        match framing {
            // Body delimited by EOF: this client never needs that from zerocast.
            wire::Framing::Close => {
                return Err(ClientError::new(
                    ErrorKind::Malformed,
                    "response without Content-Length or chunked coding",
                ))
            }
            wire::Framing::Length(len) if len > MAX_BODY as u64 => {
                return Err(ClientError::new(
                    ErrorKind::Malformed,
                    format!("Content-Length {len} too large"),
                ))
            }
            // Read it whole first (one read buffer sized for it): one piece comes out.
            wire::Framing::Length(len) => {
                let len = len as usize;
                while self.buf.len() < len {
                    self.fill(len - self.buf.len(), "reading the body").await?;
                }
            }
            wire::Framing::Chunked => {}
        }
        let mut decoder = wire::BodyDecoder::new(framing, MAX_BODY as u64);
        let mut pieces: Vec<Bytes> = Vec::new();
        loop {
            match decoder.next(&mut self.buf, false).map_err(malformed)? {
                wire::Piece::Data(b) => pieces.push(b),
                wire::Piece::Done => break,
                wire::Piece::NeedMore => self.fill(0, "reading the body").await?,
            }
        }
        Ok(match pieces.len() {
            0 => Bytes::new(),
            1 => pieces.swap_remove(0),
            _ => pieces.concat().into(),
        })
    }
}

/// A response that does not parse.
pub(crate) fn malformed(e: String) -> ClientError {
    ClientError::new(ErrorKind::Malformed, e)
}

fn closed() -> ClientError {
    ClientError::new(ErrorKind::Closed, "connection closed")
}

/// Runs a cancelable operation with a deadline; on timeout the operation is cancelled in the
/// kernel and awaited, so no io_uring operation outlives the call.
async fn with_deadline<T, F, Fut>(deadline: Duration, op: F) -> io::Result<T>
where
    F: FnOnce(CancelHandle) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let canceller = Canceller::new();
    let mut fut = pin!(op(canceller.handle()));
    monoio::select! {
        r = &mut fut => return r,
        _ = monoio::time::sleep(deadline) => {}
    }
    canceller.cancel();
    let _ = fut.await;
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no progress in {deadline:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let (h, len) = wire::parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.framing, h.close, len),
            (200, wire::Framing::Length(5), false, 38)
        );
        let (h, _) = wire::parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(h.framing == wire::Framing::Chunked && h.close);
        assert!(wire::parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
            .unwrap()
            .is_none());
        assert!(wire::parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }

    /// A peer that answers each request with the next canned response, a few bytes per write.
    fn serve_fragmented(responses: Vec<&'static [u8]>) -> SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            sock.set_nodelay(true).unwrap();
            let mut req = Vec::new();
            for resp in responses {
                // Wait for one whole request head.
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut b = [0u8; 512];
                    let n = sock.read(&mut b).unwrap();
                    req.extend_from_slice(&b[..n]);
                }
                req.clear();
                for piece in resp.chunks(3) {
                    sock.write_all(piece).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        addr
    }

    #[monoio::test(driver = "fusion", timer_enabled = true)]
    async fn reads_split_responses_on_one_connection() {
        let addr = serve_fragmented(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}",
        ]);
        let mut c = Conn::new(addr, "h".into(), Duration::from_secs(5), Plain);
        let r = c.get("/a").await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"hello world"[..]));
        let r = c.get("/b").await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"hello world"[..]));
        let r = c.get("/c").await.unwrap();
        assert_eq!((r.status, &r.body[..]), (503, &b"{}"[..]));
        assert_eq!(Client::take_connects(&mut c), 1);
        // The peer hung up after three responses: the next request fails, and is counted.
        let e = c.get("/d").await.unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Closed | ErrorKind::Io), "{e:?}");
    }

    #[monoio::test(driver = "fusion", timer_enabled = true)]
    async fn keeps_a_tls_connection_alive() {
        use crate::tls::{client_config, server_name, tests::tls_server, Trust, ALPN_HTTP1};
        let (addr, pem) = tls_server(ALPN_HTTP1);
        let config = client_config(&Trust::CaFile(pem.clone()), ALPN_HTTP1, false).unwrap();
        let tls = Tls {
            connector: tokio_rustls::TlsConnector::from(config),
            name: server_name("127.0.0.1").unwrap(),
        };
        let mut c = Conn::new(addr, "h".into(), Duration::from_secs(5), tls);
        for _ in 0..3 {
            let r = c.get("/a").await.unwrap();
            assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        }
        assert_eq!(Client::take_connects(&mut c), 1);
        assert_eq!(Client::take_bytes_read(&mut c), 3 * 43);
        let _ = std::fs::remove_dir_all(pem.parent().unwrap());
    }

    #[monoio::test(driver = "fusion", timer_enabled = true)]
    async fn refuses_an_untrusted_certificate_unless_told() {
        use crate::tls::{
            client_config, server_name, tests::tls_server, Trust, ALPN_H2, ALPN_HTTP1,
        };
        let (addr, pem) = tls_server(ALPN_HTTP1);
        let conn = |trust, alpn| {
            let tls = Tls {
                connector: tokio_rustls::TlsConnector::from(
                    client_config(&trust, alpn, false).unwrap(),
                ),
                name: server_name("127.0.0.1").unwrap(),
            };
            Conn::new(addr, "h".into(), Duration::from_secs(5), tls)
        };
        let e = conn(Trust::System, ALPN_HTTP1).get("/").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Tls, "{e:?}");
        assert!(e.detail.contains("--insecure"), "{e:?}");
        let trusted = Trust::CaFile(pem.clone());
        assert_eq!(
            conn(trusted, ALPN_HTTP1).get("/").await.unwrap().status,
            200
        );
        assert_eq!(
            conn(Trust::Insecure, ALPN_HTTP1)
                .get("/")
                .await
                .unwrap()
                .status,
            200
        );
        // The server offers http/1.1 only: a client that wants h2 has no protocol to speak.
        let e = conn(Trust::Insecure, ALPN_H2).get("/").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Tls, "{e:?}");
        let _ = std::fs::remove_dir_all(pem.parent().unwrap());
    }

    #[monoio::test(driver = "fusion", timer_enabled = true)]
    async fn times_out_a_silent_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = Conn::new(addr, "h".into(), Duration::from_millis(100), Plain);
        let e = c.get("/").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");
        drop(listener);
    }
}
