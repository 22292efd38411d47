//! Sessions: one long-lived channel shared by many tasks (`Session`), over the byte
//! stream and over one h2c exchange kept open.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{within, TestServer};
use futures_util::FutureExt;
use hgframe::commands::FileCommands;
use hgframe_http::bytestream::{serve_connection, serve_tcp, Connection};
use hgframe_http::{
    Call, Client, ClientOptions, CommandInput, EngineConfig, Permission, Registry, Responder,
    Server, Session,
};

/// Calls made by all tasks together.
const CALLS: usize = 20_000;
/// Tasks sharing the session.
const TASKS: usize = 64;

/// The longest the big tests may take before they count as hung.
const HANG: Duration = Duration::from_secs(600);

/// The call number `n` of task `t`, and the answer it must get: half carry data (echoed
/// as is), half arguments (echoed as `name=value` lines in name order).
fn call_and_answer(t: usize, n: usize) -> (Call, Vec<u8>) {
    if n % 2 == 0 {
        let data: Vec<u8> = (0..(n % 97) + 1)
            .map(|i| (i * 31 + t * 7 + n) as u8)
            .collect();
        (Call::new("echo").data(data.clone()), data)
    } else {
        let call = Call::new("echo")
            .arg("n", n.to_string())
            .arg("t", t.to_string());
        (call, format!("n={n}\nt={t}\n").into_bytes())
    }
}

/// 64 tasks calling through clones of `session`, 20,000 calls in all; every answer is
/// checked against its call. Returns the bytes of answers expected.
async fn sixty_four_tasks(session: &Session) -> u64 {
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            let mut n = t;
            while n < CALLS {
                let (call, expected) = call_and_answer(t, n);
                let answer = session
                    .call(call)
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap_or_else(|e| panic!("task {t} call {n}: {e}"));
                assert_eq!(answer.data, expected, "task {t} call {n}: another's answer");
                bytes += expected.len() as u64;
                n += TASKS;
            }
            bytes
        }));
    }
    let mut bytes = 0;
    for task in tasks {
        bytes += tokio::time::timeout(HANG, task)
            .await
            .expect("the tasks hung")
            .unwrap();
    }
    bytes
}

fn file_server() -> (Server, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    FileCommands::new(root.path())
        .unwrap()
        .register(&mut registry);
    (
        Server::new(registry, EngineConfig::default()).unwrap(),
        root,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_share_one_session_over_tcp() {
    let (server, _root) = file_server();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve_tcp(listener, server, async {
        let _ = stop_rx.await;
    }));
    let conn = within(Connection::connect_tcp(
        &addr.to_string(),
        ClientOptions::default(),
    ))
    .await
    .unwrap();
    let session = conn.session().unwrap();
    let expected = sixty_four_tasks(&session).await;

    let stats = session.stats();
    assert_eq!(stats.profile, "zstd-8mb");
    assert_eq!(session.encoding(), "zstd-8mb");
    // `hello` and the calls, none failed.
    assert_eq!(stats.calls, CALLS as u64 + 1);
    assert_eq!(stats.errors, 0);
    // The answers and `hello`'s (`encoding=zstd-8mb\n`).
    assert!(stats.response_decoded_bytes >= expected);
    assert!(stats.response_decoded_bytes <= expected + 64);
    assert!(stats.request_wire_bytes > 0 && stats.request_decoded_bytes > 0);
    // One compression context for the whole session: the small answers compress.
    assert!(
        stats.response_wire_bytes < stats.response_decoded_bytes + 8 * 2 * CALLS as u64,
        "{stats:?}"
    );
    assert_eq!(session.pending_calls(), 0);
    tokio::time::timeout(HANG, session.close()).await.unwrap();
    let _ = stop_tx.send(());
    within(serving).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_share_one_session_over_h2c() {
    let server = TestServer::start(|_, _| {}).await;
    let mut options = ClientOptions::default();
    options.set_http2_prior_knowledge(true);
    let client = Client::with_options(&server.url(), options).unwrap();
    let session = within(client.session(Permission::ReadOnly)).await.unwrap();
    let expected = sixty_four_tasks(&session).await;

    let stats = session.stats();
    assert_eq!(stats.profile, "zstd-8mb");
    assert_eq!(stats.calls, CALLS as u64);
    assert_eq!(stats.errors, 0);
    assert_eq!(stats.response_decoded_bytes, expected);
    session.close().await;
    // One exchange served them all.
    let exchanges = server.wait_stats(1).await;
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].commands, CALLS as u64);
}

