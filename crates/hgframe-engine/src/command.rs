//! Commands an application serves: the registry, and the API a handler sees.
//!
//! A command has a name, a [`Permission`] and an async [`Handler`]. The handler gets a
//! [`CommandInput`] (the arguments, and the command data as a [`DataReader`]) and a
//! [`Responder`] through which it streams its answer: response bytes, text output, and at
//! the end either success or a [`CommandError`] (an application `error-response`).
//!
//! ```
//! use hgframe_engine::{CommandError, CommandInput, Permission, Registry, Responder};
//!
//! let mut registry = Registry::new();
//! registry.register("greet", Permission::ReadOnly, |input: CommandInput, mut out: Responder| async move {
//!     let name = input.arg_str("name")?;
//!     out.write(format!("hello, {name}\n")).await?;
//!     Ok::<(), CommandError>(())
//! });
//! ```
//!
//! Back-pressure: every [`Responder`] call waits for room in a bounded queue that the
//! exchange drains only as fast as the peer reads, so a handler producing faster than the
//! peer consumes is paused, never buffered without bound.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use hgframe_reactor::ResponseEncoding;
use hgframe_wire::payload::progress::{Progress, MAX_TOPIC_LEN};
use hgframe_wire::payload::text_output::TextAtom;
use hgframe_wire::RequestId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admission::BlockingPool;
use crate::caller::Caller;
use crate::config::ConfigError;

/// Names the transports use themselves, which applications cannot register.
pub const RESERVED_NAMES: [&str; 3] = ["multirequest", "debugreflect", "hello"];

/// What a command may do, and the URL segment that grants it (`ro` or `rw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Reads only; reachable through `ro` and `rw` URLs.
    ReadOnly,
    /// May change state; reachable only through `rw` URLs.
    ReadWrite,
}

impl Permission {
    /// The URL segment: `ro` or `rw`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "ro",
            Self::ReadWrite => "rw",
        }
    }

    /// Parses a URL segment.
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "ro" => Some(Self::ReadOnly),
            "rw" => Some(Self::ReadWrite),
            _ => None,
        }
    }

    /// Whether a request granted `self` may run a command that needs `needed`.
    pub fn allows(self, needed: Self) -> bool {
        self >= needed
    }
}

/// An application's failure to run a command: sent to the client as an application
/// `error-response` with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    message: String,
}

impl CommandError {
    /// An error with a message for people.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}

impl From<Disconnected> for CommandError {
    fn from(_: Disconnected) -> Self {
        Self::new("the exchange ended before the response was complete")
    }
}

/// The exchange this handler answers ended (the client went away, or the server
/// aborted it): nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the exchange ended before the response was complete")]
pub struct Disconnected;

/// An async command handler.
///
/// Implemented for every `Fn(CommandInput, Responder) -> impl Future<Output =
/// Result<(), CommandError>>` that is `Send + Sync + 'static`, so a closure or an `async
/// fn` will do. Handlers run inside their exchange's task, next to each other: one
/// with heavy work should move it to the server's blocking pool
/// ([`CommandInput::blocking`], where `cat` reads files) or a task of its own. A handler is dropped (cancelled at an `.await`) when its exchange ends
/// early; a panic fails its command only.
pub trait Handler: Send + Sync + 'static {
    /// Runs the command: read `input`, write the answer to `out`.
    fn call(
        &self,
        input: CommandInput,
        out: Responder,
    ) -> BoxFuture<'static, Result<(), CommandError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(CommandInput, Responder) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), CommandError>> + Send + 'static,
{
    fn call(
        &self,
        input: CommandInput,
        out: Responder,
    ) -> BoxFuture<'static, Result<(), CommandError>> {
        Box::pin(self(input, out))
    }
}

/// A registered command.
#[derive(Clone)]
pub struct Command {
    permission: Permission,
    handler: Arc<dyn Handler>,
}

impl Command {
    /// What the command needs.
    pub fn permission(&self) -> Permission {
        self.permission
    }

    pub(crate) fn handler(&self) -> Arc<dyn Handler> {
        Arc::clone(&self.handler)
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("permission", &self.permission)
            .finish_non_exhaustive()
    }
}

