//! Several streams on several cores, as whole processes and as a server.
//!
//! ```text
//! cargo build --release -p hgframe --bin hgframe
//! cargo run --release -p hgframe-benches --example scaling -- [--rounds N] [--server-mib M] FILE...
//! ```
//!
//! For each FILE (a large text file, e.g. the corpus's `bulk.bin`), in interleaved rounds
//! (every variant once per round, so the machine's load moves them alike):
//!
//! - `pack N`: `hgframe frames pack --encoding zstd-8mb --level 3 --streams N < FILE >
//!   /dev/null` for N = 1, 2, 4, as a whole process (the binary is `HGFRAME_BIN`, default
//!   `target/release/hgframe`).
//! - The ceiling: two `pack` processes (one stream each) at once, each on one half of
//!   FILE (copied to temporary files first): what two cores give two independent runs.
//! - The same for the `zstd` CLI (`-T1 -3`) on the whole file,
//!   and two `zstd -T1 -3` processes at once, each on one half. Left out if `zstd` is
//!   not installed.
//! - `serve N`: an in-process `hgframe serve` (file commands) answers
//!   `cat` of the first `--server-mib` MiB of FILE (default 64) in `zstd-8mb`, to a raw
//!   HTTP/1.1 client that counts the body's bytes without decoding them, so the client
//!   costs next to nothing and the server's compressors have the cores. `serve 1` keeps
//!   compression on the exchange's task; `serve 2` compresses pieces (the default 256
//!   KiB) on two worker streams; `serve 3` is `serve 2` with pieces of 1 MiB
//!   (`parallel_piece`, which `cat` reads whole).
//!
//! With `ONLY=NAME` only the variants whose name starts with NAME run (`pack2`, `zstd`,
//! `serve1`, ...), for a profiler.
//!
//! For the server, the exchange's encoding time (every stream's, from its counters)
//! over its elapsed time says how many cores compressed on average.
//!
//! Prints each round's wall times, then per variant the minimum and median, and the
//! speed-ups against one stream (and, for the baseline, two zstd processes against one):
//! ratios of minimums (the least disturbed run of each) and medians of each round's ratio.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;

#[path = "../benches/common/mod.rs"]
#[allow(dead_code)] // The echo helpers serve the other benchmarks.
mod common;

use common::{command_request, runtime, RawClient};

/// Encoding time of the last exchange's streams, over its elapsed time: how many cores
/// compressed on average (the exchange's own stream and its worker streams).
/// Also the exchange's payload bytes on the wire.
type Busy = Arc<Mutex<Option<(f64, u64)>>>;

/// `serve` with the file commands over `root` and `parallel_streams`, recording each
/// exchange's compression time in `busy`.
async fn start_server(
    root: &Path,
    parallel_streams: usize,
    parallel_piece: usize,
    busy: Busy,
) -> std::net::SocketAddr {
    let mut registry = hgframe_http::Registry::new();
    hgframe::commands::FileCommands::new(root)
        .unwrap()
        .register(&mut registry);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = hgframe_http::ServerConfig::default();
    config
        .engine_mut()
        .set_parallel_streams(parallel_streams)
        .set_parallel_piece(parallel_piece)
        .set_observer(move |stats| {
            let encoding: Duration = stats.streams.iter().map(|s| s.encode_time).sum();
            let cores = encoding.as_secs_f64() / stats.elapsed.as_secs_f64().max(1e-9);
            let wire = stats.streams.iter().map(|s| s.wire_bytes).sum();
            *busy.lock().unwrap() = Some((cores, wire));
        });
    let service = hgframe_http::HgFrameService::new(registry, config).unwrap();
    tokio::spawn(hgframe_http::serve(
        listener,
        service,
        std::future::pending(),
    ));
    addr
}

/// Fields of `/proc/self/stat` after the command name (which may hold spaces).
fn stat_fields() -> Vec<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect()
}

/// Sum of two fields of `/proc/self/stat`, in clock ticks of 10 ms (fine for runs of a
/// second; read there rather than from the vDSO clock, so that the example also runs
/// under valgrind).
fn ticks(fields: &[u64], a: usize, b: usize) -> Duration {
    Duration::from_millis(10 * (fields.get(a).unwrap_or(&0) + fields.get(b).unwrap_or(&0)))
}

/// CPU time (user + system) of the waited-for children: `cutime` and `cstime`, fields 16
/// and 17 of the line (14 and 15 after the name).
fn children_cpu() -> Duration {
    ticks(&stat_fields(), 13, 14)
}

/// CPU time of this process (the in-process server and its client): `utime` and
/// `stime`, fields 14 and 15 of the line.
fn process_cpu() -> Duration {
    ticks(&stat_fields(), 11, 12)
}

