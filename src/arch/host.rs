//! The host stand-in for the few CPU operations portable code needs, so that `src/sync`,
//! `src/percpu` and friends run in host unit tests and under loom.
//!
//! A host thread plays a CPU: `set_percpu_pointer` records which per-CPU area it owns.

use std::cell::Cell;
use std::time::Instant;

std::thread_local! {
    static PERCPU_POINTER: Cell<usize> = const { Cell::new(0) };
    static TASK_WORD: Cell<usize> = const { Cell::new(0) };
}

/// The per-CPU area this thread plays, or 0.
pub fn percpu_pointer() -> usize {
    PERCPU_POINTER.with(|p| p.get())
}

/// Make this thread play the CPU whose area is at `area`.
pub fn set_percpu_pointer(area: usize) {
    PERCPU_POINTER.with(|p| p.set(area));
}

/// The task word of this thread (TPIDR_EL0 on the target).
pub fn task_word() -> usize {
    TASK_WORD.with(|p| p.get())
}

pub fn set_task_word(word: usize) {
    TASK_WORD.with(|p| p.set(word));
}

/// A spinning host thread gives its core away: test threads outnumber cores, and a lock holder
/// that lost its core would otherwise wait a whole time slice for spinners to give up.
#[cfg(not(any(loom, feature = "host-bench")))]
pub fn cpu_relax() {
    std::thread::yield_now();
}

/// The host benchmark (tools/bench-host) pins one thread per core, as the kernel runs one flow
/// per CPU, so a spinner waits as on the target: with the spin-loop hint, `YIELD` on AArch64
/// as in src/arch/aarch64/cpu.rs, `PAUSE` on x86. A yield here would measure the host's
/// scheduler instead of the lock. (Its oversubscribed point, two threads a core, shows what
/// such spinning costs when a holder loses its core.)
#[cfg(all(feature = "host-bench", not(loom)))]
#[inline]
pub fn cpu_relax() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a hint instruction; no memory or register effects.
    unsafe {
        core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::hint::spin_loop();
}

/// Under loom a spinning thread must hand the turn to loom's scheduler: loom runs its threads
/// one at a time and would otherwise explore the same spin forever.
#[cfg(loom)]
pub fn cpu_relax() {
    loom::thread::yield_now();
}

/// Waiting for an event is a spin hint on the host.
#[cfg(not(loom))]
pub fn wait_for_event() {
    std::hint::spin_loop();
}

/// Under loom, waiting for an event is a yield, as in `cpu_relax`.
#[cfg(loom)]
pub fn wait_for_event() {
    loom::thread::yield_now();
}

std::thread_local! {
    static EVENTS_SENT: Cell<u64> = const { Cell::new(0) };
}

/// Nothing to wake on the host (waiters spin), but the thread counts its events, so that a
/// test can check that code which must wake CPUs waiting in WFE sends one.
pub fn send_event() {
    EVENTS_SENT.with(|n| n.set(n.get() + 1));
}

