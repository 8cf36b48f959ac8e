//! Reading a DASH MPD (ISO/IEC 23009-1) as a live-edge player needs it, and nothing more.
//!
//! ```text
//! MPD text ─ parse(text, mpd_path) ─▶ Mpd { type, availabilityStartTime, minimumUpdatePeriod,
//!                                           UTCTiming, the last Period's video and audio Track }
//! Track ─ media_path(seg) / init_path() / end_us(seg) / available_us(seg) ─▶ what to GET, when
//! ```
//!
//! Addressing is `SegmentTemplate` (inherited Period → AdaptationSet → Representation,
//! attribute by attribute) with a `SegmentTimeline`, `$Number$`, `$Time$`,
//! `$RepresentationID$`, `$Bandwidth$` and `%0Nd` widths; `BaseURL`s at every level resolve
//! against the MPD's path. Of each AdaptationSet only the first Representation is read, and of
//! the MPD only the first video and the first audio AdaptationSet of the last Period (a
//! muxed AdaptationSet with a video component counts as video).
//!
//! It does not read `SegmentBase`, `SegmentList`, templates without a `SegmentTimeline`, an
//! `S@r="-1"` at the end of a timeline, xlink, or `BaseURL@availabilityTimeOffset`; those are
//! errors, not guesses. Like the packager's renderer it reads no clock: times are microseconds
//! on the MPD's (the server's) wall clock, and the caller compares them with its own.

use std::fmt;
use std::time::Duration;

use roxmltree::Node;
use zerocast_packager::{dash, Pdt};

use crate::viewers::resolve;

/// Most `S` entries a timeline may expand to (a live window holds a few dozen).
const MAX_SEGMENTS: u64 = 100_000;

/// What does not parse, or what this reader does not support, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MpdError(String);

impl fmt::Display for MpdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MpdError {}

fn err<T>(what: impl Into<String>) -> Result<T, MpdError> {
    Err(MpdError(what.into()))
}

/// The parts of an MPD a live-edge viewer uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mpd {
    /// `type="dynamic"`: live, refreshed every `minimum_update_period`.
    pub(crate) dynamic: bool,
    /// `availabilityStartTime`, Unix microseconds (0 when absent, as in a static MPD).
    pub(crate) availability_start_us: i64,
    /// `minimumUpdatePeriod`.
    pub(crate) minimum_update_period: Option<Duration>,
    /// Path of the first `UTCTiming` that answers an ISO 8601 time over HTTP (`http-iso`,
    /// `http-xsdate`), resolved against the MPD's path.
    pub(crate) utc_timing: Option<String>,
    /// The last Period.
    pub(crate) period: Period,
}

/// The last Period of an MPD.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Period {
    /// `Period@id`, if any.
    pub(crate) id: Option<String>,
    /// `Period@start` (or the previous Periods' starts and durations), microseconds after
    /// `availabilityStartTime`.
    pub(crate) start_us: i64,
    /// The first video AdaptationSet, then the first audio one, whichever exist.
    pub(crate) tracks: Vec<Track>,
}

/// The kind of an AdaptationSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Video,
    Audio,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Video => "video",
            Kind::Audio => "audio",
        }
    }
}

/// One AdaptationSet's first Representation and its segments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Track {
    pub(crate) kind: Kind,
    /// `Representation@id`.
    pub(crate) representation_id: String,
    /// `Representation@bandwidth` (0 when absent).
    pub(crate) bandwidth: u64,
    /// Path the templates' URLs are relative to (the MPD's, after the BaseURLs).
    base: String,
    /// `SegmentTemplate@initialization`.
    init: Option<String>,
    /// `SegmentTemplate@media`.
    media: String,
    /// Ticks per second.
    pub(crate) timescale: u64,
    /// `presentationTimeOffset`, ticks.
    pub(crate) presentation_time_offset: u64,
    /// `availabilityTimeOffset`, microseconds; `i64::MAX` for `INF`.
    pub(crate) availability_time_offset_us: i64,
    /// `availabilityTimeComplete` (true when absent); false: segments are served while they
    /// are written.
    pub(crate) availability_time_complete: bool,
    /// Start of the Period, microseconds after `availabilityStartTime` (copied for the times).
    period_start_us: i64,
    /// The timeline, expanded, oldest first.
    pub(crate) segments: Vec<Seg>,
}

/// One segment of a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seg {
    /// `$Number$`.
    pub(crate) number: u64,
    /// `$Time$`: media time of its start, ticks.
    pub(crate) t: u64,
    /// Duration, ticks.
    pub(crate) d: u64,
}

