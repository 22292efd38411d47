//! The human-readable frame syntax on arbitrary text: never panics, and whatever parses
//! prints back to a line that parses to the same frame.
#![no_main]

use hgframe_wire::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(frame) = Frame::from_human(line) {
        assert_eq!(Frame::from_human(&frame.to_human()).ok(), Some(frame));
    }
});
