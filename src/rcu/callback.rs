//! `call_rcu`: free later instead of waiting now (chapter 18, "RCU").
//!
//! `synchronize` makes the writer wait a whole grace period. Often the writer only needs the
//! old object freed *eventually*: it embeds an [`RcuHead`] in the object and calls
//! [`Rcu::call_rcu_on`] with a function to run once a grace period has passed. Nothing is
//! allocated: the head carries the list link, the function and the grace period it waits for.
//!
//! Each CPU queues on its own list (IRQ-safe, because the tick takes callbacks off it), in
//! order, so the grace periods the list waits for never decrease along it.
//! [`Rcu::process_callbacks`] runs the ready prefix with the list unlocked (a callback may
//! queue again) and starts a grace period when callbacks are waiting and none is running.
//!
//! Three flows call it for the same CPU: the tick (hardirq), the idle loop and an
//! `rcu_barrier` waiter (both in process context with IRQs on). Any of them may be interrupted
//! by the tick in the middle of a callback, so a CPU's callbacks would run re-entrantly unless
//! something forbids it. Something must: `rcu_barrier` waits until each CPU's count of
//! callbacks run reaches its count of callbacks queued before the barrier, and that count
//! proves "everything queued before me has run" only if the callbacks of one CPU run one at a
//! time in list order. A tick that ran later callbacks while an interrupted flow still held an
//! earlier batch would bring the count to its goal with part of that batch not run yet, and the
//! barrier's caller would free what those callbacks use. So each CPU has an `invoking` flag:
//! the flow that sets it runs its batch with preemption off, so that it cannot be switched
//! away holding it; a flow that finds it set (an interrupt inside that batch) only starts
//! grace periods, and leaves what became ready meanwhile to the next call after the holder is
//! done: the next tick at the latest.

use core::cell::UnsafeCell;

#[cfg(not(loom))]
use core::sync::atomic::AtomicBool;
#[cfg(loom)]
use loom::sync::atomic::AtomicBool;

use super::Rcu;
use crate::config::MAX_CPUS;
use crate::percpu::{self, CacheAligned};
use crate::sync::IrqSafeSpinLock;
use crate::sync::preempt;
use crate::sync::shim::{AtomicU64, Ordering, const_unless_loom};

/// What runs after the grace period: it gets back the head passed to `call_rcu`, and usually
/// recovers the enclosing object from it (see [`RcuHead::container`]).
pub type RcuCallback = unsafe fn(*mut RcuHead);

/// The part of an object that `call_rcu` links into a CPU's callback list.
pub struct RcuHead {
    inner: UnsafeCell<HeadInner>,
}

struct HeadInner {
    next: *mut RcuHead,
    func: Option<RcuCallback>,
    /// The `gp_seq` value after which `func` may run.
    target: u64,
}

// SAFETY: the fields are written by `call_rcu_on` and read by `process_callbacks`, both while
// holding the owning CPU's list lock (which orders them); between being queued and being run
// nobody else touches the head (the `call_rcu_on` contract).
unsafe impl Sync for RcuHead {}
// SAFETY: as above; the raw pointer inside is only a list link.
unsafe impl Send for RcuHead {}

impl Default for RcuHead {
    fn default() -> Self {
        Self::new()
    }
}

impl RcuHead {
    pub const fn new() -> Self {
        RcuHead {
            inner: UnsafeCell::new(HeadInner {
                next: core::ptr::null_mut(),
                func: None,
                target: 0,
            }),
        }
    }

    /// The object of type `T` whose field at byte `offset` (`core::mem::offset_of!`) is the
    /// head at `head`.
    ///
    /// # Safety
    /// `head` must point at that field of a live `T`.
    pub unsafe fn container<T>(head: *mut RcuHead, offset: usize) -> *mut T {
        // SAFETY: the caller promises `head` lies `offset` bytes into a `T`.
        unsafe { head.byte_sub(offset).cast::<T>() }
    }
}

/// A CPU's queue: first and last head, so appending is O(1).
pub(super) struct CallbackList {
    first: *mut RcuHead,
    last: *mut RcuHead,
}

