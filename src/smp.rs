//! Bringing up the other CPUs, and running work on all of them (chapter 3, "Waking the other
//! cores").
//!
//! For each CPU the device tree lists, the boot CPU fills a `SecondaryBootBlock` (stack, per-CPU
//! pointer, MMU registers), cleans it to the point of coherency (the new CPU reads it with its
//! caches off), and starts the CPU the way the tree says: PSCI CPU_ON, or the spin table's
//! release address. It then waits, bounded by the generic counter, for the CPU to mark itself
//! online. A CPU that fails to start or to report is logged and skipped; the boot goes on.
//!
//! A started CPU brings up its interrupts and waits in `secondary_idle_loop` on a per-CPU
//! mailbox; `on_each_cpu` posts a call there and wakes the CPU with an IPI (or SEV, for a CPU
//! without interrupts). A posted call runs in the idle loop with preemption disabled and must
//! not sleep or yield: the idle loop is what a CPU runs when no task wants it, so a call that
//! gave the CPU away would not get it back while any task kept it busy. The `ipi` module below
//! sends SGIs and runs functions on other CPUs.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::arch::aarch64::boot::{
    BOOT_BLOCK_VALID, SECONDARY_BOOT_BLOCKS, SecondaryBootBlock, secondary_entry_address,
};
use crate::arch::aarch64::layout::KernelLayout;
use crate::arch::aarch64::mmu::MmuConfig;
use crate::arch::aarch64::{cpu, exception, irqflags, psci};
use crate::config::{CPU_START_TIMEOUT_MS, MAX_CPUS};
use crate::cpumask::CpuMask;
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
        wait_until_online(id);
        if percpu::cpu(id).keep_or_abandon() {
            wait_until_announced(id, desc.mpidr);
        } else {
            log::warn!(
                "cpu{id} (MPIDR {:#x}) did not report within {CPU_START_TIMEOUT_MS} ms; skipping it",
                desc.mpidr
            );
            abandon(block);
        }
    }
    percpu::online_mask().count()
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
    block.ttbr0.store(mmu.trampoline_ttbr0, Ordering::Relaxed);
    block.ttbr1.store(mmu.ttbr1, Ordering::Relaxed);
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
    // The stub waits at a physical address for a physical one: it runs with the MMU off.
    let slot = crate::mm::phys_to_virt(release_addr as usize);
    // SAFETY: the release address is inside RAM, reserved from the heap, and in the linear map;
    // the firmware's stub reads it as a 64-bit value.
    unsafe { core::ptr::write_volatile(slot as *mut u64, secondary_entry_address() as u64) };
    cpu::clean_dcache_range(slot, slot + 8);
    cpu::send_event();
}

