//! Configuration of the reactors: every limit has a safe default, and each setter says
//! what memory it bounds.
//!
//! Setters take and return `&mut Self` so they chain (quinn's `TransportConfig`, h2's
//! `Builder`). Values out of range are clamped by the setter, so a config is always
//! valid and [`crate::ServerReactor::new`] cannot fail.

use hgframe_stream::DecodeLimits;
use hgframe_wire::extension::Extensions;
use hgframe_wire::{DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_PAYLOAD_LEN, MAX_PAYLOAD_LEN};

/// Name of the profile every peer supports: no content encoding.
pub const IDENTITY: &str = "identity";

/// The smallest frame size a sender may be configured with: an argument's header and a
/// short name, or a `stream-settings` frame naming `zstd-8mb`, always fit.
pub const MIN_FRAME_SIZE: usize = 16;

/// How command data reaches the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataMode {
    /// The reactor collects a command's data (up to
    /// [`ServerConfig::max_buffered_data`]) and hands it over whole with
    /// [`crate::ServerAction::RunCommand`], as the seed does.
    #[default]
    Buffered,
    /// The command is dispatched as soon as its arguments are complete
    /// ([`crate::CommandRequest::data_follows`]), then each data frame is handed over
    /// as it arrives with [`crate::ServerAction::CommandData`]. Nothing is buffered.
    Streaming,
}

/// Settings of a [`crate::ServerReactor`].
///
/// The memory a client can make the reactor hold for commands it has not finished
/// sending is bounded by [`ServerConfig::max_buffered_data`] (argument values, names and
/// buffered data, across all requests), plus a small constant per tracked request
/// (at most [`ServerConfig::max_receiving_commands`] +
/// [`ServerConfig::max_active_requests`] of them). Each decoded frame is bounded by
/// [`ServerConfig::max_decoded_frame_len`], and the decoding contexts of compressed
/// client streams by [`ServerConfig::max_decoding_streams`] (8 MiB windows each).
/// What the application answers is not bounded here: the driver pulls output as it can
/// send it (in deferred-output mode, everything is held until end of input).
///
/// ```
/// use hgframe_reactor::{DataMode, ServerConfig};
/// let mut config = ServerConfig::default();
/// config
///     .set_max_buffered_data(1 << 20)
///     .set_data_mode(DataMode::Streaming)
///     .set_defer_output(true);
/// assert_eq!(config.max_buffered_data(), 1 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    max_receiving_commands: usize,
    max_active_requests: usize,
    max_args_per_command: usize,
    max_arg_len: usize,
    max_buffered_data: usize,
    max_frame_payload: usize,
    max_decoded_frame_len: usize,
    max_decoding_streams: usize,
    max_expansion_ratio: u32,
    expansion_allowance: usize,
    max_frame_size: usize,
    defer_output: bool,
    data_mode: DataMode,
    encodings: Vec<String>,
    peer_accepts: Vec<String>,
    level: i32,
    extensions: Extensions,
    peer_extensions: Extensions,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_receiving_commands: 16,
            max_active_requests: 256,
            max_args_per_command: 64,
            max_arg_len: usize::from(u16::MAX),
            max_buffered_data: 16 << 20,
            max_frame_payload: DEFAULT_MAX_PAYLOAD_LEN,
            max_decoded_frame_len: 1 << 20,
            max_decoding_streams: 4,
            max_expansion_ratio: DecodeLimits::default().max_expansion_ratio,
            expansion_allowance: DecodeLimits::default().expansion_allowance,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            defer_output: false,
            data_mode: DataMode::Buffered,
            encodings: default_preference(),
            peer_accepts: vec![IDENTITY.to_string()],
            level: 3,
            extensions: Extensions::all(),
            peer_extensions: Extensions::none(),
        }
    }
}

/// The profiles this build prefers, best first.
fn default_preference() -> Vec<String> {
    let mut out = Vec::new();
    if cfg!(feature = "zstd") {
        out.push("zstd-8mb".to_string());
    }
    // `deflate` is opt-in (`set_encodings`): one level serves every listed profile, and
    // zstd's levels 10 to 22 and negative ones are not deflate's 0 to 9.
    out.push(IDENTITY.to_string());
    out
}

