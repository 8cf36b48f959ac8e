//! fMP4 round trips through real tools: ffmpeg makes H.264/AAC (FLV) and HEVC (Annex-B), the
//! test muxes it with `fmp4` the way the packager does (one fragment per video frame, carrying the
//! audio frames that arrived before it), and ffprobe/ffmpeg must read it back without a single
//! error, with the same frame count, timestamps, keyframes and decoded pictures and sound.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use zerocast_core::codec::{aac::AacConfig, avc::AvcConfig, hevc::HevcConfig};
use zerocast_core::{AudioCodec, Timescale, Track, TrackId, VideoCodec};
use zerocast_packager::fmp4::{fragment, init_segment, Sample, TrackRun};

/// One media sample in arrival order, with its decode time in its track's timescale.
#[derive(Debug)]
enum Event {
    Video { dts: u64, sample: Sample },
    Audio { dts: u64, sample: Sample },
}

/// What a muxed sample should come back as from ffprobe.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Packet {
    video: bool,
    pts: i64,
    dts: i64,
    keyframe: bool,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (ffmpeg is required): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a tool that must print nothing on stderr at `-v error`; returns stdout.
fn run_clean(cmd: &mut Command) -> String {
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "{cmd:?} reported errors:\n{stderr}"
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

/// A file in the temp dir, removed when dropped (kept if the test panics, for inspection).
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("zerocast-{}-{name}", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

// ---------------------------------------------------------------- muxing as the packager does

/// Init segment, then one fragment per video frame with the audio that arrived before it; audio
/// after the last video frame goes into a final audio-only fragment.
fn mux(tracks: &[Track], events: &[Event]) -> Vec<u8> {
    let mut out = init_segment(tracks).to_vec();
    let mut sequence = 1;
    let mut audio: Vec<Sample> = Vec::new();
    let mut audio_base = 0;
    let mut emit = |runs: &[TrackRun<'_>], out: &mut Vec<u8>| {
        let frag = fragment(sequence, runs);
        sequence += 1;
        let before = out.len();
        for chunk in frag.chunks() {
            out.extend_from_slice(chunk);
        }
        assert_eq!(out.len() - before, frag.len());
    };
    for event in events {
        match event {
            Event::Audio { dts, sample } => {
                if audio.is_empty() {
                    audio_base = *dts;
                }
                audio.push(sample.clone());
            }
            Event::Video { dts, sample } => {
                let runs = [
                    TrackRun {
                        track_id: TrackId::VIDEO.0,
                        base_decode_time: *dts,
                        samples: std::slice::from_ref(sample),
                    },
                    TrackRun {
                        track_id: TrackId::AUDIO.0,
                        base_decode_time: audio_base,
                        samples: &audio,
                    },
                ];
                emit(&runs, &mut out);
                audio.clear();
            }
        }
    }
    if !audio.is_empty() {
        let run = TrackRun {
            track_id: TrackId::AUDIO.0,
            base_decode_time: audio_base,
            samples: &audio,
        };
        emit(&[run], &mut out);
    }
    out
}

fn expected_packets(events: &[Event]) -> Vec<Packet> {
    events
        .iter()
        .map(|e| match e {
            Event::Video { dts, sample } | Event::Audio { dts, sample } => Packet {
                video: matches!(e, Event::Video { .. }),
                dts: *dts as i64,
                pts: *dts as i64 + i64::from(sample.composition_offset),
                keyframe: sample.keyframe,
            },
        })
        .collect()
}

// ---------------------------------------------------------------- minimal FLV reader

struct Flv {
    avc: Option<AvcConfig>,
    aac: Option<AacConfig>,
    events: Vec<Event>,
}

fn u24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn read_flv(data: &Bytes) -> Flv {
    assert_eq!(&data[..3], b"FLV", "FLV signature");
    let header_len = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize;
    let mut pos = header_len + 4; // header, PreviousTagSize0
    let mut flv = Flv {
        avc: None,
        aac: None,
        events: Vec::new(),
    };
    let mut sample_rate = 0;
    while pos + 11 <= data.len() {
        let tag_type = data[pos];
        let size = u24(&data[pos + 1..]) as usize;
        let ts = i64::from(u24(&data[pos + 4..]) | (u32::from(data[pos + 7]) << 24));
        let body = data.slice(pos + 11..pos + 11 + size);
        pos += 11 + size + 4; // tag, PreviousTagSize
        match tag_type {
            8 => {
                assert_eq!(body[0] >> 4, 10, "AAC");
                match body[1] {
                    0 => {
                        let c = AacConfig::parse(body.slice(2..)).unwrap();
                        sample_rate = c.sample_rate;
                        flv.aac = Some(c);
                    }
                    _ => {
                        let dts = (ts * i64::from(sample_rate) + 500) / 1000;
                        flv.events.push(Event::Audio {
                            dts: dts as u64, // replaced below by a 1024-sample count
                            sample: Sample {
                                duration: 1024,
                                composition_offset: 0,
                                keyframe: true,
                                data: body.slice(2..),
                            },
                        });
                    }
                }
            }
            9 => {
                assert_eq!(body[0] & 0x0f, 7, "AVC");
                match body[1] {
                    0 => flv.avc = Some(AvcConfig::parse(body.slice(5..)).unwrap()),
                    1 => {
                        // SI24 composition time in milliseconds.
                        let cts = (u24(&body[2..]) << 8) as i32 >> 8;
                        flv.events.push(Event::Video {
                            dts: (ts * 90) as u64,
                            sample: Sample {
                                duration: 0, // set below from the next frame
                                composition_offset: cts * 90,
                                keyframe: body[0] >> 4 == 1,
                                data: body.slice(5..),
                            },
                        });
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // AAC frames are 1024 samples: count them from the first frame's time rather than rounding
    // each millisecond timestamp.
    let first_audio = flv.events.iter().find_map(|e| match e {
        Event::Audio { dts, .. } => Some(*dts),
        Event::Video { .. } => None,
    });
    let mut n = 0;
    for e in &mut flv.events {
        if let Event::Audio { dts, .. } = e {
            *dts = first_audio.unwrap_or(0) + n * 1024;
            n += 1;
        }
    }
    set_video_durations(&mut flv.events);
    flv
}

/// Video duration = next video frame's dts - this one's; the last frame repeats the previous.
fn set_video_durations(events: &mut [Event]) {
    let dts: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Video { dts, .. } => Some(*dts),
            Event::Audio { .. } => None,
        })
        .collect();
    let mut durations: Vec<u32> = dts.windows(2).map(|w| (w[1] - w[0]) as u32).collect();
    durations.push(durations.last().copied().unwrap_or(3000));
    let mut it = durations.into_iter();
    for e in events {
        if let Event::Video { sample, .. } = e {
            sample.duration = it.next().unwrap();
        }
    }
}

// ---------------------------------------------------------------- ffprobe / ffmpeg checks

/// `"key": value` from one flat JSON object, unquoted.
fn json_field<'a>(obj: &'a str, key: &str) -> Option<&'a str> {
    let start = obj.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = obj[start..].trim_start();
    let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().trim_matches('"'))
}

/// (codec_name, nb_read_frames, width, height) per stream.
fn probe_streams(path: &PathBuf) -> Vec<(String, u64, Option<u32>, Option<u32>)> {
    let json = run_clean(
        Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-show_entries"])
            .arg("stream=codec_name,nb_read_frames,width,height")
            .args(["-of", "json"])
            .arg(path),
    );
    let streams = &json[json.find("\"streams\"").expect("streams in ffprobe JSON")..];
    streams
        .split('{')
        .filter(|o| o.contains("codec_name"))
        .map(|o| {
            (
                json_field(o, "codec_name").unwrap().to_owned(),
                json_field(o, "nb_read_frames").unwrap().parse().unwrap(),
                json_field(o, "width").map(|w| w.parse().unwrap()),
                json_field(o, "height").map(|h| h.parse().unwrap()),
            )
        })
        .collect()
}

/// Every packet's type, pts, dts and key flag, in file order.
fn probe_packets(path: &PathBuf) -> Vec<Packet> {
    let csv = run_clean(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_entries"])
            .arg("packet=codec_type,pts,dts,flags")
            .args(["-of", "csv=p=0"])
            .arg(path),
    );
    csv.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "{l}");
            Packet {
                video: f[0] == "video",
                pts: f[1].parse().unwrap(),
                dts: f[2].parse().unwrap(),
                keyframe: f[3].starts_with('K'),
            }
        })
        .collect()
}

