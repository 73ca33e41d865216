//! Running code at EL0: the way in from user mode, the way back, and what a user exception was
//! (chapter 19, "User mode and system calls").
//!
//! The four lower-EL vectors (exception.rs) run a different entry from the kernel's: from EL0,
//! SP_EL0, TPIDR_EL0 and TPIDRRO_EL0 belong to the user, and the kernel stack is known to be
//! fine, so there is nothing to check and nowhere else to go. The entry pushes a full
//! `TrapFrame` at SP_EL1, which is the top of the thread's kernel stack: whatever SP_EL1 was at
//! the `eret` into user mode. `return_to_user` erets with SP_EL1 just above the frame, so every
//! trap of a user thread lands on the same frame (as Linux's `pt_regs`), where the process layer
//! finds and changes the user's registers (a system call's result in x0, a new thread's PC).
//!
//! The frame keeps what EL0 owns: its SP (SP_EL0, in `sp`) and its thread pointer (TPIDR_EL0,
//! in `tpidr_el0`). In the kernel TPIDR_EL0 holds the *task word* (src/sync/preempt.rs), read by
//! every `preempt_disable` in one `mrs`; so the entry saves the user's value and loads the task
//! word from the per-CPU area, where `set_task_word` keeps a copy; the way back puts the user's
//! value back with IRQs masked. The kernel uses TPIDRRO_EL0 as scratch in its own exception
//! entry; the way back zeroes it, so no kernel value leaks to the user through it.
//!
//! The way back also cleans SPSR: only the condition flags NZCV survive from the frame. M[3:0]
//! becomes EL0t and the DAIF bits clear, so no frame (forged through a future sigreturn, or a
//! bug) can `eret` into EL1 or run user code with interrupts masked.
//!
//! A synchronous exception from EL0 is classified (`classify`) into a `UserException` and handed
//! to the handler the process layer installs (`set_user_exception_handler`): a system call, a
//! page fault, an undefined instruction. An IRQ from EL0 goes to the same IRQ handler as one from
//! EL1, whose way out checks for preemption, so a user program that never calls the kernel is
//! still sliced by the tick.

use core::fmt;

use super::esr;
use crate::mm::uaccess::Access;

/// What a synchronous exception from EL0 was, decoded from ESR_EL1 (and FAR_EL1 for aborts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserException {
    /// `svc` (EC 0x15): a system call; ELR already points past the `svc`.
    Syscall,
    /// A load or store faulted (EC 0x24). The fault status says why: no translation (nothing
    /// mapped), no permission (e.g. a write to a read-only page, or any access to kernel
    /// memory), access flag not set, or a misaligned access where alignment is required.
    DataAbort {
        far: usize,
        access: Access,
        translation: bool,
        permission: bool,
        access_flag: bool,
        alignment: bool,
    },
    /// Fetching an instruction faulted (EC 0x20): a jump to nowhere or into non-executable memory.
    InstructionAbort {
        far: usize,
        translation: bool,
        permission: bool,
    },
    /// A branch to a PC that is not a multiple of 4 (EC 0x22).
    PcAlignment,
    /// A load or store through an SP that is not a multiple of 16 (EC 0x26, SCTLR_EL1.SA0).
    SpAlignment,
    /// An instruction the CPU does not know, or one EL0 may not execute (EC 0x00).
    Undefined,
    /// A system register or system instruction EL0 may not use (EC 0x18).
    SystemRegister,
    /// A `brk` instruction (EC 0x3c).
    Breakpoint,
    /// Anything else (trapped WFI, illegal execution state, AArch32, ...): ESR as it was.
    Other(u64),
}

/// Classify a synchronous exception taken from EL0 by its ESR (and FAR, for aborts).
pub fn classify(esr: u64, far: u64) -> UserException {
    let far = far as usize;
    let fsc = esr & 0x3f;
    let translation = matches!(fsc, 0x04..=0x07);
    let permission = matches!(fsc, 0x0d..=0x0f);
    match esr::exception_class(esr) {
        0x15 => UserException::Syscall,
        0x24 => UserException::DataAbort {
            far,
            access: if esr::abort_was_write(esr) {
                Access::Write
            } else {
                Access::Read
            },
            translation,
            permission,
            access_flag: matches!(fsc, 0x09..=0x0b),
            alignment: fsc == 0x21,
        },
        0x20 => UserException::InstructionAbort {
            far,
            translation,
            permission,
        },
        0x22 => UserException::PcAlignment,
        0x26 => UserException::SpAlignment,
        0x00 => UserException::Undefined,
        0x18 => UserException::SystemRegister,
        0x3c => UserException::Breakpoint,
        _ => UserException::Other(esr),
    }
}

