//! bad-forkbomb [max]: fork children (each sleeps until killed) until fork fails, then kill and
//! reap them all. A per-user process limit must make fork fail with EAGAIN (Linux:
//! RLIMIT_NPROC; root is exempt, so on a Linux host run it with a maximum). quartet must return
//! EAGAIN at its process limit and stay responsive. Exits 0 when fork said EAGAIN, 3 when it
//! stopped at the given maximum, 1 on anything else.
#![no_std]
#![no_main]

use ulib::println;
use ulib::sys::{self, Errno, Fork};

ulib::entry!(main);

const MAX_TRACKED: usize = 4096;

fn main(args: ulib::Args) -> i32 {
    let max = args
        .number_or(1, MAX_TRACKED as u64)
        .min(MAX_TRACKED as u64) as usize;
    println!("bad-forkbomb: forking until refused (at most {max})");
    let mut children = [0i32; MAX_TRACKED];
    let mut count = 0;
    let mut refusal = None;
    while count < max {
        match sys::fork() {
            Ok(Fork::Child) => loop {
                let _ = sys::nanosleep(100_000_000);
            },
            Ok(Fork::Parent(pid)) => {
                children[count] = pid;
                count += 1;
            }
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    for &pid in &children[..count] {
        let _ = sys::kill(pid, sys::SIGKILL);
    }
    let mut reaped = 0;
    while let Ok((_, status)) = sys::wait4(-1) {
        if status == sys::ExitStatus::Signaled(sys::SIGKILL as u8) {
            reaped += 1;
        }
    }
    let all_reaped = reaped == count;
    match refusal {
        Some(e) => println!(
            "bad-forkbomb: {count} forks, then {}; killed and reaped {reaped}",
            e.name()
        ),
        None => println!(
            "bad-forkbomb: {count} forks, stopped at the maximum; killed and reaped {reaped}"
        ),
    }
    match (refusal, all_reaped) {
        (_, false) => 1,
        (Some(Errno::EAGAIN), true) => 0,
        (Some(_), true) => 1,
        (None, true) => 3,
    }
}
