//! Exception vectors, the stack an exception runs on, and the report of an unexpected exception
//! (chapter 1, "What goes wrong without it").
//!
//! Every one of the 16 vectors saves a full `TrapFrame` (general registers, FP/SIMD registers,
//! ELR, SPSR, ESR, FAR, the interrupted SP). The eight taken from the kernel (EL1) call
//! `handle_exception`: IRQs go to the handler src/irq registered; a data abort in a user copy
//! resumes at its fixup (src/arch/aarch64/uaccess.rs); any other exception but the semihosting
//! probe is fatal: the CPU prints what happened in words and panics, and the panic handler
//! decides whether to halt the CPU or end the QEMU run. The eight taken from user mode (EL0) have
//! their own entry and handler, in user.rs (chapter 19).
//!
//! Before it stores anything, the kernel's vector entry decides where the frame goes. An exception
//! needs `EXCEPTION_STACK_RESERVE` bytes: its frame and its handler's own calls. A thread whose SP
//! has less than that left above its stack's bottom (the *band*) is still within its stack, so an
//! exception taken there goes to this CPU's emergency stack, and the return puts back the thread's
//! own SP from the frame: the thread goes on where it was. An SP below the bottom is an overflow:
//! `handle_exception` reports it and never returns. An exception taken while the emergency stack is
//! in use puts its frame below the live one; if no frame fits any more, the CPU stops in the vector
//! rather than write over it.

use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::esr;
use crate::config::MAX_CPUS;

/// Registers saved on exception entry. Layout shared with the assembly below.
#[repr(C)]
#[derive(Clone)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
    /// The stack pointer of the interrupted code, put back at the return: the frame is not
    /// always just below it (see the vector entry).
    pub sp: u64,
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
    /// The user's thread pointer (TPIDR_EL0, its TLS base) for exceptions from EL0; unused (0)
    /// in frames of exceptions taken in the kernel, where TPIDR_EL0 holds the task word.
    pub tpidr_el0: u64,
    /// Keeps the frame a multiple of 16 bytes, as SP must stay.
    pub reserved: u64,
}
const _: () = assert!(core::mem::size_of::<TrapFrame>() == 832);

impl TrapFrame {
    /// Was the exception taken from user mode? SPSR.M[4:0] reads 0 (EL0t, AArch64) exactly then.
    pub fn came_from_user(&self) -> bool {
        self.spsr & 0x1f == 0
    }
}
// The assembly below and in user.rs addresses the fields by these offsets.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(TrapFrame, elr) == 248);
    assert!(offset_of!(TrapFrame, esr) == 264);
    assert!(offset_of!(TrapFrame, sp) == 280);
    assert!(offset_of!(TrapFrame, q) == 288);
    assert!(offset_of!(TrapFrame, fpcr) == 800);
    assert!(offset_of!(TrapFrame, tpidr_el0) == 816);
};

const VECTOR_NAMES: [&str; 16] = [
    "Synchronous (current EL, SP0)",
    "IRQ (current EL, SP0)",
    "FIQ (current EL, SP0)",
    "SError (current EL, SP0)",
    "Synchronous (current EL, SPx)",
    "IRQ (current EL, SPx)",
    "FIQ (current EL, SPx)",
    "SError (current EL, SPx)",
    "Synchronous (lower EL, AArch64)",
    "IRQ (lower EL, AArch64)",
    "FIQ (lower EL, AArch64)",
    "SError (lower EL, AArch64)",
    "Synchronous (lower EL, AArch32)",
    "IRQ (lower EL, AArch32)",
    "FIQ (lower EL, AArch32)",
    "SError (lower EL, AArch32)",
];

/// The system-call number the EL0 vector answers at once without entering the kernel proper:
/// the floor a system call's cost is measured against (src/bench/syscall.rs). Not a Linux
/// number (Linux answers -ENOSYS to it); x0 comes back unchanged.
pub const FLOOR_SYSCALL: u64 = 0x7ff0;

/// Where the vector entry finds this CPU's logical id and stack bottom: offsets into the per-CPU
/// area TPIDR_EL1 points at. src/percpu.rs lays `CpuArea` out to match (and asserts it).
pub const PERCPU_ID_OFFSET: usize = 0;
pub const PERCPU_STACK_BOTTOM_OFFSET: usize = 24;
/// The copy of the running task's word (src/arch/aarch64/cpu.rs, `set_task_word`) that the entry
/// from user mode loads into TPIDR_EL0 (user.rs).
pub const PERCPU_TASK_WORD_OFFSET: usize = 40;

