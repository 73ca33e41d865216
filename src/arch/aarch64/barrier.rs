//! Memory barriers (the memory-ordering chapter).
//!
//! A CPU may make its stores visible to other CPUs in a different order from program order, and
//! may satisfy a load before an earlier store is visible. Barriers put order back:
//! - `mb`/`rmb`/`wmb`: `DSB SY/LD/ST`, complete before continuing; for devices and the MMU.
//! - `smp_mb`/`smp_rmb`/`smp_wmb`: `DMB ISH/ISHLD/ISHST`, order memory accesses as the other
//!   CPUs of the inner shareable domain observe them; what CPU-to-CPU code needs.
//! - `isb`: refetch instructions, after changing system registers.
//! - `load_acquire`/`store_release`: `LDAR`/`STLR`, one-sided ordering attached to one access,
//!   cheaper than a full `DMB`.

use aarch64_cpu::asm::barrier;
use core::sync::atomic::AtomicU64;

/// Full system barrier: every earlier memory access completes before anything after it.
#[inline]
pub fn mb() {
    barrier::dsb(barrier::SY);
}

/// Earlier loads complete before anything after.
#[inline]
pub fn rmb() {
    barrier::dsb(barrier::LD);
}

/// Earlier stores complete before anything after.
#[inline]
pub fn wmb() {
    barrier::dsb(barrier::ST);
}

/// Order all earlier accesses before all later ones, as other CPUs see them.
#[inline]
pub fn smp_mb() {
    barrier::dmb(barrier::ISH);
}

/// Order earlier loads before later loads and stores, as other CPUs see them.
#[inline]
pub fn smp_rmb() {
    barrier::dmb(barrier::ISHLD);
}

/// Order earlier stores before later stores, as other CPUs see them.
#[inline]
pub fn smp_wmb() {
    barrier::dmb(barrier::ISHST);
}

/// Make the effects of earlier system-register writes visible to the instructions after.
#[inline]
pub fn isb() {
    barrier::isb(barrier::SY);
}

/// `LDAR`: no later access may be observed before this load.
#[inline]
pub fn load_acquire(p: &AtomicU64) -> u64 {
    let v: u64;
    // SAFETY: `p` is a valid, aligned u64; LDAR only reads it.
    unsafe {
        core::arch::asm!("ldar {v}, [{p}]", v = out(reg) v, p = in(reg) p.as_ptr(), options(nostack))
    };
    v
}

/// `STLR`: no earlier access may be observed after this store.
#[inline]
pub fn store_release(p: &AtomicU64, v: u64) {
    // SAFETY: `p` is a valid, aligned u64; STLR only writes it.
    unsafe {
        core::arch::asm!("stlr {v}, [{p}]", v = in(reg) v, p = in(reg) p.as_ptr(), options(nostack))
    };
}
