//! The server reactor passes its configured expansion bound to the streams it decodes:
//! command data that decodes to more than `max_expansion_ratio` times its encoded size
//! (past `expansion_allowance`) is refused, naming the stream; the default bound lets
//! the same data through.
#![cfg(feature = "zstd")]

use bytes::Bytes;
use hgframe_reactor::{ClientConfig, ClientReactor, ServerAction, ServerConfig, ServerReactor};
use hgframe_wire::Frame;

/// The frames of a `put` whose 4 MiB of zeros go zstd-encoded.
fn zeros_put() -> Vec<Frame> {
    let mut config = ClientConfig::default();
    config.set_encoding("zstd-8mb");
    let mut client = ClientReactor::new(config);
    client
        .call_command(b"put", [], Some(Bytes::from(vec![0u8; 4 << 20])))
        .unwrap();
    std::iter::from_fn(|| client.poll_frame()).collect()
}

/// The protocol error the server answers `frames` with, if any.
fn error_for(config: ServerConfig, frames: Vec<Frame>) -> Option<String> {
    let mut server = ServerReactor::new(config);
    frames
        .into_iter()
        .find_map(|frame| match server.on_frame(frame) {
            ServerAction::Error(e) => Some(e.to_string()),
            _ => None,
        })
}

#[test]
fn a_configured_expansion_ratio_refuses_what_the_default_lets_through() {
    assert_eq!(error_for(ServerConfig::default(), zeros_put()), None);
    let mut strict = ServerConfig::default();
    strict
        .set_max_expansion_ratio(10)
        .set_expansion_allowance(64 << 10);
    let e = error_for(strict, zeros_put()).expect("refused");
    assert!(e.contains("stream 1"), "{e}");
    assert!(e.contains("10 times"), "{e}");
}