/// The commands a server offers, by name. Shared by every transport and exchange.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    commands: BTreeMap<Bytes, Command>,
    /// Names that could not be registered, for [`Self::validate`].
    refused: Vec<String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a command. An empty name, or one the transports reserve
    /// ([`RESERVED_NAMES`]), is not added: it is remembered, and the registry is refused
    /// when a server is built from it ([`Self::validate`]), so registration chains
    /// without a `Result` per call.
    ///
    /// ```
    /// use hgframe_engine::{EngineConfig, Permission, Registry, Server};
    /// # async fn echo(_: hgframe_engine::CommandInput, _: hgframe_engine::Responder) -> Result<(), hgframe_engine::CommandError> { Ok(()) }
    /// let mut registry = Registry::new();
    /// registry
    ///     .register("echo", Permission::ReadOnly, echo)
    ///     .register("hello", Permission::ReadOnly, echo);
    /// let e = Server::new(registry, EngineConfig::default()).unwrap_err();
    /// assert_eq!(e.setting(), "registry");
    /// assert!(e.reason().contains("\"hello\""));
    /// ```
    pub fn register(
        &mut self,
        name: &str,
        permission: Permission,
        handler: impl Handler,
    ) -> &mut Self {
        if name.is_empty() || RESERVED_NAMES.contains(&name) {
            self.refused.push(name.to_owned());
            return self;
        }
        self.commands.insert(
            Bytes::copy_from_slice(name.as_bytes()),
            Command {
                permission,
                handler: Arc::new(handler),
            },
        );
        self
    }

    /// Checks that every command registered could be: none had an empty or reserved
    /// name. [`crate::Server::new`] calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.refused.first() {
            Some(name) => Err(ConfigError::new(
                "registry",
                format!("cannot register a command named {name:?}: the name is empty or reserved"),
            )),
            None => Ok(()),
        }
    }

    /// Adds (or replaces) a command whose handler gets `state` (a clone of it per call,
    /// so make it cheap to clone: an `Arc`, a pool handle) as its first argument, as
    /// axum's `State`: no clone dance in the handler. Names are checked as
    /// [`Self::register`] does.
    ///
    /// ```
    /// use std::sync::{atomic::{AtomicU64, Ordering}, Arc};
    /// use hgframe_engine::{CommandInput, Permission, Registry, Responder, State};
    ///
    /// async fn count(
    ///     State(calls): State<Arc<AtomicU64>>,
    ///     _: CommandInput,
    ///     out: Responder,
    /// ) -> Result<(), hgframe_engine::CommandError> {
    ///     let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
    ///     out.finish(n.to_string()).await?;
    ///     Ok(())
    /// }
    ///
    /// let mut registry = Registry::new();
    /// registry.register_with_state("count", Permission::ReadOnly, Arc::new(AtomicU64::new(0)), count);
    /// ```
    pub fn register_with_state<S, F, Fut>(
        &mut self,
        name: &str,
        permission: Permission,
        state: S,
        handler: F,
    ) -> &mut Self
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(State<S>, CommandInput, Responder) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), CommandError>> + Send + 'static,
    {
        self.register(name, permission, move |input, out| {
            handler(State(state.clone()), input, out)
        })
    }

    /// The command of that name.
    pub fn get(&self, name: &[u8]) -> Option<&Command> {
        self.commands.get(name)
    }

    /// The names of the registered commands, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.commands
            .keys()
            .filter_map(|k| std::str::from_utf8(k).ok())
    }
}

/// State shared by the calls of a command ([`Registry::register_with_state`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct State<S>(pub S);

/// What a handler is asked: the command's name, its arguments, and its data.
#[derive(Debug)]
pub struct CommandInput {
    name: String,
    args: BTreeMap<Bytes, Bytes>,
    data: Option<DataReader>,
    pool: BlockingPool,
    caller: Arc<Caller>,
}

impl CommandInput {
    pub(crate) fn new(
        name: String,
        args: BTreeMap<Bytes, Bytes>,
        data: Option<DataReader>,
        pool: BlockingPool,
        caller: Arc<Caller>,
    ) -> Self {
        Self {
            name,
            args,
            data,
            pool,
            caller,
        }
    }

