//! Every encoded frame decodes on arrival, on every path: the receiver is fed ONE FRAME
//! AT A TIME, and after each frame it must have produced exactly the raw bytes of every
//! flush (zstd block) that ended in the frames so far; no frame may end inside a zstd
//! block. The zstd blocks are found by a parser written here, independent of the
//! library's own. The `deflate` module at the end checks the same for `deflate`
//! streams, against flate2 used directly.
#![cfg(feature = "zstd")]

use std::collections::BTreeSet;

use bytes::Bytes;
use hgframe_stream::encoding::{ContentEncoder, ZstdEncoder};
use hgframe_stream::{
    DecodeLimits, EncodingSettings, IncomingStreams, OutgoingStream, ParallelEncoder, Profiles,
    Side, StreamError, StreamWriter,
};
use hgframe_wire::{Frame, FrameType, RequestId, StreamFlags, StreamId};
use proptest::prelude::*;
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

fn text(n: usize, seed: u64) -> Vec<u8> {
    let words = [
        "def", "self", "return", "value", "stream", "frame", "None", "import", "class",
    ];
    let mut out = Vec::with_capacity(n + 16);
    let mut x = seed | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 9) as usize].as_bytes());
        out.push(if x % 7 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(n);
    out
}

fn random(n: usize, seed: u64) -> Vec<u8> {
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

/// Half text, half noise, alternating in 50,000-byte runs: the ratio changes under the
/// encoder's feet.
fn mixed(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while out.len() < n {
        let run = 50_000.min(n - out.len());
        if i % 2 == 0 {
            out.extend(text(run, seed + i));
        } else {
            out.extend(random(run, seed + i));
        }
        i += 1;
    }
    out
}

fn stream(id: u8, max_frame_size: usize, level: i32) -> OutgoingStream {
    let mut s = OutgoingStream::new(
        StreamId(id),
        Side::Server,
        &Profiles::default(),
        &EncodingSettings::new("zstd-8mb").with_level(level),
    )
    .unwrap();
    s.set_max_frame_size(max_frame_size);
    s
}

/// The places in a stream's encoded bytes where a zstd decoder has a whole block (or a
/// whole skippable frame), each with the number of bytes decoded up to there.
fn decode_points(encoded: &[u8]) -> Vec<(usize, usize)> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at < encoded.len() {
        let magic = u32::from_le_bytes(encoded[at..at + 4].try_into().unwrap());
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            let len = u32::from_le_bytes(encoded[at + 4..at + 8].try_into().unwrap()) as usize;
            at += 8 + len;
            ends.push(at);
            continue;
        }
        assert_eq!(magic, 0xFD2F_B528, "a zstd frame at {at}");
        let fhd = encoded[at + 4];
        let single = fhd & 0x20 != 0;
        let dict = [0, 1, 2, 4][usize::from(fhd & 3)];
        let fcs = [usize::from(single), 2, 4, 8][usize::from(fhd >> 6)];
        at += 5 + usize::from(!single) + dict + fcs;
        // A stream's zstd frame stays open: the data may end after any block.
        while at < encoded.len() {
            let h = u32::from_le_bytes([encoded[at], encoded[at + 1], encoded[at + 2], 0]);
            let size = (h >> 3) as usize;
            let content = match (h >> 1) & 3 {
                0 | 2 => size,
                1 => 1,
                _ => panic!("reserved block type at {at}"),
            };
            at += 3 + content;
            if h & 1 == 1 {
                if fhd & 4 != 0 {
                    at += 4; // checksum
                }
                ends.push(at);
                break;
            }
            ends.push(at);
        }
    }
    assert_eq!(at, encoded.len(), "the stream ends with a whole block");
    // What a reference decoder gives at each point.
    let mut dec = Decoder::new().unwrap();
    dec.set_parameter(DParameter::WindowLogMax(23)).unwrap();
    let (mut from, mut decoded) = (0, 0);
    let mut points = Vec::new();
    let mut buf = vec![0u8; 1 << 18];
    for end in ends {
        let mut src = InBuffer::around(&encoded[from..end]);
        loop {
            let mut dst = OutBuffer::around(&mut buf[..]);
            dec.run(&mut src, &mut dst).unwrap();
            let n = dst.pos();
            decoded += n;
            if src.pos() == end - from && n < buf.len() {
                break;
            }
        }
        points.push((end, decoded));
        from = end;
    }
    points
}

