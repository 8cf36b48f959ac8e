//! `zerocast-load`: load generators for zerocast, each printing one table.
//!
//! `zerocast-load hls` runs LL-HLS viewers against a stream: W worker threads, each viewer a
//! task with one connection following the live edge with blocking playlist reloads and
//! fetching every new part (see `hls`). The protocol follows the URL and flags: `http://` is
//! HTTP/1.1 on plain TCP, `https://` HTTP/1.1 over TLS, `https://` with `--http2` HTTP/2 and
//! with `--http3` HTTP/3 (QUIC on UDP of the URL's port). HTTP/1.1 and HTTP/2 viewers run on
//! monoio workers, HTTP/3 viewers on one current-thread tokio runtime per worker (quinn needs
//! tokio). The server's certificate must be trusted by the system's CAs, `--cafile`, or
//! `--insecure`; one handshake before the run checks it. It reports request and byte rates,
//! part latency from announcement (the blocking reload's response is complete) to full
//! receipt of the part, errors by kind, and the CPU and memory of the server and of itself.
//!
//! ```text
//! main thread ── spawns ──▶ worker 0 (monoio / tokio) ─ viewer tasks ─┐
//!   samples /proc/PID        worker 1 (monoio / tokio) ─ viewer tasks ─┼─▶ server
//!   merges Stats ◀── join ── …                                         ┘   (h1, TLS h1, h2, h3)
//! ```
//!
//! `zerocast-load dash` runs low-latency DASH viewers the same way (same protocols, workers
//! and flags): each fetches the MPD every `minimumUpdatePeriod` on one connection and, on one
//! connection per track (video, audio), the newest segment the MPD announces, read to its
//! end while the server writes it, then the next number, and so on (see `dash`). It reports
//! segment time to first byte and lateness (last byte − the segment's end on the MPD's
//! timeline, on the server's clock from its `UTCTiming`), MPD and init fetches, errors by
//! kind, and the CPU and memory of the server and of itself.
//!
//! `zerocast-load plain` runs plain-HLS viewers the same way (same protocols, workers and
//! flags), against zerocast or any other HLS server (nginx-rtmp, say): each polls the media
//! playlist about once per target duration and fetches each new segment once, like a player
//! without the low-latency extensions (see `plain`). It reports request time (sent → body
//! received), segment lateness (received − the first time any viewer saw it listed), errors
//! by kind, and the CPU and memory of the server and of itself.
//!
//! `zerocast-load chat` runs N WebSocket clients of the social API, each its own user, sending
//! direct messages to each other at a fixed total rate (see `chat`). It reports send → ack and
//! send → delivery latency, losses (acked but never delivered), errors by kind, and the CPU and
//! memory of the server and of itself.
//!
//! `zerocast-load graph` builds a follow graph through the social API (N users with profiles,
//! M follow edges whose targets are Zipf-distributed, so a few accounts have very many
//! followers) and then loads it for S seconds with C workers: mostly follower and following
//! list pages and counts of Zipf-chosen (popular) accounts, some recommendations, and a trickle
//! of follows and unfollows (see `graph`). It reports build throughput, latency per request
//! kind, the server's follower-cache hit rate (from its `/metrics`), and the CPU and memory of
//! the server and of itself.
//!
//! Exit status: 0 when the run saw no errors (and, for `chat`, no losses), 1 when it saw some,
//! 2 on bad arguments or setup. `hls` does not play media, fetch segments or preload hints, or
//! check media bytes; `dash` and `plain` play nothing and do not check media bytes either.

// This binary's output is its report table; printing to stdout is its job.
#![allow(clippy::print_stdout)]

mod chat;
mod client;
mod dash;
mod graph;
mod h2;
mod h3;
mod hls;
mod mpd;
mod plain;
mod procfs;
mod rng;
mod stats;
mod tls;
mod viewers;
/// The edge's sans-IO HTTP/1.1 response parser (`edge/src/relay/wire.rs`), compiled in: it
/// needs only `bytes` and `httparse`, and this crate does not link the server.
#[path = "../../edge/src/relay/wire.rs"]
#[allow(dead_code, unreachable_pub)]
mod wire;

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};

