//! The counting semaphore: N permits, and tasks sleep while none is left (chapter 17, "Spin or
//! block").
//!
//! Dijkstra's P and V, Linux's `down` and `up`. A semaphore bounds how many tasks do something
//! at once (four DMA channels, sixteen request slots); with one permit it is a lock without an
//! owner, which any task may release. Not owned also means no optimistic spinning (there is no
//! owner to watch run) and no owner check: use a `Mutex` when you mean a lock.
//!
//! The count and a "waiters" flag share one word, permits in the upper bits and the flag in
//! bit 0, as in the mutex (src/sync/mutex.rs): a waiter sets the flag after queueing, and `up`
//! adds its permit with one atomic add, which tells it in the same step whether to look in the
//! queue. Uncontended, `down` and `up` are one atomic operation each.

use super::shim::{Ordering, const_unless_loom};
use super::sleep::{AtomicUsize, Sleeper};
use super::waitqueue::WaitQueue;

/// Bit 0: someone may be asleep in the wait queue.
const WAITERS: usize = 1;
/// One permit, in the bits above the flag.
const PERMIT: usize = 2;

/// Up to `usize::MAX / 2` permits; tasks sleep in `down` while there are none.
pub struct Semaphore<S: Sleeper> {
    /// Permits times `PERMIT`, plus `WAITERS`.
    count: AtomicUsize,
    waiters: WaitQueue<S>,
}

impl<S: Sleeper> Semaphore<S> {
    const_unless_loom! {
        /// A semaphore with `permits` permits to hand out.
        pub const fn new(permits: usize) -> Self {
            assert!(permits <= usize::MAX / PERMIT, "too many permits");
            Semaphore {
                count: AtomicUsize::new(permits * PERMIT),
                waiters: WaitQueue::named("semaphore wait queue"),
            }
        }
    }

    /// Take a permit, sleeping until one is free.
    pub fn down(&self) {
        S::might_sleep();
        if self.try_down() {
            return;
        }
        self.waiters.wait_until(|| self.down_or_flag());
    }

    /// Take a permit if one is free right now.
    pub fn try_down(&self) -> bool {
        let mut count = self.count.load(Ordering::Relaxed);
        while count >= PERMIT {
            // Acquire: what the task that gave the permit back did is now visible, as after a
            // lock's acquisition (a one-permit semaphore is used as a lock).
            match self.count.compare_exchange_weak(
                count,
                count - PERMIT,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => count = now,
            }
        }
        false
    }

    /// The wait queue's condition: take a permit, or make sure the flag is set before we sleep.
    fn down_or_flag(&self) -> bool {
        let mut count = self.count.load(Ordering::Relaxed);
        loop {
            let (new, taken) = if count >= PERMIT {
                (count - PERMIT, true)
            } else if count & WAITERS == 0 {
                (count | WAITERS, false)
            } else {
                return false;
            };
            match self
                .count
                .compare_exchange_weak(count, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return taken,
                Err(now) => count = now,
            }
        }
    }

    /// Give a permit back, waking a sleeper if the flag says there may be one.
    pub fn up(&self) {
        // Release: our work before `up` is visible to whoever takes this permit.
        let before = self.count.fetch_add(PERMIT, Ordering::Release);
        debug_assert!(before <= usize::MAX - PERMIT, "semaphore count overflow");
        if before & WAITERS != 0 {
            self.wake_waiter();
        }
    }

    #[cold]
    fn wake_waiter(&self) {
        self.waiters.locked(|waiters| {
            if waiters.is_empty() {
                // Nobody sleeps: a waiter queues before it sets the flag, and one already woken
                // queues again before it looks. So the flag may go, and `up` gets its fast
                // path back. Under the queue lock, nobody can queue meanwhile.
                self.count.fetch_and(!WAITERS, Ordering::Relaxed);
            } else {
                // The flag stays: the others still wait, and the next `up` must look too.
                waiters.wake_one();
            }
        });
    }

    /// `down`, with a guard that calls `up` when dropped.
    pub fn acquire(&self) -> SemaphorePermit<'_, S> {
        self.down();
        SemaphorePermit { semaphore: self }
    }

    /// `try_down`, with a guard that calls `up` when dropped.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_, S>> {
        self.try_down().then(|| SemaphorePermit { semaphore: self })
    }

    /// Permits free right now (stale as soon as it returns).
    pub fn available(&self) -> usize {
        self.count.load(Ordering::Relaxed) / PERMIT
    }

    /// Tasks waiting right now.
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }
}

