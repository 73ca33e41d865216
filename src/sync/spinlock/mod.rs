//! `SpinLock<T, R>`: data behind a raw spin lock, reached only through an RAII guard
//! (chapter 2 uses it for the console and the heap; chapter 7 explains the raw locks).
//!
//! The raw lock `R` decides how CPUs wait (test-and-set, ticket, queued); `SpinLock` adds what
//! every flavour shares: the guard that unlocks on drop, `try_lock`, and a record of which CPU
//! holds the lock, so a panic on the holder can still print and a deadlock report can name it.

pub mod broken;
pub mod mcs;
pub mod tas;
pub mod ticket;
pub mod ttas;
pub mod validate;

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::panic::Location;
use core::sync::atomic::{AtomicUsize, Ordering};

pub use broken::BrokenLock;
pub use mcs::McsLock;
pub use tas::TasLock;
pub use ticket::TicketLock;
pub use ttas::TtasLock;

use crate::sync::lockdep::LockClass;
use crate::sync::lockstat::{self, Acquire};
use crate::sync::preempt;

/// The algorithm under a `SpinLock`.
///
/// # Safety
/// `lock` and a successful `try_lock` must give mutual exclusion with acquire ordering, and
/// `unlock` must release with release ordering.
pub unsafe trait RawSpinLock {
    /// An unlocked lock.
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self;
    fn lock(&self);
    fn try_lock(&self) -> bool;
    /// # Safety
    /// The caller holds the lock.
    unsafe fn unlock(&self);
    fn is_locked(&self) -> bool;
}

/// The raw lock a `SpinLock` uses unless told otherwise: the ticket lock.
#[cfg(not(loom))]
pub type DefaultRawLock = TicketLock;
/// Under loom the ticket lock is made of loom's atomics, which no `const` can build, but kernel
/// code such as the heap still builds a default `SpinLock` in a `const fn`. Loom checks only
/// its own models, never those kernel locks, so they may use the uninstrumented TAS lock.
#[cfg(loom)]
pub type DefaultRawLock = TasLock;

/// Data of type `T` protected by the raw spin lock `R` (a ticket lock unless chosen otherwise).
pub struct SpinLock<T: ?Sized, R: RawSpinLock = DefaultRawLock> {
    raw: R,
    /// The holder's per-CPU pointer (TPIDR_EL1), or 0 when free or held before per-CPU setup.
    holder: AtomicUsize,
    /// The validator's key: where this lock was constructed (chapter 12). Lock statistics are
    /// kept per class too.
    class: LockClass,
    /// Lock statistics' record of this lock (chapter 9); empty without the `lockstat` feature.
    stat: lockstat::PerLock,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `T` to one CPU at a time, so `T: Send` suffices.
unsafe impl<T: ?Sized + Send, R: RawSpinLock> Sync for SpinLock<T, R> {}
// SAFETY: moving the lock moves the data; `R` holds no thread-affine state.
unsafe impl<T: ?Sized + Send, R: RawSpinLock> Send for SpinLock<T, R> {}

impl<T, R: RawSpinLock> SpinLock<T, R> {
    /// A lock whose validator class is the caller's source location.
    #[track_caller]
    pub const fn new(data: T) -> Self {
        Self::named("", data)
    }

    /// A lock with a name for the validator's reports and the shell's `locks`.
    #[track_caller]
    pub const fn named(name: &'static str, data: T) -> Self {
        SpinLock {
            raw: R::UNLOCKED,
            holder: AtomicUsize::new(0),
            class: LockClass::at(name, Location::caller()),
            stat: lockstat::PerLock::new(),
            data: UnsafeCell::new(data),
        }
    }
}

impl<T: ?Sized, R: RawSpinLock> SpinLock<T, R> {
    fn address(&self) -> usize {
        self as *const Self as *const () as usize
    }

    /// Spin until the lock is ours. With the validator on, it first checks this acquisition
    /// (and panics, with a report, rather than spin on a lock this CPU already holds).
    #[track_caller]
    #[inline]
    pub fn lock(&self) -> SpinLockGuard<'_, T, R> {
        // The validator's work stays out of line: with it off, a lock is the raw lock plus one
        // load and branch, which is what the benchmarks measure.
        // A holder must not be preempted: a task that took the CPU could spin on this lock
        // until the next tick, and the holder's per-CPU state (MCS queue node, the validator's
        // held-lock record, `holder` below) must stay on this CPU. Linux's spin_lock does the
        // same.
        preempt::preempt_disable();
        if validate::active() {
            return self.lock_validated(Location::caller());
        }
        // Lock statistics need to know whether the lock made us wait, so they try first. A
        // constant: without the `lockstat` feature this line is not there at all.
        if lockstat::ENABLED {
            self.raw_lock_counted();
        } else {
            self.raw.lock();
        }
        self.holder
            .store(crate::arch::percpu_pointer(), Ordering::Relaxed);
        SpinLockGuard {
            lock: self,
            tracked: false,
            _not_send: PhantomData,
        }
    }

