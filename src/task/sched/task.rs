//! The task: a kernel thread as the scheduler keeps it (chapter 15, "Processes and the context
//! switch").
//!
//! A `Task` is what identifies a thread (PID, name, the CPUs it may run on, its scheduling
//! policy), where it is in its life (`state`, the state machine of src/task/state.rs, plus
//! `on_cpu` and `asleep` for the two moments a state alone cannot describe), its statistics,
//! its own preempt count, a stack of its own from the heap, and the registers it left behind
//! when it last gave up the CPU (`Context`, src/arch/aarch64/context.rs).
//!
//! The fields belong to the scheduler: the files beside this one read and write them under
//! the rule each field's comment states (which lock, which CPU, which moment). Everything
//! outside the scheduler sees only the accessors.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::switch::{task_entry, task_exit};
use crate::arch::aarch64::context::Context;
use crate::arch::counter;
use crate::cpumask::AtomicCpuMask;
use crate::percpu;
use crate::sync::preempt;
use crate::sync::{IrqSafeSpinLock, SpinLock};
use crate::task::queue::Queued;
use crate::task::stack::{CanaryDamaged, Stack};
use crate::task::state::{AtomicTaskState, CpuMask, Pid, TaskState};

/// What a task runs; its return value is the exit status.
pub(super) type Entry = Box<dyn FnOnce() -> i32 + Send>;

/// How the scheduler shares a CPU between tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Time-sliced: preempted after `SLICE_TICKS` ticks when others wait (the default).
    RoundRobin,
    /// Runs until it yields, sleeps or exits, like Linux's SCHED_FIFO: for code whose
    /// interleaving must be exact (tests) or that must not be interrupted by other tasks.
    Fifo,
}

/// A kernel thread.
pub struct Task {
    pub(super) pid: Pid,
    pub(super) name: String,
    pub(super) state: AtomicTaskState,
    /// The CPU the task last ran on, or whose queue holds it. Changed only under that CPU's
    /// run-queue lock (a wake or a pull), so holding the lock of `cpu` pins the task there.
    pub(super) cpu: AtomicU32,
    /// Where it may run. Only the task itself changes it once it runs (`move_current_to`,
    /// `set_current_affinity`); a switch away from a CPU the mask no longer names moves it.
    pub(super) affinity: AtomicCpuMask,
    pub(super) policy: Policy,
    /// Task 0 of a secondary CPU, or the boot CPU's idle task: never queued, run when
    /// nothing else can. Set once, when the CPU's scheduler starts (`init_cpu`).
    pub(super) is_idle: AtomicBool,
    pub(super) exit_status: AtomicI32,
    /// True from the moment the task is picked until the CPU has switched away from it and
    /// finished the switch. Its registers and stack are in use while this is set, so nothing
    /// may reap it or pull it to another CPU.
    pub(super) on_cpu: AtomicBool,
    /// Set by `schedule` (under the run-queue lock) when the task has gone to sleep: off the
    /// CPU and on no queue. A `wake` that finds it Sleeping but not yet asleep only cancels
    /// the sleep.
    pub(super) asleep: AtomicBool,
    /// The task's own preempt count (chapter 14): what the task word points at while it runs.
    pub(super) preempt_count: AtomicU32,
    /// Asked to stop by `kill`; the task's own loops look (`should_stop`).
    pub(super) stop_requested: AtomicBool,
    /// Times the task has been switched to.
    pub(super) switches: AtomicU64,
    /// Times it was preempted, woken, moved to another CPU.
    pub(super) preemptions: AtomicU64,
    pub(super) wakeups: AtomicU64,
    pub(super) migrations: AtomicU64,
    /// Counter ticks spent running, up to its last switch away.
    pub(super) runtime: AtomicU64,
    /// When it was last switched in (a counter value), or 0 while it is not on a CPU.
    pub(super) switched_in_at: AtomicU64,
    /// Timer ticks since it was last switched to (its slice).
    pub(super) slice_ticks: AtomicU32,
    /// The usable stack: what the per-CPU stack bounds say while the task runs.
    pub(super) stack_bottom: usize,
    pub(super) stack_top: usize,
    /// The heap stack; None for a CPU's task 0 (it runs on the CPU's boot stack, which has a
    /// real guard page) and once the task has exited and been switched away from.
    pub(super) stack: SpinLock<Option<Stack>>,
    /// Tasks sleeping in `wait` for this one to exit.
    pub(super) exit_waiters: IrqSafeSpinLock<Vec<Arc<Task>>>,
    /// Saved registers; valid while the task is not running.
    pub(super) context: UnsafeCell<Context>,
    pub(super) entry: SpinLock<Option<Entry>>,
    /// What the layer above the scheduler attached to this task: for a user process's thread,
    /// the address of its process (src/proc). The scheduler only hands the word to the
    /// address-space hook at each switch (`set_address_space_hook`); 0 for kernel threads.
    pub(super) user_context: AtomicUsize,
}

