//! Kernel threads and the cooperative scheduler of one CPU (chapter 14, "Processes and
//! scheduling").
//!
//! A `Task` is a kernel thread: a PID, a name, a state, the CPUs it may run on, statistics, a
//! stack of its own from the heap, and the registers it left behind when it last gave up the
//! CPU (`Context`, src/arch/aarch64/context.rs). Each CPU has a run queue (a FIFO under an
//! `IrqSafeSpinLock`, in a `PerCpu`) and a `current` task. The flow that was already running on
//! the CPU, the boot path or the idle loop, becomes that CPU's task 0 the first time it meets
//! the scheduler; its registers are saved on its first switch away like anyone else's.
//!
//! Scheduling is cooperative so far: a task runs until it calls `yield_now`, `wait` or `exit`.
//! Every switch goes through `schedule`, which
//! 1. refuses (with a panic that says why) when the CPU is in interrupt context, has preemption
//!    disabled, is inside an IRQ-disabled lock section, or holds a spin lock the validator
//!    knows of: all of those are per-CPU facts the next task knows nothing about;
//! 2. masks IRQs, picks the next task and queues the yielding one under the run-queue lock,
//!    then drops the lock (nothing but this CPU touches its queue while IRQs are masked);
//! 3. checks both tasks' stack canaries, updates states and statistics, points the per-CPU
//!    stack bounds at the next stack (the exception vectors check against them), and switches;
//! 4. when the task is eventually switched back to, finishes the switch for whoever ran before
//!    it (`finish_switch`: frees an exited task's stack, marks it off the CPU) and restores the
//!    task's own IRQ state.
//!
//! An exited task stays in the task list, a zombie holding its exit status, until `wait`
//! reaps it; its stack is freed as soon as the CPU has switched away from it.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::queue::{Queued, RunQueue};
use super::stack::{CanaryDamaged, DEFAULT_STACK_SIZE, Stack};
use super::state::{AtomicTaskState, CpuMask, Pid, PidAllocator, TaskState};
use crate::arch::aarch64::context::{self, Context};
use crate::arch::{counter, irqflags};
use crate::config::MAX_CPUS;
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::sync::preempt::{self, HARDIRQ_MASK, SOFTIRQ_MASK};
use crate::sync::{IrqSafeSpinLock, SpinLock};

/// What a task runs; its return value is the exit status.
type Entry = Box<dyn FnOnce() -> i32 + Send>;

/// A kernel thread.
pub struct Task {
    pid: Pid,
    name: String,
    state: AtomicTaskState,
    /// The CPU the task last ran on (or was queued on).
    cpu: AtomicU32,
    affinity: CpuMask,
    exit_status: AtomicI32,
    /// True from the moment the task is picked until the CPU has switched away from it and
    /// finished the switch. Its registers and stack are in use while this is set, so nothing
    /// may reap it (and, once CPUs steal work, nothing may migrate it).
    on_cpu: AtomicBool,
    /// Times the task has been switched to.
    switches: AtomicU64,
    /// Counter ticks spent running, up to its last switch away.
    runtime: AtomicU64,
    switched_in_at: AtomicU64,
    /// The usable stack: what the per-CPU stack bounds say while the task runs.
    stack_bottom: usize,
    stack_top: usize,
    /// The heap stack; None for a CPU's task 0 (it runs on the CPU's boot stack, which has a
    /// real guard page) and once the task has exited and been switched away from.
    stack: SpinLock<Option<Stack>>,
    /// Saved registers; valid while the task is not running.
    context: UnsafeCell<Context>,
    entry: SpinLock<Option<Entry>>,
}

// SAFETY: every field but `context` is an atomic, immutable, or behind a lock. `context` is
// touched only by `schedule` on the CPU switching from or to the task, with IRQs masked, and
// only while the task is not running anywhere else (`on_cpu` and the run queue ensure one CPU
// at a time has it).
unsafe impl Sync for Task {}

impl Queued for Arc<Task> {
    fn affinity(&self) -> CpuMask {
        self.affinity
    }
}

