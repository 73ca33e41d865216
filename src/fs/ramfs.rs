//! The ramfs: one directory tree whose files live in RAM (chapter 22, "A file system in
//! memory"; its path lookup is chapter 26's, "Data locks and RCU").
//!
//! No virtual file system layer, no block device, no cache: the tree *is* the file system.
//! - A **directory** (`Directory`) keeps its entries (name -> inode) twice. The writers' copy,
//!   behind the directory's own lock, is what create, unlink, mkdir, rmdir and getdents change
//!   and read. The readers' copy is an immutable *snapshot* of the names, published through an
//!   `RcuPointer`: a path walk reads it inside an RCU read-side section and takes no lock at
//!   all. A writer, holding the directory's lock, builds a new snapshot, publishes it with one
//!   release store, and hands the old one to `call_rcu`, which frees it once every walk that
//!   might still read it has finished (a grace period).
//! - An **inode** (`Inode`) is a file or directory. A regular file's size and pages are behind
//!   the inode's own lock, so reads and writes of different files never wait for each other or
//!   for any directory.
//! - An **open file** (`OpenFile`) is one `open`: inode, access mode, offset.
//!
//! An inode lives as long as something refers to it: a directory entry or an open file (`Arc`).
//! Unlinking a file that is open removes the name; the bytes go when the last open file closes,
//! as in Unix. Snapshots hold only weak references (`Weak`), so a walk that meets a name whose
//! inode is already gone answers ENOENT, and freeing a snapshot (in the RCU callback, in
//! interrupt context) never frees an inode: an inode's pages are always freed by the process
//! that dropped its last strong reference. Limits per file (`Limits::max_file_size`, EFBIG),
//! on all pages (ENOSPC) and on the number of inodes (ENOSPC) keep a program from exhausting
//! memory through the fs.
//!
//! Copy-on-write of a whole name map per change costs O(entries) per create or unlink: fine
//! for the directories of a few hundred entries this kernel sees, and the price of the
//! simplest lock-free walk. Linux instead hashes every (parent, name) pair into one dentry
//! cache whose entries are added and removed one by one under RCU, with a sequence count per
//! dentry (`d_seq`) to notice a change under a walk.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::{Arc, Weak};
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use super::file::{File, FileKind, flags::*};
use super::locks::{self, Broken, DirectoryLock, FsRcu, InodeLock, ReadSection};
use super::pages::{PAGE_SIZE, Page, PageSource};
use crate::errno::{Errno, SysResult};
use crate::rcu::{RcuHead, RcuPointer};

/// An inode number.
pub type Ino = u64;
/// The root directory's inode number (Linux's filesystems start at 1 or 2 too).
pub const ROOT_INO: Ino = 1;
/// The longest name of one path component, in bytes (Linux's NAME_MAX).
pub const NAME_MAX: usize = 255;
/// The longest path, in bytes, with its terminating NUL (Linux's PATH_MAX).
pub const PATH_MAX: usize = 4096;

/// How much one ramfs may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest size of one file, in bytes: writing past it is EFBIG.
    pub max_file_size: usize,
    /// Pages of contents for all files together: past it, ENOSPC.
    pub max_pages: usize,
    /// Files and directories, the root included: past it, ENOSPC.
    pub max_inodes: usize,
}

impl Default for Limits {
    /// 16 MiB per file, 64 MiB and 4096 inodes in all.
    fn default() -> Self {
        Limits {
            max_file_size: 16 << 20,
            max_pages: (64 << 20) / PAGE_SIZE,
            max_inodes: 4096,
        }
    }
}

/// What a ramfs holds right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub inodes: usize,
    pub pages: usize,
    /// Pages the page source has handed out and not had back (to every user of the source).
    pub source_outstanding: usize,
}

/// What every inode of one ramfs shares: where pages come from, and the fs's counts.
struct Shared {
    pages: &'static dyn PageSource,
    limits: Limits,
    pages_in_use: AtomicUsize,
    inodes: AtomicUsize,
    next_ino: AtomicU64,
}

