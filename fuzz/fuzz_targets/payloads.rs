//! Every payload codec on arbitrary bytes: errors are fine, panics are not; what decodes
//! re-encodes to the same bytes.
#![no_main]

use bytes::Bytes;
use hgframe_wire::payload::command_argument::ArgumentHead;
use hgframe_wire::payload::stream_settings::StreamSettings;
use hgframe_wire::payload::text_output;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    let _ = ArgumentHead::parse(&payload);
    if let Ok(settings) = StreamSettings::parse(&payload) {
        assert_eq!(settings.encode().ok(), Some(payload.clone()));
    }
    if let Ok(atoms) = text_output::decode(&payload) {
        let again = text_output::encode(&atoms, usize::MAX).ok();
        assert_eq!(again, Some(payload));
        for atom in atoms {
            let _ = atom.render();
        }
    }
});
