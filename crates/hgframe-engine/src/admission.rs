//! Server-wide resources that exchanges draw from: a memory budget in bytes, and a pool
//! for blocking work. Both are shared by every exchange and connection of a server.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Bytes a server holds for all its exchanges together (commands waiting to run, output
/// held for clients). Memory is charged before it is kept and given back when it is
/// released; a charge that does not fit fails at once, and [`MemoryBudget::released_since`]
/// says when to try again. Cheap to clone (shared).
///
/// ```
/// use hgframe_engine::MemoryBudget;
/// let budget = MemoryBudget::new(100);
/// let a = budget.try_charge(60).unwrap();
/// assert!(budget.try_charge(60).is_none());
/// drop(a);
/// assert_eq!(budget.charged(), 0);
/// assert!(budget.try_charge(60).is_some());
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    limit: usize,
    charged: AtomicUsize,
    /// How many times memory was given back: a waiter that read it before it found the
    /// budget spent knows whether it missed a release.
    releases: AtomicU64,
    released: Notify,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                limit,
                charged: AtomicUsize::new(0),
                releases: AtomicU64::new(0),
                released: Notify::new(),
            }),
        }
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes charged now.
    pub fn charged(&self) -> usize {
        self.inner.charged.load(Ordering::Acquire)
    }

    /// Charges `bytes` if they fit; the returned [`Charge`] gives them back when dropped.
    pub fn try_charge(&self, bytes: usize) -> Option<Charge> {
        let mut now = self.inner.charged.load(Ordering::Acquire);
        loop {
            let next = now.checked_add(bytes).filter(|n| *n <= self.inner.limit)?;
            match self.inner.charged.compare_exchange_weak(
                now,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Charge {
                        budget: self.clone(),
                        bytes,
                    })
                }
                Err(actual) => now = actual,
            }
        }
    }

    /// Where the budget's releases are: read it *before* finding the budget spent, and
    /// wait with [`Self::released_since`].
    pub fn epoch(&self) -> u64 {
        self.inner.releases.load(Ordering::Acquire)
    }

    /// Completes when memory has been given back since `epoch` (from [`Self::epoch`]),
    /// at once if it already was: a release between the check that found the budget
    /// spent and this wait is not missed (a waiter then tries again).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use hgframe_engine::MemoryBudget;
    /// let budget = MemoryBudget::new(100);
    /// let charge = budget.try_charge(100).unwrap();
    /// let epoch = budget.epoch();
    /// assert!(budget.try_charge(1).is_none());
    /// drop(charge); // given back before the wait starts
    /// budget.released_since(epoch).await;
    /// assert!(budget.try_charge(1).is_some());
    /// # }
    /// ```
    pub async fn released_since(&self, epoch: u64) {
        let notified = self.inner.released.notified();
        tokio::pin!(notified);
        // Registered before the epoch is read again: a release after this point wakes
        // it, one before it moved the epoch.
        notified.as_mut().enable();
        if self.epoch() != epoch {
            return;
        }
        notified.await;
    }

    fn release(&self, bytes: usize) {
        self.inner.charged.fetch_sub(bytes, Ordering::AcqRel);
        self.inner.releases.fetch_add(1, Ordering::AcqRel);
        self.inner.released.notify_waiters();
    }
}

/// Bytes charged to a [`MemoryBudget`], given back when dropped. Charges can grow and
/// shrink as what they stand for does.
#[derive(Debug)]
pub struct Charge {
    budget: MemoryBudget,
    bytes: usize,
}

