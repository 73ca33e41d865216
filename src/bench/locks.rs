//! Lock benchmarks (chapter 7): the cost of an uncontended acquire+release, and throughput and
//! fairness when 1..N CPUs fight over one lock.

use core::fmt::Write;

use super::kernel::{Deadline, Line, Scale, on_cpus};
use super::stats;
use crate::arch::{counter, counter_frequency};
use crate::logger::LineBuffer;
use crate::smp;
use crate::sync::RwLock;
use crate::sync::preempt;
use crate::sync::spinlock::{McsLock, RawSpinLock, SpinLock, TasLock, TicketLock, TtasLock};

/// Acquire+release rounds in one uncontended measurement: short (about half a millisecond),
/// so that some measurements fit between two of the host's scheduling decisions.
const UNCONTENDED_ROUNDS: u64 = 20_000;
/// Measurements per lock; the fastest counts, because interference only ever adds time.
const UNCONTENDED_REPEATS: usize = 31;
/// How long one contended run lasts, in milliseconds of guest time. Runs are timed, like
/// locktorture's, not counted: under QEMU a FIFO lock can hand over to a waiter whose vCPU the
/// host has descheduled, and then every CPU waits a host time slice. A counted run would take
/// minutes; a timed one measures exactly that collapse, in a bounded time.
const CONTENDED_MILLISECONDS: u64 = 500;
/// An upper bound on acquisitions in one run, so a run ends even if the counter stood still.
const CONTENDED_BUDGET: u64 = 100_000_000;
/// The deadline is read from the counter once per this many acquisitions: reading it is
/// slower than an uncontended lock under QEMU.
const DEADLINE_CHECK_EVERY: u64 = 16;

/// What the lock protects: how many acquisitions are left to spend, and how many were spent.
pub struct Shared {
    left: u64,
    done: u64,
}

/// The operations a benchmark needs, so spin's locks and quartet's run the same code.
trait BenchLock: Sync {
    fn with_budget(budget: u64) -> Self;
    /// Lock; if budget is left, spend one unit; unlock. False when the budget is gone.
    fn take_one(&self) -> bool;
    /// Lock, count, unlock.
    fn round(&self);
    fn spent(&self) -> u64;
}

macro_rules! bench_lock {
    ($ty:ty, $lock:ident) => {
        impl BenchLock for $ty {
            fn with_budget(budget: u64) -> Self {
                <$ty>::new(Shared {
                    left: budget,
                    done: 0,
                })
            }
            fn take_one(&self) -> bool {
                let mut shared = self.$lock();
                if shared.left == 0 {
                    return false;
                }
                shared.left -= 1;
                shared.done += 1;
                true
            }
            fn round(&self) {
                self.$lock().done += 1;
            }
            fn spent(&self) -> u64 {
                self.$lock().done
            }
        }
    };
}

bench_lock!(SpinLock<Shared, TasLock>, lock);
bench_lock!(SpinLock<Shared, TtasLock>, lock);
bench_lock!(SpinLock<Shared, TicketLock>, lock);
bench_lock!(SpinLock<Shared, McsLock>, lock);
bench_lock!(RwLock<Shared>, write);
bench_lock!(spin::mutex::SpinMutex<Shared>, lock);
bench_lock!(spin::mutex::TicketMutex<Shared>, lock);

/// The kernel's `SpinLock` does two things beyond its raw algorithm: it disables preemption
/// while held (chapter 16) and records its holder for the validator's reports. spin's locks do
/// neither. Two extra uncontended rows keep the comparison like for like: quartet's raw ticket
/// algorithm against spin's, and spin's ticket lock with preemption disabled around it (what a
/// preemptive kernel must do to use it) against quartet's `SpinLock`.
pub struct RawTicket {
    raw: TicketLock,
    data: core::cell::UnsafeCell<Shared>,
}

// SAFETY: `data` is only reached through `RawTicketGuard`, which exists only while `raw` is held.
unsafe impl Sync for RawTicket {}

pub struct RawTicketGuard<'a>(&'a RawTicket);

impl RawTicket {
    fn new(data: Shared) -> Self {
        RawTicket {
            raw: <TicketLock as RawSpinLock>::UNLOCKED,
            data: core::cell::UnsafeCell::new(data),
        }
    }

