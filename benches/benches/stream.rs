//! Streams with the `zstd-8mb` content encoding against the zstd library used directly on
//! the same data at the same level, in one run.
//!
//! `HGFRAME_CORPUS=$CORPUS cargo bench -p hgframe-benches --bench stream`
//!
//! Data: the first `HGFRAME_BENCH_BYTES` (default 32 MiB) of `$HGFRAME_CORPUS/bulk.bin`
//! (the corpus of `docs/streams.md`), or generated text when the corpus is absent.
//! `HGFRAME_BENCH_LEVEL` sets the zstd level (default 3).
//!
//! Goals (issue 3): pack within 1.10x the time and 1.02x the size of plain zstd; unpack
//! within 1.10x the time of plain zstd decompression; 2 streams on 2 threads at least
//! 1.7x the throughput of 1 stream. Sizes, and these ratios from the fastest of
//! `HGFRAME_BENCH_REPS` (default 7) runs taken in turns, are printed before the criterion
//! timings: on a busy machine the minimums compare better than the means.

// `criterion_group!` generates a function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use hgframe_stream::{
    DecodeLimits, EncodingSettings, IncomingStreams, OutgoingStream, ParallelEncoder, Profiles,
    Side, StreamError, StreamWriter,
};
use hgframe_wire::{Frame, FrameType, RequestId, StreamId};
use zstd::stream::raw::{Decoder, Encoder, InBuffer, Operation, OutBuffer};

/// The bytes benchmarked and where they come from.
fn data() -> (Bytes, String) {
    let len: usize = std::env::var("HGFRAME_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32 << 20);
    if let Ok(dir) = std::env::var("HGFRAME_CORPUS") {
        let path = std::path::Path::new(&dir).join("bulk.bin");
        match std::fs::read(&path) {
            Ok(mut bytes) => {
                bytes.truncate(len);
                return (
                    Bytes::from(bytes),
                    format!("{} (first {len} bytes)", path.display()),
                );
            }
            Err(e) => eprintln!("cannot read {}: {e}; using generated data", path.display()),
        }
    }
    // Generated text: words from a small vocabulary, lines of varying length.
    let words = [
        "frame", "stream", "request", "zstd", "payload", "encoding", "window", "header", "def",
        "return", "self", "import", "class", "None", "value", "context",
    ];
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 16) as usize].as_bytes());
        out.push(if matches!(x % 11, 0) { b'\n' } else { b' ' });
        if matches!(x % 5, 0) {
            out.extend_from_slice(format!("{}", x % 1000).as_bytes());
        }
    }
    out.truncate(len);
    (Bytes::from(out), format!("generated text ({len} bytes)"))
}