impl Mpd {
    /// The track of `kind`, if the last Period has one.
    pub(crate) fn track(&self, kind: Kind) -> Option<&Track> {
        self.period.tracks.iter().find(|t| t.kind == kind)
    }
}

impl Track {
    /// Whether `$Time$` is needed to address a segment (then only listed segments can be
    /// requested: a later segment's start is not known before the MPD lists it).
    pub(crate) fn needs_time(&self) -> bool {
        self.media.contains("$Time")
    }

    /// The path of the initialization segment, if there is one.
    pub(crate) fn init_path(&self) -> Result<Option<String>, MpdError> {
        self.init
            .as_deref()
            .map(|t| {
                let url = expand(t, &self.representation_id, self.bandwidth, None, None)?;
                Ok(resolve(&self.base, &url))
            })
            .transpose()
    }

    /// The path of segment `seg`.
    pub(crate) fn media_path(&self, seg: &Seg) -> Result<String, MpdError> {
        let url = expand(
            &self.media,
            &self.representation_id,
            self.bandwidth,
            Some(seg.number),
            Some(seg.t),
        )?;
        Ok(resolve(&self.base, &url))
    }

    /// The listed segment numbered `number`.
    pub(crate) fn find(&self, number: u64) -> Option<&Seg> {
        let first = self.segments.first()?.number;
        let i = usize::try_from(number.checked_sub(first)?).ok()?;
        self.segments.get(i)
    }

    /// Segment `number`: listed, or after the last listed one as if every segment in between
    /// lasted as long as the last (how a `$Number$` template is followed past the MPD).
    pub(crate) fn segment(&self, number: u64) -> Option<Seg> {
        if let Some(s) = self.find(number) {
            return Some(*s);
        }
        let last = self.segments.last()?;
        let ahead = number.checked_sub(last.number)?;
        Some(Seg {
            number,
            t: last.t.checked_add(last.d.checked_mul(ahead)?)?,
            d: last.d,
        })
    }

    /// Microseconds after `availabilityStartTime` at which media time `t` is presented.
    fn at_us(&self, t: u64) -> i64 {
        let ticks = i128::from(t) - i128::from(self.presentation_time_offset);
        let us = ticks * 1_000_000 / i128::from(self.timescale.max(1));
        i64::try_from(us)
            .unwrap_or(i64::MAX)
            .saturating_add(self.period_start_us)
    }

    /// When `seg` ends, microseconds after `availabilityStartTime`: the start of the next
    /// listed segment when there is one (an announced segment's `d` is a forecast), else its
    /// `t + d`.
    pub(crate) fn end_us(&self, seg: &Seg) -> i64 {
        match self.find(seg.number + 1) {
            Some(next) => self.at_us(next.t),
            None => self.at_us(seg.t.saturating_add(seg.d)),
        }
    }

    /// When `seg` may be requested, microseconds after `availabilityStartTime`: its end less
    /// `availabilityTimeOffset` (ISO/IEC 23009-1 5.3.9.5.3).
    pub(crate) fn available_us(&self, seg: &Seg) -> i64 {
        self.at_us(seg.t.saturating_add(seg.d))
            .saturating_sub(self.availability_time_offset_us)
    }
}

