//! The big-kernel-lock experiment (chapter 9, "Measuring locks"): how a user workload scales
//! with CPUs under the kernel-locking strategy this boot runs (`locking=`), set against what
//! Amdahl's law predicts if the kernel part could only run on one CPU at a time.
//!
//! The workload is the user program `mix` (user/src/bin/mix.rs): a calibrated computation loop
//! plus file-system calls, page faults, fork+exit+wait and a yield, with the kernel's share of
//! each operation chosen on its command line. For each kernel share (10%, 50%, 90%) the suite:
//! 1. runs one `mix` alone on the first CPU; it calibrates itself, and its line gives the
//!    operation count, the loop length and the kernel share it measured, `f`;
//! 2. runs k = 2, 3, ... copies at once, pinned one per CPU, each given that same operation
//!    count and loop length (so every k does k times the one-CPU work), all told to begin at
//!    the same counter reading;
//! 3. prints per k one line: operations per second over the window from the first copy's
//!    start to the last one's end, and Amdahl's prediction from the one-CPU run,
//!    `rate(1) / (f + (1 - f) / k)`: what a kernel that admits one CPU at a time allows.
//!
//! Each k is run twice and the faster run kept: QEMU's vCPUs are host threads, and a run the
//! host interrupted only looks slower.
//!
//! Strategies are compared across boots, so every boot must do the same work: with
//! `bklwork=10:OPS:ITERS,50:OPS:ITERS` in the boot arguments (tools/bench passes what its first
//! boot calibrated) no copy calibrates, and each line's `ops` and `user_iters` say what it did.
//!
//! Under a big kernel lock the kernel part is serial and the measured line should follow the
//! prediction; with fine-grained locks it should climb above it.

/// One copy of mix's result line (see user/src/bin/mix.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixReport {
    pub cpu: i64,
    pub ops: u64,
    pub user_iters: u64,
    pub start: u64,
    pub end: u64,
    pub kernel_ticks: u64,
    pub user_ticks: u64,
}

impl MixReport {
    /// The fields of the first line of `output` that starts with `mix: `, if it has them all.
    pub fn parse(output: &str) -> Option<MixReport> {
        let line = output.lines().find_map(|l| l.strip_prefix("mix: "))?;
        let field = |key: &str| {
            line.split(' ')
                .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        };
        let number = |key: &str| field(key)?.parse::<u64>().ok();
        Some(MixReport {
            cpu: field("cpu")?.parse().ok()?,
            ops: number("ops")?,
            user_iters: number("user_iters")?,
            start: number("start")?,
            end: number("end")?,
            kernel_ticks: number("kernel_ticks")?,
            user_ticks: number("user_ticks")?,
        })
    }
}

/// Several copies' reports taken together.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Together {
    pub ops: u64,
    /// From the first copy's start to the last copy's end.
    pub ticks: u64,
    /// Kernel time over all time, summed over the copies.
    pub kernel_share: f64,
}

pub fn together(reports: &[MixReport]) -> Together {
    let first = reports.iter().map(|r| r.start).min().unwrap_or(0);
    let last = reports.iter().map(|r| r.end).max().unwrap_or(0);
    let kernel: u64 = reports.iter().map(|r| r.kernel_ticks).sum();
    let user: u64 = reports.iter().map(|r| r.user_ticks).sum();
    Together {
        ops: reports.iter().map(|r| r.ops).sum(),
        ticks: last.saturating_sub(first),
        kernel_share: kernel as f64 / (kernel + user).max(1) as f64,
    }
}

/// The work one copy does at one kernel share: operations, and loop steps per operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    pub kernel_pct: u64,
    pub ops: u64,
    pub user_iters: u64,
}

/// `bklwork=`'s value: `PCT:OPS:ITERS` items separated by commas.
pub fn parse_work(value: &str) -> Result<alloc::vec::Vec<Work>, alloc::string::String> {
    value
        .split(',')
        .map(|item| {
            let mut parts = item.split(':').map(|n| n.parse::<u64>().ok());
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(Some(kernel_pct)), Some(Some(ops)), Some(Some(user_iters)), None)
                    if ops > 0 =>
                {
                    Ok(Work {
                        kernel_pct,
                        ops,
                        user_iters,
                    })
                }
                _ => Err(alloc::format!(
                    "{item:?} is not PCT:OPS:ITERS (three numbers, OPS > 0)"
                )),
            }
        })
        .collect()
}

