//! The stream rules and the content encoding, end to end: frames made by
//! `OutgoingStream`, checked and decoded by `IncomingStreams`.
#![cfg(feature = "zstd")]

use bytes::{Bytes, BytesMut};
use hgframe_stream::{
    DecodeLimits, EncodingSettings, IncomingStreams, OutgoingStream, Profiles, Side, StreamError,
};
use hgframe_wire::build::{text_output_frame, FrameTarget};
use hgframe_wire::payload::text_output::TextAtom;
use hgframe_wire::{Frame, FrameDecoder, FrameType, RequestId, StreamFlags, StreamId};

const ZSTD: &str = "zstd-8mb";

fn text(n: usize, seed: u64) -> Bytes {
    let words = [
        "def", "self", "return", "value", "stream", "frame", "None", "import",
    ];
    let mut out = Vec::with_capacity(n + 16);
    let mut x = seed | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 8) as usize].as_bytes());
        out.push(if x % 7 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(n);
    Bytes::from(out)
}

fn random(n: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn server_stream(id: u8, profile: &str) -> OutgoingStream {
    OutgoingStream::new(
        StreamId(id),
        Side::Server,
        &Profiles::default(),
        &EncodingSettings::new(profile),
    )
    .unwrap()
}

fn client_side() -> IncomingStreams {
    IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default())
}

/// Decodes all frames, returning the bytes-response data per request id.
fn receive(frames: &[Frame]) -> std::collections::BTreeMap<u16, Vec<u8>> {
    let mut incoming = client_side();
    let mut out = std::collections::BTreeMap::<u16, Vec<u8>>::new();
    for f in frames {
        if let Some(f) = incoming.on_frame(f.clone()).unwrap() {
            assert!(!f.stream_flags().contains(StreamFlags::ENCODED));
            if f.known_type() == Some(FrameType::BytesResponse) {
                out.entry(f.request_id().0)
                    .or_default()
                    .extend_from_slice(f.payload());
            }
        }
    }
    out
}

fn frame(stream: u8, flags: StreamFlags, t: FrameType, payload: &'static [u8]) -> Frame {
    Frame::new(RequestId(1), StreamId(stream), flags, t, 0x02, payload).unwrap()
}

fn push(s: &mut OutgoingStream, request: u16, data: Bytes, eos: bool, out: &mut Vec<Frame>) {
    s.push_data(RequestId(request), FrameType::BytesResponse, data, eos, out)
        .unwrap();
}

#[test]
fn zstd_stream_begins_with_settings_and_marks_encoded_frames() {
    let mut s = server_stream(2, ZSTD);
    let mut out = Vec::new();
    push(&mut s, 1, text(100_000, 1), true, &mut out);
    s.end(&mut out).unwrap();
    let first = &out[0];
    assert_eq!(first.known_type(), Some(FrameType::StreamSettings));
    assert_eq!(first.stream_flags(), StreamFlags::STREAM_BEGIN);
    assert_eq!(&first.payload()[..], b"\x08zstd-8mb");
    for f in &out[1..] {
        assert!(f.stream_flags().contains(StreamFlags::ENCODED));
        assert!(!f.stream_flags().contains(StreamFlags::STREAM_BEGIN));
    }
    let last = out.last().unwrap();
    assert!(last.stream_flags().contains(StreamFlags::STREAM_END));
    assert_eq!(last.flags(), 0x02); // eos
    assert!(out[1..out.len() - 1].iter().all(|f| f.flags() == 0x01));
    assert_eq!(receive(&out)[&1], text(100_000, 1));
    assert_eq!(s.stats().encoded_frames as usize, out.len() - 1);
    assert_eq!(
        s.stats().wire_bytes as usize,
        out.iter().map(Frame::encoded_len).sum::<usize>()
    );
}

#[test]
fn identity_stream_sends_no_settings_and_never_encodes() {
    let mut s = server_stream(2, "identity");
    let mut out = Vec::new();
    push(&mut s, 1, text(70_000, 2), true, &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].stream_flags(), StreamFlags::STREAM_BEGIN);
    assert!(out
        .iter()
        .all(|f| f.known_type() == Some(FrameType::BytesResponse)));
    assert!(out[1..].iter().all(|f| f.stream_flags().is_empty()));
    assert_eq!(receive(&out)[&1], text(70_000, 2));
}

