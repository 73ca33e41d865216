//! In-kernel tests that really run code at EL0 (chapter 19, "User mode and system calls").
//!
//! Each test builds a small user address space by hand: a translation table for TTBR0 with one
//! code page at 64 GiB (EL0 read + execute), one data page after it (EL0 read-write, the stack
//! grows down from its end) and nothing in the page after that (a copy running off the data page
//! faults there). 64 GiB is above the RAM of both boards, so nothing of the kernel's is there
//! while the kernel still lives in TTBR0 (on the Pi 4, RAM starts at 0). While the kernel itself lives in TTBR0, the new table starts as a copy of the
//! kernel's, so the kernel keeps running on it. A pinned kernel thread loads the table on its CPU,
//! builds a `TrapFrame` and enters user mode with `start_user`; the test's handler
//! (`set_user_exception_handler`) records what came back and ends the thread with the status
//! the program gave, or -1 when the program is killed.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::KTest;
use crate::arch::aarch64::cpu;
use crate::arch::aarch64::exception::TrapFrame;
use crate::arch::aarch64::uaccess::{set_user_fault_resolver, user_fault_resolver};
use crate::arch::aarch64::user::{
    UserException, set_user_exception_handler, start_user, user_exception_handler,
};
use crate::arch::irqflags;
use crate::ensure;
use crate::errno::Errno;
use crate::mm::uaccess::{
    Access, copy_from_user, copy_from_user_partial, copy_string_from_user, copy_to_user,
};
use crate::mm::{phys_to_virt, virt_to_phys};
use crate::percpu;
use crate::platform::Platform;
use crate::sync::SpinLock;
use crate::task::{self, CpuMask, DEFAULT_STACK_SIZE, Policy};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "user_copies_check_el0_permissions_and_stop_at_the_first_bad_byte",
        run: copies_against_a_real_user_mapping,
    },
    KTest {
        name: "user_copy_fault_is_resolved_then_retried",
        run: resolver_makes_the_page_present,
    },
    KTest {
        name: "user_system_calls_enter_and_leave_el0",
        run: system_calls_round_trip,
    },
    KTest {
        name: "user_undefined_instruction_is_reported_not_fatal",
        run: undefined_instruction,
    },
    KTest {
        name: "user_load_from_the_kernel_is_a_data_abort",
        run: load_from_the_kernel,
    },
    KTest {
        name: "user_misaligned_sp_faults_where_the_cpu_checks_sp",
        run: misaligned_sp,
    },
    KTest {
        name: "user_cpu_bound_program_is_preempted_by_the_tick",
        run: cpu_bound_program_is_preempted,
    },
];

const PAGE: usize = 4096;
const CODE: usize = 0x10_0000_0000;
const DATA: usize = CODE + PAGE;
const STACK_TOP: usize = DATA + PAGE;
/// The page after the data page: unmapped, unless the resolver test maps it on demand.
const SPARE: usize = STACK_TOP;

// Stage-1 descriptor bits for the hand-made table (the memory manager's address spaces make
// their own; these serve only this test).
const VALID_TABLE: u64 = 0b11;
const PAGE_DESC: u64 = 0b11;
const ATTR_NORMAL: u64 = 1 << 2; // MAIR index 1: normal write-back
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const AP_EL0: u64 = 1 << 6;
const AP_READ_ONLY: u64 = 1 << 7;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const ADDRESS: u64 = 0x0000_ffff_ffff_f000;
const USER_CODE: u64 = PAGE_DESC | ATTR_NORMAL | SH_INNER | AF | NG | AP_EL0 | AP_READ_ONLY | PXN;
const USER_DATA: u64 = PAGE_DESC | ATTR_NORMAL | SH_INNER | AF | NG | AP_EL0 | PXN | UXN;

/// A 4 KiB-aligned zeroed heap page, freed on drop.
struct Page(*mut u8);

