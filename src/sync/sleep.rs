//! What a sleeping lock needs from a scheduler, and nothing more (chapter 17, "Spin or block").
//!
//! A spin lock's waiter burns its CPU until the holder lets go. A sleeping lock's waiter gives
//! the CPU to another task and asks to be woken: worth it when the wait is long (the holder may
//! itself sleep, or do I/O), a waste when it is shorter than two context switches. The locks in
//! this folder (`Mutex`, `Semaphore`, `RwSemaphore`, `Completion`, all built on `WaitQueue`)
//! make that choice, and `Sleeper` is the whole of what they ask the scheduler for: who am I,
//! is that task on a CPU, and the three steps of going to sleep without missing a wakeup.
//!
//! The three steps exist because "check the condition, then sleep" has a window: the waker may
//! make the condition true and look for sleepers between the check and the sleep, find none,
//! and the waiter then sleeps for ever (the lost wakeup). So a waiter first says it is *about*
//! to sleep, then puts itself where wakers look, then checks, and only then sleeps:
//!
//! ```text
//!     prepare_to_sleep()        // from here a wake is remembered
//!     enqueue self              // wakers can find us
//!     if condition { dequeue self; finish_wait(); return }
//!     sleep()                   // returns at once if a wake came since prepare_to_sleep
//! ```
//!
//! A waker makes the condition true first and looks for sleepers second. Whatever the
//! interleaving, either the waiter's check sees the condition, or the waker finds the waiter
//! and its wake makes `sleep` return. Linux spells the same steps `set_current_state`,
//! `add_wait_queue`, `schedule` and `__set_current_state(TASK_RUNNING)`.
//!
//! The kernel's implementation lives with the scheduler in src/task/. The locks are generic
//! over `Sleeper`, so they also run on the host: `ThreadSleeper` (tests and the host benchmark) plays a task with
//! a thread, std threads with `park`/`unpark` in unit tests, and loom's threads with a
//! condition variable in the models (`make loom`).

/// `AtomicUsize` for the sleeping locks: loom's under `--cfg loom`, core's otherwise, as the
/// other atomics in src/sync/shim.rs (which has no `AtomicUsize`: tokens are its first user).
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::AtomicUsize;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicUsize;

/// The scheduler, as the sleeping locks see it.
///
/// All functions act on the *current* task except `wake` and `token_is_running`. Every lock
/// in this folder follows the protocol in the module doc: `prepare_to_sleep`, publish itself
/// to wakers, re-check, then `sleep` or `finish_wait`.
pub trait Sleeper: 'static {
    /// A handle to a task that can be woken (cheap to clone).
    ///
    /// Wait queues hold one per waiter and call `wake` on it from another task, perhaps on
    /// another CPU, hence `Send + Sync`.
    type Task: Clone + Send + Sync + 'static;

    /// The current task's handle.
    fn current() -> Self::Task;

    /// A nonzero number naming the current task (for a mutex's owner field).
    ///
    /// Requirements, which `Mutex` relies on:
    /// - nonzero, and unique among live tasks (0 means "no owner");
    /// - stable: the same task always gets the same token;
    /// - bit 0 clear: a mutex keeps its "waiters" flag in that bit of the same word. A task's
    ///   address (any alignment of 2 or more) or an id shifted left by one both qualify.
    fn current_token() -> usize;

    /// Is the task named `token` running on a CPU right now? (optimistic spinning asks this)
    ///
    /// A mutex waiter spins while the owner runs, since the owner may let go soon, and goes to
    /// sleep once it does not: a descheduled owner cannot release the lock before it is
    /// scheduled again. Must be safe to call with any token, even one of a task that has since
    /// exited (it then answers false or a harmless stale answer).
    fn token_is_running(token: usize) -> bool;

    /// Mark the current task as about to sleep. A `wake` after this makes the next `sleep` return at once.
    fn prepare_to_sleep();

    /// Sleep until woken; returns at once if woken since `prepare_to_sleep`.
    ///
    /// May also return early for other reasons (a spurious wakeup): callers re-check their
    /// condition in a loop. Never called with a spin lock held.
    fn sleep();

    /// The condition came true before sleeping: stop being about to sleep.
    fn finish_wait();

    /// Wake `task` if it sleeps or is about to; true if this call woke it.
    ///
    /// Wait queues call this with their IRQ-safe spin lock held (so that a woken entry is
    /// always a live wait, see src/sync/waitqueue.rs): it must not sleep, and must not take a
    /// lock that anyone holds while taking a wait queue's lock.
    fn wake(task: &Self::Task) -> bool;

    /// Pause politely inside a spin loop.
    fn cpu_relax();

    /// Called first by every operation that may sleep, even when it would not need to: a
    /// sleeping lock taken where sleeping is forbidden (an interrupt handler, under a spin lock,
    /// with IRQs masked) must be refused every time, not only when it happens to be contended.
    /// Linux calls this `might_sleep()`. The kernel panics saying why; the default does nothing.
    fn might_sleep() {}
}

