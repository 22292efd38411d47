//! `zstd-8mb`: Zstandard (RFC 8878) with a window of at most 8 MiB.
//!
//! The encoder keeps one compression context for the stream's whole life and flushes
//! (`ZSTD_e_flush`) at every frame boundary: the zstd frame stays open and its history
//! carries over to the next hgframe frame, the next response, the next request. The
//! receiver feeds the stream's payloads in order to one decompression context.
//!
//! Two things end the zstd frame (`ZSTD_e_end`) and so drop the history: a level change
//! (single-threaded zstd applies a new level only at a frame start) and pre-compressed
//! data passed through ([`ContentEncoder::end_unit`]). The decoder does not notice:
//! concatenated zstd frames are one valid zstd stream.

use std::sync::Arc;

use zstd::stream::raw::{CParameter, DParameter, InBuffer, OutBuffer};
use zstd::zstd_safe::{self, zstd_sys::ZSTD_EndDirective};

use super::pool::{PooledCCtx, PooledDCtx, ZstdContextPool};
use super::{Boundary, ContentDecoder, ContentEncoder, EncodingError, EncodingSettings, Profile};

/// The name of the `zstd-8mb` profile.
pub const ZSTD_8MB: &str = "zstd-8mb";

/// log2 of the largest window (8 MiB) the profile allows, for the encoder and decoder.
pub const WINDOW_LOG_MAX: u32 = 23;

/// zstd's levels above this one use a window over 8 MiB by default; they are capped.
const LAST_LEVEL_WITHIN_WINDOW: i32 = 19;

/// The most data one zstd block holds.
const BLOCK_SIZE_MAX: usize = 128 * 1024;

/// A block header.
const BLOCK_HEADER_LEN: usize = 3;

/// The largest frame header: magic, descriptor, window, 4-byte dictionary id, 8-byte
/// content size.
const FRAME_HEADER_MAX: usize = 18;

/// Smallest growth of a decoder's output buffer.
const MIN_OUTPUT_STEP: usize = 16 * 1024;

const ZSTD_MAGIC: u32 = 0xFD2F_B528;
const SKIPPABLE_MAGIC_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;

/// The `zstd-8mb` profile. Its encoders and decoders take their zstd contexts from a
/// [`ZstdContextPool`] and give them back when dropped.
#[derive(Debug, Clone)]
pub struct Zstd8Mb {
    pool: Arc<ZstdContextPool>,
}

impl Default for Zstd8Mb {
    /// The profile on the process-wide pool ([`ZstdContextPool::shared`]).
    fn default() -> Self {
        Self::with_pool(ZstdContextPool::shared())
    }
}

impl Zstd8Mb {
    /// The profile on `pool` (for instance one with other limits, or `max_idle` 0 for
    /// no reuse).
    pub fn with_pool(pool: Arc<ZstdContextPool>) -> Self {
        Self { pool }
    }

    /// The pool the contexts come from.
    pub fn pool(&self) -> &Arc<ZstdContextPool> {
        &self.pool
    }
}

impl Profile for Zstd8Mb {
    fn name(&self) -> &str {
        ZSTD_8MB
    }

    fn encoder(
        &self,
        settings: &EncodingSettings,
    ) -> Result<Box<dyn ContentEncoder>, EncodingError> {
        Ok(Box::new(ZstdEncoder::from_pool(
            &self.pool,
            settings.level,
        )?))
    }

    fn decoder(&self, parameters: &[u8]) -> Result<Box<dyn ContentDecoder>, EncodingError> {
        if !parameters.is_empty() {
            return Err(EncodingError::UnexpectedParameters {
                profile: ZSTD_8MB.into(),
                len: parameters.len(),
            });
        }
        Ok(Box::new(ZstdDecoder::from_pool(&self.pool)?))
    }

    /// Accepts a sequence of complete zstd frames (skippable frames allowed) whose
    /// windows fit in 8 MiB and that need no dictionary.
    fn check_precompressed(&self, data: &[u8]) -> Result<(), EncodingError> {
        check_frames(data)
    }

