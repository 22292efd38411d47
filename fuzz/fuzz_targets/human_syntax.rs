//! The human-readable frame syntax: arbitrary text parses or fails cleanly, and
//! decode(encode(frame)) == frame for arbitrary frames.
//!
//! A thin shell: the checks live in `hgframe_wire::fuzzing::human_syntax`, so tests run
//! them too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = hgframe_wire::fuzzing::human_syntax(data) {
        panic!("{broken}");
    }
});
