//! One exchange, driven by one task that owns its server reactor (no mutex), the way
//! quinn's `ConnectionDriver` owns a connection.
//!
//! An exchange is one HTTP request and its response, or a whole byte-stream connection.
//! The task loops over whichever of these can make progress, in this order:
//!
//! | branch    | enabled when                                | does |
//! |-----------|---------------------------------------------|------|
//! | handlers  | handlers are running                        | polls those that were woken (cheap when none was) |
//! | transmit  | the reactor has output ready                | waits for room in the bounded output queue, pulls up to one chunk of frames |
//! | forward   | a piece of command data waits for its handler | waits for room in that handler's data queue |
//! | piece     | a piece compressed on a worker is next in its request's order, and less than a chunk is queued | gives its frames to the reactor, then the reports that waited behind it |
//! | report    | less than a chunk queued, less than four pieces of raw data since the queue was empty, a worker stream free, and few reports waiting behind pieces | feeds one handler report (data, text, end) to the reactor, or starts compressing a large piece on a worker ([`crate::offload`]) |
//! | read      | input is open and no piece waits            | decodes the next frame, feeds it to the reactor, acts on the action |
//! | closed    | always                                      | the peer stopped reading: abort |
//! | idle      | the peer owes input or has output waiting   | nothing moved for that long: abort |
//!
//! Memory per exchange is therefore bounded by the queues, not by the peer: the output
//! queue (`body_queue` chunks of `transmit_chunk` bytes), about one chunk in the reactor
//! (and at most four `response_piece`s of raw data behind it, so that highly
//! compressible output cannot make the server work far ahead of the client), the
//! report queue (`report_queue` pieces of `response_piece` bytes, or of `parallel_piece`
//! bytes for large writes), the pieces compressing on workers (one per worker stream)
//! and the reports waiting behind them (at most `report_queue`), the data queue of each
//! streaming command (`data_queue` frames), and the reactor's own limits.
//!
//! Handlers run inside the exchange's own task (a [`FuturesUnordered`] it polls), so a
//! request and its answer never hop between threads; a handler with heavy work moves it
//! to `spawn_blocking` or a task of its own. When the exchange ends, for whatever reason
//! (including its future being dropped, when the client goes away), the handlers still
//! running are dropped, which cancels them, and the counters are reported.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, Stream, StreamExt};
use hgframe_reactor::{CommandRequest, ReactorError, ServerAction, ServerReactor};
use hgframe_stream::parse_accept_list;
use hgframe_wire::codec::CodecError;
use hgframe_wire::{Frame, RequestId};
use tokio::sync::mpsc;
use tokio::time::Sleep;

use crate::body::BodyChunk;
use crate::command::{
    CommandError, CommandInput, DataPiece, DataReader, Permission, Registry, Report, Responder,
};
use crate::config::ServerConfig;
use crate::offload::{next_done, Encoded, Lane, Step, Workers};
use crate::server::route::Target;
use crate::stats::{ExchangeStats, Outcome, StreamCounters};

/// Which commands an exchange may run.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// An HTTP request: what its URL grants and names.
    Http {
        permission: Permission,
        target: Target,
    },
    /// A byte-stream connection: every command, and `hello` as the first.
    ByteStream,
}

/// A piece of command data that waits for room in its handler's queue.
struct Forward {
    tx: mpsc::Sender<DataPiece>,
    piece: DataPiece,
}