    /// After every block (and every skippable frame): a zstd decoder outputs a block's
    /// data as soon as the whole block is in.
    fn precompressed_boundaries(
        &self,
        data: &[u8],
        boundaries: &mut Vec<Boundary>,
    ) -> Result<bool, EncodingError> {
        frame_boundaries(data, boundaries)?;
        Ok(true)
    }
}

/// A `zstd-8mb` compression context, on loan from a [`ZstdContextPool`] until dropped.
pub struct ZstdEncoder {
    ctx: PooledCCtx,
    /// The level asked for.
    level: i32,
    /// The level the context compresses with; a different `level` is applied when the
    /// next zstd frame starts.
    applied_level: i32,
    /// Whether a zstd frame is open (input went in since the last frame end).
    in_frame: bool,
}

impl std::fmt::Debug for ZstdEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdEncoder")
            .field("level", &self.level)
            .field("applied_level", &self.applied_level)
            .field("in_frame", &self.in_frame)
            .finish()
    }
}

impl ZstdEncoder {
    /// A context at `level` (window at most 8 MiB whatever the level), from the
    /// process-wide pool.
    pub fn new(level: i32) -> Result<Self, EncodingError> {
        Self::from_pool(&ZstdContextPool::shared(), level)
    }

    /// A context at `level` from `pool` (reset when it was given back; the level and
    /// window are applied here).
    pub fn from_pool(pool: &Arc<ZstdContextPool>, level: i32) -> Result<Self, EncodingError> {
        check_level(level)?;
        let ctx = PooledCCtx::take(pool)?;
        let mut encoder = Self {
            ctx,
            level,
            applied_level: level,
            in_frame: false,
        };
        encoder.apply_level(level)?;
        Ok(encoder)
    }

    /// Sets the level, and the window: levels whose default window exceeds the
    /// profile's get the profile's maximum; the others keep zstd's own choice (so the
    /// output equals plain zstd's at that level). Only between zstd frames.
    fn apply_level(&mut self, level: i32) -> Result<(), EncodingError> {
        let window_log = if level > LAST_LEVEL_WITHIN_WINDOW {
            WINDOW_LOG_MAX
        } else {
            0 // zstd's default for the level
        };
        let ctx = self.ctx.get()?;
        ctx.set_parameter(CParameter::CompressionLevel(level))
            .map_err(compressor)?;
        ctx.set_parameter(CParameter::WindowLog(window_log))
            .map_err(compressor)?;
        self.applied_level = level;
        Ok(())
    }

    /// Before new input: a level change ends the open frame (single-threaded zstd reads
    /// its level only when a frame starts) and takes effect.
    fn prepare(&mut self, out: &mut Vec<u8>) -> Result<(), EncodingError> {
        if self.level != self.applied_level {
            self.end_frame(out)?;
            self.apply_level(self.level)?;
        }
        Ok(())
    }

    /// Ends the open zstd frame, if any, appending its epilogue.
    fn end_frame(&mut self, out: &mut Vec<u8>) -> Result<(), EncodingError> {
        if !self.in_frame {
            return Ok(());
        }
        loop {
            reserve_some(out, 64);
            let pos = out.len();
            let left = self
                .ctx
                .get()?
                .end_stream(&mut OutBuffer::around_pos(out, pos))
                .map_err(compressor)?;
            if left == 0 {
                break;
            }
        }
        self.in_frame = false;
        Ok(())
    }
}

