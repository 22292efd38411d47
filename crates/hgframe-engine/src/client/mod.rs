//! Calling commands: what every transport's calls take and return, and the client
//! driver that runs one exchange's calls.
//!
//! A [`Call`] names a command, its arguments and optional data (whole, or a stream of
//! pieces sent as they come). One call answers with a [`ResponseStream`]: the response
//! data as it arrives, text output, and at most one error. Several calls made at once
//! (`call_many`) answer with a [`Batch`]: the events of all of them, tagged with the
//! call's index, in the order they arrive, for one consumer; [`Batch::collect`] gathers
//! every response.
//! A [`Session`] shares one long-lived exchange (a byte stream, or one HTTP/2 exchange
//! kept open) among any number of tasks, with bounded pending calls and counters.
//!
//! How to read them: [the crate's rule](crate#reading-responses).
//!
//! ```no_run
//! # async fn run() -> Result<(), hgframe_engine::Error> {
//! use hgframe_engine::{bytestream::Connection, Call, ClientOptions};
//! let conn = Connection::connect_tcp("127.0.0.1:9000", ClientOptions::default()).await?;
//! let answer = conn.call(Call::new("echo").arg("a", "1")).await?.collect().await?;
//! assert_eq!(&answer.data[..], b"a=1\n");
//! # Ok(()) }
//! ```

pub(crate) mod counters;
pub(crate) mod driver;
pub(crate) mod queue;
pub(crate) mod session;

use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::Stream;
use hgframe_reactor::{ClientConfig, ClientReactor};
use tokio::sync::mpsc;

pub use self::counters::{ClientStats, Counters};
use self::driver::{Driver, Item, NewCall};
use self::queue::{Budget, Popped, Queue, Receiver, Sink};
pub use self::session::Session;
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
    pub(crate) deadline: Option<std::time::Duration>,
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
            deadline: None,
        }
    }

    /// Gives up on the call if its response has not ended `after` it was issued: the
    /// response fails with [`crate::ErrorKind::Timeout`], and, if the server accepted
    /// the `cancel` extension, the request is cancelled there (its handler stops);
    /// otherwise the rest of its response is read and dropped.
    pub fn deadline(mut self, after: std::time::Duration) -> Self {
        self.deadline = Some(after);
        self
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
#[non_exhaustive]
pub enum ResponseEvent {
    /// Response bytes, decoded, as they arrived.
    Data(Bytes),
    /// Text for people.
    Text(Vec<TextAtom>),
    /// How far the command got (extension `progress`, only if the client offered it:
    /// `ClientOptions::reactor_mut().set_extensions(..)`), in order with the data.
    Progress {
        /// What progresses.
        topic: String,
        /// How far it got.
        position: u64,
        /// Where it ends; 0 when unknown.
        total: u64,
    },
}

/// A whole response, gathered by [`ResponseStream::collect`] or [`Batch::collect`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// All response bytes.
    pub data: Bytes,
    /// Every text output, in order.
    pub text: Vec<Vec<TextAtom>>,
}

/// Gathers one response's events.
#[derive(Debug, Default)]
struct Gather {
    data: BytesMut,
    first: Option<Bytes>,
    text: Vec<Vec<TextAtom>>,
}

impl Gather {
    fn add(&mut self, event: ResponseEvent) {
        match event {
            // One piece is kept as is (no copy); more are joined.
            ResponseEvent::Data(piece) => match self.first.take() {
                None if self.data.is_empty() => self.first = Some(piece),
                held => {
                    if let Some(held) = held {
                        self.data.extend_from_slice(&held);
                    }
                    self.data.extend_from_slice(&piece);
                }
            },
            ResponseEvent::Text(atoms) => self.text.push(atoms),
            ResponseEvent::Progress { .. } => {}
        }
    }

    fn finish(self) -> Response {
        let data = match self.first {
            Some(first) => first,
            None => self.data.freeze(),
        };
        Response {
            data,
            text: self.text,
        }
    }
}

fn ended_early() -> Error {
    Error::closed("the exchange ended before the response was complete")
}

