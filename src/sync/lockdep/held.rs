//! Held-lock stacks: which locks each CPU holds, and since where (chapter 12, "The lock
//! validator").
//!
//! Per CPU, a stack of up to `MAX_HELD` held locks (class, lock address, site, in hardirq or
//! not). `acquire` (src/sync/lockdep/mod.rs) checks it for recursion (the lock is on it
//! already: spinning would never end), adds an edge from every lock on it, and pushes the new
//! one; `release` takes a lock off it, in any order. A CPU's stack is written only by that CPU
//! (and by interrupts on it, which finish before the interrupted code resumes), in an order
//! that lets an interrupt read it at any instruction: an entry is marked invalid (class 0)
//! while it changes. Other CPUs read it only for diagnostics: `holder` and `stuck_report` name
//! the CPU that holds a lock another has spun on for far too long, and `held` is what the
//! scheduler checks before it switches tasks (src/task/sched/switch.rs).

use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU16, AtomicUsize, Ordering};

use super::class::{ClassInfo, LockClass};
use super::report::Report;
use super::{Lockdep, MAX_HELD, Site, load_site};

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

/// One entry of a CPU's held-lock stack. `class` 0 marks it invalid (free or changing).
pub(super) struct HeldSlot {
    pub(super) class: AtomicU16,
    pub(super) lock: AtomicUsize,
    pub(super) site: AtomicPtr<Location<'static>>,
    pub(super) in_hardirq: AtomicBool,
}

impl HeldSlot {
    pub(super) const fn new() -> Self {
        HeldSlot {
            class: AtomicU16::new(0),
            lock: AtomicUsize::new(0),
            site: AtomicPtr::new(core::ptr::null_mut()),
            in_hardirq: AtomicBool::new(false),
        }
    }

    /// Fill the entry; readers skip it until the final release store of `class`.
    pub(super) fn write(
        &self,
        class: u16,
        lock: usize,
        site: *mut Location<'static>,
        in_hardirq: bool,
    ) {
        self.class.store(0, Ordering::Relaxed);
        self.lock.store(lock, Ordering::Release);
        self.site.store(site, Ordering::Release);
        self.in_hardirq.store(in_hardirq, Ordering::Release);
        self.class.store(class, Ordering::Release);
    }
}

/// A CPU's held locks, on a cache line of its own.
#[repr(align(64))]
pub(super) struct CpuHeld {
    /// Entries `0..depth` are in use (an entry being changed has class 0).
    pub(super) depth: AtomicUsize,
    /// Locks taken while the stack was full: released without complaint.
    pub(super) untracked: AtomicUsize,
    pub(super) slots: [HeldSlot; MAX_HELD],
}

impl CpuHeld {
    pub(super) const fn new() -> Self {
        CpuHeld {
            depth: AtomicUsize::new(0),
            untracked: AtomicUsize::new(0),
            slots: [const { HeldSlot::new() }; MAX_HELD],
        }
    }
}

impl Lockdep {
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
            None => (self.cpus_seen.load(Ordering::Relaxed).without(except))
                .iter()
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
}
