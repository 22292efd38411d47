//! Connection management for [`super::serve_service`]: what happens to one accepted TCP
//! connection, from its first byte to its close.
//!
//! ```text
//! accept ─> detect: first byte within detect_timeout? ── no ──> close
//!              │ yes
//!              v
//!           hyper (HTTP/1.1 or h2c) ── requests counted in flight by `Tracked`,
//!              │                        until their response body ends or is dropped
//!              v
//!  no request in flight for connection_idle_timeout, evicted at the connection limit,
//!  or server shutdown ──> graceful close: HTTP/1 closes once idle, h2 sends GOAWAY
//!              │
//!              v          once nothing is in flight: new requests (h2 streams that crossed
//!           linger        the GOAWAY) get 503 unrun; dropped CLOSE_LINGER later, or, on
//!              │          shutdown or after a response in flight, once it has written
//!              │          nothing for CLOSE_LINGER. Closed idle by a timer or eviction,
//!              v          it gives its slot back at once and is dropped at CLOSE_LINGER
//!            closed
//! ```
//!
//! Every connection with nothing in flight is listed (oldest idle first) in [`Idle`], so
//! that the accept loop can close the longest-idle one when the server is full.

use hgframe_engine::PeerAddr;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tower::ServiceExt;

use super::BoxError;

/// How long a connection that is being closed, with nothing left in flight, is still
/// polled (to flush its last response, or to let an h2 peer answer the GOAWAY's PING)
/// before it is dropped; on shutdown, or after a response in flight at its close, this
/// restarts while it still writes.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Bytes a lingering connection must have written in its last [`CLOSE_LINGER`] to
/// linger on: more than the frames of its own close (an h2 GOAWAY and PING, 34 bytes).
const STILL_WRITING: u64 = 512;

/// The timers of one connection (from [`crate::ServerConfig`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timers {
    pub(crate) detect: Option<Duration>,
    pub(crate) idle: Option<Duration>,
}

/// The connections that have nothing in flight, oldest idle first, each with the signal
/// that closes it.
#[derive(Debug, Default)]
pub(crate) struct Idle {
    list: Mutex<BTreeMap<(Instant, u64), Arc<Notify>>>,
    /// Signalled whenever a connection joins the list.
    joined: Notify,
}

impl Idle {
    fn list(&self) -> MutexGuard<'_, BTreeMap<(Instant, u64), Arc<Notify>>> {
        // Nothing panics while holding the lock; a poisoned list is still consistent.
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks the connection idle the longest to close; false if none is idle.
    pub(crate) fn evict_oldest(&self) -> bool {
        let oldest = self.list().pop_first();
        match oldest {
            Some((_, close)) => {
                close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Completes when a connection becomes idle after this call (enable it before
    /// looking at the list, so that none is missed).
    pub(crate) fn joined(&self) -> Notified<'_> {
        self.joined.notified()
    }
}

/// One connection's place in [`Idle`]; leaves it when dropped.
struct IdleSlot {
    idle: Arc<Idle>,
    id: u64,
    close: Arc<Notify>,
    key: Option<(Instant, u64)>,
}

impl IdleSlot {
    fn new(idle: Arc<Idle>, id: u64) -> Self {
        Self {
            idle,
            id,
            close: Arc::new(Notify::new()),
            key: None,
        }
    }

    fn set_idle(&mut self) {
        if self.key.is_none() {
            let key = (Instant::now(), self.id);
            self.idle.list().insert(key, Arc::clone(&self.close));
            self.key = Some(key);
            self.idle.joined.notify_waiters();
        }
    }

    fn set_busy(&mut self) {
        if let Some(key) = self.key.take() {
            self.idle.list().remove(&key);
        }
    }

    /// Completes when the accept loop asks this connection to close.
    async fn evicted(&self) {
        self.close.notified().await;
    }
}

impl Drop for IdleSlot {
    fn drop(&mut self) {
        self.set_busy();
    }
}

/// Serves one accepted connection until it closes, is closed by a timer, by eviction or
/// by shutdown (`shutdown` turning true, or its sender dropped). `permit` is its slot
/// among the server's connections.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<S, B>(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    service: S,
    timers: Timers,
    idle: Arc<Idle>,
    id: u64,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut permit = Some(permit);
    let mut idle_deadline = timers.idle.map(|t| Instant::now() + t);
    let mut slot = IdleSlot::new(idle, id);
    slot.set_idle();

    // Protocol detection: hyper waits for the first bytes as long as they take, and its
    // HTTP/1 header timeout only starts once it knows the version, so a peer that sends
    // nothing is closed here.
    if let Some(detect) = timers.detect {
        let mut byte = [0u8; 1];
        tokio::select! {
            peeked = tokio::time::timeout(detect, stream.peek(&mut byte)) => match peeked {
                Ok(Ok(n)) if n > 0 => {}
                Ok(Ok(_)) => return,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "connection failed before its first byte");
                    return;
                }
                Err(_) => {
                    tracing::debug!("no first byte within the detection timeout; closed");
                    return;
                }
            },
            () = sleep_until(idle_deadline), if idle_deadline.is_some() => return,
            () = slot.evicted() => return,
            () = until_shutdown(&mut shutdown) => return,
        }
    }

    let (counter, mut in_flight) = watch::channel(Counts::default());
    let peer = stream.peer_addr().ok();
    let draining = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let stream = CountingIo {
        inner: stream,
        written: Arc::clone(&written),
    };
    let service = Tracked {
        inner: service,
        in_flight: Arc::new(counter),
        draining: Arc::clone(&draining),
        peer,
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);

