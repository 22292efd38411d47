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
    let opened = Instant::now();
    let mut slot = IdleSlot::new(idle, id);
    slot.set_idle();
    let evicted = Arc::clone(&slot.close);
    let activity = Arc::new(Activity::new(slot, opened));
    // Left when the connection ends, whoever still holds a request's guard.
    let _leave = Leave(Arc::clone(&activity));
    // When to look at the idle clock next: the connection's requests do not wake this
    // loop (it would cost every request two turns of it); it looks when the clock
    // could have run out, and sets it again if a request came meanwhile.
    let mut idle_check = timers.idle.map(|t| opened + t);

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
            () = sleep_until(idle_check), if idle_check.is_some() => return,
            () = evicted.notified() => return,
            () = until_shutdown(&mut shutdown) => return,
        }
    }

    let peer = stream.peer_addr().ok();
    let draining = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let stream = CountingIo {
        inner: stream,
        written: Arc::clone(&written),
    };
    let service = Tracked {
        inner: service,
        activity: Arc::clone(&activity),
        draining: Arc::clone(&draining),
        peer,
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);

    let mut closing = false;
    // When a closing connection with nothing in flight is dropped (if it has not ended
    // by itself by then).
    let mut linger = Linger::default();
    loop {
        let (close_reason, by_shutdown) = tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.went_idle.notified(), if closing && linger.until.is_none() => {
                if !activity.watch_busy() {
                    // Its last response may still be flushing: it keeps its slot.
                    linger.start(false, &written, &draining);
                }
                continue;
            }
            () = sleep_until(linger.until), if linger.until.is_some() => {
                if activity.watch_busy() {
                    // A request crossed the close: the linger starts again once it ends.
                    linger.until = None;
                    continue;
                }
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
            () = sleep_until(idle_check), if !closing && idle_check.is_some() => {
                let Some(timeout) = timers.idle else { continue };
                let now = Instant::now();
                // Busy: it cannot be idle for the whole timeout before `now + timeout`.
                let due = activity.idle_since().map_or(now + timeout, |since| since + timeout);
                if due > now {
                    idle_check = Some(due);
                    continue;
                }
                ("no request in flight for the connection idle timeout", false)
            }
            () = evicted.notified(), if !closing => {
                ("evicted: the server is at its connection limit", false)
            }
            () = until_shutdown(&mut shutdown), if !closing => ("server shutting down", true),
        };
        tracing::debug!(reason = close_reason, "closing connection");
        closing = true;
        // HTTP/1: closes now if idle, else after the response in progress. h2: GOAWAY,
        // then close once the streams in flight end (and the peer answered a PING).
        connection.as_mut().graceful_shutdown();
        if !activity.close() {
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

/// What a connection's requests tell its loop, without waking it for each: how many
/// are in flight, since when none is, and its place in [`Idle`], which the requests keep
/// up to date themselves.
struct Activity {
    state: Mutex<ActivityState>,
    /// Signalled when the last request in flight ends while the loop watches (it is
    /// closing and waits for that).
    went_idle: Notify,
}

struct ActivityState {
    /// Requests started and not yet ended.
    in_flight: usize,
    /// When the last request ended (or the connection opened).
    idle_since: Instant,
    slot: IdleSlot,
    /// Closing: it stays off the idle list.
    closing: bool,
    /// The loop waits for the requests in flight to end.
    watching: bool,
}

impl Activity {
    fn new(slot: IdleSlot, opened: Instant) -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: opened,
                slot,
                closing: false,
                watching: false,
            }),
            went_idle: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, ActivityState> {
        // Nothing panics while holding the lock; a poisoned state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request starts: the connection is busy, off the idle list.
    fn started(&self) {
        let mut state = self.state();
        state.in_flight += 1;
        if state.in_flight == 1 {
            state.slot.set_busy();
        }
    }

    /// A request ended: with none left, the connection is idle from now, the last to
    /// be evicted; a loop that waits for that is told.
    fn ended(&self) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight > 0 {
            return;
        }
        state.idle_since = Instant::now();
        if !state.closing {
            state.slot.set_idle();
        }
        if state.watching {
            state.watching = false;
            self.went_idle.notify_one();
        }
    }

    /// Since when nothing is in flight; `None` while a request is.
    fn idle_since(&self) -> Option<Instant> {
        let state = self.state();
        (state.in_flight == 0).then_some(state.idle_since)
    }

    /// Whether a request is in flight; if so, the loop is told when the last one ends.
    fn watch_busy(&self) -> bool {
        let mut state = self.state();
        state.watching = state.in_flight > 0;
        state.watching
    }

    /// The connection closes: off the idle list for good. Returns whether a request is
    /// in flight (the loop is then told when the last one ends).
    fn close(&self) -> bool {
        let mut state = self.state();
        state.closing = true;
        state.slot.set_busy();
        state.watching = state.in_flight > 0;
        state.watching
    }
}

/// Takes the connection off the idle list when its loop ends, whatever requests' guards
/// (and so the [`Activity`]) outlive it.
struct Leave(Arc<Activity>);

impl Drop for Leave {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.closing = true;
        state.slot.set_busy();
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
    activity: Arc<Activity>,
    /// Set when the connection drains: new requests are refused.
    draining: Arc<AtomicBool>,
    /// The peer's address, given to every request as a [`PeerAddr`] extension.
    peer: Option<std::net::SocketAddr>,
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
        let guard = InFlight::new(Arc::clone(&self.activity));
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
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> Self {
        activity.started();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.ended();
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
