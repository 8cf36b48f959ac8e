//! LL-HLS media playlists as values (draft-pantos-hls-rfc8216bis).
//!
//! A [`MediaPlaylist`] is the stream's sliding window: complete segments, the parts of the
//! segment being written, and the preload hint. The packager pushes parts and segments into it;
//! the IO layer asks [`MediaPlaylist::reload`] whether a blocking request can be answered yet
//! and renders it with [`MediaPlaylist::render`]. Nothing here waits or reads a clock.
//!
//! URIs are relative to the media playlist: `init{V}.mp4`, `seg{MSN}.m4s` and `part{N}.m4s`,
//! where `N` is a stream-wide part counter. Naming parts by a global counter lets the preload
//! hint name the next part before anyone knows whether it will open a new segment.

use std::collections::VecDeque;
use std::fmt::{self, Write};

use zerocast_core::Timestamp;

use crate::query::{Query, Skip};

/// Fixed playlist parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaylistConfig {
    /// `PART-TARGET`, seconds. No part is longer.
    pub part_target: f64,
    /// The segment duration aimed for, seconds; the floor of `EXT-X-TARGETDURATION`.
    pub segment_target: f64,
    /// Complete segments kept in the playlist window.
    pub window: usize,
    /// Segments (counted back from the newest) whose parts stay listed. The spec asks for parts
    /// of at least the last three target durations.
    pub part_segments: usize,
}

impl Default for PlaylistConfig {
    fn default() -> Self {
        Self {
            part_target: 0.2,
            segment_target: 2.0,
            window: 20,
            part_segments: 4,
        }
    }
}

/// One partial segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    /// Stream-wide part number: the part's URI is `part{id}.m4s`.
    pub id: u64,
    /// Duration in seconds.
    pub duration: f64,
    /// Starts with a random access point.
    pub independent: bool,
}

/// One media segment: complete, or the one being written (the last, when `complete` is false).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// Duration in seconds (sum of its parts).
    pub duration: f64,
    /// Wall-clock time of the segment's first sample, Unix milliseconds.
    pub program_date_time: i64,
    /// Decode time of the segment's first sample on the stream's media timeline (the `tfdt`
    /// of its first chunk's first track run).
    pub start: Timestamp,
    /// Where the stretch of timeline this segment belongs to began: a DASH Period.
    pub timeline: TimelineStart,
    /// The init segment version (`init{V}.mp4`) this segment needs.
    pub init_version: u32,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Its parts, in order. Emptied for old segments (parts are only listed near the live edge).
    pub parts: Vec<Part>,
    /// How many parts the segment had (kept when `parts` is pruned).
    pub part_count: u32,
    /// The segment is finished.
    pub complete: bool,
}

/// The first segment of a stretch of timeline that one init segment and one wall-clock anchor
/// describe: the stream's first segment, and every segment after a discontinuity or with a new
/// init segment. DASH turns each into a Period; HLS only needs `EXT-X-DISCONTINUITY`/`EXT-X-MAP`.
///
/// Every segment carries a copy, so the stretch stays known after its first segment slid out of
/// the window (a Period's start must not change between MPD updates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineStart {
    /// Media sequence number of the first segment.
    pub msn: u64,
    /// Its decode time (see [`Segment::start`]).
    pub start: Timestamp,
    /// Its wall-clock time, Unix milliseconds.
    pub program_date_time: i64,
}

/// What a blocking playlist request should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Answer now.
    Ready,
    /// The requested part does not exist yet: wait for the playlist to change, then ask again.
    Wait,
    /// The request is invalid (400), with the reason.
    BadRequest(&'static str),
}

/// The sliding window of one stream's media playlist.
#[derive(Debug, Clone)]
pub struct MediaPlaylist {
    config: PlaylistConfig,
    /// Segments in the window, oldest first; the last one may be incomplete.
    segments: VecDeque<Segment>,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities that slid out of the window.
    discontinuity_sequence: u64,
    /// Longest complete segment, seconds.
    max_segment: f64,
    /// Next part id (the preload hint), `None` once ended.
    next_part: u64,
    next_msn: u64,
    /// The stream's first segment's wall-clock time, Unix ms: DASH's `availabilityStartTime`.
    availability_start: Option<i64>,
    /// The stretch of timeline of the newest segment.
    timeline: Option<TimelineStart>,
    ended: bool,
    version: u64,
}

