//! Sleeping-lock tests on real tasks on every CPU (chapter 17, "Spin or block"): a mutex
//! torture in locktorture's format that must also catch a broken mutex, a semaphore that never
//! lets more holders in than it has permits, completions woken across CPUs, and an
//! rw-semaphore whose readers share and whose writer excludes them.
//!
//! The host tests in src/sync check the algorithms on std threads and loom checks their
//! interleavings; these check them on the kernel's scheduler, where waiters really sleep and
//! are woken by IPI. Every run is bounded in acquisitions, not time.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::KTest;
use super::locktorture::{Report, print};
use crate::ensure;
use crate::platform::Platform;
use crate::smp;
use crate::sync::mutex::BrokenMutex;
use crate::task::{
    self, Completion, CpuMask, DEFAULT_STACK_SIZE, KernelSleeper, Mutex, Pid, Policy,
};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "mutex_torture_on_every_cpu",
        run: mutex_torture,
    },
    KTest {
        name: "mutex_torture_catches_a_broken_mutex",
        run: broken_mutex_is_caught,
    },
    KTest {
        name: "semaphore_never_exceeds_its_permits",
        run: semaphore_limit,
    },
    KTest {
        name: "completion_wakes_waiters_on_other_cpus",
        run: completions,
    },
    KTest {
        name: "rwsem_readers_share_and_writers_exclude",
        run: rwsem,
    },
];

/// What the torture's lock protects: two counters that must stay equal.
#[derive(Default)]
struct Pair {
    first: u64,
    second: u64,
    left: u64,
}

trait TortureLock: Send + Sync + 'static {
    fn new(left: u64) -> Self;
    /// Take the lock, run `f`, let go.
    fn with<R>(&self, f: impl FnOnce(&mut Pair) -> R) -> R;
}

impl TortureLock for Mutex<Pair> {
    fn new(left: u64) -> Self {
        Mutex::new(Pair {
            left,
            ..Pair::default()
        })
    }
    fn with<R>(&self, f: impl FnOnce(&mut Pair) -> R) -> R {
        f(&mut self.lock())
    }
}

impl TortureLock for BrokenMutex<Pair, KernelSleeper> {
    fn new(left: u64) -> Self {
        BrokenMutex::new(Pair {
            left,
            ..Pair::default()
        })
    }
    fn with<R>(&self, f: impl FnOnce(&mut Pair) -> R) -> R {
        f(&mut self.lock())
    }
}

/// Tasks per online CPU in the torture: more tasks than CPUs, so waiters must sleep.
const TASKS_PER_CPU: usize = 2;
/// Acquisitions per torture run, shared by all tasks.
const BUDGET: u64 = 4_000;

/// Tasks spawned now and started together: each waits on a start gate that `run` opens, then
/// `run` waits for them all. Spawning takes long enough that a task started at once could
/// spend a whole run's budget before the next one exists.
struct Group {
    start: Arc<Completion>,
    pids: Vec<Pid>,
}

impl Group {
    fn new() -> Self {
        Group {
            start: Arc::new(Completion::new()),
            pids: Vec::new(),
        }
    }

    /// A round-robin task pinned to `cpu` that runs `f` once the group starts.
    fn spawn(
        &mut self,
        name: &str,
        cpu: usize,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), String> {
        let start = self.start.clone();
        let pid = task::spawn_with(
            name,
            DEFAULT_STACK_SIZE,
            CpuMask::only(cpu),
            Policy::RoundRobin,
            move || {
                start.wait();
                f();
                0
            },
        )
        .map_err(|e| format!("spawn {name}: {e}"))?;
        self.pids.push(pid);
        Ok(())
    }

    /// Start every task at once and wait until all have exited.
    fn run(self) -> Result<(), String> {
        self.start.complete_all();
        for pid in self.pids {
            task::wait(pid).map_err(|e| format!("wait {pid}: {e}"))?;
        }
        Ok(())
    }
}

/// Two round-robin tasks pinned to each online CPU spend a shared budget of acquisitions. In
/// the critical section the holder checks the two counters are equal, bumps the first, and
/// every eighth time yields (holding the mutex: the others must wait, spin, then sleep) before
/// bumping the second.
fn torture<L: TortureLock>(budget: u64) -> Result<(Report, Arc<L>), String> {
    torture_on::<L>(budget, smp::online_cpus().collect())
}

