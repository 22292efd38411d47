//! A bounded pool of idle zstd contexts, shared by the streams of many exchanges.
//!
//! Creating a zstd context and touching its workspace for the first time (page faults)
//! costs more than compressing a small message: 155 µs of server CPU per 64-byte zstd
//! echo over HTTP against 18 µs with `identity`, before this pool. A stream therefore
//! takes its context from a [`ZstdContextPool`] and gives it back when its encoder or
//! decoder is dropped. A context given back is *reset* (session and parameters:
//! nothing of the previous stream's data, history or level survives), never rebuilt,
//! so its workspace is reused as it is.
//!
//! The pool is bounded ([`PoolLimits`]): at most `max_idle` idle contexts of each kind,
//! and a context whose memory exceeds `max_context_bytes` (a high level's tables, a
//! large window) is freed rather than kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use zstd::zstd_safe::{CCtx, DCtx, ResetDirective};

use super::EncodingError;

/// Default of [`PoolLimits::max_idle`].
pub const DEFAULT_MAX_IDLE: usize = 16;

/// Default of [`PoolLimits::max_context_bytes`]: 16 MiB. It keeps compression contexts
/// up to level 9 (level 1: about 1.3 MiB, level 3: 3.5 MiB, level 9: 15 MiB; level 19,
/// about 90 MiB, is freed) and decompression contexts with the profile's 8 MiB window.
pub const DEFAULT_MAX_CONTEXT_BYTES: usize = 16 << 20;

/// The most [`PoolLimits::max_idle`] accepts.
pub const MAX_IDLE_LIMIT: usize = 1024;

/// The most [`PoolLimits::max_context_bytes`] accepts (1 GiB).
pub const MAX_CONTEXT_BYTES_LIMIT: usize = 1 << 30;

/// A pool limit that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolLimitError {
    /// `max_idle` above [`MAX_IDLE_LIMIT`].
    #[error("max_idle {value} exceeds {max}")]
    MaxIdleTooLarge {
        /// The value refused.
        value: usize,
        /// The largest accepted.
        max: usize,
    },
    /// `max_context_bytes` of 0 (to keep no context, set `max_idle` to 0) or above
    /// [`MAX_CONTEXT_BYTES_LIMIT`].
    #[error("max_context_bytes {value} is outside 1..={max}")]
    MaxContextBytesOutOfRange {
        /// The value refused.
        value: usize,
        /// The largest accepted.
        max: usize,
    },
}

/// How much a [`ZstdContextPool`] may keep.
///
/// At most `max_idle` compression contexts and `max_idle` decompression contexts are
/// kept idle, each of at most `max_context_bytes`: the pool holds at most
/// `2 × max_idle × max_context_bytes` (512 MiB with the defaults, 16 and 16 MiB; a level
/// 3 compression context holds about 3.5 MiB, so in practice far less).
///
/// ```
/// use hgframe_stream::encoding::{PoolLimitError, PoolLimits};
/// let mut limits = PoolLimits::default();
/// limits.set_max_idle(4)?.set_max_context_bytes(8 << 20)?;
/// assert_eq!(limits.max_idle(), 4);
/// assert!(limits.set_max_context_bytes(0).is_err());
/// // 0 idle contexts: every stream creates its own, as without a pool.
/// assert_eq!(PoolLimits::new(0, 1 << 20)?.max_idle(), 0);
/// # Ok::<(), PoolLimitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    max_idle: usize,
    max_context_bytes: usize,
}

impl Default for PoolLimits {
    /// 16 idle contexts of each kind, each of at most 16 MiB.
    fn default() -> Self {
        Self {
            max_idle: DEFAULT_MAX_IDLE,
            max_context_bytes: DEFAULT_MAX_CONTEXT_BYTES,
        }
    }
}

