//! Helpers of the engine's tests: request frames, a server run on frames in memory, and
//! the answers read back per request.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use hgframe_engine::{
    EngineConfig, ExchangeStats, FrameInput, Permission, Registry, Scope, Server, Transport,
};
use hgframe_wire::build::{command_frames, FrameTarget};
use hgframe_wire::payload::error_response;
use hgframe_wire::{
    BytesResponseFlags, Frame, FrameType, Frames, RequestId, StreamFlags, StreamId,
};

/// The frames of one command on stream 1 (stream flags left to [`on_stream`]).
pub fn command(id: u16, name: &str, args: &[(&str, &str)], data: Option<&[u8]>) -> Vec<Frame> {
    let target = FrameTarget::new(RequestId(id), StreamId(1));
    let args = args.iter().map(|(k, v)| {
        (
            Bytes::copy_from_slice(k.as_bytes()),
            Bytes::copy_from_slice(v.as_bytes()),
        )
    });
    command_frames(target, name.as_bytes(), args, data).unwrap()
}

/// Commands in order on stream 1, the first frame beginning it.
pub fn on_stream(commands: impl IntoIterator<Item = Vec<Frame>>) -> Vec<Frame> {
    let mut frames: Vec<Frame> = commands.into_iter().flatten().collect();
    if let Some(first) = frames.first_mut() {
        *first = first.clone().with_stream_flags(StreamFlags::STREAM_BEGIN);
    }
    frames
}

/// Input that yields `frames`, then ends.
pub fn input(frames: Vec<Frame>) -> FrameInput {
    Box::pin(futures_util::stream::iter(frames.into_iter().map(Ok)))
}

/// Input that yields `frames`, then stays open without sending anything.
pub fn input_then_silence(frames: Vec<Frame>) -> FrameInput {
    Box::pin(
        futures_util::stream::iter(frames.into_iter().map(Ok))
            .chain(futures_util::stream::pending()),
    )
}

/// Input that yields one frame every `every`, then ends.
pub fn dripping(frames: Vec<Frame>, every: Duration) -> FrameInput {
    Box::pin(
        futures_util::stream::iter(frames).then(move |f| async move {
            tokio::time::sleep(every).await;
            Ok(f)
        }),
    )
}

/// `echo`: answers its command data as it arrives.
pub async fn echo(
    mut input: hgframe_engine::CommandInput,
    mut out: hgframe_engine::Responder,
) -> Result<(), hgframe_engine::CommandError> {
    if let Some(mut data) = input.take_data() {
        while let Some(piece) = data.chunk().await? {
            out.write(piece).await?;
        }
    }
    Ok(())
}

/// A server of `registry` with `config`.
pub fn server(registry: Registry, config: EngineConfig) -> Server {
    Server::new(registry, config).unwrap()
}

/// The scope of a `multirequest` with every permission.
pub fn multirequest() -> Scope {
    Scope::Request {
        permission: Permission::ReadWrite,
        command: None,
    }
}

/// Runs one exchange to its end, reading its output as it comes.
pub async fn run(
    server: &Server,
    full_duplex: bool,
    scope: Scope,
    input: FrameInput,
) -> (Bytes, ExchangeStats) {
    run_accepting(server, full_duplex, scope, input, &[]).await
}

/// [`run`] for a client that accepts the content encodings `accepts` (identity when
/// empty).
pub async fn run_accepting(
    server: &Server,
    full_duplex: bool,
    scope: Scope,
    input: FrameInput,
    accepts: &[String],
) -> (Bytes, ExchangeStats) {
    let transport = if matches!(scope, Scope::Connection) {
        Transport::ByteStream
    } else {
        Transport::Http1
    };
    let reactor = server.new_reactor(full_duplex, accepts);
    let caller = hgframe_engine::Caller::new(transport);
    let mut running = server.start(reactor, scope, caller, input, tracing::Span::none());
    let mut out = BytesMut::new();
    while let Some(chunk) = running.output.recv().await {
        match chunk {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    (out.freeze(), running.done.await.unwrap())
}

/// What one request got back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Answer {
    pub data: Vec<u8>,
    pub error: Option<String>,
    /// Frames that ended the response (`eos` or an error): exactly one is right.
    pub terminals: usize,
    /// Frames for the request after its terminal one: none is right.
    pub after_end: usize,
}

/// The answers in the output, by request id, as they are on the wire (payloads not
/// decoded: identity, or what a test checks itself).
pub fn answers(output: Bytes) -> BTreeMap<u16, Answer> {
    answers_of(Frames::new(output).map(Result::unwrap))
}

/// The answers in the output, by request id, decoded as a client decodes them (every
/// stream's content encoding undone, in wire order).
pub fn decoded_answers(output: Bytes) -> BTreeMap<u16, Answer> {
    let mut streams = hgframe_stream::IncomingStreams::new(
        hgframe_stream::Side::Client,
        hgframe_stream::Profiles::default(),
        hgframe_stream::DecodeLimits::default(),
    );
    answers_of(
        Frames::new(output)
            .filter_map(|frame| streams.on_frame(frame.unwrap()).expect("frames decode")),
    )
}

fn answers_of(frames: impl Iterator<Item = Frame>) -> BTreeMap<u16, Answer> {
    let mut all: BTreeMap<u16, Answer> = BTreeMap::new();
    for frame in frames {
        let answer = all.entry(frame.request_id().0).or_default();
        if answer.terminals > 0 {
            answer.after_end += 1;
        }
        match frame.known_type() {
            Some(FrameType::BytesResponse) => {
                answer.data.extend_from_slice(frame.payload());
                if frame.flags() & BytesResponseFlags::EOS.bits() != 0 {
                    answer.terminals += 1;
                }
            }
            Some(FrameType::ErrorResponse) => {
                let decoded = error_response::ErrorResponse::from_frame_parts(
                    frame.flags(),
                    frame.payload().clone(),
                );
                answer.error = Some(decoded.message_lossy());
                answer.terminals += 1;
            }
            _ => {}
        }
    }
    all
}
