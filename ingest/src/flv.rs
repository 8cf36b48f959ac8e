//! FLV audio and video tag bodies, legacy and Enhanced RTMP, into core tracks and frames.
//!
//! RTMP audio (type 8) and video (type 9) messages carry exactly the body of an FLV tag.
//! [`parse_video_tag`] and [`parse_audio_tag`] read one body without any state;
//! [`Demuxer`] keeps the per-stream state (current decoder configurations, timestamp repair)
//! and turns bodies into [`Track`] and [`Frame`] values.
//!
//! Supported:
//!
//! | tag | header | codecs |
//! | --- | --- | --- |
//! | video, legacy | `frameType:4 codecId:4`, AVCPacketType, SI24 composition time | AVC (7), HEVC (12, the common pre-E-RTMP extension) |
//! | video, Enhanced RTMP v1/v2 | `1 frameType:3 packetType:4`, ModEx, FourCC | `avc1`, `hvc1`, `av01` |
//! | audio, legacy | `soundFormat:4 rate:2 size:1 type:1`, AACPacketType | AAC (10) |
//! | audio, Enhanced RTMP v2 | `9:4 packetType:4`, ModEx, FourCC | `mp4a` |
//!
//! Everything else the specifications define is recognised and reported as
//! [`FlvError::Unsupported`], which is not fatal ([`FlvError::is_fatal`]): the caller logs it
//! and drops the tag. Command frames, E-RTMP metadata packets and empty ("silence") tags carry
//! no media and parse to [`VideoTag::NoMedia`] / [`AudioTag::NoMedia`].

use bytes::Bytes;
use zerocast_core::codec::{
    aac::AacConfig, av1::Av1Config, avc::AvcConfig, hevc::HevcConfig, CodecError,
};
use zerocast_core::{
    AudioCodec, Frame, Timescale, Timestamp, Track, TrackId, TrackKind, VideoCodec,
};

use crate::timestamp::Unwrapper;

/// A tag body that cannot be used. Positions are byte offsets within the tag body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    /// The body ended before a field.
    #[error("{kind} tag truncated at byte {pos}")]
    Truncated {
        /// Audio or video.
        kind: &'static str,
        /// Offset where more bytes were needed.
        pos: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("{kind} tag: invalid {field} {value} at byte {pos}")]
    Invalid {
        /// Audio or video.
        kind: &'static str,
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: u32,
        /// Its offset.
        pos: usize,
    },
    /// A decoder configuration record that the codec parser refused.
    #[error("{kind} tag: bad decoder configuration at byte {pos}")]
    Config {
        /// Audio or video.
        kind: &'static str,
        /// Offset of the record within the tag body.
        pos: usize,
        /// What the codec parser found.
        #[source]
        source: CodecError,
    },
    /// A valid tag for a codec or feature this server does not ingest (MP3 audio, VP9 video,
    /// multitrack…). Not fatal: drop the tag and keep the connection.
    #[error("{kind} tag: unsupported {what}")]
    Unsupported {
        /// Audio or video.
        kind: &'static str,
        /// What is not supported, e.g. `sound format 2 (MP3)` or `FourCC "vp09"`.
        what: String,
    },
}

impl FlvError {
    /// `false` for [`FlvError::Unsupported`] (log it, drop the tag, keep the connection);
    /// `true` for malformed tags.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Unsupported { .. })
    }
}

const VIDEO: &str = "video";
const AUDIO: &str = "audio";

/// The codec of a coded frame, to match it against the current track configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VideoFormat {
    /// H.264 / AVC.
    Avc,
    /// H.265 / HEVC.
    Hevc,
    /// AV1.
    Av1,
}

impl VideoFormat {
    /// The format of a configured codec.
    pub fn of(codec: &VideoCodec) -> Option<Self> {
        match codec {
            VideoCodec::Avc(_) => Some(Self::Avc),
            VideoCodec::Hevc(_) => Some(Self::Hevc),
            VideoCodec::Av1(_) => Some(Self::Av1),
            _ => None,
        }
    }
}

/// One parsed video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VideoTag {
    /// A decoder configuration record (AVC sequence header, E-RTMP SequenceStart).
    SequenceStart(VideoCodec),
    /// One coded frame.
    Frame {
        /// Its codec.
        format: VideoFormat,
        /// Frame type 1: a random access point.
        keyframe: bool,
        /// `pts - dts` in milliseconds (SI24; zero for CodedFramesX and AV1).
        composition_time: i32,
        /// Length-prefixed NAL units (AVC, HEVC) or OBUs (AV1): a slice of the tag body.
        data: Bytes,
    },
    /// End of sequence.
    SequenceEnd,
    /// A tag with no media: command frame, E-RTMP metadata, empty body.
    NoMedia,
}

/// One parsed audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AudioTag {
    /// A decoder configuration (AAC AudioSpecificConfig).
    SequenceStart(AudioCodec),
    /// One coded frame (raw AAC): a slice of the tag body.
    Frame(Bytes),
    /// A tag with no media: an empty ("silence") message, SequenceEnd, channel configuration.
    NoMedia,
}

