//! The server side of one RTMP connection: handshake, chunk stream, commands, media.
//!
//! See the [crate documentation](crate) for the model and the calling contract.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{PeerBandwidthLimitType, RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use zerocast_core::{Frame, Track};

use crate::amf0::{self, Amf0Error};
use crate::chunk::{ChunkDecoder, ChunkError, Decoded, Message, MAX_CHUNK_SIZE, MAX_MESSAGE_LEN};
use crate::flv::{Demuxed, Demuxer, FlvError};

/// Chunk size the server announces for its own outbound messages.
const OUTBOUND_CHUNK_SIZE: u32 = 4096;
/// Window acknowledgement size and peer bandwidth the server announces.
const WINDOW_SIZE: u32 = 2_500_000;
/// Most message streams a client may create on one connection.
const MAX_STREAMS: usize = 16;
/// Most bytes buffered while a publish request waits for the caller's decision. Publishers
/// wait for `NetStream.Publish.Start` before sending media, so a few kilobytes is normal.
const MAX_BUFFERED_WHILE_WAITING: usize = 4 << 20;
/// Capacity `pending` keeps once empty; a larger one is freed.
const PENDING_KEEP: usize = 256;
/// Peer strings quoted in errors are cut to this many characters.
const MAX_QUOTED: usize = 64;

/// How much a peer may make the session buffer, before and after its publish is accepted.
///
/// Until a publish is accepted, a peer is unauthenticated: the commands it needs (`connect`,
/// `createStream`, `publish`) are a few hundred bytes, so messages and chunks are held to
/// small limits and a header announcing more ends the session before its payload is
/// buffered. Once a publish is live, video frames may be megabytes. When the publish ends,
/// the small limits apply again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionLimits {
    /// Longest message a peer may announce while no publish is live, bytes.
    pub max_message_before_publish: u32,
    /// Largest Set Chunk Size a peer may send while no publish is live, bytes.
    pub max_chunk_size_before_publish: u32,
    /// Longest message a publishing peer may announce, bytes (at most
    /// [`MAX_MESSAGE_LEN`], what a chunk header can declare).
    pub max_message: u32,
}

impl Default for SessionLimits {
    /// 64 KiB before publish (both), [`MAX_MESSAGE_LEN`] (16 MiB - 1) after.
    fn default() -> Self {
        Self {
            max_message_before_publish: 64 * 1024,
            max_chunk_size_before_publish: 64 * 1024,
            max_message: MAX_MESSAGE_LEN,
        }
    }
}

/// Encoder properties from `onMetaData` (`@setDataFrame`). Every field is optional: encoders
/// send what they like, and nothing here is trusted for packaging (the codec configuration
/// records are).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct StreamMetadata {
    /// `width`, pixels.
    pub width: Option<u32>,
    /// `height`, pixels.
    pub height: Option<u32>,
    /// `framerate` (or `fps`), frames per second.
    pub frame_rate: Option<f64>,
    /// `videodatarate`, kbit/s.
    pub video_bitrate_kbps: Option<u32>,
    /// `audiodatarate`, kbit/s.
    pub audio_bitrate_kbps: Option<u32>,
    /// `encoder`, e.g. `obs-output module (libobs version 30.1.2)`.
    pub encoder: Option<String>,
}

impl StreamMetadata {
    fn from_properties(props: &HashMap<String, Amf0Value>) -> Self {
        let num = |key: &str| match props.get(key) {
            Some(Amf0Value::Number(n)) if n.is_finite() && *n >= 0.0 => Some(*n),
            _ => None,
        };
        let int = |key: &str| {
            num(key)
                .filter(|n| *n <= f64::from(u32::MAX))
                .map(|n| n.round() as u32)
        };
        let encoder = match props.get("encoder") {
            Some(Amf0Value::Utf8String(s)) => Some(s.clone()),
            _ => None,
        };
        Self {
            width: int("width"),
            height: int("height"),
            frame_rate: num("framerate").or_else(|| num("fps")),
            video_bitrate_kbps: int("videodatarate"),
            audio_bitrate_kbps: int("audiodatarate"),
            encoder,
        }
    }
}

/// Something the session has for the caller.
#[derive(Debug)]
pub enum Output {
    /// Bytes to write to the socket, in order.
    Send(Bytes),
    /// Something happened on the connection.
    Event(SessionEvent),
}

/// What a publisher did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The client asks to publish `app/name`. Input processing pauses until the caller answers
    /// with [`ServerSession::accept_publish`] or [`ServerSession::reject_publish`].
    PublishRequested {
        /// Pass this to `accept_publish` / `reject_publish`.
        request_id: u32,
        /// The application from `connect` (trailing `/` removed), e.g. `live`.
        app: String,
        /// The stream name from `publish`, as sent (it may carry a `?query`).
        name: String,
    },
    /// The client stopped publishing (`FCUnpublish`, `deleteStream` or `closeStream`).
    PublishFinished {
        /// The application.
        app: String,
        /// The stream name.
        name: String,
    },
    /// The publisher sent `onMetaData`.
    Metadata(StreamMetadata),
    /// A track started, or its decoder configuration changed (a new sequence header).
    Track(Track),
    /// A coded frame of a track announced earlier.
    Frame(Frame),
    /// The publisher sends something this server does not ingest (MP3 audio, VP9 video…).
    /// Its tags are dropped; the connection stays open. Reported once per track kind until
    /// that kind gets a usable sequence header.
    Unsupported(FlvError),
}

