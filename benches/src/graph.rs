//! Follow-graph load: build a power-law follow graph through the social API, then read and
//! change it with C concurrent workers for S seconds.
//!
//! ```text
//! seed ──▶ N user ids, M distinct edges (source uniform, target Zipf: rank 0 most followed)
//!   build: profiles  PUT /users/me/profile            ┐ C workers, one keep-alive
//!          edges     PUT /users/me/following/{to}     ┘ HTTP/1.1 connection each
//!   check: counts and first followers page of the 3 most followed accounts
//!   scrape /metrics ─▶ run S s: per request, by the mix below ─▶ scrape /metrics
//!   restore: re-follow the edges the trickle left unfollowed (so --skip-build can reuse it)
//! ```
//!
//! The run's mix, per request: 40 % first followers page (limit 50) and 25 % first following
//! page of a Zipf-chosen account (popular accounts are read far more often), 20 % its counts,
//! 10 % recommendations (limit 20) for a uniformly chosen viewer (of the reads), and a
//! follow/unfollow trickle of --write-permille (default 1 %) of all requests
//! (each worker unfollows a random edge of the built graph, then follows it again on its next
//! trickle request). Each request carries a token of a uniformly
//! chosen user (the one following or unfollowing for the trickle). Any status but 200, and any
//! I/O failure or timeout, is an error. The run stops issuing at S s; what is still running at
//! S + 30 s is abandoned ("hard stop").

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use uuid::Uuid;
use zerocast_social::auth::Keys;
use zerocast_social::id::UserId;

use crate::client::{malformed, ClientError, Response};
use crate::procfs::{self, CpuTime, Pid};
use crate::rng::Rng;
use crate::stats::{ErrorKind, Stats};
use crate::{cpu_share, fmt_cpu, fmt_ms, mib, parse_url, read_secret, render_table, GraphArgs};

/// What is still running this long after the run's end is abandoned.
const HARD_STOP_AFTER: Duration = Duration::from_secs(30);
/// Largest response head or body accepted.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Accounts whose counts and first followers page are checked after the build.
const CHECKED: usize = 3;
/// How often the build reports progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The request kinds of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Followers,
    Following,
    Counts,
    Recommendations,
    Follow,
    Unfollow,
}

impl Op {
    const ALL: [Op; 6] = [
        Op::Followers,
        Op::Following,
        Op::Counts,
        Op::Recommendations,
        Op::Follow,
        Op::Unfollow,
    ];

    fn label(self) -> &'static str {
        match self {
            Op::Followers => "followers",
            Op::Following => "following",
            Op::Counts => "counts",
            Op::Recommendations => "recommendations",
            Op::Follow => "follow",
            Op::Unfollow => "unfollow",
        }
    }
}

/// Runs the graph load; returns its report (errors of the run are in the report).
pub(crate) fn run(args: &GraphArgs) -> anyhow::Result<Report> {
    let api = parse_url(&args.api)?;
    if api.https {
        bail!("--api must be an http:// URL");
    }
    let (addr, host) = (api.addr, api.authority);
    if args.users < 2 || args.edges == 0 || args.duration == 0 || args.concurrency == 0 {
        bail!("--users must be at least 2, and --edges, --duration, --concurrency at least 1");
    }
    let n = u64::from(args.users);
    // Distinct pairs are drawn by rejection: keep the graph well below complete.
    if args.edges > n * (n - 1) / 4 {
        bail!("--edges {} is too dense for {n} users", args.edges);
    }
    if !(args.zipf > 0.0 && args.zipf.is_finite()) {
        bail!("--zipf must be above 0");
    }
    if args.rate.iter().any(|r| !(*r >= 1.0 && r.is_finite())) {
        bail!("--rate must be at least 1 request/s");
    }
    let secret = read_secret(args.secret_file.as_deref(), args.secret.as_deref())?;
    let server = args.server_pid.map(Pid::Other);
    if server.is_some() && server.and_then(procfs::cpu_time).is_none() {
        bail!("cannot read /proc/{}/stat", args.server_pid.unwrap_or(0));
    }

    let t0 = Instant::now();
    let zipf = Zipf::new(args.users as usize, args.zipf);
    let users = user_ids(args.users, args.seed);
    let edges = follow_edges(args.users, args.edges, &zipf, args.seed)?;
    let generated = t0.elapsed();
    let present = edges.iter().map(|_| AtomicBool::new(true)).collect();
    let plan = Arc::new(Plan {
        addr,
        host,
        timeout: Duration::from_secs(args.timeout.max(1)),
        keys: Keys::new(&secret),
        now_s: zerocast_social::now_ms() / 1000,
        ttl: args.build_timeout + args.duration + 3600,
        seed: args.seed,
        users,
        edges,
        present,
        zipf,
        sample_cap: args.max_samples.div_ceil(args.concurrency),
        write_permille: args.write_permille,
    });

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.unwrap_or(cores).max(1))
        .thread_name("graph-load")
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    // `block_on` runs `drive` on this (main) thread, so its /proc reads block no worker.
    let report = rt.block_on(drive(args, plan, server, generated));
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(report)
}

