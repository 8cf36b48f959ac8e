//! An MSB-first bit reader over RBSP (emulation prevention bytes removed on the fly).

/// Reads bits from a NAL unit payload, skipping `0x000003` emulation prevention bytes.
#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u8,
    zeros: u8,
    rbsp: bool,
}

impl<'a> BitReader<'a> {
    /// A reader over an H.264/H.265 NAL unit payload (emulation prevention removed).
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            byte: 0,
            bit: 0,
            zeros: 0,
            rbsp: true,
        }
    }

    /// A reader over plain bytes (AV1 OBUs, AudioSpecificConfig): no emulation prevention.
    pub(crate) fn raw(data: &'a [u8]) -> Self {
        Self {
            rbsp: false,
            ..Self::new(data)
        }
    }

    /// Byte offset reached, for error reports.
    pub(crate) fn pos(&self) -> usize {
        self.byte
    }

    pub(crate) fn bit(&mut self) -> Option<u32> {
        if self.bit == 0 && self.rbsp {
            // Entering a new byte: drop an emulation prevention byte (00 00 03).
            let b = *self.data.get(self.byte)?;
            if self.zeros >= 2 && b == 3 {
                self.byte += 1;
                self.zeros = 0;
            }
            let b = *self.data.get(self.byte)?;
            self.zeros = if b == 0 {
                self.zeros.saturating_add(1)
            } else {
                0
            };
        }
        let b = *self.data.get(self.byte)?;
        let v = (b >> (7 - self.bit)) & 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
        }
        Some(u32::from(v))
    }

    pub(crate) fn bits(&mut self, n: u8) -> Option<u32> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Some(v as u32)
    }

    pub(crate) fn skip(&mut self, n: u32) -> Option<()> {
        for _ in 0..n {
            self.bit()?;
        }
        Some(())
    }

    /// Unsigned Exp-Golomb.
    pub(crate) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0u8;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// Signed Exp-Golomb.
    pub(crate) fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let v = k.div_ceil(2) as i32;
        Some(if k % 2 == 1 { v } else { -v })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 -> 0, 1, 2, 3
        let data = [0b1010_0110, 0b0100_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.ue(), Some(0));
        assert_eq!(r.ue(), Some(1));
        assert_eq!(r.ue(), Some(2));
        assert_eq!(r.ue(), Some(3));
    }

    #[test]
    fn skips_emulation_prevention() {
        let data = [0x00, 0x00, 0x03, 0x01];
        let mut r = BitReader::new(&data);
        assert_eq!(r.bits(24), Some(0x000001));
        assert!(r.bit().is_none());
    }
}
