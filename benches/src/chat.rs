//! Chat load: N WebSocket clients of the social API, each its own user, sending direct messages
//! to each other at R per second in total.
//!
//! ```text
//! connect N sockets, C at a time ──▶ scheduler: every 1/R s, the next sender of a shuffled round
//!                                      │ Send { seq, to }            (to: another random client)
//!                                      ▼
//!   client i: writer task ── {"type":"send","to":…,"client_id":"c<seq>","content":"seq … t_us …"}
//!             reader task ◀── ack (client_id) · message push to me · error frame · close
//!                                      │
//!                                      ▼
//!   Shared: in flight seq → (written at, acked?, delivered?); ack and delivery latency Stats
//! ```
//!
//! Latencies run from just before the frame is written to the socket until the ack reaches the
//! sender, and until the push reaches the recipient (matched by `client_id`, else by the
//! sequence number in the content). After sending, the run waits up to 5 s for stragglers; a
//! message acked but never pushed to its recipient is a loss. The whole run after connecting is
//! bounded: everything still running 15 s after the sending time is abandoned ("hard stop").

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;
use zerocast_social::auth::Keys;
use zerocast_social::id::UserId;

use crate::procfs::{self, Pid};
use crate::rng::Rng;
use crate::stats::Stats;
use crate::{cpu_share, fmt_cpu, fmt_ms, mib, render_table, ChatArgs};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait after sending for acks and pushes still under way.
const STRAGGLERS: Duration = Duration::from_secs(5);
/// Everything still running this long after the end of sending is abandoned.
const HARD_STOP_AFTER: Duration = Duration::from_secs(15);
/// How long the closing handshakes may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The server allows 10 messages/s per user (burst 20); warn above this per-client rate.
const WARN_PER_CLIENT: f64 = 8.0;
/// Commands queued toward one client's writer.
const QUEUE: usize = 256;
/// Time from connecting the last client to the first send.
const LEAD: Duration = Duration::from_millis(100);

/// Runs the chat load; returns its report (errors of the run are in the report).
pub(crate) fn run(args: &ChatArgs) -> anyhow::Result<Report> {
    if !args.url.starts_with("ws://") {
        bail!("only ws:// URLs are supported: {}", args.url);
    }
    if args.clients < 2 || args.duration == 0 || !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--clients must be at least 2, --duration at least 1 and --rate above 0");
    }
    let secret = match (&args.secret_file, &args.secret) {
        (_, Some(s)) => s.clone().into_bytes(),
        // The server uses the file's bytes as they are (no trimming), and so does this.
        (Some(path), None) => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => bail!("give --secret-file or --secret"),
    };
    if secret.is_empty() {
        bail!("the token secret is empty");
    }
    let per_client = args.rate / args.clients as f64;
    if per_client > WARN_PER_CLIENT {
        eprintln!(
            "zerocast-load: warning: {per_client:.1} messages/s per client is close to the server's \
             per-user limit (10/s, burst 20); expect rate_limited errors"
        );
    }
    raise_open_files(args.clients + 64);
    let server = args.server_pid.map(Pid::Other);
    if server.is_some() && server.and_then(procfs::cpu_time).is_none() {
        bail!("cannot read /proc/{}/stat", args.server_pid.unwrap_or(0));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.unwrap_or(cores).max(1))
        .thread_name("chat-load")
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    // `block_on` runs `drive` on this (main) thread, so its /proc reads block no worker.
    let report = rt.block_on(drive(args, Keys::new(&secret), server));
    rt.shutdown_timeout(Duration::from_secs(1));
    report
}

