//! DASH from the LL-HLS chunks: the MPD read as a player reads it (an XML parser, the
//! DASH-IF live timing rules), checked against the server's clock and the media it names;
//! ffmpeg reading it for H.264, HEVC and AV1; Periods at a publisher reconnect and a static MPD
//! once the stream ended.
//!
//! The browsers (dash.js and Shaka Player in Chromium) are in `browser.rs`.

// Tests print what they measured; that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use zerocast_packager::{dash, Pdt};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const NS: &str = "urn:mpeg:dash:schema:mpd:2011";

/// An MPD as a player sees it.
#[derive(Debug)]
struct Mpd {
    dynamic: bool,
    /// `availabilityStartTime`, Unix ms (dynamic only).
    ast_ms: Option<i64>,
    publish_ms: i64,
    periods: Vec<Period>,
    utc_timing: Option<String>,
    /// `mediaPresentationDuration`, seconds (static only).
    duration: Option<f64>,
}

#[derive(Debug)]
struct Period {
    id: String,
    start: f64,
    sets: Vec<Set>,
}

/// An AdaptationSet with its one Representation and SegmentTemplate.
#[derive(Debug, Clone)]
struct Set {
    content_type: String,
    mime: String,
    codecs: String,
    bandwidth: u64,
    timescale: u64,
    pto: u64,
    start_number: u64,
    ato: f64,
    init: String,
    media: String,
    /// `(t, d)` of every segment, `r` expanded.
    segments: Vec<(u64, u64)>,
}

impl Set {
    fn number(&self, i: usize) -> u64 {
        self.start_number + i as u64
    }

    fn url(&self, template: &str, number: u64) -> String {
        template.replace("$Number$", &number.to_string())
    }

    /// When segment `i` becomes available (DASH-IF IOP: its end on the wall clock, minus
    /// `availabilityTimeOffset`), Unix ms.
    fn available_ms(&self, mpd: &Mpd, period: &Period, i: usize) -> i64 {
        let (t, d) = self.segments[i];
        let end = (t + d - self.pto) as f64 / self.timescale as f64;
        mpd.ast_ms.unwrap() + ((period.start + end - self.ato) * 1000.0).round() as i64
    }
}

/// Unix ms of a UTC date-time (`…Z`: the server writes no other zone).
fn parse_date(s: &str) -> i64 {
    assert!(s.ends_with('Z'), "not UTC: {s}");
    Pdt::parse_us(s).unwrap_or_else(|| panic!("not a date-time: {s}")) / 1000
}

/// Seconds of `PTnS` (the only form the server writes; anything else fails the test).
fn parse_duration(s: &str) -> f64 {
    assert!(
        s.starts_with("PT") && s.ends_with('S'),
        "unexpected duration {s:?}"
    );
    dash::parse_duration(s)
        .unwrap_or_else(|| panic!("unexpected duration {s:?}"))
        .as_secs_f64()
}

/// The child elements of `n` named `name`.
fn el<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Vec<roxmltree::Node<'a, 'i>> {
    n.children()
        .filter(|c| c.is_element() && c.tag_name().name() == name)
        .collect()
}