impl MediaPlaylist {
    /// An empty playlist.
    pub fn new(config: PlaylistConfig) -> Self {
        Self {
            config,
            segments: VecDeque::new(),
            discontinuity_sequence: 0,
            max_segment: 0.0,
            next_part: 0,
            next_msn: 0,
            availability_start: None,
            timeline: None,
            ended: false,
            version: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PlaylistConfig {
        &self.config
    }

    /// Bumped on every change; lets the IO layer cache one rendering per version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Segments in the window, oldest first (the last may be incomplete).
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// The part id the preload hint names: the next part to be produced.
    pub fn next_part_id(&self) -> u64 {
        self.next_part
    }

    /// Wall-clock time of the stream's first segment (Unix ms), fixed for the stream's life;
    /// `None` before the first part.
    pub fn availability_start(&self) -> Option<i64> {
        self.availability_start
    }

    /// `EXT-X-ENDLIST` has been written.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// `EXT-X-TARGETDURATION`: the longest segment rounded up, never below the segment target.
    pub fn target_duration(&self) -> u64 {
        // A tiny epsilon keeps 2.0000001 (a rounding artefact of tick sums) at 2.
        (self.max_segment.max(self.config.segment_target) - 1e-6)
            .ceil()
            .max(1.0) as u64
    }

    /// `PART-HOLD-BACK`: three part targets, as the spec recommends.
    pub fn part_hold_back(&self) -> f64 {
        3.0 * self.config.part_target
    }

    /// `CAN-SKIP-UNTIL`: six target durations, the spec's minimum.
    pub fn can_skip_until(&self) -> f64 {
        6.0 * self.target_duration() as f64
    }

    /// Whether a segment opened now, needing init segment `init_version` (and marked as a
    /// discontinuity or not), starts a new stretch of timeline ([`TimelineStart`], a DASH
    /// Period): the stream's first segment does, and so does one after a discontinuity or with
    /// another init segment than the last one's.
    pub fn starts_timeline(&self, init_version: u32, discontinuity: bool) -> bool {
        let same_init = self
            .segments
            .back()
            .map_or(self.timeline.is_some(), |s| s.init_version == init_version);
        self.timeline.is_none() || discontinuity || !same_init
    }

    /// Adds a finished part to the open segment, opening segment `next_msn` first if needed.
    ///
    /// `program_date_time`, `start` and `init_version` are used when the part opens a segment;
    /// `discontinuity` marks that new segment.
    pub fn push_part(
        &mut self,
        duration: f64,
        independent: bool,
        program_date_time: i64,
        start: Timestamp,
        init_version: u32,
        discontinuity: bool,
    ) -> Part {
        let open = matches!(self.segments.back(), Some(s) if !s.complete);
        if !open {
            let timeline = match self.timeline {
                Some(t) if !self.starts_timeline(init_version, discontinuity) => t,
                _ => TimelineStart {
                    msn: self.next_msn,
                    start,
                    program_date_time,
                },
            };
            self.timeline = Some(timeline);
            self.availability_start.get_or_insert(program_date_time);
            self.segments.push_back(Segment {
                msn: self.next_msn,
                duration: 0.0,
                program_date_time,
                start,
                timeline,
                init_version,
                discontinuity,
                parts: Vec::new(),
                part_count: 0,
                complete: false,
            });
            self.next_msn += 1;
        }
        let part = Part {
            id: self.next_part,
            duration,
            independent,
        };
        self.next_part += 1;
        if let Some(seg) = self.segments.back_mut() {
            seg.duration += duration;
            seg.parts.push(part);
            seg.part_count += 1;
        }
        self.version += 1;
        part
    }

    /// Closes the open segment, if any; returns its msn. Slides the window and prunes old parts.
    pub fn close_segment(&mut self) -> Option<u64> {
        let seg = self.segments.back_mut().filter(|s| !s.complete)?;
        seg.complete = true;
        let msn = seg.msn;
        self.max_segment = self.max_segment.max(seg.duration);
        while self.segments.len() > self.config.window {
            if let Some(old) = self.segments.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
            }
        }
        let keep = self.config.part_segments;
        let n = self.segments.len();
        for seg in self.segments.iter_mut().take(n.saturating_sub(keep)) {
            seg.parts = Vec::new();
        }
        self.version += 1;
        Some(msn)
    }

    /// Closes the open segment and writes `EXT-X-ENDLIST`.
    pub fn end(&mut self) {
        self.close_segment();
        self.ended = true;
        self.version += 1;
    }

    /// The oldest msn in the window (`EXT-X-MEDIA-SEQUENCE`).
    pub fn media_sequence(&self) -> u64 {
        self.segments.front().map_or(self.next_msn, |s| s.msn)
    }

    /// The last part that exists, as (msn, part index); `None` before the first part.
    fn last_part(&self) -> Option<(u64, u32)> {
        let seg = self.segments.back()?;
        Some((seg.msn, seg.part_count.checked_sub(1)?))
    }

    /// Can a request with these directives be answered now? (rfc8216bis 6.2.5.2)
    pub fn reload(&self, q: &Query) -> Reload {
        let Some(msn) = q.msn else {
            return if q.part.is_some() {
                Reload::BadRequest("_HLS_part requires _HLS_msn")
            } else {
                Reload::Ready
            };
        };
        if self.ended {
            return Reload::Ready;
        }
        let Some((last_msn, last_part)) = self.last_part() else {
            // Nothing produced yet: only the very first part can be waited for.
            return if msn <= 2 && q.part.unwrap_or(0) <= self.advance_part_limit() {
                Reload::Wait
            } else {
                Reload::BadRequest("_HLS_msn is beyond the playlist")
            };
        };
        let open = self.segments.back().is_some_and(|s| !s.complete);
        // The msn of the last segment the playlist holds, open or not.
        if msn > last_msn + 2 {
            return Reload::BadRequest("_HLS_msn more than two segments beyond the playlist");
        }
        match q.part {
            None => {
                // Satisfied once segment `msn` is complete.
                let last_complete = if open {
                    last_msn.checked_sub(1)
                } else {
                    Some(last_msn)
                };
                if last_complete.is_some_and(|c| c >= msn) {
                    Reload::Ready
                } else {
                    Reload::Wait
                }
            }
            Some(part) => {
                if msn < last_msn {
                    // An older segment: its parts exist, or it ended before reaching `part`,
                    // in which case a later part (of a later segment) is already there.
                    return Reload::Ready;
                }
                if msn > last_msn {
                    if part > self.advance_part_limit() {
                        return Reload::BadRequest("_HLS_part beyond the advance part limit");
                    }
                    return Reload::Wait;
                }
                if part <= last_part {
                    Reload::Ready
                } else if !open {
                    // Segment `msn` is complete with fewer parts: the next part opens msn + 1.
                    Reload::Wait
                } else if part > last_part + self.advance_part_limit() {
                    Reload::BadRequest("_HLS_part beyond the advance part limit")
                } else {
                    Reload::Wait
                }
            }
        }
    }

    /// How far ahead of the last part a request may ask (rfc8216bis: 3 / PART-TARGET when the
    /// part target is under one second, else 3).
    fn advance_part_limit(&self) -> u32 {
        if self.config.part_target < 1.0 {
            (3.0 / self.config.part_target).ceil() as u32
        } else {
            3
        }
    }

    /// Writes the playlist; with `skip`, a delta update (`EXT-X-SKIP`) when there is something
    /// to skip.
    pub fn render(&self, out: &mut impl Write, skip: Skip) -> fmt::Result {
        let skipped = if skip == Skip::No {
            0
        } else {
            self.skippable_segments()
        };
        let td = self.target_duration();
        writeln!(out, "#EXTM3U")?;
        writeln!(out, "#EXT-X-VERSION:{}", if skipped > 0 { 9 } else { 6 })?;
        writeln!(out, "#EXT-X-TARGETDURATION:{td}")?;
        writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence())?;
        if self.discontinuity_sequence > 0 {
            writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            )?;
        }
        writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}",
            Secs(self.part_hold_back()),
            Secs(self.can_skip_until())
        )?;
        writeln!(
            out,
            "#EXT-X-PART-INF:PART-TARGET={}",
            Secs(self.config.part_target)
        )?;
        if skipped > 0 {
            writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")?;
        }
        let mut map: Option<u32> = None;
        for seg in self.segments.iter().skip(skipped) {
            if seg.discontinuity && map.is_some() {
                writeln!(out, "#EXT-X-DISCONTINUITY")?;
            }
            if map != Some(seg.init_version) {
                writeln!(out, "#EXT-X-MAP:URI=\"init{}.mp4\"", seg.init_version)?;
                map = Some(seg.init_version);
            }
            writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                Pdt(seg.program_date_time)
            )?;
            for p in &seg.parts {
                write!(
                    out,
                    "#EXT-X-PART:DURATION={},URI=\"part{}.m4s\"",
                    Secs(p.duration),
                    p.id
                )?;
                if p.independent {
                    write!(out, ",INDEPENDENT=YES")?;
                }
                writeln!(out)?;
            }
            if seg.complete {
                writeln!(out, "#EXTINF:{},", Secs(seg.duration))?;
                writeln!(out, "seg{}.m4s", seg.msn)?;
            }
        }
        if self.ended {
            writeln!(out, "#EXT-X-ENDLIST")?;
        } else if !self.segments.is_empty() {
            writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{}.m4s\"",
                self.next_part
            )?;
        }
        Ok(())
    }

    /// Complete segments older than `CAN-SKIP-UNTIL` from the end of the playlist.
    fn skippable_segments(&self) -> usize {
        let limit = self.can_skip_until();
        let mut after = 0.0;
        let mut keep = 0;
        for seg in self.segments.iter().rev() {
            if after >= limit - 1e-6 {
                break;
            }
            after += seg.duration;
            keep += 1;
        }
        self.segments.len() - keep
    }
}

