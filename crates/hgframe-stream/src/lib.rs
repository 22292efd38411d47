//! Streams of the hgframe protocol, and the content encoding of each stream.
//!
//! A *stream* is a one-way series of frames with an 8-bit id: clients open odd ids,
//! servers even ids ([`Side`]). The first frame of a stream carries `stream-begin`, the
//! last `stream-end`; a frame on a closed stream without `stream-begin` is a protocol
//! error. A stream may carry the frames of many requests, and a request may use several
//! streams.
//!
//! Each stream may apply a *content encoding* ([`encoding`]): its first frame is then a
//! `stream-settings` frame naming the profile (`zstd-8mb`), and every frame whose
//! payload went through the encoding carries the `encoded` flag. One compression context
//! lives for the stream's whole life, across requests, and every encoded frame ends at a
//! flush (a zstd block boundary), so each frame's payload decodes as soon as it arrives
//! (see [`OutgoingStream::max_flush_raw_len`]). This is why
//! streams exist: a long-lived context compresses many small messages far better than
//! one context per message, and independent streams compress on several cores at once
//! ([`parallel`]).
//!
//! - [`OutgoingStream`]: the sending half of one stream; stamps `stream-begin`,
//!   `stream-end` and `encoded`, emits `stream-settings`, cuts and encodes data.
//! - [`IncomingStreams`]: every stream the peer opens towards us; validates each frame
//!   against the stream rules and decodes its payload, within [`DecodeLimits`].
//! - [`encoding`]: the [`ContentEncoder`] / [`ContentDecoder`] / [`Profile`] traits, the
//!   `identity` and `zstd-8mb` profiles, the [`Profiles`] registry and negotiation.
//! - [`parallel`]: encode N streams on N worker threads and interleave their frames on
//!   one connection.
//!
//! ```
//! use bytes::Bytes;
//! use hgframe_stream::{DecodeLimits, EncodingSettings, IncomingStreams, OutgoingStream, Profiles, Side};
//! use hgframe_wire::{FrameType, RequestId, StreamId};
//!
//! let profiles = Profiles::default();
//! # #[cfg(feature = "zstd")] {
//! let settings = EncodingSettings::new("zstd-8mb");
//! let mut stream = OutgoingStream::new(StreamId(2), Side::Server, &profiles, &settings)?;
//! let mut frames = Vec::new();
//! stream.push_data(RequestId(1), FrameType::BytesResponse, Bytes::from("hello ".repeat(100)), true, &mut frames)?;
//! stream.end(&mut frames)?;
//!
//! let mut incoming = IncomingStreams::new(Side::Client, profiles, DecodeLimits::default());
//! let mut data = Vec::new();
//! for frame in frames {
//!     if let Some(frame) = incoming.on_frame(frame)? {
//!         data.extend_from_slice(frame.payload());
//!     }
//! }
//! assert_eq!(data, "hello ".repeat(100).as_bytes());
//! # }
//! # Ok::<(), hgframe_stream::StreamError>(())
//! ```
//!
//! This crate does no I/O, reads no clock, and spawns threads only in [`parallel`].
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod encoding;
mod error;
pub mod fuzzing;
mod id;
mod incoming;
mod outgoing;
pub mod parallel;

#[cfg(feature = "deflate")]
pub use encoding::DEFLATE;
#[cfg(feature = "zstd")]
pub use encoding::ZSTD_8MB;
pub use encoding::{
    parse_accept_list, Boundary, ContentDecoder, ContentEncoder, EncodingError, EncodingSettings,
    Profile, Profiles, IDENTITY,
};
pub use error::StreamError;
pub use id::{Side, StreamIdAllocator};
pub use incoming::{DecodeLimits, DecodeLimitsError, IncomingStreams};
pub use outgoing::{
    OutgoingStream, StreamStats, DEFAULT_MAX_FRAME_RAW_LEN, DEFAULT_ONE_PASS_MIN_LEN,
};
pub use parallel::{ParallelEncoder, ParallelError, StreamWriter};
