//! # zerocast-edge: the media server's IO
//!
//! The only media crate that does IO. It runs one monoio worker per core (io_uring, or epoll
//! where the kernel refuses io_uring), each accepting RTMP and HTTP connections on its own
//! SO_REUSEPORT listener, and shares packaged media across cores through the [`hub`].
//!
//! ```text
//! RTMP socket ─► ingest::ServerSession ─► hub::Stream (packager::Packager) ─► Media snapshot
//!                                                                              │ Notify
//! HTTP socket ◄─ writev(header, shared Bytes…) ◄─ http::route ◄───────────────┘
//! ```
//!
//! Protocol logic lives in the sans-IO crates (`zerocast-ingest`, `zerocast-packager`); this
//! crate owns sockets, timeouts, waiting and configuration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub mod background;
#[doc(hidden)]
pub mod bench;
pub mod config;
mod heap;
mod http;
pub mod hub;
mod iov;
pub mod limits;
mod memfd;
pub mod metrics;
pub mod notify;
pub mod publish;
pub mod relay;
mod rtmp;
pub mod server;
pub mod sources;
pub mod tls;
mod transport;
pub mod url;

use crate::config::Config;
use crate::hub::{Hub, Stream};
use crate::limits::{LogBudget, PerIp};
use crate::metrics::Metrics;
use crate::notify::Notify;
use crate::publish::PublishAuth;

/// Wall-clock now in Unix milliseconds (`EXT-X-PROGRAM-DATE-TIME`, stream epochs, the MPD's
/// `publishTime` and `/time`).
pub(crate) fn unix_ms() -> i64 {
    i64::try_from(zerocast_social::now_ms()).unwrap_or(i64::MAX)
}

/// State shared by every worker.
#[derive(Debug)]
pub struct Ctx {
    /// Effective configuration.
    pub config: Config,
    /// Every stream.
    pub hub: Hub,
    /// Counters and histograms.
    pub metrics: Metrics,
    shutdown: AtomicBool,
    /// Fired once when shutdown starts.
    pub shutdown_signal: Notify,
    /// Open connections per client address (`max-connections-per-ip`).
    pub per_ip: PerIp,
    /// Log lines for refused publishes (a flood of names or keys must not flood the log).
    pub publish_refusals: LogBudget,
    /// `Alt-Svc` value announcing HTTP/3 on every TCP response, when TLS is configured.
    pub alt_svc: Option<String>,
    /// Who may publish, and the keys of playback tokens.
    pub auth: PublishAuth,
    /// Edge mode: the followers of streams on the origins (`origin` set).
    pub relay: Option<relay::Relay>,
}

impl Ctx {
    /// Shared state for `config`, publishing under `auth`; `relay` makes this node an edge
    /// (of [`Config::origins`]).
    pub fn new(config: Config, auth: PublishAuth, relay: Option<relay::Relay>) -> Self {
        let metrics = Metrics::new(config.metrics_max_streams);
        let alt_svc = config
            .tls_files()
            .map(|_| format!("h3=\":{}\"; ma=86400", config.https.port()));
        Self {
            hub: Hub::new(config.packager(), metrics.stream_series())
                .with_max_streams(config.max_streams)
                .with_backup_gap(Duration::from_millis(config.backup_gap)),
            per_ip: PerIp::new(config.max_connections_per_ip),
            publish_refusals: LogBudget::new(20, 5),
            config,
            metrics,
            shutdown: AtomicBool::new(false),
            shutdown_signal: Notify::new(),
            alt_svc,
            auth,
            relay,
        }
    }

    /// Starts shutdown: listeners stop accepting, connections finish their current request.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.shutdown_signal.notify_all();
    }

    /// Shutdown has started.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// How long a blocking request for `stream` may be held: `block-limit` target durations.
    pub fn block_limit(&self, stream: &Stream) -> Duration {
        let td = stream
            .view()
            .playlist
            .as_ref()
            .map_or(self.config.segment_target as f64 / 1000.0, |p| {
                p.target_duration() as f64
            });
        Duration::from_secs_f64(td * f64::from(self.config.block_limit.max(1)))
    }
}
