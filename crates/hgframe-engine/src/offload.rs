//! Compression on several cores: large response pieces are encoded on blocking worker
//! threads, each on a server stream of its own, and their frames are given back to the
//! reactor strictly in piece order per request.
//!
//! The protocol allows it because each stream has its own content-encoding context: a
//! request's response may continue on another stream, and its data is whatever its
//! frames carry in wire order. So the exchange opens up to
//! [`crate::EngineConfig::parallel_streams`] streams from its reactor
//! ([`ServerReactor::open_output_stream`]); a response piece of at least
//! [`crate::EngineConfig::parallel_piece`] bytes goes to an idle one, on one of the
//! server's compressor threads (the same thread for every piece of a stream: its
//! [`slot`]), while the exchange goes on. Each request keeps a FIFO ([`Lane`]) of
//! what it produced since its oldest piece still compressing: later pieces (compressing
//! at the same time on other streams), and small data, text and its end, which wait
//! their turn. A stream holds at most [`PIECES_PER_STREAM`] pieces, all of one request
//! (so its frames come back in that request's order), and the pieces in flight are at
//! most that many per stream; their bytes count as held by the exchange.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rustc_hash::{FxHashMap, FxHashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hgframe_reactor::{ServerReactor, IDENTITY};
use hgframe_stream::OutgoingStream;
use hgframe_wire::{Frame, FrameType, RequestId};

use crate::admission::{BlockingPool, JobFailed, PoolJob};

use crate::command::Report;

/// A piece encoded by a worker: its stream, its frames, and what it cost.
pub(crate) struct Encoded {
    pub(crate) stream: u8,
    pub(crate) frames: Result<Vec<Frame>, String>,
    pub(crate) raw: u64,
    pub(crate) time: Duration,
}

/// One thing a request produced, in its order.
pub(crate) enum Step {
    /// A piece compressing on a worker stream; `eos` when it ends the response.
    Piece {
        handle: PoolJob<Encoded>,
        eos: bool,
        /// The worker stream it is queued on.
        stream: u8,
        /// Its raw bytes, held until it is done.
        len: usize,
    },
    /// A report that waits for the pieces before it.
    Report(Report),
}

/// What a request produced since its oldest piece still compressing, in order.
pub(crate) type Lane = VecDeque<Step>;

/// Data a worker did not take.
pub(crate) enum NotStarted {
    /// For the exchange's own stream: workers are off, or it is too small.
    Here(Bytes),
    /// Every stream with room compresses another request's pieces: it waits until a
    /// piece is done (rather than being compressed on the exchange's task, which would
    /// hold up everything else the exchange does for as long).
    Busy(Bytes),
}

/// Pieces queued at once on one worker stream. A second piece waits on the stream's
/// thread while the first compresses, so the thread goes from one to the next without
/// waiting for the exchange to take the first one's frames and hand it more data (the
/// gap that small pieces made visible: docs/streams.md, "Several streams on several
/// cores").
pub(crate) const PIECES_PER_STREAM: usize = 2;

/// A worker stream: its encoder, shared with the jobs queued on its thread.
struct WorkerStream {
    /// The jobs of one stream run on one thread, one after the other, in the order
    /// they were queued: the lock is never contended, and the encoder sees the pieces
    /// in the order their frames go out.
    encoder: Arc<Mutex<OutgoingStream>>,
    id: u8,
    /// The request whose pieces are queued on it: only its later pieces may queue
    /// behind them, so that the stream's frames come back in its lane's order.
    owner: Option<RequestId>,
    /// Pieces queued and not yet done.
    queued: usize,
    /// Their raw bytes, held until they are done.
    queued_bytes: usize,
    /// Its frames did not all go out (or a worker failed on it): the peer's decoding
    /// context no longer matches the encoder, so it takes no more pieces, and the
    /// pieces still queued on it are not sent.
    lost: bool,
}

/// The exchange's worker streams.
pub(crate) struct Workers {
    /// Streams opened, and lost ones with pieces still queued.
    streams: Vec<WorkerStream>,
    /// Most streams; 0 when compression stays on the exchange's task.
    max: usize,
    /// Pieces from this size on go to a worker.
    min_piece: usize,
    /// Ids of the worker streams, for the counters.
    ids: FxHashSet<u8>,
    /// Where pieces are compressed: one thread per stream slot, shared by the
    /// server's exchanges.
    compressors: Arc<[BlockingPool]>,
}

