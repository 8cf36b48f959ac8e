//! Metrics, encoded as OpenMetrics text at `/metrics` by [`prometheus_client`].
//!
//! ```text
//! Metrics ─ Registry ─┬─ process-wide: request latency{kind}, chunk/part latency, bytes out, RTMP errors
//!                     └─ StreamSeries: streams, streams started, viewers/bytes in/parts{stream}
//! hub::Stream ── StreamMetrics (handles resolved once, when the stream starts)
//! ```
//!
//! The hot path touches only handles resolved ahead of time: counters and gauges are one atomic
//! add; a histogram observation takes that histogram's own lock (prometheus-client keeps sum,
//! count and buckets under one `RwLock`), which is what makes every scrape consistent: a scrape
//! never sees an observation in a bucket but not yet in `_count`. No family lookup (and no
//! family lock) happens per request or per frame.
//!
//! Per-stream series (label `stream`) exist while the stream is in the hub, and at most
//! `metrics-max-streams` streams have their own; further streams share the series
//! `stream="~other"` (a name no stream can have) until they end. Counters end in `_total` in the
//! output: prometheus-client adds that suffix, so they are registered without it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `stream` label value shared by streams beyond `metrics-max-streams`. Stream names never
/// contain `~`, so it cannot collide with a real stream.
pub const OTHER_STREAMS: &str = "~other";

/// What a request asked for, for per-kind latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A multivariant or media playlist (including blocking waits).
    Playlist,
    /// A part (including streaming it while it is written).
    Part,
    /// A complete segment.
    Segment,
    /// An init segment.
    Init,
    /// API, metrics, errors.
    Other,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Playlist,
        Kind::Part,
        Kind::Segment,
        Kind::Init,
        Kind::Other,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Playlist => "playlist",
            Kind::Part => "part",
            Kind::Segment => "segment",
            Kind::Init => "init",
            Kind::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the histogram buckets, in seconds.
const BUCKETS: [f64; 20] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2,
    0.25, 0.3, 0.5, 1.0, 2.5, 10.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StreamLabel {
    // Stream names are `[A-Za-z0-9_.-]` (`hub::valid_name`): nothing to escape in a label value.
    stream: String,
}

/// Every metric of the process, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Request latency per [`Kind`], resolved from its family once.
    requests: [Histogram; 5],
    bytes_out: Counter,
    bytes_sendfile: Counter,
    chunk_latency: Histogram,
    part_latency: Histogram,
    rtmp_errors: Counter,
    publish_refused: Counter,
    playback_refused: Counter,
    publisher_switches: Counter,
    relay_parts: Counter,
    limit_hits: [Counter; Limit::ALL.len()],
    /// Open RTMP and HTTP connections over TCP; `max-connections` caps it.
    connections: Gauge,
    streams: StreamSeries,
}

/// A limit that closed or refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// `max-connections` reached: a new connection was closed at once.
    MaxConnections,
    /// No publish accepted within `rtmp-publish-timeout`.
    RtmpPublishTimeout,
    /// A request head not complete within `http-head-timeout`.
    HttpHeadTimeout,
    /// A TLS handshake not complete within its deadline.
    TlsHandshakeTimeout,
    /// `max-connections-per-ip` reached: a new connection from that address was closed at once.
    MaxConnectionsPerIp,
    /// `max-streams` reached: a publish of a new stream name was refused.
    MaxStreams,
    /// An RTMP message longer than allowed (`rtmp-max-message-before-publish` before the
    /// publish is accepted, `rtmp-max-message` after) was announced: the connection was closed.
    RtmpMessageSize,
    /// A Set Chunk Size above `rtmp-max-chunk-size-before-publish` before the publish was
    /// accepted: the connection was closed.
    RtmpChunkSize,
}

impl Limit {
    const ALL: [Limit; 8] = [
        Limit::MaxConnections,
        Limit::RtmpPublishTimeout,
        Limit::HttpHeadTimeout,
        Limit::TlsHandshakeTimeout,
        Limit::MaxConnectionsPerIp,
        Limit::MaxStreams,
        Limit::RtmpMessageSize,
        Limit::RtmpChunkSize,
    ];

