//! TLS delivery with real peers: ffmpeg publishing over RTMPS, curl over HTTP/2, aioquic over
//! HTTP/3, ffprobe over HTTPS, and a certificate swapped under a live HTTP/2 connection.
//!
//! Needs `scripts/setup.sh` (ffmpeg, curl, python3 with aioquic). Missing tools fail the tests.

// Tests print what they measured; that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn start_tls() -> (TlsServer, String) {
    let s = TlsServer::start("certs", &[], &[]);
    let pin = s.pin.clone();
    (s, pin)
}

/// One curl transfer: (HTTP version, status, headers, body).
struct Curl {
    version: String,
    status: u16,
    headers: String,
    body: Vec<u8>,
}

fn curl(args: &[&str], url: &str) -> Curl {
    let dir = TempDir::new("curl");
    let headers = dir.0.join("h");
    let body = dir.0.join("b");
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "20"])
        .args(args)
        .arg("-D")
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_version} %{http_code}"])
        .arg(url)
        .output()
        .expect("curl is installed");
    let w = String::from_utf8_lossy(&out.stdout).into_owned();
    let (version, status) = w.split_once(' ').unwrap_or(("", "0"));
    Curl {
        version: version.to_owned(),
        status: status.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&headers).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

/// GETs `paths` in turn over one HTTP/3 connection with aioquic (`tests/h3/get.py`) to the
/// HTTPS port's UDP twin; one JSON answer per path.
fn h3_get(port: u16, paths: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/h3/get.py"))
        .args(["--connect", &format!("127.0.0.1:{port}"), "--insecure"])
        .args(paths)
        .output()
        .expect("python3 is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "HTTP/3 client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `(msn, part)` of the preload hint in a media playlist, and the hinted part's URI.
fn hint(playlist: &str) -> (u64, u64, String) {
    let msn: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("media sequence");
    // Segments (and the parts of the segment in progress) after the media sequence number.
    let segments = playlist
        .lines()
        .filter(|l| l.starts_with("#EXTINF"))
        .count() as u64;
    let mut parts_in_open = 0;
    for l in playlist.lines() {
        if l.starts_with("#EXTINF") {
            parts_in_open = 0;
        } else if l.starts_with("#EXT-X-PART:") {
            parts_in_open += 1;
        }
    }
    let uri = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .and_then(|v| v.split('"').next())
        .expect("preload hint")
        .to_owned();
    (msn + segments, parts_in_open, uri)
}

fn is_fmp4_fragment(body: &[u8]) -> bool {
    body.len() > 8 && (&body[4..8] == b"moof" || &body[4..8] == b"styp")
}

#[test]
fn rtmps_in_h2_and_h3_out() {
    let (s, _pin) = start_tls();
    // Long enough for the checks below; ffprobe then reads the stream to its end.
    let mut ffmpeg = ffmpeg_publish(
        &format!("rtmps://127.0.0.1:{}/live/secure", s.rtmps),
        25,
        "320x240",
    );
    let media = s.server.wait_live("secure", Duration::from_secs(20));
    let base = media.trim_end_matches("stream.m3u8").to_owned();

    // HTTP/2 with curl: multivariant, media playlist, a complete part, the hinted part
    // (streamed while written) and a blocking reload; every response announces HTTP/3.
    let mv = curl(&["--http2"], &s.https_url("/live/secure/index.m3u8"));
    let pl = curl(&["--http2"], &s.https_url(&media));
    let text = String::from_utf8_lossy(&pl.body).into_owned();
    let (msn, part, hinted) = hint(&text);
    let complete = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .filter_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
        .next_back()
        .expect("a listed part")
        .to_owned();
    let part_ok = curl(&["--http2"], &s.https_url(&format!("{base}{complete}")));
    let hinted_part = curl(&["--http2"], &s.https_url(&format!("{base}{hinted}")));
    let started = Instant::now();
    let blocked = curl(
        &["--http2"],
        &s.https_url(&format!("{media}?_HLS_msn={msn}&_HLS_part={part}")),
    );
    println!(
        "h2: blocking reload for {msn}.{part} answered after {:?}",
        started.elapsed()
    );
    let port = s.https;
    for (what, r) in [
        ("multivariant", &mv),
        ("media playlist", &pl),
        ("part", &part_ok),
        ("hinted part", &hinted_part),
        ("blocking reload", &blocked),
    ] {
        assert_eq!(r.version, "2", "{what} over HTTP/2: {}", r.headers);
        assert_eq!(r.status, 200, "{what}: {}", r.headers);
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains(&format!("alt-svc: h3=\":{port}\"")),
            "{what} announces HTTP/3: {}",
            r.headers
        );
    }
    assert!(is_fmp4_fragment(&part_ok.body));
    // HEAD: the headers (with the length) and no body; OPTIONS: the CORS preflight.
    let head = curl(
        &["--http2", "-I"],
        &s.https_url(&format!("{base}{complete}")),
    );
    assert_eq!(
        (head.version.as_str(), head.status),
        ("2", 200),
        "{}",
        head.headers
    );
    assert!(
        head.headers
            .to_ascii_lowercase()
            .contains(&format!("content-length: {}", part_ok.body.len())),
        "{}",
        head.headers
    );
    // (with -I, curl writes the head where the body would go: nothing else came)
    assert!(head.body.starts_with(b"HTTP/2 200"));
    let preflight = curl(&["--http2", "-X", "OPTIONS"], &s.https_url(&media));
    assert_eq!(preflight.status, 204);
    assert!(preflight
        .headers
        .to_ascii_lowercase()
        .contains("access-control-allow-origin: *"));
    assert!(is_fmp4_fragment(&hinted_part.body));
    let reloaded = String::from_utf8_lossy(&blocked.body);
    assert!(
        reloaded.contains(&hinted),
        "the blocking reload lists the part that was hinted:\n{reloaded}"
    );

    // HTTP/3 with aioquic, one QUIC connection: the same routes.
    let pl = curl(&["--http2"], &s.https_url(&media));
    let (msn, part, hinted) = hint(&String::from_utf8_lossy(&pl.body));
    let blocking = format!("{media}?_HLS_msn={msn}&_HLS_part={part}");
    let hinted_path = format!("{base}{hinted}");
    let answers = h3_get(
        s.https,
        &[
            "/live/secure/index.m3u8",
            media.as_str(),
            hinted_path.as_str(),
            blocking.as_str(),
        ],
    );
    assert_eq!(answers.len(), 4, "{answers:?}");
    for a in &answers {
        assert_eq!(a["alpn"], "h3", "{a}");
        assert_eq!(a["status"], 200, "{a}");
    }
    assert!(answers[0]["body"]
        .as_str()
        .unwrap()
        .contains("#EXT-X-STREAM-INF"));
    assert!(answers[1]["body"].as_str().unwrap().contains("#EXT-X-PART"));
    let head = answers[2]["head_hex"].as_str().unwrap();
    assert!(
        head.get(8..16) == Some("6d6f6f66") || head.get(8..16) == Some("73747970"),
        "the hinted part is an fMP4 fragment: {head}"
    );
    assert!(answers[2]["length"].as_u64().unwrap() > 100);
    assert!(answers[3]["body"].as_str().unwrap().contains(&hinted));
    println!(
        "h3: hinted part {} bytes in {} DATA frames, {} ms; blocking reload {} ms",
        answers[2]["length"], answers[2]["data_frames"], answers[2]["ms"], answers[3]["ms"]
    );

    // ffprobe decodes the stream over HTTPS (HTTP/1.1 over TLS), to its end.
    let (streams, err) = ffprobe_count(&s.https_url("/live/secure/index.m3u8"));
    assert!(
        streams.iter().any(|(c, n)| c == "h264" && *n > 0)
            && streams.iter().any(|(c, n)| c == "aac" && *n > 0),
        "ffprobe over HTTPS: {streams:?} {err}"
    );
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
}

/// `(EPOCH, number after the newest)` of an MPD's video AdaptationSet: the segment a
/// low-latency player asks for next (announced soon, and then still being written).
fn dash_next(mpd: &str) -> (String, u64) {
    let init = mpd.split("initialization=\"").nth(1).unwrap();
    let epoch = init.split('/').next().unwrap().to_owned();
    let start: u64 = mpd
        .split("startNumber=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The first SegmentTimeline is video's: every S is 1 + r segments.
    let timeline = mpd.split("</SegmentTimeline>").next().unwrap();
    let count: u64 = timeline
        .split("<S ")
        .skip(1)
        .map(|s| {
            1 + s
                .split("r=\"")
                .nth(1)
                .map_or(0, |r| r.split('"').next().unwrap().parse::<u64>().unwrap())
        })
        .sum();
    (epoch, start + count)
}

/// LL-DASH over HTTP/2 and HTTP/3: the MPD points its clock at the HTTPS listener, and the
/// segment after the newest one is waited for and then sent as it is written (several DATA
/// frames on HTTP/3).
#[test]
fn dash_over_h2_and_h3() {
    let (s, _pin) = start_tls();
    let mut ffmpeg = ffmpeg_publish(&s.server.rtmp_url("dash"), 30, "320x240");
    s.server.wait_live("dash", Duration::from_secs(20));
    let mpd = curl(&["--http2"], &s.https_url("/live/dash/index.mpd"));
    assert_eq!((mpd.version.as_str(), mpd.status), ("2", 200));
    let text = String::from_utf8_lossy(&mpd.body).into_owned();
    assert!(
        text.contains(&format!("value=\"https://127.0.0.1:{}/time\"", s.https)),
        "UTCTiming on the listener the MPD came from:\n{text}"
    );
    let (epoch, next) = dash_next(&text);
    let seg = curl(
        &["--http2"],
        &s.https_url(&format!("/live/dash/{epoch}/t1-seg{next}.m4s")),
    );
    assert_eq!((seg.version.as_str(), seg.status), ("2", 200));
    assert!(is_fmp4_fragment(&seg.body) && seg.body.len() > 1000);

    let mpd = curl(&["--http2"], &s.https_url("/live/dash/index.mpd"));
    let (epoch, next) = dash_next(&String::from_utf8_lossy(&mpd.body));
    let segment = format!("/live/dash/{epoch}/t2-seg{next}.m4s");
    let answers = h3_get(s.https, &["/live/dash/index.mpd", &segment]);
    assert_eq!(answers.len(), 2, "{answers:?}");
    for a in &answers {
        assert_eq!(
            (a["alpn"].as_str(), a["status"].as_u64()),
            (Some("h3"), Some(200)),
            "{a}"
        );
    }
    assert!(answers[0]["body"].as_str().unwrap().contains("<MPD"));
    let frames = answers[1]["data_frames"].as_u64().unwrap();
    println!(
        "h3: audio segment {next}: {} bytes in {frames} DATA frames, {} ms",
        answers[1]["length"], answers[1]["ms"]
    );
    assert!(
        frames > 5,
        "sent as it was written, not at once: {frames} DATA frames"
    );
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
}

#[test]
fn certificate_reload_keeps_live_connections() {
    let (s, old_pin) = start_tls();
    let mut ffmpeg = ffmpeg_publish(&s.server.rtmp_url("reload"), 60, "320x240");
    let media = s.server.wait_live("reload", Duration::from_secs(20));
    let pinned = |pin: &str| {
        Command::new("curl")
            .args([
                "-sS",
                "-k",
                "--http2",
                "-o",
                "/dev/null",
                "--max-time",
                "10",
            ])
            .arg("--pinnedpubkey")
            .arg(format!("sha256//{pin}"))
            .arg(s.https_url("/api/streams"))
            .status()
            .unwrap()
            .success()
    };
    assert!(pinned(&old_pin), "the first certificate is served");

    // One HTTP/2 connection making blocking reloads, one part after another, for ~3 s.
    let pl = curl(&["--http2"], &s.https_url(&media));
    let (msn, part, _) = hint(&String::from_utf8_lossy(&pl.body));
    let mut urls = Vec::new();
    let parts_per_segment = 10; // 2 s segments of 200 ms parts
    for i in 0..15u64 {
        let n = part + i;
        urls.push(s.https_url(&format!(
            "{media}?_HLS_msn={}&_HLS_part={}",
            msn + n / parts_per_segment,
            n % parts_per_segment
        )));
    }
    let mut long = Command::new("curl");
    long.args(["-sS", "-k", "--http2", "--max-time", "30"]);
    for u in &urls {
        long.args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects}\\n",
            u,
        ]);
    }
    let long = long
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));

    // A bad pair is refused and the old one keeps serving.
    std::fs::write(s.certs.0.join("key.pem"), "garbage").unwrap();
    signal(&s.server, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pinned(&old_pin),
        "a bad new pair leaves the old one serving"
    );

    // A good new pair is served to new connections after SIGHUP.
    let new_pin = make_cert(&s.certs.0);
    assert_ne!(new_pin, old_pin);
    signal(&s.server, libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pinned(&new_pin) {
        assert!(
            Instant::now() < deadline,
            "new certificate not served: {}",
            s.server.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !pinned(&old_pin),
        "new connections no longer see the old certificate"
    );

    // Renewal without a signal: the files change on disk (as an ACME client renews them).
    let renewed_pin = make_cert(&s.certs.0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pinned(&renewed_pin) {
        assert!(
            Instant::now() < deadline,
            "the renewed files were not picked up: {}",
            s.server.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The connection opened before the swap kept streaming: every transfer 200, one connect.
    let out = long.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), urls.len(), "{report}");
    let connects: u32 = lines
        .iter()
        .map(|l| {
            let (code, n) = l.split_once(' ').unwrap();
            assert_eq!(code, "200", "{report}");
            n.parse::<u32>().unwrap()
        })
        .sum();
    assert_eq!(connects, 1, "all transfers on one connection: {report}");
    let logs = s.server.logs();
    assert_eq!(
        logs.matches("reload (SIGHUP) refused").count(),
        1,
        "one line for the refused pair:\n{logs}"
    );
    assert!(logs.contains("TLS certificate reloaded (SIGHUP)"), "{logs}");
    assert!(
        logs.contains("TLS certificate reloaded (file change)"),
        "{logs}"
    );
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
}

fn signal(server: &Server, sig: i32) {
    // SAFETY: plain kill(2) on the child's pid.
    let rc = unsafe { libc::kill(server.child.id() as i32, sig) };
    assert_eq!(rc, 0);
}