use crate::procfs::Pid;
use crate::stats::{Samples, Stats};
use crate::tls::Trust;
use crate::viewers::Proto;

/// What the viewers play.
#[derive(Debug, Clone)]
enum Mode {
    /// LL-HLS: blocking playlist reloads and every new part (see `hls`).
    Hls,
    /// Low-latency DASH: the MPD and each track's segments as they are written (see `dash`).
    Dash(dash::Setup),
    /// Plain HLS: the media playlist once per target duration, each new segment once (see
    /// `plain`).
    Plain(plain::PlainHls),
}

/// Load generators for zerocast.
#[derive(Debug, Parser)]
#[command(name = "zerocast-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// LL-HLS viewers following one live stream with blocking playlist reloads.
    Hls(ViewerArgs),
    /// Low-latency DASH viewers following one live stream's MPD and segments.
    Dash(DashArgs),
    /// Plain-HLS viewers polling a media playlist and fetching each new segment once (any
    /// HLS server: zerocast, nginx-rtmp, ...).
    Plain(ViewerArgs),
    /// WebSocket clients of the social API sending direct messages to each other.
    Chat(ChatArgs),
    /// Builds a power-law follow graph through the social API, then reads and changes it.
    Graph(GraphArgs),
}

#[derive(Debug, Args)]
struct ViewerArgs {
    /// Multivariant playlist (hls, plain), media playlist (plain) or MPD (dash):
    /// http://127.0.0.1:8080/live/NAME/index.m3u8
    /// for HTTP/1.1, or https://127.0.0.1:8443/live/NAME/index.m3u8 for HTTP/1.1 over TLS
    /// (ALPN http/1.1), HTTP/2 with --http2, HTTP/3 with --http3 (UDP, same port).
    #[arg(long)]
    url: String,
    /// HTTP/2 over TLS (ALPN h2), one connection per viewer; needs an https URL.
    #[arg(long, conflicts_with = "http3")]
    http2: bool,
    /// HTTP/3 over QUIC, one connection per viewer, on UDP of the URL's port; needs an https
    /// URL.
    #[arg(long)]
    http3: bool,
    /// Accept any server certificate (a self-signed test certificate, say) without checking.
    #[arg(long, conflicts_with = "cafile")]
    insecure: bool,
    /// Trust the certificates in this PEM file (e.g. the server's self-signed one) instead of
    /// the system's CAs.
    #[arg(long)]
    cafile: Option<PathBuf>,
    /// Concurrent viewers: one connection each for hls and plain, one per track plus one for
    /// the MPD for dash.
    #[arg(long, default_value_t = 100)]
    viewers: u64,
    /// Seconds to keep issuing requests; viewers still running 10 s later are abandoned.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Most viewers per worker thread; without --workers, starts more workers if needed.
    #[arg(long)]
    connections_per_core: Option<u64>,
    /// Server process to report CPU and RSS for.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connect, TLS handshake, read and write timeout, seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Most part-latency samples kept (u32 microseconds each) for the percentiles.
    #[arg(long, default_value_t = 2_000_000)]
    max_samples: usize,
}

#[derive(Debug, Args)]
struct DashArgs {
    #[command(flatten)]
    viewers: ViewerArgs,
    /// Request each segment at its availability time (end − availabilityTimeOffset), as the
    /// MPD's timing model says, instead of as soon as the previous one is received.
    #[arg(long)]
    at_availability: bool,
    /// Refresh the MPD at most this often, milliseconds, whatever its minimumUpdatePeriod
    /// (to measure what the refreshes cost the server; 0: as the MPD says).
    #[arg(long, default_value_t = 0)]
    min_update_period: u64,
}

