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
//! Every open connection is listed in [`Connections`], so that the accept loop can close
//! the one idle the longest when the server is full, and shutdown can close them all.
//! Its requests keep its [`Activity`] up to date with a few atomics of its own (no
//! server-wide lock per request), and the loop that drives it looks, at each wake, at
//! hyper's connection and one word of signals (eviction, shutdown, its timer, its last
//! request's end; see [`Activity::signalled`]): no lock, no timer.

use hgframe_engine::PeerAddr;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::{Instant, Sleep};
use tower::util::Oneshot;
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

/// The server's open connections, by id: one entry made at accept and removed at close,
/// none per request. Eviction, rare (only at the connection limit), looks at them all.
pub(crate) struct Connections {
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    idle: Arc<IdleWatch>,
}

/// What the accept loop, full, waits for: a connection becoming idle.
struct IdleWatch {
    /// The origin of the idle clocks ([`Activity::idle_since`]).
    base: Instant,
    /// The accept loop waits on `joined`: only then does a request that leaves its
    /// connection idle signal it (a `Notify` is a mutex; an atomic load is not).
    waiting: AtomicBool,
    joined: Notify,
}

impl IdleWatch {
    /// Now, on the idle clock.
    fn now(&self) -> u64 {
        let since = Instant::now().saturating_duration_since(self.base);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Connections {
    pub(crate) fn new() -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            idle: Arc::new(IdleWatch {
                base: Instant::now(),
                waiting: AtomicBool::new(false),
                joined: Notify::new(),
            }),
        }
    }

    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lists a connection just accepted, idle from now, until the entry is dropped.
    pub(crate) fn register(self: &Arc<Self>, id: u64) -> Entry {
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.idle.now()),
            signals: AtomicU32::new(0),
            waker: AtomicWaker::new(),
            idle: Arc::clone(&self.idle),
        });
        self.open().insert(id, Arc::clone(&activity));
        Entry {
            connections: Arc::clone(self),
            id,
            activity,
        }
    }

    /// Asks the connection idle the longest (of those not closing already) to close;
    /// false if none is idle.
    pub(crate) fn evict_oldest(&self) -> bool {
        let open = self.open();
        let oldest = open
            .iter()
            .filter_map(|(&id, activity)| activity.evictable_since().map(|since| (since, id)))
            .min();
        match oldest.and_then(|(_, id)| open.get(&id)) {
            Some(activity) => {
                activity.signal(EVICTED);
                true
            }
            None => false,
        }
    }

    /// Tells every connection that the server shuts down. The accept loop, which alone
    /// registers connections, has stopped: none is missed.
    pub(crate) fn shut_down(&self) {
        for activity in self.open().values() {
            activity.signal(SHUTDOWN);
        }
    }

    /// The accept loop waits for connections to become idle while the result lives
    /// (see [`Waiting::joined`]).
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.idle.waiting.store(true, Ordering::SeqCst);
        Waiting(&self.idle)
    }
}

/// The accept loop waits for a connection to become idle; it stops when dropped.
pub(crate) struct Waiting<'a>(&'a IdleWatch);

impl Waiting<'_> {
    /// Completes when a connection becomes idle after this call (make it before looking
    /// at the connections, so that none is missed).
    pub(crate) fn joined(&self) -> Notified<'_> {
        self.0.joined.notified()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.store(false, Ordering::SeqCst);
    }
}

/// A connection's place in [`Connections`]; leaves it when dropped, whatever requests'
/// guards (and so the [`Activity`]) outlive the connection.
pub(crate) struct Entry {
    connections: Arc<Connections>,
    id: u64,
    activity: Arc<Activity>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.activity.signals.fetch_or(CLOSING, Ordering::SeqCst);
        self.connections.open().remove(&self.id);
    }
}

