//! Connection management of `serve`: every timer and limit closes what it must, and
//! only that. Each timer is tested twice: set low, the server closes the connection well
//! within a bound; disabled (`None`), the same connection is still open past that bound,
//! so the test fails if the timer is removed.

use std::net::SocketAddr;
use std::time::Duration;

use hgframe_http::{
    serve, Call, Client, ClientOptions, CommandError, CommandInput, HgFrameService, Permission,
    Registry, Responder, ServerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A timer set "low" in these tests.
const LOW: Duration = Duration::from_millis(500);
/// Within this, a connection closed by a LOW timer must be closed (the timer, the
/// server's one-second linger for a closing h2 connection, and a generous margin).
const CLOSED_WITHIN: Duration = Duration::from_secs(4);
/// The HTTP/2 client connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `echo`: the arguments as `name=value` lines.
async fn echo(input: CommandInput, out: Responder) -> Result<(), CommandError> {
    let mut lines = Vec::new();
    for (name, value) in input.args() {
        lines.extend_from_slice(name);
        lines.push(b'=');
        lines.extend_from_slice(value);
        lines.push(b'\n');
    }
    out.finish(lines).await?;
    Ok(())
}

/// `sleep`: answers `done` after `ms` milliseconds.
async fn sleep(input: CommandInput, out: Responder) -> Result<(), CommandError> {
    let ms: u64 = input
        .arg_str("ms")?
        .parse()
        .map_err(|_| CommandError::new("bad ms"))?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    out.finish(&b"done"[..]).await?;
    Ok(())
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register("echo", Permission::ReadOnly, echo)
        .register("sleep", Permission::ReadOnly, sleep);
    registry
}

/// Every connection timer off, no eviction: each test turns on what it tests.
fn quiet() -> ServerConfig {
    let mut config = ServerConfig::default();
    config
        .set_header_read_timeout(None)
        .set_detect_timeout(None)
        .set_connection_idle_timeout(None)
        .set_http2_keep_alive_interval(None)
        .set_evict_idle_at_limit(false);
    config
        .engine_mut()
        .set_shutdown_grace(Some(Duration::from_secs(20)));
    config
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Result<(), hgframe_http::Error>>,
}

impl Running {
    async fn start(config: ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = HgFrameService::new(registry(), config).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, service, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            served,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Triggers the shutdown; returns how long `serve` took to return.
    async fn shut_down(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.served)
            .await
            .expect("serve returns within a minute")
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

/// Whether the server closes `stream` within `bound` (whatever it sends first is read
/// and discarded).
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, read_to_end).await.is_ok()
}

/// Sends one complete HTTP/1.1 request (the prefix's index) and reads its whole
/// response, leaving the connection kept alive.
async fn one_http1_request(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /api/exp-http-v2-0001 HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the response ended");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .expect("a content-length")
                .trim()
                .parse()
                .unwrap();
            if got.len() >= end + 4 + length {
                return;
            }
        }
    }
}

fn h2c() -> ClientOptions {
    let mut options = ClientOptions::default();
    options.set_http2_prior_knowledge(true);
    options
}

async fn echo_call(client: &Client) -> Result<Vec<u8>, hgframe_http::Error> {
    let answer = client
        .call(Call::new("echo").arg("a", "1"))
        .await?
        .collect()
        .await?;
    Ok(answer.data.to_vec())
}

// --- protocol detection -------------------------------------------------------------

#[tokio::test]
async fn detect_timeout_closes_a_connection_that_sends_nothing() {
    let mut config = quiet();
    config.set_detect_timeout(Some(LOW));
    let server = Running::start(config).await;
    let mut silent = server.connect().await;
    let started = Instant::now();
    assert!(closed_within(&mut silent, CLOSED_WITHIN).await);
    assert!(started.elapsed() >= LOW / 2, "closed before the timeout");
}

#[tokio::test]
async fn without_detect_timeout_a_silent_connection_stays_open() {
    let server = Running::start(quiet()).await;
    let mut silent = server.connect().await;
    assert!(!closed_within(&mut silent, CLOSED_WITHIN).await);
}