impl ContentEncoder for ZstdEncoder {
    fn encode_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), EncodingError> {
        self.prepare(out)?;
        reserve_some(out, self.max_encoded_len(input.len()));
        let mut src = InBuffer::around(input);
        while src.pos() < input.len() {
            // Room for the worst case is reserved above; this only keeps zstd going if
            // it ever needed more. (A 16 KiB step here cost a reallocation per small
            // message.)
            reserve_some(out, 64);
            let pos = out.len();
            self.ctx
                .get()?
                .compress_stream(&mut OutBuffer::around_pos(out, pos), &mut src)
                .map_err(compressor)?;
        }
        loop {
            reserve_some(out, 64);
            let pos = out.len();
            let left = self
                .ctx
                .get()?
                .flush_stream(&mut OutBuffer::around_pos(out, pos))
                .map_err(compressor)?;
            if left == 0 {
                break;
            }
        }
        self.in_frame = true;
        Ok(())
    }

    /// A bound that holds for every input, incompressible or not: what one flush can
    /// append is the end of the previous zstd frame on a level change (a 3-byte empty
    /// last block), a frame header (at most 18 bytes), and blocks whose contents are
    /// never larger than their raw data (zstd stores a block raw when compressing does
    /// not pay), each with a 3-byte header. zstd splits a flush of up to 128 KiB into
    /// at most two blocks before compressing (pre-splitting), and, at the levels that
    /// split blocks after finding sequences, into parts of at least 150 sequences (450
    /// bytes or more), and then only where that makes the output smaller; the bound
    /// allows one block per 256 bytes, plus two.
    fn max_encoded_len(&self, input_len: usize) -> usize {
        flush_bound(input_len)
    }

    fn set_level(&mut self, level: i32) -> Result<(), EncodingError> {
        check_level(level)?;
        self.level = level;
        Ok(())
    }

    fn level(&self) -> i32 {
        self.level
    }

    /// One zstd frame for the whole input, compressed in a single pass: zstd then reads
    /// the input where it lies instead of copying it into its ring buffer (the streaming
    /// path), which saves about a tenth of the time. The frame's blocks (at most 128 KiB
    /// of data each) are the boundaries. The open frame is ended first, so the input is
    /// compressed without the stream's earlier history, and later input starts anew.
    fn encode_one_pass(
        &mut self,
        input: &[u8],
        max_decoded_per_frame: usize,
        out: &mut Vec<u8>,
        boundaries: &mut Vec<Boundary>,
    ) -> Result<bool, EncodingError> {
        if max_decoded_per_frame < BLOCK_SIZE_MAX || input.is_empty() {
            return Ok(false);
        }
        let base = out.len();
        self.end_frame(out)?;
        if self.level != self.applied_level {
            self.apply_level(self.level)?;
        }
        let frame_start = out.len();
        // With room for the worst case, zstd compresses straight from the input
        // (ZSTD_e_end on a fresh frame with enough output).
        out.reserve(
            zstd_safe::compress_bound(input.len()).max(self.max_encoded_len(input.len())) + 32,
        );
        let mut src = InBuffer::around(input);
        loop {
            reserve_some(out, MIN_OUTPUT_STEP);
            let pos = out.len();
            let left = self
                .ctx
                .get()?
                .compress_stream2(
                    &mut OutBuffer::around_pos(out, pos),
                    &mut src,
                    ZSTD_EndDirective::ZSTD_e_end,
                )
                .map_err(compressor)?;
            if left == 0 {
                break;
            }
        }
        let frame = out.get(frame_start..).unwrap_or_default();
        let blocks_start = frame_start - base + frame_header_len(frame)?;
        let mut at = blocks_start;
        let mut decoded = 0usize;
        for block in Blocks::new(out.get(base + at..).unwrap_or_default()) {
            let block = block?;
            at += block.encoded_len;
            decoded += block.decoded_max.min(input.len());
            boundaries.push(Boundary {
                encoded_end: at,
                decoded_max: decoded,
            });
        }
        if at != out.len() - base {
            return Err(EncodingError::Compressor {
                message: "zstd output ends between blocks".into(),
            });
        }
        Ok(true)
    }

    fn end_unit(&mut self, out: &mut Vec<u8>) -> Result<(), EncodingError> {
        self.end_frame(out)
    }
}

/// See [`ZstdEncoder`]'s `max_encoded_len`.
fn flush_bound(input_len: usize) -> usize {
    let blocks = input_len / 256 + 2;
    input_len
        .saturating_add(blocks.saturating_mul(BLOCK_HEADER_LEN))
        .saturating_add(FRAME_HEADER_MAX + BLOCK_HEADER_LEN)
}