/// Bytes an exception may need on the stack it is taken on: its 832-byte frame and the calls of
/// its handler. With the lock validator on, the tick's path and a preemptive switch at its end
/// reach about 7 KiB; the in-kernel test `exception_irq_in_the_last_frame_of_a_stack_returns_there`
/// measures them and fails if they outgrow the reserve. An exception taken with less than this
/// left above the stack's bottom runs on the emergency stack.
pub const EXCEPTION_STACK_RESERVE: usize = 12 * 1024;

/// Bytes of each CPU's emergency stack: room for an exception taken in the band (the reserve),
/// a fatal report from there (the panic path), and a nested exception below it. Each CPU's lies
/// in its stack slot, above its stack (linker.ld), so only the CPUs a machine has take memory.
pub use super::layout::EMERGENCY_STACK_SIZE;

/// The [bottom, top) of CPU `cpu`'s emergency stack: for the exceptions that cannot use the
/// stack they were taken on, those taken in the band (less than `EXCEPTION_STACK_RESERVE` left)
/// or below it (an overflow). Without it, the vector entry would push its frame into the guard
/// page (or, on a thread's heap stack, over the canary and the heap block below), fault again,
/// and keep going down. CPU n only ever runs on its own: the vector entry moves there, and an
/// exception taken there stays on it.
pub fn emergency_stack(cpu: usize) -> (usize, usize) {
    assert!(cpu < MAX_CPUS, "cpu{cpu} has no emergency stack");
    super::layout::kernel_layout().emergency_slot(cpu + 1)
}

/// This CPU's logical id and the bottom of the stack it runs on, read as the vector entry reads
/// them; None before the CPU has a per-CPU area or stack bounds.
fn this_cpu_and_stack_bottom() -> Option<(usize, usize)> {
    let area = super::cpu::percpu_pointer();
    if area == 0 {
        return None;
    }
    // SAFETY: TPIDR_EL1 holds this CPU's `CpuArea`, whose `id` and `stack_bottom` sit at these
    // offsets as word-sized fields (src/percpu.rs asserts both); the area is static.
    let (id, bottom) = unsafe {
        (
            *((area + PERCPU_ID_OFFSET) as *const usize),
            (*((area + PERCPU_STACK_BOTTOM_OFFSET) as *const AtomicUsize)).load(Ordering::Relaxed),
        )
    };
    (bottom != 0).then_some((id, bottom))
}

/// Where the interrupted SP was, for an exception the vector entry moved to the emergency stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TakenOff {
    /// Taken on its own stack (or on the emergency stack, nested): nothing to tell.
    No,
    /// SP was within `EXCEPTION_STACK_RESERVE` of the stack bottom: a legitimate place to be.
    Band { bottom: usize },
    /// SP was below the stack bottom: the stack overflowed.
    Overflow { bottom: usize },
}

fn taken_off(frame: &TrapFrame) -> TakenOff {
    let Some((cpu, bottom)) = this_cpu_and_stack_bottom() else {
        return TakenOff::No;
    };
    let (emergency_bottom, emergency_top) = emergency_stack(cpu);
    let emergency = emergency_bottom..emergency_top;
    let sp = frame.sp as usize;
    if !emergency.contains(&(frame as *const TrapFrame as usize)) || emergency.contains(&sp) {
        TakenOff::No
    } else if sp < bottom {
        TakenOff::Overflow { bottom }
    } else {
        TakenOff::Band { bottom }
    }
}

/// `hlt #0xf000`: the semihosting trap. Without semihosting QEMU treats it as undefined.
const HLT_SEMIHOSTING: u32 = 0xd45e_0000;
/// Written to x0 when a semihosting call trapped because semihosting is not enabled.
pub const SEMIHOSTING_UNAVAILABLE: u64 = u64::MAX;

/// Point VBAR_EL1 at the vector table. Each CPU does this once (secondaries in boot.rs).
pub fn install() {
    // SAFETY: the table is 2 KiB aligned and lives for the kernel's lifetime.
    unsafe { core::arch::asm!("msr vbar_el1, {0}", "isb", in(reg) vector_table_address()) };
}

