//! Settings of the exchange engine. Every limit has a safe default, and each setter says
//! what it bounds. Setters take and return `&mut Self` so they chain; [`EngineConfig::validate`]
//! refuses a setting that cannot work, naming it.

use std::sync::Arc;
use std::time::Duration;

use crate::stats::ExchangeStats;

/// Called with the counters of each exchange when it ends.
pub type ExchangeObserver = Arc<dyn Fn(&ExchangeStats) + Send + Sync>;

/// Settings of a server's exchanges, on every transport (HTTP adds its own around these).
///
/// Work is admitted by what it costs, each resource with a limit of its own:
///
/// | resource | per exchange | server-wide |
/// |---|---|---|
/// | handlers running (CPU, their memory) | [`Self::max_handlers`] | [`Self::max_server_handlers`] |
/// | output held for the client (bytes) | [`Self::max_held_output`] | [`Self::memory_budget`] |
/// | commands waiting to run (their arguments and data, bytes) | [`Self::max_waiting_bytes`] | [`Self::memory_budget`] |
/// | blocking work (file I/O, compression) | | [`Self::blocking_threads`] |
///
/// At a limit a legal exchange waits rather than fails (see `docs/ARCHITECTURE.md`).
///
/// ```
/// use std::time::Duration;
/// use hgframe_engine::EngineConfig;
/// let mut config = EngineConfig::default();
/// config
///     .set_encodings(&["zstd-8mb", "identity"])
///     .set_max_connections(64)
///     .set_idle_timeout(Some(Duration::from_secs(30)));
/// config.reactor_mut().set_level(19);
/// assert_eq!(config.max_connections(), 64);
/// assert!(config.validate().is_ok());
/// config.reactor_mut().set_level(50);
/// assert_eq!(config.validate().unwrap_err().setting(), "level");
/// ```
#[derive(Clone)]
pub struct EngineConfig {
    reactor: hgframe_reactor::ServerConfig,
    report_queue: usize,
    data_queue: usize,
    body_queue: usize,
    transmit_chunk: usize,
    response_piece: usize,
    parallel_streams: usize,
    parallel_piece: usize,
    idle_timeout: Option<Duration>,
    connection_idle_timeout: Option<Duration>,
    first_command_timeout: Option<Duration>,
    min_input_rate: Option<u64>,
    rate_window: Duration,
    max_connections: usize,
    shutdown_grace: Option<Duration>,
    max_handlers: usize,
    max_server_handlers: usize,
    max_held_output: usize,
    max_waiting_bytes: usize,
    memory_budget: usize,
    blocking_threads: usize,
    progress_interval: Duration,
    observer: Option<ExchangeObserver>,
    profiles: hgframe_stream::Profiles,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            reactor: engine_reactor(),
            report_queue: 16,
            data_queue: 8,
            body_queue: 4,
            transmit_chunk: 64 << 10,
            response_piece: 64 << 10,
            parallel_streams: default_parallel_streams(),
            parallel_piece: 256 << 10,
            idle_timeout: Some(Duration::from_secs(60)),
            connection_idle_timeout: Some(Duration::from_secs(300)),
            first_command_timeout: Some(Duration::from_secs(10)),
            min_input_rate: Some(256),
            rate_window: Duration::from_secs(20),
            max_connections: 1024,
            shutdown_grace: Some(Duration::from_secs(30)),
            max_handlers: 32,
            max_server_handlers: 512,
            max_held_output: 8 << 20,
            max_waiting_bytes: 32 << 20,
            memory_budget: 1 << 30,
            blocking_threads: default_blocking_threads(),
            progress_interval: Duration::from_secs(1),
            observer: None,
            profiles: hgframe_stream::Profiles::default(),
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("reactor", &self.reactor)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl EngineConfig {
    /// The reactor's limits (commands, arguments, buffered data, frame sizes) and its
    /// output encoding. The transport sets the data mode, output deferral and what the
    /// client accepts per exchange; everything else is used as given.
    pub fn reactor(&self) -> &hgframe_reactor::ServerConfig {
        &self.reactor
    }

    /// The reactor's settings, to change.
    pub fn reactor_mut(&mut self) -> &mut hgframe_reactor::ServerConfig {
        &mut self.reactor
    }

    /// The server's content-encoding preference, best first (a profile the client does
    /// not accept is skipped; `identity` is the fallback).
    pub fn encodings(&self) -> &[String] {
        self.reactor.encodings()
    }

    /// The content-encoding profiles every exchange and connection uses (each reactor
    /// takes a clone), default [`hgframe_stream::Profiles::default`]: `zstd-8mb`, whose
    /// contexts come from the process-wide pool and are reused from one exchange to the
    /// next, then `identity`.
    pub fn profiles(&self) -> &hgframe_stream::Profiles {
        &self.profiles
    }

    /// Sets [`Self::profiles`] (for instance a `zstd-8mb` on a pool of its own,
    /// `hgframe_stream::encoding::Zstd8Mb::with_pool`).
    pub fn set_profiles(&mut self, profiles: hgframe_stream::Profiles) -> &mut Self {
        self.profiles = profiles;
        self
    }

    /// Sets [`Self::encodings`].
    pub fn set_encodings<S: AsRef<str>>(&mut self, ours: &[S]) -> &mut Self {
        self.reactor.set_encodings(ours);
        self
    }

    /// Handler reports (response pieces, text output, completions) queued per exchange,
    /// default 16. With [`Self::response_piece`] this bounds what handlers can queue
    /// ahead of a slow client: `report_queue * response_piece` bytes.
    pub fn report_queue(&self) -> usize {
        self.report_queue
    }

    /// Sets [`Self::report_queue`] (at least 1, checked by [`Self::validate`]).
    pub fn set_report_queue(&mut self, n: usize) -> &mut Self {
        self.report_queue = n;
        self
    }

    /// Pieces of command data queued per streaming command, default 8 (each at most one
    /// frame). When full, the exchange stops reading the request.
    pub fn data_queue(&self) -> usize {
        self.data_queue
    }

    /// Sets [`Self::data_queue`] (at least 1, checked by [`Self::validate`]).
    pub fn set_data_queue(&mut self, n: usize) -> &mut Self {
        self.data_queue = n;
        self
    }

    /// Chunks of encoded output queued between the exchange and the connection, default
    /// 4. Bounds, with [`Self::transmit_chunk`], what a slow reader makes the server
    /// hold: `body_queue * transmit_chunk` bytes.
    pub fn body_queue(&self) -> usize {
        self.body_queue
    }

    /// Sets [`Self::body_queue`] (at least 1, checked by [`Self::validate`]).
    pub fn set_body_queue(&mut self, n: usize) -> &mut Self {
        self.body_queue = n;
        self
    }

    /// Bytes of frames pulled from the reactor per output chunk, default 64 KiB.
    pub fn transmit_chunk(&self) -> usize {
        self.transmit_chunk
    }

    /// Sets [`Self::transmit_chunk`] (at least 1024, checked by [`Self::validate`]).
    pub fn set_transmit_chunk(&mut self, bytes: usize) -> &mut Self {
        self.transmit_chunk = bytes;
        self
    }

    /// Largest piece a [`crate::Responder`] hands to the exchange at once, default 64
    /// KiB; larger writes are cut (without copying). The exchange takes at most four
    /// pieces ahead of what the connection has taken, so this also bounds the work
    /// (compression) done for a client that reads slowly or leaves.
    pub fn response_piece(&self) -> usize {
        self.response_piece
    }

    /// Sets [`Self::response_piece`] (at least 1, checked by [`Self::validate`]).
    pub fn set_response_piece(&mut self, bytes: usize) -> &mut Self {
        self.response_piece = bytes;
        self
    }

    /// Streams an exchange compresses large responses on at once, default the number of
    /// CPUs up to 3; 1 keeps all compression on the exchange's own task. The server
    /// starts this many compressor threads (on first use), shared by its exchanges; a
    /// stream's pieces always run on the same one, so its context stays in one core's
    /// caches (on 2 cores, moving it with every piece cost 24% more CPU). Only with a content encoding (identity has nothing to
    /// compute). Each is a server stream of its own on the wire, besides the exchange's
    /// own, and the client decodes each with a context of its own: its
    /// `max_decoding_streams` (default 4) must allow one more than this.
    pub fn parallel_streams(&self) -> usize {
        self.parallel_streams
    }

    /// Sets [`Self::parallel_streams`] (1 to 64, checked by [`Self::validate`]).
    pub fn set_parallel_streams(&mut self, n: usize) -> &mut Self {
        self.parallel_streams = n;
        self
    }

    /// Response data written in one go from this size on is cut into pieces of this
    /// size, each compressed by a worker ([`Self::parallel_streams`]), default 256 KiB
    /// (what `cat` reads at once; a worker's start costs microseconds, a piece's
    /// compression about a millisecond). Smaller writes are compressed on the
    /// exchange's task. With the number of streams, this bounds the work done ahead of
    /// the client: two pieces per stream (one compressing, the next queued behind it on
    /// the same thread), compressing or compressed and waiting for their turn, all
    /// charged to the memory budget while they are.
    pub fn parallel_piece(&self) -> usize {
        self.parallel_piece
    }

    /// Sets [`Self::parallel_piece`] (at least 64 KiB, checked by [`Self::validate`]).
    pub fn set_parallel_piece(&mut self, bytes: usize) -> &mut Self {
        self.parallel_piece = bytes;
        self
    }

    /// How long an exchange may wait on its peer without progress before it is
    /// aborted, default 60 s; `None` waits forever. The clock runs while the peer owes
    /// input (the rest of an HTTP request, or of a command started on a byte stream) or
    /// output waits for it to read (a stalled reader), and restarts only when the peer
    /// makes progress (a frame arrives, output is taken): handlers at work do not keep a
    /// stalled exchange alive. The exchange runs on its own task, so the clock runs
    /// whatever the transport polls.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Sets [`Self::idle_timeout`].
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a byte-stream connection may stay with nothing under way (no command
    /// arriving, running or answering) before the server closes it, default 5 minutes;
    /// `None` keeps it open. It is closed as when the client half-closes.
    pub fn connection_idle_timeout(&self) -> Option<Duration> {
        self.connection_idle_timeout
    }

    /// Sets [`Self::connection_idle_timeout`].
    pub fn set_connection_idle_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.connection_idle_timeout = timeout;
        self
    }

    /// How long a new byte-stream connection may take to send its first command
    /// (usually `hello`), default 10 s; `None` waits as long as
    /// [`Self::connection_idle_timeout`]. A connection that sends nothing holds a slot
    /// of [`Self::max_connections`] only this long.
    pub fn first_command_timeout(&self) -> Option<Duration> {
        self.first_command_timeout
    }

    /// Sets [`Self::first_command_timeout`].
    pub fn set_first_command_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.first_command_timeout = timeout;
        self
    }