// SAFETY: the pointers are links to heads that `call_rcu_on`'s contract keeps alive until
// their callbacks run; the list is only reached through its lock.
unsafe impl Send for CallbackList {}

pub(super) struct CallbackQueue {
    list: IrqSafeSpinLock<CallbackList>,
    /// Callbacks ever queued on this CPU (changed under the lock).
    queued: AtomicU64,
    /// Callbacks ever run from this CPU, counted after each one returns.
    invoked: AtomicU64,
    /// Some flow on this CPU is running a batch of its callbacks (see the module comment).
    invoking: AtomicBool,
}

impl CallbackQueue {
    const_unless_loom! {
        #[track_caller]
        pub(super) const fn new() -> Self {
            CallbackQueue {
                list: IrqSafeSpinLock::named(
                    "rcu callbacks",
                    CallbackList {
                        first: core::ptr::null_mut(),
                        last: core::ptr::null_mut(),
                    },
                ),
                queued: AtomicU64::new(0),
                invoked: AtomicU64::new(0),
                invoking: AtomicBool::new(false),
            }
        }
    }

    /// One queue per CPU.
    #[cfg(not(loom))]
    pub(super) const fn per_cpu() -> [CacheAligned<CallbackQueue>; MAX_CPUS] {
        [const { CacheAligned(CallbackQueue::new()) }; MAX_CPUS]
    }

    /// One queue per CPU (loom's atomics are built at run time, inside the model).
    #[cfg(loom)]
    pub(super) fn per_cpu() -> [CacheAligned<CallbackQueue>; MAX_CPUS] {
        core::array::from_fn(|_| CacheAligned(CallbackQueue::new()))
    }
}

impl Rcu {
    /// Queue `func(head)` on the calling CPU, to run once a grace period has elapsed.
    ///
    /// # Safety
    /// As for [`Rcu::call_rcu_on`].
    ///
    /// # Panics
    /// Before per-CPU setup: callbacks need a CPU whose tick runs them.
    pub unsafe fn call_rcu(&self, head: &RcuHead, func: RcuCallback) {
        let cpu = percpu::current_id().expect("call_rcu before per-CPU setup");
        // SAFETY: forwarded contract.
        unsafe { self.call_rcu_on(cpu, head, func) }
    }

    /// Queue `func(head)` on `cpu`'s list (normally the calling CPU), to run from
    /// `process_callbacks(cpu)` once a grace period has elapsed since now. Call it after the
    /// object is unpublished. Never waits, never allocates.
    ///
    /// # Safety
    /// `head` must stay valid and untouched until `func` runs, must not already be queued,
    /// and `func` must be sound to call with it then.
    pub unsafe fn call_rcu_on(&self, cpu: usize, head: &RcuHead, func: RcuCallback) {
        let q = self.callbacks.for_cpu(cpu);
        let mut list = q.list.lock();
        // Snapshot under the lock: the targets along the list never decrease.
        let target = self.snapshot();
        let p = head as *const RcuHead as *mut RcuHead;
        // SAFETY: the head is not queued (contract), so nothing else reads or writes it; the
        // list lock orders these writes before `process_callbacks` reads them.
        unsafe {
            *head.inner.get() = HeadInner {
                next: core::ptr::null_mut(),
                func: Some(func),
                target,
            };
        }
        if list.last.is_null() {
            list.first = p;
        } else {
            // SAFETY: `last` is a queued head, alive by the contract of its own call_rcu.
            unsafe { (*(*list.last).inner.get()).next = p };
        }
        list.last = p;
        q.queued.fetch_add(1, Ordering::Release);
    }