/// Seconds with up to five decimals, trailing zeros trimmed (`0.2`, `2.00001`, `4`).
pub(crate) struct Secs(pub(crate) f64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = format!("{:.5}", self.0);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        f.write_str(s)
    }
}

/// An ISO 8601 UTC date-time with milliseconds, from Unix milliseconds: `Pdt(0)` displays as
/// `1970-01-01T00:00:00.000Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pdt(pub i64);

impl fmt::Display for Pdt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    }
}

impl Pdt {
    /// Parses an `xs:dateTime` (`EXT-X-PROGRAM-DATE-TIME`, an MPD's `availabilityStartTime`)
    /// as Unix microseconds: `YYYY-MM-DDThh:mm:ss[.f][Z|±hh:mm]`, UTC when it has no zone (as
    /// DASH players assume). `None` for anything else.
    pub fn parse_us(v: &str) -> Option<i64> {
        let num = |s: &str| -> Option<i64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let (date, time) = v.trim().split_once('T')?;
        let mut d = date.splitn(3, '-');
        let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
        // The zone: Z, ±hh:mm, or none.
        let (clock, offset_s) = if let Some(c) = time.strip_suffix('Z') {
            (c, 0)
        } else if let Some(i) = time.rfind(['+', '-']) {
            let (c, z) = time.split_at(i);
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, mi) = z[1..].split_once(':')?;
            (c, sign * (num(h)? * 3600 + num(mi)? * 60))
        } else {
            (time, 0)
        };
        let mut c = clock.splitn(3, ':');
        let (h, mi) = (num(c.next()?)?, num(c.next()?)?);
        let sec = c.next()?;
        let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
        let frac_us = if frac.is_empty() {
            0
        } else {
            let digits: String = frac.chars().chain("000000".chars()).take(6).collect();
            num(&digits)?
        };
        let s = num(whole)?;
        if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 24 || mi > 59 || s > 60 {
            return None;
        }
        let secs = days_from_civil(y, m, day) * 86_400 + h * 3600 + mi * 60 + s - offset_s;
        Some(secs * 1_000_000 + frac_us)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use zerocast_core::Timescale;

