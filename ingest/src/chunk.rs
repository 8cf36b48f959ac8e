//! RTMP chunk stream decoding (RTMP 1.0 specification, section 5.3).
//!
//! [`ChunkDecoder`] reads chunks from the front of a [`BytesMut`] and reassembles messages.
//! Every media byte is copied at most once, and no message keeps the caller's read buffer alive
//! unless it fills a good part of it:
//!
//! - A message that arrives whole in one chunk and is at least [`MIN_SLICE_LEN`] long is a
//!   slice of the input buffer, no copy.
//! - A shorter one (every audio frame, small video frames) is copied into an allocation of its
//!   own length. A slice would pin the whole read allocation it came from (64 KiB in the edge)
//!   for as long as the frame lives: 46 AAC frames a second of ~370 bytes each pinned 64 KiB
//!   apiece, about 170x their size.
//! - Any other message (split across chunks, or a chunk that is not whole in the buffer) is
//!   copied as its bytes arrive, into a buffer sized to its length: the decoder takes the
//!   bytes of a chunk that a read boundary cut, so the caller keeps nothing but a partial
//!   chunk header (at most 17 bytes) between reads. The buffer starts at
//!   `min(length, 64 KiB)` and is reallocated once, to the exact length, when a longer message
//!   passes 64 KiB, so that a chunk header alone cannot make the decoder allocate 16 MiB.
//!
//! So a caller that reads into one `BytesMut` and calls [`ChunkDecoder::decode`] until it
//! returns [`Decoded::NeedMore`] is, afterwards, the only owner of that buffer (unless a
//! [`MIN_SLICE_LEN`] slice was handed out) and `reserve` reuses it for the next read.
//!
//! The decoder is written here rather than taken from `rml_rtmp::chunk_io` because that one
//! shares one reassembly buffer between chunk streams (interleaved chunk streams corrupt each
//! other), copies every byte twice, and panics on a type 1 header whose extended timestamp is
//! below `0xFFFFFF` (subtraction overflow in `get_extended_timestamp`).

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

/// The chunk size every RTMP connection starts with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest message length an RTMP chunk header can declare (24 bits).
pub const MAX_MESSAGE_LEN: u32 = 0x00FF_FFFF;
/// Most chunk streams a peer may use on one connection. Real publishers use fewer than ten.
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Most bytes that may be declared by messages being reassembled at once.
pub const MAX_REASSEMBLY_BYTES: usize = 24 << 20;
/// The largest chunk size a peer may set: any, since no message is longer than
/// [`MAX_MESSAGE_LEN`] (see [`ChunkDecoder::set_limits`] for a smaller one).
pub const MAX_CHUNK_SIZE: u32 = MAX_MESSAGE_LEN;

/// Initial buffer for a message split across chunks; it grows once to the message length.
const INITIAL_REASSEMBLY_CAPACITY: usize = 64 * 1024;

/// Shortest message handed out as a slice of the input buffer; shorter ones are copied.
///
/// Half of the 64 KiB read buffer the edge (and the crate documentation's loop) reads into:
/// a slice keeps its whole allocation alive, so a sliced message keeps at most twice its own
/// size, the same bound as a doubling `Vec`, and copying anything shorter costs less than
/// pinning memory for as long as a frame lives (a playlist window is tens of seconds).
/// In practice only publishers that raised their chunk size above 32 KiB send such messages;
/// with the common 4096-byte chunk size every longer frame is reassembled (copied once) anyway.
pub const MIN_SLICE_LEN: usize = 32 * 1024;

/// Longest chunk header: 3-byte basic header, 11-byte message header, 4-byte extended timestamp.
const MAX_HEADER_LEN: usize = 18;

/// Chunk bytes that break the protocol. `offset` counts bytes from the start of the
/// connection (handshake included), so it points into a packet capture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// A type 1, 2 or 3 chunk on a chunk stream that never had a type 0 chunk.
    #[error(
        "chunk at byte {offset}: type {fmt} header on chunk stream {csid} with no previous header"
    )]
    NoPreviousHeader {
        /// Offset of the chunk.
        offset: u64,
        /// Chunk header type (1, 2 or 3).
        fmt: u8,
        /// Chunk stream id.
        csid: u32,
    },
    /// A type 0 or 1 header that starts a new message while the previous one on the same
    /// chunk stream is incomplete.
    #[error("chunk at byte {offset}: new message header on chunk stream {csid} with {missing} bytes of the previous message missing")]
    InterruptedMessage {
        /// Offset of the chunk.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// Bytes still expected for the interrupted message.
        missing: u32,
    },
    /// More chunk streams than [`MAX_CHUNK_STREAMS`].
    #[error("chunk at byte {offset}: more than {MAX_CHUNK_STREAMS} chunk streams (csid {csid})")]
    TooManyChunkStreams {
        /// Offset of the chunk.
        offset: u64,
        /// The chunk stream id that went over the limit.
        csid: u32,
    },
    /// Messages being reassembled declare more than [`MAX_REASSEMBLY_BYTES`] in total.
    #[error("chunk at byte {offset}: {bytes} bytes of messages in reassembly exceed the limit")]
    ReassemblyLimit {
        /// Offset of the chunk.
        offset: u64,
        /// Bytes that would be in reassembly.
        bytes: usize,
    },
    /// A Set Chunk Size of zero or with the reserved top bit set.
    #[error("invalid chunk size {size}")]
    InvalidChunkSize {
        /// The requested size.
        size: u32,
    },
    /// A chunk header starts a message longer than the decoder's current limit
    /// ([`ChunkDecoder::set_limits`]). Reported when the header is complete, before any of
    /// the message's payload is buffered.
    #[error("chunk at byte {offset}: message of {length} bytes (type {type_id}, chunk stream {csid}) exceeds the limit of {max} bytes")]
    MessageTooLong {
        /// Offset of the chunk.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// Message type id.
        type_id: u8,
        /// The declared message length.
        length: u32,
        /// The limit in force.
        max: u32,
    },
    /// A Set Chunk Size above the decoder's current limit ([`ChunkDecoder::set_limits`]).
    #[error("chunk size {size} exceeds the limit of {max} bytes")]
    ChunkSizeTooLarge {
        /// The requested size.
        size: u32,
        /// The limit in force.
        max: u32,
    },
}

