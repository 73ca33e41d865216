//! The RCU a process list runs on (chapter 18, "RCU").
//!
//! The list is generic over [`ListRcu`]: the kernel's list uses [`GlobalRcu`] (the one
//! `rcu::global()` domain, whose tick and idle loop report quiescent states); tests plug in
//! their own [`Rcu`] (host unit tests, threads playing CPUs) or a
//! [`BrokenRcu`](crate::rcu::BrokenRcu), whose grace periods end at once and which the poison
//! check must catch (src/task/proclist/poison.rs).

use crate::rcu::{self, BrokenRcu, Rcu, RcuCallback, RcuFlavor, RcuHead, RcuReadGuard};

/// What a process list needs from an RCU beyond [`RcuFlavor`]: a guard for its readers (the
/// list's iterator borrows one), a check that a guard belongs here, and `rcu_barrier`.
pub trait ListRcu: RcuFlavor {
    /// Enter a read-side section on `cpu`, the calling CPU, which the caller cannot leave (a
    /// CPU's own flow, or preemption off). `None`: on whichever CPU the caller is on, found
    /// with preemption already off (`rcu_read_lock`), for callers that may be moved.
    fn read_guard(&self, cpu: Option<usize>) -> RcuReadGuard<'_>;
    /// True if `cpu` is inside a read-side section of this RCU (a sanity check on guards).
    fn in_reader(&self, cpu: usize) -> bool;
    /// Wait until every callback queued before the call has run (`rcu_barrier`); meanwhile the
    /// waiter reports quiescent states and runs callbacks for `cpu` (a CPU it cannot leave),
    /// or, with `None`, for whichever CPU it is on at each moment.
    fn callbacks_barrier(&self, cpu: Option<usize>);
}

impl ListRcu for Rcu {
    fn read_guard(&self, cpu: Option<usize>) -> RcuReadGuard<'_> {
        match cpu {
            Some(cpu) => self.read_lock_on(cpu),
            None => self.read_lock(),
        }
    }
    fn in_reader(&self, cpu: usize) -> bool {
        self.nesting(cpu) > 0
    }
    fn callbacks_barrier(&self, cpu: Option<usize>) {
        match cpu {
            Some(_) => self.barrier_on(cpu),
            None => self.barrier(),
        }
    }
}

impl<R: ListRcu + ?Sized> ListRcu for &R {
    fn read_guard(&self, cpu: Option<usize>) -> RcuReadGuard<'_> {
        (**self).read_guard(cpu)
    }
    fn in_reader(&self, cpu: usize) -> bool {
        (**self).in_reader(cpu)
    }
    fn callbacks_barrier(&self, cpu: Option<usize>) {
        (**self).callbacks_barrier(cpu)
    }
}

/// The kernel's RCU domain (`rcu::global()`) as a zero-sized flavour, so that a list on it can
/// be built in a `static` (`ProcessList::new(GlobalRcu)`).
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalRcu;

impl RcuFlavor for GlobalRcu {
    fn name(&self) -> &'static str {
        "rcu"
    }
    fn cpu_online(&self, cpu: usize) {
        rcu::global().cpu_online(cpu);
    }
    fn cpu_offline(&self, cpu: usize) {
        rcu::global().cpu_offline(cpu);
    }
    fn read_lock(&self, cpu: usize) {
        rcu::global().raw_read_lock(cpu);
    }
    fn read_unlock(&self, cpu: usize) {
        rcu::global().raw_read_unlock(cpu);
    }
    fn synchronize(&self, cpu: usize) {
        rcu::global().synchronize_on(Some(cpu));
    }
    unsafe fn call_rcu(&self, cpu: usize, head: &RcuHead, func: RcuCallback) {
        // SAFETY: forwarded contract.
        unsafe { rcu::global().call_rcu_on(cpu, head, func) }
    }
    fn tick(&self, cpu: usize) {
        rcu::global().tick(cpu);
    }
    fn completed(&self) -> u64 {
        rcu::global().completed()
    }
}

impl ListRcu for GlobalRcu {
    fn read_guard(&self, cpu: Option<usize>) -> RcuReadGuard<'_> {
        rcu::global().read_guard(cpu)
    }
    fn in_reader(&self, cpu: usize) -> bool {
        rcu::global().in_reader(cpu)
    }
    fn callbacks_barrier(&self, cpu: Option<usize>) {
        rcu::global().callbacks_barrier(cpu);
    }
}

/// Where readers of a list on the broken RCU count themselves. `BrokenRcu` keeps its own
/// `Rcu` private, and its grace periods wait for nobody anyway, so which counter marks its
/// readers cannot change what it does; this one only lends them guards.
static BROKEN_READERS: Rcu = Rcu::new();

impl ListRcu for BrokenRcu {
    fn read_guard(&self, cpu: Option<usize>) -> RcuReadGuard<'_> {
        BROKEN_READERS.read_guard(cpu)
    }
    fn in_reader(&self, cpu: usize) -> bool {
        BROKEN_READERS.in_reader(cpu)
    }
    /// Its `call_rcu` runs each callback at once: nothing is ever left to wait for.
    fn callbacks_barrier(&self, _cpu: Option<usize>) {}
}
