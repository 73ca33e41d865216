//! Switching the MMU on, and the two halves of the address space (chapter 4, "Why the MMU must
//! be on before the first lock").
//!
//! The kernel lives in the high half (TTBR1, addresses from 0xffff_ff80_0000_0000), user
//! processes in the low half (TTBR0, below 2^39). Before any Rust runs, boot.rs turns the MMU
//! on with an early map: TTBR1 holds the kernel image, the device tree and the console UART in
//! 2 MiB blocks, TTBR0 a one-page identity map of the trampoline that survives the SCTLR write.
//! The boot CPU then builds the real map (src/mm/paging.rs) and swaps TTBR1 to it with
//! `switch_kernel_map`; every CPU ends with TTBR0 on an empty table, so a kernel thread has no
//! user mappings and a stray low address faults. Until the MMU is on, data accesses are Device
//! memory: exclusive loads/stores, and so every lock, may never succeed on real hardware.

use aarch64_cpu::registers::*;

use super::pagetable::{MAIR_VALUE, VA_BITS};
use crate::mm::virt_to_phys;

/// T0SZ and T1SZ: each half covers 2^VA_BITS bytes.
const TSZ: u64 = 64 - VA_BITS as u64;
/// TCR_EL1 fields that do not depend on the CPU: 39-bit halves, 4 KiB granules, table walks
/// through inner and outer write-back caches, tables inner shareable, in both halves. A1 = 0:
/// the ASID comes from TTBR0 (the process's table), since the kernel's mappings are global.
pub const TCR_FIXED: u64 = {
    const T0SZ: u64 = TSZ;
    const IRGN0_WB: u64 = 0b01 << 8;
    const ORGN0_WB: u64 = 0b01 << 10;
    const SH0_INNER: u64 = 0b11 << 12;
    const TG0_4K: u64 = 0b00 << 14;
    const T1SZ: u64 = TSZ << 16;
    const IRGN1_WB: u64 = 0b01 << 24;
    const ORGN1_WB: u64 = 0b01 << 26;
    const SH1_INNER: u64 = 0b11 << 28;
    const TG1_4K: u64 = 0b10 << 30; // TG1 encodes granules differently from TG0
    T0SZ | IRGN0_WB
        | ORGN0_WB
        | SH0_INNER
        | TG0_4K
        | T1SZ
        | IRGN1_WB
        | ORGN1_WB
        | SH1_INNER
        | TG1_4K
};
/// TCR_EL1.IPS (bits 34:32): physical address size, set from ID_AA64MMFR0_EL1.PARange.
pub const TCR_IPS_SHIFT: u64 = 32;
/// TCR_EL1.AS: 16-bit ASIDs, set when ID_AA64MMFR0_EL1.ASIDBits says the CPU has them.
pub const TCR_AS_16BIT: u64 = 1 << 36;

const SCTLR_RES1: u64 = 0x30d0_0800;
const SCTLR_M: u64 = 1 << 0; // MMU on
const SCTLR_C: u64 = 1 << 2; // data cache on
const SCTLR_SA: u64 = 1 << 3; // SP alignment checked
const SCTLR_SA0: u64 = 1 << 4; // and at EL0 too (a user's misaligned SP faults)
const SCTLR_I: u64 = 1 << 12; // instruction cache on
const SCTLR_WXN: u64 = 1 << 19; // writable implies never-executable
/// SCTLR_EL1 once the kernel's real map is in place.
pub const SCTLR_VALUE: u64 =
    SCTLR_RES1 | SCTLR_M | SCTLR_C | SCTLR_SA | SCTLR_SA0 | SCTLR_I | SCTLR_WXN;
/// SCTLR_EL1 under the early map, whose 2 MiB blocks of kernel image are both written (data,
/// BSS, stacks) and executed (text): WXN waits for the real map.
pub const SCTLR_EARLY: u64 = SCTLR_VALUE & !SCTLR_WXN;

/// The register values that switch translation on; the same for every CPU.
#[derive(Clone, Copy, Debug)]
pub struct MmuConfig {
    /// The identity map of the boot trampoline, used only while a CPU turns its MMU on.
    pub trampoline_ttbr0: u64,
    /// The root of the kernel's map (physical).
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub sctlr: u64,
}

/// How many ASID bits this CPU implements: 8 or 16 (ID_AA64MMFR0_EL1.ASIDBits). TCR_EL1.AS is
/// set to match, so every ASID the allocator hands out is one the TLB tells apart.
pub fn asid_bits() -> u32 {
    if ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::ASIDBits) == 0b0010 {
        16
    } else {
        8
    }
}

