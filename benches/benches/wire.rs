//! Frame encode/decode against a plain copy of the same bytes, in one run.
//!
//! `cargo bench -p hgframe-benches --bench wire`
//!
//! Goals (issue 2): encoding 32 KiB frames at >= 0.9x the copy's bandwidth; decoding faster
//! than the copy (payloads are sliced out of the input, not copied).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hgframe_wire::{Frame, FrameDecoder, FrameType, Frames, RequestId, StreamFlags, StreamId};

fn frames(payload_len: usize, count: usize) -> Vec<Frame> {
    // Each frame gets its own slice of one large buffer, so encoding reads as much distinct
    // memory as the baseline copy does (one shared payload would stay in cache).
    let all: Vec<u8> = (0..payload_len * count)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let all = Bytes::from(all);
    (0..count)
        .map(|i| {
            let payload = all.slice(i * payload_len..(i + 1) * payload_len);
            Frame::new(
                RequestId(i as u16 | 1),
                StreamId(1),
                StreamFlags::empty(),
                FrameType::BytesResponse,
                0x01,
                payload,
            )
            .unwrap()
        })
        .collect()
}

fn bench_size(c: &mut Criterion, label: &str, payload_len: usize, count: usize) {
    let frames = frames(payload_len, count);
    let mut wire = BytesMut::new();
    for f in &frames {
        f.encode(&mut wire);
    }
    let wire = wire.freeze();
    let mut group = c.benchmark_group(format!("wire/{label}"));
    if payload_len < 1024 {
        group.throughput(Throughput::Elements(count as u64));
    } else {
        group.throughput(Throughput::Bytes(wire.len() as u64));
    }
    let mut dst = BytesMut::with_capacity(wire.len());

    group.bench_function("baseline_copy", |b| {
        b.iter(|| {
            dst.clear();
            dst.extend_from_slice(black_box(&wire));
            black_box(dst.len());
        })
    });
    group.bench_function("encode", |b| {
        b.iter(|| {
            dst.clear();
            for f in black_box(&frames) {
                f.encode(&mut dst);
            }
            black_box(dst.len());
        })
    });
    let mut scratch = BytesMut::with_capacity(64 * 1024);
    let mut chunks = Vec::with_capacity(2 * count);
    group.bench_function("encode_vectored", |b| {
        // What a transport with write_vectored does: headers copied, payloads shared.
        b.iter(|| {
            chunks.clear();
            scratch.reserve(count * 8 + 256);
            for f in black_box(&frames) {
                f.encode_vectored(&mut scratch, &mut chunks);
            }
            black_box(chunks.len());
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for f in Frames::new(black_box(wire.clone())) {
                n += f.map(|f| f.payload().len()).unwrap_or(0);
            }
            black_box(n);
        })
    });
    group.bench_function("decode_incremental_64k_reads", |b| {
        // As a transport does it: bytes arrive in 64 KiB reads into a BytesMut.
        b.iter(|| {
            let mut decoder = FrameDecoder::new();
            let mut buf = BytesMut::with_capacity(128 * 1024);
            let mut n = 0usize;
            for chunk in wire.chunks(64 * 1024) {
                buf.extend_from_slice(chunk);
                while let Ok(Some(f)) = decoder.decode(&mut buf) {
                    n += f.payload().len();
                }
            }
            black_box(n);
        })
    });
    group.finish();
}

fn wire(c: &mut Criterion) {
    bench_size(c, "16B", 16, 65536);
    bench_size(c, "32KiB", 32 * 1024, 256);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = wire
}
criterion_main!(benches);
