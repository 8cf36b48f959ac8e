//! HTTP/2 viewers' client: hyper's HTTP/2 client connection over rustls over monoio's poll-io
//! view of the socket (through monoio-compat), one connection per viewer like a browser tab.
//!
//! Requests go out one at a time on the viewer's connection. The response head and each DATA
//! frame must arrive within the timeout; a request that fails closes the connection (the next
//! request opens a fresh one), like the HTTP/1.1 client. Bytes counted are the HTTP/2 frames
//! read from the connection after decryption (the server's SETTINGS, HEADERS, DATA, …).

use std::cell::Cell;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::client::conn::http2::SendRequest;
use monoio_compat::hyper::{MonoioExecutor, MonoioIo, MonoioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::client::{Client, ClientError, Response, Tls, TlsStream, MAX_BODY};
use crate::stats::ErrorKind;

/// One viewer's HTTP/2 connection, opened on the first request and after an error.
#[derive(Debug)]
pub(crate) struct H2Client {
    addr: SocketAddr,
    /// `https://authority`, prefixed to every target.
    base: String,
    timeout: Duration,
    tls: Tls,
    send: Option<SendRequest<NoBody>>,
    /// Bytes read by the current connection (shared with its reader).
    read: Rc<Cell<u64>>,
    connects: u64,
}

impl H2Client {
    /// `authority` is the URL's host and port; `timeout` bounds the connect, the handshakes,
    /// each response head and each DATA frame.
    pub(crate) fn new(addr: SocketAddr, authority: &str, timeout: Duration, tls: Tls) -> Self {
        Self {
            addr,
            base: format!("https://{authority}"),
            timeout,
            tls,
            send: None,
            read: Rc::new(Cell::new(0)),
            connects: 0,
        }
    }

    async fn connect(&mut self) -> Result<SendRequest<NoBody>, ClientError> {
        let tls = self.tls.handshake(self.addr, self.timeout).await?;
        self.connects += 1;
        let io = MonoioIo::new(Counted {
            inner: tls,
            read: self.read.clone(),
        });
        let mut builder = hyper::client::conn::http2::Builder::new(MonoioExecutor);
        builder.timer(MonoioTimer);
        let (send, conn) = monoio::time::timeout(self.timeout, builder.handshake(io))
            .await
            .map_err(|_| ClientError::new(ErrorKind::Timeout, "HTTP/2 handshake timed out"))?
            .map_err(|e| hyper_error(&e, "HTTP/2 handshake"))?;
        // The connection task ends when the server closes it or when `send` is dropped.
        monoio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    async fn exchange(&mut self, target: &str) -> Result<Response, ClientError> {
        let mut send = match self.send.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        let req = http::Request::get(format!("{}{target}", self.base))
            .header(http::header::USER_AGENT, "zerocast-load")
            .body(NoBody)
            .map_err(|e| ClientError::new(ErrorKind::Malformed, format!("request: {e}")))?;
        let resp = monoio::time::timeout(self.timeout, send.send_request(req))
            .await
            .map_err(|_| timeout_error(self.timeout, "waiting for the response head"))?
            .map_err(|e| hyper_error(&e, "waiting for the response head"))?;
        let head_at = Instant::now();
        let (head, mut body) = resp.into_parts();
        let mut data = BytesMut::new();
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
            let frame = monoio::time::timeout(self.timeout, frame)
                .await
                .map_err(|_| timeout_error(self.timeout, "reading the body"))?;
            match frame {
                None => break,
                Some(Err(e)) => return Err(hyper_error(&e, "reading the body")),
                Some(Ok(f)) => {
                    if let Ok(chunk) = f.into_data() {
                        if data.len() + chunk.len() > MAX_BODY {
                            return Err(ClientError::new(ErrorKind::Malformed, "body too large"));
                        }
                        data.extend_from_slice(&chunk);
                    }
                }
            }
        }
        // Only a request that went well gives the connection back.
        self.send = Some(send);
        Ok(Response {
            status: head.status.as_u16(),
            body: data.freeze(),
            head_at,
        })
    }
}

impl Client for H2Client {
    async fn get(&mut self, target: &str) -> Result<Response, ClientError> {
        self.exchange(target).await
    }

    fn take_bytes_read(&mut self) -> u64 {
        self.read.replace(0)
    }

    fn take_connects(&mut self) -> u64 {
        std::mem::take(&mut self.connects)
    }
}

fn timeout_error(timeout: Duration, during: &str) -> ClientError {
    ClientError::new(
        ErrorKind::Timeout,
        format!("{during}: no progress in {timeout:?}"),
    )
}

/// A hyper error with its sources (hyper's own message is often just "http2 error").
fn hyper_error(e: &hyper::Error, during: &str) -> ClientError {
    let mut detail = format!("{during}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        detail.push_str(": ");
        detail.push_str(&inner.to_string());
        src = inner.source();
    }
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_closed() || e.is_incomplete_message() || e.is_canceled() {
        ErrorKind::Closed
    } else {
        ErrorKind::Io
    };
    ClientError::new(kind, detail)
}

/// The empty body of a GET.
#[derive(Debug)]
pub(crate) struct NoBody;

impl Body for NoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(0)
    }
}

/// A TLS stream that counts the bytes read from it.
#[derive(Debug)]
struct Counted {
    inner: TlsStream,
    read: Rc<Cell<u64>>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.read.set(self.read.get() + n as u64);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
