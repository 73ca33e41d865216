//! Benchmarks: the numbers behind chapters 5, 9 and 10 (`make bench`, or `bench` in bootargs).
//!
//! Every result is one console line that starts with `bench ` and goes on with `key=value`
//! pairs, so tools/bench can turn a run into CSV files and plots without guessing. Suites:
//! - `uncontended`: one CPU takes and releases each lock many times; the cost of one
//!   acquire+release in counter ticks and nanoseconds, and its ratio to
//!   `spin::mutex::TicketMutex`, the lock a Rust developer would otherwise reach for;
//! - `locks`: 1, 2, ... all online CPUs spend a shared budget of acquisitions of one lock;
//!   throughput in acquisitions per second of guest time, and Jain's fairness index over how
//!   many each CPU got;
//! - `atomics`: every CPU adds to one shared counter (LL/SC, then LSE if the CPU has it) against
//!   every CPU adding to its own per-CPU counter with the same instruction;
//! - `ipi`: round trips of `call_function` to each other CPU, then to all at once (the IPI
//!   chapter): mean and best latency;
//! - `sched`: the cost of a context switch, and the latency of a wakeup across CPUs, from
//!   `wake` to the woken task running (chapter 16);
//! - `spinblock`: the same contended work under a spin lock and a mutex with short, medium and
//!   long hold times: throughput, and CPU time per acquisition (chapter 17);
//! - `rcu`: 1, 2, ... all online CPUs walking the process list under RCU, an rwlock's read
//!   lock and a spin lock: walks per second (chapter 18);
//! - `rcu-read`: on one CPU, the cost of the RCU read side against an unprotected walk;
//! - `syscall`: a user program's null system call, page fault, fork+exit+wait and switch
//!   between two processes, each also as a ratio to the bare trap-and-return floor (chapter 19);
//! - `bkl`: 1, 2, ... all online CPUs each running a copy of the user program `mix`, with 10%
//!   and 50% of its time in the kernel: throughput under this boot's kernel-locking strategy
//!   against Amdahl's prediction for a kernel one CPU at a time (chapter 9).
//!
//! `bench=NAME` runs the suites whose name contains NAME; `benchquick` shrinks every run
//! twentyfold (the boot tests use it to check the format, not the numbers).
//!
//! Under QEMU these are TCG's numbers, not silicon's: every vCPU is a host thread, four of them
//! share the host's cores, and a waiter whose thread is descheduled stalls a FIFO lock. The
//! ranking and the ratios are what the chapters discuss; the absolute values are not a Pi 4's.

pub mod bkl;
#[cfg(target_os = "none")]
mod ipi;
pub mod stats;

#[cfg(target_os = "none")]
mod atomics;
#[cfg(target_os = "none")]
mod locks;
#[cfg(target_os = "none")]
mod rcu;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod spinblock;
#[cfg(target_os = "none")]
mod syscall;

#[cfg(target_os = "none")]
pub use kernel::run;

#[cfg(target_os = "none")]
mod kernel {
    use core::fmt::{Display, Write};
    use core::sync::atomic::{AtomicU64, Ordering};

    use crate::arch::{counter, counter_frequency};
    use crate::config::MAX_CPUS;
    use crate::logger::LineBuffer;
    use crate::percpu::{CacheAligned, PerCpu};
    use crate::platform::Platform;
    use crate::smp::{self, StartLine};

    /// How big each run is; `benchquick` divides by `QUICK_DIVISOR`.
    #[derive(Clone, Copy)]
    pub struct Scale {
        pub quick: bool,
        /// The boot arguments, for a suite that takes settings from them (bkl's `bklwork=`).
        pub bootargs: &'static str,
    }

    const QUICK_DIVISOR: u64 = 20;

    impl Scale {
        pub fn of(&self, full: u64) -> u64 {
            if self.quick {
                (full / QUICK_DIVISOR).max(1)
            } else {
                full
            }
        }
    }

    /// One `bench ` result line, built field by field.
    pub struct Line(LineBuffer);

