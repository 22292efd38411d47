//! The HTTP server: a [`tower::Service`] ([`HgFrameService`]) that can be mounted behind
//! any middleware, and [`serve`], which runs it on a TCP listener with the production
//! basics (HTTP/1.1 and h2c, connection limit and timers, graceful shutdown; see
//! `conn/` for the life of one connection).

mod conn;
mod reflect;
pub(crate) mod route;

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use hgframe_engine::{
    Caller, ConfigError, Duplex, Error, FrameInput, Registry, Scope, Server, Transport,
};
use hgframe_reactor::{DataMode, ServerReactor};
use hgframe_stream::parse_accept_list;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::io::StreamReader;
use tracing::Instrument;

use self::route::{route, text_response, Route, Target};
use crate::body::FrameBody;
use crate::config::{ServerConfig, DECODES_HEADER, ENCODINGS_HEADER, EXTENSIONS_HEADER};
use hgframe_wire::extension::Extensions;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The hgframe HTTP endpoint as a [`tower::Service`]: one request runs one exchange.
///
/// It answers every path (unknown ones with 404), so mount it under the prefix, or as a
/// fallback, when other routes share the server. Cloning is cheap (shared state).
///
/// ```
/// use hgframe_http::{HgFrameService, Registry, ServerConfig};
/// let service = HgFrameService::new(Registry::new(), ServerConfig::default()).unwrap();
/// // e.g. axum: Router::new().route_service("/api/exp-http-v2-0001/{*rest}", service)
/// # let _ = service;
/// ```
///
/// Each exchange runs on a task of its own (it needs a tokio runtime); a half-duplex one
/// first runs inside the request's service future, until its response starts; the response
/// body is the queue it fills.
#[derive(Clone, Debug)]
pub struct HgFrameService {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: ServerConfig,
    server: Server,
    /// Reactor settings for `debugreflect`: deferred output, buffered data (it reports
    /// what the seed's reactor would).
    reflect: Arc<hgframe_reactor::ServerConfig>,
    /// The profiles the server decodes, as the value of [`DECODES_HEADER`].
    decodes: HeaderValue,
    /// The media type, as a header value, and the name of [`DECODES_HEADER`]: made
    /// once, not parsed again for every response.
    media_type: HeaderValue,
    decodes_name: HeaderName,
    /// The names of the request headers looked at, made once: a name given as a
    /// string is parsed again at every lookup.
    encodings_name: HeaderName,
    extensions_name: HeaderName,
}

