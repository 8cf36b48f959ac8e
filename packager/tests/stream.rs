//! The packager driven with virtual time: exact assertions on chunks, parts, segments and the
//! rendered playlists (golden files under `tests/golden/`; regenerate with `ZEROCAST_BLESS=1`
//! and review the diff).

use bytes::Bytes;
use zerocast_core::codec::{aac::AacConfig, avc::AvcConfig};
use zerocast_core::{AudioCodec, Frame, Timescale, Timestamp, Track, TrackId, VideoCodec};
use zerocast_packager::{check, Event, Packager, PackagerConfig, Skip};

/// avcC of a 1280x720 libx264 stream.
const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xb4, 0x02, 0x80,
    0x2d, 0xd8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x47, 0x8c, 0x19, 0x50,
    0x01, 0x00, 0x04, 0x68, 0xef, 0x0f, 0xcb, 0xfd, 0xf8, 0xf8, 0x00,
];
const T0: i64 = 1_700_000_000_000;

fn tracks() -> (Track, Track) {
    let v = Track::Video {
        id: TrackId::VIDEO,
        timescale: Timescale::VIDEO,
        codec: VideoCodec::Avc(AvcConfig::parse(Bytes::from_static(AVCC)).unwrap()),
    };
    let a = Track::Audio {
        id: TrackId::AUDIO,
        timescale: Timescale::new(48_000).unwrap(),
        codec: AudioCodec::Aac(AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap()),
    };
    (v, a)
}

#[derive(Default, Debug)]
struct Seen {
    inits: u32,
    /// Init segment versions, in order.
    init_versions: Vec<u32>,
    parts_started: u64,
    parts_done: u64,
    segments: Vec<(u64, u64, u64)>,
    samples: usize,
    playlists: Vec<String>,
}

fn drain(p: &mut Packager, seen: &mut Seen) {
    while let Some(ev) = p.poll_event() {
        match ev {
            Event::Init { version, .. } => {
                seen.inits += 1;
                seen.init_versions.push(version);
            }
            Event::PartStarted { .. } => seen.parts_started += 1,
            Event::Chunk { fragment, .. } => seen.samples += fragment.payloads.len(),
            Event::PartDone { .. } => {
                seen.parts_done += 1;
                let mut s = String::new();
                p.playlist().render(&mut s, Skip::No).unwrap();
                seen.playlists.push(s);
            }
            Event::SegmentDone {
                msn,
                first_part,
                last_part,
            } => seen.segments.push((msn, first_part, last_part)),
            _ => {}
        }
    }
}

/// Feeds `secs` seconds of 30 fps video (keyframe every `gop` frames) and 48 kHz AAC, starting
/// at media time `start_ms`, in arrival order. Returns frames fed.
fn feed(p: &mut Packager, seen: &mut Seen, start_ms: i64, secs: i64, gop: i64) -> usize {
    feed_tracks(p, seen, tracks(), start_ms, secs, gop)
}

/// [`feed`] with the given (video, audio) tracks.
fn feed_tracks(
    p: &mut Packager,
    seen: &mut Seen,
    (v, a): (Track, Track),
    start_ms: i64,
    secs: i64,
    gop: i64,
) -> usize {
    p.handle_track(v);
    p.handle_track(a);
    drain(p, seen);
    let mut fed = 0;
    let frames = secs * 30;
    let mut audio_n = 0i64;
    for n in 0..frames {
        let ms = start_ms + n * 1000 / 30;
        // Audio frames whose time has come (1024 samples at 48 kHz = 21.333 ms).
        while audio_n * 1024 * 1000 / 48_000 <= n * 1000 / 30 {
            let ams = start_ms + audio_n * 1024 * 1000 / 48_000;
            let ts = Timestamp::from_millis(ams).rescale(Timescale::new(48_000).unwrap());
            p.handle_frame(
                Frame {
                    track: TrackId::AUDIO,
                    dts: ts,
                    pts: ts,
                    keyframe: true,
                    data: Bytes::from_static(&[0x21; 10]),
                },
                T0 + ams,
            );
            fed += 1;
            audio_n += 1;
            drain(p, seen);
        }
        let dts = Timestamp::new((start_ms * 90) + n * 3000, Timescale::VIDEO);
        let pts = Timestamp::new(dts.ticks() + 6000, Timescale::VIDEO);
        p.handle_frame(
            Frame {
                track: TrackId::VIDEO,
                dts,
                pts,
                keyframe: n % gop == 0,
                data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
            },
            T0 + ms,
        );
        fed += 1;
        drain(p, seen);
    }
    fed
}