/// Reads big-endian fields from a tag body, reporting positions on failure.
struct Cursor<'a> {
    body: &'a Bytes,
    pos: usize,
    kind: &'static str,
}

impl Cursor<'_> {
    fn truncated(&self, pos: usize) -> FlvError {
        FlvError::Truncated {
            kind: self.kind,
            pos,
        }
    }

    fn u8(&mut self) -> Result<u8, FlvError> {
        let b = *self.body.get(self.pos).ok_or(self.truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], FlvError> {
        let mut out = [0; N];
        let src = self
            .body
            .get(self.pos..self.pos + N)
            .ok_or(self.truncated(self.body.len()))?;
        out.copy_from_slice(src);
        self.pos += N;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), FlvError> {
        if self.body.len().saturating_sub(self.pos) < n {
            return Err(self.truncated(self.body.len()));
        }
        self.pos += n;
        Ok(())
    }

    fn si24(&mut self) -> Result<i32, FlvError> {
        let [a, b, c] = self.bytes::<3>()?;
        // Sign-extend 24 bits.
        Ok(i32::from_be_bytes([a, b, c, 0]) >> 8)
    }

    /// The rest of the body, as a slice (no copy). `self.pos <= len` always holds: every
    /// read above checks bounds before advancing.
    fn rest(&self) -> Bytes {
        self.body.slice(self.pos.min(self.body.len())..)
    }

    /// E-RTMP v2 ModEx prefixes: `size-1:u8 [size-1:u16]` bytes of data, then a byte
    /// `modExType:4 packetType:4`. Returns the final packet type. The only ModEx type defined,
    /// TimestampOffsetNano, is below the millisecond clock RTMP timestamps use: skipped.
    fn skip_mod_ex(&mut self, mut packet_type: u8) -> Result<u8, FlvError> {
        while packet_type == MOD_EX {
            let mut size = usize::from(self.u8()?) + 1;
            if size == 256 {
                size = usize::from(u16::from_be_bytes(self.bytes::<2>()?)) + 1;
            }
            self.skip(size)?;
            packet_type = self.u8()? & 0x0f;
        }
        Ok(packet_type)
    }

    fn config<T>(&self, parse: impl FnOnce(Bytes) -> Result<T, CodecError>) -> Result<T, FlvError> {
        parse(self.rest()).map_err(|source| FlvError::Config {
            kind: self.kind,
            pos: self.pos,
            source,
        })
    }
}

const MOD_EX: u8 = 7;

fn unsupported(kind: &'static str, what: impl Into<String>) -> FlvError {
    FlvError::Unsupported {
        kind,
        what: what.into(),
    }
}