/// Serves one accepted connection until it closes, is closed by a timer, by eviction or
/// by shutdown (both through `entry`'s [`Activity`]). `permit` is its slot among the
/// server's connections.
pub(crate) async fn run<S, B>(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    service: S,
    timers: Timers,
    entry: Entry,
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
    let activity = Arc::clone(&entry.activity);
    // Left when the connection ends.
    let _leave = entry;
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
            _ = activity.signalled(EVICTED | SHUTDOWN) => return,
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
    let mut alarm = Alarm::new(&activity);
    loop {
        // Open, it waits for what closes it, and for the idle clock's next look;
        // closing, for its requests in flight to end, then for the linger's end.
        let deadline = if closing { linger.until } else { idle_check };
        alarm.set(deadline);
        let mut watched = match (closing, linger.until) {
            (false, _) => EVICTED | SHUTDOWN,
            (true, None) => WENT_IDLE,
            (true, Some(_)) => 0,
        };
        if deadline.is_some() {
            watched |= TIMER;
        }
        let signals = tokio::select! {
            // In order, hyper's connection first: no random draw at every wake; the
            // signals are one load, and complete only on the rare events that close it.
            biased;
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            signals = activity.signalled(watched) => signals,
        };
        let (close_reason, by_shutdown) = if signals & SHUTDOWN != 0 {
            ("server shutting down", true)
        } else if signals & EVICTED != 0 {
            ("evicted: the server is at its connection limit", false)
        } else if signals & WENT_IDLE != 0 {
            activity.lower(WENT_IDLE);
            if !activity.watch_busy() {
                // Its last response may still be flushing: it keeps its slot.
                linger.start(false, &written, &draining);
            }
            continue;
        } else {
            activity.lower(TIMER);
            if !alarm.ran_out() {
                // Woken for a deadline since moved.
                continue;
            }
            if closing {
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
            let Some(timeout) = timers.idle else { continue };
            let now = Instant::now();
            // Busy: it cannot be idle for the whole timeout before `now + timeout`.
            let due = activity
                .idle_since()
                .map_or(now + timeout, |since| since + timeout);
            if due > now {
                idle_check = Some(due);
                continue;
            }
            (
                "no request in flight for the connection idle timeout",
                false,
            )
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

/// [`Activity::signals`]: the accept loop evicts the connection (the server is full).
const EVICTED: u32 = 1;
/// The server shuts down.
const SHUTDOWN: u32 = 1 << 1;
/// The loop waits for the requests in flight to end ([`Activity::watch_busy`]).
const WATCHING: u32 = 1 << 2;
/// The last request in flight ended while [`WATCHING`].
const WENT_IDLE: u32 = 1 << 3;
/// The connection is closing or closed: never evicted, and its going idle does not
/// concern the accept loop.
const CLOSING: u32 = 1 << 4;
/// The loop's [`Alarm`] may have run out.
const TIMER: u32 = 1 << 5;

/// The loop's one timer (the idle clock's next look, or the linger's end), polled with
/// a waker that raises [`TIMER`]: the loop polls it when it may have run out, not at
/// every wake for hyper's connection.
struct Alarm {
    sleep: Pin<Box<Sleep>>,
    deadline: Option<Instant>,
    /// The connection's [`Activity`] (see its `Wake`).
    waker: Waker,
}

impl Alarm {
    fn new(activity: &Arc<Activity>) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            deadline: None,
            waker: Waker::from(Arc::clone(activity)),
        }
    }

    /// Runs out at `deadline` (never with `None`; a wake for the previous one is then
    /// ignored by [`Alarm::ran_out`]).
    fn set(&mut self, deadline: Option<Instant>) {
        if deadline == self.deadline {
            return;
        }
        self.deadline = deadline;
        if let Some(deadline) = deadline {
            self.sleep.as_mut().reset(deadline);
            // Registers the waker; already past, it raises the signal itself.
            if self.poll() {
                self.waker.wake_by_ref();
            }
        }
    }

    /// Whether the deadline has come.
    fn ran_out(&mut self) -> bool {
        self.deadline.is_some() && self.poll()
    }

    fn poll(&mut self) -> bool {
        let mut cx = Context::from_waker(&self.waker);
        // Out of tokio's budget, a `Sleep` would answer `Pending` and wake this waker
        // at once, without looking: the loop would spin on the signal.
        let sleep = tokio::task::unconstrained(self.sleep.as_mut());
        std::pin::pin!(sleep).poll(&mut cx).is_ready()
    }
}

/// What a connection's requests tell its loop and the accept loop, without a lock and
/// without waking either for each: how many are in flight, since when none is, and the
/// signals that close it.
///
/// Orderings: the count and the flags that watch it are `SeqCst`, as each side writes
/// its own before it reads the other's (the loop sets [`WATCHING`], then reads the
/// count; the last request lowers the count, then reads [`WATCHING`]): at least one sees
/// the other, so the loop is never left waiting for an end it missed. The same holds
/// for the accept loop's `waiting` flag against [`Connections::evict_oldest`].
struct Activity {
    /// Requests started and not yet ended.
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection opened), in nanoseconds of the
    /// idle clock ([`IdleWatch::now`]); meaningful while none is in flight.
    idle_since: AtomicU64,
    /// [`EVICTED`], [`SHUTDOWN`], [`WATCHING`], [`WENT_IDLE`], [`CLOSING`], [`TIMER`].
    signals: AtomicU32,
    /// The loop's task, woken by a signal.
    waker: AtomicWaker,
    idle: Arc<IdleWatch>,
}

impl Activity {
    /// A request starts: the connection is busy (eviction passes it by).
    fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// A request ended: with none left, the connection is idle from now, the last to
    /// be evicted; a loop or an accept loop that waits for that is told.
    fn ended(&self) {
        // Written before the count drops (its release), so that whoever sees none in
        // flight sees when the last ended.
        self.idle_since.store(self.idle.now(), Ordering::Relaxed);
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let signals = self.signals.load(Ordering::SeqCst);
        if signals & WATCHING != 0
            && self.signals.fetch_and(!WATCHING, Ordering::SeqCst) & WATCHING != 0
        {
            self.signal(WENT_IDLE);
        }
        if signals & CLOSING == 0 && self.idle.waiting.load(Ordering::SeqCst) {
            self.idle.joined.notify_waiters();
        }
    }

    /// Since when nothing is in flight; `None` while a request is.
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| self.idle.base + Duration::from_nanos(self.idle_since.load(Ordering::Relaxed)))
    }

    /// For eviction: since when it is idle (on the idle clock), if it is and is not
    /// closing or asked to close already.
    fn evictable_since(&self) -> Option<u64> {
        let asked = self.signals.load(Ordering::SeqCst) & (EVICTED | SHUTDOWN | CLOSING);
        (asked == 0 && self.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| self.idle_since.load(Ordering::Relaxed))
    }

    /// Whether a request is in flight; if so, the loop is signalled [`WENT_IDLE`] when
    /// the last one ends.
    fn watch_busy(&self) -> bool {
        self.signals.fetch_or(WATCHING, Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return true;
        }
        // None ended while watched, or the last one did and signalled (the loop takes
        // a signal it did not need as a wake to look again).
        self.signals.fetch_and(!WATCHING, Ordering::SeqCst);
        false
    }

    /// The connection closes: it is no longer evicted. Returns whether a request is in
    /// flight (the loop is then signalled when the last one ends).
    fn close(&self) -> bool {
        self.signals.fetch_or(CLOSING, Ordering::SeqCst);
        self.watch_busy()
    }

    /// Lowers `bits`, once the loop has taken them.
    fn lower(&self, bits: u32) {
        self.signals.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Raises `bits` and wakes the loop.
    fn signal(&self, bits: u32) {
        self.signals.fetch_or(bits, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Completes with the signals raised among `bits`. Polled at every wake of the
    /// loop: one waker registration and a load, no lock.
    fn signalled(&self, bits: u32) -> impl Future<Output = u32> + '_ {
        std::future::poll_fn(move |cx| {
            self.waker.register(cx.waker());
            match self.signals.load(Ordering::SeqCst) & bits {
                0 => Poll::Pending,
                raised => Poll::Ready(raised),
            }
        })
    }
}

/// The waker of the loop's [`Alarm`]: it raises [`TIMER`].
impl Wake for Activity {
    fn wake(self: Arc<Self>) {
        self.signal(TIMER);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.signal(TIMER);
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
    type Future = TrackedFuture<S, B>;

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
            return TrackedFuture::Refused {
                response: Some(refused),
            };
        }
        let guard = InFlight::new(Arc::clone(&self.activity));
        TrackedFuture::Running {
            call: self.inner.clone().oneshot(request),
            guard: Some(guard),
        }
    }
}

