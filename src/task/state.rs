//! A task's life as a state machine, its identity and its CPU affinity (chapter 15,
//! "Processes and the context switch").
//!
//! ```text
//!            spawn                 picked by the scheduler
//!   (new) ----------> Runnable  <-------------------------> Running ----> Exited
//!                        ^           yield / preempted         |    exit   (a zombie
//!                        |                                     |            until wait)
//!                        +------------ Sleeping <--------------+
//!                             wake               block
//! ```
//!
//! One more edge, Sleeping -> Running: a task announces it is about to sleep (`Sleeping`) while
//! still on its CPU, checks its condition once more, and either finds it true or is woken
//! before it got off the CPU; it then simply carries on running (chapter 17).
//!
//! Every change goes through `TaskState::can_become`, so an impossible step (running an exited
//! task, waking one that is not asleep) is a loud bug, not a silent corruption. This file is
//! plain Rust: the host unit tests below check it, and the scheduler on the target uses it.

use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

/// A process id. Monotonic, never reused; 0 is each CPU's own boot flow ("task 0").
pub type Pid = u32;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TaskState {
    /// On a run queue, waiting for a CPU.
    Runnable = 0,
    /// On a CPU right now.
    Running = 1,
    /// Waiting for something; on no run queue until woken.
    Sleeping = 2,
    /// Finished, with an exit status kept for `wait`.
    Exited = 3,
}

impl TaskState {
    /// True if a task may go from `self` to `next`.
    pub const fn can_become(self, next: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, next),
            (Runnable, Running)
                | (Running, Runnable)
                | (Running, Sleeping)
                | (Running, Exited)
                | (Sleeping, Runnable)
                | (Sleeping, Running)
        )
    }

    pub const fn name(self) -> &'static str {
        match self {
            TaskState::Runnable => "Runnable",
            TaskState::Running => "Running",
            TaskState::Sleeping => "Sleeping",
            TaskState::Exited => "Exited",
        }
    }

    const fn from_u8(v: u8) -> TaskState {
        match v {
            0 => TaskState::Runnable,
            1 => TaskState::Running,
            2 => TaskState::Sleeping,
            _ => TaskState::Exited,
        }
    }
}

/// A task's state, readable from anywhere, changed only along the allowed edges.
pub struct AtomicTaskState(AtomicU8);

impl AtomicTaskState {
    pub const fn new(state: TaskState) -> Self {
        AtomicTaskState(AtomicU8::new(state as u8))
    }

    pub fn get(&self) -> TaskState {
        TaskState::from_u8(self.0.load(Ordering::Acquire))
    }

    /// Move from exactly `from` to `to`; false (and no change) if the state was not `from`.
    pub fn transition(&self, from: TaskState, to: TaskState) -> bool {
        debug_assert!(from.can_become(to));
        self.0
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Move to `next`, or say which step was refused (and change nothing).
    pub fn set(&self, next: TaskState) -> Result<TaskState, (TaskState, TaskState)> {
        let now = self.get();
        if !now.can_become(next) {
            return Err((now, next));
        }
        self.0.store(next as u8, Ordering::Release);
        Ok(now)
    }
}

/// Hands out PIDs: 1, 2, 3, ... never the same twice (0 is reserved for task 0).
pub struct PidAllocator(AtomicU32);

impl PidAllocator {
    pub const fn new() -> Self {
        PidAllocator(AtomicU32::new(1))
    }

    /// The next PID.
    ///
    /// # Panics
    /// After 2^32 - 1 PIDs: wrapping would hand out a PID that may still be waited for.
    pub fn next(&self) -> Pid {
        let pid = self.0.fetch_add(1, Ordering::Relaxed);
        assert!(pid != 0, "PIDs exhausted");
        pid
    }
}

impl Default for PidAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// A set of CPUs: the portable bitmap in src/cpumask.rs, re-exported where tasks name it.
pub use crate::cpumask::CpuMask;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn only_the_drawn_edges_are_allowed() {
        use TaskState::*;
        let all = [Runnable, Running, Sleeping, Exited];
        let allowed = [
            (Runnable, Running),
            (Running, Runnable),
            (Running, Sleeping),
            (Running, Exited),
            (Sleeping, Runnable),
            (Sleeping, Running),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{} -> {}",
                    from.name(),
                    to.name()
                );
            }
        }
    }

    #[test]
    fn an_exited_task_never_runs_again() {
        let s = AtomicTaskState::new(TaskState::Runnable);
        assert_eq!(s.set(TaskState::Running), Ok(TaskState::Runnable));
        assert_eq!(s.set(TaskState::Exited), Ok(TaskState::Running));
        assert_eq!(
            s.set(TaskState::Running),
            Err((TaskState::Exited, TaskState::Running))
        );
        assert_eq!(
            s.set(TaskState::Runnable),
            Err((TaskState::Exited, TaskState::Runnable))
        );
        assert_eq!(s.get(), TaskState::Exited, "a refused step changes nothing");
    }

    #[test]
    fn pids_are_monotonic_and_never_zero() {
        let pids = PidAllocator::new();
        let got: Vec<Pid> = (0..5).map(|_| pids.next()).collect();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        let shared = std::sync::Arc::new(PidAllocator::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = shared.clone();
                std::thread::spawn(move || (0..1000).map(|_| p.next()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<Pid> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000, "no PID handed out twice");
        assert_eq!(all[0], 1);
    }
}
