//! `hgframe demo`: what the protocol is for, on real files over loopback.
//!
//! It starts a server in this process on a loopback port over a directory of real
//! files (the workspace's own sources by default), lists them with `files`, then
//! fetches every one with `cat`, all in one HTTP/2 exchange (`multirequest`, full
//! duplex), whose responses share one long-lived `zstd-8mb` stream. It checks that
//! every file arrived intact and compares the bytes on the wire with what they would
//! have been had each response been compressed on its own (a fresh stream per file).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hgframe::commands::FileCommands;
use hgframe_http::{
    serve, BatchEvent, Call, Client, ClientOptions, ExchangeStats, HgFrameService, Permission,
    Registry, ServerConfig,
};
use hgframe_stream::{EncodingSettings, OutgoingStream, Profiles, Side};
use hgframe_wire::{FrameType, RequestId, StreamId};

use super::{CliResult, Failure};

/// The profile the demo compresses with.
const PROFILE: &str = "zstd-8mb";

/// Options of `demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Directory of files to fetch (default: this workspace's sources, or the current
    /// directory). `target/` and `.git/` are skipped.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Zstandard level.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    level: i32,
}

pub(crate) fn run(args: DemoArgs) -> CliResult {
    let root = match args.root {
        Some(root) => root,
        None => default_root()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(root, args.level))
}

/// The workspace this binary was built from, if it is still there; else the current
/// directory.
fn default_root() -> Result<PathBuf, Failure> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if workspace.join("Cargo.toml").is_file() && workspace.join("crates").is_dir() {
        return Ok(workspace);
    }
    Ok(std::env::current_dir()?)
}

async fn demo(root: PathBuf, level: i32) -> CliResult {
    let stats: Arc<Mutex<Vec<ExchangeStats>>> = Arc::default();
    let addr = start_server(&root, level, Arc::clone(&stats)).await?;
    let mut options = ClientOptions::default();
    options.set_http2_prior_knowledge(true);
    let client = Client::with_options(&addr, options).map_err(Failure::bad)?;

    let listing = client
        .call(Call::new("files"))
        .await
        .map_err(Failure::bad)?
        .collect()
        .await
        .map_err(Failure::bad)?;
    let paths: Vec<String> = String::from_utf8_lossy(&listing.data)
        .lines()
        .filter(|p| !p.split('/').any(|c| c == "target" || c == ".git"))
        .map(str::to_owned)
        .collect();
    if paths.is_empty() {
        return Err(Failure::bad(format!(
            "no files to fetch under {}",
            root.display()
        )));
    }

    let started = Instant::now();
    let calls = paths
        .iter()
        .map(|p| Call::new("cat").arg("path", p.clone()))
        .collect();
    let mut batch = client
        .call_many(Permission::ReadOnly, calls)
        .await
        .map_err(Failure::bad)?;
    // One consumer takes the events of every response as they arrive, so none waits
    // for another; each file is checked as soon as it is complete.
    let mut pieces: Vec<BytesMut> = vec![BytesMut::new(); paths.len()];
    let mut progress = Progress::new(paths.len());
    let mut raw_bytes = 0u64;
    let mut alone_bytes = 0u64;
    while let Some((index, event)) = batch.next().await {
        let path = paths.get(index).map_or("?", String::as_str);
        match event {
            BatchEvent::Data(data) => {
                if let Some(piece) = pieces.get_mut(index) {
                    piece.extend_from_slice(&data);
                }
            }
            BatchEvent::Text(_) => {}
            BatchEvent::Failed(e) => return Err(Failure::bad(format!("{path}: {e}"))),
            BatchEvent::End => {
                let answer = pieces
                    .get_mut(index)
                    .map(BytesMut::split)
                    .unwrap_or_default();
                let local = std::fs::read(root.join(path))
                    .map_err(|e| Failure::bad(format!("cannot read {path} locally: {e}")))?;
                if answer != local {
                    return Err(Failure::bad(format!("{path} did not arrive intact")));
                }
                raw_bytes += local.len() as u64;
                alone_bytes += compressed_alone(Bytes::from(local), level)?;
                progress.advance();
            }
        }
    }
    let elapsed = started.elapsed();
    progress.finish();

    let exchanges = wait_for_stats(&stats, 2).await;
    let fetch = exchanges
        .iter()
        .find(|s| s.commands == paths.len() as u64)
        .ok_or_else(|| Failure::bad("the server did not report the exchange"))?;
    let wire = fetch.bytes_out;
    let shown = root.canonicalize().unwrap_or_else(|_| root.clone());
    let n = paths.len();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "hgframe demo: {n} files under {}, fetched over http://{addr} (h2c)",
        shown.display()
    )?;
    writeln!(
        out,
        "  commands             {}: files, then {n} cat in one HTTP/2 exchange",
        n + 1
    )?;
    writeln!(out, "  bytes of the files   {}", thousands(raw_bytes))?;
    writeln!(
        out,
        "  bytes on the wire    {}  one long-lived {PROFILE} stream (level {level}): {:.1}% of the files",
        thousands(wire),
        percent(wire, raw_bytes)
    )?;
    writeln!(
        out,
        "  each response alone  {}  a fresh {PROFILE} stream per file: {:.2}x as many",
        thousands(alone_bytes),
        ratio(alone_bytes, wire)
    )?;
    writeln!(out, "  time                 {:.3} s", elapsed.as_secs_f64())?;
    writeln!(out, "  all {n} files intact")?;
    out.flush()?;
    Ok(())
}