impl ServerConfig {
    /// Commands whose frames are still arriving (name seen, arguments or buffered data
    /// not complete), default 16. A new `command-name` beyond this is a protocol error.
    /// Bounds the number of partial commands (their bytes are bounded by
    /// [`Self::max_buffered_data`]).
    pub fn max_receiving_commands(&self) -> usize {
        self.max_receiving_commands
    }

    /// Sets [`Self::max_receiving_commands`].
    pub fn set_max_receiving_commands(&mut self, n: usize) -> &mut Self {
        self.max_receiving_commands = n;
        self
    }

    /// Requests dispatched to the application whose response has not been fully
    /// transmitted, default 256. Dispatching one more is a protocol error. In deferred
    /// output mode every request stays active until end of input, so this is also the
    /// most commands one exchange may carry. Bounds the reactor's per-request state.
    pub fn max_active_requests(&self) -> usize {
        self.max_active_requests
    }

    /// Sets [`Self::max_active_requests`].
    pub fn set_max_active_requests(&mut self, n: usize) -> &mut Self {
        self.max_active_requests = n;
        self
    }

    /// Arguments one command may have, default 64.
    pub fn max_args_per_command(&self) -> usize {
        self.max_args_per_command
    }

    /// Sets [`Self::max_args_per_command`].
    pub fn set_max_args_per_command(&mut self, n: usize) -> &mut Self {
        self.max_args_per_command = n;
        self
    }

    /// Bytes of one argument value, default 65535 (the most the 16-bit length can
    /// announce). Checked on the announced length, before anything is stored.
    pub fn max_arg_len(&self) -> usize {
        self.max_arg_len
    }

    /// Sets [`Self::max_arg_len`].
    pub fn set_max_arg_len(&mut self, n: usize) -> &mut Self {
        self.max_arg_len = n;
        self
    }

    /// Bytes the reactor holds for commands not yet dispatched, across all of them:
    /// command names, argument names and values, and buffered command data. Default
    /// 16 MiB. This is the worst-case memory a client can pin with partial commands;
    /// going over it is a protocol error, detected before allocating.
    pub fn max_buffered_data(&self) -> usize {
        self.max_buffered_data
    }

    /// Sets [`Self::max_buffered_data`].
    pub fn set_max_buffered_data(&mut self, n: usize) -> &mut Self {
        self.max_buffered_data = n;
        self
    }

    /// Largest payload of a received frame, as on the wire, default 65535 (docs/protocol.md:
    /// more only if the server allowed it). Clamped to 16777215. The transport's
    /// [`hgframe_wire::FrameDecoder`] should use the same value, so an oversized frame
    /// is refused before its payload is read.
    pub fn max_frame_payload(&self) -> usize {
        self.max_frame_payload
    }

    /// Sets [`Self::max_frame_payload`].
    pub fn set_max_frame_payload(&mut self, n: usize) -> &mut Self {
        self.max_frame_payload = n.min(MAX_PAYLOAD_LEN);
        self
    }

    /// Largest payload of a received frame after content decoding, default 1 MiB.
    /// Bounds what one compressed frame may expand to.
    pub fn max_decoded_frame_len(&self) -> usize {
        self.max_decoded_frame_len
    }

    /// Sets [`Self::max_decoded_frame_len`].
    pub fn set_max_decoded_frame_len(&mut self, n: usize) -> &mut Self {
        self.max_decoded_frame_len = n;
        self
    }

    /// Client streams with a live decoding context (a compressed encoding) at once,
    /// default 4. With `zstd-8mb` each may hold an 8 MiB window, so this bounds the
    /// decoding memory a client can make the server hold (32 MiB by default).
    pub fn max_decoding_streams(&self) -> usize {
        self.max_decoding_streams
    }

    /// Sets [`Self::max_decoding_streams`].
    pub fn set_max_decoding_streams(&mut self, n: usize) -> &mut Self {
        self.max_decoding_streams = n;
        self
    }

