//! The client reactor, with commands in flight, on arbitrary server frames: errors are
//! fine, panics are not.
#![no_main]

use bytes::{Bytes, BytesMut};
use hgframe_reactor::{ClientConfig, ClientReactor};
use hgframe_wire::Frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut client = ClientReactor::new(ClientConfig::default());
    for _ in 0..3 {
        let _ = client.call_command(b"echo", [(Bytes::from("k"), Bytes::from("v"))], None);
    }
    let mut out = BytesMut::new();
    while client.poll_transmit(&mut out, 1 << 16) > 0 {
        out.clear();
    }
    for frame in Frames::new(Bytes::copy_from_slice(data)).map_while(Result::ok) {
        if client.on_frame(frame).is_err() {
            break;
        }
    }
    let _ = client.on_input_eof();
});
