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

    #[test]
    fn codec_string_and_refusal() {
        // main profile, level 8 (4.0), main tier, 8 bit, no config OBUs
        let c = Av1Config::parse(Bytes::from_static(&[0x81, 0x08, 0x0c, 0x00])).unwrap();
        assert_eq!(c.codec_string(), "av01.0.08M.08");
        assert!(c.dimensions().is_none());
        assert!(Av1Config::parse(Bytes::from_static(&[0x01, 0, 0, 0])).is_err());
    }
}
