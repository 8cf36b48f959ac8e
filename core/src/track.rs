//! Tracks and their codecs.

use crate::codec::{aac::AacConfig, av1::Av1Config, avc::AvcConfig, hevc::HevcConfig};
use crate::Timescale;

/// Identifies a track within one stream. RTMP carries at most one video and one audio track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u32);

impl TrackId {
    /// The video track of an RTMP stream.
    pub const VIDEO: Self = Self(1);
    /// The audio track of an RTMP stream.
    pub const AUDIO: Self = Self(2);
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// A video track.
    Video,
    /// An audio track.
    Audio,
}

/// A video codec with its decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VideoCodec {
    /// H.264 / AVC (`avc1`).
    Avc(AvcConfig),
    /// H.265 / HEVC (`hvc1`).
    Hevc(HevcConfig),
    /// AV1 (`av01`).
    Av1(Av1Config),
}

impl VideoCodec {
    /// The RFC 6381 `CODECS` string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        match self {
            Self::Avc(c) => c.codec_string(),
            Self::Hevc(c) => c.codec_string(),
            Self::Av1(c) => c.codec_string(),
        }
    }

    /// Coded picture width and height in pixels, when known.
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        match self {
            Self::Avc(c) => c.dimensions(),
            Self::Hevc(c) => c.dimensions(),
            Self::Av1(c) => c.dimensions(),
        }
    }

    /// Short name for logs and the streams API (`h264`, `hevc`, `av1`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Avc(_) => "h264",
            Self::Hevc(_) => "hevc",
            Self::Av1(_) => "av1",
        }
    }
}

/// An audio codec with its decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AudioCodec {
    /// AAC (`mp4a.40.x`).
    Aac(AacConfig),
}

impl AudioCodec {
    /// The RFC 6381 `CODECS` string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        match self {
            Self::Aac(c) => c.codec_string(),
        }
    }

    /// Samples per second.
    pub fn sample_rate(&self) -> u32 {
        match self {
            Self::Aac(c) => c.sample_rate,
        }
    }

    /// Channel count.
    pub fn channels(&self) -> u8 {
        match self {
            Self::Aac(c) => c.channels,
        }
    }

    /// Short name for logs and the streams API.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Aac(_) => "aac",
        }
    }
}

/// A track's identity, clock and decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Track {
    /// A video track.
    Video {
        /// Track id.
        id: TrackId,
        /// Clock of this track's timestamps.
        timescale: Timescale,
        /// Codec and configuration.
        codec: VideoCodec,
    },
    /// An audio track.
    Audio {
        /// Track id.
        id: TrackId,
        /// Clock of this track's timestamps (the sample rate).
        timescale: Timescale,
        /// Codec and configuration.
        codec: AudioCodec,
    },
}

impl Track {
    /// The track id.
    pub fn id(&self) -> TrackId {
        match self {
            Self::Video { id, .. } | Self::Audio { id, .. } => *id,
        }
    }

    /// The track's clock.
    pub fn timescale(&self) -> Timescale {
        match self {
            Self::Video { timescale, .. } | Self::Audio { timescale, .. } => *timescale,
        }
    }

    /// Audio or video.
    pub fn kind(&self) -> TrackKind {
        match self {
            Self::Video { .. } => TrackKind::Video,
            Self::Audio { .. } => TrackKind::Audio,
        }
    }

    /// The RFC 6381 codec string.
    pub fn codec_string(&self) -> String {
        match self {
            Self::Video { codec, .. } => codec.codec_string(),
            Self::Audio { codec, .. } => codec.codec_string(),
        }
    }
}