/// The places where a frame may end in `data`, whole zstd frames (checked by
/// [`check_frames`]): after each block (a frame's header goes with its first block, its
/// checksum with its last), and after each skippable frame. Offsets relative to `data`.
fn frame_boundaries(mut data: &[u8], boundaries: &mut Vec<Boundary>) -> Result<(), EncodingError> {
    let bad = |reason: &str| EncodingError::Precompressed {
        reason: reason.into(),
    };
    let (mut at, mut decoded) = (0usize, 0usize);
    while !data.is_empty() {
        let Some(&[m0, m1, m2, m3]) = data.get(..4) else {
            return Err(bad("truncated zstd frame"));
        };
        let magic = u32::from_le_bytes([m0, m1, m2, m3]);
        let frame_len = if magic & SKIPPABLE_MAGIC_MASK == SKIPPABLE_MAGIC {
            let Some(&[s0, s1, s2, s3]) = data.get(4..8) else {
                return Err(bad("truncated skippable frame"));
            };
            8usize.saturating_add(u32::from_le_bytes([s0, s1, s2, s3]) as usize)
        } else {
            let (header, checksum) = header_and_checksum_len(data)?;
            let mut len = header;
            let blocks = data
                .get(header..)
                .ok_or_else(|| bad("truncated zstd frame"))?;
            for block in Blocks::new(blocks) {
                let block = block.map_err(|_| bad("malformed zstd block"))?;
                len += block.encoded_len;
                decoded = decoded.saturating_add(block.decoded_max);
                boundaries.push(Boundary {
                    encoded_end: at + len,
                    decoded_max: decoded,
                });
            }
            if checksum > 0 {
                len += checksum;
                if let Some(last) = boundaries.last_mut() {
                    last.encoded_end = at + len;
                }
            }
            len
        };
        if magic & SKIPPABLE_MAGIC_MASK == SKIPPABLE_MAGIC {
            boundaries.push(Boundary {
                encoded_end: at.saturating_add(frame_len),
                decoded_max: decoded,
            });
        }
        data = data
            .get(frame_len..)
            .ok_or_else(|| bad("truncated zstd frame"))?;
        at += frame_len;
    }
    Ok(())
}

/// Lengths of the frame header and of the checksum (0 or 4) of the zstd frame at the
/// start of `frame` (RFC 8878, 3.1.1.1).
fn header_and_checksum_len(frame: &[u8]) -> Result<(usize, usize), EncodingError> {
    let Some(&descriptor) = frame.get(4) else {
        return Err(EncodingError::Precompressed {
            reason: "truncated zstd frame header".into(),
        });
    };
    let checksum = if descriptor & 0x04 != 0 { 4 } else { 0 };
    Ok((descriptor_header_len(descriptor), checksum))
}

/// Length of a frame header with this frame header descriptor.
fn descriptor_header_len(descriptor: u8) -> usize {
    let single_segment = descriptor & 0x20 != 0;
    let window_descriptor = usize::from(!single_segment);
    let dictionary_id = match descriptor & 0x03 {
        0 => 0,
        1 => 1,
        2 => 2,
        _ => 4,
    };
    let content_size = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    4 + 1 + window_descriptor + dictionary_id + content_size
}

/// One block of a zstd frame (RFC 8878, 3.1.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    /// Header and content.
    encoded_len: usize,
    /// At most this many bytes decode from it.
    decoded_max: usize,
}

/// The blocks of a frame, from the first block header to the last block.
struct Blocks<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Blocks<'a> {
    fn new(blocks: &'a [u8]) -> Self {
        Self {
            rest: blocks,
            done: false,
        }
    }
}

