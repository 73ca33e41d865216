//! Interrupts: who handles which INTID, the path from the exception vector to the handler,
//! and per-CPU counts of what arrived (the GIC and interrupt-context chapters).
//!
//! The vector (src/arch/aarch64/exception.rs) calls `handle_irq`, which acknowledges the
//! interrupt at the GIC, enters hardirq context (src/sync/preempt.rs), runs the registered
//! handler, leaves hardirq context and signals end-of-interrupt. Handlers run with IRQs masked
//! (the CPU masks them on exception entry and quartet does not unmask inside handlers), so one
//! handler never interrupts another on the same CPU.

/// The preempt count lives with the locks that consult it (src/sync/preempt.rs).
pub use crate::sync::preempt as count;
#[cfg(target_os = "none")]
pub mod tick;

#[cfg(target_os = "none")]
pub use kernel::*;

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use super::count;
    use crate::arch::aarch64::exception::{self, TrapFrame};
    use crate::config::MAX_CPUS;
    use crate::drivers::gic::{self, Controller};
    use crate::percpu::{self, CacheAligned, PerCpu};

    /// A handler runs in hardirq context with IRQs masked; it gets the INTID and the frame of
    /// the interrupted code (the stop IPI records the interrupted PC from it).
    pub type Handler = fn(intid: u32, frame: &TrapFrame);

    /// Handlers quartet can register at once.
    pub const MAX_HANDLERS: usize = 24;
    const FREE: u32 = u32::MAX;

    struct Slot {
        intid: AtomicU32,
        name: spin::Once<&'static str>,
        handler: spin::Once<Handler>,
        counts: PerCpu<AtomicU64>,
    }

    static SLOTS: [Slot; MAX_HANDLERS] = [const {
        Slot {
            intid: AtomicU32::new(FREE),
            name: spin::Once::new(),
            handler: spin::Once::new(),
            counts: PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]),
        }
    }; MAX_HANDLERS];

    static SPURIOUS: PerCpu<AtomicU64> =
        PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
    static UNHANDLED: PerCpu<AtomicU64> =
        PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
    static TOTAL: PerCpu<AtomicU64> =
        PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);

    /// Why a handler could not be registered.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum RegisterError {
        AlreadyRegistered { intid: u32 },
        TableFull,
    }

    impl core::fmt::Display for RegisterError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                RegisterError::AlreadyRegistered { intid } => {
                    write!(f, "INTID {intid} already has a handler")
                }
                RegisterError::TableFull => {
                    write!(f, "all {MAX_HANDLERS} interrupt handler slots are taken")
                }
            }
        }
    }

    /// Attach `handler` to `intid`. Register before enabling the interrupt at the GIC. An
    /// SGI or PPI is registered once and then enabled by each CPU for itself.
    pub fn register(intid: u32, name: &'static str, handler: Handler) -> Result<(), RegisterError> {
        for slot in &SLOTS {
            if slot.intid.load(Ordering::Acquire) == intid {
                return Err(RegisterError::AlreadyRegistered { intid });
            }
        }
        for slot in &SLOTS {
            if slot.handler.get().is_none() {
                let mut won = false;
                slot.handler.call_once(|| {
                    won = true;
                    handler
                });
                if won {
                    slot.name.call_once(|| name);
                    // Published last, with release: dispatch finds the slot only once its
                    // handler and name are in place.
                    slot.intid.store(intid, Ordering::Release);
                    return Ok(());
                }
            }
        }
        Err(RegisterError::TableFull)
    }

    fn slot_of(intid: u32) -> Option<&'static Slot> {
        SLOTS
            .iter()
            .find(|s| s.intid.load(Ordering::Acquire) == intid)
    }

    /// The exception vector's IRQ entry point.
    fn handle_irq(frame: &TrapFrame) {
        let Some(gic) = gic::get() else {
            return;
        };
        let me = percpu::this_cpu().id;
        // Take every pending interrupt before returning: one exception, several handlers.
        // Nothing to acknowledge on the first round means a spurious interrupt: signalled, then
        // withdrawn before we could take it (handle_irq_entry counts those).
        while let Some(ack) = gic.acknowledge() {
            TOTAL.for_cpu(me).fetch_add(1, Ordering::Relaxed);
            count::irq_enter();
            match slot_of(ack.intid) {
                Some(slot) => {
                    slot.counts.for_cpu(me).fetch_add(1, Ordering::Relaxed);
                    if let Some(handler) = slot.handler.get() {
                        handler(ack.intid, frame);
                    }
                }
                None => {
                    UNHANDLED.for_cpu(me).fetch_add(1, Ordering::Relaxed);
                }
            }
            count::irq_exit();
            gic.end_of_interrupt(ack);
        }
    }

    fn handle_irq_entry(frame: &mut TrapFrame) {
        let before = TOTAL.for_cpu(percpu::this_cpu().id).load(Ordering::Relaxed);
        handle_irq(frame);
        let me = percpu::this_cpu().id;
        if TOTAL.for_cpu(me).load(Ordering::Relaxed) == before {
            SPURIOUS.for_cpu(me).fetch_add(1, Ordering::Relaxed);
        }
        // Handlers done and acknowledged: the interrupted task may be preempted here, its
        // registers saved in `frame` on its own stack until it is switched back to.
        crate::task::preempt_on_irq_exit();
    }

    /// Set up the interrupt path on the boot CPU: the GIC's distributor and the vector hook.
    pub fn init(
        platform: &crate::platform::Platform<'_>,
    ) -> Result<&'static Controller, &'static str> {
        let gic = gic::init(platform)?;
        exception::set_irq_handler(handle_irq_entry);
        Ok(gic)
    }

    /// Per-CPU counts of one INTID (registered ones only).
    pub fn count_on(intid: u32, cpu: usize) -> u64 {
        slot_of(intid).map_or(0, |s| s.counts.for_cpu(cpu).load(Ordering::Relaxed))
    }

    /// Every registered interrupt: (INTID, name), in registration order.
    pub fn registered() -> impl Iterator<Item = (u32, &'static str)> {
        SLOTS.iter().filter_map(|s| {
            let intid = s.intid.load(Ordering::Acquire);
            (intid != FREE).then(|| (intid, s.name.get().copied().unwrap_or("?")))
        })
    }

    pub fn spurious_on(cpu: usize) -> u64 {
        SPURIOUS.for_cpu(cpu).load(Ordering::Relaxed)
    }

    pub fn unhandled_on(cpu: usize) -> u64 {
        UNHANDLED.for_cpu(cpu).load(Ordering::Relaxed)
    }

    pub fn total_on(cpu: usize) -> u64 {
        TOTAL.for_cpu(cpu).load(Ordering::Relaxed)
    }
}
