//! Kernel threads and the scheduler of every CPU (chapters 15, "Processes and the context
//! switch", and 16, "Scheduling on several CPUs").
//!
//! A `Task` is a kernel thread: a PID, a name, a state, the CPUs it may run on, a scheduling
//! policy, statistics, its own preempt count, a stack of its own from the heap, and the
//! registers it left behind when it last gave up the CPU (`Context`,
//! src/arch/aarch64/context.rs). Each CPU has a run queue (a FIFO under an `IrqSafeSpinLock`, in
//! a `PerCpu`), a `current` task and an idle task. The flow that was already running on a CPU
//! becomes that CPU's task 0 the first time it meets the scheduler: on a secondary CPU that
//! flow is the idle loop, so task 0 is the idle task; on the boot CPU it is the boot flow (the
//! shell or the tests), and a separate idle task is made for it (`init`).
//!
//! Every switch goes through `schedule`, which
//! 1. refuses (with a panic that says why) in interrupt context, with preemption disabled,
//!    inside an IRQ-disabled lock section, or holding a spin lock the validator knows of;
//! 2. masks IRQs and, under the run-queue lock, decides what becomes of the current task
//!    (queued again after a yield or a preemption, off every queue when it sleeps, a zombie
//!    when it exits) and picks the next: the first queued task this CPU may run, else the
//!    current task if it can go on, else the idle task;
//! 3. checks both stack canaries, updates states and statistics, reports a quiescent state to
//!    RCU, points the per-CPU stack bounds and the task word (its preempt count) at the next
//!    task, and switches;
//! 4. when a task is switched back to, finishes the switch for whoever ran before it
//!    (`finish_switch`: frees an exited task's stack, wakes its waiters, marks it off the CPU).
//!
//! What makes it a multiprocessor scheduler:
//! - **Preemption.** The tick counts how long the current task has run; after a time slice,
//!   with others waiting, it sets the CPU's need-resched flag, and the interrupt's way out
//!   (`preempt_on_irq_exit`) switches tasks if the interrupted code may be switched away from:
//!   preempt count 0, no IRQ-safe lock, not halfway into a sleep. FIFO tasks are never sliced.
//! - **Sleep and wake.** `prepare_to_sleep` marks the task Sleeping while it still runs;
//!   `sleep` goes off the CPU unless a `wake` came first. `wake` on another CPU queues the task
//!   on its CPU and sends that CPU a Reschedule IPI.
//! - **Load balancing.** An idle CPU pulls one waiting task from the busiest CPU (`pull`):
//!   bounded work, one task per look, never a task still switching away or pinned elsewhere.
//! - **Statistics.** Context switches, ticks, wakeups and migrations are counted per CPU with
//!   plain per-CPU counters, and summed only when read (`stats`): the seeds' per-CPU pattern.
//!
//! An exited task stays in the task list, a zombie holding its exit status, until `wait`
//! reaps it; its stack is freed as soon as the CPU has switched away from it.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use super::proclist::{GlobalRcu, ProcessList};
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

/// How the scheduler shares a CPU between tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Time-sliced: preempted after `SLICE_TICKS` ticks when others wait (the default).
    RoundRobin,
    /// Runs until it yields, sleeps or exits, like Linux's SCHED_FIFO: for code whose
    /// interleaving must be exact (tests) or that must not be interrupted by other tasks.
    Fifo,
}

/// Tasks each CPU's run queue and timed-sleeper list have room for from the start.
const INITIAL_ROOM: usize = 16;

/// Ticks a round-robin task may run while others wait: 20 ms at 100 Hz.
pub const SLICE_TICKS: u32 = 2;

/// A kernel thread.
pub struct Task {
    pid: Pid,
    name: String,
    state: AtomicTaskState,
    /// The CPU the task last ran on, or whose queue holds it. Changed only under that CPU's
    /// run-queue lock (a wake or a pull), so holding the lock of `cpu` pins the task there.
    cpu: AtomicU32,
    affinity: CpuMask,
    policy: Policy,
    /// Task 0 of a secondary CPU, or the boot CPU's idle task: never queued, run when
    /// nothing else can. Set once, when the CPU's scheduler starts (`init_cpu`).
    is_idle: AtomicBool,
    exit_status: AtomicI32,
    /// True from the moment the task is picked until the CPU has switched away from it and
    /// finished the switch. Its registers and stack are in use while this is set, so nothing
    /// may reap it or pull it to another CPU.
    on_cpu: AtomicBool,
    /// Set by `schedule` (under the run-queue lock) when the task has gone to sleep: off the
    /// CPU and on no queue. A `wake` that finds it Sleeping but not yet asleep only cancels
    /// the sleep.
    asleep: AtomicBool,
    /// The task's own preempt count (chapter 14): what the task word points at while it runs.
    preempt_count: AtomicU32,
    /// Asked to stop by `kill`; the task's own loops look (`should_stop`).
    stop_requested: AtomicBool,
    /// Times the task has been switched to.
    switches: AtomicU64,
    /// Times it was preempted, woken, moved to another CPU.
    preemptions: AtomicU64,
    wakeups: AtomicU64,
    migrations: AtomicU64,
    /// Counter ticks spent running, up to its last switch away.
    runtime: AtomicU64,
    switched_in_at: AtomicU64,
    /// Timer ticks since it was last switched to (its slice).
    slice_ticks: AtomicU32,
    /// The usable stack: what the per-CPU stack bounds say while the task runs.
    stack_bottom: usize,
    stack_top: usize,
    /// The heap stack; None for a CPU's task 0 (it runs on the CPU's boot stack, which has a
    /// real guard page) and once the task has exited and been switched away from.
    stack: SpinLock<Option<Stack>>,
    /// Tasks sleeping in `wait` for this one to exit.
    exit_waiters: IrqSafeSpinLock<Vec<Arc<Task>>>,
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

