//! The big lock under several CPUs (chapter 24, "One big kernel lock").
//!
//! `biglock_holders_that_sleep_still_exclude_each_other`: two kernel threads per CPU take one
//! big lock, nest it, and inside it sleep or yield now and then (so the lock goes at the switch
//! and comes back after it); a counter of threads inside must never read more than one.
//! `biglock_broken_reacquire_is_caught`: the same with the broken variant, whose holder believes
//! it has the lock back after a switch without taking it: some thread must come back from a
//! switch without owning the lock, or find another inside.
//! `biglock_carried_holders_still_exclude_each_other` and `biglock_carried_broken_reacquire_is_caught`:
//! the same two with a lock the CPU carries through each switch (Linux 2.0's, `locking=bkl`'s
//! default), which the task landing after the switch adopts or lets go.
//! `biglock_subsystem_order_inversion_is_reported`: the subsystem locks taken in the documented
//! order, then two of them the other way round: the lock validator reports the cycle at once,
//! before any CPU waits for another.
//! `biglock_subsystem_locks_are_taken_by_their_calls_only_under_subsystem`: `mix` (files, page
//! faults, fork, wait, yield) must take `sub.proc`, `sub.mm` and `sub.fs` under the subsystem
//! strategy, at least once per operation each, and none of them under any other strategy.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::KTest;
use crate::ensure;
use crate::platform::Platform;
use crate::proc::locking::{SUB_FS, SUB_PROC};
use crate::sync::biglock::{self, BigLock};
use crate::sync::lockdep;
use crate::sync::spinlock::validate::{self, ReportKind};
use crate::task::{self, CpuMask, Policy};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "biglock_holders_that_sleep_still_exclude_each_other",
        run: |_| holders_exclude(),
    },
    KTest {
        name: "biglock_broken_reacquire_is_caught",
        run: |_| broken_is_caught(&BROKEN),
    },
    KTest {
        name: "biglock_carried_holders_still_exclude_each_other",
        run: |_| carried_holders_exclude(),
    },
    KTest {
        name: "biglock_carried_broken_reacquire_is_caught",
        run: |_| {
            BROKEN_CARRIED.set_carried_through_switch(true);
            broken_is_caught(&BROKEN_CARRIED)
        },
    },
    KTest {
        name: "biglock_subsystem_order_inversion_is_reported",
        run: subsystem_inversion,
    },
    KTest {
        name: "biglock_subsystem_locks_are_taken_by_their_calls_only_under_subsystem",
        run: |_| subsystem_coverage(),
    },
];

static TORTURE: BigLock = BigLock::named("test: big lock");
static BROKEN: BigLock = BigLock::named("test: broken big lock");
static CARRIED: BigLock = BigLock::named("test: carried big lock");
static BROKEN_CARRIED: BigLock = BigLock::named("test: broken carried big lock");

/// Critical sections per thread, and every how many a thread sleeps inside one.
const ROUNDS: usize = 120;
const SWITCH_EVERY: usize = 5;
/// Busy-loop iterations of each critical section (tens of microseconds under QEMU).
const WORK_INSIDE: u32 = 3000;
/// Runs the broken variant gets before the test concludes it cannot catch it.
const BROKEN_ATTEMPTS: usize = 8;

