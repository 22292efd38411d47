//! `hgframe call URL COMMAND [NAME=VALUE]... [--data FILE|-] [--encodings LIST]`: one
//! command, its response bytes to stdout, its text output to stderr; exit 1 with the
//! error's message on an error response. `--prefix PATH` replaces the HTTP URL prefix.
//! `hgframe call URL --batch FILE|- [--concurrency N] [--stats]`: many commands over
//! one session (`batch.rs`).
//!
//! URL is the server root: `http://HOST:PORT` (or a bare `HOST:PORT`), `tcp://HOST:PORT`
//! for the byte-stream transport, or `stdio:PROGRAM ARGS...` (one argument, split at
//! blanks) to start a server and talk to it over its stdin and stdout.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use hgframe_http::bytestream::Connection;
use hgframe_http::{Call, Client, ClientOptions, Permission, ResponseEvent, ResponseStream};

use super::{CliResult, Failure};

/// Options of `call`.
#[derive(Debug, clap::Args)]
pub(crate) struct CallArgs {
    /// The server: http://HOST:PORT, tcp://HOST:PORT, or "stdio:PROGRAM ARGS...".
    pub(crate) url: String,
    /// The command to call (not with --batch).
    #[arg(required_unless_present = "batch", conflicts_with = "batch")]
    command: Option<String>,
    /// Arguments of the command.
    #[arg(value_name = "NAME=VALUE", conflicts_with = "batch")]
    args: Vec<String>,
    /// The command's data: a file, or `-` for stdin.
    #[arg(long, value_name = "FILE|-", conflicts_with = "batch")]
    data: Option<PathBuf>,
    /// Many commands over one session: JSON Lines from FILE or `-` (stdin), one
    /// `{"command":..,"args":{..},"data":..}` per line; one JSON line out per command
    /// as it completes.
    #[arg(long, value_name = "FILE|-")]
    pub(crate) batch: Option<PathBuf>,
    /// With --batch: calls in flight at once [default: 64].
    #[arg(long, value_name = "N")]
    pub(crate) concurrency: Option<usize>,
    /// With --batch: print the session's counters as one JSON object on stderr at the
    /// end.
    #[arg(long)]
    pub(crate) stats: bool,
    /// Content encodings to accept, best first, comma separated (default: all this
    /// build knows).
    #[arg(long, value_name = "LIST")]
    encodings: Option<String>,
    /// The permission to ask for over HTTP (default: rw for put, or a batch with a
    /// put; ro otherwise).
    #[arg(long, value_parser = ["ro", "rw"])]
    pub(crate) permission: Option<String>,
    /// Speak HTTP/2 without upgrade (h2c): full duplex (a --batch then runs over one
    /// exchange kept open).
    #[arg(long)]
    pub(crate) http2: bool,
    /// Give up (exit 1) when the server makes no progress for this many seconds:
    /// connecting, answering, or between two pieces of the answer (with --batch:
    /// between two answers). 0 waits forever.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub(crate) idle_timeout: u64,
    /// URL prefix of the commands over HTTP, in place of /api/exp-http-v2-0001
    /// (tcp:// and stdio: have no URL and ignore it).
    #[arg(long, value_name = "PATH")]
    prefix: Option<String>,
}

/// Awaits `fut`, or fails when `idle` passes first (a peer that never answers must not
/// hang the command). `None` waits forever.
pub(crate) async fn within<T>(
    idle: Option<Duration>,
    what: &str,
    fut: impl Future<Output = T>,
) -> Result<T, Failure> {
    match idle {
        None => Ok(fut.await),
        Some(limit) => tokio::time::timeout(limit, fut).await.map_err(|_| {
            Failure::bad(format!(
                "{what}: no progress from the server for {} s (see --idle-timeout)",
                limit.as_secs()
            ))
        }),
    }
}

/// Where to send the call.
pub(crate) enum Target {
    Http(String),
    Tcp(String),
    Stdio(String, Vec<String>),
}

pub(crate) fn target(url: &str) -> Result<Target, Failure> {
    if let Some(addr) = url.strip_prefix("tcp://") {
        return Ok(Target::Tcp(addr.trim_end_matches('/').to_owned()));
    }
    if let Some(command) = url.strip_prefix("stdio:") {
        let mut words = command.split_whitespace().map(str::to_owned);
        let program = words
            .next()
            .ok_or_else(|| Failure::usage("stdio: needs a program to start"))?;
        return Ok(Target::Stdio(program, words.collect()));
    }
    if url.starts_with("http://") || !url.contains("://") {
        return Ok(Target::Http(url.to_owned()));
    }
    Err(Failure::usage(format!(
        "unsupported URL {url}: use http://, tcp:// or stdio:"
    )))
}

