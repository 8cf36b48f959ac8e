//! AMF0 decoding with bounded nesting.
//!
//! Values are [`Amf0Value`]s (`rml_rtmp::rml_amf0`), the type `rml_rtmp` serializes outbound commands from,
//! but decoding is done here rather than by `rml_amf0::deserialize`: that function recurses once
//! per nesting level with no limit, so a 16 MiB command message of nested objects overflows the
//! stack and aborts the whole process. This decoder refuses nesting deeper than
//! [`MAX_DEPTH`], reports the byte offset of every error, and also reads the types real encoders
//! emit that `rml_amf0` does not know (long strings, dates, `unsupported`).

use std::collections::HashMap;

use rml_rtmp::rml_amf0::Amf0Value;

/// Objects and arrays nested deeper than this are refused.
pub const MAX_DEPTH: usize = 32;

/// AMF0 bytes that cannot be decoded. `pos` is the byte offset within the decoded buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Amf0Error {
    /// The buffer ended inside a value.
    #[error("AMF0 truncated at byte {pos}")]
    Truncated {
        /// Offset where more bytes were needed.
        pos: usize,
    },
    /// A type marker this decoder does not accept (references, typed objects, AMF3 switch…).
    #[error("AMF0 marker {marker:#04x} not supported at byte {pos}")]
    UnsupportedMarker {
        /// The marker byte.
        marker: u8,
        /// Offset of the marker.
        pos: usize,
    },
    /// A string that is not UTF-8.
    #[error("AMF0 string is not UTF-8 at byte {pos}")]
    InvalidUtf8 {
        /// Offset of the string bytes.
        pos: usize,
    },
    /// An object property with an empty name that is not followed by the object-end marker.
    #[error("AMF0 object property with empty name at byte {pos}")]
    EmptyPropertyName {
        /// Offset of the property name.
        pos: usize,
    },
    /// Objects or arrays nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 values nested deeper than {MAX_DEPTH} at byte {pos}")]
    TooDeep {
        /// Offset of the value that went too deep.
        pos: usize,
    },
}

mod marker {
    pub(super) const NUMBER: u8 = 0x00;
    pub(super) const BOOLEAN: u8 = 0x01;
    pub(super) const STRING: u8 = 0x02;
    pub(super) const OBJECT: u8 = 0x03;
    pub(super) const NULL: u8 = 0x05;
    pub(super) const UNDEFINED: u8 = 0x06;
    pub(super) const ECMA_ARRAY: u8 = 0x08;
    pub(super) const OBJECT_END: u8 = 0x09;
    pub(super) const STRICT_ARRAY: u8 = 0x0a;
    pub(super) const DATE: u8 = 0x0b;
    pub(super) const LONG_STRING: u8 = 0x0c;
    pub(super) const UNSUPPORTED: u8 = 0x0d;
}