impl Task {
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
        self.affinity
    }

    /// Times the task has been switched to (a new task's first run counts).
    pub fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    /// Counter ticks the task has run, as of its last switch away.
    pub fn runtime_ticks(&self) -> u64 {
        self.runtime.load(Ordering::Relaxed)
    }

    /// The status it exited with (meaningful once `state()` is `Exited`).
    pub fn exit_status(&self) -> i32 {
        self.exit_status.load(Ordering::Acquire)
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

    /// Task 0 of `cpu`: the flow already running there, on the CPU's boot stack.
    fn boot(cpu: usize) -> Task {
        let area = percpu::cpu(cpu);
        Task {
            pid: 0,
            name: alloc::format!("boot/cpu{cpu}"),
            state: AtomicTaskState::new(TaskState::Running),
            cpu: AtomicU32::new(cpu as u32),
            affinity: CpuMask::only(cpu),
            exit_status: AtomicI32::new(0),
            on_cpu: AtomicBool::new(true),
            switches: AtomicU64::new(1),
            runtime: AtomicU64::new(0),
            switched_in_at: AtomicU64::new(counter()),
            stack_bottom: area.stack_bottom.load(Ordering::Relaxed),
            stack_top: area.stack_top.load(Ordering::Relaxed),
            stack: SpinLock::named("task stack", None),
            context: UnsafeCell::new(Context::empty()),
            entry: SpinLock::named("task entry", None),
        }
    }
}

/// One CPU's scheduler state.
struct CpuSched {
    queue: IrqSafeSpinLock<RunQueue<Arc<Task>>>,
    /// The running task, as `Arc::into_raw`: this slot owns one strong count. Null until the
    /// CPU first meets the scheduler.
    current: AtomicPtr<Task>,
    /// The task the CPU just switched away from, owned (one count) until `finish_switch`.
    prev: AtomicPtr<Task>,
    switches: AtomicU64,
}

impl CpuSched {
    const fn new() -> Self {
        CpuSched {
            queue: IrqSafeSpinLock::named("run queue", RunQueue::new()),
            current: AtomicPtr::new(core::ptr::null_mut()),
            prev: AtomicPtr::new(core::ptr::null_mut()),
            switches: AtomicU64::new(0),
        }
    }
}

static SCHED: PerCpu<CpuSched> = PerCpu::new([const { CacheAligned(CpuSched::new()) }; MAX_CPUS]);
/// Every task but the CPUs' task 0, until reaped: what `wait` searches. (The RCU-protected
/// process list of chapter 15 replaces it.)
static TASKS: IrqSafeSpinLock<Vec<Arc<Task>>> = IrqSafeSpinLock::named("task list", Vec::new());
static PIDS: PidAllocator = PidAllocator::new();

/// This CPU's current task as a raw pointer, creating task 0 on first use.
fn current_ptr(s: &CpuSched, cpu: usize) -> *mut Task {
    let p = s.current.load(Ordering::Relaxed);
    if !p.is_null() {
        return p;
    }
    let p = Arc::into_raw(Arc::new(Task::boot(cpu))).cast_mut();
    s.current.store(p, Ordering::Relaxed);
    p
}

/// The task running on this CPU (its task 0 if nothing was ever spawned here).
pub fn current() -> Arc<Task> {
    let cpu = percpu::this_cpu().id;
    let p = current_ptr(SCHED.for_cpu(cpu), cpu);
    // SAFETY: `p` came from `Arc::into_raw` and the `current` slot still owns that count, so
    // the allocation is live; we add a count for the Arc we return.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// The PID of the task running on this CPU.
pub fn current_pid() -> Pid {
    current().pid
}

/// Why `spawn` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// The heap could not provide the stack.
    OutOfMemory,
    /// The affinity mask does not include this CPU (spawn queues on the calling CPU).
    NotAllowedHere { cpu: usize },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::OutOfMemory => write!(f, "no memory for the task's stack"),
            SpawnError::NotAllowedHere { cpu } => {
                write!(
                    f,
                    "the affinity mask excludes cpu{cpu}, where spawn queues it"
                )
            }
        }
    }
}

/// Start a kernel thread on this CPU's run queue, with the default stack, allowed on every CPU.
/// It runs when the current task yields; `f`'s return value is its exit status.
pub fn spawn(name: &str, f: impl FnOnce() -> i32 + Send + 'static) -> Result<Pid, SpawnError> {
    spawn_with(name, DEFAULT_STACK_SIZE, CpuMask::ALL, f)
}

