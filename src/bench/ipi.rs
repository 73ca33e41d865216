//! IPI round-trip latency (the IPI chapter): how long from "this CPU sends an SGI" to "the
//! target has run a function in its handler and this CPU has seen it done".
//!
//! One `call_function` to one other CPU is one round trip: the SGI, the target's exception
//! entry and GIC acknowledge, the function, the completion store, and the sender seeing it.
//! Idle targets sleep in WFI, so each trip includes waking them, as it would in a kernel.

use core::sync::atomic::{AtomicU64, Ordering};

use super::kernel::{Line, Scale};
use super::stats;
use crate::arch::{counter, counter_frequency};
use crate::percpu;
use crate::smp::{self, ipi};

/// Round trips per target CPU.
const TRIPS: u64 = 2_000;

/// Round trips to each other CPU, then to all of them at once.
pub fn round_trips(scale: Scale) -> usize {
    if crate::drivers::gic::get().is_none() {
        log::warn!(target: "bench", "no interrupt controller: no IPIs to measure");
        return 0;
    }
    let trips = scale.of(TRIPS);
    let me = percpu::this_cpu().id;
    let frequency = counter_frequency();
    let mut lines = 0;
    // Targets as a bit mask for the output's `target` field: 64 bits cover MAX_CPUS = 64.
    let others: u64 = smp::online_cpus()
        .filter(|&id| id != me && id < 64)
        .fold(0, |m, id| m | 1 << id);
    let mut targets: [(u64, &str, usize); 9] = [(0, "", 0); 9];
    let mut n = 0;
    for id in smp::online_cpus().filter(|&id| id != me).take(8) {
        targets[n] = (1 << id, "call-one", 2);
        n += 1;
    }
    if others.count_ones() > 1 {
        targets[n] = (others, "call-all", others.count_ones() as usize + 1);
        n += 1;
    }
    for &(mask, name, cpus) in &targets[..n] {
        let ran = AtomicU64::new(0);
        let mut best = u64::MAX;
        let began = counter();
        for _ in 0..trips {
            let t0 = counter();
            let listed = (0..64).filter(|id| mask & 1 << id != 0);
            if ipi::call_function(listed, &|_| {
                ran.fetch_add(1, Ordering::Relaxed);
            })
            .is_err()
            {
                log::error!(target: "bench", "call_function refused: IRQs off on the benchmark CPU?");
                return lines;
            }
            best = best.min(counter() - t0);
        }
        let ticks = counter() - began;
        let expected = trips * u64::from(mask.count_ones());
        if ran.load(Ordering::Relaxed) != expected {
            log::error!(target: "bench",
                "{name}: the function ran {} times, expected {expected}",
                ran.load(Ordering::Relaxed)
            );
            continue;
        }
        Line::new("ipi")
            .field("lock", name)
            .field("cpus", cpus)
            .field("target", format_args!("{mask:#x}"))
            .field("ops", trips)
            .field("ticks", ticks)
            .field(
                "ops_per_sec",
                format_args!("{:.0}", stats::per_second(trips, ticks, frequency)),
            )
            .field("fairness", "1.0000")
            .field(
                "mean_ns",
                format_args!("{:.0}", stats::nanoseconds_per_op(trips, ticks, frequency)),
            )
            .field(
                "best_ns",
                format_args!("{:.0}", stats::nanoseconds_per_op(1, best, frequency)),
            )
            .emit();
        lines += 1;
    }
    lines
}
