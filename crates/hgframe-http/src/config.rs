//! Settings of the server and of the clients. Every limit has a safe default, and each
//! setter says what it bounds. Setters take and return `&mut Self` so they chain.

use std::time::Duration;

use hgframe_engine::{ConfigError, Duplex, EngineConfig, DEFAULT_PREFIX, MEDIA_TYPE};

/// The request header in which a client lists the content encodings it accepts.
pub const ENCODINGS_HEADER: &str = "hgframe-encodings";

/// The response header in which a server lists the content encodings it decodes, so
/// that a client may encode its next requests with one of them (the protocol lets a
/// sender use any profile its peer supports; only the peer can say which).
pub const DECODES_HEADER: &str = "hgframe-decodes";

/// The header of the extensions (docs/protocol.md, "Extensions"): in a request, those
/// the client offers (`HgFrame-Extensions: cancel, progress`); in a response, those the
/// server accepted, of the offered ones (sent only in answer to an offer, so a client
/// of the seed's protocol sees no difference).
pub const EXTENSIONS_HEADER: &str = "hgframe-extensions";

/// Settings of the HTTP server: what HTTP adds (URL prefix, media type, duplex,
/// connection timers, `debugreflect`) to the exchange engine's own settings
/// ([`ServerConfig::engine`]: limits, queues, timeouts, connections).
///
/// ```
/// use std::time::Duration;
/// use hgframe_http::ServerConfig;
/// let mut config = ServerConfig::default();
/// config.set_prefix("/hg").set_header_read_timeout(Some(Duration::from_secs(10)));
/// config
///     .engine_mut()
///     .set_encodings(&["zstd-8mb", "identity"])
///     .set_max_connections(64)
///     .set_idle_timeout(Some(Duration::from_secs(30)));
/// assert_eq!(config.engine().max_connections(), 64);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct ServerConfig {
    prefix: String,
    media_type: String,
    debugreflect: bool,
    reflect_limit: usize,
    duplex: Duplex,
    header_read_timeout: Option<Duration>,
    detect_timeout: Option<Duration>,
    connection_idle_timeout: Option<Duration>,
    http2_keep_alive_interval: Option<Duration>,
    http2_keep_alive_timeout: Duration,
    evict_idle_at_limit: bool,
    engine: EngineConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            media_type: MEDIA_TYPE.to_owned(),
            debugreflect: false,
            reflect_limit: 1 << 20,
            duplex: Duplex::Auto,
            header_read_timeout: Some(Duration::from_secs(30)),
            detect_timeout: Some(Duration::from_secs(10)),
            connection_idle_timeout: Some(Duration::from_secs(60)),
            http2_keep_alive_interval: Some(Duration::from_secs(20)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            evict_idle_at_limit: true,
            engine: EngineConfig::default(),
        }
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

    /// The exchange engine's settings (limits, queues, timeouts, connections), shared by
    /// every transport.
    pub fn engine(&self) -> &EngineConfig {
        &self.engine
    }

    /// The exchange engine's settings, to change.
    pub fn engine_mut(&mut self) -> &mut EngineConfig {
        &mut self.engine
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

    /// How long a new connection may stay silent before its first byte, default 10 s;
    /// then it is closed. This bounds how long a peer that connects and sends nothing
    /// holds one of the [`EngineConfig::max_connections`] slots (hyper waits for the
    /// bytes that tell the HTTP version as long as they take, and
    /// [`Self::header_read_timeout`] only starts once it knows them).
    pub fn detect_timeout(&self) -> Option<Duration> {
        self.detect_timeout
    }

    /// Sets [`Self::detect_timeout`].
    pub fn set_detect_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.detect_timeout = timeout;
        self
    }

    /// How long a connection may have no request in flight before it is closed,
    /// default 60 s: HTTP/1 keep-alive and h2 alike, counted from its accept or from the
    /// end of its last response body. It bounds how long a connection that is not used
    /// holds a slot (an h2 peer that only sends the preface, a client that keeps a pooled
    /// connection). A request in flight is never cut by it (the engine's
    /// [`EngineConfig::idle_timeout`] watches exchanges).
    pub fn connection_idle_timeout(&self) -> Option<Duration> {
        self.connection_idle_timeout
    }

    /// Sets [`Self::connection_idle_timeout`].
    pub fn set_connection_idle_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.connection_idle_timeout = timeout;
        self
    }

    /// How often an h2 connection is pinged, default 20 s: a peer that does not answer
    /// within [`Self::http2_keep_alive_timeout`] is closed, busy or not, which bounds
    /// how long a vanished or stalled h2 peer holds its connection.
    pub fn http2_keep_alive_interval(&self) -> Option<Duration> {
        self.http2_keep_alive_interval
    }

    /// Sets [`Self::http2_keep_alive_interval`].
    pub fn set_http2_keep_alive_interval(&mut self, interval: Option<Duration>) -> &mut Self {
        self.http2_keep_alive_interval = interval;
        self
    }

    /// How long an h2 peer has to answer a keep-alive ping, default 20 s (used only with
    /// [`Self::http2_keep_alive_interval`]).
    pub fn http2_keep_alive_timeout(&self) -> Duration {
        self.http2_keep_alive_timeout
    }

    /// Sets [`Self::http2_keep_alive_timeout`].
    pub fn set_http2_keep_alive_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.http2_keep_alive_timeout = timeout;
        self
    }

    /// Whether a new connection that arrives while [`EngineConfig::max_connections`]
    /// are served closes the connection idle the longest (no request in flight),
    /// default true. Then idle connections can never keep a client out; without it, the
    /// client waits in the listen backlog until a connection closes.
    pub fn evict_idle_at_limit(&self) -> bool {
        self.evict_idle_at_limit
    }

    /// Sets [`Self::evict_idle_at_limit`].
    pub fn set_evict_idle_at_limit(&mut self, enabled: bool) -> &mut Self {
        self.evict_idle_at_limit = enabled;
        self
    }

    /// Checks every setting, the engine's included; the first that cannot work is named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (setting, timeout) in [
            ("header_read_timeout", self.header_read_timeout),
            ("detect_timeout", self.detect_timeout),
            ("connection_idle_timeout", self.connection_idle_timeout),
            ("http2_keep_alive_interval", self.http2_keep_alive_interval),
        ] {
            if timeout == Some(Duration::ZERO) {
                return Err(ConfigError::new(
                    setting,
                    "must be more than zero (None disables it)",
                ));
            }
        }
        if self.http2_keep_alive_timeout.is_zero() {
            return Err(ConfigError::new(
                "http2_keep_alive_timeout",
                "must be more than zero",
            ));
        }
        if http::HeaderValue::from_str(&self.media_type).is_err() {
            return Err(ConfigError::new(
                "media_type",
                "is not a valid header value",
            ));
        }
        self.engine.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_timer_is_refused_by_name() {
        type Set = fn(&mut ServerConfig);
        let cases: [(&str, Set); 5] = [
            ("header_read_timeout", |c| {
                c.set_header_read_timeout(Some(Duration::ZERO));
            }),
            ("detect_timeout", |c| {
                c.set_detect_timeout(Some(Duration::ZERO));
            }),
            ("connection_idle_timeout", |c| {
                c.set_connection_idle_timeout(Some(Duration::ZERO));
            }),
            ("http2_keep_alive_interval", |c| {
                c.set_http2_keep_alive_interval(Some(Duration::ZERO));
            }),
            ("http2_keep_alive_timeout", |c| {
                c.set_http2_keep_alive_timeout(Duration::ZERO);
            }),
        ];
        for (name, set) in cases {
            let mut config = ServerConfig::default();
            set(&mut config);
            assert_eq!(config.validate().unwrap_err().setting(), name);
        }
        let mut off = ServerConfig::default();
        off.set_header_read_timeout(None)
            .set_detect_timeout(None)
            .set_connection_idle_timeout(None)
            .set_http2_keep_alive_interval(None)
            .set_evict_idle_at_limit(false);
        assert!(off.validate().is_ok());
        assert!(ServerConfig::default().validate().is_ok());
    }
}
