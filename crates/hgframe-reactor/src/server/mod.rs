//! The server reactor: told what happened, it answers what to do.
//!
//! See the crate documentation for how to drive it. This module holds the event
//! handlers; [`request`] holds the per-request state machine and [`output`] the queue of
//! frames waiting to be pulled.

mod extension;
mod offthread;
mod output;
mod precompressed;
mod request;
mod sensitive;

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use bytes::{Bytes, BytesMut};
use hgframe_stream::{
    EncodingSettings, IncomingStreams, OutgoingStream, Profiles, Side, StreamError,
    StreamIdAllocator,
};
use hgframe_wire::build::{error_frame, text_output_frame, FrameTarget};
use hgframe_wire::extension::{Extension, Extensions, CANCEL};
use hgframe_wire::payload::text_output::TextAtom;
use hgframe_wire::{CommandNameFlags, ErrorResponseFlags, Frame, FrameType, RequestId, StreamId};

use self::output::{OutputQueue, Queued};
pub use self::precompressed::ResponseEncoding;
use self::request::{data_flags, ArgLimits, ArgsProgress, Pending, RequestState, Response};
use crate::action::{CommandRequest, ServerAction};
use crate::budget::Budget;
use crate::config::{DataMode, ServerConfig, IDENTITY};
use crate::error::{check_settings_flags, truncate_message, Limit, ProtocolError, ReactorError};

/// The server side of the protocol, as a sans-IO state machine (the seed's
/// `serverreactor`, completed).
///
/// Inputs are [`ServerReactor::on_frame`] and [`ServerReactor::on_input_eof`] (what the
/// client sent), and the application's answers ([`ServerReactor::on_response_data`],
/// [`ServerReactor::on_text_output`], [`ServerReactor::on_application_error`]). Each
/// returns one [`ServerAction`]. Output is pulled with [`ServerReactor::poll_transmit`]
/// (or frame by frame with [`ServerReactor::poll_frame`]).
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use hgframe_reactor::{ServerAction, ServerConfig, ServerReactor};
/// use hgframe_wire::Frame;
///
/// let mut server = ServerReactor::new(ServerConfig::default());
/// let frame = Frame::from_human("1 1 stream-begin command-name eos hello").unwrap();
/// let ServerAction::RunCommand(cmd) = server.on_frame(frame) else { panic!() };
/// assert_eq!(&cmd.name[..], b"hello");
/// let action = server.on_response_data(cmd.request_id, Bytes::from("world"), true)?;
/// assert!(matches!(action, ServerAction::SendFrames));
/// let mut out = BytesMut::new();
/// server.poll_transmit(&mut out, 64 * 1024);
/// assert_eq!(&out[8..], b"world");
/// assert!(matches!(server.on_input_eof(), ServerAction::Noop));
/// assert!(server.is_finished());
/// # Ok::<(), hgframe_reactor::ReactorError>(())
/// ```
#[derive(Debug)]
pub struct ServerReactor {
    config: Arc<ServerConfig>,
    incoming: IncomingStreams,
    /// Profiles to build output streams from.
    profiles: Profiles,
    /// The negotiated output encoding.
    encoding: EncodingSettings,
    stream_ids: StreamIdAllocator,
    /// The stream responses go out on; opened on first use, dropped once ended.
    outgoing: Option<OutgoingStream>,
    /// Streams handed to the driver ([`ServerReactor::open_output_stream`]) and not yet
    /// given back.
    driver_streams: FxHashSet<StreamId>,
    /// Raw streams of the responses marked sensitive, while under way.
    sensitive: FxHashMap<RequestId, OutgoingStream>,
    /// Every request from its first frame to its last response frame's transmission.
    requests: FxHashMap<RequestId, RequestState>,
    /// Bytes held for commands not yet dispatched.
    budget: Budget,
    output: OutputQueue,
    errored: bool,
    input_ended: bool,
    /// The extensions in use: ours that the client offered.
    extensions: Extensions,
}

impl ServerReactor {
    /// A reactor with these settings; accepts a `ServerConfig` or an `Arc` of one. Its
    /// encodings are [`Profiles::default`] (zstd contexts from the process-wide pool).
    pub fn new(config: impl Into<Arc<ServerConfig>>) -> Self {
        Self::with_profiles(config, Profiles::default())
    }

