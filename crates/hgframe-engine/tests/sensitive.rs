//! A response marked sensitive (`Responder::set_sensitive`) never enters the compression
//! context that the exchange's other responses share: it travels raw on a stream of its
//! own.
//!
//! The proof is the context itself: a secret sent twice on one zstd-encoded exchange
//! compresses to a back-reference the second time if the first copy is in the context.
//! When the first copy was sensitive, the second one must be sent in full (the context
//! never saw it); when it was not, the second copy is a few bytes.

mod common;

use bytes::{Bytes, BytesMut};
use common::{command, on_stream};
use hgframe_engine::{
    Caller, CommandError, CommandInput, EngineConfig, Permission, Registry, Responder, Scope,
    Server, Transport,
};
use hgframe_wire::{Frame, FrameDecoder, FrameType, RequestId, StreamFlags};
use tokio::sync::mpsc;

/// 64 bytes that zstd cannot shorten alone, but can refer back to.
const SECRET: &[u8] = b"token=9f2c1e7ab4d3560812ef9ac7b1d4e6f0a3c5b7d9e1f2a4c6b8d0e2f4a6c8";

async fn secret(input: CommandInput, mut out: Responder) -> Result<(), CommandError> {
    if input.arg("sensitive").is_some() {
        out.set_sensitive().await?;
    }
    out.finish(Bytes::from_static(SECRET)).await?;
    Ok(())
}

/// The frames of each response, for two `secret` calls one after the other on one
/// zstd-encoded full-duplex exchange; the first marked sensitive if `first_sensitive`.
async fn two_secrets(first_sensitive: bool) -> (Vec<Frame>, Vec<Frame>) {
    let mut registry = Registry::new();
    registry.register("secret", Permission::ReadOnly, secret);
    let server = Server::new(registry, EngineConfig::default()).unwrap();
    let reactor = server.new_reactor(true, &["zstd-8mb".to_owned()]);
    assert_eq!(reactor.output_encoding(), "zstd-8mb");
    let (tx, rx) = mpsc::unbounded_channel::<Frame>();
    let input = Box::pin(tokio_stream_of(rx));
    let mut running = server.start(
        reactor,
        Scope::Request {
            permission: Permission::ReadOnly,
            command: None,
        },
        Caller::new(Transport::Http2),
        input,
        tracing::Span::none(),
    );
    let first_args: &[(&str, &str)] = if first_sensitive {
        &[("sensitive", "1")]
    } else {
        &[]
    };
    for frame in on_stream([command(1, "secret", first_args, None)]) {
        tx.send(frame).unwrap();
    }
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let output = &mut running.output;
    let first = read_response(output, &mut decoder, &mut buf, 1).await;
    for frame in command(3, "secret", &[], None) {
        tx.send(frame).unwrap();
    }
    let second = read_response(output, &mut decoder, &mut buf, 3).await;
    drop(tx);
    (first, second)
}

/// The frames the server sends until `request`'s response ends.
async fn read_response(
    output: &mut mpsc::Receiver<hgframe_engine::OutputChunk>,
    decoder: &mut FrameDecoder,
    buf: &mut BytesMut,
    request: u16,
) -> Vec<Frame> {
    let mut frames = Vec::new();
    loop {
        while let Some(frame) = decoder.decode(buf).unwrap() {
            let done = frame.request_id() == RequestId(request)
                && frame.frame_type() == FrameType::BytesResponse as u8
                && frame.flags() & 0x02 != 0;
            frames.push(frame);
            if done {
                return frames;
            }
        }
        let chunk = output.recv().await.unwrap().unwrap();
        buf.extend_from_slice(&chunk);
    }
}

/// An unbounded receiver as a stream of frames.
fn tokio_stream_of(
    rx: mpsc::UnboundedReceiver<Frame>,
) -> impl futures_util::Stream<Item = Result<Frame, hgframe_wire::codec::CodecError>> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (Ok(frame), rx))
    })
}

/// Payload bytes of a response's data frames.
fn data_bytes(frames: &[Frame]) -> usize {
    frames
        .iter()
        .filter(|f| f.frame_type() == FrameType::BytesResponse as u8)
        .map(|f| f.payload().len())
        .sum()
}

#[tokio::test]
async fn a_sensitive_response_is_absent_from_the_shared_context() {
    let (first, second) = two_secrets(true).await;
    // The sensitive copy is raw, on a stream of its own that begins and ends with it.
    let raw: Vec<&Frame> = first
        .iter()
        .filter(|f| f.frame_type() == FrameType::BytesResponse as u8)
        .collect();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].payload().as_ref(), SECRET);
    assert!(!raw[0].stream_flags().contains(StreamFlags::ENCODED));
    assert!(raw[0]
        .stream_flags()
        .contains(StreamFlags::STREAM_BEGIN | StreamFlags::STREAM_END));
    // The second copy, on the shared encoded stream, had nothing to refer back to.
    let shared: Vec<&Frame> = second
        .iter()
        .filter(|f| f.frame_type() == FrameType::BytesResponse as u8)
        .collect();
    assert!(shared
        .iter()
        .all(|f| f.stream_flags().contains(StreamFlags::ENCODED)));
    assert_ne!(shared[0].stream_id(), raw[0].stream_id());
    assert!(
        data_bytes(&second) >= SECRET.len(),
        "the second copy took {} bytes: the context knew the secret",
        data_bytes(&second)
    );
}

#[tokio::test]
async fn without_the_mark_the_context_remembers_the_first_copy() {
    // The control: the same two calls, neither sensitive. The first copy enters the
    // context, and the second compresses to a back-reference.
    let (first, second) = two_secrets(false).await;
    assert!(first
        .iter()
        .filter(|f| f.frame_type() == FrameType::BytesResponse as u8)
        .all(|f| f.stream_flags().contains(StreamFlags::ENCODED)));
    assert!(
        data_bytes(&second) < SECRET.len() / 2,
        "the second copy took {} bytes",
        data_bytes(&second)
    );
}