impl Page {
    fn new() -> Result<Page, String> {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(Self::layout()) };
        if p.is_null() {
            return Err(String::from("no heap page for the user test"));
        }
        Ok(Page(p))
    }

    fn layout() -> Layout {
        Layout::from_size_align(PAGE, PAGE).expect("a page layout")
    }

    fn va(&self) -> usize {
        self.0 as usize
    }

    fn pa(&self) -> u64 {
        virt_to_phys(self.va()) as u64
    }

    fn entries(&self) -> *mut u64 {
        self.0.cast()
    }

    /// A copy of the bytes in `range`.
    fn get(&self, range: core::ops::Range<usize>) -> Vec<u8> {
        assert!(range.end <= PAGE);
        // SAFETY: inside our page (checked); user code may write it meanwhile, so volatile.
        range
            .map(|i| unsafe { self.0.add(i).read_volatile() })
            .collect()
    }

    /// Write `bytes` at `offset`.
    fn set(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= PAGE);
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: inside our page (checked).
            unsafe { self.0.add(offset + i).write_volatile(b) };
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout.
        unsafe { dealloc(self.0, Self::layout()) };
    }
}

/// The hand-made user address space: tables and pages, alive while the test runs.
struct UserSpace {
    l1: Page,
    _l2: Page,
    l3: Page,
    code: Page,
    data: Page,
    spare: Page,
}

impl UserSpace {
    fn new(program: &[u32]) -> Result<UserSpace, String> {
        const TCR_EPD0: u64 = 1 << 7;
        ensure!(
            cpu::tcr() & TCR_EPD0 == 0,
            "TCR_EL1.EPD0 is set: this CPU does no TTBR0 walks, so no user page can be reached"
        );
        let (l1, l2, l3) = (Page::new()?, Page::new()?, Page::new()?);
        let (code, data, spare) = (Page::new()?, Page::new()?, Page::new()?);
        // Start from what TTBR0 maps now (all of the kernel, while it lives in the low half).
        let current = cpu::ttbr0() & ADDRESS;
        // SAFETY: TTBR0 roots a live level-1 table (512 entries) reached through the linear map;
        // it is only read, and the new tables are our own pages.
        unsafe {
            if current != 0 {
                let old = phys_to_virt(current as usize) as *const u64;
                core::ptr::copy_nonoverlapping(old, l1.entries(), 512);
            }
            let gib = (CODE >> 30) & 511;
            let l1_entry = *l1.entries().add(gib);
            match l1_entry & 0b11 {
                0b11 => {
                    let old = phys_to_virt((l1_entry & ADDRESS) as usize) as *const u64;
                    core::ptr::copy_nonoverlapping(old, l2.entries(), 512);
                }
                0b01 => return Err(format!("the GiB at {CODE:#x} is one kernel block")),
                _ => {}
            }
            let slot = (CODE >> 21) & 511;
            ensure!(
                *l2.entries().add(slot) & 1 == 0,
                "{CODE:#x} is already mapped in TTBR0"
            );
            *l1.entries().add(gib) = l2.pa() | VALID_TABLE;
            *l2.entries().add(slot) = l3.pa() | VALID_TABLE;
            *l3.entries().add((CODE >> 12) & 511) = code.pa() | USER_CODE;
            *l3.entries().add((DATA >> 12) & 511) = data.pa() | USER_DATA;
        }
        for (i, insn) in program.iter().enumerate() {
            code.set(i * 4, &insn.to_le_bytes());
        }
        cpu::sync_instruction_cache(code.va(), code.va() + PAGE);
        crate::arch::aarch64::barrier::wmb();
        Ok(UserSpace {
            l1,
            _l2: l2,
            l3,
            code,
            data,
            spare,
        })
    }

    /// Load this space into TTBR0 on this CPU; returns what to put back.
    ///
    /// # Safety
    /// The thread stays on this CPU until it puts the old value back.
    unsafe fn activate(&self) -> u64 {
        // SAFETY: the table maps everything the old one did, plus the user pages; the caller
        // keeps the thread on this CPU.
        let old = unsafe { cpu::replace_ttbr0_local(self.l1.pa()) };
        // Tell the scheduler's address-space hook to load this table again after a preemption
        // (bit 0 marks a raw table, not a process).
        task::current().set_user_context(self.l1.pa() as usize | 1);
        old
    }
}

