//! The context switch: saving one kernel thread's registers and loading another's (chapter 15,
//! "Processes and the context switch").
//!
//! A thread gives up the CPU by calling `switch`, an ordinary function call. The AAPCS64 calling
//! convention already lets the callee trash x0-x18, x30's old value and the upper halves of the
//! vector registers, so the compiler has saved whatever of those it still needs. What is left,
//! and so all a thread's `Context` holds, is what a callee must preserve: x19-x28, the frame
//! pointer x29, the link register x30 (where `switch` will return to), the stack pointer, and the
//! low 64 bits of v8-v15 (d8-d15), which Rust code uses for `f64` values that live across calls.
//!
//! `switch` stores those into `from`, loads them from `to` and returns, on `to`'s stack, to the
//! instruction after `to`'s own earlier call of `switch`. A thread that never ran has no such
//! call: `Context::new_thread` prepares a context whose "return" lands in
//! `quartet_task_trampoline`, which calls the thread's entry function with its argument and
//! hands the entry's return value to an exit function that never comes back.
//!
//! Interrupt state (DAIF) is not part of the context: the caller masks IRQs around the switch
//! and each thread restores its own saved flags afterwards (src/task/sched/switch.rs).

use core::arch::{asm, global_asm};

/// The callee-saved registers of a thread that is not running. Layout shared with the assembly.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// x19-x28.
    pub x: [u64; 10],
    /// x29, the frame pointer.
    pub fp: u64,
    /// x30, the link register: where `switch` returns to.
    pub lr: u64,
    pub sp: u64,
    /// d8-d15 (the low halves of v8-v15), as raw bits.
    pub d: [u64; 8],
}
const _: () = assert!(core::mem::size_of::<Context>() == 168);
const _: () = assert!(core::mem::offset_of!(Context, fp) == 80);
const _: () = assert!(core::mem::offset_of!(Context, sp) == 96);
const _: () = assert!(core::mem::offset_of!(Context, d) == 104);

/// A thread's first code: `entry(arg)`, then `exit(entry's return value)`.
pub type ThreadEntry = extern "C" fn(usize) -> usize;
/// Where a thread goes when its entry returns. Must not return.
pub type ThreadExit = extern "C" fn(usize) -> !;

impl Context {
    /// The empty context: what a running thread's `Context` holds before its first switch
    /// away fills it in.
    pub const fn empty() -> Self {
        Context {
            x: [0; 10],
            fp: 0,
            lr: 0,
            sp: 0,
            d: [0; 8],
        }
    }

    /// A context that, switched to, starts a thread on the stack ending at `stack_top`: it runs
    /// `entry(arg)` and then `exit(result)`.
    ///
    /// `stack_top` is rounded down to 16 bytes, as AAPCS64 requires of SP at a call.
    pub fn new_thread(stack_top: usize, entry: ThreadEntry, arg: usize, exit: ThreadExit) -> Self {
        let mut c = Context::empty();
        c.x[0] = entry as usize as u64; // x19
        c.x[1] = arg as u64; // x20
        c.x[2] = exit as usize as u64; // x21
        c.lr = trampoline_address() as u64;
        c.sp = (stack_top & !15) as u64;
        c
    }
}

unsafe extern "C" {
    fn quartet_context_switch(from: *mut Context, to: *const Context);
    fn quartet_task_trampoline();
}

/// The address a new thread's first `switch` "returns" to.
pub fn trampoline_address() -> usize {
    quartet_task_trampoline as *const () as usize
}

/// `switch` as a function pointer with the probe's signature (for `call_with_callee_saved`).
pub fn switch_function() -> unsafe extern "C" fn(usize, usize) {
    let f: unsafe extern "C" fn(*mut Context, *const Context) = quartet_context_switch;
    // SAFETY: only the parameter types change, from pointers to usize; under the C calling
    // convention both travel in x0 and x1 alike, and calling it stays unsafe.
    unsafe {
        core::mem::transmute::<
            unsafe extern "C" fn(*mut Context, *const Context),
            unsafe extern "C" fn(usize, usize),
        >(f)
    }
}

/// Save the calling thread's callee-saved registers into `*from` and continue the thread whose
/// registers `*to` holds. Returns when some later `switch` names `from` as its `to`.
///
/// # Safety
/// - `from` is valid for writes and `to` for reads of a `Context`, and both stay valid (the
///   threads are kept alive) until the switch has happened; they may not be the same.
/// - `*to` was filled by an earlier `switch` of a thread that is not running anywhere now, or by
///   `Context::new_thread` with a stack that is mapped, unused by anything else, and large
///   enough for the thread.
/// - IRQs are masked on this CPU: an interrupt between the stores and the loads would run on a
///   half-switched CPU (the per-CPU stack bounds already name the next thread's stack).
/// - No spin lock, IRQ-disable nesting or preempt count is carried across: those are per CPU,
///   and the thread that runs next knows nothing of them.
pub unsafe fn switch(from: *mut Context, to: *const Context) {
    // SAFETY: forwarded to the caller; the assembly follows the C calling convention.
    unsafe { quartet_context_switch(from, to) }
}

