//! Media memory the kernel can send from: each stream's CMAF chunks are copied once, when they
//! are packaged, into a memory file (`memfd`) mapped into the process, so that
//!
//! - every protocol keeps sending the same shared `Bytes` (slices of the mapping), and
//! - plain HTTP/1.1 sends a complete part or segment with `sendfile(2)` from the file: the
//!   socket buffers reference the file's pages instead of copying them, once per viewer (the
//!   copy `writev` makes; nginx gets the same from the page cache).
//!
//! A stream has one file; each segment gets a [`Region`] of it: a page-aligned range, mapped
//! on its own and written from the start on. Bytes once written never change. When the last
//! `Bytes` of a region is dropped (the segment left the playlist window and no response still
//! sends it) the region is unmapped and its pages are punched out of the file, so the memory
//! goes back to the kernel at once; pages still referenced by socket buffers stay valid until
//! those buffers are freed. The ingest read buffers the chunks came from are released at
//! packaging time too.
//!
//! A region has a fixed capacity, twice the largest segment the stream has made (at least
//! [`MIN_REGION`]). A segment that outgrows it continues in a new region; its parts and the
//! segment are then no longer one range of one file, and are sent with `writev`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;

/// Smallest region, bytes (whole pages).
pub(crate) const MIN_REGION: usize = 1 << 20;
/// Largest region, bytes: a bigger segment spans several.
const MAX_REGION: usize = 256 << 20;

/// A stream's memory file.
#[derive(Debug)]
pub(crate) struct MemFile {
    fd: OwnedFd,
}

impl MemFile {
    /// A new, empty memory file.
    pub(crate) fn new() -> io::Result<Self> {
        let name = c"zerocast-media";
        // Not executable (6.3+ warns when neither exec flag is given); older kernels refuse the
        // flag with EINVAL.
        let mut fd =
            unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_NOEXEC_SEAL) };
        if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        }
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The file descriptor, for `sendfile(2)`.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A writer of one stream's media into its file: appends chunks to the current region and
/// hands out `Bytes` of what it wrote.
#[derive(Debug)]
pub(crate) struct MediaWriter {
    file: Arc<MemFile>,
    /// File offset of the next region.
    next_offset: u64,
    /// The region being written, and how much of it is written.
    current: Option<(Arc<Region>, usize)>,
    /// Largest segment seen, bytes (sizes the next region).
    largest: usize,
    /// Bytes written into the current segment so far.
    segment_bytes: usize,
}

/// Where a contiguous run of bytes lives in a memory file.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    region: Arc<Region>,
    /// Offset in the region.
    start: usize,
    len: usize,
}

impl Span {
    /// The file to send from.
    pub(crate) fn file(&self) -> &MemFile {
        &self.region.file
    }

    /// Offset in the file.
    pub(crate) fn file_offset(&self) -> u64 {
        self.region.offset + self.start as u64
    }

    /// Length, bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `self` followed by `next`, when `next` starts where `self` ends in the same region.
    pub(crate) fn join(&self, next: &Span) -> Option<Span> {
        (Arc::ptr_eq(&self.region, &next.region) && self.start + self.len == next.start).then(
            || Span {
                region: self.region.clone(),
                start: self.start,
                len: self.len + next.len,
            },
        )
    }
}

