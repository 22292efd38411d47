//! Compression off the reactor's thread: a driver encodes pieces of a response on
//! streams of its own ([`ServerReactor::open_output_stream`]), on worker threads, and
//! hands the frames back in order ([`ServerReactor::on_response_frames`]).

use bytes::Bytes;
use hgframe_reactor::{
    ClientConfig, ClientEvent, ClientReactor, ReactorError, ServerAction, ServerConfig,
    ServerReactor,
};
use hgframe_stream::{EncodingSettings, OutgoingStream, Profiles, Side, StreamError};
use hgframe_wire::{Frame, FrameType, RequestId, StreamFlags, StreamId};

const ZSTD: &str = "zstd-8mb";

/// A client and a server agreeing on `encoding`, with one command (`cat`) dispatched.
fn setup(encoding: &str) -> (ClientReactor, ServerReactor, RequestId) {
    let mut client_config = ClientConfig::default();
    client_config.set_encoding(encoding);
    let mut client = ClientReactor::new(client_config);
    let mut server_config = ServerConfig::default();
    server_config
        .set_encodings(&[encoding])
        .set_peer_accepts(&[encoding]);
    let mut server = ServerReactor::new(server_config);
    let id = client.call_command(b"cat", [], None).unwrap();
    client.finish_sending();
    let mut request = None;
    while let Some(frame) = client.poll_frame() {
        if let ServerAction::RunCommand(cmd) = server.on_frame(frame) {
            request = Some(cmd.request_id);
        }
    }
    assert!(matches!(server.on_input_eof(), ServerAction::Noop));
    assert_eq!(request, Some(id));
    (client, server, id)
}

/// Compressible data, different in every piece.
fn data(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i / 7 % 251) as u8 ^ salt ^ (i % 3) as u8)
        .collect()
}

/// Encodes `data` for `request` on `stream`, on a thread of its own.
// The test plays the driver, which may spawn threads; the reactor itself does not.
#[allow(clippy::disallowed_methods)]
fn encode_on_thread(
    mut stream: OutgoingStream,
    request: RequestId,
    data: Vec<u8>,
) -> std::thread::JoinHandle<(OutgoingStream, Vec<Frame>)> {
    std::thread::spawn(move || {
        let mut frames = Vec::new();
        stream
            .push_data(
                request,
                FrameType::BytesResponse,
                Bytes::from(data),
                false,
                &mut frames,
            )
            .unwrap();
        (stream, frames)
    })
}

