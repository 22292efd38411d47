//! One exchange, on a task of its own that owns its server reactor (no mutex), the way
//! quinn's `ConnectionDriver` owns a connection.
//!
//! An exchange is one HTTP request and its response, or a whole byte-stream connection.
//! It is made of parts that each own one invariant:
//!
//! | part | owns |
//! |---|---|
//! | [`handlers`] | which commands run (per-exchange and server-wide slots), which wait (bytes), the data each still receives |
//! | [`pacing`] | how far output may get ahead of the client, and the exchange's share of the server's memory budget |
//! | [`crate::offload`] | large pieces compressing on worker streams, fed back in order |
//! | [`timers`] | the clocks: a stalled peer, a too slow one, a quiet connection |
//! | [`counters`] | the exchange's counters |
//! | this module | the reactor, the reports of handlers, and the loop below |
//!
//! The task loops over whichever of these can make progress, in this order:
//!
//! | branch | enabled when | does |
//! |---|---|---|
//! | handlers | handlers are running | polls those that were woken; a slot freed starts the next waiting command |
//! | transmit | the reactor has output ready | waits for room in the bounded output queue, pulls up to one chunk of frames |
//! | forward | a piece of command data waits for its handler | waits for room in that handler's data queue |
//! | piece | a piece compressed on a worker is next in its request's order, and there is room | gives its frames to the reactor, then the reports that waited behind it |
//! | report | there is room (pacing), a worker stream is free, few reports wait behind pieces | feeds one handler report to the reactor, or starts compressing a large piece |
//! | read | input is open, no data piece waits, and (full duplex) waiting work and memory are under their limits | decodes the next frame, feeds it to the reactor, acts on the action |
//! | slot | a command waits, the exchange has a free slot, not paused | takes a server-wide handler slot when one frees |
//! | memory | over the server's memory budget | wakes when memory is released elsewhere |
//! | closed | always | the peer stopped reading: abort |
//! | timers | always ([`timers`] says which clock runs when) | the peer stalled or is too slow: abort; a connection quiet too long: close |
//!
//! At a limit a legal exchange waits rather than fails. A full-duplex one stops reading
//! (flow control pushes back on the client). A half-duplex one cannot (its client sends
//! the whole request before it reads), so it defers *execution*: commands wait for a
//! slot at the cost of their bookkeeping, handlers whose output does not fit pause, and
//! no new handler starts. Two things are refused, each for one request only: a command
//! that arrives when the waiting work is at its limit, and, when a handler's data queue
//! is full behind a response that cannot be held, that response (the client could never
//! finish sending otherwise).
//!
//! Every command that is dispatched gets exactly one terminal answer: its handler's last
//! data, or an error frame when it fails, panics, or its output cannot be encoded. When
//! even the error frame cannot be encoded, the exchange is aborted (the transport then
//! cuts the connection, which the client reports for every request still open).

mod counters;
mod handlers;
mod pacing;
pub(crate) mod spares;
mod timers;

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Stream, StreamExt};
use hgframe_reactor::{CommandRequest, ReactorError, ServerAction, ServerReactor};
use hgframe_stream::parse_accept_list;
use hgframe_wire::codec::CodecError;
use hgframe_wire::extension::{Extension, Extensions};
use hgframe_wire::{Frame, RequestId};
use tokio::sync::mpsc;

use self::counters::Counters;
use self::handlers::{Delivery, Handlers};
use self::pacing::{Pacing, REQUEST_BOOKKEEPING};
use self::spares::{Maps, Spare};
use self::timers::{Expired, Timers, Wait};
use crate::caller::Caller;
use crate::command::{Handler, Permission, ProgressGate, Registry, Report, Responder};
use crate::config::EngineConfig;
use crate::offload::{next_done, Encoded, Lane, NotStarted, Step, Workers};
use crate::output::OutputChunk;
use crate::server::Resources;
use crate::stats::{ExchangeStats, Outcome};

/// Most reports fed, or frames read, in one turn of the loop. Batches save a small
/// exchange turns of the loop (each rebuilds and polls the whole `select!`); the bound
/// keeps the other branches (a handler woken, output to send) from waiting long.
const BATCH: usize = 16;

/// Which commands an exchange may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One request of a request/response transport (an HTTP request): what it grants,
    /// and the one command it names (`None` for `multirequest`, which runs any number).
    /// The peer owes the rest of its request until its input ends.
    Request {
        /// What the request may run.
        permission: Permission,
        /// The only command it may run, if it names one.
        command: Option<Bytes>,
    },
    /// A long-lived connection (a byte stream): every command, `hello` as the first.
    Connection,
}

