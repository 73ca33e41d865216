//! The GICv3 CPU interface: system registers, not MMIO (the GIC chapter).
//!
//! With GICv3 each CPU talks to the interrupt controller through ICC_* system registers:
//! acknowledge (IAR1), end of interrupt (EOIR1), priority mask (PMR), group enable (IGRPEN1),
//! and SGI generation (SGI1R). boot.rs already let EL1 use them (ICC_SRE_EL2) when we entered
//! at EL2. Group 1 only: quartet runs non-secure.

use core::arch::asm;

/// Turn on the system-register interface for this CPU; false if it will not stay on (a GIC
/// that only offers the memory-mapped interface).
pub fn enable_system_registers() -> bool {
    let mut sre: u64;
    // SAFETY: reading and setting ICC_SRE_EL1.SRE only affects how this CPU reaches its GIC.
    unsafe {
        asm!("mrs {0}, icc_sre_el1", out(reg) sre, options(nomem, nostack));
        asm!("msr icc_sre_el1, {0}", "isb", in(reg) sre | 1, options(nostack));
        asm!("mrs {0}, icc_sre_el1", out(reg) sre, options(nomem, nostack));
    }
    sre & 1 == 1
}

/// Let every priority through, EOI both drops priority and deactivates, enable group 1.
pub fn init() {
    // SAFETY: these registers configure only this CPU's interface to the GIC.
    unsafe {
        asm!("msr icc_pmr_el1, {0}", in(reg) 0xffu64, options(nostack));
        asm!("msr icc_bpr1_el1, xzr", options(nostack));
        asm!("msr icc_ctlr_el1, xzr", options(nostack));
        asm!("msr icc_igrpen1_el1, {0}", "isb", in(reg) 1u64, options(nostack));
    }
}

/// Stop signalling group 1 interrupts to this CPU.
pub fn disable() {
    // SAFETY: as in `init`.
    unsafe { asm!("msr icc_igrpen1_el1, xzr", "isb", options(nostack)) };
}

/// Acknowledge the highest-priority pending interrupt: its INTID (1020..1023 = spurious).
#[inline]
pub fn acknowledge() -> u32 {
    let iar: u64;
    // SAFETY: reading IAR1 acknowledges one interrupt on this CPU; the caller must EOI it.
    unsafe { asm!("mrs {0}, icc_iar1_el1", out(reg) iar, options(nostack)) };
    (iar & 0xff_ffff) as u32
}

/// Signal that the handler for `intid` is done.
#[inline]
pub fn end_of_interrupt(intid: u32) {
    // SAFETY: writing EOIR1 for an interrupt this CPU acknowledged ends it.
    unsafe { asm!("msr icc_eoir1_el1, {0}", "isb", in(reg) intid as u64, options(nostack)) };
}

/// Write ICC_SGI1R_EL1: raise an SGI on the CPUs `value` names (src/drivers/gic_affinity.rs
/// builds it: one cluster and a list of its cores, or every CPU but this one).
#[inline]
pub fn send_sgi(value: u64) {
    // SAFETY: SGI1R only raises software interrupts. The DSB makes this CPU's earlier stores
    // visible before the target can take the interrupt and look at them.
    unsafe { asm!("dsb ishst", "msr icc_sgi1r_el1, {0}", "isb", in(reg) value, options(nostack)) };
}
