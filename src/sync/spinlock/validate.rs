//! Where the spin locks meet the lock validator (src/sync/lockdep/; chapter 12).
//!
//! `SpinLock` calls `before_spin` before it waits, `after_acquire` once it holds the lock, and
//! `before_release` before it lets go. They decide whether this acquisition is validated (the
//! validator is on, the CPU has its per-CPU area, and this CPU is not busy printing a report),
//! describe the context (hardirq? IRQs on?), print what the validator finds, and refuse to spin
//! on a lock this CPU already holds. A per-CPU "waiting" record lets the tick's watchdog see a
//! CPU that has spun for seconds, and say on which lock and behind whom.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::config::MAX_CPUS;
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::sync::lockdep::{self, Context, Kind, LockClass, Report, Site};

/// The validator checks locks only while this is set: from boot, unless bootargs say
/// `nolockdep` or run benchmarks (which measure the locks, not the validator), and only in
/// builds with the `lockdep` feature (the default).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// A spin longer than this is reported by the watchdog.
pub const STUCK_AFTER_MS: u64 = 2_000;

struct Printing(AtomicBool);
/// Set while this CPU prints a report: the console's own locks are then not validated, or a
/// report would validate the locks that print it, and recurse.
static PRINTING: PerCpu<Printing> =
    PerCpu::new([const { CacheAligned(Printing(AtomicBool::new(false))) }; MAX_CPUS]);

struct Waiting {
    lock: AtomicUsize,
    class: AtomicPtr<LockClass>,
    holder: AtomicUsize,
    since: AtomicU64,
    reported: AtomicBool,
    /// The watchdog is reading this record: the waiter must not return (and perhaps free the
    /// lock) until it is done.
    inspecting: AtomicBool,
}

static WAITING: PerCpu<Waiting> = PerCpu::new(
    [const {
        CacheAligned(Waiting {
            lock: AtomicUsize::new(0),
            class: AtomicPtr::new(core::ptr::null_mut()),
            holder: AtomicUsize::new(0),
            since: AtomicU64::new(0),
            reported: AtomicBool::new(false),
            inspecting: AtomicBool::new(false),
        })
    }; MAX_CPUS],
);

static REPORTS: AtomicU64 = AtomicU64::new(0);
static LAST_KIND: AtomicUsize = AtomicUsize::new(0);

/// Kinds of report, as counted for tests and the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum ReportKind {
    None = 0,
    InconsistentIrqUsage = 1,
    RecursiveLocking = 2,
    LockOrderCycle = 3,
    Stuck = 4,
    Other = 5,
}

fn kind_of(report: &Report) -> ReportKind {
    match report {
        Report::InconsistentIrqUsage { .. } => ReportKind::InconsistentIrqUsage,
        Report::RecursiveLocking { .. } => ReportKind::RecursiveLocking,
        Report::LockOrderCycle { .. } => ReportKind::LockOrderCycle,
        Report::Stuck { .. } => ReportKind::Stuck,
        _ => ReportKind::Other,
    }
}

pub fn set_active(on: bool) {
    ACTIVE.store(on, Ordering::Release);
}

/// Whether locks consult the validator now. Without the `lockdep` feature this is a constant
/// `false` and the validator's calls vanish from the locks: under TCG even one load and branch
/// per lock is measurable (`make bench` builds that way).
#[inline(always)]
pub fn active() -> bool {
    lockdep::ENABLED && ACTIVE.load(Ordering::Relaxed)
}

/// Reports printed so far, and the kind of the last one.
pub fn reports() -> (u64, ReportKind) {
    let kind = match LAST_KIND.load(Ordering::Relaxed) {
        1 => ReportKind::InconsistentIrqUsage,
        2 => ReportKind::RecursiveLocking,
        3 => ReportKind::LockOrderCycle,
        4 => ReportKind::Stuck,
        5 => ReportKind::Other,
        _ => ReportKind::None,
    };
    (REPORTS.load(Ordering::Relaxed), kind)
}

/// A report, line by line, through the log. Lines longer than a log line are cut.
fn print(cpu: usize, report: &Report) {
    let printing = &PRINTING.for_cpu(cpu).0;
    printing.store(true, Ordering::Relaxed);
    struct Lines;
    impl Write for Lines {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for line in s.split('\n').filter(|l| !l.is_empty()) {
                log::error!(target: "lockdep", "{line}");
            }
            Ok(())
        }
    }
    // `Display` writes a report in pieces; gather each line before logging it. The log line
    // already says `lockdep:`, so the report's own prefix on its first line is dropped.
    struct Gather {
        line: crate::logger::LineBuffer,
        first: bool,
    }
    impl Gather {
        fn emit(&mut self) {
            let text = self.line.as_str();
            let text = if self.first {
                text.strip_prefix("lockdep: ").unwrap_or(text)
            } else {
                text
            };
            let _ = Lines.write_str(text);
            self.first = false;
            self.line = crate::logger::LineBuffer::new();
        }
    }
    impl Write for Gather {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let mut rest = s;
            while let Some(newline) = rest.find('\n') {
                let _ = self.line.write_str(&rest[..newline]);
                self.emit();
                rest = &rest[newline + 1..];
            }
            let _ = self.line.write_str(rest);
            Ok(())
        }
    }
    let mut gather = Gather {
        line: crate::logger::LineBuffer::new(),
        first: true,
    };
    let _ = write!(gather, "{report}");
    gather.emit();
    REPORTS.fetch_add(1, Ordering::Relaxed);
    LAST_KIND.store(kind_of(report) as usize, Ordering::Relaxed);
    printing.store(false, Ordering::Relaxed);
}

