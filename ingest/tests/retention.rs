//! What the frames of a stream keep alive: their own bytes, not the read buffers they came
//! from. A counting allocator (this test binary's global allocator) measures the heap while
//! a publisher's 41 seconds of media (a playlist window) are held, read the way the edge reads:
//! one 64 KiB buffer per connection, `reserve` before every read, reads of a few kilobytes.
//!
//! Before the ingest copied short messages out, every single-chunk audio frame kept its whole
//! 64 KiB read buffer alive: ~1,900 frames, ~120 MiB for ~13 MiB of media.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use zerocast_core::Frame;
use zerocast_ingest::flv::encode::{aac, legacy_video, AAC_CONFIG, AVC_RECORD};
use zerocast_ingest::{Output, ServerSession, SessionEvent};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments; the counter is
// bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What ffmpeg sends for `rtmp://…/live/demo`: handshake (a plain one, which the server does
/// not check), Set Chunk Size 4096, connect, createStream, publish.
fn preamble(out: &mut ChunkSerializer) -> Vec<u8> {
    let mut bytes = vec![3u8];
    bytes.extend_from_slice(&[0; 1536 * 2]);
    bytes.extend(
        out.set_max_chunk_size(4096, RtmpTimestamp::new(0))
            .unwrap()
            .bytes,
    );
    let s = |v: &str| Amf0Value::Utf8String(v.into());
    for (name, txn, stream_id, args) in [
        ("connect", 1.0, 0, vec![]),
        ("createStream", 2.0, 0, vec![]),
        ("publish", 3.0, 1, vec![s("demo"), s("live")]),
    ] {
        let command = RtmpMessage::Amf0Command {
            command_name: name.into(),
            transaction_id: txn,
            command_object: match name {
                "connect" => Amf0Value::Object([("app".to_string(), s("live"))].into()),
                _ => Amf0Value::Null,
            },
            additional_arguments: args,
        };
        let payload = command
            .into_message_payload(RtmpTimestamp::new(0), stream_id)
            .unwrap();
        bytes.extend(out.serialize(&payload, false, false).unwrap().bytes);
    }
    bytes
}

/// 41 s of a 2.5 Mb/s 30 fps stream with AAC at 46.875 frames/s: a 2 s GOP of a 100 kB
/// keyframe (over 64 KiB: reassembled into an exact allocation) and 9 kB frames, and
/// 370-byte audio frames.
fn media(out: &mut ChunkSerializer) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut media_bytes = 0;
    let mut send = |m: RtmpMessage, ts: u32| {
        let payload = m.into_message_payload(RtmpTimestamp::new(ts), 1).unwrap();
        bytes.extend(out.serialize(&payload, false, false).unwrap().bytes);
    };
    send(
        RtmpMessage::VideoData {
            data: legacy_video(1, 7, 0, 0, AVC_RECORD).into(),
        },
        0,
    );
    send(
        RtmpMessage::AudioData {
            data: aac(0, AAC_CONFIG).into(),
        },
        0,
    );
    let (mut video, mut audio) = (0u32, 0u32);
    loop {
        let vt = video * 1000 / 30;
        let at = audio * 1024 * 1000 / 48_000;
        if vt.min(at) >= 41_000 {
            break;
        }
        if vt <= at {
            let key = video % 60 == 0;
            let len = if key { 100_000 } else { 9_000 };
            let mut nal = (len as u32 - 4).to_be_bytes().to_vec();
            nal.resize(len, 0x41);
            media_bytes += len;
            let tag = legacy_video(if key { 1 } else { 2 }, 7, 1, 0, &nal);
            send(RtmpMessage::VideoData { data: tag.into() }, vt);
            video += 1;
        } else {
            media_bytes += 370;
            send(
                RtmpMessage::AudioData {
                    data: aac(1, &[0x21; 370]).into(),
                },
                at,
            );
            audio += 1;
        }
    }
    (bytes, media_bytes)
}

#[test]
fn held_frames_keep_only_their_own_bytes() {
    let mut serializer = ChunkSerializer::new();
    let preamble = preamble(&mut serializer);
    let (media, media_bytes) = media(&mut serializer);
    let mut stream = preamble;
    stream.extend_from_slice(&media);
    drop(media);
    stream.shrink_to_fit();

    let mut session = ServerSession::new();
    let mut frames: Vec<Frame> = Vec::with_capacity(5000);
    let before = LIVE.load(Ordering::Relaxed);
    // The edge's loop: one buffer, `reserve(64 KiB)`, a read, `handle_input`, drain.
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut rest = &stream[..];
    let mut rng = 0x2545_f491_u32;
    while !rest.is_empty() {
        // Reads of 1..6000 bytes (ffmpeg's writes arrive as ~3 kB reads on loopback).
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let n = (1 + rng as usize % 6000).min(rest.len());
        buf.reserve(64 * 1024);
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        session.handle_input(&mut buf).unwrap();
        while let Some(o) = session.poll_output() {
            match o {
                Output::Event(SessionEvent::PublishRequested { request_id, .. }) => {
                    session.accept_publish(request_id).unwrap();
                }
                Output::Event(SessionEvent::Frame(f)) => frames.push(f),
                _ => {}
            }
        }
    }
    drop(buf);
    let held = LIVE.load(Ordering::Relaxed) - before;
    let frame_bytes: usize = frames.iter().map(|f| f.data.len()).sum();
    eprintln!(
        "{} frames of {frame_bytes} bytes hold {held} bytes of heap",
        frames.len()
    );
    assert!(frames.len() > 3000, "{} frames", frames.len());
    assert!(frame_bytes >= media_bytes, "{frame_bytes} < {media_bytes}");
    // The goal for a stream's memory, applied to what ingest holds: at most 1.1x the
    // media plus 1 MiB (here for the frame list, the session and the decoder).
    let bound = frame_bytes + frame_bytes / 10 + (1 << 20);
    assert!(
        held <= bound,
        "{} frames of {frame_bytes} bytes hold {held} bytes of heap (bound {bound})",
        frames.len()
    );
}