    /// Most bytes a peer's stream may decode to per encoded byte it sent, beyond
    /// [`Self::expansion_allowance`] (default 1000, at least 1): a compression bomb
    /// costs its sender ([`DecodeLimits::max_expansion_ratio`]).
    pub fn max_expansion_ratio(&self) -> u32 {
        self.max_expansion_ratio
    }

    /// Sets [`Self::max_expansion_ratio`].
    pub fn set_max_expansion_ratio(&mut self, ratio: u32) -> &mut Self {
        self.max_expansion_ratio = ratio;
        self
    }

    /// Bytes a peer's stream may decode to before [`Self::max_expansion_ratio`]
    /// applies (default 64 MiB).
    pub fn expansion_allowance(&self) -> usize {
        self.expansion_allowance
    }

    /// Sets [`Self::expansion_allowance`].
    pub fn set_expansion_allowance(&mut self, bytes: usize) -> &mut Self {
        self.expansion_allowance = bytes;
        self
    }

    /// The limits on decoding the peer's streams, as these settings give them.
    pub(crate) fn decode_limits(&self) -> DecodeLimits {
        let mut limits = DecodeLimits::default();
        limits
            .max_decoded_frame_len(self.max_decoded_frame_len)
            .max_decoding_streams(self.max_decoding_streams)
            .max_expansion_ratio(self.max_expansion_ratio)
            .expansion_allowance(self.expansion_allowance);
        limits
    }

    /// Largest payload of a frame the server sends, default 32768: response data is cut
    /// at this size. Clamped to 16..=65535, so a `stream-settings` frame always fits.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Sets [`Self::max_frame_size`].
    pub fn set_max_frame_size(&mut self, n: usize) -> &mut Self {
        self.max_frame_size = n.clamp(MIN_FRAME_SIZE, DEFAULT_MAX_PAYLOAD_LEN);
        self
    }

    /// Whether output is held until end of input, then released in order (the seed's
    /// `deferoutput`, for half-duplex transports). Default false. Held output is as
    /// large as the responses the application produces before input ends.
    pub fn defer_output(&self) -> bool {
        self.defer_output
    }

    /// Sets [`Self::defer_output`].
    pub fn set_defer_output(&mut self, defer: bool) -> &mut Self {
        self.defer_output = defer;
        self
    }

    /// How command data reaches the application, default [`DataMode::Buffered`].
    pub fn data_mode(&self) -> DataMode {
        self.data_mode
    }

    /// Sets [`Self::data_mode`].
    pub fn set_data_mode(&mut self, mode: DataMode) -> &mut Self {
        self.data_mode = mode;
        self
    }

    /// Content-encoding profiles the server is willing to use for its output, best
    /// first. Default: `zstd-8mb` (with the `zstd` feature), then `identity`; list
    /// `deflate` to use it (first for streams of tiny messages, docs/streams.md). The
    /// reactor skips names it does not know; [`hgframe_stream::Profiles::negotiate`]
    /// picks the first the client accepts. The engine refuses unknown names, and a
    /// [`Self::level`] that one of the listed profiles lacks, when it is configured.
    pub fn encodings(&self) -> &[String] {
        &self.encodings
    }

