//! Incoming streams on arbitrary input. Mode 0: the input is a byte stream of frames.
//! Mode 1: the input is the content of a valid `zstd-8mb` stream's encoded frames, so
//! the zstd decoder itself meets garbage (bombs, corrupt blocks) under the decode cap.
#![no_main]

use bytes::Bytes;
use hgframe_stream::{DecodeLimits, IncomingStreams, Profiles, Side};
use hgframe_wire::payload::stream_settings::StreamSettings;
use hgframe_wire::{Frame, FrameType, Frames, RequestId, StreamFlags, StreamId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut incoming = IncomingStreams::new(Side::Server, Profiles::default(), DecodeLimits::default());
    if mode % 2 == 0 {
        for frame in Frames::new(Bytes::copy_from_slice(rest)).map_while(Result::ok) {
            if incoming.on_frame(frame).is_err() {
                break;
            }
        }
        return;
    }
    let Ok(settings) = StreamSettings::new("zstd-8mb").encode() else {
        return;
    };
    let frame = |flags, t, payload: Bytes| {
        Frame::new(RequestId(1), StreamId(1), flags, t, 0, payload).ok()
    };
    let Some(first) = frame(StreamFlags::STREAM_BEGIN, FrameType::StreamSettings, settings) else {
        return;
    };
    if incoming.on_frame(first).is_err() {
        return;
    }
    for chunk in rest.chunks(4096) {
        let Some(f) = frame(StreamFlags::ENCODED, FrameType::CommandData, Bytes::copy_from_slice(chunk)) else {
            return;
        };
        match incoming.on_frame(f) {
            Ok(Some(decoded)) => assert!(decoded.payload().len() <= DecodeLimits::default().max_decoded_frame_len),
            Ok(None) => {}
            Err(_) => break,
        }
    }
});