/// `torture` on the CPUs in `cpus` only.
fn torture_on<L: TortureLock>(budget: u64, cpus: Vec<usize>) -> Result<(Report, Arc<L>), String> {
    let lock = Arc::new(L::new(budget));
    let failures = Arc::new(AtomicU64::new(0));
    let counts: Arc<Vec<AtomicU64>> = Arc::new(
        (0..cpus.len() * TASKS_PER_CPU)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let mut group = Group::new();
    for (i, &cpu) in cpus
        .iter()
        .cycle()
        .take(cpus.len() * TASKS_PER_CPU)
        .enumerate()
    {
        let (lock, failures, counts) = (lock.clone(), failures.clone(), counts.clone());
        group.spawn(&format!("mutex-torture-{i}"), cpu, move || {
            let mut mine = 0u64;
            // Bounded even if a broken lock lets `left` be raised by a stale store.
            while mine < 4 * budget {
                let more = lock.with(|p| {
                    if p.left == 0 {
                        return false;
                    }
                    p.left -= 1;
                    if p.first != p.second {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    p.first += 1;
                    if mine.is_multiple_of(8) {
                        task::yield_now();
                    }
                    p.second += 1;
                    true
                });
                if !more {
                    break;
                }
                mine += 1;
            }
            counts[i].store(mine, Ordering::Relaxed);
        })?;
    }
    group.run()?;
    let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let (first, second) = lock.with(|p| (p.first, p.second));
    let mismatched =
        u64::from(total != budget) + u64::from(first != total) + u64::from(second != total);
    let report = Report {
        total,
        max: counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
        min: counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0),
        failures: failures.load(Ordering::Relaxed) + mismatched,
    };
    Ok((report, lock))
}

/// Runs of the mutex torture allowed for a waiter to sleep at least once: on a busy host one
/// task can spend a whole run's budget before another vCPU runs at all. Mutual exclusion is
/// checked in every run.
const MUTEX_ATTEMPTS: u32 = 5;

fn mutex_torture(_: &Platform<'static>) -> Result<(), String> {
    let contended = smp::online_cpus().count() * TASKS_PER_CPU > 1;
    let mut attempt = 0;
    let (report, lock) = loop {
        attempt += 1;
        let (report, lock) = torture::<Mutex<Pair>>(BUDGET)?;
        ensure!(
            report.failures == 0,
            "the mutex let two tasks in at once ({} failures)",
            report.failures
        );
        if !contended || lock.stats().sleeps > 0 || attempt == MUTEX_ATTEMPTS {
            break (report, lock);
        }
        log::info!("mutex: run {attempt} never made a waiter sleep; again");
    };
    print("mutex", &report);
    let stats = lock.stats();
    log::info!(
        "mutex: {} acquisitions: {} fast path, {} after spinning on a running owner, {} after queueing ({} sleeps)",
        stats.fast + stats.spun + stats.queued,
        stats.fast,
        stats.spun,
        stats.queued,
        stats.sleeps
    );
    ensure!(
        report.failures == 0,
        "the mutex let two tasks in at once ({} failures)",
        report.failures
    );
    ensure!(
        stats.fast + stats.spun + stats.queued >= BUDGET,
        "the statistics count {} acquisitions for at least {BUDGET}",
        stats.fast + stats.spun + stats.queued
    );
    if contended {
        ensure!(
            stats.sleeps > 0,
            "holders yield inside the lock, yet no waiter slept in {attempt} runs: the slow path went untested"
        );
    }
    Ok(())
}

/// Runs of the broken mutex before concluding this test cannot catch it; run k spends k times
/// the budget.
const BROKEN_ATTEMPTS: u64 = 6;

/// CPUs the broken mutex is tortured on, at most. The bug needs two CPUs inside its fast path's
/// few instructions at the same moment. Spreading the same budget over more CPUs makes that
/// rarer, not likelier: with 16 vCPUs on 2 host cores each vCPU runs in short turns, most
/// acquisitions queue behind a holder instead of taking the fast path. Tortured on all 16 of
/// 16 vCPUs (2 host cores) it was caught only in its third run when run alone, and survived all
/// six in a run of the whole suite; on four of the same 16 it was caught in the first run, three
/// times of three.
const BROKEN_CPUS: usize = 4;

fn broken_mutex_is_caught(_: &Platform<'static>) -> Result<(), String> {
    if smp::online_cpus().count() < 2 {
        // One CPU races only through a preemption landing between the broken fast path's
        // load and store, a window of a few instructions: too rare to be a test.
        log::info!("one CPU: the broken mutex's window is too narrow to hit; skipped");
        return Ok(());
    }
    for attempt in 1..=BROKEN_ATTEMPTS {
        let (report, _) = torture_on::<BrokenMutex<Pair, KernelSleeper>>(
            BUDGET * attempt,
            smp::online_cpus().take(BROKEN_CPUS).collect(),
        )?;
        if report.failures > 0 {
            print("broken", &report);
            log::info!("the broken mutex was caught (attempt {attempt}), as it must be");
            return Ok(());
        }
    }
    Err(format!(
        "the broken mutex survived {BROKEN_ATTEMPTS} runs: this torture cannot catch a broken mutex"
    ))
}

/// Eight tasks take a 3-permit semaphore 200 times each, holding it across a yield: never more
/// than 3 inside, and 3 must have been inside at some point (or the test proved nothing).
fn semaphore_limit(_: &Platform<'static>) -> Result<(), String> {
    const PERMITS: usize = 3;
    const ATTEMPTS: u32 = 10;
    // Never exceeding the limit is checked in every run; reaching it shows the run tested
    // something, and a busy host may need more than one run for three holders to meet.
    for attempt in 1..=ATTEMPTS {
        let most = semaphore_run(PERMITS)?;
        if most == PERMITS as u64 {
            return Ok(());
        }
        log::info!("semaphore: run {attempt} never had {PERMITS} holders at once; again");
    }
    Err(format!(
        "{ATTEMPTS} runs never had {PERMITS} holders inside at once: the limit was not tested"
    ))
}

/// One run: every task starts at once (a start gate), takes the semaphore 20 times and holds
/// it across a one-tick sleep. Returns the most holders seen inside at once.
fn semaphore_run(permits: usize) -> Result<u64, String> {
    const TASKS: usize = 8;
    const ROUNDS: u64 = 20;
    let sem = Arc::new(task::Semaphore::new(permits));
    let inside = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let cpus: Vec<usize> = smp::online_cpus().collect();
    let mut group = Group::new();
    for i in 0..TASKS {
        let (sem, inside, most) = (sem.clone(), inside.clone(), most.clone());
        group.spawn(&format!("sem-{i}"), cpus[i % cpus.len()], move || {
            for _ in 0..ROUNDS {
                let _permit = sem.acquire();
                let now = inside.fetch_add(1, Ordering::AcqRel) + 1;
                most.fetch_max(now, Ordering::Relaxed);
                // Hold across a sleep: holders on other CPUs overlap in time even when the
                // host runs one vCPU at a time (a yield, with one task per CPU at 8 CPUs,
                // returned at once and three holders never met in ten runs).
                task::sleep_ticks(1);
                inside.fetch_sub(1, Ordering::AcqRel);
            }
        })?;
    }
    group.run()?;
    let most = most.load(Ordering::Relaxed);
    log::info!(
        "semaphore: {TASKS} tasks x {ROUNDS} downs on {permits} permits: at most {most} inside, {} permits back at the end",
        sem.available()
    );
    ensure!(
        most <= permits as u64,
        "{most} holders inside a {permits}-permit semaphore"
    );
    ensure!(
        sem.available() == permits,
        "{} permits left at the end, {permits} expected",
        sem.available()
    );
    Ok(most)
}

/// Tasks on the other CPUs wait on a completion; `complete` lets exactly one through at a
/// time, `complete_all` the rest.
fn completions(_: &Platform<'static>) -> Result<(), String> {
    let me = crate::percpu::this_cpu().id;
    let others: Vec<usize> = smp::online_cpus().filter(|&c| c != me).collect();
    let waiters = others.len().max(1) * 2;
    let done = Arc::new(Completion::new());
    let through = Arc::new(AtomicU64::new(0));
    let mut pids = Vec::new();
    for i in 0..waiters {
        let cpu = others.get(i % others.len().max(1)).copied().unwrap_or(me);
        let (done, through) = (done.clone(), through.clone());
        pids.push(
            task::spawn_with(
                &format!("waiter-{i}"),
                DEFAULT_STACK_SIZE,
                CpuMask::only(cpu),
                Policy::RoundRobin,
                move || {
                    done.wait();
                    through.fetch_add(1, Ordering::AcqRel);
                    0
                },
            )
            .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    // Let them all get to sleep (bounded), then release them one by one.
    for _ in 0..100_000 {
        if done.waiters() == waiters {
            break;
        }
        task::yield_now();
    }
    let asleep = done.waiters();
    let mut one_by_one = Vec::new();
    for n in 1..=2u64.min(waiters as u64) {
        done.complete();
        for _ in 0..1_000_000 {
            if through.load(Ordering::Acquire) >= n {
                break;
            }
            task::yield_now();
        }
        one_by_one.push(through.load(Ordering::Acquire));
    }
    done.complete_all();
    for pid in pids {
        task::wait(pid).map_err(|e| format!("wait: {e}"))?;
    }
    let all = through.load(Ordering::Relaxed);
    log::info!(
        "completion: {waiters} waiters on {} CPU(s), {asleep} asleep before the first complete; after each complete(): {one_by_one:?} through; complete_all(): {all}",
        others.len()
    );
    ensure!(
        one_by_one
            .iter()
            .enumerate()
            .all(|(i, &n)| n == i as u64 + 1),
        "complete() must let exactly one waiter through each time: {one_by_one:?}"
    );
    ensure!(
        all == waiters as u64,
        "{all} of {waiters} waiters got through"
    );
    Ok(())
}

/// Two phases. Sharing: two readers per CPU hold the read side across yields, and more than
/// one must be seen inside at once. Exclusion: a reader and a writer per CPU; the writers keep
/// a pair equal across a yield, and no reader may see it half-done.
fn rwsem(_: &Platform<'static>) -> Result<(), String> {
    const ROUNDS: u64 = 300;
    let cpus: Vec<usize> = smp::online_cpus().collect();
    let sem = Arc::new(task::RwSemaphore::new((0u64, 0u64)));
    let readers_inside = Arc::new(AtomicU64::new(0));
    let most_readers = Arc::new(AtomicU64::new(0));
    let torn = Arc::new(AtomicU64::new(0));
    let mut most_shared = 0;
    for phase in ["sharing", "exclusion"] {
        let mut group = Group::new();
        for (i, &cpu) in cpus.iter().enumerate() {
            for second in [false, true] {
                let writer = phase == "exclusion" && second;
                let (sem, inside, most, torn) = (
                    sem.clone(),
                    readers_inside.clone(),
                    most_readers.clone(),
                    torn.clone(),
                );
                let name = format!("rwsem-{}-{i}", if writer { "w" } else { "r" });
                group.spawn(&name, cpu, move || {
                    for _ in 0..ROUNDS {
                        if writer {
                            let mut w = sem.write();
                            w.0 += 1;
                            task::yield_now();
                            w.1 += 1;
                        } else {
                            let r = sem.read();
                            let now = inside.fetch_add(1, Ordering::AcqRel) + 1;
                            most.fetch_max(now, Ordering::Relaxed);
                            if r.0 != r.1 {
                                torn.fetch_add(1, Ordering::Relaxed);
                            }
                            task::yield_now();
                            inside.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                })?;
            }
        }
        group.run()?;
        if phase == "sharing" {
            most_shared = most_readers.swap(0, Ordering::Relaxed);
        }
    }
    let (a, b) = *sem.read();
    let torn = torn.load(Ordering::Relaxed);
    let writers = cpus.len() as u64;
    log::info!(
        "rwsem: {} readers shared it, up to {most_shared} at once; then {writers} readers and {writers} writers x {ROUNDS}: {torn} torn reads, pair ({a}, {b})",
        2 * cpus.len()
    );
    ensure!(torn == 0, "{torn} readers saw a half-done write");
    ensure!(
        a == b && a == ROUNDS * writers,
        "the writers' pair is ({a}, {b}), ({0}, {0}) expected",
        ROUNDS * writers
    );
    ensure!(
        most_shared > 1,
        "readers never shared the semaphore (at most {most_shared} inside at once)"
    );
    Ok(())
}
