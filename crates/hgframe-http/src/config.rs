//! Settings of the server and of the clients. Every limit has a safe default, and each
//! setter says what it bounds. Setters take and return `&mut Self` so they chain.

use std::sync::Arc;
use std::time::Duration;

use crate::stats::ExchangeStats;

/// The URL prefix of PROTOCOL.md.
pub const DEFAULT_PREFIX: &str = "/api/exp-http-v2-0001";
/// The media type of PROTOCOL.md, in `Accept` and `Content-Type`.
pub const MEDIA_TYPE: &str = "application/mercurial-exp-framing-0002";
/// The request header in which a client lists the content encodings it accepts.
pub const ENCODINGS_HEADER: &str = "hgframe-encodings";

/// Whether the server may answer before the request has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Duplex {
    /// Full duplex over HTTP/2 (h2c included), half duplex over HTTP/1.x.
    #[default]
    Auto,
    /// Always hold the response until the request body has ended (the seed's deferred
    /// output); command data then reaches handlers whole.
    Half,
    /// Always answer as soon as there is something to say; command data reaches
    /// handlers as it arrives. Only for clients that read while they send.
    Full,
}

/// Called with the counters of each exchange when it ends.
pub type ExchangeObserver = Arc<dyn Fn(&ExchangeStats) + Send + Sync>;

/// Settings of a server: the HTTP service, [`crate::serve`], and the byte-stream
/// transport ([`crate::bytestream`]).
///
/// ```
/// use std::time::Duration;
/// use hgframe_http::ServerConfig;
/// let mut config = ServerConfig::default();
/// config
///     .set_encodings(&["zstd-8mb", "identity"])
///     .set_max_connections(64)
///     .set_idle_timeout(Some(Duration::from_secs(30)));
/// config.reactor_mut().set_max_active_requests(64);
/// assert_eq!(config.max_connections(), 64);
/// ```
#[derive(Clone)]
pub struct ServerConfig {
    prefix: String,
    media_type: String,
    debugreflect: bool,
    reflect_limit: usize,
    duplex: Duplex,
    reactor: hgframe_reactor::ServerConfig,
    report_queue: usize,
    data_queue: usize,
    body_queue: usize,
    transmit_chunk: usize,
    response_piece: usize,
    parallel_streams: usize,
    parallel_piece: usize,
    idle_timeout: Option<Duration>,
    header_read_timeout: Option<Duration>,
    max_connections: usize,
    shutdown_grace: Option<Duration>,
    observer: Option<ExchangeObserver>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            media_type: MEDIA_TYPE.to_owned(),
            debugreflect: false,
            reflect_limit: 1 << 20,
            duplex: Duplex::Auto,
            reactor: hgframe_reactor::ServerConfig::default(),
            report_queue: 16,
            data_queue: 8,
            body_queue: 4,
            transmit_chunk: 64 << 10,
            response_piece: 64 << 10,
            parallel_streams: default_parallel_streams(),
            parallel_piece: 256 << 10,
            idle_timeout: Some(Duration::from_secs(60)),
            header_read_timeout: Some(Duration::from_secs(30)),
            max_connections: 1024,
            shutdown_grace: Some(Duration::from_secs(30)),
            observer: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("prefix", &self.prefix)
            .field("media_type", &self.media_type)
            .field("debugreflect", &self.debugreflect)
            .field("duplex", &self.duplex)
            .field("reactor", &self.reactor)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// The URL prefix, default [`DEFAULT_PREFIX`].
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Sets [`Self::prefix`] (a leading `/` is added if missing).
    pub fn set_prefix(&mut self, prefix: &str) -> &mut Self {
        let prefix = prefix.trim_end_matches('/');
        self.prefix = if prefix.starts_with('/') {
            prefix.to_owned()
        } else {
            format!("/{prefix}")
        };
        self
    }

    /// The media type required in `Accept` and `Content-Type`, default [`MEDIA_TYPE`].
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// Sets [`Self::media_type`].
    pub fn set_media_type(&mut self, media_type: &str) -> &mut Self {
        self.media_type = media_type.to_owned();
        self
    }

    /// Whether `debugreflect` answers (default false: reflection endpoints have a
    /// history of disclosing what they should not).
    pub fn debugreflect(&self) -> bool {
        self.debugreflect
    }

    /// Sets [`Self::debugreflect`].
    pub fn set_debugreflect(&mut self, enabled: bool) -> &mut Self {
        self.debugreflect = enabled;
        self
    }

    /// Bytes of request body `debugreflect` reads, and of the report it writes, default
    /// 1 MiB. It buffers its report, so this bounds its memory.
    pub fn reflect_limit(&self) -> usize {
        self.reflect_limit
    }

    /// Sets [`Self::reflect_limit`].
    pub fn set_reflect_limit(&mut self, bytes: usize) -> &mut Self {
        self.reflect_limit = bytes;
        self
    }

    /// When the server may answer before the request ends, default [`Duplex::Auto`].
    pub fn duplex(&self) -> Duplex {
        self.duplex
    }

