//! The shell's process commands: `ps`, `spawn`, `kill` and `top` (chapters 15, 16 and 18).
//!
//! `ps` walks the process list the way every reader does, without a lock (chapter 18); `top`
//! reads the scheduler's per-CPU counters twice and prints the difference, which is the only
//! moment those counters meet (chapter 14). The demo tasks `spawn` starts are small programs
//! that show the scheduler at work: a CPU hog that the tick preempts, a sleeper that wakes
//! ten times a second, a finite computation that exits, and a pair that wake each other across
//! CPUs.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::command::{BadUsage, Outcome, print};
use super::commands::Shell;
use super::line::Terminal;
use crate::smp;
use crate::task::{self, CpuMask, DEFAULT_STACK_SIZE, Pid, Policy, TaskState};

/// What `spawn` can start: (name, what it does).
pub const SPAWNABLE: &[(&str, &str)] = &[
    ("spin", "a CPU hog, time-sliced, until killed"),
    ("sleepy", "wakes every 100 ms, until killed"),
    (
        "churn",
        "about a second of arithmetic, then exits with a checksum",
    ),
    (
        "pingpong",
        "two tasks on different CPUs waking each other 1000 times",
    ),
];

/// `ps`: every task, from the process list, with its CPU and state.
pub fn ps(sh: &mut Shell, _: &[&str]) -> Outcome {
    let mut rows = 0;
    // The CPUs' own flows first: each runs its idle task when nothing else is runnable.
    sh.write("running now:");
    for cpu in smp::online_cpus() {
        if let Some((pid, name)) = task::running_on(cpu) {
            print(sh, format_args!(" cpu{cpu} {name} ({pid})"));
        }
    }
    sh.write("\n  PID CPU STATE     POLICY  SWITCHES PREEMPT MIGR  RUNTIME NAME\n");
    let freq = crate::arch::counter_frequency().max(1);
    for t in task::tasks() {
        let state = match t.state() {
            TaskState::Exited => "Zombie",
            s => s.name(),
        };
        print(
            sh,
            format_args!(
                "{:>5} {:>3} {:<9} {:<7} {:>8} {:>7} {:>4} {:>6}ms {}\n",
                t.pid(),
                t.cpu(),
                state,
                match t.policy() {
                    Policy::RoundRobin => "rr",
                    Policy::Fifo => "fifo",
                },
                t.switches(),
                t.preemptions(),
                t.migrations(),
                t.runtime_ticks_now() * 1000 / freq,
                t.name()
            ),
        );
        rows += 1;
    }
    print(
        sh,
        format_args!("{rows} task(s); a Zombie has exited and waits to be reaped (kill <pid>)\n"),
    );
    user_processes(sh, freq);
    Ok(())
}

/// `spawn <demo>`: start one of the demo tasks.
pub fn spawn(sh: &mut Shell, args: &[&str]) -> Outcome {
    let which = args.first().copied().unwrap_or("");
    let started = match which {
        "spin" => spawn_one("spin", Policy::RoundRobin, CpuMask::ALL, spin),
        "sleepy" => spawn_one("sleepy", Policy::RoundRobin, CpuMask::ALL, sleepy),
        "churn" => spawn_one("churn", Policy::RoundRobin, CpuMask::ALL, churn),
        "pingpong" => return pingpong(sh),
        _ => {
            print(
                sh,
                format_args!("spawn: no demo task {which:?}; there are:\n"),
            );
            for (name, about) in SPAWNABLE {
                print(sh, format_args!("  {name:<9} {about}\n"));
            }
            return Err(BadUsage);
        }
    };
    match started {
        Ok(pid) => {
            print(sh, format_args!("spawned {which} as pid {pid}\n"));
            Ok(())
        }
        Err(why) => {
            print(sh, format_args!("spawn {which}: {why}; nothing started\n"));
            Err(BadUsage)
        }
    }
}

fn spawn_one(name: &str, policy: Policy, affinity: CpuMask, f: fn() -> i32) -> Result<Pid, String> {
    task::spawn_with(name, DEFAULT_STACK_SIZE, affinity, policy, f).map_err(|e| format!("{e}"))
}