impl HgFrameService {
    /// The service for these commands and settings, which are checked first
    /// ([`ServerConfig::validate`]).
    pub fn new(registry: Registry, config: ServerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let server = Server::new(registry, config.engine().clone())?;
        let mut reflect = config.engine().reactor().clone();
        reflect
            .set_defer_output(true)
            .set_data_mode(DataMode::Buffered)
            .set_peer_accepts(&[hgframe_reactor::IDENTITY]);
        let names: Vec<&str> = server.config().profiles().names().collect();
        let decodes = HeaderValue::from_str(&names.join(", ")).map_err(|_| {
            ConfigError::new("profiles", "a profile name is not a valid header value")
        })?;
        let media_type = HeaderValue::from_str(config.media_type()).map_err(|_| {
            ConfigError::new("media_type", "the media type is not a valid header value")
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                server,
                reflect: Arc::new(reflect),
                decodes,
                media_type,
                decodes_name: HeaderName::from_static(DECODES_HEADER),
                encodings_name: HeaderName::from_static(ENCODINGS_HEADER),
                extensions_name: HeaderName::from_static(EXTENSIONS_HEADER),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The commands.
    pub fn registry(&self) -> &Registry {
        self.shared.server.registry()
    }

    /// The exchange engine's server: the same commands and shared resources (handler
    /// slots, memory budget, blocking pool) for the byte-stream transport
    /// ([`hgframe_engine::bytestream::serve_tcp`]).
    pub fn server(&self) -> &Server {
        &self.shared.server
    }

    /// Answers one HTTP request.
    async fn handle<B>(self, request: Request<B>) -> Response<FrameBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let config = self.config();
        let server = &self.shared.server;
        let routed = route(
            &parts.method,
            parts.uri.path(),
            &parts.headers,
            config,
            self.registry(),
        );
        let (permission, target) = match routed {
            Err(reject) => {
                tracing::debug!(path = parts.uri.path(), status = %reject.status(), "request refused");
                return reject.into_response();
            }
            Ok(Route::Index) => {
                let message = format!(
                    "hgframe: POST {}/<ro|rw>/<command> with Accept and Content-Type: {}",
                    config.prefix(),
                    config.media_type()
                );
                return text_response(Response::builder().status(StatusCode::OK), message);
            }
            Ok(Route::Reflect) => {
                let report = reflect::reflect(
                    server.frames(body_reader(body)),
                    ServerReactor::new(Arc::clone(&self.shared.reflect)),
                    config.reflect_limit(),
                )
                .await;
                return text_response(Response::builder().status(StatusCode::OK), report);
            }
            Ok(Route::Exchange { permission, target }) => (permission, target),
        };

        let http2 = parts.version == Version::HTTP_2;
        let full_duplex = match config.duplex() {
            Duplex::Auto => http2,
            Duplex::Half => false,
            Duplex::Full => true,
        };
        let accepts: Vec<String> = parts
            .headers
            .get_all(&self.shared.encodings_name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_accept_list)
            .collect();
        let mut reactor = server.new_reactor(full_duplex, &accepts);
        // Extensions only for a client that offered them: it alone gets the answer header.
        let offered: Option<Extensions> = parts
            .headers
            .get_all(&self.shared.extensions_name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(Extensions::parse)
            .reduce(|a, b| a.union(b));
        let accepted = offered.map(|offered| reactor.set_peer_extensions(offered));
        let only = match target {
            Target::Single(name) => Some(name),
            Target::Multi => None,
        };
        // Borrowed (no copy) unless the name is not UTF-8; a span's fields are only
        // formatted when it is enabled.
        let command = only
            .as_deref()
            .map_or(Cow::Borrowed("multirequest"), String::from_utf8_lossy);
        let span = tracing::info_span!(
            "hgframe.exchange",
            command = %command,
            permission = permission.as_str(),
            version = ?parts.version,
            encoding = reactor.output_encoding(),
        );
        let transport = if http2 {
            Transport::Http2
        } else {
            Transport::Http1
        };
        let scope = Scope::Request {
            permission,
            command: only,
        };
        let input = request_frames(server, body).await;
        let caller = Caller::new(transport)
            .with_headers(parts.headers)
            .with_extensions(parts.extensions);
        let body = if full_duplex {
            FrameBody::running(server.start(reactor, scope, caller, input, span))
        } else {
            let (run, output) = server.prepare(reactor, scope, caller, input, span);
            FrameBody::half_duplex(run, output).await
        };
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, self.shared.media_type.clone())
            .header(&self.shared.decodes_name, self.shared.decodes.clone());
        if let Some(accepted) = accepted {
            response = response.header(EXTENSIONS_HEADER, accepted.to_string());
        }
        response.body(body).unwrap_or_else(|_| {
            // validate() checked the media type; kept for safety.
            let mut r = Response::new(FrameBody::from(Bytes::from_static(
                b"the configured media type is not a valid header value\n",
            )));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }
}

/// A request body up to this size (by its `Content-Length`) that has already arrived
/// whole is decoded at once ([`Server::frames_of_whole`]) rather than read through a
/// frame reader; the frame reader's own buffer is this size, so nothing more is held.
const WHOLE_BODY: u64 = 8 * 1024;

/// The frames of a request body. A short one that is already there (hyper hands an
/// HTTP/1.1 body that came with its headers before the service first looks) is decoded
/// in place, which spares a small request the reader, its buffer and its adapters
/// (`benches/examples/echo_ab.rs`); any other is read as the decoder asks, so that
/// reading stops when the exchange stops asking (back-pressure).
async fn request_frames<B>(server: &Server, body: B) -> FrameInput
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let length = http_body::Body::size_hint(&body).exact();
    if !length.is_some_and(|n| n <= WHOLE_BODY) {
        return server.frames_of_length(body_reader(body), length);
    }
    let mut body = Box::pin(body);
    // One look, without waiting: what is there now, if anything.
    let first = std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await;
    let first = match first {
        Poll::Pending => return server.frames_of_length(body_reader(body), length),
        Poll::Ready(None) => return server.frames_of_whole(&[]),
        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
            Ok(mut data) => Ok(data.copy_to_bytes(data.remaining())),
            // Trailers: a data reader skips them.
            Err(_) => Ok(Bytes::new()),
        },
        Poll::Ready(Some(Err(e))) => Err(std::io::Error::other(e.into())),
    };
    match first {
        Ok(data) if body.is_end_stream() => server.frames_of_whole(&data),
        first => {
            let rest = futures_util::stream::iter([first]).chain(data_stream(body));
            server.frames_of_length(StreamReader::new(rest), length)
        }
    }
}

/// The request body as a byte reader, read only as the frame decoder asks.
fn body_reader<B>(body: B) -> impl tokio::io::AsyncRead + Send + 'static
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    StreamReader::new(data_stream(body))
}

/// The request body's data, its errors as I/O errors.
fn data_stream<B>(body: B) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    body.into_data_stream()
        .map_ok(|mut data| data.copy_to_bytes(data.remaining()))
        .map_err(|e| std::io::Error::other(e.into()))
}

