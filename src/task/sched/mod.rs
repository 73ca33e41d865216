//! Kernel threads and the scheduler of every CPU (chapters 15, "Processes and the context
//! switch", and 16, "Scheduling on several CPUs").
//!
//! A `Task` is a kernel thread: a PID, a name, a state, the CPUs it may run on, a scheduling
//! policy, statistics, its own preempt count, a stack of its own from the heap, and the
//! registers it left behind when it last gave up the CPU. Each CPU has a run queue (a FIFO
//! under an `IrqSafeSpinLock`, in a `PerCpu`), a `current` task and an idle task. The flow that
//! was already running on a CPU becomes that CPU's task 0 the first time it meets the
//! scheduler.
//!
//! One mechanism per file, in the order the chapters meet them:
//! - `task`: the `Task` itself, its scheduling policy, and what a new one is made from;
//! - `runqueue`: each CPU's run queue, current task and idle task, `current`, and queueing a
//!   task on a CPU (`enqueue`, `kick`);
//! - `switch`: `schedule`, the only way to switch tasks, what it refuses (`switch_allowed`),
//!   and `finish_switch`, where the task that arrives tidies up after the one that left;
//! - `lifecycle`: `spawn`, `exit`, `wait` and `kill`, and the process list (chapter 18);
//! - `sleep`: the sleep and wake protocol, with its invariants in one place, and timed sleep;
//! - `timeslice`: preemption, the tick ending a slice and the interrupt's way out switching;
//! - `idle`: each CPU's idle task and loop, and the scheduler's start on each CPU;
//! - `balance`: an idle CPU pulling work from a busy one;
//! - `stats`: per-CPU counters summed when read, and what `ps` and `top` show.
//!
//! What makes it a multiprocessor scheduler is the last five: preemption from every CPU's
//! tick, sleeping on one CPU and being woken from another (by IPI), idle CPUs in WFI, and load
//! balancing by pulling. The task-side helpers that build on it live beside this directory:
//! the sleeping locks' scheduler (src/task/sleeper.rs) and the console reader's wait
//! (src/task/input.rs).

mod balance;
mod idle;
mod lifecycle;
mod runqueue;
mod sleep;
mod stats;
mod switch;
mod task;
mod timeslice;

pub use idle::{idle_once, init_cpu, start_secondary_if_ready};
pub use lifecycle::{
    SpawnError, WaitError, exit, kill, lookup, process_list_poison, settle_reaped, should_stop,
    spawn, spawn_with, tasks, wait,
};
pub use runqueue::{current, current_pid, current_token, current_user_context, task_is_running};
pub use sleep::{can_sleep, finish_wait, prepare_to_sleep, sleep, sleep_ticks, wake};
pub use stats::{Stats, cpu_switches, queued_on, running_on, stats, stats_of};
pub use switch::{
    SwitchRefused, set_address_space_hook, set_current_affinity, switch_allowed, yield_now,
};
pub use task::{Policy, Task};
pub use timeslice::{SLICE_TICKS, preempt_on_irq_exit, tick};
