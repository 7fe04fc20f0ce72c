//! The process's byte budget for windows read ahead: what every stream holds beyond the
//! window it commits next, so memory is bounded in bytes however many streams run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes held by windows read (or being read) and not yet committed, against a limit.
#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
}

/// Bytes taken from a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<ByteBudget>,
    bytes: u64,
}

impl ByteBudget {
    pub fn new(limit: u64) -> Arc<ByteBudget> {
        Arc::new(ByteBudget { limit, used: AtomicU64::new(0) })
    }

    /// A budget nothing exceeds (tests, tools that read one window at a time).
    pub fn unlimited() -> Arc<ByteBudget> {
        ByteBudget::new(u64::MAX)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` whatever is held: the window a stream commits next is always read, so a
    /// window larger than the budget still goes through (and holds the others back).
    pub fn force(self: &Arc<Self>, bytes: u64) -> Reservation {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        Reservation { budget: self.clone(), bytes }
    }

    /// Takes `bytes` if they fit beside what is held.
    pub fn try_take(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|after| *after <= self.limit)
            })
            .ok()
            .map(|_| Reservation { budget: self.clone(), bytes })
    }
}

impl Reservation {
    /// Holds `bytes` instead (what the window turned out to need), over the limit if it must.
    pub fn resize(&mut self, bytes: u64) {
        if bytes > self.bytes {
            self.budget.used.fetch_add(bytes - self.bytes, Ordering::AcqRel);
        } else {
            self.budget.used.fetch_sub(self.bytes - bytes, Ordering::AcqRel);
        }
        self.bytes = bytes;
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_fits_the_budget_and_the_next_window_always_goes() {
        let budget = ByteBudget::new(100);
        let head = budget.force(150);
        assert_eq!(budget.used(), 150, "a window larger than the budget is read all the same");
        assert!(budget.try_take(1).is_none(), "nothing is read ahead beside it");
        drop(head);
        let mut a = budget.try_take(60).expect("fits");
        assert!(budget.try_take(41).is_none(), "60 + 41 > 100");
        let b = budget.try_take(40).expect("60 + 40 fits");
        a.resize(90);
        assert_eq!(budget.used(), 130, "a window that turned out larger is held as it is");
        drop((a, b));
        assert_eq!(budget.used(), 0, "everything is given back");
    }
}
