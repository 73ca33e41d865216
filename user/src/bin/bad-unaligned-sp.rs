//! bad-unaligned-sp: set SP to an odd address and store through it. On AArch64 hardware with
//! SCTLR_EL1.SA0 set (Linux and quartet set it) this is an SP alignment fault: Linux sends
//! SIGBUS. QEMU does not check SP alignment (neither qemu-user nor qemu-system), so there the store
//! succeeds and this program says so and exits 3.
#![no_std]
#![no_main]

use core::arch::asm;
use ulib::println;

ulib::entry!(main);

fn main(_args: ulib::Args) -> i32 {
    println!("bad-unaligned-sp: storing through an odd stack pointer");
    // SAFETY: SP is restored before the block ends; the 16 bytes stored lie inside the red
    // zone below the real SP, which nothing live uses.
    unsafe {
        asm!(
            "mov {saved}, sp",
            "sub {tmp}, sp, #33",
            "mov sp, {tmp}",
            "str xzr, [sp, #-8]!",
            "mov sp, {saved}",
            saved = out(reg) _,
            tmp = out(reg) _,
        );
    }
    println!("bad-unaligned-sp: no fault: this CPU does not check SP alignment at EL0");
    3
}
