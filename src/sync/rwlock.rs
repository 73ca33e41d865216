//! The reader-writer spin lock (the reader-writer chapter).
//!
//! Any number of readers, or one writer. One 32-bit word: the top bit says a writer holds the
//! lock, the rest count readers. A reader adds one if no writer holds it; a writer moves the
//! word from 0 (nobody) to the writer bit. Readers that keep arriving can hold a writer off
//! indefinitely (reader preference, as Linux's classic rwlock_t had; today's queued rwlock
//! prefers readers only in interrupt context), which is why seqlocks and RCU exist.
//!
//! Like `SpinLock`, both sides disable preemption while they hold it (chapter 16): a preempted
//! holder would make every other task on its CPU that wants the lock spin until the next tick.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::wait;
use crate::sync::preempt;

const WRITER: u32 = 1 << 31;

pub struct RwLock<T> {
    state: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: readers get shared references only while no writer holds the lock, and the writer
// gets the only reference; so T must be Send (moved between CPUs) and Sync (shared by readers).
unsafe impl<T: Send + Sync> Sync for RwLock<T> {}

impl<T> RwLock<T> {
    pub const fn new(value: T) -> Self {
        RwLock {
            state: AtomicU32::new(0),
            data: UnsafeCell::new(value),
        }
    }

    pub fn read(&self) -> ReadGuard<'_, T> {
        preempt::preempt_disable();
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & WRITER == 0 {
                if self.try_exchange(s, s + 1).is_ok() {
                    return ReadGuard {
                        lock: self,
                        _not_send: PhantomData,
                    };
                }
            } else {
                wait::wait_while_u32(&self.state, s);
            }
        }
    }

    pub fn write(&self) -> WriteGuard<'_, T> {
        preempt::preempt_disable();
        loop {
            match self.try_exchange(0, WRITER) {
                Ok(_) => {
                    return WriteGuard {
                        lock: self,
                        _not_send: PhantomData,
                    };
                }
                // The exchange failed on a free word: a spurious failure, not a holder. Waiting
                // for the word to change would wait for a store nobody is going to make.
                Err(0) => continue,
                Err(s) => wait::wait_while_u32(&self.state, s),
            }
        }
    }

    /// One attempt to move the word from `current` to `new`, acquiring on success. It is
    /// `compare_exchange_weak`: on LL/SC one LDAXR/STXR pair with no retry, so it may fail while
    /// the word still holds `current` (an exception between the two clears the monitor). x86
    /// hosts never fail that way, so host tests can ask for such failures (`tests::spurious`).
    #[inline(always)]
    fn try_exchange(&self, current: u32, new: u32) -> Result<(), u32> {
        #[cfg(all(test, not(loom)))]
        if tests::spurious::fail_now() {
            return Err(current);
        }
        self.state
            .compare_exchange_weak(current, new, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| ())
    }

    /// Readers inside right now (for statistics and tests).
    pub fn readers(&self) -> u32 {
        self.state.load(Ordering::Relaxed) & !WRITER
    }
}

/// A reader's access; leaves on drop. Not `Send`: it re-enables preemption, which must happen
/// in the task that disabled it.
///
/// ```compile_fail
/// # use quartet::sync::RwLock;
/// fn must_be_send<T: Send>(_: &T) {}
/// let lock = RwLock::new(0u32);
/// let guard = lock.read();
/// must_be_send(&guard); // error: the guard cannot be sent between threads safely
/// ```
///
/// ```
/// # use quartet::sync::RwLock;
/// fn must_be_send<T: Send>(_: &T) {}
/// let lock = RwLock::new(0u32);
/// let guard = lock.read();
/// must_be_send(&lock); // the lock and the data may move; only the guard may not
/// must_be_send(&*guard);
/// ```
pub struct ReadGuard<'a, T> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard exists only while the writer bit is clear.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.state.fetch_sub(1, Ordering::Release);
        preempt::preempt_enable();
    }
}

