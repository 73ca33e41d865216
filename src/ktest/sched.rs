//! Scheduler tests (chapter 16, "Scheduling on several CPUs"): many tasks on four CPUs all
//! complete and spread out, the tick preempts CPU-bound round-robin tasks and leaves FIFO ones
//! alone, a sleeper on one CPU is woken from another, timed sleep and kill work, and the
//! per-CPU statistics add up.
//!
//! Every loop here is bounded in iterations, not in time: 4 vCPUs share 2 host cores, so guest
//! time says little about how much work was done.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::KTest;
use crate::ensure;
use crate::percpu;
use crate::platform::Platform;
use crate::smp;
use crate::task::{self, CpuMask, DEFAULT_STACK_SIZE, Pid, Policy, TaskState};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "sched_tasks_on_every_cpu_complete_and_idle_cpus_pull_them",
        run: tasks_complete_and_spread,
    },
    KTest {
        name: "sched_tick_preempts_round_robin_not_fifo",
        run: preemption_by_policy,
    },
    KTest {
        name: "sched_sleeper_is_woken_from_another_cpu",
        run: cross_cpu_wake,
    },
    KTest {
        name: "sched_timed_sleep_and_kill",
        run: timed_sleep_and_kill,
    },
    KTest {
        name: "sched_wait_registers_a_waiter_once",
        run: wait_registers_once,
    },
    KTest {
        name: "sched_statistics_are_per_cpu_and_summed_on_read",
        run: statistics_sum,
    },
    KTest {
        name: "sched_process_list_torture_with_real_tasks",
        run: process_list_torture,
    },
    KTest {
        name: "sched_posted_work_is_not_preempted_on_its_cpu",
        run: posted_work_keeps_its_cpu,
    },
    KTest {
        name: "sched_posted_work_may_not_sleep",
        run: posted_work_may_not_sleep,
    },
];

/// A CPU-bound job: `rounds` steps of a 64-bit mixing function, so the result proves every
/// step ran (the test computes the same value directly and compares).
fn churn(seed: u64, rounds: u64, on_progress: &dyn Fn()) -> u64 {
    let mut x = seed;
    for i in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(i);
        if i % 4096 == 0 {
            on_progress();
        }
    }
    x
}

fn spawn_with(
    name: &str,
    affinity: CpuMask,
    policy: Policy,
    f: impl FnOnce() -> i32 + Send + 'static,
) -> Result<Pid, String> {
    task::spawn_with(name, DEFAULT_STACK_SIZE, affinity, policy, f)
        .map_err(|e| format!("spawn {name}: {e}"))
}

fn wait(pid: Pid) -> Result<i32, String> {
    task::wait(pid).map_err(|e| format!("wait {pid}: {e}"))
}

/// Eight CPU-bound round-robin tasks, all spawned (and so queued) on this CPU: each must
/// compute the right value, and the idle CPUs must have pulled some of them.
fn tasks_complete_and_spread(_: &Platform<'static>) -> Result<(), String> {
    const TASKS: u64 = 8;
    const ROUNDS: u64 = 400_000;
    let cpus = smp::online_cpus().count();
    let before = task::stats();
    let results: Arc<[AtomicU64; TASKS as usize]> =
        Arc::new([const { AtomicU64::new(0) }; TASKS as usize]);
    // Per task: a bit for every CPU it was seen running on.
    let seen_on: Arc<[AtomicU32; TASKS as usize]> =
        Arc::new([const { AtomicU32::new(0) }; TASKS as usize]);
    let mut pids = Vec::new();
    for n in 0..TASKS {
        let (results, seen_on) = (results.clone(), seen_on.clone());
        pids.push(spawn_with(
            &format!("churn-{n}"),
            CpuMask::ALL,
            Policy::RoundRobin,
            move || {
                let mark = || {
                    seen_on[n as usize].fetch_or(1 << percpu::this_cpu().id, Ordering::Relaxed);
                };
                let v = churn(n + 1, ROUNDS, &mark);
                results[n as usize].store(v, Ordering::Relaxed);
                0
            },
        )?);
    }
    for &pid in &pids {
        ensure!(wait(pid)? == 0, "task {pid} exited non-zero");
    }
    for n in 0..TASKS {
        let want = churn(n + 1, ROUNDS, &|| {});
        let got = results[n as usize].load(Ordering::Relaxed);
        ensure!(
            got == want,
            "task {n} computed {got:#x}, the same work here gives {want:#x}"
        );
    }
    let ran_on = seen_on
        .iter()
        .fold(0u32, |all, s| all | s.load(Ordering::Relaxed));
    let after = task::stats();
    let migrations = after.migrations - before.migrations;
    log::info!(
        "{TASKS} tasks x {ROUNDS} rounds, all queued on cpu{}: ran on CPUs {ran_on:#06b}, {migrations} pulled by idle CPUs, {} preemptions",
        percpu::this_cpu().id,
        after.preemptions - before.preemptions
    );
    if cpus > 1 {
        ensure!(
            migrations > 0,
            "no idle CPU pulled a task: all {TASKS} ran where they were queued"
        );
        ensure!(
            ran_on.count_ones() > 1,
            "every task ran on one CPU ({ran_on:#b}) although {cpus} are online"
        );
    }
    Ok(())
}

