//! Bringing up the other CPUs, and running work on all of them (chapter 3, "Waking the other
//! cores").
//!
//! For each CPU the device tree lists, the boot CPU fills a `SecondaryBootBlock` (stack, per-CPU
//! pointer, MMU registers), cleans it to the point of coherency (the new CPU reads it with its
//! caches off), and starts the CPU the way the tree says: PSCI CPU_ON, or the spin table's
//! release address. It then waits, bounded by the generic counter, for the CPU to mark itself
//! online. A CPU that fails to start or to report is logged and skipped; the boot goes on.
//!
//! Until inter-processor interrupts exist, a started CPU waits in `secondary_idle_loop` on a
//! per-CPU mailbox; `on_each_cpu` posts a call there and wakes everyone with SEV.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::aarch64::boot::{
    BOOT_BLOCK_VALID, SECONDARY_BOOT_BLOCKS, SecondaryBootBlock, secondary_entry_address,
};
use crate::arch::aarch64::layout::KernelLayout;
use crate::arch::aarch64::mmu::MmuConfig;
use crate::arch::aarch64::{cpu, exception, psci};
use crate::config::{CPU_START_TIMEOUT_MS, MAX_CPUS};
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::platform::{CpuDesc, EnableMethod, Platform};
use crate::sync::SpinLock;

/// Written into a boot block whose CPU did not report in time: it can never match an MPIDR, so a
/// late CPU parks in boot.rs instead of running with a stack nobody is watching.
const ABANDONED: u64 = 1;

/// Start every CPU the platform lists except the boot CPU; returns how many are online
/// (the boot CPU included).
pub fn start_secondaries(
    platform: &Platform<'_>,
    mmu: &MmuConfig,
    layout: &KernelLayout,
    boot_id: usize,
) -> usize {
    for (id, desc) in platform.cpus.as_slice().iter().enumerate() {
        if id == boot_id {
            continue;
        }
        let block = &SECONDARY_BOOT_BLOCKS[id];
        prepare_block(block, id, desc.mpidr, mmu, layout);
        if !start_cpu(platform, id, desc) {
            percpu::cpu(id).mark_off();
            abandon(block);
            continue;
        }
        if !wait_until_online(id) && percpu::cpu(id).abandon() {
            log::warn!(
                "cpu{id} (MPIDR {:#x}) did not report within {CPU_START_TIMEOUT_MS} ms; skipping it",
                desc.mpidr
            );
            abandon(block);
        }
    }
    percpu::all_cpus().filter(|c| c.is_online()).count()
}

/// Ask the CPU to start by its enable-method; false (with the reason logged) if it cannot.
fn start_cpu(platform: &Platform<'_>, id: usize, desc: &CpuDesc) -> bool {
    match (desc.method, platform.psci) {
        (EnableMethod::Psci, Some(conduit)) => {
            match psci::cpu_on(conduit, desc.mpidr, secondary_entry_address(), id as u64) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!(
                        "cpu{id} (MPIDR {:#x}): PSCI CPU_ON failed: {}; skipping it",
                        desc.mpidr,
                        e.name()
                    );
                    false
                }
            }
        }
        (EnableMethod::Psci, None) => {
            log::warn!(
                "cpu{id} (MPIDR {:#x}): enable-method psci but no PSCI; skipping it",
                desc.mpidr
            );
            false
        }
        (EnableMethod::SpinTable { release_addr }, _) => {
            release_from_spin_table(release_addr);
            true
        }
        (EnableMethod::Unknown, _) => {
            log::warn!(
                "cpu{id} (MPIDR {:#x}): no usable enable-method; skipping it",
                desc.mpidr
            );
            false
        }
    }
}

fn prepare_block(
    block: &SecondaryBootBlock,
    id: usize,
    mpidr: u64,
    mmu: &MmuConfig,
    layout: &KernelLayout,
) {
    let (bottom, top) = layout.stack_slot(id + 1);
    let area = percpu::cpu(id);
    area.mpidr.store(mpidr, Ordering::Relaxed);
    area.stack_bottom.store(bottom, Ordering::Relaxed);
    area.stack_top.store(top, Ordering::Relaxed);
    area.mark_starting();
    block.stack_top.store(top as u64, Ordering::Relaxed);
    block
        .percpu
        .store(percpu::area_address(id) as u64, Ordering::Relaxed);
    block.ttbr0.store(mmu.ttbr0, Ordering::Relaxed);
    block.tcr.store(mmu.tcr, Ordering::Relaxed);
    block.mair.store(mmu.mair, Ordering::Relaxed);
    block.sctlr.store(mmu.sctlr, Ordering::Relaxed);
    block
        .vbar
        .store(exception::vector_table_address() as u64, Ordering::Relaxed);
    block.tag.store(mpidr | BOOT_BLOCK_VALID, Ordering::Relaxed);
    clean_block(block);
}

fn abandon(block: &SecondaryBootBlock) {
    block.tag.store(ABANDONED, Ordering::Relaxed);
    clean_block(block);
}

fn clean_block(block: &SecondaryBootBlock) {
    let start = block as *const SecondaryBootBlock as usize;
    cpu::clean_dcache_range(start, start + core::mem::size_of::<SecondaryBootBlock>());
}

/// The spin-table protocol: the waiting CPU loops on WFE, reading `release_addr` with its caches
/// off; a non-zero value is where it jumps.
fn release_from_spin_table(release_addr: u64) {
    // SAFETY: the release address is inside RAM, reserved from the heap, and identity-mapped;
    // the firmware's stub reads it as a 64-bit value.
    unsafe {
        core::ptr::write_volatile(release_addr as *mut u64, secondary_entry_address() as u64)
    };
    cpu::clean_dcache_range(release_addr as usize, release_addr as usize + 8);
    cpu::send_event();
}

