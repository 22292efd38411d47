//! Servers and a client for the HTTP benchmarks (`benches/http.rs`,
//! `examples/echo_ab.rs`): `hgframe serve`'s service, a bare hyper handler that answers
//! the same bytes, one that answers with the sans-IO reactor alone, and the raw hyper
//! client that drives them.

use std::net::SocketAddr;

use bytes::Bytes;
use hgframe::commands::FileCommands;
use hgframe_http::{serve, HgFrameService, Registry, ServerConfig, MEDIA_TYPE};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

pub(crate) type RawClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `serve` with the file commands over `root`, with the default config or
/// [`ServerConfig::set_parallel_streams`] as given.
pub(crate) async fn start_hgframe(
    root: &std::path::Path,
    parallel_streams: Option<usize>,
) -> SocketAddr {
    let mut registry = Registry::new();
    FileCommands::new(root).unwrap().register(&mut registry);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ServerConfig::default();
    if let Some(n) = parallel_streams {
        config.engine_mut().set_parallel_streams(n);
    }
    let service = HgFrameService::new(registry, config).unwrap();
    tokio::spawn(serve(listener, service, std::future::pending()));
    addr
}

/// A bare hyper server (same connection builder as `serve`) that reads the request body
/// and answers `answer`.
pub(crate) async fn start_bare(answer: Bytes) -> SocketAddr {
    start_handler(move |_| answer.clone()).await
}

/// A bare hyper server (same connection builder as `serve`) that answers `echo` with
/// the sans-IO reactor alone, in the handler: the request's frames decoded and fed to a
/// `ServerReactor` set as `serve` sets one for HTTP/1.1 (output deferred to the end of
/// the request), the command answered in place with its data, the answer's frames
/// encoded. What the protocol costs per request without the engine around it (tasks,
/// queues, admission, timers).
pub(crate) async fn start_reactor_echo() -> SocketAddr {
    use hgframe_reactor::{DataMode, ServerAction, ServerReactor};
    let mut config = hgframe_reactor::ServerConfig::default();
    config
        .set_defer_output(true)
        .set_data_mode(DataMode::Buffered)
        .set_peer_accepts(&[hgframe_reactor::IDENTITY]);
    let config = std::sync::Arc::new(config);
    start_handler(move |body| {
        let mut reactor = ServerReactor::new(std::sync::Arc::clone(&config));
        for frame in hgframe_wire::Frames::new(body) {
            if let ServerAction::RunCommand(command) = reactor.on_frame(frame.unwrap()) {
                let data = command.data.unwrap_or_default();
                // Output is deferred: it is pulled once, below.
                let _ = reactor
                    .on_response_data(command.request_id, data, true)
                    .unwrap();
            }
        }
        let _ = reactor.on_input_eof();
        let mut out = bytes::BytesMut::new();
        reactor.poll_transmit(&mut out, usize::MAX);
        out.freeze()
    })
    .await
}

/// A bare hyper server (same connection builder as `serve`) whose handler reads each
/// request's body whole and answers `answer(body)`.
async fn start_handler<F>(answer: F) -> SocketAddr
where
    F: Fn(Bytes) -> Bytes + Clone + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let answer = answer.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let answer = answer.clone();
                        async move {
                            let body = req.into_body().collect().await;
                            let body = body.map(|b| b.to_bytes()).unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", MEDIA_TYPE)
                                    .body(Full::new(answer(body)))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub(crate) async fn post(client: &RawClient, url: &str, body: Bytes) -> Bytes {
    let request = http::Request::post(url)
        .header("accept", MEDIA_TYPE)
        .header("content-type", MEDIA_TYPE)
        .body(Full::new(body))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

/// The frames of `echo` with `data`, as a client sends them.
pub(crate) fn echo_request(data: &[u8]) -> Bytes {
    command_request(b"echo", [], Some(data))
}

/// The frames of one command (request 1 on stream 1, which they begin), as a client
/// sends them.
pub(crate) fn command_request(
    name: &[u8],
    args: impl IntoIterator<Item = (Bytes, Bytes)>,
    data: Option<&[u8]>,
) -> Bytes {
    let target = hgframe_wire::build::FrameTarget::new(
        hgframe_wire::RequestId(1),
        hgframe_wire::StreamId(1),
    );
    let frames = hgframe_wire::build::command_frames(target, name, args, data).unwrap();
    let mut out = bytes::BytesMut::new();
    for (i, f) in frames.into_iter().enumerate() {
        let f = if i == 0 {
            f.with_stream_flags(hgframe_wire::StreamFlags::STREAM_BEGIN)
        } else {
            f
        };
        f.encode(&mut out);
    }
    out.freeze()
}
