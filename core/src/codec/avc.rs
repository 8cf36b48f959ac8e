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
    use crate::codec::bits::BitWriter;

    /// avcC from `ffmpeg -f lavfi -i testsrc2=size=1280x720 -c:v libx264 -preset veryfast`.
    const RECORD_720P: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xb4, 0x02,
        0x80, 0x2d, 0xd8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x47, 0x8c,
        0x19, 0x50, 0x01, 0x00, 0x04, 0x68, 0xef, 0x0f, 0xcb, 0xfd, 0xf8, 0xf8, 0x00,
    ];

    /// avcC records written by ffmpeg 5.1 / libx264 for
    /// `ffmpeg -f lavfi -i testsrc2=size=WxH -c:v libx264 OPTIONS -frames:v 1 out.mp4`.
    ///
    /// 320x240, `-profile:v baseline`: no chroma fields in the SPS, pic_order_cnt_type 2.
    const BASELINE_320X240: &[u8] = &[
        0x01, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41,
        0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42,
        0xa4, 0x80, 0x01, 0x00, 0x05, 0x68, 0xcb, 0x83, 0xcb, 0x20,
    ];
    /// 1920x1080, `-pix_fmt yuv420p`: 68 rows of macroblocks cropped by 8 lines.
    const HIGH_1080P: &[u8] = &[
        0x01, 0x64, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x1b, 0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40,
        0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00,
        0xc8, 0x3c, 0x60, 0xc6, 0x58, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd,
        0xf8, 0xf8, 0x00,
    ];
    /// 720x576, `-flags +ildct+ilme`: frame_mbs_only_flag 0, the height counts field pairs.
    const INTERLACED_576I: &[u8] = &[
        0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40,
        0xb4, 0x24, 0xd8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x19, 0x0f, 0x8a,
        0x14, 0xcb, 0x01, 0x00, 0x06, 0x68, 0xfb, 0xa3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
    ];
    /// 1920x1080, `-pix_fmt yuv422p`: High 4:2:2, crop in 4:2:2 chroma units.
    const HIGH422_1080P: &[u8] = &[
        0x01, 0x7a, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x1b, 0x67, 0x7a, 0x00, 0x28, 0xbc, 0xd9, 0x40,
        0x78, 0x02, 0x27, 0xe2, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00,
        0x32, 0x0f, 0x18, 0x31, 0x96, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfe,
        0xf8, 0xf8, 0x00,
    ];
    /// 1920x1080, `-pix_fmt yuv444p`: High 4:4:4 Predictive, crop in luma units.
    const HIGH444_1080P: &[u8] = &[
        0x01, 0xf4, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x1b, 0x67, 0xf4, 0x00, 0x28, 0x91, 0x9b, 0x28,
        0x0f, 0x00, 0x44, 0xfc, 0x4e, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x06,
        0x41, 0xe3, 0x06, 0x32, 0xc0, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xc4, 0x48, 0x44, 0xff,
        0xf8, 0xf8, 0x00,
    ];
    /// 1920x1080, `-pix_fmt gray`: chroma_format_idc 0.
    const MONOCHROME_1080P: &[u8] = &[
        0x01, 0x64, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x1b, 0x67, 0x64, 0x00, 0x28, 0xf3, 0x65, 0x01,
        0xe0, 0x08, 0x9f, 0x89, 0xc0, 0x5b, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x06,
        0x41, 0xe3, 0x06, 0x32, 0xc0, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfc,
        0xf8, 0xf8, 0x00,
    ];

    const ALL: [(&[u8], &str, (u32, u32)); 7] = [
        (RECORD_720P, "avc1.64001f", (1280, 720)),
        (BASELINE_320X240, "avc1.42c00d", (320, 240)),
        (HIGH_1080P, "avc1.640028", (1920, 1080)),
        (INTERLACED_576I, "avc1.64001e", (720, 576)),
        (HIGH422_1080P, "avc1.7a0028", (1920, 1080)),
        (HIGH444_1080P, "avc1.f40028", (1920, 1080)),
        (MONOCHROME_1080P, "avc1.640028", (1920, 1080)),
    ];

    /// The fields of an SPS this parser reads; `write` makes the NAL unit (header byte, RBSP
    /// with emulation prevention).
    #[derive(Clone)]
    struct Sps {
        profile_idc: u8,
        chroma_format_idc: u32,
        separate_colour_plane: bool,
        /// `None`: no seq_scaling_matrix; else, per list, `None` (not present) or the deltas.
        scaling_lists: Option<Vec<Option<Vec<i32>>>>,
        /// pic_order_cnt_type 1 with these offset_for_ref_frame values; else type 0.
        poc_cycle: Option<Vec<i32>>,
        width_mbs: u32,
        height_map_units: u32,
        frame_mbs_only: bool,
        crop: Option<[u32; 4]>,
    }

    impl Default for Sps {
        fn default() -> Self {
            Self {
                profile_idc: 100,
                chroma_format_idc: 1,
                separate_colour_plane: false,
                scaling_lists: None,
                poc_cycle: None,
                width_mbs: 40,
                height_map_units: 30,
                frame_mbs_only: true,
                crop: None,
            }
        }
    }

    impl Sps {
        fn write(&self) -> Vec<u8> {
            let mut w = BitWriter::default();
            w.put(8, self.profile_idc.into()).put(8, 0).put(8, 40).ue(0);
            if self.profile_idc == 100 || self.profile_idc == 244 {
                w.ue(self.chroma_format_idc);
                if self.chroma_format_idc == 3 {
                    w.put(1, self.separate_colour_plane.into());
                }
                w.ue(0).ue(0).put(1, 0);
                match &self.scaling_lists {
                    None => {
                        w.put(1, 0);
                    }
                    Some(lists) => {
                        w.put(1, 1);
                        for list in lists {
                            w.put(1, list.is_some().into());
                            for &d in list.iter().flatten() {
                                w.se(d);
                            }
                        }
                    }
                }
            }
            w.ue(0); // log2_max_frame_num_minus4
            match &self.poc_cycle {
                None => {
                    w.ue(0).ue(2);
                }
                Some(offsets) => {
                    w.ue(1).put(1, 0).se(-2).se(3).ue(offsets.len() as u32);
                    for &o in offsets {
                        w.se(o);
                    }
                }
            }
            w.ue(4)
                .put(1, 0)
                .ue(self.width_mbs - 1)
                .ue(self.height_map_units - 1);
            w.put(1, self.frame_mbs_only.into());
            if !self.frame_mbs_only {
                w.put(1, 0);
            }
            w.put(1, 1);
            match self.crop {
                None => {
                    w.put(1, 0);
                }
                Some([l, r, t, b]) => {
                    w.put(1, 1).ue(l).ue(r).ue(t).ue(b);
                }
            }
            w.put(1, 1); // rbsp_stop_one_bit
            let mut nal = vec![0x67];
            nal.extend(w.take_escaped());
            nal
        }
    }

    #[test]
    fn real_records_give_codec_strings_and_picture_sizes() {
        for (record, codecs, size) in ALL {
            let c = AvcConfig::parse(Bytes::from_static(record)).unwrap();
            assert_eq!(c.codec_string(), codecs);
            assert_eq!(c.dimensions(), Some(size), "{codecs}");
            assert_eq!(c.nal_length_size, 4);
            assert_eq!(c.record, record, "the record is kept as received");
        }
    }

    #[test]
    fn every_truncation_before_the_end_of_the_sps_is_reported() {
        for (record, codecs, size) in ALL {
            let sps_end = 8 + usize::from(u16::from_be_bytes([record[6], record[7]]));
            for len in 0..record.len() {
                let parsed = AvcConfig::parse(Bytes::copy_from_slice(&record[..len]));
                if len < sps_end {
                    assert_eq!(
                        parsed,
                        Err(CodecError::Truncated {
                            record: "AVCDecoderConfigurationRecord",
                            pos: len
                        }),
                        "{codecs}, {len} bytes"
                    );
                } else {
                    // The PPS is not read: a record cut inside it still gives the size.
                    assert_eq!(parsed.unwrap().dimensions(), Some(size));
                }
            }
        }
    }

    #[test]
    fn a_cut_sps_gives_no_size_or_the_right_one() {
        for (record, codecs, size) in ALL {
            let sps = &record[8..8 + usize::from(record[7])];
            for len in 0..sps.len() {
                let got = sps_size(&sps[..len]);
                assert!(
                    got.is_none() || got == Some(size),
                    "{codecs}, {len}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn nal_length_sizes_and_missing_sps() {
        for (bits, size) in [(0, 1), (1, 2), (3, 4)] {
            let mut r = HIGH_1080P.to_vec();
            r[4] = 0xfc | bits;
            assert_eq!(
                AvcConfig::parse(Bytes::from(r)).unwrap().nal_length_size,
                size
            );
        }
        let mut r = HIGH_1080P.to_vec();
        r[4] = 0xfe;
        assert_eq!(
            AvcConfig::parse(Bytes::from(r)),
            Err(CodecError::Invalid {
                record: "AVCDecoderConfigurationRecord",
                field: "lengthSizeMinusOne",
                pos: 4
            })
        );
        // numOfSequenceParameterSets = 0: a record, but no picture size.
        let c = AvcConfig::parse(Bytes::from_static(&[1, 0x64, 0, 0x28, 0xff, 0xe0, 0])).unwrap();
        assert_eq!(
            (c.codec_string().as_str(), c.dimensions()),
            ("avc1.640028", None)
        );
    }

    #[test]
    fn written_sps_sizes() {
        let base = Sps::default();
        assert_eq!(sps_size(&base.write()), Some((640, 480)));
        let cases = [
            // 4:2:0 crop units are 2x2.
            (
                Sps {
                    crop: Some([1, 2, 3, 4]),
                    ..base.clone()
                },
                (634, 466),
            ),
            // Field coding: map units are pairs of macroblock rows, crop units 2x4.
            (
                Sps {
                    frame_mbs_only: false,
                    height_map_units: 15,
                    crop: Some([0, 0, 0, 1]),
                    ..base.clone()
                },
                (640, 476),
            ),
            // 4:4:4 with separate colour planes: crop units are luma samples.
            (
                Sps {
                    profile_idc: 244,
                    chroma_format_idc: 3,
                    separate_colour_plane: true,
                    crop: Some([1, 0, 0, 1]),
                    ..base.clone()
                },
                (639, 479),
            ),
            // Baseline: no chroma_format_idc in the SPS, 4:2:0 implied.
            (
                Sps {
                    profile_idc: 66,
                    crop: Some([0, 0, 0, 4]),
                    ..base.clone()
                },
                (640, 472),
            ),
        ];
        for (sps, size) in cases {
            assert_eq!(sps_size(&sps.write()), Some(size));
        }
    }

    #[test]
    fn scaling_lists_are_skipped() {
        // Lists 0 and 6 explicit (deltas that wrap around 256 and end early with a 0 scale),
        // list 1 "use default" (a first delta of -8), the rest absent.
        let mut lists: Vec<Option<Vec<i32>>> = vec![None; 8];
        lists[0] = Some(
            (0..16)
                .map(|i| if i % 2 == 0 { 100 } else { -90 })
                .collect(),
        );
        lists[1] = Some(vec![-8]);
        lists[6] = Some(vec![5, 7, -20]); // scale 8 -> 13 -> 20 -> 0: the list ends early
        let sps = Sps {
            scaling_lists: Some(lists),
            crop: Some([0, 0, 0, 4]),
            ..Sps::default()
        };
        assert_eq!(sps_size(&sps.write()), Some((640, 472)));
        // 4:4:4 has 12 lists.
        let mut lists: Vec<Option<Vec<i32>>> = vec![None; 12];
        lists[11] = Some(vec![1; 64]);
        let sps = Sps {
            profile_idc: 244,
            chroma_format_idc: 3,
            scaling_lists: Some(lists),
            ..Sps::default()
        };
        assert_eq!(sps_size(&sps.write()), Some((640, 480)));
    }

    #[test]
    fn pic_order_cnt_type_1() {
        let sps = Sps {
            poc_cycle: Some(vec![1, -1, 2]),
            ..Sps::default()
        };
        assert_eq!(sps_size(&sps.write()), Some((640, 480)));
        // More than 255 offsets is out of range (7.4.2.1.1): refused without reading them.
        let sps = Sps {
            poc_cycle: Some(vec![0; 256]),
            ..Sps::default()
        };
        assert_eq!(sps_size(&sps.write()), None);
    }

    #[test]
    fn impossible_sizes_are_none_not_a_wrap() {
        let base = Sps::default();
        // Cropping more than the picture.
        assert_eq!(
            sps_size(
                &Sps {
                    crop: Some([200, 200, 0, 0]),
                    ..base.clone()
                }
                .write()
            ),
            None
        );
        assert_eq!(
            sps_size(
                &Sps {
                    crop: Some([0, 0, 0, u32::MAX / 2]),
                    ..base.clone()
                }
                .write()
            ),
            None
        );
        // A width in macroblocks whose pixel count overflows u32.
        assert_eq!(
            sps_size(
                &Sps {
                    width_mbs: u32::MAX / 8,
                    ..base.clone()
                }
                .write()
            ),
            None
        );
        assert_eq!(sps_size(&[]), None);
        assert_eq!(sps_size(&[0x67]), None);
    }

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