    impl Line {
        pub fn new(suite: &str) -> Self {
            let mut line = LineBuffer::new();
            let _ = write!(line, "bench suite={suite}");
            Line(line)
        }

        pub fn field(mut self, key: &str, value: impl Display) -> Self {
            let _ = write!(self.0, " {key}={value}");
            self
        }

        pub fn emit(mut self) {
            self.0.finish_line();
            crate::console::write_line(self.0.as_str());
        }
    }

    /// What every participating CPU did in one timed run.
    pub struct Timed {
        pub cpus: usize,
        /// From the first CPU's start to the last CPU's finish, in counter ticks.
        pub ticks: u64,
        pub ops: [u64; MAX_CPUS],
        pub cpu_ticks: [u64; MAX_CPUS],
    }

    impl Timed {
        pub fn total_ops(&self) -> u64 {
            self.ops[..self.cpus].iter().sum()
        }

        pub fn ops_per_second(&self) -> f64 {
            super::stats::per_second(self.total_ops(), self.ticks, counter_frequency())
        }

        /// Jain's index over how many operations each CPU completed.
        pub fn fairness_of_counts(&self) -> f64 {
            let mut shares = [0.0; MAX_CPUS];
            for (share, ops) in shares.iter_mut().zip(&self.ops[..self.cpus]) {
                *share = *ops as f64;
            }
            super::stats::jain_index(&shares[..self.cpus])
        }

        /// Jain's index over each CPU's own rate: for runs where every CPU does the same count.
        pub fn fairness_of_rates(&self) -> f64 {
            let mut shares = [0.0; MAX_CPUS];
            let frequency = counter_frequency();
            let per_cpu = self.ops[..self.cpus]
                .iter()
                .zip(&self.cpu_ticks[..self.cpus]);
            for (share, (ops, ticks)) in shares.iter_mut().zip(per_cpu) {
                *share = super::stats::per_second(*ops, *ticks, frequency);
            }
            super::stats::jain_index(&shares[..self.cpus])
        }

        pub fn max_ops(&self) -> u64 {
            self.ops[..self.cpus].iter().copied().max().unwrap_or(0)
        }

        pub fn min_ops(&self) -> u64 {
            self.ops[..self.cpus].iter().copied().min().unwrap_or(0)
        }
    }

    /// The end of a timed run, fixed when the first CPU crosses the start line rather than
    /// before the work is posted: posting it to the other CPUs can take longer than a quick run
    /// lasts when the host has descheduled their vCPUs, and a deadline that passed before anyone
    /// started measures nothing ("0 acquisitions").
    pub struct Deadline {
        at: AtomicU64,
        duration: u64,
    }

    impl Deadline {
        pub const fn after(duration_ticks: u64) -> Self {
            Deadline {
                at: AtomicU64::new(0),
                duration: duration_ticks,
            }
        }

        /// Whether the run is over; the first call starts the clock.
        pub fn passed(&self) -> bool {
            let now = counter();
            let mut at = self.at.load(Ordering::Relaxed);
            if at == 0 {
                let mine = now + self.duration;
                at = match self
                    .at
                    .compare_exchange(0, mine, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => mine,
                    Err(theirs) => theirs,
                };
            }
            now >= at
        }
    }

