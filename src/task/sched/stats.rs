//! Scheduler statistics, and what the shell's `ps` and `top` read (chapter 16, "Scheduling on
//! several CPUs"; the counters follow chapter 14's per-CPU pattern).
//!
//! Context switches, ticks, wakeups, migrations and preemptions are counted per CPU, each CPU
//! writing only its own plain counters, and summed only when read (`stats`). Each task keeps
//! its own counts too (src/task/sched/task.rs).

use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use super::lifecycle::PROCESSES;
use super::runqueue::SCHED;
use crate::arch::irqflags;
use crate::task::state::Pid;

/// Per-CPU scheduler counters: only their own CPU writes them, anyone may read; `stats` sums.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) switches: AtomicU64,
    pub(super) ticks: AtomicU64,
    /// Ticks that found a task other than the idle task running: the CPU's load.
    pub(super) busy_ticks: AtomicU64,
    pub(super) wakeups: AtomicU64,
    /// Tasks this CPU pulled from another.
    pub(super) migrations: AtomicU64,
    pub(super) preemptions: AtomicU64,
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
    crate::percpu::online_mask()
        .iter()
        .map(stats_of)
        .fold(Stats::default(), |a, b| a + b)
}
