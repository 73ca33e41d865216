//! Catching a reader the grace period missed: poisoning and the quarantine (feature
//! `rcu-poison`; chapter 18, "RCU").
//!
//! A use after free usually goes unseen: the memory still holds the old values. So, with the
//! `rcu-poison` feature (on by default, off in the benchmark kernel), the callback *poisons*
//! the node instead of freeing it: the magic word becomes `0x6b6b6b6b_<pid>`, the pid becomes
//! [`POISON_PID`], and the payload, once dropped, is overwritten with `0x6b` bytes (Linux's
//! `POISON_FREE`). Every reader checks the magic and the pid of every node it visits; one that
//! finds poison counts it ([`ProcessList::poison_report`](super::ProcessList::poison_report): how many, and the first pid and
//! CPU), logs one `BUG` line, and stops its walk there.
//!
//! For a reader to *see* the poison, the poisoned memory must still be a node: if it went back
//! to the allocator it could already be someone else's, and the reader would read whatever the
//! new owner wrote, perhaps a pointer that looks like a link, and crash or wander. So poisoned
//! nodes sit in a quarantine before the real free. Two ways were possible:
//! - **a second grace period** (poison, then `call_rcu` again, then free). It costs nothing
//!   extra to write, but it only helps when the RCU is right, and then nobody needs it: the bug
//!   poisoning is there to catch is a grace period that ends too early, and the second one ends
//!   too early as well. With [`BrokenRcu`](crate::rcu::BrokenRcu) both are empty, and the node
//!   would be back in the allocator at once.
//! - **a bounded FIFO counted in removals**, chosen here. The list keeps its poisoned nodes in
//!   order of removal and frees the oldest only when more than `quarantine` of them wait
//!   ([`DEFAULT_QUARANTINE`], or [`ProcessList::with_quarantine`](super::ProcessList::with_quarantine)). This does not depend on the
//!   RCU under test, so a reader that a broken RCU left behind still finds poison for the next
//!   `quarantine` removals; and the memory it costs is bounded (a few KiB: the payload, often
//!   an `Arc`, is dropped at poisoning time; only the node waits).
//!
//! The list frees quarantined nodes itself, under its writer lock ([`ProcessList::remove`](super::ProcessList::remove),
//! [`ProcessList::flush_quarantine`](super::ProcessList::flush_quarantine), `Drop`). The callback only poisons and then marks the node
//! reclaimed, so it never needs the list; the list, not the callback, decides when memory goes.
//! The magic is the node's first word (`repr(C)`): even after the real free, the allocator
//! writes its free-list link there, and a reader that got that far still sees "not live".
//!
//! Poisoning is a debugging aid, not a proof. Overwriting the payload while a (buggy-RCU)
//! reader holds a reference to it is a data race; with a correct RCU nobody holds one, which is
//! the whole point. The tests that run the broken RCU only let readers look at the node's
//! atomic fields (magic, pid, link), never at the payload.

use alloc::boxed::Box;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Pid;
use super::node::ProcNode;

/// True when this kernel poisons removed nodes and its readers check for poison.
pub const POISONING: bool = cfg!(feature = "rcu-poison");

/// A linked node's magic word ("PROCLIVE").
pub(super) const MAGIC_LIVE: u64 = 0x5052_4f43_4c49_5645;
/// The high half of a poisoned node's magic; the low half keeps the pid it had.
pub(super) const POISON_TAG: u64 = 0x6b6b_6b6b;
/// What a poisoned payload's bytes become (Linux's `POISON_FREE`).
pub const POISON_BYTE: u8 = 0x6b;
/// A poisoned node's pid.
pub const POISON_PID: Pid = 0x6b6b_6b6b;
/// Poisoned nodes a list keeps before it really frees the oldest.
pub const DEFAULT_QUARANTINE: usize = 64;

/// A reader that met a poisoned node: the first one seen, as [`ProcessList::poison_report`](super::ProcessList::poison_report)
/// tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoisonSighting {
    /// The pid the node had when it was poisoned.
    pub pid: Pid,
    /// The reader's CPU (`None` before per-CPU setup).
    pub cpu: Option<usize>,
}

/// Readers that met poison: a reader the RCU let outlive its grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoisonReport {
    pub sightings: u64,
    pub first: Option<PoisonSighting>,
}

impl fmt::Display for PoisonReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} poison sightings", self.sightings)?;
        if let Some(first) = self.first {
            write!(f, " (first: pid {}", first.pid)?;
            match first.cpu {
                Some(cpu) => write!(f, " on cpu{cpu})"),
                None => write!(f, ")"),
            }?;
        }
        Ok(())
    }
}

/// The list's record of poison sightings. `first` packs a set flag, the CPU + 1 (0: none) and
/// the pid into one word, so the first sighting is claimed with one compare-and-swap.
pub(super) struct PoisonLog {
    sightings: AtomicU64,
    first: AtomicU64,
    logged: AtomicBool,
}

const FIRST_SET: u64 = 1 << 63;

