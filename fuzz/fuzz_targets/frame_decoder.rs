//! The incremental frame decoder on arbitrary bytes cut at arbitrary places: never a panic,
//! and the same frames (and failure) as the whole-buffer iterator.
//!
//! A thin shell: the checks live in `hgframe_wire::fuzzing::frame_decoder`, so tests run
//! them too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = hgframe_wire::fuzzing::frame_decoder(data) {
        panic!("{broken}");
    }
});
