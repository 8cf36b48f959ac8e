//! Reading LL-HLS media playlists back and checking their invariants.
//!
//! Used by the end-to-end tests (on every playlist version a client sees) and by the load
//! generator. It checks what this server promises, which is stricter than the spec in places:
//! parts never exceed `PART-TARGET`, `PART-HOLD-BACK` is at least three part targets, and
//! every segment opens with an independent part.

/// One `EXT-X-PART`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPart {
    /// `DURATION`, seconds.
    pub duration: f64,
    /// `URI`.
    pub uri: String,
    /// `INDEPENDENT=YES`.
    pub independent: bool,
}

/// One media segment (complete, or the trailing parts of the one being written).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedSegment {
    /// Media sequence number.
    pub msn: u64,
    /// `EXTINF` duration; `None` for the segment being written.
    pub duration: Option<f64>,
    /// Segment URI; `None` for the segment being written.
    pub uri: Option<String>,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// `EXT-X-PROGRAM-DATE-TIME` as written.
    pub program_date_time: Option<String>,
    /// The `EXT-X-MAP` URI in force.
    pub map: Option<String>,
    /// Listed parts.
    pub parts: Vec<ParsedPart>,
}

/// A parsed media playlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedPlaylist {
    /// `EXT-X-VERSION`.
    pub version: Option<u32>,
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: Option<u64>,
    /// `EXT-X-MEDIA-SEQUENCE`.
    pub media_sequence: u64,
    /// `EXT-X-PART-INF:PART-TARGET`.
    pub part_target: Option<f64>,
    /// `CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `PART-HOLD-BACK`.
    pub part_hold_back: Option<f64>,
    /// `CAN-SKIP-UNTIL`.
    pub can_skip_until: Option<f64>,
    /// `EXT-X-SKIP:SKIPPED-SEGMENTS`.
    pub skipped: u64,
    /// Segments in order.
    pub segments: Vec<ParsedSegment>,
    /// `EXT-X-PRELOAD-HINT` URI.
    pub preload_hint: Option<String>,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
}

impl ParsedPlaylist {
    /// The last listed part as (msn, index in its segment).
    pub fn last_part(&self) -> Option<(u64, usize)> {
        let seg = self.segments.iter().rev().find(|s| !s.parts.is_empty())?;
        Some((seg.msn, seg.parts.len() - 1))
    }

