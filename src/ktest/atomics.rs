//! In-kernel tests of the hand-written atomics on every CPU at once, once with the LL/SC loops
//! and once with LSE when the CPU has it (QEMU `-cpu max`; the Pi 4 does not).

use alloc::string::String;

use super::KTest;
use crate::arch::aarch64::{atomic, cpu};
use crate::ensure;
use crate::platform::Platform;
use crate::smp;
use crate::sync::{AtomicBits, AtomicCounter};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "atomics_racy_counter_loses_updates_atomic_does_not",
        run: racy_counter,
    },
    KTest {
        name: "atomics_llsc_exact_on_every_cpu",
        run: llsc,
    },
    KTest {
        name: "atomics_lse_exact_on_every_cpu",
        run: lse,
    },
];

const ROUNDS: i64 = 5_000;
/// Increments per CPU per round of the race.
const RACE_ROUNDS: u64 = 1_000_000;
/// Rounds before concluding the race cannot be provoked (each round restarts everyone at once).
const MAX_RACE_ATTEMPTS: u32 = 50;

/// The source texts' race: every CPU increments a shared counter with a load, an add and a store.
/// Two CPUs that load the same value both store value + 1, and one increment is lost. The
/// same loop with `AtomicCounter::inc` loses none. With one CPU there is nobody to race.
///
/// On a 2-core host running several 4-CPU guests, a guest's vCPUs may take turns instead of
/// running at once, and a short loop can finish before the next CPU starts. So every round
/// starts all CPUs together at a barrier, each loop is long enough to span many host time
/// slices, the window between load and store holds a YIELD, and rounds repeat (bounded) until
/// updates are lost: a CPU descheduled inside the window loses everything the others counted
/// meanwhile.
fn racy_counter(_: &Platform<'static>) -> Result<(), String> {
    use core::sync::atomic::{AtomicU64, Ordering};
    let cpus = smp::online_cpus().count() as u64;
    let expected = cpus * RACE_ROUNDS;
    let racy = AtomicU64::new(0);
    let mut attempts = 0;
    let mut got = expected;
    while got == expected && cpus > 1 && attempts < MAX_RACE_ATTEMPTS {
        attempts += 1;
        racy.store(0, Ordering::Relaxed);
        let start = smp::StartLine::new();
        smp::on_each_cpu(&|_| {
            start.wait();
            for _ in 0..RACE_ROUNDS {
                // Deliberately not atomic: a separate load and store (each one atomic by
                // itself, so this is a lost-update race, not undefined behaviour).
                let v = racy.load(Ordering::Relaxed);
                // A YIELD inside the window widens it: a hint on hardware, and under QEMU a
                // point where the vCPU may give way to another.
                crate::arch::cpu_relax();
                let v = core::hint::black_box(v).wrapping_add(1);
                racy.store(core::hint::black_box(v), Ordering::Relaxed);
            }
        });
        got = racy.load(Ordering::Relaxed);
    }
    let atomic_count = AtomicCounter::new(0);
    let start = smp::StartLine::new();
    smp::on_each_cpu(&|_| {
        start.wait();
        for _ in 0..RACE_ROUNDS {
            atomic_count.inc();
        }
    });
    log::info!(
        "{cpus} CPUs x {RACE_ROUNDS} increments: plain load/store counted {got} ({} lost, round {attempts}), atomic inc counted {}",
        expected - got,
        atomic_count.read()
    );
    ensure!(
        atomic_count.read() as u64 == expected,
        "atomic inc lost updates: {} of {expected}",
        atomic_count.read()
    );
    if cpus > 1 {
        ensure!(
            got < expected,
            "the racy counter lost nothing in {attempts} rounds: this test could not catch a broken atomic"
        );
    }
    Ok(())
}

fn llsc(_: &Platform<'static>) -> Result<(), String> {
    with_implementation(false, hammer)
}

fn lse(_: &Platform<'static>) -> Result<(), String> {
    if !cpu::has_lse_atomics() {
        log::info!("this CPU has no LSE atomics; the CPU=max boot test covers them");
        return Ok(());
    }
    with_implementation(true, hammer)
}

/// Run `test` with LSE on or off, then restore the boot-time choice. Other CPUs are idle
/// between calls, so nothing runs an atomic while the choice changes.
fn with_implementation(lse: bool, test: fn() -> Result<(), String>) -> Result<(), String> {
    let chosen = atomic::uses_lse();
    atomic::select(lse);
    let result = test();
    atomic::select(chosen);
    result
}

/// Every operation, from every CPU at once; each total is known exactly in advance.
fn hammer() -> Result<(), String> {
    let cpus = smp::online_cpus().count() as i64;
    let plain = AtomicCounter::new(0);
    let returning = AtomicCounter::new(0);
    let cas = AtomicCounter::new(0);
    let references = AtomicCounter::new(cpus * ROUNDS);
    let last_drops = AtomicCounter::new(0);
    let claims = AtomicCounter::new(0);
    let flips: AtomicBits<4> = AtomicBits::new();
    let owned: AtomicBits<4> = AtomicBits::new();
    smp::on_each_cpu(&|_| {
        for i in 0..ROUNDS {
            plain.inc();
            plain.add(3);
            plain.sub(2);
            plain.dec();
            returning.add_return(2);
            returning.sub_return(1);
            // A compare-and-swap increment: retry until nobody else got in between.
            let mut seen = cas.read();
            loop {
                let found = cas.cmpxchg(seen, seen + 1);
                if found == seen {
                    break;
                }
                seen = found;
            }
            if references.dec_and_test() {
                last_drops.inc();
            }
            flips.change_bit((i % 256) as usize);
        }
        for bit in 0..256 {
            if !owned.test_and_set_bit(bit) {
                claims.inc();
            }
        }
    });
    let expected = cpus * ROUNDS;
    ensure!(
        plain.read() == expected,
        "inc/add/sub/dec: {} != {expected}",
        plain.read()
    );
    ensure!(
        returning.read() == expected,
        "add_return/sub_return: {} != {expected}",
        returning.read()
    );
    ensure!(
        cas.read() == expected,
        "cmpxchg increments: {} != {expected}",
        cas.read()
    );
    ensure!(
        references.read() == 0 && last_drops.read() == 1,
        "dec_and_test saw zero {} times",
        last_drops.read()
    );
    ensure!(
        claims.read() == 256,
        "{} of 256 bits claimed once",
        claims.read()
    );
    // Each bit was flipped ROUNDS / 256 (or one more) times by each CPU: parity is computable.
    for bit in 0..256 {
        let flips_per_cpu = ROUNDS / 256 + i64::from((bit as i64) < ROUNDS % 256);
        let expected_set = (flips_per_cpu * cpus) % 2 == 1;
        ensure!(
            flips.test_bit(bit) == expected_set,
            "bit {bit} flipped to the wrong parity"
        );
    }
    let old = plain.xchg(-5);
    ensure!(old == expected && plain.read() == -5, "xchg returned {old}");
    Ok(())
}