/// Feeds `frames` (all streams) to a receiver one at a time and checks stream `id`:
/// - every encoded payload is within `max_frame_size`;
/// - every encoded frame ends at a decode point of the stream's zstd data, and the
///   receiver has then produced exactly what a reference decoder gives there, which is
///   `input`'s prefix of that length;
/// - with `flush_ends`, that length is one of them (the frame ends where a flush ends);
/// - in the end, the receiver has all of `input`.
fn check_on_arrival(
    frames: &[Frame],
    id: u8,
    input: &[u8],
    max_frame_size: usize,
    flush_ends: Option<&BTreeSet<usize>>,
) {
    let id = StreamId(id);
    let encoded: Vec<u8> = frames
        .iter()
        .filter(|f| f.stream_id() == id && f.stream_flags().contains(StreamFlags::ENCODED))
        .flat_map(|f| f.payload().to_vec())
        .collect();
    let points: std::collections::BTreeMap<usize, usize> =
        decode_points(&encoded).into_iter().collect();
    let mut incoming =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let (mut wire, mut got) = (0usize, Vec::new());
    for (n, f) in frames.iter().enumerate() {
        let mine = f.stream_id() == id;
        let encoded = f.stream_flags().contains(StreamFlags::ENCODED);
        let len = f.payload().len();
        assert!(f.payload().len() <= max_frame_size, "frame {n} too large");
        let Some(f) = incoming.on_frame(f.clone()).unwrap() else {
            continue;
        };
        if !mine || !encoded {
            continue;
        }
        got.extend_from_slice(f.payload());
        wire += len;
        let Some(&want) = points.get(&wire) else {
            panic!("frame {n} ends at encoded byte {wire}, inside a zstd block");
        };
        assert_eq!(got.len(), want, "frame {n}: decoded bytes held back");
        assert!(got[..] == input[..got.len()], "frame {n}: wrong bytes");
        if let Some(ends) = flush_ends {
            assert!(
                ends.contains(&got.len()),
                "frame {n}: {} decoded bytes is not where a flush ended",
                got.len()
            );
        }
    }
    assert!(got == input, "{} of {} bytes", got.len(), input.len());
}

/// Where the flushes of pushes of these lengths end, `flush` raw bytes at most each.
fn flush_ends(pushes: &[usize], flush: usize) -> BTreeSet<usize> {
    let mut ends = BTreeSet::new();
    let mut offset = 0;
    for &len in pushes {
        let mut k = 0;
        while k < len {
            k = (k + flush).min(len);
            ends.insert(offset + k);
        }
        offset += len;
    }
    ends
}

fn push(s: &mut OutgoingStream, request: u16, data: &[u8], eos: bool, out: &mut Vec<Frame>) {
    s.push_data(
        RequestId(request),
        FrameType::BytesResponse,
        Bytes::copy_from_slice(data),
        eos,
        out,
    )
    .unwrap();
}

/// The streaming path: pushes of these lengths cut from `input`.
fn check_streaming(input: &[u8], pushes: &[usize], max_frame_size: usize, level: i32) {
    let mut s = stream(2, max_frame_size, level);
    s.set_one_pass_min_len(usize::MAX);
    let mut out = Vec::new();
    let mut offset = 0;
    for (i, &len) in pushes.iter().enumerate() {
        push(
            &mut s,
            1,
            &input[offset..offset + len],
            i + 1 == pushes.len(),
            &mut out,
        );
        offset += len;
    }
    s.end(&mut out).unwrap();
    let ends = flush_ends(pushes, s.max_flush_raw_len());
    check_on_arrival(&out, 2, &input[..offset], max_frame_size, Some(&ends));
}

