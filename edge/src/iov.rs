//! Vectored writes of shared `Bytes`, and IO with deadlines that really cancel.
//!
//! A response is a list of `Bytes`: a small header, then media payloads shared with every other
//! viewer. [`write_all`] hands them to one `writev` (io_uring or epoll) without copying; a write
//! the peer does not take within the deadline is dropped, and monoio (feature `async-cancel`)
//! cancels a dropped io_uring operation in the kernel, keeping its buffers until it is done.
//! Reads that may be cut short while the connection lives on (an idle connection parking)
//! use monoio's cancelable IO instead, which waits for the cancel and returns what was read.
//! Every operation of a connection shares one timer ([`Deadlines`]).
//!
//! A complete part or segment that is one range of the stream's memory file goes with
//! [`send_file`] instead: `sendfile(2)` puts references to the file's pages in the socket
//! buffer, where `writev` would copy the bytes, once per viewer.

use std::future::{pending, Future};
use std::io;
use std::pin::{pin, Pin};
use std::time::Duration;

use std::os::fd::AsRawFd;

use bytes::Bytes;
use monoio::buf::IoVecBuf;
use monoio::io::{CancelHandle, Canceller};
use monoio::net::TcpStream;
use monoio::time::{Instant, Sleep};

use crate::memfd::Span;

/// At most this many iovecs per `writev` (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 256;

/// A batch of `Bytes` presented to the kernel as an iovec array.
///
/// The iovecs point into the `Bytes`' heap storage, which does not move while this value owns
/// them; monoio keeps the value alive until the operation completes.
#[derive(Debug)]
pub(crate) struct BytesVec {
    /// Owns the storage the iovecs point into.
    _bufs: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
}

impl BytesVec {
    fn new(bufs: &[Bytes], skip: usize) -> Self {
        let bufs: Vec<Bytes> = bufs.iter().take(MAX_IOVECS).cloned().collect();
        let iovecs = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let s = if i == 0 {
                    &b[skip.min(b.len())..]
                } else {
                    &b[..]
                };
                libc::iovec {
                    iov_base: s.as_ptr() as *mut libc::c_void,
                    iov_len: s.len(),
                }
            })
            .collect();
        Self {
            _bufs: bufs,
            iovecs,
        }
    }
}

// SAFETY: the iovecs describe the `Bytes` held in `bufs`, whose storage is immutable and does
// not move while this value is alive; monoio owns the value for the whole operation.
unsafe impl IoVecBuf for BytesVec {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

/// The deadlines of one connection: one timer and one canceller serve all its operations.
///
/// A timer per operation cost an insertion into monoio's timer wheel and a removal from it
/// every time (`Wheel::remove` alone was 4.8% of the server's time in the closed-loop load),
/// and a canceller per operation two allocations. Here an operation only moves the one timer's
/// deadline: moving it later, the usual case, rewrites the entry's expiry and leaves the wheel
/// alone; when the entry's old tick comes, the wheel files it again under the new one. So an
/// active connection touches the wheel about once per deadline length, not per read or write.
pub(crate) struct Deadlines {
    timer: Pin<Box<Sleep>>,
    canceller: Canceller,
}

impl Deadlines {
    pub(crate) fn new() -> Self {
        Self {
            // Armed far out; every operation sets its own deadline first.
            timer: Box::pin(monoio::time::sleep(Duration::from_secs(3600))),
            canceller: Canceller::new(),
        }
    }

    /// Waits for `fut` for at most `limit`, and not past `stop` (shutdown): `Err` names which
    /// came first. `fut` is dropped then, which must cancel it (readiness waits; io_uring
    /// operations are cancelled in the kernel on drop, but without waiting for what they did).
    pub(crate) async fn race<F: Future, S: Future<Output = ()>>(
        &mut self,
        limit: Duration,
        stop: S,
        fut: F,
    ) -> Result<F::Output, io::Error> {
        self.timer.as_mut().reset(Instant::now() + limit);
        monoio::select! {
            r = fut => Ok(r),
            _ = self.timer.as_mut() => Err(timed_out("peer too slow")),
            _ = stop => Err(timed_out("shutting down")),
        }
    }

    /// Runs a cancelable operation that must complete within `limit` and before `stop`
    /// completes; else it is cancelled in the kernel and awaited, so no io_uring operation
    /// outlives the call. Returns what the operation returned (after a cancel: usually
    /// "cancelled", but it may have completed first) and, when it was cut short, why.
    pub(crate) async fn run<T, F, Fut, S>(
        &mut self,
        limit: Duration,
        stop: S,
        op: F,
    ) -> (T, Option<io::Error>)
    where
        F: FnOnce(CancelHandle) -> Fut,
        Fut: Future<Output = T>,
        S: Future<Output = ()>,
    {
        self.timer.as_mut().reset(Instant::now() + limit);
        let mut fut = pin!(op(self.canceller.handle()));
        let why = monoio::select! {
            r = &mut fut => return (r, None),
            _ = self.timer.as_mut() => "peer too slow",
            _ = stop => "shutting down",
        };
        // A used canceller stays cancelled: `cancel` hands back a fresh one.
        self.canceller = std::mem::take(&mut self.canceller).cancel();
        (fut.await, Some(timed_out(why)))
    }
}

fn timed_out(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why)
}

