//! A real RTMP client (`rml_rtmp`'s `ClientSession` and client `Handshake`) publishes to
//! `ServerSession`; its byte stream is then replayed, split every which way.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata as ClientMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use zerocast_core::{TrackId, TrackKind};
use zerocast_ingest::flv::encode::{
    aac, ex_video, legacy_video, AAC_CONFIG, AVC_RECORD, HEVC_RECORD,
};
use zerocast_ingest::{Output, ServerSession, SessionError, SessionEvent};

/// Media the test client publishes: (is video, timestamp ms, tag body).
fn media(start: u32) -> Vec<(bool, u32, Vec<u8>)> {
    let mut m = vec![
        (true, 0, legacy_video(1, 7, 0, 0, AVC_RECORD)),
        (false, 0, aac(0, AAC_CONFIG)),
    ];
    for i in 0..6u32 {
        let ts = start + i * 33;
        // Every third frame a keyframe larger than the 4096-byte chunk size.
        let (ft, nal) = if i % 3 == 0 {
            (1, vec![0x65; 5000 + i as usize])
        } else {
            (2, vec![0x41; 200 + i as usize])
        };
        let mut data = (nal.len() as u32).to_be_bytes().to_vec();
        data.extend(nal);
        m.push((true, ts, legacy_video(ft, 7, 1, 66, &data)));
        m.push((false, ts + 5, aac(1, &[0x21, i as u8, 0x10])));
    }
    // Switch to HEVC over Enhanced RTMP mid-stream.
    m.push((
        true,
        start + 200,
        ex_video(1, 0, None, b"hvc1", None, HEVC_RECORD),
    ));
    m.push((
        true,
        start + 200,
        ex_video(1, 1, None, b"hvc1", Some(0), &[0, 0, 0, 2, 0x26, 0x01]),
    ));
    m
}

/// Pumps bytes between a client and a server until both are quiet, accepting every publish
/// request. Returns the client's bytes, appended to `wire`.
struct Pair {
    client: ClientSession,
    server: ServerSession,
    wire: Vec<u8>,
    client_events: Vec<ClientSessionEvent>,
    server_events: Vec<SessionEvent>,
}

impl Pair {
    fn deliver(&mut self, bytes: &[u8]) {
        self.wire.extend_from_slice(bytes);
        let mut buf = BytesMut::from(bytes);
        self.server.handle_input(&mut buf).unwrap();
        let mut back = Vec::new();
        while let Some(o) = self.server.poll_output() {
            match o {
                Output::Send(b) => back.extend_from_slice(&b),
                Output::Event(e) => {
                    if let SessionEvent::PublishRequested { request_id, .. } = e {
                        self.server.accept_publish(request_id).unwrap();
                    }
                    self.server_events.push(e);
                }
            }
        }
        if !back.is_empty() {
            let results = self.client.handle_input(&back).unwrap();
            self.client_results(results);
        }
    }

    fn client_results(&mut self, results: Vec<ClientSessionResult>) {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.deliver(&p.bytes),
                ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
    }

    fn client_result(&mut self, r: ClientSessionResult) {
        self.client_results(vec![r]);
    }
}

/// Runs a whole publish of `app/name` and returns what the client sent.
fn record_publish(
    app: &str,
    name: &str,
    start: u32,
) -> (Vec<u8>, Vec<SessionEvent>, Vec<ClientSessionEvent>) {
    let mut server = ServerSession::new();
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
    let mut wire = c0c1.clone();
    let mut buf = BytesMut::from(&c0c1[..]);
    server.handle_input(&mut buf).unwrap();
    let mut s0s1s2 = Vec::new();
    while let Some(o) = server.poll_output() {
        let Output::Send(b) = o else {
            panic!("event during handshake")
        };
        s0s1s2.extend_from_slice(&b);
    }
    let HandshakeProcessResult::Completed {
        response_bytes: c2,
        remaining_bytes,
    } = hs.process_bytes(&s0s1s2).unwrap()
    else {
        panic!("client handshake did not complete")
    };
    assert!(remaining_bytes.is_empty());
    wire.extend_from_slice(&c2);
    let mut buf = BytesMut::from(&c2[..]);
    server.handle_input(&mut buf).unwrap();
    assert!(server.poll_output().is_none());

    let (client, results) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    let mut pair = Pair {
        client,
        server,
        wire,
        client_events: Vec::new(),
        server_events: Vec::new(),
    };
    pair.client_results(results);
    let r = pair.client.request_connection(app.to_string()).unwrap();
    pair.client_result(r);
    let r = pair
        .client
        .request_publishing(name.to_string(), PublishRequestType::Live)
        .unwrap();
    pair.client_result(r);
    assert!(
        pair.client_events
            .contains(&ClientSessionEvent::PublishRequestAccepted),
        "{:?}",
        pair.client_events
    );

    let mut meta = ClientMetadata::new();
    meta.video_width = Some(1280);
    meta.video_height = Some(720);
    meta.video_frame_rate = Some(30.0);
    meta.encoder = Some("rml_rtmp test client".into());
    let r = pair.client.publish_metadata(&meta).unwrap();
    pair.client_result(r);
    for (video, ts, body) in media(start) {
        let ts = RtmpTimestamp::new(ts);
        let r = if video {
            pair.client.publish_video_data(Bytes::from(body), ts, false)
        } else {
            pair.client.publish_audio_data(Bytes::from(body), ts, false)
        }
        .unwrap();
        pair.client_result(r);
    }
    let rs = pair.client.stop_publishing().unwrap();
    pair.client_results(rs);
    (pair.wire, pair.server_events, pair.client_events)
}

