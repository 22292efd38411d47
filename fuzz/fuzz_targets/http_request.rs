//! The HTTP request path: `HgFrameService` behind hyper's server connection (HTTP/1.1
//! or h2c) on an in-memory pipe, on tokio's paused clock, fed raw connection bytes or
//! one request made by hyper's client with fuzzed path, headers and body: no panic, the
//! connection ends once its client is gone, nothing is left running or charged, a 200
//! answer's frames are valid and answer every handler started.
//!
//! A thin shell: the checks live in `hgframe_http::fuzzing::http_request`, so tests run
//! them too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = hgframe_http::fuzzing::http_request(data) {
        panic!("{broken}");
    }
});
