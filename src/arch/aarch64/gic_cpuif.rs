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

/// Send SGI `sgi` (0..15). `value` carries the target fields (see `sgi1r_value`).
#[inline]
pub fn send_sgi(value: u64) {
    // SAFETY: SGI1R only raises software interrupts. The DSB makes this CPU's earlier stores
    // visible before the target can take the interrupt and look at them.
    unsafe { asm!("dsb ishst", "msr icc_sgi1r_el1, {0}", "isb", in(reg) value, options(nostack)) };
}

/// ICC_SGI1R_EL1 for SGI `sgi` to the CPUs of one cluster (`aff3.aff2.aff1`) whose Aff0 values
/// are set in `aff0_targets`, or to every CPU but this one.
pub fn sgi1r_value(sgi: u32, cluster_mpidr: u64, aff0_targets: u16, all_but_self: bool) -> u64 {
    let aff1 = (cluster_mpidr >> 8) & 0xff;
    let aff2 = (cluster_mpidr >> 16) & 0xff;
    let aff3 = (cluster_mpidr >> 32) & 0xff;
    let mut v = ((sgi as u64 & 0xf) << 24) | (aff1 << 16) | (aff2 << 32) | (aff3 << 48);
    if all_but_self {
        v |= 1 << 40; // IRM: every participating CPU except this one
    } else {
        v |= aff0_targets as u64;
    }
    v
}