/// The state of one exchange. Built by [`crate::Server::start`], consumed by
/// [`Exchange::run`].
pub(crate) struct Exchange {
    reactor: ServerReactor,
    registry: Arc<Registry>,
    config: Arc<EngineConfig>,
    resources: Resources,
    scope: Scope,
    full_duplex: bool,
    input_open: bool,
    handlers: Handlers,
    pacing: Pacing,
    timers: Timers,
    counters: Counters,
    report_tx: mpsc::Sender<Report>,
    /// Taken only when the exchange ends, to give the queue back
    /// ([`spares::Spares`]).
    report_rx: Option<mpsc::Receiver<Report>>,
    /// Requests dispatched whose response has not ended yet.
    open: FxHashSet<RequestId>,
    /// The latest command of each request id (its number in the exchange): reports of
    /// an earlier command with the same id are stale.
    current: FxHashMap<RequestId, u64>,
    /// Worker streams compressing large pieces.
    workers: Workers,
    /// Per request, its pieces compressing and the reports behind them, in order.
    lanes: FxHashMap<RequestId, Lane>,
    /// Reports waiting in lanes.
    lane_reports: usize,
    /// A large piece that no worker stream could take yet (the streams with room were
    /// other requests'): no other report is taken until it is, so that the request's
    /// order holds and the piece is not compressed on this task. Tried again every turn.
    parked: Option<Report>,
    /// Requests whose response data goes raw ([`Responder::set_sensitive`]): never to
    /// a worker stream, whose context is shared.
    sensitive: FxHashSet<RequestId>,
    /// Ended without a clean end (a terminal answer could not be encoded).
    aborted: bool,
}

impl Exchange {
    pub(crate) fn new(
        reactor: ServerReactor,
        registry: Arc<Registry>,
        config: Arc<EngineConfig>,
        resources: Resources,
        scope: Scope,
        stats: ExchangeStats,
        caller: Arc<Caller>,
    ) -> Self {
        let Spare {
            tx: report_tx,
            rx: report_rx,
            maps,
        } = resources.spares.take();
        let timers = Timers::new(&config);
        let full_duplex = !reactor.config().defer_output();
        let mut handlers = Handlers::new(
            config.max_handlers(),
            config.max_waiting_bytes(),
            Arc::clone(&resources.handlers),
            config.data_queue(),
            resources.blocking.clone(),
            caller,
            maps.handlers,
        );
        handlers.set_cancellable(reactor.extensions().contains(Extension::Cancel));
        let pacing = Pacing::new(
            config.transmit_chunk(),
            config.max_held_output(),
            4 * config.response_piece(),
            &resources.memory,
        );
        let workers = Workers::new(
            config.parallel_streams(),
            config.parallel_piece(),
            Arc::clone(&resources.compressors),
        );
        Self {
            reactor,
            registry,
            config,
            resources,
            scope,
            full_duplex,
            input_open: true,
            handlers,
            pacing,
            timers,
            counters: Counters::new(stats),
            report_tx,
            report_rx: Some(report_rx),
            open: maps.open,
            current: maps.current,
            workers,
            lanes: FxHashMap::default(),
            lane_reports: 0,
            parked: None,
            sensitive: FxHashSet::default(),
            aborted: false,
        }
    }