/// Replays client bytes into a fresh session, split at the given lengths (cycled), accepting
/// publish requests. Returns the events and the final result.
fn replay(wire: &[u8], splits: &[usize]) -> (Vec<SessionEvent>, Result<(), String>) {
    let mut s = ServerSession::new();
    let mut events = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = splits
            .get(i % splits.len().max(1))
            .copied()
            .unwrap_or(usize::MAX)
            .clamp(1, rest.len());
        i += 1;
        let (part, tail) = rest.split_at(n);
        rest = tail;
        let mut buf = BytesMut::from(part);
        let mut r = s.handle_input(&mut buf);
        while let Some(o) = s.poll_output() {
            if let Output::Event(e) = o {
                if let SessionEvent::PublishRequested { request_id, .. } = e {
                    r = r.and(s.accept_publish(request_id));
                }
                events.push(e);
            }
        }
        if let Err(e) = r {
            return (events, Err(e.to_string()));
        }
    }
    (events, Ok(()))
}

fn summary(events: &[SessionEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            SessionEvent::PublishRequested { app, name, .. } => format!("publish {app}/{name}"),
            SessionEvent::PublishFinished { app, name } => format!("finished {app}/{name}"),
            SessionEvent::Metadata(m) => format!("metadata {:?}x{:?}", m.width, m.height),
            SessionEvent::Track(t) => format!("track {:?} {}", t.id(), t.codec_string()),
            SessionEvent::Frame(f) => format!(
                "frame {:?} dts {} pts {} key {} len {}",
                f.track,
                f.dts.ticks(),
                f.pts.ticks(),
                f.keyframe,
                f.data.len()
            ),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_real_client_publishes() {
    let (wire, live_events, client_events) = record_publish("live", "demo", 1000);
    assert!(client_events.contains(&ClientSessionEvent::ConnectionRequestAccepted));
    let s = summary(&live_events);
    assert_eq!(s[0], "publish live/demo");
    assert_eq!(s[1], "metadata Some(1280)xSome(720)");
    assert_eq!(s[2], "track TrackId(1) avc1.64001f");
    assert_eq!(s[3], "track TrackId(2) mp4a.40.2");
    assert_eq!(
        s[4],
        "frame TrackId(1) dts 90000 pts 95940 key true len 5004"
    );
    assert_eq!(s[5], "frame TrackId(2) dts 44321 pts 44321 key true len 3");
    assert_eq!(
        s[6],
        "frame TrackId(1) dts 92970 pts 98910 key false len 205"
    );
    assert_eq!(s.iter().filter(|l| l.starts_with("frame")).count(), 13);
    assert_eq!(s[s.len() - 3], "track TrackId(1) hvc1.1.6.L93.90");
    assert_eq!(
        s[s.len() - 2],
        "frame TrackId(1) dts 108000 pts 108000 key true len 6"
    );
    assert_eq!(s[s.len() - 1], "finished live/demo");

    // Replaying the recorded client bytes gives the same events.
    let (events, r) = replay(&wire, &[usize::MAX]);
    r.unwrap();
    assert_eq!(events, live_events);
}

#[test]
fn extended_timestamps_from_a_real_client() {
    // Timestamps crossing 0xFFFFFF switch the chunk headers to extended timestamps.
    let (wire, live_events, _) = record_publish("live", "ext", 0x00FF_FF00);
    let (events, r) = replay(&wire, &[usize::MAX]);
    r.unwrap();
    assert_eq!(events, live_events);
    let dts: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Frame(f) if f.track == TrackId::VIDEO => Some(f.dts.as_millis()),
            _ => None,
        })
        .collect();
    let start = 0x00FF_FF00;
    assert_eq!(dts[..3], [start, start + 33, start + 66]);
}