/// The address secondaries load into VBAR_EL1 before they run Rust.
pub fn vector_table_address() -> usize {
    unsafe extern "C" {
        fn exception_vector_table();
    }
    exception_vector_table as *const () as usize
}

/// Vector numbers of an IRQ taken from EL1 (SP_EL0 or SP_EL1 selected).
const IRQ_CURRENT_EL_SP0: u64 = 1;
const IRQ_CURRENT_EL_SPX: u64 = 5;

fn is_irq(kind: u64) -> bool {
    kind == IRQ_CURRENT_EL_SPX || kind == IRQ_CURRENT_EL_SP0
}

/// The IRQ handler, registered by the layer above (src/irq): the vectors are architecture,
/// what an interrupt means is not, so the dependency points upward only through this hook.
static IRQ_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Route IRQ exceptions to `handler`.
pub fn set_irq_handler(handler: fn(&mut TrapFrame)) {
    IRQ_HANDLER.store(handler as usize, Ordering::Release);
}

/// Run the registered IRQ handler on `frame`; false if there is none yet. IRQs from the kernel
/// and from user mode both come here.
pub(super) fn dispatch_irq(frame: &mut TrapFrame) -> bool {
    let hook = IRQ_HANDLER.load(Ordering::Acquire);
    if hook == 0 {
        return false;
    }
    // SAFETY: the only non-zero value ever stored is a `fn(&mut TrapFrame)` (above).
    let handler: fn(&mut TrapFrame) = unsafe { core::mem::transmute(hook) };
    handler(frame);
    true
}

/// Vector number and exception class of a data abort taken in the kernel (SP_EL1 selected).
const SYNC_CURRENT_EL_SPX: u64 = 4;
const EC_DATA_ABORT_SAME_EL: u64 = 0x25;

#[unsafe(no_mangle)]
extern "C" fn handle_exception(kind: u64, frame: &mut TrapFrame) {
    let taken_off = taken_off(frame);
    if let TakenOff::Overflow { bottom } = taken_off {
        // Whatever the exception, the thread has already run off its stack: never return to it.
        report(kind, frame);
        log::error!(
            "  SP {:#x} lies below its stack's bottom {bottom:#x}: the stack overflowed; now on this CPU's emergency stack",
            frame.sp
        );
        if is_irq(kind) {
            panic!(
                "stack overflow: an IRQ found SP {:#x} below the stack bottom {bottom:#x} at ELR {:#x}",
                frame.sp, frame.elr
            );
        }
        panic!(
            "unhandled exception: {} at ELR {:#x}: stack overflow, SP {:#x} below the stack bottom {bottom:#x}",
            esr::exception_class_name(frame.esr),
            frame.elr,
            frame.sp
        );
    }
    if is_irq(kind) && dispatch_irq(frame) {
        return;
    }
    let ec = esr::exception_class(frame.esr);
    // A user copy's load or store faulted: the page is made present, or the copy ends early.
    if kind == SYNC_CURRENT_EL_SPX
        && ec == EC_DATA_ABORT_SAME_EL
        && super::uaccess::handle_kernel_fault(frame, taken_off == TakenOff::No)
    {
        return;
    }
    if kind == SYNC_CURRENT_EL_SPX && ec == 0 && is_semihosting_probe(frame.elr) {
        // Semihosting is off: report that to the caller instead of dying (see semihosting.rs).
        frame.x[0] = SEMIHOSTING_UNAVAILABLE;
        frame.elr += 4;
        return;
    }
    report(kind, frame);
    if let TakenOff::Band { bottom } = taken_off {
        log::error!(
            "  SP {:#x} was within {EXCEPTION_STACK_RESERVE} bytes of its stack's bottom {bottom:#x}: now on this CPU's emergency stack",
            frame.sp
        );
    }
    panic!(
        "unhandled exception: {} at ELR {:#x}",
        esr::exception_class_name(frame.esr),
        frame.elr
    );
}

fn is_semihosting_probe(elr: u64) -> bool {
    let layout = super::layout::kernel_layout();
    let pc = elr as usize;
    if pc < layout.text.0 || pc + 4 > layout.text.1 || !pc.is_multiple_of(4) {
        return false;
    }
    // SAFETY: ELR lies inside the kernel's mapped, readable text section (checked above).
    unsafe { core::ptr::read_volatile(pc as *const u32) == HLT_SEMIHOSTING }
}

