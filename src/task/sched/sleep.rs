//! Sleeping and waking (chapter 16, "Scheduling on several CPUs"; chapter 17 builds the
//! sleeping locks on it).
//!
//! A task that waits for a condition announces the sleep, makes itself findable, checks, and
//! only then sleeps; a waker makes the condition true first and then wakes:
//!
//! ```text
//! sleeper                                        waker
//! loop {                                         condition = true;
//!     prepare_to_sleep();     // Sleeping        wake(&task);
//!     put me where the waker looks;
//!     if condition { finish_wait(); break; }
//!     sleep();                // off the CPU, unless woken since prepare_to_sleep
//! }
//! ```
//!
//! `wait` (src/task/sched/lifecycle.rs), `sleep_ticks` below, the console's input wait
//! (src/task/input.rs) and the sleeping locks (src/task/sleeper.rs) are all this loop.
//!
//! # The protocol's invariants
//! Every part of the scheduler keeps these; each is what one of the races below needs.
//! 1. **Only a task announces its own sleep.** `prepare_to_sleep` moves the running task from
//!    Running to Sleeping; nothing else ever moves a task into Sleeping.
//! 2. **No wake is lost.** A waker that comes after the announcement finds the task Sleeping
//!    and wakes it. One that came before it made the condition true before it looked, so the
//!    sleeper's check, made after the announcement, sees the condition.
//! 3. **`asleep` means off the CPU.** Only `schedule` sets it, under the run-queue lock of the
//!    task's CPU, as the task leaves the CPU; only `wake` clears it, under the same lock. A
//!    task that is Sleeping but not `asleep` is still between its announcement and its switch:
//!    a wake then only cancels the sleep (Sleeping -> Running), and `schedule(Sleep)`, which
//!    looks at the state under that lock, sees Running and returns: the task carries on.
//! 4. **A task's `cpu` changes only under that CPU's run-queue lock** (a wake that queues it,
//!    a pull that moves it), so `wake` reads `cpu`, locks that queue and reads `cpu` again: when
//!    the two agree, the lock it holds is the one that decides.
//! 5. **Nothing preempts a task mid-protocol.** `preempt_on_irq_exit` leaves alone a task that
//!    is not Running, so no task is switched away (and queued as Runnable) between its
//!    announcement and its `sleep`.
//! 6. **A sleeping task is on no run queue; a woken one on exactly one**, that of its CPU, put
//!    there by the wake that cleared `asleep`. It may still be `on_cpu` on the CPU it fell
//!    asleep on until that CPU finishes the switch; nothing runs it before then (that CPU
//!    finishes the switch before it picks again, and `pull` passes over tasks still `on_cpu`).
//! 7. **The idle task never sleeps.** It is what a CPU runs when everything else sleeps, so
//!    `prepare_to_sleep` skips it and `sleep` in it yields and returns: its caller checks again.
//! 8. **Anyone may wake; only a task may sleep.** `wake` takes nothing but an IRQ-safe run-queue
//!    lock and never sleeps, so interrupt handlers and holders of spin locks may call it.
//!    `sleep` refuses wherever `schedule` does (`switch_allowed`), and on a CPU that has no
//!    idle task yet (`can_sleep` asks the same questions without panicking).
//!
//! A timed sleep puts `(deadline, task)` on its CPU's list of timed sleepers and runs the same
//! loop with "still on the list?" as its condition; the tick takes due sleepers off the list
//! before it wakes them (`wake_due_sleepers`), so being off the list means the time has come.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::idle::READY;
use super::runqueue::{SCHED, current, kick};
use super::switch::{Reason, schedule, switch_allowed, yield_now};
use super::task::Task;
use crate::config::MAX_CPUS;
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::sync::IrqSafeSpinLock;
use crate::task::state::TaskState;

/// Mark the current task as about to sleep. From here a `wake` makes the next `sleep` return
/// at once; check the condition you wait for after this call, then `sleep` (or `finish_wait`
/// if it already holds). Nothing preempts a task between the two.
pub fn prepare_to_sleep() {
    let me = current();
    if me.is_idle() {
        return; // the idle task never sleeps: see `sleep`
    }
    if let Err((from, to)) = me.state.set(TaskState::Sleeping) {
        panic!(
            "task {} ({}): prepare_to_sleep from {} to {} refused",
            me.pid,
            me.name,
            from.name(),
            to.name()
        );
    }
}

/// Go to sleep until woken (at once if woken since `prepare_to_sleep`).
///
/// # Panics
/// Before the boot CPU's idle task exists (nothing would run meanwhile), and wherever
/// `yield_now` would panic.
pub fn sleep() {
    crate::smp::refuse_sleep_in_posted_call("sleep");
    let cpu = percpu::this_cpu().id;
    assert!(
        READY.load(Ordering::Acquire) && !SCHED.for_cpu(cpu).idle.load(Ordering::Acquire).is_null(),
        "sleep on cpu{cpu} before its scheduler started (no idle task to run meanwhile)"
    );
    if current().is_idle() {
        // The idle task is what a CPU runs when everything else sleeps, so it cannot sleep
        // itself (posted calls, which run in it, were refused above). It lets the queued
        // tasks run and returns; its caller re-checks its condition and comes back.
        yield_now();
        crate::arch::cpu_relax();
        return;
    }
    schedule(Reason::Sleep);
}