    /// The status it exited with (meaningful once `state()` is `Exited`).
    pub fn exit_status(&self) -> i32 {
        self.exit_status.load(Ordering::Acquire)
    }

    /// Has `kill` asked this task to stop?
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
    fn task_word(&self, cpu: usize) -> usize {
        if self.affinity == CpuMask::only(cpu) && (self.pid == 0 || self.is_idle()) {
            preempt::cpu_count_address(cpu)
        } else {
            &self.preempt_count as *const AtomicU32 as usize
        }
    }

    fn new(spec: NewTask) -> Task {
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
            affinity,
            policy,
            is_idle: AtomicBool::new(is_idle),
            exit_status: AtomicI32::new(0),
            on_cpu: AtomicBool::new(running),
            asleep: AtomicBool::new(false),
            preempt_count: AtomicU32::new(0),
            stop_requested: AtomicBool::new(false),
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
struct NewTask {
    pid: Pid,
    name: String,
    cpu: usize,
    affinity: CpuMask,
    policy: Policy,
    is_idle: bool,
    /// None for a CPU's own flow, which already runs on the CPU's boot stack.
    stack: Option<Stack>,
    entry: Option<Entry>,
}

/// Per-CPU scheduler counters: only their own CPU writes them, anyone may read; `stats` sums.
#[derive(Default)]
struct Counters {
    switches: AtomicU64,
    ticks: AtomicU64,
    /// Ticks that found a task other than the idle task running: the CPU's load.
    busy_ticks: AtomicU64,
    wakeups: AtomicU64,
    /// Tasks this CPU pulled from another.
    migrations: AtomicU64,
    preemptions: AtomicU64,
}

/// One CPU's scheduler state.
struct CpuSched {
    queue: IrqSafeSpinLock<RunQueue<Arc<Task>>>,
    /// Tasks on `queue`, readable without its lock (the load balancer's first look).
    queued: AtomicUsize,
    /// The running task, as `Arc::into_raw`: this slot owns one strong count. Null until the
    /// CPU first meets the scheduler.
    current: AtomicPtr<Task>,
    /// The task the CPU just switched away from, owned (one count) until `finish_switch`.
    prev: AtomicPtr<Task>,
    /// The CPU's idle task (owns one count), null until `init_cpu`.
    idle: AtomicPtr<Task>,
    /// Switch at the next chance: set by the tick when a slice ends, and by a wake that
    /// queued a task here.
    need_resched: AtomicBool,
    counters: Counters,
}

impl CpuSched {
    const fn new() -> Self {
        CpuSched {
            queue: IrqSafeSpinLock::named("run queue", RunQueue::new()),
            queued: AtomicUsize::new(0),
            current: AtomicPtr::new(core::ptr::null_mut()),
            prev: AtomicPtr::new(core::ptr::null_mut()),
            idle: AtomicPtr::new(core::ptr::null_mut()),
            need_resched: AtomicBool::new(false),
            counters: Counters {
                switches: AtomicU64::new(0),
                ticks: AtomicU64::new(0),
                busy_ticks: AtomicU64::new(0),
                wakeups: AtomicU64::new(0),
                migrations: AtomicU64::new(0),
                preemptions: AtomicU64::new(0),
            },
        }
    }
}

static SCHED: PerCpu<CpuSched> = PerCpu::new([const { CacheAligned(CpuSched::new()) }; MAX_CPUS]);
/// Every task but the CPUs' own flows, until reaped: the process list (chapter 18). `ps`,
/// `lookup` and `wait` read it without a lock, under RCU; spawn and reaping change it under
/// its writer lock, and a reaped task's entry (and the list's reference to the task) is
/// freed only after a grace period.
static PROCESSES: ProcessList<Arc<Task>> = ProcessList::new(GlobalRcu);
static PIDS: PidAllocator = PidAllocator::new();
/// Set once the boot CPU has its idle task: before that nothing may sleep there.
static READY: AtomicBool = AtomicBool::new(false);

/// This CPU's current task as a raw pointer, creating task 0 on first use.
fn current_ptr(s: &CpuSched, cpu: usize) -> *mut Task {
    let p = s.current.load(Ordering::Relaxed);
    if !p.is_null() {
        return p;
    }
    let task = Task::new(NewTask {
        pid: 0,
        // On a secondary CPU, the flow that meets the scheduler is the idle loop.
        name: if cpu == crate::smp::boot_cpu() {
            alloc::format!("boot/cpu{cpu}")
        } else {
            alloc::format!("idle/{cpu}")
        },
        cpu,
        affinity: CpuMask::only(cpu),
        policy: Policy::Fifo,
        is_idle: false,
        stack: None,
        entry: None,
    });
    let p = Arc::into_raw(Arc::new(task)).cast_mut();
    s.current.store(p, Ordering::Relaxed);
    p
}

/// Borrow the task behind a slot pointer as an Arc with a count of its own.
///
/// # Safety
/// `p` came from `Arc::into_raw` and its slot still owns that count.
unsafe fn clone_from_raw(p: *const Task) -> Arc<Task> {
    // SAFETY: the caller's contract: the allocation is live while the slot owns its count.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// The task running on this CPU (its task 0 if nothing was ever spawned here).
pub fn current() -> Arc<Task> {
    let flags = irqflags::local_irq_save();
    let cpu = percpu::this_cpu().id;
    let p = current_ptr(SCHED.for_cpu(cpu), cpu);
    // SAFETY: `current` owns a count on `p`; IRQs are masked so we cannot be switched away
    // (and the slot changed) between reading the pointer and taking our count.
    let task = unsafe { clone_from_raw(p) };
    irqflags::local_irq_restore(flags);
    task
}

/// The PID of the task running on this CPU.
pub fn current_pid() -> Pid {
    current().pid
}

/// Is the task whose address is `token` running on some CPU right now? (A mutex's optimistic
/// spin asks this about the owner.) Compares addresses only: it never dereferences.
pub fn task_is_running(token: usize) -> bool {
    (0..MAX_CPUS).any(|cpu| SCHED.for_cpu(cpu).current.load(Ordering::Relaxed) as usize == token)
}

/// The address naming the current task, for a mutex's owner field (aligned, never 0).
pub fn current_token() -> usize {
    let flags = irqflags::local_irq_save();
    let cpu = percpu::this_cpu().id;
    let p = current_ptr(SCHED.for_cpu(cpu), cpu);
    irqflags::local_irq_restore(flags);
    p as usize
}

/// Make this CPU's scheduler ready: its current flow becomes task 0 and it gets an idle task.
/// On a secondary CPU, call from the idle loop (task 0 *is* the idle task); on the boot CPU,
/// once the heap is up (the idle task needs a stack).
pub fn init_cpu(cpu: usize, current_is_idle: bool) {
    let s = SCHED.for_cpu(cpu);
    // Room up front in the structures a sleep and a wake use, so that sleeping (in
    // synchronize_rcu, say) does not grow them, and heap accounting in leak tests stays exact.
    s.queue.lock().reserve(INITIAL_ROOM);
    SLEEPERS.for_cpu(cpu).lock().reserve(INITIAL_ROOM);
    let me = current_ptr(s, cpu);
    if current_is_idle {
        // SAFETY: `current` owns a count on `me`; the idle slot gets one of its own.
        let idle = unsafe { clone_from_raw(me) };
        idle.is_idle.store(true, Ordering::Relaxed);
        s.idle
            .store(Arc::into_raw(idle).cast_mut(), Ordering::Release);
    } else {
        let Some(stack) = Stack::new(DEFAULT_STACK_SIZE) else {
            log::error!("sched: no memory for cpu{cpu}'s idle task; tasks there cannot sleep");
            return;
        };
        let pid = PIDS.next();
        let idle = Task::new(NewTask {
            pid,
            name: alloc::format!("idle/{cpu}"),
            cpu,
            affinity: CpuMask::only(cpu),
            policy: Policy::Fifo,
            is_idle: true,
            stack: Some(stack),
            entry: Some(Box::new(move || idle_loop())),
        });
        s.idle
            .store(Arc::into_raw(Arc::new(idle)).cast_mut(), Ordering::Release);
    }
    if cpu == crate::smp::boot_cpu() {
        READY.store(true, Ordering::Release);
        // synchronize_rcu and rcu_barrier wait for other CPUs' ticks: a task that may sleep
        // gives its CPU away for a tick instead of spinning.
        crate::rcu::set_wait_hook(wait_a_tick_if_allowed);
        // The shell's reader sleeps, and its CPU runs other tasks, until a key arrives.
        crate::console::set_input_sleep(crate::console::InputSleep {
            wait: wait_for_input,
            wake: input_arrived,
        });
    }
}

/// The task waiting for console input (the shell), if it sleeps.
static INPUT_READER: IrqSafeSpinLock<Option<Arc<Task>>> =
    IrqSafeSpinLock::named("console reader", None);

fn wait_for_input(ready: &dyn Fn() -> bool) -> bool {
    if !can_sleep() {
        return false;
    }
    let me = current();
    loop {
        prepare_to_sleep();
        *INPUT_READER.lock() = Some(me.clone());
        if ready() {
            finish_wait();
            break;
        }
        sleep();
    }
    INPUT_READER.lock().take();
    true
}

fn input_arrived() {
    let reader = INPUT_READER.lock().clone();
    if let Some(t) = reader {
        wake(&t);
    }
}

/// Can the current flow sleep right now? (Not before the scheduler is ready, not in the idle
/// task, not where a switch is refused.)
pub fn can_sleep() -> bool {
    if !READY.load(Ordering::Acquire) || switch_allowed().is_err() {
        return false;
    }
    // A CPU whose scheduler has not started yet has no idle task to run meanwhile (a
    // secondary runs a cross-CPU call before its idle loop met the scheduler).
    let cpu = percpu::this_cpu().id;
    !SCHED.for_cpu(cpu).idle.load(Ordering::Acquire).is_null() && !current().is_idle()
}

fn wait_a_tick_if_allowed() {
    if can_sleep() {
        sleep_ticks(1);
    } else {
        crate::arch::cpu_relax();
    }
}

/// Start a secondary CPU's scheduler (its idle loop becoming task 0 and idle task) once the
/// boot CPU's has started; until then nothing can be queued anywhere. Idempotent.
pub fn start_secondary_if_ready(cpu: usize) {
    if SCHED.for_cpu(cpu).idle.load(Ordering::Acquire).is_null() && READY.load(Ordering::Acquire) {
        init_cpu(cpu, true);
    }
}

/// The boot CPU's idle task: sleep in WFI until there is work, pull work from busy CPUs.
fn idle_loop() -> ! {
    loop {
        idle_once(|| false);
    }
}

/// One pass of an idle loop: run what is queued or can be pulled, else report a quiescent
/// state to RCU and sleep in WFI until an interrupt. `more_work` lets the secondary idle loop
/// add its own reason to stay awake (a posted cross-CPU call).
pub fn idle_once(more_work: impl Fn() -> bool) {
    let cpu = percpu::this_cpu().id;
    let s = SCHED.for_cpu(cpu);
    // A secondary CPU idles before the heap exists; its scheduler starts (task 0 becoming its
    // idle task) once the boot CPU's has: nothing can be queued anywhere before that.
    start_secondary_if_ready(cpu);
    if s.queued.load(Ordering::Acquire) > 0 || s.need_resched.load(Ordering::Relaxed) || pull(cpu) {
        s.need_resched.store(false, Ordering::Relaxed);
        schedule(Reason::Yield);
        return;
    }
    crate::rcu::rcu_idle(cpu);
    if crate::smp::interrupts_ready(cpu) {
        // Check and sleep with IRQs masked: a wake's IPI that arrives between the check and
        // the WFI stays pending, and a pending interrupt ends WFI even while masked.
        irqflags::local_irq_disable();
        if s.queued.load(Ordering::Acquire) == 0
            && !s.need_resched.load(Ordering::Relaxed)
            && !more_work()
        {
            irqflags::wait_for_interrupt();
        }
        irqflags::local_irq_enable();
    } else {
        crate::arch::wait_for_event();
    }
}

/// Why `spawn` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// The heap could not provide the stack.
    OutOfMemory,
    /// The affinity mask names no online CPU.
    NoAllowedCpu,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::OutOfMemory => write!(f, "no memory for the task's stack"),
            SpawnError::NoAllowedCpu => {
                write!(f, "the affinity mask names no online CPU")
            }
        }
    }
}