// ---- Copies against the real mapping, from a kernel thread pinned to one CPU. ----

/// `f` is a function item (zero-sized), so a thread that never returns from it leaks nothing.
fn on_one_cpu<F: FnOnce() -> i32 + Send + 'static>(name: &str, f: F) -> Result<i32, String> {
    let cpu = percpu::this_cpu().id;
    let pid = task::spawn_with(
        name,
        DEFAULT_STACK_SIZE,
        CpuMask::only(cpu),
        Policy::RoundRobin,
        f,
    )
    .map_err(|e| format!("spawn {name}: {e}"))?;
    task::wait(pid).map_err(|e| format!("wait {name}: {e}"))
}

/// The space the pinned thread of the current test uses, and what went wrong in it.
static SPACE: SpinLock<Option<UserSpace>> = SpinLock::named("ktest user: space", None);
static FAILURE: SpinLock<Option<String>> = SpinLock::named("ktest user: failure", None);

// SAFETY: the space owns its pages through raw pointers; one thread at a time uses it (the test
// hands it to the pinned thread it spawns, under `SPACE`'s lock, and waits for that thread).
unsafe impl Send for UserSpace {}

fn fail(why: String) -> i32 {
    *FAILURE.lock() = Some(why);
    1
}

/// Run `body` with the test space active in TTBR0 on this CPU.
fn with_space_active(body: fn(&UserSpace) -> Result<(), String>) -> i32 {
    let guard = SPACE.lock();
    let Some(space) = guard.as_ref() else {
        return fail(String::from("no user space prepared"));
    };
    // SAFETY: this thread is pinned to this CPU (spawned with a one-CPU mask).
    let old = unsafe { space.activate() };
    let result = body(space);
    task::current().set_user_context(0);
    // SAFETY: puts back the table this CPU ran on before.
    unsafe { cpu::replace_ttbr0_local(old) };
    drop(guard);
    match result {
        Ok(()) => 0,
        Err(why) => fail(why),
    }
}

fn run_with_space<F: FnOnce() -> i32 + Send + 'static>(
    name: &str,
    program: &[u32],
    thread: F,
) -> Result<(UserSpace, i32), String> {
    *SPACE.lock() = Some(UserSpace::new(program)?);
    *FAILURE.lock() = None;
    let status = on_one_cpu(name, thread);
    let space = SPACE.lock().take().expect("the space outlives its thread");
    if let Some(why) = FAILURE.lock().take() {
        return Err(why);
    }
    Ok((space, status?))
}

fn copies_against_a_real_user_mapping(_: &Platform<'static>) -> Result<(), String> {
    fn body(space: &UserSpace) -> Result<(), String> {
        let pattern: Vec<u8> = (0..PAGE).map(|i| i as u8).collect();
        space.data.set(0, &pattern);
        let mut buf = [0u8; 16];
        ensure!(
            copy_from_user(&mut buf, DATA + 32) == Ok(()),
            "copy_from_user of the mapped data page failed"
        );
        ensure!(
            buf == core::array::from_fn(|i| (32 + i) as u8),
            "copy_from_user read {buf:02x?}"
        );
        // 11 readable bytes, then the unmapped page: exactly 11 come back, word loop or not.
        let from = STACK_TOP - 11;
        let mut buf = [0xeeu8; 24];
        let got = copy_from_user_partial(&mut buf, from);
        ensure!(
            got == Ok(11),
            "a copy running off the data page at {from:#x} returned {got:?}, want Ok(11)"
        );
        ensure!(
            buf[..11]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (PAGE - 11 + i) as u8),
            "the bytes before the fault are wrong: {:02x?}",
            &buf[..11]
        );
        ensure!(
            copy_from_user(&mut buf, from) == Err(Errno::EFAULT),
            "copy_from_user running off the page was not EFAULT"
        );
        // The code page is read-only for EL0 (EL1 could write it: STTR is what refuses).
        let before = space.code.get(0..8);
        ensure!(
            copy_to_user(CODE, &[0xff; 8]) == Err(Errno::EFAULT),
            "copy_to_user into the read-only code page was not EFAULT"
        );
        ensure!(
            space.code.get(0..8) == before,
            "copy_to_user changed the code page"
        );
        // A write running off the data page writes what fits, then faults.
        ensure!(
            copy_to_user(STACK_TOP - 4, &[0xab; 12]) == Err(Errno::EFAULT),
            "copy_to_user running off the data page was not EFAULT"
        );
        let tail = space.data.get(PAGE - 4..PAGE);
        ensure!(
            tail == [0xab; 4],
            "the bytes before the fault were not written: {tail:02x?}"
        );
        // A string ending at the page's last byte is fine; one running off it is EFAULT.
        space.data.set(PAGE - 3, b"ok\0");
        let s = copy_string_from_user(STACK_TOP - 3, 64);
        ensure!(s.as_deref() == Ok("ok"), "string at the page end: {s:?}");
        space.data.set(PAGE - 1, b"!");
        let s = copy_string_from_user(STACK_TOP - 3, 64);
        ensure!(
            s == Err(Errno::EFAULT),
            "string running off the page: {s:?}"
        );
        Ok(())
    }
    run_with_space("uaccess-real", &[], || with_space_active(body))?;
    Ok(())
}