impl Workers {
    /// A pool of up to `streams` workers (fewer than 2 disables it) for pieces of at
    /// least `min_piece` bytes.
    pub(crate) fn new(streams: usize, min_piece: usize, compressors: Arc<[BlockingPool]>) -> Self {
        Self {
            streams: Vec::new(),
            max: if streams >= 2 && !compressors.is_empty() {
                streams
            } else {
                0
            },
            min_piece,
            ids: FxHashSet::default(),
            compressors,
        }
    }

    /// Whether pieces go to workers with this reactor's output encoding (identity costs
    /// nothing to encode).
    pub(crate) fn enabled(&self, reactor: &ServerReactor) -> bool {
        self.max > 0 && reactor.output_encoding() != IDENTITY
    }

    /// The size from which a [`crate::Responder`] cuts pieces for the workers, if they
    /// are enabled.
    pub(crate) fn piece_size(&self, reactor: &ServerReactor) -> Option<usize> {
        self.enabled(reactor).then_some(self.min_piece)
    }

    /// Whether a piece could be queued now (or the pool is off): reports wait otherwise,
    /// which holds back the handlers.
    pub(crate) fn has_room(&self, reactor: &ServerReactor) -> bool {
        !self.enabled(reactor) || self.busy() < self.max * PIECES_PER_STREAM
    }

    /// Pieces queued on worker streams and not done.
    fn busy(&self) -> usize {
        self.streams.iter().map(|s| s.queued).sum()
    }

    /// Streams opened and not lost.
    fn opened(&self) -> usize {
        self.streams.iter().filter(|s| !s.lost).count()
    }

    /// Whether pieces are compressing.
    pub(crate) fn is_busy(&self) -> bool {
        self.streams.iter().any(|s| s.queued > 0)
    }

    /// Raw bytes of the pieces queued on workers, which the exchange holds until they
    /// are done.
    pub(crate) fn busy_bytes(&self) -> usize {
        self.streams.iter().map(|s| s.queued_bytes).sum()
    }

    /// Whether `stream_id` is a worker stream.
    pub(crate) fn owns(&self, stream_id: u8) -> bool {
        self.ids.contains(&stream_id)
    }

    /// Starts compressing `data` for `request` on a worker stream, if it is large
    /// enough and a stream can take it: an idle one (opened from the reactor as
    /// needed), else one that already compresses this request's pieces and has room in
    /// its queue. Gives the data back otherwise, saying whether a stream may take it
    /// once a piece in flight is done ([`NotStarted::Busy`]: the streams with room
    /// are other requests'), or whether it is for the exchange's own stream.
    pub(crate) fn start(
        &mut self,
        reactor: &mut ServerReactor,
        request: RequestId,
        data: Bytes,
        eos: bool,
    ) -> Result<Step, NotStarted> {
        if !self.enabled(reactor) || data.len() < self.min_piece {
            return Err(NotStarted::Here(data));
        }
        let Some(index) = self.pick(reactor, request) else {
            // Pieces in flight will free a stream; with none, no stream ever will (every
            // id is taken), and the exchange's own stream compresses it.
            return Err(if self.is_busy() {
                NotStarted::Busy(data)
            } else {
                NotStarted::Here(data)
            });
        };
        let Some(stream) = self.streams.get_mut(index) else {
            return Err(NotStarted::Here(data));
        };
        // A stream's pieces always go to the same thread (its slot: worker streams of
        // an exchange have consecutive even ids), so its context, a few MiB of tables
        // and window, stays in that thread's caches instead of moving between cores
        // with every piece (docs/streams.md, "Several streams on several cores").
        let Some(pool) = self
            .compressors
            .get(slot(stream.id, self.compressors.len()))
        else {
            // No threads (not enabled then): the exchange's task compresses.
            return Err(NotStarted::Here(data));
        };
        let len = data.len();
        stream.owner = Some(request);
        stream.queued += 1;
        stream.queued_bytes += len;
        let id = stream.id;
        let encoder = Arc::clone(&stream.encoder);
        let job = move || {
            let started = Instant::now();
            let raw = data.len() as u64;
            let mut frames = Vec::new();
            let frames = match encoder.lock() {
                Ok(mut encoder) => encoder
                    .push_data(request, FrameType::BytesResponse, data, eos, &mut frames)
                    .map(|()| frames)
                    .map_err(|e| e.to_string()),
                // A piece before this one panicked while encoding: that one failed, and
                // the stream with it.
                Err(_) => Err("the stream's encoder failed on an earlier piece".to_owned()),
            };
            Encoded {
                stream: id,
                frames,
                raw,
                time: started.elapsed(),
            }
        };
        let handle = pool.start(job);
        Ok(Step::Piece {
            handle,
            eos,
            stream: id,
            len,
        })
    }