    fn name(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::RtmpPublishTimeout => "rtmp_publish_timeout",
            Limit::HttpHeadTimeout => "http_head_timeout",
            Limit::TlsHandshakeTimeout => "tls_handshake_timeout",
            Limit::MaxConnectionsPerIp => "max_connections_per_ip",
            Limit::MaxStreams => "max_streams",
            Limit::RtmpMessageSize => "rtmp_message_size",
            Limit::RtmpChunkSize => "rtmp_chunk_size",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

impl Metrics {
    /// Registers every metric; at most `max_streams` streams get series of their own.
    pub fn new(max_streams: usize) -> Self {
        let mut registry = Registry::default();
        // Registration order is output order; it is the order `/metrics` always had.
        let streams = StreamSeries::new(max_streams);
        streams.register(&mut registry);
        let bytes_out = Counter::default();
        registry.register(
            "zerocast_bytes_out",
            "Bytes written to HTTP viewers",
            bytes_out.clone(),
        );
        let bytes_sendfile = Counter::default();
        registry.register(
            "zerocast_bytes_sendfile",
            "Bytes of media sent to HTTP/1.1 viewers with sendfile(2) from the media memory file",
            bytes_sendfile.clone(),
        );
        let requests_family =
            Family::<KindLabel, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        let requests =
            Kind::ALL.map(|k| requests_family.get_or_create_owned(&KindLabel { kind: k.name() }));
        registry.register(
            "zerocast_http_request_duration_seconds",
            "HTTP request time, from the parsed head to the last byte written (blocking waits included)",
            requests_family,
        );
        let chunk_latency = histogram();
        registry.register(
            "zerocast_chunk_latency_seconds",
            "Frame received to its CMAF chunk available to viewers",
            chunk_latency.clone(),
        );
        let part_latency = histogram();
        registry.register(
            "zerocast_part_latency_seconds",
            "First frame of a part received to the part complete and listed",
            part_latency.clone(),
        );
        let rtmp_errors = Counter::default();
        registry.register(
            "zerocast_rtmp_errors",
            "RTMP connections closed for bad input or IO errors",
            rtmp_errors.clone(),
        );
        let publish_refused = Counter::default();
        registry.register(
            "zerocast_publish_refused",
            "Publish requests refused (no or wrong key, webhook denial, name busy or reconnecting)",
            publish_refused.clone(),
        );
        let playback_refused = Counter::default();
        registry.register(
            "zerocast_playback_refused",
            "Requests for a private stream without a valid playback token",
            playback_refused.clone(),
        );
        let publisher_switches = Counter::default();
        registry.register(
            "zerocast_publisher_switches",
            "Takeovers between a stream's primary and backup publishers",
            publisher_switches.clone(),
        );
        let relay_parts = Counter::default();
        registry.register(
            "zerocast_relay_parts",
            "Parts this edge fetched from its origin (one per part per stream followed)",
            relay_parts.clone(),
        );
        let limits_family = Family::<LimitLabel, Counter>::default();
        let limit_hits =
            Limit::ALL.map(|l| limits_family.get_or_create_owned(&LimitLabel { limit: l.name() }));
        registry.register(
            "zerocast_limit_hits",
            "Connections closed or refused, and publishes refused, by a limit (connection caps, deadlines, sizes, max-streams)",
            limits_family,
        );
        let connections = Gauge::default();
        registry.register(
            "zerocast_connections",
            "Open RTMP and HTTP connections over TCP, TLS included (HTTP/3 is not counted)",
            connections.clone(),
        );
        Self {
            registry,
            requests,
            bytes_out,
            bytes_sendfile,
            chunk_latency,
            part_latency,
            rtmp_errors,
            publish_refused,
            playback_refused,
            publisher_switches,
            relay_parts,
            limit_hits,
            connections,
            streams,
        }
    }

    /// Records a request's total time.
    pub fn observe(&self, kind: Kind, d: Duration) {
        self.requests[kind.index()].observe(d.as_secs_f64());
    }

    /// Counts bytes written to an HTTP viewer.
    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    /// Counts media bytes sent with `sendfile(2)` (also counted in `bytes_out`).
    pub fn add_bytes_sendfile(&self, n: u64) {
        self.bytes_sendfile.inc_by(n);
    }

    /// Records the time from a frame's arrival to its CMAF chunk being available.
    pub fn observe_chunk_latency(&self, d: Duration) {
        self.chunk_latency.observe(d.as_secs_f64());
    }

    /// Records the time from a part's first frame to the part being listed.
    pub fn observe_part_latency(&self, d: Duration) {
        self.part_latency.observe(d.as_secs_f64());
    }

    /// Counts an RTMP connection closed for an error.
    pub fn count_rtmp_error(&self) {
        self.rtmp_errors.inc();
    }

    /// Counts a refused publish request.
    pub fn count_publish_refused(&self) {
        self.publish_refused.inc();
    }

    /// Counts a refused request for a private stream.
    pub fn count_playback_refused(&self) {
        self.playback_refused.inc();
    }

    /// Counts a takeover between a stream's primary and backup publishers.
    pub fn count_publisher_switch(&self) {
        self.publisher_switches.inc();
    }

    /// Counts a part an edge fetched from its origin.
    pub fn count_relay_part(&self) {
        self.relay_parts.inc();
    }

    /// Counts a connection closed or refused by `limit`.
    pub fn count_limit(&self, limit: Limit) {
        self.limit_hits[limit as usize].inc();
    }

    /// Counts a connection opened (accepted under the caps).
    pub fn open_connection(&self) {
        self.connections.inc();
    }

    /// Counts a connection closed.
    pub fn close_connection(&self) {
        self.connections.dec();
    }

    /// Open connections now.
    pub fn connections(&self) -> usize {
        usize::try_from(self.connections.get()).unwrap_or(0)
    }

    /// The per-stream series, for the hub.
    pub fn stream_series(&self) -> StreamSeries {
        self.streams.clone()
    }

    /// Appends the OpenMetrics text of every metric (ending in `# EOF`) to `out`.
    pub fn encode(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(out, &self.registry);
    }
}

/// The per-stream series and the stream counts, shared by [`Metrics`] (which encodes them) and
/// the hub (which attaches a stream when it starts and detaches it when it is forgotten).
#[derive(Debug, Clone)]
pub struct StreamSeries {
    streams: Gauge,
    started: Counter,
    viewers: Family<StreamLabel, Gauge>,
    bytes_in: Family<StreamLabel, Counter>,
    parts: Family<StreamLabel, Counter>,
    bound: Arc<Mutex<Bound>>,
}

/// Which streams hold series; touched only when a stream starts or is forgotten.
#[derive(Debug)]
struct Bound {
    max: usize,
    /// Stream name → instances holding its series (more than one only while a name is
    /// re-published before its previous instance was forgotten).
    own: HashMap<String, usize>,
    /// Streams sharing the `~other` series.
    other: usize,
    /// The bound was reported in the log.
    warned: bool,
}

impl StreamSeries {
    fn new(max: usize) -> Self {
        Self {
            streams: Gauge::default(),
            started: Counter::default(),
            viewers: Family::default(),
            bytes_in: Family::default(),
            parts: Family::default(),
            bound: Arc::new(Mutex::new(Bound {
                max,
                own: HashMap::new(),
                other: 0,
                warned: false,
            })),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "zerocast_streams",
            "Streams in the hub (live, waiting for their publisher, or ended and lingering)",
            self.streams.clone(),
        );
        r.register(
            "zerocast_streams_started",
            "Streams started",
            self.started.clone(),
        );
        r.register(
            "zerocast_viewers",
            "HTTP connections whose last request was for the stream",
            self.viewers.clone(),
        );
        r.register(
            "zerocast_bytes_in",
            "Media bytes received from the stream's publishers",
            self.bytes_in.clone(),
        );
        r.register(
            "zerocast_parts",
            "LL-HLS parts completed",
            self.parts.clone(),
        );
    }

    fn lock(&self) -> MutexGuard<'_, Bound> {
        self.bound.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stream entered the hub: resolves its handles, with series of its own while fewer than
    /// `metrics-max-streams` streams have them, else the shared `~other` series.
    pub fn attach(&self, name: &str) -> StreamMetrics {
        self.streams.inc();
        self.started.inc();
        let mut b = self.lock();
        let own = if let Some(n) = b.own.get_mut(name) {
            *n += 1;
            true
        } else if b.own.len() < b.max {
            b.own.insert(name.to_owned(), 1);
            true
        } else {
            b.other += 1;
            if !b.warned {
                b.warned = true;
                tracing::warn!(
                    stream = name,
                    max = b.max,
                    "metrics-max-streams reached: this and further streams are counted in the \
                     stream=\"{OTHER_STREAMS}\" series until others end (logged once)"
                );
            }
            false
        };
        let label = StreamLabel {
            stream: if own { name } else { OTHER_STREAMS }.to_owned(),
        };
        StreamMetrics {
            viewers: self.viewers.get_or_create_owned(&label),
            bytes_in: self.bytes_in.get_or_create_owned(&label),
            parts: self.parts.get_or_create_owned(&label),
            label,
            own,
            attached: AtomicBool::new(true),
        }
    }

    /// The hub forgot a stream: its series go (the `~other` ones when the last stream sharing
    /// them goes). Later calls for the same stream do nothing.
    pub fn detach(&self, m: &StreamMetrics) {
        if !m.attached.swap(false, Ordering::AcqRel) {
            return;
        }
        self.streams.dec();
        let mut b = self.lock();
        let remove = if m.own {
            match b.own.get_mut(&m.label.stream) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => {
                    b.own.remove(&m.label.stream);
                    true
                }
            }
        } else {
            b.other = b.other.saturating_sub(1);
            b.other == 0
        };
        if remove {
            self.viewers.remove(&m.label);
            self.bytes_in.remove(&m.label);
            self.parts.remove(&m.label);
        }
    }
}

/// One stream's metric handles, resolved when it started; using them takes no lock.
#[derive(Debug)]
pub struct StreamMetrics {
    label: StreamLabel,
    own: bool,
    attached: AtomicBool,
    viewers: Gauge,
    bytes_in: Counter,
    parts: Counter,
}

impl StreamMetrics {
    /// The stream's series have their own `stream` label (not `~other`).
    pub fn has_own_series(&self) -> bool {
        self.own
    }

