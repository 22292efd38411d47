//! hgframe: Mercurial's unified frame-based wire protocol, finished and made fast.
//!
//! This facade re-exports the layers, bottom-up:
//!
//! - [`wire`]: frames, payloads, the incremental decoder, builders.
//! - [`stream`]: stream ids and flags, per-stream content encodings (zstd, deflate).
//! - [`reactor`]: the sans-IO server and client state machines.
//! - [`http`] (feature `http`): one HTTP message per exchange, and byte streams.
//!
//! The `hgframe` binary (see `docs/cli.md`) drives them all.
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub use hgframe_reactor as reactor;
pub use hgframe_stream as stream;
pub use hgframe_wire as wire;

#[cfg(feature = "http")]
pub use hgframe_engine as engine;
#[cfg(feature = "http")]
pub use hgframe_http as http;

#[cfg(feature = "http")]
pub mod commands;

pub use hgframe_wire::{Frame, FrameType, RequestId, StreamId};
