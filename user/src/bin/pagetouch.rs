//! pagetouch N: grow the heap by N pages with brk and map N more with mmap, write a word into
//! every page, read them all back, and report. The kernel counts the page faults this causes
//! (demand-zero pages fault on first touch); user space can only report what it touched.
#![no_std]
#![no_main]

use ulib::sys::{self, PAGE_SIZE};
use ulib::{eprintln, println};

ulib::entry!(main);

/// Write a word derived from the page number into each page, then check every one is still
/// there and that the rest of the first word's page is still zero (demand-zero).
fn touch(start: usize, pages: usize) -> Result<(), usize> {
    for i in 0..pages {
        let p = (start + i * PAGE_SIZE) as *mut u64;
        // SAFETY: [start, start + pages * PAGE_SIZE) was just mapped read-write for us.
        unsafe {
            if p.add(1).read_volatile() != 0 {
                return Err(i);
            }
            p.write_volatile(0x5a5a_0000_0000_0000 | i as u64);
        }
    }
    for i in 0..pages {
        let p = (start + i * PAGE_SIZE) as *const u64;
        // SAFETY: as above.
        if unsafe { p.read_volatile() } != 0x5a5a_0000_0000_0000 | i as u64 {
            return Err(i);
        }
    }
    Ok(())
}

fn main(args: ulib::Args) -> i32 {
    let pages = args.number_or(1, 16) as usize;
    let Some(len) = pages.checked_mul(PAGE_SIZE) else {
        eprintln!("pagetouch: {pages} pages is too many");
        return 2;
    };

    let old = sys::brk(0);
    let start = (old + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    let new = sys::brk(start + len);
    if new < start + len {
        eprintln!(
            "pagetouch: brk could not grow from {old:#x} to {:#x} (got {new:#x})",
            start + len
        );
        return 1;
    }
    if let Err(page) = touch(start, pages) {
        eprintln!(
            "pagetouch: heap page {page} at {:#x} did not keep what was written",
            start + page * PAGE_SIZE
        );
        return 1;
    }
    println!("pagetouch: brk {old:#x} -> {new:#x}: touched {pages} pages");
    sys::brk(old);

    let map = match sys::mmap_anon(len, sys::PROT_READ | sys::PROT_WRITE) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("pagetouch: mmap of {pages} pages failed: {e}");
            return 1;
        }
    };
    if let Err(page) = touch(map, pages) {
        eprintln!(
            "pagetouch: mapped page {page} at {:#x} did not keep what was written",
            map + page * PAGE_SIZE
        );
        return 1;
    }
    // SAFETY: nothing refers to the mapping after this.
    if let Err(e) = unsafe { sys::munmap(map, len) } {
        eprintln!("pagetouch: munmap failed: {e}");
        return 1;
    }
    println!("pagetouch: mmap {map:#x}: touched {pages} pages");
    println!("pagetouch: {} pages touched in all", 2 * pages);
    0
}