fn spin() -> i32 {
    let mut x = 1u64;
    while !task::should_stop() {
        for _ in 0..100_000 {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    0
}

fn sleepy() -> i32 {
    while !task::should_stop() {
        task::sleep_ticks(10);
    }
    0
}

fn churn() -> i32 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..20_000_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(i);
        if i % 1_000_000 == 0 && task::should_stop() {
            return -1;
        }
    }
    (x & 0x7fff_ffff) as i32
}

/// Two tasks pinned to different CPUs, each waking the other: every round is a cross-CPU
/// wakeup by IPI. Both exit after 1000 rounds.
fn pingpong(sh: &mut Shell) -> Outcome {
    let mut cpus = smp::online_cpus();
    let (Some(a), Some(b)) = (cpus.next(), cpus.next()) else {
        sh.write("spawn pingpong: needs two CPUs; this machine runs one\n");
        return Err(BadUsage);
    };
    const ROUNDS: u64 = 1000;
    let ball = Arc::new(AtomicU64::new(0));
    let peers: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut pids = [0; 2];
    for (side, cpu) in [(0u64, a), (1u64, b)] {
        let (ball, peers) = (ball.clone(), peers.clone());
        let spawned = task::spawn_with(
            if side == 0 { "ping" } else { "pong" },
            DEFAULT_STACK_SIZE,
            CpuMask::only(cpu),
            Policy::RoundRobin,
            move || {
                // Wait until the peer's pid is known, then play: the ball's parity says whose
                // turn it is.
                while peers[1 - side as usize].load(Ordering::Acquire) == 0 {
                    task::sleep_ticks(1);
                }
                let peer = task::lookup(peers[1 - side as usize].load(Ordering::Acquire) as Pid);
                while ball.load(Ordering::Acquire) < 2 * ROUNDS {
                    task::prepare_to_sleep();
                    let b = ball.load(Ordering::Acquire);
                    if b >= 2 * ROUNDS || b % 2 == side {
                        task::finish_wait();
                        if b < 2 * ROUNDS {
                            ball.store(b + 1, Ordering::Release);
                        }
                        if let Some(p) = &peer {
                            task::wake(p);
                        }
                        if task::should_stop() {
                            return -1;
                        }
                        continue;
                    }
                    task::sleep();
                }
                0
            },
        );
        match spawned {
            Ok(pid) => pids[side as usize] = pid,
            Err(e) => {
                print(sh, format_args!("spawn pingpong: {e}\n"));
                if side == 1 {
                    task::kill(pids[0]);
                }
                return Err(BadUsage);
            }
        }
    }
    peers[0].store(u64::from(pids[0]), Ordering::Release);
    peers[1].store(u64::from(pids[1]), Ordering::Release);
    print(
        sh,
        format_args!(
            "spawned ping as pid {} on cpu{a} and pong as pid {} on cpu{b}; `ps` shows their switches\n",
            pids[0], pids[1]
        ),
    );
    Ok(())
}

/// `kill <pid>`: ask a task to stop and reap it; reap a zombie.
pub fn kill(sh: &mut Shell, args: &[&str]) -> Outcome {
    let Some(pid) = args.first().and_then(|a| a.parse::<Pid>().ok()) else {
        print(
            sh,
            format_args!(
                "kill: {:?} is not a PID (see `ps`)\n",
                args.first().copied().unwrap_or("")
            ),
        );
        return Err(BadUsage);
    };
    // A user process is ended by a signal; its parent (or the reaper) reaps it.
    if crate::proc::PROCESSES.lock().contains_key(&pid) {
        match crate::proc::run::kill(pid, crate::proc::signal::SIGKILL) {
            Ok(()) => print(
                sh,
                format_args!(
                    "kill: sent SIGKILL to process {pid}; it ends when it next enters or leaves the kernel\n"
                ),
            ),
            Err(e) => print(sh, format_args!("kill: process {pid}: {e}\n")),
        }
        return Ok(());
    }
    // From here the command was well formed: a PID that names no task (any more) is news for
    // the user, not a usage error.
    let Some(t) = task::lookup(pid) else {
        print(
            sh,
            format_args!("kill: no task {pid} (it may have been reaped already)\n"),
        );
        return Ok(());
    };
    // `task::kill` refuses a task that has exited (then we reap it below) or been reaped.
    if t.state() != TaskState::Exited && !task::kill(pid) && t.state() != TaskState::Exited {
        print(
            sh,
            format_args!("kill: task {pid} could not be signalled (it was reaped meanwhile)\n"),
        );
        return Ok(());
    }
    // Kernel threads stop when they next look at `should_stop`: give it up to 2 s.
    for _ in 0..200 {
        if t.state() == TaskState::Exited {
            break;
        }
        task::sleep_ticks(1);
    }
    if t.state() != TaskState::Exited {
        print(
            sh,
            format_args!(
                "kill: task {pid} ({}) was asked to stop but has not yet; it stays listed\n",
                t.name()
            ),
        );
        return Ok(());
    }
    drop(t);
    match task::wait(pid) {
        Ok(status) => print(
            sh,
            format_args!("task {pid} exited with status {status}; reaped\n"),
        ),
        Err(e) => print(sh, format_args!("kill: {e}\n")),
    }
    Ok(())
}

