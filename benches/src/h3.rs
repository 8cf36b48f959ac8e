//! HTTP/3 viewers' client: quinn + h3 on a tokio runtime (quinn drives its UDP socket with
//! tokio), one QUIC connection per viewer; the viewers of one worker share one UDP socket (a
//! quinn endpoint), their connections told apart by connection id.
//!
//! Requests go out one at a time on the viewer's connection. The QUIC handshake, the HTTP/3
//! setup, sending the request, the response head and each DATA frame must each complete within
//! the timeout; a request that fails closes the connection (the next request opens a fresh
//! one), like the other clients. Bytes counted are what reaches HTTP/3: the response bodies
//! and the decoded header fields (QPACK-compressed on the wire; QUIC and TLS overhead not
//! counted).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::{Buf, Bytes, BytesMut};

use crate::client::{Client, ClientError, Response, MAX_BODY};
use crate::stats::ErrorKind;

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// A client endpoint (one UDP socket) for connections to `server`, with `tls` (ALPN `h3`).
/// Call inside a tokio runtime.
pub(crate) fn endpoint(
    server: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<quinn::Endpoint> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .context("TLS configuration for QUIC")?;
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind).context("binding a UDP socket")?;
    // The socket takes the data of every connection of the worker: the default receive buffer
    // (about 200 KiB) overflows under load, and each loss costs a retransmission and a
    // congestion-window cut.
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        set_buffer(&socket, opt, SOCKET_BUFFER);
    }
    let runtime = Arc::new(quinn::TokioRuntime);
    let mut endpoint =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
            .context("a QUIC endpoint")?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// Asked-for UDP socket buffer sizes (the kernel caps them at `net.core.rmem_max` and
/// `wmem_max`).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Sets socket option `opt` (a buffer size) to `bytes`; best effort.
fn set_buffer(socket: &std::net::UdpSocket, opt: libc::c_int, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on an open socket, with a pointer to a c_int and its size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            std::ptr::from_ref(&bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// One viewer's HTTP/3 connection, opened on the first request and after an error.
#[derive(Debug)]
pub(crate) struct H3Client {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    /// The name the certificate must be valid for.
    server_name: String,
    /// `https://authority`, prefixed to every target.
    base: String,
    timeout: Duration,
    conn: Option<Open>,
    bytes: u64,
    connects: u64,
}

/// An open HTTP/3 connection.
struct Open {
    send: SendRequest,
    /// Drives the connection's control streams; aborted with the connection.
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open").finish_non_exhaustive()
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl H3Client {
    /// `authority` is the URL's host and port, `server_name` its host; `timeout` bounds each
    /// step (see the module).
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        addr: SocketAddr,
        authority: &str,
        server_name: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            endpoint,
            addr,
            server_name: server_name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            base: format!("https://{authority}"),
            timeout,
            conn: None,
            bytes: 0,
            connects: 0,
        }
    }

    async fn connect(&mut self) -> Result<Open, ClientError> {
        let (send, driver) = connect(&self.endpoint, self.addr, &self.server_name, self.timeout)
            .await
            .map_err(|(kind, detail)| ClientError::new(kind, detail))?;
        self.connects += 1;
        Ok(Open { send, driver })
    }

    async fn exchange(&mut self, target: &str) -> Result<Response, ClientError> {
        let mut open = match self.conn.take() {
            Some(o) => o,
            None => self.connect().await?,
        };
        let req = http::Request::get(format!("{}{target}", self.base))
            .header(http::header::USER_AGENT, "zerocast-load")
            .body(())
            .map_err(|e| ClientError::new(ErrorKind::Malformed, format!("request: {e}")))?;
        let t = self.timeout;
        let mut stream = step(t, "sending the request", open.send.send_request(req)).await?;
        step(t, "finishing the request", stream.finish()).await?;
        let head = step(t, "waiting for the response head", stream.recv_response()).await?;
        let head_at = Instant::now();
        self.bytes += head
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
            .sum::<u64>();
        let mut body = BytesMut::new();
        while let Some(mut chunk) = step(t, "reading the body", stream.recv_data()).await? {
            let n = chunk.remaining();
            if body.len() + n > MAX_BODY {
                return Err(ClientError::new(ErrorKind::Malformed, "body too large"));
            }
            self.bytes += n as u64;
            while chunk.has_remaining() {
                let c = chunk.chunk();
                let len = c.len();
                body.extend_from_slice(c);
                chunk.advance(len);
            }
        }
        // Only a request that went well gives the connection back.
        self.conn = Some(open);
        Ok(Response {
            status: head.status().as_u16(),
            body: body.freeze(),
            head_at,
        })
    }
}

impl Client for H3Client {
    async fn get(&mut self, target: &str) -> Result<Response, ClientError> {
        self.exchange(target).await
    }

    fn take_bytes_read(&mut self) -> u64 {
        std::mem::take(&mut self.bytes)
    }

    fn take_connects(&mut self) -> u64 {
        std::mem::take(&mut self.connects)
    }
}

/// QUIC handshake and HTTP/3 setup, each within `timeout`; the connection's driver runs as a
/// local task. Errors are (kind, detail).
async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
    timeout: Duration,
) -> Result<(SendRequest, tokio::task::JoinHandle<()>), (ErrorKind, String)> {
    let connecting = endpoint
        .connect(addr, server_name)
        .map_err(|e| (ErrorKind::Connect, format!("QUIC connect: {e}")))?;
    let quic = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| (ErrorKind::Connect, "QUIC handshake timed out".to_owned()))?
        .map_err(|e| {
            let detail = crate::tls::hint(format!("QUIC handshake: {e}"));
            let kind = if detail.contains("certificate") || detail.contains("crypto") {
                ErrorKind::Tls
            } else {
                ErrorKind::Connect
            };
            (kind, detail)
        })?;
    let (mut driver, send) =
        tokio::time::timeout(timeout, h3::client::new(h3_quinn::Connection::new(quic)))
            .await
            .map_err(|_| (ErrorKind::Timeout, "HTTP/3 setup timed out".to_owned()))?
            .map_err(|e| (ErrorKind::Io, format!("HTTP/3 setup: {e}")))?;
    let driver = tokio::task::spawn_local(async move {
        let _ = driver.wait_idle().await;
    });
    Ok((send, driver))
}

/// `fut` within `timeout`; `during` names the step in errors.
async fn step<T>(
    timeout: Duration,
    during: &str,
    fut: impl std::future::Future<Output = Result<T, h3::error::StreamError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(ClientError::new(
            ErrorKind::Timeout,
            format!("{during}: no progress in {timeout:?}"),
        )),
        Ok(Err(e)) => {
            let kind = if matches!(
                e,
                h3::error::StreamError::ConnectionError { .. }
                    | h3::error::StreamError::RemoteClosing { .. }
            ) {
                ErrorKind::Closed
            } else {
                ErrorKind::Io
            };
            Err(ClientError::new(kind, format!("{during}: {e}")))
        }
        Ok(Ok(v)) => Ok(v),
    }
}