impl Shared {
    /// Count one more page against the limit, or say ENOSPC.
    fn reserve_page(&self) -> SysResult<()> {
        self.pages_in_use
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.limits.max_pages).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| Errno::ENOSPC)
    }

    /// Count one more inode against the limit, or say ENOSPC. One atomic step, so creators in
    /// different directories (under different locks) cannot both take the last one.
    fn reserve_inode(&self) -> SysResult<()> {
        self.inodes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.limits.max_inodes).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| Errno::ENOSPC)
    }

    fn free_page(&self, page: Page) {
        self.pages.free(page);
        self.pages_in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A regular file's bytes: `size`, and one slot per page of it. A `None` slot is a hole (a
/// write past the end skipped it) and reads as zeros.
struct Contents {
    size: usize,
    pages: Vec<Option<Page>>,
}

/// A file or a directory.
pub struct Inode {
    ino: Ino,
    kind: FileKind,
    shared: Arc<Shared>,
    /// The inode lock: guards `Contents` (size and pages) and the offsets of this inode's open
    /// files. Last in the fs's lock order. Directories have one too, always empty: their
    /// entries are in `directory`.
    contents: InodeLock<Contents>,
    /// A directory's entries (None for a regular file).
    directory: Option<Directory>,
}

impl Inode {
    pub fn ino(&self) -> Ino {
        self.ino
    }
    pub fn kind(&self) -> FileKind {
        self.kind
    }
    /// This directory's entries, or ENOTDIR.
    fn directory(&self) -> SysResult<&Directory> {
        self.directory.as_ref().ok_or(Errno::ENOTDIR)
    }
    /// The size in bytes (0 for a directory).
    pub fn size(&self) -> usize {
        locks::lock_inode(&self.contents).size
    }

    /// Copy from `offset` into `buf`; the bytes copied. The caller holds the inode lock.
    fn read_at(&self, contents: &Contents, offset: usize, buf: &mut [u8]) -> usize {
        if offset >= contents.size {
            return 0;
        }
        let len = buf.len().min(contents.size - offset);
        let mut done = 0;
        while done < len {
            let at = offset + done;
            let (index, within) = (at / PAGE_SIZE, at % PAGE_SIZE);
            let chunk = (PAGE_SIZE - within).min(len - done);
            let dst = &mut buf[done..done + chunk];
            match contents.pages.get(index).copied().flatten() {
                // SAFETY: the page belongs to this inode's contents, whose lock the caller
                // holds; `within + chunk <= PAGE_SIZE`.
                Some(page) => unsafe {
                    let src = self.shared.pages.bytes(page).add(within);
                    core::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), chunk);
                },
                None => dst.fill(0),
            }
            done += chunk;
        }
        len
    }

    /// Copy `buf` in at `offset`, growing the file; the bytes copied (fewer than asked when the
    /// fs fills up after the first byte). The caller holds the inode lock.
    fn write_at(&self, contents: &mut Contents, offset: usize, buf: &[u8]) -> SysResult<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let limit = self.shared.limits.max_file_size;
        if offset >= limit {
            return Err(Errno::EFBIG);
        }
        let len = buf.len().min(limit - offset);
        let mut done = 0;
        while done < len {
            let at = offset + done;
            let (index, within) = (at / PAGE_SIZE, at % PAGE_SIZE);
            let chunk = (PAGE_SIZE - within).min(len - done);
            if contents.pages.len() <= index {
                contents.pages.resize(index + 1, None);
            }
            let page = match contents.pages[index] {
                Some(page) => page,
                None => match self.new_page() {
                    Ok(page) => *contents.pages[index].insert(page),
                    Err(e) if done == 0 => return Err(e),
                    Err(_) => break,
                },
            };
            // SAFETY: as in read_at; the page is this inode's and the caller holds its lock.
            unsafe {
                let dst = self.shared.pages.bytes(page).add(within);
                core::ptr::copy_nonoverlapping(buf[done..].as_ptr(), dst, chunk);
            }
            done += chunk;
        }
        contents.size = contents.size.max(offset + done);
        Ok(done)
    }

    fn new_page(&self) -> SysResult<Page> {
        self.shared.reserve_page()?;
        self.shared.pages.alloc_zeroed().ok_or_else(|| {
            self.shared.pages_in_use.fetch_sub(1, Ordering::Relaxed);
            Errno::ENOMEM
        })
    }

    /// Cut or extend to `size` (extension reads as zeros). The caller holds the inode lock.
    fn truncate(&self, contents: &mut Contents, size: usize) -> SysResult<()> {
        if size > self.shared.limits.max_file_size {
            return Err(Errno::EFBIG);
        }
        if size < contents.size {
            let keep = size.div_ceil(PAGE_SIZE);
            for page in contents
                .pages
                .drain(keep.min(contents.pages.len())..)
                .flatten()
            {
                self.shared.free_page(page);
            }
            // The kept last page's tail must read as zeros if the file grows again.
            if let Some(Some(page)) = contents.pages.get(size / PAGE_SIZE) {
                let within = size % PAGE_SIZE;
                // SAFETY: this inode's page, under its lock; `within < PAGE_SIZE`.
                unsafe {
                    let p = self.shared.pages.bytes(*page).add(within);
                    core::ptr::write_bytes(p, 0, PAGE_SIZE - within);
                }
            }
        }
        contents.size = size;
        Ok(())
    }
}

