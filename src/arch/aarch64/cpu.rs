//! The CPU's own registers: identity (MPIDR), the per-CPU pointer (TPIDR_EL1), the generic
//! counter, waiting (WFE/SEV/WFI), and cache maintenance (chapters 1 and 3).

use aarch64_cpu::asm;
use aarch64_cpu::registers::*;

use super::boot::MPIDR_AFFINITY_MASK;

/// This CPU's MPIDR_EL1 affinity (Aff3.Aff2.Aff1.Aff0), the value the device tree's `reg` holds.
#[inline]
pub fn mpidr_affinity() -> u64 {
    MPIDR_EL1.get() & MPIDR_AFFINITY_MASK
}

/// The exception level we run at now (1 after boot.rs dropped from EL2).
#[inline]
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// The per-CPU area pointer kept in TPIDR_EL1 (0 before the CPU has one).
#[inline]
pub fn percpu_pointer() -> usize {
    TPIDR_EL1.get() as usize
}

/// Point TPIDR_EL1 at this CPU's per-CPU area.
#[inline]
pub fn set_percpu_pointer(area: usize) {
    TPIDR_EL1.set(area as u64);
}

/// The running task's word, kept in TPIDR_EL0 while the kernel runs (0 when the CPU runs no
/// task of its own yet).
///
/// Unlike TPIDR_EL1, which names the CPU, this register names the task: the scheduler writes it
/// at every switch, so one `mrs` reads "my task" even if the task was just moved to another
/// CPU. Reading the per-CPU area and then a field of it takes two instructions, with a window
/// for preemption between them; this takes one. In user mode the register belongs to the user
/// (its thread pointer): the entry from EL0 saves the user's value in the trap frame and loads
/// the task word again from the per-CPU copy `set_task_word` keeps (user.rs).
#[inline]
pub fn task_word() -> usize {
    let word: u64;
    // SAFETY: reading TPIDR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {0}, tpidr_el0", out(reg) word, options(nomem, nostack)) };
    word as usize
}

/// Set the running task's word (the scheduler, with IRQs masked, at each switch; per-CPU setup),
/// in TPIDR_EL0 and in this CPU's area, where the entry from user mode finds it.
#[inline]
pub fn set_task_word(word: usize) {
    // SAFETY: TPIDR_EL0 is a plain software register; only `task_word` reads it in the kernel.
    // TPIDR_EL1 is 0 or this CPU's `CpuArea`, whose `task_word` field lies at the offset
    // (src/percpu.rs asserts it); only this CPU writes it, with IRQs masked or before any
    // user mode runs, so the entry from EL0 never sees it half-changed.
    unsafe {
        core::arch::asm!(
            "msr tpidr_el0, {word}",
            "mrs {area}, tpidr_el1",
            "cbz {area}, 1f",
            "str {word}, [{area}, #{offset}]",
            "1:",
            word = in(reg) word as u64,
            area = out(reg) _,
            offset = const super::exception::PERCPU_TASK_WORD_OFFSET,
            options(nostack, preserves_flags),
        )
    };
}

/// The generic counter (CNTPCT_EL0), ticking at `counter_frequency()` since reset.
#[inline]
pub fn counter() -> u64 {
    // The ISB keeps the read from being speculated ahead of earlier instructions.
    asm::barrier::isb(asm::barrier::SY);
    CNTPCT_EL0.get()
}

/// Ticks per second of the generic counter (62.5 MHz on QEMU virt, 54 MHz on a Pi 4).
#[inline]
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Wait for an event: a SEV from another CPU, or the loss of this CPU's exclusive monitor.
#[inline]
pub fn wait_for_event() {
    asm::wfe();
}

/// Wake every CPU waiting in WFE. The DSB first makes earlier stores visible to them.
#[inline]
pub fn send_event() {
    asm::barrier::dsb(asm::barrier::ISHST);
    asm::sev();
}

/// A spin-wait hint, `YIELD` (as Linux's cpu_relax): the loop only waits, so a CPU with several
/// hardware threads, or a hypervisor, may run something else. Rust's own `spin_loop()` emits
/// `ISB` on AArch64 instead.
#[inline]
pub fn cpu_relax() {
    // SAFETY: a hint instruction; no memory or register effects.
    unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
}

/// Stop this CPU for good, cheaply.
pub fn halt() -> ! {
    loop {
        asm::wfe();
    }
}

/// The data cache line size in bytes (CTR_EL0.DminLine).
fn dcache_line_size() -> usize {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {0}, ctr_el0", out(reg) ctr) };
    4 << ((ctr >> 16) & 0xf)
}

/// Clean and invalidate [start, end) to the point of coherency, so that a CPU whose caches are
/// off (a secondary still in its boot path, the Pi's spin-table stub), or a device that reads
/// memory directly (the Pi's VideoCore reading a mailbox message), reads what we wrote.
pub fn clean_dcache_range(start: usize, end: usize) {
    let line = dcache_line_size();
    let mut addr = start & !(line - 1);
    while addr < end {
        // SAFETY: cache maintenance by address has no effect on memory contents.
        unsafe { core::arch::asm!("dc civac, {0}", in(reg) addr) };
        addr += line;
    }
    asm::barrier::dsb(asm::barrier::SY);
}

/// Invalidate [start, end) without writing back: used at boot, with caches still off, so that
/// lines left by firmware cannot hide what we wrote straight to memory.
pub fn invalidate_dcache_range(start: usize, end: usize) {
    // SAFETY: with the data cache off, every write so far went to memory; dropping cached
    // copies of these lines loses nothing.
    unsafe { invalidate_lines(start, end) }
}

