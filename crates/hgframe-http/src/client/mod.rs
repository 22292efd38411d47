//! Calling commands: the HTTP [`Client`], and what every transport's calls return.
//!
//! A [`Call`] names a command, its arguments and optional data (whole, or a stream of
//! pieces sent as they come). Each call answers with a [`ResponseStream`]: the response
//! data as it arrives, text output, and at most one error. Streams of one exchange are
//! independent and may be read from different tasks; they are fed in the order the
//! server's frames arrive, each through a bounded queue, so read them concurrently (or
//! at least all of them): one stream left unread long enough pauses the others.
//!
//! ```no_run
//! # async fn run() -> Result<(), hgframe_http::Error> {
//! use hgframe_http::{Call, Client, Permission};
//! let client = Client::new("http://127.0.0.1:8000")?;
//! let answer = client.call(Call::new("echo").arg("a", "1")).await?.collect().await?;
//! assert_eq!(&answer.data[..], b"a=1\n");
//! let streams = client
//!     .call_many(Permission::ReadOnly, vec![Call::new("files"), Call::new("cat").arg("path", "README.md")])
//!     .await?;
//! # Ok(()) }
//! ```

pub(crate) mod driver;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{Stream, TryStreamExt};
use hgframe_reactor::{ClientConfig, ClientReactor};
use hgframe_wire::codec::FrameCodec;
use http::{header, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::io::StreamReader;

use self::driver::{Driver, Input, Item, NewCall};
use crate::body::FrameBody;
use crate::command::Permission;
use crate::config::{DEFAULT_PREFIX, ENCODINGS_HEADER, MEDIA_TYPE};
use crate::error::Error;
use crate::server::FrameInput;
use crate::TextAtom;

/// One command to call.
#[derive(Debug)]
pub struct Call {
    pub(crate) name: String,
    pub(crate) args: Vec<(Bytes, Bytes)>,
    pub(crate) data: Option<CallData>,
    pub(crate) permission: Permission,
}

/// The data of a call.
pub enum CallData {
    /// All of it at once.
    Bytes(Bytes),
    /// Pieces, sent as they come (and only as fast as the connection takes them). An
    /// error abandons the whole exchange, so the server never runs the command on part
    /// of its data.
    Stream(BoxStream<'static, std::io::Result<Bytes>>),
}

impl std::fmt::Debug for CallData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl Call {
    /// A call of `name`, read-only, without arguments or data.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            args: Vec::new(),
            data: None,
            permission: Permission::ReadOnly,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.args.push((name.into(), value.into()));
        self
    }

    /// Sets the data, all at once.
    pub fn data(mut self, data: impl Into<Bytes>) -> Self {
        self.data = Some(CallData::Bytes(data.into()));
        self
    }

    /// Sets the data, as a stream of pieces.
    pub fn data_stream<S>(mut self, data: S) -> Self
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        self.data = Some(CallData::Stream(Box::pin(data)));
        self
    }

    /// Sets the data: everything `reader` yields, read in pieces as the connection takes
    /// them (a file, stdin, a pipe...).
    pub fn data_reader<R>(self, reader: R) -> Self
    where
        R: tokio::io::AsyncRead + Send + 'static,
    {
        self.data_stream(tokio_util::io::ReaderStream::with_capacity(
            reader,
            64 << 10,
        ))
    }

    /// Sets what the command needs; over HTTP a single call goes to that permission's
    /// URL (`ro` by default).
    pub fn permission(mut self, permission: Permission) -> Self {
        self.permission = permission;
        self
    }

    /// The command's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Something a response says, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseEvent {
    /// Response bytes, decoded, as they arrived.
    Data(Bytes),
    /// Text for people.
    Text(Vec<TextAtom>),
}

/// A whole response, gathered by [`ResponseStream::collect`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// All response bytes.
    pub data: Bytes,
    /// Every text output, in order.
    pub text: Vec<Vec<TextAtom>>,
}

/// The response to one call: events as they arrive, then the end.
///
/// It yields `Ok` events; an error (the command failed on the server, the server broke
/// the protocol, the connection ended early) is the last item. `None` after the
/// complete response. Dropping it discards the rest of this response only.
#[derive(Debug)]
pub struct ResponseStream {
    rx: mpsc::Receiver<Item>,
    finished: bool,
}

impl ResponseStream {
    pub(crate) fn new(rx: mpsc::Receiver<Item>) -> Self {
        Self {
            rx,
            finished: false,
        }
    }