/// The response to one call: events as they arrive, then the end.
///
/// It yields `Ok` events; an error (the command failed on the server, the server broke
/// the protocol, the connection ended early, the response was dropped unread: see the
/// [module's rule](crate#reading-responses)) is the last item. `None`
/// after the complete response. Dropping it discards the rest of this response only; if
/// the server accepted the `cancel` extension, the request is cancelled there too (its
/// handler stops and nothing more of it is sent).
#[derive(Debug)]
pub struct ResponseStream {
    rx: Receiver,
    finished: bool,
    /// A session's place for this call, given back when the response ends (or the
    /// stream is dropped).
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ResponseStream {
    pub(crate) fn new(rx: Receiver) -> Self {
        Self {
            rx,
            finished: false,
            permit: None,
        }
    }

    pub(crate) fn hold(&mut self, permit: tokio::sync::OwnedSemaphorePermit) {
        self.permit = Some(permit);
    }

    fn finish(&mut self) {
        self.finished = true;
        self.permit = None;
    }

    /// The next event; `None` once the response is complete. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<ResponseEvent, Error>> {
        std::future::poll_fn(|cx| self.poll_next_event(cx)).await
    }

    /// Gathers the whole response (as much as the server sends: use [`Self::next`] to
    /// bound it yourself).
    pub async fn collect(mut self) -> Result<Response, Error> {
        let mut gather = Gather::default();
        while let Some(event) = self.next().await {
            gather.add(event?);
        }
        Ok(gather.finish())
    }