fn golden(name: &str, text: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("ZEROCAST_BLESS").is_some() {
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{path} missing: run with ZEROCAST_BLESS=1 and review it"));
    assert_eq!(
        text, want,
        "golden file {name} differs (ZEROCAST_BLESS=1 regenerates it)"
    );
}

#[test]
fn parts_and_segments_keep_their_invariants() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut seen = Seen::default();
    let fed = feed(&mut p, &mut seen, 0, 10, 60);
    assert_eq!(seen.inits, 1);
    // 10 s at 2 s GOPs: segments 0..=3 closed by the keyframes at 2, 4, 6, 8 s.
    assert_eq!(seen.segments.len(), 4, "{:?}", seen.segments);
    for (i, pl) in seen.playlists.iter().enumerate() {
        let parsed = check::parse(pl).unwrap();
        assert_eq!(
            check::violations(&parsed),
            Vec::<String>::new(),
            "version {i}:\n{pl}"
        );
        if i > 0 {
            let prev = check::parse(&seen.playlists[i - 1]).unwrap();
            assert!(check::transition_violations(&prev, &parsed).is_empty());
        }
    }
    // Segment boundaries are contiguous part ranges of 10 parts (2 s / 0.2 s).
    for w in seen.segments.windows(2) {
        assert_eq!(w[1].1, w[0].2 + 1);
    }
    assert!(
        seen.segments.iter().all(|s| s.2 - s.1 + 1 == 10),
        "{:?}",
        seen.segments
    );
    // After the end, every frame fed is in exactly one chunk, except the audio frame that came
    // before the first keyframe.
    p.handle_end();
    drain(&mut p, &mut seen);
    assert_eq!(p.dropped_frames(), 1);
    assert_eq!(
        seen.samples + 1,
        fed,
        "every frame fed comes out exactly once"
    );
    assert_eq!(seen.parts_started, seen.parts_done);
    let mut text = String::new();
    p.playlist().render(&mut text, Skip::No).unwrap();
    assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    golden("ended.m3u8", &text);
}

#[test]
fn live_playlist_golden_and_delta() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut seen = Seen::default();
    feed(&mut p, &mut seen, 0, 31, 60);
    let mut full = String::new();
    p.playlist().render(&mut full, Skip::No).unwrap();
    golden("live.m3u8", &full);
    let mut delta = String::new();
    p.playlist().render(&mut delta, Skip::Yes).unwrap();
    golden("live_delta.m3u8", &delta);
    let d = check::parse(&delta).unwrap();
    assert!(d.skipped > 0);
    assert_eq!(check::violations(&d), Vec::<String>::new());
}

#[test]
fn publisher_reconnect_continues_after_discontinuity() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut seen = Seen::default();
    feed(&mut p, &mut seen, 0, 4, 60);
    p.handle_discontinuity();
    drain(&mut p, &mut seen);
    // The new publisher starts its clock at 0 again.
    feed(&mut p, &mut seen, 0, 4, 60);
    assert_eq!(
        seen.inits, 1,
        "same configuration: the init segment is reused"
    );
    let mut text = String::new();
    p.playlist().render(&mut text, Skip::No).unwrap();
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    let parsed = check::parse(&text).unwrap();
    assert_eq!(check::violations(&parsed), Vec::<String>::new(), "{text}");
    golden("reconnect.m3u8", &text);
}

#[test]
fn waits_for_a_keyframe_and_drops_what_came_before() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut seen = Seen::default();
    let (v, a) = tracks();
    p.handle_track(v);
    p.handle_track(a);
    for n in 0..5 {
        let dts = Timestamp::new(n * 3000, Timescale::VIDEO);
        p.handle_frame(
            Frame {
                track: TrackId::VIDEO,
                dts,
                pts: dts,
                keyframe: false,
                data: Bytes::from_static(&[1]),
            },
            T0,
        );
    }
    drain(&mut p, &mut seen);
    assert_eq!(seen.inits, 0);
    assert_eq!(p.dropped_frames(), 5);
}