    /// Who calls: the transport, the peer's address, the HTTP request's headers and
    /// extensions, and the principal an authentication layer set.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The server's pool for blocking work (file I/O, heavy computation): bounded by
    /// [`crate::EngineConfig::blocking_threads`], so many commands at once cannot take
    /// a thread each. Use it rather than `spawn_blocking`.
    pub fn blocking(&self) -> &BlockingPool {
        &self.pool
    }

    /// The command's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All arguments, in name order.
    pub fn args(&self) -> &BTreeMap<Bytes, Bytes> {
        &self.args
    }

    /// One argument's value.
    pub fn arg(&self, name: &str) -> Option<&Bytes> {
        self.args.get(name.as_bytes())
    }

    /// A required argument, as UTF-8 text; a missing or non-UTF-8 value is a
    /// [`CommandError`] that names the argument.
    pub fn arg_str(&self, name: &str) -> Result<&str, CommandError> {
        let value = self
            .arg(name)
            .ok_or_else(|| CommandError::new(format!("missing argument: {name}")))?;
        std::str::from_utf8(value)
            .map_err(|_| CommandError::new(format!("argument {name} is not valid UTF-8")))
    }

    /// Whether the command came with data (the `have-data` flag).
    pub fn has_data(&self) -> bool {
        self.data.is_some()
    }

    /// Takes the command data, if any. It may still be arriving.
    pub fn take_data(&mut self) -> Option<DataReader> {
        self.data.take()
    }
}

/// One piece of command data on its way from the exchange to a handler, and whether it is
/// the last.
pub(crate) type DataPiece = (Bytes, bool);

/// The command data of one command, as it arrives.
///
/// In half-duplex exchanges it comes as one piece once whole (bounded by the reactor's
/// `max_buffered_data`); in full-duplex exchanges piece by piece, through a bounded queue
/// whose fill stops the exchange from reading more of the request.
#[derive(Debug)]
pub struct DataReader {
    source: DataSource,
}

#[derive(Debug)]
enum DataSource {
    Whole(Option<Bytes>),
    Pieces {
        rx: mpsc::Receiver<DataPiece>,
        done: bool,
    },
}

impl DataReader {
    /// Data that arrived whole.
    pub(crate) fn whole(data: Bytes) -> Self {
        Self {
            source: DataSource::Whole(Some(data)),
        }
    }

    /// Data that will arrive through `rx`.
    pub(crate) fn pieces(rx: mpsc::Receiver<DataPiece>) -> Self {
        Self {
            source: DataSource::Pieces { rx, done: false },
        }
    }

    /// The next piece; `Ok(None)` once all data arrived. An error when the exchange
    /// ended before the last piece.
    ///
    /// Cancel-safe: a piece is never lost when the future is dropped unfinished.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, CommandError> {
        match &mut self.source {
            DataSource::Whole(data) => Ok(data.take()),
            DataSource::Pieces { done: true, .. } => Ok(None),
            DataSource::Pieces { rx, done } => match rx.recv().await {
                Some((piece, eos)) => {
                    *done = eos;
                    Ok(Some(piece))
                }
                None => {
                    *done = true;
                    Err(CommandError::new(
                        "the command data ended before its last frame",
                    ))
                }
            },
        }
    }

    /// All the (remaining) data in one buffer, refusing more than `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Bytes, CommandError> {
        let mut pieces = Vec::new();
        let mut total = 0usize;
        while let Some(piece) = self.chunk().await? {
            total = total.saturating_add(piece.len());
            if total > limit {
                return Err(CommandError::new(format!(
                    "command data exceeds the limit of {limit} bytes"
                )));
            }
            pieces.push(piece);
        }
        Ok(match pieces.len() {
            0 => Bytes::new(),
            1 => pieces.pop().unwrap_or_default(),
            _ => Bytes::from(pieces.concat()),
        })
    }
}

