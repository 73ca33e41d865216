//! Processes: kernel threads, their states, their stacks, and the scheduler that switches
//! between them (chapters 15 and 16).
//!
//! One file per mechanism:
//! - `state`: the task state machine, PIDs, CPU affinity masks (portable, host-tested);
//! - `queue`: a CPU's run queue, a FIFO with round-robin `rotate` (portable, host-tested);
//! - `stack`: heap stacks with a canary at the bottom (portable, host-tested);
//! - `sched/` (target only): the scheduler, one mechanism per file (its `mod.rs` lists them):
//!   the `Task`, per-CPU run queues and the current task, the switch itself (over the register
//!   save and restore in src/arch/aarch64/context.rs), spawn/exit/wait/kill, sleep and wake,
//!   time slices, idle CPUs, load balancing and statistics;
//! - `sleeper` (target only): the scheduler as the sleeping locks of src/sync see it;
//! - `input` (target only): the console reader's sleep until a key arrives;
//! - `proclist/`: the RCU-protected process list (chapter 18).
//!
//! Chapter 15 explains tasks and the context switch; chapter 16 the multiprocessor part:
//! preemption from the tick, sleeping and waking across CPUs by IPI, idle CPUs in WFI, and
//! load balancing by pulling work to idle CPUs.

#[cfg(target_os = "none")]
mod input;
pub mod proclist;
pub mod queue;
#[cfg(target_os = "none")]
mod sleeper;
pub mod stack;
pub mod state;

#[cfg(target_os = "none")]
mod sched;

#[cfg(target_os = "none")]
pub use sched::{
    Policy, SLICE_TICKS, SpawnError, Stats, SwitchRefused, Task, WaitError, can_sleep,
    cpu_switches, current, current_pid, current_token, current_user_context, exit, finish_wait,
    idle_once, init_cpu, kill, lookup, preempt_on_irq_exit, prepare_to_sleep, process_list_poison,
    queued_on, running_on, set_address_space_hook, set_current_affinity, settle_reaped,
    should_stop, sleep, sleep_ticks, spawn, spawn_with, start_secondary_if_ready, stats, stats_of,
    switch_allowed, task_is_running, tasks, tick, wait, wake, yield_now,
};
#[cfg(target_os = "none")]
pub use sleeper::{Completion, KernelSleeper, Mutex, RwSemaphore, Semaphore, WaitQueue};
pub use stack::{CanaryDamaged, DEFAULT_STACK_SIZE, Stack};
pub use state::{CpuMask, Pid, TaskState};
