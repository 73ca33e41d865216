//! spin [seconds]: burn CPU for that many seconds (default 3) without sleeping, printing one
//! progress line a second. Time comes from the generic timer's virtual counter (CNTVCT_EL0,
//! which Linux lets EL0 read, as quartet must), never from a sleep: the point is a process that
//! never blocks, so only preemption can take the CPU from it.
#![no_std]
#![no_main]

use core::arch::asm;
use ulib::{println, sys};

ulib::entry!(main);

fn counter() -> u64 {
    let ticks: u64;
    // SAFETY: reads the virtual count; EL0 may when CNTKCTL_EL1.EL0VCTEN is set.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack)) };
    ticks
}

fn frequency() -> u64 {
    let hz: u64;
    // SAFETY: reads the counter frequency, EL0-readable whenever the counter is.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack)) };
    hz
}

fn main(args: ulib::Args) -> i32 {
    let seconds = args.number_or(1, 3);
    let hz = frequency();
    if hz == 0 {
        println!("spin: CNTFRQ_EL0 reads 0, no time base");
        return 1;
    }
    let pid = sys::getpid();
    let start = counter();
    let mut iterations: u64 = 0;
    let mut x: u64 = 1;
    for second in 1..=seconds {
        let until = start + second * hz;
        while counter() < until {
            // Work the optimiser cannot remove: a chain of dependent multiplies.
            for _ in 0..1000 {
                x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            iterations += 1;
        }
        let cpu = sys::getcpu().map(|(c, _)| c as i64).unwrap_or(-1);
        println!(
            "spin: pid {pid}: {second}/{seconds} s, {iterations} thousand iterations, on cpu {cpu}"
        );
    }
    core::hint::black_box(x);
    0
}
