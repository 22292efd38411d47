//! Every command that is dispatched gets exactly one terminal answer (its last data
//! frame, or an error frame) and nothing after it, whatever its handler does: succeed,
//! fail, panic, finish then fail, send text that cannot be framed, or be refused for the
//! exchange's limits. Checked over random mixes of commands, half and full duplex.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{command, decoded_answers, input, multirequest, on_stream, run_accepting, server};
use hgframe_engine::{
    CommandError, CommandInput, EngineConfig, Permission, Registry, Responder, Scope, TextAtom,
};
use proptest::prelude::*;

/// What a test command does, chosen by its `do` argument.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Writes `n` bytes in pieces, then returns.
    Ok(usize),
    /// Writes `n` bytes, then fails.
    Fail(usize),
    /// Writes `n` bytes, then panics.
    Panic(usize),
    /// Finishes (eos), then returns an error anyway.
    FinishThenFail,
    /// Sends text output that cannot fit in a frame, then returns.
    HugeText,
    /// Sleeps a moment, then writes and returns.
    Slow(usize),
    /// Echoes its command data as it arrives.
    Echo(usize),
    /// A command the server does not have.
    Unknown,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (0usize..70_000).prop_map(Kind::Ok),
        // Large enough to be cut into worker pieces when compressed.
        (64usize << 10..400_000).prop_map(Kind::Ok),
        (0usize..5_000).prop_map(Kind::Fail),
        (0usize..5_000).prop_map(Kind::Panic),
        Just(Kind::FinishThenFail),
        Just(Kind::HugeText),
        (0usize..3_000).prop_map(Kind::Slow),
        (0usize..200_000).prop_map(Kind::Echo),
        Just(Kind::Unknown),
    ]
}

fn pattern(n: usize) -> Bytes {
    (0..n).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

async fn test_command(mut input: CommandInput, mut out: Responder) -> Result<(), CommandError> {
    let n: usize = input.arg_str("n")?.parse().unwrap_or(0);
    match input.arg_str("do")? {
        "ok" => out.write(pattern(n)).await?,
        "fail" => {
            out.write(pattern(n)).await?;
            return Err(CommandError::new("failed on purpose"));
        }
        "panic" => {
            out.write(pattern(n)).await?;
            panic!("panicked on purpose");
        }
        "finish-then-fail" => {
            out.finish(Bytes::from_static(b"done")).await?;
            return Err(CommandError::new("failed after finishing"));
        }
        "huge-text" => {
            let atom = TextAtom::new("x".repeat(100_000), Vec::new());
            out.text(vec![atom]).await?;
        }
        "slow" => {
            tokio::time::sleep(Duration::from_millis(2)).await;
            out.write(pattern(n)).await?;
        }
        "echo" => {
            if let Some(mut data) = input.take_data() {
                while let Some(piece) = data.chunk().await? {
                    out.write(piece).await?;
                }
            }
        }
        other => return Err(CommandError::new(format!("unknown mode {other}"))),
    }
    Ok(())
}

/// Keeps the handlers' deliberate panics out of the test output (others still print).
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let deliberate = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.contains("on purpose"));
            if !deliberate {
                default(info);
            }
        }));
    });
}

fn registry() -> Registry {
    quiet_deliberate_panics();
    let mut r = Registry::new();
    r.register("t", Permission::ReadOnly, test_command);
    r
}

fn frames_of(id: u16, kind: Kind) -> Vec<hgframe_wire::Frame> {
    let (mode, n) = match kind {
        Kind::Ok(n) => ("ok", n),
        Kind::Fail(n) => ("fail", n),
        Kind::Panic(n) => ("panic", n),
        Kind::FinishThenFail => ("finish-then-fail", 0),
        Kind::HugeText => ("huge-text", 0),
        Kind::Slow(n) => ("slow", n),
        Kind::Echo(n) => ("echo", n),
        Kind::Unknown => return command(id, "nosuchcommand", &[], None),
    };
    let n_text = n.to_string();
    let args = [("do", mode), ("n", n_text.as_str())];
    match kind {
        Kind::Echo(n) => command(id, "t", &args, Some(&pattern(n)[..])),
        _ => command(id, "t", &args, None),
    }
}