/// Amdahl's law: the rate `cpus` CPUs reach when the share `serial` of the work one CPU did at
/// `one_cpu_rate` can only run on one CPU at a time and the rest spreads over all of them.
pub fn amdahl(one_cpu_rate: f64, serial: f64, cpus: usize) -> f64 {
    one_cpu_rate / (serial + (1.0 - serial) / cpus.max(1) as f64)
}

#[cfg(target_os = "none")]
pub use kernel::run;

#[cfg(target_os = "none")]
mod kernel {
    use alloc::format;
    use alloc::string::{String, ToString};
    use alloc::sync::Arc;
    use alloc::vec::Vec;

    use super::super::kernel::{Line, Scale};
    use super::{MixReport, Work, amdahl, together};
    use crate::arch::{counter, counter_frequency};
    use crate::errno::Errno;
    use crate::proc::console::{Capture, files_writing_to};
    use crate::proc::run;
    use crate::proc::tree::ExitStatus;
    use crate::task::{CpuMask, Pid};

    /// The kernel shares measured, in percent.
    /// 10% as in the classic arithmetic, 50% for the second chart, 90% as the heaviest: there
    /// Amdahl allows the big lock only 1.05x on 2 CPUs, so the strategies part widest.
    const KERNEL_SHARES: [u64; 3] = [10, 50, 90];
    /// How long the one-CPU run lasts, in milliseconds of guest time (`benchquick`: /20).
    const ONE_CPU_MS: u64 = 500;
    /// The directory every copy makes its files in: one directory, shared, as /tmp is.
    const DIR: &str = "/mix";
    /// Runs per CPU count; the fastest is reported.
    const RUNS: usize = 2;

    /// The lock waits of a run: every class's from the lock statistics when the kernel is
    /// built with them (`make bench LOCKSTAT=1`), else the big locks' own wait counters, which
    /// every kernel keeps (they read the clock only when a big lock is found held).
    mod lock_statistics {
        use core::sync::atomic::{AtomicU64, Ordering};

        use crate::sync::lockstat;

        static BIG_LOCK_WAIT_AT_RESET: AtomicU64 = AtomicU64::new(0);

        pub fn reset() {
            lockstat::reset();
            let (_, _, waited) = crate::proc::locking::big_lock_totals();
            BIG_LOCK_WAIT_AT_RESET.store(waited, Ordering::Relaxed);
        }

        /// Total time spent waiting for locks since `reset`, in ns.
        pub fn total_wait_ns() -> Option<u64> {
            if lockstat::ENABLED {
                return Some(lockstat::snapshot().iter().map(|c| c.wait_total_ns).sum());
            }
            let (_, _, waited) = crate::proc::locking::big_lock_totals();
            let ticks = waited.saturating_sub(BIG_LOCK_WAIT_AT_RESET.load(Ordering::Relaxed));
            let hz = crate::arch::counter_frequency().max(1);
            Some((ticks as u128 * 1_000_000_000 / hz as u128) as u64)
        }

        /// The most contended classes, one `bench suite=lockstat` line each.
        pub fn print_top(prefix_fields: &str, top: usize) {
            if lockstat::ENABLED {
                lockstat::print_bench_lines(prefix_fields, top);
            }
        }
    }

