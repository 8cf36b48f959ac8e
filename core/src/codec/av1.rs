//! AV1CodecConfigurationRecord (`av1C`, AV1-ISOBMFF 2.3) and the sequence header's frame size.

use bytes::Bytes;

use super::{bits::BitReader, need, CodecError};

/// A parsed AV1CodecConfigurationRecord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Av1Config {
    /// The record bytes as received (the body of the `av1C` box).
    pub record: Bytes,
    /// `seq_profile`.
    pub profile: u8,
    /// `seq_level_idx_0`.
    pub level_idx: u8,
    /// `seq_tier_0`.
    pub tier: bool,
    /// 8, 10 or 12.
    pub bit_depth: u8,
    /// `monochrome`.
    pub monochrome: bool,
    /// Maximum frame size from the sequence header OBU in `configOBUs`.
    pub size: Option<(u32, u32)>,
}

impl Av1Config {
    /// Parses a record and the frame size of its sequence header.
    pub fn parse(record: Bytes) -> Result<Self, CodecError> {
        const R: &str = "AV1CodecConfigurationRecord";
        need(R, &record, 4)?;
        if record[0] != 0x81 {
            return Err(CodecError::Invalid {
                record: R,
                field: "marker/version",
                pos: 0,
            });
        }
        let high = record[2] & 0x40 != 0;
        let twelve = record[2] & 0x20 != 0;
        let profile = record[1] >> 5;
        Ok(Self {
            profile,
            level_idx: record[1] & 0x1f,
            tier: record[2] & 0x80 != 0,
            bit_depth: match (high, twelve, profile) {
                (true, true, 2) => 12,
                (true, _, _) => 10,
                _ => 8,
            },
            monochrome: record[2] & 0x10 != 0,
            size: sequence_header_size(&record[4..]),
            record,
        })
    }

    /// `av01.P.LLT.DD`.
    pub fn codec_string(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.profile,
            self.level_idx,
            if self.tier { 'H' } else { 'M' },
            self.bit_depth
        )
    }

    /// Frame size in pixels.
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        self.size
    }
}

/// Finds the first sequence header OBU in `obus` and reads its maximum frame size.
pub fn sequence_header_size(mut obus: &[u8]) -> Option<(u32, u32)> {
    while let Some(&header) = obus.first() {
        let obu_type = (header >> 3) & 0xf;
        let has_ext = header & 4 != 0;
        let has_size = header & 2 != 0;
        let mut pos = 1 + usize::from(has_ext);
        let len = if has_size {
            let (v, n) = leb128(obus.get(pos..)?)?;
            pos += n;
            usize::try_from(v).ok()?
        } else {
            obus.len().checked_sub(pos)?
        };
        let body = obus.get(pos..pos.checked_add(len)?)?;
        if obu_type == 1 {
            return parse_sequence_header(body);
        }
        obus = &obus[pos + len..];
    }
    None
}

fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in data.iter().take(8).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn parse_sequence_header(body: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::raw(body);
    r.skip(3)?; // seq_profile
    r.skip(1)?; // still_picture
    let reduced = r.bit()? == 1;
    if reduced {
        r.skip(5)?;
    } else {
        let timing_info_present = r.bit()? == 1;
        let mut decoder_model_info_present = false;
        let mut buffer_delay_length = 0;
        if timing_info_present {
            r.skip(64)?;
            if r.bit()? == 1 {
                // uvlc num_ticks_per_picture_minus_1
                let mut zeros = 0;
                while r.bit()? == 0 {
                    zeros += 1;
                    if zeros >= 32 {
                        return None;
                    }
                }
                r.skip(zeros)?;
            }
            decoder_model_info_present = r.bit()? == 1;
            if decoder_model_info_present {
                buffer_delay_length = r.bits(5)? + 1;
                r.skip(32 + 5 + 5)?;
            }
        }
        let initial_display_delay_present = r.bit()? == 1;
        let count = r.bits(5)? + 1;
        for _ in 0..count {
            r.skip(12)?;
            let level = r.bits(5)?;
            if level > 7 {
                r.skip(1)?;
            }
            if decoder_model_info_present && r.bit()? == 1 {
                r.skip(2 * buffer_delay_length + 1)?;
            }
            if initial_display_delay_present && r.bit()? == 1 {
                r.skip(4)?;
            }
        }
    }
    let wbits = r.bits(4)? as u8 + 1;
    let hbits = r.bits(4)? as u8 + 1;
    let w = r.bits(wbits)? + 1;
    let h = r.bits(hbits)? + 1;
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{bits::BitWriter, captures};

    /// The frame size fields that end every sequence header: 16-bit width and height.
    fn frame_size(b: &mut BitWriter, w: u32, h: u32) -> Vec<u8> {
        b.put(4, 15).put(4, 15).put(16, u64::from(w - 1));
        b.put(16, u64::from(h - 1)).take()
    }

    /// A sequence header OBU with a size field around `body`.
    fn sequence_header_obu(body: &[u8]) -> Vec<u8> {
        let mut obu = vec![1 << 3 | 2, body.len() as u8];
        obu.extend_from_slice(body);
        obu
    }

    #[test]
    fn enhanced_flv_capture() {
        let record = captures::video_sequence_start(captures::AV1_AAC_FLV, b"av01");
        let c = Av1Config::parse(record.clone()).unwrap();
        assert_eq!(c.codec_string(), "av01.0.01M.08");
        assert_eq!(c.dimensions(), Some((640, 360)));
        assert_eq!((c.bit_depth, c.monochrome, c.tier), (8, false, false));
        assert_eq!(c.record, record);
    }

    #[test]
    fn every_truncation_is_an_error_or_a_record_without_size() {
        let record = captures::video_sequence_start(captures::AV1_AAC_FLV, b"av01");
        for len in 0..record.len() {
            match Av1Config::parse(record.slice(..len)) {
                Err(e) => {
                    assert!(len < 4, "{len} bytes: {e}");
                    assert_eq!(
                        e,
                        CodecError::Truncated {
                            record: "AV1CodecConfigurationRecord",
                            pos: len
                        }
                    );
                }
                // A cut configOBUs loses the frame size, never gives a wrong one.
                Ok(c) => assert_eq!(c.dimensions(), None, "{len} bytes"),
            }
        }
    }

    #[test]
    fn bit_depth_tier_and_monochrome_flags() {
        // (byte 1, byte 2) -> (profile, bit depth, tier, monochrome, codec string)
        let cases = [
            (0x08, 0x40, (0, 10, false, false, "av01.0.08M.10")),
            (0x48, 0x60, (2, 12, false, false, "av01.2.08M.12")),
            (0x08, 0x60, (0, 10, false, false, "av01.0.08M.10")),
            (0x2d, 0x90, (1, 8, true, true, "av01.1.13H.08")),
        ];
        for (b1, b2, (profile, depth, tier, mono, codecs)) in cases {
            let c = Av1Config::parse(Bytes::from(vec![0x81, b1, b2, 0])).unwrap();
            assert_eq!(
                (c.profile, c.bit_depth, c.tier, c.monochrome),
                (profile, depth, tier, mono)
            );
            assert_eq!(c.codec_string(), codecs);
        }
    }

    #[test]
    fn reduced_still_picture_header() {
        // seq_profile 0, still_picture 1, reduced_still_picture_header 1, seq_level_idx 8
        let mut b = BitWriter::default();
        b.put(3, 0).put(1, 1).put(1, 1).put(5, 8);
        let body = frame_size(&mut b, 1920, 1080);
        let obus = sequence_header_obu(&body);
        assert_eq!(sequence_header_size(&obus), Some((1920, 1080)));
    }

    #[test]
    fn timing_and_decoder_model_info_are_skipped() {
        let mut b = BitWriter::default();
        b.put(3, 0).put(1, 0).put(1, 0);
        b.put(1, 1); // timing_info_present_flag
        b.put(32, 1001).put(32, 60_000); // num_units_in_display_tick, time_scale
        b.put(1, 1).put(3, 0b010); // equal_picture_interval, num_ticks_per_picture_minus_1: uvlc 1
        b.put(1, 1); // decoder_model_info_present_flag
        b.put(5, 9).put(32, 90_000).put(5, 31).put(5, 31); // buffer_delay_length_minus_1 = 9
        b.put(1, 1); // initial_display_delay_present_flag
        b.put(5, 1); // two operating points
                     // op 0: level 12 (> 7: seq_tier), decoder model (2 x 10 bits + 1), display delay
        b.put(12, 0x103).put(5, 12).put(1, 1);
        b.put(1, 1).put(10, 5).put(10, 6).put(1, 0);
        b.put(1, 1).put(4, 3);
        // op 1: level 5, no decoder model, no display delay
        b.put(12, 0).put(5, 5).put(1, 0).put(1, 0);
        let body = frame_size(&mut b, 3840, 2160);
        assert_eq!(
            sequence_header_size(&sequence_header_obu(&body)),
            Some((3840, 2160))
        );
        // Cut anywhere, the header gives no size.
        for len in 0..body.len() - 1 {
            assert_eq!(
                sequence_header_size(&sequence_header_obu(&body[..len])),
                None,
                "{len} bytes"
            );
        }
    }

    #[test]
    fn uvlc_with_32_leading_zeros_is_refused() {
        let mut b = BitWriter::default();
        b.put(5, 0)
            .put(1, 1)
            .put(64, 0)
            .put(1, 1)
            .put(32, 0)
            .put(1, 1);
        let body = frame_size(&mut b, 64, 64);
        assert_eq!(sequence_header_size(&sequence_header_obu(&body)), None);
    }

    #[test]
    fn obu_walk_skips_other_obus_and_extension_headers() {
        let mut b = BitWriter::default();
        b.put(3, 0).put(1, 1).put(1, 1).put(5, 0);
        let seq = frame_size(&mut b, 352, 288);
        // Temporal delimiter (type 2, empty), padding with an extension header (type 15), then
        // the sequence header without a size field: it runs to the end.
        let mut obus = vec![2 << 3 | 2, 0, 15 << 3 | 4 | 2, 0x00, 3, 0xaa, 0xbb, 0xcc];
        obus.push(1 << 3);
        obus.extend_from_slice(&seq);
        assert_eq!(sequence_header_size(&obus), Some((352, 288)));

        // No sequence header at all.
        assert_eq!(sequence_header_size(&obus[..8]), None);
        assert_eq!(sequence_header_size(&[]), None);
        // A size beyond the data, and a LEB128 size that never ends.
        assert_eq!(sequence_header_size(&[1 << 3 | 2, 40, 0, 0]), None);
        assert_eq!(
            sequence_header_size(&[
                1 << 3 | 2,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0x01
            ]),
            None
        );
    }

    #[test]
    fn leb128_values() {
        assert_eq!(leb128(&[0x00]), Some((0, 1)));
        assert_eq!(leb128(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(leb128(&[0x80]), None);
        assert_eq!(leb128(&[]), None);
    }

    #[test]
    fn codec_string_and_refusal() {
        // main profile, level 8 (4.0), main tier, 8 bit, no config OBUs
        let c = Av1Config::parse(Bytes::from_static(&[0x81, 0x08, 0x0c, 0x00])).unwrap();
        assert_eq!(c.codec_string(), "av01.0.08M.08");
        assert!(c.dimensions().is_none());
        assert!(Av1Config::parse(Bytes::from_static(&[0x01, 0, 0, 0])).is_err());
    }
}
