//! DASH MPDs (ISO/IEC 23009-1) from the LL-HLS playlist state, as values.
//!
//! ```text
//! MediaPlaylist (segments, parts, timeline starts) ─┐
//! &[Track] (codecs, size, sample rate)             ─┼─► render(&mut impl fmt::Write, &Manifest)
//! bandwidth, frame rate, URLs, now                 ─┘        dynamic MPD, or static once ended
//! ```
//!
//! The MPD describes the same segments the media playlist lists, by the same numbers: there is
//! no second packaging. Each track is an AdaptationSet of its own (dash.js and DASH-IF IOP want
//! one media component per Representation) at `t{ID}-init{V}.mp4` and `t{ID}-seg{N}.m4s`: the
//! same chunks under one-track `moof` headers, which the packager emits beside the muxed ones
//! ([`crate::Event::Chunk`]). Addressing is `SegmentTemplate` with `$Number$` = the media
//! sequence number and a `SegmentTimeline`, because segments are cut at the publisher's
//! keyframes and their durations vary; `@duration` alone would let the computed segment times
//! drift away from the real ones.
//!
//! Each stretch of timeline that one init segment and one wall-clock anchor describe
//! ([`TimelineStart`]) is a Period: a publisher reconnect or a new init segment starts a new one.
//! `availabilityStartTime` is the wall-clock time of the stream's first segment, and a Period
//! starts at its first segment's `EXT-X-PROGRAM-DATE-TIME`, so DASH and HLS agree on when each
//! segment was captured.
//!
//! Low latency: the segment being written is announced (with the previous segment's duration
//! as its expected duration) under `availabilityTimeOffset`/`availabilityTimeComplete="false"`,
//! so a player requests it as soon as its first part exists and receives its chunks as they are
//! produced. Before that segment's first part is complete the MPD announces it from where the
//! last segment ended, as the LL-HLS preload hint does for parts.
//!
//! Like the rest of the crate this reads no clock: `publishTime` is an argument.

use std::fmt::{self, Write};
use std::time::Duration;

use zerocast_core::{Timescale, Track};

use crate::playlist::{MediaPlaylist, Pdt, Secs, Segment, TimelineStart};

/// The MPD's `profiles`.
pub const PROFILE_LIVE: &str = "urn:mpeg:dash:profile:isoff-live:2011";
/// `UTCTiming@schemeIdUri` for an HTTP resource answering an ISO 8601 date-time.
pub const UTC_HTTP_ISO: &str = "urn:mpeg:dash:utc:http-iso:2014";
/// `AudioChannelConfiguration@schemeIdUri` for a channel count.
const CHANNEL_SCHEME: &str = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011";

/// Service and low-latency parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MpdConfig {
    /// Announce the segment being written under `availabilityTimeOffset` (LL-DASH).
    pub low_latency: bool,
    /// `ServiceDescription/Latency@target`, seconds; also `suggestedPresentationDelay`.
    pub latency_target: f64,
    /// `Latency@min`, seconds.
    pub latency_min: f64,
    /// `Latency@max`, seconds: beyond it a player seeks back to the live edge.
    pub latency_max: f64,
    /// `PlaybackRate@min`: the slowest catch-up rate.
    pub playback_rate_min: f64,
    /// `PlaybackRate@max`: the fastest catch-up rate.
    pub playback_rate_max: f64,
}

impl Default for MpdConfig {
    /// 1.2 s target latency (dash.js holds it with 0 stalls on 200 ms parts and 2 s segments,
    /// measuring 1.3 s; at 0.8 s it stalled), ±4% playback rate as
    /// DVB-DASH's low-latency examples use.
    fn default() -> Self {
        Self {
            low_latency: true,
            latency_target: 1.2,
            latency_min: 0.8,
            latency_max: 6.0,
            playback_rate_min: 0.96,
            playback_rate_max: 1.04,
        }
    }
}

/// Everything an MPD says, borrowed from the stream's state.
#[derive(Debug, Clone, Copy)]
pub struct Manifest<'a> {
    /// The segment window.
    pub playlist: &'a MediaPlaylist,
    /// Tracks of the current init segment.
    pub tracks: &'a [Track],
    /// Peak bits per second of the whole stream.
    pub bandwidth: u64,
    /// Frames per second, when measured.
    pub frame_rate: Option<f64>,
    /// Prefix of the init and segment URLs, relative to the MPD (e.g. `"1a2b/"`). Escaped here.
    pub base: &'a str,
    /// Appended to every init and segment URL (e.g. `"?token=…"`, or `""`). Escaped here.
    pub query: &'a str,
    /// URL answering the server's time as ISO 8601 (`UTCTiming`). Escaped here.
    pub utc_timing: &'a str,
    /// `publishTime`, Unix milliseconds.
    pub now_unix_ms: i64,
    /// The segment after the last one in `playlist` has started (its first part is being
    /// written) and continues the last Period, so it may be announced. Otherwise nothing is
    /// announced past the last listed segment: after a publisher left, or before a new init
    /// segment, the next segment starts a new Period, and a number announced in the old one
    /// would name media of the new one.
    pub next_started: bool,
    /// Service parameters.
    pub config: MpdConfig,
}

/// One `<S>` entry before run-length compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    t: i64,
    d: i64,
}

