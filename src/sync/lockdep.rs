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
//! # Keys: how a lock finds its class
//! A class is keyed by a `&'static Location`: where the lock was *constructed*. `LockClass::new`
//! is `#[track_caller]` and `const`, so a `SpinLock::new` that is `#[track_caller]` too can embed
//! a `LockClass` built from its caller's location, with no extra statics at each lock's
//! definition: `static CONSOLE: SpinLock<..> = SpinLock::new(..)` gets the class
//! `src/console.rs:12:37`. Every lock built by the same line shares one class (an array of
//! per-CPU locks, or a lock inside a struct made by one constructor), which is what a class
//! should be: those locks follow the same rules. `LockClass::named` adds a readable name. The
//! class id is looked up once (a lock-free insert into a 64-slot table, compared by location) and
//! then cached in the `LockClass` itself.
//!
//! Two locks of *one* class nested on one CPU (say, two per-CPU run queues) are not ordered
//! against each other: the validator cannot tell which one is "first". Linux marks such nesting
//! with a subclass (`spin_lock_nested`); here it is chapter 12's exercise.
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

use core::fmt;
use core::panic::Location;
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering,
};

use crate::config::MAX_CPUS;

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

/// Cached in `LockClass::id` when the class table was full: the lock goes unvalidated.
const UNTRACKED: u16 = u16::MAX;

/// Usage bits of a class.
const USED_IN_HARDIRQ: u8 = 1;
const USED_WITH_IRQS_ON: u8 = 2;

/// The key that makes a lock part of a class, usually embedded in the lock.
pub struct LockClass {
    name: &'static str,
    defined_at: Site,
    /// 0: not looked up yet; 1..=MAX_CLASSES: table slot + 1; `UNTRACKED`: the table was full.
    id: AtomicU16,
}

impl LockClass {
    /// A class keyed by the caller's location, with no name (reports print the location).
    #[track_caller]
    pub const fn new() -> Self {
        Self::at("", Location::caller())
    }

    /// A class keyed by the caller's location, with a name for reports and `locks`.
    #[track_caller]
    pub const fn named(name: &'static str) -> Self {
        Self::at(name, Location::caller())
    }

    /// A class keyed by an explicit location (for a lock constructor that is itself
    /// `#[track_caller]` and passes `Location::caller()` on).
    pub const fn at(name: &'static str, defined_at: Site) -> Self {
        LockClass {
            name,
            defined_at,
            id: AtomicU16::new(0),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn defined_at(&self) -> Site {
        self.defined_at
    }
}

impl Default for LockClass {
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

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

/// A class as reports and statistics show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassInfo {
    /// The table slot (0-based).
    pub id: u16,
    /// Empty if the class has no name.
    pub name: &'static str,
    pub defined_at: Site,
}

impl fmt::Display for ClassInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "`lock@{}`", self.defined_at)
        } else {
            write!(f, "`{}`", self.name)
        }
    }
}

/// One use of a class: where and on which CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub site: Site,
    pub cpu: usize,
}

/// The dependency `from` -> `to`: CPU `cpu` took `to` at `taken_at` while holding `from`, which
/// it had taken at `held_since`. `None` sites were still being written by another CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: ClassInfo,
    pub to: ClassInfo,
    pub taken_at: Option<Site>,
    pub held_since: Option<Site>,
    pub cpu: usize,
}

/// A lock some CPU holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub class: ClassInfo,
    /// The lock instance (its address).
    pub lock: usize,
    pub site: Site,
    pub cpu: usize,
    pub in_hardirq: bool,
}

/// What the validator found. `Display` gives a multi-line report in the style of a kernel log.
///
/// A cycle report carries its edges inline (about 0.7 KiB): the validator runs inside lock
/// acquisition and must not allocate, so there is no `Box` to put them in.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The class was taken in hardirq context and also with IRQs enabled.
    InconsistentIrqUsage {
        class: ClassInfo,
        in_hardirq: Usage,
        with_irqs_on: Usage,
        /// The CPU whose acquisition completed the pair.
        cpu: usize,
    },
    /// This CPU is taking a lock it already holds: spinning would never end. Fatal.
    RecursiveLocking {
        first: Held,
        class: ClassInfo,
        lock: usize,
        site: Site,
        cpu: usize,
        in_hardirq: bool,
    },
    /// A new edge closed a cycle in the lock-order graph. `edges[0]` is the new edge; the rest
    /// walk the existing path back to its start. `len` edges are listed out of `total`.
    LockOrderCycle {
        cpu: usize,
        edges: [Option<Edge>; MAX_REPORT_EDGES],
        len: usize,
        total: usize,
    },
    /// The CPU holds `MAX_HELD` locks already; this one is not tracked.
    HeldStackOverflow {
        cpu: usize,
        class: ClassInfo,
        site: Site,
    },
    /// No room for another class; locks of this class go unvalidated.
    ClassTableFull {
        name: &'static str,
        defined_at: Site,
    },
    /// A lock released on a CPU that does not hold it.
    UnlockNotHeld {
        class: ClassInfo,
        lock: usize,
        cpu: usize,
    },
    /// A spin lasted far longer than any sane hold time.
    Stuck {
        class: ClassInfo,
        lock: usize,
        cpu: usize,
        waited_ms: u64,
        holder: Option<Held>,
    },
}

impl Report {
    /// True if the caller must not go on to spin: the lock can never become free.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Report::RecursiveLocking { .. })
    }
}

fn context_name(in_hardirq: bool) -> &'static str {
    if in_hardirq { " in hardirq" } else { "" }
}

