//! The file system: a ramfs with an initramfs unpacker (chapter 22, "A file system in memory").
//!
//! - `ramfs`: the directory tree, inodes, open files (`RamFs`, `OpenFile`);
//! - `file`: the `File` trait every open file offers, and the per-process `FdTable`;
//! - `pages`: where file contents come from (`PageSource`);
//! - `locks`: the locks (directory, inode, fd table), their order, the path walk's RCU
//!   read-side section, and every acquisition;
//! - `cpio`: unpacking a "newc" cpio archive into the tree;
//! - `initrd`: finding the archive QEMU or the boot loader left in RAM, and unpacking it at boot.
//!
//! The kernel has one file system, reached through the functions below; host tests build their
//! own `RamFs` values.

pub mod cpio;
pub mod file;
pub mod initrd;
pub mod locks;
pub mod pages;
pub mod ramfs;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

pub use cpio::{CpioError, UnpackReport};
pub use file::{FD_LIMIT, FdTable, File, FileKind, flags};
pub use initrd::initrd_range;
pub use pages::{FramePages, HeapPages, PAGE_SIZE, Page, PageSource};
pub use ramfs::{Limits, OpenFile, RamFs, Usage};

use crate::errno::SysResult;

/// The kernel's file system, made on first use (or by `init`).
static ROOT_FS: spin::Once<RamFs> = spin::Once::new();
/// Pages for the kernel's file system until `init` names another source.
static HEAP_PAGES: HeapPages = HeapPages::new();

/// Make the kernel's file system with its pages from `pages` (the page-frame allocator). Must
/// come before the first file operation; returns false (and changes nothing) after it.
pub fn init(pages: &'static dyn PageSource) -> bool {
    let mut made = false;
    ROOT_FS.call_once(|| {
        made = true;
        RamFs::new(pages, Limits::default())
    });
    made
}

/// The kernel's file system.
pub fn root() -> &'static RamFs {
    ROOT_FS.call_once(|| RamFs::new(&HEAP_PAGES, Limits::default()))
}

/// Open `path` (Linux's O_* `flags`; see `flags`).
pub fn open(path: &str, flags: u32, mode: u32) -> SysResult<Arc<dyn File>> {
    Ok(root().open(path, flags, mode)?)
}

pub fn unlink(path: &str) -> SysResult<()> {
    root().unlink(path)
}

pub fn mkdir(path: &str) -> SysResult<()> {
    root().mkdir(path)
}

pub fn rmdir(path: &str) -> SysResult<()> {
    root().rmdir(path)
}

/// The whole of file `path` (exec reads programs with it).
pub fn read_all(path: &str) -> SysResult<Vec<u8>> {
    root().read_all(path)
}

/// A directory's entries: name, kind, size.
pub fn list(path: &str) -> SysResult<Vec<(String, FileKind, usize)>> {
    root().list(path)
}

/// Unpack a newc cpio archive into the kernel's file system.
pub fn unpack_cpio(archive: &[u8]) -> Result<UnpackReport, CpioError> {
    cpio::unpack(root(), archive)
}
