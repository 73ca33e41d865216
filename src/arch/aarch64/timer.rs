//! The generic timer's EL1 virtual timer, one per CPU (the timer chapter).
//!
//! Each CPU has its own: a down-counter (TVAL) that fires its PPI when it reaches zero, or
//! more exactly when the counter passes the compare value (CVAL). It stays asserted until the
//! next deadline is programmed, so the handler's first job is to set the next one. quartet
//! uses the virtual timer, as Linux does: EL1 may always use it, and boot.rs zeroes CNTVOFF so
//! virtual and physical time agree.

use aarch64_cpu::registers::{
    CNTV_CTL_EL0, CNTV_CVAL_EL0, CNTVCT_EL0, ReadWriteable, Readable, Writeable,
};

/// Fire `ticks` counter ticks from now, and enable the timer's interrupt.
pub fn arm_in(ticks: u64) {
    CNTV_CVAL_EL0.set(CNTVCT_EL0.get().wrapping_add(ticks));
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    settle();
}

/// Fire `ticks` after the previous deadline, not after now: a late handler does not make the
/// tick drift. If the next deadline is already past (a long stall), restart from now.
pub fn rearm_periodic(ticks: u64) {
    let next = CNTV_CVAL_EL0.get().wrapping_add(ticks);
    let now = CNTVCT_EL0.get();
    if next <= now {
        arm_in(ticks);
    } else {
        CNTV_CVAL_EL0.set(next);
        settle();
    }
}

/// Make a new compare value take effect before the handler goes on. A write to a system
/// register is only guaranteed to be seen by later instructions after a context
/// synchronisation event; without the ISB the timer may still be asserting its (level)
/// interrupt from the old deadline when the handler writes EOI, the GIC then finds it pending
/// again, and the CPU takes the same tick twice. QEMU applies the write at once, so only real
/// hardware can show the double tick.
fn settle() {
    super::barrier::isb();
}

/// Stop the timer (and its interrupt).
pub fn stop() {
    CNTV_CTL_EL0.modify(CNTV_CTL_EL0::ENABLE::CLEAR);
}

/// True if the timer condition is met (the interrupt is, or would be, asserted).
pub fn pending() -> bool {
    CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ISTATUS)
}
