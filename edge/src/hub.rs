//! The stream hub: packaged media of every live stream, shared by all cores.
//!
//! The core that accepted a stream's publisher owns its [`Packager`] (behind an uncontended
//! mutex, so a reconnecting publisher on another core can take it over) and applies its events.
//! After every playlist change it publishes a new immutable [`View`] of the stream (init
//! segments, parts, complete segments, the playlist, and the playlist and MPD rendered once for
//! that version) through an [`ArcSwap`]: viewers on any core load the current `View` without a
//! lock and never wait for the publisher. A part being written grows chunk by chunk the same
//! way (its [`PartMedia`] swaps in a longer list of buffers). Viewers wait on [`Notify`] for the
//! next change: `chunks` fires for every CMAF chunk, `playlist` for every new `View`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use zerocast_core::{Frame, Track, TrackKind};
use zerocast_packager::{dash, Event, MediaPlaylist, Packager, PackagerConfig, Skip};

use crate::memfd::{MediaWriter, Span};
use crate::metrics::{Metrics, StreamMetrics, StreamSeries};
use crate::notify::Notify;
use crate::publish::{Grant, PublisherId};
use crate::sources::{Left, Role, Sources, Step};

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the data here is
/// always left consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which bytes of a part, segment or init segment: the muxed fragments the LL-HLS playlist
/// lists, or one track's (DASH: one media component per Representation). Both are the same
/// sample `Bytes` under different `moof` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Every track in each `moof` (`init{V}.mp4`, `seg{N}.m4s`, `part{N}.m4s`).
    Muxed,
    /// One track, by id (`t{ID}-init{V}.mp4`, `t{ID}-seg{N}.m4s`).
    Track(u32),
}

/// Buffers by [`Layer`]: a handful of layers, searched linearly.
#[derive(Debug, Default, Clone)]
pub struct Layers {
    layers: Vec<(Layer, Vec<Bytes>)>,
    /// Where the muxed layer's bytes are in the stream's memory file, while they are one range.
    file: FileRun,
}

/// Whether a layer's buffers are one range of a memory file (see [`crate::memfd`]).
#[derive(Debug, Default, Clone)]
enum FileRun {
    /// No buffer yet.
    #[default]
    Empty,
    /// All of them, in order.
    Run(Span),
    /// Not one range (heap buffers, or a segment that outgrew its region).
    Scattered,
}

impl FileRun {
    fn then(&self, next: &FileRun) -> FileRun {
        match (self, next) {
            (FileRun::Empty, n) => n.clone(),
            (s, FileRun::Empty) => s.clone(),
            (FileRun::Run(a), FileRun::Run(b)) => {
                a.join(b).map_or(FileRun::Scattered, FileRun::Run)
            }
            _ => FileRun::Scattered,
        }
    }
}

impl Layers {
    /// The buffers of `layer` (empty when it has none).
    pub fn get(&self, layer: Layer) -> &[Bytes] {
        self.layers
            .iter()
            .find(|(l, _)| *l == layer)
            .map_or(&[], |(_, b)| b.as_slice())
    }

    /// Whether `layer` has any buffer.
    pub fn has(&self, layer: Layer) -> bool {
        !self.get(layer).is_empty()
    }

    /// The range of the memory file holding all of `layer`'s bytes, when they are one.
    pub(crate) fn span(&self, layer: Layer) -> Option<&Span> {
        match (&self.file, layer) {
            (FileRun::Run(s), Layer::Muxed) => Some(s),
            _ => None,
        }
    }

    /// Appends `bufs` to `layer`; `span` is where they are in the memory file (muxed only).
    fn extend(&mut self, layer: Layer, bufs: impl IntoIterator<Item = Bytes>, span: Option<Span>) {
        if layer == Layer::Muxed {
            self.file = self
                .file
                .then(&span.map_or(FileRun::Scattered, FileRun::Run));
        }
        match self.layers.iter_mut().find(|(l, _)| *l == layer) {
            Some((_, v)) => v.extend(bufs),
            None => self.layers.push((layer, bufs.into_iter().collect())),
        }
    }

    /// All layers of `other` appended to this one's.
    fn append(&mut self, other: &Layers) {
        for (layer, bufs) in &other.layers {
            match self.layers.iter_mut().find(|(l, _)| l == layer) {
                Some((_, v)) => v.extend(bufs.iter().cloned()),
                None => self.layers.push((*layer, bufs.clone())),
            }
        }
        self.file = self.file.then(&other.file);
    }

    /// Bytes of one layer.
    fn len(&self, layer: Layer) -> usize {
        self.get(layer).iter().map(Bytes::len).sum()
    }
}

/// Complete media that is one range of the stream's memory file: sent with `sendfile(2)` on
/// plain HTTP/1.1, as its buffers (the same bytes, mapped) everywhere else. Holds the media's
/// buffers by one reference, so a response sent from the file clones no `Bytes`.
#[derive(Debug)]
pub(crate) struct FileBody {
    pub(crate) span: Span,
    layers: Arc<Layers>,
    layer: Layer,
}

impl FileBody {
    /// `layer` of `layers` when it is one range of the memory file.
    pub(crate) fn new(layers: &Arc<Layers>, layer: Layer) -> Option<Self> {
        Some(Self {
            span: layers.span(layer)?.clone(),
            layers: layers.clone(),
            layer,
        })
    }

    /// The same bytes as buffers, for transports that cannot `sendfile`.
    pub(crate) fn bufs(&self) -> Vec<Bytes> {
        self.layers.get(self.layer).to_vec()
    }
}

/// A part: complete, or still being written (its chunks grow until `complete`).
#[derive(Debug)]
pub struct PartMedia {
    /// The segment it belongs to.
    msn: u64,
    /// It opens a segment that starts a new stretch of timeline (a new DASH Period).
    new_period: bool,
    /// Replaced, never changed, by the publisher on every chunk; viewers load it lock-free.
    state: ArcSwap<PartState>,
}

#[derive(Debug, Default, Clone)]
struct PartState {
    layers: Arc<Layers>,
    complete: bool,
}

impl PartMedia {
    fn new(msn: u64, new_period: bool) -> Self {
        Self {
            msn,
            new_period,
            state: ArcSwap::default(),
        }
    }

    /// It opens a segment that starts a new stretch of timeline (a new DASH Period).
    pub fn starts_period(&self) -> bool {
        self.new_period
    }

