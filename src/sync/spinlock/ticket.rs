//! The ticket lock: take a number, wait for it to be served (the locks chapter).
//!
//! `next` is the dispenser, `owner` the "now serving" display. Waiters sleep in WFE with their
//! monitor armed on `owner` (src/arch/aarch64/wait.rs). Taking a ticket is one atomic
//! add, so CPUs are served in the order they arrived: the lock is fair by construction. Only the
//! holder writes `owner`, so unlocking is a plain store-release of `owner + 1`. Both counters are
//! 16 bits and wrap, which is harmless while fewer than 65536 CPUs wait at once.

use core::sync::atomic::{AtomicU16, Ordering};

use super::RawSpinLock;

#[repr(C, align(4))]
pub struct TicketLock {
    owner: AtomicU16,
    next: AtomicU16,
}

// SAFETY: a CPU enters only when `owner` equals its unique ticket (acquire load); the holder
// leaves by publishing `owner + 1` with release ordering, so the next ticket's holder sees all
// of the previous holder's writes.
unsafe impl RawSpinLock for TicketLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = TicketLock {
        owner: AtomicU16::new(0),
        next: AtomicU16::new(0),
    };

    fn lock(&self) {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        loop {
            let serving = self.owner.load(Ordering::Acquire);
            if serving == ticket {
                return;
            }
            // Sleep until the holder's release store to `owner` clears our monitor.
            crate::arch::wait::wait_while_u16(&self.owner, serving);
        }
    }

    fn try_lock(&self) -> bool {
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

    unsafe fn unlock(&self) {
        let owner = self.owner.load(Ordering::Relaxed);
        // This store clears every waiter's exclusive monitor, which wakes their WFE: no SEV.
        self.owner.store(owner.wrapping_add(1), Ordering::Release);
    }

    fn is_locked(&self) -> bool {
        self.owner.load(Ordering::Relaxed) != self.next.load(Ordering::Relaxed)
    }
}