/// Two CPU-bound tasks pinned to one CPU never yield. Round robin: the tick must preempt both
/// and each must make progress while the other is unfinished. FIFO: the first runs to the end
/// before the second starts, and nobody is preempted.
fn preemption_by_policy(_: &Platform<'static>) -> Result<(), String> {
    let cpu = smp::online_cpus().last().unwrap_or(0);
    // Enough work to span several 20 ms slices even on an idle host.
    const ROUNDS: u64 = 10_000_000;
    for policy in [Policy::RoundRobin, Policy::Fifo] {
        // When a task finishes it records, in one step the other task cannot interleave with
        // (the finish lock turns preemption off, and both run on one CPU), how far the other
        // had got and whether it had finished.
        let finish: Arc<crate::sync::SpinLock<()>> =
            Arc::new(crate::sync::SpinLock::named("ktest spinner finish", ()));
        let done = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let steps = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let other_steps = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let first_to_finish = Arc::new(AtomicU64::new(u64::MAX));
        let mut pids = [0; 2];
        for (i, pid) in pids.iter_mut().enumerate() {
            let (finish, done, steps, other_steps, first_to_finish) = (
                finish.clone(),
                done.clone(),
                steps.clone(),
                other_steps.clone(),
                first_to_finish.clone(),
            );
            *pid = spawn_with(
                &format!("spinner-{i}"),
                CpuMask::only(cpu),
                policy,
                move || {
                    churn(i as u64, ROUNDS, &|| {
                        steps[i].fetch_add(1, Ordering::Relaxed);
                    });
                    let _atomic = finish.lock();
                    other_steps[i].store(steps[1 - i].load(Ordering::Relaxed), Ordering::Relaxed);
                    if !done[1 - i].load(Ordering::Relaxed) {
                        first_to_finish.store(i as u64, Ordering::Relaxed);
                    }
                    done[i].store(true, Ordering::Release);
                    0
                },
            )?;
        }
        let handles: Vec<_> = pids.iter().filter_map(|&p| task::lookup(p)).collect();
        ensure!(handles.len() == 2, "spawned spinners missing");
        for &pid in &pids {
            ensure!(wait(pid)? == 0, "spinner {pid} exited non-zero");
        }
        let preempted: Vec<u64> = handles.iter().map(|t| t.preemptions()).collect();
        let total_steps = ROUNDS.div_ceil(4096);
        // What the one that finished first had seen of the other, which had not finished: with
        // round robin it had made progress; with FIFO it had not started.
        let first = first_to_finish.load(Ordering::Relaxed);
        ensure!(first < 2, "neither spinner saw itself finish first");
        let seen = other_steps[first as usize].load(Ordering::Relaxed);
        log::info!(
            "{policy:?} on cpu{cpu}: preemptions {preempted:?}; when one finished the other had done {seen} of {total_steps} steps and had not finished"
        );
        match policy {
            Policy::RoundRobin => {
                ensure!(
                    preempted.iter().all(|&p| p > 0),
                    "round robin: a CPU-bound task was never preempted ({preempted:?})"
                );
                ensure!(
                    seen > 0,
                    "round robin: the second task had not run when the first finished"
                );
            }
            Policy::Fifo => {
                ensure!(
                    preempted.iter().all(|&p| p == 0),
                    "FIFO: a task was preempted ({preempted:?})"
                );
                ensure!(
                    seen == 0,
                    "FIFO: the second task ran before the first finished ({seen} steps)"
                );
            }
        }
    }
    Ok(())
}