/// Parses `text`, the MPD found at `mpd_path` (an origin-form path, for relative URLs).
pub(crate) fn parse(text: &str, mpd_path: &str) -> Result<Mpd, MpdError> {
    let doc = roxmltree::Document::parse(text).map_err(|e| MpdError(format!("XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "MPD" {
        return err(format!(
            "root element <{}>, not <MPD>",
            root.tag_name().name()
        ));
    }
    let dynamic = match root.attribute("type").unwrap_or("static") {
        "dynamic" => true,
        "static" => false,
        other => return err(format!("MPD@type {other:?}")),
    };
    let availability_start_us = match root.attribute("availabilityStartTime") {
        Some(v) => date_time_us(v)?,
        None if dynamic => return err("dynamic MPD without availabilityStartTime"),
        None => 0,
    };
    let minimum_update_period = root
        .attribute("minimumUpdatePeriod")
        .map(duration)
        .transpose()?;
    let base = base_url(root, mpd_path);
    let utc_timing = children(root, "UTCTiming").find_map(|n| {
        let scheme = n.attribute("schemeIdUri")?;
        let http = scheme.starts_with("urn:mpeg:dash:utc:http-iso:")
            || scheme.starts_with("urn:mpeg:dash:utc:http-xsdate:");
        // `value` may list several URLs separated by spaces: the first will do.
        let url = n.attribute("value")?.split_whitespace().next()?;
        http.then(|| resolve(&base, url))
    });

    // Period@start, when absent, follows the previous Period (5.3.2.1).
    let mut period = None;
    let mut next_start = Some(0i64);
    for p in children(root, "Period") {
        let start_us = match p.attribute("start") {
            Some(v) => duration_us(v)?,
            None => match next_start {
                Some(s) => s,
                None => return err("Period without @start after one without @duration"),
            },
        };
        next_start = p
            .attribute("duration")
            .map(duration_us)
            .transpose()?
            .map(|d| start_us.saturating_add(d));
        period = Some((p, start_us));
    }
    let Some((p, start_us)) = period else {
        return err("no Period");
    };
    let period = read_period(p, start_us, &base_url(p, &base))?;
    Ok(Mpd {
        dynamic,
        availability_start_us,
        minimum_update_period,
        utc_timing,
        period,
    })
}

fn read_period(p: Node<'_, '_>, start_us: i64, base: &str) -> Result<Period, MpdError> {
    let id = p.attribute("id").map(str::to_owned);
    let mut tracks: Vec<Track> = Vec::new();
    for a in children(p, "AdaptationSet") {
        let Some(kind) = adaptation_kind(a) else {
            continue;
        };
        if tracks.iter().any(|t| t.kind == kind) {
            continue;
        }
        let Some(rep) = children(a, "Representation").next() else {
            return err(format!(
                "{} AdaptationSet without Representation",
                kind.label()
            ));
        };
        let chain = [
            child(p, "SegmentTemplate"),
            child(a, "SegmentTemplate"),
            child(rep, "SegmentTemplate"),
        ];
        let base = base_url(rep, &base_url(a, base));
        tracks.push(
            read_track(kind, rep, &chain, &base, start_us)
                .map_err(|e| MpdError(format!("{} AdaptationSet: {e}", kind.label())))?,
        );
    }
    if tracks.is_empty() {
        return err("the last Period has no video or audio AdaptationSet");
    }
    tracks.sort_by_key(|t| t.kind != Kind::Video);
    Ok(Period {
        id,
        start_us,
        tracks,
    })
}

fn read_track(
    kind: Kind,
    rep: Node<'_, '_>,
    chain: &[Option<Node<'_, '_>>; 3],
    base: &str,
    period_start_us: i64,
) -> Result<Track, MpdError> {
    if chain.iter().all(Option::is_none) {
        return err("no SegmentTemplate (SegmentBase and SegmentList are not supported)");
    }
    // The most specific template that sets an attribute wins.
    let attr = |name: &str| chain.iter().rev().flatten().find_map(|n| n.attribute(name));
    let number = |name: &str, default: u64| -> Result<u64, MpdError> {
        attr(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| MpdError(format!("SegmentTemplate@{name} {v:?}")))
        })
    };
    let timescale = number("timescale", 1)?;
    if timescale == 0 {
        return err("SegmentTemplate@timescale 0");
    }
    let presentation_time_offset = number("presentationTimeOffset", 0)?;
    let start_number = number("startNumber", 1)?;
    let Some(media) = attr("media") else {
        return err("SegmentTemplate without @media");
    };
    let availability_time_offset_us = match attr("availabilityTimeOffset") {
        None => 0,
        Some("INF") => i64::MAX,
        Some(v) => match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => (s * 1e6).round() as i64,
            _ => return err(format!("availabilityTimeOffset {v:?}")),
        },
    };
    let availability_time_complete = match attr("availabilityTimeComplete") {
        None | Some("true") => true,
        Some("false") => false,
        Some(v) => return err(format!("availabilityTimeComplete {v:?}")),
    };
    let Some(timeline) = chain
        .iter()
        .rev()
        .flatten()
        .find_map(|n| child(*n, "SegmentTimeline"))
    else {
        return err("SegmentTemplate without SegmentTimeline (not supported)");
    };
    Ok(Track {
        kind,
        representation_id: rep.attribute("id").unwrap_or("").to_owned(),
        bandwidth: rep
            .attribute("bandwidth")
            .and_then(|b| b.parse().ok())
            .unwrap_or(0),
        base: base.to_owned(),
        init: attr("initialization").map(str::to_owned),
        media: media.to_owned(),
        timescale,
        presentation_time_offset,
        availability_time_offset_us,
        availability_time_complete,
        period_start_us,
        segments: expand_timeline(timeline, start_number)?,
    })
}

