//! Where the client driver puts the events of each response, and how much it may hold.
//!
//! Each consumer (a [`super::ResponseStream`], or a [`super::Batch`] for all its calls)
//! has one [`Queue`]. The driver never waits on a queue: it pushes, and decides from the
//! exchange's [`Budget`] whether to read the next frame of the server:
//!
//! - while every queue holds at most `soft` events, it reads;
//! - while some queue holds more (its consumer is slow, or not reading it at all), it
//!   stops reading (back-pressure: TCP or HTTP/2 flow control pushes back on the
//!   server), unless a consumer waits on an empty queue: then the data it waits for may
//!   be behind the data nobody reads, so the driver goes on reading;
//! - never while the queues hold `limit` bytes or more. If a consumer then waits, the
//!   queue holding the most bytes is evicted: its data is dropped and its consumer gets
//!   an error saying why. Reading never stops for good with a consumer waiting, and
//!   never holds more than `limit` bytes (plus one frame).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::driver::Item;
use crate::error::Error;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What all the queues of one exchange hold, and the driver's waker.
#[derive(Debug)]
pub(crate) struct Budget {
    /// Bytes held in all queues.
    held: AtomicUsize,
    /// Queues holding more than `soft` events.
    over: AtomicUsize,
    /// Consumers waiting on an empty queue.
    waiting: AtomicUsize,
    /// Consumers dropped so far.
    dropped: AtomicUsize,
    /// Bumped whenever the driver may have to look again.
    changes: AtomicU64,
    driver: Mutex<Option<Waker>>,
    soft: usize,
    limit: usize,
}