    /// Run `work(slot)` on the first `cpus` online CPUs (slot 0..cpus), all released together
    /// from a start line; `work` returns how many operations it completed.
    pub fn on_cpus(cpus: usize, work: &(dyn Fn(usize) -> u64 + Sync)) -> Timed {
        let mut ids = [usize::MAX; MAX_CPUS];
        for (slot, id) in smp::online_cpus().take(cpus).enumerate() {
            ids[slot] = id;
        }
        let cpus = cpus.min(smp::online_cpus().count());
        let started: PerCpu<AtomicU64> =
            PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
        let finished: PerCpu<AtomicU64> =
            PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
        let done: PerCpu<AtomicU64> =
            PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
        let start = StartLine::for_cpus(cpus);
        smp::on_each_cpu(&|id| {
            let Some(slot) = ids[..cpus].iter().position(|&i| i == id) else {
                return;
            };
            start.wait();
            let t0 = counter();
            let ops = work(slot);
            let t1 = counter();
            started.for_cpu(slot).store(t0, Ordering::Relaxed);
            finished.for_cpu(slot).store(t1, Ordering::Relaxed);
            done.for_cpu(slot).store(ops, Ordering::Relaxed);
        });
        let mut timed = Timed {
            cpus,
            ticks: 0,
            ops: [0; MAX_CPUS],
            cpu_ticks: [0; MAX_CPUS],
        };
        let (mut first_start, mut last_finish) = (u64::MAX, 0);
        for slot in 0..cpus {
            let t0 = started.for_cpu(slot).load(Ordering::Relaxed);
            let t1 = finished.for_cpu(slot).load(Ordering::Relaxed);
            first_start = first_start.min(t0);
            last_finish = last_finish.max(t1);
            timed.ops[slot] = done.for_cpu(slot).load(Ordering::Relaxed);
            timed.cpu_ticks[slot] = t1 - t0;
        }
        timed.ticks = last_finish.saturating_sub(first_start);
        timed
    }

    /// A suite: its name, and the function that runs it and returns how many lines it printed.
    pub struct Suite {
        pub name: &'static str,
        pub run: fn(Scale) -> usize,
    }

    const SUITES: &[Suite] = &[
        Suite {
            name: "uncontended",
            run: super::locks::uncontended,
        },
        Suite {
            name: "locks",
            run: super::locks::contended,
        },
        Suite {
            name: "atomics",
            run: super::atomics::shared_vs_percpu,
        },
        Suite {
            name: "ipi",
            run: super::ipi::round_trips,
        },
        Suite {
            name: "sched",
            run: super::sched::run,
        },
        Suite {
            name: "spinblock",
            run: super::spinblock::run,
        },
        Suite {
            name: "rcu",
            run: super::rcu::readers,
        },
        Suite {
            name: "rcu-read",
            run: super::rcu::read_side,
        },
        Suite {
            name: "syscall",
            run: super::syscall::run,
        },
        Suite {
            name: "bkl",
            run: super::bkl::run,
        },
    ];

    /// Run the suites whose name contains `filter` (all for ""); returns the result count.
    pub fn run(platform: &Platform<'static>, filter: &str) -> usize {
        let scale = Scale {
            quick: platform.has_bootarg("benchquick"),
            bootargs: platform.bootargs,
        };
        let cpus = smp::online_cpus().count();
        log::info!(target: "bench",
            "{} CPUs online, counter {} Hz{}; numbers are guest time under QEMU TCG unless on hardware",
            cpus,
            counter_frequency(),
            if scale.quick { ", quick runs (format check only)" } else { "" }
        );
        if crate::sync::spinlock::validate::active() {
            // The shell's `bench` runs in the kernel it booted, validator and all: its
            // bookkeeping on every acquire and release makes quartet's locks look tens of
            // times slower than spin's, which never consult it.
            log::warn!(target: "bench",
                "the lock validator is on and checks every lock operation, so quartet's locks measure far slower than spin's here; `make bench` boots a kernel built without it"
            );
        }
        let began = counter();
        let mut results = 0;
        let mut matched = 0;
        for suite in SUITES.iter().filter(|s| s.name.contains(filter)) {
            matched += 1;
            let lines = (suite.run)(scale);
            // tools/bench fails a run in which a suite that ran printed nothing.
            log::info!(target: "bench", "suite {}: {lines} results", suite.name);
            results += lines;
        }
        if matched == 0 {
            log::error!(target: "bench",
                "no suite name contains {filter:?}; suites are: uncontended, locks, atomics, ipi, sched, spinblock, rcu, rcu-read, syscall, bkl"
            );
        }
        let seconds = (counter() - began) as f64 / counter_frequency() as f64;
        log::info!(target: "bench", "{results} results in {seconds:.1} s");
        results
    }
}