/// The segments of a `SegmentTimeline`, numbered from `start_number`.
fn expand_timeline(timeline: Node<'_, '_>, start_number: u64) -> Result<Vec<Seg>, MpdError> {
    let entries: Vec<Node<'_, '_>> = children(timeline, "S").collect();
    let mut out = Vec::new();
    let mut next_t = 0u64;
    for (i, s) in entries.iter().enumerate() {
        let get = |name: &str| -> Result<Option<i64>, MpdError> {
            s.attribute(name)
                .map(|v| {
                    v.parse()
                        .map_err(|_| MpdError(format!("S@{name} {v:?} (entry {i})")))
                })
                .transpose()
        };
        let t = match get("t")? {
            Some(t) => u64::try_from(t).map_err(|_| MpdError(format!("S@t {t} (entry {i})")))?,
            None => next_t,
        };
        let d = match get("d")? {
            Some(d) if d > 0 => d.unsigned_abs(),
            _ => return err(format!("S without a positive @d (entry {i})")),
        };
        let repeats = match get("r")?.unwrap_or(0) {
            r if r >= 0 => r.unsigned_abs(),
            // Repeat until the next entry's start (5.3.9.6.1).
            _ => match entries.get(i + 1).and_then(|n| n.attribute("t")) {
                Some(nt) => {
                    let nt: u64 = nt
                        .parse()
                        .map_err(|_| MpdError(format!("S@t {nt:?} (entry {})", i + 1)))?;
                    nt.saturating_sub(t).div_ceil(d).saturating_sub(1)
                }
                None => return err("S@r=\"-1\" without a following S@t (not supported)"),
            },
        };
        if out.len() as u64 + repeats + 1 > MAX_SEGMENTS {
            return err(format!(
                "SegmentTimeline longer than {MAX_SEGMENTS} segments"
            ));
        }
        for k in 0..=repeats {
            let number = start_number + out.len() as u64;
            out.push(Seg {
                number,
                t: t + k * d,
                d,
            });
        }
        next_t = t + (repeats + 1) * d;
    }
    if out.is_empty() {
        return err("empty SegmentTimeline");
    }
    Ok(out)
}

/// Video or audio, from `contentType`, `mimeType` (the AdaptationSet's or its first
/// Representation's), or its ContentComponents; `None` for anything else (text, images).
fn adaptation_kind(a: Node<'_, '_>) -> Option<Kind> {
    let from = |s: &str| {
        if s.starts_with("video") {
            Some(Kind::Video)
        } else if s.starts_with("audio") {
            Some(Kind::Audio)
        } else {
            None
        }
    };
    let rep_mime = children(a, "Representation")
        .next()
        .and_then(|r| r.attribute("mimeType"));
    let declared = a
        .attribute("contentType")
        .or_else(|| a.attribute("mimeType"))
        .or(rep_mime);
    if let Some(kind) = declared.and_then(from) {
        return Some(kind);
    }
    let components: Vec<Kind> = children(a, "ContentComponent")
        .filter_map(|c| c.attribute("contentType").and_then(from))
        .collect();
    if components.contains(&Kind::Video) {
        Some(Kind::Video)
    } else {
        components.first().copied()
    }
}

/// `base` with the node's first `BaseURL` applied, if it has one.
fn base_url(n: Node<'_, '_>, base: &str) -> String {
    match child(n, "BaseURL").and_then(|b| b.text()).map(str::trim) {
        Some(url) if !url.is_empty() => resolve(base, url),
        _ => base.to_owned(),
    }
}

fn children<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> Option<Node<'a, 'i>> {
    children(n, name).next()
}

/// Expands a `SegmentTemplate` URL (5.3.9.4.4): `$$`, `$RepresentationID$`, and `$Number$`,
/// `$Time$`, `$Bandwidth$` with an optional `%0Nd` width.
fn expand(
    template: &str,
    representation_id: &str,
    bandwidth: u64,
    number: Option<u64>,
    time: Option<u64>,
) -> Result<String, MpdError> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('$') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('$') else {
            return err(format!("unterminated $ in {template:?}"));
        };
        let ident = &after[..close];
        rest = &after[close + 1..];
        if ident.is_empty() {
            out.push('$');
            continue;
        }
        if ident == "RepresentationID" {
            out.push_str(representation_id);
            continue;
        }
        let (name, width) = match ident.split_once('%') {
            Some((name, fmt)) => {
                let w = fmt
                    .strip_suffix('d')
                    .and_then(|w| w.strip_prefix('0').or(Some(w)))
                    .and_then(|w| {
                        if w.is_empty() {
                            Some(1)
                        } else {
                            w.parse().ok()
                        }
                    });
                match w {
                    Some(w) => (name, w),
                    None => return err(format!("format {ident:?} in {template:?}")),
                }
            }
            None => (ident, 1usize),
        };
        let value = match name {
            "Number" => number,
            "Time" => time,
            "Bandwidth" => Some(bandwidth),
            _ => return err(format!("identifier ${ident}$ in {template:?}")),
        };
        let Some(value) = value else {
            return err(format!("${ident}$ in an initialization template"));
        };
        out.push_str(&format!("{value:0width$}"));
    }
    out.push_str(rest);
    Ok(out)
}