    /// The buffers of the complete part; `None` while it is being written.
    pub(crate) fn complete_layers(&self) -> Option<Arc<Layers>> {
        let p = self.state.load();
        p.complete.then(|| p.layers.clone())
    }

    /// Buffers of `layer` from index `from` on, and whether the part is complete.
    pub fn chunks_from(&self, layer: Layer, from: usize) -> (Vec<Bytes>, bool) {
        let p = self.state.load();
        (
            p.layers.get(layer).get(from..).unwrap_or_default().to_vec(),
            p.complete,
        )
    }

    /// Appends one chunk in every layer (publisher only: one writer, so no update is lost).
    fn append(&self, chunk: impl IntoIterator<Item = (Layer, Vec<Bytes>, Option<Span>)>) {
        let current = self.state.load();
        let mut layers = Layers::clone(&current.layers);
        for (layer, bufs, span) in chunk {
            layers.extend(layer, bufs, span);
        }
        self.state.store(Arc::new(PartState {
            layers: Arc::new(layers),
            complete: current.complete,
        }));
    }

    fn finish(&self) {
        let mut next = PartState::clone(&self.state.load());
        next.complete = true;
        self.state.store(Arc::new(next));
    }
}

/// A response body that grows while it is sent: a part being written, or a segment being
/// written (its parts one after another), in one [`Layer`].
#[derive(Debug)]
pub struct LiveBody {
    stream: Arc<Stream>,
    layer: Layer,
    part_id: u64,
    part: Arc<PartMedia>,
    /// `Some(msn)`: continue with the segment's next parts until it is complete.
    segment: Option<u64>,
    /// Buffers of `part` already taken.
    taken: usize,
}

impl LiveBody {
    /// Part `id`, while it is written.
    pub fn part(stream: Arc<Stream>, id: u64, part: Arc<PartMedia>, layer: Layer) -> Self {
        Self {
            stream,
            layer,
            part_id: id,
            part,
            segment: None,
            taken: 0,
        }
    }

    /// The segment that part `first` (its first part) opened, while it is written.
    pub fn segment(stream: Arc<Stream>, first: u64, part: Arc<PartMedia>, layer: Layer) -> Self {
        Self {
            stream,
            layer,
            part_id: first,
            segment: Some(part.msn),
            part,
            taken: 0,
        }
    }

    /// The stream whose `chunks` notification announces more bytes.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// The buffers produced since the last call, and whether the body is now complete.
    ///
    /// Read the stream's `chunks` sequence number before calling, and wait for it to change
    /// when this returns no buffers and `false`.
    pub fn take(&mut self) -> (Vec<Bytes>, bool) {
        let mut out = Vec::new();
        loop {
            let (bufs, complete) = self.part.chunks_from(self.layer, self.taken);
            self.taken += bufs.len();
            out.extend(bufs);
            if !complete {
                return (out, false);
            }
            let Some(msn) = self.segment else {
                return (out, true);
            };
            let m = self.stream.view();
            match m.parts.get(&(self.part_id + 1)) {
                Some(next) if next.msn == msn => {
                    self.part_id += 1;
                    self.part = next.clone();
                    self.taken = 0;
                }
                // The next part belongs to the next segment.
                Some(_) => return (out, true),
                // The segment is closed (or the stream ended, or this segment left the window
                // while it was being sent); else its next part has not started yet.
                None => {
                    let done = m.ended
                        || m.segments.contains_key(&msn)
                        || !m.parts.contains_key(&self.part_id);
                    return (out, done);
                }
            }
        }
    }
}

/// What viewers read of one stream: an immutable snapshot, replaced after every playlist
/// change by the publishing core. Cloning it copies pointers only.
#[derive(Debug, Default, Clone)]
pub struct View {
    /// The playlist as of the last change.
    pub playlist: Option<Arc<MediaPlaylist>>,
    /// Init segments by version: the muxed one and one per track.
    pub inits: BTreeMap<u32, Arc<Layers>>,
    /// Parts by stream-wide id (complete and in progress).
    pub parts: BTreeMap<u64, Arc<PartMedia>>,
    /// Complete segments by msn: the buffers to write, in order, per layer.
    pub segments: BTreeMap<u64, Arc<Layers>>,
    /// Tracks of the current init segment.
    pub tracks: Arc<Vec<Track>>,
    /// The stream has ended (`EXT-X-ENDLIST`).
    pub ended: bool,
    /// The playlist rendered in full and as a delta update.
    full: Option<Bytes>,
    delta: Option<Bytes>,
    /// The MPD with the `UTCTiming` URL it was rendered with (the one viewers last asked
    /// with), once a DASH viewer has asked.
    mpd: Option<(Arc<String>, Bytes)>,
}

impl View {
    /// The first part of segment `msn` when that segment is still being written.
    pub fn open_segment(&self, msn: u64) -> Option<(u64, Arc<PartMedia>)> {
        if self.segments.contains_key(&msn) {
            return None;
        }
        // From the newest part back: the segment asked for is at or near the live edge.
        self.parts
            .iter()
            .rev()
            .take_while(|(_, pm)| pm.msn >= msn)
            .filter(|(_, pm)| pm.msn == msn)
            .last()
            .map(|(id, pm)| (*id, pm.clone()))
    }

    /// Whether the segment after the last one `pl` lists has started (its first part is being
    /// written) and continues the same stretch of timeline.
    pub fn next_started(&self, pl: &MediaPlaylist) -> bool {
        let Some(next) = pl.segments().last().map(|s| s.msn + 1) else {
            return false;
        };
        self.open_segment(next)
            .is_some_and(|(_, first)| !first.starts_period())
    }

    /// The newest segment number: the one being written, or the last complete one.
    pub fn newest_msn(&self) -> Option<u64> {
        let open = self.parts.values().next_back().map(|pm| pm.msn);
        let done = self.segments.keys().next_back().copied();
        open.max(done)
    }
}

/// Measured facts of a stream for `/api/streams` and the multivariant playlist.
#[derive(Debug, Default)]
pub struct Stats {
    /// Media bytes received.
    pub bytes_in: AtomicU64,
    /// Video frames received.
    pub video_frames: AtomicU64,
    /// Current HTTP viewers (connections that requested this stream in the last request).
    pub viewers: AtomicUsize,
    /// Media time span seen, ms (first and last video DTS) for frame rate and bitrate.
    first_ms: AtomicU64,
    last_ms: AtomicU64,
    /// Peak bits per second of a complete segment.
    pub peak_bps: AtomicU64,
}

