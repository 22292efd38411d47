//! The `cancel` and `progress` extensions end to end, with the real `cat`: a cancelled
//! 64 MiB `cat` stops the server's sending within a bounded number of frames and frees
//! its handler, over a byte stream and over h2c; `cat` reports progress to a client that
//! accepted it, in order; a peer of the seed's protocol never sees an extension frame.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::within;
use futures_util::{Stream, TryStreamExt};
use hgframe::commands::FileCommands;
use hgframe_http::bytestream::{serve_connection, serve_tcp, Connection};
use hgframe_http::{
    Call, ClientOptions, HgFrameService, Registry, ResponseEvent, Server, ServerConfig,
    EXTENSIONS_HEADER, MEDIA_TYPE,
};
use hgframe_reactor::{ClientConfig, ClientReactor};
use hgframe_wire::build::{cancel_frame, FrameTarget};
use hgframe_wire::extension::{Extensions, CANCEL, PROGRESS};
use hgframe_wire::{Frame, FrameDecoder, FrameType, RequestId, StreamId};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const BIG: usize = 64 << 20;
/// Most response frames (32 KiB) the server may still write after it read a cancel:
/// what its output channel (4 chunks of 64 KiB) and the exchange (a chunk and 4 pieces
/// of 64 KiB) hold, 18 frames, with room to spare.
const MOST_AFTER_CANCEL: usize = 24;

fn service() -> (tempfile::TempDir, HgFrameService) {
    let root = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.path().join("big.bin"), big).unwrap();
    std::fs::write(root.path().join("mid.bin"), vec![7u8; 1 << 20]).unwrap();
    let mut registry = Registry::new();
    FileCommands::new(root.path())
        .unwrap()
        .register(&mut registry);
    let mut config = ServerConfig::default();
    // Reports as often as allowed, so a 1 MiB `cat` reports several times.
    config
        .engine_mut()
        .set_progress_interval(hgframe_http::EngineConfig::default().progress_interval() / 100);
    (root, HgFrameService::new(registry, config).unwrap())
}

async fn listen_bytestream(server: &Server) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.clone();
    tokio::spawn(serve_tcp(listener, server, std::future::pending()));
    addr
}

/// Frames read from a byte source.
struct Frames<R> {
    source: R,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl<R: AsyncRead + Unpin> Frames<R> {
    fn new(source: R) -> Self {
        Self {
            source,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(),
        }
    }

    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            if within(self.source.read_buf(&mut self.buf)).await.unwrap() == 0 {
                return None;
            }
        }
    }
}

/// Reads `request`'s frames until at least `bytes` of its data came.
async fn read_data<R: AsyncRead + Unpin>(frames: &mut Frames<R>, request: RequestId, bytes: usize) {
    let mut got = 0;
    while got < bytes {
        let f = frames.next().await.unwrap();
        if f.request_id() == request && f.known_type() == Some(FrameType::BytesResponse) {
            got += f.payload().len();
        }
    }
}

/// Reads frames until the server's cancel for `request`; returns how many of its
/// response frames came before it.
async fn frames_until_cancel<R: AsyncRead + Unpin>(
    frames: &mut Frames<R>,
    request: RequestId,
) -> usize {
    let mut after = 0;
    loop {
        let f = frames
            .next()
            .await
            .expect("the output ended before the cancel");
        if f.request_id() != request {
            continue;
        }
        if f.frame_type() == CANCEL {
            return after;
        }
        assert!(
            f.frame_type() != FrameType::BytesResponse as u8 || f.flags() & 0x02 == 0,
            "the whole file came: the cancel was not acted on"
        );
        after += 1;
    }
}