static RESOLVER_CALLS: AtomicUsize = AtomicUsize::new(0);
static RESOLVER_FAR: AtomicUsize = AtomicUsize::new(0);
static RESOLVER_WRITE: AtomicBool = AtomicBool::new(false);
/// The level-3 entry the resolver fills, and what it puts there.
static SPARE_ENTRY: AtomicUsize = AtomicUsize::new(0);
static SPARE_DESCRIPTOR: AtomicU64 = AtomicU64::new(0);

fn test_resolver(far: usize, access: Access) -> bool {
    RESOLVER_CALLS.fetch_add(1, Ordering::Relaxed);
    RESOLVER_FAR.store(far, Ordering::Relaxed);
    RESOLVER_WRITE.store(access == Access::Write, Ordering::Relaxed);
    if !(SPARE..SPARE + PAGE).contains(&far) {
        return false;
    }
    let entry = SPARE_ENTRY.load(Ordering::Relaxed) as *mut u64;
    // SAFETY: the test's own level-3 table entry for SPARE, invalid until now.
    unsafe { entry.write_volatile(SPARE_DESCRIPTOR.load(Ordering::Relaxed)) };
    crate::arch::aarch64::barrier::wmb();
    true
}

fn resolver_makes_the_page_present(_: &Platform<'static>) -> Result<(), String> {
    fn body(space: &UserSpace) -> Result<(), String> {
        // SAFETY: computing the address of our own table's entry; nothing is accessed here.
        let entry = unsafe { space.l3.entries().add((SPARE >> 12) & 511) };
        SPARE_ENTRY.store(entry as usize, Ordering::Relaxed);
        SPARE_DESCRIPTOR.store(space.spare.pa() | USER_DATA, Ordering::Relaxed);
        RESOLVER_CALLS.store(0, Ordering::Relaxed);
        let previous = user_fault_resolver();
        set_user_fault_resolver(test_resolver);
        // 16 bytes from 8 before the end of the data page: the second half needs SPARE.
        let result = copy_to_user(STACK_TOP - 8, &[0x5a; 16]);
        // A read elsewhere the resolver refuses still ends in EFAULT.
        let mut b = [0u8; 8];
        let refused = copy_from_user(&mut b, SPARE + PAGE);
        match previous {
            Some(r) => set_user_fault_resolver(r),
            None => set_user_fault_resolver(|_, _| false),
        }
        ensure!(
            result == Ok(()),
            "copy_to_user needing the resolver: {result:?}"
        );
        ensure!(
            space.spare.get(0..8) == [0x5a; 8] && space.data.get(PAGE - 8..PAGE) == [0x5a; 8],
            "the copy did not land on both pages"
        );
        ensure!(
            refused == Err(Errno::EFAULT),
            "a fault the resolver refused was {refused:?}"
        );
        let calls = RESOLVER_CALLS.load(Ordering::Relaxed);
        // One fault at SPARE (resolved, then retried), and the word then byte fault the resolver refused.
        ensure!(calls == 3, "the resolver was called {calls} times, want 3");
        Ok(())
    }
    run_with_space("uaccess-resolve", &[], || {
        let status = with_space_active(body);
        // The first call's details were overwritten by the refused read; check the first one
        // through the page it mapped instead (above) and the last one here.
        if RESOLVER_FAR.load(Ordering::Relaxed) != SPARE + PAGE
            || RESOLVER_WRITE.load(Ordering::Relaxed)
        {
            return fail(format!(
                "the refused read reached the resolver as far {:#x}, write {}",
                RESOLVER_FAR.load(Ordering::Relaxed),
                RESOLVER_WRITE.load(Ordering::Relaxed)
            ));
        }
        status
    })?;
    Ok(())
}

