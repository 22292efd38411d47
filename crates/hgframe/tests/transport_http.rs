//! The HTTP transport end to end, over real loopback sockets.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{answer_of, command, post_frames, raw, within, TestServer};
use hgframe_http::{
    BatchEvent, Call, Client, ClientOptions, CommandError, CommandInput, Duplex, ErrorKind,
    Outcome, Permission, Responder, ResponseEvent, MEDIA_TYPE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A refusal case: method, URL, headers, status, part of the message.
type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], u16, &'a str);

const GOOD: [(&str, &str); 2] = [("accept", MEDIA_TYPE), ("content-type", MEDIA_TYPE)];

fn h2c() -> ClientOptions {
    let mut o = ClientOptions::default();
    o.set_http2_prior_knowledge(true);
    o
}

#[tokio::test]
async fn every_refusal_has_its_status_and_a_text_message() {
    let server = TestServer::start(|_, _| {}).await;
    let body = Bytes::from(command(1, "echo", &[], None, true));
    let cases: [Case<'_>; 8] = [
        (
            "POST",
            format!("{}/elsewhere", server.url()),
            &GOOD,
            404,
            "not found",
        ),
        (
            "POST",
            server.api("ro"),
            &GOOD,
            404,
            "do not know how to process",
        ),
        (
            "POST",
            server.api("xx/echo"),
            &GOOD,
            404,
            "unknown permission: xx",
        ),
        (
            "POST",
            server.api("ro/nosuch"),
            &GOOD,
            404,
            "unknown wire protocol command: nosuch",
        ),
        (
            "POST",
            server.api("ro/debugreflect"),
            &GOOD,
            404,
            "debugreflect service not available",
        ),
        (
            "GET",
            server.api("ro/echo"),
            &GOOD,
            405,
            "commands require POST requests",
        ),
        (
            "POST",
            server.api("ro/echo"),
            &[("content-type", MEDIA_TYPE)],
            406,
            MEDIA_TYPE,
        ),
        (
            "POST",
            server.api("ro/echo"),
            &[("accept", MEDIA_TYPE), ("content-type", "text/plain")],
            415,
            MEDIA_TYPE,
        ),
    ];
    for (method, url, headers, status, message) in cases {
        let r = raw(method, &url, headers, body.clone(), false).await;
        assert_eq!(r.status, status, "{method} {url}: {}", r.text());
        assert!(r.text().contains(message), "{method} {url}: {}", r.text());
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        if status == 405 {
            assert_eq!(r.headers["allow"], "POST");
        }
    }
    // The client turns a refusal into an error with the status and the message.
    let mut options = ClientOptions::default();
    options.set_media_type("application/x-other");
    let client = Client::with_options(&server.url(), options).unwrap();
    let e = client.call(Call::new("echo")).await.unwrap_err();
    assert_eq!(e.http_status().map(|s| s.as_u16()), Some(406));
    assert!(e.message().contains(MEDIA_TYPE), "{e}");
}

#[tokio::test]
async fn the_file_commands_over_http1_and_h2c() {
    let server = TestServer::start(|_, _| {}).await;
    for options in [ClientOptions::default(), h2c()] {
        let client = Client::with_options(&server.url(), options).unwrap();
        let call = |c| async { client.call(c).await.unwrap().collect().await };
        let echo = call(Call::new("echo").arg("b", "2").arg("a", "1"))
            .await
            .unwrap();
        assert_eq!(&echo.data[..], b"a=1\nb=2\n");
        let echo = call(Call::new("echo").arg("a", "1").data("payload"))
            .await
            .unwrap();
        assert_eq!(&echo.data[..], b"payload");
        let files = call(Call::new("files")).await.unwrap();
        assert_eq!(&files.data[..], b"a.txt\nsub/b.txt\n");
        let cat = call(Call::new("cat").arg("path", "sub/b.txt"))
            .await
            .unwrap();
        assert_eq!(&cat.data[..], b"beta\n");
        let missing = call(Call::new("cat").arg("path", "nope"))
            .await
            .unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Application);
        assert_eq!(missing.message(), "no such file: nope");
        let escape = call(Call::new("cat").arg("path", "../a.txt"))
            .await
            .unwrap_err();
        assert!(escape.message().contains("leaves the root"), "{escape}");
        let put = Call::new("put")
            .permission(Permission::ReadWrite)
            .arg("path", "new.txt")
            .data("fresh");
        assert_eq!(&call(put).await.unwrap().data[..], b"");
        assert_eq!(
            std::fs::read(server.root.path().join("new.txt")).unwrap(),
            b"fresh"
        );
        // A read-write command through `ro` is refused, and nothing is written.
        let put = Call::new("put").arg("path", "other.txt").data("x");
        let e = call(put).await.unwrap_err();
        assert_eq!(
            e.message(),
            "insufficient permissions to execute command: put"
        );
        assert!(!server.root.path().join("other.txt").exists());
        std::fs::remove_file(server.root.path().join("new.txt")).unwrap();
    }
}