/// The state of one exchange. Built by a transport, consumed by [`Exchange::run`].
pub(crate) struct Exchange {
    reactor: ServerReactor,
    registry: Arc<Registry>,
    config: Arc<ServerConfig>,
    scope: Scope,
    stats: ExchangeStats,
    report_tx: mpsc::Sender<Report>,
    report_rx: mpsc::Receiver<Report>,
    handlers: FuturesUnordered<BoxFuture<'static, ()>>,
    /// Data queues of streaming commands whose data is still arriving.
    data_txs: HashMap<RequestId, mpsc::Sender<DataPiece>>,
    /// Requests whose response the reactor has not ended yet.
    open: HashSet<RequestId>,
    forward: Option<Forward>,
    input_open: bool,
    /// Raw bytes and encoding time not yet attributed to a stream (they go to the stream
    /// whose frames come out next: the reactor has one output stream at a time).
    pending_raw: u64,
    pending_time: Duration,
    /// Raw response bytes given to the reactor since its queue was last empty, and how
    /// many may be (four response pieces).
    unsent_raw: u64,
    raw_budget: u64,
    started: Instant,
    /// Worker streams compressing large pieces.
    workers: Workers,
    /// Per request, its pieces compressing and the reports behind them, in order.
    lanes: HashMap<RequestId, Lane>,
    /// Reports waiting in lanes.
    waiting: usize,
    /// Whether the counters were given to the observer (exactly once, even when the
    /// exchange is dropped unfinished).
    reported: bool,
}

impl Exchange {
    pub(crate) fn new(
        reactor: ServerReactor,
        registry: Arc<Registry>,
        config: Arc<ServerConfig>,
        scope: Scope,
        stats: ExchangeStats,
    ) -> Self {
        let (report_tx, report_rx) = mpsc::channel(config.report_queue());
        let raw_budget = 4 * config.response_piece() as u64;
        let workers = Workers::new(config.parallel_streams(), config.parallel_piece());
        Self {
            reactor,
            registry,
            config,
            scope,
            stats,
            report_tx,
            report_rx,
            handlers: FuturesUnordered::new(),
            data_txs: HashMap::new(),
            open: HashSet::new(),
            forward: None,
            input_open: true,
            pending_raw: 0,
            pending_time: Duration::ZERO,
            unsent_raw: 0,
            raw_budget,
            started: Instant::now(),
            workers,
            lanes: HashMap::new(),
            waiting: 0,
            reported: false,
        }
    }

    /// Runs the exchange to its end: reads frames from `input`, sends encoded frames to
    /// `output`. Returns its counters. Never fails: how it ended is in
    /// [`ExchangeStats::outcome`]. Dropping the future ends the exchange as
    /// [`Outcome::ClientGone`].
    pub(crate) async fn run<I>(
        mut self,
        mut input: I,
        output: mpsc::Sender<BodyChunk>,
    ) -> ExchangeStats
    where
        I: Stream<Item = Result<Frame, CodecError>> + Unpin,
    {
        let timeout = self.config.idle_timeout();
        let mut idle: Option<Pin<Box<Sleep>>> = timeout.map(|d| Box::pin(tokio::time::sleep(d)));
        let chunk = self.config.transmit_chunk();
        let mut buf = BytesMut::new();
        loop {
            if self.is_done() {
                break;
            }
            let can_send = self.reactor.has_pending_output();
            // Both in wire bytes (memory) and in raw bytes (work: compressed output can
            // be tiny), the reactor stays at most about a chunk ahead of the connection.
            let room = self.reactor.queued_output_bytes() < chunk;
            let can_report = room
                && self.unsent_raw < self.raw_budget
                && self.workers.has_room(&self.reactor)
                && self.waiting < self.config.report_queue();
            let can_finish_piece = room && self.workers.is_busy();
            let can_read = self.input_open && self.forward.is_none();
            let waiting_on_peer = can_send || self.input_expected();
            tokio::select! {
                biased;
                Some(()) = self.handlers.next(), if !self.handlers.is_empty() => {}
                permit = output.reserve(), if can_send => {
                    let Ok(permit) = permit else {
                        self.stats.outcome = Outcome::ClientGone;
                        break;
                    };
                    self.transmit(&mut buf, chunk);
                    permit.send(Ok(buf.split().freeze()));
                }
                permit = reserve_forward(self.forward.as_ref()), if self.forward.is_some() => {
                    if let (Some(forward), Some(permit)) = (self.forward.take(), permit) {
                        permit.send(forward.piece);
                    }
                }
                (request, done) = next_done(&mut self.lanes), if can_finish_piece => {
                    self.on_piece_done(request, done);
                }
                report = self.report_rx.recv(), if can_report => {
                    // `recv` cannot return None: `self.report_tx` is alive.
                    if let Some(report) = report {
                        self.on_report(report);
                    }
                }
                frame = input.next(), if can_read => match frame {
                    Some(Ok(frame)) => self.on_frame(frame),
                    Some(Err(e)) => self.on_input_error(&e),
                    None => self.on_input_end(),
                },
                () = output.closed() => {
                    self.stats.outcome = Outcome::ClientGone;
                    break;
                }
                () = sleep_or_never(idle.as_mut()), if waiting_on_peer => {
                    tracing::debug!("exchange idle for too long; aborting it");
                    self.stats.outcome = Outcome::TimedOut;
                    break;
                }
            }
            if let (Some(sleep), Some(d)) = (idle.as_mut(), timeout) {
                sleep.as_mut().reset(tokio::time::Instant::now() + d);
            }
        }
        self.handlers.clear();
        self.report();
        self.stats.clone()
    }