/// A task on another CPU sleeps until a flag is set; this CPU sets it and wakes the task. The
/// wake must cross CPUs (IPI), and the sleeper must not spin meanwhile.
fn cross_cpu_wake(_: &Platform<'static>) -> Result<(), String> {
    let me = percpu::this_cpu().id;
    let Some(other) = smp::online_cpus().find(|&c| c != me) else {
        log::info!("one CPU: nothing to wake across; skipped");
        return Ok(());
    };
    const ROUNDS: u64 = 50;
    let flag = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let slept = Arc::new(AtomicU64::new(0));
    let (f2, a2, s2) = (flag.clone(), acked.clone(), slept.clone());
    let pid = spawn_with(
        "sleeper",
        CpuMask::only(other),
        Policy::RoundRobin,
        move || {
            for round in 1..=ROUNDS {
                loop {
                    task::prepare_to_sleep();
                    if f2.load(Ordering::Acquire) >= round {
                        task::finish_wait();
                        break;
                    }
                    s2.fetch_add(1, Ordering::Relaxed);
                    task::sleep();
                }
                a2.store(round, Ordering::Release);
            }
            0
        },
    )?;
    let sleeper = task::lookup(pid).ok_or("the sleeper vanished")?;
    let wakes_before = task::stats().wakeups;
    for round in 1..=ROUNDS {
        flag.store(round, Ordering::Release);
        task::wake(&sleeper);
        // Bounded: the sleeper acknowledges each round before the next one starts.
        let mut spins = 0u64;
        while acked.load(Ordering::Acquire) < round {
            task::yield_now();
            spins += 1;
            ensure!(
                spins < 10_000_000,
                "round {round}: the sleeper on cpu{other} never woke"
            );
        }
    }
    ensure!(wait(pid)? == 0, "the sleeper exited non-zero");
    let wakeups = sleeper.wakeups();
    let slept = slept.load(Ordering::Relaxed);
    log::info!(
        "{ROUNDS} rounds to cpu{other}: slept {slept} times, woken {wakeups} times ({} wakeups counted on all CPUs)",
        task::stats().wakeups - wakes_before
    );
    ensure!(slept > 0, "the sleeper never went to sleep");
    ensure!(wakeups > 0, "no wakeup reached the sleeper");
    Ok(())
}

/// `sleep_ticks(n)` lasts at least n ticks; `kill` stops a task that polls `should_stop`.
fn timed_sleep_and_kill(_: &Platform<'static>) -> Result<(), String> {
    let slept_ticks = Arc::new(AtomicU64::new(0));
    let s2 = slept_ticks.clone();
    let sleeper = spawn_with("nap", CpuMask::ALL, Policy::RoundRobin, move || {
        let cpu = percpu::this_cpu().id;
        let t0 = crate::irq::tick::ticks_on(cpu);
        task::sleep_ticks(3);
        // The tick of the CPU it slept on woke it; that CPU's count is the clock.
        s2.store(crate::irq::tick::ticks_on(cpu) - t0, Ordering::Relaxed);
        0
    })?;
    ensure!(wait(sleeper)? == 0, "the napper exited non-zero");
    let ticks = slept_ticks.load(Ordering::Relaxed);
    ensure!(ticks >= 3, "sleep_ticks(3) returned after {ticks} ticks");

    let loops = Arc::new(AtomicU64::new(0));
    let l2 = loops.clone();
    let looper = spawn_with("looper", CpuMask::ALL, Policy::RoundRobin, move || {
        while !task::should_stop() {
            l2.fetch_add(1, Ordering::Relaxed);
            task::sleep_ticks(1);
        }
        7
    })?;
    // Let it go round a few times (bounded), then stop it.
    let mut waited = 0;
    while loops.load(Ordering::Relaxed) < 3 && waited < 1_000_000 {
        task::yield_now();
        waited += 1;
    }
    ensure!(task::kill(looper), "kill found no task {looper}");
    ensure!(
        wait(looper)? == 7,
        "the killed task did not finish its loop"
    );
    ensure!(!task::kill(looper), "kill of a reaped task claimed success");
    log::info!(
        "sleep_ticks(3) took {ticks} ticks; a looping task stopped on kill after {} rounds",
        loops.load(Ordering::Relaxed)
    );
    Ok(())
}

