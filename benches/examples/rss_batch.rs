//! Peak resident memory of `hgframe serve` against the size of one batch of `echo`
//! commands: a fresh server process per batch, its `VmHWM` read from `/proc` when the
//! batch is done. Linux only. Not a test: it prints a table (docs/engine.md has one).
//!
//! ```text
//! cargo build --release -p hgframe --bin hgframe
//! cargo run --release -p hgframe-benches --example rss_batch [-- --bin PATH] [--runs K] [CASE...]
//! ```
//!
//! A case is `http1:N` (one HTTP/1.1 `multirequest` of N commands, every answer after
//! the request), `h2c:N` (one HTTP/2 `multirequest`, full duplex, 64 commands in flight,
//! request ids reused) or `tcp:N` (one byte-stream connection, 64 tasks calling one
//! after another). Default: `http1:1000 http1:10000 http1:30000 h2c:100000 tcp:100000`.
//! The server binary is `--bin`, else `$HGFRAME_BIN`, else
//! `$CARGO_TARGET_DIR/release/hgframe` (`target/release/hgframe`). `--runs K` runs each
//! case K times (a fresh server each time).
//!
//! Every answer is checked (each echo names its call), so a wrong or missing answer
//! fails the run instead of flattering it.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hgframe_http::bytestream::Connection;
use hgframe_http::{Call, ClientOptions, MEDIA_TYPE};
use hgframe_wire::build::{command_frames, FrameTarget};
use hgframe_wire::{Frame, FrameDecoder, RequestId, StreamFlags, StreamId};
use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Commands in flight at once on the full-duplex transports.
const WINDOW: usize = 64;

#[derive(Debug, Clone, Copy)]
enum Transport {
    Http1,
    H2c,
    Tcp,
}

