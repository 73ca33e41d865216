//! The ramfs: one directory tree whose files live in RAM (chapter 22, "A file system in
//! memory").
//!
//! No virtual file system layer, no block device, no cache: the tree *is* the file system.
//! - The **namespace** (`Namespace`) maps each directory's inode number to its entries (name ->
//!   inode) and its parent. The namespace lock guards all of it, so a path walk, a create or an
//!   unlink sees and leaves a consistent tree.
//! - An **inode** (`Inode`) is a file or directory. A regular file's size and pages are behind
//!   the inode's own lock, so reads and writes of different files never wait for each other or
//!   for the namespace.
//! - An **open file** (`OpenFile`) is one `open`: inode, access mode, offset.
//!
//! An inode lives as long as something refers to it: a directory entry or an open file (`Arc`).
//! Unlinking a file that is open removes the name; the bytes go when the last open file closes,
//! as in Unix. Limits per file (`Limits::max_file_size`, EFBIG), on all pages (ENOSPC) and on
//! the number of inodes (ENOSPC) keep a program from exhausting memory through the fs.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::file::{File, FileKind, flags::*};
use super::locks::{self, Broken, InodeLock, NamespaceLock};
use super::pages::{PAGE_SIZE, Page, PageSource};
use crate::errno::{Errno, SysResult};

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
    /// entries are the namespace's.
    contents: InodeLock<Contents>,
}

