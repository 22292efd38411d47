//! Handlers that keep compressed answers (a response cache) send them with
//! `Responder::write_precompressed`: they learn the response's encoding from
//! `Responder::response_encoding` (none for identity or a sensitive response), the data
//! goes out as it is (counted as pre-compressed bytes, with no raw bytes: no
//! compression work), and data the stream cannot take fails its request with exactly
//! one terminal answer.
#![cfg(feature = "zstd")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{command, multirequest, on_stream, Answer};
use hgframe_engine::{
    Caller, CommandError, CommandInput, EngineConfig, ExchangeStats, FrameInput, Permission,
    Registry, Responder, ResponseEncoding, Server, Transport,
};
use hgframe_stream::{DecodeLimits, IncomingStreams, Profiles, Side};
use hgframe_wire::{Frame, Frames};

/// Text, a few times over.
fn text() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..20_000 {
        out.extend_from_slice(format!("line {i}: the cached answer\n").as_bytes());
    }
    out
}

/// `raw` compressed ahead of time for `encoding`, in two whole units.
fn precompress(encoding: &ResponseEncoding, raw: &[u8]) -> [Bytes; 2] {
    let mut encoder = encoding.encoder().unwrap();
    let (a, b) = raw.split_at(raw.len() / 2);
    [a, b].map(|part| {
        let mut out = Vec::new();
        for chunk in part.chunks(encoding.max_flush_raw_len()) {
            encoder.encode_flush(chunk, &mut out).unwrap();
        }
        encoder.end_unit(&mut out).unwrap();
        Bytes::from(out)
    })
}

/// Sends `text()` compressed ahead of time when it can (`mode=bad`: data that is not
/// whole zstd frames; `sensitive`: marks the response sensitive first), else as usual.
async fn cached(input: CommandInput, mut out: Responder) -> Result<(), CommandError> {
    if input.arg("sensitive").is_some() {
        out.set_sensitive().await?;
    }
    let Some(encoding) = out.response_encoding().cloned() else {
        out.finish(text()).await?;
        return Ok(());
    };
    if input.arg("mode").is_some_and(|m| &m[..] == b"bad") {
        out.finish_precompressed(Bytes::from_static(b"not zstd"))
            .await?;
        return Ok(());
    }
    let [a, b] = precompress(&encoding, &text());
    out.write_precompressed(a).await?;
    out.finish_precompressed(b).await?;
    Ok(())
}

fn server() -> Server {
    let mut registry = Registry::new();
    registry.register("cached", Permission::ReadOnly, cached);
    Server::new(registry, EngineConfig::default()).unwrap()
}

/// Runs one exchange whose client accepts `accepts`, to its end.
async fn run(server: &Server, accepts: &str, input: FrameInput) -> (Bytes, ExchangeStats) {
    let reactor = server.new_reactor(true, &[accepts.to_owned()]);
    let caller = Caller::new(Transport::Http2);
    let mut running = server.start(
        reactor,
        multirequest(),
        caller,
        input,
        tracing::Span::none(),
    );
    let mut out = BytesMut::new();
    while let Some(Ok(chunk)) = running.output.recv().await {
        out.extend_from_slice(&chunk);
    }
    (out.freeze(), running.done.await.unwrap())
}

/// The answers, decoded as a client decodes them.
fn decoded_answers(output: Bytes) -> std::collections::BTreeMap<u16, Answer> {
    let mut incoming =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let mut plain = BytesMut::new();
    for frame in Frames::new(output) {
        if let Some(frame) = incoming.on_frame(frame.unwrap()).unwrap() {
            let frame: Frame = frame;
            frame.encode(&mut plain);
        }
    }
    common::answers(plain.freeze())
}

fn frames(calls: &[&[(&str, &str)]]) -> FrameInput {
    let commands = calls
        .iter()
        .enumerate()
        .map(|(i, args)| command(1 + 2 * i as u16, "cached", args, None));
    common::input(on_stream(commands))
}