fn main() -> Result<(), Failure> {
    let mut bin = std::env::var_os("HGFRAME_BIN").map(PathBuf::from);
    let mut cases = Vec::new();
    let mut runs = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--bin" {
            bin = Some(args.next().ok_or("--bin needs a path")?.into());
            continue;
        }
        if arg == "--runs" {
            runs = args.next().ok_or("--runs needs a number")?.parse()?;
            continue;
        }
        let (transport, n) = arg.split_once(':').ok_or("a case is TRANSPORT:N")?;
        let transport = match transport {
            "http1" => Transport::Http1,
            "h2c" => Transport::H2c,
            "tcp" => Transport::Tcp,
            other => return Err(format!("unknown transport {other}").into()),
        };
        cases.push((transport, n.parse::<usize>()?));
    }
    if cases.is_empty() {
        cases = vec![
            (Transport::Http1, 1_000),
            (Transport::Http1, 10_000),
            (Transport::Http1, 30_000),
            (Transport::H2c, 100_000),
            (Transport::Tcp, 100_000),
        ];
    }
    let bin = bin.unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        );
        target.join("release/hgframe")
    });
    if !bin.exists() {
        return Err(format!(
            "no server binary at {} (cargo build --release -p hgframe --bin hgframe)",
            bin.display()
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("server: {}", bin.display());
    println!(
        "{:<10} {:>8} {:>12} {:>12} {:>9} {:>10}",
        "transport", "commands", "idle MiB", "peak MiB", "threads", "seconds"
    );
    for (transport, n) in cases.into_iter().flat_map(|c| (0..runs).map(move |_| c)) {
        let root = tempfile::tempdir()?;
        let server = Serve::start(&bin, root.path())?;
        let idle = sample(server.pid())?;
        let start = Instant::now();
        runtime.block_on(async {
            match transport {
                Transport::Http1 => http1(server.http, n).await,
                Transport::H2c => h2c(server.http, n).await,
                Transport::Tcp => tcp(server.tcp, n).await,
            }
        })?;
        let elapsed = start.elapsed();
        let after = sample(server.pid())?;
        drop(server);
        println!(
            "{:<10} {:>8} {:>12.1} {:>12.1} {:>9} {:>10.2}",
            format!("{transport:?}").to_lowercase(),
            n,
            mib(idle.hwm),
            mib(after.hwm),
            after.threads,
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// `hgframe serve` over `root` with both transports; killed when dropped.
struct Serve {
    child: std::process::Child,
    http: SocketAddr,
    tcp: SocketAddr,
}

impl Serve {
    fn start(bin: &std::path::Path, root: &std::path::Path) -> Result<Self, Failure> {
        let mut child = std::process::Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .arg("--root")
            .arg(root)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut line =
            || -> Result<String, Failure> { Ok(lines.next().ok_or("serve printed nothing")??) };
        let http = line()?.parse()?;
        let tcp = line()?.trim_start_matches("tcp://").parse()?;
        Ok(Self { child, http, tcp })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Sample {
    hwm: u64,
    threads: u64,
}

fn sample(pid: u32) -> Result<Sample, Failure> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Sample {
        hwm: field("VmHWM:") << 10,
        threads: field("Threads:"),
    })
}

/// The `i`th echo's frames as request `id`: data for even `i`, an argument for odd.
fn echo_frames(i: usize, id: u16, first: bool, out: &mut BytesMut) {
    let target = FrameTarget::new(RequestId(id), StreamId(1));
    let frames = if i & 1 == 0 {
        let data = format!("echo #{i}");
        command_frames(target, b"echo", [], Some(data.as_bytes()))
    } else {
        let arg = (Bytes::from_static(b"n"), Bytes::from(i.to_string()));
        command_frames(target, b"echo", [arg], None::<&[u8]>)
    };
    for (k, frame) in frames.expect("an echo fits").into_iter().enumerate() {
        let frame = if first && k == 0 {
            frame.with_stream_flags(StreamFlags::STREAM_BEGIN)
        } else {
            frame
        };
        frame.encode(out);
    }
}

fn echo_call(i: usize) -> Call {
    if i & 1 == 0 {
        Call::new("echo").data(format!("echo #{i}"))
    } else {
        Call::new("echo").arg("n", i.to_string())
    }
}

fn echo_answer(i: usize) -> Vec<u8> {
    if i & 1 == 0 {
        format!("echo #{i}").into_bytes()
    } else {
        format!("n={i}\n").into_bytes()
    }
}

/// Gathers answers from identity-encoded frames; counts each call once.
struct Answers {
    partial: HashMap<u16, Vec<u8>>,
    seen: Vec<bool>,
    count: usize,
}

impl Answers {
    fn new(n: usize) -> Self {
        Self {
            partial: HashMap::new(),
            seen: vec![false; n],
            count: 0,
        }
    }

    /// Takes a frame; `call_of` says which call an id stands for. Returns the id of an
    /// answer it completes.
    fn feed(
        &mut self,
        frame: &Frame,
        call_of: impl Fn(u16) -> usize,
    ) -> Result<Option<u16>, Failure> {
        let id = frame.request_id().0;
        match frame.frame_type() {
            4 => {
                self.partial
                    .entry(id)
                    .or_default()
                    .extend_from_slice(frame.payload());
                if frame.flags() & 0x02 == 0 {
                    return Ok(None);
                }
                let answer = self.partial.remove(&id).unwrap_or_default();
                let i = call_of(id);
                if i >= self.seen.len() || self.seen[i] || answer != echo_answer(i) {
                    return Err(format!(
                        "request {id} (call {i}, answered before: {:?}, after {} answers): \
                         answer {:?}",
                        self.seen.get(i),
                        self.count,
                        String::from_utf8_lossy(&answer)
                    )
                    .into());
                }
                self.seen[i] = true;
                self.count += 1;
                Ok(Some(id))
            }
            5 => Err(format!("request {id}: {}", String::from_utf8_lossy(frame.payload())).into()),
            t => Err(format!("request {id}: unexpected frame type {t}").into()),
        }
    }

    fn check_complete(&self) -> Result<(), Failure> {
        if self.count == self.seen.len() && self.partial.is_empty() {
            Ok(())
        } else {
            Err(format!("{} of {} answered", self.count, self.seen.len()).into())
        }
    }
}

/// A request body fed from a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

fn post(url: String, body: ChannelBody) -> Result<http::Request<ChannelBody>, Failure> {
    Ok(http::Request::post(url)
        .header("accept", MEDIA_TYPE)
        .header("content-type", MEDIA_TYPE)
        .body(body)?)
}

/// Reads frames from a response body, feeding them to `each`.
async fn read_frames(
    mut body: hyper::body::Incoming,
    mut each: impl FnMut(Frame) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(frame) = decoder.decode(&mut buf)? {
            each(frame)?;
        }
    }
    Ok(())
}

/// One HTTP/1.1 `multirequest` of `n` echoes (odd ids 1, 3, ...).
async fn http1(addr: SocketAddr, n: usize) -> Result<(), Failure> {
    if n > 32_768 {
        return Err("one half-duplex exchange holds at most 32,768 odd request ids".into());
    }
    let mut body = BytesMut::new();
    for i in 0..n {
        echo_frames(i, (2 * i + 1) as u16, i == 0, &mut body);
    }
    let (tx, rx) = mpsc::channel(1);
    tx.send(body.freeze()).await?;
    drop(tx);
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<ChannelBody>();
    let url = format!("http://{addr}/api/exp-http-v2-0001/ro/multirequest");
    let response = client.request(post(url, ChannelBody(rx))?).await?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()).into());
    }
    let mut answers = Answers::new(n);
    read_frames(response.into_body(), |frame| {
        answers.feed(&frame, |id| usize::from(id / 2)).map(drop)
    })
    .await?;
    answers.check_complete()
}

/// `n` echoes over one h2c `multirequest`, [`WINDOW`] in flight, ids reused.
async fn h2c(addr: SocketAddr, n: usize) -> Result<(), Failure> {
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(8);
    let (free_tx, mut free_rx) = mpsc::unbounded_channel::<u16>();
    for k in 0..WINDOW {
        free_tx.send((2 * k + 1) as u16)?;
    }
    let standing: Arc<Vec<AtomicU32>> =
        Arc::new((0..=u16::MAX).map(|_| AtomicU32::new(0)).collect());
    let writer = {
        let standing = Arc::clone(&standing);
        tokio::spawn(async move {
            // Ids go round all 32,768 odd values, as the client reactor's do: each is
            // reused three times over 100,000 calls, but never right after its answer
            // (see docs/engine.md about that race).
            let mut next_id: u16 = 1;
            let mut i = 0;
            while i < n {
                if free_rx.recv().await.is_none() {
                    break;
                }
                let mut chunk = BytesMut::new();
                loop {
                    let id = next_id;
                    next_id = next_id.wrapping_add(2);
                    standing[usize::from(id)].store(i as u32, Ordering::Release);
                    echo_frames(i, id, i == 0, &mut chunk);
                    i += 1;
                    if i == n || free_rx.try_recv().is_err() {
                        break;
                    }
                }
                if body_tx.send(chunk.freeze()).await.is_err() {
                    break;
                }
            }
        })
    };
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<ChannelBody>();
    let url = format!("http://{addr}/api/exp-http-v2-0001/ro/multirequest");
    let response = client.request(post(url, ChannelBody(body_rx))?).await?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()).into());
    }
    let mut answers = Answers::new(n);
    read_frames(response.into_body(), |frame| {
        let call_of = |id: u16| standing[usize::from(id)].load(Ordering::Acquire) as usize;
        if let Some(id) = answers.feed(&frame, call_of)? {
            let _ = free_tx.send(id);
        }
        Ok(())
    })
    .await?;
    writer.await?;
    answers.check_complete()
}

/// `n` echoes over one byte-stream connection from [`WINDOW`] tasks.
async fn tcp(addr: SocketAddr, n: usize) -> Result<(), Failure> {
    let mut options = ClientOptions::default();
    options.set_encodings(&["identity"]);
    let conn = Arc::new(Connection::connect_tcp(&addr.to_string(), options).await?);
    let tasks: Vec<_> = (0..WINDOW)
        .map(|t| {
            let conn = Arc::clone(&conn);
            tokio::spawn(async move {
                for i in (t..n).step_by(WINDOW) {
                    let answer = conn.call(echo_call(i)).await?.collect().await?;
                    if answer.data != echo_answer(i) {
                        return Err::<(), Failure>(format!("call {i}: wrong answer").into());
                    }
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    if let Some(conn) = Arc::into_inner(conn) {
        tokio::time::timeout(Duration::from_secs(30), conn.close()).await?;
    }
    Ok(())
}