/// Everything the server sends, given to the client: the response's bytes, whether it
/// ended, and the stream ids seen.
fn deliver(server: &mut ServerReactor, client: &mut ClientReactor) -> (Vec<u8>, bool, Vec<u8>) {
    let (mut body, mut ended, mut streams) = (Vec::new(), false, Vec::new());
    while let Some(frame) = server.poll_frame() {
        if !streams.contains(&frame.stream_id().0) {
            streams.push(frame.stream_id().0);
        }
        for event in client.on_frame(frame).unwrap() {
            match event {
                ClientEvent::ResponseData { data, eos, .. } => {
                    body.extend_from_slice(&data);
                    ended |= eos;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    (body, ended, streams)
}

#[test]
fn a_response_split_over_two_worker_streams_arrives_intact() {
    let (mut client, mut server, id) = setup(ZSTD);
    assert_eq!(server.output_encoding(), ZSTD);
    let (a, b) = (
        server.open_output_stream().unwrap(),
        server.open_output_stream().unwrap(),
    );
    assert_ne!(a.id(), b.id());
    assert_eq!(a.profile(), ZSTD);
    assert_eq!(server.driver_streams(), 2);
    let pieces = [data(300_000, 1), data(200_000, 2), data(50_000, 3)];
    // Both pieces compress at once; they are fed in piece order.
    let first = encode_on_thread(a, id, pieces[0].clone());
    let second = encode_on_thread(b, id, pieces[1].clone());
    let (a, frames) = first.join().unwrap();
    assert!(matches!(
        server.on_response_frames(id, frames, false).unwrap(),
        ServerAction::SendFrames
    ));
    let (b, frames) = second.join().unwrap();
    assert!(matches!(
        server.on_response_frames(id, frames, false).unwrap(),
        ServerAction::SendFrames
    ));
    // A small tail, and the end, on the reactor's own stream.
    let _ = server
        .on_response_data(id, Bytes::from(pieces[2].clone()), true)
        .unwrap();
    server.close_output_stream(a);
    server.close_output_stream(b);
    assert_eq!(server.driver_streams(), 0);
    let (body, ended, streams) = deliver(&mut server, &mut client);
    assert!(ended);
    assert_eq!(body, pieces.concat());
    assert_eq!(streams.len(), 3, "streams used: {streams:?}");
    assert!(server.is_finished());
    assert!(client.on_input_eof().unwrap().is_empty());
}

#[test]
fn eos_through_a_worker_stream_ends_the_request() {
    let (mut client, mut server, id) = setup(ZSTD);
    let mut stream = server.open_output_stream().unwrap();
    let mut frames = Vec::new();
    stream
        .push_data(
            id,
            FrameType::BytesResponse,
            Bytes::from(data(70_000, 4)),
            true,
            &mut frames,
        )
        .unwrap();
    // The driver knows this is the stream's last piece: it ends the stream too.
    stream.end(&mut frames).unwrap();
    assert!(matches!(
        server.on_response_frames(id, frames, true).unwrap(),
        ServerAction::SendFrames
    ));
    server.close_output_stream(stream);
    assert!(matches!(
        server.on_response_data(id, Bytes::new(), true),
        Err(ReactorError::ResponseFinished(_))
    ));
    let (body, ended, _) = deliver(&mut server, &mut client);
    assert!(ended);
    assert_eq!(body, data(70_000, 4));
    assert!(server.is_finished());
}

#[test]
fn worker_stream_ids_do_not_collide_and_come_back() {
    let mut server = ServerReactor::new(ServerConfig::default());
    let a = server.open_output_stream().unwrap();
    let b = server.open_output_stream().unwrap();
    // Stream 2 is the reactor's own.
    assert_eq!((a.id().0, b.id().0), (4, 6));
    server.close_output_stream(a);
    let mut held = vec![b];
    // The released id is handed out again once the allocator comes round.
    while let Ok(s) = server.open_output_stream() {
        held.push(s);
    }
    assert_eq!(held.len(), 127);
    assert!(held.iter().any(|s| s.id().0 == 4));
    assert!(matches!(
        server.open_output_stream(),
        Err(ReactorError::NoStreamId { max: 128 })
    ));
}

#[test]
fn misuse_is_refused() {
    let (_client, mut server, id) = setup(ZSTD);
    let mut stream = server.open_output_stream().unwrap();
    let piece = |stream: &mut OutgoingStream, request| {
        let mut frames = Vec::new();
        stream
            .push_data(
                request,
                FrameType::BytesResponse,
                Bytes::from("x"),
                false,
                &mut frames,
            )
            .unwrap();
        frames
    };
    // Frames of another request.
    let frames = piece(&mut stream, RequestId(3));
    assert!(matches!(
        server.on_response_frames(id, frames, false),
        Err(ReactorError::FrameOfAnotherRequest { request, found: RequestId(3) }) if request == id
    ));
    // A request that is not running.
    let frames = piece(&mut stream, RequestId(5));
    assert!(matches!(
        server.on_response_frames(RequestId(5), frames, false),
        Err(ReactorError::UnknownRequest(RequestId(5)))
    ));
    // A stream the reactor did not hand out.
    let mut stranger = OutgoingStream::new(
        StreamId(100),
        Side::Server,
        &Profiles::default(),
        &EncodingSettings::new("identity"),
    )
    .unwrap();
    let frames = piece(&mut stranger, id);
    assert!(matches!(
        server.on_response_frames(id, frames, false),
        Err(ReactorError::NotADriverStream(StreamId(100)))
    ));
    // A frame over the frame size.
    let max = server.config().max_frame_size();
    let big = Frame::new(
        id,
        stream.id(),
        StreamFlags::empty(),
        FrameType::BytesResponse,
        0x02,
        vec![0u8; max + 1],
    )
    .unwrap();
    assert!(matches!(
        server.on_response_frames(id, vec![big], false),
        Err(ReactorError::Encode(StreamError::FrameTooLarge { .. }))
    ));
    // A stream given back is no longer the driver's.
    let stream_id = stream.id();
    let mut frames = piece(&mut stream, id);
    server.close_output_stream(stream);
    assert!(matches!(
        server.on_response_frames(id, std::mem::take(&mut frames), false),
        Err(ReactorError::NotADriverStream(id)) if id == stream_id
    ));
    // Nothing was queued by the refusals.
    assert_eq!(server.queued_output_bytes(), 0);
    // A finished request.
    let mut other = server.open_output_stream().unwrap();
    let _ = server.on_response_data(id, Bytes::new(), true).unwrap();
    let frames = piece(&mut other, id);
    assert!(matches!(
        server.on_response_frames(id, frames, false),
        Err(ReactorError::ResponseFinished(_))
    ));
}
