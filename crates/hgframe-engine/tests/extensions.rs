//! The `cancel` and `progress` extensions through the engine: a cancel stops the
//! handler and frees what it held, progress is sent only to a client that accepted it,
//! and a peer that did not negotiate never sees (nor may send) an extension frame.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{command, on_stream, server};
use hgframe_engine::bytestream::Connection;
use hgframe_engine::{
    Call, ClientOptions, CommandError, CommandInput, EngineConfig, Outcome, Permission, Registry,
    Responder, ResponseEvent, Scope, Server, Transport,
};
use hgframe_wire::build::{cancel_frame, FrameTarget};
use hgframe_wire::extension::{Extensions, CANCEL, PROGRESS};
use hgframe_wire::{Frame, FrameDecoder, FrameType, RequestId, StreamId};
use tokio::sync::mpsc;

/// `endless`: writes 32 KiB pieces until stopped, reporting progress with each. The
/// pieces are pseudo-random: data that compresses over 1000:1 (one byte repeated) is
/// refused past 1 MiB by the client's decoder (`DecodeLimits::max_expansion_ratio`).
/// `steps`: reports progress at positions 0..=n, one per second of the engine's
/// clock, with a byte of data after each.
fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(
        "endless",
        Permission::ReadOnly,
        |_: CommandInput, mut out: Responder| async move {
            let mut sent = 0u64;
            let mut x = 0x9e37_79b9u32;
            loop {
                out.progress("endless", sent, 0).await?;
                let piece: Vec<u8> = (0..32 << 10)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                out.write(piece).await?;
                sent += 32 << 10;
            }
        },
    );
    r.register(
        "steps",
        Permission::ReadOnly,
        |input: CommandInput, mut out: Responder| async move {
            let n: u64 = input
                .arg_str("n")?
                .parse()
                .map_err(|_| CommandError::new("n"))?;
            for i in 0..=n {
                out.progress("steps", i, n).await?;
                out.write(Bytes::from(vec![b'0' + (i % 10) as u8])).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok::<(), CommandError>(())
        },
    );
    r
}

fn config() -> EngineConfig {
    let mut config = EngineConfig::default();
    config.set_progress_interval(Duration::from_millis(500));
    config
}

/// An exchange fed from a channel the test writes frames to; its output decoded.
struct Exchange {
    to_server: Option<mpsc::UnboundedSender<Frame>>,
    output: mpsc::Receiver<hgframe_engine::OutputChunk>,
    done: tokio::task::JoinHandle<hgframe_engine::ExchangeStats>,
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl Exchange {
    fn start(server: &Server, extensions: Option<Extensions>) -> Self {
        let (to_server, rx) = mpsc::unbounded_channel::<Frame>();
        let input = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|f| (Ok(f), rx))
        }));
        let mut reactor = server.new_reactor(true, &[]);
        if let Some(offered) = extensions {
            reactor.set_peer_extensions(offered);
        }
        let running = server.start(
            reactor,
            Scope::Connection,
            hgframe_engine::Caller::new(Transport::ByteStream),
            input,
            tracing::Span::none(),
        );
        Self {
            to_server: Some(to_server),
            output: running.output,
            done: running.done,
            decoder: FrameDecoder::new(),
            buf: BytesMut::new(),
        }
    }

    fn send(&self, frames: Vec<Frame>) {
        for f in frames {
            self.to_server.as_ref().unwrap().send(f).unwrap();
        }
    }

    /// Ends the client's input.
    fn close(&mut self) {
        self.to_server = None;
    }

    /// The next frame the server sent; `None` once its output ended.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            match self.output.recv().await? {
                Ok(chunk) => self.buf.extend_from_slice(&chunk),
                Err(_) => return None,
            }
        }
    }
}

/// Waits (bounded) until the server's handlers are all gone.
async fn handlers_stop(server: &Server) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.handlers_running() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the handler was not stopped");
}

