//! The protocol's brains: sans-IO server and client state machines of hgframe
//! (Mercurial's unified frame-based wire protocol), the seed's `serverreactor`
//! completed, plus a client.
//!
//! A reactor does no I/O, reads no clock and blocks on nothing. It is told what
//! happened and answers what to do; bytes to send are *pulled* from it.
//!
//! # Driving a [`ServerReactor`]
//!
//! - **Inputs from the client.** Decode frames from the transport (for instance with
//!   [`hgframe_wire::FrameDecoder`], its payload limit set to
//!   [`ServerConfig::max_frame_payload`]) and pass each to [`ServerReactor::on_frame`];
//!   when the input ends, call [`ServerReactor::on_input_eof`]. Each call returns one
//!   [`ServerAction`]:
//!   - [`ServerAction::RunCommand`]: run the command (on a task of your own), then
//!   - [`ServerAction::CommandData`] (streaming mode): hand the next piece to it;
//!   - [`ServerAction::SendFrames`]: output is ready;
//!   - [`ServerAction::WantFrame`] / [`ServerAction::Noop`]: nothing to do;
//!   - [`ServerAction::Error`]: the client broke the protocol. Every later frame is
//!     refused ("server already errored"); a protocol `error-response` is queued for
//!     the client. Close the connection once the output is sent.
//! - **Inputs from the application.** As a command produces its answer, call
//!   [`ServerReactor::on_response_data`] (with `eos` on the last piece),
//!   [`ServerReactor::on_text_output`] or [`ServerReactor::on_application_error`].
//!   Responses of several requests may be produced concurrently and interleave on the
//!   wire in any order.
//! - **Output.** Whenever [`ServerReactor::has_pending_output`] is true (after any
//!   call), pull bytes with [`ServerReactor::poll_transmit`] when the transport can
//!   take them: the driver owns back-pressure. In deferred-output mode
//!   ([`ServerConfig::set_defer_output`]) nothing is released before end of input.
//! - **The end.** [`ServerReactor::is_finished`]: input ended, every response was
//!   pulled.
//!
//! A request is tracked from its first frame to the transmission of its last response
//! frame; only then may the client reuse its id. Every allocation a client can cause is
//! charged against a limit of [`ServerConfig`] first.
//!
//! # Driving a [`ClientReactor`]
//!
//! Issue commands with [`ClientReactor::call_command`] (or
//! [`ClientReactor::start_command`] and [`ClientReactor::send_command_data`]), pull
//! their frames with [`ClientReactor::poll_transmit`], feed the server's frames to
//! [`ClientReactor::on_frame`] and act on the [`ClientEvent`]s, and call
//! [`ClientReactor::on_input_eof`] when the server's output ends.
//!
//! # Streams and encodings
//!
//! Frames are checked against the stream rules and decoded through each incoming
//! stream's content encoding ([`hgframe_stream::IncomingStreams`]) before the reactor
//! judges them. Output goes out on one stream per side (server: even ids, client: odd),
//! with `stream-settings` and `encoded` frames for the negotiated profile
//! ([`hgframe_stream::OutgoingStream`]), and `stream-end` on the last frame once the
//! sender knows it is done.
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod action;
mod budget;
mod client;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod server;

pub use action::{CommandRequest, ServerAction};
pub use client::{ClientEvent, ClientReactor};
pub use config::{ClientConfig, DataMode, ServerConfig, IDENTITY, MIN_FRAME_SIZE};
pub use error::{ErrorKind, Limit, ProtocolError, ReactorError};
pub use hgframe_wire::payload::text_output::TextAtom;
pub use server::{ResponseEncoding, ServerReactor};