/// An `xs:duration` (the packager's reader).
pub(crate) fn duration(v: &str) -> Result<Duration, MpdError> {
    dash::parse_duration(v).ok_or_else(|| MpdError(format!("duration {v:?}")))
}

fn duration_us(v: &str) -> Result<i64, MpdError> {
    duration(v).map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// An `xs:dateTime` as Unix microseconds (the packager's reader).
pub(crate) fn date_time_us(v: &str) -> Result<i64, MpdError> {
    Pdt::parse_us(v).ok_or_else(|| MpdError(format!("dateTime {v:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape the edge serves: one AdaptationSet per track, each with its template.
    const PER_TRACK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic" availabilityStartTime="2023-11-14T22:13:20.000Z" publishTime="2023-11-14T22:13:40.000Z" minimumUpdatePeriod="PT0.2S" timeShiftBufferDepth="PT15S" suggestedPresentationDelay="PT1.5S" minBufferTime="PT0.8S">
  <Period id="p0" start="PT0S">
    <AdaptationSet id="1" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">
      <SegmentTemplate timescale="90000" presentationTimeOffset="0" startNumber="0" initialization="1a2b/t1-init1.mp4" media="1a2b/t1-seg$Number$.m4s" availabilityTimeOffset="1.6" availabilityTimeComplete="false">
        <SegmentTimeline>
          <S t="0" d="180000"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="v1" bandwidth="2800000" codecs="avc1.64001f" width="1280" height="720" frameRate="30"/>
    </AdaptationSet>
  </Period>
  <Period id="p3" start="PT11S">
    <AdaptationSet id="1" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">
      <SegmentTemplate timescale="90000" presentationTimeOffset="719910" startNumber="3" initialization="1a2b/t1-init2.mp4" media="1a2b/t1-seg$Number$.m4s" availabilityTimeOffset="1.6" availabilityTimeComplete="false">
        <SegmentTimeline>
          <S t="719910" d="180000" r="2"/>
          <S d="120000"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="v1" bandwidth="2800000" codecs="avc1.64001f" width="1280" height="720" frameRate="30"/>
    </AdaptationSet>
    <AdaptationSet id="2" contentType="audio" mimeType="audio/mp4" segmentAlignment="true" startWithSAP="1">
      <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
      <SegmentTemplate timescale="48000" presentationTimeOffset="383952" startNumber="3" initialization="1a2b/t2-init2.mp4" media="1a2b/t2-seg$Number$.m4s" availabilityTimeOffset="1.6" availabilityTimeComplete="false">
        <SegmentTimeline>
          <S t="383952" d="96000" r="2"/>
          <S d="64000"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="a2" bandwidth="128000" codecs="mp4a.40.2" audioSamplingRate="48000"/>
    </AdaptationSet>
  </Period>
  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="/time"/>
</MPD>
"#;

    const AST_US: i64 = 1_700_000_000_000_000;

    #[test]
    fn reads_the_last_period_per_track() {
        let mpd = parse(PER_TRACK, "/live/demo/index.mpd").unwrap();
        assert!(mpd.dynamic);
        assert_eq!(mpd.availability_start_us, AST_US);
        assert_eq!(mpd.minimum_update_period, Some(Duration::from_millis(200)));
        assert_eq!(mpd.utc_timing.as_deref(), Some("/time"));
        assert_eq!(mpd.period.id.as_deref(), Some("p3"));
        assert_eq!(mpd.period.start_us, 11_000_000);
        let v = mpd.track(Kind::Video).unwrap();
        let a = mpd.track(Kind::Audio).unwrap();
        assert_eq!(
            (v.representation_id.as_str(), v.bandwidth),
            ("v1", 2_800_000)
        );
        assert_eq!(
            v.init_path().unwrap().as_deref(),
            Some("/live/demo/1a2b/t1-init2.mp4")
        );
        assert_eq!(
            a.init_path().unwrap().as_deref(),
            Some("/live/demo/1a2b/t2-init2.mp4")
        );
        assert!(!v.availability_time_complete && !v.needs_time());
        assert_eq!(v.availability_time_offset_us, 1_600_000);
        let numbers: Vec<(u64, u64, u64)> =
            v.segments.iter().map(|s| (s.number, s.t, s.d)).collect();
        assert_eq!(
            numbers,
            [
                (3, 719_910, 180_000),
                (4, 899_910, 180_000),
                (5, 1_079_910, 180_000),
                (6, 1_259_910, 120_000)
            ]
        );
        let newest = *a.segments.last().unwrap();
        assert_eq!(newest.number, 6);
        assert_eq!(
            a.media_path(&newest).unwrap(),
            "/live/demo/1a2b/t2-seg6.m4s"
        );
    }

    #[test]
    fn times_follow_the_period_and_the_offset() {
        let mpd = parse(PER_TRACK, "/live/demo/index.mpd").unwrap();
        let v = mpd.track(Kind::Video).unwrap();
        // Segment 3 starts at the Period's start (its t is the presentationTimeOffset) and
        // ends 2 s later, where segment 4 starts.
        let s3 = v.find(3).unwrap();
        assert_eq!(v.end_us(s3), 13_000_000);
        // The announced segment 6: 11 s + 3 × 2 s + its forecast 1⅓ s.
        let s6 = v.find(6).unwrap();
        assert_eq!(v.end_us(s6), 18_333_333);
        assert_eq!(v.available_us(s6), 18_333_333 - 1_600_000);
        // Past the timeline, a $Number$ template goes on with the last duration.
        let s8 = v.segment(8).unwrap();
        assert_eq!((s8.t, s8.d), (1_259_910 + 2 * 120_000, 120_000));
        assert_eq!(v.media_path(&s8).unwrap(), "/live/demo/1a2b/t1-seg8.m4s");
        assert!(v.segment(2).is_none() && v.find(7).is_none());
    }

    /// The server's own renderer: what the edge serves.
    #[test]
    fn follows_the_packager_per_track_mpd() {
        use bytes::Bytes;
        use zerocast_core::codec::{aac::AacConfig, avc::AvcConfig};
        use zerocast_core::{AudioCodec, Timescale, Timestamp, Track, TrackId, VideoCodec};
        use zerocast_packager::dash::{render, Manifest, MpdConfig};
        use zerocast_packager::{MediaPlaylist, PlaylistConfig};

        const T0_MS: i64 = 1_700_000_000_000;
        // avcC of a 320x240 Baseline stream, and 48 kHz stereo AAC-LC.
        const AVCC: &[u8] = &[
            0x01, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01,
            0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20,
            0xf1, 0x42, 0xa4, 0x80,
        ];
        let aac = AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap();
        let tracks = [
            Track::Video {
                id: TrackId::VIDEO,
                timescale: Timescale::VIDEO,
                codec: VideoCodec::Avc(AvcConfig::parse(Bytes::from_static(AVCC)).unwrap()),
            },
            Track::Audio {
                id: TrackId::AUDIO,
                timescale: Timescale::new(aac.sample_rate).unwrap(),
                codec: AudioCodec::Aac(aac),
            },
        ];
        // Three 2 s segments of 0.2 s parts whose wall clock follows the media clock (from
        // 10 s on the publisher's clock), then two parts of the segment being written.
        let mut pl = MediaPlaylist::new(PlaylistConfig::default());
        let media0 = 900_000i64;
        for seg in 0..4 {
            let start = media0 + seg * 180_000;
            let pdt = T0_MS + seg * 2_000;
            let parts = if seg < 3 { 10 } else { 2 };
            for p in 0..parts {
                let ts = Timestamp::new(start, Timescale::VIDEO);
                pl.push_part(0.2, p == 0, pdt, ts, 1, false);
            }
            if seg < 3 {
                pl.close_segment();
            }
        }
        let mut text = String::new();
        let manifest = Manifest {
            playlist: &pl,
            tracks: &tracks,
            bandwidth: 2_500_000,
            frame_rate: Some(30.0),
            base: "3f2a/",
            query: "",
            utc_timing: "/time",
            now_unix_ms: T0_MS + 6_400,
            next_started: true,
            config: MpdConfig::default(),
        };
        render(&mut text, &manifest).unwrap();
        let mpd = parse(&text, "/live/demo/index.mpd").unwrap();
        assert_eq!(mpd.availability_start_us, T0_MS * 1000, "{text}");
        assert_eq!(mpd.minimum_update_period, Some(Duration::from_millis(200)));
        assert_eq!(mpd.utc_timing.as_deref(), Some("/time"));
        let kinds: Vec<Kind> = mpd.period.tracks.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [Kind::Video, Kind::Audio], "{text}");
        for (track, id) in mpd.period.tracks.iter().zip([1, 2]) {
            assert!(!track.availability_time_complete);
            assert_eq!(
                track.init_path().unwrap().unwrap(),
                format!("/live/demo/3f2a/t{id}-init1.mp4")
            );
            let numbers: Vec<u64> = track.segments.iter().map(|s| s.number).collect();
            assert_eq!(numbers, [0, 1, 2, 3], "{text}");
            let newest = track.segments.last().unwrap();
            assert_eq!(
                track.media_path(newest).unwrap(),
                format!("/live/demo/3f2a/t{id}-seg3.m4s")
            );
            // Each segment ends at its successor's PROGRAM-DATE-TIME; the one being written
            // is forecast to last as long as the previous one.
            for s in &track.segments {
                let end_ms = T0_MS + (s.number as i64 + 1) * 2_000;
                assert_eq!(mpd.availability_start_us + track.end_us(s), end_ms * 1000);
            }
            // Available once its first part is, by the MPD's timing: 2 s − 1.6 s after its start.
            assert_eq!(
                mpd.availability_start_us + track.available_us(newest),
                (T0_MS + 6_400) * 1000
            );
        }
    }

    /// The packager's golden MPD (two Periods, a track per AdaptationSet): checked by what
    /// holds whatever its numbers, so that re-blessing it keeps this test meaningful.
    #[test]
    fn reads_the_packager_golden_mpd() {
        let text = include_str!("../../packager/tests/golden/reconnect.mpd");
        let mpd = parse(text, "/live/a/index.mpd").unwrap();
        assert!(mpd.dynamic && mpd.minimum_update_period.is_some());
        let last_period = text.rsplit("<Period ").next().unwrap();
        assert!(last_period.starts_with(&format!("id=\"{}\"", mpd.period.id.as_deref().unwrap())));
        let kinds: Vec<Kind> = mpd.period.tracks.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [Kind::Video, Kind::Audio]);
        for (t, id) in mpd.period.tracks.iter().zip([1, 2]) {
            assert!(!t.segments.is_empty());
            for (i, pair) in t.segments.windows(2).enumerate() {
                assert_eq!(pair[1].number, pair[0].number + 1, "segment {i}");
                assert_eq!(t.end_us(&pair[0]), t.at_us(pair[1].t), "segment {i}");
            }
            let newest = t.segments.last().unwrap();
            let path = format!("/live/a/t{id}-seg{}.m4s", newest.number);
            assert_eq!(t.media_path(newest).unwrap(), path);
        }
    }

    /// A muxed AdaptationSet (one Representation, video and audio ContentComponents) is
    /// followed as one video track.
    #[test]
    fn a_muxed_adaptation_set_is_one_track() {
        let text = r#"<MPD type="static"><Period><AdaptationSet mimeType="application/mp4">
  <ContentComponent id="2" contentType="audio"/><ContentComponent id="1" contentType="video"/>
  <SegmentTemplate media="seg$Number$.m4s"><SegmentTimeline><S d="2"/></SegmentTimeline></SegmentTemplate>
  <Representation id="av"/></AdaptationSet></Period></MPD>"#;
        let mpd = parse(text, "/a/index.mpd").unwrap();
        assert_eq!(mpd.period.tracks.len(), 1);
        let t = &mpd.period.tracks[0];
        assert_eq!((t.kind, t.segments[0].number), (Kind::Video, 1));
        assert_eq!(t.media_path(&t.segments[0]).unwrap(), "/a/seg1.m4s");
    }

    #[test]
    fn nginx_rtmp_style_time_templates() {
        // nginx-rtmp's shape: $Time$ templates, no availabilityTimeOffset, startNumber absent.
        let text = r#"<MPD type="dynamic" availabilityStartTime="2024-01-02T03:04:05+01:00" minimumUpdatePeriod="PT3S">
  <Period start="PT0S" id="dash">
    <AdaptationSet segmentAlignment="true" maxWidth="1280">
      <Representation id="x_H264" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="2500000">
        <SegmentTemplate presentationTimeOffset="0" timescale="1000" media="x-$Time$.m4v" initialization="x-init.m4v">
          <SegmentTimeline><S t="1000" d="3000" r="1"/><S t="9000" d="3000"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet segmentAlignment="true">
      <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="1"/>
      <Representation id="x_AAC" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000">
        <SegmentTemplate presentationTimeOffset="0" timescale="1000" media="x-$Time$.m4a" initialization="x-init.m4a">
          <SegmentTimeline><S t="1000" d="3000" r="-1"/><S t="9000" d="3000"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>"#;
        let mpd = parse(text, "/dash/x.mpd").unwrap();
        // 03:04:05+01:00 is 02:04:05 UTC.
        assert_eq!(mpd.availability_start_us, 1_704_161_045_000_000);
        let v = mpd.track(Kind::Video).unwrap();
        assert!(v.needs_time() && v.availability_time_complete);
        let times: Vec<(u64, u64)> = v.segments.iter().map(|s| (s.number, s.t)).collect();
        // The gap between 7000 and 9000 stays a gap.
        assert_eq!(times, [(1, 1000), (2, 4000), (3, 9000)]);
        assert_eq!(v.media_path(&v.segments[2]).unwrap(), "/dash/x-9000.m4v");
        assert_eq!(v.init_path().unwrap().as_deref(), Some("/dash/x-init.m4v"));
        // r="-1" repeats up to the next S@t: 1000, 4000, 7000, then 9000.
        let a = mpd.track(Kind::Audio).unwrap();
        let times: Vec<u64> = a.segments.iter().map(|s| s.t).collect();
        assert_eq!(times, [1000, 4000, 7000, 9000]);
        assert_eq!(a.representation_id, "x_AAC");
    }

    #[test]
    fn inherits_templates_and_base_urls() {
        let text = r#"<MPD type="static" xmlns="urn:mpeg:dash:schema:mpd:2011">
  <BaseURL>media/</BaseURL>
  <Period>
    <SegmentTemplate timescale="10" startNumber="7" media="$RepresentationID$/$Number%05d$-$Bandwidth$.m4s" initialization="$RepresentationID$/init.mp4">
      <SegmentTimeline><S d="20" r="1"/></SegmentTimeline>
    </SegmentTemplate>
    <AdaptationSet mimeType="audio/mp4">
      <BaseURL>../audio/</BaseURL>
      <Representation id="en" bandwidth="64000"><SegmentTemplate timescale="100"/></Representation>
    </AdaptationSet>
  </Period>
</MPD>"#;
        let mpd = parse(text, "/vod/x/manifest.mpd").unwrap();
        assert!(!mpd.dynamic && mpd.minimum_update_period.is_none());
        let a = mpd.track(Kind::Audio).unwrap();
        // The Representation's timescale overrides the Period's; the rest is inherited.
        assert_eq!(a.timescale, 100);
        assert_eq!(
            a.segments[1],
            Seg {
                number: 8,
                t: 20,
                d: 20
            }
        );
        assert_eq!(
            a.media_path(&a.segments[1]).unwrap(),
            "/vod/x/audio/en/00008-64000.m4s"
        );
        assert_eq!(
            a.init_path().unwrap().as_deref(),
            Some("/vod/x/audio/en/init.mp4")
        );
        assert!(mpd.track(Kind::Video).is_none());
    }

    #[test]
    fn refuses_what_it_cannot_follow() {
        let wrap = |inner: &str| {
            format!(
                r#"<MPD type="dynamic" availabilityStartTime="2024-01-01T00:00:00Z"><Period start="PT0S"><AdaptationSet contentType="video"><Representation id="v">{inner}</Representation></AdaptationSet></Period></MPD>"#
            )
        };
        let cases = [
            (wrap(r#"<SegmentBase/>"#), "no SegmentTemplate"),
            (
                wrap(r#"<SegmentTemplate media="s$Number$" duration="2"/>"#),
                "without SegmentTimeline",
            ),
            (
                wrap(
                    r#"<SegmentTemplate media="s$Number$"><SegmentTimeline><S d="1" r="-1"/></SegmentTimeline></SegmentTemplate>"#,
                ),
                "r=\"-1\"",
            ),
            (
                wrap(
                    r#"<SegmentTemplate media="s$Number$"><SegmentTimeline><S t="1"/></SegmentTimeline></SegmentTemplate>"#,
                ),
                "positive @d",
            ),
            (
                wrap(
                    r#"<SegmentTemplate media="s$Number$"><SegmentTimeline><S d="1" r="100000"/></SegmentTimeline></SegmentTemplate>"#,
                ),
                "longer than",
            ),
            (
                wrap(
                    r#"<SegmentTemplate media="s$Number$" timescale="0"><SegmentTimeline><S d="1"/></SegmentTimeline></SegmentTemplate>"#,
                ),
                "timescale 0",
            ),
            (
                "<MPD type=\"dynamic\"><Period/></MPD>".to_owned(),
                "availabilityStartTime",
            ),
            ("<MPD><Period/>".to_owned(), "XML"),
            ("<MPD/>".to_owned(), "no Period"),
        ];
        for (text, want) in cases {
            let e = parse(&text, "/x.mpd").unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn expands_identifiers() {
        let e = |t: &str| expand(t, "v1", 500, Some(42), Some(90_000));
        assert_eq!(e("a$$b$Number$").unwrap(), "a$b42");
        assert_eq!(
            e("$Number%05d$_$Time$_$RepresentationID$").unwrap(),
            "00042_90000_v1"
        );
        assert_eq!(e("$Bandwidth%2d$").unwrap(), "500");
        assert!(e("$Number").is_err());
        assert!(e("$Nope$").is_err());
        assert!(expand("$Number$", "v", 0, None, None).is_err());
    }
}