    /// Run `cpu`'s callbacks whose grace period is over, and start a grace period if others
    /// are waiting and none is running. Returns how many ran: 0 also when another flow on
    /// `cpu` is running a batch (this call interrupted it), because callbacks of one CPU never
    /// run re-entrantly.
    ///
    /// The kernel calls this on `cpu` itself, from the tick (hardirq), the idle loop and
    /// `rcu_barrier` (process context, IRQs on). Callbacks therefore run with preemption
    /// disabled and sometimes in interrupt context: they must be short, must not sleep, and a
    /// lock they take must be IRQ-safe.
    pub fn process_callbacks(&self, cpu: usize) -> usize {
        let q = self.callbacks.for_cpu(cpu);
        // Preemption off before the claim: a flow switched away while it holds the claim would
        // leave this CPU's callbacks to wait until it runs again.
        preempt::preempt_disable();
        let claimed = q
            .invoking
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        let (ready, waiting) = self.take_ready(q, claimed);
        if waiting && !self.gp_in_progress() {
            self.start_grace_period();
        }
        let ran = if claimed {
            let ran = Self::invoke(q, ready);
            // Release: whoever claims next sees every callback of this batch done.
            q.invoking.store(false, Ordering::Release);
            ran
        } else {
            0
        };
        preempt::preempt_enable();
        ran
    }

    /// Under `q`'s lock: detach the ready prefix if `take` (the caller holds the claim), and
    /// say whether callbacks not yet ready remain (they need a grace period).
    fn take_ready(&self, q: &CallbackQueue, take: bool) -> (*mut RcuHead, bool) {
        let mut list = q.list.lock();
        if list.first.is_null() {
            return (core::ptr::null_mut(), false);
        }
        let done = self.gp_seq();
        if !take {
            // Targets never decrease along the list: the last one has the latest.
            // SAFETY: `last` is a queued head, alive by its call_rcu's contract, read under
            // the list lock.
            let latest = unsafe { (*(*list.last).inner.get()).target };
            return (core::ptr::null_mut(), latest > done);
        }
        let ready = list.first;
        let mut last_ready: *mut RcuHead = core::ptr::null_mut();
        let mut p = list.first;
        // SAFETY: every head on the list is alive (call_rcu_on's contract) and only this
        // list, under its lock, touches its fields.
        unsafe {
            while !p.is_null() && (*(*p).inner.get()).target <= done {
                last_ready = p;
                p = (*(*p).inner.get()).next;
            }
            list.first = p;
            if p.is_null() {
                list.last = core::ptr::null_mut();
            }
            if !last_ready.is_null() {
                (*(*last_ready).inner.get()).next = core::ptr::null_mut();
            }
        }
        let ready = if last_ready.is_null() {
            core::ptr::null_mut()
        } else {
            ready
        };
        (ready, !p.is_null())
    }

    /// Run the detached batch starting at `ready`, in order, counting each callback after it
    /// returns. The caller holds `q`'s claim.
    fn invoke(q: &CallbackQueue, mut ready: *mut RcuHead) -> usize {
        let mut ran = 0;
        while !ready.is_null() {
            // SAFETY: `ready` was detached from the list by our caller, so this loop is its
            // only user; read the link and function before the callback, which may free or
            // requeue it.
            let (next, func) = unsafe {
                let inner = &*(*ready).inner.get();
                (inner.next, inner.func)
            };
            if let Some(func) = func {
                // SAFETY: the grace period this head waited for is over (target <= gp_seq,
                // read with acquire), which is what `func` was promised by call_rcu_on.
                unsafe { func(ready) };
            }
            q.invoked.fetch_add(1, Ordering::Release);
            ran += 1;
            ready = next;
        }
        ran
    }

    /// Callbacks queued on `cpu` that have not run yet.
    pub fn callbacks_pending(&self, cpu: usize) -> u64 {
        let q = self.callbacks.for_cpu(cpu);
        let invoked = q.invoked.load(Ordering::Acquire);
        q.queued.load(Ordering::Acquire) - invoked
    }