    /// Sets [`Self::duplex`].
    pub fn set_duplex(&mut self, duplex: Duplex) -> &mut Self {
        self.duplex = duplex;
        self
    }

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

    /// Sets [`Self::report_queue`] (at least 1).
    pub fn set_report_queue(&mut self, n: usize) -> &mut Self {
        self.report_queue = n.max(1);
        self
    }

    /// Pieces of command data queued per streaming command, default 8 (each at most one
    /// frame). When full, the exchange stops reading the request.
    pub fn data_queue(&self) -> usize {
        self.data_queue
    }

    /// Sets [`Self::data_queue`] (at least 1).
    pub fn set_data_queue(&mut self, n: usize) -> &mut Self {
        self.data_queue = n.max(1);
        self
    }

    /// Chunks of encoded output queued between the exchange and the connection, default
    /// 4. Bounds, with [`Self::transmit_chunk`], what a slow reader makes the server
    /// hold: `body_queue * transmit_chunk` bytes.
    pub fn body_queue(&self) -> usize {
        self.body_queue
    }

    /// Sets [`Self::body_queue`] (at least 1).
    pub fn set_body_queue(&mut self, n: usize) -> &mut Self {
        self.body_queue = n.max(1);
        self
    }

    /// Bytes of frames pulled from the reactor per output chunk, default 64 KiB.
    pub fn transmit_chunk(&self) -> usize {
        self.transmit_chunk
    }

    /// Sets [`Self::transmit_chunk`] (at least 1024).
    pub fn set_transmit_chunk(&mut self, bytes: usize) -> &mut Self {
        self.transmit_chunk = bytes.max(1024);
        self
    }

    /// Largest piece a [`crate::Responder`] hands to the exchange at once, default 64
    /// KiB; larger writes are cut (without copying). The exchange takes at most four
    /// pieces ahead of what the connection has taken, so this also bounds the work
    /// (compression) done for a client that reads slowly or leaves.
    pub fn response_piece(&self) -> usize {
        self.response_piece
    }

    /// Sets [`Self::response_piece`] (at least 1).
    pub fn set_response_piece(&mut self, bytes: usize) -> &mut Self {
        self.response_piece = bytes.max(1);
        self
    }

    /// Streams an exchange compresses large responses on at once, each on a blocking
    /// worker thread, default the number of CPUs up to 3; 1 keeps all compression on
    /// the exchange's own task. Only with a content encoding (identity has nothing to
    /// compute). Each is a server stream of its own on the wire, besides the exchange's
    /// own, and the client decodes each with a context of its own: its
    /// `max_decoding_streams` (default 4) must allow one more than this.
    pub fn parallel_streams(&self) -> usize {
        self.parallel_streams
    }

    /// Sets [`Self::parallel_streams`] (at least 1, at most 64).
    pub fn set_parallel_streams(&mut self, n: usize) -> &mut Self {
        self.parallel_streams = n.clamp(1, 64);
        self
    }

    /// Response data written in one go from this size on is cut into pieces of this
    /// size, each compressed by a worker ([`Self::parallel_streams`]), default 256 KiB
    /// (what `cat` reads at once; a worker's start costs microseconds, a piece's
    /// compression about a millisecond). Smaller writes are compressed on the
    /// exchange's task. With the number of
    /// streams, this bounds the work done ahead of the client: one piece per stream,
    /// compressing or compressed and waiting for its turn.
    pub fn parallel_piece(&self) -> usize {
        self.parallel_piece
    }

    /// Sets [`Self::parallel_piece`] (at least 64 KiB).
    pub fn set_parallel_piece(&mut self, bytes: usize) -> &mut Self {
        self.parallel_piece = bytes.max(64 << 10);
        self
    }

    /// How long an exchange may wait on its peer without progress before it is
    /// aborted, default 60 s; `None` waits forever. The clock runs while the peer owes
    /// input (the rest of an HTTP request, or of a command started on a byte stream) or
    /// output waits for it to read, and restarts whenever anything moves. This is what
    /// stops a client that trickles its request or stops reading its response from
    /// holding a handler and its memory; a byte stream with nothing under way may stay
    /// idle, and a handler may take its time.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Sets [`Self::idle_timeout`].
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long an HTTP/1 client may take to send a request's headers, including the
    /// wait for the next request on a kept-alive connection, default 30 s.
    pub fn header_read_timeout(&self) -> Option<Duration> {
        self.header_read_timeout
    }

    /// Sets [`Self::header_read_timeout`].
    pub fn set_header_read_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Connections served at once by [`crate::serve`], default 1024; more wait in the
    /// listen backlog until one closes.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Sets [`Self::max_connections`] (at least 1).
    pub fn set_max_connections(&mut self, n: usize) -> &mut Self {
        self.max_connections = n.max(1);
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
}

/// The number of CPUs, up to 3: with the exchange's own stream that is 4 streams to
/// decode, what a client allows by default.
fn default_parallel_streams() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(3))
}
