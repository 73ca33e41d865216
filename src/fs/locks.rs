//! The file system's locks, its read-side section, and the only place they are taken
//! (chapter 22, "A file system in memory"; chapter 26, "Data locks and RCU").
//!
//! | lock | protects | kind |
//! |------|----------|------|
//! | fd-table lock, one per `FdTable` | which file each descriptor number names | spin |
//! | directory lock, one per directory | that directory's entries (name -> inode, getdents cookies), its `dead` flag, the publication of its snapshot, the offsets of its open descriptors | spin |
//! | inode lock, one per inode | a regular file's size and page list (and so its bytes), the offsets of its open files | spin |
//! | (none: RCU) | a path walk: each directory's published snapshot of its entries | `rcu_read_lock` |
//!
//! **Order**: fd table, then directory, then inode; never the other way. Two directory locks
//! are held together only by `rmdir`, and always ancestor before descendant: the parent, then
//! the directory being removed (to mark it dead with no create inside it). Since the tree has no
//! rename, "ancestor before descendant" is one fixed order and no two CPUs can take a pair of
//! directory locks in opposite orders. The validator sees all directory locks as one class and
//! does not check the order inside it (nesting within a class is not an edge), so this rule is
//! kept by the code: only `rmdir` nests them. Never two inode locks at once. Code that holds a
//! directory lock may take one inode lock (listing a directory with each file's size); code
//! that holds an inode lock takes nothing else of the fs. The fd-table lock is in practice
//! never held while another is taken: a descriptor's file is cloned out, and the table
//! unlocked, before any operation on it.
//!
//! **Path walks take no lock.** A walk runs inside an RCU read-side section (`rcu_read_lock`
//! below) and reads each directory's snapshot, which writers replace but never change. No
//! directory lock is taken inside a read section: a writer walks first, leaves the section,
//! and only then locks the directory it changes.
//!
//! **Why spin locks**: no critical section here waits for anything. The longest one copies
//! at most the caller's buffer, a page at a time, from RAM to RAM, or copies one directory's
//! names into a new snapshot; the callers (the system-call layer) hand in kernel buffers and
//! copy to and from user memory outside these locks, so no page fault can happen inside. Heap
//! and page allocations inside them take the allocator's own spin lock, which is a leaf, and
//! `call_rcu` takes only its CPU's callback-list lock, also a leaf. A sleeping lock would cost
//! two context switches where the wait is a few microseconds.
//!
//! Every acquisition goes through the `lock_*` functions below, and every read-side section
//! through `rcu_read_lock`, so that the kernel can choose at boot between these fine-grained
//! locks alone and, under the subsystem strategy (src/proc/locking.rs, chapter 25), one lock
//! for the whole file system taken before each of them (`serialize_with`): it is recursive, so
//! the directory-then-inode nesting takes it once. The walk takes it too, so that under that
//! strategy the whole file system, readers included, runs one CPU at a time, as the strategy
//! promises.
//!
//! `Broken` holds the deliberately broken variants the stress tests must catch (chapter 22,
//! "What goes wrong without the locks"; chapter 26). Two split one critical section in two, the
//! classic check-then-act bug; the third frees a directory's old snapshot without waiting for
//! a grace period. None of them commits undefined behaviour (the third only marks the snapshot
//! freed, as a poisoning allocator would, and keeps its memory until the grace period).

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::rcu::{Rcu, RcuCallback, RcuHead, RcuReadGuard};
use crate::sync::biglock::{BigLock, Hold};
use crate::sync::preempt;
use crate::sync::spinlock::DefaultRawLock;
use crate::sync::{SpinLock, SpinLockGuard};

/// The lock over one directory's entries.
pub type DirectoryLock<T> = SpinLock<T>;
/// The lock over one inode's contents and size.
pub type InodeLock<T> = SpinLock<T>;
/// The lock over one process's descriptor table.
pub type FdTableLock<T> = SpinLock<T>;

/// A guard of one of the fs's locks, and, under the subsystem strategy, one level of the
/// whole file system's lock, taken before it and let go after it.
pub struct FsGuard<'a, T> {
    // Fields drop in order: the fine lock first, then the subsystem's.
    guard: SpinLockGuard<'a, T, DefaultRawLock>,
    _subsystem: Hold,
}

