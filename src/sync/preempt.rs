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

use core::sync::atomic::{AtomicU32, Ordering};

use crate::config::MAX_CPUS;
use crate::percpu::{self, CacheAligned, PerCpu};

pub const PREEMPT_SHIFT: u32 = 0;
pub const SOFTIRQ_SHIFT: u32 = 8;
pub const HARDIRQ_SHIFT: u32 = 16;
pub const PREEMPT_MASK: u32 = 0xff << PREEMPT_SHIFT;
pub const SOFTIRQ_MASK: u32 = 0xff << SOFTIRQ_SHIFT;
pub const HARDIRQ_MASK: u32 = 0xf << HARDIRQ_SHIFT;

static COUNT: PerCpu<AtomicU32> =
    PerCpu::new([const { CacheAligned(AtomicU32::new(0)) }; MAX_CPUS]);

/// Only this CPU changes its count, and only from its own context (an interrupt that changes
/// it restores it before returning), so relaxed plain arithmetic on its own slot is enough.
fn mine() -> Option<&'static AtomicU32> {
    percpu::current_id().map(|id| COUNT.for_cpu(id))
}

fn add(delta: u32) {
    if let Some(c) = mine() {
        c.store(
            c.load(Ordering::Relaxed).wrapping_add(delta),
            Ordering::Relaxed,
        );
    }
}

fn sub(delta: u32) {
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

/// Any CPU's count, for the shell and reports.
pub fn preempt_count_of(cpu: usize) -> u32 {
    COUNT.for_cpu(cpu).load(Ordering::Relaxed)
}

pub fn preempt_disable() {
    add(1 << PREEMPT_SHIFT);
}

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

    #[test]
    fn fields_nest_independently_and_answer_the_context_questions() {
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
