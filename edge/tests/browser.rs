//! Real players in Debian's headless Chromium, driven by playwright-core
//! (`tests/browser/play.mjs`): hls.js plays a live stream in low-latency mode for 20 s, over
//! HTTP/1.1, over HTTPS with HTTP/2, and over HTTP/3 (each test checks the protocol the page
//! actually used, Resource Timing's `nextHopProtocol`); dash.js and Shaka Player play the
//! same stream's low-latency DASH (H.264; HEVC and AV1 from Enhanced RTMP captures), and
//! dash.js plays through a publisher reconnect (a new Period).
//!
//! Needs `scripts/setup.sh` (chromium, node and the pinned npm packages). It is not skipped
//! when they are missing: a missing browser is a failed setup, not a passing test.

// Tests print what they measured (frame counts, latency); that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn hlsjs_plays_low_latency_without_stalls() {
    let server = Server::start("auto", &[]);
    let url = server.url("/live/browser/index.m3u8");
    let v = play::<&str>(&server, Player::HlsJs, &url, &[]);
    assert_eq!(
        v["protocols"]["http/1.1"].as_u64().map(|n| n > 0),
        Some(true),
        "{v}"
    );
}

/// hls.js over HTTPS: HTTP/2 through hyper (Chromium negotiates h2 by ALPN).
#[test]
fn hlsjs_plays_over_https_h2() {
    play_over_tls("h2");
}

/// hls.js over HTTP/3 (QUIC forced on the origin, the test certificate pinned by its SPKI).
#[test]
fn hlsjs_plays_over_http3() {
    play_over_tls("h3");
}

/// A private stream: hls.js plays it from a URL carrying a playback token (the server carries
/// the token into every playlist URI, so the stock player needs no custom loader), and the
/// same URL without the token is refused.
#[test]
fn hlsjs_plays_a_private_stream_with_a_playback_token() {
    let server = Server::start("auto", &[]);
    let (key, token) = private_stream(&server, "browser");
    let url = server.url(&format!("/live/browser/index.m3u8?token={token}"));
    let v = play_published(
        &server,
        Player::HlsJs,
        &format!("browser?key={key}"),
        &format!("?token={token}"),
        &url,
        &[] as &[&str],
    );
    println!("private stream played: {v}");
    assert_eq!(server.get("/live/browser/index.m3u8").status, 403);
}

/// hls.js plays through nginx `proxy_cache` in front of the server (docs/deployment.md): the
/// cache keeps the blocking reloads and parts, the player sees a clean low-latency playback.
#[test]
fn hlsjs_plays_through_nginx_proxy_cache() {
    let _turn = one_at_a_time();
    let server = Server::start("auto", BEHIND_A_CACHE);
    let cache = NginxCache::start(server.http);
    let url = cache.url("/live/browser/index.m3u8");
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("browser"), 60, "640x360");
    let media = server.wait_live("browser", Duration::from_secs(15));
    // 500 LL-HLS viewers (plain HTTP/1.1 clients doing what a player does) read through the
    // same cache while hls.js plays.
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + Duration::from_secs(25);
    let crowd = llhls_crowd(500, cache.port, &media, end, &tally);
    let out = harness::<&str>(Player::HlsJs, &url, 20, &[])
        .output()
        .expect("node is installed (scripts/setup.sh)");
    for v in crowd {
        v.join().unwrap();
    }
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let run = Run::from(out);
    run.report();
    let t = &*tally;
    let served = t.served.load(Ordering::Relaxed);
    println!(
        "beside hls.js, 500 viewers through the cache: {served} served, {} parts, {} errors",
        t.parts.load(Ordering::Relaxed),
        t.errors.load(Ordering::Relaxed)
    );
    assert_clean(Player::HlsJs, &run, 20.0);
    assert!(
        run.v["protocols"]["http/1.1"].as_u64().unwrap_or(0) > 10,
        "requests through the cache: {run}"
    );
    assert_eq!(t.errors.load(Ordering::Relaxed), 0, "{}", cache.logs());
    assert_eq!(t.stale.load(Ordering::Relaxed), 0, "stale playlists");
    assert_eq!(served, 500);
}