#[tokio::test]
async fn a_cancel_stops_the_handler_and_the_output_within_a_bounded_number_of_frames() {
    let server = server(registry(), config());
    let mut ex = Exchange::start(&server, Some(Extensions::all()));
    ex.send(on_stream([command(1, "endless", &[], None)]));
    // 100 data frames of the response, then the cancel.
    let mut data_frames = 0;
    while data_frames < 100 {
        let f = ex.next().await.unwrap();
        if f.known_type() == Some(FrameType::BytesResponse) {
            data_frames += 1;
        }
    }
    assert_eq!(server.handlers_running(), 1);
    ex.send(vec![cancel_frame(FrameTarget::new(
        RequestId(1),
        StreamId(1),
    ))
    .unwrap()]);
    // What was already on its way still comes, then the server's cancel ends it.
    let mut after = 0;
    loop {
        let f = ex.next().await.unwrap();
        assert_eq!(f.request_id(), RequestId(1));
        if f.frame_type() == CANCEL {
            break;
        }
        after += 1;
        assert!(after <= 40, "{after} frames after the cancel, and counting");
    }
    eprintln!("{after} frames after the cancel");
    // The output channel (4 chunks of 64 KiB) and what the exchange holds (a chunk and
    // 4 pieces of 64 KiB) are 18 frames of 32 KiB, and some progress frames.
    handlers_stop(&server).await;
    // The connection is still good: another command runs, and ids are reusable.
    ex.send(command(1, "steps", &[("n", "0")], None));
    let f = ex.next().await.unwrap();
    assert_eq!(f.frame_type(), PROGRESS);
    ex.close();
    while ex.output.recv().await.is_some() {}
    let stats = ex.done.await.unwrap();
    assert_eq!(stats.outcome, Outcome::Completed);
    assert_eq!(server.handlers_running(), 0);
    assert_eq!(server.memory().charged(), 0);
}

#[tokio::test]
async fn a_cancel_for_an_unknown_request_is_ignored() {
    let server = server(registry(), config());
    let mut ex = Exchange::start(&server, Some(Extensions::all()));
    let mut frames = on_stream([vec![cancel_frame(FrameTarget::new(
        RequestId(9),
        StreamId(1),
    ))
    .unwrap()]]);
    frames.extend(command(1, "steps", &[("n", "0")], None));
    ex.send(frames);
    ex.close();
    let mut types = Vec::new();
    while let Some(f) = ex.next().await {
        assert_eq!(f.request_id(), RequestId(1));
        types.push(f.frame_type());
    }
    assert_eq!(types.last(), Some(&(FrameType::BytesResponse as u8)));
    assert_eq!(ex.done.await.unwrap().outcome, Outcome::Completed);
}

#[tokio::test]
async fn without_negotiation_a_cancel_is_a_protocol_error_and_no_progress_is_sent() {
    // Default settings, and a client that offered nothing.
    let server = server(registry(), EngineConfig::default());
    let mut ex = Exchange::start(&server, None);
    ex.send(on_stream([command(1, "steps", &[("n", "2")], None)]));
    let mut types = Vec::new();
    while types.len() < 3 {
        types.push(ex.next().await.unwrap().frame_type());
    }
    assert!(
        types.iter().all(|t| *t == FrameType::BytesResponse as u8),
        "{types:?}"
    );
    ex.send(vec![cancel_frame(FrameTarget::new(
        RequestId(1),
        StreamId(1),
    ))
    .unwrap()]);
    while let Some(f) = ex.next().await {
        assert!(f.frame_type() != PROGRESS && f.frame_type() != CANCEL);
    }
    match ex.done.await.unwrap().outcome {
        Outcome::ProtocolError(e) => assert_eq!(e, "expected command frame; got 9"),
        other => panic!("{other:?}"),
    }
}

