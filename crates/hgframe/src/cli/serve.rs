//! `hgframe serve`: the HTTP server (and, with `--tcp` or `--stdio`, the byte-stream
//! transport) with the commands `echo`, `files`, `cat` and `put` over a root directory.
//!
//! The first line of stdout is the address the HTTP server listens on (`HOST:PORT`,
//! the real port when `--listen` asked for port 0); with `--tcp`, the second line is
//! `tcp://HOST:PORT`. With `--stdio`, stdout carries frames only. Logs, one line per
//! exchange with its counters, go to stderr (`RUST_LOG` filters them; default `info`).
//! SIGINT or SIGTERM stops accepting, finishes the responses in flight, and exits 0.

use std::io::Write;
use std::path::PathBuf;

use hgframe::commands::cache::{DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRY_BYTES};
use hgframe::commands::{CacheLimits, FileCommands};
use hgframe_http::bytestream::{serve_connection, serve_tcp};
use hgframe_http::{serve, ConfigError, ExchangeStats, HgFrameService, Registry, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{CliResult, Failure};

/// Options of `serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address of the HTTP server.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    listen: String,
    /// Directory the commands work in; paths never leave it.
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// Content encoding of responses, in order of preference (repeatable): zstd-8mb,
    /// deflate or identity; a client gets the first it accepts, else identity.
    /// Default: zstd-8mb, identity.
    #[arg(long = "encoding", value_name = "PROFILE")]
    encodings: Vec<String>,
    /// Level of compressed responses, valid for every listed encoding (zstd: negative
    /// to 22; deflate: 0 to 9).
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    level: i32,
    /// Also serve the byte-stream transport on this TCP address.
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// Serve one byte-stream connection on stdin/stdout, and nothing else.
    #[arg(long, conflicts_with = "tcp")]
    stdio: bool,
    /// Most bytes one `put` writes, counted after decoding (default 1 GiB); at least 1.
    #[arg(long, value_name = "N")]
    max_put_bytes: Option<u64>,
    /// Most bytes the response cache of `cat` holds (default 64 MiB); at least 1.
    #[arg(long, value_name = "N")]
    cache_bytes: Option<u64>,
    /// No response cache: every `cat` compresses its file.
    #[arg(long, conflicts_with_all = ["cache_bytes", "cache_entry_bytes"])]
    no_cache: bool,
    /// Largest file the response cache holds, in bytes (default 8 MiB, or --cache-bytes
    /// if smaller); at least 1, at most --cache-bytes.
    #[arg(long, value_name = "N")]
    cache_entry_bytes: Option<u64>,
    /// Answer `debugreflect` requests (off by default).
    #[arg(long)]
    debugreflect: bool,
}

impl ServeArgs {
    /// The response cache the options ask for.
    fn cache_limits(&self) -> CacheLimits {
        // Zero bytes is how `CacheLimits` says "no cache".
        let max_bytes = if self.no_cache {
            0
        } else {
            self.cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES)
        };
        CacheLimits {
            max_bytes,
            max_entry_bytes: self
                .cache_entry_bytes
                .unwrap_or_else(|| DEFAULT_CACHE_ENTRY_BYTES.min(max_bytes)),
            ..CacheLimits::default()
        }
    }
}

pub(crate) fn run(args: ServeArgs) -> CliResult {
    init_logging();
    let known = hgframe_stream::Profiles::default();
    if let Some(unknown) = args.encodings.iter().find(|p| !known.contains(p)) {
        return Err(Failure::usage(format!(
            "unknown encoding {unknown:?}; this build knows: {}",
            known.accept_list()
        )));
    }
    if args.max_put_bytes == Some(0) {
        return Err(Failure::usage("--max-put-bytes must be at least 1"));
    }
    if args.cache_bytes == Some(0) {
        return Err(Failure::usage(
            "--cache-bytes must be at least 1 (--no-cache turns the cache off)",
        ));
    }
    let mut registry = Registry::new();
    let mut files = FileCommands::new(&args.root).map_err(Failure::bad)?;
    if let Some(max) = args.max_put_bytes {
        files.set_max_put_bytes(max);
    }
    let cache = args.cache_limits();
    if let Err(reason) = cache.check() {
        return Err(Failure::usage(format!(
            "--cache-bytes, --cache-entry-bytes: {reason}"
        )));
    }
    files.set_cache(cache).map_err(Failure::bad)?;
    files.register(&mut registry);
    let mut config = ServerConfig::default();
    config.set_debugreflect(args.debugreflect);
    let engine = config.engine_mut();
    if !args.encodings.is_empty() {
        engine.set_encodings(&args.encodings);
    }
    engine.set_observer(log_exchange);
    engine.reactor_mut().set_level(args.level);
    // Refused before anything listens: a setting that cannot work names its option.
    let service = HgFrameService::new(registry, config).map_err(unusable)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: finishing the responses in flight");
            let _ = stop_tx.send(true);
        });
        if args.stdio {
            let stats = serve_connection(
                tokio::io::stdin(),
                tokio::io::stdout(),
                service.server(),
                stopped(stop_rx),
            )
            .await;
            tracing::debug!(?stats.outcome, "stdio connection ended");
            return Ok(());
        }
        let http = TcpListener::bind(&args.listen)
            .await
            .map_err(|e| Failure::bad(format!("cannot listen on {}: {e}", args.listen)))?;
        let tcp = match &args.tcp {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| Failure::bad(format!("cannot listen on {addr}: {e}")))?,
            ),
            None => None,
        };
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", http.local_addr()?)?;
            if let Some(tcp) = &tcp {
                writeln!(stdout, "tcp://{}", tcp.local_addr()?)?;
            }
            stdout.flush()?;
        }
        let byte_streams = tcp.map(|listener| {
            let server = service.server().clone();
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move { serve_tcp(listener, server, stop).await })
        });
        serve(http, service, stopped(stop_rx))
            .await
            .map_err(Failure::bad)?;
        if let Some(task) = byte_streams {
            if let Ok(Err(e)) = task.await {
                return Err(Failure::bad(e));
            }
        }
        Ok(())
    });
    // Reading stdin may still block a runtime thread: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// Completes once the stop flag is raised.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Logs to stderr; `RUST_LOG` decides what (default: `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// One log line per exchange, with its counters.
fn log_exchange(stats: &ExchangeStats) {
    let streams: Vec<String> = stats
        .streams
        .iter()
        .map(|s| {
            format!(
                "stream {} {}: raw {} B, cached {} B, wire {} B, {} frames, encoding {:.3} ms",
                s.stream_id,
                s.profile,
                s.raw_bytes,
                s.precompressed_bytes,
                s.wire_bytes,
                s.frames,
                s.encode_time.as_secs_f64() * 1e3
            )
        })
        .collect();
    tracing::info!(
        transport = ?stats.transport,
        outcome = ?stats.outcome,
        commands = stats.commands,
        bytes_in = stats.bytes_in,
        bytes_out = stats.bytes_out,
        elapsed_ms = stats.elapsed.as_secs_f64() * 1e3,
        "exchange: {}",
        if streams.is_empty() { "no output".to_owned() } else { streams.join("; ") }
    );
}

/// A setting `serve` cannot use, as a usage error naming its option.
fn unusable(e: ConfigError) -> Failure {
    let option = match e.setting() {
        "encodings" => "--encoding".to_owned(),
        other => format!("--{}", other.replace('_', "-")),
    };
    Failure::usage(format!("{option}: {}", e.reason()))
}