#[tokio::test]
async fn multirequest_checks_each_command_against_the_url() {
    let server = TestServer::start(|_, _| {}).await;
    let client = Client::new(&server.url()).unwrap();
    let calls = vec![
        Call::new("cat").arg("path", "a.txt"),
        Call::new("put").arg("path", "x.txt").data("x"),
        Call::new("echo").arg("k", "v"),
        Call::new("nosuch"),
    ];
    let batch = client.call_many(Permission::ReadOnly, calls).await.unwrap();
    assert_eq!(batch.len(), 4);
    let mut answers = batch.collect().await;
    let nosuch = answers.pop().unwrap().unwrap_err();
    let echo = answers.pop().unwrap().unwrap();
    let put = answers.pop().unwrap().unwrap_err();
    let cat = answers.pop().unwrap().unwrap();
    assert_eq!(&cat.data[..], b"alpha\n");
    assert_eq!(
        put.message(),
        "insufficient permissions to execute command: put"
    );
    assert_eq!(&echo.data[..], b"k=v\n");
    assert_eq!(
        nosuch.message(),
        "wire protocol command not available: nosuch"
    );
    assert!(!server.root.path().join("x.txt").exists());

    let calls = vec![
        Call::new("put").arg("path", "x.txt").data("x"),
        Call::new("files"),
    ];
    let batch = client
        .call_many(Permission::ReadWrite, calls)
        .await
        .unwrap();
    for answer in batch.collect().await {
        answer.unwrap();
    }
    assert!(server.root.path().join("x.txt").exists());
}

#[tokio::test]
async fn a_single_command_url_runs_exactly_that_command_once() {
    let server = TestServer::start(|_, _| {}).await;
    let mut body = command(1, "echo", &[("a", "1")], None, true);
    body.extend_from_slice(&command(3, "echo", &[("b", "2")], None, false));
    let r = post_frames(&server.api("ro/echo"), body.freeze()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], MEDIA_TYPE);
    let frames = r.frames();
    assert_eq!(answer_of(&frames, 1), (b"a=1\n".to_vec(), vec![]));
    assert_eq!(
        answer_of(&frames, 3).1,
        ["multiple commands cannot be issued to this URL"]
    );

    let r = post_frames(
        &server.api("ro/files"),
        command(1, "echo", &[], None, true).freeze(),
    )
    .await;
    assert_eq!(
        answer_of(&r.frames(), 1).1,
        ["command in frame must match command in URL"]
    );
}

#[tokio::test]
async fn a_protocol_violation_is_answered_with_a_protocol_error() {
    let server = TestServer::start(|_, _| {}).await;
    let frame = hgframe_wire::Frame::from_human("1 2 stream-begin command-name eos echo").unwrap();
    let r = post_frames(&server.api("ro/echo"), frame.to_bytes()).await;
    let frames = r.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].frame_type(), 5);
    assert_eq!(frames[0].flags(), 0x01, "protocol flag");
    assert_eq!(
        String::from_utf8_lossy(frames[0].payload()),
        "received frame with even numbered stream ID: 2"
    );
    let stats = server.wait_stats(1).await;
    assert!(
        matches!(stats[0].outcome, Outcome::ProtocolError(_)),
        "{:?}",
        stats[0].outcome
    );

    // A frame cut short ends the input: the command it belonged to is reported.
    let mut body = command(1, "echo", &[("a", "1")], None, true);
    body.truncate(body.len() - 3);
    let r = post_frames(&server.api("ro/echo"), body.freeze()).await;
    assert_eq!(r.status, 200);
    let stats = server.wait_stats(2).await;
    assert!(
        matches!(stats[1].outcome, Outcome::InputFailed(_)),
        "{:?}",
        stats[1].outcome
    );
}

