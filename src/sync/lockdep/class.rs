//! Lock classes: how a lock finds its class, and what the validator records per class (chapter
//! 12, "The lock validator").
//!
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
//! Each class has a slot in a fixed table of `MAX_CLASSES`: its key and name, its counters
//! (`acquired`, `contended`), the first site and CPU of each IRQ usage (taken in hardirq
//! context; taken with IRQs enabled), and its outgoing edges of the lock-order graph as a
//! bitset (src/sync/lockdep/graph.rs). A class used both ways is reported once
//! (`irq_report`): an interrupt can spin forever on a lock that the code it interrupted holds.
//! `classes` turns the table into the shell's `locks` listing.

use core::fmt;
use core::panic::Location;
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering,
};

use super::report::{Report, Usage};
use super::{Lockdep, Site, load_site, site_ptr};

/// Cached in `LockClass::id` when the class table was full: the lock goes unvalidated.
pub(super) const UNTRACKED: u16 = u16::MAX;

/// Usage bits of a class.
pub(super) const USED_IN_HARDIRQ: u8 = 1;
pub(super) const USED_WITH_IRQS_ON: u8 = 2;

/// The key that makes a lock part of a class, usually embedded in the lock.
pub struct LockClass {
    pub(super) name: &'static str,
    pub(super) defined_at: Site,
    /// 0: not looked up yet; 1..=MAX_CLASSES: table slot + 1; `UNTRACKED`: the table was full.
    pub(super) id: AtomicU16,
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

/// One class in the table. Slots fill in order and are never freed.
pub(super) struct ClassSlot {
    /// Null while free; set once, by compare-exchange, to the class's defining location.
    pub(super) key: AtomicPtr<Location<'static>>,
    pub(super) name_ptr: AtomicPtr<u8>,
    /// Stored after `name_ptr` (release); 0 means no name (yet).
    pub(super) name_len: AtomicUsize,
    pub(super) acquired: AtomicU64,
    pub(super) contended: AtomicU64,
    pub(super) usage: AtomicU8,
    pub(super) hardirq_site: AtomicPtr<Location<'static>>,
    pub(super) hardirq_cpu: AtomicU8,
    pub(super) irqs_on_site: AtomicPtr<Location<'static>>,
    pub(super) irqs_on_cpu: AtomicU8,
    pub(super) irq_reported: AtomicBool,
    /// Bit j: class j was taken while this one was held (the edge this -> j).
    pub(super) after: AtomicU64,
}

impl ClassSlot {
    pub(super) const fn new() -> Self {
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

    pub(super) fn name(&self) -> &'static str {
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
    pub(super) fn mark_usage(
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

impl Lockdep {
    /// The class's table slot, registering it on first use. `None` if the table is full.
    #[inline]
    pub(super) fn class_index(&self, class: &LockClass) -> Option<usize> {
        match class.id.load(Ordering::Relaxed) {
            0 => self.register(class),
            UNTRACKED => None,
            id => Some(id as usize - 1),
        }
    }

    /// The first use of `class`: find its slot, or take a free one.
    #[cold]
    #[inline(never)]
    fn register(&self, class: &LockClass) -> Option<usize> {
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

    pub(super) fn info(&self, index: usize) -> ClassInfo {
        let slot = &self.classes[index];
        ClassInfo {
            id: index as u16,
            name: slot.name(),
            defined_at: load_site(&slot.key).unwrap_or(Location::caller()),
        }
    }

    pub(super) fn irq_report(&self, index: usize, cpu: usize) -> Option<Report> {
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

    /// Count a contended acquisition (the lock had to wait) for `locks`.
    pub fn note_contended(&self, class: &LockClass) {
        if let Some(i) = self.class_index(class) {
            self.classes[i].contended.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The slots registered so far: 0..n (slots fill in order).
    pub(super) fn registered(&self) -> core::ops::Range<usize> {
        0..self
            .classes
            .iter()
            .take_while(|s| !s.key.load(Ordering::Acquire).is_null())
            .count()
    }

    /// Every registered class with its counters, for a `locks` command.
    pub fn classes(&self) -> impl Iterator<Item = ClassStats> + '_ {
        let registered = self.registered().end;
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
