//! Counters and latency samples, one [`Stats`] per worker thread, merged at the end.

use std::time::Duration;

/// Why a request (or a viewer) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// TCP connect (or the QUIC handshake) failed or timed out.
    Connect,
    /// The TLS handshake failed or timed out, or the server chose another ALPN protocol.
    Tls,
    /// A read or write made no progress within the timeout.
    Timeout,
    /// A read or write failed (reset, broken pipe).
    Io,
    /// The server closed the connection before the response was complete.
    Closed,
    /// The response could not be parsed.
    Malformed,
    /// 503: a blocking request timed out, or the stream is not ready.
    Status503,
    /// 400: the server rejected the request.
    Status400,
    /// 404: stream, part or stream instance not found.
    Status404,
    /// Any other non-200 status.
    StatusOther,
    /// A playlist that does not parse or lacks what a player needs.
    BadPlaylist,
    /// A blocking reload answered 200 without the part it asked for.
    StaleReload,
    /// An MPD that does not parse, or lacks what a player needs.
    BadMpd,
    /// The viewer was still running at the hard stop (duration + 10 s).
    HardStop,
}

impl ErrorKind {
    pub(crate) const ALL: [ErrorKind; 14] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Io,
        ErrorKind::Closed,
        ErrorKind::Malformed,
        ErrorKind::Status503,
        ErrorKind::Status400,
        ErrorKind::Status404,
        ErrorKind::StatusOther,
        ErrorKind::BadPlaylist,
        ErrorKind::StaleReload,
        ErrorKind::BadMpd,
        ErrorKind::HardStop,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::Closed => "closed early",
            ErrorKind::Malformed => "malformed response",
            ErrorKind::Status503 => "http 503",
            ErrorKind::Status400 => "http 400",
            ErrorKind::Status404 => "http 404",
            ErrorKind::StatusOther => "http other",
            ErrorKind::BadPlaylist => "bad playlist",
            ErrorKind::StaleReload => "stale reload",
            ErrorKind::BadMpd => "bad MPD",
            ErrorKind::HardStop => "hard stop",
        }
    }

    fn index(self) -> usize {
        // `ALL` lists every variant once, so the search always succeeds.
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    pub(crate) fn from_status(status: u16) -> Self {
        match status {
            503 => ErrorKind::Status503,
            400 => ErrorKind::Status400,
            404 => ErrorKind::Status404,
            _ => ErrorKind::StatusOther,
        }
    }
}

/// A distribution of signed durations (microseconds, as `i32`: ±35 minutes), of which the
/// first `cap` are kept for percentiles; the count and the maximum cover all of them.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    kept: Vec<i32>,
    cap: usize,
    count: u64,
    dropped: u64,
    max: Option<i64>,
}

impl Samples {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            ..Self::default()
        }
    }

    /// Adds one sample, `us` microseconds (negative for "early").
    pub(crate) fn push(&mut self, us: i64) {
        self.count += 1;
        self.max = Some(self.max.map_or(us, |m| m.max(us)));
        if self.kept.len() < self.cap {
            // Saturates: a sample beyond ±35 minutes is an error elsewhere, not a number here.
            let clamped = us.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
            self.kept.push(i32::try_from(clamped).unwrap_or(i32::MAX));
        } else {
            self.dropped += 1;
        }
    }

    pub(crate) fn push_duration(&mut self, d: Duration) {
        self.push(i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    }

    pub(crate) fn merge(&mut self, other: Samples) {
        self.kept.extend(other.kept);
        self.count += other.count;
        self.dropped += other.dropped;
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Samples added, kept or not.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Samples not kept for the percentiles.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The largest sample, microseconds.
    pub(crate) fn max_us(&self) -> Option<i64> {
        self.max
    }

    /// Sorts the kept samples; call once before [`Samples::percentile_us`].
    pub(crate) fn sort(&mut self) {
        self.kept.sort_unstable();
    }

    /// Nearest-rank percentile (`q` in 0..=1) of the kept samples, microseconds, after
    /// [`Samples::sort`].
    pub(crate) fn percentile_us(&self, q: f64) -> Option<i64> {
        let n = self.kept.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.kept.get(rank - 1).map(|us| i64::from(*us))
    }
}

/// A non-negative microsecond count as a [`Duration`].
fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// What one worker (or, merged, the whole run) measured.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Completed HTTP exchanges (any status).
    pub(crate) requests: u64,
    /// Bytes received at the HTTP layer, heads included (see each client).
    pub(crate) bytes: u64,
    /// Connections opened (TCP, or QUIC for HTTP/3).
    pub(crate) connects: u64,
    /// Parts received whole after their announcement.
    pub(crate) parts: u64,
    /// Blocking playlist reloads answered 200.
    pub(crate) reloads: u64,
    /// Full (non-blocking) media playlist fetches answered 200.
    pub(crate) full_playlists: u64,
    /// DASH: MPDs fetched and parsed.
    pub(crate) mpds: u64,
    /// DASH: initialization segments received.
    pub(crate) inits: u64,
    /// DASH: request → response head of each media segment.
    pub(crate) ttfb: Samples,
    /// DASH: last byte of each media segment − the segment's end on the MPD's timeline.
    /// Plain HLS: last byte of each segment − its first sighting in a playlist (see `plain`).
    pub(crate) lateness: Samples,
    /// Plain HLS: segments received.
    pub(crate) segments: u64,
    /// Plain HLS: request sent → body received, for every request answered 200.
    pub(crate) request_time: Samples,
    errors: [u64; ErrorKind::ALL.len()],
    first_error: [Option<String>; ErrorKind::ALL.len()],
    /// The latency of `parts` (HLS), or of what the load measures (acks, requests).
    latency: Samples,
}

