//! The per-stream packager: frames in, init segments, CMAF chunks, parts and segments out.
//!
//! ```text
//! handle_track / handle_frame(now) ──► Packager ──► poll_event: Init, PartStarted, Chunk,
//!                                        │                      PartDone, SegmentDone, Ended
//!                                        └─► playlist(): the MediaPlaylist value
//! ```
//!
//! Each video frame becomes one CMAF chunk (a `moof`+`mdat` pair) carrying that frame and the
//! audio frames that arrived since the previous chunk, so a part being written can be sent to
//! viewers chunk by chunk. A video frame's duration is only known when the next one arrives,
//! so each frame is held back by exactly one frame interval.
//!
//! Parts close before they would exceed the part target, and at every keyframe (so each
//! keyframe starts an `INDEPENDENT=YES` part). Segments close at the first keyframe once they
//! have reached 90% of the segment target.
//!
//! Contract: after each `handle_*` call, drain [`Packager::poll_event`] until it returns `None`;
//! the playlist returned by [`Packager::playlist`] then matches the events drained.

use std::collections::VecDeque;

use bytes::Bytes;
use zerocast_core::{Frame, Timescale, Timestamp, Track, TrackKind};

use crate::fmp4::{self, Fragment, Sample, TrackRun};
use crate::playlist::{MediaPlaylist, PlaylistConfig};

/// Audio frames of an audio-only stream gathered into one chunk.
const AUDIO_ONLY_CHUNK_FRAMES: usize = 4;
/// With no video config after this much audio, the stream starts as audio-only.
const AUDIO_ONLY_AFTER_MS: i64 = 1000;

/// What the packager produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A new init segment (`init{version}.mp4`).
    Init {
        /// Its version, as named in `EXT-X-MAP`.
        version: u32,
        /// `ftyp` + `moov`.
        data: Bytes,
        /// One init segment per track (for DASH, which wants one media component per
        /// Representation), by track id.
        tracks: Vec<(u32, Bytes)>,
    },
    /// Part `id` has begun; its chunks follow.
    PartStarted {
        /// Stream-wide part number.
        id: u64,
        /// The segment it belongs to.
        msn: u64,
        /// This part opens a segment that starts a new stretch of timeline after a
        /// discontinuity or with a new init segment (a new DASH Period).
        new_period: bool,
    },
    /// A chunk appended to part `part`.
    Chunk {
        /// The part this chunk belongs to.
        part: u64,
        /// The `moof`+`mdat` bytes.
        fragment: Fragment,
        /// The same chunk split by track, by track id: a one-track `moof` over the same sample
        /// `Bytes` (for DASH). A track without samples in this chunk is absent.
        tracks: Vec<(u32, Fragment)>,
    },
    /// Part `id` is complete and listed in the playlist.
    PartDone {
        /// Stream-wide part number.
        id: u64,
    },
    /// Segment `msn` is complete: the concatenation of parts `first_part..=last_part`.
    SegmentDone {
        /// Media sequence number.
        msn: u64,
        /// Its first part.
        first_part: u64,
        /// Its last part.
        last_part: u64,
    },
    /// The stream has ended: the playlist carries `EXT-X-ENDLIST`.
    Ended,
}

/// Packager parameters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PackagerConfig {
    /// Playlist parameters (part and segment targets, window).
    pub playlist: PlaylistConfig,
}

#[derive(Debug)]
struct OpenPart {
    id: u64,
    duration: f64,
    independent: bool,
}

#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    first_part: u64,
    duration: f64,
    program_date_time: i64,
    /// Decode time of its first sample (the first chunk's `tfdt`).
    start: Timestamp,
    init_version: u32,
    discontinuity: bool,
}