    /// The next part a client would block for, as `(_HLS_msn, _HLS_part)`.
    pub fn next_part(&self) -> Option<(u64, usize)> {
        let last = self.segments.last()?;
        if last.uri.is_none() {
            Some((last.msn, last.parts.len()))
        } else {
            Some((last.msn + 1, 0))
        }
    }
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    // Attribute lists are NAME=VALUE pairs separated by commas; quoted values hold no quotes.
    let mut rest = line;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// Parses a media playlist.
pub fn parse(text: &str) -> Result<ParsedPlaylist, String> {
    let mut lines = text.lines();
    if lines.next() != Some("#EXTM3U") {
        return Err("first line is not #EXTM3U".into());
    }
    let mut p = ParsedPlaylist::default();
    let mut cur = ParsedSegment::default();
    let mut map: Option<String> = None;
    let mut msn = None;
    let num = |s: &str, what: &str| -> Result<f64, String> {
        s.parse::<f64>().map_err(|_| format!("bad {what}: {s:?}"))
    };
    for line in lines {
        let line = line.trim_end();
        if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
            p.version = Some(v.parse().map_err(|_| "bad version")?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_duration = Some(v.parse().map_err(|_| "bad target duration")?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.parse().map_err(|_| "bad media sequence")?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            p.part_target = attr(v, "PART-TARGET")
                .map(|x| num(x, "PART-TARGET"))
                .transpose()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            p.can_block_reload = attr(v, "CAN-BLOCK-RELOAD") == Some("YES");
            p.part_hold_back = attr(v, "PART-HOLD-BACK")
                .map(|x| num(x, "PART-HOLD-BACK"))
                .transpose()?;
            p.can_skip_until = attr(v, "CAN-SKIP-UNTIL")
                .map(|x| num(x, "CAN-SKIP-UNTIL"))
                .transpose()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
            p.skipped = attr(v, "SKIPPED-SEGMENTS")
                .and_then(|x| x.parse().ok())
                .ok_or("bad EXT-X-SKIP")?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            map = attr(v, "URI").map(str::to_owned);
        } else if line == "#EXT-X-DISCONTINUITY" {
            cur.discontinuity = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            cur.program_date_time = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            cur.parts.push(ParsedPart {
                duration: num(
                    attr(v, "DURATION").ok_or("part without DURATION")?,
                    "DURATION",
                )?,
                uri: attr(v, "URI").ok_or("part without URI")?.to_owned(),
                independent: attr(v, "INDEPENDENT") == Some("YES"),
            });
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            cur.duration = Some(num(
                v.trim_end_matches(',').split(',').next().unwrap_or(""),
                "EXTINF",
            )?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            p.preload_hint = attr(v, "URI").map(str::to_owned);
        } else if line == "#EXT-X-ENDLIST" {
            p.ended = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            let n = *msn.get_or_insert(p.media_sequence + p.skipped);
            cur.msn = n;
            cur.uri = Some(line.to_owned());
            cur.map = map.clone();
            p.segments.push(std::mem::take(&mut cur));
            msn = Some(n + 1);
        }
    }
    if !cur.parts.is_empty() {
        cur.msn = msn.unwrap_or(p.media_sequence + p.skipped);
        cur.map = map;
        p.segments.push(cur);
    }
    Ok(p)
}

/// Every way `p` breaks this server's promises; empty when it keeps them all.
pub fn violations(p: &ParsedPlaylist) -> Vec<String> {
    let mut v = Vec::new();
    let Some(td) = p.target_duration else {
        return vec!["no EXT-X-TARGETDURATION".into()];
    };
    let Some(pt) = p.part_target else {
        return vec!["no EXT-X-PART-INF".into()];
    };
    if p.version.is_none() {
        v.push("no EXT-X-VERSION".into());
    }
    if !p.can_block_reload {
        v.push("CAN-BLOCK-RELOAD is not YES".into());
    }
    match p.part_hold_back {
        Some(h) if h + 1e-9 >= 3.0 * pt => {}
        h => v.push(format!("PART-HOLD-BACK {h:?} below 3 x PART-TARGET {pt}")),
    }
    match p.can_skip_until {
        Some(s) if s + 1e-9 >= 6.0 * td as f64 => {}
        s => v.push(format!(
            "CAN-SKIP-UNTIL {s:?} below 6 x TARGETDURATION {td}"
        )),
    }
    if !p.ended && p.preload_hint.is_none() {
        v.push("live playlist without EXT-X-PRELOAD-HINT".into());
    }
    for (i, seg) in p.segments.iter().enumerate() {
        if seg.map.is_none() {
            v.push(format!("segment {} has no EXT-X-MAP", seg.msn));
        }
        if i == 0 && seg.program_date_time.is_none() {
            v.push("first segment has no EXT-X-PROGRAM-DATE-TIME".into());
        }
        if let Some(d) = seg.duration {
            if d.round() as u64 > td {
                v.push(format!(
                    "segment {} lasts {d} s > TARGETDURATION {td}",
                    seg.msn
                ));
            }
        }
        for (j, part) in seg.parts.iter().enumerate() {
            // Durations are printed with five decimals.
            if part.duration > pt + 1e-4 {
                v.push(format!(
                    "part {} of segment {} lasts {} s > PART-TARGET {pt}",
                    j, seg.msn, part.duration
                ));
            }
        }
        if let Some(first) = seg.parts.first() {
            if !first.independent {
                v.push(format!(
                    "segment {} does not open with an independent part",
                    seg.msn
                ));
            }
        }
        if let (Some(d), false) = (seg.duration, seg.parts.is_empty()) {
            let sum: f64 = seg.parts.iter().map(|p| p.duration).sum();
            if (sum - d).abs() > 1e-3 * seg.parts.len() as f64 {
                v.push(format!(
                    "segment {} lasts {d} s but its parts sum to {sum}",
                    seg.msn
                ));
            }
        }
    }
    v
}

/// How `next` fails to follow `prev` (a later version of the same playlist).
pub fn transition_violations(prev: &ParsedPlaylist, next: &ParsedPlaylist) -> Vec<String> {
    let mut v = Vec::new();
    if next.media_sequence < prev.media_sequence {
        v.push(format!(
            "media sequence went back from {} to {}",
            prev.media_sequence, next.media_sequence
        ));
    }
    if next.target_duration != prev.target_duration {
        v.push(format!(
            "target duration changed from {:?} to {:?}",
            prev.target_duration, next.target_duration
        ));
    }
    for old in prev.segments.iter().filter(|s| s.uri.is_some()) {
        if let Some(new) = next.segments.iter().find(|s| s.msn == old.msn) {
            if new.uri != old.uri || new.duration != old.duration {
                v.push(format!("segment {} changed between versions", old.msn));
            }
        }
    }
    if prev.ended && !next.ended {
        v.push("an ended playlist came back to life".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playlist::{MediaPlaylist, PlaylistConfig};
    use crate::query::Skip;
    use zerocast_core::Timestamp;

    fn ms(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    /// A playlist of `n` complete 2 s segments of ten 0.2 s parts.
    fn complete_segments(n: i64) -> MediaPlaylist {
        let mut pl = MediaPlaylist::new(PlaylistConfig::default());
        for s in 0..n {
            for i in 0..10 {
                let pdt = 1_700_000_000_000 + s * 2000;
                pl.push_part(0.2, i == 0, pdt, ms(s * 2000), 1, false);
            }
            pl.close_segment();
        }
        pl
    }

    #[test]
    fn rendered_playlists_parse_and_pass() {
        let mut pl = complete_segments(8);
        pl.push_part(0.2, true, 0, ms(16_000), 1, false);
        let mut text = String::new();
        pl.render(&mut text, Skip::No).unwrap();
        let p = parse(&text).unwrap();
        assert_eq!(violations(&p), Vec::<String>::new(), "{text}");
        assert_eq!(p.segments.len(), 9);
        assert_eq!(p.last_part(), Some((8, 0)));
        assert_eq!(p.next_part(), Some((8, 1)));
        assert!(p.preload_hint.is_some());
    }

    #[test]
    fn catches_long_parts_and_dependent_starts() {
        let text = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6,CAN-SKIP-UNTIL=12\n\
            #EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MAP:URI=\"init1.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00.000Z\n\
            #EXT-X-PART:DURATION=0.3,URI=\"part0.m4s\"\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.m4s\"\n";
        let v = violations(&parse(text).unwrap());
        assert_eq!(v.len(), 2, "{v:?}");
    }

    /// A live playlist of three 2 s segments and an open one, rendered by `MediaPlaylist`.
    fn live() -> String {
        let mut pl = complete_segments(3);
        pl.push_part(0.2, true, 1_700_000_006_000, ms(6000), 1, false);
        let mut text = String::new();
        pl.render(&mut text, Skip::No).unwrap();
        text
    }

    /// `live()` with the first occurrence of `from` replaced by `to` (which must be there).
    fn edit(from: &str, to: &str) -> String {
        let text = live();
        assert!(text.contains(from), "{from:?} not in\n{text}");
        text.replacen(from, to, 1)
    }

    #[test]
    fn parse_refuses_what_it_cannot_read() {
        let cases = [
            (edit("#EXTM3U\n", ""), "first line is not #EXTM3U"),
            (
                edit("#EXT-X-VERSION:6", "#EXT-X-VERSION:six"),
                "bad version",
            ),
            (
                edit("#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:-2"),
                "bad target duration",
            ),
            (
                edit("#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-MEDIA-SEQUENCE:x"),
                "bad media sequence",
            ),
            (
                edit("PART-TARGET=0.2", "PART-TARGET=fast"),
                "bad PART-TARGET: \"fast\"",
            ),
            (
                edit("PART-HOLD-BACK=0.6", "PART-HOLD-BACK=?"),
                "bad PART-HOLD-BACK: \"?\"",
            ),
            (
                edit("CAN-SKIP-UNTIL=12", "CAN-SKIP-UNTIL=?"),
                "bad CAN-SKIP-UNTIL: \"?\"",
            ),
            (edit("#EXTINF:2,", "#EXTINF:two,"), "bad EXTINF: \"two\""),
            (
                edit("DURATION=0.2,URI", "LENGTH=0.2,URI"),
                "part without DURATION",
            ),
            (
                edit(",URI=\"part0.m4s\"", ",X=\"part0.m4s\""),
                "part without URI",
            ),
            (
                edit("#EXTM3U\n", "#EXTM3U\n#EXT-X-SKIP:SKIPPED=1\n"),
                "bad EXT-X-SKIP",
            ),
        ];
        for (text, err) in cases {
            assert_eq!(parse(&text), Err(err.to_owned()), "{text}");
        }
    }

    #[test]
    fn violations_name_each_broken_promise() {
        let live = parse(&live()).unwrap();
        assert_eq!(violations(&live), Vec::<String>::new());
        let cases = [
            (
                edit("#EXT-X-TARGETDURATION:2\n", ""),
                "no EXT-X-TARGETDURATION",
            ),
            (
                edit("#EXT-X-PART-INF:PART-TARGET=0.2\n", ""),
                "no EXT-X-PART-INF",
            ),
            (edit("#EXT-X-VERSION:6\n", ""), "no EXT-X-VERSION"),
            (
                edit("CAN-BLOCK-RELOAD=YES", "CAN-BLOCK-RELOAD=NO"),
                "CAN-BLOCK-RELOAD is not YES",
            ),
            (
                edit("PART-HOLD-BACK=0.6", "PART-HOLD-BACK=0.4"),
                "PART-HOLD-BACK Some(0.4) below 3 x PART-TARGET 0.2",
            ),
            (
                edit("CAN-SKIP-UNTIL=12", "CAN-SKIP-UNTIL=6"),
                "CAN-SKIP-UNTIL Some(6.0) below 6 x TARGETDURATION 2",
            ),
            (
                edit("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part31.m4s\"\n", ""),
                "live playlist without EXT-X-PRELOAD-HINT",
            ),
            (
                edit("#EXT-X-MAP:URI=\"init1.mp4\"\n", ""),
                "segment 0 has no EXT-X-MAP",
            ),
            (
                edit("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n", ""),
                "first segment has no EXT-X-PROGRAM-DATE-TIME",
            ),
            (
                edit("#EXTINF:2,", "#EXTINF:3,"),
                "segment 0 lasts 3 s > TARGETDURATION 2",
            ),
            (
                edit("#EXTINF:2,", "#EXTINF:2.5,"),
                "segment 0 lasts 2.5 s but its parts sum to",
            ),
            (
                edit(
                    "#EXT-X-PART:DURATION=0.2,URI=\"part1.m4s\"",
                    "#EXT-X-PART:DURATION=0.3,URI=\"part1.m4s\"",
                ),
                "part 1 of segment 0 lasts 0.3 s > PART-TARGET 0.2",
            ),
            (
                edit("URI=\"part30.m4s\",INDEPENDENT=YES", "URI=\"part30.m4s\""),
                "segment 3 does not open with an independent part",
            ),
        ];
        for (text, want) in cases {
            let v = violations(&parse(&text).unwrap());
            assert!(
                v.iter().any(|m| m.starts_with(want)),
                "want {want:?}, got {v:?}\n{text}"
            );
        }
        // An ended playlist needs no preload hint.
        let ended = edit(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part31.m4s\"\n",
            "#EXT-X-ENDLIST\n",
        );
        assert_eq!(violations(&parse(&ended).unwrap()), Vec::<String>::new());
    }

    #[test]
    fn transition_violations_between_versions() {
        let prev = parse(&live()).unwrap();
        assert_eq!(transition_violations(&prev, &prev), Vec::<String>::new());
        let cases = [
            (
                edit("#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-MEDIA-SEQUENCE:1"),
                edit("#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-MEDIA-SEQUENCE:0"),
                "media sequence went back from 1 to 0",
            ),
            (
                live(),
                edit("#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:3"),
                "target duration changed from Some(2) to Some(3)",
            ),
            (
                live(),
                edit("seg1.m4s", "seg1b.m4s"),
                "segment 1 changed between versions",
            ),
            (
                edit(
                    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part31.m4s\"\n",
                    "#EXT-X-ENDLIST\n",
                ),
                live(),
                "an ended playlist came back to life",
            ),
        ];
        for (a, b, want) in cases {
            // (Moving the media sequence back also renumbers, so "changes", every segment.)
            let v = transition_violations(&parse(&a).unwrap(), &parse(&b).unwrap());
            assert_eq!(v.first(), Some(&want.to_owned()), "{v:?}");
        }
    }

    #[test]
    fn next_part_after_a_complete_segment_is_the_next_msn() {
        let text = edit(
            "#EXT-X-PART:DURATION=0.2,URI=\"part30.m4s\",INDEPENDENT=YES\n",
            "",
        );
        let p = parse(&text).unwrap();
        // Segments 0..=2 complete, nothing of segment 3 listed.
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.next_part(), Some((3, 0)));
        assert_eq!(p.last_part(), Some((2, 9)));
        assert_eq!(ParsedPlaylist::default().next_part(), None);
        assert_eq!(ParsedPlaylist::default().last_part(), None);
    }
}