    /// Counts media bytes received.
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    /// A connection started watching the stream.
    pub fn viewer_joined(&self) {
        self.viewers.inc();
    }

    /// A connection stopped watching the stream.
    pub fn viewer_left(&self) {
        self.viewers.dec();
    }

    /// A part was completed.
    pub fn part_done(&self) {
        self.parts.inc();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use AtomicBool;

    use super::*;

    fn new_metrics() -> Metrics {
        Metrics::new(10)
    }

    fn scrape_into(m: &Metrics, out: &mut String) {
        m.encode(out);
    }

    /// One histogram of a scrape: buckets as (le, cumulative count) in order, and `_count`.
    type Scraped = (Vec<(f64, u64)>, Option<u64>);

    /// Parses the `zerocast_http_request_duration_seconds` series of one scrape, by `kind`.
    fn request_histograms(text: &str) -> BTreeMap<String, Scraped> {
        let mut out: BTreeMap<String, Scraped> = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("zerocast_http_request_duration_seconds_") else {
                continue;
            };
            let (series, value) = rest.rsplit_once(' ').unwrap();
            let (suffix, labels) = series.split_once('{').unwrap();
            let mut kind = None;
            let mut le = None;
            for kv in labels
                .trim_end_matches('}')
                .split(',')
                .filter(|s| !s.is_empty())
            {
                let (k, v) = kv.split_once('=').unwrap();
                let v = v.trim_matches('"');
                match k {
                    "kind" => kind = Some(v.to_owned()),
                    "le" => {
                        le = Some(if v == "+Inf" {
                            f64::INFINITY
                        } else {
                            v.parse().unwrap()
                        })
                    }
                    _ => {}
                }
            }
            let entry = out.entry(kind.expect("a kind label")).or_default();
            match suffix {
                "bucket" => entry
                    .0
                    .push((le.expect("an le label"), value.parse().unwrap())),
                "count" => entry.1 = Some(value.parse().unwrap()),
                _ => {}
            }
        }
        out
    }

