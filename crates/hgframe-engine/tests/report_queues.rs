//! Exchanges reuse the report queues of those that ended before them
//! (`exchange/spares.rs`); a report sent after its exchange ended must never reach
//! another one.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{answers, command, input, multirequest, on_stream, run, server};
use hgframe_engine::{CommandInput, EngineConfig, Permission, Registry, Responder};

#[tokio::test]
async fn a_responder_kept_past_its_exchange_never_reaches_the_next_one() {
    // `keep` ends without answering itself (the exchange ends its response) and keeps
    // its `Responder`, whose sender outlives the exchange.
    let kept: Arc<Mutex<Option<Responder>>> = Arc::default();
    let stash = Arc::clone(&kept);
    let mut r = Registry::new();
    r.register("echo", Permission::ReadOnly, common::echo);
    r.register(
        "keep",
        Permission::ReadOnly,
        move |_: CommandInput, out: Responder| {
            let stash = Arc::clone(&stash);
            async move {
                *stash.lock().unwrap() = Some(out);
                Ok(())
            }
        },
    );
    let server = server(r, EngineConfig::default());
    let (out, _) = run(
        &server,
        false,
        multirequest(),
        input(on_stream([command(1, "keep", &[], None)])),
    )
    .await;
    assert_eq!(answers(out)[&1].terminals, 1);
    // The exchange has ended; its handler's responder writes for request 1, command 1,
    // which is also what the next exchange's first command will be.
    let mut late = kept.lock().unwrap().take().unwrap();
    let sent = late.write(Bytes::from_static(b"stale")).await;
    assert!(sent.is_err(), "the ended exchange's queue was still read");
    for _ in 0..3 {
        let (out, _) = run(
            &server,
            false,
            multirequest(),
            input(on_stream([command(1, "echo", &[], Some(&b"fresh"[..]))])),
        )
        .await;
        let answer = &answers(out)[&1];
        assert_eq!(answer.data, b"fresh");
        assert_eq!(answer.terminals, 1);
    }
}

#[tokio::test]
async fn exchanges_one_after_another_answer_each_their_own() {
    let mut r = Registry::new();
    r.register("echo", Permission::ReadOnly, common::echo);
    let server = server(r, EngineConfig::default());
    for i in 0..20u16 {
        let body = format!("body {i}");
        let frames = on_stream([
            command(1, "echo", &[], Some(body.as_bytes())),
            command(3, "echo", &[], Some(&b"second"[..])),
        ]);
        let (out, _) = run(&server, i % 2 == 0, multirequest(), input(frames)).await;
        let all = answers(out);
        assert_eq!(all[&1].data, body.as_bytes());
        assert_eq!(all[&3].data, b"second");
        assert!(all.values().all(|a| a.terminals == 1 && a.after_end == 0));
    }
}
