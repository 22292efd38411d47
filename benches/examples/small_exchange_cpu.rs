//! CPU per small HTTP exchange: a 64-byte `echo` over HTTP/1.1 keep-alive with
//! `zstd-8mb` both ways (the client's command data and the server's answer) against
//! `identity`, with zstd contexts from a pool (reused from one exchange to the next) and
//! without (pools of `max_idle` 0: each exchange creates its contexts, as before the
//! pool). All in one run, in interleaved rounds, so the machine's load moves every
//! variant alike.
//!
//! ```text
//! cargo run --release -p hgframe-benches --example small_exchange_cpu -- [ROUNDS] [EXCHANGES]
//! ```
//!
//! The server runs on one thread (a current-thread runtime), the client on another; each
//! side's CPU is its thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) over the round's
//! exchanges. The process's CPU time is printed too, as a check that no other thread did
//! the work. Prints the per-exchange CPU of each variant (median of the rounds), the
//! median of each round's ratio to `identity`, and the ratio of the minimums (the least
//! disturbed round of each variant). Goal: zstd with the pool at most 1.3x
//! identity, on each side. With `ONLY=0`, `1` or `2` it runs that variant alone, for
//! `perf record`.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hgframe::commands::FileCommands;
use hgframe_http::{serve, Call, Client, ClientOptions, HgFrameService, Registry, ServerConfig};
use hgframe_stream::encoding::{PoolLimits, Zstd8Mb, ZstdContextPool};
use hgframe_stream::Profiles;
use rustix::time::{clock_gettime, ClockId};

const DATA_LEN: usize = 64;

fn cpu(clock: ClockId) -> Duration {
    let t = clock_gettime(clock);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn thread_cpu() -> Duration {
    cpu(ClockId::ThreadCPUTime)
}

/// `zstd-8mb` on a pool of its own (`max_idle` 0: no reuse), then `identity`.
fn profiles(max_idle: usize) -> Profiles {
    let limits = PoolLimits::new(max_idle, PoolLimits::default().max_context_bytes()).unwrap();
    let pool = Arc::new(ZstdContextPool::new(limits));
    let mut profiles = Profiles::default();
    profiles.register_preferred(Arc::new(Zstd8Mb::with_pool(pool)));
    profiles
}

#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    zstd: bool,
    max_idle: usize,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "identity",
        zstd: false,
        max_idle: 16,
    },
    Variant {
        name: "zstd, pooled",
        zstd: true,
        max_idle: 16,
    },
    Variant {
        name: "zstd, no pool",
        zstd: true,
        max_idle: 0,
    },
];

/// Starts a server for `variant` on the server thread's runtime; returns its address.
async fn start_server(
    handle: &tokio::runtime::Handle,
    root: std::path::PathBuf,
    variant: Variant,
) -> std::net::SocketAddr {
    handle
        .spawn(async move {
            let mut registry = Registry::new();
            FileCommands::new(&root).unwrap().register(&mut registry);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut config = ServerConfig::default();
            config.engine_mut().set_profiles(profiles(variant.max_idle));
            let service = HgFrameService::new(registry, config).unwrap();
            tokio::spawn(serve(listener, service, std::future::pending()));
            addr
        })
        .await
        .unwrap()
}

fn client_for(addr: std::net::SocketAddr, variant: Variant) -> Client {
    let mut options = ClientOptions::default();
    options.set_profiles(profiles(variant.max_idle));
    if variant.zstd {
        options.reactor_mut().set_encoding("zstd-8mb");
        options.set_encodings(&["zstd-8mb", "identity"]);
    } else {
        options.set_encodings(&["identity"]);
    }
    Client::with_options(&addr.to_string(), options).unwrap()
}

async fn exchange(client: &Client, data: &Bytes) {
    let answer = client
        .call(Call::new("echo").data(data.clone()))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(answer.data, *data);
}

/// CPU of the server thread, read on that thread.
async fn server_cpu(handle: &tokio::runtime::Handle) -> Duration {
    handle.spawn(async { thread_cpu() }).await.unwrap()
}