/// The client options of every form of `call`.
pub(crate) fn options(args: &CallArgs) -> ClientOptions {
    let mut options = ClientOptions::default();
    if let Some(list) = &args.encodings {
        options.set_encodings(&hgframe_stream::parse_accept_list(list));
    }
    options.set_http2_prior_knowledge(args.http2);
    if let Some(prefix) = &args.prefix {
        options.set_prefix(prefix);
    }
    options
}

pub(crate) fn run(args: CallArgs) -> CliResult {
    let target = target(&args.url)?;
    if args.batch.is_some() {
        return super::batch::run(&args, target);
    }
    if args.stats || args.concurrency.is_some() {
        return Err(Failure::usage("--stats and --concurrency go with --batch"));
    }
    let options = options(&args);
    let command = args
        .command
        .clone()
        .ok_or_else(|| Failure::usage("call needs a COMMAND (or --batch)"))?;
    let permission = match args.permission.as_deref() {
        Some("rw") => Permission::ReadWrite,
        Some(_) => Permission::ReadOnly,
        None if command == "put" => Permission::ReadWrite,
        None => Permission::ReadOnly,
    };
    let mut call = Call::new(command).permission(permission);
    for arg in &args.args {
        let (name, value) = arg
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("argument {arg:?} is not NAME=VALUE")))?;
        call = call.arg(
            Bytes::copy_from_slice(name.as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        );
    }
    let idle = (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        if let Some(path) = &args.data {
            call = with_data(call, path).await?;
        }
        match target {
            Target::Http(url) => {
                let client = Client::with_options(&url, options).map_err(Failure::usage)?;
                let response = within(idle, "waiting for the answer", client.call(call))
                    .await?
                    .map_err(failure)?;
                print_response(response, idle).await
            }
            Target::Tcp(addr) => {
                let conn = within(idle, "connecting", Connection::connect_tcp(&addr, options));
                call_on(conn.await?.map_err(failure)?, call, idle).await
            }
            Target::Stdio(program, words) => {
                let conn = Connection::spawn_command(&program, &words, options);
                let conn = within(idle, "starting the server", conn).await?;
                call_on(conn.map_err(failure)?, call, idle).await
            }
        }
    });
    // Reading stdin may still block a runtime thread: do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// One call on a byte-stream connection, then a clean close (bounded by the idle
/// timeout too). After a failure the connection is dropped instead: a peer that stopped
/// answering would never finish the close (a child process is killed).
async fn call_on(conn: Connection, call: Call, idle: Option<Duration>) -> CliResult {
    let response = within(idle, "waiting for the answer", conn.call(call))
        .await?
        .map_err(failure)?;
    let printed = print_response(response, idle).await;
    if printed.is_ok() {
        // The whole answer is out: a peer slow to close does not make it a failure.
        let _ = within(idle, "closing", conn.close()).await;
    }
    printed
}

/// The data of the call, streamed from the file or stdin.
async fn with_data(call: Call, path: &std::path::Path) -> Result<Call, Failure> {
    if path.as_os_str() == "-" {
        return Ok(call.data_reader(tokio::io::stdin()));
    }
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Failure::bad(format!("cannot read {}: {e}", path.display())))?;
    Ok(call.data_reader(file))
}

/// Response bytes to stdout as they arrive, text output to stderr; the error's message
/// is the failure.
async fn print_response(mut response: ResponseStream, idle: Option<Duration>) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    let result = loop {
        let next = match within(idle, "reading the answer", response.next()).await {
            Ok(next) => next,
            Err(e) => break Err(e),
        };
        match next {
            None => break Ok(()),
            Some(Ok(ResponseEvent::Data(data))) => stdout.write_all(&data)?,
            Some(Ok(ResponseEvent::Text(atoms))) => {
                let mut stderr = std::io::stderr().lock();
                for atom in atoms {
                    let text = atom.render().unwrap_or(atom.format);
                    let _ = stderr.write_all(text.as_bytes());
                }
            }
            Some(Err(e)) => break Err(failure(e)),
            // Extension events (progress): this client offers none.
            Some(Ok(_)) => {}
        }
    };
    stdout.flush()?;
    result
}

/// An application error is reported with the server's message as is; anything else
/// says what kind of failure it was.
pub(crate) fn failure(e: hgframe_http::Error) -> Failure {
    if e.is_application() {
        Failure::bad(e.message())
    } else {
        Failure::bad(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_transport() {
        assert!(matches!(target("http://h:1").unwrap(), Target::Http(u) if u == "http://h:1"));
        assert!(matches!(target("127.0.0.1:8000").unwrap(), Target::Http(_)));
        assert!(matches!(target("tcp://h:1").unwrap(), Target::Tcp(a) if a == "h:1"));
        match target("stdio:hgframe serve --stdio").unwrap() {
            Target::Stdio(p, a) => {
                assert_eq!(p, "hgframe");
                assert_eq!(a, ["serve", "--stdio"]);
            }
            _ => panic!("not stdio"),
        }
        assert!(target("stdio:").is_err());
        assert!(target("https://h").is_err());
    }
}