    /// The stream for `request`'s next piece: an idle stream, a new one, or the least
    /// queued of the request's own streams that has room.
    fn pick(&mut self, reactor: &mut ServerReactor, request: RequestId) -> Option<usize> {
        let usable = |s: &WorkerStream| !s.lost;
        if let Some(i) = self.streams.iter().position(|s| usable(s) && s.queued == 0) {
            return Some(i);
        }
        if self.opened() < self.max {
            match reactor.open_output_stream() {
                Ok(stream) => {
                    let id = stream.id().0;
                    self.ids.insert(id);
                    self.streams.push(WorkerStream {
                        encoder: Arc::new(Mutex::new(stream)),
                        id,
                        owner: None,
                        queued: 0,
                        queued_bytes: 0,
                        lost: false,
                    });
                    return Some(self.streams.len() - 1);
                }
                Err(e) => {
                    // No stream id left: work with the streams there are.
                    tracing::debug!(error = %e, "no more worker streams");
                    self.max = self.opened();
                }
            }
        }
        self.streams
            .iter()
            .enumerate()
            .filter(|(_, s)| usable(s) && s.owner == Some(request) && s.queued < PIECES_PER_STREAM)
            .min_by_key(|(_, s)| s.queued)
            .map(|(i, _)| i)
    }

    /// Whether the frames of a piece done on `stream_id` may go out: its stream has not
    /// been lost since the piece was queued.
    pub(crate) fn is_in_step(&self, stream_id: u8) -> bool {
        self.streams.iter().any(|s| s.id == stream_id && !s.lost)
    }

    /// A piece of `len` bytes on `stream_id` is over: done and sent (`sent`), or not
    /// (its frames did not all go out, its worker failed, or its request was dropped),
    /// in which case the stream is lost. A stream lost is gone once its last piece is
    /// over; its id stays taken for the exchange, and another stream may replace it.
    pub(crate) fn piece_over(&mut self, stream_id: u8, len: usize, sent: bool) {
        let Some(index) = self.streams.iter().position(|s| s.id == stream_id) else {
            return;
        };
        let Some(stream) = self.streams.get_mut(index) else {
            return;
        };
        stream.queued = stream.queued.saturating_sub(1);
        stream.queued_bytes = stream.queued_bytes.saturating_sub(len);
        stream.lost |= !sent;
        if stream.queued == 0 {
            stream.owner = None;
            if stream.lost {
                self.streams.swap_remove(index);
            }
        }
    }
}

/// The compressor thread of the worker stream `stream_id`, among `threads`: the
/// worker streams of an exchange have consecutive even ids, so up to `threads` of them
/// get threads of their own.
pub(crate) fn slot(stream_id: u8, threads: usize) -> usize {
    usize::from(stream_id / 2) % threads.max(1)
}