#[test]
fn streaming_frames_end_where_flushes_end() {
    for input in [text(700_000, 1), random(400_000, 2), mixed(600_000, 3)] {
        for max in [28, 100, 1000, 9000, 32768, 65535, 300_000] {
            let pushes = [input.len() / 2, 1, 17, input.len() / 2 - 18];
            for level in [1, 3] {
                check_streaming(&input, &pushes, max, level);
            }
        }
    }
}

#[test]
fn a_flush_of_incompressible_data_fills_a_frame_without_spilling() {
    // The bound is tight enough that frames of random data are nearly full.
    let input = random(1 << 20, 4);
    let mut s = stream(2, 32768, 3);
    let mut out = Vec::new();
    push(&mut s, 1, &input, true, &mut out);
    let encoded: Vec<&Frame> = out
        .iter()
        .filter(|f| f.stream_flags().contains(StreamFlags::ENCODED))
        .collect();
    assert!(s.max_flush_raw_len() > 32_000, "{}", s.max_flush_raw_len());
    assert!(encoded.iter().all(|f| f.payload().len() <= 32768));
    // All but the last are more than 98% full.
    assert!(encoded[..encoded.len() - 1]
        .iter()
        .all(|f| f.payload().len() > 32_100));
    check_on_arrival(&out, 2, &input, 32768, None);
}

#[test]
fn small_messages_each_end_in_their_own_frame() {
    let mut s = stream(2, 32768, 3);
    let mut out = Vec::new();
    let mut input = Vec::new();
    let mut pushes = Vec::new();
    for i in 0..300u64 {
        let m = if i % 5 == 0 {
            random(40 + i as usize, i)
        } else {
            text(100 + (i as usize * 37) % 900, i)
        };
        input.extend_from_slice(&m);
        pushes.push(m.len());
        push(&mut s, 1 + 2 * (i as u16 % 100), &m, true, &mut out);
    }
    let ends = flush_ends(&pushes, s.max_flush_raw_len());
    check_on_arrival(&out, 2, &input, 32768, Some(&ends));
}

#[test]
fn level_changes_keep_frames_on_block_boundaries() {
    let mut s = stream(2, 4096, 3);
    let mut out = Vec::new();
    let mut input = Vec::new();
    let mut pushes = Vec::new();
    for (i, level) in [3, 1, 19, -5, 22, 3].into_iter().enumerate() {
        s.set_level(level).unwrap();
        let m = mixed(30_000 + i * 1000, i as u64);
        input.extend_from_slice(&m);
        pushes.push(m.len());
        push(&mut s, 1, &m, false, &mut out);
    }
    let ends = flush_ends(&pushes, s.max_flush_raw_len());
    check_on_arrival(&out, 2, &input, 4096, Some(&ends));
}

#[test]
fn one_pass_frames_end_at_block_boundaries() {
    let input = mixed(3 << 20, 5);
    // Large enough frames: the one-pass path, cut at its 128 KiB blocks.
    for max in [140_000, 1 << 20, 16_777_215] {
        let mut s = stream(2, max, 3);
        s.set_one_pass_min_len(0);
        let mut out = Vec::new();
        push(&mut s, 1, &input, true, &mut out);
        // One pass is one zstd frame per 16 MiB: no flush in the middle.
        assert_eq!(s.stats().flushes, 1, "frame size {max}");
        check_on_arrival(&out, 2, &input, max, None);
    }
    // Frames too small for a whole block: the one-pass path is not taken.
    let mut s = stream(2, 32768, 3);
    s.set_one_pass_min_len(0);
    let mut out = Vec::new();
    push(&mut s, 1, &input, true, &mut out);
    assert!(s.stats().flushes > 1);
    let ends = flush_ends(&[input.len()], s.max_flush_raw_len());
    check_on_arrival(&out, 2, &input, 32768, Some(&ends));
}