    fn lock(&self) -> RawTicketGuard<'_> {
        self.raw.lock();
        RawTicketGuard(self)
    }
}

impl core::ops::Deref for RawTicketGuard<'_> {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        // SAFETY: the guard exists only while the raw lock is held.
        unsafe { &*self.0.data.get() }
    }
}

impl core::ops::DerefMut for RawTicketGuard<'_> {
    fn deref_mut(&mut self) -> &mut Shared {
        // SAFETY: as above, and the guard is not shared.
        unsafe { &mut *self.0.data.get() }
    }
}

impl Drop for RawTicketGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard is the proof that the lock is held.
        unsafe { self.0.raw.unlock() };
    }
}

/// spin's ticket lock with preemption disabled while held.
pub struct PreemptingSpinTicket(spin::mutex::TicketMutex<Shared>);

pub struct PreemptingGuard<'a>(core::mem::ManuallyDrop<spin::mutex::TicketMutexGuard<'a, Shared>>);

impl PreemptingSpinTicket {
    fn new(data: Shared) -> Self {
        PreemptingSpinTicket(spin::mutex::TicketMutex::new(data))
    }

    // Inlined like SpinLock's lock, so the row compares the locks and not a call: with the
    // preempt count a compiler barrier, LLVM stopped inlining this on its own.
    #[inline(always)]
    fn lock(&self) -> PreemptingGuard<'_> {
        preempt::preempt_disable();
        PreemptingGuard(core::mem::ManuallyDrop::new(self.0.lock()))
    }
}

impl core::ops::Deref for PreemptingGuard<'_> {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl core::ops::DerefMut for PreemptingGuard<'_> {
    fn deref_mut(&mut self) -> &mut Shared {
        &mut self.0
    }
}

impl Drop for PreemptingGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: dropped once, here; the field is never used again. Unlock, then let
        // preemption back in, in that order.
        unsafe { core::mem::ManuallyDrop::drop(&mut self.0) };
        preempt::preempt_enable();
    }
}

bench_lock!(RawTicket, lock);
bench_lock!(PreemptingSpinTicket, lock);

/// Every lock measured, by the name the results use. The baseline comes first.
const SPIN_TICKET: &str = "spin::TicketMutex";

struct Entry {
    name: &'static str,
    uncontended: fn(u64) -> u64,
    contended: fn(usize, u64, u64) -> Contended,
}

macro_rules! entry {
    ($name:expr, $ty:ty) => {
        Entry {
            name: $name,
            uncontended: uncontended_ticks::<$ty>,
            contended: contended_run::<$ty>,
        }
    };
}

const LOCKS: &[Entry] = &[
    entry!(SPIN_TICKET, spin::mutex::TicketMutex<Shared>),
    entry!("spin::SpinMutex", spin::mutex::SpinMutex<Shared>),
    entry!("tas", SpinLock<Shared, TasLock>),
    entry!("ttas", SpinLock<Shared, TtasLock>),
    entry!("ticket", SpinLock<Shared, TicketLock>),
    entry!("mcs", SpinLock<Shared, McsLock>),
    entry!("rwlock-write", RwLock<Shared>),
];

/// Measured uncontended only: the like-for-like rows described at `RawTicket`.
const UNCONTENDED_ONLY: &[Entry] = &[
    entry!("ticket-raw", RawTicket),
    entry!("spin::TicketMutex+preempt", PreemptingSpinTicket),
];

/// Ticks for `rounds` lock/count/unlock rounds on this CPU alone.
fn uncontended_ticks<L: BenchLock>(rounds: u64) -> u64 {
    let lock = L::with_budget(0);
    let t0 = counter();
    for _ in 0..rounds {
        core::hint::black_box(&lock).round();
    }
    let ticks = counter() - t0;
    assert_eq!(lock.spent(), rounds, "uncontended rounds lost counts");
    ticks
}