/// A server over `root` on a loopback port; returns its address.
async fn start_server(
    root: &Path,
    level: i32,
    stats: Arc<Mutex<Vec<ExchangeStats>>>,
) -> Result<String, Failure> {
    let mut registry = Registry::new();
    FileCommands::new(root)
        .map_err(Failure::bad)?
        .register(&mut registry);
    let mut config = ServerConfig::default();
    let engine = config.engine_mut();
    engine.set_encodings(&[PROFILE]).set_observer(move |s| {
        if let Ok(mut all) = stats.lock() {
            all.push(s.clone());
        }
    });
    engine.reactor_mut().set_level(level);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let service = HgFrameService::new(registry, config).map_err(Failure::bad)?;
    // The server lives as long as the process: the demo ends by exiting.
    tokio::spawn(serve(listener, service, std::future::pending()));
    Ok(addr)
}

/// Wire bytes of one response compressed on a fresh stream of its own (what a context
/// per response costs), framed exactly as the server frames it.
fn compressed_alone(data: Bytes, level: i32) -> Result<u64, Failure> {
    let settings = EncodingSettings::new(PROFILE).with_level(level);
    let mut stream =
        OutgoingStream::new(StreamId(2), Side::Server, &Profiles::default(), &settings)
            .map_err(Failure::bad)?;
    let mut frames = Vec::new();
    stream
        .push_data(
            RequestId(1),
            FrameType::BytesResponse,
            data,
            true,
            &mut frames,
        )
        .and_then(|()| stream.end(&mut frames))
        .map_err(Failure::bad)?;
    Ok(frames.iter().map(|f| f.encoded_len() as u64).sum())
}

async fn wait_for_stats(stats: &Mutex<Vec<ExchangeStats>>, n: usize) -> Vec<ExchangeStats> {
    // The exchange reports a moment after its last byte left.
    for _ in 0..500 {
        if let Ok(all) = stats.lock() {
            if all.len() >= n {
                return all.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stats.lock().map(|s| s.clone()).unwrap_or_default()
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct Progress {
    total: usize,
    done: usize,
    shown: bool,
    last_draw: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            shown: std::io::stderr().is_terminal(),
            last_draw: Instant::now(),
        }
    }

    fn advance(&mut self) {
        self.done += 1;
        if self.shown
            && (self.last_draw.elapsed() > Duration::from_millis(40) || self.done == self.total)
        {
            self.draw();
            self.last_draw = Instant::now();
        }
    }

    fn draw(&self) {
        const WIDTH: usize = 40;
        let filled = (self.done * WIDTH)
            .checked_div(self.total)
            .unwrap_or(WIDTH)
            .min(WIDTH);
        let bar: String = "#".repeat(filled) + &" ".repeat(WIDTH - filled);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r[{bar}] {}/{} files", self.done, self.total);
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.shown {
            let _ = writeln!(std::io::stderr().lock());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(percent(1, 4), 25.0);
        assert_eq!(ratio(3, 0), 0.0);
    }

    #[test]
    fn a_response_alone_costs_its_frames() {
        let data = Bytes::from("abc ".repeat(10_000));
        let alone = compressed_alone(data.clone(), 3).unwrap();
        assert!(alone > 8 && alone < data.len() as u64);
    }
}