// SAFETY: every field but `context` is an atomic, immutable, or behind a lock. `context` is
// touched only by `schedule` on the CPU switching from or to the task, with IRQs masked, and
// only while the task is not running anywhere else (`on_cpu` and the run queue ensure one CPU
// at a time has it).
unsafe impl Sync for Task {}

impl Queued for Arc<Task> {
    fn affinity(&self) -> CpuMask {
        Task::affinity(self)
    }
}

impl Task {
    /// The top of this task's kernel stack, fixed for its life. Code that needs its own stack
    /// top asks the task, not the per-CPU area: a task can be moved to another CPU between
    /// finding "this CPU" and reading the area, which then describes someone else's stack.
    pub fn stack_top(&self) -> usize {
        self.stack_top
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> TaskState {
        self.state.get()
    }

    pub fn cpu(&self) -> usize {
        self.cpu.load(Ordering::Relaxed) as usize
    }

    pub fn affinity(&self) -> CpuMask {
        self.affinity.load(Ordering::Relaxed)
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn is_idle(&self) -> bool {
        self.is_idle.load(Ordering::Relaxed)
    }

    /// Times the task has been switched to (a new task's first run counts).
    pub fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    pub fn preemptions(&self) -> u64 {
        self.preemptions.load(Ordering::Relaxed)
    }

    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    pub fn migrations(&self) -> u64 {
        self.migrations.load(Ordering::Relaxed)
    }

    /// Counter ticks the task has run, as of its last switch away.
    pub fn runtime_ticks(&self) -> u64 {
        self.runtime.load(Ordering::Relaxed)
    }

    /// Counter ticks the task has run up to now: `runtime_ticks`, plus the time since it was
    /// switched in if it is on a CPU (what `ps` shows: a task that has a CPU to itself is never
    /// switched away, and its `runtime_ticks` would stand still).
    ///
    /// Read without a lock while the task may be switching away on another CPU. `schedule`
    /// clears `switched_in_at` before it adds the finished stint to `runtime` (release), so a
    /// reader that sees the new total also sees the cleared start, and finds it changed: a read
    /// that finds the same start before and after the total has both from one moment.
    pub fn runtime_ticks_now(&self) -> u64 {
        loop {
            let now = counter();
            let since = self.switched_in_at.load(Ordering::Acquire);
            let total = self.runtime.load(Ordering::Acquire);
            if self.switched_in_at.load(Ordering::Acquire) == since {
                let current = if since == 0 {
                    0
                } else {
                    now.saturating_sub(since)
                };
                return total + current;
            }
        }
    }

    /// The status it exited with (meaningful once `state()` is `Exited`).
    pub fn exit_status(&self) -> i32 {
        self.exit_status.load(Ordering::Acquire)
    }

    /// Has `kill` asked this task to stop?
    /// The word the layer above attached (`set_user_context`); 0 for a kernel thread.
    pub fn user_context(&self) -> usize {
        self.user_context.load(Ordering::Acquire)
    }

    /// Attach `word` to this task (a user process's thread does, before it first enters user
    /// mode). The address-space hook receives it at every switch to the task.
    pub fn set_user_context(&self, word: usize) {
        self.user_context.store(word, Ordering::Release);
    }

    pub fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::Acquire)
    }

