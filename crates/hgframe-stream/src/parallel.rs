//! Several streams encoded at once, one worker thread per stream (or at most
//! [`ParallelEncoder::threads`]), their frames interleaved onto one connection.
//!
//! Streams are independent (each owns its compression context) and `Send`, so each can
//! be encoded on its own core. Each worker runs a job that pushes frames through a
//! [`StreamWriter`]; the writer hands them over in batches through one bounded channel,
//! and the calling thread passes every frame to a sink (the connection) as batches
//! arrive. A worker sends its own batches in order, so each stream's frames stay in
//! order; frames of different streams interleave, which the protocol allows.
//!
//! Memory is bounded: each worker holds at most about one batch, and the channel at most
//! `queue_depth` batches per stream; a slow sink blocks the workers (back-pressure),
//! which [`StreamWriter::queued_batches`] lets a job observe, for instance to lower its
//! compression level as `zstd --adapt` does.
//!
//! ```
//! use bytes::Bytes;
//! use hgframe_stream::{EncodingSettings, OutgoingStream, ParallelEncoder, Profiles, Side};
//! use hgframe_wire::{FrameType, RequestId, StreamId};
//!
//! let profiles = Profiles::default();
//! let parts = [Bytes::from("first part"), Bytes::from("second part")];
//! let jobs = parts.iter().enumerate().map(|(i, part)| {
//!     let id = StreamId(2 + 2 * i as u8);
//!     let stream = OutgoingStream::new(id, Side::Server, &profiles, &EncodingSettings::default())?;
//!     let request = RequestId(1 + 2 * i as u16);
//!     let part = part.clone();
//!     Ok((stream, move |w: &mut hgframe_stream::StreamWriter<'_>| {
//!         w.push_data(request, FrameType::BytesResponse, part, true)?;
//!         w.end()
//!     }))
//! }).collect::<Result<Vec<_>, hgframe_stream::StreamError>>()?;
//! let mut wire = Vec::new();
//! let streams = ParallelEncoder::new()
//!     .run(jobs, |frame| {
//!         wire.push(frame);
//!         Ok::<(), std::convert::Infallible>(())
//!     })
//!     .map_err(|e| e.to_string())?;
//! assert_eq!(wire.len(), 2);
//! assert!(streams.iter().all(|s| !s.is_open()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use hgframe_wire::{Frame, FrameType, RequestId};

use crate::error::StreamError;
use crate::outgoing::OutgoingStream;

/// A batch of one stream's frames, tagged with the job's index.
type Batch = (usize, Vec<Frame>);

/// Runs stream jobs on worker threads and interleaves their frames. A plain
/// configuration value: [`ParallelEncoder::run`] can be called many times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParallelEncoder {
    queue_depth: usize,
    batch_bytes: usize,
    threads: usize,
}

impl Default for ParallelEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`ParallelEncoder::run`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParallelError<E> {
    /// A job failed.
    #[error("stream job {index}: {source}")]
    Stream {
        /// The job's position in the list given to `run`.
        index: usize,
        /// Its error.
        #[source]
        source: StreamError,
    },
    /// The sink refused a frame; the workers were stopped.
    #[error("the frame sink failed: {0}")]
    Sink(E),
    /// A job panicked.
    #[error("stream job {index} panicked")]
    WorkerPanicked {
        /// The job's position in the list given to `run`.
        index: usize,
    },
}

impl ParallelEncoder {
    /// Batches of about 256 KiB, at most 4 queued per stream, every job on a thread of
    /// its own.
    pub fn new() -> Self {
        Self {
            queue_depth: 4,
            batch_bytes: 256 * 1024,
            threads: usize::MAX,
        }
    }

    /// Sets how many jobs run at once (at least 1; default: all of them). A thread that
    /// finishes a job takes the next one not yet started, in the order of the jobs.
    ///
    /// More compressors than cores only take turns on them, and each turn evicts the
    /// other contexts' tables from the caches: `hgframe frames pack --streams 4` on 2
    /// cores took 1.45x the CPU time of one stream with a thread per stream
    /// (docs/streams.md, "Many cores"). A job that waits for a later job to make progress
    /// must not be limited this way.
    pub fn threads(&mut self, n: usize) -> &mut Self {
        self.threads = n.max(1);
        self
    }