/// Decodes a sequence of AMF0 values (the body of a command or data message).
///
/// A bare object-end marker at the top level ends the sequence, as some encoders pad with one.
/// ECMA arrays decode as [`Amf0Value::Object`], long strings as [`Amf0Value::Utf8String`],
/// dates as [`Amf0Value::Number`] (milliseconds; the time zone is dropped) and the
/// `unsupported` marker as [`Amf0Value::Undefined`].
///
/// ```
/// use zerocast_ingest::amf0;
/// use rml_rtmp::rml_amf0::Amf0Value;
///
/// let bytes = [0x02, 0x00, 0x02, b'h', b'i', 0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0];
/// let values = amf0::decode(&bytes).unwrap();
/// assert_eq!(values, [Amf0Value::Utf8String("hi".into()), Amf0Value::Number(1.0)]);
/// ```
pub fn decode(bytes: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut r = Reader { bytes, pos: 0 };
    let mut values = Vec::new();
    while r.pos < bytes.len() {
        if r.peek() == Some(marker::OBJECT_END) {
            break;
        }
        values.push(r.value(0)?);
    }
    Ok(values)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Amf0Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(Amf0Error::Truncated {
                pos: self.bytes.len(),
            })?;
        let out = self.bytes.get(self.pos..end).ok_or(Amf0Error::Truncated {
            pos: self.bytes.len(),
        })?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Amf0Error> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    fn string(&mut self, len: usize) -> Result<String, Amf0Error> {
        let pos = self.pos;
        let bytes = self.take(len)?;
        // Copied into an owned String: AMF strings outlive the read buffer (STYLE.md §2).
        String::from_utf8(bytes.to_vec()).map_err(|_| Amf0Error::InvalidUtf8 { pos })
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        let pos = self.pos;
        let m = self.u8()?;
        Ok(match m {
            marker::NUMBER => Amf0Value::Number(self.f64()?),
            marker::BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            marker::STRING => {
                let len = usize::from(self.u16()?);
                Amf0Value::Utf8String(self.string(len)?)
            }
            marker::LONG_STRING => {
                let len = usize::try_from(self.u32()?).map_err(|_| Amf0Error::Truncated {
                    pos: self.bytes.len(),
                })?;
                Amf0Value::Utf8String(self.string(len)?)
            }
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED | marker::UNSUPPORTED => Amf0Value::Undefined,
            marker::DATE => {
                let ms = self.f64()?;
                let _time_zone = self.u16()?;
                Amf0Value::Number(ms)
            }
            marker::OBJECT => {
                Self::check_depth(depth, pos)?;
                Amf0Value::Object(self.properties(depth + 1, false)?)
            }
            marker::ECMA_ARRAY => {
                Self::check_depth(depth, pos)?;
                let _count = self.u32()?;
                Amf0Value::Object(self.properties(depth + 1, true)?)
            }
            marker::STRICT_ARRAY => {
                Self::check_depth(depth, pos)?;
                let count = self.u32()?;
                // Never trust the count for an allocation: each value takes at least one byte.
                let room = self.bytes.len().saturating_sub(self.pos);
                let mut values = Vec::with_capacity(room.min(count as usize).min(1024));
                for _ in 0..count {
                    values.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(values)
            }
            marker => return Err(Amf0Error::UnsupportedMarker { marker, pos }),
        })
    }

    fn check_depth(depth: usize, pos: usize) -> Result<(), Amf0Error> {
        if depth >= MAX_DEPTH {
            Err(Amf0Error::TooDeep { pos })
        } else {
            Ok(())
        }
    }

    /// Reads `name, value` pairs up to the `00 00 09` end marker. ECMA arrays may also end at
    /// the end of the buffer (some encoders rely on the count and omit the marker).
    fn properties(
        &mut self,
        depth: usize,
        lenient_end: bool,
    ) -> Result<HashMap<String, Amf0Value>, Amf0Error> {
        let mut props = HashMap::new();
        loop {
            if lenient_end && self.pos == self.bytes.len() {
                return Ok(props);
            }
            let name_pos = self.pos;
            let len = usize::from(self.u16()?);
            if len == 0 {
                if self.u8()? == marker::OBJECT_END {
                    return Ok(props);
                }
                return Err(Amf0Error::EmptyPropertyName { pos: name_pos });
            }
            let name = self.string(len)?;
            let value = self.value(depth)?;
            props.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rml_rtmp::rml_amf0;

    use super::*;

    fn ser(values: &[Amf0Value]) -> Vec<u8> {
        rml_amf0::serialize(&values.to_vec()).unwrap()
    }

    #[test]
    fn decodes_a_connect_command() {
        let mut props = HashMap::new();
        props.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        props.insert("objectEncoding".to_string(), Amf0Value::Number(0.0));
        let values = vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(props),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::Boolean(true),
            Amf0Value::StrictArray(vec![Amf0Value::Number(2.0)]),
        ];
        assert_eq!(decode(&ser(&values)).unwrap(), values);
    }

    #[test]
    fn decodes_ecma_arrays_long_strings_and_dates() {
        // ECMA array {"a": 1.0} with count 1 and end marker.
        let mut b = vec![0x08, 0, 0, 0, 1, 0, 1, b'a', 0x00];
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 9]);
        // ECMA array without end marker at the end of the buffer is accepted below.
        b.extend_from_slice(&[0x0c, 0, 0, 0, 2, b'o', b'k']);
        b.push(0x0b);
        b.extend_from_slice(&5.0f64.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&[0x08, 0, 0, 0, 0]);
        let v = decode(&b).unwrap();
        let mut a = HashMap::new();
        a.insert("a".to_string(), Amf0Value::Number(1.0));
        assert_eq!(
            v,
            [
                Amf0Value::Object(a),
                Amf0Value::Utf8String("ok".into()),
                Amf0Value::Number(5.0),
                Amf0Value::Object(HashMap::new()),
            ]
        );
    }

    #[test]
    fn top_level_object_end_stops_decoding() {
        assert_eq!(
            decode(&[0x05, 0x09, 0xff]).unwrap(),
            [Amf0Value::Null],
            "bytes after a top-level end marker are ignored"
        );
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(
            decode(&[0x05, 0x00, 0x3f]),
            Err(Amf0Error::Truncated { pos: 3 })
        );
        assert_eq!(
            decode(&[0x05, 0x07, 0x00, 0x01]),
            Err(Amf0Error::UnsupportedMarker {
                marker: 0x07,
                pos: 1
            })
        );
        assert_eq!(
            decode(&[0x02, 0x00, 0x02, 0xff, 0xfe]),
            Err(Amf0Error::InvalidUtf8 { pos: 3 })
        );
        assert_eq!(
            decode(&[0x03, 0x00, 0x00, 0x05]),
            Err(Amf0Error::EmptyPropertyName { pos: 1 })
        );
        // A string claiming more bytes than there are.
        assert_eq!(
            decode(&[0x0c, 0xff, 0xff, 0xff, 0xff, b'x']),
            Err(Amf0Error::Truncated { pos: 6 })
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // rml_amf0::deserialize overflows the stack on this input.
        let mut b = Vec::new();
        for _ in 0..200_000 {
            b.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        }
        assert!(matches!(decode(&b), Err(Amf0Error::TooDeep { .. })));
        let mut arrays = Vec::new();
        for _ in 0..100 {
            arrays.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        assert!(matches!(decode(&arrays), Err(Amf0Error::TooDeep { .. })));
    }

    #[test]
    fn huge_array_count_does_not_allocate() {
        assert!(matches!(
            decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x05]),
            Err(Amf0Error::Truncated { .. })
        ));
    }

    /// AMF0 values as `rml_amf0` can serialize them. NaN is left out: it never equals itself.
    fn value() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            any::<f64>()
                .prop_filter("NaN", |f| !f.is_nan())
                .prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            ".{0,40}".prop_map(Amf0Value::Utf8String),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::hash_map(".{1,12}", inner.clone(), 0..6)
                    .prop_map(Amf0Value::Object),
                proptest::collection::vec(inner, 0..6).prop_map(Amf0Value::StrictArray),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips_rml_serialized_values(values in proptest::collection::vec(value(), 0..6)) {
            let bytes = ser(&values);
            prop_assert_eq!(&decode(&bytes).unwrap(), &values);
            // And agrees with rml_amf0's own decoder where that one is safe to call.
            let theirs = rml_amf0::deserialize(&mut std::io::Cursor::new(&bytes)).unwrap();
            prop_assert_eq!(theirs, values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