    /// Observers on several threads and a scraper at once: every scrape must show consistent
    /// histograms (buckets cumulative, `+Inf` equal to `_count`) and counts that never go back.
    #[test]
    fn concurrent_scrapes_never_see_a_torn_histogram() {
        let m = Arc::new(new_metrics());
        let stop = Arc::new(AtomicBool::new(false));
        let observers: Vec<_> = (0..4)
            .map(|t| {
                let (m, stop) = (m.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i: u64 = t;
                    while !stop.load(Ordering::Relaxed) {
                        i = i
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        // Every bucket, none above the last bound: then a consistent scrape has
                        // the last finite bucket equal to `+Inf`, and one observation counted
                        // in a bucket but not yet in `_count` shows as `+Inf` below it.
                        let us = (i >> 20) % 10_000_000;
                        m.observe(Kind::ALL[(i >> 40) as usize % 5], Duration::from_micros(us));
                    }
                })
            })
            .collect();
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        let mut text = String::new();
        let mut failure = None;
        let started = std::time::Instant::now();
        let mut scrape = 0;
        // A few thousand scrapes; a slow machine stops after a few seconds instead.
        while scrape < 3_000 && started.elapsed() < Duration::from_secs(3) {
            scrape += 1;
            text.clear();
            scrape_into(&m, &mut text);
            let hs = request_histograms(&text);
            assert_eq!(hs.len(), 5, "{text}");
            for (kind, (buckets, count)) in hs {
                let count = count.expect("a _count line");
                let inf = buckets.last().filter(|b| b.0.is_infinite()).map(|b| b.1);
                let sorted = buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
                let prev = last.insert(kind.clone(), count).unwrap_or(0);
                if !sorted || inf != Some(count) || count < prev {
                    failure = Some(format!(
                        "scrape {scrape}, kind {kind}: buckets {buckets:?}, +Inf {inf:?}, \
                         _count {count}, previous _count {prev}"
                    ));
                    break;
                }
            }
            if failure.is_some() {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for o in observers {
            o.join().unwrap();
        }
        assert!(failure.is_none(), "{}", failure.unwrap_or_default());
        assert!(
            last.values().all(|&c| c > 0),
            "the observers never ran: {last:?}"
        );
    }
}
