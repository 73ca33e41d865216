//! How much of the kernel one CPU may run at a time: the locking strategy, chosen at boot with
//! `locking=` (chapters 24, 25 and 26 tell the history; chapter 27 reads the measurements).
//!
//! The same kernel runs the same user programs under four strategies, in the order SMP kernels
//! went through them:
//!
//! | `locking=` | who may run kernel code for a process | where |
//! |------------|----------------------------------------|-------|
//! | `leader`   | CPU 0 only: a system call or page fault on another CPU moves its thread to CPU 0 and back | `on_the_leader` |
//! | `bkl`      | one CPU at a time: one big kernel lock from every entry from user mode to the return | `enter_from_user`, `leave_to_user` |
//! | `subsystem`| one CPU per subsystem: a lock each for the scheduler and processes, memory, files and the console | `subsystem` and the fs's `serialize_with` |
//! | `fine`     | any CPU: only the data locks (per inode, per address space, per-CPU run queues, RCU) | (nothing added) |
//!
//! The data locks stay in every strategy. The coarse locks are *added* on top of them, so the
//! kernel is correct whichever runs (kernel threads such as the shell, which never enter from
//! user mode, never take the big lock), and the measurement shows exactly what the coarse
//! serialization costs. A historical kernel without the fine locks would be cheaper per call
//! under its big lock; the benchmark's one-CPU column shows how much (the fine locks are
//! uncontended there).
//!
//! Lock order, proved on every run by the lock validator (the big locks are validator classes
//! like any spin lock): `bkl` -> `sub.proc` -> `sub.mm` -> `sub.fs` -> `sub.console` -> any spin
//! lock. They are registered in that order, so a task that sleeps holding several takes them
//! back in that order.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::config::MAX_CPUS;
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::sync::biglock::{self, BigLock, Hold};
use crate::task::state::CpuMask;

/// A way of sharing the kernel among CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Leader and followers: only CPU 0 runs the kernel for processes.
    Leader,
    /// One big kernel lock around all kernel work for processes.
    Bkl,
    /// One lock per subsystem.
    Subsystem,
    /// The data locks alone.
    Fine,
}

impl Strategy {
    /// Every strategy, in the order of history.
    pub const ALL: [Strategy; 4] = [
        Strategy::Leader,
        Strategy::Bkl,
        Strategy::Subsystem,
        Strategy::Fine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Leader => "leader",
            Strategy::Bkl => "bkl",
            Strategy::Subsystem => "subsystem",
            Strategy::Fine => "fine",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|st| st.name() == s)
    }

    /// One line for the boot log and `cpus`.
    pub fn describe(self) -> &'static str {
        match self {
            Strategy::Leader => {
                "only CPU 0 runs kernel code for processes; the others hand it their system calls and faults"
            }
            Strategy::Bkl => {
                "one big kernel lock from every entry from user mode to the return (recursive, dropped while asleep)"
            }
            Strategy::Subsystem => {
                "one lock each for the scheduler and processes, memory, files and the console, in that order"
            }
            Strategy::Fine => {
                "data locks only: per inode, per address space, per-CPU run queues and page lists, RCU"
            }
        }
    }

    const fn code(self) -> u8 {
        match self {
            Strategy::Leader => 0,
            Strategy::Bkl => 1,
            Strategy::Subsystem => 2,
            Strategy::Fine => 3,
        }
    }
}

static STRATEGY: AtomicU8 = AtomicU8::new(Strategy::Fine.code());

/// The strategy this boot runs.
pub fn strategy() -> Strategy {
    match STRATEGY.load(Ordering::Relaxed) {
        0 => Strategy::Leader,
        1 => Strategy::Bkl,
        2 => Strategy::Subsystem,
        _ => Strategy::Fine,
    }
}