/// Waits until the server runs no handler and holds no memory for its clients.
async fn released(server: &Server) {
    within(async {
        while server.handlers_running() > 0 || server.memory().charged() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Watches the server's side of a connection: bytes it wrote, and how many it had
/// written when the client's cancel frame reached it. What it writes after that is what
/// the cancel did not stop (the kernel's socket buffers, which may hold megabytes on
/// loopback, are not counted: they hold what was written before).
#[derive(Debug)]
struct Probe {
    written: AtomicUsize,
    at_cancel: AtomicUsize,
    cancel: Bytes,
}

impl Probe {
    fn new(cancel_of: RequestId) -> Arc<Self> {
        let frame = cancel_frame(FrameTarget::new(cancel_of, StreamId(1))).unwrap();
        Arc::new(Self {
            written: AtomicUsize::new(0),
            at_cancel: AtomicUsize::new(usize::MAX),
            cancel: frame.to_bytes(),
        })
    }

    fn wrote(&self, n: usize) {
        self.written.fetch_add(n, Ordering::SeqCst);
    }

    fn read(&self, bytes: &[u8]) {
        if bytes
            .windows(self.cancel.len())
            .any(|w| w == &self.cancel[..])
        {
            let now = self.written.load(Ordering::SeqCst);
            let _ = self.at_cancel.compare_exchange(
                usize::MAX,
                now,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// Response frames (of 32 KiB) the server wrote after it read the cancel.
    fn frames_after_cancel(&self) -> usize {
        let at = self.at_cancel.load(Ordering::SeqCst);
        assert!(at != usize::MAX, "the server never read the cancel");
        (self.written.load(Ordering::SeqCst) - at).div_ceil(32 << 10)
    }
}

/// The server's socket, watched.
struct Watched<T> {
    inner: T,
    probe: Arc<Probe>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_ready() {
            self.probe.read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            self.probe.wrote(n);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An HTTP body, watched: request bodies for the cancel, response bodies for what the
/// server gives hyper.
impl<B: http_body::Body<Data = Bytes> + Unpin> http_body::Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.probe.read(data);
            }
        }
        polled
    }
}

/// [`HgFrameService`] with its bodies watched (the response's bytes count as written).
#[derive(Clone)]
struct Probed {
    inner: HgFrameService,
    probe: Arc<Probe>,
}

/// A response body that counts what the server hands hyper.
struct Counted {
    inner: hgframe_http::FrameBody,
    probe: Arc<Probe>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = hgframe_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.probe.wrote(data.len());
            }
        }
        polled
    }
}

impl tower::Service<http::Request<hyper::body::Incoming>> for Probed {
    type Response = http::Response<Counted>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let probe = Arc::clone(&self.probe);
        let request = request.map(|inner| Watched {
            inner,
            probe: Arc::clone(&probe),
        });
        let answer = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|inner| Counted { inner, probe }))
        })
    }
}

fn reactor(offer: Extensions) -> ClientReactor {
    let mut config = ClientConfig::default();
    config.set_extensions(offer);
    ClientReactor::new(config)
}

fn out(client: &mut ClientReactor) -> BytesMut {
    let mut out = BytesMut::new();
    while client.poll_transmit(&mut out, 1 << 20) > 0 {}
    out
}

fn cat(path: &str) -> [(Bytes, Bytes); 1] {
    [(Bytes::from("path"), Bytes::from(path.to_owned()))]
}