/// MD5 of every decoded frame of stream `spec` (`v:0`, `a:0`), in output order.
fn decoded_md5s(path: &PathBuf, spec: &str) -> Vec<String> {
    let out = run_clean(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(path)
            .args(["-map", &format!("0:{spec}"), "-f", "framemd5", "-"]),
    );
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

fn decodes_cleanly(path: &PathBuf) {
    run_clean(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(path)
            .args(["-f", "null", "-"]),
    );
}

// ---------------------------------------------------------------- tests

#[test]
fn h264_aac_from_flv_round_trips_through_ffprobe() {
    let source = TempFile::new("h264-aac.flv");
    run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=sample_rate=48000"])
        .args([
            "-t", "2", "-c:v", "libx264", "-g", "30", "-c:a", "aac", "-f", "flv",
        ])
        .arg(&source.0));
    let flv = read_flv(&Bytes::from(std::fs::read(&source.0).unwrap()));

    let avc = flv.avc.expect("AVC sequence header");
    let aac = flv.aac.expect("AAC sequence header");
    assert_eq!(avc.dimensions(), Some((320, 240)));
    let tracks = [
        Track::Video {
            id: TrackId::VIDEO,
            timescale: Timescale::VIDEO,
            codec: VideoCodec::Avc(avc),
        },
        Track::Audio {
            id: TrackId::AUDIO,
            timescale: Timescale::new(aac.sample_rate).unwrap(),
            codec: AudioCodec::Aac(aac),
        },
    ];
    let video_in = flv
        .events
        .iter()
        .filter(|e| matches!(e, Event::Video { .. }))
        .count();
    let audio_in = flv.events.len() - video_in;
    assert_eq!(video_in, 60, "2 s at 30 fps");
    assert!(
        audio_in > 90,
        "about 2 s of 1024-sample AAC frames at 48 kHz"
    );
    assert!(
        flv.events.iter().any(|e| matches!(e,
            Event::Video { sample, .. } if sample.composition_offset != 0)),
        "x264 B-frames give composition offsets"
    );

    let out = TempFile::new("h264-aac.mp4");
    std::fs::write(&out.0, mux(&tracks, &flv.events)).unwrap();

    let streams = probe_streams(&out.0);
    assert_eq!(
        streams,
        [
            ("h264".to_owned(), video_in as u64, Some(320), Some(240)),
            ("aac".to_owned(), audio_in as u64, None, None),
        ]
    );
    decodes_cleanly(&out.0);

    // Timestamps (tfdt + durations + composition offsets) and key flags, per track.
    let packets = probe_packets(&out.0);
    let expected = expected_packets(&flv.events);
    for video in [true, false] {
        let got: Vec<_> = packets.iter().filter(|p| p.video == video).collect();
        let want: Vec<_> = expected.iter().filter(|p| p.video == video).collect();
        assert_eq!(got, want, "video={video}");
    }

    // The decoded pictures and sound are those of the source.
    for spec in ["v:0", "a:0"] {
        let want = decoded_md5s(&source.0, spec);
        assert_eq!(want.len(), if spec == "v:0" { video_in } else { audio_in });
        assert_eq!(decoded_md5s(&out.0, spec), want, "{spec}");
    }
}

