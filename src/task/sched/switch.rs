//! The context switch: `schedule`, the only way a CPU changes tasks (chapter 15, "Processes
//! and the context switch"; chapter 16 adds preemption).
//!
//! `yield_now`, `sleep`, `exit` and the preempting interrupt are all calls of `schedule` with a
//! `Reason`. Every switch
//! 1. refuses (with a panic that says why) in interrupt context, with preemption disabled,
//!    inside an IRQ-disabled lock section, or holding a spin lock the validator knows of
//!    (`switch_allowed`);
//! 2. masks IRQs and, under the run-queue lock, decides what becomes of the current task
//!    (queued again after a yield or a preemption, off every queue when it sleeps, a zombie
//!    when it exits) and picks the next: the first queued task this CPU may run, else the
//!    current task if it can go on, else the idle task;
//! 3. checks both stack canaries, updates states and statistics, reports a quiescent state to
//!    RCU, points the per-CPU stack bounds and the task word (its preempt count) at the next
//!    task, and switches;
//! 4. when a task is switched back to, finishes the switch for whoever ran before it
//!    (`finish_switch`: frees an exited task's stack, wakes its waiters, marks it off the CPU).
//!
//! A new task's first switch lands not in `schedule` but in the trampoline of
//! src/arch/aarch64/context.rs, which calls `task_entry` (it finishes the switch first) and,
//! when the task's function returns, `task_exit`.

use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::Ordering;

use super::lifecycle::exit;
use super::runqueue::{SCHED, clone_from_raw, current, current_ptr, enqueue};
use super::sleep::wake;
use super::task::Task;
use crate::arch::aarch64::context;
use crate::arch::{counter, irqflags};
use crate::percpu;
use crate::sync::preempt::{self, HARDIRQ_MASK, SOFTIRQ_MASK};
use crate::task::state::{CpuMask, TaskState};

/// Give the CPU to the next runnable task, if there is one; come back after the others had
/// their turn.
///
/// # Panics
/// If switching is not allowed here (see `switch_allowed`), or a stack canary is damaged.
pub fn yield_now() {
    crate::smp::refuse_sleep_in_posted_call("yield_now");
    schedule(Reason::Yield);
}

/// Give the current task the mask `mask`; if it excludes the CPU the task runs on, the task
/// moves at once (it switches away and is queued on the first CPU of the mask). Returns the
/// mask it had. The leader strategy runs a system call on CPU 0 this way (src/proc/locking.rs).
pub fn set_current_affinity(mask: CpuMask) -> CpuMask {
    assert!(
        crate::smp::online_cpus().any(|c| mask.contains(c)),
        "set_current_affinity: the mask {mask} names no online CPU"
    );
    let me = current();
    let old = me.affinity.swap(mask, Ordering::Relaxed);
    if !mask.contains(percpu::this_cpu().id) {
        yield_now();
    }
    old
}

/// Why this CPU may not switch tasks right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchRefused {
    /// In a hardware interrupt handler or a bottom half: there is no task to suspend, only
    /// the one the interrupt borrowed the stack of.
    InInterrupt { preempt_count: u32 },
    /// Preemption is disabled: the code asked to stay on this CPU.
    PreemptDisabled { preempt_count: u32 },
    /// Inside `push_off` (an `IrqSafeSpinLock` is held): the nesting record is this CPU's.
    IrqSafeLockHeld { depth: u32 },
    /// The lock validator says this CPU holds a spin lock: the next task could spin on it
    /// forever, since the holder cannot run until that task yields.
    LockHeld {
        name: &'static str,
        site: &'static core::panic::Location<'static>,
    },
}

impl fmt::Display for SwitchRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchRefused::InInterrupt { preempt_count } => write!(
                f,
                "switch from interrupt context (preempt count {preempt_count:#x})"
            ),
            SwitchRefused::PreemptDisabled { preempt_count } => write!(
                f,
                "switch with preemption disabled (preempt count {preempt_count:#x})"
            ),
            SwitchRefused::IrqSafeLockHeld { depth } => write!(
                f,
                "switch while holding an IRQ-safe lock (IRQ-disable depth {depth})"
            ),
            SwitchRefused::LockHeld { name, site } => write!(
                f,
                "switch while holding spin lock {:?} taken at {}:{}",
                if name.is_empty() { "(unnamed)" } else { name },
                site.file(),
                site.line()
            ),
        }
    }
}

