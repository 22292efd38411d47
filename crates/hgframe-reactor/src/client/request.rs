//! The state of one request on the client, from `call_command` to the end of its
//! response.
//!
//! ```text
//!  start_command ─┬─ no data ──────────────────────────────┐
//!                 └─ data ──> SendingData ── data eos ──────┤
//!                                                           v
//!                                                    AwaitingResponse
//!  Either state ── bytes-response eos / error-response ──> (removed: id reusable)
//! ```
//!
//! `cancel` (negotiated extension) moves either state to `Cancelled`, which swallows
//! the request's frames until its last one, then frees the id.
//!
//! A response may end while the command's data is still being sent (the server
//! answered early): the client then closes the data with an empty `eos` frame, so the
//! server's side of the request ends too, and refuses more data for it.

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestState {
    /// The command announced data and its last piece has not been sent.
    SendingData,
    /// Every frame of the command was queued; the response has not ended.
    AwaitingResponse,
    /// The client cancelled it (extension `cancel`): its frames are dropped until the
    /// last one (`bytes-response` eos, `error-response`, or the server's `cancel`).
    Cancelled,
}