/// Start a kernel thread with the default stack, time-sliced, allowed on every CPU; it is
/// queued on this CPU and the load balancer moves it if another CPU is idle. `f`'s return value
/// is its exit status.
pub fn spawn(name: &str, f: impl FnOnce() -> i32 + Send + 'static) -> Result<Pid, SpawnError> {
    spawn_with(
        name,
        DEFAULT_STACK_SIZE,
        CpuMask::ALL,
        Policy::RoundRobin,
        f,
    )
}

/// `spawn` with a stack size, an affinity mask and a policy. It is queued on this CPU if the
/// mask allows, else on the allowed online CPU with the fewest queued tasks.
pub fn spawn_with(
    name: &str,
    stack_size: usize,
    affinity: CpuMask,
    policy: Policy,
    f: impl FnOnce() -> i32 + Send + 'static,
) -> Result<Pid, SpawnError> {
    let here = percpu::this_cpu().id;
    let cpu = if affinity.contains(here) {
        here
    } else {
        crate::smp::online_cpus()
            .filter(|&c| affinity.contains(c))
            .min_by_key(|&c| SCHED.for_cpu(c).queued.load(Ordering::Relaxed))
            .ok_or(SpawnError::NoAllowedCpu)?
    };
    let stack = Stack::new(stack_size).ok_or(SpawnError::OutOfMemory)?;
    let pid = PIDS.next();
    let task = Arc::new(Task::new(NewTask {
        pid,
        name: String::from(name),
        cpu,
        affinity,
        policy,
        is_idle: false,
        stack: Some(stack),
        entry: Some(Box::new(f)),
    }));
    // The spawner becomes task 0 now if it was not yet, so the new task has someone to return to.
    current_ptr(SCHED.for_cpu(here), here);
    if PROCESSES.insert(pid, task.clone()).is_err() {
        unreachable!("pid {pid} handed out twice");
    }
    enqueue(cpu, task);
    Ok(pid)
}

