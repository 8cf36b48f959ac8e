//! Arbitrary FLV audio/video tag bodies into the tag parsers and a `Demuxer`.
//!
//! Input: records of `[flags][timestamp: u32 BE][len: u16 BE][body: len bytes]`; flags bit 0
//! selects video. A short last record takes what is left.
//!
//! Invariants: no panic; every frame's data is a non-empty sub-slice of its tag body (no copy);
//! the stateless parser agrees with the demuxer on frame payloads; DTS never decreases within a
//! track (until the track is reconfigured); unsupported-codec errors are the only non-fatal
//! ones and carry no position.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use zerocast_core::{Timescale, TrackId};
use zerocast_ingest::flv::{self, AudioTag, Demuxed, Demuxer, FlvError, VideoTag};

fn within(inner: &Bytes, outer: &Bytes) -> bool {
    let (i, o) = (inner.as_ptr() as usize, outer.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let mut demuxer = Demuxer::new();
    let mut last: [Option<i64>; 2] = [None, None];
    let mut pos = 0;
    while let Some(&[flags, t0, t1, t2, t3, l0, l1]) = input.get(pos..pos + 7) {
        let video = flags & 1 != 0;
        let timestamp = u32::from_be_bytes([t0, t1, t2, t3]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let start = pos + 7;
        let end = (start + len).min(input.len());
        pos = end;
        let body = input.slice(start..end);

        // The stateless parsers: payloads are slices of the body.
        let parsed_payload = if video {
            match flv::parse_video_tag(&body) {
                Ok(VideoTag::Frame { data, .. }) => Some(data),
                Ok(_) => None,
                Err(e) => {
                    check_error(&e);
                    None
                }
            }
        } else {
            match flv::parse_audio_tag(&body) {
                Ok(AudioTag::Frame(data)) => Some(data),
                Ok(_) => None,
                Err(e) => {
                    check_error(&e);
                    None
                }
            }
        };
        if let Some(p) = &parsed_payload {
            assert!(p.is_empty() || within(p, &body), "payload copied");
        }

        let out = if video {
            demuxer.handle_video(timestamp, &body)
        } else {
            demuxer.handle_audio(timestamp, &body)
        };
        let i = usize::from(!video);
        match out {
            Ok(Some(Demuxed::Track(track))) => {
                let want = if video {
                    TrackId::VIDEO
                } else {
                    TrackId::AUDIO
                };
                assert_eq!(track.id(), want);
                if video {
                    assert_eq!(track.timescale(), Timescale::VIDEO);
                }
                last[i] = None;
            }
            Ok(Some(Demuxed::Frame(f))) => {
                assert!(!f.data.is_empty());
                assert!(
                    within(&f.data, &body),
                    "frame data is not a slice of the tag body"
                );
                assert_eq!(Some(&f.data), parsed_payload.as_ref());
                if let Some(prev) = last[i] {
                    assert!(f.dts.ticks() >= prev);
                }
                last[i] = Some(f.dts.ticks());
            }
            Ok(None) => {}
            Err(e) => check_error(&e),
        }
    }
});

fn check_error(e: &FlvError) {
    let _ = e.to_string();
    if !e.is_fatal() {
        assert!(matches!(e, FlvError::Unsupported { .. }));
    }
}