impl Inode {
    pub fn ino(&self) -> Ino {
        self.ino
    }
    pub fn kind(&self) -> FileKind {
        self.kind
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

struct Directory {
    parent: Ino,
    entries: BTreeMap<String, Entry>,
    by_cookie: BTreeMap<u64, String>,
    /// 0 and 1 are "." and "..".
    next_cookie: u64,
}

impl Directory {
    fn new(parent: Ino) -> Self {
        Directory {
            parent,
            entries: BTreeMap::new(),
            by_cookie: BTreeMap::new(),
            next_cookie: 2,
        }
    }

    fn insert(&mut self, name: &str, inode: Arc<Inode>) -> Option<Arc<Inode>> {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        self.by_cookie.insert(cookie, name.to_string());
        let old = self
            .entries
            .insert(name.to_string(), Entry { inode, cookie })?;
        self.by_cookie.remove(&old.cookie);
        Some(old.inode)
    }

    fn remove(&mut self, name: &str) -> Option<Arc<Inode>> {
        let entry = self.entries.remove(name)?;
        self.by_cookie.remove(&entry.cookie);
        Some(entry.inode)
    }
}

/// The directory tree: every directory by inode number.
struct Namespace {
    dirs: BTreeMap<Ino, Directory>,
    root: Arc<Inode>,
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

impl Namespace {
    /// The directory `components` name, each of them a directory (`.` and `..` included).
    fn walk(&self, components: &[&str]) -> SysResult<Ino> {
        let mut at = ROOT_INO;
        for &name in components {
            at = self.step(at, name)?;
        }
        Ok(at)
    }

    /// From directory `dir`, the directory `name` (ENOTDIR if it is something else).
    fn step(&self, dir: Ino, name: &str) -> SysResult<Ino> {
        let d = self.dirs.get(&dir).ok_or(Errno::ENOENT)?;
        match name {
            "." => Ok(dir),
            ".." => Ok(d.parent),
            _ => {
                let entry = d.entries.get(name).ok_or(Errno::ENOENT)?;
                match entry.inode.kind {
                    FileKind::Directory => Ok(entry.inode.ino),
                    _ => Err(Errno::ENOTDIR),
                }
            }
        }
    }

    fn dir_inode(&self, ino: Ino) -> SysResult<Arc<Inode>> {
        if ino == ROOT_INO {
            return Ok(self.root.clone());
        }
        let parent = self.dirs.get(&ino).ok_or(Errno::ENOENT)?.parent;
        let siblings = &self.dirs.get(&parent).ok_or(Errno::ENOENT)?.entries;
        siblings
            .values()
            .find(|e| e.inode.ino == ino)
            .map(|e| e.inode.clone())
            .ok_or(Errno::ENOENT)
    }

    /// The inode `path` names.
    fn lookup(&self, path: &SplitPath<'_>) -> SysResult<Arc<Inode>> {
        let Some((&last, parents)) = path.components.split_last() else {
            return Ok(self.root.clone());
        };
        let parent = self.walk(parents)?;
        let inode = match last {
            "." | ".." => self.dir_inode(self.step(parent, last)?)?,
            name => self
                .dirs
                .get(&parent)
                .and_then(|d| d.entries.get(name))
                .map(|e| e.inode.clone())
                .ok_or(Errno::ENOENT)?,
        };
        if path.trailing_slash && inode.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(inode)
    }
}

/// What one ramfs is made of; `RamFs` and the open directories share it.
struct FsInner {
    shared: Arc<Shared>,
    /// The namespace lock: guards the whole directory tree (every directory's entries and
    /// parent) and the offsets of open directories. First in the fs's lock order.
    namespace: NamespaceLock<Namespace>,
    broken: Broken,
}

/// One in-memory file system.
#[derive(Clone)]
pub struct RamFs {
    inner: Arc<FsInner>,
}

impl RamFs {
    /// An empty file system (just `/`) whose pages come from `pages`.
    pub fn new(pages: &'static dyn PageSource, limits: Limits) -> RamFs {
        let shared = Arc::new(Shared {
            pages,
            limits,
            pages_in_use: AtomicUsize::new(0),
            inodes: AtomicUsize::new(0),
            next_ino: AtomicU64::new(ROOT_INO),
        });
        let root = new_inode(&shared, FileKind::Directory);
        let mut dirs = BTreeMap::new();
        dirs.insert(ROOT_INO, Directory::new(ROOT_INO));
        RamFs {
            inner: Arc::new(FsInner {
                shared,
                namespace: locks::new_namespace_lock(Namespace { dirs, root }),
                broken: Broken::default(),
            }),
        }
    }

    /// The broken variants of this file system's locking, for the tests that must catch them.
    pub fn broken(&self) -> &Broken {
        &self.inner.broken
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

    /// A new inode, counted against the limit (the caller holds the namespace lock).
    fn make_inode(&self, kind: FileKind) -> SysResult<Arc<Inode>> {
        let s = &self.inner.shared;
        if s.inodes.load(Ordering::Relaxed) >= s.limits.max_inodes {
            return Err(Errno::ENOSPC);
        }
        Ok(new_inode(s, kind))
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
            locks::lock_namespace(&self.inner.namespace).lookup(&path)?
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
        let mut ns = locks::lock_namespace(&self.inner.namespace);
        let parent = ns.walk(parents)?;
        if let Some(entry) = ns.dirs.get(&parent).and_then(|d| d.entries.get(name)) {
            if flags & O_EXCL != 0 {
                return Err(Errno::EEXIST);
            }
            if path.trailing_slash && entry.inode.kind != FileKind::Directory {
                return Err(Errno::ENOTDIR);
            }
            return Ok(entry.inode.clone());
        }
        if path.trailing_slash {
            return Err(Errno::EISDIR);
        }
        if self.inner.broken.split_create() {
            // BROKEN on purpose: the name was checked under one acquisition and is inserted
            // under another, so a creator running in between is not seen.
            drop(ns);
            self.inner.broken.hold_the_gap_open();
            ns = locks::lock_namespace(&self.inner.namespace);
        }
        let inode = self.make_inode(FileKind::Regular)?;
        let dir = ns.dirs.get_mut(&parent).ok_or(Errno::ENOENT)?;
        let replaced = dir.insert(name, inode.clone());
        drop(ns);
        drop(replaced);
        Ok(inode)
    }

    /// Make directory `path`; its parent must exist.
    pub fn mkdir(&self, path: &str) -> SysResult<()> {
        let path = split(path)?;
        let Some((&name, parents)) = path.components.split_last() else {
            return Err(Errno::EEXIST); // "/"
        };
        let mut ns = locks::lock_namespace(&self.inner.namespace);
        let parent = ns.walk(parents)?;
        if name == "." || name == ".." || ns.dirs[&parent].entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let inode = self.make_inode(FileKind::Directory)?;
        ns.dirs.insert(inode.ino, Directory::new(parent));
        ns.dirs
            .get_mut(&parent)
            .ok_or(Errno::ENOENT)?
            .insert(name, inode);
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
        let removed = {
            let mut ns = locks::lock_namespace(&self.inner.namespace);
            let parent = ns.walk(parents)?;
            if name == "." || name == ".." {
                return Err(Errno::EISDIR);
            }
            let dir = ns.dirs.get_mut(&parent).ok_or(Errno::ENOENT)?;
            let entry = dir.entries.get(name).ok_or(Errno::ENOENT)?;
            if entry.inode.kind == FileKind::Directory {
                return Err(Errno::EISDIR);
            }
            if path.trailing_slash {
                return Err(Errno::ENOTDIR);
            }
            dir.remove(name)
        };
        // Dropped outside the namespace lock: freeing the pages need not hold up the tree.
        drop(removed);
        Ok(())
    }

    /// Remove the empty directory `path`.
    pub fn rmdir(&self, path: &str) -> SysResult<()> {
        let path = split(path)?;
        let Some((&name, parents)) = path.components.split_last() else {
            return Err(Errno::EBUSY); // the root
        };
        let removed = {
            let mut ns = locks::lock_namespace(&self.inner.namespace);
            let parent = ns.walk(parents)?;
            match name {
                "." => return Err(Errno::EINVAL),
                ".." => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
            let entry = ns.dirs[&parent].entries.get(name).ok_or(Errno::ENOENT)?;
            if entry.inode.kind != FileKind::Directory {
                return Err(Errno::ENOTDIR);
            }
            let ino = entry.inode.ino;
            if !ns.dirs[&ino].entries.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            ns.dirs.remove(&ino);
            ns.dirs.get_mut(&parent).ok_or(Errno::ENOENT)?.remove(name)
        };
        drop(removed);
        Ok(())
    }

    /// The whole contents of regular file `path` (for exec and `cat`).
    pub fn read_all(&self, path: &str) -> SysResult<Vec<u8>> {
        let inode = locks::lock_namespace(&self.inner.namespace).lookup(&split(path)?)?;
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
        let ns = locks::lock_namespace(&self.inner.namespace);
        let inode = ns.lookup(&path)?;
        if inode.kind != FileKind::Directory {
            let name = path.components.last().copied().unwrap_or("/");
            return Ok(vec![(name.to_string(), inode.kind, inode.size())]);
        }
        let dir = ns.dirs.get(&inode.ino).ok_or(Errno::ENOENT)?;
        // Namespace, then each inode in turn: the fs's lock order.
        Ok(dir
            .entries
            .iter()
            .map(|(name, e)| (name.clone(), e.inode.kind, e.inode.size()))
            .collect())
    }

    /// The kind, size and inode number of what `path` names.
    pub fn stat(&self, path: &str) -> SysResult<(FileKind, usize, Ino)> {
        let inode = locks::lock_namespace(&self.inner.namespace).lookup(&split(path)?)?;
        Ok((inode.kind, inode.size(), inode.ino))
    }
}

fn new_inode(shared: &Arc<Shared>, kind: FileKind) -> Arc<Inode> {
    shared.inodes.fetch_add(1, Ordering::Relaxed);
    Arc::new(Inode {
        ino: shared.next_ino.fetch_add(1, Ordering::Relaxed),
        kind,
        shared: shared.clone(),
        contents: locks::new_inode_lock(Contents {
            size: 0,
            pages: Vec::new(),
        }),
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
    /// byte offset), the namespace lock for a directory (the next entry's cookie). An atomic
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
            let _ns = locks::lock_namespace(&self.fs.namespace);
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
        let ns = locks::lock_namespace(&self.fs.namespace);
        let Some(dir) = ns.dirs.get(&self.inode.ino) else {
            return Ok(0); // removed while open: empty, as Linux says
        };
        let mut cookie = self.offset.load(Ordering::Relaxed);
        let mut filled = 0;
        loop {
            let (ino, kind, name, this) = match cookie {
                0 => (self.inode.ino, FileKind::Directory, ".", 0),
                1 => (dir.parent, FileKind::Directory, "..", 1),
                _ => match dir.by_cookie.range(cookie..).next() {
                    Some((&c, name)) => {
                        let inode = &dir.entries[name].inode;
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