/// A Period: its segments' timeline, in the timescale of its first segment.
#[derive(Debug)]
struct Period {
    id: u64,
    /// `Period@start`, ms after the MPD's origin.
    start_ms: i64,
    timescale: Timescale,
    /// `presentationTimeOffset`, ticks.
    pto: i64,
    start_number: u64,
    init_version: u32,
    entries: Vec<Entry>,
}

impl Period {
    /// End of its last segment, seconds after the MPD's origin.
    fn end_secs(&self) -> f64 {
        let end = self.entries.last().map_or(self.pto, |e| e.t + e.d);
        self.start_ms as f64 / 1000.0 + (end - self.pto) as f64 / f64::from(self.timescale.ticks())
    }
}

fn ticks(secs: f64, scale: Timescale) -> i64 {
    (secs * f64::from(scale.ticks())).round() as i64
}

/// Groups the window into Periods. `Period@start` counts from `availabilityStartTime` in a
/// dynamic MPD, from the first listed segment in a static one.
fn periods(m: &Manifest<'_>, dynamic: bool) -> Vec<Period> {
    let pl = m.playlist;
    let segs: Vec<&Segment> = pl.segments().collect();
    // The duration expected of the segment being written: the last complete one's (exact when
    // the publisher's keyframe interval is fixed), else the segment target.
    let expected = segs
        .iter()
        .rev()
        .find(|s| s.complete)
        .map_or(pl.config().segment_target, |s| s.duration);
    let announce_open = dynamic && m.config.low_latency;
    let origin_ms = if dynamic {
        pl.availability_start().unwrap_or(0)
    } else {
        segs.first().map_or(0, |s| s.program_date_time)
    };
    let mut out: Vec<Period> = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        if !seg.complete && !announce_open {
            continue;
        }
        let same = out.last().is_some_and(|p| p.id == seg.timeline.msn);
        if !same {
            // A dynamic MPD keeps each Period's start from update to update: it comes from the
            // stretch's first segment, even once that slid out. A static MPD starts at its
            // first listed segment.
            let anchor = if dynamic {
                seg.timeline
            } else {
                TimelineStart {
                    msn: seg.timeline.msn,
                    start: seg.start,
                    program_date_time: seg.program_date_time,
                }
            };
            let scale = anchor.start.scale();
            out.push(Period {
                id: seg.timeline.msn,
                start_ms: anchor.program_date_time - origin_ms,
                timescale: scale,
                pto: anchor.start.ticks(),
                start_number: seg.msn,
                init_version: seg.init_version,
                entries: Vec::new(),
            });
        }
        let Some(p) = out.last_mut() else { continue };
        let t = seg.start.rescale(p.timescale).ticks();
        let next = segs
            .get(i + 1)
            .filter(|n| n.timeline.msn == seg.timeline.msn && (n.complete || announce_open));
        let d = match next {
            // Consecutive segments of one stretch: exactly gapless.
            Some(n) => n.start.rescale(p.timescale).ticks() - t,
            None if seg.complete => ticks(seg.duration, p.timescale),
            None => ticks(seg.duration.max(expected), p.timescale),
        };
        p.entries.push(Entry { t, d: d.max(1) });
    }
    // Between a segment's end and its successor's first complete part, announce the successor
    // where the last one ended.
    if announce_open && m.next_started && !pl.is_ended() {
        if let (Some(last), Some(p)) = (segs.last(), out.last_mut()) {
            if last.complete && p.id == last.timeline.msn {
                if let Some(&e) = p.entries.last() {
                    let d = ticks(expected, p.timescale).max(1);
                    p.entries.push(Entry { t: e.t + e.d, d });
                }
            }
        }
    }
    out
}