/// `spawn` with a stack size and an affinity mask (which must include this CPU).
pub fn spawn_with(
    name: &str,
    stack_size: usize,
    affinity: CpuMask,
    f: impl FnOnce() -> i32 + Send + 'static,
) -> Result<Pid, SpawnError> {
    let cpu = percpu::this_cpu().id;
    if !affinity.contains(cpu) {
        return Err(SpawnError::NotAllowedHere { cpu });
    }
    let stack = Stack::new(stack_size).ok_or(SpawnError::OutOfMemory)?;
    let pid = PIDS.next();
    let task = Arc::new(Task {
        pid,
        name: String::from(name),
        state: AtomicTaskState::new(TaskState::Runnable),
        cpu: AtomicU32::new(cpu as u32),
        affinity,
        exit_status: AtomicI32::new(0),
        on_cpu: AtomicBool::new(false),
        switches: AtomicU64::new(0),
        runtime: AtomicU64::new(0),
        switched_in_at: AtomicU64::new(0),
        stack_bottom: stack.bottom(),
        stack_top: stack.top(),
        context: UnsafeCell::new(Context::new_thread(
            stack.top(),
            task_entry,
            pid as usize,
            task_exit,
        )),
        stack: SpinLock::named("task stack", Some(stack)),
        entry: SpinLock::named("task entry", Some(Box::new(f))),
    });
    // The spawner becomes task 0 now if it was not yet, so the new task has someone to return to.
    current_ptr(SCHED.for_cpu(cpu), cpu);
    TASKS.lock().push(task.clone());
    SCHED.for_cpu(cpu).queue.lock().push(task);
    Ok(pid)
}

/// Give the CPU to the next runnable task, if there is one; come back after the others had
/// their turn.
///
/// # Panics
/// If switching is not allowed here (see `switch_allowed`), or a stack canary is damaged.
pub fn yield_now() {
    schedule(TaskState::Runnable);
}

/// End the current task with `status`, which `wait` hands to whoever waits for it.
///
/// # Panics
/// In a CPU's task 0 (the boot flow or idle loop has nowhere to return to), and wherever
/// `yield_now` would panic.
pub fn exit(status: i32) -> ! {
    {
        let me = current();
        assert!(
            me.pid != 0,
            "exit from {} (task 0): the CPU's own flow cannot exit",
            me.name
        );
        me.exit_status.store(status, Ordering::Release);
        // `me` is dropped here: nothing on this stack may keep a count after the last switch.
    }
    schedule(TaskState::Exited);
    unreachable!("an exited task was switched to again");
}

/// Why `wait` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// No such task, or it was already reaped (task 0 is never waitable).
    NoSuchTask(Pid),
    /// A task waiting for itself would wait forever.
    WaitingForItself,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::NoSuchTask(pid) => write!(f, "no task {pid} to wait for"),
            WaitError::WaitingForItself => write!(f, "a task cannot wait for itself"),
        }
    }
}

/// Wait until task `pid` has exited, reap it and return its exit status. The waiter yields
/// between looks, so the task (and everyone else) gets the CPU meanwhile.
pub fn wait(pid: Pid) -> Result<i32, WaitError> {
    if pid == current_pid() {
        return Err(WaitError::WaitingForItself);
    }
    if pid == 0 {
        return Err(WaitError::NoSuchTask(0));
    }
    loop {
        let reaped = {
            let mut tasks = TASKS.lock();
            let Some(i) = tasks.iter().position(|t| t.pid == pid) else {
                return Err(WaitError::NoSuchTask(pid));
            };
            let t = &tasks[i];
            (t.state() == TaskState::Exited && !t.on_cpu.load(Ordering::Acquire))
                .then(|| tasks.swap_remove(i))
        };
        if let Some(task) = reaped {
            // Dropped outside the list's lock: this may be the last count, freeing the task.
            return Ok(task.exit_status());
        }
        yield_now();
    }
}

/// A task that is not reaped yet (or None), for its statistics.
pub fn lookup(pid: Pid) -> Option<Arc<Task>> {
    TASKS.lock().iter().find(|t| t.pid == pid).cloned()
}

/// Context switches CPU `cpu` has made.
pub fn cpu_switches(cpu: usize) -> u64 {
    SCHED.for_cpu(cpu).switches.load(Ordering::Relaxed)
}