#[derive(Debug, Args)]
struct ChatArgs {
    /// WebSocket endpoint of the social API (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:8090/api/v1/ws")]
    url: String,
    /// File holding the server's token secret (DATA_DIR/jwt-secret), used as is.
    #[arg(long, conflicts_with = "secret", required_unless_present = "secret")]
    secret_file: Option<PathBuf>,
    /// The server's token secret.
    #[arg(long)]
    secret: Option<String>,
    /// Concurrent clients, each its own user with one WebSocket.
    #[arg(long, default_value_t = 100)]
    clients: u64,
    /// Messages per second in total, spread evenly over time and over the clients.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds to send for (after every client is connected).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Server process to report CPU and RSS for.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connect and write timeout, seconds; connecting all clients may take 3 times this.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Connections opened at a time while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Tokio worker threads (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Most latency samples kept per measure (u32 microseconds each) for the percentiles.
    #[arg(long, default_value_t = 2_000_000)]
    max_samples: usize,
}

#[derive(Debug, Args)]
struct GraphArgs {
    /// Base URL of the social API (http:// only).
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    api: String,
    /// File holding the server's token secret (DATA_DIR/jwt-secret), used as is.
    #[arg(long, conflicts_with = "secret", required_unless_present = "secret")]
    secret_file: Option<PathBuf>,
    /// The server's token secret.
    #[arg(long)]
    secret: Option<String>,
    /// Users, each with a profile; user ids come from --seed.
    #[arg(long, default_value_t = 10_000)]
    users: u32,
    /// Follow edges (distinct, no self-follows); targets are Zipf-distributed.
    #[arg(long, default_value_t = 100_000)]
    edges: u64,
    /// Seconds of mixed reads and writes after the build.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Concurrent requests (one keep-alive connection each), in the build and the run.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seed of the user ids and the edges: the same seed, users and edges give the same graph.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Zipf exponent of the follow targets and of the accounts read.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Follows and unfollows per thousand requests of the run (the trickle; the rest are reads).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=1000))]
    write_permille: u64,
    /// Reuse a graph built before with the same --seed, --users and --edges.
    #[arg(long)]
    skip_build: bool,
    /// Before the run, read every user's first pages and counts once (the cache's steady state;
    /// without it the run starts from a cold cache and the long tail of accounts misses).
    #[arg(long)]
    warm: bool,
    /// After the closed-loop run, one open-loop run of --duration s per rate given (requests/s
    /// in all, comma-separated): Poisson arrivals paced by a thread of their own (microsecond
    /// timing) and spread over the --concurrency connections, latency measured from each
    /// request's due time.
    #[arg(long, value_delimiter = ',')]
    rate: Vec<f64>,
    /// Most seconds the build may take; what is not done by then counts as errors.
    #[arg(long, default_value_t = 1800)]
    build_timeout: u64,
    /// Server process to report CPU and RSS for.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connect, read and write timeout, seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Tokio worker threads (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Most latency samples kept per request kind (u32 microseconds each).
    #[arg(long, default_value_t = 2_000_000)]
    max_samples: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Hls(args) => viewer_load(&args, Load::Hls),
        Command::Dash(args) => viewer_load(&args.viewers, Load::Dash(&args)),
        Command::Plain(args) => viewer_load(&args, Load::Plain),
        Command::Chat(args) => chat::run(&args).map(|report| {
            print!("{}", report.render());
            report.failures()
        }),
        Command::Graph(args) => graph::run(&args).map(|report| {
            print!("{}", report.render());
            report.failures()
        }),
    };
    match res {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("zerocast-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The token secret from `--secret` or `--secret-file` (the file's bytes as they are, as the
/// server reads them).
fn read_secret(file: Option<&std::path::Path>, secret: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let bytes = match (file, secret) {
        (_, Some(s)) => s.as_bytes().to_vec(),
        (Some(path), None) => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => bail!("give --secret-file or --secret"),
    };
    if bytes.is_empty() {
        bail!("the token secret is empty");
    }
    Ok(bytes)
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    https: bool,
    addr: SocketAddr,
    /// `host[:port]` as written: the `Host` header.
    authority: String,
    /// The host alone (an IPv6 address keeps its brackets).
    host: String,
    /// Path and query, `/` at least.
    path: String,
}

/// `http[s]://host[:port]/path` → [`Url`].
fn parse_url(url: &str) -> anyhow::Result<Url> {
    let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        bail!("only http:// and https:// URLs are supported");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        bail!("no host in {url}");
    }
    let has_port = !authority.ends_with(']') && authority.contains(':');
    let host = if has_port {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    } else {
        authority
    };
    let with_port = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if https { 443 } else { 80 })
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let path = if path.is_empty() { "/" } else { path };
    Ok(Url {
        https,
        addr,
        authority: authority.to_owned(),
        host: host.to_owned(),
        path: path.to_owned(),
    })
}