/// Packages one stream. See the module docs for the calling contract.
#[derive(Debug)]
pub struct Packager {
    config: PackagerConfig,
    video: Option<Track>,
    audio: Option<Track>,
    /// Tracks in the current init segment.
    init_tracks: Vec<Track>,
    init_version: u32,
    /// The track set or a configuration changed: re-initialise at the next random access point.
    reinit: bool,
    started: bool,
    pending_video: Option<Frame>,
    last_video_duration: i64,
    pending_audio: Vec<Sample>,
    /// Decode time of the first pending audio sample, and of the next audio sample.
    audio_base: i64,
    audio_clock: Option<i64>,
    first_audio_ms: Option<i64>,
    sequence: u32,
    part: Option<OpenPart>,
    segment: Option<OpenSegment>,
    next_msn: u64,
    /// Wall-clock Unix ms minus media ms: turns media time into program date time.
    anchor_ms: Option<i64>,
    /// Set by a publisher change: the next segment is marked as a discontinuity.
    discontinuity: bool,
    /// Added to incoming timestamps, per track kind ([`kind_index`]), so that a new publisher
    /// continues the timeline.
    offsets: [Option<Timestamp>; 2],
    /// After a publisher change: the kind's next accepted frame sets its offset.
    rebasing: [bool; 2],
    /// End of each kind's media so far (last sample's decode time plus its duration).
    ends: [Option<Timestamp>; 2],
    /// Where the current publisher's video starts on the timeline (its first keyframe).
    stretch_start: Option<Timestamp>,
    playlist: MediaPlaylist,
    events: VecDeque<Event>,
    dropped: u64,
}

impl Packager {
    /// A packager with no tracks yet.
    pub fn new(config: PackagerConfig) -> Self {
        Self {
            config,
            video: None,
            audio: None,
            init_tracks: Vec::new(),
            init_version: 0,
            reinit: false,
            started: false,
            pending_video: None,
            last_video_duration: 0,
            pending_audio: Vec::new(),
            audio_base: 0,
            audio_clock: None,
            first_audio_ms: None,
            sequence: 0,
            part: None,
            segment: None,
            next_msn: 0,
            anchor_ms: None,
            discontinuity: false,
            offsets: [None; 2],
            rebasing: [false; 2],
            ends: [None; 2],
            stretch_start: None,
            playlist: MediaPlaylist::new(config.playlist),
            events: VecDeque::new(),
            dropped: 0,
        }
    }

    /// The playlist as of the events drained so far.
    pub fn playlist(&self) -> &MediaPlaylist {
        &self.playlist
    }

    /// The tracks of the current init segment.
    pub fn tracks(&self) -> &[Track] {
        &self.init_tracks
    }

    /// Frames dropped because they came before a usable starting point.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A track's (new) decoder configuration.
    pub fn handle_track(&mut self, track: Track) {
        let slot = match track.kind() {
            TrackKind::Video => &mut self.video,
            TrackKind::Audio => &mut self.audio,
        };
        if slot.as_ref() == Some(&track) {
            return;
        }
        *slot = Some(track);
        if self.started {
            let wanted = self.wanted_tracks();
            if wanted != self.init_tracks {
                self.reinit = true;
            }
        }
    }

    fn wanted_tracks(&self) -> Vec<Track> {
        self.video
            .iter()
            .chain(self.audio.iter())
            .cloned()
            .collect()
    }

    /// A coded frame, with the wall-clock time it arrived (Unix ms) for `PROGRAM-DATE-TIME`.
    pub fn handle_frame(&mut self, frame: Frame, now_unix_ms: i64) {
        if self.playlist.is_ended() {
            return;
        }
        let is_video = self.video.as_ref().is_some_and(|t| t.id() == frame.track);
        let is_audio = self.audio.as_ref().is_some_and(|t| t.id() == frame.track);
        if !self.started {
            if is_video && frame.keyframe {
                self.start();
            } else if is_audio && self.video.is_none() {
                let ms = frame.dts.as_millis();
                let first = *self.first_audio_ms.get_or_insert(ms);
                if ms - first >= AUDIO_ONLY_AFTER_MS {
                    self.start();
                }
            }
            if !self.started {
                self.dropped += 1;
                return;
            }
        }
        let frame = match (is_video, is_audio) {
            (true, _) => self.rebase(frame, TrackKind::Video),
            (_, true) => self.rebase(frame, TrackKind::Audio),
            _ => frame,
        };
        if self.anchor_ms.is_none() {
            self.anchor_ms = Some(now_unix_ms - frame.dts.as_millis());
        }
        let in_init = |t: &Option<Track>| {
            t.as_ref()
                .is_some_and(|t| t.id() == frame.track && self.init_tracks.contains(t))
        };
        if is_video && in_init(&self.video) {
            self.handle_video(frame);
        } else if is_video && self.reinit && frame.keyframe {
            // The video configuration changed: its first keyframe closes the segment and
            // starts the new init segment (frames before it cannot be decoded with either).
            self.handle_video(frame);
        } else if is_audio && in_init(&self.audio) {
            self.handle_audio(frame);
        } else if is_audio && self.reinit && !self.has_video() {
            // An audio-only stream whose configuration changed: every frame is a sync point.
            self.flush_chunk(None);
            self.restart_init();
            self.handle_audio(frame);
        } else {
            self.dropped += 1;
        }
    }