#[cfg(test)]
pub(crate) use host::ThreadSleeper;
/// The host benchmark measures quartet's mutex with host threads playing tasks.
#[cfg(all(feature = "host-bench", not(test)))]
pub use host::ThreadSleeper;

#[cfg(any(test, feature = "host-bench"))]
mod host {
    use super::Sleeper;
    use std::sync::Arc;
    // Tokens only name threads; they take part in no model, so a plain std counter serves
    // both std and loom (under loom it keeps counting across executions, which is harmless).
    use core::sync::atomic::AtomicUsize as TokenCounter;

    /// The host's task: one per thread, created on first use.
    pub struct ThreadRecord {
        token: usize,
        bed: Bed,
    }

    impl ThreadRecord {
        fn for_current_thread() -> Arc<ThreadRecord> {
            static NEXT_ID: TokenCounter = TokenCounter::new(1);
            let id = NEXT_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            Arc::new(ThreadRecord {
                // Shifted left: bit 0 is the mutex's waiters flag.
                token: id << 1,
                bed: Bed::new(),
            })
        }

        #[cfg_attr(any(loom, not(test)), allow(dead_code))]
        pub(crate) fn token(&self) -> usize {
            self.token
        }
    }

    /// Where a std thread sleeps: an "about to sleep" flag, and `park`/`unpark`. `park` may
    /// return spuriously, and an `unpark` that comes before the `park` is remembered, so
    /// `sleep` loops on the flag, which alone says whether a wake came.
    #[cfg(not(loom))]
    struct Bed {
        thread: std::thread::Thread,
        /// 1 between `prepare_to_sleep` and a wake or `finish_wait`.
        about_to_sleep: core::sync::atomic::AtomicU8,
    }

    #[cfg(not(loom))]
    impl Bed {
        fn new() -> Self {
            Bed {
                thread: std::thread::current(),
                about_to_sleep: core::sync::atomic::AtomicU8::new(0),
            }
        }

        fn prepare(&self) {
            // Relaxed suffices: the wait queue's lock orders this store before any waker that
            // finds our entry, and that waker's swap reads it.
            self.about_to_sleep
                .store(1, core::sync::atomic::Ordering::Relaxed);
        }

        fn sleep(&self) {
            // Acquire pairs with `wake`'s swap: once we see the wake, we see what the waker
            // did before it.
            while self
                .about_to_sleep
                .load(core::sync::atomic::Ordering::Acquire)
                != 0
            {
                std::thread::park();
            }
        }

        fn finish(&self) {
            self.about_to_sleep
                .store(0, core::sync::atomic::Ordering::Relaxed);
        }

        fn wake(&self) -> bool {
            if self
                .about_to_sleep
                .swap(0, core::sync::atomic::Ordering::AcqRel)
                == 0
            {
                return false;
            }
            self.thread.unpark();
            true
        }
    }

    /// Where a loom thread sleeps: the same flag, under a loom mutex, and a condition variable.
    /// Not loom's `park`: loom's `unpark` also ends a *mutex* wait, so waking a waiter that is
    /// blocked on the wait queue's lock (on its way to dequeue itself) would hand it a lock
    /// still held, and loom stops with "expected to be able to acquire lock".
    #[cfg(loom)]
    struct Bed {
        about_to_sleep: loom::sync::Mutex<bool>,
        woken: loom::sync::Condvar,
    }

    #[cfg(loom)]
    impl Bed {
        fn new() -> Self {
            Bed {
                about_to_sleep: loom::sync::Mutex::new(false),
                woken: loom::sync::Condvar::new(),
            }
        }