/// avcC of a 1920x1080 libx264 stream (`ffmpeg -f lavfi -i testsrc2=size=1920x1080 -c:v libx264
/// -frames:v 1 out.mp4`).
const AVCC_1080P: &[u8] = &[
    0x01, 0x64, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x1b, 0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78,
    0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c,
    0x60, 0xc6, 0x58, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];

fn render(p: &Packager) -> String {
    let mut text = String::new();
    p.playlist().render(&mut text, Skip::No).unwrap();
    text
}

#[test]
fn video_configuration_change_starts_a_new_init_at_the_next_keyframe() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut seen = Seen::default();
    // 3 s of 720p with a keyframe every second, then the publisher switches to 1080p: its
    // first frame after the new sequence header is a keyframe, at 3 s.
    let mut fed = feed(&mut p, &mut seen, 0, 3, 30);
    assert_eq!(seen.init_versions, [1]);
    let (_, a) = tracks();
    let v1080 = Track::Video {
        id: TrackId::VIDEO,
        timescale: Timescale::VIDEO,
        codec: VideoCodec::Avc(AvcConfig::parse(Bytes::from_static(AVCC_1080P)).unwrap()),
    };
    fed += feed_tracks(&mut p, &mut seen, (v1080.clone(), a), 3000, 3, 30);
    assert_eq!(seen.init_versions, [1, 2]);
    assert_eq!(
        p.tracks()[0],
        v1080,
        "the new init segment carries the new configuration"
    );

    let text = render(&p);
    let parsed = check::parse(&text).unwrap();
    assert_eq!(check::violations(&parsed), Vec::<String>::new(), "{text}");
    // The segment open at the switch closes there, even though it is short of the target.
    let maps: Vec<_> = parsed
        .segments
        .iter()
        .map(|s| s.map.as_deref().unwrap())
        .collect();
    let switch = maps.iter().position(|m| *m == "init2.mp4").unwrap();
    assert!(maps[..switch].iter().all(|m| *m == "init1.mp4"), "{text}");
    assert!(maps[switch..].iter().all(|m| *m == "init2.mp4"), "{text}");
    let first_new = &parsed.segments[switch];
    assert!(first_new.parts.first().unwrap().independent);
    // Same publisher, same timeline: a new map, not a discontinuity.
    assert!(!text.contains("#EXT-X-DISCONTINUITY"), "{text}");
    let before: f64 = parsed.segments[..switch]
        .iter()
        .filter_map(|s| s.duration)
        .sum();
    assert!(
        (before - 3.0).abs() < 1e-3,
        "media before the switch lasts 3 s: {before}"
    );

    // The same configuration again changes nothing; 720p again is init 3, at the keyframe at 6 s.
    p.handle_track(v1080);
    drain(&mut p, &mut seen);
    assert_eq!(seen.init_versions, [1, 2]);
    fed += feed(&mut p, &mut seen, 6000, 1, 30);
    assert_eq!(seen.init_versions, [1, 2, 3]);
    p.handle_end();
    drain(&mut p, &mut seen);
    // Every frame comes out once but the audio frame before the very first keyframe: each new
    // configuration opened with a keyframe, so nothing was dropped at the switches.
    assert_eq!(p.dropped_frames(), 1);
    assert_eq!(seen.samples + 1, fed);
}

