//! The RCU-protected process list under torture on every CPU (chapter 18, "RCU").
//!
//! Every CPU inserts and removes fresh pids while every CPU walks the list and looks pids up
//! (src/task/proclist/torture.rs). On the kernel's RCU no reader may meet a poisoned node,
//! miss a pid, or read a payload that is not its pid's; and once the run is over and every
//! callback has run, the heap must hold exactly what it held before. On the broken RCU
//! (grace periods that wait for nobody) the readers must meet poison.

use alloc::boxed::Box;
use alloc::string::String;

use super::KTest;
use crate::ensure;
use crate::platform::Platform;
use crate::rcu::{self, BrokenRcu};
use crate::smp::{self, StartLine};
use crate::task::Pid;
use crate::task::proclist::torture::{FIRST_FRESH, Torture, TortureReport};
use crate::task::proclist::{DEFAULT_QUARANTINE, GlobalRcu, ListRcu, POISON_PID, POISONING};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "proclist_torture_readers_never_see_a_freed_node",
        run: real_rcu_passes,
    },
    KTest {
        name: "proclist_torture_catches_a_broken_rcu",
        run: broken_rcu_is_caught,
    },
];

/// Rounds all CPUs do together (each a walk, four lookups and one insert or remove), shared
/// out: the work stays the same with 8 CPUs as with 4. With a fixed count per CPU, 8 vCPUs on
/// a 2-core host took more than the boot tests' two minutes.
const ROUNDS_IN_ALL: u64 = 12_000;
/// Rounds in all in the broken RCU's first run; each further run is longer.
const BROKEN_ROUNDS_IN_ALL: u64 = 8_000;

/// A CPU's share of `in_all` rounds.
fn per_cpu(in_all: u64) -> u64 {
    (in_all / smp::online_cpus().count().max(1) as u64).max(WARM_UP_ROUNDS)
}
/// Rounds per CPU of the warm-up run before the measured one.
const WARM_UP_ROUNDS: u64 = 20;
/// Runs before concluding the broken RCU cannot be caught here.
const ATTEMPTS: u64 = 5;

/// One torture run on every online CPU (logical ids 0..n), checked for leaks: the heap in use
/// after the run (list dropped, every callback run) must equal what it was before.
fn torture<R: ListRcu>(
    rcu: R,
    rounds: u64,
    check_payload: bool,
    quarantine: usize,
) -> Result<(TortureReport, Pid), String> {
    let cpus = smp::online_cpus().count();
    ensure!(
        smp::online_cpus().eq(0..cpus),
        "online CPUs are not 0..{cpus}; the torture test numbers CPUs densely"
    );
    let me = crate::percpu::this_cpu().id;
    // A short warm-up, unmeasured: whatever the first run on every CPU allocates once and
    // keeps (a secondary CPU's scheduler state, made the first time it idles) is made now.
    let warm_up = Torture::new(&rcu, cpus, WARM_UP_ROUNDS, check_payload, quarantine);
    run_on_each_cpu(&warm_up);
    warm_up.finish(me);
    drop(warm_up);
    // Earlier tests' callbacks must not free memory in the middle of the measurement.
    rcu::rcu_barrier();
    let heap = &crate::HEAP;
    let before = heap.bytes_in_use();
    let t = Box::new(Torture::new(&rcu, cpus, rounds, check_payload, quarantine));
    run_on_each_cpu(&t);
    let report = t.finish(me);
    let fresh_end = t.next_fresh();
    drop(t);
    rcu::rcu_barrier();
    let leaked = heap.bytes_in_use() as isize - before as isize;
    for line in alloc::format!("{report}").lines() {
        log::info!(target: "proclist", "{line}");
    }
    ensure!(
        leaked == 0,
        "{leaked} bytes still in use after the run ({} inserted, {} removed, {} freed)",
        report.stats.inserted,
        report.stats.removed,
        report.stats.freed
    );
    Ok((report, fresh_end))
}

/// Every online CPU runs its part of `t`, all released together.
fn run_on_each_cpu<R: ListRcu>(t: &Torture<R>) {
    let start = StartLine::new();
    smp::on_each_cpu(&|id| {
        start.wait();
        t.run_cpu(id);
    });
}

fn real_rcu_passes(_: &Platform<'static>) -> Result<(), String> {
    let rounds = per_cpu(ROUNDS_IN_ALL);
    let (report, _) = torture(GlobalRcu, rounds, true, DEFAULT_QUARANTINE)?;
    let cpus = report.cpus as u64;
    ensure!(
        report.poison.sightings == 0,
        "readers met freed nodes: {}",
        report.poison
    );
    ensure!(
        report.passed(),
        "{} misses, {} corrupt payloads, {} stale finds",
        report.misses,
        report.corrupt,
        report.stale
    );
    ensure!(
        report.rounds >= cpus * rounds,
        "{} rounds, fewer than {} CPUs x {rounds}",
        report.rounds,
        cpus
    );
    let s = report.stats;
    ensure!(
        s.len == 0 && s.inserted == s.removed && s.retired == 0,
        "the list is not empty after the run: {s:?}"
    );
    ensure!(
        !POISONING || s.freed == s.removed,
        "{} of {} removed nodes freed",
        s.freed,
        s.removed
    );
    ensure!(
        report.grace_periods > 0 && report.removes > 0,
        "no removals or no grace periods: nothing was tested"
    );
    Ok(())
}

fn broken_rcu_is_caught(_: &Platform<'static>) -> Result<(), String> {
    if !POISONING {
        log::info!(target: "proclist", "built without rcu-poison: nothing can see the broken RCU; skipped");
        return Ok(());
    }
    if smp::online_cpus().count() < 2 {
        log::info!(target: "proclist", "one CPU cannot race itself; skipped");
        return Ok(());
    }
    for attempt in 1..=ATTEMPTS {
        // Quarantine without limit: no node is really freed before the run ends, so a reader
        // the broken RCU left behind reads poison, never memory someone else owns.
        let (report, fresh_end) = torture(
            BrokenRcu::new(),
            per_cpu(BROKEN_ROUNDS_IN_ALL) * attempt,
            false,
            usize::MAX,
        )?;
        if report.caught() {
            let first = report
                .poison
                .first
                .ok_or("poison counted but no first sighting recorded")?;
            // A reader can load the magic before the callback poisons it and the pid after,
            // and then records the poisoned pid field: proof of poison too.
            ensure!(
                (FIRST_FRESH..fresh_end).contains(&first.pid) || first.pid == POISON_PID,
                "the first poisoned node had pid {}, which no CPU removed",
                first.pid
            );
            ensure!(
                first.cpu.is_some_and(|c| c < report.cpus),
                "the first sighting names no online CPU: {:?}",
                first.cpu
            );
            log::info!(target: "proclist",
                "the broken RCU was caught (run {attempt}): pid {} seen poisoned on cpu{}, as it must be",
                first.pid, first.cpu.unwrap_or(0)
            );
            return Ok(());
        }
    }
    Err(alloc::format!(
        "the broken RCU passed {ATTEMPTS} runs: this test could not catch a broken RCU"
    ))
}