fn level() -> i32 {
    std::env::var("HGFRAME_BENCH_LEVEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Plain zstd, streaming API: the input fed in 128 KiB pieces, one frame.
fn zstd_stream_compress(data: &[u8], level: i32) -> Vec<u8> {
    let mut enc = Encoder::new(level).unwrap();
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
    for piece in data.chunks(128 * 1024) {
        let mut src = InBuffer::around(piece);
        while src.pos() < piece.len() {
            let pos = out.len();
            enc.run(&mut src, &mut OutBuffer::around_pos(&mut out, pos))
                .unwrap();
        }
    }
    loop {
        let pos = out.len();
        if enc
            .finish(&mut OutBuffer::around_pos(&mut out, pos), true)
            .unwrap()
            == 0
        {
            break;
        }
    }
    out
}

/// Plain zstd decompression, streaming: the input fed in 32 KiB pieces as it would
/// arrive from a connection, into one buffer of the known size.
fn zstd_stream_decompress(compressed: &[u8], len: usize) -> Vec<u8> {
    let mut dec = Decoder::new().unwrap();
    let mut out = Vec::with_capacity(len + 1);
    for piece in compressed.chunks(32 * 1024) {
        let mut src = InBuffer::around(piece);
        while src.pos() < piece.len() {
            let pos = out.len();
            dec.run(&mut src, &mut OutBuffer::around_pos(&mut out, pos))
                .unwrap();
        }
    }
    out
}

/// Plain zstd decompression of a whole stream into one buffer of the known size.
fn zstd_decompress(compressed: &[u8], len: usize) -> Vec<u8> {
    let mut dec = Decoder::new().unwrap();
    let mut out = Vec::with_capacity(len);
    let mut src = InBuffer::around(compressed);
    while src.pos() < compressed.len() {
        let pos = out.len();
        dec.run(&mut src, &mut OutBuffer::around_pos(&mut out, pos))
            .unwrap();
    }
    out
}

fn stream(id: u8, level: i32) -> OutgoingStream {
    OutgoingStream::new(
        StreamId(id),
        Side::Server,
        &Profiles::default(),
        &EncodingSettings::new("zstd-8mb").with_level(level),
    )
    .unwrap()
}

/// hgframe: one response on one zstd-8mb stream, on the calling thread.
fn pack(data: &Bytes, level: i32) -> Vec<Frame> {
    let mut s = stream(2, level);
    let mut frames = Vec::with_capacity(data.len() / 16384 + 4);
    s.push_data(
        RequestId(1),
        FrameType::BytesResponse,
        data.clone(),
        true,
        &mut frames,
    )
    .unwrap();
    s.end(&mut frames).unwrap();
    frames
}

/// hgframe: decode every frame as it arrives, keeping the decoded payloads (what a
/// receiver hands on, or writes out as `frames unpack` does).
fn unpack(frames: &[Frame]) -> Vec<Bytes> {
    let mut incoming =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let mut out = Vec::with_capacity(frames.len());
    for f in frames {
        if let Some(f) = incoming.on_frame(f.clone()).unwrap() {
            out.push(f.into_payload());
        }
    }
    out
}

/// hgframe: `parts` contiguous parts, one stream each, on as many worker threads.
fn pack_parallel(data: &Bytes, parts: usize, level: i32) -> usize {
    let jobs: Vec<_> = (0..parts)
        .map(|i| {
            let part = data.slice(data.len() * i / parts..data.len() * (i + 1) / parts);
            let job = move |w: &mut StreamWriter<'_>| -> Result<(), StreamError> {
                w.push_data(
                    RequestId(1 + 2 * i as u16),
                    FrameType::BytesResponse,
                    part,
                    true,
                )?;
                w.end()
            };
            (stream(2 + 2 * i as u8, level), job)
        })
        .collect();
    let mut wire = 0usize;
    ParallelEncoder::new()
        .run(jobs, |f| {
            wire += f.encoded_len();
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
    wire
}

/// Plain zstd (one-shot) on `parts` contiguous parts, on as many threads.
fn zstd_parallel(data: &Bytes, parts: usize, level: i32) -> usize {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..parts)
            .map(|i| {
                let part = &data[data.len() * i / parts..data.len() * (i + 1) / parts];
                s.spawn(move || zstd::bulk::compress(part, level).unwrap().len())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// The fastest of `reps` runs of each closure, run in turns so that a busy machine
/// slows both alike; the minimum is what the code costs when nothing interferes.
fn min_times(reps: usize, runs: &mut [&mut dyn FnMut()]) -> Vec<Duration> {
    let mut best = vec![Duration::MAX; runs.len()];
    for _ in 0..reps {
        for (run, best) in runs.iter_mut().zip(best.iter_mut()) {
            let start = std::time::Instant::now();
            run();
            *best = (*best).min(start.elapsed());
        }
    }
    best
}

/// The goals as ratios of minimum times (`HGFRAME_BENCH_REPS`, default 7, 0 to skip).
fn print_ratios(data: &Bytes, level: i32, one_shot: &[u8], frames: &[Frame]) {
    let reps: usize = std::env::var("HGFRAME_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    if reps == 0 {
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let t = min_times(
        reps,
        &mut [
            &mut || drop(black_box(zstd::bulk::compress(data, level).unwrap())),
            &mut || drop(black_box(zstd_stream_compress(data, level))),
            &mut || drop(black_box(pack(data, level))),
        ],
    );
    eprintln!(
        "pack, min of {reps}: zstd one-shot {:.1} ms | zstd streaming {:.1} ms | hgframe {:.1} ms = {:.3}x one-shot, {:.3}x streaming",
        ms(t[0]), ms(t[1]), ms(t[2]), ms(t[2]) / ms(t[0]), ms(t[2]) / ms(t[1])
    );
    let t = min_times(
        reps,
        &mut [
            &mut || drop(black_box(zstd_decompress(one_shot, data.len()))),
            &mut || drop(black_box(zstd_stream_decompress(one_shot, data.len()))),
            &mut || drop(black_box(unpack(frames))),
        ],
    );
    eprintln!(
        "unpack, min of {reps}: zstd one-shot {:.1} ms | zstd streaming {:.1} ms | hgframe {:.1} ms = {:.3}x one-shot, {:.3}x streaming",
        ms(t[0]),
        ms(t[1]),
        ms(t[2]),
        ms(t[2]) / ms(t[0]),
        ms(t[2]) / ms(t[1])
    );
    let t = min_times(
        reps,
        &mut [
            &mut || {
                black_box(zstd_parallel(data, 1, level));
            },
            &mut || {
                black_box(zstd_parallel(data, 2, level));
            },
            &mut || {
                black_box(pack_parallel(data, 1, level));
            },
            &mut || {
                black_box(pack_parallel(data, 2, level));
            },
        ],
    );
    eprintln!(
        "parallel, min of {reps}: zstd 1 thread {:.1} ms, 2 threads {:.1} ms = {:.2}x | hgframe 1 stream {:.1} ms, 2 streams {:.1} ms = {:.2}x",
        ms(t[0]), ms(t[1]), ms(t[0]) / ms(t[1]), ms(t[2]), ms(t[3]), ms(t[2]) / ms(t[3])
    );
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, bytes: usize) {
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(bytes as u64));
}

fn benches(c: &mut Criterion) {
    let (data, source) = data();
    let level = level();
    let wire_len = |frames: &[Frame]| frames.iter().map(Frame::encoded_len).sum::<usize>();

    // Sizes, once.
    let one_shot = zstd::bulk::compress(&data, level).unwrap();
    let streamed = zstd_stream_compress(&data, level);
    let frames = pack(&data, level);
    let packed = wire_len(&frames);
    assert_eq!(unpack(&frames).concat(), data);
    eprintln!("data: {source}, zstd level {level}");
    eprintln!(
        "sizes: zstd one-shot {} | zstd streaming {} | hgframe pack {} ({} frames, headers included) = {:.4}x one-shot, {:.4}x streaming",
        one_shot.len(),
        streamed.len(),
        packed,
        frames.len(),
        packed as f64 / one_shot.len() as f64,
        packed as f64 / streamed.len() as f64,
    );
    let parallel2 = pack_parallel(&data, 2, level);
    eprintln!(
        "sizes with 2 streams: hgframe {parallel2} | zstd on 2 parts {}",
        zstd_parallel(&data, 2, level)
    );

    print_ratios(&data, level, &one_shot, &frames);

    let mut group = c.benchmark_group("stream/pack");
    configure(&mut group, data.len());
    group.bench_function("zstd_one_shot", |b| {
        b.iter(|| zstd::bulk::compress(black_box(&data), level).unwrap().len())
    });
    group.bench_function("zstd_streaming", |b| {
        b.iter(|| zstd_stream_compress(black_box(&data), level).len())
    });
    group.bench_function("hgframe_pack", |b| {
        b.iter(|| pack(black_box(&data), level).len())
    });
    group.finish();

    let mut group = c.benchmark_group("stream/unpack");
    configure(&mut group, data.len());
    group.bench_function("zstd_decompress", |b| {
        b.iter(|| zstd_decompress(black_box(&one_shot), data.len()).len())
    });
    group.bench_function("zstd_streaming_decompress", |b| {
        b.iter(|| zstd_stream_decompress(black_box(&one_shot), data.len()).len())
    });
    group.bench_function("hgframe_unpack", |b| {
        b.iter(|| unpack(black_box(&frames)).len())
    });
    group.finish();

    let mut group = c.benchmark_group("stream/parallel");
    configure(&mut group, data.len());
    for parts in [1, 2] {
        group.bench_function(format!("zstd_{parts}_threads"), |b| {
            b.iter(|| zstd_parallel(black_box(&data), parts, level))
        });
        group.bench_function(format!("hgframe_{parts}_streams"), |b| {
            b.iter(|| pack_parallel(black_box(&data), parts, level))
        });
    }
    group.finish();
}

criterion_group!(stream_benches, benches);
criterion_main!(stream_benches);