/// Builds (unless --skip-build), checks, runs, restores; measures all along.
async fn drive(
    args: &GraphArgs,
    plan: Arc<Plan>,
    server: Option<Pid>,
    generated: Duration,
) -> Report {
    let mut mon = Monitor::new(server);
    let rss_start = mon.rss_max;
    let conc = args.concurrency;
    let build = if args.skip_build {
        None
    } else {
        let deadline = Instant::now() + Duration::from_secs(args.build_timeout);
        let all_users = (0..args.users).collect();
        let profiles = run_phase(&plan, Job::Profile, all_users, conc, deadline, &mut mon).await;
        let all_edges = (0..plan.edges.len() as u32).collect();
        let edges = run_phase(&plan, Job::Follow, all_edges, conc, deadline, &mut mon).await;
        Some((profiles, edges))
    };
    let rss_built = server.and_then(procfs::rss);
    let mut http = Http::new(plan.addr, plan.host.clone(), plan.timeout);
    let top = check_top(&plan, &mut http).await;

    // Steady state: every account's first pages and counts cached once, as hours of traffic
    // with a 24 h TTL would leave them; the run then measures hits against that state.
    let warm = if args.warm {
        let deadline = Instant::now() + Duration::from_secs(args.build_timeout);
        let all_users = (0..args.users).collect();
        Some(run_phase(&plan, Job::Warm, all_users, conc, deadline, &mut mon).await)
    } else {
        None
    };
    let before = scrape(&mut http, &plan).await;
    let closed = run_mix(&plan, conc, args.duration, None, &mut mon).await;
    let after = scrape(&mut http, &plan).await;
    // Then the same mix at each offered rate (the cache as the closed run left it).
    let mut open = Vec::new();
    for &rate in &args.rate {
        open.push(run_mix(&plan, conc, args.duration, Some(rate), &mut mon).await);
    }
    let hard_stop = Instant::now() + HARD_STOP_AFTER;
    let cache = match (before, after) {
        (Ok(b), Ok(a)) => Ok(a.minus(&b)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };

    // Put the trickle's unfollowed edges back, so the graph is the built one again.
    let gone: Vec<u32> = (0..plan.edges.len() as u32)
        .filter(|i| !plan.present[*i as usize].load(Ordering::Acquire))
        .collect();
    let restore = if gone.is_empty() {
        None
    } else {
        Some(run_phase(&plan, Job::Follow, gone, conc, hard_stop, &mut mon).await)
    };
    let (followers, top_share) = shape(&plan);
    Report {
        api: args.api.clone(),
        users: args.users,
        edges: plan.edges.len() as u64,
        seed: args.seed,
        zipf: args.zipf,
        concurrency: conc,
        generated,
        most_followers: followers,
        top10_share: top_share,
        build,
        top,
        duration: args.duration,
        closed,
        open,
        restore,
        warm,
        cache,
        server_rss: mon
            .rss_max
            .map(|m| (m, rss_start.unwrap_or(0), rss_built.unwrap_or(0))),
    }
}

/// Everything the workers share.
#[derive(Debug)]
struct Plan {
    addr: SocketAddr,
    host: String,
    timeout: Duration,
    keys: Keys,
    now_s: u64,
    ttl: u64,
    seed: u64,
    users: Vec<Uuid>,
    /// (follower, followed), indices into `users`.
    edges: Vec<(u32, u32)>,
    /// Whether each edge is currently followed (the trickle toggles them).
    present: Vec<AtomicBool>,
    zipf: Zipf,
    /// Latency samples kept per worker and request kind.
    sample_cap: usize,
    /// Follows/unfollows per thousand requests.
    write_permille: u64,
}

impl Plan {
    fn token(&self, user: usize) -> String {
        self.keys
            .issue(UserId(self.users[user]), self.now_s, self.ttl)
    }

    fn follow_target(&self, edge: usize) -> String {
        let to = self.users[self.edges[edge].1 as usize];
        format!("/api/v1/users/me/following/{to}")
    }
}

/// What one worker measured.
#[derive(Debug)]
struct Worker {
    stats: Vec<Stats>,
    connects: u64,
    /// Open loop: the largest delay of a send behind its due time.
    late: Duration,
}

/// Build work: one request per job.
#[derive(Debug, Clone, Copy)]
enum Job {
    /// Job i: user i sets its profile.
    Profile,
    /// Job i: edge i is followed.
    Follow,
    /// Job i: user i's first followers and following pages and counts are read (cache warm-up).
    Warm,
}

/// A build phase (or the restore): what it measured.
#[derive(Debug)]
struct Phase {
    stats: Stats,
    jobs: u64,
    /// Jobs not started by the deadline.
    unfinished: u64,
    connects: u64,
    took: Duration,
    server_cpu: Option<(f64, f64, f64)>,
    my_cpu: Option<(f64, f64, f64)>,
}

impl Phase {
    fn failures(&self) -> u64 {
        self.stats.errors_total() + self.unfinished
    }

    fn per_sec(&self) -> f64 {
        self.stats.parts as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// Runs `jobs` with `conc` workers, none started after `deadline`.
async fn run_phase(
    plan: &Arc<Plan>,
    job: Job,
    jobs: Vec<u32>,
    conc: usize,
    deadline: Instant,
    mon: &mut Monitor,
) -> Phase {
    let total = jobs.len() as u64;
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let cpu0 = CpuSnap::take(mon.server);
    let mut set = JoinSet::new();
    for _ in 0..conc.min(jobs.len()).max(1) {
        let (plan, jobs, next, done) = (plan.clone(), jobs.clone(), next.clone(), done.clone());
        set.spawn(async move {
            let mut http = Http::new(plan.addr, plan.host.clone(), plan.timeout);
            let mut stats = Stats::new(plan.sample_cap);
            while Instant::now() < deadline {
                let Some(&j) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let j = j as usize;
                match job {
                    Job::Profile => {
                        let body = format!(
                            r#"{{"display_name":"user {j}","bio":"zerocast-load graph seed {}"}}"#,
                            plan.seed
                        );
                        let token = plan.token(j);
                        let path = "/api/v1/users/me/profile";
                        timed(&mut http, &mut stats, "PUT", path, &token, body.as_bytes()).await;
                    }
                    Job::Warm => {
                        let token = plan.token(j);
                        let u = plan.users[j];
                        for path in [
                            format!("/api/v1/users/{u}/followers?limit=50"),
                            format!("/api/v1/users/{u}/following?limit=50"),
                            format!("/api/v1/users/{u}/counts"),
                        ] {
                            timed(&mut http, &mut stats, "GET", &path, &token, b"").await;
                        }
                    }
                    Job::Follow => {
                        let token = plan.token(plan.edges[j].0 as usize);
                        let path = plan.follow_target(j);
                        let ok = timed(&mut http, &mut stats, "PUT", &path, &token, b"").await;
                        if ok.is_some() {
                            plan.present[j].store(true, Ordering::Release);
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Worker {
                stats: vec![stats],
                connects: http.connects,
                late: Duration::ZERO,
            }
        });
    }
    let t0 = Instant::now();
    let mut stats = Stats::new(0);
    let mut connects = 0;
    let label = match job {
        Job::Profile => "profiles",
        Job::Follow => "follows",
        Job::Warm => "warm-up users",
    };
    let mut progress = Progress {
        label,
        total,
        done: done.clone(),
        t0,
        next: t0 + PROGRESS_EVERY,
    };
    // Each started job ends within 3 timeouts (connect, write, read without progress).
    let join_end = deadline + plan.timeout * 3 + Duration::from_secs(1);
    let (abandoned, finished) = join_workers(&mut set, join_end, mon, Some(&mut progress), |w| {
        connects += w.connects;
        for s in w.stats {
            stats.merge(s);
        }
    })
    .await;
    let cpu1 = CpuSnap::take(mon.server);
    stats.sort_samples();
    if abandoned > 0 {
        stats.error(
            ErrorKind::HardStop,
            &format!("{abandoned} {label} workers still running at the deadline"),
        );
    }
    let took = finished - t0;
    Phase {
        stats,
        jobs: total,
        unfinished: total.saturating_sub(done.load(Ordering::Relaxed)),
        connects,
        took,
        server_cpu: cpu_share(cpu0.server, cpu1.server, cpu1.at - cpu0.at),
        my_cpu: cpu_share(cpu0.me, cpu1.me, cpu1.at - cpu0.at),
    }
}

/// Build progress on stderr.
#[derive(Debug)]
struct Progress {
    label: &'static str,
    total: u64,
    done: Arc<AtomicU64>,
    t0: Instant,
    next: Instant,
}

impl Progress {
    fn tick(&mut self) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next += PROGRESS_EVERY;
        let done = self.done.load(Ordering::Relaxed);
        let secs = (now - self.t0).as_secs_f64();
        eprintln!(
            "zerocast-load graph: {} {done}/{} in {secs:.0} s ({:.0}/s)",
            self.label,
            self.total,
            done as f64 / secs.max(1e-9)
        );
    }
}

/// Joins every worker (sampling the server's RSS and reporting `progress` each second) until
/// `until`, then aborts what is left; returns how many were aborted (or panicked) and when the
/// joining ended.
async fn join_workers(
    set: &mut JoinSet<Worker>,
    until: Instant,
    mon: &mut Monitor,
    mut progress: Option<&mut Progress>,
    mut on_done: impl FnMut(Worker),
) -> (u64, Instant) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut panicked = 0;
    loop {
        tokio::select! {
            j = set.join_next() => match j {
                Some(Ok(w)) => on_done(w),
                Some(Err(_)) => panicked += 1,
                None => break,
            },
            _ = every.tick() => {
                mon.sample();
                if let Some(p) = progress.as_deref_mut() {
                    p.tick();
                }
            }
            _ = tokio::time::sleep_until(until.into()) => break,
        }
    }
    let finished = Instant::now();
    let left = set.len() as u64;
    set.abort_all();
    (left + panicked, finished)
}

/// One run of the mix for `secs` seconds on `conc` connections: closed loop (each connection
/// sends its next request when the previous one is answered) when `rate` is `None`, else open
/// loop at `rate` requests/s in all (see [`run_worker`]).
async fn run_mix(
    plan: &Arc<Plan>,
    conc: usize,
    secs: u64,
    rate: Option<f64>,
    mon: &mut Monitor,
) -> MixRun {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let hard_stop = end + HARD_STOP_AFTER;
    let cpu0 = CpuSnap::take(mon.server);
    let salt = rate.map_or(0, |r| r.to_bits());
    // Open loop: one pacing thread hands out the due times (see [`pace`]).
    let mut dues: Vec<_> = (0..conc).map(|_| None).collect();
    let pacer = rate.map(|r| {
        let senders = dues
            .iter_mut()
            .map(|due| {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                *due = Some(rx);
                tx
            })
            .collect();
        let mean_gap = Duration::from_secs_f64(1.0 / r.max(1e-3));
        let rng = Rng(plan.seed ^ 0x9ace_0000_0000 ^ salt);
        match std::thread::Builder::new()
            .name("graph-load-pacer".into())
            .spawn(move || pace(senders, start, end, mean_gap, rng))
        {
            Ok(p) => p,
            Err(e) => panic!("cannot start the pacing thread: {e}"),
        }
    });
    let mut set = JoinSet::new();
    for (w, due) in dues.into_iter().enumerate() {
        let seed = plan.seed ^ 0x5eed_0000_0000 ^ (w as u64).wrapping_mul(0x9e37_79b9) ^ salt;
        set.spawn(run_worker(plan.clone(), seed, end, due));
    }
    let mut ops: [Stats; 6] = std::array::from_fn(|_| Stats::new(0));
    let mut connects = 0;
    let mut late = Duration::ZERO;
    let (abandoned, finished) = join_workers(&mut set, hard_stop, mon, None, |w: Worker| {
        connects += w.connects;
        late = late.max(w.late);
        for (total, s) in ops.iter_mut().zip(w.stats) {
            total.merge(s);
        }
    })
    .await;
    // It ends at `end`, before the workers it feeds.
    if let Some(p) = pacer {
        let _ = p.join();
    }
    let cpu1 = CpuSnap::take(mon.server);
    for s in &mut ops {
        s.sort_samples();
    }
    MixRun {
        rate,
        ran: finished.saturating_duration_since(start),
        ops,
        connects,
        abandoned,
        late,
        server_cpu: cpu_share(cpu0.server, cpu1.server, cpu1.at - cpu0.at),
        my_cpu: cpu_share(cpu0.me, cpu1.me, cpu1.at - cpu0.at),
    }
}

/// What one run of the mix measured.
#[derive(Debug)]
struct MixRun {
    /// Offered requests/s (open loop), or `None` (closed loop).
    rate: Option<f64>,
    /// From the start until every worker finished.
    ran: Duration,
    /// Per [`Op::ALL`].
    ops: [Stats; 6],
    connects: u64,
    /// Workers still running (or panicked) at the hard stop.
    abandoned: u64,
    /// Open loop: the largest delay of a send behind its scheduled time (the client's or the
    /// server's backlog on one connection; it is part of that request's latency).
    late: Duration,
    /// % of one core: (total, user, system).
    server_cpu: Option<(f64, f64, f64)>,
    my_cpu: Option<(f64, f64, f64)>,
}

impl MixRun {
    fn failures(&self) -> u64 {
        self.ops.iter().map(Stats::errors_total).sum::<u64>() + self.abandoned
    }
}

/// An exponentially distributed gap of mean `mean` (Poisson arrivals).
fn exp_gap(rng: &mut Rng, mean: Duration) -> Duration {
    // unit() is in [0, 1): 1 - u is in (0, 1], whose logarithm is finite.
    mean.mul_f64(-(1.0 - rng.unit()).ln())
}

/// Open loop: the run's Poisson arrivals (mean gap `mean_gap`) from `start` until `end`, each
/// handed at its due time to a uniformly chosen worker (so each worker's arrivals are Poisson
/// too, of its share of the rate). A thread of its own with a 1 ns timer slack keeps the
/// schedule to microseconds: tokio's timer wheel ticks every millisecond, and when the workers
/// slept until their due times with it, every request went out 1-2 ms late, which counted in
/// its latency (an idle server's followers page measured 1.2 ms at p50).
fn pace(
    workers: Vec<tokio::sync::mpsc::UnboundedSender<Instant>>,
    start: Instant,
    end: Instant,
    mean_gap: Duration,
    mut rng: Rng,
) {
    // SAFETY: prctl with PR_SET_TIMERSLACK takes one integer argument and changes only this
    // thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut due = start + exp_gap(&mut rng, mean_gap);
    while due < end {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let w = rng.below(workers.len() as u64) as usize;
        // A worker gone (panicked) loses its arrivals; the run counts it as abandoned.
        let _ = workers[w].send(due);
        due += exp_gap(&mut rng, mean_gap);
    }
}

/// One worker of a run: requests by the mix until `end`.
///
/// Closed loop (`due` `None`): the next request goes out when the previous one is answered,
/// and its latency is measured from its send. Open loop: requests are due at the times
/// [`pace`] sends, whatever the answers; a request is sent at its due time, or as soon as the
/// previous one is answered if that is later, and its latency is measured from its due time,
/// so time spent waiting behind a slow answer counts (no coordinated omission).
async fn run_worker(
    plan: Arc<Plan>,
    seed: u64,
    end: Instant,
    mut due: Option<tokio::sync::mpsc::UnboundedReceiver<Instant>>,
) -> Worker {
    let mut rng = Rng(seed);
    let mut http = Http::new(plan.addr, plan.host.clone(), plan.timeout);
    let mut stats: Vec<Stats> = Op::ALL
        .iter()
        .map(|_| Stats::new(plan.sample_cap))
        .collect();
    let n = plan.users.len() as u64;
    // The edge this worker unfollowed last, to follow again on its next trickle request.
    let mut unfollowed: Option<usize> = None;
    let mut late = Duration::ZERO;
    loop {
        let sent_at = match due.as_mut() {
            None => Instant::now(),
            Some(rx) => match rx.recv().await {
                Some(d) => {
                    late = late.max(Instant::now().saturating_duration_since(d));
                    d
                }
                None => break,
            },
        };
        if sent_at >= end {
            break;
        }
        // Writes by --write-permille; reads split 40:25:20:10 over the read kinds.
        let roll = if rng.below(1000) < plan.write_permille {
            950
        } else {
            rng.below(950)
        };
        let viewer = rng.below(n) as usize;
        let account = plan.users[plan.zipf.sample(&mut rng)];
        let (op, method, path, who, edge) = match roll {
            0..400 => (
                Op::Followers,
                "GET",
                format!("/api/v1/users/{account}/followers?limit=50"),
                viewer,
                None,
            ),
            400..650 => (
                Op::Following,
                "GET",
                format!("/api/v1/users/{account}/following?limit=50"),
                viewer,
                None,
            ),
            650..850 => (
                Op::Counts,
                "GET",
                format!("/api/v1/users/{account}/counts"),
                viewer,
                None,
            ),
            850..950 => (
                Op::Recommendations,
                "GET",
                "/api/v1/recommendations?limit=20".to_owned(),
                viewer,
                None,
            ),
            // The trickle: unfollow a random followed edge, and follow it again next time.
            _ => match unfollowed.take() {
                Some(e) => {
                    let from = plan.edges[e].0 as usize;
                    (Op::Follow, "PUT", plan.follow_target(e), from, Some(e))
                }
                None => {
                    // Claim an edge no other worker is changing.
                    let claimed = (0..8)
                        .map(|_| rng.below(plan.edges.len() as u64) as usize)
                        .find(|e| {
                            plan.present[*e]
                                .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
                                .is_ok()
                        });
                    let Some(e) = claimed else { continue };
                    let from = plan.edges[e].0 as usize;
                    (Op::Unfollow, "DELETE", plan.follow_target(e), from, Some(e))
                }
            },
        };
        let token = plan.token(who);
        let s = &mut stats[Op::ALL.iter().position(|o| *o == op).unwrap_or(0)];
        let ok = timed_from(&mut http, s, sent_at, method, &path, &token, b"")
            .await
            .is_some();
        // An edge whose change failed stays marked unfollowed: the restore follows it again.
        match (op, edge) {
            (Op::Unfollow, Some(e)) if ok => unfollowed = Some(e),
            (Op::Follow, Some(e)) if ok => plan.present[e].store(true, Ordering::Release),
            _ => {}
        }
    }
    Worker {
        stats,
        connects: http.connects,
        late,
    }
}

/// One request, counted in `stats`: the latency of a 200, else an error. Returns a 200's body.
async fn timed(
    http: &mut Http,
    stats: &mut Stats,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> Option<Bytes> {
    timed_from(http, stats, Instant::now(), method, path, token, body).await
}

/// [`timed`], with the latency measured from `t0` (an open loop's due time).
async fn timed_from(
    http: &mut Http,
    stats: &mut Stats,
    t0: Instant,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> Option<Bytes> {
    stats.requests += 1;
    match http.request(method, path, Some(token), body).await {
        Ok(r) if r.status == 200 => {
            stats.part_latency(t0.elapsed());
            Some(r.body)
        }
        Ok(r) => {
            let text = String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).into_owned();
            stats.error(
                ErrorKind::from_status(r.status),
                &format!("{method} {path}: {} {text}", r.status),
            );
            None
        }
        Err(e) => {
            stats.error(e.kind, &format!("{method} {path}: {}", e.detail));
            None
        }
    }
}

/// The followers count and first followers page of one of the most followed accounts.
#[derive(Debug)]
struct TopCheck {
    rank: usize,
    expected: u64,
    /// The server's count and first page length, or what went wrong.
    got: Result<(u64, usize), String>,
}

impl TopCheck {
    fn ok(&self) -> bool {
        let page = self.expected.min(50) as usize;
        matches!(self.got, Ok((n, p)) if n == self.expected && p == page)
    }
}

async fn check_top(plan: &Plan, http: &mut Http) -> Vec<TopCheck> {
    let mut followers = vec![0u64; plan.users.len()];
    for (_, to) in &plan.edges {
        followers[*to as usize] += 1;
    }
    let mut ranked: Vec<usize> = (0..plan.users.len()).collect();
    ranked.sort_by_key(|u| std::cmp::Reverse(followers[*u]));
    let token = plan.token(0);
    let mut out = Vec::new();
    for (rank, &u) in ranked.iter().take(CHECKED).enumerate() {
        let id = plan.users[u];
        let mut get = async |path: String| -> Result<Value, String> {
            let r = http
                .request("GET", &path, Some(&token), b"")
                .await
                .map_err(|e| format!("GET {path}: {}", e.detail))?;
            if r.status != 200 {
                return Err(format!("GET {path}: {}", r.status));
            }
            serde_json::from_slice(&r.body).map_err(|e| format!("GET {path}: {e}"))
        };
        let got = async {
            let counts = get(format!("/api/v1/users/{id}/counts")).await?;
            let page = get(format!("/api/v1/users/{id}/followers?limit=50")).await?;
            let n = counts["followers"]
                .as_u64()
                .ok_or("counts without followers")?;
            let len = page["users"].as_array().map_or(0, Vec::len);
            Ok((n, len))
        }
        .await;
        out.push(TopCheck {
            rank: rank + 1,
            expected: followers[u],
            got,
        });
    }
    out
}

/// The largest followers count and the share of all edges held by the 10 most followed.
fn shape(plan: &Plan) -> (u64, f64) {
    let mut followers = vec![0u64; plan.users.len()];
    for (_, to) in &plan.edges {
        followers[*to as usize] += 1;
    }
    followers.sort_unstable_by(|a, b| b.cmp(a));
    let top10: u64 = followers.iter().take(10).sum();
    let share = top10 as f64 / plan.edges.len().max(1) as f64;
    (followers.first().copied().unwrap_or(0), share)
}

/// Follower-cache counters from `/metrics`, by key kind: (hits, misses, fills).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CacheCounters(BTreeMap<String, [u64; 3]>);

impl CacheCounters {
    /// Sums `zerocast_social_cache_{hits,misses,fills}_total` per `kind` (over backends).
    fn parse(text: &str) -> Self {
        let mut out = BTreeMap::<String, [u64; 3]>::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, rest)) = line.split_once('{') else {
                continue;
            };
            let field = match name {
                "zerocast_social_cache_hits_total" => 0,
                "zerocast_social_cache_misses_total" => 1,
                "zerocast_social_cache_fills_total" => 2,
                _ => continue,
            };
            let Some((labels, value)) = rest.rsplit_once('}') else {
                continue;
            };
            let kind = labels
                .split(',')
                .find_map(|l| l.trim().strip_prefix("kind=\""))
                .and_then(|k| k.strip_suffix('"'));
            let (Some(kind), Ok(v)) = (kind, value.trim().parse::<f64>()) else {
                continue;
            };
            out.entry(kind.to_owned()).or_default()[field] += v as u64;
        }
        Self(out)
    }

    fn minus(&self, before: &Self) -> Self {
        let mut out = self.clone();
        for (kind, v) in &mut out.0 {
            let b = before.0.get(kind).copied().unwrap_or_default();
            for (x, y) in v.iter_mut().zip(b) {
                *x = x.saturating_sub(y);
            }
        }
        out
    }
}

/// The cache counters, or why there are none.
async fn scrape(http: &mut Http, plan: &Plan) -> Result<CacheCounters, String> {
    let token = plan.token(0);
    // This connection sat idle through the run: the server may have closed it (its keep-alive
    // deadlines). A request on a connection found closed is sent once more on a new one.
    let r = match http.request("GET", "/metrics", Some(&token), b"").await {
        Err(e) if matches!(e.kind, ErrorKind::Closed | ErrorKind::Io) => {
            http.request("GET", "/metrics", Some(&token), b"").await
        }
        r => r,
    }
    .map_err(|e| format!("GET /metrics: {}", e.detail))?;
    if r.status != 200 {
        return Err(format!(
            "GET /metrics answered {}: the server does not expose its cache counters",
            r.status
        ));
    }
    let c = CacheCounters::parse(&String::from_utf8_lossy(&r.body));
    if c.0.is_empty() {
        return Err("GET /metrics has no zerocast_social_cache_*_total counters".to_owned());
    }
    Ok(c)
}

/// The server's RSS, sampled while the load runs.
#[derive(Debug)]
struct Monitor {
    server: Option<Pid>,
    rss_max: Option<u64>,
}

impl Monitor {
    fn new(server: Option<Pid>) -> Self {
        Self {
            server,
            rss_max: server.and_then(procfs::rss),
        }
    }

    fn sample(&mut self) {
        if let Some(rss) = self.server.and_then(procfs::rss) {
            self.rss_max = Some(self.rss_max.unwrap_or(0).max(rss));
        }
    }
}

/// CPU times of the server and of this process at one moment.
#[derive(Debug)]
struct CpuSnap {
    server: Option<CpuTime>,
    me: Option<CpuTime>,
    at: Instant,
}

impl CpuSnap {
    fn take(server: Option<Pid>) -> Self {
        Self {
            server: server.and_then(procfs::cpu_time),
            me: procfs::cpu_time(Pid::Me),
            at: Instant::now(),
        }
    }
}

/// `n` user ids, a function of `seed` alone.
fn user_ids(n: u32, seed: u64) -> Vec<Uuid> {
    let mut rng = Rng(seed ^ 0x0005_eed0_f005_e125);
    (0..n)
        .map(|_| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&rng.next().to_le_bytes());
            b[8..].copy_from_slice(&rng.next().to_le_bytes());
            uuid::Builder::from_random_bytes(b).into_uuid()
        })
        .collect()
}

/// `m` distinct (follower, followed) pairs over `n` users, no self-follows, a function of the
/// arguments alone: followers uniform, followed accounts by `zipf` (saturated accounts are
/// redrawn, so the most popular can be followed by nearly everyone).
fn follow_edges(n: u32, m: u64, zipf: &Zipf, seed: u64) -> anyhow::Result<Vec<(u32, u32)>> {
    let mut rng = Rng(seed ^ 0xed6e_5eed_0000_0001);
    let mut seen = HashSet::with_capacity(m as usize);
    let mut edges = Vec::with_capacity(m as usize);
    let mut draws = 0u64;
    while (edges.len() as u64) < m {
        draws += 1;
        if draws > m.saturating_mul(64) {
            bail!("could not draw {m} distinct edges over {n} users");
        }
        let to = zipf.sample(&mut rng) as u32;
        let from = rng.below(u64::from(n)) as u32;
        if from != to && seen.insert((u64::from(from) << 32) | u64::from(to)) {
            edges.push((from, to));
        }
    }
    Ok(edges)
}

/// Zipf over ranks `0..n`: rank k drawn with weight 1 / (k + 1)^s.
#[derive(Debug)]
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += (k as f64).powf(-s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

/// One keep-alive HTTP/1.1 connection (tokio), reopened after an error. Bodies must come with
/// `Content-Length` (axum's JSON and text responses do); no pipelining.
#[derive(Debug)]
struct Http {
    addr: SocketAddr,
    host: String,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: BytesMut,
    connects: u64,
}

impl Http {
    fn new(addr: SocketAddr, host: String, timeout: Duration) -> Self {
        Self {
            addr,
            host,
            timeout,
            stream: None,
            buf: BytesMut::new(),
            connects: 0,
        }
    }

    /// Sends one request and reads its response; any error closes the connection.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<Response, ClientError> {
        let res = self.exchange(method, path, token, body).await;
        if res.is_err() {
            self.stream = None;
        }
        res
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<Response, ClientError> {
        if self.stream.is_none() {
            let s = tokio::time::timeout(self.timeout, TcpStream::connect(self.addr))
                .await
                .map_err(|_| ClientError::new(ErrorKind::Connect, "connect timed out"))?
                .map_err(|e| ClientError::new(ErrorKind::Connect, format!("connect: {e}")))?;
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
            self.buf.clear();
            self.connects += 1;
        }
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: zerocast-load\r\n",
            self.host
        );
        if let Some(t) = token {
            let _ = write!(req, "Authorization: Bearer {t}\r\n");
        }
        if method != "GET" {
            let _ = write!(
                req,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        req.push_str("\r\n");
        let mut req = req.into_bytes();
        req.extend_from_slice(body);
        let stream = self.stream.as_mut().ok_or_else(closed)?;
        match tokio::time::timeout(self.timeout, stream.write_all(&req)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ClientError::new(ErrorKind::Io, format!("write: {e}"))),
            Err(_) => return Err(timed_out("write", self.timeout)),
        }
        let (status, len, close) = loop {
            if let Some(head) = parse_head(&mut self.buf)? {
                break head;
            }
            self.fill("waiting for the response head").await?;
        };
        let head_at = Instant::now();
        while self.buf.len() < len {
            self.fill("reading the body").await?;
        }
        let body = self.buf.split_to(len).freeze();
        if close {
            self.stream = None;
        }
        Ok(Response {
            status,
            body,
            head_at,
        })
    }

    async fn fill(&mut self, during: &str) -> Result<(), ClientError> {
        let stream = self.stream.as_mut().ok_or_else(closed)?;
        if self.buf.len() >= MAX_RESPONSE {
            return Err(ClientError::new(ErrorKind::Malformed, "response too large"));
        }
        self.buf.reserve(16 * 1024);
        match tokio::time::timeout(self.timeout, stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(timed_out(during, self.timeout)),
            Ok(Err(e)) => Err(ClientError::new(ErrorKind::Io, format!("{during}: {e}"))),
            Ok(Ok(0)) => Err(ClientError::new(
                ErrorKind::Closed,
                format!("{during}: server closed the connection"),
            )),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

fn closed() -> ClientError {
    ClientError::new(ErrorKind::Closed, "connection closed")
}

fn timed_out(during: &str, after: Duration) -> ClientError {
    ClientError::new(
        ErrorKind::Timeout,
        format!("{during}: no progress in {after:?}"),
    )
}

/// Parses a response head off the front of `buf`: (status, body length, close after).
/// `Ok(None)` when more bytes are needed. The social API answers with `Content-Length`.
fn parse_head(buf: &mut BytesMut) -> Result<Option<(u16, usize, bool)>, ClientError> {
    let Some((head, head_len)) = crate::wire::parse_head(buf).map_err(malformed)? else {
        return Ok(None);
    };
    let len = match head.framing {
        crate::wire::Framing::Length(n) if n <= MAX_RESPONSE as u64 => n as usize,
        crate::wire::Framing::Length(n) => {
            return Err(malformed(format!("Content-Length {n} too large")));
        }
        crate::wire::Framing::Chunked => {
            return Err(malformed(
                "Transfer-Encoding chunked is not supported".into(),
            ));
        }
        crate::wire::Framing::Close => {
            return Err(malformed("response without Content-Length".into()));
        }
    };
    let _ = buf.split_to(head_len);
    Ok(Some((head.status, len, head.close)))
}

/// Everything the final table shows.
#[derive(Debug)]
pub(crate) struct Report {
    api: String,
    users: u32,
    edges: u64,
    seed: u64,
    zipf: f64,
    concurrency: usize,
    /// Drawing the user ids and edges, here.
    generated: Duration,
    most_followers: u64,
    top10_share: f64,
    /// Profiles and edges, or `None` with --skip-build.
    build: Option<(Phase, Phase)>,
    top: Vec<TopCheck>,
    duration: u64,
    /// The closed-loop run.
    closed: MixRun,
    /// The open-loop runs after it, one per --rate.
    open: Vec<MixRun>,
    restore: Option<Phase>,
    warm: Option<Phase>,
    /// Cache counters over the closed-loop run, or why there are none.
    cache: Result<CacheCounters, String>,
    /// (max sampled, at start, after the build), bytes.
    server_rss: Option<(u64, u64, u64)>,
}

impl Report {
    /// Errors of every phase, failed checks and abandoned workers: 0 for a clean run.
    pub(crate) fn failures(&self) -> u64 {
        let build = self
            .build
            .iter()
            .map(|(p, e)| p.failures() + e.failures())
            .sum::<u64>();
        let runs: u64 = std::iter::once(&self.closed)
            .chain(&self.open)
            .map(MixRun::failures)
            .sum();
        let checks = self.top.iter().filter(|c| !c.ok()).count() as u64;
        let restore = self.restore.as_ref().map_or(0, Phase::failures);
        let warm = self.warm.as_ref().map_or(0, Phase::failures);
        build + runs + checks + restore + warm
    }

    /// The rows of one run of the mix; its first errors go to `first_errors`.
    fn render_run(
        &self,
        run: &MixRun,
        rows: &mut Vec<(String, String)>,
        first_errors: &mut Vec<(String, String)>,
    ) {
        let (label, how) = match run.rate {
            None => ("run".to_owned(), "closed loop".to_owned()),
            Some(r) => (
                format!("open loop {r:.0}/s"),
                format!(
                    "{r:.0} requests/s offered (Poisson arrivals; latency from the due time, \
                     sends at most {} behind it)",
                    fmt_ms(Some(run.late))
                ),
            ),
        };
        rows.push((
            label.clone(),
            format!(
                "{} s (ran {:.2} s), concurrency {}, {} connections, {how}",
                self.duration,
                run.ran.as_secs_f64(),
                self.concurrency,
                run.connects
            ),
        ));
        let secs = run.ran.as_secs_f64().max(1e-9);
        rows.push((
            "  op".into(),
            format!(
                "{:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>7}",
                "count", "ops/s", "p50", "p99", "p999", "max", "errors"
            ),
        ));
        for (op, s) in Op::ALL.iter().zip(&run.ops) {
            rows.push((
                format!("    {}", op.label()),
                format!(
                    "{:>9} {:>9.1} {:>10} {:>10} {:>10} {:>10} {:>7}",
                    s.requests,
                    s.requests as f64 / secs,
                    fmt_ms(s.percentile(0.50)),
                    fmt_ms(s.percentile(0.99)),
                    fmt_ms(s.percentile(0.999)),
                    fmt_ms((s.parts > 0).then(|| s.max_latency())),
                    s.errors_total()
                ),
            ));
            for (kind, _, detail) in s.errors() {
                if let Some(d) = detail {
                    first_errors.push((
                        format!("{label} {} {}", op.label(), kind.label()),
                        d.to_owned(),
                    ));
                }
            }
        }
        let total: u64 = run.ops.iter().map(|s| s.requests).sum();
        let errors: u64 = run.ops.iter().map(Stats::errors_total).sum();
        rows.push((
            "  total".into(),
            format!(
                "{total} requests, {:.1} ops/s, {errors} errors",
                total as f64 / secs
            ),
        ));
        let dropped: u64 = run.ops.iter().map(Stats::samples_dropped).sum();
        if dropped > 0 {
            rows.push((
                "  latency samples".into(),
                format!("{dropped} dropped; percentiles from the first ones kept"),
            ));
        }
        if run.abandoned > 0 {
            rows.push((
                "  hard stop".into(),
                format!("{} workers abandoned", run.abandoned),
            ));
        }
        if let Some(c) = run.server_cpu {
            let per = if total > 0 {
                format!(
                    "; {:.0} µs per request",
                    c.0 / 100.0 * secs * 1e6 / total as f64
                )
            } else {
                String::new()
            };
            rows.push(("  server CPU".into(), format!("{}{per}", fmt_cpu(c))));
        }
        if let Some(c) = run.my_cpu {
            rows.push(("  load generator CPU".into(), fmt_cpu(c)));
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("users".into(), self.users.to_string()),
            (
                "edges".into(),
                format!(
                    "{} (seed {}, zipf {}: most followed {}, top 10 hold {:.1} %; drawn in {:.2} s)",
                    self.edges,
                    self.seed,
                    self.zipf,
                    self.most_followers,
                    self.top10_share * 100.0,
                    self.generated.as_secs_f64()
                ),
            ),
        ];
        let phase_row = |p: &Phase, what: &str| {
            format!(
                "{:.2} s, {:.0} {what}/s ({} of {}, {} connections), p50 {} p99 {} max {}, errors {}",
                p.took.as_secs_f64(),
                p.per_sec(),
                p.stats.parts,
                p.jobs,
                p.connects,
                fmt_ms(p.stats.percentile(0.50)),
                fmt_ms(p.stats.percentile(0.99)),
                fmt_ms((p.stats.parts > 0).then(|| p.stats.max_latency())),
                p.failures()
            )
        };
        match &self.build {
            None => rows.push(("build".into(), "skipped (--skip-build)".into())),
            Some((profiles, edges)) => {
                let took = profiles.took + edges.took;
                rows.push((
                    "build time".into(),
                    format!(
                        "{:.2} s at concurrency {}",
                        took.as_secs_f64(),
                        self.concurrency
                    ),
                ));
                rows.push(("  profiles".into(), phase_row(profiles, "profiles")));
                rows.push(("  edges".into(), phase_row(edges, "edges")));
                if let Some(c) = edges.server_cpu {
                    rows.push(("  server CPU (edges)".into(), fmt_cpu(c)));
                }
                if let Some(c) = edges.my_cpu {
                    rows.push(("  load gen CPU (edges)".into(), fmt_cpu(c)));
                }
            }
        }
        for c in &self.top {
            let got = match &c.got {
                Ok((n, page)) => format!(
                    "{n} followers (expected {}), first page {page} users{}",
                    c.expected,
                    if c.ok() { "" } else { "  MISMATCH" }
                ),
                Err(e) => format!("check failed: {e}"),
            };
            rows.push((format!("most followed #{}", c.rank), got));
        }
        let mut first_errors = Vec::new();
        for run in std::iter::once(&self.closed).chain(&self.open) {
            self.render_run(run, &mut rows, &mut first_errors);
        }
        if let Some(r) = &self.restore {
            rows.push(("restore unfollowed".into(), phase_row(r, "edges")));
        }
        if let Some(w) = &self.warm {
            rows.push(("cache warm-up (before run)".into(), phase_row(w, "users")));
        }
        match &self.cache {
            Err(why) => rows.push(("cache hit rate".into(), format!("n/a: {why}"))),
            Ok(c) => {
                let rate = |[h, m, f]: [u64; 3]| {
                    let pct = if h + m == 0 {
                        "-".to_owned()
                    } else {
                        format!("{:.1} %", h as f64 * 100.0 / (h + m) as f64)
                    };
                    format!("{pct:>7} (hits {h}, misses {m}, fills {f})")
                };
                let (mut all, mut lists) = ([0u64; 3], [0u64; 3]);
                for (kind, v) in &c.0 {
                    rows.push((format!("cache hit rate {kind}"), rate(*v)));
                    for (i, x) in v.iter().enumerate() {
                        all[i] += x;
                        if kind != "profile" {
                            lists[i] += x;
                        }
                    }
                }
                rows.push(("cache hit rate w/o profile".into(), rate(lists)));
                rows.push(("cache hit rate overall".into(), rate(all)));
            }
        }
        if let Some((max, start, built)) = self.server_rss {
            rows.push((
                "server RSS max".into(),
                format!(
                    "{:.1} MiB (at start {:.1} MiB, after build {:.1} MiB)",
                    mib(max),
                    mib(start),
                    mib(built)
                ),
            ));
        }
        for (label, phase) in self
            .build
            .iter()
            .flat_map(|(p, e)| [("build profiles", p), ("build edges", e)])
            .chain(self.restore.iter().map(|r| ("restore", r)))
            .chain(self.warm.iter().map(|w| ("warm-up", w)))
        {
            for (kind, _, detail) in phase.stats.errors() {
                if let Some(d) = detail {
                    first_errors.push((format!("{label} {}", kind.label()), d.to_owned()));
                }
            }
            if phase.unfinished > 0 {
                let d = format!("{} jobs not started by the deadline", phase.unfinished);
                first_errors.push((format!("{label} unfinished"), d));
            }
        }
        render_table(
            &format!("zerocast-load graph {}", self.api),
            &rows,
            first_errors.iter().map(|(k, d)| (k.as_str(), d.as_str())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_and_graphs_are_deterministic() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = Rng(7);
        let mut hits = [0u32; 1000];
        for _ in 0..100_000 {
            hits[z.sample(&mut rng)] += 1;
        }
        // Rank 0 draws about 1/H(1000) ≈ 13 % of the samples, rank 999 about 0.013 %.
        assert!((11_000..15_500).contains(&hits[0]), "{}", hits[0]);
        assert!(f64::from(hits[0]) > 1.8 * f64::from(hits[1]) && hits[999] < 60);
        let a = follow_edges(1000, 20_000, &z, 3).unwrap();
        assert_eq!(a, follow_edges(1000, 20_000, &z, 3).unwrap());
        assert_ne!(a, follow_edges(1000, 20_000, &z, 4).unwrap());
        let distinct: HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), a.len());
        assert!(a.iter().all(|(f, t)| f != t && *f < 1000 && *t < 1000));
        // The most popular account is followed by nearly everyone, and saturates.
        let top = a.iter().filter(|(_, t)| *t == 0).count();
        assert!((900..1000).contains(&top), "{top}");
        assert_eq!(user_ids(5, 1), user_ids(5, 1));
        assert_eq!(user_ids(5, 1)[0].get_version_num(), 4);
    }

    #[test]
    fn parses_cache_counters() {
        let text = "# HELP zerocast_social_cache_hits_total x\n\
            zerocast_social_cache_hits_total{backend=\"moka\",kind=\"followers\"} 30\n\
            zerocast_social_cache_near_hits_total{backend=\"moka\",kind=\"followers\"} 9\n\
            zerocast_social_cache_misses_total{backend=\"moka\",kind=\"followers\"} 10\n\
            zerocast_social_cache_fills_total{backend=\"moka\",kind=\"followers\"} 10\n\
            zerocast_social_cache_hits_total{backend=\"moka\",kind=\"counts\"} 5\n\
            zerocast_social_cache_up{backend=\"moka\"} 1\n";
        let c = CacheCounters::parse(text);
        assert_eq!(c.0["followers"], [30, 10, 10]);
        assert_eq!(c.0["counts"], [5, 0, 0]);
        let before = CacheCounters::parse(
            "zerocast_social_cache_hits_total{backend=\"moka\",kind=\"followers\"} 20\n",
        );
        assert_eq!(c.minus(&before).0["followers"], [10, 10, 10]);
    }

    #[test]
    fn parses_response_heads() {
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"[..]);
        assert_eq!(parse_head(&mut b).unwrap(), Some((200, 2, false)));
        assert_eq!(&b[..], b"{}");
        let mut b =
            BytesMut::from(&b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-le"[..]);
        assert_eq!(parse_head(&mut b).unwrap(), None);
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..]);
        assert!(parse_head(&mut b).is_err());
    }

    /// A short build and run against an in-process social server on its embedded defaults.
    #[test]
    fn end_to_end_against_the_social_server() {
        let server = crate::TestSocialServer::start("test-secret");
        let port = server.port;
        let args = GraphArgs {
            api: format!("http://127.0.0.1:{port}"),
            secret_file: None,
            secret: Some("test-secret".into()),
            users: 200,
            edges: 2000,
            duration: 1,
            concurrency: 4,
            seed: 9,
            zipf: 1.0,
            write_permille: 10,
            warm: false,
            rate: vec![200.0],
            skip_build: false,
            build_timeout: 60,
            server_pid: None,
            timeout: 5,
            workers: Some(1),
            max_samples: 10_000,
        };
        let report = run(&args).unwrap();
        // The same graph again, not rebuilt: the checks still pass.
        let again = run(&GraphArgs {
            skip_build: true,
            ..args
        })
        .unwrap();
        drop(server);
        let text = report.render();
        assert_eq!(report.failures(), 0, "{text}");
        let (profiles, edges) = report.build.as_ref().unwrap();
        assert_eq!(
            (profiles.stats.parts, edges.stats.parts),
            (200, 2000),
            "{text}"
        );
        assert!(report.closed.ops[0].requests > 0, "{text}");
        // The open-loop run offered about 200 requests/s for 1 s.
        let open: u64 = report.open[0].ops.iter().map(|s| s.requests).sum();
        assert!(
            (100..400).contains(&open),
            "{open} requests at 200/s: {text}"
        );
        assert!(text.contains("open loop 200/s"), "{text}");
        assert_eq!(report.top.len(), CHECKED, "{text}");
        assert!(text.contains("  followers "), "{text}");
        assert!(text.contains("cache hit rate"), "{text}");
        let text = again.render();
        assert_eq!(again.failures(), 0, "{text}");
        assert!(text.contains("skipped (--skip-build)"), "{text}");
    }
}