/// The protocol of `args`, and for TLS the client configuration.
fn protocol(
    args: &ViewerArgs,
    url: &Url,
) -> anyhow::Result<(Proto, Option<Arc<rustls::ClientConfig>>)> {
    let proto = match (url.https, args.http2, args.http3) {
        (false, false, false) => return Ok((Proto::Http1, None)),
        (false, _, _) => bail!("--http2 and --http3 need an https:// URL"),
        (true, false, false) => Proto::Https1,
        (true, true, _) => Proto::H2,
        (true, false, true) => Proto::H3,
    };
    let trust = match (&args.cafile, args.insecure) {
        (Some(path), _) => Trust::CaFile(path.clone()),
        (None, true) => Trust::Insecure,
        (None, false) => Trust::System,
    };
    let alpn = match proto {
        Proto::H2 => tls::ALPN_H2,
        Proto::H3 => tls::ALPN_H3,
        Proto::Http1 | Proto::Https1 => tls::ALPN_HTTP1,
    };
    let config = tls::client_config(&trust, alpn, proto == Proto::H3)?;
    Ok((proto, Some(config)))
}

/// Which viewer load a command runs.
#[derive(Debug, Clone, Copy)]
enum Load<'a> {
    Hls,
    Dash(&'a DashArgs),
    Plain,
}

