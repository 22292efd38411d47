//! Server-wide resources that exchanges draw from: a memory budget in bytes, and a pool
//! for blocking work. Both are shared by every exchange and connection of a server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};

/// Bytes a server holds for all its exchanges together (commands waiting to run, output
/// held for clients). Memory is charged before it is kept and given back when it is
/// released; a charge that does not fit fails at once, and [`MemoryBudget::released`]
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
    released: Notify,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                limit,
                charged: AtomicUsize::new(0),
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

    /// Completes when some memory is given back (a waiter then tries again).
    pub async fn released(&self) {
        self.inner.released.notified().await;
    }

    fn release(&self, bytes: usize) {
        self.inner.charged.fetch_sub(bytes, Ordering::AcqRel);
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

/// A bounded pool for blocking work (file I/O, compression): at most `threads` jobs run
/// at once, on tokio's blocking threads; the others wait their turn without a thread.
/// Cheap to clone (shared).
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
    permits: Arc<Semaphore>,
    threads: usize,
}

/// A blocking job that did not complete: it panicked, or the runtime is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a blocking job of the server failed (it panicked, or the server is shutting down)")]
pub struct JobFailed;

impl BlockingPool {
    /// A pool of `threads` (at least 1).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        Self {
            permits: Arc::new(Semaphore::new(threads)),
            threads,
        }
    }

    /// Its size.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.threads - self.permits.available_permits()
    }

    /// Runs `job` on a blocking thread once one of the pool's slots is free.
    pub async fn run<T, F>(&self, job: F) -> Result<T, JobFailed>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| JobFailed)?;
        tokio::task::spawn_blocking(move || {
            let out = job();
            drop(permit);
            out
        })
        .await
        .map_err(|_| JobFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