fn fourcc_name(f: [u8; 4]) -> String {
    f.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// Parses one video tag body (the payload of an RTMP type 9 message).
///
/// ```
/// use bytes::Bytes;
/// use zerocast_ingest::flv::{parse_video_tag, VideoFormat, VideoTag};
///
/// // Legacy AVC inter frame, composition time 40 ms, one 2-byte NAL unit.
/// let body = Bytes::from_static(&[0x27, 0x01, 0x00, 0x00, 0x28, 0, 0, 0, 2, 0x41, 0x9a]);
/// let VideoTag::Frame { format, keyframe, composition_time, data } = parse_video_tag(&body)? else {
///     unreachable!()
/// };
/// assert_eq!((format, keyframe, composition_time), (VideoFormat::Avc, false, 40));
/// assert_eq!(&data[..], &[0, 0, 0, 2, 0x41, 0x9a]);
/// # Ok::<(), zerocast_ingest::flv::FlvError>(())
/// ```
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, FlvError> {
    let mut c = Cursor {
        body,
        pos: 0,
        kind: VIDEO,
    };
    if body.is_empty() {
        return Ok(VideoTag::NoMedia);
    }
    let b0 = c.u8()?;
    if b0 & 0x80 != 0 {
        return parse_ex_video(c, (b0 >> 4) & 0x07, b0 & 0x0f);
    }
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0f;
    check_frame_type(frame_type)?;
    if frame_type == 5 {
        // Command frame: one VideoCommand byte, no media.
        return Ok(VideoTag::NoMedia);
    }
    let format = match codec_id {
        7 => VideoFormat::Avc,
        12 => VideoFormat::Hevc,
        2 => return Err(unsupported(VIDEO, "codec id 2 (Sorenson H.263)")),
        3 | 6 => return Err(unsupported(VIDEO, format!("codec id {codec_id} (Screen)"))),
        4 | 5 => return Err(unsupported(VIDEO, format!("codec id {codec_id} (VP6)"))),
        other => {
            return Err(FlvError::Invalid {
                kind: VIDEO,
                field: "codecId",
                value: u32::from(other),
                pos: 0,
            })
        }
    };
    let packet_type = c.u8()?;
    let composition_time = c.si24()?;
    match packet_type {
        0 => Ok(VideoTag::SequenceStart(match format {
            VideoFormat::Hevc => VideoCodec::Hevc(c.config(HevcConfig::parse)?),
            _ => VideoCodec::Avc(c.config(AvcConfig::parse)?),
        })),
        1 => Ok(VideoTag::Frame {
            format,
            keyframe: frame_type == 1,
            composition_time,
            data: c.rest(),
        }),
        2 => Ok(VideoTag::SequenceEnd),
        other => Err(FlvError::Invalid {
            kind: VIDEO,
            field: "AVCPacketType",
            value: u32::from(other),
            pos: 1,
        }),
    }
}

fn check_frame_type(frame_type: u8) -> Result<(), FlvError> {
    if (1..=5).contains(&frame_type) {
        Ok(())
    } else {
        Err(FlvError::Invalid {
            kind: VIDEO,
            field: "frameType",
            value: u32::from(frame_type),
            pos: 0,
        })
    }
}

fn parse_ex_video(
    mut c: Cursor<'_>,
    frame_type: u8,
    packet_type: u8,
) -> Result<VideoTag, FlvError> {
    let packet_type = c.skip_mod_ex(packet_type)?;
    const METADATA: u8 = 4;
    if packet_type == METADATA {
        // AMF-encoded metadata (HDR colour info); the frame type is to be ignored.
        return Ok(VideoTag::NoMedia);
    }
    check_frame_type(frame_type)?;
    if frame_type == 5 {
        return Ok(VideoTag::NoMedia);
    }
    match packet_type {
        6 => return Err(unsupported(VIDEO, "E-RTMP multitrack")),
        5 => return Err(unsupported(VIDEO, "E-RTMP MPEG2TSSequenceStart")),
        0..=3 => {}
        other => return Err(unsupported(VIDEO, format!("E-RTMP packet type {other}"))),
    }
    let fourcc = c.bytes::<4>()?;
    let format = match &fourcc {
        b"avc1" => VideoFormat::Avc,
        b"hvc1" => VideoFormat::Hevc,
        b"av01" => VideoFormat::Av1,
        other => {
            return Err(unsupported(
                VIDEO,
                format!("FourCC {:?}", fourcc_name(*other)),
            ))
        }
    };
    let keyframe = frame_type == 1;
    match packet_type {
        0 => Ok(VideoTag::SequenceStart(match format {
            VideoFormat::Avc => VideoCodec::Avc(c.config(AvcConfig::parse)?),
            VideoFormat::Hevc => VideoCodec::Hevc(c.config(HevcConfig::parse)?),
            VideoFormat::Av1 => VideoCodec::Av1(c.config(Av1Config::parse)?),
        })),
        1 => {
            // AV1 CodedFrames carry no composition time: AV1 has no B-frame reordering.
            let composition_time = if format == VideoFormat::Av1 {
                0
            } else {
                c.si24()?
            };
            Ok(VideoTag::Frame {
                format,
                keyframe,
                composition_time,
                data: c.rest(),
            })
        }
        2 => Ok(VideoTag::SequenceEnd),
        // 3: CodedFramesX, composition time implied zero.
        _ => Ok(VideoTag::Frame {
            format,
            keyframe,
            composition_time: 0,
            data: c.rest(),
        }),
    }
}

/// Parses one audio tag body (the payload of an RTMP type 8 message).
///
/// ```
/// use bytes::Bytes;
/// use zerocast_ingest::flv::{parse_audio_tag, AudioTag};
///
/// let body = Bytes::from_static(&[0xaf, 0x01, 0x21, 0x10]);
/// assert_eq!(parse_audio_tag(&body)?, AudioTag::Frame(Bytes::from_static(&[0x21, 0x10])));
/// # Ok::<(), zerocast_ingest::flv::FlvError>(())
/// ```
pub fn parse_audio_tag(body: &Bytes) -> Result<AudioTag, FlvError> {
    let mut c = Cursor {
        body,
        pos: 0,
        kind: AUDIO,
    };
    if body.is_empty() {
        return Ok(AudioTag::NoMedia);
    }
    let b0 = c.u8()?;
    let format = b0 >> 4;
    match format {
        10 => {
            let packet_type = c.u8()?;
            match packet_type {
                0 => Ok(AudioTag::SequenceStart(AudioCodec::Aac(
                    c.config(AacConfig::parse)?,
                ))),
                1 => Ok(AudioTag::Frame(c.rest())),
                other => Err(FlvError::Invalid {
                    kind: AUDIO,
                    field: "AACPacketType",
                    value: u32::from(other),
                    pos: 1,
                }),
            }
        }
        9 => parse_ex_audio(c, b0 & 0x0f),
        other => {
            let name = match other {
                0 | 3 => "linear PCM",
                1 => "ADPCM",
                2 | 14 => "MP3",
                4..=6 => "Nellymoser",
                7 => "G.711 A-law",
                8 => "G.711 mu-law",
                11 => "Speex",
                15 => "device-specific",
                _ => "reserved",
            };
            Err(unsupported(AUDIO, format!("sound format {other} ({name})")))
        }
    }
}

fn parse_ex_audio(mut c: Cursor<'_>, packet_type: u8) -> Result<AudioTag, FlvError> {
    let packet_type = c.skip_mod_ex(packet_type)?;
    match packet_type {
        5 => return Err(unsupported(AUDIO, "E-RTMP multitrack")),
        0..=2 | 4 => {}
        other => return Err(unsupported(AUDIO, format!("E-RTMP packet type {other}"))),
    }
    let fourcc = c.bytes::<4>()?;
    if &fourcc != b"mp4a" {
        return Err(unsupported(
            AUDIO,
            format!("FourCC {:?}", fourcc_name(fourcc)),
        ));
    }
    match packet_type {
        0 => Ok(AudioTag::SequenceStart(AudioCodec::Aac(
            c.config(AacConfig::parse)?,
        ))),
        1 => Ok(AudioTag::Frame(c.rest())),
        // SequenceEnd, MultichannelConfig (AAC describes its own channels).
        _ => Ok(AudioTag::NoMedia),
    }
}

/// What [`Demuxer`] made of a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Demuxed {
    /// A new track, or a track whose decoder configuration changed.
    Track(Track),
    /// A coded frame of a configured track.
    Frame(Frame),
}

