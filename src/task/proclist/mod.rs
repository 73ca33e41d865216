//! The process list: RCU's worked example (chapter 18, "RCU").
//!
//! # The problem
//! Every CPU looks processes up by pid (`wait`, `kill`, the shell's process listing) far more
//! often than a process is created or exits. Behind a spin lock every lookup is a write to the
//! lock's word, so four CPUs that only want to *read* the list take turns and bounce one cache
//! line between them. A reader-writer lock lets them in together, but each reader still writes
//! the lock word twice (count in, count out): the cache line bounces just the same, and the
//! writer can starve. RCU readers write nothing another CPU ever reads.
//!
//! # Readers: no lock, no atomic write
//! ```text
//! let g = rcu::rcu_read_lock();          // per-CPU count + preemption off; nothing shared
//! if let Some(task) = PROCS.lookup(pid, &g) { ... }
//! drop(g);                               // `task` cannot outlive `g`: the borrow checker says so
//! ```
//! A reader follows `next` pointers with acquire loads (src/rcu/list.rs) and may meet a list
//! that a writer changes under it: it sees each node either before or after the change, never a
//! half-built one, because a writer fills a node in completely and only then links it with one
//! release store.
//!
//! # Writers: one at a time, and never free what a reader may hold
//! Writers take one spin lock among themselves (readers never touch it). `insert` allocates
//! and fills a [`ProcNode`], then links it at the front. `remove` unlinks the node (the
//! predecessor's `next` skips it with a release store) but leaves the node's own `next` alone,
//! so a reader standing on it walks off it back onto the list. Then the hard part: readers that
//! found the node before the unlink may still be looking at it. The node is handed to
//! `call_rcu`, whose callback runs only after a *grace period*: once every CPU has passed a
//! quiescent state (a tick outside any reader, the idle loop, a context switch), so every
//! reader that could have seen the node has finished. `call_rcu` rather than
//! `synchronize_rcu`, because a removal is on the exit path and waiting several ticks for each
//! one would make exits slow; the callbacks batch up and run from the tick.
//!
//! The payload is dropped in that callback (as Linux drops a task through
//! `delayed_put_task_struct`), which means with preemption off, from the tick's interrupt
//! handler, the idle loop or an `rcu_barrier` waiter: a payload's `Drop` must be safe in
//! interrupt context (freeing heap memory is: the heap's lock is IRQ-safe) and must not sleep.
//!
//! # Catching a reader the grace period missed
//! With the `rcu-poison` feature (on by default, off in the benchmark kernel) the callback
//! *poisons* a removed node instead of freeing it, every reader checks each node it visits, and
//! the list keeps its poisoned nodes in a bounded quarantine before the real free: a reader that
//! a broken RCU left behind meets poison and is reported, instead of reading freed memory in
//! silence. src/task/proclist/poison.rs tells the whole design; in this file it is the
//! `if POISONING` lines of the writers, of `Drop` and of the iterator.
//!
//! # Preemption
//! A task may be preempted and moved to another CPU between any two of its instructions,
//! except where preemption is off. So nothing here asks "which CPU am I on?" with preemption
//! on: readers get their guard from `rcu_read_lock` (which turns preemption off first), and
//! `remove` asks only once it holds the writer lock (a spin lock: preemption off while held).
//! The `_on(cpu)` variants are for callers that cannot move: a CPU's own flow (the in-kernel
//! torture test runs in each CPU's call from `on_each_cpu`), or a host thread playing a CPU.
//!
//! # Using it
//! ```text
//! static PROCS: ProcessList<Arc<Task>> = ProcessList::new(GlobalRcu);
//! PROCS.insert(pid, task)?;                      // spawn: Err(task) back if pid is taken
//! let g = rcu::rcu_read_lock();
//! let found = PROCS.lookup(pid, &g).cloned();    // clone the Arc to keep it past the guard
//! drop(g);
//! PROCS.remove(pid);                             // reap: the Arc is dropped a grace period later
//! ```
//!
//! # Which RCU
//! The list is generic over [`ListRcu`] (src/task/proclist/list_rcu.rs): the kernel's list
//! uses [`GlobalRcu`], tests plug in their own RCU or the broken one, which must be caught.
//!
//! # The files
//! - this one: the list, its readers (`iter`, `lookup`, `for_each`) and its writers (`insert`,
//!   `remove`);
//! - `node`: one process's node, and what becomes of it a grace period after its removal;
//! - `poison`: poisoning, the sightings it reports, and the quarantine;
//! - `list_rcu`: the RCU a list runs on;
//! - `torture`: the torture test that the host tests and the kernel both run;
//! - `tests`: the host unit tests.
//!
//! The in-kernel tests are in src/ktest/proclist.rs, and the benchmark (RCU readers against an
//! rwlock's and a spin lock's) in src/bench/rcu.rs.

