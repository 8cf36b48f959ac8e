//! Publish and playback authorization in the real binary, with real ffmpeg: stream keys of
//! reserved names (and their rotation), the reconnect grace window that only the owner may
//! resume, the publish webhook, and private streams behind playback tokens.

// Tests print what they did; that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{api_call, ffmpeg_publish, free_port, reserve_stream, user_token, Server};

fn json(r: &common::Resp) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// Waits for ffmpeg to exit; whether it succeeded, and what it printed.
fn finished(mut ff: Child, within: Duration) -> (bool, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = ff.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = ff.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return (status.success(), err);
        }
        if Instant::now() > deadline {
            let _ = ff.kill();
            let _ = ff.wait();
            return (true, "still running (so it was accepted)".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stream instance named in the multivariant playlist (`EPOCH/stream.m3u8`).
fn instance(server: &Server, name: &str) -> String {
    let text = server.get(&format!("/live/{name}/index.m3u8")).text();
    text.lines()
        .last()
        .and_then(|l| l.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// A user whose token the server's own secret signed.
fn user(server: &Server) -> String {
    user_token(&server.data, &uuid::Uuid::new_v4().to_string())
}

#[test]
fn keys_rotation_and_the_grace_window_belong_to_the_owner() {
    // 127.0.0.1 (where ffmpeg connects from) is not trusted here: it plays a remote publisher.
    let server = Server::start_with_env(
        "auto",
        &["--reconnect-grace", "15000"],
        &[("ZEROCAST_PUBLISH_TRUSTED_NETS", "127.0.0.2".into())],
    );
    let (alice, mallory) = (user(&server), user(&server));
    let key = reserve_stream(&server, &alice, "show", false);
    // The name is taken for everyone else.
    let r = api_call(
        server.api,
        "POST",
        "/api/v1/streams",
        &mallory,
        Some(r#"{"name":"show"}"#),
    );
    assert_eq!(r.status, 409, "{}", r.text());

    // No key, a wrong key, and an unreserved name from an untrusted address: all refused.
    for (name, why) in [
        ("show", "a stream key is required"),
        ("show?key=zck_wrong", "wrong stream key"),
        ("free", "not registered"),
    ] {
        let (ok, err) = finished(
            ffmpeg_publish(&server.rtmp_url(name), 5, "320x240"),
            Duration::from_secs(15),
        );
        assert!(!ok, "{name} was accepted: {err}");
        let logs = server.logs();
        assert!(
            logs.contains("publish refused") && logs.contains(why),
            "{name}: {logs}"
        );
    }

    // With the key it goes live.
    let mut ff = ffmpeg_publish(&server.rtmp_url(&format!("show?key={key}")), 60, "320x240");
    server.wait_live("show", Duration::from_secs(20));
    let first = instance(&server, "show");

    // Only alice may rotate; after rotating, the old key stops working.
    let r = api_call(
        server.api,
        "POST",
        "/api/v1/streams/show/key",
        &mallory,
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = api_call(
        server.api,
        "POST",
        "/api/v1/streams/show/key",
        &alice,
        Some("{}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let new_key = json(&r)["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);

    // The publisher drops: the stream waits for it (grace window). A hijack with the old key
    // is refused and does not take the stream over...
    let _ = ff.kill();
    let _ = ff.wait();
    std::thread::sleep(Duration::from_millis(500));
    let (ok, err) = finished(
        ffmpeg_publish(&server.rtmp_url(&format!("show?key={key}")), 5, "320x240"),
        Duration::from_secs(15),
    );
    assert!(!ok, "the old key was accepted: {err}");
    // ...while the owner's reconnect with the current key continues the same instance.
    let mut ff = ffmpeg_publish(
        &server.rtmp_url(&format!("show?key={new_key}")),
        60,
        "320x240",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.logs().matches("publish started").nth(1).is_none() {
        assert!(Instant::now() < deadline, "{}", server.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(instance(&server, "show"), first, "the stream continued");
    let _ = ff.kill();
    let _ = ff.wait();

    // Releasing the name: the owner only.
    let r = api_call(server.api, "DELETE", "/api/v1/streams/show", &mallory, None);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = api_call(server.api, "DELETE", "/api/v1/streams/show", &alice, None);
    assert_eq!(r.status, 204, "{}", r.text());
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("zerocast_publish_refused_total 4"),
        "{metrics}"
    );
}

/// A webhook that allows the key `good`, and records every call.
fn webhook() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let (mut line, mut len) = (String::new(), 0usize);
            r.read_line(&mut line).unwrap();
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let allow = body.contains(r#""key":"good""#) || path == "/done";
            seen.lock().unwrap().push(format!("{path} {body}"));
            let status = if allow {
                "204 No Content"
            } else {
                "403 Forbidden"
            };
            let _ = write!(
                r.get_mut(),
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (port, calls)
}

#[test]
fn the_webhook_allows_and_denies() {
    let (port, calls) = webhook();
    let server = Server::start_with_env(
        "auto",
        &[
            "--publish-auth",
            "webhook",
            "--publish-webhook",
            &format!("http://127.0.0.1:{port}/auth"),
        ],
        &[(
            "ZEROCAST_UNPUBLISH_WEBHOOK",
            format!("http://127.0.0.1:{port}/done"),
        )],
    );
    let (ok, err) = finished(
        ffmpeg_publish(&server.rtmp_url("hooked?key=bad"), 5, "320x240"),
        Duration::from_secs(15),
    );
    assert!(!ok, "denied by the webhook, yet accepted: {err}");
    assert!(server
        .logs()
        .contains("denied by the publish webhook (HTTP 403)"));

    let mut ff = ffmpeg_publish(&server.rtmp_url("hooked?key=good"), 60, "320x240");
    server.wait_live("hooked", Duration::from_secs(20));
    let _ = ff.kill();
    let _ = ff.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !calls.lock().unwrap().iter().any(|c| c.starts_with("/done")) {
        assert!(Instant::now() < deadline, "no unpublish call: {:?}", calls);
        std::thread::sleep(Duration::from_millis(100));
    }
    let calls = calls.lock().unwrap();
    println!("webhook calls: {calls:#?}");
    let auth: Vec<_> = calls.iter().filter(|c| c.starts_with("/auth")).collect();
    assert_eq!(auth.len(), 2, "{calls:?}");
    for field in [
        r#""app":"live""#,
        r#""name":"hooked""#,
        r#""client_ip":"127.0.0.1""#,
    ] {
        assert!(auth[1].contains(field), "{field} in {}", auth[1]);
    }
}

#[test]
fn the_webhook_unreachable_denies() {
    let dead = free_port();
    let server = Server::start(
        "auto",
        &[
            "--publish-auth",
            "webhook",
            "--publish-webhook",
            &format!("http://127.0.0.1:{dead}/auth"),
        ],
    );
    let (ok, _) = finished(
        ffmpeg_publish(&server.rtmp_url("nobody"), 5, "320x240"),
        Duration::from_secs(15),
    );
    assert!(!ok);
    assert!(
        server.logs().contains("publish webhook did not answer"),
        "{}",
        server.logs()
    );
}

#[test]
fn a_private_stream_needs_a_playback_token() {
    let server = Server::start("auto", &[]);
    let (owner, viewer) = (user(&server), user(&server));
    let key = reserve_stream(&server, &owner, "secret", true);
    let mut ff = ffmpeg_publish(
        &server.rtmp_url(&format!("secret?key={key}")),
        20,
        "320x240",
    );
    // Only the owner mints tokens.
    let r = api_call(
        server.api,
        "POST",
        "/api/v1/streams/secret/playback-token",
        &viewer,
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = api_call(
        server.api,
        "POST",
        "/api/v1/streams/secret/playback-token",
        &owner,
        Some(r#"{"ttl_secs":600}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = json(&r)["token"].as_str().unwrap().to_owned();

    // Without a token, or with a forged one: 403 on the playlist and on media.
    let deadline = Instant::now() + Duration::from_secs(20);
    let multivariant = loop {
        let r = server.get(&format!("/live/secret/index.m3u8?token={token}"));
        if r.status == 200 {
            break r.text();
        }
        assert!(Instant::now() < deadline, "{} {}", r.status, server.logs());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(server.get("/live/secret/index.m3u8").status, 403);
    let listed: serde_json::Value =
        serde_json::from_slice(&server.get("/api/streams").body).unwrap();
    assert_eq!(listed["streams"][0]["name"], "secret", "{listed}");
    assert_eq!(listed["streams"][0]["private"], true, "{listed}");
    let forged = format!("9999999999.{}", token.split_once('.').unwrap().1);
    assert_eq!(
        server
            .get(&format!("/live/secret/index.m3u8?token={forged}"))
            .status,
        403
    );
    // The token travels into every URI the playlists list.
    let media_uri = multivariant.lines().last().unwrap().to_owned();
    assert!(
        media_uri.ends_with(&format!("?token={token}")),
        "{multivariant}"
    );
    let epoch = media_uri.split('/').next().unwrap();
    let text = loop {
        let media = server.get(&format!("/live/secret/{media_uri}"));
        assert_eq!(media.status, 200);
        let text = media.text();
        if text.contains("#EXTINF") {
            break text;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(20),
            "{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for tag in ["#EXT-X-MAP:", "#EXT-X-PART:", "#EXT-X-PRELOAD-HINT:"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(tag))
            .unwrap_or_default();
        assert!(
            line.contains(&format!("?token={token}\"")),
            "{tag} in {text}"
        );
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.ends_with(&format!("?token={token}")), "{line}");
    }
    assert_eq!(
        server
            .get(&format!("/live/secret/{epoch}/stream.m3u8"))
            .status,
        403
    );
    // A player that knows nothing of tokens decodes it from the tokenized URL alone.
    let (streams, err) =
        common::ffprobe_count(&server.url(&format!("/live/secret/index.m3u8?token={token}")));
    assert!(
        streams.iter().any(|(c, n)| c == "h264" && *n > 0),
        "{streams:?} {err}"
    );
    let _ = ff.kill();
    let _ = ff.wait();
    let metrics = server.get("/metrics").text();
    // Three refusals above: no token, a forged token, and the media playlist without one.
    assert!(
        metrics.contains("zerocast_playback_refused_total 3\n"),
        "{metrics}"
    );
}