async fn connect(server: &Server, offer: Extensions) -> Connection {
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let (server_r, server_w) = tokio::io::split(server_io);
    let (client_r, client_w) = tokio::io::split(client_io);
    let s = server.clone();
    tokio::spawn(async move {
        hgframe_engine::bytestream::serve_connection(server_r, server_w, &s, std::future::pending())
            .await
    });
    let mut options = ClientOptions::default();
    options.reactor_mut().set_extensions(offer);
    Connection::new(client_r, client_w, options).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn progress_events_arrive_in_order_with_their_positions() {
    let server = server(registry(), config());
    let conn = connect(&server, Extensions::all()).await;
    let mut response = conn.call(Call::new("steps").arg("n", "5")).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = response.next().await {
        events.push(event.unwrap());
    }
    let mut want = Vec::new();
    for i in 0..=5u64 {
        want.push(ResponseEvent::Progress {
            topic: "steps".into(),
            position: i,
            total: 5,
        });
        want.push(ResponseEvent::Data(Bytes::from(vec![b'0' + i as u8])));
    }
    assert_eq!(events, want);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_offers_nothing_gets_no_progress() {
    let server = server(registry(), config());
    let conn = connect(&server, Extensions::none()).await;
    let response = conn.call(Call::new("steps").arg("n", "3")).await.unwrap();
    assert_eq!(&response.collect().await.unwrap().data[..], b"0123");
    let mut response = conn.call(Call::new("steps").arg("n", "1")).await.unwrap();
    while let Some(event) = response.next().await {
        assert!(matches!(event.unwrap(), ResponseEvent::Data(_)));
    }
}

#[tokio::test]
async fn dropping_a_response_stream_cancels_its_request() {
    let server = server(registry(), config());
    let conn = connect(&server, Extensions::all()).await;
    let mut response = conn.call(Call::new("endless")).await.unwrap();
    let mut got = 0;
    while got < 1 << 20 {
        if let ResponseEvent::Data(d) = response.next().await.unwrap().unwrap() {
            got += d.len();
        }
    }
    drop(response);
    handlers_stop(&server).await;
    // The connection goes on.
    let answer = conn.call(Call::new("steps").arg("n", "0")).await.unwrap();
    assert_eq!(&answer.collect().await.unwrap().data[..], b"0");
    conn.close().await;
    assert_eq!(server.memory().charged(), 0);
}

#[test]
fn the_progress_interval_is_validated() {
    for bad in [
        Duration::ZERO,
        Duration::from_millis(9),
        Duration::from_secs(31),
    ] {
        let mut config = EngineConfig::default();
        config.set_progress_interval(bad);
        let e = Server::new(Registry::new(), config).unwrap_err();
        assert_eq!(e.setting(), "progress_interval", "{bad:?}");
    }
    let mut config = EngineConfig::default();
    config.set_progress_interval(hgframe_engine::MIN_PROGRESS_INTERVAL);
    assert!(config.validate().is_ok());
    assert_eq!(
        EngineConfig::default().progress_interval(),
        Duration::from_secs(1)
    );
}

/// Reads a response to its end; returns the data events and the error that ended it.
async fn until_error(
    mut response: hgframe_engine::ResponseStream,
) -> (usize, hgframe_engine::Error) {
    let mut data = 0;
    loop {
        match response.next().await {
            Some(Ok(ResponseEvent::Data(_))) => data += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => return (data, e),
            None => panic!("the response ended before its deadline"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_deadline_times_out_and_is_cancelled() {
    let server = server(registry(), config());
    let conn = connect(&server, Extensions::all()).await;
    let call = Call::new("steps")
        .arg("n", "100")
        .deadline(Duration::from_millis(2500));
    let (data, e) = until_error(conn.call(call).await.unwrap()).await;
    assert_eq!(e.kind(), hgframe_engine::ErrorKind::Timeout, "{e}");
    // Steps at 0 s, 1 s and 2 s came before the deadline.
    assert_eq!(data, 3);
    handlers_stop(&server).await;
    // The connection goes on.
    let answer = conn.call(Call::new("steps").arg("n", "0")).await.unwrap();
    assert_eq!(&answer.collect().await.unwrap().data[..], b"0");
    conn.close().await;
}

#[tokio::test(start_paused = true)]
async fn without_cancel_a_deadline_fails_the_call_but_the_server_runs_on() {
    let server = server(registry(), config());
    let conn = connect(&server, Extensions::none()).await;
    let call = Call::new("steps")
        .arg("n", "10")
        .deadline(Duration::from_millis(2500));
    let (_, e) = until_error(conn.call(call).await.unwrap()).await;
    assert_eq!(e.kind(), hgframe_engine::ErrorKind::Timeout, "{e}");
    // Nothing told the server: its handler goes on (to its end, 10 s on).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(server.handlers_running(), 1);
    let answer = conn.call(Call::new("steps").arg("n", "0")).await.unwrap();
    assert_eq!(&answer.collect().await.unwrap().data[..], b"0");
    conn.close().await;
}
