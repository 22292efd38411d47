//! Who is open and what each connection is doing: the server's list of connections
//! ([`Connections`]), and each one's [`Activity`], which its requests, its loop and the
//! accept loop share without a lock.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Instant;

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
    pub(super) activity: Arc<Activity>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.activity.signals.fetch_or(CLOSING, Ordering::SeqCst);
        self.connections.open().remove(&self.id);
    }
}

/// [`Activity::signals`]: the accept loop evicts the connection (the server is full).
pub(super) const EVICTED: u32 = 1;
/// The server shuts down.
pub(super) const SHUTDOWN: u32 = 1 << 1;
/// The loop waits for the requests in flight to end ([`Activity::watch_busy`]).
pub(super) const WATCHING: u32 = 1 << 2;
/// The last request in flight ended while [`WATCHING`].
pub(super) const WENT_IDLE: u32 = 1 << 3;
/// The connection is closing or closed: never evicted, and its going idle does not
/// concern the accept loop.
pub(super) const CLOSING: u32 = 1 << 4;
/// The loop's [`Alarm`](super::alarm::Alarm) may have run out.
pub(super) const TIMER: u32 = 1 << 5;

/// What a connection's requests tell its loop and the accept loop, without a lock and
/// without waking either for each: how many are in flight, since when none is, and the
/// signals that close it.
///
/// Orderings: the count and the flags that watch it are `SeqCst`, as each side writes
/// its own before it reads the other's (the loop sets [`WATCHING`], then reads the
/// count; the last request lowers the count, then reads [`WATCHING`]): at least one sees
/// the other, so the loop is never left waiting for an end it missed. The same holds
/// for the accept loop's `waiting` flag against [`Connections::evict_oldest`].
pub(super) struct Activity {
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
    pub(super) fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// A request ended: with none left, the connection is idle from now, the last to
    /// be evicted; a loop or an accept loop that waits for that is told.
    pub(super) fn ended(&self) {
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
    pub(super) fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| self.idle.base + Duration::from_nanos(self.idle_since.load(Ordering::Relaxed)))
    }

    /// For eviction: since when it is idle (on the idle clock), if it is and is not
    /// closing or asked to close already.
    pub(super) fn evictable_since(&self) -> Option<u64> {
        let asked = self.signals.load(Ordering::SeqCst) & (EVICTED | SHUTDOWN | CLOSING);
        (asked == 0 && self.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| self.idle_since.load(Ordering::Relaxed))
    }

    /// Whether a request is in flight; if so, the loop is signalled [`WENT_IDLE`] when
    /// the last one ends.
    pub(super) fn watch_busy(&self) -> bool {
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
    pub(super) fn close(&self) -> bool {
        self.signals.fetch_or(CLOSING, Ordering::SeqCst);
        self.watch_busy()
    }

    /// The signals raised now.
    #[cfg(test)]
    pub(super) fn signals(&self) -> u32 {
        self.signals.load(Ordering::SeqCst)
    }

    /// Lowers `bits`, once the loop has taken them.
    pub(super) fn lower(&self, bits: u32) {
        self.signals.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Raises `bits` and wakes the loop.
    pub(super) fn signal(&self, bits: u32) {
        self.signals.fetch_or(bits, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Completes with the signals raised among `bits`. Polled at every wake of the
    /// loop: one waker registration and a load, no lock.
    pub(super) fn signalled(&self, bits: u32) -> impl Future<Output = u32> + '_ {
        std::future::poll_fn(move |cx| {
            self.waker.register(cx.waker());
            match self.signals.load(Ordering::SeqCst) & bits {
                0 => Poll::Pending,
                raised => Poll::Ready(raised),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::{waker, ArcWake};
    use futures_util::FutureExt;
    use std::task::Context;

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