/// Runs a viewer load and prints its table; returns the number of errors.
fn viewer_load(args: &ViewerArgs, load: Load<'_>) -> anyhow::Result<u64> {
    let url = parse_url(&args.url)?;
    if args.viewers == 0 || args.duration == 0 {
        bail!("--viewers and --duration must be at least 1");
    }
    let (proto, tls) = protocol(args, &url)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut workers = args.workers.unwrap_or(cores).max(1) as u64;
    if let Some(per) = args.connections_per_core {
        let needed = args.viewers.div_ceil(per.max(1));
        if args.workers.is_some() && needed > workers {
            bail!(
                "{} viewers on {workers} workers exceeds --connections-per-core {per}",
                args.viewers
            );
        }
        workers = workers.max(needed);
    }
    let workers = workers.min(args.viewers);

    let mut plan = viewers::Plan {
        proto,
        addr: url.addr,
        host: url.authority,
        server_name: url.host,
        tls,
        path: url.path,
        timeout: Duration::from_secs(args.timeout),
        // Set below, once the preflight is done.
        start: Instant::now(),
        end: Instant::now(),
        hard_stop: Instant::now(),
        sample_cap: args.max_samples.div_ceil(workers as usize),
    };
    // Requests before the run: an untrusted certificate or a server that does not speak the
    // protocol (or, for DASH, serves no MPD it can follow; for plain HLS, no media playlist
    // with a segment) is one clear error, not one per request.
    let mode = match load {
        Load::Hls => {
            viewers::preflight(&plan, &[&plan.path])?;
            Mode::Hls
        }
        Load::Dash(d) => {
            let min_update = Duration::from_millis(d.min_update_period);
            Mode::Dash(dash::setup(&plan, !d.at_availability, min_update)?)
        }
        Load::Plain => Mode::Plain(plain::setup(&plan)?),
    };

    let server = args.server_pid.map(Pid::Other);
    let server_cpu0 = server.and_then(procfs::cpu_time);
    if server.is_some() && server_cpu0.is_none() {
        bail!("cannot read /proc/{}/stat", args.server_pid.unwrap_or(0));
    }
    let server_rss0 = server.and_then(procfs::rss);
    let my_cpu0 = procfs::cpu_time(Pid::Me);
    let wall0 = Instant::now();

    // Leave the workers a moment to build their runtimes, so every viewer starts on time.
    let start = wall0 + Duration::from_millis(50);
    let end = start + Duration::from_secs(args.duration);
    (plan.start, plan.end, plan.hard_stop) = (start, end, end + Duration::from_secs(10));
    let mut threads = Vec::new();
    let mut first = 0;
    for w in 0..workers {
        // Spread viewers evenly: the first `viewers % workers` workers take one more.
        let n = args.viewers / workers + u64::from(w < args.viewers % workers);
        let (plan, mode) = (plan.clone(), mode.clone());
        let t = std::thread::Builder::new()
            .name(format!("load-{w}"))
            .spawn(move || match mode {
                Mode::Hls => viewers::run_worker(plan, hls::Hls, first, n),
                Mode::Dash(setup) => viewers::run_worker(plan, setup, first, n),
                Mode::Plain(plain) => viewers::run_worker(plan, plain, first, n),
            })
            .context("spawning a worker thread")?;
        threads.push(t);
        first += n;
    }

    // Sample the server's RSS every second while the workers run.
    let mut rss_max = server_rss0;
    let mut next_sample = Instant::now();
    while threads.iter().any(|t| !t.is_finished()) {
        if Instant::now() >= next_sample {
            if let Some(rss) = server.and_then(procfs::rss) {
                rss_max = Some(rss_max.unwrap_or(0).max(rss));
            }
            next_sample += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let finished = Instant::now();
    let server_cpu1 = server.and_then(procfs::cpu_time);
    let my_cpu1 = procfs::cpu_time(Pid::Me);

    let mut total = Stats::new(0);
    for t in threads {
        match t.join() {
            Ok(stats) => total.merge(stats?),
            Err(_) => bail!("a worker thread panicked"),
        }
    }
    total.sort_samples();

    let wall = finished - wall0;
    let cpu = |a, b| cpu_share(a, b, wall);
    let report = Report {
        url: &args.url,
        proto: proto.label(),
        mode: &mode,
        viewers: args.viewers,
        workers,
        duration: args.duration,
        ran: finished.saturating_duration_since(start),
        stats: &total,
        server_cpu: cpu(server_cpu0, server_cpu1),
        server_rss: rss_max.map(|m| (m, server_rss0.unwrap_or(0))),
        my_cpu: cpu(my_cpu0, my_cpu1),
    };
    print!("{}", report.render());
    Ok(total.errors_total())
}

/// % of one core used between two readings `wall` apart: (total, user, system).
fn cpu_share(
    a: Option<procfs::CpuTime>,
    b: Option<procfs::CpuTime>,
    wall: Duration,
) -> Option<(f64, f64, f64)> {
    let (a, b) = a.zip(b)?;
    let pct = |d: Duration| d.as_secs_f64() / wall.as_secs_f64().max(1e-9) * 100.0;
    let user = pct(b.user.saturating_sub(a.user));
    let system = pct(b.system.saturating_sub(a.system));
    Some((user + system, user, system))
}

/// A [`cpu_share`] for a table.
fn fmt_cpu((total, user, system): (f64, f64, f64)) -> String {
    format!("{total:.1} % of one core (user {user:.1}, system {system:.1})")
}

/// A signed microsecond count for a table, in ms, `-` when there is none.
fn fmt_us(us: Option<i64>) -> String {
    us.map_or_else(|| "-".to_owned(), |us| format!("{:.2} ms", us as f64 / 1e3))
}

/// A latency for a table, `-` when there is none.
fn fmt_ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.2} ms", d.as_secs_f64() * 1e3),
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `title`, then one aligned `key  value` line per row, then the first error of each kind.
fn render_table<'a>(
    title: &str,
    rows: &[(String, String)],
    first_errors: impl Iterator<Item = (&'a str, &'a str)>,
) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = format!("{title}\n");
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<width$}{v}");
    }
    let mut details = first_errors.peekable();
    if details.peek().is_some() {
        out.push_str("first error of each kind:\n");
        for (kind, detail) in details {
            let _ = writeln!(out, "  {kind}: {detail}");
        }
    }
    out
}