#[test]
fn parallel_streams_each_decode_on_arrival() {
    let parts = [text(900_000, 6), mixed(800_000, 7), random(300_000, 8)];
    for max in [1000, 32768] {
        let jobs = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let s = stream(2 + 2 * i as u8, max, 3);
                let part = part.clone();
                let job = move |w: &mut StreamWriter<'_>| -> Result<(), StreamError> {
                    // In pieces, as `frames pack` pushes.
                    let pieces = part.chunks(100_000).count();
                    for (k, piece) in part.chunks(100_000).enumerate() {
                        w.push_data(
                            RequestId(1 + 2 * i as u16),
                            FrameType::BytesResponse,
                            Bytes::copy_from_slice(piece),
                            k + 1 == pieces,
                        )?;
                    }
                    w.end()
                };
                (s, job)
            })
            .collect();
        let mut frames = Vec::new();
        let streams = ParallelEncoder::new()
            .batch_bytes(10_000)
            .run(jobs, |f| {
                frames.push(f);
                Ok::<(), ()>(())
            })
            .unwrap();
        for (i, part) in parts.iter().enumerate() {
            let pushes: Vec<usize> = part.chunks(100_000).map(<[u8]>::len).collect();
            let ends = flush_ends(&pushes, streams[i].max_flush_raw_len());
            check_on_arrival(&frames, 2 + 2 * i as u8, part, max, Some(&ends));
        }
    }
}

/// Pre-compressed data made as the stream would make it: flushed every
/// `max_flush_raw_len` bytes, so its blocks fit frames.
fn precompress(data: &[u8], flush: usize, level: i32) -> Bytes {
    let mut enc = ZstdEncoder::new(level).unwrap();
    let mut out = Vec::new();
    for piece in data.chunks(flush) {
        enc.encode_flush(piece, &mut out).unwrap();
    }
    enc.end_unit(&mut out).unwrap();
    Bytes::from(out)
}

#[test]
fn precompressed_data_is_cut_at_its_blocks() {
    let cached = mixed(500_000, 9);
    let before = text(50_000, 10);
    for max in [1000, 32768] {
        let mut s = stream(2, max, 3);
        let compressed = precompress(&cached, s.max_flush_raw_len(), 19);
        let mut out = Vec::new();
        // With an open zstd frame to end first, and on a fresh stream.
        push(&mut s, 1, &before, false, &mut out);
        s.push_precompressed(
            RequestId(1),
            FrameType::BytesResponse,
            compressed.clone(),
            false,
            &mut out,
        )
        .unwrap();
        // A skippable frame between two cached frames.
        let mut two = compressed.to_vec();
        two.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 7, 7, 7]);
        two.extend_from_slice(&compressed);
        s.push_precompressed(
            RequestId(1),
            FrameType::BytesResponse,
            Bytes::from(two),
            false,
            &mut out,
        )
        .unwrap();
        push(&mut s, 1, &before, true, &mut out);
        let input = [&before[..], &cached, &cached, &cached, &before].concat();
        check_on_arrival(&out, 2, &input, max, None);
    }
    // Blocks of 128 KiB (zstd's one-shot output) fit frames of 140,000 bytes.
    let one_shot = Bytes::from(zstd::bulk::compress(&cached, 3).unwrap());
    let mut s = stream(2, 140_000, 3);
    let mut out = Vec::new();
    s.push_precompressed(
        RequestId(1),
        FrameType::BytesResponse,
        one_shot,
        true,
        &mut out,
    )
    .unwrap();
    check_on_arrival(&out, 2, &cached, 140_000, None);
}

