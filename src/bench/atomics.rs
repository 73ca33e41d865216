//! Atomic counter benchmarks (chapter 5, and the per-CPU data chapter's argument): every CPU
//! adding to one shared counter makes the counter's cache line travel between CPUs on every
//! add; every CPU adding to its own counter, on its own line, keeps each line at home. The
//! instruction is the same in both cases (LL/SC or LSE), so the difference is the sharing.
//!
//! `percpu-plain` is the source texts' CPU-local pattern in full: a counter only its own CPU writes
//! needs no atomic read-modify-write at all, just a load and a store (relaxed atomics, so the
//! reader that sums the counters is defined behaviour; they compile to plain LDR and STR).

use core::sync::atomic::{AtomicU64, Ordering};

use super::kernel::{Line, Scale, on_cpus};
use crate::arch::aarch64::cpu;
use crate::arch::atomic;
use crate::config::MAX_CPUS;
use crate::percpu::{CacheAligned, PerCpu};
use crate::smp;
use crate::sync::AtomicCounter;

/// Increments each CPU makes on the shared counter in one run.
const SHARED_ADDS_PER_CPU: u64 = 2_000_000;
/// Increments each CPU makes on its own counter: ten times more, because they are that much
/// faster, and a run must outlast the host's scheduling slices (vCPUs share two host cores
/// under QEMU) to measure the counter rather than the host scheduler.
const PRIVATE_ADDS_PER_CPU: u64 = 20_000_000;

/// Shared vs per-CPU counters at 1..N CPUs, with LL/SC and, where the CPU has it, LSE.
pub fn shared_vs_percpu(scale: Scale) -> usize {
    let (shared_adds, private_adds) = (
        scale.of(SHARED_ADDS_PER_CPU),
        scale.of(PRIVATE_ADDS_PER_CPU),
    );
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
            lines += shared(shared_name, cpus, shared_adds);
            lines += per_cpu(per_cpu_name, cpus, private_adds);
            if !lse {
                lines += per_cpu_plain("percpu-plain", cpus, private_adds);
            }
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
    checked_report(name, &timed, counter.read() as u64, adds)
}

fn per_cpu(name: &str, cpus: usize, adds: u64) -> usize {
    let counters: PerCpu<AtomicCounter> =
        PerCpu::new([const { CacheAligned(AtomicCounter::new(0)) }; MAX_CPUS]);
    let timed = on_cpus(cpus, &|_| {
        // Found once, through TPIDR_EL1: a benchmark body cannot migrate to another CPU (with a
        // scheduler, this is where preemption would have to be disabled).
        let mine = counters.get();
        for _ in 0..adds {
            mine.inc();
        }
        adds
    });
    // The per-CPU pattern's price: a read has to visit every CPU's counter and add them up.
    let sum: i64 = counters.iter().map(AtomicCounter::read).sum();
    checked_report(name, &timed, sum as u64, adds)
}

fn per_cpu_plain(name: &str, cpus: usize, adds: u64) -> usize {
    let counters: PerCpu<AtomicU64> =
        PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
    let timed = on_cpus(cpus, &|_| {
        let mine = counters.get();
        for _ in 0..adds {
            // Only this CPU writes `mine`, so load-then-store cannot lose an update.
            mine.store(mine.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        adds
    });
    let sum: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    checked_report(name, &timed, sum, adds)
}

/// Print the result if the counters add up to every CPU's `adds`; a counter that lost updates
/// has no throughput worth printing. Returns the number of lines printed.
fn checked_report(name: &str, timed: &super::kernel::Timed, total: u64, adds: u64) -> usize {
    let expected = adds * timed.cpus as u64;
    if total != expected {
        log::error!(target: "bench",
            "{name} at {} CPUs counted {total}, expected {expected}: updates were lost",
            timed.cpus
        );
        return 0;
    }
    report(name, timed);
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