impl Drop for Inode {
    /// The last reference is gone (no entry, no open file): the pages go back.
    fn drop(&mut self) {
        let pages = core::mem::take(&mut locks::lock_inode(&self.contents).pages);
        for page in pages.into_iter().flatten() {
            self.shared.free_page(page);
        }
        self.shared.inodes.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One name in a directory. `cookie` is its place in `getdents64`'s order: given when the
/// entry is made and never changed, so a listing resumed after others are added or removed
/// neither repeats nor skips an entry that stayed.
struct Entry {
    inode: Arc<Inode>,
    cookie: u64,
}

/// The writers' copy of a directory's entries, behind the directory lock.
struct Entries {
    names: BTreeMap<String, Entry>,
    by_cookie: BTreeMap<u64, String>,
    /// 0 and 1 are "." and "..".
    next_cookie: u64,
    /// Set by `rmdir` (under this lock and the parent's) when the directory leaves the tree. A
    /// walk may still reach a dead directory through an old snapshot of its parent; a create
    /// that finds it dead under this lock fails with ENOENT instead of adding a name nobody
    /// can ever reach.
    dead: bool,
}

impl Entries {
    fn new() -> Self {
        Entries {
            names: BTreeMap::new(),
            by_cookie: BTreeMap::new(),
            next_cookie: 2,
            dead: false,
        }
    }

    fn insert(&mut self, name: &str, inode: Arc<Inode>) -> Option<Arc<Inode>> {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        self.by_cookie.insert(cookie, name.to_string());
        let old = self
            .names
            .insert(name.to_string(), Entry { inode, cookie })?;
        self.by_cookie.remove(&old.cookie);
        Some(old.inode)
    }

    fn remove(&mut self, name: &str) -> Option<Arc<Inode>> {
        let entry = self.names.remove(name)?;
        self.by_cookie.remove(&entry.cookie);
        Some(entry.inode)
    }
}

/// The readers' copy of a directory's entries: built whole by a writer, published, and never
/// changed after. The references are weak: a snapshot never keeps an inode alive, so freeing
/// one (in an RCU callback) never frees an inode's pages.
struct Snapshot {
    /// Links the snapshot into a CPU's `call_rcu` list once it is replaced.
    head: RcuHead,
    /// Set when the snapshot is freed: by the RCU callback just before its memory goes, or at
    /// once by the broken variant. A walk checks it after each use; seeing it set means it read
    /// a freed snapshot, which correct RCU never allows.
    poisoned: AtomicBool,
    names: BTreeMap<String, Weak<Inode>>,
    /// Retired snapshots that no CPU could queue on `call_rcu` (the caller had no CPU id),
    /// linked into their file system's graveyard.
    next_buried: *mut Snapshot,
}

// SAFETY: `next_buried` is only a link, written once by the thread that buries the snapshot
// (before the compare-exchange that publishes it to the graveyard) and read when the file
// system is dropped; everything else is Send and Sync.
unsafe impl Send for Snapshot {}
// SAFETY: as above; readers share the snapshot read-only.
unsafe impl Sync for Snapshot {}

impl Snapshot {
    /// A snapshot of `entries`, on the heap, for `RcuPointer::publish`.
    fn of(entries: &Entries) -> *mut Snapshot {
        Box::into_raw(Box::new(Snapshot {
            head: RcuHead::new(),
            poisoned: AtomicBool::new(false),
            names: entries
                .names
                .iter()
                .map(|(name, entry)| (name.clone(), Arc::downgrade(&entry.inode)))
                .collect(),
            next_buried: core::ptr::null_mut(),
        }))
    }
}

/// The RCU callback that frees a replaced snapshot. It runs in interrupt context or the idle
/// loop: it frees heap memory only (the names and the weak references), takes no fs lock, and
/// never frees an inode.
///
/// # Safety
/// `head` is the `head` of a snapshot made by `Snapshot::of`, unpublished, and a grace period
/// has passed since.
unsafe fn free_snapshot(head: *mut RcuHead) {
    // SAFETY: the caller's contract: `head` is the `head` field of a live boxed Snapshot that
    // no reader can reach any more, so this is its only owner.
    unsafe {
        let snapshot = RcuHead::container::<Snapshot>(head, core::mem::offset_of!(Snapshot, head));
        (*snapshot).poisoned.store(true, Ordering::Release);
        drop(Box::from_raw(snapshot));
    }
}

/// A snapshot just replaced, which must be retired (`FsInner::retire`) once the directory lock
/// is let go.
#[must_use = "a replaced snapshot must be retired, or it leaks"]
struct Replaced(*mut Snapshot);

/// A directory: its parent, its entries (writers' copy) and its published snapshot (readers').
struct Directory {
    /// "..": None for the root, whose ".." is itself. Weak, so that a directory does not keep
    /// its parent alive: a walk that finds it gone answers ENOENT.
    parent: Option<Weak<Inode>>,
    parent_ino: Ino,
    /// The directory lock (chapter 22's table): guards the entries, the `dead` flag, the
    /// replacement of `snapshot`, and the offsets of this directory's open descriptors.
    entries: DirectoryLock<Entries>,
    /// What path walks read, without a lock, inside an RCU read-side section. Never null.
    snapshot: RcuPointer<Snapshot>,
}

impl Directory {
    fn new(parent: Option<&Arc<Inode>>) -> Self {
        let entries = Entries::new();
        Directory {
            parent: parent.map(Arc::downgrade),
            parent_ino: parent.map_or(ROOT_INO, |p| p.ino),
            snapshot: RcuPointer::new(Snapshot::of(&entries)),
            entries: locks::new_directory_lock(entries),
        }
    }

    /// The published snapshot, for as long as both the section and this directory last.
    fn snapshot<'a>(&'a self, section: &'a ReadSection<'_>) -> &'a Snapshot {
        self.snapshot
            .read(section.guard())
            .expect("a directory always has a snapshot")
    }