    /// Sets [`Self::encodings`].
    pub fn set_encodings<S: AsRef<str>>(&mut self, ours: &[S]) -> &mut Self {
        self.encodings = ours.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// Profiles the client said it accepts (over HTTP, the `HgFrame-Encodings` header),
    /// default `identity` only. The server never uses a profile not listed here.
    pub fn peer_accepts(&self) -> &[String] {
        &self.peer_accepts
    }

    /// Sets [`Self::peer_accepts`].
    pub fn set_peer_accepts<S: AsRef<str>>(&mut self, accepts: &[S]) -> &mut Self {
        self.peer_accepts = accepts.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// Compression level of the output encoding (zstd), default 3.
    pub fn level(&self) -> i32 {
        self.level
    }

    /// Sets [`Self::level`].
    pub fn set_level(&mut self, level: i32) -> &mut Self {
        self.level = level;
        self
    }

    /// Extensions the server is willing to accept (docs/protocol.md, "Extensions"),
    /// default all this build knows. Only those the client also offered are used.
    pub fn extensions(&self) -> Extensions {
        self.extensions
    }

    /// Sets [`Self::extensions`].
    pub fn set_extensions(&mut self, ours: Extensions) -> &mut Self {
        self.extensions = ours;
        self
    }

    /// Extensions the client offered (over HTTP, the `HgFrame-Extensions` header; over a
    /// byte stream, `hello`'s `extensions` argument), default none: a client that offers
    /// nothing gets the seed's protocol, and never an extension frame.
    pub fn peer_extensions(&self) -> Extensions {
        self.peer_extensions
    }

    /// Sets [`Self::peer_extensions`].
    pub fn set_peer_extensions(&mut self, offered: Extensions) -> &mut Self {
        self.peer_extensions = offered;
        self
    }
}

/// Settings of a [`crate::ClientReactor`].
///
/// ```
/// use hgframe_reactor::ClientConfig;
/// let mut config = ClientConfig::default();
/// config.set_encoding("zstd-8mb").set_max_in_flight(8);
/// assert_eq!(config.max_in_flight(), 8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    max_in_flight: usize,
    max_frame_size: usize,
    max_frame_payload: usize,
    max_decoded_frame_len: usize,
    max_decoding_streams: usize,
    max_expansion_ratio: u32,
    expansion_allowance: usize,
    encoding: String,
    level: i32,
    extensions: Extensions,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_frame_payload: DEFAULT_MAX_PAYLOAD_LEN,
            max_decoded_frame_len: 1 << 20,
            max_decoding_streams: 4,
            max_expansion_ratio: DecodeLimits::default().max_expansion_ratio,
            expansion_allowance: DecodeLimits::default().expansion_allowance,
            encoding: IDENTITY.to_string(),
            level: 3,
            extensions: Extensions::none(),
        }
    }
}

impl ClientConfig {
    /// Commands issued whose response has not ended, default 1024 (at most 32768, the
    /// number of odd request ids). Bounds the client's per-request state.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Sets [`Self::max_in_flight`] (clamped to 32768).
    pub fn set_max_in_flight(&mut self, n: usize) -> &mut Self {
        self.max_in_flight = n.min(1 << 15);
        self
    }

    /// Largest payload of a frame the client sends, default 32768: argument values and
    /// command data are cut at this size. Clamped to 16..=65535, so an argument's
    /// header and a short name always fit in its first frame.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Sets [`Self::max_frame_size`].
    pub fn set_max_frame_size(&mut self, n: usize) -> &mut Self {
        self.max_frame_size = n.clamp(MIN_FRAME_SIZE, DEFAULT_MAX_PAYLOAD_LEN);
        self
    }

    /// Server streams with a live decoding context at once, default 4 (each may hold an
    /// 8 MiB `zstd-8mb` window).
    pub fn max_decoding_streams(&self) -> usize {
        self.max_decoding_streams
    }

    /// Sets [`Self::max_decoding_streams`].
    pub fn set_max_decoding_streams(&mut self, n: usize) -> &mut Self {
        self.max_decoding_streams = n;
        self
    }

    /// Most bytes a peer's stream may decode to per encoded byte it sent, beyond
    /// [`Self::expansion_allowance`] (default 1000, at least 1): a compression bomb
    /// costs its sender ([`DecodeLimits::max_expansion_ratio`]).
    pub fn max_expansion_ratio(&self) -> u32 {
        self.max_expansion_ratio
    }

    /// Sets [`Self::max_expansion_ratio`].
    pub fn set_max_expansion_ratio(&mut self, ratio: u32) -> &mut Self {
        self.max_expansion_ratio = ratio;
        self
    }

    /// Bytes a peer's stream may decode to before [`Self::max_expansion_ratio`]
    /// applies (default 64 MiB).
    pub fn expansion_allowance(&self) -> usize {
        self.expansion_allowance
    }

    /// Sets [`Self::expansion_allowance`].
    pub fn set_expansion_allowance(&mut self, bytes: usize) -> &mut Self {
        self.expansion_allowance = bytes;
        self
    }

