//! The multivariant (master) playlist: one variant, pointing at the media playlist.

use std::fmt::{self, Write};

use zerocast_core::Track;

/// What the multivariant playlist says about the one variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant<'a> {
    /// The tracks of the stream (codecs and resolution come from here).
    pub tracks: &'a [Track],
    /// Peak bits per second (`BANDWIDTH`).
    pub bandwidth: u64,
    /// Frames per second, when measured.
    pub frame_rate: Option<f64>,
    /// The media playlist URI, relative to the multivariant playlist.
    pub uri: &'a str,
}

/// Writes the multivariant playlist.
///
/// ```
/// use zerocast_packager::multivariant::{render, Variant};
/// let mut s = String::new();
/// render(&mut s, &Variant { tracks: &[], bandwidth: 1000, frame_rate: None, uri: "stream.m3u8" }).unwrap();
/// assert!(s.contains("#EXT-X-STREAM-INF:BANDWIDTH=1000\nstream.m3u8\n"));
/// ```
pub fn render(out: &mut impl Write, v: &Variant<'_>) -> fmt::Result {
    writeln!(out, "#EXTM3U")?;
    writeln!(out, "#EXT-X-VERSION:6")?;
    writeln!(out, "#EXT-X-INDEPENDENT-SEGMENTS")?;
    write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth)?;
    let codecs: Vec<String> = v.tracks.iter().map(Track::codec_string).collect();
    if !codecs.is_empty() {
        write!(out, ",CODECS=\"{}\"", codecs.join(","))?;
    }
    for t in v.tracks {
        if let Track::Video { codec, .. } = t {
            if let Some((w, h)) = codec.dimensions() {
                write!(out, ",RESOLUTION={w}x{h}")?;
            }
        }
    }
    if let Some(fps) = v.frame_rate {
        write!(out, ",FRAME-RATE={fps:.3}")?;
    }
    writeln!(out)?;
    writeln!(out, "{}", v.uri)
}
