//! What the server reactor asks its driver to do: one [`ServerAction`] per event, as
//! the seed's `(action, meta)` tuple.

use std::collections::BTreeMap;

use bytes::Bytes;
use hgframe_wire::RequestId;

use crate::error::ProtocolError;

/// The reactor's answer to one event. Handle it before feeding the next event.
///
/// Whatever the action, output may be waiting as well (a protocol error-response after
/// [`ServerAction::Error`], for instance): a driver checks
/// [`crate::ServerReactor::has_pending_output`] and pulls with
/// [`crate::ServerReactor::poll_transmit`] when it can send.
#[must_use = "the reactor's decision must be acted on"]
#[derive(Debug)]
pub enum ServerAction {
    /// Run this command; answer with [`crate::ServerReactor::on_response_data`] (and
    /// friends) under its request id.
    RunCommand(CommandRequest),
    /// The next piece of a running command's data ([`crate::DataMode::Streaming`]
    /// only); `eos` marks the last piece.
    CommandData {
        /// The command's request.
        request_id: RequestId,
        /// The piece, as it arrived (decoded, not copied).
        data: Bytes,
        /// Whether it is the last piece.
        eos: bool,
    },
    /// The client cancelled this running command (extension `cancel`): stop its
    /// handler and drop whatever it still answers. The reactor already dropped the
    /// response frames it could and queued the request's last frame.
    Cancelled(RequestId),
    /// Output is ready: pull it with [`crate::ServerReactor::poll_transmit`].
    SendFrames,
    /// Nothing to do until more frames arrive.
    WantFrame,
    /// The client broke the protocol. The reactor refuses every later frame
    /// ("server already errored"); a protocol error-response for the client is queued
    /// as output.
    Error(ProtocolError),
    /// Nothing to do.
    Noop,
}

/// A command to run: everything its frames carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    /// The request id responses must carry.
    pub request_id: RequestId,
    /// The command's name, as received.
    pub name: Bytes,
    /// The arguments by name.
    pub args: BTreeMap<Bytes, Bytes>,
    /// The whole command data, in [`crate::DataMode::Buffered`] mode, if the command
    /// announced data; always `None` in streaming mode.
    pub data: Option<Bytes>,
    /// Whether [`ServerAction::CommandData`] actions follow for this request
    /// ([`crate::DataMode::Streaming`] and the command announced data).
    pub data_follows: bool,
}