    /// The raw lock, for lock statistics: a try, and only if it fails the clock and the spin.
    /// Returns whether we waited.
    #[inline]
    fn raw_lock_counted(&self) -> bool {
        if self.raw.try_lock() {
            lockstat::acquired(&self.class, &self.stat, Acquire::UNCONTENDED, false);
            return false;
        }
        let waiting = lockstat::begin_acquire();
        self.raw.lock();
        lockstat::acquired(&self.class, &self.stat, waiting, true);
        true
    }

    #[cold]
    #[inline(never)]
    fn lock_validated(&self, site: &'static Location<'static>) -> SpinLockGuard<'_, T, R> {
        let spin = validate::before_spin(
            &self.class,
            self.address(),
            self.holder.load(Ordering::Relaxed),
            site,
        );
        let tracked = spin.tracked();
        // Find out whether we had to wait (the `locks` statistics, and lock statistics').
        if lockstat::ENABLED {
            if self.raw_lock_counted() && tracked {
                validate::contended(&self.class);
            }
        } else if !tracked || !self.raw.try_lock() {
            if tracked {
                validate::contended(&self.class);
            }
            self.raw.lock();
        }
        validate::after_spin(spin);
        self.holder
            .store(crate::arch::percpu_pointer(), Ordering::Relaxed);
        SpinLockGuard {
            lock: self,
            tracked,
            _not_send: PhantomData,
        }
    }

    /// Take the lock only if it is free right now.
    #[track_caller]
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T, R>> {
        preempt::preempt_disable();
        if self.raw.try_lock() {
            lockstat::acquired(&self.class, &self.stat, Acquire::UNCONTENDED, false);
            self.holder
                .store(crate::arch::percpu_pointer(), Ordering::Relaxed);
            let tracked = validate::active()
                && validate::after_try_lock(&self.class, self.address(), Location::caller());
            Some(SpinLockGuard {
                lock: self,
                tracked,
                _not_send: PhantomData,
            })
        } else {
            preempt::preempt_enable();
            None
        }
    }

    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The lock's class: its validator key and the key of its lock statistics.
    pub fn class(&self) -> &LockClass {
        &self.class
    }

    /// The raw lock underneath, for tests that instrument it.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn raw(&self) -> &R {
        &self.raw
    }

    /// True if the lock is held by the CPU (or host thread) calling this.
    pub fn is_held_by_current_cpu(&self) -> bool {
        let me = crate::arch::percpu_pointer();
        me != 0 && self.raw.is_locked() && self.holder.load(Ordering::Relaxed) == me
    }
}

/// Access to the data while the lock is held; unlocks when dropped.
///
/// Not `Send`: locking changed things that belong to this CPU and this task (the task's preempt
/// count, the lock's `holder`, an MCS node from this CPU's pool, the validator's held-lock
/// record), and only the drop on the same CPU, in the same task, undoes them. So a guard cannot
/// be moved into another task:
///
/// ```compile_fail
/// # use quartet::sync::SpinLock;
/// fn must_be_send<T: Send>(_: &T) {}
/// let lock: SpinLock<u32> = SpinLock::new(0);
/// let guard = lock.lock();
/// must_be_send(&guard); // error: the guard cannot be sent between threads safely
/// ```
///
/// The same lines asking it of the lock and of the data compile, so what the compiler refuses
/// above is the guard itself:
///
/// ```
/// # use quartet::sync::SpinLock;
/// fn must_be_send<T: Send>(_: &T) {}
/// let lock: SpinLock<u32> = SpinLock::new(0);
/// let guard = lock.lock();
/// must_be_send(&lock);
/// must_be_send(&*guard);
/// ```
pub struct SpinLockGuard<'a, T: ?Sized, R: RawSpinLock> {
    lock: &'a SpinLock<T, R>,
    /// The validator recorded this acquisition, so it must hear of the release.
    tracked: bool,
    /// Not `Send` (and so not `Sync` either): the drop must run where the lock was taken.
    _not_send: PhantomData<*const ()>,
}