/// How many events this thread has sent.
pub fn events_sent() -> u64 {
    EVENTS_SENT.with(|n| n.get())
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// A nanosecond counter standing in for the generic counter.
pub fn counter() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The stand-in counter ticks in nanoseconds.
pub fn counter_frequency() -> u64 {
    1_000_000_000
}

/// The host stand-in for src/arch/aarch64/atomic.rs: the same operations on core atomics.
#[cfg_attr(native_aarch64_sync, allow(dead_code))]
pub mod atomic {
    use core::sync::atomic::{AtomicU64, Ordering};

    /// There is only one implementation on the host.
    pub fn uses_lse() -> bool {
        false
    }
    pub fn fetch_add(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
        p.fetch_add(v, ord)
    }
    pub fn swap(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
        p.swap(v, ord)
    }
    pub fn fetch_or(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
        p.fetch_or(v, ord)
    }
    pub fn fetch_clear(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
        p.fetch_and(!v, ord)
    }
    pub fn fetch_xor(p: &AtomicU64, v: u64, ord: Ordering) -> u64 {
        p.fetch_xor(v, ord)
    }
    pub fn compare_exchange(p: &AtomicU64, expected: u64, new: u64, ord: Ordering) -> u64 {
        let failure = match ord {
            Ordering::Release | Ordering::Relaxed => Ordering::Relaxed,
            _ => Ordering::Acquire,
        };
        match p.compare_exchange(expected, new, ord, failure) {
            Ok(v) | Err(v) => v,
        }
    }
}

/// On the host, waiting for a change is a spin hint: it returns at once, as WFE does under
/// QEMU's multi-threaded TCG, and every caller looks again.
///
/// That hides one kind of bug: a wait on a value that nobody will ever change. On the target
/// such a WFE sleeps until some unrelated event. So a test can ask, for its own thread, for the
/// target's behaviour instead: after `sleep_like_wfe(looks)`, a wait returns only once the word
/// differs from the value it was given, as a WFE that only a store to the word can wake (no
/// interrupt, no SEV, no event stream). A wait that sees no change in `looks` looks panics.
#[cfg_attr(native_aarch64_sync, allow(dead_code))]
pub mod wait {
    use core::fmt::LowerHex;
    use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, Ordering};
    use std::cell::Cell;

    std::thread_local! {
        static WFE_LOOKS: Cell<Option<u32>> = const { Cell::new(None) };
    }

    /// From now on, on this thread, waits return only when the word changes (see above).
    pub fn sleep_like_wfe(looks: u32) {
        WFE_LOOKS.with(|l| l.set(Some(looks)));
    }

    fn wait<V: PartialEq + Copy + LowerHex>(name: &str, load: impl Fn() -> V, old: V) {
        let Some(looks) = WFE_LOOKS.with(|l| l.get()) else {
            return super::cpu_relax();
        };
        for _ in 0..looks {
            if load() != old {
                return;
            }
            super::cpu_relax();
        }
        panic!(
            "{name}: the word stayed {old:#x} for {looks} looks; nothing else wakes this wait, so \
             on the target the CPU sleeps in WFE until some unrelated event"
        );
    }

    pub fn wait_while_u8(p: &AtomicU8, old: u8) {
        wait("wait_while_u8", || p.load(Ordering::Relaxed), old)
    }
    pub fn wait_while_u16(p: &AtomicU16, old: u16) {
        wait("wait_while_u16", || p.load(Ordering::Relaxed), old)
    }
    pub fn wait_while_u32(p: &AtomicU32, old: u32) {
        wait("wait_while_u32", || p.load(Ordering::Relaxed), old)
    }
}

/// The host stand-in for src/arch/aarch64/irqflags.rs: each thread (playing a CPU) has its own
/// "IRQs masked" bit, so the nesting logic above it is unit-tested.
pub mod irqflags {
    use std::cell::Cell;

    std::thread_local! {
        static MASKED: Cell<bool> = const { Cell::new(false) };
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[must_use = "an IRQ state saved and never restored leaves IRQs masked"]
    pub struct IrqFlags(bool);

    impl IrqFlags {
        pub fn irqs_were_enabled(self) -> bool {
            !self.0
        }
    }

    pub fn local_irq_enable() {
        MASKED.with(|m| m.set(false));
    }
    pub fn local_irq_disable() {
        MASKED.with(|m| m.set(true));
    }
    pub fn irqs_disabled() -> bool {
        MASKED.with(|m| m.get())
    }
    pub fn local_irq_save() -> IrqFlags {
        let flags = IrqFlags(irqs_disabled());
        local_irq_disable();
        flags
    }
    pub fn local_irq_restore(flags: IrqFlags) {
        MASKED.with(|m| m.set(flags.0));
    }
    pub fn wait_for_interrupt() {
        std::thread::yield_now();
    }
}
