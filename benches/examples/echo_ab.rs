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
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::rt::TokioExecutor;

#[path = "../benches/common/mod.rs"]
mod common;

use common::{echo_request, post, runtime, start_bare, start_hgframe, RawClient};

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