/// A waiter woken before its task has exited (a stray wake: `kill` of the waiter, say) goes
/// round `wait`'s loop again, and must stay registered with the task once, not once per pass.
/// Each registration is a reference to the waiter, so its reference count shows them. Both
/// tasks are pinned to this CPU and FIFO, so the waiter is asleep whenever this flow runs.
fn wait_registers_once(_: &Platform<'static>) -> Result<(), String> {
    const STRAY_WAKES: usize = 5;
    let here = CpuMask::only(percpu::this_cpu().id);
    let target = spawn_with("wait-target", here, Policy::Fifo, || {
        while !task::should_stop() {
            task::sleep_ticks(1);
        }
        5
    })?;
    let waiter = spawn_with("waiter", here, Policy::Fifo, move || {
        task::wait(target).unwrap_or(-1)
    })?;
    let waiter_task = task::lookup(waiter).ok_or("the waiter is not in the task list")?;
    // Let the waiter run until it sleeps in `wait` (bounded: a tick per look).
    let until_asleep = || -> Result<(), String> {
        for _ in 0..100 {
            if waiter_task.state() == TaskState::Sleeping {
                return Ok(());
            }
            task::sleep_ticks(1);
        }
        Err(format!(
            "the waiter is {} after 100 ticks, not asleep in wait",
            waiter_task.state().name()
        ))
    };
    until_asleep()?;
    let references = Arc::strong_count(&waiter_task);
    for wake in 1..=STRAY_WAKES {
        ensure!(
            task::wake(&waiter_task),
            "stray wake {wake}: the waiter was not asleep"
        );
        until_asleep()?;
    }
    let after = Arc::strong_count(&waiter_task);
    ensure!(
        after == references,
        "after {STRAY_WAKES} stray wakes the waiter has {after} references, {references} \
         before: wait registered it with its task again on every pass"
    );
    ensure!(task::kill(target), "kill found no task {target}");
    ensure!(
        wait(waiter)? == 5,
        "the waiter did not get the target's exit status"
    );
    log::info!(
        "a waiter woken {STRAY_WAKES} times before its task exited stayed registered once \
         ({references} references before, {after} after)"
    );
    Ok(())
}

/// The summed statistics equal the sum of every CPU's, and switching on every CPU shows up.
fn statistics_sum(_: &Platform<'static>) -> Result<(), String> {
    let cpus: Vec<usize> = smp::online_cpus().collect();
    let before: Vec<task::Stats> = cpus.iter().map(|&c| task::stats_of(c)).collect();
    // A short pinned yielder on every CPU: each CPU must count its own switches.
    let mut pids = Vec::new();
    for &cpu in &cpus {
        pids.push(spawn_with(
            &format!("yielder-{cpu}"),
            CpuMask::only(cpu),
            Policy::Fifo,
            || {
                for _ in 0..10 {
                    task::yield_now();
                }
                0
            },
        )?);
    }
    for pid in pids {
        wait(pid)?;
    }
    for (i, &cpu) in cpus.iter().enumerate() {
        let now = task::stats_of(cpu);
        ensure!(
            now.switches > before[i].switches,
            "cpu{cpu} counted no context switch while a task ran there"
        );
        ensure!(now.ticks > 0, "cpu{cpu} counted no tick");
    }
    let sum = cpus
        .iter()
        .map(|&c| task::stats_of(c))
        .fold(task::Stats::default(), |a, b| a + b);
    let total = task::stats();
    // Counters keep moving while we read (ticks!), so the total read after the parts is at
    // least their sum, and not far above it.
    ensure!(
        total.switches >= sum.switches && total.ticks >= sum.ticks,
        "summed statistics {total:?} below the per-CPU sum {sum:?}"
    );
    log::info!(
        "summed on read: {} switches, {} ticks ({} busy), {} wakeups, {} migrations, {} preemptions",
        total.switches,
        total.ticks,
        total.busy_ticks,
        total.wakeups,
        total.migrations,
        total.preemptions
    );
    Ok(())
}