pub(super) fn report(kind: u64, f: &TrapFrame) {
    let name = VECTOR_NAMES.get(kind as usize).copied().unwrap_or("?");
    if is_irq(kind) {
        // ESR and FAR describe the last synchronous exception, not this one.
        log::error!("{name} exception");
    } else if esr::is_abort(f.esr) {
        log::error!("{} exception: {}", name, esr::exception_class_name(f.esr));
        let level = esr::fault_level(f.esr).map_or(-1, |l| l as i64);
        log::error!(
            "  ESR {:#010x}: {} (level {}), {} access to FAR {:#x}",
            f.esr,
            esr::fault_status_name(f.esr),
            level,
            if esr::abort_was_write(f.esr) {
                "write"
            } else {
                "read"
            },
            f.far
        );
        if let Some(slot) = guard_page_slot(f.far as usize) {
            log::error!("  FAR lies in the guard page below stack slot {slot}: a stack overflow");
        }
    } else {
        log::error!("{} exception: {}", name, esr::exception_class_name(f.esr));
        log::error!("  ESR {:#010x}  FAR {:#x}", f.esr, f.far);
    }
    log::error!(
        "  ELR {:#018x}  SPSR {:#010x}  SP {:#018x}",
        f.elr,
        f.spsr,
        f.sp
    );
    for row in 0..8 {
        let mut line = crate::logger::LineBuffer::new();
        for col in 0..4 {
            let r = row * 4 + col;
            if r < 31 {
                let _ = write!(line, "x{:<2} {:#018x}  ", r, f.x[r]);
            }
        }
        log::error!("  {}", line.as_str().trim_end());
    }
}

fn guard_page_slot(addr: usize) -> Option<usize> {
    let layout = super::layout::kernel_layout();
    (0..super::layout::STACK_SLOTS).find(|&slot| {
        let guard = layout.guard_page(slot);
        (guard..guard + super::layout::PAGE_SIZE).contains(&addr)
    })
}

/// What `wait_for_interrupts_at` saw after the interrupts, through its own stack pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackProbe {
    /// SP after the interrupts: an exception must hand back the SP it interrupted.
    pub sp_after: u64,
    /// The word at [SP] after the interrupts (the probe stored `marker` there before).
    pub word_at_sp: u64,
}

/// A test probe for the vectors' stack handling: move SP to `sp`, store `marker` at [sp] and
/// [sp + 8] (memory the code at that SP owns), execute WFI `waits` times, then read SP and the
/// word at [SP] as code running there would, and return on the caller's stack. With IRQs
/// unmasked, each WFI ends with an interrupt taken while SP is `sp`; the caller checks that
/// interrupts did arrive. No Rust runs between the move and the read, so nothing but the
/// exceptions can change SP or the marker.
///
/// # Safety
/// `sp` is 16-byte aligned, [sp, sp + 16) is mapped memory nothing else uses while the probe
/// runs, and the exception vectors can take an interrupt at `sp` (inside this CPU's stack, in the
/// last frame's worth above its bottom, or on this CPU's emergency stack). The thread must not
/// migrate: the probe never yields, and an interrupt taken away from the thread's own stack does
/// not preempt (src/task/sched/timeslice.rs, `preempt_on_irq_exit`).
pub unsafe fn wait_for_interrupts_at(sp: usize, marker: u64, waits: u64) -> StackProbe {
    assert!(sp.is_multiple_of(16), "SP must stay 16-byte aligned");
    assert!(waits > 0, "the probe waits at least once");
    unsafe extern "C" {
        fn quartet_wait_for_interrupts_at(sp: usize, marker: u64, waits: u64) -> StackProbe;
    }
    // SAFETY: forwarded to the caller; the assembly below follows the C calling convention and
    // returns the two-word struct in x0 and x1.
    unsafe { quartet_wait_for_interrupts_at(sp, marker, waits) }
}

core::arch::global_asm!(
    r#"
.section .text.quartet_wait_for_interrupts_at, "ax"
.balign 16
.global quartet_wait_for_interrupts_at
.type quartet_wait_for_interrupts_at, %function
// x0 = sp to wait at, x1 = marker, x2 = WFIs. x9 keeps the caller's SP: an interrupt restores
// every general register, so only SP itself is at stake.
quartet_wait_for_interrupts_at:
    mov     x9, sp
    mov     sp, x0
    stp     x1, x1, [sp]
1:  wfi
    subs    x2, x2, #1
    b.ne    1b
    mov     x0, sp
    ldr     x1, [sp]
    mov     sp, x9
    ret
.size quartet_wait_for_interrupts_at, . - quartet_wait_for_interrupts_at
"#
);

