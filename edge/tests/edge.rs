//! Edge mode: real `zerocast` processes on loopback, an origin published to by ffmpeg and
//! edges started with `--origin`, LL-HLS viewers (plain HTTP/1.1 clients doing what a player
//! does) reading only from the edges. The origin's own `/metrics` count what reached it.

// Tests print what they measured; that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use zerocast_packager::check;
use zerocast_packager::Pdt;

const VIEWERS_PER_EDGE: usize = 300;

fn edge_of(origin: &Server) -> Server {
    edge_of_urls(&format!("http://127.0.0.1:{}", origin.http))
}

/// An edge of these origins (comma-separated URLs, tried in turn).
fn edge_of_urls(urls: &str) -> Server {
    // Every viewer here comes from 127.0.0.1: no per-address cap.
    Server::start("auto", &["--origin", urls, "--max-connections-per-ip", "0"])
}

fn report(what: &str, t: &Tally) {
    println!(
        "{what}: {} reloads, {} parts, {} retried 503s, {} viewers served, {} saw a \
         discontinuity, {} played on after it, {} errors, {} stale",
        t.reloads.load(Ordering::Relaxed),
        t.parts.load(Ordering::Relaxed),
        t.retries.load(Ordering::Relaxed),
        t.served.load(Ordering::Relaxed),
        t.discontinuities.load(Ordering::Relaxed),
        t.continued.load(Ordering::Relaxed),
        t.errors.load(Ordering::Relaxed),
        t.stale.load(Ordering::Relaxed),
    );
}

/// An origin, two edges, 300 viewers on each: the origin answers one part request and one
/// blocking reload per part per edge, whatever the number of viewers. Then the origin is
/// restarted (and its publisher comes back): the edges' viewers wait, get a discontinuity on
/// the same stream and go on playing.
#[test]
fn two_edges_cost_the_origin_one_fetch_per_part_and_ride_out_an_origin_restart() {
    let mut origin = Server::start("auto", &[]);
    let edges = [edge_of(&origin), edge_of(&origin)];
    let mut ffmpeg = ffmpeg_publish(&origin.rtmp_url("relayed"), 60, "640x360");
    origin.wait_live("relayed", Duration::from_secs(15));
    let media: Vec<String> = edges
        .iter()
        .map(|e| e.wait_live("relayed", Duration::from_secs(20)))
        .collect();

    // What one tier adds: a blocking reload for the next part on the origin and on an edge;
    // each answer's newest media (its last part's end, by PROGRAM-DATE-TIME, which the edge
    // copies from the origin) against when it arrived.
    let origin_media = origin.wait_live("relayed", Duration::from_secs(5));
    let lag = |port: u16, path: &str| -> Vec<f64> {
        let mut out = Vec::new();
        let mut pl = check::parse(
            &http_get(port, path, Duration::from_secs(10))
                .unwrap()
                .text(),
        )
        .unwrap();
        for _ in 0..15 {
            let (m, p) = pl.next_part().unwrap();
            let q = format!("{path}?_HLS_msn={m}&_HLS_part={p}");
            let r = http_get(port, &q, Duration::from_secs(10)).unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                * 1000.0;
            pl = check::parse(&r.text()).unwrap();
            let last = pl.segments.last().unwrap();
            let start = Pdt::parse_us(last.program_date_time.as_deref().unwrap()).unwrap();
            let listed: f64 = last.parts.iter().map(|p| p.duration).sum();
            out.push(now - (start as f64 / 1000.0 + listed * 1000.0));
        }
        out.sort_by(f64::total_cmp);
        out
    };
    let from_origin = lag(origin.http, &origin_media);
    let from_edge = lag(edges[0].http, &media[0]);
    println!(
        "newest media on arrival, median: origin {:.0} ms, edge {:.0} ms (one tier adds {:.0} ms)",
        from_origin[7],
        from_edge[7],
        from_edge[7] - from_origin[7]
    );

    // Steady state: 300 viewers on each edge.
    let before = RequestCounts::of(&origin);
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + Duration::from_secs(15);
    let crowds: Vec<_> = edges
        .iter()
        .zip(&media)
        .flat_map(|(e, m)| llhls_crowd(VIEWERS_PER_EDGE, e.http, m, end, &tally))
        .collect();
    for c in crowds {
        c.join().unwrap();
    }
    let after = RequestCounts::of(&origin);
    let RequestCounts {
        playlists,
        parts,
        made,
    } = after.since(before);
    report("steady, 2 x 300 viewers on edges", &tally);
    println!(
        "the origin made {made} parts and answered {parts} part requests and {playlists} \
         playlist requests"
    );
    let t = &*tally;
    assert_eq!(t.errors.load(Ordering::Relaxed), 0);
    assert_eq!(t.stale.load(Ordering::Relaxed), 0, "stale playlists");
    assert_eq!(
        t.served.load(Ordering::Relaxed),
        2 * VIEWERS_PER_EDGE as u64
    );
    assert!(made >= 40.0, "only {made} parts");
    // One fetch per part per edge: the parts made in the window, give or take the one being
    // fetched at each end of it.
    assert!(
        (parts - 2.0 * made).abs() <= 4.0,
        "{parts} part requests at the origin for {made} parts and 2 edges"
    );
    assert!(
        playlists <= 2.0 * made + 4.0,
        "{playlists} playlist requests at the origin for {made} parts and 2 edges"
    );
    for e in &edges {
        let relayed = metric_sum(&e.get("/metrics").text(), "zerocast_relay_parts_total");
        println!("an edge fetched {relayed} parts in all");
        assert!(relayed >= made, "an edge fetched {relayed} parts");
    }

    // The origin restarts mid-run; its publisher comes back.
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + Duration::from_secs(30);
    let crowds: Vec<_> = edges
        .iter()
        .zip(&media)
        .flat_map(|(e, m)| llhls_crowd(VIEWERS_PER_EDGE, e.http, m, end, &tally))
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let down = Instant::now();
    origin.restart();
    ffmpeg = ffmpeg_publish(&origin.rtmp_url("relayed"), 60, "640x360");
    origin.wait_live("relayed", Duration::from_secs(15));
    println!("origin back and live after {:?}", down.elapsed());
    for c in crowds {
        c.join().unwrap();
    }
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    report("through an origin restart", &tally);
    let t = &*tally;
    let all = 2 * VIEWERS_PER_EDGE as u64;
    let logs = || format!("{}\n{}", edges[0].logs(), edges[1].logs());
    assert_eq!(t.errors.load(Ordering::Relaxed), 0, "{}", logs());
    assert_eq!(t.stale.load(Ordering::Relaxed), 0);
    assert_eq!(t.discontinuities.load(Ordering::Relaxed), all, "{}", logs());
    assert_eq!(t.continued.load(Ordering::Relaxed), all, "{}", logs());
}