    fn poll_next_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<ResponseEvent, Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        loop {
            let popped = match self.rx.poll_pop(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(popped) => popped,
            };
            return Poll::Ready(match popped {
                Popped::Item(_, Item::Data(data, eos)) => {
                    if eos {
                        self.finish();
                    }
                    if data.is_empty() && eos {
                        return Poll::Ready(None);
                    }
                    if data.is_empty() {
                        continue;
                    }
                    Some(Ok(ResponseEvent::Data(data)))
                }
                Popped::Item(_, Item::Text(atoms)) => Some(Ok(ResponseEvent::Text(atoms))),
                Popped::Item(_, Item::Progress(topic, position, total)) => {
                    Some(Ok(ResponseEvent::Progress {
                        topic,
                        position,
                        total,
                    }))
                }
                Popped::Item(_, Item::Failed(e)) | Popped::Evicted(e) => {
                    self.finish();
                    Some(Err(e))
                }
                Popped::Closed => {
                    self.finish();
                    Some(Err(ended_early()))
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

/// Something one call of a [`Batch`] says.
#[derive(Debug)]
pub enum BatchEvent {
    /// Response bytes, decoded, as they arrived.
    Data(Bytes),
    /// Text for people.
    Text(Vec<TextAtom>),
    /// The response is complete; nothing follows for this call.
    End,
    /// The response failed (the command failed on the server, the server broke the
    /// protocol, the connection ended early); nothing follows for this call.
    Failed(Error),
}

/// The responses to several calls, for one consumer: the events of all of them, each
/// tagged with its call's index (its place in the `Vec` of calls), in the order they
/// arrive.
///
/// Every call ends with exactly one [`BatchEvent::End`] or [`BatchEvent::Failed`];
/// [`Self::next`] returns `None` once every call has ended. Since one consumer takes
/// every event, no response can wait for another: while the batch is read, the exchange
/// goes on; while it is not, the client stops reading from the server once
/// [`ClientOptions::set_response_queue`] events wait (back-pressure, memory bounded).
/// Dropping it abandons the calls (the exchange ends once nobody listens).
///
/// ```no_run
/// # async fn run() -> Result<(), hgframe_engine::Error> {
/// use hgframe_engine::{bytestream::Connection, BatchEvent, Call, ClientOptions};
/// let conn = Connection::connect_tcp("127.0.0.1:9000", ClientOptions::default()).await?;
/// let calls = (0..1000).map(|i| Call::new("echo").arg("i", i.to_string())).collect();
/// let mut batch = conn.call_many(calls);
/// while let Some((index, event)) = batch.next().await {
///     match event {
///         BatchEvent::Data(bytes) => println!("call {index}: {} bytes", bytes.len()),
///         BatchEvent::Failed(e) => eprintln!("call {index} failed: {e}"),
///         BatchEvent::Text(_) | BatchEvent::End => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Batch {
    rx: Receiver,
    ended: Vec<bool>,
    remaining: usize,
    /// An `End` owed to this call (its last data came with `eos`).
    owed_end: Option<usize>,
    /// Why every call not ended yet fails, and the next index to look at.
    failing: Option<(Error, usize)>,
}

impl Batch {
    pub(crate) fn new(rx: Receiver, len: usize) -> Self {
        Self {
            rx,
            ended: vec![false; len],
            remaining: len,
            owed_end: None,
            failing: None,
        }
    }

    /// How many calls the batch has.
    pub fn len(&self) -> usize {
        self.ended.len()
    }

    /// Whether the batch has no calls.
    pub fn is_empty(&self) -> bool {
        self.ended.is_empty()
    }

    /// The next event of any call, with the call's index; `None` once every call has
    /// ended. Cancel-safe.
    pub async fn next(&mut self) -> Option<(usize, BatchEvent)> {
        std::future::poll_fn(|cx| self.poll_next_event(cx)).await
    }

    /// Gathers every response, in the order of the calls. Holds them all: use
    /// [`Self::next`] to handle each piece as it comes instead.
    pub async fn collect(mut self) -> Vec<Result<Response, Error>> {
        let mut gathered: Vec<Option<Result<Gather, Error>>> = (0..self.len())
            .map(|_| Some(Ok(Gather::default())))
            .collect();
        let mut done: Vec<Option<Result<Response, Error>>> =
            (0..self.len()).map(|_| None).collect();
        while let Some((index, event)) = self.next().await {
            let (Some(slot), Some(out)) = (gathered.get_mut(index), done.get_mut(index)) else {
                continue;
            };
            match event {
                BatchEvent::Data(data) => {
                    if let Some(Ok(g)) = slot {
                        g.add(ResponseEvent::Data(data));
                    }
                }
                BatchEvent::Text(atoms) => {
                    if let Some(Ok(g)) = slot {
                        g.add(ResponseEvent::Text(atoms));
                    }
                }
                BatchEvent::End => {
                    if let Some(Ok(g)) = slot.take() {
                        *out = Some(Ok(g.finish()));
                    }
                }
                BatchEvent::Failed(e) => {
                    slot.take();
                    *out = Some(Err(e));
                }
            }
        }
        done.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ended_early())))
            .collect()
    }

    /// Marks `index` ended; false if it already was (or is not a call of the batch).
    fn end(&mut self, index: usize) -> bool {
        match self.ended.get_mut(index) {
            Some(ended) if !*ended => {
                *ended = true;
                self.remaining -= 1;
                true
            }
            _ => false,
        }
    }

    fn poll_next_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<(usize, BatchEvent)>> {
        if let Some(index) = self.owed_end.take() {
            if self.end(index) {
                return Poll::Ready(Some((index, BatchEvent::End)));
            }
        }
        loop {
            if self.remaining == 0 {
                return Poll::Ready(None);
            }
            if let Some((error, next)) = &mut self.failing {
                let from = *next;
                let Some(index) = (from..self.ended.len())
                    .find(|&i| self.ended.get(i).is_some_and(|ended| !ended))
                else {
                    return Poll::Ready(None);
                };
                *next = index + 1;
                let error = error.duplicate();
                self.end(index);
                return Poll::Ready(Some((index, BatchEvent::Failed(error))));
            }
            let popped = match self.rx.poll_pop(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(popped) => popped,
            };
            let (index, item) = match popped {
                Popped::Item(index, item) => (index, item),
                Popped::Evicted(e) => {
                    self.failing = Some((e, 0));
                    continue;
                }
                Popped::Closed => {
                    self.failing = Some((ended_early(), 0));
                    continue;
                }
            };
            if self.ended.get(index) != Some(&false) {
                continue;
            }
            let event = match item {
                Item::Data(data, eos) => {
                    if data.is_empty() {
                        if eos {
                            self.end(index);
                            BatchEvent::End
                        } else {
                            continue;
                        }
                    } else {
                        if eos {
                            self.owed_end = Some(index);
                        }
                        BatchEvent::Data(data)
                    }
                }
                Item::Text(atoms) => BatchEvent::Text(atoms),
                // A batch carries no progress (one consumer for many calls).
                Item::Progress(..) => continue,
                Item::Failed(e) => {
                    self.end(index);
                    BatchEvent::Failed(e)
                }
            };
            return Poll::Ready(Some((index, event)));
        }
    }
}

impl Stream for Batch {
    type Item = (usize, BatchEvent);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_event(cx)
    }
}

/// Where calls go to a driver: each becomes a [`ResponseStream`] or part of a
/// [`Batch`]. Queuing never waits; the driver issues them as its window allows.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct CallQueue {
    tx: mpsc::UnboundedSender<NewCall>,
    budget: Arc<Budget>,
}

impl CallQueue {
    /// Whether the driver has ended (no call can be issued any more).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues one call.
    pub fn call(&self, call: Call) -> Result<ResponseStream, Error> {
        let rx = Queue::open(&self.budget);
        let events = Sink::new(&rx, 0);
        self.tx
            .send(NewCall { call, events })
            .map_err(|_| Error::closed("the connection has ended"))?;
        Ok(ResponseStream::new(rx))
    }