    /// The slowest a peer may send what it owes, in bytes per second averaged over
    /// [`Self::rate_window`], default 256; `None` allows any rate. A client that drips a
    /// frame now and then never trips [`Self::idle_timeout`], but loses its exchange
    /// (and its slot) here. Only measured while the peer owes input for a whole window.
    pub fn min_input_rate(&self) -> Option<u64> {
        self.min_input_rate
    }

    /// Sets [`Self::min_input_rate`].
    pub fn set_min_input_rate(&mut self, bytes_per_second: Option<u64>) -> &mut Self {
        self.min_input_rate = bytes_per_second;
        self
    }

    /// The window over which [`Self::min_input_rate`] is measured, default 20 s.
    pub fn rate_window(&self) -> Duration {
        self.rate_window
    }

    /// Sets [`Self::rate_window`] (more than zero).
    pub fn set_rate_window(&mut self, window: Duration) -> &mut Self {
        self.rate_window = window;
        self
    }

    /// Connections served at once by [`crate::bytestream::serve_tcp`] and the HTTP server, default 1024; more wait in the
    /// listen backlog until one closes.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Sets [`Self::max_connections`] (at least 1, checked by [`Self::validate`]).
    pub fn set_max_connections(&mut self, n: usize) -> &mut Self {
        self.max_connections = n;
        self
    }

