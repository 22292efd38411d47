//! The counters of one exchange ([`ExchangeStats`]): frames and bytes each way, and per
//! output stream its frames, wire bytes, raw bytes, pre-compressed bytes and encoding
//! time.
//!
//! Raw bytes and encoding time are known when output is given to the reactor, but the
//! stream they belong to only when its frames come out (the reactor has one output
//! stream at a time; worker streams are counted as their pieces finish), so they wait in
//! `pending` until then.

use std::time::{Duration, Instant};

use crate::stats::{ExchangeStats, StreamCounters};

pub(crate) struct Counters {
    pub(crate) stats: ExchangeStats,
    started: Instant,
    pending_raw: u64,
    pending_precompressed: u64,
    pending_time: Duration,
    /// Whether the counters were given to the observer (exactly once, even when the
    /// exchange is dropped unfinished).
    reported: bool,
}

impl Counters {
    pub(crate) fn new(stats: ExchangeStats) -> Self {
        Self {
            stats,
            started: Instant::now(),
            pending_raw: 0,
            pending_precompressed: 0,
            pending_time: Duration::ZERO,
            reported: false,
        }
    }

    pub(crate) fn frame_in(&mut self, len: usize) {
        self.stats.frames_in += 1;
        self.stats.bytes_in += len as u64;
    }

    /// Raw bytes and encoding time of output given to the reactor's own stream.
    pub(crate) fn encoded(&mut self, raw: u64, time: Duration) {
        self.pending_raw += raw;
        self.pending_time += time;
    }

    /// Pre-compressed bytes (a cache's) given to the reactor's own stream.
    pub(crate) fn precompressed(&mut self, bytes: u64) {
        self.pending_precompressed += bytes;
    }

    /// A frame that went out on `stream_id` (`own`: the reactor's stream, which the
    /// pending raw bytes belong to).
    pub(crate) fn frame_out(&mut self, stream_id: u8, profile: &str, len: usize, own: bool) {
        self.stats.bytes_out += len as u64;
        if let Some(counters) = self.stream(stream_id, profile) {
            counters.frames += 1;
            counters.wire_bytes += len as u64;
        }
        if own {
            self.flush_pending(stream_id, profile);
        }
    }

    /// Raw bytes and time of a piece a worker encoded on `stream_id`.
    pub(crate) fn worker_piece(&mut self, stream_id: u8, profile: &str, raw: u64, time: Duration) {
        if let Some(counters) = self.stream(stream_id, profile) {
            counters.raw_bytes += raw;
            counters.encode_time += time;
        }
    }

    fn flush_pending(&mut self, stream_id: u8, profile: &str) {
        if self.pending_raw == 0 && self.pending_precompressed == 0 && self.pending_time.is_zero() {
            return;
        }
        let (raw, precompressed, time) = (
            self.pending_raw,
            self.pending_precompressed,
            self.pending_time,
        );
        self.pending_raw = 0;
        self.pending_precompressed = 0;
        self.pending_time = Duration::ZERO;
        if let Some(counters) = self.stream(stream_id, profile) {
            counters.raw_bytes += raw;
            counters.precompressed_bytes += precompressed;
            counters.encode_time += time;
        }
    }

    /// The counters of a stream, created on first use.
    fn stream(&mut self, stream_id: u8, profile: &str) -> Option<&mut StreamCounters> {
        let streams = &mut self.stats.streams;
        if !streams.iter().any(|s| s.stream_id == stream_id) {
            streams.push(StreamCounters {
                stream_id,
                profile: profile.to_owned(),
                ..StreamCounters::default()
            });
        }
        streams.iter_mut().find(|s| s.stream_id == stream_id)
    }

    /// The counters, final: what is still pending goes to the last stream that is not a
    /// worker's. Returns them the first time only.
    pub(crate) fn finish(&mut self, is_worker: impl Fn(u8) -> bool) -> Option<&ExchangeStats> {
        if self.reported {
            return None;
        }
        self.reported = true;
        self.stats.elapsed = self.started.elapsed();
        let pending = (self.pending_raw, self.pending_time);
        let last_own = self
            .stats
            .streams
            .iter_mut()
            .rev()
            .find(|s| !is_worker(s.stream_id));
        if let Some(counters) = last_own {
            counters.raw_bytes += pending.0;
            counters.encode_time += pending.1;
            self.pending_raw = 0;
            self.pending_time = Duration::ZERO;
        }
        Some(&self.stats)
    }
}
