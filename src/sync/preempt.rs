//! What this CPU is doing: the preempt count (the interrupt-context chapter).
//!
//! It sits in `sync`, below `irq`, because locks and the lock validator consult it; src/irq
//! re-exports it as `irq::count`.
//!
//! One word per CPU, split into fields as Linux splits `preempt_count`: bits 0-7 count
//! `preempt_disable` nesting, bits 8-15 softirq (bottom-half) nesting, bits 16-19 hardirq
//! nesting. Code asks `in_irq()` ("am I in a hardware interrupt handler?") and
//! `in_interrupt()` ("any interrupt context at all?") instead of guessing: a lock taken in
//! interrupt context must be one whose holders disable interrupts, and lockdep uses exactly
//! these answers.
//!
//! Whose word? Once tasks can be preempted and moved between CPUs (chapter 16), a count that
//! belongs to the CPU is a trap: `preempt_disable` reads the count, adds one and stores it, and
//! a task preempted between the read and the store, then resumed on another CPU, stores into
//! the first CPU's count what it read there, undoing whatever ran meanwhile. So the count
//! belongs to the task (chapter 14): each spawned task carries its own, and the scheduler puts
//! its address in the task word (TPIDR_EL0, `arch::task_word`) at every switch, which one
//! instruction reads wherever the task runs. A CPU's own flow (task 0, the idle loop, anything
//! before the scheduler), which never migrates, uses the CPU's slot below. Before per-CPU
//! setup the task word is 0 and the count reads 0 and ignores changes.

use core::sync::atomic::{AtomicU32, Ordering, compiler_fence};

use crate::config::MAX_CPUS;
use crate::percpu::{CacheAligned, PerCpu};

pub const PREEMPT_SHIFT: u32 = 0;
pub const SOFTIRQ_SHIFT: u32 = 8;
pub const HARDIRQ_SHIFT: u32 = 16;
pub const PREEMPT_MASK: u32 = 0xff << PREEMPT_SHIFT;
pub const SOFTIRQ_MASK: u32 = 0xff << SOFTIRQ_SHIFT;
pub const HARDIRQ_MASK: u32 = 0xf << HARDIRQ_SHIFT;

static COUNT: PerCpu<AtomicU32> =
    PerCpu::new([const { CacheAligned(AtomicU32::new(0)) }; MAX_CPUS]);

/// Only the running task changes its count, and only from its own context (an interrupt that
/// changes it restores it before returning), so relaxed plain arithmetic is enough.
///
/// As far as the CPU goes, that is. The compiler is another matter: it may move ordinary and
/// relaxed accesses past each other, and past a lock's acquire or release in the direction
/// those allow, since nothing tells it that an interrupt on this CPU reads the count between
/// any two instructions. So every change of the count is also a compiler barrier (Linux's
/// `barrier()` in `preempt_disable`): raising it is finished before anything after it starts,
/// and lowering it starts only after everything before it. It costs no instruction.
///
/// One `mrs` finds the count, because every spin lock's fast path comes through here: under
/// QEMU, looking the CPU up through its per-CPU area instead cost 60 ns a lock.
#[inline(always)]
fn mine() -> Option<&'static AtomicU32> {
    let word = crate::arch::task_word();
    if word == 0 {
        return None;
    }
    // SAFETY: the task word is 0 or the address of an `AtomicU32` that lives while its task
    // runs: a CPU's slot below (static) or the running task's own count (the CPU's reference
    // keeps the task alive). Only `use_cpu_count` and the scheduler write the word.
    Some(unsafe { &*(word as *const AtomicU32) })
}

/// Make the calling CPU's flow use CPU `cpu`'s count: at per-CPU setup, and when the
/// scheduler switches to a CPU's own flow (task 0 or the idle task).
pub fn use_cpu_count(cpu: usize) {
    crate::arch::set_task_word(cpu_count_address(cpu));
}

/// The address of CPU `cpu`'s own count, the task word of its task 0.
pub fn cpu_count_address(cpu: usize) -> usize {
    COUNT.for_cpu(cpu) as *const AtomicU32 as usize
}

