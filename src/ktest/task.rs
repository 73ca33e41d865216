//! In-kernel tests of kernel threads and the context switch (chapter 15,
//! "Processes and the context switch").
//!
//! Each runs threads on the CPU that runs the tests (one test on every CPU), cooperatively,
//! so every interleaving is exact and every count is known in advance. Each checks something a
//! broken switch, queue, exit path or stack check would get wrong.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::KTest;
use crate::arch::aarch64::context::{
    CalleeSaved, Context, call_with_callee_saved, switch_function,
};
use crate::arch::{counter, counter_frequency, irqflags};
use crate::config::MAX_CPUS;
use crate::ensure;
use crate::percpu;
use crate::platform::Platform;
use crate::smp;
use crate::sync::{IrqSafeSpinLock, SpinLock};
use crate::task::{
    self, CpuMask, DEFAULT_STACK_SIZE, Pid, Policy, Stack, SwitchRefused, TaskState, WaitError,
};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "task_yield_interleaves_exactly",
        run: yield_interleaves_exactly,
    },
    KTest {
        name: "task_exit_status_reaches_wait",
        run: exit_status_reaches_wait,
    },
    KTest {
        name: "task_spawn_and_exit_leak_no_heap",
        run: no_heap_leak,
    },
    KTest {
        name: "task_fp_and_callee_saved_registers_survive_switches",
        run: registers_survive,
    },
    KTest {
        name: "task_switch_asm_restores_every_callee_saved_register",
        run: switch_asm_restores_everything,
    },
    KTest {
        name: "task_stack_canary_catches_corruption",
        run: canary_catches_corruption,
    },
    KTest {
        name: "task_switch_refused_while_holding_a_lock",
        run: switch_refused_with_lock,
    },
    KTest {
        name: "task_irq_state_belongs_to_each_task",
        run: irq_state_per_task,
    },
    KTest {
        name: "task_threads_run_on_every_cpu",
        run: threads_on_every_cpu,
    },
];

/// The tests here check exact interleavings on one CPU, so their threads stay on this CPU and
/// are not time-sliced: pinned, FIFO.
fn spawn(name: &str, f: impl FnOnce() -> i32 + Send + 'static) -> Result<Pid, String> {
    spawn_pinned(name, percpu::this_cpu().id, f)
}

/// A FIFO thread pinned to `cpu`.
fn spawn_pinned(
    name: &str,
    cpu: usize,
    f: impl FnOnce() -> i32 + Send + 'static,
) -> Result<Pid, String> {
    task::spawn_with(
        name,
        DEFAULT_STACK_SIZE,
        CpuMask::only(cpu),
        Policy::Fifo,
        f,
    )
    .map_err(|e| format!("spawn {name}: {e}"))
}

fn wait(pid: Pid) -> Result<i32, String> {
    task::wait(pid).map_err(|e| format!("wait {pid}: {e}"))
}

