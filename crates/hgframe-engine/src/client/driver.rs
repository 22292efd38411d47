//! The client's side of an exchange, driven by one task that owns the client reactor.
//! The HTTP client runs one per request; a byte-stream connection runs one for its
//! whole life.
//!
//! | branch   | enabled when                                   | does |
//! |----------|------------------------------------------------|------|
//! | budget   | always                                         | wakes when a consumer takes, waits or goes |
//! | transmit | the reactor has output and the sink is open    | pulls up to one chunk of frames into the sink |
//! | feed     | a command's data is streamed, little is queued | takes the next piece of the data |
//! | call     | calls may come, fewer than the window in flight, little is queued | issues the next command |
//! | head     | (HTTP) the response has not started            | waits for it, checks its status |
//! | read     | input is open and the [`Budget`] allows it      | decodes a frame, queues its events |
//!
//! The driver never waits on a response's queue: events are queued at once, and the
//! budget decides whether the next frame is read (see [`super::queue`]), so a response
//! nobody reads yet can never stop the one being read.
//!
//! When no call can come any more and all data is sent, the reactor marks the end of
//! the client's stream and the sink is closed (the HTTP request body ends, or the byte
//! stream is half-closed); the driver then reads until every response has ended. If
//! every response stream is dropped, the exchange is abandoned.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use hgframe_reactor::{ClientEvent, ClientReactor, ErrorKind as EventKind, ReactorError};
use hgframe_wire::codec::CodecError;
use hgframe_wire::extension::{Extension, Extensions};
use hgframe_wire::payload::stream_settings::StreamSettings;
use hgframe_wire::payload::text_output::TextAtom;
use hgframe_wire::{Frame, FrameType, RequestId, HEADER_LEN};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::counters::Counters;
use crate::client::queue::{Budget, Queue, Sink};
use crate::client::{Call, CallData};
use crate::error::Error;
use crate::output::FrameInput;
use crate::output::OutputChunk;

/// What the driver tells a response stream.
#[derive(Debug)]
pub enum Item {
    /// Response bytes, and whether they are the last.
    Data(Bytes, bool),
    /// Text output.
    Text(Vec<TextAtom>),
    /// A progress report (extension `progress`): topic, position, total (0: unknown).
    Progress(String, u64, u64),
    /// The response failed; nothing follows.
    Failed(Error),
}

impl Item {
    /// What the item holds in memory, for the budget.
    pub(crate) fn held_bytes(&self) -> usize {
        match self {
            Self::Data(data, _) => data.len(),
            Self::Text(atoms) => atoms
                .iter()
                .map(|a| {
                    a.format.len()
                        + a.args.iter().map(String::len).sum::<usize>()
                        + a.labels.iter().map(String::len).sum::<usize>()
                })
                .sum(),
            Self::Progress(topic, ..) => topic.len(),
            Self::Failed(_) => 0,
        }
    }
}

/// A command to issue, and where its events go.
pub struct NewCall {
    /// The command.
    pub(crate) call: Call,
    /// Where its response goes.
    pub(crate) events: Sink,
}

impl std::fmt::Debug for NewCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCall")
            .field("call", &self.call.name)
            .field("index", &self.events.index)
            .finish()
    }
}

/// Where the server's frames come from.
pub enum Input {
    /// Already flowing (byte streams).
    Ready(FrameInput),
    /// Once the HTTP response has started and passed its checks.
    Pending(BoxFuture<'static, Result<FrameInput, Error>>),
}

/// A command whose data is being streamed.
struct Source {
    request: RequestId,
    data: BoxStream<'static, std::io::Result<Bytes>>,
}

/// Runs one exchange's calls: feeds the client reactor, sends its frames, routes the
/// server's answers to each call's response stream.
pub struct Driver {
    reactor: ClientReactor,
    calls: mpsc::UnboundedReceiver<NewCall>,
    calls_open: bool,
    window: usize,
    chunk: usize,
    requests: HashMap<RequestId, Sink>,
    sources: VecDeque<Source>,
    budget: Arc<Budget>,
    /// Queues fed so far that may hold data: where to look for one to evict.
    fed: Vec<Arc<Queue>>,
    dropped_seen: usize,
    sending_done: bool,
    input_done: bool,
    abandoned: bool,
    /// The extensions the server accepted, as the transport learns them.
    accepted: AcceptedExtensions,
    accepted_seen: Extensions,
    /// A profile to encode later commands with, as the transport learns the server
    /// decodes it.
    request_encoding: RequestEncoding,
    /// When each call with a deadline gives up.
    deadlines: HashMap<RequestId, Instant>,
    counters: Arc<Counters>,
}

/// The extensions a server accepted, told to a running driver by its transport (the
/// HTTP response's header, the answer to `hello`) before any frame that may use them.
#[derive(Debug, Clone, Default)]
pub struct AcceptedExtensions(Arc<AtomicU8>);

impl AcceptedExtensions {
    /// The server accepted `accepted`.
    pub fn set(&self, accepted: Extensions) {
        self.0.store(accepted.bits(), Ordering::Release);
    }

