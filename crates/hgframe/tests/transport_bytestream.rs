//! The byte-stream transport: over TCP, over an in-memory pipe, with `hello`.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::within;
use hgframe::commands::FileCommands;
use hgframe_http::bytestream::{serve_connection, serve_tcp, Connection};
use hgframe_http::{
    Call, ClientOptions, CommandError, CommandInput, ExchangeStats, HgFrameService, Outcome,
    Permission, Registry, Responder, ServerConfig, Transport,
};
use tokio::sync::oneshot;

struct Server {
    addr: std::net::SocketAddr,
    root: tempfile::TempDir,
    stats: Arc<Mutex<Vec<ExchangeStats>>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn service(
    root: &std::path::Path,
    extra: impl FnOnce(&mut Registry),
) -> (HgFrameService, Arc<Mutex<Vec<ExchangeStats>>>) {
    std::fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    let mut registry = Registry::new();
    FileCommands::new(root).unwrap().register(&mut registry);
    extra(&mut registry);
    let stats = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&stats);
    let mut config = ServerConfig::default();
    config
        .engine_mut()
        .set_observer(move |s| seen.lock().unwrap().push(s.clone()));
    (HgFrameService::new(registry, config).unwrap(), stats)
}

async fn start(extra: impl FnOnce(&mut Registry)) -> Server {
    let root = tempfile::tempdir().unwrap();
    let (service, stats) = service(root.path(), extra);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve_tcp(listener, service.server().clone(), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Server {
        addr,
        root,
        stats,
        stop: Some(tx),
        task,
    }
}

async fn collect(conn: &Connection, call: Call) -> Result<Bytes, hgframe_http::Error> {
    Ok(within(conn.call(call).await?.collect()).await?.data)
}

#[tokio::test]
async fn many_calls_share_one_long_lived_compressed_stream() {
    let server = start(|_| {}).await;
    let conn = Connection::connect_tcp(&server.addr.to_string(), ClientOptions::default())
        .await
        .unwrap();
    assert_eq!(conn.encoding(), "zstd-8mb");
    assert_eq!(
        &collect(&conn, Call::new("echo").arg("k", "v"))
            .await
            .unwrap()[..],
        b"k=v\n"
    );
    assert_eq!(
        &collect(&conn, Call::new("cat").arg("path", "a.txt"))
            .await
            .unwrap()[..],
        b"alpha\n"
    );
    let put = Call::new("put")
        .permission(Permission::ReadWrite)
        .arg("path", "b.txt")
        .data("beta");
    collect(&conn, put).await.unwrap();
    assert_eq!(
        &collect(&conn, Call::new("files")).await.unwrap()[..],
        b"a.txt\nb.txt\n"
    );
    let e = collect(&conn, Call::new("cat").arg("path", "/etc/passwd"))
        .await
        .unwrap_err();
    assert!(e.is_application(), "{e}");

    // Concurrent calls from many tasks, more than the window.
    let conn = Arc::new(conn);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let conn = Arc::clone(&conn);
        tasks.push(tokio::spawn(async move {
            let data = format!("message number {i} ").repeat(i % 7 + 1);
            let got = collect(&conn, Call::new("echo").data(data.clone()))
                .await
                .unwrap();
            assert_eq!(got, data.as_bytes());
        }));
    }
    for t in tasks {
        within(t).await.unwrap();
    }
    let conn = Arc::into_inner(conn).unwrap();
    within(conn.close()).await;

    let stats = within(async {
        loop {
            if let Some(s) = server.stats.lock().unwrap().first().cloned() {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(stats.transport, Transport::ByteStream);
    assert_eq!(stats.outcome, Outcome::Completed);
    assert_eq!(stats.commands, 1 + 5 + 200, "hello, five calls, 200 echoes");
    assert_eq!(
        stats.streams.len(),
        1,
        "one stream for the whole connection"
    );
    assert_eq!(stats.streams[0].profile, "zstd-8mb");
    assert!(stats.streams[0].wire_bytes < stats.streams[0].raw_bytes);
}

#[tokio::test]
async fn without_hello_the_connection_is_identity_and_hello_comes_only_first() {
    let server = start(|_| {}).await;
    let mut options = ClientOptions::default();
    options.set_encodings(&["identity"]);
    let conn = Connection::connect_tcp(&server.addr.to_string(), options)
        .await
        .unwrap();
    assert_eq!(conn.encoding(), "identity");
    assert_eq!(
        &collect(&conn, Call::new("echo").data("x")).await.unwrap()[..],
        b"x"
    );
    let late = Call::new("hello").arg("encodings", "zstd-8mb");
    let e = collect(&conn, late).await.unwrap_err();
    assert_eq!(
        e.message(),
        "hello must be the first command of a connection"
    );
    within(conn.close()).await;
    let _ = server.root;
}

#[tokio::test]
async fn any_reader_and_writer_will_do() {
    let root = tempfile::tempdir().unwrap();
    let (service, _stats) = service(root.path(), |_| {});
    let (client_end, server_end) = tokio::io::duplex(4096);
    let (server_read, server_write) = tokio::io::split(server_end);
    let serving = tokio::spawn(async move {
        serve_connection(
            server_read,
            server_write,
            service.server(),
            std::future::pending(),
        )
        .await
    });
    let (client_read, client_write) = tokio::io::split(client_end);
    let conn = Connection::new(client_read, client_write, ClientOptions::default())
        .await
        .unwrap();
    let big = "0123456789abcdef".repeat(20_000);
    assert_eq!(
        collect(&conn, Call::new("echo").data(big.clone()))
            .await
            .unwrap(),
        big.as_bytes()
    );
    within(conn.close()).await;
    let stats = within(serving).await.unwrap();
    assert_eq!(stats.outcome, Outcome::Completed);
    assert_eq!(stats.commands, 2);
}

#[tokio::test]
async fn stopping_the_server_finishes_calls_in_flight() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let (g, s) = (Arc::clone(&gate), Arc::clone(&started));
    let mut server = start(move |r| {
        r.register(
            "slow",
            Permission::ReadOnly,
            move |_: CommandInput, out: Responder| {
                let (gate, started) = (Arc::clone(&g), Arc::clone(&s));
                async move {
                    started.notify_one();
                    gate.notified().await;
                    out.finish("done").await?;
                    Ok::<(), CommandError>(())
                }
            },
        );
    })
    .await;
    let conn = Connection::connect_tcp(&server.addr.to_string(), ClientOptions::default())
        .await
        .unwrap();
    let slow = conn.call(Call::new("slow")).await.unwrap();
    within(started.notified()).await;
    let _ = server.stop.take().unwrap().send(());
    gate.notify_one();
    assert_eq!(&within(slow.collect()).await.unwrap().data[..], b"done");
    within(&mut server.task).await.unwrap();
    // The server stopped reading: later calls end without an answer.
    let e = collect(&conn, Call::new("echo").data("x"))
        .await
        .unwrap_err();
    assert!(e.is_closed(), "{e}");
}

#[tokio::test]
async fn dropping_the_client_cancels_the_handler() {
    struct Guard(Arc<tokio::sync::Notify>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.notify_one();
        }
    }
    let dropped = Arc::new(tokio::sync::Notify::new());
    let d = Arc::clone(&dropped);
    let server = start(move |r| {
        r.register(
            "endless",
            Permission::ReadOnly,
            move |_: CommandInput, mut out: Responder| {
                let guard = Guard(Arc::clone(&d));
                async move {
                    let _guard = guard;
                    let piece = Bytes::from(vec![b'y'; 1 << 16]);
                    loop {
                        out.write(piece.clone()).await?;
                    }
                }
            },
        );
    })
    .await;
    let conn = Connection::connect_tcp(&server.addr.to_string(), ClientOptions::default())
        .await
        .unwrap();
    let mut endless = conn.call(Call::new("endless")).await.unwrap();
    within(endless.next()).await.unwrap().unwrap();
    drop(endless);
    drop(conn);
    within(dropped.notified()).await;
}

#[tokio::test]
async fn an_idle_connection_stays_but_a_stalled_command_times_out() {
    let root = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    FileCommands::new(root.path())
        .unwrap()
        .register(&mut registry);
    let mut config = ServerConfig::default();
    config
        .engine_mut()
        .set_idle_timeout(Some(std::time::Duration::from_millis(100)));
    let service = HgFrameService::new(registry, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tcp(
        listener,
        service.server().clone(),
        std::future::pending(),
    ));

    let conn = Connection::connect_tcp(&addr.to_string(), ClientOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        &collect(&conn, Call::new("echo").data("still here"))
            .await
            .unwrap()[..],
        b"still here"
    );
    within(conn.close()).await;

    // A command whose arguments never come: the server gives up and closes.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let frame =
        hgframe_wire::Frame::from_human("1 1 stream-begin command-name have-args echo").unwrap();
    socket.write_all(&frame.to_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within(socket.read_to_end(&mut answer)).await.unwrap();
}

/// Large responses of concurrent calls share the worker streams of one connection: each
/// stream carries pieces of several responses, in its own order, with its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_responses_compress_on_worker_streams() {
    let root = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    FileCommands::new(root.path())
        .unwrap()
        .register(&mut registry);
    let stats = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&stats);
    let mut config = ServerConfig::default();
    config
        .engine_mut()
        .set_parallel_streams(2)
        .set_observer(move |s| seen.lock().unwrap().push(s.clone()));
    let service = HgFrameService::new(registry, config).unwrap();
    let files: Vec<Vec<u8>> = (0..3usize)
        .map(|f| {
            let len = (1 << 20) + 4321 * f;
            (0..len)
                .flat_map(|i| format!("{f}:{}\n", i / 50).into_bytes())
                .take(len)
                .collect()
        })
        .collect();
    for (f, data) in files.iter().enumerate() {
        std::fs::write(root.path().join(format!("big{f}.txt")), data).unwrap();
    }
    let (client_end, server_end) = tokio::io::duplex(64 << 10);
    let (server_read, server_write) = tokio::io::split(server_end);
    let serving = tokio::spawn(async move {
        serve_connection(
            server_read,
            server_write,
            service.server(),
            std::future::pending(),
        )
        .await
    });
    let (client_read, client_write) = tokio::io::split(client_end);
    let conn = Connection::new(client_read, client_write, ClientOptions::default())
        .await
        .unwrap();
    assert_eq!(conn.encoding(), "zstd-8mb");
    let calls = (0..3).map(|f| {
        let call = Call::new("cat").arg("path", format!("big{f}.txt"));
        collect(&conn, call)
    });
    let got = futures_util::future::join_all(calls).await;
    for (f, got) in got.into_iter().enumerate() {
        assert!(got.unwrap() == files[f], "file {f} differs");
    }
    within(conn.close()).await;
    let stats = within(serving).await.unwrap();
    assert_eq!(stats.outcome, Outcome::Completed);
    let data_streams = stats.streams.iter().filter(|s| s.raw_bytes > 0).count();
    assert!(data_streams >= 2, "{:?}", stats.streams);
    // Every byte of the files counted once, on whichever stream compressed it.
    assert_eq!(
        stats.raw_bytes(),
        files.iter().map(|f| f.len() as u64).sum::<u64>()
    );
}

#[tokio::test]
async fn requests_are_compressed_once_hello_says_the_server_decodes_zstd() {
    let server = start(|_| {}).await;
    let line = b"the quick brown fox jumps over the lazy dog, again and again\n";
    let data = Bytes::from(line.repeat((256 << 10) / line.len()));
    for (compress, wire_at_most) in [(true, data.len() / 20), (false, usize::MAX)] {
        let mut options = ClientOptions::default();
        options.set_compress_requests(compress);
        let conn = Connection::connect_tcp(&server.addr.to_string(), options)
            .await
            .unwrap();
        let before = conn.stats().request_wire_bytes;
        let answer = collect(&conn, Call::new("echo").data(data.clone()))
            .await
            .unwrap();
        assert_eq!(answer, data);
        let wire = (conn.stats().request_wire_bytes - before) as usize;
        if compress {
            assert!(wire < wire_at_most, "{wire} bytes for {}", data.len());
        } else {
            assert!(wire >= data.len(), "{wire} bytes for {}", data.len());
        }
        conn.close().await;
    }
}
