//! The exchange engine of the hgframe protocol: everything between a byte stream and the
//! commands an application serves, on any transport, over tokio.
//!
//! The layers below are sans-IO (`hgframe-wire`, `hgframe-stream`, `hgframe-reactor`);
//! this crate drives them, the way `quinn` drives `quinn-proto`. A transport (the byte
//! stream here, HTTP in `hgframe-http`) only turns its input into frames and carries the
//! output away; the engine does the rest:
//!
//! - Serving: register commands in a [`Registry`] (each an async [`Handler`] that reads a
//!   [`CommandInput`] and streams its answer through a [`Responder`]); a [`Server`] runs
//!   exchanges over them with the limits of an [`EngineConfig`].
//!   [`bytestream::serve_connection`] and [`bytestream::serve_tcp`] serve byte streams.
//! - Calling: [`bytestream::Connection`] over a byte stream (the HTTP client lives in
//!   `hgframe-http`); both return a [`ResponseStream`] per command, and a [`Batch`] for
//!   several commands at once.
//! - Counting: every exchange ends with [`ExchangeStats`] (per-stream raw and wire
//!   bytes, frames, encoding time), given to [`EngineConfig::set_observer`] and logged.
//!
//! # Admission by cost
//!
//! An exchange admits work by what it costs, not by a count of requests: handlers
//! running (per exchange and server-wide), bytes of output held for the client, bytes of
//! commands waiting to run, and a server-wide memory budget over all of them
//! ([`EngineConfig`] lists each). At a limit a legal exchange waits: a full-duplex one
//! stops reading its input (TCP or HTTP/2 flow control pushes back on the client), a
//! half-duplex one defers the *execution* of its commands, so a batch of any size holds
//! a bounded amount. Every command that is accepted gets exactly one terminal answer
//! (its last frame or an error frame), whatever fails: a handler's panic, an encoder's
//! error, a cancelled handler.
//!
//! # Reading responses
//!
//! The server interleaves the responses of an exchange as it likes, and the protocol
//! has no flow control per response: the client can only stop reading the connection
//! as a whole. So the client never waits on one response for the sake of another:
//!
//! - A [`Batch`] is read by one consumer, in arrival order: it can never wait for
//!   itself. When it is read slowly, the client stops reading from the server once
//!   [`ClientOptions::set_response_queue`] events wait in it (back-pressure).
//! - Several [`ResponseStream`]s of one exchange (concurrent `call`s on one
//!   [`crate::bytestream::Connection`]) may be read in any order, from any tasks. Events
//!   for a stream nobody reads yet are held, up to [`ClientOptions::set_response_buffer`]
//!   bytes for the whole exchange (default 256 MiB). The client stops reading from the
//!   server while a stream is read slowly, unless another stream waits for its next
//!   event (its data may be behind). At the limit, with a stream waiting, the stream
//!   (or batch) holding the most unread bytes fails with an error saying so (a batch:
//!   each of its calls not ended yet) and its data is dropped: memory stays bounded
//!   (the limit plus one frame) and nothing hangs. To never see that error, read the
//!   responses of an exchange concurrently, or use a [`Batch`].
//!
//! # Cancel safety
//!
//! Dropping a future of this crate never corrupts shared state: an exchange or a
//! connection is owned by its own task, and the futures handed out only talk to it
//! through queues. Dropping a [`ResponseStream`] discards the rest of that response
//! (the exchange goes on for the others).
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod admission;
pub mod bytestream;
mod caller;
mod client;
mod command;
mod config;
mod error;
mod exchange;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod offload;
mod output;
mod server;
mod stats;

pub use admission::{BlockingPool, Charge, JobFailed, MemoryBudget};
pub use caller::{Caller, PeerAddr, Principal};
pub use client::{
    Batch, BatchEvent, Call, CallData, ClientOptions, ClientStats, Response, ResponseEvent,
    ResponseStream, Session, DEFAULT_PREFIX, MEDIA_TYPE,
};
pub use command::{
    Command, CommandError, CommandInput, DataReader, Disconnected, Handler, Permission, Registry,
    Responder, State, RESERVED_NAMES,
};
pub use config::{
    ConfigError, EngineConfig, ExchangeObserver, MAX_PROGRESS_INTERVAL, MIN_PROGRESS_INTERVAL,
};
pub use error::{Error, ErrorKind};
pub use exchange::Scope;
pub use hgframe_reactor::ResponseEncoding;
pub use hgframe_wire::payload::text_output::TextAtom;
pub use output::{FrameInput, Output, OutputChunk};
pub use server::{Duplex, ExchangeFuture, Running, Server};
pub use stats::{ExchangeStats, Outcome, StreamCounters, Transport};

#[doc(hidden)]
pub mod __private {
    //! For `hgframe-http` only: the client driver, which its HTTP client runs.
    pub use crate::client::driver::{AcceptedExtensions, Driver, Input, Item, NewCall};
    pub use crate::client::{CallQueue, Counters};
}
