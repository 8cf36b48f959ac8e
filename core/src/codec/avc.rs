//! H.264 AVCDecoderConfigurationRecord (ISO/IEC 14496-15, 5.3.3.1) and SPS picture size.

use bytes::Bytes;

use super::{bits::BitReader, need, CodecError};

/// A parsed AVCDecoderConfigurationRecord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// The record bytes as received (the body of the `avcC` box).
    pub record: Bytes,
    /// `AVCProfileIndication`.
    pub profile: u8,
    /// `profile_compatibility`.
    pub compatibility: u8,
    /// `AVCLevelIndication`.
    pub level: u8,
    /// Bytes in each NAL unit length prefix (1, 2 or 4).
    pub nal_length_size: u8,
    /// Picture size from the first SPS, after cropping.
    pub size: Option<(u32, u32)>,
}

impl AvcConfig {
    /// Parses a record and the picture size of its first SPS.
    pub fn parse(record: Bytes) -> Result<Self, CodecError> {
        const R: &str = "AVCDecoderConfigurationRecord";
        need(R, &record, 7)?;
        if record[0] != 1 {
            return Err(CodecError::Invalid {
                record: R,
                field: "configurationVersion",
                pos: 0,
            });
        }
        let nal_length_size = (record[4] & 3) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::Invalid {
                record: R,
                field: "lengthSizeMinusOne",
                pos: 4,
            });
        }
        let num_sps = record[5] & 0x1f;
        let mut size = None;
        if num_sps > 0 {
            need(R, &record, 8)?;
            let len = usize::from(u16::from_be_bytes([record[6], record[7]]));
            need(R, &record, 8 + len)?;
            size = sps_size(&record[8..8 + len]);
        }
        Ok(Self {
            profile: record[1],
            compatibility: record[2],
            level: record[3],
            nal_length_size,
            size,
            record,
        })
    }

    /// `avc1.PPCCLL`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.compatibility, self.level
        )
    }

    /// Picture size in pixels.
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        self.size
    }
}

/// Width and height from an SPS NAL unit (with its one-byte header), after cropping.
pub fn sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::new(nal.get(1..)?);
    let profile_idc = r.bits(8)?;
    r.skip(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let n = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..n {
                        if next != 0 {
                            next = (last + i64::from(r.se()?)).rem_euclid(256);
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let w_mbs = r.ue()?.checked_add(1)?;
    let h_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        cl = r.ue()?;
        cr = r.ue()?;
        ct = r.ue()?;
        cb = r.ue()?;
    }
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, 0) => (2, 2),
        (2, 0) => (2, 1),
        _ => (1, 1),
    };
    let crop_x = if chroma_format_idc == 0 { 1 } else { sub_w };
    let crop_y = (2 - frame_mbs_only) * if chroma_format_idc == 0 { 1 } else { sub_h };
    let crop = |unit: u32, a: u32, b: u32| a.checked_add(b)?.checked_mul(unit);
    let width = w_mbs.checked_mul(16)?.checked_sub(crop(crop_x, cl, cr)?)?;
    let height = (2 - frame_mbs_only)
        .checked_mul(h_units)?
        .checked_mul(16)?
        .checked_sub(crop(crop_y, ct, cb)?)?;
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// avcC from `ffmpeg -f lavfi -i testsrc2=size=1280x720 -c:v libx264 -preset veryfast`.
    const RECORD_720P: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xb4, 0x02,
        0x80, 0x2d, 0xd8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x47, 0x8c,
        0x19, 0x50, 0x01, 0x00, 0x04, 0x68, 0xef, 0x0f, 0xcb, 0xfd, 0xf8, 0xf8, 0x00,
    ];

    #[test]
    fn parses_record_and_sps() {
        let c = AvcConfig::parse(Bytes::from_static(RECORD_720P)).unwrap();
        assert_eq!(c.codec_string(), "avc1.64001f");
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.dimensions(), Some((1280, 720)));
    }

    #[test]
    fn refuses_truncated_and_bad_version() {
        assert!(AvcConfig::parse(Bytes::from_static(&RECORD_720P[..10])).is_err());
        let mut bad = RECORD_720P.to_vec();
        bad[0] = 2;
        assert!(AvcConfig::parse(Bytes::from(bad)).is_err());
    }
}
