//! `deflate`: raw deflate (RFC 1951) with one context per stream, sync-flushed at every
//! flush, each frame's 4-byte flush tail stripped (as WebSocket's permessage-deflate
//! does, RFC 7692).
//!
//! A sync flush ends the current deflate block and appends an empty stored block, whose
//! last four bytes are always `00 00 ff ff`. Every encoded frame ends with a flush; the
//! sender leaves those four bytes out of the frame ([`Profile::stripped_tail`]) and the
//! receiver appends them to every payload before inflating. Each payload thus ends where
//! everything before it inflates, and the history (32 KiB window) carries over to the
//! next frame, response and request. On tiny messages this costs less than a zstd flush
//! (docs/streams.md, "deflate").
//!
//! The deflate stream is never finished: a final block (`BFINAL`) from the peer is
//! corrupt data. The compressor is zlib-rs (a Rust port of zlib-ng, through flate2):
//! unlike miniz_oxide, it picks fixed-Huffman blocks when those are smallest, which is
//! what makes a message of 140 bytes cost 23 bytes rather than 36 (docs/streams.md).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{ContentDecoder, ContentEncoder, EncodingError, EncodingSettings, Profile};

/// The name of the `deflate` profile.
pub const DEFLATE: &str = "deflate";

/// The lowest level (stored blocks only).
const MIN_LEVEL: i32 = 0;

/// The highest level.
const MAX_LEVEL: i32 = 9;

/// What a sync flush always ends with (an empty stored block's `LEN` and `NLEN`): the
/// sender leaves it out at the end of each frame, the receiver puts it back.
pub const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The encoder cuts a flush's input into pieces of at most this many bytes, each ending
/// a deflate block. Why: zlib falls back to a stored block (at most 5 bytes over the
/// input) only for a block still in its 32 KiB window, and cuts blocks on its own after
/// 16,383 symbols; pieces of 16 KiB make every piece at most two blocks within the
/// window, which makes [`ContentEncoder::max_encoded_len`] hold for any data.
const PIECE_LEN: usize = 16 * 1024;

/// The level at which zlib-rs uses its "quick" strategy (fixed-Huffman blocks only).
const QUICK_LEVEL: i32 = 1;

/// Most bytes a block encodes to beyond its data: a stored block (a 3-bit header padded
/// to a byte, `LEN`, `NLEN`). zlib writes the smallest of a stored, a fixed-Huffman and
/// a dynamic-Huffman block, so no block is larger (except at level 1, see
/// [`DeflateEncoder`]'s `max_encoded_len`).
const BLOCK_OVERHEAD: usize = 5;

/// A sync flush: an empty stored block, 5 bytes.
const SYNC_OVERHEAD: usize = 5;

/// zlib (memLevel 8) ends a block after this many symbols (literals or matches).
const BLOCK_SYMBOLS: usize = 16_383;

/// Smallest growth of a decoder's output buffer.
const MIN_OUTPUT_STEP: usize = 16 * 1024;

/// The `deflate` profile.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deflate;

impl Profile for Deflate {
    fn name(&self) -> &str {
        DEFLATE
    }

    fn encoder(
        &self,
        settings: &EncodingSettings,
    ) -> Result<Box<dyn ContentEncoder>, EncodingError> {
        Ok(Box::new(DeflateEncoder::new(settings.level)?))
    }

    fn decoder(&self, parameters: &[u8]) -> Result<Box<dyn ContentDecoder>, EncodingError> {
        if !parameters.is_empty() {
            return Err(EncodingError::UnexpectedParameters {
                profile: DEFLATE.into(),
                len: parameters.len(),
            });
        }
        Ok(Box::new(DeflateDecoder::new()))
    }

    fn stripped_tail(&self) -> &'static [u8] {
        &SYNC_TAIL
    }
}

/// A `deflate` compression context: raw deflate, sync-flushed. Each flush ends with
/// [`SYNC_TAIL`], which the stream leaves out at the end of a frame.
pub struct DeflateEncoder {
    ctx: Compress,
    level: i32,
}

impl std::fmt::Debug for DeflateEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflateEncoder")
            .field("level", &self.level)
            .finish()
    }
}

impl DeflateEncoder {
    /// A context at `level`, 0 (stored) to 9 (smallest).
    pub fn new(level: i32) -> Result<Self, EncodingError> {
        Ok(Self {
            ctx: Compress::new(compression(level)?, false),
            level,
        })
    }

