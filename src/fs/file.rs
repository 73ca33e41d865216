//! Open files and descriptor tables (chapter 22, "A file system in memory").
//!
//! Three objects, as in Unix: an **inode** is the file itself (its bytes and size); an **open
//! file** is one `open` of it, with its own offset and access mode; a **descriptor** is a small
//! number in one process's `FdTable` naming an open file. `fork` copies the table but shares
//! the open files, so parent and child move one offset together, as POSIX says; two separate
//! `open`s of one path share the inode but not the offset.
//!
//! `File` is what every kind of open file offers to the system calls: the ramfs's regular files
//! and directories (src/fs/ramfs.rs) and the console the process starts with on fds 0, 1, 2.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::locks::{self, FdTableLock};
use crate::errno::{Errno, SysResult};

/// What kind of thing an open file or directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    /// A character device, such as the console.
    CharDevice,
}

impl FileKind {
    /// The `d_type` of a `linux_dirent64` record.
    pub const fn dirent_type(self) -> u8 {
        match self {
            FileKind::Regular => 8,    // DT_REG
            FileKind::Directory => 4,  // DT_DIR
            FileKind::CharDevice => 2, // DT_CHR
        }
    }
}

/// Linux's `open` flags as arm64 defines them (arm64 takes O_DIRECTORY, O_NOFOLLOW, O_DIRECT
/// and O_LARGEFILE from 32-bit Arm, not from asm-generic: O_DIRECTORY is 0o40000 there).
pub mod flags {
    pub const O_ACCMODE: u32 = 0o3;
    pub const O_RDONLY: u32 = 0o0;
    pub const O_WRONLY: u32 = 0o1;
    pub const O_RDWR: u32 = 0o2;
    pub const O_CREAT: u32 = 0o100;
    pub const O_EXCL: u32 = 0o200;
    pub const O_TRUNC: u32 = 0o1000;
    pub const O_APPEND: u32 = 0o2000;
    pub const O_DIRECTORY: u32 = 0o40000;
    /// `lseek`'s `whence`.
    pub const SEEK_SET: u32 = 0;
    pub const SEEK_CUR: u32 = 1;
    pub const SEEK_END: u32 = 2;
}

/// One open file, whatever is behind it.
pub trait File: Send + Sync {
    /// Read into `buf` from the file's offset, and advance it; 0 at the end of the file.
    fn read(&self, buf: &mut [u8]) -> SysResult<usize>;
    /// Write `buf` at the file's offset (at its end with O_APPEND), and advance it.
    fn write(&self, buf: &[u8]) -> SysResult<usize>;
    /// Move the offset (`whence`: SEEK_SET, SEEK_CUR, SEEK_END); the new offset.
    fn seek(&self, _offset: i64, _whence: u32) -> SysResult<u64> {
        Err(Errno::ESPIPE)
    }
    /// Fill `buf` with Linux `struct linux_dirent64` records from the offset; 0 at the end.
    fn getdents64(&self, _buf: &mut [u8]) -> SysResult<usize> {
        Err(Errno::ENOTDIR)
    }
    fn kind(&self) -> FileKind;
    /// The file's size in bytes (0 for what has none), for `fstat`.
    fn size(&self) -> u64 {
        0
    }
}

/// The most descriptors one process may have open (Linux's default soft limit is 1024).
pub const FD_LIMIT: usize = 64;

/// One process's descriptors: slot `fd` holds the open file `fd` names.
pub struct FdTable {
    /// The fd-table lock: guards which open file each slot holds. Taken first in the fs's
    /// order (src/fs/locks.rs), and never held while an open file is used or dropped.
    slots: FdTableLock<Vec<Option<Arc<dyn File>>>>,
}

impl Default for FdTable {
    fn default() -> Self {
        Self::new()
    }
}

impl FdTable {
    /// An empty table (the process's creator installs 0, 1 and 2).
    pub fn new() -> Self {
        FdTable {
            slots: locks::new_fd_table_lock(Vec::new()),
        }
    }

    /// Give `file` the lowest free descriptor; EMFILE when all `FD_LIMIT` are taken.
    pub fn alloc(&self, file: Arc<dyn File>) -> SysResult<i32> {
        let mut slots = locks::lock_fd_table(&self.slots);
        let fd = match slots.iter().position(Option::is_none) {
            Some(free) => free,
            None if slots.len() < FD_LIMIT => {
                slots.push(None);
                slots.len() - 1
            }
            None => return Err(Errno::EMFILE),
        };
        slots[fd] = Some(file);
        Ok(fd as i32)
    }