/// What handlers tell their exchange, through one bounded queue per exchange.
#[derive(Debug)]
pub(crate) enum Report {
    /// Response bytes; `eos` on the last.
    Data {
        request: RequestId,
        gen: u64,
        data: Bytes,
        eos: bool,
    },
    /// Response bytes already compressed for the response's encoding (a cache's),
    /// sent as they are; `eos` on the last.
    Precompressed {
        request: RequestId,
        gen: u64,
        data: Bytes,
        eos: bool,
    },
    /// Text output for people.
    Text {
        request: RequestId,
        gen: u64,
        atoms: Vec<TextAtom>,
    },
    /// A progress report (extension `progress`, negotiated, rate-limited).
    Progress {
        request: RequestId,
        gen: u64,
        progress: Progress,
    },
    /// The rest of the response's data goes raw, on a stream of its own.
    Sensitive { request: RequestId, gen: u64 },
    /// The handler returned (or panicked, reported by the exchange itself).
    Finished {
        request: RequestId,
        gen: u64,
        result: Result<(), CommandError>,
    },
}

impl Report {
    /// The request it is about.
    pub(crate) fn request(&self) -> RequestId {
        match self {
            Self::Data { request, .. }
            | Self::Precompressed { request, .. }
            | Self::Text { request, .. }
            | Self::Progress { request, .. }
            | Self::Sensitive { request, .. }
            | Self::Finished { request, .. } => *request,
        }
    }

    /// Which command of that request id it is about: an id is reused once its response
    /// has ended, while the handler that answered may still report (its return, say).
    pub(crate) fn gen(&self) -> u64 {
        match self {
            Self::Data { gen, .. }
            | Self::Precompressed { gen, .. }
            | Self::Text { gen, .. }
            | Self::Progress { gen, .. }
            | Self::Sensitive { gen, .. }
            | Self::Finished { gen, .. } => *gen,
        }
    }

    /// Whether it ends its request's response.
    pub(crate) fn ends_response(&self) -> bool {
        match self {
            Self::Data { eos, .. } | Self::Precompressed { eos, .. } => *eos,
            Self::Text { .. } | Self::Progress { .. } | Self::Sensitive { .. } => false,
            Self::Finished { .. } => true,
        }
    }
}

/// Where a handler writes its answer.
///
/// Each call waits until the exchange has room (the back-pressure). Data is passed on as
/// [`Bytes`] without copying; large buffers are cut into pieces of the configured size so
/// that the exchange can interleave and compress them a piece at a time.
#[derive(Debug)]
pub struct Responder {
    request: RequestId,
    gen: u64,
    tx: mpsc::Sender<Report>,
    piece_size: usize,
    /// Data from this size on is cut in pieces of this size instead, for the exchange
    /// to compress on worker threads (`None`: it does not).
    large_piece: Option<usize>,
    finished: bool,
    /// Progress reports, if the client accepted them.
    progress: Option<ProgressGate>,
    /// How the response's data is compressed, for data compressed ahead of time
    /// (`None`: it is not, or the response was marked sensitive).
    encoding: Option<ResponseEncoding>,
}

/// The rate limit of one request's progress reports, on the engine's clock
/// ([`tokio::time::Instant`], which tests may pause).
#[derive(Debug)]
pub(crate) struct ProgressGate {
    interval: Duration,
    last: Option<Instant>,
}

impl ProgressGate {
    /// Reports at least `interval` apart.
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    /// Whether a report may go now (and if so, it counts as the last one sent): the
    /// first always may, then one per interval, and the one that reaches a known total.
    fn admit(&mut self, complete: bool) -> bool {
        let now = Instant::now();
        let due = self.last.map_or(true, |last| {
            now.saturating_duration_since(last) >= self.interval
        });
        if due || complete {
            self.last = Some(now);
        }
        due || complete
    }
}

impl Responder {
    pub(crate) fn new(
        request: RequestId,
        gen: u64,
        tx: mpsc::Sender<Report>,
        piece_size: usize,
        large_piece: Option<usize>,
    ) -> Self {
        Self {
            request,
            gen,
            tx,
            piece_size: piece_size.max(1),
            large_piece: large_piece.map(|n| n.max(1)),
            finished: false,
            progress: None,
            encoding: None,
        }
    }