/// Per-stream tag state: the current decoder configurations and the timestamp repair.
///
/// - Video is [`TrackId::VIDEO`] in [`Timescale::VIDEO`]; audio is [`TrackId::AUDIO`] with the
///   sample rate as its timescale.
/// - A [`Demuxed::Track`] comes out for the first sequence header of a track and for every
///   sequence header that differs from the current one; repeated identical headers are silent.
/// - Frames before their track's sequence header (or of another codec than the configured one)
///   are dropped and counted in [`dropped_frames`](Self::dropped_frames).
/// - Frame timestamps go through one [`Unwrapper`] per track, so `dts` never decreases within
///   a track. Sequence headers do not touch the clocks (encoders often stamp them 0).
#[derive(Debug, Default)]
pub struct Demuxer {
    video: Option<VideoCodec>,
    audio: Option<(AudioCodec, Timescale)>,
    video_clock: Unwrapper,
    audio_clock: Unwrapper,
    dropped: u64,
}

impl Demuxer {
    /// A demuxer with no tracks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames dropped because their track had no (matching) sequence header yet.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// The current track of a kind, if its sequence header arrived.
    pub fn track(&self, kind: TrackKind) -> Option<Track> {
        match kind {
            TrackKind::Video => self.video.clone().map(|codec| Track::Video {
                id: TrackId::VIDEO,
                timescale: Timescale::VIDEO,
                codec,
            }),
            TrackKind::Audio => self.audio.clone().map(|(codec, timescale)| Track::Audio {
                id: TrackId::AUDIO,
                timescale,
                codec,
            }),
        }
    }

    /// Handles a video tag body with its RTMP timestamp (milliseconds).
    pub fn handle_video(
        &mut self,
        timestamp: u32,
        body: &Bytes,
    ) -> Result<Option<Demuxed>, FlvError> {
        match parse_video_tag(body)? {
            VideoTag::SequenceStart(codec) => {
                if self.video.as_ref() == Some(&codec) {
                    return Ok(None);
                }
                self.video = Some(codec);
                Ok(self.track(TrackKind::Video).map(Demuxed::Track))
            }
            VideoTag::Frame {
                format,
                keyframe,
                composition_time,
                data,
            } => {
                if self.video.as_ref().and_then(VideoFormat::of) != Some(format) {
                    self.dropped += 1;
                    return Ok(None);
                }
                if data.is_empty() {
                    return Ok(None);
                }
                let dts = self.video_clock.extend(timestamp);
                let pts = dts.saturating_add(i64::from(composition_time));
                Ok(Some(Demuxed::Frame(Frame {
                    track: TrackId::VIDEO,
                    dts: Timestamp::from_millis(dts).rescale(Timescale::VIDEO),
                    pts: Timestamp::from_millis(pts).rescale(Timescale::VIDEO),
                    keyframe,
                    data,
                })))
            }
            VideoTag::SequenceEnd | VideoTag::NoMedia => Ok(None),
        }
    }

    /// Handles an audio tag body with its RTMP timestamp (milliseconds).
    pub fn handle_audio(
        &mut self,
        timestamp: u32,
        body: &Bytes,
    ) -> Result<Option<Demuxed>, FlvError> {
        match parse_audio_tag(body)? {
            AudioTag::SequenceStart(codec) => {
                if self.audio.as_ref().map(|(c, _)| c) == Some(&codec) {
                    return Ok(None);
                }
                // AacConfig::parse refuses a zero sample rate; refuse it here too rather
                // than trust that.
                let timescale = Timescale::new(codec.sample_rate()).ok_or(FlvError::Invalid {
                    kind: AUDIO,
                    field: "sample rate",
                    value: 0,
                    pos: 2,
                })?;
                self.audio = Some((codec, timescale));
                Ok(self.track(TrackKind::Audio).map(Demuxed::Track))
            }
            AudioTag::Frame(data) => {
                let Some((_, timescale)) = self.audio else {
                    self.dropped += 1;
                    return Ok(None);
                };
                if data.is_empty() {
                    return Ok(None);
                }
                let dts =
                    Timestamp::from_millis(self.audio_clock.extend(timestamp)).rescale(timescale);
                Ok(Some(Demuxed::Frame(Frame {
                    track: TrackId::AUDIO,
                    dts,
                    pts: dts,
                    keyframe: true,
                    data,
                })))
            }
            AudioTag::NoMedia => Ok(None),
        }
    }
}