    use super::*;

    fn video(ticks: i64) -> Timestamp {
        Timestamp::new(ticks, Timescale::VIDEO)
    }

    fn q(msn: Option<u64>, part: Option<u32>) -> Query {
        Query {
            msn,
            part,
            skip: Skip::No,
        }
    }

    fn playlist_with(segments: u64, parts_per_segment: u32) -> MediaPlaylist {
        let mut p = MediaPlaylist::new(PlaylistConfig::default());
        for s in 0..segments {
            for i in 0..parts_per_segment {
                p.push_part(
                    0.2,
                    i == 0,
                    1_700_000_000_000 + s as i64 * 2000,
                    video(s as i64 * 180_000 + i64::from(i) * 18_000),
                    0,
                    false,
                );
            }
            p.close_segment();
        }
        p
    }

    #[test]
    fn pdt_formats_utc() {
        assert_eq!(Pdt(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Pdt(1_700_000_000_123).to_string(),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(Pdt(951_782_400_000).to_string(), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn secs_trim() {
        assert_eq!(Secs(0.2).to_string(), "0.2");
        assert_eq!(Secs(2.0).to_string(), "2");
        assert_eq!(Secs(1.966_67).to_string(), "1.96667");
    }

    #[test]
    fn reload_rules() {
        let mut p = playlist_with(3, 10); // segments 0..=2 complete, parts 0..=9 each
        p.push_part(0.2, true, 0, video(540_000), 0, false); // segment 3 open with part 0
        assert_eq!(p.reload(&q(None, None)), Reload::Ready);
        assert!(matches!(p.reload(&q(None, Some(1))), Reload::BadRequest(_)));
        assert_eq!(p.reload(&q(Some(2), None)), Reload::Ready);
        assert_eq!(p.reload(&q(Some(3), None)), Reload::Wait);
        assert_eq!(p.reload(&q(Some(3), Some(0))), Reload::Ready);
        assert_eq!(p.reload(&q(Some(3), Some(1))), Reload::Wait);
        assert_eq!(p.reload(&q(Some(1), Some(40))), Reload::Ready);
        assert_eq!(p.reload(&q(Some(4), Some(0))), Reload::Wait);
        assert_eq!(p.reload(&q(Some(5), Some(0))), Reload::Wait);
        assert!(matches!(
            p.reload(&q(Some(6), Some(0))),
            Reload::BadRequest(_)
        ));
        assert!(matches!(
            p.reload(&q(Some(3), Some(17))),
            Reload::BadRequest(_)
        ));
        assert!(matches!(
            p.reload(&q(Some(4), Some(16))),
            Reload::BadRequest(_)
        ));
        p.end();
        assert_eq!(p.reload(&q(Some(5), Some(3))), Reload::Ready);
    }

    #[test]
    fn window_slides_and_prunes_parts() {
        let p = playlist_with(25, 10);
        assert_eq!(p.media_sequence(), 5);
        let with_parts = p.segments().filter(|s| !s.parts.is_empty()).count();
        assert_eq!(with_parts, 4);
    }

    #[test]
    fn delta_update_skips_old_segments() {
        let p = playlist_with(20, 10);
        let mut full = String::new();
        p.render(&mut full, Skip::No).unwrap();
        let mut delta = String::new();
        p.render(&mut delta, Skip::Yes).unwrap();
        // 6 * TD(2) = 12 s stay: the newest 6 segments; 14 are skipped.
        assert!(
            delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=14\n"),
            "{delta}"
        );
        assert_eq!(delta.matches("#EXTINF").count(), 6);
        assert_eq!(full.matches("#EXTINF").count(), 20);
        assert!(delta.contains("#EXT-X-VERSION:9"));
    }

    #[test]
    fn reload_before_the_first_part() {
        let p = MediaPlaylist::new(PlaylistConfig::default());
        assert_eq!(p.reload(&q(None, None)), Reload::Ready);
        assert_eq!(p.reload(&q(Some(0), None)), Reload::Wait);
        // Up to two segments ahead, within the advance part limit (3 / 0.2 s = 15 parts).
        assert_eq!(p.reload(&q(Some(2), Some(15))), Reload::Wait);
        assert!(matches!(
            p.reload(&q(Some(2), Some(16))),
            Reload::BadRequest(_)
        ));
        assert!(matches!(p.reload(&q(Some(3), None)), Reload::BadRequest(_)));
        // Nothing to list but the header; no preload hint before the first part.
        let mut text = String::new();
        p.render(&mut text, Skip::No).unwrap();
        assert!(!text.contains("#EXT-X-PRELOAD-HINT"), "{text}");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{text}");
    }

    #[test]
    fn reload_when_the_last_segment_is_complete() {
        let p = playlist_with(2, 10); // segments 0 and 1 complete, no open segment
        assert_eq!(p.reload(&q(Some(1), None)), Reload::Ready);
        assert_eq!(p.reload(&q(Some(1), Some(9))), Reload::Ready);
        // Segment 1 ended with 10 parts: part 10 of it will never exist, the next part opens
        // segment 2, so the request waits for that.
        assert_eq!(p.reload(&q(Some(1), Some(10))), Reload::Wait);
        assert_eq!(p.reload(&q(Some(2), None)), Reload::Wait);
        assert_eq!(p.reload(&q(Some(2), Some(0))), Reload::Wait);
    }

    #[test]
    fn advance_part_limit_is_three_for_parts_of_a_second_or_more() {
        let mut p = MediaPlaylist::new(PlaylistConfig {
            part_target: 1.0,
            segment_target: 4.0,
            ..PlaylistConfig::default()
        });
        assert_eq!(p.config().part_target, 1.0);
        p.push_part(1.0, true, 0, video(0), 0, false);
        assert_eq!(p.reload(&q(Some(0), Some(3))), Reload::Wait);
        assert!(matches!(
            p.reload(&q(Some(0), Some(4))),
            Reload::BadRequest(_)
        ));
        assert_eq!(p.part_hold_back(), 3.0);
        assert_eq!(p.target_duration(), 4);
    }

    #[test]
    fn discontinuities_that_slide_out_are_counted() {
        let mut p = MediaPlaylist::new(PlaylistConfig {
            window: 3,
            part_segments: 1,
            ..PlaylistConfig::default()
        });
        let mut versions = vec![p.version()];
        // Segments 0..=5; 1 and 4 follow a publisher change.
        for s in 0..6 {
            p.push_part(
                2.0,
                true,
                1_700_000_000_000 + s * 2000,
                video(s * 180_000),
                1,
                s == 1 || s == 4,
            );
            versions.push(p.version());
            p.close_segment();
            versions.push(p.version());
        }
        assert!(versions.windows(2).all(|w| w[1] > w[0]), "{versions:?}");
        // The window holds 3..=5: segment 1's discontinuity slid out, segment 4's is listed.
        assert_eq!(p.media_sequence(), 3);
        let mut text = String::new();
        p.render(&mut text, Skip::No).unwrap();
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        let seg4 = text.find("seg4.m4s").unwrap();
        let disc = text.find("#EXT-X-DISCONTINUITY\n").unwrap();
        let seg3 = text.find("seg3.m4s").unwrap();
        assert!(seg3 < disc && disc < seg4, "{text}");
        // Only the newest segment keeps its parts.
        assert_eq!(text.matches("#EXT-X-PART:").count(), 1, "{text}");
    }

    #[test]
    fn pdt_before_1970() {
        assert_eq!(Pdt(-1).to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!(Pdt(-86_400_000).to_string(), "1969-12-31T00:00:00.000Z");
    }
}