/// Tasks waiting on CPU `cpu`'s run queue.
pub fn queued_on(cpu: usize) -> usize {
    SCHED.for_cpu(cpu).queue.lock().len()
}

/// Why this CPU may not switch tasks right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchRefused {
    /// In a hardware interrupt handler or a bottom half: there is no task to suspend, only
    /// the one the interrupt borrowed the stack of.
    InInterrupt { preempt_count: u32 },
    /// Preemption is disabled: the code asked to stay on this CPU.
    PreemptDisabled { preempt_count: u32 },
    /// Inside `push_off` (an `IrqSafeSpinLock` is held): the nesting record is this CPU's.
    IrqSafeLockHeld { depth: u32 },
    /// The lock validator says this CPU holds a spin lock: the next task could spin on it
    /// forever, since the holder cannot run until that task yields.
    LockHeld {
        name: &'static str,
        site: &'static core::panic::Location<'static>,
    },
}

impl fmt::Display for SwitchRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchRefused::InInterrupt { preempt_count } => write!(
                f,
                "switch from interrupt context (preempt count {preempt_count:#x})"
            ),
            SwitchRefused::PreemptDisabled { preempt_count } => write!(
                f,
                "switch with preemption disabled (preempt count {preempt_count:#x})"
            ),
            SwitchRefused::IrqSafeLockHeld { depth } => write!(
                f,
                "switch while holding an IRQ-safe lock (IRQ-disable depth {depth})"
            ),
            SwitchRefused::LockHeld { name, site } => write!(
                f,
                "switch while holding spin lock {:?} taken at {}:{}",
                if name.is_empty() { "(unnamed)" } else { name },
                site.file(),
                site.line()
            ),
        }
    }
}

/// May this CPU switch tasks now? The check `schedule` makes (and panics on).
///
/// A plain `SpinLock` leaves no per-CPU trace of its own, so one held with the validator off
/// (`nolockdep`, or a build without the `lockdep` feature) goes unseen; the other three
/// conditions are always checked.
pub fn switch_allowed() -> Result<(), SwitchRefused> {
    let count = preempt::preempt_count();
    if count & (HARDIRQ_MASK | SOFTIRQ_MASK) != 0 {
        return Err(SwitchRefused::InInterrupt {
            preempt_count: count,
        });
    }
    let depth = crate::sync::irq::depth();
    if depth != 0 {
        return Err(SwitchRefused::IrqSafeLockHeld { depth });
    }
    // Before the preempt count: a held spin lock also disables preemption, and its name and
    // site say more than the count does.
    if let Some(held) = crate::sync::lockdep::held(percpu::this_cpu().id).next() {
        return Err(SwitchRefused::LockHeld {
            name: held.class.name,
            site: held.site,
        });
    }
    if count != 0 {
        return Err(SwitchRefused::PreemptDisabled {
            preempt_count: count,
        });
    }
    Ok(())
}

