//! The completion: wait until something has happened, said once by whoever made it happen
//! (chapter 17, "Spin or block").
//!
//! "Wait until the other CPU has started", "wait until the I/O is done": a flag plus a wait
//! queue, but with the race between setting the flag and sleeping solved once, here. As Linux's
//! `struct completion`, it counts: each `complete` lets exactly one `wait` through, now or
//! later (a wait that comes after the completion returns at once), and `complete_all` lets
//! every present and future waiter through until `reinit`.
//!
//! Unlike the locks in this folder, `complete` always takes the queue lock: completing is rare
//! and cheap to make simple. The queue lock is IRQ-safe (src/sync/waitqueue.rs), so an
//! interrupt handler may complete what a task waits for, the common case for I/O.

use super::shim::{Ordering, const_unless_loom};
use super::sleep::{AtomicUsize, Sleeper};
use super::waitqueue::WaitQueue;

/// `done` after `complete_all`: every wait passes and none consumes anything.
const ALL: usize = usize::MAX;

/// Something that will happen; tasks may wait for it.
pub struct Completion<S: Sleeper> {
    /// Completions not yet consumed by a wait, or `ALL`.
    done: AtomicUsize,
    waiters: WaitQueue<S>,
}

impl<S: Sleeper> Completion<S> {
    const_unless_loom! {
        /// Not yet completed.
        pub const fn new() -> Self {
            Completion {
                done: AtomicUsize::new(0),
                waiters: WaitQueue::named("completion wait queue"),
            }
        }
    }

    /// Sleep until completed, and consume one completion (unless `complete_all` was called).
    pub fn wait(&self) {
        S::might_sleep();
        self.waiters.wait_until(|| self.try_wait());
    }

    /// Consume one completion if there is one; never sleeps.
    pub fn try_wait(&self) -> bool {
        let mut done = self.done.load(Ordering::Acquire);
        loop {
            match done {
                0 => return false,
                ALL => return true,
                n => {
                    // Acquire: what the completer did before `complete` is visible after `wait`.
                    match self.done.compare_exchange_weak(
                        n,
                        n - 1,
                        Ordering::Acquire,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return true,
                        Err(now) => done = now,
                    }
                }
            }
        }
    }

    /// Let one waiter through: the longest sleeper, or the next task to `wait`.
    pub fn complete(&self) {
        // First the count, then the wake (the rule of src/sync/waitqueue.rs). Release: the
        // waiter that consumes this sees what we did before.
        let _ = self
            .done
            .fetch_update(Ordering::Release, Ordering::Relaxed, |n| {
                (n < ALL - 1).then_some(n + 1)
            });
        self.waiters.wake_one();
    }

    /// Let every waiter through, now and until `reinit`.
    pub fn complete_all(&self) {
        self.done.store(ALL, Ordering::Release);
        self.waiters.wake_all();
    }

    /// True if a `wait` would return at once (Linux's `completion_done`).
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed) != 0
    }

    /// Not completed again, to be reused. Only while nobody waits (as Linux's
    /// `reinit_completion`): a waiter between its check and its sleep would miss a completion
    /// consumed by this reset.
    pub fn reinit(&self) {
        self.done.store(0, Ordering::Relaxed);
    }

    /// Tasks waiting right now.
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }
}

