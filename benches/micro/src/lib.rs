//! # zerocast-microbench: inputs for the criterion benches
//!
//! The criterion benches in `benches/` time parse, mux and render separately, on the real
//! captures in `testdata/` and on a longer H.264 capture that ffmpeg makes on first use. This
//! library builds their inputs once, outside the timed loops:
//!
//! ```text
//! FLV file ─► read_flv ─► Tag ─┬► rtmp_chunks (rml_rtmp's chunk serializer) ─► ChunkDecoder
//!                              ├► record_publish (rml_rtmp's client session) ─► ServerSession
//!                              └► demux (flv::Demuxer) ─► Track, Frame ─┬► Packager
//!                                                                       └► cmaf_chunks ─► fmp4
//! live_playlist ─► MediaPlaylist::render (full, delta)
//! ```
//!
//! Run with `cargo bench -p zerocast-microbench` (see `docs/performance.md`). Nothing here is
//! timed, and nothing here is used by the server.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::{Bytes, BytesMut};
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use zerocast_core::{Frame, Timestamp, Track, TrackId};
use zerocast_ingest::flv::{Demuxed, Demuxer};
use zerocast_ingest::{Output, ServerSession, SessionEvent};
use zerocast_packager::fmp4::Sample;
use zerocast_packager::{MediaPlaylist, PlaylistConfig};

/// FLV tag type of an audio tag (and RTMP message type of audio data).
pub const AUDIO: u8 = 8;
/// FLV tag type of a video tag (and RTMP message type of video data).
pub const VIDEO: u8 = 9;

/// The file name of the generated H.264 capture (in the directory given to [`h264_capture`]).
pub const H264_CAPTURE: &str = "ffmpeg_libx264_aac_720p30_20s.flv";

/// One audio or video tag of an FLV file: what a publisher sends as one RTMP message.
#[derive(Debug, Clone)]
pub struct Tag {
    /// [`AUDIO`] or [`VIDEO`].
    pub kind: u8,
    /// Milliseconds, as in the file (24 bits plus the extension byte).
    pub timestamp: u32,
    /// The tag body.
    pub body: Bytes,
}

