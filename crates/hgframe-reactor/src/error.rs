//! Errors, typed by who is at fault.
//!
//! - [`ProtocolError`]: the *peer* broke the protocol. The server reactor reports it as
//!   [`crate::ServerAction::Error`] and answers the client with a protocol
//!   `error-response` frame ([`ProtocolError::to_wire_message`] is that frame's text);
//!   the client reactor returns it inside [`ReactorError::Protocol`].
//! - [`ReactorError`]: a call the reactor cannot honour (unknown request, response
//!   already ended, output that cannot be encoded, ...), or a client reactor that failed.
//!
//! The messages of the seed's reactor are kept word for word where it had one.

use hgframe_stream::StreamError;
use hgframe_wire::extension::Extension;
use hgframe_wire::{BuildError, Frame, FrameType, PayloadError, RequestId, StreamId};

/// A limit of [`crate::ServerConfig`] or [`crate::ClientConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`crate::ServerConfig::max_receiving_commands`].
    ReceivingCommands,
    /// [`crate::ServerConfig::max_active_requests`].
    ActiveRequests,
    /// [`crate::ServerConfig::max_args_per_command`].
    ArgsPerCommand,
    /// [`crate::ServerConfig::max_arg_len`].
    ArgLen,
    /// [`crate::ServerConfig::max_buffered_data`].
    BufferedData,
    /// [`crate::ServerConfig::max_frame_payload`] or
    /// [`crate::ClientConfig::max_frame_payload`].
    FramePayload,
    /// [`crate::ClientConfig::max_in_flight`].
    InFlight,
}

impl Limit {
    /// What the limit counts, for people.
    pub fn what(self) -> &'static str {
        match self {
            Self::ReceivingCommands => "commands receiving at once",
            Self::ActiveRequests => "active requests",
            Self::ArgsPerCommand => "arguments of one command",
            Self::ArgLen => "bytes of one argument value",
            Self::BufferedData => "bytes buffered for commands being received",
            Self::FramePayload => "bytes of one frame payload",
            Self::InFlight => "requests in flight",
        }
    }

    /// The config setting that sets it.
    pub fn setting(self) -> &'static str {
        match self {
            Self::ReceivingCommands => "max_receiving_commands",
            Self::ActiveRequests => "max_active_requests",
            Self::ArgsPerCommand => "max_args_per_command",
            Self::ArgLen => "max_arg_len",
            Self::BufferedData => "max_buffered_data",
            Self::FramePayload => "max_frame_payload",
            Self::InFlight => "max_in_flight",
        }
    }
}

