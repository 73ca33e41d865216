//! A user process: an address space, a table of open files, pending signals and times, run by
//! one kernel thread that enters user mode and comes back on every system call, fault and
//! interrupt (chapter 19, "User mode and system calls").
//!
//! The design is the source texts' SMP model: one copy of the kernel, and any CPU runs it. A process's thread is an ordinary task of the scheduler (src/task/sched): it is
//! queued, preempted, migrated and woken like a kernel thread. What makes it a process is that
//! its task's user-context word points at a `Process`, so the scheduler's address-space hook
//! loads its translation table at each switch, and that it spends its life in `run_user`,
//! whose only way out is `exit`.
//!
//! Locks, in the order they nest (the next chapter's big-lock switch replaces them in one
//! place, src/proc/locks.rs is where to look):
//! - `PROCESS_TREE` (src/proc/mod.rs): parents, children, zombies, the per-user limit.
//! - `PROCESSES`: pid -> `Process`, for `kill`, `ps` and the reaper.
//! - `Process::mm`: the address space; a sleeping lock, never held while copying user memory
//!   (a copy may fault, and the fault takes it).
//! - the file table's and the file system's own locks (src/fs).

use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::cpumask::AtomicCpuMask;

use super::signal::Pending;
use crate::fs::FdTable;
use crate::mm::addrspace::{self, AddressSpace, FaultError};
use crate::mm::uaccess::Access;
use crate::sync::SpinLock;
use crate::task::{Mutex, Pid, WaitQueue};

/// The one user every process belongs to: quartet has no logins, but the per-user process
/// limit needs a user to count against.
pub const DEFAULT_USER: u32 = 1000;

/// Time a process spent, in counter ticks, sampled at the timer tick: each tick is charged
/// whole to what it interrupted (src/proc/run.rs `account_tick`), so short stretches average
/// out rather than being timed one by one.
#[derive(Debug, Default)]
pub struct Times {
    /// Running user code.
    pub user: AtomicU64,
    /// Running the kernel on the process's behalf (system calls, faults).
    pub system: AtomicU64,
}

/// A user process. See the module doc.
pub struct Process {
    pub pid: Pid,
    pub user: u32,
    name: SpinLock<String>,
    /// None once the process has exited: its pages go back at exit, not at reaping.
    pub mm: Mutex<Option<AddressSpace>>,
    pub files: FdTable,
    pub signals: Pending,
    /// The parent sleeps here in `wait4` until a child exits.
    pub child_exited: WaitQueue,
    pub times: Times,
    /// Page faults this process took (demand-zero fills and copy-on-write copies).
    pub faults: AtomicU64,
    /// Where the process's thread runs user code (a `CpuMask`): what `fork` gives the child.
    /// The thread's own mask may differ for a while (the leader strategy moves it to CPU 0).
    pub user_affinity: AtomicCpuMask,
    /// The CPU the thread last entered the kernel from (what `getcpu` answers).
    pub user_cpu: AtomicU32,
}

impl Process {
    pub fn new(pid: Pid, user: u32, name: &str, mm: AddressSpace, files: FdTable) -> Self {
        Process {
            pid,
            user,
            name: SpinLock::named("process name", String::from(name)),
            mm: Mutex::new(Some(mm)),
            files,
            signals: Pending::new(),
            child_exited: WaitQueue::new(),
            times: Times::default(),
            user_affinity: AtomicCpuMask::new(crate::cpumask::CpuMask::ALL),
            user_cpu: AtomicU32::new(0),
            faults: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> String {
        self.name.lock().clone()
    }

    pub fn set_name(&self, name: &str) {
        *self.name.lock() = String::from(name);
    }

    /// Fill or copy the page behind a fault at `far`, if the address space allows `access`;
    /// counts the faults it resolved.
    pub fn handle_fault(&self, far: usize, access: Access) -> Result<(), FaultError> {
        let access = match access {
            Access::Read => addrspace::Access::Read,
            Access::Write => addrspace::Access::Write,
            Access::Exec => addrspace::Access::Exec,
        };
        let _mm = super::locking::subsystem(super::locking::Subsystem::Mm);
        let mut mm = self.mm.lock();
        let Some(mm) = mm.as_mut() else {
            return Err(FaultError::NoRegion { addr: far });
        };
        mm.handle_fault(far, access)?;
        self.faults.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Run `f` on the address space under its lock; ESRCH once the process has exited.
    pub fn with_mm<R>(&self, f: impl FnOnce(&mut AddressSpace) -> R) -> crate::errno::SysResult<R> {
        let _mm = super::locking::subsystem(super::locking::Subsystem::Mm);
        let mut mm = self.mm.lock();
        let mm = mm.as_mut().ok_or(crate::errno::Errno::ESRCH)?;
        Ok(f(mm))
    }

    /// Pages this process maps (for `ps` and `mem`).
    pub fn pages_in_use(&self) -> usize {
        self.mm.lock().as_ref().map_or(0, |mm| mm.pages_in_use())
    }

    /// Load this process's address space on this CPU (TTBR0 and its ASID). Called with IRQs
    /// masked by the scheduler's switch hook, where the sleeping `mm` lock cannot be taken.
    pub fn switch_in(&self) {
        // SAFETY: only the process's own thread replaces or drops the address space (exec,
        // exit), and that thread is not running while a CPU switches to it, or is the caller
        // itself with IRQs masked; everyone else only reads. `activate` touches only the
        // root (fixed for the space's life) and the ASID word (atomic).
        let mm = unsafe { &*self.mm.data_ptr() };
        match mm {
            Some(mm) => mm.activate(),
            None => addrspace::deactivate_user(),
        }
    }

    /// Charge one tick's worth of counter ticks to user or system time: the tick found this
    /// process's thread running user code (`from_user`) or the kernel on its behalf.
    pub fn charge_tick(&self, from_user: bool, ticks: u64) {
        let bucket = if from_user {
            &self.times.user
        } else {
            &self.times.system
        };
        bucket.fetch_add(ticks, Ordering::Relaxed);
    }
}

/// The process behind a task's user-context word (see `set_user_context`).
///
/// # Safety
/// `word` is a value `attach` stored and the task it came from is alive: the task's word
/// owns a count on the process until `detach`.
pub unsafe fn from_word<'a>(word: usize) -> &'a Process {
    // SAFETY: forwarded to the caller: `word` came from `Arc::into_raw` in `attach`.
    unsafe { &*(word as *const Process) }
}

/// The word to attach to the process's task: the task keeps a count on the process.
pub fn attach(process: &Arc<Process>) -> usize {
    Arc::into_raw(process.clone()) as usize
}

/// Give back the count `attach` took.
///
/// # Safety
/// `word` came from `attach` and is given back once.
pub unsafe fn detach(word: usize) {
    // SAFETY: forwarded to the caller.
    drop(unsafe { Arc::from_raw(word as *const Process) });
}