/// Writes the MPD: dynamic while the stream is live, static (with `mediaPresentationDuration`)
/// once the playlist has ended.
///
/// ```
/// use bytes::Bytes;
/// use zerocast_core::codec::aac::AacConfig;
/// use zerocast_core::{AudioCodec, Timescale, Timestamp, Track, TrackId};
/// use zerocast_packager::dash::{self, Manifest, MpdConfig};
/// use zerocast_packager::{MediaPlaylist, PlaylistConfig};
///
/// let aac = Track::Audio {
///     id: TrackId::AUDIO,
///     timescale: Timescale::new(48_000).unwrap(),
///     codec: AudioCodec::Aac(AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap()),
/// };
/// let mut pl = MediaPlaylist::new(PlaylistConfig::default());
/// pl.push_part(2.0, true, 1_700_000_000_000, Timestamp::new(0, Timescale::VIDEO), 1, false);
/// pl.close_segment();
/// let mut mpd = String::new();
/// dash::render(&mut mpd, &Manifest {
///     playlist: &pl, tracks: &[aac], bandwidth: 1_000_000, frame_rate: None, base: "", query: "",
///     utc_timing: "/time", now_unix_ms: 1_700_000_002_100, next_started: true,
///     config: MpdConfig::default(),
/// }).unwrap();
/// // Segment 0, then the announced segment 1 of the same expected duration.
/// assert!(mpd.contains(r#"<S t="0" d="180000" r="1"/>"#));
/// assert!(mpd.contains(r#"media="t2-seg$Number$.m4s""#));
/// ```
pub fn render(out: &mut impl Write, m: &Manifest<'_>) -> fmt::Result {
    let pl = m.playlist;
    let dynamic = !pl.is_ended();
    let periods = periods(m, dynamic);
    let cfg = pl.config();
    let ll = dynamic && m.config.low_latency;

    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    write!(
        out,
        r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="{PROFILE_LIVE}" type="{}""#,
        if dynamic { "dynamic" } else { "static" }
    )?;
    if dynamic {
        let ast = pl.availability_start().unwrap_or(m.now_unix_ms);
        let window: f64 = pl
            .segments()
            .filter(|s| s.complete)
            .map(|s| s.duration)
            .sum();
        write!(
            out,
            r#" availabilityStartTime="{}" publishTime="{}" minimumUpdatePeriod="{}" timeShiftBufferDepth="{}" suggestedPresentationDelay="{}""#,
            Pdt(ast),
            Pdt(m.now_unix_ms),
            // The MPD changes when a segment opens; a part target is how late a player learns.
            Dur(cfg.part_target),
            Dur(window.max(cfg.segment_target)),
            Dur(m.config.latency_target),
        )?;
    } else {
        let duration = periods.last().map_or(0.0, Period::end_secs);
        write!(
            out,
            r#" publishTime="{}" mediaPresentationDuration="{}""#,
            Pdt(m.now_unix_ms),
            Dur(duration)
        )?;
    }
    writeln!(out, r#" minBufferTime="{}">"#, Dur(m.config.latency_min))?;

    if ll {
        writeln!(out, r#"  <ServiceDescription id="0">"#)?;
        writeln!(
            out,
            r#"    <Latency target="{}" min="{}" max="{}"/>"#,
            millis(m.config.latency_target),
            millis(m.config.latency_min),
            millis(m.config.latency_max)
        )?;
        writeln!(
            out,
            r#"    <PlaybackRate min="{}" max="{}"/>"#,
            Secs(m.config.playback_rate_min),
            Secs(m.config.playback_rate_max)
        )?;
        writeln!(out, "  </ServiceDescription>")?;
    }

    // Whatever segment the MPD lists, its first part exists or is the next to be made: one
    // part duration after the segment's start. Segments are at least 90% of the target (the
    // last one before a discontinuity may be shorter; the IO layer waits a bounded time).
    let ato = (0.9 * cfg.segment_target - cfg.part_target).max(0.0);
    for p in &periods {
        writeln!(
            out,
            r#"  <Period id="p{}" start="{}">"#,
            p.id,
            Dur(p.start_ms as f64 / 1000.0)
        )?;
        let template = Template {
            period: p,
            base: m.base,
            query: m.query,
            ato: ll.then_some(ato),
        };
        adaptation_sets(out, m, &template)?;
        writeln!(out, "  </Period>")?;
    }
    if dynamic {
        writeln!(
            out,
            r#"  <UTCTiming schemeIdUri="{UTC_HTTP_ISO}" value="{}"/>"#,
            Xml(m.utc_timing)
        )?;
    }
    writeln!(out, "</MPD>")
}

/// The `SegmentTemplate` of one Period for one set of URLs.
struct Template<'a> {
    period: &'a Period,
    base: &'a str,
    query: &'a str,
    ato: Option<f64>,
}

impl Template<'_> {
    /// `prefix` goes before `init{V}.mp4` and `seg$Number$.m4s`.
    fn write(&self, out: &mut impl Write, indent: &str, prefix: &str) -> fmt::Result {
        let p = self.period;
        write!(
            out,
            r#"{indent}<SegmentTemplate timescale="{}" presentationTimeOffset="{}" startNumber="{}" initialization="{base}{prefix}init{}.mp4{query}" media="{base}{prefix}seg$Number$.m4s{query}""#,
            p.timescale.ticks(),
            p.pto,
            p.start_number,
            p.init_version,
            base = Xml(self.base),
            query = Xml(self.query),
        )?;
        if let Some(ato) = self.ato {
            write!(
                out,
                r#" availabilityTimeOffset="{}" availabilityTimeComplete="false""#,
                Secs(ato)
            )?;
        }
        writeln!(out, ">")?;
        writeln!(out, "{indent}  <SegmentTimeline>")?;
        let mut prev_end: Option<i64> = None;
        let mut i = 0;
        while let Some(&e) = p.entries.get(i) {
            // Run-length: the following entries of the same duration that follow without a gap.
            let mut r = 0;
            while p
                .entries
                .get(i + r + 1)
                .is_some_and(|n| n.d == e.d && n.t == e.t + (r as i64 + 1) * e.d)
            {
                r += 1;
            }
            write!(out, "{indent}    <S")?;
            if prev_end != Some(e.t) {
                write!(out, r#" t="{}""#, e.t)?;
            }
            write!(out, r#" d="{}""#, e.d)?;
            if r > 0 {
                write!(out, r#" r="{r}""#)?;
            }
            writeln!(out, "/>")?;
            prev_end = Some(e.t + (r as i64 + 1) * e.d);
            i += r + 1;
        }
        writeln!(out, "{indent}  </SegmentTimeline>")?;
        writeln!(out, "{indent}</SegmentTemplate>")
    }
}

/// Audio bits per second assumed when splitting the stream's bandwidth per track.
fn audio_bandwidth(channels: u8, total: u64) -> u64 {
    (64_000 * u64::from(channels.max(1))).min(total / 4).max(1)
}

/// One AdaptationSet per track (DASH-IF IOP: one media component per Representation), each
/// with one Representation at the track's URLs (`t{ID}-init{V}.mp4`, `t{ID}-seg{N}.m4s`).
fn adaptation_sets(out: &mut impl Write, m: &Manifest<'_>, tpl: &Template<'_>) -> fmt::Result {
    let video = m.tracks.iter().find_map(|t| match t {
        Track::Video { codec, id, .. } => Some((id, codec)),
        Track::Audio { .. } => None,
    });
    let audio = m.tracks.iter().find_map(|t| match t {
        Track::Audio { codec, id, .. } => Some((id, codec)),
        Track::Video { .. } => None,
    });
    let audio_bw = audio.map_or(0, |(_, a)| audio_bandwidth(a.channels(), m.bandwidth));
    if let Some((id, codec)) = video {
        writeln!(
            out,
            r#"    <AdaptationSet id="{}" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">"#,
            id.0
        )?;
        tpl.write(out, "      ", &format!("t{}-", id.0))?;
        write!(
            out,
            r#"      <Representation id="v{}" bandwidth="{}" codecs="{}""#,
            id.0,
            m.bandwidth.saturating_sub(audio_bw).max(1),
            Xml(&codec.codec_string())
        )?;
        if let Some((w, h)) = codec.dimensions() {
            write!(out, r#" width="{w}" height="{h}""#)?;
        }
        if let Some(fps) = m.frame_rate {
            write!(out, r#" frameRate="{}""#, FrameRate(fps))?;
        }
        writeln!(out, "/>")?;
        writeln!(out, "    </AdaptationSet>")?;
    }
    if let Some((id, codec)) = audio {
        writeln!(
            out,
            r#"    <AdaptationSet id="{}" contentType="audio" mimeType="audio/mp4" segmentAlignment="true" startWithSAP="1">"#,
            id.0
        )?;
        writeln!(
            out,
            r#"      <AudioChannelConfiguration schemeIdUri="{CHANNEL_SCHEME}" value="{}"/>"#,
            codec.channels()
        )?;
        tpl.write(out, "      ", &format!("t{}-", id.0))?;
        writeln!(
            out,
            r#"      <Representation id="a{}" bandwidth="{audio_bw}" codecs="{}" audioSamplingRate="{}"/>"#,
            id.0,
            Xml(&codec.codec_string()),
            codec.sample_rate()
        )?;
        writeln!(out, "    </AdaptationSet>")?;
    }
    Ok(())
}

fn millis(secs: f64) -> u64 {
    (secs * 1000.0).round().max(0.0) as u64
}

/// Parses an `xs:duration`: `PnDTnHnMn.nS` (years and months, having no fixed length, only as
/// zero). `None` for anything else.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let rest = v.trim().strip_prefix('P')?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    if rest.is_empty() || rest.ends_with('T') {
        return None;
    }
    let mut secs = 0f64;
    for (part, units) in [
        (date, &[('Y', 0.0), ('M', 0.0), ('D', 86_400.0)][..]),
        (time, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)][..]),
    ] {
        let mut s = part;
        for &(unit, scale) in units {
            if let Some(i) = s.find(unit) {
                let n: f64 = s[..i].parse().ok()?;
                if !n.is_finite() || n < 0.0 || (scale == 0.0 && n != 0.0) {
                    return None;
                }
                secs += n * scale;
                s = &s[i + 1..];
            }
        }
        if !s.is_empty() {
            return None;
        }
    }
    Duration::try_from_secs_f64(secs).ok()
}

/// An `xs:duration` in seconds: `PT1.5S`.
struct Dur(f64);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PT{}S", Secs(self.0.max(0.0)))
    }
}