/// The CPU to validate on, if this acquisition is validated at all.
fn validating_cpu() -> Option<usize> {
    if !active() {
        return None;
    }
    let cpu = percpu::current_id()?;
    (!PRINTING.for_cpu(cpu).0.load(Ordering::Relaxed)).then_some(cpu)
}

fn context() -> Context {
    Context {
        in_hardirq: crate::sync::preempt::in_irq(),
        irqs_enabled: !crate::arch::irqflags::irqs_disabled(),
    }
}

/// What `before_spin` decided.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Spin {
    /// Not validated at all.
    Untracked,
    /// Validated; the watchdog already watches an outer wait on this CPU (this acquisition is
    /// in an interrupt that arrived while the CPU was spinning), so it does not watch this one.
    Tracked,
    /// Validated and watched by the watchdog.
    Watched,
}

impl Spin {
    pub fn tracked(self) -> bool {
        self != Spin::Untracked
    }
}

/// Before spinning on `lock`: validate, and never return for a lock this CPU already holds
/// (that spin would never end).
pub fn before_spin(class: &LockClass, lock: usize, holder: usize, site: Site) -> Spin {
    let Some(cpu) = validating_cpu() else {
        return Spin::Untracked;
    };
    if let Some(report) = lockdep::acquire(class, lock, cpu, context(), Kind::Spin, site) {
        print(cpu, &report);
        if report.is_fatal() {
            panic!("lockdep: cpu{cpu} would spin forever on a lock it holds (report above)");
        }
    }
    let w = WAITING.for_cpu(cpu);
    if w.lock.load(Ordering::Relaxed) != 0 {
        // An interrupt handler taking a lock while this CPU's thread spins on another (the
        // tick's RCU work, say): keep the record of the outer wait, the one that can last
        // seconds. Overwriting it, and clearing it after this short wait, blinded the watchdog.
        return Spin::Tracked;
    }
    w.class.store(
        class as *const LockClass as *mut LockClass,
        Ordering::Relaxed,
    );
    w.holder.store(holder, Ordering::Relaxed);
    w.since.store(crate::arch::counter(), Ordering::Relaxed);
    w.reported.store(false, Ordering::Relaxed);
    w.lock.store(lock, Ordering::Release);
    Spin::Watched
}

/// The lock was taken when we wanted it: count it for the class's statistics.
pub fn contended(class: &LockClass) {
    lockdep::note_contended(class);
}

/// The spin is over (the lock is ours).
pub fn after_spin(spin: Spin) {
    if spin == Spin::Watched
        && let Some(cpu) = percpu::current_id()
    {
        let w = WAITING.for_cpu(cpu);
        // SeqCst pairs with the watchdog's: either it sees the wait is over and leaves the
        // record alone, or we see it inspecting and wait until it has finished with our lock.
        w.lock.store(0, Ordering::SeqCst);
        while w.inspecting.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
    }
}

/// A successful `try_lock`: record it (never fatal: it did not spin).
pub fn after_try_lock(class: &LockClass, lock: usize, site: Site) -> bool {
    let Some(cpu) = validating_cpu() else {
        return false;
    };
    if let Some(report) = lockdep::acquire(class, lock, cpu, context(), Kind::Try, site) {
        print(cpu, &report);
    }
    true
}

/// Before the raw unlock of a tracked acquisition.
#[cold]
pub fn before_release(class: &LockClass, lock: usize) {
    if let Some(cpu) = percpu::current_id()
        && let Some(report) = lockdep::release(class, lock, cpu)
        && !PRINTING.for_cpu(cpu).0.load(Ordering::Relaxed)
    {
        print(cpu, &report);
    }
}

/// Set while some CPU runs the watchdog: one inspector at a time (see `Waiting::inspecting`).
static WATCHDOG_RUNNING: AtomicBool = AtomicBool::new(false);

/// The watchdog, run from every CPU's tick; whichever CPU gets there first scans, the others
/// skip. Every tick can run it, so a CPU spinning with IRQs masked (whose own tick cannot
/// arrive) is still seen by the others. Reports every CPU that has spun on one lock for longer
/// than `STUCK_AFTER_MS`, once per wait.
pub fn watchdog() {
    if !active() || WATCHDOG_RUNNING.swap(true, Ordering::Acquire) {
        return;
    }
    scan_for_stuck_spins();
    WATCHDOG_RUNNING.store(false, Ordering::Release);
}

fn scan_for_stuck_spins() {
    let now = crate::arch::counter();
    let per_ms = (crate::arch::counter_frequency() / 1000).max(1);
    // Only online CPUs spin on locks: a walk of the online mask, not of every slot.
    for cpu in percpu::online_mask() {
        let w = WAITING.for_cpu(cpu);
        let lock = w.lock.load(Ordering::Acquire);
        if lock == 0 || w.reported.load(Ordering::Relaxed) {
            continue;
        }
        let waited_ms = now.saturating_sub(w.since.load(Ordering::Relaxed)) / per_ms;
        if waited_ms < STUCK_AFTER_MS || w.reported.swap(true, Ordering::Relaxed) {
            continue;
        }
        w.inspecting.store(true, Ordering::SeqCst);
        let class = w.class.load(Ordering::Relaxed);
        if w.lock.load(Ordering::SeqCst) == lock && !class.is_null() {
            // SAFETY: `class` is the LockClass inside the lock `cpu` is still spinning on (the
            // re-check above, after announcing `inspecting`). The waiter cannot leave `lock()`,
            // so the lock cannot go away, until `inspecting` is cleared below.
            let class = unsafe { &*class };
            let owner = percpu::id_of_pointer(w.holder.load(Ordering::Relaxed));
            if let Some(report) = lockdep::stuck_report(class, lock, cpu, waited_ms, owner)
                && let Some(me) = percpu::current_id()
            {
                print(me, &report);
            }
        }
        w.inspecting.store(false, Ordering::SeqCst);
    }
}
