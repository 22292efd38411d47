//! The client reactor, with commands in flight, fed arbitrary server frames: events only
//! for requests in flight, its own output valid, a failed client refuses every call.
//!
//! A thin shell: the checks live in `hgframe_reactor::fuzzing::client_session`, so tests
//! run them too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = hgframe_reactor::fuzzing::client_session(data) {
        panic!("{broken}");
    }
});
