//! Admission by cost: handler slots per exchange and server-wide, commands waiting at the
//! cost of their bookkeeping, refusal of one command (never the exchange) where a
//! half-duplex exchange cannot wait, and the response that cannot fit in one.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use common::{answers, command, input, multirequest, on_stream, run, server};
use hgframe_engine::{
    CommandError, CommandInput, EngineConfig, Permission, Registry, Responder, Scope,
};

/// Handlers running now and the most seen at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// `probe`: counts itself in the gauge for a moment, answers its `id`; `ok`: answers `n`
/// bytes; `echo`: answers its data as it arrives.
fn registry(gauge: Arc<Gauge>) -> Registry {
    let mut r = Registry::new();
    r.register(
        "probe",
        Permission::ReadOnly,
        move |input: CommandInput, out: Responder| {
            let gauge = Arc::clone(&gauge);
            async move {
                let n = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
                gauge.peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                gauge.now.fetch_sub(1, Ordering::SeqCst);
                out.finish(input.arg("id").cloned().unwrap_or_default())
                    .await?;
                Ok::<(), CommandError>(())
            }
        },
    );
    r.register(
        "ok",
        Permission::ReadOnly,
        |input: CommandInput, out: Responder| async move {
            let n: usize = input.arg_str("n")?.parse().unwrap_or(0);
            out.finish(vec![b'x'; n]).await?;
            Ok::<(), CommandError>(())
        },
    );
    r.register("echo", Permission::ReadOnly, common::echo);
    r
}

fn probes(n: u16, padding: usize) -> Vec<hgframe_wire::Frame> {
    let pad = "p".repeat(padding);
    on_stream((0..n).map(|i| {
        let id = (2 * i + 1).to_string();
        command(2 * i + 1, "probe", &[("id", &id), ("pad", &pad)], None)
    }))
}

