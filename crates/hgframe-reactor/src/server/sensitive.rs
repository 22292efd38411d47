//! Sensitive responses: data that must not share a compression context.
//!
//! A compressed stream's context holds everything sent on it; when an attacker can put
//! data of their own into a context that also holds a secret and watch the size of the
//! output, they can guess the secret byte by byte (CRIME and BREACH; RFC 9113 §10.6).
//! A response marked sensitive ([`ServerReactor::set_sensitive`]) therefore leaves on a
//! stream of its own in the `identity` encoding: its bytes appear raw on the wire, and
//! never enter the context that other responses are compressed with. The stream ends
//! with the response's last data frame, and its id is then free again.
//!
//! The cost is the compression of that response (none) and one more stream id while it
//! is under way. Its text output and error frames stay on the exchange's stream.

use hgframe_stream::{EncodingSettings, OutgoingStream, Side};
use hgframe_wire::{Frame, RequestId};

use super::offthread::SERVER_STREAM_IDS;
use super::ServerReactor;
use crate::config::IDENTITY;
use crate::error::ReactorError;

impl ServerReactor {
    /// Sends the rest of `request`'s response data raw, on a fresh `identity` stream of
    /// its own, so it never enters a shared compression context. Does nothing when the
    /// output is not encoded anyway. Call it before the data it protects.
    ///
    /// Fails if the request is not running, or with [`ReactorError::NoStreamId`] when
    /// every server stream id is in use.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use hgframe_reactor::{ServerAction, ServerConfig, ServerReactor};
    /// use hgframe_wire::{Frame, StreamFlags};
    ///
    /// let mut config = ServerConfig::default();
    /// config.set_peer_accepts(&["zstd-8mb"]);
    /// let mut server = ServerReactor::new(config);
    /// let frame = Frame::from_human("1 1 stream-begin command-name eos secret").unwrap();
    /// let ServerAction::RunCommand(cmd) = server.on_frame(frame) else { panic!() };
    /// server.set_sensitive(cmd.request_id)?;
    /// server.on_response_data(cmd.request_id, Bytes::from("hunter2"), true)?;
    /// let frame = server.poll_frame().unwrap();
    /// assert_eq!(frame.payload().as_ref(), b"hunter2");
    /// assert!(frame.stream_flags().contains(StreamFlags::STREAM_BEGIN | StreamFlags::STREAM_END));
    /// # Ok::<(), hgframe_reactor::ReactorError>(())
    /// ```
    pub fn set_sensitive(&mut self, request: RequestId) -> Result<(), ReactorError> {
        self.check_running(request)?;
        if self.encoding.profile == IDENTITY || self.sensitive.contains_key(&request) {
            return Ok(());
        }
        // The exchange's own stream keeps the first id, as without sensitive responses.
        if self.outgoing.is_none() {
            self.stream()?;
        }
        let id = self.stream_ids.allocate().ok_or(ReactorError::NoStreamId {
            max: SERVER_STREAM_IDS,
        })?;
        match OutgoingStream::new(
            id,
            Side::Server,
            &self.profiles,
            &EncodingSettings::new(IDENTITY),
        ) {
            Ok(mut stream) => {
                stream.set_max_frame_size(self.config.max_frame_size());
                self.sensitive.insert(request, stream);
                Ok(())
            }
            Err(e) => {
                self.stream_ids.release(id);
                Err(ReactorError::Encode(e))
            }
        }
    }

    /// Whether `request`'s response data goes raw on a stream of its own.
    pub fn is_sensitive(&self, request: RequestId) -> bool {
        self.sensitive.contains_key(&request)
    }

    /// The stream `request`'s response data goes on.
    pub(super) fn data_stream(
        &mut self,
        request: RequestId,
    ) -> Result<&mut OutgoingStream, ReactorError> {
        if self.sensitive.contains_key(&request) {
            return self
                .sensitive
                .get_mut(&request)
                .ok_or(ReactorError::UnknownRequest(request));
        }
        self.stream()
    }

    /// `request`'s response ends with `frames`: a sensitive stream of its ends with its
    /// last data frame, and its id is free again. One whose last frame is not its own
    /// (an error frame on the exchange's stream) cannot be marked ended: its id is not
    /// reused, and the stream ends with the exchange.
    pub(super) fn end_sensitive(&mut self, request: RequestId, frames: &mut [Frame]) {
        let Some(mut stream) = self.sensitive.remove(&request) else {
            return;
        };
        if stream.end(frames).is_ok() {
            self.stream_ids.release(stream.id());
        }
    }
}