    /// Put `file` at descriptor `fd`, closing what was there (dup2's job; also how fds 0-2
    /// are set up). EBADF for a number outside the table's limit.
    pub fn install(&self, fd: i32, file: Arc<dyn File>) -> SysResult<()> {
        let index = usize::try_from(fd)
            .ok()
            .filter(|&i| i < FD_LIMIT)
            .ok_or(Errno::EBADF)?;
        let old = {
            let mut slots = locks::lock_fd_table(&self.slots);
            if slots.len() <= index {
                slots.resize(index + 1, None);
            }
            slots[index].replace(file)
        };
        // Dropped outside the lock: the last reference to a file may free its pages.
        drop(old);
        Ok(())
    }

    /// The open file `fd` names; EBADF if none.
    pub fn get(&self, fd: i32) -> SysResult<Arc<dyn File>> {
        let slots = locks::lock_fd_table(&self.slots);
        usize::try_from(fd)
            .ok()
            .and_then(|i| slots.get(i))
            .and_then(|slot| slot.clone())
            .ok_or(Errno::EBADF)
    }

    /// Close `fd`; EBADF if it names nothing.
    pub fn close(&self, fd: i32) -> SysResult<()> {
        let file = {
            let mut slots = locks::lock_fd_table(&self.slots);
            usize::try_from(fd)
                .ok()
                .and_then(|i| slots.get_mut(i))
                .and_then(Option::take)
                .ok_or(Errno::EBADF)?
        };
        drop(file);
        Ok(())
    }

    /// The child's table for `fork`: the same open files (shared offsets), new slots.
    pub fn dup_for_fork(&self) -> FdTable {
        let copy = locks::lock_fd_table(&self.slots).clone();
        FdTable {
            slots: locks::new_fd_table_lock(copy),
        }
    }

    /// Close every descriptor (exit).
    pub fn close_all(&self) {
        let all = core::mem::take(&mut *locks::lock_fd_table(&self.slots));
        drop(all);
    }

    /// How many descriptors are open.
    pub fn open_count(&self) -> usize {
        locks::lock_fd_table(&self.slots)
            .iter()
            .filter(|s| s.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// A file that counts its reads, to tell whether two descriptors share one open file.
    struct Counter(AtomicU64);
    impl File for Counter {
        fn read(&self, _: &mut [u8]) -> SysResult<usize> {
            Ok(self.0.fetch_add(1, Ordering::Relaxed) as usize)
        }
        fn write(&self, buf: &[u8]) -> SysResult<usize> {
            Ok(buf.len())
        }
        fn kind(&self) -> FileKind {
            FileKind::CharDevice
        }
    }

    fn counter() -> Arc<dyn File> {
        Arc::new(Counter(AtomicU64::new(0)))
    }

    #[test]
    fn descriptors_are_the_lowest_free_and_run_out_with_emfile() {
        let table = FdTable::new();
        for expected in 0..FD_LIMIT as i32 {
            assert_eq!(table.alloc(counter()), Ok(expected));
        }
        assert_eq!(table.alloc(counter()).err(), Some(Errno::EMFILE));
        table.close(5).unwrap();
        table.close(2).unwrap();
        assert_eq!(table.alloc(counter()), Ok(2));
        assert_eq!(table.alloc(counter()), Ok(5));
        assert_eq!(table.open_count(), FD_LIMIT);
    }

    #[test]
    fn bad_descriptors_are_ebadf() {
        let table = FdTable::new();
        assert_eq!(table.get(0).err(), Some(Errno::EBADF));
        assert_eq!(table.get(-1).err(), Some(Errno::EBADF));
        assert_eq!(table.close(3).err(), Some(Errno::EBADF));
        let fd = table.alloc(counter()).unwrap();
        table.close(fd).unwrap();
        assert_eq!(table.close(fd).err(), Some(Errno::EBADF));
        assert_eq!(
            table.install(FD_LIMIT as i32, counter()).err(),
            Some(Errno::EBADF)
        );
    }

    #[test]
    fn a_forked_table_shares_open_files_but_not_slots() {
        let parent = FdTable::new();
        parent.install(0, counter()).unwrap();
        let child = parent.dup_for_fork();
        let mut buf = [0u8; 1];
        assert_eq!(parent.get(0).unwrap().read(&mut buf), Ok(0));
        // The child's descriptor 0 is the same open file: it sees the parent's read.
        assert_eq!(child.get(0).unwrap().read(&mut buf), Ok(1));
        child.close(0).unwrap();
        assert!(
            parent.get(0).is_ok(),
            "closing in the child closed the parent's fd"
        );
        assert_eq!(child.alloc(counter()), Ok(0));
    }
}