impl Iterator for Blocks<'_> {
    type Item = Result<Block, EncodingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let bad = || {
            Some(Err(EncodingError::Compressor {
                message: "malformed zstd block".into(),
            }))
        };
        let Some(&[b0, b1, b2]) = self.rest.get(..3) else {
            self.done = true;
            return bad();
        };
        let header = u32::from_le_bytes([b0, b1, b2, 0]);
        let last = header & 1 == 1;
        let size = (header >> 3) as usize;
        let (content, decoded_max) = match (header >> 1) & 3 {
            0 => (size, size),           // raw
            1 => (1, size),              // RLE: one byte, repeated
            2 => (size, BLOCK_SIZE_MAX), // compressed
            _ => {
                self.done = true;
                return bad();
            }
        };
        let encoded_len = 3 + content;
        let Some(rest) = self.rest.get(encoded_len..) else {
            self.done = true;
            return bad();
        };
        self.rest = rest;
        self.done = last;
        Some(Ok(Block {
            encoded_len,
            decoded_max,
        }))
    }
}

/// Length of the frame header at the start of `frame`, a frame without checksum made
/// by [`ZstdEncoder`] (RFC 8878, 3.1.1.1).
fn frame_header_len(frame: &[u8]) -> Result<usize, EncodingError> {
    let Some(&descriptor) = frame.get(4) else {
        return Err(EncodingError::Compressor {
            message: "truncated zstd frame header".into(),
        });
    };
    if descriptor & 0x04 != 0 {
        return Err(EncodingError::Compressor {
            message: "unexpected zstd checksum".into(),
        });
    }
    Ok(descriptor_header_len(descriptor))
}

/// A `zstd-8mb` decompression context: window at most 8 MiB, output capped per call. On
/// loan from a [`ZstdContextPool`] until dropped.
pub struct ZstdDecoder {
    ctx: PooledDCtx,
    /// Bytes the previous payload decoded to: the first output reservation for the next.
    hint: usize,
}

impl std::fmt::Debug for ZstdDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdDecoder")
            .field("hint", &self.hint)
            .finish()
    }
}

impl ZstdDecoder {
    /// A context that refuses windows over 8 MiB, from the process-wide pool.
    pub fn new() -> Result<Self, EncodingError> {
        Self::from_pool(&ZstdContextPool::shared())
    }

    /// A context that refuses windows over 8 MiB, from `pool` (reset when it was given
    /// back; the window limit is applied here).
    pub fn from_pool(pool: &Arc<ZstdContextPool>) -> Result<Self, EncodingError> {
        let mut ctx = PooledDCtx::take(pool)?;
        ctx.get()?
            .set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))
            .map_err(compressor)?;
        Ok(Self { ctx, hint: 0 })
    }
}

impl ContentDecoder for ZstdDecoder {
    fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<(), EncodingError> {
        let start = out.len();
        let limit = start.saturating_add(max_out);
        // The output may grow to one byte past the cap: reaching it proves a bomb
        // without ever reserving what the input claims.
        let hard_cap = limit.saturating_add(1);
        let mut src = InBuffer::around(input);
        // As much as the previous payload gave, plus one byte: a buffer that ends up
        // exactly full cannot tell "done" from "more to come", and would be grown.
        let mut first_step = self
            .hint
            .max(input.len().saturating_mul(4))
            .saturating_add(1);
        loop {
            if out.len() == out.capacity() {
                let grown = out.len() - start;
                // The first step is what the input is likely to give (a small message
                // gets a small buffer); then at least MIN_OUTPUT_STEP, doubling.
                let step = if first_step > 0 {
                    first_step
                } else {
                    grown.max(MIN_OUTPUT_STEP)
                };
                first_step = 0;
                let new_cap = out.len().saturating_add(step).min(hard_cap);
                out.reserve_exact(new_cap.saturating_sub(out.len()));
            }
            let before = (src.pos(), out.len());
            let pos = out.len();
            self.ctx
                .get()?
                .decompress_stream(&mut OutBuffer::around_pos(out, pos), &mut src)
                .map_err(|code| EncodingError::Corrupt {
                    message: zstd_safe::get_error_name(code).to_owned(),
                })?;
            if out.len() > limit {
                return Err(EncodingError::TooLarge { limit: max_out });
            }
            let output_full = out.len() == out.capacity();
            if src.pos() == input.len() && !output_full {
                break; // all input taken, and the decoder had nothing more to write
            }
            if (src.pos(), out.len()) == before && !output_full {
                return Err(EncodingError::Corrupt {
                    message: "the decoder made no progress".into(),
                });
            }
        }
        self.hint = out.len() - start;
        Ok(())
    }
}