core::arch::global_asm!(
    r#"
// Before storing anything, decide where the frame goes; x1 ends up holding the SP to return to,
// which exception_common keeps in the frame. SP_EL0 and TPIDRRO_EL0 hold x0 and x1 meanwhile:
// the kernel never runs at EL0, so nothing else uses them.
//  - SP on this CPU's emergency stack (an exception inside the handling of one taken there):
//    below SP, under the live frame, if a frame still fits; if not, stop (below).
//  - SP at least the reserve above its stack's bottom, or no per-CPU area or bounds yet: below SP.
//  - otherwise (SP in the band above the bottom, or below the bottom): at the top of this CPU's
//    emergency stack, with the interrupted SP kept for the return.
.macro vector_entry kind
    .balign 0x80
.Lvector_entry_start\@:
    msr     sp_el0, x0
    msr     tpidrro_el0, x1
    mrs     x0, tpidr_el1
    cbz     x0, 2f                          // no per-CPU area yet: nothing to check against
    ldr     x0, [x0, #{cpu_id}]
    adrp    x1, __emergency_stacks          // CPU 0's (linker.ld); CPU i's is i slots above
    add     x1, x1, :lo12:__emergency_stacks
    add     x1, x1, x0, lsl #16             // + id * slot size (64 + 32 + 4 KiB, checked below)
    add     x1, x1, x0, lsl #15
    add     x0, x1, x0, lsl #12             // x0 = this CPU's emergency stack bottom
    mov     x1, sp
    sub     x1, x1, x0
    cmp     x1, #{emergency_size}
    b.lo    3f                              // already on it: a nested exception
    mrs     x1, tpidr_el1
    ldr     x1, [x1, #{stack_bottom}]
    cbz     x1, 2f                          // no stack bounds yet
    add     x1, x1, #{reserve}
    cmp     sp, x1
    b.hs    2f                              // room enough: the normal path
    add     x0, x0, #{emergency_size}       // the band or below: the emergency stack's top
    mov     x1, sp
    mov     sp, x0
    b       4f
3:  cmp     x1, #{frame_size}               // room left below the live frame?
    b.lo    emergency_stack_exhausted
2:  mov     x1, sp
4:  sub     sp, sp, #{frame_size}
    mov     x0, #\kind
    b       exception_common
    .org    .Lvector_entry_start\@ + 0x80  // (an entry longer than its slot fails to assemble)
.endm

// From user mode SP_EL1 is the top of the thread's kernel stack (what it was at the eret into
// user mode), with nothing to check: the frame goes right below it. SP_EL0 and TPIDRRO_EL0 belong
// to the user, so x0 and x1 go straight into the frame (user.rs saves the rest).
.macro user_vector_entry kind
    .balign 0x80
.Luser_vector_entry_start\@:
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp, #0]
.if \kind == 8
    // The floor probe: `svc #0` with x8 = FLOOR_SYSCALL returns at once, having saved and run
    // nothing, so the benchmark can measure the bare trap and `eret` that every system call
    // pays (src/bench/syscall.rs). Every register is as the program left it.
    mrs     x0, esr_el1
    lsr     x0, x0, #26
    cmp     x0, #0x15                       // EC: SVC from AArch64
    b.ne    1f
    mov     x1, #{floor_syscall}
    cmp     x8, x1
    b.ne    1f
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame_size}
    eret
1:
.endif
    mov     x0, #\kind
    b       quartet_user_exception_common
    .org    .Luser_vector_entry_start\@ + 0x80
.endm

.section .text.vectors, "ax"
.balign 2048
.global exception_vector_table
exception_vector_table:
    vector_entry 0
    vector_entry 1
    vector_entry 2
    vector_entry 3
    vector_entry 4
    vector_entry 5
    vector_entry 6
    vector_entry 7
    user_vector_entry 8
    user_vector_entry 9
    user_vector_entry 10
    user_vector_entry 11
    user_vector_entry 12
    user_vector_entry 13
    user_vector_entry 14
    user_vector_entry 15

// An exception on this CPU's emergency stack with no room for its frame: handling an overflow
// keeps faulting. Any store would overwrite a live frame, so the CPU stops here with everything
// masked (a panicking CPU then reports it as not answering its stop IPI).
emergency_stack_exhausted:
    msr     daifset, #0xf
1:  wfe
    b       1b

// x0 = vector number, x1 = the SP to return to, SP = the frame; x0 and x1 wait in SP_EL0 and
// TPIDRRO_EL0.
exception_common:
    str     x1, [sp, #280]
    mrs     x1, sp_el0
    str     x1, [sp, #0]
    mrs     x1, tpidrro_el0
    str     x1, [sp, #8]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
    mrs     x10, elr_el1
    mrs     x11, spsr_el1
    stp     x10, x11, [sp, #248]
    mrs     x10, esr_el1
    mrs     x11, far_el1
    stp     x10, x11, [sp, #264]
    add     x10, sp, #288
    stp     q0, q1, [x10, #0]
    stp     q2, q3, [x10, #32]
    stp     q4, q5, [x10, #64]
    stp     q6, q7, [x10, #96]
    stp     q8, q9, [x10, #128]
    stp     q10, q11, [x10, #160]
    stp     q12, q13, [x10, #192]
    stp     q14, q15, [x10, #224]
    stp     q16, q17, [x10, #256]
    stp     q18, q19, [x10, #288]
    stp     q20, q21, [x10, #320]
    stp     q22, q23, [x10, #352]
    stp     q24, q25, [x10, #384]
    stp     q26, q27, [x10, #416]
    stp     q28, q29, [x10, #448]
    stp     q30, q31, [x10, #480]
    mrs     x11, fpcr
    mrs     x12, fpsr
    add     x13, sp, #800
    stp     x11, x12, [x13]
    mov     x1, sp
    bl      handle_exception
    add     x10, sp, #288
    ldp     q0, q1, [x10, #0]
    ldp     q2, q3, [x10, #32]
    ldp     q4, q5, [x10, #64]
    ldp     q6, q7, [x10, #96]
    ldp     q8, q9, [x10, #128]
    ldp     q10, q11, [x10, #160]
    ldp     q12, q13, [x10, #192]
    ldp     q14, q15, [x10, #224]
    ldp     q16, q17, [x10, #256]
    ldp     q18, q19, [x10, #288]
    ldp     q20, q21, [x10, #320]
    ldp     q22, q23, [x10, #352]
    ldp     q24, q25, [x10, #384]
    ldp     q26, q27, [x10, #416]
    ldp     q28, q29, [x10, #448]
    ldp     q30, q31, [x10, #480]
    add     x13, sp, #800
    ldp     x11, x12, [x13]
    msr     fpcr, x11
    msr     fpsr, x12
    ldp     x10, x11, [sp, #248]
    msr     elr_el1, x10
    msr     spsr_el1, x11
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    // Back to the interrupted SP, which is not always just above the frame: x0 carries it and
    // waits in SP_EL0 meanwhile (IRQs are still masked, so nothing else uses SP_EL0 here).
    ldp     x0, x1, [sp, #0]
    msr     sp_el0, x0
    ldr     x0, [sp, #280]
    mov     sp, x0
    mrs     x0, sp_el0
    eret
"#,
    stack_bottom = const PERCPU_STACK_BOTTOM_OFFSET,
    cpu_id = const PERCPU_ID_OFFSET,
    emergency_size = const EMERGENCY_STACK_SIZE,
    reserve = const EXCEPTION_STACK_RESERVE,
    frame_size = const core::mem::size_of::<TrapFrame>(),
    floor_syscall = const FLOOR_SYSCALL,
);
// `add`/`cmp` take a 12-bit immediate, optionally shifted left by 12: the reserve and the
// emergency stack size must be one of those, and the reserve must fit on the emergency stack
// with room for the report of what happened there.
const _: () = {
    const fn encodable(n: usize) -> bool {
        n < 1 << 12 || (n.is_multiple_of(1 << 12) && n < 1 << 24)
    }
    assert!(encodable(EXCEPTION_STACK_RESERVE) && encodable(EMERGENCY_STACK_SIZE));
    assert!(EXCEPTION_STACK_RESERVE > core::mem::size_of::<TrapFrame>());
    assert!(EMERGENCY_STACK_SIZE >= 2 * EXCEPTION_STACK_RESERVE);
    // The vector entry multiplies by the slot size with three shifted adds.
    assert!(super::layout::STACK_SLOT_SIZE == (1 << 16) + (1 << 15) + (1 << 12));
};
