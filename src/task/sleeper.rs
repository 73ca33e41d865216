//! The scheduler as the sleeping locks see it (chapter 17, "Spin or block").
//!
//! The mutex, semaphore, rw-semaphore, wait queue and completion in src/sync are written once
//! against the `Sleeper` trait, so the host tests run them on std threads and loom checks them.
//! This is the kernel's side of that contract: a task is an `Arc<Task>`, its token is the
//! task's address (aligned, so the mutex's flag bit is free), "running" means some CPU's
//! current task, and sleeping is the scheduler's prepare / sleep / finish protocol.
//!
//! The kernel's names for the locks are here too: `Mutex<T>` is `sync::Mutex<T, KernelSleeper>`.

use alloc::sync::Arc;

use super::sched::{self, Task};
use crate::sync::sleep::Sleeper;

/// The kernel scheduler behind the sleeping locks.
pub struct KernelSleeper;

impl Sleeper for KernelSleeper {
    type Task = Arc<Task>;

    fn current() -> Arc<Task> {
        sched::current()
    }

    fn current_token() -> usize {
        sched::current_token()
    }

    fn token_is_running(token: usize) -> bool {
        sched::task_is_running(token)
    }

    fn prepare_to_sleep() {
        sched::prepare_to_sleep();
    }

    fn sleep() {
        sched::sleep();
    }

    fn finish_wait() {
        sched::finish_wait();
    }

    fn wake(task: &Arc<Task>) -> bool {
        sched::wake(task)
    }

    fn cpu_relax() {
        crate::arch::cpu_relax();
    }
}

/// A mutex whose waiters sleep: chapter 17.
pub type Mutex<T> = crate::sync::mutex::Mutex<T, KernelSleeper>;
/// A counting semaphore.
pub type Semaphore = crate::sync::semaphore::Semaphore<KernelSleeper>;
/// A reader-writer semaphore.
pub type RwSemaphore<T> = crate::sync::rwsem::RwSemaphore<T, KernelSleeper>;
/// A one-shot (or counted) event to wait for.
pub type Completion = crate::sync::completion::Completion<KernelSleeper>;
/// Tasks waiting for a condition.
pub type WaitQueue = crate::sync::waitqueue::WaitQueue<KernelSleeper>;