/// hls.js plays from an edge while the origin restarts (and its publisher comes back): the
/// player waits through the outage, then plays on from the same URLs after a discontinuity,
/// with no fatal error.
#[test]
fn hlsjs_on_an_edge_plays_on_after_an_origin_restart() {
    let _turn = one_at_a_time();
    let mut origin = Server::start("auto", &[]);
    let edge = Server::start(
        "auto",
        &["--origin", &format!("http://127.0.0.1:{}", origin.http)],
    );
    let mut ffmpeg = ffmpeg_publish_gop(&origin.rtmp_url("browser"), 60, "320x240", 12);
    origin.wait_live("browser", Duration::from_secs(15));
    let url = edge.url("/live/browser/index.m3u8");
    let mut player = harness::<&str>(Player::HlsJs, &url, 30, &[]);
    let player = std::thread::spawn(move || {
        player
            .output()
            .expect("node is installed (scripts/setup.sh)")
    });
    std::thread::sleep(Duration::from_secs(10));
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let down = Instant::now();
    origin.restart();
    ffmpeg = ffmpeg_publish_gop(&origin.rtmp_url("browser"), 60, "320x240", 12);
    origin.wait_live("browser", Duration::from_secs(15));
    println!("origin back and live after {:?}", down.elapsed());
    let run = Run::from(player.join().unwrap());
    let media = edge.wait_live("browser", Duration::from_secs(5));
    let playlist = edge.get(&media).text();
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    run.report();
    let v = &run.v;
    assert!(
        playlist.contains("#EXT-X-DISCONTINUITY"),
        "the edge's stream did not continue after a discontinuity: {playlist}"
    );
    assert_eq!(v["started"], true, "{run}");
    assert_eq!(v["fatalErrors"], 0, "{run}");
    // It played on after the restart (at 10 s), not only before it. The outage itself (a few
    // hundred ms to a few seconds of no new media) may or may not cost a stall, depending on
    // how much the player had buffered.
    assert!(v["playedSeconds"].as_f64().unwrap() >= 20.0, "{run}");
    println!(
        "through the restart: {} stalls ({} s)",
        v["stalls"], v["stallSeconds"]
    );
}

/// A primary and a backup publisher (keyframes every 0.4 s, a multiple of the part target);
/// hls.js plays for 20 s at its low-latency target, the primary is killed 8 s in, and the
/// backup continues the stream: the player goes through the discontinuity without a stall, a
/// jump or an error.
#[test]
fn hlsjs_keeps_playing_when_the_backup_publisher_takes_over() {
    let _turn = one_at_a_time();
    let server = Server::start("auto", &[]);
    let mut primary = ffmpeg_publish_gop(&server.rtmp_url("browser"), 40, "320x240", 12);
    server.wait_live("browser", Duration::from_secs(15));
    let mut backup = ffmpeg_publish_gop(&server.rtmp_url("browser?role=backup"), 40, "320x240", 12);
    let url = server.url("/live/browser/index.m3u8");
    let mut player = harness::<&str>(Player::HlsJs, &url, 20, &[]);
    let player = std::thread::spawn(move || {
        player
            .output()
            .expect("node is installed (scripts/setup.sh)")
    });
    std::thread::sleep(Duration::from_secs(8));
    let _ = primary.kill();
    let _ = primary.wait();
    let out = player.join().unwrap();
    let _ = backup.kill();
    let _ = backup.wait();
    let run = Run::from(out);
    run.report();
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("zerocast_publisher_switches_total 1"),
        "the backup did not take over: {}",
        server.logs()
    );
    assert_clean(Player::HlsJs, &run, 20.0);
}

/// hls.js plays from an edge (`--origin`): the edge follows the origin's LL-HLS on the
/// player's first request and serves it with the same blocking reloads and preload hints.
#[test]
fn hlsjs_plays_from_an_edge() {
    let origin = Server::start("auto", &[]);
    let edge = Server::start(
        "auto",
        &["--origin", &format!("http://127.0.0.1:{}", origin.http)],
    );
    let url = edge.url("/live/browser/index.m3u8");
    let v = play::<&str>(&origin, Player::HlsJs, &url, &[]);
    let text = edge.get("/metrics").text();
    assert!(
        metric_sum(&text, "zerocast_relay_parts_total") > 50.0,
        "the edge did not follow the origin: {text}"
    );
    println!(
        "latency from the edge: {}; errors: {}",
        v["latency"], v["errors"]
    );
}