/// Publishing state of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// A publisher is live ([`Sources`] knows which).
    Live,
    /// The publisher left at this instant; it may come back within the grace window.
    Gone(Instant),
    /// The stream has ended.
    Ended(Instant),
}

/// One stream.
#[derive(Debug)]
pub struct Stream {
    /// `live/NAME` → `NAME`.
    pub name: String,
    /// When the stream was first published.
    pub started: Instant,
    /// What viewers read: replaced by the publisher after every change (see [`View`]).
    view: ArcSwap<View>,
    /// The `UTCTiming` URL DASH viewers last asked with: each new [`View`] renders the MPD with
    /// it.
    mpd_url: ArcSwapOption<String>,
    /// The packager, used only by the publishing connection.
    pub packager: Mutex<Packager>,
    /// Publishing state.
    pub publisher: Mutex<Publisher>,
    /// Fired on every new chunk (for parts being streamed).
    pub chunks: Notify,
    /// Fired on every playlist change.
    pub playlist: Notify,
    /// Counters.
    pub stats: Stats,
    /// onMetaData frame rate, when the publisher sent it.
    pub meta_fps: Mutex<Option<f64>>,
    /// Names this instance of the stream in media URIs, so caches never mix two instances.
    pub epoch: String,
    /// Arrival times for the server-added latency metrics.
    arrivals: Mutex<Arrivals>,
    /// The publisher's copy of the media into the stream's memory file.
    store: Mutex<Store>,
    /// This stream's series in `/metrics` (removed when the hub forgets the stream).
    pub metrics: StreamMetrics,
    /// Who publishes it; only the same publisher may resume it in the grace window.
    owner: Mutex<PublisherId>,
    /// The channel owner's display name, when the grant named one.
    owner_name: Mutex<Option<Arc<str>>>,
    /// Its primary and backup publishers, and which one is packaged.
    sources: Mutex<Sources>,
    /// Playback needs a token.
    private: AtomicBool,
}

/// When the frames now being packaged arrived.
#[derive(Debug, Default)]
struct Arrivals {
    /// The held-back video frame (the one the next chunk will carry).
    pending: Option<Instant>,
    /// The frame that arrived just now.
    current: Option<Instant>,
    /// First frame of the part being written.
    part_start: Option<Instant>,
}

/// Copies each chunk once into the stream's memory file (see [`crate::memfd`]); without one
/// (`memfd_create` or `mmap` failed) chunks stay the ingest buffers they were sliced from.
#[derive(Debug)]
struct Store {
    writer: Option<MediaWriter>,
    /// The segment being written.
    msn: Option<u64>,
}

impl Store {
    fn new(stream: &str) -> Self {
        let writer = MediaWriter::new()
            .inspect_err(|e| {
                tracing::warn!(%stream, "no memory file for the media ({e}): sent with writev");
            })
            .ok();
        Self { writer, msn: None }
    }

    /// A part of segment `msn` starts: a new segment starts a new region of the file.
    fn part_started(&mut self, msn: u64) {
        if self.msn != Some(msn) {
            self.msn = Some(msn);
            if let Some(w) = &mut self.writer {
                w.start_segment();
            }
        }
    }

    /// One chunk's buffers per layer, with the muxed layer copied into the file and the other
    /// layers' payloads (the same samples under their own headers) pointed at the copies.
    fn copy(
        &mut self,
        chunk: impl Iterator<Item = (Layer, Vec<Bytes>)>,
    ) -> Vec<(Layer, Vec<Bytes>, Option<Span>)> {
        let mut out = Vec::new();
        let mut originals: Vec<Bytes> = Vec::new();
        let mut copies: Vec<Bytes> = Vec::new();
        for (layer, mut bufs) in chunk {
            let mut span = None;
            if layer == Layer::Muxed {
                if let Some(w) = &mut self.writer {
                    match w.write(&bufs) {
                        Ok((mapped, s)) => {
                            originals = std::mem::replace(&mut bufs, mapped);
                            copies = bufs.clone();
                            span = Some(s);
                        }
                        Err(e) => {
                            tracing::warn!(
                                "memory file: {e}; this stream's media now stays on the heap"
                            );
                            self.writer = None;
                        }
                    }
                }
            } else {
                for b in bufs.iter_mut().skip(1) {
                    let same = |o: &Bytes| o.as_ptr() == b.as_ptr() && o.len() == b.len();
                    if let Some(i) = originals.iter().position(same) {
                        *b = copies[i].clone();
                    }
                }
            }
            out.push((layer, bufs, span));
        }
        out
    }
}

impl Stream {
    fn new(
        name: String,
        config: PackagerConfig,
        (conn, role, gap): (u64, Role, Duration),
        grant: Grant,
        epoch: String,
        metrics: StreamMetrics,
    ) -> Self {
        Self {
            owner: Mutex::new(grant.id),
            owner_name: Mutex::new(grant.owner_name),
            sources: Mutex::new(Sources::new(conn, role, gap)),
            private: AtomicBool::new(grant.private),
            metrics,
            epoch,
            arrivals: Mutex::new(Arrivals::default()),
            store: Mutex::new(Store::new(&name)),
            name,
            started: Instant::now(),
            view: ArcSwap::default(),
            mpd_url: ArcSwapOption::empty(),
            packager: Mutex::new(Packager::new(config)),
            publisher: Mutex::new(Publisher::Live),
            chunks: Notify::new(),
            playlist: Notify::new(),
            stats: Stats::default(),
            meta_fps: Mutex::new(None),
        }
    }

    /// The stream has ended (its publisher did not return, or an edge's origin ended it).
    pub fn has_ended(&self) -> bool {
        matches!(*lock(&self.publisher), Publisher::Ended(_))
    }

    /// The channel owner's user id (keys mode) and display name (when they set a profile).
    pub fn owner(&self) -> (Option<u128>, Option<Arc<str>>) {
        let id = match *lock(&self.owner) {
            PublisherId::Owner(id) => Some(id),
            _ => None,
        };
        (id, lock(&self.owner_name).clone())
    }

    /// Playback needs a token.
    pub fn is_private(&self) -> bool {
        self.private.load(Ordering::Relaxed)
    }

    /// Feeds a track configuration to the packager and publishes the results.
    pub fn handle_track(&self, track: Track) {
        let mut p = lock(&self.packager);
        p.handle_track(track);
        self.apply(&mut p, None);
    }

