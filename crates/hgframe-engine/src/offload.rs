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
//! their turn. A stream is busy with at most one piece, so the pieces in flight are at
//! most the number of streams.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hgframe_reactor::{ServerReactor, IDENTITY};
use hgframe_stream::{OutgoingStream, StreamError};
use hgframe_wire::{Frame, FrameType, RequestId};

use crate::admission::{BlockingPool, JobFailed, PoolJob};

use crate::command::Report;

/// A piece encoded by a worker: its stream back, its frames, and what it cost.
pub(crate) struct Encoded {
    pub(crate) stream: OutgoingStream,
    pub(crate) frames: Result<Vec<Frame>, StreamError>,
    pub(crate) raw: u64,
    pub(crate) time: Duration,
}

/// One thing a request produced, in its order.
pub(crate) enum Step {
    /// A piece compressing on a worker; `eos` when it ends the response.
    Piece { handle: PoolJob<Encoded>, eos: bool },
    /// A report that waits for the pieces before it.
    Report(Report),
}

/// What a request produced since its oldest piece still compressing, in order.
pub(crate) type Lane = VecDeque<Step>;

/// The exchange's worker streams.
pub(crate) struct Workers {
    /// Streams waiting for a piece.
    idle: Vec<OutgoingStream>,
    /// Streams opened and not lost (idle or busy).
    opened: usize,
    /// Pieces compressing.
    busy: usize,
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
            idle: Vec::new(),
            opened: 0,
            busy: 0,
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

    /// Whether a piece could start now (or the pool is off): reports wait otherwise,
    /// which holds back the handlers.
    pub(crate) fn has_room(&self, reactor: &ServerReactor) -> bool {
        !self.enabled(reactor) || self.busy < self.max
    }

    /// Whether pieces are compressing.
    pub(crate) fn is_busy(&self) -> bool {
        self.busy > 0
    }

    /// Whether `stream_id` is a worker stream.
    pub(crate) fn owns(&self, stream_id: u8) -> bool {
        self.ids.contains(&stream_id)
    }

    /// Starts compressing `data` for `request` on an idle stream, if it is large enough
    /// and one is free (opened from the reactor as needed). Gives the data back
    /// otherwise.
    pub(crate) fn start(
        &mut self,
        reactor: &mut ServerReactor,
        request: RequestId,
        data: Bytes,
        eos: bool,
    ) -> Result<Step, Bytes> {
        if !self.enabled(reactor) || data.len() < self.min_piece || self.busy >= self.max {
            return Err(data);
        }
        let Some(mut stream) = self.take_stream(reactor) else {
            return Err(data);
        };
        // A stream's pieces always go to the same thread (its slot: worker streams of
        // an exchange have consecutive even ids), so its context, a few MiB of tables
        // and window, stays in that thread's caches instead of moving between cores
        // with every piece (docs/streams.md, "Several streams on several cores").
        let Some(pool) = self
            .compressors
            .get(slot(stream.id().0, self.compressors.len()))
        else {
            // No threads (not enabled then): the exchange's task compresses.
            self.idle.push(stream);
            return Err(data);
        };
        self.busy += 1;
        let job = move || {
            let started = Instant::now();
            let raw = data.len() as u64;
            let mut frames = Vec::new();
            let frames = stream
                .push_data(request, FrameType::BytesResponse, data, eos, &mut frames)
                .map(|()| frames);
            Encoded {
                stream,
                frames,
                raw,
                time: started.elapsed(),
            }
        };
        let handle = pool.start(job);
        Ok(Step::Piece { handle, eos })
    }

    /// A piece is done; its stream is free again.
    pub(crate) fn give_back(&mut self, stream: OutgoingStream) {
        self.busy = self.busy.saturating_sub(1);
        self.idle.push(stream);
    }

    /// A piece is done but its stream cannot be used again: its frames did not all go
    /// out (so the peer's decoding context differs from the encoder's), or the worker
    /// failed. Its id stays taken for the exchange; another stream may replace it.
    pub(crate) fn lose(&mut self) {
        self.busy = self.busy.saturating_sub(1);
        self.opened = self.opened.saturating_sub(1);
    }

    fn take_stream(&mut self, reactor: &mut ServerReactor) -> Option<OutgoingStream> {
        if let Some(stream) = self.idle.pop() {
            return Some(stream);
        }
        if self.opened >= self.max {
            return None;
        }
        match reactor.open_output_stream() {
            Ok(stream) => {
                self.opened += 1;
                self.ids.insert(stream.id().0);
                Some(stream)
            }
            Err(e) => {
                // No stream id left: work with the streams there are.
                tracing::debug!(error = %e, "no more worker streams");
                self.max = self.opened;
                None
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
