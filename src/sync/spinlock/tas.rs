//! Test-and-set: the naive spin lock (the locks chapter).
//!
//! Every attempt is an atomic swap, a write, even while the lock is held. Each write takes the
//! cache line in exclusive state away from every other CPU, so N waiting CPUs bounce the line
//! between them continuously and slow down the holder too: the bus-hammering the source texts describe.

use core::sync::atomic::{AtomicU8, Ordering};

use super::RawSpinLock;

pub struct TasLock {
    locked: AtomicU8,
}

// SAFETY: the swap that returns 0 is the only way in (acquire); unlock stores 0 (release).
unsafe impl RawSpinLock for TasLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = TasLock {
        locked: AtomicU8::new(0),
    };

    // lab:tas begin
    fn lock(&self) {
        while self.locked.swap(1, Ordering::Acquire) != 0 {
            crate::arch::cpu_relax();
        }
    }

    fn try_lock(&self) -> bool {
        self.locked.swap(1, Ordering::Acquire) == 0
    }

    unsafe fn unlock(&self) {
        self.locked.store(0, Ordering::Release);
    }

    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed) != 0
    }
    // lab:tas end
}
