//! Arbitrary client bytes into `ServerSession`, read in arbitrary pieces.
//!
//! Input: `[s0, s1]` then the bytes a client sends (handshake included; the seeds hold a real
//! publish recorded from `rml_rtmp`'s client, see `ingest/tests/publish.rs`).
//! - `s0 & 0x0f`: reads are 1..=2^(s0 & 0x0f) bytes long, drawn from a PRNG seeded by s0, s1;
//! - `s0 & 0x10`: reject publish requests instead of accepting them.
//!
//! Invariants: no panic; the same events and the same error whether the input is fed whole or
//! in pieces; never more frames than input bytes; frames are non-empty; DTS never decreases
//! within a track (until the track is reconfigured); tracks use the documented ids and clocks;
//! nothing is fed after an error.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use zerocast_core::{Timescale, Track, TrackId};
use zerocast_ingest::{Output, ServerSession, SessionEvent};

struct Reads {
    state: u32,
    max: usize,
}

impl Reads {
    fn next(&mut self) -> usize {
        // xorshift32
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        1 + self.state as usize % self.max
    }
}

fn run(
    stream: &[u8],
    mut reads: Option<Reads>,
    reject: bool,
) -> (Vec<SessionEvent>, Option<String>) {
    let mut session = ServerSession::new();
    let mut events = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = reads
            .as_mut()
            .map_or(rest.len(), Reads::next)
            .min(rest.len());
        let (part, tail) = rest.split_at(n);
        rest = tail;
        let mut buf = BytesMut::from(part);
        let mut result = session.handle_input(&mut buf);
        assert!(buf.is_empty(), "handle_input consumes all of its input");
        while let Some(output) = session.poll_output() {
            match output {
                Output::Send(bytes) => assert!(!bytes.is_empty()),
                Output::Event(event) => {
                    if let SessionEvent::PublishRequested { request_id, .. } = &event {
                        let decision = if reject {
                            session.reject_publish(*request_id, "rejected by the fuzzer")
                        } else {
                            session.accept_publish(*request_id)
                        };
                        result = result.and(decision);
                    }
                    events.push(event);
                }
            }
        }
        if let Err(e) = result {
            return (events, Some(e.to_string()));
        }
    }
    (events, None)
}

fn check(stream: &[u8], events: &[SessionEvent]) {
    let mut frames = 0usize;
    // (timescale, last dts) per track.
    let mut last: [Option<(Timescale, i64)>; 2] = [None, None];
    let mut scale: [Option<Timescale>; 2] = [None, None];
    for event in events {
        match event {
            SessionEvent::Track(track) => {
                let i = match track {
                    Track::Video { id, timescale, .. } => {
                        assert_eq!((*id, *timescale), (TrackId::VIDEO, Timescale::VIDEO));
                        0
                    }
                    Track::Audio { id, .. } => {
                        assert_eq!(*id, TrackId::AUDIO);
                        1
                    }
                };
                scale[i] = Some(track.timescale());
                last[i] = None;
            }
            SessionEvent::Frame(f) => {
                frames += 1;
                assert!(!f.data.is_empty());
                let i = if f.track == TrackId::VIDEO { 0 } else { 1 };
                assert!(f.track == TrackId::VIDEO || f.track == TrackId::AUDIO);
                let s = scale[i].expect("a frame before its track");
                assert_eq!((f.dts.scale(), f.pts.scale()), (s, s));
                if let Some((_, prev)) = last[i] {
                    assert!(
                        f.dts.ticks() >= prev,
                        "DTS went back: {prev} -> {}",
                        f.dts.ticks()
                    );
                }
                last[i] = Some((s, f.dts.ticks()));
                if i == 1 {
                    assert!(f.keyframe && f.pts == f.dts);
                }
            }
            _ => {}
        }
    }
    assert!(
        frames <= stream.len(),
        "{frames} frames from {} bytes",
        stream.len()
    );
}

fuzz_target!(|data: &[u8]| {
    let [s0, s1, stream @ ..] = data else {
        return;
    };
    let reject = s0 & 0x10 != 0;
    let whole = run(stream, None, reject);
    check(stream, &whole.0);
    let reads = Reads {
        state: (u32::from(*s0) << 8 | u32::from(*s1)) | 0x1_0000,
        max: 1 << (s0 & 0x0f),
    };
    let split = run(stream, Some(reads), reject);
    assert!(whole == split, "events depend on read boundaries");
});
