//! The handlers of one exchange: which commands run, which wait their turn, and the
//! command data each is still receiving.
//!
//! Invariants this part owns:
//! - at most `max_handlers` handlers of the exchange run at once, each holding one of
//!   the server's handler slots for as long as it runs;
//! - a command admitted but not running costs only its bookkeeping (name, arguments),
//!   counted in `waiting_bytes`;
//! - command data goes to its handler through a bounded queue; when the queue is full,
//!   the piece waits in `forward` and the exchange stops reading (push back).

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{AbortHandle, Abortable, BoxFuture};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use hgframe_wire::RequestId;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::admission::BlockingPool;
use crate::caller::Caller;
use crate::command::{
    CommandError, CommandInput, DataPiece, DataReader, Handler, Report, Responder,
};

use super::pacing::REQUEST_BOOKKEEPING;

/// A command admitted, waiting for a handler slot: what it needs to start, and the
/// command data that arrived meanwhile (slices of the input, counted in its cost).
struct Waiting {
    handler: Arc<dyn Handler>,
    name: String,
    args: BTreeMap<Bytes, Bytes>,
    whole_data: Option<Bytes>,
    data_follows: bool,
    pieces: VecDeque<DataPiece>,
    out: Responder,
    reports: mpsc::Sender<Report>,
    cost: usize,
}

/// Where a command's data goes while it arrives.
enum Sink {
    /// Into the waiting command's buffer.
    Waiting,
    /// Into the running handler's bounded queue.
    Running(mpsc::Sender<DataPiece>),
}

/// A piece of command data that waits for room in its handler's queue.
struct Forward {
    request: RequestId,
    tx: mpsc::Sender<DataPiece>,
    piece: DataPiece,
}

/// What became of a piece of command data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Given to its handler or its waiting command (or dropped: nobody reads it).
    Done,
    /// The handler's queue is full: the piece waits in `forward`; stop reading.
    Held,
    /// The waiting command would hold more than the exchange may: it was withdrawn
    /// (the caller answers it).
    Withdrawn,
}

/// The maps of [`Handlers`] and its set of running handlers, kept empty from an
/// exchange that ended for the next one ([`super::spares`]): the set costs two
/// allocations to make, each map one at its first insert.
#[derive(Default)]
pub(crate) struct HandlerMaps {
    running: Option<Running>,
    waiting: FxHashMap<RequestId, Waiting>,
    order: VecDeque<RequestId>,
    data: FxHashMap<RequestId, Sink>,
}

impl HandlerMaps {
    /// Emptied; a map grown past `max` entries is dropped for a new one (memory held
    /// between exchanges stays small).
    pub(crate) fn emptied(mut self, max: usize) -> Self {
        if self.running.as_ref().is_some_and(|r| !r.is_empty()) {
            self.running = None;
        }
        self.waiting.clear();
        self.order.clear();
        self.data.clear();
        if self.waiting.capacity() > max {
            self.waiting = FxHashMap::default();
        }
        if self.order.capacity() > max {
            self.order = VecDeque::new();
        }
        if self.data.capacity() > max {
            self.data = FxHashMap::default();
        }
        self
    }

    /// Whether every map is empty.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.running.as_ref().map_or(true, Running::is_empty)
            && self.waiting.is_empty()
            && self.order.is_empty()
            && self.data.is_empty()
    }
}

/// The handlers running.
type Running = FuturesUnordered<BoxFuture<'static, ()>>;

pub(crate) struct Handlers {
    /// Made at the first start (it costs two allocations), unless kept from an
    /// exchange before.
    running: Option<Running>,
    /// Commands waiting, by request, and their order.
    waiting: FxHashMap<RequestId, Waiting>,
    order: VecDeque<RequestId>,
    waiting_bytes: usize,
    max_running: usize,
    max_waiting_bytes: usize,
    /// The server's handler slots.
    slots: Arc<Semaphore>,
    /// Commands whose data is still arriving, running or waiting.
    data: FxHashMap<RequestId, Sink>,
    data_queue: usize,
    forward: Option<Forward>,
    /// The pool handlers do blocking work on.
    pool: BlockingPool,
    /// Whom every handler of the exchange answers.
    caller: Arc<Caller>,
    /// No new handler starts (the exchange holds all it may).
    paused: bool,
    /// How to stop each running handler (extension `cancel`), with its command's
    /// number in the exchange.
    aborts: FxHashMap<RequestId, (u64, AbortHandle)>,
    /// The client may cancel commands (extension `cancel`): only then is each handler
    /// wrapped so that it can be stopped (a shared handle per handler, saved otherwise).
    cancellable: bool,
    /// Starts wait until [`Self::end_batch`]: the exchange is reading frames that had
    /// already arrived, and a command whose data comes whole among them gets it whole.
    batch: bool,
    /// In a batch, a handler has something to do: one started, a command is complete,
    /// or a running one was given data. The batch ends there, so that handlers still go
    /// before the next frame, as they do without batches.
    batch_ready: bool,
    /// A handler started that has not been polled yet ([`Self::take_started`]).
    started: bool,
}