/// Three threads that each record their letter and yield, ROUNDS times: round robin must give
/// exactly ABCABC..., and each thread is switched to once per round plus its first run.
fn yield_interleaves_exactly(_: &Platform<'static>) -> Result<(), String> {
    const ROUNDS: usize = 50;
    let log: Arc<SpinLock<Vec<u8>>> = Arc::new(SpinLock::new(Vec::with_capacity(3 * ROUNDS)));
    let cpu = percpu::this_cpu().id;
    let switches_before = task::cpu_switches(cpu);
    let mut pids = Vec::new();
    for letter in [b'A', b'B', b'C'] {
        let log = log.clone();
        pids.push(spawn(
            core::str::from_utf8(&[letter]).unwrap_or("?"),
            move || {
                for _ in 0..ROUNDS {
                    log.lock().push(letter);
                    task::yield_now();
                }
                0
            },
        )?);
    }
    let handles: Vec<_> = pids.iter().filter_map(|&p| task::lookup(p)).collect();
    ensure!(
        handles.len() == 3,
        "spawned tasks missing from the task list"
    );
    for &pid in &pids {
        ensure!(wait(pid)? == 0, "task {pid} exited non-zero");
    }
    let got = String::from_utf8(log.lock().clone()).unwrap_or_default();
    let want = "ABC".repeat(ROUNDS);
    if got != want {
        let at = got
            .bytes()
            .zip(want.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        return Err(format!(
            "interleaving differs at {at}: got {:?}..., want {:?}... ({} entries, want {})",
            &got[at.saturating_sub(6)..(at + 6).min(got.len())],
            &want[at.saturating_sub(6)..(at + 6).min(want.len())],
            got.len(),
            want.len()
        ));
    }
    for t in &handles {
        ensure!(
            t.state() == TaskState::Exited,
            "task {} is {}",
            t.pid(),
            t.state().name()
        );
        ensure!(
            t.switches() == ROUNDS as u64 + 1,
            "task {} ({}) was switched to {} times, want {}",
            t.pid(),
            t.name(),
            t.switches(),
            ROUNDS + 1
        );
    }
    let switches = task::cpu_switches(cpu) - switches_before;
    log::info!(target: "task",
        "3 threads x {ROUNDS} yields on cpu{cpu}: ABC x {ROUNDS} exact; {switches} context switches"
    );
    Ok(())
}

/// `exit` deep in a call chain never returns.
fn exit_from_a_nested_call(depth: u32, status: i32) -> i32 {
    if depth == 0 {
        task::exit(status);
    }
    exit_from_a_nested_call(core::hint::black_box(depth - 1), status) + 1
}

/// Exit statuses reach `wait` whether the entry returns or calls `exit`; a reaped task cannot
/// be waited for again; PIDs go up; runtime is counted.
fn exit_status_reaches_wait(_: &Platform<'static>) -> Result<(), String> {
    let returns = spawn("returns-42", || 42)?;
    let exits = spawn("exits-7", || exit_from_a_nested_call(5, 7))?;
    let negative = spawn("returns-minus-1", || -1)?;
    let spin_ticks = counter_frequency() / 500; // 2 ms
    let spins = spawn("spins-2ms", move || {
        let start = counter();
        while counter() - start < spin_ticks {
            core::hint::spin_loop();
        }
        0
    })?;
    ensure!(
        returns < exits && exits < negative && negative < spins,
        "PIDs not increasing: {returns}, {exits}, {negative}, {spins}"
    );
    let spinner = task::lookup(spins).ok_or("spins-2ms not in the task list")?;
    ensure!(
        spinner.state() == TaskState::Runnable,
        "a spawned task is {} before it ran",
        spinner.state().name()
    );
    ensure!(wait(exits)? == 7, "exit(7) from depth 5 did not give 7");
    ensure!(wait(returns)? == 42, "returning 42 did not give 42");
    ensure!(wait(negative)? == -1, "returning -1 did not give -1");
    ensure!(wait(spins)? == 0, "the spinner did not give 0");
    ensure!(
        spinner.runtime_ticks() >= spin_ticks,
        "the spinner ran {} counter ticks, at least {spin_ticks} expected",
        spinner.runtime_ticks()
    );
    ensure!(
        task::wait(returns) == Err(WaitError::NoSuchTask(returns)),
        "a reaped task could be waited for twice"
    );
    ensure!(
        task::wait(task::current_pid()) == Err(WaitError::WaitingForItself),
        "waiting for oneself was not refused"
    );
    ensure!(
        task::current().pid() == 0 && task::current().state() == TaskState::Running,
        "the test flow is not the CPU's running task 0"
    );
    Ok(())
}

/// One batch: `n` tasks that each yield once and exit with their index.
fn batch(n: usize) -> Result<(), String> {
    let mut pids = Vec::with_capacity(n);
    for i in 0..n {
        pids.push(spawn(&format!("batch-{i}"), move || {
            task::yield_now();
            i as i32
        })?);
    }
    for (i, pid) in pids.into_iter().enumerate() {
        ensure!(
            wait(pid)? == i as i32,
            "batch task {i} gave the wrong status"
        );
    }
    Ok(())
}

/// 160 tasks created and reaped leave the heap exactly as it was; an exited task's stack is
/// freed as soon as the CPU leaves it, before anyone reaps it.
fn no_heap_leak(_: &Platform<'static>) -> Result<(), String> {
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 16;
    batch(PER_BATCH)?; // warm-up: the task list and run queue grow to their size once
    task::settle_reaped();
    let heap = &crate::HEAP;
    let in_use = heap.bytes_in_use();
    let allocations = heap.stats.allocations.load(Ordering::Relaxed);
    for _ in 0..BATCHES {
        batch(PER_BATCH)?;
    }
    // Reaped tasks leave the process list through RCU: their entries are freed after a grace
    // period (and, with poisoning, a stay in quarantine). Wait for all of that first.
    task::settle_reaped();
    let leaked = heap.bytes_in_use() as isize - in_use as isize;
    let made = heap.stats.allocations.load(Ordering::Relaxed) - allocations;
    ensure!(
        leaked == 0,
        "{leaked} bytes still in use after {} tasks came and went",
        BATCHES * PER_BATCH
    );
    ensure!(
        made >= (BATCHES * PER_BATCH * 3) as u64,
        "only {made} allocations for {} tasks: are stacks and tasks really on the heap?",
        BATCHES * PER_BATCH
    );

    let pid = spawn("short-lived", || 0)?;
    let with_stack = heap.bytes_in_use();
    task::yield_now(); // it runs and exits; we come back after the CPU left it
    let zombie = task::lookup(pid).ok_or("the exited task is gone before wait")?;
    let freed = with_stack as isize - heap.bytes_in_use() as isize;
    ensure!(
        zombie.state() == TaskState::Exited,
        "short-lived is {} after its run",
        zombie.state().name()
    );
    drop(zombie);
    ensure!(
        freed >= DEFAULT_STACK_SIZE as isize,
        "only {freed} bytes freed when the task exited; its {DEFAULT_STACK_SIZE}-byte stack should be"
    );
    ensure!(wait(pid)? == 0, "short-lived gave the wrong status");
    log::info!(target: "task",
        "{} tasks spawned and reaped: heap in use unchanged ({in_use} bytes), {made} allocations",
        BATCHES * PER_BATCH
    );
    Ok(())
}

/// f64 work that keeps several values live across calls: the compiler keeps them in d8-d15
/// or spills them, and either way a switch must give them back intact.
fn fp_series(seed: f64, steps: u32, yield_between: bool) -> u64 {
    let (mut a, mut b, mut c) = (seed, seed * 0.5, 1.0 / seed);
    for k in 0..steps {
        a = a * 1.000_003 + b;
        b = b * 0.999_991 - c * 0.25;
        c += f64::from(k) * 1e-3;
        if yield_between {
            task::yield_now();
        }
    }
    (a + b * 3.0 + c * 7.0).to_bits()
}

extern "C" fn yield_three_times(_: usize, _: usize) {
    for _ in 0..3 {
        task::yield_now();
    }
}

/// Registers that live across a switch come back as they were: f64 values in a computation
/// (compared bit for bit with the same computation without switches), and x20-x28 and d8-d15
/// loaded with a per-thread pattern around three yields (the register probe in context.rs).
fn registers_survive(_: &Platform<'static>) -> Result<(), String> {
    let results: Arc<SpinLock<Vec<(u32, bool, bool)>>> = Arc::new(SpinLock::new(Vec::new()));
    let mut pids = Vec::new();
    for i in 0..3u32 {
        let results = results.clone();
        pids.push(spawn(&format!("fp-{i}"), move || {
            let seed = core::hint::black_box(1.5 + f64::from(i) * 0.75);
            let with = fp_series(seed, 40, true);
            let without = fp_series(seed, 40, false);
            let probe_seed = 0x1111_0000_0000_0000 * u64::from(i + 1);
            // SAFETY: yield_three_times ignores its arguments and is safe to call.
            let probed = unsafe { call_with_callee_saved(probe_seed, yield_three_times, 0, 0) };
            results.lock().push((
                i,
                with == without,
                probed == CalleeSaved::expected(probe_seed),
            ));
            0
        })?);
    }
    // This flow takes part too, with its own pattern, while the threads switch around it.
    // SAFETY: as above.
    let mine = unsafe { call_with_callee_saved(0x7777_0000_0000_0000, yield_three_times, 0, 0) };
    for pid in pids {
        wait(pid)?;
    }
    ensure!(
        mine == CalleeSaved::expected(0x7777_0000_0000_0000),
        "task 0's callee-saved registers changed across switches: {mine:x?}"
    );
    let results = results.lock();
    ensure!(
        results.len() == 3,
        "{} of 3 threads reported",
        results.len()
    );
    for &(i, fp_ok, probe_ok) in results.iter() {
        ensure!(
            fp_ok,
            "thread {i}: f64 results differ with switches in between"
        );
        ensure!(
            probe_ok,
            "thread {i}: x20-x28/d8-d15 changed across three yields"
        );
    }
    Ok(())
}

/// The two contexts of a bare switch test: the test flow's and a helper thread's.
struct Bounce {
    test: Context,
    helper: Context,
}

const BOUNCE_SEED: u64 = 0xbbbb_0000_0000_0000;
const TEST_SEED: u64 = 0x4444_0000_0000_0000;

/// The helper thread: fill every callee-saved register with its own pattern and switch
/// straight back to the test flow; forever, one round per switch to it.
extern "C" fn bounce(pair: usize) -> usize {
    let pair = pair as *mut Bounce;
    loop {
        // SAFETY: `pair` is the test's live Bounce; switching from the helper's own context to
        // the test flow's, saved by the switch that brought us here, with IRQs still masked.
        unsafe {
            call_with_callee_saved(
                BOUNCE_SEED,
                switch_function(),
                (&raw mut (*pair).helper) as usize,
                (&raw const (*pair).test) as usize,
            )
        };
    }
}

extern "C" fn bounce_never_exits(_: usize) -> ! {
    panic!("the bounce helper's entry returned");
}

/// The assembly alone, with no Rust function between the probe and `switch` to save registers
/// on its behalf: the test flow loads a pattern into x20-x28 and d8-d15 and calls `switch`
/// to a helper that loads a different pattern and switches right back. Twice: a new thread's
/// first run, then the resumption of a saved one.
fn switch_asm_restores_everything(_: &Platform<'static>) -> Result<(), String> {
    let stack = Stack::new(16 * 1024).ok_or("no memory for the helper's stack")?;
    let pair = alloc::boxed::Box::into_raw(alloc::boxed::Box::new(Bounce {
        test: Context::empty(),
        helper: Context::empty(),
    }));
    // SAFETY: `pair` is a fresh, exclusive allocation.
    unsafe {
        (*pair).helper = Context::new_thread(stack.top(), bounce, pair as usize, bounce_never_exits)
    };
    let mut got = [None; 2];
    for (round, slot) in got.iter_mut().enumerate() {
        let seed = TEST_SEED + round as u64 * 0x100;
        let flags = irqflags::local_irq_save();
        // SAFETY: the helper context is a new thread on `stack` or one saved by its own switch;
        // `pair` outlives both; IRQs are masked; no lock is held.
        *slot = Some((seed, unsafe {
            call_with_callee_saved(
                seed,
                switch_function(),
                (&raw mut (*pair).test) as usize,
                (&raw const (*pair).helper) as usize,
            )
        }));
        irqflags::local_irq_restore(flags);
    }
    let canary = stack.check();
    // SAFETY: from Box::into_raw above; the helper is suspended and never resumed.
    drop(unsafe { alloc::boxed::Box::from_raw(pair) });
    drop(stack);
    ensure!(canary.is_ok(), "the helper overflowed its stack");
    for (round, result) in got.into_iter().enumerate() {
        let (seed, regs) = result.ok_or("a round did not run")?;
        let want = CalleeSaved::expected(seed);
        for (i, (g, w)) in regs.x.iter().zip(want.x).enumerate() {
            ensure!(
                *g == w,
                "round {round}: x{} came back {g:#x}, want {w:#x}",
                20 + i
            );
        }
        for (i, (g, w)) in regs.d.iter().zip(want.d).enumerate() {
            ensure!(
                *g == w,
                "round {round}: d{} came back {g:#x}, want {w:#x}",
                8 + i
            );
        }
    }
    Ok(())
}

/// The check `schedule` makes before switching to a task catches a damaged canary (and passes
/// once repaired); so does a bare stack's.
fn canary_catches_corruption(_: &Platform<'static>) -> Result<(), String> {
    let bare = Stack::new(4096).ok_or("no memory for a stack")?;
    ensure!(
        bare.check().is_ok(),
        "a fresh stack's canary fails its check"
    );
    // SAFETY: nothing runs on this stack.
    let old = unsafe { bare.poke_canary(0, 0) };
    let caught = bare.check();
    // SAFETY: as above.
    unsafe { bare.poke_canary(0, old) };
    ensure!(caught.is_err(), "a zeroed canary word passed the check");

    let pid = spawn("victim", || {
        task::yield_now();
        0
    })?;
    let victim = task::lookup(pid).ok_or("victim not in the task list")?;
    task::yield_now(); // the victim runs, yields back, and waits on the run queue
    ensure!(
        victim.state() == TaskState::Runnable,
        "victim is {}, not parked on the run queue",
        victim.state().name()
    );
    ensure!(
        victim.check_stack().is_ok(),
        "an intact canary fails its check"
    );
    // SAFETY: the victim is queued, not running; the word is restored before it runs again.
    let old = unsafe { victim.poke_canary(3, 0x0bad_0bad_0bad_0bad) };
    let caught = victim.check_stack();
    if let Some(old) = old {
        // SAFETY: as above.
        unsafe { victim.poke_canary(3, old) };
    }
    ensure!(old.is_some(), "the victim has no heap stack");
    let damage = caught
        .err()
        .ok_or("a damaged canary passed the switch-in check")?;
    ensure!(
        damage.found == 0x0bad_0bad_0bad_0bad,
        "the report names {:#x}, not the value written",
        damage.found
    );
    ensure!(victim.check_stack().is_ok(), "the repaired canary fails");
    log::info!(target: "task", "caught before switching to task {pid}: {damage}");
    ensure!(wait(pid)? == 0, "victim gave the wrong status");
    Ok(())
}

/// `schedule` refuses to switch with a spin lock held (validator on), an IRQ-safe lock held,
/// or preemption disabled: `switch_allowed` is the check it panics on.
fn switch_refused_with_lock(_: &Platform<'static>) -> Result<(), String> {
    ensure!(
        task::switch_allowed().is_ok(),
        "switching refused with nothing held: {:?}",
        task::switch_allowed()
    );
    let plain: SpinLock<u32> = SpinLock::named("ktest task guard", 0);
    let guard = plain.lock();
    let with_plain = task::switch_allowed();
    drop(guard);
    if crate::sync::spinlock::validate::active() {
        match with_plain {
            Err(why @ SwitchRefused::LockHeld { name, .. }) => {
                ensure!(name == "ktest task guard", "wrong lock named: {why}");
                log::info!(target: "task", "refused: {why}");
            }
            other => return Err(format!("a held spin lock was not caught: {other:?}")),
        }
    }
    let irqsafe: IrqSafeSpinLock<u32> = IrqSafeSpinLock::new(0);
    let guard = irqsafe.lock();
    let with_irqsafe = task::switch_allowed();
    drop(guard);
    ensure!(
        matches!(
            with_irqsafe,
            Err(SwitchRefused::IrqSafeLockHeld { depth: 1 })
        ),
        "a held IRQ-safe lock was not caught: {with_irqsafe:?}"
    );
    crate::sync::preempt::preempt_disable();
    let with_preempt_off = task::switch_allowed();
    crate::sync::preempt::preempt_enable();
    ensure!(
        matches!(
            with_preempt_off,
            Err(SwitchRefused::PreemptDisabled { preempt_count: 1 })
        ),
        "preemption disabled was not caught: {with_preempt_off:?}"
    );
    ensure!(
        task::switch_allowed().is_ok(),
        "switching still refused after everything was released"
    );
    Ok(())
}

/// Each task keeps its own IRQ mask across switches: a thread that masks IRQs and yields finds
/// them masked when it resumes, while the flow it yielded to has its own (enabled) state back.
fn irq_state_per_task(_: &Platform<'static>) -> Result<(), String> {
    let cpu = percpu::this_cpu().id;
    if !smp::interrupts_ready(cpu) {
        log::warn!(target: "task", "cpu{cpu} takes no interrupts; IRQ state test skipped");
        return Ok(());
    }
    ensure!(
        !irqflags::irqs_disabled(),
        "the test flow runs with IRQs masked"
    );
    let pid = spawn("masks-irqs", || {
        let started_enabled = !irqflags::irqs_disabled();
        irqflags::local_irq_disable();
        task::yield_now();
        let still_masked = irqflags::irqs_disabled();
        irqflags::local_irq_enable();
        i32::from(started_enabled) | i32::from(still_masked) << 1
    })?;
    task::yield_now(); // the thread starts, masks IRQs and yields back
    let here_enabled = !irqflags::irqs_disabled();
    let status = wait(pid)?;
    ensure!(
        here_enabled,
        "IRQs came back masked in the flow that yielded with them enabled"
    );
    ensure!(status & 1 != 0, "a new thread started with IRQs masked");
    ensure!(
        status & 2 != 0,
        "the thread that masked IRQs resumed with them enabled"
    );
    Ok(())
}

/// Every online CPU runs its own pair of pinned threads through its own run queue: each
/// thread sees only its CPU, the interleaving is exact there, and each CPU counts switches.
fn threads_on_every_cpu(_: &Platform<'static>) -> Result<(), String> {
    const ROUNDS: u64 = 20;
    // Per CPU: 1 when its threads ran as expected, 2.. a failure code.
    let outcome: Arc<[AtomicU64; MAX_CPUS]> = Arc::new([const { AtomicU64::new(0) }; MAX_CPUS]);
    let mut before = [0u64; MAX_CPUS];
    for id in smp::online_cpus() {
        before[id] = task::cpu_switches(id);
    }
    let pair = |cpu: usize, outcome: &[AtomicU64; MAX_CPUS]| {
        let trace = Arc::new(AtomicU64::new(0));
        // Both threads start together: a thread started alone would yield to nobody.
        let start = Arc::new(task::Completion::new());
        let mut pids = [0; 2];
        for (n, pid) in pids.iter_mut().enumerate() {
            let (trace, start) = (trace.clone(), start.clone());
            let spawned = task::spawn_with(
                &format!("pair-{cpu}-{n}"),
                DEFAULT_STACK_SIZE,
                CpuMask::only(cpu),
                Policy::Fifo,
                move || {
                    start.wait();
                    for _ in 0..ROUNDS {
                        if percpu::this_cpu().id != cpu {
                            return 3;
                        }
                        // Shift in a bit per turn: 0 for the first thread, 1 for the second.
                        let t = trace.load(Ordering::Relaxed);
                        trace.store(t << 1 | n as u64, Ordering::Relaxed);
                        task::yield_now();
                    }
                    0
                },
            );
            match spawned {
                Ok(p) => *pid = p,
                Err(_) => {
                    outcome[cpu].store(2, Ordering::Relaxed);
                    return;
                }
            }
        }
        // Woken in the order they went to sleep, which is the order they were spawned.
        for _ in 0..1_000_000 {
            if start.waiters() == 2 {
                break;
            }
            task::yield_now();
        }
        start.complete_all();
        let statuses = pids.map(task::wait);
        let code = if statuses.iter().any(|s| *s != Ok(0)) {
            4
        } else if trace.load(Ordering::Relaxed) != 0x5555_5555_5555_5555 & ((1 << 40) - 1) {
            5
        } else {
            1
        };
        outcome[cpu].store(code, Ordering::Relaxed);
    };
    // Each other CPU's pair is started by a driver task pinned there: the driver waits for
    // its threads, and work posted with `on_each_cpu` may not sleep. This CPU runs its own.
    let me = percpu::this_cpu().id;
    let mut drivers = Vec::new();
    for cpu in smp::online_cpus().filter(|&c| c != me) {
        let outcome = outcome.clone();
        drivers.push(spawn_pinned(&format!("pairs-{cpu}"), cpu, move || {
            pair(cpu, &outcome);
            0
        })?);
    }
    pair(me, &outcome);
    for pid in drivers {
        ensure!(wait(pid)? == 0, "driver {pid} exited non-zero");
    }
    for id in smp::online_cpus() {
        let code = outcome[id].load(Ordering::Relaxed);
        ensure!(
            code == 1,
            "cpu{id}: {}",
            match code {
                0 => "its driver never ran",
                2 => "spawn failed",
                3 => "a pinned thread found itself on another CPU",
                4 => "a thread did not exit with 0",
                _ => "the two threads did not alternate exactly",
            }
        );
        let switched = task::cpu_switches(id) - before[id];
        ensure!(
            switched >= 2 * ROUNDS,
            "cpu{id} counted {switched} switches, at least {} expected",
            2 * ROUNDS
        );
    }
    log::info!(target: "task",
        "{} CPUs each ran 2 pinned threads x {ROUNDS} yields on their own run queue",
        smp::online_cpus().count()
    );
    Ok(())
}
