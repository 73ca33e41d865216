//! Lock torture: every spin lock flavour protects an invariant that a second CPU inside the
//! critical section would break, under contention from every CPU (the locks chapter).
//!
//! The protected data is two counters that must stay equal: the holder reads both, checks them,
//! bumps the first, works a little, bumps the second. A shared budget of acquisitions (bounded,
//! so a run ends on a busy host) is spent by whichever CPU gets the lock, so the per-CPU counts
//! also show fairness. The report follows Linux's locktorture:
//! `Writes:  Total: N  Max/Min: a/b  Fail: f`, with `???` when max/2 > min (starvation) and
//! `!!!` on any failure. The deliberately broken lock runs the same test and must be caught.
//!
//! The counters are atomics accessed with separate relaxed loads and stores: a broken lock then
//! produces wrong numbers, which is the point, rather than undefined behaviour.

use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

use super::KTest;
use crate::config::MAX_CPUS;
use crate::ensure;
use crate::percpu::{CacheAligned, PerCpu};
use crate::platform::Platform;
use crate::smp;
use crate::sync::spinlock::{
    BrokenLock, McsLock, RawSpinLock, SpinLock, TasLock, TicketLock, TtasLock,
};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "locktorture_tas",
        run: |_| must_hold::<TasLock>("tas"),
    },
    KTest {
        name: "locktorture_ttas",
        run: |_| must_hold::<TtasLock>("ttas"),
    },
    KTest {
        name: "locktorture_ticket",
        run: |_| must_hold::<TicketLock>("ticket"),
    },
    KTest {
        name: "locktorture_mcs",
        run: |_| must_hold::<McsLock>("mcs"),
    },
    KTest {
        name: "locktorture_broken_lock_is_caught",
        run: broken_lock_is_caught,
    },
];

/// Acquisitions per run, shared by all CPUs.
pub const BUDGET: u64 = 5_000;
/// Acquisitions per run of the broken lock: long enough to span many host time slices, so a
/// vCPU is preempted inside the broken lock's window even when the host runs vCPUs in turn.
const BROKEN_BUDGET: u64 = 50_000;
/// Rounds of the broken lock before concluding the test cannot catch it. Run k spends k times
/// `BROKEN_BUDGET`: on a host busy with other work (CI runs two QEMUs on two cores) the vCPUs
/// seldom run at the same instant, and a whole 50 000-acquisition run has passed without one
/// overlap, several times in a row.
const MAX_BROKEN_ATTEMPTS: u32 = 12;

struct Protected {
    first: AtomicU64,
    second: AtomicU64,
    budget: AtomicU64,
}

/// What one torture run saw.
pub struct Report {
    pub total: u64,
    pub max: u64,
    pub min: u64,
    /// Times the holder found the two counters unequal, plus counts that do not add up.
    pub failures: u64,
}

impl Report {
    pub fn starved(&self) -> bool {
        self.max / 2 > self.min
    }
}

/// One run of `budget` acquisitions spread over every online CPU.
pub fn torture<R: RawSpinLock>(budget: u64) -> Report {
    let lock: SpinLock<Protected, R> = SpinLock::new(Protected {
        first: AtomicU64::new(0),
        second: AtomicU64::new(0),
        budget: AtomicU64::new(budget),
    });
    let acquired: PerCpu<AtomicU64> =
        PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
    let inconsistent = AtomicU64::new(0);
    let start = smp::StartLine::new();
    smp::on_each_cpu(&|id| {
        start.wait();
        let mut mine = 0u64;
        // Bounded even if a broken lock lets the budget be raised by a stale store.
        while mine < 4 * budget {
            let data = lock.lock();
            let left = data.budget.load(Ordering::Relaxed);
            if left == 0 {
                break;
            }
            data.budget.store(left - 1, Ordering::Relaxed);
            let first = data.first.load(Ordering::Relaxed);
            let second = data.second.load(Ordering::Relaxed);
            if first != second {
                inconsistent.fetch_add(1, Ordering::Relaxed);
            }
            data.first.store(first + 1, Ordering::Relaxed);
            // Hold the lock a little while, so that a holder is often inside when its vCPU
            // loses the host CPU: a broken lock then lets someone else in meanwhile.
            for i in 0..64u32 {
                core::hint::black_box(i);
            }
            data.second.store(second + 1, Ordering::Relaxed);
            drop(data);
            mine += 1;
        }
        acquired.for_cpu(id).store(mine, Ordering::Relaxed);
    });
    let counts = || smp::online_cpus().map(|id| acquired.for_cpu(id).load(Ordering::Relaxed));
    let total: u64 = counts().sum();
    let data = lock.lock();
    let (first, second) = (
        data.first.load(Ordering::Relaxed),
        data.second.load(Ordering::Relaxed),
    );
    let mismatched =
        u64::from(total != budget) + u64::from(first != total) + u64::from(second != total);
    Report {
        total,
        max: counts().max().unwrap_or(0),
        min: counts().min().unwrap_or(0),
        failures: inconsistent.load(Ordering::Relaxed) + mismatched,
    }
}

/// Print a report line in locktorture's format.
pub fn print(name: &str, r: &Report) {
    log::info!(
        "{name:<7} Writes:  Total: {}  Max/Min: {}/{} {} Fail: {} {}",
        r.total,
        r.max,
        r.min,
        if r.starved() { "???" } else { "   " },
        r.failures,
        if r.failures > 0 { "!!!" } else { "" }
    );
}

fn must_hold<R: RawSpinLock>(name: &str) -> Result<(), String> {
    let report = torture::<R>(BUDGET);
    print(name, &report);
    ensure!(report.failures == 0, "{name}: {} failures", report.failures);
    ensure!(
        report.total == BUDGET,
        "{name}: {} acquisitions of {BUDGET}",
        report.total
    );
    Ok(())
}

fn broken_lock_is_caught(_: &Platform<'static>) -> Result<(), String> {
    if smp::online_cpus().count() < 2 {
        log::info!("one CPU cannot race itself; skipped");
        return Ok(());
    }
    for attempt in 1..=MAX_BROKEN_ATTEMPTS {
        let report = torture::<BrokenLock>(BROKEN_BUDGET * u64::from(attempt));
        if report.failures > 0 {
            print("broken", &report);
            log::info!("the broken lock was caught (attempt {attempt}), as it must be");
            return Ok(());
        }
    }
    Err(alloc::format!(
        "the broken lock survived {MAX_BROKEN_ATTEMPTS} runs: this test cannot catch a broken lock"
    ))
}