    /// How long a graceful shutdown waits for responses in flight before it drops the
    /// connections, default 30 s; `None` waits as long as they take.
    pub fn shutdown_grace(&self) -> Option<Duration> {
        self.shutdown_grace
    }

    /// Sets [`Self::shutdown_grace`].
    pub fn set_shutdown_grace(&mut self, grace: Option<Duration>) -> &mut Self {
        self.shutdown_grace = grace;
        self
    }

    /// Called with the counters of every exchange when it ends (they are also logged
    /// with `tracing` at debug level).
    pub fn set_observer(
        &mut self,
        observer: impl Fn(&ExchangeStats) + Send + Sync + 'static,
    ) -> &mut Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    pub(crate) fn observer(&self) -> Option<&ExchangeObserver> {
        self.observer.as_ref()
    }

    /// Handlers one exchange runs at once, default 32. The commands after them wait,
    /// costing only their bookkeeping, and start as earlier ones end: a `multirequest` of
    /// any size runs with this many handlers at most.
    pub fn max_handlers(&self) -> usize {
        self.max_handlers
    }

    /// Sets [`Self::max_handlers`] (at least 1).
    pub fn set_max_handlers(&mut self, n: usize) -> &mut Self {
        self.max_handlers = n;
        self
    }

    /// Handlers the whole server runs at once, across exchanges and connections, default
    /// 512. An exchange whose next command finds none free waits for one.
    pub fn max_server_handlers(&self) -> usize {
        self.max_server_handlers
    }