/// Real processes come and go on every CPU while every CPU's readers walk the process list
/// and look up PIDs without a lock: nobody may meet a freed (poisoned) entry, and once every
/// reaped entry is freed the heap is back where it was.
fn process_list_torture(_: &Platform<'static>) -> Result<(), String> {
    const ROUNDS: usize = 60;
    let poison_before = task::process_list_poison().sightings;
    // Warm up (the run queues and the list's quarantine reach their size), then measure.
    let one_round = |cpu: usize| -> Result<u64, String> {
        let mut walked = 0u64;
        for _ in 0..ROUNDS {
            let pid = spawn_with("ephemeral", CpuMask::only(cpu), Policy::RoundRobin, || {
                // A reader inside the task too: walk the list while others change it.
                let n = task::tasks().len();
                i32::from(n == 0) // it is on the list itself, so never empty
            })?;
            // Lock-free readers while tasks are created, exit and are reaped everywhere.
            for t in task::tasks() {
                walked += 1;
                if let Some(found) = task::lookup(t.pid()) {
                    ensure!(
                        found.pid() == t.pid(),
                        "lookup({}) found {}",
                        t.pid(),
                        found.pid()
                    );
                }
            }
            ensure!(
                wait(pid)? == 0,
                "an ephemeral task saw an empty process list"
            );
        }
        Ok(walked)
    };
    let me = percpu::this_cpu().id;
    one_round(me)?;
    // What the run allocates for its own bookkeeping, before the heap is measured (it is
    // still alive when the heap is measured again).
    let failures: Arc<[AtomicU32; crate::config::MAX_CPUS]> =
        Arc::new([const { AtomicU32::new(0) }; crate::config::MAX_CPUS]);
    let walked = Arc::new(AtomicU64::new(0));
    let mut drivers = Vec::with_capacity(crate::config::MAX_CPUS);
    task::settle_reaped();
    let heap = &crate::HEAP;
    let in_use = heap.bytes_in_use();
    // Each other CPU runs its share in a task pinned there (it sleeps in `wait`, which work
    // posted with `on_each_cpu` may not); this CPU runs its own.
    for cpu in smp::online_cpus().filter(|&c| c != me) {
        let (failures, walked) = (failures.clone(), walked.clone());
        let driver = spawn_with(
            "proclist-driver",
            CpuMask::only(cpu),
            Policy::RoundRobin,
            move || {
                match one_round(cpu) {
                    Ok(w) => {
                        walked.fetch_add(w, Ordering::Relaxed);
                    }
                    Err(why) => {
                        log::error!("cpu{cpu}: {why}");
                        failures[cpu].fetch_add(1, Ordering::Relaxed);
                    }
                }
                0
            },
        )?;
        drivers.push(driver);
    }
    walked.fetch_add(one_round(me)?, Ordering::Relaxed);
    for &pid in &drivers {
        ensure!(wait(pid)? == 0, "driver {pid} exited non-zero");
    }
    let failed: u32 = failures.iter().map(|f| f.load(Ordering::Relaxed)).sum();
    ensure!(failed == 0, "{failed} CPU(s) failed (see the errors above)");
    task::settle_reaped();
    let leaked = heap.bytes_in_use() as isize - in_use as isize;
    let poison = task::process_list_poison();
    let cpus = smp::online_cpus().count();
    log::info!(
        "{} tasks created and reaped on {cpus} CPUs while readers visited {} entries: {} poisoned entries met, heap {leaked:+} bytes",
        cpus * ROUNDS,
        walked.load(Ordering::Relaxed),
        poison.sightings - poison_before
    );
    ensure!(
        poison.sightings == poison_before,
        "a reader met a freed process-list entry (pid {:?})",
        poison.first.map(|f| f.pid)
    );
    ensure!(
        leaked == 0,
        "{leaked} bytes still in use after every task was reaped and freed"
    );
    Ok(())
}

