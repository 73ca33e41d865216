//! bench-syscall [iterations]: the costs the system-call benchmark reports (chapter 19), timed
//! with the virtual counter, which EL0 may read. Each result is one `bench suite=syscall ...`
//! line, the format tools/bench collects:
//! - `floor`: `svc #0` with x8 = 0x7ff0, which quartet's EL0 vector answers at once, saving
//!   nothing: the trap and `eret` every system call pays (under Linux it is an unknown number);
//! - `getpid`: the null system call: the whole way in, the table, the way out;
//! - `page-fault`: the first touch of a page of fresh anonymous memory (a demand-zero fault);
//! - `fork-exit-wait`: fork a child that exits at once, and wait for it;
//! - `switch`: a parent and child on one CPU trading it with sched_yield: one yield each way is
//!   two switches between user processes (the kernel pins this program to one CPU).
//!
//! Each cost is also given as a ratio to the floor measured in the same run; the floor and
//! getpid are timed in alternating batches (see `interleaved`).
#![no_std]
#![no_main]

use core::arch::asm;
use ulib::{println, sys};

ulib::entry!(main);

/// quartet's floor probe (src/arch/aarch64/exception.rs, FLOOR_SYSCALL).
const FLOOR_SYSCALL: usize = 0x7ff0;

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

fn floor_call() {
    // SAFETY: no arguments, nothing read or written; quartet returns at once, Linux -ENOSYS.
    unsafe {
        sys::syscall6(FLOOR_SYSCALL, [0; 6]);
    }
}

/// Counter ticks per operation of `op`, run `n` times (best of three runs, so a preemption
/// in one run does not count).
fn per_op(n: u64, mut op: impl FnMut()) -> f64 {
    let mut best = u64::MAX;
    for _ in 0..3 {
        let start = counter();
        for _ in 0..n {
            op();
        }
        best = best.min(counter() - start);
    }
    best as f64 / n as f64
}

/// Ticks per operation of `base` and of `op`, each the median over 15 batches that alternate
/// between the two, so both see the same host at nearly the same moment.
fn interleaved(n: u64, mut base: impl FnMut(), mut op: impl FnMut()) -> (f64, f64) {
    const BATCHES: usize = 15;
    let per_batch = (n / BATCHES as u64).max(10);
    let mut bases = [0f64; BATCHES];
    let mut ops = [0f64; BATCHES];
    for i in 0..BATCHES {
        let start = counter();
        for _ in 0..per_batch {
            base();
        }
        let middle = counter();
        for _ in 0..per_batch {
            op();
        }
        let end = counter();
        bases[i] = (middle - start) as f64 / per_batch as f64;
        ops[i] = (end - middle) as f64 / per_batch as f64;
    }
    let median = |v: &mut [f64; BATCHES]| {
        v.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal));
        v[BATCHES / 2]
    };
    (median(&mut bases), median(&mut ops))
}

fn report(op: &str, n: u64, ticks: f64, floor: f64, hz: u64) {
    let ns = ticks * 1e9 / hz as f64;
    println!(
        "bench suite=syscall op={op} iterations={n} ticks_per_op={ticks:.1} ns_per_op={ns:.0} ratio_to_floor={:.2}",
        ticks / floor
    );
}

fn main(args: ulib::Args) -> i32 {
    let n = args.number_or(1, 20_000).max(10);
    let hz = frequency();
    if hz == 0 {
        println!("bench-syscall: CNTFRQ_EL0 reads 0, no time base");
        return 1;
    }
    // The floor and the null call are timed in alternating short batches, and each ratio is
    // the median of the batches' ratios: the host schedules QEMU's vCPU threads as it likes,
    // and two long runs taken at different moments met different hosts (ratios from 2x to 4x
    // for the same kernel).
    let (floor, getpid) = interleaved(n, floor_call, || {
        sys::getpid();
    });
    report("floor", n, floor, floor, hz);
    report("getpid", n, getpid, floor, hz);

    // A fresh mapping each run, so every touch is a first touch.
    let pages = (n / 10).clamp(16, 2048) as usize;
    let mut best = u64::MAX;
    for _ in 0..3 {
        let Ok(base) = sys::mmap_anon(pages * 4096, sys::PROT_READ | sys::PROT_WRITE) else {
            println!("bench-syscall: mmap of {pages} pages refused");
            return 1;
        };
        let start = counter();
        for i in 0..pages {
            // SAFETY: inside the fresh read-write mapping.
            unsafe { core::ptr::write_volatile((base + i * 4096) as *mut u8, 1) };
        }
        best = best.min(counter() - start);
        // SAFETY: nothing uses the mapping any more.
        let _ = unsafe { sys::munmap(base, pages * 4096) };
    }
    report(
        "page-fault",
        pages as u64,
        best as f64 / pages as f64,
        floor,
        hz,
    );

    let forks = (n / 100).clamp(10, 200);
    let fork_exit_wait = per_op(forks, || match sys::fork() {
        Ok(sys::Fork::Child) => sys::exit(0),
        Ok(sys::Fork::Parent(_)) => {
            let _ = sys::wait4(-1);
        }
        Err(e) => {
            println!("bench-syscall: fork refused: {}", e.name());
            sys::exit(1);
        }
    });
    report("fork-exit-wait", forks, fork_exit_wait, floor, hz);

    let yields = (n / 10).max(100);
    let child = match sys::fork() {
        Ok(sys::Fork::Child) => {
            for _ in 0..yields * 4 {
                sys::sched_yield();
            }
            sys::exit(0);
        }
        Ok(sys::Fork::Parent(pid)) => pid,
        Err(e) => {
            println!("bench-syscall: fork refused: {}", e.name());
            return 1;
        }
    };
    // Each parent yield hands the CPU to the child, whose yield hands it back: two switches.
    let per_yield = per_op(yields, sys::sched_yield);
    let _ = sys::kill(child, sys::SIGKILL);
    let _ = sys::wait4(child);
    report("switch", yields, per_yield / 2.0, floor, hz);
    0
}
