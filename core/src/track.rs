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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::captures;

    fn hevc() -> VideoCodec {
        let record = captures::video_sequence_start(captures::HEVC_AAC_FLV, b"hvc1");
        VideoCodec::Hevc(HevcConfig::parse(record).unwrap())
    }

    fn av1() -> VideoCodec {
        let record = captures::video_sequence_start(captures::AV1_AAC_FLV, b"av01");
        VideoCodec::Av1(Av1Config::parse(record).unwrap())
    }

    fn aac() -> AudioCodec {
        let record = captures::aac_sequence_header(captures::AV1_AAC_FLV);
        AudioCodec::Aac(AacConfig::parse(record).unwrap())
    }

    #[test]
    fn video_codecs_of_the_captures() {
        // (codec, name, CODECS, size)
        let avc = VideoCodec::Avc(
            AvcConfig::parse(Bytes::from_static(&[
                0x01, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01,
                0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20,
                0xf1, 0x42, 0xa4, 0x80,
            ]))
            .unwrap(),
        );
        let cases = [
            (avc, "h264", "avc1.42c00d", (320, 240)),
            (hevc(), "hevc", "hvc1.1.6.L63.90", (640, 360)),
            (av1(), "av1", "av01.0.01M.08", (640, 360)),
        ];
        for (codec, name, codecs, size) in cases {
            assert_eq!(codec.name(), name);
            assert_eq!(codec.codec_string(), codecs);
            assert_eq!(codec.dimensions(), Some(size));
        }
    }

    #[test]
    fn tracks_answer_for_their_codec() {
        let video = Track::Video {
            id: TrackId::VIDEO,
            timescale: Timescale::VIDEO,
            codec: av1(),
        };
        assert_eq!(video.id(), TrackId(1));
        assert_eq!(video.timescale(), Timescale::VIDEO);
        assert_eq!(video.kind(), TrackKind::Video);
        assert_eq!(video.codec_string(), "av01.0.01M.08");

        let codec = aac();
        assert_eq!(
            (codec.name(), codec.sample_rate(), codec.channels()),
            ("aac", 48_000, 1)
        );
        let audio = Track::Audio {
            id: TrackId::AUDIO,
            timescale: Timescale::new(codec.sample_rate()).unwrap(),
            codec,
        };
        assert_eq!(audio.id(), TrackId(2));
        assert_eq!(audio.timescale().ticks(), 48_000);
        assert_eq!(audio.kind(), TrackKind::Audio);
        assert_eq!(audio.codec_string(), "mp4a.40.2");
    }
}