    pub fn run(scale: Scale) -> usize {
        let cpus: Vec<usize> = crate::smp::online_cpus().collect();
        let dir = match crate::fs::mkdir(DIR) {
            Ok(()) | Err(Errno::EEXIST) => DIR,
            Err(e) => {
                log::warn!(target: "bench", "bkl: cannot make {DIR} ({e}); files go in /");
                ""
            }
        };
        let given = scale
            .bootargs
            .split_ascii_whitespace()
            .find_map(|arg| arg.strip_prefix("bklwork="))
            .map(super::parse_work);
        let given = match given {
            None => Vec::new(),
            Some(Ok(work)) => work,
            Some(Err(why)) => {
                log::warn!(target: "bench", "bkl: bklwork: {why}; every share calibrates itself");
                Vec::new()
            }
        };
        let mut lines = 0;
        for pct in KERNEL_SHARES {
            let work = given.iter().find(|w| w.kernel_pct == pct).copied();
            match one_share(pct, work, &cpus, dir, scale) {
                Ok(printed) => lines += printed,
                Err(why) => log::error!(target: "bench", "bkl: kernel share {pct}%: {why}"),
            }
        }
        lines
    }

    /// The runs for one kernel share, k = 1..=all CPUs; returns how many lines it printed.
    /// Without `work` given, the first copy calibrates itself and the rest do what it did.
    fn one_share(
        pct: u64,
        mut work: Option<Work>,
        cpus: &[usize],
        dir: &str,
        scale: Scale,
    ) -> Result<usize, String> {
        let strategy = crate::proc::locking::strategy().name();
        let hz = counter_frequency();
        let mut one_cpu: Option<(f64, f64)> = None;
        let mut printed = 0;
        for k in 1..=cpus.len() {
            // The fastest of the runs, with its lock statistics (reset before each run).
            let mut best: Option<(f64, super::Together, Option<u64>)> = None;
            for _ in 0..RUNS {
                let mut args = Vec::from(["--kernel-pct".to_string(), pct.to_string()]);
                match work {
                    None => args.extend(["--ms".to_string(), scale.of(ONE_CPU_MS).to_string()]),
                    Some(w) => args.extend([
                        "--ops".to_string(),
                        w.ops.to_string(),
                        "--user-iters".to_string(),
                        w.user_iters.to_string(),
                    ]),
                }
                args.extend(["--dir".to_string(), dir.to_string()]);
                lock_statistics::reset();
                let reports = run_copies(&cpus[..k], &args)?;
                let first = reports[0];
                work.get_or_insert(Work {
                    kernel_pct: pct,
                    ops: first.ops,
                    user_iters: first.user_iters,
                });
                let run = together(&reports);
                let rate = super::super::stats::per_second(run.ops, run.ticks, hz);
                if best.is_none_or(|(fastest, _, _)| rate > fastest) {
                    best = Some((rate, run, lock_statistics::total_wait_ns()));
                }
            }
            let Some((rate, run, lock_wait)) = best else {
                break;
            };
            let work = work.expect("set by the first run");
            let (rate_1, share_1) = *one_cpu.get_or_insert((rate, run.kernel_share));
            let mut line = Line::new("bkl")
                .field("strategy", strategy)
                .field("kernel_pct", pct)
                .field("cpus", k)
                .field("ops", run.ops)
                .field("user_iters", work.user_iters)
                .field("runs", RUNS)
                .field("ticks", run.ticks)
                .field("ops_per_sec", format_args!("{rate:.1}"))
                .field("kernel_share", format_args!("{:.3}", run.kernel_share))
                .field("kernel_share_1cpu", format_args!("{share_1:.3}"))
                .field(
                    "amdahl_ops_per_sec",
                    format_args!("{:.1}", amdahl(rate_1, share_1, k)),
                );
            if let Some(wait) = lock_wait {
                line = line.field("lock_wait_ns", wait);
            }
            line.emit();
            // The classes of the last run, not necessarily the fastest one's.
            let prefix = format!("strategy={strategy} kernel_pct={pct} cpus={k}");
            lock_statistics::print_top(&prefix, 5);
            printed += 1;
        }
        Ok(printed)
    }

