//! The user copy routine and its exception table (chapter 19, "User mode and system calls":
//! "Touching user memory").
//!
//! `copy_from_user`/`copy_to_user` below copy with LDTR/STTR, the unprivileged loads and stores:
//! at EL1 they are checked as if EL0 made them, so a user pointer into memory only the kernel
//! may touch faults although a plain LDR would read it. Each of those instructions has an entry
//! in `__ex_table`: (where the instruction is, where to go if it faults), both as offsets from
//! the entry itself so the table is position-independent. The EL1 synchronous-exception handler
//! (exception.rs) looks a data abort's ELR up here: a listed instruction does not kill the
//! kernel. It first asks the resolver the process layer installed whether the page can be made
//! present (demand zero, copy-on-write); yes means "retry the instruction"; no means "resume at
//! the fixup", which ends the copy and returns the count of bytes not copied.
//!
//! The copy moves 8 bytes at a time while at least 8 are left, then single bytes. A word that
//! straddles the last readable byte faults as a whole, so its fixup falls back to the byte loop
//! for the rest: the count returned is exact, to the byte.

use core::sync::atomic::{AtomicUsize, Ordering};

use super::exception::TrapFrame;
use crate::mm::uaccess::{Access, USER_TOP};

unsafe extern "C" {
    fn quartet_copy_from_user(dst: *mut u8, src: usize, len: usize) -> usize;
    fn quartet_copy_to_user(dst: usize, src: *const u8, len: usize) -> usize;
    static __ex_table_start: u8;
    static __ex_table_end: u8;
}

/// Copy `len` bytes from user address `src` to `dst`, with EL0's permissions; returns the count
/// of bytes not copied (0: all of them). Does not check the range: src/mm/uaccess.rs does.
///
/// # Safety
/// `dst` is valid for `len` bytes of writes.
pub unsafe fn copy_from_user(dst: *mut u8, src: usize, len: usize) -> usize {
    // SAFETY: the routine writes only [dst, dst + len) (the caller's promise) and reads the
    // source with LDTR, whose faults the exception table turns into a short count.
    unsafe { quartet_copy_from_user(dst, src, len) }
}

/// Copy `len` bytes from `src` to user address `dst`, with EL0's permissions; returns the count
/// of bytes not copied.
///
/// # Safety
/// `src` is valid for `len` bytes of reads.
pub unsafe fn copy_to_user(dst: usize, src: *const u8, len: usize) -> usize {
    // SAFETY: as above, the other way round: plain loads from the caller's buffer, STTR stores.
    unsafe { quartet_copy_to_user(dst, src, len) }
}

/// One exception-table entry: offsets from the entry's own fields to the instruction that may
/// fault and to where execution resumes if it does.
#[repr(C)]
struct ExTableEntry {
    insn: i32,
    fixup: i32,
}

/// Every (instruction, fixup) pair of the table, as addresses.
pub fn exception_table() -> impl Iterator<Item = (usize, usize)> {
    // The linker script puts both symbols around the `__ex_table` input sections; only their
    // addresses are taken.
    let (start, end) = (
        &raw const __ex_table_start as usize,
        &raw const __ex_table_end as usize,
    );
    let entry_size = core::mem::size_of::<ExTableEntry>();
    (start..end).step_by(entry_size).map(|at| {
        // SAFETY: `at` lies inside the table, which holds whole 8-byte entries (4-aligned).
        let e = unsafe { &*(at as *const ExTableEntry) };
        (
            at.wrapping_add_signed(e.insn as isize),
            (at + 4).wrapping_add_signed(e.fixup as isize),
        )
    })
}

/// Where to resume if the instruction at `pc` faults, if it is a user access.
pub fn fixup_for(pc: usize) -> Option<usize> {
    exception_table().find_map(|(insn, fixup)| (insn == pc).then_some(fixup))
}

/// The process layer's page-fault hook for faults inside a user copy.
static RESOLVER: AtomicUsize = AtomicUsize::new(0);

/// Install the hook a fault inside a user copy consults before giving up: it gets the faulting
/// address and the access, makes the page present if the address space allows the access
/// there (demand zero, copy-on-write) and returns true to have the access retried; false ends
/// the copy with EFAULT. It runs with IRQs as the copy's caller had them.
pub fn set_user_fault_resolver(resolver: fn(far: usize, access: Access) -> bool) {
    RESOLVER.store(resolver as usize, Ordering::Release);
}

