//! The protocol over any long-lived byte stream: TCP, a Unix socket, a child process's
//! stdin and stdout (`ssh host hgframe serve --stdio`, the way Mercurial's SSH transport
//! works).
//!
//! The bytes are frames and nothing else, in both directions, from the first byte to
//! the last, and the connection is full duplex: the client may send commands at any
//! time, and the server answers each as soon as it can. One connection is one exchange:
//! streams, and their compression contexts, live across all of its requests. That is
//! what makes it the best transport for many small commands (`hgframe demo`).
//!
//! # Negotiating the content encoding
//!
//! Over HTTP the client lists what it accepts in a header. A byte stream has no header,
//! so the client says it with a command, `hello`, reserved by the transport:
//!
//! ```text
//! client: 1 1 stream-begin command-name have-args hello
//!         1 1 0 command-argument eoa <encodings = "zstd-8mb, identity">
//! server: 1 2 stream-begin stream-settings 0 <zstd-8mb>          (if chosen)
//!         1 2 encoded bytes-response eos <encoding=zstd-8mb\ndecodes=zstd-8mb, identity\n>
//! ```
//!
//! - `hello` may only be the first command of a connection; later, it is an application
//!   error. Its argument `encodings` has the syntax of the HTTP header (names in
//!   preference order, comma separated).
//! - The server picks the first of its own preferences that the client lists
//!   (`identity` if none) and answers `encoding=<profile>\n`. Its first stream starts
//!   with that answer, already in the chosen encoding: the client can decode it since it
//!   offered the profile.
//! - A client that sends no `hello` gets `identity` for the whole connection. The
//!   client's own stream may use any profile the server supports (the server decodes
//!   every profile of its build), announced by its `stream-settings` as always. The
//!   answer's line `decodes=<profiles>` lists them; [`Connection`] then sends the
//!   commands after `hello` on a new stream in the first of its own encodings that the
//!   server decodes ([`crate::ClientOptions::set_compress_requests`]).
//!
//! [`Connection`] sends `hello` when it accepts anything but `identity`, or offers
//! extensions.
//!
//! # Negotiating extensions
//!
//! A client that offers extensions (docs/protocol.md, "Extensions") adds the argument
//! `extensions` to `hello` (the syntax of the HTTP header `HgFrame-Extensions`:
//! `cancel, progress`), and the server's answer has a second line,
//! `extensions=<those it accepted>\n` (possibly empty). Without the argument the
//! answer is the seed's, and no extension is used on the connection.
//!
//! # Ending
//!
//! The client half-closes (end of its input for the server) when it has nothing more to
//! send; the server then finishes the responses in flight and closes. A server that
//! shuts down does the same as if the client had half-closed.
//!
//! A client that stops reading while the server has output for it (or never reads at
//! all) is dropped once it has taken nothing for [`EngineConfig::idle_timeout`]
//! (`Outcome::TimedOut`): the server's writes to it give up too, so the connection ends
//! and frees its slot.
//!
//! [`EngineConfig::idle_timeout`]: crate::EngineConfig::idle_timeout

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tracing::Instrument;

use crate::caller::Caller;
use crate::client::driver::Input;
use crate::client::{
    Batch, Call, CallQueue, ClientOptions, ClientStats, Counters, ResponseStream, Session,
};
use crate::error::Error;
use crate::exchange::Scope;
use crate::output::{write_all_chunks, FrameInput, OutputChunk};
use crate::server::Server;
use crate::stats::{ExchangeStats, Outcome, Transport};
use hgframe_wire::extension::Extensions;

/// The longest answer to `hello` a client reads (`encoding=<profile>\n` is far
/// shorter); a longer one fails the connection.
pub const MAX_HELLO_ANSWER: usize = 1024;

