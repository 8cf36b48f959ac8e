//! Process-wide counters and latency histograms, rendered as Prometheus text at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
}

/// Upper bounds of the histogram buckets, in microseconds.
const BUCKETS_US: [u64; 20] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 35_000, 50_000, 75_000, 100_000, 150_000,
    200_000, 250_000, 300_000, 500_000, 1_000_000, 2_500_000, 10_000_000,
];

/// A fixed-bucket latency histogram (Prometheus `histogram`).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The smallest bucket bound below which `q` of the observations fall (an upper estimate).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count.load(Ordering::Relaxed);
        if total == 0 {
            return None;
        }
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= want {
                return Some(Duration::from_micros(BUCKETS_US[i]));
            }
        }
        None
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cum += b.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}le=\"{}\"}} {cum}",
                BUCKETS_US[i] as f64 / 1e6
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{}}} {}",
            labels.trim_end_matches(','),
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "{name}_count{{{}}} {count}",
            labels.trim_end_matches(',')
        );
    }
}

/// Process-wide metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [Histogram; 5],
    /// Bytes written to HTTP viewers.
    pub bytes_out: AtomicU64,
    /// Frame received → its CMAF chunk available to viewers.
    pub chunk_latency: Histogram,
    /// First frame of a part received → the part complete and listed.
    pub part_latency: Histogram,
    /// RTMP connections refused or closed for bad input.
    pub rtmp_errors: AtomicU64,
}

impl Metrics {
    /// Records a request's total time.
    pub fn observe(&self, kind: Kind, d: Duration) {
        let i = Kind::ALL.iter().position(|&k| k == kind).unwrap_or(4);
        self.requests[i].observe(d);
    }

    /// Prometheus text of the process-wide part.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# TYPE zerocast_http_request_duration_seconds histogram"
        );
        for (i, k) in Kind::ALL.iter().enumerate() {
            self.requests[i].render(
                out,
                "zerocast_http_request_duration_seconds",
                &format!("kind=\"{}\",", k.name()),
            );
        }
        let _ = writeln!(out, "# TYPE zerocast_chunk_latency_seconds histogram");
        self.chunk_latency
            .render(out, "zerocast_chunk_latency_seconds", "");
        let _ = writeln!(out, "# TYPE zerocast_part_latency_seconds histogram");
        self.part_latency
            .render(out, "zerocast_part_latency_seconds", "");
        let _ = writeln!(out, "# TYPE zerocast_rtmp_errors_total counter");
        let _ = writeln!(
            out,
            "zerocast_rtmp_errors_total {}",
            self.rtmp_errors.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds() {
        let h = Histogram::default();
        for ms in [1, 1, 1, 1, 1, 1, 1, 1, 1, 40] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.quantile(0.5), Some(Duration::from_micros(1_000)));
        assert_eq!(h.quantile(0.99), Some(Duration::from_micros(50_000)));
        let mut s = String::new();
        h.render(&mut s, "x", "");
        assert!(s.contains("x_count{} 10"), "{s}");
    }
}