/// Everything the final table shows.
#[derive(Debug)]
struct Report<'a> {
    url: &'a str,
    /// The protocol, for the title.
    proto: &'static str,
    /// What the viewers played: which rows the table has.
    mode: &'a Mode,
    viewers: u64,
    workers: u64,
    duration: u64,
    /// From the first viewer's start until every worker finished.
    ran: Duration,
    stats: &'a Stats,
    /// % of one core: (total, user, system).
    server_cpu: Option<(f64, f64, f64)>,
    /// (max sampled, at start), bytes.
    server_rss: Option<(u64, u64)>,
    my_cpu: Option<(f64, f64, f64)>,
}

impl Report<'_> {
    fn render(&self) -> String {
        let s = self.stats;
        let secs = self.ran.as_secs_f64().max(1e-9);
        let mut rows: Vec<(String, String)> = vec![
            (
                "viewers".into(),
                format!("{} ({} workers)", self.viewers, self.workers),
            ),
            (
                "duration".into(),
                format!("{} s (ran {:.2} s)", self.duration, self.ran.as_secs_f64()),
            ),
            ("requests".into(), s.requests.to_string()),
            (
                "requests/s".into(),
                format!("{:.1}", s.requests as f64 / secs),
            ),
            ("connections opened".into(), s.connects.to_string()),
            (
                "bytes received".into(),
                format!("{} ({:.1} MiB)", s.bytes, mib(s.bytes)),
            ),
            (
                "bytes/s".into(),
                format!(
                    "{:.0} ({:.2} Mb/s)",
                    s.bytes as f64 / secs,
                    s.bytes as f64 * 8.0 / secs / 1e6
                ),
            ),
        ];
        match self.mode {
            Mode::Hls => hls_rows(s, &mut rows),
            Mode::Dash(setup) => dash_rows(s, &setup.clock, &mut rows),
            Mode::Plain(_) => plain_rows(s, &mut rows),
        }
        rows.push(("errors".into(), s.errors_total().to_string()));
        for (kind, n, _) in s.errors() {
            rows.push((format!("  {}", kind.label()), n.to_string()));
        }
        let cpu = fmt_cpu;
        if let Some(c) = self.server_cpu {
            rows.push(("server CPU".into(), cpu(c)));
        }
        if let Some((max, start)) = self.server_rss {
            rows.push((
                "server RSS max".into(),
                format!("{:.1} MiB (at start {:.1} MiB)", mib(max), mib(start)),
            ));
        }
        if let Some(c) = self.my_cpu {
            rows.push(("load generator CPU".into(), cpu(c)));
        }

        let command = match self.mode {
            Mode::Hls => "hls",
            Mode::Dash(_) => "dash",
            Mode::Plain(_) => "plain",
        };
        render_table(
            &format!("zerocast-load {command} {} ({})", self.url, self.proto),
            &rows,
            s.errors().filter_map(|(k, _, d)| Some((k.label(), d?))),
        )
    }
}