/// A server with a `zerocast cert` certificate, played over HTTPS with the certificate pinned
/// in Chromium by its SPKI (and QUIC forced on the origin for `h3`); checks that every
/// request went over `proto`.
fn play_over_tls(proto: &str) {
    let tls = TlsServer::start(proto, &[], &[]);
    let (server, pin) = (&tls.server, &tls.pin);
    let https_addr = format!("127.0.0.1:{}", tls.https);
    let url = format!("https://{https_addr}/live/browser/index.m3u8");
    let mut chromium = vec![format!("--ignore-certificate-errors-spki-list={pin}")];
    if proto == "h3" {
        chromium.push(format!("--origin-to-force-quic-on={https_addr}"));
    }
    let v = play(server, Player::HlsJs, &url, &chromium);
    only_protocol(&v, proto);
}

/// Every request the page made to the stream's origin went over `proto`.
fn only_protocol(v: &serde_json::Value, proto: &str) {
    let protocols = v["protocols"].as_object().expect("protocols reported");
    assert!(
        protocols.get(proto).and_then(|n| n.as_u64()).unwrap_or(0) > 10,
        "requests over {proto}: {v}"
    );
    assert_eq!(protocols.len(), 1, "only {proto} was used: {v}");
}

/// A player the harness drives (`--player`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Player {
    HlsJs,
    DashJs,
    Shaka,
}

impl Player {
    fn arg(self) -> &'static str {
        match self {
            Player::HlsJs => "hlsjs",
            Player::DashJs => "dashjs",
            Player::Shaka => "shaka",
        }
    }

    /// What the test adds to the harness's own player configuration (`--player-config`).
    fn config(self) -> &'static str {
        match self {
            // Let hls.js catch up to its latency target by playing slightly faster, as LL-HLS
            // deployments configure it (the default, 1.0, never catches up after start-up).
            Player::HlsJs => r#"{"maxLiveSyncPlaybackRate":1.5}"#,
            // dash.js (catch-up on, live delay from the ServiceDescription) and Shaka
            // (lowLatencyMode) as the harness sets them up.
            Player::DashJs | Player::Shaka => "{}",
        }
    }
}

/// The harness command: `player` plays `url` for `seconds` s.
fn harness<S: AsRef<str>>(player: Player, url: &str, seconds: u32, chromium_args: &[S]) -> Command {
    let script = repo_root().join("tests/browser/play.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .args(["--player", player.arg()])
        .args(["--url", url])
        .args(["--seconds", &seconds.to_string()])
        .args(["--player-config", player.config()]);
    for a in chromium_args {
        cmd.arg(format!("--chromium-arg={}", a.as_ref()));
    }
    cmd
}

/// A finished harness run: its JSON, and its stderr (the page's console errors) for messages.
struct Run {
    v: serde_json::Value,
    stderr: String,
}

impl Run {
    /// Reads the harness's output; panics unless the harness itself ran (exit 0, one JSON line).
    fn from(out: Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "harness failed ({}): {stderr}",
            out.status
        );
        let v = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("harness printed no JSON ({e}): {stdout}\n{stderr}"));
        Run { v, stderr }
    }

    /// One line of what was measured.
    fn report(&self) {
        let v = &self.v;
        let l = &v["latency"];
        println!(
            "{} {} via {}: played {} s, stalls {} ({} s), late seeks {}, errors {}, live latency median {} s (mean {}, min {}, max {}, last {}; {}), target {} s, low-latency mode {}, dropped {}/{} frames",
            v["player"], v["playerVersion"], v["protocols"], v["playedSeconds"], v["stalls"],
            v["stallSeconds"], v["lateSeeks"], v["errorCount"], l["median"], l["mean"], l["min"],
            l["max"], l["last"], v["latencySource"], v["targetLatency"], v["lowLatencyMode"],
            v["droppedFrames"], v["totalFrames"]
        );
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}", self.v, self.stderr)
    }
}

