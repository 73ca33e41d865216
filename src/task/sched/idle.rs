//! Each CPU's idle task, and the scheduler's start on each CPU (chapter 16, "Scheduling on
//! several CPUs").
//!
//! The idle task is what a CPU runs when no task may: it never sleeps and is never queued.
//! Each pass of its loop (`idle_once`) runs what is queued or can be pulled from a busy CPU
//! (src/task/sched/balance.rs), and otherwise reports a quiescent state to RCU and waits in WFI
//! for an interrupt, checking for work and waiting with IRQs masked so that a wake's IPI cannot
//! slip in between.
//!
//! `init_cpu` starts a CPU's scheduler. On a secondary CPU the idle loop itself becomes task 0
//! and the idle task; on the boot CPU, once the heap exists, a separate idle task gets a stack
//! of its own, `READY` is set (before it nothing may sleep anywhere), and the two waits that
//! may sleep from then on are hooked in: `synchronize_rcu`'s, and the console reader's
//! (src/task/input.rs).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use super::balance::pull;
use super::lifecycle::PIDS;
use super::runqueue::{INITIAL_ROOM, SCHED, clone_from_raw, current_ptr};
use super::sleep::{SLEEPERS, wait_a_tick_if_allowed};
use super::switch::{Reason, schedule};
use super::task::{NewTask, Policy, Task};
use crate::arch::irqflags;
use crate::percpu;
use crate::task::stack::{DEFAULT_STACK_SIZE, Stack};
use crate::task::state::CpuMask;

/// Set once the boot CPU has its idle task: before that nothing may sleep there.
pub(super) static READY: AtomicBool = AtomicBool::new(false);

/// Make this CPU's scheduler ready: its current flow becomes task 0 and it gets an idle task.
/// On a secondary CPU, call from the idle loop (task 0 *is* the idle task); on the boot CPU,
/// once the heap is up (the idle task needs a stack).
pub fn init_cpu(cpu: usize, current_is_idle: bool) {
    let s = SCHED.for_cpu(cpu);
    // Room up front in the structures a sleep and a wake use, so that sleeping (in
    // synchronize_rcu, say) does not grow them, and heap accounting in leak tests stays exact.
    s.queue.lock().reserve(INITIAL_ROOM);
    SLEEPERS.for_cpu(cpu).lock().reserve(INITIAL_ROOM);
    let me = current_ptr(s, cpu);
    if current_is_idle {
        // SAFETY: `current` owns a count on `me`; the idle slot gets one of its own.
        let idle = unsafe { clone_from_raw(me) };
        idle.is_idle.store(true, Ordering::Relaxed);
        s.idle
            .store(Arc::into_raw(idle).cast_mut(), Ordering::Release);
    } else {
        let Some(stack) = Stack::new(DEFAULT_STACK_SIZE) else {
            log::error!("sched: no memory for cpu{cpu}'s idle task; tasks there cannot sleep");
            return;
        };
        let pid = PIDS.next();
        let idle = Task::new(NewTask {
            pid,
            name: alloc::format!("idle/{cpu}"),
            cpu,
            affinity: CpuMask::only(cpu),
            policy: Policy::Fifo,
            is_idle: true,
            stack: Some(stack),
            entry: Some(Box::new(move || idle_loop())),
        });
        s.idle
            .store(Arc::into_raw(Arc::new(idle)).cast_mut(), Ordering::Release);
    }
    if cpu == crate::smp::boot_cpu() {
        READY.store(true, Ordering::Release);
        // synchronize_rcu and rcu_barrier wait for other CPUs' ticks: a task that may sleep
        // gives its CPU away for a tick instead of spinning.
        crate::rcu::set_wait_hook(wait_a_tick_if_allowed);
        // The shell's reader sleeps, and its CPU runs other tasks, until a key arrives.
        crate::task::input::install();
    }
}

/// Start a secondary CPU's scheduler (its idle loop becoming task 0 and idle task) once the
/// boot CPU's has started; until then nothing can be queued anywhere. Idempotent.
pub fn start_secondary_if_ready(cpu: usize) {
    if SCHED.for_cpu(cpu).idle.load(Ordering::Acquire).is_null() && READY.load(Ordering::Acquire) {
        init_cpu(cpu, true);
    }
}

/// The boot CPU's idle task: sleep in WFI until there is work, pull work from busy CPUs.
fn idle_loop() -> ! {
    loop {
        idle_once(|| false);
    }
}

/// One pass of an idle loop: run what is queued or can be pulled, else report a quiescent
/// state to RCU and sleep in WFI until an interrupt. `more_work` lets the secondary idle loop
/// add its own reason to stay awake (a posted cross-CPU call).
pub fn idle_once(more_work: impl Fn() -> bool) {
    let cpu = percpu::this_cpu().id;
    let s = SCHED.for_cpu(cpu);
    // A secondary CPU idles before the heap exists; its scheduler starts (task 0 becoming its
    // idle task) once the boot CPU's has: nothing can be queued anywhere before that.
    start_secondary_if_ready(cpu);
    if s.queued.load(Ordering::Acquire) > 0 || s.need_resched.load(Ordering::Relaxed) || pull(cpu) {
        s.need_resched.store(false, Ordering::Relaxed);
        schedule(Reason::Yield);
        return;
    }
    crate::rcu::rcu_idle(cpu);
    if crate::smp::interrupts_ready(cpu) {
        // Check and sleep with IRQs masked: a wake's IPI that arrives between the check and
        // the WFI stays pending, and a pending interrupt ends WFI even while masked.
        irqflags::local_irq_disable();
        if s.queued.load(Ordering::Acquire) == 0
            && !s.need_resched.load(Ordering::Relaxed)
            && !more_work()
        {
            irqflags::wait_for_interrupt();
        }
        irqflags::local_irq_enable();
    } else {
        crate::arch::wait_for_event();
    }
}