    /// Check the stack canary: what `schedule` does for both tasks of every switch. Ok for a
    /// task without a heap stack (task 0, or one whose stack is already freed).
    pub fn check_stack(&self) -> Result<(), CanaryDamaged> {
        self.stack.lock().as_ref().map_or(Ok(()), Stack::check)
    }

    /// Overwrite canary word `i` of the task's stack, returning its old value (None without a
    /// heap stack). For tests of the canary check.
    ///
    /// # Safety
    /// The task must not be running, and the caller must restore the word before the task
    /// is switched to again (or `schedule` panics, as designed).
    pub unsafe fn poke_canary(&self, i: usize, value: u64) -> Option<u64> {
        let stack = self.stack.lock();
        // SAFETY: the task is not running (caller's contract), so nothing else uses the word.
        stack.as_ref().map(|s| unsafe { s.poke_canary(i, value) })
    }

    /// The task word while this task runs: its own preempt count, or the CPU's for a CPU's
    /// own flows (task 0 and the idle task never migrate, and a switch happens only with the
    /// count at 0, so they can share the CPU's count safely).
    pub(super) fn task_word(&self, cpu: usize) -> usize {
        if self.affinity() == CpuMask::only(cpu) && (self.pid == 0 || self.is_idle()) {
            preempt::cpu_count_address(cpu)
        } else {
            &self.preempt_count as *const AtomicU32 as usize
        }
    }

    pub(super) fn new(spec: NewTask) -> Task {
        let NewTask {
            pid,
            name,
            cpu,
            affinity,
            policy,
            is_idle,
            stack,
            entry,
        } = spec;
        let area = percpu::cpu(cpu);
        let (bottom, top, ctx) = match &stack {
            Some(st) => (
                st.bottom(),
                st.top(),
                Context::new_thread(st.top(), task_entry, pid as usize, task_exit),
            ),
            None => (
                area.stack_bottom.load(Ordering::Relaxed),
                area.stack_top.load(Ordering::Relaxed),
                Context::empty(),
            ),
        };
        let running = stack.is_none();
        Task {
            pid,
            name,
            state: AtomicTaskState::new(if running {
                TaskState::Running
            } else {
                TaskState::Runnable
            }),
            cpu: AtomicU32::new(cpu as u32),
            affinity: AtomicCpuMask::new(affinity),
            policy,
            is_idle: AtomicBool::new(is_idle),
            exit_status: AtomicI32::new(0),
            on_cpu: AtomicBool::new(running),
            asleep: AtomicBool::new(false),
            preempt_count: AtomicU32::new(0),
            stop_requested: AtomicBool::new(false),
            user_context: AtomicUsize::new(0),
            switches: AtomicU64::new(running as u64),
            preemptions: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            migrations: AtomicU64::new(0),
            runtime: AtomicU64::new(0),
            switched_in_at: AtomicU64::new(if running { counter() } else { 0 }),
            slice_ticks: AtomicU32::new(0),
            stack_bottom: bottom,
            stack_top: top,
            stack: SpinLock::named("task stack", stack),
            exit_waiters: IrqSafeSpinLock::named("task exit waiters", Vec::new()),
            context: UnsafeCell::new(ctx),
            entry: SpinLock::named("task entry", entry),
        }
    }
}

/// Everything a new task is made from.
pub(super) struct NewTask {
    pub(super) pid: Pid,
    pub(super) name: String,
    pub(super) cpu: usize,
    pub(super) affinity: CpuMask,
    pub(super) policy: Policy,
    pub(super) is_idle: bool,
    /// None for a CPU's own flow, which already runs on the CPU's boot stack.
    pub(super) stack: Option<Stack>,
    pub(super) entry: Option<Entry>,
}
