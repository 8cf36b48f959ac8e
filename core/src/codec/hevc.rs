//! H.265 HEVCDecoderConfigurationRecord (ISO/IEC 14496-15, 8.3.3.1) and SPS picture size.

use bytes::Bytes;

use super::{bits::BitReader, need, CodecError};

/// A parsed HEVCDecoderConfigurationRecord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcConfig {
    /// The record bytes as received (the body of the `hvcC` box).
    pub record: Bytes,
    /// `general_profile_space`.
    pub profile_space: u8,
    /// `general_tier_flag`.
    pub tier: bool,
    /// `general_profile_idc`.
    pub profile_idc: u8,
    /// `general_profile_compatibility_flags`.
    pub compatibility: u32,
    /// `general_constraint_indicator_flags` (48 bits).
    pub constraints: [u8; 6],
    /// `general_level_idc`.
    pub level_idc: u8,
    /// Bytes in each NAL unit length prefix.
    pub nal_length_size: u8,
    /// Picture size from the first SPS, after the conformance window.
    pub size: Option<(u32, u32)>,
}

impl HevcConfig {
    /// Parses a record and the picture size of its first SPS.
    pub fn parse(record: Bytes) -> Result<Self, CodecError> {
        const R: &str = "HEVCDecoderConfigurationRecord";
        need(R, &record, 23)?;
        if record[0] != 1 {
            return Err(CodecError::Invalid {
                record: R,
                field: "configurationVersion",
                pos: 0,
            });
        }
        let nal_length_size = (record[21] & 3) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::Invalid {
                record: R,
                field: "lengthSizeMinusOne",
                pos: 21,
            });
        }
        let mut size = None;
        let mut pos = 23;
        for _ in 0..record[22] {
            need(R, &record, pos + 3)?;
            let nal_type = record[pos] & 0x3f;
            let count = u16::from_be_bytes([record[pos + 1], record[pos + 2]]);
            pos += 3;
            for _ in 0..count {
                need(R, &record, pos + 2)?;
                let len = usize::from(u16::from_be_bytes([record[pos], record[pos + 1]]));
                pos += 2;
                need(R, &record, pos + len)?;
                if nal_type == 33 && size.is_none() {
                    size = sps_size(&record[pos..pos + len]);
                }
                pos += len;
            }
        }
        let mut constraints = [0u8; 6];
        constraints.copy_from_slice(&record[6..12]);
        Ok(Self {
            profile_space: record[1] >> 6,
            tier: record[1] & 0x20 != 0,
            profile_idc: record[1] & 0x1f,
            compatibility: u32::from_be_bytes([record[2], record[3], record[4], record[5]]),
            constraints,
            level_idc: record[12],
            nal_length_size,
            size,
            record,
        })
    }

    /// `hvc1.<space><profile>.<compat>.<tier><level>.<constraints>` (ISO/IEC 14496-15, E.3).
    pub fn codec_string(&self) -> String {
        let space = match self.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let mut s = format!(
            "hvc1.{space}{}.{:x}.{}{}",
            self.profile_idc,
            self.compatibility.reverse_bits(),
            if self.tier { 'H' } else { 'L' },
            self.level_idc
        );
        let used = self
            .constraints
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        for b in &self.constraints[..used] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }

    /// Picture size in pixels.
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        self.size
    }
}