/// Queue a runnable task on `cpu` and make sure that CPU notices.
fn enqueue(cpu: usize, task: Arc<Task>) {
    let s = SCHED.for_cpu(cpu);
    {
        let mut q = s.queue.lock();
        task.cpu.store(cpu as u32, Ordering::Relaxed);
        q.push(task);
        s.queued.store(q.len(), Ordering::Release);
    }
    kick(cpu);
}

/// Tell `cpu` it has work: a flag, and an IPI unless it is this CPU.
fn kick(cpu: usize) {
    let s = SCHED.for_cpu(cpu);
    s.need_resched.store(true, Ordering::Release);
    if percpu::current_id() != Some(cpu) && crate::smp::interrupts_ready(cpu) {
        crate::smp::ipi::send(crate::smp::ipi::Ipi::Reschedule, 1 << cpu);
    }
}

/// Give the CPU to the next runnable task, if there is one; come back after the others had
/// their turn.
///
/// # Panics
/// If switching is not allowed here (see `switch_allowed`), or a stack canary is damaged.
pub fn yield_now() {
    crate::smp::refuse_sleep_in_posted_call("yield_now");
    schedule(Reason::Yield);
}

/// Mark the current task as about to sleep. From here a `wake` makes the next `sleep` return
/// at once; check the condition you wait for after this call, then `sleep` (or `finish_wait`
/// if it already holds). Nothing preempts a task between the two.
pub fn prepare_to_sleep() {
    let me = current();
    if me.is_idle() {
        return; // the idle task never sleeps: see `sleep`
    }
    if let Err((from, to)) = me.state.set(TaskState::Sleeping) {
        panic!(
            "task {} ({}): prepare_to_sleep from {} to {} refused",
            me.pid,
            me.name,
            from.name(),
            to.name()
        );
    }
}