/// The peer broke the protocol. The message is for people; the variant and its fields
/// say what exactly happened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A client sent a frame on a stream id only a server may open.
    #[error("received frame with even numbered stream ID: {0}")]
    EvenStreamId(StreamId),
    /// A server sent a frame on a stream id only a client may open.
    #[error("received frame with odd numbered stream ID: {0}")]
    OddStreamId(StreamId),
    /// A frame on a stream that is not open, without `stream-begin`.
    #[error("received frame on unknown inactive stream without beginning of stream flag set")]
    UnknownStream(StreamId),
    /// A `stream-settings` frame with frame flags set: the type defines none, and like
    /// every other frame type's undefined flags they are refused.
    #[error("invalid flags {flags:#x} on stream-settings frame of stream {stream_id}")]
    BadSettingsFlags {
        /// The stream the frame opens.
        stream_id: StreamId,
        /// The frame's flags.
        flags: u8,
    },
    /// Any other violation of the stream rules (settings, encoding, corrupt or oversized
    /// compressed data).
    #[error("{0}")]
    Stream(#[source] StreamError),
    /// A frame a client cannot send where a command frame was expected.
    #[error("expected command frame; got {frame_type}")]
    ExpectedCommand {
        /// The raw frame type.
        frame_type: u8,
        /// The frame's request.
        request_id: RequestId,
    },
    /// A `command-name` for a request whose frames are still arriving.
    #[error("request with ID {0} already received")]
    AlreadyReceived(RequestId),
    /// A `command-name` for a request whose response has not ended.
    #[error("request with ID {0} is already active")]
    AlreadyActive(RequestId),
    /// A client started a request with an even (server) request id.
    #[error("received command request with even numbered request ID: {0}")]
    EvenRequestId(RequestId),
    /// A `command-name` with none of `eos`, `have-args`, `have-data`.
    #[error("missing frame flags on command frame")]
    MissingCommandFlags(RequestId),
    /// A `command-name` with `eos` and another flag, or an undefined flag.
    #[error("invalid flags {flags:#x} on command frame of request {request_id}: eos excludes have-args and have-data")]
    BadCommandFlags {
        /// The request.
        request_id: RequestId,
        /// The frame's flags.
        flags: u8,
    },
    /// An argument or data frame for a request that already runs.
    #[error("received frame for request that is still active: {0}")]
    StillActive(RequestId),
    /// An argument or data frame for a request never started.
    #[error("received frame for request that is not receiving: {0}")]
    NotReceiving(RequestId),
    /// An argument frame the command did not announce (or after its last argument).
    #[error("received command argument frame for request that is not expecting arguments: {0}")]
    UnexpectedArgument(RequestId),
    /// A data frame the command did not announce, or before its last argument.
    #[error("received command data frame for request that is not expecting data: {0}")]
    UnexpectedData(RequestId),
    /// A `command-argument` payload or flag sequence that breaks the format.
    #[error("malformed argument frame: {reason}")]
    MalformedArgument {
        /// The request.
        request_id: RequestId,
        /// What is wrong ("partial argument name", "partial argument value", ...).
        reason: &'static str,
    },
    /// The same argument name twice in one command.
    #[error("duplicate argument {name:?} in request {request_id}")]
    DuplicateArgument {
        /// The request.
        request_id: RequestId,
        /// The name, with invalid UTF-8 replaced.
        name: String,
    },
    /// A `command-data` frame with neither `continuation` nor `eos`.
    #[error("command data frame without flags")]
    DataWithoutFlags(RequestId),
    /// A `command-data` frame with both `continuation` and `eos`, or an undefined flag.
    #[error("invalid flags {flags:#x} on command data frame of request {request_id}")]
    BadDataFlags {
        /// The request.
        request_id: RequestId,
        /// The frame's flags.
        flags: u8,
    },
    /// Input ended in the middle of a command request.
    #[error("end of input with partial command request {0}: its frames stopped before the end of its arguments or data")]
    PartialCommand(RequestId),
    /// A frame arrived after the driver signalled end of input.
    #[error("received frame after end of input")]
    FrameAfterEof,
    /// The input could not be read as frames (a frame over the length limit, bytes cut
    /// short): the driver's decoder said why, and no more input is read.
    #[error("the input cannot be read as frames: {0}")]
    Undecodable(String),
    /// A configured limit would be exceeded; nothing was allocated for it.
    #[error("{}: {value} exceeds the limit of {max} ({}){}", .limit.what(), .limit.setting(),
            .request_id.map(|r| format!(" in request {r}")).unwrap_or_default())]
    Limit {
        /// Which limit.
        limit: Limit,
        /// The request concerned, if any.
        request_id: Option<RequestId>,
        /// The value it would reach.
        value: usize,
        /// The limit.
        max: usize,
    },
    /// The server reactor failed earlier and refuses everything.
    #[error("server already errored")]
    AlreadyErrored,
    /// A frame for a request the client has not issued or whose response ended.
    #[error("received frame for request that is not in flight: {0}")]
    UnknownRequest(RequestId),
    /// A frame type a server cannot send.
    #[error("unexpected frame type {frame_type} from server in request {request_id}")]
    UnexpectedResponseType {
        /// The raw frame type.
        frame_type: u8,
        /// The request.
        request_id: RequestId,
    },
    /// A response frame whose flags break its type's rules.
    #[error("invalid flags {flags:#x} on {frame_type} frame of request {request_id}")]
    BadResponseFlags {
        /// The type's name.
        frame_type: &'static str,
        /// The request.
        request_id: RequestId,
        /// The frame's flags.
        flags: u8,
    },
    /// An extension frame (`cancel`, `progress`) that breaks its rules: flags set, a
    /// payload where none belongs, a payload that does not parse.
    #[error("malformed {extension} frame in request {request_id}: {reason}")]
    MalformedExtension {
        /// The extension's name.
        extension: &'static str,
        /// The request.
        request_id: RequestId,
        /// What is wrong.
        reason: String,
    },
    /// A `text-output` payload that cannot be decoded.
    #[error("malformed text output in request {request_id}: {source}")]
    MalformedTextOutput {
        /// The request.
        request_id: RequestId,
        /// What is wrong.
        #[source]
        source: PayloadError,
    },
}