    fn get(&self) -> Extensions {
        Extensions::from_bits(self.0.load(Ordering::Acquire))
    }
}

/// The profile a running driver encodes its next commands with, told by its transport
/// once the server said it decodes it (over a byte stream, the answer to `hello`).
#[derive(Debug, Clone, Default)]
pub struct RequestEncoding(Arc<std::sync::Mutex<Option<String>>>);

impl RequestEncoding {
    /// Encode the commands issued from now on with `profile`.
    pub fn set(&self, profile: &str) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(profile.to_owned());
        }
    }

    fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

impl Driver {
    /// `window`: most commands in flight at once (commands beyond wait their turn).
    pub(crate) fn new(
        reactor: ClientReactor,
        calls: mpsc::UnboundedReceiver<NewCall>,
        budget: Arc<Budget>,
        window: usize,
        chunk: usize,
    ) -> Self {
        Self {
            reactor,
            calls,
            calls_open: true,
            window: window.max(1),
            chunk,
            requests: HashMap::new(),
            sources: VecDeque::new(),
            budget,
            fed: Vec::new(),
            dropped_seen: 0,
            sending_done: false,
            input_done: false,
            abandoned: false,
            accepted: AcceptedExtensions::default(),
            request_encoding: RequestEncoding::default(),
            accepted_seen: Extensions::none(),
            deadlines: HashMap::new(),
            counters: Arc::default(),
        }
    }

    /// Counts into `counters` (shared with other exchanges: totals of a client) instead
    /// of the exchange's own.
    pub fn share_counters(&mut self, counters: Arc<Counters>) {
        self.counters = counters;
    }

    /// The exchange's client-side counters, updated as it runs.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// The extensions the client offers (for the transport to say so).
    pub fn offered_extensions(&self) -> Extensions {
        self.reactor.offered_extensions()
    }

    /// Where the transport tells the driver what the server accepted.
    pub fn accepted_extensions(&self) -> AcceptedExtensions {
        self.accepted.clone()
    }

    /// Where the transport tells the driver to encode its later commands.
    pub fn request_encoding(&self) -> RequestEncoding {
        self.request_encoding.clone()
    }