/// Parses the MPD, asserting the structure ISO/IEC 23009-1 requires of what the server uses.
fn parse_mpd(text: &str) -> Mpd {
    let doc = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "MPD");
    assert_eq!(root.tag_name().namespace(), Some(NS));
    assert!(root
        .attribute("profiles")
        .unwrap()
        .contains("urn:mpeg:dash:profile:isoff-live:2011"));
    let dynamic = match root.attribute("type") {
        Some("dynamic") => true,
        Some("static") => false,
        t => panic!("type {t:?}"),
    };
    parse_duration(
        root.attribute("minBufferTime")
            .expect("minBufferTime is required"),
    );
    if dynamic {
        for a in [
            "availabilityStartTime",
            "minimumUpdatePeriod",
            "timeShiftBufferDepth",
            "suggestedPresentationDelay",
        ] {
            assert!(root.attribute(a).is_some(), "dynamic MPD without {a}");
        }
        parse_duration(root.attribute("minimumUpdatePeriod").unwrap());
        parse_duration(root.attribute("timeShiftBufferDepth").unwrap());
    } else {
        assert!(root.attribute("availabilityStartTime").is_none());
        assert!(root.attribute("minimumUpdatePeriod").is_none());
    }
    // Element order of MPDtype: ServiceDescription before Period, UTCTiming after.
    let order: Vec<&str> = root
        .children()
        .filter(|c| c.is_element())
        .map(|c| c.tag_name().name())
        .collect();
    let rank = |n: &str| match n {
        "ServiceDescription" => 0,
        "Period" => 1,
        "UTCTiming" => 2,
        other => panic!("unexpected MPD child {other}"),
    };
    assert!(
        order.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
        "{order:?}"
    );
    if dynamic {
        let sd = el(root, "ServiceDescription");
        assert_eq!(sd.len(), 1, "low-latency MPD has a ServiceDescription");
        let lat = el(sd[0], "Latency")[0];
        let target: u64 = lat.attribute("target").unwrap().parse().unwrap();
        assert!((500..=5000).contains(&target), "latency target {target}");
        let rate = el(sd[0], "PlaybackRate")[0];
        let (lo, hi): (f64, f64) = (
            rate.attribute("min").unwrap().parse().unwrap(),
            rate.attribute("max").unwrap().parse().unwrap(),
        );
        assert!(lo < 1.0 && hi > 1.0);
    }
    let mut periods = Vec::new();
    for p in el(root, "Period") {
        let mut sets = Vec::new();
        for a in el(p, "AdaptationSet") {
            let reps = el(a, "Representation");
            assert_eq!(reps.len(), 1, "one Representation per AdaptationSet");
            let rep = reps[0];
            let tpl = el(a, "SegmentTemplate")[0];
            let timeline = el(tpl, "SegmentTimeline")[0];
            let mut segments = Vec::new();
            let mut next = None;
            for s in el(timeline, "S") {
                let t = s
                    .attribute("t")
                    .map(|t| t.parse::<u64>().unwrap())
                    .or(next)
                    .expect("the first S has @t");
                let d: u64 = s.attribute("d").unwrap().parse().unwrap();
                let r: u64 = s.attribute("r").map_or(0, |r| r.parse().unwrap());
                for k in 0..=r {
                    segments.push((t + k * d, d));
                }
                next = Some(t + (r + 1) * d);
            }
            let content_type = a.attribute("contentType").unwrap().to_owned();
            if content_type == "video" {
                for at in ["width", "height", "frameRate"] {
                    assert!(
                        rep.attribute(at).or(a.attribute(at)).is_some(),
                        "video without @{at}"
                    );
                }
            } else {
                assert_eq!(content_type, "audio");
                assert!(rep.attribute("audioSamplingRate").is_some());
                let acc = el(a, "AudioChannelConfiguration");
                assert_eq!(acc.len(), 1, "audio channel configuration");
            }
            sets.push(Set {
                content_type,
                mime: a.attribute("mimeType").unwrap().to_owned(),
                codecs: rep.attribute("codecs").unwrap().to_owned(),
                bandwidth: rep.attribute("bandwidth").unwrap().parse().unwrap(),
                timescale: tpl.attribute("timescale").unwrap().parse().unwrap(),
                pto: tpl
                    .attribute("presentationTimeOffset")
                    .map_or(0, |v| v.parse().unwrap()),
                start_number: tpl.attribute("startNumber").unwrap().parse().unwrap(),
                ato: tpl
                    .attribute("availabilityTimeOffset")
                    .map_or(0.0, |v| v.parse().unwrap()),
                init: tpl.attribute("initialization").unwrap().to_owned(),
                media: tpl.attribute("media").unwrap().to_owned(),
                segments,
            });
        }
        periods.push(Period {
            id: p
                .attribute("id")
                .expect("Period@id (required in a dynamic MPD)")
                .to_owned(),
            start: parse_duration(p.attribute("start").unwrap()),
            sets,
        });
    }
    Mpd {
        dynamic,
        ast_ms: root.attribute("availabilityStartTime").map(parse_date),
        publish_ms: parse_date(root.attribute("publishTime").unwrap()),
        utc_timing: el(root, "UTCTiming")
            .first()
            .map(|u| u.attribute("value").unwrap().to_owned()),
        duration: root
            .attribute("mediaPresentationDuration")
            .map(parse_duration),
        periods,
    }
}

