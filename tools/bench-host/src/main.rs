//! The host benchmark (chapter 9, "On real cores"): quartet's own spin locks, rwlock, seqlock,
//! mutex, counters and RCU list, from src/sync and src/rcu, on host threads pinned one per
//! core, beside the crates a Rust programmer would pick instead.
//!
//! Under QEMU (`make bench`) every vCPU is a host thread and TCG does not model caches, so the
//! kernel's suites measure emulation. Here the same algorithms run on the host's cores, where
//! a cache line really travels between them. Output is the kernel's: one `bench suite=...`
//! line per result, which tools/bench (`--host`) turns into CSV, charts and the targets.
//!
//! - `uncontended`: one thread, lock + count + unlock, timed by criterion; with the floor (one
//!   atomic read-modify-write and one release store) and each lock's ratio to it;
//! - `read-side`: one thread, a read-side section's entry and exit (rwlock, seqlock, RCU);
//! - `locks`: 1..N threads taking one lock for a fixed window: throughput and Jain's fairness;
//! - `rcu` / `rcu-read`: readers walking a 64-entry list, timed windows and criterion;
//! - `atomics`: shared against per-thread and per-CPU counters.
//!
//! N is every core this process may use (at most quartet's `MAX_CPUS`), and one more point
//! with two threads per core, marked `oversubscribed=1`, to show what spinning costs when a
//! holder or the next waiter has no core.
//!
//!     bench-host [--out DIR] [--quick] [--window-ms N] [--repeats N] [--suite NAME]

mod counters;
mod locks;
mod readers;
mod run;

use std::fmt::Display;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use core_affinity::CoreId;
use criterion::Criterion;
use quartet::config::MAX_CPUS;
use quartet::sync::{RwLock, SeqLock};

/// How each run is shaped, from the command line.
pub struct Setup {
    pub cores: Vec<CoreId>,
    pub window: Duration,
    pub repeats: usize,
    pub quick: bool,
    pub suite: String,
    pub criterion_home: PathBuf,
}

impl Setup {
    fn wants(&self, suite: &str) -> bool {
        suite.contains(self.suite.as_str())
    }

    /// 1..=cores, then the oversubscribed point: twice the cores, or as many threads as
    /// quartet has CPUs when that is fewer but still more than the cores.
    fn thread_counts(&self) -> Vec<(usize, bool)> {
        let cores = self.cores.len().min(MAX_CPUS);
        let mut counts: Vec<(usize, bool)> = (1..=cores).map(|n| (n, false)).collect();
        let over = (2 * self.cores.len()).min(MAX_CPUS);
        if over > self.cores.len() {
            counts.push((over, true));
        }
        counts
    }

    fn criterion(&self) -> Criterion {
        let c = Criterion::default().without_plots();
        if self.quick {
            c.warm_up_time(Duration::from_millis(100))
                .measurement_time(Duration::from_millis(200))
                .sample_size(10)
        } else {
            c.warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_millis(1500))
                .sample_size(50)
        }
    }
}

/// One `bench ` result line, built field by field (the kernel's format).
struct Line(String);

impl Line {
    fn new(suite: &str) -> Self {
        Line(format!("bench suite={suite}"))
    }

    fn field(mut self, key: &str, value: impl Display) -> Self {
        self.0.push_str(&format!(" {key}={value}"));
        self
    }

    fn emit(self) {
        println!("{}", self.0);
    }
}

/// Criterion's estimate for `group/id`, in nanoseconds per iteration: the slope of its linear
/// fit where it made one, else the mean; with the 95% confidence interval.
fn estimate(setup: &Setup, group: &str, id: &str) -> Option<(f64, f64, f64)> {
    let path = setup
        .criterion_home
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| eprintln!("bench-host: cannot read {}: {e}", path.display()))
        .ok()?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| {
            eprintln!(
                "bench-host: {} is not criterion's JSON: {e}",
                path.display()
            )
        })
        .ok()?;
    let which = if json["slope"].is_object() {
        &json["slope"]
    } else {
        &json["mean"]
    };
    let point = which["point_estimate"].as_f64()?;
    let low = which["confidence_interval"]["lower_bound"].as_f64()?;
    let high = which["confidence_interval"]["upper_bound"].as_f64()?;
    Some((point, low, high))
}

fn uncontended(setup: &Setup) {
    let mut c = setup.criterion();
    let mut group = c.benchmark_group("uncontended");
    for entry in locks::LOCKS {
        (entry.uncontended)(&mut group, entry.id);
    }
    group.finish();
    let ns = |id: &str| estimate(setup, "uncontended", id);
    let baseline = ns("spin-ticket").map(|e| e.0);
    let floor = ns("floor").map(|e| e.0);
    for entry in locks::LOCKS {
        let Some((point, low, high)) = ns(entry.id) else {
            continue;
        };
        let ratio = |to: Option<f64>| to.map_or("-".to_string(), |b| format!("{:.3}", point / b));
        Line::new("uncontended")
            .field("lock", entry.name)
            .field("cpus", 1)
            .field("ops_per_sec", format!("{:.0}", 1e9 / point))
            .field("fairness", "1.0000")
            .field("ticks_per_op", format!("{point:.3}"))
            .field("ns_per_op", format!("{point:.2}"))
            .field("ci_low_ns", format!("{low:.2}"))
            .field("ci_high_ns", format!("{high:.2}"))
            .field("vs_spin_ticket", ratio(baseline))
            .field("vs_floor", ratio(floor))
            .emit();
    }
}