    /// Gives the counters to the observer and the log, once.
    fn report(&mut self) {
        if self.reported {
            return;
        }
        self.reported = true;
        self.stats.elapsed = self.started.elapsed();
        self.flush_pending_counters(None);
        if let Some(observer) = self.config.observer() {
            observer(&self.stats);
        }
        tracing::debug!(stats = ?self.stats, "exchange ended");
    }

    /// Whether the peer owes us input: the rest of an HTTP request, or, on a byte
    /// stream, the rest of a command it started. A byte stream with nothing under way is
    /// merely idle, and may stay so.
    fn input_expected(&self) -> bool {
        self.input_open
            && match self.scope {
                Scope::Http { .. } => true,
                Scope::ByteStream => {
                    !self.data_txs.is_empty() || self.reactor.receiving_commands() > 0
                }
            }
    }

    /// Input ended and nothing is left to send (or the reactor failed and its error was
    /// sent).
    fn is_done(&self) -> bool {
        !self.input_open
            && (self.reactor.is_finished()
                || (self.reactor.is_errored() && !self.reactor.has_pending_output()))
    }

    /// Pulls up to `chunk` bytes of frames into `buf`, counting them per stream.
    fn transmit(&mut self, buf: &mut BytesMut, chunk: usize) {
        while buf.len() < chunk {
            let Some(frame) = self.reactor.poll_frame() else {
                break;
            };
            let len = frame.encoded_len() as u64;
            self.stats.bytes_out += len;
            if let Some(counters) = self.counters(frame.stream_id().0) {
                counters.frames += 1;
                counters.wire_bytes += len;
            }
            // Raw bytes given to the reactor are compressed on its own stream.
            if !self.workers.owns(frame.stream_id().0) {
                self.flush_pending_counters(Some(frame.stream_id().0));
            }
            frame.encode(buf);
        }
        if self.reactor.queued_output_bytes() == 0 {
            self.unsent_raw = 0;
        }
    }

    /// The counters of a stream, created on its first frame.
    fn counters(&mut self, stream_id: u8) -> Option<&mut StreamCounters> {
        let streams = &mut self.stats.streams;
        let index = match streams.iter().position(|s| s.stream_id == stream_id) {
            Some(i) => i,
            None => {
                streams.push(StreamCounters {
                    stream_id,
                    profile: self.reactor.output_encoding().to_owned(),
                    ..StreamCounters::default()
                });
                streams.len() - 1
            }
        };
        streams.get_mut(index)
    }

    /// Attributes raw bytes and encoding time to `stream_id`, or at the end to the last
    /// stream seen that is not a worker's.
    fn flush_pending_counters(&mut self, stream_id: Option<u8>) {
        if self.pending_raw == 0 && self.pending_time.is_zero() {
            return;
        }
        let last_own = || {
            self.stats
                .streams
                .iter()
                .rev()
                .map(|s| s.stream_id)
                .find(|id| !self.workers.owns(*id))
        };
        let Some(id) = stream_id.or_else(last_own) else {
            return;
        };
        let (raw, time) = (self.pending_raw, self.pending_time);
        if let Some(counters) = self.counters(id) {
            counters.raw_bytes += raw;
            counters.encode_time += time;
        }
        self.pending_raw = 0;
        self.pending_time = Duration::ZERO;
    }