/// A name the origin does not have is a 404 on the edge, quickly, and costs the origin one
/// request while it is remembered as missing. An edge of an edge, whose first origin URL is
/// down (failover to the next), serves the same stream, to its end: the origin's
/// `EXT-X-ENDLIST` reaches the far edge, where ffprobe reads it all.
#[test]
fn missing_names_and_an_edge_of_an_edge() {
    let origin = Server::start("auto", &["--reconnect-grace", "1000"]);
    let edge = edge_of(&origin);
    let down = free_port();
    let far = edge_of_urls(&format!(
        "http://127.0.0.1:{down},http://127.0.0.1:{}",
        edge.http
    ));
    let started = Instant::now();
    assert_eq!(edge.get("/live/nothing/index.m3u8").status, 404);
    println!("404 for an unknown name after {:?}", started.elapsed());
    let before = RequestCounts::of(&origin).playlists;
    for _ in 0..20 {
        assert_eq!(edge.get("/live/nothing/index.m3u8").status, 404);
    }
    let asked = RequestCounts::of(&origin).playlists - before;
    assert!(
        asked <= 2.0,
        "20 requests for a missing name cost the origin {asked}"
    );

    let mut ffmpeg = ffmpeg_publish(&origin.rtmp_url("chain"), 8, "320x240");
    origin.wait_live("chain", Duration::from_secs(15));
    far.wait_live("chain", Duration::from_secs(20));
    let (counts, err) = ffprobe_count(&far.url("/live/chain/index.m3u8"));
    let _ = ffmpeg.wait();
    // The origin's stream, ended and lingering: the same frames, none twice, none lost.
    let (at_origin, _) = ffprobe_count(&origin.url("/live/chain/index.m3u8"));
    println!("ffprobe through two edges, to the end: {counts:?}; at the origin: {at_origin:?}");
    assert!(
        counts.iter().any(|(c, n)| c == "h264" && *n > 100),
        "{counts:?}: {err}"
    );
    assert!(
        counts.iter().any(|(c, n)| c == "aac" && *n > 100),
        "{counts:?}"
    );
    assert_eq!(counts, at_origin);
}

/// A stream nobody watches on an edge is dropped after `edge-linger`, and the edge stops
/// fetching it; the next viewer starts following it again.
#[test]
fn an_unwatched_stream_is_dropped_after_edge_linger() {
    let origin = Server::start("auto", &[]);
    let url = format!("http://127.0.0.1:{}", origin.http);
    let edge = Server::start("auto", &["--origin", &url, "--edge-linger", "1000"]);
    let mut ffmpeg = ffmpeg_publish(&origin.rtmp_url("lingering"), 30, "320x240");
    origin.wait_live("lingering", Duration::from_secs(15));
    let first = edge.wait_live("lingering", Duration::from_secs(20));
    let relayed = || metric_sum(&edge.get("/metrics").text(), "zerocast_relay_parts_total");
    let listed = || edge.get("/api/streams").text().contains("\"lingering\"");
    assert!(listed());
    // Every request above closed its connection: nobody watches now.
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed() {
        assert!(Instant::now() < deadline, "still followed: {}", edge.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped = relayed();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        relayed(),
        stopped,
        "parts still fetched after the stream was dropped"
    );
    // A new viewer: followed again, as a new instance of the stream.
    let again = edge.wait_live("lingering", Duration::from_secs(20));
    assert_ne!(again, first);
    assert!(relayed() > stopped);
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
}
