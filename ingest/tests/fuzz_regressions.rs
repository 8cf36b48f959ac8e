//! Inputs the fuzz targets crashed on, replayed as tests.
//!
//! `fuzz/regressions/flv_tag/*` crashed inside `zerocast-core`'s SPS parsers (integer overflow
//! on peer-controlled Exp-Golomb values: `codec/avc.rs` scaling lists and cropping,
//! `codec/hevc.rs` conformance window), now checked arithmetic. Every new crash adds a file.

use std::path::Path;

use bytes::Bytes;
use zerocast_ingest::flv::Demuxer;

/// Same record format as `fuzz/fuzz_targets/flv_tag.rs`.
fn replay_flv(data: &[u8]) {
    let input = Bytes::copy_from_slice(data);
    let mut demuxer = Demuxer::new();
    let mut pos = 0;
    while let Some(&[flags, t0, t1, t2, t3, l0, l1]) = input.get(pos..pos + 7) {
        let timestamp = u32::from_be_bytes([t0, t1, t2, t3]);
        let start = pos + 7;
        let end = (start + usize::from(u16::from_be_bytes([l0, l1]))).min(input.len());
        pos = end;
        let body = input.slice(start..end);
        let _ = if flags & 1 != 0 {
            demuxer.handle_video(timestamp, &body)
        } else {
            demuxer.handle_audio(timestamp, &body)
        };
    }
}

#[test]
fn flv_tag_regressions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/flv_tag");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        eprintln!("{}", path.display());
        replay_flv(&std::fs::read(&path).unwrap());
    }
}