#[tokio::test]
async fn a_session_over_http1_is_refused_with_a_clear_error() {
    let server = TestServer::start(|_, _| {}).await;
    let client = Client::new(&server.url()).unwrap();
    let e = client.session(Permission::ReadOnly).await.unwrap_err();
    assert!(e.message().contains("half duplex"), "{e}");
    assert!(e.message().contains("HTTP/2"), "{e}");
}

/// A server whose `hold` command answers only once told to, counting how often it ran.
struct Held {
    runs: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
}

fn held_server() -> (Server, Held) {
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut registry = Registry::new();
    let (r, n) = (Arc::clone(&runs), Arc::clone(&release));
    registry.register(
        "hold",
        Permission::ReadOnly,
        move |_: CommandInput, out: Responder| {
            let (runs, release) = (Arc::clone(&r), Arc::clone(&n));
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                release.notified().await;
                out.finish(Bytes::from_static(b"held")).await?;
                Ok(())
            }
        },
    );
    registry.register(
        "quick",
        Permission::ReadOnly,
        |_: CommandInput, out: Responder| async move {
            out.finish(Bytes::from_static(b"quick")).await?;
            Ok(())
        },
    );
    (
        Server::new(registry, EngineConfig::default()).unwrap(),
        Held { runs, release },
    )
}

/// A session over an in-memory byte stream to `server`; the serving task (abort it to
/// end the channel).
async fn session_on(
    server: Server,
    options: ClientOptions,
) -> (
    Result<Session, hgframe_http::Error>,
    tokio::task::JoinHandle<()>,
) {
    let (client, served) = tokio::io::duplex(64 << 10);
    let (server_in, server_out) = tokio::io::split(served);
    let serving = tokio::spawn(async move {
        serve_connection(server_in, server_out, &server, std::future::pending()).await;
    });
    let (from_server, to_server) = tokio::io::split(client);
    let conn = within(Connection::new(from_server, to_server, options))
        .await
        .unwrap();
    (conn.session(), serving)
}

#[tokio::test]
async fn no_room_for_a_pending_call_is_refused() {
    let mut options = ClientOptions::default();
    options.set_max_pending_calls(0);
    assert!(options.validate().is_err());
    // Refused before anything is sent: by the connection that would carry the session.
    let (client, _served) = tokio::io::duplex(64 << 10);
    let (from_server, to_server) = tokio::io::split(client);
    let e = within(Connection::new(from_server, to_server, options))
        .await
        .unwrap_err();
    assert!(e.message().contains("max_pending_calls"), "{e}");
}

