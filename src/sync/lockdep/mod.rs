//! The lock validator ("lockdep-lite"): catches lock-order inversions, IRQ-unsafe lock use and
//! recursive locking the first time the code does them, long before they deadlock (chapter 12,
//! "The lock validator").
//!
//! A deadlock between two locks needs two CPUs to hit a window of a few instructions at the same
//! moment, so it may show up once a month. The *ingredients* of that deadlock show up every time
//! the code runs: "this CPU took B while holding A" is a fact about the program, not about
//! timing. The validator records those facts per *lock class* (all locks made by one line of
//! code behave alike) and checks each new fact against the ones it has already seen:
//!
//! - **Lock order.** Taking B while holding A adds the edge A -> B to a dependency graph over
//!   classes. When a new edge closes a cycle (A -> B and later B -> A, or A -> B -> C -> A), some
//!   interleaving of those code paths deadlocks. The cycle is found by a breadth-first search
//!   over the recorded edges, on the first acquisition that creates it, and reported with the
//!   sites that created every edge.
//! - **IRQ safety.** A class taken in hardirq context is *IRQ-safe*, one taken with IRQs enabled
//!   is *IRQ-unsafe*. A class that is both can deadlock on one CPU: the interrupt spins on a lock
//!   the code it interrupted holds. Reported once per class with the site of each usage.
//! - **Recursion.** Taking a lock this CPU already holds can only spin forever. `acquire` is
//!   called *before* the lock spins, so it returns a fatal report instead of hanging.
//! - **Stuck spins.** `holder` says where the holding CPU took a lock; `stuck_report`
//!   turns that into "cpu2 spinning for 1500 ms on `console` held by cpu1 since ...".
//!
//!
//! # No locks, no heap
//! The validator runs inside lock acquisition, so it cannot take a lock itself (that lock would
//! be validated too, and recurse). Everything is fixed-size tables of atomics: `MAX_CLASSES`
//! classes, a `MAX_CLASSES` x `MAX_CLASSES` edge matrix (bitsets, plus the sites of each edge),
//! and per CPU a stack of up to `MAX_HELD` held locks. A CPU's stack is written only by that CPU
//! (and by interrupts on it, which finish before the interrupted code resumes), in an order that
//! lets an interrupt read it at any instruction: an entry is marked invalid while it changes.
//! Other CPUs read it only for diagnostics (`holder`).
//!
//! # Once, then quiet
//! The first warning turns the warnings off for the whole system, as Linux does: one bug tends
//! to trigger a cascade of follow-on reports, and the first is the one worth reading. `rearm`
//! turns them back on (the in-kernel demos provoke one bug each). Each finding is in any case
//! reported once: an IRQ conflict once per class, a cycle once per closing edge, a full table
//! once. Recursion is fatal, not a warning: it is checked and returned even when warnings are
//! off, because it is what saves the kernel from a silent hang.
//!
//! # Using it from a lock (the integration)
//! ```text
//! lock():
//!     let class = &self.class;               // a LockClass built in #[track_caller] new()
//!     let key = self as *const _ as usize;   // the lock instance
//!     if let Some(cpu) = percpu::current_id() {
//!         let ctx = Context { in_hardirq: <irq nesting > 0>, irqs_enabled: <DAIF.I clear> };
//!         if let Some(r) = lockdep::acquire(class, key, cpu, ctx, Kind::Spin, Location::caller()) {
//!             print r line by line;
//!             if r.is_fatal() { panic!("lockdep: recursive locking") }   // never spin
//!         }
//!     }
//!     spin; if it took a long time: lockdep::note_contended(class);
//!           past the sane limit: print lockdep::stuck_report(class, key, cpu, waited_ms,
//!                                        percpu::id_of_pointer(self.holder))
//! try_lock(): after a *successful* raw try_lock, acquire(.., Kind::Try, ..) (never fatal).
//! unlock (guard drop): lockdep::release(class, key, cpu) *before* the raw unlock.
//! shell `locks`: print lockdep::SUMMARY_HEADER, then every lockdep::classes() item.
//! ```
//! All the free functions are no-ops returning `None` when `ENABLED` is false, so the lock may
//! call them unconditionally. Call them only once the CPU has an id (`percpu::current_id()`), and
//! release a lock on the CPU that took it.
//!
//! # The files
//! - this one: the validator's state (`Lockdep`), the hot path (`acquire`: one acquisition,
//!   step by step), the "once, then quiet" switch, and the kernel's validator with the calls
//!   the locks make;
//! - `class`: lock classes, their keys, IRQ usage and counters, and the `locks` table;
//! - `graph`: the lock-order graph and the search for a cycle;
//! - `held`: each CPU's held-lock stack, `release`, and who holds what;
//! - `report`: what the validator reports, and how each report reads;
//! - `tests`: the host tests, each finding provoked on a validator of its own.

