//! Interrupt-safe locking: disabling interrupts that nests, and the spin lock that uses it
//! (the interrupt-context chapter).
//!
//! `local_irq_save`/`local_irq_restore` (src/arch/aarch64/irqflags.rs) nest by themselves: each
//! caller keeps the state it found. When disabling and enabling happen in different functions,
//! as when a lock's guard re-enables on drop, a per-CPU count does the same job, as xv6's
//! `push_off`/`pop_off`: the first `push_off` remembers whether IRQs were on, every `push_off`
//! counts, and only the `pop_off` that brings the count back to zero restores that state.
//! Disabling twice and enabling once therefore leaves IRQs off, as it must.
//!
//! `IrqSafeSpinLock` says its policy in its type: its guard disables IRQs on this CPU before
//! spinning and re-enables them (if they were on) after unlocking. Data that an interrupt
//! handler also touches must live behind one, or the source texts' deadlock follows: code holding a
//! plain lock is interrupted on the same CPU by a handler that spins on that lock forever.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use core::ops::{Deref, DerefMut};

use super::spinlock::{DefaultRawLock, RawSpinLock, SpinLock, SpinLockGuard};
use crate::arch::irqflags;
use crate::config::MAX_CPUS;
use crate::percpu::{self, CacheAligned, PerCpu};

struct Nesting {
    depth: AtomicU32,
    /// IRQs were enabled before the outermost `push_off`.
    outer_enabled: AtomicBool,
}

static NESTING: PerCpu<Nesting> = PerCpu::new(
    [const {
        CacheAligned(Nesting {
            depth: AtomicU32::new(0),
            outer_enabled: AtomicBool::new(false),
        })
    }; MAX_CPUS],
);

// lab:irqsafe begin
/// Disable IRQs on this CPU, counting.
pub fn push_off() {
    let flags = irqflags::local_irq_save();
    // IRQs are off from here: nothing else on this CPU touches its nesting record now.
    let Some(id) = percpu::current_id() else {
        return; // before per-CPU setup only one CPU runs and nothing nests
    };
    let n = NESTING.for_cpu(id);
    let depth = n.depth.load(Ordering::Relaxed);
    if depth == 0 {
        n.outer_enabled
            .store(flags.irqs_were_enabled(), Ordering::Relaxed);
    }
    n.depth.store(depth + 1, Ordering::Relaxed);
}

/// Undo one `push_off`; re-enable IRQs only when the outermost one is undone and they were on
/// before it.
///
/// # Panics
/// Without a matching `push_off`, or with IRQs found enabled inside a push_off section (someone
/// re-enabled behind the count's back): both are bugs that would otherwise show up as a rare
/// deadlock much later.
pub fn pop_off() {
    let Some(id) = percpu::current_id() else {
        return;
    };
    assert!(
        irqflags::irqs_disabled(),
        "pop_off with IRQs enabled on cpu{id}: something re-enabled them inside a push_off section"
    );
    let n = NESTING.for_cpu(id);
    let depth = n.depth.load(Ordering::Relaxed);
    assert!(depth > 0, "pop_off without push_off on cpu{id}");
    n.depth.store(depth - 1, Ordering::Relaxed);
    if depth == 1 && n.outer_enabled.load(Ordering::Relaxed) {
        irqflags::local_irq_enable();
    }
}
// lab:irqsafe end

/// How deep this CPU's push_off nesting is.
///
/// Finding "this CPU" and reading its record are two steps. With IRQs on, a tick between them
/// can preempt the task and move it, and it would then read the record of the CPU it left,
/// which may be inside a push_off section of another task's at that moment. So the read runs
/// with IRQs masked. (This was a real bug: a task moving to CPU 0 under the leader strategy
/// was told, rarely, that it could not switch because of an IRQ-disable depth of 1.)
pub fn depth() -> u32 {
    let read =
        || percpu::current_id().map_or(0, |id| NESTING.for_cpu(id).depth.load(Ordering::Relaxed));
    if irqflags::irqs_disabled() {
        return read();
    }
    let flags = irqflags::local_irq_save();
    let depth = read();
    irqflags::local_irq_restore(flags);
    depth
}

/// A spin lock whose holders run with IRQs disabled on their CPU.
pub struct IrqSafeSpinLock<T: ?Sized, R: RawSpinLock = DefaultRawLock> {
    inner: SpinLock<T, R>,
}

impl<T, R: RawSpinLock> IrqSafeSpinLock<T, R> {
    #[track_caller]
    pub const fn new(value: T) -> Self {
        IrqSafeSpinLock {
            inner: SpinLock::new(value),
        }
    }

    /// A named lock (the name appears in validator reports and the shell's `locks`).
    #[track_caller]
    pub const fn named(name: &'static str, value: T) -> Self {
        IrqSafeSpinLock {
            inner: SpinLock::named(name, value),
        }
    }
}

