//! Errors of the stream layer: each names the stream and the rule broken.

use hgframe_wire::{FrameError, PayloadError, StreamId};

use crate::encoding::EncodingError;
use crate::id::Side;

/// A broken stream rule, a failed content encoding, or a misuse of the sending API.
///
/// The peer's faults ([`StreamError::is_protocol_violation`]) are what a receiver sees in
/// [`crate::IncomingStreams::on_frame`]; the reactor answers them with a protocol
/// error. The other variants come from the sending side ([`crate::OutgoingStream`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    // ---- the peer broke a stream rule (protocol violations) ----
    /// A frame on a stream that is not open, without `stream-begin`. (The message is the
    /// seed's.)
    #[error("received frame on unknown inactive stream without beginning of stream flag set")]
    ClosedStream {
        /// The stream.
        id: StreamId,
    },
    /// A frame on a stream id of our own parity: the peer may open only ids of its own.
    #[error("received frame with {} numbered stream ID: {id}", parity_name(*.id))]
    WrongParity {
        /// The stream.
        id: StreamId,
        /// The side that sent the frame (and may not use this id).
        side: Side,
    },
    /// `stream-begin` on a stream that is already open.
    #[error("stream {id}: stream-begin on a stream that is already open")]
    AlreadyOpen {
        /// The stream.
        id: StreamId,
    },
    /// A `stream-settings` frame without `stream-begin`: settings come only in the first
    /// frame of a stream.
    #[error("stream {id}: stream-settings frame without stream-begin")]
    SettingsWithoutBegin {
        /// The stream.
        id: StreamId,
    },
    /// A `stream-settings` frame with the `encoded` flag: settings are never encoded.
    #[error("stream {id}: stream-settings frame with the encoded flag")]
    SettingsEncoded {
        /// The stream.
        id: StreamId,
    },
    /// A malformed `stream-settings` payload.
    #[error("stream {id}: bad stream-settings payload: {source}")]
    BadSettings {
        /// The stream.
        id: StreamId,
        /// What is wrong with the payload.
        #[source]
        source: PayloadError,
    },
    /// An `encoded` frame on a stream that sent no `stream-settings`.
    #[error("stream {id}: encoded frame before any stream-settings")]
    EncodedBeforeSettings {
        /// The stream.
        id: StreamId,
    },
    /// A content-encoding profile we do not know (or do not accept).
    #[error("unknown content-encoding profile `{name}`")]
    UnknownProfile {
        /// The profile's name as received (or as asked for).
        name: String,
    },
    /// The profile refused the parameters of a `stream-settings` frame.
    #[error("stream {id}: profile `{profile}` refused its settings: {source}")]
    BadProfileParameters {
        /// The stream.
        id: StreamId,
        /// The profile.
        profile: String,
        /// Why.
        #[source]
        source: EncodingError,
    },
    /// One frame's payload decoded to more than the configured cap.
    #[error("stream {id}: a frame decodes to more than {limit} bytes")]
    DecodedTooLarge {
        /// The stream.
        id: StreamId,
        /// The cap ([`crate::DecodeLimits::max_decoded_frame_len`]).
        limit: usize,
    },
    /// A stream decoded to more than [`crate::DecodeLimits::max_expansion_ratio`] times
    /// the encoded bytes it sent, beyond [`crate::DecodeLimits::expansion_allowance`]:
    /// a compression bomb.
    #[error(
        "stream {id}: decodes to more than {ratio} times its encoded size beyond an \
         allowance of {allowance} bytes (a compression bomb?): {wire} encoded bytes, \
         {decoded} decoded before this frame"
    )]
    ExpansionTooLarge {
        /// The stream.
        id: StreamId,
        /// The ratio ([`crate::DecodeLimits::max_expansion_ratio`]).
        ratio: u32,
        /// The allowance ([`crate::DecodeLimits::expansion_allowance`]).
        allowance: usize,
        /// Encoded payload bytes the stream sent, the failing frame's included.
        wire: u64,
        /// Bytes it decoded to before the failing frame.
        decoded: u64,
    },
    /// An encoded payload that does not decode (corrupt data, or a window larger than
    /// the profile allows).
    #[error("stream {id}: cannot decode frame payload: {source}")]
    Corrupt {
        /// The stream.
        id: StreamId,
        /// The decoder's complaint.
        #[source]
        source: EncodingError,
    },
    /// More streams with a live decoding context than allowed.
    #[error("more than {limit} streams with a content encoding are open at once")]
    TooManyDecodingStreams {
        /// The cap ([`crate::DecodeLimits::max_decoding_streams`]).
        limit: usize,
    },

    // ---- misuse of the sending API, or a failing encoder ----
    /// A side tried to open a stream id of the other side's parity.
    #[error("the {side} cannot open stream {id}: it opens only {} numbered streams", own_parity_name(*.side))]
    NotOwnStream {
        /// The stream.
        id: StreamId,
        /// The side that tried.
        side: Side,
    },
    /// `push_data` with a frame type that does not carry raw data.
    #[error("stream {id}: frame type {frame_type} does not carry data (use bytes-response or command-data)")]
    NotDataFrameType {
        /// The stream.
        id: StreamId,
        /// The type asked for.
        frame_type: u8,
    },
    /// A frame whose payload exceeds the stream's frame size.
    #[error("stream {id}: payload of {len} bytes exceeds the frame size of {max} bytes")]
    FrameTooLarge {
        /// The stream.
        id: StreamId,
        /// The payload's length.
        len: usize,
        /// The stream's frame size.
        max: usize,
    },
    /// `end` found no frame of this open stream in the output to mark `stream-end`.
    #[error("stream {id}: no frame of this stream left in the output to carry stream-end")]
    EndWithoutFrame {
        /// The stream.
        id: StreamId,
    },
    /// The encoder failed, or refused a setting (level out of range, pre-compressed data
    /// it cannot pass through).
    #[error("stream {id}: content encoding failed: {source}")]
    Encoding {
        /// The stream.
        id: StreamId,
        /// Why.
        #[source]
        source: EncodingError,
    },
    /// A frame could not be formed (a payload over 16777215 bytes).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The consumer of a parallel encoding stopped taking frames.
    #[error("stream {id}: the consumer of the stream's frames stopped")]
    Cancelled {
        /// The stream.
        id: StreamId,
    },
}

