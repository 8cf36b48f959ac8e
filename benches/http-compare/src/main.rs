//! `hyper-part`: a minimal hyper 1.x HTTP/1.1 server on one pinned monoio worker, through
//! monoio-compat (`MonoioIo` over `TcpStream::into_poll_io()`), serving `GET /part` as the
//! bytes of one LL-HLS part split into `--pieces` `Bytes`. zerocast holds a 200 ms part of a
//! 30 fps stream with AAC audio as about 21: per video frame one `moof`+`mdat` header, the video
//! sample and the audio samples since the previous frame. It is the baseline that
//! `benches/scripts/http-compare.sh` loads with wrk next to zerocast's own HTTP/1.1 path
//! (`edge/src/http.rs`); see docs/performance.md.
//!
//! Each response clones the piece list (reference counts, no copy) into a body that yields one
//! frame per piece, with an exact size hint so hyper sends `Content-Length`. With a vectored
//! IO (monoio's poll-mode `TcpStream` says it is) hyper queues the pieces and writes them with
//! `writev`; nothing here copies media bytes.

// This binary's output is its startup line; printing to stdout is its job.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL, CONTENT_TYPE,
};
use hyper::{Request, Response, StatusCode};
use monoio::io::IntoPollIo;
use monoio::net::{ListenerOpts, TcpListener};
use monoio_compat::hyper::{MonoioExecutor, MonoioIo, MonoioTimer};

/// A body of pre-split pieces, one data frame each.
#[derive(Debug)]
struct Pieces {
    all: Rc<[Bytes]>,
    next: usize,
    remaining: u64,
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(b) = self.all.get(self.next).cloned() else {
            return Poll::Ready(None);
        };
        self.next += 1;
        self.remaining -= b.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.all.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn respond(req: &Request<Incoming>, part: &Rc<[Bytes]>, total: u64) -> Response<Pieces> {
    if req.uri().path() != "/part" {
        let body = Bytes::from_static(b"not found\n");
        let mut resp = Response::new(Pieces {
            remaining: body.len() as u64,
            all: Rc::new([body]),
            next: 0,
        });
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    }
    let mut resp = Response::new(Pieces {
        all: part.clone(),
        next: 0,
        remaining: total,
    });
    // The same headers zerocast sends for an immutable part.
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("*"));
    resp
}

/// Splits `data` into `n` pieces of near-equal length.
fn split(data: &Bytes, n: usize) -> Vec<Bytes> {
    let n = n.clamp(1, data.len().max(1));
    let step = data.len().div_ceil(n);
    (0..data.len())
        .step_by(step.max(1))
        .map(|at| data.slice(at..(at + step).min(data.len())))
        .collect()
}

struct Args {
    addr: SocketAddr,
    part: Bytes,
    pieces: usize,
    epoll: bool,
    core: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut addr: SocketAddr = "127.0.0.1:18110".parse().map_err(|e| format!("{e}"))?;
    let mut part = None;
    let mut pieces = 21;
    let mut epoll = false;
    let mut core = 0;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--addr" => addr = val()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--part" => {
                let path = val()?;
                part = Some(Bytes::from(
                    std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?,
                ));
            }
            "--synth" => {
                let len: usize = val()?.parse().map_err(|e| format!("--synth: {e}"))?;
                part = Some(Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>()));
            }
            "--pieces" => pieces = val()?.parse().map_err(|e| format!("--pieces: {e}"))?,
            "--core" => core = val()?.parse().map_err(|e| format!("--core: {e}"))?,
            "--driver" => match val()?.as_str() {
                "uring" => epoll = false,
                "epoll" => epoll = true,
                d => return Err(format!("--driver {d}: uring or epoll")),
            },
            _ => {
                return Err(format!(
                    "unknown argument {a}\nusage: hyper-part (--part FILE | --synth BYTES) \
                     [--pieces 21] [--addr 127.0.0.1:18110] [--driver uring|epoll] [--core 0]"
                ))
            }
        }
    }
    let part = part.ok_or("--part FILE or --synth BYTES is required")?;
    Ok(Args {
        addr,
        part,
        pieces,
        epoll,
        core,
    })
}

async fn serve(args: Args) {
    let part: Rc<[Bytes]> = split(&args.part, args.pieces).into();
    let total = args.part.len() as u64;
    let opts = ListenerOpts::new().reuse_port(true).backlog(4096);
    let listener = match TcpListener::bind_with_config(args.addr, &opts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hyper-part: bind {}: {e}", args.addr);
            std::process::exit(2);
        }
    };
    println!(
        "hyper-part: http://{}/part, {} bytes in {} pieces, driver {}, core {}",
        args.addr,
        total,
        part.len(),
        if args.epoll { "epoll" } else { "io_uring" },
        args.core
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hyper-part: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = match stream.into_poll_io() {
            Ok(io) => MonoioIo::new(io),
            Err(e) => {
                eprintln!("hyper-part: into_poll_io: {e}");
                continue;
            }
        };
        let part = part.clone();
        monoio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = respond(&req, &part, total);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(MonoioTimer)
                // zerocast sends no Date header; keep the responses the same size.
                .auto_date_header(false)
                .serve_connection(io, svc)
                .await;
        });
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hyper-part: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = monoio::utils::bind_to_cpu_set([args.core]) {
        eprintln!("hyper-part: could not pin to core {}: {e:?}", args.core);
    }
    let _ = MonoioExecutor; // hyper's http1 server needs no executor; http2 would.
    if args.epoll {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("monoio runtime")
            .block_on(serve(args));
    } else {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(1024)
            .enable_timer()
            .build()
            .expect("monoio runtime")
            .block_on(serve(args));
    }
}