#[test]
fn precompressed_blocks_larger_than_a_frame_span_frames_and_still_decode() {
    // A block larger than a frame cannot end one: it spans `continuation` frames, and
    // the last of them ends where the block does.
    let cached = random(300_000, 11);
    let one_shot = Bytes::from(zstd::bulk::compress(&cached, 3).unwrap());
    let mut s = stream(2, 32768, 3);
    let mut out = Vec::new();
    s.push_precompressed(
        RequestId(1),
        FrameType::BytesResponse,
        one_shot.clone(),
        true,
        &mut out,
    )
    .unwrap();
    assert!(out.iter().all(|f| f.payload().len() <= 32768));
    let points: BTreeSet<usize> = decode_points(&one_shot).into_iter().map(|p| p.0).collect();
    let mut at = 0;
    let mut incoming =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let mut got = Vec::new();
    let mut aligned = 0;
    for f in out {
        let len = f.payload().len();
        if let Some(f) = incoming.on_frame(f).unwrap() {
            got.extend_from_slice(f.payload());
            at += len;
            aligned += usize::from(points.contains(&at));
        }
    }
    assert_eq!(got, cached);
    assert_eq!(aligned, points.len(), "every block end is a frame end");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_pushes_decode_on_arrival(
        kinds in prop::collection::vec((0u8..3, 0usize..90_000), 1..6),
        max in prop_oneof![28usize..300, 300usize..40_000, Just(32768usize)],
        level in -3i32..6,
        seed in any::<u64>(),
    ) {
        let mut input = Vec::new();
        let mut pushes = Vec::new();
        for (k, (kind, len)) in kinds.into_iter().enumerate() {
            let s = seed.wrapping_add(k as u64);
            input.extend(match kind {
                0 => text(len, s),
                1 => random(len, s),
                _ => mixed(len, s),
            });
            pushes.push(len);
        }
        check_streaming(&input, &pushes, max, level);
    }
}

#[test]
fn decoding_into_a_reused_buffer_gives_the_same_bytes() {
    let input = mixed(700_000, 12);
    let mut s = stream(2, 32768, 3);
    let mut out = Vec::new();
    push(&mut s, 1, &input[..300_000], false, &mut out);
    s.push_raw_data(
        RequestId(1),
        FrameType::BytesResponse,
        Bytes::copy_from_slice(&input[300_000..310_000]),
        false,
        &mut out,
    )
    .unwrap();
    push(&mut s, 1, &input[310_000..], true, &mut out);
    s.end(&mut out).unwrap();
    let mut incoming =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut capacities = BTreeSet::new();
    for f in out {
        let encoded = f.stream_flags().contains(StreamFlags::ENCODED);
        let Some(f) = incoming.on_frame_into(f, &mut buf).unwrap() else {
            continue;
        };
        assert!(!f.stream_flags().contains(StreamFlags::ENCODED));
        if encoded {
            assert!(f.payload().is_empty());
            got.extend_from_slice(&buf);
            capacities.insert(buf.capacity());
        } else {
            assert!(buf.is_empty());
            got.extend_from_slice(f.payload());
        }
    }
    assert!(got == input);
    // One buffer, grown a few times at most, not one allocation per frame.
    assert!(capacities.len() <= 4, "{capacities:?}");
}

/// The same property for `deflate`: after each frame, the receiver has produced exactly
/// the raw bytes of the flushes that ended in the frames so far, which a reference
/// inflater (flate2 used directly, each payload followed by `00 00 ff ff`) agrees with.
#[cfg(feature = "deflate")]
mod deflate {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn stream(id: u8, max_frame_size: usize, level: i32) -> OutgoingStream {
        let mut s = OutgoingStream::new(
            StreamId(id),
            Side::Server,
            &Profiles::default(),
            &EncodingSettings::new("deflate").with_level(level),
        )
        .unwrap();
        s.set_max_frame_size(max_frame_size);
        s
    }

