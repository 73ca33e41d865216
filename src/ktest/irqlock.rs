//! The source texts' interrupt deadlock, and the lock validator catching it (the interrupt-context and
//! lock-validator chapters).
//!
//! Process context takes a lock; the timer interrupt, on the same CPU, takes it too. With a
//! plain spin lock the day the tick arrives while the lock is held, the handler spins on a lock
//! that the code it interrupted holds, and that code can never run again to release it: the CPU
//! is gone. The validator does not wait for that day: it reports the first time it has seen the
//! lock taken both ways. With an `IrqSafeSpinLock`, process context holds the lock with IRQs
//! off, the tick waits its turn, and nothing is reported.

use alloc::string::String;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use super::KTest;
use crate::arch::{counter, counter_frequency};
use crate::ensure;
use crate::irq::tick;
use crate::percpu;
use crate::platform::Platform;
use crate::sync::spinlock::validate::{self, ReportKind};
use crate::sync::{IrqSafeSpinLock, SpinLock, lockdep};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "lockdep_plain_lock_shared_with_the_tick_is_reported",
        run: plain_lock_reported,
    },
    KTest {
        name: "lockdep_irq_safe_lock_shared_with_the_tick_runs_clean",
        run: irq_safe_lock_clean,
    },
    KTest {
        name: "lockdep_ab_ba_inversion_is_reported_on_first_occurrence",
        run: ab_ba_reported,
    },
    KTest {
        name: "lockdep_a_spin_of_seconds_is_reported_with_its_owner",
        run: long_spin_reported,
    },
];

static PLAIN: SpinLock<u64> = SpinLock::named("demo: plain, shared with the tick", 0);
static SAFE: IrqSafeSpinLock<u64> =
    IrqSafeSpinLock::named("demo: irq-safe, shared with the tick", 0);
static LOCK_A: SpinLock<()> = SpinLock::named("demo: A", ());
static LOCK_B: SpinLock<()> = SpinLock::named("demo: B", ());
static HELD_LONG: SpinLock<()> = SpinLock::named("demo: held for seconds", ());

const IDLE: u8 = 0;
const TAKE_PLAIN: u8 = 1;
const TAKE_SAFE: u8 = 2;
/// What the tick does on `DEMO_CPU`.
static MODE: AtomicU8 = AtomicU8::new(IDLE);
static DEMO_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);
static HOOK_TOOK: AtomicU64 = AtomicU64::new(0);

fn on_tick(cpu: usize) {
    if cpu != DEMO_CPU.load(Ordering::Relaxed) {
        return;
    }
    match MODE.load(Ordering::Acquire) {
        TAKE_PLAIN => *PLAIN.lock() += 1,
        TAKE_SAFE => *SAFE.lock() += 1,
        _ => return,
    }
    HOOK_TOOK.fetch_add(1, Ordering::Relaxed);
}

/// Make the tick on this CPU take a demo lock (`mode`) from now on.
fn arm(mode: u8) {
    // Only one tick hook exists; ours is the only user, so a second `set` is the same function.
    tick::set_tick_hook(on_tick);
    DEMO_CPU.store(percpu::this_cpu().id, Ordering::Relaxed);
    MODE.store(mode, Ordering::Release);
}

fn disarm() {
    MODE.store(IDLE, Ordering::Release);
}

