//! In-kernel tests of the reader-writer lock and the seqlock on every CPU (the reader-writer
//! chapter).

use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::KTest;
use crate::arch::aarch64::cpu;
use crate::ensure;
use crate::platform::Platform;
use crate::smp::{self, StartLine};
use crate::sync::{RwLock, SeqData, SeqLock};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "rwlock_readers_share_the_lock",
        run: readers_share,
    },
    KTest {
        name: "rwlock_writers_exclude_everyone",
        run: writers_exclude,
    },
    KTest {
        name: "seqlock_readers_never_accept_a_torn_copy",
        run: seqlock_consistent,
    },
];

fn readers_share(_: &Platform<'static>) -> Result<(), String> {
    // Every CPU takes the read lock and waits (bounded) until all are inside at once: possible
    // only if readers really share it. An exclusive lock would leave each alone, and time out.
    let lock = RwLock::new(());
    let cpus = smp::online_cpus().count() as u64;
    let inside = AtomicU64::new(0);
    let most = AtomicU64::new(0);
    smp::on_each_cpu(&|_| {
        let _r = lock.read();
        let now = inside.fetch_add(1, Ordering::AcqRel) + 1;
        most.fetch_max(now, Ordering::Relaxed);
        let deadline = cpu::counter() + cpu::counter_frequency(); // 1 s
        while inside.load(Ordering::Acquire) < cpus && cpu::counter() < deadline {
            cpu::cpu_relax();
        }
        most.fetch_max(inside.load(Ordering::Acquire), Ordering::Relaxed);
    });
    let most = most.load(Ordering::Relaxed);
    log::info!("{most} of {cpus} CPUs held the read lock at the same time");
    ensure!(
        most == cpus,
        "only {most} of {cpus} readers were inside at once"
    );
    Ok(())
}

/// Runs of a race test before concluding that the broken variant cannot be caught here.
const ATTEMPTS_TO_CATCH_THE_BROKEN_VARIANT: usize = 10;

/// Writers keep two counters equal under the write lock, with a pause between the two stores.
/// Up to ten runs, each longer than the last.
/// Readers under the read lock must never see them differ; readers that skip the lock (the
/// deliberately broken variant) must, at least once, or the test has shown nothing: a test
/// that cannot see a half-done write could not catch a lock that lets one through.
fn writers_exclude(_: &Platform<'static>) -> Result<(), String> {
    if smp::online_cpus().count() < 2 {
        log::info!("exclusion between CPUs needs two of them; skipped");
        return Ok(());
    }
    for attempt in 1..=ATTEMPTS_TO_CATCH_THE_BROKEN_VARIANT {
        // Longer each time: the likelier a broken reader runs during some write.
        let torn_unlocked = writers_exclude_run(WRITERS_EXCLUDE_OPS * attempt as u64)?;
        if torn_unlocked > 0 {
            log::info!(
                "readers without the lock saw {torn_unlocked} half-done writes (run {attempt}); \
                 readers with it saw none"
            );
            return Ok(());
        }
    }
    Err(alloc::format!(
        "readers without the lock never saw a half-done write in \
         {ATTEMPTS_TO_CATCH_THE_BROKEN_VARIANT} runs: this test could not catch a broken rwlock"
    ))
}

/// Operations per CPU in the first run.
const WRITERS_EXCLUDE_OPS: u64 = 4_000;
/// A CPU waiting for the others to finish their share does at most this many times its own.
const OVERTIME_LIMIT: u64 = 1_000;