/// The big kernel lock.
pub static BKL: BigLock = BigLock::named("bkl");
/// The subsystem locks, in the lock order.
pub static SUB_PROC: BigLock = BigLock::named("sub.proc");
pub static SUB_MM: BigLock = BigLock::named("sub.mm");
pub static SUB_FS: BigLock = BigLock::named("sub.fs");
pub static SUB_CONSOLE: BigLock = BigLock::named("sub.console");

/// The big locks in lock order, with what each stands for.
pub static BIG_LOCKS: [&BigLock; 5] = [&BKL, &SUB_PROC, &SUB_MM, &SUB_FS, &SUB_CONSOLE];

/// A subsystem, for `subsystem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subsystem {
    /// The scheduler's system calls and the process table: sched_yield, nanosleep, spawn,
    /// fork, exit, wait, kill, getppid. (The switch itself runs on the per-CPU run-queue locks
    /// in every strategy, and lets this lock go, as it lets every big lock go.)
    Proc,
    /// Address spaces: page faults, mmap, munmap, brk, fork's copy, exec's swap, exit's teardown.
    Mm,
    /// The console as a file (a process writing to its terminal).
    Console,
}

/// System calls and faults each CPU handed to CPU 0 (leader strategy), since boot.
static HANDOFFS_FROM: PerCpu<AtomicU64> =
    PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);

/// Handed to CPU 0 from every CPU, since boot.
pub fn handoffs() -> u64 {
    HANDOFFS_FROM
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .sum()
}

/// Handed to CPU 0 from CPU `cpu`, since boot.
pub fn handoffs_from(cpu: usize) -> u64 {
    HANDOFFS_FROM.for_cpu(cpu).load(Ordering::Relaxed)
}

/// When the big kernel lock leaves a CPU that switches tasks (`bklswitch=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BklSwitch {
    /// Linux 2.0: the scheduler runs under the lock and the CPU carries it through the switch;
    /// the task that lands adopts it or lets it go. The default.
    Carry,
    /// Linux 2.2: `schedule` lets it go before the switch and takes it back after.
    Release,
}

impl BklSwitch {
    pub fn parse(s: &str) -> Option<BklSwitch> {
        match s {
            "carry" => Some(BklSwitch::Carry),
            "release" => Some(BklSwitch::Release),
            _ => None,
        }
    }
}

/// Read `locking=` and `bklswitch=` from the boot arguments (once, on the boot CPU, before any
/// process runs). An unknown value is reported and the default kept.
pub fn init(requested: Option<&str>, bkl_switch: Option<&str>) {
    let chosen = match requested {
        None => Strategy::Fine,
        Some(s) => Strategy::parse(s).unwrap_or_else(|| {
            log::warn!(target: "locking",
                "unknown locking={s:?} (leader, bkl, subsystem, fine); using fine");
            Strategy::Fine
        }),
    };
    STRATEGY.store(chosen.code(), Ordering::Relaxed);
    for lock in BIG_LOCKS {
        if !biglock::register(lock) {
            log::error!(target: "locking", "no room to register big lock `{}`: it stays held across sleeps", lock.name());
        }
    }
    if chosen == Strategy::Subsystem {
        crate::fs::locks::serialize_with(&SUB_FS);
    }
    log::info!(target: "locking", "{}: {}", chosen.name(), chosen.describe());
    let switch = bkl_switch.map_or(BklSwitch::Carry, |s| {
        BklSwitch::parse(s).unwrap_or_else(|| {
            log::warn!(target: "locking", "unknown bklswitch={s:?} (carry, release); using carry");
            BklSwitch::Carry
        })
    });
    BKL.set_carried_through_switch(switch == BklSwitch::Carry);
    if chosen == Strategy::Bkl {
        match switch {
            BklSwitch::Carry => log::info!(target: "locking",
                "bkl: the scheduler runs under it and a CPU carries it through a switch, as in Linux 2.0 (bklswitch=release: let go before the switch, as in 2.2)"),
            BklSwitch::Release => log::info!(target: "locking",
                "bkl: let go before each switch and taken back after it, as in Linux 2.2 (bklswitch=carry: carried through, as in 2.0)"),
        }
    }
}