impl PoolLimits {
    /// Limits with these values, checked as by the setters.
    pub fn new(max_idle: usize, max_context_bytes: usize) -> Result<Self, PoolLimitError> {
        let mut limits = Self::default();
        limits
            .set_max_idle(max_idle)?
            .set_max_context_bytes(max_context_bytes)?;
        Ok(limits)
    }

    /// The most idle contexts kept of each kind (compression, decompression).
    pub fn max_idle(&self) -> usize {
        self.max_idle
    }

    /// Sets [`PoolLimits::max_idle`], at most [`MAX_IDLE_LIMIT`]; 0 turns pooling off.
    pub fn set_max_idle(&mut self, n: usize) -> Result<&mut Self, PoolLimitError> {
        if n > MAX_IDLE_LIMIT {
            return Err(PoolLimitError::MaxIdleTooLarge {
                value: n,
                max: MAX_IDLE_LIMIT,
            });
        }
        self.max_idle = n;
        Ok(self)
    }

    /// The largest context (zstd's own count of its memory) kept; a larger one given
    /// back is freed.
    pub fn max_context_bytes(&self) -> usize {
        self.max_context_bytes
    }

    /// Sets [`PoolLimits::max_context_bytes`], from 1 to [`MAX_CONTEXT_BYTES_LIMIT`].
    pub fn set_max_context_bytes(&mut self, n: usize) -> Result<&mut Self, PoolLimitError> {
        if n == 0 || n > MAX_CONTEXT_BYTES_LIMIT {
            return Err(PoolLimitError::MaxContextBytesOutOfRange {
                value: n,
                max: MAX_CONTEXT_BYTES_LIMIT,
            });
        }
        self.max_context_bytes = n;
        Ok(self)
    }
}

/// Counts of what a pool did, since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Compression contexts created because none was idle.
    pub compressors_created: u64,
    /// Compression contexts taken from the idle ones.
    pub compressors_reused: u64,
    /// Decompression contexts created because none was idle.
    pub decompressors_created: u64,
    /// Decompression contexts taken from the idle ones.
    pub decompressors_reused: u64,
    /// Contexts given back and freed: the pool was full, the context too large, or its
    /// reset failed.
    pub dropped: u64,
}

/// Idle zstd compression and decompression contexts, reused across streams, exchanges
/// and connections. Thread-safe; share it with an `Arc`.
///
/// [`crate::encoding::Zstd8Mb::default`] uses one pool for the whole process
/// ([`ZstdContextPool::shared`]); [`crate::encoding::Zstd8Mb::with_pool`] another.
///
/// ```
/// use std::sync::Arc;
/// use hgframe_stream::encoding::{ContentEncoder, PoolLimits, ZstdContextPool, ZstdEncoder};
/// let pool = Arc::new(ZstdContextPool::new(PoolLimits::default()));
/// let mut out = Vec::new();
/// ZstdEncoder::from_pool(&pool, 3)?.encode_flush(b"hello", &mut out)?;
/// // Dropped: the context is idle in the pool, and the next stream takes it.
/// assert_eq!(pool.idle_compressors(), 1);
/// ZstdEncoder::from_pool(&pool, 3)?.encode_flush(b"world", &mut out)?;
/// assert_eq!(pool.stats().compressors_reused, 1);
/// # Ok::<(), hgframe_stream::EncodingError>(())
/// ```
pub struct ZstdContextPool {
    limits: PoolLimits,
    compressors: Mutex<Vec<CCtx<'static>>>,
    decompressors: Mutex<Vec<DCtx<'static>>>,
    compressors_created: AtomicU64,
    compressors_reused: AtomicU64,
    decompressors_created: AtomicU64,
    decompressors_reused: AtomicU64,
    dropped: AtomicU64,
}

impl std::fmt::Debug for ZstdContextPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdContextPool")
            .field("limits", &self.limits)
            .field("idle_compressors", &self.idle_compressors())
            .field("idle_decompressors", &self.idle_decompressors())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for ZstdContextPool {
    fn default() -> Self {
        Self::new(PoolLimits::default())
    }
}