/// The condition held before sleeping: carry on running.
pub fn finish_wait() {
    let me = current();
    me.state.transition(TaskState::Sleeping, TaskState::Running);
}

/// Wake `task` if it sleeps or is about to. True if this call woke it.
pub fn wake(task: &Arc<Task>) -> bool {
    loop {
        let cpu = task.cpu();
        let s = SCHED.for_cpu(cpu);
        let mut q = s.queue.lock();
        if task.cpu() != cpu {
            continue; // moved meanwhile: its CPU's lock is the one that counts
        }
        if task.state() != TaskState::Sleeping {
            return false;
        }
        task.wakeups.fetch_add(1, Ordering::Relaxed);
        SCHED.get().counters.wakeups.fetch_add(1, Ordering::Relaxed);
        if !task.asleep.load(Ordering::Relaxed) {
            // Still on its CPU, between prepare_to_sleep and sleep: cancel the sleep.
            task.state
                .transition(TaskState::Sleeping, TaskState::Running);
            return true;
        }
        task.asleep.store(false, Ordering::Relaxed);
        task.state
            .transition(TaskState::Sleeping, TaskState::Runnable);
        q.push(task.clone());
        s.queued.store(q.len(), Ordering::Release);
        drop(q);
        kick(cpu);
        return true;
    }
}

/// Can the current flow sleep right now? (Not before the scheduler is ready, not in the idle
/// task, not where a switch is refused.)
pub fn can_sleep() -> bool {
    if !READY.load(Ordering::Acquire) || switch_allowed().is_err() {
        return false;
    }
    // A CPU whose scheduler has not started yet has no idle task to run meanwhile (a
    // secondary runs a cross-CPU call before its idle loop met the scheduler).
    let cpu = percpu::this_cpu().id;
    !SCHED.for_cpu(cpu).idle.load(Ordering::Acquire).is_null() && !current().is_idle()
}

pub(super) fn wait_a_tick_if_allowed() {
    if can_sleep() {
        sleep_ticks(1);
    } else {
        crate::arch::cpu_relax();
    }
}

/// Sleep for at least `ticks` timer ticks (10 ms each), letting other tasks run. The task is
/// listed on this CPU's timed sleepers, and this CPU's tick wakes it, wherever it then runs.
pub fn sleep_ticks(ticks: u64) {
    let cpu = percpu::this_cpu().id;
    let until = crate::irq::tick::ticks_on(cpu) + ticks.max(1);
    let me = current();
    let list = SLEEPERS.for_cpu(cpu);
    {
        let mut sleepers = list.lock();
        sleepers.push((until, me.clone()));
        NEXT_DUE.for_cpu(cpu).fetch_min(until, Ordering::Relaxed);
    }
    loop {
        prepare_to_sleep();
        // The tick takes us off the list before it wakes us: off the list means time is up.
        if !list.lock().iter().any(|(_, t)| Arc::ptr_eq(t, &me)) {
            finish_wait();
            return;
        }
        sleep();
    }
}

/// Per CPU: tasks sleeping until a tick count, woken by that CPU's tick.
type TimedSleepers = IrqSafeSpinLock<Vec<(u64, Arc<Task>)>>;
/// Per CPU: the earliest tick a timed sleeper there waits for (u64::MAX: none). Written only
/// under that CPU's `SLEEPERS` lock; the tick reads it without the lock.
static NEXT_DUE: PerCpu<AtomicU64> =
    PerCpu::new([const { CacheAligned(AtomicU64::new(u64::MAX)) }; MAX_CPUS]);
pub(super) static SLEEPERS: PerCpu<TimedSleepers> = PerCpu::new(
    [const { CacheAligned(IrqSafeSpinLock::named("timed sleepers", Vec::new())) }; MAX_CPUS],
);

/// Wake the timed sleepers on `cpu` whose time has come (hardirq context: the scheduler's
/// part of every tick begins here).
pub(super) fn wake_due_sleepers(cpu: usize) {
    let now = crate::irq::tick::ticks_on(cpu);
    // Most ticks wake nobody: one load decides, and the list's lock is taken only when a
    // sleeper's time has come.
    let due: Vec<Arc<Task>> = if now < NEXT_DUE.for_cpu(cpu).load(Ordering::Relaxed) {
        Vec::new()
    } else {
        let mut list = SLEEPERS.for_cpu(cpu).lock();
        let mut due = Vec::new();
        let mut next = u64::MAX;
        list.retain(|(until, t)| {
            if *until <= now {
                due.push(t.clone());
                false
            } else {
                next = next.min(*until);
                true
            }
        });
        NEXT_DUE.for_cpu(cpu).store(next, Ordering::Relaxed);
        due
    };
    for t in &due {
        wake(t);
    }
}
