//! Counters of one exchange, for applications (through
//! [`crate::EngineConfig::set_observer`]) and for logs.

use std::time::Duration;

/// The transport an exchange ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One HTTP/1.x request and response (half duplex unless configured otherwise).
    Http1,
    /// One HTTP/2 stream (full duplex unless configured otherwise).
    Http2,
    /// A long-lived byte-stream connection (TCP, pipes, ...).
    ByteStream,
}

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Input ended and every response was sent.
    Completed,
    /// The client broke the protocol; a protocol `error-response` was sent.
    ProtocolError(String),
    /// The input could not be read as frames (malformed or cut short), or reading failed.
    InputFailed(String),
    /// The client stopped reading (or went away) before the responses were sent.
    ClientGone,
    /// Nothing moved for longer than the idle timeout.
    TimedOut,
    /// The peer sent what it owed more slowly than the minimum input rate.
    TooSlow,
    /// A response could not be encoded, nor the error frame that should have replaced
    /// it: the exchange was aborted (the transport cuts the connection).
    EncoderFailed(String),
}

impl Outcome {
    /// Whether the exchange was cut short by the server, so its transport must abort
    /// rather than end cleanly (a response cut short must not look complete).
    pub fn is_abort(&self) -> bool {
        matches!(
            self,
            Self::TimedOut | Self::TooSlow | Self::EncoderFailed(_)
        )
    }
}

/// Counters of one stream the server sent on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamCounters {
    /// The stream id (even: the server's).
    pub stream_id: u8,
    /// Its content-encoding profile.
    pub profile: String,
    /// Payload bytes before content encoding.
    pub raw_bytes: u64,
    /// Bytes sent as they were given, already compressed (a response cache's,
    /// [`crate::Responder::write_precompressed`]): not in `raw_bytes`, and no
    /// compression work was done for them.
    pub precompressed_bytes: u64,
    /// Payload bytes on the wire (after content encoding, headers not counted).
    pub wire_bytes: u64,
    /// Frames sent.
    pub frames: u64,
    /// Time spent producing the stream's frames (content encoding included).
    pub encode_time: Duration,
}

/// Counters of one exchange (an HTTP request, or a whole byte-stream connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Where it ran.
    pub transport: Transport,
    /// Whether responses could start before the request ended.
    pub full_duplex: bool,
    /// Commands the client sent (run or refused).
    pub commands: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Bytes received (frames with their headers).
    pub bytes_in: u64,
    /// Bytes sent (frames with their headers).
    pub bytes_out: u64,
    /// The server's output streams.
    pub streams: Vec<StreamCounters>,
    /// Time from the first byte read to the last byte sent.
    pub elapsed: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// Turns of the exchange's loop: how often it waited for its next event. A measure
    /// of its own overhead: a small command whose handler answers at once is read,
    /// run and answered in one.
    pub turns: u64,
}

impl ExchangeStats {
    pub(crate) fn new(transport: Transport, full_duplex: bool) -> Self {
        Self {
            transport,
            full_duplex,
            commands: 0,
            frames_in: 0,
            bytes_in: 0,
            bytes_out: 0,
            streams: Vec::new(),
            elapsed: Duration::ZERO,
            outcome: Outcome::Completed,
            turns: 0,
        }
    }

    /// Payload bytes before content encoding, over all streams.
    pub fn raw_bytes(&self) -> u64 {
        self.streams.iter().map(|s| s.raw_bytes).sum()
    }

    /// Time spent producing output frames, over all streams.
    pub fn encode_time(&self) -> Duration {
        self.streams.iter().map(|s| s.encode_time).sum()
    }
}