fn opt_site(f: &mut fmt::Formatter<'_>, site: Option<Site>) -> fmt::Result {
    match site {
        Some(s) => write!(f, "{s}"),
        None => f.write_str("<site being recorded>"),
    }
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}: cpu{} took {} at ",
            self.from, self.to, self.cpu, self.to
        )?;
        opt_site(f, self.taken_at)?;
        write!(f, " while holding {} (taken at ", self.from)?;
        opt_site(f, self.held_since)?;
        f.write_str(")")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::InconsistentIrqUsage {
                class,
                in_hardirq,
                with_irqs_on,
                cpu,
            } => {
                writeln!(
                    f,
                    "lockdep: WARNING: inconsistent lock state on cpu{cpu}: {class} is IRQ-safe and IRQ-unsafe"
                )?;
                writeln!(
                    f,
                    "  taken in hardirq context  on cpu{} at {}",
                    in_hardirq.cpu, in_hardirq.site
                )?;
                writeln!(
                    f,
                    "  taken with IRQs enabled   on cpu{} at {}",
                    with_irqs_on.cpu, with_irqs_on.site
                )?;
                write!(
                    f,
                    "  an interrupt arriving while a CPU holds it with IRQs on spins on it forever: \
                     take it with IRQs masked everywhere"
                )
            }
            Report::RecursiveLocking {
                first,
                class,
                lock,
                site,
                cpu,
                in_hardirq,
            } => {
                writeln!(
                    f,
                    "lockdep: BUG: recursive locking on cpu{cpu}: {class} ({lock:#x}) is already held by this CPU"
                )?;
                writeln!(
                    f,
                    "  held since {}{}",
                    first.site,
                    context_name(first.in_hardirq)
                )?;
                writeln!(f, "  taken again at {}{}", site, context_name(*in_hardirq))?;
                write!(
                    f,
                    "  this CPU would spin on itself forever: stopping instead"
                )
            }
            Report::LockOrderCycle {
                cpu,
                edges,
                len,
                total,
            } => {
                writeln!(
                    f,
                    "lockdep: WARNING: possible circular locking dependency (found on cpu{cpu})"
                )?;
                let mut listed = edges.iter().take(*len).flatten();
                if let Some(new) = listed.next() {
                    writeln!(f, "  new dependency      {new}")?;
                }
                for e in listed {
                    writeln!(f, "  existing dependency {e}")?;
                }
                if total > len {
                    writeln!(f, "  ... and {} more dependencies", total - len)?;
                }
                f.write_str("  cycle:")?;
                for e in edges.iter().take(*len).flatten() {
                    write!(f, " {} ->", e.from)?;
                }
                if total > len {
                    f.write_str(" ... ->")?;
                }
                if let Some(Some(first)) = edges.first() {
                    write!(f, " {}", first.from)?;
                }
                writeln!(f)?;
                write!(
                    f,
                    "  CPUs running these paths at the same time can each wait for the next forever"
                )
            }
            Report::HeldStackOverflow { cpu, class, site } => write!(
                f,
                "lockdep: WARNING: cpu{cpu} holds more than {MAX_HELD} locks; {class} taken at {site} is not tracked"
            ),
            Report::ClassTableFull { name, defined_at } => write!(
                f,
                "lockdep: WARNING: lock class table full ({MAX_CLASSES} classes): `{name}` defined at \
                 {defined_at} and any later classes are not validated; raise MAX_CLASSES"
            ),
            Report::UnlockNotHeld { class, lock, cpu } => write!(
                f,
                "lockdep: WARNING: cpu{cpu} releases {class} ({lock:#x}), which it does not hold"
            ),
            Report::Stuck {
                class,
                lock,
                cpu,
                waited_ms,
                holder,
            } => {
                write!(
                    f,
                    "lockdep: BUG: cpu{cpu} spinning for {waited_ms} ms on {class} ({lock:#x})"
                )?;
                match holder {
                    Some(h) => write!(
                        f,
                        "\n  held by cpu{} since {}{}",
                        h.cpu,
                        h.site,
                        context_name(h.in_hardirq)
                    ),
                    None => f.write_str("\n  no CPU's held-lock stack names it (taken untracked?)"),
                }
            }
        }
    }
}

/// One line of the `locks` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassStats {
    pub class: ClassInfo,
    pub acquired: u64,
    pub contended: u64,
    /// Ever taken in hardirq context.
    pub irq_safe: bool,
    /// Ever taken with IRQs enabled.
    pub irq_unsafe: bool,
    /// Classes taken while holding this one.
    pub edges_out: u32,
    /// Classes held while taking this one.
    pub edges_in: u32,
}

/// The header matching `ClassStats`' `Display`.
pub const SUMMARY_HEADER: &str =
    "class                     acquired  contended  usage  after  before  defined at";

impl fmt::Display for ClassStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.class.name.is_empty() {
            "-"
        } else {
            self.class.name
        };
        let usage = match (self.irq_safe, self.irq_unsafe) {
            (true, true) => "S+U",
            (true, false) => "S",
            (false, true) => "U",
            (false, false) => "-",
        };
        write!(
            f,
            "{name:<24} {:>9} {:>10}  {usage:<5} {:>6} {:>7}  {}",
            self.acquired, self.contended, self.edges_out, self.edges_in, self.class.defined_at
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Storage: atomics only.

fn site_ptr(site: Site) -> *mut Location<'static> {
    (site as *const Location<'static>).cast_mut()
}

fn load_site(p: &AtomicPtr<Location<'static>>) -> Option<Site> {
    let raw = p.load(Ordering::Acquire);
    // SAFETY: these pointers are only ever null or made by `site_ptr` from a
    // `&'static Location<'static>`; nothing writes through them or frees them.
    unsafe { raw.as_ref() }
}

/// One class in the table. Slots fill in order and are never freed.
struct ClassSlot {
    /// Null while free; set once, by compare-exchange, to the class's defining location.
    key: AtomicPtr<Location<'static>>,
    name_ptr: AtomicPtr<u8>,
    /// Stored after `name_ptr` (release); 0 means no name (yet).
    name_len: AtomicUsize,
    acquired: AtomicU64,
    contended: AtomicU64,
    usage: AtomicU8,
    hardirq_site: AtomicPtr<Location<'static>>,
    hardirq_cpu: AtomicU8,
    irqs_on_site: AtomicPtr<Location<'static>>,
    irqs_on_cpu: AtomicU8,
    irq_reported: AtomicBool,
    /// Bit j: class j was taken while this one was held (the edge this -> j).
    after: AtomicU64,
}

impl ClassSlot {
    const fn new() -> Self {
        ClassSlot {
            key: AtomicPtr::new(core::ptr::null_mut()),
            name_ptr: AtomicPtr::new(core::ptr::null_mut()),
            name_len: AtomicUsize::new(0),
            acquired: AtomicU64::new(0),
            contended: AtomicU64::new(0),
            usage: AtomicU8::new(0),
            hardirq_site: AtomicPtr::new(core::ptr::null_mut()),
            hardirq_cpu: AtomicU8::new(0),
            irqs_on_site: AtomicPtr::new(core::ptr::null_mut()),
            irqs_on_cpu: AtomicU8::new(0),
            irq_reported: AtomicBool::new(false),
            after: AtomicU64::new(0),
        }
    }

    fn name(&self) -> &'static str {
        let len = self.name_len.load(Ordering::Acquire);
        if len == 0 {
            return "";
        }
        let ptr = self.name_ptr.load(Ordering::Relaxed);
        // SAFETY: the one CPU that registered this slot stored `ptr` and then, with release
        // ordering, `len`, both taken from one `&'static str`; we read `len` with acquire, so
        // `ptr` is that string's and it lives forever. The slot is never rewritten.
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr, len)) }
    }

    /// Record the first site of a usage (first writer wins), then the usage bit.
    fn mark_usage(
        &self,
        bit: u8,
        site_slot: &AtomicPtr<Location<'static>>,
        cpu_slot: &AtomicU8,
        site: Site,
        cpu: usize,
    ) {
        if self.usage.load(Ordering::Acquire) & bit != 0 {
            return;
        }
        if site_slot
            .compare_exchange(
                core::ptr::null_mut(),
                site_ptr(site),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            cpu_slot.store(cpu as u8, Ordering::Relaxed);
        }
        self.usage.fetch_or(bit, Ordering::AcqRel);
    }
}

