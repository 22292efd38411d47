//! Server CPU per `cat` with the response cache (every `cat` a hit: the cached
//! compressed answer is sent as it is) against without it (each `cat` reads and
//! compresses the file), over HTTP/1.1 keep-alive with `zstd-8mb` responses, for a
//! 1 MiB and a 64 KiB text file. All in one run, in interleaved rounds, so the
//! machine's load moves every variant alike.
//!
//! ```text
//! cargo run --release -p hgframe-benches --example cat_cache -- [ROUNDS] [CATS]
//! ```
//!
//! The server's own thread runs a current-thread runtime (hyper, the engine, the
//! handlers); file reads, and the compression of large pieces, run on its blocking pool.
//! So two server figures: its thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), and the
//! server's whole CPU, the process's CPU time less the client thread's (the client is
//! the only other thread that works). Per `cat`, the median of the rounds; then the
//! median of each round's hit / miss ratio, and the ratio of the minimums. The files are
//! generated text (words of source code, deterministic), their times set an hour back;
//! the cache caches at once (no settling time) and is filled by a warm-up `cat`.
#![allow(missing_docs)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use hgframe::commands::{CacheLimits, FileCommands};
use hgframe_http::{serve, Call, Client, ClientOptions, HgFrameService, Registry, ServerConfig};
use rustix::time::{clock_gettime, ClockId};

fn cpu(clock: ClockId) -> Duration {
    let t = clock_gettime(clock);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn thread_cpu() -> Duration {
    cpu(ClockId::ThreadCPUTime)
}

/// `n` bytes of text: words of source code, deterministic.
fn text(n: usize, seed: u64) -> Vec<u8> {
    let words = [
        "def", "self", "return", "value", "stream", "frame", "None", "import", "class", "if",
        "else", "for", "in", "range", "len", "data", "=", "(", ")", ":",
    ];
    let mut out = Vec::with_capacity(n + 16);
    let mut x = seed | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 20) as usize].as_bytes());
        out.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
    }
    out.truncate(n);
    out
}

#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    file: &'static str,
    cached: bool,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "1 MiB, miss",
        file: "one-mib.txt",
        cached: false,
    },
    Variant {
        name: "1 MiB, hit",
        file: "one-mib.txt",
        cached: true,
    },
    Variant {
        name: "64 KiB, miss",
        file: "64-kib.txt",
        cached: false,
    },
    Variant {
        name: "64 KiB, hit",
        file: "64-kib.txt",
        cached: true,
    },
];

/// Starts a server over `root` on the server thread's runtime, with the cache or
/// without; returns its address.
async fn start_server(
    handle: &tokio::runtime::Handle,
    root: std::path::PathBuf,
    cached: bool,
) -> (std::net::SocketAddr, FileCommands) {
    handle
        .spawn(async move {
            let mut registry = Registry::new();
            let mut files = FileCommands::new(&root).unwrap();
            let limits = if cached {
                CacheLimits {
                    settle_time: Duration::ZERO,
                    ..CacheLimits::default()
                }
            } else {
                CacheLimits::disabled()
            };
            files.set_cache(limits).unwrap();
            files.register(&mut registry);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let service = HgFrameService::new(registry, ServerConfig::default()).unwrap();
            tokio::spawn(serve(listener, service, std::future::pending()));
            (addr, files)
        })
        .await
        .unwrap()
}

fn client_for(addr: std::net::SocketAddr) -> Client {
    let mut options = ClientOptions::default();
    options.set_encodings(&["zstd-8mb"]);
    Client::with_options(&addr.to_string(), options).unwrap()
}

async fn cat(client: &Client, file: &str, len: usize) {
    let answer = client
        .call(Call::new("cat").arg("path", file.to_owned()))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(answer.data.len(), len);
}

/// CPU of the server thread, read on that thread.
async fn server_cpu(handle: &tokio::runtime::Handle) -> Duration {
    handle.spawn(async { thread_cpu() }).await.unwrap()
}