/// The writer's access; unlocks on drop. Not `Send`, for the reason `ReadGuard` is not.
///
/// ```compile_fail
/// # use quartet::sync::RwLock;
/// fn must_be_send<T: Send>(_: &T) {}
/// let lock = RwLock::new(0u32);
/// let guard = lock.write();
/// must_be_send(&guard); // error: the guard cannot be sent between threads safely
/// ```
///
/// ```
/// # use quartet::sync::RwLock;
/// fn must_be_send<T: Send>(_: &T) {}
/// let lock = RwLock::new(0u32);
/// let guard = lock.write();
/// must_be_send(&lock); // the lock and the data may move; only the guard may not
/// must_be_send(&*guard);
/// ```
pub struct WriteGuard<'a, T> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write guard is the only access while it exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and the guard is not shared.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.state.store(0, Ordering::Release);
        preempt::preempt_enable();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn readers_share_and_writers_exclude() {
        let lock = Arc::new(RwLock::new((0u64, 0u64)));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        if (i + t) % 10 == 0 {
                            let mut w = lock.write();
                            assert_eq!(lock.readers(), 0);
                            w.0 += 1;
                            w.1 += 1;
                        } else {
                            let r = lock.read();
                            assert_eq!(r.0, r.1, "a reader saw a half-done write");
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*lock.read(), (8_000, 8_000));
    }

    /// Spurious failures of the weak compare-exchange, made to order on the calling thread.
    #[cfg_attr(all(feature = "host-bench", target_arch = "aarch64"), allow(dead_code))]
    pub(super) mod spurious {
        use std::cell::Cell;

        std::thread_local! {
            static PENDING: Cell<u32> = const { Cell::new(0) };
        }

        /// Make this thread's next `n` attempts fail although the word matched.
        pub fn fail_next(n: u32) {
            PENDING.with(|p| p.set(n));
        }

        pub fn pending() -> u32 {
            PENDING.with(|p| p.get())
        }

        pub(in crate::sync::rwlock) fn fail_now() -> bool {
            PENDING.with(|p| {
                let n = p.get();
                p.set(n.saturating_sub(1));
                n > 0
            })
        }
    }

    /// A writer whose exchange fails spuriously on a free lock must try again, not wait: no
    /// store is coming to wake it. Waits behave like the target's WFE here, so waiting on the
    /// free word's 0 panics instead of spinning past the bug.
    // Both tests need the host's stand-in for WFE. An AArch64 host built with `host-bench`
    // (where the llsc-add lab runs these unit tests) waits with the real WFE and has none.
    #[test]
    #[cfg(not(all(feature = "host-bench", target_arch = "aarch64")))]
    fn write_retries_a_spurious_failure_instead_of_sleeping_on_a_free_lock() {
        crate::arch::wait::sleep_like_wfe(10_000);
        let lock = RwLock::new(0);
        spurious::fail_next(1);
        *lock.write() += 1;
        assert_eq!(
            spurious::pending(),
            0,
            "the write never met the spurious failure"
        );
        assert_eq!(*lock.read(), 1);
    }

    /// The same for a reader: a spurious failure sends it back to load the word again.
    #[test]
    #[cfg(not(all(feature = "host-bench", target_arch = "aarch64")))]
    fn read_retries_a_spurious_failure_instead_of_sleeping_on_a_free_lock() {
        crate::arch::wait::sleep_like_wfe(10_000);
        let lock = RwLock::new(7);
        spurious::fail_next(1);
        assert_eq!(*lock.read(), 7);
        assert_eq!(
            spurious::pending(),
            0,
            "the read never met the spurious failure"
        );
    }

    #[test]
    fn two_readers_hold_it_at_once() {
        let lock = RwLock::new(5);
        let a = lock.read();
        let b = lock.read();
        assert_eq!(lock.readers(), 2);
        assert_eq!(*a + *b, 10);
    }
}
