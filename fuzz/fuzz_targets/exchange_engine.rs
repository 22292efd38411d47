//! A server engine serving one byte-stream connection over an in-memory duplex, on
//! tokio's paused clock, to a client that sends arbitrary bytes cut at arbitrary places
//! (and may stop reading, pause, or never close), with handlers that answer, fail,
//! panic and stream: no panic, the connection always ends, nothing is left running or
//! charged, the output is valid, every handler started gets a terminal answer.
//!
//! A thin shell: the checks live in `hgframe_engine::fuzzing::exchange_engine`, so tests
//! run them too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = hgframe_engine::fuzzing::exchange_engine(data) {
        panic!("{broken}");
    }
});