    /// The next event; `None` once the response is complete. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<ResponseEvent, Error>> {
        std::future::poll_fn(|cx| self.poll_next_event(cx)).await
    }

    /// Gathers the whole response (as much as the server sends: use [`Self::next`] to
    /// bound it yourself).
    pub async fn collect(mut self) -> Result<Response, Error> {
        let mut data = BytesMut::new();
        let mut first: Option<Bytes> = None;
        let mut text = Vec::new();
        while let Some(event) = self.next().await {
            match event? {
                // One piece is kept as is (no copy); more are joined.
                ResponseEvent::Data(piece) => match first.take() {
                    None if data.is_empty() => first = Some(piece),
                    held => {
                        if let Some(held) = held {
                            data.extend_from_slice(&held);
                        }
                        data.extend_from_slice(&piece);
                    }
                },
                ResponseEvent::Text(atoms) => text.push(atoms),
            }
        }
        let data = match first {
            Some(first) => first,
            None => data.freeze(),
        };
        Ok(Response { data, text })
    }

    fn poll_next_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<ResponseEvent, Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        loop {
            let item = match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(item) => item,
            };
            return Poll::Ready(match item {
                Some(Item::Data(data, eos)) => {
                    self.finished = eos;
                    if data.is_empty() && eos {
                        return Poll::Ready(None);
                    }
                    if data.is_empty() {
                        continue;
                    }
                    Some(Ok(ResponseEvent::Data(data)))
                }
                Some(Item::Text(atoms)) => Some(Ok(ResponseEvent::Text(atoms))),
                Some(Item::Failed(e)) => {
                    self.finished = true;
                    Some(Err(e))
                }
                None => {
                    self.finished = true;
                    Some(Err(Error::closed(
                        "the exchange ended before the response was complete",
                    )))
                }
            });
        }
    }
}

impl Stream for ResponseStream {
    type Item = Result<ResponseEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_event(cx)
    }
}

/// Settings of a [`Client`] (and of [`crate::bytestream::Connection`]).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    prefix: String,
    media_type: String,
    encodings: Option<Vec<String>>,
    http2_prior_knowledge: bool,
    reactor: ClientConfig,
    response_queue: usize,
    transmit_chunk: usize,
    window: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            media_type: MEDIA_TYPE.to_owned(),
            encodings: None,
            http2_prior_knowledge: false,
            reactor: ClientConfig::default(),
            response_queue: 32,
            transmit_chunk: 64 << 10,
            window: 64,
        }
    }
}

impl ClientOptions {
    /// The URL prefix, default [`DEFAULT_PREFIX`].
    pub fn set_prefix(&mut self, prefix: &str) -> &mut Self {
        self.prefix = format!("/{}", prefix.trim_matches('/'));
        self
    }

    /// The media type, default [`MEDIA_TYPE`].
    pub fn set_media_type(&mut self, media_type: &str) -> &mut Self {
        self.media_type = media_type.to_owned();
        self
    }

    /// The content encodings to accept, best first; default: every profile this build
    /// decodes. The server never uses one not listed; `identity` is always understood.
    pub fn set_encodings<S: AsRef<str>>(&mut self, encodings: &[S]) -> &mut Self {
        self.encodings = Some(encodings.iter().map(|s| s.as_ref().to_owned()).collect());
        self
    }

    /// Speak HTTP/2 without upgrade (h2c), default false. Exchanges are then full
    /// duplex: responses arrive while the request is still being sent, and
    /// [`Self::set_window`] applies.
    pub fn set_http2_prior_knowledge(&mut self, enabled: bool) -> &mut Self {
        self.http2_prior_knowledge = enabled;
        self
    }

    /// The client reactor's settings (frame sizes, limits, its own stream's encoding).
    pub fn reactor_mut(&mut self) -> &mut ClientConfig {
        &mut self.reactor
    }

    /// Events queued per response stream, default 32 (each at most one frame's data).
    pub fn set_response_queue(&mut self, n: usize) -> &mut Self {
        self.response_queue = n.max(1);
        self
    }

    /// Bytes of frames handed to the connection at once, default 64 KiB.
    pub fn set_transmit_chunk(&mut self, bytes: usize) -> &mut Self {
        self.transmit_chunk = bytes.max(1024);
        self
    }

    /// Commands in flight at once on a full-duplex exchange (HTTP/2, byte streams),
    /// default 64; more wait until earlier responses end. Half-duplex exchanges send
    /// every command at once (the server answers only after the request ends).
    pub fn set_window(&mut self, n: usize) -> &mut Self {
        self.window = n.max(1);
        self
    }

    /// The encodings offered, as a header value.
    pub(crate) fn accept_list(&self, reactor: &ClientReactor) -> String {
        match &self.encodings {
            Some(list) => list.join(", "),
            None => reactor.accepted_encodings().join(", "),
        }
    }

    pub(crate) fn new_driver(
        &self,
        calls: mpsc::Receiver<NewCall>,
        full_duplex: bool,
    ) -> (Driver, String) {
        let reactor = ClientReactor::new(self.reactor.clone());
        let accepts = self.accept_list(&reactor);
        let window = if full_duplex { self.window } else { usize::MAX };
        (
            Driver::new(reactor, calls, window, self.transmit_chunk),
            accepts,
        )
    }

    pub(crate) fn response_queue(&self) -> usize {
        self.response_queue
    }

    pub(crate) fn max_frame_payload(&self) -> usize {
        self.reactor.max_frame_payload()
    }
}

