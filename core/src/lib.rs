//! # zerocast-core: the media model
//!
//! Plain values shared by every media crate: typed timestamps, tracks with their decoder
//! configurations, and [`Frame`]s whose payload is a reference-counted [`bytes::Bytes`].
//!
//! ```text
//! ingest (RTMP/FLV) --Track, Frame--> packager (fMP4, LL-HLS) --Bytes--> edge (sockets)
//! ```
//!
//! The crate does no IO, owns no runtime and never reads a clock: every value here is built from
//! bytes and numbers handed in, so the same input always gives the same output.
//!
//! Codec configuration parsers ([`codec`]) read the decoder configuration records that
//! publishers send (AVCDecoderConfigurationRecord, HEVCDecoderConfigurationRecord,
//! AV1CodecConfigurationRecord, AAC AudioSpecificConfig). They keep the record bytes as they came
//! (the fMP4 sample entries embed them unchanged) and pull out what a packager and a playlist need:
//! the RFC 6381 codec string, the picture size, the sample rate.

pub mod codec;
mod frame;
mod time;
mod track;

pub use frame::Frame;
pub use time::{Timescale, Timestamp};
pub use track::{AudioCodec, Track, TrackId, TrackKind, VideoCodec};
