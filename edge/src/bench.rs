//! Entry points for the criterion benches (`benches/micro`) into crate-private code.
//!
//! Not an API: hidden from the docs, and it changes with the code it reaches. Each function
//! runs the same code the server runs, on inputs a bench can build without a socket.

use bytes::BytesMut;

/// The HTTP/1.1 head the server writes before a media body: `200 OK` with `content_type`,
/// `Cache-Control` immutable (init segments, parts, segments) or `no-cache` (playlists), CORS
/// for any origin, `Alt-Svc` when given, `Connection: close` unless `keep_alive`, and
/// `Content-Length: body_len` (`None`: chunked transfer coding, a part still being written).
pub fn http1_media_head(
    content_type: &'static str,
    immutable: bool,
    body_len: Option<usize>,
    alt_svc: Option<&str>,
    keep_alive: bool,
) -> BytesMut {
    crate::http::media_head(content_type, immutable, body_len, alt_svc, keep_alive)
}
