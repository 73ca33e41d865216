//! bad-loop: spin forever without a system call. Linux: runs until killed; the other processes
//! keep running (preemption). quartet must preempt it on every CPU and let `kill` end it.
#![no_std]
#![no_main]

use ulib::println;

ulib::entry!(main);

fn main(_args: ulib::Args) -> i32 {
    println!("bad-loop: looping forever without system calls");
    let mut x = 0u64;
    loop {
        x = core::hint::black_box(x + 1);
    }
}
