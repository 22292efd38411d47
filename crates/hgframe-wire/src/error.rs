//! Errors of the wire layer, one enum per concern. Each says what was wrong and where.

/// A frame that cannot exist on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The payload does not fit in the 24-bit length field.
    #[error("payload of {len} bytes exceeds the largest frame payload ({max} bytes)")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The largest length a frame can carry.
        max: usize,
    },
    /// The frame type does not fit in 4 bits.
    #[error("frame type {0} does not fit in 4 bits (0..=15)")]
    TypeOutOfRange(u8),
    /// The frame flags do not fit in 4 bits.
    #[error("frame flags {0} do not fit in 4 bits (0..=15)")]
    FlagsOutOfRange(u8),
}

/// Malformed bytes where frames were expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A header declared a payload longer than the accepted maximum. Reported as soon as
    /// the header is in, before any payload is buffered.
    #[error("frame {frame} at byte offset {offset}: payload length {length} exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// 0-based number of the frame.
        frame: u64,
        /// Byte offset of the frame's header in the input.
        offset: u64,
        /// The declared payload length.
        length: usize,
        /// The accepted maximum.
        max: usize,
    },
    /// Input ended inside a frame.
    #[error("frame {frame} at byte offset {offset} is truncated: input ended after {have} of its {need} bytes")]
    Truncated {
        /// 0-based number of the frame.
        frame: u64,
        /// Byte offset of the frame's header in the input.
        offset: u64,
        /// Bytes of the frame that arrived (header included).
        have: usize,
        /// Bytes the frame needs (header included; 8 while the header is incomplete).
        need: usize,
    },
    /// The decoder failed earlier and decodes nothing more.
    #[error("the frame decoder already failed on earlier input")]
    Failed,
}

/// A payload that breaks its type's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload ended before a field it announced.
    #[error("{what}: payload ended at byte {at}, {need} more bytes were announced")]
    Truncated {
        /// Which part was cut.
        what: &'static str,
        /// Offset in the payload where it ended.
        at: usize,
        /// Bytes missing.
        need: usize,
    },
    /// A limit of the format was broken.
    #[error("{limit}: {value} exceeds the maximum of {max}")]
    Limit {
        /// The limit's name (for example "labels per atom").
        limit: &'static str,
        /// The value seen.
        value: usize,
        /// The maximum allowed.
        max: usize,
    },
    /// A string was not in the encoding the format requires.
    #[error("{what} is not valid {encoding}")]
    Encoding {
        /// Which string.
        what: &'static str,
        /// "UTF-8" or "ASCII".
        encoding: &'static str,
    },
    /// Bytes left over after the last field.
    #[error("{what}: {extra} unexpected bytes after the last field")]
    Trailing {
        /// Which payload.
        what: &'static str,
        /// How many bytes.
        extra: usize,
    },
    /// A text-output format string uses a directive other than `%s` and `%%`, or
    /// its `%s` count differs from its argument count.
    #[error("format string: {0}")]
    Format(String),
}

/// A line of the human-readable frame syntax that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HumanSyntaxError {
    /// Fewer than five fields before the payload.
    #[error("expected `<request-id> <stream-id> <stream-flags> <type> <flags> <payload>`, found {0} fields")]
    MissingFields(usize),
    /// A field that is neither a known name nor an integer in range.
    #[error("{field}: `{value}` is not a known name nor an integer in 0..={max}")]
    BadValue {
        /// Which field.
        field: &'static str,
        /// The text found.
        value: String,
        /// The largest integer allowed.
        max: u32,
    },
    /// A malformed backslash escape in the payload.
    #[error("payload: bad escape at character {at}: {why}")]
    BadEscape {
        /// Byte offset of the backslash within the payload text.
        at: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// The payload is too long for a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Frames that cannot be built from the given input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A payload rule was broken (too long a name, too many labels, ...).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A frame could not be formed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Reading command data failed.
    #[error("reading command data: {0}")]
    Io(#[from] std::io::Error),
}
