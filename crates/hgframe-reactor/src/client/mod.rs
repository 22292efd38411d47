//! The client reactor: issues commands as frames and turns the server's frames into
//! per-request events.

mod extension;
mod request;

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use hgframe_stream::{
    EncodingSettings, IncomingStreams, OutgoingStream, Profiles, Side, StreamError,
    StreamIdAllocator,
};
use hgframe_wire::build::{command_head_frames, FrameTarget};
use hgframe_wire::payload::error_response::ErrorResponse;
use hgframe_wire::payload::text_output::{self, TextAtom};
use hgframe_wire::{BytesResponseFlags, ErrorResponseFlags, Frame, FrameType, RequestId, StreamId};

use self::request::RequestState;
use crate::config::{ClientConfig, IDENTITY};
use crate::error::{check_settings_flags, ErrorKind, Limit, ProtocolError, ReactorError};
use hgframe_wire::extension::{Extension, Extensions, PROGRESS};

/// What happened to a request, as the server's frames tell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Response bytes, decoded, as they arrived; `eos` on the last piece (the response
    /// is then complete and the request over).
    ResponseData {
        /// The request.
        request_id: RequestId,
        /// The bytes.
        data: Bytes,
        /// Whether the response is complete.
        eos: bool,
    },
    /// Text for people.
    TextOutput {
        /// The request.
        request_id: RequestId,
        /// The atoms of the frame.
        atoms: Vec<TextAtom>,
    },
    /// How far the request got (extension `progress`), as the server reported it, in
    /// order with the request's other events.
    Progress {
        /// The request.
        request_id: RequestId,
        /// What progresses.
        topic: String,
        /// How far it got.
        position: u64,
        /// Where it ends; 0 when unknown.
        total: u64,
    },
    /// The request failed; it is over.
    Error {
        /// The request.
        request_id: RequestId,
        /// Protocol, application, or connection closed.
        kind: ErrorKind,
        /// The message for people.
        message: String,
    },
}

impl ClientEvent {
    /// The request the event is about.
    pub fn request_id(&self) -> RequestId {
        match self {
            Self::ResponseData { request_id, .. }
            | Self::TextOutput { request_id, .. }
            | Self::Progress { request_id, .. }
            | Self::Error { request_id, .. } => *request_id,
        }
    }

    /// Whether the event ends its request.
    pub fn is_final(&self) -> bool {
        match self {
            Self::ResponseData { eos, .. } => *eos,
            Self::TextOutput { .. } | Self::Progress { .. } => false,
            Self::Error { .. } => true,
        }
    }
}

/// The client side of the protocol, as a sans-IO state machine.
///
/// Commands go in with [`ClientReactor::call_command`] (or
/// [`ClientReactor::start_command`] then [`ClientReactor::send_command_data`]); their
/// frames are pulled with [`ClientReactor::poll_transmit`]. The server's frames go in
/// with [`ClientReactor::on_frame`], which returns what happened to each request.
/// Several commands may be in flight at once, answered in any order.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use hgframe_reactor::{ClientConfig, ClientEvent, ClientReactor};
/// use hgframe_wire::Frame;
///
/// let mut client = ClientReactor::new(ClientConfig::default());
/// let id = client.call_command(b"echo", [(Bytes::from("x"), Bytes::from("1"))], None)?;
/// let mut out = BytesMut::new();
/// client.poll_transmit(&mut out, 1 << 16);
/// assert!(!out.is_empty());
/// // The server answers on its stream 2.
/// let answer = Frame::from_human(&format!("{} 2 stream-begin bytes-response eos x=1", id.0)).unwrap();
/// let events = client.on_frame(answer)?;
/// assert_eq!(events, [ClientEvent::ResponseData { request_id: id, data: Bytes::from("x=1"), eos: true }]);
/// assert_eq!(client.in_flight(), 0);
/// # Ok::<(), hgframe_reactor::ReactorError>(())
/// ```
#[derive(Debug)]
pub struct ClientReactor {
    config: ClientConfig,
    incoming: IncomingStreams,
    profiles: Profiles,
    encoding: EncodingSettings,
    stream_ids: StreamIdAllocator,
    /// The stream commands go out on; opened on first use.
    outgoing: Option<OutgoingStream>,
    /// The next request id to try (odd).
    next_id: u16,
    requests: BTreeMap<RequestId, RequestState>,
    output: VecDeque<Frame>,
    output_bytes: usize,
    failed: bool,
    input_ended: bool,
    /// The extensions in use: offered, and accepted by the server.
    extensions: Extensions,
}