/// Connects, sends, waits for stragglers, closes; measures all along.
async fn drive(args: &ChatArgs, keys: Keys, server: Option<Pid>) -> anyhow::Result<Report> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let rss_before = server.and_then(procfs::rss);
    let t0 = Instant::now();
    let (conns, connect_errors) = connect_all(args, &keys, timeout, t0 + 3 * timeout).await;
    let connect_time = t0.elapsed();
    let rss_connected = server.and_then(procfs::rss);

    let start = Instant::now() + LEAD;
    let end = start + Duration::from_secs(args.duration);
    let hard_stop = end + HARD_STOP_AFTER;
    let sh = Arc::new(Shared {
        state: Mutex::new(State::new(args.max_samples)),
        closing: AtomicBool::new(false),
        hard_stop,
    });
    sh.lock().errors = connect_errors;
    let peers: Arc<Vec<Uuid>> = Arc::new(conns.iter().map(|(id, _)| *id).collect());
    let connected = conns.len();
    let mut tasks = JoinSet::new();
    let mut senders = Vec::with_capacity(connected);
    for (i, (id, ws)) in conns.into_iter().enumerate() {
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::channel(QUEUE);
        tasks.spawn(writer(
            sink,
            rx,
            i as u32,
            peers.clone(),
            sh.clone(),
            timeout,
        ));
        tasks.spawn(reader(stream, i as u32, id.to_string(), sh.clone()));
        senders.push(tx);
    }

    let server_cpu0 = server.and_then(procfs::cpu_time);
    let my_cpu0 = procfs::cpu_time(Pid::Me);
    let mut rss_max = rss_connected;
    let mut sample_rss = || {
        if let Some(rss) = server.and_then(procfs::rss) {
            rss_max = Some(rss_max.unwrap_or(0).max(rss));
        }
    };
    let seed = Uuid::new_v4().as_u64_pair().0;
    let mut sched = tokio::spawn(schedule(senders, sh.clone(), args.rate, start, end, seed));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (queued, senders) = loop {
        tokio::select! {
            r = &mut sched => break r.context("the scheduler panicked")?,
            _ = tick.tick() => sample_rss(),
            _ = tokio::time::sleep_until(hard_stop.into()) => bail!("the scheduler overran"),
        }
    };
    let sent_end = Instant::now();
    let server_cpu1 = server.and_then(procfs::cpu_time);
    let my_cpu1 = procfs::cpu_time(Pid::Me);

    // Stragglers: until every command is written and every message acked and delivered.
    let straggle_end = (sent_end + STRAGGLERS).min(hard_stop);
    let mut next_sample = Instant::now() + Duration::from_secs(1);
    loop {
        {
            let st = sh.lock();
            if st.processed >= queued && st.inflight.is_empty() {
                break;
            }
        }
        let now = Instant::now();
        if now >= straggle_end {
            break;
        }
        if now >= next_sample {
            sample_rss();
            next_sample += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stragglers = sent_end.elapsed();

    // Close every socket normally; what did not finish in time is abandoned.
    sh.closing.store(true, Ordering::Relaxed);
    for tx in &senders {
        // A full queue means the writer is stuck; it is aborted below.
        let _ = tx.try_send(Cmd::Close);
    }
    drop(senders);
    let close_end = (Instant::now() + CLOSE_GRACE).min(hard_stop);
    while let Ok(Some(_)) = tokio::time::timeout_at(close_end.into(), tasks.join_next()).await {}
    let unclosed = tasks.len();
    tasks.abort_all();

    let mut st = sh.lock();
    if unclosed > 0 {
        st.errors.add(
            "close not answered",
            &format!("{unclosed} socket tasks still running {CLOSE_GRACE:?} after closing"),
        );
    }
    if Instant::now() >= hard_stop {
        st.errors.add("hard stop", "the run reached its hard stop");
    }
    if st.processed < queued {
        let n = queued - st.processed;
        st.errors
            .add_n("not written", n, "sends still queued at the end");
    }
    let mut losses = 0;
    let mut first_loss = None;
    let mut unacked = Vec::new();
    for (seq, p) in &st.inflight {
        if p.acked {
            losses += 1;
            first_loss.get_or_insert_with(|| {
                format!("seq {seq} from client {} to client {}", p.from, p.to)
            });
        } else {
            unacked.push(format!(
                "seq {seq} from client {} (delivered: {})",
                p.from, p.delivered
            ));
        }
    }
    if !unacked.is_empty() {
        let n = unacked.len() as u64;
        st.errors.add_n("no ack", n, &unacked[0]);
    }
    st.ack.sort_samples();
    st.delivery.sort_samples();
    let sending = sent_end.saturating_duration_since(start);
    let state = std::mem::replace(&mut *st, State::new(0));
    drop(st);
    Ok(Report {
        url: args.url.clone(),
        clients: args.clients,
        connected: connected as u64,
        connect_time,
        connect_concurrency: args.connect_concurrency,
        duration: args.duration,
        rate: args.rate,
        sending,
        stragglers,
        losses,
        first_loss,
        state,
        server_cpu: cpu_share(server_cpu0, server_cpu1, sending),
        server_rss: rss_max.map(|m| (m, rss_before.unwrap_or(0), rss_connected.unwrap_or(0))),
        my_cpu: cpu_share(my_cpu0, my_cpu1, sending),
    })
}

/// Opens one WebSocket per client, `--connect-concurrency` at a time, all before `deadline`.
async fn connect_all(
    args: &ChatArgs,
    keys: &Keys,
    timeout: Duration,
    deadline: Instant,
) -> (Vec<(Uuid, Ws)>, Errors) {
    let sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let now_s = zerocast_social::now_ms() / 1000;
    let ttl = args.duration + 3600;
    let sep = if args.url.contains('?') { '&' } else { '?' };
    let mut set = JoinSet::new();
    for i in 0..args.clients {
        let user = Uuid::new_v4();
        let url = format!(
            "{}{sep}access_token={}",
            args.url,
            keys.issue(UserId(user), now_s, ttl)
        );
        let sem = sem.clone();
        set.spawn(async move {
            let attempt = async {
                let _permit = sem.acquire_owned().await;
                tokio::time::timeout(timeout, tokio_tungstenite::connect_async(url)).await
            };
            let r = match tokio::time::timeout_at(deadline.into(), attempt).await {
                Err(_) => Err(("connect: deadline", "not connected in time".to_owned())),
                Ok(Err(_)) => Err(("connect: timeout", format!("no handshake in {timeout:?}"))),
                Ok(Ok(Err(e))) => Err((connect_error(&e), e.to_string())),
                Ok(Ok(Ok((ws, _)))) => Ok(ws),
            };
            (i, user, r)
        });
    }
    let mut errors = Errors::default();
    let mut conns = Vec::with_capacity(args.clients as usize);
    let join_end = deadline + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(join_end.into(), set.join_next()).await {
            Ok(Some(Ok((i, user, r)))) => match r {
                Ok(ws) => conns.push((i, user, ws)),
                Err((kind, detail)) => errors.add(kind, &format!("client {i}: {detail}")),
            },
            Ok(Some(Err(e))) => errors.add("connect: task failed", &e.to_string()),
            Ok(None) => break,
            Err(_) => {
                errors.add_n(
                    "connect: deadline",
                    set.len() as u64,
                    "connect tasks still running",
                );
                set.abort_all();
                break;
            }
        }
    }
    conns.sort_unstable_by_key(|(i, _, _)| *i);
    let conns = conns.into_iter().map(|(_, u, ws)| (u, ws)).collect();
    (conns, errors)
}