/// One reassembled RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Chunk stream the message arrived on.
    pub csid: u32,
    /// Message type id (8 audio, 9 video, 20 AMF0 command…).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// Message timestamp in milliseconds, as sent (32 bits, wraps).
    pub timestamp: u32,
    /// Connection byte offset of the message's first chunk.
    pub offset: u64,
    /// The message body.
    pub payload: Bytes,
}

/// The result of one [`ChunkDecoder::decode`] step.
#[derive(Debug)]
pub enum Decoded {
    /// A chunk completed this message.
    Message(Message),
    /// A chunk, or as much of it as the buffer held, was consumed; its message is not
    /// complete yet.
    Chunk,
    /// The buffer is empty, or holds only part of a chunk header. At least this many more
    /// bytes are needed (exact in the middle of a chunk's payload). Nothing was consumed.
    NeedMore(usize),
}

#[derive(Debug, Default)]
struct ChunkStream {
    /// Absolute timestamp of the current message (wrapping).
    timestamp: u32,
    /// Last timestamp field (absolute for type 0, delta for types 1 and 2), extended value
    /// included: type 3 chunks that start a message add it again.
    delta: u32,
    /// Whether the last type 0/1/2 header carried an extended timestamp; type 3 chunks then
    /// carry one too.
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The message being reassembled, with the offset of its first chunk. A `Vec`, not a
    /// `BytesMut`, for `reserve_exact` (see [`ChunkDecoder::append`]).
    partial: Option<(Vec<u8>, u64)>,
}

/// A parsed chunk header, not yet applied to the chunk stream state.
struct Header {
    fmt: u8,
    csid: u32,
    len: usize,
    timestamp_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
}

/// Reassembles RTMP messages from chunks.
///
/// Call [`decode`](Self::decode) until it returns [`Decoded::NeedMore`]; apply a peer's
/// Set Chunk Size with [`set_chunk_size`](Self::set_chunk_size) before decoding the next chunk.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    /// Connection offset of the next byte `decode` will read.
    offset: u64,
    /// Sum of the lengths of messages being reassembled.
    reassembling: usize,
    /// Longest message a header may start.
    max_message_len: u32,
    /// Largest chunk size the peer may set.
    max_chunk_size: u32,
    /// The chunk whose header was consumed but not all of its payload: (chunk stream id,
    /// payload bytes still to come). The next bytes are that payload, not a header.
    in_chunk: Option<(u32, usize)>,
}