/// Every entry from user mode (system call, fault, interrupt) starts here, with IRQs masked;
/// so does a process thread's first run, on its way to user mode (`run::enter_user`).
pub fn enter_from_user() {
    if strategy() == Strategy::Bkl {
        BKL.lock();
    }
}

/// The last thing before user mode: the big kernel lock goes. A thread that returns to user
/// mode holding a big lock more than once has leaked a level; that is a kernel bug.
pub fn leave_to_user() {
    // Nothing of this CPU's interrupt masking may travel to user mode: a push_off left over
    // here would make the next switch on this CPU refuse (and panic), far from its cause. A
    // push_off masks IRQs, so only a CPU with IRQs masked can have one left over (and after a
    // system call, with IRQs on, the check costs one register read).
    let depth = if crate::arch::irqflags::irqs_disabled() {
        crate::sync::irq::depth()
    } else {
        0
    };
    if depth != 0 {
        log::error!(target: "locking",
            "returning to user mode on cpu{} with IRQ-disable depth {depth}: a path left an IRQ-safe lock or push_off behind",
            percpu::this_cpu().id);
    }
    if BKL.held_by_current() {
        assert_eq!(
            BKL.depth_of_current(),
            1,
            "returning to user mode with the big kernel lock taken more than once"
        );
        BKL.unlock();
    }
    // Only the subsystem strategy takes these: the other strategies skip the loads on the way
    // back from every system call.
    if strategy() != Strategy::Subsystem {
        return;
    }
    for lock in &BIG_LOCKS[1..] {
        assert!(
            !lock.held_by_current(),
            "returning to user mode holding `{}`",
            lock.name()
        );
    }
}

/// One level of `which`'s lock under the subsystem strategy; nothing under the others.
#[track_caller]
pub fn subsystem(which: Subsystem) -> Hold {
    if strategy() != Strategy::Subsystem {
        return Hold::take(None);
    }
    Hold::take(Some(match which {
        Subsystem::Proc => &SUB_PROC,
        Subsystem::Mm => &SUB_MM,
        Subsystem::Console => &SUB_CONSOLE,
    }))
}

/// Run `kernel_work` (a system call or a page fault for the current process) where the
/// strategy says: under `leader`, on CPU 0, the thread moving there and back; elsewhere, here.
///
/// Under `leader` the thread is pinned to CPU 0 for the whole of the work even when it entered
/// there: the work may sleep or be preempted, and an unpinned thread could then resume it on
/// another CPU. For the same reason `here` is only where the thread came from, a hint for the
/// way back and the count, never proof of where it runs now.
pub fn on_the_leader<R>(kernel_work: impl FnOnce() -> R) -> R {
    const LEADER: usize = 0;
    if strategy() != Strategy::Leader {
        return kernel_work();
    }
    let here = percpu::this_cpu().id;
    let mask = crate::task::set_current_affinity(CpuMask::only(LEADER));
    if here == LEADER {
        let result = kernel_work();
        crate::task::set_current_affinity(mask);
        return result;
    }
    HANDOFFS_FROM.for_cpu(here).fetch_add(1, Ordering::Relaxed);
    let result = kernel_work();
    // Back to the CPU it came from, then its own mask again (which may name CPU 0 too: moving
    // first keeps the follower's user work where it was).
    crate::task::set_current_affinity(CpuMask::only(here));
    crate::task::set_current_affinity(mask);
    result
}

/// (acquisitions, contentions, counter ticks waited) of every big lock, summed: the benchmark's
/// lock-wait figure when the full lock statistics are not built in.
pub fn big_lock_totals() -> (u64, u64, u64) {
    BIG_LOCKS.iter().fold((0, 0, 0), |(a, c, w), lock| {
        let (la, lc, lw) = lock.stats();
        (a + la, c + lc, w + lw)
    })
}
