//! The pages on the media port (`/`, `/watch/NAME`, `/web/*`): their HTTP answers, and the
//! watch page in Debian's headless Chromium (`tests/browser/watch.mjs`, playwright-core) while
//! ffmpeg publishes: it plays 20 s without a stall, its latency readout agrees with hls.js's,
//! chat goes both ways with a second WebSocket client within a second, the follow button
//! changes the owner's follower count in the API, the chat reconnects by itself (and shows what
//! was said meanwhile, once), slow mode counts down, a flood is refused and said so, an expired
//! token is said so, display names show (the owner's on `/` and the page, a sender's on its
//! lines), a guest without a token reads the chat, a banned viewer sees the ban, the owner times a
//! user out from a line of chat, and
//! `?player=dash` plays with dash.js; the studio
//! (create a key, publish with it, see it live, moderate); a private stream's page (says so
//! without a playback token, plays with one).
//!
//! Needs `scripts/setup.sh` (chromium, node, ffmpeg, `npm ci` in `web/` and `tests/browser/`).
//! `ZEROCAST_UPDATE_SCREENSHOTS=1` copies the screenshots the test takes into
//! `docs/screenshots/`.

// Tests print what they measured (latency, time to first frame); that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// `/` without streams says how to publish; every page carries its security headers; bad
/// names and unknown files get a clear 404, never a panic.
#[test]
fn pages_answer_with_a_policy_and_clear_errors() {
    let server = Server::start("auto", &[]);
    let home = server.get("/");
    assert_eq!(home.status, 200);
    assert_eq!(
        home.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let text = home.text();
    assert!(text.contains("Nobody is live"), "{text}");
    assert!(
        text.contains(&format!("rtmp://127.0.0.1:{}/live", server.rtmp)),
        "{text}"
    );
    assert!(!text.contains("{{"), "an unfilled slot: {text}");
    let csp = home.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(
        csp.contains(&format!("http://127.0.0.1:{}", server.api)),
        "the social API is allowed: {csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    // No inline script in any page: every <script> has a src.
    let watch = server.get("/watch/somebody");
    assert_eq!(watch.status, 200);
    let page = watch.text();
    assert!(page.contains("data-stream=\"somebody\""), "{page}");
    for p in [&page, &server.get("/studio").text()] {
        assert!(!p.contains("{{"), "an unfilled slot: {p}");
        assert!(p.contains("<form id=\"signin\""), "no sign-in form: {p}");
    }
    assert_eq!(
        page.matches("<script").count(),
        page.matches("<script src=").count()
    );
    for bad in [
        "/watch/..",
        "/watch/a%3Cb",
        "/watch/%22onmouseover=alert(1)",
        &format!("/watch/{}", "x".repeat(300)),
        "/watch/",
    ] {
        let r = server.get(bad);
        assert_eq!(r.status, 404, "{bad}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let t = r.text();
        assert!(t.contains("No stream can have that name"), "{bad}: {t}");
    }
    assert_eq!(server.get("/web/nothing.js").status, 404);
    assert_eq!(server.get("/api/streams/nobody").status, 404);
    // The page asks for its assets with the build's version, and may keep those for good;
    // without it (or with another) they are revalidated.
    let v = page
        .split("/web/app.js?v=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("app.js with a version")
        .to_owned();
    assert!(page.contains(&format!("/web/hls.js?v={v}\"")), "{page}");
    let app = server.get(&format!("/web/app.js?v={v}"));
    assert_eq!(app.status, 200);
    assert!(
        app.header("cache-control")
            .unwrap_or("")
            .contains("immutable"),
        "{:?}",
        app.header("cache-control")
    );
    assert_eq!(
        server.get("/web/app.js?v=other").header("cache-control"),
        Some("no-cache")
    );
    for lib in ["/web/hls.js", "/web/dash.js"] {
        let plain = server.get(lib);
        assert_eq!(
            plain.status, 200,
            "{lib} was not embedded: run scripts/setup.sh, then rebuild"
        );
        assert_eq!(plain.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
        // Compressed at build time for clients that accept gzip: the same bytes, smaller.
        let gz = server.get_with(lib, &[("Accept-Encoding", "gzip, deflate, br")]);
        assert_eq!(gz.status, 200);
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        assert!(
            gz.body.len() * 2 < plain.body.len(),
            "{lib}: {} gzip bytes for {}",
            gz.body.len(),
            plain.body.len()
        );
        assert_eq!(gunzip(&gz.body), plain.body, "{lib}");
        println!("{lib}: {} bytes, {} gzip", plain.body.len(), gz.body.len());
    }
    // The DASH player is chosen in the URL; the page then loads dash.js, not hls.js.
    let dash = server.get("/watch/somebody?player=dash").text();
    assert!(dash.contains("data-player=\"dash\""), "{dash}");
    assert!(dash.contains(&format!("/web/dash.js?v={v}\"")), "{dash}");
    assert!(!dash.contains("/web/hls.js"), "{dash}");
}

/// `gzip -dc` of `data`.
fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip is installed");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -dc failed");
    out.stdout
}

/// What users write reaches a page escaped: a display name full of markup shows as text on
/// `/` (the server renders the list; the script's refresh uses `textContent`).
#[test]
fn home_page_escapes_an_owners_display_name() {
    let server = Server::start("auto", &[]);
    let owner = user_token(&server.data, &uuid::Uuid::new_v4().to_string());
    let name = r#"<script>alert(1)</script> & "Ada" 'x'"#;
    set_display_name(&server, &owner, name);
    let key = reserve_stream(&server, &owner, "marked", false);
    let mut ffmpeg = ffmpeg_publish(
        &server.rtmp_url(&format!("marked?key={key}")),
        20,
        "320x240",
    );
    server.wait_live("marked", Duration::from_secs(15));
    let home = server.get("/").text();
    let stream = server.get("/api/streams/marked");
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    assert!(
        home.contains(
            "by &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Ada&quot; &#39;x&#39; ·"
        ),
        "{home}"
    );
    assert!(!home.contains("<script>alert"), "{home}");
    // The API has it as it was written.
    let v: serde_json::Value = serde_json::from_slice(&stream.body).unwrap();
    assert_eq!(v["stream"]["owner_name"], name, "{v}");
}

#[test]
fn watch_page_plays_chats_follows_and_shows_a_ban() {
    let _turn = one_at_a_time();
    // No api-cors-origins: the server's own pages may call its API out of the box.
    let server = Server::start("auto", &[]);
    let owner_id = uuid::Uuid::new_v4().to_string();
    let owner = user_token(&server.data, &owner_id);
    let viewer = user_token(&server.data, &uuid::Uuid::new_v4().to_string());
    let other = user_token(&server.data, &uuid::Uuid::new_v4().to_string());
    // Display names: the owner's shows on `/` and the watch page (taken when publishing
    // starts), the second chat client's on its chat lines.
    set_display_name(&server, &owner, "Ada Lovelace");
    set_display_name(&server, &other, "Grace");
    let key = reserve_stream(&server, &owner, "webtest", false);

    let mut ffmpeg = ffmpeg_publish(
        &server.rtmp_url(&format!("webtest?key={key}")),
        60,
        "640x360",
    );
    server.wait_live("webtest", Duration::from_secs(15));
    let shots = TempDir::new("web-shots");
    // A viewer whose token expires during the run (5 s, plus the API's 30 s of leeway).
    let expiring = user_token_for(&server.data, &uuid::Uuid::new_v4().to_string(), "5s");
    let out = Command::new("node")
        .arg("--experimental-websocket")
        .arg(repo_root().join("tests/browser/watch.mjs"))
        .args(["--base", &server.url("")])
        .args(["--api", &format!("http://127.0.0.1:{}", server.api)])
        .args(["--stream", "webtest"])
        .args(["--viewer", &viewer, "--other", &other, "--owner", &owner])
        .args(["--expiring", &expiring])
        .args(["--seconds", "20"])
        .args(["--screenshots", shots.0.to_str().unwrap()])
        .output()
        .expect("node is installed (scripts/setup.sh)");
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let (v, stderr) = harness_report(&out);
    println!("watch page: {v}");
    let run = format!("{v}\n{stderr}");
    assert_eq!(v["error"], serde_json::Value::Null, "{run}");
    assert_eq!(v["homeListsStream"], true, "{run}");
    let by = "by Ada Lovelace";
    assert!(str_of(&v["homeFacts"]).starts_with(by), "{run}");
    assert_eq!(v["ownerShown"], by, "{run}");
    assert_eq!(v["chatFrom"], "Grace", "{run}");
    // Played the whole time, no stall by the page's count or the test's own.
    assert!(v["played"].as_f64().unwrap_or(0.0) >= 18.0, "{run}");
    assert_eq!(v["pageStalls"], 0, "{run}");
    assert_eq!(v["waitingEvents"], 0, "{run}");
    // The readout is hls.js's latency (it refreshes 4 times a second; hls.js's value moves by
    // less than a few hundredths of a second in that time at a playback rate of at most 1.5).
    assert!(v["latencySamples"].as_u64().unwrap_or(0) > 40, "{run}");
    assert!(v["latencyMaxDiff"].as_f64().unwrap() < 0.25, "{run}");
    // Chat both ways within a second.
    let chat_in = v["chatInMs"].as_i64().unwrap_or(-1);
    let chat_out = v["chatOutMs"].as_i64().unwrap_or(-1);
    assert!((0..1000).contains(&chat_in), "{run}");
    assert!((0..1000).contains(&chat_out), "{run}");
    // The follow button: one more follower of the owner, seen by the API.
    let before = v["followed"]["before"].as_u64().unwrap();
    assert_eq!(v["followed"]["after"].as_u64(), Some(before + 1), "{run}");
    assert_eq!(v["followed"]["button"], "Unfollow", "{run}");
    let r = api_call(
        server.api,
        "GET",
        &format!("/api/v1/users/{owner_id}/counts"),
        &owner,
        None,
    );
    let c: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(c["followers"].as_u64(), Some(before + 1), "{c}");
    // After its socket dropped, the page reconnected and showed what was said meanwhile, once,
    // and nothing else twice (2 messages before, 1 while away).
    let re = &v["reconnect"];
    assert_eq!(re["reconnects"], 1, "{run}");
    assert_eq!(re["connected"], true, "{run}");
    assert_eq!(re["shown"], 1, "{run}");
    assert_eq!(re["total"], 3, "{run}");
    // A guest (no token) reads the chat, history and live, and cannot type.
    let guest = &v["guest"];
    assert_eq!(guest["history"], true, "{run}");
    assert_eq!(guest["live"], true, "{run}");
    assert_eq!(guest["inputDisabled"], true, "{run}");
    assert!(
        str_of(&guest["status"]).starts_with("Reading as a guest"),
        "{run}"
    );
    // Slow mode: the refusal said, the send button counting down, then free again.
    let slow = &v["slowMode"];
    assert!(str_of(&slow["status"]).starts_with("Slow mode"), "{run}");
    assert!(str_of(&slow["button"]).starts_with("Wait "), "{run}");
    assert_eq!(slow["disabled"], true, "{run}");
    assert_eq!(slow["after"], "Send", "{run}");
    // Faster than the rate limit: refused, and said so.
    let flood = &v["rateLimit"];
    assert!(str_of(&flood["status"]).starts_with("Too fast"), "{run}");
    assert!(flood["sent"].as_u64().unwrap_or(0) > 20, "{run}");
    // The expiring viewer was connected, then told its token expired (and did not retry).
    assert_eq!(v["expiringConnected"], true, "{run}");
    let expired = &v["expired"];
    assert!(
        str_of(&expired["status"]).contains("token expired"),
        "{run}"
    );
    assert_eq!(expired["inputDisabled"], true, "{run}");
    assert_eq!(expired["reconnects"], 0, "{run}");
    // The owner timed the second client out from a line of chat in their own page.
    let moderation = &v["moderation"];
    assert!(
        str_of(&moderation["status"]).starts_with("Grace may not chat"),
        "{run}"
    );
    assert_eq!(moderation["refused"], "banned", "{run}");
    let ban = str_of(&v["banMessage"]);
    assert!(ban.contains("banned"), "{run}");
    assert_eq!(v["cspViolations"], 0, "{run}");
    assert_eq!(v["overflow360"], false, "wider than 360 px: {run}");
    let missing = str_of(&v["missingLibraryNotice"]);
    assert!(missing.contains("scripts/setup.sh"), "{run}");
    // The DASH player: dash.js alone loaded, played without a stall, its latency readout is
    // dash.js's own.
    let dash = &v["dash"];
    assert_eq!(dash["library"]["dash"], true, "{run}");
    assert_eq!(dash["library"]["hls"], false, "{run}");
    assert_eq!(dash["current"], "page", "{run}");
    assert!(dash["played"].as_f64().unwrap_or(0.0) >= 13.0, "{run}");
    assert_eq!(dash["pageStalls"], 0, "{run}");
    assert_eq!(dash["waitingEvents"], 0, "{run}");
    assert_eq!(dash["cspViolations"], 0, "{run}");
    assert!(dash["latencySamples"].as_u64().unwrap_or(0) > 30, "{run}");
    assert!(dash["latencyMaxDiff"].as_f64().unwrap() < 0.25, "{run}");
    println!(
        "time to first frame {} ms, page weight {}",
        v["firstFrameMs"], v["pageWeight"]
    );
    println!(
        "DASH: time to first frame {} ms, latency {} s",
        dash["firstFrameMs"], dash["latency"]
    );
    for f in ["home.png", "watch.png", "watch-360.png", "watch-dash.png"] {
        let p = shots.0.join(f);
        assert!(p.is_file(), "no screenshot {f}");
        if std::env::var_os("ZEROCAST_UPDATE_SCREENSHOTS").is_some() {
            let dir = repo_root().join("docs/screenshots");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(&p, dir.join(f)).unwrap();
        }
    }
}

/// The studio: a signed-in broadcaster creates a stream in the page, publishes with the key the
/// page showed, and the page shows the stream live; then rotates the key, sets slow mode (the
/// API has it) and bans a user, all from the page.
#[test]
fn studio_creates_a_key_and_sees_the_stream_go_live() {
    let _turn = one_at_a_time();
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let server = Server::start("auto", &[]);
    let owner = user_token(&server.data, &uuid::Uuid::new_v4().to_string());
    let shots = TempDir::new("studio-shots");
    let mut node = Command::new("node")
        .arg(repo_root().join("tests/browser/studio.mjs"))
        .args(["--base", &server.url("")])
        .args(["--token", &owner, "--stream", "studiotest"])
        .args(["--screenshots", shots.0.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed (scripts/setup.sh)");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let issued: serde_json::Value = serde_json::from_str(&first).unwrap_or_default();
    let Some(obs_key) = issued["obs_stream_key"].as_str() else {
        let out = node.wait_with_output().unwrap();
        panic!(
            "the studio showed no key: {first}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert!(obs_key.starts_with("studiotest?key="), "{obs_key}");
    // Published with the key the page showed, the stream goes live in the page.
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url(obs_key), 30, "320x240");
    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    let out = node.wait_with_output().unwrap();
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness failed: {stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&second).unwrap_or_else(|e| panic!("no JSON ({e}): {stderr}"));
    println!("studio: {v}");
    assert_eq!(v["error"], serde_json::Value::Null, "{v}\n{stderr}");
    let facts = str_of(&v["facts"]);
    assert!(facts.starts_with("LIVE"), "{v}\n{}", server.logs());
    assert_eq!(v["rotated"], true, "a new key: {v}");
    assert_eq!(v["slowModeSecs"], 5, "{v}");
    assert!(str_of(&v["banStatus"]).contains("is banned"), "{v}");
    assert_eq!(v["cspViolations"], 0, "{v}");
    assert!(shots.0.join("studio.png").is_file());
    if std::env::var_os("ZEROCAST_UPDATE_SCREENSHOTS").is_some() {
        let dir = repo_root().join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(shots.0.join("studio.png"), dir.join("studio.png")).unwrap();
    }
}

/// A private stream's watch page: without a playback token it says the stream is private;
/// opened with `?token=` it plays.
#[test]
fn private_stream_watch_page_needs_the_playback_token() {
    let _turn = one_at_a_time();
    let server = Server::start("auto", &[]);
    let (key, token) = private_stream(&server, "secret");
    let mut ffmpeg = ffmpeg_publish(
        &server.rtmp_url(&format!("secret?key={key}")),
        40,
        "320x240",
    );
    server.wait_live_with(
        "secret",
        &format!("?token={token}"),
        Duration::from_secs(15),
    );
    let out = Command::new("node")
        .arg(repo_root().join("tests/browser/private.mjs"))
        .args(["--base", &server.url("")])
        .args(["--stream", "secret", "--token", &token])
        .output()
        .expect("node is installed (scripts/setup.sh)");
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let (v, stderr) = harness_report(&out);
    println!("private stream page: {v}");
    assert_eq!(v["error"], serde_json::Value::Null, "{v}\n{stderr}");
    assert!(str_of(&v["withoutToken"]).contains("is private"), "{v}");
    assert_eq!(v["playedWithToken"], true, "{v}\n{}", server.logs());
    assert_eq!(v["noticeWithToken"], "", "{v}");
}

/// The watch page served by an edge, as viewers reach it in a deployment: it plays the stream
/// the edge follows from its origin, and its chat talks to the origin's social API, named by
/// the edge's `pages-api-url` (the edge runs no social API of its own).
#[test]
fn watch_page_on_an_edge_chats_through_the_origins_api() {
    let _turn = one_at_a_time();
    let origin = Server::start_with_env(
        "auto",
        &[],
        &[("ZEROCAST_API_CORS_ORIGINS", "*".to_owned())],
    );
    let api = format!("http://127.0.0.1:{}", origin.api);
    let edge = Server::start_with_env(
        "auto",
        &["--origin", &origin.url(""), "--pages-api-url", &api],
        &[("ZEROCAST_SOCIAL", "false".to_owned())],
    );
    let viewer = user_token(&origin.data, &uuid::Uuid::new_v4().to_string());
    let other = user_token(&origin.data, &uuid::Uuid::new_v4().to_string());
    let owner = user_token(&origin.data, &uuid::Uuid::new_v4().to_string());
    let key = reserve_stream(&origin, &owner, "edgepage", false);
    let mut ffmpeg = ffmpeg_publish(
        &origin.rtmp_url(&format!("edgepage?key={key}")),
        45,
        "640x360",
    );
    origin.wait_live("edgepage", Duration::from_secs(15));
    // The edge's page names the origin's API, and its policy allows it.
    let page = edge.get("/watch/edgepage");
    assert!(page.text().contains(&format!("data-api=\"{api}\"")));
    let csp = page.header("content-security-policy").unwrap_or("");
    assert!(csp.contains(&format!("connect-src 'self' {api} ")), "{csp}");
    let out = Command::new("node")
        .arg("--experimental-websocket")
        .arg(repo_root().join("tests/browser/edge-page.mjs"))
        .args(["--base", &edge.url("")])
        .args(["--api", &api])
        .args(["--stream", "edgepage"])
        .args(["--viewer", &viewer, "--other", &other])
        .output()
        .expect("node is installed (scripts/setup.sh)");
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let (v, stderr) = harness_report(&out);
    println!("watch page on an edge: {v}");
    let run = format!("{v}\n{stderr}\nedge log:\n{}", edge.logs());
    assert_eq!(v["error"], serde_json::Value::Null, "{run}");
    assert_eq!(v["pageApi"], api.as_str(), "{run}");
    assert!(v["played"].as_f64().unwrap_or(0.0) >= 10.0, "{run}");
    assert_eq!(v["pageStalls"], 0, "{run}");
    assert_eq!(v["waitingEvents"], 0, "{run}");
    assert_eq!(v["cspViolations"], 0, "{run}");
    assert_eq!(
        v["state"], "LIVE",
        "the edge lists the stream it follows: {run}"
    );
    let chat_in = v["chatInMs"].as_i64().unwrap_or(-1);
    let chat_out = v["chatOutMs"].as_i64().unwrap_or(-1);
    assert!((0..1000).contains(&chat_in), "{run}");
    assert!((0..1000).contains(&chat_out), "{run}");
    // The media came through the edge: it followed the origin.
    let metrics = edge.get("/metrics").text();
    assert!(
        metric_sum(&metrics, "zerocast_relay_parts_total") > 30.0,
        "the edge followed nothing: {metrics}"
    );
}

/// The JSON a browser harness printed on stdout, and its stderr; panics when it failed.
fn harness_report(out: &Output) -> (serde_json::Value, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "harness failed: {stderr}");
    let v =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {stderr}"));
    (v, stderr)
}

/// A JSON string's text, or "" for anything else.
fn str_of(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("")
}
