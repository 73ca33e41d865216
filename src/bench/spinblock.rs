//! Spin or block (chapter 17): the same contended work under a spin lock and under a mutex,
//! with short, medium and long hold times.
//!
//! Two round-robin tasks per online CPU spend a shared budget of acquisitions; each holds the
//! lock for a fixed amount of work. Reported per lock and hold time:
//! - `ops_per_sec`: acquisitions per second of guest time, from the moment all tasks are let
//!   go until the last one exits;
//! - `cpu_ns_per_op`: CPU time all the tasks consumed (the scheduler's per-task run time), per
//!   acquisition. A spinning waiter burns CPU time; a sleeping one does not;
//! - `hold_ns`: the cost of the critical section's work alone, measured uncontended first;
//! - `wasted_pct`: the share of that CPU time not spent holding the lock: spinning, sleeping
//!   and waking, switching. With more tasks than CPUs a spinner also keeps its CPU from the
//!   other task there (a spin lock disables preemption), which a sleeper hands over;
//! - `fairness`: Jain's index over the tasks' acquisitions (1 = equal shares; 1/n = one task
//!   took them all): neither lock hands over in FIFO order here, and it shows;
//! - `background_per_sec`: meanwhile one background task per CPU does unrelated work (units of
//!   arithmetic); how much of it got done per second is the CPU time the lock left for
//!   others. A spinning waiter leaves none; a sleeping one leaves its CPU to them.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::kernel::{Line, Scale};
use super::stats;
use crate::arch::{counter, counter_frequency};
use crate::smp;
use crate::sync::SpinLock;
use crate::sync::spinlock::TtasLock;
use crate::task::{self, Completion, CpuMask, DEFAULT_STACK_SIZE, Mutex, Policy};

/// (name, rounds of work inside the lock, acquisitions in the run).
const HOLDS: &[(&str, u64, u64)] = &[
    ("short", 16, 20_000),
    ("medium", 1_024, 4_000),
    ("long", 32_768, 400),
];

const TASKS_PER_CPU: usize = 2;

/// The critical section's work: `rounds` dependent additions the compiler cannot skip.
fn hold(rounds: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..rounds {
        x = core::hint::black_box(x.wrapping_add(i));
    }
    x
}

trait Lock: Send + Sync + 'static {
    const NAME: &'static str;
    fn new(budget: u64) -> Self;
    /// Take the lock, spend one unit of budget and do `rounds` of work; false when the
    /// budget is gone.
    fn take(&self, rounds: u64) -> bool;
}

/// The spin lock side uses test-and-test-and-set, not the kernel's default ticket lock: with
/// four vCPUs on two host cores a FIFO lock hands over to waiters the host is not running, and
/// one medium-hold run took 31 s (128 acquisitions a second; chapter 9 shows that collapse).
/// TTAS lets whichever waiter is running take the lock, so what remains is spinning itself.
type Spin = SpinLock<u64, TtasLock>;

/// Both locks run the same critical section through the same guard shape.
macro_rules! lock_impl {
    ($ty:ty, $name:expr, $new:expr) => {
        impl Lock for $ty {
            const NAME: &'static str = $name;
            fn new(budget: u64) -> Self {
                $new(budget)
            }
            fn take(&self, rounds: u64) -> bool {
                let mut left = self.lock();
                if *left == 0 {
                    return false;
                }
                *left -= 1;
                hold(rounds);
                true
            }
        }
    };
}

lock_impl!(Spin, "spinlock", SpinLock::new);
lock_impl!(Mutex<u64>, "mutex", Mutex::new);

/// One background task per CPU, doing unrelated work until told to stop.
struct Background {
    stop: Arc<AtomicU64>,
    units: Arc<AtomicU64>,
    pids: Vec<task::Pid>,
}

impl Background {
    fn start() -> Background {
        let stop = Arc::new(AtomicU64::new(0));
        let units = Arc::new(AtomicU64::new(0));
        let mut pids = Vec::new();
        for cpu in smp::online_cpus() {
            let (stop, units) = (stop.clone(), units.clone());
            if let Ok(pid) = task::spawn_with(
                &format!("background-{cpu}"),
                DEFAULT_STACK_SIZE,
                CpuMask::only(cpu),
                Policy::RoundRobin,
                move || {
                    while stop.load(Ordering::Relaxed) == 0 {
                        hold(BACKGROUND_UNIT);
                        units.fetch_add(1, Ordering::Relaxed);
                    }
                    0
                },
            ) {
                pids.push(pid);
            }
        }
        Background { stop, units, pids }
    }

    fn units(&self) -> u64 {
        self.units.load(Ordering::Relaxed)
    }

    fn stop(self) {
        self.stop.store(1, Ordering::Relaxed);
        for pid in self.pids {
            let _ = task::wait(pid);
        }
    }
}

