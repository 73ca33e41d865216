//! The generic timer's virtual counter, which EL0 may read on quartet and on Linux: a clock
//! that needs no system call, so timing a loop does not disturb it.

use core::arch::asm;

/// The virtual count, in ticks of [`frequency`]; the same clock on every CPU.
pub fn counter() -> u64 {
    let ticks: u64;
    // SAFETY: reads the virtual count; EL0 may when CNTKCTL_EL1.EL0VCTEN is set (quartet and
    // Linux both set it). The ISB keeps the read from running ahead of earlier instructions.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack)) };
    ticks
}

/// Counter ticks per second (0 if the firmware never set it).
pub fn frequency() -> u64 {
    let hz: u64;
    // SAFETY: reads the counter frequency, EL0-readable whenever the counter is.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack)) };
    hz
}