#[tokio::test]
async fn detect_timeout_spares_a_connection_that_speaks() {
    let mut config = quiet();
    config.set_detect_timeout(Some(LOW));
    let server = Running::start(config).await;
    let mut stream = server.connect().await;
    one_http1_request(&mut stream).await;
    tokio::time::sleep(LOW * 3).await;
    one_http1_request(&mut stream).await;
}

// --- h2 peer that sends only the preface ----------------------------------------------

#[tokio::test]
async fn h2_preface_only_is_closed_by_the_keep_alive_ping() {
    let mut config = quiet();
    config
        .set_http2_keep_alive_interval(Some(LOW))
        .set_http2_keep_alive_timeout(LOW);
    let server = Running::start(config).await;
    let mut peer = server.connect().await;
    peer.write_all(H2_PREFACE).await.unwrap();
    assert!(closed_within(&mut peer, CLOSED_WITHIN).await);
}

#[tokio::test]
async fn h2_preface_only_is_closed_by_the_connection_idle_timeout() {
    let mut config = quiet();
    config.set_connection_idle_timeout(Some(LOW));
    let server = Running::start(config).await;
    let mut peer = server.connect().await;
    peer.write_all(H2_PREFACE).await.unwrap();
    assert!(closed_within(&mut peer, CLOSED_WITHIN).await);
}

#[tokio::test]
async fn without_timers_an_h2_preface_only_peer_stays_open() {
    let mut config = quiet();
    // The detection timer alone does not close it: the preface is its first bytes.
    config.set_detect_timeout(Some(LOW));
    let server = Running::start(config).await;
    let mut peer = server.connect().await;
    peer.write_all(H2_PREFACE).await.unwrap();
    assert!(!closed_within(&mut peer, CLOSED_WITHIN).await);
}

// --- connection idle timeout ------------------------------------------------------------

#[tokio::test]
async fn connection_idle_timeout_closes_an_http1_keep_alive_connection() {
    let mut config = quiet();
    config.set_connection_idle_timeout(Some(LOW));
    let server = Running::start(config).await;
    let mut stream = server.connect().await;
    one_http1_request(&mut stream).await;
    let started = Instant::now();
    assert!(closed_within(&mut stream, CLOSED_WITHIN).await);
    assert!(started.elapsed() >= LOW / 2, "closed before the timeout");
}

#[tokio::test]
async fn without_connection_idle_timeout_an_http1_keep_alive_connection_stays_open() {
    let server = Running::start(quiet()).await;
    let mut stream = server.connect().await;
    one_http1_request(&mut stream).await;
    assert!(!closed_within(&mut stream, CLOSED_WITHIN).await);
    // And it still serves.
    one_http1_request(&mut stream).await;
}