/// The resolver installed now, if any (a test that installs its own puts this one back).
pub fn user_fault_resolver() -> Option<fn(usize, Access) -> bool> {
    let hook = RESOLVER.load(Ordering::Acquire);
    // SAFETY: the only non-zero value ever stored is such a function (above).
    (hook != 0).then(|| unsafe { core::mem::transmute::<usize, fn(usize, Access) -> bool>(hook) })
}

/// Faults resolved (retried) and fixed up (copy ended) since boot, for tests and `mem`.
pub static RESOLVED: AtomicUsize = AtomicUsize::new(0);
pub static FIXED_UP: AtomicUsize = AtomicUsize::new(0);

/// The EL1 fault handler's question: is this data abort one of a user copy's? If so, resolve or
/// fix it up and return true (the exception returns to the frame's ELR); if not, false.
/// `may_unmask` says whether the frame lives on the thread's own stack, where the resolver may
/// sleep (not on the emergency stack).
pub(super) fn handle_kernel_fault(frame: &mut TrapFrame, may_unmask: bool) -> bool {
    let Some(fixup) = fixup_for(frame.elr as usize) else {
        return false;
    };
    let far = frame.far as usize;
    let access = if super::esr::abort_was_write(frame.esr) {
        Access::Write
    } else {
        Access::Read
    };
    let hook = RESOLVER.load(Ordering::Acquire);
    if hook != 0 && far < USER_TOP {
        // SAFETY: the only non-zero value ever stored is a `fn(usize, Access) -> bool` (above).
        let resolver: fn(usize, Access) -> bool = unsafe { core::mem::transmute(hook) };
        // The copy ran with IRQs on (a system call): give the resolver the same, so it may take
        // sleeping locks and allocate. The exception entry masked them; put that back after.
        const SPSR_I: u64 = 1 << 7;
        let unmask = may_unmask && frame.spsr & SPSR_I == 0;
        if unmask {
            super::irqflags::local_irq_enable();
        }
        let resolved = resolver(far, access);
        if unmask {
            super::irqflags::local_irq_disable();
        }
        if resolved {
            RESOLVED.fetch_add(1, Ordering::Relaxed);
            return true; // ELR unchanged: the LDTR/STTR runs again
        }
    }
    FIXED_UP.fetch_add(1, Ordering::Relaxed);
    frame.elr = fixup as u64;
    true
}

// x0 = destination, x1 = source, x2 = length; returns in x0 the bytes not copied. Only x0-x3 are
// used (caller-saved). Labels 10/11 are the instructions that may fault; their table entries
// send a faulting word to the byte loop and a faulting byte to the exit with x2 bytes left.
core::arch::global_asm!(
    r#"
.macro ex_table insn, fixup
    .pushsection __ex_table, "a"
    .balign 4
    .long \insn - .
    .long \fixup - .
    .popsection
.endm

.section .text.quartet_uaccess, "ax"
.balign 16
.global quartet_copy_from_user
.type quartet_copy_from_user, %function
quartet_copy_from_user:
1:  cmp     x2, #8
    b.lo    2f
10: ldtr    x3, [x1]
    str     x3, [x0], #8
    add     x1, x1, #8
    sub     x2, x2, #8
    b       1b
2:  cbz     x2, 3f
11: ldtrb   w3, [x1]
    strb    w3, [x0], #1
    add     x1, x1, #1
    sub     x2, x2, #1
    b       2b
3:  mov     x0, x2
    ret
    ex_table 10b, 2b
    ex_table 11b, 3b
.size quartet_copy_from_user, . - quartet_copy_from_user

.global quartet_copy_to_user
.type quartet_copy_to_user, %function
quartet_copy_to_user:
1:  cmp     x2, #8
    b.lo    2f
    ldr     x3, [x1], #8
10: sttr    x3, [x0]
    add     x0, x0, #8
    sub     x2, x2, #8
    b       1b
2:  cbz     x2, 3f
    ldrb    w3, [x1]
11: sttrb   w3, [x0]
    add     x0, x0, #1
    add     x1, x1, #1
    sub     x2, x2, #1
    b       2b
3:  mov     x0, x2
    ret
    // A word store that faults has already advanced x1: step it back for the byte loop.
12: sub     x1, x1, #8
    b       2b
    ex_table 10b, 12b
    ex_table 11b, 3b
.size quartet_copy_to_user, . - quartet_copy_to_user
"#
);