#[test]
fn audio_only_stream() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut seen = Seen::default();
    let (_, a) = tracks();
    p.handle_track(a.clone());
    drain(&mut p, &mut seen);
    // 6 s of 48 kHz AAC (1024 samples = 21.333 ms a frame).
    let frames = 6 * 48_000 / 1024;
    for n in 0..frames {
        let ts = Timestamp::new(n * 1024, Timescale::new(48_000).unwrap());
        p.handle_frame(
            Frame {
                track: TrackId::AUDIO,
                dts: ts,
                pts: ts,
                keyframe: true,
                data: Bytes::from_static(&[0x21; 10]),
            },
            T0 + ts.as_millis(),
        );
        drain(&mut p, &mut seen);
    }
    // The packager waits one second for a video track before starting without one.
    let waited = p.dropped_frames();
    assert_eq!(
        waited, 47,
        "frames in the first 1000 ms: 0, 21.3, ..., 981.3 ms"
    );
    assert_eq!(seen.init_versions, [1]);
    assert_eq!(p.tracks(), &[a]);

    p.handle_end();
    drain(&mut p, &mut seen);
    assert_eq!(
        seen.samples as i64 + waited as i64,
        frames,
        "every frame once"
    );
    let text = render(&p);
    let parsed = check::parse(&text).unwrap();
    assert_eq!(check::violations(&parsed), Vec::<String>::new(), "{text}");
    // Every audio frame is a sync sample: every part is independent; chunks of 4 frames.
    let parts: Vec<_> = parsed.segments.iter().flat_map(|s| &s.parts).collect();
    assert!(!parts.is_empty());
    assert!(parts.iter().all(|p| p.independent), "{text}");
    // Segments close once they reach 90% of the 2 s target, on a chunk boundary.
    for seg in &parsed.segments[..parsed.segments.len() - 1] {
        let d = seg.duration.unwrap();
        assert!(
            (1.8..1.8 + 4.0 * 1024.0 / 48_000.0).contains(&d),
            "{d}\n{text}"
        );
    }
    let total: f64 = parsed.segments.iter().filter_map(|s| s.duration).sum();
    let want = (frames - waited as i64) as f64 * 1024.0 / 48_000.0;
    assert!(
        (total - want).abs() < 1e-3,
        "{total} s listed, {want} s fed"
    );
}

#[test]
fn audio_only_configuration_change_starts_a_new_init_at_once() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut seen = Seen::default();
    let scale = Timescale::new(48_000).unwrap();
    let (_, a) = tracks();
    p.handle_track(a);
    let frame = |n: i64| Frame {
        track: TrackId::AUDIO,
        dts: Timestamp::new(n * 1024, scale),
        pts: Timestamp::new(n * 1024, scale),
        keyframe: true,
        data: Bytes::from_static(&[0x21; 10]),
    };
    for n in 0..100 {
        p.handle_frame(frame(n), T0);
    }
    drain(&mut p, &mut seen);
    assert_eq!(seen.init_versions, [1]);
    // Mono now (AudioSpecificConfig 0x11 0x88: AAC-LC, 48 kHz, one channel).
    let mono = Track::Audio {
        id: TrackId::AUDIO,
        timescale: scale,
        codec: AudioCodec::Aac(AacConfig::parse(Bytes::from_static(&[0x11, 0x88])).unwrap()),
    };
    p.handle_track(mono.clone());
    p.handle_frame(frame(100), T0);
    drain(&mut p, &mut seen);
    // No keyframe to wait for: the very next frame starts init 2.
    assert_eq!(seen.init_versions, [1, 2]);
    assert_eq!(p.tracks(), &[mono]);
}

#[test]
fn frames_after_the_end_are_ignored() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut seen = Seen::default();
    feed(&mut p, &mut seen, 0, 1, 30);
    p.handle_end();
    drain(&mut p, &mut seen);
    let ended = render(&p);
    let version = p.playlist().version();
    feed(&mut p, &mut seen, 1000, 1, 30);
    p.handle_discontinuity();
    p.handle_end();
    assert!(p.poll_event().is_none());
    assert_eq!(render(&p), ended);
    assert_eq!(p.playlist().version(), version);
}

#[test]
fn audio_configuration_change_waits_for_the_next_video_keyframe() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut seen = Seen::default();
    let mut fed = feed(&mut p, &mut seen, 0, 2, 30);
    let (v, _) = tracks();
    let mono = Track::Audio {
        id: TrackId::AUDIO,
        timescale: Timescale::new(48_000).unwrap(),
        codec: AudioCodec::Aac(AacConfig::parse(Bytes::from_static(&[0x11, 0x88])).unwrap()),
    };
    // From 2 s on the audio is mono. The audio frame at 2000 ms arrives before the video
    // keyframe at 2000 ms: it has no init segment to go in and is dropped.
    fed += feed_tracks(&mut p, &mut seen, (v.clone(), mono.clone()), 2000, 2, 30);
    assert_eq!(seen.init_versions, [1, 2]);
    assert_eq!(p.tracks(), &[v, mono]);
    p.handle_end();
    drain(&mut p, &mut seen);
    assert_eq!(p.dropped_frames(), 2);
    assert_eq!(seen.samples + 2, fed);
}