#[tokio::test]
async fn pending_calls_are_bounded_and_the_next_caller_waits() {
    let (server, held) = held_server();
    let mut options = ClientOptions::default();
    options.set_max_pending_calls(2);
    let (session, _serving) = session_on(server, options).await;
    let session = session.unwrap();
    let first = within(session.call(Call::new("hold"))).await.unwrap();
    let second = within(session.call(Call::new("hold"))).await.unwrap();
    assert_eq!(session.pending_calls(), 2);
    // No room: the third caller waits (back-pressure), it is not queued.
    let mut third = Box::pin(session.call(Call::new("quick")));
    tokio::task::yield_now().await;
    assert!((&mut third).now_or_never().is_none());
    // A dropped response gives its place back.
    drop(first);
    let third = within(third).await.unwrap();
    assert_eq!(&within(third.collect()).await.unwrap().data[..], b"quick");
    held.release.notify_waiters();
    // The second call may not have reached its handler when notified: keep releasing.
    let answer = within(async {
        let collecting = second.collect();
        tokio::pin!(collecting);
        loop {
            tokio::select! {
                answer = &mut collecting => return answer,
                () = tokio::time::sleep(Duration::from_millis(10)) => held.release.notify_waiters(),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(&answer.data[..], b"held");
    assert_eq!(session.pending_calls(), 0);
}

#[tokio::test]
async fn a_session_call_past_its_deadline_times_out_and_the_session_goes_on() {
    let (server, _held) = held_server();
    let (session, _serving) = session_on(server, ClientOptions::default()).await;
    let session = session.unwrap();
    let call = Call::new("hold").deadline(Duration::from_millis(50));
    let e = within(within(session.call(call)).await.unwrap().collect())
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let answer = within(
        within(session.call(Call::new("quick")))
            .await
            .unwrap()
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(&answer.data[..], b"quick");
    let stats = session.stats();
    assert_eq!(stats.errors, 1, "the timeout counted once: {stats:?}");
}

#[tokio::test]
async fn when_the_channel_ends_calls_in_flight_fail_and_nothing_is_replayed() {
    let (server, held) = held_server();
    let (session, serving) = session_on(server, ClientOptions::default()).await;
    let session = session.unwrap();
    let waiting = within(session.call(Call::new("hold"))).await.unwrap();
    within(async {
        while held.runs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // The channel ends under the call.
    serving.abort();
    let e = within(waiting.collect()).await.unwrap_err();
    assert!(e.is_closed() || e.is_io() || e.is_protocol(), "{e}");
    within(async {
        while !session.is_closed() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let e = within(session.call(Call::new("quick"))).await.unwrap_err();
    assert!(e.message().contains("open a new session"), "{e}");
    assert_eq!(held.runs.load(Ordering::SeqCst), 1, "a call was replayed");
    assert_eq!(session.stats().errors, 1);
}

/// The server ends an h2c exchange that owes it input and makes no progress for its
/// `idle_timeout` (default 60 s; 300 ms here): an idle session over h2c ends then, and
/// says so; a new session works. Nothing is retried by itself.
#[tokio::test]
async fn an_h2c_session_the_server_ends_says_so_and_a_new_one_works() {
    let server = TestServer::start(|config, _| {
        config
            .engine_mut()
            .set_idle_timeout(Some(Duration::from_millis(300)));
    })
    .await;
    let mut options = ClientOptions::default();
    options.set_http2_prior_knowledge(true);
    let client = Client::with_options(&server.url(), options).unwrap();
    let session = within(client.session(Permission::ReadOnly)).await.unwrap();
    let answer = within(
        within(session.call(Call::new("echo").arg("a", "1")))
            .await
            .unwrap()
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(&answer.data[..], b"a=1\n");
    within(async {
        while !session.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let e = within(session.call(Call::new("echo"))).await.unwrap_err();
    assert!(e.message().contains("open a new session"), "{e}");
    let again = within(client.session(Permission::ReadOnly)).await.unwrap();
    let answer = within(
        within(again.call(Call::new("echo").arg("b", "2")))
            .await
            .unwrap()
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(&answer.data[..], b"b=2\n");
}

#[tokio::test]
async fn an_h2c_session_encodes_its_calls_once_the_server_says_it_decodes_zstd() {
    let server = TestServer::start(|_, _| {}).await;
    let mut options = ClientOptions::default();
    options.set_http2_prior_knowledge(true);
    // A fresh client: the session's own answer head is the first it hears.
    let client = Client::with_options(&server.url(), options).unwrap();
    let session = within(client.session(Permission::ReadOnly)).await.unwrap();
    let line = b"the quick brown fox jumps over the lazy dog, again and again\n";
    let data = Bytes::from(line.repeat((256 << 10) / line.len()));
    let answer = within(async {
        session
            .call(Call::new("echo").data(data.clone()))
            .await?
            .collect()
            .await
    })
    .await
    .unwrap();
    assert_eq!(answer.data, data);
    let wire = session.stats().request_wire_bytes as usize;
    assert!(wire < data.len() / 20, "{wire} bytes for {}", data.len());
    session.close().await;
}