impl fmt::Display for UserException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UserException::Syscall => write!(f, "system call"),
            UserException::DataAbort {
                far,
                access,
                translation,
                permission,
                access_flag,
                alignment,
            } => {
                let why = if translation {
                    "nothing mapped"
                } else if permission {
                    "permission fault"
                } else if access_flag {
                    "access flag fault"
                } else if alignment {
                    "alignment fault"
                } else {
                    "other fault"
                };
                let what = match access {
                    Access::Read => "read",
                    Access::Write => "write",
                    Access::Exec => "execute",
                };
                write!(f, "data abort: {what} of {far:#x} ({why})")
            }
            UserException::InstructionAbort {
                far,
                translation,
                permission,
            } => {
                let why = if translation {
                    "nothing mapped"
                } else if permission {
                    "not executable"
                } else {
                    "other fault"
                };
                write!(f, "instruction abort at {far:#x} ({why})")
            }
            UserException::PcAlignment => write!(f, "misaligned PC"),
            UserException::SpAlignment => write!(f, "misaligned SP"),
            UserException::Undefined => write!(f, "undefined instruction"),
            UserException::SystemRegister => write!(f, "system register access not allowed"),
            UserException::Breakpoint => write!(f, "breakpoint (brk)"),
            UserException::Other(esr) => {
                write!(f, "{} (ESR {esr:#010x})", esr::exception_class_name(esr))
            }
        }
    }
}

/// SPSR bits a frame may carry back to EL0: the condition flags N, Z, C, V. Everything else,
/// M[4:0] (EL0t, AArch64) and DAIF included, is zero on the way out.
pub const USER_SPSR_KEEP: u64 = 0xf000_0000;

/// The SPSR the way back to EL0 really uses for a frame's `spsr`.
pub const fn sanitize_user_spsr(spsr: u64) -> u64 {
    spsr & USER_SPSR_KEEP
}

