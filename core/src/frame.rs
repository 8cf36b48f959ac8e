//! Coded frames.

use bytes::Bytes;

use crate::{Timestamp, TrackId};

/// One coded access unit of one track.
///
/// `data` is the payload exactly as fMP4 stores it: length-prefixed NAL units for AVC and HEVC
/// (the publisher's `NALULengthSizeMinusOne + 1` bytes each), OBUs for AV1, one raw AAC frame for
/// AAC. It is a slice of the ingest read buffer; nothing after ingest copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The track this frame belongs to.
    pub track: TrackId,
    /// Decode timestamp, in the track's timescale.
    pub dts: Timestamp,
    /// Presentation timestamp, in the track's timescale (equal to `dts` for audio).
    pub pts: Timestamp,
    /// A random access point: a video IDR/IRAP frame; every audio frame.
    pub keyframe: bool,
    /// The coded payload.
    pub data: Bytes,
}

impl Frame {
    /// `pts - dts` in ticks (the composition offset fMP4 stores per sample).
    pub fn composition_offset(&self) -> i64 {
        self.pts.ticks() - self.dts.ticks()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timescale;

    #[test]
    fn composition_offset_is_pts_minus_dts() {
        let frame = |dts, pts| Frame {
            track: TrackId::VIDEO,
            dts: Timestamp::new(dts, Timescale::VIDEO),
            pts: Timestamp::new(pts, Timescale::VIDEO),
            keyframe: false,
            data: Bytes::new(),
        };
        assert_eq!(frame(3000, 9000).composition_offset(), 6000);
        assert_eq!(frame(-3000, -3000).composition_offset(), 0);
        // pts before dts is not clamped: fMP4 (trun version 1) stores signed offsets.
        assert_eq!(frame(6000, 3000).composition_offset(), -3000);
    }
}