    /// Lets the handler send data compressed ahead of time in `encoding`, the
    /// response's.
    pub(crate) fn with_encoding(mut self, encoding: Option<ResponseEncoding>) -> Self {
        self.encoding = encoding;
        self
    }

    /// How this response's data is compressed, for a handler that keeps compressed
    /// copies of its answers (a cache): data compressed with it, as
    /// [`ResponseEncoding`] says, can go through [`Self::write_precompressed`] with no
    /// compression work. `None` when the response is not compressed (the client takes
    /// `identity`) or was marked sensitive ([`Self::set_sensitive`]): send the data
    /// with [`Self::write`] then. A profile may have no pre-compressed form at all
    /// (`deflate`): [`ResponseEncoding::profile`] says.
    pub fn response_encoding(&self) -> Option<&ResponseEncoding> {
        self.encoding.as_ref()
    }

    /// The size of the writes this response handles best: with compression on several
    /// cores, a worker's piece ([`crate::EngineConfig::parallel_piece`]; smaller writes
    /// are compressed on the exchange's own task, so they never reach the other
    /// cores), else the size writes are cut into ([`crate::EngineConfig::response_piece`]).
    /// A handler that reads its data in chunks, as `cat` does, reads at least this much
    /// at a time.
    pub fn preferred_write_len(&self) -> usize {
        self.large_piece.unwrap_or(self.piece_size)
    }

    /// Sends response bytes already compressed for [`Self::response_encoding`] (whole
    /// units of its profile: for zstd, whole zstd frames), as they are. More may follow.
    /// They count against the exchange's output budget like other output. Data the
    /// response's stream cannot take (no such encoding, not whole units) fails the
    /// response with an error; nothing of it is sent.
    pub async fn write_precompressed(&mut self, compressed: Bytes) -> Result<(), Disconnected> {
        self.send_precompressed(compressed, false).await
    }

    /// Like [`Self::write_precompressed`], and ends the response.
    pub async fn finish_precompressed(mut self, compressed: Bytes) -> Result<(), Disconnected> {
        self.send_precompressed(compressed, true).await
    }

    async fn send_precompressed(&mut self, data: Bytes, eos: bool) -> Result<(), Disconnected> {
        if self.finished {
            return Ok(());
        }
        self.tx
            .send(Report::Precompressed {
                request: self.request,
                gen: self.gen,
                data,
                eos,
            })
            .await
            .map_err(|_| Disconnected)?;
        self.finished = eos;
        Ok(())
    }

    /// Sends progress reports through `gate` (the client accepted them).
    pub(crate) fn with_progress(mut self, gate: ProgressGate) -> Self {
        self.progress = Some(gate);
        self
    }

    pub(crate) fn gen(&self) -> u64 {
        self.gen
    }

    /// The request this responder answers.
    pub fn request_id(&self) -> RequestId {
        self.request
    }

    /// Sends response bytes. More may follow.
    ///
    /// Cancel-safe only between pieces: if dropped unfinished, a prefix of `data` may have
    /// been sent.
    pub async fn write(&mut self, data: impl Into<Bytes>) -> Result<(), Disconnected> {
        self.send_data(data.into(), false).await
    }

    /// Sends the last response bytes (possibly none) and ends the response.
    pub async fn finish(mut self, data: impl Into<Bytes>) -> Result<(), Disconnected> {
        self.send_data(data.into(), true).await
    }

    /// Marks the rest of the response's data sensitive (a secret, or data that mixes a
    /// secret with what someone else controls): it then travels raw, on a stream of its
    /// own in the `identity` encoding, and never enters the compression context that
    /// other responses share (CRIME and BREACH; docs/engine.md, "Who calls"). Call it
    /// before writing the data it protects. Costs that data's compression.
    pub async fn set_sensitive(&mut self) -> Result<(), Disconnected> {
        if self.finished {
            return Ok(());
        }
        // Sensitive data goes raw: nothing compressed ahead of time either.
        self.encoding = None;
        self.tx
            .send(Report::Sensitive {
                request: self.request,
                gen: self.gen,
            })
            .await
            .map_err(|_| Disconnected)
    }