fn wait_until_online(id: usize) -> bool {
    let deadline = cpu::counter() + cpu::counter_frequency() * CPU_START_TIMEOUT_MS / 1000;
    while cpu::counter() < deadline {
        if percpu::cpu(id).is_online() {
            return true;
        }
        core::hint::spin_loop();
    }
    percpu::cpu(id).is_online()
}

/// The contract line: exactly once, after bring-up, `smp: N/M CPUs online`. Tests and tools
/// look for it; the counter value after it is the guest time bring-up took.
pub fn report_online(online: usize, in_tree: usize) {
    let now = cpu::counter();
    crate::logger::log_always(
        log::Level::Info,
        "smp",
        &format_args!(
            "{online}/{in_tree} CPUs online (counter {now} = {} us since reset)",
            now * 1_000_000 / cpu::counter_frequency()
        ),
    );
}

/// A secondary CPU's first Rust, MMU on: record itself, report online, then wait for work.
pub fn secondary_started(block: &SecondaryBootBlock, entry_el: u64) -> ! {
    let me = percpu::this_cpu();
    me.entry_el.store(entry_el, Ordering::Relaxed);
    // Consume the block, and clean it to memory, so a stray second start of this CPU (which
    // reads the block with its caches off) parks in boot.rs.
    abandon(block);
    if !me.claim_online() {
        log::warn!(
            "cpu{} arrived after the boot CPU stopped waiting for it; parking it",
            me.id
        );
        cpu::halt();
    }
    log::info!(
        "cpu{} online: MPIDR {:#x}, entered at EL{}, stack {:#x}..{:#x}",
        me.id,
        cpu::mpidr_affinity(),
        entry_el,
        me.stack_bottom.load(Ordering::Relaxed),
        me.stack_top.load(Ordering::Relaxed)
    );
    secondary_idle_loop()
}

/// Logical ids of the CPUs that are online.
pub fn online_cpus() -> impl Iterator<Item = usize> {
    percpu::all_cpus().filter(|c| c.is_online()).map(|c| c.id)
}

/// A start line for a call that runs on every CPU: each CPU waits in `wait` until all online
/// CPUs have arrived, so a measurement starts with everyone running, not with CPUs trickling in
/// as they notice their mailbox. Use a fresh one for each `on_each_cpu` call.
pub struct StartLine {
    arrived: AtomicUsize,
    expected: usize,
}

impl Default for StartLine {
    fn default() -> Self {
        Self::new()
    }
}

impl StartLine {
    pub fn new() -> Self {
        StartLine {
            arrived: AtomicUsize::new(0),
            expected: online_cpus().count(),
        }
    }

    /// A start line for only the first `cpus` CPUs of a call (the others must not wait on it).
    pub fn for_cpus(cpus: usize) -> Self {
        StartLine {
            arrived: AtomicUsize::new(0),
            expected: cpus,
        }
    }

    pub fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < self.expected {
            cpu::cpu_relax();
        }
    }
}

/// A call posted to other CPUs; lives on the caller's stack until every target has run it.
struct Call<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    pending: AtomicUsize,
}

/// Each CPU's mailbox: the address of a `Call`, or 0.
static MAILBOX: PerCpu<AtomicUsize> =
    PerCpu::new([const { CacheAligned(AtomicUsize::new(0)) }; MAX_CPUS]);
/// One call in flight at a time.
static CALL_LOCK: SpinLock<()> = SpinLock::new(());

/// Run `f(cpu_id)` on every online CPU, this one included, and return when all have finished.
pub fn on_each_cpu(f: &(dyn Fn(usize) + Sync)) {
    let _serialised = CALL_LOCK.lock();
    let me = percpu::this_cpu().id;
    let targets = || online_cpus().filter(move |&id| id != me);
    let call = Call {
        f,
        pending: AtomicUsize::new(targets().count()),
    };
    for id in targets() {
        MAILBOX
            .for_cpu(id)
            .store(&call as *const Call<'_> as usize, Ordering::Release);
    }
    cpu::send_event();
    f(me);
    percpu::this_cpu().calls_run.fetch_add(1, Ordering::Relaxed);
    let mut warned_at = cpu::counter();
    // `call` is borrowed by the targets until `pending` reaches 0, so this wait cannot give up;
    // it complains every 10 s so a stuck CPU is visible.
    while call.pending.load(Ordering::Acquire) != 0 {
        cpu::wait_for_event();
        if cpu::counter() - warned_at > 10 * cpu::counter_frequency() {
            log::warn!(
                "on_each_cpu: {} CPU(s) still running the call after 10 s",
                call.pending.load(Ordering::Relaxed)
            );
            warned_at = cpu::counter();
        }
    }
}

/// Where a secondary CPU spends its life once online: run posted calls, sleep in WFE between.
pub fn secondary_idle_loop() -> ! {
    let me = percpu::this_cpu();
    let mailbox = MAILBOX.for_cpu(me.id);
    loop {
        let posted = mailbox.load(Ordering::Acquire);
        if posted == 0 {
            cpu::wait_for_event();
            continue;
        }
        // SAFETY: the poster keeps the Call alive until `pending` drops to 0, which happens
        // only after our last use of it below.
        let call = unsafe { &*(posted as *const Call<'_>) };
        (call.f)(me.id);
        me.calls_run.fetch_add(1, Ordering::Relaxed);
        mailbox.store(0, Ordering::Relaxed);
        call.pending.fetch_sub(1, Ordering::Release);
        cpu::send_event();
    }
}