/// Small limits, so that waiting, pausing and refusing all happen.
fn tight_config() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.set_max_handlers(3)
        .set_max_held_output(128 << 10)
        .set_max_waiting_bytes(4 << 10)
        .set_report_queue(2)
        .set_data_queue(2)
        .set_transmit_chunk(4 << 10);
    c
}

/// Compressed responses whose larger writes go to two worker streams in pieces (64 KiB,
/// the smallest allowed), which then wait in each request's lane.
fn compressing(mut c: EngineConfig) -> EngineConfig {
    c.set_parallel_streams(2).set_parallel_piece(64 << 10);
    c
}

async fn check(kinds: Vec<Kind>, full_duplex: bool, config: EngineConfig) {
    check_accepting(kinds, full_duplex, config, &[]).await;
}

async fn check_accepting(
    kinds: Vec<Kind>,
    full_duplex: bool,
    config: EngineConfig,
    accepts: &[String],
) {
    let server = server(registry(), config);
    let frames = on_stream(
        kinds
            .iter()
            .enumerate()
            .map(|(i, k)| frames_of(2 * i as u16 + 1, *k)),
    );
    let scope = if full_duplex {
        Scope::Connection
    } else {
        multirequest()
    };
    let (output, stats) = tokio::time::timeout(
        Duration::from_secs(8),
        run_accepting(&server, full_duplex, scope, input(frames), accepts),
    )
    .await
    .expect("the exchange ended");
    assert_eq!(stats.commands, kinds.len() as u64, "{stats:?}");
    let got = decoded_answers(output);
    assert_eq!(got.len(), kinds.len(), "one answer per command: {got:?}");
    for (i, kind) in kinds.iter().enumerate() {
        let id = 2 * i as u16 + 1;
        let answer = &got[&id];
        assert_eq!(answer.terminals, 1, "request {id} ({kind:?}): {answer:?}");
        assert_eq!(answer.after_end, 0, "request {id} ({kind:?}): {answer:?}");
        let refused = answer
            .error
            .as_deref()
            .is_some_and(|e| e.contains("busy") || e.contains("half-duplex"));
        match kind {
            Kind::Ok(n) | Kind::Slow(n) | Kind::Echo(n) if !refused => {
                assert_eq!(answer.error, None, "request {id} ({kind:?})");
                assert_eq!(answer.data, pattern(*n), "request {id} ({kind:?})");
            }
            Kind::Fail(_) | Kind::Panic(_) | Kind::HugeText | Kind::Unknown => {
                assert!(
                    answer.error.is_some(),
                    "request {id} ({kind:?}): {answer:?}"
                );
            }
            Kind::FinishThenFail if !refused => {
                assert_eq!(answer.error, None, "finished first: {answer:?}");
                assert_eq!(answer.data, b"done");
            }
            _ => {}
        }
    }
    // Every byte charged to the server's memory budget came back.
    assert_eq!(server.memory().charged(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_command_gets_exactly_one_terminal_answer(
        kinds in prop::collection::vec(kind(), 1..40),
        full_duplex in any::<bool>(),
        tight in any::<bool>(),
        compressed in any::<bool>(),
    ) {
        let config = if tight { tight_config() } else { EngineConfig::default() };
        let (config, accepts) = if compressed {
            (compressing(config), vec!["zstd-8mb".to_owned()])
        } else {
            (config, Vec::new())
        };
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(check_accepting(kinds, full_duplex, config, &accepts));
    }
}

#[tokio::test]
async fn a_batch_of_every_failure_at_once_in_both_modes() {
    let kinds = vec![
        Kind::Panic(10),
        Kind::Ok(100_000),
        Kind::Ok(300_000),
        Kind::Fail(0),
        Kind::FinishThenFail,
        Kind::HugeText,
        Kind::Unknown,
        Kind::Echo(300_000),
        Kind::Slow(5),
    ];
    let zstd = ["zstd-8mb".to_owned()];
    for full_duplex in [false, true] {
        check(kinds.clone(), full_duplex, tight_config()).await;
        check(kinds.clone(), full_duplex, EngineConfig::default()).await;
        check_accepting(
            kinds.clone(),
            full_duplex,
            compressing(tight_config()),
            &zstd,
        )
        .await;
        check_accepting(
            kinds.clone(),
            full_duplex,
            compressing(EngineConfig::default()),
            &zstd,
        )
        .await;
    }
}