/// Entering and leaving a read-side section on one thread: what a reader pays before it reads.
fn read_side(setup: &Setup) {
    let rwlock = RwLock::new(0u64);
    let std_rwlock = std::sync::RwLock::new(0u64);
    let parking_lot_rwlock = parking_lot::RwLock::new(0u64);
    let seqlock = SeqLock::new([1u64, 2]);
    let mut c = setup.criterion();
    let mut group = c.benchmark_group("read-side");
    group.bench_function("rwlock-read", |b| b.iter(|| *black_box(&rwlock).read()));
    group.bench_function("std-rwlock-read", |b| {
        b.iter(|| *black_box(&std_rwlock).read().expect("no reader panics"))
    });
    group.bench_function("parking-lot-rwlock-read", |b| {
        b.iter(|| *black_box(&parking_lot_rwlock).read())
    });
    group.bench_function("seqlock-read", |b| b.iter(|| black_box(&seqlock).read().0));
    group.bench_function("rcu-read-lock", |b| {
        b.iter(|| quartet::rcu::rcu_read_unlock(black_box(quartet::rcu::rcu_read_lock())))
    });
    group.finish();
    for (name, id) in [
        ("rwlock-read", "rwlock-read"),
        ("std::sync::RwLock-read", "std-rwlock-read"),
        ("parking_lot::RwLock-read", "parking-lot-rwlock-read"),
        ("seqlock-read", "seqlock-read"),
        ("rcu_read_lock", "rcu-read-lock"),
    ] {
        if let Some((point, low, high)) = estimate(setup, "read-side", id) {
            Line::new("read-side")
                .field("lock", name)
                .field("cpus", 1)
                .field("ops_per_sec", format!("{:.0}", 1e9 / point))
                .field("ns_per_op", format!("{point:.2}"))
                .field("ci_low_ns", format!("{low:.2}"))
                .field("ci_high_ns", format!("{high:.2}"))
                .emit();
        }
    }
}

/// The fields every timed line carries.
fn timed_line(suite: &str, name: &str, t: &run::Timed, cores: usize, over: bool) -> Line {
    Line::new(suite)
        .field("lock", name)
        .field("cpus", t.threads)
        .field("cores", cores)
        .field("oversubscribed", u8::from(over))
        .field("ops", t.total_ops())
        .field("ticks", t.nanos)
        .field("ops_per_sec", format!("{:.0}", t.ops_per_second()))
        .field("fairness", format!("{:.4}", t.fairness()))
        .field("max", t.max())
        .field("min", t.min())
        .field("per_cpu", t.split())
        .field("per_cpu_ms", t.ran_ms())
}

fn contended(setup: &Setup) {
    let cores = setup.cores.len();
    for entry in locks::LOCKS.iter().filter(|e| e.contended) {
        for (threads, over) in setup.thread_counts() {
            let mut lost = false;
            let t = run::best_of(setup.repeats, || {
                (entry.run)(threads, setup).unwrap_or_else(|| {
                    lost = true;
                    run::Timed::failed(threads)
                })
            });
            if lost {
                eprintln!(
                    "bench-host: {} at {threads} threads lost counts: no result",
                    entry.name
                );
                continue;
            }
            timed_line("locks", entry.name, &t, cores, over).emit();
        }
    }
}

fn rcu(setup: &Setup) {
    let r = readers::Readers::build();
    let cores = setup.cores.len();
    if setup.wants("rcu-read") {
        let mut c = setup.criterion();
        let mut group = c.benchmark_group("rcu-read");
        let mut wrong = 0;
        for (which, (_, id)) in readers::PROTECTIONS.iter().enumerate() {
            wrong += readers::bench_one(&mut group, &r, which, id);
        }
        group.finish();
        if wrong != 0 {
            eprintln!("bench-host: rcu-read: {wrong} walks summed wrong; no results");
        } else {
            let bare = estimate(setup, "rcu-read", "unprotected").map(|e| e.0);
            for (name, id) in readers::PROTECTIONS {
                let Some((point, low, high)) = estimate(setup, "rcu-read", id) else {
                    continue;
                };
                Line::new("rcu-read")
                    .field("lock", name)
                    .field("cpus", 1)
                    .field("entries", readers::ENTRIES)
                    .field("ops_per_sec", format!("{:.0}", 1e9 / point))
                    .field("fairness", "1.0000")
                    .field("ns_per_walk", format!("{point:.1}"))
                    .field("ci_low_ns", format!("{low:.1}"))
                    .field("ci_high_ns", format!("{high:.1}"))
                    .field(
                        "vs_unprotected",
                        bare.map_or("-".into(), |b| format!("{:.3}", point / b)),
                    )
                    .emit();
            }
        }
    }
    if !setup.wants("rcu") {
        return;
    }
    for (threads, over) in setup.thread_counts() {
        for (which, (name, _)) in readers::PROTECTIONS.iter().enumerate() {
            let mut wrong = 0;
            let t = run::best_of(setup.repeats, || {
                let (t, bad) = readers::timed(&r, which, threads, setup);
                wrong += bad;
                t
            });
            if wrong != 0 {
                eprintln!(
                    "bench-host: rcu: {name} at {threads} threads: {wrong} walks summed wrong"
                );
                continue;
            }
            timed_line("rcu", name, &t, cores, over)
                .field("entries", readers::ENTRIES)
                .emit();
        }
    }
}