    /// Sets how many batches per stream may wait for the sink (at least 1). Memory in
    /// flight is about `(queue_depth + 1) * batch_bytes` per stream.
    pub fn queue_depth(&mut self, n: usize) -> &mut Self {
        self.queue_depth = n.max(1);
        self
    }

    /// Sets the size (wire bytes) at which a worker hands its frames over (at least 1).
    pub fn batch_bytes(&mut self, n: usize) -> &mut Self {
        self.batch_bytes = n.max(1);
        self
    }

    /// Runs each job on a worker thread (one per job, or [`Self::threads`] taking them in
    /// turn) with a [`StreamWriter`] on its stream, and passes
    /// every frame to `sink` on the calling thread, each stream's frames in order.
    /// Returns the streams, in the order of `jobs`, for further use (a stream outlives
    /// its jobs; one that a job did not end is still open).
    ///
    /// On a failure, the first error in job order is returned (a sink error first);
    /// when the sink fails, the workers stop at their next hand-over.
    pub fn run<F, S, E>(
        &self,
        jobs: Vec<(OutgoingStream, F)>,
        mut sink: S,
    ) -> Result<Vec<OutgoingStream>, ParallelError<E>>
    where
        F: FnOnce(&mut StreamWriter<'_>) -> Result<(), StreamError> + Send,
        S: FnMut(Frame) -> Result<(), E>,
    {
        let n = jobs.len();
        let queued: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        let (tx, rx) = sync_channel::<Batch>(self.queue_depth.saturating_mul(n).max(1));
        let batch_bytes = self.batch_bytes;
        // Jobs not yet started, taken in order by whichever thread is free.
        let waiting: Vec<Mutex<Option<(OutgoingStream, F)>>> =
            jobs.into_iter().map(|job| Mutex::new(Some(job))).collect();
        let next = AtomicUsize::new(0);
        // Set once the sink failed: no job starts after that.
        let stopped = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.threads.min(n))
                .map(|_| {
                    let tx = tx.clone();
                    let (waiting, next, stopped, queued) = (&waiting, &next, &stopped, &queued);
                    scope.spawn(move || {
                        let mut done = Vec::new();
                        while !stopped.load(Ordering::Relaxed) {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let (Some(slot), Some(queued)) =
                                (waiting.get(index), queued.get(index))
                            else {
                                break;
                            };
                            let Some((mut stream, job)) = lock(slot).take() else {
                                continue;
                            };
                            let mut writer = StreamWriter {
                                stream: &mut stream,
                                index,
                                tx: &tx,
                                queued,
                                pending: Vec::new(),
                                pending_bytes: 0,
                                sent_any: false,
                                batch_bytes,
                            };
                            // A panicking job loses its stream, not the jobs after it.
                            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                job(&mut writer).and_then(|()| writer.finish())
                            }));
                            done.push((index, result.map(|r| (stream, r))));
                        }
                        done
                    })
                })
                .collect();
            drop(tx); // the channel closes when the last worker is done

            let mut sink_error = None;
            'batches: for (index, batch) in rx.iter() {
                if let Some(q) = queued.get(index) {
                    q.fetch_sub(1, Ordering::Relaxed);
                }
                for frame in batch {
                    if let Err(e) = sink(frame) {
                        sink_error = Some(e);
                        break 'batches;
                    }
                }
            }
            stopped.store(true, Ordering::Relaxed);
            drop(rx); // wakes workers blocked on a full channel, with an error

            let mut finished: Vec<Option<_>> = (0..n).map(|_| None).collect();
            for handle in handles {
                // Jobs run under `catch_unwind`, so a thread itself does not panic.
                for (index, result) in handle.join().unwrap_or_default() {
                    if let Some(slot) = finished.get_mut(index) {
                        *slot = Some(result);
                    }
                }
            }
            let mut streams = Vec::with_capacity(n);
            let mut first_error = None;
            for (index, result) in finished.into_iter().enumerate() {
                match result {
                    Some(Ok((stream, result))) => {
                        if let Err(source) = result {
                            first_error.get_or_insert(ParallelError::Stream { index, source });
                        }
                        streams.push(stream);
                    }
                    Some(Err(_)) => {
                        first_error.get_or_insert(ParallelError::WorkerPanicked { index });
                    }
                    // Not started: the sink failed first, which is the error returned.
                    None => {}
                }
            }
            match (sink_error, first_error) {
                (Some(e), _) => Err(ParallelError::Sink(e)),
                (None, Some(e)) => Err(e),
                (None, None) => Ok(streams),
            }
        })
    }
}

