//! Each clock of an exchange, on tokio's paused clock (virtual time, so the tests are
//! exact and instant): it ends the exchange when it should, and, set to `None`, it does
//! not (so each test fails if its clock is removed).

mod common;

use std::time::Duration;

use common::{command, dripping, input_then_silence, multirequest, on_stream, server};
use hgframe_engine::{
    CommandError, CommandInput, EngineConfig, ExchangeStats, FrameInput, Outcome, Permission,
    Registry, Responder, Scope, Server, Transport,
};
use hgframe_wire::build::{command_frames, FrameTarget};
use hgframe_wire::{RequestId, StreamId};
use tokio::time::Instant;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("echo", Permission::ReadOnly, common::echo);
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

/// Starts an exchange; `read`: whether its output is read (a stalled reader does not).
/// Returns how it ended and when, or `None` if it still runs after `wait`.
async fn ends(
    server: &Server,
    full_duplex: bool,
    scope: Scope,
    input: FrameInput,
    read: bool,
    wait: Duration,
) -> Option<(ExchangeStats, Duration)> {
    let started = Instant::now();
    let reactor = server.new_reactor(full_duplex, &[]);
    let mut running = server.start(
        reactor,
        scope,
        hgframe_engine::Caller::new(Transport::ByteStream),
        input,
        tracing::Span::none(),
    );
    let reader = async {
        if read {
            while running.output.recv().await.is_some() {}
        }
        std::future::pending::<()>().await;
    };
    let done = async { (&mut running.done).await.unwrap() };
    let ended = tokio::time::timeout(wait, async {
        tokio::select! {
            stats = done => stats,
            () = reader => unreachable!(),
        }
    })
    .await
    .ok()?;
    Some((ended, started.elapsed()))
}

fn config(set: impl FnOnce(&mut EngineConfig)) -> EngineConfig {
    let mut c = EngineConfig::default();
    // Only the clock under test runs.
    c.set_idle_timeout(None)
        .set_min_input_rate(None)
        .set_first_command_timeout(None)
        .set_connection_idle_timeout(None);
    set(&mut c);
    c
}

/// A command whose arguments never come: the peer owes the rest.
fn partial_command() -> FrameInput {
    let mut frames = command(1, "echo", &[("a", "b")], None);
    frames.pop();
    input_then_silence(on_stream([frames]))
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_aborts_a_request_the_peer_never_finishes() {
    let s = server(
        registry(),
        config(|c| {
            c.set_idle_timeout(Some(Duration::from_secs(7)));
        }),
    );
    let (stats, after) = ends(
        &s,
        false,
        multirequest(),
        partial_command(),
        true,
        Duration::from_secs(100),
    )
    .await
    .expect("ended");
    assert_eq!(stats.outcome, Outcome::TimedOut);
    assert_eq!(after.as_secs(), 7);
    let s = server(registry(), config(|_| {}));
    assert!(ends(
        &s,
        false,
        multirequest(),
        partial_command(),
        true,
        Duration::from_secs(100)
    )
    .await
    .is_none());
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_aborts_an_exchange_whose_reader_stalls() {
    let big = || input_then_silence(on_stream([command(1, "big", &[], None)]));
    let s = server(
        registry(),
        config(|c| {
            c.set_idle_timeout(Some(Duration::from_secs(9)));
        }),
    );
    // Full duplex: output flows at once, then stops when nobody takes it.
    let (stats, after) = ends(
        &s,
        true,
        Scope::Connection,
        big(),
        false,
        Duration::from_secs(100),
    )
    .await
    .expect("ended");
    assert_eq!(stats.outcome, Outcome::TimedOut);
    assert_eq!(after.as_secs(), 9);
    let s = server(registry(), config(|_| {}));
    assert!(ends(
        &s,
        true,
        Scope::Connection,
        big(),
        false,
        Duration::from_secs(100)
    )
    .await
    .is_none());
}

/// One command whose 300 bytes of data come in 10-byte frames.
fn drip(every: Duration) -> FrameInput {
    let target = FrameTarget::new(RequestId(1), StreamId(1)).with_max_frame_size(10);
    let data = vec![5u8; 300];
    let frames = command_frames(target, b"echo", [], Some(&data[..])).unwrap();
    dripping(on_stream([frames]), every)
}

#[tokio::test(start_paused = true)]
async fn min_input_rate_aborts_a_drip_the_idle_timeout_never_sees() {
    // A frame every 5 s: 3.6 bytes a second, under 100; never 60 s without progress.
    let s = server(
        registry(),
        config(|c| {
            c.set_idle_timeout(Some(Duration::from_secs(60)))
                .set_min_input_rate(Some(100))
                .set_rate_window(Duration::from_secs(20));
        }),
    );
    let (stats, after) = ends(
        &s,
        false,
        multirequest(),
        drip(Duration::from_secs(5)),
        true,
        Duration::from_secs(1000),
    )
    .await
    .expect("ended");
    assert_eq!(stats.outcome, Outcome::TooSlow);
    assert_eq!(after.as_secs(), 20);
    let s = server(
        registry(),
        config(|c| {
            c.set_idle_timeout(Some(Duration::from_secs(60)));
        }),
    );
    let (stats, _) = ends(
        &s,
        false,
        multirequest(),
        drip(Duration::from_secs(5)),
        true,
        Duration::from_secs(1000),
    )
    .await
    .expect("ended");
    assert_eq!(stats.outcome, Outcome::Completed, "the whole drip arrived");
}

#[tokio::test(start_paused = true)]
async fn first_command_timeout_closes_a_connection_that_sends_nothing() {
    let silent = || input_then_silence(Vec::new());
    let s = server(
        registry(),
        config(|c| {
            c.set_first_command_timeout(Some(Duration::from_secs(3)));
        }),
    );
    let (stats, after) = ends(
        &s,
        true,
        Scope::Connection,
        silent(),
        true,
        Duration::from_secs(100),
    )
    .await
    .expect("closed");
    assert_eq!(stats.outcome, Outcome::Completed);
    assert_eq!(after.as_secs(), 3);
    let s = server(registry(), config(|_| {}));
    assert!(ends(
        &s,
        true,
        Scope::Connection,
        silent(),
        true,
        Duration::from_secs(100)
    )
    .await
    .is_none());
}

#[tokio::test(start_paused = true)]
async fn connection_idle_timeout_closes_a_connection_quiet_between_commands() {
    let one_then_quiet =
        || input_then_silence(on_stream([command(1, "echo", &[], Some(&b"hi"[..]))]));
    let s = server(
        registry(),
        config(|c| {
            c.set_connection_idle_timeout(Some(Duration::from_secs(30)));
        }),
    );
    let (stats, after) = ends(
        &s,
        true,
        Scope::Connection,
        one_then_quiet(),
        true,
        Duration::from_secs(1000),
    )
    .await
    .expect("closed");
    assert_eq!(stats.outcome, Outcome::Completed);
    assert_eq!(stats.commands, 1);
    assert_eq!(after.as_secs(), 30);
    let s = server(registry(), config(|_| {}));
    assert!(ends(
        &s,
        true,
        Scope::Connection,
        one_then_quiet(),
        true,
        Duration::from_secs(1000)
    )
    .await
    .is_none());
}