    fn on_frame(&mut self, frame: Frame) {
        self.stats.frames_in += 1;
        self.stats.bytes_in += frame.encoded_len() as u64;
        let action = self.reactor.on_frame(frame);
        self.on_action(action);
    }

    fn on_input_end(&mut self) {
        self.input_open = false;
        let action = self.reactor.on_input_eof();
        self.on_action(action);
    }

    /// The input could not be read as frames. The reactor cannot be told about a
    /// malformed frame (it never saw one), so the exchange ends its input there: any
    /// command cut short is then reported to the client as a protocol error.
    fn on_input_error(&mut self, e: &CodecError) {
        tracing::debug!(error = %e, "reading frames failed");
        self.stats.outcome = Outcome::InputFailed(e.to_string());
        self.on_input_end();
    }

    fn on_action(&mut self, action: ServerAction) {
        match action {
            ServerAction::RunCommand(cmd) => self.run_command(cmd),
            ServerAction::CommandData {
                request_id,
                data,
                eos,
            } => self.on_command_data(request_id, data, eos),
            ServerAction::Error(e) => {
                tracing::debug!(error = %e, "client broke the protocol");
                if !matches!(self.stats.outcome, Outcome::InputFailed(_)) {
                    self.stats.outcome = Outcome::ProtocolError(e.to_string());
                }
                // Nothing more will be read; the error-response is queued in the
                // reactor (and released from deferral by the end of input).
                if self.input_open {
                    self.input_open = false;
                    let _ = self.reactor.on_input_eof();
                }
                self.handlers.clear();
                self.data_txs.clear();
                self.forward = None;
            }
            ServerAction::SendFrames | ServerAction::WantFrame | ServerAction::Noop => {}
        }
    }