    /// Compresses all of `piece` and sync-flushes, appending to `out`.
    fn piece(&mut self, mut piece: &[u8], out: &mut Vec<u8>) -> Result<(), EncodingError> {
        loop {
            if out.len() == out.capacity() {
                out.reserve(
                    (SYNC_OVERHEAD + 2 * BLOCK_OVERHEAD)
                        .max(piece.len())
                        .saturating_add(1),
                );
            }
            let (in_before, out_before) = (self.ctx.total_in(), out.len());
            self.ctx
                .compress_vec(piece, out, FlushCompress::Sync)
                .map_err(|e| EncodingError::Compressor {
                    message: e.to_string(),
                })?;
            let consumed = usize::try_from(self.ctx.total_in() - in_before).unwrap_or(usize::MAX);
            piece = piece.get(consumed..).unwrap_or_default();
            let output_full = out.len() == out.capacity();
            if piece.is_empty() && !output_full {
                return Ok(()); // all taken, and the flush had room to finish
            }
            if consumed == 0 && out.len() == out_before && !output_full {
                return Err(EncodingError::Compressor {
                    message: "the compressor made no progress".into(),
                });
            }
        }
    }
}

impl ContentEncoder for DeflateEncoder {
    fn encode_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), EncodingError> {
        let start = out.len();
        // The bound and one byte: a flush that fills the buffer exactly would look
        // unfinished, and be flushed again (an extra empty block).
        let want = self.max_encoded_len(input.len()).saturating_add(1);
        if out.capacity() - out.len() < want {
            out.reserve(want);
        }
        if input.is_empty() {
            // zlib emits nothing for a sync flush with no new input: the empty stored
            // block it would have written (every flush leaves the output byte-aligned).
            out.extend_from_slice(&[0x00]);
            out.extend_from_slice(&SYNC_TAIL);
            return Ok(());
        }
        for piece in input.chunks(PIECE_LEN) {
            self.piece(piece, out)?;
        }
        // The stream strips the tail of a frame's last flush and the receiver restores
        // it: a flush that ended otherwise would not decode.
        let end = out.len().saturating_sub(SYNC_TAIL.len());
        if end < start || out.get(end..) != Some(&SYNC_TAIL[..]) {
            return Err(EncodingError::Compressor {
                message: "a sync flush did not end with 00 00 ff ff".into(),
            });
        }
        Ok(())
    }

    /// The input goes in pieces of 16 KiB; a piece of `p` bytes is at most
    /// `1 + p / 16383` blocks (zlib ends a block after 16,383 symbols) of at most 5
    /// bytes over their data, plus a 5-byte sync flush: `p + 10` below 16,383 bytes,
    /// `p + 15` from there. One byte encodes to at most 11, 7 once the tail is
    /// stripped, which fits the smallest frame a deflate stream takes (8 bytes, its
    /// `stream-settings`). Level 1 adds `n / 8`: it writes fixed-Huffman blocks only
    /// (zlib-ng's "quick" strategy), never stored ones, so a byte may take 9 bits.
    fn max_encoded_len(&self, input_len: usize) -> usize {
        let piece =
            |p: usize| p.saturating_add(SYNC_OVERHEAD + BLOCK_OVERHEAD * (1 + p / BLOCK_SYMBOLS));
        let full = input_len / PIECE_LEN;
        let rest = input_len % PIECE_LEN;
        let mut len = full.saturating_mul(piece(PIECE_LEN));
        if rest > 0 || input_len == 0 {
            len = len.saturating_add(piece(rest));
        }
        if self.level == QUICK_LEVEL {
            len = len.saturating_add(input_len.div_ceil(8));
        }
        len
    }

    /// A different level starts a new compressor: later data does not refer to what
    /// came before (every flush ends on a byte boundary, so the decoder reads on).
    /// flate2's `set_level` (zlib's `deflateParams`) fails once data went through.
    fn set_level(&mut self, level: i32) -> Result<(), EncodingError> {
        let compression = compression(level)?;
        if level != self.level {
            self.ctx = Compress::new(compression, false);
            self.level = level;
        }
        Ok(())
    }

    fn level(&self) -> i32 {
        self.level
    }

    /// Forgets the history (nothing is written: every flush already ends where new
    /// deflate blocks may start).
    fn end_unit(&mut self, _out: &mut Vec<u8>) -> Result<(), EncodingError> {
        self.ctx.reset();
        Ok(())
    }
}

/// A `deflate` decompression context (32 KiB window), output capped per call.
pub struct DeflateDecoder {
    ctx: Decompress,
    /// Bytes the previous payload decoded to: the first output reservation for the next.
    hint: usize,
}

impl std::fmt::Debug for DeflateDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflateDecoder")
            .field("hint", &self.hint)
            .finish()
    }
}

impl Default for DeflateDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl DeflateDecoder {
    /// A context for a new stream.
    pub fn new() -> Self {
        Self {
            ctx: Decompress::new(false),
            hint: 0,
        }
    }

