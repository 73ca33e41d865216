//! Starting, running and ending user processes (chapter 19, "User mode and system calls").
//!
//! `spawn` loads a program into a new address space and starts a kernel thread for it; the
//! thread enters user mode in `enter_user` and from then on comes back into the kernel only
//! through `on_user_exception` (system calls, faults, undefined instructions) or an interrupt.
//! Whatever brought it in, it leaves through `return_path`, which delivers a pending fatal
//! signal instead of returning. `exit_current` tears the process down on its own CPU: the
//! files, the address space (every page and the ASID), then the family tree decides who
//! reaps it.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::locking::{self, Subsystem};
use super::process::{self, DEFAULT_USER, Process};
use super::signal;
use super::tree::{ExitStatus, KERNEL_PARENT, WaitFor};
use super::{PROCESS_TREE, PROCESSES, REAPER};
use crate::arch::aarch64::exception::TrapFrame;
use crate::arch::aarch64::irqflags;
use crate::arch::aarch64::user::{self as arch_user, UserException};
use crate::errno::{Errno, SysResult};
use crate::fs::FdTable;
use crate::mm::addrspace::{self, AddressSpace, FaultError, Prot};
use crate::mm::uaccess;
use crate::mm::uaccess::Access;
use crate::sync::IrqSafeSpinLock;
use crate::task::{self, CpuMask, Pid, Policy};

/// Where every process's stack ends (one page below the top of the user half, so the top
/// guard stays unmapped), and how far it may grow.
pub const USER_STACK_TOP: usize = (1 << 39) - 0x1000;
pub const USER_STACK_MAX: usize = 8 << 20;
/// Arguments and their strings together may take this much of the new stack.
pub const MAX_ARG_BYTES: usize = 16 * 1024;
pub const MAX_ARGS: usize = 64;

/// What a new process's thread does first.
enum Start {
    /// A fresh program: enter at `entry` with `args` on a new stack.
    Program { entry: usize, args: Vec<String> },
    /// A fork's child: the parent's registers, with x0 = 0.
    Forked(alloc::boxed::Box<TrapFrame>),
}

/// Find program `name`: a path in the file system if it contains '/', else a program
/// embedded in the kernel image.
pub fn load_program_bytes(name: &str) -> SysResult<Vec<u8>> {
    if name.contains('/') {
        return crate::fs::read_all(name);
    }
    super::embedded::programs()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| bytes.to_vec())
        .ok_or(Errno::ENOENT)
}

/// Why a program could not start, in words for the shell.
#[derive(Debug)]
pub enum SpawnFailure {
    NotFound(Errno),
    BadElf(super::elf::ElfError),
    Refused(Errno),
}

impl core::fmt::Display for SpawnFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnFailure::NotFound(e) => write!(f, "cannot read the program: {e}"),
            SpawnFailure::BadElf(e) => write!(f, "not a program quartet can run: {e}"),
            SpawnFailure::Refused(e) => write!(f, "cannot start it: {e}"),
        }
    }
}

/// Build a new address space holding the ELF program `bytes`; returns it with the entry point.
pub fn load_image(bytes: &[u8]) -> Result<(AddressSpace, usize), SpawnFailure> {
    let image = super::elf::parse(bytes).map_err(SpawnFailure::BadElf)?;
    let mut mm = AddressSpace::new().map_err(SpawnFailure::Refused)?;
    for seg in &image.segments {
        let mut prot = Prot::NONE;
        for (wanted, bit) in [
            (seg.read, Prot::READ),
            (seg.write, Prot::WRITE),
            (seg.exec, Prot::EXEC),
        ] {
            if wanted {
                prot = prot | bit;
            }
        }
        let data = &bytes[seg.file_offset..seg.file_offset + seg.file_len];
        mm.map_copy(seg.vaddr, data, seg.mem_len, prot)
            .map_err(SpawnFailure::Refused)?;
    }
    mm.set_stack(USER_STACK_TOP, USER_STACK_MAX)
        .map_err(SpawnFailure::Refused)?;
    Ok((mm, image.entry))
}