fn mpd(server: &Server, name: &str) -> (Mpd, String) {
    let r = server.get(&format!("/live/{name}/index.mpd"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/dash+xml"));
    let text = r.text();
    (parse_mpd(&text), text)
}

fn server_now(server: &Server) -> i64 {
    let r = server.get("/time");
    assert_eq!(r.status, 200);
    parse_date(r.text().trim())
}

/// `tfdt` of the first `moof` in `bytes`.
fn first_tfdt(bytes: &[u8]) -> u64 {
    let at = bytes
        .windows(4)
        .position(|w| w == b"tfdt")
        .expect("a tfdt box");
    let version = bytes[at + 4];
    if version == 1 {
        u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap())
    } else {
        u64::from(u32::from_be_bytes(
            bytes[at + 8..at + 12].try_into().unwrap(),
        ))
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

#[test]
fn mpd_describes_the_live_segments_on_the_server_clock() {
    let _g = serial();
    let server = Server::start("auto", &["--part-target", "200"]);
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("d"), 30, "640x360");
    let hls = server.wait_live("d", Duration::from_secs(15));
    // Three complete segments in the window.
    std::thread::sleep(Duration::from_secs(6));

    let (m, text) = mpd(&server, "d");
    println!("{text}");
    let now = server_now(&server);
    let local = zerocast_social::now_ms() as i64;
    assert!((now - local).abs() < 1000, "/time is the server's clock");
    assert!(m.dynamic);
    assert!(m.publish_ms <= now, "publishTime in the future");
    let utc = m.utc_timing.as_deref().unwrap();
    assert!(
        utc.starts_with("http://127.0.0.1") && utc.ends_with("/time"),
        "UTCTiming {utc}"
    );
    assert!(text.contains(r#"availabilityTimeComplete="false""#));
    assert_eq!(m.periods.len(), 1, "{text}");
    let p = &m.periods[0];
    assert_eq!(p.sets.len(), 2, "one AdaptationSet per track: {text}");
    let (video, audio) = (&p.sets[0], &p.sets[1]);
    assert_eq!(
        (video.content_type.as_str(), video.mime.as_str()),
        ("video", "video/mp4")
    );
    assert!(video.codecs.starts_with("avc1.64"), "{}", video.codecs);
    assert_eq!(audio.mime, "audio/mp4");
    assert_eq!(audio.codecs, "mp4a.40.2");
    assert!(video.bandwidth > audio.bandwidth && audio.bandwidth > 0);

    let hls_text = server.get(&hls).text();
    for set in [video, audio] {
        // Gapless, numbered like the LL-HLS media sequence, and the same window.
        assert!(set.segments.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        assert!(set.ato > 0.0);
        let first = set.number(0);
        assert!(
            hls_text.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{first}\n")),
            "startNumber {first} vs\n{hls_text}"
        );
        // Every segment available by the server's clock is fetchable, the newest included;
        // at most one announced segment (the next one) is not available yet.
        let available: Vec<usize> = (0..set.segments.len())
            .filter(|&i| set.available_ms(&m, p, i) <= now)
            .collect();
        let newest = *available.last().expect("an available segment");
        assert!(
            set.segments.len() - available.len() <= 1,
            "{} announced, {} available at {now}",
            set.segments.len(),
            available.len()
        );
        let init = server.get(&format!("/live/d/{}", set.init));
        assert_eq!(init.status, 200);
        assert_eq!(count(&init.body, b"trak"), 1, "one track per init segment");
        for i in [0, newest] {
            let url = format!("/live/d/{}", set.url(&set.media, set.number(i)));
            let seg = server.get(&url);
            assert_eq!(seg.status, 200, "{url}");
            // The MPD's timeline is the media's: S@t is the first fragment's decode time.
            let tfdt = first_tfdt(&seg.body) as f64;
            let track_scale = if set.content_type == "video" {
                90_000.0
            } else {
                48_000.0
            };
            let err = (tfdt / track_scale - set.segments[i].0 as f64 / set.timescale as f64).abs();
            assert!(
                err <= 1024.0 / 48_000.0 + 0.001,
                "{url}: tfdt {tfdt} vs S@t {} ({err} s)",
                set.segments[i].0
            );
            assert!(
                count(&seg.body, b"moof") >= 1
                    && count(&seg.body, b"traf") == count(&seg.body, b"moof")
            );
        }
        // A segment from far in the future, and names that are no track, answer 404 at once.
        let far = set.url(&set.media, set.number(set.segments.len()) + 5);
        let t = Instant::now();
        assert_eq!(server.get(&format!("/live/d/{far}")).status, 404);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    let base = video.init.rsplit_once('/').unwrap().0;
    for bad in ["t9-seg1.m4s", "tx-seg1.m4s", "t1-part1.m4s", "t-init1.mp4"] {
        assert_eq!(
            server.get(&format!("/live/d/{base}/{bad}")).status,
            404,
            "{bad}"
        );
    }

    // The segment after the newest one is answered when it starts, chunk by chunk: the
    // response starts before the segment is complete.
    let next = video.number(video.segments.len());
    let t = Instant::now();
    let r = server.get(&format!("/live/d/{}", video.url(&video.media, next)));
    assert_eq!(r.status, 200);
    assert!(
        r.chunked,
        "a segment being written is sent with chunked transfer"
    );
    println!("segment {next} (not yet announced) took {:?}", t.elapsed());

    // DASH and LL-HLS agree on wall-clock times: Period start + media time = the segment's
    // EXT-X-PROGRAM-DATE-TIME, for every segment both list (the playlist was read right after
    // the MPD).
    let mut agreed = 0;
    for (i, &(t, _)) in video.segments.iter().enumerate() {
        let msn = video.number(i);
        let Some(pdt) = pdt_of(&hls_text, msn) else {
            continue;
        };
        let dash_ms = m.ast_ms.unwrap() as f64
            + (p.start + (t - video.pto) as f64 / video.timescale as f64) * 1000.0;
        assert!(
            (dash_ms - pdt as f64).abs() <= 1.5,
            "segment {msn}: DASH {dash_ms} ms, HLS {pdt} ms"
        );
        agreed += 1;
    }
    assert!(
        agreed >= 2,
        "only {agreed} segments in both:\n{text}\n{hls_text}"
    );
    // The publisher stops (and may come back): the next segment is waited for at most
    // `block-limit` target durations, then a 503 says "try again", as a blocking reload does.
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    std::thread::sleep(Duration::from_millis(300));
    let (m, _) = mpd(&server, "d");
    let v = &m.periods[0].sets[0];
    let next = v.url(&v.media, v.number(v.segments.len()));
    let r = server.get(&format!("/live/d/{next}"));
    assert_eq!(r.status, 503, "{}", r.text());
}

/// `EXT-X-PROGRAM-DATE-TIME` (Unix ms) of segment `msn` in a media playlist.
fn pdt_of(playlist: &str, msn: u64) -> Option<i64> {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?
        .parse()
        .ok()?;
    let mut n = first;
    let mut pdt = None;
    for l in playlist.lines() {
        if let Some(d) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = Some(parse_date(d));
        }
        if l.starts_with("#EXTINF") {
            if n == msn {
                return pdt;
            }
            n += 1;
            pdt = None;
        }
    }
    None
}

/// Waits for the MPD to turn static (the stream ended), returns it.
fn wait_static(server: &Server, name: &str) -> (Mpd, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (m, text) = mpd(server, name);
        if !m.dynamic {
            return (m, text);
        }
        assert!(Instant::now() < deadline, "MPD still dynamic:\n{text}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `ffmpeg -i URL.mpd -c copy`: no warning, and the frames of each stream by codec.
fn ffmpeg_copy(url: &str, tag: &str) -> Vec<(String, u64)> {
    let dir = TempDir::new(tag);
    let out = dir.0.join("copy.mp4");
    let run = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "warning", "-i", url])
        .args(["-map", "0", "-c", "copy", "-y"])
        .arg(&out)
        .output()
        .expect("ffmpeg is installed (scripts/setup.sh)");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "ffmpeg failed: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg warnings: {stderr}");
    let (streams, probe_err) = ffprobe_count(out.to_str().unwrap());
    assert!(probe_err.trim().is_empty(), "{probe_err}");
    streams
}

/// Enhanced RTMP captures (HEVC, AV1, both with AAC) and an ffmpeg H.264 publish: each gives
/// an MPD with the codec signalled as in the init segment, which ffmpeg copies without a
/// warning once the stream ended (the MPD is then static, with its duration).
#[test]
fn ffmpeg_copies_the_dash_of_h264_hevc_and_av1() {
    let _g = serial();
    let server = Server::start("auto", &["--reconnect-grace", "1000"]);
    let mut ff = ffmpeg_publish(&server.rtmp_url("h264"), 4, "640x360");
    let cases = [
        ("h264", None, "avc1.", "h264"),
        ("hevc", Some("ffmpeg9_hevc_aac.flv"), "hvc1.", "hevc"),
        ("av1", Some("ffmpeg9_av1_aac.flv"), "av01.", "av1"),
    ];
    for (name, capture, codec, decoder) in cases {
        let publisher = capture.map(|file| {
            let path = repo_root().join("testdata").join(file);
            let port = server.rtmp;
            std::thread::spawn(move || publish_flv(port, name, &path))
        });
        server.wait_live(name, Duration::from_secs(15));
        let (live, text) = mpd(&server, name);
        assert!(live.dynamic);
        let video = &live.periods[0].sets[0];
        assert!(video.codecs.starts_with(codec), "{text}");
        match publisher {
            Some(p) => p.join().unwrap().expect("publish the capture"),
            None => assert!(ff.wait().unwrap().success()),
        }
        let (ended, text) = wait_static(&server, name);
        assert!(ended.duration.unwrap() > 3.0, "{text}");
        assert!(ended.utc_timing.is_none() && !text.contains("availabilityTimeOffset"));
        let streams = ffmpeg_copy(&server.url(&format!("/live/{name}/index.mpd")), name);
        println!("{name}: {streams:?}");
        let frames = streams.iter().find(|s| s.0 == decoder).map_or(0, |s| s.1);
        // About 4 s at 30 fps (the last frames of the capture may be in no segment).
        assert!((90..=125).contains(&frames), "{name}: {streams:?}");
        assert!(
            streams.iter().any(|s| s.0 == "aac" && s.1 > 100),
            "{streams:?}"
        );
    }
}

/// A publisher that reconnects within the grace window starts a new Period, which keeps its
/// id and start while the stream goes on; the ended stream's static MPD holds both.
#[test]
fn a_reconnect_starts_a_period_and_the_end_makes_the_mpd_static() {
    let _g = serial();
    let server = Server::start("auto", &["--reconnect-grace", "4000"]);
    let mut first = ffmpeg_publish(&server.rtmp_url("re"), 5, "320x240");
    server.wait_live("re", Duration::from_secs(15));
    first.wait().unwrap();
    // While the publisher is away, the MPD announces nothing past the last complete segment
    // (the newest listed one is whole), and a request for the next number, held until the
    // publisher returns, is refused: that number starts a new Period.
    std::thread::sleep(Duration::from_millis(300));
    let (away, text) = mpd(&server, "re");
    let v = &away.periods[0].sets[0];
    let newest = v.number(v.segments.len() - 1);
    let url = format!("/live/re/{}", v.url(&v.media, newest));
    let r = server.get(&url);
    assert!(r.status == 200 && !r.chunked, "{url} is complete:\n{text}");
    let next = format!("/live/re/{}", v.url(&v.media, newest + 1));
    let port = server.http;
    let held = std::thread::spawn(move || http_get(port, &next, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(300));
    let mut second = ffmpeg_publish(&server.rtmp_url("re"), 6, "320x240");
    let held = held.join().unwrap().unwrap();
    assert_eq!(
        held.status, 404,
        "the old Period's next number is not the new Period's media"
    );
    std::thread::sleep(Duration::from_secs(4));
    let (m, text) = mpd(&server, "re");
    assert_eq!(m.periods.len(), 2, "{text}");
    let (p0, p1) = (&m.periods[0], &m.periods[1]);
    assert_ne!(p0.id, p1.id);
    let end0 = {
        let v = &p0.sets[0];
        let (t, d) = *v.segments.last().unwrap();
        p0.start + (t + d - v.pto) as f64 / v.timescale as f64
    };
    // The second Period starts after the first one's end: the outage (on the wall clock).
    assert!(p1.start >= end0 - 0.001, "{text}");
    assert_eq!(
        p1.sets[0].number(0),
        p0.sets[0].number(p0.sets[0].segments.len())
    );
    std::thread::sleep(Duration::from_secs(1));
    let (later, text2) = mpd(&server, "re");
    let same = later.periods.iter().find(|p| p.id == p1.id).expect(&text2);
    assert_eq!(
        same.start, p1.start,
        "a Period keeps its start between updates"
    );
    assert!(second.wait().unwrap().success());
    let (ended, text) = wait_static(&server, "re");
    assert_eq!(ended.periods.len(), 2, "{text}");
    // Every segment of both Periods is there, in both tracks.
    let mut segments = 0;
    for p in &ended.periods {
        for set in &p.sets {
            for i in 0..set.segments.len() {
                let url = format!("/live/re/{}", set.url(&set.media, set.number(i)));
                assert_eq!(server.get(&url).status, 200, "{url}");
                segments += 1;
            }
        }
    }
    // ffmpeg's DASH demuxer reads one Period of a multi-Period MPD (the last one): the second
    // publisher's 6 s. It must do so without a warning.
    let streams = ffmpeg_copy(&server.url("/live/re/index.mpd"), "re");
    let frames = streams.iter().find(|s| s.0 == "h264").map_or(0, |s| s.1);
    println!("static MPD: {segments} segments fetched; ffmpeg copied {streams:?}");
    assert!(
        (150..=185).contains(&frames),
        "6 s of video at 30 fps: {streams:?}"
    );
}

/// A private stream's MPD needs the playback token, and carries it in every URL it lists, so
/// a stock player needs nothing more than the MPD URL.
#[test]
fn a_private_stream_mpd_carries_the_token_into_every_url() {
    let _g = serial();
    let server = Server::start("auto", &[]);
    let (key, token) = private_stream(&server, "secret");
    let mut ff = ffmpeg_publish(
        &server.rtmp_url(&format!("secret?key={key}")),
        10,
        "320x240",
    );
    server.wait_live_with(
        "secret",
        &format!("?token={token}"),
        Duration::from_secs(15),
    );
    assert_eq!(server.get("/live/secret/index.mpd").status, 403);
    let r = server.get(&format!("/live/secret/index.mpd?token={token}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let m = parse_mpd(&r.text());
    let set = &m.periods[0].sets[0];
    let suffix = format!("?token={token}");
    assert!(
        set.init.ends_with(&suffix) && set.media.ends_with(&suffix),
        "{set:?}"
    );
    assert_eq!(
        server.get(&format!("/live/secret/{}", set.init)).status,
        200
    );
    let seg = set.url(&set.media, set.number(0));
    assert_eq!(server.get(&format!("/live/secret/{seg}")).status, 200);
    let bare = seg.split_once('?').unwrap().0;
    assert_eq!(server.get(&format!("/live/secret/{bare}")).status, 403);
    let _ = ff.kill();
    let _ = ff.wait();
}
