//! Small `echo` requests over HTTP/1.1 keep-alive: `hgframe serve`'s service against a
//! bare hyper handler that reads the same body and answers the same bytes, measured in
//! interleaved rounds (A, B, A, B, ...) so that the machine's load, which moves both,
//! cancels out of each round's ratio. Prints each round and the median ratio.
//!
//! ```text
//! cargo run --release -p hgframe-benches --example echo_ab -- [ROUNDS] [REQUESTS]
//! ```
//!
//! With `ONLY=bare` or `ONLY=hg` it sends all `ROUNDS x REQUESTS` to one server only,
//! for `perf stat` / `perf record` of one side.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hgframe::commands::FileCommands;
use hgframe_http::{serve, HgFrameService, Registry, ServerConfig, MEDIA_TYPE};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

type RawClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `serve` with the file commands over `root`.
async fn start_hgframe(root: &std::path::Path, parallel_streams: Option<usize>) -> SocketAddr {
    let mut registry = Registry::new();
    FileCommands::new(root)
        .unwrap()
        .register(&mut registry)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ServerConfig::default();
    if let Some(n) = parallel_streams {
        config.engine_mut().set_parallel_streams(n);
    }
    let service = HgFrameService::new(registry, config).unwrap();
    tokio::spawn(serve(listener, service, std::future::pending()));
    addr
}

/// A bare hyper server (same connection builder as `serve`) that reads the request body
/// and answers `answer`.
async fn start_bare(answer: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let answer = answer.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let answer = answer.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", MEDIA_TYPE)
                                    .body(Full::new(answer))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn post(client: &RawClient, url: &str, body: Bytes) -> Bytes {
    let request = http::Request::post(url)
        .header("accept", MEDIA_TYPE)
        .header("content-type", MEDIA_TYPE)
        .body(Full::new(body))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

/// The frames of `echo` with `data`, as a client sends them.
fn echo_request(data: &[u8]) -> Bytes {
    let target = hgframe_wire::build::FrameTarget::new(
        hgframe_wire::RequestId(1),
        hgframe_wire::StreamId(1),
    );
    let frames = hgframe_wire::build::command_frames(target, b"echo", [], Some(data)).unwrap();
    let mut out = bytes::BytesMut::new();
    for (i, f) in frames.into_iter().enumerate() {
        let f = if i == 0 {
            f.with_stream_flags(hgframe_wire::StreamFlags::STREAM_BEGIN)
        } else {
            f
        };
        f.encode(&mut out);
    }
    out.freeze()
}

async fn time(raw: &RawClient, url: &str, request: &Bytes, n: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        black_box(post(raw, url, request.clone()).await);
    }
    start.elapsed()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let request = echo_request(&[b'e'; 64]);
    let raw: RawClient =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    rt.block_on(async {
        let hg = start_hgframe(root.path(), None).await;
        let hg_url = format!("http://{hg}/api/exp-http-v2-0001/ro/echo");
        let answer = post(&raw, &hg_url, request.clone()).await;
        let bare = start_bare(answer).await;
        let bare_url = format!("http://{bare}/api/exp-http-v2-0001/ro/echo");
        // Warm both up.
        time(&raw, &bare_url, &request, n / 4).await;
        time(&raw, &hg_url, &request, n / 4).await;
        let mut ratios = Vec::new();
        println!("round  bare_hyper req/s  hgframe req/s  ratio");
        if let Ok(only) = std::env::var("ONLY") {
            let url = if only == "bare" { &bare_url } else { &hg_url };
            let t = time(&raw, url, &request, n * rounds).await;
            println!("{only}: {:.0} req/s", (n * rounds) as f64 / t.as_secs_f64());
            return;
        }
        for round in 0..rounds {
            let bare_t = time(&raw, &bare_url, &request, n).await;
            let hg_t = time(&raw, &hg_url, &request, n).await;
            let ratio = bare_t.as_secs_f64() / hg_t.as_secs_f64();
            println!(
                "{round:>5}  {:>16.0}  {:>13.0}  {ratio:.3}",
                n as f64 / bare_t.as_secs_f64(),
                n as f64 / hg_t.as_secs_f64()
            );
            ratios.push(ratio);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "median ratio (hgframe / bare hyper requests per second): {:.3}",
            ratios[ratios.len() / 2]
        );
    });
}
