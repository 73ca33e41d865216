//! Processes: kernel threads, their states, their stacks, and the scheduler that switches
//! between them (chapter 14, "Processes and scheduling").
//!
//! One file per mechanism:
//! - `state`: the task state machine, PIDs, CPU affinity masks (portable, host-tested);
//! - `queue`: a CPU's run queue, a FIFO with round-robin `rotate` (portable, host-tested);
//! - `stack`: heap stacks with a canary at the bottom (portable, host-tested);
//! - `sched` (target only): `Task`, the per-CPU run queues and current task, `spawn`,
//!   `yield_now`, `exit`, `wait`, `current`, and the switch itself, over the register save and
//!   restore in src/arch/aarch64/context.rs.
//!
//! This is the cooperative, one-CPU-at-a-time first step: every CPU can run its own threads,
//! but nothing preempts a task, moves it between CPUs, or puts an idle CPU to sleep through the
//! scheduler yet. The boot flow and idle loops do not use it unless called.

pub mod queue;
pub mod stack;
pub mod state;

#[cfg(target_os = "none")]
mod sched;

#[cfg(target_os = "none")]
pub use sched::{
    SpawnError, SwitchRefused, Task, WaitError, cpu_switches, current, current_pid, exit, lookup,
    queued_on, spawn, spawn_with, switch_allowed, wait, yield_now,
};
pub use stack::{CanaryDamaged, DEFAULT_STACK_SIZE, Stack};
pub use state::{CpuMask, Pid, TaskState};