    /// Queues several calls, answered as one batch. If the driver has ended, every call
    /// fails.
    pub fn call_many(&self, calls: Vec<Call>) -> Batch {
        let rx = Queue::open(&self.budget);
        let len = calls.len();
        for (index, call) in calls.into_iter().enumerate() {
            let events = Sink::new(&rx, index);
            // If the driver has ended, the call (and its sink) is dropped here; the batch
            // then reports the early end for it.
            let _ = self.tx.send(NewCall { call, events });
        }
        Batch::new(rx, len)
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
    profiles: hgframe_stream::Profiles,
    response_queue: usize,
    response_buffer: usize,
    transmit_chunk: usize,
    window: usize,
    max_pending_calls: usize,
    compress_requests: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            media_type: MEDIA_TYPE.to_owned(),
            encodings: None,
            http2_prior_knowledge: false,
            reactor: ClientConfig::default(),
            profiles: hgframe_stream::Profiles::default(),
            response_queue: 32,
            response_buffer: 256 << 20,
            transmit_chunk: 64 << 10,
            window: 64,
            max_pending_calls: 256,
            compress_requests: true,
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
    /// A name this build does not decode is refused by [`Self::validate`] (so by every
    /// client and connection), not dropped: a typo would otherwise silently cost the
    /// compression.
    pub fn set_encodings<S: AsRef<str>>(&mut self, encodings: &[S]) -> &mut Self {
        self.encodings = Some(encodings.iter().map(|s| s.as_ref().to_owned()).collect());
        self
    }

    /// The encodings set with [`Self::set_encodings`], if any (else every profile of
    /// [`Self::profiles`]), best first.
    pub fn accepted_encodings(&self) -> Vec<&str> {
        match &self.encodings {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => self.profiles.names().collect(),
        }
    }

    /// Whether the HTTP client encodes its requests once a server has said which
    /// profiles it decodes (the response header `hgframe-decodes`), default true: the
    /// first of [`Self::accepted_encodings`] the server decodes, other than `identity`,
    /// for every later exchange. Only while the client's own stream is left at
    /// `identity` ([`ClientConfig::set_encoding`] chooses one for good).
    pub fn set_compress_requests(&mut self, enabled: bool) -> &mut Self {
        self.compress_requests = enabled;
        self
    }

    /// See [`Self::set_compress_requests`].
    pub fn compress_requests(&self) -> bool {
        self.compress_requests
    }

    /// The profile to encode requests with, given `server_decodes`, the list a server
    /// says it decodes (header syntax): the first of [`Self::accepted_encodings`] in it
    /// other than `identity`. `None` when there is none, when requests are not to be
    /// compressed, or when the client's own encoding was chosen by hand.
    ///
    /// ```
    /// use hgframe_engine::ClientOptions;
    /// let mut options = ClientOptions::default();
    /// options.set_encodings(&["zstd-8mb", "identity"]);
    /// assert_eq!(options.request_encoding_for("identity, zstd-8mb").as_deref(), Some("zstd-8mb"));
    /// assert_eq!(options.request_encoding_for("identity"), None);
    /// assert_eq!(options.set_compress_requests(false).request_encoding_for("zstd-8mb"), None);
    /// ```
    pub fn request_encoding_for(&self, server_decodes: &str) -> Option<String> {
        if !self.compress_requests || self.reactor.encoding() != hgframe_reactor::IDENTITY {
            return None;
        }
        let theirs = hgframe_stream::parse_accept_list(server_decodes);
        self.accepted_encodings()
            .into_iter()
            .find(|ours| *ours != hgframe_reactor::IDENTITY && theirs.iter().any(|t| t == ours))
            .map(str::to_owned)
    }

    /// Speak HTTP/2 without upgrade (h2c), default false. Exchanges are then full
    /// duplex: responses arrive while the request is still being sent, and
    /// [`Self::set_window`] applies.
    pub fn set_http2_prior_knowledge(&mut self, enabled: bool) -> &mut Self {
        self.http2_prior_knowledge = enabled;
        self
    }

    /// The client reactor's settings.
    pub fn reactor(&self) -> &ClientConfig {
        &self.reactor
    }

    /// The client reactor's settings (frame sizes, limits, its own stream's encoding).
    pub fn reactor_mut(&mut self) -> &mut ClientConfig {
        &mut self.reactor
    }

    /// Events that may wait in a response stream or a batch, default 32 (each at most
    /// one frame's data), before the client stops reading from the server until they
    /// are read: back-pressure on a slow reader.
    pub fn set_response_queue(&mut self, n: usize) -> &mut Self {
        self.response_queue = n.max(1);
        self
    }

    /// The most bytes of responses not read yet that the client holds for one exchange
    /// (a byte-stream connection, an HTTP exchange), default 256 MiB. It is reached only
    /// when responses are read out of order (one stream waits while others are not read;
    /// see [the rule](crate#reading-responses)): the response holding
    /// the most then fails with an error saying so.
    pub fn set_response_buffer(&mut self, bytes: usize) -> &mut Self {
        self.response_buffer = bytes.max(1);
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

    /// The content-encoding profiles of every exchange and connection (each takes a
    /// clone), default [`hgframe_stream::Profiles::default`]: `zstd-8mb`, whose
    /// contexts come from the process-wide pool and are reused from one exchange to the
    /// next, then `identity`.
    pub fn profiles(&self) -> &hgframe_stream::Profiles {
        &self.profiles
    }

    /// Sets [`Self::profiles`].
    pub fn set_profiles(&mut self, profiles: hgframe_stream::Profiles) -> &mut Self {
        self.profiles = profiles;
        self
    }

    /// Calls of a [`Session`] not ended yet (issued, or waiting for the window), default
    /// 256: [`Session::call`] waits for one to end beyond that (back-pressure on the
    /// callers, so the calls queued, and their data, stay bounded). 0 is refused by
    /// [`Self::validate`].
    pub fn set_max_pending_calls(&mut self, n: usize) -> &mut Self {
        self.max_pending_calls = n;
        self
    }

    /// See [`Self::set_max_pending_calls`].
    pub fn max_pending_calls(&self) -> usize {
        self.max_pending_calls
    }

    /// Checks the settings that have no safe clamp; clients, connections and sessions
    /// refuse options that fail.
    ///
    /// ```
    /// use hgframe_engine::ClientOptions;
    /// let mut options = ClientOptions::default();
    /// assert!(options.validate().is_ok());
    /// let err = options.clone().set_encodings(&["zstd"]).validate().unwrap_err();
    /// assert!(err.message().contains("unknown content encoding \"zstd\""));
    /// assert!(options.clone().set_max_pending_calls(0).validate().is_err());
    /// options.reactor_mut().set_max_expansion_ratio(0);
    /// assert!(options.validate().unwrap_err().message().contains("max_expansion_ratio"));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        if self.reactor.max_expansion_ratio() == 0 {
            return Err(Error::invalid(
                "max_expansion_ratio must be at least 1 (identity decodes to as many bytes \
                 as it sends)",
            ));
        }
        if let Some(unknown) = self
            .encodings
            .iter()
            .flatten()
            .chain(std::iter::once(&self.reactor.encoding().to_owned()))
            .find(|name| !self.profiles.contains(name))
        {
            let known: Vec<&str> = self.profiles.names().collect();
            return Err(Error::invalid(format!(
                "unknown content encoding {unknown:?}: this build decodes {}",
                known.join(", ")
            )));
        }
        if self.max_pending_calls == 0 {
            return Err(Error::invalid(
                "max_pending_calls must be at least 1 (a session with no room for a call \
                 could never call)",
            ));
        }
        Ok(())
    }

