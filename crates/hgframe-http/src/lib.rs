//! The HTTP transport of the hgframe protocol: one HTTP message per exchange, over hyper
//! 1.x. Everything else (commands, admission, back-pressure, the client driver, the
//! byte-stream transport) is the exchange engine of `hgframe-engine`, re-exported here so
//! that one crate serves both.
//!
//! Over HTTP, a whole exchange is one request and one response:
//!
//! ```text
//! POST /api/exp-http-v2-0001/<ro|rw>/<command>       Accept and Content-Type:
//! HgFrame-Encodings: zstd-8mb, identity                application/mercurial-exp-framing-0002
//!
//! <frames of one command, or of many for `multirequest`>  ->  <frames of the responses>
//! ```
//!
//! - Serving: mount [`HgFrameService`] (a [`tower::Service`]) in any HTTP stack, or run
//!   it with [`serve`] ([`serve_service`] when it sits behind middleware). `serve` also
//!   manages the connections: a limit ([`EngineConfig::max_connections`], where a new
//!   connection closes the one idle the longest), timers that close connections which
//!   hold a slot without using it ([`ServerConfig::detect_timeout`],
//!   [`ServerConfig::header_read_timeout`], [`ServerConfig::connection_idle_timeout`], h2
//!   keep-alive pings), and a graceful shutdown that closes idle connections at once and
//!   busy ones as their last response ends, within [`EngineConfig::shutdown_grace`].
//! - Calling: [`Client`], one HTTP exchange per call or per batch.
//!
//! Over HTTP/1.x exchanges are half duplex by default, as the seed's deferred output:
//! the response starts once the request has ended (commands run, and their data streams
//! to them, while it arrives). Over HTTP/2 (h2c included) they are full duplex:
//! responses start while the request is still arriving. Each exchange runs on a task of
//! its own; the response body is the channel it fills, so its timers hold whatever hyper
//! polls.
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
mod client;
mod config;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod server;

pub use body::FrameBody;
pub use client::{Client, HttpService};
pub use config::{ServerConfig, DECODES_HEADER, ENCODINGS_HEADER, EXTENSIONS_HEADER};
pub use hgframe_engine::{
    bytestream, Batch, BatchEvent, BlockingPool, Call, CallData, Caller, ClientOptions,
    ClientStats, Command, CommandError, CommandInput, ConfigError, DataReader, Disconnected,
    Duplex, EngineConfig, Error, ErrorKind, ExchangeObserver, ExchangeStats, Handler, MemoryBudget,
    Outcome, PeerAddr, Permission, Principal, Registry, Responder, Response, ResponseEvent,
    ResponseStream, Server, Session, State, StreamCounters, TextAtom, Transport, DEFAULT_PREFIX,
    MEDIA_TYPE, RESERVED_NAMES,
};
pub use server::{serve, serve_service, HgFrameService};