fn run(cmd: &mut Command, input: &Path) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{cmd:?} failed");
    start.elapsed()
}

fn pack(bin: &Path, streams: u8, input: &Path) -> Duration {
    run(
        Command::new(bin)
            .args(pack_args())
            .args(["--streams", &streams.to_string()]),
        input,
    )
}

fn zstd_one(input: &Path) -> Duration {
    run(Command::new("zstd").args(["-T1", "-3", "-q", "-c"]), input)
}

fn pack_args() -> [&'static str; 6] {
    ["frames", "pack", "--encoding", "zstd-8mb", "--level", "3"]
}

/// Two processes at once, each on one half: what two cores give to two independent
/// runs of the same program, the ceiling for two streams in one process.
fn two_processes(program: &Path, args: &[&str], halves: &[PathBuf; 2]) -> Duration {
    let start = Instant::now();
    let children: Vec<_> = halves
        .iter()
        .map(|half| {
            Command::new(program)
                .args(args)
                .stdin(std::fs::File::open(half).unwrap())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    start.elapsed()
}

async fn cat(client: &RawClient, url: &str, body: Bytes) -> usize {
    let request = http::Request::post(url)
        .header("accept", hgframe_http::MEDIA_TYPE)
        .header("content-type", hgframe_http::MEDIA_TYPE)
        .header(hgframe_http::ENCODINGS_HEADER, "zstd-8mb")
        .body(http_body_util::Full::new(body))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            total += data.len();
        }
    }
    total
}

#[derive(Default)]
struct Times(
    BTreeMap<String, Vec<Duration>>,
    BTreeMap<String, Vec<Duration>>,
    BTreeMap<String, Vec<f64>>,
);

impl Times {
    fn add(&mut self, name: &str, t: Duration) {
        self.0.entry(name.to_owned()).or_default().push(t);
    }

    /// CPU time of one run (all its threads or processes).
    fn add_cpu(&mut self, name: &str, t: Duration) {
        self.1.entry(name.to_owned()).or_default().push(t);
    }

    /// Cores busy compressing in one run of an in-process server.
    fn add_busy(&mut self, name: &str, cores: f64) {
        self.2.entry(name.to_owned()).or_default().push(cores);
    }

    fn busy_median(&self, name: &str) -> Option<f64> {
        let mut v = self.2.get(name)?.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }

    fn cpu_median(&self, name: &str) -> Option<Duration> {
        let mut v = self.1.get(name)?.clone();
        v.sort();
        v.get(v.len() / 2).copied()
    }

    fn min(&self, name: &str) -> Option<Duration> {
        self.0.get(name)?.iter().min().copied()
    }

    fn median(&self, name: &str) -> Option<Duration> {
        let mut v = self.0.get(name)?.clone();
        v.sort();
        v.get(v.len() / 2).copied()
    }