/// Writes every byte of `bufs`, in order, with vectored writes; fails if the peer takes longer
/// than `deadline` for any one write.
///
/// A write that times out is dropped, which cancels it in the kernel (monoio's `async-cancel`)
/// without waiting for what it wrote: the caller closes the connection on any error.
pub(crate) async fn write_all<S>(
    stream: &mut S,
    bufs: &[Bytes],
    deadline: Duration,
    deadlines: &mut Deadlines,
) -> io::Result<()>
where
    S: monoio::io::AsyncWriteRent,
{
    let mut first = 0;
    let mut skip = 0;
    while first < bufs.len() {
        if bufs[first].len() <= skip {
            first += 1;
            skip = 0;
            continue;
        }
        let batch = BytesVec::new(&bufs[first..], skip);
        let (res, _) = deadlines
            .race(deadline, pending(), stream.writev(batch))
            .await?;
        let n = res?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        advance(bufs, &mut first, &mut skip, n);
    }
    Ok(())
}

/// Moves the write position (`bufs[first]`, `skip` bytes in) past `n` written bytes.
pub(crate) fn advance(bufs: &[Bytes], first: &mut usize, skip: &mut usize, mut n: usize) {
    while n > 0 && *first < bufs.len() {
        let left = bufs[*first].len() - *skip;
        if n >= left {
            n -= left;
            *first += 1;
            *skip = 0;
        } else {
            *skip += n;
            n = 0;
        }
    }
}

/// Writes `head` and then the bytes of `span` with `sendfile(2)` from the memory file; fails
/// if the peer takes nothing for `deadline`.
///
/// Both IO drivers: the socket is made non-blocking for the call (the io_uring driver's
/// sockets are blocking; the epoll driver's already are not), and a full socket buffer is
/// waited out with monoio's `writable` (an io_uring poll, or epoll readiness re-checked with
/// `poll(2)`). The HTTP/1.1 loop has no other operation on the socket meanwhile. The header
/// goes with `MSG_MORE`, so it leaves in the first packet of the body.
pub(crate) async fn send_file(
    stream: &TcpStream,
    head: &[u8],
    span: &Span,
    deadline: Duration,
    deadlines: &mut Deadlines,
) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    let _nonblocking = NonBlocking::set(fd)?;
    let mut sent = 0;
    while sent < head.len() {
        let rest = &head[sent..];
        // SAFETY: `rest` is valid for its length; `fd` is this stream's open socket.
        let n = unsafe {
            libc::send(
                fd,
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        match usize::try_from(n) {
            Ok(n) => sent += n,
            Err(_) => match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::WouldBlock => {
                    let writable = stream.writable(false);
                    deadlines.race(deadline, pending(), writable).await??;
                }
                e if e.kind() == io::ErrorKind::Interrupted => {}
                e => return Err(e),
            },
        }
    }
    let file = span.file().raw_fd();
    let mut offset = libc::off_t::try_from(span.file_offset()).map_err(io::Error::other)?;
    let end = offset + span.len() as libc::off_t;
    while offset < end {
        // SAFETY: both descriptors are open; the kernel advances `offset`.
        let n = unsafe { libc::sendfile(fd, file, &mut offset, (end - offset) as usize) };
        match n {
            1.. => {}
            0 => return Err(io::ErrorKind::WriteZero.into()),
            _ => match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::WouldBlock => {
                    let writable = stream.writable(false);
                    deadlines.race(deadline, pending(), writable).await??;
                }
                e if e.kind() == io::ErrorKind::Interrupted => {}
                e => return Err(e),
            },
        }
    }
    Ok(())
}

/// `O_NONBLOCK` on a descriptor while this lives; restores the flags it found.
struct NonBlocking {
    fd: libc::c_int,
    /// The flags to restore, when they had no `O_NONBLOCK`.
    restore: Option<libc::c_int>,
}

impl NonBlocking {
    fn set(fd: libc::c_int) -> io::Result<Self> {
        // SAFETY: fcntl on an open descriptor.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if flags & libc::O_NONBLOCK != 0 {
            return Ok(Self { fd, restore: None });
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            restore: Some(flags),
        })
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        if let Some(flags) = self.restore {
            // SAFETY: as above; the descriptor outlives this guard (it borrows the stream).
            unsafe { libc::fcntl(self.fd, libc::F_SETFL, flags) };
        }
    }
}
