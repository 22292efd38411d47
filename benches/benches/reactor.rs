//! Frames per second through the server reactor for small commands, against decoding
//! the same bytes alone, in one run.
//!
//! `cargo bench -p hgframe-benches --bench reactor`
//!
//! Each iteration decodes a buffer of 1000 small commands (half `command-name eos`, half
//! a name and one argument), feeds every frame to a fresh `ServerReactor`, answers each
//! `RunCommand` with a small response, and pulls the output with `poll_transmit`.
//! Throughput is in frames fed. `client_to_server` adds the client reactor that
//! produces the commands and consumes the answers.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hgframe_reactor::{ClientConfig, ClientReactor, ServerAction, ServerConfig, ServerReactor};
use hgframe_wire::{FrameDecoder, Frames};

const COMMANDS: usize = 1000;

/// What a client sends for COMMANDS small commands, and the number of frames.
fn small_commands() -> (Bytes, u64) {
    let mut client = ClientReactor::new(ClientConfig::default());
    let mut wire = BytesMut::new();
    let mut frames = 0;
    for i in 0..COMMANDS {
        let args = if i % 2 == 0 {
            vec![]
        } else {
            vec![(Bytes::from_static(b"key"), Bytes::from(format!("value{i}")))]
        };
        client
            .call_command(b"lookup", args, None)
            .expect("a command");
        while let Some(f) = client.poll_frame() {
            f.encode(&mut wire);
            frames += 1;
        }
    }
    (wire.freeze(), frames)
}

fn serve(wire: &Bytes, out: &mut BytesMut) -> usize {
    let mut config = ServerConfig::default();
    config.set_max_active_requests(COMMANDS);
    let mut server = ServerReactor::new(config);
    let answer = Bytes::from_static(b"ok");
    let mut sent = 0;
    for frame in Frames::new(wire.clone()) {
        let Ok(frame) = frame else { break };
        if let ServerAction::RunCommand(cmd) = server.on_frame(frame) {
            let _ = server.on_response_data(cmd.request_id, answer.clone(), true);
            out.clear();
            sent += server.poll_transmit(out, 64 * 1024);
        }
    }
    let _ = server.on_input_eof();
    sent
}

fn reactor(c: &mut Criterion) {
    let (wire, frames) = small_commands();
    let mut group = c.benchmark_group("reactor/small_commands");
    group.throughput(Throughput::Elements(frames));
    group.bench_function("baseline_decode_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for f in Frames::new(black_box(wire.clone())) {
                n += f.map(|f| f.payload().len()).unwrap_or(0);
            }
            black_box(n);
        })
    });
    let mut out = BytesMut::with_capacity(64 * 1024);
    group.bench_function("server", |b| {
        b.iter(|| black_box(serve(black_box(&wire), &mut out)))
    });
    group.bench_function("client_to_server", |b| {
        b.iter(|| {
            let mut client = ClientReactor::new(ClientConfig::default());
            let mut config = ServerConfig::default();
            config.set_max_active_requests(COMMANDS);
            let mut server = ServerReactor::new(config);
            let mut c2s = BytesMut::with_capacity(64 * 1024);
            let mut s2c = BytesMut::with_capacity(64 * 1024);
            let mut decoder = FrameDecoder::new();
            let mut client_decoder = FrameDecoder::new();
            let mut done = 0;
            for i in 0..COMMANDS {
                let args = if i % 2 == 0 {
                    vec![]
                } else {
                    vec![(Bytes::from_static(b"key"), Bytes::from_static(b"value"))]
                };
                let _ = client.call_command(b"lookup", args, None);
                client.poll_transmit(&mut c2s, 64 * 1024);
                while let Ok(Some(frame)) = decoder.decode(&mut c2s) {
                    if let ServerAction::RunCommand(cmd) = server.on_frame(frame) {
                        let _ = server.on_response_data(
                            cmd.request_id,
                            Bytes::from_static(b"ok"),
                            true,
                        );
                    }
                }
                server.poll_transmit(&mut s2c, 64 * 1024);
                while let Ok(Some(frame)) = client_decoder.decode(&mut s2c) {
                    done += client.on_frame(frame).map(|e| e.len()).unwrap_or(0);
                }
            }
            black_box(done);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = reactor
}
criterion_main!(benches);
