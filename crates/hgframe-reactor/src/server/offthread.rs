//! Compression off the driver's thread: extra output streams that the driver owns.
//!
//! The protocol lets a sender use several streams at once, each with its own content
//! encoding context, so large responses can be compressed on several cores. The reactor
//! stays sans-IO: it hands the driver an [`OutgoingStream`] with the negotiated encoding
//! ([`ServerReactor::open_output_stream`]); the driver encodes response data on it
//! wherever it likes (another thread) and gives the frames back
//! ([`ServerReactor::on_response_frames`]), which the reactor checks and queues like its
//! own. The reactor still tracks every request: frames of a request that is not running
//! are refused.
//!
//! Order: the data of one request is the concatenation of its frames in wire order,
//! whatever stream they come on, so the driver feeds the pieces of one request in order.
//! A stream's frames must also reach the wire in the order it produced them (its encoding
//! context depends on them): a stream whose frames were refused is unusable, and its id
//! is best never given back (drop it).
//!
//! Stream end: the driver may call [`OutgoingStream::end`] on the frames of a piece before
//! handing them over. If it does not (it rarely knows which piece is a stream's last),
//! the stream simply ends with the exchange, as the reactor's own stream does when its
//! last frame already left.

use hgframe_stream::{OutgoingStream, Side, StreamError};
use hgframe_wire::{Frame, RequestId, StreamId};

use super::ServerReactor;
use crate::action::ServerAction;
use crate::error::ReactorError;

/// Number of stream ids a server has (the even ones).
pub(super) const SERVER_STREAM_IDS: usize = 128;

impl ServerReactor {
    /// A new server stream for the driver to encode response data on, off the reactor's
    /// thread if it likes: an even id not in use (neither the reactor's own output
    /// stream nor another stream handed out), the negotiated encoding and
    /// [`crate::ServerConfig::max_frame_size`]. Its frames go back through
    /// [`ServerReactor::on_response_frames`]; give the stream back with
    /// [`ServerReactor::close_output_stream`].
    ///
    /// Fails with [`ReactorError::NoStreamId`] when all 128 server stream ids are in use, or
    /// [`ReactorError::Encode`] if the negotiated encoding cannot be set up.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use hgframe_reactor::{ServerAction, ServerConfig, ServerReactor};
    /// use hgframe_wire::{Frame, FrameType};
    ///
    /// let mut server = ServerReactor::new(ServerConfig::default());
    /// let frame = Frame::from_human("1 1 stream-begin command-name eos cat").unwrap();
    /// let ServerAction::RunCommand(cmd) = server.on_frame(frame) else { panic!() };
    /// let mut stream = server.open_output_stream()?;
    /// // Stream 2 is the reactor's own.
    /// assert_eq!(stream.id().0, 4);
    /// // On any thread: encode a piece of the response.
    /// let mut frames = Vec::new();
    /// stream
    ///     .push_data(cmd.request_id, FrameType::BytesResponse, Bytes::from("meow"), false, &mut frames)
    ///     .unwrap();
    /// // Back on the driver: queue it, then end the response on the reactor's stream.
    /// server.on_response_frames(cmd.request_id, frames, false)?;
    /// server.on_response_data(cmd.request_id, Bytes::new(), true)?;
    /// server.close_output_stream(stream);
    /// let ids: Vec<u8> = std::iter::from_fn(|| server.poll_frame())
    ///     .map(|f| f.stream_id().0)
    ///     .collect();
    /// assert_eq!((ids.first(), ids.last()), (Some(&4), Some(&2)));
    /// # Ok::<(), hgframe_reactor::ReactorError>(())
    /// ```
    pub fn open_output_stream(&mut self) -> Result<OutgoingStream, ReactorError> {
        // The reactor's own stream takes the first id, as it would without extra
        // streams, so output that never uses them looks the same.
        if self.outgoing.is_none() {
            self.stream()?;
        }
        let id = self.stream_ids.allocate().ok_or(ReactorError::NoStreamId {
            max: SERVER_STREAM_IDS,
        })?;
        match OutgoingStream::new(id, Side::Server, &self.profiles, &self.encoding) {
            Ok(mut stream) => {
                stream.set_max_frame_size(self.config.max_frame_size());
                self.driver_streams.insert(id);
                Ok(stream)
            }
            Err(e) => {
                self.stream_ids.release(id);
                Err(ReactorError::Encode(e))
            }
        }
    }

    /// Gives back a stream from [`ServerReactor::open_output_stream`]: its id may be used
    /// again, so all its frames must have been handed over (and, if it was open, its
    /// last one should carry `stream-end`: [`OutgoingStream::end`]). A stream that is
    /// not the driver's is ignored.
    pub fn close_output_stream(&mut self, stream: OutgoingStream) {
        let id = stream.id();
        if self.driver_streams.remove(&id) {
            self.stream_ids.release(id);
        }
    }

    /// Streams handed to the driver and not given back.
    pub fn driver_streams(&self) -> usize {
        self.driver_streams.len()
    }

    /// Frames that a stream from [`ServerReactor::open_output_stream`] produced for a
    /// running request, queued as they are; `eos` when they end the response, as
    /// [`ServerReactor::on_response_data`]'s `eos` (the request id becomes reusable once
    /// they have been transmitted).
    ///
    /// Checked first, all or nothing: the request must be running
    /// ([`ReactorError::UnknownRequest`], [`ReactorError::ResponseFinished`]), every frame
    /// must belong to it ([`ReactorError::FrameOfAnotherRequest`]), be on a driver stream
    /// ([`ReactorError::NotADriverStream`]) and fit the frame
    /// size (`Encode(StreamError::FrameTooLarge)`).
    pub fn on_response_frames(
        &mut self,
        request: RequestId,
        frames: Vec<Frame>,
        eos: bool,
    ) -> Result<ServerAction, ReactorError> {
        self.check_running(request)?;
        for frame in &frames {
            self.check_driver_frame(request, frame)?;
        }
        self.respond(request, frames, eos);
        Ok(self.output_action())
    }

    fn check_driver_frame(&self, request: RequestId, frame: &Frame) -> Result<(), ReactorError> {
        if frame.request_id() != request {
            return Err(ReactorError::FrameOfAnotherRequest {
                request,
                found: frame.request_id(),
            });
        }
        let id: StreamId = frame.stream_id();
        if !self.driver_streams.contains(&id) {
            return Err(ReactorError::NotADriverStream(id));
        }
        let (len, max) = (frame.payload().len(), self.config.max_frame_size());
        if len > max {
            return Err(ReactorError::Encode(StreamError::FrameTooLarge {
                id,
                len,
                max,
            }));
        }
        Ok(())
    }
}
