//! Faults of the input are reported as what they are.

mod common;

use bytes::{BufMut, BytesMut};
use common::{answers, command, on_stream, run, server};
use hgframe_engine::{EngineConfig, Permission, Registry, Scope};
use hgframe_wire::codec::FrameCodec;
use tokio_util::codec::FramedRead;

#[tokio::test]
async fn a_frame_over_the_length_limit_is_reported_as_such() {
    // One good command, then a frame header that claims a payload over the limit: the
    // client used to hear "partial command request 3", now it hears the real fault.
    let mut r = Registry::new();
    r.register("echo", Permission::ReadOnly, common::echo);
    let mut config = EngineConfig::default();
    config.reactor_mut().set_max_frame_payload(1024);
    let server = server(r, config);
    let mut bytes = BytesMut::new();
    for frame in on_stream([command(1, "echo", &[], Some(&b"hi"[..]))]) {
        frame.encode(&mut bytes);
    }
    // A command-name frame of request 3 whose header says 5,000 bytes.
    bytes.put_slice(&[0x88, 0x13, 0x00, 0x03, 0x00, 0x01, 0x00, 0x11]);
    bytes.put_slice(&[b'x'; 100]);
    let codec = FrameCodec::with_max_payload_len(server.config().reactor().max_frame_payload());
    let input = Box::pin(FramedRead::new(std::io::Cursor::new(bytes.freeze()), codec));
    let (out, stats) = run(&server, true, Scope::Connection, input).await;
    let got = answers(out);
    assert_eq!(
        got[&1].data, b"hi",
        "the command before the fault is answered"
    );
    let error = got
        .values()
        .find_map(|a| a.error.clone())
        .expect("a protocol error");
    assert!(error.contains("cannot be read as frames"), "{error}");
    assert!(error.contains("5000") || error.contains("1024"), "{error}");
    assert!(!error.contains("partial command"), "{error}");
    assert!(matches!(
        stats.outcome,
        hgframe_engine::Outcome::InputFailed(_)
    ));
}
