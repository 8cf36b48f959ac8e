//! WebSocket client frames (JSON text) into the social API's parser
//! (`zerocast_social::api::ws::parse_client_frame`), as a signed-in client sends them.
//!
//! Invariants: no panic; an accepted frame is a JSON object whose `type` is one of the
//! protocol's; and the same JSON written back out (other key order, no whitespace) parses to
//! the same frame, so nothing depends on how a client formats it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zerocast_social::api::ws::parse_client_frame;

const TYPES: [&str; 7] = [
    "send",
    "read",
    "typing",
    "subscribe",
    "unsubscribe",
    "chat",
    "ping",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(frame) = parse_client_frame(text) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(text).expect("an accepted frame is JSON");
    let kind = v.get("type").and_then(|t| t.as_str()).expect("with a type");
    assert!(TYPES.contains(&kind), "{kind}");
    let again = serde_json::to_string(&v).expect("writes back");
    assert_eq!(parse_client_frame(&again).ok(), Some(frame));
});
