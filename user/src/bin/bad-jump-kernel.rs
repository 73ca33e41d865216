//! bad-jump-kernel: branch to a kernel address (0xffff_ff80_4020_0000, where quartet's text
//! would be in the high half). Linux: SIGSEGV.
#![no_std]
#![no_main]

use ulib::println;

ulib::entry!(main);

fn main(_args: ulib::Args) -> i32 {
    let address: usize = core::hint::black_box(0xffff_ff80_4020_0000);
    println!("bad-jump-kernel: jumping to {address:#x}");
    // SAFETY: not safe: EL0 cannot execute kernel pages and must be stopped with a fault.
    let f: extern "C" fn() = unsafe { core::mem::transmute(address) };
    f();
    println!("bad-jump-kernel: came back: the kernel ran user-chosen code");
    1
}