impl Stats {
    /// Keeps at most `sample_cap` samples per distribution (the maximum is tracked over all).
    pub(crate) fn new(sample_cap: usize) -> Self {
        Self {
            latency: Samples::new(sample_cap),
            ttfb: Samples::new(sample_cap),
            lateness: Samples::new(sample_cap),
            request_time: Samples::new(sample_cap),
            ..Self::default()
        }
    }

    pub(crate) fn error(&mut self, kind: ErrorKind, detail: &str) {
        let i = kind.index();
        self.errors[i] += 1;
        if self.first_error[i].is_none() {
            self.first_error[i] = Some(detail.to_owned());
        }
    }

    pub(crate) fn part_latency(&mut self, latency: Duration) {
        self.parts += 1;
        self.latency.push_duration(latency);
    }

    pub(crate) fn merge(&mut self, other: Stats) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.connects += other.connects;
        self.parts += other.parts;
        self.reloads += other.reloads;
        self.full_playlists += other.full_playlists;
        self.mpds += other.mpds;
        self.inits += other.inits;
        self.segments += other.segments;
        for (i, n) in other.errors.iter().enumerate() {
            self.errors[i] += n;
        }
        for (mine, theirs) in self.first_error.iter_mut().zip(other.first_error) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        self.latency.merge(other.latency);
        self.ttfb.merge(other.ttfb);
        self.lateness.merge(other.lateness);
        self.request_time.merge(other.request_time);
    }

    pub(crate) fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// `(kind, count, first detail)` for every kind that occurred.
    pub(crate) fn errors(&self) -> impl Iterator<Item = (ErrorKind, u64, Option<&str>)> + '_ {
        ErrorKind::ALL
            .iter()
            .zip(self.errors)
            .zip(&self.first_error)
            .filter(|((_, n), _)| *n > 0)
            .map(|((k, n), d)| (*k, n, d.as_deref()))
    }

    pub(crate) fn samples_dropped(&self) -> u64 {
        self.latency.dropped()
    }

    pub(crate) fn max_latency(&self) -> Duration {
        self.latency.max_us().map_or(Duration::ZERO, micros)
    }

    /// Sorts the samples of every distribution; call once before the percentiles.
    pub(crate) fn sort_samples(&mut self) {
        self.latency.sort();
        self.ttfb.sort();
        self.lateness.sort();
        self.request_time.sort();
    }

    /// Nearest-rank percentile (`q` in 0..=1) of the kept latency samples, after
    /// [`Stats::sort_samples`].
    pub(crate) fn percentile(&self, q: f64) -> Option<Duration> {
        self.latency.percentile_us(q).map(micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let mut a = Stats::new(3);
        for ms in [5, 1, 3, 4] {
            a.part_latency(Duration::from_millis(ms));
        }
        assert_eq!(a.samples_dropped(), 1);
        assert_eq!(a.max_latency(), Duration::from_millis(5));
        let mut b = Stats::new(10);
        b.part_latency(Duration::from_millis(2));
        b.error(ErrorKind::Status503, "first");
        b.error(ErrorKind::Status503, "second");
        a.merge(b);
        a.sort_samples();
        assert_eq!(a.parts, 5);
        assert_eq!(a.percentile(0.5), Some(Duration::from_millis(2)));
        assert_eq!(a.percentile(1.0), Some(Duration::from_millis(5)));
        assert_eq!(a.percentile(0.0), Some(Duration::from_millis(1)));
        assert_eq!(a.errors_total(), 2);
        let e: Vec<_> = a.errors().collect();
        assert_eq!(e, vec![(ErrorKind::Status503, 2, Some("first"))]);
    }

    #[test]
    fn signed_samples() {
        let mut a = Samples::new(2);
        a.push(-3000);
        a.push(5000);
        let mut b = Samples::new(2);
        b.push(-7000);
        b.push(9000);
        b.push(1000);
        a.merge(b);
        a.sort();
        assert_eq!((a.count(), a.dropped()), (5, 1));
        assert_eq!(a.max_us(), Some(9000));
        assert_eq!(a.percentile_us(0.0), Some(-7000));
        assert_eq!(a.percentile_us(0.5), Some(-3000));
        assert_eq!(a.percentile_us(1.0), Some(9000));
        assert_eq!(Samples::new(1).percentile_us(0.5), None);
    }
}