/// The lock, even if a thread panicked while holding it: the list of idle contexts is
/// valid at every point (a push or a pop).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ZstdContextPool {
    /// An empty pool with these limits.
    pub fn new(limits: PoolLimits) -> Self {
        Self {
            limits,
            compressors: Mutex::new(Vec::new()),
            decompressors: Mutex::new(Vec::new()),
            compressors_created: AtomicU64::new(0),
            compressors_reused: AtomicU64::new(0),
            decompressors_created: AtomicU64::new(0),
            decompressors_reused: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The process-wide pool (default limits), used by [`crate::Profiles::default`].
    pub fn shared() -> Arc<Self> {
        static SHARED: OnceLock<Arc<ZstdContextPool>> = OnceLock::new();
        Arc::clone(SHARED.get_or_init(|| Arc::new(Self::default())))
    }

    /// The limits.
    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    /// Idle compression contexts held now.
    pub fn idle_compressors(&self) -> usize {
        lock(&self.compressors).len()
    }

    /// Idle decompression contexts held now.
    pub fn idle_decompressors(&self) -> usize {
        lock(&self.decompressors).len()
    }

    /// What the pool did so far.
    pub fn stats(&self) -> PoolStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PoolStats {
            compressors_created: get(&self.compressors_created),
            compressors_reused: get(&self.compressors_reused),
            decompressors_created: get(&self.decompressors_created),
            decompressors_reused: get(&self.decompressors_reused),
            dropped: get(&self.dropped),
        }
    }

    /// Frees every idle context.
    pub fn clear(&self) {
        // Freed outside the lock.
        let c = std::mem::take(&mut *lock(&self.compressors));
        let d = std::mem::take(&mut *lock(&self.decompressors));
        drop((c, d));
    }

    /// An idle compression context (reset, default parameters), else a new one.
    fn take_cctx(&self) -> Result<CCtx<'static>, EncodingError> {
        if let Some(ctx) = lock(&self.compressors).pop() {
            self.compressors_reused.fetch_add(1, Ordering::Relaxed);
            return Ok(ctx);
        }
        self.compressors_created.fetch_add(1, Ordering::Relaxed);
        CCtx::try_create().ok_or_else(|| EncodingError::Compressor {
            message: "cannot allocate a zstd compression context".into(),
        })
    }

    /// An idle decompression context (reset, default parameters), else a new one.
    fn take_dctx(&self) -> Result<DCtx<'static>, EncodingError> {
        if let Some(ctx) = lock(&self.decompressors).pop() {
            self.decompressors_reused.fetch_add(1, Ordering::Relaxed);
            return Ok(ctx);
        }
        self.decompressors_created.fetch_add(1, Ordering::Relaxed);
        DCtx::try_create().ok_or_else(|| EncodingError::Compressor {
            message: "cannot allocate a zstd decompression context".into(),
        })
    }

    /// Takes `ctx` back: reset, then kept if it is small enough and there is room,
    /// else freed. The reset forgets the stream's data, open frame, history and
    /// parameters; the next user applies its own.
    fn give_cctx(&self, mut ctx: CCtx<'static>) {
        let keep = self.limits.max_idle > 0
            && ctx.reset(ResetDirective::SessionAndParameters).is_ok()
            && ctx.sizeof() <= self.limits.max_context_bytes;
        if keep {
            let mut idle = lock(&self.compressors);
            if idle.len() < self.limits.max_idle {
                idle.push(ctx);
                return;
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        drop(ctx);
    }

    /// As [`ZstdContextPool::give_cctx`], for a decompression context.
    fn give_dctx(&self, mut ctx: DCtx<'static>) {
        let keep = self.limits.max_idle > 0
            && ctx.reset(ResetDirective::SessionAndParameters).is_ok()
            && ctx.sizeof() <= self.limits.max_context_bytes;
        if keep {
            let mut idle = lock(&self.decompressors);
            if idle.len() < self.limits.max_idle {
                idle.push(ctx);
                return;
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        drop(ctx);
    }
}

/// A compression context on loan from a pool: given back when dropped.
pub(super) struct PooledCCtx {
    /// Always `Some` until dropped.
    ctx: Option<CCtx<'static>>,
    pool: Arc<ZstdContextPool>,
}

impl PooledCCtx {
    pub(super) fn take(pool: &Arc<ZstdContextPool>) -> Result<Self, EncodingError> {
        Ok(Self {
            ctx: Some(pool.take_cctx()?),
            pool: Arc::clone(pool),
        })
    }

    pub(super) fn get(&mut self) -> Result<&mut CCtx<'static>, EncodingError> {
        self.ctx.as_mut().ok_or_else(gone)
    }
}

impl Drop for PooledCCtx {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            self.pool.give_cctx(ctx);
        }
    }
}

