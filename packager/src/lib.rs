//! # zerocast-packager: CMAF, LL-HLS and DASH, sans-IO
//!
//! Values in, bytes and text out. The [`Packager`] turns one stream's [`zerocast_core::Frame`]s
//! into an init segment, CMAF chunks, parts and segments; the [`MediaPlaylist`] it keeps is a
//! value that answers blocking reload requests and renders itself.
//!
//! ```text
//! Track, Frame ─► stream::Packager ─► Event::{Init, PartStarted, Chunk, PartDone, SegmentDone}
//!                      │                      (fMP4 bytes: headers + the frames' own Bytes)
//!                      └─► playlist::MediaPlaylist ─► reload(Query) ─► Ready | Wait | BadRequest
//!                                                  ├► render(&mut impl fmt::Write)
//!                                                  └► dash::render: the MPD of the same segments
//! ```
//!
//! This crate does no IO, spawns nothing and reads no clock: wall-clock time (for
//! `EXT-X-PROGRAM-DATE-TIME`) is an argument. Waiting for a blocking request, timeouts and
//! sockets belong to the caller. Media payloads are never copied: a fragment is a small header
//! `Bytes` followed by the frames' payload `Bytes`.

pub mod check;
pub mod dash;
pub mod demux;
pub mod fmp4;
pub mod multivariant;
pub mod playlist;
pub mod query;
pub mod stream;

pub use playlist::{MediaPlaylist, Pdt, PlaylistConfig, Reload, Segment, TimelineStart};
pub use query::{Query, QueryError, Skip};
pub use stream::{Event, Packager, PackagerConfig};
