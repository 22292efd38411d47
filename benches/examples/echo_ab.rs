//! Small `echo` requests over HTTP/1.1 keep-alive: `hgframe serve`'s service against a
//! bare hyper handler that reads the same body and answers the same bytes, measured in
//! interleaved rounds (A, B, A, B, ...) so that the machine's load, which moves both,
//! cancels out of each round's ratio. Prints each round and the median ratio.
//!
//! Each round also measures a third server between the two: a bare hyper handler that
//! does the echo with the sans-IO reactor alone (the request's frames decoded and fed
//! to a `ServerReactor`, the command answered in place, its frames encoded), and checks
//! at the start that it answers the same bytes as `hgframe serve`. Against it, the
//! ratio is what the engine itself costs (tasks, queues, admission, timers); against
//! the first, what the protocol and the engine cost together.
//!
//! ```text
//! cargo run --release -p hgframe-benches --example echo_ab -- [ROUNDS] [REQUESTS]
//! ```
//!
//! With `ONLY=bare`, `ONLY=reactor` or `ONLY=hg` it sends all `ROUNDS x REQUESTS` to one
//! server only, for `perf stat` / `perf record` / `callgrind` of one side (`bare` and
//! `hg` warm up only those two servers, `REQUESTS / 4` each).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::rt::TokioExecutor;

#[path = "../benches/common/mod.rs"]
mod common;

use common::{
    echo_request, post, runtime, start_bare, start_hgframe, start_reactor_echo, RawClient,
};

async fn time(raw: &RawClient, url: &str, request: &Bytes, n: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        black_box(post(raw, url, request.clone()).await);
    }
    start.elapsed()
}

fn main() {
    let mut args = std::env::args().skip(1);
    // Many short rounds: the machine's drift over a round of a few thousand requests
    // was as large as the difference measured (docs/engine.md).
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(750);
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let request = echo_request(&[b'e'; 64]);
    let raw: RawClient =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    rt.block_on(async {
        let hg = start_hgframe(root.path(), None).await;
        let hg_url = format!("http://{hg}/api/exp-http-v2-0001/ro/echo");
        let answer = post(&raw, &hg_url, request.clone()).await;
        let bare = start_bare(answer.clone()).await;
        let bare_url = format!("http://{bare}/api/exp-http-v2-0001/ro/echo");
        let reactor = start_reactor_echo().await;
        let reactor_url = format!("http://{reactor}/api/exp-http-v2-0001/ro/echo");
        let only = std::env::var("ONLY").ok();
        let with_reactor = only.as_deref().is_none_or(|o| o == "reactor");
        if with_reactor {
            assert_eq!(
                post(&raw, &reactor_url, request.clone()).await,
                answer,
                "the reactor's echo answers what hgframe serve answers"
            );
        }
        // Warm them up.
        time(&raw, &bare_url, &request, n / 4).await;
        time(&raw, &hg_url, &request, n / 4).await;
        if with_reactor {
            time(&raw, &reactor_url, &request, n / 4).await;
        }
        if let Some(only) = only {
            let url = match only.as_str() {
                "bare" => &bare_url,
                "reactor" => &reactor_url,
                _ => &hg_url,
            };
            let t = time(&raw, url, &request, n * rounds).await;
            println!("{only}: {:.0} req/s", (n * rounds) as f64 / t.as_secs_f64());
            return;
        }
        let (mut ratios, mut engine) = (Vec::new(), Vec::new());
        println!("round  bare_hyper req/s  reactor req/s  hgframe req/s  ratio  vs reactor");
        for round in 0..rounds {
            let bare_t = time(&raw, &bare_url, &request, n).await;
            let reactor_t = time(&raw, &reactor_url, &request, n).await;
            let hg_t = time(&raw, &hg_url, &request, n).await;
            let ratio = bare_t.as_secs_f64() / hg_t.as_secs_f64();
            let vs_reactor = reactor_t.as_secs_f64() / hg_t.as_secs_f64();
            println!(
                "{round:>5}  {:>16.0}  {:>13.0}  {:>13.0}  {ratio:.3}  {vs_reactor:.3}",
                n as f64 / bare_t.as_secs_f64(),
                n as f64 / reactor_t.as_secs_f64(),
                n as f64 / hg_t.as_secs_f64()
            );
            ratios.push(ratio);
            engine.push(vs_reactor);
        }
        ratios.sort_by(f64::total_cmp);
        engine.sort_by(f64::total_cmp);
        println!(
            "median ratio (hgframe / bare hyper requests per second): {:.3}",
            ratios[ratios.len() / 2]
        );
        println!(
            "median ratio (hgframe / reactor alone requests per second): {:.3}",
            engine[engine.len() / 2]
        );
    });
}
