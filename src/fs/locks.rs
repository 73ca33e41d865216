//! The file system's three locks, and the only place they are taken (chapter 22, "A file
//! system in memory").
//!
//! | lock | protects | kind |
//! |------|----------|------|
//! | fd-table lock, one per `FdTable` | which file each descriptor number names | spin |
//! | namespace lock, one per ramfs | the directory tree: every directory's entries and parent, the offsets of open directories | spin |
//! | inode lock, one per inode | a regular file's size and page list (and so its bytes), the offsets of its open files | spin |
//!
//! **Order**: fd table, then namespace, then inode; never the other way, and never two inode
//! locks at once. The order follows the path of a system call: a descriptor leads to an open
//! file, a path leads through the tree to an inode, and an inode's bytes come last. Code that
//! holds the namespace lock may take one inode lock (listing a directory with each file's size);
//! code that holds an inode lock takes nothing else of the fs. The fd-table lock is in practice
//! never held while another is taken: a descriptor's file is cloned out, and the table unlocked,
//! before any operation on it.
//!
//! **Why spin locks**: no critical section here waits for anything. The longest one copies
//! at most the caller's buffer, a page at a time, from RAM to RAM; the callers (the system-call
//! layer) hand in kernel buffers and copy to and from user memory outside these locks, so no
//! page fault can happen inside. Heap and page allocations inside them take the allocator's own
//! spin lock, which is a leaf. A sleeping lock would cost two context switches where the wait is
//! a few microseconds.
//!
//! Every acquisition goes through the three `lock_*` functions below, so that the kernel can
//! choose at boot between these fine-grained locks alone and, under the subsystem strategy
//! (src/proc/locking.rs, chapter 25), one lock for the whole file system taken before each of
//! them (`serialize_with`): it is recursive, so the namespace-then-inode nesting takes it once.
//!
//! `Broken` holds the deliberately broken variants the stress test must catch (chapter 22, "What
//! goes wrong without the locks"). Each splits one critical section in two, the classic
//! check-then-act bug, which breaks the fs's invariants without any undefined behaviour.

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::sync::biglock::{BigLock, Hold};
use crate::sync::spinlock::DefaultRawLock;
use crate::sync::{SpinLock, SpinLockGuard};

/// The lock over the directory tree of one ramfs.
pub type NamespaceLock<T> = SpinLock<T>;
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

pub type NamespaceGuard<'a, T> = FsGuard<'a, T>;
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

#[track_caller]
fn subsystem() -> Hold {
    let lock = SUBSYSTEM_LOCK.load(Ordering::Acquire);
    // SAFETY: only `serialize_with` stores, from a `&'static BigLock`.
    Hold::take((!lock.is_null()).then(|| unsafe { &*lock }))
}

/// A namespace lock. Every one is built here, so the lock validator sees one class.
pub fn new_namespace_lock<T>(tree: T) -> NamespaceLock<T> {
    SpinLock::named("fs.namespace", tree)
}

/// An inode lock (one validator class for all inodes: no code holds two at once).
pub fn new_inode_lock<T>(contents: T) -> InodeLock<T> {
    SpinLock::named("fs.inode", contents)
}

/// An fd-table lock.
pub fn new_fd_table_lock<T>(slots: T) -> FdTableLock<T> {
    SpinLock::named("fs.fdtable", slots)
}

/// Take the namespace lock: first in the fs's order, after an fd-table lock if one is held.
#[inline]
#[track_caller]
pub fn lock_namespace<T>(lock: &NamespaceLock<T>) -> NamespaceGuard<'_, T> {
    let _subsystem = subsystem();
    FsGuard {
        guard: lock.lock(),
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
    /// An O_CREAT open looks the name up under the namespace lock, lets go, and inserts under
    /// a second acquisition: two O_EXCL creators can both succeed.
    split_create: AtomicBool,
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