/// Who created an edge.
struct EdgeSlot {
    taken_at: AtomicPtr<Location<'static>>,
    held_since: AtomicPtr<Location<'static>>,
    cpu: AtomicU8,
}

impl EdgeSlot {
    const fn new() -> Self {
        EdgeSlot {
            taken_at: AtomicPtr::new(core::ptr::null_mut()),
            held_since: AtomicPtr::new(core::ptr::null_mut()),
            cpu: AtomicU8::new(0),
        }
    }
}

/// One entry of a CPU's held-lock stack. `class` 0 marks it invalid (free or changing).
struct HeldSlot {
    class: AtomicU16,
    lock: AtomicUsize,
    site: AtomicPtr<Location<'static>>,
    in_hardirq: AtomicBool,
}

impl HeldSlot {
    const fn new() -> Self {
        HeldSlot {
            class: AtomicU16::new(0),
            lock: AtomicUsize::new(0),
            site: AtomicPtr::new(core::ptr::null_mut()),
            in_hardirq: AtomicBool::new(false),
        }
    }

    /// Fill the entry; readers skip it until the final release store of `class`.
    fn write(&self, class: u16, lock: usize, site: *mut Location<'static>, in_hardirq: bool) {
        self.class.store(0, Ordering::Relaxed);
        self.lock.store(lock, Ordering::Release);
        self.site.store(site, Ordering::Release);
        self.in_hardirq.store(in_hardirq, Ordering::Release);
        self.class.store(class, Ordering::Release);
    }
}

/// A CPU's held locks, on a cache line of its own.
#[repr(align(64))]
struct CpuHeld {
    /// Entries `0..depth` are in use (an entry being changed has class 0).
    depth: AtomicUsize,
    /// Locks taken while the stack was full: released without complaint.
    untracked: AtomicUsize,
    slots: [HeldSlot; MAX_HELD],
}

impl CpuHeld {
    const fn new() -> Self {
        CpuHeld {
            depth: AtomicUsize::new(0),
            untracked: AtomicUsize::new(0),
            slots: [const { HeldSlot::new() }; MAX_HELD],
        }
    }
}