#[test]
fn reopening_a_closed_stream_starts_over() {
    let mut s = server_stream(2, ZSTD);
    let mut out = Vec::new();
    push(&mut s, 1, text(5000, 3), true, &mut out);
    s.end(&mut out).unwrap();
    let first_life = out.len();
    push(&mut s, 3, text(5000, 3), true, &mut out);
    s.end(&mut out).unwrap();
    // The second life opens with stream-begin and settings again, and its context is
    // new: the same message costs as much as the first time.
    assert_eq!(
        out[first_life].known_type(),
        Some(FrameType::StreamSettings)
    );
    assert!(out[first_life]
        .stream_flags()
        .contains(StreamFlags::STREAM_BEGIN));
    assert_eq!(out[1].payload().len(), out[first_life + 1].payload().len());
    let got = receive(&out);
    assert_eq!(got[&1], text(5000, 3));
    assert_eq!(got[&3], text(5000, 3));
    assert_eq!(s.stats().openings, 2);
}

#[test]
fn a_stream_outlives_requests_and_keeps_its_history() {
    let mut s = server_stream(2, ZSTD);
    let mut out = Vec::new();
    let message = text(3000, 4);
    let mut sizes = Vec::new();
    for request in [1u16, 3, 5] {
        let before = out.len();
        push(&mut s, request, message.clone(), true, &mut out);
        sizes.push(
            out[before..]
                .iter()
                .map(|f| f.payload().len())
                .sum::<usize>(),
        );
        // Frames of other kinds between the responses do not disturb the context.
        let atom = TextAtom::new("working on %s", vec!["it".to_owned()]);
        let target = FrameTarget::new(RequestId(request), StreamId(2));
        s.push_frame(text_output_frame(target, &[atom]).unwrap(), &mut out)
            .unwrap();
    }
    assert!(sizes[1] * 10 < sizes[0], "{sizes:?}");
    let got = receive(&out);
    for request in [1, 3, 5] {
        assert_eq!(got[&request], message);
    }
}

#[test]
fn one_request_on_several_streams() {
    let mut a = server_stream(2, ZSTD);
    let mut b = server_stream(4, "identity");
    let mut out = Vec::new();
    push(
        &mut a,
        1,
        Bytes::from_static(b"first half, "),
        false,
        &mut out,
    );
    push(
        &mut b,
        1,
        Bytes::from_static(b"second half"),
        true,
        &mut out,
    );
    a.end(&mut out).unwrap();
    b.end(&mut out).unwrap();
    assert_eq!(receive(&out)[&1], b"first half, second half");
}