    /// Feeds a frame to the packager and publishes the results.
    pub fn handle_frame(&self, frame: Frame, now_unix_ms: i64, metrics: &Metrics) {
        let st = &self.stats;
        st.bytes_in
            .fetch_add(frame.data.len() as u64, Ordering::Relaxed);
        self.metrics.add_bytes_in(frame.data.len() as u64);
        let mut p = lock(&self.packager);
        let video = p
            .tracks()
            .iter()
            .any(|t| t.id() == frame.track && t.kind() == TrackKind::Video);
        if video {
            st.video_frames.fetch_add(1, Ordering::Relaxed);
            let ms = frame.dts.as_millis().max(0) as u64;
            if st.video_frames.load(Ordering::Relaxed) == 1 {
                st.first_ms.store(ms, Ordering::Relaxed);
            }
            st.last_ms.store(ms, Ordering::Relaxed);
            let mut a = lock(&self.arrivals);
            a.pending = a.current.take();
            a.current = Some(Instant::now());
        }
        p.handle_frame(frame, now_unix_ms);
        self.apply(&mut p, Some(metrics));
    }

    /// A decoder configuration from publisher `conn`: packaged if `conn` is the publisher
    /// being packaged, kept for a takeover otherwise.
    pub fn track_from(&self, conn: u64, track: Track) {
        if lock(&self.sources).track(conn, &track) {
            self.handle_track(track);
        }
    }

    /// A frame from publisher `conn`: packaged, dropped (a backup on standby), or the first
    /// frame of a takeover (see [`crate::sources`]).
    pub fn frame_from(&self, conn: u64, frame: Frame, now_unix_ms: i64, metrics: &Metrics) {
        let step = lock(&self.sources).frame(conn, frame.track, frame.keyframe, Instant::now());
        match step {
            Step::Feed => self.handle_frame(frame, now_unix_ms, metrics),
            Step::Drop => {}
            Step::Switch {
                to,
                tracks,
                silent_for,
            } => {
                match silent_for {
                    Some(d) => tracing::info!(
                        stream = %self.name,
                        "the {to} publisher takes over (the other sent nothing for {} ms)",
                        d.as_millis()
                    ),
                    None => tracing::info!(stream = %self.name, "the {to} publisher takes over"),
                }
                metrics.count_publisher_switch();
                self.handle_discontinuity();
                for t in tracks {
                    self.handle_track(t);
                }
                self.handle_frame(frame, now_unix_ms, metrics);
            }
        }
    }

    /// The publisher left; the timeline continues after a discontinuity if one comes back.
    pub fn handle_discontinuity(&self) {
        let mut p = lock(&self.packager);
        p.handle_discontinuity();
        self.apply(&mut p, None);
    }

    /// Ends the stream (`EXT-X-ENDLIST`).
    pub fn handle_end(&self) {
        let mut p = lock(&self.packager);
        p.handle_end();
        self.apply(&mut p, None);
    }

    /// Drains the packager's events, publishes the new [`View`] (if anything but chunks
    /// changed) and wakes viewers.
    fn apply(&self, p: &mut Packager, metrics: Option<&Metrics>) {
        let mut chunk = false;
        let now = Instant::now();
        let mut arrivals = lock(&self.arrivals);
        let mut store = lock(&self.store);
        let current = self.view.load_full();
        // The next View, cloned from the current one at the first change.
        let mut next: Option<View> = None;
        while let Some(ev) = p.poll_event() {
            match ev {
                Event::Init {
                    version,
                    data,
                    tracks,
                } => {
                    let mut layers = Layers::default();
                    layers.extend(Layer::Muxed, [data], None);
                    for (id, init) in tracks {
                        layers.extend(Layer::Track(id), [init], None);
                    }
                    let v = next.get_or_insert_with(|| View::clone(&current));
                    v.inits.insert(version, Arc::new(layers));
                    v.tracks = Arc::new(p.tracks().to_vec());
                }
                Event::PartStarted {
                    id,
                    msn,
                    new_period,
                } => {
                    store.part_started(msn);
                    let v = next.get_or_insert_with(|| View::clone(&current));
                    v.parts
                        .insert(id, Arc::new(PartMedia::new(msn, new_period)));
                    arrivals.part_start = arrivals.pending;
                }
                Event::Chunk {
                    part,
                    fragment,
                    tracks,
                } => {
                    if let (Some(mx), Some(t)) = (metrics, arrivals.pending) {
                        mx.observe_chunk_latency(now - t);
                    }
                    let parts = &next.as_ref().unwrap_or(&current).parts;
                    if let Some(pm) = parts.get(&part) {
                        let muxed = std::iter::once((Layer::Muxed, fragment));
                        let each = tracks.into_iter().map(|(id, f)| (Layer::Track(id), f));
                        pm.append(store.copy(muxed.chain(each).map(|(layer, f)| {
                            let mut bufs = Vec::with_capacity(1 + f.payloads.len());
                            bufs.push(f.header);
                            bufs.extend(f.payloads);
                            (layer, bufs)
                        })));
                    }
                    chunk = true;
                }
                Event::PartDone { id } => {
                    let v = next.get_or_insert_with(|| View::clone(&current));
                    if let Some(pm) = v.parts.get(&id) {
                        pm.finish();
                    }
                    self.metrics.part_done();
                    if let (Some(mx), Some(t)) = (metrics, arrivals.part_start.take()) {
                        mx.observe_part_latency(now - t);
                    }
                    chunk = true;
                }
                Event::SegmentDone {
                    msn,
                    first_part,
                    last_part,
                } => {
                    let v = next.get_or_insert_with(|| View::clone(&current));
                    let mut layers = Layers::default();
                    for (_, pm) in v.parts.range(first_part..=last_part) {
                        layers.append(&pm.state.load().layers);
                    }
                    let bytes = layers.len(Layer::Muxed);
                    v.segments.insert(msn, Arc::new(layers));
                    self.note_segment(p.playlist(), msn, bytes);
                }
                Event::Ended => {
                    next.get_or_insert_with(|| View::clone(&current)).ended = true;
                    chunk = true;
                }
                _ => {}
            }
        }
        drop((arrivals, store));
        let changed = next.is_some();
        if let Some(mut v) = next {
            let pl = Arc::new(p.playlist().clone());
            prune(&mut v, &pl);
            v.playlist = Some(pl);
            self.render(&mut v);
            self.view.store(Arc::new(v));
        }
        if chunk {
            self.chunks.notify_all();
        }
        if changed {
            self.playlist.notify_all();
        }
    }