#[tokio::test]
async fn cached_data_goes_out_as_it_is_with_no_compression_work() {
    let server = server();
    let (output, stats) = run(&server, "zstd-8mb", frames(&[&[], &[]])).await;
    let answers = decoded_answers(output);
    for id in [1, 3] {
        let answer = &answers[&id];
        assert_eq!(answer.data, text(), "request {id}");
        assert_eq!((answer.terminals, answer.after_end), (1, 0));
    }
    let stream = &stats.streams[0];
    assert_eq!(stream.profile, "zstd-8mb");
    assert_eq!(stream.raw_bytes, 0, "nothing was compressed: {stream:?}");
    assert!(stream.precompressed_bytes > 0, "{stream:?}");
    // Twice the cached bytes, plus the frame headers and the stream's settings.
    assert!(
        stream.wire_bytes >= stream.precompressed_bytes,
        "{stream:?}"
    );
    assert!(
        stream.wire_bytes * 10 < 2 * text().len() as u64,
        "compressed: {stream:?}"
    );
}

#[tokio::test]
async fn identity_and_sensitive_responses_have_no_encoding_to_precompress_for() {
    let server = server();
    let (output, stats) = run(&server, "identity", frames(&[&[]])).await;
    assert_eq!(decoded_answers(output)[&1].data, text());
    assert_eq!(stats.streams[0].precompressed_bytes, 0);
    assert_eq!(stats.streams[0].raw_bytes, text().len() as u64);

    // Sensitive: the data goes raw, and the handler was told not to precompress.
    let (output, stats) = run(&server, "zstd-8mb", frames(&[&[("sensitive", "1")]])).await;
    assert_eq!(decoded_answers(output)[&1].data, text());
    assert!(stats.streams.iter().all(|s| s.precompressed_bytes == 0));
}

#[tokio::test]
async fn data_the_stream_cannot_take_fails_its_request_only() {
    let server = server();
    let (output, _) = run(&server, "zstd-8mb", frames(&[&[("mode", "bad")], &[]])).await;
    let answers = decoded_answers(output);
    let bad = &answers[&1];
    assert_eq!((bad.terminals, bad.after_end), (1, 0));
    assert!(bad.data.is_empty());
    let message = bad.error.as_deref().unwrap_or_default();
    assert!(message.contains("could not be sent"), "{message}");
    assert_eq!(answers[&3].data, text());
    assert_eq!(answers[&3].terminals, 1);
}

/// Writes cached pieces forever, counting them.
async fn endless(written: Arc<AtomicUsize>, out: &mut Responder) -> Result<(), CommandError> {
    let encoding = out
        .response_encoding()
        .cloned()
        .ok_or_else(|| CommandError::new("no encoding"))?;
    // Incompressible, so the pieces are as large on the wire as in memory.
    let mut x = 1u64;
    let noise: Vec<u8> = (0..32 << 10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let [piece, _] = precompress(&encoding, &noise);
    loop {
        out.write_precompressed(piece.clone()).await?;
        written.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn cached_output_is_paced_like_other_output() {
    let written = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let seen = Arc::clone(&written);
    registry.register("endless", Permission::ReadOnly, move |_, mut out| {
        let seen = Arc::clone(&seen);
        async move { endless(seen, &mut out).await }
    });
    let server = Server::new(registry, EngineConfig::default()).unwrap();
    let reactor = server.new_reactor(true, &["zstd-8mb".to_owned()]);
    let input = common::input_then_silence(on_stream([command(1, "endless", &[], None)]));
    let running = server.start(
        reactor,
        multirequest(),
        Caller::new(Transport::Http2),
        input,
        tracing::Span::none(),
    );
    // The client reads nothing. Once everything is blocked (the paused clock moves on
    // only then), the handler has been paused: the output it got ahead is bounded.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let piece = 16 << 10;
    let held = written.load(Ordering::SeqCst) * piece;
    let config = EngineConfig::default();
    let bound = config.report_queue() * piece
        + (running.output.max_capacity() + 2) * config.transmit_chunk().max(piece);
    assert!(held > 0);
    assert!(held <= bound, "{held} bytes written, more than {bound}");
    drop(running);
}
