//! fMP4 from an origin, as an edge's follower reads it: init segments into tracks, and a part's
//! bytes through the fragment splitter into frames (`zerocast_packager::demux`).
//!
//! Input: `[init length: u16 BE][init][step][part bytes]`. When the init does not parse, a
//! known one (H.264 + AAC, as the packager writes it) reads the part.
//!
//! Invariants: no panic; every frame's payload is a slice of its fragment (no copy); the
//! fragments, and so the frames, do not depend on how the part was split into pieces.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use zerocast_core::codec::aac::AacConfig;
use zerocast_core::{AudioCodec, Timescale, Track, TrackId};
use zerocast_packager::demux::{self, FragmentSplitter, Init};
use zerocast_packager::fmp4;

fn known_init() -> Init {
    let aac = AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).expect("a valid ASC");
    let track = Track::Audio {
        id: TrackId::AUDIO,
        timescale: Timescale::new(48_000).expect("non-zero"),
        codec: AudioCodec::Aac(aac),
    };
    demux::read_init(&fmp4::init_segment(&[track])).expect("the packager's own init")
}

/// Fragments and their frames' (track, dts, pts, keyframe, len), feeding `step` bytes at a time.
fn read(init: &Init, part: &[u8], step: usize) -> Vec<Vec<(u32, i64, i64, bool, usize)>> {
    let mut sp = FragmentSplitter::new();
    let mut out = Vec::new();
    for piece in part.chunks(step) {
        sp.push(piece);
        loop {
            match sp.next_fragment() {
                Ok(Some(frag)) => {
                    let Ok(frames) = demux::read_fragment(init, &frag) else {
                        out.push(Vec::new());
                        continue;
                    };
                    let range = frag.as_ptr() as usize..frag.as_ptr() as usize + frag.len();
                    let mut v = Vec::new();
                    for f in frames {
                        let at = f.data.as_ptr() as usize;
                        assert!(
                            f.data.is_empty()
                                || (range.contains(&at) && at + f.data.len() <= range.end)
                        );
                        v.push((
                            f.track.0,
                            f.dts.ticks(),
                            f.pts.ticks(),
                            f.keyframe,
                            f.data.len(),
                        ));
                    }
                    out.push(v);
                }
                Ok(None) => break,
                Err(_) => return out,
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let n = usize::from(u16::from_be_bytes([data[0], data[1]])).min(data.len() - 2);
    let init = Bytes::copy_from_slice(&data[2..2 + n]);
    let rest = &data[2 + n..];
    let init = demux::read_init(&init).unwrap_or_else(|_| known_init());
    let Some((&step, part)) = rest.split_first() else {
        return;
    };
    let split = read(&init, part, usize::from(step % 64) + 1);
    let whole = read(&init, part, part.len().max(1));
    assert_eq!(
        split, whole,
        "the fragments depend on how the part was split"
    );
});
