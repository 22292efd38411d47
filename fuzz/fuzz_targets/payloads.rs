//! The payload codecs (command-argument, text-output, stream-settings, error-response) on
//! arbitrary bytes: errors are fine, panics are not, and what decodes re-encodes to the
//! same bytes.
//!
//! A thin shell: the checks live in `hgframe_wire::fuzzing::payloads`, so tests run them
//! too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = hgframe_wire::fuzzing::payloads(data) {
        panic!("{broken}");
    }
});