impl StreamError {
    /// Whether the peer broke the protocol (the reactor answers with a protocol error and
    /// closes the connection), as opposed to a misuse of the sending API.
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            Self::ClosedStream { .. }
                | Self::WrongParity { .. }
                | Self::AlreadyOpen { .. }
                | Self::SettingsWithoutBegin { .. }
                | Self::SettingsEncoded { .. }
                | Self::BadSettings { .. }
                | Self::EncodedBeforeSettings { .. }
                | Self::UnknownProfile { .. }
                | Self::BadProfileParameters { .. }
                | Self::DecodedTooLarge { .. }
                | Self::ExpansionTooLarge { .. }
                | Self::Corrupt { .. }
                | Self::TooManyDecodingStreams { .. }
        )
    }

    /// The stream the error is about, if it is about one.
    pub fn stream_id(&self) -> Option<StreamId> {
        match self {
            Self::ClosedStream { id }
            | Self::WrongParity { id, .. }
            | Self::AlreadyOpen { id }
            | Self::SettingsWithoutBegin { id }
            | Self::SettingsEncoded { id }
            | Self::BadSettings { id, .. }
            | Self::EncodedBeforeSettings { id }
            | Self::BadProfileParameters { id, .. }
            | Self::DecodedTooLarge { id, .. }
            | Self::ExpansionTooLarge { id, .. }
            | Self::Corrupt { id, .. }
            | Self::NotOwnStream { id, .. }
            | Self::NotDataFrameType { id, .. }
            | Self::FrameTooLarge { id, .. }
            | Self::EndWithoutFrame { id }
            | Self::Encoding { id, .. }
            | Self::Cancelled { id } => Some(*id),
            Self::UnknownProfile { .. } | Self::TooManyDecodingStreams { .. } | Self::Frame(_) => {
                None
            }
        }
    }
}

fn parity_name(id: StreamId) -> &'static str {
    if id.is_client_initiated() {
        "odd"
    } else {
        "even"
    }
}

fn own_parity_name(side: Side) -> &'static str {
    match side {
        Side::Client => "odd",
        Side::Server => "even",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_messages() {
        let e = StreamError::WrongParity {
            id: StreamId(2),
            side: Side::Client,
        };
        assert_eq!(
            e.to_string(),
            "received frame with even numbered stream ID: 2"
        );
        assert!(e.is_protocol_violation());
        assert_eq!(
            StreamError::ClosedStream { id: StreamId(1) }.to_string(),
            "received frame on unknown inactive stream without beginning of stream flag set"
        );
        let misuse = StreamError::NotOwnStream {
            id: StreamId(1),
            side: Side::Server,
        };
        assert!(!misuse.is_protocol_violation());
        assert_eq!(
            misuse.to_string(),
            "the server cannot open stream 1: it opens only even numbered streams"
        );
        assert_eq!(misuse.stream_id(), Some(StreamId(1)));
    }
}
