//! Read-copy update: readers that never wait, writers that wait for them to be done
//! (chapter 18, "RCU").
//!
//! A reader brackets its use of shared data with `rcu_read_lock` / `rcu_read_unlock`: no lock
//! word, no atomic read-modify-write, nothing another CPU has to see; just a per-CPU count
//! (and preemption off, so the reader never blocks or gets switched away). A writer never
//! changes an object readers may hold: it copies it, changes the copy, publishes the copy with
//! one release store, and frees the old object only after a *grace period*: once every CPU
//! has passed a *quiescent state* (a moment outside any reader: a tick that did not interrupt
//! a reader, the idle loop, a context switch), no reader can still hold it.
//!
//! One file per mechanism:
//! - `gp`: readers, quiescent states, grace periods, `synchronize` ([`Rcu`]).
//! - `callback`: `call_rcu` with per-CPU intrusive callback lists, `rcu_barrier`.
//! - `pointer`: [`RcuPointer`], publish and read one object.
//! - `list`: [`RcuList`], an intrusive list with add / delete / replace and lock-free readers.
//! - `flavor`: [`RcuFlavor`], the interface tests drive, and [`BrokenRcu`], which must fail.
//! - `torture`: the rcutorture-style [`Torture`] test and its `Reader Pipe:` histogram.
//!
//! Everything is portable: the host unit tests run it on threads playing CPUs (each names its
//! CPU: `read_lock_on(cpu)`, `synchronize_on(Some(cpu))`, `tick(cpu)`), loom checks the
//! reader-versus-free ordering of `synchronize`, of `call_rcu` and of list publication
//! (`make loom`; models at the bottom of gp.rs, callback.rs and list.rs, each with a broken
//! variant that must be caught), and the kernel runs the same code on its CPUs.
//!
//! # Integrating into the kernel
//! The kernel has one RCU domain, [`global()`], and reaches it through the functions below.
//! Nothing runs by itself: RCU only learns about quiescent states from these calls.
//! 1. **Boot, on every CPU** (the boot CPU and each secondary, after `percpu::install` and
//!    before it runs any reader): `rcu::cpu_online(id)`.
//! 2. **Boot, once, when the timer works**: `rcu::set_wait_hook(f)` with a `fn()` that passes
//!    time cheaply, e.g. one that executes WFI with IRQs enabled (the tick wakes it). Later,
//!    with a scheduler, a hook that sleeps. Without it, waiters spin with `cpu_relax`.
//! 3. **Timer tick, on each CPU, in the handler**: `rcu::rcu_tick(id)`. It reports a
//!    quiescent state unless the tick interrupted a reader (it checks the nesting count
//!    itself), and runs that CPU's ready `call_rcu` callbacks in IRQ context, unless it
//!    interrupted a flow of the same CPU that is running them (callbacks never nest).
//! 4. **Idle loop, before each WFI**: `rcu::rcu_idle(id)`. It runs ready callbacks too, with
//!    preemption off, so callbacks must never sleep, wherever they run.
//! 5. **Context switch (once the scheduler exists), before switching**:
//!    `rcu::rcu_context_switch(id)`. It panics if the outgoing task is inside a reader.
//!    Preemption must respect the preempt count, which `rcu_read_lock` raises.
//!
//! Then writers use `synchronize_rcu()` (process context, never inside a reader) or
//! `call_rcu(&obj.head, f)`, and `rcu_barrier()` before anything the callbacks use goes away.
//! The torture test runs in the kernel as
//! `let t = Torture::new(rcu::global(), ncpus, N);` then `t.run_cpu(id)` on every CPU
//! (`smp::on_each_cpu`), then `t.report()`; the same with a `BrokenRcu` must fail.

mod callback;
mod flavor;
mod gp;
mod list;
mod pointer;
pub mod torture;

pub use callback::{RcuCallback, RcuHead};
pub use flavor::{BrokenRcu, RcuFlavor};
pub use gp::{CPUS_PER_LEAF, LEAVES, Rcu, RcuReadGuard};
pub use list::{Iter, RcuLink, RcuList, RcuListed};
pub use pointer::RcuPointer;
pub use torture::{PIPE_LEN, Torture, TortureReport};

/// The kernel's RCU domain. Under loom there is none: loom's atomics cannot live in a static.
#[cfg(not(loom))]
static RCU: Rcu = Rcu::new();

/// The kernel's RCU domain, for code (such as the torture test) that takes an `&Rcu`.
#[cfg(not(loom))]
pub fn global() -> &'static Rcu {
    &RCU
}

/// Enter a read-side critical section on this CPU. End it with `rcu_read_unlock(guard)` or
/// by dropping the guard; references read through it cannot outlive it.
#[cfg(not(loom))]
#[inline]
pub fn rcu_read_lock() -> RcuReadGuard<'static> {
    RCU.read_lock()
}

/// End the read-side critical section `guard` began.
#[cfg(not(loom))]
pub fn rcu_read_unlock(guard: RcuReadGuard<'static>) {
    drop(guard);
}

/// Wait until every reader that might have seen what the caller unpublished has finished.
///
/// # Panics
/// Inside a read-side critical section.
#[cfg(not(loom))]
pub fn synchronize_rcu() {
    RCU.synchronize();
}

/// Run `func(head)` on this CPU once a grace period has passed.
///
/// # Safety
/// As for [`Rcu::call_rcu_on`]: `head` stays valid and untouched until `func` runs.
#[cfg(not(loom))]
pub unsafe fn call_rcu(head: &RcuHead, func: RcuCallback) {
    // SAFETY: forwarded contract.
    unsafe { RCU.call_rcu(head, func) }
}

/// Wait until every callback queued before this call has run.
#[cfg(not(loom))]
pub fn rcu_barrier() {
    RCU.barrier();
}

/// Boot: CPU `cpu` takes part in grace periods (call on that CPU before its first reader).
#[cfg(not(loom))]
pub fn cpu_online(cpu: usize) {
    RCU.cpu_online(cpu);
}

/// Boot: how CPUs wait in `synchronize_rcu` and `rcu_barrier` (WFI, later sleeping).
#[cfg(not(loom))]
pub fn set_wait_hook(hook: fn()) {
    RCU.set_wait_hook(hook);
}

/// The timer tick on `cpu`.
#[cfg(not(loom))]
pub fn rcu_tick(cpu: usize) {
    RCU.tick(cpu);
}

/// The idle loop on `cpu`, before WFI.
#[cfg(not(loom))]
pub fn rcu_idle(cpu: usize) {
    RCU.idle(cpu);
}

/// A context switch on `cpu`.
#[cfg(not(loom))]
pub fn rcu_context_switch(cpu: usize) {
    RCU.context_switch(cpu);
}