/// Publishes with ffmpeg, plays `url` in `player` for 20 s and checks a clean low-latency
/// playback; returns the harness's JSON.
fn play<S: AsRef<str>>(
    server: &Server,
    player: Player,
    url: &str,
    chromium_args: &[S],
) -> serde_json::Value {
    play_published(server, player, "browser", "", url, chromium_args)
}

/// [`play`], publishing as `rtmp_name` (which may carry `?key=`) and waiting for the stream
/// with `query` on its playlist URL.
fn play_published<S: AsRef<str>>(
    server: &Server,
    player: Player,
    rtmp_name: &str,
    query: &str,
    url: &str,
    chromium_args: &[S],
) -> serde_json::Value {
    let _turn = one_at_a_time();
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url(rtmp_name), 60, "640x360");
    server.wait_live_with("browser", query, Duration::from_secs(15));
    let out = harness(player, url, 20, chromium_args)
        .output()
        .expect("node is installed (scripts/setup.sh)");
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let run = Run::from(out);
    run.report();
    if run.v["stalls"] != 0 || run.v["lateSeeks"] != 0 {
        // What the server saw while the player waited (the page's `slowest` names the request).
        println!("server log:\n{}", server.logs());
    }
    assert_clean(player, &run, 20.0);
    run.v
}

/// A clean live playback: started, played (nearly) `seconds` s, no error, no stall, no jump,
/// in the player's low-latency mode.
fn assert_clean(player: Player, run: &Run, seconds: f64) {
    let v = &run.v;
    assert_eq!(v["started"], true, "playback never started: {run}");
    assert_eq!(v["fatalErrors"], 0, "fatal errors: {run}");
    assert_eq!(v["stalls"], 0, "stalls: {run}");
    assert_eq!(
        v["lateSeeks"], 0,
        "the playhead jumped during playback: {run}"
    );
    assert!(
        v["playedSeconds"].as_f64().unwrap() >= 0.9 * seconds,
        "{run}"
    );
    assert!(
        v["totalFrames"].as_u64().unwrap() > 0,
        "no video frame: {run}"
    );
    let median = v["latency"]["median"].as_f64().expect("latency measured");
    assert!(median > 0.0);
    match player {
        Player::HlsJs => {
            assert_eq!(
                v["partsUsed"], true,
                "hls.js did not use LL-HLS parts: {run}"
            );
            assert_eq!(v["canBlockReload"], true);
        }
        // The DASH players report no error at all, not even one they recovered from (a
        // failed clock sync against /time, a segment they had to retry).
        Player::DashJs | Player::Shaka => {
            assert_eq!(v["errorCount"], 0, "errors: {run}");
            assert_eq!(
                v["lowLatencyMode"], true,
                "the player did not take the MPD as low-latency: {run}"
            );
        }
    }
    assert_eq!(v["ok"], true, "{run}");
}

/// The MPD's `ServiceDescription`: `Latency@target` and `@max`, in seconds.
fn service_latency(server: &Server, name: &str) -> (f64, f64) {
    let text = server.get(&format!("/live/{name}/index.mpd")).text();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let latency = doc
        .descendants()
        .find(|n| n.has_tag_name("Latency"))
        .unwrap_or_else(|| panic!("no ServiceDescription/Latency: {text}"));
    let ms = |a: &str| latency.attribute(a).unwrap().parse::<f64>().unwrap() / 1000.0;
    (ms("target"), ms("max"))
}

/// dash.js plays the low-latency DASH of an ffmpeg H.264/AAC publish for 20 s: no stall, no
/// error, in its low-latency mode, aiming at the MPD's ServiceDescription target, with its
/// live latency (`getCurrentLiveLatency()`) under the ServiceDescription's maximum.
#[test]
fn dashjs_plays_low_latency_dash() {
    let server = Server::start("auto", &[]);
    let url = server.url("/live/browser/index.mpd");
    let v = play::<&str>(&server, Player::DashJs, &url, &[]);
    let (target, max) = service_latency(&server, "browser");
    assert_eq!(v["targetLatency"].as_f64(), Some(target), "{v}");
    let l = &v["latency"];
    println!(
        "dash.js getCurrentLiveLatency(): mean {} s, p50 {} s, max {} s, last {} s (ServiceDescription target {target} s, max {max} s)",
        l["mean"], l["median"], l["max"], l["last"]
    );
    assert!(l["max"].as_f64().unwrap() < max, "{v}");
}

