//! The chainloader's first and last instructions: its Image header, the move out of the
//! kernel's way, and the jump into the kernel it received (chapter 29, "The chainloader loop").
//!
//! This file belongs to the chainloader binary (src/bin/chainloader.rs), which includes it by
//! path; the kernel library does not, because the two programs each have their own `_start`.
//!
//! The firmware (or QEMU's raspi4b) loads the loader where it loads any kernel8.img, 0x80000,
//! and enters it on core 0 at EL2 with the MMU off and the device tree's address in x0. The
//! kernel the loader receives must land at that same address, so the loader first copies
//! itself to where chainloader.ld linked it, `__loader_start`, and continues there. The stub
//! that does the copy runs before that, at whatever address it was loaded to, so it uses only
//! PC-relative addressing and absolute addresses read from its literal pool.
//!
//! The other three cores are never touched: they wait in the firmware's spin table (below
//! 0x1000), and the kernel releases them from there exactly as if the firmware had started it.
//! Everything here runs with the MMU and the data cache off, as the boot protocol leaves them:
//! every data access goes to memory (Device memory, so never unaligned; the target's
//! strict-align keeps the compiler to that) and no lock or atomic is used.

/// Where the firmware puts kernel8.img, and so where the received kernel goes: RAM starts at 0
/// on the Pi 4, and the Image header's text_offset of a Pi 4 build is 0x80000.
pub const KERNEL_LOAD_ADDRESS: usize = 0x8_0000;

core::arch::global_asm!(
    r#"
.section .text.chainloader_head, "ax"
.global _start
_start:
    b       1f                          // code0
    .long   0                           // code1
    .quad   {load}                      // text_offset: the loader is loaded where a kernel is
    .quad   __loader_file_size          // image_size: at 0x80000 it needs only its own file
    .quad   0x2                         // flags: little-endian, 4 KiB pages
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .long   0

1:  mov     x19, x0                     // the device tree, handed on to the kernel untouched
    adr     x1, _start                  // where the firmware put us
    ldr     x2, =__loader_start         // where chainloader.ld linked us
    ldr     x3, =__loader_file_end
    cmp     x1, x2
    b.eq    3f
    // Copy the file, 16 bytes at a time (the linker script aligns its end). The two ranges
    // never overlap: the loader is linked far above any kernel it can receive.
2:  ldp     x4, x5, [x1], #16
    stp     x4, x5, [x2], #16
    cmp     x2, x3
    b.lo    2b
    // The copy was written around the data cache (it is off); the instruction cache may still
    // hold whatever was at the new address before, so it is emptied before we run there.
    dsb     sy
    ic      iallu
    dsb     sy
    isb
3:  ldr     x9, =chainloader_relocated
    br      x9

// From here on the loader runs at its linked address.
chainloader_relocated:
    mrs     x20, CurrentEL
    lsr     x20, x20, #2
    // Rust may use the FP/SIMD registers: they must not trap at the level we run at.
    cmp     x20, #2
    b.ne    4f
    mov     x9, #0x33ff                 // CPTR_EL2: RES1 bits, TFP clear
    msr     cptr_el2, x9
    b       5f
4:  mov     x9, #(3 << 20)              // CPACR_EL1.FPEN = 0b11 (entered at EL1)
    msr     cpacr_el1, x9
5:  isb
    ldr     x0, =__loader_bss_start
    ldr     x1, =__loader_bss_end
6:  cmp     x0, x1
    b.hs    7f
    stp     xzr, xzr, [x0], #16
    b       6b
7:  ldr     x9, =__loader_stack_top
    mov     sp, x9
    mov     x0, x19
    mov     x1, x20
    bl      chainloader_main            // src/bin/chainloader.rs; never returns
8:  wfe
    b       8b

// chainload_enter_kernel(x0 = entry, x1 = device tree): the arm64 boot protocol's registers
// (x0 = the tree, x1..x3 = 0), then the kernel's first instruction. The caller has cleaned the
// kernel to the point of coherency; the instruction cache may hold the loader's old copy at
// the same addresses, so it is emptied first.
.section .text, "ax"
.global chainload_enter_kernel
chainload_enter_kernel:
    mov     x9, x0
    mov     x0, x1
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    dsb     sy
    ic      iallu
    dsb     sy
    isb
    br      x9
"#,
    load = const KERNEL_LOAD_ADDRESS,
);

unsafe extern "C" {
    fn chainload_enter_kernel(entry: usize, device_tree: usize) -> !;
    static __loader_start: u8;
    static __loader_end: u8;
}

/// The loader's own footprint once it has moved: code, data, BSS and stack.
pub fn loader_range() -> (usize, usize) {
    // Only the addresses of the linker's symbols are taken, never their contents.
    (
        &raw const __loader_start as usize,
        &raw const __loader_end as usize,
    )
}

/// The generic counter (CNTPCT_EL0).
pub fn counter() -> u64 {
    let ticks: u64;
    // SAFETY: reading the counter has no side effects; the ISB keeps the read from being
    // speculated ahead of the loop that waits on it.
    unsafe { core::arch::asm!("isb", "mrs {0}, cntpct_el0", out(reg) ticks) };
    ticks
}

/// Ticks per second of the generic counter, as the firmware set it.
pub fn counter_frequency() -> u64 {
    let hz: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {0}, cntfrq_el0", out(reg) hz) };
    hz
}

/// Clean [start, end) to the point of coherency. The loader writes with its data cache off, so
/// there should be nothing to clean; but the kernel's first act is to *invalidate* its image
/// (boot.rs), which would throw away any dirty line a loader with its cache on had left.
pub fn clean_to_point_of_coherency(start: usize, end: usize) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {0}, ctr_el0", out(reg) ctr) };
    let line = 4usize << ((ctr >> 16) & 0xf);
    let mut addr = start & !(line - 1);
    while addr < end {
        // SAFETY: cleaning by address writes back, never changes memory's contents.
        unsafe { core::arch::asm!("dc cvac, {0}", in(reg) addr) };
        addr += line;
    }
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb sy") };
}

/// Run the kernel at `entry` as the firmware would have: x0 = `device_tree`, MMU off, at the
/// exception level we were entered at, the other cores still in the spin table.
///
/// # Safety
/// `entry` holds a complete, checked kernel, cleaned to the point of coherency, and nothing
/// the loader still needs lies in memory the kernel will use (it needs nothing any more).
pub unsafe fn enter_kernel(entry: usize, device_tree: usize) -> ! {
    // SAFETY: the caller's promise; the kernel never returns.
    unsafe { chainload_enter_kernel(entry, device_tree) }
}