/// Go to sleep until woken (at once if woken since `prepare_to_sleep`).
///
/// # Panics
/// Before the boot CPU's idle task exists (nothing would run meanwhile), and wherever
/// `yield_now` would panic.
pub fn sleep() {
    crate::smp::refuse_sleep_in_posted_call("sleep");
    let cpu = percpu::this_cpu().id;
    assert!(
        READY.load(Ordering::Acquire) && !SCHED.for_cpu(cpu).idle.load(Ordering::Acquire).is_null(),
        "sleep on cpu{cpu} before its scheduler started (no idle task to run meanwhile)"
    );
    if current().is_idle() {
        // The idle task is what a CPU runs when everything else sleeps, so it cannot sleep
        // itself (posted calls, which run in it, were refused above). It lets the queued
        // tasks run and returns; its caller re-checks its condition and comes back.
        yield_now();
        crate::arch::cpu_relax();
        return;
    }
    schedule(Reason::Sleep);
}

/// The condition held before sleeping: carry on running.
pub fn finish_wait() {
    let me = current();
    me.state.transition(TaskState::Sleeping, TaskState::Running);
}

/// Wake `task` if it sleeps or is about to. True if this call woke it.
pub fn wake(task: &Arc<Task>) -> bool {
    loop {
        let cpu = task.cpu();
        let s = SCHED.for_cpu(cpu);
        let mut q = s.queue.lock();
        if task.cpu() != cpu {
            continue; // moved meanwhile: its CPU's lock is the one that counts
        }
        if task.state() != TaskState::Sleeping {
            return false;
        }
        task.wakeups.fetch_add(1, Ordering::Relaxed);
        SCHED.get().counters.wakeups.fetch_add(1, Ordering::Relaxed);
        if !task.asleep.load(Ordering::Relaxed) {
            // Still on its CPU, between prepare_to_sleep and sleep: cancel the sleep.
            task.state
                .transition(TaskState::Sleeping, TaskState::Running);
            return true;
        }
        task.asleep.store(false, Ordering::Relaxed);
        task.state
            .transition(TaskState::Sleeping, TaskState::Runnable);
        q.push(task.clone());
        s.queued.store(q.len(), Ordering::Release);
        drop(q);
        kick(cpu);
        return true;
    }
}

/// Sleep for at least `ticks` timer ticks (10 ms each), letting other tasks run. The task is
/// listed on this CPU's timed sleepers, and this CPU's tick wakes it, wherever it then runs.
pub fn sleep_ticks(ticks: u64) {
    let cpu = percpu::this_cpu().id;
    let until = crate::irq::tick::ticks_on(cpu) + ticks.max(1);
    let me = current();
    let list = SLEEPERS.for_cpu(cpu);
    {
        let mut sleepers = list.lock();
        sleepers.push((until, me.clone()));
        NEXT_DUE.for_cpu(cpu).fetch_min(until, Ordering::Relaxed);
    }
    loop {
        prepare_to_sleep();
        // The tick takes us off the list before it wakes us: off the list means time is up.
        if !list.lock().iter().any(|(_, t)| Arc::ptr_eq(t, &me)) {
            finish_wait();
            return;
        }
        sleep();
    }
}

/// Per CPU: tasks sleeping until a tick count, woken by that CPU's tick.
type TimedSleepers = IrqSafeSpinLock<Vec<(u64, Arc<Task>)>>;
/// Per CPU: the earliest tick a timed sleeper there waits for (u64::MAX: none). Written only
/// under that CPU's `SLEEPERS` lock; the tick reads it without the lock.
static NEXT_DUE: PerCpu<AtomicU64> =
    PerCpu::new([const { CacheAligned(AtomicU64::new(u64::MAX)) }; MAX_CPUS]);
static SLEEPERS: PerCpu<TimedSleepers> = PerCpu::new(
    [const { CacheAligned(IrqSafeSpinLock::named("timed sleepers", Vec::new())) }; MAX_CPUS],
);

/// The scheduler's part of every tick on `cpu` (hardirq context): wake timed sleepers whose
/// time came, account the tick, and ask for a switch when the current task's slice is over.
pub fn tick(cpu: usize) {
    let now = crate::irq::tick::ticks_on(cpu);
    // Most ticks wake nobody: one load decides, and the list's lock is taken only when a
    // sleeper's time has come.
    let due: Vec<Arc<Task>> = if now < NEXT_DUE.for_cpu(cpu).load(Ordering::Relaxed) {
        Vec::new()
    } else {
        let mut list = SLEEPERS.for_cpu(cpu).lock();
        let mut due = Vec::new();
        let mut next = u64::MAX;
        list.retain(|(until, t)| {
            if *until <= now {
                due.push(t.clone());
                false
            } else {
                next = next.min(*until);
                true
            }
        });
        NEXT_DUE.for_cpu(cpu).store(next, Ordering::Relaxed);
        due
    };
    for t in &due {
        wake(t);
    }
    let s = SCHED.for_cpu(cpu);
    s.counters.ticks.fetch_add(1, Ordering::Relaxed);
    let p = s.current.load(Ordering::Relaxed);
    if p.is_null() {
        return;
    }
    // SAFETY: `current` owns a count, and it cannot change under us: we are in this CPU's
    // interrupt handler, and only this CPU switches its current task.
    let cur = unsafe { &*p };
    if !cur.is_idle() {
        s.counters.busy_ticks.fetch_add(1, Ordering::Relaxed);
    }
    let slice = cur.slice_ticks.fetch_add(1, Ordering::Relaxed) + 1;
    let waiting = s.queued.load(Ordering::Relaxed) > 0;
    if waiting && (cur.is_idle() || (cur.policy == Policy::RoundRobin && slice >= SLICE_TICKS)) {
        s.need_resched.store(true, Ordering::Relaxed);
    }
}

