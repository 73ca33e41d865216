//! The ticket lock: take a number, wait for it to be served (the locks chapter).
//!
//! `next` is the dispenser, `owner` the "now serving" display. Waiters sleep in WFE with their
//! monitor armed on `owner` (src/arch/aarch64/wait.rs). Taking a ticket is one atomic
//! add, so CPUs are served in the order they arrived: the lock is fair by construction. Only the
//! holder writes `owner`, so unlocking is a plain store-release of `owner + 1`. Both counters are
//! 16 bits and wrap, which is harmless while fewer than 65536 CPUs wait at once.
//!
//! The algorithm is the inherent `lock`/`try_lock`/`unlock`, written against
//! src/sync/shim.rs so loom can check it (the tests at the bottom); `RawSpinLock` only forwards.

#[cfg(not(loom))]
use super::RawSpinLock;
use crate::sync::shim::{AtomicU16, Ordering, const_unless_loom, wait_while_u16};

#[repr(C, align(4))]
pub struct TicketLock {
    owner: AtomicU16,
    next: AtomicU16,
}

impl TicketLock {
    const_unless_loom! {
        /// An unlocked lock.
        pub const fn new() -> Self {
            TicketLock {
                owner: AtomicU16::new(0),
                next: AtomicU16::new(0),
            }
        }
    }

    pub fn lock(&self) {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        loop {
            let serving = self.owner.load(Ordering::Acquire);
            if serving == ticket {
                return;
            }
            // Sleep until the holder's release store to `owner` clears our monitor.
            wait_while_u16(&self.owner, serving);
        }
    }

    pub fn try_lock(&self) -> bool {
        // Acquire: if the lock is free, this read is what synchronises with the last unlock.
        let owner = self.owner.load(Ordering::Acquire);
        // Take a ticket only if it is served at once: `next == owner` means nobody holds or
        // waits, and since owner never passes next, success here means we hold the lock.
        self.next
            .compare_exchange(
                owner,
                owner.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// # Safety
    /// The caller holds the lock.
    pub unsafe fn unlock(&self) {
        let owner = self.owner.load(Ordering::Relaxed);
        // This store clears every waiter's exclusive monitor, which wakes their WFE: no SEV.
        self.owner.store(owner.wrapping_add(1), Ordering::Release);
    }

    pub fn is_locked(&self) -> bool {
        self.owner.load(Ordering::Relaxed) != self.next.load(Ordering::Relaxed)
    }
}

impl Default for TicketLock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: a CPU enters only when `owner` equals its unique ticket (acquire load); the holder
// leaves by publishing `owner + 1` with release ordering, so the next ticket's holder sees all
// of the previous holder's writes.
#[cfg(not(loom))]
unsafe impl RawSpinLock for TicketLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = TicketLock::new();

    fn lock(&self) {
        TicketLock::lock(self)
    }

    fn try_lock(&self) -> bool {
        TicketLock::try_lock(self)
    }

    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock, as `RawSpinLock::unlock` demands.
        unsafe { TicketLock::unlock(self) }
    }

    fn is_locked(&self) -> bool {
        TicketLock::is_locked(self)
    }
}

/// Loom models (`make loom`): every interleaving of two threads, within the preemption bound.
///
/// Two threads is the useful size. Each turn of a spin loop is a branch for loom, and with three
/// threads spinning it explores unfair schedules (a waiter chosen over the holder again and
/// again) until a single execution passes loom's limit of 1,000 branches.
#[cfg(all(test, loom))]
mod tests {
    use super::TicketLock;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::sync::atomic::Ordering;

    /// A lock and a plain counter it protects. Loom's `UnsafeCell` panics if two threads touch
    /// the counter without a happens-before edge between them: that is mutual exclusion, checked.
    struct Counted {
        lock: TicketLock,
        count: UnsafeCell<u32>,
    }

    // SAFETY: `count` is only touched under `lock`, which is exactly what these models verify.
    unsafe impl Sync for Counted {}

    impl Counted {
        fn add_one(&self, unlock: fn(&TicketLock)) {
            self.lock.lock();
            // SAFETY: we hold the lock (if the lock is wrong, loom reports this access).
            self.count.with_mut(|c| unsafe { *c += 1 });
            unlock(&self.lock);
        }

        fn total(&self) -> u32 {
            // SAFETY: called after every other thread has been joined.
            self.count.with(|c| unsafe { *c })
        }
    }

    fn unlock(lock: &TicketLock) {
        // SAFETY: called only by `add_one`, which holds the lock.
        unsafe { lock.unlock() }
    }

    /// A spawned thread and the model's main thread each add one under the lock.
    fn count_to_two(unlock: fn(&TicketLock)) {
        loom::model(move || {
            let shared = Arc::new(Counted {
                lock: TicketLock::new(),
                count: UnsafeCell::new(0),
            });
            let other = {
                let shared = Arc::clone(&shared);
                loom::thread::spawn(move || shared.add_one(unlock))
            };
            shared.add_one(unlock);
            other.join().unwrap();
            assert_eq!(shared.total(), 2, "an update was lost");
            assert!(!shared.lock.is_locked());
        });
    }

    #[test]
    fn loom_ticket_excludes() {
        count_to_two(unlock);
    }

    #[test]
    fn loom_ticket_try_lock_excludes() {
        loom::model(|| {
            let shared = Arc::new(Counted {
                lock: TicketLock::new(),
                count: UnsafeCell::new(0),
            });
            let other = {
                let shared = Arc::clone(&shared);
                loom::thread::spawn(move || shared.add_one(unlock))
            };
            let mut expected = 1;
            if shared.lock.try_lock() {
                // SAFETY: try_lock succeeded, so we hold the lock.
                shared.count.with_mut(|c| unsafe { *c += 1 });
                unlock(&shared.lock);
                expected += 1;
            }
            other.join().unwrap();
            assert_eq!(shared.total(), expected);
        });
    }

    /// The bug: "now serving" moves on with a `Relaxed` store, so the next holder may enter
    /// without seeing what the previous one wrote. Loom must catch the unordered counter access.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_ticket_relaxed_unlock_is_caught() {
        fn relaxed_unlock(lock: &TicketLock) {
            let owner = lock.owner.load(Ordering::Relaxed);
            lock.owner.store(owner.wrapping_add(1), Ordering::Relaxed);
        }
        count_to_two(relaxed_unlock);
    }
}
