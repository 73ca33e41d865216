//! bad-oom [MiB]: take memory until the kernel says no: grow the heap with brk a MiB at a time,
//! then map MiB after MiB with mmap, touching every page. Stops early after MiB mebibytes when
//! given (on a Linux host, so a test does not exhaust the host). Linux: brk returns the old
//! break, mmap -ENOMEM, or (with overcommit) the OOM killer sends SIGKILL at a touch.
//! quartet must refuse with ENOMEM (or kill this process alone) and keep running.
//! Exits 0 when it was refused, 3 when it stopped at the given limit.
#![no_std]
#![no_main]

use ulib::println;
use ulib::sys::{self, PAGE_SIZE};

ulib::entry!(main);

const MIB: usize = 1 << 20;

fn touch(start: usize, len: usize) {
    for page in (start..start + len).step_by(PAGE_SIZE) {
        // SAFETY: the caller just got [start, start+len) read-write from the kernel.
        unsafe { (page as *mut u8).write_volatile(1) };
    }
}

fn main(args: ulib::Args) -> i32 {
    let limit = args.number_or(1, u64::MAX);
    println!(
        "bad-oom: taking memory a MiB at a time until refused{}",
        if limit == u64::MAX {
            ""
        } else {
            " or at the limit"
        }
    );
    let mut taken: u64 = 0;
    let start = (sys::brk(0) + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    let mut end = start;
    let mut refused = None;
    while taken < limit {
        if sys::brk(end + MIB) < end + MIB {
            refused = Some("brk");
            break;
        }
        touch(end, MIB);
        end += MIB;
        taken += 1;
    }
    let heap = taken;
    while taken < limit {
        match sys::mmap_anon(MIB, sys::PROT_READ | sys::PROT_WRITE) {
            Ok(m) => touch(m, MIB),
            Err(e) => {
                refused = Some(if e == sys::Errno::ENOMEM {
                    "mmap ENOMEM"
                } else {
                    "mmap (not ENOMEM)"
                });
                break;
            }
        }
        taken += 1;
    }
    match refused {
        Some(how) => {
            println!("bad-oom: took {taken} MiB ({heap} MiB heap), then refused by {how}");
            0
        }
        None => {
            println!("bad-oom: took {taken} MiB ({heap} MiB heap) and stopped at the limit");
            3
        }
    }
}
