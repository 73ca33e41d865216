//! In-kernel tests of interrupts on every CPU: ticks, IPIs, cross-CPU calls, and nesting IRQ
//! disable (the GIC, timer and IPI chapters).

use alloc::string::String;
use core::sync::atomic::{AtomicU32, Ordering};

use super::KTest;
use crate::arch::{counter, counter_frequency, irqflags};
use crate::config::MAX_CPUS;
use crate::ensure;
use crate::irq::{self, tick};
use crate::platform::Platform;
use crate::smp::{self, ipi};
use crate::sync::irq::{depth, pop_off, push_off};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "irq_timer_ticks_arrive_on_every_cpu",
        run: ticks_on_every_cpu,
    },
    KTest {
        name: "irq_ipis_reach_every_cpu",
        run: ipis_reach_every_cpu,
    },
    KTest {
        name: "irq_call_function_runs_once_on_each_cpu",
        run: call_function_once_each,
    },
    KTest {
        name: "irq_nested_disable_restores_the_outer_state",
        run: nesting_restores,
    },
];

fn online_mask() -> crate::cpumask::CpuMask {
    crate::percpu::online_mask()
}

fn need_interrupts() -> Result<(), String> {
    ensure!(
        crate::drivers::gic::get().is_some(),
        "no interrupt controller was set up"
    );
    for id in smp::online_cpus() {
        ensure!(smp::interrupts_ready(id), "cpu{id} has no interrupts");
    }
    Ok(())
}

/// Wait (bounded, in guest time) until `done` holds; false on timeout.
fn wait_until(seconds_limit: u64, done: impl Fn() -> bool) -> bool {
    let deadline = counter() + seconds_limit * counter_frequency();
    while counter() < deadline {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

fn ticks_on_every_cpu(_: &Platform<'static>) -> Result<(), String> {
    need_interrupts()?;
    const TICKS: u64 = 10;
    let mut before = [0u64; MAX_CPUS];
    for id in smp::online_cpus() {
        before[id] = tick::ticks_on(id);
    }
    // Idle CPUs sleep in WFI and wake for their own tick, so every CPU must count ten more.
    let all_ticked = wait_until(5, || {
        smp::online_cpus().all(|id| tick::ticks_on(id) >= before[id] + TICKS)
    });
    for id in smp::online_cpus() {
        ensure!(
            all_ticked,
            "cpu{id} counted {} ticks in 5 s, wanted {TICKS}",
            tick::ticks_on(id) - before[id]
        );
    }
    log::info!(target: "irq",
        "{TICKS}+ ticks on each of {} CPUs at {} Hz",
        smp::online_cpus().count(),
        tick::TICK_HZ
    );
    Ok(())
}

fn ipis_reach_every_cpu(_: &Platform<'static>) -> Result<(), String> {
    need_interrupts()?;
    const ROUNDS: u64 = 100;
    let me = crate::percpu::this_cpu().id;
    let others = online_mask().without(me);
    let mut before = [0u64; MAX_CPUS];
    for id in smp::online_cpus() {
        before[id] = ipi::pings_on(id);
    }
    for round in 1..=ROUNDS {
        ipi::send(ipi::Ipi::Ping, &others);
        // One ping at a time: a second SGI sent before the first is taken merges with it.
        let arrived = wait_until(1, || {
            smp::online_cpus()
                .filter(|&id| id != me)
                .all(|id| ipi::pings_on(id) >= before[id] + round)
        });
        ensure!(
            arrived,
            "round {round}: not every CPU took the ping within 1 s"
        );
    }
    for id in smp::online_cpus().filter(|&id| id != me) {
        let got = ipi::pings_on(id) - before[id];
        ensure!(
            got == ROUNDS,
            "cpu{id} took {got} pings, {ROUNDS} were sent"
        );
    }
    Ok(())
}

fn call_function_once_each(_: &Platform<'static>) -> Result<(), String> {
    need_interrupts()?;
    let runs: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
    let in_irq: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
    let me = crate::percpu::this_cpu().id;
    let ran = ipi::call_function(&online_mask(), &|id| {
        runs[id].fetch_add(1, Ordering::Relaxed);
        if irq::count::in_irq() {
            in_irq[id].fetch_add(1, Ordering::Relaxed);
        }
    })
    .map_err(|e| alloc::format!("{e}"))?;
    ensure!(
        ran == smp::online_cpus().count(),
        "call_function reports {ran} CPUs"
    );
    for id in smp::online_cpus() {
        let n = runs[id].load(Ordering::Relaxed);
        ensure!(n == 1, "cpu{id} ran the function {n} times");
        let irq_ctx = in_irq[id].load(Ordering::Relaxed) == 1;
        ensure!(
            irq_ctx == (id != me),
            "cpu{id} ran it {} interrupt context",
            if irq_ctx { "in" } else { "outside" }
        );
    }
    // And the rule that keeps it from deadlocking: never with IRQs off.
    push_off();
    let refused = ipi::call_function(&online_mask(), &|_| {});
    pop_off();
    ensure!(
        refused == Err(ipi::CallError::WouldDeadlock),
        "call_function with IRQs disabled was not refused"
    );
    Ok(())
}

fn nesting_restores(_: &Platform<'static>) -> Result<(), String> {
    ensure!(
        !irqflags::irqs_disabled(),
        "the test runner runs with IRQs enabled"
    );
    push_off();
    push_off();
    ensure!(depth() == 2, "depth {} after two push_off", depth());
    pop_off();
    ensure!(
        irqflags::irqs_disabled(),
        "IRQs came back on after one pop_off of two"
    );
    pop_off();
    ensure!(
        !irqflags::irqs_disabled(),
        "IRQs stayed off after the outermost pop_off"
    );
    let outer = irqflags::local_irq_save();
    let inner = irqflags::local_irq_save();
    irqflags::local_irq_restore(inner);
    ensure!(irqflags::irqs_disabled(), "inner restore re-enabled IRQs");
    irqflags::local_irq_restore(outer);
    ensure!(
        !irqflags::irqs_disabled(),
        "outer restore did not re-enable IRQs"
    );
    // While masked, this CPU's ticks stop and resume after: interrupts really were off.
    let me = crate::percpu::this_cpu().id;
    let flags = irqflags::local_irq_save();
    let before = tick::ticks_on(me);
    let start = counter();
    while counter() - start < counter_frequency() / 20 {
        core::hint::spin_loop();
    }
    let during = tick::ticks_on(me) - before;
    irqflags::local_irq_restore(flags);
    ensure!(during == 0, "{during} ticks arrived with IRQs masked");
    ensure!(
        wait_until(1, || tick::ticks_on(me) > before),
        "no tick after IRQs were restored"
    );
    Ok(())
}