    /// Sends text output (all atoms go in one `text-output` frame, so they must fit in
    /// one; a message that does not fit is reported as an error to the client).
    pub async fn text(&mut self, atoms: Vec<TextAtom>) -> Result<(), Disconnected> {
        if self.finished {
            return Ok(());
        }
        self.tx
            .send(Report::Text {
                request: self.request,
                gen: self.gen,
                atoms,
            })
            .await
            .map_err(|_| Disconnected)
    }

    /// Reports how far the command got: `position` out of `total` (0: unknown) in
    /// `topic`'s unit. A no-op unless the client accepted the `progress` extension, and
    /// rate-limited ([`crate::EngineConfig::progress_interval`]): a report closer than
    /// that to the last one sent is dropped, except the one that reaches `total`. So it
    /// may be called for every piece written. A topic over 255 bytes is cut (on a
    /// character boundary), a position beyond a known total is taken as the total.
    /// Reports go in order with the data written around them.
    ///
    /// Returns whether the report was sent.
    pub async fn progress(
        &mut self,
        topic: &str,
        position: u64,
        total: u64,
    ) -> Result<bool, Disconnected> {
        let position = if total == 0 {
            position
        } else {
            position.min(total)
        };
        let complete = total != 0 && position == total;
        let Some(gate) = &mut self.progress else {
            return Ok(false);
        };
        if self.finished || !gate.admit(complete) {
            return Ok(false);
        }
        let mut end = topic.len().min(MAX_TOPIC_LEN);
        while !topic.is_char_boundary(end) {
            end -= 1;
        }
        let progress = Progress {
            topic: topic.get(..end).unwrap_or_default().to_owned(),
            position,
            total,
        };
        self.tx
            .send(Report::Progress {
                request: self.request,
                gen: self.gen,
                progress,
            })
            .await
            .map_err(|_| Disconnected)?;
        Ok(true)
    }

    async fn send_data(&mut self, mut data: Bytes, eos: bool) -> Result<(), Disconnected> {
        if self.finished {
            return Ok(());
        }
        loop {
            let size = match self.large_piece {
                Some(large) if data.len() >= large => large,
                _ => self.piece_size,
            };
            let piece = data.split_to(data.len().min(size));
            let last = data.is_empty();
            self.tx
                .send(Report::Data {
                    request: self.request,
                    gen: self.gen,
                    data: piece,
                    eos: eos && last,
                })
                .await
                .map_err(|_| Disconnected)?;
            if last {
                break;
            }
        }
        self.finished = eos;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_nest() {
        assert!(Permission::ReadWrite.allows(Permission::ReadOnly));
        assert!(Permission::ReadWrite.allows(Permission::ReadWrite));
        assert!(Permission::ReadOnly.allows(Permission::ReadOnly));
        assert!(!Permission::ReadOnly.allows(Permission::ReadWrite));
        assert_eq!(Permission::from_segment("ro"), Some(Permission::ReadOnly));
        assert_eq!(Permission::from_segment("rw"), Some(Permission::ReadWrite));
        assert_eq!(Permission::from_segment("RO"), None);
    }

    #[test]
    fn reserved_and_empty_names_are_refused() {
        let mut r = Registry::new();
        let h = |_: CommandInput, _: Responder| async { Ok::<(), CommandError>(()) };
        for name in RESERVED_NAMES.iter().copied().chain([""]) {
            let mut one = Registry::new();
            one.register(name, Permission::ReadOnly, h);
            let e = one.validate().unwrap_err();
            assert_eq!(e.setting(), "registry");
            assert!(e.reason().contains(&format!("{name:?}")), "{e}");
            assert!(one.get(name.as_bytes()).is_none());
        }
        r.register("x", Permission::ReadWrite, h);
        assert!(r.validate().is_ok());
        assert_eq!(r.get(b"x").unwrap().permission(), Permission::ReadWrite);
        assert_eq!(r.names().collect::<Vec<_>>(), ["x"]);
    }

    #[tokio::test]
    async fn responder_cuts_pieces_and_marks_the_last() {
        let (tx, mut rx) = mpsc::channel(16);
        let out = Responder::new(RequestId(1), 0, tx, 4, None);
        out.finish(Bytes::from_static(b"abcdefghij")).await.unwrap();
        let mut got = Vec::new();
        while let Ok(Report::Data { data, eos, .. }) = rx.try_recv() {
            got.push((data, eos));
        }
        assert_eq!(
            got,
            [
                (Bytes::from("abcd"), false),
                (Bytes::from("efgh"), false),
                (Bytes::from("ij"), true)
            ]
        );
    }

    #[tokio::test]
    async fn responder_cuts_large_writes_in_large_pieces() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut out = Responder::new(RequestId(1), 0, tx, 2, Some(4));
        out.write(Bytes::from_static(b"abcdefghij")).await.unwrap();
        out.finish(Bytes::from_static(b"xyz")).await.unwrap();
        let mut got = Vec::new();
        while let Ok(Report::Data { data, .. }) = rx.try_recv() {
            got.push(data);
        }
        // Large while at least a large piece is left, then small.
        assert_eq!(got, ["abcd", "efgh", "ij", "xy", "z"]);
    }