    /// Wait until every callback queued (on any CPU) before this call has run, on behalf of
    /// the calling CPU.
    pub fn barrier(&self) {
        // Preemption off while checking, so that the CPU checked is the one we are on.
        preempt::preempt_disable();
        if let Some(cpu) = percpu::current_id() {
            assert!(
                self.nesting(cpu) == 0,
                "rcu_barrier inside an RCU read-side critical section on cpu{cpu}"
            );
            // The holder of a CPU's claim runs with preemption off, so a flow that finds its
            // own CPU claimed is that holder: a callback, or an interrupt inside one.
            assert!(
                !self.callbacks.for_cpu(cpu).invoking.load(Ordering::Relaxed),
                "rcu_barrier from an RCU callback on cpu{cpu}: it would wait for its own batch \
                 forever"
            );
        }
        preempt::preempt_enable();
        // As in `synchronize`: the waiter may be moved between CPUs, so it speaks for the CPU
        // it is on at each moment, with preemption off.
        self.barrier_with(|| {
            preempt::preempt_disable();
            if let Some(cpu) = percpu::current_id() {
                self.note_quiescent_state(cpu);
                self.process_callbacks(cpu);
            }
            preempt::preempt_enable();
        });
    }

    /// `rcu_barrier`: wait until every callback queued before the call has run. `cpu` (the
    /// caller's CPU) reports quiescent states and runs its own callbacks while it waits;
    /// other CPUs run theirs from their ticks, so every CPU holding callbacks must keep
    /// ticking (a host thread that stopped playing its CPU never would).
    ///
    /// # Panics
    /// Inside a read-side section on `cpu`.
    pub fn barrier_on(&self, cpu: Option<usize>) {
        if let Some(cpu) = cpu {
            assert!(
                self.nesting(cpu) == 0,
                "rcu_barrier inside an RCU read-side critical section on cpu{cpu}"
            );
        }
        self.barrier_with(|| {
            if let Some(cpu) = cpu {
                self.note_quiescent_state(cpu);
                self.process_callbacks(cpu);
            }
        });
    }

    /// Wait until every callback queued before the call has run; `report` speaks for the
    /// waiter's CPU meanwhile.
    ///
    /// Counting is enough because each CPU runs its callbacks one batch at a time, in list
    /// order (the `invoking` claim): once `invoked` reaches the `queued` count taken here, the
    /// first that many callbacks of the list, the ones queued before this call, have returned.
    fn barrier_with(&self, report: impl Fn()) {
        let goal = self.barrier_goal();
        while !self.barrier_reached(&goal) {
            report();
            self.wait();
        }
    }

    /// What `rcu_barrier` waits for: each CPU's count of callbacks queued so far.
    pub(super) fn barrier_goal(&self) -> [u64; MAX_CPUS] {
        let mut goal = [0u64; MAX_CPUS];
        // CPUs past `possible_cpus` never queue a callback: their goal stays 0, always reached.
        let possible = crate::percpu::possible_cpus();
        for (g, q) in goal.iter_mut().zip(self.callbacks.iter()).take(possible) {
            *g = q.queued.load(Ordering::Acquire);
        }
        goal
    }

    /// True once every CPU has run as many callbacks as `goal` says were queued on it.
    pub(super) fn barrier_reached(&self, goal: &[u64; MAX_CPUS]) -> bool {
        goal.iter()
            .zip(self.callbacks.iter())
            .take(crate::percpu::possible_cpus())
            .all(|(&g, q)| q.invoked.load(Ordering::Acquire) >= g)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32};

    struct Obj {
        value: u32,
        head: RcuHead,
        freed: AtomicU32,
    }

    unsafe fn mark_freed(head: *mut RcuHead) {
        // SAFETY: the tests only queue the `head` field of live `Obj`s.
        let obj = unsafe { &*RcuHead::container::<Obj>(head, core::mem::offset_of!(Obj, head)) };
        obj.freed.fetch_add(1, Ordering::Relaxed);
    }

    fn obj(value: u32) -> Obj {
        Obj {
            value,
            head: RcuHead::new(),
            freed: AtomicU32::new(0),
        }
    }

