//! bad-sysreg: read TTBR1_EL1 (the kernel's translation table base) from EL0. Linux: SIGILL
//! (an EL1 register read at EL0 is an undefined instruction). quartet must do the same.
#![no_std]
#![no_main]

use core::arch::asm;
use ulib::println;

ulib::entry!(main);

fn main(_args: ulib::Args) -> i32 {
    println!("bad-sysreg: reading ttbr1_el1 at EL0");
    let value: u64;
    // SAFETY: not safe: the read traps, which is the point.
    unsafe { asm!("mrs {}, ttbr1_el1", out(reg) value) };
    println!("bad-sysreg: read {value:#x}: EL0 can see the kernel's page tables");
    1
}
