//! rcutorture on every CPU (chapter 18, "RCU"): the kernel's RCU, fed quiescent states
//! by the tick and the idle loop, must never let a reader see an object outlive a grace period
//! after its removal; a deliberately broken RCU (synchronize returns at once) must be caught.

use alloc::boxed::Box;
use alloc::string::String;

use super::KTest;
use crate::ensure;
use crate::platform::Platform;
use crate::rcu::{self, BrokenRcu, RcuFlavor, Torture};
use crate::smp;

pub static TESTS: &[KTest] = &[
    KTest {
        name: "rcu_torture_readers_never_see_a_freed_object",
        run: real_rcu_passes,
    },
    KTest {
        name: "rcu_torture_catches_a_broken_rcu",
        run: broken_rcu_is_caught,
    },
];

/// Replacements of the current object per run: each waits for a grace period (a few ticks).
const UPDATES: u64 = 40;
/// Updates in the broken RCU's first run.
const BROKEN_UPDATES: u64 = 5_000;
/// Runs before concluding the broken RCU cannot be caught here.
const ATTEMPTS: usize = 5;

/// One torture run on every online CPU (logical ids 0..n; cpu0 writes, the others read).
fn torture<R: RcuFlavor + Sync>(rcu: R, updates: u64) -> Result<rcu::TortureReport, String> {
    let cpus = smp::online_cpus().count();
    ensure!(
        smp::online_cpus().eq(0..cpus),
        "online CPUs are not 0..{cpus}; the torture test numbers CPUs densely"
    );
    let t = Box::new(Torture::new(rcu, cpus, updates));
    smp::on_each_cpu(&|id| t.run_cpu(id));
    Ok(t.report())
}

fn real_rcu_passes(_: &Platform<'static>) -> Result<(), String> {
    if smp::online_cpus().count() < 2 {
        log::info!(target: "rcu", "rcutorture needs a writer and a reader CPU; skipped");
        return Ok(());
    }
    let report = torture(rcu::global(), UPDATES)?;
    for line in alloc::format!("{report}").lines() {
        log::info!(target: "rcu", "{line}");
    }
    ensure!(
        report.passed(),
        "{} reads saw a freed object",
        report.failures()
    );
    ensure!(
        report.updates == UPDATES,
        "{} of {UPDATES} updates ran",
        report.updates
    );
    Ok(())
}

fn broken_rcu_is_caught(_: &Platform<'static>) -> Result<(), String> {
    if smp::online_cpus().count() < 2 {
        log::info!(target: "rcu", "rcutorture needs a writer and a reader CPU; skipped");
        return Ok(());
    }
    for attempt in 1..=ATTEMPTS {
        // Without grace periods an update takes microseconds, so the run would be over before
        // the readers start: many more updates, and more each attempt.
        let report = torture(BrokenRcu::new(), BROKEN_UPDATES * attempt as u64)?;
        if !report.passed() {
            for line in alloc::format!("{report}").lines() {
                log::info!(target: "rcu", "{line}");
            }
            log::info!(target: "rcu", "the broken RCU was caught (run {attempt}), as it must be");
            return Ok(());
        }
    }
    Err(alloc::format!(
        "the broken RCU passed {ATTEMPTS} runs: this test could not catch a broken RCU"
    ))
}