#[test]
fn each_message_decodes_whole_once_its_last_frame_arrives() {
    // Messages pushed one by one; the wire bytes arrive in 7-byte pieces. After the
    // last frame of each message, everything sent so far has been decoded: nothing is
    // held back in either context. (That every frame, not only a message's last,
    // decodes on arrival is tests/on_arrival.rs.)
    let mut s = server_stream(2, ZSTD);
    s.set_max_frame_size(1000);
    let messages: Vec<Bytes> = (0..20).map(|i| text(500 + i * 400, i as u64)).collect();
    let mut decoder = FrameDecoder::new();
    let mut incoming = client_side();
    let mut got = Vec::new();
    let mut buf = BytesMut::new();
    for (i, m) in messages.iter().enumerate() {
        let mut frames = Vec::new();
        push(&mut s, 1 + 2 * i as u16, m.clone(), true, &mut frames);
        let mut wire = BytesMut::new();
        for f in &frames {
            assert!(f.payload().len() <= 1000);
            f.encode(&mut wire);
        }
        for piece in wire.chunks(7) {
            buf.extend_from_slice(piece);
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                if let Some(f) = incoming.on_frame(f).unwrap() {
                    got.extend_from_slice(f.payload());
                }
            }
        }
        let want = messages[..=i].concat();
        assert!(
            got == want,
            "after message {i}: {} of {} bytes",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn each_streamed_frame_decodes_to_a_bounded_piece() {
    // Streaming path; and a piece large enough for one pass, which the encoder declines
    // because its blocks could decode to more than the raw cap.
    for (one_pass_min, len) in [(usize::MAX, 500_000), (0, 1_500_000)] {
        check_bounded_pieces(one_pass_min, len);
    }
}

fn check_bounded_pieces(one_pass_min: usize, len: usize) {
    let mut s = server_stream(2, ZSTD);
    s.set_one_pass_min_len(one_pass_min);
    s.set_max_frame_raw_len(20_000);
    let data = text(len, 9);
    let mut out = Vec::new();
    push(&mut s, 1, data.clone(), true, &mut out);
    let mut incoming = IncomingStreams::new(
        Side::Client,
        Profiles::default(),
        *DecodeLimits::default().max_decoded_frame_len(20_000),
    );
    let mut got = Vec::new();
    for f in out {
        if let Some(f) = incoming.on_frame(f).unwrap() {
            assert!(f.payload().len() <= 20_000);
            got.extend_from_slice(f.payload());
        }
    }
    assert_eq!(got, data);
}

#[test]
fn one_pass_frames_end_at_blocks_and_stay_within_limits() {
    let data = text(3 << 20, 10);
    for max in [100, 4096, 32768, 200_000] {
        let mut s = server_stream(2, ZSTD);
        s.set_max_frame_size(max);
        let mut out = Vec::new();
        push(&mut s, 1, data.clone(), true, &mut out);
        assert!(out.iter().all(|f| f.payload().len() <= max));
        let mut incoming = IncomingStreams::new(
            Side::Client,
            Profiles::default(),
            *DecodeLimits::default().max_decoded_frame_len(128 * 1024),
        );
        let mut got = Vec::new();
        for f in out {
            if let Some(f) = incoming.on_frame(f).unwrap() {
                got.extend_from_slice(f.payload());
            }
        }
        assert_eq!(got, data, "frame size {max}");
    }
}

#[test]
fn mixed_raw_and_encoded_frames_share_a_stream() {
    let mut s = server_stream(2, ZSTD);
    let mut out = Vec::new();
    push(&mut s, 1, text(4000, 11), false, &mut out);
    s.push_raw_data(
        RequestId(1),
        FrameType::BytesResponse,
        random(3000, 1),
        false,
        &mut out,
    )
    .unwrap();
    let raw_frame = out.last().unwrap();
    assert!(!raw_frame.stream_flags().contains(StreamFlags::ENCODED));
    push(&mut s, 1, text(4000, 11), true, &mut out);
    s.end(&mut out).unwrap();
    let want = [text(4000, 11), random(3000, 1), text(4000, 11)].concat();
    assert_eq!(receive(&out)[&1], want);
}

#[test]
fn level_changes_between_frames_need_no_notice() {
    let mut s = server_stream(2, ZSTD);
    let mut out = Vec::new();
    let mut want = Vec::new();
    for (i, level) in [3, 1, 19, -5, 22, 3].into_iter().enumerate() {
        s.set_level(level).unwrap();
        assert_eq!(s.level(), level);
        let m = text(50_000, i as u64);
        want.extend_from_slice(&m);
        push(&mut s, 1, m, false, &mut out);
    }
    push(&mut s, 1, Bytes::new(), true, &mut out);
    assert_eq!(receive(&out)[&1], want);
    assert!(matches!(s.set_level(99), Err(StreamError::Encoding { .. })));
    // A lower level trades ratio for speed: level 19 output is smaller than level -5's.
    let size_at = |level| {
        let mut s = server_stream(2, ZSTD);
        s.set_level(level).unwrap();
        let mut out = Vec::new();
        push(&mut s, 1, text(200_000, 5), true, &mut out);
        out.iter().map(Frame::encoded_len).sum::<usize>()
    };
    assert!(size_at(19) < size_at(-5));
}

#[test]
fn incompressible_data_never_exceeds_the_frame_size() {
    let data = random(300_000, 7);
    for one_pass in [0, usize::MAX] {
        for max in [1, 9, 100, 1000, 32768, 65535] {
            let mut s = server_stream(2, ZSTD);
            s.set_max_frame_size(max);
            s.set_one_pass_min_len(one_pass);
            let mut out = Vec::new();
            if max < 9 {
                // The stream-settings frame itself does not fit.
                assert!(matches!(
                    s.push_data(
                        RequestId(1),
                        FrameType::BytesResponse,
                        data.clone(),
                        true,
                        &mut out
                    ),
                    Err(StreamError::FrameTooLarge { len: 9, .. })
                ));
                continue;
            }
            push(&mut s, 1, data.clone(), true, &mut out);
            assert!(out.iter().all(|f| f.payload().len() <= max), "max {max}");
            assert_eq!(receive(&out)[&1], data);
        }
    }
}

#[test]
fn precompressed_data_reaches_the_receiver_as_the_original_bytes() {
    let cached_original = text(200_000, 12);
    let cached = Bytes::from(zstd::bulk::compress(&cached_original, 19).unwrap());
    let mut s = server_stream(2, ZSTD);
    s.set_max_frame_size(10_000);
    let mut out = Vec::new();
    push(&mut s, 1, text(30_000, 13), true, &mut out);
    s.push_precompressed(
        RequestId(3),
        FrameType::BytesResponse,
        cached.clone(),
        true,
        &mut out,
    )
    .unwrap();
    push(&mut s, 5, text(30_000, 13), true, &mut out);
    // Precompressed first on a fresh stream too (no frame to end).
    let mut fresh = server_stream(4, ZSTD);
    fresh.set_max_frame_size(10_000);
    fresh
        .push_precompressed(
            RequestId(7),
            FrameType::BytesResponse,
            cached.clone(),
            true,
            &mut out,
        )
        .unwrap();
    assert!(out.iter().all(|f| f.payload().len() <= 10_000));
    let got = receive(&out);
    assert_eq!(got[&1], text(30_000, 13));
    assert_eq!(got[&3], cached_original);
    assert_eq!(got[&5], text(30_000, 13));
    assert_eq!(got[&7], cached_original);
    assert_eq!(s.stats().precompressed_bytes, cached.len() as u64);
}

#[test]
fn precompressed_data_is_checked() {
    let mut s = server_stream(2, ZSTD);
    let mut out = Vec::new();
    let refused = |r: Result<(), StreamError>| matches!(r, Err(StreamError::Encoding { .. }));
    let good = zstd::bulk::compress(b"hello", 3).unwrap();
    for bad in [
        Bytes::from_static(b"not zstd"),
        Bytes::copy_from_slice(&good[..good.len() - 1]),
        Bytes::new(),
    ] {
        assert!(refused(s.push_precompressed(
            RequestId(1),
            FrameType::BytesResponse,
            bad,
            true,
            &mut out
        )));
    }
    assert!(out.is_empty(), "nothing is sent for refused data");
    let mut id = server_stream(4, "identity");
    assert!(refused(id.push_precompressed(
        RequestId(1),
        FrameType::BytesResponse,
        Bytes::from(good),
        true,
        &mut out
    )));
}

// ---- what the receiver refuses ----

fn rejects(frames: &[Frame], local: Side) -> StreamError {
    let mut incoming = IncomingStreams::new(local, Profiles::default(), DecodeLimits::default());
    for f in frames {
        if let Err(e) = incoming.on_frame(f.clone()) {
            assert!(e.is_protocol_violation(), "{e}");
            return e;
        }
    }
    panic!("all frames accepted");
}

const BEGIN: StreamFlags = StreamFlags::STREAM_BEGIN;
const BR: FrameType = FrameType::BytesResponse;
const SETTINGS: FrameType = FrameType::StreamSettings;

#[test]
fn frame_on_a_closed_stream_without_begin() {
    let e = rejects(&[frame(2, StreamFlags::empty(), BR, b"x")], Side::Client);
    assert!(matches!(e, StreamError::ClosedStream { id: StreamId(2) }));
    // After stream-end, the stream is closed again.
    let e = rejects(
        &[
            frame(2, BEGIN | StreamFlags::STREAM_END, BR, b"x"),
            frame(2, StreamFlags::empty(), BR, b"y"),
        ],
        Side::Client,
    );
    assert!(matches!(e, StreamError::ClosedStream { .. }));
}

#[test]
fn wrong_parity_either_way() {
    let e = rejects(&[frame(1, BEGIN, BR, b"x")], Side::Client);
    assert!(matches!(
        e,
        StreamError::WrongParity {
            id: StreamId(1),
            side: Side::Server
        }
    ));
    let e = rejects(
        &[frame(2, BEGIN, FrameType::CommandName, b"x")],
        Side::Server,
    );
    assert_eq!(
        e.to_string(),
        "received frame with even numbered stream ID: 2"
    );
}

#[test]
fn begin_on_an_open_stream() {
    let e = rejects(
        &[frame(2, BEGIN, BR, b"x"), frame(2, BEGIN, BR, b"y")],
        Side::Client,
    );
    assert!(matches!(e, StreamError::AlreadyOpen { .. }));
}

#[test]
fn settings_rules() {
    let e = rejects(
        &[
            frame(2, BEGIN, BR, b"x"),
            frame(2, StreamFlags::empty(), SETTINGS, b"\x08zstd-8mb"),
        ],
        Side::Client,
    );
    assert!(matches!(e, StreamError::SettingsWithoutBegin { .. }));
    let e = rejects(
        &[frame(
            2,
            BEGIN | StreamFlags::ENCODED,
            SETTINGS,
            b"\x08zstd-8mb",
        )],
        Side::Client,
    );
    assert!(matches!(e, StreamError::SettingsEncoded { .. }));
    let e = rejects(&[frame(2, BEGIN, SETTINGS, b"\x05zstd")], Side::Client);
    assert!(matches!(e, StreamError::BadSettings { .. }));
    let e = rejects(&[frame(2, BEGIN, SETTINGS, b"\x07brotli9")], Side::Client);
    assert!(matches!(e, StreamError::UnknownProfile { ref name } if name == "brotli9"));
    let e = rejects(
        &[frame(2, BEGIN, SETTINGS, b"\x08zstd-8mbPARAMS")],
        Side::Client,
    );
    assert!(matches!(e, StreamError::BadProfileParameters { .. }));
    // A profile we do not accept is unknown to us.
    let mut incoming = IncomingStreams::new(
        Side::Client,
        Profiles::identity_only(),
        DecodeLimits::default(),
    );
    assert!(matches!(
        incoming.on_frame(frame(2, BEGIN, SETTINGS, b"\x08zstd-8mb")),
        Err(StreamError::UnknownProfile { .. })
    ));
}

#[test]
fn encoded_frame_before_settings() {
    let e = rejects(
        &[frame(2, BEGIN | StreamFlags::ENCODED, BR, b"x")],
        Side::Client,
    );
    assert!(matches!(e, StreamError::EncodedBeforeSettings { .. }));
    let e = rejects(
        &[
            frame(2, BEGIN, BR, b"x"),
            frame(2, StreamFlags::ENCODED, BR, b"y"),
        ],
        Side::Client,
    );
    assert!(matches!(e, StreamError::EncodedBeforeSettings { .. }));
}

#[test]
fn explicit_identity_settings_are_consumed_and_pass_encoded_frames_through() {
    let mut incoming = client_side();
    assert!(incoming
        .on_frame(frame(2, BEGIN, SETTINGS, b"\x08identity"))
        .unwrap()
        .is_none());
    let f = incoming
        .on_frame(frame(
            2,
            StreamFlags::ENCODED | StreamFlags::STREAM_END,
            BR,
            b"plain",
        ))
        .unwrap()
        .unwrap();
    assert_eq!(&f.payload()[..], b"plain");
    assert_eq!(f.stream_flags(), StreamFlags::STREAM_END);
    assert!(!incoming.is_open(StreamId(2)));
}

fn zstd_frames(stream: u8, payload: Bytes) -> Vec<Frame> {
    vec![
        frame(stream, BEGIN, SETTINGS, b"\x08zstd-8mb"),
        Frame::new(
            RequestId(1),
            StreamId(stream),
            StreamFlags::ENCODED,
            BR,
            0x02,
            payload,
        )
        .unwrap(),
    ]
}

#[test]
fn decompression_bomb_is_refused() {
    let bomb = Bytes::from(zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap());
    assert!(bomb.len() < 32768);
    let e = rejects(&zstd_frames(2, bomb.clone()), Side::Client);
    assert!(matches!(
        e,
        StreamError::DecodedTooLarge {
            limit: 1_048_576,
            ..
        }
    ));
    // A raised cap still holds (the expansion ratio, which would stop this bomb first,
    // is lifted: tests/expansion.rs covers it).
    let mut incoming = IncomingStreams::new(
        Side::Client,
        Profiles::default(),
        *DecodeLimits::default()
            .max_decoded_frame_len(4 << 20)
            .max_expansion_ratio(u32::MAX),
    );
    let frames = zstd_frames(2, bomb);
    incoming.on_frame(frames[0].clone()).unwrap();
    assert!(matches!(
        incoming.on_frame(frames[1].clone()),
        Err(StreamError::DecodedTooLarge {
            limit: 4_194_304,
            ..
        })
    ));
    // The failed stream is forgotten.
    assert!(!incoming.is_open(StreamId(2)));
}

#[test]
fn window_beyond_8mb_is_refused() {
    let mut ctx = zstd::stream::raw::Encoder::new(3).unwrap();
    ctx.set_parameter(zstd::stream::raw::CParameter::WindowLog(24))
        .unwrap();
    let data = text(10_000, 1);
    let mut wire = Vec::with_capacity(65536);
    use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
    ctx.run(
        &mut InBuffer::around(&data[..]),
        &mut OutBuffer::around(&mut wire),
    )
    .unwrap();
    let pos = wire.len();
    ctx.flush(&mut OutBuffer::around_pos(&mut wire, pos))
        .unwrap();
    let e = rejects(&zstd_frames(2, Bytes::from(wire)), Side::Client);
    assert!(matches!(e, StreamError::Corrupt { .. }), "{e}");
}

#[test]
fn corrupt_payloads_are_errors() {
    // Garbage where a zstd frame should start.
    let e = rejects(
        &zstd_frames(2, Bytes::from_static(b"garbage garbage")),
        Side::Client,
    );
    assert!(matches!(e, StreamError::Corrupt { .. }));
    // A valid start, then a block header announcing a reserved block type.
    let mut s = server_stream(2, ZSTD);
    let mut out = Vec::new();
    push(&mut s, 1, text(1000, 1), false, &mut out);
    out.push(
        Frame::new(
            RequestId(1),
            StreamId(2),
            StreamFlags::ENCODED,
            BR,
            0x02,
            Bytes::from_static(&[0x07, 0, 0, 1, 2, 3]),
        )
        .unwrap(),
    );
    let e = rejects(&out, Side::Client);
    assert!(matches!(e, StreamError::Corrupt { .. }), "{e}");
}

#[test]
fn decoding_streams_are_limited() {
    let mut incoming = IncomingStreams::new(
        Side::Client,
        Profiles::default(),
        *DecodeLimits::default().max_decoding_streams(2),
    );
    for id in [2, 4] {
        incoming
            .on_frame(frame(id, BEGIN, SETTINGS, b"\x08zstd-8mb"))
            .unwrap();
    }
    // Identity streams hold no context and do not count.
    incoming.on_frame(frame(8, BEGIN, BR, b"x")).unwrap();
    assert!(matches!(
        incoming.on_frame(frame(6, BEGIN, SETTINGS, b"\x08zstd-8mb")),
        Err(StreamError::TooManyDecodingStreams { limit: 2 })
    ));
    // Closing one frees a slot.
    incoming
        .on_frame(frame(
            2,
            StreamFlags::STREAM_END,
            FrameType::TextOutput,
            b"",
        ))
        .unwrap();
    incoming
        .on_frame(frame(6, BEGIN, SETTINGS, b"\x08zstd-8mb"))
        .unwrap();
    assert_eq!(incoming.open_streams(), 3);
}

#[test]
fn settings_that_open_and_close_at_once() {
    let mut s = server_stream(2, ZSTD);
    let mut out = Vec::new();
    push(&mut s, 1, Bytes::new(), false, &mut out);
    s.end(&mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].stream_flags(), BEGIN | StreamFlags::STREAM_END);
    let mut incoming = client_side();
    assert!(incoming.on_frame(out[0].clone()).unwrap().is_none());
    assert!(!incoming.is_open(StreamId(2)));
}

#[test]
fn push_frame_replaces_stream_fields_and_checks_size() {
    let mut s = server_stream(2, ZSTD);
    s.set_max_frame_size(10);
    let mut out = Vec::new();
    let f = Frame::new(
        RequestId(1),
        StreamId(99),
        StreamFlags::STREAM_END,
        FrameType::ErrorResponse,
        2,
        "oops",
    )
    .unwrap();
    s.push_frame(f, &mut out).unwrap();
    assert_eq!(out.len(), 2); // settings, then the frame
    assert_eq!(out[1].stream_id(), StreamId(2));
    assert!(out[1].stream_flags().is_empty());
    let big = Frame::new(
        RequestId(1),
        StreamId(2),
        StreamFlags::empty(),
        FrameType::ErrorResponse,
        2,
        "much too long",
    )
    .unwrap();
    assert!(matches!(
        s.push_frame(big, &mut out),
        Err(StreamError::FrameTooLarge {
            len: 13,
            max: 10,
            ..
        })
    ));
    let settings = frame(2, BEGIN, SETTINGS, b"\x08zstd-8mb");
    assert!(s.push_frame(settings, &mut out).is_err());
}
