//! The first instructions: the arm64 Image header, `_start`, the drop from EL2 to EL1, and the
//! secondary-CPU entry (chapter 1, "The code"; chapter 3, "Waking the other cores").
//!
//! The kernel is linked in the high half (linker.ld: virtual = linear-map offset + physical),
//! but a loader starts it at its physical address with the MMU off. So no Rust may run before
//! the MMU is on: compiled code holds absolute high addresses (vtables, function pointers,
//! string slices in statics, panic locations) that lead nowhere without translation. Only
//! position-independent assembly runs at the physical address.
//!
//! The boot CPU enters at `_start`. It clears BSS, builds the early map in `.boot_tables` (the
//! kernel image, the device tree and the board's UART in 2 MiB blocks in TTBR1; a one-page
//! identity map of the trampoline in TTBR0), switches the MMU on from the trampoline, jumps to
//! the high address of the code that follows and calls `kernel_main` (src/main.rs), which builds
//! the real map. Secondary CPUs enter at `secondary_entry` (physical), find their boot block by
//! their own MPIDR, switch the MMU on with the trampoline and the real kernel map, jump high,
//! drop the trampoline (TTBR0 becomes the empty table) and run `secondary_main`. Nothing here
//! touches a lock or an atomic: with the MMU off every data access is Device memory, where
//! exclusive loads and stores may never succeed (chapter 4 explains why).

use core::sync::atomic::AtomicU64;

use crate::config::MAX_CPUS;

/// Tag bit that marks a boot block as in use, so that MPIDR 0 never matches an empty block.
pub const BOOT_BLOCK_VALID: u64 = 1 << 63;
/// The affinity fields of MPIDR_EL1 (Aff3, Aff2, Aff1, Aff0). Bit 31 (RES1) and the MT/U bits
/// are masked off; the whole affinity is compared, never only Aff0.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// What a secondary CPU needs before it can run Rust: read with the MMU off, so the boot CPU
/// cleans each block to the point of coherency after writing it.
#[repr(C, align(64))]
pub struct SecondaryBootBlock {
    /// `MPIDR affinity | BOOT_BLOCK_VALID` while this block waits for its CPU, else 0.
    pub tag: AtomicU64,
    pub stack_top: AtomicU64,
    /// The CPU's per-CPU area, loaded into TPIDR_EL1.
    pub percpu: AtomicU64,
    /// The trampoline's identity map (physical), for the instant the MMU goes on.
    pub ttbr0: AtomicU64,
    /// The kernel's map (physical).
    pub ttbr1: AtomicU64,
    pub tcr: AtomicU64,
    pub mair: AtomicU64,
    pub sctlr: AtomicU64,
    pub vbar: AtomicU64,
}

impl SecondaryBootBlock {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: SecondaryBootBlock = SecondaryBootBlock {
        tag: AtomicU64::new(0),
        stack_top: AtomicU64::new(0),
        percpu: AtomicU64::new(0),
        ttbr0: AtomicU64::new(0),
        ttbr1: AtomicU64::new(0),
        tcr: AtomicU64::new(0),
        mair: AtomicU64::new(0),
        sctlr: AtomicU64::new(0),
        vbar: AtomicU64::new(0),
    };
}

/// One block per logical CPU; `secondary_entry` scans them for its own MPIDR.
#[unsafe(no_mangle)]
pub static SECONDARY_BOOT_BLOCKS: [SecondaryBootBlock; MAX_CPUS] =
    [SecondaryBootBlock::EMPTY; MAX_CPUS];

/// The physical address secondary CPUs start at (PSCI CPU_ON entry or spin-table release value):
/// they start with the MMU off, where only physical addresses exist.
pub fn secondary_entry_address() -> usize {
    unsafe extern "C" {
        fn secondary_entry();
    }
    crate::mm::virt_to_phys(secondary_entry as *const () as usize)
}

