//! The wait queue: where tasks sleep until a condition holds, and where wakers find them
//! (chapter 17, "Spin or block").
//!
//! Every sleeping lock in this folder is an atomic word for its fast path plus a `WaitQueue`
//! for the tasks that found the word unfavourable. The queue is a FIFO of sleepers under an
//! IRQ-safe spin lock: a sleeping lock is built from a spinning one, held only for a few
//! instructions at a time and never across a sleep.
//!
//! `wait_until` is the race-free loop of src/sync/sleep.rs. The rule that makes it race-free
//! is on the waker's side: **make the condition true first, then wake.** A waiter enqueues
//! itself before it checks; a waker changes the condition before it takes the queue lock. The
//! queue lock orders the two queue sections, and either order works out:
//! - the waiter's section came first: the waker's section finds the entry and wakes it, and a
//!   wake after `prepare_to_sleep` makes `sleep` return at once even if it has not started;
//! - the waker's section came first: everything the waker did before it, the condition
//!   included, happens before the waiter's section, so the waiter's check sees the condition.
//!
//! So no wakeup is lost, which the loom models of the locks built on this check.
//!
//! Wakers pop entries and wake them while holding the queue lock. An entry in the queue is
//! therefore always a task inside this very wait, between `prepare_to_sleep` and its next
//! check: a wake never strays into some later wait of the same task, and popping an entry
//! guarantees that task one more look at the condition.
//!
//! The lock validator (chapter 12) keys a lock's class by where it was constructed. The sleeping
//! locks build their queues in their own constructors, so every mutex's queue lock is one class
//! ("mutex wait queue"), every semaphore's another, and so on. That is all the validator needs:
//! a queue lock is a leaf, held for a few instructions and never nested in another queue's. And
//! its table of 64 classes is not spent on every mutex in the kernel.
//!
//! The entries live in a `VecDeque`, which allocates when the queue first grows. Linux links
//! entries that live on each waiter's stack instead (an intrusive list, no allocation); the
//! container keeps this version short and free of raw pointers.

use alloc::collections::VecDeque;

use super::shim::const_unless_loom;
use super::sleep::Sleeper;

/// A waiting task: its handle for `wake`, its token to find its own entry again.
struct Waiter<S: Sleeper> {
    task: S::Task,
    token: usize,
}

/// Tasks waiting for a condition, first come first woken.
pub struct WaitQueue<S: Sleeper> {
    waiters: QueueLock<VecDeque<Waiter<S>>>,
}

impl<S: Sleeper> WaitQueue<S> {
    const_unless_loom! {
        /// An empty queue, whose spin lock's validator class is the caller's source location.
        #[track_caller]
        pub const fn new() -> Self {
            Self::named("")
        }
    }

    const_unless_loom! {
        /// An empty queue with a name for the lock validator's reports.
        #[track_caller]
        pub const fn named(name: &'static str) -> Self {
            WaitQueue {
                waiters: QueueLock::named(name, VecDeque::new()),
            }
        }
    }

    /// Sleep until `condition()` returns true, then return how many times we slept.
    ///
    /// `condition` runs without the queue lock held and may act as well as look (take a lock
    /// word, consume a count): it is called until it returns true, and returns true exactly
    /// once. Whoever makes it true must then call one of the wake functions.
    pub fn wait_until(&self, mut condition: impl FnMut() -> bool) -> usize {
        // The common case costs no lock at all.
        if condition() {
            return 0;
        }
        let token = S::current_token();
        let task = S::current();
        let mut sleeps = 0;
        loop {
            // Before enqueuing: a waker that finds the entry must find us "about to sleep".
            S::prepare_to_sleep();
            {
                let mut waiters = self.waiters.lock();
                // A wake pops the entry; anything else that woke us left it queued, in place.
                if !waiters.iter().any(|w| w.token == token) {
                    waiters.push_back(Waiter {
                        task: task.clone(),
                        token,
                    });
                }
            }
            // After enqueuing: a waker that changed the condition after this check finds us.
            if condition() {
                self.remove(token);
                S::finish_wait();
                return sleeps;
            }
            S::sleep();
            sleeps += 1;
        }
    }

    /// Take our entry out, unless a waker already did.
    fn remove(&self, token: usize) {
        let mut waiters = self.waiters.lock();
        if let Some(i) = waiters.iter().position(|w| w.token == token) {
            waiters.remove(i);
        }
    }