#![cfg(not(loom))]

mod list_rcu;
mod node;
mod poison;
#[cfg(test)]
mod tests;
pub mod torture;

use alloc::boxed::Box;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub use list_rcu::{GlobalRcu, ListRcu};
pub use node::ProcNode;
use node::{free_live, reclaim};
pub use poison::{
    DEFAULT_QUARANTINE, POISON_BYTE, POISON_PID, POISONING, PoisonReport, PoisonSighting,
};
use poison::{PoisonLog, Quarantine};

use super::Pid;
use crate::percpu;
use crate::rcu::{self, RcuList, RcuReadGuard};
use crate::sync::SpinLock;
use crate::sync::spinlock::TtasLock;

/// Counts a list keeps for tests and the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcListStats {
    /// Processes on the list now.
    pub len: usize,
    pub inserted: u64,
    pub removed: u64,
    /// Removed nodes whose memory the list still holds: waiting for their grace period, or
    /// poisoned in quarantine (always 0 without `rcu-poison`: the callback frees them).
    pub retired: usize,
    /// Nodes the list has freed from its quarantine (0 without `rcu-poison`).
    pub freed: u64,
}

/// The process list: lock-free readers under an RCU read guard, writers serialised by one
/// spin lock, removed nodes reclaimed after a grace period. `R` is the RCU it runs on.
pub struct ProcessList<T: Send + Sync + 'static, R: ListRcu = GlobalRcu> {
    rcu: R,
    list: RcuList<ProcNode<T>>,
    /// Writers' lock; it also guards the quarantine. Plain, not IRQ-safe: writers run in
    /// process context, and the callbacks (which may run in interrupt context) never take it.
    /// Test-and-test-and-set, not the default ticket lock: a FIFO lock hands over to the next
    /// waiter in line even when its CPU is not running, and under QEMU (four vCPUs on two
    /// host cores) each hand-over could then wait for a host time slice: the torture test,
    /// with a write in every round, ran a hundred times slower. Writers are rare and short,
    /// so fairness among them matters less than never waiting for a CPU that is not there.
    writer: SpinLock<Quarantine<T>, TtasLock>,
    quarantine: usize,
    len: AtomicUsize,
    inserted: AtomicU64,
    removed: AtomicU64,
    freed: AtomicU64,
    poison: PoisonLog,
}

