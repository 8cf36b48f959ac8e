//! HTTP/1.1 responses, sans-IO: the head, then the body as it arrives (`Content-Length` or
//! chunked), handed out as slices of the read buffer. Read here from an origin (the edge's
//! follower) and from a publish webhook; the load generator (`benches`) compiles this file in
//! for its viewers.
//!
//! Depends only on `bytes` and `httparse`, so the fuzz target compiles this file alone. Every
//! size comes from a peer and is bounded: the head by [`MAX_HEAD`], chunk-size lines and
//! trailers by [`MAX_LINE`], the body by the caller's limit.

use bytes::{Buf, Bytes, BytesMut};

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest chunk-size line (with extensions) or trailer section accepted.
pub const MAX_LINE: usize = 4 * 1024;
/// Headers parsed per response.
const MAX_HEADERS: usize = 32;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (no length, not chunked).
    Close,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// How the body ends.
    pub framing: Framing,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Parses a response head at the start of `buf`: the head and its length, `Ok(None)` while
/// it is incomplete. A status outside 200-599 (an interim 1xx, or httparse's any three
/// digits) is an error.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err("response head too large".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let status = match resp.code {
        Some(c) if (100..600).contains(&c) => c,
        _ => return Err("bad response: no valid status code".into()),
    };
    if status < 200 {
        return Err(format!("unexpected interim response {status}"));
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| "bad header value")?;
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked` is spoken here, and it must be the last coding.
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(format!("unsupported Transfer-Encoding {value:?}"));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
    }
    let framing = if status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        // RFC 9112 6.3: Transfer-Encoding overrides Content-Length (and the connection closes).
        if length.is_some() {
            close = true;
        }
        Framing::Chunked
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => {
                close = true;
                Framing::Close
            }
        }
    };
    Ok(Some((
        Head {
            status,
            framing,
            close,
        },
        len,
    )))
}

/// What [`BodyDecoder::next`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Body bytes (a slice of the read buffer, not a copy).
    Data(Bytes),
    /// More bytes must be read.
    NeedMore,
    /// The body is complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `left` bytes of a `Content-Length` body.
    Length {
        left: u64,
    },
    /// Until the connection closes.
    Close,
    /// At a chunk-size line.
    Size,
    /// In a chunk's data.
    Data {
        left: u64,
    },
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// In the trailer section, `seen` bytes of it so far.
    Trailer {
        seen: usize,
    },
    Done,
}

/// Decodes one response body from the bytes after its head.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
    /// Body bytes handed out so far.
    total: u64,
    limit: u64,
}

impl BodyDecoder {
    /// A decoder for a body framed by `framing`, refusing more than `limit` bytes.
    pub fn new(framing: Framing, limit: u64) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length { left: n },
            Framing::Chunked => State::Size,
            Framing::Close => State::Close,
        };
        Self {
            state,
            total: 0,
            limit,
        }
    }

    /// The body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next piece of body from the front of `buf`. `eof`: the connection closed, so
    /// no more bytes will come.
    pub fn next(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Piece, String> {
        loop {
            match self.state {
                State::Done => return Ok(Piece::Done),
                State::Length { left } => {
                    return self.counted(buf, eof, left, |left| State::Length { left }, State::Done)
                }
                State::Close => {
                    if buf.is_empty() {
                        if eof {
                            self.state = State::Done;
                            return Ok(Piece::Done);
                        }
                        return Ok(Piece::NeedMore);
                    }
                    let n = buf.len();
                    return self.data(buf.split_to(n).freeze());
                }
                State::Size => {
                    let Some(end) = find_crlf(buf) else {
                        if buf.len() > MAX_LINE {
                            return Err("chunk-size line too long".into());
                        }
                        return self.need(eof);
                    };
                    let line = &buf[..end];
                    let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
                    let hex = std::str::from_utf8(hex)
                        .map_err(|_| "bad chunk size")?
                        .trim_matches(|c| c == ' ' || c == '\t');
                    if hex.is_empty() || hex.len() > 15 {
                        return Err(format!("bad chunk size {hex:?}"));
                    }
                    let size = u64::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk size {hex:?}"))?;
                    buf.advance(end + 2);
                    self.state = if size == 0 {
                        State::Trailer { seen: 0 }
                    } else {
                        State::Data { left: size }
                    };
                }
                State::Data { left } => {
                    return self.counted(
                        buf,
                        eof,
                        left,
                        |left| State::Data { left },
                        State::DataEnd,
                    )
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return self.need(eof);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailer { seen } => {
                    let Some(end) = find_crlf(buf) else {
                        if seen + buf.len() > MAX_LINE {
                            return Err("trailer section too long".into());
                        }
                        return self.need(eof);
                    };
                    buf.advance(end + 2);
                    self.state = if end == 0 {
                        State::Done
                    } else if seen + end + 2 > MAX_LINE {
                        return Err("trailer section too long".into());
                    } else {
                        State::Trailer {
                            seen: seen + end + 2,
                        }
                    };
                }
            }
        }
    }

    /// Up to `left` bytes of a counted run (a `Content-Length` body, a chunk's data): the
    /// state goes on as `more(left)`, or to `then` once the run is whole.
    fn counted(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
        left: u64,
        more: fn(u64) -> State,
        then: State,
    ) -> Result<Piece, String> {
        if buf.is_empty() {
            return self.need(eof);
        }
        let n = left.min(buf.len() as u64) as usize;
        let left = left - n as u64;
        self.state = if left == 0 { then } else { more(left) };
        self.data(buf.split_to(n).freeze())
    }

    fn need(&self, eof: bool) -> Result<Piece, String> {
        if eof {
            Err("connection closed in the middle of a response body".into())
        } else {
            Ok(Piece::NeedMore)
        }
    }

    fn data(&mut self, b: Bytes) -> Result<Piece, String> {
        self.total += b.len() as u64;
        if self.total > self.limit {
            return Err(format!("response body over {} bytes", self.limit));
        }
        Ok(Piece::Data(b))
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of `wire` (head and body), fed `step` bytes at a time.
    fn body_of(wire: &[u8], step: usize) -> Result<Vec<u8>, String> {
        let mut buf = BytesMut::new();
        let mut input = wire.chunks(step);
        let (head, len) = loop {
            if let Some(h) = parse_head(&buf)? {
                break h;
            }
            match input.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return Err("no head".into()),
            }
        };
        buf.advance(len);
        let mut d = BodyDecoder::new(head.framing, 1 << 20);
        let mut out = Vec::new();
        loop {
            let eof = input.len() == 0;
            match d.next(&mut buf, eof)? {
                Piece::Data(b) => out.extend_from_slice(&b),
                Piece::Done => return Ok(out),
                Piece::NeedMore => match input.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return Err("stuck".into()),
                },
            }
        }
    }

    #[test]
    fn bodies_however_they_are_split() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n";
        let length = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
        let close = b"HTTP/1.0 200 OK\r\n\r\nhello world";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(body_of(chunked, step).unwrap(), b"hello world", "{step}");
            assert_eq!(body_of(length, step).unwrap(), b"hello world", "{step}");
            assert_eq!(body_of(close, step).unwrap(), b"hello world", "{step}");
        }
        let (h, _) = parse_head(close).unwrap().unwrap();
        assert!(h.close && h.framing == Framing::Close);
        let (h, _) = parse_head(length).unwrap().unwrap();
        assert!(!h.close && h.framing == Framing::Length(11));
    }

    #[test]
    fn refuses_what_it_cannot_trust() {
        let bad: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\ntruncated",
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ];
        for wire in bad {
            assert!(
                body_of(wire, 4).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        // Heads alone (a webhook's answer): complete, partial, garbage, no status, too long.
        let status = |b: &[u8]| parse_head(b).map(|h| h.map(|(h, _)| h.status));
        assert_eq!(status(b"HTTP/1.1 204 No Content\r\n\r\n"), Ok(Some(204)));
        assert_eq!(status(b"HTTP/1.1 403 Forbidden\r\nX: y"), Ok(None));
        assert!(status(b"garbage\r\n\r\n").is_err());
        assert!(status(b"HTTP/1.1 042 No Co 5\r\n\r\n").is_err());
        assert!(status(&vec![b'a'; 20_000]).is_err());
        // Over the body limit.
        let mut buf = BytesMut::from(&b"0123456789"[..]);
        let mut d = BodyDecoder::new(Framing::Length(10), 4);
        assert!(d.next(&mut buf, false).is_err());
        // A head that never ends.
        let long = [b'a'; MAX_HEAD + 1];
        assert!(parse_head(&long).is_err());
    }
}
