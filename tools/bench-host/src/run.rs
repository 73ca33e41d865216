//! Timed runs on pinned threads: the host's version of the kernel's `on_cpus` (src/bench).
//!
//! Thread `i` is pinned to core `i % cores` and plays CPU `i` (`percpu::install(i)`), so
//! quartet's per-CPU code (the MCS nodes, the preempt count, RCU's nesting counts, `PerCpu`)
//! finds its own slot as it does on the target. All threads wait at a start line; the main
//! thread opens it, sleeps through the window, and closes it. Each thread counts what it did,
//! so the run gives a throughput (all threads' operations over the time from the start to the
//! last thread's stop) and Jain's fairness index over the per-thread counts, computed by the
//! kernel's own `bench::stats::jain_index`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use crossbeam_utils::CachePadded;
use quartet::bench::stats::jain_index;

/// What every thread did in one timed run.
pub struct Timed {
    pub threads: usize,
    /// From the start line opening to the last thread's stop.
    pub nanos: u64,
    pub ops: Vec<u64>,
    /// How long each thread ran its body, in nanoseconds: a thread the host kept off its core
    /// at the start shows why its count is low.
    pub ran: Vec<u64>,
}

impl Timed {
    pub fn total_ops(&self) -> u64 {
        self.ops.iter().sum()
    }

    pub fn ops_per_second(&self) -> f64 {
        self.total_ops() as f64 * 1e9 / self.nanos.max(1) as f64
    }

    pub fn fairness(&self) -> f64 {
        let shares: Vec<f64> = self.ops.iter().map(|&n| n as f64).collect();
        jain_index(&shares)
    }

    pub fn max(&self) -> u64 {
        self.ops.iter().copied().max().unwrap_or(0)
    }

    pub fn min(&self) -> u64 {
        self.ops.iter().copied().min().unwrap_or(0)
    }

    /// The per-thread counts, `a/b/c`, as the kernel prints them.
    pub fn split(&self) -> String {
        let counts: Vec<String> = self.ops.iter().map(u64::to_string).collect();
        counts.join("/")
    }

    /// How long each thread ran, in milliseconds, `a/b/c`.
    pub fn ran_ms(&self) -> String {
        let ms: Vec<String> = self
            .ran
            .iter()
            .map(|&n| format!("{:.1}", n as f64 / 1e6))
            .collect();
        ms.join("/")
    }

    /// A run that produced nothing (a lock that lost counts).
    pub fn failed(threads: usize) -> Self {
        Timed {
            threads,
            nanos: 1,
            ops: vec![0; threads],
            ran: vec![0; threads],
        }
    }
}

/// The flag a body polls: set when the window is over. On a line of its own, so the only
/// traffic on it is the one store that ends the run.
pub struct Stop(CachePadded<AtomicBool>);

impl Stop {
    #[inline(always)]
    pub fn now(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Run `body(thread, stop)` on `threads` pinned threads for `window`; each returns its count.
pub fn on_threads(
    threads: usize,
    cores: &[CoreId],
    window: Duration,
    body: &(dyn Fn(usize, &Stop) -> u64 + Sync),
) -> Timed {
    assert!(
        threads <= quartet::config::MAX_CPUS,
        "{threads} threads, but quartet has per-CPU slots for {} CPUs",
        quartet::config::MAX_CPUS
    );
    let ready = AtomicUsize::new(0);
    let go = CachePadded::new(AtomicBool::new(false));
    let stop = Stop(CachePadded::new(AtomicBool::new(false)));
    let (start, results) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (ready, go, stop) = (&ready, &go, &stop);
                let core = cores[i % cores.len()];
                s.spawn(move || {
                    // Not every host lets a thread choose its core (a container's CPU set may
                    // be narrower): the run goes on unpinned, and main() has said so.
                    let _ = core_affinity::set_for_current(core);
                    quartet::percpu::install(i);
                    ready.fetch_add(1, Ordering::AcqRel);
                    while !go.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                    let began = Instant::now();
                    let n = body(i, stop);
                    (n, began, Instant::now())
                })
            })
            .collect();
        while ready.load(Ordering::Acquire) < threads {
            std::thread::yield_now();
        }
        let start = Instant::now();
        go.store(true, Ordering::Release);
        std::thread::sleep(window);
        stop.0.store(true, Ordering::Relaxed);
        let results: Vec<(u64, Instant, Instant)> = handles
            .into_iter()
            .map(|h| h.join().expect("a benchmark thread panicked"))
            .collect();
        (start, results)
    });
    let end = results.iter().map(|&(_, _, t)| t).max().unwrap_or(start);
    Timed {
        threads,
        nanos: end.duration_since(start).as_nanos() as u64,
        ops: results.iter().map(|&(n, _, _)| n).collect(),
        ran: results
            .iter()
            .map(|&(_, began, ended)| ended.duration_since(began).as_nanos() as u64)
            .collect(),
    }
}

/// The best of `repeats` runs by throughput, as the kernel keeps its best: interference from
/// the rest of the machine only ever takes throughput away.
pub fn best_of(repeats: usize, mut run: impl FnMut() -> Timed) -> Timed {
    let mut best = run();
    for _ in 1..repeats {
        let next = run();
        if next.ops_per_second() > best.ops_per_second() {
            best = next;
        }
    }
    best
}