global_asm!(
    r#"
.section .text.quartet_context_switch, "ax"
.balign 16
.global quartet_context_switch
.type quartet_context_switch, %function
// x0 = from, x1 = to (struct Context above).
quartet_context_switch:
    stp     x19, x20, [x0, #0]
    stp     x21, x22, [x0, #16]
    stp     x23, x24, [x0, #32]
    stp     x25, x26, [x0, #48]
    stp     x27, x28, [x0, #64]
    stp     x29, x30, [x0, #80]
    mov     x9, sp
    str     x9, [x0, #96]
    stp     d8, d9, [x0, #104]
    stp     d10, d11, [x0, #120]
    stp     d12, d13, [x0, #136]
    stp     d14, d15, [x0, #152]

    ldp     x19, x20, [x1, #0]
    ldp     x21, x22, [x1, #16]
    ldp     x23, x24, [x1, #32]
    ldp     x25, x26, [x1, #48]
    ldp     x27, x28, [x1, #64]
    ldp     x29, x30, [x1, #80]
    ldr     x9, [x1, #96]
    mov     sp, x9
    ldp     d8, d9, [x1, #104]
    ldp     d10, d11, [x1, #120]
    ldp     d12, d13, [x1, #136]
    ldp     d14, d15, [x1, #152]
    ret
.size quartet_context_switch, . - quartet_context_switch

.section .text.quartet_task_trampoline, "ax"
.balign 16
.global quartet_task_trampoline
.type quartet_task_trampoline, %function
// A new thread's first instruction: x19 = entry, x20 = argument, x21 = exit (Context::new_thread).
quartet_task_trampoline:
    mov     x29, #0                 // the outermost frame: backtraces stop here
    mov     x0, x20
    blr     x19                     // x0 = entry(arg)
    blr     x21                     // exit(x0): never returns
    brk     #0x5a                   // ... and if it did, stop here loudly
.size quartet_task_trampoline, . - quartet_task_trampoline
"#
);

/// What `call_with_callee_saved` found in the callee-saved registers after the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CalleeSaved {
    /// x20-x28.
    pub x: [u64; 9],
    /// d8-d15, as raw bits.
    pub d: [u64; 8],
}

impl CalleeSaved {
    /// The values `call_with_callee_saved(seed, ..)` puts in before the call.
    pub fn expected(seed: u64) -> Self {
        let x: [u64; 9] = core::array::from_fn(|i| seed.wrapping_add(i as u64));
        CalleeSaved {
            x,
            d: core::array::from_fn(|i| !x[i]),
        }
    }
}

/// A test probe for the context switch: load x20-x28 and d8-d15 with values derived from
/// `seed` (see `CalleeSaved::expected`), call `f(a0, a1)`, and return what those registers
/// hold afterwards. `f` may switch threads any number of times; a correct switch hands the
/// registers back unchanged, a broken one leaves another thread's values in them. (Through
/// `yield_now`, the scheduler's own prologue saves x19-x28 and hides a broken switch of them;
/// with `f` = `quartet_context_switch` itself, nothing stands in between.)
///
/// # Safety
/// Calling `f(a0, a1)` must be safe.
pub unsafe fn call_with_callee_saved(
    seed: u64,
    f: unsafe extern "C" fn(usize, usize),
    a0: usize,
    a1: usize,
) -> CalleeSaved {
    let (x20, x21, x22, x23, x24, x25, x26, x27, x28): (
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
    );
    let (d8, d9, d10, d11, d12, d13, d14, d15): (f64, f64, f64, f64, f64, f64, f64, f64);
    // SAFETY: every register the sequence writes is declared: x20-x28 and d8-d15 as outputs (so
    // the compiler saves and restores them for its own caller), x0, x1, x15-x17, x30 and the
    // rest of the C ABI's caller-saved set through clobber_abi. Calling `f(a0, a1)` is safe by
    // the caller's contract, and SP is 16-byte aligned at the `blr`, as Rust keeps it at any
    // asm block.
    unsafe {
        asm!(
            "mov x20, x17",
            "add x21, x17, #1",
            "add x22, x17, #2",
            "add x23, x17, #3",
            "add x24, x17, #4",
            "add x25, x17, #5",
            "add x26, x17, #6",
            "add x27, x17, #7",
            "add x28, x17, #8",
            "mvn x15, x20", "fmov d8, x15",
            "mvn x15, x21", "fmov d9, x15",
            "mvn x15, x22", "fmov d10, x15",
            "mvn x15, x23", "fmov d11, x15",
            "mvn x15, x24", "fmov d12, x15",
            "mvn x15, x25", "fmov d13, x15",
            "mvn x15, x26", "fmov d14, x15",
            "mvn x15, x27", "fmov d15, x15",
            "blr x16",
            in("x17") seed,
            in("x16") f,
            in("x0") a0,
            in("x1") a1,
            out("x20") x20, out("x21") x21, out("x22") x22, out("x23") x23, out("x24") x24,
            out("x25") x25, out("x26") x26, out("x27") x27, out("x28") x28,
            out("d8") d8, out("d9") d9, out("d10") d10, out("d11") d11,
            out("d12") d12, out("d13") d13, out("d14") d14, out("d15") d15,
            clobber_abi("C"),
        );
    }
    CalleeSaved {
        x: [x20, x21, x22, x23, x24, x25, x26, x27, x28],
        d: [d8, d9, d10, d11, d12, d13, d14, d15].map(f64::to_bits),
    }
}