impl<T: Send + Sync + 'static, R: ListRcu> ProcessList<T, R> {
    /// An empty list on `rcu`, with the default quarantine. A `const fn`, so the kernel's list
    /// can be a `static` (`ProcessList::new(GlobalRcu)`).
    #[track_caller]
    pub const fn new(rcu: R) -> Self {
        Self::with_quarantine(rcu, DEFAULT_QUARANTINE)
    }

    /// An empty list that keeps up to `nodes` poisoned nodes before freeing the oldest.
    #[track_caller]
    pub const fn with_quarantine(rcu: R, nodes: usize) -> Self {
        ProcessList {
            rcu,
            list: RcuList::new(),
            writer: SpinLock::named("proclist writer", Quarantine::new()),
            quarantine: nodes,
            len: AtomicUsize::new(0),
            inserted: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            freed: AtomicU64::new(0),
            poison: PoisonLog::new(),
        }
    }

    /// The RCU this list runs on.
    pub fn rcu(&self) -> &R {
        &self.rcu
    }

    // ----- readers ---------------------------------------------------------------------------

    /// Enter a read-side section of this list's RCU on the calling CPU (for the kernel's list
    /// the same as `rcu::rcu_read_lock()`).
    pub fn read_lock(&self) -> RcuReadGuard<'_> {
        self.rcu.read_guard(None)
    }

    /// Enter a read-side section of this list's RCU on `cpu`, the calling CPU (host tests name
    /// their CPUs instead of installing per-CPU areas).
    pub fn read_lock_on(&self, cpu: usize) -> RcuReadGuard<'_> {
        self.rcu.read_guard(Some(cpu))
    }

    /// Walk the list, newest first, yielding `(pid, &payload)`. The references live as long
    /// as the guard, which must be a read-side section of this list's RCU.
    pub fn iter<'g>(&'g self, guard: &'g RcuReadGuard<'_>) -> Iter<'g, T> {
        debug_assert!(
            guard.cpu().is_none_or(|cpu| self.rcu.in_reader(cpu)),
            "a read guard of another RCU than the process list's ({})",
            self.rcu.name()
        );
        Iter {
            nodes: self.list.iter(guard),
            poison: &self.poison,
            cpu: guard.cpu(),
            stopped: false,
        }
    }

    /// The payload of process `pid`, if it is on the list.
    pub fn lookup<'g>(&'g self, pid: Pid, guard: &'g RcuReadGuard<'_>) -> Option<&'g T> {
        self.iter(guard).find(|&(p, _)| p == pid).map(|(_, t)| t)
    }

    /// `f(pid, payload)` for every process on the list.
    pub fn for_each(&self, guard: &RcuReadGuard<'_>, mut f: impl FnMut(Pid, &T)) {
        for (pid, payload) in self.iter(guard) {
            f(pid, payload);
        }
    }

    /// Processes on the list (a snapshot: writers may change it the next moment).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Readers that met a poisoned node (always none with a correct RCU).
    pub fn poison_report(&self) -> PoisonReport {
        self.poison.report()
    }

    pub fn stats(&self) -> ProcListStats {
        let retired = self.writer.lock().len;
        ProcListStats {
            len: self.len(),
            inserted: self.inserted.load(Ordering::Relaxed),
            removed: self.removed.load(Ordering::Relaxed),
            retired,
            freed: self.freed.load(Ordering::Relaxed),
        }
    }

    // ----- writers ---------------------------------------------------------------------------

    /// Add process `pid` at the front; `Err(payload)` back if `pid` is already on the list.
    /// The node is allocated and filled before the writer lock is taken; linking it is one
    /// release store, so a reader that finds it sees it whole.
    pub fn insert(&self, pid: Pid, payload: T) -> Result<(), T> {
        let node = NonNull::from(Box::leak(Box::new(ProcNode::new(pid, payload))));
        let _writer = self.writer.lock();
        // Writers walk the list like readers (under the writer lock no node can go away, but
        // the list's iterator wants a guard, and a section costs almost nothing).
        let taken = {
            let g = self.rcu.read_guard(None);
            self.list.iter(&g).any(|n| n.pid() == pid)
        };
        if taken {
            // SAFETY: never linked: the node is still ours alone, payload included.
            let node = unsafe { Box::from_raw(node.as_ptr()) };
            // SAFETY: the payload was initialised by ProcNode::new and not dropped.
            return Err(unsafe { node.payload.into_inner().assume_init() });
        }
        // SAFETY: we hold the writer lock; the node is whole, on no list, and is freed only
        // after it is unlinked and a grace period has passed (remove_on, Drop).
        unsafe { self.list.push_front(node) };
        self.len.fetch_add(1, Ordering::Relaxed);
        self.inserted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Remove process `pid`, on behalf of the calling CPU; false if it is not on the list.
    ///
    /// # Panics
    /// Before per-CPU setup (the reclaim callback needs a CPU whose tick runs it).
    pub fn remove(&self, pid: Pid) -> bool {
        // The writer lock turns preemption off, so the CPU asked for under it stays ours.
        let mut quarantine = self.writer.lock();
        let cpu = percpu::current_id().expect("ProcessList::remove before per-CPU setup");
        self.remove_locked(&mut quarantine, cpu, pid)
    }

    /// Remove process `pid` on behalf of `cpu`, the calling CPU, which the caller cannot leave
    /// (a CPU's own flow, or a host thread playing the CPU). False if it is not there.
    pub fn remove_on(&self, cpu: usize, pid: Pid) -> bool {
        let mut quarantine = self.writer.lock();
        self.remove_locked(&mut quarantine, cpu, pid)
    }

    /// Unlink `pid` now; reclaim it through `call_rcu` on `cpu` once a grace period has passed.
    fn remove_locked(&self, quarantine: &mut Quarantine<T>, cpu: usize, pid: Pid) -> bool {
        let found = {
            let g = self.rcu.read_guard(Some(cpu));
            self.list
                .iter(&g)
                .find(|n| n.pid() == pid)
                .map(NonNull::from)
        };
        let Some(node) = found else {
            return false;
        };
        // SAFETY: the caller holds the writer lock (it lent us what it guards).
        let unlinked = unsafe { self.list.remove(node) };
        debug_assert!(
            unlinked,
            "a node found under the writer lock is on the list"
        );
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.removed.fetch_add(1, Ordering::Relaxed);
        if POISONING {
            // The list keeps the node: it frees it once the callback has poisoned it and it has
            // served its time in quarantine.
            quarantine.push(node);
        }
        // SAFETY: the node is unlinked and its head was never queued (a node is removed once).
        // It stays allocated until the callback has run: with poisoning the list frees it only
        // after `reclaimed`, without it the callback itself frees it.
        unsafe { self.rcu.call_rcu(cpu, &node.as_ref().head, reclaim::<T>) };
        if POISONING && quarantine.len > self.quarantine {
            // Free the oldest poisoned nodes beyond the quarantine's size.
            let excess = quarantine.len - self.quarantine;
            let freed = quarantine.free_reclaimed(excess);
            self.freed.fetch_add(freed as u64, Ordering::Relaxed);
        }
        true
    }

    /// Wait for every removed node's callback (`rcu_barrier` on the list's RCU; `cpu` as for
    /// [`ListRcu::callbacks_barrier`]), then free every poisoned node in quarantine. Returns how many were
    /// freed. Tests use it to check that nothing leaked.
    pub fn flush_quarantine(&self, cpu: Option<usize>) -> usize {
        self.rcu.callbacks_barrier(cpu);
        if !POISONING {
            return 0; // the callbacks freed the nodes themselves
        }
        let freed = self.writer.lock().free_reclaimed(usize::MAX);
        self.freed.fetch_add(freed as u64, Ordering::Relaxed);
        freed
    }
}

