//! The server reactor fed arbitrary client frames by a driver that answers every command it
//! dispatches (at once, later, in pieces, on its own streams): limits hold, output is
//! valid, every command gets exactly one final frame.
//!
//! A thin shell: the checks live in `hgframe_reactor::fuzzing::server_session`, so tests
//! run them too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = hgframe_reactor::fuzzing::server_session(data) {
        panic!("{broken}");
    }
});