    /// Moves a frame onto the stream's timeline. After a publisher change, the first accepted
    /// frame of each kind sets that kind's offset, in that track's own ticks: video continues
    /// exactly where the old video ended, and audio takes the same offset (the new publisher's
    /// own lip sync), or, for a publisher without video, continues where the old audio ended.
    fn rebase(&mut self, mut frame: Frame, kind: TrackKind) -> Frame {
        let k = kind_index(kind);
        let scale = frame.dts.scale();
        if self.rebasing[k] {
            self.rebasing[k] = false;
            let to =
                |end: Option<Timestamp>| end.map(|e| e.rescale(scale).ticks() - frame.dts.ticks());
            let video = kind_index(TrackKind::Video);
            let off = match kind {
                TrackKind::Video => to(self.ends[video].or(self.ends[1 - video])),
                TrackKind::Audio if !self.rebasing[video] && self.has_video() => {
                    to(self.stretch_start)
                }
                TrackKind::Audio => to(self.ends[k].or(self.ends[video])),
            };
            self.offsets[k] = off.map(|o| Timestamp::new(o, scale));
            if kind == TrackKind::Video {
                let start = frame.dts.ticks() + off.unwrap_or(0);
                self.stretch_start = Some(Timestamp::new(start, scale));
            }
        }
        if let Some(off) = self.offsets[k] {
            let off = off.rescale(scale).ticks();
            frame.dts = Timestamp::new(frame.dts.ticks() + off, scale);
            frame.pts = Timestamp::new(frame.pts.ticks() + off, frame.pts.scale());
        }
        frame
    }

    fn has_video(&self) -> bool {
        self.init_tracks
            .iter()
            .any(|t| t.kind() == TrackKind::Video)
    }

    fn start(&mut self) {
        self.started = true;
        if self.init_version == 0 || self.wanted_tracks() != self.init_tracks {
            self.restart_init();
        } else {
            self.audio_clock = None;
        }
    }

    fn restart_init(&mut self) {
        self.init_tracks = self.wanted_tracks();
        self.init_version += 1;
        self.reinit = false;
        self.audio_clock = None;
        let tracks = self
            .init_tracks
            .iter()
            .map(|t| (t.id().0, fmp4::init_segment(std::slice::from_ref(t))))
            .collect();
        self.events.push_back(Event::Init {
            version: self.init_version,
            data: fmp4::init_segment(&self.init_tracks),
            tracks,
        });
    }

    fn handle_video(&mut self, frame: Frame) {
        if let Some(prev) = self.pending_video.take() {
            let mut duration = frame.dts.ticks() - prev.dts.ticks();
            if duration <= 0 {
                duration = self.last_video_duration.max(1);
            }
            self.last_video_duration = duration;
            self.emit_video(prev, duration);
        }
        if frame.keyframe && self.reinit {
            self.flush_chunk(None);
            self.close_segment();
            self.restart_init();
        }
        self.pending_video = Some(frame);
    }