    /// Runs until every response has ended (or the connection failed).
    pub async fn run(mut self, input: Input, out: mpsc::Sender<OutputChunk>) {
        let (mut frames, mut head) = match input {
            Input::Ready(frames) => (Some(frames), None),
            Input::Pending(head) => (None, Some(head)),
        };
        let mut out = Some(out);
        let mut buf = BytesMut::new();
        loop {
            let accepted = self.accepted.get();
            if accepted != self.accepted_seen {
                self.accepted_seen = accepted;
                self.reactor.set_extensions(accepted);
            }
            self.maybe_finish_sending(&mut out);
            let seen = self.budget.changes();
            if self.budget.dropped() != self.dropped_seen {
                self.dropped_seen = self.budget.dropped();
                self.cancel_unread();
                self.abandoned = self.nobody_listens();
            }
            if self.budget.must_evict() {
                self.evict_largest();
            }
            if self.is_done() {
                break;
            }
            let queued_little = self.reactor.queued_output_bytes() < self.chunk;
            let can_call =
                self.calls_open && queued_little && self.reactor.in_flight() < self.window;
            let can_read = frames.is_some() && !self.input_done && self.budget.may_read();
            let next_deadline = self.deadlines.values().min().copied();
            tokio::select! {
                biased;
                () = std::future::poll_fn(|cx| self.budget.poll_changed(seen, cx)) => {}
                () = sleep_until(next_deadline), if next_deadline.is_some() => self.on_deadlines(),
                permit = reserve_out(out.as_ref()), if out.is_some() && self.reactor.has_pending_output() => {
                    match permit {
                        Some(permit) => {
                            self.reactor.poll_transmit(&mut buf, self.chunk);
                            self.counters.sent(buf.len());
                            permit.send(Ok(buf.split().freeze()));
                        }
                        None => {
                            // The request body or the byte stream was closed under us.
                            out = None;
                            self.fail_all(&Error::closed("the connection stopped taking the request"));
                        }
                    }
                }
                piece = next_piece(self.sources.front_mut()), if !self.sources.is_empty() && queued_little => {
                    self.on_piece(piece, &mut out);
                }
                call = self.calls.recv(), if can_call => match call {
                    Some(call) => self.issue(call),
                    None => {
                        self.calls_open = false;
                        self.abandoned = self.nobody_listens();
                    }
                },
                started = wait_head(head.as_mut()), if head.is_some() => {
                    head = None;
                    match started {
                        Ok(input) => frames = Some(input),
                        Err(e) => {
                            self.fail_all(&e);
                            break;
                        }
                    }
                }
                frame = next_frame(frames.as_mut()), if can_read => match frame {
                    Some(Ok(frame)) => {
                        self.count_frame(&frame);
                        let events = self.reactor.on_frame(frame);
                        self.on_events(events);
                    }
                    Some(Err(e)) => {
                        self.fail_all(&Error::protocol(format!("reading the server's frames: {e}")));
                        self.input_done = true;
                    }
                    None => {
                        let events = self.reactor.on_input_eof();
                        self.on_events(events);
                        self.input_done = true;
                    }
                },
            }
        }
    }

    /// Counts a frame from the server; notes the profile its stream settings name.
    fn count_frame(&self, frame: &Frame) {
        self.counters.received(HEADER_LEN + frame.payload().len());
        if frame.known_type() == Some(FrameType::StreamSettings) {
            if let Ok(settings) = StreamSettings::parse(frame.payload()) {
                self.counters.set_profile(&settings.profile);
            }
        }
    }

    /// Tells `sink` its call failed (counted once: the request is no longer routed).
    fn fail(&self, sink: &Sink, error: Error) {
        self.counters.error();
        sink.push(Item::Failed(error));
    }

    /// Calls whose deadline passed fail with a timeout, and are cancelled on the server
    /// if it accepted `cancel`.
    fn on_deadlines(&mut self) {
        let now = Instant::now();
        let passed: Vec<RequestId> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        for request in passed {
            self.deadlines.remove(&request);
            let Some(sink) = self.requests.remove(&request) else {
                continue;
            };
            self.fail(
                &sink,
                Error::new(
                    crate::error::ErrorKind::Timeout,
                    format!(
                        "request {request}: the call's deadline passed before its response ended"
                    ),
                ),
            );
            self.sources.retain(|s| s.request != request);
            if self.reactor.extensions().contains(Extension::Cancel) {
                if let Err(e) = self.reactor.cancel(request) {
                    tracing::debug!(request = request.0, error = %e, "cannot cancel");
                }
            }
        }
    }