/// One run of `ops` operations per CPU: returns how many half-done writes the lock-skipping
/// readers saw.
fn writers_exclude_run(ops: u64) -> Result<u64, String> {
    /// Spins between a writer's two stores: the window a broken reader can fall into.
    const WRITE_WINDOW: u32 = 512;
    let lock = RwLock::new(());
    let (first, second) = (AtomicU64::new(0), AtomicU64::new(0));
    let torn = AtomicU64::new(0);
    let torn_unlocked = AtomicU64::new(0);
    let writes = AtomicU64::new(0);
    let cpus = smp::online_cpus().count();
    // CPUs that have done their `ops`. Each keeps going until all have, so every CPU is still
    // working while the last one runs: runs this short are otherwise often not concurrent at
    // all on a 2-core host, where the vCPUs that hold the host cores finish before the others
    // are scheduled. Bounded by OVERTIME_LIMIT.
    let reached = AtomicUsize::new(0);
    let start = StartLine::new();
    smp::on_each_cpu(&|id| {
        start.wait();
        let mut i = 0u64;
        while i < ops || (reached.load(Ordering::Relaxed) < cpus && i < ops * OVERTIME_LIMIT) {
            if i == ops {
                reached.fetch_add(1, Ordering::Relaxed);
            }
            i += 1;
            if (i + id as u64).is_multiple_of(8) {
                let _w = lock.write();
                first.store(first.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                for _ in 0..WRITE_WINDOW {
                    core::hint::black_box(());
                }
                second.store(second.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                writes.fetch_add(1, Ordering::Relaxed);
            } else if i.is_multiple_of(2) {
                let _r = lock.read();
                if first.load(Ordering::Relaxed) != second.load(Ordering::Relaxed) {
                    torn.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                // The broken reader: no lock at all. Reading `second` first makes a half-done
                // write show as second < first rather than depend on load order.
                let b = second.load(Ordering::Acquire);
                let a = first.load(Ordering::Acquire);
                if a != b {
                    torn_unlocked.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let _r = lock.read();
    let (a, b, w) = (
        first.load(Ordering::Relaxed),
        second.load(Ordering::Relaxed),
        writes.load(Ordering::Relaxed),
    );
    ensure!(
        torn.load(Ordering::Relaxed) == 0,
        "readers holding the read lock saw {} half-done writes",
        torn.load(Ordering::Relaxed)
    );
    ensure!(
        a == w && b == w,
        "{w} writes, but the counters say {a} and {b}"
    );
    Ok(torn_unlocked.load(Ordering::Relaxed))
}

#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Triple {
    a: u64,
    b: u64,
    c: u64,
}

// SAFETY: repr(C) u64 fields only: no padding, every bit pattern valid.
unsafe impl SeqData for Triple {}

/// Checked reads must never accept a torn value, and the broken reader (a copy without the
/// sequence check) must be seen accepting one at least once. It tears only when the writer's
/// vCPU runs at the same instant as a reader's, which a busy 2-core host may not allow for a
/// whole run, so the run is repeated, longer each time and at most ten times, until it does;
/// on an idle host the first run tears hundreds of times.
fn seqlock_consistent(_: &Platform<'static>) -> Result<(), String> {
    if smp::online_cpus().count() < 2 {
        log::info!("a seqlock race needs a reader and a writer CPU; skipped");
        return Ok(());
    }
    for attempt in 1..=ATTEMPTS_TO_CATCH_THE_BROKEN_VARIANT {
        // Each attempt runs longer: the longer the writer writes, the likelier the host runs a
        // reader's vCPU at the same time.
        let torn_unchecked = seqlock_run(SEQLOCK_WRITES * attempt as u64)?;
        if torn_unchecked > 0 {
            log::info!(
                "the unchecked reader accepted {torn_unchecked} torn copies the sequence check \
                 refused (run {attempt})"
            );
            return Ok(());
        }
    }
    Err(alloc::format!(
        "the unchecked reader never saw a torn copy in {ATTEMPTS_TO_CATCH_THE_BROKEN_VARIANT} \
         runs: this test could not catch a broken seqlock"
    ))
}

/// Writes in the first seqlock run.
const SEQLOCK_WRITES: u64 = 20_000;
/// Checked reads each reader should make while the writer writes.
const READS_ALONGSIDE: u64 = 1_000;

/// One run of `writes` writes: returns how many unchecked copies were torn.
fn seqlock_run(writes: u64) -> Result<u64, String> {
    let lock = SeqLock::new(Triple { a: 0, b: 0, c: 0 });
    let done = AtomicBool::new(false);
    let (reads, retries, torn_checked, torn_unchecked) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let written = AtomicU64::new(0);
    let writer = smp::online_cpus().next().unwrap_or(0);
    let start = StartLine::new();
    smp::on_each_cpu(&|id| {
        start.wait();
        if id == writer {
            // Write at least `writes` times, and on until the readers have read a while
            // alongside (bounded): a writer that finishes before they start shows nothing.
            let readers = smp::online_cpus().count() as u64 - 1;
            let mut i = 0;
            while i < writes
                || (reads.load(Ordering::Relaxed) < READS_ALONGSIDE * readers
                    && i < writes * OVERTIME_LIMIT)
            {
                i += 1;
                lock.write(Triple { a: i, b: i, c: i });
            }
            written.store(i, Ordering::Relaxed);
            done.store(true, Ordering::Release);
            return;
        }
        while !done.load(Ordering::Acquire) {
            let (t, r) = lock.read();
            reads.fetch_add(1, Ordering::Relaxed);
            retries.fetch_add(u64::from(r), Ordering::Relaxed);
            if !(t.a == t.b && t.b == t.c) {
                torn_checked.fetch_add(1, Ordering::Relaxed);
            }
            // The broken reader: copies without checking the sequence.
            let u = lock.copy_out();
            if !(u.a == u.b && u.b == u.c) {
                torn_unchecked.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let load = |x: &AtomicU64| x.load(Ordering::Relaxed);
    let writes = load(&written);
    log::info!(
        "{writes} writes; {} checked reads with {} retries, {} torn accepted; unchecked copies torn {} times",
        load(&reads),
        load(&retries),
        load(&torn_checked),
        load(&torn_unchecked)
    );
    ensure!(
        load(&torn_checked) == 0,
        "{} torn values accepted",
        load(&torn_checked)
    );
    let (last, _) = lock.read();
    ensure!(
        last.a == writes && lock.writes() as u64 == writes,
        "last value {} after {writes} writes",
        last.a
    );
    Ok(load(&torn_unchecked))
}