    fn handle_audio(&mut self, frame: Frame) {
        // Every audio codec RTMP carries here (AAC) has 1024 samples per frame, and the audio
        // timescale is the sample rate.
        let step = 1024i64;
        let dts = frame.dts.ticks();
        let clock = match self.audio_clock {
            // Stay on the 1024-sample grid unless the publisher's clock drifts by two frames.
            Some(c) if (dts - c).abs() < 2 * step || !self.pending_audio.is_empty() => c,
            _ => dts,
        };
        if self.pending_audio.is_empty() {
            self.audio_base = clock;
        }
        self.audio_clock = Some(clock + step);
        self.ends[kind_index(TrackKind::Audio)] =
            Some(Timestamp::new(clock + step, frame.dts.scale()));
        self.pending_audio.push(Sample {
            duration: step as u32,
            composition_offset: 0,
            keyframe: true,
            data: frame.data,
        });
        if !self.has_video() && self.pending_audio.len() >= AUDIO_ONLY_CHUNK_FRAMES {
            self.emit_audio_only();
        }
    }

    fn seconds(&self, ticks: i64, kind: TrackKind) -> f64 {
        let scale = self
            .init_tracks
            .iter()
            .find(|t| t.kind() == kind)
            .map_or(Timescale::VIDEO, Track::timescale);
        ticks as f64 / f64::from(scale.ticks())
    }

    /// Closes the part or segment as the next chunk requires, and opens what is missing.
    fn boundary(&mut self, keyframe: bool, duration: f64, start: Timestamp) {
        let cfg = self.config.playlist;
        if keyframe {
            let seg_full = self
                .segment
                .as_ref()
                .is_some_and(|s| s.duration >= 0.9 * cfg.segment_target);
            if seg_full {
                self.close_segment();
            } else if self.part.is_some() {
                self.close_part();
            }
        } else if let Some(p) = &self.part {
            if p.duration + duration > cfg.part_target + 1e-9 {
                self.close_part();
            }
        }
        let mut new_period = false;
        if self.segment.is_none() {
            // A new Period after the first: the playlist's own rule for a new stretch.
            new_period = self.next_msn > 0
                && self
                    .playlist
                    .starts_timeline(self.init_version, self.discontinuity);
            self.segment = Some(OpenSegment {
                msn: self.next_msn,
                first_part: self.playlist.next_part_id(),
                duration: 0.0,
                program_date_time: self.anchor_ms.unwrap_or(0) + start.as_millis(),
                start,
                init_version: self.init_version,
                discontinuity: std::mem::take(&mut self.discontinuity),
            });
            self.next_msn += 1;
        }
        if self.part.is_none() {
            let id = self.playlist.next_part_id();
            let msn = self.segment.as_ref().map_or(0, |s| s.msn);
            self.part = Some(OpenPart {
                id,
                duration: 0.0,
                independent: keyframe,
            });
            self.events.push_back(Event::PartStarted {
                id,
                msn,
                new_period,
            });
        }
    }

    fn emit_video(&mut self, frame: Frame, duration: i64) {
        let secs = self.seconds(duration, TrackKind::Video);
        self.ends[kind_index(TrackKind::Video)] = Some(Timestamp::new(
            frame.dts.ticks() + duration,
            frame.dts.scale(),
        ));
        self.boundary(frame.keyframe, secs, frame.dts);
        let video = [Sample {
            duration: duration as u32,
            composition_offset: frame.composition_offset() as i32,
            keyframe: frame.keyframe,
            data: frame.data,
        }];
        let base = frame.dts.ticks().max(0) as u64;
        self.flush_chunk(Some((frame.track.0, base, &video[..])));
        self.add_duration(secs);
    }

    fn emit_audio_only(&mut self) {
        let ticks: i64 = self
            .pending_audio
            .iter()
            .map(|s| i64::from(s.duration))
            .sum();
        let secs = self.seconds(ticks, TrackKind::Audio);
        let start = Timestamp::new(
            self.audio_base,
            self.audio
                .as_ref()
                .map_or(Timescale::MILLIS, Track::timescale),
        );
        self.boundary(true, secs, start);
        self.flush_chunk(None);
        self.add_duration(secs);
    }

    fn add_duration(&mut self, secs: f64) {
        if let Some(p) = &mut self.part {
            p.duration += secs;
        }
        if let Some(s) = &mut self.segment {
            s.duration += secs;
        }
    }