/// Width and height from an SPS NAL unit (with its two-byte header), after the conformance window.
pub fn sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::new(nal.get(2..)?);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    r.skip(1)?; // sps_temporal_id_nesting_flag
    r.skip(96)?; // general profile_tier_level
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    for i in 0..max_sub_layers_minus1 as usize {
        profile_present[i] = r.bit()? == 1;
        level_present[i] = r.bit()? == 1;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.skip(2)?;
        }
    }
    for i in 0..max_sub_layers_minus1 as usize {
        if profile_present[i] {
            r.skip(88)?;
        }
        if level_present[i] {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    let mut separate = 0;
    if chroma_format_idc == 3 {
        separate = r.bit()?;
    }
    let width = r.ue()?;
    let height = r.ue()?;
    if r.bit()? == 1 {
        let (l, rr, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (sw, sh) = match (chroma_format_idc, separate) {
            (1, 0) => (2, 2),
            (2, 0) => (2, 1),
            _ => (1, 1),
        };
        let crop = |unit: u32, a: u32, b: u32| a.checked_add(b)?.checked_mul(unit);
        return Some((
            width.checked_sub(crop(sw, l, rr)?)?,
            height.checked_sub(crop(sh, t, b)?)?,
        ));
    }
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::captures;

    /// hvcC (VPS, SPS, PPS) written by ffmpeg 5.1 / libx265 3.5 for
    /// `ffmpeg -f lavfi -i testsrc2=size=1920x1080 -c:v libx265 -pix_fmt yuv420p -tag:v hvc1
    /// -x265-params info=0 -frames:v 1 out.mp4`: the SPS codes 1920x1088 with a conformance
    /// window of 8 rows.
    const MAIN_1080P: &[u8] = &[
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x78, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01,
        0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x03, 0x00, 0x78, 0x95, 0x98, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x2a, 0x42, 0x01, 0x01,
        0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x78,
        0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24, 0xca, 0xf0, 0x16, 0x80, 0x80,
        0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84, 0xa2, 0x00, 0x01, 0x00, 0x07, 0x44,
        0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40,
    ];

    /// The same picture as `MAIN_1080P` in 4:2:2 (`-pix_fmt yuv422p`): Range Extensions profile,
    /// conformance window in 4:2:2 chroma units.
    const REXT_422_1080P: &[u8] = &[
        0x01, 0x04, 0x08, 0x00, 0x00, 0x00, 0x9d, 0x08, 0x00, 0x00, 0x00, 0x00, 0x78, 0xf0, 0x00,
        0xfc, 0xfe, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x17, 0x40, 0x01,
        0x0c, 0x01, 0xff, 0xff, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9d, 0x08, 0x00, 0x00, 0x03,
        0x00, 0x00, 0x78, 0x95, 0x98, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x29, 0x42, 0x01, 0x01, 0x04,
        0x08, 0x00, 0x00, 0x03, 0x00, 0x9d, 0x08, 0x00, 0x00, 0x03, 0x00, 0x00, 0x78, 0xb0, 0x03,
        0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24, 0xca, 0xf0, 0x16, 0x80, 0x80, 0x00, 0x00,
        0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84, 0xa2, 0x00, 0x01, 0x00, 0x07, 0x44, 0x01, 0xc1,
        0x72, 0xb4, 0x62, 0x40,
    ];

    /// The same picture in 4:4:4 (`-pix_fmt yuv444p`): chroma_format_idc 3, window in luma units.
    const REXT_444_1080P: &[u8] = &[
        0x01, 0x04, 0x08, 0x00, 0x00, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x00, 0x00, 0x78, 0xf0, 0x00,
        0xfc, 0xff, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x17, 0x40, 0x01,
        0x0c, 0x01, 0xff, 0xff, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03,
        0x00, 0x00, 0x78, 0x95, 0x98, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x2b, 0x42, 0x01, 0x01, 0x04,
        0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03, 0x00, 0x00, 0x78, 0x90, 0x00,
        0x78, 0x10, 0x02, 0x1c, 0xb2, 0xca, 0xcd, 0x24, 0x99, 0x5e, 0x02, 0xd0, 0x10, 0x00, 0x00,
        0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x01, 0x90, 0x80, 0xa2, 0x00, 0x01, 0x00, 0x08, 0x44,
        0x01, 0xc1, 0x72, 0x86, 0x0c, 0x46, 0x24,
    ];

    /// 640x360 with two temporal sub-layers (`-x265-params temporal-layers=1`): the SPS carries
    /// sub-layer profile/level flags before the picture size.
    const TWO_SUB_LAYERS_360P: &[u8] = &[
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x13, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x1c, 0x40, 0x01,
        0x0c, 0x02, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x03, 0x00, 0x3f, 0x00, 0x00, 0x95, 0x98, 0xac, 0xc0, 0x48, 0xa1, 0x00, 0x01, 0x00,
        0x2e, 0x42, 0x01, 0x02, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x03, 0x00, 0x3f, 0x00, 0x00, 0xa0, 0x05, 0x02, 0x01, 0x69, 0x65, 0x95, 0x98, 0xac,
        0xd2, 0x49, 0x95, 0xe0, 0x2d, 0x01, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00,
        0x19, 0x08, 0xa2, 0x00, 0x01, 0x00, 0x07, 0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40,
    ];

    /// 640x360, high tier, level 5.1 (`-x265-params high-tier=1:level-idc=5.1`).
    const HIGH_TIER_360P: &[u8] = &[
        0x01, 0x21, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x99, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01,
        0x0c, 0x01, 0xff, 0xff, 0x21, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x03, 0x00, 0x99, 0x95, 0x98, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x2a, 0x42, 0x01, 0x01,
        0x21, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x99,
        0xa0, 0x05, 0x02, 0x01, 0x69, 0x65, 0x95, 0x9a, 0x49, 0x32, 0xbc, 0x05, 0xa0, 0x20, 0x00,
        0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0x21, 0xa2, 0x00, 0x01, 0x00, 0x07, 0x44,
        0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40,
    ];

    fn parse(record: &'static [u8]) -> HevcConfig {
        HevcConfig::parse(Bytes::from_static(record)).unwrap()
    }

    #[test]
    fn real_records_give_codec_strings_and_picture_sizes() {
        let cases: [(&[u8], &str, (u32, u32)); 5] = [
            (MAIN_1080P, "hvc1.1.6.L120.90", (1920, 1080)),
            (REXT_422_1080P, "hvc1.4.10.L120.9D.8", (1920, 1080)),
            (REXT_444_1080P, "hvc1.4.10.L120.9E.8", (1920, 1080)),
            (TWO_SUB_LAYERS_360P, "hvc1.1.6.L63.90", (640, 360)),
            (HIGH_TIER_360P, "hvc1.1.6.H153.90", (640, 360)),
        ];
        for (record, codecs, size) in cases {
            let c = parse(record);
            assert_eq!(c.codec_string(), codecs);
            assert_eq!(c.dimensions(), Some(size), "{codecs}");
            assert_eq!(c.nal_length_size, 4);
            assert_eq!(c.record, record, "the record is kept as received");
        }
        let high = parse(HIGH_TIER_360P);
        assert!(high.tier);
        assert_eq!((high.profile_idc, high.level_idc), (1, 153));
    }

    #[test]
    fn enhanced_flv_capture() {
        let record = captures::video_sequence_start(captures::HEVC_AAC_FLV, b"hvc1");
        let c = HevcConfig::parse(record).unwrap();
        assert_eq!(c.dimensions(), Some((640, 360)));
        assert_eq!(c.codec_string(), "hvc1.1.6.L63.90"); // level 2.1
    }

    #[test]
    fn every_truncation_is_reported_where_the_record_ends() {
        for len in 0..MAIN_1080P.len() {
            let err = HevcConfig::parse(Bytes::from_static(&MAIN_1080P[..len])).unwrap_err();
            assert_eq!(
                err,
                CodecError::Truncated {
                    record: "HEVCDecoderConfigurationRecord",
                    pos: len
                },
                "{len} bytes"
            );
        }
    }

    #[test]
    fn refuses_bad_version_and_three_byte_lengths() {
        let mut bad = MAIN_1080P.to_vec();
        bad[0] = 0;
        assert!(matches!(
            HevcConfig::parse(Bytes::from(bad)),
            Err(CodecError::Invalid {
                field: "configurationVersion",
                pos: 0,
                ..
            })
        ));
        let mut bad = MAIN_1080P.to_vec();
        bad[21] = (bad[21] & !3) | 2; // lengthSizeMinusOne = 2
        assert!(matches!(
            HevcConfig::parse(Bytes::from(bad)),
            Err(CodecError::Invalid {
                field: "lengthSizeMinusOne",
                pos: 21,
                ..
            })
        ));
    }

    #[test]
    fn record_without_parameter_sets_has_no_size() {
        let mut header = MAIN_1080P[..23].to_vec();
        header[22] = 0; // numOfArrays
        let c = HevcConfig::parse(Bytes::from(header)).unwrap();
        assert_eq!(c.dimensions(), None);
        assert_eq!(c.codec_string(), "hvc1.1.6.L120.90");
    }

    #[test]
    fn codec_string_profile_space_and_constraint_bytes() {
        let mut c = parse(MAIN_1080P);
        for (space, prefix) in [(1, "hvc1.A1."), (2, "hvc1.B1."), (3, "hvc1.C1.")] {
            c.profile_space = space;
            assert!(c.codec_string().starts_with(prefix), "{}", c.codec_string());
        }
        c.profile_space = 0;
        // Trailing zero constraint bytes are left out, inner ones are kept.
        c.constraints = [0xb0, 0, 0, 0, 0x01, 0];
        assert_eq!(c.codec_string(), "hvc1.1.6.L120.B0.0.0.0.1");
        c.constraints = [0; 6];
        assert_eq!(c.codec_string(), "hvc1.1.6.L120");
    }

    #[test]
    fn sps_size_of_a_cut_sps_is_none_or_right() {
        assert_eq!(sps_size(&[]), None);
        assert_eq!(sps_size(&[0x42, 0x01]), None);
        // The SPS of MAIN_1080P (after the 23-byte header and the VPS array).
        let sps = &MAIN_1080P[57..57 + 0x2a];
        assert_eq!(sps_size(sps), Some((1920, 1080)));
        // Cut anywhere, it gives no size or the right one, never a wrong one; cut before the
        // end of profile_tier_level (2 + 1 + 12 bytes), no size.
        for len in 0..sps.len() {
            let size = sps_size(&sps[..len]);
            assert!(
                matches!(size, None | Some((1920, 1080))),
                "{len} bytes: {size:?}"
            );
            if len <= 15 {
                assert_eq!(size, None, "{len} bytes");
            }
        }
    }
}