fn connect_error(e: &WsError) -> &'static str {
    match e {
        WsError::Http(r) => match r.status().as_u16() {
            401 => "connect: http 401",
            403 => "connect: http 403",
            429 => "connect: http 429",
            503 => "connect: http 503",
            s if s >= 500 => "connect: http 5xx",
            _ => "connect: http other",
        },
        WsError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connect: refused",
            std::io::ErrorKind::ConnectionReset => "connect: reset",
            _ => "connect: io",
        },
        _ => "connect: handshake",
    }
}

/// What the scheduler asks of a client's writer.
#[derive(Debug)]
enum Cmd {
    /// Send message `seq` to client `to`, due at `due`.
    Send { seq: u64, to: u32, due: Instant },
    /// Close the socket normally.
    Close,
}

/// Queues R sends per second from `start` until `end`; returns how many it queued, and the
/// senders (so the writers live on until told to close).
async fn schedule(
    senders: Vec<mpsc::Sender<Cmd>>,
    sh: Arc<Shared>,
    rate: f64,
    start: Instant,
    end: Instant,
    seed: u64,
) -> (u64, Vec<mpsc::Sender<Cmd>>) {
    let n = senders.len();
    if n < 2 {
        if n == 1 {
            sh.error("too few clients", "one client connected: nobody to send to");
        }
        return (0, senders);
    }
    let mut rng = Rng(seed);
    // Senders go in rounds, each a fresh shuffle: random, and even across clients.
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut pos = n;
    let mut queued = 0;
    for seq in 0u64.. {
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        if due >= end {
            break;
        }
        // Bounded: `due` is before `end`.
        tokio::time::sleep_until(due.into()).await;
        if pos == n {
            rng.shuffle(&mut order);
            pos = 0;
        }
        let from = order[pos];
        pos += 1;
        let mut to = rng.below(n as u64 - 1) as u32;
        if to >= from {
            to += 1;
        }
        match senders[from as usize].try_send(Cmd::Send { seq, to, due }) {
            Ok(()) => queued += 1,
            Err(mpsc::error::TrySendError::Full(_)) => sh.error(
                "not sent: client queue full",
                &format!("client {from}: {QUEUE} sends waiting to be written"),
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => sh.error(
                "not sent: connection gone",
                &format!("client {from} (its connection failed earlier)"),
            ),
        }
    }
    (queued, senders)
}

/// Writes one client's frames; stops at the first write error.
async fn writer(
    mut sink: SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Cmd>,
    me: u32,
    peers: Arc<Vec<Uuid>>,
    sh: Arc<Shared>,
    timeout: Duration,
) {
    loop {
        let cmd = match tokio::time::timeout_at(sh.hard_stop.into(), rx.recv()).await {
            Ok(Some(c)) => c,
            Ok(None) | Err(_) => return,
        };
        let (seq, to, due) = match cmd {
            Cmd::Send { seq, to, due } => (seq, to, due),
            Cmd::Close => {
                let close = Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                }));
                let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close)).await;
                return;
            }
        };
        if sh.closing.load(Ordering::Relaxed) {
            let mut st = sh.lock();
            st.processed += 1;
            st.errors.add(
                "not written",
                &format!("seq {seq}: still queued at the end"),
            );
            continue;
        }
        let wall_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let text = format!(
            r#"{{"type":"send","to":"{}","content":"seq {seq} t_us {wall_us}","client_id":"c{seq}"}}"#,
            peers[to as usize]
        );
        let at = Instant::now();
        // Recorded before writing: the ack may arrive before `send` returns.
        sh.lock()
            .written(seq, me, to, at, at.saturating_duration_since(due));
        let failure =
            match tokio::time::timeout(timeout, sink.send(Message::Text(text.into()))).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => ("write error", e.to_string()),
                Err(_) => ("write timeout", format!("no progress in {timeout:?}")),
            };
        let mut st = sh.lock();
        st.unwritten(seq);
        if !sh.closing.load(Ordering::Relaxed) {
            st.errors
                .add(failure.0, &format!("seq {seq}: {}", failure.1));
        }
        // Account for what will now never be written.
        rx.close();
        while let Ok(cmd) = rx.try_recv() {
            if let Cmd::Send { seq, .. } = cmd {
                st.processed += 1;
                st.errors.add(
                    "not sent: connection gone",
                    &format!("seq {seq} queued to a failed writer"),
                );
            }
        }
        return;
    }
}