    /// Writes one chunk: the given video run (if any) and every pending audio sample.
    fn flush_chunk(&mut self, video: Option<(u32, u64, &[Sample])>) {
        let Some(part) = self.part.as_ref().map(|p| p.id) else {
            self.pending_audio.clear();
            return;
        };
        let audio = std::mem::take(&mut self.pending_audio);
        let mut runs = Vec::with_capacity(2);
        if let Some((track_id, base, samples)) = video {
            runs.push(TrackRun {
                track_id,
                base_decode_time: base,
                samples,
            });
        }
        if !audio.is_empty() {
            if let Some(t) = &self.audio {
                runs.push(TrackRun {
                    track_id: t.id().0,
                    base_decode_time: self.audio_base.max(0) as u64,
                    samples: &audio,
                });
            }
        }
        if runs.is_empty() {
            return;
        }
        self.sequence = self.sequence.wrapping_add(1);
        let fragment = fmp4::fragment(self.sequence, &runs);
        let tracks = runs
            .iter()
            .map(|r| {
                (
                    r.track_id,
                    fmp4::fragment(self.sequence, std::slice::from_ref(r)),
                )
            })
            .collect();
        self.events.push_back(Event::Chunk {
            part,
            fragment,
            tracks,
        });
    }

    fn close_part(&mut self) {
        let Some(part) = self.part.take() else {
            return;
        };
        let Some(seg) = &self.segment else {
            return;
        };
        let pushed = self.playlist.push_part(
            part.duration,
            part.independent,
            seg.program_date_time,
            seg.start,
            seg.init_version,
            seg.discontinuity,
        );
        debug_assert_eq!(pushed.id, part.id);
        self.events.push_back(Event::PartDone { id: part.id });
    }

    fn close_segment(&mut self) {
        self.close_part();
        let Some(seg) = self.segment.take() else {
            return;
        };
        let last_part = self.playlist.next_part_id().saturating_sub(1);
        if self.playlist.close_segment().is_some() {
            self.events.push_back(Event::SegmentDone {
                msn: seg.msn,
                first_part: seg.first_part,
                last_part,
            });
        }
    }

    /// Writes out the held-back video frame and pending audio, closing the segment.
    fn flush(&mut self) {
        if let Some(prev) = self.pending_video.take() {
            let mut d = self.last_video_duration.max(1);
            // End where both tracks have media: a last video frame reaching past the audio
            // is cut at the audio's end, where the next stretch starts (a player re-anchors
            // a discontinuity at its first sample, so audio ending early would leave a hole).
            if let Some(audio_end) = self.ends[kind_index(TrackKind::Audio)] {
                let audio_end = audio_end.rescale(prev.dts.scale()).ticks();
                if audio_end > prev.dts.ticks() && audio_end < prev.dts.ticks() + d {
                    d = audio_end - prev.dts.ticks();
                }
            }
            self.emit_video(prev, d);
        }
        if !self.pending_audio.is_empty() {
            if self.has_video() {
                self.flush_chunk(None);
            } else {
                self.emit_audio_only();
            }
        }
        self.close_segment();
    }

    /// The publisher went away but may come back: finish the current segment and continue the
    /// timeline from here with the next publisher, after an `EXT-X-DISCONTINUITY`.
    pub fn handle_discontinuity(&mut self) {
        if self.playlist.is_ended() {
            return;
        }
        self.flush();
        self.started = false;
        self.first_audio_ms = None;
        self.audio_clock = None;
        self.discontinuity = self.next_msn > 0;
        // The next publisher's first frames continue the timeline (see `rebase`), and the
        // wall clock they arrive at anchors its program date time.
        self.rebasing = [true; 2];
        self.anchor_ms = None;
        // The new publisher re-sends its configurations; a changed one gets a new init.
        self.reinit = false;
    }

    /// The stream is over: finish it and write `EXT-X-ENDLIST`.
    pub fn handle_end(&mut self) {
        if self.playlist.is_ended() {
            return;
        }
        self.flush();
        self.playlist.end();
        self.events.push_back(Event::Ended);
    }
}

/// Index of a track kind in the per-kind arrays.
fn kind_index(kind: TrackKind) -> usize {
    match kind {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}