/// Two threads per online CPU hammer `lock`: how many times a thread found another inside,
/// and how many times one came back from a switch inside without owning the lock.
fn torture(lock: &'static BigLock) -> Result<(usize, usize), String> {
    if !biglock::register(lock) {
        return Err("no room to register the test's big lock".into());
    }
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let unowned = Arc::new(AtomicUsize::new(0));
    let mut pids = Vec::new();
    for cpu in crate::smp::online_cpus() {
        for n in 0..2 {
            let (inside, overlaps, unowned) = (inside.clone(), overlaps.clone(), unowned.clone());
            let pid = task::spawn_with(
                &format!("biglock/{cpu}.{n}"),
                task::DEFAULT_STACK_SIZE,
                CpuMask::only(cpu),
                Policy::RoundRobin,
                move || {
                    for round in 0..ROUNDS {
                        lock.lock();
                        lock.lock(); // the holder may take it again
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        if round % SWITCH_EVERY == 0 {
                            // Off the CPU inside: the lock goes, and must come back before
                            // this thread runs on.
                            inside.fetch_sub(1, Ordering::SeqCst);
                            if round % (2 * SWITCH_EVERY) == 0 {
                                task::sleep_ticks(1);
                            } else {
                                task::yield_now();
                            }
                            if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                            // Back from the switch the thread must own the lock again, at the
                            // depth it left: a thread inside without owning it is a critical
                            // section open to every other CPU, whether or not one came in.
                            if lock.depth_of_current() != 2 {
                                unowned.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        // Work inside long enough that the lock is rarely free: a holder that
                        // comes back from a switch without it then almost always finds another
                        // thread inside, here or at the check after the work.
                        for i in 0..WORK_INSIDE {
                            core::hint::black_box(i);
                        }
                        if inside.load(Ordering::SeqCst) != 1 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        lock.unlock();
                        lock.unlock();
                    }
                    0
                },
            )
            .map_err(|e| format!("spawn: {e}"))?;
            pids.push(pid);
        }
    }
    for pid in pids {
        task::wait(pid).map_err(|e| format!("wait {pid}: {e}"))?;
    }
    Ok((
        overlaps.load(Ordering::SeqCst),
        unowned.load(Ordering::SeqCst),
    ))
}

/// Run the torture on `lock` and check that nobody was ever inside with another or without the
/// lock; the outermost acquisitions it made, and how many critical sections it ran.
fn holders_exclude_on(lock: &'static BigLock, what: &str) -> Result<(u64, u64), String> {
    let (acquired_before, contended_before, _) = lock.stats();
    let (overlaps, unowned) = torture(lock)?;
    let (acquired, contended, _) = lock.stats();
    let cpus = crate::smp::online_cpus().count();
    log::info!(target: "biglock",
        "{what}: {} threads on {cpus} CPUs: {} outermost acquisitions, {} found it held, {overlaps} overlaps",
        2 * cpus, acquired - acquired_before, contended - contended_before);
    ensure!(
        overlaps == 0 && unowned == 0,
        "{what}: {overlaps} times a thread found another inside the big lock; {unowned} times one came back from a switch without it"
    );
    Ok((acquired - acquired_before, (2 * cpus * ROUNDS) as u64))
}

fn holders_exclude() -> Result<(), String> {
    let (acquired, sections) = holders_exclude_on(&TORTURE, "let go at each switch")?;
    // Every sleep inside gives the lock up and takes it back: more outermost acquisitions than
    // critical sections shows the release at the switch really happened.
    ensure!(
        acquired > sections,
        "{acquired} outermost acquisitions for {sections} critical sections: the switches inside never released it"
    );
    Ok(())
}

fn carried_holders_exclude() -> Result<(), String> {
    CARRIED.set_carried_through_switch(true);
    holders_exclude_on(&CARRIED, "carried through switches").map(|_| ())
}

fn broken_is_caught(lock: &'static BigLock) -> Result<(), String> {
    if crate::smp::online_cpus().count() < 2 {
        log::info!(target: "biglock", "one CPU cannot race itself; skipped");
        return Ok(());
    }
    lock.set_broken_reacquire(true);
    let mut result = Err(format!(
        "the broken big lock let nobody in twice, and every thread owned it after its switches, in {BROKEN_ATTEMPTS} runs: this test cannot catch it"
    ));
    for attempt in 1..=BROKEN_ATTEMPTS {
        let (overlaps, unowned) = torture(lock)?;
        if overlaps > 0 || unowned > 0 {
            log::info!(target: "biglock",
                "the broken reacquire was caught (run {attempt}): {unowned} times a thread came back from a switch without the lock, {overlaps} times two threads were inside");
            result = Ok(());
            break;
        }
    }
    lock.set_broken_reacquire(false);
    result
}

/// `demo=lock-order`: the subsystem locks taken against the documented order, as a careless
/// system call would; the validator reports the cycle the first time, before any CPU waits.
pub fn lock_order_demo() {
    log::info!(target: "biglock",
        "demo lock-order: sub.proc then sub.fs (the documented order), then sub.fs then sub.proc");
    match subsystem_inversion_inner() {
        Ok(()) => log::info!(target: "biglock",
            "demo lock-order: reported above, and no CPU waited: the order is checked, not waited out"),
        Err(why) => log::error!(target: "biglock", "demo lock-order: {why}"),
    }
}

fn subsystem_inversion(_: &Platform<'static>) -> Result<(), String> {
    subsystem_inversion_inner()
}

fn subsystem_inversion_inner() -> Result<(), String> {
    ensure!(
        validate::active(),
        "the lock validator is off (bootargs nolockdep or bench)"
    );
    lockdep::rearm();
    let (before, _) = validate::reports();
    // The documented order: processes before files (fork takes them so).
    SUB_PROC.lock();
    SUB_FS.lock();
    SUB_FS.unlock();
    SUB_PROC.unlock();
    let (middle, _) = validate::reports();
    ensure!(middle == before, "sub.proc then sub.fs alone was reported");
    // The other order, on one CPU: nothing waits here, but two CPUs doing these two things at
    // once would each hold the lock the other wants.
    SUB_FS.lock();
    SUB_PROC.lock();
    SUB_PROC.unlock();
    SUB_FS.unlock();
    let (after, kind) = validate::reports();
    ensure!(
        after > before && kind == ReportKind::LockOrderCycle,
        "sub.fs then sub.proc after sub.proc then sub.fs was not reported as an inversion (last report {kind:?})"
    );
    Ok(())
}

/// Operations of `mix` in the coverage test.
const COVERAGE_OPS: u64 = 4;

fn subsystem_coverage() -> Result<(), String> {
    use crate::proc::console::{Capture, files_writing_to};
    use crate::proc::locking::{self, SUB_MM, Strategy};
    use crate::proc::run;
    use crate::proc::tree::ExitStatus;

    const DIR: &str = "/ktest-subsystem";
    match crate::fs::mkdir(DIR) {
        Ok(()) | Err(crate::errno::Errno::EEXIST) => {}
        Err(e) => return Err(format!("cannot make {DIR}: {e}")),
    }
    let locks = [&SUB_PROC, &SUB_MM, &SUB_FS];
    let before: Vec<u64> = locks.iter().map(|l| l.stats().0).collect();
    let ops = format!("{COVERAGE_OPS}");
    let argv = ["mix", "--ops", &ops, "--user-iters", "100", "--dir", DIR]
        .map(String::from)
        .to_vec();
    let out = Arc::new(Capture::new());
    let pid = run::spawn_with_files("mix", argv, CpuMask::ALL, files_writing_to(out.clone()))
        .map_err(|e| format!("cannot start mix: {e}"))?;
    let status = run::wait_kernel_child(pid, || false).map_err(|e| format!("wait for mix: {e}"))?;
    ensure!(
        status == ExitStatus::Exited(0),
        "mix ended {status:?}, printing {:?}",
        out.text()
    );
    // Every file mix made it unlinked, so the directory goes too, or this test left one behind.
    crate::fs::rmdir(DIR).map_err(|e| format!("rmdir {DIR} after mix: {e}"))?;
    let taken: Vec<u64> = locks
        .iter()
        .zip(&before)
        .map(|(l, b)| l.stats().0 - b)
        .collect();
    let subsystem = locking::strategy() == Strategy::Subsystem;
    for (lock, &n) in locks.iter().zip(&taken) {
        if subsystem {
            ensure!(
                n >= COVERAGE_OPS,
                "`{}` was taken {n} times in {COVERAGE_OPS} operations of mix: some of its calls run without it",
                lock.name()
            );
        } else {
            ensure!(
                n == 0,
                "`{}` was taken {n} times under locking={}: only the subsystem strategy takes it",
                lock.name(),
                locking::strategy().name()
            );
        }
    }
    log::info!(target: "ktest",
        "subsystem locks over {COVERAGE_OPS} operations of mix under locking={}: sub.proc {}, sub.mm {}, sub.fs {}",
        locking::strategy().name(), taken[0], taken[1], taken[2]);
    Ok(())
}