// ---- Running user code. ----

/// What the test handler saw, one entry per exception.
#[derive(Clone, Copy, Debug)]
struct Seen {
    exception: UserException,
    elr: u64,
    x0: u64,
    x1: u64,
    x8: u64,
    sp: u64,
    tpidr_el0: u64,
    /// TPIDR_EL0 as the kernel reads it inside the handler: must be the task word again.
    task_word: usize,
}

static SEEN: SpinLock<Vec<Seen>> = SpinLock::named("ktest user: seen", Vec::new());
/// The frame the pinned thread starts user mode with, and the table to run it on.
static LAUNCH: SpinLock<Option<TrapFrame>> = SpinLock::named("ktest user: launch", None);
/// TTBR0 to put back when the program ends, and the thread's task word before user mode.
static OLD_TTBR0: AtomicU64 = AtomicU64::new(0);
static TASK_WORD_BEFORE: AtomicUsize = AtomicUsize::new(0);
/// Set once the program runs (the preemption test waits for it).
static STARTED: AtomicBool = AtomicBool::new(false);

/// getpid and exit, Linux's numbers.
const SYS_GETPID: u64 = 172;
const SYS_EXIT: u64 = 93;
const FAKE_PID: u64 = 42;
/// A program killed for a fault exits with this.
const KILLED: i32 = -1;

fn test_handler(frame: &mut TrapFrame, exception: UserException) {
    // As a system call would: run with IRQs on (the tick may preempt us here).
    irqflags::local_irq_enable();
    let seen = Seen {
        exception,
        elr: frame.elr,
        x0: frame.x[0],
        x1: frame.x[1],
        x8: frame.x[8],
        sp: frame.sp,
        tpidr_el0: frame.tpidr_el0,
        task_word: crate::arch::task_word(),
    };
    let count = {
        let mut all = SEEN.lock();
        all.push(seen);
        all.len()
    };
    match exception {
        UserException::Syscall if frame.x[8] == SYS_GETPID && count < 16 => {
            frame.x[0] = FAKE_PID;
        }
        UserException::Syscall if frame.x[8] == SYS_EXIT => end_program(frame.x[0] as i32),
        _ => end_program(KILLED),
    }
}

/// Leave the program for good: back to the kernel's TTBR0, then end the thread.
fn end_program(status: i32) -> ! {
    let old = OLD_TTBR0.load(Ordering::Relaxed);
    task::current().set_user_context(0);
    // SAFETY: the thread is pinned; this is the table its CPU ran on before the program.
    unsafe { cpu::replace_ttbr0_local(old) };
    task::exit(status)
}

fn enter_program() -> i32 {
    let Some(frame) = LAUNCH.lock().take() else {
        return fail(String::from("no frame to launch"));
    };
    let old = {
        let guard = SPACE.lock();
        let Some(space) = guard.as_ref() else {
            return fail(String::from("no user space prepared"));
        };
        // SAFETY: this thread is pinned to its CPU; `end_program` puts the old table back.
        unsafe { space.activate() }
    };
    OLD_TTBR0.store(old, Ordering::Relaxed);
    TASK_WORD_BEFORE.store(crate::arch::task_word(), Ordering::Relaxed);
    STARTED.store(true, Ordering::Release);
    let top = percpu::this_cpu().stack_top.load(Ordering::Relaxed);
    // SAFETY: `top` is this thread's stack top (the per-CPU area describes the running task);
    // nothing on the stack is needed again (the thread ends in `end_program`), and TTBR0 maps
    // the program. `frame` is a copy on this stack; start_user copies it to the top first.
    unsafe { start_user(&frame, top) }
}

