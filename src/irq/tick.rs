//! The periodic tick: every CPU's own timer interrupt, counted per CPU (the timer chapter).
//!
//! Each CPU arms its EL1 virtual timer (src/arch/aarch64/timer.rs) for `1/TICK_HZ` s and, in the
//! handler, re-arms it relative to the previous deadline so ticks do not drift. The interrupt
//! is a PPI: the same INTID on every CPU, each CPU's own timer behind it.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::arch::aarch64::exception::TrapFrame;
use crate::arch::aarch64::{cpu, timer};
use crate::config::MAX_CPUS;
use crate::drivers::gic::Controller;
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::platform::Platform;

/// Ticks per second.
pub const TICK_HZ: u64 = 100;

static TICKS: PerCpu<AtomicU64> =
    PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
static INTERVAL: AtomicU64 = AtomicU64::new(0);
static INTID: AtomicU32 = AtomicU32::new(0);
/// Functions run on every tick, in hardirq context (the interrupt-context demos hook in here).
static TICK_HOOK: spin::Once<fn(usize)> = spin::Once::new();
/// Charges each tick to whatever the interrupted code was doing (the process layer's time
/// accounting); told whether the tick interrupted user mode.
static ACCOUNT_HOOK: spin::Once<fn(bool, u64)> = spin::Once::new();

fn on_tick(_intid: u32, frame: &TrapFrame) {
    let me = percpu::this_cpu().id;
    timer::rearm_periodic(INTERVAL.load(Ordering::Relaxed));
    TICKS.for_cpu(me).fetch_add(1, Ordering::Relaxed);
    // RCU: a tick outside any read-side section is a quiescent state; ready callbacks run.
    crate::rcu::rcu_tick(me);
    // The scheduler: wake timed sleepers, end time slices (chapter 16).
    crate::task::tick(me);
    if let Some(account) = ACCOUNT_HOOK.get() {
        account(frame.came_from_user(), INTERVAL.load(Ordering::Relaxed));
    }
    // Watch every CPU for a spin that lasts seconds (the lock validator's watchdog).
    crate::sync::spinlock::validate::watchdog();
    if let Some(hook) = TICK_HOOK.get() {
        hook(me);
    }
}

/// The virtual timer's INTID from the device tree (PPI 11 + 16 = 27 on both boards).
pub fn timer_intid(platform: &Platform<'_>) -> u32 {
    platform.timer.map_or(27, |t| t.virt)
}

/// Register the tick handler (boot CPU, once).
pub fn init(platform: &Platform<'_>) -> Result<(), super::RegisterError> {
    let intid = timer_intid(platform);
    INTID.store(intid, Ordering::Relaxed);
    INTERVAL.store(cpu::counter_frequency() / TICK_HZ, Ordering::Relaxed);
    super::register(intid, "timer", on_tick)
}

/// Start this CPU's tick. Call after the CPU's GIC interface is up.
pub fn start_this_cpu(gic: &Controller) {
    let intid = INTID.load(Ordering::Relaxed);
    // The timer output is a level: asserted until re-armed.
    gic.enable(intid, false, percpu::this_cpu().id);
    timer::arm_in(INTERVAL.load(Ordering::Relaxed));
}

/// Ticks this CPU... or any CPU has seen.
pub fn ticks_on(cpu: usize) -> u64 {
    TICKS.for_cpu(cpu).load(Ordering::Relaxed)
}

/// Run `hook(cpu)` on every tick of every CPU, in hardirq context. One hook, set once.
/// Charge every tick through `hook(from_user, ticks)`, `ticks` being the counter ticks one
/// tick stands for (once; false if a hook was already set). Sampling at the tick, as Linux does
/// by default, keeps the clock out of the system-call path: two counter reads on every entry
/// and exit cost more than the null system call itself under QEMU.
pub fn set_account_hook(hook: fn(bool, u64)) -> bool {
    let mut set = false;
    ACCOUNT_HOOK.call_once(|| {
        set = true;
        hook
    });
    set
}

pub fn set_tick_hook(hook: fn(usize)) -> bool {
    let mut set = false;
    TICK_HOOK.call_once(|| {
        set = true;
        hook
    });
    set
}