    fn on_command_data(&mut self, request: RequestId, data: Bytes, eos: bool) {
        let tx = if eos {
            self.data_txs.remove(&request)
        } else {
            self.data_txs.get(&request).cloned()
        };
        // No queue: the command was refused, or its handler dropped its data.
        let Some(tx) = tx else { return };
        match tx.try_send((data, eos)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(piece)) => {
                self.forward = Some(Forward { tx, piece });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.data_txs.remove(&request);
            }
        }
    }

    /// Why the command may not run here, if it may not (Mercurial's messages).
    fn refusal(&self, name: &[u8]) -> Option<String> {
        let shown = String::from_utf8_lossy(name);
        if let Scope::Http {
            target: Target::Single(url_command),
            ..
        } = &self.scope
        {
            if self.stats.commands > 1 {
                return Some("multiple commands cannot be issued to this URL".to_owned());
            }
            if url_command.as_ref() != name {
                return Some("command in frame must match command in URL".to_owned());
            }
        }
        let Some(command) = self.registry.get(name) else {
            return Some(format!("wire protocol command not available: {shown}"));
        };
        match &self.scope {
            Scope::Http { permission, .. } if !permission.allows(command.permission()) => Some(
                format!("insufficient permissions to execute command: {shown}"),
            ),
            _ => None,
        }
    }

    fn run_command(&mut self, cmd: CommandRequest) {
        self.stats.commands += 1;
        let request = cmd.request_id;
        if matches!(self.scope, Scope::ByteStream) && cmd.name.as_ref() == b"hello" {
            self.hello(cmd);
            return;
        }
        if let Some(message) = self.refusal(&cmd.name) {
            tracing::debug!(request = request.0, %message, "command refused");
            let _ = self.feed(request, |r| r.on_application_error(request, &message));
            return;
        }
        let Some(command) = self.registry.get(&cmd.name) else {
            return;
        };
        let handler = command.handler();
        let data = match (cmd.data, cmd.data_follows) {
            (Some(data), _) => Some(DataReader::whole(data)),
            (None, true) => {
                let (tx, rx) = mpsc::channel(self.config.data_queue());
                self.data_txs.insert(request, tx);
                Some(DataReader::pieces(rx))
            }
            (None, false) => None,
        };
        let name = String::from_utf8_lossy(&cmd.name).into_owned();
        let input = CommandInput::new(name, cmd.args, data);
        let out = Responder::new(
            request,
            self.report_tx.clone(),
            self.config.response_piece(),
            self.workers.piece_size(&self.reactor),
        );
        let reports = self.report_tx.clone();
        self.open.insert(request);
        self.handlers.push(Box::pin(async move {
            // A panic in a handler fails its command, not the exchange.
            let result = std::panic::AssertUnwindSafe(handler.call(input, out))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(CommandError::new("the command failed unexpectedly")));
            // Through the same queue as its data, so the end comes after it.
            let _ = reports.send(Report::Finished { request, result }).await;
        }));
    }

    /// `hello` on a byte stream: the client lists the encodings it accepts (argument
    /// `encodings`, as the HTTP header); the answer is `encoding=<profile>\n`, on the
    /// server's first stream, which already uses that profile. Only as the first command.
    fn hello(&mut self, cmd: CommandRequest) {
        let request = cmd.request_id;
        if self.stats.commands != 1 {
            let _ = self.feed(request, |r| {
                r.on_application_error(request, "hello must be the first command of a connection")
            });
            return;
        }
        let accepts = cmd
            .args
            .get(b"encodings".as_slice())
            .map(|v| parse_accept_list(&String::from_utf8_lossy(v)))
            .unwrap_or_default();
        let chosen = self.reactor.set_peer_accepts(&accepts).to_owned();
        tracing::debug!(encoding = %chosen, "byte-stream encoding negotiated");
        let answer = Bytes::from(format!("encoding={chosen}\n"));
        let _ = self.feed(request, |r| r.on_response_data(request, answer, true));
    }

    /// A handler's report: dropped if its response already ended; otherwise a large
    /// piece starts compressing on a worker, and anything else is fed to the reactor, or
    /// waits behind the request's pieces still compressing.
    fn on_report(&mut self, report: Report) {
        let request = match &report {
            Report::Data { request, eos, .. } => {
                if !self.open.contains(request) {
                    return;
                }
                if *eos {
                    self.open.remove(request);
                }
                *request
            }
            Report::Text { request, .. } => {
                if !self.open.contains(request) {
                    return;
                }
                *request
            }
            Report::Finished { request, .. } => {
                self.data_txs.remove(request);
                if !self.open.remove(request) {
                    return;
                }
                *request
            }
        };
        let report = match report {
            Report::Data { request, data, eos } => {
                match self.workers.start(&mut self.reactor, request, data, eos) {
                    Ok(piece) => {
                        self.lanes.entry(request).or_default().push_back(piece);
                        return;
                    }
                    Err(data) => Report::Data { request, data, eos },
                }
            }
            other => other,
        };
        match self.lanes.get_mut(&request) {
            Some(lane) => {
                lane.push_back(Step::Report(report));
                self.waiting += 1;
            }
            None => self.apply(report),
        }
    }

    /// Feeds a report to the reactor (its turn has come).
    fn apply(&mut self, report: Report) {
        match report {
            Report::Data { request, data, eos } => {
                self.pending_raw += data.len() as u64;
                self.unsent_raw += data.len() as u64;
                let _ = self.feed(request, |r| r.on_response_data(request, data, eos));
            }
            Report::Text { request, atoms } => {
                let fed = self.feed(request, |r| r.on_text_output(request, &atoms));
                if let Err(ReactorError::Build(e)) = fed {
                    // Text that cannot be framed fails the command, visibly.
                    let message = format!("text output cannot be sent: {e}");
                    self.open.remove(&request);
                    let _ = self.feed(request, |r| r.on_application_error(request, &message));
                }
            }
            Report::Finished { request, result } => {
                let _ = match result {
                    Ok(()) => {
                        self.feed(request, |r| r.on_response_data(request, Bytes::new(), true))
                    }
                    Err(e) => self.feed(request, |r| r.on_application_error(request, e.message())),
                };
            }
        }
    }

    /// The piece at the head of `request`'s lane is compressed: its frames go to the
    /// reactor, then whatever waited behind it, up to the next piece.
    fn on_piece_done(&mut self, request: RequestId, done: Result<Encoded, tokio::task::JoinError>) {
        let Some(lane) = self.lanes.get_mut(&request) else {
            return;
        };
        let Some(Step::Piece { eos, .. }) = lane.pop_front() else {
            return;
        };
        let failed = match done {
            Ok(Encoded {
                stream,
                frames,
                raw,
                time,
            }) => {
                if let Some(counters) = self.counters(stream.id().0) {
                    counters.raw_bytes += raw;
                    counters.encode_time += time;
                }
                match frames {
                    Ok(frames) => {
                        let fed =
                            self.feed(request, |r| r.on_response_frames(request, frames, eos));
                        if fed.is_ok() {
                            self.workers.give_back(stream);
                        } else {
                            // Its frames did not go out: the stream is out of step.
                            self.workers.lose();
                        }
                        None
                    }
                    Err(e) => {
                        self.workers.lose();
                        Some(format!("compressing the response failed: {e}"))
                    }
                }
            }
            Err(e) => {
                self.workers.lose();
                Some(format!("compressing the response failed: {e}"))
            }
        };
        if let Some(message) = failed {
            tracing::debug!(request = request.0, %message, "worker failed");
            self.open.remove(&request);
            let _ = self.feed(request, |r| r.on_application_error(request, &message));
        }
        self.drain_lane(request);
    }

    /// Feeds the reports at the head of `request`'s lane, up to its next piece; forgets
    /// the lane once empty.
    fn drain_lane(&mut self, request: RequestId) {
        loop {
            let Some(lane) = self.lanes.get_mut(&request) else {
                return;
            };
            match lane.front() {
                Some(Step::Piece { .. }) => return,
                Some(Step::Report(_)) => {
                    if let Some(Step::Report(report)) = lane.pop_front() {
                        self.waiting = self.waiting.saturating_sub(1);
                        self.apply(report);
                    }
                }
                None => {
                    self.lanes.remove(&request);
                    return;
                }
            }
        }
    }

    /// Gives the reactor output for `request`, timing it (content encoding happens
    /// here). A refusal means the response already ended (a protocol error ended
    /// everything, for instance): logged and otherwise ignored.
    fn feed<F>(&mut self, request: RequestId, f: F) -> Result<(), ReactorError>
    where
        F: FnOnce(&mut ServerReactor) -> Result<ServerAction, ReactorError>,
    {
        let started = Instant::now();
        let result = f(&mut self.reactor);
        self.pending_time += started.elapsed();
        match result {
            Ok(action) => {
                self.on_action(action);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(request = request.0, error = %e, "response not accepted");
                if !matches!(e, ReactorError::Build(_)) {
                    self.open.remove(&request);
                }
                Err(e)
            }
        }
    }
}

impl Drop for Exchange {
    /// An exchange dropped before its end (its connection went away) still reports.
    fn drop(&mut self) {
        if !self.reported {
            if self.stats.outcome == Outcome::Completed {
                self.stats.outcome = Outcome::ClientGone;
            }
            self.report();
        }
    }
}

/// Room in a handler's data queue, or `None` if the handler is gone.
async fn reserve_forward(forward: Option<&Forward>) -> Option<mpsc::OwnedPermit<DataPiece>> {
    match forward {
        Some(f) => f.tx.clone().reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_or_never(sleep: Option<&mut Pin<Box<Sleep>>>) {
    match sleep {
        Some(s) => s.as_mut().await,
        None => std::future::pending().await,
    }
}
