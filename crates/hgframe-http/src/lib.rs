//! Transports of the hgframe protocol: one HTTP message per exchange (hyper 1.x, tokio),
//! and any long-lived byte stream.
//!
//! An *exchange* is any number of commands and their responses, on any number of
//! streams. Over HTTP, a whole exchange is one request and one response (PROTOCOL.md):
//!
//! ```text
//! POST /api/exp-http-v2-0001/<ro|rw>/<command>       Accept and Content-Type:
//! HgFrame-Encodings: zstd-8mb, identity                application/mercurial-exp-framing-0002
//!
//! <frames of one command, or of many for `multirequest`>  ->  <frames of the responses>
//! ```
//!
//! Over a byte stream (TCP, a Unix socket, a child's pipes), the same frames flow both
//! ways for as long as the connection lives, and so do the streams and their compression
//! contexts ([`bytestream`] says how encodings are negotiated there).
//!
//! - Serving: register commands in a [`Registry`] (each an async [`Handler`] that reads a
//!   [`CommandInput`] and streams its answer through a [`Responder`]), then mount
//!   [`HgFrameService`] (a [`tower::Service`]) in any HTTP stack, or run it with
//!   [`serve`] ([`serve_service`] when it sits behind middleware);
//!   [`bytestream::serve_connection`] and [`bytestream::serve_tcp`] serve byte streams.
//!   [`fileserver::FileCommands`] are the commands of `hgframe serve`.
//! - Calling: [`Client`] over HTTP, [`bytestream::Connection`] over a byte stream; both
//!   return a [`ResponseStream`] per command.
//! - Counting: every exchange ends with [`ExchangeStats`] (per-stream raw and wire
//!   bytes, frames, encoding time), given to [`ServerConfig::set_observer`] and logged.
//!
//! # How a server exchange runs
//!
//! One task owns the exchange's [`hgframe_reactor::ServerReactor`] (over HTTP, the
//! connection's task, through the response body it drives): it reads the request frame
//! by frame as it arrives, runs the commands' handlers, and pulls encoded output from
//! the reactor only when the connection can take it. Handlers report through a bounded
//! queue, so a slow reader pauses the handlers: the memory of an exchange is bounded by
//! its queues ([`ServerConfig`] documents each).
//!
//! Over HTTP/1.x exchanges are half duplex by default, as the seed's deferred output:
//! the response starts once the request has ended, and command data reaches handlers
//! whole. Over HTTP/2 (h2c included) and byte streams they are full duplex: responses
//! start while the request is still arriving, and command data streams to handlers.
//!
//! # Cancel safety
//!
//! Dropping a future of this crate never corrupts shared state: an exchange or a
//! connection is owned by its own task, and the futures handed out only talk to it
//! through queues. Dropping a [`ResponseStream`] discards the rest of that response
//! (the exchange goes on for the others); dropping a [`Client`] call future before it
//! returns abandons the whole HTTP request.
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod body;
pub mod bytestream;
mod client;
mod command;
mod config;
mod error;
mod exchange;
pub mod fileserver;
mod offload;
mod server;
mod stats;

pub use body::FrameBody;
pub use client::{Call, CallData, Client, ClientOptions, Response, ResponseEvent, ResponseStream};
pub use command::{
    Command, CommandError, CommandInput, DataReader, Disconnected, Handler, Permission, Registry,
    Responder, RESERVED_NAMES,
};
pub use config::{
    Duplex, ExchangeObserver, ServerConfig, DEFAULT_PREFIX, ENCODINGS_HEADER, MEDIA_TYPE,
};
pub use error::{Error, ErrorKind};
pub use hgframe_wire::payload::text_output::TextAtom;
pub use server::{serve, serve_service, HgFrameService};
pub use stats::{ExchangeStats, Outcome, StreamCounters, Transport};