    /// Inflates all of `src` into `out`, growing it in steps up to `limit + 1` bytes.
    fn run(
        &mut self,
        mut src: &[u8],
        out: &mut Vec<u8>,
        (start, limit, max_out): (usize, usize, usize),
        first_step: &mut usize,
        flush: FlushDecompress,
    ) -> Result<(), EncodingError> {
        // The output may grow to one byte past the cap: reaching it proves a bomb
        // without ever reserving what the input claims.
        let hard_cap = limit.saturating_add(1);
        loop {
            if out.len() == out.capacity() {
                let grown = out.len() - start;
                let step = (*first_step).max(grown).max(MIN_OUTPUT_STEP);
                *first_step = 0;
                let new_cap = out.len().saturating_add(step).min(hard_cap);
                out.reserve_exact(new_cap.saturating_sub(out.len()));
            }
            let (in_before, out_before) = (self.ctx.total_in(), out.len());
            let status =
                self.ctx
                    .decompress_vec(src, out, flush)
                    .map_err(|e| EncodingError::Corrupt {
                        message: format!("deflate: {e}"),
                    })?;
            if out.len() > limit {
                return Err(EncodingError::TooLarge { limit: max_out });
            }
            if status == Status::StreamEnd {
                // The sender never finishes the stream; its end cannot take the tail.
                return Err(EncodingError::Corrupt {
                    message: "deflate: a final block on a stream that must stay open".into(),
                });
            }
            let consumed = usize::try_from(self.ctx.total_in() - in_before).unwrap_or(usize::MAX);
            src = src.get(consumed..).unwrap_or_default();
            let output_full = out.len() == out.capacity();
            if src.is_empty() && !output_full {
                return Ok(()); // all input taken, and nothing more to write
            }
            if consumed == 0 && out.len() == out_before && !output_full {
                return Err(EncodingError::Corrupt {
                    message: "deflate: the decoder made no progress".into(),
                });
            }
        }
    }
}

impl ContentDecoder for DeflateDecoder {
    fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<(), EncodingError> {
        let start = out.len();
        let limit = start.saturating_add(max_out);
        // As much as the previous payload gave, plus one byte: a buffer that ends up
        // exactly full cannot tell "done" from "more to come", and would be grown.
        let mut first_step = self
            .hint
            .max(input.len().saturating_mul(4))
            .saturating_add(1);
        let bounds = (start, limit, max_out);
        self.run(input, out, bounds, &mut first_step, FlushDecompress::None)?;
        // The stripped tail ends the sync flush: everything before it comes out now.
        self.run(
            &SYNC_TAIL,
            out,
            bounds,
            &mut first_step,
            FlushDecompress::Sync,
        )?;
        self.hint = out.len() - start;
        Ok(())
    }
}