impl<S: Sleeper> Default for Completion<S> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::sleep::ThreadSleeper;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    type C = Completion<ThreadSleeper>;

    /// `n` threads that wait once each and count themselves through; returns when all sleep.
    fn waiters(c: &Arc<C>, n: usize) -> (Arc<AtomicUsize>, Vec<std::thread::JoinHandle<()>>) {
        let through = Arc::new(AtomicUsize::new(0));
        let handles = (0..n)
            .map(|_| {
                let (c, through) = (Arc::clone(c), Arc::clone(&through));
                std::thread::spawn(move || {
                    c.wait();
                    through.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        while c.waiters() < n {
            std::thread::yield_now();
        }
        (through, handles)
    }

    #[test]
    fn complete_wakes_a_waiter() {
        let c = Arc::new(C::new());
        let (through, handles) = waiters(&c, 1);
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(through.load(Ordering::SeqCst), 0, "wait returned too early");
        assert!(!c.is_done());
        c.complete();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(through.load(Ordering::SeqCst), 1);
        assert!(!c.is_done(), "the waiter consumed the completion");
    }

    #[test]
    fn each_complete_lets_exactly_one_waiter_through() {
        let c = Arc::new(C::new());
        let (through, handles) = waiters(&c, 3);
        c.complete();
        c.complete();
        while through.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(
            through.load(Ordering::SeqCst),
            2,
            "two completions, three through"
        );
        assert_eq!(c.waiters(), 1);
        c.complete();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn complete_all_wakes_all_and_later_waits_pass() {
        let c = Arc::new(C::new());
        let (through, handles) = waiters(&c, 4);
        c.complete_all();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(through.load(Ordering::SeqCst), 4);
        assert!(c.is_done());
        c.wait(); // passes at once, and consumes nothing
        assert!(c.try_wait());
        c.reinit();
        assert!(!c.is_done() && !c.try_wait());
    }

    #[test]
    fn a_completion_before_the_wait_is_kept() {
        let c = C::new();
        c.complete();
        c.complete();
        assert!(c.is_done());
        c.wait();
        assert!(c.try_wait());
        assert!(!c.try_wait(), "two completions consumed three times");
    }
}

/// Loom models (`make loom`): a completer and waiters; every waiter must get through, whatever
/// the interleaving of the count, the queue and the sleep.
#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use crate::sync::sleep::ThreadSleeper;
    use loom::cell::UnsafeCell as Cell;
    // std's Arc, not loom's: a model that must deadlock unwinds through its drops, and a loom
    // Arc dropped after loom has stopped the execution panics again and aborts the test.
    use std::sync::Arc;

    struct Handoff {
        done: Completion<ThreadSleeper>,
        value: Cell<u32>,
    }

    // SAFETY: `value` is written before `complete` and read after `wait`, which is the ordering
    // the model checks.
    unsafe impl Sync for Handoff {}

    #[test]
    fn loom_completion_wakes_the_waiter_and_publishes() {
        loom::model(|| {
            let h = Arc::new(Handoff {
                done: Completion::new(),
                value: Cell::new(0),
            });
            let completer = {
                let h = Arc::clone(&h);
                loom::thread::spawn(move || {
                    // SAFETY: nobody reads before `wait` returns (loom checks it).
                    h.value.with_mut(|v| unsafe { *v = 42 });
                    h.done.complete();
                })
            };
            h.done.wait();
            // SAFETY: written before `complete`, read after `wait`.
            assert_eq!(h.value.with(|v| unsafe { *v }), 42);
            completer.join().unwrap();
            assert!(!h.done.is_done());
        });
    }

    #[test]
    fn loom_completion_complete_all_wakes_both() {
        loom::model(|| {
            let c = Arc::new(Completion::<ThreadSleeper>::new());
            let waiter = {
                let c = Arc::clone(&c);
                loom::thread::spawn(move || c.wait())
            };
            let completer = {
                let c = Arc::clone(&c);
                loom::thread::spawn(move || c.complete_all())
            };
            c.wait();
            waiter.join().unwrap();
            completer.join().unwrap();
        });
    }

    /// The bug: `complete` counts but does not wake. A waiter asleep before the count went up
    /// sleeps for ever; loom finds that schedule and reports the deadlock.
    #[test]
    #[should_panic(expected = "deadlock")]
    fn loom_completion_without_wake_is_caught() {
        loom::model(|| {
            let c = Arc::new(Completion::<ThreadSleeper>::new());
            let completer = {
                let c = Arc::clone(&c);
                loom::thread::spawn(move || {
                    c.done.fetch_add(1, Ordering::Release);
                })
            };
            c.wait();
            completer.join().unwrap();
        });
    }
}