/// Serves one byte-stream connection until the client half-closes it (or `stop`
/// completes: the server then stops reading and finishes the responses in flight).
/// Returns the connection's counters.
pub async fn serve_connection<R, W, F>(
    reader: R,
    writer: W,
    server: &Server,
    stop: F,
) -> ExchangeStats
where
    R: AsyncRead + Send + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    serve_connection_as(
        reader,
        writer,
        server,
        Caller::new(Transport::ByteStream),
        stop,
    )
    .await
}

/// [`serve_connection`] for a known `caller` (its peer address, or a principal that
/// the transport authenticated, as a TLS client certificate or an SSH login would).
pub async fn serve_connection_as<R, W, F>(
    reader: R,
    writer: W,
    server: &Server,
    caller: Caller,
    stop: F,
) -> ExchangeStats
where
    R: AsyncRead + Send + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let reactor = server.new_reactor(true, &[]);
    let input = stop_reading_on(server.frames(reader), stop);
    let running = server.start(
        reactor,
        Scope::Connection,
        caller,
        input,
        tracing::info_span!("hgframe.connection"),
    );
    let stalled =
        !write_chunks_or_give_up(running.output, writer, server.config().idle_timeout()).await;
    match running.done.await {
        // The exchange only saw its output closed; the reason is the stall.
        Ok(mut stats) if stalled && stats.outcome == Outcome::ClientGone => {
            stats.outcome = Outcome::TimedOut;
            stats
        }
        Ok(stats) => stats,
        Err(e) => {
            let mut stats = ExchangeStats::new(Transport::ByteStream, true);
            stats.outcome = Outcome::InputFailed(format!("the exchange task failed: {e}"));
            stats
        }
    }
}