pin_project! {
    /// The response of [`Tracked`]: refused at once, or the service's, its body given
    /// the request's [`InFlight`] (a named future: no allocation per request).
    #[project = TrackedProj]
    pub(crate) enum TrackedFuture<S, B>
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>>,
    {
        Refused { response: Option<Response<GuardBody<B>>> },
        Running {
            #[pin]
            call: Oneshot<S, Request<Incoming>>,
            guard: Option<InFlight>,
        },
    }
}

impl<S, B> Future for TrackedFuture<S, B>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>>,
{
    type Output = Result<Response<GuardBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            // `None` only if polled again after it completed, which hyper does not do.
            TrackedProj::Refused { response } => response
                .take()
                .map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
            TrackedProj::Running { call, guard } => {
                let called = ready!(call.poll(cx));
                // Failed, the request ends here (with its guard).
                let guard = guard.take();
                Poll::Ready(called.map(|response| {
                    response.map(|body| GuardBody {
                        inner: Some(body),
                        guard,
                    })
                }))
            }
        }
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

pin_project! {
    /// A response body that holds its request's [`InFlight`] until it ends or is dropped
    /// (without a body: the empty body of a refusal).
    pub(crate) struct GuardBody<B> {
        #[pin]
        inner: Option<B>,
        guard: Option<InFlight>,
    }
}