    /// The encodings offered, as a header value.
    pub(crate) fn accept_list(&self) -> String {
        self.accepted_encodings().join(", ")
    }

    /// A driver for one exchange, where its calls go, and the accept list it offers.
    #[doc(hidden)]
    pub fn new_driver(&self, full_duplex: bool) -> (Driver, CallQueue, String) {
        let mut config = self.reactor.clone();
        if !full_duplex {
            // Half duplex: every call of the exchange is in flight at once (the server
            // answers once the request has ended), up to every odd request id.
            config.set_max_in_flight(config.max_in_flight().max(1 << 15));
        }
        let reactor = ClientReactor::with_profiles(config, self.profiles.clone());
        let accepts = self.accept_list();
        let window = if full_duplex { self.window } else { usize::MAX };
        let budget = Budget::new(self.response_queue, self.response_buffer);
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver::new(
            reactor,
            rx,
            Arc::clone(&budget),
            window,
            self.transmit_chunk,
        );
        (driver, CallQueue { tx, budget }, accepts)
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

    /// Events that may wait in a response stream or a batch.
    pub fn response_queue(&self) -> usize {
        self.response_queue
    }

    /// The most bytes of unread responses held for one exchange.
    pub fn response_buffer(&self) -> usize {
        self.response_buffer
    }

    /// The largest frame payload the client reads.
    pub fn max_frame_payload(&self) -> usize {
        self.reactor.max_frame_payload()
    }
}