    /// Renders `v`'s playlist (full and delta) and, once DASH viewers asked, its MPD: once per
    /// version, on the publisher's core, before any viewer can see it.
    fn render(&self, v: &mut View) {
        let Some(pl) = v.playlist.clone() else {
            return;
        };
        let text = |skip| {
            let mut s = String::with_capacity(4096);
            // Writing into a String cannot fail.
            let _ = pl.render(&mut s, skip);
            Bytes::from(s)
        };
        v.full = Some(text(Skip::No));
        v.delta = Some(text(Skip::Yes));
        v.mpd = self
            .mpd_url
            .load_full()
            .map(|url| (url.clone(), self.render_mpd(v, &url, "", crate::unix_ms())));
    }

    fn note_segment(&self, pl: &MediaPlaylist, msn: u64, bytes: usize) {
        if let Some(seg) = pl.segments().find(|s| s.msn == msn) {
            if seg.duration > 0.0 {
                let bps = (bytes as f64 * 8.0 / seg.duration) as u64;
                self.stats.peak_bps.fetch_max(bps, Ordering::Relaxed);
            }
        }
    }

    /// What viewers read now.
    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// The rendered playlist (full, or a delta update) of the current [`View`].
    pub fn rendered(&self, skip: Skip) -> Option<Bytes> {
        let v = self.view.load();
        if skip == Skip::No {
            v.full.clone()
        } else {
            v.delta.clone()
        }
    }

    /// The DASH MPD of the current [`View`] (one AdaptationSet per track), `None` before the
    /// first part. `query` goes on every media URL (a private stream's token). Without one,
    /// and with the `UTCTiming` URL viewers last asked with, it is the one rendered with the
    /// View (its `publishTime` is when that version was made); else it is rendered now, and
    /// the next Views are rendered with this URL.
    pub fn mpd(&self, utc_timing: &str, query: &str, now_unix_ms: i64) -> Option<Bytes> {
        let v = self.view.load_full();
        v.playlist.as_ref()?;
        if query.is_empty() {
            if let Some((url, mpd)) = &v.mpd {
                if url.as_str() == utc_timing {
                    return Some(mpd.clone());
                }
            }
            if self.mpd_url.load().as_deref().map(String::as_str) != Some(utc_timing) {
                self.mpd_url.store(Some(Arc::new(utc_timing.to_owned())));
            }
        }
        Some(self.render_mpd(&v, utc_timing, query, now_unix_ms))
    }

    fn render_mpd(&self, v: &View, utc_timing: &str, query: &str, now_unix_ms: i64) -> Bytes {
        let Some(pl) = &v.playlist else {
            return Bytes::new();
        };
        let mut out = String::with_capacity(4096);
        let base = format!("{}/", self.epoch);
        // Writing into a String cannot fail.
        let _ = dash::render(
            &mut out,
            &dash::Manifest {
                playlist: pl,
                tracks: &v.tracks,
                bandwidth: self.bandwidth(),
                frame_rate: self.frame_rate(),
                base: &base,
                query,
                utc_timing,
                now_unix_ms,
                next_started: v.next_started(pl),
                config: dash::MpdConfig::default(),
            },
        );
        Bytes::from(out)
    }

    /// Peak bits per second to announce (`BANDWIDTH`, `@bandwidth`): the peak of a complete
    /// segment, at least 1.25x the mean so far, at least 100 kb/s.
    pub fn bandwidth(&self) -> u64 {
        self.stats
            .peak_bps
            .load(Ordering::Relaxed)
            .max(self.bitrate() * 5 / 4)
            .max(100_000)
    }

    /// A connection started watching this stream.
    pub fn viewer_joined(&self) {
        self.stats.viewers.fetch_add(1, Ordering::Relaxed);
        self.metrics.viewer_joined();
    }

    /// A connection stopped watching this stream.
    pub fn viewer_left(&self) {
        self.stats.viewers.fetch_sub(1, Ordering::Relaxed);
        self.metrics.viewer_left();
    }

    /// Frames per second measured from video DTS, or the publisher's metadata.
    pub fn frame_rate(&self) -> Option<f64> {
        let st = &self.stats;
        let n = st.video_frames.load(Ordering::Relaxed);
        let span = st
            .last_ms
            .load(Ordering::Relaxed)
            .saturating_sub(st.first_ms.load(Ordering::Relaxed));
        if n > 10 && span > 0 {
            let fps = (n - 1) as f64 * 1000.0 / span as f64;
            return Some((fps * 1000.0).round() / 1000.0);
        }
        *lock(&self.meta_fps)
    }

    /// Media bits per second measured over the stream so far.
    pub fn bitrate(&self) -> u64 {
        let st = &self.stats;
        let span = st
            .last_ms
            .load(Ordering::Relaxed)
            .saturating_sub(st.first_ms.load(Ordering::Relaxed));
        if span == 0 {
            return 0;
        }
        st.bytes_in.load(Ordering::Relaxed) * 8 * 1000 / span
    }
}

/// Drops media that slid out of the playlist window.
fn prune(m: &mut View, pl: &MediaPlaylist) {
    let first_msn = pl.media_sequence();
    m.segments.retain(|&msn, _| msn >= first_msn);
    // Parts of segments that left the window go too. Segment parts are listed only near the
    // live edge but stay fetchable while their segment is in the window.
    let listed: u64 = pl.segments().map(|s| u64::from(s.part_count)).sum();
    let first_part = pl.next_part_id().saturating_sub(listed);
    m.parts.retain(|&id, _| id >= first_part);
    let used: Vec<u32> = pl.segments().map(|s| s.init_version).collect();
    if let Some(&oldest) = used.iter().min() {
        m.inits.retain(|&v, _| v >= oldest);
    }
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Another connection is publishing this name.
    #[error("stream {0} is already being published")]
    Busy(String),
    /// The name is not acceptable.
    #[error("invalid stream name {0:?}")]
    BadName(String),
    /// The stream's publisher dropped and may come back; nobody else may continue it.
    #[error(
        "stream {0} is waiting for its publisher to reconnect; only that publisher may resume it"
    )]
    Reconnecting(String),
    /// The hub holds `max-streams` streams, none of them ended.
    #[error("this server already has its maximum of {0} streams (max-streams)")]
    TooManyStreams(usize),
}