    let mut busy = false;
    let mut started = 0u64;
    let mut closing = false;
    // When a closing connection with nothing in flight is dropped (if it has not ended
    // by itself by then).
    let mut linger = Linger::default();
    let mut counting = true;
    loop {
        let (close_reason, by_shutdown) = tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = in_flight.changed(), if counting => {
                if changed.is_err() {
                    // hyper dropped the service: the connection is ending.
                    counting = false;
                    continue;
                }
                let counts = *in_flight.borrow_and_update();
                // A request may have started and ended between two looks.
                let used = std::mem::replace(&mut started, counts.started) != counts.started;
                if counts.in_flight > 0 {
                    busy = true;
                    idle_deadline = None;
                    linger.until = None;
                    slot.set_busy();
                } else if busy || used {
                    busy = false;
                    idle_deadline = timers.idle.map(|t| Instant::now() + t);
                    if closing {
                        // Its last response may still be flushing: it keeps its slot.
                        linger.start(false, &written, &draining);
                    } else {
                        // Idle from now: the last to be evicted.
                        slot.set_busy();
                        slot.set_idle();
                    }
                }
                continue;
            }
            () = sleep_until(linger.until), if linger.until.is_some() && !busy => {
                let now_written = written.load(Ordering::Relaxed);
                if !linger.hard && now_written.wrapping_sub(linger.written) > STILL_WRITING {
                    // Still writing its last response: wait on.
                    linger.written = now_written;
                    linger.until = Some(Instant::now() + CLOSE_LINGER);
                    continue;
                }
                tracing::debug!("closing connection dropped after its linger");
                return;
            }
            () = sleep_until(idle_deadline), if !closing && !busy && idle_deadline.is_some() => {
                ("no request in flight for the connection idle timeout", false)
            }
            () = slot.evicted(), if !closing => {
                ("evicted: the server is at its connection limit", false)
            }
            () = until_shutdown(&mut shutdown), if !closing => ("server shutting down", true),
        };
        tracing::debug!(reason = close_reason, "closing connection");
        closing = true;
        slot.set_busy();
        // HTTP/1: closes now if idle, else after the response in progress. h2: GOAWAY,
        // then close once the streams in flight end (and the peer answered a PING).
        connection.as_mut().graceful_shutdown();
        if !busy {
            // Closed idle by a timer or eviction: its last response ended long ago (or
            // it is the longest idle of all), so it gives its slot back now and has
            // CLOSE_LINGER, not more. On shutdown it may still flush what it wrote.
            let hard = !by_shutdown;
            linger.start(hard, &written, &draining);
            if hard {
                drop(permit.take());
            }
        }
    }
}

/// The end of a closing connection that has nothing in flight: it refuses new requests
/// (h2 streams that crossed the GOAWAY get 503, unrun, so that they may be retried) and
/// is dropped at `until`, or later while it still writes (unless `hard`).
#[derive(Debug, Default)]
struct Linger {
    until: Option<Instant>,
    /// Bytes written when `until` was set.
    written: u64,
    hard: bool,
}

impl Linger {
    fn start(&mut self, hard: bool, written: &AtomicU64, draining: &AtomicBool) {
        self.until = Some(Instant::now() + CLOSE_LINGER);
        self.written = written.load(Ordering::Relaxed);
        self.hard = hard;
        draining.store(true, Ordering::Release);
    }
}

/// The TCP stream, counting the bytes written (to see a closing connection flush).
struct CountingIo {
    inner: TcpStream,
    written: Arc<AtomicU64>,
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Completes when the server shuts down (or is gone).
async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&down| down).await;
}

/// Sleeps until `deadline`; forever without one.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The service of one connection: counts its requests in flight, from the call until
/// the response body ends (or is dropped, or the service fails).
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    in_flight: Arc<watch::Sender<Counts>>,
    /// Set when the connection drains: new requests are refused.
    draining: Arc<AtomicBool>,
    /// The peer's address, given to every request as a [`PeerAddr`] extension.
    peer: Option<std::net::SocketAddr>,
}

/// The requests of one connection.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Started and not yet ended.
    in_flight: usize,
    /// Started since the connection opened.
    started: u64,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
{
    type Response = Response<GuardBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(PeerAddr(peer));
        }
        if self.draining.load(Ordering::Acquire) {
            // The request crossed the close (an h2 stream opened before the peer saw
            // the GOAWAY): refused unrun, so the client may safely retry it elsewhere.
            let mut refused = Response::new(GuardBody {
                inner: None,
                guard: None,
            });
            *refused.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            refused
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Box::pin(async move { Ok(refused) });
        }
        let guard = InFlight::new(Arc::clone(&self.in_flight));
        let service = self.inner.clone();
        Box::pin(async move {
            let response = service.oneshot(request).await?;
            Ok(response.map(|body| GuardBody {
                inner: Some(Box::pin(body)),
                guard: Some(guard),
            }))
        })
    }
}

/// One request in flight on its connection's counter.
struct InFlight(Arc<watch::Sender<Counts>>);

impl InFlight {
    fn new(counter: Arc<watch::Sender<Counts>>) -> Self {
        counter.send_modify(|c| {
            c.in_flight += 1;
            c.started = c.started.wrapping_add(1);
        });
        Self(counter)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .send_modify(|c| c.in_flight = c.in_flight.saturating_sub(1));
    }
}

/// A response body that holds its request's [`InFlight`] until it ends or is dropped
/// (without a body: the empty body of a refusal).
pub(crate) struct GuardBody<B> {
    inner: Option<Pin<Box<B>>>,
    guard: Option<InFlight>,
}

impl<B: Body> Body for GuardBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_frame(cx),
            None => Poll::Ready(None),
        };
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().map_or(true, |b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}
