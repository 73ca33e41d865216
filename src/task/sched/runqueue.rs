//! Each CPU's scheduler state: its run queue, its current task and its idle task (chapters 15
//! and 16).
//!
//! A CPU's run queue is a FIFO (`RunQueue`, src/task/queue.rs) under an `IrqSafeSpinLock`, in a
//! `PerCpu`: IRQ-safe, because the tick and wakeups from interrupt handlers queue tasks too.
//! Next to it, `queued` repeats its length for looks that take no lock (the load balancer,
//! `spawn` choosing a CPU), and the `current`, `prev` and `idle` slots each own one reference
//! count of the task they point at (`Arc::into_raw`).
//!
//! The flow that was already running on a CPU becomes that CPU's task 0 the first time it meets
//! the scheduler (`current_ptr`): on a secondary CPU that flow is the idle loop, so task 0 is
//! the idle task; on the boot CPU it is the boot flow (the shell or the tests), and a separate
//! idle task is made for it (src/task/sched/idle.rs).
//!
//! Queueing a task on a CPU is `enqueue`: under that queue's lock the task's `cpu` becomes the
//! CPU, and `kick` then tells the CPU it has work (its need-resched flag, and a Reschedule IPI
//! if it is another CPU).

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use super::stats::Counters;
use super::task::{NewTask, Policy, Task};
use crate::arch::irqflags;
use crate::config::MAX_CPUS;
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::sync::IrqSafeSpinLock;
use crate::task::queue::RunQueue;
use crate::task::state::{CpuMask, Pid};

/// Tasks each CPU's run queue and timed-sleeper list have room for from the start.
pub(super) const INITIAL_ROOM: usize = 16;

/// One CPU's scheduler state.
pub(super) struct CpuSched {
    pub(super) queue: IrqSafeSpinLock<RunQueue<Arc<Task>>>,
    /// Tasks on `queue`, readable without its lock (the load balancer's first look).
    pub(super) queued: AtomicUsize,
    /// The running task, as `Arc::into_raw`: this slot owns one strong count. Null until the
    /// CPU first meets the scheduler.
    pub(super) current: AtomicPtr<Task>,
    /// The task the CPU just switched away from, owned (one count) until `finish_switch`.
    pub(super) prev: AtomicPtr<Task>,
    /// `prev` must move to another CPU (its mask no longer names this one): `finish_switch`
    /// queues it there.
    pub(super) prev_moves: AtomicBool,
    /// The CPU's idle task (owns one count), null until `init_cpu`.
    pub(super) idle: AtomicPtr<Task>,
    /// Switch at the next chance: set by the tick when a slice ends, and by a wake that
    /// queued a task here.
    pub(super) need_resched: AtomicBool,
    pub(super) counters: Counters,
}

impl CpuSched {
    const fn new() -> Self {
        CpuSched {
            queue: IrqSafeSpinLock::named("run queue", RunQueue::new()),
            queued: AtomicUsize::new(0),
            current: AtomicPtr::new(core::ptr::null_mut()),
            prev: AtomicPtr::new(core::ptr::null_mut()),
            prev_moves: AtomicBool::new(false),
            idle: AtomicPtr::new(core::ptr::null_mut()),
            need_resched: AtomicBool::new(false),
            counters: Counters {
                switches: AtomicU64::new(0),
                ticks: AtomicU64::new(0),
                busy_ticks: AtomicU64::new(0),
                wakeups: AtomicU64::new(0),
                migrations: AtomicU64::new(0),
                preemptions: AtomicU64::new(0),
            },
        }
    }
}

pub(super) static SCHED: PerCpu<CpuSched> =
    PerCpu::new([const { CacheAligned(CpuSched::new()) }; MAX_CPUS]);