impl Handlers {
    pub(crate) fn new(
        max_running: usize,
        max_waiting_bytes: usize,
        slots: Arc<Semaphore>,
        data_queue: usize,
        pool: BlockingPool,
        caller: Arc<Caller>,
        maps: HandlerMaps,
    ) -> Self {
        let HandlerMaps {
            running,
            waiting,
            order,
            data,
        } = maps;
        Self {
            running,
            waiting,
            order,
            waiting_bytes: 0,
            max_running,
            max_waiting_bytes,
            slots,
            data,
            data_queue,
            forward: None,
            pool,
            caller,
            paused: false,
            aborts: FxHashMap::default(),
            cancellable: false,
            batch: false,
            batch_ready: false,
            started: false,
        }
    }

    /// Whether the client may cancel the commands started from now on.
    pub(crate) fn set_cancellable(&mut self, cancellable: bool) {
        self.cancellable = cancellable;
    }

    /// The exchange reads frames that had already arrived: commands admitted meanwhile
    /// start at [`Self::end_batch`] (or when the next command, or a piece of data that
    /// does not end theirs, arrives), so that one whose data arrives whole, in one
    /// piece, gets it without a data queue, and starts at once with it.
    pub(crate) fn begin_batch(&mut self) {
        self.batch = true;
        self.batch_ready = false;
    }

    /// Whether the batch should end before the next frame: a handler has something to
    /// do (it would run before that frame is read without batches).
    pub(crate) fn batch_ready(&self) -> bool {
        self.batch_ready
    }

    /// The batch of frames is read: what waited for it starts.
    pub(crate) fn end_batch(&mut self) {
        self.batch = false;
        self.batch_ready = false;
        self.start_ready();
    }

    /// What a command costs while it waits: its bookkeeping and arguments.
    pub(crate) fn cost(name: &[u8], args: &BTreeMap<Bytes, Bytes>) -> usize {
        REQUEST_BOOKKEEPING
            + name.len()
            + args.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }

    /// Whether a command of `cost` may be admitted now (the first always is).
    pub(crate) fn can_admit(&self, cost: usize) -> bool {
        self.waiting.is_empty() || self.waiting_bytes.saturating_add(cost) <= self.max_waiting_bytes
    }

    /// Whether the exchange holds all the waiting work it may (a full-duplex exchange
    /// then stops reading).
    pub(crate) fn is_full(&self) -> bool {
        self.waiting_bytes >= self.max_waiting_bytes
    }

