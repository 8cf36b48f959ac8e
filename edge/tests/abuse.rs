//! Hostile clients on the plain media ports, bounded, while a well-behaved viewer keeps its
//! keep-alive connection: idle and slowloris HTTP connections, RTMP connections that never
//! publish, and a connection flood past `max-connections`. Deadlines are shortened through the
//! configuration so the test runs in seconds.

// Tests print what they measured; that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const DEADLINE_MS: u64 = 1500;
const MAX_CONNECTIONS: usize = 60;
const PER_ATTACK: usize = 10;

/// Reads until the server closes `s`; returns what it sent, or `None` if still open at `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(got),
        }
    }
    None
}

fn metric(server: &Server, name: &str) -> u64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[test]
fn deadlines_and_connection_cap_hold_while_a_viewer_watches() {
    // The deadlines have no flags; the environment sets them like any key.
    let server = Server::start_with_env(
        "auto",
        &["--max-connections", &MAX_CONNECTIONS.to_string()],
        &[
            ("ZEROCAST_HTTP_HEAD_TIMEOUT", DEADLINE_MS.to_string()),
            ("ZEROCAST_RTMP_PUBLISH_TIMEOUT", DEADLINE_MS.to_string()),
        ],
    );
    let s = &server;
    let mut ffmpeg = ffmpeg_publish(&s.rtmp_url("steady"), 60, "320x240");
    let media = s.wait_live("steady", Duration::from_secs(20));

    // The well-behaved viewer: one keep-alive connection, the media playlist every 200 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let viewer = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let port = s.http;
        let media = media.clone();
        std::thread::spawn(move || {
            let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut conn = conn;
            while !stop.load(Ordering::Relaxed) {
                let sent = write!(conn, "GET {media} HTTP/1.1\r\nHost: x\r\n\r\n");
                match sent.and_then(|_| read_response(&mut reader)) {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();

    // Idle HTTP connections, slowloris heads (a byte every 300 ms), RTMP that never publishes.
    let mut idle: Vec<TcpStream> = (0..PER_ATTACK)
        .map(|_| TcpStream::connect(("127.0.0.1", s.http)).unwrap())
        .collect();
    let mut slow: Vec<TcpStream> = (0..PER_ATTACK)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
            c.write_all(b"GET /api/streams HTTP/1.1\r\n").unwrap();
            c
        })
        .collect();
    let mut rtmp: Vec<TcpStream> = (0..PER_ATTACK)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", s.rtmp)).unwrap();
            // RTMP C0 and the start of C1, then nothing.
            c.write_all(&[3u8; 100]).unwrap();
            c
        })
        .collect();
    let drip = {
        let mut copies: Vec<TcpStream> = slow.iter().map(|c| c.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            for _ in 0..20 {
                for c in &mut copies {
                    let _ = c.write_all(b"X");
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };

    // A flood past the cap: the connections over it are closed at once.
    let before_flood = metric(s, "zerocast_limit_hits_total{limit=\"max_connections\"}");
    let mut flood: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(("127.0.0.1", s.http)).unwrap())
        .collect();
    // Refused by the cap: closed with no byte. Admitted: idle, so cut by the head deadline (408).
    let (mut refused_at_once, mut admitted) = (0, 0);
    for c in &mut flood {
        match closed_within(c, Duration::from_secs(6)).as_deref() {
            Some([]) => refused_at_once += 1,
            Some(got) if got.starts_with(b"HTTP/1.1 408") => admitted += 1,
            other => panic!("a flood connection was neither refused nor cut: {other:?}"),
        }
    }
    println!("flood of {MAX_CONNECTIONS}: {refused_at_once} refused by the cap, {admitted} admitted and cut by the head deadline");
    assert!(
        refused_at_once >= PER_ATTACK,
        "with {} attackers and a viewer open, at least {PER_ATTACK} of the flood exceed the cap of {MAX_CONNECTIONS}",
        3 * PER_ATTACK
    );

    // Every attacker is cut at its deadline (1.5 s), well within 6 s.
    let limit = Duration::from_secs(6);
    for c in &mut idle {
        let got = closed_within(c, limit).expect("an idle connection was never closed");
        assert!(
            got.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    for c in &mut slow {
        let got = closed_within(c, limit).expect("a slowloris connection was never closed");
        assert!(
            got.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    for c in &mut rtmp {
        assert!(
            closed_within(c, limit).is_some(),
            "an RTMP connection that never published was never closed"
        );
    }
    let cut_after = started.elapsed();
    drop(flood);
    drip.join().unwrap();

    // With the attackers gone, new connections are served again.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.get("/api/streams").status, 200);
    stop.store(true, Ordering::Relaxed);
    viewer.join().unwrap();
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();

    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("viewer: {ok} playlists on its keep-alive connection, {failed} failures; attackers cut after {cut_after:?}");
    assert_eq!(failed, 0, "the viewer was disturbed");
    assert!(ok >= 10, "{ok}");

    // One line per offender, and the metrics count each limit.
    let logs = s.logs();
    let lines = |needle: &str| logs.lines().filter(|l| l.contains(needle)).count();
    // The flood's connections that got in were idle too: cut by the same deadline.
    let heads = 2 * PER_ATTACK + admitted;
    assert_eq!(
        lines("request head not complete"),
        heads,
        "idle, slowloris and admitted flood connections, one line each:\n{logs}"
    );
    // ... at the configured deadline, not the default one.
    assert_eq!(
        lines(&format!(
            "request head not complete within {DEADLINE_MS} ms"
        )),
        heads
    );
    assert_eq!(
        lines(&format!("no publish within {DEADLINE_MS} ms")),
        PER_ATTACK,
        "{logs}"
    );
    assert!(lines("max-connections") >= 1, "{logs}");
    assert_eq!(
        metric(s, "zerocast_limit_hits_total{limit=\"http_head_timeout\"}"),
        heads as u64
    );
    assert_eq!(
        metric(
            s,
            "zerocast_limit_hits_total{limit=\"rtmp_publish_timeout\"}"
        ),
        PER_ATTACK as u64
    );
    assert!(
        metric(s, "zerocast_limit_hits_total{limit=\"max_connections\"}") - before_flood
            >= refused_at_once as u64
    );
}