#[tokio::test]
async fn debugreflect_when_enabled_and_within_its_limit() {
    let server = TestServer::start(|c, _| {
        c.set_debugreflect(true).set_reflect_limit(400);
    })
    .await;
    let r = post_frames(
        &server.api("ro/debugreflect"),
        command(1, "echo", &[("a", "1")], None, true).freeze(),
    )
    .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.starts_with("received: 1 1 stream-begin command-name have-args echo\n"),
        "{text}"
    );
    assert!(
        text.contains("action: runcommand request=1 command=echo args={a=1} data=none"),
        "{text}"
    );
    assert!(text.contains("received: <no frame>"), "{text}");

    let mut body = BytesMut::new();
    for i in 0..50u16 {
        body.extend_from_slice(&command(2 * i + 1, "echo", &[], None, i == 0));
    }
    let text = post_frames(&server.api("ro/debugreflect"), body.freeze())
        .await
        .text();
    assert!(text.contains("report limit reached"), "{text}");
    assert!(text.len() < 800, "the report stops near its limit");
}

#[tokio::test]
async fn responses_use_the_best_encoding_the_client_accepts() {
    let server = TestServer::start(|_, _| {}).await;
    let text = "the same line, again and again\n".repeat(2000);
    std::fs::write(server.root.path().join("big.txt"), &text).unwrap();
    let zstd = Client::new(&server.url()).unwrap();
    let got = zstd
        .call(Call::new("cat").arg("path", "big.txt"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(got.data, text.as_bytes());
    let mut options = ClientOptions::default();
    options.set_encodings(&["identity"]);
    let identity = Client::with_options(&server.url(), options).unwrap();
    let got = identity
        .call(Call::new("cat").arg("path", "big.txt"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(got.data, text.as_bytes());
    // A request without the header gets identity too.
    let r = post_frames(
        &server.api("ro/cat"),
        command(1, "cat", &[("path", "a.txt")], None, true).freeze(),
    )
    .await;
    assert_eq!(answer_of(&r.frames(), 1).0, b"alpha\n");

    let stats = server.wait_stats(3).await;
    let compressed = &stats[0].streams[0];
    assert_eq!(compressed.profile, "zstd-8mb");
    assert_eq!(compressed.raw_bytes, text.len() as u64);
    assert!(
        compressed.wire_bytes * 10 < compressed.raw_bytes,
        "{compressed:?}"
    );
    assert_eq!(stats[1].streams[0].profile, "identity");
    assert!(stats[1].streams[0].wire_bytes > text.len() as u64);
    assert_eq!(stats[2].streams[0].profile, "identity");
    assert_eq!(stats[0].commands, 1);
}

#[tokio::test]
async fn the_server_preference_decides_among_what_the_client_accepts() {
    let server = TestServer::start(|c, _| {
        c.engine_mut().set_encodings(&["identity", "zstd-8mb"]);
    })
    .await;
    let client = Client::new(&server.url()).unwrap();
    client
        .call(Call::new("echo").data("x"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(server.wait_stats(1).await[0].streams[0].profile, "identity");
}

/// Answers every piece of data as soon as it arrives.
async fn ping(mut input: CommandInput, mut out: Responder) -> Result<(), CommandError> {
    let mut data = input
        .take_data()
        .ok_or_else(|| CommandError::new("no data"))?;
    while let Some(piece) = data.chunk().await? {
        out.write(piece).await?;
    }
    Ok(())
}

#[tokio::test]
async fn full_duplex_over_h2c_answers_before_the_request_ends() {
    let server = TestServer::start(|_, r| {
        r.register("ping", Permission::ReadOnly, ping);
    })
    .await;
    let client = Client::with_options(&server.url(), h2c()).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    let data =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut answer = client
        .call(Call::new("ping").data_stream(data))
        .await
        .unwrap();
    // Each piece goes out only after the previous one came back: impossible unless the
    // response flows while the request is still open.
    for i in 0..5 {
        let piece = format!("piece {i}");
        tx.send(Ok(Bytes::from(piece.clone()))).await.unwrap();
        let mut got = Vec::new();
        while got.len() < piece.len() {
            match within(answer.next()).await.unwrap().unwrap() {
                ResponseEvent::Data(d) => got.extend_from_slice(&d),
                ResponseEvent::Text(_) => {}
                other => panic!("no extension was offered: {other:?}"),
            }
        }
        assert_eq!(got, piece.as_bytes());
    }
    drop(tx);
    assert!(within(answer.next()).await.is_none());
    let stats = server.wait_stats(1).await;
    assert!(stats[0].full_duplex);
    assert_eq!(stats[0].transport, hgframe_http::Transport::Http2);
}

#[tokio::test]
async fn streamed_data_in_both_directions_with_the_smallest_queues() {
    let server = TestServer::start(|c, r| {
        c.engine_mut()
            .set_report_queue(1)
            .set_data_queue(1)
            .set_body_queue(1)
            .set_transmit_chunk(1024)
            .set_response_piece(4096);
        r.register("ping", Permission::ReadOnly, ping);
    })
    .await;
    let payload: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for options in [ClientOptions::default(), h2c()] {
        let client = Client::with_options(&server.url(), options).unwrap();
        let pieces: Vec<std::io::Result<Bytes>> = payload
            .chunks(10_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let call = Call::new("ping").data_stream(futures_util::stream::iter(pieces));
        let got = within(client.call(call).await.unwrap().collect())
            .await
            .unwrap();
        assert_eq!(got.data, payload);
    }
}

#[tokio::test]
async fn responses_of_one_exchange_interleave() {
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let server = TestServer::start(|_, r| {
        for name in ["left", "right"] {
            let barrier = Arc::clone(&barrier);
            r.register(
                name,
                Permission::ReadOnly,
                move |_: CommandInput, mut out: Responder| {
                    let barrier = Arc::clone(&barrier);
                    async move {
                        out.write(Bytes::from(format!("{name} 1;"))).await?;
                        barrier.wait().await;
                        out.finish(Bytes::from(format!("{name} 2;"))).await?;
                        Ok(())
                    }
                },
            );
        }
    })
    .await;
    let mut body = command(1, "left", &[], None, true);
    body.extend_from_slice(&command(3, "right", &[], None, false));
    let r = post_frames(&server.api("ro/multirequest"), body.freeze()).await;
    let frames = r.frames();
    let order: Vec<(u16, u8)> = frames
        .iter()
        .map(|f| (f.request_id().0, f.flags()))
        .collect();
    // Both first pieces (continuation) come before either last piece (eos).
    let first_eos = order.iter().position(|&(_, flags)| flags == 0x02).unwrap();
    let before: std::collections::BTreeSet<u16> =
        order[..first_eos].iter().map(|&(r, _)| r).collect();
    assert_eq!(before.len(), 2, "{order:?}");
    assert_eq!(answer_of(&frames, 1).0, b"left 1;left 2;");
    assert_eq!(answer_of(&frames, 3).0, b"right 1;right 2;");
}

/// Writes 64 KiB pieces until cancelled, counting; says when it is dropped.
fn endless(
    written: Arc<AtomicU64>,
    dropped: Arc<tokio::sync::Notify>,
) -> impl Fn(
    CommandInput,
    Responder,
) -> futures_util::future::BoxFuture<'static, Result<(), CommandError>>
       + Send
       + Sync
       + 'static {
    struct Guard(Arc<tokio::sync::Notify>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.notify_one();
        }
    }
    let piece = Bytes::from(vec![b'x'; 64 << 10]);
    move |_, mut out| {
        let (written, guard, piece) = (
            Arc::clone(&written),
            Guard(Arc::clone(&dropped)),
            piece.clone(),
        );
        Box::pin(async move {
            let _guard = guard;
            loop {
                out.write(piece.clone()).await?;
                written.fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
        })
    }
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_handler() {
    let written = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(tokio::sync::Notify::new());
    let server = TestServer::start(|c, r| {
        c.set_duplex(Duplex::Full);
        r.register(
            "endless",
            Permission::ReadOnly,
            endless(Arc::clone(&written), Arc::clone(&dropped)),
        );
    })
    .await;
    let client = Client::new(&server.url()).unwrap();
    let mut stream = client.call(Call::new("endless")).await.unwrap();
    let mut got = 0;
    while got < 1 << 20 {
        if let Some(Ok(ResponseEvent::Data(d))) = within(stream.next()).await {
            got += d.len();
        }
    }
    drop(stream);
    within(dropped.notified()).await;
    let stats = server.wait_stats(1).await;
    assert_eq!(stats[0].outcome, Outcome::ClientGone);
}

#[tokio::test]
async fn a_slow_reader_keeps_the_server_memory_bounded() {
    let written = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(tokio::sync::Notify::new());
    let server = TestServer::start(|c, r| {
        c.set_duplex(Duplex::Full);
        r.register(
            "endless",
            Permission::ReadOnly,
            endless(Arc::clone(&written), Arc::clone(&dropped)),
        );
    })
    .await;
    // A client that sends its request and never reads.
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = command(1, "endless", &[], None, true);
    let head = format!(
        "POST /api/exp-http-v2-0001/ro/endless HTTP/1.1\r\nhost: x\r\naccept: {MEDIA_TYPE}\r\ncontent-type: {MEDIA_TYPE}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body).await.unwrap();
    // Wait until the handler is paused (no progress between two looks).
    let mut last = u64::MAX;
    within(async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = written.load(Ordering::Relaxed);
            if now == last && now > 0 {
                break;
            }
            last = now;
        }
    })
    .await;
    // Socket buffers on both sides plus the server's bounded queues; an unbounded
    // server would have run far past this.
    assert!(
        last < 48 << 20,
        "the handler wrote {last} bytes to a client that reads nothing"
    );
    drop(socket);
    within(dropped.notified()).await;
}

#[tokio::test]
async fn an_idle_exchange_is_aborted() {
    let server = TestServer::start(|c, _| {
        c.engine_mut()
            .set_idle_timeout(Some(Duration::from_millis(200)));
    })
    .await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = command(1, "echo", &[("a", "1")], None, true);
    let head = format!(
        "POST /api/exp-http-v2-0001/ro/echo HTTP/1.1\r\nhost: x\r\naccept: {MEDIA_TYPE}\r\ncontent-type: {MEDIA_TYPE}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body[..5]).await.unwrap();
    // The rest never comes: the server gives up and closes.
    let mut sink = Vec::new();
    let _ = within(socket.read_to_end(&mut sink)).await;
    let stats = server.wait_stats(1).await;
    assert_eq!(stats[0].outcome, Outcome::TimedOut);
}

/// A short body is decoded in place when it has arrived whole by the time the service
/// looks; one that arrives in parts (its first part there, the rest later, or nothing
/// yet) must still be read to its end, not taken for all there is.
#[tokio::test]
async fn a_short_body_that_arrives_in_parts_is_read_to_its_end() {
    let server = TestServer::start(|_, _| {}).await;
    let data = [b'x'; 700];
    let body = command(1, "echo", &[], Some(&data[..]), true);
    for split in [0, 5, body.len() / 2, body.len() - 1] {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /api/exp-http-v2-0001/ro/echo HTTP/1.1\r\nhost: x\r\naccept: {MEDIA_TYPE}\r\ncontent-type: {MEDIA_TYPE}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&body[..split]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        socket.write_all(&body[split..]).await.unwrap();
        let mut answer = Vec::new();
        within(socket.read_to_end(&mut answer)).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "split at {split}");
        let echoed = answer.windows(data.len()).any(|w| w == data);
        assert!(echoed, "split at {split}: the whole data came back");
    }
}

#[tokio::test]
async fn a_client_slow_to_send_headers_is_disconnected() {
    let server = TestServer::start(|c, _| {
        c.set_header_read_timeout(Some(Duration::from_millis(200)));
    })
    .await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"POST /api/exp-http-v2-0001/ro/echo HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = within(socket.read_to_end(&mut sink)).await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_their_turn() {
    let server = TestServer::start(|c, _| {
        c.engine_mut().set_max_connections(1);
    })
    .await;
    // The slot is held by a request in flight (headers sent, body owed): an idle
    // connection would be closed to make room (`evict_idle_at_limit`).
    let mut holder = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    holder
        .write_all(
            format!(
                "POST /api/exp-http-v2-0001/ro/echo HTTP/1.1\r\nhost: t\r\n\
                 accept: {MEDIA_TYPE}\r\ncontent-type: {MEDIA_TYPE}\r\n\
                 content-length: 100000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = Client::new(&server.url()).unwrap();
    let waiting = tokio::spawn(async move {
        client
            .call(Call::new("echo").data("x"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served beyond the connection limit");
    drop(holder);
    assert_eq!(&within(waiting).await.unwrap().data[..], b"x");
}

#[tokio::test]
async fn graceful_shutdown_finishes_responses_in_flight() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let (g, s) = (Arc::clone(&gate), Arc::clone(&started));
    let mut server = TestServer::start(move |_, r| {
        r.register(
            "slow",
            Permission::ReadOnly,
            move |_: CommandInput, out: Responder| {
                let (gate, started) = (Arc::clone(&g), Arc::clone(&s));
                async move {
                    started.notify_one();
                    gate.notified().await;
                    out.finish("done").await?;
                    Ok(())
                }
            },
        );
    })
    .await;
    let client = Client::new(&server.url()).unwrap();
    let answer = tokio::spawn(async move {
        client
            .call(Call::new("slow"))
            .await
            .unwrap()
            .collect()
            .await
    });
    within(started.notified()).await;
    let serving = server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !serving.is_finished(),
        "shutdown must wait for the response in flight"
    );
    gate.notify_one();
    assert_eq!(&within(answer).await.unwrap().unwrap().data[..], b"done");
    within(serving).await.unwrap();
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn text_output_and_handler_failures_reach_the_client() {
    let server = TestServer::start(|_, r| {
        r.register(
            "chatty",
            Permission::ReadOnly,
            |_: CommandInput, mut out: Responder| async move {
                out.text(vec![hgframe_http::TextAtom::new(
                    "hello %s",
                    vec!["world".into()],
                )])
                .await?;
                out.write("partial").await?;
                Err(CommandError::new("it broke"))
            },
        );
        r.register(
            "panics",
            Permission::ReadOnly,
            |_: CommandInput, _: Responder| async move {
                if true {
                    panic!("a bug in a handler");
                }
                Ok(())
            },
        );
    })
    .await;
    let client = Client::new(&server.url()).unwrap();
    let mut s = client.call(Call::new("chatty")).await.unwrap();
    match s.next().await.unwrap().unwrap() {
        ResponseEvent::Text(atoms) => assert_eq!(atoms[0].render().unwrap(), "hello world"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.next().await.unwrap().unwrap(),
        ResponseEvent::Data(Bytes::from("partial"))
    );
    let e = s.next().await.unwrap().unwrap_err();
    assert!(e.is_application());
    assert_eq!(e.message(), "it broke");
    assert!(s.next().await.is_none());
    let e = client
        .call(Call::new("panics"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert_eq!(e.message(), "the command failed unexpectedly");
}

#[tokio::test]
async fn mounted_behind_middleware() {
    use tower::Service as _;
    let root = tempfile::tempdir().unwrap();
    let mut registry = hgframe_http::Registry::new();
    hgframe::commands::FileCommands::new(root.path())
        .unwrap()
        .register(&mut registry);
    let config = hgframe_http::ServerConfig::default();
    let inner = hgframe_http::HgFrameService::new(registry, config.clone()).unwrap();
    // An authentication layer in front: the hgframe service only sees what it lets by.
    let authed = tower::service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let mut inner = inner.clone();
        async move {
            let authorized =
                matches!(request.headers().get("authorization"), Some(v) if v == "Bearer secret");
            if !authorized {
                let mut refused = http::Response::new(hgframe_http::FrameBody::from(Bytes::from(
                    "who are you?\n",
                )));
                *refused.status_mut() = http::StatusCode::UNAUTHORIZED;
                return Ok(refused);
            }
            inner.call(request).await
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        hgframe_http::serve_service(listener, authed, &config, async {
            let _ = stopped.await;
        })
        .await
    });
    let url = format!("http://{addr}/api/exp-http-v2-0001/ro/echo");
    let body = Bytes::from(command(1, "echo", &[("a", "1")], None, true));
    let r = raw("POST", &url, &GOOD, body.clone(), false).await;
    assert_eq!(r.status, 401);
    let mut headers = GOOD.to_vec();
    headers.push(("authorization", "Bearer secret"));
    let r = raw("POST", &url, &headers, body, false).await;
    assert_eq!(r.status, 200);
    assert_eq!(answer_of(&r.frames(), 1).0, b"a=1\n");
    stop.send(()).unwrap();
    within(serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_stops_waiting_after_the_grace_period() {
    let started = Arc::new(tokio::sync::Notify::new());
    let s = Arc::clone(&started);
    let mut server = TestServer::start(move |c, r| {
        c.engine_mut()
            .set_shutdown_grace(Some(Duration::from_millis(100)));
        r.register(
            "never",
            Permission::ReadOnly,
            move |_: CommandInput, _: Responder| {
                let started = Arc::clone(&s);
                async move {
                    started.notify_one();
                    std::future::pending::<()>().await;
                    Ok(())
                }
            },
        );
    })
    .await;
    let client = Client::new(&server.url()).unwrap();
    let stuck = tokio::spawn(async move { client.call(Call::new("never")).await?.collect().await });
    within(started.notified()).await;
    within(server.begin_shutdown()).await.unwrap();
    // The response was dropped with its connection.
    assert!(within(stuck).await.unwrap().is_err());
}

#[tokio::test]
async fn the_smallest_client_window_and_queues_still_answer_everything() {
    let server = TestServer::start(|_, _| {}).await;
    for i in 0..20 {
        std::fs::write(
            server.root.path().join(format!("f{i}")),
            format!("{i} ").repeat(5000),
        )
        .unwrap();
    }
    let mut options = h2c();
    options
        .set_window(1)
        .set_response_queue(1)
        .set_transmit_chunk(1);
    let client = Client::with_options(&server.url(), options).unwrap();
    let calls = (0..20)
        .map(|i| Call::new("cat").arg("path", format!("f{i}")))
        .collect();
    let batch = client.call_many(Permission::ReadOnly, calls).await.unwrap();
    let answers = within(batch.collect()).await;
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert_eq!(answer.data, format!("{i} ").repeat(5000).as_bytes());
    }
}

/// Each response of the large batches: a little over 1 MiB, more than 32 frames.
const BIG: usize = (1 << 20) + 4321;
/// `big` writes this much at a time.
const BIG_CHUNK: usize = 64 << 10;

/// The bytes of response `i` at `offset..offset + len`: in each chunk `c`, `i` and `c`
/// (big-endian u32), then the byte `(i + c) % 251`.
fn big_bytes(i: usize, offset: usize, len: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut at = offset;
    while at < offset + len {
        let c = at / BIG_CHUNK;
        let end = ((c + 1) * BIG_CHUNK).min(offset + len);
        let start = out.len();
        out.resize(start + (end - at), ((i + c) % 251) as u8);
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(i as u32).to_be_bytes());
        head[4..].copy_from_slice(&(c as u32).to_be_bytes());
        for k in at..end.min(c * BIG_CHUNK + 8) {
            out[start + k - at] = head[k - c * BIG_CHUNK];
        }
        at = end;
    }
}

/// A server with `big i=<n>`: response `n` of [`BIG`] bytes.
async fn big_server() -> TestServer {
    TestServer::start(|_, registry| {
        registry.register(
            "big",
            Permission::ReadOnly,
            |input: CommandInput, mut out: Responder| async move {
                let i: usize = input
                    .arg_str("i")?
                    .parse()
                    .map_err(|_| CommandError::new("bad i"))?;
                let mut buf = Vec::new();
                let mut at = 0;
                while at < BIG {
                    let len = BIG_CHUNK.min(BIG - at);
                    big_bytes(i, at, len, &mut buf);
                    if out.write(Bytes::copy_from_slice(&buf)).await.is_err() {
                        return Ok(());
                    }
                    at += len;
                }
                let _ = out.finish(Bytes::new()).await;
                Ok(())
            },
        );
    })
    .await
}

/// 200 calls of `big`, identity (the point is the queues, not compression).
fn big_calls() -> Vec<Call> {
    (0..200)
        .map(|i| Call::new("big").arg("i", i.to_string()))
        .collect()
}

/// Fails a deadlock instead of hanging (a batch of 200 MiB takes a while in debug).
async fn patiently<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("deadlock: no answer within 90 s")
}

async fn large_batch_in_call_order(mut options: ClientOptions) {
    let server = big_server().await;
    options.set_encodings(&["identity"]);
    let client = Client::with_options(&server.url(), options).unwrap();
    let batch = patiently(client.call_many(Permission::ReadOnly, big_calls()))
        .await
        .unwrap();
    let answers = patiently(batch.collect()).await;
    assert_eq!(answers.len(), 200);
    let mut expected = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        big_bytes(i, 0, BIG, &mut expected);
        assert!(answer.data == expected[..], "response {i} differs");
    }
}

async fn large_batch_as_it_arrives(mut options: ClientOptions) {
    let server = big_server().await;
    options.set_encodings(&["identity"]);
    let client = Client::with_options(&server.url(), options).unwrap();
    let mut batch = patiently(client.call_many(Permission::ReadOnly, big_calls()))
        .await
        .unwrap();
    let mut offsets = vec![0usize; 200];
    let mut ended = [false; 200];
    let mut expected = Vec::new();
    patiently(async {
        while let Some((i, event)) = batch.next().await {
            assert!(!ended[i], "event after the end of {i}");
            match event {
                BatchEvent::Data(data) => {
                    big_bytes(i, offsets[i], data.len(), &mut expected);
                    assert!(
                        data == expected[..],
                        "response {i} differs at {}",
                        offsets[i]
                    );
                    offsets[i] += data.len();
                }
                BatchEvent::Text(_) => {}
                BatchEvent::End => ended[i] = true,
                BatchEvent::Failed(e) => panic!("response {i} failed: {e}"),
            }
        }
    })
    .await;
    assert!(ended.iter().all(|e| *e));
    assert!(offsets.iter().all(|&n| n == BIG), "{offsets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_200_large_responses_over_http1_collects_in_call_order() {
    large_batch_in_call_order(ClientOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_200_large_responses_over_http1_is_read_as_it_arrives() {
    large_batch_as_it_arrives(ClientOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_200_large_responses_over_h2c_collects_in_call_order() {
    large_batch_in_call_order(h2c()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_200_large_responses_over_h2c_is_read_as_it_arrives() {
    large_batch_as_it_arrives(h2c()).await;
}

#[tokio::test]
async fn an_unknown_encoding_name_is_refused_not_dropped() {
    let mut options = ClientOptions::default();
    options.set_encodings(&["zstd", "identity"]);
    let e = Client::with_options("127.0.0.1:1", options.clone()).unwrap_err();
    assert!(
        e.message().contains("unknown content encoding \"zstd\""),
        "{e}"
    );
    let e = hgframe_http::bytestream::Connection::connect_tcp("127.0.0.1:1", options)
        .await
        .unwrap_err();
    assert!(e.message().contains("unknown content encoding"), "{e}");
}

/// 256 KiB of text that compresses well.
fn compressible() -> Bytes {
    let line = b"the quick brown fox jumps over the lazy dog, again and again\n";
    Bytes::from(line.repeat((256 << 10) / line.len()))
}

/// What `echo` answers to `data`.
async fn echo_data(client: &Client, data: &Bytes) -> Bytes {
    let call = Call::new("echo").data(data.clone());
    client
        .call(call)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .data
}

#[tokio::test]
async fn requests_are_compressed_once_the_server_says_it_decodes_zstd() {
    let server = TestServer::start(|_, _| {}).await;
    let client = Client::new(&server.url()).unwrap();
    let data = compressible();
    // The first exchange cannot know: it goes raw, and learns what the server decodes.
    assert_eq!(echo_data(&client, &data).await, data);
    let first = client.stats();
    assert!(first.request_wire_bytes >= data.len() as u64, "{first:?}");
    // The next ones are encoded with zstd-8mb, and still answered right.
    assert_eq!(echo_data(&client, &data).await, data);
    let second = client.stats();
    let wire = second.request_wire_bytes - first.request_wire_bytes;
    assert!(
        wire < data.len() as u64 / 20,
        "{wire} bytes on the wire for {}",
        data.len()
    );

    // Turned off, requests stay raw.
    let mut options = ClientOptions::default();
    options.set_compress_requests(false);
    let raw_client = Client::with_options(&server.url(), options).unwrap();
    for _ in 0..2 {
        assert_eq!(echo_data(&raw_client, &data).await, data);
    }
    assert!(raw_client.stats().request_wire_bytes >= 2 * data.len() as u64);
}

#[tokio::test]
async fn a_connect_error_names_the_address_and_what_the_system_said() {
    // Nothing listens on port 1 of the loopback.
    let client = Client::new("127.0.0.1:1").unwrap();
    let e = client.call(Call::new("echo")).await.unwrap_err();
    let message = e.message();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
    let e =
        hgframe_http::bytestream::Connection::connect_tcp("127.0.0.1:1", ClientOptions::default())
            .await
            .unwrap_err();
    let message = e.message();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
}
