//! bad-udf: execute a permanently undefined instruction (`udf #0`). Linux: SIGILL. quartet must
//! kill the process with SIGILL.
#![no_std]
#![no_main]

use core::arch::asm;
use ulib::println;

ulib::entry!(main);

fn main(_args: ulib::Args) -> i32 {
    println!("bad-udf: executing udf #0");
    // SAFETY: not safe: the instruction traps, which is the point.
    unsafe { asm!("udf #0") };
    println!("bad-udf: udf did not trap");
    1
}
