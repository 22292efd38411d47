//! Report queues left by exchanges that have ended, for the next ones to reuse.
//!
//! A tokio channel costs an exchange two allocations (the channel, aligned, and a first
//! block of slots) and about 1.5 k instructions to make and drop, as much as a small
//! `echo`'s handler. A queue is given back only when nothing of its exchange is left
//! in it or can reach it: no report queued, and no sender but the exchange's own (a
//! handler that kept its [`crate::Responder`] past the exchange keeps the queue out of
//! the pool for good). A reused queue therefore starts empty, as a new one would, and
//! no report of one exchange can ever reach the next.

use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::command::Report;

/// Queues kept at most: a few kilobytes each (a block of slots), enough for the
/// exchanges that end at about the same time on a busy server.
const MAX_SPARES: usize = 64;

/// A report queue: the exchange's own sender, and the receiving end.
pub(crate) type ReportQueue = (mpsc::Sender<Report>, mpsc::Receiver<Report>);

/// A server's spare report queues, all of the same capacity.
#[derive(Debug)]
pub(crate) struct Spares {
    queues: Mutex<Vec<ReportQueue>>,
    capacity: usize,
}

impl Spares {
    /// No queue yet; new ones hold `capacity` reports.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queues: Mutex::new(Vec::new()),
            capacity,
        }
    }

    /// A queue for a new exchange: a spare one, or a new one.
    pub(crate) fn take(&self) -> ReportQueue {
        let spare = self.queues.lock().ok().and_then(|mut q| q.pop());
        spare.unwrap_or_else(|| mpsc::channel(self.capacity))
    }

    /// Gives back the queue of an exchange that has ended: `own`, its sender (which it
    /// uses no more, and drops with itself), and `rx`. Kept if nothing else can reach
    /// it and the pool is not full; the reports still in it, which nobody will read,
    /// are dropped first.
    pub(crate) fn give_back(&self, own: &mpsc::Sender<Report>, mut rx: mpsc::Receiver<Report>) {
        let alone = own.strong_count() == 1 && own.weak_count() == 0;
        if !alone || rx.is_closed() || own.max_capacity() != self.capacity {
            return;
        }
        // No other sender: what is queued is all there will be.
        while rx.try_recv().is_ok() {}
        if let Ok(mut queues) = self.queues.lock() {
            if queues.len() < MAX_SPARES {
                queues.push((own.clone(), rx));
            }
        }
    }

    /// Queues kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queues.lock().map_or(0, |q| q.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Report;
    use bytes::Bytes;
    use hgframe_wire::RequestId;

    fn data(gen: u64) -> Report {
        Report::Data {
            request: RequestId(1),
            gen,
            data: Bytes::from_static(b"x"),
            eos: true,
        }
    }

    #[test]
    fn a_queue_given_back_alone_is_taken_again_empty() {
        let spares = Spares::new(4);
        let (tx, rx) = spares.take();
        tx.try_send(data(1)).unwrap();
        spares.give_back(&tx, rx);
        drop(tx);
        assert_eq!(spares.len(), 1);
        let (tx, rx) = spares.take();
        assert_eq!(spares.len(), 0, "the spare was taken, not a new one made");
        assert!(rx.is_empty(), "the report left in it was dropped");
        assert_eq!(tx.strong_count(), 1);
        assert_eq!(tx.max_capacity(), 4);
    }

    #[test]
    fn a_queue_another_sender_can_reach_is_never_reused() {
        let spares = Spares::new(4);
        let (tx, rx) = spares.take();
        let leaked = tx.clone();
        spares.give_back(&tx, rx);
        assert_eq!(spares.len(), 0);
        let (tx, rx) = spares.take();
        assert!(!leaked.same_channel(&tx));
        // The kept sender may still send; it reaches no live queue.
        assert!(leaked.try_send(data(1)).is_err());
        spares.give_back(&tx, rx);
        assert_eq!(spares.len(), 1);
    }

    #[test]
    fn the_pool_keeps_at_most_its_bound() {
        let spares = Spares::new(2);
        let queues: Vec<ReportQueue> = (0..MAX_SPARES + 3).map(|_| spares.take()).collect();
        for (tx, rx) in queues {
            spares.give_back(&tx, rx);
        }
        assert_eq!(spares.len(), MAX_SPARES);
    }
}