#[cfg(target_os = "none")]
pub use kernel::*;

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicUsize, Ordering};

    use super::{UserException, classify};
    use crate::arch::aarch64::exception::{self, PERCPU_TASK_WORD_OFFSET, TrapFrame};

    /// Vector numbers of the lower-EL entries (AArch64: 8-11, AArch32: 12-15).
    const LOWER_SYNC: u64 = 8;
    const LOWER_IRQ: u64 = 9;
    const LOWER_AARCH32_FIRST: u64 = 12;

    static HANDLER: AtomicUsize = AtomicUsize::new(0);

    /// Route synchronous exceptions from EL0 to `handler`. It runs on the thread's kernel
    /// stack, with IRQs masked as on entry; it may unmask them, sleep and be preempted; when it
    /// returns, the thread goes back to user mode with the frame as the handler left it.
    pub fn set_user_exception_handler(handler: fn(&mut TrapFrame, UserException)) {
        HANDLER.store(handler as usize, Ordering::Release);
    }

    static RETURN_HOOK: AtomicUsize = AtomicUsize::new(0);
    static ENTRY_HOOK: AtomicUsize = AtomicUsize::new(0);

    /// Run `hook` as the first kernel code after every entry from user mode (a system call, a
    /// fault, an interrupt), with IRQs masked, before anything is handled. The locking strategy
    /// takes the big kernel lock there; the return hook is where it goes again.
    pub fn set_entry_from_user_hook(hook: fn()) {
        ENTRY_HOOK.store(hook as usize, Ordering::Release);
    }

    fn run_entry_hook() {
        let hook = ENTRY_HOOK.load(Ordering::Acquire);
        if hook != 0 {
            // SAFETY: the only non-zero value ever stored is a `fn()` (above).
            let hook: fn() = unsafe { core::mem::transmute(hook) };
            hook();
        }
    }

    /// Run `hook` as the last kernel code before every return to user mode (after a system
    /// call, a fault or an interrupt from EL0), on the thread's kernel stack; IRQs may be
    /// masked (after an interrupt they are). The process layer delivers pending signals there,
    /// which may mean never returning at all.
    pub fn set_return_to_user_hook(hook: fn(&mut TrapFrame)) {
        RETURN_HOOK.store(hook as usize, Ordering::Release);
    }

    fn run_return_hook(frame: &mut TrapFrame) {
        let hook = RETURN_HOOK.load(Ordering::Acquire);
        if hook != 0 {
            // SAFETY: the only non-zero value ever stored is a `fn(&mut TrapFrame)` (above).
            let hook: fn(&mut TrapFrame) = unsafe { core::mem::transmute(hook) };
            hook(frame);
        }
    }

    /// The handler installed now, if any (a test that installs its own puts this one back).
    pub fn user_exception_handler() -> Option<fn(&mut TrapFrame, UserException)> {
        let hook = HANDLER.load(Ordering::Acquire);
        // SAFETY: the only non-zero value ever stored is such a function (above).
        (hook != 0).then(|| unsafe {
            core::mem::transmute::<usize, fn(&mut TrapFrame, UserException)>(hook)
        })
    }

    impl TrapFrame {
        /// A frame that starts user code at `pc` with stack pointer `sp`: every other register
        /// zero, flags clear (SPSR 0 is EL0t with interrupts unmasked).
        pub fn new_user(pc: usize, sp: usize) -> TrapFrame {
            TrapFrame {
                x: [0; 31],
                elr: pc as u64,
                spsr: 0,
                esr: 0,
                far: 0,
                sp: sp as u64,
                q: [0; 32],
                fpcr: 0,
                fpsr: 0,
                tpidr_el0: 0,
                reserved: 0,
            }
        }
    }

    /// Enter user mode: restore every register from `frame` (ELR as the PC, SP_EL0 from `sp`,
    /// TPIDR_EL0 from `tpidr_el0`, SPSR cleaned to EL0t with interrupts unmasked) and `eret`.
    /// SP_EL1 becomes the address just above the frame, so the thread's next exception from
    /// EL0 builds its frame at the same place: put the frame at the top of the thread's kernel
    /// stack.
    ///
    /// # Safety
    /// `frame` is 16-byte aligned, lies at the top of the current thread's kernel stack (nothing
    /// live above it but what the thread keeps there on purpose), and the current TTBR0 maps
    /// the user memory the frame's PC and SP point into. The kernel stack below the frame is
    /// abandoned: nothing on it is dropped.
    pub unsafe fn return_to_user(frame: *const TrapFrame) -> ! {
        assert!(
            (frame as usize).is_multiple_of(16),
            "a trap frame must be 16-byte aligned: {frame:p}"
        );
        unsafe extern "C" {
            fn quartet_return_to_user(frame: *const TrapFrame) -> !;
        }
        // SAFETY: forwarded to the caller; the routine masks interrupts, moves SP to the frame
        // and leaves through the same path as every return to EL0.
        unsafe { quartet_return_to_user(frame) }
    }

    /// Start user code from a kernel thread: copy `frame` to the top of the thread's kernel
    /// stack (`kernel_stack_top`, rounded down to 16) and enter user mode from there, as
    /// `return_to_user` does. The copy runs with IRQs masked and works even when `frame` or the
    /// caller's own stack frames lie in the place the frame goes: nothing of the thread's kernel
    /// stack is used again.
    ///
    /// # Safety
    /// `kernel_stack_top` is the top of the running thread's kernel stack, nothing on that stack
    /// is needed again (nothing on it is dropped), and the current TTBR0 maps the user memory
    /// the frame's PC and SP point into.
    pub unsafe fn start_user(frame: &TrapFrame, kernel_stack_top: usize) -> ! {
        const FRAME: usize = core::mem::size_of::<TrapFrame>();
        let dst = (kernel_stack_top & !15) - FRAME;
        let src = frame as *const TrapFrame as usize;
        // The copy runs from the end down: safe when the destination lies above the source.
        assert!(
            src <= dst || src >= dst + FRAME,
            "start_user: the frame at {src:#x} overlaps its destination {dst:#x} from above"
        );
        unsafe extern "C" {
            fn quartet_enter_user(src: *const TrapFrame, dst: usize) -> !;
        }
        // SAFETY: forwarded to the caller; `src` is a valid frame, `dst` 16-byte aligned inside
        // the thread's stack, and the copy direction suits their overlap (checked above).
        unsafe { quartet_enter_user(frame, dst) }
    }

    /// Every exception taken from EL0 comes here (from `quartet_user_exception_common`).
    #[unsafe(no_mangle)]
    extern "C" fn handle_user_exception(kind: u64, frame: &mut TrapFrame) {
        run_entry_hook();
        if kind == LOWER_IRQ {
            if !exception::dispatch_irq(frame) {
                exception::report(kind, frame);
                panic!("IRQ from user mode with no IRQ handler installed");
            }
            run_return_hook(frame);
            return;
        }
        let exception = if kind >= LOWER_AARCH32_FIRST {
            // `return_to_user` never sets SPSR.M[4], so no AArch32 code runs at EL0.
            log::error!(
                "exception from AArch32 user mode (vector {kind}): unsupported, treated as fatal for the program"
            );
            UserException::Other(frame.esr)
        } else if kind == LOWER_SYNC {
            classify(frame.esr, frame.far)
        } else {
            // FIQ (unused) or SError (an asynchronous external abort): not the program's doing
            // that the kernel could answer.
            exception::report(kind, frame);
            panic!(
                "unhandled exception from user mode: vector {kind}, ESR {:#x}, ELR {:#x}",
                frame.esr, frame.elr
            );
        };
        let hook = HANDLER.load(Ordering::Acquire);
        if hook == 0 {
            exception::report(kind, frame);
            panic!(
                "user mode {exception} at ELR {:#x}, and no user exception handler is installed (set_user_exception_handler)",
                frame.elr
            );
        }
        // SAFETY: the only non-zero value ever stored is a `fn(&mut TrapFrame, UserException)`.
        let handler: fn(&mut TrapFrame, UserException) = unsafe { core::mem::transmute(hook) };
        handler(frame, exception);
        run_return_hook(frame);
    }

    // The user entry. The vector stub (exception.rs) made room for the frame at SP_EL1, stored
    // the user's x0 and x1 in it and put the vector number in x0; here the rest is saved, the
    // task word replaces the user's TPIDR_EL0, and Rust runs. The way back is shared with
    // `return_to_user`: SP = the frame, interrupts masked from its first instruction, since an
    // IRQ taken after TPIDR_EL0 holds the user's value would read that as the task word.
    core::arch::global_asm!(
        r#"
.section .text.quartet_user_entry, "ax"
.balign 16
.global quartet_user_exception_common
quartet_user_exception_common:
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
    mov     x11, xzr                        // a system call has no fault address to read
    lsr     x12, x10, #26
    cmp     x12, #0x15                      // EC: SVC from AArch64
    b.eq    1f
    mrs     x11, far_el1
1:  stp     x10, x11, [sp, #264]
    mrs     x10, sp_el0
    str     x10, [sp, #280]
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
    mrs     x11, tpidr_el0
    stp     x11, xzr, [x13, #16]
    mrs     x12, tpidr_el1                  // the task word, from this CPU's copy of it
    ldr     x12, [x12, #{task_word}]
    msr     tpidr_el0, x12
    mov     x1, sp
    bl      handle_user_exception
    b       quartet_user_exception_return

// x0 = a frame, x1 = where it goes (the top of this thread's kernel stack, minus a frame): copy
// it there from the end down, then enter user mode from it (start_user).
.global quartet_enter_user
quartet_enter_user:
    msr     daifset, #0xf
    mov     x2, #{frame_size}
1:  sub     x2, x2, #16
    add     x3, x0, x2
    ldp     x4, x5, [x3]
    add     x3, x1, x2
    stp     x4, x5, [x3]
    cbnz    x2, 1b
    mov     x0, x1
    // fall through

// x0 = the frame: enter user mode from it (return_to_user).
.global quartet_return_to_user
quartet_return_to_user:
    msr     daifset, #0xf
    mov     sp, x0
    // fall through

// SP = the frame; back to EL0 with everything the frame holds.
.global quartet_user_exception_return
quartet_user_exception_return:
    msr     daifset, #0xf
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
    // A register that already holds the frame's value is not written again: after a system
    // call that nothing interrupted, FPCR, FPSR, SP_EL0, ELR and SPSR all still do. Under QEMU
    // every system-register write ends a translated block (a lookup and, for some, a helper
    // call), so the skips save about a tenth of a null system call; on hardware a read and a
    // compare cost about what the write would.
    add     x13, sp, #800
    ldp     x11, x12, [x13]
    mrs     x14, fpcr
    cmp     x14, x11
    b.eq    1f
    msr     fpcr, x11
1:  mrs     x14, fpsr
    cmp     x14, x12
    b.eq    1f
    msr     fpsr, x12
1:  ldr     x10, [x13, #16]
    msr     tpidr_el0, x10
    ldr     x10, [sp, #280]
    mrs     x14, sp_el0
    cmp     x14, x10
    b.eq    1f
    msr     sp_el0, x10
1:  mrs     x14, tpidrro_el0
    cbz     x14, 1f
    msr     tpidrro_el0, xzr                // the kernel's entry uses it as scratch
1:  ldp     x10, x11, [sp, #248]
    and     x11, x11, #{spsr_keep}          // EL0t, AArch64, DAIF clear: only NZCV from the frame
    mrs     x14, elr_el1
    cmp     x14, x10
    b.eq    1f
    msr     elr_el1, x10
1:  mrs     x14, spsr_el1
    cmp     x14, x11
    b.eq    1f
    msr     spsr_el1, x11
1:
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
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame_size}
    eret
    dsb     nsh                             // nothing runs here but speculation: stop it
    isb
"#,
        task_word = const PERCPU_TASK_WORD_OFFSET,
        spsr_keep = const super::USER_SPSR_KEEP,
        frame_size = const core::mem::size_of::<TrapFrame>(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const IL: u64 = 1 << 25;

    #[test]
    fn a_svc_is_a_system_call() {
        assert_eq!(classify((0x15 << 26) | IL, 0), UserException::Syscall);
    }

    #[test]
    fn data_aborts_say_why_and_which_access() {
        // Level-3 translation fault on a write to 0x1000.
        let e = classify((0x24 << 26) | IL | (1 << 6) | 0x07, 0x1000);
        assert_eq!(
            e,
            UserException::DataAbort {
                far: 0x1000,
                access: Access::Write,
                translation: true,
                permission: false,
                access_flag: false,
                alignment: false,
            }
        );
        // Level-2 permission fault on a read of a kernel address.
        let UserException::DataAbort {
            access,
            permission,
            translation,
            ..
        } = classify((0x24 << 26) | IL | 0x0e, 0xffff_ff80_0000_0000)
        else {
            panic!("not a data abort");
        };
        assert_eq!(
            (access, permission, translation),
            (Access::Read, true, false)
        );
        let UserException::DataAbort {
            access_flag,
            alignment,
            ..
        } = classify((0x24 << 26) | 0x0b, 0)
        else {
            panic!("not a data abort");
        };
        assert!(access_flag && !alignment);
        assert!(matches!(
            classify((0x24 << 26) | 0x21, 0),
            UserException::DataAbort {
                alignment: true,
                ..
            }
        ));
    }

    #[test]
    fn the_other_classes_are_named() {
        assert_eq!(classify(IL, 0), UserException::Undefined);
        assert_eq!(classify(0x22 << 26, 0), UserException::PcAlignment);
        assert_eq!(classify(0x26 << 26, 0), UserException::SpAlignment);
        assert_eq!(classify(0x18 << 26, 0), UserException::SystemRegister);
        assert_eq!(classify(0x3c << 26, 0), UserException::Breakpoint);
        assert!(matches!(
            classify((0x20 << 26) | 0x05, 0x40),
            UserException::InstructionAbort {
                far: 0x40,
                translation: true,
                permission: false
            }
        ));
        // A trapped WFI is not one of ours: kept whole.
        assert_eq!(classify(0x01 << 26, 0), UserException::Other(0x01 << 26));
        assert_eq!(
            alloc::format!("{}", classify((0x24 << 26) | 0x07, 0x10)),
            "data abort: read of 0x10 (nothing mapped)"
        );
    }

    #[test]
    fn no_spsr_leads_back_to_el1_or_masks_interrupts() {
        // EL1h with DAIF masked, as a forged frame might ask: EL0t, unmasked, flags kept.
        assert_eq!(sanitize_user_spsr(0x6000_03c5), 0x6000_0000);
        // AArch32 (M[4]) and illegal state (IL, bit 20) are gone as well.
        assert_eq!(sanitize_user_spsr((1 << 4) | (1 << 20) | 0x1f), 0);
        for m in 0..16u64 {
            assert_eq!(sanitize_user_spsr(m) & 0xf, 0, "M = {m:#x}");
        }
    }
}