/// `tfdt` of the first `traf` of `track` in a `moof` header (a test-only scan: box types are
/// looked up by name, which the fixed-size synthetic payloads cannot contain).
fn tfdt(header: &[u8], track: u32) -> Option<u64> {
    let find = |from: usize, kind: &[u8; 4]| {
        header[from..]
            .windows(4)
            .position(|w| w == kind)
            .map(|p| p + from)
    };
    let mut at = 0;
    while let Some(tfhd) = find(at, b"tfhd") {
        let id = u32::from_be_bytes(header[tfhd + 8..tfhd + 12].try_into().unwrap());
        let dt = find(tfhd, b"tfdt")?;
        if id == track {
            return Some(u64::from_be_bytes(
                header[dt + 8..dt + 16].try_into().unwrap(),
            ));
        }
        at = dt;
    }
    None
}

#[test]
fn mpd_timeline_matches_the_segments_tfdt() {
    use std::collections::HashMap;
    use zerocast_packager::dash::{self, Manifest, MpdConfig};

    let mut p = Packager::new(PackagerConfig::default());
    let mut first_chunk: HashMap<u64, Bytes> = HashMap::new();
    let mut segments: Vec<(u64, u64)> = Vec::new();
    let mut collect = |p: &mut Packager| {
        while let Some(ev) = p.poll_event() {
            match ev {
                Event::Chunk { part, fragment, .. } => {
                    first_chunk.entry(part).or_insert(fragment.header);
                }
                Event::SegmentDone {
                    msn, first_part, ..
                } => segments.push((msn, first_part)),
                _ => {}
            }
        }
    };
    // Keyframes every 50 frames (1.67 s), then, after a publisher away for 3 s whose clock
    // starts at 0 again, every 70 (2.33 s): segments of different lengths, two Periods.
    let (v, a) = tracks();
    p.handle_track(v);
    p.handle_track(a);
    feed_collect(&mut p, &mut collect, T0, 8, 50);
    p.handle_discontinuity();
    collect(&mut p);
    feed_collect(&mut p, &mut collect, T0 + 11_000, 8, 70);
    let (v, a) = tracks();
    let tracks = [v, a];
    let mut text = String::new();
    dash::render(
        &mut text,
        &Manifest {
            playlist: p.playlist(),
            tracks: &tracks,
            bandwidth: 3_000_000,
            frame_rate: Some(30.0),
            base: "",
            query: "",
            next_started: true,
            utc_timing: "/time",
            now_unix_ms: T0 + 20_000,
            config: MpdConfig::default(),
        },
    )
    .unwrap();
    golden("reconnect.mpd", &text);
    let mut hls = String::new();
    p.playlist().render(&mut hls, Skip::No).unwrap();

    let doc = roxmltree::Document::parse(&text).unwrap();
    let periods: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("Period"))
        .collect();
    assert_eq!(periods.len(), 2, "{text}");
    let mut checked = 0;
    for period in periods {
        let tpl = period
            .descendants()
            .find(|n| n.has_tag_name("SegmentTemplate"))
            .unwrap();
        let mut number: u64 = tpl.attribute("startNumber").unwrap().parse().unwrap();
        let mut t: i64 = -1;
        for s in tpl.descendants().filter(|n| n.has_tag_name("S")) {
            if let Some(st) = s.attribute("t") {
                t = st.parse().unwrap();
            }
            let d: i64 = s.attribute("d").unwrap().parse().unwrap();
            let r: i64 = s.attribute("r").map_or(0, |r| r.parse().unwrap());
            for _ in 0..=r {
                if let Some(&(_, first_part)) = segments.iter().find(|s| s.0 == number) {
                    let header = &first_chunk[&first_part];
                    assert_eq!(tfdt(header, 1), Some(t as u64), "segment {number}");
                    checked += 1;
                }
                number += 1;
                t += d;
            }
        }
    }
    assert_eq!(
        checked,
        segments.len(),
        "every segment is in the MPD\n{text}"
    );
    // ... and they are the segments the media playlist lists.
    let listed: Vec<u64> = hls
        .lines()
        .filter_map(|l| l.strip_prefix("seg")?.strip_suffix(".m4s")?.parse().ok())
        .collect();
    assert_eq!(listed, segments.iter().map(|s| s.0).collect::<Vec<_>>());
}