impl Budget {
    pub(crate) fn new(soft: usize, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            over: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            changes: AtomicU64::new(0),
            driver: Mutex::new(None),
            soft: soft.max(1),
            limit: limit.max(1),
        })
    }

    /// The most bytes held.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held in all queues.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Whether the driver may read the next frame.
    pub(crate) fn may_read(&self) -> bool {
        self.held() < self.limit && (self.over.load(Ordering::Acquire) == 0 || self.waiting() > 0)
    }

    /// Whether the driver must evict a queue: full, and a consumer waits.
    pub(crate) fn must_evict(&self) -> bool {
        self.held() >= self.limit && self.waiting() > 0
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Consumers dropped so far.
    pub(crate) fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Acquire)
    }

    /// A number that changes whenever the driver may have to look again.
    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Ready once [`Self::changes`] differs from `seen`.
    pub(crate) fn poll_changed(&self, seen: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.changes() != seen {
            return Poll::Ready(());
        }
        *lock(&self.driver) = Some(cx.waker().clone());
        if self.changes() != seen {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    fn notify(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        let waker = lock(&self.driver).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Releases `bytes`; tells the driver if that takes the total below the limit.
    fn release(&self, bytes: usize) -> bool {
        let before = self.held.fetch_sub(bytes, Ordering::AcqRel);
        before >= self.limit && before.saturating_sub(bytes) < self.limit
    }
}

/// The events of one consumer: each tagged with its call's index (0 for a single call)
/// and the bytes it holds.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    budget: Arc<Budget>,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<(usize, Item, usize)>,
    held: usize,
    over: bool,
    waiting: bool,
    consumer: Option<Waker>,
    /// Live [`Sink`]s.
    senders: usize,
    /// The consumer is gone.
    dropped: bool,
    /// Evicted by the driver: the error, until the consumer takes it.
    evicted: Option<Error>,
    was_evicted: bool,
}

/// What a consumer gets.
pub(crate) enum Popped {
    /// An event of call `.0`.
    Item(usize, Item),
    /// The queue was evicted: nothing more comes.
    Evicted(Error),
    /// Every sink is gone and every event was taken.
    Closed,
}

impl Queue {
    /// A queue and its consumer's end; sinks are made with [`Sink::new`].
    pub(crate) fn open(budget: &Arc<Budget>) -> Receiver {
        Receiver {
            queue: Arc::new(Self {
                state: Mutex::new(State::default()),
                budget: Arc::clone(budget),
            }),
        }
    }

    /// Bytes held.
    pub(crate) fn held(&self) -> usize {
        lock(&self.state).held
    }

    /// The consumer is gone, or the queue was evicted: events are discarded.
    pub(crate) fn is_closed(&self) -> bool {
        let state = lock(&self.state);
        state.dropped || state.was_evicted
    }

    /// Adds an event of call `index` (never waits; discarded if nobody will read it).
    pub(crate) fn push(&self, index: usize, item: Item) {
        let bytes = item.held_bytes();
        let waker = {
            let mut state = lock(&self.state);
            if state.dropped || state.was_evicted {
                return;
            }
            state.items.push_back((index, item, bytes));
            state.held += bytes;
            self.budget.held.fetch_add(bytes, Ordering::AcqRel);
            if !state.over && state.items.len() > self.budget.soft {
                state.over = true;
                self.budget.over.fetch_add(1, Ordering::AcqRel);
            }
            if state.waiting {
                state.waiting = false;
                self.budget.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            state.consumer.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Drops everything held and tells the consumer `error` instead.
    pub(crate) fn evict(&self, error: Error) {
        let (waker, notify) = {
            let mut state = lock(&self.state);
            if state.dropped || state.was_evicted {
                return;
            }
            state.items.clear();
            let held = std::mem::take(&mut state.held);
            let mut notify = self.budget.release(held);
            if std::mem::take(&mut state.over) {
                self.budget.over.fetch_sub(1, Ordering::AcqRel);
                notify = true;
            }
            if std::mem::take(&mut state.waiting) {
                self.budget.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            state.evicted = Some(error);
            state.was_evicted = true;
            (state.consumer.take(), notify)
        };
        if notify {
            self.budget.notify();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The driver's end of a queue, for one call.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) queue: Arc<Queue>,
    pub(crate) index: usize,
}

impl Sink {
    /// A sink of call `index` into `receiver`'s queue.
    pub(crate) fn new(receiver: &Receiver, index: usize) -> Self {
        lock(&receiver.queue.state).senders += 1;
        Self {
            queue: Arc::clone(&receiver.queue),
            index,
        }
    }

    /// Adds an event of this call.
    pub(crate) fn push(&self, item: Item) {
        self.queue.push(self.index, item);
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let waker = {
            let mut state = lock(&self.queue.state);
            state.senders = state.senders.saturating_sub(1);
            if state.senders == 0 {
                state.consumer.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The consumer's end of a queue.
#[derive(Debug)]
pub(crate) struct Receiver {
    queue: Arc<Queue>,
}

impl Receiver {
    /// The next event, the eviction, or the end. Cancel-safe.
    pub(crate) fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<Popped> {
        let budget = &self.queue.budget;
        let mut state = lock(&self.queue.state);
        if let Some((index, item, bytes)) = state.items.pop_front() {
            state.held -= bytes;
            let mut notify = budget.release(bytes);
            if state.over && state.items.len() <= budget.soft {
                state.over = false;
                budget.over.fetch_sub(1, Ordering::AcqRel);
                notify = true;
            }
            drop(state);
            if notify {
                budget.notify();
            }
            return Poll::Ready(Popped::Item(index, item));
        }
        if let Some(error) = state.evicted.take() {
            return Poll::Ready(Popped::Evicted(error));
        }
        if state.senders == 0 || state.was_evicted {
            return Poll::Ready(Popped::Closed);
        }
        state.consumer = Some(cx.waker().clone());
        if !state.waiting {
            state.waiting = true;
            budget.waiting.fetch_add(1, Ordering::AcqRel);
            drop(state);
            budget.notify();
        }
        Poll::Pending
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let budget = &self.queue.budget;
        {
            let mut state = lock(&self.queue.state);
            state.dropped = true;
            state.items.clear();
            let held = std::mem::take(&mut state.held);
            budget.release(held);
            if std::mem::take(&mut state.over) {
                budget.over.fetch_sub(1, Ordering::AcqRel);
            }
            if std::mem::take(&mut state.waiting) {
                budget.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            state.consumer = None;
        }
        budget.dropped.fetch_add(1, Ordering::AcqRel);
        budget.notify();
    }
}

#[cfg(test)]
mod tests {
    use std::task::Context;

    use bytes::Bytes;
    use futures_util::task::noop_waker;

    use super::*;

    fn data(n: usize) -> Item {
        Item::Data(Bytes::from(vec![0u8; n]), false)
    }

    #[test]
    fn the_budget_follows_every_push_pop_eviction_and_drop() {
        let budget = Budget::new(2, 100);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut a = Queue::open(&budget);
        let b = Queue::open(&budget);
        let sink_a = Sink::new(&a, 0);
        let sink_b = Sink::new(&b, 7);
        assert!(budget.may_read());

        // Over the soft bound (2 events): reading stops, unless somebody waits.
        for _ in 0..3 {
            sink_b.push(data(10));
        }
        assert_eq!(budget.held(), 30);
        assert!(!budget.may_read());
        assert!(a.poll_pop(&mut cx).is_pending());
        assert!(budget.may_read(), "a waits: its data may be behind b's");
        sink_a.push(data(5));
        assert!(!budget.may_read(), "a has data: it waits no more");
        assert!(matches!(
            a.poll_pop(&mut cx),
            Poll::Ready(Popped::Item(0, _))
        ));
        assert!(a.poll_pop(&mut cx).is_pending());

        // At the limit, with a waiting: evict. b's consumer then gets the error once.
        for _ in 0..7 {
            sink_b.push(data(10));
        }
        assert_eq!(budget.held(), 100);
        assert!(!budget.may_read());
        assert!(budget.must_evict());
        b.queue.evict(Error::closed("evicted"));
        assert_eq!(budget.held(), 0);
        assert!(budget.may_read());
        assert!(!budget.must_evict());
        sink_b.push(data(10));
        assert_eq!(budget.held(), 0, "an evicted queue takes nothing more");
        let mut b = b;
        assert!(matches!(
            b.poll_pop(&mut cx),
            Poll::Ready(Popped::Evicted(_))
        ));
        assert!(matches!(b.poll_pop(&mut cx), Poll::Ready(Popped::Closed)));

        // Dropping a consumer releases what it held and its wait.
        sink_a.push(data(40));
        sink_a.push(data(40));
        sink_a.push(data(40));
        assert_eq!(budget.held(), 120);
        let changes = budget.changes();
        drop(a);
        assert_eq!(budget.held(), 0);
        assert!(budget.may_read());
        assert_ne!(budget.changes(), changes);
        assert_eq!(budget.dropped(), 1);
        assert!(sink_a.queue.is_closed());
    }

    #[test]
    fn a_queue_closes_once_every_sink_is_gone_and_it_is_empty() {
        let budget = Budget::new(32, 1 << 20);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut rx = Queue::open(&budget);
        let one = Sink::new(&rx, 0);
        let two = Sink::new(&rx, 1);
        two.push(data(3));
        drop(two);
        assert!(matches!(
            rx.poll_pop(&mut cx),
            Poll::Ready(Popped::Item(1, _))
        ));
        assert!(rx.poll_pop(&mut cx).is_pending());
        drop(one);
        assert!(matches!(rx.poll_pop(&mut cx), Poll::Ready(Popped::Closed)));
    }
}
