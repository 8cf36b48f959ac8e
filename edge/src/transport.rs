//! One byte stream, plain or TLS, for the RTMP and HTTP/1.1 connection loops.
//!
//! Plain TCP stays on monoio's completion IO (io_uring `read`/`writev` on the shared `Bytes`,
//! cancelled in the kernel on a deadline, see [`crate::iov`]). TLS runs rustls over monoio's
//! poll-io view of the same socket (readiness-based, so dropping a timed-out read or write is
//! safe): rustls encrypts into its own record buffers, which is the one copy TLS cannot avoid
//! without kernel TLS.

use std::future::Future;
use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::tcp::stream_poll::TcpStreamPoll;
use monoio::net::TcpStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::hub::FileBody;
use crate::iov::{advance, send_file, write_all, Deadlines, Dir};

/// Buffers handed to rustls per vectored write.
const MAX_SLICES: usize = 64;

/// A TLS connection on a monoio worker.
pub(crate) type TlsStream = tokio_rustls::server::TlsStream<TcpStreamPoll>;

/// What a connection loop needs from its socket.
pub(crate) trait Transport {
    /// TLS: URLs pointing back at this connection's listener are `https://`.
    const SECURE: bool;
    /// [`Transport::write_file`] sends from the file with `sendfile(2)`.
    const SENDFILE: bool = false;

    /// Reads into the spare capacity of `buf` (reserving `want` bytes first). Fails with
    /// `TimedOut` when nothing arrives within `idle` or when `stop` completes first; `Ok(0)`
    /// is end of stream.
    async fn read_into(
        &mut self,
        buf: &mut BytesMut,
        want: usize,
        idle: Duration,
        stop: impl Future<Output = ()>,
    ) -> io::Result<usize>;

    /// Writes every byte of `bufs` in order; fails when the peer takes none of a write within
    /// `deadline`.
    async fn write_bufs(&mut self, bufs: &[Bytes], deadline: Duration) -> io::Result<()>;

    /// Writes `head` and then `body`: from its memory file with `sendfile(2)` where the
    /// transport can (plain TCP), else as its buffers.
    async fn write_file(
        &mut self,
        head: Bytes,
        body: &FileBody,
        deadline: Duration,
    ) -> io::Result<()> {
        let mut bufs = body.bufs();
        bufs.insert(0, head);
        self.write_bufs(&bufs, deadline).await
    }
}

/// A plain TCP connection, with the timers of its reads and writes.
pub(crate) struct Tcp {
    stream: TcpStream,
    deadlines: Deadlines,
}

impl Tcp {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            deadlines: Deadlines::new(),
        }
    }
}

impl Transport for Tcp {
    const SECURE: bool = false;
    const SENDFILE: bool = true;

    async fn read_into(
        &mut self,
        buf: &mut BytesMut,
        want: usize,
        idle: Duration,
        stop: impl Future<Output = ()>,
    ) -> io::Result<usize> {
        buf.reserve(want);
        let owned = std::mem::take(buf);
        let len = owned.len();
        // Timed out: the read is cancelled with its buffer, and the connection closes.
        let read = AsyncReadRent::read(&mut self.stream, owned.slice_mut(len..));
        let (res, back) = self.deadlines.race(Dir::Read, idle, stop, read).await?;
        *buf = back.into_inner();
        res
    }

    async fn write_bufs(&mut self, bufs: &[Bytes], deadline: Duration) -> io::Result<()> {
        write_all(&mut self.stream, bufs, deadline, &mut self.deadlines).await
    }

    async fn write_file(
        &mut self,
        head: Bytes,
        body: &FileBody,
        deadline: Duration,
    ) -> io::Result<()> {
        let Self { stream, deadlines } = self;
        send_file(stream, &head, &body.span, deadline, deadlines).await
    }
}

impl Transport for TlsStream {
    const SECURE: bool = true;

    async fn read_into(
        &mut self,
        buf: &mut BytesMut,
        want: usize,
        idle: Duration,
        stop: impl Future<Output = ()>,
    ) -> io::Result<usize> {
        buf.reserve(want);
        monoio::select! {
            r = self.read_buf(buf) => r,
            _ = monoio::time::sleep(idle) => Err(io::Error::new(io::ErrorKind::TimedOut, "peer too slow")),
            _ = stop => Err(io::Error::new(io::ErrorKind::TimedOut, "shutting down")),
        }
    }

    async fn write_bufs(&mut self, bufs: &[Bytes], deadline: Duration) -> io::Result<()> {
        let slow = || io::Error::new(io::ErrorKind::TimedOut, "peer too slow");
        // Vectored, so rustls fills whole records from many small `Bytes` instead of sealing
        // one record (and one syscall) per buffer.
        let (mut first, mut skip) = (0, 0);
        while first < bufs.len() {
            if bufs[first].len() <= skip {
                first += 1;
                skip = 0;
                continue;
            }
            let slices: Vec<IoSlice<'_>> = bufs[first..]
                .iter()
                .take(MAX_SLICES)
                .enumerate()
                .map(|(i, b)| IoSlice::new(if i == 0 { &b[skip..] } else { b }))
                .collect();
            let n = monoio::time::timeout(deadline, self.write_vectored(&slices))
                .await
                .map_err(|_| slow())??;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            advance(bufs, &mut first, &mut skip, n);
        }
        monoio::time::timeout(deadline, self.flush())
            .await
            .map_err(|_| slow())?
    }
}
