//! A real LL-HLS player: hls.js in Debian's headless Chromium, driven by playwright-core
//! (`tests/browser/play.mjs`), plays a live stream in low-latency mode for 20 s.
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
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("browser"), 60, "640x360");
    server.wait_live("browser", Duration::from_secs(15));
    let script = repo_root().join("tests/browser/play.mjs");
    let out = Command::new("node")
        .arg(&script)
        .args(["--url", &server.url("/live/browser/index.m3u8")])
        .args(["--seconds", "20"])
        // Let hls.js catch up to its latency target by playing slightly faster, as LL-HLS
        // deployments configure it (the default, 1.0, never catches up after start-up).
        .args(["--hls-config", r#"{"maxLiveSyncPlaybackRate":1.5}"#])
        .output()
        .expect("node is installed (scripts/setup.sh)");
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
        "hls.js {}: played {} s, stalls {}, live latency median {} s (min {}, max {}), target {} s, parts used {}, dropped {}/{} frames",
        v["hlsVersion"], v["playedSeconds"], v["stalls"], latency["median"], latency["min"],
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
}
