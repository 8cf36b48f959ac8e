//! Decoder configuration records: parsing and the facts packagers need.
//!
//! Each `*Config` keeps the record bytes exactly as the publisher sent them (`record`), because
//! the fMP4 sample entry (`avcC`, `hvcC`, `av1C`, `esds`) embeds them unchanged.

pub mod aac;
pub mod av1;
pub mod avc;
mod bits;
pub mod hevc;

/// A decoder configuration record that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The record ended before a field at byte offset `pos`.
    #[error("{record}: truncated at byte {pos}")]
    Truncated {
        /// Which record was being read.
        record: &'static str,
        /// Byte offset where more input was needed.
        pos: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("{record}: invalid {field} at byte {pos}")]
    Invalid {
        /// Which record was being read.
        record: &'static str,
        /// The offending field.
        field: &'static str,
        /// Byte offset of the field.
        pos: usize,
    },
}

pub(crate) fn need(record: &'static str, data: &[u8], len: usize) -> Result<(), CodecError> {
    if data.len() < len {
        Err(CodecError::Truncated {
            record,
            pos: data.len(),
        })
    } else {
        Ok(())
    }
}

/// Decoder configuration records taken from the captures in `testdata/`.
#[cfg(test)]
pub(crate) mod captures {
    use bytes::Bytes;

    /// `testdata/ffmpeg9_hevc_aac.flv`: 640x360 HEVC (libx265) + 48 kHz AAC, Enhanced FLV.
    pub(crate) const HEVC_AAC_FLV: &[u8] = include_bytes!("../../../testdata/ffmpeg9_hevc_aac.flv");
    /// `testdata/ffmpeg9_av1_aac.flv`: 640x360 AV1 (libsvtav1) + 48 kHz AAC, Enhanced FLV.
    pub(crate) const AV1_AAC_FLV: &[u8] = include_bytes!("../../../testdata/ffmpeg9_av1_aac.flv");

    /// The FLV tags of a file as (tag type, body).
    fn tags(flv: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
        let header = u32::from_be_bytes(flv[5..9].try_into().unwrap()) as usize;
        let mut pos = header + 4; // the header, then PreviousTagSize0
        std::iter::from_fn(move || {
            let tag = flv.get(pos..pos + 11)?;
            let size = u32::from_be_bytes([0, tag[1], tag[2], tag[3]]) as usize;
            let body = flv.get(pos + 11..pos + 11 + size)?;
            pos += 11 + size + 4;
            Some((tag[0] & 0x1f, body))
        })
    }

    /// The record of the first Enhanced RTMP video SequenceStart with this FourCC.
    pub(crate) fn video_sequence_start(flv: &'static [u8], fourcc: &[u8; 4]) -> Bytes {
        let body = tags(flv)
            .find(|(kind, body)| {
                // IsExHeader, PacketType 0 (SequenceStart), then the FourCC.
                *kind == 9 && body[0] & 0x8f == 0x80 && &body[1..5] == fourcc
            })
            .expect("no video SequenceStart")
            .1;
        Bytes::from_static(flv).slice_ref(&body[5..])
    }

    /// The AudioSpecificConfig of the first AAC sequence header (legacy FLV audio tag).
    pub(crate) fn aac_sequence_header(flv: &'static [u8]) -> Bytes {
        let body = tags(flv)
            .find(|(kind, body)| *kind == 8 && body[0] >> 4 == 10 && body[1] == 0)
            .expect("no AAC sequence header")
            .1;
        Bytes::from_static(flv).slice_ref(&body[2..])
    }
}