impl<T: Send + Sync + 'static, R: ListRcu> Drop for ProcessList<T, R> {
    /// Free every node. No reader can hold one: readers borrow the list, and it is being
    /// dropped. Removed nodes whose callbacks have not run yet are waited for (an
    /// `rcu_barrier`, on the calling CPU's behalf): their callbacks still write to them.
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no other writer, and no reader (they borrow the list).
        unsafe {
            self.list.drain(|node| free_live(node));
        }
        if !POISONING {
            return;
        }
        while self.writer.lock().waiting() {
            self.rcu.callbacks_barrier(None);
        }
        let freed = self.writer.lock().free_reclaimed(usize::MAX);
        self.freed.fetch_add(freed as u64, Ordering::Relaxed);
    }
}

/// A reader's walk over a [`ProcessList`]: `(pid, &payload)`, newest first. With poisoning it
/// checks every node and stops at the first poisoned one (its `next` may be garbage).
pub struct Iter<'g, T> {
    nodes: rcu::Iter<'g, ProcNode<T>>,
    poison: &'g PoisonLog,
    cpu: Option<usize>,
    stopped: bool,
}

impl<'g, T: 'g> Iterator for Iter<'g, T> {
    type Item = (Pid, &'g T);

    #[inline]
    fn next(&mut self) -> Option<(Pid, &'g T)> {
        if POISONING && self.stopped {
            return None;
        }
        let node = self.nodes.next()?;
        let pid = if POISONING {
            match node.check() {
                Ok(pid) => pid,
                Err(magic) => {
                    self.poison.saw(magic, node.pid(), self.cpu);
                    self.stopped = true;
                    return None;
                }
            }
        } else {
            node.pid()
        };
        // SAFETY: the node was reached from the list inside the guard's section, so it was
        // linked after the section began or unlinked less than a grace period before; its
        // payload is dropped only after that grace period (and with poisoning the check above
        // saw it live).
        Some((pid, unsafe { node.payload() }))
    }
}