/// Spin until `done` holds or `CPU_START_TIMEOUT_MS` of generic-counter time has passed;
/// whether it held.
fn spin_until(done: impl Fn() -> bool) -> bool {
    let deadline = cpu::counter() + cpu::counter_frequency() * CPU_START_TIMEOUT_MS / 1000;
    while cpu::counter() < deadline {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

/// Poll until CPU `id` claims to be online or the start timeout passes; the caller then
/// settles its fate with `keep_or_abandon`.
fn wait_until_online(id: usize) {
    spin_until(|| percpu::cpu(id).is_online());
}

/// A CPU that came online logs its `online` line before the boot CPU starts the next one, so
/// the boot log lists the CPUs in order whatever the host does to their vCPUs (and the `smp:`
/// count line comes after all of them). Bounded like the start itself: a CPU that claimed its
/// place but never reports is named, and bring-up goes on.
fn wait_until_announced(id: usize, mpidr: u64) {
    if !spin_until(|| ANNOUNCED.for_cpu(id).load(Ordering::Acquire)) {
        log::warn!(
            "cpu{id} (MPIDR {mpidr:#x}) is online but did not log it within {CPU_START_TIMEOUT_MS} ms; going on"
        );
    }
}

/// Per CPU: it has logged its `online` line (see `wait_until_announced`).
static ANNOUNCED: PerCpu<AtomicBool> =
    PerCpu::new([const { CacheAligned(AtomicBool::new(false)) }; MAX_CPUS]);

/// The contract line: exactly once, after bring-up, `smp: N/M CPUs online`. Tests and tools
/// look for it; the counter value after it is the guest time bring-up took.
pub fn report_online(online: usize, in_tree: usize) {
    BOOT_CPU.store(percpu::this_cpu().id, Ordering::Relaxed);
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
    // The preempt count before anything that locks (boot.rs set TPIDR_EL1, not the task word).
    crate::sync::preempt::use_cpu_count(me.id);
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
    crate::rcu::cpu_online(me.id);
    log::info!(
        "cpu{} online: MPIDR {:#x} (cluster {}), entered at EL{}, stack {:#x}..{:#x}",
        me.id,
        cpu::mpidr_affinity(),
        crate::drivers::gic_affinity::ClusterName(cpu::mpidr_affinity()),
        entry_el,
        me.stack_bottom.load(Ordering::Relaxed),
        me.stack_top.load(Ordering::Relaxed)
    );
    ANNOUNCED.for_cpu(me.id).store(true, Ordering::Release);
    interrupts_on_this_cpu();
    secondary_idle_loop()
}

/// The logical id of the CPU that booted the kernel (recorded by `report_online`).
static BOOT_CPU: AtomicUsize = AtomicUsize::new(0);

/// Per CPU: its GIC interface, IPIs and tick are up and IRQs are unmasked.
static INTERRUPTS_READY: PerCpu<AtomicBool> =
    PerCpu::new([const { CacheAligned(AtomicBool::new(false)) }; MAX_CPUS]);

/// Bring this CPU's interrupts up: its GIC interface, IPIs, its tick, then unmask IRQs. Does
/// nothing (and says why once, on the boot CPU) if the boot CPU could not set up a GIC.
pub fn interrupts_on_this_cpu() {
    let Some(gic) = crate::drivers::gic::get() else {
        return;
    };
    let me = percpu::this_cpu().id;
    if let Err(e) = gic.init_this_cpu() {
        log::error!(target: "irq", "cpu{me}: {e}; this CPU runs without interrupts");
        return;
    }
    ipi::enable_this_cpu(gic);
    crate::irq::tick::start_this_cpu(gic);
    INTERRUPTS_READY.for_cpu(me).store(true, Ordering::Release);
    irqflags::local_irq_enable();
}

/// True once `interrupts_on_this_cpu` succeeded on CPU `id`.
pub fn interrupts_ready(id: usize) -> bool {
    INTERRUPTS_READY.for_cpu(id).load(Ordering::Acquire)
}

/// Logical ids of the CPUs that are online, lowest first: one step per online CPU.
pub fn online_cpus() -> impl Iterator<Item = usize> {
    percpu::online_mask().into_iter()
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
/// Per CPU: it is running its share of an `on_each_cpu` call.
static RUNNING_POSTED_CALL: PerCpu<AtomicBool> =
    PerCpu::new([const { CacheAligned(AtomicBool::new(false)) }; MAX_CPUS]);

/// Run this CPU's share of a posted call: preemption off (nothing may take the CPU from it),
/// and marked, so that an attempt to sleep says what went wrong.
fn run_posted_share(f: &(dyn Fn(usize) + Sync), me: usize) {
    crate::sync::preempt::preempt_disable();
    RUNNING_POSTED_CALL
        .for_cpu(me)
        .store(true, Ordering::Relaxed);
    f(me);
    RUNNING_POSTED_CALL
        .for_cpu(me)
        .store(false, Ordering::Relaxed);
    crate::sync::preempt::preempt_enable();
}

/// Why the calling flow may not sleep because it runs its CPU's share of an `on_each_cpu`
/// call, if it does. `what` names the attempt ("sleep", "a sleeping lock", ...).
pub fn sleep_refused_in_posted_call(what: &str) -> Option<alloc::string::String> {
    let me = percpu::current_id()?;
    RUNNING_POSTED_CALL
        .for_cpu(me)
        .load(Ordering::Relaxed)
        .then(|| {
            alloc::format!(
                "{what} in work posted with on_each_cpu on cpu{me}: posted work runs in the \
                 CPU's idle loop with preemption disabled and must not sleep or yield (the idle \
                 loop would not get the CPU back while a task kept it busy); for work that \
                 sleeps, spawn a task pinned to the CPU"
            )
        })
}

/// Panic, saying why, if the calling flow runs posted work (the scheduler's sleep and yield
/// and the sleeping locks' `might_sleep` call this).
pub fn refuse_sleep_in_posted_call(what: &str) {
    if let Some(why) = sleep_refused_in_posted_call(what) {
        panic!("{why}");
    }
}

/// Run `f(cpu_id)` on every online CPU, this one included, and return when all have finished.
/// Each CPU runs `f` with preemption disabled: it must not sleep or yield (that panics, saying
/// so); work that sleeps belongs in tasks pinned to each CPU.
///
/// # Panics
/// On a CPU other than the boot CPU: the others run posted calls from their idle loop, and the
/// boot CPU has none (it runs the shell or the tests), so the call could never complete there.
/// For work from anywhere, use `ipi::call_function`.
pub fn on_each_cpu(f: &(dyn Fn(usize) + Sync)) {
    let me = percpu::this_cpu().id;
    assert!(
        me == BOOT_CPU.load(Ordering::Relaxed),
        "on_each_cpu from cpu{me}: only the boot CPU may post calls (others never idle-loop it)"
    );
    let _serialised = CALL_LOCK.lock();
    let targets = || online_cpus().filter(move |&id| id != me);
    let call = Call {
        f,
        pending: AtomicUsize::new(targets().count()),
    };
    let mut sleeping_in_wfi = CpuMask::EMPTY;
    for id in targets() {
        MAILBOX
            .for_cpu(id)
            .store(&call as *const Call<'_> as usize, Ordering::Release);
        if interrupts_ready(id) {
            sleeping_in_wfi.set(id);
        }
    }
    // Idle CPUs with interrupts sleep in WFI, which only an interrupt ends; the others in WFE.
    ipi::send(ipi::Ipi::Reschedule, &sleeping_in_wfi);
    cpu::send_event();
    run_posted_share(f, me);
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

/// Where a secondary CPU spends its life once online: run posted calls, and sleep between them:
/// in WFI once it takes interrupts (the vCPU then really stops, leaving the host core to CPUs
/// with work), in WFE before.
pub fn secondary_idle_loop() -> ! {
    let me = percpu::this_cpu();
    let mailbox = MAILBOX.for_cpu(me.id);
    // This flow becomes the CPU's task 0 and its idle task (chapter 16) in `idle_once`.
    loop {
        let posted = mailbox.load(Ordering::Acquire);
        if posted == 0 {
            // Run queued work, pull some from a busy CPU, or sleep in WFI until an interrupt.
            crate::task::idle_once(|| mailbox.load(Ordering::Acquire) != 0);
            continue;
        }
        // A call may spawn tasks or wait in rcu_barrier: the scheduler must have started.
        crate::task::start_secondary_if_ready(me.id);
        // SAFETY: the poster keeps the Call alive until `pending` drops to 0, which happens
        // only after our last use of it below.
        let call = unsafe { &*(posted as *const Call<'_>) };
        run_posted_share(call.f, me.id);
        me.calls_run.fetch_add(1, Ordering::Relaxed);
        mailbox.store(0, Ordering::Relaxed);
        call.pending.fetch_sub(1, Ordering::Release);
        cpu::send_event();
    }
}

/// The CPU that booted first: it runs the shell or the tests, and posts `on_each_cpu` calls.
pub fn boot_cpu() -> usize {
    BOOT_CPU.load(Ordering::Relaxed)
}

/// Inter-processor interrupts: SGIs one CPU sends another (the IPI chapter).
///
/// Four kinds. `Reschedule` only wakes the target (the scheduler will use it). `CallFunction`
/// runs a function on the target in interrupt context and reports completion. `Stop` parks
/// the target for good, recording where it was (panic uses it). `Ping` wakes and is counted,
/// for tests and the latency benchmark.
pub mod ipi {
    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    use crate::arch::aarch64::exception::TrapFrame;
    use crate::arch::{counter, counter_frequency, irqflags};
    use crate::config::MAX_CPUS;
    use crate::cpumask::CpuMask;
    use crate::drivers::gic::Controller;
    use crate::irq;
    use crate::percpu::{self, CacheAligned, PerCpu};
    use crate::sync::SpinLock;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u32)]
    pub enum Ipi {
        Reschedule = 0,
        CallFunction = 1,
        Stop = 2,
        Ping = 3,
    }

    const KINDS: [(Ipi, &str); 4] = [
        (Ipi::Reschedule, "IPI reschedule"),
        (Ipi::CallFunction, "IPI call function"),
        (Ipi::Stop, "IPI stop"),
        (Ipi::Ping, "IPI ping"),
    ];

    static PINGS: PerCpu<AtomicU64> =
        PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
    /// Set by a CPU when it has parked itself on a stop IPI; the PC it was stopped at.
    static STOPPED: PerCpu<AtomicBool> =
        PerCpu::new([const { CacheAligned(AtomicBool::new(false)) }; MAX_CPUS]);
    static STOPPED_AT: PerCpu<AtomicU64> =
        PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
    /// Per target CPU: the address of the `FunctionCall` it must run, or 0.
    static CALL_SLOT: PerCpu<AtomicUsize> =
        PerCpu::new([const { CacheAligned(AtomicUsize::new(0)) }; MAX_CPUS]);
    static CALL_FUNCTION_LOCK: SpinLock<()> = SpinLock::new(());

    struct FunctionCall<'a> {
        f: &'a (dyn Fn(usize) + Sync),
        pending: AtomicUsize,
    }

    fn on_ipi(intid: u32, frame: &TrapFrame) {
        let me = percpu::this_cpu().id;
        match intid {
            x if x == Ipi::CallFunction as u32 => {
                let posted = CALL_SLOT.for_cpu(me).swap(0, Ordering::Acquire);
                if posted != 0 {
                    // SAFETY: the sender keeps the FunctionCall alive until `pending` reaches
                    // 0, which happens only after our last use of it, the decrement below.
                    let call = unsafe { &*(posted as *const FunctionCall<'_>) };
                    (call.f)(me);
                    call.pending.fetch_sub(1, Ordering::Release);
                }
            }
            x if x == Ipi::Stop as u32 => {
                STOPPED_AT.for_cpu(me).store(frame.elr, Ordering::Relaxed);
                STOPPED.for_cpu(me).store(true, Ordering::Release);
                if let Some(gic) = crate::drivers::gic::get() {
                    gic.disable_this_cpu();
                }
                crate::arch::aarch64::cpu::halt();
            }
            x if x == Ipi::Ping as u32 => {
                PINGS.for_cpu(me).fetch_add(1, Ordering::Relaxed);
            }
            _ => {} // Reschedule: waking up was the point.
        }
    }

    /// Register the IPI handlers (boot CPU, once).
    pub fn init() -> Result<(), irq::RegisterError> {
        for (kind, name) in KINDS {
            irq::register(kind as u32, name, on_ipi)?;
        }
        Ok(())
    }

    /// Accept IPIs on this CPU (each CPU, after its GIC interface is up).
    pub fn enable_this_cpu(gic: &Controller) {
        for (kind, _) in KINDS {
            gic.enable(kind as u32, true, percpu::this_cpu().id);
        }
    }

    /// Send `kind` to the CPUs in `cpus`.
    pub fn send(kind: Ipi, cpus: &CpuMask) {
        if let Some(gic) = crate::drivers::gic::get() {
            gic.send_sgi_to(kind as u32, cpus);
        }
    }

    /// Send `kind` to every other CPU: one write, whatever the number of clusters.
    pub fn send_all_but_self(kind: Ipi) {
        if let Some(gic) = crate::drivers::gic::get() {
            gic.send_sgi_all_but_self(kind as u32);
        }
    }

    pub fn pings_on(cpu: usize) -> u64 {
        PINGS.for_cpu(cpu).load(Ordering::Relaxed)
    }

    /// Why `call_function` refused.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum CallError {
        /// Interrupts are off, or we are in a handler: waiting here could deadlock with a CPU
        /// that is waiting for us to take its call.
        WouldDeadlock,
        /// The GIC is not set up, so there are no IPIs.
        NoInterrupts,
    }

    impl core::fmt::Display for CallError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                CallError::WouldDeadlock => write!(
                    f,
                    "call_function with IRQs disabled or from a handler could deadlock; refused"
                ),
                CallError::NoInterrupts => write!(f, "no interrupt controller: no IPIs"),
            }
        }
    }

    /// Run `f(cpu)` on every online CPU in `cpus` (this one included if its bit is set), the
    /// others in interrupt context through an IPI, and return once all have finished. Returns
    /// how many CPUs ran it.
    pub fn call_function(cpus: &CpuMask, f: &(dyn Fn(usize) + Sync)) -> Result<usize, CallError> {
        if irqflags::irqs_disabled() || irq::count::in_interrupt() {
            return Err(CallError::WouldDeadlock);
        }
        let gic = crate::drivers::gic::get().ok_or(CallError::NoInterrupts)?;
        // The lock first: holding it keeps preemption off, so the CPU read below is the one
        // this call runs on to the end. A task preempted and moved between the two would run
        // the old CPU's `f(me)` where it now is, and IPI its new CPU too: `f` twice there,
        // never on the CPU it named.
        let _one_at_a_time = CALL_FUNCTION_LOCK.lock();
        let me = percpu::this_cpu().id;
        // The sender holds one count of `pending` while it posts, so a target that runs the
        // call early (a stale SGI) cannot take it to 0 before every target is posted.
        let call = FunctionCall {
            f,
            pending: AtomicUsize::new(1),
        };
        let mut includes_me = false;
        let mut posted = 0;
        // Post first, then one SGI per cluster: the ids are visited once, in the caller's order.
        let mut post = |id: usize| {
            if id == me {
                includes_me = true;
                return false;
            }
            if id >= MAX_CPUS || !percpu::cpu(id).is_online() {
                return false;
            }
            call.pending.fetch_add(1, Ordering::Relaxed);
            CALL_SLOT
                .for_cpu(id)
                .store(&call as *const FunctionCall<'_> as usize, Ordering::Release);
            posted += 1;
            true
        };
        gic.send_sgi_to(
            Ipi::CallFunction as u32,
            cpus.into_iter().filter(|&id| post(id)),
        );
        call.pending.fetch_sub(1, Ordering::Release);
        let mut ran = posted;
        if includes_me {
            f(me);
            ran += 1;
        }
        // `call` is borrowed by the targets until `pending` is 0: this wait cannot give up.
        let mut warned_at = counter();
        while call.pending.load(Ordering::Acquire) != 0 {
            core::hint::spin_loop();
            if counter() - warned_at > 10 * counter_frequency() {
                log::warn!(target: "ipi",
                    "call_function: {} CPU(s) have not run the call after 10 s",
                    call.pending.load(Ordering::Relaxed)
                );
                warned_at = counter();
            }
        }
        Ok(ran)
    }

    /// Stop every other CPU (panic). Returns, for each CPU that stopped, where it was: (cpu,
    /// PC). The wait ends 100 ms after the last CPU stopped (or after the stop was sent): with
    /// more vCPUs than host cores the host runs them one after another, so 32 spinning vCPUs on
    /// two busy cores took over a second to all stop, while a CPU with IRQs masked never does.
    pub fn stop_other_cpus() -> [(usize, Option<u64>); MAX_CPUS] {
        let me = percpu::current_id();
        send_all_but_self(Ipi::Stop);
        let quiet = counter_frequency() / 10;
        let others = || super::online_cpus().filter(move |&id| Some(id) != me);
        let stopped_count = || {
            others()
                .filter(|&id| STOPPED.for_cpu(id).load(Ordering::Acquire))
                .count()
        };
        let (mut last_count, mut last_progress) = (stopped_count(), counter());
        while counter() - last_progress < quiet && last_count < others().count() {
            core::hint::spin_loop();
            let now = stopped_count();
            if now != last_count {
                (last_count, last_progress) = (now, counter());
            }
        }
        let mut result = [(usize::MAX, None); MAX_CPUS];
        for (slot, id) in others().enumerate() {
            let stopped = STOPPED.for_cpu(id).load(Ordering::Acquire);
            result[slot] = (
                id,
                stopped.then(|| STOPPED_AT.for_cpu(id).load(Ordering::Relaxed)),
            );
        }
        result
    }
}