impl ProtocolError {
    /// The request the error concerns, when there is one.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Self::ExpectedCommand { request_id, .. }
            | Self::BadCommandFlags { request_id, .. }
            | Self::MalformedArgument { request_id, .. }
            | Self::DuplicateArgument { request_id, .. }
            | Self::BadDataFlags { request_id, .. }
            | Self::UnexpectedResponseType { request_id, .. }
            | Self::BadResponseFlags { request_id, .. }
            | Self::MalformedExtension { request_id, .. }
            | Self::MalformedTextOutput { request_id, .. } => Some(*request_id),
            Self::AlreadyReceived(r)
            | Self::AlreadyActive(r)
            | Self::EvenRequestId(r)
            | Self::MissingCommandFlags(r)
            | Self::StillActive(r)
            | Self::NotReceiving(r)
            | Self::UnexpectedArgument(r)
            | Self::UnexpectedData(r)
            | Self::DataWithoutFlags(r)
            | Self::PartialCommand(r)
            | Self::UnknownRequest(r) => Some(*r),
            Self::Limit { request_id, .. } => *request_id,
            Self::EvenStreamId(_)
            | Self::OddStreamId(_)
            | Self::UnknownStream(_)
            | Self::BadSettingsFlags { .. }
            | Self::Stream(_)
            | Self::FrameAfterEof
            | Self::Undecodable(_)
            | Self::AlreadyErrored => None,
        }
    }

    /// The text of the protocol `error-response` frame sent to the peer: the message,
    /// cut at `max_len` bytes on a character boundary.
    pub fn to_wire_message(&self, max_len: usize) -> String {
        truncate_message(self.to_string(), max_len)
    }
}

/// Refuses a `stream-settings` frame with frame flags (the type defines none). The
/// stream layer consumes these frames, so both reactors check before handing them on.
pub(crate) fn check_settings_flags(frame: &Frame) -> Result<(), ProtocolError> {
    if frame.known_type() == Some(FrameType::StreamSettings) && frame.flags() != 0 {
        return Err(ProtocolError::BadSettingsFlags {
            stream_id: frame.stream_id(),
            flags: frame.flags(),
        });
    }
    Ok(())
}