/// This CPU's current task as a raw pointer, creating task 0 on first use.
pub(super) fn current_ptr(s: &CpuSched, cpu: usize) -> *mut Task {
    let p = s.current.load(Ordering::Relaxed);
    if !p.is_null() {
        return p;
    }
    let task = Task::new(NewTask {
        pid: 0,
        // On a secondary CPU, the flow that meets the scheduler is the idle loop.
        name: if cpu == crate::smp::boot_cpu() {
            alloc::format!("boot/cpu{cpu}")
        } else {
            alloc::format!("idle/{cpu}")
        },
        cpu,
        affinity: CpuMask::only(cpu),
        policy: Policy::Fifo,
        is_idle: false,
        stack: None,
        entry: None,
    });
    let p = Arc::into_raw(Arc::new(task)).cast_mut();
    s.current.store(p, Ordering::Relaxed);
    p
}

/// Borrow the task behind a slot pointer as an Arc with a count of its own.
///
/// # Safety
/// `p` came from `Arc::into_raw` and its slot still owns that count.
pub(super) unsafe fn clone_from_raw(p: *const Task) -> Arc<Task> {
    // SAFETY: the caller's contract: the allocation is live while the slot owns its count.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// The task running on this CPU (its task 0 if nothing was ever spawned here).
pub fn current() -> Arc<Task> {
    let flags = irqflags::local_irq_save();
    let cpu = percpu::this_cpu().id;
    let p = current_ptr(SCHED.for_cpu(cpu), cpu);
    // SAFETY: `current` owns a count on `p`; IRQs are masked so we cannot be switched away
    // (and the slot changed) between reading the pointer and taking our count.
    let task = unsafe { clone_from_raw(p) };
    irqflags::local_irq_restore(flags);
    task
}

/// The PID of the task running on this CPU.
pub fn current_pid() -> Pid {
    current().pid
}

/// The running task's user-context word (`Task::user_context`), found from the task word
/// alone: every system call asks for it, so it costs one `mrs` and one load, with no count
/// taken and no interrupt masking (Linux finds `current` the same way, in SP_EL0).
///
/// While a spawned task runs, the task word is the address of its own `preempt_count` field
/// (`Task::task_word`), so the task is that address minus the field's offset. A CPU's own flow
/// (task 0, the idle loop) uses the CPU's count instead and never has a user context. A
/// preemption anywhere in here changes nothing: the word read is this task's on any CPU.
pub fn current_user_context() -> usize {
    let word = crate::arch::task_word();
    if word == 0 || crate::sync::preempt::is_cpu_count_address(word) {
        return 0;
    }
    let task = (word - core::mem::offset_of!(Task, preempt_count)) as *const Task;
    // SAFETY: the word is the running task's own count (above), inside its `Task`, which the
    // CPU's reference keeps alive while it runs; the caller is that task.
    unsafe { (*task).user_context() }
}

/// Is the task whose address is `token` running on some CPU right now? (A mutex's optimistic
/// spin asks this about the owner.) Compares addresses only: it never dereferences.
pub fn task_is_running(token: usize) -> bool {
    (0..MAX_CPUS).any(|cpu| SCHED.for_cpu(cpu).current.load(Ordering::Relaxed) as usize == token)
}

/// The address naming the current task, for a mutex's owner field (aligned, never 0).
pub fn current_token() -> usize {
    let flags = irqflags::local_irq_save();
    let cpu = percpu::this_cpu().id;
    let p = current_ptr(SCHED.for_cpu(cpu), cpu);
    irqflags::local_irq_restore(flags);
    p as usize
}

/// Queue a runnable task on `cpu` and make sure that CPU notices.
pub(super) fn enqueue(cpu: usize, task: Arc<Task>) {
    let s = SCHED.for_cpu(cpu);
    {
        let mut q = s.queue.lock();
        task.cpu.store(cpu as u32, Ordering::Relaxed);
        q.push(task);
        s.queued.store(q.len(), Ordering::Release);
    }
    kick(cpu);
}

/// Tell `cpu` it has work: a flag, and an IPI unless it is this CPU.
pub(super) fn kick(cpu: usize) {
    let s = SCHED.for_cpu(cpu);
    s.need_resched.store(true, Ordering::Release);
    if percpu::current_id() != Some(cpu) && crate::smp::interrupts_ready(cpu) {
        crate::smp::ipi::send(crate::smp::ipi::Ipi::Reschedule, [cpu]);
    }
}