/// TCR_EL1 for this CPU; boot.rs computes the same from the same fields before Rust runs.
pub fn tcr() -> u64 {
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(5);
    let asid = if asid_bits() == 16 { TCR_AS_16BIT } else { 0 };
    TCR_FIXED | (pa_range << TCR_IPS_SHIFT) | asid
}

/// The configuration for the kernel map rooted at physical address `ttbr1`.
pub fn config(ttbr1: u64) -> MmuConfig {
    MmuConfig {
        trampoline_ttbr0: trampoline_table(),
        ttbr1,
        tcr: tcr(),
        mair: MAIR_VALUE,
        sctlr: SCTLR_VALUE,
    }
}

unsafe extern "C" {
    /// boot.rs: the one-page identity map of the trampoline (root table).
    static idmap_l1: u8;
    /// boot.rs: a table with every entry invalid, for TTBR0 while no process runs.
    static empty_table: u8;
    /// boot.rs, in the identity-mapped page: swap TTBR1 with break-before-make.
    fn __idmap_switch_ttbr1(ttbr1: u64, empty: u64, sctlr: u64);
}

/// Physical address of the trampoline's identity map.
fn trampoline_table() -> u64 {
    // SAFETY: only the address of the linker-placed table is taken.
    virt_to_phys(unsafe { &idmap_l1 } as *const u8 as usize) as u64
}

/// Physical address of the empty table TTBR0 holds while no user address space is active.
/// Its ASID is 0, which the ASID allocator never hands to a process.
pub fn empty_table_address() -> u64 {
    // SAFETY: only the address of the linker-placed table is taken.
    virt_to_phys(unsafe { &empty_table } as *const u8 as usize) as u64
}

/// Replace the boot CPU's early kernel map with the real one and turn WXN on.
///
/// Both maps translate the running code, the stack and the data at the same addresses, but
/// with different block sizes and permissions. Writing TTBR1 straight from one to the other
/// would leave TLB entries of both in the TLB at once (a TLB conflict, which the architecture
/// allows to abort). So the swap goes break-before-make, from the identity-mapped trampoline in
/// TTBR0: TTBR1 to the empty table, invalidate the TLB, TTBR1 to the new map.
///
/// # Safety
/// Only on the boot CPU, with interrupts masked, while TTBR0 still holds the trampoline's
/// identity map (boot.rs), and `cfg.ttbr1` must map everything the kernel runs on at the same
/// addresses as the early map.
pub unsafe fn switch_kernel_map(cfg: &MmuConfig) {
    // The trampoline runs at its physical address, reached through the identity map in TTBR0.
    let trampoline = virt_to_phys(__idmap_switch_ttbr1 as *const () as usize);
    // SAFETY: the address is the trampoline's, identity-mapped and executable; it is called
    // with the C ABI it was written for, and touches neither memory nor the stack.
    unsafe {
        let switch: extern "C" fn(u64, u64, u64) = core::mem::transmute(trampoline);
        switch(cfg.ttbr1, empty_table_address(), cfg.sctlr);
    }
}

/// Point this CPU's TTBR0 at the empty table and forget what the TLB held for the low half:
/// from here on a low address faults until a process's table is loaded.
pub fn use_empty_ttbr0() {
    // SAFETY: the empty table is all invalid entries; the kernel runs in TTBR1 only. The
    // local TLB invalidation drops the identity-map entries boot left, which are global.
    unsafe {
        core::arch::asm!(
            "msr ttbr0_el1, {0}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            in(reg) empty_table_address(),
        )
    };
}

/// True when this CPU runs with the MMU and both caches on.
pub fn is_enabled() -> bool {
    let s = SCTLR_EL1.get();
    s & 1 != 0 && s & (1 << 2) != 0 && s & (1 << 12) != 0
}

/// Where the MMU would translate virtual address `va` for an EL1 read on this CPU right now:
/// the physical address, or None if the access would fault. (`at s1e1r` walks the tables the
/// way a load would, without loading.)
pub fn translate_read(va: usize) -> Option<usize> {
    let par = super::cpu::translate(va, false);
    if par & 1 != 0 {
        return None;
    }
    const PA_MASK: u64 = 0x0000_ffff_ffff_f000; // PAR_EL1.PA, bits 47:12
    Some(((par & PA_MASK) as usize) | (va & 0xfff))
}

/// Physical addresses of this CPU's two table roots (TTBR0 without the ASID, TTBR1).
pub fn table_roots() -> (u64, u64) {
    const BADDR: u64 = 0x0000_ffff_ffff_fffe;
    (TTBR0_EL1.get() & BADDR, TTBR1_EL1.get() & BADDR)
}