mod class;
mod graph;
mod held;
mod report;
#[cfg(all(test, not(loom)))]
mod tests;

use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

pub use class::{ClassInfo, ClassStats, LockClass, SUMMARY_HEADER};
use class::{ClassSlot, USED_IN_HARDIRQ, USED_WITH_IRQS_ON};
pub use graph::Edge;
use graph::EdgeSlot;
use held::CpuHeld;
pub use held::Held;
pub use report::{Report, Usage};

use crate::config::MAX_CPUS;
use crate::cpumask::{AtomicCpuMask, CpuMask};

/// Whether the validator is built at all: the `lockdep` feature, on by default and off in the
/// benchmark kernel. Whether the kernel's locks consult it is then decided at boot
/// (src/sync/spinlock/validate.rs: on unless bootargs say `nolockdep` or `bench`).
pub const ENABLED: bool = cfg!(feature = "lockdep");

/// Lock classes the table holds. The edge sets are `u64` bitsets, so at most 64.
pub const MAX_CLASSES: usize = 64;
/// Locks one CPU may hold at once before the validator stops tracking more.
pub const MAX_HELD: usize = 16;
/// Edges a cycle report lists; longer cycles are shortened with a count.
pub const MAX_REPORT_EDGES: usize = 8;

const _: () = assert!(MAX_CLASSES <= 64 && MAX_CLASSES < u16::MAX as usize);
const _: () = assert!(MAX_CPUS <= u8::MAX as usize);

/// Where a lock was taken or defined: a `#[track_caller]` location.
pub type Site = &'static Location<'static>;

/// What the acquiring CPU is doing: the interrupt code knows, the validator only records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// Running a hardware interrupt handler.
    pub in_hardirq: bool,
    /// IRQs are unmasked on this CPU right now (DAIF.I clear).
    pub irqs_enabled: bool,
}

impl Context {
    /// Ordinary kernel code with IRQs on.
    pub const TASK: Context = Context {
        in_hardirq: false,
        irqs_enabled: true,
    };
    /// Ordinary kernel code with IRQs masked (an IRQ-saving lock, or early boot).
    pub const TASK_IRQS_OFF: Context = Context {
        in_hardirq: false,
        irqs_enabled: false,
    };
    /// An interrupt handler (IRQs masked, as the exception entry leaves them).
    pub const HARDIRQ: Context = Context {
        in_hardirq: true,
        irqs_enabled: false,
    };
}

/// How the lock is being taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A lock that will wait: call `acquire` before spinning.
    Spin,
    /// A `try_lock` that succeeded: call `acquire` after it. It never waited, so it adds no
    /// edge towards itself and cannot be recursion; locks taken while it is held still depend
    /// on it.
    Try,
}

// Storage is atomics only: sites are kept as pointers to their `&'static Location`.

fn site_ptr(site: Site) -> *mut Location<'static> {
    (site as *const Location<'static>).cast_mut()
}

fn load_site(p: &AtomicPtr<Location<'static>>) -> Option<Site> {
    let raw = p.load(Ordering::Acquire);
    // SAFETY: these pointers are only ever null or made by `site_ptr` from a
    // `&'static Location<'static>`; nothing writes through them or frees them.
    unsafe { raw.as_ref() }
}

/// The validator's whole state. The kernel uses the one in `LOCKDEP` through the free functions;
/// tests make their own so they can run in parallel. A `LockClass` caches its id for the first
/// validator it meets, so a class must only ever be used with one validator.
pub struct Lockdep {
    classes: [ClassSlot; MAX_CLASSES],
    edges: [[EdgeSlot; MAX_CLASSES]; MAX_CLASSES],
    cpus: [CpuHeld; MAX_CPUS],
    /// CPUs that have taken a lock through this validator: the only held stacks a search by
    /// lock (`holder`) reads, so that it costs the CPUs in use, not `MAX_CPUS`.
    cpus_seen: AtomicCpuMask,
    /// Set by the first warning; `rearm` clears it. Stored inverted so that a fresh validator
    /// is all zeros, and the kernel's 100 KiB of tables sit in .bss instead of the image.
    warnings_off: AtomicBool,
    table_full_reported: AtomicBool,
    /// `LockClass`es that found the table full.
    untracked_classes: AtomicUsize,
}

