//! # zerocast-ingest: RTMP in, core frames out
//!
//! A sans-IO RTMP server session. It takes the bytes a publisher (OBS, ffmpeg, a hardware
//! encoder) sends and gives back bytes to send and events: publish requests, metadata, and the
//! media as [`zerocast_core::Track`] and [`zerocast_core::Frame`] values ready for a packager.
//!
//! ```text
//!  socket bytes ─► ServerSession::handle_input
//!                    │ handshake        (rml_rtmp::handshake, PeerType::Server)
//!                    │ chunk::ChunkDecoder   chunks → messages (one copy at most)
//!                    │ amf0::decode     commands, onMetaData
//!                    │ flv::Demuxer     FLV / Enhanced RTMP tags → Track, Frame
//!                    │                  timestamp::Unwrapper per track
//!                    ▼
//!  ServerSession::poll_output ─► Output::Send(Bytes)        → write to the socket, in order
//!                             └► Output::Event(SessionEvent) → PublishRequested, Metadata,
//!                                                               Track, Frame, PublishFinished
//! ```
//!
//! ## Calling contract
//!
//! ```no_run
//! use bytes::BytesMut;
//! use zerocast_ingest::session::{Output, ServerSession, SessionEvent};
//!
//! # fn read(_: &mut BytesMut) -> usize { 0 }
//! # fn write(_: &[u8]) {}
//! let mut session = ServerSession::new();
//! let mut buf = BytesMut::with_capacity(64 * 1024);
//! loop {
//!     buf.reserve(64 * 1024);
//!     if read(&mut buf) == 0 {
//!         break;
//!     }
//!     let mut result = session.handle_input(&mut buf); // consumes all of `buf`
//!     // Drain the outputs after every call, even a failed one.
//!     while let Some(output) = session.poll_output() {
//!         match output {
//!             Output::Send(bytes) => write(&bytes),
//!             Output::Event(SessionEvent::PublishRequested { request_id, .. }) => {
//!                 // Decide (auth, "already published"...), then answer; this resumes
//!                 // processing of the bytes that arrived after the request.
//!                 result = result.and(session.accept_publish(request_id));
//!             }
//!             Output::Event(event) => { /* hand Track/Frame to the packager */ let _ = event; }
//!         }
//!     }
//!     if result.is_err() {
//!         break; // log it and close the connection
//!     }
//! }
//! ```
//!
//! Between two calls to [`handle_input`](session::ServerSession::handle_input) (or
//! `accept_publish` / `reject_publish`), drain
//! [`poll_output`](session::ServerSession::poll_output) until it returns `None`. Events do not
//! depend on how the input was split into reads.
//!
//! ## Copies and memory
//!
//! Every media byte is copied at most once, and the caller's read buffer is not kept alive by
//! the frames that came out of it, so one read buffer serves a whole connection:
//!
//! - A media message that arrives whole in one chunk and is at least
//!   [`MIN_SLICE_LEN`](chunk::MIN_SLICE_LEN) (32 KiB) long becomes a
//!   [`Frame`](zerocast_core::Frame) whose `data` is a slice of the caller's read buffer.
//! - A shorter one (audio, small video frames) is copied into an allocation of its own length:
//!   a slice would keep the whole read buffer alive for as long as the frame lives.
//! - A message split across chunks, or a chunk cut by a read boundary, is copied once as its
//!   bytes arrive, into a buffer of its exact length (above 64 KiB, the first 64 KiB are
//!   copied twice: the buffer only grows to the declared length once the peer has sent that
//!   much). Between reads the session keeps at most the start of a chunk header.
//!
//! Stream names and metadata strings are copied into owned `String`s so that they do not pin
//! read buffers either.
//!
//! ## Limits
//!
//! A peer whose publish is not accepted yet may announce messages of 64 KiB at most and set
//! chunk sizes of 64 KiB at most ([`SessionLimits`], configurable): a header announcing more
//! ends the session before its payload is buffered, so an unauthenticated connection holds
//! little more than one read buffer. A publishing peer may send messages up to what a chunk
//! header can declare (16 MiB), or a configured cap.
//!
//! ## What it does not do
//!
//! No IO, no runtime, no clock: time only enters as RTMP timestamps, and control messages the
//! server sends carry timestamp 0. No playback (a `play` gets `NetStream.Play.Failed`), no
//! authentication policy (the caller answers publish requests), no transcoding. Codecs other
//! than AVC, HEVC, AV1 and AAC are reported as [`SessionEvent::Unsupported`](session::SessionEvent)
//! and their tags dropped.
//!
//! ## Why not `rml_rtmp::sessions::ServerSession`
//!
//! `rml_rtmp` 0.8 provides the handshake and the outbound chunk serializer used here. Its
//! server session, chunk deserializer and AMF0 decoder are not used, because peer bytes can
//! crash them: `@setDataFrame` with no arguments indexes an empty `Vec`
//! (`sessions/server/mod.rs:938`), a type 1 chunk header with an extended timestamp below
//! `0xFFFFFF` overflows a subtraction (`chunk_io/deserializer.rs:358`), and nested AMF0 objects
//! recurse without a limit until the stack overflows. It also reads the system clock for
//! outbound timestamps and reassembles interleaved chunk streams into one shared buffer.

pub mod amf0;
pub mod chunk;
pub mod flv;
pub mod session;
pub mod timestamp;

pub use session::{
    Output, ServerSession, SessionError, SessionEvent, SessionLimits, StreamMetadata,
};

/// Splits a publish name (or application) as an encoder sends it, `NAME?key=KEY&...`, into the
/// name and the stream key (`None` when absent or empty). OBS sends its "stream key" field as the
/// name, so `NAME?key=KEY` there carries the key.
pub fn split_stream_key(raw: &str) -> (&str, Option<&str>) {
    let Some((name, query)) = raw.split_once('?') else {
        return (raw, None);
    };
    let key = query
        .split('&')
        .find_map(|p| p.strip_prefix("key="))
        .filter(|k| !k.is_empty());
    (name, key)
}

#[cfg(test)]
mod stream_key_tests {
    use super::split_stream_key;

    #[test]
    fn keys_in_stream_names() {
        assert_eq!(split_stream_key("demo"), ("demo", None));
        assert_eq!(split_stream_key("demo?key=abc"), ("demo", Some("abc")));
        assert_eq!(split_stream_key("demo?x=1&key=abc"), ("demo", Some("abc")));
        assert_eq!(split_stream_key("demo?key="), ("demo", None));
        assert_eq!(split_stream_key("demo?keys=abc"), ("demo", None));
    }
}