/// [`feed_tracks`]'s frames from media time 0, arriving from wall-clock `wall_ms` on, handing
/// events to `collect` instead of a [`Seen`].
fn feed_collect(
    p: &mut Packager,
    collect: &mut impl FnMut(&mut Packager),
    wall_ms: i64,
    secs: i64,
    gop: i64,
) {
    let start_ms = 0;
    let mut audio_n = 0i64;
    for n in 0..secs * 30 {
        let ms = start_ms + n * 1000 / 30;
        while audio_n * 1024 * 1000 / 48_000 <= n * 1000 / 30 {
            let ams = start_ms + audio_n * 1024 * 1000 / 48_000;
            let ts = Timestamp::from_millis(ams).rescale(Timescale::new(48_000).unwrap());
            let frame = Frame {
                track: TrackId::AUDIO,
                dts: ts,
                pts: ts,
                keyframe: true,
                data: Bytes::from_static(&[0x21; 10]),
            };
            p.handle_frame(frame, wall_ms + ams);
            audio_n += 1;
            collect(p);
        }
        let dts = Timestamp::new((start_ms * 90) + n * 3000, Timescale::VIDEO);
        let frame = Frame {
            track: TrackId::VIDEO,
            dts,
            pts: Timestamp::new(dts.ticks() + 6000, Timescale::VIDEO),
            keyframe: n % gop == 0,
            data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
        };
        p.handle_frame(frame, wall_ms + ms);
        collect(p);
    }
}

/// Every chunk also comes split by track (DASH's one component per Representation): one
/// `traf` per track fragment, the same sample `Bytes` (no copy), and per-track init segments
/// with one `trak` each.
#[test]
fn chunks_split_by_track_share_the_muxed_payloads() {
    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }
    let mut p = Packager::new(PackagerConfig::default());
    let (mut chunks, mut audio_chunks, mut inits) = (0, 0, 0);
    let mut check_events = |p: &mut Packager| {
        while let Some(ev) = p.poll_event() {
            match ev {
                Event::Init { data, tracks, .. } => {
                    inits += 1;
                    assert_eq!(count(&data, b"trak"), 2);
                    let ids: Vec<u32> = tracks.iter().map(|(id, _)| *id).collect();
                    assert_eq!(ids, [TrackId::VIDEO.0, TrackId::AUDIO.0]);
                    for (_, init) in &tracks {
                        assert_eq!(count(init, b"trak"), 1);
                        assert_eq!(count(init, b"trex"), 1);
                    }
                }
                Event::Chunk {
                    fragment, tracks, ..
                } => {
                    chunks += 1;
                    assert_eq!(tracks[0].0, TrackId::VIDEO.0, "video first");
                    let split: Vec<*const u8> = tracks
                        .iter()
                        .flat_map(|(_, f)| f.payloads.iter().map(|b| b.as_ptr()))
                        .collect();
                    let muxed: Vec<*const u8> =
                        fragment.payloads.iter().map(|b| b.as_ptr()).collect();
                    assert_eq!(split, muxed, "the same sample buffers, in the same order");
                    for (id, f) in &tracks {
                        assert_eq!(count(&f.header, b"traf"), 1);
                        // tfhd: size, "tfhd", version+flags, then the track id.
                        let at = f.header.windows(4).position(|w| w == b"tfhd").unwrap();
                        assert_eq!(f.header[at + 8..at + 12], id.to_be_bytes());
                        let body: usize = f.payloads.iter().map(Bytes::len).sum();
                        let mdat = u32::from_be_bytes(
                            f.header[f.header.len() - 8..f.header.len() - 4]
                                .try_into()
                                .unwrap(),
                        );
                        assert_eq!(mdat as usize, body + 8);
                    }
                    audio_chunks += usize::from(tracks.len() == 2);
                }
                _ => {}
            }
        }
    };
    let (v, a) = tracks();
    p.handle_track(v);
    p.handle_track(a);
    feed_collect(&mut p, &mut check_events, T0, 4, 30);
    assert_eq!(inits, 1);
    assert!(
        chunks > 100 && audio_chunks > 100,
        "{chunks} {audio_chunks}"
    );
}