    /// Runs the exchange to its end: reads frames from `input`, sends encoded frames to
    /// `output`. Returns its counters. Never fails: how it ended is in
    /// [`ExchangeStats::outcome`]. Dropping the future ends the exchange as
    /// [`Outcome::ClientGone`].
    pub(crate) async fn run<I>(
        mut self,
        mut input: I,
        output: mpsc::Sender<OutputChunk>,
    ) -> ExchangeStats
    where
        I: Stream<Item = Result<Frame, CodecError>> + Unpin,
    {
        let chunk = self.config.transmit_chunk();
        let mut buf = BytesMut::new();
        loop {
            if self.is_done() {
                break;
            }
            if let Some(report) = self.parked.take() {
                // A stream may be free since the last turn (a piece done, a lane
                // dropped); if not, it parks again.
                self.on_report(report);
            }
            let queued = self.reactor.queued_output_bytes();
            let holding = self.is_holding();
            // Read before the budget is checked, so a release in between wakes the
            // wait below (`released_since`).
            let memory_epoch = self.resources.memory.epoch();
            let over_budget = self.over_budget();
            // At the limit no new handler starts (the running ones pause as they write).
            // Over the server's budget with none of its own running, one may start: a
            // waiting command holds its bytes until it runs, so waiting could not free
            // them.
            self.handlers.set_paused(
                (over_budget && self.handlers.is_running())
                    || (holding && self.pacing.is_full(queued)),
            );
            let can_send = self.reactor.has_pending_output();
            let room = self.pacing.has_room(queued, holding);
            let can_report = self.can_report(queued, holding);
            // Holding all it may while the client still sends, and reading waits on a
            // handler: reports are taken to fail responses that cannot fit.
            let stuck = holding && self.handlers.is_forwarding() && self.pacing.is_full(queued);
            let can_finish_piece = room && self.workers.is_busy();
            let can_read = self.can_read(over_budget);
            let wants_slot = self.handlers.wants_slot();
            let owes_input = self.input_expected();
            self.timers
                .set_state(self.wait(can_send, owes_input), owes_input);
            self.counters.stats.turns += 1;
            let forward_room = self.handlers.forward_room();
            let slot = self.handlers.slot();
            let memory = self.resources.memory.clone();
            tokio::select! {
                biased;
                () = self.handlers.next_done(), if self.handlers.is_running() => {
                    // What the handler reported on its way out goes in this turn.
                    self.more_reports(0);
                }
                permit = output.reserve(), if can_send => {
                    let Ok(permit) = permit else {
                        self.counters.stats.outcome = Outcome::ClientGone;
                        break;
                    };
                    self.transmit(&mut buf, chunk);
                    permit.send(Ok(std::mem::take(&mut buf).freeze()));
                    self.timers.progress(0);
                }
                permit = forward_room, if self.handlers.is_forwarding() => {
                    self.handlers.forwarded(permit);
                    self.timers.progress(0);
                }
                (request, done) = next_done(&mut self.lanes), if can_finish_piece => {
                    self.on_piece_done(request, done);
                }
                report = next_report(&mut self.report_rx), if can_report || stuck => {
                    // Not None: `self.report_tx` is alive, and the queue is taken only
                    // after the loop.
                    match report {
                        Some(report) if !can_report => self.unblock(report),
                        Some(report) => {
                            self.on_report(report);
                            self.more_reports(1);
                        }
                        None => {}
                    }
                }
                frame = input.next(), if can_read => {
                    self.handlers.begin_batch();
                    self.on_input(frame);
                    self.read_batch(&mut input, 1);
                }
                permit = slot, if wants_slot => {
                    if let Some(permit) = permit {
                        self.handlers.start(permit);
                    }
                }
                () = memory.released_since(memory_epoch), if over_budget => {}
                () = output.closed() => {
                    self.counters.stats.outcome = Outcome::ClientGone;
                    break;
                }
                expired = self.timers.expired() => match expired {
                    Expired::Idle => {
                        tracing::debug!("no progress from the peer for too long; aborting");
                        self.counters.stats.outcome = Outcome::TimedOut;
                        break;
                    }
                    Expired::TooSlow => {
                        tracing::debug!("the peer sends too slowly; aborting");
                        self.counters.stats.outcome = Outcome::TooSlow;
                        break;
                    }
                    Expired::Quiet => {
                        tracing::debug!("connection quiet for too long; closing it");
                        self.on_input_end();
                    }
                },
            }
            // Handlers started in this turn get their first poll in it (the next turn
            // would give it to them first): a small one ends at once, and what it
            // reported is taken and its answer leaves below, with no turn more.
            if self.handlers.take_started() {
                let handlers = &mut self.handlers;
                std::future::poll_fn(|cx| Poll::Ready(handlers.poll_ended(cx))).await;
                self.more_reports(0);
            }
            // Nothing else to do: the next turn would read, so input already there (the
            // end of a small request, say) is read in this one.
            if !self.handlers.is_running()
                && self
                    .report_rx
                    .as_ref()
                    .map_or(true, mpsc::Receiver::is_empty)
                && !self.workers.is_busy()
                && !self.reactor.has_pending_output()
            {
                self.handlers.begin_batch();
                self.read_batch(&mut input, 0);
            }
            // Output made ready in this turn leaves now rather than after another turn
            // (the transmit branch would take it first); with the batches above, one
            // chunk carries what several reports gave.
            if self.reactor.has_pending_output() {
                if let Ok(permit) = output.try_reserve() {
                    self.transmit(&mut buf, chunk);
                    permit.send(Ok(std::mem::take(&mut buf).freeze()));
                    self.timers.progress(0);
                }
            }
        }
        self.handlers.clear();
        // The handlers are gone, and with them their senders (unless one kept its
        // `Responder`, which keeps the queue out of the pool). The counters below do
        // not look at the maps.
        if let Some(rx) = self.report_rx.take() {
            let maps = Maps {
                open: std::mem::take(&mut self.open),
                current: std::mem::take(&mut self.current),
                handlers: self.handlers.take_maps(),
            };
            self.resources.spares.give_back(&self.report_tx, rx, maps);
        }
        self.report();
        // The streams' counters move out (the exchange only reports once): cloning
        // them would cost an allocation per stream and per profile name.
        let streams = std::mem::take(&mut self.counters.stats.streams);
        let mut stats = self.counters.stats.clone();
        stats.streams = streams;
        stats
    }

