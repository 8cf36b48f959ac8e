//! Hostile clients on every TLS port, bounded, while a well-behaved HTTP/2 viewer keeps
//! watching: TLS garbage, clients that stop mid-handshake, HTTP/2 rapid reset
//! (CVE-2023-44487), oversized header lists, UDP garbage and a flood of new QUIC connections.
//! The viewer must see no error, the server logs one line per offending TCP connection, and
//! its memory stays flat.
//!
//! Needs `scripts/setup.sh` (ffmpeg, curl, python3 with aioquic and h2).

// Tests print what they measured; that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Offending connections per TLS port and kind of attack.
const PER_PORT: usize = 8;

/// Waits until the server closes `s` (EOF or reset); false if it is still open at `limit`.
fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

fn python(args: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .args(args)
        .output()
        .expect("python3 is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn hostile_tls_clients_do_not_disturb_a_viewer() {
    let api_https = free_port();
    let tls = TlsServer::start(
        "tls-abuse",
        &["--api-https", &format!("127.0.0.1:{api_https}")],
        &[],
    );
    let (https, rtmps, server) = (tls.https, tls.rtmps, &tls.server);
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("calm"), 90, "320x240");
    let media = server.wait_live("calm", Duration::from_secs(20));
    let pid = server.child.id();

    // The well-behaved viewer: the media playlist over HTTP/2, every 200 ms, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let viewer = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let url = format!("https://127.0.0.1:{https}{media}");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new("curl")
                    .args(["-sk", "--http2", "--max-time", "5", "-o", "/dev/null"])
                    .args(["-w", "%{http_code} %{http_version}", &url])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout) == "200 2" {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = rss_kib(pid);
    let tls_ports = [("https", https), ("rtmps", rtmps), ("api-https", api_https)];

    // 1. TLS garbage: the server answers with an alert or closes, at once.
    for (name, port) in tls_ports {
        for _ in 0..PER_PORT {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = s.write_all(&[0x47; 1024]);
            assert!(
                closed_by_server(&mut s, Duration::from_secs(5)),
                "{name}: garbage left the connection open"
            );
        }
    }

    // 2. Clients that stop mid-handshake: a record header announcing 512 bytes, then nothing.
    let mut stalled = Vec::new();
    for (name, port) in tls_ports {
        for _ in 0..PER_PORT {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
            stalled.push((name, s));
        }
    }

    // 3. HTTP/2 rapid reset and oversized header lists (meanwhile, the stalled clients wait).
    let attack = repo_root().join("tests/h2/attack.py");
    let attack = attack.to_str().unwrap();
    let connect = format!("127.0.0.1:{https}");
    for _ in 0..3 {
        let r = python(&[attack, "--connect", &connect, "rapid-reset"]);
        println!("rapid reset: {r}");
        assert_eq!(r["goaway"], "11", "GOAWAY ENHANCE_YOUR_CALM: {r}");
        assert!(r["streams_sent"].as_u64().unwrap() < 20_000, "{r}");
    }
    for _ in 0..2 {
        let r = python(&[
            attack,
            "--connect",
            &connect,
            "big-headers",
            "--bytes",
            "65536",
        ]);
        println!("big headers: {r}");
        assert!(
            r["closed"] == true || r["statuses"]["431"].as_u64().is_some(),
            "{r}"
        );
    }

    // 4. UDP garbage at the QUIC port, then a flood of real new QUIC connections.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut junk = [0u8; 1200];
    for i in 0..2000u32 {
        for (j, b) in junk.iter_mut().enumerate() {
            *b = (i.wrapping_mul(2654435761) >> (j % 24)) as u8;
        }
        let _ = udp.send_to(&junk, ("127.0.0.1", https));
    }
    let get = repo_root().join("tests/h3/get.py");
    let flood = python(&[
        get.to_str().unwrap(),
        "--connect",
        &connect,
        "--insecure",
        "--flood",
        "150",
        "--hold",
        "2",
        "/api/streams",
    ]);
    println!("QUIC flood: {flood}");
    assert_eq!(
        flood["answered"], 150,
        "below its limits every QUIC client is served: {flood}"
    );

    // The stalled handshakes are cut at the deadline (10 s, counted from their connect).
    for (name, mut s) in stalled {
        assert!(
            closed_by_server(&mut s, Duration::from_secs(15)),
            "{name}: a stalled handshake was never closed"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib(pid);
    stop.store(true, Ordering::Relaxed);
    viewer.join().unwrap();
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();

    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "viewer: {ok} playlists over h2, {failed} failures; server RSS {} -> {} MiB",
        rss_before / 1024,
        rss_after / 1024
    );
    assert_eq!(failed, 0, "the viewer was disturbed");
    assert!(ok > 20, "the viewer kept being served: {ok}");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );

    // One log line per offending TCP connection, naming the peer.
    let logs = server.logs();
    let count = |needle: &str| logs.lines().filter(|l| l.contains(needle)).count();
    let media_failed = count("TLS handshake failed") - count("social API: TLS handshake failed");
    let media_timed_out =
        count("TLS handshake timed out") - count("social API: TLS handshake timed out");
    assert_eq!(
        media_failed,
        2 * PER_PORT,
        "garbage on https and rtmps:\n{logs}"
    );
    assert_eq!(
        count("social API: TLS handshake failed"),
        PER_PORT,
        "{logs}"
    );
    assert_eq!(
        media_timed_out,
        2 * PER_PORT,
        "stalled on https and rtmps:\n{logs}"
    );
    assert_eq!(
        count("social API: TLS handshake timed out"),
        PER_PORT,
        "{logs}"
    );
    assert_eq!(
        count("h2 connection closed"),
        5,
        "rapid reset and big headers:\n{logs}"
    );
}

/// HTTP/3 connections count toward `max-connections-per-ip` with the TCP ones (once their
/// handshake proved the address): with the address's places taken by two TCP connections, a
/// QUIC client is closed; with one place free, it is served.
#[test]
fn http3_counts_toward_the_per_address_cap() {
    let tls = TlsServer::start(
        "h3-per-ip",
        &[],
        &[("ZEROCAST_MAX_CONNECTIONS_PER_IP", "2".into())],
    );
    let (https, server) = (tls.https, &tls.server);
    let h3_get = || {
        Command::new("python3")
            .arg(repo_root().join("tests/h3/get.py"))
            .args(["--connect", &format!("127.0.0.1:{https}"), "--insecure"])
            .arg("/api/streams")
            .output()
            .expect("python3 is installed")
    };
    // Both places of 127.0.0.1 taken (the server start's probe connection has gone by now).
    std::thread::sleep(Duration::from_millis(300));
    let first = TcpStream::connect(("127.0.0.1", server.http)).unwrap();
    let second = TcpStream::connect(("127.0.0.1", server.http)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let refused = h3_get();
    assert!(
        !refused.status.success(),
        "served over HTTP/3 past the cap: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    let served = h3_get();
    assert!(
        served.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&served.stdout),
        String::from_utf8_lossy(&served.stderr)
    );
    drop(second);
    std::thread::sleep(Duration::from_millis(300));
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains(r#"zerocast_limit_hits_total{limit="max_connections_per_ip"}"#)
            && !metrics.contains(r#"zerocast_limit_hits_total{limit="max_connections_per_ip"} 0"#),
        "{metrics}"
    );
}