/// Every stream of this process.
#[derive(Debug)]
pub struct Hub {
    /// Every stream by name, replaced (copied on write) when one is added or removed: a
    /// request finds its stream without taking a lock.
    streams: ArcSwap<HashMap<String, Arc<Stream>>>,
    /// Held while `streams` is being replaced, so no change is lost.
    changing: Mutex<()>,
    config: PackagerConfig,
    next_conn: AtomicU64,
    series: StreamSeries,
    /// Streams held at most (`max-streams`).
    max_streams: usize,
    /// A backup publisher takes over after the packaged one sent nothing this long.
    backup_gap: Duration,
}

impl Hub {
    /// An empty hub; each stream gets its metric handles from `series`.
    pub fn new(config: PackagerConfig, series: StreamSeries) -> Self {
        Self {
            streams: ArcSwap::default(),
            changing: Mutex::new(()),
            config,
            next_conn: AtomicU64::new(1),
            series,
            max_streams: usize::MAX,
            backup_gap: Duration::from_secs(1),
        }
    }

    /// A backup publisher takes over after the packaged one sent nothing for `gap`.
    pub fn with_backup_gap(mut self, gap: Duration) -> Self {
        self.backup_gap = gap;
        self
    }

    /// Holds at most `max` streams (live, waiting for their publisher, or ended): a new name
    /// takes the place of the stream that ended first, or is refused when none has ended.
    pub fn with_max_streams(mut self, max: usize) -> Self {
        self.max_streams = max.max(1);
        self
    }

    /// A process-unique connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Looks a stream up.
    pub fn get(&self, name: &str) -> Option<Arc<Stream>> {
        self.streams.load().get(name).cloned()
    }

    /// Whether `name` has a publisher now, or one that may come back.
    pub fn is_live(&self, name: &str) -> bool {
        self.get(name).is_some_and(|s| !s.has_ended())
    }

    /// Every stream.
    pub fn all(&self) -> Vec<Arc<Stream>> {
        let mut v: Vec<_> = self.streams.load().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Claims `name` for publisher `conn`: a new stream, or the continuation of one whose
    /// publisher left within the grace window (after a discontinuity). `now_unix_ms` is the
    /// caller's wall clock; it seeds the new instance's epoch (the hub reads no clock).
    ///
    /// Only a publisher with the same [`PublisherId`] as the one that left may continue a
    /// stream in its grace window; the continuation takes the new grant's privacy.
    ///
    /// A live stream takes a second publisher in the role it lacks (a backup, or its primary
    /// back while a backup is packaged), from the same [`PublisherId`]; it waits on standby
    /// (see [`crate::sources`]).
    pub fn claim(
        &self,
        name: &str,
        (conn, role): (u64, Role),
        grant: Grant,
        now_unix_ms: i64,
    ) -> Result<Arc<Stream>, PublishError> {
        if !valid_name(name) {
            return Err(PublishError::BadName(name.to_owned()));
        }
        let _changing = lock(&self.changing);
        let current = self.streams.load_full();
        if let Some(s) = current.get(name) {
            let mut p = lock(&s.publisher);
            match *p {
                Publisher::Live => {
                    if *lock(&s.owner) != grant.id || !lock(&s.sources).join(conn, role) {
                        return Err(PublishError::Busy(name.to_owned()));
                    }
                    return Ok(s.clone());
                }
                Publisher::Gone(_) => {
                    if *lock(&s.owner) != grant.id {
                        return Err(PublishError::Reconnecting(name.to_owned()));
                    }
                    if !lock(&s.sources).join(conn, role) {
                        return Err(PublishError::Busy(name.to_owned()));
                    }
                    s.private.store(grant.private, Ordering::Relaxed);
                    *lock(&s.owner_name) = grant.owner_name;
                    *p = Publisher::Live;
                    return Ok(s.clone());
                }
                Publisher::Ended(_) => {}
            }
        }
        let mut streams = HashMap::clone(&current);
        if !streams.contains_key(name) && !self.make_room(&mut streams) {
            return Err(PublishError::TooManyStreams(self.max_streams));
        }
        let epoch = format!("{:x}", now_unix_ms as u64 ^ conn);
        let metrics = self.series.attach(name);
        let s = Arc::new(Stream::new(
            name.to_owned(),
            self.config,
            (conn, role, self.backup_gap),
            grant,
            epoch,
            metrics,
        ));
        // An ended instance of the name is replaced (and forgotten) now.
        if let Some(old) = streams.insert(name.to_owned(), s.clone()) {
            self.series.detach(&old.metrics);
        }
        self.streams.store(Arc::new(streams));
        Ok(s)
    }

    /// Below `max-streams`, or brought below it by forgetting the stream that ended first;
    /// false when every stream is live or waiting for its publisher.
    fn make_room(&self, streams: &mut HashMap<String, Arc<Stream>>) -> bool {
        if streams.len() < self.max_streams {
            return true;
        }
        let oldest = streams
            .values()
            .filter_map(|s| match *lock(&s.publisher) {
                Publisher::Ended(t) => Some((t, s.name.clone())),
                _ => None,
            })
            .min();
        let Some((_, name)) = oldest else {
            return false;
        };
        if let Some(old) = streams.remove(&name) {
            self.series.detach(&old.metrics);
        }
        streams.len() < self.max_streams
    }

    /// Publisher `conn` of `stream` went away.
    ///
    /// When it was the one packaged, a publisher on standby takes over at its next keyframe;
    /// without one, the stream waits `reconnect-grace` for a publisher to come back.
    pub fn release(&self, stream: &Stream, conn: u64) {
        let mut p = lock(&stream.publisher);
        match lock(&stream.sources).leave(conn) {
            // The stream stays live: the publisher on standby takes over at its keyframe.
            Left::Active { standby: Some(_) } => {}
            Left::Active { standby: None } => {
                *p = Publisher::Gone(Instant::now());
                drop(p);
                stream.handle_discontinuity();
            }
            Left::Standby | Left::Unknown => {}
        }
    }

    /// Ends streams whose publisher stayed away past `grace`, and forgets ended streams after
    /// `linger`. Called periodically by one core.
    pub fn sweep(&self, now: Instant, grace: Duration, linger: Duration) {
        let mut ended = Vec::new();
        let mut remove = Vec::new();
        for s in self.all() {
            let mut p = lock(&s.publisher);
            match *p {
                Publisher::Gone(t) if now.duration_since(t) >= grace => {
                    *p = Publisher::Ended(now);
                    ended.push(s.clone());
                }
                Publisher::Ended(t) if now.duration_since(t) >= linger => remove.push(s.clone()),
                _ => {}
            }
        }
        for s in ended {
            tracing::info!(stream = %s.name, "publisher did not return: stream ended");
            s.handle_end();
        }
        self.remove(remove);
    }

    /// Publisher `conn` of `stream` ended it for good (an edge's origin ended the stream): it
    /// ends now, with no grace window, and is forgotten after `ended-linger`.
    pub fn finish(&self, stream: &Stream, conn: u64) {
        let mut p = lock(&stream.publisher);
        lock(&stream.sources).leave(conn);
        if !matches!(*p, Publisher::Ended(_)) {
            *p = Publisher::Ended(Instant::now());
            drop(p);
            stream.handle_end();
        }
    }

    /// Forgets `stream` now (an edge stream nobody watched for `edge-linger`): the next request
    /// for its name finds nothing.
    pub fn forget(&self, stream: &Arc<Stream>) {
        self.remove(vec![stream.clone()]);
    }

    /// Removes these instances (not newer ones of the same names) and their metric series.
    fn remove(&self, gone: Vec<Arc<Stream>>) {
        if gone.is_empty() {
            return;
        }
        let _changing = lock(&self.changing);
        let mut streams = HashMap::clone(&self.streams.load());
        for s in gone {
            if let Some(cur) = streams.get(&s.name) {
                if Arc::ptr_eq(cur, &s) {
                    streams.remove(&s.name);
                    self.series.detach(&s.metrics);
                }
            }
        }
        self.streams.store(Arc::new(streams));
    }
}

/// Stream names: 1 to 128 characters of `[A-Za-z0-9_.-]`, not starting with a dot; the same
/// rule as the social plane's stream names and chat rooms.
pub use zerocast_social::channels::valid_name;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::OTHER_STREAMS;