/// A permit held; given back when dropped. A semaphore has no owner, so the permit may move
/// to another task and be given back there.
pub struct SemaphorePermit<'a, S: Sleeper> {
    semaphore: &'a Semaphore<S>,
}

impl<S: Sleeper> SemaphorePermit<'_, S> {
    /// Keep the permit for good: it is not given back (`up` will never be called for it).
    pub fn forget(self) {
        core::mem::forget(self);
    }
}

impl<S: Sleeper> Drop for SemaphorePermit<'_, S> {
    fn drop(&mut self) {
        self.semaphore.up();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::sleep::ThreadSleeper;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    type Sem = Semaphore<ThreadSleeper>;

    #[test]
    fn never_more_holders_than_permits() {
        const PERMITS: usize = 3;
        const THREADS: usize = 8;
        // Most `down`s here sleep, and on a busy host every wakeup waits for a time slice:
        // keep the rounds few.
        const ROUNDS: usize = 300;
        let sem = Arc::new(Sem::new(PERMITS));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (sem, inside, most) =
                    (Arc::clone(&sem), Arc::clone(&inside), Arc::clone(&most));
                std::thread::spawn(move || {
                    for r in 0..ROUNDS {
                        let _permit = sem.acquire();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        if (r + i).is_multiple_of(16) {
                            std::thread::yield_now();
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= PERMITS, "{most} holders of {PERMITS} permits");
        assert_eq!(
            most, PERMITS,
            "eight threads never filled three permits: the test proves little"
        );
        assert_eq!(sem.available(), PERMITS);
        assert_eq!(sem.waiters(), 0);
    }

    #[test]
    fn try_down_fails_when_none_is_left_and_up_gives_back() {
        let sem = Sem::new(2);
        assert!(sem.try_down());
        let p = sem.try_acquire().expect("a second permit");
        assert!(!sem.try_down() && sem.try_acquire().is_none());
        assert_eq!(sem.available(), 0);
        drop(p);
        assert_eq!(sem.available(), 1);
        sem.up();
        assert_eq!(sem.available(), 2);
    }

    #[test]
    fn down_sleeps_until_up() {
        let sem = Arc::new(Sem::new(0));
        let waiter = {
            let sem = Arc::clone(&sem);
            std::thread::spawn(move || sem.down())
        };
        while sem.waiters() == 0 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(10));
        assert!(!waiter.is_finished(), "down returned without a permit");
        sem.up();
        waiter.join().unwrap();
        assert_eq!(sem.available(), 0);
        // The flag left by the sleeper is cleared by the next `up` that finds nobody queued.
        sem.up();
        sem.up();
        assert_eq!(sem.available(), 2);
        assert_eq!(sem.count.load(Ordering::Relaxed) & WAITERS, 0);
    }

    #[test]
    fn a_permit_may_be_given_back_by_another_thread() {
        let sem = Arc::new(Sem::new(1));
        let permit = sem.acquire();
        let sem2 = Arc::clone(&sem);
        std::thread::scope(|s| {
            s.spawn(move || drop(permit));
        });
        assert_eq!(sem2.available(), 1);
        sem.acquire().forget();
        assert_eq!(sem.available(), 0);
    }
}

/// Loom model (`make loom`): a one-permit semaphore as a lock between two threads; both
/// finish (no lost wakeup) and the cell's accesses are ordered (mutual exclusion).
#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use crate::sync::sleep::ThreadSleeper;
    use loom::cell::UnsafeCell as Cell;
    // std's Arc, not loom's, as in the mutex models (src/sync/mutex.rs says why).
    use std::sync::Arc;

    struct Guarded {
        sem: Semaphore<ThreadSleeper>,
        count: Cell<u32>,
    }

    // SAFETY: `count` is only touched with the one permit held, which is what the model checks.
    unsafe impl Sync for Guarded {}

    impl Guarded {
        fn add_one(&self) {
            self.sem.down();
            // SAFETY: we hold the only permit (if not, loom reports this access).
            self.count.with_mut(|c| unsafe { *c += 1 });
            self.sem.up();
        }
    }

    #[test]
    fn loom_semaphore_one_permit_excludes_and_everyone_finishes() {
        loom::model(|| {
            let g = Arc::new(Guarded {
                sem: Semaphore::new(1),
                count: Cell::new(0),
            });
            let other = {
                let g = Arc::clone(&g);
                loom::thread::spawn(move || g.add_one())
            };
            g.add_one();
            other.join().unwrap();
            // SAFETY: the other thread has been joined.
            assert_eq!(g.count.with(|c| unsafe { *c }), 2);
            assert_eq!(g.sem.available(), 1);
        });
    }
}