/// The early map's level-2 tables: one for each 1 GiB that holds the image, the device tree or
/// the UART.
const EARLY_L2_TABLES: usize = 3;

/// Where the boot CPU looks for a device tree, as platform::discover does: the physical window
/// of the board's RAM. Below 2^39, so the early map can reach it.
#[cfg(not(feature = "board-rpi4"))]
const DTB_WINDOW: (usize, usize) = (0x4000_0000, (1 << 39) - (4 << 20));
#[cfg(feature = "board-rpi4")]
const DTB_WINDOW: (usize, usize) = (0, 0xfc00_0000);
/// With x0 = 0, QEMU virt's ELF boot: the tree is at the start of RAM (platform/mod.rs).
#[cfg(not(feature = "board-rpi4"))]
const DTB_IF_X0_IS_ZERO: usize = crate::platform::VIRT_RAM_START as usize;
#[cfg(feature = "board-rpi4")]
const DTB_IF_X0_IS_ZERO: usize = 0;
/// The board's usual UART, for fault reports before the device tree has been read.
#[cfg(not(feature = "board-rpi4"))]
const EARLY_UART: usize = 0x0900_0000;
#[cfg(feature = "board-rpi4")]
const EARLY_UART: usize = 0xfe20_1000;

const fn block_descriptor(attrs: Attributes) -> u64 {
    attrs.bits() | VALID
}

use core::mem::offset_of;

use super::mmu::{SCTLR_EARLY, TCR_AS_16BIT, TCR_FIXED, TCR_IPS_SHIFT};
use super::pagetable::{Attributes, MAIR_VALUE, TABLE_OR_PAGE, VALID};
use crate::mm::LINEAR_MAP_OFFSET;
use crate::platform::validate::MAX_DTB_DATA;

