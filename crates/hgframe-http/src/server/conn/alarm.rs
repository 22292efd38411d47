//! The one timer of a connection's loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use tokio::time::{Instant, Sleep};

use super::registry::{Activity, TIMER};

/// The loop's one timer (the idle clock's next look, or the linger's end), polled with
/// a waker that raises [`TIMER`]: the loop polls it when it may have run out, not at
/// every wake for hyper's connection.
pub(super) struct Alarm {
    sleep: Pin<Box<Sleep>>,
    deadline: Option<Instant>,
    /// The connection's [`Activity`] (see its `Wake`).
    waker: Waker,
}

impl Alarm {
    pub(super) fn new(activity: &Arc<Activity>) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            deadline: None,
            waker: Waker::from(Arc::clone(activity)),
        }
    }

    /// Runs out at `deadline` (never with `None`; a wake for the previous one is then
    /// ignored by [`Alarm::ran_out`]).
    pub(super) fn set(&mut self, deadline: Option<Instant>) {
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
    pub(super) fn ran_out(&mut self) -> bool {
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

/// The waker of the loop's [`Alarm`]: it raises [`TIMER`].
impl Wake for Activity {
    fn wake(self: Arc<Self>) {
        self.signal(TIMER);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.signal(TIMER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::conn::registry::{Connections, Entry};
    use std::task::Poll;
    use std::time::Duration;

    fn signals(entry: &Entry) -> u32 {
        entry.activity.signals()
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
}