    /// Whether the server's memory budget is spent, after charging what the exchange
    /// holds now.
    fn over_budget(&mut self) -> bool {
        let queued = self.reactor.queued_output_bytes();
        self.pacing.hold(self.held_bytes(queued))
    }

    /// Whether a handler's report may be fed now: there is room for its output (the
    /// reactor holds `queued` bytes; `holding`: output cannot flow yet), a worker stream
    /// for a large piece, and few reports wait behind pieces.
    fn can_report(&self, queued: usize, holding: bool) -> bool {
        self.parked.is_none()
            && self.pacing.has_room(queued, holding)
            && self.workers.has_room(&self.reactor)
            && self.lane_reports < self.config.report_queue()
    }

    /// Whether the next frame may be read: input is open, no data piece waits for its
    /// handler, and a full-duplex exchange is under its limits (it pushes back on the
    /// client by not reading).
    fn can_read(&self, over_budget: bool) -> bool {
        self.input_open
            && !self.handlers.is_forwarding()
            && !(self.full_duplex && (self.handlers.is_full() || over_budget))
    }

    /// Feeds the reports already queued, as the report branch would turn after turn,
    /// while they may be fed: up to a batch in all, `taken` of which were taken this
    /// turn. Saves a small exchange the turns (and the rebuilt `select!`) in between.
    fn more_reports(&mut self, taken: usize) {
        for _ in taken..BATCH {
            if self.is_done() {
                return;
            }
            let queued = self.reactor.queued_output_bytes();
            let holding = self.is_holding();
            self.over_budget();
            if !self.can_report(queued, holding) {
                return;
            }
            match self.report_rx.as_mut().map(mpsc::Receiver::try_recv) {
                Some(Ok(report)) => self.on_report(report),
                _ => return,
            }
        }
    }

    /// Reads the frames already decoded (a small request comes in one piece), up to a
    /// batch in all, `taken` of which were read this turn, until a handler has something
    /// to do (handlers go before the next frame, as they would turn by turn); then ends
    /// the handlers' batch (begun by the caller). Polled without this task's waker: when
    /// a frame is not ready, the next turn polls again with the waker.
    fn read_batch<I>(&mut self, input: &mut I, taken: usize)
    where
        I: Stream<Item = Result<Frame, CodecError>> + Unpin,
    {
        for _ in taken..BATCH {
            let over_budget = self.over_budget();
            if self.handlers.batch_ready() || !self.can_read(over_budget) {
                break;
            }
            match input.next().now_or_never() {
                Some(frame) => self.on_input(frame),
                None => break,
            }
        }
        self.handlers.end_batch();
    }

    /// A frame read, a read error, or the end of the input.
    fn on_input(&mut self, frame: Option<Result<Frame, CodecError>>) {
        match frame {
            Some(Ok(frame)) => self.on_frame(frame),
            Some(Err(e)) => self.on_input_error(&e),
            None => self.on_input_end(),
        }
    }

    /// What the exchange waits for now, which decides the clock that runs.
    fn wait(&self, can_send: bool, owes_input: bool) -> Wait {
        if owes_input || can_send {
            return Wait::Peer;
        }
        let under_way = self.handlers.is_running()
            || self.handlers.wants_slot()
            || !self.open.is_empty()
            || !self.lanes.is_empty()
            || self.reactor.queued_output_bytes() > 0;
        match self.scope {
            Scope::Connection if self.input_open && !under_way => {
                if self.counters.stats.commands == 0 {
                    Wait::FirstCommand
                } else {
                    Wait::Quiet
                }
            }
            _ => Wait::Work,
        }
    }

    /// Whether output is held until the input ends (half duplex, request arriving).
    fn is_holding(&self) -> bool {
        !self.full_duplex && self.input_open
    }

    /// Everything the exchange holds, in bytes, for the server's memory budget.
    fn held_bytes(&self, queued: usize) -> usize {
        queued
            + self.handlers.waiting_bytes()
            + self.reactor.buffered_bytes()
            + self.workers.busy_bytes()
            + self.open.len() * REQUEST_BOOKKEEPING
    }

    /// A half-duplex exchange can hold no more output, and a piece of command data waits
    /// for a handler that cannot drain its queue: the client, still sending, would wait
    /// forever. The response of the next report fails (it cannot fit in a half-duplex
    /// exchange), which lets its handler go on; later reports of a failed response are
    /// dropped, which frees their handlers too.
    fn unblock(&mut self, report: Report) {
        if !self.is_live(&report) {
            return;
        }
        let request = report.request();
        let message = format!(
            "the response does not fit in a half-duplex exchange: more than {} bytes \
             would be held before the request ends; send this command over HTTP/2 or a \
             byte stream, or in an exchange of its own",
            self.config.max_held_output()
        );
        self.fail(request, &message);
    }