core::arch::global_asm!(
    r#"
// ---------------------------------------------------------------------------------------------
// arm64 Image header (Documentation/arch/arm64/booting in Linux describes the format). Loaders
// that see the magic load us at RAM base + text_offset and pass the DTB address in x0.
// ---------------------------------------------------------------------------------------------
.section .text.head, "ax"
.global _start
_start:
    b       primary_entry               // code0
    .long   0                           // code1
    .quad   KERNEL_TEXT_OFFSET          // text_offset from RAM base (build.rs: virt 2 MiB, Pi 512 KiB)
    .quad   __image_size                // image_size, BSS and stacks included
    .quad   0x2                         // flags: little-endian, 4 KiB pages, 2 MiB-aligned base
    .quad   0, 0, 0                     // res2..res4
    .ascii  "ARM\x64"                   // magic
    .long   0                           // res5 (no PE/COFF header)

// The early map's tables and the empty table, zeroed at boot (linker.ld: .boot_tables).
.section .boot_tables, "aw", %nobits
.balign 4096
.global idmap_l1
idmap_l1:   .space 4096                 // TTBR0 while the MMU goes on: the trampoline page only
idmap_l2:   .space 4096
idmap_l3:   .space 4096
early_l1:   .space 4096                 // TTBR1 until kernel_main switches to the real map
early_l2:   .space 4096 * {early_l2_tables}
.global empty_table
empty_table: .space 4096                // TTBR0 of every CPU while no process runs

.section .text.boot, "ax"

// Leave EL2 for EL1 if we were entered at EL2 (the Pi 4, QEMU virtualization=on); a no-op at EL1.
// Entered at EL3 (started as firmware), drop to non-secure EL1 too, only so that the MMU this
// file sets up is the one that translates and kernel_main can say it will not run there.
// Clobbers x9. Leaves the entry exception level (1, 2 or 3) in \el_reg.
.macro drop_to_el1 el_reg
    mrs     x9, CurrentEL
    lsr     \el_reg, x9, #2
    cmp     \el_reg, #3
    b.ne    3f
    mov     x9, #0x431                  // SCR_EL3: RW (lower ELs AArch64), RES1 bits 5:4, NS
    msr     scr_el3, x9
    msr     cptr_el3, xzr               // no FP/SIMD traps to EL3
    ldr     x9, =0x30d00800             // SCTLR_EL1 RES1 bits; MMU and caches off
    msr     sctlr_el1, x9
    mov     x9, #0x3c5                  // SPSR: EL1h, D, A, I, F masked
    msr     spsr_el3, x9
    adr     x9, 1f
    msr     elr_el3, x9
    eret
3:
    cmp     \el_reg, #2
    b.ne    1f
    mov     x9, #(1 << 31)              // HCR_EL2.RW: EL1 runs AArch64; nothing else traps
    msr     hcr_el2, x9
    mov     x9, #3                      // CNTHCTL_EL2.EL1PCEN|EL1PCTEN: EL1 may use the timer
    msr     cnthctl_el2, x9
    msr     cntvoff_el2, xzr
    mrs     x9, midr_el1                // at EL1, MIDR/MPIDR reads return these virtual copies
    msr     vpidr_el2, x9
    mrs     x9, mpidr_el1
    msr     vmpidr_el2, x9
    mov     x9, #0x33ff                 // CPTR_EL2: no FP/SIMD traps to EL2
    msr     cptr_el2, x9
    msr     hstr_el2, xzr
    mrs     x9, id_aa64pfr0_el1         // GICv3 system-register interface present?
    ubfx    x9, x9, #24, #4
    cbz     x9, 2f
    mov     x9, #0xf                    // ICC_SRE_EL2: SRE|DFB|DIB|Enable (EL1 may use ICC_*)
    msr     S3_4_C12_C9_5, x9
    isb
2:
    ldr     x9, =0x30d00800             // SCTLR_EL1 RES1 bits; MMU and caches off
    msr     sctlr_el1, x9
    mov     x9, #0x3c5                  // SPSR: EL1h, D, A, I, F masked
    msr     spsr_el2, x9
    adr     x9, 1f
    msr     elr_el2, x9
    eret
1:
.endm

// Rust may use FP/SIMD registers (the target enables NEON), so let EL1 use them without trapping.
.macro enable_fp
    mov     x9, #(3 << 20)              // CPACR_EL1.FPEN = 0b11
    msr     cpacr_el1, x9
    isb
.endm

// \reg = physical address of \sym. Until the MMU is on, the code runs at its physical address,
// and PC-relative addressing (adrp) yields physical addresses: linker.ld moved every section by
// the same offset, so the distances are the same as between the virtual addresses.
.macro adr_pa reg, sym
    adrp    \reg, \sym
    add     \reg, \reg, :lo12:\sym
.endm

primary_entry:
    mov     x19, x0                     // the DTB address, if the loader gave one
    drop_to_el1 x20
    enable_fp
    msr     tpidr_el1, xzr              // "no per-CPU area yet": this_cpu() is not ready
    msr     tpidr_el0, xzr              // no task word yet: the preempt count reads 0
    adr_pa  x0, __bss_start
    adr_pa  x1, __bss_end
    bl      zero_range
    adr_pa  x0, __boot_tables_start
    adr_pa  x1, __boot_tables_end
    bl      zero_range
    bl      build_early_map
    // The BSS and the tables were written around the caches: drop any stale line a loader left
    // for the image, so nothing older shadows them once the caches are on. The stack slots
    // above are first written with the caches on, so they need no cleaning (and at MAX_CPUS
    // slots they would make this loop the longest part of boot).
    adr_pa  x0, __kernel_start
    adr_pa  x1, __stacks_start
    bl      invalidate_range
    // TCR_EL1: the fixed fields, IPS from PARange (at most 48 bits), AS if ASIDs have 16 bits
    // (mmu.rs computes the same for the secondaries).
    ldr     x2, ={tcr_fixed}
    mrs     x9, id_aa64mmfr0_el1
    and     x10, x9, #0xf
    mov     x11, #5
    cmp     x10, x11
    csel    x10, x10, x11, ls
    orr     x2, x2, x10, lsl #{tcr_ips_shift}
    ubfx    x10, x9, #4, #4
    cmp     x10, #2
    b.ne    1f
    orr     x2, x2, #{tcr_as}
1:  adr_pa  x0, idmap_l1
    adr_pa  x1, early_l1
    ldr     x3, ={mair}
    bl      load_mmu_registers
    ldr     x0, ={sctlr_early}
    ldr     x1, =primary_high           // a literal: the linked, high address
    b       __idmap_enable_mmu

// From here on the boot CPU runs at its high (linked) address, through the early map.
primary_high:
    ldr     x9, =exception_vector_table // a fault from here on is reported
    msr     vbar_el1, x9
    isb
    ldr     x9, =__boot_stack_top
    mov     sp, x9
    mov     x0, x19                     // physical; kernel_main reads it via the linear map
    mov     x1, x20
    bl      kernel_main                 // src/main.rs; never returns
5:  wfe
    b       5b

// zero_range(x0 = start, x1 = end): both 16-byte aligned. Clobbers x0.
zero_range:
    cmp     x0, x1
    b.hs    1f
    stp     xzr, xzr, [x0], #16
    b       zero_range
1:  ret

// invalidate_range(x0 = start, x1 = end): discard the data cache lines of [start, end) up to the
// point of coherency. Clobbers x0, x2, x3.
invalidate_range:
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4             // DminLine: log2 of the line size in words
    mov     x2, #4
    lsl     x2, x2, x3
    sub     x3, x2, #1
    bic     x0, x0, x3
1:  cmp     x0, x1
    b.hs    2f
    dc      ivac, x0
    add     x0, x0, x2
    b       1b
2:  dsb     sy
    ret

// early_map_block(x0 = physical address, x1 = block descriptor bits): map the 2 MiB block
// holding x0 at its linear-map address in the early TTBR1 tables (x23 = root; x21..x22 = the
// free level-2 tables). With the linear-map offset at the bottom of the 39-bit high half, a
// linear-map address indexes the tables exactly as its physical address would. Out of level-2
// tables, it maps nothing (linker.ld and the early map's three uses keep that from happening).
// Clobbers x2-x4.
early_map_block:
    lsr     x2, x0, #30                 // level-1 index: which GiB
    ldr     x3, [x23, x2, lsl #3]
    tbnz    x3, #0, 1f                  // a level-2 table is there already
    cmp     x21, x22
    b.hs    2f
    mov     x3, x21
    add     x21, x21, #4096
    orr     x4, x3, #{table}
    str     x4, [x23, x2, lsl #3]
1:  and     x3, x3, #0x0000fffffffff000
    ubfx    x2, x0, #21, #9             // level-2 index: which 2 MiB
    and     x4, x0, #0xffffffffffe00000
    orr     x4, x4, x1
    str     x4, [x3, x2, lsl #3]
2:  ret

// build_early_map: the tables the boot CPU turns the MMU on with. Clobbers x0-x4, x21-x28.
build_early_map:
    mov     x28, x30
    adr_pa  x23, early_l1
    adr_pa  x21, early_l2
    add     x22, x21, #(4096 * {early_l2_tables})
    // The device tree, where platform::discover will look for it: x0, or on virt with x0 = 0 (an
    // ELF boot) the start of RAM. Only inside the board's RAM window and 8-byte aligned; its
    // magic is checked later, in Rust. The blocks cover what discover reads (MAX_DTB_DATA).
    mov     x24, x19
    cbnz    x24, 1f
    ldr     x24, ={dtb_if_x0_is_zero}
    cbz     x24, 3f
1:  tst     x24, #7
    b.ne    3f
    ldr     x9, ={dtb_window_start}
    cmp     x24, x9
    b.lo    3f
    ldr     x9, ={dtb_window_end}
    cmp     x24, x9
    b.hs    3f
    and     x25, x24, #0xffffffffffe00000
    ldr     x26, ={max_dtb_data}
    add     x26, x24, x26
    mov     x27, x25
2:  mov     x0, x27
    ldr     x1, ={dtb_block}
    bl      early_map_block
    add     x27, x27, #0x200000
    cmp     x27, x26
    b.lo    2b
    mov     x0, x25                     // as for the image: no stale lines over the tree
    mov     x1, x27
    bl      invalidate_range
    // The board's usual UART, as Device memory, so an early fault report can print.
3:  ldr     x0, ={early_uart}
    ldr     x1, ={device_block}
    bl      early_map_block
    // The image, last: where it shares a 2 MiB block with the tree (an address the Pi's
    // firmware passes, say), the image's attributes must win.
    adr_pa  x25, __kernel_start
    and     x25, x25, #0xffffffffffe00000
    adr_pa  x26, __kernel_end
4:  mov     x0, x25
    ldr     x1, ={image_block}
    bl      early_map_block
    add     x25, x25, #0x200000
    cmp     x25, x26
    b.lo    4b
    // The trampoline's identity map (TTBR0): its one page, read-only and executable, at the
    // virtual address equal to its physical address. Nothing else of the image is in TTBR0.
    adr_pa  x0, idmap_l1
    adr_pa  x1, idmap_l2
    adr_pa  x2, idmap_l3
    adr_pa  x3, __idmap_text_start
    lsr     x4, x3, #30
    orr     x9, x1, #{table}
    str     x9, [x0, x4, lsl #3]
    ubfx    x4, x3, #21, #9
    orr     x9, x2, #{table}
    str     x9, [x1, x4, lsl #3]
    ubfx    x4, x3, #12, #9
    ldr     x9, ={trampoline_page}
    orr     x9, x9, x3
    str     x9, [x2, x4, lsl #3]
    mov     x30, x28
    ret

// load_mmu_registers(x0 = TTBR0, x1 = TTBR1, x2 = TCR, x3 = MAIR), MMU still off.
load_mmu_registers:
    msr     mair_el1, x3
    msr     tcr_el1, x2
    msr     ttbr0_el1, x0
    msr     ttbr1_el1, x1
    isb
    tlbi    vmalle1                     // nothing cached from before may translate for us
    dsb     nsh
    ic      iallu
    dsb     nsh
    isb
    ret

// Secondary CPUs arrive here with the MMU off, at this code's physical address, from PSCI CPU_ON
// or from the spin table.
.global secondary_entry
secondary_entry:
    drop_to_el1 x20
    enable_fp
    mrs     x1, mpidr_el1
    movz    x2, #0xffff                 // MPIDR_AFFINITY_MASK = 0xff_00ff_ffff
    movk    x2, #0x00ff, lsl #16
    movk    x2, #0x00ff, lsl #32
    and     x1, x1, x2
    orr     x1, x1, #(1 << 63)          // BOOT_BLOCK_VALID
    adr_pa  x2, SECONDARY_BOOT_BLOCKS
    mov     x3, #{max_cpus}
6:  ldr     x4, [x2]
    cmp     x4, x1
    b.eq    8f
    add     x2, x2, #{block_size}
    subs    x3, x3, #1
    b.ne    6b
7:  wfe                                 // nobody asked for this CPU: park it for good
    b       7b
8:  mov     x19, x2                     // the block, physical
    ldr     x0, [x19, #{block_ttbr0}]
    ldr     x1, [x19, #{block_ttbr1}]
    ldr     x2, [x19, #{block_tcr}]
    ldr     x3, [x19, #{block_mair}]
    bl      load_mmu_registers
    ldr     x0, [x19, #{block_sctlr}]
    ldr     x1, =secondary_high
    b       __idmap_enable_mmu

secondary_high:
    ldr     x9, ={linear_map_offset}
    add     x19, x19, x9                // the block, through the linear map
    ldr     x9, [x19, #{block_stack_top}]
    mov     sp, x9
    ldr     x9, [x19, #{block_percpu}]
    msr     tpidr_el1, x9
    msr     tpidr_el0, xzr              // the task word: set to this CPU's count in Rust
    ldr     x9, [x19, #{block_vbar}]
    msr     vbar_el1, x9
    // Done with the trampoline: TTBR0 gets the empty table, and the TLB forgets the identity map.
    adrp    x10, empty_table            // running high now: adrp yields the linked address
    add     x10, x10, :lo12:empty_table
    ldr     x9, ={linear_map_offset}
    sub     x10, x10, x9
    msr     ttbr0_el1, x10
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    mov     x0, x19
    mov     x1, x20
    bl      secondary_main              // src/main.rs; never returns
    b       7b

// ---------------------------------------------------------------------------------------------
// The trampoline: the only code that runs from the identity map in TTBR0 (linker.ld gives it a
// page of its own). Entered at its physical address.
// ---------------------------------------------------------------------------------------------
.section .text.idmap, "ax"

// __idmap_enable_mmu(x0 = SCTLR_EL1, x1 = high address to continue at). The instruction after
// the SCTLR write is fetched with translation on, from the same address: the identity map
// makes that the same instruction. The branch then leaves the low half for good.
__idmap_enable_mmu:
    msr     sctlr_el1, x0
    isb
    br      x1

// __idmap_switch_ttbr1(x0 = new TTBR1, x1 = empty table, x2 = SCTLR_EL1), called from the high
// half through the identity map (mmu.rs: switch_kernel_map). Break before make: while TTBR1
// holds the empty table, no kernel address translates and the TLB is emptied, so the old and
// the new map's entries for the same address never meet in the TLB. Touches no memory: there
// is no stack while TTBR1 is empty. SCTLR (WXN on) changes while nothing is cached either.
.global __idmap_switch_ttbr1
__idmap_switch_ttbr1:
    msr     ttbr1_el1, x1
    isb
    msr     sctlr_el1, x2
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     ttbr1_el1, x0
    isb
    ret
"#,
    max_cpus = const MAX_CPUS,
    early_l2_tables = const EARLY_L2_TABLES,
    tcr_fixed = const TCR_FIXED,
    tcr_ips_shift = const TCR_IPS_SHIFT,
    tcr_as = const TCR_AS_16BIT,
    mair = const MAIR_VALUE,
    sctlr_early = const SCTLR_EARLY,
    table = const VALID | TABLE_OR_PAGE,
    dtb_if_x0_is_zero = const DTB_IF_X0_IS_ZERO,
    dtb_window_start = const DTB_WINDOW.0,
    dtb_window_end = const DTB_WINDOW.1,
    max_dtb_data = const MAX_DTB_DATA,
    dtb_block = const block_descriptor(Attributes::READ_WRITE),
    early_uart = const EARLY_UART,
    device_block = const block_descriptor(Attributes::DEVICE),
    image_block = const block_descriptor(Attributes::EARLY_IMAGE),
    trampoline_page = const Attributes::TEXT.bits() | VALID | TABLE_OR_PAGE,
    linear_map_offset = const LINEAR_MAP_OFFSET,
    block_size = const core::mem::size_of::<SecondaryBootBlock>(),
    block_stack_top = const offset_of!(SecondaryBootBlock, stack_top),
    block_percpu = const offset_of!(SecondaryBootBlock, percpu),
    block_ttbr0 = const offset_of!(SecondaryBootBlock, ttbr0),
    block_ttbr1 = const offset_of!(SecondaryBootBlock, ttbr1),
    block_tcr = const offset_of!(SecondaryBootBlock, tcr),
    block_mair = const offset_of!(SecondaryBootBlock, mair),
    block_sctlr = const offset_of!(SecondaryBootBlock, sctlr),
    block_vbar = const offset_of!(SecondaryBootBlock, vbar),
);