struct Sample {
    /// The server's thread.
    thread: Duration,
    /// The whole server: the process less the client thread.
    server: Duration,
}

async fn round(
    handle: &tokio::runtime::Handle,
    client: &Client,
    variant: Variant,
    len: usize,
    n: usize,
) -> Sample {
    let (s0, c0, p0) = (
        server_cpu(handle).await,
        thread_cpu(),
        cpu(ClockId::ProcessCPUTime),
    );
    for _ in 0..n {
        cat(client, variant.file, len).await;
    }
    let (s1, c1, p1) = (
        server_cpu(handle).await,
        thread_cpu(),
        cpu(ClockId::ProcessCPUTime),
    );
    let per = |d: Duration| d / n as u32;
    Sample {
        thread: per(s1 - s0),
        server: per((p1 - p0).saturating_sub(c1 - c0)),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn write_old(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let root = tempfile::tempdir().unwrap();
    let sizes = [("one-mib.txt", 1 << 20), ("64-kib.txt", 64 << 10)];
    for (i, (name, len)) in sizes.iter().enumerate() {
        write_old(&root.path().join(name), &text(*len, i as u64 + 1));
    }
    let len_of = |file: &str| sizes.iter().find(|s| s.0 == file).map_or(0, |s| s.1);

    let handle = hgframe_benches::server_thread();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut clients = Vec::new();
        let mut commands = Vec::new();
        for variant in VARIANTS {
            let (addr, files) =
                start_server(&handle, root.path().to_owned(), variant.cached).await;
            commands.push(files);
            let client = client_for(addr);
            // Warm up: the connection, the pools, the cache.
            round(&handle, &client, variant, len_of(variant.file), n / 4 + 1).await;
            clients.push(client);
        }
        let mut samples: Vec<Vec<Sample>> = VARIANTS.iter().map(|_| Vec::new()).collect();
        println!(
            "{rounds} rounds of {n} cats each, zstd-8mb level 3; server CPU per cat in µs (its thread / all of it)"
        );
        for r in 0..rounds {
            let mut line = format!("round {r:>2}:");
            for (i, client) in clients.iter().enumerate() {
                let v = VARIANTS[i];
                let s = round(&handle, client, v, len_of(v.file), n).await;
                line += &format!("  {} {:.0} / {:.0}", v.name, us(s.thread), us(s.server));
                samples[i].push(s);
            }
            println!("{line}");
        }
        println!();
        println!(
            "variant        thread µs  server µs  hit / miss (thread, server)  ratio of the minimums (thread, server)"
        );
        for (i, variant) in VARIANTS.iter().enumerate() {
            let col = |f: &dyn Fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
            let thread = |s: &Sample| us(s.thread);
            let server = |s: &Sample| us(s.server);
            let mut line = format!(
                "{:<13}  {:>9.0}  {:>9.0}",
                variant.name,
                col(&thread),
                col(&server)
            );
            if variant.cached {
                // The miss of the same file is the variant before.
                let base = i - 1;
                let ratio = |f: &dyn Fn(&Sample) -> f64| {
                    median(
                        samples[i]
                            .iter()
                            .zip(&samples[base])
                            .map(|(s, b)| f(s) / f(b))
                            .collect(),
                    )
                };
                let min = |k: usize, f: &dyn Fn(&Sample) -> f64| {
                    samples[k].iter().map(f).fold(f64::INFINITY, f64::min)
                };
                line += &format!(
                    "  {:>8.3}x, {:.3}x             {:.3}x, {:.3}x",
                    ratio(&thread),
                    ratio(&server),
                    min(i, &thread) / min(base, &thread),
                    min(i, &server) / min(base, &server),
                );
            }
            println!("{line}");
        }
        println!();
        for (variant, files) in VARIANTS.iter().zip(&commands) {
            if let Some(stats) = files.cache_stats() {
                println!("{}: cache {stats:?}", variant.name);
            }
        }
    });
}