impl Default for Lockdep {
    fn default() -> Self {
        Self::new()
    }
}

impl Lockdep {
    pub const fn new() -> Self {
        Lockdep {
            classes: [const { ClassSlot::new() }; MAX_CLASSES],
            edges: [const { [const { EdgeSlot::new() }; MAX_CLASSES] }; MAX_CLASSES],
            cpus: [const { CpuHeld::new() }; MAX_CPUS],
            cpus_seen: AtomicCpuMask::new(CpuMask::EMPTY),
            warnings_off: AtomicBool::new(false),
            table_full_reported: AtomicBool::new(false),
            untracked_classes: AtomicUsize::new(0),
        }
    }

    /// Claim the right to print the next warning: the first claimer turns warnings off.
    fn claim_warning(&self) -> bool {
        self.warnings_off
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// True until the first warning (and again after `rearm`).
    pub fn warnings_on(&self) -> bool {
        !self.warnings_off.load(Ordering::Relaxed)
    }

    /// Turn warnings back on after a report. Findings already reported stay reported.
    pub fn rearm(&self) {
        self.warnings_off.store(false, Ordering::Release);
    }

    // ---- the hot path: one acquisition, step by step ----

    /// Validate taking `lock` (its address) of `class` on `cpu` in `ctx`, called at `site`.
    /// For `Kind::Spin` call this *before* spinning: a fatal report (`is_fatal`) means the lock
    /// must not be waited for. Any other report is a warning; the lock may be taken. The lock is
    /// recorded as held by `cpu` unless the report is fatal.
    pub fn acquire(
        &self,
        class: &LockClass,
        lock: usize,
        cpu: usize,
        ctx: Context,
        kind: Kind,
        site: Site,
    ) -> Option<Report> {
        let Some(index) = self.class_index(class) else {
            return (!self.table_full_reported.load(Ordering::Relaxed)
                && self.claim_warning()
                && !self.table_full_reported.swap(true, Ordering::Relaxed))
            .then_some(Report::ClassTableFull {
                name: class.name,
                defined_at: class.defined_at,
            });
        };
        let me = self.cpus.get(cpu)?;
        // A load first: after a CPU's first lock this is a read of a line nobody writes.
        if !self.cpus_seen.contains(cpu, Ordering::Relaxed) {
            self.cpus_seen.set(cpu, Ordering::Relaxed);
        }
        let id = index as u16 + 1;
        let slot = &self.classes[index];
        slot.acquired.fetch_add(1, Ordering::Relaxed);

        // Recursion first: it is fatal, so nothing else matters.
        let depth = me.depth.load(Ordering::Acquire).min(MAX_HELD);
        if kind == Kind::Spin {
            for h in &me.slots[..depth] {
                let c = h.class.load(Ordering::Acquire);
                if c != 0 && h.lock.load(Ordering::Relaxed) == lock {
                    return Some(Report::RecursiveLocking {
                        first: Held {
                            class: self.info(c as usize - 1),
                            lock,
                            site: load_site(&h.site).unwrap_or(site),
                            cpu,
                            in_hardirq: h.in_hardirq.load(Ordering::Relaxed),
                        },
                        class: self.info(index),
                        lock,
                        site,
                        cpu,
                        in_hardirq: ctx.in_hardirq,
                    });
                }
            }
        }

        let mut report = None;

        // IRQ usage.
        if ctx.in_hardirq {
            slot.mark_usage(
                USED_IN_HARDIRQ,
                &slot.hardirq_site,
                &slot.hardirq_cpu,
                site,
                cpu,
            );
        }
        if ctx.irqs_enabled {
            slot.mark_usage(
                USED_WITH_IRQS_ON,
                &slot.irqs_on_site,
                &slot.irqs_on_cpu,
                site,
                cpu,
            );
        }
        if slot.usage.load(Ordering::Acquire) == USED_IN_HARDIRQ | USED_WITH_IRQS_ON
            && !slot.irq_reported.load(Ordering::Relaxed)
            && self.claim_warning()
        {
            if slot.irq_reported.swap(true, Ordering::Relaxed) {
                self.rearm(); // somebody reported it already: give the claim back
            } else {
                report = self.irq_report(index, cpu);
            }
        }

        // Lock order: an edge from every lock this CPU holds. A try-lock never waited, so
        // nothing it was taken under can deadlock on it.
        if kind == Kind::Spin {
            for h in &me.slots[..depth] {
                let c = h.class.load(Ordering::Acquire);
                if c == 0 || c == id {
                    continue;
                }
                let from = c as usize - 1;
                if self.classes[from].after.load(Ordering::Relaxed) & (1 << index) != 0 {
                    continue; // known edge: the common case costs one load
                }
                let held_since = h.site.load(Ordering::Relaxed);
                if let Some(cycle) = self.add_edge(from, index, cpu, held_since, site)
                    && report.is_none()
                {
                    report = Some(cycle);
                }
            }
        }

        // Record it as held.
        if depth >= MAX_HELD {
            me.untracked.fetch_add(1, Ordering::Relaxed);
            if report.is_none() && self.claim_warning() {
                report = Some(Report::HeldStackOverflow {
                    cpu,
                    class: self.info(index),
                    site,
                });
            }
        } else {
            // Invalidate first, then publish the depth: an interrupt that arrives in between
            // pushes onto the same entry, pops it, and leaves the depth as it found it.
            me.slots[depth].class.store(0, Ordering::Relaxed);
            me.depth.store(depth + 1, Ordering::Release);
            me.slots[depth].write(id, lock, site_ptr(site), ctx.in_hardirq);
        }
        report
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel's validator and the calls the locks make.

/// The one validator the kernel's locks report to.
pub static LOCKDEP: Lockdep = Lockdep::new();

/// `LOCKDEP.acquire`, or nothing when the validator is compiled out.
pub fn acquire(
    class: &LockClass,
    lock: usize,
    cpu: usize,
    ctx: Context,
    kind: Kind,
    site: Site,
) -> Option<Report> {
    if !ENABLED {
        return None;
    }
    LOCKDEP.acquire(class, lock, cpu, ctx, kind, site)
}

/// `LOCKDEP.release`, or nothing when the validator is compiled out.
pub fn release(class: &LockClass, lock: usize, cpu: usize) -> Option<Report> {
    if !ENABLED {
        return None;
    }
    LOCKDEP.release(class, lock, cpu)
}

/// `LOCKDEP.note_contended`, or nothing when the validator is compiled out.
pub fn note_contended(class: &LockClass) {
    if ENABLED {
        LOCKDEP.note_contended(class);
    }
}

/// `LOCKDEP.stuck_report`: `cpu` has spun `waited_ms` on `lock`, which the lock says `owner`
/// holds (`percpu::id_of_pointer` of `SpinLock`'s holder field), if it knows.
pub fn stuck_report(
    class: &LockClass,
    lock: usize,
    cpu: usize,
    waited_ms: u64,
    owner: Option<usize>,
) -> Option<Report> {
    if !ENABLED {
        return None;
    }
    LOCKDEP.stuck_report(class, lock, cpu, waited_ms, owner)
}

/// The slot of `class` in the kernel validator's class table (registering it on first use),
/// or `None` if the table is full. Works with the validator compiled out too: lock statistics
/// (src/sync/lockstat.rs) keep their counters beside these slots.
#[inline]
pub fn class_slot(class: &LockClass) -> Option<usize> {
    LOCKDEP.class_index(class)
}

/// Every class registered in the kernel validator's table, in slot order (whether or not the
/// validator is compiled in: `class_slot` registers classes too).
pub fn registered_classes() -> alloc::vec::Vec<ClassInfo> {
    LOCKDEP.registered().map(|i| LOCKDEP.info(i)).collect()
}

/// `LOCKDEP.classes`: the `locks` table (empty when compiled out).
pub fn classes() -> impl Iterator<Item = ClassStats> {
    LOCKDEP.classes().filter(|_| ENABLED)
}

/// `LOCKDEP.held`: what `cpu` holds, for a panic message.
pub fn held(cpu: usize) -> impl Iterator<Item = Held> {
    LOCKDEP.held(cpu).filter(|_| ENABLED)
}

/// `LOCKDEP.rearm`: warnings on again (before each in-kernel demo).
pub fn rearm() {
    LOCKDEP.rearm();
}