    fn scrape(m: &Metrics) -> String {
        let mut s = String::new();
        m.encode(&mut s);
        s
    }

    /// Sample lines carrying `stream="NAME"`.
    fn anyone() -> Grant {
        Grant::to(PublisherId::Addr([127, 0, 0, 1].into()))
    }

    #[test]
    fn only_the_same_publisher_resumes_in_the_grace_window() {
        let m = Metrics::new(10);
        let hub = Hub::new(Config::default().packager(), m.stream_series());
        let owner = Grant {
            owner_name: Some("Ada".into()),
            ..Grant::to(PublisherId::Owner(7))
        };
        let s = hub
            .claim("show", (1, Role::Primary), owner.clone(), 0)
            .unwrap();
        assert!(hub.is_live("show"));
        assert_eq!(s.owner(), (Some(7), Some("Ada".into())));
        assert!(matches!(
            hub.claim("show", (2, Role::Primary), owner.clone(), 0),
            Err(PublishError::Busy(_))
        ));
        hub.release(&s, 1);
        assert!(hub.is_live("show"), "in the grace window");
        // Someone else (another key owner, or an unauthenticated address) is refused.
        for other in [
            PublisherId::Owner(8),
            PublisherId::Addr([10, 0, 0, 1].into()),
        ] {
            let g = Grant::to(other);
            assert!(matches!(
                hub.claim("show", (3, Role::Primary), g, 0),
                Err(PublishError::Reconnecting(_))
            ));
        }
        // The owner continues the same stream, now private, under a new display name.
        let private = Grant {
            private: true,
            owner_name: Some("Ada L.".into()),
            ..owner
        };
        let again = hub.claim("show", (4, Role::Primary), private, 0).unwrap();
        assert!(Arc::ptr_eq(&s, &again));
        assert!(again.is_private());
        assert_eq!(again.owner(), (Some(7), Some("Ada L.".into())));
        // Once it ended, anyone allowed to publish may start a new instance of the name.
        hub.release(&again, 4);
        let grace = Duration::from_secs(10);
        hub.sweep(Instant::now() + grace, grace, grace * 3);
        assert!(!hub.is_live("show"));
        let fresh = hub
            .claim(
                "show",
                (5, Role::Primary),
                Grant::to(PublisherId::Owner(8)),
                0,
            )
            .unwrap();
        assert!(!Arc::ptr_eq(&s, &fresh));
    }

    /// `seconds` of 48 kHz AAC (an audio-only stream) into `s`, from frame `from` on.
    fn publish_audio(s: &Stream, m: &Metrics, from: i64, seconds: i64) {
        use zerocast_core::codec::aac::AacConfig;
        use zerocast_core::{AudioCodec, Timescale, Timestamp, TrackId};
        if from == 0 {
            let c = AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap();
            s.handle_track(Track::Audio {
                id: TrackId::AUDIO,
                timescale: Timescale::new(48_000).unwrap(),
                codec: AudioCodec::Aac(c),
            });
        }
        for n in from..from + seconds * 48_000 / 1024 {
            let ts = Timestamp::new(n * 1024, Timescale::new(48_000).unwrap());
            let frame = Frame {
                track: TrackId::AUDIO,
                dts: ts,
                pts: ts,
                keyframe: true,
                data: Bytes::from_static(&[0x21; 10]),
            };
            s.handle_frame(frame, 1_700_000_000_000 + ts.as_millis(), m);
        }
    }