/// Uncontended cost of every lock. Repeats are interleaved across locks, so a burst of host
/// load hurts every lock's worst run alike, and each lock keeps its best.
pub fn uncontended(scale: Scale) -> usize {
    let rounds = scale.of(UNCONTENDED_ROUNDS);
    let repeats = if scale.quick { 2 } else { UNCONTENDED_REPEATS };
    let all = || LOCKS.iter().chain(UNCONTENDED_ONLY);
    let mut best = [u64::MAX; LOCKS.len() + UNCONTENDED_ONLY.len()];
    for _ in 0..repeats {
        for (entry, best) in all().zip(best.iter_mut()) {
            *best = (*best).min((entry.uncontended)(rounds));
        }
    }
    let baseline = best[0];
    let frequency = counter_frequency();
    for (entry, ticks) in all().zip(best) {
        Line::new("uncontended")
            .field("lock", entry.name)
            .field("cpus", 1)
            .field("ops", rounds)
            .field("ticks", ticks)
            .field(
                "ops_per_sec",
                format_args!("{:.0}", stats::per_second(rounds, ticks, frequency)),
            )
            .field("fairness", "1.0000")
            .field(
                "ticks_per_op",
                format_args!("{:.3}", ticks as f64 / rounds as f64),
            )
            .field(
                "ns_per_op",
                format_args!("{:.2}", stats::nanoseconds_per_op(rounds, ticks, frequency)),
            )
            .field(
                "vs_spin_ticket",
                format_args!("{:.3}", ticks as f64 / baseline.max(1) as f64),
            )
            .emit();
    }
    LOCKS.len() + UNCONTENDED_ONLY.len()
}

struct Contended {
    timed: super::kernel::Timed,
    spent: u64,
}

fn contended_run<L: BenchLock>(cpus: usize, budget: u64, duration_ticks: u64) -> Contended {
    let lock = L::with_budget(budget);
    // One deadline for all: every CPU contends over the same stretch of guest time.
    let deadline = Deadline::after(duration_ticks);
    let timed = on_cpus(cpus, &|_| {
        let mut mine = 0;
        loop {
            if mine % DEADLINE_CHECK_EVERY == 0 && deadline.passed() {
                break;
            }
            if !lock.take_one() {
                break;
            }
            mine += 1;
        }
        mine
    });
    Contended {
        spent: lock.spent(),
        timed,
    }
}

/// Every lock at 1, 2, ... all online CPUs.
pub fn contended(scale: Scale) -> usize {
    let budget = scale.of(CONTENDED_BUDGET);
    let duration_ticks = scale.of(CONTENDED_MILLISECONDS) * counter_frequency() / 1000;
    let online = smp::online_cpus().count();
    let mut lines = 0;
    for entry in LOCKS {
        for cpus in 1..=online {
            let run = (entry.contended)(cpus, budget, duration_ticks);
            let t = &run.timed;
            if run.spent != t.total_ops() || run.spent == 0 {
                // A lock that loses acquisitions has no throughput worth printing.
                log::error!(target: "bench",
                    "{} at {cpus} CPUs: {} acquisitions counted by CPUs, {} by the data",
                    entry.name, t.total_ops(), run.spent
                );
                continue;
            }
            let mut split = LineBuffer::new();
            for (slot, ops) in t.ops[..t.cpus].iter().enumerate() {
                let _ = write!(split, "{}{ops}", if slot == 0 { "" } else { "/" });
            }
            // How long each CPU was in the run: a CPU that left early shows why its count is low.
            let mut stayed = LineBuffer::new();
            for (slot, ticks) in t.cpu_ticks[..t.cpus].iter().enumerate() {
                let milliseconds = *ticks as f64 * 1000.0 / counter_frequency() as f64;
                let _ = write!(
                    stayed,
                    "{}{milliseconds:.1}",
                    if slot == 0 { "" } else { "/" }
                );
            }
            Line::new("locks")
                .field("lock", entry.name)
                .field("cpus", t.cpus)
                .field("ops", run.spent)
                .field("ticks", t.ticks)
                .field("ops_per_sec", format_args!("{:.0}", t.ops_per_second()))
                .field("fairness", format_args!("{:.4}", t.fairness_of_counts()))
                .field("max", t.max_ops())
                .field("min", t.min_ops())
                .field("per_cpu", split.as_str())
                .field("per_cpu_ms", stayed.as_str())
                .emit();
            lines += 1;
        }
    }
    lines
}
