//! A byte-stream peer that stops reading while the server has output to write, or that
//! stalls forever, must not hold `serve_connection` forever: the writer gives up after
//! [`EngineConfig::idle_timeout`] without progress, on tokio's paused clock (virtual
//! time, so the test is exact and instant). With the timeout off the connection never
//! ends, so the test fails if the timer is removed.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::{command, on_stream, server};
use hgframe_engine::{
    bytestream::serve_connection, CommandError, CommandInput, EngineConfig, Outcome, Permission,
    Registry, Responder,
};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(
        "big",
        Permission::ReadOnly,
        |_: CommandInput, mut out: Responder| async move {
            for _ in 0..1000 {
                out.write(vec![1u8; 64 << 10]).await?;
            }
            Ok::<(), CommandError>(())
        },
    );
    r
}

fn config(idle: Option<Duration>) -> EngineConfig {
    let mut c = EngineConfig::default();
    c.set_idle_timeout(idle)
        .set_min_input_rate(None)
        .set_first_command_timeout(None)
        .set_connection_idle_timeout(None);
    c
}

/// Serves one connection whose client sends `big`, never reads, and never closes;
/// returns how the connection ended and when, or `None` if it still runs after 1000 s.
async fn serve_to_a_stalled_reader(idle: Option<Duration>) -> Option<(Outcome, Duration)> {
    let s = server(registry(), config(idle));
    // Small pipes: the server's writes block as soon as 64 KiB wait unread.
    let (client, server_side) = tokio::io::duplex(64 << 10);
    let (server_read, server_write) = tokio::io::split(server_side);
    let (_client_read, mut client_write) = tokio::io::split(client);
    let mut wire = BytesMut::new();
    for frame in on_stream([command(1, "big", &[], None)]) {
        frame.encode(&mut wire);
    }
    client_write.write_all(&wire).await.unwrap();
    // `_client_read` stays alive and unread; `client_write` stays open.
    let started = Instant::now();
    let served = serve_connection(server_read, server_write, &s, std::future::pending());
    let stats = tokio::time::timeout(Duration::from_secs(1000), served)
        .await
        .ok()?;
    Some((stats.outcome, started.elapsed()))
}

#[tokio::test(start_paused = true)]
async fn serve_connection_ends_when_its_reader_stalls() {
    let (outcome, after) = serve_to_a_stalled_reader(Some(Duration::from_secs(9)))
        .await
        .expect("the connection ended");
    assert_eq!(outcome, Outcome::TimedOut);
    // The exchange and the writer each wait at most the idle timeout for progress.
    assert!(after <= Duration::from_secs(18), "ended after {after:?}");
    // Without the timeout, nothing ends it.
    assert!(serve_to_a_stalled_reader(None).await.is_none());
}
