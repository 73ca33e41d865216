//! A task's life: `spawn`, `exit`, `wait` and `kill`, and the process list that keeps every
//! task until it is reaped (chapter 15, "Processes and the context switch"; the list is
//! chapter 18's RCU example).
//!
//! A spawned task is listed in the process list and queued on a CPU. An exited task stays in
//! the list, a zombie holding its exit status, until `wait` reaps it; its stack is freed as
//! soon as the CPU has switched away from it (`finish_switch`, src/task/sched/switch.rs).
//! `kill` stops a kernel thread cooperatively: it asks, wakes the task, and the task's own
//! loop polls `should_stop`.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::Ordering;

use super::idle::READY;
use super::runqueue::{SCHED, current, current_pid, current_ptr, enqueue};
use super::sleep::{finish_wait, prepare_to_sleep, sleep, wake};
use super::switch::{Reason, schedule, yield_now};
use super::task::{NewTask, Policy, Task};
use crate::percpu;
use crate::task::proclist::{GlobalRcu, ProcessList};
use crate::task::stack::{DEFAULT_STACK_SIZE, Stack};
use crate::task::state::{CpuMask, Pid, PidAllocator, TaskState};

/// Every task but the CPUs' own flows, until reaped: the process list (chapter 18). `ps`,
/// `lookup` and `wait` read it without a lock, under RCU; spawn and reaping change it under
/// its writer lock, and a reaped task's entry (and the list's reference to the task) is
/// freed only after a grace period.
pub(super) static PROCESSES: ProcessList<Arc<Task>> = ProcessList::new(GlobalRcu);
pub(super) static PIDS: PidAllocator = PidAllocator::new();

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
            // Once per waiter: a wake that comes before the task has exited (a stray one, or
            // `kill` of the waiter) brings us round this loop again, still registered.
            {
                let mut waiters = task.exit_waiters.lock();
                if !waiters.iter().any(|w| Arc::ptr_eq(w, &me)) {
                    waiters.push(me.clone());
                }
            }
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
pub fn process_list_poison() -> crate::task::proclist::PoisonReport {
    PROCESSES.poison_report()
}

/// Wait until every reaped task's entry has really been freed (after `rcu_barrier`), so heap
/// accounting sees them gone: for leak tests.
pub fn settle_reaped() {
    PROCESSES.flush_quarantine(percpu::current_id());
}