/// Is `word` one of the CPUs' own counts (a CPU's flow runs), rather than a task's?
pub fn is_cpu_count_address(word: usize) -> bool {
    (cpu_count_address(0)..=cpu_count_address(MAX_CPUS - 1)).contains(&word)
}

#[inline(always)]
fn add(delta: u32) {
    if let Some(c) = mine() {
        c.store(
            c.load(Ordering::Relaxed).wrapping_add(delta),
            Ordering::Relaxed,
        );
    }
    // Whatever follows (a lock's spin, a per-CPU access) stays after the raised count.
    compiler_fence(Ordering::SeqCst);
}

#[inline(always)]
fn sub(delta: u32) {
    // Whatever came before (a lock's release, a per-CPU access) stays before the count drops.
    compiler_fence(Ordering::SeqCst);
    if let Some(c) = mine() {
        let v = c.load(Ordering::Relaxed);
        debug_assert!(v >= delta, "preempt count underflow: {v:#x} - {delta:#x}");
        c.store(v.wrapping_sub(delta), Ordering::Relaxed);
    }
}

/// This CPU's whole count (0 before per-CPU setup).
pub fn preempt_count() -> u32 {
    mine().map_or(0, |c| c.load(Ordering::Relaxed))
}

#[inline]
pub fn preempt_disable() {
    add(1 << PREEMPT_SHIFT);
}

#[inline]
pub fn preempt_enable() {
    sub(1 << PREEMPT_SHIFT);
}

/// Entering a hardware interrupt handler (the IRQ path calls this).
pub fn irq_enter() {
    add(1 << HARDIRQ_SHIFT);
}

pub fn irq_exit() {
    sub(1 << HARDIRQ_SHIFT);
}

pub fn local_bh_disable() {
    add(1 << SOFTIRQ_SHIFT);
}

pub fn local_bh_enable() {
    sub(1 << SOFTIRQ_SHIFT);
}

/// In a hardware interrupt handler.
pub fn in_irq() -> bool {
    preempt_count() & HARDIRQ_MASK != 0
}

/// In a hardware interrupt handler or with bottom halves disabled / running.
pub fn in_interrupt() -> bool {
    preempt_count() & (HARDIRQ_MASK | SOFTIRQ_MASK) != 0
}

/// Preemption is off for any reason (explicitly, or because we are in interrupt context).
pub fn preemptible() -> bool {
    preempt_count() == 0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::percpu;

    #[test]
    fn fields_nest_independently_and_answer_the_context_questions() {
        let _cpus = crate::percpu::playing_cpus();
        std::thread::spawn(|| {
            percpu::install(5);
            assert!(!in_interrupt() && !in_irq() && preemptible());
            preempt_disable();
            preempt_disable();
            assert!(!in_interrupt() && !preemptible());
            irq_enter();
            assert!(in_irq() && in_interrupt());
            irq_enter(); // a nested interrupt
            irq_exit();
            assert!(in_irq());
            irq_exit();
            assert!(!in_irq() && !in_interrupt());
            local_bh_disable();
            assert!(in_interrupt() && !in_irq());
            local_bh_enable();
            preempt_enable();
            preempt_enable();
            assert_eq!(preempt_count(), 0);
            assert!(preemptible());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn each_cpu_has_its_own_count() {
        let _cpus = crate::percpu::playing_cpus();
        let a = std::thread::spawn(|| {
            percpu::install(6);
            irq_enter();
            std::thread::sleep(std::time::Duration::from_millis(20));
            let seen = in_irq();
            irq_exit();
            seen
        });
        let b = std::thread::spawn(|| {
            percpu::install(7);
            std::thread::sleep(std::time::Duration::from_millis(10));
            in_irq()
        });
        assert!(a.join().unwrap(), "cpu6 is in its handler");
        assert!(!b.join().unwrap(), "cpu7 is not, whatever cpu6 does");
    }
}