/// Queues `calls` for a driver; returns their response streams.
pub(crate) fn queue_calls(
    calls: Vec<Call>,
    response_queue: usize,
) -> (mpsc::Receiver<NewCall>, Vec<ResponseStream>) {
    let (tx, rx) = mpsc::channel(calls.len().max(1));
    let mut streams = Vec::with_capacity(calls.len());
    for call in calls {
        let (events, events_rx) = mpsc::channel(response_queue);
        // The queue was made large enough for every call.
        let _ = tx.try_send(NewCall { call, events });
        streams.push(ResponseStream::new(events_rx));
    }
    (rx, streams)
}

/// An HTTP client: each [`Client::call`] or [`Client::call_many`] is one HTTP exchange.
/// Connections are pooled and kept alive. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Client {
    http: hyper_util::client::legacy::Client<HttpConnector, FrameBody>,
    base: String,
    options: ClientOptions,
}

impl Client {
    /// A client of the server at `url` (its root, e.g. `http://127.0.0.1:8000`; a bare
    /// `HOST:PORT` means `http://HOST:PORT`).
    pub fn new(url: &str) -> Result<Self, Error> {
        Self::with_options(url, ClientOptions::default())
    }

    /// A client with these settings.
    pub fn with_options(url: &str, options: ClientOptions) -> Result<Self, Error> {
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::invalid(format!("bad URL {url}: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(Error::invalid(format!(
                "bad URL {url}: only http:// is supported (no TLS in this client)"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| Error::invalid(format!("bad URL {url}: no host")))?;
        let root = uri.path().trim_end_matches('/');
        let base = format!("http://{authority}{root}{}", options.prefix);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(options.http2_prior_knowledge)
            .build(connector);
        Ok(Self {
            http,
            base,
            options,
        })
    }

    /// Calls one command (at `<prefix>/<its permission>/<name>`). Returns once the server
    /// has started answering; an HTTP error status (404, 406, ...) is an error here.
    pub async fn call(&self, call: Call) -> Result<ResponseStream, Error> {
        let path = format!("{}/{}", call.permission.as_str(), call.name);
        let mut streams = self.exchange(&path, vec![call]).await?;
        streams
            .pop()
            .ok_or_else(|| Error::closed("no response stream"))
    }

    /// Calls several commands in one HTTP exchange (`multirequest` with `permission`);
    /// returns their response streams in the same order.
    pub async fn call_many(
        &self,
        permission: Permission,
        calls: Vec<Call>,
    ) -> Result<Vec<ResponseStream>, Error> {
        let path = format!("{}/multirequest", permission.as_str());
        self.exchange(&path, calls).await
    }

    async fn exchange(&self, path: &str, calls: Vec<Call>) -> Result<Vec<ResponseStream>, Error> {
        let options = &self.options;
        let (calls_rx, streams) = queue_calls(calls, options.response_queue());
        let (driver, accepts) = options.new_driver(calls_rx, options.http2_prior_knowledge);
        let (body_tx, body_rx) = mpsc::channel(4);
        let request = Request::post(format!("{}/{path}", self.base))
            .header(header::ACCEPT, &options.media_type)
            .header(header::CONTENT_TYPE, &options.media_type)
            .header(ENCODINGS_HEADER, accepts)
            .body(FrameBody::frames(body_rx))
            .map_err(|e| Error::invalid(format!("cannot build the request: {e}")))?;
        let (head_tx, head_rx) = oneshot::channel();
        let response = self.http.request(request);
        let media_type = options.media_type.clone();
        let max_payload = options.max_frame_payload();
        let head = async move {
            let checked = match response.await {
                Ok(response) => check_response(response, &media_type).await,
                Err(e) => Err(
                    Error::new(crate::ErrorKind::Http, format!("request failed: {e}"))
                        .with_source(e),
                ),
            };
            let (to_driver, to_caller) = match checked {
                Ok(body) => (Ok(body), Ok(())),
                Err(e) => (Err(e.duplicate()), Err(e)),
            };
            let _ = head_tx.send(to_caller);
            let body = to_driver?;
            let reader = StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
            let frames: FrameInput = Box::pin(FramedRead::new(
                reader,
                FrameCodec::with_max_payload_len(max_payload),
            ));
            Ok(frames)
        };
        tokio::spawn(driver.run(Input::Pending(Box::pin(head)), body_tx));
        match head_rx.await {
            Ok(Ok(())) => Ok(streams),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::closed(
                "the exchange ended before the response started",
            )),
        }
    }
}

/// Checks the response's status and media type; returns its body.
async fn check_response(
    response: http::Response<hyper::body::Incoming>,
    media_type: &str,
) -> Result<hyper::body::Incoming, Error> {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if status == StatusCode::OK && content_type.eq_ignore_ascii_case(media_type) {
        return Ok(response.into_body());
    }
    // The server explains in text/plain; read a bounded amount of it.
    let mut body = response.into_body();
    let mut text = Vec::new();
    while text.len() < 4096 {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    text.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    text.truncate(4096);
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let message = if status == StatusCode::OK {
        format!("unexpected response media type {content_type:?}: {text}")
    } else {
        text
    };
    Err(Error::status(status, message))
}
