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
    /// The live reservations by age: the oldest never waits (see [`Reservation::grow`]).
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

/// What [`Reservation::grow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// The bytes are held.
    Held,
    /// The oldest reservation does not fit: nothing was taken. The window must put its records
    /// somewhere else (spill them to disk) rather than wait, since nothing older will free room.
    OverBudget,
}

impl ByteBudget {
    /// Takes `bytes` if they fit under the limit. A compare-and-swap loop rather than
    /// `fetch_update`, which Rust 1.99 deprecates (its replacement is not stable before it).
    fn take(&self, bytes: u64) -> bool {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let after = used.saturating_add(bytes);
            if after > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(used, after, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

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

    /// The most bytes it holds (`max_buffered_bytes`).
    pub fn limit(&self) -> u64 {
        self.limit
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
    /// reservation: that one never waits, and gets [`Growth::OverBudget`] instead. A stream's
    /// windows are reserved in order, so the oldest is always the window some stream commits
    /// next; it spills what does not fit, finishes and commits, and gives its bytes back,
    /// whatever the others hold. So a window larger than the budget goes through, on disk, and
    /// nothing waits forever.
    pub async fn grow(&mut self, bytes: u64) -> Growth {
        loop {
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            if self.budget.take(bytes) {
                self.bytes += bytes;
                return Growth::Held;
            }
            if self.budget.is_oldest(self.id) {
                return Growth::OverBudget;
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

/// Hands memory freed by a large window back to the operating system. The worker's own
/// allocations are mimalloc's, which returns freed pages by itself; librdkafka's (its copy of
/// every record produced) are glibc's, which keeps them in per-thread arenas: without this, the
/// copies of the window committed before stay in the process's RSS beside the spilling one
/// (measured: 166 MB peak with two 200k-record windows, 150 MB with it).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_oldest_window_is_told_to_spill_and_the_others_wait_for_room() {
        let budget = ByteBudget::new(100);
        let mut head = budget.reserve();
        let mut ahead = budget.reserve();
        assert_eq!(head.grow(90).await, Growth::Held);
        let told = tokio::time::timeout(Duration::from_secs(5), head.grow(60)).await;
        assert_eq!(told.expect("the oldest window never waits"), Growth::OverBudget);
        assert_eq!((head.bytes(), budget.used()), (90, 90), "nothing taken past the budget");
        assert!(!budget.has_room(11), "nothing is started that does not fit");
        let waiting = tokio::time::timeout(Duration::from_millis(100), ahead.grow(20)).await;
        assert!(waiting.is_err(), "a younger window waits while the budget is spent");
        let grown = tokio::spawn(async move {
            let growth = ahead.grow(60).await;
            (ahead, growth)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The oldest spilled its records: it holds nothing now.
        head.clear();
        let (ahead, growth) =
            tokio::time::timeout(Duration::from_secs(5), grown).await.expect("woken once room is freed").unwrap();
        assert_eq!((growth, ahead.bytes(), budget.used()), (Growth::Held, 60, 60));
        drop(head);
        let mut third = budget.reserve();
        let mut fourth = budget.reserve();
        assert_eq!(third.grow(40).await, Growth::Held);
        assert!(tokio::time::timeout(Duration::from_millis(100), fourth.grow(1)).await.is_err(), "60 + 40 + 1 > 100");
        drop((ahead, third, fourth));
        assert_eq!(budget.used(), 0, "everything is given back");
    }
}