impl<T> Deref for FsGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for FsGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

pub type DirectoryGuard<'a, T> = FsGuard<'a, T>;
pub type InodeGuard<'a, T> = FsGuard<'a, T>;
pub type FdTableGuard<'a, T> = FsGuard<'a, T>;

/// The file system's one lock under the subsystem strategy (src/proc/locking.rs); none
/// otherwise.
static SUBSYSTEM_LOCK: AtomicPtr<BigLock> = AtomicPtr::new(core::ptr::null_mut());

/// Serialize the whole file system with `lock` as well as its own locks (at boot, before any
/// file is used).
pub fn serialize_with(lock: &'static BigLock) {
    SUBSYSTEM_LOCK.store(lock as *const BigLock as *mut BigLock, Ordering::Release);
}

/// Whether the whole file system is serialized by one lock (the subsystem strategy).
pub fn serialized() -> bool {
    !SUBSYSTEM_LOCK.load(Ordering::Acquire).is_null()
}

#[track_caller]
fn subsystem() -> Hold {
    let lock = SUBSYSTEM_LOCK.load(Ordering::Acquire);
    // SAFETY: only `serialize_with` stores, from a `&'static BigLock`.
    Hold::take((!lock.is_null()).then(|| unsafe { &*lock }))
}

/// A directory lock. Every one is built here, so the lock validator (and lock statistics)
/// see one class for all directories.
pub fn new_directory_lock<T>(entries: T) -> DirectoryLock<T> {
    SpinLock::named("fs.directory", entries)
}

/// An inode lock (one validator class for all inodes: no code holds two at once).
pub fn new_inode_lock<T>(contents: T) -> InodeLock<T> {
    SpinLock::named("fs.inode", contents)
}

/// An fd-table lock.
pub fn new_fd_table_lock<T>(slots: T) -> FdTableLock<T> {
    SpinLock::named("fs.fdtable", slots)
}

/// Take a directory lock: after an fd-table lock if one is held, before any inode lock. A
/// second directory lock only as `rmdir` takes it: the parent's first, then its child's.
#[inline]
#[track_caller]
pub fn lock_directory<T>(lock: &DirectoryLock<T>) -> DirectoryGuard<'_, T> {
    let _subsystem = subsystem();
    FsGuard {
        guard: lock.lock(),
        _subsystem,
    }
}

/// A path walk's read-side section: an RCU reader on this CPU and, under the subsystem
/// strategy, one level of the file system's lock, taken before the section and let go after.
pub struct ReadSection<'r> {
    // Fields drop in order: the RCU section ends first, then the subsystem's level.
    guard: RcuReadGuard<'r>,
    _subsystem: Hold,
}

impl<'r> ReadSection<'r> {
    pub fn guard(&self) -> &RcuReadGuard<'r> {
        &self.guard
    }
}

/// The RCU a file system's walks read under and its writers retire old snapshots to. The
/// kernel's file systems use the kernel's domain (`Rcu`, on whichever CPU runs); host tests
/// plug in a domain of their own whose CPUs their threads name, so that they never touch the
/// per-CPU state other tests running in parallel use.
pub trait FsRcu: Sync {
    /// Enter a read-side section on the calling CPU.
    fn read_lock(&self) -> RcuReadGuard<'_>;
    /// Queue `func(head)` on the calling CPU, to run once a grace period has passed. False, with
    /// nothing queued, when the caller has no CPU that takes part in grace periods (boot
    /// before per-CPU setup, a host thread playing no CPU).
    ///
    /// # Safety
    /// As for `Rcu::call_rcu_on`: `head` stays valid and untouched until `func` runs.
    unsafe fn call_rcu(&self, head: &RcuHead, func: RcuCallback) -> bool;
}

