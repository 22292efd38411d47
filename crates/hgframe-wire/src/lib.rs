//! The frames of hgframe: Mercurial's unified frame-based wire protocol (2018), exact to
//! the byte.
//!
//! Every frame is an 8-byte header and a payload:
//!
//! ```text
//!  0       1       2       3       4       5       6       7       8
//!  +-------+-------+-------+-------+-------+-------+-------+-------+---------
//!  | payload length (u24 LE)| request id (LE)| stream| stream| type  | payload
//!  |                        |                | id    | flags | flags | ...
//!  +-------+-------+-------+-------+-------+-------+-------+-------+---------
//!                                                         (type: high 4 bits,
//!                                                          flags: low 4 bits)
//! ```
//!
//! - [`header`]: the header, ids, frame types and their flags.
//! - [`Frame`]: a header with its payload as [`bytes::Bytes`].
//! - [`FrameDecoder`] / [`Frames`]: incremental and whole-buffer decoding, no payload copy.
//! - [`payload`]: `command-argument`, `text-output`, `stream-settings`, `error-response`.
//! - [`build`]: builders producing the same frames as the seed's generators.
//! - [`extension`]: the extension frame types (`cancel`, `progress`) and their negotiation.
//! - [`human`]: the human-readable one-line syntax of the command-line tool.
//! - `codec` (feature `tokio-util`): a `Decoder`/`Encoder` for `Framed`.
//!
//! This crate does no I/O and never panics on input.
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod build;
#[cfg(feature = "tokio-util")]
pub mod codec;
mod decoder;
mod error;
pub mod extension;
mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod human;
pub mod payload;

pub use decoder::{FrameDecoder, Frames};
pub use error::{BuildError, DecodeError, FrameError, HumanSyntaxError, PayloadError};
pub use frame::{Frame, INLINE_PAYLOAD_MAX};
pub use header::{
    BytesResponseFlags, CommandArgumentFlags, CommandDataFlags, CommandNameFlags,
    ErrorResponseFlags, FrameHeader, FrameType, RequestId, StreamFlags, StreamId,
    DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_PAYLOAD_LEN, HEADER_LEN, MAX_PAYLOAD_LEN,
};
