//! Vectored writes of shared `Bytes`, and IO with deadlines that really cancel.
//!
//! A response is a list of `Bytes`: a small header, then media payloads shared with every other
//! viewer. [`write_all`] hands them to one `writev` (io_uring or epoll) without copying. Every
//! read and write has a deadline, kept by the connection's two timers ([`Deadlines`]); an
//! operation that misses it is cancelled in the kernel.
//!
//! A complete part or segment that is one range of the stream's memory file goes with
//! [`send_file`] instead: `sendfile(2)` puts references to the file's pages in the socket
//! buffer, where `writev` would copy the bytes, once per viewer.

use std::future::{pending, Future};
use std::io;
use std::pin::Pin;
use std::time::Duration;

use std::os::fd::AsRawFd;

use bytes::Bytes;
use monoio::buf::IoVecBuf;
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

/// The deadlines of one connection: one timer for its reads and one for its writes.
///
/// A timer per operation cost an insertion into monoio's timer wheel and a removal from it
/// every time (`Wheel::remove` alone was 4.8% of the server's time in the closed-loop load),
/// and monoio's canceller of each operation two allocations and a hash-set entry. Here an
/// operation only moves its direction's timer: moving a timer later, the usual case, rewrites
/// the entry's expiry and leaves the wheel alone (the wheel files it again under the new tick
/// when the old one comes), so an active connection touches the wheel about once per deadline
/// length, not per operation. Reads and writes have a timer each because their deadlines
/// differ (an idle keep-alive read may wait 60 s, a write 10 s), and moving a timer *earlier*
/// does cost a wheel update.
///
/// An operation that misses its deadline is dropped: monoio (feature `async-cancel`) cancels a
/// dropped io_uring operation in the kernel and keeps its buffer until the kernel is done with
/// it; under epoll nothing is in flight. Callers close the connection after a timeout, so what
/// such an operation did at the last moment does not matter.
pub(crate) struct Deadlines {
    reads: Pin<Box<Sleep>>,
    writes: Pin<Box<Sleep>>,
}

/// Which of a connection's timers an operation runs under.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dir {
    Read,
    Write,
}

impl Deadlines {
    pub(crate) fn new() -> Self {
        // Armed far out; every operation sets its own deadline first.
        let far = || Box::pin(monoio::time::sleep(Duration::from_secs(3600)));
        Self {
            reads: far(),
            writes: far(),
        }
    }

    /// Waits for `fut` for at most `limit`, and not past `stop` (shutdown); else drops it and
    /// fails with `TimedOut`, saying which came first.
    pub(crate) async fn race<F: Future, S: Future<Output = ()>>(
        &mut self,
        dir: Dir,
        limit: Duration,
        stop: S,
        fut: F,
    ) -> io::Result<F::Output> {
        let mut timer = match dir {
            Dir::Read => self.reads.as_mut(),
            Dir::Write => self.writes.as_mut(),
        };
        timer.as_mut().reset(Instant::now() + limit);
        monoio::select! {
            r = fut => Ok(r),
            _ = timer => Err(timed_out("peer too slow")),
            _ = stop => Err(timed_out("shutting down")),
        }
    }
}

fn timed_out(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why)
}

/// Writes every byte of `bufs`, in order, with vectored writes; fails if the peer takes longer
/// than `deadline` for any one write.
///
/// A write that times out is dropped (see [`Deadlines`]): the caller closes the connection on
/// any error.
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
            .race(Dir::Write, deadline, pending(), stream.writev(batch))
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
                    writable(stream, deadline, deadlines).await?;
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
                    writable(stream, deadline, deadlines).await?;
                }
                e if e.kind() == io::ErrorKind::Interrupted => {}
                e => return Err(e),
            },
        }
    }
    Ok(())
}

/// Waits until `stream` can take more, for at most `deadline`.
async fn writable(
    stream: &TcpStream,
    deadline: Duration,
    deadlines: &mut Deadlines,
) -> io::Result<()> {
    let ready = stream.writable(false);
    deadlines
        .race(Dir::Write, deadline, pending(), ready)
        .await?
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