    /// Gives the counters to the observer and the log, once.
    fn report(&mut self) {
        let workers = &self.workers;
        if let Some(stats) = self.counters.finish(|id| workers.owns(id)) {
            if let Some(observer) = self.config.observer() {
                observer(stats);
            }
            tracing::debug!(?stats, "exchange ended");
        }
    }

    /// Whether the peer owes us input: the rest of an HTTP request, or, on a byte
    /// stream, the rest of a command it started. A byte stream with nothing under way is
    /// merely idle, and may stay so.
    fn input_expected(&self) -> bool {
        self.input_open
            && match self.scope {
                Scope::Request { .. } => true,
                Scope::Connection => {
                    self.handlers.expects_data() || self.reactor.receiving_commands() > 0
                }
            }
    }

    /// Input ended and nothing is left to send (or the reactor failed and its error was
    /// sent).
    fn is_done(&self) -> bool {
        self.aborted
            || !self.input_open
                && (self.reactor.is_finished()
                    || (self.reactor.is_errored() && !self.reactor.has_pending_output()))
    }

    /// Pulls up to `chunk` bytes of frames into `buf`, counting them per stream. The
    /// chunk is then taken whole (`mem::take`): a buffer of its own becomes `Bytes`
    /// without the shared header a split would allocate.
    fn transmit(&mut self, buf: &mut BytesMut, chunk: usize) {
        buf.reserve(self.reactor.queued_output_bytes().min(chunk));
        while buf.len() < chunk {
            let Some(frame) = self.reactor.poll_frame() else {
                break;
            };
            let id = frame.stream_id().0;
            let own = !self.workers.owns(id);
            self.counters
                .frame_out(id, self.reactor.output_encoding(), frame.encoded_len(), own);
            frame.encode(buf);
        }
        self.pacing.took(self.reactor.queued_output_bytes());
    }

    fn on_frame(&mut self, frame: Frame) {
        self.counters.frame_in(frame.encoded_len());
        self.timers.progress(frame.encoded_len());
        let action = self.reactor.on_frame(frame);
        self.on_action(action);
    }

    fn on_input_end(&mut self) {
        self.input_open = false;
        let action = self.reactor.on_input_eof();
        self.on_action(action);
    }

    /// The input could not be read as frames (a frame over the length limit, bytes cut
    /// short): the exchange reads no more, and the reactor answers with a protocol error
    /// that says so.
    fn on_input_error(&mut self, e: &CodecError) {
        tracing::debug!(error = %e, "reading frames failed");
        self.counters.stats.outcome = Outcome::InputFailed(e.to_string());
        self.input_open = false;
        // The client is told the real fault, not that its command stopped short.
        let action = self.reactor.on_input_error(&e.to_string());
        self.on_action(action);
    }

    fn on_action(&mut self, action: ServerAction) {
        match action {
            ServerAction::RunCommand(cmd) => self.run_command(cmd),
            ServerAction::CommandData {
                request_id,
                data,
                eos,
            } => {
                // A full queue holds the piece (reading stops until it has room); a
                // waiting command keeps what arrives, within the waiting limit.
                let delivery = self.handlers.data(request_id, data, eos, !self.full_duplex);
                if delivery == Delivery::Withdrawn {
                    let message = self.busy_message();
                    self.fail(request_id, &message);
                }
            }
            ServerAction::Error(e) => {
                tracing::debug!(error = %e, "client broke the protocol");
                if !matches!(self.counters.stats.outcome, Outcome::InputFailed(_)) {
                    self.counters.stats.outcome = Outcome::ProtocolError(e.to_string());
                }
                // Nothing more will be read; the error-response is queued in the
                // reactor (and released from deferral by the end of input).
                if self.input_open {
                    self.input_open = false;
                    let _ = self.reactor.on_input_eof();
                }
                self.handlers.clear();
            }
            ServerAction::Cancelled(request) => self.cancel(request),
            ServerAction::SendFrames | ServerAction::WantFrame | ServerAction::Noop => {}
        }
    }

    /// The client cancelled a command (extension `cancel`; the reactor already ended its
    /// response): its handler stops, and whatever it holds is let go, as when it fails,
    /// but without an answer of its own.
    fn cancel(&mut self, request: RequestId) {
        tracing::debug!(request = request.0, "command cancelled by the client");
        self.open.remove(&request);
        self.handlers.cancel(request);
        self.drop_lane(request);
    }

