//! mix [--kernel-pct N] [--ops M | --ms T] [--user-iters U] [--start-at TICKS] [--dir D]:
//! a workload that spends a chosen share of its time in the kernel, for the big-kernel-lock
//! experiment (chapter 9, "Measuring locks").
//!
//! It repeats one operation: user work (a pure computation loop, no memory traffic beyond
//! registers) and then kernel work: create, write, read back, close and unlink a file of its
//! own in directory D (default: the working directory), map four pages, touch each (four
//! page faults) and unmap them, fork a child that exits at once and wait for it, and yield.
//! How long the user loop runs is set so that the kernel work is N% (default 10) of the time
//! one operation takes when the process runs alone: at the start it times a few kernel parts
//! and the loop, and sizes the loop from those (`--user-iters` skips that and uses U).
//!
//! It runs M operations, or as many as fit in T milliseconds (default 1000) by the
//! calibration. With `--start-at`, it waits until the virtual counter reaches TICKS before the
//! first operation, so several copies started one after another begin together.
//!
//! At the end it prints one line, timed with the virtual counter (so the same on quartet and
//! Linux), which the kernel's `bkl` benchmark reads:
//!
//! `mix: pid=.. cpu=.. kernel_pct=N ops=M user_iters=U hz=.. start=.. end=.. ticks=..
//! kernel_ticks=.. user_ticks=.. kernel_share=..`
//!
//! start and end are counter readings around the operations; kernel_ticks and user_ticks
//! split the time between the two parts, and kernel_share is the first over their sum: the
//! share it actually had, which under a contended kernel is more than N%. Exits 0 only if
//! every file read back what was written and every child exited 0.
#![no_std]
#![no_main]

use core::fmt::Write;
use core::hint::black_box;
use ulib::clock::{counter, frequency};
use ulib::sys::{self, PAGE_SIZE};
use ulib::{eprintln, println};

ulib::entry!(main);

/// Pages mapped, touched and unmapped in each operation.
const PAGES: usize = 4;
/// Bytes written to the file and read back in each operation.
const FILE_BYTES: usize = 512;

struct Options {
    kernel_pct: u64,
    ops: Option<u64>,
    ms: u64,
    user_iters: Option<u64>,
    start_at: u64,
    dir: &'static str,
}

fn usage() -> i32 {
    eprintln!(
        "usage: mix [--kernel-pct 1-100] [--ops M | --ms T] [--user-iters U] [--start-at TICKS] [--dir D]"
    );
    2
}

fn parse_options(args: &ulib::Args) -> Result<Options, i32> {
    let mut options = Options {
        kernel_pct: 10,
        ops: None,
        ms: 1000,
        user_iters: None,
        start_at: 0,
        dir: ".",
    };
    let mut i = 1;
    while i < args.len() {
        let (Some(flag), Some(value)) = (args.get(i), args.get(i + 1)) else {
            eprintln!("mix: {} needs a value", args.get(i).unwrap_or("?"));
            return Err(usage());
        };
        i += 2;
        if flag == "--dir" {
            options.dir = value;
            continue;
        }
        let Some(n) = ulib::parse_u64(value) else {
            eprintln!("mix: {flag} {value}: not a number");
            return Err(usage());
        };
        match flag {
            "--kernel-pct" if (1..=100).contains(&n) => options.kernel_pct = n,
            "--kernel-pct" => {
                eprintln!("mix: --kernel-pct {n}: the kernel share must be 1 to 100 percent");
                return Err(usage());
            }
            "--ops" => options.ops = Some(n.max(1)),
            "--ms" => options.ms = n.max(1),
            "--user-iters" => options.user_iters = Some(n),
            "--start-at" => options.start_at = n,
            _ => {
                eprintln!("mix: unknown flag {flag}");
                return Err(usage());
            }
        }
    }
    Ok(options)
}