/// Start program `name` (see `load_program_bytes`) with `args` (args[0] is the name), as a
/// child of the kernel. The caller reaps it with `wait_kernel_child` or gives it away with
/// `disown`.
pub fn spawn(name: &str, args: Vec<String>) -> Result<Pid, SpawnFailure> {
    spawn_on(name, args, CpuMask::ALL)
}

/// `spawn`, with the process (and every process it forks) allowed only on the CPUs of
/// `affinity`: the benchmarks pin a process to one CPU.
pub fn spawn_on(name: &str, args: Vec<String>, affinity: CpuMask) -> Result<Pid, SpawnFailure> {
    spawn_with_files(name, args, affinity, super::console::standard_files())
}

/// `spawn_on` with the descriptor table the program starts with (the tests give it a file that
/// captures its output).
pub fn spawn_with_files(
    name: &str,
    args: Vec<String>,
    affinity: CpuMask,
    files: FdTable,
) -> Result<Pid, SpawnFailure> {
    let bytes = load_program_bytes(name).map_err(SpawnFailure::NotFound)?;
    let (mm, entry) = load_image(&bytes)?;
    drop(bytes);
    let short = name.rsplit('/').next().unwrap_or(name);
    start_process(
        short,
        KERNEL_PARENT,
        mm,
        files,
        Start::Program { entry, args },
        affinity,
    )
    .map_err(SpawnFailure::Refused)
}

/// Processes whose thread has been created but has not yet picked up what to run, by pid.
///
/// The thread's entry takes no captures on purpose: a closure that owns anything is boxed on
/// the heap by `task::spawn`, and a process's thread never returns from its entry (it leaves
/// through `exit_current`), so whatever the entry owned would never be freed.
static STARTING: IrqSafeSpinLock<BTreeMap<Pid, (Arc<Process>, Start)>> =
    IrqSafeSpinLock::named("starting processes", BTreeMap::new());
static STARTED: crate::task::WaitQueue = crate::task::WaitQueue::named("process start");

/// Create the process and its thread; the thread waits until the process is registered.
fn start_process(
    name: &str,
    parent: Pid,
    mm: AddressSpace,
    files: FdTable,
    start: Start,
    affinity: CpuMask,
) -> SysResult<Pid> {
    let _proc = locking::subsystem(Subsystem::Proc);
    PROCESS_TREE.lock().check_limit(DEFAULT_USER)?;
    let pid = task::spawn_with(
        name,
        task::DEFAULT_STACK_SIZE,
        affinity,
        Policy::RoundRobin,
        process_thread,
    )
    .map_err(|_| Errno::ENOMEM)?;
    let process = Arc::new(Process::new(pid, DEFAULT_USER, name, mm, files));
    process.user_affinity.store(affinity, Ordering::Relaxed);
    let added = PROCESS_TREE.lock().add(pid, parent, DEFAULT_USER);
    if let Err(e) = added {
        // Another fork took the last slot between the check and here: the thread ends at once.
        process.signals.raise(signal::SIGKILL);
        STARTING.lock().insert(pid, (process, start));
        STARTED.wake_all();
        let _ = task::wait(pid);
        return Err(e);
    }
    PROCESSES.lock().insert(pid, process.clone());
    STARTING.lock().insert(pid, (process, start));
    STARTED.wake_all();
    Ok(pid)
}

/// A process's thread: wait for what `start_process` left for it, then enter user mode.
fn process_thread() -> i32 {
    let pid = task::current_pid();
    let mut mine = None;
    STARTED.wait_until(|| {
        mine = STARTING.lock().remove(&pid);
        mine.is_some()
    });
    let (process, start) = mine.expect("wait_until returned without our start");
    enter_user(process, start)
}