/// Work posted with `on_each_cpu` runs in the target CPU's idle loop. Here it queues a
/// CPU-bound round-robin task on its own CPU, then works through three ticks. The idle loop
/// is what a CPU runs when no task wants it, so if the task could take the CPU from the
/// posted work, the work would not get it back until the task ended: the task must not run
/// on that CPU before the posted work is done.
fn posted_work_keeps_its_cpu(_: &Platform<'static>) -> Result<(), String> {
    /// The hog's budget, in chunks of 10 000 mixing rounds: far more than three ticks' work.
    const HOG_CHUNKS: u64 = 400;
    const WORK_CHUNK_LIMIT: u64 = 1_000_000;
    let me = percpu::this_cpu().id;
    let Some(target) = smp::online_cpus().find(|&c| c != me && smp::interrupts_ready(c)) else {
        log::warn!("no second CPU with interrupts; posted-work preemption test skipped");
        return Ok(());
    };
    let work_done = Arc::new(AtomicBool::new(false));
    // Chunks the hog ran while the posted work on its CPU was not finished.
    let hog_chunks_first = Arc::new(AtomicU64::new(0));
    let hog_pid = AtomicU64::new(0);
    let spawn_failed = AtomicBool::new(false);
    let ticks_seen = AtomicU64::new(0);
    smp::on_each_cpu(&|cpu| {
        if cpu != target {
            return;
        }
        let (done, first) = (work_done.clone(), hog_chunks_first.clone());
        let spawned = spawn_with("hog", CpuMask::only(cpu), Policy::RoundRobin, move || {
            for _ in 0..HOG_CHUNKS {
                if done.load(Ordering::Acquire) {
                    break;
                }
                core::hint::black_box(churn(7, 10_000, &|| {}));
                first.fetch_add(1, Ordering::Relaxed);
            }
            0
        });
        match spawned {
            Ok(pid) => hog_pid.store(u64::from(pid), Ordering::Relaxed),
            Err(_) => {
                spawn_failed.store(true, Ordering::Relaxed);
                return;
            }
        }
        let start = crate::irq::tick::ticks_on(cpu);
        for _ in 0..WORK_CHUNK_LIMIT {
            if crate::irq::tick::ticks_on(cpu) >= start + 3 {
                break;
            }
            core::hint::black_box(churn(3, 1_000, &|| {}));
        }
        ticks_seen.store(crate::irq::tick::ticks_on(cpu) - start, Ordering::Relaxed);
        work_done.store(true, Ordering::Release);
    });
    ensure!(
        !spawn_failed.load(Ordering::Relaxed),
        "cpu{target} could not spawn the hog"
    );
    ensure!(
        wait(hog_pid.load(Ordering::Relaxed) as Pid)? == 0,
        "the hog exited non-zero"
    );
    let first = hog_chunks_first.load(Ordering::Relaxed);
    log::info!(
        "cpu{target}: posted work saw {} ticks; the task it queued ran {first} of {HOG_CHUNKS} chunks before the work was done",
        ticks_seen.load(Ordering::Relaxed)
    );
    ensure!(
        first == 0,
        "a task queued on cpu{target} took the CPU from work posted with on_each_cpu and ran {first} of its {HOG_CHUNKS} chunks before the work got the CPU back"
    );
    Ok(())
}

/// Work posted with `on_each_cpu` may not sleep or yield, on any CPU: a switch is refused
/// there, and the refusal `sleep`, `yield_now` and the sleeping locks would panic with says
/// why. (The panic itself would end the test run, so this asks for the reason instead.)
fn posted_work_may_not_sleep(_: &Platform<'static>) -> Result<(), String> {
    let me = percpu::this_cpu().id;
    let refused: [AtomicU32; crate::config::MAX_CPUS] =
        [const { AtomicU32::new(0) }; crate::config::MAX_CPUS];
    let example: crate::sync::SpinLock<Option<String>> =
        crate::sync::SpinLock::named("ktest refusal text", None);
    smp::on_each_cpu(&|cpu| {
        let switch_refused = task::switch_allowed().is_err() && !task::can_sleep();
        let why = smp::sleep_refused_in_posted_call("sleep");
        let says_why = why
            .as_deref()
            .is_some_and(|w| w.contains("on_each_cpu") && w.contains(&format!("cpu{cpu}")));
        refused[cpu].store(
            u32::from(switch_refused) | u32::from(says_why) << 1,
            Ordering::Relaxed,
        );
        if cpu != me {
            let mut slot = example.lock();
            if slot.is_none() {
                *slot = why;
            }
        }
    });
    for cpu in smp::online_cpus() {
        let r = refused[cpu].load(Ordering::Relaxed);
        ensure!(r & 1 != 0, "cpu{cpu}: posted work could switch tasks");
        ensure!(
            r & 2 != 0,
            "cpu{cpu}: no refusal naming on_each_cpu and the CPU for posted work"
        );
    }
    ensure!(
        smp::sleep_refused_in_posted_call("sleep").is_none(),
        "cpu{me}: still refused after the call returned"
    );
    if let Some(why) = example.lock().take() {
        log::info!("refused as it should be: {why}");
    }
    Ok(())
}