        fn prepare(&self) {
            *self.about_to_sleep.lock().unwrap() = true;
        }

        fn sleep(&self) {
            let mut about = self.about_to_sleep.lock().unwrap();
            while *about {
                about = self.woken.wait(about).unwrap();
            }
        }

        fn finish(&self) {
            *self.about_to_sleep.lock().unwrap() = false;
        }

        fn wake(&self) -> bool {
            let mut about = self.about_to_sleep.lock().unwrap();
            if !*about {
                return false;
            }
            *about = false;
            self.woken.notify_one();
            true
        }
    }

    #[cfg(not(loom))]
    std::thread_local! {
        static ME: Arc<ThreadRecord> = ThreadRecord::for_current_thread();
    }

    #[cfg(loom)]
    loom::thread_local! {
        static ME: Arc<ThreadRecord> = ThreadRecord::for_current_thread();
    }

    /// `Sleeper` for host tests: a thread plays a task (std threads in unit tests, loom's
    /// threads under `--cfg loom`), each with its own `ThreadRecord`.
    pub struct ThreadSleeper;

    impl Sleeper for ThreadSleeper {
        type Task = Arc<ThreadRecord>;

        fn current() -> Self::Task {
            ME.with(Arc::clone)
        }

        fn current_token() -> usize {
            ME.with(|r| r.token)
        }

        /// Host threads are never descheduled as far as the test can tell, so every owner
        /// counts as running and a mutex waiter always spins its bounded number of times first.
        fn token_is_running(_token: usize) -> bool {
            true
        }

        fn prepare_to_sleep() {
            ME.with(|r| r.bed.prepare());
        }

        fn sleep() {
            ME.with(|r| r.bed.sleep());
        }

        fn finish_wait() {
            ME.with(|r| r.bed.finish());
        }

        fn wake(task: &Self::Task) -> bool {
            task.bed.wake()
        }

        /// A spin-loop hint, as on the target, not the host's `arch::cpu_relax` (a yield): the
        /// spin is bounded anyway, and on a busy host a yield costs a whole time slice.
        #[cfg(not(loom))]
        fn cpu_relax() {
            core::hint::spin_loop();
        }

        /// Under loom a spinning thread must give loom's scheduler a turn (src/arch/host.rs).
        #[cfg(loom)]
        fn cpu_relax() {
            crate::arch::cpu_relax();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn tokens_are_nonzero_distinct_and_leave_bit_0_clear() {
        let mine = ThreadSleeper::current_token();
        let theirs = std::thread::spawn(ThreadSleeper::current_token)
            .join()
            .unwrap();
        assert_ne!(mine, 0);
        assert_ne!(mine, theirs);
        assert_eq!(mine & 1, 0);
        assert_eq!(theirs & 1, 0);
        assert_eq!(
            mine,
            ThreadSleeper::current_token(),
            "a token must be stable"
        );
        assert_eq!(ThreadSleeper::current().token(), mine);
    }

    #[test]
    fn a_wake_before_sleep_makes_sleep_return_at_once() {
        ThreadSleeper::prepare_to_sleep();
        assert!(ThreadSleeper::wake(&ThreadSleeper::current()));
        ThreadSleeper::sleep(); // would hang if the wake were lost
        assert!(
            !ThreadSleeper::wake(&ThreadSleeper::current()),
            "nobody is about to sleep: nothing to wake"
        );
    }

    #[test]
    fn finish_wait_cancels_the_sleep() {
        ThreadSleeper::prepare_to_sleep();
        ThreadSleeper::finish_wait();
        assert!(!ThreadSleeper::wake(&ThreadSleeper::current()));
    }

    #[test]
    fn wake_wakes_a_sleeping_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        let woke = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let woke = Arc::clone(&woke);
            std::thread::spawn(move || {
                ThreadSleeper::prepare_to_sleep();
                tx.send(ThreadSleeper::current()).unwrap();
                ThreadSleeper::sleep();
                woke.store(true, Ordering::Relaxed);
            })
        };
        let task = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !woke.load(Ordering::Relaxed),
            "sleep returned without a wake"
        );
        assert!(ThreadSleeper::wake(&task));
        sleeper.join().unwrap();
        assert!(woke.load(Ordering::Relaxed));
    }
}