/// The first code of a process's thread: attach the process, load its address space, lay out
/// the stack (a new program) and enter user mode. Never returns: the thread leaves through
/// `exit_current`.
fn enter_user(process: Arc<Process>, start: Start) -> i32 {
    // The way to user mode is kernel work for the process like any other: under `bkl` it runs
    // under the big lock, which `return_path` lets go just before the first `eret`.
    locking::enter_from_user();
    let me = task::current();
    me.set_user_context(process::attach(&process));
    // The switch hook loads the address space from now on; this first time by hand.
    activate_current();
    if let Some(sig) = process.signals.fatal() {
        // Killed before it ever ran: everything owned here goes first (the stack is never
        // unwound).
        drop((me, process, start));
        exit_current(ExitStatus::Signaled(sig));
    }
    let mut frame: TrapFrame = match start {
        Start::Forked(frame) => {
            let mut f = *frame;
            f.x[0] = 0;
            f
        }
        Start::Program { entry, args } => match push_args(&args) {
            Ok(sp) => TrapFrame::new_user(entry, sp),
            Err(e) => {
                log::warn!(target: "proc", "pid {}: cannot lay out its arguments: {e}", process.pid);
                drop((me, process, args));
                exit_current(ExitStatus::Signaled(signal::SIGSEGV));
            }
        },
    };
    // From the task itself, not from `percpu::this_cpu()`: this thread may be preempted and
    // moved to another CPU between finding its CPU and reading that CPU's area, which would
    // then name the stack of the task running there now. With the big lock, whose waiters
    // often sleep and migrate, that happened: a user process entered user mode with SP_EL1 on
    // another task's stack, and its next fault ran there ("an IRQ found SP ... below the stack
    // bottom").
    let stack_top = me.stack_top();
    drop(me);
    drop(process);
    return_path(&mut frame);
    // SAFETY: `frame` holds user-mode state only (a new frame, or a copy of one taken from
    // EL0, whose SPSR the way back cleans); this thread's address space is loaded, `stack_top`
    // is the top of this thread's own kernel stack, and nothing on it is needed again (the
    // thread leaves only through `exit_current`).
    unsafe { arch_user::start_user(&frame, stack_top) }
}

/// Lay out argc, argv and an empty environment at the top of the (current) user stack, as
/// Linux does, and return the new SP.
fn push_args(args: &[String]) -> SysResult<usize> {
    if args.len() > MAX_ARGS {
        return Err(Errno::E2BIG);
    }
    let strings: usize = args.iter().map(|a| a.len() + 1).sum();
    if strings > MAX_ARG_BYTES {
        return Err(Errno::E2BIG);
    }
    let mut at = USER_STACK_TOP;
    let mut pointers = Vec::with_capacity(args.len());
    for a in args {
        at -= a.len() + 1;
        uaccess::copy_to_user(at, a.as_bytes())?;
        uaccess::copy_to_user(at + a.len(), &[0])?;
        pointers.push(at as u64);
    }
    // argc, argv[..], NULL, envp NULL, auxv { AT_PAGESZ, 4096 }, { AT_NULL, 0 }.
    const AT_PAGESZ: u64 = 6;
    let mut words: Vec<u64> = Vec::with_capacity(pointers.len() + 6);
    words.push(args.len() as u64);
    words.extend_from_slice(&pointers);
    words.extend_from_slice(&[0, 0, AT_PAGESZ, 4096, 0, 0]);
    at = (at - words.len() * 8) & !15;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    uaccess::copy_to_user(at, &bytes)?;
    Ok(at)
}

/// The current task's process, if it is a process's thread.
pub fn current_process() -> Option<&'static Process> {
    let word = task::current_user_context();
    // SAFETY: a non-zero word was stored by `attach` for this very task, which is running, and
    // is given back only in `exit_current` after the last use. 'static stands for "while this
    // thread runs", which is all any caller (running on it) needs.
    // Bit 0 marks a raw table a test installed (see `switch_hook`), not a process.
    (word != 0 && word & 1 == 0).then(|| unsafe { process::from_word(word) })
}

