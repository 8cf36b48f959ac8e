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