    /// The limits on decoding the peer's streams, as these settings give them.
    pub(crate) fn decode_limits(&self) -> DecodeLimits {
        let mut limits = DecodeLimits::default();
        limits
            .max_decoded_frame_len(self.max_decoded_frame_len)
            .max_decoding_streams(self.max_decoding_streams)
            .max_expansion_ratio(self.max_expansion_ratio)
            .expansion_allowance(self.expansion_allowance);
        limits
    }

    /// Largest payload of a received frame, as on the wire, default 65535.
    pub fn max_frame_payload(&self) -> usize {
        self.max_frame_payload
    }

    /// Sets [`Self::max_frame_payload`] (clamped to 16777215).
    pub fn set_max_frame_payload(&mut self, n: usize) -> &mut Self {
        self.max_frame_payload = n.min(MAX_PAYLOAD_LEN);
        self
    }

    /// Largest payload of a received frame after content decoding, default 1 MiB.
    pub fn max_decoded_frame_len(&self) -> usize {
        self.max_decoded_frame_len
    }

    /// Sets [`Self::max_decoded_frame_len`].
    pub fn set_max_decoded_frame_len(&mut self, n: usize) -> &mut Self {
        self.max_decoded_frame_len = n;
        self
    }

    /// Content-encoding profile of the client's own stream (command data is encoded
    /// with it), default `identity`.
    pub fn encoding(&self) -> &str {
        &self.encoding
    }

    /// Sets [`Self::encoding`]. An unknown name makes [`crate::ClientReactor::new`] fall
    /// back to `identity`.
    pub fn set_encoding(&mut self, profile: &str) -> &mut Self {
        self.encoding = profile.to_string();
        self
    }

    /// Compression level of the client's stream, default 3.
    pub fn level(&self) -> i32 {
        self.level
    }

    /// Sets [`Self::level`].
    pub fn set_level(&mut self, level: i32) -> &mut Self {
        self.level = level;
        self
    }

    /// Extensions the client offers, default none (the seed's protocol). Offering is
    /// not using: the client uses an extension only once the server accepted it
    /// ([`crate::ClientReactor::set_extensions`]).
    pub fn extensions(&self) -> Extensions {
        self.extensions
    }

    /// Sets [`Self::extensions`].
    pub fn set_extensions(&mut self, offered: Extensions) -> &mut Self {
        self.extensions = offered;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = ServerConfig::default();
        assert_eq!(c.max_receiving_commands(), 16);
        assert_eq!(c.max_active_requests(), 256);
        assert_eq!(c.max_args_per_command(), 64);
        assert_eq!(c.max_arg_len(), 65535);
        assert_eq!(c.max_buffered_data(), 16 << 20);
        assert_eq!(c.max_frame_payload(), 65535);
        assert_eq!(c.max_decoded_frame_len(), 1 << 20);
        assert_eq!(c.max_decoding_streams(), 4);
        assert_eq!(c.max_frame_size(), 32768);
        assert!(!c.defer_output());
        assert_eq!(c.data_mode(), DataMode::Buffered);
        assert_eq!(c.peer_accepts(), ["identity"]);
        assert_eq!(c.encodings().last().map(String::as_str), Some("identity"));
        assert_eq!(c.extensions(), Extensions::all());
        assert_eq!(c.peer_extensions(), Extensions::none());
        let c = ClientConfig::default();
        assert_eq!(c.extensions(), Extensions::none());
        assert_eq!(c.max_in_flight(), 1024);
        assert_eq!(c.encoding(), "identity");
    }

    #[test]
    fn setters_clamp_to_what_the_wire_allows() {
        let mut c = ServerConfig::default();
        c.set_max_frame_size(0).set_max_frame_payload(usize::MAX);
        assert_eq!(c.max_frame_size(), 16);
        assert_eq!(c.max_frame_payload(), MAX_PAYLOAD_LEN);
        c.set_max_frame_size(1 << 20);
        assert_eq!(c.max_frame_size(), 65535);
        let mut c = ClientConfig::default();
        c.set_max_frame_size(1).set_max_in_flight(usize::MAX);
        assert_eq!(c.max_frame_size(), 16);
        assert_eq!(c.max_in_flight(), 32768);
    }
}
