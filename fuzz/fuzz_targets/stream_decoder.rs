//! Incoming streams on arbitrary frames, on corrupt and hostile zstd-8mb content, and on
//! real zstd streams with one byte changed: never a panic, never more than the decode cap.
//!
//! A thin shell: the checks live in `hgframe_stream::fuzzing::stream_decoder`, so tests run
//! them too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = hgframe_stream::fuzzing::stream_decoder(data) {
        panic!("{broken}");
    }
});