/// Writes every chunk as [`write_all_chunks`] does, but gives up when the peer takes
/// nothing for `stall` (the idle timeout): a client that stops reading, or never reads,
/// would otherwise hold the write, and so the connection, forever (the exchange's own
/// clock ends the exchange, but cannot end a write already under way). Each write that
/// moves any byte restarts the clock, so a slow reader is not a stalled one. Giving up
/// drops `rx`, which tells the exchange the peer is gone. Returns `false` if it gave up
/// on a stall (not when the peer went away).
async fn write_chunks_or_give_up<W>(
    mut rx: mpsc::Receiver<OutputChunk>,
    mut writer: W,
    stall: Option<Duration>,
) -> bool
where
    W: AsyncWrite + Unpin,
{
    let Some(limit) = stall else {
        write_all_chunks(rx, writer).await;
        return true;
    };
    while let Some(chunk) = rx.recv().await {
        let Ok(chunk) = chunk else { break };
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            match tokio::time::timeout(limit, writer.write(rest)).await {
                Ok(Ok(n)) if n > 0 => rest = rest.get(n..).unwrap_or_default(),
                // The peer is gone; dropping `rx` tells the exchange.
                Ok(_) => return true,
                Err(_) => {
                    tracing::debug!(
                        ?limit,
                        "the peer took no output for the idle timeout; connection dropped"
                    );
                    return false;
                }
            }
        }
        if rx.is_empty() {
            match tokio::time::timeout(limit, writer.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }
    let _ = tokio::time::timeout(limit, writer.shutdown()).await;
    true
}

/// Frames from `input` until `stop` completes, then the end of input.
fn stop_reading_on<F>(input: FrameInput, stop: F) -> FrameInput
where
    F: Future<Output = ()> + Send + 'static,
{
    use futures_util::StreamExt;
    Box::pin(input.take_until(stop))
}

/// Serves byte-stream connections from `listener` until `shutdown` completes; then
/// stops accepting, tells every connection to stop reading, and waits (up to the
/// configured grace period) for their responses in flight.
pub async fn serve_tcp<F>(listener: TcpListener, server: Server, shutdown: F) -> Result<(), Error>
where
    F: Future<Output = ()> + Send,
{
    let config = server.config().clone();
    let limit = Arc::new(Semaphore::new(config.max_connections()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(
            async move {
                let (reader, writer) = stream.into_split();
                let stop = async move {
                    let _ = stop.wait_for(|stopping| *stopping).await;
                };
                let caller = Caller::new(Transport::ByteStream).with_peer(peer);
                let stats = serve_connection_as(reader, writer, &server, caller, stop).await;
                tracing::debug!(?stats.outcome, commands = stats.commands, "connection ended");
                drop(permit);
            }
            .instrument(tracing::debug_span!("hgframe.bytestream", %peer)),
        );
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let wait_all = async { while connections.join_next().await.is_some() {} };
    match config.shutdown_grace() {
        Some(grace) => {
            if tokio::time::timeout(grace, wait_all).await.is_err() {
                tracing::warn!(
                    "byte-stream connections still busy after the grace period; dropped"
                );
            }
        }
        None => wait_all.await,
    }
    Ok(())
}

/// A client connection over a byte stream: many calls, one long-lived exchange.
///
/// ```no_run
/// # async fn run() -> Result<(), hgframe_engine::Error> {
/// use hgframe_engine::{bytestream::Connection, Call, ClientOptions};
/// let conn = Connection::connect_tcp("127.0.0.1:9000", ClientOptions::default()).await?;
/// println!("responses use {}", conn.encoding());
/// let files = conn.call(Call::new("files")).await?.collect().await?;
/// conn.close().await;
/// # Ok(()) }
/// ```
///
/// Calls never wait to be queued: the connection issues them as its window
/// ([`ClientOptions::set_window`]) allows. Read the responses as
/// [the crate's rule](crate#reading-responses) says: a [`Batch`] by one consumer, several
/// [`ResponseStream`]s in any order (concurrently is best).
///
/// A `Connection` is not `Clone` (it owns the tasks that run it, and a child process);
/// to share it among tasks that each hold a handle, turn it into a [`Session`]
/// ([`Connection::session`]), which also bounds the calls pending.
#[derive(Debug)]
pub struct Connection {
    calls: CallQueue,
    encoding: String,
    driver: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    child: Option<tokio::process::Child>,
    counters: Arc<Counters>,
    max_pending_calls: usize,
}

impl Connection {
    /// A connection over `reader` and `writer`; sends `hello` first if the options
    /// accept any encoding but `identity`.
    pub async fn new<R, W>(reader: R, writer: W, options: ClientOptions) -> Result<Self, Error>
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        options.validate()?;
        let (driver, calls, accepts) = options.new_driver(true);
        let counters = driver.counters();
        let offered = driver.offered_extensions();
        let accepted = driver.accepted_extensions();
        let driver_encoding = driver.request_encoding();
        let codec =
            hgframe_wire::codec::FrameCodec::with_max_payload_len(options.max_frame_payload());
        let frames: FrameInput = Box::pin(tokio_util::codec::FramedRead::new(reader, codec));
        let (out_tx, out_rx) = mpsc::channel(4);
        let writer = tokio::spawn(write_all_chunks(out_rx, writer));
        let driver = tokio::spawn(driver.run(Input::Ready(frames), out_tx));
        let mut conn = Self {
            calls,
            encoding: hgframe_reactor::IDENTITY.to_owned(),
            driver,
            writer,
            child: None,
            counters,
            max_pending_calls: options.max_pending_calls(),
        };
        let only_identity = accepts
            .split(',')
            .all(|p| p.trim().is_empty() || p.trim() == hgframe_reactor::IDENTITY);
        if !only_identity || !offered.is_empty() {
            let mut hello = Call::new("hello").arg("encodings", Bytes::from(accepts));
            if !offered.is_empty() {
                hello = hello.arg("extensions", offered.to_string());
            }
            let answer = match conn.call(hello).await {
                Ok(answer) => read_hello(answer).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(answer) => {
                    let answer = String::from_utf8_lossy(&answer);
                    for line in answer.lines() {
                        if let Some(profile) = line.strip_prefix("encoding=") {
                            conn.encoding = profile.to_owned();
                            conn.counters.set_profile(profile);
                        } else if let Some(list) = line.strip_prefix("extensions=") {
                            // Before any later call: nothing used them yet.
                            accepted.set(Extensions::parse(list));
                        } else if let Some(list) = line.strip_prefix("decodes=") {
                            // The commands after `hello` may be encoded.
                            if let Some(profile) = options.request_encoding_for(list) {
                                driver_encoding.set(&profile);
                            }
                        }
                    }
                }
                Err(e) => {
                    // Stop reading at once: the peer may go on sending.
                    conn.driver.abort();
                    conn.writer.abort();
                    return Err(e);
                }
            }
        }
        Ok(conn)
    }

    /// A TCP connection to `addr` (`HOST:PORT`).
    pub async fn connect_tcp(addr: &str, options: ClientOptions) -> Result<Self, Error> {
        options.validate()?;
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| Error::io(format!("cannot connect to {addr}"), e))?;
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Self::new(reader, writer, options).await
    }

    /// Starts `program` with `args` and talks to it over its stdin and stdout (its
    /// stderr is inherited). The child is killed if the connection is dropped.
    pub async fn spawn_command(
        program: &str,
        args: &[String],
        options: ClientOptions,
    ) -> Result<Self, Error> {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::io(format!("cannot start {program}"), e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::closed(format!("{program} has no pipes")));
        };
        let mut conn = Self::new(stdout, stdin, options).await?;
        conn.child = Some(child);
        Ok(conn)
    }

    /// The content encoding the server uses for its responses.
    pub fn encoding(&self) -> &str {
        &self.encoding
    }

    /// Calls one command. Calls may be made from many tasks at once (`&self`); at most
    /// the configured window of them are in flight, the others are queued (this never
    /// waits for them). Fails only if the connection has ended.
    pub async fn call(&self, call: Call) -> Result<ResponseStream, Error> {
        self.calls.call(call)
    }

    /// Calls several commands: all are queued at once (this never waits), issued as the
    /// window allows, and answered as one [`Batch`], whose single consumer receives the
    /// events of every call as they arrive; [`Batch::collect`] gathers them in the order
    /// of `calls`. If the connection has ended, every call fails.
    pub fn call_many(&self, calls: Vec<Call>) -> Batch {
        self.calls.call_many(calls)
    }

    /// The connection's client-side counters so far: the profile chosen, bytes on the
    /// wire and decoded in both directions, calls and errors.
    pub fn stats(&self) -> ClientStats {
        self.counters.snapshot()
    }

    /// Turns the connection into a [`Session`]: a cloneable handle that any number of
    /// tasks call through concurrently, with at most
    /// [`ClientOptions::set_max_pending_calls`] calls pending (fails if that is 0).
    /// The connection closes when the last handle is closed or dropped.
    pub fn session(self) -> Result<Session, Error> {
        let calls = self.calls.clone();
        let counters = Arc::clone(&self.counters);
        let max_pending = self.max_pending_calls;
        Session::build(calls, max_pending, counters, Some(self))
    }

    /// Says there will be no more calls, waits for every response to end and the
    /// connection to close (and for the child process, if any, to exit).
    pub async fn close(self) {
        let Self {
            calls,
            driver,
            writer,
            mut child,
            ..
        } = self;
        drop(calls);
        let _ = driver.await;
        let _ = writer.await;
        if let Some(child) = child.as_mut() {
            let _ = child.wait().await;
        }
    }
}

/// The answer to `hello`: at most [`MAX_HELLO_ANSWER`] bytes.
async fn read_hello(mut answer: ResponseStream) -> Result<Vec<u8>, Error> {
    use crate::client::ResponseEvent;
    let mut bytes = Vec::new();
    while let Some(event) = answer.next().await {
        if let ResponseEvent::Data(data) = event? {
            if bytes.len() + data.len() > MAX_HELLO_ANSWER {
                return Err(Error::protocol(format!(
                    "the server's answer to hello is longer than {MAX_HELLO_ANSWER} bytes \
                     (it should be `encoding=<profile>`): is it an hgframe byte-stream server?"
                )));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}