/// Splits Annex-B into NAL units (without start codes).
fn annex_b_nals(data: &Bytes) -> Vec<Bytes> {
    let mut starts = Vec::new(); // (start code position, payload position)
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let sc = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            starts.push((sc, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends = starts.iter().skip(1).map(|s| s.0).chain([data.len()]);
    starts
        .iter()
        .zip(ends)
        .map(|(&(_, at), end)| data.slice(at..end))
        .collect()
}

/// An HEVCDecoderConfigurationRecord for 8-bit 4:2:0 with 4-byte NAL lengths.
fn hvcc(vps: &Bytes, sps: &Bytes, pps: &Bytes) -> Bytes {
    // profile_tier_level: 12 bytes after the NAL header and the vps id/sub-layers byte, with
    // emulation prevention bytes removed.
    let mut rbsp = Vec::new();
    let mut zeros = 0;
    for &b in &sps[2..] {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let ptl = &rbsp[1..13];
    let mut r = vec![1];
    r.extend_from_slice(ptl);
    // min_spatial_segmentation, parallelismType, chroma 4:2:0, bit depths 8, avgFrameRate,
    // constantFrameRate 0 | numTemporalLayers 1 | temporalIdNested 1 | lengthSizeMinusOne 3
    r.extend_from_slice(&[0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 3]);
    for (nal_type, nal) in [(32, vps), (33, sps), (34, pps)] {
        r.push(0x80 | nal_type); // array_completeness
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        r.extend_from_slice(nal);
    }
    Bytes::from(r)
}

#[test]
fn hevc_from_annex_b_round_trips_through_ffprobe() {
    let source = TempFile::new("hevc.hevc");
    run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-t",
            "2",
        ])
        .args(["-c:v", "libx265", "-g", "30"])
        // No B-frames (raw HEVC has no timestamps); an AUD starts every access unit.
        .args([
            "-x265-params",
            "bframes=0:aud=1:log-level=error",
            "-f",
            "hevc",
        ])
        .arg(&source.0));
    let data = Bytes::from(std::fs::read(&source.0).unwrap());

    let (mut vps, mut sps, mut pps) = (None, None, None);
    let mut access_units: Vec<Vec<Bytes>> = Vec::new();
    for nal in annex_b_nals(&data) {
        match (nal[0] >> 1) & 0x3f {
            35 => access_units.push(Vec::new()),
            32 => {
                vps.get_or_insert(nal);
            }
            33 => {
                sps.get_or_insert(nal);
            }
            34 => {
                pps.get_or_insert(nal);
            }
            _ => access_units.last_mut().expect("AUD first").push(nal),
        }
    }
    let record = hvcc(&vps.unwrap(), &sps.unwrap(), &pps.unwrap());
    let config = HevcConfig::parse(record).unwrap();
    assert_eq!(config.dimensions(), Some((320, 240)));
    let tracks = [Track::Video {
        id: TrackId::VIDEO,
        timescale: Timescale::VIDEO,
        codec: VideoCodec::Hevc(config),
    }];
    let events: Vec<Event> = access_units
        .iter()
        .enumerate()
        .map(|(i, nals)| {
            let mut sample = Vec::new();
            for nal in nals {
                sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                sample.extend_from_slice(nal);
            }
            Event::Video {
                dts: i as u64 * 3000,
                sample: Sample {
                    duration: 3000,
                    composition_offset: 0,
                    keyframe: nals
                        .iter()
                        .any(|n| (16..=23).contains(&((n[0] >> 1) & 0x3f))),
                    data: Bytes::from(sample),
                },
            }
        })
        .collect();
    assert_eq!(events.len(), 60);

    let out = TempFile::new("hevc.mp4");
    std::fs::write(&out.0, mux(&tracks, &events)).unwrap();

    assert_eq!(
        probe_streams(&out.0),
        [("hevc".to_owned(), 60, Some(320), Some(240))]
    );
    decodes_cleanly(&out.0);
    assert_eq!(probe_packets(&out.0), expected_packets(&events));
    let want = decoded_md5s(&source.0, "v:0");
    assert_eq!(want.len(), 60);
    assert_eq!(decoded_md5s(&out.0, "v:0"), want);
}