#[tokio::test]
async fn a_cancelled_cat_over_a_byte_stream_stops_and_frees_its_handler() {
    let (_root, service) = service();
    let server = service.server().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // `cat` is request 3 (`hello` is 1).
    let probe = Probe::new(RequestId(3));
    let (watched, s) = (Arc::clone(&probe), server.clone());
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (r, w) = socket.into_split();
        let (r, w) = (
            Watched {
                inner: r,
                probe: Arc::clone(&watched),
            },
            Watched {
                inner: w,
                probe: watched,
            },
        );
        serve_connection(r, w, &s, std::future::pending()).await
    });
    let (read, mut write) = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap()
        .into_split();
    let mut frames = Frames::new(read);
    let mut client = reactor(Extensions::all());
    let hello = client
        .call_command(
            b"hello",
            [
                (Bytes::from("encodings"), Bytes::from("identity")),
                (Bytes::from("extensions"), Bytes::from("cancel, progress")),
            ],
            None,
        )
        .unwrap();
    write.write_all(&out(&mut client)).await.unwrap();
    let answer = frames.next().await.unwrap();
    assert_eq!(answer.request_id(), hello);
    let text = String::from_utf8(answer.payload().to_vec()).unwrap();
    assert!(
        text.starts_with("encoding=identity\nextensions=cancel, progress\ndecodes="),
        "{text}"
    );
    client.on_frame(answer).unwrap();
    client.set_extensions(Extensions::all());

    let request = client.call_command(b"cat", cat("big.bin"), None).unwrap();
    write.write_all(&out(&mut client)).await.unwrap();
    read_data(&mut frames, request, 4 << 20).await;
    assert_eq!(server.handlers_running(), 1);
    assert!(client.cancel(request).unwrap());
    write.write_all(&out(&mut client)).await.unwrap();
    let after = frames_until_cancel(&mut frames, request).await;
    let server_after = probe.frames_after_cancel();
    eprintln!("byte stream: the server wrote {server_after} frames after it read the cancel ({after} arrived after it was sent)");
    assert!(server_after <= MOST_AFTER_CANCEL, "{server_after} frames");
    // The connection is still open, and the handler and its memory are free.
    released(&server).await;
    // The id is free again: the same request id runs again, to its end.
    let again = client.call_command(b"cat", cat("mid.bin"), None).unwrap();
    assert_eq!(again, RequestId(request.0 + 2));
    write.write_all(&out(&mut client)).await.unwrap();
    write.shutdown().await.unwrap();
    let mut got = 0;
    while let Some(f) = frames.next().await {
        if f.known_type() == Some(FrameType::BytesResponse) {
            assert_eq!(f.request_id(), again);
            got += f.payload().len();
        }
    }
    assert_eq!(got, 1 << 20);
    released(&server).await;
}

type BodyStream = Pin<Box<dyn Stream<Item = Result<http_body::Frame<Bytes>, Infallible>> + Send>>;

#[tokio::test]
async fn a_cancelled_cat_over_h2c_stops_and_frees_its_handler() {
    let (_root, service) = service();
    let server = service.server().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let probe = Probe::new(RequestId(1));
    let config = service.config().clone();
    let probed = Probed {
        inner: service,
        probe: Arc::clone(&probe),
    };
    tokio::spawn(async move {
        hgframe_http::serve_service(listener, probed, &config, std::future::pending()).await
    });

    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let body: BodyStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(http_body::Frame::data(b)), rx))
    }));
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<StreamBody<BodyStream>>();
    let request = http::Request::post(format!("http://{addr}/api/exp-http-v2-0001/ro/cat"))
        .header("accept", MEDIA_TYPE)
        .header("content-type", MEDIA_TYPE)
        .header(EXTENSIONS_HEADER, "progress, cancel")
        .body(StreamBody::new(body))
        .unwrap();
    let mut client = reactor(Extensions::all());
    let id = client.call_command(b"cat", cat("big.bin"), None).unwrap();
    tx.send(out(&mut client).freeze()).await.unwrap();
    let response = within(http.request(request)).await.unwrap();
    assert_eq!(response.status(), 200);
    let accepted = response.headers()[EXTENSIONS_HEADER].to_str().unwrap();
    assert_eq!(accepted, "cancel, progress");
    client.set_extensions(Extensions::parse(accepted));
    // The response body as a byte source.
    let data = response
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let mut frames = Frames::new(tokio_util::io::StreamReader::new(data));
    read_data(&mut frames, id, 4 << 20).await;
    assert_eq!(server.handlers_running(), 1);
    assert!(client.cancel(id).unwrap());
    tx.send(out(&mut client).freeze()).await.unwrap();
    let after = frames_until_cancel(&mut frames, id).await;
    let server_after = probe.frames_after_cancel();
    eprintln!("h2c: the server gave hyper {server_after} frames after it read the cancel ({after} arrived after it was sent)");
    assert!(server_after <= MOST_AFTER_CANCEL, "{server_after} frames");
    released(&server).await;
    // The request ends; so does the response.
    drop(tx);
    while frames.next().await.is_some() {}
    released(&server).await;
}