/// May this CPU switch tasks now? The check `schedule` makes (and panics on).
///
/// A plain `SpinLock` leaves no per-CPU trace of its own, so one held with the validator off
/// (`nolockdep`, or a build without the `lockdep` feature) goes unseen; the other three
/// conditions are always checked.
pub fn switch_allowed() -> Result<(), SwitchRefused> {
    let count = preempt::preempt_count();
    if count & (HARDIRQ_MASK | SOFTIRQ_MASK) != 0 {
        return Err(SwitchRefused::InInterrupt {
            preempt_count: count,
        });
    }
    // Both records below are per-CPU: they are read with IRQs masked, or a preemption between
    // finding this CPU's number and reading its record could move the task, which would then
    // judge itself by the CPU it left (see `irq::depth`).
    let flags = irqflags::local_irq_save();
    let depth = crate::sync::irq::depth();
    let held = crate::sync::lockdep::held(percpu::this_cpu().id)
        .next()
        .map(|held| (held.class.name, held.site));
    irqflags::local_irq_restore(flags);
    if depth != 0 {
        return Err(SwitchRefused::IrqSafeLockHeld { depth });
    }
    // Before the preempt count: a held spin lock also disables preemption, and its name and
    // site say more than the count does.
    if let Some((name, site)) = held {
        return Err(SwitchRefused::LockHeld { name, site });
    }
    if count != 0 {
        return Err(SwitchRefused::PreemptDisabled {
            preempt_count: count,
        });
    }
    Ok(())
}

/// What the current task does at a switch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Reason {
    /// Queued behind the others (or keeps the CPU if nothing else may run).
    Yield,
    /// Like a yield, but the tick took the CPU: counted apart.
    Preempt,
    /// Off the CPU and every queue until `wake`, unless woken already.
    Sleep,
    /// Never runs again.
    Exit,
}

/// Switch away from the current task for `reason`. Returns when the task is switched back to,
/// or at once if it may go on (nothing else to run, or woken before it slept).
pub(super) fn schedule(reason: Reason) {
    // A task gives up its big locks while it is off the CPU and takes them back when it runs
    // again (src/sync/biglock.rs): a holder that sleeps must not stop every other CPU. A lock
    // carried through the switch (Linux 2.0's) covers the switch too, and whichever task
    // lands here adopts or releases it.
    let held = crate::sync::biglock::release_for_switch();
    switch_away(reason);
    held.reacquire();
}

