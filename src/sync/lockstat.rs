//! Lock statistics: how often each lock class was taken, how often and how long CPUs waited
//! for it, how long it was held, and how often it moved between CPUs (chapter 9, "Lock
//! statistics"; Linux's /proc/lock_stat).
//!
//! A benchmark says a workload got slower with more CPUs; these counters say which lock it
//! waited on. They are kept per lock *class* (src/sync/lockdep/class.rs: every lock built by
//! one line of code shares a class, and named locks carry their name), so the statistics of
//! the 64 per-task locks of one kind add up in one row, as they should: they follow one rule.
//! The class table is the validator's; lock_stat only adds its own counters beside each slot,
//! one array per CPU.
//!
//! Per class:
//! - **acquisitions**, and **contentions**: acquisitions that found the lock held and waited;
//! - **wait** total and max: from the first failed try to holding the lock, for contended
//!   acquisitions only (an uncontended one waited for nothing); for a mutex this includes the
//!   time asleep;
//! - **hold** total and max: from holding to releasing;
//! - **bounces**: acquisitions on a CPU other than the one that last released this lock
//!   instance. The lock's cache line had to travel, which is what makes a lock expensive on
//!   several CPUs even when nobody waits.
//!
//! # The interface (what a lock calls)
//! ```text
//! struct MyLock { class: LockClass, stat: lockstat::PerLock, ... }
//! lock():   if try_acquire() { lockstat::acquired(&class, &stat, Acquire::UNCONTENDED, false) }
//!           else { let a = lockstat::begin_acquire();   // before spinning or sleeping
//!                  wait until acquired;  lockstat::acquired(&class, &stat, a, true) }
//! unlock(): lockstat::released(&class, &stat);          // while still the holder
//! ```
//! `begin_acquire` stamps the time; `acquired` counts, and records the wait if `contended`
//! (an uncontended acquisition passes `Acquire::UNCONTENDED`, which costs no clock read);
//! `released` records the hold. A recursive lock calls `acquired` and `released` for its
//! outermost level only. `PerLock` is the little each lock instance
//! keeps: when its current holder took it, and which CPU last released it. `reset` zeroes
//! every counter, `snapshot` sums them per class, `print_bench_lines` prints the top classes
//! as `bench suite=lockstat` lines.
//!
//! # Cost, and the feature
//! All of this is the cargo feature `lockstat` (on by default, off in the benchmark kernel
//! unless `make build/bench/kernel8.img LOCKSTAT=1`). Without it every type here is empty and
//! every function an empty inline one, so the locks compile to what they were. With it, an
//! uncontended acquire+release adds two clock reads and a few atomic adds to counters that
//! only this CPU writes: the counters are per CPU (summed by `snapshot`), so the statistics
//! never become the contended cache line they are trying to measure.
//!
//! # What is approximate
//! `reset` zeroes the counters while other CPUs may be adding to them: a lock held across a
//! reset counts its hold in the new period. Classes that did not fit in the validator's table
//! are added up in one row, `(other classes)`.

use alloc::string::String;
use alloc::vec::Vec;

use crate::sync::lockdep::{ClassInfo, LockClass};

/// Whether the statistics are built in (the `lockstat` feature).
pub const ENABLED: bool = cfg!(feature = "lockstat");

/// When an acquisition started waiting: made by `begin_acquire`.
#[derive(Clone, Copy, Debug)]
pub struct Acquire {
    #[cfg(feature = "lockstat")]
    start: u64,
}

impl Acquire {
    /// For an acquisition that did not wait: `acquired` ignores it when `contended` is false.
    pub const UNCONTENDED: Acquire = Acquire {
        #[cfg(feature = "lockstat")]
        start: 0,
    };
}

/// What lock_stat keeps in each lock instance (empty without the feature).
pub struct PerLock {
    /// The holder's time stamp from `acquired`; only the holder writes and reads it.
    #[cfg(feature = "lockstat")]
    held_since: core::sync::atomic::AtomicU64,
    /// The per-CPU pointer (TPIDR_EL1) of the CPU that last released this lock; 0: none yet.
    #[cfg(feature = "lockstat")]
    released_on: core::sync::atomic::AtomicUsize,
}

