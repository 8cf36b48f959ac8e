//! Edge benches: the HTTP/1.1 response head written before every media body, and fan-out: one
//! part published, N waiting requests woken through `notify::Notify` (the signal the hub fires
//! for every part).

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zerocast_edge::bench::http1_media_head;
use zerocast_edge::notify::Notify;

const WAITERS: [u64; 3] = [1, 100, 1000];

fn http_head(c: &mut Criterion) {
    let mut g = c.benchmark_group("http1_response_head");
    g.throughput(Throughput::Elements(1));
    let alt_svc = "h3=\":8443\"; ma=86400";
    for (name, content_type, immutable, len, alt) in [
        ("part", "video/mp4", true, Some(187_345), None),
        (
            "part_alt_svc",
            "video/mp4",
            true,
            Some(187_345),
            Some(alt_svc),
        ),
        ("live_part_chunked", "video/mp4", true, None, None),
        (
            "playlist",
            "application/vnd.apple.mpegurl",
            false,
            Some(3_210),
            None,
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                http1_media_head(
                    black_box(content_type),
                    black_box(immutable),
                    black_box(len),
                    black_box(alt),
                    true,
                )
            })
        });
    }
    g.finish();
}

/// `n` tasks on this core wait on `notify`; each round: `notify_all`, then run until all `n`
/// have woken and wait again. The last one to wake fires `done`, which the publisher awaits.
async fn same_core_round(n: u64, iters: u64) -> Duration {
    let notify = Rc::new(Notify::new());
    let done = Rc::new(Notify::new());
    let woken = Rc::new(Cell::new(0u64));
    let stop = Rc::new(Cell::new(false));
    let ready = done.seq();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (notify, done, woken, stop) =
                (notify.clone(), done.clone(), woken.clone(), stop.clone());
            monoio::spawn(async move {
                let mut seen = notify.seq();
                loop {
                    // Counted before waiting, and the wait registers within this same poll:
                    // once the last task has fired `done`, all `n` are waiting.
                    woken.set(woken.get() + 1);
                    if woken.get().is_multiple_of(n) {
                        done.notify_all();
                    }
                    notify.changed(seen).await;
                    if stop.get() {
                        break;
                    }
                    seen = notify.seq();
                }
            })
        })
        .collect();
    // (A task that wakes itself runs again before the others on monoio: wait, don't yield.)
    done.changed(ready).await;
    assert_eq!(notify.waiting(), n as usize);
    let start = Instant::now();
    for _ in 0..iters {
        let seen = done.seq();
        notify.notify_all();
        done.changed(seen).await;
    }
    let elapsed = start.elapsed();
    assert_eq!(woken.get(), n * (iters + 1));
    stop.set(true);
    notify.notify_all();
    for t in tasks {
        t.await;
    }
    elapsed
}

/// `n` tasks on a monoio runtime on another thread (io_uring when the kernel allows it, as the
/// server picks) wait on `notify`; the bench thread publishes and spins until all have woken.
fn cross_core_round(n: u64, iters: u64) -> Duration {
    let notify = Arc::new(Notify::new());
    let woken = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let waiters = {
        let (notify, woken, stop) = (notify.clone(), woken.clone(), stop.clone());
        std::thread::spawn(move || {
            let run = async move {
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let (notify, woken, stop) = (notify.clone(), woken.clone(), stop.clone());
                        monoio::spawn(async move {
                            let mut seen = notify.seq();
                            loop {
                                notify.changed(seen).await;
                                if stop.load(Ordering::Acquire) {
                                    break;
                                }
                                seen = notify.seq();
                                woken.fetch_add(1, Ordering::Release);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
            };
            if monoio::utils::detect_uring() {
                monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .build()
                    .expect("an io_uring runtime")
                    .block_on(run);
            } else {
                monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .build()
                    .expect("an epoll runtime")
                    .block_on(run);
            }
        })
    };
    while notify.waiting() < n as usize {
        std::thread::yield_now();
    }
    let start = Instant::now();
    for i in 1..=iters {
        notify.notify_all();
        let mut spins = 0u32;
        while woken.load(Ordering::Acquire) < i * n {
            spins += 1;
            if spins.is_multiple_of(64) {
                // Two cores, and other work on them: let the waiters' thread run.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Release);
    notify.notify_all();
    waiters.join().expect("the waiters' thread");
    elapsed
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("notify_fanout");
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .expect("a monoio runtime");
    for n in WAITERS {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("same_core", n), &n, |b, &n| {
            b.iter_custom(|iters| rt.block_on(same_core_round(n, iters)))
        });
    }
    for n in WAITERS {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("cross_core", n), &n, |b, &n| {
            b.iter_custom(|iters| cross_core_round(n, iters))
        });
    }
    g.finish();
}

criterion_group!(benches, http_head, fanout);
criterion_main!(benches);