/// A decompression context on loan from a pool: given back when dropped.
pub(super) struct PooledDCtx {
    /// Always `Some` until dropped.
    ctx: Option<DCtx<'static>>,
    pool: Arc<ZstdContextPool>,
}

impl PooledDCtx {
    pub(super) fn take(pool: &Arc<ZstdContextPool>) -> Result<Self, EncodingError> {
        Ok(Self {
            ctx: Some(pool.take_dctx()?),
            pool: Arc::clone(pool),
        })
    }

    pub(super) fn get(&mut self) -> Result<&mut DCtx<'static>, EncodingError> {
        self.ctx.as_mut().ok_or_else(gone)
    }
}

impl Drop for PooledDCtx {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            self.pool.give_dctx(ctx);
        }
    }
}

fn gone() -> EncodingError {
    EncodingError::Compressor {
        message: "the zstd context was given back".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::zstd::{Zstd8Mb, ZstdDecoder, ZstdEncoder};
    use super::super::{ContentDecoder, ContentEncoder};
    use super::*;

    fn text(n: usize, seed: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 64);
        let mut i = seed;
        while v.len() < n {
            v.extend_from_slice(format!("record {i}: some text {}\n", i * 7 % 13).as_bytes());
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn pool(max_idle: usize, max_context_bytes: usize) -> Arc<ZstdContextPool> {
        Arc::new(ZstdContextPool::new(
            PoolLimits::new(max_idle, max_context_bytes).unwrap(),
        ))
    }

    /// What a context that never served anyone produces for `data` at `level`.
    fn fresh_output(level: i32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ZstdEncoder::from_pool(&pool(0, 1), level)
            .unwrap()
            .encode_flush(data, &mut out)
            .unwrap();
        out
    }

    fn decode_standalone(wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ZstdDecoder::from_pool(&pool(0, 1))
            .unwrap()
            .decode(wire, &mut out, 1 << 20)
            .unwrap();
        out
    }

    #[test]
    fn a_reused_compression_context_leaks_nothing_between_exchanges() {
        // Large enough to keep a level 19 context (about 90 MiB).
        let pool = pool(4, MAX_CONTEXT_BYTES_LIMIT);
        // (level of exchange A, level of exchange B): the same level, and a high level
        // (window log set) followed by a low one (parameters must not survive).
        for (level_a, level_b) in [(3, 3), (19, 1), (-5, 9)] {
            let a = text(20_000, 0);
            // B repeats A: a context that kept A's history would compress B to almost
            // nothing, and B's output would refer to bytes the receiver never saw.
            let mut b = a.clone();
            b.extend(text(3_000, 99));
            let mut enc = ZstdEncoder::from_pool(&pool, level_a).unwrap();
            let mut wire_a = Vec::new();
            enc.encode_flush(&a, &mut wire_a).unwrap(); // frame left open
            drop(enc);
            let reused_before = pool.stats().compressors_reused;
            let mut enc = ZstdEncoder::from_pool(&pool, level_b).unwrap();
            assert_eq!(pool.stats().compressors_reused, reused_before + 1);
            let mut wire_b = Vec::new();
            enc.encode_flush(&b, &mut wire_b).unwrap();
            assert_eq!(
                wire_b,
                fresh_output(level_b, &b),
                "levels {level_a} then {level_b}"
            );
            assert_eq!(decode_standalone(&wire_b), b);
        }
    }

    #[test]
    fn a_reused_decompression_context_leaks_nothing_between_exchanges() {
        let pool = pool(4, DEFAULT_MAX_CONTEXT_BYTES);
        let a = text(50_000, 1);
        let b = text(50_000, 2);
        // Exchange A: the decoder stops in the middle of a zstd frame.
        let wire_a = fresh_output(3, &a);
        let mut dec = ZstdDecoder::from_pool(&pool).unwrap();
        let mut out = Vec::new();
        dec.decode(&wire_a, &mut out, 1 << 20).unwrap();
        assert_eq!(out, a);
        drop(dec);
        // Exchange B, on the reused context: a new zstd frame, decoded as by a new one.
        let mut dec = ZstdDecoder::from_pool(&pool).unwrap();
        assert_eq!(pool.stats().decompressors_reused, 1);
        let mut out = Vec::new();
        dec.decode(&fresh_output(3, &b), &mut out, 1 << 20).unwrap();
        assert_eq!(out, b);
        // A context that failed (corrupt input) is usable again after its reset.
        assert!(dec.decode(b"not zstd at all", &mut out, 1 << 20).is_err());
        drop(dec);
        let mut dec = ZstdDecoder::from_pool(&pool).unwrap();
        assert_eq!(pool.stats().decompressors_reused, 2);
        let mut out = Vec::new();
        dec.decode(&fresh_output(3, &a), &mut out, 1 << 20).unwrap();
        assert_eq!(out, a);
    }

    #[test]
    fn a_reused_decoder_still_refuses_windows_over_8mb() {
        let pool = pool(4, DEFAULT_MAX_CONTEXT_BYTES);
        drop(ZstdDecoder::from_pool(&pool).unwrap());
        let mut big = zstd::stream::raw::Encoder::new(3).unwrap();
        use zstd::stream::raw::{CParameter, InBuffer, Operation, OutBuffer};
        big.set_parameter(CParameter::WindowLog(24)).unwrap();
        let data = text(1000, 3);
        let mut wire = Vec::with_capacity(1 << 16);
        big.run(
            &mut InBuffer::around(&data[..]),
            &mut OutBuffer::around(&mut wire),
        )
        .unwrap();
        loop {
            let pos = wire.len();
            if big
                .finish(&mut OutBuffer::around_pos(&mut wire, pos), true)
                .unwrap()
                == 0
            {
                break;
            }
        }
        let mut dec = ZstdDecoder::from_pool(&pool).unwrap();
        assert_eq!(pool.stats().decompressors_reused, 1);
        assert!(dec.decode(&wire, &mut Vec::new(), 1 << 20).is_err());
    }

    #[test]
    fn the_pool_never_holds_more_than_max_idle() {
        let pool = pool(2, DEFAULT_MAX_CONTEXT_BYTES);
        let data = text(5_000, 4);
        let mut encoders: Vec<_> = (0..5)
            .map(|_| ZstdEncoder::from_pool(&pool, 3).unwrap())
            .collect();
        let mut decoders: Vec<_> = (0..5)
            .map(|_| ZstdDecoder::from_pool(&pool).unwrap())
            .collect();
        for (enc, dec) in encoders.iter_mut().zip(&mut decoders) {
            let mut wire = Vec::new();
            enc.encode_flush(&data, &mut wire).unwrap();
            dec.decode(&wire, &mut Vec::new(), 1 << 20).unwrap();
        }
        drop(encoders);
        drop(decoders);
        assert_eq!(pool.idle_compressors(), 2);
        assert_eq!(pool.idle_decompressors(), 2);
        assert_eq!(pool.stats().dropped, 6);
        // Taking them again reuses the two, then creates.
        let again: Vec<_> = (0..3)
            .map(|_| ZstdEncoder::from_pool(&pool, 3).unwrap())
            .collect();
        let stats = pool.stats();
        assert_eq!(
            (stats.compressors_reused, stats.compressors_created),
            (2, 6)
        );
        drop(again);
        assert_eq!(pool.idle_compressors(), 2);
    }

    #[test]
    fn a_context_larger_than_the_limit_is_freed_not_kept() {
        // A level 3 context holds about 3.5 MiB, a level 1 context about 1.3 MiB.
        let pool = pool(8, 2 << 20);
        let mut enc = ZstdEncoder::from_pool(&pool, 3).unwrap();
        enc.encode_flush(&text(100_000, 5), &mut Vec::new())
            .unwrap();
        drop(enc);
        assert_eq!(pool.idle_compressors(), 0);
        assert_eq!(pool.stats().dropped, 1);
        // A small one is kept.
        let mut enc = ZstdEncoder::from_pool(&pool, 1).unwrap();
        enc.encode_flush(b"small", &mut Vec::new()).unwrap();
        drop(enc);
        assert_eq!(pool.idle_compressors(), 1);
    }

    #[test]
    fn max_idle_zero_keeps_nothing() {
        let pool = pool(0, DEFAULT_MAX_CONTEXT_BYTES);
        for _ in 0..3 {
            let mut enc = ZstdEncoder::from_pool(&pool, 3).unwrap();
            enc.encode_flush(b"x", &mut Vec::new()).unwrap();
            drop(ZstdDecoder::from_pool(&pool).unwrap());
        }
        let stats = pool.stats();
        assert_eq!(
            (stats.compressors_created, stats.compressors_reused),
            (3, 0)
        );
        assert_eq!(
            (stats.decompressors_created, stats.decompressors_reused),
            (3, 0)
        );
        assert_eq!(pool.idle_compressors() + pool.idle_decompressors(), 0);
    }

    #[test]
    fn limits_are_validated() {
        assert_eq!(
            PoolLimits::default(),
            PoolLimits::new(DEFAULT_MAX_IDLE, DEFAULT_MAX_CONTEXT_BYTES).unwrap()
        );
        assert_eq!(
            PoolLimits::new(MAX_IDLE_LIMIT + 1, 1),
            Err(PoolLimitError::MaxIdleTooLarge {
                value: MAX_IDLE_LIMIT + 1,
                max: MAX_IDLE_LIMIT
            })
        );
        assert!(matches!(
            PoolLimits::new(1, 0),
            Err(PoolLimitError::MaxContextBytesOutOfRange { value: 0, .. })
        ));
        assert!(PoolLimits::new(1, MAX_CONTEXT_BYTES_LIMIT + 1).is_err());
        let mut limits = PoolLimits::default();
        assert!(limits.set_max_idle(MAX_IDLE_LIMIT + 1).is_err());
        assert_eq!(
            limits,
            PoolLimits::default(),
            "a refused value changes nothing"
        );
        limits.set_max_idle(MAX_IDLE_LIMIT).unwrap();
        limits
            .set_max_context_bytes(MAX_CONTEXT_BYTES_LIMIT)
            .unwrap();
    }

    #[test]
    fn the_default_profile_uses_the_process_wide_pool() {
        use super::super::Profile;
        let profile = Zstd8Mb::default();
        assert!(Arc::ptr_eq(profile.pool(), &ZstdContextPool::shared()));
        let own = pool(1, DEFAULT_MAX_CONTEXT_BYTES);
        let profile = Zstd8Mb::with_pool(Arc::clone(&own));
        drop(profile.decoder(&[]).unwrap());
        assert_eq!(own.idle_decompressors(), 1);
    }
}
