//! zerocast behind a standard HTTP cache: nginx `proxy_cache` (Debian `nginx-light`) in front
//! of the real binary, ffmpeg publishing, and many LL-HLS viewers (plain HTTP/1.1 clients doing
//! what a player does: blocking playlist reloads, then the parts they announce) reading only
//! from the cache. The origin's own request counters (`/metrics`) say how many requests got
//! through.

// Tests print what they measured; that is their report.
#![allow(clippy::print_stdout)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use zerocast_packager::check;

/// Viewers behind the cache, and how long they watch.
const VIEWERS: usize = 500;
const WATCH: Duration = Duration::from_secs(15);

/// 500 LL-HLS viewers through nginx `proxy_cache`: the origin answers about one blocking
/// reload and one fetch per part, not one per viewer; no viewer is handed a playlist older
/// than the part it blocked for; every viewer gets parts.
#[test]
fn viewers_behind_nginx_proxy_cache_cost_the_origin_about_one_request_per_part() {
    let server = Server::start("auto", BEHIND_A_CACHE);
    let cache = NginxCache::start(server.http);
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("cached"), 30, "640x360");
    let media = server.wait_live("cached", Duration::from_secs(15));

    // Through the cache, a blocking reload carries zerocast's cache policy and is kept.
    let probe = http_get(cache.port, &media, Duration::from_secs(10)).unwrap();
    assert_eq!(probe.header("cache-control"), Some("no-cache"));
    let pl = check::parse(&probe.text()).unwrap();
    let (m, n) = pl.next_part().unwrap();
    let q = format!("{media}?_HLS_msn={m}&_HLS_part={n}");
    let a = http_get(cache.port, &q, Duration::from_secs(10)).unwrap();
    let b = http_get(cache.port, &q, Duration::from_secs(10)).unwrap();
    assert_eq!(a.status, 200, "{}", cache.logs());
    assert_eq!(a.header("cache-control"), Some("public, max-age=1"));
    assert_eq!(b.header("x-cache-status"), Some("HIT"), "{:?}", b.headers);
    assert_eq!(a.body, b.body);

    let before = RequestCounts::of(&server);
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + WATCH;
    let viewers = llhls_crowd(VIEWERS, cache.port, &media, end, &tally);
    for v in viewers {
        v.join().unwrap();
    }
    let after = RequestCounts::of(&server);
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();

    let RequestCounts {
        playlists,
        parts,
        made,
    } = after.since(before);
    let t = &*tally;
    let reloads = t.reloads.load(Ordering::Relaxed);
    println!(
        "{VIEWERS} viewers for {WATCH:?} through nginx: {reloads} blocking reloads and {} parts \
         served; the origin made {made} parts and answered {playlists} playlist requests \
         ({VIEWERS} of them first loads) and {parts} part requests",
        t.parts.load(Ordering::Relaxed),
    );
    assert_eq!(t.errors.load(Ordering::Relaxed), 0, "{}", cache.logs());
    assert_eq!(t.stale.load(Ordering::Relaxed), 0, "stale playlists");
    assert_eq!(t.served.load(Ordering::Relaxed), VIEWERS as u64);
    assert!(made >= 40.0, "only {made} parts in {WATCH:?}");
    // Without the cache every viewer's reload and part would reach the origin: about
    // VIEWERS × made of each. A part fetch is merged (lock) and then kept (immutable); a
    // reload is merged and kept for a second, so a viewer asking for a part more than a
    // second after the first one costs one more (immediate) answer.
    assert!(
        parts <= made * 1.5 + 5.0,
        "{parts} part requests at the origin for {made} parts"
    );
    assert!(
        playlists - VIEWERS as f64 <= made * 3.0,
        "{playlists} playlist requests at the origin for {made} parts"
    );
}