/// `dc ivac` on every line of [start, end), then a DSB: the one loop both invalidations share.
///
/// # Safety
/// Dropping the lines must lose nothing: none may hold a store not yet in memory.
unsafe fn invalidate_lines(start: usize, end: usize) {
    let line = dcache_line_size();
    let mut addr = start & !(line - 1);
    while addr < end {
        // SAFETY: the caller guarantees these lines hold no unwritten stores.
        unsafe { core::arch::asm!("dc ivac, {0}", in(reg) addr) };
        addr += line;
    }
    asm::barrier::dsb(asm::barrier::SY);
}

/// Drop this CPU's cached copies of [start, end), which a device (the Pi's VideoCore) has just
/// rewritten in memory behind the cache, so the next loads read what the device wrote. A
/// speculative fetch may have refilled a line while the device owned it, so this comes after
/// the device says it is done, never only before.
///
/// # Safety
/// No line of the range may hold a store made since it was last cleaned (it would be lost),
/// and the range must cover whole cache lines of nothing but the device's buffer.
pub unsafe fn invalidate_after_device_write(start: usize, end: usize) {
    // SAFETY: the caller guarantees the lines hold no unwritten stores and no other data.
    unsafe { invalidate_lines(start, end) }
}

/// Make instructions written to [start, end) visible to instruction fetch on every CPU: clean the
/// data cache to the point of unification, then invalidate the instruction cache (code copied
/// into a user page before it runs).
pub fn sync_instruction_cache(start: usize, end: usize) {
    let line = dcache_line_size();
    let mut addr = start & !(line - 1);
    while addr < end {
        // SAFETY: cache maintenance by address has no effect on memory contents.
        unsafe { core::arch::asm!("dc cvau, {0}", in(reg) addr) };
        addr += line;
    }
    asm::barrier::dsb(asm::barrier::ISH);
    let mut addr = start & !(line - 1);
    while addr < end {
        // SAFETY: as above; the next fetch of these lines reads them again.
        unsafe { core::arch::asm!("ic ivau, {0}", in(reg) addr) };
        addr += line;
    }
    asm::barrier::dsb(asm::barrier::ISH);
    asm::barrier::isb(asm::barrier::SY);
}

/// Load TTBR0_EL1 with `ttbr0` on this CPU only and drop this CPU's TLB entries; returns the old
/// value. For tests that build a user table by hand; address spaces proper switch through the
/// memory manager, which also handles ASIDs and the other CPUs.
///
/// # Safety
/// `ttbr0` roots a valid table that maps whatever this CPU touches through TTBR0 from now on
/// (all of the kernel while the kernel lives in the low half), and the thread stays on this
/// CPU until it puts the old value back.
pub unsafe fn replace_ttbr0_local(ttbr0: u64) -> u64 {
    let old = TTBR0_EL1.get();
    // SAFETY: the caller vouches for the table; the DSB makes earlier table writes visible to
    // the walker, the ISB makes the new root current, the TLBI drops translations of the old one.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "msr ttbr0_el1, {0}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            in(reg) ttbr0,
            options(nostack, preserves_flags)
        )
    };
    old
}

/// SCTLR_EL1 as it is now (M, C, I bits tell whether the MMU and caches are on).
pub fn sctlr() -> u64 {
    SCTLR_EL1.get()
}

/// TCR_EL1 as it is now (EPD0, bit 7, set means no TTBR0 walks: user addresses all fault).
pub fn tcr() -> u64 {
    TCR_EL1.get()
}

/// TTBR0_EL1 as it is now.
pub fn ttbr0() -> u64 {
    TTBR0_EL1.get()
}

/// Ask the MMU how it would translate `addr` for an EL1 read (or write), without touching it.
/// Returns PAR_EL1: bit 0 set means the access would fault.
pub fn translate(addr: usize, write: bool) -> u64 {
    // SAFETY: AT only performs a translation table walk; it reads no data and cannot fault.
    unsafe {
        if write {
            core::arch::asm!("at s1e1w, {0}", "isb", in(reg) addr);
        } else {
            core::arch::asm!("at s1e1r, {0}", "isb", in(reg) addr);
        }
    }
    PAR_EL1.get()
}

/// The current stack pointer.
#[inline]
pub fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads SP into a register; no memory access.
    unsafe { core::arch::asm!("mov {0}, sp", out(reg) sp) };
    sp
}

/// True if the CPU implements the ARMv8.1 LSE atomics (ID_AA64ISAR0_EL1.Atomic >= 2).
pub fn has_lse_atomics() -> bool {
    let isar0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { core::arch::asm!("mrs {0}, id_aa64isar0_el1", out(reg) isar0) };
    (isar0 >> 20) & 0xf >= 2
}

/// True if the CPU has the GICv3 system-register CPU interface (ID_AA64PFR0_EL1.GIC != 0).
///
/// A core wired to a GICv2 (the Pi 4's GIC-400) reads 0 here; QEMU sets the field only when
/// the machine has a GICv3. So without a device tree this tells which GIC the machine has.
pub fn has_gic_system_registers() -> bool {
    let pfr0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { core::arch::asm!("mrs {0}, id_aa64pfr0_el1", out(reg) pfr0) };
    (pfr0 >> 24) & 0xf != 0
}