    /// Forgets `request`'s lane: its reports waiting behind pieces, and the worker
    /// streams of its pieces, which will never get their frames out.
    fn drop_lane(&mut self, request: RequestId) {
        if let Some(lane) = self.lanes.remove(&request) {
            let reports = lane.iter().filter(|s| matches!(s, Step::Report(_))).count();
            self.lane_reports = self.lane_reports.saturating_sub(reports);
            for step in &lane {
                if let Step::Piece { stream, len, .. } = step {
                    self.workers.piece_over(*stream, *len, false);
                }
            }
        }
    }

    /// The handler of the command, if it may run here, or why not (Mercurial's
    /// messages). One lookup in the registry serves both.
    fn handler_for(&self, name: &[u8]) -> Result<Arc<dyn Handler>, String> {
        if let Scope::Request {
            command: Some(url_command),
            ..
        } = &self.scope
        {
            if self.counters.stats.commands > 1 {
                return Err("multiple commands cannot be issued to this URL".to_owned());
            }
            if url_command.as_ref() != name {
                return Err("command in frame must match command in URL".to_owned());
            }
        }
        let shown = || String::from_utf8_lossy(name);
        let Some(command) = self.registry.get(name) else {
            return Err(format!("wire protocol command not available: {}", shown()));
        };
        match &self.scope {
            Scope::Request { permission, .. } if !permission.allows(command.permission()) => Err(
                format!("insufficient permissions to execute command: {}", shown()),
            ),
            _ => Ok(command.handler()),
        }
    }

    fn run_command(&mut self, cmd: CommandRequest) {
        self.counters.stats.commands += 1;
        self.timers.command();
        let request = cmd.request_id;
        let gen = self.counters.stats.commands;
        self.current.insert(request, gen);
        self.open.insert(request);
        // A reused id starts over: sensitive only if this command says so.
        self.sensitive.remove(&request);
        if matches!(self.scope, Scope::Connection) && cmd.name.as_ref() == b"hello" {
            self.hello(cmd);
            return;
        }
        let handler = match self.handler_for(&cmd.name) {
            Ok(handler) => handler,
            Err(message) => {
                tracing::debug!(request = request.0, %message, "command refused");
                self.fail(request, &message);
                return;
            }
        };
        let cost = Handlers::cost(&cmd.name, &cmd.args);
        // A full-duplex exchange stops reading at the limit, so it may go over by the
        // one command that was being read; a half-duplex one reads on and refuses.
        if !self.full_duplex && !self.handlers.can_admit(cost) {
            let message = self.busy_message();
            self.fail(request, &message);
            return;
        }
        let name = String::from_utf8_lossy(&cmd.name).into_owned();
        let mut out = Responder::new(
            request,
            gen,
            self.report_tx.clone(),
            self.config.response_piece(),
            self.workers.piece_size(&self.reactor),
        );
        if self.reactor.extensions().contains(Extension::Progress) {
            out = out.with_progress(ProgressGate::new(self.config.progress_interval()));
        }
        // For handlers that keep compressed answers (a cache); none if the stream
        // cannot be opened, whose failure the response itself will meet.
        out = out.with_encoding(self.reactor.response_encoding().ok().flatten());
        self.handlers.admit(
            request,
            handler,
            name,
            cmd.args,
            cmd.data,
            cmd.data_follows,
            out,
            self.report_tx.clone(),
            cost,
        );
    }

    /// Why a half-duplex exchange refuses a command at its waiting limit.
    fn busy_message(&self) -> String {
        format!(
            "the server is busy: {} bytes of commands already wait to run in this \
             exchange; send fewer commands at once",
            self.handlers.waiting_bytes()
        )
    }

    /// `hello` on a byte stream: the client lists the encodings it accepts (argument
    /// `encodings`, as the HTTP header); the answer is `encoding=<profile>\n`, on the
    /// server's first stream, which already uses that profile. Only as the first command.
    /// A client that offers extensions (argument `extensions`, as the HTTP header) gets
    /// a second line, `extensions=<those accepted>\n` (possibly empty); one that does
    /// not gets the seed's answer, unchanged.
    fn hello(&mut self, cmd: CommandRequest) {
        let request = cmd.request_id;
        if self.counters.stats.commands != 1 {
            self.fail(request, "hello must be the first command of a connection");
            return;
        }
        let accepts = cmd
            .args
            .get(b"encodings".as_slice())
            .map(|v| parse_accept_list(&String::from_utf8_lossy(v)))
            .unwrap_or_default();
        let chosen = self.reactor.set_peer_accepts(&accepts).to_owned();
        tracing::debug!(encoding = %chosen, "byte-stream encoding negotiated");
        let mut answer = format!("encoding={chosen}\n");
        if let Some(offered) = cmd.args.get(b"extensions".as_slice()) {
            let offered = Extensions::parse(&String::from_utf8_lossy(offered));
            let accepted = self.reactor.set_peer_extensions(offered);
            self.handlers
                .set_cancellable(accepted.contains(Extension::Cancel));
            tracing::debug!(%accepted, "byte-stream extensions negotiated");
            answer.push_str(&format!("extensions={accepted}\n"));
        }
        // What the client's own streams may use (the protocol lets it use any profile
        // the server decodes; only the server can say which).
        let decodes: Vec<&str> = self.config.profiles().names().collect();
        answer.push_str(&format!("decodes={}\n", decodes.join(", ")));
        let answer = Bytes::from(answer);
        self.open.remove(&request);
        self.feed(request, |r| r.on_response_data(request, answer, true));
    }

