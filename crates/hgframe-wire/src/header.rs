//! The 8-byte frame header and the names of its fields.
//!
//! The header layer is permissive on purpose, like the seed's own parser: it keeps the
//! 4-bit type and the 4-bit flags exactly as given, so a frame of an unknown type or with
//! an undefined flag bit still decodes, prints and re-encodes byte for byte. Whether a
//! type or a flag is *acceptable* is the reactor's judgement, not the codec's.

use bitflags::bitflags;

/// Length of a frame header on the wire.
pub const HEADER_LEN: usize = 8;

/// The largest payload length the 24-bit length field can express.
pub const MAX_PAYLOAD_LEN: usize = 0x00FF_FFFF;

/// Payload length a receiver accepts unless the peer negotiated more (docs/protocol.md:
/// a payload over 65535 bytes is sent only to a peer that agreed to take it).
pub const DEFAULT_MAX_PAYLOAD_LEN: usize = 0xFFFF;

/// Payload size at which senders cut data into frames by default (the seed's
/// `DEFAULT_MAX_FRAME_SIZE`).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 0x8000;

/// A request id: odd for requests a client starts, even for requests a server starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RequestId(pub u16);

impl RequestId {
    /// Whether a client started this request (odd ids).
    pub fn is_client_initiated(self) -> bool {
        self.0 % 2 == 1
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A stream id: odd ids are opened by the client, even ids by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(pub u8);

impl StreamId {
    /// Whether a client opens this stream (odd ids).
    pub fn is_client_initiated(self) -> bool {
        self.0 % 2 == 1
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

bitflags! {
    /// Stream flags (header byte 6). Undefined bits are retained as received.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct StreamFlags: u8 {
        /// First frame of a stream: the stream becomes open.
        const STREAM_BEGIN = 0x01;
        /// Last frame of a stream: the stream closes, its encoding context may be dropped.
        const STREAM_END = 0x02;
        /// This frame's payload went through the stream's content encoding.
        const ENCODED = 0x04;
    }
}

/// Human-readable names of the stream flags, in bit order.
pub const STREAM_FLAG_NAMES: &[(&str, u8)] = &[
    ("stream-begin", 0x01),
    ("stream-end", 0x02),
    ("encoded", 0x04),
];

/// The frame types the protocol defines (header byte 7, high 4 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Starts a command request; the payload is the command name.
    CommandName = 0x01,
    /// One argument of a command (or the continuation of its value).
    CommandArgument = 0x02,
    /// Raw data sent with a command.
    CommandData = 0x03,
    /// Raw response bytes.
    BytesResponse = 0x04,
    /// An error, as a message for people.
    ErrorResponse = 0x05,
    /// Formatted text for people (a series of atoms).
    TextOutput = 0x06,
    /// The content-encoding settings of a stream.
    StreamSettings = 0x08,
}

impl FrameType {
    /// Every defined frame type, in numeric order.
    pub const ALL: [Self; 7] = [
        Self::CommandName,
        Self::CommandArgument,
        Self::CommandData,
        Self::BytesResponse,
        Self::ErrorResponse,
        Self::TextOutput,
        Self::StreamSettings,
    ];

    /// The type's name in the human-readable syntax.
    pub fn name(self) -> &'static str {
        match self {
            Self::CommandName => "command-name",
            Self::CommandArgument => "command-argument",
            Self::CommandData => "command-data",
            Self::BytesResponse => "bytes-response",
            Self::ErrorResponse => "error-response",
            Self::TextOutput => "text-output",
            Self::StreamSettings => "stream-settings",
        }
    }

    /// The type with this human-readable name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The names and bits of the flags this type defines, in bit order.
    pub fn flag_names(self) -> &'static [(&'static str, u8)] {
        match self {
            Self::CommandName => &[("eos", 0x01), ("have-args", 0x02), ("have-data", 0x04)],
            Self::CommandArgument => &[("continuation", 0x01), ("eoa", 0x02)],
            Self::CommandData | Self::BytesResponse => &[("continuation", 0x01), ("eos", 0x02)],
            Self::ErrorResponse => &[("protocol", 0x01), ("application", 0x02)],
            Self::TextOutput | Self::StreamSettings => &[],
        }
    }
}

impl TryFrom<u8> for FrameType {
    type Error = u8;

    /// The defined type with this number, or the number back if it is not defined.
    fn try_from(value: u8) -> Result<Self, u8> {
        Self::ALL
            .into_iter()
            .find(|t| *t as u8 == value)
            .ok_or(value)
    }
}

bitflags! {
    /// Flags of a `command-name` frame.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct CommandNameFlags: u8 {
        /// No arguments and no data follow; excludes the other two flags.
        const EOS = 0x01;
        /// Argument frames follow.
        const HAVE_ARGS = 0x02;
        /// Data frames follow.
        const HAVE_DATA = 0x04;
    }
}

bitflags! {
    /// Flags of a `command-argument` frame.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct CommandArgumentFlags: u8 {
        /// The value goes on in the next argument frame.
        const CONTINUATION = 0x01;
        /// This is the last argument.
        const EOA = 0x02;
    }
}

