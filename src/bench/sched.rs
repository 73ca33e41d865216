//! Scheduler costs (chapter 16): one context switch, and one wakeup across CPUs.
//!
//! - `context-switch`: two FIFO tasks pinned to one CPU yield to each other; every yield is a
//!   full switch (`schedule`, the register save and restore, `finish_switch`), so the time per
//!   yield is the cost of one switch as a task sees it.
//! - `wakeup-cross-cpu`: a task on another CPU sleeps; this CPU reads the counter, wakes it
//!   (which queues it there and sends a Reschedule IPI), and the task reads the counter again
//!   as soon as it runs. The generic timer is one clock for all CPUs, so the difference is the
//!   latency from `wake` to running, including the sleeping CPU leaving WFI.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::kernel::{Line, Scale};
use super::stats;
use crate::arch::{counter, counter_frequency};
use crate::percpu;
use crate::smp;
use crate::task::{self, CpuMask, DEFAULT_STACK_SIZE, Policy};

/// Yields per task in the context-switch run.
const SWITCH_ROUNDS: u64 = 20_000;
/// Wakeups measured across CPUs.
const WAKEUPS: u64 = 2_000;

pub fn run(scale: Scale) -> usize {
    context_switch(scale) + cross_cpu_wakeup(scale)
}

fn context_switch(scale: Scale) -> usize {
    yields(scale, 1, "yield-alone") + yields(scale, 2, "context-switch")
}

/// `tasks` FIFO tasks pinned to one CPU yield `SWITCH_ROUNDS` times each. With one task a
/// yield finds nobody else to run: the scheduler's bookkeeping without a switch, the baseline
/// for the two-task run.
fn yields(scale: Scale, tasks: u64, name: &str) -> usize {
    let rounds = scale.of(SWITCH_ROUNDS);
    // A CPU other than this one when there is one, so the benchmark's own task is not in the
    // rotation.
    let me = percpu::this_cpu().id;
    let cpu = smp::online_cpus().find(|&c| c != me).unwrap_or(me);
    let span: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(u64::MAX), AtomicU64::new(0)]);
    // Both start together, so that every yield of the two-task run finds the other waiting.
    let start = Arc::new(task::Completion::new());
    let mut pids = Vec::new();
    for n in 0..tasks {
        let (span, start) = (span.clone(), start.clone());
        let spawned = task::spawn_with(
            if n == 0 { "switch-a" } else { "switch-b" },
            DEFAULT_STACK_SIZE,
            CpuMask::only(cpu),
            Policy::Fifo,
            move || {
                start.wait();
                span[0].fetch_min(counter(), Ordering::Relaxed);
                for _ in 0..rounds {
                    task::yield_now();
                }
                span[1].fetch_max(counter(), Ordering::Relaxed);
                0
            },
        );
        match spawned {
            Ok(pid) => pids.push(pid),
            Err(e) => {
                log::error!(target: "bench", "context-switch: spawn failed: {e}");
                return 0;
            }
        }
    }
    for _ in 0..1_000_000 {
        if start.waiters() == tasks as usize {
            break;
        }
        task::yield_now();
    }
    let before = task::cpu_switches(cpu);
    start.complete_all();
    for pid in pids {
        let _ = task::wait(pid);
    }
    let switches = task::cpu_switches(cpu) - before;
    let ticks = span[1]
        .load(Ordering::Relaxed)
        .saturating_sub(span[0].load(Ordering::Relaxed));
    // Each yield of the two-task run switches to the other task; the CPU's own count says how
    // many switches really happened (it also counts the few to and from the idle task at the
    // start and the end), and the time per switch is the span over that count. With one
    // task, nothing switches: the time per yield is the bookkeeping alone.
    let ops = if tasks > 1 { switches.max(1) } else { rounds };
    let frequency = counter_frequency();
    Line::new("sched")
        .field("lock", name)
        .field("cpus", 1)
        .field("cpu", cpu)
        .field("ops", ops)
        .field("yields", tasks * rounds)
        .field("switches_counted", switches)
        .field("ticks", ticks)
        .field(
            "ops_per_sec",
            format_args!("{:.0}", stats::per_second(ops, ticks, frequency)),
        )
        .field("fairness", "1.0000")
        .field(
            "mean_ns",
            format_args!("{:.0}", stats::nanoseconds_per_op(ops, ticks, frequency)),
        )
        .emit();
    1
}

