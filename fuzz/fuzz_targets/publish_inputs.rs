//! What a publisher or a webhook sends into the publish path: the RTMP publish name with its
//! `?key=` (`zerocast_ingest::split_stream_key`), a webhook's response head
//! (`edge/src/relay/wire.rs`, compiled in here), and a viewer's playback token
//! (`zerocast_social::channels::secrets::PlaybackKeys::verify`).
//!
//! Invariants: no panic; the name part never contains `?` and is a prefix of the input; a key is
//! never empty and never contains `&`; a status is 200-599; a token verifies only for the
//! stream it was minted for, and a minted token always verifies before its expiry.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zerocast_social::channels::secrets::PlaybackKeys;

#[path = "../../edge/src/relay/wire.rs"]
#[allow(dead_code, unreachable_pub)]
mod wire;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (name, key) = zerocast_ingest::split_stream_key(&text);
    assert!(!name.contains('?') && text.starts_with(name));
    if let Some(k) = key {
        assert!(!k.is_empty() && !k.contains('&'));
    }

    if let Ok(Some((head, len))) = wire::parse_head(data) {
        assert!((200..600).contains(&head.status) && len <= data.len());
    }

    let keys = PlaybackKeys::from_secret(b"fuzz secret");
    // Whatever the input, as a token for "demo": it must not panic, and it cannot verify (the
    // fuzzer cannot forge an HMAC).
    assert!(keys.verify("demo", &text, 0).is_err() || text == keys.mint("demo", parse_exp(&text)));
    // A minted token for the input as a stream name verifies for it, and only for it.
    let exp = u64::from(data.first().copied().unwrap_or(1)) + 1;
    let t = keys.mint(&text, exp);
    assert_eq!(keys.verify(&text, &t, 0), Ok(()));
    if text != "other" {
        assert!(keys.verify("other", &t, 0).is_err());
    }
});

fn parse_exp(t: &str) -> u64 {
    t.split_once('.')
        .and_then(|(e, _)| e.parse().ok())
        .unwrap_or(0)
}