#[tokio::test]
async fn cat_reports_progress_in_order_to_a_client_that_accepted_it() {
    let (_root, service) = service();
    let server = service.server().clone();
    let addr = listen_bytestream(&server).await;
    let mut options = ClientOptions::default();
    options.reactor_mut().set_extensions(Extensions::all());
    let conn = Connection::connect_tcp(&addr.to_string(), options)
        .await
        .unwrap();
    let mut response = conn
        .call(Call::new("cat").arg("path", "mid.bin"))
        .await
        .unwrap();
    let (mut received, mut reports) = (0u64, Vec::new());
    while let Some(event) = within(response.next()).await {
        match event.unwrap() {
            ResponseEvent::Data(d) => received += d.len() as u64,
            ResponseEvent::Progress {
                topic,
                position,
                total,
            } => {
                assert_eq!((topic.as_str(), total), ("cat", 1 << 20));
                // A report never claims more than the data that came before it, and
                // at most one chunk less.
                assert!(position >= received && position <= received + (256 << 10));
                reports.push(position);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(received, 1 << 20);
    assert!(reports.windows(2).all(|w| w[0] < w[1]), "{reports:?}");
    assert_eq!(reports.last(), Some(&(1 << 20)));
    conn.close().await;
}

#[tokio::test]
async fn a_seed_level_peer_never_sees_an_extension_frame() {
    let (_root, service) = service();
    let server = service.server().clone();
    // A byte-stream client that offers nothing: `hello` has no `extensions`.
    let addr = listen_bytestream(&server).await;
    let conn = Connection::connect_tcp(&addr.to_string(), ClientOptions::default())
        .await
        .unwrap();
    let mut response = conn
        .call(Call::new("cat").arg("path", "mid.bin"))
        .await
        .unwrap();
    while let Some(event) = within(response.next()).await {
        assert!(matches!(event.unwrap(), ResponseEvent::Data(_)));
    }
    conn.close().await;
    // Over HTTP without the header: no answer header, no extension frame.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = listener.local_addr().unwrap();
    tokio::spawn(hgframe_http::serve(
        listener,
        service,
        std::future::pending(),
    ));
    let mut client = reactor(Extensions::none());
    client.call_command(b"cat", cat("mid.bin"), None).unwrap();
    let request = out(&mut client).freeze();
    for h2 in [false, true] {
        let url = format!("http://{http_addr}/api/exp-http-v2-0001/ro/cat");
        let body = request.clone();
        let raw = common::raw(
            "POST",
            &url,
            &[("accept", MEDIA_TYPE), ("content-type", MEDIA_TYPE)],
            body,
            h2,
        )
        .await;
        assert_eq!(raw.status, 200);
        assert!(raw.headers.get(EXTENSIONS_HEADER).is_none());
        let frames = raw.frames();
        let data: usize = frames.iter().map(|f| f.payload().len()).sum();
        assert_eq!(data, 1 << 20);
        assert!(frames
            .iter()
            .all(|f| f.frame_type() != PROGRESS && f.frame_type() != CANCEL));
    }
}

#[test]
fn debug_reactor_with_default_settings_refuses_a_cancel_frame() {
    let run = |args: &[&str], stdin: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hgframe"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut input, stdin).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let frames = run(
        &[
            "frames",
            "encode",
            "1 1 stream-begin command-name eos cat",
            "1 1 0 9 0",
        ],
        b"",
    );
    let text = String::from_utf8(run(&["debug", "reactor"], &frames)).unwrap();
    assert!(text.contains("runcommand request=1 command=cat"), "{text}");
    assert!(
        text.contains("error: expected command frame; got 9"),
        "{text}"
    );
    assert!(!text.contains("cancelled"), "{text}");
}