    /// Median over rounds of `base[i] / other[i]`: the speed-up of `other`.
    fn median_speedup(&self, base: &str, other: &str) -> Option<f64> {
        let (b, o) = (self.0.get(base)?, self.0.get(other)?);
        let mut r: Vec<f64> = b
            .iter()
            .zip(o)
            .map(|(b, o)| b.as_secs_f64() / o.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied()
    }

    fn report(&self, base: &str, others: &[&str]) {
        for name in std::iter::once(&base).chain(others) {
            let (Some(min), Some(median)) = (self.min(name), self.median(name)) else {
                continue;
            };
            print!(
                "  {name:<14} min {:>7.3} s  median {:>7.3} s",
                min.as_secs_f64(),
                median.as_secs_f64()
            );
            if let Some(cpu) = self.cpu_median(name) {
                print!(
                    "  CPU median {:>6.3} s ({:.2} cores at the median wall time)",
                    cpu.as_secs_f64(),
                    cpu.as_secs_f64() / median.as_secs_f64()
                );
                if let Some(base_cpu) = self.cpu_median(base).filter(|_| *name != base) {
                    print!(
                        "  CPU vs {base}: {:.2}x",
                        cpu.as_secs_f64() / base_cpu.as_secs_f64()
                    );
                }
            }
            if let Some(cores) = self.busy_median(name) {
                print!("  compressing: {cores:.2} cores (median)");
            }
            if *name != base {
                if let (Some(bmin), Some(speedup)) =
                    (self.min(base), self.median_speedup(base, name))
                {
                    print!(
                        "  speed-up vs {base}: {:.2}x of minimums, {speedup:.2}x median of rounds",
                        bmin.as_secs_f64() / min.as_secs_f64()
                    );
                }
            }
            println!();
        }
    }
}

/// Whether the variant runs: all of them, or those whose name starts with `ONLY`
/// (`pack2`, `serve`, `zstd`, ...), for profiling one alone.
fn wanted(name: &str) -> bool {
    std::env::var("ONLY").map_or(true, |only| name.starts_with(&only))
}

fn main() {
    let mut rounds = 5;
    let mut server_mib = 64usize;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap(),
            "--server-mib" => server_mib = args.next().and_then(|v| v.parse().ok()).unwrap(),
            _ => files.push(PathBuf::from(arg)),
        }
    }
    assert!(!files.is_empty(), "usage: scaling [--rounds N] FILE...");
    let bin = PathBuf::from(
        std::env::var("HGFRAME_BIN").unwrap_or_else(|_| "target/release/hgframe".into()),
    );
    assert!(bin.exists(), "{} is missing: build it first", bin.display());
    let have_zstd = Command::new("zstd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let rt = runtime();
    let raw: RawClient =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();

    for file in &files {
        let data = std::fs::read(file).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let halves = [tmp.path().join("half1"), tmp.path().join("half2")];
        let mid = data.len() / 2;
        std::fs::write(&halves[0], &data[..mid]).unwrap();
        std::fs::write(&halves[1], &data[mid..]).unwrap();
        let served = &data[..data.len().min(server_mib << 20)];
        std::fs::write(tmp.path().join("served.bin"), served).unwrap();
        drop(data);
        let busy: [Busy; 3] = Default::default();
        let (one, two, two_large) = rt.block_on(async {
            (
                start_server(tmp.path(), 1, 256 << 10, busy[0].clone()).await,
                start_server(tmp.path(), 2, 256 << 10, busy[1].clone()).await,
                start_server(tmp.path(), 2, 1 << 20, busy[2].clone()).await,
            )
        });
        let urls = [one, two, two_large].map(|a| format!("http://{a}/api/exp-http-v2-0001/ro/cat"));
        let request = command_request(
            b"cat",
            [(
                Bytes::from_static(b"path"),
                Bytes::from_static(b"served.bin"),
            )],
            None,
        );

        println!("{}:", file.display());
        let mut times = Times::default();
        let mut wires = BTreeMap::new();
        for round in 0..rounds {
            let mut line = format!("  round {round}:");
            for streams in [1u8, 2, 4] {
                if !wanted(&format!("pack{streams}")) {
                    continue;
                }
                let cpu = children_cpu();
                let t = pack(&bin, streams, file);
                times.add_cpu(&format!("pack {streams}"), children_cpu() - cpu);
                times.add(&format!("pack {streams}"), t);
                line += &format!(" pack{streams} {:.3}", t.as_secs_f64());
            }
            if wanted("pack1x2") {
                let cpu = children_cpu();
                let t = two_processes(&bin, &pack_args(), &halves);
                times.add_cpu("pack 1, x2", children_cpu() - cpu);
                times.add("pack 1, x2", t);
                line += &format!(" pack1x2 {:.3}", t.as_secs_f64());
            }
            if have_zstd && wanted("zstd") {
                let cpu = children_cpu();
                let t = zstd_one(file);
                times.add_cpu("zstd x1", children_cpu() - cpu);
                times.add("zstd x1", t);
                line += &format!(" zstd {:.3}", t.as_secs_f64());
                let cpu = children_cpu();
                let t = two_processes(Path::new("zstd"), &["-T1", "-3", "-q", "-c"], &halves);
                times.add_cpu("zstd x2", children_cpu() - cpu);
                times.add("zstd x2", t);
                line += &format!(" zstd-x2 {:.3}", t.as_secs_f64());
            }
            for (i, url) in urls.iter().enumerate() {
                if !wanted(&format!("serve{}", i + 1)) {
                    continue;
                }
                let (cpu, start) = (process_cpu(), Instant::now());
                let got = rt.block_on(cat(&raw, url, request.clone()));
                let t = start.elapsed();
                times.add_cpu(&format!("serve {}", i + 1), process_cpu() - cpu);
                if let Some((cores, wire)) = busy.get(i).and_then(|b| b.lock().unwrap().take()) {
                    times.add_busy(&format!("serve {}", i + 1), cores);
                    wires.insert(i + 1, wire);
                }
                assert!(got > 0);
                times.add(&format!("serve {}", i + 1), t);
                line += &format!(" serve{} {:.3}", i + 1, t.as_secs_f64());
            }
            println!("{line}");
        }
        times.report("pack 1", &["pack 2", "pack 4", "pack 1, x2"]);
        times.report("zstd x1", &["zstd x2"]);
        times.report("serve 1", &["serve 2", "serve 3"]);
        for (n, wire) in &wires {
            println!("  serve {n}: {wire} payload bytes on the wire");
        }
    }
}