#[test]
fn events_do_not_depend_on_where_reads_split_the_input() {
    let (wire, _, _) = record_publish("live", "split", 500);
    let (whole, r) = replay(&wire, &[usize::MAX]);
    r.unwrap();
    // Every split point in two, over the whole stream (~15 KB).
    for cut in 1..wire.len() {
        let (events, r) = replay(&wire, &[cut, usize::MAX]);
        r.unwrap();
        assert!(events == whole, "split at {cut}");
    }
    // Small reads of every size up to 64 bytes.
    for size in 1..64 {
        let (events, r) = replay(&wire, &[size]);
        r.unwrap();
        assert!(events == whole, "reads of {size} bytes");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn events_do_not_depend_on_random_splits(splits in proptest::collection::vec(1usize..3000, 1..40)) {
        thread_local! {
            static WIRE: (Vec<u8>, Vec<SessionEvent>) = {
                let (wire, _, _) = record_publish("live", "random", 0);
                let (events, r) = replay(&wire, &[usize::MAX]);
                r.unwrap();
                (wire, events)
            };
        }
        WIRE.with(|(wire, whole)| {
            let (events, r) = replay(wire, &splits);
            prop_assert!(r.is_ok());
            prop_assert!(&events == whole);
            Ok(())
        })?;
    }

    #[test]
    fn garbage_after_the_handshake_never_panics(garbage in proptest::collection::vec(any::<u8>(), 1..2000), split in 1usize..64) {
        let mut wire = vec![3u8];
        wire.extend_from_slice(&[0; 3072]);
        wire.extend(garbage);
        let _ = replay(&wire, &[split]);
    }

    #[test]
    fn corrupted_publish_streams_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        thread_local! {
            static WIRE: Vec<u8> = record_publish("live", "corrupt", 0).0;
        }
        let mut wire = WIRE.with(Clone::clone);
        for (i, b) in flips {
            let i = i.index(wire.len() - 3073) + 3073;
            wire[i] = b;
        }
        let (events, r) = replay(&wire, &[usize::MAX]);
        // Whatever happens, the same happens when reads are split.
        let (events2, r2) = replay(&wire, &[997]);
        prop_assert!(events == events2);
        prop_assert_eq!(r, r2);
    }
}

#[test]
fn truncated_chunk_header_then_garbage_is_an_error_not_a_panic() {
    let (wire, _, _) = record_publish("live", "t", 0);
    // Cut the stream inside the first chunk header after the handshake and append a chunk on
    // a chunk stream that was never opened.
    let mut bad = wire[..3073 + 5].to_vec();
    bad.extend_from_slice(&[0xc9; 400]);
    let (_, r) = replay(&bad, &[usize::MAX]);
    let e = r.unwrap_err();
    assert!(
        e.contains("chunk") || e.contains("message") || e.contains("AMF0") || e.contains("command"),
        "{e}"
    );
}

/// Writes the fuzz seed corpora (run with `ZEROCAST_WRITE_FUZZ_SEEDS=1`). The seeds are
/// committed; rerun this when the input formats in `fuzz/fuzz_targets/*.rs` change.
#[test]
fn write_fuzz_seeds() {
    if std::env::var_os("ZEROCAST_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let rtmp = root.join("rtmp_session");
    let flv = root.join("flv_tag");
    std::fs::create_dir_all(&rtmp).unwrap();
    std::fs::create_dir_all(&flv).unwrap();

    // rtmp_session: [split seed: 2 bytes][client bytes].
    let (wire, _, _) = record_publish("live", "demo", 0);
    let with = |seed: [u8; 2], bytes: &[u8]| {
        let mut v = seed.to_vec();
        v.extend_from_slice(bytes);
        v
    };
    // Reads of up to 4096, 128 and 16 bytes (see the target for the prefix).
    let seeds: [(&str, [u8; 2], &[u8]); 3] = [
        ("seed-publish", [0x0c, 0x5a], &wire),
        ("seed-publish-split", [0x07, 0x11], &wire[..8000]),
        ("seed-handshake", [0x04, 0x01], &wire[..3073]),
    ];
    for (name, prefix, bytes) in seeds {
        std::fs::write(rtmp.join(name), with(prefix, bytes)).unwrap();
    }

    // flv_tag: records of [flags: bit 0 video][timestamp u32 BE][len u16 BE][body].
    let record = |video: bool, ts: u32, body: &[u8]| {
        let mut v = vec![u8::from(video)];
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    };
    let mut avc = Vec::new();
    for (video, ts, body) in media(0) {
        avc.extend(record(video, ts, &body[..body.len().min(600)]));
    }
    std::fs::write(flv.join("seed-avc-aac-hevc"), avc).unwrap();
    let mut av1 = record(
        true,
        0,
        &ex_video(
            1,
            0,
            None,
            b"av01",
            None,
            zerocast_ingest::flv::encode::AV1_RECORD,
        ),
    );
    av1.extend(record(
        true,
        33,
        &ex_video(1, 1, None, b"av01", None, &[0x12, 0, 0x32, 1, 0]),
    ));
    av1.extend(record(
        true,
        66,
        &ex_video(2, 3, Some(&[0, 1, 2]), b"av01", None, &[0x32, 1, 0]),
    ));
    std::fs::write(flv.join("seed-av1-modex"), av1).unwrap();
    let mut ex_audio = record(
        false,
        0,
        &zerocast_ingest::flv::encode::ex_audio(0, None, b"mp4a", AAC_CONFIG),
    );
    ex_audio.extend(record(
        false,
        23,
        &zerocast_ingest::flv::encode::ex_audio(1, None, b"mp4a", b"raw"),
    ));
    ex_audio.extend(record(false, 46, &[0x2f, 0xff, 0xfb]));
    std::fs::write(flv.join("seed-ex-audio-mp3"), ex_audio).unwrap();
}

#[test]
fn session_errors_are_send_and_sync() {
    fn check<T: Send + Sync + std::error::Error + 'static>() {}
    check::<SessionError>();
    let _ = TrackKind::Video;
}
