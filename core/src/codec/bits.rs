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

/// The inverse of [`BitReader`], for building test inputs field by field.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    out: Vec<u8>,
    len: usize,
}

#[cfg(test)]
impl BitWriter {
    /// Appends the low `n` bits of `v`, MSB first (the specs' `f(n)` / `u(n)`).
    pub(crate) fn put(&mut self, n: u32, v: u64) -> &mut Self {
        for i in (0..n).rev() {
            if self.len.is_multiple_of(8) {
                self.out.push(0);
            }
            if v >> i & 1 == 1 {
                if let Some(last) = self.out.last_mut() {
                    *last |= 0x80 >> (self.len % 8);
                }
            }
            self.len += 1;
        }
        self
    }

    /// Unsigned Exp-Golomb.
    pub(crate) fn ue(&mut self, v: u32) -> &mut Self {
        let v = u64::from(v) + 1;
        let bits = 64 - v.leading_zeros();
        self.put(bits - 1, 0).put(bits, v)
    }

    /// Signed Exp-Golomb.
    pub(crate) fn se(&mut self, v: i32) -> &mut Self {
        let k = if v > 0 {
            2 * v.unsigned_abs() - 1
        } else {
            2 * v.unsigned_abs()
        };
        self.ue(k)
    }

    /// The bytes written so far (the last one zero-padded); the writer starts over.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.len = 0;
        std::mem::take(&mut self.out)
    }

    /// The bytes with emulation prevention added (`00 00 0x` with x <= 3 becomes `00 00 03 0x`),
    /// as in a NAL unit; the writer starts over.
    pub(crate) fn take_escaped(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut zeros = 0;
        for b in self.take() {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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

    #[test]
    fn signed_exp_golomb_and_skip() {
        // se: 1 -> 1 (010), -1 -> 2 (011), 2 -> 3 (00100), 0 -> 0 (1)
        let data = [0b0100_1100, 0b1001_0000];
        let mut r = BitReader::raw(&data);
        assert_eq!(r.se(), Some(1));
        assert_eq!(r.se(), Some(-1));
        assert_eq!(r.se(), Some(2));
        assert_eq!(r.se(), Some(0));
        assert_eq!(r.skip(4), Some(()));
        assert_eq!(r.pos(), 2);
        assert_eq!(r.skip(1), None);
    }

    #[test]
    fn raw_reader_keeps_0x03_bytes() {
        let data = [0x00, 0x00, 0x03, 0x01];
        let mut r = BitReader::raw(&data);
        assert_eq!(r.bits(32), Some(0x0000_0301));
    }

    #[test]
    fn exp_golomb_with_32_leading_zeros_is_refused() {
        // H.264 7.2 / H.265 9.2: leadingZeroBits is at most 31, so codeNum is at most 2^32 - 2.
        let data = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(BitReader::raw(&data).ue(), None);
        let mut w = BitWriter::default();
        w.ue(u32::MAX - 1).ue(u32::MAX);
        let data = w.take();
        let mut r = BitReader::raw(&data);
        assert_eq!(r.ue(), Some(u32::MAX - 1));
        assert_eq!(r.ue(), None);
    }

    #[test]
    fn input_ending_inside_a_code_is_none() {
        assert_eq!(BitReader::raw(&[0x00]).ue(), None); // only zeros
        assert_eq!(BitReader::raw(&[0x01]).ue(), None); // 7 zeros, a one, no suffix
        assert_eq!(BitReader::raw(&[]).bits(1), None);
    }

    #[derive(Debug, Clone)]
    enum Field {
        Bits(u32, u64),
        Ue(u32),
        Se(i32),
    }

    fn field() -> impl Strategy<Value = Field> {
        prop_oneof![
            (1u32..=32)
                .prop_flat_map(|n| (Just(n), 0u64..(1 << n)))
                .prop_map(|(n, v)| Field::Bits(n, v)),
            prop_oneof![0u32..4, 0..u32::MAX].prop_map(Field::Ue),
            prop_oneof![-3i32..4, (i32::MIN + 1)..=i32::MAX].prop_map(Field::Se),
        ]
    }

    proptest! {
        /// Written fields read back the same, with emulation prevention on (NAL units) and off.
        #[test]
        fn fields_round_trip(fields in proptest::collection::vec(field(), 0..40)) {
            for escaped in [false, true] {
                let mut w = BitWriter::default();
                for f in &fields {
                    match *f {
                        Field::Bits(n, v) => w.put(n, v),
                        Field::Ue(v) => w.ue(v),
                        Field::Se(v) => w.se(v),
                    };
                }
                // A stop bit keeps trailing zero fields from looking like padding.
                w.put(1, 1);
                let data = if escaped { w.take_escaped() } else { w.take() };
                let mut r = if escaped { BitReader::new(&data) } else { BitReader::raw(&data) };
                for f in &fields {
                    match *f {
                        Field::Bits(n, v) => prop_assert_eq!(r.bits(n as u8), Some(v as u32)),
                        Field::Ue(v) => prop_assert_eq!(r.ue(), Some(v)),
                        Field::Se(v) => prop_assert_eq!(r.se(), Some(v)),
                    }
                }
                prop_assert_eq!(r.bit(), Some(1));
            }
        }
    }
}