    /// Sets [`Self::max_server_handlers`] (at least 1).
    pub fn set_max_server_handlers(&mut self, n: usize) -> &mut Self {
        self.max_server_handlers = n;
        self
    }

    /// Bytes of finished output one exchange holds for its client, default 8 MiB: when
    /// the client reads slowly, or, on a half-duplex exchange, until its request ends.
    /// At the limit, handlers wait (their writes pause) and no new handler starts. A
    /// single response that cannot fit in a half-duplex exchange fails alone, with an
    /// error that says to use HTTP/2 or the byte stream.
    pub fn max_held_output(&self) -> usize {
        self.max_held_output
    }

    /// Sets [`Self::max_held_output`] (at least [`Self::transmit_chunk`]).
    pub fn set_max_held_output(&mut self, bytes: usize) -> &mut Self {
        self.max_held_output = bytes;
        self
    }

    /// Bytes of commands one exchange holds while they wait for a handler (their names,
    /// arguments, data that arrived for them, and 512 bytes of bookkeeping each), default 32
    /// MiB: a half-duplex `multirequest` of 30,000 small commands fits. At the limit a full-duplex exchange
    /// stops reading (TCP and HTTP/2 flow control push back on the client); a half-duplex
    /// one, which cannot wait for a client that is still sending, refuses the next
    /// command alone with an application error.
    pub fn max_waiting_bytes(&self) -> usize {
        self.max_waiting_bytes
    }

    /// Sets [`Self::max_waiting_bytes`] (at least 1).
    pub fn set_max_waiting_bytes(&mut self, bytes: usize) -> &mut Self {
        self.max_waiting_bytes = bytes;
        self
    }

