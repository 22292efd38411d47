//! Every exchange takes its zstd contexts from the configured profiles' pool, and gives
//! them back when it ends: the next exchange reuses them instead of creating its own.
#![cfg(feature = "zstd")]

mod common;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use common::{command, echo, input, multirequest, server};
use hgframe_engine::{EngineConfig, Permission, Registry, Transport};
use hgframe_stream::encoding::{PoolLimits, Zstd8Mb, ZstdContextPool};
use hgframe_stream::{
    DecodeLimits, EncodingSettings, IncomingStreams, OutgoingStream, Profiles, Side,
};
use hgframe_wire::{FrameType, Frames, RequestId, StreamFlags, StreamId};

/// `zstd-8mb` on `pool`, then `identity`.
fn profiles_on(pool: &Arc<ZstdContextPool>) -> Profiles {
    let mut profiles = Profiles::default();
    profiles.register_preferred(Arc::new(Zstd8Mb::with_pool(Arc::clone(pool))));
    profiles
}

/// One exchange: an `echo` of `data` whose command data is zstd-encoded on the client's
/// stream, answered in zstd; returns the data echoed back.
async fn zstd_echo(server: &hgframe_engine::Server, full_duplex: bool, data: &[u8]) -> Vec<u8> {
    let client_profiles = Profiles::default();
    let mut frames = command(1, "echo", &[], Some(data));
    // Keep the command-name frame; the data goes through a zstd stream of the client.
    frames.truncate(1);
    let mut stream = OutgoingStream::new(
        StreamId(1),
        Side::Client,
        &client_profiles,
        &EncodingSettings::new("zstd-8mb"),
    )
    .unwrap();
    let mut out = Vec::new();
    stream.push_frame(frames.remove(0), &mut out).unwrap();
    stream
        .push_data(
            RequestId(1),
            FrameType::CommandData,
            Bytes::copy_from_slice(data),
            true,
            &mut out,
        )
        .unwrap();
    let reactor = server.new_reactor(full_duplex, &["zstd-8mb".to_string()]);
    let transport = if full_duplex {
        Transport::Http2
    } else {
        Transport::Http1
    };
    let mut running = server.start(
        reactor,
        multirequest(),
        hgframe_engine::Caller::new(transport),
        input(out),
        tracing::Span::none(),
    );
    let mut wire = BytesMut::new();
    while let Some(Ok(chunk)) = running.output.recv().await {
        wire.extend_from_slice(&chunk);
    }
    running.done.await.unwrap();
    let mut incoming =
        IncomingStreams::new(Side::Client, Profiles::default(), DecodeLimits::default());
    let mut echoed = Vec::new();
    let mut encoded = 0;
    for frame in Frames::new(wire.freeze()) {
        let frame = frame.unwrap();
        encoded += usize::from(frame.stream_flags().contains(StreamFlags::ENCODED));
        if let Some(frame) = incoming.on_frame(frame).unwrap() {
            if frame.known_type() == Some(FrameType::BytesResponse) {
                echoed.extend_from_slice(frame.payload());
            }
        }
    }
    assert!(encoded > 0, "the answer is zstd-encoded");
    echoed
}

#[tokio::test]
async fn every_exchange_takes_its_contexts_from_the_pool_and_gives_them_back() {
    let pool = Arc::new(ZstdContextPool::new(PoolLimits::new(2, 16 << 20).unwrap()));
    let mut registry = Registry::new();
    registry.register("echo", Permission::ReadOnly, echo);
    let mut config = EngineConfig::default();
    config.set_profiles(profiles_on(&pool));
    let server = server(registry, config);
    for (i, full_duplex) in [true, false, true, false, true].into_iter().enumerate() {
        let data = format!("exchange {i}: 64 bytes of text, give or take, to echo back. ");
        assert_eq!(
            zstd_echo(&server, full_duplex, data.as_bytes()).await,
            data.as_bytes()
        );
    }
    let stats = pool.stats();
    // One context of each kind, reused by every exchange after it. The compression
    // context was created when the server checked its configuration (it tries an
    // encoder at the configured level), so all five exchanges reused it.
    assert_eq!(
        (stats.compressors_created, stats.compressors_reused),
        (1, 5)
    );
    assert_eq!(
        (stats.decompressors_created, stats.decompressors_reused),
        (1, 4)
    );
    assert_eq!((pool.idle_compressors(), pool.idle_decompressors()), (1, 1));
}