/// Locks `slot`; a poisoned lock still holds a valid value (jobs never run under it).
fn lock<T>(slot: &Mutex<T>) -> MutexGuard<'_, T> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A job's handle on its stream: the [`OutgoingStream`] pushes, with the frames going
/// to the connection instead of a vector.
///
/// The writer keeps the stream's last frame until the job ends, so [`StreamWriter::end`]
/// can always mark it `stream-end`.
pub struct StreamWriter<'a> {
    stream: &'a mut OutgoingStream,
    index: usize,
    tx: &'a SyncSender<Batch>,
    queued: &'a AtomicUsize,
    pending: Vec<Frame>,
    pending_bytes: usize,
    batch_bytes: usize,
    /// Whether a batch went out: the first goes as soon as it holds a data frame.
    sent_any: bool,
}

impl std::fmt::Debug for StreamWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("stream", &self.stream)
            .field("index", &self.index)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl StreamWriter<'_> {
    /// The stream (its id, counters, settings).
    pub fn stream(&self) -> &OutgoingStream {
        self.stream
    }

    /// Batches of this stream handed over but not yet taken by the sink: a measure of
    /// how far the connection lags behind this worker.
    pub fn queued_batches(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// [`OutgoingStream::push_data`].
    pub fn push_data(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        data: Bytes,
        eos: bool,
    ) -> Result<(), StreamError> {
        let before = self.pending.len();
        self.stream
            .push_data(request, frame_type, data, eos, &mut self.pending)?;
        self.hand_over(before)
    }

    /// [`OutgoingStream::push_raw_data`].
    pub fn push_raw_data(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        data: Bytes,
        eos: bool,
    ) -> Result<(), StreamError> {
        let before = self.pending.len();
        self.stream
            .push_raw_data(request, frame_type, data, eos, &mut self.pending)?;
        self.hand_over(before)
    }

    /// [`OutgoingStream::push_frame`].
    pub fn push_frame(&mut self, frame: Frame) -> Result<(), StreamError> {
        let before = self.pending.len();
        self.stream.push_frame(frame, &mut self.pending)?;
        self.hand_over(before)
    }

    /// [`OutgoingStream::push_precompressed`].
    pub fn push_precompressed(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        compressed: Bytes,
        eos: bool,
    ) -> Result<(), StreamError> {
        let before = self.pending.len();
        self.stream
            .push_precompressed(request, frame_type, compressed, eos, &mut self.pending)?;
        self.hand_over(before)
    }

    /// [`OutgoingStream::set_level`].
    pub fn set_level(&mut self, level: i32) -> Result<(), StreamError> {
        self.stream.set_level(level)
    }

    /// [`OutgoingStream::end`]: the stream's last frame gets `stream-end`.
    pub fn end(&mut self) -> Result<(), StreamError> {
        self.stream.end(&mut self.pending)
    }

    /// Counts the frames pushed since `before`, and sends the pending frames but the
    /// last once they reach the batch size.
    fn hand_over(&mut self, before: usize) -> Result<(), StreamError> {
        let added: usize = self
            .pending
            .get(before..)
            .unwrap_or_default()
            .iter()
            .map(Frame::encoded_len)
            .sum();
        self.pending_bytes += added;
        // The first batch goes out as soon as it holds a data frame besides the one
        // kept back: a sink may wait for every stream's first data before it lets the
        // next start (`frames pack` does), and should not wait for a whole batch.
        let first = !self.sent_any && self.pending.len() >= 3;
        if (self.pending_bytes < self.batch_bytes && !first) || self.pending.len() < 2 {
            return Ok(());
        }
        let keep = self.pending.split_off(self.pending.len() - 1);
        let batch = std::mem::replace(&mut self.pending, keep);
        self.send(batch)
    }

    /// Sends everything left.
    fn finish(&mut self) -> Result<(), StreamError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.send(batch)
    }

    fn send(&mut self, batch: Vec<Frame>) -> Result<(), StreamError> {
        self.sent_any = true;
        self.pending_bytes = self.pending.iter().map(Frame::encoded_len).sum();
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send((self.index, batch))
            .map_err(|_| StreamError::Cancelled {
                id: self.stream.id(),
            })
    }
}
