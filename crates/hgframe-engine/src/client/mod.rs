//! Calling commands: what every transport's calls take and return, and the client
//! driver that runs one exchange's calls.
//!
//! A [`Call`] names a command, its arguments and optional data (whole, or a stream of
//! pieces sent as they come). Each call answers with a [`ResponseStream`]: the response
//! data as it arrives, text output, and at most one error. Streams of one exchange are
//! independent and may be read from different tasks; they are fed in the order the
//! server's frames arrive, each through a bounded queue, so read them concurrently (or
//! at least all of them): one stream left unread long enough pauses the others.
//!
//! ```no_run
//! # async fn run() -> Result<(), hgframe_engine::Error> {
//! use hgframe_engine::{bytestream::Connection, Call, ClientOptions};
//! let conn = Connection::connect_tcp("127.0.0.1:9000", ClientOptions::default()).await?;
//! let answer = conn.call(Call::new("echo").arg("a", "1")).await?.collect().await?;
//! assert_eq!(&answer.data[..], b"a=1\n");
//! # Ok(()) }
//! ```

pub(crate) mod driver;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::Stream;
use hgframe_reactor::{ClientConfig, ClientReactor};
use tokio::sync::mpsc;

use self::driver::{Driver, Item, NewCall};
use crate::command::Permission;
use crate::error::Error;
use crate::TextAtom;

/// The URL prefix of the HTTP transport.
pub const DEFAULT_PREFIX: &str = "/api/exp-http-v2-0001";
/// The media type of the HTTP transport, in `Accept` and `Content-Type`.
pub const MEDIA_TYPE: &str = "application/mercurial-exp-framing-0002";

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

    /// The permission the call asks for (HTTP: the URL's `ro` or `rw`).
    pub fn required_permission(&self) -> Permission {
        self.permission
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

/// Settings of a client: [`crate::bytestream::Connection`], and the HTTP client of
/// `hgframe-http`.
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

    /// A driver for one exchange's calls (`calls`), and the accept list it offers.
    #[doc(hidden)]
    pub fn new_driver(
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

    /// The URL prefix HTTP clients use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The media type HTTP clients send and expect.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// Whether HTTP clients speak HTTP/2 without upgrade.
    pub fn http2_prior_knowledge(&self) -> bool {
        self.http2_prior_knowledge
    }

    /// Events queued per response stream.
    pub fn response_queue(&self) -> usize {
        self.response_queue
    }

    /// The largest frame payload the client reads.
    pub fn max_frame_payload(&self) -> usize {
        self.reactor.max_frame_payload()
    }
}

/// Queues `calls` for a driver; returns their response streams.
pub fn queue_calls(
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
