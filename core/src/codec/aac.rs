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
    use crate::codec::{bits::BitWriter, captures};

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

    #[test]
    fn flv_capture() {
        let record = captures::aac_sequence_header(captures::HEVC_AAC_FLV);
        let c = AacConfig::parse(record.clone()).unwrap();
        // ffmpeg's aac encoder, 48 kHz mono (the sine source), with a trailing SBR sync extension.
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48000, 1));
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(c.samples_per_frame(), 1024);
        assert_eq!(c.record, record);
    }

    /// An AudioSpecificConfig header: object type (escaped above 30), rate, channels.
    fn asc(object_type: u32, rate: Result<u32, u32>, channels: u32) -> Vec<u8> {
        let mut w = BitWriter::default();
        if object_type >= 31 {
            w.put(5, 31).put(6, u64::from(object_type - 32));
        } else {
            w.put(5, object_type.into());
        }
        match rate {
            Ok(index) => w.put(4, index.into()),
            Err(explicit) => w.put(4, 15).put(24, explicit.into()),
        };
        w.put(4, channels.into()).take()
    }

    #[test]
    fn escaped_object_types_explicit_rates_and_eight_channels() {
        let c = AacConfig::parse(Bytes::from(asc(42, Ok(3), 2))).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (42, 48000, 2));
        assert_eq!(c.codec_string(), "mp4a.40.42");
        let c = AacConfig::parse(Bytes::from(asc(5, Err(37_800), 7))).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (5, 37_800, 8));
        for (index, rate) in RATES.iter().enumerate() {
            let c = AacConfig::parse(Bytes::from(asc(2, Ok(index as u32), 1))).unwrap();
            assert_eq!(c.sample_rate, *rate);
        }
    }

    #[test]
    fn refuses_object_type_zero_zero_rate_and_reserved_indexes() {
        let invalid = |field| {
            Err(CodecError::Invalid {
                record: "AudioSpecificConfig",
                field,
                pos: 0,
            })
        };
        assert_eq!(
            AacConfig::parse(Bytes::from(asc(0, Ok(3), 2))),
            invalid("audioObjectType")
        );
        assert_eq!(
            AacConfig::parse(Bytes::from(asc(2, Err(0), 2))),
            invalid("audioObjectType")
        );
        for index in [13, 14] {
            assert_eq!(
                AacConfig::parse(Bytes::from(asc(2, Ok(index), 2))),
                Err(CodecError::Invalid {
                    record: "AudioSpecificConfig",
                    field: "samplingFrequencyIndex",
                    pos: 1
                })
            );
        }
    }

    #[test]
    fn every_truncation_is_reported() {
        for full in [asc(2, Ok(3), 2), asc(42, Ok(3), 2), asc(5, Err(37_800), 7)] {
            for len in 0..full.len() {
                let err = AacConfig::parse(Bytes::copy_from_slice(&full[..len])).unwrap_err();
                assert_eq!(
                    err,
                    CodecError::Truncated {
                        record: "AudioSpecificConfig",
                        pos: len
                    }
                );
            }
        }
    }
}