/// The user part: a xorshift chain, `iterations` steps long. Each step needs the one before,
/// so the loop cannot be shortened, and it touches no memory, so CPUs running it never meet.
#[inline(never)]
fn user_work(iterations: u64, seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..black_box(iterations) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// "DIR/mix-PID.tmp" in a stack buffer.
struct Path {
    buf: [u8; 200],
    len: usize,
}

impl Write for Path {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Path {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("mix.tmp")
    }
}

/// The kernel part of one operation; Err says what went wrong.
fn kernel_work(path: &str, round: u64) -> Result<(), &'static str> {
    let mut data = [0u8; FILE_BYTES];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (round as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    let fd = sys::open(path, sys::O_RDWR | sys::O_CREAT | sys::O_TRUNC, 0o644)
        .map_err(|_| "open (create) failed")?;
    let checked = (|| {
        sys::write_all(fd, &data).map_err(|_| "write failed")?;
        sys::lseek(fd, 0, sys::SEEK_SET).map_err(|_| "lseek failed")?;
        let mut back = [0u8; FILE_BYTES];
        let mut got = 0;
        while got < FILE_BYTES {
            match sys::read(fd, &mut back[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => return Err("read failed"),
            }
        }
        if got != FILE_BYTES || back != data {
            return Err("the file did not read back what was written");
        }
        Ok(())
    })();
    let closed = sys::close(fd).map_err(|_| "close failed");
    let unlinked = sys::unlinkat(path, 0).map_err(|_| "unlink failed");
    checked.and(closed).and(unlinked)?;

    let len = PAGES * PAGE_SIZE;
    let base = sys::mmap_anon(len, sys::PROT_READ | sys::PROT_WRITE).map_err(|_| "mmap failed")?;
    for page in 0..PAGES {
        // SAFETY: inside the fresh read-write mapping; each first touch is a page fault.
        unsafe { core::ptr::write_volatile((base + page * PAGE_SIZE) as *mut u64, round) };
    }
    // SAFETY: nothing uses the mapping after this.
    unsafe { sys::munmap(base, len) }.map_err(|_| "munmap failed")?;

    match sys::fork() {
        Ok(sys::Fork::Child) => sys::exit(0),
        Ok(sys::Fork::Parent(pid)) => match sys::wait4(pid) {
            Ok((_, sys::ExitStatus::Exited(0))) => {}
            Ok(_) => return Err("the forked child did not exit 0"),
            Err(_) => return Err("wait4 failed"),
        },
        Err(_) => return Err("fork failed"),
    }
    sys::sched_yield();
    Ok(())
}

/// The middle value of `samples` (sorted in place).
fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn fail(what: &str, path: &str) -> i32 {
    eprintln!("mix {}: {what} ({path})", sys::getpid());
    1
}

fn main(args: ulib::Args) -> i32 {
    let options = match parse_options(&args) {
        Ok(options) => options,
        Err(status) => return status,
    };
    let hz = frequency();
    if hz == 0 {
        eprintln!("mix: CNTFRQ_EL0 reads 0, no time base");
        return 1;
    }
    let pid = sys::getpid();
    let mut path = Path {
        buf: [0; 200],
        len: 0,
    };
    if write!(path, "{}/mix-{pid}.tmp", options.dir).is_err() {
        eprintln!("mix: directory name too long: {}", options.dir);
        return 2;
    }
    let path = path.as_str();

    // Calibration, unless the caller already knows both numbers: the median of a few kernel
    // parts (after two that warm up the file and the page tables), then how fast the loop
    // runs.
    let mut kernel_estimate = 0;
    if options.user_iters.is_none() || options.ops.is_none() {
        let mut samples = [0u64; 5];
        for round in 0..2 {
            if let Err(what) = kernel_work(path, round) {
                return fail(what, path);
            }
        }
        for (round, sample) in samples.iter_mut().enumerate() {
            let t0 = counter();
            if let Err(what) = kernel_work(path, round as u64) {
                return fail(what, path);
            }
            *sample = counter() - t0;
        }
        kernel_estimate = median(&mut samples).max(1);
    }
    let user_iters = options.user_iters.unwrap_or_else(|| {
        let user_target = kernel_estimate * (100 - options.kernel_pct) / options.kernel_pct;
        let timed = |steps: u64| {
            let t0 = counter();
            user_work(steps, 7);
            counter() - t0
        };
        // Long enough (2 ms) to dwarf the counter reads, then the fastest of three: a run the
        // host or the tick interrupted only looks slower.
        let mut steps = 1000u64;
        while timed(steps) < hz / 500 && steps < 1 << 40 {
            steps *= 4;
        }
        let ticks = (0..3).map(|_| timed(steps)).min().unwrap_or(1).max(1);
        (user_target as u128 * steps as u128 / ticks as u128) as u64
    });
    let ops = options.ops.unwrap_or_else(|| {
        let op_estimate = kernel_estimate * 100 / options.kernel_pct;
        (options.ms * hz / 1000 / op_estimate.max(1)).max(1)
    });

    // Yielding, not spinning: the kernel thread starting the other copies may share this CPU.
    while counter() < options.start_at {
        sys::sched_yield();
    }
    let (mut kernel_ticks, mut user_ticks) = (0u64, 0u64);
    let start = counter();
    for round in 0..ops {
        let t0 = counter();
        user_work(user_iters, round);
        let before_kernel = counter();
        user_ticks += before_kernel - t0;
        if let Err(what) = kernel_work(path, round) {
            return fail(what, path);
        }
        kernel_ticks += counter() - before_kernel;
    }
    let end = counter();
    let cpu = sys::getcpu().map(|(cpu, _)| cpu as i64).unwrap_or(-1);
    let share = kernel_ticks as f64 / (kernel_ticks + user_ticks).max(1) as f64;
    println!(
        "mix: pid={pid} cpu={cpu} kernel_pct={} ops={ops} user_iters={user_iters} hz={hz} start={start} end={end} ticks={} kernel_ticks={kernel_ticks} user_ticks={user_ticks} kernel_share={share:.3}",
        options.kernel_pct,
        end - start
    );
    0
}
