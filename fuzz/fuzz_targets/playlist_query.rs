//! Playlist request query strings (`_HLS_msn`, `_HLS_part`, `_HLS_skip`), as a viewer sends
//! them, parsed and then asked of a live playlist.
//!
//! Invariants: parsing never panics; an accepted query's directives survive a round trip; a
//! part without an msn is always a bad request; `reload` answers without panicking for every
//! accepted query, and a query for a part the playlist already has is `Ready`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zerocast_core::Timestamp;
use zerocast_packager::{MediaPlaylist, PlaylistConfig, Query, Reload, Skip};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(q) = Query::parse(text) else {
        return;
    };
    let mut again = String::new();
    if let Some(m) = q.msn {
        again.push_str(&format!("_HLS_msn={m}&"));
    }
    if let Some(p) = q.part {
        again.push_str(&format!("_HLS_part={p}&"));
    }
    match q.skip {
        Skip::No => {}
        Skip::Yes => again.push_str("_HLS_skip=YES"),
        Skip::V2 => again.push_str("_HLS_skip=v2"),
    }
    assert_eq!(Query::parse(&again), Ok(q), "round trip of {text:?}");

    // A playlist with segments 0..=2 complete (10 parts each) and segment 3 holding one part.
    let mut pl = MediaPlaylist::new(PlaylistConfig::default());
    for s in 0..3 {
        for i in 0..10 {
            pl.push_part(0.2, i == 0, s * 2000, Timestamp::from_millis(s * 2000), 1, false);
        }
        pl.close_segment();
    }
    pl.push_part(0.2, true, 6000, Timestamp::from_millis(6000), 1, false);
    let answer = pl.reload(&q);
    if q.msn.is_none() && q.part.is_some() {
        assert!(matches!(answer, Reload::BadRequest(_)));
    }
    if let (Some(m), Some(p)) = (q.msn, q.part) {
        if m < 3 || (m == 3 && p == 0) {
            assert_eq!(answer, Reload::Ready, "{text:?}");
        }
    }
    let mut out = String::new();
    pl.render(&mut out, q.skip).expect("rendering into a String");
});