    /// A handler's report: dropped if its response already ended; otherwise a large
    /// piece starts compressing on a worker, and anything else is fed to the reactor, or
    /// waits behind the request's pieces still compressing.
    fn on_report(&mut self, report: Report) {
        if !self.is_live(&report) {
            return;
        }
        let request = report.request();
        if let Report::Sensitive { .. } = report {
            self.sensitive.insert(request);
        }
        let report = match report {
            Report::Data {
                request,
                gen,
                data,
                eos,
            } if !self.sensitive.contains(&request) => {
                match self.workers.start(&mut self.reactor, request, data, eos) {
                    Ok(piece) => {
                        if eos {
                            self.open.remove(&request);
                        }
                        self.lanes.entry(request).or_default().push_back(piece);
                        return;
                    }
                    Err(NotStarted::Busy(data)) => {
                        // No report is taken until a stream can take it (see `parked`).
                        self.parked = Some(Report::Data {
                            request,
                            gen,
                            data,
                            eos,
                        });
                        return;
                    }
                    Err(NotStarted::Here(data)) => Report::Data {
                        request,
                        gen,
                        data,
                        eos,
                    },
                }
            }
            other => other,
        };
        if report.ends_response() {
            self.open.remove(&request);
        }
        match self.lanes.get_mut(&request) {
            Some(lane) => {
                lane.push_back(Step::Report(report));
                self.lane_reports += 1;
            }
            None => self.apply(report),
        }
    }

    /// Whether a report still counts: it is from the latest command of its request id
    /// (an id is reused once its response has ended, while the handler that answered may
    /// still report), and that response has not ended. A handler's end also ends the
    /// delivery of its command data.
    fn is_live(&mut self, report: &Report) -> bool {
        let request = report.request();
        if self.current.get(&request) != Some(&report.gen()) {
            return false;
        }
        if let Report::Finished { gen, .. } = report {
            self.handlers.forget_data(request);
            self.handlers.ended(request, *gen);
        }
        self.open.contains(&request)
    }

    /// Feeds a report to the reactor (its turn has come).
    fn apply(&mut self, report: Report) {
        match report {
            Report::Data {
                request, data, eos, ..
            } => {
                self.pacing.gave(data.len());
                let raw = data.len() as u64;
                self.feed_counted(request, raw, |r| r.on_response_data(request, data, eos));
            }
            Report::Precompressed {
                request, data, eos, ..
            } => {
                // Charged like other output, in the bytes that will go out: no raw
                // bytes, no compression work.
                self.pacing.gave(data.len());
                self.counters.precompressed(data.len() as u64);
                self.feed(request, |r| r.on_response_precompressed(request, data, eos));
            }
            Report::Text { request, atoms, .. } => {
                let fed = self.try_feed(request, |r| r.on_text_output(request, &atoms));
                if let Err(ReactorError::Build(e)) = fed {
                    // Text that cannot be framed fails the command, visibly.
                    self.fail(request, &format!("text output cannot be sent: {e}"));
                }
            }
            Report::Progress {
                request, progress, ..
            } => {
                // Only a client that accepted progress gets a gate, so this is accepted;
                // a report is not worth failing a command over.
                let _ = self.try_feed(request, |r| r.on_progress(request, &progress));
            }
            // Without a raw stream, the response fails rather than sends its secret in a
            // shared context.
            Report::Sensitive { request, .. } => {
                self.feed(request, |r| {
                    r.set_sensitive(request).map(|()| ServerAction::Noop)
                });
            }
            Report::Finished {
                request, result, ..
            } => match result {
                Ok(()) => self.feed(request, |r| r.on_response_data(request, Bytes::new(), true)),
                Err(e) => self.feed(request, |r| r.on_application_error(request, e.message())),
            },
        }
    }

