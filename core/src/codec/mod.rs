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
