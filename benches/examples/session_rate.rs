//! Sessions against separate exchanges, in one run (so the machine's load moves both):
//!
//! 1. **Call rate**: 64-byte `echo` calls (zstd-8mb accepted, so answers are
//!    compressed), `TASKS` tasks calling one after another, over one session (TCP byte
//!    stream; one h2c exchange kept open) against the same calls each in its own HTTP
//!    exchange (HTTP/1.1 keep-alive; h2c). Prints calls per second and the ratios.
//! 2. **Bytes**: small records (changeset-like lines, about 150 bytes) echoed over a zstd
//!    session: the response bytes on the wire (frames, headers included) against one
//!    zstd context used directly (level 3, flushed after each record so each can be
//!    decoded as it arrives) plus 8 bytes per frame the session received, against
//!    per-message zstd (each record compressed alone, plus its 8-byte header), and
//!    against the same calls in separate HTTP exchanges (frame bytes only, HTTP headers
//!    not counted).
//!
//! ```text
//! cargo run --release -p hgframe-benches --example session_rate -- [CALLS] [RECORDS]
//! ```
#![allow(missing_docs)]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hgframe::commands::FileCommands;
use hgframe_http::bytestream::{serve_tcp, Connection};
use hgframe_http::{
    Call, Client, ClientOptions, EngineConfig, Permission, Registry, Server, Session,
};

#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

/// Tasks calling at once.
const TASKS: usize = 64;

/// How the calls go.
#[derive(Clone)]
enum Way {
    Session(Session),
    Exchanges(Box<Client>),
}

impl Way {
    async fn call(&self, call: Call) -> Bytes {
        let response = match self {
            Self::Session(s) => s.call(call).await,
            Self::Exchanges(c) => c.call(call).await,
        };
        response.unwrap().collect().await.unwrap().data
    }
}

/// `calls` calls made by [`TASKS`] tasks; each answer checked. The time taken.
async fn run(way: &Way, calls: &Arc<Vec<Bytes>>) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (way, calls) = (way.clone(), Arc::clone(calls));
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while i < calls.len() {
                let data = calls[i].clone();
                let answer = way.call(Call::new("echo").data(data.clone())).await;
                assert_eq!(answer, data);
                i += TASKS;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

/// A changeset-like record: mostly repetitive text, a 40-hex node that is not.
fn records(n: usize) -> Vec<Bytes> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let node: String = (0..5).map(|_| format!("{:08x}", next() as u32)).collect();
            Bytes::from(format!(
                "{{\"rev\":{i},\"node\":\"{node}\",\"user\":\"user{}@example.com\",\
                 \"date\":\"2026-12-{:02} 12:{:02}:00\",\"desc\":\"fix module {} ({})\"}}\n",
                i % 17,
                1 + i % 28,
                i % 60,
                i % 50,
                next() % 1000
            ))
        })
        .collect()
}

async fn tcp_session(addr: &str) -> Session {
    Connection::connect_tcp(addr, ClientOptions::default())
        .await
        .unwrap()
        .session()
        .unwrap()
}

fn client(url: &str, h2: bool) -> Client {
    let mut options = ClientOptions::default();
    options.set_http2_prior_knowledge(h2);
    Client::with_options(url, options).unwrap()
}