/// Reads one client's frames until the socket ends (or the hard stop).
async fn reader(mut stream: SplitStream<Ws>, me: u32, my_id: String, sh: Arc<Shared>) {
    let mut server_closed = false;
    loop {
        let next = tokio::time::timeout_at(sh.hard_stop.into(), stream.next()).await;
        let quiet = server_closed || sh.closing.load(Ordering::Relaxed);
        let msg = match next {
            Err(_) => return,
            Ok(None) => {
                if !quiet {
                    sh.error(
                        "connection dropped",
                        &format!("client {me}: no close frame"),
                    );
                }
                return;
            }
            Ok(Some(Err(e))) => {
                if !quiet {
                    sh.error("read error", &format!("client {me}: {e}"));
                }
                return;
            }
            Ok(Some(Ok(m))) => m,
        };
        let at = Instant::now();
        match msg {
            Message::Text(t) => on_text(&sh, me, &my_id, &t, at),
            Message::Close(f) => {
                if !quiet {
                    let (code, reason) = f.map_or((0, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    sh.error(
                        &format!("server close {code}"),
                        &format!("client {me}: {reason}"),
                    );
                }
                server_closed = true;
            }
            // Pings are answered by tungstenite itself.
            _ => {}
        }
    }
}

fn on_text(sh: &Shared, me: u32, my_id: &str, text: &str, at: Instant) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        sh.error(
            "malformed frame",
            &text.chars().take(200).collect::<String>(),
        );
        return;
    };
    match v["type"].as_str() {
        Some("ack") => {
            let Some(seq) = seq_of(&v["client_id"], None) else {
                sh.error("unknown ack", text);
                return;
            };
            let mut st = sh.lock();
            if v["duplicate"] == true {
                st.errors.add("duplicate ack", text);
            }
            st.acked(seq, at);
        }
        Some("message") => {
            let m = &v["message"];
            let seq = seq_of(&m["client_id"], m["content"].as_str());
            if m["to"].as_str() == Some(my_id) {
                match seq {
                    Some(seq) => sh.lock().delivered(seq, me, at),
                    None => sh.error("unknown message", text),
                }
            } else if m["from"].as_str() == Some(my_id) {
                // The sender's own copy (pushed to all the sender's devices).
                sh.lock().echoes += 1;
            } else {
                sh.error("misdelivered", &format!("client {me} got {text}"));
            }
        }
        Some("error") => {
            let code = v["code"].as_str().unwrap_or("?");
            let detail = v["message"].as_str().unwrap_or("");
            let seq = seq_of(&v["client_id"], None);
            let mut st = sh.lock();
            st.errors.add(
                &format!("error frame {code}"),
                &format!("client {me}: {detail}"),
            );
            if let Some(seq) = seq {
                if st.inflight.remove(&seq).is_some() {
                    st.rejected += 1;
                }
            }
        }
        // typing, read receipts, pongs: not part of this load.
        _ => {}
    }
}