/// The HLS rows: parts and their latency, playlists.
fn hls_rows(s: &Stats, rows: &mut Vec<(String, String)>) {
    let ms = fmt_ms;
    rows.extend([
        ("parts received".into(), s.parts.to_string()),
        ("part latency p50".into(), ms(s.percentile(0.50))),
        ("part latency p99".into(), ms(s.percentile(0.99))),
        ("part latency p999".into(), ms(s.percentile(0.999))),
        (
            "part latency max".into(),
            ms((s.parts > 0).then(|| s.max_latency())),
        ),
    ]);
    if s.samples_dropped() > 0 {
        rows.push((
            "latency samples".into(),
            format!(
                "{} dropped; percentiles from the first {}",
                s.samples_dropped(),
                s.parts - s.samples_dropped()
            ),
        ));
    }
    rows.push(("playlists (blocking)".into(), s.reloads.to_string()));
    rows.push(("playlists (full)".into(), s.full_playlists.to_string()));
}

/// The rows of a signed-duration distribution: each percentile in `qs`, the maximum, and how
/// many samples were not kept.
fn dist_rows(rows: &mut Vec<(String, String)>, name: &str, d: &Samples, qs: &[f64]) {
    for q in qs {
        let label = format!("p{}", q * 100.0).replace('.', "");
        rows.push((format!("{name} {label}"), fmt_us(d.percentile_us(*q))));
    }
    rows.push((format!("{name} max"), fmt_us(d.max_us())));
    if d.dropped() > 0 {
        rows.push((
            format!("{name} samples"),
            format!(
                "{} dropped; percentiles from the first {}",
                d.dropped(),
                d.count() - d.dropped()
            ),
        ));
    }
}

/// The plain-HLS rows: playlists, segments, request time and segment lateness.
fn plain_rows(s: &Stats, rows: &mut Vec<(String, String)>) {
    rows.push(("playlists".into(), s.full_playlists.to_string()));
    rows.push(("segments received".into(), s.segments.to_string()));
    dist_rows(rows, "request time", &s.request_time, &[0.5, 0.99, 0.999]);
    dist_rows(rows, "segment lateness", &s.lateness, &[0.5, 0.99, 0.999]);
}

/// The DASH rows: segments, their time to first byte and lateness, MPDs and inits.
fn dash_rows(s: &Stats, clock: &str, rows: &mut Vec<(String, String)>) {
    rows.push(("segments received".into(), s.lateness.count().to_string()));
    dist_rows(rows, "segment TTFB", &s.ttfb, &[0.5, 0.99]);
    dist_rows(rows, "segment lateness", &s.lateness, &[0.5, 0.99, 0.999]);
    rows.push(("init segments".into(), s.inits.to_string()));
    rows.push(("MPDs".into(), s.mpds.to_string()));
    rows.push(("clock".into(), clock.to_owned()));
}