    /// Bytes the whole server holds for all exchanges together, default 1 GiB: commands
    /// waiting to run and output held for clients. Charged before the memory is kept; an
    /// exchange that finds the budget spent waits as at its own limit. With the
    /// per-connection limits, the worst case without it would be `max_connections *
    /// (max_held_output + max_waiting_bytes + reactor.max_buffered_data)`.
    pub fn memory_budget(&self) -> usize {
        self.memory_budget
    }

    /// Sets [`Self::memory_budget`] (at least [`Self::max_held_output`]).
    pub fn set_memory_budget(&mut self, bytes: usize) -> &mut Self {
        self.memory_budget = bytes;
        self
    }

    /// Threads of the server's own pool for blocking work (file reads of `cat`, large
    /// compression pieces), default twice the CPUs, from 2 to 16. Work beyond waits for a
    /// thread; the pool never grows.
    pub fn blocking_threads(&self) -> usize {
        self.blocking_threads
    }

    /// Sets [`Self::blocking_threads`] (at least 1).
    pub fn set_blocking_threads(&mut self, n: usize) -> &mut Self {
        self.blocking_threads = n;
        self
    }

    /// The least time between two progress reports of one request
    /// ([`crate::Responder::progress`]), default 1 s. Reports closer than this to the
    /// last one sent are dropped (the one that reaches the total always goes), so a
    /// handler may report as often as it likes at no cost to the client. Between
    /// [`MIN_PROGRESS_INTERVAL`] and [`MAX_PROGRESS_INTERVAL`]; a report now and then
    /// also keeps proxies that cut quiet connections from cutting a long request.
    pub fn progress_interval(&self) -> Duration {
        self.progress_interval
    }

    /// Sets [`Self::progress_interval`] (checked by [`Self::validate`]).
    pub fn set_progress_interval(&mut self, interval: Duration) -> &mut Self {
        self.progress_interval = interval;
        self
    }

    /// Checks every setting; the first that cannot work is named in the error. Servers
    /// call it before they start, so a bad level or limit is refused at once rather than
    /// failing each exchange.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at_least = |setting: &'static str, value: usize, min: usize| {
            if value < min {
                Err(ConfigError::new(
                    setting,
                    format!("is {value}, must be at least {min}"),
                ))
            } else {
                Ok(())
            }
        };
        at_least("report_queue", self.report_queue, 1)?;
        at_least("data_queue", self.data_queue, 1)?;
        at_least("body_queue", self.body_queue, 1)?;
        at_least("transmit_chunk", self.transmit_chunk, 1024)?;
        at_least("response_piece", self.response_piece, 1)?;
        at_least("parallel_streams", self.parallel_streams, 1)?;
        if self.parallel_streams > 64 {
            return Err(ConfigError::new(
                "parallel_streams",
                format!("is {}, must be at most 64", self.parallel_streams),
            ));
        }
        at_least("parallel_piece", self.parallel_piece, 64 << 10)?;
        at_least("max_connections", self.max_connections, 1)?;
        at_least("max_handlers", self.max_handlers, 1)?;
        at_least("max_server_handlers", self.max_server_handlers, 1)?;
        at_least("max_held_output", self.max_held_output, self.transmit_chunk)?;
        at_least("max_waiting_bytes", self.max_waiting_bytes, 1)?;
        at_least("memory_budget", self.memory_budget, self.max_held_output)?;
        at_least("blocking_threads", self.blocking_threads, 1)?;
        if !(MIN_PROGRESS_INTERVAL..=MAX_PROGRESS_INTERVAL).contains(&self.progress_interval) {
            return Err(ConfigError::new(
                "progress_interval",
                format!(
                    "is {:?}, must be between {MIN_PROGRESS_INTERVAL:?} and {MAX_PROGRESS_INTERVAL:?}",
                    self.progress_interval
                ),
            ));
        }
        if self.rate_window.is_zero() {
            return Err(ConfigError::new("rate_window", "must be more than zero"));
        }
        if self.min_input_rate == Some(0) {
            return Err(ConfigError::new(
                "min_input_rate",
                "must be more than zero (None disables it)",
            ));
        }
        for (setting, timeout) in [
            ("idle_timeout", self.idle_timeout),
            ("connection_idle_timeout", self.connection_idle_timeout),
            ("first_command_timeout", self.first_command_timeout),
            ("shutdown_grace", self.shutdown_grace),
        ] {
            if timeout == Some(Duration::ZERO) {
                return Err(ConfigError::new(
                    setting,
                    "must be more than zero (None disables it)",
                ));
            }
        }
        validate_reactor(&self.reactor, &self.profiles)
    }
}

