//! A real LL-HLS player: hls.js in Debian's headless Chromium, driven by playwright-core
//! (`tests/browser/play.mjs`), plays a live stream in low-latency mode for 20 s, over
//! HTTP/1.1, over HTTPS with HTTP/2, and over HTTP/3; each test checks the protocol the page
//! actually used (Resource Timing's `nextHopProtocol`).
//!
//! Needs `scripts/setup.sh` (chromium, node and the pinned npm packages). It is not skipped
//! when they are missing: a missing browser is a failed setup, not a passing test.

// Tests print what they measured (frame counts, latency); that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn hlsjs_plays_low_latency_without_stalls() {
    let server = Server::start("auto", &[]);
    let url = server.url("/live/browser/index.m3u8");
    let v = play::<&str>(&server, &url, &[]);
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
    let owner = user_token(&server.data, &uuid::Uuid::new_v4().to_string());
    let r = api_call(
        server.api,
        "POST",
        "/api/v1/streams",
        &owner,
        Some(r#"{"name":"browser","private":true}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let key = v["key"].as_str().unwrap().to_owned();
    let r = api_call(
        server.api,
        "POST",
        "/api/v1/streams/browser/playback-token",
        &owner,
        Some("{}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    let url = server.url(&format!("/live/browser/index.m3u8?token={token}"));
    let v = play_published(
        &server,
        &format!("browser?key={key}"),
        &format!("?token={token}"),
        &url,
        &[] as &[&str],
    );
    println!("private stream played: {v}");
    assert_eq!(server.get("/live/browser/index.m3u8").status, 403);
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
    let v = play(server, &url, &chromium);
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

/// One playback at a time: a browser, an encoder and a server each want a core, and this
/// machine class has two; parallel runs would measure the machine, not the server.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Publishes with ffmpeg, plays `url` in hls.js for 20 s and checks a clean low-latency
/// playback; returns the harness's JSON.
fn play<S: AsRef<str>>(server: &Server, url: &str, chromium_args: &[S]) -> serde_json::Value {
    play_published(server, "browser", "", url, chromium_args)
}

/// [`play`], publishing as `rtmp_name` (which may carry `?key=`) and waiting for the stream
/// with `query` on its playlist URL.
fn play_published<S: AsRef<str>>(
    server: &Server,
    rtmp_name: &str,
    query: &str,
    url: &str,
    chromium_args: &[S],
) -> serde_json::Value {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url(rtmp_name), 60, "640x360");
    server.wait_live_with("browser", query, Duration::from_secs(15));
    let script = repo_root().join("tests/browser/play.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .args(["--url", url])
        .args(["--seconds", "20"])
        // Let hls.js catch up to its latency target by playing slightly faster, as LL-HLS
        // deployments configure it (the default, 1.0, never catches up after start-up).
        .args(["--hls-config", r#"{"maxLiveSyncPlaybackRate":1.5}"#]);
    for a in chromium_args {
        cmd.arg(format!("--chromium-arg={}", a.as_ref()));
    }
    let out = cmd.output().expect("node is installed (scripts/setup.sh)");
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "harness failed ({}): {stderr}",
        out.status
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("harness printed no JSON ({e}): {stdout}\n{stderr}"));
    let latency = &v["latency"];
    println!(
        "hls.js {} via {}: played {} s, stalls {}, live latency median {} s (min {}, max {}), target {} s, parts used {}, dropped {}/{} frames",
        v["hlsVersion"], v["protocols"], v["playedSeconds"], v["stalls"], latency["median"], latency["min"],
        latency["max"], v["targetLatency"], v["partsUsed"], v["droppedFrames"], v["totalFrames"]
    );
    assert_eq!(
        v["started"], true,
        "playback never started: {stdout}\n{stderr}"
    );
    assert_eq!(v["fatalErrors"], 0, "fatal errors: {}", v["errors"]);
    assert_eq!(v["stalls"], 0, "stalls: {stdout}");
    assert_eq!(
        v["lateSeeks"], 0,
        "the playhead jumped during playback: {stdout}"
    );
    assert_eq!(
        v["partsUsed"], true,
        "hls.js did not use LL-HLS parts: {stdout}"
    );
    assert_eq!(v["canBlockReload"], true);
    assert_eq!(v["ok"], true, "{stdout}");
    let median = latency["median"].as_f64().expect("latency measured");
    assert!(median > 0.0);
    v
}