/// A `FrameRateType`: an integer, or a fraction (`30000/1001`); the schema allows no decimals.
struct FrameRate(f64);

impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fps = self.0.max(0.0);
        let ntsc = fps * 1.001;
        if (fps - fps.round()).abs() < 0.005 {
            write!(f, "{}", fps.round() as u64)
        } else if (ntsc - ntsc.round()).abs() < 0.005 {
            write!(f, "{}/1001", ntsc.round() as u64 * 1000)
        } else {
            write!(f, "{}/1000", (fps * 1000.0).round() as u64)
        }
    }
}

/// Text escaped for an XML attribute value.
struct Xml<'a>(&'a str);

impl fmt::Display for Xml<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&apos;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use zerocast_core::codec::{aac::AacConfig, av1::Av1Config, avc::AvcConfig, hevc::HevcConfig};
    use zerocast_core::{AudioCodec, Timestamp, TrackId, VideoCodec};

    use super::*;
    use crate::playlist::PlaylistConfig;
    use crate::query::Skip;

    const T0: i64 = 1_700_000_000_000;

    /// avcC of a 320x240 Baseline stream (`avc1.42c00d`).
    const AVCC: &[u8] = &[
        0x01, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41,
        0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42,
        0xa4, 0x80,
    ];

    fn avc() -> Track {
        Track::Video {
            id: TrackId::VIDEO,
            timescale: Timescale::VIDEO,
            codec: VideoCodec::Avc(AvcConfig::parse(Bytes::from_static(AVCC)).unwrap()),
        }
    }

    fn hevc() -> Track {
        // Main profile, level 93, no parameter sets.
        let mut hvcc = vec![0x01, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        hvcc.extend_from_slice(&[0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 0]);
        Track::Video {
            id: TrackId::VIDEO,
            timescale: Timescale::VIDEO,
            codec: VideoCodec::Hevc(HevcConfig::parse(Bytes::from(hvcc)).unwrap()),
        }
    }

    fn av1() -> Track {
        // Main profile, level 8, 8-bit 4:2:0.
        let av1c = Bytes::from_static(&[0x81, 0x08, 0x0c, 0x00]);
        Track::Video {
            id: TrackId::VIDEO,
            timescale: Timescale::VIDEO,
            codec: VideoCodec::Av1(Av1Config::parse(av1c).unwrap()),
        }
    }

    /// 48 kHz stereo AAC-LC.
    fn aac() -> Track {
        let c = AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap();
        Track::Audio {
            id: TrackId::AUDIO,
            timescale: Timescale::new(c.sample_rate).unwrap(),
            codec: AudioCodec::Aac(c),
        }
    }

    /// A stream built segment by segment on a 90 kHz timeline whose wall clock follows the
    /// media clock, except across a publisher gap.
    struct Builder {
        pl: MediaPlaylist,
        /// Media time of the next segment, ticks.
        t: i64,
        /// Wall clock minus media time, ms.
        anchor: i64,
    }

    impl Builder {
        fn new(window: usize) -> Self {
            Self {
                pl: MediaPlaylist::new(PlaylistConfig {
                    window,
                    ..PlaylistConfig::default()
                }),
                t: 900_000, // the publisher's clock started at 10 s
                anchor: T0 - 10_000,
            }
        }

        fn pdt(&self) -> i64 {
            self.anchor + Timestamp::new(self.t, Timescale::VIDEO).as_millis()
        }

        /// Parts of 18 000 ticks (0.2 s) and a shorter last one; `close` finishes the segment.
        fn segment(&mut self, ticks: i64, init: u32, discontinuity: bool, close: bool) {
            let (start, pdt) = (Timestamp::new(self.t, Timescale::VIDEO), self.pdt());
            let mut left = ticks;
            let mut first = true;
            while left > 0 {
                let d = left.min(18_000);
                self.pl
                    .push_part(d as f64 / 90_000.0, first, pdt, start, init, discontinuity);
                first = false;
                left -= d;
                self.t += d;
            }
            if close {
                self.pl.close_segment();
            }
        }

        /// The publisher was away `ms` milliseconds; the media timeline continues.
        fn gap(&mut self, ms: i64) {
            self.anchor += ms;
        }
    }

    fn manifest<'a>(pl: &'a MediaPlaylist, tracks: &'a [Track]) -> Manifest<'a> {
        Manifest {
            playlist: pl,
            tracks,
            bandwidth: 2_000_000,
            frame_rate: Some(30.0),
            base: "3f2a/",
            query: "",
            utc_timing: "/time",
            now_unix_ms: T0 + 60_000,
            next_started: true,
            config: MpdConfig::default(),
        }
    }

    fn mpd(m: &Manifest<'_>) -> String {
        let mut s = String::new();
        render(&mut s, m).unwrap();
        s
    }

    fn attr<'a>(n: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
        n.attribute(name)
            .unwrap_or_else(|| panic!("no @{name} on <{}>", n.tag_name().name()))
    }

    fn kids<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Vec<roxmltree::Node<'a, 'i>> {
        n.children()
            .filter(|c| c.is_element() && c.tag_name().name() == name)
            .collect()
    }

    fn kid<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> roxmltree::Node<'a, 'i> {
        let k = kids(n, name);
        assert_eq!(k.len(), 1, "one <{name}> in <{}>", n.tag_name().name());
        k[0]
    }

    /// `PT1.5S` → 1.5 (the only form the renderer writes).
    fn secs(d: &str) -> f64 {
        parse_duration(d).unwrap().as_secs_f64()
    }

    fn unix_ms(date: &str) -> i64 {
        Pdt::parse_us(date).unwrap() / 1000
    }

    #[test]
    fn parses_durations_and_date_times() {
        let d = |v: &str| parse_duration(v).map(|d| d.as_micros());
        assert_eq!(d("PT0.2S"), Some(200_000));
        assert_eq!(d("PT1H2M3.5S"), Some(3_723_500_000));
        assert_eq!(d("P1DT1S"), Some(86_401_000_000));
        assert_eq!(d("P0Y0M0DT2S"), Some(2_000_000));
        for bad in ["", "P", "PT", "T1S", "PT1", "P1M", "-PT1S", "PT1S2", "PTxS"] {
            assert!(parse_duration(bad).is_none(), "{bad}");
        }
        let t = Pdt::parse_us;
        const AST_US: i64 = T0 * 1000;
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2023-11-14T22:13:20.000Z"), Some(AST_US));
        assert_eq!(t("2023-11-14T22:13:20.1234567Z"), Some(AST_US + 123_456));
        assert_eq!(t("2023-11-14T22:13:20"), Some(AST_US));
        assert_eq!(t("2023-11-14T23:13:20+01:00"), Some(AST_US));
        assert_eq!(t("2023-11-14T21:43:20-00:30"), Some(AST_US));
        assert_eq!(t("2000-02-29T00:00:00Z"), Some(951_782_400_000_000));
        for bad in [
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13Z",
            "x-1-1T0:0:0",
        ] {
            assert!(t(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dates_round_trip() {
        for ms in [T0, T0 + 123, 951_782_400_000, 0] {
            assert_eq!(unix_ms(&Pdt(ms).to_string()), ms);
        }
    }

    /// A SegmentTemplate's segments as (number, t, d), `r` expanded.
    /// The timeline of the MPD's first `SegmentTemplate`.
    fn first_timeline(text: &str) -> Vec<(u64, i64, i64)> {
        let doc = roxmltree::Document::parse(text).unwrap();
        let tpl = doc
            .descendants()
            .find(|n| n.has_tag_name("SegmentTemplate"))
            .unwrap();
        timeline(tpl)
    }

    fn timeline(tpl: roxmltree::Node<'_, '_>) -> Vec<(u64, i64, i64)> {
        let mut number: u64 = attr(tpl, "startNumber").parse().unwrap();
        let mut next_t: Option<i64> = None;
        let mut out = Vec::new();
        for s in kids(kid(tpl, "SegmentTimeline"), "S") {
            let d: i64 = attr(s, "d").parse().unwrap();
            let r: i64 = s.attribute("r").map_or(0, |r| r.parse().unwrap());
            let mut t = s
                .attribute("t")
                .map(|t| t.parse().unwrap())
                .or(next_t)
                .expect("first S without @t");
            for _ in 0..=r {
                out.push((number, t, d));
                number += 1;
                t += d;
            }
            next_t = Some(t);
        }
        out
    }

    /// The msns the media playlist lists as complete segments (`seg{N}.m4s`).
    fn hls_segments(pl: &MediaPlaylist) -> Vec<u64> {
        let mut text = String::new();
        pl.render(&mut text, Skip::No).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("seg")?.strip_suffix(".m4s")?.parse().ok())
            .collect()
    }

    /// Checks that every listed segment's wall-clock start (availabilityStartTime + Period@start
    /// + (t - presentationTimeOffset) / timescale) is its EXT-X-PROGRAM-DATE-TIME.
    fn assert_times_match_pdt(text: &str, pl: &MediaPlaylist) {
        let doc = roxmltree::Document::parse(text).unwrap();
        let root = doc.root_element();
        let ast = unix_ms(attr(root, "availabilityStartTime"));
        let mut checked = 0;
        for period in kids(root, "Period") {
            let start = secs(attr(period, "start"));
            for set in kids(period, "AdaptationSet") {
                let tpl = kid(set, "SegmentTemplate");
                let scale: f64 = attr(tpl, "timescale").parse().unwrap();
                let pto: i64 = attr(tpl, "presentationTimeOffset").parse().unwrap();
                for (n, t, _) in timeline(tpl) {
                    let Some(seg) = pl.segments().find(|s| s.msn == n) else {
                        continue; // the announced successor
                    };
                    let wall = ast as f64 + 1000.0 * (start + (t - pto) as f64 / scale);
                    assert!(
                        (wall - seg.program_date_time as f64).abs() < 1.0,
                        "segment {n}: {wall} vs {}",
                        seg.program_date_time
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 0);
    }

    #[test]
    fn live_mpd_lists_the_playlist_segments() {
        let mut b = Builder::new(20);
        // Keyframe-cut segments: 2 s, 2 s, 1.8 s, 2.4 s, 2 s, then one being written (0.4 s).
        for ticks in [180_000, 180_000, 162_000, 216_000, 180_000] {
            b.segment(ticks, 1, false, true);
        }
        b.segment(36_000, 1, false, false);
        let tracks = [avc(), aac()];
        let text = mpd(&manifest(&b.pl, &tracks));
        let doc = roxmltree::Document::parse(&text).unwrap();
        let root = doc.root_element();
        assert_eq!(
            root.tag_name().namespace(),
            Some("urn:mpeg:dash:schema:mpd:2011")
        );
        assert_eq!(attr(root, "type"), "dynamic");
        assert_eq!(attr(root, "profiles"), PROFILE_LIVE);
        assert_eq!(attr(root, "availabilityStartTime"), Pdt(T0).to_string());
        assert_eq!(attr(root, "publishTime"), Pdt(T0 + 60_000).to_string());
        assert_eq!(attr(root, "minimumUpdatePeriod"), "PT0.2S");
        // The window: the five complete segments, 10.2 s.
        assert_eq!(attr(root, "timeShiftBufferDepth"), "PT10.2S");
        assert_eq!(attr(root, "suggestedPresentationDelay"), "PT1.2S");
        let sd = kid(root, "ServiceDescription");
        let latency = kid(sd, "Latency");
        let ms = ["target", "min", "max"].map(|a| attr(latency, a));
        assert_eq!(ms, ["1200", "800", "6000"]);
        assert_eq!(attr(kid(sd, "PlaybackRate"), "max"), "1.04");
        let utc = kid(root, "UTCTiming");
        assert_eq!(attr(utc, "schemeIdUri"), "urn:mpeg:dash:utc:http-iso:2014");
        assert_eq!(attr(utc, "value"), "/time");

        let period = kid(root, "Period");
        assert_eq!(attr(period, "start"), "PT0S");
        let sets = kids(period, "AdaptationSet");
        assert_eq!(sets.len(), 2);
        let complete: Vec<u64> = hls_segments(&b.pl);
        assert_eq!(complete, [0, 1, 2, 3, 4]);
        for set in sets {
            let tpl = kid(set, "SegmentTemplate");
            assert_eq!(attr(tpl, "timescale"), "90000");
            assert_eq!(attr(tpl, "presentationTimeOffset"), "900000");
            assert_eq!(attr(tpl, "availabilityTimeComplete"), "false");
            // 0.9 * 2 s - 0.2 s: a segment is requested once its first part exists.
            assert_eq!(attr(tpl, "availabilityTimeOffset"), "1.6");
            let id = if attr(set, "contentType") == "video" {
                1
            } else {
                2
            };
            assert_eq!(attr(tpl, "media"), format!("3f2a/t{id}-seg$Number$.m4s"));
            assert_eq!(attr(tpl, "initialization"), format!("3f2a/t{id}-init1.mp4"));
            let entries = timeline(tpl);
            // Numbers are the media sequence numbers: $Number$ names seg{msn}.m4s.
            let numbers: Vec<u64> = entries.iter().map(|e| e.0).collect();
            assert_eq!(numbers, [0, 1, 2, 3, 4, 5]);
            // Every complete segment at its own start and duration; gapless.
            for (seg, (_, t, d)) in b.pl.segments().zip(&entries) {
                assert_eq!(*t, seg.start.ticks());
                if seg.complete {
                    assert_eq!(*d, (seg.duration * 90_000.0).round() as i64);
                }
            }
            let listed: i64 = entries.iter().take(5).map(|e| e.2).sum();
            assert_eq!(listed, 180_000 * 3 + 162_000 + 216_000);
            // The segment being written is announced with its predecessor's duration.
            assert_eq!(entries[5], (5, 900_000 + 918_000, 180_000));
        }
        // Equal neighbours are run-length coded.
        assert!(
            text.contains(r#"<S t="900000" d="180000" r="1"/>"#),
            "{text}"
        );
        assert_times_match_pdt(&text, &b.pl);
    }

    #[test]
    fn the_successor_is_announced_before_its_first_part() {
        let mut b = Builder::new(20);
        b.segment(180_000, 1, false, true);
        b.segment(171_000, 1, false, true);
        let tracks = [avc(), aac()];
        let text = mpd(&manifest(&b.pl, &tracks));
        assert_eq!(
            first_timeline(&text),
            [
                (0, 900_000, 180_000),
                (1, 1_080_000, 171_000),
                (2, 1_251_000, 171_000)
            ]
        );
        // The next segment has not started (the publisher left, and may come back with a new
        // Period): only what exists.
        let mut m = manifest(&b.pl, &tracks);
        m.next_started = false;
        let text = mpd(&m);
        assert_eq!(first_timeline(&text).len(), 2, "{text}");
        // Without low latency, only complete segments and no availability offset.
        let mut m = manifest(&b.pl, &tracks);
        m.config.low_latency = false;
        let text = mpd(&m);
        assert!(!text.contains("availabilityTimeOffset"), "{text}");
        assert!(!text.contains("ServiceDescription"), "{text}");
        assert_eq!(first_timeline(&text).len(), 2);
    }

    #[test]
    fn periods_keep_their_start_as_the_window_slides() {
        let mut b = Builder::new(4);
        for _ in 0..3 {
            b.segment(180_000, 1, false, true);
        }
        // The publisher reconnects after 5 s away: a discontinuity, the timeline continues.
        b.gap(5_000);
        for i in 0..3 {
            b.segment(180_000, 1, i == 0, true);
        }
        let tracks = [avc(), aac()];
        let text = mpd(&manifest(&b.pl, &tracks));
        let doc = roxmltree::Document::parse(&text).unwrap();
        let periods = kids(doc.root_element(), "Period");
        assert_eq!(periods.len(), 2, "{text}");
        // Window 4: segments 2..=5. The first Period began with segment 0, which slid out: its
        // start and offset stay those of segment 0.
        assert_eq!(attr(periods[0], "id"), "p0");
        assert_eq!(attr(periods[0], "start"), "PT0S");
        assert_eq!(attr(periods[1], "id"), "p3");
        assert_eq!(attr(periods[1], "start"), "PT11S"); // 6 s of media + 5 s away
        for set in kids(periods[0], "AdaptationSet") {
            let tpl = kid(set, "SegmentTemplate");
            assert_eq!(attr(tpl, "presentationTimeOffset"), "900000");
            assert_eq!(attr(tpl, "startNumber"), "2");
            // The old Period's last segment is not followed by an announced one.
            assert_eq!(timeline(tpl), [(2, 1_260_000, 180_000)]);
        }
        for set in kids(periods[1], "AdaptationSet") {
            let tpl = kid(set, "SegmentTemplate");
            assert_eq!(attr(tpl, "presentationTimeOffset"), "1440000");
            let numbers: Vec<u64> = timeline(tpl).iter().map(|e| e.0).collect();
            assert_eq!(numbers, [3, 4, 5, 6]);
        }
        assert_times_match_pdt(&text, &b.pl);
    }

    #[test]
    fn a_new_init_segment_starts_a_period() {
        let mut b = Builder::new(20);
        b.segment(180_000, 1, false, true);
        b.segment(180_000, 2, false, true);
        let tracks = [hevc(), aac()];
        let text = mpd(&manifest(&b.pl, &tracks));
        let doc = roxmltree::Document::parse(&text).unwrap();
        let inits: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("SegmentTemplate"))
            .map(|n| attr(n, "initialization"))
            .collect();
        assert_eq!(
            inits,
            [
                "3f2a/t1-init1.mp4",
                "3f2a/t2-init1.mp4",
                "3f2a/t1-init2.mp4",
                "3f2a/t2-init2.mp4"
            ]
        );
        assert_times_match_pdt(&text, &b.pl);
    }

    #[test]
    fn an_ended_stream_is_static() {
        let mut b = Builder::new(3);
        for ticks in [180_000, 180_000, 180_000, 198_000] {
            b.segment(ticks, 1, false, true);
        }
        b.segment(90_000, 1, false, false);
        b.pl.end();
        let tracks = [avc(), aac()];
        let text = mpd(&manifest(&b.pl, &tracks));
        let doc = roxmltree::Document::parse(&text).unwrap();
        let root = doc.root_element();
        assert_eq!(attr(root, "type"), "static");
        // Segments 2..=4 remain: 2 + 2.2 + 1 s.
        assert_eq!(attr(root, "mediaPresentationDuration"), "PT5.2S");
        for gone in [
            "availabilityStartTime",
            "minimumUpdatePeriod",
            "timeShiftBufferDepth",
        ] {
            assert!(root.attribute(gone).is_none(), "@{gone} in\n{text}");
        }
        assert!(!text.contains("availabilityTimeOffset"), "{text}");
        let period = kid(root, "Period");
        assert_eq!(attr(period, "start"), "PT0S");
        for set in kids(period, "AdaptationSet") {
            let tpl = kid(set, "SegmentTemplate");
            // The presentation starts at the first listed segment.
            assert_eq!(attr(tpl, "presentationTimeOffset"), "1260000");
            assert_eq!(
                timeline(tpl),
                [
                    (2, 1_260_000, 180_000),
                    (3, 1_440_000, 198_000),
                    (4, 1_638_000, 90_000)
                ]
            );
        }
    }

    #[test]
    fn codecs_and_track_attributes() {
        let cases = [
            (avc(), "avc1.42c00d", Some((320, 240))),
            (hevc(), "hvc1.1.6.L93.90", None),
            (av1(), "av01.0.08M.08", None),
        ];
        for (video, codecs, size) in cases {
            let mut b = Builder::new(20);
            b.segment(180_000, 1, false, true);
            let tracks = [video, aac()];
            let mut m = manifest(&b.pl, &tracks);
            m.frame_rate = Some(29.97);
            let text = mpd(&m);
            let doc = roxmltree::Document::parse(&text).unwrap();
            let reps: Vec<_> = doc
                .descendants()
                .filter(|n| n.has_tag_name("Representation"))
                .collect();
            assert_eq!(reps.len(), 2, "{text}");
            assert_eq!(attr(reps[0], "codecs"), codecs);
            assert_eq!(attr(reps[0], "frameRate"), "30000/1001");
            let dims = reps[0]
                .attribute("width")
                .zip(reps[0].attribute("height"))
                .map(|(w, h)| (w.parse().unwrap(), h.parse().unwrap()));
            assert_eq!(dims, size);
            assert_eq!(attr(reps[1], "codecs"), "mp4a.40.2");
            assert_eq!(attr(reps[1], "audioSamplingRate"), "48000");
            let bw: Vec<u64> = reps
                .iter()
                .map(|r| attr(*r, "bandwidth").parse().unwrap())
                .collect();
            assert_eq!(bw, [2_000_000 - 128_000, 128_000]);
            let channels = doc
                .descendants()
                .find(|n| n.has_tag_name("AudioChannelConfiguration"))
                .unwrap();
            assert_eq!(attr(channels, "value"), "2");
        }
    }

    #[test]
    fn urls_are_escaped() {
        let mut b = Builder::new(20);
        b.segment(180_000, 1, false, true);
        let tracks = [avc()];
        let mut m = manifest(&b.pl, &tracks);
        m.base = "a&b\"/";
        m.query = "?token=1&x";
        m.utc_timing = "/time?x=<1>&y='2'";
        let text = mpd(&m);
        let doc = roxmltree::Document::parse(&text).unwrap();
        let tpl = doc
            .descendants()
            .find(|n| n.has_tag_name("SegmentTemplate"))
            .unwrap();
        assert_eq!(attr(tpl, "media"), "a&b\"/t1-seg$Number$.m4s?token=1&x");
        let utc = doc
            .descendants()
            .find(|n| n.has_tag_name("UTCTiming"))
            .unwrap();
        assert_eq!(attr(utc, "value"), "/time?x=<1>&y='2'");
    }

    #[test]
    fn frame_rates_are_integers_or_fractions() {
        let cases = [
            (30.0, "30"),
            (29.97, "30000/1001"),
            (59.94, "60000/1001"),
            (23.976, "24000/1001"),
            (12.5, "12500/1000"),
        ];
        for (fps, text) in cases {
            assert_eq!(FrameRate(fps).to_string(), text);
        }
    }

    #[test]
    fn an_empty_playlist_renders_an_mpd_without_periods_content() {
        let pl = MediaPlaylist::new(PlaylistConfig::default());
        let text = mpd(&manifest(&pl, &[]));
        let doc = roxmltree::Document::parse(&text).unwrap();
        assert_eq!(attr(doc.root_element(), "type"), "dynamic");
        assert!(kids(doc.root_element(), "Period").is_empty());
    }
}