/// The scheduler's address-space hook: load the next task's user address space, or the empty
/// table for a kernel thread.
///
/// A word with bit 0 set is not a process but a raw translation table a kernel thread installed
/// by hand (the live user-mode tests of src/ktest/user.rs): it is loaded as it is, and the
/// first switch after it flushes this CPU's TLB, since such a table may map global pages.
fn switch_hook(word: usize) {
    let cpu = crate::percpu::this_cpu().id;
    if HAND_MADE_TABLE_USED[cpu].swap(false, Ordering::Relaxed) {
        crate::arch::aarch64::tlb::flush_all_local();
    }
    if word & 1 != 0 {
        HAND_MADE_TABLE_USED[cpu].store(true, Ordering::Relaxed);
        // SAFETY: the thread that set the word vouches for the table (see `set_user_context`
        // in src/ktest/user.rs); the replace flushes this CPU's TLB.
        unsafe { crate::arch::aarch64::cpu::replace_ttbr0_local((word & !1) as u64) };
    } else if word == 0 {
        addrspace::deactivate_user();
    } else {
        // SAFETY: as in `current_process`: the task being switched to owns the count.
        let p = unsafe { process::from_word(word) };
        p.switch_in();
    }
}

/// Per CPU: a hand-made table ran here since the last switch (see `switch_hook`).
static HAND_MADE_TABLE_USED: [core::sync::atomic::AtomicBool; crate::config::MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; crate::config::MAX_CPUS];

fn activate_current() {
    let p = current_process().expect("a process's thread");
    let flags = irqflags::local_irq_save();
    p.switch_in();
    irqflags::local_irq_restore(flags);
}

/// Everything that enters the kernel from user mode but an interrupt arrives here, on the
/// process's own kernel stack, with IRQs masked.
fn on_user_exception(frame: &mut TrapFrame, why: UserException) {
    let p = current_process().expect("an exception from EL0 on a thread with no process");
    p.user_cpu
        .store(crate::percpu::this_cpu().id as u32, Ordering::Relaxed);
    irqflags::local_irq_enable();
    match why {
        UserException::Syscall => {
            let result = locking::on_the_leader(|| crate::syscall::dispatch(p, frame));
            frame.x[0] = result as u64;
        }
        UserException::DataAbort { far, access, .. } => {
            locking::on_the_leader(|| user_fault(p, frame, far, access));
        }
        UserException::InstructionAbort { far, .. } => {
            locking::on_the_leader(|| user_fault(p, frame, far, Access::Exec));
        }
        other => {
            let (sig, what) = match other {
                UserException::PcAlignment => (signal::SIGBUS, "misaligned PC"),
                UserException::SpAlignment => (signal::SIGBUS, "misaligned stack pointer"),
                UserException::Undefined => (signal::SIGILL, "undefined instruction"),
                UserException::SystemRegister => {
                    (signal::SIGILL, "system register EL0 may not access")
                }
                UserException::Breakpoint => (signal::SIGTRAP, "breakpoint"),
                _ => (signal::SIGILL, "unexpected exception"),
            };
            report_and_raise(p, frame, sig, what);
        }
    }
}

/// A page fault from user mode: fill or copy the page if the address space allows the access,
/// else the process dies of SIGSEGV with a one-line report.
fn user_fault(p: &Process, frame: &TrapFrame, far: usize, access: Access) {
    match p.handle_fault(far, access) {
        Ok(()) => {}
        // Like Linux's OOM killer: the process that needed the page dies, the kernel goes on.
        Err(e @ FaultError::OutOfMemory { .. }) => {
            report_and_raise(p, frame, signal::SIGKILL, &alloc::format!("{e}"))
        }
        Err(e) => report_and_raise(p, frame, signal::SIGSEGV, &alloc::format!("{e}")),
    }
}

fn report_and_raise(p: &Process, frame: &TrapFrame, sig: u32, what: &str) {
    log::warn!(target: "proc",
        "pid {} ({}): {} at pc {:#x}: killed by {}",
        p.pid, p.name(), what, frame.elr, signal::name(sig));
    p.signals.raise(sig);
}

/// The last kernel code before user mode: a pending fatal signal ends the process here
/// (the frame is never returned to); a thread whose slice is used up yields; then back.
pub fn return_path(_frame: &mut TrapFrame) {
    if let Some(p) = current_process()
        && let Some(sig) = p.signals.fatal()
    {
        // After an interrupt IRQs are still masked; the teardown may sleep.
        irqflags::local_irq_enable();
        exit_current(ExitStatus::Signaled(sig));
    }
    // The big kernel lock goes before a possible switch: taking it back only to drop it at
    // the `eret` would make another CPU wait for nothing.
    locking::leave_to_user();
    // A system call that used up the slice yields here, as an interrupt's way out would.
    task::preempt_on_irq_exit();
}