fn check_level(level: i32) -> Result<(), EncodingError> {
    let (min, max) = (zstd_safe::min_c_level(), zstd_safe::max_c_level());
    if !(min..=max).contains(&level) {
        return Err(EncodingError::LevelOutOfRange { level, min, max });
    }
    Ok(())
}

fn compressor(code: usize) -> EncodingError {
    EncodingError::Compressor {
        message: zstd_safe::get_error_name(code).to_owned(),
    }
}

/// Makes sure `out` has room for at least `n` more bytes.
fn reserve_some(out: &mut Vec<u8>, n: usize) {
    if out.capacity() - out.len() < n {
        out.reserve(n);
    }
}

/// Checks that `data` is whole zstd frames that a `zstd-8mb` decoder accepts.
fn check_frames(mut data: &[u8]) -> Result<(), EncodingError> {
    let refuse = |reason: String| Err(EncodingError::Precompressed { reason });
    if data.is_empty() {
        return refuse("no zstd frame".into());
    }
    while !data.is_empty() {
        let Some(&[m0, m1, m2, m3]) = data.get(..4) else {
            return refuse("truncated zstd frame".into());
        };
        let magic = u32::from_le_bytes([m0, m1, m2, m3]);
        let frame_len = if magic & SKIPPABLE_MAGIC_MASK == SKIPPABLE_MAGIC {
            let Some(&[s0, s1, s2, s3]) = data.get(4..8) else {
                return refuse("truncated skippable frame".into());
            };
            8 + u32::from_le_bytes([s0, s1, s2, s3]) as usize
        } else if magic == ZSTD_MAGIC {
            check_frame_header(data)?;
            match zstd_safe::find_frame_compressed_size(data) {
                Ok(n) => n,
                Err(code) => {
                    return refuse(format!(
                        "not a whole zstd frame: {}",
                        zstd_safe::get_error_name(code)
                    ))
                }
            }
        } else {
            return refuse(format!("not a zstd frame (magic {magic:#010x})"));
        };
        let Some(rest) = data.get(frame_len..) else {
            return refuse("truncated zstd frame".into());
        };
        data = rest;
    }
    Ok(())
}

