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
        name: "irq_each_ipi_kind_reaches_each_cpu_alone_in_any_cluster",
        run: each_ipi_reaches_each_cpu_alone,
    },
    KTest {
        name: "irq_on_each_cpu_runs_once_on_every_cpu",
        run: on_each_cpu_once_everywhere,
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

/// Every IPI kind sent to one CPU at a time reaches that CPU and, for pings, no other: a target
/// list built from the wrong cluster (Aff1) or from Aff0 alone would ping cpu1 when cpu17 was
/// meant, or nobody. Then "all but self" reaches every CPU in every cluster. (Stop, the fourth
/// kind, parks CPUs for good: the panic boot tests show it across clusters.)
fn each_ipi_reaches_each_cpu_alone(_: &Platform<'static>) -> Result<(), String> {
    need_interrupts()?;
    let me = crate::percpu::this_cpu().id;
    let pings = || {
        let mut now = [0u64; MAX_CPUS];
        for id in smp::online_cpus() {
            now[id] = ipi::pings_on(id);
        }
        now
    };
    let mpidr = |id: usize| crate::percpu::cpu(id).mpidr.load(Ordering::Relaxed);
    let mut clusters = 0u64; // Aff1 values seen, for the log (QEMU has at most 4 at 64 CPUs)
    for target in smp::online_cpus().filter(|&id| id != me) {
        clusters |= 1 << ((mpidr(target) >> 8) & 0x3f);
        // Ping: exactly the target's count moves.
        let before = pings();
        ipi::send(ipi::Ipi::Ping, &crate::cpumask::CpuMask::only(target));
        ensure!(
            wait_until(1, || ipi::pings_on(target) > before[target]),
            "cpu{target} (MPIDR {:#x}) never took a ping sent to it alone",
            mpidr(target)
        );
        for other in smp::online_cpus().filter(|&id| id != target) {
            let got = ipi::pings_on(other) - before[other];
            ensure!(
                got == 0,
                "a ping for cpu{target} (MPIDR {:#x}) reached cpu{other} (MPIDR {:#x})",
                mpidr(target),
                mpidr(other)
            );
        }
        // Reschedule: counted by the interrupt layer (others may get one from the scheduler).
        let rescheds = irq::count_on(ipi::Ipi::Reschedule as u32, target);
        ipi::send(ipi::Ipi::Reschedule, &crate::cpumask::CpuMask::only(target));
        ensure!(
            wait_until(1, || irq::count_on(ipi::Ipi::Reschedule as u32, target)
                > rescheds),
            "cpu{target} (MPIDR {:#x}) never took a reschedule IPI",
            mpidr(target)
        );
        // Call function: runs on the target alone, in its interrupt context.
        let ran_on = AtomicU32::new(u32::MAX);
        let ran = ipi::call_function(&crate::cpumask::CpuMask::only(target), &|id| {
            if irq::count::in_irq() {
                ran_on.store(id as u32, Ordering::Relaxed);
            }
        })
        .map_err(|e| alloc::format!("{e}"))?;
        let on = ran_on.load(Ordering::Relaxed);
        ensure!(
            ran == 1 && on == target as u32,
            "call_function for cpu{target} ran on {ran} CPU(s), in IRQ context on cpu{on}"
        );
    }
    // All but self: one write reaches every cluster.
    let before = pings();
    ipi::send_all_but_self(ipi::Ipi::Ping);
    let arrived = wait_until(2, || {
        smp::online_cpus()
            .filter(|&id| id != me)
            .all(|id| ipi::pings_on(id) > before[id])
    });
    for id in smp::online_cpus() {
        let got = ipi::pings_on(id) - before[id];
        let wanted = u64::from(id != me);
        ensure!(
            arrived && got == wanted,
            "all-but-self ping: cpu{id} (MPIDR {:#x}) took {got}, wanted {wanted}",
            mpidr(id)
        );
    }
    log::info!(target: "irq",
        "ping, reschedule and call-function reached each of {} other CPUs alone, in {} cluster(s); all-but-self reached them all",
        smp::online_cpus().count() - 1,
        clusters.count_ones().max(1)
    );
    Ok(())
}

/// `on_each_cpu` posts to every mailbox and wakes sleeping CPUs with one reschedule IPI per
/// cluster: each online CPU runs the call exactly once.
fn on_each_cpu_once_everywhere(_: &Platform<'static>) -> Result<(), String> {
    let runs: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
    for _ in 0..3 {
        smp::on_each_cpu(&|id| {
            runs[id].fetch_add(1, Ordering::Relaxed);
        });
    }
    for (id, runs) in runs.iter().enumerate() {
        let n = runs.load(Ordering::Relaxed);
        let online = crate::percpu::cpu(id).is_online();
        ensure!(
            n == if online { 3 } else { 0 },
            "cpu{id} ({}) ran 3 on_each_cpu calls {n} times",
            if online { "online" } else { "offline" }
        );
    }
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
