//! Switching the MMU on (chapter 4, "Why the MMU must be on before the first lock").
//!
//! The boot CPU builds the identity map once (pagetable.rs, from the ranges src/mm/paging.rs
//! collects); every CPU then loads the same TTBR0/TCR/MAIR and sets SCTLR_EL1.M/C/I. Until then,
//! data accesses are Device memory: exclusive loads/stores, and so every lock, may never succeed
//! on real hardware.

use aarch64_cpu::registers::*;

use super::pagetable::{MAIR_VALUE, VA_BITS};

/// The register values that switch translation on; the same for every CPU.
#[derive(Clone, Copy, Debug)]
pub struct MmuConfig {
    pub ttbr0: u64,
    pub tcr: u64,
    pub mair: u64,
    pub sctlr: u64,
}

/// The configuration for an identity map rooted at `root`.
pub fn config(root: u64) -> MmuConfig {
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(5);
    const T0SZ: u64 = 64 - VA_BITS as u64; // the low half covers 2^VA_BITS bytes
    const IRGN0_WB: u64 = 0b01 << 8; // table walks: inner write-back cacheable
    const ORGN0_WB: u64 = 0b01 << 10; // and outer write-back cacheable
    const SH0_INNER: u64 = 0b11 << 12; // tables are inner shareable
    const TG0_4K: u64 = 0b00 << 14; // 4 KiB granule
    const EPD1: u64 = 1 << 23; // no TTBR1 walks: quartet lives in the low half
    // IPS: as many physical address bits as the CPU implements.
    let tcr = T0SZ | IRGN0_WB | ORGN0_WB | SH0_INNER | TG0_4K | EPD1 | (pa_range << 32);
    const SCTLR_RES1: u64 = 0x30d0_0800;
    const M: u64 = 1 << 0; // MMU on
    const C: u64 = 1 << 2; // data cache on
    const SA: u64 = 1 << 3; // SP alignment checked
    const SA0: u64 = 1 << 4; // and at EL0 too (a user's misaligned SP faults)
    const I: u64 = 1 << 12; // instruction cache on
    const WXN: u64 = 1 << 19; // writable implies never-executable
    MmuConfig {
        ttbr0: root,
        tcr,
        mair: MAIR_VALUE,
        sctlr: SCTLR_RES1 | M | C | SA | SA0 | I | WXN,
    }
}

/// Switch translation on for this CPU.
///
/// # Safety
/// `cfg.ttbr0` must root an identity map that covers the running code, its stack and every
/// address it will touch, with the kernel text executable.
pub unsafe fn enable(cfg: &MmuConfig) {
    unsafe extern "C" {
        fn __enable_mmu(ttbr0: u64, tcr: u64, mair: u64, sctlr: u64);
    }
    // SAFETY: the caller guarantees the map; __enable_mmu (boot.rs) only writes system registers.
    unsafe { __enable_mmu(cfg.ttbr0, cfg.tcr, cfg.mair, cfg.sctlr) };
}

/// True when this CPU runs with the MMU and both caches on.
pub fn is_enabled() -> bool {
    let s = SCTLR_EL1.get();
    s & 1 != 0 && s & (1 << 2) != 0 && s & (1 << 12) != 0
}