    /// Publish a snapshot of `entries`, which the caller changed under this directory's lock
    /// (its guard is `entries`), and return the one it replaces.
    fn republish(&self, entries: &Entries, broken: &Broken) -> Replaced {
        // SAFETY: writers hold this directory's lock (the caller's guard), so they are
        // serialised; the new snapshot is complete before the release store; it stays valid
        // until it is replaced in turn and retired, which waits for a grace period (or keeps it
        // until the file system goes, or, when the directory itself goes, no reader holds the
        // directory: see `Drop`).
        let old = unsafe { self.snapshot.publish(Snapshot::of(entries)) };
        if broken.free_snapshot_at_once() {
            // BROKEN on purpose: the old snapshot counts as freed while walks may still read
            // it. Only the mark; its memory still waits for the grace period below.
            // SAFETY: `old` was published until now and is not freed before a grace period.
            unsafe { (*old).poisoned.store(true, Ordering::Release) };
        }
        Replaced(old)
    }
}

impl Drop for Directory {
    /// The last reference to the directory's inode is gone. A walk reaches a snapshot only
    /// through an `Arc` of the directory it holds, so nobody can be reading the current one:
    /// it is freed now. (Snapshots replaced earlier were retired when they were replaced.)
    fn drop(&mut self) {
        let current = self.snapshot.load();
        // SAFETY: as above, no reader can reach `current`; it came from `Snapshot::of`.
        drop(unsafe { Box::from_raw(current) });
    }
}

/// A path cut into components, for the walk.
struct SplitPath<'p> {
    components: Vec<&'p str>,
    /// The path ended in '/': its last component must be a directory.
    trailing_slash: bool,
}

fn split(path: &str) -> SysResult<SplitPath<'_>> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if components.iter().any(|c| c.len() > NAME_MAX) {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(SplitPath {
        trailing_slash: path.ends_with('/') && !components.is_empty(),
        components,
    })
}

/// Why one step of a walk failed.
enum Miss {
    /// The answer: ENOENT, ENOTDIR.
    Errno(Errno),
    /// The snapshot read was freed under the walk (only a broken variant does that): the walk
    /// starts again.
    Poisoned,
}

impl From<Errno> for Miss {
    fn from(e: Errno) -> Self {
        Miss::Errno(e)
    }
}

/// What one ramfs is made of; `RamFs` and the open files share it.
struct FsInner {
    shared: Arc<Shared>,
    root: Arc<Inode>,
    /// The RCU the walks read under and the writers retire snapshots to: the kernel's, or a
    /// host test's own.
    rcu: &'static dyn FsRcu,
    broken: Broken,
    /// Walks that found the snapshot they read poisoned (freed): 0 unless RCU is broken.
    poisoned_reads: AtomicUsize,
    /// Replaced snapshots retired by a caller without a CPU id (host threads that play no CPU,
    /// boot before per-CPU setup). With no CPU to queue a callback on, and no way to know when
    /// such readers are done, they are kept until the file system goes.
    graveyard: AtomicPtr<Snapshot>,
}

impl FsInner {
    /// Walk `components` from the root, each a directory (`.` and `..` included): the last.
    fn walk(&self, components: &[&str], section: &ReadSection<'_>) -> Result<Arc<Inode>, Miss> {
        let mut at = self.root.clone();
        for &name in components {
            let next = self.step(&at, name, section)?;
            if next.kind != FileKind::Directory {
                return Err(Miss::Errno(Errno::ENOTDIR));
            }
            at = next;
        }
        Ok(at)
    }

    /// From directory `dir`, what `name` names: one lookup in its snapshot.
    fn step(
        &self,
        dir: &Arc<Inode>,
        name: &str,
        section: &ReadSection<'_>,
    ) -> Result<Arc<Inode>, Miss> {
        let directory = dir.directory()?;
        match name {
            "." => Ok(dir.clone()),
            ".." => match &directory.parent {
                None => Ok(dir.clone()),
                Some(parent) => parent.upgrade().ok_or(Miss::Errno(Errno::ENOENT)),
            },
            _ => {
                let snapshot = directory.snapshot(section);
                let found = snapshot.names.get(name).and_then(Weak::upgrade);
                // After the use: had the snapshot been freed meanwhile, what we read is junk.
                if snapshot.poisoned.load(Ordering::Acquire) {
                    return Err(Miss::Poisoned);
                }
                found.ok_or(Miss::Errno(Errno::ENOENT))
            }
        }
    }

