//! The RCU interface the torture test and the loom models drive, and a deliberately broken RCU
//! that must fail them (chapter 18, "RCU").
//!
//! [`RcuFlavor`] is the little that a test needs: read-side sections on a CPU, waiting for a
//! grace period, deferring a callback, and the tick. [`Rcu`] implements it for real.
//! [`BrokenRcu`] has the same readers and ticks but a `synchronize` that returns at once and a
//! `call_rcu` that runs the callback at once, the classic bug of freeing before the readers are
//! done. A test that passes with it proves nothing; the torture test and the loom models must
//! catch it, and the unit tests check that they do.

use super::{Rcu, RcuCallback, RcuHead};

/// What RCU tests need from an RCU. Every `cpu` is the calling CPU.
pub trait RcuFlavor: Sync {
    fn name(&self) -> &'static str;
    /// `cpu` takes part in grace periods.
    fn cpu_online(&self, cpu: usize);
    /// `cpu` stops taking part (it runs no more readers).
    fn cpu_offline(&self, cpu: usize);
    fn read_lock(&self, cpu: usize);
    fn read_unlock(&self, cpu: usize);
    /// Wait for a grace period.
    fn synchronize(&self, cpu: usize);
    /// Run `func(head)` after a grace period.
    ///
    /// # Safety
    /// As for [`Rcu::call_rcu_on`].
    unsafe fn call_rcu(&self, cpu: usize, head: &RcuHead, func: RcuCallback);
    /// What the kernel's tick does on `cpu`: a quiescent state if not reading, then ready
    /// callbacks.
    fn tick(&self, cpu: usize);
    /// Grace periods completed.
    fn completed(&self) -> u64;
}

impl RcuFlavor for Rcu {
    fn name(&self) -> &'static str {
        "rcu"
    }
    fn cpu_online(&self, cpu: usize) {
        Rcu::cpu_online(self, cpu);
    }
    fn cpu_offline(&self, cpu: usize) {
        Rcu::cpu_offline(self, cpu);
    }
    fn read_lock(&self, cpu: usize) {
        self.raw_read_lock(cpu);
    }
    fn read_unlock(&self, cpu: usize) {
        self.raw_read_unlock(cpu);
    }
    fn synchronize(&self, cpu: usize) {
        self.synchronize_on(Some(cpu));
    }
    unsafe fn call_rcu(&self, cpu: usize, head: &RcuHead, func: RcuCallback) {
        // SAFETY: forwarded contract.
        unsafe { self.call_rcu_on(cpu, head, func) }
    }
    fn tick(&self, cpu: usize) {
        Rcu::tick(self, cpu);
    }
    fn completed(&self) -> u64 {
        Rcu::completed(self)
    }
}

/// An RCU whose grace periods are empty: never use it outside the tests that must catch it.
pub struct BrokenRcu {
    inner: Rcu,
}

impl Default for BrokenRcu {
    fn default() -> Self {
        Self::new()
    }
}

impl BrokenRcu {
    crate::sync::shim::const_unless_loom! {
        pub const fn new() -> Self {
            BrokenRcu { inner: Rcu::new() }
        }
    }
}

impl RcuFlavor for BrokenRcu {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn cpu_online(&self, cpu: usize) {
        self.inner.cpu_online(cpu);
    }
    fn cpu_offline(&self, cpu: usize) {
        self.inner.cpu_offline(cpu);
    }
    fn read_lock(&self, cpu: usize) {
        self.inner.raw_read_lock(cpu);
    }
    fn read_unlock(&self, cpu: usize) {
        self.inner.raw_read_unlock(cpu);
    }
    /// The bug: no waiting for readers at all.
    fn synchronize(&self, _cpu: usize) {}
    /// The same bug, deferred: the "grace period" is over before it began.
    unsafe fn call_rcu(&self, _cpu: usize, head: &RcuHead, func: RcuCallback) {
        // SAFETY: deliberately unsound timing (readers may still hold the object); memory
        // safety is the caller's: the torture test only recycles objects from a pool that
        // lives for the whole run, so an early callback is wrong but never a use after free.
        unsafe { func(head as *const RcuHead as *mut RcuHead) }
    }
    fn tick(&self, cpu: usize) {
        self.inner.tick(cpu);
    }
    fn completed(&self) -> u64 {
        self.inner.completed()
    }
}

/// A shared reference drives the same RCU (the kernel passes `&'static Rcu`).
impl<R: RcuFlavor + ?Sized> RcuFlavor for &R {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn cpu_online(&self, cpu: usize) {
        (**self).cpu_online(cpu)
    }
    fn cpu_offline(&self, cpu: usize) {
        (**self).cpu_offline(cpu)
    }
    fn read_lock(&self, cpu: usize) {
        (**self).read_lock(cpu)
    }
    fn read_unlock(&self, cpu: usize) {
        (**self).read_unlock(cpu)
    }
    fn synchronize(&self, cpu: usize) {
        (**self).synchronize(cpu)
    }
    unsafe fn call_rcu(&self, cpu: usize, head: &RcuHead, func: RcuCallback) {
        // SAFETY: forwarded contract.
        unsafe { (**self).call_rcu(cpu, head, func) }
    }
    fn tick(&self, cpu: usize) {
        (**self).tick(cpu)
    }
    fn completed(&self) -> u64 {
        (**self).completed()
    }
}
