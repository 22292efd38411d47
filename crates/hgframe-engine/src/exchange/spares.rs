//! What exchanges that have ended leave for the next ones to reuse: their report queue
//! and their maps.
//!
//! A tokio channel costs an exchange two allocations (the channel, aligned, and a first
//! block of slots) and about 1.5 k instructions to make and drop, as much as a small
//! `echo`'s handler; each map costs an allocation at its first insert. A queue is given
//! back only when nothing of its exchange is left in it or can reach it: no report
//! queued, and no sender but the exchange's own (a handler that kept its
//! [`crate::Responder`] past the exchange keeps the queue out of the pool for good). A
//! reused queue therefore starts empty, as a new one would, and no report of one
//! exchange can ever reach the next. The maps are emptied, and dropped instead when they
//! grew large.

use std::sync::Mutex;

use hgframe_wire::RequestId;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::mpsc;

use super::handlers::HandlerMaps;
use crate::command::Report;

/// Exchanges' leftovers kept at most: a few kilobytes each (a block of report slots,
/// small maps), enough for the exchanges that end at about the same time on a busy
/// server.
const MAX_SPARES: usize = 64;

/// Entries a map kept for the next exchange may have room for: small exchanges need a
/// few; a map grown larger is let go with its exchange.
const MAX_KEPT_ENTRIES: usize = 8;

/// An exchange's report queue (its own sender, and the receiving end) and its maps.
pub(crate) struct Spare {
    pub(crate) tx: mpsc::Sender<Report>,
    pub(crate) rx: mpsc::Receiver<Report>,
    pub(crate) maps: Maps,
}

/// The maps of an exchange that can be reused (see [`super::Exchange`]).
#[derive(Default)]
pub(crate) struct Maps {
    pub(crate) open: FxHashSet<RequestId>,
    pub(crate) current: FxHashMap<RequestId, u64>,
    pub(crate) handlers: HandlerMaps,
}

impl Maps {
    /// Emptied, without the maps that grew large.
    fn emptied(mut self) -> Self {
        self.open.clear();
        self.current.clear();
        if self.open.capacity() > MAX_KEPT_ENTRIES {
            self.open = FxHashSet::default();
        }
        if self.current.capacity() > MAX_KEPT_ENTRIES {
            self.current = FxHashMap::default();
        }
        self.handlers = self.handlers.emptied(MAX_KEPT_ENTRIES);
        self
    }
}

/// A server's spares, with report queues all of the same capacity.
pub(crate) struct Spares {
    spares: Mutex<Vec<Spare>>,
    capacity: usize,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spares")
            .field("kept", &self.spares.lock().map_or(0, |s| s.len()))
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Spares {
    /// None yet; new report queues hold `capacity` reports.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            spares: Mutex::new(Vec::new()),
            capacity,
        }
    }

    /// For a new exchange: what one before it left, or new ones.
    pub(crate) fn take(&self) -> Spare {
        let spare = self.spares.lock().ok().and_then(|mut s| s.pop());
        spare.unwrap_or_else(|| {
            let (tx, rx) = mpsc::channel(self.capacity);
            Spare {
                tx,
                rx,
                maps: Maps::default(),
            }
        })
    }

    /// Gives back what an exchange that has ended leaves: `own`, its sender (which it
    /// uses no more, and drops with itself), `rx` and its maps. Kept if nothing else
    /// can reach the queue and the pool is not full; the reports still in it, which
    /// nobody will read, are dropped first.
    pub(crate) fn give_back(
        &self,
        own: &mpsc::Sender<Report>,
        mut rx: mpsc::Receiver<Report>,
        maps: Maps,
    ) {
        let alone = own.strong_count() == 1 && own.weak_count() == 0;
        if !alone || rx.is_closed() || own.max_capacity() != self.capacity {
            return;
        }
        // No other sender: what is queued is all there will be.
        while rx.try_recv().is_ok() {}
        let maps = maps.emptied();
        if let Ok(mut spares) = self.spares.lock() {
            if spares.len() < MAX_SPARES {
                spares.push(Spare {
                    tx: own.clone(),
                    rx,
                    maps,
                });
            }
        }
    }

    /// Spares kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.spares.lock().map_or(0, |s| s.len())
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
        let Spare { tx, rx, .. } = spares.take();
        tx.try_send(data(1)).unwrap();
        spares.give_back(&tx, rx, Maps::default());
        drop(tx);
        assert_eq!(spares.len(), 1);
        let Spare { tx, rx, .. } = spares.take();
        assert_eq!(spares.len(), 0, "the spare was taken, not a new one made");
        assert!(rx.is_empty(), "the report left in it was dropped");
        assert_eq!(tx.strong_count(), 1);
        assert_eq!(tx.max_capacity(), 4);
    }

    #[test]
    fn a_queue_another_sender_can_reach_is_never_reused() {
        let spares = Spares::new(4);
        let Spare { tx, rx, .. } = spares.take();
        let leaked = tx.clone();
        spares.give_back(&tx, rx, Maps::default());
        assert_eq!(spares.len(), 0);
        let Spare { tx, rx, .. } = spares.take();
        assert!(!leaked.same_channel(&tx));
        // The kept sender may still send; it reaches no live queue.
        assert!(leaked.try_send(data(1)).is_err());
        spares.give_back(&tx, rx, Maps::default());
        assert_eq!(spares.len(), 1);
    }

    #[test]
    fn the_pool_keeps_at_most_its_bound() {
        let spares = Spares::new(2);
        let taken: Vec<Spare> = (0..MAX_SPARES + 3).map(|_| spares.take()).collect();
        for Spare { tx, rx, .. } in taken {
            spares.give_back(&tx, rx, Maps::default());
        }
        assert_eq!(spares.len(), MAX_SPARES);
    }

    #[test]
    fn maps_come_back_empty_and_large_ones_are_let_go() {
        let spares = Spares::new(2);
        let Spare { tx, rx, mut maps } = spares.take();
        maps.open.insert(RequestId(1));
        maps.current.insert(RequestId(1), 1);
        let small = maps.current.capacity();
        for id in 0..1000u16 {
            maps.open.insert(RequestId(id));
        }
        spares.give_back(&tx, rx, maps);
        drop(tx);
        let Spare { maps, .. } = spares.take();
        assert!(maps.open.is_empty() && maps.current.is_empty() && maps.handlers.is_empty());
        assert_eq!(maps.current.capacity(), small, "the small map was kept");
        assert_eq!(maps.open.capacity(), 0, "the large one was let go");
    }
}