struct Outcome {
    status: i32,
    seen: Vec<Seen>,
    space: UserSpace,
}

/// Run `program` at EL0 with the given x registers, on a thread pinned to this CPU.
fn run_program(name: &str, program: &[u32], regs: &[(usize, u64)]) -> Result<Outcome, String> {
    let mut frame = TrapFrame::new_user(CODE, STACK_TOP);
    for &(r, v) in regs {
        frame.x[r] = v;
    }
    // A forged SPSR asking for EL1h with interrupts masked: the way out must not obey it.
    frame.spsr = 0x3c5;
    *LAUNCH.lock() = Some(frame);
    SEEN.lock().clear();
    STARTED.store(false, Ordering::Relaxed);
    let previous = user_exception_handler();
    set_user_exception_handler(test_handler);
    let result = run_with_space(name, program, enter_program);
    if let Some(h) = previous {
        set_user_exception_handler(h);
    }
    let (space, status) = result?;
    let seen = core::mem::take(&mut *SEEN.lock());
    Ok(Outcome {
        status,
        seen,
        space,
    })
}

// Instruction encodings (A64), little-endian words.
const fn movz(rd: u32, imm16: u32) -> u32 {
    0xd280_0000 | (imm16 << 5) | rd
}
const SVC_0: u32 = 0xd400_0001;
const BRK_0: u32 = 0xd420_0000;
const UDF_0: u32 = 0x0000_0000;
const MSR_TPIDR_EL0_X9: u32 = 0xd51b_d049;
const ADD_X0_X0_1: u32 = 0x9100_0400;
const STR_X0_SP_PRE_M16: u32 = 0xf81f_0fe0; // str x0, [sp, #-16]!
const LDR_X1_SP_POST_16: u32 = 0xf841_07e1; // ldr x1, [sp], #16
const LDR_X0_X1: u32 = 0xf940_0020; // ldr x0, [x1]
const LDR_X2_X1: u32 = 0xf940_0022; // ldr x2, [x1]
const CBZ_X2_BACK_1: u32 = 0xb4ff_ffe2; // cbz x2, <the instruction before>
const MOV_X0_X2: u32 = 0xaa02_03e0;
const MOV_SP_X1: u32 = 0x9100_003f; // add sp, x1, #0
const LDR_X0_SP: u32 = 0xf940_03e0; // ldr x0, [sp]

