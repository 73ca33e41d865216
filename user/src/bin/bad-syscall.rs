//! bad-syscall: system call numbers no kernel serves (4000, 1<<32, and 0xffff = 65535) must
//! return -ENOSYS and nothing else happens. Linux: -ENOSYS for each. Exits 0 only if all were.
#![no_std]
#![no_main]

use ulib::println;
use ulib::sys::{self, Errno};

ulib::entry!(main);

fn main(_args: ulib::Args) -> i32 {
    let mut all = true;
    for number in [4000usize, 1 << 32, 0xffff] {
        // SAFETY: an unknown system call takes no action, whatever the arguments.
        let got = sys::check(unsafe { sys::syscall6(number, [1, 2, 3, 4, 5, 6]) });
        let ok = got == Err(Errno::ENOSYS);
        all &= ok;
        match got {
            Ok(v) => println!("bad-syscall: number {number:#x} returned {v} <- expected ENOSYS"),
            Err(e) => println!(
                "bad-syscall: number {number:#x} got {}{}",
                e.name(),
                if ok { "" } else { " <- expected ENOSYS" }
            ),
        }
    }
    if all { 0 } else { 1 }
}