fn compression(level: i32) -> Result<Compression, EncodingError> {
    match u32::try_from(level) {
        Ok(l) if (MIN_LEVEL..=MAX_LEVEL).contains(&level) => Ok(Compression::new(l)),
        _ => Err(EncodingError::LevelOutOfRange {
            level,
            min: MIN_LEVEL,
            max: MAX_LEVEL,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(format!("line {i} of some text, {}\n", i * 7 % 13).as_bytes());
            i += 1;
        }
        v.truncate(n);
        v
    }

    /// One flush as a frame carries it: without its tail.
    fn flush(enc: &mut DeflateEncoder, input: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        enc.encode_flush(input, &mut wire).unwrap();
        assert!(wire.ends_with(&SYNC_TAIL));
        wire.truncate(wire.len() - SYNC_TAIL.len());
        wire
    }

    /// Bytes no compressor can shrink (xorshift).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn each_flush_decodes_on_arrival_and_history_carries_over() {
        let mut enc = DeflateEncoder::new(6).unwrap();
        let mut dec = DeflateDecoder::new();
        let msg = text(2000);
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let wire = flush(&mut enc, &msg);
            sizes.push(wire.len());
            let mut out = Vec::new();
            dec.decode(&wire, &mut out, 1 << 20).unwrap();
            assert_eq!(out, msg);
        }
        // The repeats are found in the history: far smaller than the first.
        assert!(sizes[1] * 5 < sizes[0], "{sizes:?}");
    }

    #[test]
    fn output_never_exceeds_the_bound() {
        // Incompressible data (stored blocks), 9-bit literals (static blocks under 48
        // bytes), and text, at every level, every small size, and across piece edges,
        // after some history.
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for n in (0..=80).chain([
            BLOCK_SYMBOLS - 1,
            BLOCK_SYMBOLS,
            PIECE_LEN,
            PIECE_LEN + 1,
            2 * PIECE_LEN + BLOCK_SYMBOLS,
            32_363,
            32_768,
            70_000,
        ]) {
            inputs.push(noise(n, n as u64 + 7));
            inputs.push(vec![0xff; n]);
            inputs.push((0..n).map(|i| 0x90 + (i % 112) as u8).collect());
            inputs.push(text(n));
        }
        for level in MIN_LEVEL..=MAX_LEVEL {
            let mut enc = DeflateEncoder::new(level).unwrap();
            let mut dec = DeflateDecoder::new();
            let history = flush(&mut enc, &text(5000));
            dec.decode(&history, &mut Vec::new(), 1 << 20).unwrap();
            for input in &inputs {
                let mut wire = Vec::new();
                enc.encode_flush(input, &mut wire).unwrap();
                assert!(
                    wire.len() <= enc.max_encoded_len(input.len()),
                    "level {level}: {} bytes gave {}, bound {}",
                    input.len(),
                    wire.len(),
                    enc.max_encoded_len(input.len())
                );
                wire.truncate(wire.len() - SYNC_TAIL.len());
                let mut out = Vec::new();
                dec.decode(&wire, &mut out, 1 << 20).unwrap();
                assert_eq!(&out, input);
            }
        }
        let enc = DeflateEncoder::new(3).unwrap();
        assert_eq!(enc.max_encoded_len(1), 11);
        assert_eq!(enc.max_encoded_len(16_382), 16_392);
        assert_eq!(enc.max_encoded_len(16_383), 16_398);
        assert_eq!(enc.max_encoded_len(16_385), 16_410);
    }

    #[test]
    fn levels_are_validated_and_a_change_still_decodes() {
        for bad in [-1, 10, 22, i32::MIN] {
            assert!(matches!(
                DeflateEncoder::new(bad),
                Err(EncodingError::LevelOutOfRange { min: 0, max: 9, .. })
            ));
        }
        let mut enc = DeflateEncoder::new(1).unwrap();
        let mut dec = DeflateDecoder::new();
        let mut wire = Vec::new();
        enc.encode_flush(&text(5000), &mut wire).unwrap();
        enc.set_level(9).unwrap();
        assert_eq!(enc.level(), 9);
        enc.encode_flush(&text(7000), &mut wire).unwrap();
        assert!(enc.set_level(10).is_err());
        assert_eq!(enc.level(), 9);
        enc.set_level(0).unwrap();
        enc.encode_flush(&text(100), &mut wire).unwrap();
        enc.end_unit(&mut wire).unwrap();
        enc.encode_flush(&text(300), &mut wire).unwrap();
        // One frame of several flushes: only the last tail is left out.
        wire.truncate(wire.len() - SYNC_TAIL.len());
        let mut out = Vec::new();
        dec.decode(&wire, &mut out, 1 << 20).unwrap();
        let mut want = text(5000);
        want.extend(text(7000));
        want.extend(text(100));
        want.extend(text(300));
        assert_eq!(out, want);
    }

    #[test]
    fn bomb_is_refused_without_allocating_its_size() {
        let mut enc = DeflateEncoder::new(9).unwrap();
        let bomb = flush(&mut enc, &vec![0u8; 8 << 20]);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let mut dec = DeflateDecoder::new();
        let mut out = Vec::new();
        assert!(matches!(
            dec.decode(&bomb, &mut out, 1 << 20),
            Err(EncodingError::TooLarge { limit: 1_048_576 })
        ));
        assert!(out.capacity() <= (1 << 20) + 1 + MIN_OUTPUT_STEP);
    }

    #[test]
    fn corrupt_and_final_blocks_are_errors() {
        let mut out = Vec::new();
        // Block type 3 is reserved.
        assert!(DeflateDecoder::new()
            .decode(&[0x07], &mut out, 1000)
            .is_err());
        // A whole finished stream (final block): not a stream that stays open.
        let mut fin = Compress::new(Compression::new(6), false);
        let mut whole = Vec::with_capacity(100);
        fin.compress_vec(b"hello", &mut whole, FlushCompress::Finish)
            .unwrap();
        assert!(matches!(
            DeflateDecoder::new().decode(&whole, &mut out, 1000),
            Err(EncodingError::Corrupt { .. })
        ));
        assert!(Deflate.decoder(b"x").is_err());
        assert!(Deflate.check_precompressed(b"x").is_err());
    }

    #[test]
    fn a_payload_exactly_at_the_cap_decodes_and_one_more_byte_does_not() {
        let mut enc = DeflateEncoder::new(6).unwrap();
        let wire = flush(&mut enc, &text(4096));
        let mut out = Vec::new();
        DeflateDecoder::new().decode(&wire, &mut out, 4096).unwrap();
        assert_eq!(out, text(4096));
        assert!(matches!(
            DeflateDecoder::new().decode(&wire, &mut Vec::new(), 4095),
            Err(EncodingError::TooLarge { limit: 4095 })
        ));
    }
}