    fn drain_progress(rx: &mut mpsc::Receiver<Report>) -> Vec<u64> {
        let mut got = Vec::new();
        while let Ok(Report::Progress { progress, .. }) = rx.try_recv() {
            got.push(progress.position);
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn progress_is_rate_limited_on_the_engine_clock() {
        let (tx, mut rx) = mpsc::channel(2048);
        let mut out = Responder::new(RequestId(1), 0, tx, 4, None)
            .with_progress(ProgressGate::new(Duration::from_secs(1)));
        // A thousand reports at the same instant: the first goes, and the last, which
        // reaches the total.
        for i in 0..=1000u64 {
            let _ = out.progress("cat", i, 1000).await.unwrap();
        }
        assert_eq!(drain_progress(&mut rx), [0, 1000]);
        // One per interval as time passes.
        let mut out = Responder::new(RequestId(1), 0, out.tx.clone(), 4, None)
            .with_progress(ProgressGate::new(Duration::from_secs(1)));
        for i in 0..50u64 {
            let _ = out.progress("cat", i, 0).await.unwrap();
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert_eq!(drain_progress(&mut rx), [0, 10, 20, 30, 40]);
    }

    #[tokio::test]
    async fn progress_is_silent_unless_negotiated_and_bounded() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut out = Responder::new(RequestId(1), 0, tx.clone(), 4, None);
        assert!(!out.progress("cat", 1, 2).await.unwrap());
        assert!(rx.try_recv().is_err());
        let mut out = Responder::new(RequestId(1), 0, tx, 4, None)
            .with_progress(ProgressGate::new(Duration::from_secs(1)));
        assert!(out.progress(&"é".repeat(200), 9, 5).await.unwrap());
        let Ok(Report::Progress { progress, .. }) = rx.try_recv() else {
            panic!("no report");
        };
        assert_eq!(progress.topic.len(), 254);
        assert_eq!((progress.position, progress.total), (5, 5));
        assert!(progress.encode().is_ok());
    }

    #[tokio::test]
    async fn data_reader_reports_truncation_and_limits() {
        let (tx, rx) = mpsc::channel(4);
        let mut r = DataReader::pieces(rx);
        tx.send((Bytes::from("ab"), false)).await.unwrap();
        drop(tx);
        assert_eq!(r.chunk().await.unwrap(), Some(Bytes::from("ab")));
        assert!(r.chunk().await.is_err());

        let (tx, rx) = mpsc::channel(4);
        let mut r = DataReader::pieces(rx);
        tx.send((Bytes::from("ab"), false)).await.unwrap();
        tx.send((Bytes::from("cd"), true)).await.unwrap();
        assert_eq!(r.read_to_end(4).await.unwrap(), Bytes::from("abcd"));

        let mut r = DataReader::whole(Bytes::from("abcde"));
        assert!(r.read_to_end(4).await.is_err());
    }
}