impl<T: ?Sized, R: RawSpinLock> Deref for SpinLockGuard<'_, T, R> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized, R: RawSpinLock> DerefMut for SpinLockGuard<'_, T, R> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while the lock is held, and is not shared.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized, R: RawSpinLock> Drop for SpinLockGuard<'_, T, R> {
    fn drop(&mut self) {
        if self.tracked {
            validate::before_release(&self.lock.class, self.lock.address());
        }
        lockstat::released(&self.lock.class, &self.lock.stat);
        self.lock.holder.store(0, Ordering::Relaxed);
        // SAFETY: this guard is the proof that we hold the lock.
        unsafe { self.lock.raw.unlock() };
        preempt::preempt_enable();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn guard_unlocks_on_drop_and_try_lock_respects_holders() {
        let lock: SpinLock<u32> = SpinLock::new(5);
        {
            let mut g = lock.lock();
            *g += 1;
            assert!(lock.is_locked());
            assert!(lock.try_lock().is_none(), "try_lock must fail while held");
        }
        assert!(!lock.is_locked());
        assert_eq!(*lock.try_lock().expect("free lock"), 6);
    }

    #[test]
    fn holder_is_the_locking_thread() {
        crate::arch::set_percpu_pointer(0x1000);
        let lock: Arc<SpinLock<()>> = Arc::new(SpinLock::new(()));
        let g = lock.lock();
        assert!(lock.is_held_by_current_cpu());
        let other = Arc::clone(&lock);
        let seen_elsewhere = std::thread::spawn(move || {
            crate::arch::set_percpu_pointer(0x2000);
            other.is_held_by_current_cpu()
        })
        .join()
        .unwrap();
        assert!(!seen_elsewhere);
        drop(g);
        assert!(!lock.is_held_by_current_cpu());
    }

    /// Four threads, each playing a CPU, update two fields that must stay equal.
    fn never_loses_an_update<R: RawSpinLock + Send + Sync + 'static>() {
        let _serial = crate::percpu::playing_cpus();
        const THREADS: usize = 4;
        const ROUNDS: usize = 20_000;
        let lock: Arc<SpinLock<(u64, u64), R>> = Arc::new(SpinLock::new((0, 0)));
        let handles: Vec<_> = (0..THREADS)
            .map(|id| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    crate::percpu::install(id);
                    for _ in 0..ROUNDS {
                        let mut g = lock.lock();
                        assert_eq!(g.0, g.1, "two threads inside the critical section");
                        g.0 += 1;
                        g.1 += 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let total = std::thread::spawn(move || {
            crate::percpu::install(0);
            *lock.lock()
        })
        .join()
        .unwrap();
        assert_eq!(
            total,
            ((THREADS * ROUNDS) as u64, (THREADS * ROUNDS) as u64)
        );
    }

    #[test]
    fn tas_excludes() {
        never_loses_an_update::<TasLock>();
    }

    #[test]
    fn ttas_excludes() {
        never_loses_an_update::<TtasLock>();
    }

    #[test]
    fn ticket_excludes() {
        never_loses_an_update::<TicketLock>();
    }

    #[test]
    fn mcs_excludes() {
        never_loses_an_update::<McsLock>();
    }

    #[test]
    fn mcs_nodes_allow_nesting_and_any_unlock_order() {
        let _serial = crate::percpu::playing_cpus();
        std::thread::spawn(|| {
            crate::percpu::install(2);
            let a: SpinLock<u8, McsLock> = SpinLock::new(1);
            let b: SpinLock<u8, McsLock> = SpinLock::new(2);
            let ga = a.lock();
            let gb = b.lock();
            assert!(b.try_lock().is_none());
            drop(ga); // not the reverse order of locking
            assert_eq!(*a.lock() + *gb, 3);
            drop(gb);
            assert!(!a.is_locked() && !b.is_locked());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn try_lock_fails_while_held_for_every_flavour() {
        fn check<R: RawSpinLock>() {
            let l: SpinLock<(), R> = SpinLock::new(());
            let g = l.try_lock().expect("free");
            assert!(l.try_lock().is_none());
            drop(g);
            assert!(l.try_lock().is_some());
        }
        std::thread::spawn(|| {
            // Playing CPU 1 while `never_loses_an_update`'s threads play CPUs 0-3 would share
            // CPU 1's preempt count between two threads (seen: "preempt count underflow").
            let _serial = crate::percpu::playing_cpus();
            crate::percpu::install(1);
            check::<TasLock>();
            check::<TtasLock>();
            check::<TicketLock>();
            check::<McsLock>();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn threads_never_lose_an_update() {
        const THREADS: usize = 4;
        const ROUNDS: usize = 20_000;
        // Two fields that must stay equal: a torn critical section would split them.
        let lock: Arc<SpinLock<(u64, u64)>> = Arc::new(SpinLock::new((0, 0)));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        let mut g = lock.lock();
                        assert_eq!(g.0, g.1);
                        g.0 += 1;
                        g.1 += 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(
            *lock.lock(),
            ((THREADS * ROUNDS) as u64, (THREADS * ROUNDS) as u64)
        );
    }
}
