//! The incremental frame decoder on arbitrary bytes, cut at arbitrary places: it must never
//! panic, and must agree with the whole-buffer iterator.
#![no_main]

use bytes::{Bytes, BytesMut};
use hgframe_wire::{FrameDecoder, Frames};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).max(1);
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut incremental = Vec::new();
    let mut failed = false;
    for piece in input.chunks(cut) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => incremental.push(f),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    if !failed {
        while let Ok(Some(f)) = decoder.decode_eof(&mut buf) {
            incremental.push(f);
        }
    }
    let whole: Vec<_> = Frames::new(Bytes::copy_from_slice(input))
        .map_while(Result::ok)
        .collect();
    assert_eq!(incremental, whole);
});
