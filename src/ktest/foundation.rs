//! In-kernel tests of the foundation: every CPU is up with its own per-CPU area, its own stack,
//! the MMU and caches on, the map's permissions as planned, exclusives and the heap working
//! from every CPU. Each test checks something that a broken boot path would get wrong.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::KTest;
use crate::arch::aarch64::{cpu, layout, mmu, timer};
use crate::config::MAX_CPUS;
use crate::ensure;
use crate::mm::phys_to_virt;
use crate::percpu;
use crate::platform::Platform;
use crate::smp;

pub static TESTS: &[KTest] = &[
    KTest {
        name: "smp_all_listed_cpus_online",
        run: all_listed_cpus_online,
    },
    KTest {
        name: "percpu_area_matches_mpidr_on_every_cpu",
        run: percpu_matches_mpidr,
    },
    KTest {
        name: "percpu_stacks_are_private",
        run: stacks_are_private,
    },
    KTest {
        name: "mmu_and_caches_on_every_cpu",
        run: mmu_on_everywhere,
    },
    KTest {
        name: "mmu_section_permissions",
        run: section_permissions,
    },
    KTest {
        name: "atomics_exact_across_cpus",
        run: atomics_exact,
    },
    KTest {
        name: "heap_alloc_free_on_every_cpu",
        run: heap_on_every_cpu,
    },
    KTest {
        name: "heap_failure_is_reported",
        run: heap_failure_reported,
    },
    KTest {
        name: "counter_runs_forward_on_every_cpu",
        run: counter_forward,
    },
    KTest {
        name: "event_stream_wakes_wfe_on_every_cpu",
        run: event_stream_everywhere,
    },
    KTest {
        name: "log_from_every_cpu",
        run: log_from_every_cpu,
    },
];

/// Per-CPU verdicts collected by a call that runs everywhere: bit `id` set = CPU `id` failed.
struct Verdicts(AtomicU64);

impl Verdicts {
    fn new() -> Self {
        Verdicts(AtomicU64::new(0))
    }
    fn fail(&self, id: usize) {
        self.0.fetch_or(1 << id, Ordering::Relaxed);
    }
    fn check(&self, what: &str) -> Result<(), String> {
        let failed = self.0.load(Ordering::Relaxed);
        ensure!(failed == 0, "{what} on CPUs with mask {failed:#x}");
        Ok(())
    }
}

fn all_listed_cpus_online(p: &Platform<'static>) -> Result<(), String> {
    let online = smp::online_cpus().count();
    ensure!(
        online == p.cpus.len(),
        "{online} online, {} listed",
        p.cpus.len()
    );
    // Statistics walk only the slots a listed CPU can use; every online CPU must be among them.
    ensure!(
        percpu::possible_cpus() == p.cpus.len()
            && smp::online_cpus().all(|id| id < percpu::possible_cpus()),
        "possible_cpus() is {} with {} CPUs listed",
        percpu::possible_cpus(),
        p.cpus.len()
    );
    Ok(())
}

fn percpu_matches_mpidr(p: &Platform<'static>) -> Result<(), String> {
    let verdicts = Verdicts::new();
    let ran = AtomicUsize::new(0);
    smp::on_each_cpu(&|id| {
        ran.fetch_add(1, Ordering::Relaxed);
        let me = percpu::this_cpu();
        let mpidr = cpu::mpidr_affinity();
        if me.id != id
            || cpu::percpu_pointer() != percpu::area_address(id)
            || p.cpus.as_slice().get(id).map(|c| c.mpidr) != Some(mpidr)
            || me.mpidr.load(Ordering::Relaxed) != mpidr
        {
            verdicts.fail(id);
        }
    });
    let online = smp::online_cpus().count();
    ensure!(
        ran.load(Ordering::Relaxed) == online,
        "call ran {} times on {online} CPUs",
        ran.load(Ordering::Relaxed)
    );
    verdicts.check("per-CPU area, TPIDR_EL1 or MPIDR disagree")
}

fn stacks_are_private(_: &Platform<'static>) -> Result<(), String> {
    let verdicts = Verdicts::new();
    smp::on_each_cpu(&|id| {
        let local = 0u64;
        if !percpu::this_cpu().stack_contains(&local as *const u64 as usize)
            || !percpu::this_cpu().stack_contains(cpu::stack_pointer())
        {
            verdicts.fail(id);
        }
    });
    verdicts.check("SP outside the CPU's own stack")?;
    let cpus: Vec<_> = smp::online_cpus().map(percpu::cpu).collect();
    for a in &cpus {
        for b in &cpus {
            let (a0, a1) = (
                a.stack_bottom.load(Ordering::Relaxed),
                a.stack_top.load(Ordering::Relaxed),
            );
            let (b0, b1) = (
                b.stack_bottom.load(Ordering::Relaxed),
                b.stack_top.load(Ordering::Relaxed),
            );
            ensure!(
                a.id == b.id || a1 <= b0 || b1 <= a0,
                "stacks of cpu{} and cpu{} overlap",
                a.id,
                b.id
            );
        }
    }
    Ok(())
}

fn mmu_on_everywhere(_: &Platform<'static>) -> Result<(), String> {
    let verdicts = Verdicts::new();
    let roots = mmu::table_roots();
    smp::on_each_cpu(&|id| {
        if !mmu::is_enabled() || mmu::table_roots() != roots {
            verdicts.fail(id);
        }
    });
    verdicts.check("MMU or caches off, or a different TTBR0 or TTBR1")
}

/// PAR_EL1 after an address translation: bit 0 = fault, bits 63:56 = MAIR attribute.
fn translation(addr: usize, write: bool) -> Result<u8, ()> {
    let par = cpu::translate(addr, write);
    if par & 1 != 0 {
        Err(())
    } else {
        Ok((par >> 56) as u8)
    }
}

