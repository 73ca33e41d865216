//! bad-pointers: hand write() and read() pointers the kernel must refuse: a kernel address,
//! NULL, an unmapped address, and a range running off the end of a mapping. Each must return
//! -EFAULT, and the program carries on. Exits 0 only if every call did.
//!
//! On the off-the-end range a real Linux kernel may instead transfer the bytes before the hole
//! and return that short count (it is allowed to); qemu-user checks the whole range first and
//! returns -EFAULT, and so does quartet (copy_from_user/copy_to_user fail the whole copy).
#![no_std]
#![no_main]

use ulib::sys::{self, Errno, PAGE_SIZE};
use ulib::{eprintln, println};

ulib::entry!(main);

fn main(_args: ulib::Args) -> i32 {
    let path = "bad-pointers.tmp";
    let fd = match sys::open(path, sys::O_RDWR | sys::O_CREAT | sys::O_TRUNC, 0o600) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("bad-pointers: cannot create {path}: {e}");
            return 1;
        }
    };
    // Something to read, so read() has bytes to copy (at end of file it copies nothing).
    if sys::write_all(fd, &[0x55; 256]).is_err() {
        eprintln!("bad-pointers: cannot fill {path}");
        return 1;
    }
    // A page with an unmapped page after it: map two, unmap the second.
    let map = match sys::mmap_anon(2 * PAGE_SIZE, sys::PROT_READ | sys::PROT_WRITE) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("bad-pointers: mmap: {e}");
            return 1;
        }
    };
    // SAFETY: nothing uses the second page.
    if let Err(e) = unsafe { sys::munmap(map + PAGE_SIZE, PAGE_SIZE) } {
        eprintln!("bad-pointers: munmap: {e}");
        return 1;
    }
    let cases: [(&str, usize, usize); 5] = [
        ("kernel address", 0xffff_ff80_4000_0000, 64),
        ("kernel half's bottom", 0xffff_0000_0000_0000, 64),
        ("NULL", 0, 64),
        ("unmapped", map + PAGE_SIZE, 64),
        ("off the end of a mapping", map + PAGE_SIZE - 16, 64),
    ];
    let mut all_efault = true;
    for (what, address, len) in cases {
        let wrote = sys::write_raw(fd, address, len);
        if sys::lseek(fd, 0, sys::SEEK_SET).is_err() {
            all_efault = false;
        }
        // SAFETY: every case names memory we do not own, or (off the end) our own scratch page.
        let read = unsafe { sys::read_raw(fd, address, len) };
        let _ = sys::lseek(fd, 0, sys::SEEK_SET);
        let ok = wrote == Err(Errno::EFAULT) && read == Err(Errno::EFAULT);
        all_efault &= ok;
        println!(
            "bad-pointers: {what} {address:#x}+{len}: write {}, read {}{}",
            show(wrote),
            show(read),
            if ok { "" } else { "  <- expected EFAULT" }
        );
    }
    let _ = sys::close(fd);
    let _ = sys::unlinkat(path, 0);
    if all_efault {
        println!("bad-pointers: every bad pointer got EFAULT");
        0
    } else {
        println!("bad-pointers: FAILED: some bad pointer did not get EFAULT");
        1
    }
}

/// "EFAULT (14)" or "returned 16".
fn show(r: Result<usize, Errno>) -> ShowResult {
    ShowResult(r)
}

struct ShowResult(Result<usize, Errno>);

impl core::fmt::Display for ShowResult {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(n) => write!(f, "returned {n}"),
            Err(e) => write!(f, "{}", e.name()),
        }
    }
}