/// A small FLV tag body encoder, for tests, fuzz seeds and benchmarks.
#[doc(hidden)]
pub mod encode {
    /// A legacy video tag: `frame_type:4 codec_id:4`, packet type, SI24 composition time.
    pub fn legacy_video(
        frame_type: u8,
        codec_id: u8,
        packet_type: u8,
        composition_time: i32,
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = vec![(frame_type << 4) | (codec_id & 0x0f), packet_type];
        out.extend_from_slice(&composition_time.to_be_bytes()[1..]);
        out.extend_from_slice(data);
        out
    }

    /// An Enhanced RTMP video tag. `mod_ex` is the data of one ModEx prefix (1..=65536 bytes);
    /// `composition_time` is written when `Some`.
    pub fn ex_video(
        frame_type: u8,
        packet_type: u8,
        mod_ex: Option<&[u8]>,
        fourcc: &[u8; 4],
        composition_time: Option<i32>,
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        match mod_ex {
            Some(m) => {
                out.push(0x80 | (frame_type << 4) | 7);
                push_mod_ex(&mut out, m);
                out.push(packet_type); // modExType 0 (TimestampOffsetNano)
            }
            None => out.push(0x80 | (frame_type << 4) | packet_type),
        }
        out.extend_from_slice(fourcc);
        if let Some(ct) = composition_time {
            out.extend_from_slice(&ct.to_be_bytes()[1..]);
        }
        out.extend_from_slice(data);
        out
    }