/// The tick's time accounting: a tick that found a process's thread running charges it to the
/// process, as user time if it interrupted user mode, else as system time. A thread asleep in
/// the kernel (in `wait4`, say) is not running and is charged nothing.
fn account_tick(from_user: bool, ticks: u64) {
    if let Some(p) = current_process() {
        p.charge_tick(from_user, ticks);
    }
}

/// End the current process with `status`: close its files, free its address space (pages,
/// tables, ASID), tell the family tree, wake its parent, and end the thread.
pub fn exit_current(status: ExitStatus) -> ! {
    let me = task::current();
    let word = me.user_context();
    assert!(word != 0, "exit_current on a thread with no process");
    // SAFETY: the word is this running thread's own (see `current_process`).
    let p = unsafe { process::from_word(word) };
    let pid = p.pid;
    p.files.close_all();
    {
        // Off this CPU's TTBR0 first: the tables are about to be freed.
        let flags = irqflags::local_irq_save();
        me.set_user_context(0);
        addrspace::deactivate_user();
        irqflags::local_irq_restore(flags);
    }
    // Every page, table and the ASID go back now, not when the parent reaps the process.
    {
        let _mm = locking::subsystem(Subsystem::Mm);
        drop(p.mm.lock().take());
    }
    {
        let _proc = locking::subsystem(Subsystem::Proc);
        // Everything owned here is dropped before the thread ends: its stack is never unwound.
        let effects = PROCESS_TREE.lock().exit(pid, status);
        if let Some(parent) = effects.wake_parent {
            let parent = PROCESSES.lock().get(&parent).cloned();
            if let Some(pp) = parent {
                pp.child_exited.wake_all();
            }
        }
        for (reaped, _) in &effects.reap {
            REAPER.push(*reaped);
        }
    }
    let code = match status {
        ExitStatus::Exited(c) => c,
        ExitStatus::Signaled(s) => 128 + s as i32,
    };
    drop(me);
    // SAFETY: `word` was this task's attach count; the task no longer refers to it.
    unsafe { process::detach(word) };
    task::exit(code)
}

/// Free everything left of process `pid` once its thread is gone: the task itself (reaped from
/// the scheduler's process list) and the registry's reference.
pub fn release(pid: Pid) {
    let _ = task::wait(pid);
    let _proc = locking::subsystem(Subsystem::Proc);
    PROCESSES.lock().remove(&pid);
}

/// Wait for `pid`, a process the kernel started, to end; reap it and return how it ended.
/// `interrupt` is polled about every tick: when it says so, the process is sent SIGINT (the
/// shell's Ctrl-C).
pub fn wait_kernel_child(pid: Pid, mut interrupt: impl FnMut() -> bool) -> SysResult<ExitStatus> {
    loop {
        // The tree's lock is released before `release`, which may sleep.
        let reaped = {
            let _proc = locking::subsystem(Subsystem::Proc);
            PROCESS_TREE.lock().reap_kernel_child(pid)?
        };
        if let Some(status) = reaped {
            release(pid);
            return Ok(status);
        }
        if interrupt() {
            let _ = kill(pid, signal::SIGINT);
        }
        task::sleep_ticks(1);
    }
}

/// Nobody will wait for `pid` (a background `run`): the reaper frees it when it ends.
pub fn disown(pid: Pid) {
    let _proc = locking::subsystem(Subsystem::Proc);
    if PROCESS_TREE.lock().disown(pid).is_some() {
        REAPER.push(pid);
    }
}