/// `top [seconds]`: per-CPU load over an interval, from the scheduler's per-CPU counters.
pub fn top(sh: &mut Shell, args: &[&str]) -> Outcome {
    let seconds = match args.first() {
        None => 1,
        Some(a) => match a.parse::<u64>() {
            Ok(s) if (1..=60).contains(&s) => s,
            _ => {
                print(
                    sh,
                    format_args!("top: {a:?} is not a number of seconds from 1 to 60\n"),
                );
                return Err(BadUsage);
            }
        },
    };
    let cpus: Vec<usize> = smp::online_cpus().collect();
    let before: Vec<task::Stats> = cpus.iter().map(|&c| task::stats_of(c)).collect();
    sh.write("measuring...\n");
    sh.flush();
    task::sleep_ticks(seconds * crate::irq::tick::TICK_HZ);
    sh.write("  CPU  LOAD  QUEUED  SWITCHES/s  WAKEUPS/s  PULLED  RUNNING\n");
    let mut total = task::Stats::default();
    for (i, &cpu) in cpus.iter().enumerate() {
        let now = task::stats_of(cpu);
        let ticks = (now.ticks - before[i].ticks).max(1);
        let busy = now.busy_ticks - before[i].busy_ticks;
        let running = task::running_on(cpu).map(|(_, n)| n).unwrap_or_default();
        print(
            sh,
            format_args!(
                "{cpu:>5} {:>4}% {:>7} {:>11} {:>10} {:>7}  {running}\n",
                busy * 100 / ticks,
                task::queued_on(cpu),
                (now.switches - before[i].switches) / seconds,
                (now.wakeups - before[i].wakeups) / seconds,
                now.migrations - before[i].migrations,
            ),
        );
        total = total + now;
    }
    print(
        sh,
        format_args!(
            "since boot, all CPUs: {} switches, {} preemptions, {} wakeups, {} tasks pulled by idle CPUs\n",
            total.switches, total.preemptions, total.wakeups, total.migrations
        ),
    );
    Ok(())
}

/// The user-process part of `ps`: time in user mode and in the kernel apart, pages, faults.
fn user_processes(sh: &mut Shell, freq: u64) {
    let processes = crate::proc::processes();
    if processes.is_empty() {
        sh.write("no user processes (run <program> starts one)\n");
        return;
    }
    sh.write("user processes:\n  PID  PPID CPU    USER  SYSTEM PAGES FAULTS NAME\n");
    let tree = crate::proc::PROCESS_TREE.lock().snapshot();
    for p in processes {
        let (parent, zombie) = tree
            .iter()
            .find(|(pid, _, _)| *pid == p.pid)
            .map_or((0, true), |(_, parent, zombie)| (*parent, *zombie));
        let cpu = task::lookup(p.pid).map_or(-1, |t| t.cpu() as i64);
        let ms = |ticks: &AtomicU64| ticks.load(Ordering::Relaxed) * 1000 / freq;
        print(
            sh,
            format_args!(
                "{:>5} {:>5} {:>3} {:>5}ms {:>5}ms {:>5} {:>6} {}{}\n",
                p.pid,
                parent,
                cpu,
                ms(&p.times.user),
                ms(&p.times.system),
                p.pages_in_use(),
                p.faults.load(Ordering::Relaxed),
                p.name(),
                if zombie { " (exited)" } else { "" }
            ),
        );
    }
}