    #[test]
    fn callbacks_wait_for_a_grace_period_and_run_in_order() {
        let rcu = Rcu::new();
        let objs: Vec<Obj> = (0..3).map(obj).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                rcu.cpu_online(0);
                rcu.cpu_online(1);
                for o in &objs {
                    // SAFETY: `o` outlives the scope, in which all callbacks run.
                    unsafe { rcu.call_rcu_on(0, &o.head, mark_freed) };
                }
                assert_eq!(rcu.callbacks_pending(0), 3);
                assert_eq!(rcu.process_callbacks(0), 0, "no grace period yet");
                assert!(rcu.gp_in_progress(), "waiting callbacks start one");
                rcu.note_quiescent_state(0);
                assert_eq!(rcu.process_callbacks(0), 0, "cpu1 has not reported");
                assert!(objs.iter().all(|o| o.freed.load(Ordering::Relaxed) == 0));
                std::thread::scope(|inner| {
                    inner.spawn(|| {
                        rcu.note_quiescent_state(1);
                    });
                });
                assert_eq!(rcu.process_callbacks(0), 3);
                assert_eq!(rcu.callbacks_pending(0), 0);
            });
        });
        assert!(objs.iter().all(|o| o.freed.load(Ordering::Relaxed) == 1));
        assert_eq!(objs[2].value, 2);
    }

    #[test]
    fn a_callback_queued_during_a_grace_period_waits_for_the_next() {
        let rcu = Rcu::new();
        let (a, b) = (obj(1), obj(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                rcu.cpu_online(0);
                // SAFETY: both objects outlive the scope, in which their callbacks run.
                unsafe { rcu.call_rcu_on(0, &a.head, mark_freed) };
                rcu.process_callbacks(0); // starts grace period 1
                // SAFETY: as above.
                unsafe { rcu.call_rcu_on(0, &b.head, mark_freed) };
                rcu.note_quiescent_state(0); // ends grace period 1
                assert_eq!(
                    rcu.process_callbacks(0),
                    1,
                    "a only: b needs grace period 2"
                );
                assert_eq!(b.freed.load(Ordering::Relaxed), 0);
                rcu.note_quiescent_state(0);
                assert_eq!(rcu.process_callbacks(0), 1);
            });
        });
        assert_eq!(b.freed.load(Ordering::Relaxed), 1);
    }

    /// Three CPUs queue callbacks while ticking; a fourth calls rcu_barrier, which may only
    /// return once every callback queued before it has run.
    #[test]
    fn barrier_waits_for_callbacks_on_every_cpu() {
        let rcu = Rcu::new();
        let objs: Vec<Obj> = (0..30).map(obj).collect();
        let queued = AtomicU32::new(0);
        let stop = AtomicBool::new(false);
        for cpu in 0..4 {
            rcu.cpu_online(cpu);
        }
        std::thread::scope(|s| {
            for cpu in 0..3 {
                let (rcu, objs, queued, stop) = (&rcu, &objs, &queued, &stop);
                s.spawn(move || {
                    for o in objs.iter().skip(cpu).step_by(3) {
                        // SAFETY: the objects outlive the scope; each is queued once.
                        unsafe { rcu.call_rcu_on(cpu, &o.head, mark_freed) };
                        queued.fetch_add(1, Ordering::Release);
                        rcu.tick(cpu);
                    }
                    while !stop.load(Ordering::Acquire) {
                        rcu.tick(cpu);
                        std::thread::yield_now();
                    }
                });
            }
            s.spawn(|| {
                while queued.load(Ordering::Acquire) < 30 {
                    rcu.tick(3);
                    std::thread::yield_now();
                }
                rcu.barrier_on(Some(3));
                let ran = objs
                    .iter()
                    .filter(|o| o.freed.load(Ordering::Relaxed) == 1)
                    .count();
                stop.store(true, Ordering::Release);
                assert_eq!(ran, 30, "rcu_barrier returned with callbacks still queued");
            });
        });
    }

    /// A callback that stays inside until the test lets it go, like a flow that is interrupted
    /// or preempted in the middle of a callback.
    struct Gate {
        head: RcuHead,
        entered: AtomicBool,
        release: AtomicBool,
    }

    unsafe fn wait_at_the_gate(head: *mut RcuHead) {
        // SAFETY: only the `head` of a live `Gate` is queued with this callback.
        let gate = unsafe { &*RcuHead::container::<Gate>(head, core::mem::offset_of!(Gate, head)) };
        gate.entered.store(true, Ordering::Release);
        while !gate.release.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    }

    /// Set by the wait hook: the barrier has taken its goal and is waiting.
    static BARRIER_IS_WAITING: AtomicBool = AtomicBool::new(false);

    /// The re-entrancy hazard: cpu0's idle loop has taken the batch [gate, after] off cpu0's
    /// list and is stuck inside `gate` (interrupted, or preempted) when cpu0's tick runs two
    /// callbacks queued after `rcu_barrier` began. Counting those two must not let the barrier
    /// return while `after`, queued before it, has not run.
    #[test]
    fn barrier_waits_for_a_batch_another_flow_on_the_cpu_is_running() {
        fn note_barrier_waiting() {
            BARRIER_IS_WAITING.store(true, Ordering::Release);
            std::thread::yield_now();
        }
        let rcu = Rcu::new();
        rcu.set_wait_hook(note_barrier_waiting);
        rcu.cpu_online(0);
        let gate = Gate {
            head: RcuHead::new(),
            entered: AtomicBool::new(false),
            release: AtomicBool::new(false),
        };
        let after = obj(1);
        let late: Vec<Obj> = (2..4).map(obj).collect();
        // SAFETY: every object outlives the scope below, in which each callback runs.
        unsafe {
            rcu.call_rcu_on(0, &gate.head, wait_at_the_gate);
            rcu.call_rcu_on(0, &after.head, mark_freed);
        }
        // One grace period, without running anything: both callbacks are ready.
        assert!(rcu.start_grace_period());
        assert!(rcu.note_quiescent_state(0));
        let returned = AtomicBool::new(false);
        let after_ran_when_barrier_returned = AtomicU32::new(u32::MAX);
        std::thread::scope(|s| {
            // cpu0's idle loop: takes [gate, after] and runs them.
            s.spawn(|| rcu.process_callbacks(0));
            // A task elsewhere calls rcu_barrier once the idle loop is inside `gate`.
            s.spawn(|| {
                while !gate.entered.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                rcu.barrier_on(None);
                after_ran_when_barrier_returned
                    .store(after.freed.load(Ordering::Acquire), Ordering::Release);
                returned.store(true, Ordering::Release);
            });
            // cpu0's tick: two callbacks queued after the barrier's goal, then ticks. Bounded:
            // 200 ticks, or until the barrier returns; then the gate opens.
            s.spawn(|| {
                while !BARRIER_IS_WAITING.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                for o in &late {
                    // SAFETY: as above.
                    unsafe { rcu.call_rcu_on(0, &o.head, mark_freed) };
                }
                for _ in 0..200 {
                    if returned.load(Ordering::Acquire) {
                        break;
                    }
                    rcu.tick(0);
                    std::thread::yield_now();
                }
                gate.release.store(true, Ordering::Release);
            });
        });
        assert_eq!(
            after_ran_when_barrier_returned.load(Ordering::Acquire),
            1,
            "rcu_barrier returned before a callback queued before it had run"
        );
        // Tidy up: the late callbacks run too.
        while rcu.callbacks_pending(0) > 0 {
            rcu.tick(0);
        }
        assert!(late.iter().all(|o| o.freed.load(Ordering::Relaxed) == 1));
    }
}