/// The window and dictionary of one frame header (RFC 8878, 3.1.1.1).
fn check_frame_header(frame: &[u8]) -> Result<(), EncodingError> {
    let refuse = |reason: String| Err(EncodingError::Precompressed { reason });
    let Some(&descriptor) = frame.get(4) else {
        return refuse("truncated zstd frame header".into());
    };
    if descriptor & 0x03 != 0 {
        return refuse("the frame needs a dictionary".into());
    }
    let single_segment = descriptor & 0x20 != 0;
    let window: u64 = if single_segment {
        // The window is the content size.
        match zstd_safe::get_frame_content_size(frame) {
            Ok(Some(size)) => size,
            _ => return refuse("bad zstd frame header".into()),
        }
    } else {
        let Some(&wd) = frame.get(5) else {
            return refuse("truncated zstd frame header".into());
        };
        let base = 1u64 << (10 + u32::from(wd >> 3));
        base + (base / 8) * u64::from(wd & 0x07)
    };
    if window > 1 << WINDOW_LOG_MAX {
        return refuse(format!(
            "the frame's window of {window} bytes exceeds the profile's 8 MiB"
        ));
    }
    Ok(())
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

    #[test]
    fn each_flush_decodes_on_arrival_and_history_carries_over() {
        let mut enc = ZstdEncoder::new(3).unwrap();
        let mut dec = ZstdDecoder::new().unwrap();
        let msg = text(2000);
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let mut wire = Vec::new();
            enc.encode_flush(&msg, &mut wire).unwrap();
            sizes.push(wire.len());
            let mut out = Vec::new();
            dec.decode(&wire, &mut out, 1 << 20).unwrap();
            assert_eq!(out, msg);
        }
        // The repeats are found in the history: far smaller than the first.
        assert!(sizes[1] * 3 < sizes[0], "{sizes:?}");
        assert!(sizes[2] * 10 < sizes[0], "{sizes:?}");
    }

    #[test]
    fn level_change_ends_the_frame_and_still_decodes() {
        let mut enc = ZstdEncoder::new(3).unwrap();
        let mut dec = ZstdDecoder::new().unwrap();
        let mut wire = Vec::new();
        enc.encode_flush(&text(5000), &mut wire).unwrap();
        enc.set_level(-5).unwrap();
        assert_eq!(enc.level(), -5);
        enc.encode_flush(&text(7000), &mut wire).unwrap();
        enc.set_level(19).unwrap();
        enc.set_level(22).unwrap();
        enc.encode_flush(&text(100), &mut wire).unwrap();
        let mut out = Vec::new();
        dec.decode(&wire, &mut out, 1 << 20).unwrap();
        let mut want = text(5000);
        want.extend(text(7000));
        want.extend(text(100));
        assert_eq!(out, want);
        assert!(matches!(
            enc.set_level(1000),
            Err(EncodingError::LevelOutOfRange { level: 1000, .. })
        ));
    }

    #[test]
    fn bomb_is_refused_without_allocating_its_size() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
        let mut dec = ZstdDecoder::new().unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            dec.decode(&bomb, &mut out, 1 << 20),
            Err(EncodingError::TooLarge { limit: 1_048_576 })
        ));
        assert!(out.capacity() <= (1 << 20) + 1 + MIN_OUTPUT_STEP);
    }

    #[test]
    fn window_over_8mb_is_refused() {
        use zstd::stream::raw::{Encoder, Operation};
        let data = text(1000);
        let mut wire = Vec::with_capacity(1 << 16);
        let mut enc = Encoder::new(3).unwrap();
        enc.set_parameter(CParameter::WindowLog(24)).unwrap();
        let mut src = InBuffer::around(&data[..]);
        enc.run(&mut src, &mut OutBuffer::around(&mut wire))
            .unwrap();
        loop {
            let pos = wire.len();
            if enc
                .finish(&mut OutBuffer::around_pos(&mut wire, pos), true)
                .unwrap()
                == 0
            {
                break;
            }
        }
        let mut dec = ZstdDecoder::new().unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            dec.decode(&wire, &mut out, 1 << 20),
            Err(EncodingError::Corrupt { .. })
        ));
        assert!(check_frames(&wire).is_err());
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let mut dec = ZstdDecoder::new().unwrap();
        let mut out = Vec::new();
        assert!(dec.decode(b"not zstd at all", &mut out, 1000).is_err());
    }

    #[test]
    fn precompressed_frames_are_checked() {
        let data = text(10_000);
        let one = zstd::bulk::compress(&data, 5).unwrap();
        check_frames(&one).unwrap();
        let mut two = one.clone();
        two.extend_from_slice(&one);
        // a skippable frame between them
        let mut with_skip = one.clone();
        with_skip.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9]);
        with_skip.extend_from_slice(&one);
        check_frames(&two).unwrap();
        check_frames(&with_skip).unwrap();
        assert!(check_frames(&one[..one.len() - 1]).is_err());
        assert!(check_frames(b"").is_err());
        assert!(check_frames(b"abcdefgh").is_err());
        assert!(check_frames(&[0x50, 0x2a, 0x4d, 0x18, 200, 0, 0, 0]).is_err());
    }

    #[test]
    fn high_levels_keep_the_window_within_8mb() {
        // Level 22 would use a 128 MiB window; the cap keeps what a zstd-8mb decoder takes.
        let mut enc = ZstdEncoder::new(22).unwrap();
        let mut wire = Vec::new();
        enc.encode_flush(&text(100_000), &mut wire).unwrap();
        enc.end_unit(&mut wire).unwrap();
        check_frames(&wire).unwrap();
        let mut out = Vec::new();
        ZstdDecoder::new()
            .unwrap()
            .decode(&wire, &mut out, 1 << 20)
            .unwrap();
        assert_eq!(out, text(100_000));
    }
}