fn switch_away(reason: Reason) {
    if let Err(why) = switch_allowed() {
        panic!("cannot switch tasks: {why}");
    }
    let flags = irqflags::local_irq_save();
    let cpu = percpu::this_cpu().id;
    let s = SCHED.for_cpu(cpu);
    let prev_ptr = current_ptr(s, cpu);
    // SAFETY: the `current` slot owns a count, so the task lives at least until we give that
    // count away below, and we are that task: it cannot be freed while we run on it.
    let prev = unsafe { &*prev_ptr };
    let idle_ptr = s.idle.load(Ordering::Acquire);
    // A task whose mask no longer names this CPU (`move_current_to`) goes on running, but not
    // here: it leaves the CPU even with nothing else to run, and `finish_switch` queues it on
    // a CPU it may use once its registers are saved.
    let leaves_this_cpu = !prev.is_idle() && !prev.affinity().contains(cpu);
    let next: Option<Arc<Task>> = {
        let mut queue = s.queue.lock();
        let goes_on = match reason {
            Reason::Yield | Reason::Preempt => true,
            // Woken between prepare_to_sleep and here: the wake already made it Running.
            Reason::Sleep => prev.state() != TaskState::Sleeping,
            Reason::Exit => false,
        };
        if reason == Reason::Sleep {
            if goes_on {
                // Woken before it got off the CPU: it simply carries on. (Switching away
                // anyway would queue a task whose state says Running.)
                drop(queue);
                prev.slice_ticks.store(0, Ordering::Relaxed);
                irqflags::local_irq_restore(flags);
                return;
            }
            prev.asleep.store(true, Ordering::Relaxed);
        }
        let moves = goes_on && leaves_this_cpu;
        let goes_on = goes_on && !moves;
        let picked = queue.pop_for(cpu);
        let next = match picked {
            Some(t) => {
                if goes_on && !prev.is_idle() {
                    // SAFETY: as above; the queue gets an Arc with a count of its own.
                    queue.push(unsafe { clone_from_raw(prev_ptr) });
                }
                Some(t)
            }
            None if goes_on => None,
            None => {
                assert!(
                    !idle_ptr.is_null() && idle_ptr != prev_ptr,
                    "cpu{cpu}: task {} ({}) stops running and there is no idle task",
                    prev.pid,
                    prev.name
                );
                // SAFETY: the idle slot owns a count for the kernel's lifetime.
                Some(unsafe { clone_from_raw(idle_ptr) })
            }
        };
        s.queued.store(queue.len(), Ordering::Release);
        s.prev_moves.store(moves, Ordering::Relaxed);
        next
    };
    let Some(next) = next else {
        prev.slice_ticks.store(0, Ordering::Relaxed);
        irqflags::local_irq_restore(flags);
        return;
    };
    for (task, when) in [(prev, "switching away from"), (&*next, "switching to")] {
        if let Err(damage) = task.check_stack() {
            panic!(
                "cpu{cpu}: {when} task {} ({}): {damage}",
                task.pid, task.name
            );
        }
    }
    let refused = |t: &Task, (from, to): (TaskState, TaskState)| -> ! {
        panic!(
            "task {} ({}): state {} -> {} refused",
            t.pid,
            t.name,
            from.name(),
            to.name()
        )
    };
    match reason {
        Reason::Yield | Reason::Preempt if !prev.is_idle() => {
            if let Err(step) = prev.state.set(TaskState::Runnable) {
                refused(prev, step);
            }
        }
        Reason::Exit => {
            if let Err(step) = prev.state.set(TaskState::Exited) {
                refused(prev, step);
            }
        }
        _ => {} // a sleeper is Sleeping already; the idle task stays Running
    }
    if !next.is_idle()
        && let Err(step) = next.state.set(TaskState::Running)
    {
        refused(&next, step);
    }
    if reason == Reason::Preempt && !prev.is_idle() {
        prev.preemptions.fetch_add(1, Ordering::Relaxed);
        s.counters.preemptions.fetch_add(1, Ordering::Relaxed);
    }
    let now = counter();
    // Off the CPU first, then the stint into the total (release): `runtime_ticks_now`, reading
    // both without a lock, never counts a stint twice.
    let since = prev.switched_in_at.swap(0, Ordering::Relaxed);
    prev.runtime
        .fetch_add(now.saturating_sub(since), Ordering::Release);
    next.switched_in_at.store(now, Ordering::Release);
    next.slice_ticks.store(0, Ordering::Relaxed);
    next.switches.fetch_add(1, Ordering::Relaxed);
    next.cpu.store(cpu as u32, Ordering::Relaxed);
    next.on_cpu.store(true, Ordering::Release);
    s.counters.switches.fetch_add(1, Ordering::Relaxed);
    // A switch is a quiescent state: no RCU reader can be running here (readers disable
    // preemption, and `switch_allowed` saw a preempt count of 0).
    crate::rcu::rcu_context_switch(cpu);
    // From here the CPU describes the next task's stack and preempt count (IRQs are masked
    // until it runs, and both counts are 0).
    let area = percpu::this_cpu();
    area.stack_bottom
        .store(next.stack_bottom, Ordering::Relaxed);
    area.stack_top.store(next.stack_top, Ordering::Relaxed);
    crate::arch::set_task_word(next.task_word(cpu));
    switch_address_space(next.user_context());
    let next_ptr = Arc::into_raw(next).cast_mut();
    // The current slot's count on prev moves to `prev`, for finish_switch to drop.
    s.prev.store(prev_ptr, Ordering::Relaxed);
    s.current.store(next_ptr, Ordering::Release);
    // SAFETY: both tasks are kept alive by the counts in `prev` and `current`; prev is this
    // thread, so its context is ours to fill; next is not running (it was on our queue with
    // `on_cpu` clear, or it is our idle task, which only ever runs here), and its context was
    // saved by its own last switch or built by `Context::new_thread` over its heap stack,
    // whose canary was just checked. IRQs are masked (local_irq_save above), and
    // `switch_allowed` showed no lock, IRQ-disable nesting or preempt count is carried across.
    unsafe { context::switch((*prev_ptr).context.get(), (*next_ptr).context.get()) };
    // Back in this task, perhaps much later and on another CPU: tidy up after whoever ran
    // before us.
    finish_switch();
    irqflags::local_irq_restore(flags);
}

