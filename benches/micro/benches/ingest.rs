//! Ingest benches: RTMP chunk decoding, FLV / Enhanced RTMP tags to frames, and a whole
//! publish through the server session (handshake, chunks, AMF commands, tags, frames).

use std::hint::black_box;
use std::path::Path;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zerocast_ingest::chunk::{ChunkDecoder, Decoded};
use zerocast_ingest::flv::Demuxer;
use zerocast_microbench::{captures, record_publish, replay_publish, rtmp_chunks, Capture, AUDIO};

/// What the edge reads from an RTMP socket at a time.
const READ: usize = 64 * 1024;

fn inputs() -> &'static [Capture] {
    static CAPTURES: OnceLock<Vec<Capture>> = OnceLock::new();
    CAPTURES.get_or_init(|| {
        captures(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("the captures can be read")
    })
}

/// Decodes a chunk stream read `READ` bytes at a time, keeping every message (the server
/// keeps media for the playlist window, so read buffers are not reused); returns the count.
/// Messages split across chunks are copied once (reassembly), as in the server.
fn decode_all(wire: &[u8]) -> usize {
    let mut d = ChunkDecoder::new(0);
    let mut buf = BytesMut::with_capacity(READ);
    let mut kept: Vec<Bytes> = Vec::with_capacity(wire.len() / 512);
    for read in wire.chunks(READ) {
        buf.reserve(READ);
        buf.extend_from_slice(read);
        loop {
            match d.decode(&mut buf).expect("a valid chunk stream") {
                Decoded::Message(m) => {
                    if m.type_id == 1 {
                        let size = m.payload.get(..4).expect("Set Chunk Size carries 4 bytes");
                        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]);
                        d.set_chunk_size(size).expect("a valid chunk size");
                    }
                    kept.push(m.payload);
                }
                Decoded::Chunk => {}
                Decoded::NeedMore(_) => break,
            }
        }
    }
    black_box(&kept);
    kept.len()
}

fn chunk_decoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtmp_chunk_decode");
    for cap in inputs() {
        for chunk_size in [128, 4096] {
            let wire = rtmp_chunks(&cap.tags, chunk_size);
            assert_eq!(decode_all(&wire), cap.tags.len() + 1);
            g.throughput(Throughput::Bytes(wire.len() as u64));
            g.bench_with_input(
                BenchmarkId::new(cap.name, format!("chunk{chunk_size}")),
                &wire,
                |b, wire| b.iter(|| decode_all(wire)),
            );
        }
    }
    g.finish();
}

fn flv_demux(c: &mut Criterion) {
    let mut g = c.benchmark_group("flv_tags_to_frames");
    for cap in inputs() {
        // Per tag: frames are slices of the tag bodies, no media byte is read or copied.
        g.throughput(Throughput::Elements(cap.tags.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(cap.name), cap, |b, cap| {
            b.iter(|| {
                let mut d = Demuxer::new();
                let mut out = 0;
                for t in &cap.tags {
                    let r = if t.kind == AUDIO {
                        d.handle_audio(t.timestamp, &t.body)
                    } else {
                        d.handle_video(t.timestamp, &t.body)
                    };
                    out += usize::from(black_box(r.expect("a valid tag")).is_some());
                }
                out
            })
        });
    }
    g.finish();
}

fn session(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtmp_publish_session");
    for cap in inputs() {
        let wire = record_publish(&cap.tags);
        let frames = replay_publish(&wire, READ);
        assert!(frames > 0 && frames <= cap.tags.len(), "{frames} frames");
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(cap.name), &wire, |b, wire| {
            b.iter(|| replay_publish(wire, READ))
        });
    }
    g.finish();
}

criterion_group!(benches, chunk_decoding, flv_demux, session);
criterion_main!(benches);
