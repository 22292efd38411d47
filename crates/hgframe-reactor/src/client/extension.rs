//! The client's side of the extensions: it offers them, uses those the server
//! accepted, sends `cancel` and reads `progress`. Nothing here runs before the server
//! accepted the extension: [`ClientReactor::cancel`] refuses, and a `progress` or
//! `cancel` frame from the server is an unexpected type (a protocol error).

use hgframe_wire::build::{cancel_frame, FrameTarget};
use hgframe_wire::extension::{Extension, Extensions, CANCEL};
use hgframe_wire::payload::progress::Progress;
use hgframe_wire::{BytesResponseFlags, Frame, FrameType, RequestId, StreamId};

use super::request::RequestState;
use super::{ClientEvent, ClientReactor};
use crate::error::{ProtocolError, ReactorError};

impl ClientReactor {
    /// The extensions to offer the server ([`crate::ClientConfig::extensions`]).
    pub fn offered_extensions(&self) -> Extensions {
        self.config.extensions()
    }

    /// The server accepted these extensions (its answer header, or `hello`'s answer):
    /// from now on those the client also offered are used. Returns them.
    pub fn set_extensions(&mut self, accepted: Extensions) -> Extensions {
        self.extensions = accepted.intersect(self.config.extensions());
        self.extensions
    }

    /// The extensions in use.
    pub fn extensions(&self) -> Extensions {
        self.extensions
    }

    /// Cancels a request in flight (extension `cancel`): queues a `cancel` frame, sends
    /// no more of its data, and from now on swallows its frames; its id is free again
    /// once the server's last frame for it arrives. Returns whether a cancel was sent
    /// (not for a request that is not in flight or already cancelled). Fails with
    /// [`ReactorError::NotNegotiated`] unless the server accepted `cancel`.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use hgframe_reactor::{ClientConfig, ClientReactor};
    /// use hgframe_wire::extension::Extensions;
    /// use hgframe_wire::Frame;
    ///
    /// let mut config = ClientConfig::default();
    /// config.set_extensions(Extensions::all());
    /// let mut client = ClientReactor::new(config);
    /// client.set_extensions(Extensions::all());
    /// let id = client.call_command(b"cat", [], None)?;
    /// assert!(client.cancel(id)?);
    /// let mut out = BytesMut::new();
    /// client.poll_transmit(&mut out, 1 << 16);
    /// // command-name, then the cancel frame (type 9).
    /// assert_eq!(&out[out.len() - 8..], [0, 0, 0, 1, 0, 1, 0, 0x90]);
    /// // Response frames still on the way are dropped; the server's cancel ends it.
    /// let late = Frame::from_human("1 2 stream-begin bytes-response continuation x").unwrap();
    /// assert!(client.on_frame(late)?.is_empty());
    /// assert!(client.on_frame(Frame::from_human("1 2 0 9 0").unwrap())?.is_empty());
    /// assert_eq!(client.in_flight(), 0);
    /// # Ok::<(), hgframe_reactor::ReactorError>(())
    /// ```
    pub fn cancel(&mut self, request: RequestId) -> Result<bool, ReactorError> {
        if !self.extensions.contains(Extension::Cancel) {
            return Err(ReactorError::NotNegotiated(Extension::Cancel));
        }
        self.check_usable()?;
        match self.requests.get(&request) {
            None | Some(RequestState::Cancelled) => return Ok(false),
            Some(RequestState::SendingData | RequestState::AwaitingResponse) => {}
        }
        let frame = cancel_frame(FrameTarget::new(request, StreamId(1)))?;
        let mut frames = Vec::new();
        self.stream()?
            .push_frame(frame, &mut frames)
            .map_err(ReactorError::Encode)?;
        self.queue(frames);
        self.requests.insert(request, RequestState::Cancelled);
        Ok(true)
    }

    /// A frame of a cancelled request: dropped; its last frame frees the id.
    pub(super) fn after_cancel(
        &mut self,
        frame: &Frame,
    ) -> Result<Vec<ClientEvent>, ProtocolError> {
        let last = match frame.known_type() {
            Some(FrameType::BytesResponse) => frame.flags() & BytesResponseFlags::EOS.bits() != 0,
            Some(FrameType::ErrorResponse) => true,
            _ => frame.frame_type() == CANCEL,
        };
        if last {
            self.requests.remove(&frame.request_id());
        }
        Ok(Vec::new())
    }
}

/// A negotiated `progress` frame as an event.
pub(super) fn progress_event(frame: &Frame) -> Result<ClientEvent, ProtocolError> {
    let request_id = frame.request_id();
    let malformed = |reason: String| ProtocolError::MalformedExtension {
        extension: Extension::Progress.name(),
        request_id,
        reason,
    };
    if frame.flags() != 0 {
        return Err(malformed("progress defines no flags".to_owned()));
    }
    let p = Progress::parse(frame.payload()).map_err(|e| malformed(e.to_string()))?;
    Ok(ClientEvent::Progress {
        request_id,
        topic: p.topic,
        position: p.position,
        total: p.total,
    })
}