/// Called on the way out of every interrupt, with the handlers done (hardirq count back to
/// where it was): switch tasks if this CPU was asked to and the interrupted code allows it.
pub fn preempt_on_irq_exit() {
    let cpu = percpu::this_cpu().id;
    let s = SCHED.for_cpu(cpu);
    if !s.need_resched.load(Ordering::Relaxed) || !READY.load(Ordering::Relaxed) {
        return;
    }
    let p = s.current.load(Ordering::Relaxed);
    if p.is_null() || switch_allowed().is_err() {
        return; // preempt count, IRQ-safe lock or held spin lock: at the next chance
    }
    // An interrupt taken on the emergency stack (a stack overflow being reported) is not a
    // task's to give away.
    let sp = crate::arch::aarch64::cpu::stack_pointer();
    if !percpu::this_cpu().stack_contains(sp) {
        return;
    }
    // SAFETY: as in `tick`: our own CPU's current task, in its interrupt handler.
    let cur = unsafe { &*p };
    if cur.state() != TaskState::Running {
        return; // halfway into a sleep or an exit: it is about to switch anyway
    }
    s.need_resched.store(false, Ordering::Relaxed);
    if cur.policy == Policy::Fifo && !cur.is_idle() {
        return;
    }
    schedule(Reason::Preempt);
}

/// An idle CPU's load balancing: take one waiting task from the CPU with the most, if any may
/// run here and is not still switching away. Returns whether a task was pulled. Bounded: one
/// look at each CPU's count, one locked queue, one task.
fn pull(me: usize) -> bool {
    let busiest = crate::smp::online_cpus()
        .filter(|&c| c != me)
        .map(|c| (c, SCHED.for_cpu(c).queued.load(Ordering::Relaxed)))
        .filter(|&(_, n)| n > 0)
        .max_by_key(|&(_, n)| n);
    let Some((victim, _)) = busiest else {
        return false;
    };
    let stolen = {
        let v = SCHED.for_cpu(victim);
        let mut q = v.queue.lock();
        let t = q.steal_for(me, |t| !t.on_cpu.load(Ordering::Acquire));
        if let Some(t) = &t {
            // Under the victim's lock: from here a wake looks for it on our CPU.
            t.cpu.store(me as u32, Ordering::Relaxed);
        }
        v.queued.store(q.len(), Ordering::Release);
        t
    };
    let Some(task) = stolen else {
        return false;
    };
    task.migrations.fetch_add(1, Ordering::Relaxed);
    let s = SCHED.for_cpu(me);
    s.counters.migrations.fetch_add(1, Ordering::Relaxed);
    let mut q = s.queue.lock();
    q.push(task);
    s.queued.store(q.len(), Ordering::Release);
    true
}

/// End the current task with `status`, which `wait` hands to whoever waits for it.
///
/// # Panics
/// In a CPU's task 0 or idle task (they have nowhere to return to), and wherever `yield_now`
/// would panic.
pub fn exit(status: i32) -> ! {
    {
        let me = current();
        assert!(
            me.pid != 0 && !me.is_idle(),
            "exit from {} (a CPU's own flow): it cannot exit",
            me.name
        );
        me.exit_status.store(status, Ordering::Release);
        // `me` is dropped here: nothing on this stack may keep a count after the last switch.
    }
    schedule(Reason::Exit);
    unreachable!("an exited task was switched to again");
}

/// Ask task `pid` to stop: kernel threads are stopped cooperatively (they poll
/// `should_stop`), so this sets the request and wakes the task if it sleeps. False if there is
/// no such live task.
pub fn kill(pid: Pid) -> bool {
    let Some(task) = lookup(pid) else {
        return false;
    };
    if task.state() == TaskState::Exited {
        return false;
    }
    task.stop_requested.store(true, Ordering::Release);
    wake(&task);
    true
}