    /// Run `walk` inside a read-side section, again from the start if it read a freed snapshot.
    fn under_rcu<T>(&self, walk: impl Fn(&ReadSection<'_>) -> Result<T, Miss>) -> SysResult<T> {
        loop {
            let section = locks::rcu_read_lock(self.rcu);
            match walk(&section) {
                Ok(found) => return Ok(found),
                Err(Miss::Errno(e)) => return Err(e),
                Err(Miss::Poisoned) => {
                    self.poisoned_reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The directory `components` name (for a writer, which then locks it).
    fn directory_at(&self, components: &[&str]) -> SysResult<Arc<Inode>> {
        self.under_rcu(|section| self.walk(components, section))
    }

    /// The inode `path` names. Takes no lock (under the fine strategy).
    fn lookup(&self, path: &SplitPath<'_>) -> SysResult<Arc<Inode>> {
        let Some((&last, parents)) = path.components.split_last() else {
            return Ok(self.root.clone());
        };
        let inode = self.under_rcu(|section| {
            let parent = self.walk(parents, section)?;
            self.step(&parent, last, section)
        })?;
        if path.trailing_slash && inode.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(inode)
    }

    /// Retire a snapshot `republish` replaced, after its directory lock is let go: free it
    /// after a grace period, through `call_rcu` on this CPU. Never waits.
    fn retire(&self, replaced: Replaced) {
        let old = replaced.0;
        // SAFETY: `old` is unpublished and queued once; `free_snapshot` frees exactly such a
        // snapshot after the grace period, and nothing touches it before.
        if !unsafe { self.rcu.call_rcu(&(*old).head, free_snapshot) } {
            self.bury(old);
        }
    }

    /// Keep `old` until the file system goes (a lock-free push: the graveyard only grows).
    fn bury(&self, old: *mut Snapshot) {
        let mut head = self.graveyard.load(Ordering::Relaxed);
        loop {
            // SAFETY: `old` is unpublished and ours alone until the exchange below.
            unsafe { (*old).next_buried = head };
            match self.graveyard.compare_exchange_weak(
                head,
                old,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}

impl Drop for FsInner {
    fn drop(&mut self) {
        let mut p = *self.graveyard.get_mut();
        while !p.is_null() {
            // SAFETY: buried snapshots were boxed by `Snapshot::of`, unpublished, and the file
            // system is gone, so no walk of it can read them.
            let snapshot = unsafe { Box::from_raw(p) };
            p = snapshot.next_buried;
        }
    }
}

/// One in-memory file system.
#[derive(Clone)]
pub struct RamFs {
    inner: Arc<FsInner>,
}

impl RamFs {
    /// An empty file system (just `/`) whose pages come from `pages`, read under the kernel's
    /// RCU domain.
    #[cfg(not(loom))]
    pub fn new(pages: &'static dyn PageSource, limits: Limits) -> RamFs {
        Self::with_rcu(pages, limits, crate::rcu::global())
    }

    /// Under loom there is no kernel domain (loom's atomics cannot live in a static), so each
    /// file system gets one of its own. No loom model runs a file system; this only compiles.
    #[cfg(loom)]
    pub fn new(pages: &'static dyn PageSource, limits: Limits) -> RamFs {
        let rcu: &'static crate::rcu::Rcu = Box::leak(Box::new(crate::rcu::Rcu::new()));
        Self::with_rcu(pages, limits, rcu)
    }

    /// An empty file system whose walks read under `rcu` (host tests give each file system a
    /// domain of its own, with threads playing its CPUs).
    pub fn with_rcu(
        pages: &'static dyn PageSource,
        limits: Limits,
        rcu: &'static dyn FsRcu,
    ) -> RamFs {
        let shared = Arc::new(Shared {
            pages,
            limits,
            pages_in_use: AtomicUsize::new(0),
            inodes: AtomicUsize::new(1),
            next_ino: AtomicU64::new(ROOT_INO),
        });
        let root = new_inode(&shared, FileKind::Directory, Some(Directory::new(None)));
        RamFs {
            inner: Arc::new(FsInner {
                shared,
                root,
                rcu,
                broken: Broken::default(),
                poisoned_reads: AtomicUsize::new(0),
                graveyard: AtomicPtr::new(core::ptr::null_mut()),
            }),
        }
    }

    /// The broken variants of this file system's locking, for the tests that must catch them.
    pub fn broken(&self) -> &Broken {
        &self.inner.broken
    }

    /// Path walks that read a directory snapshot already freed, and started again: 0 unless
    /// the snapshots' RCU protocol is broken (the tests check it).
    pub fn poisoned_reads(&self) -> usize {
        self.inner.poisoned_reads.load(Ordering::Relaxed)
    }

    pub fn limits(&self) -> Limits {
        self.inner.shared.limits
    }

    pub fn usage(&self) -> Usage {
        let s = &self.inner.shared;
        Usage {
            inodes: s.inodes.load(Ordering::Relaxed),
            pages: s.pages_in_use.load(Ordering::Relaxed),
            source_outstanding: s.pages.outstanding(),
        }
    }

    /// A new regular file, counted against the limit.
    fn make_file(&self) -> SysResult<Arc<Inode>> {
        let s = &self.inner.shared;
        s.reserve_inode()?;
        Ok(new_inode(s, FileKind::Regular, None))
    }

    /// A new directory in `parent`, counted against the limit.
    fn make_directory(&self, parent: &Arc<Inode>) -> SysResult<Arc<Inode>> {
        let s = &self.inner.shared;
        s.reserve_inode()?;
        Ok(new_inode(
            s,
            FileKind::Directory,
            Some(Directory::new(Some(parent))),
        ))
    }

    /// Open `path` with Linux's `flags` (`mode`, the permission bits, is accepted and ignored:
    /// the ramfs has no owners or permissions). Paths without a leading '/' start at the root,
    /// which is every process's current directory.
    pub fn open(&self, path: &str, flags: u32, _mode: u32) -> SysResult<Arc<OpenFile>> {
        let access = flags & O_ACCMODE;
        if access == O_ACCMODE {
            return Err(Errno::EINVAL);
        }
        let path = split(path)?;
        let inode = if flags & O_CREAT != 0 {
            self.open_creating(&path, flags)?
        } else {
            self.inner.lookup(&path)?
        };
        match inode.kind {
            FileKind::Directory if access != O_RDONLY || flags & O_CREAT != 0 => {
                return Err(Errno::EISDIR);
            }
            FileKind::Directory => {}
            _ if flags & O_DIRECTORY != 0 => return Err(Errno::ENOTDIR),
            _ => {
                if flags & O_TRUNC != 0 && access != O_RDONLY {
                    let mut contents = locks::lock_inode(&inode.contents);
                    inode.truncate(&mut contents, 0)?;
                }
            }
        }
        Ok(Arc::new(OpenFile {
            inode,
            fs: self.inner.clone(),
            readable: access != O_WRONLY,
            writable: access != O_RDONLY,
            append: flags & O_APPEND != 0,
            offset: AtomicU64::new(0),
        }))
    }

    /// O_CREAT: the existing file (EEXIST with O_EXCL) or a new empty one.
    fn open_creating(&self, path: &SplitPath<'_>, flags: u32) -> SysResult<Arc<Inode>> {
        let Some((&name, parents)) = path.components.split_last() else {
            return Err(Errno::EISDIR); // "/"
        };
        if name == "." || name == ".." {
            return Err(Errno::EISDIR);
        }
        if flags & O_EXCL == 0 {
            // Opening a file that exists needs no lock: a walk that finds it is the answer.
            match self.inner.lookup(path) {
                Err(Errno::ENOENT) => {}
                found => return found,
            }
        }
        let parent = self.inner.directory_at(parents)?;
        self.create_in(&parent, name, path.trailing_slash, flags)
    }

    /// The second half of an O_CREAT open: in directory `parent`, which a lock-free walk found,
    /// the file `name`, made unless it exists.
    fn create_in(
        &self,
        parent: &Arc<Inode>,
        name: &str,
        trailing_slash: bool,
        flags: u32,
    ) -> SysResult<Arc<Inode>> {
        let directory = parent.directory()?;
        let mut entries = locks::lock_directory(&directory.entries);
        // The walk took no lock: under the lock, check that what it found still stands. A
        // directory removed since is dead (and empty): creating in it would make a file no
        // path reaches.
        if entries.dead {
            return Err(Errno::ENOENT);
        }
        if let Some(entry) = entries.names.get(name) {
            if flags & O_EXCL != 0 {
                return Err(Errno::EEXIST);
            }
            if trailing_slash && entry.inode.kind != FileKind::Directory {
                return Err(Errno::ENOTDIR);
            }
            return Ok(entry.inode.clone());
        }
        if trailing_slash {
            return Err(Errno::EISDIR);
        }
        if self.inner.broken.split_create() {
            // BROKEN on purpose: the name was checked under one acquisition and is inserted
            // under another, so a creator running in between is not seen.
            drop(entries);
            self.inner.broken.hold_the_gap_open();
            entries = locks::lock_directory(&directory.entries);
        }
        let inode = self.make_file()?;
        let replaced = entries.insert(name, inode.clone());
        let old = directory.republish(&entries, &self.inner.broken);
        drop(entries);
        self.inner.retire(old);
        drop(replaced);
        Ok(inode)
    }

    /// Make directory `path`; its parent must exist.
    pub fn mkdir(&self, path: &str) -> SysResult<()> {
        let path = split(path)?;
        let Some((&name, parents)) = path.components.split_last() else {
            return Err(Errno::EEXIST); // "/"
        };
        let parent = self.inner.directory_at(parents)?;
        if name == "." || name == ".." {
            return Err(Errno::EEXIST);
        }
        let directory = parent.directory()?;
        let mut entries = locks::lock_directory(&directory.entries);
        if entries.dead {
            return Err(Errno::ENOENT);
        }
        if entries.names.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let inode = self.make_directory(&parent)?;
        entries.insert(name, inode);
        let old = directory.republish(&entries, &self.inner.broken);
        drop(entries);
        self.inner.retire(old);
        Ok(())
    }

    /// Make directory `path` and any missing parents (`mkdir -p`); fine if it exists.
    pub fn mkdir_all(&self, path: &str) -> SysResult<()> {
        let split_path = split(path)?;
        let mut prefix = String::new();
        for name in split_path.components {
            prefix.push('/');
            prefix.push_str(name);
            match self.mkdir(&prefix) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        // Whatever is there now must be a directory.
        match self.open(path, O_RDONLY | O_DIRECTORY, 0) {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Remove the name `path` of a file (not a directory: EISDIR). The bytes stay while the
    /// file is open.
    pub fn unlink(&self, path: &str) -> SysResult<()> {
        let path = split(path)?;
        let Some((&name, parents)) = path.components.split_last() else {
            return Err(Errno::EISDIR);
        };
        let parent = self.inner.directory_at(parents)?;
        if name == "." || name == ".." {
            return Err(Errno::EISDIR);
        }
        let directory = parent.directory()?;
        let removed = {
            let mut entries = locks::lock_directory(&directory.entries);
            let entry = entries.names.get(name).ok_or(Errno::ENOENT)?;
            if entry.inode.kind == FileKind::Directory {
                return Err(Errno::EISDIR);
            }
            if path.trailing_slash {
                return Err(Errno::ENOTDIR);
            }
            let removed = entries.remove(name);
            let old = directory.republish(&entries, &self.inner.broken);
            drop(entries);
            self.inner.retire(old);
            removed
        };
        // Dropped outside the directory lock: freeing the pages need not hold up the
        // directory. (A walk may still hold the inode for a moment; then the walk frees it.)
        drop(removed);
        Ok(())
    }

    /// Remove the empty directory `path`. Takes two directory locks: the parent's, then the
    /// victim's (ancestor before descendant, the fs's order), to mark the victim dead while
    /// no create can be inside it.
    pub fn rmdir(&self, path: &str) -> SysResult<()> {
        let path = split(path)?;
        let Some((&name, parents)) = path.components.split_last() else {
            return Err(Errno::EBUSY); // the root
        };
        let parent = self.inner.directory_at(parents)?;
        match name {
            "." => return Err(Errno::EINVAL),
            ".." => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let directory = parent.directory()?;
        let removed = {
            let mut entries = locks::lock_directory(&directory.entries);
            let entry = entries.names.get(name).ok_or(Errno::ENOENT)?;
            let victim = entry.inode.directory().map_err(|_| Errno::ENOTDIR)?;
            {
                let mut inside = locks::lock_directory(&victim.entries);
                if !inside.names.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
                inside.dead = true;
            }
            let removed = entries.remove(name);
            let old = directory.republish(&entries, &self.inner.broken);
            drop(entries);
            self.inner.retire(old);
            removed
        };
        drop(removed);
        Ok(())
    }

    /// The whole contents of regular file `path` (for exec and `cat`).
    pub fn read_all(&self, path: &str) -> SysResult<Vec<u8>> {
        let inode = self.inner.lookup(&split(path)?)?;
        if inode.kind == FileKind::Directory {
            return Err(Errno::EISDIR);
        }
        let contents = locks::lock_inode(&inode.contents);
        let mut bytes = vec![0; contents.size];
        inode.read_at(&contents, 0, &mut bytes);
        Ok(bytes)
    }

    /// Write `bytes` as the whole contents of `path`, creating it if needed.
    pub fn write_all(&self, path: &str, bytes: &[u8]) -> SysResult<()> {
        let file = self.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)?;
        let mut done = 0;
        while done < bytes.len() {
            done += file.write(&bytes[done..])?;
        }
        Ok(())
    }

    /// A directory's entries (name, kind, size), sorted by name; for a file, just itself.
    pub fn list(&self, path: &str) -> SysResult<Vec<(String, FileKind, usize)>> {
        let path = split(path)?;
        let inode = self.inner.lookup(&path)?;
        let Ok(directory) = inode.directory() else {
            let name = path.components.last().copied().unwrap_or("/");
            return Ok(vec![(name.to_string(), inode.kind, inode.size())]);
        };
        let entries = locks::lock_directory(&directory.entries);
        // Directory, then each inode in turn: the fs's lock order.
        Ok(entries
            .names
            .iter()
            .map(|(name, e)| (name.clone(), e.inode.kind, e.inode.size()))
            .collect())
    }

    /// The kind, size and inode number of what `path` names.
    pub fn stat(&self, path: &str) -> SysResult<(FileKind, usize, Ino)> {
        let inode = self.inner.lookup(&split(path)?)?;
        Ok((inode.kind, inode.size(), inode.ino))
    }
}

/// A new inode; the caller has counted it (`Shared::reserve_inode`, or the root).
fn new_inode(shared: &Arc<Shared>, kind: FileKind, directory: Option<Directory>) -> Arc<Inode> {
    Arc::new(Inode {
        ino: shared.next_ino.fetch_add(1, Ordering::Relaxed),
        kind,
        shared: shared.clone(),
        contents: locks::new_inode_lock(Contents {
            size: 0,
            pages: Vec::new(),
        }),
        directory,
    })
}

/// One `open` of a ramfs file or directory.
pub struct OpenFile {
    inode: Arc<Inode>,
    fs: Arc<FsInner>,
    readable: bool,
    writable: bool,
    append: bool,
    /// Changed only under the lock of what it indexes: the inode lock for a regular file (the
    /// byte offset), the directory lock for a directory (the next entry's cookie). An atomic
    /// only so that it can live outside both; the locks order every update.
    offset: AtomicU64,
}

impl OpenFile {
    pub fn inode(&self) -> &Inode {
        &self.inode
    }

    fn new_offset(current: u64, size: u64, offset: i64, whence: u32) -> SysResult<u64> {
        let base = match whence {
            SEEK_SET => 0,
            SEEK_CUR => current as i64,
            SEEK_END => size as i64,
            _ => return Err(Errno::EINVAL),
        };
        let target = base.checked_add(offset).ok_or(Errno::EINVAL)?;
        u64::try_from(target).map_err(|_| Errno::EINVAL)
    }
}

/// Bytes of a `linux_dirent64` record for a name: the fixed part (d_ino 8, d_off 8,
/// d_reclen 2, d_type 1), the name and its NUL, padded to 8.
pub fn dirent_len(name: &str) -> usize {
    (19 + name.len() + 1).next_multiple_of(8)
}

fn put_dirent(buf: &mut [u8], ino: Ino, next: u64, kind: FileKind, name: &str) -> usize {
    let len = dirent_len(name);
    let record = &mut buf[..len];
    record.fill(0);
    record[0..8].copy_from_slice(&ino.to_ne_bytes());
    record[8..16].copy_from_slice(&(next as i64).to_ne_bytes());
    record[16..18].copy_from_slice(&(len as u16).to_ne_bytes());
    record[18] = kind.dirent_type();
    record[19..19 + name.len()].copy_from_slice(name.as_bytes());
    len
}

impl File for OpenFile {
    fn read(&self, buf: &mut [u8]) -> SysResult<usize> {
        if self.inode.kind == FileKind::Directory {
            return Err(Errno::EISDIR);
        }
        if !self.readable {
            return Err(Errno::EBADF);
        }
        let contents = locks::lock_inode(&self.inode.contents);
        let at = self.offset.load(Ordering::Relaxed);
        let n = self
            .inode
            .read_at(&contents, usize::try_from(at).unwrap_or(usize::MAX), buf);
        self.offset.store(at + n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn write(&self, buf: &[u8]) -> SysResult<usize> {
        if !self.writable {
            return Err(Errno::EBADF);
        }
        if self.append && self.fs.broken.split_append() {
            // BROKEN on purpose: the end is read under one acquisition and written at under
            // another, so two appenders can both write at the same old end.
            let end = locks::lock_inode(&self.inode.contents).size;
            self.fs.broken.hold_the_gap_open();
            let mut contents = locks::lock_inode(&self.inode.contents);
            let n = self.inode.write_at(&mut contents, end, buf)?;
            self.offset.store((end + n) as u64, Ordering::Relaxed);
            return Ok(n);
        }
        let mut contents = locks::lock_inode(&self.inode.contents);
        let at = if self.append {
            contents.size
        } else {
            usize::try_from(self.offset.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
        };
        let n = self.inode.write_at(&mut contents, at, buf)?;
        self.offset.store((at + n) as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn seek(&self, offset: i64, whence: u32) -> SysResult<u64> {
        if self.inode.kind == FileKind::Directory {
            // A directory's offset is a cookie: only going back to one (telldir/seekdir and
            // rewinddir) makes sense.
            let directory = self.inode.directory()?;
            let _entries = locks::lock_directory(&directory.entries);
            let current = self.offset.load(Ordering::Relaxed);
            let new = match whence {
                SEEK_SET => u64::try_from(offset).map_err(|_| Errno::EINVAL)?,
                SEEK_CUR if offset == 0 => current,
                _ => return Err(Errno::EINVAL),
            };
            self.offset.store(new, Ordering::Relaxed);
            return Ok(new);
        }
        let contents = locks::lock_inode(&self.inode.contents);
        let current = self.offset.load(Ordering::Relaxed);
        let new = Self::new_offset(current, contents.size as u64, offset, whence)?;
        self.offset.store(new, Ordering::Relaxed);
        Ok(new)
    }

    fn getdents64(&self, buf: &mut [u8]) -> SysResult<usize> {
        if self.inode.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let directory = self.inode.directory()?;
        let entries = locks::lock_directory(&directory.entries);
        if entries.dead {
            return Ok(0); // removed while open: empty, as Linux says
        }
        let mut cookie = self.offset.load(Ordering::Relaxed);
        let mut filled = 0;
        loop {
            let (ino, kind, name, this) = match cookie {
                0 => (self.inode.ino, FileKind::Directory, ".", 0),
                1 => (directory.parent_ino, FileKind::Directory, "..", 1),
                _ => match entries.by_cookie.range(cookie..).next() {
                    Some((&c, name)) => {
                        let inode = &entries.names[name].inode;
                        (inode.ino, inode.kind, name.as_str(), c)
                    }
                    None => break,
                },
            };
            if buf.len() - filled < dirent_len(name) {
                if filled == 0 {
                    return Err(Errno::EINVAL); // not even one record fits
                }
                break;
            }
            filled += put_dirent(&mut buf[filled..], ino, this + 1, kind, name);
            cookie = this + 1;
        }
        self.offset.store(cookie, Ordering::Relaxed);
        Ok(filled)
    }

    fn kind(&self) -> FileKind {
        self.inode.kind
    }

    fn size(&self) -> u64 {
        self.inode.size() as u64
    }
}

#[cfg(test)]
#[path = "ramfs_tests.rs"]
mod tests;