    #[test]
    fn viewers_read_immutable_views_rendered_once_per_version() {
        let m = Metrics::new(10);
        let hub = Hub::new(Config::default().packager(), m.stream_series());
        let s = hub.claim("v", (1, Role::Primary), anyone(), 0).unwrap();
        assert!(s.view().playlist.is_none() && s.rendered(Skip::No).is_none());
        publish_audio(&s, &m, 0, 5);
        let old = s.view();
        let pl = old.playlist.clone().expect("parts were cut");
        // The publisher rendered this version before publishing it; every viewer gets the
        // same buffer, none renders again.
        let full = old.full.clone().expect("rendered with the View");
        assert_eq!(s.rendered(Skip::No).unwrap().as_ptr(), full.as_ptr());
        assert_eq!(s.rendered(Skip::No).unwrap().as_ptr(), full.as_ptr());
        let mut text = String::new();
        pl.render(&mut text, Skip::No).unwrap();
        assert_eq!(full, text.as_bytes());
        assert!(old.delta.is_some());
        // The MPD: rendered for the first DASH viewer, then with every new View for the URL
        // viewers asked with.
        assert!(old.mpd.is_none());
        let url = "http://127.0.0.1/time";
        let first = s.mpd(url, "", 0).unwrap();
        assert!(std::str::from_utf8(&first).unwrap().contains(url));

        publish_audio(&s, &m, 5 * 48_000 / 1024, 3);
        let new = s.view();
        assert!(new.playlist.as_ref().unwrap().version() > pl.version());
        // A View taken before is unchanged: same playlist, same text.
        assert!(Arc::ptr_eq(old.playlist.as_ref().unwrap(), &pl));
        assert_eq!(old.full.as_ref().unwrap().as_ptr(), full.as_ptr());
        assert_ne!(s.rendered(Skip::No).unwrap(), full);
        let (mpd_url, mpd) = new.mpd.clone().expect("rendered with the View");
        assert_eq!(mpd_url.as_str(), url);
        assert_eq!(s.mpd(url, "", 0).unwrap().as_ptr(), mpd.as_ptr());
        // A token on the URLs, or another clock URL: rendered for that request.
        let private = s.mpd(url, "?token=t", 0).unwrap();
        assert!(std::str::from_utf8(&private).unwrap().contains("?token=t"));
        assert_ne!(
            s.mpd("http://other/time", "", 0).unwrap().as_ptr(),
            mpd.as_ptr()
        );
    }

    fn series(text: &str, stream: &str) -> Vec<String> {
        let label = format!("stream=\"{stream}\"");
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&label))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn stream_series_are_bounded_and_go_when_the_stream_is_forgotten() {
        let m = Metrics::new(2);
        let hub = Hub::new(Config::default().packager(), m.stream_series());
        let names = ["a", "b", "c", "d"];
        let streams: Vec<_> = (1..)
            .zip(names)
            .map(|(conn, n)| {
                (
                    conn,
                    hub.claim(n, (conn, Role::Primary), anyone(), 0).unwrap(),
                )
            })
            .collect();
        streams[0].1.viewer_joined();
        streams[2].1.viewer_joined();
        streams[3].1.viewer_joined();
        let text = scrape(&m);
        assert_eq!(series(&text, "a").len(), 3, "{text}");
        assert!(
            text.contains("zerocast_viewers{stream=\"a\"} 1\n"),
            "{text}"
        );
        assert_eq!(series(&text, "b").len(), 3, "{text}");
        // Past the bound of 2: no series of their own, counted together.
        assert!(
            series(&text, "c").is_empty() && series(&text, "d").is_empty(),
            "{text}"
        );
        assert_eq!(series(&text, OTHER_STREAMS).len(), 3, "{text}");
        assert!(
            text.contains("zerocast_viewers{stream=\"~other\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("zerocast_streams 4\n"), "{text}");
        assert!(
            text.contains("zerocast_streams_started_total 4\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE zerocast_bytes_in counter\n"),
            "{text}"
        );

        // The publishers leave; after the grace window the streams end but still answer.
        for (conn, s) in &streams {
            hub.release(s, *conn);
        }
        let (grace, linger) = (Duration::from_secs(10), Duration::from_secs(30));
        let ended = Instant::now() + grace;
        hub.sweep(ended, grace, linger);
        assert_eq!(series(&scrape(&m), "a").len(), 3);

        // Re-publishing an ended name replaces that instance; the name keeps one set of series.
        let a2 = hub.claim("a", (9, Role::Primary), anyone(), 0).unwrap();
        let text = scrape(&m);
        assert_eq!(series(&text, "a").len(), 3, "{text}");
        assert!(text.contains("zerocast_streams 4\n"), "{text}");
        hub.release(&a2, 9);
        hub.sweep(ended + Duration::from_secs(1), grace, linger);

        // After the linger window the hub forgets them, and their series are gone.
        hub.sweep(
            ended + grace + linger + Duration::from_secs(2),
            grace,
            linger,
        );
        assert!(hub.all().is_empty());
        let text = scrape(&m);
        for n in names.into_iter().chain([OTHER_STREAMS]) {
            assert!(series(&text, n).is_empty(), "{n} still in:\n{text}");
        }
        assert!(text.contains("zerocast_streams 0\n"), "{text}");
        assert!(
            text.contains("zerocast_streams_started_total 5\n"),
            "{text}"
        );

        // The freed places go to new streams.
        hub.claim("e", (10, Role::Primary), anyone(), 0).unwrap();
        assert_eq!(series(&scrape(&m), "e").len(), 3);
    }

    #[test]
    fn max_streams_refuses_new_names_and_ended_streams_make_room() {
        let m = Metrics::new(10);
        let hub = Hub::new(Config::default().packager(), m.stream_series()).with_max_streams(3);
        let a = hub.claim("a", (1, Role::Primary), anyone(), 0).unwrap();
        let b = hub.claim("b", (2, Role::Primary), anyone(), 0).unwrap();
        hub.claim("c", (3, Role::Primary), anyone(), 0).unwrap();
        assert_eq!(
            hub.claim("d", (4, Role::Primary), anyone(), 0).unwrap_err(),
            PublishError::TooManyStreams(3)
        );
        assert_eq!(
            hub.claim("d", (4, Role::Primary), anyone(), 0)
                .unwrap_err()
                .to_string(),
            "this server already has its maximum of 3 streams (max-streams)"
        );
        // A refused name leaves nothing behind: no stream, no series.
        assert!(hub.get("d").is_none());
        assert!(series(&scrape(&m), "d").is_empty());
        // Names already in the hub are not new streams: a returning publisher continues.
        hub.release(&a, 1);
        assert!(Arc::ptr_eq(
            &hub.claim("a", (5, Role::Primary), anyone(), 0).unwrap(),
            &a
        ));
        // A publisher that left still holds its place through the grace window...
        hub.release(&b, 2);
        let grace = Duration::from_secs(10);
        let t = Instant::now();
        hub.sweep(t, grace, Duration::from_secs(30));
        assert!(hub.claim("d", (6, Role::Primary), anyone(), 0).is_err());
        // ... and once its stream ended, a new name takes that place.
        hub.sweep(t + grace, grace, Duration::from_secs(30));
        hub.claim("d", (6, Role::Primary), anyone(), 0).unwrap();
        assert!(hub.get("b").is_none());
        let text = scrape(&m);
        assert!(series(&text, "b").is_empty(), "{text}");
        assert!(text.contains("zerocast_streams 3\n"), "{text}");
        assert_eq!(hub.all().len(), 3);
    }
}
