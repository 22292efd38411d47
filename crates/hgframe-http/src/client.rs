//! The HTTP client: each call, or batch of calls, is one HTTP exchange.
//!
//! ```no_run
//! # async fn run() -> Result<(), hgframe_http::Error> {
//! use hgframe_http::{Call, Client, Permission};
//! let client = Client::new("http://127.0.0.1:8000")?;
//! let answer = client.call(Call::new("echo").arg("a", "1")).await?.collect().await?;
//! assert_eq!(&answer.data[..], b"a=1\n");
//! let batch = client
//!     .call_many(Permission::ReadOnly, vec![Call::new("files"), Call::new("cat").arg("path", "README.md")])
//!     .await?;
//! for response in batch.collect().await {
//!     println!("{} bytes", response?.data.len());
//! }
//! # Ok(()) }
//! ```

use futures_util::TryStreamExt;
use std::sync::{Arc, Mutex};

use hgframe_engine::__private::{CallQueue, Counters, Input};
use hgframe_engine::{
    Batch, Call, ClientOptions, Error, ErrorKind, FrameInput, Permission, ResponseStream, Session,
};
use hgframe_wire::codec::FrameCodec;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::io::StreamReader;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use crate::body::FrameBody;
use crate::config::{DECODES_HEADER, ENCODINGS_HEADER, EXTENSIONS_HEADER};
use hgframe_wire::extension::Extensions;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What carries a client's HTTP exchanges: a tower service from a request (whose body is
/// the frames) to the response's head and body. By default hyper's pooled client, with
/// the [`Client::layer`]s added around it.
pub type HttpService = BoxCloneSyncService<Request<FrameBody>, Response<Incoming>, BoxError>;

/// An HTTP client: each [`Client::call`] or [`Client::call_many`] is one HTTP exchange.
/// Connections are pooled and kept alive. Cloning is cheap.
///
/// Middleware goes around it as tower layers ([`Client::layer`]: authentication,
/// retries of refused requests, tracing, timeouts), and fixed headers with
/// [`Client::header`]:
///
/// ```
/// use hgframe_http::Client;
/// use http::{HeaderName, HeaderValue};
/// let client = Client::new("http://127.0.0.1:8000")?
///     .header(HeaderName::from_static("authorization"), HeaderValue::from_static("Bearer alice"))
///     .layer(tower::timeout::TimeoutLayer::new(std::time::Duration::from_secs(30)));
/// # let _ = client;
/// # Ok::<(), hgframe_http::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    http: HttpService,
    /// Headers added to every request.
    headers: HeaderMap,
    base: String,
    options: Arc<ClientOptions>,
    /// Totals of the exchanges of `call` and `call_many` (a session counts its own).
    counters: Arc<Counters>,
    /// The profile to encode requests with, once a server said it decodes one
    /// ([`ClientOptions::set_compress_requests`]).
    request_encoding: Arc<Mutex<Option<String>>>,
}

