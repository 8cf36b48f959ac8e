//! Packager benches: fMP4 (CMAF chunk) writing, part and segment cutting, playlist rendering
//! (full and delta), LL-HLS query parsing.

use std::hint::black_box;
use std::path::Path;
use std::sync::OnceLock;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zerocast_core::{Frame, Track};
use zerocast_microbench::{captures, cmaf_chunks, demux, live_playlist};
use zerocast_packager::fmp4::{self, TrackRun};
use zerocast_packager::{Packager, PackagerConfig, Query, Skip};

/// A capture's name, tracks and frames.
type Demuxed = (&'static str, Vec<Track>, Vec<Frame>);

fn inputs() -> &'static [Demuxed] {
    static INPUTS: OnceLock<Vec<Demuxed>> = OnceLock::new();
    INPUTS.get_or_init(|| {
        captures(Path::new(env!("CARGO_TARGET_TMPDIR")))
            .expect("the captures can be read")
            .iter()
            .map(|c| {
                let (tracks, frames) = demux(&c.tags);
                (c.name, tracks, frames)
            })
            .collect()
    })
}

fn fmp4_chunks(c: &mut Criterion) {
    let mut g = c.benchmark_group("fmp4_chunk_write");
    for (name, _, frames) in inputs() {
        // Per CMAF chunk (one video frame and its audio): headers are written, the samples'
        // payloads are only reference-counted.
        let chunks = cmaf_chunks(frames);
        g.throughput(Throughput::Elements(chunks.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &chunks, |b, chunks| {
            b.iter(|| {
                let mut header_bytes = 0;
                for (seq, ch) in (1..).zip(chunks) {
                    let runs = [
                        TrackRun {
                            track_id: 1,
                            base_decode_time: ch.video_base,
                            samples: &ch.video,
                        },
                        TrackRun {
                            track_id: 2,
                            base_decode_time: ch.audio_base,
                            samples: &ch.audio,
                        },
                    ];
                    header_bytes += black_box(fmp4::fragment(seq, &runs)).header.len();
                }
                header_bytes
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("fmp4_init_segment");
    for (name, tracks, _) in inputs() {
        g.bench_with_input(BenchmarkId::from_parameter(name), tracks, |b, tracks| {
            b.iter(|| fmp4::init_segment(black_box(tracks)))
        });
    }
    g.finish();
}

fn cutting(c: &mut Criterion) {
    let mut g = c.benchmark_group("packager_parts_segments");
    for (name, tracks, frames) in inputs() {
        // Per frame in (audio and video): each video frame gives one CMAF chunk.
        g.throughput(Throughput::Elements(frames.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(name),
            &(tracks, frames),
            |b, (tracks, frames)| {
                b.iter(|| {
                    let mut p = Packager::new(PackagerConfig::default());
                    let mut events = 0;
                    for t in tracks.iter() {
                        p.handle_track(t.clone());
                    }
                    for f in frames.iter() {
                        let now = 1_767_225_600_000 + f.dts.as_millis();
                        p.handle_frame(f.clone(), now);
                        while let Some(e) = p.poll_event() {
                            black_box(e);
                            events += 1;
                        }
                    }
                    p.handle_end();
                    while p.poll_event().is_some() {}
                    events
                })
            },
        );
    }
    g.finish();
}

fn playlist(c: &mut Criterion) {
    // 2 s segments of ten 200 ms parts: 20 complete segments in the window, 4 with parts.
    let p = live_playlist(30, 10, 0.2);
    assert_eq!(p.segments().filter(|s| s.complete).count(), 20);
    let mut g = c.benchmark_group("playlist_render");
    for (name, skip) in [("full", Skip::No), ("delta", Skip::Yes)] {
        let mut out = String::with_capacity(16 * 1024);
        p.render(&mut out, skip).expect("render");
        g.throughput(Throughput::Bytes(out.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                p.render(&mut out, black_box(skip)).expect("render");
                out.len()
            })
        });
    }
    g.finish();
}

fn query(c: &mut Criterion) {
    let mut g = c.benchmark_group("llhls_query_parse");
    g.throughput(Throughput::Elements(1));
    for (name, q) in [
        ("empty", ""),
        ("msn_part", "_HLS_msn=1234&_HLS_part=3"),
        ("msn_part_skip", "_HLS_msn=1234&_HLS_part=3&_HLS_skip=YES"),
        (
            "with_token",
            "token=eyJzdHJlYW0iOiJkZW1vIiwiZXhwIjoxNzY3MjI1NjAwfQ.c2lnbmF0dXJl&_HLS_msn=1234&_HLS_part=3",
        ),
    ] {
        Query::parse(q).expect("a valid query");
        g.bench_with_input(name, q, |b, q| b.iter(|| Query::parse(black_box(q))));
    }
    g.finish();
}

criterion_group!(benches, fmp4_chunks, cutting, playlist, query);
criterion_main!(benches);