/// Cuts `message` to at most `max_len` bytes without splitting a character.
pub(crate) fn truncate_message(mut message: String, max_len: usize) -> String {
    if message.len() > max_len {
        let mut end = max_len;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

/// A call the reactor cannot honour, or a client reactor that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReactorError {
    /// The request is not one the reactor has dispatched (server) or issued (client), or
    /// it is over.
    #[error("request {0} is not active")]
    UnknownRequest(RequestId),
    /// The response to the request has already ended.
    #[error("the response to request {0} has already ended")]
    ResponseFinished(RequestId),
    /// Command data for a request that announced none, or after its last piece.
    #[error("request {0} expects no more command data")]
    NoDataExpected(RequestId),
    /// A limit of the client (requests in flight, all request ids in use).
    #[error("{limit_what}: {max} reached", limit_what = .limit.what())]
    Limit {
        /// Which limit.
        limit: Limit,
        /// Its value.
        max: usize,
    },
    /// Output could not be encoded by the stream.
    #[error("encoding output: {0}")]
    Encode(#[source] StreamError),
    /// Frames could not be built from what was given (too long a name, text output
    /// that does not fit in a frame, ...).
    #[error("building frames: {0}")]
    Build(#[from] BuildError),
    /// The peer broke the protocol (client reactor); every request in flight failed.
    #[error("server broke the protocol: {0}")]
    Protocol(#[source] ProtocolError),
    /// The client reactor failed earlier (see the first error it returned).
    #[error("the client reactor failed earlier")]
    Failed,
    /// Reading command data from a reader failed; the request's data was left
    /// unfinished.
    #[error("reading the data of request {request_id}: {source}")]
    ReadData {
        /// The request whose data could not be read.
        request_id: RequestId,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The extension was not negotiated with the peer: its frame is never sent to a
    /// peer that did not accept it.
    #[error("the {} extension was not negotiated with the peer", .0.name())]
    NotNegotiated(Extension),
    /// Input already ended; no more frames are accepted.
    #[error("input already ended")]
    InputEnded,
    /// Every server stream id is in use: no stream can be handed to the driver.
    #[error("all {max} server stream ids are in use")]
    NoStreamId {
        /// How many server stream ids exist.
        max: usize,
    },
    /// Frames given as a response are on a stream the reactor did not hand out (or that
    /// was given back).
    #[error("stream {0} is not an output stream handed out by open_output_stream")]
    NotADriverStream(StreamId),
    /// A frame given as the response of one request belongs to another.
    #[error("a frame of request {found} was given as the response of request {request}")]
    FrameOfAnotherRequest {
        /// The request being answered.
        request: RequestId,
        /// The request id the frame carries.
        found: RequestId,
    },
}

impl From<PayloadError> for ReactorError {
    fn from(e: PayloadError) -> Self {
        Self::Build(BuildError::Payload(e))
    }
}

/// Whether an error-response came from a protocol failure or from the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer broke the protocol (`error-response` flag `protocol`); the connection
    /// is to be closed.
    Protocol,
    /// The command failed (`error-response` flag `application`).
    Application,
    /// The connection ended before the response did.
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_texts() {
        assert_eq!(
            ProtocolError::EvenStreamId(StreamId(2)).to_string(),
            "received frame with even numbered stream ID: 2"
        );
        assert_eq!(
            ProtocolError::ExpectedCommand {
                frame_type: 9,
                request_id: RequestId(1)
            }
            .to_string(),
            "expected command frame; got 9"
        );
        assert_eq!(
            ProtocolError::AlreadyReceived(RequestId(1)).to_string(),
            "request with ID 1 already received"
        );
        assert_eq!(
            ProtocolError::AlreadyActive(RequestId(1)).to_string(),
            "request with ID 1 is already active"
        );
        assert_eq!(
            ProtocolError::MalformedArgument {
                request_id: RequestId(1),
                reason: "partial argument name"
            }
            .to_string(),
            "malformed argument frame: partial argument name"
        );
        assert_eq!(
            ProtocolError::AlreadyErrored.to_string(),
            "server already errored"
        );
    }

    #[test]
    fn limit_messages_name_the_setting() {
        let e = ProtocolError::Limit {
            limit: Limit::BufferedData,
            request_id: Some(RequestId(3)),
            value: 20,
            max: 10,
        };
        assert_eq!(
            e.to_string(),
            "bytes buffered for commands being received: 20 exceeds the limit of 10 (max_buffered_data) in request 3"
        );
        assert_eq!(e.request_id(), Some(RequestId(3)));
    }

    #[test]
    fn wire_message_is_cut_on_a_char_boundary() {
        assert_eq!(truncate_message("héllo".into(), 2), "h");
        assert_eq!(truncate_message("héllo".into(), 3), "hé");
        assert_eq!(truncate_message("abc".into(), 10), "abc");
    }
}