/// Loom models (`make loom`): the same reader as in src/rcu/gp.rs, against a writer that frees
/// through `call_rcu` and runs its callbacks from its tick.
#[cfg(all(test, loom))]
mod tests {
    use crate::rcu::gp::tests::{Obj, poison, reader_never_sees_freed_data};
    use crate::rcu::{BrokenRcu, Rcu, RcuFlavor, RcuHead};
    use loom::sync::atomic::{AtomicBool, Ordering};

    loom::thread_local! {
        static FREED: AtomicBool = AtomicBool::new(false);
    }

    unsafe fn free_callback(head: *mut RcuHead) {
        // SAFETY: only the `head` of a live `Obj` is queued with this callback.
        let o = unsafe { RcuHead::container::<Obj>(head, core::mem::offset_of!(Obj, head)) };
        poison(o);
        FREED.with(|f| f.store(true, Ordering::Relaxed));
    }

    fn call_rcu_then_tick<F: RcuFlavor>(rcu: &F, old: *mut Obj) {
        FREED.with(|f| f.store(false, Ordering::Relaxed));
        // SAFETY: `old` outlives the model and is queued once.
        unsafe { rcu.call_rcu(1, &(*old).head, free_callback) };
        while !FREED.with(|f| f.load(Ordering::Relaxed)) {
            rcu.tick(1);
            loom::thread::yield_now();
        }
    }

