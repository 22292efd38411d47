//! How far an exchange may get ahead of its client, and what it holds of the server's
//! memory.
//!
//! Output given to the reactor is held until the transport takes it. Normally the
//! exchange stays about one transmit chunk ahead, in wire bytes (memory) and in raw
//! bytes (work: compressed output can be tiny). While a half-duplex exchange's request is
//! still arriving nothing can be sent, so it may hold up to `max_held_output` instead;
//! beyond that its handlers wait. Everything it holds (output, commands waiting to run,
//! partial commands, per-request bookkeeping) is charged to the server's memory budget;
//! when the budget is spent the exchange waits as at its own limit.

use crate::admission::{Charge, MemoryBudget};

/// What one request costs, besides its data: its entries in the reactor and the
/// exchange, and a waiting command's state (measured: a half-duplex `multirequest` of
/// 30,000 `echo`s peaks about 470 bytes a command over the idle server, docs/engine.md).
pub(crate) const REQUEST_BOOKKEEPING: usize = 512;

pub(crate) struct Pacing {
    /// Most bytes queued in the reactor once output can flow.
    chunk: usize,
    /// Most bytes held while output cannot flow yet (half duplex, request arriving).
    max_held: usize,
    /// Raw bytes given to the reactor since its queue was last empty, and how many may
    /// be once output flows.
    unsent_raw: usize,
    raw_budget: usize,
    /// This exchange's share of the server's memory budget.
    charge: Charge,
    over_budget: bool,
}

impl Pacing {
    pub(crate) fn new(
        chunk: usize,
        max_held: usize,
        raw_budget: usize,
        memory: &MemoryBudget,
    ) -> Self {
        Self {
            chunk,
            max_held,
            unsent_raw: 0,
            raw_budget,
            charge: Charge::empty(memory),
            over_budget: false,
        }
    }

    /// Whether more output may be given to the reactor, which holds `queued` bytes;
    /// `holding` while output cannot flow yet. Over the server's budget, only once the
    /// reactor's queue is empty: the output then leaves at once, and a running handler
    /// must be able to go on to its end, or what the exchange holds (commands waiting
    /// for its slot) would never be freed.
    pub(crate) fn has_room(&self, queued: usize, holding: bool) -> bool {
        let (wire, raw) = if holding {
            (self.max_held, self.max_held)
        } else {
            (self.chunk, self.raw_budget)
        };
        (!self.over_budget || (queued == 0 && !holding)) && queued < wire && self.unsent_raw < raw
    }

    /// Whether the reactor holds as much as it may while output cannot flow.
    pub(crate) fn is_full(&self, queued: usize) -> bool {
        self.over_budget || queued >= self.max_held || self.unsent_raw >= self.max_held
    }

    /// Raw bytes given to the reactor.
    pub(crate) fn gave(&mut self, raw: usize) {
        self.unsent_raw = self.unsent_raw.saturating_add(raw);
    }

    /// Output was taken; the reactor now holds `queued` bytes.
    pub(crate) fn took(&mut self, queued: usize) {
        if queued == 0 {
            self.unsent_raw = 0;
        }
    }

    /// Charges what the exchange holds now, `bytes` in all, to the server's budget.
    /// Returns whether it is over the budget (it then waits until memory is released).
    pub(crate) fn hold(&mut self, bytes: usize) -> bool {
        let charged = self.charge.bytes();
        if bytes > charged {
            self.over_budget = !self.charge.try_grow(bytes - charged);
        } else {
            self.charge.shrink(charged - bytes);
            self.over_budget = false;
        }
        self.over_budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_a_chunk_once_output_flows_and_the_held_limit_before() {
        let budget = MemoryBudget::new(1 << 20);
        let mut p = Pacing::new(100, 1000, 400, &budget);
        assert!(p.has_room(99, false));
        assert!(!p.has_room(100, false));
        assert!(p.has_room(999, true));
        assert!(!p.has_room(1000, true));
        p.gave(400);
        assert!(!p.has_room(0, false), "raw budget spent");
        assert!(p.has_room(0, true));
        p.took(0);
        assert!(p.has_room(0, false));
    }

    #[test]
    fn holding_more_than_the_budget_pauses_until_it_shrinks() {
        let budget = MemoryBudget::new(1000);
        let mut a = Pacing::new(100, 1000, 400, &budget);
        let mut b = Pacing::new(100, 1000, 400, &budget);
        assert!(!a.hold(800));
        assert!(b.hold(300), "only 200 bytes left");
        assert!(!b.has_room(1, false), "over the budget with output queued");
        assert!(
            b.has_room(0, false),
            "an empty queue still takes a handler's output"
        );
        assert!(!b.has_room(0, true), "but not while the output is held");
        assert!(!a.hold(100));
        assert!(!b.hold(300));
        assert_eq!(budget.charged(), 400);
        drop((a, b));
        assert_eq!(budget.charged(), 0);
    }
}