/// Has the current task been asked to stop (`kill`)?
pub fn should_stop() -> bool {
    current().stop_requested()
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

/// Wait until task `pid` has exited, reap it and return its exit status. The waiter sleeps
/// until the exiting task's CPU has switched away from it.
pub fn wait(pid: Pid) -> Result<i32, WaitError> {
    if pid == current_pid() {
        return Err(WaitError::WaitingForItself);
    }
    let Some(task) = lookup(pid) else {
        return Err(WaitError::NoSuchTask(pid));
    };
    let me = current();
    let done = |t: &Task| t.state() == TaskState::Exited && !t.on_cpu.load(Ordering::Acquire);
    if READY.load(Ordering::Acquire) {
        loop {
            prepare_to_sleep();
            task.exit_waiters.lock().push(me.clone());
            if done(&task) {
                finish_wait();
                break;
            }
            sleep();
        }
        task.exit_waiters.lock().retain(|w| !Arc::ptr_eq(w, &me));
    } else {
        while !done(&task) {
            yield_now();
        }
    }
    // Reaping is unlinking from the process list; readers that found the entry keep it
    // (and their reference) until their read-side sections end.
    if PROCESSES.remove(pid) {
        Ok(task.exit_status())
    } else {
        Err(WaitError::NoSuchTask(pid)) // another waiter reaped it first
    }
}

/// A task that is not reaped yet (or None). Lock-free: an RCU read-side lookup, and a
/// reference taken before the section ends.
pub fn lookup(pid: Pid) -> Option<Arc<Task>> {
    let guard = PROCESSES.read_lock();
    PROCESSES.lookup(pid, &guard).cloned()
}

/// Every task not reaped yet, spawned ones only (a snapshot, read without a lock).
pub fn tasks() -> Vec<Arc<Task>> {
    let mut all = Vec::new();
    let guard = PROCESSES.read_lock();
    PROCESSES.for_each(&guard, |_, t| all.push(t.clone()));
    drop(guard);
    all.sort_by_key(|t| t.pid);
    all
}

/// Readers of the process list that met a freed (poisoned) entry: none, unless RCU is broken.
pub fn process_list_poison() -> super::proclist::PoisonReport {
    PROCESSES.poison_report()
}

/// Wait until every reaped task's entry has really been freed (after `rcu_barrier`), so heap
/// accounting sees them gone: for leak tests.
pub fn settle_reaped() {
    PROCESSES.flush_quarantine(percpu::current_id());
}

/// Context switches CPU `cpu` has made.
pub fn cpu_switches(cpu: usize) -> u64 {
    SCHED.for_cpu(cpu).counters.switches.load(Ordering::Relaxed)
}

/// Tasks waiting on CPU `cpu`'s run queue.
pub fn queued_on(cpu: usize) -> usize {
    SCHED.for_cpu(cpu).queued.load(Ordering::Relaxed)
}

/// The name and PID of what CPU `cpu` runs now.
pub fn running_on(cpu: usize) -> Option<(Pid, String)> {
    let flags = irqflags::local_irq_save();
    // Reading another CPU's current task: it may switch away and drop the slot's count at any
    // moment, so only read through a task that the task list or an idle slot keeps alive.
    let p = SCHED.for_cpu(cpu).current.load(Ordering::Acquire);
    let found = if p.is_null() {
        None
    } else {
        let idle = SCHED.for_cpu(cpu).idle.load(Ordering::Acquire);
        if p == idle {
            // SAFETY: the idle slot owns a count for the kernel's lifetime.
            Some(unsafe { ((*p).pid, (*p).name.clone()) })
        } else {
            // A task running on a CPU is on the process list (a running task cannot be
            // reaped), and under the read lock its entry cannot be freed.
            let guard = PROCESSES.read_lock();
            let mut found = None;
            PROCESSES.for_each(&guard, |pid, t| {
                if Arc::as_ptr(t) == p.cast_const() {
                    found = Some((pid, t.name.clone()));
                }
            });
            drop(guard);
            found.or(Some((0, alloc::format!("boot/cpu{cpu}"))))
        }
    };
    irqflags::local_irq_restore(flags);
    found
}

/// Scheduler statistics, per CPU or summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub switches: u64,
    pub ticks: u64,
    pub busy_ticks: u64,
    pub wakeups: u64,
    pub migrations: u64,
    pub preemptions: u64,
}

impl core::ops::Add for Stats {
    type Output = Stats;
    fn add(self, o: Stats) -> Stats {
        Stats {
            switches: self.switches + o.switches,
            ticks: self.ticks + o.ticks,
            busy_ticks: self.busy_ticks + o.busy_ticks,
            wakeups: self.wakeups + o.wakeups,
            migrations: self.migrations + o.migrations,
            preemptions: self.preemptions + o.preemptions,
        }
    }
}

/// CPU `cpu`'s counters.
pub fn stats_of(cpu: usize) -> Stats {
    let c = &SCHED.for_cpu(cpu).counters;
    Stats {
        switches: c.switches.load(Ordering::Relaxed),
        ticks: c.ticks.load(Ordering::Relaxed),
        busy_ticks: c.busy_ticks.load(Ordering::Relaxed),
        wakeups: c.wakeups.load(Ordering::Relaxed),
        migrations: c.migrations.load(Ordering::Relaxed),
        preemptions: c.preemptions.load(Ordering::Relaxed),
    }
}

/// Every CPU's counters summed: the only moment the per-CPU counts meet.
pub fn stats() -> Stats {
    (0..MAX_CPUS)
        .map(stats_of)
        .fold(Stats::default(), |a, b| a + b)
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

/// What the current task does at a switch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reason {
    /// Queued behind the others (or keeps the CPU if nothing else may run).
    Yield,
    /// Like a yield, but the tick took the CPU: counted apart.
    Preempt,
    /// Off the CPU and every queue until `wake`, unless woken already.
    Sleep,
    /// Never runs again.
    Exit,
}