/// Rounds of arithmetic in one unit of background work.
const BACKGROUND_UNIT: u64 = 1_000;

pub fn run(scale: Scale) -> usize {
    let background = Background::start();
    let lines = run_holds(scale, &background);
    background.stop();
    lines
}

fn run_holds(scale: Scale, background: &Background) -> usize {
    let mut lines = 0;
    for &(name, rounds, ops) in HOLDS {
        let ops = scale.of(ops);
        // The work alone, best of a few, so the "held" share is what the work costs here.
        let hold_ticks = (0..5)
            .map(|_| {
                let t0 = counter();
                for _ in 0..16 {
                    hold(rounds);
                }
                (counter() - t0) / 16
            })
            .min()
            .unwrap_or(0);
        lines += measure::<Spin>(name, rounds, ops, hold_ticks, background);
        lines += measure::<Mutex<u64>>(name, rounds, ops, hold_ticks, background);
    }
    lines
}

fn measure<L: Lock>(
    hold_name: &str,
    rounds: u64,
    ops: u64,
    hold_ticks: u64,
    background: &Background,
) -> usize {
    let lock = Arc::new(L::new(ops));
    let start = Arc::new(Completion::new());
    let ended = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let cpus: Vec<usize> = smp::online_cpus().collect();
    // Each task's acquisitions, for Jain's fairness index over the tasks.
    let shares: Arc<Vec<AtomicU64>> = Arc::new(
        (0..cpus.len() * TASKS_PER_CPU)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let mut pids = Vec::new();
    for i in 0..cpus.len() * TASKS_PER_CPU {
        let (lock, start, ended, done, shares) = (
            lock.clone(),
            start.clone(),
            ended.clone(),
            done.clone(),
            shares.clone(),
        );
        let spawned = task::spawn_with(
            &format!("{}-{i}", L::NAME),
            DEFAULT_STACK_SIZE,
            CpuMask::only(cpus[i % cpus.len()]),
            Policy::RoundRobin,
            move || {
                start.wait();
                let mut mine = 0;
                while lock.take(rounds) {
                    mine += 1;
                }
                done.fetch_add(mine, Ordering::Relaxed);
                shares[i].store(mine, Ordering::Relaxed);
                ended.fetch_max(counter(), Ordering::Relaxed);
                0
            },
        );
        match spawned {
            Ok(pid) => pids.push(pid),
            Err(e) => {
                log::error!(target: "bench", "spinblock: spawn failed: {e}");
                for pid in pids {
                    let _ = task::wait(pid);
                }
                return 0;
            }
        }
    }
    let handles: Vec<_> = pids.iter().filter_map(|&p| task::lookup(p)).collect();
    let before: u64 = handles.iter().map(|t| t.runtime_ticks()).sum();
    let began = counter();
    let units_before = background.units();
    start.complete_all();
    for &pid in &pids {
        let _ = task::wait(pid);
    }
    let elapsed = ended.load(Ordering::Relaxed).saturating_sub(began).max(1);
    let units = background.units() - units_before;
    let cpu_ticks: u64 = handles.iter().map(|t| t.runtime_ticks()).sum::<u64>() - before;
    let done = done.load(Ordering::Relaxed);
    if done != ops {
        log::error!(target: "bench", "spinblock: {} {hold_name}: {done} acquisitions, {ops} expected", L::NAME);
        return 0;
    }
    let frequency = counter_frequency();
    let held = hold_ticks * ops;
    let wasted_pct = if cpu_ticks > 0 {
        100.0 * cpu_ticks.saturating_sub(held) as f64 / cpu_ticks as f64
    } else {
        0.0
    };
    Line::new("spinblock")
        .field("lock", L::NAME)
        .field("hold", hold_name)
        .field("hold_rounds", rounds)
        .field("cpus", cpus.len())
        .field("tasks", pids.len())
        .field("ops", ops)
        .field("ticks", elapsed)
        .field(
            "ops_per_sec",
            format_args!("{:.0}", stats::per_second(ops, elapsed, frequency)),
        )
        .field(
            "fairness",
            format_args!(
                "{:.4}",
                stats::jain_index(
                    &shares
                        .iter()
                        .map(|c| c.load(Ordering::Relaxed) as f64)
                        .collect::<Vec<_>>()
                )
            ),
        )
        .field(
            "cpu_ns_per_op",
            format_args!(
                "{:.0}",
                stats::nanoseconds_per_op(ops, cpu_ticks, frequency)
            ),
        )
        .field(
            "hold_ns",
            format_args!("{:.0}", stats::nanoseconds_per_op(1, hold_ticks, frequency)),
        )
        .field("wasted_pct", format_args!("{wasted_pct:.1}"))
        .field(
            "background_per_sec",
            format_args!("{:.0}", stats::per_second(units, elapsed, frequency)),
        )
        .emit();
    1
}