fn wait_for_hook(times: u64) -> bool {
    let target = HOOK_TOOK.load(Ordering::Relaxed) + times;
    let deadline = counter() + 3 * counter_frequency();
    while counter() < deadline {
        if HOOK_TOOK.load(Ordering::Relaxed) >= target {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

fn need_validator() -> Result<(), String> {
    ensure!(
        validate::active(),
        "the lock validator is off (bootargs nolockdep or bench)"
    );
    ensure!(
        crate::smp::interrupts_ready(percpu::this_cpu().id),
        "this CPU has no timer interrupt"
    );
    Ok(())
}

/// The validator reports each finding once per boot; a second run in one boot (from the
/// shell) has nothing new to see.
static PLAIN_RAN: AtomicU8 = AtomicU8::new(0);

fn plain_lock_reported(_: &Platform<'static>) -> Result<(), String> {
    need_validator()?;
    if PLAIN_RAN.swap(1, Ordering::Relaxed) == 1 {
        log::info!(target: "lockdep", "already reported in this boot; the validator reports a finding once");
        return Ok(());
    }
    lockdep::rearm();
    let (before, _) = validate::reports();
    // Process context, IRQs on: the lock is now known as "taken with IRQs enabled".
    *PLAIN.lock() += 1;
    // Now the tick takes it too. Its first acquisition completes the dangerous pair.
    arm(TAKE_PLAIN);
    let ticked = wait_for_hook(3);
    disarm();
    ensure!(ticked, "the tick never took the lock");
    let (after, kind) = validate::reports();
    ensure!(
        after > before && kind == ReportKind::InconsistentIrqUsage,
        "no IRQ-safety report ({} new, last {kind:?}): the deadlock would have come unannounced",
        after - before
    );
    log::info!(target: "lockdep",
        "reported before any deadlock: the tick took the lock {} times without ever finding it held",
        HOOK_TOOK.load(Ordering::Relaxed)
    );
    Ok(())
}

fn irq_safe_lock_clean(_: &Platform<'static>) -> Result<(), String> {
    need_validator()?;
    const TICKS: u64 = 20;
    lockdep::rearm();
    let (before, _) = validate::reports();
    let start_value = *SAFE.lock();
    arm(TAKE_SAFE);
    let target = HOOK_TOOK.load(Ordering::Relaxed) + TICKS;
    let deadline = counter() + 5 * counter_frequency();
    let mut mine = 0u64;
    // Process context hammers the lock while the tick takes it: every collision is resolved by
    // IRQs being off while process context holds it.
    while HOOK_TOOK.load(Ordering::Relaxed) < target && counter() < deadline {
        *SAFE.lock() += 1;
        mine += 1;
    }
    disarm();
    let by_tick = HOOK_TOOK.load(Ordering::Relaxed) - (target - TICKS);
    let (after, kind) = validate::reports();
    ensure!(
        by_tick >= TICKS,
        "the tick took the lock only {by_tick} times in 5 s"
    );
    ensure!(
        after == before,
        "{} validator reports ({kind:?}) for an IRQ-safe lock",
        after - before
    );
    let total = *SAFE.lock() - start_value;
    ensure!(
        total == mine + by_tick,
        "{total} increments seen, {mine} by process context + {by_tick} by the tick made"
    );
    log::info!(target: "lockdep",
        "{mine} acquisitions in process context and {by_tick} by the tick, no report"
    );
    Ok(())
}

static ABBA_RAN: AtomicU8 = AtomicU8::new(0);

fn ab_ba_reported(_: &Platform<'static>) -> Result<(), String> {
    ensure!(
        validate::active(),
        "the lock validator is off (bootargs nolockdep or bench)"
    );
    if ABBA_RAN.swap(1, Ordering::Relaxed) == 1 {
        log::info!(target: "lockdep", "already reported in this boot; the validator reports a finding once");
        return Ok(());
    }
    lockdep::rearm();
    let (before, _) = validate::reports();
    {
        let _a = LOCK_A.lock();
        let _b = LOCK_B.lock();
    }
    let (middle, _) = validate::reports();
    ensure!(middle == before, "A then B alone was reported");
    {
        // The other order, on the same CPU: no deadlock can happen here, yet two CPUs running
        // these two blocks at once could deadlock. Reported now, not on the day they do.
        let _b = LOCK_B.lock();
        let _a = LOCK_A.lock();
    }
    let (after, kind) = validate::reports();
    ensure!(
        after > before && kind == ReportKind::LockOrderCycle,
        "B then A after A then B was not reported as an inversion (last report {kind:?})"
    );
    Ok(())
}

fn long_spin_reported(_: &Platform<'static>) -> Result<(), String> {
    need_validator()?;
    let me = percpu::this_cpu().id;
    let Some(holder) = crate::smp::online_cpus().find(|&id| id != me) else {
        log::info!(target: "lockdep", "a long spin needs a second CPU to hold the lock; skipped");
        return Ok(());
    };
    lockdep::rearm();
    let (before, _) = validate::reports();
    // The holder keeps the lock until the watchdog has reported the waiter, or for 10 s at
    // most: counted from when the waiter is about to spin, since on a busy host the waiter's
    // vCPU may start long after the holder's (a fixed hold from the holder's start once left
    // the waiter spinning less than STUCK_AFTER_MS).
    let give_up_ticks = 10 * counter_frequency();
    let held = core::sync::atomic::AtomicBool::new(false);
    let spinning_from = AtomicU64::new(0);
    crate::smp::on_each_cpu(&|id| {
        if id == holder {
            let _g = HELD_LONG.lock();
            held.store(true, Ordering::Release);
            while spinning_from.load(Ordering::Acquire) == 0 {
                core::hint::spin_loop();
            }
            let until = spinning_from.load(Ordering::Acquire) + give_up_ticks;
            while counter() < until && validate::reports().0 == before {
                core::hint::spin_loop();
            }
        } else if id == me {
            while !held.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
            spinning_from.store(counter(), Ordering::Release);
            // Spins until the holder lets go: some CPU's tick runs the watchdog and sees it.
            drop(HELD_LONG.lock());
        }
    });
    let spun_ms = (counter() - spinning_from.load(Ordering::Relaxed)) * 1000 / counter_frequency();
    let (after, kind) = validate::reports();
    ensure!(
        after > before && kind == ReportKind::Stuck,
        "a spin of {spun_ms} ms was not reported (last report {kind:?}; the watchdog reports after {} ms)",
        validate::STUCK_AFTER_MS
    );
    Ok(())
}

/// The live demo: hold the plain lock in process context until the tick on this CPU takes it.
/// With the validator on, the tick's acquisition is refused with a report and a panic; with
/// `nolockdep` the CPU hangs for good, as the source texts describe.
pub fn deadlock_demo() {
    log::info!(target: "demo",
        "irq-deadlock: cpu{} holds a plain spin lock with IRQs on until its own timer tick takes it",
        percpu::this_cpu().id
    );
    let _held = PLAIN.lock();
    arm(TAKE_PLAIN);
    loop {
        core::hint::spin_loop();
    }
}