/// The sequence number of a message: from `client_id` `c<seq>`, else content `seq <seq> …`.
fn seq_of(client_id: &Value, content: Option<&str>) -> Option<u64> {
    if let Some(seq) = client_id
        .as_str()
        .and_then(|c| c.strip_prefix('c')?.parse().ok())
    {
        return Some(seq);
    }
    content?
        .strip_prefix("seq ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// Errors by kind: count and the first detail.
#[derive(Debug, Default)]
pub(crate) struct Errors(BTreeMap<String, (u64, String)>);

impl Errors {
    fn add(&mut self, kind: &str, detail: &str) {
        self.add_n(kind, 1, detail);
    }

    fn add_n(&mut self, kind: &str, n: u64, detail: &str) {
        if let Some(e) = self.0.get_mut(kind) {
            e.0 += n;
        } else {
            self.0.insert(kind.to_owned(), (n, detail.to_owned()));
        }
    }

    fn total(&self) -> u64 {
        self.0.values().map(|(n, _)| n).sum()
    }
}

/// A message written and not yet both acked and delivered.
#[derive(Debug)]
struct Pending {
    written: Instant,
    from: u32,
    to: u32,
    acked: bool,
    delivered: bool,
}

/// Everything the clients measure, behind one lock.
#[derive(Debug)]
struct State {
    inflight: HashMap<u64, Pending>,
    /// Send commands taken by writers (written, failed or dropped).
    processed: u64,
    sent: u64,
    acked: u64,
    delivered: u64,
    /// Sends answered with an error frame.
    rejected: u64,
    /// The sender's own copies of its messages.
    echoes: u64,
    ack: Stats,
    delivery: Stats,
    /// Largest delay from a send's due time to its write.
    max_lag: Duration,
    errors: Errors,
}

impl State {
    fn new(sample_cap: usize) -> Self {
        Self {
            inflight: HashMap::new(),
            processed: 0,
            sent: 0,
            acked: 0,
            delivered: 0,
            rejected: 0,
            echoes: 0,
            ack: Stats::new(sample_cap),
            delivery: Stats::new(sample_cap),
            max_lag: Duration::ZERO,
            errors: Errors::default(),
        }
    }

    fn written(&mut self, seq: u64, from: u32, to: u32, at: Instant, lag: Duration) {
        self.processed += 1;
        self.sent += 1;
        self.max_lag = self.max_lag.max(lag);
        self.inflight.insert(
            seq,
            Pending {
                written: at,
                from,
                to,
                acked: false,
                delivered: false,
            },
        );
    }

    fn unwritten(&mut self, seq: u64) {
        if self.inflight.remove(&seq).is_some() {
            self.sent -= 1;
        }
    }

    fn acked(&mut self, seq: u64, at: Instant) {
        let Some(p) = self.inflight.get_mut(&seq) else {
            self.errors
                .add("unexpected ack", &format!("seq {seq}: not in flight"));
            return;
        };
        if p.acked {
            self.errors.add("duplicate ack", &format!("seq {seq}"));
            return;
        }
        p.acked = true;
        self.acked += 1;
        self.ack
            .part_latency(at.saturating_duration_since(p.written));
        if p.delivered {
            self.inflight.remove(&seq);
        }
    }

    fn delivered(&mut self, seq: u64, me: u32, at: Instant) {
        let Some(p) = self.inflight.get_mut(&seq) else {
            self.errors.add(
                "duplicate delivery",
                &format!("seq {seq} to client {me}: already delivered or never sent"),
            );
            return;
        };
        if p.to != me {
            let detail = format!("seq {seq} for client {} pushed to client {me}", p.to);
            self.errors.add("misdelivered", &detail);
            return;
        }
        if p.delivered {
            self.errors
                .add("duplicate delivery", &format!("seq {seq} to client {me}"));
            return;
        }
        p.delivered = true;
        self.delivered += 1;
        self.delivery
            .part_latency(at.saturating_duration_since(p.written));
        if p.acked {
            self.inflight.remove(&seq);
        }
    }
}

/// What every client task shares.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Set when the run closes its sockets: errors from then on are expected.
    closing: AtomicBool,
    hard_stop: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, kind: &str, detail: &str) {
        self.lock().errors.add(kind, detail);
    }
}