/// The part that opens the first segment after a publisher change, or with a new init
/// segment, says it starts a new stretch of timeline (a DASH Period); no other part does.
#[test]
fn parts_opening_a_new_timeline_say_so() {
    let mut p = Packager::new(PackagerConfig::default());
    let mut starts: Vec<(u64, bool)> = Vec::new();
    let mut collect = |p: &mut Packager| {
        while let Some(ev) = p.poll_event() {
            if let Event::PartStarted {
                msn, new_period, ..
            } = ev
            {
                if starts.last().map(|s| s.0) != Some(msn) {
                    starts.push((msn, new_period));
                } else {
                    assert!(!new_period, "only a segment's first part");
                }
            }
        }
    };
    let (v, a) = tracks();
    p.handle_track(v);
    p.handle_track(a);
    feed_collect(&mut p, &mut collect, T0, 4, 30);
    p.handle_discontinuity();
    collect(&mut p);
    feed_collect(&mut p, &mut collect, T0 + 10_000, 4, 30);
    let first_after = starts.iter().position(|s| s.1).expect("a new period");
    assert!(first_after > 0);
    assert_eq!(starts.iter().filter(|s| s.1).count(), 1, "{starts:?}");
}

/// A new publisher after a discontinuity (a reconnect, or a backup taking over) continues where
/// the old stretch ended, on both tracks at once: the old stretch ends where both tracks have
/// media (its last video frame cut at the audio's end), its parts list exactly that much, and
/// the new video and the new audio both start there (in each track's own ticks, not rounded
/// to ms). Players re-anchor a discontinuity at its first sample, so an offset between the
/// tracks there is a hole in a muxed buffer (hls.js in Chromium stalled on 17-33 ms ones).
#[test]
fn a_new_publisher_continues_both_tracks_at_the_same_point() {
    use std::cell::RefCell;
    // (track, tfdt, samples) of every chunk.
    let chunks: RefCell<Vec<(u32, u64, u64)>> = RefCell::default();
    let mut collect = |p: &mut Packager| {
        while let Some(ev) = p.poll_event() {
            if let Event::Chunk { tracks, .. } = ev {
                for (id, f) in tracks {
                    let t = tfdt(&f.header, id).expect("tfdt");
                    chunks.borrow_mut().push((id, t, f.payloads.len() as u64));
                }
            }
        }
    };
    let mut p = Packager::new(PackagerConfig::default());
    let (v, a) = tracks();
    p.handle_track(v);
    p.handle_track(a);
    // 0.4 s keyframes; the old publisher stops after 4 s, its audio 32 ms short of its video.
    feed_collect(&mut p, &mut collect, T0, 4, 12);
    p.handle_discontinuity();
    collect(&mut p);
    let cut = chunks.borrow().len();
    let (v, a) = tracks();
    p.handle_track(v);
    p.handle_track(a);
    feed_collect(&mut p, &mut collect, T0 + 5_000, 2, 12);
    let chunks = chunks.into_inner();
    let (old, new) = chunks.split_at(cut);
    let first = |c: &[(u32, u64, u64)], track: u32| c.iter().find(|c| c.0 == track).unwrap().1;
    // Audio samples all last 1024 ticks: where the old audio ends.
    let audio_end = old
        .iter()
        .filter(|c| c.0 == 2)
        .map(|c| c.1 + c.2 * 1024)
        .max()
        .unwrap();
    let mut text = String::new();
    p.playlist().render(&mut text, Skip::No).unwrap();
    let parsed = check::parse(&text).unwrap();
    let cut = parsed
        .segments
        .iter()
        .position(|s| s.discontinuity)
        .unwrap();
    let listed: f64 = parsed.segments[..cut]
        .iter()
        .map(|s| s.duration.unwrap())
        .sum();
    let old_end = first(old, 1) as f64 / 90_000.0 + listed;
    let (new_video, new_audio) = (first(new, 1), first(new, 2));
    assert_eq!(
        new_video * 48_000,
        audio_end * 90_000,
        "the new video starts where the old audio ended\n{text}"
    );
    assert!(
        (new_video as f64 / 90_000.0 - old_end).abs() < 1e-3,
        "the new video starts at {new_video}/90000, the old stretch lists until {old_end} s\n{text}"
    );
    assert_eq!(
        new_audio, audio_end,
        "the new audio starts with the new video"
    );
}
