//! The HTTP transport against baselines measured in the same run, server and client in
//! one process on loopback.
//!
//! `HGFRAME_CORPUS=$CORPUS cargo bench -p hgframe-benches --bench http`
//!
//! - `http/echo_small`: requests per second of `echo` with a 64-byte payload over
//!   HTTP/1.1 keep-alive, against a bare hyper handler that reads the same request body
//!   and answers the same bytes. The same raw hyper client drives both, so the
//!   difference is the server; `reactor_echo` is a bare hyper handler that does the
//!   echo with the sans-IO reactor alone (what the protocol costs without the engine);
//!   `hgframe_client` adds our own client. Goal: `hgframe_server` >= 0.8x `bare_hyper`.
//! - `http/cat_bulk`: `cat` of one large file (`HGFRAME_HTTP_BULK_BYTES`, default 256 MiB:
//!   `$HGFRAME_CORPUS/bulk.bin` repeated, or generated text), identity and zstd-8mb, in
//!   bytes per second, against reading the file locally in 256 KiB pieces; zstd-8mb
//!   also with `parallel_streams` 1 (compression on the exchange's task) and 2 (on two
//!   worker streams), `cat_zstd` being the default (the number of CPUs, up to 3).

// `criterion_group!` generates a function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Read;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hgframe_http::{Call, Client, ClientOptions};
use hyper_util::rt::TokioExecutor;

mod common;

use common::{
    echo_request, post, runtime, start_bare, start_hgframe, start_reactor_echo, RawClient,
};

fn echo_small(c: &mut Criterion) {
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let payload = vec![b'e'; 64];
    let request = echo_request(&payload);
    let raw: RawClient =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let (hg_url, bare_url, reactor_url, answer) = rt.block_on(async {
        let hg = start_hgframe(root.path(), None).await;
        let hg_url = format!("http://{hg}/api/exp-http-v2-0001/ro/echo");
        let answer = post(&raw, &hg_url, request.clone()).await;
        let bare = start_bare(answer.clone()).await;
        let reactor = start_reactor_echo().await;
        let reactor_url = format!("http://{reactor}/api/exp-http-v2-0001/ro/echo");
        assert_eq!(post(&raw, &reactor_url, request.clone()).await, answer);
        (
            hg_url,
            format!("http://{bare}/api/exp-http-v2-0001/ro/echo"),
            reactor_url,
            answer,
        )
    });
    let client = Client::new(&hg_url.replace("/api/exp-http-v2-0001/ro/echo", "")).unwrap();
    let mut group = c.benchmark_group("http/echo_small");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let bench_raw = |url: String| {
        let raw = raw.clone();
        let request = request.clone();
        let answer = answer.clone();
        let rt = &rt;
        move |b: &mut criterion::Bencher<'_>| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let got = post(&raw, &url, request.clone()).await;
                        debug_assert_eq!(got, answer);
                        black_box(got);
                    }
                    start.elapsed()
                })
            })
        }
    };
    group.bench_function("bare_hyper", bench_raw(bare_url));
    group.bench_function("reactor_echo", bench_raw(reactor_url));
    group.bench_function("hgframe_server", bench_raw(hg_url));
    group.bench_function("hgframe_client", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let call = Call::new("echo").data(Bytes::from(payload.clone()));
                    let got = client.call(call).await.unwrap().collect().await.unwrap();
                    black_box(got);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// The bulk file: the corpus repeated, or generated text.
fn bulk(len: usize) -> Vec<u8> {
    if let Ok(dir) = std::env::var("HGFRAME_CORPUS") {
        let path = std::path::Path::new(&dir).join("bulk.bin");
        match std::fs::read(&path) {
            Ok(pass) if !pass.is_empty() => {
                eprintln!("bulk file: {} repeated to {len} bytes", path.display());
                return pass.iter().copied().cycle().take(len).collect();
            }
            _ => eprintln!("cannot read {}; using generated text", path.display()),
        }
    }
    eprintln!("bulk file: generated text, {len} bytes");
    let words = [
        "frame", "stream", "request", "zstd", "payload", "encoding", "window", "header", "def",
        "return", "self", "import", "class", "None", "value", "context",
    ];
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 16) as usize].as_bytes());
        out.push(if matches!(x % 11, 0) { b'\n' } else { b' ' });
        if matches!(x % 5, 0) {
            out.extend_from_slice(format!("{}", x % 1000).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn cat_bulk(c: &mut Criterion) {
    let len: usize = std::env::var("HGFRAME_HTTP_BULK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256 << 20);
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("bulk.bin");
    std::fs::write(&path, bulk(len)).unwrap();
    let rt = runtime();
    let addr = rt.block_on(start_hgframe(root.path(), None));
    // zstd-8mb with compression on the exchange's task only, and on two worker streams.
    let serial = rt.block_on(start_hgframe(root.path(), Some(1)));
    let parallel = rt.block_on(start_hgframe(root.path(), Some(2)));
    let mut identity = ClientOptions::default();
    identity.set_encodings(&["identity"]);
    let clients = [
        (
            "cat_identity",
            Client::with_options(&addr.to_string(), identity).unwrap(),
        ),
        ("cat_zstd", Client::new(&addr.to_string()).unwrap()),
        (
            "cat_zstd_parallel1",
            Client::new(&serial.to_string()).unwrap(),
        ),
        (
            "cat_zstd_parallel2",
            Client::new(&parallel.to_string()).unwrap(),
        ),
    ];

    let mut group = c.benchmark_group("http/cat_bulk");
    group.throughput(Throughput::Bytes(len as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("read_locally", |b| {
        let mut buf = vec![0u8; 256 << 10];
        b.iter(|| {
            let mut file = std::fs::File::open(&path).unwrap();
            let mut total = 0;
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
            }
            assert_eq!(total, len);
        })
    });
    for (name, client) in &clients {
        group.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut stream = client
                        .call(Call::new("cat").arg("path", "bulk.bin"))
                        .await
                        .unwrap();
                    let mut total = 0;
                    while let Some(event) = stream.next().await {
                        if let hgframe_http::ResponseEvent::Data(d) = event.unwrap() {
                            total += d.len();
                        }
                    }
                    assert_eq!(total, len);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, echo_small, cat_bulk);
criterion_main!(benches);