impl MediaWriter {
    /// A writer into a new memory file.
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            file: Arc::new(MemFile::new()?),
            next_offset: 0,
            current: None,
            largest: 0,
            segment_bytes: 0,
        })
    }

    /// A new segment starts: its bytes go into a new region.
    pub(crate) fn start_segment(&mut self) {
        self.largest = self.largest.max(self.segment_bytes);
        self.segment_bytes = 0;
        self.current = None;
    }

    /// Copies `bufs` (one CMAF chunk: a header and sample payloads) into the file, and returns
    /// them as slices of the mapping, with the span they make (one range of the file).
    pub(crate) fn write(&mut self, bufs: &[Bytes]) -> io::Result<(Vec<Bytes>, Span)> {
        let total: usize = bufs.iter().map(Bytes::len).sum();
        let fits = self
            .current
            .as_ref()
            .is_some_and(|(r, used)| r.cap - used >= total);
        if !fits {
            self.current = Some((self.new_region(total)?, 0));
        }
        let Some((region, used)) = self.current.as_mut() else {
            unreachable!("a region was just made");
        };
        let start = *used;
        let mut out = Vec::with_capacity(bufs.len());
        for b in bufs {
            // SAFETY: `[used, used + len)` is inside the mapping (checked above) and past every
            // byte handed out so far, so no `Bytes` refers to it and nothing else writes it:
            // only this writer appends to its current region.
            unsafe {
                std::ptr::copy_nonoverlapping(b.as_ptr(), region.base.as_ptr().add(*used), b.len());
            }
            out.push(Bytes::from_owner(Slice {
                region: region.clone(),
                start: *used,
                len: b.len(),
            }));
            *used += b.len();
        }
        self.segment_bytes += total;
        let span = Span {
            region: region.clone(),
            start,
            len: total,
        };
        Ok((out, span))
    }

    fn new_region(&mut self, at_least: usize) -> io::Result<Arc<Region>> {
        let page = page_size();
        let want = (2 * self.largest)
            .clamp(MIN_REGION, MAX_REGION)
            .max(at_least);
        let cap = want.div_ceil(page) * page;
        let offset = self.next_offset;
        let end = offset + cap as u64;
        let len = libc::off_t::try_from(end).map_err(|_| io::ErrorKind::FileTooLarge)?;
        // The file grows sparse: pages exist only once written, and go with the region.
        if unsafe { libc::ftruncate(self.file.raw_fd(), len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.next_offset = end;
        Ok(Arc::new(Region {
            file: self.file.clone(),
            offset,
            cap,
            base: NonNull::new(ptr.cast()).ok_or(io::ErrorKind::OutOfMemory)?,
        }))
    }
}

/// A mapped, page-aligned range of a memory file.
#[derive(Debug)]
struct Region {
    file: Arc<MemFile>,
    /// File offset of the first byte.
    offset: u64,
    cap: usize,
    base: NonNull<u8>,
}

// SAFETY: the mapping lives as long as the region; bytes handed out are never written again,
// and the one writer appends past them (see `MediaWriter::write`).
unsafe impl Send for Region {}
// SAFETY: as above: shared access only reads bytes that no longer change.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base` and `cap` are the mapping made in `new_region`; no `Bytes` of it is
        // left (each holds the region).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.cap);
            let _r = libc::fallocate(
                self.file.raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                self.offset as libc::off_t,
                self.cap as libc::off_t,
            );
            debug_assert_eq!(_r, 0, "punching a hole in a memfd");
        }
    }
}

/// The owner behind a `Bytes` of a region.
struct Slice {
    region: Arc<Region>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `[start, start + len)` was written before this slice was made and is never
        // written again; the mapping lives as long as `region`.
        unsafe { std::slice::from_raw_parts(self.region.base.as_ptr().add(self.start), self.len) }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096).max(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident pages of the file (what the kernel holds for it).
    fn file_blocks(f: &MemFile) -> i64 {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(f.raw_fd(), &mut st) }, 0);
        st.st_blocks
    }

    #[test]
    fn chunks_are_copied_once_and_their_memory_returns_with_the_last_bytes() {
        let mut w = MediaWriter::new().unwrap();
        let file = w.file.clone();
        let header = Bytes::from_static(b"moof+mdat header");
        let payload = Bytes::from(vec![7u8; 100_000]);
        let (bufs, span) = w.write(&[header.clone(), payload.clone()]).unwrap();
        assert_eq!(bufs, [header.clone(), payload.clone()]);
        // Copies, not the ingest buffers.
        assert_ne!(bufs[1].as_ptr(), payload.as_ptr());
        assert_eq!((span.file_offset(), span.len()), (0, 100_016));
        // The next chunk continues the same range.
        let (more, next) = w.write(std::slice::from_ref(&payload)).unwrap();
        let joined = span.join(&next).expect("contiguous");
        assert_eq!(joined.len(), 200_016);
        assert_eq!(more[0].as_ptr(), unsafe { bufs[1].as_ptr().add(100_000) });
        // The bytes are in the file, where sendfile reads them.
        let mut back = vec![0u8; 16];
        let n = unsafe { libc::pread(file.raw_fd(), back.as_mut_ptr().cast(), 16, 0) };
        assert_eq!(n, 16);
        assert_eq!(back, header);
        assert!(file_blocks(&file) > 0);

        // A new segment: a new region, not contiguous with the old one.
        w.start_segment();
        let (seg2, s2) = w.write(std::slice::from_ref(&header)).unwrap();
        assert!(joined.join(&s2).is_none());
        let before = file_blocks(&file);
        // The first segment's bytes go: its pages leave the file.
        drop((bufs, more, span, next, joined));
        let after = file_blocks(&file);
        assert!(after < before, "{after} blocks, was {before}");
        assert_eq!(seg2[0], header);
    }

    #[test]
    fn a_segment_larger_than_its_region_continues_in_another() {
        let mut w = MediaWriter::new().unwrap();
        let big = Bytes::from(vec![1u8; MIN_REGION - 10]);
        let (_a, sa) = w.write(std::slice::from_ref(&big)).unwrap();
        let (b, sb) = w.write(&[Bytes::from_static(&[2u8; 100])]).unwrap();
        assert!(sa.join(&sb).is_none());
        assert_eq!(b[0], [2u8; 100][..]);
        // A chunk bigger than a region gets a region of its own size.
        let huge = Bytes::from(vec![3u8; 3 * MIN_REGION]);
        let (h, sh) = w.write(std::slice::from_ref(&huge)).unwrap();
        assert_eq!(h[0], huge);
        assert_eq!(sh.len(), huge.len());
    }
}