/// A capture and its tags.
#[derive(Debug, Clone)]
pub struct Capture {
    /// A short name for bench ids (`h264`, `hevc`, `av1`).
    pub name: &'static str,
    /// Its audio and video tags, in file order.
    pub tags: Vec<Tag>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads the audio and video tags of an FLV file (script tags are skipped).
pub fn read_flv(path: &Path) -> io::Result<Vec<Tag>> {
    let file = Bytes::from(std::fs::read(path)?);
    let at = |pos: usize, len: usize| {
        file.get(pos..pos + len)
            .ok_or_else(|| invalid(format!("{}: truncated at {pos}", path.display())))
    };
    if at(0, 3)? != b"FLV" {
        return Err(invalid(format!("{}: not an FLV file", path.display())));
    }
    let header = at(5, 4)?;
    // The header's own length, then the first PreviousTagSize (0).
    let mut pos = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize + 4;
    let mut tags = Vec::new();
    while pos < file.len() {
        let h = at(pos, 11)?;
        let kind = h[0] & 0x1f;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        at(pos + 11, size)?;
        if kind == AUDIO || kind == VIDEO {
            tags.push(Tag {
                kind,
                timestamp,
                body: file.slice(pos + 11..pos + 11 + size),
            });
        }
        pos += 11 + size + 4;
    }
    Ok(tags)
}

/// The repository's `testdata/` directory.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// The longer H.264 capture, made with ffmpeg in `dir` unless it is there already: 20 s of
/// `testsrc2` at 1280x720, 30 fps, libx264 `veryfast` at 2.5 Mb/s with 1 s GOPs (B-frames on,
/// as x264 sets them), and 48 kHz stereo AAC at 128 kb/s, in FLV. About 6.7 MB; ffmpeg takes a
/// few seconds.
pub fn h264_capture(dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join(H264_CAPTURE);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    eprintln!("making {} with ffmpeg (once)", path.display());
    // Written under another name and renamed: bench binaries may run side by side.
    let tmp = dir.join(format!("{H264_CAPTURE}.{}.tmp", std::process::id()));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "20", "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "2500k"])
        .args([
            "-g",
            "30",
            "-keyint_min",
            "30",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "flv"])
        .arg(&tmp)
        .status()?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io::Error::other(format!("ffmpeg exited with {status}")));
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The captures to bench: the H.264 one made in `dir` (left out, with a note on stderr, when
/// ffmpeg cannot make it), then `testdata/`'s HEVC and AV1 captures (Enhanced RTMP).
pub fn captures(dir: &Path) -> io::Result<Vec<Capture>> {
    let mut out = Vec::new();
    match h264_capture(dir) {
        Ok(path) => out.push(Capture {
            name: "h264",
            tags: read_flv(&path)?,
        }),
        Err(e) => eprintln!("no H.264 capture ({e}): is ffmpeg with libx264 installed?"),
    }
    for (name, file) in [
        ("hevc", "ffmpeg9_hevc_aac.flv"),
        ("av1", "ffmpeg9_av1_aac.flv"),
    ] {
        out.push(Capture {
            name,
            tags: read_flv(&testdata().join(file))?,
        });
    }
    Ok(out)
}

/// The tags as a publisher's RTMP chunk stream after `connect`/`publish`: a Set Chunk Size
/// to `chunk_size`, then each tag as an audio or video message on message stream 1, chunked
/// by rml_rtmp's serializer (the one an rml_rtmp client uses, with its header compression).
pub fn rtmp_chunks(tags: &[Tag], chunk_size: u32) -> Bytes {
    let mut ser = ChunkSerializer::new();
    let mut out = BytesMut::new();
    let set = ser
        .set_max_chunk_size(chunk_size, RtmpTimestamp::new(0))
        .expect("a valid chunk size");
    out.extend_from_slice(&set.bytes);
    for t in tags {
        let payload = MessagePayload {
            timestamp: RtmpTimestamp::new(t.timestamp),
            type_id: t.kind,
            message_stream_id: 1,
            data: t.body.clone(),
        };
        let p = ser
            .serialize(&payload, false, false)
            .expect("an FLV tag fits an RTMP message");
        out.extend_from_slice(&p.bytes);
    }
    out.freeze()
}

/// Everything an rml_rtmp client sends to publish the tags as `live/bench`: handshake,
/// `connect`, `createStream`, `publish`, the media (chunk size 4096, as OBS and ffmpeg use),
/// and `deleteStream`. [`ServerSession`] answered it while it was recorded, accepting the
/// publish, so replaying it into a new session runs the same way.
pub fn record_publish(tags: &[Tag]) -> Bytes {
    let mut server = ServerSession::new();
    let mut wire = Vec::new();
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs.generate_outbound_p0_and_p1().expect("handshake");
    let mut back = feed(&mut server, &mut wire, &c0c1);
    let HandshakeProcessResult::Completed {
        response_bytes: c2, ..
    } = hs.process_bytes(&back).expect("handshake")
    else {
        panic!("the client handshake did not complete");
    };
    back = feed(&mut server, &mut wire, &c2);
    let (mut client, results) = ClientSession::new(ClientSessionConfig::new()).expect("client");
    let mut events = Vec::new();
    let mut pump = |results: Vec<ClientSessionResult>,
                    client: &mut ClientSession,
                    server: &mut ServerSession,
                    wire: &mut Vec<u8>| {
        let mut queue = vec![results];
        while let Some(results) = queue.pop() {
            for r in results {
                match r {
                    ClientSessionResult::OutboundResponse(p) => {
                        let back = feed(server, wire, &p.bytes);
                        if !back.is_empty() {
                            queue.push(client.handle_input(&back).expect("server answer"));
                        }
                    }
                    ClientSessionResult::RaisedEvent(e) => events.push(e),
                    ClientSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
    };
    if !back.is_empty() {
        let r = client.handle_input(&back).expect("server answer");
        pump(r, &mut client, &mut server, &mut wire);
    }
    pump(results, &mut client, &mut server, &mut wire);
    let r = vec![client.request_connection("live".into()).expect("connect")];
    pump(r, &mut client, &mut server, &mut wire);
    let r = vec![client
        .request_publishing("bench".into(), PublishRequestType::Live)
        .expect("publish")];
    pump(r, &mut client, &mut server, &mut wire);
    for t in tags {
        let ts = RtmpTimestamp::new(t.timestamp);
        let r = match t.kind {
            AUDIO => client.publish_audio_data(t.body.clone(), ts, false),
            _ => client.publish_video_data(t.body.clone(), ts, false),
        };
        pump(vec![r.expect("media")], &mut client, &mut server, &mut wire);
    }
    let r = client.stop_publishing().expect("stop");
    pump(r, &mut client, &mut server, &mut wire);
    assert!(
        events.contains(&ClientSessionEvent::PublishRequestAccepted),
        "the publish was not accepted: {events:?}"
    );
    Bytes::from(wire)
}

/// Feeds `bytes` to `server` (recording them in `wire`), accepts publish requests, and returns
/// what the server sent back.
fn feed(server: &mut ServerSession, wire: &mut Vec<u8>, bytes: &[u8]) -> Vec<u8> {
    wire.extend_from_slice(bytes);
    let mut buf = BytesMut::from(bytes);
    let mut r = server.handle_input(&mut buf);
    let mut back = Vec::new();
    while let Some(o) = server.poll_output() {
        match o {
            Output::Send(b) => back.extend_from_slice(&b),
            Output::Event(SessionEvent::PublishRequested { request_id, .. }) => {
                r = r.and(server.accept_publish(request_id));
            }
            Output::Event(_) => {}
        }
    }
    r.expect("the server session accepts the recorded publish");
    back
}

/// Replays a recorded publish into a new [`ServerSession`] in reads of `read_size` bytes,
/// accepting the publish; returns the number of frames that came out. The frames are kept
/// until the end, as the server keeps media for its playlist window: read buffers are not
/// reused, each read goes to a new allocation.
pub fn replay_publish(wire: &[u8], read_size: usize) -> usize {
    let mut s = ServerSession::new();
    let mut buf = BytesMut::with_capacity(read_size);
    let mut frames = Vec::with_capacity(wire.len() / 1024);
    for read in wire.chunks(read_size) {
        buf.reserve(read_size);
        buf.extend_from_slice(read);
        let mut r = s.handle_input(&mut buf);
        while let Some(o) = s.poll_output() {
            match o {
                Output::Event(SessionEvent::Frame(f)) => frames.push(f),
                Output::Event(SessionEvent::PublishRequested { request_id, .. }) => {
                    r = r.and(s.accept_publish(request_id));
                }
                _ => {}
            }
        }
        r.expect("the recorded publish replays");
    }
    frames.len()
}

/// The tracks (in the order their sequence headers came) and frames of the tags.
pub fn demux(tags: &[Tag]) -> (Vec<Track>, Vec<Frame>) {
    let mut d = Demuxer::new();
    let mut tracks = Vec::new();
    let mut frames = Vec::new();
    for t in tags {
        let out = match t.kind {
            AUDIO => d.handle_audio(t.timestamp, &t.body),
            _ => d.handle_video(t.timestamp, &t.body),
        };
        match out.expect("a capture made by a real tool demuxes") {
            Some(Demuxed::Track(track)) => tracks.push(track),
            Some(Demuxed::Frame(f)) => frames.push(f),
            None => {}
        }
    }
    (tracks, frames)
}

/// The input of one CMAF chunk as the packager builds it: one video frame and the audio frames
/// that arrived since the previous chunk.
#[derive(Debug, Clone)]
pub struct ChunkInput {
    /// Decode time of the video sample (video timescale).
    pub video_base: u64,
    /// The video sample.
    pub video: Vec<Sample>,
    /// Decode time of the first audio sample (audio timescale).
    pub audio_base: u64,
    /// The audio samples.
    pub audio: Vec<Sample>,
}

/// Groups frames into CMAF chunk inputs, one per video frame (the last video frame, whose
/// duration is unknown, is left out). Sample durations are the distance to the next frame of
/// the track; the last audio frame lasts as long as the one before it.
pub fn cmaf_chunks(frames: &[Frame]) -> Vec<ChunkInput> {
    let video = samples(frames, TrackId::VIDEO);
    let audio = samples(frames, TrackId::AUDIO);
    let ticks = |t: &Timestamp| u64::try_from(t.ticks()).unwrap_or(0);
    let mut chunks = Vec::new();
    let mut a = 0;
    for pair in video.windows(2) {
        let [(dts, v), (next, _)] = pair else {
            continue;
        };
        let start = a;
        while audio
            .get(a)
            .is_some_and(|(t, _)| t.as_secs_f64() < next.as_secs_f64())
        {
            a += 1;
        }
        chunks.push(ChunkInput {
            video_base: ticks(dts),
            video: vec![v.clone()],
            audio_base: audio.get(start).map_or(0, |(t, _)| ticks(t)),
            audio: audio[start..a].iter().map(|(_, s)| s.clone()).collect(),
        });
    }
    chunks
}

/// The frames of one track as samples, with their decode times.
fn samples(frames: &[Frame], track: TrackId) -> Vec<(Timestamp, Sample)> {
    let fs: Vec<&Frame> = frames.iter().filter(|f| f.track == track).collect();
    let mut last = 0;
    let mut out = Vec::with_capacity(fs.len());
    for (i, f) in fs.iter().enumerate() {
        let next = fs.get(i + 1).map(|n| n.dts.ticks() - f.dts.ticks());
        let duration = next.map_or(last, |d| u32::try_from(d).unwrap_or(0));
        last = duration;
        out.push((
            f.dts,
            Sample {
                duration,
                composition_offset: i32::try_from(f.composition_offset()).unwrap_or(0),
                keyframe: f.keyframe,
                data: f.data.clone(),
            },
        ));
    }
    out
}

/// A live playlist as the packager keeps it: `segments` segments of `parts` parts of
/// `part_secs` each have been published (the window keeps the newest 20 complete ones, the
/// newest 4 with their parts), and the open segment holds 3 parts.
pub fn live_playlist(segments: u64, parts: u32, part_secs: f64) -> MediaPlaylist {
    let config = PlaylistConfig {
        part_target: part_secs,
        segment_target: part_secs * f64::from(parts),
        window: 20,
        part_segments: 4,
    };
    let mut p = MediaPlaylist::new(config);
    let pdt0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let mut t = 0.0;
    let mut push = |p: &mut MediaPlaylist, independent: bool| {
        let ms = (t * 1000.0) as i64;
        p.push_part(
            part_secs,
            independent,
            pdt0 + ms,
            Timestamp::from_millis(ms),
            0,
            false,
        );
        t += part_secs;
    };
    for _ in 0..segments {
        for i in 0..parts {
            push(&mut p, i == 0);
        }
        p.close_segment();
    }
    for i in 0..3 {
        push(&mut p, i == 0);
    }
    p
}