impl FsRcu for Rcu {
    fn read_lock(&self) -> RcuReadGuard<'_> {
        Rcu::read_lock(self)
    }

    unsafe fn call_rcu(&self, head: &RcuHead, func: RcuCallback) -> bool {
        // Preemption off, so that the CPU found is the one queued on.
        preempt::preempt_disable();
        let cpu = crate::percpu::current_id().filter(|&c| self.is_online(c));
        if let Some(cpu) = cpu {
            // SAFETY: forwarded contract.
            unsafe { self.call_rcu_on(cpu, head, func) };
        }
        preempt::preempt_enable();
        cpu.is_some()
    }
}

/// Begin a path walk: no lock (under the fine strategy), just `rcu.read_lock()`. Nothing in
/// the section may wait: no directory lock, no sleeping.
#[inline]
#[track_caller]
pub fn rcu_read_lock(rcu: &dyn FsRcu) -> ReadSection<'_> {
    // The subsystem lock may make this task wait, so it comes before the section, which
    // turns preemption off.
    let _subsystem = subsystem();
    ReadSection {
        guard: rcu.read_lock(),
        _subsystem,
    }
}

/// Take an inode lock: last in the fs's order.
#[inline]
#[track_caller]
pub fn lock_inode<T>(lock: &InodeLock<T>) -> InodeGuard<'_, T> {
    let _subsystem = subsystem();
    FsGuard {
        guard: lock.lock(),
        _subsystem,
    }
}

/// Take an fd-table lock: first in the fs's order.
#[inline]
#[track_caller]
pub fn lock_fd_table<T>(lock: &FdTableLock<T>) -> FdTableGuard<'_, T> {
    let _subsystem = subsystem();
    FsGuard {
        guard: lock.lock(),
        _subsystem,
    }
}

/// Iterations of the busy loop inside a broken variant's gap (tens of microseconds under QEMU).
const GAP_SPINS: u32 = 4096;

/// The deliberately broken variants of one ramfs, off unless a test turns one on. They belong
/// to one file system, not to all, so a test that breaks its own ramfs leaves every other alone.
#[derive(Default)]
pub struct Broken {
    /// An O_APPEND write reads the file's size under the inode lock, lets go, and writes at
    /// that offset under a second acquisition: two appenders can pick the same offset.
    split_append: AtomicBool,
    /// An O_CREAT open looks the name up under the directory lock, lets go, and inserts under
    /// a second acquisition: two O_EXCL creators can both succeed.
    split_create: AtomicBool,
    /// A writer that replaces a directory's snapshot treats the old one as freed at once
    /// instead of after a grace period: it marks it freed (poisons it) as soon as the new one
    /// is published, so a path walk still reading it finds the mark. (Its memory still goes
    /// back only after the grace period, so the test never reads freed memory.)
    free_snapshot_at_once: AtomicBool,
}

impl Broken {
    /// Turn the split O_APPEND write on or off (tests only).
    pub fn set_split_append(&self, on: bool) {
        self.split_append.store(on, Ordering::SeqCst);
    }
    /// Turn the split O_CREAT lookup-then-insert on or off (tests only).
    pub fn set_split_create(&self, on: bool) {
        self.split_create.store(on, Ordering::SeqCst);
    }
    /// Turn the snapshot freed without a grace period on or off (tests only).
    pub fn set_free_snapshot_at_once(&self, on: bool) {
        self.free_snapshot_at_once.store(on, Ordering::SeqCst);
    }
    pub(crate) fn free_snapshot_at_once(&self) -> bool {
        self.free_snapshot_at_once.load(Ordering::Relaxed)
    }
    pub(crate) fn split_append(&self) -> bool {
        self.split_append.load(Ordering::Relaxed)
    }
    pub(crate) fn split_create(&self) -> bool {
        self.split_create.load(Ordering::Relaxed)
    }
    /// The gap a broken variant leaves between its two acquisitions, held open on purpose.
    ///
    /// Two CPUs must be inside the gap at the same moment for the bug to show. Under QEMU the
    /// vCPUs are host threads that a busy host runs in turns, so a gap of a few instructions is
    /// rarely shared; one this long makes the gap most of each operation, and then any moment
    /// two vCPUs run together shows the bug.
    pub(crate) fn hold_the_gap_open(&self) {
        for i in 0..GAP_SPINS {
            core::hint::black_box(i);
        }
    }
}
