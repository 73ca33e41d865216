//! Test-then-test-and-set (the locks chapter).
//!
//! Wait with plain loads until the lock looks free, and only then try the atomic swap. While
//! the lock is held, the waiters all share the cache line read-only and generate no traffic;
//! they sleep in WFE (src/arch/aarch64/wait.rs) until the holder's release store wakes them.
//! When it is released, they all race for it at once, so it is still unfair.

use core::sync::atomic::{AtomicU8, Ordering};

use super::RawSpinLock;
use crate::arch::wait;

pub struct TtasLock {
    locked: AtomicU8,
}

// SAFETY: as for the TAS lock: only a swap that returns 0 enters, unlock is a release store.
unsafe impl RawSpinLock for TtasLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = TtasLock {
        locked: AtomicU8::new(0),
    };

    fn lock(&self) {
        loop {
            while self.locked.load(Ordering::Relaxed) != 0 {
                wait::wait_while_u8(&self.locked, 1);
            }
            if self.locked.swap(1, Ordering::Acquire) == 0 {
                return;
            }
        }
    }

    fn try_lock(&self) -> bool {
        self.locked.load(Ordering::Relaxed) == 0 && self.locked.swap(1, Ordering::Acquire) == 0
    }

    unsafe fn unlock(&self) {
        self.locked.store(0, Ordering::Release);
    }

    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed) != 0
    }
}