/// The first thing a task does after a switch lands in it: release the task the CPU came
/// from. It is off the CPU now (its registers are saved, its stack no longer in use), so an
/// exited one's stack can be freed and its waiters woken, and another CPU may pull it.
fn finish_switch() {
    assert!(
        irqflags::irqs_disabled(),
        "finish_switch with IRQs enabled: the switch must run masked"
    );
    let s = SCHED.get();
    let prev = s.prev.swap(core::ptr::null_mut(), Ordering::Relaxed);
    if prev.is_null() {
        return;
    }
    // SAFETY: `schedule` stored a pointer from `Arc::into_raw` whose count the slot owned;
    // taking it out of the slot hands that count to this Arc.
    let prev = unsafe { Arc::from_raw(prev) };
    let exited = prev.state() == TaskState::Exited;
    if exited {
        let stack = prev.stack.lock().take();
        drop(stack);
    }
    prev.on_cpu.store(false, Ordering::Release);
    if s.prev_moves.swap(false, Ordering::Relaxed)
        && let Some(target) = prev.affinity().first()
    {
        prev.migrations.fetch_add(1, Ordering::Relaxed);
        enqueue(target, prev.clone());
    }
    if exited {
        let waiters = core::mem::take(&mut *prev.exit_waiters.lock());
        for w in &waiters {
            wake(w);
        }
    }
}

/// A new task's first Rust, reached from the trampoline with its PID.
pub(super) extern "C" fn task_entry(pid: usize) -> usize {
    finish_switch();
    // Not yet holding any big lock: one the CPU carried through the switch goes now.
    crate::sync::biglock::settle_after_switch();
    // A task starts with IRQs on once its CPU takes interrupts (the switcher masked them).
    if crate::smp::interrupts_ready(percpu::this_cpu().id) {
        irqflags::local_irq_enable();
    }
    let f = {
        let me = current();
        assert_eq!(
            me.pid as usize, pid,
            "task_entry: the CPU's current task is not the one starting"
        );
        me.entry.lock().take()
    };
    let f = f.expect("a task started twice");
    f() as u32 as usize
}

/// Where a task's entry returns to (through the trampoline): exit with its return value.
pub(super) extern "C" fn task_exit(status: usize) -> ! {
    exit(status as u32 as i32)
}

/// The hook that loads the next task's user address space (TTBR0 and its ASID) at a switch:
/// installed by src/proc, which knows what a task's user context word means. Until then, and
/// for kernel threads (word 0), nothing happens here and the hook decides what 0 means.
static ADDRESS_SPACE_HOOK: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(0);

/// Install `hook`, called with IRQs masked at every switch with the next task's user context
/// word (0 for kernel threads). It must not sleep or take a sleeping lock.
pub fn set_address_space_hook(hook: fn(usize)) {
    ADDRESS_SPACE_HOOK.store(hook as usize, Ordering::Release);
}

fn switch_address_space(word: usize) {
    let hook = ADDRESS_SPACE_HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: the only non-zero value ever stored is a `fn(usize)` (above).
        let hook: fn(usize) = unsafe { core::mem::transmute(hook) };
        hook(word);
    }
}