    /// Cancels the requests whose response nobody reads any more (the stream was
    /// dropped before its end), when the server accepted `cancel`: it stops their work
    /// and sends no more of them. Without `cancel`, their frames are read and dropped.
    fn cancel_unread(&mut self) {
        if !self.reactor.extensions().contains(Extension::Cancel) {
            return;
        }
        let unread: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, sink)| sink.queue.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for request in unread {
            if let Err(e) = self.reactor.cancel(request) {
                tracing::debug!(request = request.0, error = %e, "cannot cancel");
                continue;
            }
            self.requests.remove(&request);
            self.deadlines.remove(&request);
            self.sources.retain(|s| s.request != request);
        }
    }

    /// Evicts the queue holding the most bytes: a consumer waits, and no more may be
    /// held.
    fn evict_largest(&mut self) {
        self.fed.retain(|q| !q.is_closed());
        let Some(largest) = self.fed.iter().max_by_key(|q| q.held()).cloned() else {
            return;
        };
        let held = largest.held();
        if held == 0 {
            return;
        }
        largest.evict(Error::closed(format!(
            "response dropped unread: {held} bytes of it waited while another response \
             was awaited, and the client holds at most {} bytes of responses not read yet \
             (ClientOptions::set_response_buffer); read the responses of an exchange \
             concurrently, or all calls of a batch through Batch::next or Batch::collect",
            self.budget.limit()
        )));
        self.fed.retain(|q| !Arc::ptr_eq(q, &largest));
    }

    /// Remembers that `queue` was fed (for [`Self::evict_largest`]).
    fn track(&mut self, queue: &Arc<Queue>) {
        if self.fed.last().is_some_and(|q| Arc::ptr_eq(q, queue)) {
            return;
        }
        if self.fed.len() >= 64 && self.fed.len() >= 2 * self.requests.len() {
            // Forget queues that hold nothing and are fed no more.
            let live: Vec<*const Queue> = self
                .requests
                .values()
                .map(|s| Arc::as_ptr(&s.queue))
                .collect();
            self.fed
                .retain(|q| !q.is_closed() && (q.held() > 0 || live.contains(&Arc::as_ptr(q))));
        }
        self.fed.push(Arc::clone(queue));
    }

    /// Every call got its answer, or the input ended and everyone was told, or nobody
    /// listens any more.
    fn is_done(&self) -> bool {
        if self.abandoned {
            return true;
        }
        if self.input_done {
            return true;
        }
        !self.calls_open && self.sources.is_empty() && self.requests.is_empty() && self.sending_done
    }

    /// No call can come and every response's consumer was dropped.
    fn nobody_listens(&self) -> bool {
        !self.calls_open
            && !self.requests.is_empty()
            && self.requests.values().all(|s| s.queue.is_closed())
    }

    /// Once no command can come and all data went out, ends the client's stream and
    /// closes the sink.
    fn maybe_finish_sending(&mut self, out: &mut Option<mpsc::Sender<OutputChunk>>) {
        if self.calls_open || !self.sources.is_empty() {
            return;
        }
        if !self.sending_done {
            self.sending_done = true;
            self.reactor.finish_sending();
        }
        if !self.reactor.has_pending_output() {
            *out = None;
        }
    }

    fn issue(&mut self, new: NewCall) {
        let NewCall { call, events } = new;
        if events.queue.is_closed() {
            // Nobody will read the answer: the command is not sent.
            return;
        }
        let Call {
            name,
            args,
            data,
            deadline,
            ..
        } = call;
        // Between commands only: a command whose data is still being sent keeps its
        // stream.
        if self.sources.is_empty() {
            if let Some(profile) = self.request_encoding.take() {
                if let Err(e) = self.reactor.set_encoding(&profile) {
                    tracing::debug!(error = %e, "requests stay in their encoding");
                }
            }
        }
        let decoded = name.len()
            + args.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
            + match &data {
                Some(CallData::Bytes(data)) => data.len(),
                _ => 0,
            };
        let result = match data {
            None => self.reactor.call_command(name.as_bytes(), args, None),
            Some(CallData::Bytes(data)) => {
                self.reactor.call_command(name.as_bytes(), args, Some(data))
            }
            Some(CallData::Stream(data)) => {
                let started = self.reactor.start_command(name.as_bytes(), args, true);
                if let Ok(request) = started {
                    self.sources.push_back(Source { request, data });
                }
                started
            }
        };
        match result {
            Ok(request) => {
                self.counters.call();
                self.counters.sent_decoded(decoded);
                self.track(&events.queue);
                self.requests.insert(request, events);
                if let Some(after) = deadline {
                    self.deadlines.insert(request, Instant::now() + after);
                }
            }
            Err(e) => {
                let error = Error::invalid(format!("cannot issue {name}: {e}"));
                self.fail(&events, error);
            }
        }
    }

    fn on_piece(
        &mut self,
        piece: Option<std::io::Result<Bytes>>,
        out: &mut Option<mpsc::Sender<OutputChunk>>,
    ) {
        let Some(request) = self.sources.front().map(|s| s.request) else {
            return;
        };
        // Each piece goes out as soon as it is read (a full-duplex peer may answer it
        // before the next one exists); the end is an empty `eos` frame.
        let sent = match piece {
            Some(Ok(piece)) if piece.is_empty() => Ok(()),
            Some(Ok(piece)) => {
                self.counters.sent_decoded(piece.len());
                self.reactor.send_command_data(request, piece, false)
            }
            None => {
                self.sources.pop_front();
                self.reactor.send_command_data(request, Bytes::new(), true)
            }
            Some(Err(e)) => {
                // The server must not run the command on part of its data, and the
                // protocol cannot take data back: abandon the whole connection.
                let error = Error::io("reading the command data", e);
                if let Some(out) = out.take() {
                    let _ = out.try_send(Err(error.duplicate()));
                }
                self.sources.clear();
                self.fail_all(&error);
                self.input_done = true;
                return;
            }
        };
        if let Err(e) = sent {
            // The response already ended (the server refused the command early): the
            // rest of the data is not needed.
            tracing::debug!(request = request.0, error = %e, "command data not sent");
            if self.sources.front().is_some_and(|s| s.request == request) {
                self.sources.pop_front();
            }
        }
    }

    fn on_events(&mut self, events: Result<Vec<ClientEvent>, ReactorError>) {
        let events = match events {
            Ok(events) => events,
            Err(e) => {
                self.fail_all(&Error::protocol(e.to_string()));
                self.input_done = true;
                return;
            }
        };
        for event in events {
            let request = event.request_id();
            // A final event ends the request whatever it says.
            let ended = if event.is_final() {
                self.deadlines.remove(&request);
                self.requests.remove(&request)
            } else {
                None
            };
            let item = match event {
                ClientEvent::ResponseData { data, eos, .. } => {
                    self.counters.received_decoded(data.len());
                    Item::Data(data, eos)
                }
                ClientEvent::TextOutput { atoms, .. } => Item::Text(atoms),
                ClientEvent::Progress {
                    topic,
                    position,
                    total,
                    ..
                } => Item::Progress(topic, position, total),
                ClientEvent::Error { kind, message, .. } => {
                    // Final: counted only for a call still routed (a call that timed
                    // out was counted then).
                    if ended.is_some() {
                        self.counters.error();
                    }
                    Item::Failed(match kind {
                        EventKind::Application => Error::application(message),
                        EventKind::Protocol => Error::protocol(message),
                        _ => Error::closed(message),
                    })
                }
                _ => continue,
            };
            match ended {
                Some(sink) => sink.push(item),
                None => {
                    if let Some(sink) = self.requests.get(&request) {
                        sink.push(item);
                    }
                }
            }
        }
    }

    /// Tells every request in flight (and every call not issued yet) the same failure.
    fn fail_all(&mut self, error: &Error) {
        self.deadlines.clear();
        for (_, sink) in std::mem::take(&mut self.requests) {
            self.fail(&sink, error.duplicate());
        }
        self.calls.close();
        while let Ok(call) = self.calls.try_recv() {
            self.fail(&call.events, error.duplicate());
        }
        self.calls_open = false;
        self.sources.clear();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn reserve_out(
    out: Option<&mpsc::Sender<OutputChunk>>,
) -> Option<mpsc::OwnedPermit<OutputChunk>> {
    match out {
        // An owned permit, so that `out` may be closed in the same turn.
        Some(tx) => tx.clone().reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

async fn next_piece(source: Option<&mut Source>) -> Option<std::io::Result<Bytes>> {
    match source {
        Some(s) => s.data.next().await,
        None => std::future::pending().await,
    }
}

async fn wait_head(
    head: Option<&mut BoxFuture<'static, Result<FrameInput, Error>>>,
) -> Result<FrameInput, Error> {
    match head {
        Some(head) => head.await,
        None => std::future::pending().await,
    }
}

async fn next_frame(frames: Option<&mut FrameInput>) -> Option<Result<Frame, CodecError>> {
    match frames {
        Some(frames) => frames.next().await,
        None => std::future::pending().await,
    }
}