/// Shaka Player plays the same low-latency DASH for 20 s without a stall or an error.
#[test]
fn shaka_plays_dash() {
    let server = Server::start("auto", &[]);
    let url = server.url("/live/browser/index.mpd");
    let v = play::<&str>(&server, Player::Shaka, &url, &[]);
    let video = v["activeCodecs"]["video"].as_str().unwrap_or_default();
    assert!(video.starts_with("avc1."), "{v}");
}

/// dash.js plays the DASH of HEVC and AV1 publishes (Enhanced RTMP captures from ffmpeg 9,
/// looped to 20 s; Debian's ffmpeg 5.1 cannot publish Enhanced RTMP), 8 s each (H.264 is
/// `dashjs_plays_low_latency_dash`).
///
/// Debian's Chromium decodes HEVC only through a hardware decoder, and this machine has none:
/// its MediaSource refuses `hvc1` (`codecs[].supported` in the harness's JSON). The test then
/// asserts what a browser can show here: the MPD declares the `hvc1` codec, dash.js drops
/// that video AdaptationSet as unplayable (rather than failing) and plays the audio
/// AdaptationSet of the same MPD cleanly; the HEVC video itself is checked by ffmpeg in
/// `dash.rs`, not by a browser. If the browser takes HEVC, the full check applies.
#[test]
fn dashjs_plays_hevc_and_av1() {
    for (name, file, codec) in [
        ("hevc", "ffmpeg9_hevc_aac.flv", "hvc1."),
        ("av1", "ffmpeg9_av1_aac.flv", "av01."),
    ] {
        let _turn = one_at_a_time();
        let server = Server::start("auto", &["--reconnect-grace", "1000"]);
        let path = repo_root().join("testdata").join(file);
        let port = server.rtmp;
        let publisher = std::thread::spawn(move || publish_flv_looped(port, name, &path, 5));
        server.wait_live(name, Duration::from_secs(15));
        let url = server.url(&format!("/live/{name}/index.mpd"));
        let run = Run::from(
            harness(Player::DashJs, &url, 8, &[] as &[&str])
                .output()
                .expect("node is installed (scripts/setup.sh)"),
        );
        run.report();
        let v = &run.v;
        let declared = v["codecs"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["codec"].as_str().unwrap().starts_with(codec))
            })
            .unwrap_or_else(|| panic!("the MPD declares no {codec} codec: {run}"));
        // Only HEVC may be refused (Chromium decodes it only with a platform decoder); AV1 has
        // a software decoder in every Chromium and must play.
        if declared["supported"] == true || name != "hevc" {
            assert_clean(Player::DashJs, &run, 8.0);
            let video = v["activeCodecs"]["video"].as_str().unwrap_or_default();
            assert!(video.contains(codec), "{name}: playing {video}: {run}");
            println!("{name}: dash.js played {} video", declared["codec"]);
        } else {
            println!(
                "{name}: this Chromium's MediaSource refuses {} ({}): dash.js can play only the audio",
                declared["codec"], declared["type"]
            );
            let removed = v["removedAdaptationSets"].as_array().unwrap();
            assert!(
                removed.iter().any(|a| a["contentType"] == "video"),
                "dash.js did not drop the {codec} AdaptationSet: {run}"
            );
            assert_eq!(v["activeCodecs"]["video"], serde_json::Value::Null, "{run}");
            assert!(
                v["activeCodecs"]["audio"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("mp4a"),
                "{run}"
            );
            assert_eq!(v["started"], true, "the audio did not play: {run}");
            assert_eq!(v["errorCount"], 0, "errors: {run}");
            assert_eq!(v["stalls"], 0, "stalls: {run}");
            assert!(v["playedSeconds"].as_f64().unwrap() >= 7.2, "{run}");
        }
        publisher.join().unwrap().expect("publish the capture");
    }
}

