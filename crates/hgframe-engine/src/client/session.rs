//! Sessions: one long-lived channel (a byte-stream connection, or one full-duplex
//! HTTP/2 exchange kept open) shared by any number of tasks.
//!
//! A [`Session`] is a cheap, cloneable handle. The channel is run by one task, the
//! client driver, which owns the client reactor; callers hand it calls over a channel
//! ([`super::CallQueue`]) and get their own [`ResponseStream`] back. Calls are
//! multiplexed by request id on the one exchange, so each direction keeps a single
//! compression context for the session's life.
//!
//! At most [`ClientOptions::set_max_pending_calls`] calls are pending at once (issued or
//! waiting for the window); [`Session::call`] waits for room beyond that, which is the
//! back-pressure on the callers. A call's place is given back when its response ends or
//! its stream is dropped (which cancels the request when the server accepted `cancel`).
//! Per-call time limits are [`Call::deadline`].
//!
//! A session never reconnects by itself and never replays a call: when the channel ends
//! (the server closed it, the network failed), every call in flight fails with an error
//! saying so, later calls fail at once ([`Session::is_closed`]), and the caller opens a
//! new session and decides what to call again.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::counters::{ClientStats, Counters};
use super::{Call, CallQueue, ClientOptions, ResponseStream};
use crate::error::Error;

/// A cloneable handle on one long-lived channel, on which many tasks call concurrently.
///
/// Made by [`crate::bytestream::Connection::session`] or, over HTTP/2, by
/// `hgframe_http::Client::session`.
///
/// ```no_run
/// # async fn run() -> Result<(), hgframe_engine::Error> {
/// use hgframe_engine::{bytestream::Connection, Call, ClientOptions};
/// let conn = Connection::connect_tcp("127.0.0.1:9000", ClientOptions::default()).await?;
/// let session = conn.session()?;
/// let mut tasks = Vec::new();
/// for i in 0..64 {
///     let session = session.clone();
///     tasks.push(tokio::spawn(async move {
///         let call = Call::new("echo").arg("i", i.to_string());
///         session.call(call).await?.collect().await
///     }));
/// }
/// for task in tasks {
///     let answer = task.await.expect("task")?;
///     assert!(answer.data.starts_with(b"i="));
/// }
/// println!("{:?}", session.stats());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    calls: CallQueue,
    room: Arc<Semaphore>,
    max_pending: usize,
    counters: Arc<Counters>,
    /// The byte-stream connection (its tasks and child process) the session lives on.
    connection: Option<crate::bytestream::Connection>,
}

impl Session {
    /// A session over a driver already running (the HTTP client's h2 exchange, a
    /// byte-stream connection's).
    #[doc(hidden)]
    pub fn from_parts(
        calls: CallQueue,
        options: &ClientOptions,
        counters: Arc<Counters>,
    ) -> Result<Self, Error> {
        Self::build(calls, options.max_pending_calls(), counters, None)
    }

    pub(crate) fn build(
        calls: CallQueue,
        max_pending: usize,
        counters: Arc<Counters>,
        connection: Option<crate::bytestream::Connection>,
    ) -> Result<Self, Error> {
        if max_pending == 0 {
            return Err(Error::invalid(
                "max_pending_calls must be at least 1 (ClientOptions::set_max_pending_calls)",
            ));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                calls,
                room: Arc::new(Semaphore::new(max_pending)),
                max_pending,
                counters,
                connection,
            }),
        })
    }

    /// Calls one command on the session's channel. Waits while
    /// [`ClientOptions::set_max_pending_calls`] calls are pending; then returns the
    /// response stream at once (the answer streams in as it arrives). Fails if the
    /// channel has ended: open a new session (nothing is replayed).
    pub async fn call(&self, call: Call) -> Result<ResponseStream, Error> {
        let permit = Arc::clone(&self.shared.room)
            .acquire_owned()
            .await
            .map_err(|_| ended())?;
        if self.shared.calls.is_closed() {
            return Err(ended());
        }
        let mut stream = self.shared.calls.call(call).map_err(|_| ended())?;
        stream.hold(permit);
        Ok(stream)
    }

    /// Whether the channel has ended: every later call fails, and a new session is
    /// needed.
    pub fn is_closed(&self) -> bool {
        self.shared.calls.is_closed()
    }

    /// Calls pending now (issued or queued, response not ended).
    pub fn pending_calls(&self) -> usize {
        self.shared
            .max_pending
            .saturating_sub(self.shared.room.available_permits())
    }

    /// The content encoding of the server's responses: the answer to a byte stream's
    /// `hello`, or over HTTP the profile its stream announced (`identity` until then).
    pub fn encoding(&self) -> String {
        self.shared.counters.snapshot().profile
    }

    /// The session's client-side counters so far.
    pub fn stats(&self) -> ClientStats {
        self.shared.counters.snapshot()
    }

    /// Drops this handle; if it is the last one, says there will be no more calls and
    /// waits for every response to end and the channel to close.
    pub async fn close(self) {
        if let Ok(shared) = Arc::try_unwrap(self.shared) {
            let Shared {
                calls, connection, ..
            } = shared;
            drop(calls);
            if let Some(connection) = connection {
                connection.close().await;
            }
        }
    }
}

fn ended() -> Error {
    Error::closed(
        "the session's channel has ended: its calls in flight failed and none is replayed; \
         open a new session",
    )
}
