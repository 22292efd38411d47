//! The server reactor on arbitrary frames: one action per frame, never a panic, output
//! always drainable.
#![no_main]

use bytes::{Bytes, BytesMut};
use hgframe_reactor::{ServerConfig, ServerReactor};
use hgframe_wire::Frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut config = ServerConfig::default();
    config.set_defer_output(mode % 2 == 1);
    let mut reactor = ServerReactor::new(config);
    for frame in Frames::new(Bytes::copy_from_slice(rest)).map_while(Result::ok) {
        let _ = reactor.on_frame(frame);
    }
    let _ = reactor.on_input_eof();
    let mut out = BytesMut::new();
    while reactor.poll_transmit(&mut out, 1 << 16) > 0 {
        out.clear();
    }
});
