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

    fn might_sleep() {
        use crate::sync::preempt;
        let count = preempt::preempt_count();
        assert!(
            !preempt::in_interrupt(),
            "a sleeping lock taken in interrupt context (preempt count {count:#x}): an interrupt \
             handler cannot sleep; use an IrqSafeSpinLock"
        );
        crate::smp::refuse_sleep_in_posted_call("a sleeping lock");
        // IRQs masked counts only on a CPU that takes interrupts at all (without a GIC every
        // task runs masked).
        let masked = crate::arch::irqflags::irqs_disabled()
            && crate::percpu::current_id().is_some_and(crate::smp::interrupts_ready);
        assert!(
            count == 0 && crate::sync::irq::depth() == 0 && !masked,
            "a sleeping lock taken with preemption or IRQs off (preempt count {count:#x}, \
             IRQ-disable depth {}): a spin lock or IRQ-safe lock is held, and sleeping now would \
             leave it held while other tasks run",
            crate::sync::irq::depth()
        );
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
