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
    /// The viewer was still running at the hard stop (duration + 10 s).
    HardStop,
}

impl ErrorKind {
    pub(crate) const ALL: [ErrorKind; 13] = [
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
    errors: [u64; ErrorKind::ALL.len()],
    first_error: [Option<String>; ErrorKind::ALL.len()],
    /// Announcement → receipt latencies, microseconds; at most `sample_cap` are kept.
    samples: Vec<u32>,
    sample_cap: usize,
    samples_dropped: u64,
    max_latency: Duration,
}

impl Stats {
    /// Keeps at most `sample_cap` latency samples (the maximum is tracked over all of them).
    pub(crate) fn new(sample_cap: usize) -> Self {
        Self {
            sample_cap,
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
        self.max_latency = self.max_latency.max(latency);
        if self.samples.len() < self.sample_cap {
            let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
            self.samples.push(us);
        } else {
            self.samples_dropped += 1;
        }
    }

    pub(crate) fn merge(&mut self, other: Stats) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.connects += other.connects;
        self.parts += other.parts;
        self.reloads += other.reloads;
        self.full_playlists += other.full_playlists;
        for (i, n) in other.errors.iter().enumerate() {
            self.errors[i] += n;
        }
        for (mine, theirs) in self.first_error.iter_mut().zip(other.first_error) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        self.samples.extend(other.samples);
        self.samples_dropped += other.samples_dropped;
        self.max_latency = self.max_latency.max(other.max_latency);
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
        self.samples_dropped
    }

    pub(crate) fn max_latency(&self) -> Duration {
        self.max_latency
    }

    /// Sorts the samples; call once before [`Stats::percentile`].
    pub(crate) fn sort_samples(&mut self) {
        self.samples.sort_unstable();
    }

    /// Nearest-rank percentile (`q` in 0..=1) of the kept samples, after [`Stats::sort_samples`].
    pub(crate) fn percentile(&self, q: f64) -> Option<Duration> {
        let n = self.samples.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.samples
            .get(rank - 1)
            .map(|us| Duration::from_micros(u64::from(*us)))
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
}
