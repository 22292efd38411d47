//! `unpack(pack(x)) == x` for random inputs and options, with the wire bytes arriving in
//! random pieces; and garbage frames never make the receiver panic.
#![cfg(feature = "zstd")]

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use hgframe_stream::{
    DecodeLimits, EncodingSettings, IncomingStreams, OutgoingStream, ParallelEncoder, Profiles,
    Side, StreamError, StreamWriter,
};
use hgframe_wire::{
    Frame, FrameDecoder, FrameType, RequestId, StreamFlags, StreamId, MAX_PAYLOAD_LEN,
};
use proptest::prelude::*;

/// Compressible data: random segments, each repeated a few times.
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (prop::collection::vec(any::<u8>(), 1..2000), 1usize..40),
        0..12,
    )
    .prop_map(|segments| {
        let mut out = Vec::new();
        for (segment, times) in segments {
            for _ in 0..times {
                out.extend_from_slice(&segment);
            }
        }
        out.truncate(256 * 1024);
        out
    })
}

#[derive(Debug, Clone)]
struct Options {
    zstd: bool,
    max_frame_size: usize,
    streams: usize,
    level: i32,
    one_pass_min: usize,
    pushes: usize,
    chunk: usize,
}

fn options() -> impl Strategy<Value = Options> {
    (
        any::<bool>(),
        prop_oneof![9usize..200, 200usize..70_000, Just(32768)],
        1usize..4,
        -3i32..8,
        prop_oneof![Just(0usize), Just(50_000), Just(usize::MAX)],
        1usize..4,
        1usize..5000,
    )
        .prop_map(
            |(zstd, max_frame_size, streams, level, one_pass_min, pushes, chunk)| Options {
                zstd,
                max_frame_size,
                streams,
                level,
                one_pass_min,
                pushes,
                chunk,
            },
        )
}

/// What `frames pack` does: contiguous parts, part i as request 1+2i on stream 2+2i,
/// each part pushed in `pushes` pieces, all streams on worker threads.
fn pack(input: &Bytes, o: &Options) -> BytesMut {
    let profile = if o.zstd { "zstd-8mb" } else { "identity" };
    let settings = EncodingSettings::new(profile).with_level(o.level);
    let n = o.streams;
    let jobs: Vec<_> = (0..n)
        .map(|i| {
            let mut stream = OutgoingStream::new(
                StreamId(2 + 2 * i as u8),
                Side::Server,
                &Profiles::default(),
                &settings,
            )
            .unwrap();
            stream.set_max_frame_size(o.max_frame_size);
            stream.set_one_pass_min_len(o.one_pass_min);
            let part = input.slice(input.len() * i / n..input.len() * (i + 1) / n);
            let pushes = o.pushes;
            let job = move |w: &mut StreamWriter<'_>| -> Result<(), StreamError> {
                for p in 0..pushes {
                    let piece = part.slice(part.len() * p / pushes..part.len() * (p + 1) / pushes);
                    w.push_data(
                        RequestId(1 + 2 * i as u16),
                        FrameType::BytesResponse,
                        piece,
                        p + 1 == pushes,
                    )?;
                }
                w.end()
            };
            (stream, job)
        })
        .collect();
    let mut wire = BytesMut::new();
    let max = o.max_frame_size;
    ParallelEncoder::new()
        .batch_bytes(4096)
        .run(jobs, |f: Frame| {
            assert!(
                f.payload().len() <= max,
                "frame of {} > {max}",
                f.payload().len()
            );
            f.encode(&mut wire);
            Ok::<(), ()>(())
        })
        .unwrap();
    wire
}

/// What `frames unpack` does, fed `chunk` bytes at a time.
fn unpack(wire: &[u8], chunk: usize) -> Vec<u8> {
    let mut decoder = FrameDecoder::with_max_payload_len(MAX_PAYLOAD_LEN);
    let mut incoming =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let mut responses: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
    let mut buf = BytesMut::new();
    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(f) = decoder.decode(&mut buf).unwrap() {
            if let Some(f) = incoming.on_frame(f).unwrap() {
                responses
                    .entry(f.request_id().0)
                    .or_default()
                    .extend_from_slice(f.payload());
            }
        }
    }
    assert!(decoder.decode_eof(&mut buf).unwrap().is_none());
    assert_eq!(incoming.open_streams(), 0, "every stream ended");
    responses.into_values().flatten().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn unpack_of_pack_is_the_input(input in data(), o in options()) {
        let input = Bytes::from(input);
        let wire = pack(&input, &o);
        prop_assert_eq!(unpack(&wire, o.chunk), input.to_vec());
    }

    #[test]
    fn garbage_frames_never_panic(
        frames in prop::collection::vec(
            (0u8..8, 0u8..8, 0u8..16, 0u8..16, prop::collection::vec(any::<u8>(), 0..64)),
            0..30,
        ),
        zstd_start in any::<bool>(),
    ) {
        let mut incoming = IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
        if zstd_start {
            let settings = Frame::new(RequestId(1), StreamId(2), StreamFlags::STREAM_BEGIN, FrameType::StreamSettings, 0, "\x08zstd-8mb").unwrap();
            incoming.on_frame(settings).unwrap();
        }
        for (stream, flags, t, f, payload) in frames {
            let frame = Frame::from_raw(RequestId(1), StreamId(stream), StreamFlags::from_bits_retain(flags), t, f, payload).unwrap();
            if let Err(e) = incoming.on_frame(frame) {
                prop_assert!(e.is_protocol_violation());
            }
        }
    }
}