fn scope(full_duplex: bool) -> Scope {
    if full_duplex {
        Scope::Connection
    } else {
        multirequest()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_handlers_run_at_once_and_the_rest_wait() {
    for full_duplex in [false, true] {
        let gauge = Arc::new(Gauge::default());
        let mut config = EngineConfig::default();
        config.set_max_handlers(4);
        let server = server(registry(Arc::clone(&gauge)), config);
        let (out, stats) = run(
            &server,
            full_duplex,
            scope(full_duplex),
            input(probes(60, 0)),
        )
        .await;
        let got = answers(out);
        assert_eq!(got.len(), 60, "{stats:?}");
        for (id, answer) in &got {
            assert_eq!(answer.terminals, 1);
            assert_eq!(answer.data, id.to_string().as_bytes(), "request {id}");
        }
        assert_eq!(
            gauge.peak.load(Ordering::SeqCst),
            4,
            "full duplex: {full_duplex}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_wide_limit_holds_across_exchanges() {
    let gauge = Arc::new(Gauge::default());
    let mut config = EngineConfig::default();
    config.set_max_handlers(8).set_max_server_handlers(3);
    let server = server(registry(Arc::clone(&gauge)), config);
    let a = run(&server, true, Scope::Connection, input(probes(30, 0)));
    let b = run(&server, false, multirequest(), input(probes(30, 0)));
    let ((out_a, _), (out_b, _)) = tokio::join!(a, b);
    assert_eq!(answers(out_a).len(), 30);
    assert_eq!(answers(out_b).len(), 30);
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_duplex_batch_far_beyond_256_commands_is_answered_whole() {
    // 256 active requests used to be the limit of a half-duplex exchange.
    let server = server(registry(Arc::default()), EngineConfig::default());
    let (out, stats) = run(&server, false, multirequest(), input(probes(3_000, 0))).await;
    let got = answers(out);
    assert_eq!(got.len(), 3_000, "{stats:?}");
    assert!(got
        .iter()
        .all(|(id, a)| a.terminals == 1 && a.data == id.to_string().as_bytes()));
}

/// One slow command first, so the others wait; 50 more, each with 200 bytes of
/// arguments, against a waiting limit of about five of them.
fn crowded() -> (EngineConfig, Vec<hgframe_wire::Frame>) {
    let mut config = EngineConfig::default();
    config.set_max_handlers(1).set_max_waiting_bytes(2_500);
    let pad = "p".repeat(200);
    let first = command(1, "echo", &[], Some(&[7u8; 100][..]));
    let rest = (1..51u16).map(|i| {
        let id = (2 * i + 1).to_string();
        command(2 * i + 1, "probe", &[("id", &id), ("pad", &pad)], None)
    });
    (config, on_stream(std::iter::once(first).chain(rest)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_duplex_refuses_single_commands_beyond_the_waiting_limit() {
    let (config, frames) = crowded();
    let server = server(registry(Arc::default()), config);
    let (out, stats) = run(&server, false, multirequest(), input(frames)).await;
    let got = answers(out);
    assert_eq!(got.len(), 51, "{stats:?}");
    let refused = got
        .values()
        .filter(|a| a.error.as_deref().is_some_and(|e| e.contains("busy")))
        .count();
    let answered = got.values().filter(|a| a.error.is_none()).count();
    assert!(refused > 0, "some commands are refused, one by one");
    assert!(answered >= 5, "the others run: {answered}");
    assert!(got.values().all(|a| a.terminals == 1 && a.after_end == 0));
    assert_eq!(stats.outcome, hgframe_engine::Outcome::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_duplex_stops_reading_at_the_waiting_limit_instead_of_refusing() {
    let (config, frames) = crowded();
    let server = server(registry(Arc::default()), config);
    let (out, _) = run(&server, true, Scope::Connection, input(frames)).await;
    let got = answers(out);
    assert_eq!(got.len(), 51);
    assert!(got.values().all(|a| a.error.is_none() && a.terminals == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_too_large_for_half_duplex_fails_alone() {
    // An echo of 1 MiB of command data cannot be held (64 KiB) while the client is
    // still sending that data: it fails, with a message that says what to do; the
    // command after it runs.
    let mut config = EngineConfig::default();
    config
        .set_transmit_chunk(16 << 10)
        .set_max_held_output(64 << 10);
    let server = server(registry(Arc::default()), config);
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
    let frames = on_stream([
        command(1, "echo", &[], Some(&big[..])),
        command(3, "ok", &[("n", "10")], None),
    ]);
    let (out, stats) = tokio::time::timeout(
        Duration::from_secs(30),
        run(&server, false, multirequest(), input(frames)),
    )
    .await
    .expect("no deadlock");
    let got = answers(out);
    let error = got[&1].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("half-duplex") && error.contains("HTTP/2"),
        "{error}"
    );
    assert_eq!(got[&1].terminals, 1);
    assert_eq!(got[&3].data, b"xxxxxxxxxx");
    assert_eq!(stats.outcome, hgframe_engine::Outcome::Completed);
    // The same over a full-duplex exchange is answered whole.
    let frames = on_stream([command(1, "echo", &[], Some(&big[..]))]);
    let (out, _) = run(&server, true, Scope::Connection, input(frames)).await;
    assert_eq!(answers(out)[&1].data, big);
    assert_eq!(server.memory().charged(), 0, "every charge came back");
}

#[test]
fn unusable_limits_are_refused_when_the_server_is_built() {
    type Spoil = fn(&mut EngineConfig);
    let cases: [(&str, Spoil); 7] = [
        ("max_handlers", |c| {
            c.set_max_handlers(0);
        }),
        ("max_server_handlers", |c| {
            c.set_max_server_handlers(0);
        }),
        ("max_held_output", |c| {
            c.set_max_held_output(10);
        }),
        ("memory_budget", |c| {
            c.set_memory_budget(1 << 10);
        }),
        ("blocking_threads", |c| {
            c.set_blocking_threads(0);
        }),
        ("level", |c| {
            c.reactor_mut().set_level(99);
        }),
        ("max_expansion_ratio", |c| {
            c.reactor_mut().set_max_expansion_ratio(0);
        }),
    ];
    for (setting, spoil) in cases {
        let mut config = EngineConfig::default();
        spoil(&mut config);
        let e = hgframe_engine::Server::new(Registry::new(), config).unwrap_err();
        assert_eq!(e.setting(), setting, "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_reused_after_its_answer_gets_its_own_answer() {
    // `late` answers at once but returns 300 ms later; meanwhile the client, which has
    // its answer, sends another command with the same id. The late return must not
    // end (or feed) the new command's response.
    let mut r = registry(Arc::default());
    r.register(
        "late",
        Permission::ReadOnly,
        |_: CommandInput, out: Responder| async move {
            out.finish(Bytes::from_static(b"first")).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err::<(), _>(CommandError::new("late failure, after the answer"))
        },
    );
    let server = server(r, EngineConfig::default());
    let frames = on_stream([
        command(1, "late", &[], None),
        command(1, "echo", &[], Some(&b"second"[..])),
    ]);
    let (out, _) = run(
        &server,
        true,
        Scope::Connection,
        common::dripping(frames, Duration::from_millis(100)),
    )
    .await;
    let mut bodies = Vec::new();
    let mut current = Vec::new();
    for frame in hgframe_wire::Frames::new(out) {
        let frame = frame.unwrap();
        assert_eq!(
            frame.known_type(),
            Some(hgframe_wire::FrameType::BytesResponse)
        );
        current.extend_from_slice(frame.payload());
        if frame.flags() & hgframe_wire::BytesResponseFlags::EOS.bits() != 0 {
            bodies.push(std::mem::take(&mut current));
        }
    }
    assert_eq!(bodies, [b"first".to_vec(), b"second".to_vec()]);
}

/// Response pieces compressing on worker streams are held by the exchange, so they are
/// charged to the server's memory budget while they are in flight. Zeros compress to
/// almost nothing, so nothing else the exchange holds comes near one piece: a charge of
/// a piece or more can only be pieces in flight. A thread samples the charge while 64
/// MiB of pieces go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_compressing_on_workers_are_charged_to_the_memory_budget() {
    const PIECE: usize = 64 << 10;
    let mut r = Registry::new();
    r.register(
        "zeros",
        Permission::ReadOnly,
        |_: CommandInput, mut out: Responder| async move {
            let piece = Bytes::from(vec![0u8; PIECE]);
            for _ in 0..1024 {
                out.write(piece.clone()).await?;
            }
            out.finish(Bytes::new()).await?;
            Ok::<(), CommandError>(())
        },
    );
    let mut config = EngineConfig::default();
    config.set_parallel_streams(2).set_parallel_piece(PIECE);
    let server = server(r, config);
    let budget = server.memory().clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Acquire) {
                peak = peak.max(budget.charged());
                std::thread::yield_now();
            }
            peak
        })
    };
    let frames = on_stream([command(1, "zeros", &[], None)]);
    let accepts = ["zstd-8mb".to_owned()];
    let (output, stats) =
        common::run_accepting(&server, true, Scope::Connection, input(frames), &accepts).await;
    done.store(true, Ordering::Release);
    let peak = sampler.join().unwrap();
    let answer = &common::decoded_answers(output)[&1];
    assert_eq!(answer.data.len(), 1024 * PIECE);
    assert!(answer.data.iter().all(|b| *b == 0));
    assert!(
        stats.streams.iter().filter(|s| s.raw_bytes > 0).count() >= 2,
        "{:?}",
        stats.streams
    );
    assert!(
        peak >= PIECE,
        "peak charge {peak} bytes: no piece was ever charged"
    );
    assert_eq!(server.memory().charged(), 0, "every charge came back");
}