fn system_calls_round_trip(_: &Platform<'static>) -> Result<(), String> {
    let program = [
        movz(9, 0x1234),
        MSR_TPIDR_EL0_X9, // the user's own thread pointer
        movz(0, 7),
        movz(8, SYS_GETPID as u32),
        SVC_0, // at CODE + 16
        ADD_X0_X0_1,
        STR_X0_SP_PRE_M16,
        LDR_X1_SP_POST_16,
        movz(8, SYS_EXIT as u32),
        SVC_0, // at CODE + 36
        BRK_0,
    ];
    let out = run_program("user-syscalls", &program, &[])?;
    ensure!(
        out.seen.len() == 2,
        "expected getpid and exit, saw {:?}",
        out.seen
    );
    let (getpid, exit) = (out.seen[0], out.seen[1]);
    ensure!(
        getpid.exception == UserException::Syscall
            && getpid.x8 == SYS_GETPID
            && getpid.x0 == 7
            && getpid.elr == (CODE + 20) as u64,
        "the getpid trap: {getpid:?}"
    );
    ensure!(
        getpid.sp == STACK_TOP as u64,
        "the frame's sp is {:#x}, want the user's SP {STACK_TOP:#x}",
        getpid.sp
    );
    ensure!(
        getpid.tpidr_el0 == 0x1234,
        "the frame's tpidr_el0 is {:#x}, want the user's 0x1234",
        getpid.tpidr_el0
    );
    let word = TASK_WORD_BEFORE.load(Ordering::Relaxed);
    ensure!(
        getpid.task_word == word && exit.task_word == word,
        "in the handler TPIDR_EL0 read {:#x} and {:#x}, want the task word {word:#x}",
        getpid.task_word,
        exit.task_word
    );
    ensure!(
        exit.exception == UserException::Syscall
            && exit.x8 == SYS_EXIT
            && exit.x0 == FAKE_PID + 1
            && exit.x1 == FAKE_PID + 1
            && exit.elr == (CODE + 40) as u64,
        "the exit trap (x0 should be getpid's result + 1, stored and reloaded through the stack): {exit:?}"
    );
    ensure!(
        exit.tpidr_el0 == 0x1234 && exit.sp == STACK_TOP as u64,
        "the user's TPIDR_EL0 or SP changed across the getpid trap: {exit:?}"
    );
    ensure!(
        out.status == (FAKE_PID + 1) as i32,
        "exit status {}, want {}",
        out.status,
        FAKE_PID + 1
    );
    drop(out.space);
    Ok(())
}

fn undefined_instruction(_: &Platform<'static>) -> Result<(), String> {
    let out = run_program("user-udf", &[movz(0, 1), UDF_0, BRK_0], &[])?;
    ensure!(
        out.seen.len() == 1
            && out.seen[0].exception == UserException::Undefined
            && out.seen[0].elr == (CODE + 4) as u64,
        "expected one Undefined at {:#x}, saw {:?}",
        CODE + 4,
        out.seen
    );
    ensure!(out.status == KILLED, "status {}", out.status);
    Ok(())
}

static KERNEL_WORD: AtomicU64 = AtomicU64::new(0x6b65_726e_656c);

fn load_from_the_kernel(_: &Platform<'static>) -> Result<(), String> {
    let target = KERNEL_WORD.as_ptr() as usize;
    let out = run_program("user-kload", &[LDR_X0_X1, BRK_0], &[(1, target as u64)])?;
    ensure!(out.seen.len() == 1, "saw {:?}", out.seen);
    let seen = out.seen[0];
    match seen.exception {
        UserException::DataAbort {
            far,
            access: Access::Read,
            translation,
            permission,
            ..
        } if far == target && (translation || permission) => {}
        other => {
            return Err(format!(
                "a user load of kernel address {target:#x} came back as {other:?}"
            ));
        }
    }
    ensure!(
        seen.elr == CODE as u64 && seen.x0 == 0,
        "the load must not complete: {seen:?}"
    );
    ensure!(out.status == KILLED, "status {}", out.status);
    Ok(())
}

fn misaligned_sp(_: &Platform<'static>) -> Result<(), String> {
    const SCTLR_SA0: u64 = 1 << 4;
    ensure!(
        cpu::sctlr() & SCTLR_SA0 != 0,
        "SCTLR_EL1.SA0 is clear: a user's misaligned SP would never fault"
    );
    let odd = (STACK_TOP - 8) as u64;
    let out = run_program("user-sp", &[MOV_SP_X1, LDR_X0_SP, BRK_0], &[(1, odd)])?;
    ensure!(out.seen.len() == 1, "saw {:?}", out.seen);
    let seen = out.seen[0];
    match seen.exception {
        UserException::SpAlignment if seen.elr == (CODE + 4) as u64 && seen.sp == odd => Ok(()),
        // QEMU's TCG does not implement the SP alignment check (SA/SA0): the load completes
        // and the program reaches its BRK. Real cores fault at the load.
        UserException::Breakpoint if seen.elr == (CODE + 8) as u64 => {
            log::warn!(
                "this CPU does not check SP alignment (an emulator?): SA0 is set, the load at {:#x} went through",
                CODE + 4
            );
            Ok(())
        }
        _ => Err(format!(
            "expected SpAlignment at {:#x} with SP {odd:#x}, saw {seen:?}",
            CODE + 4
        )),
    }
}