fn section_permissions(p: &Platform<'static>) -> Result<(), String> {
    let k = layout::kernel_layout();
    let normal = 0xff;
    let device = 0x04;
    ensure!(
        translation(k.text.0, false) == Ok(normal),
        "text not readable as Normal memory"
    );
    ensure!(translation(k.text.0, true).is_err(), "text is writable");
    ensure!(translation(k.rodata.0, true).is_err(), "rodata is writable");
    ensure!(
        translation(k.data_bss.0, true) == Ok(normal),
        "data not writable"
    );
    for slot in 0..crate::mm::paging::stack_slots_in_use(p) {
        ensure!(
            translation(k.guard_page(slot), false).is_err(),
            "guard page of stack slot {slot} is mapped"
        );
        ensure!(
            translation(k.stack_slot(slot).0, true) == Ok(normal),
            "stack slot {slot} not writable"
        );
    }
    ensure!(
        translation(phys_to_virt(p.uart.regs.start as usize), true) == Ok(device),
        "UART not mapped as Device-nGnRE in the linear map"
    );
    let ram = p.memory.as_slice()[0];
    ensure!(
        translation(phys_to_virt(ram.start as usize), false) == Ok(normal),
        "RAM start not Normal memory in the linear map"
    );
    Ok(())
}

fn atomics_exact(_: &Platform<'static>) -> Result<(), String> {
    const ROUNDS: u64 = 20_000;
    let counter = AtomicU64::new(0);
    smp::on_each_cpu(&|_| {
        for _ in 0..ROUNDS {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let expected = ROUNDS * smp::online_cpus().count() as u64;
    let got = counter.load(Ordering::Relaxed);
    ensure!(got == expected, "counted {got}, expected {expected}");
    Ok(())
}

fn heap_on_every_cpu(_: &Platform<'static>) -> Result<(), String> {
    let before = crate::HEAP.bytes_in_use();
    let verdicts = Verdicts::new();
    smp::on_each_cpu(&|id| {
        for round in 0..50u64 {
            let v: Vec<u64> = (0..500).map(|i| i * (id as u64 + 1) + round).collect();
            let b = Box::new([id as u8; 300]);
            if v.iter()
                .enumerate()
                .any(|(i, &x)| x != i as u64 * (id as u64 + 1) + round)
                || b.iter().any(|&x| x != id as u8)
            {
                verdicts.fail(id);
            }
        }
    });
    verdicts.check("heap returned corrupted memory")?;
    let after = crate::HEAP.bytes_in_use();
    ensure!(
        after == before,
        "heap use went from {before} to {after} bytes: a leak or a lost free"
    );
    Ok(())
}

fn heap_failure_reported(_: &Platform<'static>) -> Result<(), String> {
    let failures = crate::HEAP.stats.failures.load(Ordering::Relaxed);
    let layout = Layout::from_size_align(1 << 40, 4096).map_err(|_| String::from("bad layout"))?;
    // SAFETY: a valid layout; the result is checked and, if ever non-null, freed at once.
    let p = unsafe { crate::HEAP.alloc(layout) };
    if !p.is_null() {
        // SAFETY: allocated just above with this layout.
        unsafe { crate::HEAP.dealloc(p, layout) };
        return Err(String::from("a 1 TiB allocation succeeded"));
    }
    let now = crate::HEAP.stats.failures.load(Ordering::Relaxed);
    ensure!(
        now == failures + 1,
        "failure count went from {failures} to {now}"
    );
    Ok(())
}

fn counter_forward(_: &Platform<'static>) -> Result<(), String> {
    let verdicts = Verdicts::new();
    smp::on_each_cpu(&|id| {
        let a = cpu::counter();
        let b = cpu::counter();
        if cpu::counter_frequency() == 0 || b < a {
            verdicts.fail(id);
        }
    });
    verdicts.check("counter frequency zero or counter ran backwards")
}

/// Every CPU runs the timer's event stream, at the period chosen from CNTFRQ, so a WFE whose
/// wake-up never comes costs about 100 us instead of lasting until the next interrupt.
fn event_stream_everywhere(_: &Platform<'static>) -> Result<(), String> {
    let hz = cpu::counter_frequency();
    let expected = timer::event_stream_period(timer::event_stream_bit(hz));
    // 0: the stream is off on that CPU.
    let periods = [const { AtomicU64::new(0) }; MAX_CPUS];
    smp::on_each_cpu(&|id| {
        periods[id].store(
            timer::event_stream_period_here().unwrap_or(0),
            Ordering::Relaxed,
        );
    });
    for id in smp::online_cpus() {
        let period = periods[id].load(Ordering::Relaxed);
        ensure!(
            period != 0,
            "cpu{id}: the event stream is off (CNTKCTL_EL1.EVNTEN clear)"
        );
        ensure!(
            period == expected,
            "cpu{id}: an event every {period} ticks, expected {expected} at {hz} Hz"
        );
    }
    let us = expected * 1_000_000 / hz;
    ensure!(
        (50..=200).contains(&us),
        "an event every {us} us at {hz} Hz: expected about 100"
    );
    log::info!(target: "timer",
        "event stream on every CPU ({} online): an event every {expected} ticks ({us} us)",
        smp::online_cpus().count()
    );
    Ok(())
}

fn log_from_every_cpu(_: &Platform<'static>) -> Result<(), String> {
    // The host checks that every line of the run is well formed: concurrent lines must not mix.
    smp::on_each_cpu(&|id| {
        for i in 0..5 {
            log::info!(
                "line {i} from cpu{id}, written while {} other CPUs log too",
                smp::online_cpus().count() - 1
            );
        }
    });
    Ok(())
}