    #[test]
    fn loom_rcu_reader_never_sees_data_freed_by_call_rcu() {
        reader_never_sees_freed_data(Rcu::new, call_rcu_then_tick::<Rcu>);
    }

    /// The bug: the callback runs at once, before the reader is done.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_rcu_broken_call_rcu_is_caught() {
        reader_never_sees_freed_data(BrokenRcu::new, call_rcu_then_tick::<BrokenRcu>);
    }

    struct Flagged {
        head: RcuHead,
        ran: AtomicBool,
    }

    fn flagged() -> *mut Flagged {
        Box::into_raw(Box::new(Flagged {
            head: RcuHead::new(),
            ran: AtomicBool::new(false),
        }))
    }

    unsafe fn mark_ran(head: *mut RcuHead) {
        // SAFETY: only the `head` of a live `Flagged` is queued with this callback.
        let f =
            unsafe { &*RcuHead::container::<Flagged>(head, core::mem::offset_of!(Flagged, head)) };
        f.ran.store(true, Ordering::Release);
    }

    /// cpu0's idle loop runs a ready batch [first, second] while cpu0's tick (another flow:
    /// it interrupts the idle loop) queues one more callback and ticks twice, enough for a
    /// grace period to start and end. `rcu_barrier`'s exit condition, checked at every point
    /// loom chooses, must never hold before both callbacks queued before it have run.
    ///
    /// The barrier itself is not run here: it spins, and loom, which may pick any thread
    /// after a yield without counting a preemption, would explore two spinning flows forever.
    #[test]
    fn loom_rcu_barrier_waits_for_a_batch_in_progress() {
        loom::model(|| {
            let rcu = loom::sync::Arc::new(Rcu::new());
            rcu.cpu_online(0);
            let (first, second, late) = (flagged(), flagged(), flagged());
            // SAFETY: the three live until the end of the model, and each is queued once.
            unsafe {
                rcu.call_rcu_on(0, &(*first).head, mark_ran);
                rcu.call_rcu_on(0, &(*second).head, mark_ran);
            }
            assert!(rcu.start_grace_period());
            assert!(rcu.note_quiescent_state(0));
            // rcu_barrier called now: it waits for `first` and `second`.
            let goal = rcu.barrier_goal();
            let idle = {
                let rcu = rcu.clone();
                loom::thread::spawn(move || {
                    rcu.process_callbacks(0);
                })
            };
            let tick = {
                let rcu = rcu.clone();
                let late = late as usize;
                loom::thread::spawn(move || {
                    // SAFETY: as above.
                    unsafe { rcu.call_rcu_on(0, &(*(late as *mut Flagged)).head, mark_ran) };
                    rcu.tick(0);
                    rcu.tick(0);
                })
            };
            // SAFETY: both live until the end of the model.
            let (a, b) = unsafe { (&*first, &*second) };
            for _ in 0..2 {
                if rcu.barrier_reached(&goal) {
                    assert!(
                        a.ran.load(Ordering::Acquire) && b.ran.load(Ordering::Acquire),
                        "rcu_barrier would return before a callback queued before it had run"
                    );
                }
            }
            idle.join().unwrap();
            tick.join().unwrap();
            assert!(
                rcu.barrier_reached(&goal),
                "both ran once every flow is done"
            );
            // `late` may still be queued: run it before its memory goes.
            // SAFETY: lives until the end of the model.
            while !unsafe { &*late }.ran.load(Ordering::Acquire) {
                rcu.tick(0);
            }
            // SAFETY: from Box::into_raw; every callback has run, so nothing refers to them.
            unsafe {
                drop(Box::from_raw(first));
                drop(Box::from_raw(second));
                drop(Box::from_raw(late));
            }
        });
    }
}