impl Charge {
    /// An empty charge on `budget`, to grow.
    pub fn empty(budget: &MemoryBudget) -> Self {
        Self {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Charges `bytes` more, if they fit.
    pub fn try_grow(&mut self, bytes: usize) -> bool {
        match self.budget.try_charge(bytes) {
            Some(mut more) => {
                // The bytes move into this charge.
                self.bytes += std::mem::take(&mut more.bytes);
                true
            }
            None => false,
        }
    }

    /// Gives back `bytes` (at most what is held).
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        if bytes > 0 {
            self.bytes -= bytes;
            self.budget.release(bytes);
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.release(self.bytes);
        }
    }
}

/// A bounded pool for blocking work (file I/O, compression): `threads` threads of its
/// own, started as work arrives and kept while the pool lives; jobs beyond wait their
/// turn in a queue, without a thread. Unlike `spawn_blocking` (whose threads can
/// outnumber any permit scheme, since a thread becomes free for tokio only after the job
/// has returned), the number of threads is a hard bound. Cheap to clone (shared).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hgframe_engine::BlockingPool;
/// let pool = BlockingPool::new(2);
/// assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BlockingPool {
    handle: Arc<PoolHandle>,
}

/// The handles' share of a pool: when the last goes, the threads end (they hold only
/// the inner state).
#[derive(Debug)]
struct PoolHandle {
    inner: Arc<PoolInner>,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
struct PoolInner {
    threads: usize,
    state: std::sync::Mutex<PoolState>,
    ready: std::sync::Condvar,
    running: AtomicUsize,
}

struct PoolState {
    jobs: std::collections::VecDeque<Job>,
    started: usize,
    idle: usize,
    closed: bool,
}

impl std::fmt::Debug for PoolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolState")
            .field("jobs", &self.jobs.len())
            .field("started", &self.started)
            .field("idle", &self.idle)
            .finish()
    }
}

/// A blocking job that did not complete: it panicked, or the pool is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a blocking job of the server failed (it panicked, or the server is shutting down)")]
pub struct JobFailed;

impl BlockingPool {
    /// A pool of at most `threads` threads (at least 1).
    pub fn new(threads: usize) -> Self {
        let inner = Arc::new(PoolInner {
            threads: threads.max(1),
            state: std::sync::Mutex::new(PoolState {
                jobs: std::collections::VecDeque::new(),
                started: 0,
                idle: 0,
                closed: false,
            }),
            ready: std::sync::Condvar::new(),
            running: AtomicUsize::new(0),
        });
        Self {
            handle: Arc::new(PoolHandle { inner }),
        }
    }

    /// Its size.
    pub fn threads(&self) -> usize {
        self.handle.inner.threads
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.handle.inner.running.load(Ordering::Acquire)
    }

    /// Threads started so far (never more than [`Self::threads`]).
    pub fn started(&self) -> usize {
        self.handle.inner.state.lock().map_or(0, |s| s.started)
    }

    /// Runs `job` on one of the pool's threads when one is free.
    pub async fn run<T, F>(&self, job: F) -> Result<T, JobFailed>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.start(job).await
    }

    /// Queues `job` now (unlike [`Self::run`], which queues it when first polled) and
    /// returns its result to come. The job runs whether or not the result is awaited,
    /// so no task is needed to drive it: the exchange's pieces cost one hand-over to a
    /// pool thread and one wake-up back, not a tokio task's two more.
    pub(crate) fn start<T, F>(&self, job: F) -> PoolJob<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = Arc::clone(&self.handle.inner);
        let job: Job = Box::new(move || {
            inner.running.fetch_add(1, Ordering::AcqRel);
            // A panic fails this job only; the thread goes on.
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            inner.running.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(out);
        });
        PoolJob {
            rx: self.submit(job).ok().map(|()| rx),
        }
    }

    fn submit(&self, job: Job) -> Result<(), JobFailed> {
        let mut state = self.handle.inner.state.lock().map_err(|_| JobFailed)?;
        state.jobs.push_back(job);
        if state.idle == 0 && state.started < self.handle.inner.threads {
            state.started += 1;
            let inner = Arc::clone(&self.handle.inner);
            let spawned = std::thread::Builder::new()
                .name("hgframe-blocking".into())
                .spawn(move || worker(&inner));
            if spawned.is_err() {
                state.started -= 1;
                if state.started == 0 {
                    state.jobs.pop_back();
                    return Err(JobFailed);
                }
            }
        }
        drop(state);
        self.handle.inner.ready.notify_one();
        Ok(())
    }
}