/// An in-process social server on the embedded defaults, for the load generators' own tests.
#[cfg(test)]
pub(crate) struct TestSocialServer {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    dir: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

#[cfg(test)]
impl TestSocialServer {
    /// Starts one with token secret `secret` and waits until it listens.
    pub(crate) fn start(secret: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("zerocast-load-test-{}", uuid::Uuid::new_v4()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut config =
            zerocast_social::SocialConfig::new(dir.clone(), secret.as_bytes().to_vec());
        config.api = ([127, 0, 0, 1], port).into();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            rt.block_on(zerocast_social::serve(config, async {
                let _ = stop_rx.await;
            }))
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self {
            port,
            dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

#[cfg(test)]
impl Drop for TestSocialServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = parse_url("http://127.0.0.1:8080/live/a/index.m3u8").unwrap();
        assert_eq!(u.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.path, "/live/a/index.m3u8");
        assert!(!u.https);
        let u = parse_url("http://[::1]").unwrap();
        assert_eq!(u.addr, "[::1]:80".parse().unwrap());
        assert_eq!(u.host, "[::1]");
        assert_eq!(u.path, "/");
        let u = parse_url("https://[::1]:8443/x").unwrap();
        assert_eq!(u.addr, "[::1]:8443".parse().unwrap());
        assert_eq!((u.https, u.host.as_str()), (true, "[::1]"));
        let u = parse_url("https://127.0.0.1/x").unwrap();
        assert_eq!(u.addr, "127.0.0.1:443".parse().unwrap());
        assert!(parse_url("ftp://x/").is_err());
    }

    #[test]
    fn picks_the_protocol() {
        let args = |extra: &[&str]| {
            let mut argv = vec!["zerocast-load", "hls", "--url", "x"];
            argv.extend_from_slice(extra);
            match Cli::parse_from(argv).command {
                Command::Hls(a) => a,
                _ => unreachable!(),
            }
        };
        let plain = parse_url("http://127.0.0.1:1/x").unwrap();
        let (proto, tls) = protocol(&args(&[]), &plain).unwrap();
        assert_eq!(proto, Proto::Http1);
        assert!(tls.is_none());
        assert!(protocol(&args(&["--http2"]), &plain).is_err());
        assert!(protocol(&args(&["--http3"]), &plain).is_err());
        assert!(
            Cli::try_parse_from(["zerocast-load", "hls", "--url", "x", "--http2", "--http3"])
                .is_err()
        );
    }

    #[test]
    fn renders_a_table() {
        let mut stats = Stats::new(10);
        stats.requests = 10;
        stats.part_latency(Duration::from_millis(3));
        stats.error(stats::ErrorKind::Status503, "GET /x: 503");
        stats.sort_samples();
        let r = Report {
            url: "http://h/live/a/index.m3u8",
            proto: Proto::Http1.label(),
            viewers: 1,
            workers: 1,
            duration: 1,
            ran: Duration::from_secs(2),
            stats: &stats,
            mode: &Mode::Hls,
            server_cpu: Some((12.34, 2.0, 10.34)),
            server_rss: Some((2 << 20, 1 << 20)),
            my_cpu: None,
        };
        let text = r.render();
        assert!(
            text.starts_with("zerocast-load hls http://h/live/a/index.m3u8 (HTTP/1.1)\n"),
            "{text}"
        );
        assert!(text.contains("  requests/s            5.0\n"), "{text}");
        assert!(text.contains("  part latency p50      3.00 ms\n"), "{text}");
        assert!(text.contains("    http 503            1\n"), "{text}");
        assert!(text.contains("  http 503: GET /x: 503\n"), "{text}");
        assert!(
            text.contains("server CPU            12.3 % of one core (user 2.0, system 10.3)\n"),
            "{text}"
        );
        assert!(
            text.contains("server RSS max        2.0 MiB (at start 1.0 MiB)"),
            "{text}"
        );
    }

    #[test]
    fn renders_a_plain_hls_table() {
        let mut stats = Stats::new(10);
        stats.requests = 4;
        stats.full_playlists = 2;
        stats.segments = 2;
        for ms in [1, 2, 3, 40] {
            stats.request_time.push_duration(Duration::from_millis(ms));
        }
        stats.lateness.push_duration(Duration::from_millis(500));
        stats.sort_samples();
        let r = Report {
            url: "http://h/hls/demo.m3u8",
            proto: Proto::Http1.label(),
            viewers: 1,
            workers: 1,
            duration: 1,
            ran: Duration::from_secs(2),
            stats: &stats,
            mode: &Mode::Plain(plain::PlainHls::default()),
            server_cpu: None,
            server_rss: None,
            my_cpu: None,
        };
        let text = r.render();
        assert!(
            text.starts_with("zerocast-load plain http://h/hls/demo.m3u8 (HTTP/1.1)\n"),
            "{text}"
        );
        assert!(text.contains("  playlists              2\n"), "{text}");
        assert!(text.contains("  segments received      2\n"), "{text}");
        assert!(
            text.contains("  request time p50       2.00 ms\n"),
            "{text}"
        );
        assert!(
            text.contains("  request time p99       40.00 ms\n"),
            "{text}"
        );
        assert!(
            text.contains("  segment lateness p99   500.00 ms\n"),
            "{text}"
        );
    }
}