/// Ticks the preemption test gives the other thread to run on the busy CPU.
const PREEMPTION_TICKS: u64 = 300;

fn cpu_bound_program_is_preempted(_: &Platform<'static>) -> Result<(), String> {
    // The program spins until the word at DATA is non-zero, then exits with it. Only a kernel
    // thread on the same CPU sets it, so it ends only if the tick preempts it.
    let program = [
        LDR_X2_X1,
        CBZ_X2_BACK_1,
        MOV_X0_X2,
        movz(8, SYS_EXIT as u32),
        SVC_0,
    ];
    let cpu_here = percpu::this_cpu().id;
    let busy = crate::smp::online_cpus()
        .find(|&c| c != cpu_here)
        .unwrap_or(cpu_here);
    // The flag lives in the data page; the kernel reaches it through the page's kernel address,
    // published before the program starts.
    static FLAG: AtomicUsize = AtomicUsize::new(0);
    static FLAGGER_RAN: AtomicBool = AtomicBool::new(false);
    FLAGGER_RAN.store(false, Ordering::Relaxed);
    let flag_writer = || {
        let at = FLAG.load(Ordering::Acquire) as *mut u64;
        // SAFETY: the data page's kernel address, alive until the test ends (it waits for us).
        unsafe { at.write_volatile(0x600d) };
        FLAGGER_RAN.store(true, Ordering::Release);
        0
    };
    // The program runs on `busy`: run_program pins to the current CPU, so run it from there.
    let (status, seen) = {
        let mut frame = TrapFrame::new_user(CODE, STACK_TOP);
        frame.x[1] = DATA as u64;
        *LAUNCH.lock() = Some(frame);
        SEEN.lock().clear();
        STARTED.store(false, Ordering::Relaxed);
        let space = UserSpace::new(&program)?;
        FLAG.store(space.data.va(), Ordering::Release);
        *SPACE.lock() = Some(space);
        *FAILURE.lock() = None;
        let previous = user_exception_handler();
        set_user_exception_handler(test_handler);
        let mask = CpuMask::only(busy);
        let user = task::spawn_with(
            "user-spin",
            DEFAULT_STACK_SIZE,
            mask,
            Policy::RoundRobin,
            enter_program,
        )
        .map_err(|e| format!("spawn user-spin: {e}"))?;
        let mut waited = 0;
        while !STARTED.load(Ordering::Acquire) && waited < PREEMPTION_TICKS {
            task::sleep_ticks(1);
            waited += 1;
        }
        let flagger = task::spawn_with(
            "user-flagger",
            DEFAULT_STACK_SIZE,
            mask,
            Policy::RoundRobin,
            flag_writer,
        )
        .map_err(|e| format!("spawn user-flagger: {e}"))?;
        let mut waited = 0;
        while !FLAGGER_RAN.load(Ordering::Acquire) && waited < PREEMPTION_TICKS {
            task::sleep_ticks(1);
            waited += 1;
        }
        let preempted = FLAGGER_RAN.load(Ordering::Acquire);
        if !preempted {
            // Free the program ourselves so the test can end, then report.
            // SAFETY: as in flag_writer.
            unsafe { (FLAG.load(Ordering::Acquire) as *mut u64).write_volatile(0xbad) };
        }
        let status = task::wait(user).map_err(|e| format!("wait user-spin: {e}"));
        let _ = task::wait(flagger);
        if let Some(h) = previous {
            set_user_exception_handler(h);
        }
        drop(SPACE.lock().take());
        if let Some(why) = FAILURE.lock().take() {
            return Err(why);
        }
        ensure!(
            preempted,
            "the kernel thread on cpu{busy} did not run within {PREEMPTION_TICKS} ticks of the user program's spin"
        );
        (status?, core::mem::take(&mut *SEEN.lock()))
    };
    ensure!(
        status == 0x600d,
        "the program exited with {status:#x}, want the flag 0x600d; saw {seen:?}"
    );
    Ok(())
}
