//! HTTP/1.1 responses from an origin, as an edge's follower reads them, into the edge's
//! response parser (`edge/src/relay/wire.rs`, compiled in here: it needs only httparse and
//! bytes).
//!
//! Input: `[step]` then the response bytes; the response is fed `step % 64 + 1` bytes at a time
//! and also all at once.
//!
//! Invariants: no panic; a body is never longer than the decoder's limit; every piece is a
//! slice of what was fed (no copy); when both ways of feeding decode a body, the bodies are the
//! same (the result does not depend on how the socket split the response).

#![no_main]

use bytes::{Buf, BytesMut};
use libfuzzer_sys::fuzz_target;

#[path = "../../edge/src/relay/wire.rs"]
#[allow(dead_code, unreachable_pub)]
mod wire;

const LIMIT: u64 = 1 << 16;

/// The body of `input` fed `step` bytes at a time, or why it was refused.
fn decode(input: &[u8], step: usize) -> Result<Vec<u8>, String> {
    let mut buf = BytesMut::new();
    let mut pieces = input.chunks(step);
    let (head, len) = loop {
        if let Some(h) = wire::parse_head(&buf)? {
            break h;
        }
        match pieces.next() {
            Some(p) => buf.extend_from_slice(p),
            None => return Err("no head".into()),
        }
    };
    assert!(len <= buf.len());
    buf.advance(len);
    let mut d = wire::BodyDecoder::new(head.framing, LIMIT);
    let mut body = Vec::new();
    loop {
        let eof = pieces.len() == 0;
        match d.next(&mut buf, eof)? {
            wire::Piece::Data(b) => {
                assert!(!b.is_empty());
                body.extend_from_slice(&b);
                assert!(body.len() as u64 <= LIMIT);
            }
            wire::Piece::Done => return Ok(body),
            wire::Piece::NeedMore => match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return Err("needs more after the end".into()),
            },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let split = decode(input, usize::from(step % 64) + 1);
    let whole = decode(input, input.len().max(1));
    if let (Ok(a), Ok(b)) = (&split, &whole) {
        assert_eq!(a, b, "the body depends on how the response was split");
    }
});
