//! Counters (chapter 14's claim, measured on real cores): every thread adding to one shared
//! counter, whose cache line must travel to each adder in turn, against every thread adding
//! to its own, on its own line.
//!
//! - `shared`: one `std::sync::atomic::AtomicU64`, `fetch_add`;
//! - `shared-quartet`: one quartet `AtomicCounter` (the kernel's `arch::atomic` code);
//! - `padded-per-thread`: one `crossbeam_utils::CachePadded<AtomicU64>` per thread,
//!   `fetch_add`: the usual Rust answer;
//! - `percpu`: quartet's `PerCpu<AtomicCounter>`, `inc` on this CPU's slot;
//! - `percpu-plain`: quartet's `PerCpu<AtomicU64>` with a load and a store, no atomic
//!   read-modify-write at all (only the owner writes its slot), as the kernel's suite.
//!
//! Threads add in batches of `BATCH` between looks at the stop flag, and every total is
//! checked against the threads' own counts.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use quartet::config::MAX_CPUS;
use quartet::percpu::{CacheAligned, PerCpu};
use quartet::sync::AtomicCounter;

use super::Setup;
use super::run::{Timed, on_threads};

const BATCH: u64 = 256;

pub const COUNTERS: &[&str] = &[
    "shared",
    "shared-quartet",
    "padded-per-thread",
    "percpu",
    "percpu-plain",
];

/// A timed run of counter `which`; None if the counters lost updates.
pub fn timed(which: usize, threads: usize, setup: &Setup) -> Option<Timed> {
    let shared = AtomicU64::new(0);
    let shared_quartet = AtomicCounter::new(0);
    let padded: Vec<CachePadded<AtomicU64>> = (0..threads)
        .map(|_| CachePadded::new(AtomicU64::new(0)))
        .collect();
    let percpu: PerCpu<AtomicCounter> =
        PerCpu::new([const { CacheAligned(AtomicCounter::new(0)) }; MAX_CPUS]);
    let percpu_plain: PerCpu<AtomicU64> =
        PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
    let timed = on_threads(threads, &setup.cores, setup.window, &|thread, stop| {
        let mut adds = 0;
        macro_rules! adding {
            ($add:expr) => {
                while !stop.now() {
                    for _ in 0..BATCH {
                        $add;
                    }
                    adds += BATCH;
                }
            };
        }
        match which {
            0 => adding!(shared.fetch_add(1, Ordering::Relaxed)),
            1 => adding!(shared_quartet.inc()),
            2 => {
                let mine = &padded[thread];
                adding!(mine.fetch_add(1, Ordering::Relaxed))
            }
            3 => {
                // Found once: a thread playing a CPU never moves to another.
                let mine = percpu.get();
                adding!(mine.inc())
            }
            _ => {
                let mine = percpu_plain.get();
                // Only this thread writes `mine`, so load-then-store cannot lose an update.
                adding!(mine.store(mine.load(Ordering::Relaxed) + 1, Ordering::Relaxed))
            }
        }
        adds
    });
    let total = match which {
        0 => shared.load(Ordering::Relaxed),
        1 => shared_quartet.read() as u64,
        2 => padded.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
        3 => percpu.iter().map(|c| c.read() as u64).sum(),
        _ => percpu_plain.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
    };
    (total == timed.total_ops()).then_some(timed)
}