    /// The piece at the head of `request`'s lane is compressed: its frames go to the
    /// reactor, then whatever waited behind it, up to the next piece.
    fn on_piece_done(
        &mut self,
        request: RequestId,
        done: Result<Encoded, crate::admission::JobFailed>,
    ) {
        let Some(lane) = self.lanes.get_mut(&request) else {
            return;
        };
        let Some(Step::Piece {
            eos, stream, len, ..
        }) = lane.pop_front()
        else {
            return;
        };
        let failed = match done {
            // Its stream was lost after it was queued (an earlier piece's frames did not
            // go out): its frames would not decode.
            Ok(Encoded { stream, .. }) if !self.workers.is_in_step(stream) => {
                self.workers.piece_over(stream, len, false);
                Some("compressing the response failed: its stream fell out of step".to_owned())
            }
            Ok(Encoded {
                stream,
                frames,
                raw,
                time,
            }) => {
                self.counters
                    .worker_piece(stream, self.reactor.output_encoding(), raw, time);
                match frames {
                    Ok(frames) => {
                        // If its frames do not go out, the stream is out of step.
                        let sent = self
                            .try_feed(request, |r| r.on_response_frames(request, frames, eos))
                            .is_ok();
                        self.workers.piece_over(stream, len, sent);
                        None
                    }
                    Err(e) => {
                        self.workers.piece_over(stream, len, false);
                        Some(format!("compressing the response failed: {e}"))
                    }
                }
            }
            Err(e) => {
                self.workers.piece_over(stream, len, false);
                Some(format!("compressing the response failed: {e}"))
            }
        };
        if let Some(message) = failed {
            tracing::debug!(request = request.0, %message, "worker failed");
            self.fail(request, &message);
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
                        self.lane_reports = self.lane_reports.saturating_sub(1);
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

    /// Ends `request`'s response with an application error, whatever it sent before;
    /// its later reports are dropped. The terminal answer of a request that cannot be
    /// answered otherwise.
    fn fail(&mut self, request: RequestId, message: &str) {
        self.open.remove(&request);
        self.handlers.withdraw(request);
        self.handlers.forget_data(request);
        self.drop_lane(request);
        self.feed(request, |r| r.on_application_error(request, message));
    }

    /// Gives the reactor output for `request`. A refusal because the response already
    /// ended is ignored; any other failure (the output could not be encoded or framed)
    /// is answered with an error frame, and if even that cannot be encoded the exchange
    /// is aborted: either way the request gets its one terminal answer.
    fn feed<F>(&mut self, request: RequestId, f: F)
    where
        F: FnOnce(&mut ServerReactor) -> Result<ServerAction, ReactorError>,
    {
        self.feed_counted(request, 0, f);
    }

    fn feed_counted<F>(&mut self, request: RequestId, raw: u64, f: F)
    where
        F: FnOnce(&mut ServerReactor) -> Result<ServerAction, ReactorError>,
    {
        let started = Instant::now();
        let result = f(&mut self.reactor);
        self.counters.encoded(raw, started.elapsed());
        let e = match result {
            Ok(action) => return self.on_action(action),
            Err(e) => e,
        };
        tracing::debug!(request = request.0, error = %e, "response not accepted");
        if matches!(
            e,
            ReactorError::ResponseFinished(_) | ReactorError::UnknownRequest(_)
        ) {
            return;
        }
        self.open.remove(&request);
        let message = format!("the response could not be sent: {e}");
        if let Err(e) = self.reactor.on_application_error(request, &message) {
            tracing::warn!(request = request.0, error = %e, "no terminal answer possible; aborting");
            self.counters.stats.outcome = Outcome::EncoderFailed(e.to_string());
            self.abort();
        }
    }

    /// Like [`Self::feed`], but a failure is the caller's to handle.
    fn try_feed<F>(&mut self, request: RequestId, f: F) -> Result<(), ReactorError>
    where
        F: FnOnce(&mut ServerReactor) -> Result<ServerAction, ReactorError>,
    {
        let started = Instant::now();
        let result = f(&mut self.reactor);
        self.counters.encoded(0, started.elapsed());
        match result {
            Ok(action) => {
                self.on_action(action);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(request = request.0, error = %e, "response not accepted");
                Err(e)
            }
        }
    }

    /// Ends the exchange without a clean end: nothing more is read or run.
    fn abort(&mut self) {
        self.input_open = false;
        self.handlers.clear();
        self.aborted = true;
    }
}

/// The next report of an exchange's queue (`None` once the queue is given back).
async fn next_report(rx: &mut Option<mpsc::Receiver<Report>>) -> Option<Report> {
    match rx {
        Some(rx) => rx.recv().await,
        None => None,
    }
}

impl Drop for Exchange {
    /// An exchange dropped before its end (its connection went away) still reports.
    fn drop(&mut self) {
        if self.counters.stats.outcome == Outcome::Completed {
            self.counters.stats.outcome = Outcome::ClientGone;
        }
        self.report();
    }
}