    /// A reactor with these settings and these content-encoding profiles (a clone of a
    /// server's: the profiles are shared, and so is the pool their zstd contexts come
    /// from, so each exchange reuses the contexts of the ones before it).
    pub fn with_profiles(config: impl Into<Arc<ServerConfig>>, profiles: Profiles) -> Self {
        let config = config.into();
        let limits = config.decode_limits();
        let encoding = negotiate(&profiles, &config, config.peer_accepts());
        Self {
            incoming: IncomingStreams::new(Side::Server, profiles.clone(), limits),
            profiles,
            encoding,
            stream_ids: StreamIdAllocator::new(Side::Server),
            outgoing: None,
            driver_streams: FxHashSet::default(),
            sensitive: FxHashMap::default(),
            requests: FxHashMap::default(),
            budget: Budget::new(config.max_buffered_data()),
            output: OutputQueue::new(config.defer_output()),
            errored: false,
            input_ended: false,
            extensions: config.extensions().intersect(config.peer_extensions()),
            config,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Negotiates the output encoding again with the profiles the client accepts (over
    /// HTTP, the `HgFrame-Encodings` header), overriding
    /// [`ServerConfig::peer_accepts`]. Takes effect for the next stream the server opens
    /// (call it before any output). Returns the profile chosen.
    pub fn set_peer_accepts<S: AsRef<str>>(&mut self, accepts: &[S]) -> &str {
        self.encoding = negotiate(&self.profiles, &self.config, accepts);
        &self.encoding.profile
    }

    /// The content-encoding profile of the server's output.
    pub fn output_encoding(&self) -> &str {
        &self.encoding.profile
    }

    /// A frame arrived from the client. Exactly one action per frame.
    pub fn on_frame(&mut self, frame: Frame) -> ServerAction {
        if self.errored {
            // Nothing of the frame is looked at, let alone kept.
            return ServerAction::Error(ProtocolError::AlreadyErrored);
        }
        let request_id = frame.request_id();
        match self.handle_frame(frame) {
            Ok(action) => action,
            Err(error) => self.fail(error, request_id),
        }
    }

    /// The input could not be decoded into frames (`why`, from the driver's decoder): no
    /// more frames will arrive, and the client is told the real fault in a protocol
    /// error, rather than that its command stopped short.
    pub fn on_input_error(&mut self, why: &str) -> ServerAction {
        if self.input_ended || self.errored {
            return self.on_input_eof();
        }
        self.input_ended = true;
        self.output.release();
        // Addressed to the command cut short, if any (the lowest, for a stable answer).
        let request = self
            .requests
            .iter()
            .filter(|(_, state)| state.is_receiving())
            .map(|(id, _)| *id)
            .min()
            .unwrap_or(RequestId(0));
        self.fail(ProtocolError::Undecodable(why.to_owned()), request)
    }

    /// Input ended: no more frames will arrive. Releases deferred output. A command
    /// whose frames stopped short is an error naming its request.
    pub fn on_input_eof(&mut self) -> ServerAction {
        if self.input_ended {
            return self.output_action();
        }
        self.input_ended = true;
        self.output.release();
        if !self.errored {
            // The lowest, so the message does not depend on the map's order.
            let partial = self
                .requests
                .iter()
                .filter(|(_, state)| state.is_receiving())
                .map(|(id, _)| *id)
                .min();
            if let Some(id) = partial {
                return self.fail(ProtocolError::PartialCommand(id), id);
            }
        }
        self.maybe_end_stream();
        self.output_action()
    }

    /// Response bytes of a running request. Call as many times as needed; `eos` on the
    /// last call (the data of that call may be empty). Data is cut at
    /// [`ServerConfig::max_frame_size`] and content-encoded with the negotiated profile.
    /// The request id becomes reusable once the last frame has been transmitted.
    pub fn on_response_data(
        &mut self,
        request: RequestId,
        data: Bytes,
        eos: bool,
    ) -> Result<ServerAction, ReactorError> {
        self.check_running(request)?;
        let mut frames = Vec::new();
        if !data.is_empty() || eos {
            self.data_stream(request)?
                .push_data(request, FrameType::BytesResponse, data, eos, &mut frames)
                .map_err(ReactorError::Encode)?;
        }
        self.respond(request, frames, eos);
        Ok(self.output_action())
    }

    /// Text for people (a `text-output` frame) in a running request's response. All
    /// atoms must fit in one frame.
    pub fn on_text_output(
        &mut self,
        request: RequestId,
        atoms: &[TextAtom],
    ) -> Result<ServerAction, ReactorError> {
        self.check_running(request)?;
        let frame = text_output_frame(self.target(request), atoms)?;
        let mut frames = Vec::new();
        self.stream()?
            .push_frame(frame, &mut frames)
            .map_err(ReactorError::Encode)?;
        self.respond(request, frames, false);
        Ok(self.output_action())
    }

    /// The command failed: an application `error-response` frame ends its response.
    /// The message is cut to fit in one frame.
    pub fn on_application_error(
        &mut self,
        request: RequestId,
        message: &str,
    ) -> Result<ServerAction, ReactorError> {
        self.check_running(request)?;
        let message = truncate_message(message.to_string(), self.config.max_frame_size());
        let frame = error_frame(
            self.target(request),
            message.as_bytes(),
            ErrorResponseFlags::APPLICATION,
        )?;
        let mut frames = Vec::new();
        self.stream()?
            .push_frame(frame, &mut frames)
            .map_err(ReactorError::Encode)?;
        self.respond(request, frames, true);
        Ok(self.output_action())
    }

    /// Pulls output: encodes whole frames into `out` while they fit in `max_bytes`
    /// (always at least one frame if any is ready). Returns the bytes written; 0 when
    /// nothing is ready (or output is deferred until end of input).
    pub fn poll_transmit(&mut self, out: &mut BytesMut, max_bytes: usize) -> usize {
        let mut ended = Vec::new();
        let n = self.output.transmit(out, max_bytes, |r| ended.push(r));
        for r in ended {
            self.on_transmitted(r);
        }
        n
    }

    /// Pulls the next output frame, for drivers that work with frames.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        let Queued { frame, ends } = self.output.pop()?;
        if let Some(r) = ends {
            self.on_transmitted(r);
        }
        Some(frame)
    }

    /// Whether output can be pulled now.
    pub fn has_pending_output(&self) -> bool {
        self.output.is_ready()
    }

    /// Input ended, no request is left, and all output was pulled.
    pub fn is_finished(&self) -> bool {
        self.input_ended && self.requests.is_empty() && self.output.is_empty()
    }

    /// Whether the reactor refuses frames after a protocol error.
    pub fn is_errored(&self) -> bool {
        self.errored
    }

    /// Bytes held for commands not yet dispatched (names, arguments, buffered data):
    /// never more than [`ServerConfig::max_buffered_data`].
    pub fn buffered_bytes(&self) -> usize {
        self.budget.used()
    }

    /// Bytes of output waiting to be pulled (or held until end of input).
    pub fn queued_output_bytes(&self) -> usize {
        self.output.queued_bytes()
    }

    /// Requests whose frames are still arriving.
    pub fn receiving_commands(&self) -> usize {
        self.requests.values().filter(|s| s.is_receiving()).count()
    }

    /// Requests dispatched whose response has not been fully transmitted.
    pub fn active_requests(&self) -> usize {
        self.requests.values().filter(|s| s.is_active()).count()
    }

    fn handle_frame(&mut self, frame: Frame) -> Result<ServerAction, ProtocolError> {
        if self.input_ended {
            return Err(ProtocolError::FrameAfterEof);
        }
        let len = frame.payload().len();
        if len > self.config.max_frame_payload() {
            return Err(ProtocolError::Limit {
                limit: Limit::FramePayload,
                request_id: Some(frame.request_id()),
                value: len,
                max: self.config.max_frame_payload(),
            });
        }
        if !frame.stream_id().is_client_initiated() {
            return Err(ProtocolError::EvenStreamId(frame.stream_id()));
        }
        check_settings_flags(&frame)?;
        // Stream rules, and content decoding: what comes out is a plain frame.
        let Some(frame) = self.incoming.on_frame(frame).map_err(stream_error)? else {
            // A stream-settings frame, consumed by the stream layer.
            return Ok(ServerAction::WantFrame);
        };
        let expected_command = ProtocolError::ExpectedCommand {
            frame_type: frame.frame_type(),
            request_id: frame.request_id(),
        };
        if frame.frame_type() == CANCEL && self.extensions.contains(Extension::Cancel) {
            return self.on_cancel(&frame);
        }
        match frame.known_type() {
            Some(FrameType::CommandName) => self.on_command_name(frame),
            // With no command being received, only a command-name makes sense (the
            // seed's "idle" state).
            Some(FrameType::CommandArgument | FrameType::CommandData)
                if !self.is_receiving_any(frame.request_id()) =>
            {
                Err(expected_command)
            }
            Some(FrameType::CommandArgument) => self.on_command_argument(&frame),
            Some(FrameType::CommandData) => self.on_command_data(frame),
            _ => Err(expected_command),
        }
    }

    fn on_command_name(&mut self, frame: Frame) -> Result<ServerAction, ProtocolError> {
        let id = frame.request_id();
        if !id.is_client_initiated() {
            return Err(ProtocolError::EvenRequestId(id));
        }
        if let Some(state) = self.requests.get(&id) {
            return Err(if state.is_receiving() {
                ProtocolError::AlreadyReceived(id)
            } else {
                ProtocolError::AlreadyActive(id)
            });
        }
        let bad = ProtocolError::BadCommandFlags {
            request_id: id,
            flags: frame.flags(),
        };
        let flags = CommandNameFlags::from_bits(frame.flags()).ok_or(bad)?;
        if flags.is_empty() {
            return Err(ProtocolError::MissingCommandFlags(id));
        }
        if flags.contains(CommandNameFlags::EOS) {
            if flags != CommandNameFlags::EOS {
                return Err(ProtocolError::BadCommandFlags {
                    request_id: id,
                    flags: frame.flags(),
                });
            }
            // Complete in one frame: nothing is buffered.
            self.check_active_limit(id)?;
            self.requests
                .insert(id, RequestState::Active(Response::Running));
            return Ok(ServerAction::RunCommand(CommandRequest {
                request_id: id,
                name: frame.into_payload(),
                args: BTreeMap::new(),
                data: None,
                data_follows: false,
            }));
        }
        let have_args = flags.contains(CommandNameFlags::HAVE_ARGS);
        let have_data = flags.contains(CommandNameFlags::HAVE_DATA);
        // The count is at most the number of requests: counted only when it may matter
        // (counting each time made a batch of n commands cost n squared).
        let may_exceed = self.requests.len() >= self.config.max_receiving_commands();
        let receiving = if may_exceed {
            self.receiving_commands() + 1
        } else {
            0
        };
        if receiving > self.config.max_receiving_commands() {
            return Err(ProtocolError::Limit {
                limit: Limit::ReceivingCommands,
                request_id: Some(id),
                value: receiving,
                max: self.config.max_receiving_commands(),
            });
        }
        let pending = Pending::new(id, frame.payload(), have_data, &mut self.budget)?;
        if have_args {
            self.requests
                .insert(id, RequestState::ReceivingArgs(Box::new(pending)));
            Ok(ServerAction::WantFrame)
        } else {
            self.args_complete(id, pending)
        }
    }

    fn on_command_argument(&mut self, frame: &Frame) -> Result<ServerAction, ProtocolError> {
        let id = frame.request_id();
        let limits = ArgLimits {
            max_args: self.config.max_args_per_command(),
            max_arg_len: self.config.max_arg_len(),
        };
        let pending = match self.requests.get_mut(&id) {
            None => return Err(ProtocolError::NotReceiving(id)),
            Some(RequestState::Streaming(_) | RequestState::Active(_)) => {
                return Err(ProtocolError::StillActive(id))
            }
            Some(RequestState::ReceivingData(_)) => {
                return Err(ProtocolError::UnexpectedArgument(id))
            }
            Some(RequestState::ReceivingArgs(pending)) => pending,
        };
        let progress =
            pending.on_argument(id, frame.flags(), frame.payload(), limits, &mut self.budget)?;
        if progress == ArgsProgress::More {
            return Ok(ServerAction::WantFrame);
        }
        match self.requests.remove(&id) {
            Some(RequestState::ReceivingArgs(pending)) => self.args_complete(id, *pending),
            _ => Err(ProtocolError::NotReceiving(id)),
        }
    }

    /// The command's arguments are complete (or it has none): dispatch it, or wait for
    /// its data.
    fn args_complete(
        &mut self,
        id: RequestId,
        pending: Pending,
    ) -> Result<ServerAction, ProtocolError> {
        if !pending.expecting_data {
            return self.dispatch(id, pending, None, RequestState::Active(Response::Running));
        }
        match self.config.data_mode() {
            DataMode::Buffered => {
                self.requests
                    .insert(id, RequestState::ReceivingData(Box::new(pending)));
                Ok(ServerAction::WantFrame)
            }
            DataMode::Streaming => self.dispatch(
                id,
                pending,
                None,
                RequestState::Streaming(Response::Running),
            ),
        }
    }

    fn on_command_data(&mut self, frame: Frame) -> Result<ServerAction, ProtocolError> {
        let id = frame.request_id();
        match self.requests.get_mut(&id) {
            None => Err(ProtocolError::NotReceiving(id)),
            Some(RequestState::Active(_)) => Err(ProtocolError::StillActive(id)),
            Some(RequestState::ReceivingArgs(_)) => Err(ProtocolError::UnexpectedData(id)),
            Some(RequestState::ReceivingData(pending)) => {
                if !pending.on_data(id, frame.flags(), frame.payload(), &mut self.budget)? {
                    return Ok(ServerAction::WantFrame);
                }
                match self.requests.remove(&id) {
                    Some(RequestState::ReceivingData(mut pending)) => {
                        let data = pending.take_data();
                        let active = RequestState::Active(Response::Running);
                        self.dispatch(id, *pending, Some(data), active)
                    }
                    _ => Err(ProtocolError::NotReceiving(id)),
                }
            }
            Some(RequestState::Streaming(response)) => {
                let response = *response;
                let eos = data_flags(id, frame.flags())?;
                if eos {
                    if response == Response::Done {
                        self.requests.remove(&id);
                    } else {
                        self.requests.insert(id, RequestState::Active(response));
                    }
                    self.maybe_end_stream();
                }
                if response == Response::Running {
                    Ok(ServerAction::CommandData {
                        request_id: id,
                        data: frame.into_payload(),
                        eos,
                    })
                } else {
                    // The command already answered: the rest of its data is dropped.
                    Ok(ServerAction::WantFrame)
                }
            }
        }
    }

    /// Hands a complete command to the application.
    fn dispatch(
        &mut self,
        id: RequestId,
        pending: Pending,
        data: Option<Bytes>,
        state: RequestState,
    ) -> Result<ServerAction, ProtocolError> {
        // From here on the bytes belong to the application.
        self.budget.release(pending.charged());
        self.check_active_limit(id)?;
        let data_follows = matches!(state, RequestState::Streaming(_));
        self.requests.insert(id, state);
        Ok(ServerAction::RunCommand(CommandRequest {
            request_id: id,
            name: pending.name,
            args: pending.args,
            data,
            data_follows,
        }))
    }

    /// Whether any command is being received; `id`'s own state answers at once in the
    /// usual case (its frames are arriving), without walking every request.
    fn is_receiving_any(&self, id: RequestId) -> bool {
        self.requests
            .get(&id)
            .is_some_and(RequestState::is_receiving)
            || self.receiving_commands() > 0
    }

    fn check_active_limit(&self, id: RequestId) -> Result<(), ProtocolError> {
        // As for receiving commands: counted only when the limit may be reached.
        let may_exceed = self.requests.len() >= self.config.max_active_requests();
        let active = if may_exceed {
            self.active_requests() + 1
        } else {
            0
        };
        if active > self.config.max_active_requests() {
            return Err(ProtocolError::Limit {
                limit: Limit::ActiveRequests,
                request_id: Some(id),
                value: active,
                max: self.config.max_active_requests(),
            });
        }
        Ok(())
    }

    /// The client broke the protocol: from now on every frame is refused. Partial
    /// commands are dropped (their bytes freed); a protocol error-response is queued.
    fn fail(&mut self, error: ProtocolError, frame_request: RequestId) -> ServerAction {
        self.errored = true;
        let budget = &mut self.budget;
        self.requests.retain(|_, state| match state {
            RequestState::ReceivingArgs(p) | RequestState::ReceivingData(p) => {
                budget.release(p.charged());
                false
            }
            // No more data will come: the running command sees its input end here.
            RequestState::Streaming(r) => {
                let r = *r;
                *state = RequestState::Active(r);
                r != Response::Done
            }
            RequestState::Active(_) => true,
        });
        let request = error.request_id().unwrap_or(frame_request);
        let message = error.to_wire_message(self.config.max_frame_size());
        // The error frame is a courtesy to the client; if it cannot be built (it always
        // can: the message was cut to the frame size) the error action still stands.
        if let Ok(frame) = error_frame(
            self.target(request),
            message.as_bytes(),
            ErrorResponseFlags::PROTOCOL,
        ) {
            let mut frames = Vec::new();
            if let Ok(stream) = self.stream() {
                if stream.push_frame(frame, &mut frames).is_ok() {
                    self.output.push_all(frames, None);
                }
            }
        }
        self.maybe_end_stream();
        ServerAction::Error(error)
    }

    fn check_running(&self, request: RequestId) -> Result<(), ReactorError> {
        match self.requests.get(&request) {
            Some(RequestState::Streaming(r) | RequestState::Active(r)) => match r {
                Response::Running => Ok(()),
                Response::Finishing | Response::Done => {
                    Err(ReactorError::ResponseFinished(request))
                }
            },
            _ => Err(ReactorError::UnknownRequest(request)),
        }
    }

    /// Queues a response's frames; `last` when they end it.
    fn respond(&mut self, request: RequestId, mut frames: Vec<Frame>, last: bool) {
        if last {
            self.end_sensitive(request, &mut frames);
        }
        if !last {
            self.output.push_all(frames, None);
            return;
        }
        if let Some(RequestState::Streaming(r) | RequestState::Active(r)) =
            self.requests.get_mut(&request)
        {
            *r = Response::Finishing;
        }
        if frames.is_empty() {
            // Nothing to wait for on the wire.
            self.on_transmitted(request);
        } else {
            self.output.push_all(frames, Some(request));
        }
        self.maybe_end_stream();
    }

    /// The last frame of a request's response left.
    fn on_transmitted(&mut self, request: RequestId) {
        match self.requests.get_mut(&request) {
            Some(RequestState::Active(_)) => {
                self.requests.remove(&request);
            }
            Some(RequestState::Streaming(r)) => *r = Response::Done,
            _ => {}
        }
    }

    /// Once input has ended and every response is fully queued, the server is done with
    /// its stream: the last queued frame carries `stream-end`.
    fn maybe_end_stream(&mut self) {
        if !self.input_ended {
            return;
        }
        let all_queued = self.requests.values().all(|s| {
            matches!(
                s,
                RequestState::Active(Response::Finishing | Response::Done)
            )
        });
        if !all_queued {
            return;
        }
        let Some(mut stream) = self.outgoing.take() else {
            return;
        };
        self.stream_ids.release(stream.id());
        let id = stream.id();
        let Some(last) = self.output.last_of_stream(id) else {
            // Every frame of the stream already left: it ends with the exchange.
            return;
        };
        // The frame is still queued, so `end` can mark it.
        let _ = stream.end(std::slice::from_mut(last));
    }

    fn output_action(&self) -> ServerAction {
        if self.output.is_ready() {
            ServerAction::SendFrames
        } else {
            ServerAction::Noop
        }
    }

    fn target(&self, request: RequestId) -> FrameTarget {
        let stream_id = self
            .outgoing
            .as_ref()
            .map_or(StreamId(0), OutgoingStream::id);
        FrameTarget::new(request, stream_id).with_max_frame_size(self.config.max_frame_size())
    }

    /// The output stream, opened on first use with the negotiated encoding.
    fn stream(&mut self) -> Result<&mut OutgoingStream, ReactorError> {
        let stream = match self.outgoing.take() {
            Some(stream) => stream,
            None => {
                let id = self.stream_ids.allocate().unwrap_or(StreamId(0));
                let mut stream =
                    OutgoingStream::new(id, Side::Server, &self.profiles, &self.encoding)
                        .map_err(ReactorError::Encode)?;
                stream.set_max_frame_size(self.config.max_frame_size());
                stream
            }
        };
        Ok(self.outgoing.insert(stream))
    }
}

/// Chooses the output encoding: the first of ours the client accepts, else identity.
/// What [`Profiles::negotiate`] chooses, without its lists of names: every exchange
/// negotiates, and two lists cost it two allocations.
fn negotiate<S: AsRef<str>>(
    profiles: &Profiles,
    config: &ServerConfig,
    accepts: &[S],
) -> EncodingSettings {
    let chosen = config
        .encodings()
        .iter()
        .filter(|ours| {
            accepts
                .iter()
                .any(|theirs| theirs.as_ref() == ours.as_str())
        })
        .find_map(|ours| profiles.get(ours))
        .map_or(IDENTITY, |p| p.name());
    let mut settings = EncodingSettings::new(chosen);
    settings.level = config.level();
    settings
}

/// Maps a stream-layer violation to the protocol error, with the seed's messages.
fn stream_error(e: StreamError) -> ProtocolError {
    match e {
        StreamError::ClosedStream { id } => ProtocolError::UnknownStream(id),
        StreamError::WrongParity { id, .. } => ProtocolError::EvenStreamId(id),
        other => ProtocolError::Stream(other),
    }
}