impl<B: Body> Body for GuardBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = match this.inner.as_pin_mut() {
            Some(inner) => inner.poll_frame(cx),
            None => Poll::Ready(None),
        };
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            *this.guard = None;
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::{waker, ArcWake};
    use futures_util::FutureExt;

    /// Lets the clock move, so that each step has an idle clock of its own.
    fn tick() {
        std::thread::sleep(Duration::from_millis(2));
    }

    fn signals(entry: &Entry) -> u32 {
        entry.activity.signals.load(Ordering::SeqCst)
    }

    #[test]
    fn eviction_picks_the_longest_idle_and_spares_busy_ones() {
        let connections = Arc::new(Connections::new());
        let first = connections.register(1);
        tick();
        let second = connections.register(2);
        tick();
        let third = connections.register(3);
        tick();
        // Used, then idle: now idle for less time than `second` and `third`.
        first.activity.started();
        first.activity.ended();
        tick();
        third.activity.started();

        assert!(connections.evict_oldest());
        assert_eq!(signals(&second), EVICTED);
        assert_eq!(signals(&first), 0);
        // `second` was asked already; `third` is busy.
        assert!(connections.evict_oldest());
        assert_eq!(signals(&first), EVICTED);
        assert!(!connections.evict_oldest(), "a busy connection is spared");
        assert_eq!(signals(&third), 0);
        third.activity.ended();
        assert!(connections.evict_oldest());
        assert_eq!(signals(&third), EVICTED);
    }

    #[test]
    fn a_closed_connection_leaves_the_registry() {
        let connections = Arc::new(Connections::new());
        let entry = connections.register(1);
        let activity = Arc::clone(&entry.activity);
        drop(entry);
        assert!(connections.open().is_empty());
        assert!(!connections.evict_oldest());
        // A request that outlived its connection ends quietly.
        activity.started();
        activity.ended();
        assert_eq!(activity.signals.load(Ordering::SeqCst), CLOSING);
    }

    #[test]
    fn shutdown_signals_every_open_connection() {
        let connections = Arc::new(Connections::new());
        let idle = connections.register(1);
        let busy = connections.register(2);
        busy.activity.started();
        connections.shut_down();
        assert_eq!(signals(&idle), SHUTDOWN);
        assert_eq!(signals(&busy), SHUTDOWN);
    }

    #[test]
    fn a_waiting_accept_loop_is_woken_when_a_busy_connection_goes_idle() {
        let connections = Arc::new(Connections::new());
        let entry = connections.register(1);
        entry.activity.started();
        let waiting = connections.waiting();
        let joined = waiting.joined();
        tokio::pin!(joined);
        joined.as_mut().enable();
        assert!(!connections.evict_oldest(), "nothing idle to evict");
        assert!(joined.as_mut().now_or_never().is_none());
        entry.activity.ended();
        assert!(joined.now_or_never().is_some(), "not woken");
    }

    #[test]
    fn a_connection_going_idle_wakes_no_one_when_the_accept_loop_does_not_wait() {
        let connections = Arc::new(Connections::new());
        let entry = connections.register(1);
        drop(connections.waiting());
        // Watched from outside: the requests do not touch the `Notify` at all.
        let joined = connections.idle.joined.notified();
        tokio::pin!(joined);
        joined.as_mut().enable();
        entry.activity.started();
        entry.activity.ended();
        assert!(joined.now_or_never().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_alarm_signals_the_loop_when_it_runs_out() {
        let connections = Arc::new(Connections::new());
        let entry = connections.register(1);
        let mut alarm = Alarm::new(&entry.activity);
        alarm.set(Some(Instant::now() + Duration::from_secs(1)));
        assert!(!alarm.ran_out());
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(signals(&entry), 0, "raised early");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(signals(&entry), TIMER);
        assert!(alarm.ran_out());
        entry.activity.lower(TIMER);
        // Moved: a wake for the old deadline is not taken for the new one.
        alarm.set(Some(Instant::now() + Duration::from_secs(1)));
        assert!(!alarm.ran_out());
        alarm.set(None);
        assert!(!alarm.ran_out());
        // Already past: raised at once.
        alarm.set(Some(Instant::now()));
        assert_eq!(signals(&entry), TIMER);
        assert!(alarm.ran_out());
    }

    #[tokio::test(start_paused = true)]
    async fn the_alarm_is_looked_at_even_when_the_task_is_out_of_budget() {
        let connections = Arc::new(Connections::new());
        let entry = connections.register(1);
        let mut alarm = Alarm::new(&entry.activity);
        alarm.set(Some(Instant::now() + Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let ran_out = std::future::poll_fn(|cx| {
            // Spends the task's budget, as a busy connection may have.
            while std::pin::pin!(tokio::task::consume_budget())
                .poll(cx)
                .is_ready()
            {}
            Poll::Ready(alarm.ran_out())
        })
        .await;
        // Else the loop, signalled, would find it pending and wait for a signal raised
        // at once again: a spin.
        assert!(ran_out);
    }

    struct Woken(AtomicBool);

    impl ArcWake for Woken {
        fn wake_by_ref(woken: &Arc<Self>) {
            woken.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_closing_loop_is_signalled_when_its_last_request_ends() {
        let connections = Arc::new(Connections::new());
        let entry = connections.register(1);
        let activity = &entry.activity;
        activity.started();
        activity.started();
        assert!(activity.close(), "busy at its close");
        let woken = Arc::new(Woken(AtomicBool::new(false)));
        let waker = waker(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        let signalled = activity.signalled(WENT_IDLE);
        tokio::pin!(signalled);
        assert!(signalled.as_mut().poll(&mut cx).is_pending());
        activity.ended();
        assert!(
            !woken.0.load(Ordering::SeqCst),
            "woken with a request in flight"
        );
        activity.ended();
        assert!(woken.0.load(Ordering::SeqCst), "not woken");
        assert_eq!(signalled.poll(&mut cx), Poll::Ready(WENT_IDLE));
        // Closing, it is no candidate for eviction even idle.
        assert!(!connections.evict_oldest());
    }

    #[test]
    fn a_signal_wakes_the_loop() {
        let connections = Arc::new(Connections::new());
        let entry = connections.register(1);
        let woken = Arc::new(Woken(AtomicBool::new(false)));
        let waker = waker(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        let signalled = entry.activity.signalled(EVICTED | SHUTDOWN);
        tokio::pin!(signalled);
        assert!(signalled.as_mut().poll(&mut cx).is_pending());
        assert!(connections.evict_oldest());
        assert!(woken.0.load(Ordering::SeqCst));
        assert_eq!(signalled.poll(&mut cx), Poll::Ready(EVICTED));
    }
}
