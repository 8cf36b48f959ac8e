//! HTTP/1.1 request heads, as a viewer (or an attacker) sends them to the media port, into the
//! edge's parser (`edge/src/http/request.rs`, compiled in here: it needs only httparse).
//!
//! Invariants: no panic; a parsed head is a prefix of the input ending in an empty line, parses
//! the same on its own, and every shorter prefix of it is "need more bytes" (the result does
//! not depend on how the socket split the head); the path has no `?`; a head with a body
//! header is refused; a `Host` kept for URLs is a plain authority. The last path segment goes
//! through the media file-name parser (`MediaFile`), whose names are canonical: a parsed name
//! prints back to itself. Any input is also tried as a file name.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../edge/src/http/request.rs"]
#[allow(dead_code, unreachable_pub)]
mod request;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = std::str::from_utf8(data) {
        media_file(name);
    }
    // Any bytes as an `Accept-Encoding` value: an answer, never a panic.
    let _ = request::accepts_gzip(data);
    let Ok(Some(req)) = request::parse(data) else {
        return;
    };
    let n = req.head_len;
    assert!(n <= data.len());
    let head = &data[..n];
    // The head ends with an empty line (httparse accepts `\n` and `\r\n` line ends, mixed).
    assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"));
    assert!(!req.path.contains('?'));
    let alone = request::parse(head)
        .expect("parses alone")
        .expect("complete alone");
    assert_eq!(
        (
            alone.head_len,
            &alone.path,
            &alone.query,
            alone.keep_alive,
            alone.method,
            &alone.origin,
            alone.gzip
        ),
        (
            req.head_len,
            &req.path,
            &req.query,
            req.keep_alive,
            req.method,
            &req.origin,
            req.gzip
        )
    );
    if let Some(host) = &req.host {
        assert!(request::valid_authority(host), "{host:?}");
    }
    media_file(req.path.rsplit('/').next().unwrap_or(""));
    for k in [0, 1, n / 2, n.saturating_sub(1)] {
        if k < n {
            assert!(
                matches!(request::parse(&head[..k]), Ok(None)),
                "prefix of {k} bytes"
            );
        }
    }
});

fn media_file(name: &str) {
    if let Some(f) = request::MediaFile::parse(name) {
        assert_eq!(f.to_string(), name);
    }
}
