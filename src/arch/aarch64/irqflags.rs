//! Masking interrupts on this CPU: DAIF's I bit (the interrupt-context chapter).
//!
//! `local_irq_save` returns the previous state and masks; `local_irq_restore` puts back exactly
//! what was saved, so nested save/restore pairs unwind correctly without a counter. The
//! counting flavour (xv6's push_off/pop_off) lives in src/sync/irq.rs on top of these.

use aarch64_cpu::registers::{DAIF, Readable, Writeable};

/// DAIF.I: IRQs masked when set.
const DAIF_I: u64 = 1 << 7;

/// A saved interrupt state: whether IRQs were enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "an IRQ state saved and never restored leaves IRQs masked"]
pub struct IrqFlags(u64);

impl IrqFlags {
    pub fn irqs_were_enabled(self) -> bool {
        self.0 & DAIF_I == 0
    }
}

/// Unmask IRQs on this CPU.
#[inline]
pub fn local_irq_enable() {
    // SAFETY: `msr daifclr` only changes this CPU's interrupt mask. The memory clobber (no
    // `nomem`) keeps the compiler from moving loads and stores of protected data across it.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// Mask IRQs on this CPU.
#[inline]
pub fn local_irq_disable() {
    // SAFETY: as for `local_irq_enable`.
    unsafe { core::arch::asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// True if IRQs are masked on this CPU.
#[inline]
pub fn irqs_disabled() -> bool {
    DAIF.get() & DAIF_I != 0
}

/// Mask IRQs and return what the state was.
#[inline]
pub fn local_irq_save() -> IrqFlags {
    let flags = IrqFlags(DAIF.get());
    local_irq_disable();
    flags
}

/// Return IRQs to a state `local_irq_save` returned.
#[inline]
pub fn local_irq_restore(flags: IrqFlags) {
    // A compiler barrier on both sides: DAIF writes are self-synchronising for the I bit.
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    DAIF.set(flags.0);
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// Wait for an interrupt (WFI). With IRQs masked the CPU still wakes when one is pending; it
/// is taken once they are unmasked.
#[inline]
pub fn wait_for_interrupt() {
    aarch64_cpu::asm::wfi();
}