bitflags! {
    /// Flags of a `command-data` frame.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct CommandDataFlags: u8 {
        /// More data frames follow.
        const CONTINUATION = 0x01;
        /// This is the last data frame.
        const EOS = 0x02;
    }
}

bitflags! {
    /// Flags of a `bytes-response` frame; the two are exclusive.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct BytesResponseFlags: u8 {
        /// More response frames follow.
        const CONTINUATION = 0x01;
        /// This is the last response frame.
        const EOS = 0x02;
    }
}

bitflags! {
    /// Flags of an `error-response` frame.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ErrorResponseFlags: u8 {
        /// A protocol error: the connection is to be closed.
        const PROTOCOL = 0x01;
        /// An error of the application (the command failed).
        const APPLICATION = 0x02;
    }
}

/// A decoded frame header.
///
/// `frame_type` and `flags` are the raw 4-bit values; [`FrameHeader::known_type`] gives
/// the typed view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Payload length on the wire (after content encoding), header not counted.
    pub length: usize,
    /// The request this frame belongs to.
    pub request_id: RequestId,
    /// The stream this frame travels on.
    pub stream_id: StreamId,
    /// Stream flags, undefined bits retained.
    pub stream_flags: StreamFlags,
    /// Frame type, 0..=15.
    pub frame_type: u8,
    /// Frame flags, 0..=15, meaning depends on the type.
    pub flags: u8,
}

impl FrameHeader {
    /// Parses a header from exactly [`HEADER_LEN`] bytes.
    ///
    /// Every byte pattern is a valid header; limits are the decoder's business.
    ///
    /// ```
    /// use hgframe_wire::{FrameHeader, FrameType};
    /// let h = FrameHeader::parse(&[0x0e, 0, 0, 1, 0, 1, 1, 0x11]);
    /// assert_eq!(h.length, 14);
    /// assert_eq!(h.known_type(), Some(FrameType::CommandName));
    /// ```
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        let [l0, l1, l2, r0, r1, stream_id, stream_flags, type_flags] = *bytes;
        Self {
            // 24-bit little endian. (The seed multiplies the third byte by 16384, a bug.)
            length: usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16,
            request_id: RequestId(u16::from_le_bytes([r0, r1])),
            stream_id: StreamId(stream_id),
            stream_flags: StreamFlags::from_bits_retain(stream_flags),
            frame_type: type_flags >> 4,
            flags: type_flags & 0x0f,
        }
    }

    /// The header's bytes. The length is truncated to 24 bits and the type and flags to
    /// 4 bits; [`crate::Frame`] guarantees they fit.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let len = (self.length as u32).to_le_bytes();
        let rid = self.request_id.0.to_le_bytes();
        [
            len[0],
            len[1],
            len[2],
            rid[0],
            rid[1],
            self.stream_id.0,
            self.stream_flags.bits(),
            (self.frame_type & 0x0f) << 4 | (self.flags & 0x0f),
        ]
    }

    /// The frame type, if it is one the protocol defines.
    pub fn known_type(&self) -> Option<FrameType> {
        FrameType::try_from(self.frame_type).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn third_length_byte_is_times_65536() {
        // The seed's parser would read 16384 * 1 here.
        let h = FrameHeader::parse(&[0, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(h.length, 65536);
    }

    #[test]
    fn header_round_trips_every_type_and_flag_nibble() {
        for type_flags in 0..=255u8 {
            let bytes = [1, 2, 3, 4, 5, 6, 7, type_flags];
            assert_eq!(FrameHeader::parse(&bytes).to_bytes(), bytes);
        }
    }

    #[test]
    fn frame_types_by_number_and_name() {
        for t in FrameType::ALL {
            assert_eq!(FrameType::try_from(t as u8), Ok(t));
            assert_eq!(FrameType::from_name(t.name()), Some(t));
        }
        assert_eq!(FrameType::try_from(7), Err(7));
        assert_eq!(FrameType::try_from(9), Err(9));
        assert_eq!(FrameType::from_name("nope"), None);
    }

    #[test]
    fn flag_name_tables_match_the_bitflags() {
        assert_eq!(
            FrameType::CommandName.flag_names()[2].1,
            CommandNameFlags::HAVE_DATA.bits()
        );
        assert_eq!(
            FrameType::CommandArgument.flag_names()[1].1,
            CommandArgumentFlags::EOA.bits()
        );
        assert_eq!(
            FrameType::CommandData.flag_names()[1].1,
            CommandDataFlags::EOS.bits()
        );
        assert_eq!(
            FrameType::BytesResponse.flag_names()[0].1,
            BytesResponseFlags::CONTINUATION.bits()
        );
        assert_eq!(
            FrameType::ErrorResponse.flag_names()[1].1,
            ErrorResponseFlags::APPLICATION.bits()
        );
        assert_eq!(STREAM_FLAG_NAMES[2].1, StreamFlags::ENCODED.bits());
    }

    #[test]
    fn id_parity() {
        assert!(RequestId(1).is_client_initiated());
        assert!(!RequestId(0).is_client_initiated());
        assert!(StreamId(255).is_client_initiated());
        assert!(!StreamId(2).is_client_initiated());
    }
}