/// Switch away from the current task, which becomes `prev_becomes`: Runnable (a yield: it is
/// queued behind the others) or Exited (it never runs again). Returns when the task is
/// switched back to, or at once if there is nothing else to run.
fn schedule(prev_becomes: TaskState) {
    if let Err(why) = switch_allowed() {
        panic!("cannot switch tasks: {why}");
    }
    let cpu = percpu::this_cpu().id;
    let s = SCHED.for_cpu(cpu);
    let flags = irqflags::local_irq_save();
    let prev_ptr = current_ptr(s, cpu);
    // SAFETY: the `current` slot owns a count, so the task lives at least until we give that
    // count away below, and we are that task: it cannot be freed while we run on it.
    let prev = unsafe { &*prev_ptr };
    let next = {
        let mut queue = s.queue.lock();
        if prev_becomes == TaskState::Runnable {
            // SAFETY: as above; the queue gets an Arc with a count of its own.
            let me = unsafe {
                Arc::increment_strong_count(prev_ptr);
                Arc::from_raw(prev_ptr)
            };
            queue.rotate(cpu, me).ok()
        } else {
            queue.pop_for(cpu)
        }
    };
    let Some(next) = next else {
        assert!(
            prev_becomes != TaskState::Exited,
            "cpu{cpu}: task {} ({}) exited and nothing is left to run",
            prev.pid,
            prev.name
        );
        irqflags::local_irq_restore(flags);
        return;
    };
    for (task, when) in [(prev, "switching away from"), (&*next, "switching to")] {
        if let Err(damage) = task.check_stack() {
            panic!(
                "cpu{cpu}: {when} task {} ({}): {damage}",
                task.pid, task.name
            );
        }
    }
    let refused = |t: &Task, (from, to): (TaskState, TaskState)| -> ! {
        panic!(
            "task {} ({}): state {} -> {} refused",
            t.pid,
            t.name,
            from.name(),
            to.name()
        )
    };
    if let Err(step) = prev.state.set(prev_becomes) {
        refused(prev, step);
    }
    if let Err(step) = next.state.set(TaskState::Running) {
        refused(&next, step);
    }
    let now = counter();
    let ran = now.saturating_sub(prev.switched_in_at.load(Ordering::Relaxed));
    prev.runtime.fetch_add(ran, Ordering::Relaxed);
    next.switched_in_at.store(now, Ordering::Relaxed);
    next.switches.fetch_add(1, Ordering::Relaxed);
    next.cpu.store(cpu as u32, Ordering::Relaxed);
    next.on_cpu.store(true, Ordering::Release);
    s.switches.fetch_add(1, Ordering::Relaxed);
    // From here the CPU describes the next task's stack (IRQs are masked until it runs).
    let area = percpu::this_cpu();
    area.stack_bottom
        .store(next.stack_bottom, Ordering::Relaxed);
    area.stack_top.store(next.stack_top, Ordering::Relaxed);
    let next_ptr = Arc::into_raw(next).cast_mut();
    // The current slot's count on prev moves to `prev`, for finish_switch to drop.
    s.prev.store(prev_ptr, Ordering::Relaxed);
    s.current.store(next_ptr, Ordering::Relaxed);
    // SAFETY: both tasks are kept alive by the counts in `prev` and `current`; prev is this
    // thread, so its context is ours to fill; next is not running (it was on our queue, and
    // its `on_cpu` was clear when it was queued), and its context was saved by its own last
    // switch or built by `Context::new_thread` over its heap stack, whose canary was just
    // checked. IRQs are masked (local_irq_save above), and `switch_allowed` showed no lock,
    // IRQ-disable nesting or preempt count is carried across.
    unsafe { context::switch((*prev_ptr).context.get(), (*next_ptr).context.get()) };
    // Back in this task, perhaps much later: tidy up after whoever ran before us.
    finish_switch();
    irqflags::local_irq_restore(flags);
}

/// The first thing a task does after a switch lands in it: release the task the CPU came
/// from. It is off the CPU now (its registers are saved, its stack no longer in use), so an
/// exited one's stack can be freed and `wait` may reap it.
fn finish_switch() {
    assert!(
        irqflags::irqs_disabled(),
        "finish_switch with IRQs enabled: the switch must run masked"
    );
    let s = SCHED.get();
    let prev = s.prev.swap(core::ptr::null_mut(), Ordering::Relaxed);
    if prev.is_null() {
        return;
    }
    // SAFETY: `schedule` stored a pointer from `Arc::into_raw` whose count the slot owned;
    // taking it out of the slot hands that count to this Arc.
    let prev = unsafe { Arc::from_raw(prev) };
    if prev.state() == TaskState::Exited {
        let stack = prev.stack.lock().take();
        drop(stack);
    }
    prev.on_cpu.store(false, Ordering::Release);
}

/// A new task's first Rust, reached from the trampoline with its PID.
extern "C" fn task_entry(pid: usize) -> usize {
    finish_switch();
    // A task starts with IRQs on once its CPU takes interrupts (the switcher masked them).
    if crate::smp::interrupts_ready(percpu::this_cpu().id) {
        irqflags::local_irq_enable();
    }
    let f = {
        let me = current();
        assert_eq!(
            me.pid as usize, pid,
            "task_entry: the CPU's current task is not the one starting"
        );
        me.entry.lock().take()
    };
    let f = f.expect("a task started twice");
    f() as u32 as usize
}

/// Where a task's entry returns to (through the trampoline): exit with its return value.
extern "C" fn task_exit(status: usize) -> ! {
    exit(status as u32 as i32)
}