struct Sample {
    server: Duration,
    client: Duration,
    process: Duration,
}

async fn round(handle: &tokio::runtime::Handle, client: &Client, n: usize) -> Sample {
    let data = Bytes::from(vec![b'e'; DATA_LEN]);
    let (s0, c0, p0) = (
        server_cpu(handle).await,
        thread_cpu(),
        cpu(ClockId::ProcessCPUTime),
    );
    for _ in 0..n {
        exchange(client, &data).await;
    }
    let (s1, c1, p1) = (
        server_cpu(handle).await,
        thread_cpu(),
        cpu(ClockId::ProcessCPUTime),
    );
    let per = |d: Duration| d / n as u32;
    Sample {
        server: per(s1 - s0),
        client: per(c1 - c0),
        process: per(p1 - p0),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let root = tempfile::tempdir().unwrap();

    // The server thread: a current-thread runtime, so all of the server's work (hyper,
    // the engine, the handlers) runs on it.
    let handle = hgframe_benches::server_thread();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut clients = Vec::new();
        // `ONLY=1` runs variant 1 alone (for `perf record` of one variant).
        if let Some(only) = std::env::var("ONLY").ok().and_then(|v| v.parse::<usize>().ok()) {
            let variant = VARIANTS[only];
            let addr = start_server(&handle, root.path().to_owned(), variant).await;
            let client = client_for(addr, variant);
            let s = round(&handle, &client, n * rounds).await;
            println!(
                "{}: {:.1} / {:.1} / {:.1} µs per exchange (server / client / process)",
                variant.name,
                us(s.server),
                us(s.client),
                us(s.process)
            );
            return;
        }
        for variant in VARIANTS {
            let addr = start_server(&handle, root.path().to_owned(), variant).await;
            let client = client_for(addr, variant);
            // Warm up: the connection, the pools, the allocator.
            round(&handle, &client, n / 4).await;
            clients.push(client);
        }
        let mut samples: Vec<Vec<Sample>> = VARIANTS.iter().map(|_| Vec::new()).collect();
        println!(
            "{} rounds of {n} exchanges of {DATA_LEN} bytes each; CPU per exchange in µs (server / client / whole process)",
            rounds
        );
        for r in 0..rounds {
            let mut line = format!("round {r:>2}:");
            for (i, client) in clients.iter().enumerate() {
                let s = round(&handle, client, n).await;
                line += &format!(
                    "  {} {:.1} / {:.1} / {:.1}",
                    VARIANTS[i].name,
                    us(s.server),
                    us(s.client),
                    us(s.process)
                );
                samples[i].push(s);
            }
            println!("{line}");
        }
        println!();
        println!(
            "variant         server µs  client µs  process µs  server / identity  client / identity  (ratio of the minimums: server, client)"
        );
        for (i, variant) in VARIANTS.iter().enumerate() {
            let col = |f: &dyn Fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
            let min = |i: usize, f: &dyn Fn(&Sample) -> f64| {
                samples[i].iter().map(f).fold(f64::INFINITY, f64::min)
            };
            let ratio = |f: &dyn Fn(&Sample) -> f64| {
                median(
                    samples[i]
                        .iter()
                        .zip(&samples[0])
                        .map(|(s, base)| f(s) / f(base))
                        .collect(),
                )
            };
            let server = |s: &Sample| us(s.server);
            let client = |s: &Sample| us(s.client);
            println!(
                "{:<14}  {:>9.1}  {:>9.1}  {:>10.1}  {:>16.2}x  {:>16.2}x  ({:.2}x, {:.2}x)",
                variant.name,
                col(&server),
                col(&client),
                col(&|s| us(s.process)),
                ratio(&server),
                ratio(&client),
                min(i, &server) / min(0, &server),
                min(i, &client) / min(0, &client),
            );
        }
        println!();
        println!("goal: zstd, pooled <= 1.3x identity on each side");
    });
}
