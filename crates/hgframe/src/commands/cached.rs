//! `cat` through the response cache: a hit sends the cached compressed pieces as they
//! are; a miss compresses the file once, on the blocking pool, in the response's
//! encoding, sends each piece as it is made, and stores them all if the file did not
//! change meanwhile.
//!
//! Each piece is one compressed unit (for zstd, one zstd frame) of about [`READ_CHUNK`]
//! raw bytes, made by flushing every `max_flush_raw_len` raw bytes, as the response
//! stream itself would: every frame it is cut into decodes on arrival. Pieces go out
//! one at a time through the responder, so the exchange's back-pressure and output
//! budget apply as for the uncached `cat`.

use std::time::SystemTime;

use bytes::Bytes;
use hgframe_engine::{BlockingPool, CommandError, Responder};
use hgframe_reactor::ResponseEncoding;
use hgframe_stream::ContentEncoder;

use super::cache::{CacheKey, Piece, ResponseCache, Validator};
use super::{read_error, read_full, READ_CHUNK};

/// The command name in cache keys.
const COMMAND: &str = "cat";

/// What `cat` needs to answer through the cache.
pub(crate) struct Plan {
    key: CacheKey,
    validator: Validator,
    encoding: ResponseEncoding,
}

/// Whether `path`, with this metadata, is answered through the cache: the response is
/// compressed in a profile that takes pre-compressed data (not `identity`, not
/// sensitive, not `deflate`), and the file is not empty, not larger than the cache's
/// entry limit.
pub(crate) fn plan(
    cache: &ResponseCache,
    out: &Responder,
    path: &str,
    meta: &std::fs::Metadata,
) -> Option<Plan> {
    let encoding = out.response_encoding()?;
    let validator = Validator::of(meta);
    if validator.len() == 0 || validator.len() > cache.limits().max_entry_bytes {
        return None;
    }
    if !cache.can_precompress(encoding) {
        return None;
    }
    Some(Plan {
        key: CacheKey::new(COMMAND, path, encoding),
        validator,
        encoding: encoding.clone(),
    })
}

/// Answers `cat` from the cache, or fills it.
pub(crate) async fn answer(
    cache: &ResponseCache,
    plan: Plan,
    pool: &BlockingPool,
    file: std::fs::File,
    out: Responder,
    path: &str,
) -> Result<(), CommandError> {
    if let Some(pieces) = cache.get(&plan.key, &plan.validator) {
        return send(out, &pieces).await;
    }
    // Checked before reading: a change after this gets later times.
    let settled = plan
        .validator
        .is_settled(SystemTime::now(), cache.limits().settle_time);
    let mut fill = Fill::new(&plan.encoding, pool, file, path)?;
    let total = plan.validator.len();
    let Some((out, pieces)) = fill.run(out, total, cache.limits().max_entry_bytes).await? else {
        return Ok(());
    };
    let Some(last) = pieces.last().cloned() else {
        return Err(CommandError::new("reading the file failed"));
    };
    // Stored before the last piece goes: once the client has the whole answer, the
    // next `cat` finds it.
    if settled {
        if let Some(file) = fill.file.take() {
            store(cache, plan, pool, file, pieces).await;
        }
    }
    out.finish_precompressed(last.compressed).await?;
    Ok(())
}

/// Stores `pieces` if the file is the same, unchanged while it was read, and they hold
/// all of it (what a rename put at the path since has another inode, and misses). A
/// failure here only leaves the answer out of the cache: the response goes on.
async fn store(
    cache: &ResponseCache,
    plan: Plan,
    pool: &BlockingPool,
    file: std::fs::File,
    pieces: Vec<Piece>,
) {
    let Ok(Ok(now)) = pool
        .run(move || file.metadata().map(|m| Validator::of(&m)))
        .await
    else {
        return;
    };
    let raw: u64 = pieces.iter().map(|p| p.raw_len).sum();
    if now == plan.validator && raw == plan.validator.len() {
        cache.put(plan.key, plan.validator, pieces.into());
    }
}

/// Sends cached pieces (at least one), with progress reports as the uncached `cat`
/// sends them.
async fn send(mut out: Responder, pieces: &[Piece]) -> Result<(), CommandError> {
    let Some((last, rest)) = pieces.split_last() else {
        out.finish(Bytes::new()).await?;
        return Ok(());
    };
    let total: u64 = pieces.iter().map(|p| p.raw_len).sum();
    let mut sent = 0u64;
    for piece in rest {
        out.write_precompressed(piece.compressed.clone()).await?;
        sent += piece.raw_len;
        out.progress("cat", sent, total).await?;
    }
    if !rest.is_empty() {
        out.progress("cat", total, total).await?;
    }
    out.finish_precompressed(last.compressed.clone()).await?;
    Ok(())
}