fn rate(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let n_records: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rt = common::runtime();
    let root = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let http = common::start_hgframe(root.path(), None).await;
        let url = format!("http://{http}");
        let mut registry = Registry::new();
        FileCommands::new(root.path())
            .unwrap()
            .register(&mut registry)
            ;
        let server = Server::new(registry, EngineConfig::default()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = listener.local_addr().unwrap().to_string();
        tokio::spawn(serve_tcp(listener, server, std::future::pending()));

        // 1. Call rate.
        let small: Arc<Vec<Bytes>> = Arc::new(vec![Bytes::from(vec![b'e'; 64]); calls]);
        let per_exchange = calls / 4;
        let small_few: Arc<Vec<Bytes>> = Arc::new(small[..per_exchange].to_vec());
        let tcp_way = Way::Session(tcp_session(&tcp).await);
        let h2_way = Way::Session(
            client(&url, true)
                .session(Permission::ReadOnly)
                .await
                .unwrap(),
        );
        let http1 = Way::Exchanges(Box::new(client(&url, false)));
        let h2 = Way::Exchanges(Box::new(client(&url, true)));
        // Warm up every way.
        let warm: Arc<Vec<Bytes>> = Arc::new(small[..TASKS * 4].to_vec());
        for way in [&tcp_way, &h2_way, &http1, &h2] {
            run(way, &warm).await;
        }
        let t_tcp = rate(calls, run(&tcp_way, &small).await);
        let t_h2s = rate(calls, run(&h2_way, &small).await);
        let t_http1 = rate(per_exchange, run(&http1, &small_few).await);
        let t_h2 = rate(per_exchange, run(&h2, &small_few).await);
        println!("64-byte echo, {TASKS} tasks, zstd-8mb accepted (calls per second):");
        println!("  session over TCP           {t_tcp:>10.0}");
        println!("  session over h2c           {t_h2s:>10.0}");
        println!("  separate HTTP/1.1 exchanges {t_http1:>9.0}  ({per_exchange} calls)");
        println!("  separate h2c exchanges     {t_h2:>10.0}  ({per_exchange} calls)");
        println!(
            "  ratios: TCP session / HTTP/1.1 exchanges {:.1}x; h2c session / h2c exchanges {:.1}x; h2c session / HTTP/1.1 exchanges {:.1}x",
            t_tcp / t_http1,
            t_h2s / t_h2,
            t_h2s / t_http1
        );

        // 2. Bytes of records.
        let recs = Arc::new(records(n_records));
        let raw: usize = recs.iter().map(Bytes::len).sum();
        let mut per_message = 0usize;
        for r in recs.iter() {
            per_message += zstd::bulk::compress(r, 3).unwrap().len() + 8;
        }
        let mut one_context = 0usize;
        {
            let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
            let mut written = 0;
            for r in recs.iter() {
                encoder.write_all(r).unwrap();
                encoder.flush().unwrap();
                let len = encoder.get_ref().len();
                one_context += len - written;
                written = len;
            }
        }
        // One task, so the records go in order (as the direct context compressed them).
        let sessions = [
            ("TCP", tcp_session(&tcp).await),
            (
                "h2c",
                client(&url, true)
                    .session(Permission::ReadOnly)
                    .await
                    .unwrap(),
            ),
        ];
        println!(
            "records: {n_records} of {:.0} bytes on average, {raw} bytes raw",
            raw as f64 / n_records as f64
        );
        println!(
            "  per-message zstd (level 3) + 8-byte headers: {per_message} bytes, {:.1}% of raw",
            100.0 * per_message as f64 / raw as f64
        );
        for (name, session) in sessions {
            let before = session.stats();
            for r in recs.iter() {
                let answer = session
                    .call(Call::new("echo").data(r.clone()))
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
                assert_eq!(&answer.data, r);
            }
            let after = session.stats();
            let wire = after.response_wire_bytes - before.response_wire_bytes;
            let frames = after.response_frames - before.response_frames;
            let baseline = one_context as u64 + 8 * frames;
            println!(
                "  session over {name}: {wire} bytes on the wire ({frames} frames), {:.1}% of raw; \
                 one zstd context + 8 bytes x {frames} frames: {baseline} bytes; ratio {:.3}x; \
                 per-message zstd / session {:.2}x",
                100.0 * wire as f64 / raw as f64,
                wire as f64 / baseline as f64,
                per_message as f64 / wire as f64
            );
        }
        let separate = client(&url, false);
        let few = n_records.min(5_000);
        for r in recs.iter().take(few) {
            let answer = separate
                .call(Call::new("echo").data(r.clone()))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            assert_eq!(&answer.data, r);
        }
        let stats = separate.stats();
        let raw_few: usize = recs.iter().take(few).map(Bytes::len).sum();
        println!(
            "  separate HTTP/1.1 exchanges ({few} records): {} frame bytes, {:.1}% of raw (HTTP headers not counted)",
            stats.response_wire_bytes,
            100.0 * stats.response_wire_bytes as f64 / raw_few as f64
        );
    });
}
