//! bad-write-text: store into the program's own code. Linux: SIGSEGV (text is mapped R+X, not W).
#![no_std]
#![no_main]

use ulib::println;

ulib::entry!(main);

fn main(_args: ulib::Args) -> i32 {
    let target = main as fn(ulib::Args) -> i32 as usize;
    println!("bad-write-text: storing into my own code at {target:#x}");
    // SAFETY: not safe: text is read-only and the kernel must refuse the store with a fault.
    unsafe { (target as *mut u32).write_volatile(0xd420_0000) };
    println!("bad-write-text: the store went through: text is writable");
    1
}
