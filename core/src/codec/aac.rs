//! AAC AudioSpecificConfig (ISO/IEC 14496-3, 1.6.2.1).

use bytes::Bytes;

use super::{bits::BitReader, CodecError};

const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// A parsed AudioSpecificConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// The AudioSpecificConfig bytes as received (embedded unchanged in `esds`).
    pub record: Bytes,
    /// Audio object type (2 = AAC-LC, 5 = HE-AAC/SBR, 29 = HE-AACv2/PS).
    pub object_type: u8,
    /// Samples per second of the core decoder.
    pub sample_rate: u32,
    /// Channel count (from channelConfiguration; 7 means 8 channels).
    pub channels: u8,
}

impl AacConfig {
    /// Parses an AudioSpecificConfig.
    ///
    /// ```
    /// use zerocast_core::codec::aac::AacConfig;
    /// let c = AacConfig::parse(bytes::Bytes::from_static(&[0x11, 0x90])).unwrap();
    /// assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48000, 2));
    /// assert_eq!(c.codec_string(), "mp4a.40.2");
    /// ```
    pub fn parse(record: Bytes) -> Result<Self, CodecError> {
        const R: &str = "AudioSpecificConfig";
        let trunc = |pos| CodecError::Truncated { record: R, pos };
        let mut r = BitReader::raw(&record);
        let mut object_type = r.bits(5).ok_or_else(|| trunc(r.pos()))?;
        if object_type == 31 {
            object_type = 32 + r.bits(6).ok_or_else(|| trunc(r.pos()))?;
        }
        let index = r.bits(4).ok_or_else(|| trunc(r.pos()))?;
        let sample_rate = if index == 15 {
            r.bits(24).ok_or_else(|| trunc(r.pos()))?
        } else {
            *RATES.get(index as usize).ok_or(CodecError::Invalid {
                record: R,
                field: "samplingFrequencyIndex",
                pos: r.pos(),
            })?
        };
        let chan_cfg = r.bits(4).ok_or_else(|| trunc(r.pos()))?;
        if object_type == 0 || sample_rate == 0 {
            return Err(CodecError::Invalid {
                record: R,
                field: "audioObjectType",
                pos: 0,
            });
        }
        let channels = match chan_cfg {
            7 => 8,
            c => c as u8,
        };
        Ok(Self {
            object_type: object_type as u8,
            sample_rate,
            channels,
            record,
        })
    }

    /// `mp4a.40.<object type>`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Samples per AAC frame (1024 for every profile RTMP carries).
    pub const fn samples_per_frame(&self) -> u32 {
        1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_44100_stereo() {
        let c = AacConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44100, 2));
    }

    #[test]
    fn truncated_and_invalid() {
        assert!(matches!(
            AacConfig::parse(Bytes::from_static(&[0x12])),
            Err(CodecError::Truncated { .. })
        ));
        // sampling index 13 is reserved
        assert!(AacConfig::parse(Bytes::from_static(&[0x16, 0x90])).is_err());
    }
}
