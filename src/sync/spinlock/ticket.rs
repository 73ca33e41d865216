//! The ticket lock: take a number, wait for it to be served (the locks chapter).
//!
//! `next` is the dispenser, `owner` the "now serving" display. Waiters sleep in WFE with their
//! monitor armed on the lock (src/arch/aarch64/wait.rs). Taking a ticket is one atomic add, so
//! CPUs are served in the order they arrived: the lock is fair by construction. Both counters
//! are 16 bits and wrap, which is harmless while fewer than 65536 CPUs wait at once.
//!
//! The two counters are the two halves of one 32-bit word, `owner` low and `next` high. That is
//! what lets `try_lock` ask "free?" and take a ticket in one compare-exchange over both: read
//! separately, the two can be seen at different times, and a CPU stalled between them while
//! 65,536 tickets go by would find both counters back where they were and take a lock somebody
//! holds. Unlock writes only the owner half, with one halfword store-release, as Linux's arm64
//! ticket lock did. Rust's memory model has no rule for overlapping atomic accesses of
//! different sizes, so that store is an arch hook (`store_release_low_half`): `STLRH` on the
//! target, a compare-exchange loop over the whole word on the host and under loom.
//!
//! The algorithm is the inherent `lock`/`try_lock`/`unlock`, written against
//! src/sync/shim.rs so loom can check it (the tests at the bottom); `RawSpinLock` only forwards.

#[cfg(not(loom))]
use super::RawSpinLock;
use crate::sync::shim::{
    AtomicU32, Ordering, const_unless_loom, store_release_low_half, wait_while_u32,
};

/// One ticket in the `next` half.
const NEXT_ONE: u32 = 1 << 16;

/// The "now serving" half of a lock word.
fn owner(word: u32) -> u16 {
    word as u16
}

/// The dispenser half of a lock word.
fn next(word: u32) -> u16 {
    (word >> 16) as u16
}

pub struct TicketLock {
    /// `next << 16 | owner`.
    word: AtomicU32,
}

impl TicketLock {
    const_unless_loom! {
        /// An unlocked lock.
        pub const fn new() -> Self {
            TicketLock {
                word: AtomicU32::new(0),
            }
        }
    }

    // lab:ticket begin
    pub fn lock(&self) {
        // Add to the high half; a carry out of bit 31 is simply lost, which wraps `next`.
        let ticket = next(self.word.fetch_add(NEXT_ONE, Ordering::Relaxed));
        loop {
            let word = self.word.load(Ordering::Acquire);
            if owner(word) == ticket {
                return;
            }
            // Sleep until the word changes: the holder's release, or a newcomer's ticket (after
            // which we look and sleep again).
            wait_while_u32(&self.word, word);
        }
    }
    // lab:ticket end

    pub fn try_lock(&self) -> bool {
        self.try_lock_stalling(|| {})
    }

    // lab:ticket begin
    /// `try_lock`, with `stall` run between its look at the lock and its exchange: where a
    /// real CPU can be held up by an interrupt or by its hypervisor for any length of time. The
    /// kernel passes nothing (it compiles away); the tests let other CPUs run there.
    #[inline(always)]
    fn try_lock_stalling(&self, stall: impl FnOnce()) -> bool {
        let word = self.word.load(Ordering::Relaxed);
        // `next == owner`: nobody holds or waits. Otherwise there is no point trying.
        if owner(word) != next(word) {
            return false;
        }
        stall();
        // Take the next ticket only if the whole word, both halves, is still what we saw: then
        // the lock is still free and our ticket is served at once. Acquire: this synchronises
        // with the last unlock.
        self.word
            .compare_exchange(
                word,
                word.wrapping_add(NEXT_ONE),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// # Safety
    /// The caller holds the lock.
    pub unsafe fn unlock(&self) {
        // Only the holder changes the owner half, so this read of it is current.
        let owner = owner(self.word.load(Ordering::Relaxed));
        // Publish `owner + 1` in the low half only: `next`, which other CPUs may be adding to
        // right now, is not ours to write, and a halfword wraps from 0xffff to 0 by itself. On
        // the target this is one `STLRH`, as in Linux; the store clears every waiter's
        // exclusive monitor, which wakes their WFE: no SEV.
        store_release_low_half(&self.word, owner.wrapping_add(1));
    }

    pub fn is_locked(&self) -> bool {
        let word = self.word.load(Ordering::Relaxed);
        owner(word) != next(word)
    }
    // lab:ticket end
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

#[cfg(all(test, not(loom)))]
mod host_tests {
    use super::TicketLock;
    use core::sync::atomic::Ordering;

    /// Hand the lock over `n` times on this thread.
    fn hand_over(lock: &TicketLock, n: u16) {
        for _ in 0..n {
            lock.lock();
            // SAFETY: this thread took the lock on the line above.
            unsafe { lock.unlock() };
        }
    }

    /// The unlock that moves "now serving" from 0xffff to 0 must not carry into `next`, which
    /// a waiter has just moved on by taking its ticket.
    #[test]
    fn owner_wraps_without_disturbing_next() {
        let lock = TicketLock::new();
        hand_over(&lock, u16::MAX);
        lock.lock(); // ticket 0xffff; `next` wraps to 0
        std::thread::scope(|cpu| {
            let waiter = cpu.spawn(|| {
                lock.lock(); // ticket 0
                // SAFETY: this thread took the lock on the line above.
                unsafe { lock.unlock() };
            });
            while lock.word.load(Ordering::Relaxed) >> 16 != 1 {
                std::thread::yield_now(); // until the waiter holds its ticket
            }
            // SAFETY: this thread took ticket 0xffff above and has not let go.
            unsafe { lock.unlock() };
            waiter.join().unwrap();
        });
        assert_eq!(
            lock.word.load(Ordering::Relaxed),
            1 << 16 | 1,
            "owner 1, next 1"
        );
        assert!(!lock.is_locked());
        assert!(lock.try_lock());
    }

    /// `try_lock` stalls after its first look at a free lock. Meanwhile another CPU takes
    /// 65,536 tickets: 65,535 lock/unlock pairs, then one lock it keeps. Both 16-bit counters
    /// have wrapped to the values `try_lock` saw, yet the lock is held: `try_lock` must fail.
    #[test]
    fn try_lock_fails_on_a_lock_taken_while_it_stalled() {
        let lock = TicketLock::new();
        let taken = lock.try_lock_stalling(|| {
            std::thread::scope(|cpu| {
                cpu.spawn(|| {
                    hand_over(&lock, u16::MAX);
                    lock.lock();
                });
            });
        });
        assert!(lock.is_locked(), "the other CPU holds the lock");
        assert!(
            !taken,
            "try_lock succeeded while another CPU held the lock (both got in)"
        );
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

    /// The bug: "now serving" moves on with a `Relaxed` add, so the next holder may enter
    /// without seeing what the previous one wrote. Loom must catch the unordered counter access.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_ticket_relaxed_unlock_is_caught() {
        fn relaxed_unlock(lock: &TicketLock) {
            // The real unlock's step (the owner half never reaches 0xffff in these models).
            lock.word.fetch_add(1, Ordering::Relaxed);
        }
        count_to_two(relaxed_unlock);
    }
}