/// A file being compressed for the cache, a piece at a time on the blocking pool.
struct Fill<'a> {
    pool: &'a BlockingPool,
    path: &'a str,
    /// The file and the encoder, lent to each pool job in turn.
    file: Option<std::fs::File>,
    encoder: Option<Box<dyn ContentEncoder>>,
    flush: usize,
    piece_len: usize,
}

impl<'a> Fill<'a> {
    fn new(
        encoding: &ResponseEncoding,
        pool: &'a BlockingPool,
        file: std::fs::File,
        path: &'a str,
    ) -> Result<Self, CommandError> {
        let encoder = encoding
            .encoder()
            .map_err(|e| CommandError::new(format!("cannot compress {path}: {e}")))?;
        let flush = encoding.max_flush_raw_len().max(1);
        Ok(Self {
            pool,
            path,
            file: Some(file),
            encoder: Some(encoder),
            flush,
            // Whole flushes, about a read chunk.
            piece_len: flush * (READ_CHUNK / flush).max(1),
        })
    }

    /// Sends the file, a compressed piece at a time, all but its last piece (one piece
    /// of look-ahead, so the last can carry `eos`), with progress reports against
    /// `total` as the uncached `cat`. Returns the responder and every piece, the last
    /// one to be sent by the caller; with no piece kept but the last when they came to
    /// more than `max_raw` raw bytes (the file grew while it was read). `None` once the
    /// response ended: the file was empty.
    async fn run(
        &mut self,
        mut out: Responder,
        total: u64,
        max_raw: u64,
    ) -> Result<Option<(Responder, Vec<Piece>)>, CommandError> {
        let mut pieces = Vec::new();
        let mut current = self.next().await?;
        if current.raw_len == 0 {
            // The file was emptied since it was looked at.
            out.finish(Bytes::new()).await?;
            return Ok(None);
        }
        let mut sent = 0u64;
        loop {
            let next = self.next().await?;
            if next.raw_len == 0 {
                break;
            }
            out.write_precompressed(current.compressed.clone()).await?;
            sent += current.raw_len;
            out.progress("cat", sent, total.max(sent)).await?;
            let done = std::mem::replace(&mut current, next);
            // Beyond the entry limit nothing more is held (nor stored: too few).
            if sent <= max_raw {
                pieces.push(done);
            } else {
                pieces.clear();
            }
        }
        if sent > 0 {
            let end = sent + current.raw_len;
            out.progress("cat", end, end).await?;
        }
        pieces.push(current);
        Ok(Some((out, pieces)))
    }

    /// Reads and compresses the next piece on the pool (empty at the end of the file).
    async fn next(&mut self) -> Result<Piece, CommandError> {
        let (Some(mut file), Some(mut encoder)) = (self.file.take(), self.encoder.take()) else {
            return Err(CommandError::new("reading the file failed"));
        };
        let (flush, piece_len) = (self.flush, self.piece_len);
        let (file, encoder, result) = self
            .pool
            .run(move || {
                let result = compress_piece(&mut file, encoder.as_mut(), flush, piece_len);
                (file, encoder, result)
            })
            .await
            .map_err(|e| CommandError::new(e.to_string()))?;
        self.file = Some(file);
        self.encoder = Some(encoder);
        result.map_err(|e| match e {
            PieceError::Read(e) => read_error(self.path, &e),
            PieceError::Compress(e) => {
                CommandError::new(format!("cannot compress {}: {e}", self.path))
            }
        })
    }
}

enum PieceError {
    Read(std::io::Error),
    Compress(hgframe_stream::EncodingError),
}

/// Reads up to `piece_len` bytes of `file` and compresses them as one unit, flushing
/// every `flush` bytes. Nothing read: an empty piece.
fn compress_piece(
    file: &mut std::fs::File,
    encoder: &mut dyn ContentEncoder,
    flush: usize,
    piece_len: usize,
) -> Result<Piece, PieceError> {
    let raw = read_full(file, piece_len).map_err(PieceError::Read)?;
    let filled = raw.len();
    let mut compressed = Vec::with_capacity(encoder.max_encoded_len(filled));
    for chunk in raw.chunks(flush) {
        encoder
            .encode_flush(chunk, &mut compressed)
            .map_err(PieceError::Compress)?;
    }
    encoder
        .end_unit(&mut compressed)
        .map_err(PieceError::Compress)?;
    // A cached piece holds what it counts, not the worst case reserved for it.
    compressed.shrink_to_fit();
    Ok(Piece {
        compressed: Bytes::from(compressed),
        raw_len: filled as u64,
    })
}