impl ChunkDecoder {
    /// A decoder for a connection whose first chunk byte is at connection offset `offset`
    /// (the handshake length for a server).
    pub fn new(offset: u64) -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            offset,
            reassembling: 0,
            max_message_len: MAX_MESSAGE_LEN,
            max_chunk_size: MAX_CHUNK_SIZE,
            in_chunk: None,
        }
    }

    /// Sets the longest message a chunk header may start and the largest chunk size the peer
    /// may set from now on (both default to [`MAX_MESSAGE_LEN`], the protocol's own bound).
    /// A header announcing a longer message fails [`decode`](Self::decode) with
    /// [`ChunkError::MessageTooLong`] before its payload is buffered; a message already being
    /// reassembled, and the chunk size already in force, are not affected.
    pub fn set_limits(&mut self, max_message_len: u32, max_chunk_size: u32) {
        self.max_message_len = max_message_len.min(MAX_MESSAGE_LEN);
        self.max_chunk_size = max_chunk_size.min(MAX_CHUNK_SIZE);
    }

    /// Connection offset of the next byte to decode.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Applies a Set Chunk Size message from the peer. Sizes above [`MAX_MESSAGE_LEN`] act as
    /// [`MAX_MESSAGE_LEN`]: no message is longer. A size above the limit of
    /// [`set_limits`](Self::set_limits) (when lower than that) is refused.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > 0x7FFF_FFFF {
            return Err(ChunkError::InvalidChunkSize { size });
        }
        if self.max_chunk_size < MAX_CHUNK_SIZE && size > self.max_chunk_size {
            return Err(ChunkError::ChunkSizeTooLarge {
                size,
                max: self.max_chunk_size,
            });
        }
        self.chunk_size = size.min(MAX_MESSAGE_LEN);
        Ok(())
    }

    /// Drops the partial message on chunk stream `csid` (an Abort message from the peer).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            if s.partial.take().is_some() {
                self.reassembling = self.reassembling.saturating_sub(s.length as usize);
            }
        }
    }

    /// Decodes one chunk, or as much of it as `buf` holds, from the front of `buf`.
    ///
    /// Call it until it returns [`Decoded::NeedMore`]: `buf` then holds at most the start of
    /// a chunk header, which the next bytes of the connection must follow. Messages do not
    /// depend on where reads split the input, errors neither (they are found on headers).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        if let Some((csid, left)) = self.in_chunk {
            if buf.is_empty() {
                return Ok(Decoded::NeedMore(left));
            }
            return Ok(self.take_payload(buf, csid, left));
        }
        let header = match self.parse_header(buf)? {
            Ok(h) => h,
            Err(need) => return Ok(Decoded::NeedMore(need)),
        };
        let chunk_offset = self.offset;
        let existing = self.streams.get(&header.csid);
        if existing.is_none() {
            if header.fmt != 0 {
                return Err(ChunkError::NoPreviousHeader {
                    offset: chunk_offset,
                    fmt: header.fmt,
                    csid: header.csid,
                });
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(ChunkError::TooManyChunkStreams {
                    offset: chunk_offset,
                    csid: header.csid,
                });
            }
        }

        // Length of this chunk's payload, from the state as it will be after this header.
        let prev_length = existing.map_or(0, |s| s.length);
        let partial_len = existing
            .and_then(|s| s.partial.as_ref())
            .map(|(p, _)| p.len());
        let (length, received) = match (partial_len, header.fmt) {
            (Some(received), 2 | 3) => (prev_length, received),
            (Some(received), _) => {
                return Err(ChunkError::InterruptedMessage {
                    offset: chunk_offset,
                    csid: header.csid,
                    missing: prev_length.saturating_sub(len_u32(received)),
                })
            }
            (None, 0 | 1) => (header.length, 0),
            (None, _) => (prev_length, 0),
        };
        // A new message: refuse it on its header if it is too long, before buffering any of it.
        // (Type 2 and 3 headers repeat an earlier length, which a lower limit set since may
        // not allow either.)
        if partial_len.is_none() && length > self.max_message_len {
            let type_id = match header.fmt {
                0 | 1 => header.type_id,
                _ => existing.map_or(0, |s| s.type_id),
            };
            return Err(ChunkError::MessageTooLong {
                offset: chunk_offset,
                csid: header.csid,
                type_id,
                length,
                max: self.max_message_len,
            });
        }
        // A new message counts toward the reassembly limit whether or not it ends up being
        // reassembled (that depends on where reads split the input; errors must not).
        if partial_len.is_none() {
            let total = self.reassembling + length as usize;
            if total > MAX_REASSEMBLY_BYTES {
                return Err(ChunkError::ReassemblyLimit {
                    offset: chunk_offset,
                    bytes: total,
                });
            }
        }
        // `received < length` whenever a message is partial (it would have completed
        // otherwise), so this never underflows; saturate anyway.
        let remaining = (length as usize).saturating_sub(received);
        let payload_len = remaining.min(self.chunk_size as usize);

        // The header is whole: commit it to the chunk stream state. Nothing was changed before
        // this point, so `NeedMore` and errors leave the decoder as it was.
        let s = self.streams.entry(header.csid).or_default();
        let continuation = s.partial.is_some();
        match header.fmt {
            0 => {
                s.timestamp = header.timestamp_field;
                s.delta = header.timestamp_field;
                s.length = header.length;
                s.type_id = header.type_id;
                s.stream_id = header.stream_id;
                s.extended = header.extended;
            }
            1 => {
                s.timestamp = s.timestamp.wrapping_add(header.timestamp_field);
                s.delta = header.timestamp_field;
                s.length = header.length;
                s.type_id = header.type_id;
                s.extended = header.extended;
            }
            2 if !continuation => {
                s.timestamp = s.timestamp.wrapping_add(header.timestamp_field);
                s.delta = header.timestamp_field;
                s.extended = header.extended;
            }
            // A type 2 header in the middle of a message: tolerated, timestamp unchanged.
            2 => s.extended = header.extended,
            // Type 3 starting a new message repeats the previous delta.
            _ if !continuation => s.timestamp = s.timestamp.wrapping_add(s.delta),
            _ => {}
        }

        buf.advance(header.len);
        self.offset += header.len as u64;

        if !continuation && payload_len == length as usize && buf.len() >= payload_len {
            // The whole message is in this chunk, and the chunk is in `buf`.
            let payload = if payload_len >= MIN_SLICE_LEN {
                buf.split_to(payload_len).freeze()
            } else {
                // Not `split_to`: that would make `buf` shared, and `reserve` could no longer
                // reuse its allocation in place.
                let copy = Bytes::copy_from_slice(&buf[..payload_len]);
                buf.advance(payload_len);
                copy
            };
            self.offset += payload_len as u64;
            return Ok(Decoded::Message(Message {
                csid: header.csid,
                type_id: s.type_id,
                stream_id: s.stream_id,
                timestamp: s.timestamp,
                offset: chunk_offset,
                payload,
            }));
        }
        if !continuation {
            // Allocated when its first payload bytes arrive (`append`), not on a header.
            s.partial = Some((Vec::new(), chunk_offset));
            self.reassembling += length as usize;
        }
        if payload_len == 0 {
            // Only a zero-length message has an empty chunk, and it is whole above.
            return Ok(Decoded::Chunk);
        }
        Ok(self.take_payload(buf, header.csid, payload_len))
    }

    /// Copies up to `left` payload bytes of the current chunk, on chunk stream `csid`, from
    /// `buf` into that stream's message; completes the message when they were its last.
    fn take_payload(&mut self, buf: &mut BytesMut, csid: u32, left: usize) -> Decoded {
        let n = left.min(buf.len());
        let left = left - n;
        self.in_chunk = (left > 0).then_some((csid, left));
        let data = buf.get(..n).unwrap_or_default();
        self.offset += n as u64;
        // The stream and its partial message exist: the header that started this chunk
        // created them, and only an Abort message (decoded between chunks) removes the
        // partial. Without one, the bytes are dropped.
        let Some(s) = self.streams.get_mut(&csid) else {
            buf.advance(n);
            return Decoded::Chunk;
        };
        let want = s.length as usize;
        let complete = match &mut s.partial {
            Some((partial, _)) => {
                append(partial, data, want);
                left == 0 && partial.len() >= want
            }
            None => false,
        };
        buf.advance(n);
        if !complete {
            return Decoded::Chunk;
        }
        let Some((partial, start)) = s.partial.take() else {
            return Decoded::Chunk;
        };
        self.reassembling = self.reassembling.saturating_sub(want);
        Decoded::Message(Message {
            csid,
            type_id: s.type_id,
            stream_id: s.stream_id,
            timestamp: s.timestamp,
            offset: start,
            // `Vec` to `Bytes` takes the allocation over, no copy.
            payload: Bytes::from(partial),
        })
    }

    /// Parses the chunk header at the front of `buf` without consuming it.
    /// `Ok(Err(n))`: at least `n` more bytes are needed.
    fn parse_header(&self, buf: &[u8]) -> Result<Result<Header, usize>, ChunkError> {
        let Some(&b0) = buf.first() else {
            return Ok(Err(1));
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (u32::from(b1) + 64, 2),
                None => return Ok(Err(2 - buf.len())),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (u32::from(b2) * 256 + u32::from(b1) + 64, 3),
                _ => return Ok(Err(3 - buf.len())),
            },
            c => (u32::from(c), 1),
        };
        let msg_header_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(mh) = buf.get(pos..pos + msg_header_len) else {
            return Ok(Err(pos + msg_header_len - buf.len()));
        };
        let u24 = |b: &[u8], i: usize| -> u32 {
            // Callers pass `i + 3 <= b.len()` (fixed offsets into a slice of known length).
            match b.get(i..i + 3) {
                Some(&[x, y, z]) => u32::from_be_bytes([0, x, y, z]),
                _ => 0,
            }
        };
        let mut h = Header {
            fmt,
            csid,
            len: 0,
            timestamp_field: 0,
            length: 0,
            type_id: 0,
            stream_id: 0,
            extended: false,
        };
        if fmt <= 2 {
            h.timestamp_field = u24(mh, 0);
            h.extended = h.timestamp_field == 0x00FF_FFFF;
        }
        if fmt <= 1 {
            h.length = u24(mh, 3);
            h.type_id = mh.get(6).copied().unwrap_or(0);
        }
        if fmt == 0 {
            if let Some(&[a, b, c, d]) = mh.get(7..11) {
                h.stream_id = u32::from_le_bytes([a, b, c, d]);
            }
        }
        pos += msg_header_len;
        let extended = if fmt == 3 {
            self.streams.get(&csid).is_some_and(|s| s.extended)
        } else {
            h.extended
        };
        if extended {
            let Some(&[a, b, c, d]) = buf.get(pos..pos + 4) else {
                return Ok(Err(pos + 4 - buf.len()));
            };
            pos += 4;
            if fmt <= 2 {
                h.timestamp_field = u32::from_be_bytes([a, b, c, d]);
            }
            // A type 3 chunk's extended timestamp repeats the one of its header; ignored.
        }
        h.len = pos;
        debug_assert!(h.len <= MAX_HEADER_LEN);
        Ok(Ok(h))
    }
}