impl PerLock {
    pub const fn new() -> Self {
        PerLock {
            #[cfg(feature = "lockstat")]
            held_since: core::sync::atomic::AtomicU64::new(0),
            #[cfg(feature = "lockstat")]
            released_on: core::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl Default for PerLock {
    fn default() -> Self {
        Self::new()
    }
}

/// One class's statistics, summed over the CPUs; times in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassStats {
    /// `None` for the row that adds up the classes the validator's table had no room for.
    pub class: Option<ClassInfo>,
    pub acquisitions: u64,
    pub contentions: u64,
    pub wait_total_ns: u64,
    pub wait_max_ns: u64,
    pub hold_total_ns: u64,
    pub hold_max_ns: u64,
    pub bounces: u64,
}

impl ClassStats {
    /// The class's name; for an unnamed class `lock@file:line:column`, where it was built.
    /// Never contains a space, so it fits a `key=value` bench line.
    pub fn label(&self) -> String {
        match self.class {
            None => String::from("(other-classes)"),
            Some(c) if c.name.is_empty() => alloc::format!("lock@{}", c.defined_at),
            Some(c) => c.name.replace(' ', "_"),
        }
    }
}

/// The order `lockstat` and the bench print: most contentions first, then most waiting, then
/// most acquisitions.
pub fn sort_by_contention(stats: &mut [ClassStats]) {
    stats.sort_by(|a, b| {
        (b.contentions, b.wait_total_ns, b.acquisitions).cmp(&(
            a.contentions,
            a.wait_total_ns,
            a.acquisitions,
        ))
    });
}

#[cfg(feature = "lockstat")]
mod counting {
    use core::sync::atomic::{AtomicU64, Ordering};

    use crate::config::MAX_CPUS;
    use crate::sync::lockdep::{self, LockClass, MAX_CLASSES};

    /// One row per validator class, and a last one for classes that found the table full.
    pub(super) const ROWS: usize = MAX_CLASSES + 1;

    /// One class's counters on one CPU, in counter ticks. Only that CPU adds to them (and an
    /// interrupt on it, hence atomic adds rather than load and store), so the adds stay in
    /// this CPU's cache.
    pub(super) struct Counters {
        pub(super) acquisitions: AtomicU64,
        pub(super) contentions: AtomicU64,
        pub(super) wait_total: AtomicU64,
        pub(super) wait_max: AtomicU64,
        pub(super) hold_total: AtomicU64,
        pub(super) hold_max: AtomicU64,
        pub(super) bounces: AtomicU64,
    }

    impl Counters {
        const fn new() -> Self {
            Counters {
                acquisitions: AtomicU64::new(0),
                contentions: AtomicU64::new(0),
                wait_total: AtomicU64::new(0),
                wait_max: AtomicU64::new(0),
                hold_total: AtomicU64::new(0),
                hold_max: AtomicU64::new(0),
                bounces: AtomicU64::new(0),
            }
        }

        pub(super) fn all(&self) -> [&AtomicU64; 7] {
            [
                &self.acquisitions,
                &self.contentions,
                &self.wait_total,
                &self.wait_max,
                &self.hold_total,
                &self.hold_max,
                &self.bounces,
            ]
        }
    }

    /// One CPU's rows, on cache lines of their own.
    #[repr(align(64))]
    pub(super) struct CpuRows(pub(super) [Counters; ROWS]);

    pub(super) static TABLE: [CpuRows; MAX_CPUS] =
        [const { CpuRows([const { Counters::new() }; ROWS]) }; MAX_CPUS];

    /// The row of `class`, registering it with the validator's table on first use.
    #[inline]
    fn row(class: &LockClass) -> usize {
        lockdep::class_slot(class).unwrap_or(MAX_CLASSES)
    }

    /// This CPU's counters for `class`. Before per-CPU setup (one CPU runs) and on host threads
    /// that play no CPU, CPU 0's.
    #[inline]
    pub(super) fn mine(class: &LockClass) -> &'static Counters {
        let cpu = crate::percpu::current_id().unwrap_or(0);
        &TABLE[cpu].0[row(class)]
    }

    #[inline]
    pub(super) fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    /// Raise `counter` to `value`; usually the max is not beaten, and that costs one load.
    #[inline]
    pub(super) fn raise(counter: &AtomicU64, value: u64) {
        if value > counter.load(Ordering::Relaxed) {
            counter.fetch_max(value, Ordering::Relaxed);
        }
    }
}

/// Stamp the start of an acquisition that is about to wait (spin or sleep).
#[inline]
pub fn begin_acquire() -> Acquire {
    Acquire {
        #[cfg(feature = "lockstat")]
        start: crate::arch::counter(),
    }
}

/// The lock is now held by the caller: count the acquisition, its wait if `contended` (since
/// `waiting.start`), and whether it came from another CPU; start the hold time.
#[inline]
pub fn acquired(class: &LockClass, lock: &PerLock, waiting: Acquire, contended: bool) {
    #[cfg(feature = "lockstat")]
    {
        use core::sync::atomic::Ordering;
        let now = crate::arch::counter();
        let c = counting::mine(class);
        counting::add(&c.acquisitions, 1);
        if contended {
            let waited = now.saturating_sub(waiting.start);
            counting::add(&c.contentions, 1);
            counting::add(&c.wait_total, waited);
            counting::raise(&c.wait_max, waited);
        }
        let me = crate::arch::percpu_pointer();
        let last = lock.released_on.load(Ordering::Relaxed);
        if last != 0 && me != 0 && last != me {
            counting::add(&c.bounces, 1);
        }
        lock.held_since.store(now, Ordering::Relaxed);
    }
    #[cfg(not(feature = "lockstat"))]
    let _ = (class, lock, waiting, contended);
}

/// The holder is about to release the lock: record how long it held it, and where.
#[inline]
pub fn released(class: &LockClass, lock: &PerLock) {
    #[cfg(feature = "lockstat")]
    {
        use core::sync::atomic::Ordering;
        let held = crate::arch::counter().saturating_sub(lock.held_since.load(Ordering::Relaxed));
        let c = counting::mine(class);
        counting::add(&c.hold_total, held);
        counting::raise(&c.hold_max, held);
        lock.released_on
            .store(crate::arch::percpu_pointer(), Ordering::Relaxed);
    }
    #[cfg(not(feature = "lockstat"))]
    let _ = (class, lock);
}

/// Zero every counter (the shell's `lockstat reset`, and a benchmark before its run).
pub fn reset() {
    #[cfg(feature = "lockstat")]
    for cpu in &counting::TABLE[..crate::percpu::possible_cpus()] {
        for row in &cpu.0 {
            for counter in row.all() {
                counter.store(0, core::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Ticks of the generic counter as nanoseconds.
#[cfg(feature = "lockstat")]
fn nanoseconds(ticks: u64, frequency: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / frequency.max(1) as u128) as u64
}

/// Every class that was acquired since the last reset, counters summed over the CPUs (maxima
/// the largest), in the validator's table order. Empty without the feature.
pub fn snapshot() -> Vec<ClassStats> {
    #[cfg(feature = "lockstat")]
    {
        use core::sync::atomic::Ordering;
        let frequency = crate::arch::counter_frequency();
        let ns = |ticks| nanoseconds(ticks, frequency);
        let classes = crate::sync::lockdep::registered_classes();
        let mut out = Vec::new();
        for row in 0..counting::ROWS {
            let class = classes.get(row).copied();
            if class.is_none() && row != counting::ROWS - 1 {
                continue;
            }
            let mut sum = [0u64; 7];
            for cpu in &counting::TABLE[..crate::percpu::possible_cpus()] {
                let values = cpu.0[row].all().map(|c| c.load(Ordering::Relaxed));
                for (i, v) in values.into_iter().enumerate() {
                    // wait_max (3) and hold_max (5) are maxima; the rest add up.
                    sum[i] = if i == 3 || i == 5 {
                        sum[i].max(v)
                    } else {
                        sum[i] + v
                    };
                }
            }
            if sum[0] == 0 {
                continue;
            }
            out.push(ClassStats {
                class,
                acquisitions: sum[0],
                contentions: sum[1],
                wait_total_ns: ns(sum[2]),
                wait_max_ns: ns(sum[3]),
                hold_total_ns: ns(sum[4]),
                hold_max_ns: ns(sum[5]),
                bounces: sum[6],
            });
        }
        out
    }
    #[cfg(not(feature = "lockstat"))]
    Vec::new()
}

/// The top `top` classes by contention as bench lines, each starting
/// `bench suite=lockstat {prefix_fields} class=NAME` (`prefix_fields` may be empty).
pub fn bench_lines(prefix_fields: &str, top: usize) -> Vec<String> {
    let mut stats = snapshot();
    sort_by_contention(&mut stats);
    let prefix = if prefix_fields.is_empty() {
        String::new()
    } else {
        alloc::format!(" {}", prefix_fields.trim())
    };
    stats
        .iter()
        .take(top)
        .map(|s| {
            alloc::format!(
                "bench suite=lockstat{prefix} class={} acq={} contended={} wait_ns={} \
                 wait_max_ns={} hold_ns={} hold_max_ns={} bounces={}",
                s.label(),
                s.acquisitions,
                s.contentions,
                s.wait_total_ns,
                s.wait_max_ns,
                s.hold_total_ns,
                s.hold_max_ns,
                s.bounces
            )
        })
        .collect()
}

/// Print `bench_lines` on the console, one line each (nothing without the feature).
#[cfg(target_os = "none")]
pub fn print_bench_lines(prefix_fields: &str, top: usize) {
    for mut line in bench_lines(prefix_fields, top) {
        line.push('\n');
        crate::console::write_line(&line);
    }
}

#[cfg(all(test, not(loom), feature = "lockstat"))]
mod tests;