impl<T: ?Sized, R: RawSpinLock> IrqSafeSpinLock<T, R> {
    /// Disable IRQs on this CPU, then take the lock.
    #[track_caller]
    pub fn lock(&self) -> IrqSafeGuard<'_, T, R> {
        push_off();
        IrqSafeGuard {
            guard: core::mem::ManuallyDrop::new(self.inner.lock()),
        }
    }

    #[track_caller]
    pub fn try_lock(&self) -> Option<IrqSafeGuard<'_, T, R>> {
        push_off();
        match self.inner.try_lock() {
            Some(guard) => Some(IrqSafeGuard {
                guard: core::mem::ManuallyDrop::new(guard),
            }),
            None => {
                pop_off();
                None
            }
        }
    }

    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    pub fn is_held_by_current_cpu(&self) -> bool {
        self.inner.is_held_by_current_cpu()
    }
}

/// Unlocks, then restores this CPU's IRQ state, in that order: re-enabling first would let an
/// interrupt in while the lock is still held, the very deadlock the type exists to prevent.
///
/// Not `Send`, like the `SpinLockGuard` inside it, and for one more reason: dropped on another
/// CPU it would pop that CPU's IRQ nesting and leave this one's IRQs masked.
///
/// ```compile_fail
/// # use quartet::sync::IrqSafeSpinLock;
/// fn must_be_send<T: Send>(_: &T) {}
/// let lock: IrqSafeSpinLock<u32> = IrqSafeSpinLock::new(0);
/// let guard = lock.lock();
/// must_be_send(&guard); // error: the guard cannot be sent between threads safely
/// ```
///
/// ```
/// # use quartet::sync::IrqSafeSpinLock;
/// fn must_be_send<T: Send>(_: &T) {}
/// let lock: IrqSafeSpinLock<u32> = IrqSafeSpinLock::new(0);
/// let guard = lock.lock();
/// must_be_send(&lock); // the lock and the data may move; only the guard may not
/// must_be_send(&*guard);
/// ```
pub struct IrqSafeGuard<'a, T: ?Sized, R: RawSpinLock> {
    /// Not `Send` because this is not.
    guard: core::mem::ManuallyDrop<SpinLockGuard<'a, T, R>>,
}

impl<T: ?Sized, R: RawSpinLock> Deref for IrqSafeGuard<'_, T, R> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized, R: RawSpinLock> DerefMut for IrqSafeGuard<'_, T, R> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: ?Sized, R: RawSpinLock> Drop for IrqSafeGuard<'_, T, R> {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here; the field is never used again.
        unsafe { core::mem::ManuallyDrop::drop(&mut self.guard) };
        pop_off();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn as_cpu(id: usize, f: impl FnOnce() + Send + 'static) {
        let _cpus = crate::percpu::playing_cpus();
        std::thread::spawn(move || {
            percpu::install(id);
            f()
        })
        .join()
        .unwrap();
    }

    #[test]
    fn twice_off_once_on_stays_off() {
        as_cpu(1, || {
            irqflags::local_irq_enable();
            push_off();
            push_off();
            pop_off();
            assert!(
                irqflags::irqs_disabled(),
                "one pop of two must not re-enable"
            );
            pop_off();
            assert!(
                !irqflags::irqs_disabled(),
                "the outermost pop restores 'enabled'"
            );
            assert_eq!(depth(), 0);
        });
    }

    #[test]
    fn outer_state_disabled_is_kept_disabled() {
        as_cpu(2, || {
            irqflags::local_irq_disable();
            push_off();
            pop_off();
            assert!(
                irqflags::irqs_disabled(),
                "IRQs were off before: they stay off"
            );
        });
    }

    #[test]
    fn save_restore_pairs_nest() {
        as_cpu(3, || {
            irqflags::local_irq_enable();
            let outer = irqflags::local_irq_save();
            let inner = irqflags::local_irq_save();
            irqflags::local_irq_restore(inner);
            assert!(irqflags::irqs_disabled());
            irqflags::local_irq_restore(outer);
            assert!(!irqflags::irqs_disabled());
        });
    }

    #[test]
    fn irq_safe_lock_holds_irqs_off_and_restores_after_unlock() {
        as_cpu(5, || {
            irqflags::local_irq_enable();
            let lock: IrqSafeSpinLock<u32> = IrqSafeSpinLock::new(1);
            {
                let mut g = lock.lock();
                *g += 1;
                assert!(irqflags::irqs_disabled(), "held: IRQs off");
                let inner: IrqSafeSpinLock<u32> = IrqSafeSpinLock::new(0);
                drop(inner.lock());
                assert!(
                    irqflags::irqs_disabled(),
                    "a nested lock's unlock must not re-enable"
                );
            }
            assert!(!irqflags::irqs_disabled(), "released: IRQs back on");
            assert_eq!(*lock.lock(), 2);
            assert!(lock.try_lock().is_some());
            let held = lock.lock();
            assert!(lock.try_lock().is_none());
            drop(held);
            assert!(!irqflags::irqs_disabled(), "a failed try_lock restores too");
        });
    }

    #[test]
    #[should_panic(expected = "pop_off without push_off")]
    fn unmatched_pop_is_caught() {
        let _cpus = crate::percpu::playing_cpus();
        percpu::install(4);
        irqflags::local_irq_disable();
        pop_off();
    }
}
