//! Lock statistics on real CPUs (chapter 9, "Lock statistics"): two CPUs taking turns on one
//! named lock, each holding it while the other asks, must show contentions, wait time and
//! bounces; one CPU alone on another lock must show none of them.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU32, Ordering};

use super::KTest;
use crate::arch::{counter, counter_frequency};
use crate::ensure;
use crate::percpu;
use crate::platform::Platform;
use crate::sync::lockstat::{self, ClassStats};
use crate::sync::{SpinLock, lockdep, preempt};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "lockstat_two_cpus_contend_wait_and_bounce",
        run: two_cpus,
    },
    KTest {
        name: "lockstat_one_cpu_never_contends",
        run: one_cpu,
    },
];

/// Rounds of the two-CPU scene: each round one CPU holds, the other asks.
const ROUNDS: u32 = 16;
/// How long a holder keeps the lock once the other CPU has said it is about to ask.
const HOLD_US: u64 = 200;

static TURNS: SpinLock<u64> = SpinLock::named("lockstat.turns", 0);
static ALONE: SpinLock<u64> = SpinLock::named("lockstat.alone", 0);

fn stats_of(lock: &SpinLock<u64>) -> Result<ClassStats, String> {
    let slot = lockdep::class_slot(lock.class()).ok_or("the lock class table is full")?;
    lockstat::snapshot()
        .into_iter()
        .find(|s| s.class.is_some_and(|c| c.id as usize == slot))
        .ok_or_else(|| format!("no statistics for `{}`", lock.class().name()))
}

fn need_lockstat() -> Result<bool, String> {
    if lockstat::ENABLED {
        return Ok(true);
    }
    ensure!(
        lockstat::snapshot().is_empty(),
        "lock statistics are not built in, yet the snapshot has rows"
    );
    log::info!(target: "lockstat", "not built in (cargo feature lockstat); skipped");
    Ok(false)
}

fn two_cpus(_: &Platform<'static>) -> Result<(), String> {
    if !need_lockstat()? {
        return Ok(());
    }
    let me = percpu::this_cpu().id;
    let Some(other) = crate::smp::online_cpus().find(|&id| id != me) else {
        log::info!(target: "lockstat", "contention needs a second CPU; skipped");
        return Ok(());
    };
    lockstat::reset();
    let hold_ticks = HOLD_US * counter_frequency() / 1_000_000;
    // Round r: the CPU `holders[r % 2]` holds. Steps: 2r+1 = holder has it, 2r+2 = the other
    // is about to ask. The holder then keeps it HOLD_US more, so the other's first try fails.
    let step = AtomicU32::new(0);
    let finished = AtomicU32::new(0);
    crate::smp::on_each_cpu(&|id| {
        if id != me && id != other {
            return;
        }
        for round in 0..ROUNDS {
            let holds = if round % 2 == 0 { me } else { other };
            if id == holds {
                let mut g = TURNS.lock();
                step.store(2 * round + 1, Ordering::Release);
                while step.load(Ordering::Acquire) != 2 * round + 2 {
                    core::hint::spin_loop();
                }
                let until = counter() + hold_ticks;
                while counter() < until {
                    core::hint::spin_loop();
                }
                *g += 1;
                drop(g);
            } else {
                while step.load(Ordering::Acquire) != 2 * round + 1 {
                    core::hint::spin_loop();
                }
                step.store(2 * round + 2, Ordering::Release);
                *TURNS.lock() += 1;
            }
            // Both are done with round r before r+1's holder takes the lock. Not checked under
            // the lock: the next holder would hold it while the other CPU waited to look.
            finished.fetch_add(1, Ordering::AcqRel);
            while finished.load(Ordering::Acquire) < 2 * (round + 1) {
                core::hint::spin_loop();
            }
        }
    });
    let s = stats_of(&TURNS)?;
    log::info!(target: "lockstat",
        "`{}` on cpu{me} and cpu{other}: {} acquisitions, {} contended, wait {} ns (max {}), \
         hold max {} ns, {} bounces",
        s.label(), s.acquisitions, s.contentions, s.wait_total_ns, s.wait_max_ns,
        s.hold_max_ns, s.bounces
    );
    ensure!(
        s.acquisitions == 2 * u64::from(ROUNDS),
        "{} acquisitions, expected 2 per round, {}",
        s.acquisitions,
        2 * ROUNDS
    );
    ensure!(
        s.contentions > 0,
        "{ROUNDS} rounds of a CPU asking while the other held: no contention counted"
    );
    ensure!(
        s.wait_total_ns > 0 && s.wait_max_ns > 0,
        "contended, but no wait time"
    );
    ensure!(
        s.hold_max_ns >= HOLD_US * 1000,
        "the longest hold was {} ns, but each holder kept it {HOLD_US} us",
        s.hold_max_ns
    );
    ensure!(
        s.bounces > 0,
        "the lock went back and forth between two CPUs, but no bounce was counted"
    );
    Ok(())
}

fn one_cpu(_: &Platform<'static>) -> Result<(), String> {
    if !need_lockstat()? {
        return Ok(());
    }
    lockstat::reset();
    // Pinned to this CPU for the whole loop: a bounce would then be a counting error.
    preempt::preempt_disable();
    for _ in 0..100 {
        *ALONE.lock() += 1;
    }
    preempt::preempt_enable();
    let s = stats_of(&ALONE)?;
    ensure!(
        s.acquisitions == 100,
        "{} acquisitions, not 100",
        s.acquisitions
    );
    ensure!(
        s.contentions == 0 && s.wait_total_ns == 0,
        "one CPU alone: {} contentions, {} ns waiting",
        s.contentions,
        s.wait_total_ns
    );
    ensure!(s.bounces == 0, "one CPU alone: {} bounces", s.bounces);
    Ok(())
}