/// An RTMP connection that cannot continue. Except for [`SessionError::UnknownRequest`]
/// (a caller mistake), every error ends the session: drain [`ServerSession::poll_output`]
/// (it may hold an error response worth sending), then close the connection.
///
/// Byte offsets count from the first byte the client sent, handshake included.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The handshake bytes (the first 3073 the client sends) were invalid.
    #[error("RTMP handshake failed")]
    Handshake {
        /// What `rml_rtmp`'s handshake found.
        #[source]
        source: HandshakeError,
    },
    /// The chunk stream was invalid.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// A protocol control or user control message was invalid.
    #[error("message type {type_id} on message stream {stream_id} at byte {offset}: {reason}")]
    InvalidMessage {
        /// RTMP message type id.
        type_id: u8,
        /// Message stream id.
        stream_id: u32,
        /// Offset of the message's first chunk.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A command or data message whose AMF0 body could not be decoded.
    #[error("message type {type_id} at byte {offset}: invalid AMF0")]
    Amf0 {
        /// RTMP message type id.
        type_id: u8,
        /// Offset of the message's first chunk.
        offset: u64,
        /// The AMF0 error (its `pos` is relative to the message body).
        #[source]
        source: Amf0Error,
    },
    /// A command that is invalid or arrives in the wrong state.
    #[error("command {command:?} at byte {offset}: {reason}")]
    Command {
        /// The command name (at most 64 characters of it).
        command: String,
        /// Offset of the message's first chunk.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A malformed audio or video tag on the published stream.
    #[error("stream {app}/{name}: bad {kind} message at byte {offset} (timestamp {timestamp} ms)")]
    Flv {
        /// The application.
        app: String,
        /// The stream name.
        name: String,
        /// `audio` or `video`.
        kind: &'static str,
        /// Offset of the message's first chunk.
        offset: u64,
        /// The message's RTMP timestamp.
        timestamp: u32,
        /// What the tag parser found (its positions are relative to the tag body).
        #[source]
        source: Box<FlvError>,
    },
    /// `accept_publish` / `reject_publish` with an id that is not waiting for a decision.
    /// The session is unaffected.
    #[error("no publish request {0} is waiting for a decision")]
    UnknownRequest(u32),
    /// The client kept sending while its publish request waited for a decision.
    #[error("{buffered} bytes arrived while publish request {request_id} waited for a decision")]
    BufferLimit {
        /// The waiting request.
        request_id: u32,
        /// Bytes buffered.
        buffered: usize,
    },
    /// An outbound message could not be encoded (a bug, not a peer error).
    #[error("failed to encode an outbound {what}")]
    Encode {
        /// The message.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A previous call returned an error; the session cannot continue.
    #[error("the session already failed")]
    Failed,
}

#[derive(Debug)]
enum Publish {
    Pending {
        request_id: u32,
        stream_id: u32,
        name: String,
    },
    Live {
        stream_id: u32,
        name: String,
        demuxer: Box<Demuxer>,
        /// Whether an `Unsupported` event was reported for video / audio.
        warned: [bool; 2],
    },
}

/// The server side of one RTMP connection, sans IO.
///
/// Feed it what the socket reads with [`handle_input`](Self::handle_input); after each call
/// (and after [`accept_publish`](Self::accept_publish) / [`reject_publish`](Self::reject_publish))
/// drain [`poll_output`](Self::poll_output) until it returns `None`, writing every
/// [`Output::Send`] to the socket in order.
///
/// Connection requests are accepted automatically (the application name is reported with the
/// publish request). A publish request surfaces as [`SessionEvent::PublishRequested`] and
/// pauses input processing until the caller decides; bytes that arrive meanwhile are kept.
///
/// Until a publish is accepted, the peer is held to the small message and chunk sizes of
/// [`SessionLimits`]: a header announcing a longer message ends the session
/// ([`ChunkError::MessageTooLong`]) before any of its payload is buffered.
///
/// The handshake is `rml_rtmp`'s (`PeerType::Server`): it fills its packet 1 from the OS
/// random number generator, so the first `Send` output differs between runs. Every event, and
/// every byte sent after the handshake, is a function of the input alone.
pub struct ServerSession {
    handshake: Option<Handshake>,
    /// Bytes fed to the handshake so far.
    handshake_fed: u64,
    chunks: ChunkDecoder,
    serializer: ChunkSerializer,
    /// Unprocessed input, copied out of the caller's buffer: the start of a chunk header, or
    /// everything after a publish request until the caller decides.
    pending: BytesMut,
    outputs: VecDeque<Output>,
    app: Option<String>,
    streams: Vec<u32>,
    next_stream_id: u32,
    next_request_id: u32,
    publish: Option<Publish>,
    /// Frames dropped by earlier publishes on this connection.
    dropped_earlier: u64,
    received: u64,
    peer_window: Option<u32>,
    acked: u64,
    failed: bool,
    limits: SessionLimits,
}

impl fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSession")
            .field("handshaking", &self.handshake.is_some())
            .field("chunks", &self.chunks)
            .field("pending", &self.pending.len())
            .field("outputs", &self.outputs.len())
            .field("app", &self.app)
            .field("streams", &self.streams)
            .field("publish", &self.publish)
            .field("received", &self.received)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Default for ServerSession {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerSession {
    /// A session waiting for the client's handshake, with the default [`SessionLimits`].
    pub fn new() -> Self {
        Self::with_limits(SessionLimits::default())
    }

    /// A session waiting for the client's handshake, holding the peer to `limits`.
    pub fn with_limits(limits: SessionLimits) -> Self {
        let mut session = Self {
            handshake: Some(Handshake::new(PeerType::Server)),
            handshake_fed: 0,
            chunks: ChunkDecoder::new(0),
            serializer: ChunkSerializer::new(),
            pending: BytesMut::new(),
            outputs: VecDeque::new(),
            app: None,
            streams: Vec::new(),
            next_stream_id: 1,
            next_request_id: 0,
            publish: None,
            dropped_earlier: 0,
            received: 0,
            peer_window: None,
            acked: 0,
            failed: false,
            limits,
        };
        session.apply_limits();
        session
    }

    /// Gives the chunk decoder the limits of the current state: publishing or not.
    fn apply_limits(&mut self) {
        let l = self.limits;
        if matches!(self.publish, Some(Publish::Live { .. })) {
            self.chunks.set_limits(l.max_message, MAX_CHUNK_SIZE);
        } else {
            self.chunks.set_limits(
                l.max_message_before_publish,
                l.max_chunk_size_before_publish,
            );
        }
    }

    /// Feeds bytes read from the socket (consumes all of `buf`). Between two calls, drain
    /// [`poll_output`](Self::poll_output) until `None`.
    ///
    /// Nothing that comes out of the session refers to `buf`'s allocation, except a media
    /// message of at least [`MIN_SLICE_LEN`](crate::chunk::MIN_SLICE_LEN) bytes that arrived
    /// whole in one chunk (a slice, no copy). So the caller can read into the same `buf`
    /// again: `reserve` reuses its allocation in place (see [`crate::chunk`]).
    pub fn handle_input(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
        if self.failed {
            buf.clear();
            return Err(SessionError::Failed);
        }
        let result = self.input(buf);
        if result.is_err() {
            self.failed = true;
            buf.clear();
        }
        result
    }

    /// Returns the next output, `None` when there is nothing more until the next input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Accepts the publish request `request_id`: answers `NetStream.Publish.Start` and resumes
    /// processing the input buffered since the request (which may produce events).
    pub fn accept_publish(&mut self, request_id: u32) -> Result<(), SessionError> {
        let (stream_id, name) = self.take_pending(request_id)?;
        let result = self.accept(stream_id, name);
        self.check(result)
    }

    /// Refuses the publish request `request_id`: answers an `onStatus` error
    /// (`NetStream.Publish.Denied`) carrying `description`, e.g.
    /// `"stream live/demo is already being published"`, then resumes processing input.
    /// The connection stays usable; most clients close it.
    pub fn reject_publish(
        &mut self,
        request_id: u32,
        description: &str,
    ) -> Result<(), SessionError> {
        let (stream_id, _) = self.take_pending(request_id)?;
        let result = self
            .on_status(stream_id, "error", "NetStream.Publish.Denied", description)
            .and_then(|()| self.drive(&mut BytesMut::new()));
        self.check(result)
    }

    /// Frames dropped on this connection because their track had no sequence header yet.
    pub fn dropped_frames(&self) -> u64 {
        let current = match &self.publish {
            Some(Publish::Live { demuxer, .. }) => demuxer.dropped_frames(),
            _ => 0,
        };
        self.dropped_earlier + current
    }

    fn check(&mut self, result: Result<(), SessionError>) -> Result<(), SessionError> {
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn take_pending(&mut self, request_id: u32) -> Result<(u32, String), SessionError> {
        if self.failed {
            return Err(SessionError::Failed);
        }
        match self.publish.take() {
            Some(Publish::Pending {
                request_id: id,
                stream_id,
                name,
            }) if id == request_id => Ok((stream_id, name)),
            other => {
                self.publish = other;
                Err(SessionError::UnknownRequest(request_id))
            }
        }
    }

    fn accept(&mut self, stream_id: u32, name: String) -> Result<(), SessionError> {
        self.send(
            RtmpMessage::UserControl {
                event_type: UserControlEventType::StreamBegin,
                stream_id: Some(stream_id),
                buffer_length: None,
                timestamp: None,
            },
            0,
        )?;
        let description = format!("{name} is now published");
        self.on_status(stream_id, "status", "NetStream.Publish.Start", &description)?;
        self.publish = Some(Publish::Live {
            stream_id,
            name,
            demuxer: Box::default(),
            warned: [false; 2],
        });
        self.apply_limits();
        self.drive(&mut BytesMut::new())
    }

    fn input(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
        self.received += buf.len() as u64;
        if let Some(mut hs) = self.handshake.take() {
            self.handshake_fed += buf.len() as u64;
            let result = hs
                .process_bytes(buf)
                .map_err(|source| SessionError::Handshake { source })?;
            buf.clear();
            match result {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.send_raw(response_bytes);
                    self.handshake = Some(hs);
                    return Ok(());
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.send_raw(response_bytes);
                    // The leftover bytes are the tail of this call's input.
                    let first_chunk = self
                        .handshake_fed
                        .saturating_sub(remaining_bytes.len() as u64);
                    self.chunks = ChunkDecoder::new(first_chunk);
                    self.apply_limits();
                    self.pending = BytesMut::from(&remaining_bytes[..]);
                }
            }
        }
        self.acknowledge()?;
        self.drive(buf)
    }

    /// Sends an Acknowledgement when the peer's window is used up.
    fn acknowledge(&mut self) -> Result<(), SessionError> {
        if let Some(window) = self.peer_window {
            if self.received - self.acked >= u64::from(window) {
                self.acked = self.received;
                self.send(
                    RtmpMessage::Acknowledgement {
                        // The sequence number wraps with the 32-bit byte counter.
                        sequence_number: self.received as u32,
                    },
                    0,
                )?;
            }
        }
        Ok(())
    }

    /// Decodes chunks from `self.pending` then `buf` until more bytes are needed or a publish
    /// request waits for a decision. Leaves `buf` empty.
    ///
    /// The decoder copies what it keeps of `buf` (see [`crate::chunk`]), so `pending` only
    /// ever holds bytes `buf` could not be decoded from yet: the start of a chunk header cut by
    /// the read (at most 17 bytes), the handshake's leftover, or what arrives while a publish
    /// request waits. Those are copied, never `buf.split()` off: a `pending` that shared
    /// `buf`'s allocation would keep the caller from reusing it.
    fn drive(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
        loop {
            if matches!(self.publish, Some(Publish::Pending { .. })) {
                break;
            }
            let decoded = if self.pending.is_empty() {
                self.chunks.decode(buf)?
            } else {
                self.chunks.decode(&mut self.pending)?
            };
            match decoded {
                Decoded::Message(m) => self.handle_message(m)?,
                Decoded::Chunk => {}
                // `buf` ends inside a chunk header: kept below.
                Decoded::NeedMore(_) if self.pending.is_empty() => break,
                Decoded::NeedMore(n) => {
                    if buf.is_empty() {
                        break;
                    }
                    // Move just enough bytes to complete the header at the front of `pending`
                    // (`n` counts header bytes only: a whole header is consumed at once).
                    let take = n.min(buf.len());
                    self.pending.extend_from_slice(&buf[..take]);
                    buf.advance(take);
                }
            }
        }
        if !buf.is_empty() {
            self.pending.extend_from_slice(buf);
            buf.clear();
        }
        if self.pending.is_empty() && self.pending.capacity() > PENDING_KEEP {
            // Whatever arrived while a publish request waited (up to
            // MAX_BUFFERED_WHILE_WAITING) is decoded: do not keep its allocation.
            self.pending = BytesMut::new();
        }
        if let Some(Publish::Pending { request_id, .. }) = self.publish {
            if self.pending.len() > MAX_BUFFERED_WHILE_WAITING {
                return Err(SessionError::BufferLimit {
                    request_id,
                    buffered: self.pending.len(),
                });
            }
        }
        Ok(())
    }

    fn handle_message(&mut self, m: Message) -> Result<(), SessionError> {
        let invalid = |reason| SessionError::InvalidMessage {
            type_id: m.type_id,
            stream_id: m.stream_id,
            offset: m.offset,
            reason,
        };
        let u32_at = |i: usize| -> Option<u32> {
            let b = m.payload.get(i..i + 4)?;
            <[u8; 4]>::try_from(b).ok().map(u32::from_be_bytes)
        };
        match m.type_id {
            // Set Chunk Size
            1 => {
                let size = u32_at(0).ok_or_else(|| invalid("short Set Chunk Size"))?;
                self.chunks.set_chunk_size(size)?;
            }
            // Abort
            2 => {
                let csid = u32_at(0).ok_or_else(|| invalid("short Abort"))?;
                self.chunks.abort(csid);
            }
            // Acknowledgement, Set Peer Bandwidth: nothing to do for a server.
            3 | 6 => {}
            // User Control
            4 => {
                let event = m
                    .payload
                    .get(0..2)
                    .and_then(|b| <[u8; 2]>::try_from(b).ok())
                    .map(u16::from_be_bytes)
                    .ok_or_else(|| invalid("short User Control"))?;
                if event == 6 {
                    // PingRequest: echo its timestamp in a PingResponse.
                    let ts = u32_at(2).ok_or_else(|| invalid("short PingRequest"))?;
                    self.send(
                        RtmpMessage::UserControl {
                            event_type: UserControlEventType::PingResponse,
                            stream_id: None,
                            buffer_length: None,
                            timestamp: Some(RtmpTimestamp::new(ts)),
                        },
                        0,
                    )?;
                }
            }
            // Window Acknowledgement Size
            5 => {
                let size = u32_at(0).ok_or_else(|| invalid("short Window Acknowledgement Size"))?;
                self.peer_window = (size > 0).then_some(size);
            }
            8 | 9 => self.handle_media(&m)?,
            // AMF0 data; AMF3 data (a format byte, then AMF0 in practice)
            18 | 15 => {
                let body = if m.type_id == 15 {
                    m.payload.get(1..).unwrap_or(&[])
                } else {
                    &m.payload[..]
                };
                let values = self.decode_amf0(&m, body)?;
                self.handle_data(&m, values);
            }
            // AMF0 command; AMF3 command (a format byte, then AMF0)
            20 | 17 => {
                let body = if m.type_id == 17 {
                    m.payload.get(1..).unwrap_or(&[])
                } else {
                    &m.payload[..]
                };
                let values = self.decode_amf0(&m, body)?;
                self.handle_command(&m, values)?;
            }
            // Shared objects, aggregates and unknown types are ignored.
            _ => {}
        }
        Ok(())
    }

    fn decode_amf0(&self, m: &Message, body: &[u8]) -> Result<Vec<Amf0Value>, SessionError> {
        amf0::decode(body).map_err(|source| SessionError::Amf0 {
            type_id: m.type_id,
            offset: m.offset,
            source,
        })
    }

    fn handle_media(&mut self, m: &Message) -> Result<(), SessionError> {
        let Some(Publish::Live {
            stream_id,
            name,
            demuxer,
            warned,
        }) = &mut self.publish
        else {
            return Ok(()); // media before publish, or on a stream that is not published
        };
        if *stream_id != m.stream_id {
            return Ok(());
        }
        let video = m.type_id == 9;
        let result = if video {
            demuxer.handle_video(m.timestamp, &m.payload)
        } else {
            demuxer.handle_audio(m.timestamp, &m.payload)
        };
        let kind_index = usize::from(!video);
        match result {
            Ok(Some(Demuxed::Track(track))) => {
                warned[kind_index] = false;
                self.event(SessionEvent::Track(track));
            }
            Ok(Some(Demuxed::Frame(frame))) => self.event(SessionEvent::Frame(frame)),
            Ok(None) => {}
            Err(e) if !e.is_fatal() => {
                if !std::mem::replace(&mut warned[kind_index], true) {
                    self.event(SessionEvent::Unsupported(e));
                }
            }
            Err(source) => {
                return Err(SessionError::Flv {
                    app: self.app.clone().unwrap_or_default(),
                    name: name.clone(),
                    kind: if video { "video" } else { "audio" },
                    offset: m.offset,
                    timestamp: m.timestamp,
                    source: Box::new(source),
                })
            }
        }
        Ok(())
    }

    /// `@setDataFrame("onMetaData", {…})` or `onMetaData({…})` on the published stream.
    fn handle_data(&mut self, m: &Message, values: Vec<Amf0Value>) {
        let Some(Publish::Live { stream_id, .. }) = &self.publish else {
            return;
        };
        if *stream_id != m.stream_id {
            return;
        }
        let mut it = values.iter();
        let mut first = it.next();
        if matches!(first, Some(Amf0Value::Utf8String(s)) if s == "@setDataFrame") {
            first = it.next();
        }
        if !matches!(first, Some(Amf0Value::Utf8String(s)) if s == "onMetaData") {
            return;
        }
        if let Some(Amf0Value::Object(props)) = it.next() {
            self.event(SessionEvent::Metadata(StreamMetadata::from_properties(
                props,
            )));
        }
    }

    fn handle_command(&mut self, m: &Message, values: Vec<Amf0Value>) -> Result<(), SessionError> {
        let mut it = values.into_iter();
        let Some(Amf0Value::Utf8String(name)) = it.next() else {
            return Err(SessionError::InvalidMessage {
                type_id: m.type_id,
                stream_id: m.stream_id,
                offset: m.offset,
                reason: "command name is not a string",
            });
        };
        let txn = match it.next() {
            Some(Amf0Value::Number(n)) if n.is_finite() => n,
            _ => 0.0,
        };
        let object = it.next().unwrap_or(Amf0Value::Null);
        let args: Vec<Amf0Value> = it.collect();
        let err = |reason| SessionError::Command {
            command: quote(&name),
            offset: m.offset,
            reason,
        };
        match name.as_str() {
            "connect" => {
                if self.app.is_some() {
                    return Err(err("second connect on one connection"));
                }
                let app = match &object {
                    Amf0Value::Object(props) => match props.get("app") {
                        Some(Amf0Value::Utf8String(app)) => app.trim_end_matches('/').to_string(),
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                if app.is_empty() {
                    self.send_command(
                        "_error",
                        txn,
                        Amf0Value::Null,
                        vec![status_object(
                            "error",
                            "NetConnection.Connect.Rejected",
                            "connect needs an application name (rtmp://host/app)",
                        )],
                        0,
                    )?;
                    return Err(err("no application name"));
                }
                self.connect(txn, app)
            }
            "releaseStream" | "FCPublish" => {
                if txn != 0.0 {
                    self.send_command(
                        "_result",
                        txn,
                        Amf0Value::Null,
                        vec![Amf0Value::Undefined],
                        0,
                    )?;
                }
                Ok(())
            }
            "createStream" => {
                if self.app.is_none() {
                    return Err(err("createStream before connect"));
                }
                if self.streams.len() >= MAX_STREAMS {
                    return Err(err("too many streams"));
                }
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1);
                self.streams.push(id);
                self.send_command(
                    "_result",
                    txn,
                    Amf0Value::Null,
                    vec![Amf0Value::Number(f64::from(id))],
                    0,
                )
            }
            "publish" => {
                let Some(app) = self.app.clone() else {
                    return Err(err("publish before connect"));
                };
                if !self.streams.contains(&m.stream_id) {
                    return Err(err("publish on a message stream that was not created"));
                }
                if self.publish.is_some() {
                    return Err(err("publish while another publish is active"));
                }
                let stream_name = match args.first() {
                    Some(Amf0Value::Utf8String(s)) if !s.is_empty() => s.clone(),
                    _ => return Err(err("publish without a stream name")),
                };
                let request_id = self.next_request_id;
                self.next_request_id = self.next_request_id.wrapping_add(1);
                self.publish = Some(Publish::Pending {
                    request_id,
                    stream_id: m.stream_id,
                    name: stream_name.clone(),
                });
                self.event(SessionEvent::PublishRequested {
                    request_id,
                    app,
                    name: stream_name,
                });
                Ok(())
            }
            "FCUnpublish" => {
                if let (Some(Publish::Live { name, .. }), Some(Amf0Value::Utf8String(arg))) =
                    (&self.publish, args.first())
                {
                    if name == arg {
                        self.finish_publish();
                    }
                }
                Ok(())
            }
            "deleteStream" | "closeStream" => {
                let id = match args.first() {
                    Some(Amf0Value::Number(n)) if *n >= 0.0 && *n <= f64::from(u32::MAX) => {
                        *n as u32
                    }
                    _ => m.stream_id,
                };
                if matches!(&self.publish, Some(Publish::Live { stream_id, .. }) if *stream_id == id)
                {
                    self.finish_publish();
                }
                if name == "deleteStream" {
                    self.streams.retain(|&s| s != id);
                }
                Ok(())
            }
            "play" | "play2" => self.on_status(
                m.stream_id,
                "error",
                "NetStream.Play.Failed",
                "this server ingests streams; play them over HLS",
            ),
            // _checkbw, getStreamLength, _result/_error answers to our commands, ...
            _ => Ok(()),
        }
    }

    fn connect(&mut self, txn: f64, app: String) -> Result<(), SessionError> {
        self.send(RtmpMessage::WindowAcknowledgement { size: WINDOW_SIZE }, 0)?;
        self.send(
            RtmpMessage::SetPeerBandwidth {
                size: WINDOW_SIZE,
                limit_type: PeerBandwidthLimitType::Dynamic,
            },
            0,
        )?;
        let packet = self
            .serializer
            .set_max_chunk_size(OUTBOUND_CHUNK_SIZE, RtmpTimestamp::new(0))
            .map_err(|e| encode_error("Set Chunk Size", e))?;
        self.send_raw(packet.bytes);

        let mut props = HashMap::new();
        props.insert(
            "fmsVer".to_string(),
            Amf0Value::Utf8String("FMS/3,0,1,123".into()),
        );
        props.insert("capabilities".to_string(), Amf0Value::Number(31.0));
        // Enhanced RTMP: the video FourCCs this server ingests.
        props.insert(
            "fourCcList".to_string(),
            Amf0Value::StrictArray(
                ["avc1", "hvc1", "av01"]
                    .iter()
                    .map(|s| Amf0Value::Utf8String((*s).into()))
                    .collect(),
            ),
        );
        let mut info = status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        if let Amf0Value::Object(o) = &mut info {
            o.insert("objectEncoding".to_string(), Amf0Value::Number(0.0));
        }
        self.send_command("_result", txn, Amf0Value::Object(props), vec![info], 0)?;
        self.app = Some(app);
        Ok(())
    }

    fn finish_publish(&mut self) {
        if let Some(Publish::Live { name, demuxer, .. }) = self.publish.take() {
            self.apply_limits();
            self.dropped_earlier += demuxer.dropped_frames();
            self.event(SessionEvent::PublishFinished {
                app: self.app.clone().unwrap_or_default(),
                name,
            });
        }
    }

    fn event(&mut self, e: SessionEvent) {
        self.outputs.push_back(Output::Event(e));
    }

    fn send_raw(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.outputs.push_back(Output::Send(Bytes::from(bytes)));
        }
    }

    fn send(&mut self, message: RtmpMessage, stream_id: u32) -> Result<(), SessionError> {
        // Outbound timestamps are 0: the session reads no clock. Nothing a publisher does
        // depends on the timestamps of server control messages.
        let payload = message
            .into_message_payload(RtmpTimestamp::new(0), stream_id)
            .map_err(|e| encode_error("message", e))?;
        let packet = self
            .serializer
            .serialize(&payload, false, false)
            .map_err(|e| encode_error("chunk", e))?;
        self.send_raw(packet.bytes);
        Ok(())
    }

    fn send_command(
        &mut self,
        name: &str,
        txn: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<(), SessionError> {
        self.send(
            RtmpMessage::Amf0Command {
                command_name: name.to_string(),
                transaction_id: txn,
                command_object: object,
                additional_arguments: args,
            },
            stream_id,
        )
    }

    fn on_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) -> Result<(), SessionError> {
        let status = status_object(level, code, description);
        self.send_command("onStatus", 0.0, Amf0Value::Null, vec![status], stream_id)
    }
}

fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    let mut o = HashMap::new();
    o.insert("level".to_string(), Amf0Value::Utf8String(level.into()));
    o.insert("code".to_string(), Amf0Value::Utf8String(code.into()));
    o.insert(
        "description".to_string(),
        Amf0Value::Utf8String(description.into()),
    );
    Amf0Value::Object(o)
}

fn encode_error(
    what: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> SessionError {
    SessionError::Encode {
        what,
        source: Box::new(e),
    }
}

fn quote(s: &str) -> String {
    s.chars().take(MAX_QUOTED).collect()
}

#[cfg(test)]
mod tests {
    use rml_rtmp::rml_amf0;
    use zerocast_core::{TrackId, TrackKind};

    use super::*;
    use crate::chunk::encode::message;
    use crate::flv::encode::{aac, legacy_video, AAC_CONFIG, AVC_RECORD};

    /// C0 + C1 + C2 of a plain (non-digest) client handshake. The server does not check C2
    /// against its S1, so canned bytes replay against any session.
    fn handshake() -> Vec<u8> {
        let mut b = vec![3u8];
        b.extend_from_slice(&[0; 1536 * 2]);
        b
    }

    fn command(csid: u32, stream_id: u32, values: Vec<Amf0Value>) -> Vec<u8> {
        let body = rml_amf0::serialize(&values).unwrap();
        message(csid, 0, 20, stream_id, &body, 128)
    }

    fn s(v: &str) -> Amf0Value {
        Amf0Value::Utf8String(v.into())
    }

    fn obj(pairs: &[(&str, Amf0Value)]) -> Amf0Value {
        Amf0Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn connect(app: &str) -> Vec<u8> {
        command(
            3,
            0,
            vec![
                s("connect"),
                Amf0Value::Number(1.0),
                obj(&[("app", s(app))]),
            ],
        )
    }

    fn create_stream() -> Vec<u8> {
        command(
            3,
            0,
            vec![s("createStream"), Amf0Value::Number(2.0), Amf0Value::Null],
        )
    }

    fn publish(name: &str) -> Vec<u8> {
        command(
            8,
            1,
            vec![
                s("publish"),
                Amf0Value::Number(3.0),
                Amf0Value::Null,
                s(name),
                s("live"),
            ],
        )
    }

    fn video(ts: u32, body: Vec<u8>) -> Vec<u8> {
        message(6, ts, 9, 1, &body, 128)
    }

    fn audio(ts: u32, body: Vec<u8>) -> Vec<u8> {
        message(4, ts, 8, 1, &body, 128)
    }

    /// Everything up to an accepted-ready publish of live/demo.
    fn preamble() -> Vec<u8> {
        let mut b = handshake();
        b.extend(connect("live/"));
        b.extend(create_stream());
        b.extend(publish("demo"));
        b
    }

    fn media() -> Vec<u8> {
        let mut b = Vec::new();
        let meta = rml_amf0::serialize(&vec![
            s("@setDataFrame"),
            s("onMetaData"),
            obj(&[
                ("width", Amf0Value::Number(1280.0)),
                ("height", Amf0Value::Number(720.0)),
                ("framerate", Amf0Value::Number(30.0)),
                ("videodatarate", Amf0Value::Number(2500.0)),
                ("encoder", s("test")),
            ]),
        ])
        .unwrap();
        b.extend(message(5, 0, 18, 1, &meta, 128));
        b.extend(video(0, legacy_video(1, 7, 0, 0, AVC_RECORD)));
        b.extend(audio(0, aac(0, AAC_CONFIG)));
        b.extend(video(0, legacy_video(1, 7, 1, 66, &[0, 0, 0, 1, 0x65])));
        b.extend(audio(10, aac(1, b"aac frame")));
        // A frame larger than the chunk size: reassembled from three chunks.
        b.extend(video(33, legacy_video(2, 7, 1, 0, &[0x41; 300])));
        b
    }

    #[derive(Default)]
    struct Run {
        events: Vec<SessionEvent>,
        sent: Vec<u8>,
    }

    /// Feeds `bytes` split at `splits`, accepting every publish request.
    fn run(
        session: &mut ServerSession,
        bytes: &[u8],
        split: usize,
    ) -> (Run, Result<(), SessionError>) {
        let mut out = Run::default();
        for part in bytes.chunks(split.max(1)) {
            let mut buf = BytesMut::from(part);
            let r = session.handle_input(&mut buf);
            assert!(buf.is_empty());
            let r = r.and_then(|()| drain(session, &mut out, true));
            if r.is_err() {
                let _ = drain(session, &mut out, false);
                return (out, r);
            }
        }
        (out, Ok(()))
    }

    fn drain(session: &mut ServerSession, out: &mut Run, accept: bool) -> Result<(), SessionError> {
        while let Some(o) = session.poll_output() {
            match o {
                Output::Send(b) => out.sent.extend_from_slice(&b),
                Output::Event(e) => {
                    let id = match &e {
                        SessionEvent::PublishRequested { request_id, .. } => Some(*request_id),
                        _ => None,
                    };
                    out.events.push(e);
                    if let (Some(id), true) = (id, accept) {
                        session.accept_publish(id)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Decodes what the server sent after its 3073 handshake bytes.
    fn server_messages(sent: &[u8]) -> Vec<(u8, u32, Bytes)> {
        let mut buf = BytesMut::from(&sent[3073..]);
        let mut d = ChunkDecoder::new(0);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf).unwrap() {
                Decoded::Message(m) => {
                    if m.type_id == 1 {
                        let size = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                        d.set_chunk_size(size).unwrap();
                    }
                    out.push((m.type_id, m.stream_id, m.payload));
                }
                Decoded::Chunk => {}
                Decoded::NeedMore(_) => {
                    assert!(buf.is_empty(), "trailing bytes");
                    return out;
                }
            }
        }
    }

    fn commands(sent: &[u8]) -> Vec<(String, u32, Vec<Amf0Value>)> {
        server_messages(sent)
            .into_iter()
            .filter(|(t, _, _)| *t == 20)
            .map(|(_, sid, p)| {
                let v = amf0::decode(&p).unwrap();
                let Some(Amf0Value::Utf8String(name)) = v.first().cloned() else {
                    panic!()
                };
                (name, sid, v)
            })
            .collect()
    }

    fn status_code(values: &[Amf0Value]) -> (String, String) {
        let Some(Amf0Value::Object(o)) = values.get(3) else {
            panic!("{values:?}")
        };
        let get = |k: &str| match o.get(k) {
            Some(Amf0Value::Utf8String(v)) => v.clone(),
            other => panic!("{k}: {other:?}"),
        };
        (get("code"), get("description"))
    }

    #[test]
    fn publish_flow() {
        let mut session = ServerSession::new();
        let mut bytes = preamble();
        bytes.extend(media());
        bytes.extend(command(
            3,
            0,
            vec![
                s("FCUnpublish"),
                Amf0Value::Number(5.0),
                Amf0Value::Null,
                s("demo"),
            ],
        ));
        bytes.extend(command(
            3,
            0,
            vec![
                s("deleteStream"),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                Amf0Value::Number(1.0),
            ],
        ));
        let (out, r) = run(&mut session, &bytes, usize::MAX);
        r.unwrap();
        let mut ev = out.events.into_iter();
        assert!(
            matches!(ev.next(), Some(SessionEvent::PublishRequested { request_id: 0, app, name }) if app == "live" && name == "demo")
        );
        let Some(SessionEvent::Metadata(meta)) = ev.next() else {
            panic!()
        };
        assert_eq!(
            (meta.width, meta.height, meta.frame_rate),
            (Some(1280), Some(720), Some(30.0))
        );
        assert_eq!(
            (meta.video_bitrate_kbps, meta.audio_bitrate_kbps),
            (Some(2500), None)
        );
        assert_eq!(meta.encoder.as_deref(), Some("test"));
        assert!(
            matches!(ev.next(), Some(SessionEvent::Track(t)) if t.kind() == TrackKind::Video && t.codec_string() == "avc1.64001f")
        );
        assert!(matches!(ev.next(), Some(SessionEvent::Track(t)) if t.kind() == TrackKind::Audio));
        let Some(SessionEvent::Frame(f)) = ev.next() else {
            panic!()
        };
        assert_eq!(
            (f.track, f.keyframe, f.dts.ticks(), f.pts.ticks()),
            (TrackId::VIDEO, true, 0, 66 * 90)
        );
        let Some(SessionEvent::Frame(f)) = ev.next() else {
            panic!()
        };
        assert_eq!(
            (f.track, f.dts.ticks(), &f.data[..]),
            (TrackId::AUDIO, 441, &b"aac frame"[..])
        );
        let Some(SessionEvent::Frame(f)) = ev.next() else {
            panic!()
        };
        assert_eq!(
            (f.keyframe, f.dts.ticks(), f.data.len()),
            (false, 33 * 90, 300)
        );
        assert!(
            matches!(ev.next(), Some(SessionEvent::PublishFinished { app, name }) if app == "live" && name == "demo")
        );
        assert!(
            ev.next().is_none(),
            "deleteStream after FCUnpublish finishes once"
        );

        let cmds = commands(&out.sent);
        let names: Vec<_> = cmds.iter().map(|(n, sid, _)| (n.as_str(), *sid)).collect();
        assert_eq!(names, [("_result", 0), ("_result", 0), ("onStatus", 1)]);
        assert_eq!(
            cmds[0].2[1],
            Amf0Value::Number(1.0),
            "connect transaction id echoed"
        );
        let Some(Amf0Value::Object(info)) = cmds[0].2.get(3) else {
            panic!()
        };
        assert_eq!(info.get("code"), Some(&s("NetConnection.Connect.Success")));
        assert_eq!(
            cmds[1].2[3],
            Amf0Value::Number(1.0),
            "createStream answers stream id 1"
        );
        assert_eq!(status_code(&cmds[2].2).0, "NetStream.Publish.Start");
        let types: Vec<u8> = server_messages(&out.sent).iter().map(|m| m.0).collect();
        assert_eq!(
            types,
            [5, 6, 1, 20, 20, 4, 20],
            "window ack, bandwidth, chunk size, ..."
        );
    }

    #[test]
    fn input_after_a_publish_request_waits_for_the_decision() {
        let mut session = ServerSession::new();
        let mut bytes = preamble();
        bytes.extend(media());
        let mut buf = BytesMut::from(&bytes[..]);
        session.handle_input(&mut buf).unwrap();
        let mut events = Vec::new();
        while let Some(o) = session.poll_output() {
            if let Output::Event(e) = o {
                events.push(e);
            }
        }
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(session.accept_publish(7).is_err(), "unknown id");
        session.accept_publish(0).unwrap();
        let frames = std::iter::from_fn(|| session.poll_output())
            .filter(|o| matches!(o, Output::Event(SessionEvent::Frame(_))))
            .count();
        assert_eq!(frames, 3);
        assert!(matches!(
            session.accept_publish(0),
            Err(SessionError::UnknownRequest(0))
        ));
    }

    /// A type 0 chunk header announcing a `length`-byte video message, and one 128-byte chunk.
    fn announce(length: u32) -> Vec<u8> {
        crate::chunk::encode::chunk(0, 6, 0, length, 9, 1, &[0x17; 128])
    }

    #[test]
    fn before_publish_a_long_message_is_refused_on_its_header() {
        // After connect, a 16 MiB message: the session fails on the header (split or not),
        // without holding the payload.
        let mut b = handshake();
        b.extend(connect("live"));
        b.extend(announce(crate::chunk::MAX_MESSAGE_LEN));
        let e = expect_err(&b);
        assert!(
            matches!(
                e,
                SessionError::Chunk(ChunkError::MessageTooLong {
                    length: 0x00FF_FFFF,
                    max: 65536,
                    ..
                })
            ),
            "{e}"
        );
        let mut session = ServerSession::new();
        let mut buf = BytesMut::from(&b[..]);
        assert!(session.handle_input(&mut buf).is_err());
        assert!(
            session.pending.capacity() <= b.len(),
            "payload was buffered"
        );

        // Even before connect (right after the handshake), with a configured limit.
        let limits = SessionLimits {
            max_message_before_publish: 4096,
            ..SessionLimits::default()
        };
        let mut session = ServerSession::with_limits(limits);
        let mut b = handshake();
        b.extend(announce(4097));
        let mut buf = BytesMut::from(&b[..]);
        let e = session.handle_input(&mut buf).unwrap_err();
        assert!(
            e.to_string().ends_with(
                "message of 4097 bytes (type 9, chunk stream 6) exceeds the limit of 4096 bytes"
            ),
            "{e}"
        );

        // A large chunk size before publish is refused too.
        let mut b = handshake();
        b.extend(message(2, 0, 1, 0, &(1u32 << 20).to_be_bytes(), 128));
        assert!(matches!(
            expect_err(&b),
            SessionError::Chunk(ChunkError::ChunkSizeTooLarge {
                size: 1_048_576,
                max: 65536
            })
        ));
        // ... while the usual ones (OBS and ffmpeg set 4096) are fine.
        let mut session = ServerSession::new();
        let mut b = handshake();
        b.extend(message(2, 0, 1, 0, &4096u32.to_be_bytes(), 128));
        b.extend(connect("live"));
        run(&mut session, &b, usize::MAX).1.unwrap();
    }

    #[test]
    fn once_publishing_frames_may_be_large_and_after_unpublish_they_may_not() {
        let big = legacy_video(1, 7, 1, 0, &vec![0x41; 300_000]);
        let mut session = ServerSession::new();
        let mut b = preamble();
        b.extend(media());
        // A 1 MiB chunk size and a 300 kB frame, once the publish is live.
        b.extend(message(2, 0, 1, 0, &(1u32 << 20).to_be_bytes(), 128));
        b.extend(message(6, 66, 9, 1, &big, 1 << 20));
        let (out, r) = run(&mut session, &b, 4000);
        r.unwrap();
        let sizes: Vec<usize> = out
            .events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Frame(f) => Some(f.data.len()),
                _ => None,
            })
            .collect();
        assert!(sizes.iter().any(|&n| n > 290_000), "{sizes:?}");

        // The publish ends: the connection is back to the limits of an unauthenticated one.
        let mut b = command(
            3,
            0,
            vec![
                s("FCUnpublish"),
                Amf0Value::Number(5.0),
                Amf0Value::Null,
                s("demo"),
            ],
        );
        b.extend(message(7, 0, 9, 1, &big, 1 << 20));
        let (out, r) = run(&mut session, &b, usize::MAX);
        assert!(out
            .events
            .iter()
            .any(|e| matches!(e, SessionEvent::PublishFinished { .. })));
        assert!(
            matches!(
                r,
                Err(SessionError::Chunk(ChunkError::MessageTooLong {
                    max: 65536,
                    ..
                }))
            ),
            "{r:?}"
        );

        // A configured cap applies while publishing.
        let limits = SessionLimits {
            max_message: 200_000,
            ..SessionLimits::default()
        };
        let mut session = ServerSession::with_limits(limits);
        let mut b = preamble();
        b.extend(media());
        b.extend(message(6, 66, 9, 1, &big, 128));
        let (_, r) = run(&mut session, &b, usize::MAX);
        assert!(
            matches!(
                r,
                Err(SessionError::Chunk(ChunkError::MessageTooLong {
                    max: 200_000,
                    ..
                }))
            ),
            "{r:?}"
        );
    }

    #[test]
    fn one_publish_at_a_time_per_connection() {
        // A second publish while the first is live ends the connection: one stream per
        // connection, whatever the caller does.
        let mut b = preamble();
        b.extend(create_stream());
        let second = command(
            8,
            2,
            vec![
                s("publish"),
                Amf0Value::Number(6.0),
                Amf0Value::Null,
                s("second"),
                s("live"),
            ],
        );
        let at = b.len();
        b.extend(second);
        let mut session = ServerSession::new();
        let (out, r) = run(&mut session, &b, usize::MAX);
        let requests = out
            .events
            .iter()
            .filter(|e| matches!(e, SessionEvent::PublishRequested { .. }))
            .count();
        assert_eq!(requests, 1);
        assert_eq!(
            r.unwrap_err().to_string(),
            format!("command \"publish\" at byte {at}: publish while another publish is active")
        );
    }

    #[test]
    fn rejected_publish_gets_an_error_status_and_no_media() {
        let mut session = ServerSession::new();
        let mut bytes = preamble();
        bytes.extend(media());
        let mut buf = BytesMut::from(&bytes[..]);
        session.handle_input(&mut buf).unwrap();
        let mut sent = Vec::new();
        let drain = |session: &mut ServerSession, sent: &mut Vec<u8>| {
            let mut events = Vec::new();
            while let Some(o) = session.poll_output() {
                match o {
                    Output::Send(b) => sent.extend_from_slice(&b),
                    Output::Event(e) => events.push(e),
                }
            }
            events
        };
        assert_eq!(drain(&mut session, &mut sent).len(), 1);
        session
            .reject_publish(0, "stream live/demo is already being published")
            .unwrap();
        assert!(
            drain(&mut session, &mut sent).is_empty(),
            "media of a rejected stream is ignored"
        );
        let cmds = commands(&sent);
        let (name, sid, values) = cmds.last().unwrap();
        assert_eq!((name.as_str(), *sid), ("onStatus", 1));
        assert_eq!(
            status_code(values),
            (
                "NetStream.Publish.Denied".into(),
                "stream live/demo is already being published".into()
            )
        );
        // The client may try again.
        let mut buf = BytesMut::from(&publish("other")[..]);
        session.handle_input(&mut buf).unwrap();
        assert!(matches!(
            drain(&mut session, &mut sent)[..],
            [SessionEvent::PublishRequested { request_id: 1, .. }]
        ));
    }

    #[test]
    fn unsupported_codecs_are_reported_once_and_dropped() {
        let mut session = ServerSession::new();
        let mut bytes = preamble();
        for ts in 0..3 {
            bytes.extend(audio(ts, vec![0x2f, 0xff, 0xfb, 0x90])); // MP3
        }
        bytes.extend(video(0, legacy_video(1, 7, 0, 0, AVC_RECORD)));
        bytes.extend(video(0, legacy_video(1, 7, 1, 0, b"\0\0\0\x01\x65")));
        let (out, r) = run(&mut session, &bytes, usize::MAX);
        r.unwrap();
        let kinds: Vec<&str> = out
            .events
            .iter()
            .map(|e| match e {
                SessionEvent::PublishRequested { .. } => "publish",
                SessionEvent::Unsupported(e) => {
                    assert_eq!(e.to_string(), "audio tag: unsupported sound format 2 (MP3)");
                    "unsupported"
                }
                SessionEvent::Track(_) => "track",
                SessionEvent::Frame(_) => "frame",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["publish", "unsupported", "track", "frame"]);
    }

    #[test]
    fn frames_before_the_sequence_header_are_counted() {
        let mut session = ServerSession::new();
        let mut bytes = preamble();
        bytes.extend(video(0, legacy_video(1, 7, 1, 0, b"\0\0\0\x01\x65")));
        bytes.extend(audio(0, aac(1, b"x")));
        let (out, r) = run(&mut session, &bytes, usize::MAX);
        r.unwrap();
        assert_eq!(out.events.len(), 1);
        assert_eq!(session.dropped_frames(), 2);
    }

    #[test]
    fn ping_and_window_acknowledgement() {
        let mut session = ServerSession::new();
        let mut bytes = handshake();
        bytes.extend(connect("live"));
        // Window Acknowledgement Size 100, then a PingRequest with timestamp 0x01020304.
        bytes.extend(message(2, 0, 5, 0, &100u32.to_be_bytes(), 128));
        bytes.extend(message(2, 0, 4, 0, &[0, 6, 1, 2, 3, 4], 128));
        let (out, r) = run(&mut session, &bytes, usize::MAX);
        r.unwrap();
        let msgs = server_messages(&out.sent);
        assert!(
            msgs.iter()
                .any(|(t, _, p)| *t == 4 && p[..] == [0, 7, 1, 2, 3, 4]),
            "PingResponse"
        );
        assert!(
            !msgs.iter().any(|(t, _, _)| *t == 3),
            "no ack before the window fills"
        );
        let (out2, r) = run(&mut session, &create_stream().repeat(3), usize::MAX);
        r.unwrap();
        let mut all = out.sent.clone();
        all.extend(out2.sent);
        assert!(
            server_messages(&all).iter().any(|(t, _, _)| *t == 3),
            "Acknowledgement"
        );
    }

    fn expect_err(bytes: &[u8]) -> SessionError {
        for split in [usize::MAX, 1, 7] {
            let mut session = ServerSession::new();
            let (_, r) = run(&mut session, bytes, split);
            let e = r.expect_err("should fail");
            // Split or not, the same error; the session then stays failed.
            let mut session2 = ServerSession::new();
            let e2 = run(&mut session2, bytes, usize::MAX).1.unwrap_err();
            assert_eq!(e.to_string(), e2.to_string());
            let mut more = BytesMut::from(&b"more"[..]);
            assert!(matches!(
                session.handle_input(&mut more),
                Err(SessionError::Failed)
            ));
        }
        let mut session = ServerSession::new();
        run(&mut session, bytes, usize::MAX).1.unwrap_err()
    }

    #[test]
    fn malformed_input_is_an_error() {
        // Bad handshake version byte.
        let mut b = handshake();
        b[0] = 6;
        assert!(matches!(expect_err(&b), SessionError::Handshake { .. }));

        // Garbage after the handshake: a type 3 chunk on a chunk stream never opened.
        let mut b = handshake();
        b.extend_from_slice(&[0xc3, 0xde, 0xad, 0xbe, 0xef]);
        let e = expect_err(&b);
        assert!(
            matches!(
                e,
                SessionError::Chunk(ChunkError::NoPreviousHeader { offset: 3073, .. })
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "chunk at byte 3073: type 3 header on chunk stream 3 with no previous header"
        );

        // Set Chunk Size 0; a short one.
        let mut b = handshake();
        b.extend(message(2, 0, 1, 0, &[0, 0, 0, 0], 128));
        assert!(matches!(
            expect_err(&b),
            SessionError::Chunk(ChunkError::InvalidChunkSize { size: 0 })
        ));
        let mut b = handshake();
        b.extend(message(2, 0, 1, 0, &[0, 0], 128));
        assert!(matches!(
            expect_err(&b),
            SessionError::InvalidMessage { type_id: 1, .. }
        ));

        // A command whose name is not a string; truncated AMF0.
        let mut b = handshake();
        b.extend(command(3, 0, vec![Amf0Value::Number(1.0)]));
        assert!(matches!(
            expect_err(&b),
            SessionError::InvalidMessage {
                type_id: 20,
                offset: 3073,
                ..
            }
        ));
        let mut b = handshake();
        b.extend(message(3, 0, 20, 0, &[0x02, 0x00, 0x07, b'c'], 128));
        assert!(matches!(
            expect_err(&b),
            SessionError::Amf0 {
                source: Amf0Error::Truncated { pos: 4 },
                ..
            }
        ));

        // Commands in the wrong state.
        let mut b = handshake();
        b.extend(publish("demo"));
        let e = expect_err(&b);
        assert_eq!(
            e.to_string(),
            "command \"publish\" at byte 3073: publish before connect"
        );
        let mut b = handshake();
        b.extend(connect("live"));
        b.extend(publish("demo"));
        assert!(matches!(expect_err(&b), SessionError::Command { .. }));
        let mut b = handshake();
        b.extend(connect(""));
        assert!(matches!(expect_err(&b), SessionError::Command { .. }));

        // A malformed sequence header on the published stream names the stream.
        let mut b = preamble();
        b.extend(video(0, legacy_video(1, 7, 0, 0, &AVC_RECORD[..6])));
        let e = expect_err(&b);
        assert!(
            e.to_string()
                .starts_with("stream live/demo: bad video message at byte"),
            "{e}"
        );
        assert!(
            matches!(&e, SessionError::Flv { source, .. } if matches!(**source, FlvError::Config { .. }))
        );
    }

    #[test]
    fn truncated_input_waits_without_events() {
        // A stream cut inside a chunk header or payload is "need more bytes", not an error.
        let mut bytes = preamble();
        bytes.extend(video(0, legacy_video(1, 7, 0, 0, AVC_RECORD)));
        for cut in [3073 + 5, bytes.len() - 30, bytes.len() - 1] {
            let mut session = ServerSession::new();
            let (out, r) = run(&mut session, &bytes[..cut], usize::MAX);
            r.unwrap();
            assert!(!out
                .events
                .iter()
                .any(|e| matches!(e, SessionEvent::Track(_))));
        }
    }

    /// A session past an accepted publish of live/demo.
    fn publishing() -> ServerSession {
        let mut session = ServerSession::new();
        let mut buf = BytesMut::from(&preamble()[..]);
        session.handle_input(&mut buf).unwrap();
        while let Some(o) = session.poll_output() {
            if let Output::Event(SessionEvent::PublishRequested { request_id, .. }) = o {
                session.accept_publish(request_id).unwrap();
            }
        }
        while session.poll_output().is_some() {}
        session
    }

    fn frames(session: &mut ServerSession) -> Vec<Frame> {
        std::iter::from_fn(|| session.poll_output())
            .filter_map(|o| match o {
                Output::Event(SessionEvent::Frame(f)) => Some(f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn frames_do_not_keep_the_read_buffer_alive() {
        // What made RSS grow by ~6x the playlist window: every single-chunk audio frame was a
        // slice of its 64 KiB read buffer, and kept all of it for the window (~40 s).
        let mut session = publishing();
        let mut bytes = video(0, legacy_video(1, 7, 0, 0, AVC_RECORD));
        bytes.extend(audio(0, aac(0, AAC_CONFIG)));
        for i in 0..20u32 {
            bytes.extend(audio(i * 21, aac(1, &[0x21; 100])));
            bytes.extend(video(i * 33, legacy_video(2, 7, 1, 0, &[0x41; 90])));
        }
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let (base, cap) = (buf.as_ptr() as usize, buf.capacity());
        let mut held = Vec::new();
        // Two reads into the one buffer; the first ends inside a chunk.
        for read in [&bytes[..1000], &bytes[1000..]] {
            assert!(buf.try_reclaim(read.len()), "the read buffer is shared");
            assert!((base..base + cap).contains(&(buf.as_ptr() as usize)));
            buf.extend_from_slice(read);
            session.handle_input(&mut buf).unwrap();
            assert!(session.pending.len() < 18, "{:?}", session);
            held.extend(frames(&mut session));
        }
        assert_eq!(held.len(), 40);
        for f in &held {
            let p = f.data.as_ptr() as usize;
            assert!(
                !(base..base + cap).contains(&p),
                "a frame points into the buffer"
            );
        }
        // With every frame alive, the buffer is reused for the next read without allocating.
        assert!(buf.try_reclaim(cap));
        assert_eq!(buf.as_ptr() as usize, base);
    }

    #[test]
    fn long_single_chunk_frames_are_slices_of_the_read_buffer() {
        let mut session = publishing();
        let mut bytes = message(2, 0, 1, 0, &(64u32 << 10).to_be_bytes(), 128);
        bytes.extend(message(
            6,
            0,
            9,
            1,
            &legacy_video(1, 7, 0, 0, AVC_RECORD),
            64 << 10,
        ));
        let nal = vec![0x65; crate::chunk::MIN_SLICE_LEN];
        bytes.extend(message(
            6,
            0,
            9,
            1,
            &legacy_video(1, 7, 1, 0, &nal),
            64 << 10,
        ));
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(&bytes);
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.capacity();
        session.handle_input(&mut buf).unwrap();
        let frames = frames(&mut session);
        assert_eq!(frames.len(), 1);
        assert!(
            range.contains(&(frames[0].data.as_ptr() as usize)),
            "frame data was copied"
        );
    }
}
