//! Memory budgets, in the manner of h2's `counts.rs`: every byte the peer makes the
//! reactor hold is charged *before* it is allocated, and a charge that would go over
//! the limit fails without changing anything.

/// A budget of bytes (or of anything countable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    used: usize,
    max: usize,
}

/// A charge that would exceed the budget: the total it would have reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub(crate) would_be: usize,
    pub(crate) max: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Self {
        Self { used: 0, max }
    }

    /// Takes `n` from the budget, or fails and takes nothing.
    pub(crate) fn charge(&mut self, n: usize) -> Result<(), Exhausted> {
        let would_be = self.used.saturating_add(n);
        if would_be > self.max {
            return Err(Exhausted {
                would_be,
                max: self.max,
            });
        }
        self.used = would_be;
        Ok(())
    }

    /// Gives `n` back.
    pub(crate) fn release(&mut self, n: usize) {
        debug_assert!(n <= self.used, "releasing more than was charged");
        self.used = self.used.saturating_sub(n);
    }

    /// What is charged now.
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// What is left.
    pub(crate) fn remaining(&self) -> usize {
        self.max.saturating_sub(self.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_charge_changes_nothing() {
        let mut b = Budget::new(10);
        b.charge(6).unwrap();
        assert_eq!(
            b.charge(5),
            Err(Exhausted {
                would_be: 11,
                max: 10
            })
        );
        assert_eq!(b.used(), 6);
        assert_eq!(b.remaining(), 4);
        b.charge(4).unwrap();
        b.release(10);
        assert_eq!(b.used(), 0);
        assert!(b.charge(usize::MAX).is_err());
    }
}