/// Raises this process's open-file soft limit to cover `want` sockets, if the hard limit allows.
fn raise_open_files(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur >= want {
        return;
    }
    if lim.rlim_max < want {
        eprintln!(
            "zerocast-load: warning: the open-file hard limit {} is below the {want} needed",
            lim.rlim_max
        );
    }
    lim.rlim_cur = want.min(lim.rlim_max);
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        eprintln!("zerocast-load: warning: cannot raise the open-file limit");
    }
}

/// Everything the final table shows.
#[derive(Debug)]
pub(crate) struct Report {
    url: String,
    clients: u64,
    connected: u64,
    connect_time: Duration,
    connect_concurrency: usize,
    duration: u64,
    rate: f64,
    /// From the first due send until the scheduler finished.
    sending: Duration,
    /// Waiting for the last acks and pushes.
    stragglers: Duration,
    /// Acked but never delivered.
    losses: u64,
    first_loss: Option<String>,
    state: State,
    /// % of one core while sending: (total, user, system).
    server_cpu: Option<(f64, f64, f64)>,
    /// (max sampled, before connecting, once connected), bytes.
    server_rss: Option<(u64, u64, u64)>,
    my_cpu: Option<(f64, f64, f64)>,
}

impl Report {
    /// Losses plus errors: 0 for a clean run.
    pub(crate) fn failures(&self) -> u64 {
        self.losses + self.state.errors.total()
    }