impl<B> tower::Service<Request<B>> for HgFrameService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<FrameBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

/// hyper's connection settings for `config`: HTTP/1.1 or h2c (detected), with its timers.
pub(crate) fn connection_builder(
    config: &ServerConfig,
) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.http2_keep_alive_interval())
        .keep_alive_timeout(config.http2_keep_alive_timeout());
    builder
}

/// Serves `service` over HTTP/1.1 and h2c on `listener` until `shutdown` completes, then
/// shuts down gracefully and returns.
///
/// Connections are managed so that peers that hold a connection without using it cannot
/// lock clients out (every timer is a [`ServerConfig`] setting; `None` disables it):
///
/// - at most [`hgframe_engine::EngineConfig::max_connections`] connections are served at
///   once; when the server is full, a new connection closes the one idle the longest
///   ([`ServerConfig::evict_idle_at_limit`]);
/// - a connection that sends no byte within [`ServerConfig::detect_timeout`] is closed
///   (hyper itself would wait forever to learn the HTTP version);
/// - HTTP/1 clients get [`ServerConfig::header_read_timeout`] to send each request's
///   headers; h2 peers are pinged every [`ServerConfig::http2_keep_alive_interval`] and
///   closed if they do not answer within [`ServerConfig::http2_keep_alive_timeout`];
/// - a connection with no request in flight (from the request's start until its response
///   body ends) for [`ServerConfig::connection_idle_timeout`] is closed, HTTP/1
///   keep-alive and h2 alike.
///
/// A connection is closed gracefully (HTTP/1: no more keep-alive; h2: GOAWAY). Once it
/// has nothing in flight, it answers 503 to any request that still arrives (an h2
/// stream that crossed the GOAWAY; it did not run, so it may be retried) and is dropped
/// after a one-second linger, which restarts while it still writes the tail of a
/// response (on shutdown, or after a response in flight at the close). Closed idle by a
/// timer or by eviction, it gives its slot back at once.
///
/// On shutdown it stops accepting, closes idle connections at once (within that
/// second), closes busy ones once their last response is out, and drops the connections
/// still busy after [`hgframe_engine::EngineConfig::shutdown_grace`].
///
/// ```no_run
/// # async fn run() -> Result<(), hgframe_http::Error> {
/// use hgframe_http::{serve, HgFrameService, Registry, ServerConfig};
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await.unwrap();
/// let service = HgFrameService::new(Registry::new(), ServerConfig::default()).unwrap();
/// serve(listener, service, async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
pub async fn serve<F>(
    listener: TcpListener,
    service: HgFrameService,
    shutdown: F,
) -> Result<(), Error>
where
    F: Future<Output = ()> + Send,
{
    let config = service.config().clone();
    serve_service(listener, service, &config, shutdown).await
}