    /// What the reference inflater gives for one payload, its tail put back.
    fn inflate(reference: &mut Decompress, payload: &[u8]) -> Vec<u8> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1 << 20);
        let before = reference.total_in();
        reference
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(
            reference.total_in() - before,
            input.len() as u64,
            "the reference inflater took the whole payload"
        );
        out
    }

    /// Feeds `frames` to a receiver one at a time and checks stream `id`: every payload
    /// within `max_frame_size`; after each encoded frame the receiver has exactly
    /// `input`'s prefix up to a flush end, the same bytes as the reference.
    pub(super) fn check_on_arrival(
        frames: &[Frame],
        id: u8,
        input: &[u8],
        max_frame_size: usize,
        flush_ends: &BTreeSet<usize>,
    ) {
        let id = StreamId(id);
        let mut incoming =
            IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
        let mut reference = Decompress::new(false);
        let (mut got, mut want) = (Vec::new(), Vec::new());
        for (n, f) in frames.iter().enumerate() {
            let mine = f.stream_id() == id;
            let encoded = f.stream_flags().contains(StreamFlags::ENCODED);
            assert!(f.payload().len() <= max_frame_size, "frame {n} too large");
            if mine && encoded {
                want.extend(inflate(&mut reference, f.payload()));
            }
            let Some(f) = incoming.on_frame(f.clone()).unwrap() else {
                continue;
            };
            if !mine || !encoded {
                continue;
            }
            got.extend_from_slice(f.payload());
            assert!(
                got == want,
                "frame {n}: the receiver and the reference differ"
            );
            assert!(
                flush_ends.contains(&got.len()),
                "frame {n}: {} decoded bytes is not where a flush ended",
                got.len()
            );
            assert!(got[..] == input[..got.len()], "frame {n}: wrong bytes");
        }
        assert!(got == input, "{} of {} bytes", got.len(), input.len());
    }

    fn check_streaming(input: &[u8], pushes: &[usize], max_frame_size: usize, level: i32) {
        let mut s = stream(2, max_frame_size, level);
        let mut out = Vec::new();
        let mut offset = 0;
        for (i, &len) in pushes.iter().enumerate() {
            let eos = i + 1 == pushes.len();
            push(&mut s, 1, &input[offset..offset + len], eos, &mut out);
            offset += len;
        }
        s.end(&mut out).unwrap();
        let ends = flush_ends(pushes, s.max_flush_raw_len());
        check_on_arrival(&out, 2, &input[..offset], max_frame_size, &ends);
    }

    #[test]
    fn deflate_frames_end_where_flushes_end() {
        // 8 bytes is the smallest frame a deflate stream takes (its stream-settings).
        // Smaller inputs for the tiny frames, which flush every byte or two.
        for input in [text(120_000, 1), random(60_000, 2), mixed(120_000, 3)] {
            for max in [8, 11, 100, 1000, 9000, 32768, 65535, 300_000] {
                let input = &input[..if max < 100 { 6000 } else { input.len() }];
                let pushes = [input.len() / 2, 1, 17, input.len() / 2 - 18];
                for level in [0, 1, 6, 9] {
                    check_streaming(input, &pushes, max, level);
                }
            }
        }
    }

    #[test]
    fn deflate_frames_of_incompressible_data_are_exactly_the_size_limit() {
        // Stored blocks: a flush of n bytes (under 16,383) is n + 10 on the wire less
        // the 4-byte tail, which is the bound, so every frame but the last is exactly
        // full. (From 16,383 bytes on the bound allows a second block that zlib may
        // not need: 32768-byte frames are checked below.)
        for (max, level) in [(16000, 6), (4096, 0), (8, 0), (12000, 9)] {
            let input = random(if max < 100 { 3000 } else { 200_000 }, 4);
            let mut s = stream(2, max, level);
            let mut out = Vec::new();
            push(&mut s, 1, &input, true, &mut out);
            let encoded: Vec<&Frame> = out
                .iter()
                .filter(|f| f.stream_flags().contains(StreamFlags::ENCODED))
                .collect();
            let (last, full) = encoded.split_last().unwrap();
            let sizes: BTreeSet<usize> = full.iter().map(|f| f.payload().len()).collect();
            assert!(
                sizes.iter().all(|&n| n == max),
                "frame size {max}, level {level}: {sizes:?}"
            );
            assert!(last.payload().len() <= max);
            let ends = flush_ends(&[input.len()], s.max_flush_raw_len());
            check_on_arrival(&out, 2, &input, max, &ends);
        }
        let input = random(300_000, 5);
        let mut s = stream(2, 32768, 6);
        let mut out = Vec::new();
        push(&mut s, 1, &input, true, &mut out);
        let encoded: Vec<&Frame> = out
            .iter()
            .filter(|f| f.stream_flags().contains(StreamFlags::ENCODED))
            .collect();
        let (_, full) = encoded.split_last().unwrap();
        assert!(full
            .iter()
            .all(|f| (32_758..=32_768).contains(&f.payload().len())));
        let ends = flush_ends(&[input.len()], s.max_flush_raw_len());
        check_on_arrival(&out, 2, &input, 32768, &ends);
    }

    #[test]
    fn deflate_small_messages_each_end_in_their_own_frame() {
        let mut s = stream(2, 32768, 6);
        let mut out = Vec::new();
        let mut input = Vec::new();
        let mut pushes = Vec::new();
        for i in 0..300u64 {
            let m = if i % 5 == 0 {
                random(40 + i as usize, i)
            } else {
                text(100 + (i as usize * 37) % 900, i)
            };
            input.extend_from_slice(&m);
            pushes.push(m.len());
            push(&mut s, 1 + 2 * (i as u16 % 100), &m, true, &mut out);
        }
        let ends = flush_ends(&pushes, s.max_flush_raw_len());
        check_on_arrival(&out, 2, &input, 32768, &ends);
    }

    #[test]
    fn deflate_level_changes_still_decode_on_arrival() {
        let mut s = stream(2, 4096, 6);
        let mut out = Vec::new();
        let mut input = Vec::new();
        let mut ends = BTreeSet::new();
        let mut flush_lens = BTreeSet::new();
        for (i, level) in [6, 1, 9, 0, 3, 6].into_iter().enumerate() {
            s.set_level(level).unwrap();
            let m = mixed(30_000 + i * 1000, i as u64);
            // Level 1 writes fixed-Huffman blocks only: a smaller flush fits a frame.
            let flush = s.max_flush_raw_len();
            flush_lens.insert(flush);
            ends.extend(
                flush_ends(&[m.len()], flush)
                    .iter()
                    .map(|e| e + input.len()),
            );
            input.extend_from_slice(&m);
            push(&mut s, 1, &m, false, &mut out);
        }
        assert_eq!(flush_lens.len(), 2, "{flush_lens:?}");
        assert!(s.set_level(10).is_err());
        check_on_arrival(&out, 2, &input, 4096, &ends);
    }

    #[test]
    fn deflate_parallel_streams_each_decode_on_arrival() {
        let parts = [text(200_000, 6), mixed(150_000, 7), random(100_000, 8)];
        let jobs = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let s = stream(2 + 2 * i as u8, 1000, 6);
                let part = part.clone();
                let job = move |w: &mut StreamWriter<'_>| -> Result<(), StreamError> {
                    let pieces = part.chunks(100_000).count();
                    for (k, piece) in part.chunks(100_000).enumerate() {
                        w.push_data(
                            RequestId(1 + 2 * i as u16),
                            FrameType::BytesResponse,
                            Bytes::copy_from_slice(piece),
                            k + 1 == pieces,
                        )?;
                    }
                    w.end()
                };
                (s, job)
            })
            .collect();
        let mut frames = Vec::new();
        let streams = ParallelEncoder::new()
            .batch_bytes(10_000)
            .run(jobs, |f| {
                frames.push(f);
                Ok::<(), ()>(())
            })
            .unwrap();
        for (i, part) in parts.iter().enumerate() {
            let pushes: Vec<usize> = part.chunks(100_000).map(<[u8]>::len).collect();
            let ends = flush_ends(&pushes, streams[i].max_flush_raw_len());
            check_on_arrival(&frames, 2 + 2 * i as u8, part, 1000, &ends);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn deflate_any_pushes_decode_on_arrival(
            kinds in prop::collection::vec((0u8..3, 0usize..30_000), 1..5),
            max in prop_oneof![8usize..300, 300usize..40_000, Just(32768usize)],
            level in 0i32..10,
            seed in any::<u64>(),
        ) {
            let mut input = Vec::new();
            let mut pushes = Vec::new();
            for (k, (kind, len)) in kinds.into_iter().enumerate() {
                let s = seed.wrapping_add(k as u64);
                input.extend(match kind {
                    0 => text(len, s),
                    1 => random(len, s),
                    _ => mixed(len, s),
                });
                pushes.push(len);
            }
            check_streaming(&input, &pushes, max, level);
        }
    }
}