#[tokio::test]
async fn connection_idle_timeout_never_cuts_a_request_in_flight() {
    let mut config = quiet();
    // Long enough for the client to start its request on a loaded machine.
    config.set_connection_idle_timeout(Some(Duration::from_secs(1)));
    let server = Running::start(config).await;
    for options in [ClientOptions::default(), h2c()] {
        let client = Client::with_options(&server.url(), options).unwrap();
        let answer = client
            .call(Call::new("sleep").arg("ms", "2500"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(&answer.data[..], b"done");
    }
}

// --- lockout: the connection limit full of idle connections -----------------------------

/// Opens `max` connections that send nothing (half of them only the h2 preface), then
/// asks whether a real client is answered within `bound`.
async fn served_despite_idle_connections(
    mut config: ServerConfig,
    bound: Duration,
) -> (bool, Vec<TcpStream>) {
    let max = 8;
    config.engine_mut().set_max_connections(max);
    let server = Running::start(config).await;
    let mut idle = Vec::new();
    for i in 0..max {
        let mut s = server.connect().await;
        if i % 2 == 1 {
            s.write_all(H2_PREFACE).await.unwrap();
        }
        idle.push(s);
    }
    // Let the server take them all in.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = Client::new(&server.url()).unwrap();
    let served = tokio::time::timeout(bound, echo_call(&client)).await;
    let served = matches!(served, Ok(Ok(ref data)) if data == b"a=1\n");
    (served, idle)
}

#[tokio::test]
async fn idle_connections_at_the_limit_are_reaped_by_the_timers() {
    let mut config = quiet();
    // The client's own connection is under the same timers: long enough for it to
    // send its request on a loaded machine.
    let timer = Duration::from_secs(1);
    config
        .set_detect_timeout(Some(timer))
        .set_connection_idle_timeout(Some(timer));
    let (served, _idle) = served_despite_idle_connections(config, CLOSED_WITHIN * 2).await;
    assert!(served);
}

#[tokio::test]
async fn idle_connections_at_the_limit_are_evicted_for_a_new_one() {
    let mut config = quiet();
    config.set_evict_idle_at_limit(true);
    let (served, _idle) = served_despite_idle_connections(config, CLOSED_WITHIN * 2).await;
    assert!(served);
}

#[tokio::test]
async fn without_timers_or_eviction_idle_connections_lock_a_client_out() {
    let (served, _idle) = served_despite_idle_connections(quiet(), CLOSED_WITHIN * 2).await;
    assert!(!served);
}

#[tokio::test]
async fn an_evicted_peer_that_never_answers_gives_its_slot_back_at_once() {
    // An h2 peer's graceful close waits for the answer to a PING, at most a second
    // (the linger): the newcomer must not wait for it. Six newcomers each evict one
    // such peer; waiting out each linger would take at least 6 s.
    let mut config = quiet();
    config.set_evict_idle_at_limit(true);
    config.engine_mut().set_max_connections(8);
    let server = Running::start(config).await;
    let mut peers = Vec::new();
    for _ in 0..8 {
        let mut peer = server.connect().await;
        peer.write_all(H2_PREFACE).await.unwrap();
        peer.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
        peers.push(peer);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for _ in 0..6 {
        let client = Client::new(&server.url()).unwrap();
        let answer = tokio::time::timeout(CLOSED_WITHIN, echo_call(&client)).await;
        assert_eq!(answer.unwrap().unwrap(), b"a=1\n");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "six newcomers took {took:?}");
}

#[tokio::test]
async fn eviction_closes_the_connection_idle_the_longest() {
    let mut config = quiet();
    config.set_evict_idle_at_limit(true);
    config.engine_mut().set_max_connections(3);
    let server = Running::start(config).await;
    let mut oldest = server.connect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Used, then idle: idle for less time than `oldest`, though connected earlier than
    // `newest`.
    let mut used = server.connect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut newest = server.connect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    one_http1_request(&mut used).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let client = Client::new(&server.url()).unwrap();
    let answer = tokio::time::timeout(CLOSED_WITHIN, echo_call(&client)).await;
    assert_eq!(answer.unwrap().unwrap(), b"a=1\n");
    assert!(closed_within(&mut oldest, Duration::from_secs(1)).await);
    assert!(!closed_within(&mut newest, Duration::from_millis(500)).await);
    // The next newcomer evicts `newest` (idle since its accept), not `used`.
    let second = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut newest, CLOSED_WITHIN).await);
    one_http1_request(&mut used).await;
    drop(second);
}

#[tokio::test]
async fn eviction_spares_a_connection_with_a_request_in_flight() {
    let mut config = quiet();
    config.set_evict_idle_at_limit(true);
    config.engine_mut().set_max_connections(1);
    let server = Running::start(config).await;
    let busy = Client::new(&server.url()).unwrap();
    let slow = tokio::spawn(async move {
        busy.call(Call::new("sleep").arg("ms", "1000"))
            .await?
            .collect()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Waits for the slot: the only connection is busy, so nothing is evicted...
    let other = Client::new(&server.url()).unwrap();
    let answer = tokio::time::timeout(CLOSED_WITHIN * 2, echo_call(&other))
        .await
        .expect("served once the busy connection is idle")
        .unwrap();
    assert_eq!(answer, b"a=1\n");
    // ...and the slow request got its whole answer.
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(&slow.data[..], b"done");
}

// --- graceful shutdown --------------------------------------------------------------------

#[tokio::test]
async fn shutdown_closes_an_idle_h2c_connection_at_once() {
    let server = Running::start(quiet()).await;
    let client = Client::with_options(&server.url(), h2c()).unwrap();
    assert_eq!(echo_call(&client).await.unwrap(), b"a=1\n");
    // The client keeps its connection open (pooled), idle.
    let took = server.shut_down().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    drop(client);
}

#[tokio::test]
async fn shutdown_closes_an_idle_h2c_peer_that_does_not_answer_pings() {
    // h2's graceful close sends GOAWAY and waits for the answer to a PING before it
    // ends the connection; a peer that never answers held the whole grace period.
    let server = Running::start(quiet()).await;
    let mut peer = server.connect().await;
    peer.write_all(H2_PREFACE).await.unwrap();
    // An empty SETTINGS frame: the h2 handshake is complete.
    peer.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = server.shut_down().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(closed_within(&mut peer, CLOSED_WITHIN).await);
}

#[tokio::test]
async fn shutdown_closes_an_idle_http1_connection_at_once() {
    let server = Running::start(quiet()).await;
    let mut stream = server.connect().await;
    one_http1_request(&mut stream).await;
    let silent = server.connect().await;
    let took = server.shut_down().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    drop((stream, silent));
}

/// Starts a 1 s request, shuts down while it runs: the request gets its whole answer,
/// and `serve` returns once it is out, long before the 20 s grace period.
async fn shutdown_with_a_request_in_flight(options: ClientOptions) {
    let server = Running::start(quiet()).await;
    let client = Client::with_options(&server.url(), options).unwrap();
    let slow = tokio::spawn(async move {
        client
            .call(Call::new("sleep").arg("ms", "1000"))
            .await?
            .collect()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !slow.is_finished(),
        "the slow request ended before the shutdown"
    );
    let took = server.shut_down().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let answer = slow.await.unwrap().unwrap();
    assert_eq!(&answer.data[..], b"done");
}

#[tokio::test]
async fn shutdown_lets_an_http1_request_in_flight_finish() {
    shutdown_with_a_request_in_flight(ClientOptions::default()).await;
}

#[tokio::test]
async fn shutdown_lets_an_h2c_request_in_flight_finish() {
    shutdown_with_a_request_in_flight(h2c()).await;
}

#[tokio::test]
async fn shutdown_drops_what_is_still_busy_after_the_grace_period() {
    let mut config = quiet();
    config
        .engine_mut()
        .set_shutdown_grace(Some(Duration::from_millis(500)))
        .set_idle_timeout(None);
    let server = Running::start(config).await;
    let client = Client::new(&server.url()).unwrap();
    let stuck = tokio::spawn(async move {
        client
            .call(Call::new("sleep").arg("ms", "60000"))
            .await?
            .collect()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = server.shut_down().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(stuck.await.unwrap().is_err());
}

#[tokio::test]
async fn shutdown_lets_a_slow_reader_receive_the_tail_of_its_response() {
    // The response body ends at once (hyper holds all of it), so the request is no
    // longer in flight while hyper still writes it for seconds: the closing connection
    // must wait while it writes, not drop the tail after its one-second linger.
    const SIZE: usize = 8 << 20;
    let service = tower::service_fn(|_: http::Request<hyper::body::Incoming>| async {
        let body = http_body_util::Full::new(bytes::Bytes::from(vec![7u8; SIZE]));
        Ok::<_, std::convert::Infallible>(http::Response::new(body))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = quiet();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        hgframe_http::serve_service(listener, service, &config, async {
            let _ = stopped.await;
        })
        .await
    });

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8192).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut got = stream.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..got]).into_owned();
    let head_len = head.find("\r\n\r\n").expect("the head in the first read") + 4;
    got -= head_len;
    let _ = stop.send(());
    // About 2.5 s of reading.
    let started = Instant::now();
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
        if got % (256 << 10) < n {
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
    }
    assert_eq!(got, SIZE, "after {:?}", started.elapsed());
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("serve returns once the response is out")
        .unwrap()
        .unwrap();
}