    /// Run `f` with the queue locked: the waiters it sees cannot change until it returns.
    ///
    /// For a waker that must decide on something together with the queue's contents, as a
    /// mutex's unlock decides whether to leave its "waiters" flag set (src/sync/mutex.rs).
    pub fn locked<R>(&self, f: impl FnOnce(&mut Waiters<'_, S>) -> R) -> R {
        let mut queue = self.waiters.lock();
        f(&mut Waiters { queue: &mut queue })
    }

    /// Wake the longest waiter; false if nobody waits. Make the condition true first.
    pub fn wake_one(&self) -> bool {
        self.locked(|w| w.wake_one())
    }

    /// Wake every waiter; how many there were. Make the condition true first.
    pub fn wake_all(&self) -> usize {
        self.locked(|w| w.wake_all())
    }

    /// Tasks waiting right now (stale as soon as it returns: for statistics and tests).
    pub fn len(&self) -> usize {
        self.waiters.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: Sleeper> Default for WaitQueue<S> {
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

/// The waiters of a locked `WaitQueue` (see `WaitQueue::locked`).
pub struct Waiters<'a, S: Sleeper> {
    queue: &'a mut VecDeque<Waiter<S>>,
}

impl<S: Sleeper> Waiters<'_, S> {
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Pop the longest waiter and wake it; false if there was none.
    ///
    /// True even if `Sleeper::wake` says the task was already awake (woken by something
    /// else): it is still inside `wait_until` and will look at the condition again, which is
    /// all a wake promises.
    pub fn wake_one(&mut self) -> bool {
        match self.queue.pop_front() {
            Some(waiter) => {
                S::wake(&waiter.task);
                true
            }
            None => false,
        }
    }

    /// Pop and wake every waiter; how many there were.
    pub fn wake_all(&mut self) -> usize {
        let n = self.queue.len();
        for waiter in self.queue.drain(..) {
            S::wake(&waiter.task);
        }
        n
    }
}

/// The queue's lock: IRQ-safe, because an interrupt handler may wake a queue (completing a
/// `Completion` is the classic case) on a CPU whose interrupted code holds the same lock.
#[cfg(not(loom))]
type QueueLock<T> = super::IrqSafeSpinLock<T>;

/// Under loom the crate's spin locks are uninstrumented (src/sync/spinlock/mod.rs,
/// `DefaultRawLock`): loom would not see the order the queue lock imposes, which the
/// no-lost-wakeup argument above rests on, and would report wakeups lost that cannot be. So the
/// models use loom's own mutex, which loom sees and which orders exactly as a spin lock does.
#[cfg(loom)]
struct QueueLock<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> QueueLock<T> {
    fn named(_name: &'static str, value: T) -> Self {
        QueueLock(loom::sync::Mutex::new(value))
    }

    fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::sleep::ThreadSleeper;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[test]
    fn a_true_condition_returns_at_once_without_queueing() {
        let q: WaitQueue<ThreadSleeper> = WaitQueue::new();
        assert_eq!(q.wait_until(|| true), 0);
        assert!(q.is_empty());
    }

    #[test]
    fn waking_an_empty_queue_wakes_nobody() {
        let q: WaitQueue<ThreadSleeper> = WaitQueue::new();
        assert!(!q.wake_one());
        assert_eq!(q.wake_all(), 0);
    }

    /// One waiter per thread, each with its own condition, queued in a known order.
    struct Waiting {
        queue: WaitQueue<ThreadSleeper>,
        allowed: [AtomicBool; 3],
        /// How often each waiter has looked at its condition.
        checks: [AtomicUsize; 3],
    }

    /// Waiters 0, 1, 2 queue in that order and are all asleep when this returns. A waiter
    /// that has checked twice (once before enqueuing, once after) is inside `sleep`, which
    /// only a wake ends: so setting `allowed` alone cannot let it through.
    fn three_asleep() -> (Arc<Waiting>, Vec<std::thread::JoinHandle<usize>>) {
        let w = Arc::new(Waiting {
            queue: WaitQueue::new(),
            allowed: [const { AtomicBool::new(false) }; 3],
            checks: [const { AtomicUsize::new(0) }; 3],
        });
        let mut handles = Vec::new();
        for i in 0..3 {
            let wi = Arc::clone(&w);
            handles.push(std::thread::spawn(move || {
                wi.queue.wait_until(|| {
                    wi.checks[i].fetch_add(1, Ordering::SeqCst);
                    wi.allowed[i].load(Ordering::SeqCst)
                })
            }));
            while w.checks[i].load(Ordering::SeqCst) < 2 {
                std::thread::yield_now();
            }
        }
        assert_eq!(w.queue.len(), 3);
        (w, handles)
    }

    #[test]
    fn wake_one_wakes_the_longest_waiter_only() {
        let (w, mut handles) = three_asleep();
        for a in &w.allowed {
            a.store(true, Ordering::SeqCst);
        }
        assert!(w.queue.wake_one());
        let first = handles.remove(0);
        assert_eq!(first.join().unwrap(), 1, "waiter 0 slept once");
        assert_eq!(w.queue.len(), 2);
        assert_eq!(
            w.checks[1].load(Ordering::SeqCst),
            2,
            "waiter 1 looked: woken too"
        );
        assert_eq!(
            w.checks[2].load(Ordering::SeqCst),
            2,
            "waiter 2 looked: woken too"
        );
        assert_eq!(w.queue.wake_all(), 2);
        for h in handles {
            assert_eq!(h.join().unwrap(), 1);
        }
        assert!(w.queue.is_empty());
    }

    #[test]
    fn a_woken_waiter_whose_condition_is_false_sleeps_again() {
        let (w, handles) = three_asleep();
        assert_eq!(w.queue.wake_all(), 3);
        // Each looks again, finds its condition false, and queues again.
        for i in 0..3 {
            while w.checks[i].load(Ordering::SeqCst) < 3 || w.queue.len() < 3 {
                std::thread::yield_now();
            }
        }
        for a in &w.allowed {
            a.store(true, Ordering::SeqCst);
        }
        assert_eq!(w.queue.wake_all(), 3);
        for h in handles {
            assert_eq!(
                h.join().unwrap(),
                2,
                "slept, woke to a false condition, slept"
            );
        }
    }
}