    pub(crate) fn render(&self) -> String {
        let s = &self.state;
        let secs = self.sending.as_secs_f64().max(1e-9);
        let mut rows: Vec<(String, String)> = vec![
            (
                "clients".into(),
                format!(
                    "{} connected of {} (in {:.2} s, {} at a time)",
                    self.connected,
                    self.clients,
                    self.connect_time.as_secs_f64(),
                    self.connect_concurrency
                ),
            ),
            (
                "duration".into(),
                format!(
                    "{} s (sent for {:.2} s, stragglers {:.2} s)",
                    self.duration,
                    self.sending.as_secs_f64(),
                    self.stragglers.as_secs_f64()
                ),
            ),
            (
                "target rate".into(),
                format!(
                    "{:.1} msg/s ({:.2} per client)",
                    self.rate,
                    self.rate / self.clients.max(1) as f64
                ),
            ),
            ("sent".into(), s.sent.to_string()),
            ("acked".into(), s.acked.to_string()),
            ("rejected".into(), s.rejected.to_string()),
            ("delivered".into(), s.delivered.to_string()),
            (
                "delivered/s".into(),
                format!("{:.1}", s.delivered as f64 / secs),
            ),
            ("ack p50".into(), fmt_ms(s.ack.percentile(0.50))),
            ("ack p99".into(), fmt_ms(s.ack.percentile(0.99))),
            ("ack p999".into(), fmt_ms(s.ack.percentile(0.999))),
            (
                "ack max".into(),
                fmt_ms((s.acked > 0).then(|| s.ack.max_latency())),
            ),
            ("delivery p50".into(), fmt_ms(s.delivery.percentile(0.50))),
            ("delivery p99".into(), fmt_ms(s.delivery.percentile(0.99))),
            ("delivery p999".into(), fmt_ms(s.delivery.percentile(0.999))),
            (
                "delivery max".into(),
                fmt_ms((s.delivered > 0).then(|| s.delivery.max_latency())),
            ),
            ("send lag max".into(), fmt_ms(Some(s.max_lag))),
        ];
        let dropped = s.ack.samples_dropped() + s.delivery.samples_dropped();
        if dropped > 0 {
            rows.push((
                "latency samples".into(),
                format!("{dropped} dropped; percentiles from the first ones kept"),
            ));
        }
        let loss = match &self.first_loss {
            Some(first) => format!("{} (first: {first})", self.losses),
            None => self.losses.to_string(),
        };
        rows.push(("losses".into(), loss));
        rows.push(("errors".into(), s.errors.total().to_string()));
        for (kind, (n, _)) in &s.errors.0 {
            rows.push((format!("  {kind}"), n.to_string()));
        }
        if let Some(c) = self.server_cpu {
            rows.push(("server CPU (sending)".into(), fmt_cpu(c)));
        }
        if let Some((max, before, connected)) = self.server_rss {
            rows.push((
                "server RSS max".into(),
                format!(
                    "{:.1} MiB (before connecting {:.1} MiB, connected {:.1} MiB)",
                    mib(max),
                    mib(before),
                    mib(connected)
                ),
            ));
        }
        if let Some(c) = self.my_cpu {
            rows.push(("load generator CPU".into(), fmt_cpu(c)));
        }
        render_table(
            &format!("zerocast-load chat {}", self.url),
            &rows,
            s.errors
                .0
                .iter()
                .map(|(k, (_, d))| (k.as_str(), d.as_str())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers() {
        assert_eq!(seq_of(&Value::from("c42"), None), Some(42));
        assert_eq!(seq_of(&Value::Null, Some("seq 7 t_us 1")), Some(7));
        assert_eq!(seq_of(&Value::from("x"), Some("hello")), None);
    }

    #[test]
    fn tracks_acks_deliveries_and_losses() {
        let mut st = State::new(10);
        let t = Instant::now();
        st.written(1, 0, 2, t, Duration::ZERO);
        st.written(2, 0, 3, t, Duration::ZERO);
        st.delivered(1, 2, t + Duration::from_millis(3));
        st.acked(1, t + Duration::from_millis(1));
        st.acked(2, t + Duration::from_millis(2));
        st.delivered(1, 2, t);
        st.delivered(2, 0, t);
        assert_eq!((st.sent, st.acked, st.delivered), (2, 2, 1));
        assert_eq!(st.inflight.len(), 1, "seq 2 is acked but not delivered");
        assert_eq!(st.errors.0["duplicate delivery"].0, 1);
        assert_eq!(st.errors.0["misdelivered"].0, 1);
        st.delivery.sort_samples();
        assert_eq!(st.delivery.percentile(0.5), Some(Duration::from_millis(3)));
    }

    /// A short run against an in-process social server on its embedded defaults.
    #[test]
    fn end_to_end_against_the_social_server() {
        let server = crate::TestSocialServer::start("test-secret");
        let port = server.port;
        let args = ChatArgs {
            url: format!("ws://127.0.0.1:{port}/api/v1/ws"),
            secret_file: None,
            secret: Some("test-secret".into()),
            clients: 5,
            rate: 20.0,
            duration: 1,
            server_pid: None,
            timeout: 5,
            connect_concurrency: 2,
            workers: Some(1),
            max_samples: 1000,
        };
        let report = run(&args).unwrap();
        // A wrong secret: every connect is refused with 401.
        let wrong = run(&ChatArgs {
            secret: Some("wrong".into()),
            clients: 2,
            ..args
        })
        .unwrap();
        drop(server);
        let text = report.render();
        assert_eq!(report.failures(), 0, "{text}");
        assert_eq!(report.state.sent, 20, "{text}");
        assert_eq!(report.state.delivered, 20, "{text}");
        assert_eq!(report.state.echoes, 20, "{text}");
        assert!(text.contains("  delivered   "), "{text}");
        assert_eq!(wrong.connected, 0);
        assert_eq!(wrong.failures(), 2, "{}", wrong.render());
        assert_eq!(wrong.state.errors.0["connect: http 401"].0, 2);
    }
}
