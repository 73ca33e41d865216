//! A deliberately broken lock: never use it (the locks chapter, torture tests).
//!
//! It checks that the lock is free with one load and takes it with a separate store. Two CPUs
//! can both see "free" before either stores, and both enter. The torture test runs it exactly
//! like the real locks and must catch it; if it did not, the test would prove nothing about them.

use core::sync::atomic::{AtomicU8, Ordering};

use super::RawSpinLock;

pub struct BrokenLock {
    locked: AtomicU8,
}

// SAFETY: this impl is deliberately unsound: `lock` does not give mutual exclusion. It is only
// used by the torture test, on data whose corruption the test detects and expects.
unsafe impl RawSpinLock for BrokenLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = BrokenLock {
        locked: AtomicU8::new(0),
    };

    fn lock(&self) {
        while self.locked.load(Ordering::Acquire) != 0 {
            crate::arch::cpu_relax();
        }
        // The bug: between the load above and this store, another CPU may take the lock too.
        // The torture test must hit that window even when a busy host runs the vCPUs one
        // after another, so it is widened: a YIELD and some dawdling, so that a host
        // preemption lands inside the window often (with 32 rounds, runs of 450 000
        // acquisitions passed unharmed on a loaded 2-core host).
        crate::arch::cpu_relax();
        for i in 0..512u32 {
            core::hint::black_box(i);
        }
        self.locked.store(1, Ordering::Relaxed);
    }

    fn try_lock(&self) -> bool {
        if self.locked.load(Ordering::Acquire) != 0 {
            return false;
        }
        self.locked.store(1, Ordering::Relaxed);
        true
    }

    unsafe fn unlock(&self) {
        self.locked.store(0, Ordering::Release);
    }

    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed) != 0
    }
}
