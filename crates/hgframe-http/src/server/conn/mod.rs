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
//! Every open connection is listed in [`Connections`] (`registry.rs`), so that the accept
//! loop can close the one idle the longest when the server is full, and shutdown can
//! close them all. Its requests ([`tracked`]: the service and the response body that
//! count them) keep its activity up to date with a few atomics of its own (no
//! server-wide lock per request), and the loop that drives it (here) looks, at each
//! wake, at hyper's connection and one word of signals (eviction, shutdown, its
//! [`Alarm`], its last request's end): no lock, no timer.

mod alarm;
mod registry;
mod tracked;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use self::alarm::Alarm;
pub(crate) use self::registry::Connections;
use self::registry::{Entry, EVICTED, SHUTDOWN, TIMER, WENT_IDLE};
use self::tracked::Tracked;
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

/// Serves one accepted connection until it closes, is closed by a timer, by eviction or
/// by shutdown (both through `entry`'s [`Activity`](registry::Activity)). `permit` is its slot among the
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