/// Appends `data` to a message of `want` bytes being reassembled. The buffer is allocated
/// when the first bytes arrive, at `min(want, 64 KiB)`, and reallocated once, to exactly
/// `want`, when more than 64 KiB have arrived: a header alone allocates nothing, and no
/// message gets more capacity than its length (`Vec::reserve` would double).
fn append(partial: &mut Vec<u8>, data: &[u8], want: usize) {
    let needed = partial.len() + data.len();
    if partial.capacity() < needed {
        let cap = if needed <= INITIAL_REASSEMBLY_CAPACITY {
            want.min(INITIAL_REASSEMBLY_CAPACITY)
        } else {
            want
        };
        partial.reserve_exact(cap.max(needed) - partial.len());
    }
    partial.extend_from_slice(data);
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Encodes chunks the way the RTMP specification describes them. For tests: the session's
/// outbound side uses `rml_rtmp`'s serializer.
#[cfg(test)]
pub(crate) mod encode {
    /// One chunk with an explicit header type; `payload` is this chunk's part of the message.
    pub(crate) fn chunk(
        fmt: u8,
        csid: u32,
        timestamp: u32,
        length: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        match csid {
            2..=63 => out.push((fmt << 6) | csid as u8),
            64..=319 => out.extend_from_slice(&[fmt << 6, (csid - 64) as u8]),
            _ => {
                let c = csid - 64;
                out.extend_from_slice(&[(fmt << 6) | 1, (c & 0xff) as u8, (c >> 8) as u8]);
            }
        }
        let ext = timestamp >= 0x00FF_FFFF;
        let field = if ext { 0x00FF_FFFF } else { timestamp };
        if fmt <= 2 {
            out.extend_from_slice(&field.to_be_bytes()[1..]);
        }
        if fmt <= 1 {
            out.extend_from_slice(&length.to_be_bytes()[1..]);
            out.push(type_id);
        }
        if fmt == 0 {
            out.extend_from_slice(&stream_id.to_le_bytes());
        }
        if ext {
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    /// A whole message as a type 0 chunk followed by type 3 continuations.
    pub(crate) fn message(
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
        chunk_size: usize,
    ) -> Vec<u8> {
        let mut parts = payload.chunks(chunk_size.max(1));
        let first = parts.next().unwrap_or(&[]);
        let len = payload.len() as u32;
        let mut out = chunk(0, csid, timestamp, len, type_id, stream_id, first);
        for p in parts {
            out.extend(chunk(3, csid, timestamp, len, type_id, stream_id, p));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::encode::{chunk, message};
    use super::*;

    fn decode_all(d: &mut ChunkDecoder, bytes: &[u8]) -> Result<Vec<Message>, ChunkError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf)? {
                Decoded::Message(m) => out.push(m),
                Decoded::Chunk => {}
                Decoded::NeedMore(_) => return Ok(out),
            }
        }
    }

    /// Decodes what `buf` holds until the decoder needs more; the caller's loop.
    fn drain(d: &mut ChunkDecoder, buf: &mut BytesMut, out: &mut Vec<Message>) {
        loop {
            match d.decode(buf).unwrap() {
                Decoded::Message(m) => out.push(m),
                Decoded::Chunk => {}
                Decoded::NeedMore(_) => return,
            }
        }
    }

    fn in_allocation(p: &[u8], base: usize, cap: usize) -> bool {
        (base..base + cap).contains(&(p.as_ptr() as usize))
    }

    #[test]
    fn short_single_chunk_messages_are_copied_out_of_the_input() {
        // An audio frame in a 64 KiB read buffer, as the edge reads it.
        let bytes = message(4, 1000, 8, 1, b"\xaf\x01abc", 128);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(&bytes);
        let base = buf.as_ptr() as usize;
        let mut d = ChunkDecoder::new(3073);
        let Decoded::Message(m) = d.decode(&mut buf).unwrap() else {
            panic!("expected a message")
        };
        assert_eq!(
            (m.csid, m.type_id, m.stream_id, m.timestamp, m.offset),
            (4, 8, 1, 1000, 3073)
        );
        assert_eq!(&m.payload[..], b"\xaf\x01abc");
        assert_eq!(d.offset(), 3073 + bytes.len() as u64);
        // The message does not point into the read buffer, and does not keep it: while the
        // message is alive, the next read reuses the buffer without allocating.
        assert!(
            !in_allocation(&m.payload, base, 64 * 1024),
            "payload is a slice"
        );
        assert!(buf.is_empty());
        assert!(
            buf.try_reclaim(64 * 1024),
            "the read buffer is still shared"
        );
        assert_eq!(buf.as_ptr() as usize, base);
        drop(m);
    }

    #[test]
    fn long_single_chunk_messages_are_slices_of_the_input() {
        let body = vec![9u8; MIN_SLICE_LEN];
        let mut d = ChunkDecoder::new(0);
        d.set_chunk_size(64 * 1024).unwrap();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(&message(6, 0, 9, 1, &body, 64 * 1024));
        let base = buf.as_ptr() as usize;
        let Decoded::Message(m) = d.decode(&mut buf).unwrap() else {
            panic!("expected a message")
        };
        assert!(m.payload == body);
        assert_eq!(m.payload.as_ptr() as usize, base + 12, "payload was copied");
        // One byte shorter: copied.
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(&message(6, 0, 9, 1, &body[1..], 64 * 1024));
        let base = buf.as_ptr() as usize;
        let Decoded::Message(m) = d.decode(&mut buf).unwrap() else {
            panic!("expected a message")
        };
        assert!(!in_allocation(&m.payload, base, 64 * 1024));
    }

    #[test]
    fn a_chunk_cut_by_a_read_is_copied_once_into_an_exact_buffer() {
        // 100,000 bytes in chunks of 70,000: the first chunk is longer than the 64 KiB read
        // buffer, so it is always cut; reads of 1,000 bytes cut the headers too.
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let bytes = message(6, 0, 9, 1, &big, 70_000);
        let mut d = ChunkDecoder::new(0);
        d.set_chunk_size(70_000).unwrap();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let base = buf.as_ptr() as usize;
        let mut msgs = Vec::new();
        for read in bytes.chunks(1000) {
            buf.reserve(read.len());
            assert!(
                in_allocation(&buf, base, 64 * 1024),
                "the read buffer was reallocated"
            );
            buf.extend_from_slice(read);
            drain(&mut d, &mut buf, &mut msgs);
            // Nothing but the start of a header is left for the next read.
            assert!(buf.len() < MAX_HEADER_LEN, "{} bytes left", buf.len());
            if let Some((partial, _)) = d.streams.get(&6).and_then(|s| s.partial.as_ref()) {
                let cap = partial.capacity();
                assert!(cap == 64 * 1024 || cap == big.len(), "capacity {cap}");
            }
        }
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].payload == big);
        assert_eq!((d.reassembling, d.offset()), (0, bytes.len() as u64));
    }

    #[test]
    fn a_header_alone_allocates_nothing() {
        let mut d = ChunkDecoder::new(0);
        let mut buf = BytesMut::from(&chunk(0, 4, 0, MAX_MESSAGE_LEN, 9, 1, &[])[..]);
        assert!(matches!(d.decode(&mut buf).unwrap(), Decoded::Chunk));
        assert!(buf.is_empty());
        let s = &d.streams[&4];
        assert_eq!(s.partial.as_ref().map(|(p, _)| p.capacity()), Some(0));
        assert_eq!(d.reassembling, MAX_MESSAGE_LEN as usize);
        assert_eq!(d.in_chunk, Some((4, DEFAULT_CHUNK_SIZE as usize)));
    }

    #[test]
    fn reassembles_interleaved_chunk_streams() {
        let video: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let v = message(6, 40, 9, 1, &video, 128);
        // Split the video message after its first chunk (1 + 11 + 128 bytes) and put a whole
        // audio message in between: legal RTMP, and it broke rml_rtmp's shared buffer.
        let (v1, v2) = v.split_at(140);
        let mut bytes = v1.to_vec();
        bytes.extend(message(4, 41, 8, 1, b"audio", 128));
        bytes.extend_from_slice(v2);
        let msgs = decode_all(&mut ChunkDecoder::new(0), &bytes).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].type_id, &msgs[0].payload[..]), (8, &b"audio"[..]));
        assert_eq!((msgs[1].type_id, msgs[1].timestamp), (9, 40));
        assert_eq!(&msgs[1].payload[..], &video[..]);
        assert_eq!(msgs[1].offset, 0);
    }

    #[test]
    fn reassembles_messages_larger_than_the_initial_buffer() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for chunk_size in [128, 4096, 70_000] {
            let mut d = ChunkDecoder::new(0);
            d.set_chunk_size(chunk_size as u32).unwrap();
            let msgs = decode_all(&mut d, &message(6, 0, 9, 1, &big, chunk_size)).unwrap();
            assert_eq!(msgs.len(), 1);
            assert!(msgs[0].payload == big);
            assert_eq!(d.reassembling, 0);
        }
    }

    #[test]
    fn header_types_carry_deltas() {
        let mut b = chunk(0, 5, 100, 2, 9, 1, b"aa");
        b.extend(chunk(1, 5, 20, 3, 8, 0, b"bbb")); // delta 20, new length/type
        b.extend(chunk(2, 5, 5, 0, 0, 0, b"ccc")); // delta 5, same length
        b.extend(chunk(3, 5, 0, 0, 0, 0, b"ddd")); // repeats delta 5
        let msgs = decode_all(&mut ChunkDecoder::new(0), &b).unwrap();
        let got: Vec<_> = msgs
            .iter()
            .map(|m| (m.timestamp, m.type_id, m.stream_id, m.payload.len()))
            .collect();
        assert_eq!(
            got,
            [
                (100, 9, 1, 2),
                (120, 8, 1, 3),
                (125, 8, 1, 3),
                (130, 8, 1, 3)
            ]
        );
    }

    #[test]
    fn extended_timestamps() {
        let payload = vec![7u8; 200];
        // Type 0 with an extended timestamp, continued by a type 3 chunk that repeats it.
        let b = message(3, 0x0123_4567, 20, 0, &payload, 128);
        let msgs = decode_all(&mut ChunkDecoder::new(0), &b).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].timestamp, 0x0123_4567);
        assert_eq!(msgs[0].payload.len(), 200);
        // A type 1 header whose extended delta is below 0xFFFFFF (rml_rtmp panics here).
        let mut b = chunk(0, 3, 1, 1, 20, 0, b"x");
        b.extend(chunk(1, 3, 0x00FF_FFFF, 1, 20, 0, b"y"));
        let mut with_small_ext = chunk(0, 3, 1, 1, 20, 0, b"x");
        with_small_ext.extend_from_slice(&[0x43, 0xff, 0xff, 0xff, 0, 0, 1, 20, 0, 0, 0, 1, b'y']);
        let msgs = decode_all(&mut ChunkDecoder::new(0), &with_small_ext).unwrap();
        assert_eq!(msgs[1].timestamp, 2);
        let msgs = decode_all(&mut ChunkDecoder::new(0), &b).unwrap();
        assert_eq!(msgs[1].timestamp, 0x0100_0000);
    }

    #[test]
    fn two_and_three_byte_chunk_stream_ids() {
        let mut b = message(100, 1, 8, 1, b"a", 128);
        b.extend(message(5000, 2, 9, 1, b"b", 128));
        let msgs = decode_all(&mut ChunkDecoder::new(0), &b).unwrap();
        assert_eq!((msgs[0].csid, msgs[1].csid), (100, 5000));
    }

    #[test]
    fn zero_length_message() {
        let b = message(3, 1, 20, 0, b"", 128);
        let msgs = decode_all(&mut ChunkDecoder::new(0), &b).unwrap();
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].payload.is_empty());
    }

    #[test]
    fn a_cut_chunk_is_taken_as_far_as_it_goes() {
        let b = message(4, 0, 8, 1, b"hello", 128);
        for cut in 0..b.len() {
            let mut d = ChunkDecoder::new(0);
            let mut buf = BytesMut::from(&b[..cut]);
            if cut < 12 {
                // Inside the header: nothing consumed.
                match d.decode(&mut buf).unwrap() {
                    Decoded::NeedMore(n) => assert!(n >= 1 && cut + n <= 12, "cut {cut}: {n}"),
                    other => panic!("cut {cut}: {other:?}"),
                }
                assert_eq!(buf.len(), cut, "nothing consumed");
                buf.extend_from_slice(&b[cut..]);
            } else {
                // The header and the payload bytes there are: consumed.
                assert!(matches!(d.decode(&mut buf).unwrap(), Decoded::Chunk));
                assert!(buf.is_empty());
                match d.decode(&mut buf).unwrap() {
                    Decoded::NeedMore(n) => assert_eq!(cut + n, b.len(), "exact"),
                    other => panic!("cut {cut}: {other:?}"),
                }
                buf.extend_from_slice(&b[cut..]);
            }
            let mut msgs = Vec::new();
            drain(&mut d, &mut buf, &mut msgs);
            assert_eq!(msgs.len(), 1, "cut {cut}");
            assert_eq!((&msgs[0].payload[..], msgs[0].offset), (&b"hello"[..], 0));
            assert_eq!(d.offset(), b.len() as u64);
        }
    }

    #[test]
    fn errors() {
        let mut d = ChunkDecoder::new(10);
        let b = chunk(1, 4, 0, 1, 8, 0, b"x");
        assert_eq!(
            decode_all(&mut d, &b),
            Err(ChunkError::NoPreviousHeader {
                offset: 10,
                fmt: 1,
                csid: 4
            })
        );

        // A new type 0 message while the previous one on the same csid is incomplete.
        let mut b = chunk(0, 4, 0, 300, 9, 1, &[0; 128]);
        b.extend(chunk(0, 4, 0, 1, 9, 1, b"x"));
        assert!(matches!(
            decode_all(&mut ChunkDecoder::new(0), &b),
            Err(ChunkError::InterruptedMessage { missing: 172, .. })
        ));

        let mut d = ChunkDecoder::new(0);
        assert!(d.set_chunk_size(0).is_err());
        assert!(d.set_chunk_size(0x8000_0000).is_err());
        d.set_chunk_size(0x7FFF_FFFF).unwrap();
        assert_eq!(d.chunk_size(), MAX_MESSAGE_LEN);

        let mut b = Vec::new();
        for csid in 3..(3 + MAX_CHUNK_STREAMS as u32 + 1) {
            b.extend(message(csid, 0, 8, 1, b"a", 128));
        }
        assert!(matches!(
            decode_all(&mut ChunkDecoder::new(0), &b),
            Err(ChunkError::TooManyChunkStreams { .. })
        ));

        // Two nearly-maximal messages started at once.
        let mut b = chunk(0, 4, 0, MAX_MESSAGE_LEN, 9, 1, &[0; 128]);
        b.extend(chunk(0, 5, 0, MAX_MESSAGE_LEN, 9, 1, &[0; 128]));
        assert!(matches!(
            decode_all(&mut ChunkDecoder::new(0), &b),
            Err(ChunkError::ReassemblyLimit { .. })
        ));
    }

    #[test]
    fn a_message_over_the_limit_is_refused_on_its_header() {
        let mut d = ChunkDecoder::new(3073);
        d.set_limits(64 * 1024, 64 * 1024);
        // At the limit: fine, reassembled from 128-byte chunks.
        let ok = vec![1u8; 64 * 1024];
        let msgs = decode_all(&mut d, &message(4, 0, 20, 0, &ok, 128)).unwrap();
        assert_eq!(msgs[0].payload.len(), 64 * 1024);
        // A header announcing 16 MiB, alone: refused, and nothing of it buffered.
        let header = chunk(0, 6, 0, MAX_MESSAGE_LEN, 9, 1, &[]);
        let mut buf = BytesMut::from(&header[..]);
        let offset = d.offset();
        let e = d.decode(&mut buf).unwrap_err();
        assert_eq!(
            e,
            ChunkError::MessageTooLong {
                offset,
                csid: 6,
                type_id: 9,
                length: MAX_MESSAGE_LEN,
                max: 64 * 1024
            }
        );
        assert_eq!(d.reassembling, 0);
        assert!(
            e.to_string().contains("exceeds the limit of 65536 bytes"),
            "{e}"
        );

        // A type 3 header repeating a length allowed before the limit was lowered.
        let mut d = ChunkDecoder::new(0);
        let big = vec![2u8; 100_000];
        let first = message(4, 0, 9, 1, &big, 128);
        assert_eq!(decode_all(&mut d, &first).unwrap().len(), 1);
        d.set_limits(64 * 1024, 64 * 1024);
        let again = chunk(3, 4, 0, 0, 0, 0, &big[..128]);
        assert!(matches!(
            decode_all(&mut d, &again),
            Err(ChunkError::MessageTooLong {
                length: 100_000,
                type_id: 9,
                ..
            })
        ));

        // Raised again (publish accepted), the long message is reassembled.
        let mut d = ChunkDecoder::new(0);
        d.set_limits(64 * 1024, 64 * 1024);
        d.set_limits(MAX_MESSAGE_LEN, MAX_CHUNK_SIZE);
        assert_eq!(decode_all(&mut d, &first).unwrap().len(), 1);
    }

    #[test]
    fn a_chunk_size_over_the_limit_is_refused() {
        let mut d = ChunkDecoder::new(0);
        d.set_limits(64 * 1024, 64 * 1024);
        d.set_chunk_size(64 * 1024).unwrap();
        assert_eq!(
            d.set_chunk_size(64 * 1024 + 1),
            Err(ChunkError::ChunkSizeTooLarge {
                size: 64 * 1024 + 1,
                max: 64 * 1024
            })
        );
        assert_eq!(d.chunk_size(), 64 * 1024);
        // Without a lower limit, any valid size (above MAX_MESSAGE_LEN acts as MAX_MESSAGE_LEN).
        d.set_limits(MAX_MESSAGE_LEN, MAX_CHUNK_SIZE);
        d.set_chunk_size(0x7FFF_FFFF).unwrap();
        assert_eq!(d.chunk_size(), MAX_MESSAGE_LEN);
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let mut d = ChunkDecoder::new(0);
        let b = chunk(0, 4, 0, 300, 9, 1, &[0; 128]);
        assert!(decode_all(&mut d, &b).unwrap().is_empty());
        d.abort(4);
        let b = message(4, 0, 9, 1, b"fresh", 128);
        let msgs = decode_all(&mut d, &b).unwrap();
        assert_eq!(&msgs[0].payload[..], b"fresh");
    }

    proptest! {
        #[test]
        fn messages_round_trip_at_any_chunk_size(
            msgs in proptest::collection::vec(
                (2u32..400, any::<u32>(), 1u8..30, any::<u32>(), proptest::collection::vec(any::<u8>(), 0..600)),
                1..8,
            ),
            chunk_size in 1usize..700,
        ) {
            let mut d = ChunkDecoder::new(0);
            d.set_chunk_size(chunk_size as u32).unwrap();
            let mut bytes = Vec::new();
            for (csid, ts, ty, sid, p) in &msgs {
                bytes.extend(message(*csid, *ts, *ty, *sid, p, chunk_size));
            }
            let got = decode_all(&mut d, &bytes).unwrap();
            prop_assert_eq!(got.len(), msgs.len());
            for (m, (csid, ts, ty, sid, p)) in got.iter().zip(&msgs) {
                prop_assert_eq!((m.csid, m.timestamp, m.type_id, m.stream_id), (*csid, *ts, *ty, *sid));
                prop_assert_eq!(&m.payload[..], &p[..]);
            }
        }

        #[test]
        fn messages_do_not_depend_on_where_reads_split_the_input(
            msgs in proptest::collection::vec(
                (2u32..70, 1u8..30, proptest::collection::vec(any::<u8>(), 0..3000)),
                1..8,
            ),
            chunk_size in prop_oneof![1usize..300, 1000usize..5000],
            reads in proptest::collection::vec(1usize..2000, 1..50),
        ) {
            let mut bytes = Vec::new();
            for (csid, ty, p) in &msgs {
                bytes.extend(message(*csid, 0, *ty, 1, p, chunk_size));
            }
            let mut d = ChunkDecoder::new(0);
            d.set_chunk_size(chunk_size as u32).unwrap();
            // One buffer for the whole connection, as the edge reads.
            let mut buf = BytesMut::with_capacity(4096);
            let mut got = Vec::new();
            let (mut rest, mut i) = (&bytes[..], 0);
            while !rest.is_empty() {
                let n = reads[i % reads.len()].min(rest.len());
                i += 1;
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                drain(&mut d, &mut buf, &mut got);
                prop_assert!(buf.len() < MAX_HEADER_LEN);
            }
            prop_assert_eq!(got.len(), msgs.len());
            for (m, (csid, ty, p)) in got.iter().zip(&msgs) {
                prop_assert_eq!((m.csid, m.type_id), (*csid, *ty));
                prop_assert_eq!(&m.payload[..], &p[..]);
            }
            prop_assert_eq!(d.reassembling, 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&mut ChunkDecoder::new(0), &bytes);
        }
    }
}
