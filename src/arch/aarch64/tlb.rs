//! TLB maintenance for user address spaces (chapter 20, "Address spaces, ASIDs and TLB
//! maintenance on several CPUs").
//!
//! A TLB caches translations, tagged with the ASID of the address space they came from (user
//! pages are mapped non-global). When a page-table entry changes (a page unmapped, a page made
//! read-only for copy-on-write), every CPU that may have cached the old entry must drop it.
//! AArch64 does that in hardware: a TLBI with the `IS` (inner shareable) suffix is broadcast to
//! every CPU in the inner-shareable domain, all of this kernel's CPUs, so there is no
//! shoot-down IPI as x86 needs (where each CPU can only invalidate its own TLB).
//!
//! Each operation is bracketed the same way, and both halves matter:
//! - `dsb ishst` before: the new table entry (a plain store) must be visible to the other
//!   CPUs' table walkers before they are told to drop the old one, or a walker could refill
//!   its TLB from the stale entry right after the invalidation.
//! - `dsb ish` after: waits until every CPU has completed the invalidation (the broadcast is
//!   asynchronous); then `isb` so this CPU's following instructions are fetched and translated
//!   under the new state.

use core::arch::asm;

/// The TLBI operand for a virtual address and ASID: VA[55:12] in bits 43:0, ASID in 63:48.
#[inline]
fn operand(asid: u16, va: usize) -> u64 {
    ((va as u64 >> 12) & ((1 << 44) - 1)) | (u64::from(asid) << 48)
}

/// Drop the translation of the page at `va` in address space `asid` from every CPU's TLB,
/// including cached walks of the tables above it (use after freeing a page table too).
pub fn flush_page(asid: u16, va: usize) {
    // SAFETY: barriers and TLB invalidation change no memory and no register but the TLBs.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vae1is, {op}",
            "dsb ish",
            "isb",
            op = in(reg) operand(asid, va),
            options(nostack, preserves_flags)
        )
    };
}

/// As `flush_page`, for a change of the last-level entry only (the tables above stay): the
/// `l` form lets the CPUs keep their cached walks.
pub fn flush_leaf(asid: u16, va: usize) {
    // SAFETY: as in flush_page.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vale1is, {op}",
            "dsb ish",
            "isb",
            op = in(reg) operand(asid, va),
            options(nostack, preserves_flags)
        )
    };
}

/// As `flush_leaf`, on this CPU only: for a space no other CPU ever ran (`flush_scope` in
/// src/mm/addrspace.rs). No broadcast, so the `nsh` barriers suffice, and the other CPUs are
/// not disturbed (under QEMU's TCG a broadcast TLBI stops every vCPU; on silicon it occupies
/// the interconnect and every CPU's TLB).
pub fn flush_leaf_local(asid: u16, va: usize) {
    // SAFETY: as in flush_page.
    unsafe {
        asm!(
            "dsb nshst",
            "tlbi vale1, {op}",
            "dsb nsh",
            "isb",
            op = in(reg) operand(asid, va),
            options(nostack, preserves_flags)
        )
    };
}

/// As `flush_asid`, on this CPU only (see `flush_leaf_local`).
pub fn flush_asid_local(asid: u16) {
    // SAFETY: as in flush_page.
    unsafe {
        asm!(
            "dsb nshst",
            "tlbi aside1, {op}",
            "dsb nsh",
            "isb",
            op = in(reg) u64::from(asid) << 48,
            options(nostack, preserves_flags)
        )
    };
}

/// Drop every translation tagged `asid` on every CPU (an address space is torn down).
pub fn flush_asid(asid: u16) {
    // SAFETY: as in flush_page.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi aside1is, {op}",
            "dsb ish",
            "isb",
            op = in(reg) u64::from(asid) << 48,
            options(nostack, preserves_flags)
        )
    };
}

/// Drop every EL1&0 translation on every CPU.
pub fn flush_all() {
    // SAFETY: as in flush_page.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vmalle1is",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// Drop every EL1&0 translation on this CPU only: after an ASID roll-over each CPU flushes its
/// own TLB at its next switch, so no broadcast is needed (the `nsh` barriers suffice for a
/// local operation).
pub fn flush_all_local() {
    // SAFETY: as in flush_page.
    unsafe {
        asm!(
            "dsb nshst",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// The ASID width in use: 16 bits only if the CPU has them (ID_AA64MMFR0_EL1.ASIDBits = 0b0010)
/// and TCR_EL1.AS asks for them; otherwise 8, and TTBR0's upper ASID byte is ignored.
pub fn asid_bits() -> u32 {
    let mmfr0: u64;
    let tcr: u64;
    // SAFETY: reading ID and control registers has no side effects.
    unsafe {
        asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0, options(nomem, nostack, preserves_flags));
        asm!("mrs {}, tcr_el1", out(reg) tcr, options(nomem, nostack, preserves_flags));
    }
    let cpu_has_16 = (mmfr0 >> 4) & 0xf == 0b0010;
    let tcr_as = tcr & (1 << 36) != 0;
    if cpu_has_16 && tcr_as { 16 } else { 8 }
}

/// Load TTBR0_EL1 with `table` (physical) tagged `asid`, and make the change take effect.
pub fn set_ttbr0(table: usize, asid: u16) {
    let value = table as u64 | (u64::from(asid) << 48);
    // SAFETY: the caller's table maps only user addresses (TTBR0's half); the kernel runs from
    // TTBR1 (or, before the high half, from an identity map the caller passes here itself).
    unsafe { asm!("msr ttbr0_el1, {}", "isb", in(reg) value, options(nostack, preserves_flags)) };
}

/// TTBR0_EL1's table address and ASID (for tests and reports).
pub fn ttbr0() -> (usize, u16) {
    let v: u64;
    // SAFETY: reading a system register has no side effects.
    unsafe { asm!("mrs {}, ttbr0_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    ((v & 0x0000_ffff_ffff_fffe) as usize, (v >> 48) as u16)
}