impl ClientReactor {
    /// A client with these settings. Its encodings are [`Profiles::default`] (zstd
    /// contexts from the process-wide pool).
    pub fn new(config: ClientConfig) -> Self {
        Self::with_profiles(config, Profiles::default())
    }

    /// A client with these settings and these content-encoding profiles (a clone of
    /// the application's: the profiles are shared, and so is the pool their zstd
    /// contexts come from).
    pub fn with_profiles(config: ClientConfig, profiles: Profiles) -> Self {
        let limits = config.decode_limits();
        let name = if profiles.get(config.encoding()).is_some() {
            config.encoding()
        } else {
            IDENTITY
        };
        let mut encoding = EncodingSettings::new(name);
        encoding.level = config.level();
        Self {
            incoming: IncomingStreams::new(Side::Client, profiles.clone(), limits),
            profiles,
            encoding,
            stream_ids: StreamIdAllocator::new(Side::Client),
            outgoing: None,
            next_id: 1,
            requests: BTreeMap::new(),
            output: VecDeque::new(),
            output_bytes: 0,
            failed: false,
            input_ended: false,
            extensions: Extensions::none(),
            config,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The profiles this client can decode, best first: the value to offer a server
    /// (over HTTP, the `HgFrame-Encodings` header, joined with `, `).
    pub fn accepted_encodings(&self) -> Vec<String> {
        self.profiles.names().map(str::to_string).collect()
    }

    /// Issues a command with all its data at once: queues its frames and returns its
    /// request id. Arguments are sent in name order; values longer than a frame span
    /// `continuation` frames; data is cut at [`ClientConfig::max_frame_size`].
    pub fn call_command(
        &mut self,
        name: &[u8],
        args: impl IntoIterator<Item = (Bytes, Bytes)>,
        data: Option<Bytes>,
    ) -> Result<RequestId, ReactorError> {
        let has_data = data.is_some();
        let id = self.start_command(name, args, has_data)?;
        if let Some(data) = data {
            self.send_command_data(id, data, true)?;
        }
        Ok(id)
    }

    /// Issues a command whose data is read from `reader` until it ends, in pieces of the
    /// frame size. The reader is read now, wholly (it is typically in memory); data that
    /// becomes available over time goes through [`ClientReactor::start_command`] and
    /// [`ClientReactor::send_command_data`] instead.
    ///
    /// If reading fails, the command's data is left unfinished, so that the server
    /// never runs it on partial data (it reports a partial command when the input
    /// ends): the error names the request, which stays in flight.
    pub fn call_command_with_reader(
        &mut self,
        name: &[u8],
        args: impl IntoIterator<Item = (Bytes, Bytes)>,
        mut reader: impl std::io::Read,
    ) -> Result<RequestId, ReactorError> {
        let id = self.start_command(name, args, true)?;
        let mut piece = vec![0u8; self.config.max_frame_size()];
        loop {
            let n = match reader.read(&mut piece) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ReactorError::ReadData {
                        request_id: id,
                        source,
                    })
                }
            };
            let data = Bytes::copy_from_slice(piece.get(..n).unwrap_or_default());
            self.send_command_data(id, data, n == 0)?;
            if n == 0 {
                return Ok(id);
            }
        }
    }

    /// Issues a command whose data (if `has_data`) follows in pieces with
    /// [`ClientReactor::send_command_data`].
    pub fn start_command(
        &mut self,
        name: &[u8],
        args: impl IntoIterator<Item = (Bytes, Bytes)>,
        has_data: bool,
    ) -> Result<RequestId, ReactorError> {
        self.check_usable()?;
        let id = self.allocate_id()?;
        let mut args: Vec<(Bytes, Bytes)> = args.into_iter().collect();
        args.sort_by(|a, b| a.0.cmp(&b.0));
        let target =
            FrameTarget::new(id, StreamId(1)).with_max_frame_size(self.config.max_frame_size());
        let head = command_head_frames(target, name, &args, has_data)?;
        let mut frames = Vec::with_capacity(head.len() + 1);
        let stream = self.stream()?;
        for frame in head {
            stream
                .push_frame(frame, &mut frames)
                .map_err(ReactorError::Encode)?;
        }
        self.queue(frames);
        let state = if has_data {
            RequestState::SendingData
        } else {
            RequestState::AwaitingResponse
        };
        self.requests.insert(id, state);
        Ok(id)
    }

    /// The next piece of a command's data (cut at the frame size, encoded with the
    /// client's profile); `eos` on the last piece, which may be empty.
    pub fn send_command_data(
        &mut self,
        request: RequestId,
        data: Bytes,
        eos: bool,
    ) -> Result<(), ReactorError> {
        self.check_usable()?;
        match self.requests.get(&request) {
            Some(RequestState::SendingData) => {}
            Some(RequestState::AwaitingResponse | RequestState::Cancelled) => {
                return Err(ReactorError::NoDataExpected(request))
            }
            None => return Err(ReactorError::UnknownRequest(request)),
        }
        if data.is_empty() && !eos {
            return Ok(());
        }
        let mut frames = Vec::new();
        self.stream()?
            .push_data(request, FrameType::CommandData, data, eos, &mut frames)
            .map_err(ReactorError::Encode)?;
        self.queue(frames);
        if eos {
            self.requests
                .insert(request, RequestState::AwaitingResponse);
        }
        Ok(())
    }

    /// Encodes the commands issued from now on with `profile` (at the configured
    /// level), on a new stream: the protocol lets a client use any profile its server
    /// decodes, which the server says (over a byte stream, in its answer to `hello`).
    /// The current stream ends on its last frame still queued if there is one; if all
    /// of it left, it stays open until the connection ends, and its id is not reused.
    /// Call it between commands, not while one's data is still being sent. Does nothing
    /// if `profile` is already in use; an unknown profile is an error and changes
    /// nothing.
    ///
    /// ```
    /// use hgframe_reactor::{ClientConfig, ClientReactor};
    /// use hgframe_wire::FrameType;
    /// let mut client = ClientReactor::new(ClientConfig::default());
    /// client.call_command(b"hello", [], None)?;
    /// let first: Vec<_> = std::iter::from_fn(|| client.poll_frame()).collect();
    /// assert_eq!(first[0].stream_id().0, 1);
    /// client.set_encoding("zstd-8mb")?;
    /// client.call_command(b"put", [], Some(bytes::Bytes::from("x".repeat(1000))))?;
    /// let next: Vec<_> = std::iter::from_fn(|| client.poll_frame()).collect();
    /// // A new stream, announced by its settings, its data compressed.
    /// assert_eq!(next[0].stream_id().0, 3);
    /// assert_eq!(next[0].known_type(), Some(FrameType::StreamSettings));
    /// assert!(client.set_encoding("no-such-profile").is_err());
    /// # Ok::<(), hgframe_reactor::ReactorError>(())
    /// ```
    pub fn set_encoding(&mut self, profile: &str) -> Result<(), ReactorError> {
        if self.profiles.get(profile).is_none() {
            return Err(ReactorError::Encode(StreamError::UnknownProfile {
                name: profile.to_owned(),
            }));
        }
        if self.encoding.profile == profile {
            return Ok(());
        }
        let mut encoding = EncodingSettings::new(profile);
        encoding.level = self.config.level();
        self.encoding = encoding;
        if let Some(mut stream) = self.outgoing.take() {
            let id = stream.id();
            // Its last frame, if still queued, carries the end; the id is free then.
            let last = self.output.iter().rposition(|f| f.stream_id() == id);
            if let Some(at) = last {
                if let Some(frame) = self.output.get_mut(at) {
                    if stream.end(std::slice::from_mut(frame)).is_ok() {
                        self.stream_ids.release(id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Marks the end of the client's stream (`stream-end`) on the last frame still
    /// queued, when there is one: call it once every command has been issued (a
    /// half-duplex transport does so before sending). Later commands open a new stream.
    /// Returns whether a frame carried the end; if all output was already pulled, the
    /// stream simply ends with the connection.
    pub fn finish_sending(&mut self) -> bool {
        let Some(mut stream) = self.outgoing.take() else {
            return false;
        };
        self.stream_ids.release(stream.id());
        let Some(last) = self.output.pop_back() else {
            return false;
        };
        self.output_bytes -= last.encoded_len();
        let mut frames = vec![last];
        // The last queued frame is this stream's: the client has one stream at a time.
        let ended = stream.end(&mut frames).is_ok();
        self.queue(frames);
        ended
    }

    /// Pulls output: encodes whole frames into `out` while they fit in `max_bytes`
    /// (always at least one frame if any is queued). Returns the bytes written.
    pub fn poll_transmit(&mut self, out: &mut BytesMut, max_bytes: usize) -> usize {
        let mut written = 0;
        while let Some(frame) = self.output.front() {
            let len = frame.encoded_len();
            if written > 0 && written + len > max_bytes {
                break;
            }
            let Some(frame) = self.poll_frame() else {
                break;
            };
            frame.encode(out);
            written += len;
        }
        written
    }

    /// Pulls the next output frame, for drivers that work with frames.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        let frame = self.output.pop_front()?;
        self.output_bytes -= frame.encoded_len();
        Some(frame)
    }

    /// Whether output is queued.
    pub fn has_pending_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Bytes of output queued.
    pub fn queued_output_bytes(&self) -> usize {
        self.output_bytes
    }

    /// Requests whose response has not ended.
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Whether the request's response has not ended.
    pub fn is_in_flight(&self, request: RequestId) -> bool {
        self.requests.contains_key(&request)
    }

    /// A frame arrived from the server. Returns what it means for its request (often
    /// one event, none for a `stream-settings` frame). A protocol violation by the
    /// server fails the client: every request in flight is dropped and later calls
    /// return [`ReactorError::Failed`].
    pub fn on_frame(&mut self, frame: Frame) -> Result<Vec<ClientEvent>, ReactorError> {
        self.check_usable()?;
        match self.handle_frame(frame) {
            Ok(events) => Ok(events),
            Err(e) => {
                self.failed = true;
                self.requests.clear();
                Err(ReactorError::Protocol(e))
            }
        }
    }

    /// Input ended: every request still in flight fails with [`ErrorKind::Closed`].
    pub fn on_input_eof(&mut self) -> Result<Vec<ClientEvent>, ReactorError> {
        if self.failed {
            return Err(ReactorError::Failed);
        }
        self.input_ended = true;
        let requests = std::mem::take(&mut self.requests);
        Ok(requests
            .into_iter()
            // A cancelled request wants no more news.
            .filter(|(_, state)| *state != RequestState::Cancelled)
            .map(|(request_id, _)| ClientEvent::Error {
                request_id,
                kind: ErrorKind::Closed,
                message: format!(
                    "connection closed before the end of the response to request {request_id}"
                ),
            })
            .collect())
    }

    fn handle_frame(&mut self, frame: Frame) -> Result<Vec<ClientEvent>, ProtocolError> {
        let len = frame.payload().len();
        if len > self.config.max_frame_payload() {
            return Err(ProtocolError::Limit {
                limit: Limit::FramePayload,
                request_id: Some(frame.request_id()),
                value: len,
                max: self.config.max_frame_payload(),
            });
        }
        if frame.stream_id().is_client_initiated() {
            return Err(ProtocolError::OddStreamId(frame.stream_id()));
        }
        check_settings_flags(&frame)?;
        let Some(frame) = self.incoming.on_frame(frame).map_err(stream_error)? else {
            return Ok(Vec::new());
        };
        let request_id = frame.request_id();
        let flags = frame.flags();
        if self.requests.get(&request_id) == Some(&RequestState::Cancelled) {
            return self.after_cancel(&frame);
        }
        if frame.frame_type() == PROGRESS && self.extensions.contains(Extension::Progress) {
            self.check_in_flight(request_id)?;
            return extension::progress_event(&frame).map(|event| vec![event]);
        }
        match frame.known_type() {
            Some(FrameType::BytesResponse) => {
                self.check_in_flight(request_id)?;
                let eos = match BytesResponseFlags::from_bits(flags) {
                    Some(BytesResponseFlags::EOS) => true,
                    Some(BytesResponseFlags::CONTINUATION) => false,
                    _ => {
                        return Err(ProtocolError::BadResponseFlags {
                            frame_type: FrameType::BytesResponse.name(),
                            request_id,
                            flags,
                        })
                    }
                };
                if eos {
                    self.response_ended(request_id);
                }
                Ok(vec![ClientEvent::ResponseData {
                    request_id,
                    data: frame.into_payload(),
                    eos,
                }])
            }
            Some(FrameType::TextOutput) => {
                self.check_in_flight(request_id)?;
                if flags != 0 {
                    // text-output defines no flags.
                    return Err(ProtocolError::BadResponseFlags {
                        frame_type: FrameType::TextOutput.name(),
                        request_id,
                        flags,
                    });
                }
                let atoms = text_output::decode(frame.payload())
                    .map_err(|source| ProtocolError::MalformedTextOutput { request_id, source })?;
                Ok(vec![ClientEvent::TextOutput { request_id, atoms }])
            }
            Some(FrameType::ErrorResponse) => {
                let kind = match ErrorResponseFlags::from_bits(flags) {
                    Some(ErrorResponseFlags::PROTOCOL) => ErrorKind::Protocol,
                    Some(ErrorResponseFlags::APPLICATION) => ErrorKind::Application,
                    _ => {
                        return Err(ProtocolError::BadResponseFlags {
                            frame_type: FrameType::ErrorResponse.name(),
                            request_id,
                            flags,
                        })
                    }
                };
                let message =
                    ErrorResponse::from_frame_parts(flags, frame.into_payload()).message_lossy();
                if self.requests.contains_key(&request_id) {
                    self.response_ended(request_id);
                    return Ok(vec![ClientEvent::Error {
                        request_id,
                        kind,
                        message,
                    }]);
                }
                if kind != ErrorKind::Protocol {
                    return Err(ProtocolError::UnknownRequest(request_id));
                }
                // A protocol error about no request of ours: the server gave up on the
                // connection, so every request in flight has failed.
                let requests = std::mem::take(&mut self.requests);
                Ok(requests
                    .into_iter()
                    .filter(|(_, state)| *state != RequestState::Cancelled)
                    .map(|(request_id, _)| ClientEvent::Error {
                        request_id,
                        kind,
                        message: message.clone(),
                    })
                    .collect())
            }
            _ => Err(ProtocolError::UnexpectedResponseType {
                frame_type: frame.frame_type(),
                request_id,
            }),
        }
    }

    fn check_in_flight(&self, request: RequestId) -> Result<(), ProtocolError> {
        if self.requests.contains_key(&request) {
            Ok(())
        } else {
            Err(ProtocolError::UnknownRequest(request))
        }
    }

    /// The response ended: the request is over. If its data was still being sent, an
    /// empty `eos` data frame closes it on the server too.
    fn response_ended(&mut self, request: RequestId) {
        if self.requests.remove(&request) == Some(RequestState::SendingData) {
            let mut frames = Vec::new();
            let pushed = self.stream().and_then(|s| {
                s.push_data(
                    request,
                    FrameType::CommandData,
                    Bytes::new(),
                    true,
                    &mut frames,
                )
                .map_err(ReactorError::Encode)
            });
            if pushed.is_ok() {
                self.queue(frames);
            }
        }
    }

    fn check_usable(&self) -> Result<(), ReactorError> {
        if self.failed {
            Err(ReactorError::Failed)
        } else if self.input_ended {
            Err(ReactorError::InputEnded)
        } else {
            Ok(())
        }
    }

    /// The next odd request id not in flight, wrapping around after 65535.
    fn allocate_id(&mut self) -> Result<RequestId, ReactorError> {
        let max = self.config.max_in_flight();
        if self.requests.len() >= max {
            return Err(ReactorError::Limit {
                limit: Limit::InFlight,
                max,
            });
        }
        // Fewer than 32768 requests are in flight (max_in_flight is at most 32768 and
        // the check above), so a free odd id is found within 32768 steps.
        for _ in 0..=u16::MAX / 2 {
            let id = RequestId(self.next_id);
            self.next_id = self.next_id.wrapping_add(2);
            if !self.requests.contains_key(&id) {
                return Ok(id);
            }
        }
        Err(ReactorError::Limit {
            limit: Limit::InFlight,
            max,
        })
    }

    fn queue(&mut self, frames: Vec<Frame>) {
        for frame in frames {
            self.output_bytes += frame.encoded_len();
            self.output.push_back(frame);
        }
    }

    /// The output stream, opened on first use with the configured encoding.
    fn stream(&mut self) -> Result<&mut OutgoingStream, ReactorError> {
        let stream = match self.outgoing.take() {
            Some(stream) => stream,
            None => {
                let id = self.stream_ids.allocate().unwrap_or(StreamId(1));
                let mut stream =
                    OutgoingStream::new(id, Side::Client, &self.profiles, &self.encoding)
                        .map_err(ReactorError::Encode)?;
                stream.set_max_frame_size(self.config.max_frame_size());
                stream
            }
        };
        Ok(self.outgoing.insert(stream))
    }
}

/// Maps a stream-layer violation of the server to the protocol error.
fn stream_error(e: StreamError) -> ProtocolError {
    match e {
        StreamError::ClosedStream { id } => ProtocolError::UnknownStream(id),
        StreamError::WrongParity { id, .. } => ProtocolError::OddStreamId(id),
        other => ProtocolError::Stream(other),
    }
}
