//! bad-stack-overflow: recurse with 4 KiB frames until the stack runs into the unmapped guard
//! page below it. Linux: SIGSEGV. quartet must kill the process with SIGSEGV, not grow the stack
//! into other mappings nor fault in the kernel.
#![no_std]
#![no_main]

use ulib::println;

ulib::entry!(main);

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // Never true in practice (the stack ends long before); it gives the recursion an end.
    if depth == u64::MAX {
        return 0;
    }
    let frame = core::hint::black_box([depth as u8; 4096]);
    core::hint::black_box(recurse(depth + 1)) + frame[100] as u64
}

fn main(_args: ulib::Args) -> i32 {
    println!("bad-stack-overflow: recursing with 4 KiB frames until the stack ends");
    let n = recurse(0);
    println!("bad-stack-overflow: came back with {n}: the stack never ended");
    1
}
