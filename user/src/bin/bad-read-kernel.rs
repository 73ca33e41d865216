//! bad-read-kernel [1|2]: load a word from a kernel address: 1 (default) is in quartet's linear
//! map of RAM (0xffff_ff80_4000_0000), 2 is the bottom of the kernel half (0xffff_0000_0000_0000).
//! Linux: SIGSEGV. quartet must do the same: TTBR1 pages are not EL0-accessible.
#![no_std]
#![no_main]

use ulib::println;

ulib::entry!(main);

fn main(args: ulib::Args) -> i32 {
    let address: usize = match args.number_or(1, 1) {
        2 => 0xffff_0000_0000_0000,
        _ => 0xffff_ff80_4000_0000,
    };
    println!("bad-read-kernel: loading from {address:#x}");
    // SAFETY: not safe at all: the point is that the kernel refuses this load with a fault.
    let value = unsafe { (address as *const u64).read_volatile() };
    println!("bad-read-kernel: read {value:#x}: the kernel let user space read its memory");
    1
}