/// dash.js plays through a publisher reconnect: 8 s into playback ffmpeg is killed (the
/// connection drops), and 1 s later a new ffmpeg publishes the same stream, within the grace
/// window. The stream goes on in a new Period, which dash.js switches to without an error
/// and keeps playing.
///
/// One stall and one jump at the switch are allowed, and only those: the publisher is away
/// for about 1.3 s (the kill, the 1 s pause, ffmpeg's start-up), so the new Period starts
/// that much later on the wall clock than the old one ends, with nothing in between. A
/// player 1.5 s behind live reaches the end of the old Period's media about when the new
/// Period appears in the MPD; dash.js then needs an MPD update and the new Period's init
/// segment and first chunks before it can jump the hole (one `waiting`, 1.3-2.5 s here, and
/// one seek). A second stall or jump means the player was given something else to play.
#[test]
fn dashjs_plays_through_a_publisher_reconnect() {
    let _turn = one_at_a_time();
    let server = Server::start("auto", &["--reconnect-grace", "5000"]);
    let mut first = ffmpeg_publish(&server.rtmp_url("browser"), 60, "640x360");
    server.wait_live("browser", Duration::from_secs(15));
    let url = server.url("/live/browser/index.mpd");
    let mut node = harness(Player::DashJs, &url, 30, &[] as &[&str])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed (scripts/setup.sh)");
    // The harness says on stderr when playback started; the rest of stderr is kept for
    // messages.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let stderr = node.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("playback started after") {
                let _ = started_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let started = started_rx.recv_timeout(Duration::from_secs(30)).is_ok();
    let mut second = None;
    if started {
        std::thread::sleep(Duration::from_secs(8));
        let _ = first.kill();
        let _ = first.wait();
        let dropped = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        second = Some(ffmpeg_publish(&server.rtmp_url("browser"), 60, "640x360"));
        println!(
            "publisher dropped, reconnected after {:?}",
            dropped.elapsed()
        );
    }
    let out = node.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    let mpd = server.get("/live/browser/index.mpd").text();
    for mut ffmpeg in [Some(first), second].into_iter().flatten() {
        let _ = ffmpeg.kill();
        let _ = ffmpeg.wait();
    }
    let run = Run::from(Output {
        stderr: stderr.into_bytes(),
        ..out
    });
    run.report();
    let v = &run.v;
    assert!(started, "playback never started: {run}");
    let starts = period_starts(&mpd);
    assert_eq!(starts.len(), 2, "one Period per publisher: {mpd}");
    println!(
        "Periods start at {starts:?} s; dash.js played {} Periods, ended at currentTime {} s with {} stall(s) ({} s) and {} late seek(s)",
        v["periodsPlayed"], v["currentTime"], v["stalls"], v["stallSeconds"], v["lateSeeks"]
    );
    assert_eq!(v["fatalErrors"], 0, "fatal errors: {run}");
    assert_eq!(v["errorCount"], 0, "errors: {run}");
    assert_eq!(
        v["periodsPlayed"], 2,
        "dash.js did not switch to the new Period: {run}"
    );
    assert!(v["stalls"].as_u64().unwrap() <= 1, "stalls: {run}");
    assert!(v["lateSeeks"].as_u64().unwrap() <= 1, "jumps: {run}");
    assert!(v["stallSeconds"].as_f64().unwrap() < 5.0, "{run}");
    // It kept playing in the new Period: at least 10 s of it (of about 20).
    let end = v["currentTime"].as_f64().unwrap();
    assert!(end >= starts[1] + 10.0, "{run}");
    assert!(v["playedSeconds"].as_f64().unwrap() >= 25.0, "{run}");
}

/// The start of each Period of an MPD, in seconds (`Period@start`, `PT[nH][nM]n.nS`).
fn period_starts(mpd: &str) -> Vec<f64> {
    let doc = roxmltree::Document::parse(mpd).unwrap_or_else(|e| panic!("{e}: {mpd}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("Period"))
        .map(|p| {
            let d = p.attribute("start").expect("Period@start");
            let mut rest = d.strip_prefix("PT").unwrap_or_else(|| panic!("{d}"));
            let mut secs = 0.0;
            for (unit, scale) in [('H', 3600.0), ('M', 60.0), ('S', 1.0)] {
                if let Some((n, r)) = rest.split_once(unit) {
                    secs += n.parse::<f64>().unwrap() * scale;
                    rest = r;
                }
            }
            secs
        })
        .collect()
}