    /// Admits a command: its handler will run with its input and `out` when a slot is
    /// free; its end (or panic) is reported through `reports`. `data_follows`: its data
    /// is still to come.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn admit(
        &mut self,
        request: RequestId,
        handler: Arc<dyn Handler>,
        name: String,
        args: BTreeMap<Bytes, Bytes>,
        whole_data: Option<Bytes>,
        data_follows: bool,
        out: Responder,
        reports: mpsc::Sender<Report>,
        cost: usize,
    ) {
        // Commands held for the batch start before the next one is admitted: they
        // would have, and waiting they would count against this one.
        self.start_free();
        if data_follows {
            self.data.insert(request, Sink::Waiting);
        } else {
            self.batch_ready = true;
        }
        self.waiting.insert(
            request,
            Waiting {
                handler,
                name,
                args,
                whole_data,
                data_follows,
                pieces: VecDeque::new(),
                out,
                reports,
                cost,
            },
        );
        self.order.push_back(request);
        self.waiting_bytes += cost;
        self.start_ready();
    }

    /// Whether a waiting command could start but for a server slot.
    pub(crate) fn wants_slot(&self) -> bool {
        !self.paused && !self.waiting.is_empty() && self.running_len() < self.max_running
    }

    /// Pauses (or resumes) the start of new handlers.
    pub(crate) fn set_paused(&mut self, paused: bool) {
        let resumed = self.paused && !paused;
        self.paused = paused;
        if resumed {
            self.start_ready();
        }
    }

    /// Starts waiting commands while slots are free at once (at the end of a batch,
    /// if one is being read).
    pub(crate) fn start_ready(&mut self) {
        if !self.batch {
            self.start_free();
        }
    }

    /// Starts waiting commands while slots are free at once.
    fn start_free(&mut self) {
        while self.wants_slot() {
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(permit) => self.start(permit),
                Err(_) => return,
            }
        }
    }

    /// A server slot, when one frees (for [`Self::start`]).
    pub(crate) fn slot(&self) -> impl std::future::Future<Output = Option<OwnedSemaphorePermit>> {
        let slots = Arc::clone(&self.slots);
        async move { slots.acquire_owned().await.ok() }
    }

    /// Starts the first waiting command with `permit`.
    pub(crate) fn start(&mut self, permit: OwnedSemaphorePermit) {
        let Some((request, next)) = self.next_waiting() else {
            return;
        };
        self.batch_ready = true;
        self.started = true;
        self.waiting_bytes -= next.cost;
        let ended = next.pieces.back().is_some_and(|(_, eos)| *eos);
        let data = if let Some(data) = next.whole_data {
            Some(DataReader::whole(data))
        } else if ended && next.pieces.len() == 1 {
            // All its data arrived, in one piece, while it waited: no queue needed.
            next.pieces
                .into_iter()
                .next()
                .map(|(data, _)| DataReader::whole(data))
        } else if next.data_follows {
            // Room for what arrived meanwhile, and the usual queue beyond.
            let (tx, rx) = mpsc::channel(self.data_queue + next.pieces.len());
            for piece in next.pieces {
                let _ = tx.try_send(piece);
            }
            if !ended && self.data.contains_key(&request) {
                self.data.insert(request, Sink::Running(tx));
            }
            Some(DataReader::pieces(rx))
        } else {
            None
        };
        let input = CommandInput::new(
            next.name,
            next.args,
            data,
            self.pool.clone(),
            Arc::clone(&self.caller),
        );
        let (handler, out, reports) = (next.handler, next.out, next.reports);
        let gen = out.gen();
        let registration = self.cancellable.then(|| {
            let (abort, registration) = AbortHandle::new_pair();
            self.aborts.insert(request, (gen, abort));
            registration
        });
        let running = self.running.get_or_insert_with(FuturesUnordered::new);
        running.push(Box::pin(async move {
            // A panic in a handler fails its command, not the exchange.
            let call = std::panic::AssertUnwindSafe(handler.call(input, out)).catch_unwind();
            let result = match registration {
                Some(registration) => match Abortable::new(call, registration).await {
                    Ok(result) => result,
                    Err(_) => {
                        // Cancelled: the handler is dropped, its slot freed; nothing to
                        // report.
                        drop(permit);
                        return;
                    }
                },
                None => call.await,
            };
            let result = result
                .unwrap_or_else(|_| Err(CommandError::new("the command failed unexpectedly")));
            // Through the same queue as its data, so the end comes after it.
            let _ = reports
                .send(Report::Finished {
                    request,
                    gen,
                    result,
                })
                .await;
            drop(permit);
        }));
    }

    /// The first command still waiting (withdrawn ones are skipped).
    fn next_waiting(&mut self) -> Option<(RequestId, Waiting)> {
        while let Some(request) = self.order.pop_front() {
            if let Some(waiting) = self.waiting.remove(&request) {
                return Some((request, waiting));
            }
        }
        None
    }

    /// Withdraws a waiting command (it will not run); returns whether it was waiting.
    pub(crate) fn withdraw(&mut self, request: RequestId) -> bool {
        let Some(waiting) = self.waiting.remove(&request) else {
            return false;
        };
        self.waiting_bytes -= waiting.cost;
        self.data.remove(&request);
        true
    }

    /// Stops `request`'s command (extension `cancel`): a waiting one never runs, a
    /// running one is dropped at its next `.await` (its slot is freed then, and it
    /// reports nothing), and its data is not delivered any more. Returns whether there
    /// was a command to stop.
    pub(crate) fn cancel(&mut self, request: RequestId) -> bool {
        let waiting = self.withdraw(request);
        self.forget_data(request);
        let running = match self.aborts.remove(&request) {
            Some((_, abort)) => {
                abort.abort();
                true
            }
            None => false,
        };
        waiting || running
    }

    /// `request`'s handler (command number `gen`) returned: it cannot be stopped any
    /// more.
    pub(crate) fn ended(&mut self, request: RequestId, gen: u64) {
        if self.aborts.get(&request).is_some_and(|(g, _)| *g == gen) {
            self.aborts.remove(&request);
        }
    }

    /// Whether handlers are running.
    pub(crate) fn is_running(&self) -> bool {
        self.running_len() > 0
    }

    fn running_len(&self) -> usize {
        self.running.as_ref().map_or(0, Running::len)
    }

    /// Bytes of commands waiting to run.
    pub(crate) fn waiting_bytes(&self) -> usize {
        self.waiting_bytes
    }

    /// Whether handlers started since the last call (and have not been polled yet).
    pub(crate) fn take_started(&mut self) -> bool {
        std::mem::take(&mut self.started)
    }

    /// Polls the running handlers once, without waiting (the task's waker is kept, as
    /// any poll keeps it); returns whether one ended. Those that end make room for the
    /// commands waiting, as in [`Self::next_done`].
    pub(crate) fn poll_ended(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(running) = self.running.as_mut() else {
            return false;
        };
        let mut ended = false;
        while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {
            ended = true;
        }
        if ended {
            self.start_ready();
        }
        ended
    }

    /// Polls the running handlers; completes when one ends.
    pub(crate) async fn next_done(&mut self) {
        let ended = match self.running.as_mut() {
            Some(running) => running.next().await,
            None => None,
        };
        if ended.is_some() {
            self.start_ready();
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// Gives a piece of command data to `request`'s handler, or to its waiting command.
    /// `refuse_over`: a waiting command that would take the waiting work over its limit
    /// is withdrawn (half duplex, which cannot stop reading); otherwise it may go over
    /// (the exchange stops reading at the limit).
    pub(crate) fn data(
        &mut self,
        request: RequestId,
        data: Bytes,
        eos: bool,
        refuse_over: bool,
    ) -> Delivery {
        if self.batch && self.data.contains_key(&request) {
            // A command held for the batch keeps only data that arrives whole, and
            // that it may hold; otherwise it starts now, as it would have, and the data
            // goes to its queue.
            let whole = eos
                && self
                    .waiting
                    .get(&request)
                    .is_some_and(|w| w.pieces.is_empty())
                && self.waiting_bytes.saturating_add(data.len()) <= self.max_waiting_bytes;
            if !whole {
                self.start_free();
            }
        }
        match self.data.get(&request) {
            // The command was refused, or its handler dropped its data.
            None => Delivery::Done,
            Some(Sink::Waiting) => {
                let len = data.len();
                if refuse_over && self.waiting_bytes.saturating_add(len) > self.max_waiting_bytes {
                    self.withdraw(request);
                    return Delivery::Withdrawn;
                }
                if let Some(waiting) = self.waiting.get_mut(&request) {
                    waiting.pieces.push_back((data, eos));
                    waiting.cost += len;
                    self.waiting_bytes += len;
                }
                if eos {
                    self.data.remove(&request);
                    self.batch_ready = true;
                }
                Delivery::Done
            }
            Some(Sink::Running(tx)) => {
                self.batch_ready = true;
                let tx = tx.clone();
                if eos {
                    self.data.remove(&request);
                }
                match tx.try_send((data, eos)) {
                    Ok(()) => Delivery::Done,
                    Err(mpsc::error::TrySendError::Full(piece)) => {
                        self.forward = Some(Forward { request, tx, piece });
                        Delivery::Held
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.data.remove(&request);
                        Delivery::Done
                    }
                }
            }
        }
    }

    /// Whether a piece of data waits for room.
    pub(crate) fn is_forwarding(&self) -> bool {
        self.forward.is_some()
    }

    /// Whether a command's data is still expected.
    pub(crate) fn expects_data(&self) -> bool {
        !self.data.is_empty()
    }

    /// Room for the held piece, when its handler's queue has some (`None`: the handler
    /// is gone). Owns what it needs, so it can wait beside the running handlers.
    pub(crate) fn forward_room(
        &self,
    ) -> impl std::future::Future<Output = Option<mpsc::OwnedPermit<DataPiece>>> + 'static {
        let tx = self.forward.as_ref().map(|f| f.tx.clone());
        async move {
            match tx {
                Some(tx) => tx.reserve_owned().await.ok(),
                None => std::future::pending().await,
            }
        }
    }

    /// Sends the held piece with the room found for it.
    pub(crate) fn forwarded(&mut self, permit: Option<mpsc::OwnedPermit<DataPiece>>) {
        if let (Some(forward), Some(permit)) = (self.forward.take(), permit) {
            permit.send(forward.piece);
        }
    }

    /// The request's data will not be read (its command ended).
    pub(crate) fn forget_data(&mut self, request: RequestId) {
        self.data.remove(&request);
        if self.forward.as_ref().is_some_and(|f| f.request == request) {
            self.forward = None;
        }
    }

    /// The maps, for the next exchange (after [`Self::clear`]: empty).
    pub(crate) fn take_maps(&mut self) -> HandlerMaps {
        HandlerMaps {
            running: self.running.take(),
            waiting: std::mem::take(&mut self.waiting),
            order: std::mem::take(&mut self.order),
            data: std::mem::take(&mut self.data),
        }
    }

    /// Drops every handler, running or waiting, and every data queue: the exchange is
    /// over (handlers are cancelled at their next `.await`).
    pub(crate) fn clear(&mut self) {
        if self.is_running() {
            self.running = None;
        }
        self.waiting.clear();
        self.order.clear();
        self.waiting_bytes = 0;
        self.data.clear();
        self.forward = None;
        self.aborts.clear();
        self.batch = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandInput, Responder};
    use crate::stats::Transport;
    use std::sync::Mutex;

    /// A handler that records the pieces of data it reads, in order.
    fn recorder() -> (Arc<dyn Handler>, Arc<Mutex<Vec<Bytes>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let handler = move |mut input: CommandInput, _out: Responder| {
            let log = Arc::clone(&log);
            async move {
                if let Some(mut data) = input.take_data() {
                    while let Some(piece) = data.chunk().await? {
                        log.lock().unwrap().push(piece);
                    }
                }
                Ok::<(), CommandError>(())
            }
        };
        (Arc::new(handler), seen)
    }

    /// Handlers, and a report queue (kept open, not looked at).
    fn handlers() -> (Handlers, mpsc::Sender<Report>, mpsc::Receiver<Report>) {
        let handlers = Handlers::new(
            4,
            1 << 20,
            Arc::new(Semaphore::new(4)),
            2,
            BlockingPool::new(1),
            Arc::new(Caller::new(Transport::Http1)),
            HandlerMaps::default(),
        );
        let (tx, rx) = mpsc::channel(16);
        (handlers, tx, rx)
    }

    fn admit(h: &mut Handlers, handler: Arc<dyn Handler>, reports: &mpsc::Sender<Report>) {
        let out = Responder::new(RequestId(1), 1, reports.clone(), 1024, None);
        h.admit(
            RequestId(1),
            handler,
            "record".to_owned(),
            BTreeMap::new(),
            None,
            true,
            out,
            reports.clone(),
            REQUEST_BOOKKEEPING,
        );
    }

    #[tokio::test]
    async fn data_that_arrives_whole_in_a_batch_is_given_whole_at_its_end() {
        let (mut h, reports, _reports_rx) = handlers();
        let (handler, seen) = recorder();
        h.begin_batch();
        admit(&mut h, handler, &reports);
        assert!(!h.is_running(), "held until the batch ends");
        assert!(!h.batch_ready(), "its data is still to come");
        let delivery = h.data(RequestId(1), Bytes::from_static(b"abc"), true, true);
        assert_eq!(delivery, Delivery::Done);
        assert!(h.batch_ready(), "complete: the batch ends here");
        assert!(!h.expects_data(), "no queue for its data");
        h.end_batch();
        assert!(h.is_running());
        h.next_done().await;
        assert_eq!(*seen.lock().unwrap(), [Bytes::from_static(b"abc")]);
    }

    #[tokio::test]
    async fn data_in_pieces_during_a_batch_starts_the_command_and_keeps_its_order() {
        let (mut h, reports, _reports_rx) = handlers();
        let (handler, seen) = recorder();
        h.begin_batch();
        admit(&mut h, handler, &reports);
        let first = h.data(RequestId(1), Bytes::from_static(b"ab"), false, true);
        assert_eq!(first, Delivery::Done);
        assert!(
            h.is_running(),
            "a piece that does not end the data starts it"
        );
        assert!(h.batch_ready());
        let last = h.data(RequestId(1), Bytes::from_static(b"cd"), true, true);
        assert_eq!(last, Delivery::Done);
        h.end_batch();
        h.next_done().await;
        assert_eq!(
            *seen.lock().unwrap(),
            [Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]
        );
    }
}