fn atomics(setup: &Setup) {
    let cores = setup.cores.len();
    for (which, name) in counters::COUNTERS.iter().enumerate() {
        for (threads, over) in setup.thread_counts() {
            let mut lost = false;
            let t = run::best_of(setup.repeats, || {
                counters::timed(which, threads, setup).unwrap_or_else(|| {
                    lost = true;
                    run::Timed::failed(threads)
                })
            });
            if lost {
                eprintln!("bench-host: {name} at {threads} threads lost updates: no result");
                continue;
            }
            timed_line("atomics", name, &t, cores, over).emit();
        }
    }
}

/// Which atomics quartet's `arch::atomic` runs here.
fn atomics_in_use() -> &'static str {
    #[cfg(target_arch = "aarch64")]
    {
        // The kernel chooses at boot from ID_AA64ISAR0_EL1; Linux tells user mode the same.
        let lse = std::arch::is_aarch64_feature_detected!("lse");
        quartet::arch::atomic::select(lse);
        if lse {
            "quartet's LSE atomics (src/arch/aarch64/atomic.rs)"
        } else {
            "quartet's LDXR/STXR atomics (src/arch/aarch64/atomic.rs)"
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        "core::sync::atomic (quartet's AArch64 code needs an AArch64 host)"
    }
}

fn usage(why: &str) -> ! {
    eprintln!("bench-host: {why}");
    eprintln!(
        "usage: bench-host [--out DIR] [--quick] [--window-ms N] [--repeats N] [--suite NAME]"
    );
    std::process::exit(2);
}

fn parse_args() -> (PathBuf, bool, u64, usize, String) {
    let mut out = PathBuf::from("build/bench/host");
    let (mut quick, mut window_ms, mut repeats, mut suite) = (false, 200, 3, String::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs {what}")))
        };
        match arg.as_str() {
            "--out" => out = PathBuf::from(value("a directory")),
            "--quick" => quick = true,
            "--window-ms" => {
                window_ms = value("milliseconds")
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--window-ms takes a positive number"))
            }
            "--repeats" => {
                repeats = value("a count")
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--repeats takes a positive number"))
            }
            "--suite" => suite = value("a suite name"),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if quick {
        window_ms = window_ms.min(20);
        repeats = 1;
    }
    (out, quick, window_ms, repeats, suite)
}

fn main() {
    let (out, quick, window_ms, repeats, suite) = parse_args();
    let criterion_home = out.join("criterion");
    if let Err(e) = std::fs::create_dir_all(&criterion_home) {
        usage(&format!("cannot create {}: {e}", criterion_home.display()));
    }
    // SAFETY: no other thread exists yet (this is the first thing main does after reading its
    // arguments), so nothing can be reading the environment while it changes. Criterion reads
    // its output directory from this variable.
    unsafe { std::env::set_var("CRITERION_HOME", &criterion_home) };

    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let cores = if cores.is_empty() {
        eprintln!("bench-host: cannot list this process's cores; threads run unpinned");
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..n).map(|id| CoreId { id }).collect()
    } else {
        cores
    };
    if cores.len() > MAX_CPUS {
        println!(
            "bench-host: {} cores, but quartet's per-CPU data has {MAX_CPUS} slots: measuring \
             1..={MAX_CPUS} threads, with no oversubscribed point",
            cores.len()
        );
    }
    let setup = Setup {
        cores,
        window: Duration::from_millis(window_ms),
        repeats,
        quick,
        suite,
        criterion_home,
    };
    // The calling thread is CPU 0 for the single-thread suites.
    quartet::percpu::install(0);
    println!(
        "bench-host: {} cores, threads {:?} (the last oversubscribed), window {window_ms} ms, \
         best of {repeats}; atomics: {}",
        setup.cores.len(),
        setup
            .thread_counts()
            .iter()
            .map(|&(n, _)| n)
            .collect::<Vec<_>>(),
        atomics_in_use()
    );
    if setup.wants("uncontended") {
        uncontended(&setup);
    }
    if setup.wants("read-side") {
        read_side(&setup);
    }
    if setup.wants("locks") {
        contended(&setup);
    }
    if setup.wants("rcu") || setup.wants("rcu-read") {
        rcu(&setup);
    }
    if setup.wants("atomics") {
        atomics(&setup);
    }
    if quick {
        println!("bench-host: --quick runs are too short to mean anything; they check the format");
    }
}