/// [`serve`] for any tower service: [`HgFrameService`] behind middleware (auth,
/// timeouts, tracing), or a router that mounts it beside other routes. The connection
/// settings (limit, timers, grace period) come from `config`, as [`serve`] describes;
/// it fails at once if they do not pass [`ServerConfig::validate`].
pub async fn serve_service<S, B, F>(
    listener: TcpListener,
    service: S,
    config: &ServerConfig,
    shutdown: F,
) -> Result<(), Error>
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()> + Send,
{
    config
        .validate()
        .map_err(|e| Error::invalid(e.to_string()))?;
    let builder = Arc::new(connection_builder(config));
    let timers = conn::Timers {
        detect: config.detect_timeout(),
        idle: config.connection_idle_timeout(),
    };
    let evict = config.evict_idle_at_limit();
    let limit = Arc::new(Semaphore::new(config.engine().max_connections()));
    let open = Arc::new(conn::Connections::new());
    // Owned here, so that connections still busy after the grace period can be dropped.
    let mut connections = tokio::task::JoinSet::new();
    let mut next_id: u64 = 0;
    let mut permit: Option<OwnedSemaphorePermit> = None;
    tokio::pin!(shutdown);
    'accept: loop {
        if permit.is_none() && !evict {
            // Without eviction, the listen backlog holds the connections that wait.
            permit = tokio::select! {
                p = Arc::clone(&limit).acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => break 'accept,
                },
                () = &mut shutdown => break 'accept,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue 'accept,
            };
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, a connection reset before accept...: not fatal.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue 'accept;
                }
            },
            () = &mut shutdown => break 'accept,
            // Collect connections that ended, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue 'accept,
        };
        let permit = match permit.take() {
            Some(p) => p,
            None => {
                // Full: close the connection idle the longest and wait for its slot (or
                // for another to become idle, if none is; or to evict again, should the
                // evicted one have become busy meanwhile).
                let mut evicted: Option<Instant> = None;
                let waiting = open.waiting();
                loop {
                    if let Ok(p) = Arc::clone(&limit).try_acquire_owned() {
                        break p;
                    }
                    let joined = waiting.joined();
                    tokio::pin!(joined);
                    joined.as_mut().enable();
                    let pending = evicted.map(|at| at + 2 * conn::CLOSE_LINGER);
                    if pending.map_or(true, |until| Instant::now() >= until) {
                        evicted = None;
                        if open.evict_oldest() {
                            tracing::debug!("at the connection limit: closing the longest idle");
                            evicted = Some(Instant::now());
                        }
                    }
                    let retry = evicted.map(|at| at + 2 * conn::CLOSE_LINGER);
                    tokio::select! {
                        p = Arc::clone(&limit).acquire_owned() => match p {
                            Ok(p) => break p,
                            Err(_) => break 'accept,
                        },
                        () = joined => {}
                        () = conn::sleep_until(retry), if retry.is_some() => {}
                        () = &mut shutdown => break 'accept,
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        next_id = next_id.wrapping_add(1);
        let run = conn::run(
            stream,
            permit,
            Arc::clone(&builder),
            service.clone(),
            timers,
            open.register(next_id),
        );
        connections.spawn(run.instrument(tracing::debug_span!("hgframe.connection", %peer)));
    }
    drop(listener);
    tracing::debug!("shutting down: closing idle connections, waiting for responses in flight");
    open.shut_down();
    let drain = async { while connections.join_next().await.is_some() {} };
    match config.engine().shutdown_grace() {
        Some(grace) => {
            if tokio::time::timeout(grace, drain).await.is_err() {
                tracing::warn!("responses still in flight after the grace period; dropped");
            }
        }
        None => drain.await,
    }
    connections.shutdown().await;
    Ok(())
}