/// The result of a job queued by [`BlockingPool::start`]: `Err(JobFailed)` if it could
/// not be queued or panicked.
pub(crate) struct PoolJob<T> {
    /// `None` when the job was never queued.
    rx: Option<tokio::sync::oneshot::Receiver<std::thread::Result<T>>>,
}

impl<T> std::future::Future for PoolJob<T> {
    type Output = Result<T, JobFailed>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let Some(rx) = self.rx.as_mut() else {
            return std::task::Poll::Ready(Err(JobFailed));
        };
        std::pin::Pin::new(rx).poll(cx).map(|out| match out {
            Ok(Ok(value)) => Ok(value),
            _ => Err(JobFailed),
        })
    }
}

/// A pool thread: runs jobs until the pool is dropped.
fn worker(inner: &PoolInner) {
    loop {
        let job = {
            let Ok(mut state) = inner.state.lock() else {
                return;
            };
            loop {
                if let Some(job) = state.jobs.pop_front() {
                    break job;
                }
                if state.closed {
                    return;
                }
                state.idle += 1;
                state = match inner.ready.wait(state) {
                    Ok(s) => s,
                    Err(_) => return,
                };
                state.idle -= 1;
            }
        };
        job();
    }
}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        if let Ok(mut state) = self.inner.state.lock() {
            state.closed = true;
        }
        self.inner.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_release_between_the_check_and_the_wait_is_not_missed() {
        // The exchange's order: the epoch, then the check that finds the budget spent,
        // then the wait. Another exchange gives memory back in between.
        let budget = MemoryBudget::new(10);
        let held = budget.try_charge(10).unwrap();
        let epoch = budget.epoch();
        assert!(budget.try_charge(1).is_none());
        drop(held);
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            budget.released_since(epoch),
        )
        .await;
        assert!(waited.is_ok(), "the wait missed the release");
        assert!(budget.try_charge(10).is_some());
        // With no release since, it waits for the next one.
        let epoch = budget.epoch();
        let pending = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            budget.released_since(epoch),
        )
        .await;
        assert!(pending.is_err());
    }

    #[test]
    fn charges_never_exceed_the_limit_and_come_back() {
        let budget = MemoryBudget::new(10);
        let mut c = Charge::empty(&budget);
        assert!(c.try_grow(6));
        assert!(!c.try_grow(5));
        assert!(c.try_grow(4));
        assert_eq!(budget.charged(), 10);
        c.shrink(7);
        assert_eq!(budget.charged(), 3);
        c.shrink(100);
        assert_eq!(budget.charged(), 0);
        assert!(c.try_grow(10));
        drop(c);
        assert_eq!(budget.charged(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_runs_at_most_its_size_at_once() {
        let pool = BlockingPool::new(2);
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let (pool, peak, now) = (pool.clone(), Arc::clone(&peak), Arc::clone(&now));
                tokio::spawn(async move {
                    pool.run(move || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(pool.running(), 0);
        assert_eq!(pool.started(), 2, "never more threads than its size");
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let pool = BlockingPool::new(1);
        assert_eq!(
            pool.run(|| -> u8 { panic!("on purpose") }).await,
            Err(JobFailed)
        );
        assert_eq!(pool.run(|| 5).await, Ok(5));
    }

    #[test]
    fn a_started_job_runs_without_being_polled() {
        // No runtime and no poll: `start` queues the job itself (the exchange's pieces
        // rely on it, having no task to drive them).
        let pool = BlockingPool::new(1);
        let (tx, rx) = std::sync::mpsc::channel();
        let job = pool.start(move || tx.send(7).is_ok());
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(60)), Ok(7));
        let done = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(job);
        assert_eq!(done, Ok(true));
        let panicking = pool.start(|| -> u8 { panic!("on purpose") });
        let failed = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(panicking);
        assert_eq!(failed, Err(JobFailed));
    }
}
