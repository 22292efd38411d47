//! Settings of the server and of the clients. Every limit has a safe default, and each
//! setter says what it bounds. Setters take and return `&mut Self` so they chain.

use std::time::Duration;

use hgframe_engine::{ConfigError, Duplex, EngineConfig, DEFAULT_PREFIX, MEDIA_TYPE};

/// The request header in which a client lists the content encodings it accepts.
pub const ENCODINGS_HEADER: &str = "hgframe-encodings";

/// Settings of the HTTP server: what HTTP adds (URL prefix, media type, duplex,
/// header timeout, `debugreflect`) to the exchange engine's own settings
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

    /// Checks every setting, the engine's included; the first that cannot work is named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.header_read_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "header_read_timeout",
                "must be more than zero (None disables it)",
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