/// Send `sig` to process `pid`. Signal 0 only checks that the process exists.
pub fn kill(pid: Pid, sig: u32) -> SysResult<()> {
    if sig > signal::MAX_SIGNAL {
        return Err(Errno::EINVAL);
    }
    let _proc = locking::subsystem(Subsystem::Proc);
    let p = PROCESSES.lock().get(&pid).cloned().ok_or(Errno::ESRCH)?;
    if PROCESS_TREE.lock().is_zombie(pid) {
        return Ok(()); // Linux accepts signals to zombies and ignores them
    }
    if sig == 0 || !signal::is_fatal(sig) {
        return Ok(());
    }
    p.signals.raise(sig);
    if let Some(t) = task::lookup(pid) {
        task::wake(&t);
    }
    p.child_exited.wake_all();
    Ok(())
}

/// `wait4` for the current process.
pub fn wait_child(p: &Process, which: WaitFor) -> SysResult<(Pid, ExitStatus)> {
    let mut result = Err(Errno::EINTR);
    p.child_exited.wait_until(|| {
        if p.signals.fatal().is_some() {
            result = Err(Errno::EINTR);
            return true;
        }
        let _proc = locking::subsystem(Subsystem::Proc);
        match PROCESS_TREE.lock().reap_child(p.pid, which) {
            Ok(Some(found)) => {
                result = Ok(found);
                true
            }
            Ok(None) => false,
            Err(e) => {
                result = Err(e);
                true
            }
        }
    });
    if let Ok((child, _)) = result {
        release(child);
    }
    result
}

/// `fork`: a copy of the current process whose thread returns 0 from the same call.
pub fn fork(p: &Process, frame: &TrapFrame) -> SysResult<Pid> {
    // Under the subsystem strategy: processes, then memory, then files (the lock order).
    let _proc = locking::subsystem(Subsystem::Proc);
    PROCESS_TREE.lock().check_limit(p.user)?;
    let mm = {
        let _mm = locking::subsystem(Subsystem::Mm);
        p.mm.lock().as_mut().ok_or(Errno::ESRCH)?.fork()?
    };
    let files = p.files.dup_for_fork();
    let mut child_frame = alloc::boxed::Box::new(frame.clone());
    child_frame.x[0] = 0;
    // The parent's own mask: under the leader strategy its thread is on CPU 0 just now.
    let affinity = p.user_affinity.load(Ordering::Relaxed);
    start_process(
        &p.name(),
        p.pid,
        mm,
        files,
        Start::Forked(child_frame),
        affinity,
    )
}

/// `execve`: replace the current program. On success the frame now starts the new program.
pub fn exec(p: &Process, frame: &mut TrapFrame, path: &str, args: Vec<String>) -> SysResult<()> {
    let bytes = load_program_bytes(path)?;
    let (mm, entry) = match load_image(&bytes) {
        Ok(loaded) => loaded,
        Err(SpawnFailure::BadElf(e)) => {
            log::warn!(target: "proc", "pid {}: execve {path}: {e}", p.pid);
            return Err(Errno::ENOEXEC);
        }
        Err(SpawnFailure::NotFound(e) | SpawnFailure::Refused(e)) => return Err(e),
    };
    drop(bytes);
    let old = {
        let _mm = locking::subsystem(Subsystem::Mm);
        p.mm.lock().replace(mm)
    };
    activate_current();
    drop(old);
    let sp = push_args(&args)?;
    *frame = TrapFrame::new_user(entry, sp);
    p.set_name(path.rsplit('/').next().unwrap_or(path));
    Ok(())
}

/// Install the process layer's hooks: the user-exception handler, the address-space switch,
/// and the fault resolver for user copies.
pub fn init() {
    arch_user::set_user_exception_handler(on_user_exception);
    arch_user::set_return_to_user_hook(return_path);
    arch_user::set_entry_from_user_hook(locking::enter_from_user);
    task::set_address_space_hook(switch_hook);
    if !crate::irq::tick::set_account_hook(account_tick) {
        log::warn!(target: "proc", "a time-accounting hook was already set: process times stay 0");
    }
    crate::arch::aarch64::uaccess::set_user_fault_resolver(resolve_copy_fault);
    REAPER.start();
}

/// A fault inside a user copy (a system call reading or writing user memory): fill the page
/// if the address space allows the access, so the copy goes on.
fn resolve_copy_fault(far: usize, access: Access) -> bool {
    let Some(p) = current_process() else {
        return false;
    };
    p.handle_fault(far, access).is_ok()
}
