//! A server on a loopback port over a temporary directory, and helpers to talk to it
//! with raw HTTP requests and frames.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hgframe::commands::FileCommands;
use hgframe_http::{serve, ExchangeStats, HgFrameService, Registry, ServerConfig, MEDIA_TYPE};
use hgframe_wire::build::{command_frames, FrameTarget};
use hgframe_wire::{Frame, Frames, RequestId, StreamFlags, StreamId};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as RawClient;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

/// Anything in a test may wait at most this long: a hang fails instead of blocking CI.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    pub stats: Arc<Mutex<Vec<ExchangeStats>>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// A server with the file commands over a fresh directory (`a.txt`, `sub/b.txt`),
    /// plus whatever `configure` adds.
    pub async fn start(configure: impl FnOnce(&mut ServerConfig, &mut Registry)) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.txt"), b"alpha\n").unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/b.txt"), b"beta\n").unwrap();
        let mut registry = Registry::new();
        FileCommands::new(root.path())
            .unwrap()
            .register(&mut registry);
        let stats = Arc::new(Mutex::new(Vec::new()));
        let mut config = ServerConfig::default();
        let seen = Arc::clone(&stats);
        config
            .engine_mut()
            .set_observer(move |s| seen.lock().unwrap().push(s.clone()));
        configure(&mut config, &mut registry);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let service = HgFrameService::new(registry, config).unwrap();
        let task = tokio::spawn(async move {
            serve(listener, service, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            root,
            stats,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api(&self, rest: &str) -> String {
        format!("http://{}/api/exp-http-v2-0001/{rest}", self.addr)
    }

    /// Starts the graceful shutdown; returns the serve task to await.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap()
    }

    /// The counters of every exchange that ended, once `n` of them have.
    pub async fn wait_stats(&self, n: usize) -> Vec<ExchangeStats> {
        within(async {
            loop {
                {
                    let stats = self.stats.lock().unwrap();
                    if stats.len() >= n {
                        return stats.clone();
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}

/// Awaits `f`, failing the test after [`PATIENCE`].
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("the test waited too long")
}

/// A raw HTTP answer.
pub struct Raw {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Raw {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn frames(&self) -> Vec<Frame> {
        Frames::new(self.body.clone()).map(|f| f.unwrap()).collect()
    }
}

/// One request with exactly these headers, over HTTP/1.1 (or h2c).
pub async fn raw(method: &str, url: &str, headers: &[(&str, &str)], body: Bytes, h2: bool) -> Raw {
    let client = RawClient::builder(TokioExecutor::new())
        .http2_only(h2)
        .build_http::<Full<Bytes>>();
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = within(client.request(request.body(Full::new(body)).unwrap()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = within(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    Raw {
        status,
        headers,
        body,
    }
}

/// A POST with the right media types.
pub async fn post_frames(url: &str, body: Bytes) -> Raw {
    raw(
        "POST",
        url,
        &[("accept", MEDIA_TYPE), ("content-type", MEDIA_TYPE)],
        body,
        false,
    )
    .await
}

/// The frames of a command on client stream 1 (`stream-begin` on the first frame of
/// the body when `first`).
pub fn command(
    request: u16,
    name: &str,
    args: &[(&str, &str)],
    data: Option<&[u8]>,
    first: bool,
) -> BytesMut {
    let target = FrameTarget::new(RequestId(request), StreamId(1));
    let args = args.iter().map(|(k, v)| {
        (
            Bytes::copy_from_slice(k.as_bytes()),
            Bytes::copy_from_slice(v.as_bytes()),
        )
    });
    let frames = command_frames(target, name.as_bytes(), args, data).unwrap();
    let mut out = BytesMut::new();
    for (i, frame) in frames.into_iter().enumerate() {
        let frame = if first && i == 0 {
            frame.with_stream_flags(StreamFlags::STREAM_BEGIN)
        } else {
            frame
        };
        frame.encode(&mut out);
    }
    out
}

/// The bytes-response data and error messages of `request` in identity-encoded frames.
pub fn answer_of(frames: &[Frame], request: u16) -> (Vec<u8>, Vec<String>) {
    let mut data = Vec::new();
    let mut errors = Vec::new();
    for f in frames
        .iter()
        .filter(|f| f.request_id() == RequestId(request))
    {
        match f.frame_type() {
            4 => data.extend_from_slice(f.payload()),
            5 => errors.push(String::from_utf8_lossy(f.payload()).into_owned()),
            _ => {}
        }
    }
    (data, errors)
}