/// The first piece at the head of a lane that is done, with its request.
pub(crate) fn next_done(
    lanes: &mut FxHashMap<RequestId, Lane>,
) -> impl Future<Output = (RequestId, Result<Encoded, JobFailed>)> + '_ {
    std::future::poll_fn(move |cx| {
        for (request, lane) in lanes.iter_mut() {
            if let Some(Step::Piece { handle, .. }) = lane.front_mut() {
                if let Poll::Ready(done) = Pin::new(handle).poll(cx) {
                    return Poll::Ready((*request, done));
                }
            }
        }
        Poll::Pending
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_worker_streams_get_threads_of_their_own() {
        for threads in 1..=4usize {
            for first in (2..200u8).step_by(2) {
                let ids = (0..threads).map(|k| first + 2 * k as u8);
                let slots: FxHashSet<usize> = ids.map(|id| slot(id, threads)).collect();
                assert_eq!(slots.len(), threads);
                assert!(slots.iter().all(|s| *s < threads));
            }
        }
        assert_eq!(slot(6, 0), 0, "no threads: no division by zero");
    }

    /// A reactor whose output is compressed, and workers for `streams` streams.
    #[cfg(feature = "zstd")]
    fn compressing(streams: usize) -> (ServerReactor, Workers) {
        let mut reactor = ServerReactor::new(hgframe_reactor::ServerConfig::default());
        reactor.set_peer_accepts(&["zstd-8mb"]);
        assert_ne!(reactor.output_encoding(), IDENTITY);
        let threads: Arc<[BlockingPool]> = (0..streams).map(|_| BlockingPool::new(1)).collect();
        (reactor, Workers::new(streams, 4, threads))
    }

    #[cfg(feature = "zstd")]
    fn piece_stream(step: &Step) -> u8 {
        match step {
            Step::Piece { stream, .. } => *stream,
            Step::Report(_) => panic!("not a piece"),
        }
    }

    #[cfg(feature = "zstd")]
    #[tokio::test]
    async fn a_stream_queues_a_second_piece_of_its_own_request_only() {
        let (mut reactor, mut workers) = compressing(2);
        let (x, y) = (RequestId(1), RequestId(3));
        let piece = || Bytes::from_static(b"some data to compress");
        let a = workers.start(&mut reactor, x, piece(), false).ok().unwrap();
        let b = workers.start(&mut reactor, x, piece(), false).ok().unwrap();
        // Both streams are open and busy with `x`: `y` gets none (its data is
        // compressed on the exchange's task), while `x` queues one more on each.
        // (It waits for a stream to be free: it is not for the exchange's own stream.)
        assert!(matches!(
            workers.start(&mut reactor, y, piece(), false),
            Err(NotStarted::Busy(_))
        ));
        let c = workers.start(&mut reactor, x, piece(), false).ok().unwrap();
        let d = workers.start(&mut reactor, x, piece(), true).ok().unwrap();
        assert_ne!(piece_stream(&a), piece_stream(&b), "an idle stream first");
        let mut queued = [piece_stream(&c), piece_stream(&d)];
        queued.sort_unstable();
        let mut first = [piece_stream(&a), piece_stream(&b)];
        first.sort_unstable();
        assert_eq!(queued, first, "then behind the request's own pieces");
        assert!(!workers.has_room(&reactor));
        assert!(matches!(
            workers.start(&mut reactor, x, piece(), false),
            Err(NotStarted::Busy(_))
        ));
        assert_eq!(workers.busy_bytes(), 4 * piece().len());
        // The pieces of one stream run in the order they were queued, on one encoder:
        // the second continues the first's stream.
        let Step::Piece { handle, .. } = a else {
            unreachable!()
        };
        let first = handle.await.ok().unwrap();
        let Step::Piece { handle, .. } = c else {
            unreachable!()
        };
        let second = handle.await.ok().unwrap();
        let begins = |e: &Encoded| {
            e.frames.as_ref().unwrap()[0]
                .stream_flags()
                .contains(hgframe_wire::StreamFlags::STREAM_BEGIN)
        };
        assert!(begins(&first) && !begins(&second));
        // Once a stream's pieces are over, any request may use it.
        workers.piece_over(first.stream, piece().len(), true);
        workers.piece_over(second.stream, piece().len(), true);
        assert!(workers.start(&mut reactor, y, piece(), false).is_ok());
    }

    #[cfg(feature = "zstd")]
    #[tokio::test]
    async fn pieces_queued_behind_a_lost_one_are_not_in_step() {
        let (mut reactor, mut workers) = compressing(2);
        let x = RequestId(1);
        let piece = || Bytes::from_static(b"some data to compress");
        let a = workers.start(&mut reactor, x, piece(), false).ok().unwrap();
        let _b = workers.start(&mut reactor, x, piece(), false).ok().unwrap();
        let c = workers.start(&mut reactor, x, piece(), false).ok().unwrap();
        let lost = piece_stream(&a);
        assert_eq!(piece_stream(&c), lost);
        // `a`'s frames did not go out: `c`, encoded after them on the same stream,
        // would not decode.
        workers.piece_over(lost, piece().len(), false);
        assert!(!workers.is_in_step(lost));
        workers.piece_over(lost, piece().len(), false);
        // The lost stream is gone with its last piece; a new one replaces it.
        let e = workers
            .start(&mut reactor, RequestId(3), piece(), false)
            .ok()
            .unwrap();
        assert_ne!(piece_stream(&e), lost);
        assert!(workers.is_in_step(piece_stream(&e)));
    }

    #[tokio::test]
    async fn a_slot_runs_every_piece_on_one_thread() {
        // What keeps a stream's context in one core's caches: its slot is a pool of one
        // thread.
        let pool = BlockingPool::new(1);
        let mut threads = FxHashSet::default();
        for _ in 0..8 {
            threads.insert(pool.start(|| std::thread::current().id()).await.unwrap());
        }
        assert_eq!(threads.len(), 1);
    }
}