fn cross_cpu_wakeup(scale: Scale) -> usize {
    let me = percpu::this_cpu().id;
    let Some(cpu) = smp::online_cpus().find(|&c| c != me) else {
        log::info!(target: "bench", "wakeup-cross-cpu: one CPU, nothing to measure");
        return 0;
    };
    let n = scale.of(WAKEUPS);
    // Round i: we store i in `go` after reading the counter into `sent`; the sleeper, once
    // running, records counter - sent and acknowledges i.
    let go = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let (g, s, a, l) = (go.clone(), sent.clone(), acked.clone(), latencies.clone());
    let spawned = task::spawn_with(
        "wakee",
        DEFAULT_STACK_SIZE,
        CpuMask::only(cpu),
        Policy::Fifo,
        move || {
            for round in 1..=n {
                loop {
                    task::prepare_to_sleep();
                    if g.load(Ordering::Acquire) >= round {
                        task::finish_wait();
                        break;
                    }
                    task::sleep();
                }
                let now = counter();
                l[(round - 1) as usize].store(
                    now.saturating_sub(s.load(Ordering::Acquire)),
                    Ordering::Relaxed,
                );
                a.store(round, Ordering::Release);
            }
            0
        },
    );
    let pid = match spawned {
        Ok(pid) => pid,
        Err(e) => {
            log::error!(target: "bench", "wakeup-cross-cpu: spawn failed: {e}");
            return 0;
        }
    };
    let Some(wakee) = task::lookup(pid) else {
        return 0;
    };
    let mut slept_rounds = 0;
    for round in 1..=n {
        // Let it get to sleep first (bounded): a wake that finds it still running measures
        // nothing.
        for _ in 0..100_000 {
            if wakee.state() == task::TaskState::Sleeping {
                break;
            }
            crate::arch::cpu_relax();
        }
        if wakee.state() == task::TaskState::Sleeping {
            slept_rounds += 1;
        }
        sent.store(counter(), Ordering::Release);
        go.store(round, Ordering::Release);
        task::wake(&wakee);
        for _ in 0..50_000_000u64 {
            if acked.load(Ordering::Acquire) >= round {
                break;
            }
            crate::arch::cpu_relax();
        }
    }
    drop(wakee);
    let _ = task::wait(pid);
    let mut sorted: Vec<u64> = latencies
        .iter()
        .map(|l| l.load(Ordering::Relaxed))
        .collect();
    sorted.sort_unstable();
    let frequency = counter_frequency();
    let total: u64 = sorted.iter().sum();
    let pick = |q: usize| sorted[(sorted.len() - 1) * q / 100];
    Line::new("sched")
        .field("lock", "wakeup-cross-cpu")
        .field("cpus", 2)
        .field("cpu", cpu)
        .field("ops", n)
        .field("asleep_when_woken", slept_rounds)
        .field("ticks", total)
        .field(
            "ops_per_sec",
            format_args!("{:.0}", stats::per_second(n, total, frequency)),
        )
        .field("fairness", "1.0000")
        .field(
            "mean_ns",
            format_args!("{:.0}", stats::nanoseconds_per_op(n, total, frequency)),
        )
        .field(
            "best_ns",
            format_args!("{:.0}", stats::nanoseconds_per_op(1, sorted[0], frequency)),
        )
        .field(
            "p50_ns",
            format_args!("{:.0}", stats::nanoseconds_per_op(1, pick(50), frequency)),
        )
        .field(
            "p99_ns",
            format_args!("{:.0}", stats::nanoseconds_per_op(1, pick(99), frequency)),
        )
        .emit();
    1
}