/// Header values are left out: [`Client::header`] is where credentials go.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("headers", &headers)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `url` (its root, e.g. `http://127.0.0.1:8000`; a bare
    /// `HOST:PORT` means `http://HOST:PORT`).
    pub fn new(url: &str) -> Result<Self, Error> {
        Self::with_options(url, ClientOptions::default())
    }

    /// A client with these settings.
    pub fn with_options(url: &str, options: ClientOptions) -> Result<Self, Error> {
        if url.starts_with("https://") {
            return Err(Error::invalid(format!(
                "bad URL {url}: this client speaks plain http://; for TLS give it a \
                 connector (Client::with_connector, e.g. hyper-rustls)"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self::with_connector(url, options, connector)
    }

    /// A client whose connections come from `connector` (a tower service from the URI to
    /// a connection, as hyper's clients take): a Unix socket, TLS (hyper-rustls), a
    /// proxy tunnel. `url` still gives the path prefix and the `Host` header.
    pub fn with_connector<C>(url: &str, options: ClientOptions, connector: C) -> Result<Self, Error>
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        options.validate()?;
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::invalid(format!("bad URL {url}: {e}")))?;
        let Some(scheme @ ("http" | "https")) = uri.scheme_str() else {
            return Err(Error::invalid(format!(
                "bad URL {url}: the scheme must be http:// or https://"
            )));
        };
        let authority = uri
            .authority()
            .ok_or_else(|| Error::invalid(format!("bad URL {url}: no host")))?;
        let root = uri.path().trim_end_matches('/');
        let base = format!("{scheme}://{authority}{root}{}", options.prefix());
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(options.http2_prior_knowledge())
            .build::<_, FrameBody>(connector);
        Ok(Self {
            http: BoxCloneSyncService::new(http.map_err(BoxError::from)),
            headers: HeaderMap::new(),
            base,
            options: Arc::new(options),
            counters: Arc::default(),
            request_encoding: Arc::default(),
        })
    }

    /// Wraps the HTTP service in `layer` (a tower layer: it sees every request before it
    /// is sent and every response head before the client checks it). Layers added later
    /// wrap the earlier ones.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<HttpService>,
        L::Service: Service<Request<FrameBody>, Response = Response<Incoming>>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request<FrameBody>>>::Error: Into<BoxError>,
        <L::Service as Service<Request<FrameBody>>>::Future: Send + 'static,
    {
        self.http = BoxCloneSyncService::new(layer.layer(self.http).map_err(Into::into));
        self
    }

    /// Adds `name: value` to every request (`Authorization`, a tenant, a trace id).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Client-side counters of every exchange of [`Self::call`] and [`Self::call_many`]
    /// so far (shared by the clones of this client): bytes on the wire and decoded in
    /// both directions, calls, errors, and the last profile the server announced. A
    /// [`Session`] counts its own ([`Session::stats`]).
    pub fn stats(&self) -> hgframe_engine::ClientStats {
        self.counters.snapshot()
    }

    /// Calls one command (at `<prefix>/<its permission>/<name>`). Returns once the server
    /// has started answering; an HTTP error status (404, 406, ...) is an error here.
    pub async fn call(&self, call: Call) -> Result<ResponseStream, Error> {
        let path = format!("{}/{}", call.required_permission().as_str(), call.name());
        self.exchange(&path, Calls::One(call)).await?.one()
    }

    /// Calls several commands in one HTTP exchange (`multirequest` with `permission`).
    /// Returns once the server has started answering (an HTTP error status is an error
    /// here) with a [`Batch`]: one consumer receives the events of every call as they
    /// arrive, so no response ever waits for another whatever their sizes and order
    /// ([`Batch::collect`] gathers them in the order of `calls`).
    pub async fn call_many(
        &self,
        permission: Permission,
        calls: Vec<Call>,
    ) -> Result<Batch, Error> {
        let path = format!("{}/multirequest", permission.as_str());
        self.exchange(&path, Calls::Many(calls)).await?.many()
    }

    /// Opens a session: one `multirequest` exchange with `permission`, kept open over
    /// HTTP/2 (h2c, [`ClientOptions::set_http2_prior_knowledge`]), on which any number
    /// of tasks call concurrently through clones of the [`Session`]. Each direction has
    /// one compression context for the session's life. Returns once the server has
    /// started answering (an HTTP error status is an error here).
    ///
    /// HTTP/1.1 is refused: it is half duplex (the server answers once the request has
    /// ended), so an exchange kept open would never answer.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hgframe_http::Error> {
    /// use hgframe_http::{Call, Client, ClientOptions, Permission};
    /// let mut options = ClientOptions::default();
    /// options.set_http2_prior_knowledge(true);
    /// let client = Client::with_options("http://127.0.0.1:8000", options)?;
    /// let session = client.session(Permission::ReadOnly).await?;
    /// let answer = session.call(Call::new("echo").arg("a", "1")).await?.collect().await?;
    /// assert_eq!(&answer.data[..], b"a=1\n");
    /// # Ok(()) }
    /// ```
    pub async fn session(&self, permission: Permission) -> Result<Session, Error> {
        if !self.options.http2_prior_knowledge() {
            return Err(Error::invalid(
                "a session needs a full-duplex exchange: HTTP/1.1 is half duplex (the server \
                 answers only once the request has ended), so use HTTP/2 \
                 (ClientOptions::set_http2_prior_knowledge, `hgframe call --http2`), or \
                 Client::call_many for a batch over HTTP/1.1",
            ));
        }
        self.options.validate()?;
        let path = format!("{}/multirequest", permission.as_str());
        match self.exchange(&path, Calls::Session).await? {
            Answers::Session(queue, counters) => {
                Session::from_parts(queue, &self.options, counters)
            }
            _ => Err(Error::closed("no session")),
        }
    }

    /// The options of the next exchange: its requests encoded with the profile the
    /// server said it decodes, if it did.
    fn exchange_options(&self) -> std::borrow::Cow<'_, ClientOptions> {
        let learned = self
            .request_encoding
            .lock()
            .ok()
            .and_then(|chosen| chosen.clone());
        match learned {
            Some(profile) => {
                let mut options = ClientOptions::clone(&self.options);
                options.reactor_mut().set_encoding(&profile);
                std::borrow::Cow::Owned(options)
            }
            None => std::borrow::Cow::Borrowed(&*self.options),
        }
    }

    async fn exchange(&self, path: &str, calls: Calls) -> Result<Answers, Error> {
        let options = self.exchange_options();
        let options = options.as_ref();
        let (mut driver, queue, accepts) = options.new_driver(options.http2_prior_knowledge());
        if !matches!(calls, Calls::Session) {
            driver.share_counters(Arc::clone(&self.counters));
        }
        let (offered, accepted) = (driver.offered_extensions(), driver.accepted_extensions());
        let answers = match calls {
            Calls::One(call) => Answers::One(queue.call(call)?),
            Calls::Many(calls) => Answers::Many(queue.call_many(calls)),
            // The request stays open while the session's handles live.
            Calls::Session => Answers::Session(queue.clone(), driver.counters()),
        };
        // No more calls: the request ends once these are sent.
        drop(queue);
        let (body_tx, body_rx) = mpsc::channel(4);
        let mut request = Request::post(format!("{}/{path}", self.base))
            .header(header::ACCEPT, options.media_type())
            .header(header::CONTENT_TYPE, options.media_type())
            .header(ENCODINGS_HEADER, accepts);
        if !offered.is_empty() {
            request = request.header(EXTENSIONS_HEADER, offered.to_string());
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(FrameBody::frames(body_rx))
            .map_err(|e| Error::invalid(format!("cannot build the request: {e}")))?;
        let (head_tx, head_rx) = oneshot::channel();
        let url = request.uri().to_string();
        let response = self.http.clone().oneshot(request);
        let media_type = options.media_type().to_owned();
        let max_payload = options.max_frame_payload();
        // What the server decodes, for this client's later exchanges and this
        // exchange's own later commands (a session's first call comes after the head).
        let learn = (
            Arc::clone(&self.options),
            Arc::clone(&self.request_encoding),
        );
        let driver_encoding = driver.request_encoding();
        let head = async move {
            let checked = match response.await {
                Ok(response) => {
                    let (options, learned) = learn;
                    let decodes = response.headers().get(DECODES_HEADER);
                    if let Some(list) = decodes.and_then(|v| v.to_str().ok()) {
                        let chosen = options.request_encoding_for(list);
                        if let Some(profile) = &chosen {
                            driver_encoding.set(profile);
                        }
                        if let Ok(mut slot) = learned.lock() {
                            *slot = chosen;
                        }
                    }
                    // Before the driver reads a frame that may use them.
                    let header = response.headers().get(EXTENSIONS_HEADER);
                    if let Some(list) = header.and_then(|v| v.to_str().ok()) {
                        accepted.set(Extensions::parse(list));
                    }
                    check_response(response, &media_type).await
                }
                Err(e) => {
                    let message = format!("request to {url} failed: {}", error_chain(&*e));
                    Err(Error::new(ErrorKind::Http, message).with_source(e))
                }
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
            Ok(Ok(())) => Ok(answers),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::closed(
                "the exchange ended before the response started",
            )),
        }
    }
}

/// An error and its causes, `: `-separated: hyper's "client error (Connect)" alone
/// names neither the address nor what the system said.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The calls of one exchange.
enum Calls {
    One(Call),
    Many(Vec<Call>),
    Session,
}

/// Their answers.
enum Answers {
    One(ResponseStream),
    Many(Batch),
    Session(CallQueue, Arc<Counters>),
}

impl Answers {
    fn one(self) -> Result<ResponseStream, Error> {
        match self {
            Self::One(stream) => Ok(stream),
            Self::Many(_) | Self::Session(..) => Err(Error::closed("no response stream")),
        }
    }

    fn many(self) -> Result<Batch, Error> {
        match self {
            Self::Many(batch) => Ok(batch),
            Self::One(_) | Self::Session(..) => Err(Error::closed("no batch")),
        }
    }
}

/// Checks the response's status and media type; returns its body.
async fn check_response(response: Response<Incoming>, media_type: &str) -> Result<Incoming, Error> {
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
