//! Preemption: the tick ends a time slice, and the way out of the interrupt switches tasks
//! (chapter 16, "Scheduling on several CPUs").
//!
//! The tick counts how long the current task has run; after a time slice, with others waiting,
//! it sets the CPU's need-resched flag, and the interrupt's way out (`preempt_on_irq_exit`)
//! switches tasks if the interrupted code may be switched away from: preempt count 0, no
//! IRQ-safe lock, not halfway into a sleep or an exit. FIFO tasks are never sliced; the idle
//! task always gives way to a queued task.

use core::sync::atomic::Ordering;

use super::idle::READY;
use super::runqueue::SCHED;
use super::sleep::wake_due_sleepers;
use super::switch::{Reason, schedule, switch_allowed};
use super::task::Policy;
use crate::percpu;
use crate::task::state::TaskState;

/// Ticks a round-robin task may run while others wait: 20 ms at 100 Hz.
pub const SLICE_TICKS: u32 = 2;

/// The scheduler's part of every tick on `cpu` (hardirq context): wake timed sleepers whose
/// time came, account the tick, and ask for a switch when the current task's slice is over.
pub fn tick(cpu: usize) {
    wake_due_sleepers(cpu);
    let s = SCHED.for_cpu(cpu);
    s.counters.ticks.fetch_add(1, Ordering::Relaxed);
    let p = s.current.load(Ordering::Relaxed);
    if p.is_null() {
        return;
    }
    // SAFETY: `current` owns a count, and it cannot change under us: we are in this CPU's
    // interrupt handler, and only this CPU switches its current task.
    let cur = unsafe { &*p };
    if !cur.is_idle() {
        s.counters.busy_ticks.fetch_add(1, Ordering::Relaxed);
    }
    let slice = cur.slice_ticks.fetch_add(1, Ordering::Relaxed) + 1;
    let waiting = s.queued.load(Ordering::Relaxed) > 0;
    if waiting && (cur.is_idle() || (cur.policy == Policy::RoundRobin && slice >= SLICE_TICKS)) {
        s.need_resched.store(true, Ordering::Relaxed);
    }
}

/// Called on the way out of every interrupt, with the handlers done (hardirq count back to
/// where it was): switch tasks if this CPU was asked to and the interrupted code allows it.
pub fn preempt_on_irq_exit() {
    let cpu = percpu::this_cpu().id;
    let s = SCHED.for_cpu(cpu);
    if !s.need_resched.load(Ordering::Relaxed) || !READY.load(Ordering::Relaxed) {
        return;
    }
    let p = s.current.load(Ordering::Relaxed);
    if p.is_null() || switch_allowed().is_err() {
        return; // preempt count, IRQ-safe lock or held spin lock: at the next chance
    }
    // An interrupt handled on the emergency stack (taken near the stack bottom, or nested) has
    // its frame there, not on the task's stack: it returns to the task, it does not switch.
    let sp = crate::arch::aarch64::cpu::stack_pointer();
    if !percpu::this_cpu().stack_contains(sp) {
        return;
    }
    // SAFETY: as in `tick`: our own CPU's current task, in its interrupt handler.
    let cur = unsafe { &*p };
    if cur.state() != TaskState::Running {
        return; // halfway into a sleep or an exit: it is about to switch anyway
    }
    s.need_resched.store(false, Ordering::Relaxed);
    if cur.policy == Policy::Fifo && !cur.is_idle() {
        return;
    }
    schedule(Reason::Preempt);
}
