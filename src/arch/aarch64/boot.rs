//! The first instructions: the arm64 Image header, `_start`, the drop from EL2 to EL1, and the
//! secondary-CPU entry (chapter 1, "The boot path"; chapter 3, "Waking the other cores").
//!
//! Only the boot CPU enters at `_start`. It clears BSS and calls `kernel_main` (src/main.rs)
//! with the MMU still off. Secondary CPUs enter at `secondary_entry`, find their boot block by
//! their own MPIDR, switch the MMU on with the tables the boot CPU built, and only then run Rust
//! in `secondary_main`. Nothing here touches a lock or an atomic: with the MMU off every data
//! access is Device memory, where exclusive loads and stores may never succeed (FACTS.md).

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
    pub ttbr0: AtomicU64,
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

/// The physical address secondary CPUs start at (PSCI CPU_ON entry or spin-table release value).
pub fn secondary_entry_address() -> usize {
    unsafe extern "C" {
        fn secondary_entry();
    }
    secondary_entry as *const () as usize
}

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

.section .text.boot, "ax"

// Leave EL2 for EL1 if we were entered at EL2 (the Pi 4, QEMU virtualization=on); a no-op at EL1.
// Clobbers x9. Leaves the entry exception level (1 or 2) in \el_reg.
.macro drop_to_el1 el_reg
    mrs     x9, CurrentEL
    lsr     \el_reg, x9, #2
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

primary_entry:
    mov     x19, x0                     // the DTB address, if the loader gave one
    drop_to_el1 x20
    enable_fp
    msr     tpidr_el1, xzr              // "no per-CPU area yet": this_cpu() is not ready
    msr     tpidr_el0, xzr              // no task word yet: the preempt count reads 0
    adrp    x9, exception_vector_table  // a fault from here on is reported, not silent
    add     x9, x9, :lo12:exception_vector_table
    msr     vbar_el1, x9
    isb
    adrp    x9, __boot_stack_top
    add     x9, x9, :lo12:__boot_stack_top
    mov     sp, x9
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
3:  cmp     x9, x10                     // BSS is 16-byte aligned by linker.ld
    b.hs    4f
    stp     xzr, xzr, [x9], #16
    b       3b
4:  mov     x0, x19
    mov     x1, x20
    bl      kernel_main                 // src/main.rs; never returns
5:  wfe
    b       5b

// Secondary CPUs arrive here with the MMU off, from PSCI CPU_ON or from the spin table.
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
    adrp    x2, SECONDARY_BOOT_BLOCKS
    add     x2, x2, :lo12:SECONDARY_BOOT_BLOCKS
    mov     x3, #{max_cpus}
6:  ldr     x4, [x2]
    cmp     x4, x1
    b.eq    8f
    add     x2, x2, #64
    subs    x3, x3, #1
    b.ne    6b
7:  wfe                                 // nobody asked for this CPU: park it for good
    b       7b
8:  ldr     x9, [x2, #8]
    mov     sp, x9
    ldr     x9, [x2, #16]
    msr     tpidr_el1, x9
    msr     tpidr_el0, xzr              // the task word: set to this CPU's count in Rust
    ldr     x9, [x2, #56]
    msr     vbar_el1, x9
    mov     x19, x2
    ldr     x0, [x19, #24]
    ldr     x1, [x19, #32]
    ldr     x2, [x19, #40]
    ldr     x3, [x19, #48]
    bl      __enable_mmu
    mov     x0, x19
    mov     x1, x20
    bl      secondary_main              // src/main.rs; never returns
    b       7b

// __enable_mmu(ttbr0, tcr, mair, sctlr): identity-mapped, so execution continues at the next
// instruction with translation on.
.global __enable_mmu
__enable_mmu:
    msr     mair_el1, x2
    msr     tcr_el1, x1
    msr     ttbr0_el1, x0
    isb
    tlbi    vmalle1
    dsb     nsh
    ic      iallu
    dsb     nsh
    isb
    msr     sctlr_el1, x3
    isb
    ret
"#,
    max_cpus = const MAX_CPUS,
);