/// The least [`EngineConfig::progress_interval`]: more often than this, reports would
/// cost the client more than they tell.
pub const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(10);

/// The most [`EngineConfig::progress_interval`]: a report now and then is what keeps
/// an idle-cutting proxy away, and proxies commonly cut after a minute.
pub const MAX_PROGRESS_INTERVAL: Duration = Duration::from_secs(30);

/// The reactor's settings that can be wrong: limits of zero, and encodings this build
/// lacks or cannot use at the configured level (each is tried once, as an exchange
/// would).
fn validate_reactor(
    reactor: &hgframe_reactor::ServerConfig,
    profiles: &hgframe_stream::Profiles,
) -> Result<(), ConfigError> {
    for (setting, value) in [
        ("max_receiving_commands", reactor.max_receiving_commands()),
        ("max_active_requests", reactor.max_active_requests()),
        ("max_args_per_command", reactor.max_args_per_command()),
        ("max_arg_len", reactor.max_arg_len()),
        ("max_buffered_data", reactor.max_buffered_data()),
        ("max_frame_payload", reactor.max_frame_payload()),
        ("max_decoded_frame_len", reactor.max_decoded_frame_len()),
        ("max_decoding_streams", reactor.max_decoding_streams()),
        (
            "max_expansion_ratio",
            reactor
                .max_expansion_ratio()
                .try_into()
                .unwrap_or(usize::MAX),
        ),
        ("max_frame_size", reactor.max_frame_size()),
    ] {
        if value == 0 {
            return Err(ConfigError::new(setting, "is 0, must be at least 1"));
        }
    }
    for name in reactor.encodings() {
        let Some(profile) = profiles.get(name) else {
            return Err(ConfigError::new(
                "encodings",
                format!(
                    "`{name}` is not a content encoding of this build (it has: {})",
                    profiles.accept_list()
                ),
            ));
        };
        let settings =
            hgframe_stream::EncodingSettings::new(name.as_str()).with_level(reactor.level());
        if let Err(e) = profile.encoder(&settings) {
            return Err(ConfigError::new(
                "level",
                format!("{} for `{name}`: {e}", reactor.level()),
            ));
        }
    }
    Ok(())
}

/// A setting that cannot work: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    setting: &'static str,
    reason: String,
}

impl ConfigError {
    /// The setting `setting` cannot work, because `reason`.
    pub fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        Self {
            setting,
            reason: reason.into(),
        }
    }

    /// The setting's name (as its setter, without `set_`).
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// Why it cannot work.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The reactor's defaults, but for the count of active requests: the engine admits work
/// by its cost (handlers, bytes, each request's bookkeeping charged to the memory budget),
/// so the count allows every request id a client can have open at once, which a
/// half-duplex `multirequest` needs (its requests stay active until its output flows).
fn engine_reactor() -> hgframe_reactor::ServerConfig {
    let mut reactor = hgframe_reactor::ServerConfig::default();
    reactor.set_max_active_requests(1 << 16);
    reactor
}

/// The number of CPUs, up to 3: with the exchange's own stream that is 4 streams to
/// decode, what a client allows by default.
fn default_parallel_streams() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(3))
}

/// Twice the CPUs, from 2 to 16: blocking work is mostly waiting on disks.
fn default_blocking_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| (2 * n.get()).clamp(2, 16))
}