    /// A legacy AAC audio tag (44.1 kHz, 16-bit, stereo flags).
    pub fn aac(packet_type: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0xaf, packet_type];
        out.extend_from_slice(data);
        out
    }

    /// An Enhanced RTMP audio tag.
    pub fn ex_audio(
        packet_type: u8,
        mod_ex: Option<&[u8]>,
        fourcc: &[u8; 4],
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        match mod_ex {
            Some(m) => {
                out.push(0x90 | 7);
                push_mod_ex(&mut out, m);
                out.push(packet_type);
            }
            None => out.push(0x90 | packet_type),
        }
        out.extend_from_slice(fourcc);
        out.extend_from_slice(data);
        out
    }

    fn push_mod_ex(out: &mut Vec<u8>, m: &[u8]) {
        let n = m.len().clamp(1, 65536) - 1;
        if n < 255 {
            out.push(n as u8);
        } else {
            out.push(255);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        out.extend_from_slice(m);
    }

    /// AVCDecoderConfigurationRecord of a 1280x720 High profile stream (from libx264).
    pub const AVC_RECORD: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xb4, 0x02,
        0x80, 0x2d, 0xd8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x47, 0x8c,
        0x19, 0x50, 0x01, 0x00, 0x04, 0x68, 0xef, 0x0f, 0xcb, 0xfd, 0xf8, 0xf8, 0x00,
    ];
    /// A minimal HEVCDecoderConfigurationRecord: Main profile, level 3.1, no parameter sets.
    pub const HEVC_RECORD: &[u8] = &[
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x00,
    ];
    /// AV1CodecConfigurationRecord: main profile, level 4.0, no config OBUs.
    pub const AV1_RECORD: &[u8] = &[0x81, 0x08, 0x0c, 0x00];
    /// AudioSpecificConfig: AAC-LC, 44.1 kHz, stereo.
    pub const AAC_CONFIG: &[u8] = &[0x12, 0x10];
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::encode::*;
    use super::*;

    fn b(v: Vec<u8>) -> Bytes {
        Bytes::from(v)
    }

    fn is_subslice(inner: &Bytes, outer: &Bytes) -> bool {
        let (i, o) = (inner.as_ptr() as usize, outer.as_ptr() as usize);
        i >= o && i + inner.len() <= o + outer.len()
    }

    #[test]
    fn legacy_avc() {
        let seq = b(legacy_video(1, 7, 0, 0, AVC_RECORD));
        let VideoTag::SequenceStart(VideoCodec::Avc(c)) = parse_video_tag(&seq).unwrap() else {
            panic!()
        };
        assert_eq!(c.codec_string(), "avc1.64001f");
        assert_eq!(&c.record[..], AVC_RECORD);

        let key = b(legacy_video(1, 7, 1, -33, &[0, 0, 0, 1, 0x65]));
        match parse_video_tag(&key).unwrap() {
            VideoTag::Frame {
                format: VideoFormat::Avc,
                keyframe: true,
                composition_time: -33,
                data,
            } => {
                assert_eq!(&data[..], &[0, 0, 0, 1, 0x65]);
                assert!(is_subslice(&data, &key));
            }
            other => panic!("{other:?}"),
        }
        let eos = b(legacy_video(1, 7, 2, 0, &[]));
        assert_eq!(parse_video_tag(&eos).unwrap(), VideoTag::SequenceEnd);
        let cmd = Bytes::from_static(&[0x57, 0x00]);
        assert_eq!(parse_video_tag(&cmd).unwrap(), VideoTag::NoMedia);
        assert_eq!(parse_video_tag(&Bytes::new()).unwrap(), VideoTag::NoMedia);
    }

    #[test]
    fn legacy_hevc_codec_12() {
        let seq = b(legacy_video(1, 12, 0, 0, HEVC_RECORD));
        assert!(matches!(
            parse_video_tag(&seq).unwrap(),
            VideoTag::SequenceStart(VideoCodec::Hevc(_))
        ));
    }

    #[test]
    fn enhanced_video() {
        let hevc = b(ex_video(1, 0, None, b"hvc1", None, HEVC_RECORD));
        let VideoTag::SequenceStart(VideoCodec::Hevc(c)) = parse_video_tag(&hevc).unwrap() else {
            panic!()
        };
        assert_eq!(c.nal_length_size, 4);

        let av1 = b(ex_video(1, 0, None, b"av01", None, AV1_RECORD));
        assert!(matches!(
            parse_video_tag(&av1).unwrap(),
            VideoTag::SequenceStart(VideoCodec::Av1(_))
        ));
        let avc = b(ex_video(1, 0, None, b"avc1", None, AVC_RECORD));
        assert!(matches!(
            parse_video_tag(&avc).unwrap(),
            VideoTag::SequenceStart(VideoCodec::Avc(_))
        ));

        // CodedFrames: SI24 for hvc1, none for av01; CodedFramesX: none.
        let f = b(ex_video(2, 1, None, b"hvc1", Some(80), b"nal"));
        assert!(matches!(parse_video_tag(&f).unwrap(),
            VideoTag::Frame { format: VideoFormat::Hevc, keyframe: false, composition_time: 80, data } if &data[..] == b"nal"));
        let f = b(ex_video(1, 1, None, b"av01", None, b"obu"));
        assert!(matches!(parse_video_tag(&f).unwrap(),
            VideoTag::Frame { format: VideoFormat::Av1, keyframe: true, composition_time: 0, data } if &data[..] == b"obu"));
        let f = b(ex_video(1, 3, None, b"hvc1", None, b"nal"));
        assert!(matches!(parse_video_tag(&f).unwrap(),
            VideoTag::Frame { composition_time: 0, data, .. } if &data[..] == b"nal"));

        // ModEx prefix (TimestampOffsetNano), short and 16-bit size forms.
        for len in [3, 300] {
            let f = b(ex_video(1, 3, Some(&vec![0; len]), b"hvc1", None, b"nal"));
            assert!(matches!(parse_video_tag(&f).unwrap(),
                VideoTag::Frame { data, .. } if &data[..] == b"nal"));
        }

        let end = b(ex_video(1, 2, None, b"av01", None, &[]));
        assert_eq!(parse_video_tag(&end).unwrap(), VideoTag::SequenceEnd);
        // Metadata (frame type ignored, even a reserved one) and command frames: no media.
        let meta = b(ex_video(0, 4, None, b"hvc1", None, &[0x02, 0, 0]));
        assert_eq!(parse_video_tag(&meta).unwrap(), VideoTag::NoMedia);
        let cmd = Bytes::from_static(&[0xd1, 0x00]);
        assert_eq!(parse_video_tag(&cmd).unwrap(), VideoTag::NoMedia);
    }

    #[test]
    fn unsupported_video_is_not_fatal() {
        for body in [
            ex_video(1, 0, None, b"vp09", None, &[1, 2, 3]),
            ex_video(1, 5, None, b"av01", None, &[]),
            vec![0x96, 0x00, b'h', b'v', b'c', b'1'], // multitrack
            vec![0x12, 0x00],                         // Sorenson H.263
            vec![0x14, 0x00],                         // VP6
        ] {
            let err = parse_video_tag(&b(body.clone())).unwrap_err();
            assert!(!err.is_fatal(), "{body:?}: {err}");
        }
        let err = parse_video_tag(&b(ex_video(1, 0, None, b"vp\x019", None, &[]))).unwrap_err();
        assert_eq!(err.to_string(), "video tag: unsupported FourCC \"vp?9\"");
    }

    #[test]
    fn malformed_video_is_fatal() {
        let cases: Vec<(Vec<u8>, FlvError)> = vec![
            (
                vec![0x17],
                FlvError::Truncated {
                    kind: VIDEO,
                    pos: 1,
                },
            ),
            (
                vec![0x17, 0x01, 0x00],
                FlvError::Truncated {
                    kind: VIDEO,
                    pos: 3,
                },
            ),
            (
                vec![0x17, 0x07, 0, 0, 0],
                FlvError::Invalid {
                    kind: VIDEO,
                    field: "AVCPacketType",
                    value: 7,
                    pos: 1,
                },
            ),
            (
                vec![0x18, 0x01, 0, 0, 0],
                FlvError::Invalid {
                    kind: VIDEO,
                    field: "codecId",
                    value: 8,
                    pos: 0,
                },
            ),
            (
                vec![0x07, 0x01, 0, 0, 0],
                FlvError::Invalid {
                    kind: VIDEO,
                    field: "frameType",
                    value: 0,
                    pos: 0,
                },
            ),
            (
                vec![0x91, b'h', b'v'],
                FlvError::Truncated {
                    kind: VIDEO,
                    pos: 3,
                },
            ),
            (
                vec![0x97, 0x05, 0, 0],
                FlvError::Truncated {
                    kind: VIDEO,
                    pos: 4,
                },
            ),
        ];
        for (body, want) in cases {
            let got = parse_video_tag(&b(body.clone())).unwrap_err();
            assert!(got.is_fatal());
            assert_eq!(got, want, "{body:?}");
        }
        // A truncated decoder configuration record.
        let err = parse_video_tag(&b(legacy_video(1, 7, 0, 0, &AVC_RECORD[..6]))).unwrap_err();
        assert!(matches!(err, FlvError::Config { pos: 5, .. }), "{err:?}");
        assert!(err.is_fatal());
    }

    #[test]
    fn audio() {
        let seq = b(aac(0, AAC_CONFIG));
        let AudioTag::SequenceStart(c) = parse_audio_tag(&seq).unwrap() else {
            panic!()
        };
        assert_eq!((c.sample_rate(), c.channels()), (44100, 2));
        let f = b(aac(1, b"raw"));
        match parse_audio_tag(&f).unwrap() {
            AudioTag::Frame(d) => {
                assert_eq!(&d[..], b"raw");
                assert!(is_subslice(&d, &f));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_audio_tag(&Bytes::new()).unwrap(), AudioTag::NoMedia);

        let ex = b(ex_audio(0, None, b"mp4a", &[0x11, 0x90]));
        assert!(matches!(
            parse_audio_tag(&ex).unwrap(),
            AudioTag::SequenceStart(_)
        ));
        let ex = b(ex_audio(1, Some(&[0, 0, 1]), b"mp4a", b"raw"));
        assert_eq!(
            parse_audio_tag(&ex).unwrap(),
            AudioTag::Frame(Bytes::from_static(b"raw"))
        );

        let mp3 = parse_audio_tag(&Bytes::from_static(&[0x2f, 0xff, 0xfb])).unwrap_err();
        assert!(!mp3.is_fatal());
        assert_eq!(
            mp3.to_string(),
            "audio tag: unsupported sound format 2 (MP3)"
        );
        let opus = parse_audio_tag(&b(ex_audio(0, None, b"Opus", &[]))).unwrap_err();
        assert!(!opus.is_fatal());

        for (body, pos) in [(vec![0xaf], 1), (vec![0x90, b'm'], 2)] {
            assert_eq!(
                parse_audio_tag(&b(body)).unwrap_err(),
                FlvError::Truncated { kind: AUDIO, pos }
            );
        }
        let bad = parse_audio_tag(&Bytes::from_static(&[0xaf, 0x00, 0x16, 0x90])).unwrap_err();
        assert!(matches!(
            bad,
            FlvError::Config {
                kind: AUDIO,
                pos: 2,
                ..
            }
        ));
        assert!(parse_audio_tag(&Bytes::from_static(&[0xaf, 0x02]))
            .unwrap_err()
            .is_fatal());
    }

    #[test]
    fn demuxer_tracks_and_frames() {
        let mut d = Demuxer::new();
        // Frames before the sequence header are dropped and counted.
        assert_eq!(
            d.handle_video(0, &b(legacy_video(1, 7, 1, 0, b"early")))
                .unwrap(),
            None
        );
        assert_eq!(d.handle_audio(0, &b(aac(1, b"early"))).unwrap(), None);
        assert_eq!(d.dropped_frames(), 2);

        let Some(Demuxed::Track(t)) = d
            .handle_video(0, &b(legacy_video(1, 7, 0, 0, AVC_RECORD)))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (t.id(), t.timescale(), t.kind()),
            (TrackId::VIDEO, Timescale::VIDEO, TrackKind::Video)
        );
        // The same header again: no new track.
        assert_eq!(
            d.handle_video(0, &b(legacy_video(1, 7, 0, 0, AVC_RECORD)))
                .unwrap(),
            None
        );

        let Some(Demuxed::Track(a)) = d.handle_audio(0, &b(aac(0, AAC_CONFIG))).unwrap() else {
            panic!()
        };
        assert_eq!(a.timescale(), Timescale::new(44100).unwrap());

        let body = b(legacy_video(1, 7, 1, 40, b"\0\0\0\x01\x65"));
        let Some(Demuxed::Frame(f)) = d.handle_video(1000, &body).unwrap() else {
            panic!()
        };
        assert_eq!(
            (f.track, f.dts.ticks(), f.pts.ticks(), f.keyframe),
            (TrackId::VIDEO, 90_000, 93_600, true)
        );
        assert!(is_subslice(&f.data, &body));

        let Some(Demuxed::Frame(f)) = d.handle_audio(1000, &b(aac(1, b"raw"))).unwrap() else {
            panic!()
        };
        assert_eq!(
            (f.track, f.dts.ticks(), f.pts.ticks(), f.keyframe),
            (TrackId::AUDIO, 44_100, 44_100, true)
        );

        // A frame of another codec than the configured one is dropped.
        assert_eq!(
            d.handle_video(1040, &b(ex_video(1, 3, None, b"hvc1", None, b"x")))
                .unwrap(),
            None
        );
        assert_eq!(d.dropped_frames(), 3);

        // A new configuration: a new Track; frames of the new codec flow.
        assert!(matches!(
            d.handle_video(0, &b(ex_video(1, 0, None, b"hvc1", None, HEVC_RECORD)))
                .unwrap(),
            Some(Demuxed::Track(Track::Video {
                codec: VideoCodec::Hevc(_),
                ..
            }))
        ));
        assert!(matches!(
            d.handle_video(1040, &b(ex_video(1, 3, None, b"hvc1", None, b"x")))
                .unwrap(),
            Some(Demuxed::Frame(_))
        ));
        // Sequence headers stamped 0 did not disturb the clock; a small step back is clamped.
        let Some(Demuxed::Frame(f)) = d
            .handle_video(1000, &b(ex_video(2, 3, None, b"hvc1", None, b"y")))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(f.dts.ticks(), 1040 * 90);
    }

    #[derive(Debug, Clone)]
    enum VideoCase {
        Legacy,
        Ex {
            fourcc: &'static [u8; 4],
            x: bool,
            mod_ex: Option<Vec<u8>>,
        },
    }

    fn video_case() -> impl Strategy<Value = VideoCase> {
        prop_oneof![
            Just(VideoCase::Legacy),
            (
                prop_oneof![Just(b"avc1"), Just(b"hvc1"), Just(b"av01")],
                any::<bool>(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 1..400)),
            )
                .prop_map(|(fourcc, x, mod_ex)| VideoCase::Ex { fourcc, x, mod_ex }),
        ]
    }

    proptest! {
        #[test]
        fn video_frames_round_trip(
            case in video_case(),
            keyframe in any::<bool>(),
            ct in -(1i32 << 23)..(1i32 << 23),
            data in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let frame_type = if keyframe { 1 } else { 2 };
            let (body, format, want_ct) = match &case {
                VideoCase::Legacy => (legacy_video(frame_type, 7, 1, ct, &data), VideoFormat::Avc, ct),
                VideoCase::Ex { fourcc, x, mod_ex } => {
                    let format = match *fourcc { b"avc1" => VideoFormat::Avc, b"hvc1" => VideoFormat::Hevc, _ => VideoFormat::Av1 };
                    let with_ct = !*x && format != VideoFormat::Av1;
                    let body = ex_video(frame_type, if *x { 3 } else { 1 }, mod_ex.as_deref(), fourcc,
                        with_ct.then_some(ct), &data);
                    (body, format, if with_ct { ct } else { 0 })
                }
            };
            let body = Bytes::from(body);
            let tag = parse_video_tag(&body).unwrap();
            let VideoTag::Frame { format: f, keyframe: k, composition_time, data: d } = tag else {
                return Err(TestCaseError::fail("not a frame"));
            };
            prop_assert_eq!((f, k, composition_time), (format, keyframe, want_ct));
            prop_assert_eq!(&d[..], &data[..]);
            prop_assert!(d.is_empty() || is_subslice(&d, &body));
        }

        #[test]
        fn audio_frames_round_trip(
            ex in any::<bool>(),
            mod_ex in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..300)),
            data in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let body = Bytes::from(if ex { ex_audio(1, mod_ex.as_deref(), b"mp4a", &data) } else { aac(1, &data) });
            let AudioTag::Frame(d) = parse_audio_tag(&body).unwrap() else {
                return Err(TestCaseError::fail("not a frame"));
            };
            prop_assert_eq!(&d[..], &data[..]);
            prop_assert!(d.is_empty() || is_subslice(&d, &body));
        }

        #[test]
        fn arbitrary_bodies_never_panic_and_frames_are_slices(
            tags in proptest::collection::vec((any::<bool>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..40),
        ) {
            let mut d = Demuxer::new();
            let mut last = [None, None];
            for (video, ts, body) in tags {
                let body = Bytes::from(body);
                let out = if video { d.handle_video(ts, &body) } else { d.handle_audio(ts, &body) };
                let i = usize::from(!video);
                if let Ok(Some(Demuxed::Track(_))) = out {
                    // A new configuration may change the timescale.
                    last[i] = None;
                }
                if let Ok(Some(Demuxed::Frame(f))) = out {
                    prop_assert!(is_subslice(&f.data, &body));
                    if let Some(prev) = last[i] {
                        prop_assert!(f.dts.ticks() >= prev);
                    }
                    last[i] = Some(f.dts.ticks());
                }
            }
        }
    }
}