impl PoisonLog {
    pub(super) const fn new() -> Self {
        PoisonLog {
            sightings: AtomicU64::new(0),
            first: AtomicU64::new(0),
            logged: AtomicBool::new(false),
        }
    }

    #[cold]
    pub(super) fn saw(&self, magic: u64, pid_field: Pid, cpu: Option<usize>) {
        // A poisoned magic keeps the pid; anything else (the allocator's link, garbage) does
        // not, and the pid field is the best guess left.
        let pid = if magic >> 32 == POISON_TAG {
            magic as u32
        } else {
            pid_field
        };
        self.sightings.fetch_add(1, Ordering::Relaxed);
        let cpu_field = cpu.map_or(0, |c| c as u64 + 1) & 0x7fff_ffff;
        let packed = FIRST_SET | cpu_field << 32 | u64::from(pid);
        let _ = self
            .first
            .compare_exchange(0, packed, Ordering::Relaxed, Ordering::Relaxed);
        if !self.logged.swap(true, Ordering::Relaxed) {
            log::error!(target: "proclist",
                "BUG: a reader on cpu{} met pid {pid}'s node after its grace period (magic {magic:#018x}): \
                 the RCU let a reader outlive a grace period",
                cpu.map_or(-1, |c| c as isize)
            );
        }
    }

    pub(super) fn report(&self) -> PoisonReport {
        let first = self.first.load(Ordering::Relaxed);
        PoisonReport {
            sightings: self.sightings.load(Ordering::Relaxed),
            first: (first & FIRST_SET != 0).then(|| {
                let cpu = (first >> 32) & 0x7fff_ffff;
                PoisonSighting {
                    pid: first as u32,
                    cpu: cpu.checked_sub(1).map(|c| c as usize),
                }
            }),
        }
    }
}

/// Removed nodes in order of removal, linked through `retired_next`: waiting for their grace
/// period, then poisoned, until the list frees them.
pub(super) struct Quarantine<T> {
    pub(super) first: *mut ProcNode<T>,
    pub(super) last: *mut ProcNode<T>,
    pub(super) len: usize,
}

// SAFETY: the pointers are to nodes the list owns; they are reached only under the writer lock.
unsafe impl<T: Send + Sync> Send for Quarantine<T> {}

impl<T> Quarantine<T> {
    pub(super) const fn new() -> Self {
        Quarantine {
            first: core::ptr::null_mut(),
            last: core::ptr::null_mut(),
            len: 0,
        }
    }

    pub(super) fn push(&mut self, node: NonNull<ProcNode<T>>) {
        // SAFETY: a retired node stays allocated while it is in the quarantine.
        unsafe { node.as_ref() }
            .retired_next
            .store(core::ptr::null_mut(), Ordering::Relaxed);
        if self.last.is_null() {
            self.first = node.as_ptr();
        } else {
            // SAFETY: `last` is in the quarantine, hence allocated.
            unsafe { &*self.last }
                .retired_next
                .store(node.as_ptr(), Ordering::Relaxed);
        }
        self.last = node.as_ptr();
        self.len += 1;
    }

    /// Free up to `limit` nodes whose callbacks have run, oldest first (a node still waiting
    /// for its grace period is skipped, not waited for). Returns how many were freed.
    pub(super) fn free_reclaimed(&mut self, limit: usize) -> usize {
        let mut freed = 0;
        let mut prev: *mut ProcNode<T> = core::ptr::null_mut();
        let mut p = self.first;
        while freed < limit
            && let Some(node) = NonNull::new(p)
        {
            // SAFETY: nodes in the quarantine are allocated until freed right here.
            let n = unsafe { node.as_ref() };
            p = n.retired_next.load(Ordering::Relaxed);
            // Acquire: the callback's poisoning happens before our free.
            if !n.reclaimed.load(Ordering::Acquire) {
                prev = node.as_ptr();
                continue;
            }
            if prev.is_null() {
                self.first = p;
            } else {
                // SAFETY: `prev` is in the quarantine, hence allocated.
                unsafe { &*prev }.retired_next.store(p, Ordering::Relaxed);
            }
            if self.last == node.as_ptr() {
                self.last = prev;
            }
            self.len -= 1;
            freed += 1;
            // SAFETY: the node came from Box::leak in `insert`; its callback has run (it
            // dropped the payload, which the MaybeUninit will not drop again), and nothing
            // refers to it: the list unlinked it a grace period ago and it just left the
            // quarantine.
            drop(unsafe { Box::from_raw(node.as_ptr()) });
        }
        freed
    }

    /// True if some node has not been through its callback yet.
    pub(super) fn waiting(&self) -> bool {
        let mut p = self.first;
        while let Some(node) = NonNull::new(p) {
            // SAFETY: nodes in the quarantine are allocated.
            let n = unsafe { node.as_ref() };
            if !n.reclaimed.load(Ordering::Acquire) {
                return true;
            }
            p = n.retired_next.load(Ordering::Relaxed);
        }
        false
    }
}
