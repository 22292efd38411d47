//! Whatever a peer sends, the reactors answer with actions or typed errors: no panic,
//! and the server never holds more than its limit for partial commands.

use hgframe_reactor::fuzzing::{client_bytes, server_bytes};
use hgframe_reactor::ServerConfig;
use hgframe_wire::{Frame, RequestId, StreamFlags, StreamId};
use proptest::prelude::*;

/// Frames that are mostly plausible: low ids, defined types, small payloads that
/// sometimes look like argument headers.
fn frame_strategy() -> impl Strategy<Value = Frame> {
    (
        0u16..8,
        0u8..4,
        0u8..8,
        prop_oneof![4 => 1u8..=8, 1 => 0u8..16],
        0u8..16,
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            (
                0u16..50,
                0u16..300,
                proptest::collection::vec(any::<u8>(), 0..60)
            )
                .prop_map(|(n, v, rest)| {
                    let mut p = n.to_le_bytes().to_vec();
                    p.extend_from_slice(&v.to_le_bytes());
                    p.extend_from_slice(&rest);
                    p
                }),
        ],
    )
        .prop_map(|(r, s, sf, t, f, p)| {
            Frame::from_raw(
                RequestId(r),
                StreamId(s),
                StreamFlags::from_bits_retain(sf),
                t,
                f,
                p,
            )
            .unwrap()
        })
}

fn encode(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.to_bytes().to_vec()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn server_survives_any_frames(frames in proptest::collection::vec(frame_strategy(), 0..40)) {
        let mut config = ServerConfig::default();
        config.set_max_buffered_data(200).set_max_args_per_command(3);
        let outcome = server_bytes(&encode(&frames), config);
        prop_assert_eq!(outcome.frames, frames.len());
        prop_assert!(outcome.max_buffered <= 200);
    }

    #[test]
    fn server_survives_plausible_sessions(frames in proptest::collection::vec(frame_strategy(), 1..60)) {
        // One client stream, opened by the first frame: the reactor judges the frames
        // themselves rather than stopping at the stream rules.
        let frames: Vec<Frame> = frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let flags = if i == 0 { StreamFlags::STREAM_BEGIN } else { StreamFlags::empty() };
                let request = RequestId(f.request_id().0 | 1);
                Frame::from_raw(request, StreamId(1), flags, f.frame_type(), f.flags(), f.payload().clone())
                    .unwrap()
            })
            .collect();
        let mut config = ServerConfig::default();
        config.set_max_buffered_data(300).set_max_args_per_command(3).set_max_receiving_commands(2);
        let outcome = server_bytes(&encode(&frames), config);
        prop_assert!(outcome.max_buffered <= 300);
    }

    #[test]
    fn server_survives_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = server_bytes(&bytes, ServerConfig::default());
    }

    #[test]
    fn client_survives_any_frames(frames in proptest::collection::vec(frame_strategy(), 0..40)) {
        let outcome = client_bytes(&encode(&frames));
        prop_assert_eq!(outcome.frames, frames.len());
    }
}