/// Switch away from the current task for `reason`. Returns when the task is switched back to,
/// or at once if it may go on (nothing else to run, or woken before it slept).
fn schedule(reason: Reason) {
    if let Err(why) = switch_allowed() {
        panic!("cannot switch tasks: {why}");
    }
    let flags = irqflags::local_irq_save();
    let cpu = percpu::this_cpu().id;
    let s = SCHED.for_cpu(cpu);
    let prev_ptr = current_ptr(s, cpu);
    // SAFETY: the `current` slot owns a count, so the task lives at least until we give that
    // count away below, and we are that task: it cannot be freed while we run on it.
    let prev = unsafe { &*prev_ptr };
    let idle_ptr = s.idle.load(Ordering::Acquire);
    let next: Option<Arc<Task>> = {
        let mut queue = s.queue.lock();
        let goes_on = match reason {
            Reason::Yield | Reason::Preempt => true,
            // Woken between prepare_to_sleep and here: the wake already made it Running.
            Reason::Sleep => prev.state() != TaskState::Sleeping,
            Reason::Exit => false,
        };
        if reason == Reason::Sleep {
            if goes_on {
                // Woken before it got off the CPU: it simply carries on. (Switching away
                // anyway would queue a task whose state says Running.)
                drop(queue);
                prev.slice_ticks.store(0, Ordering::Relaxed);
                irqflags::local_irq_restore(flags);
                return;
            }
            prev.asleep.store(true, Ordering::Relaxed);
        }
        let picked = queue.pop_for(cpu);
        let next = match picked {
            Some(t) => {
                if goes_on && !prev.is_idle() {
                    // SAFETY: as above; the queue gets an Arc with a count of its own.
                    queue.push(unsafe { clone_from_raw(prev_ptr) });
                }
                Some(t)
            }
            None if goes_on => None,
            None => {
                assert!(
                    !idle_ptr.is_null() && idle_ptr != prev_ptr,
                    "cpu{cpu}: task {} ({}) stops running and there is no idle task",
                    prev.pid,
                    prev.name
                );
                // SAFETY: the idle slot owns a count for the kernel's lifetime.
                Some(unsafe { clone_from_raw(idle_ptr) })
            }
        };
        s.queued.store(queue.len(), Ordering::Release);
        next
    };
    let Some(next) = next else {
        prev.slice_ticks.store(0, Ordering::Relaxed);
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
    match reason {
        Reason::Yield | Reason::Preempt if !prev.is_idle() => {
            if let Err(step) = prev.state.set(TaskState::Runnable) {
                refused(prev, step);
            }
        }
        Reason::Exit => {
            if let Err(step) = prev.state.set(TaskState::Exited) {
                refused(prev, step);
            }
        }
        _ => {} // a sleeper is Sleeping already; the idle task stays Running
    }
    if !next.is_idle()
        && let Err(step) = next.state.set(TaskState::Running)
    {
        refused(&next, step);
    }
    if reason == Reason::Preempt && !prev.is_idle() {
        prev.preemptions.fetch_add(1, Ordering::Relaxed);
        s.counters.preemptions.fetch_add(1, Ordering::Relaxed);
    }
    let now = counter();
    let ran = now.saturating_sub(prev.switched_in_at.load(Ordering::Relaxed));
    prev.runtime.fetch_add(ran, Ordering::Relaxed);
    next.switched_in_at.store(now, Ordering::Relaxed);
    next.slice_ticks.store(0, Ordering::Relaxed);
    next.switches.fetch_add(1, Ordering::Relaxed);
    next.cpu.store(cpu as u32, Ordering::Relaxed);
    next.on_cpu.store(true, Ordering::Release);
    s.counters.switches.fetch_add(1, Ordering::Relaxed);
    // A switch is a quiescent state: no RCU reader can be running here (readers disable
    // preemption, and `switch_allowed` saw a preempt count of 0).
    crate::rcu::rcu_context_switch(cpu);
    // From here the CPU describes the next task's stack and preempt count (IRQs are masked
    // until it runs, and both counts are 0).
    let area = percpu::this_cpu();
    area.stack_bottom
        .store(next.stack_bottom, Ordering::Relaxed);
    area.stack_top.store(next.stack_top, Ordering::Relaxed);
    crate::arch::set_task_word(next.task_word(cpu));
    let next_ptr = Arc::into_raw(next).cast_mut();
    // The current slot's count on prev moves to `prev`, for finish_switch to drop.
    s.prev.store(prev_ptr, Ordering::Relaxed);
    s.current.store(next_ptr, Ordering::Release);
    // SAFETY: both tasks are kept alive by the counts in `prev` and `current`; prev is this
    // thread, so its context is ours to fill; next is not running (it was on our queue with
    // `on_cpu` clear, or it is our idle task, which only ever runs here), and its context was
    // saved by its own last switch or built by `Context::new_thread` over its heap stack,
    // whose canary was just checked. IRQs are masked (local_irq_save above), and
    // `switch_allowed` showed no lock, IRQ-disable nesting or preempt count is carried across.
    unsafe { context::switch((*prev_ptr).context.get(), (*next_ptr).context.get()) };
    // Back in this task, perhaps much later and on another CPU: tidy up after whoever ran
    // before us.
    finish_switch();
    irqflags::local_irq_restore(flags);
}

/// The first thing a task does after a switch lands in it: release the task the CPU came
/// from. It is off the CPU now (its registers are saved, its stack no longer in use), so an
/// exited one's stack can be freed and its waiters woken, and another CPU may pull it.
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
    let exited = prev.state() == TaskState::Exited;
    if exited {
        let stack = prev.stack.lock().take();
        drop(stack);
    }
    prev.on_cpu.store(false, Ordering::Release);
    if exited {
        let waiters = core::mem::take(&mut *prev.exit_waiters.lock());
        for w in &waiters {
            wake(w);
        }
    }
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