    /// Start one `mix` with `args` pinned to each of `cpus`, all told to begin at the same
    /// moment, and wait for every one; their reports, or why the run failed.
    fn run_copies(cpus: &[usize], args: &[String]) -> Result<Vec<MixReport>, String> {
        // Starting a copy takes a few milliseconds of guest time; they all begin after the
        // last one could have started.
        let hz = counter_frequency();
        let start_at = counter() + hz / 50 + cpus.len() as u64 * hz / 100;
        let mut started: Vec<(usize, Pid, Arc<Capture>)> = Vec::new();
        let mut failure = None;
        for &cpu in cpus {
            let mut argv = Vec::from(["mix".to_string()]);
            argv.extend(args.iter().cloned());
            argv.extend(["--start-at".to_string(), start_at.to_string()]);
            let out = Arc::new(Capture::new());
            match run::spawn_with_files(
                "mix",
                argv,
                CpuMask::only(cpu),
                files_writing_to(out.clone()),
            ) {
                Ok(pid) => started.push((cpu, pid, out)),
                Err(e) => {
                    failure = Some(format!("cannot start mix on cpu {cpu}: {e}"));
                    break;
                }
            }
        }
        let mut reports = Vec::with_capacity(started.len());
        for (cpu, pid, out) in started {
            let ended = run::wait_kernel_child(pid, || false);
            let text = out.text();
            let report = match (ended, MixReport::parse(&text)) {
                (Ok(ExitStatus::Exited(0)), Some(report)) => report,
                (ended, _) => {
                    failure.get_or_insert(format!("mix on cpu {cpu} ended {ended:?}: {text:?}"));
                    continue;
                }
            };
            if report.cpu != cpu as i64 {
                failure.get_or_insert(format!(
                    "mix pinned to cpu {cpu} reports cpu {}: {text:?}",
                    report.cpu
                ));
            }
            reports.push(report);
        }
        match failure {
            Some(why) => Err(why),
            None => Ok(reports),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "mix: pid=7 cpu=1 kernel_pct=50 ops=40 user_iters=1234 hz=62500000 \
        start=1000 end=5000 ticks=4000 kernel_ticks=1800 user_ticks=2000 kernel_share=0.474\n";

    #[test]
    fn a_mix_line_parses_to_its_fields() {
        let r = MixReport::parse(&format!("something else\n{LINE}")).unwrap();
        assert_eq!(
            r,
            MixReport {
                cpu: 1,
                ops: 40,
                user_iters: 1234,
                start: 1000,
                end: 5000,
                kernel_ticks: 1800,
                user_ticks: 2000,
            }
        );
        assert_eq!(MixReport::parse("mix 3: FAILED\n"), None);
        assert_eq!(MixReport::parse(&LINE.replace("end=5000 ", "")), None);
        // `ops` must not be taken from `user_ops=` or similar.
        assert_eq!(MixReport::parse(&LINE.replace(" ops=40", " xops=40")), None);
    }

    #[test]
    fn copies_together_span_first_start_to_last_end() {
        let a = MixReport::parse(LINE).unwrap();
        let b = MixReport {
            start: 1500,
            end: 7000,
            kernel_ticks: 4200,
            user_ticks: 2000,
            ..a
        };
        let t = together(&[a, b]);
        assert_eq!(t.ops, 80);
        assert_eq!(t.ticks, 6000);
        assert!((t.kernel_share - 6000.0 / 10000.0).abs() < 1e-12);
    }

    #[test]
    fn bklwork_parses_each_share_and_refuses_what_is_not_three_numbers() {
        assert_eq!(
            parse_work("10:193:2770,50:621:100").unwrap(),
            [
                Work {
                    kernel_pct: 10,
                    ops: 193,
                    user_iters: 2770
                },
                Work {
                    kernel_pct: 50,
                    ops: 621,
                    user_iters: 100
                }
            ]
        );
        for bad in [
            "",
            "10:193",
            "10:193:2770:5",
            "10:x:2770",
            "10:0:2770",
            "10:193:2770,",
        ] {
            assert!(parse_work(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn amdahl_is_linear_with_no_serial_part_and_flat_with_all_of_it() {
        assert_eq!(amdahl(100.0, 0.0, 4), 400.0);
        assert_eq!(amdahl(100.0, 1.0, 4), 100.0);
        assert!((amdahl(100.0, 0.5, 2) - 400.0 / 3.0).abs() < 1e-9);
        assert_eq!(amdahl(100.0, 0.5, 1), 100.0);
    }
}
