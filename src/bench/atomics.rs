//! Atomic counter benchmarks (chapter 5, and the per-CPU data chapter's argument): every CPU
//! adding to one shared counter makes the counter's cache line travel between CPUs on every
//! add; every CPU adding to its own counter, on its own line, keeps each line at home. The
//! instruction is the same in both cases (LL/SC or LSE), so the difference is the sharing.

use super::kernel::{Line, Scale, on_cpus};
use crate::arch::aarch64::cpu;
use crate::arch::atomic;
use crate::config::MAX_CPUS;
use crate::percpu::{CacheAligned, PerCpu};
use crate::smp;
use crate::sync::AtomicCounter;

/// Increments each CPU makes in one run.
const ADDS_PER_CPU: u64 = 1_000_000;

/// Shared vs per-CPU counters at 1..N CPUs, with LL/SC and, where the CPU has it, LSE.
pub fn shared_vs_percpu(scale: Scale) -> usize {
    let adds = scale.of(ADDS_PER_CPU);
    let online = smp::online_cpus().count();
    let chosen = atomic::uses_lse();
    let mut lines = 0;
    let implementations: &[bool] = if cpu::has_lse_atomics() {
        &[false, true]
    } else {
        log::info!(target: "bench", "this CPU has no LSE atomics: LL/SC only");
        &[false]
    };
    for &lse in implementations {
        // Other CPUs are idle in their mailbox loop, which uses no `arch::atomic` operation.
        atomic::select(lse);
        let (shared_name, per_cpu_name) = if lse {
            ("shared-lse", "percpu-lse")
        } else {
            ("shared-llsc", "percpu-llsc")
        };
        for cpus in 1..=online {
            lines += shared(shared_name, cpus, adds) + per_cpu(per_cpu_name, cpus, adds);
        }
    }
    atomic::select(chosen);
    lines
}

fn shared(name: &str, cpus: usize, adds: u64) -> usize {
    let counter = AtomicCounter::new(0);
    let timed = on_cpus(cpus, &|_| {
        for _ in 0..adds {
            counter.inc();
        }
        adds
    });
    let expected = adds * timed.cpus as u64;
    if counter.read() as u64 != expected {
        log::error!(target: "bench",
            "{name} counter at {cpus} CPUs reads {}, expected {expected}: an atomic lost updates",
            counter.read()
        );
        return 0;
    }
    report(name, &timed);
    1
}

fn per_cpu(name: &str, cpus: usize, adds: u64) -> usize {
    let counters: PerCpu<AtomicCounter> =
        PerCpu::new([const { CacheAligned(AtomicCounter::new(0)) }; MAX_CPUS]);
    let timed = on_cpus(cpus, &|_| {
        for _ in 0..adds {
            // `get` finds this CPU's counter through TPIDR_EL1 each time, as real code would.
            counters.get().inc();
        }
        adds
    });
    // The per-CPU pattern's price: a read has to visit every CPU's counter and add them up.
    let sum: i64 = counters.iter().map(AtomicCounter::read).sum();
    let expected = adds * timed.cpus as u64;
    if sum as u64 != expected {
        log::error!(target: "bench",
            "{name} counters at {cpus} CPUs sum to {sum}, expected {expected}"
        );
        return 0;
    }
    report(name, &timed);
    1
}

fn report(lock: &str, timed: &super::kernel::Timed) {
    Line::new("atomics")
        .field("lock", lock)
        .field("cpus", timed.cpus)
        .field("ops", timed.total_ops())
        .field("ticks", timed.ticks)
        .field("ops_per_sec", format_args!("{:.0}", timed.ops_per_second()))
        .field("fairness", format_args!("{:.4}", timed.fairness_of_rates()))
        .emit();
}
