//! The expansion-ratio bound of `DecodeLimits`: a stream may decode to at most
//! `max_expansion_ratio` times the encoded bytes it sent, beyond `expansion_allowance`,
//! so a compression bomb cut into frames that each stay under the per-frame cap still
//! cannot make the receiver decode gigabytes.
#![cfg(feature = "zstd")]

use bytes::Bytes;
use hgframe_stream::{
    DecodeLimits, EncodingSettings, IncomingStreams, OutgoingStream, Profiles, Side, StreamError,
};
use hgframe_wire::{Frame, FrameType, RequestId, StreamId};

/// A zstd stream of `len` zero bytes in `bytes-response` frames of request 1, each
/// decoding to at most 32 KiB (so under the per-frame cap): about 2000 times smaller on
/// the wire.
fn zero_bomb(len: usize) -> Vec<Frame> {
    let mut stream = OutgoingStream::new(
        StreamId(2),
        Side::Server,
        &Profiles::default(),
        &EncodingSettings::new("zstd-8mb"),
    )
    .unwrap();
    let mut frames = Vec::new();
    stream
        .push_data(
            RequestId(1),
            FrameType::BytesResponse,
            Bytes::from(vec![0u8; len]),
            true,
            &mut frames,
        )
        .unwrap();
    frames
}

/// Feeds `frames`; returns the wire bytes fed, the bytes decoded, and the error if any.
fn feed(limits: DecodeLimits, frames: &[Frame]) -> (u64, u64, Option<StreamError>) {
    limits.validate().unwrap();
    let mut incoming = IncomingStreams::new(Side::Client, Profiles::default(), limits);
    let (mut wire, mut decoded) = (0u64, 0u64);
    for frame in frames {
        wire += frame.payload().len() as u64;
        match incoming.on_frame(frame.clone()) {
            Ok(Some(f)) => decoded += f.payload().len() as u64,
            Ok(None) => {}
            Err(e) => return (wire, decoded, Some(e)),
        }
    }
    (wire, decoded, None)
}

#[test]
fn a_bomb_under_the_frame_cap_is_stopped_by_the_expansion_ratio() {
    let frames = zero_bomb(256 << 20);
    let mut limits = DecodeLimits::default();
    limits.expansion_allowance(1 << 20);
    let (wire, decoded, error) = feed(limits, &frames);
    let error = error.expect("the bomb is refused");
    assert!(error.is_protocol_violation());
    assert_eq!(error.stream_id(), Some(StreamId(2)));
    let message = error.to_string();
    assert!(message.starts_with("stream 2: "), "{message}");
    assert!(message.contains("1000 times"), "{message}");
    assert!(
        matches!(
            error,
            StreamError::ExpansionTooLarge {
                ratio: 1000,
                allowance: 1_048_576,
                ..
            }
        ),
        "{error:?}"
    );
    // Never more than the allowance plus the ratio times what was sent.
    assert!(decoded <= (1 << 20) + 1000 * wire, "{decoded} from {wire}");
    assert!(decoded < 16 << 20, "{decoded} bytes decoded");
}

#[test]
fn without_the_ratio_bound_the_same_bomb_decodes_in_full() {
    // So the test above fails if the bound is removed: each frame passes the frame cap.
    let frames = zero_bomb(256 << 20);
    let mut limits = DecodeLimits::default();
    limits.max_expansion_ratio(u32::MAX);
    let (wire, decoded, error) = feed(limits, &frames);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(decoded, 256 << 20);
    assert!(wire * 1000 < decoded, "{wire} wire bytes");
}

#[test]
fn the_allowance_lets_small_compressible_messages_pass() {
    // 512 KiB of zeros, thousands of times smaller on the wire, within the allowance.
    let (_, decoded, error) = feed(DecodeLimits::default(), &zero_bomb(512 << 10));
    assert!(error.is_none(), "{error:?}");
    assert_eq!(decoded, 512 << 10);
    // With no allowance and a ratio of 10, it is refused.
    let mut strict = DecodeLimits::default();
    strict.expansion_allowance(0).max_expansion_ratio(10);
    let (_, _, error) = feed(strict, &zero_bomb(512 << 10));
    assert!(matches!(error, Some(StreamError::ExpansionTooLarge { .. })));
}

#[test]
fn ordinary_data_is_not_refused() {
    // Text compresses a few times, far from the bound: 8 MiB passes with no allowance.
    let mut text = Vec::new();
    let mut x = 1u64;
    while text.len() < 8 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.extend_from_slice(
            ["def ", "self ", "return\n", "value "][(x % 4) as usize].as_bytes(),
        );
    }
    let mut stream = OutgoingStream::new(
        StreamId(2),
        Side::Server,
        &Profiles::default(),
        &EncodingSettings::new("zstd-8mb"),
    )
    .unwrap();
    let mut frames = Vec::new();
    let len = text.len() as u64;
    stream
        .push_data(
            RequestId(1),
            FrameType::BytesResponse,
            text.into(),
            true,
            &mut frames,
        )
        .unwrap();
    let mut limits = DecodeLimits::default();
    limits.expansion_allowance(0);
    let (_, decoded, error) = feed(limits, &frames);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(decoded, len);
}

#[test]
fn validate_refuses_limits_out_of_range() {
    assert!(DecodeLimits::default().validate().is_ok());
    for (set, name) in [
        (
            (|l: &mut DecodeLimits| {
                l.max_expansion_ratio(0);
            }) as fn(&mut DecodeLimits),
            "max_expansion_ratio",
        ),
        (
            |l: &mut DecodeLimits| {
                l.max_decoded_frame_len(0);
            },
            "max_decoded_frame_len",
        ),
        (
            |l: &mut DecodeLimits| {
                l.max_decoding_streams(0);
            },
            "max_decoding_streams",
        ),
    ] {
        let mut limits = DecodeLimits::default();
        set(&mut limits);
        let e = limits.validate().unwrap_err();
        assert_eq!(e.setting(), name);
        assert!(e.to_string().contains(name), "{e}");
    }
}
