//! The process's byte budget for windows being read or waiting to commit: what every stream
//! holds, so memory is bounded in bytes however many streams run and however large a window.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Bytes held by windows read (or being read) and not yet committed, against a limit.
#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
    /// The live reservations by age: the oldest may always grow (see [`Reservation::grow`]).
    live: Mutex<BTreeSet<u64>>,
    next: AtomicU64,
    freed: Notify,
}

/// Bytes taken from a [`ByteBudget`] by one window, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<ByteBudget>,
    id: u64,
    bytes: u64,
}

impl ByteBudget {
    pub fn new(limit: u64) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            limit,
            used: AtomicU64::new(0),
            live: Mutex::new(BTreeSet::new()),
            next: AtomicU64::new(0),
            freed: Notify::new(),
        })
    }

    /// A budget nothing exceeds (tests, tools that read one window at a time).
    pub fn unlimited() -> Arc<ByteBudget> {
        ByteBudget::new(u64::MAX)
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether `bytes` more fit beside what is held (a window read ahead is started only then).
    pub fn has_room(&self, bytes: u64) -> bool {
        self.used().saturating_add(bytes) <= self.limit
    }

    /// A reservation of nothing yet, younger than every live one.
    pub fn reserve(self: &Arc<Self>) -> Reservation {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live.lock().expect("budget lock").insert(id);
        Reservation { budget: self.clone(), id, bytes: 0 }
    }

    fn is_oldest(&self, id: u64) -> bool {
        self.live.lock().expect("budget lock").first() == Some(&id)
    }
}

impl Reservation {
    /// Takes `bytes` more, waiting while they do not fit, unless this is the oldest live
    /// reservation: that one always grows. A stream's windows are reserved in order, so the
    /// oldest is always the window some stream commits next; it can finish and commit, and
    /// give its bytes back, whatever the others hold. So a window larger than the budget goes
    /// through, alone, and nothing waits forever.
    pub async fn grow(&mut self, bytes: u64) {
        loop {
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            let taken = self.budget.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.saturating_add(bytes);
                (after <= self.budget.limit || self.budget.is_oldest(self.id)).then_some(after)
            });
            if taken.is_ok() {
                self.bytes += bytes;
                return;
            }
            freed.await;
        }
    }

    /// Gives back everything held (a page set read again starts from nothing).
    pub fn clear(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.bytes = 0;
        self.budget.freed.notify_waiters();
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.live.lock().expect("budget lock").remove(&self.id);
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_oldest_window_grows_past_the_budget_and_the_others_wait_for_room() {
        let budget = ByteBudget::new(100);
        let mut head = budget.reserve();
        let mut ahead = budget.reserve();
        let grown = tokio::time::timeout(Duration::from_secs(5), head.grow(150)).await;
        assert!(grown.is_ok(), "the oldest window is read whatever its size");
        assert_eq!(budget.used(), 150);
        assert!(!budget.has_room(1), "nothing is started beside it");
        let waiting = tokio::time::timeout(Duration::from_millis(100), ahead.grow(10)).await;
        assert!(waiting.is_err(), "a younger window waits while the budget is spent");
        let grown = tokio::spawn(async move {
            ahead.grow(60).await;
            ahead
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(head);
        let ahead =
            tokio::time::timeout(Duration::from_secs(5), grown).await.expect("woken once room is freed").unwrap();
        assert_eq!((ahead.bytes(), budget.used()), (60, 60));
        let mut third = budget.reserve();
        let mut fourth = budget.reserve();
        third.grow(40).await;
        assert!(tokio::time::timeout(Duration::from_millis(100), fourth.grow(1)).await.is_err(), "60 + 40 + 1 > 100");
        drop((ahead, third, fourth));
        assert_eq!(budget.used(), 0, "everything is given back");
    }
}
