//! LL-HLS media playlists, as an edge reads them from its origin, into the playlist reader
//! (`zerocast_packager::check::parse`) and the checks run on it.
//!
//! Invariants: no panic, whatever the text; a parsed playlist's segments are in media-sequence
//! order and its next part comes after its last listed part.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zerocast_packager::check;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(pl) = check::parse(text) else {
        return;
    };
    for w in pl.segments.windows(2) {
        assert_eq!(w[1].msn, w[0].msn + 1);
    }
    if let (Some(last), Some(next)) = (pl.last_part(), pl.next_part()) {
        assert!(next > last, "{last:?} then {next:?}");
    }
    let _ = check::violations(&pl);
});
