//! The server's side of the extensions (docs/protocol.md, "Extensions"): `cancel` from
//! the client, `progress` to it. Both exist only once negotiated: before that a `cancel`
//! frame is an unknown type (a protocol error, as the seed's reactor has it) and
//! [`ServerReactor::on_progress`] refuses to emit.
//!
//! A cancelled request that was running gets one last frame, a `cancel` frame from the
//! server: the request id is free again only once the last frame of its response left,
//! and without that frame a client could never tell when the server stopped using the
//! id (frames already on the way would be taken for the next request with that id).

use hgframe_wire::build::{cancel_frame, progress_frame};
use hgframe_wire::extension::{Extension, Extensions};
use hgframe_wire::payload::progress::Progress;
use hgframe_wire::{Frame, RequestId};

use super::request::{RequestState, Response};
use super::ServerReactor;
use crate::action::ServerAction;
use crate::error::{ProtocolError, ReactorError};

impl ServerReactor {
    /// Negotiates the extensions again with those the client offered (over HTTP, the
    /// `HgFrame-Extensions` header; over a byte stream, `hello`), overriding
    /// [`crate::ServerConfig::peer_extensions`]. Returns those accepted: ours that the
    /// client offered, the value to answer with.
    ///
    /// ```
    /// use hgframe_reactor::{ServerConfig, ServerReactor};
    /// use hgframe_wire::extension::{Extension, Extensions};
    /// let mut server = ServerReactor::new(ServerConfig::default());
    /// assert!(server.extensions().is_empty());
    /// let accepted = server.set_peer_extensions(Extensions::only(Extension::Cancel));
    /// assert_eq!(accepted.to_string(), "cancel");
    /// ```
    pub fn set_peer_extensions(&mut self, offered: Extensions) -> Extensions {
        self.extensions = self.config.extensions().intersect(offered);
        self.extensions
    }

    /// The extensions in use with this client.
    pub fn extensions(&self) -> Extensions {
        self.extensions
    }

    /// A progress report in a running request's response (a `progress` frame). Fails
    /// with [`ReactorError::NotNegotiated`] unless the client accepted `progress`, and
    /// with [`ReactorError::Build`] if the report breaks the payload's bounds. The
    /// reactor does not rate-limit: the driver, which has a clock, does.
    pub fn on_progress(
        &mut self,
        request: RequestId,
        progress: &Progress,
    ) -> Result<ServerAction, ReactorError> {
        if !self.extensions.contains(Extension::Progress) {
            return Err(ReactorError::NotNegotiated(Extension::Progress));
        }
        self.check_running(request)?;
        let frame = progress_frame(self.target(request), progress)?;
        let mut frames = Vec::new();
        self.stream()?
            .push_frame(frame, &mut frames)
            .map_err(ReactorError::Encode)?;
        self.respond(request, frames, false);
        Ok(self.output_action())
    }

    /// A negotiated `cancel` frame. Unknown or finished requests are ignored (the
    /// cancel crossed the response's end). A command still arriving is dropped (its
    /// bytes freed); a running one is reported to the driver
    /// ([`ServerAction::Cancelled`]). Either way its response frames still queued are
    /// dropped where the stream allows it, and a `cancel` frame ends the response.
    pub(super) fn on_cancel(&mut self, frame: &Frame) -> Result<ServerAction, ProtocolError> {
        let id = frame.request_id();
        let malformed = |reason: &str| ProtocolError::MalformedExtension {
            extension: Extension::Cancel.name(),
            request_id: id,
            reason: reason.to_owned(),
        };
        if frame.flags() != 0 {
            return Err(malformed("cancel defines no flags"));
        }
        if !frame.payload().is_empty() {
            return Err(malformed("cancel carries no payload"));
        }
        let Some(state) = self.requests.get_mut(&id) else {
            return Ok(ServerAction::WantFrame);
        };
        let (running, dispatched) = match state {
            RequestState::ReceivingArgs(pending) | RequestState::ReceivingData(pending) => {
                let charged = pending.charged();
                self.budget.release(charged);
                (true, false)
            }
            RequestState::Streaming(Response::Done) => {
                // Answered; the client sends no more data after a cancel.
                self.requests.remove(&id);
                return Ok(ServerAction::Cancelled(id));
            }
            RequestState::Streaming(r) | RequestState::Active(r) => {
                let r = *r;
                // No more data comes for it.
                *state = RequestState::Active(r);
                (r == Response::Running, true)
            }
        };
        if running {
            self.output.drop_request(id);
            let frame = cancel_frame(self.target(id)).map_err(|e| malformed(&e.to_string()))?;
            let mut frames = Vec::new();
            self.stream()
                .and_then(|s| {
                    s.push_frame(frame, &mut frames)
                        .map_err(ReactorError::Encode)
                })
                .map_err(|e| malformed(&e.to_string()))?;
            self.requests
                .insert(id, RequestState::Active(Response::Running));
            self.respond(id, frames, true);
        }
        Ok(if dispatched {
            ServerAction::Cancelled(id)
        } else {
            self.output_action()
        })
    }
}