/// The validator's whole state. The kernel uses the one in `LOCKDEP` through the free functions;
/// tests make their own so they can run in parallel. A `LockClass` caches its id for the first
/// validator it meets, so a class must only ever be used with one validator.
pub struct Lockdep {
    classes: [ClassSlot; MAX_CLASSES],
    edges: [[EdgeSlot; MAX_CLASSES]; MAX_CLASSES],
    cpus: [CpuHeld; MAX_CPUS],
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
            warnings_off: AtomicBool::new(false),
            table_full_reported: AtomicBool::new(false),
            untracked_classes: AtomicUsize::new(0),
        }
    }

    // ---- classes ----

    /// The class's table slot, registering it on first use. `None` if the table is full.
    fn class_index(&self, class: &LockClass) -> Option<usize> {
        match class.id.load(Ordering::Relaxed) {
            0 => {}
            UNTRACKED => return None,
            id => return Some(id as usize - 1),
        }
        let mine = site_ptr(class.defined_at);
        let same = |key: *mut Location<'static>| {
            // SAFETY: keys are null or made by `site_ptr` from a `&'static Location`.
            key == mine || unsafe { key.as_ref() }.is_some_and(|k| *k == *class.defined_at)
        };
        // Every registrant scans the slots in the same order and slots only go from free to
        // taken, so two CPUs registering the same key always meet at the same slot.
        for (i, slot) in self.classes.iter().enumerate() {
            let mut key = slot.key.load(Ordering::Acquire);
            if key.is_null() {
                match slot.key.compare_exchange(
                    core::ptr::null_mut(),
                    mine,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        if !class.name.is_empty() {
                            slot.name_ptr
                                .store(class.name.as_ptr().cast_mut(), Ordering::Relaxed);
                            slot.name_len.store(class.name.len(), Ordering::Release);
                        }
                        class.id.store(i as u16 + 1, Ordering::Relaxed);
                        return Some(i);
                    }
                    Err(winner) => key = winner,
                }
            }
            if same(key) {
                class.id.store(i as u16 + 1, Ordering::Relaxed);
                return Some(i);
            }
        }
        if class.id.swap(UNTRACKED, Ordering::Relaxed) != UNTRACKED {
            self.untracked_classes.fetch_add(1, Ordering::Relaxed);
        }
        None
    }

    fn info(&self, index: usize) -> ClassInfo {
        let slot = &self.classes[index];
        ClassInfo {
            id: index as u16,
            name: slot.name(),
            defined_at: load_site(&slot.key).unwrap_or(Location::caller()),
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

    // ---- the hot path ----

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

    fn irq_report(&self, index: usize, cpu: usize) -> Option<Report> {
        let slot = &self.classes[index];
        Some(Report::InconsistentIrqUsage {
            class: self.info(index),
            in_hardirq: Usage {
                site: load_site(&slot.hardirq_site)?,
                cpu: slot.hardirq_cpu.load(Ordering::Relaxed) as usize,
            },
            with_irqs_on: Usage {
                site: load_site(&slot.irqs_on_site)?,
                cpu: slot.irqs_on_cpu.load(Ordering::Relaxed) as usize,
            },
            cpu,
        })
    }

    /// Add `from` -> `to` if nobody beat us to it; if ours closes a cycle, report it (once).
    fn add_edge(
        &self,
        from: usize,
        to: usize,
        cpu: usize,
        held_since: *mut Location<'static>,
        taken_at: Site,
    ) -> Option<Report> {
        let e = &self.edges[from][to];
        // Sites first, then the bit, so whoever sees the bit finds the sites.
        if e.taken_at
            .compare_exchange(
                core::ptr::null_mut(),
                site_ptr(taken_at),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            e.held_since.store(held_since, Ordering::Release);
            e.cpu.store(cpu as u8, Ordering::Release);
        }
        // SeqCst: two CPUs adding A -> B and B -> A at once must not both miss the other's edge.
        let before = self.classes[from].after.fetch_or(1 << to, Ordering::SeqCst);
        if before & (1 << to) != 0 || !self.warnings_on() {
            return None;
        }
        // Our edge is new. Is there already a path back from `to` to `from`?
        let mut path = [0u8; MAX_CLASSES];
        let nodes = self.path(to, from, &mut path)?;
        if !self.claim_warning() {
            return None;
        }
        let mut edges = [None; MAX_REPORT_EDGES];
        edges[0] = Some(self.edge(from, to));
        let total = nodes; // the new edge plus the path's nodes - 1 edges
        let mut len = 1;
        for w in path[..nodes].windows(2) {
            if len == MAX_REPORT_EDGES {
                break;
            }
            edges[len] = Some(self.edge(w[0] as usize, w[1] as usize));
            len += 1;
        }
        Some(Report::LockOrderCycle {
            cpu,
            edges,
            len,
            total,
        })
    }

    fn edge(&self, from: usize, to: usize) -> Edge {
        let e = &self.edges[from][to];
        Edge {
            from: self.info(from),
            to: self.info(to),
            taken_at: load_site(&e.taken_at),
            held_since: load_site(&e.held_since),
            cpu: e.cpu.load(Ordering::Acquire) as usize,
        }
    }

    /// Breadth-first search from `start` to `goal` over the edges; writes the shortest path's
    /// nodes (both ends included) into `path` and returns how many. Bitsets, no heap.
    fn path(&self, start: usize, goal: usize, path: &mut [u8; MAX_CLASSES]) -> Option<usize> {
        let mut parent = [u8::MAX; MAX_CLASSES];
        let mut seen: u64 = 1 << start;
        let mut frontier: u64 = 1 << start;
        while frontier != 0 {
            let mut next = 0u64;
            let mut f = frontier;
            while f != 0 {
                let u = f.trailing_zeros() as usize;
                f &= f - 1;
                let mut out = self.classes[u].after.load(Ordering::SeqCst) & !seen;
                seen |= out;
                next |= out;
                while out != 0 {
                    let v = out.trailing_zeros() as usize;
                    out &= out - 1;
                    parent[v] = u as u8;
                    if v == goal {
                        // Walk the parents back, then reverse into `path`.
                        let mut n = 0;
                        let mut at = goal;
                        loop {
                            path[n] = at as u8;
                            n += 1;
                            if at == start {
                                break;
                            }
                            at = parent[at] as usize;
                        }
                        path[..n].reverse();
                        return Some(n);
                    }
                }
            }
            frontier = next;
        }
        None
    }

    /// `lock` of `class` is being released on `cpu` (call before the raw unlock). Locks may be
    /// released in any order.
    pub fn release(&self, class: &LockClass, lock: usize, cpu: usize) -> Option<Report> {
        let index = self.class_index(class)?;
        let me = self.cpus.get(cpu)?;
        let depth = me.depth.load(Ordering::Acquire).min(MAX_HELD);
        let found = me.slots[..depth].iter().rposition(|h| {
            h.class.load(Ordering::Acquire) != 0 && h.lock.load(Ordering::Relaxed) == lock
        });
        let Some(i) = found else {
            // Taken while the stack was full?
            if me
                .untracked
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                return None;
            }
            return self.claim_warning().then(|| Report::UnlockNotHeld {
                class: self.info(index),
                lock,
                cpu,
            });
        };
        // Close the gap: each moved entry is invalid while it changes, so an interrupt that
        // reads the stack midway sees every lock still held at most twice, never a torn entry.
        me.slots[i].class.store(0, Ordering::Release);
        for j in i..depth - 1 {
            let src = &me.slots[j + 1];
            me.slots[j].write(
                src.class.load(Ordering::Relaxed),
                src.lock.load(Ordering::Relaxed),
                src.site.load(Ordering::Relaxed),
                src.in_hardirq.load(Ordering::Relaxed),
            );
        }
        me.slots[depth - 1].class.store(0, Ordering::Release);
        me.depth.store(depth - 1, Ordering::Release);
        None
    }

    /// Count a contended acquisition (the lock had to wait) for `locks`.
    pub fn note_contended(&self, class: &LockClass) {
        if let Some(i) = self.class_index(class) {
            self.classes[i].contended.fetch_add(1, Ordering::Relaxed);
        }
    }

    // ---- diagnostics ----

    /// The locks `cpu` holds, oldest first.
    pub fn held(&self, cpu: usize) -> impl Iterator<Item = Held> + '_ {
        let me = self.cpus.get(cpu);
        let depth = me.map_or(0, |m| m.depth.load(Ordering::Acquire).min(MAX_HELD));
        me.into_iter()
            .flat_map(move |m| m.slots[..depth].iter())
            .filter_map(move |h| {
                let c = h.class.load(Ordering::Acquire);
                if c == 0 {
                    return None;
                }
                Some(Held {
                    class: self.info(c as usize - 1),
                    lock: h.lock.load(Ordering::Relaxed),
                    site: load_site(&h.site)?,
                    cpu,
                    in_hardirq: h.in_hardirq.load(Ordering::Relaxed),
                })
            })
    }

    /// Which CPU holds `lock`, and since where, as the held stacks say (read racily: for
    /// diagnostics only). Waiters register before they spin, so a stack may also name a CPU
    /// that is still waiting: pass the owner the lock itself records as `owner` when it knows
    /// it (then only that CPU's stack is read), and the asking CPU as `except`.
    pub fn holder(&self, lock: usize, owner: Option<usize>, except: usize) -> Option<Held> {
        match owner {
            Some(c) => self.held(c).find(|h| h.lock == lock),
            None => (0..MAX_CPUS)
                .filter(|&c| c != except)
                .find_map(|c| self.held(c).find(|h| h.lock == lock)),
        }
    }

    /// The report for `cpu`'s spin on `lock` that has lasted `waited_ms`, naming the holder
    /// (`owner`: the CPU the lock records as its holder, if it knows).
    pub fn stuck_report(
        &self,
        class: &LockClass,
        lock: usize,
        cpu: usize,
        waited_ms: u64,
        owner: Option<usize>,
    ) -> Option<Report> {
        let index = self.class_index(class)?;
        Some(Report::Stuck {
            class: self.info(index),
            lock,
            cpu,
            waited_ms,
            holder: self.holder(lock, owner, cpu),
        })
    }

    /// True if `to` was ever taken while `from` was held.
    pub fn has_edge(&self, from: &LockClass, to: &LockClass) -> bool {
        match (self.class_index(from), self.class_index(to)) {
            (Some(a), Some(b)) => self.classes[a].after.load(Ordering::Relaxed) & (1 << b) != 0,
            _ => false,
        }
    }

    /// Every registered class with its counters, for a `locks` command.
    pub fn classes(&self) -> impl Iterator<Item = ClassStats> + '_ {
        let registered = self
            .classes
            .iter()
            .take_while(|s| !s.key.load(Ordering::Acquire).is_null())
            .count();
        (0..registered).map(move |i| {
            let s = &self.classes[i];
            let usage = s.usage.load(Ordering::Relaxed);
            ClassStats {
                class: self.info(i),
                acquired: s.acquired.load(Ordering::Relaxed),
                contended: s.contended.load(Ordering::Relaxed),
                irq_safe: usage & USED_IN_HARDIRQ != 0,
                irq_unsafe: usage & USED_WITH_IRQS_ON != 0,
                edges_out: s.after.load(Ordering::Relaxed).count_ones(),
                edges_in: (0..registered)
                    .filter(|&j| self.classes[j].after.load(Ordering::Relaxed) & (1 << i) != 0)
                    .count() as u32,
            }
        })
    }

    /// Lock classes that did not fit in the table (and go unvalidated).
    pub fn untracked_classes(&self) -> usize {
        self.untracked_classes.load(Ordering::Relaxed)
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::string::ToString;

    /// The caller's location: a distinct site per call expression.
    #[track_caller]
    fn here() -> Site {
        Location::caller()
    }

    /// A fresh validator per test, so tests run in parallel without sharing state.
    fn validator() -> &'static Lockdep {
        Box::leak(Box::new(Lockdep::new()))
    }

    fn addr<T>(x: &T) -> usize {
        x as *const T as usize
    }

    #[test]
    fn irq_safe_and_unsafe_use_is_reported_once_with_both_sites() {
        let v = validator();
        static CONSOLE: LockClass = LockClass::named("console");
        static TIMER: LockClass = LockClass::named("timer");
        let (lock, timer) = (1usize, 2usize);

        // Only ever in hardirq, or only with IRQs off: consistent, nothing to say.
        assert_eq!(
            v.acquire(&TIMER, timer, 0, Context::HARDIRQ, Kind::Spin, here()),
            None
        );
        v.release(&TIMER, timer, 0);
        assert_eq!(
            v.acquire(&TIMER, timer, 1, Context::TASK_IRQS_OFF, Kind::Spin, here()),
            None
        );
        v.release(&TIMER, timer, 1);

        let task_site = here();
        assert_eq!(
            v.acquire(&CONSOLE, lock, 0, Context::TASK, Kind::Spin, task_site),
            None
        );
        assert_eq!(v.release(&CONSOLE, lock, 0), None);
        let irq_site = here();
        let report = v
            .acquire(&CONSOLE, lock, 2, Context::HARDIRQ, Kind::Spin, irq_site)
            .expect("IRQ-safe + IRQ-unsafe must be reported");
        v.release(&CONSOLE, lock, 2);
        let Report::InconsistentIrqUsage {
            class,
            in_hardirq,
            with_irqs_on,
            cpu,
        } = report
        else {
            panic!("wrong report: {report}");
        };
        assert_eq!(class.name, "console");
        assert_eq!(
            in_hardirq,
            Usage {
                site: irq_site,
                cpu: 2
            }
        );
        assert_eq!(
            with_irqs_on,
            Usage {
                site: task_site,
                cpu: 0
            }
        );
        assert_eq!(cpu, 2);
        let text = report.to_string();
        assert!(text.contains("inconsistent lock state"), "{text}");
        assert!(text.contains("IRQ-safe and IRQ-unsafe"), "{text}");
        assert!(text.contains(&irq_site.to_string()) && text.contains(&task_site.to_string()));
        assert!(!report.is_fatal());

        // Once: not again, not even with warnings re-armed.
        v.rearm();
        for ctx in [Context::TASK, Context::HARDIRQ, Context::TASK] {
            assert_eq!(v.acquire(&CONSOLE, lock, 1, ctx, Kind::Spin, here()), None);
            v.release(&CONSOLE, lock, 1);
        }
    }

    #[test]
    fn recursive_locking_is_reported_before_the_spin() {
        let v = validator();
        static A: LockClass = LockClass::named("a");
        let (a1, a2) = (0x100usize, 0x200usize);
        let first = here();
        assert_eq!(v.acquire(&A, a1, 3, Context::TASK, Kind::Spin, first), None);
        // Another CPU may wait for it: that is contention, not recursion.
        assert_eq!(
            v.acquire(&A, a1, 1, Context::TASK_IRQS_OFF, Kind::Spin, here()),
            None
        );
        v.release(&A, a1, 1);
        // Another lock of the same class on this CPU is not recursion either.
        assert_eq!(
            v.acquire(&A, a2, 3, Context::TASK, Kind::Spin, here()),
            None
        );
        v.release(&A, a2, 3);

        let again = here();
        let report = v
            .acquire(&A, a1, 3, Context::TASK, Kind::Spin, again)
            .expect("taking a held lock again must be reported");
        assert!(report.is_fatal());
        let Report::RecursiveLocking {
            first: held,
            site,
            cpu,
            lock,
            ..
        } = report
        else {
            panic!("wrong report: {report}");
        };
        assert_eq!((held.site, site, cpu, lock), (first, again, 3, a1));
        let text = report.to_string();
        assert!(text.contains("recursive locking") && text.contains(&first.to_string()));
        assert!(text.contains(&again.to_string()), "{text}");
        // The fatal attempt was not recorded: one release empties the stack.
        assert_eq!(v.release(&A, a1, 3), None);
        assert_eq!(v.held(3).count(), 0);
    }

    #[test]
    fn an_interrupt_taking_a_lock_its_cpu_holds_is_recursion_even_with_warnings_off() {
        let v = validator();
        static B: LockClass = LockClass::named("b");
        // Some earlier warning turned warnings off...
        assert!(v.claim_warning());
        assert!(!v.warnings_on());
        assert_eq!(v.acquire(&B, 7, 0, Context::TASK, Kind::Spin, here()), None);
        // ...but the recursion in the interrupt handler is still caught.
        let r = v.acquire(&B, 7, 0, Context::HARDIRQ, Kind::Spin, here());
        match r {
            Some(Report::RecursiveLocking {
                in_hardirq: true,
                first,
                ..
            }) => assert!(!first.in_hardirq),
            other => panic!("expected recursion in hardirq, got {other:?}"),
        }
        assert!(r.unwrap().to_string().contains("in hardirq"));
    }

    #[test]
    fn try_lock_is_never_recursion_and_adds_no_edge_to_itself() {
        let v = validator();
        static A: LockClass = LockClass::named("a");
        static B: LockClass = LockClass::named("b");
        let ctx = Context::TASK_IRQS_OFF;
        assert_eq!(v.acquire(&A, 1, 0, ctx, Kind::Spin, here()), None);
        assert_eq!(v.acquire(&B, 2, 0, ctx, Kind::Try, here()), None);
        assert!(
            !v.has_edge(&A, &B),
            "a try-lock never waits, so A -> B cannot deadlock"
        );
        v.release(&B, 2, 0);
        v.release(&A, 1, 0);
        // B (tried) held while spinning on A: that one can wait, so B -> A is an edge.
        assert_eq!(v.acquire(&B, 2, 0, ctx, Kind::Try, here()), None);
        assert_eq!(v.acquire(&A, 1, 0, ctx, Kind::Spin, here()), None);
        assert!(v.has_edge(&B, &A));
    }

    #[test]
    fn ab_ba_is_reported_at_the_first_inversion_with_both_edges() {
        let v = validator();
        static A: LockClass = LockClass::named("a");
        static B: LockClass = LockClass::named("b");
        let ctx = Context::TASK_IRQS_OFF;
        let (a_site, b_site) = (here(), here());
        // Consistent order, many times, on several CPUs: silence.
        for round in 0..100 {
            let cpu = round % 4;
            assert_eq!(v.acquire(&A, 1, cpu, ctx, Kind::Spin, a_site), None);
            assert_eq!(v.acquire(&B, 2, cpu, ctx, Kind::Spin, b_site), None);
            assert_eq!(v.release(&B, 2, cpu), None);
            assert_eq!(v.release(&A, 1, cpu), None);
        }
        assert!(v.has_edge(&A, &B) && !v.has_edge(&B, &A));

        // The first B-then-A, long before two CPUs actually meet in it.
        let (b2, a2) = (here(), here());
        assert_eq!(v.acquire(&B, 2, 1, ctx, Kind::Spin, b2), None);
        let report = v
            .acquire(&A, 1, 1, ctx, Kind::Spin, a2)
            .expect("the inversion must be reported at once");
        let Report::LockOrderCycle {
            cpu,
            edges,
            len,
            total,
        } = report
        else {
            panic!("wrong report: {report}");
        };
        assert_eq!((cpu, len, total), (1, 2, 2));
        let new = edges[0].unwrap();
        assert_eq!((new.from.name, new.to.name), ("b", "a"));
        assert_eq!(
            (new.held_since, new.taken_at, new.cpu),
            (Some(b2), Some(a2), 1)
        );
        let old = edges[1].unwrap();
        assert_eq!((old.from.name, old.to.name), ("a", "b"));
        assert_eq!(
            (old.held_since, old.taken_at, old.cpu),
            (Some(a_site), Some(b_site), 0)
        );
        let text = report.to_string();
        for s in [a_site, b_site, a2, b2] {
            assert!(text.contains(&s.to_string()), "{s} missing from:\n{text}");
        }
        assert!(text.contains("circular locking dependency"), "{text}");
        assert!(text.contains("cycle: `b` -> `a` -> `b`"), "{text}");
        v.release(&A, 1, 1);
        v.release(&B, 2, 1);

        // Reported once: the same inversion again is silent even after a re-arm.
        v.rearm();
        assert_eq!(v.acquire(&B, 2, 2, ctx, Kind::Spin, here()), None);
        assert_eq!(v.acquire(&A, 1, 2, ctx, Kind::Spin, here()), None);
    }

    #[test]
    fn a_three_lock_cycle_is_found_through_the_graph() {
        let v = validator();
        static A: LockClass = LockClass::named("a");
        static B: LockClass = LockClass::named("b");
        static C: LockClass = LockClass::named("c");
        let ctx = Context::TASK_IRQS_OFF;
        let pair = |x: &LockClass, lx, y: &LockClass, ly, cpu| {
            let r1 = v.acquire(x, lx, cpu, ctx, Kind::Spin, here());
            let r2 = v.acquire(y, ly, cpu, ctx, Kind::Spin, here());
            v.release(y, ly, cpu);
            v.release(x, lx, cpu);
            r1.or(r2)
        };
        assert_eq!(pair(&A, 1, &B, 2, 0), None);
        assert_eq!(pair(&B, 2, &C, 3, 1), None);
        // No pair is inverted, yet C -> A closes a cycle.
        let report = pair(&C, 3, &A, 1, 2).expect("A -> B -> C -> A must be reported");
        let Report::LockOrderCycle {
            edges, len, total, ..
        } = report
        else {
            panic!("wrong report: {report}");
        };
        assert_eq!((len, total), (3, 3));
        let names: Vec<_> = edges[..3]
            .iter()
            .map(|e| (e.unwrap().from.name, e.unwrap().to.name))
            .collect();
        assert_eq!(names, [("c", "a"), ("a", "b"), ("b", "c")]);
        assert!(
            report
                .to_string()
                .contains("cycle: `c` -> `a` -> `b` -> `c`")
        );
    }

    #[test]
    fn the_first_warning_silences_the_rest_until_rearmed() {
        let v = validator();
        static A: LockClass = LockClass::named("a");
        static B: LockClass = LockClass::named("b");
        static IRQ: LockClass = LockClass::named("irq");
        let off = Context::TASK_IRQS_OFF;
        pair_in_order(v, &A, &B, off);
        v.acquire(&B, 2, 0, off, Kind::Spin, here());
        assert!(v.acquire(&A, 1, 0, off, Kind::Spin, here()).is_some());
        v.release(&A, 1, 0);
        v.release(&B, 2, 0);
        assert!(!v.warnings_on());
        // A second bug while warnings are off: not reported...
        v.acquire(&IRQ, 9, 1, Context::HARDIRQ, Kind::Spin, here());
        v.release(&IRQ, 9, 1);
        assert_eq!(
            v.acquire(&IRQ, 9, 1, Context::TASK, Kind::Spin, here()),
            None
        );
        v.release(&IRQ, 9, 1);
        // ...until re-armed: then its next use reports it.
        v.rearm();
        let r = v.acquire(&IRQ, 9, 1, Context::TASK, Kind::Spin, here());
        assert!(
            matches!(r, Some(Report::InconsistentIrqUsage { .. })),
            "{r:?}"
        );
    }

    fn pair_in_order(v: &Lockdep, a: &LockClass, b: &LockClass, ctx: Context) {
        assert_eq!(v.acquire(a, 1, 0, ctx, Kind::Spin, here()), None);
        assert_eq!(v.acquire(b, 2, 0, ctx, Kind::Spin, here()), None);
        v.release(b, 2, 0);
        v.release(a, 1, 0);
    }

    #[test]
    fn locks_released_out_of_order_leave_the_right_ones_held() {
        let v = validator();
        static A: LockClass = LockClass::named("a");
        static B: LockClass = LockClass::named("b");
        static C: LockClass = LockClass::named("c");
        static D: LockClass = LockClass::named("d");
        let ctx = Context::TASK_IRQS_OFF;
        for (class, lock) in [(&A, 1), (&B, 2), (&C, 3)] {
            assert_eq!(v.acquire(class, lock, 5, ctx, Kind::Spin, here()), None);
        }
        assert_eq!(v.release(&B, 2, 5), None);
        let held: Vec<_> = v.held(5).map(|h| (h.class.name, h.lock)).collect();
        assert_eq!(held, [("a", 1), ("c", 3)]);
        assert_eq!(v.acquire(&D, 4, 5, ctx, Kind::Spin, here()), None);
        assert!(v.has_edge(&A, &D) && v.has_edge(&C, &D));
        assert!(!v.has_edge(&B, &D), "B was released before D was taken");
        for (class, lock) in [(&A, 1), (&D, 4), (&C, 3)] {
            assert_eq!(v.release(class, lock, 5), None);
        }
        assert_eq!(v.held(5).count(), 0);
        // Releasing what this CPU does not hold is a bug of its own.
        let r = v.release(&A, 1, 5).expect("unbalanced unlock");
        assert!(
            matches!(
                r,
                Report::UnlockNotHeld {
                    lock: 1,
                    cpu: 5,
                    ..
                }
            ),
            "{r}"
        );
    }

    #[test]
    fn a_full_held_stack_is_reported_and_nothing_panics() {
        let v = validator();
        static MANY: LockClass = LockClass::named("many");
        let ctx = Context::TASK_IRQS_OFF;
        for lock in 0..MAX_HELD {
            assert_eq!(v.acquire(&MANY, lock, 0, ctx, Kind::Spin, here()), None);
        }
        let site = here();
        let r = v.acquire(&MANY, MAX_HELD, 0, ctx, Kind::Spin, site);
        assert_eq!(
            r,
            Some(Report::HeldStackOverflow {
                cpu: 0,
                class: r.map(|_| v.info(0)).unwrap(),
                site
            })
        );
        assert!(r.unwrap().to_string().contains("more than 16 locks"));
        assert_eq!(
            v.acquire(&MANY, MAX_HELD + 1, 0, ctx, Kind::Spin, here()),
            None
        );
        // All of them come back, untracked ones included, without an "unlock not held".
        v.rearm();
        for lock in (0..MAX_HELD + 2).rev() {
            assert_eq!(v.release(&MANY, lock, 0), None, "lock {lock}");
        }
        assert_eq!(v.held(0).count(), 0);
    }

    #[test]
    fn a_full_class_table_is_reported_once_and_its_locks_go_unchecked() {
        let v = validator();
        #[rustfmt::skip]
        let sites: [Site; MAX_CLASSES + 2] = [
            here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
            here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
            here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
            here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
            here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
            here(), here(), here(), here(), here(), here(), here(), here(), here(), here(), here(),
        ];
        let classes: Vec<LockClass> = sites.iter().map(|&s| LockClass::at("", s)).collect();
        let ctx = Context::TASK_IRQS_OFF;
        for (i, class) in classes[..MAX_CLASSES].iter().enumerate() {
            assert_eq!(v.acquire(class, i, 0, ctx, Kind::Spin, here()), None);
            assert_eq!(v.release(class, i, 0), None);
        }
        assert_eq!(v.classes().count(), MAX_CLASSES);
        let full = LockClass::at("one too many", sites[MAX_CLASSES]);
        let r = v.acquire(&full, 99, 0, ctx, Kind::Spin, here());
        let Some(Report::ClassTableFull { name, defined_at }) = r else {
            panic!("expected a full table report, got {r:?}");
        };
        assert_eq!((name, defined_at), ("one too many", sites[MAX_CLASSES]));
        assert!(r.unwrap().to_string().contains("raise MAX_CLASSES"));
        v.rearm();
        // Once only, and the untracked locks are neither checked nor complained about.
        let last = &classes[MAX_CLASSES + 1];
        assert_eq!(v.acquire(last, 100, 0, ctx, Kind::Spin, here()), None);
        assert_eq!(v.acquire(last, 100, 0, ctx, Kind::Spin, here()), None);
        assert_eq!(v.release(last, 100, 0), None);
        assert_eq!(v.release(&full, 99, 0), None);
        assert_eq!(v.untracked_classes(), 2);
        // A class already in the table still works.
        assert_eq!(v.acquire(&classes[3], 3, 0, ctx, Kind::Spin, here()), None);
        assert!(
            v.acquire(&classes[3], 3, 0, ctx, Kind::Spin, here())
                .unwrap()
                .is_fatal()
        );
    }

    #[test]
    fn locks_made_by_one_line_share_a_class() {
        let v = validator();
        #[track_caller]
        fn make() -> LockClass {
            LockClass::new()
        }
        let sites: Vec<LockClass> = (0..3).map(|_| make()).collect();
        for (i, c) in sites.iter().enumerate() {
            v.acquire(c, i, 0, Context::TASK, Kind::Spin, here());
        }
        let stats: Vec<_> = v.classes().collect();
        assert_eq!(stats.len(), 1, "one constructor call site, one class");
        assert_eq!(stats[0].acquired, 3);
        assert!(
            stats[0]
                .class
                .to_string()
                .starts_with("`lock@src/sync/lockdep.rs:")
        );
    }

    #[test]
    fn a_stuck_spin_names_the_holder_and_its_site() {
        let v = validator();
        static RQ: LockClass = LockClass::named("runqueue");
        let held_at = here();
        assert_eq!(
            v.acquire(&RQ, 0x40, 1, Context::TASK_IRQS_OFF, Kind::Spin, held_at),
            None
        );
        // cpu2 registers its attempt, spins, and after 1500 ms asks who is in the way.
        assert_eq!(
            v.acquire(&RQ, 0x40, 2, Context::TASK_IRQS_OFF, Kind::Spin, here()),
            None
        );
        // So does cpu0: without the owner's id, its stack would be searched first.
        assert_eq!(
            v.acquire(&RQ, 0x40, 0, Context::TASK_IRQS_OFF, Kind::Spin, here()),
            None
        );
        v.note_contended(&RQ);
        let guess = v.stuck_report(&RQ, 0x40, 2, 1500, None).unwrap();
        assert!(matches!(
            guess,
            Report::Stuck {
                holder: Some(Held { cpu: 0, .. }),
                ..
            }
        ));
        let r = v.stuck_report(&RQ, 0x40, 2, 1500, Some(1)).unwrap();
        let Report::Stuck {
            holder: Some(h), ..
        } = r
        else {
            panic!("no holder in {r}");
        };
        assert_eq!((h.cpu, h.site, h.lock), (1, held_at, 0x40));
        let text = r.to_string();
        assert!(
            text.contains("cpu2 spinning for 1500 ms on `runqueue`"),
            "{text}"
        );
        assert!(
            text.contains(&std::format!("held by cpu1 since {held_at}")),
            "{text}"
        );
        let stats = v.classes().next().unwrap();
        assert_eq!((stats.acquired, stats.contended), (3, 1));
    }

    #[test]
    fn the_summary_lists_usage_and_edges() {
        let v = validator();
        static OUTER: LockClass = LockClass::named("outer");
        static INNER: LockClass = LockClass::named("inner");
        v.acquire(&OUTER, 1, 0, Context::TASK, Kind::Spin, here());
        v.acquire(&INNER, 2, 0, Context::TASK, Kind::Spin, here());
        v.release(&INNER, 2, 0);
        v.release(&OUTER, 1, 0);
        v.acquire(&INNER, 2, 1, Context::TASK_IRQS_OFF, Kind::Spin, here());
        let stats: Vec<_> = v.classes().collect();
        assert_eq!(stats.len(), 2);
        let (o, i) = (stats[0], stats[1]);
        assert_eq!(
            (o.class.name, o.acquired, o.edges_out, o.edges_in),
            ("outer", 1, 1, 0)
        );
        assert_eq!(
            (i.class.name, i.acquired, i.edges_out, i.edges_in),
            ("inner", 2, 0, 1)
        );
        assert!(o.irq_unsafe && !o.irq_safe);
        let line = o.to_string();
        assert!(line.starts_with("outer ") && line.contains(" U "), "{line}");
        assert!(SUMMARY_HEADER.starts_with("class"));
    }

    #[test]
    fn cpus_in_threads_taking_locks_in_one_order_get_no_reports() {
        static V: Lockdep = Lockdep::new();
        static A: LockClass = LockClass::named("a");
        static B: LockClass = LockClass::named("b");
        static C: LockClass = LockClass::named("c");
        static LOCKS: [std::sync::Mutex<u64>; 3] = [const { std::sync::Mutex::new(0) }; 3];
        const ROUNDS: usize = 3000;
        let classes = [&A, &B, &C];
        let handles: Vec<_> = (0..4)
            .map(|cpu| {
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        // A subset of A, B, C in that order; released in a round-dependent order.
                        let take: Vec<usize> = (0..3)
                            .filter(|i| (round + cpu) >> i & 1 == 1 || *i == 1)
                            .collect();
                        let ctx = if round % 3 == 0 {
                            Context::HARDIRQ
                        } else {
                            Context::TASK_IRQS_OFF
                        };
                        let mut guards = Vec::new();
                        for &i in &take {
                            let lock = &LOCKS[i];
                            let r = V.acquire(classes[i], addr(lock), cpu, ctx, Kind::Spin, here());
                            assert_eq!(r, None, "false report on cpu{cpu}");
                            guards.push((i, lock.lock().unwrap()));
                        }
                        if round % 2 == 0 {
                            guards.reverse();
                        }
                        for (i, mut g) in guards {
                            *g += 1;
                            assert_eq!(V.release(classes[i], addr(&LOCKS[i]), cpu), None);
                        }
                    }
                    assert_eq!(V.held(cpu).count(), 0);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(V.warnings_on(), "nothing was reported");
        assert!(V.has_edge(&A, &B) && V.has_edge(&B, &C) && V.has_edge(&A, &C));
        assert!(!V.has_edge(&B, &A) && !V.has_edge(&C, &B) && !V.has_edge(&C, &A));
        let total: u64 = V.classes().map(|s| s.acquired).sum();
        let locked: u64 = LOCKS.iter().map(|l| *l.lock().unwrap()).sum();
        assert_eq!(total, locked);
        assert!(V.classes().all(|s| s.irq_safe && !s.irq_unsafe));
    }

    #[test]
    fn the_kernel_functions_reach_the_global_validator() {
        const { assert!(ENABLED, "on in test builds") };
        static K: LockClass = LockClass::named("kernel-global");
        let k = 0xdead_0000;
        assert_eq!(
            acquire(&K, k, 7, Context::TASK_IRQS_OFF, Kind::Spin, here()),
            None
        );
        assert_eq!(held(7).next().map(|h| h.lock), Some(k));
        assert!(classes().any(|s| s.class.name == "kernel-global"));
        assert_eq!(release(&K, k, 7), None);
    }
}
