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
//! `delayed_put_task_struct`), which means in the tick's interrupt context: a payload's `Drop`
//! must be safe there (freeing heap memory is: the heap's lock is IRQ-safe) and must not sleep.
//!
//! # Catching a reader the grace period missed: poisoning (feature `rcu-poison`)
//! A use after free usually goes unseen: the memory still holds the old values. So, with the
//! `rcu-poison` feature (on by default, off in the benchmark kernel), the callback *poisons*
//! the node instead of freeing it: the magic word becomes `0x6b6b6b6b_<pid>`, the pid becomes
//! [`POISON_PID`], and the payload, once dropped, is overwritten with `0x6b` bytes (Linux's
//! `POISON_FREE`). Every reader checks the magic and the pid of every node it visits; one that
//! finds poison counts it ([`ProcessList::poison_report`]: how many, and the first pid and
//! CPU), logs one `BUG` line, and stops its walk there.
//!
//! For a reader to *see* the poison, the poisoned memory must still be a node: if it went back
//! to the allocator it could already be someone else's, and the reader would read whatever the
//! new owner wrote, perhaps a pointer that looks like a link, and crash or wander. So poisoned
//! nodes sit in a quarantine before the real free. Two ways were possible:
//! - **a second grace period** (poison, then `call_rcu` again, then free). It costs nothing
//!   extra to write, but it only helps when the RCU is right, and then nobody needs it: the bug
//!   poisoning is there to catch is a grace period that ends too early, and the second one ends
//!   too early as well. With [`BrokenRcu`](crate::rcu::BrokenRcu) both are empty, and the node
//!   would be back in the allocator at once.
//! - **a bounded FIFO counted in removals**, chosen here. The list keeps its poisoned nodes in
//!   order of removal and frees the oldest only when more than `quarantine` of them wait
//!   ([`DEFAULT_QUARANTINE`], or [`ProcessList::with_quarantine`]). This does not depend on the
//!   RCU under test, so a reader that a broken RCU left behind still finds poison for the next
//!   `quarantine` removals; and the memory it costs is bounded (a few KiB: the payload, often
//!   an `Arc`, is dropped at poisoning time; only the node waits).
//!
//! The list frees quarantined nodes itself, under its writer lock ([`ProcessList::remove`],
//! [`ProcessList::flush_quarantine`], `Drop`). The callback only poisons and then marks the node
//! reclaimed, so it never needs the list; the list, not the callback, decides when memory goes.
//! The magic is the node's first word (`repr(C)`): even after the real free, the allocator
//! writes its free-list link there, and a reader that got that far still sees "not live".
//!
//! Poisoning is a debugging aid, not a proof. Overwriting the payload while a (buggy-RCU)
//! reader holds a reference to it is a data race; with a correct RCU nobody holds one, which is
//! the whole point. The tests that run the broken RCU only let readers look at the node's
//! atomic fields (magic, pid, link), never at the payload.
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
//! The list is generic over [`ListRcu`]: the kernel's list uses [`GlobalRcu`] (the one
//! `rcu::global()` domain, whose tick and idle loop report quiescent states); tests plug in
//! their own [`Rcu`] (host unit tests, threads playing CPUs) or a
//! [`BrokenRcu`](crate::rcu::BrokenRcu), which must be caught. The in-kernel tests are in
//! src/ktest/proclist.rs, the host tests at the bottom of this file, and the benchmark
//! (RCU readers against an rwlock's and a spin lock's) in src/bench/rcu.rs.

#![cfg(not(loom))]

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::Pid;
use crate::percpu;
use crate::rcu::{
    self, BrokenRcu, Rcu, RcuCallback, RcuFlavor, RcuHead, RcuLink, RcuList, RcuListed,
    RcuReadGuard,
};
use crate::sync::SpinLock;
use crate::sync::spinlock::TtasLock;

/// True when this kernel poisons removed nodes and its readers check for poison.
pub const POISONING: bool = cfg!(feature = "rcu-poison");

/// A linked node's magic word ("PROCLIVE").
const MAGIC_LIVE: u64 = 0x5052_4f43_4c49_5645;
/// The high half of a poisoned node's magic; the low half keeps the pid it had.
const POISON_TAG: u64 = 0x6b6b_6b6b;
/// What a poisoned payload's bytes become (Linux's `POISON_FREE`).
pub const POISON_BYTE: u8 = 0x6b;
/// A poisoned node's pid.
pub const POISON_PID: Pid = 0x6b6b_6b6b;
/// Poisoned nodes a list keeps before it really frees the oldest.
pub const DEFAULT_QUARANTINE: usize = 64;

// ----- the RCU a list runs on ---------------------------------------------------------------

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

// ----- the node -----------------------------------------------------------------------------

/// One process on the list: its pid, the payload, the link, and what reclaiming it needs.
///
/// `repr(C)` with the magic first: whatever reuses the memory after the real free (the buddy
/// allocator writes its free-list link into a block's first word) overwrites the magic first.
#[repr(C)]
pub struct ProcNode<T> {
    /// [`MAGIC_LIVE`] from creation until the grace period after removal; then poison.
    magic: AtomicU64,
    link: RcuLink<ProcNode<T>>,
    /// Atomic so that poisoning it never races with a reader in the language's sense.
    pid: AtomicU32,
    /// Set (release) by the callback once the payload is dropped and the node poisoned.
    reclaimed: AtomicBool,
    /// Initialised from creation until the callback drops it.
    payload: UnsafeCell<MaybeUninit<T>>,
    head: RcuHead,
    /// The next node in the list's quarantine (only under the writer lock).
    retired_next: AtomicPtr<ProcNode<T>>,
}

// SAFETY: `link` is the one embedded link, and a node is on one list only (its own).
unsafe impl<T> RcuListed for ProcNode<T> {
    fn rcu_link(&self) -> &RcuLink<Self> {
        &self.link
    }
}

// SAFETY: readers on any CPU get `&T` (so T: Sync), and the payload is dropped by whichever CPU
// runs the callback (so T: Send). Everything else is atomic, or `payload`'s cell, which is
// written only by the creator before publication and by the callback after the grace period.
unsafe impl<T: Send + Sync> Sync for ProcNode<T> {}
// SAFETY: as above: the node and its payload may be freed on another CPU.
unsafe impl<T: Send + Sync> Send for ProcNode<T> {}

impl<T> ProcNode<T> {
    fn new(pid: Pid, payload: T) -> Self {
        ProcNode {
            magic: AtomicU64::new(MAGIC_LIVE),
            link: RcuLink::new(),
            pid: AtomicU32::new(pid),
            reclaimed: AtomicBool::new(false),
            payload: UnsafeCell::new(MaybeUninit::new(payload)),
            head: RcuHead::new(),
            retired_next: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The pid, as a reader sees it (poisoned nodes say [`POISON_PID`]).
    pub fn pid(&self) -> Pid {
        self.pid.load(Ordering::Relaxed)
    }

    /// The pid if the node is live, or the magic it has instead.
    fn check(&self) -> Result<Pid, u64> {
        let magic = self.magic.load(Ordering::Relaxed);
        let pid = self.pid.load(Ordering::Relaxed);
        if magic == MAGIC_LIVE && pid != POISON_PID {
            Ok(pid)
        } else {
            Err(magic)
        }
    }

    /// # Safety
    /// The payload has not been dropped: the node is linked, or was unlinked less than a grace
    /// period before the caller's read-side section began.
    unsafe fn payload(&self) -> &T {
        // SAFETY: initialised until the callback drops it (the caller's contract); only
        // shared references are made until then.
        unsafe { (*self.payload.get()).assume_init_ref() }
    }
}

/// Drop a node's payload and free the node, which no reader can reach.
///
/// # Safety
/// `node` came from `Box::leak` in `insert`, its payload is still there, and nobody can reach
/// the node any more (never linked, or unlinked with no reader left).
unsafe fn free_live<T>(node: NonNull<ProcNode<T>>) {
    // SAFETY: the caller's contract: we own the node and its initialised payload; the Box
    // drop that follows does not drop the payload again (it is a MaybeUninit).
    unsafe {
        (*node.as_ref().payload.get()).assume_init_drop();
        drop(Box::from_raw(node.as_ptr()));
    }
}

/// The `call_rcu` callback: a grace period has passed since the node was unlinked.
///
/// # Safety
/// `head` is the `head` of a `ProcNode<T>` unlinked and queued once by `remove_on`.
unsafe fn reclaim<T>(head: *mut RcuHead) {
    // SAFETY: the caller's contract; `offset_of!` names the field the head is.
    let node = unsafe {
        RcuHead::container::<ProcNode<T>>(head, core::mem::offset_of!(ProcNode<T>, head))
    };
    if !POISONING {
        // SAFETY: the grace period is over, so no reader holds the node; the callback owns it
        // (the list forgot it when it was unlinked).
        unsafe { free_live(NonNull::new_unchecked(node)) };
        return;
    }
    // SAFETY: the node stays allocated until `reclaimed` is set (the list frees it only after
    // that), and shared references to it are fine: every field written here is atomic or the
    // payload's cell.
    let node = unsafe { &*node };
    let pid = node.pid.load(Ordering::Relaxed);
    node.magic
        .store(POISON_TAG << 32 | u64::from(pid), Ordering::Relaxed);
    node.pid.store(POISON_PID, Ordering::Relaxed);
    let payload = node.payload.get();
    // SAFETY: the grace period is over: no reader holds `&T` any more (with a correct RCU;
    // see the module doc for the broken one). The payload was initialised; after the drop its
    // bytes are dead and may be overwritten.
    unsafe {
        (*payload).assume_init_drop();
        core::ptr::write_bytes(payload.cast::<u8>(), POISON_BYTE, size_of::<T>());
    }
    // Release: whoever frees the node (after an acquire load of this) frees it after our
    // writes, not under them.
    node.reclaimed.store(true, Ordering::Release);
}

// ----- poison sightings ---------------------------------------------------------------------

/// A reader that met a poisoned node: the first one seen, as [`ProcessList::poison_report`]
/// tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoisonSighting {
    /// The pid the node had when it was poisoned.
    pub pid: Pid,
    /// The reader's CPU (`None` before per-CPU setup).
    pub cpu: Option<usize>,
}

/// Readers that met poison: a reader the RCU let outlive its grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoisonReport {
    pub sightings: u64,
    pub first: Option<PoisonSighting>,
}

impl fmt::Display for PoisonReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} poison sightings", self.sightings)?;
        if let Some(first) = self.first {
            write!(f, " (first: pid {}", first.pid)?;
            match first.cpu {
                Some(cpu) => write!(f, " on cpu{cpu})"),
                None => write!(f, ")"),
            }?;
        }
        Ok(())
    }
}

/// The list's record of poison sightings. `first` packs a set flag, the CPU + 1 (0: none) and
/// the pid into one word, so the first sighting is claimed with one compare-and-swap.
struct PoisonLog {
    sightings: AtomicU64,
    first: AtomicU64,
    logged: AtomicBool,
}

const FIRST_SET: u64 = 1 << 63;

impl PoisonLog {
    const fn new() -> Self {
        PoisonLog {
            sightings: AtomicU64::new(0),
            first: AtomicU64::new(0),
            logged: AtomicBool::new(false),
        }
    }

    #[cold]
    fn saw(&self, magic: u64, pid_field: Pid, cpu: Option<usize>) {
        // A poisoned magic keeps the pid; anything else (the allocator's link, garbage) does
        // not, and the pid field is the best guess left.
        let pid = if magic >> 32 == POISON_TAG {
            magic as u32
        } else {
            pid_field
        };
        self.sightings.fetch_add(1, Ordering::Relaxed);
        let cpu_field = cpu.map_or(0, |c| c as u64 + 1) & 0x7fff_ffff;
        let packed = FIRST_SET | cpu_field << 32 | u64::from(pid);
        let _ = self
            .first
            .compare_exchange(0, packed, Ordering::Relaxed, Ordering::Relaxed);
        if !self.logged.swap(true, Ordering::Relaxed) {
            log::error!(target: "proclist",
                "BUG: a reader on cpu{} met pid {pid}'s node after its grace period (magic {magic:#018x}): \
                 the RCU let a reader outlive a grace period",
                cpu.map_or(-1, |c| c as isize)
            );
        }
    }

    fn report(&self) -> PoisonReport {
        let first = self.first.load(Ordering::Relaxed);
        PoisonReport {
            sightings: self.sightings.load(Ordering::Relaxed),
            first: (first & FIRST_SET != 0).then(|| {
                let cpu = (first >> 32) & 0x7fff_ffff;
                PoisonSighting {
                    pid: first as u32,
                    cpu: cpu.checked_sub(1).map(|c| c as usize),
                }
            }),
        }
    }
}

// ----- the list -----------------------------------------------------------------------------

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

/// Removed nodes in order of removal, linked through `retired_next`: waiting for their grace
/// period, then poisoned, until the list frees them.
struct Quarantine<T> {
    first: *mut ProcNode<T>,
    last: *mut ProcNode<T>,
    len: usize,
}

// SAFETY: the pointers are to nodes the list owns; they are reached only under the writer lock.
unsafe impl<T: Send + Sync> Send for Quarantine<T> {}

impl<T> Quarantine<T> {
    const fn new() -> Self {
        Quarantine {
            first: core::ptr::null_mut(),
            last: core::ptr::null_mut(),
            len: 0,
        }
    }

    fn push(&mut self, node: NonNull<ProcNode<T>>) {
        // SAFETY: a retired node stays allocated while it is in the quarantine.
        unsafe { node.as_ref() }
            .retired_next
            .store(core::ptr::null_mut(), Ordering::Relaxed);
        if self.last.is_null() {
            self.first = node.as_ptr();
        } else {
            // SAFETY: `last` is in the quarantine, hence allocated.
            unsafe { &*self.last }
                .retired_next
                .store(node.as_ptr(), Ordering::Relaxed);
        }
        self.last = node.as_ptr();
        self.len += 1;
    }

    /// Free up to `limit` nodes whose callbacks have run, oldest first (a node still waiting
    /// for its grace period is skipped, not waited for). Returns how many were freed.
    fn free_reclaimed(&mut self, limit: usize) -> usize {
        let mut freed = 0;
        let mut prev: *mut ProcNode<T> = core::ptr::null_mut();
        let mut p = self.first;
        while freed < limit
            && let Some(node) = NonNull::new(p)
        {
            // SAFETY: nodes in the quarantine are allocated until freed right here.
            let n = unsafe { node.as_ref() };
            p = n.retired_next.load(Ordering::Relaxed);
            // Acquire: the callback's poisoning happens before our free.
            if !n.reclaimed.load(Ordering::Acquire) {
                prev = node.as_ptr();
                continue;
            }
            if prev.is_null() {
                self.first = p;
            } else {
                // SAFETY: `prev` is in the quarantine, hence allocated.
                unsafe { &*prev }.retired_next.store(p, Ordering::Relaxed);
            }
            if self.last == node.as_ptr() {
                self.last = prev;
            }
            self.len -= 1;
            freed += 1;
            // SAFETY: the node came from Box::leak in `insert`; its callback has run (it
            // dropped the payload, which the MaybeUninit will not drop again), and nothing
            // refers to it: the list unlinked it a grace period ago and it just left the
            // quarantine.
            drop(unsafe { Box::from_raw(node.as_ptr()) });
        }
        freed
    }

    /// True if some node has not been through its callback yet.
    fn waiting(&self) -> bool {
        let mut p = self.first;
        while let Some(node) = NonNull::new(p) {
            // SAFETY: nodes in the quarantine are allocated.
            let n = unsafe { node.as_ref() };
            if !n.reclaimed.load(Ordering::Acquire) {
                return true;
            }
            p = n.retired_next.load(Ordering::Relaxed);
        }
        false
    }
}

/// The process list: lock-free readers under an RCU read guard, writers serialised by one
/// spin lock, removed nodes reclaimed after a grace period. `R` is the RCU it runs on.
pub struct ProcessList<T: Send + Sync + 'static, R: ListRcu = GlobalRcu> {
    rcu: R,
    list: RcuList<ProcNode<T>>,
    /// Writers' lock; it also guards the quarantine. Plain, not IRQ-safe: writers run in
    /// process context, and the callbacks (which do run in interrupt context) never take it.
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

/// The process-list torture test, portable: the host tests run it on threads playing CPUs
/// ([`Torture::run_on_threads`]), the kernel on its CPUs (src/ktest/proclist.rs).
///
/// Every CPU both reads and writes. A round is a walk over the whole list, a few lookups of
/// pids that are never removed (`1..=STABLE`) and of the CPU's own live pids, then one write:
/// insert a fresh pid, or, once the CPU owns [`OWN`] of them, remove its oldest and check that
/// its own next reader no longer finds it. Readers dawdle at random on nodes, so that writers
/// change the list under them. Each CPU does its share of rounds and then keeps going (up to
/// `CAP_FACTOR` times its share) until every CPU has done its share: under QEMU four vCPUs share
/// two host cores, and a CPU that stopped early would leave the others racing nobody. A round
/// ends with the CPU's `tick` (a quiescent state, and its ready callbacks run). Bounded in
/// rounds, not in time.
///
/// With a correct RCU no reader may meet poison, miss a pid that is on the list, see a payload
/// that is not its pid's, or find a node its own CPU removed. With the broken RCU the poison
/// check must fire (the broken runs do not read payloads: see the module doc).
pub mod torture {
    use core::fmt;
    use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

    use super::{ListRcu, Pid, PoisonReport, ProcListStats, ProcessList};
    use crate::rcu::RcuReadGuard;
    // xorshift: each CPU dawdles differently.
    use crate::rcu::torture::Rng;

    /// Pids `1..=STABLE` are on the list for the whole run.
    pub const STABLE: Pid = 32;
    /// The first fresh pid a CPU inserts; fresh pids are never reused.
    pub const FIRST_FRESH: Pid = 1000;
    /// Fresh pids a CPU owns at most before it removes its oldest.
    pub const OWN: usize = 4;
    /// A CPU's rounds are capped at this many times its share.
    const CAP_FACTOR: u64 = 8;
    const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

    /// What the torture list holds: the pid again and a check word derived from it.
    pub struct Payload {
        pid: Pid,
        check: u64,
    }

    impl Payload {
        fn new(pid: Pid) -> Self {
            Payload {
                pid,
                check: u64::from(pid).wrapping_mul(GOLDEN),
            }
        }

        fn is_for(&self, pid: Pid) -> bool {
            self.pid == pid && self.check == u64::from(pid).wrapping_mul(GOLDEN)
        }
    }

    /// One run over an RCU `R`.
    pub struct Torture<R: ListRcu> {
        list: ProcessList<Payload, R>,
        cpus: usize,
        share: u64,
        check_payload: bool,
        next_pid: AtomicU32,
        done: AtomicUsize,
        completed_at_start: u64,
        rounds: AtomicU64,
        walks: AtomicU64,
        nodes: AtomicU64,
        lookups: AtomicU64,
        inserts: AtomicU64,
        removes: AtomicU64,
        misses: AtomicU64,
        corrupt: AtomicU64,
        stale: AtomicU64,
    }

    /// What a run found.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct TortureReport {
        pub flavor: &'static str,
        pub cpus: usize,
        pub rounds: u64,
        pub walks: u64,
        /// Nodes visited by walks.
        pub nodes: u64,
        pub lookups: u64,
        pub inserts: u64,
        pub removes: u64,
        pub grace_periods: u64,
        /// Lookups that did not find a pid that was on the list.
        pub misses: u64,
        /// Payloads that did not belong to their pid.
        pub corrupt: u64,
        /// Pids a CPU still found right after it removed them itself.
        pub stale: u64,
        pub poison: PoisonReport,
        /// The list after `finish`: empty, everything removed and freed.
        pub stats: ProcListStats,
    }

    impl TortureReport {
        pub fn passed(&self) -> bool {
            self.poison.sightings == 0 && self.misses == 0 && self.corrupt == 0 && self.stale == 0
        }

        /// The poison check fired: what a broken RCU must produce.
        pub fn caught(&self) -> bool {
            self.poison.sightings > 0
        }
    }

    impl fmt::Display for TortureReport {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            writeln!(
                f,
                "proclist-torture: {}: {} CPUs, {} rounds, {} walks ({} nodes), {} lookups, \
                 {} inserts, {} removes, {} grace periods",
                self.flavor,
                self.cpus,
                self.rounds,
                self.walks,
                self.nodes,
                self.lookups,
                self.inserts,
                self.removes,
                self.grace_periods
            )?;
            writeln!(
                f,
                "proclist-torture: {} misses, {} corrupt payloads, {} stale finds, {}",
                self.misses, self.corrupt, self.stale, self.poison
            )?;
            let s = &self.stats;
            writeln!(
                f,
                "proclist-torture: list after: {} left, {} inserted, {} removed, {} retired, \
                 {} freed from quarantine",
                s.len, s.inserted, s.removed, s.retired, s.freed
            )?;
            if self.passed() {
                write!(f, "proclist-torture: {}: PASS", self.flavor)
            } else {
                write!(f, "!!! proclist-torture: {}: FAIL", self.flavor)
            }
        }
    }

    /// Per-CPU tallies, added to the shared ones once at the end.
    #[derive(Default)]
    struct Tally {
        rounds: u64,
        walks: u64,
        nodes: u64,
        lookups: u64,
        inserts: u64,
        removes: u64,
        misses: u64,
        corrupt: u64,
        stale: u64,
    }

    impl<R: ListRcu> Torture<R> {
        /// A run on CPUs `0..cpus`, each doing `share` rounds (more while others finish).
        /// `check_payload`: readers read payloads (never with a broken RCU). `quarantine`:
        /// poisoned nodes kept before the oldest is freed.
        pub fn new(
            rcu: R,
            cpus: usize,
            share: u64,
            check_payload: bool,
            quarantine: usize,
        ) -> Self {
            let completed_at_start = rcu.completed();
            let list = ProcessList::with_quarantine(rcu, quarantine);
            for pid in 1..=STABLE {
                assert!(
                    list.insert(pid, Payload::new(pid)).is_ok(),
                    "pid {pid} twice"
                );
            }
            Torture {
                list,
                cpus,
                share,
                check_payload,
                next_pid: AtomicU32::new(FIRST_FRESH),
                done: AtomicUsize::new(0),
                completed_at_start,
                rounds: AtomicU64::new(0),
                walks: AtomicU64::new(0),
                nodes: AtomicU64::new(0),
                lookups: AtomicU64::new(0),
                inserts: AtomicU64::new(0),
                removes: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                corrupt: AtomicU64::new(0),
                stale: AtomicU64::new(0),
            }
        }

        pub fn list(&self) -> &ProcessList<Payload, R> {
            &self.list
        }

        /// Pids handed out so far: `FIRST_FRESH..next_fresh()`.
        pub fn next_fresh(&self) -> Pid {
            self.next_pid.load(Ordering::Relaxed)
        }

        /// This CPU's part (every CPU reads and writes). Returns once every CPU did its share
        /// (or this one reached its cap) and its own pids are removed. The callbacks of its
        /// removals may still be queued: its tick runs them (`finish` waits for them all).
        pub fn run_cpu(&self, cpu: usize) {
            assert!(cpu < self.cpus, "cpu{cpu} is not part of this run");
            let rcu = self.list.rcu();
            rcu.cpu_online(cpu);
            let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ ((cpu as u64 + 1) * 0x1234_5678_9abc_def1));
            let mut own = [0 as Pid; OWN];
            let mut n_own = 0;
            let mut t = Tally::default();
            let mut counted = false;
            loop {
                {
                    let g = self.list.read_lock_on(cpu);
                    self.walk(&g, &mut rng, &mut t);
                }
                for _ in 0..2 {
                    let stable = 1 + (rng.next() % u64::from(STABLE)) as Pid;
                    self.look(cpu, stable, &mut t);
                    if n_own > 0 {
                        let mine = own[(rng.next() % n_own as u64) as usize];
                        self.look(cpu, mine, &mut t);
                    }
                }
                if n_own < OWN {
                    let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
                    if self.list.insert(pid, Payload::new(pid)).is_err() {
                        t.misses += 1; // a fresh pid cannot be on the list
                    }
                    own[n_own] = pid;
                    n_own += 1;
                    t.inserts += 1;
                } else {
                    let pid = own[0];
                    own.copy_within(1.., 0);
                    n_own -= 1;
                    if !self.list.remove_on(cpu, pid) {
                        t.misses += 1;
                    }
                    t.removes += 1;
                    let g = self.list.read_lock_on(cpu);
                    if self.list.lookup(pid, &g).is_some() {
                        t.stale += 1;
                    }
                }
                // Between read-side sections this CPU is quiescent: report it, run callbacks.
                rcu.tick(cpu);
                t.rounds += 1;
                if !counted && t.rounds >= self.share {
                    counted = true;
                    self.done.fetch_add(1, Ordering::AcqRel);
                }
                if counted
                    && (self.done.load(Ordering::Acquire) >= self.cpus
                        || t.rounds >= self.share * CAP_FACTOR)
                {
                    break;
                }
            }
            for &pid in &own[..n_own] {
                if !self.list.remove_on(cpu, pid) {
                    t.misses += 1;
                }
                t.removes += 1;
            }
            for (total, n) in [
                (&self.rounds, t.rounds),
                (&self.walks, t.walks),
                (&self.nodes, t.nodes),
                (&self.lookups, t.lookups),
                (&self.inserts, t.inserts),
                (&self.removes, t.removes),
                (&self.misses, t.misses),
                (&self.corrupt, t.corrupt),
                (&self.stale, t.stale),
            ] {
                total.fetch_add(n, Ordering::Relaxed);
            }
        }

        fn walk(&self, g: &RcuReadGuard<'_>, rng: &mut Rng, t: &mut Tally) {
            t.walks += 1;
            for (pid, payload) in self.list.iter(g) {
                t.nodes += 1;
                if self.check_payload && !payload.is_for(pid) {
                    t.corrupt += 1;
                }
                // Dawdle now and then, with the next node's address already loaded: the time
                // a writer needs to unlink (and a broken RCU to free) the node we go to next.
                let r = rng.next();
                if r.is_multiple_of(4) {
                    for _ in 0..(r >> 40) % 64 {
                        core::hint::spin_loop();
                    }
                }
                if r % 256 == 1 {
                    crate::arch::cpu_relax(); // on the host this gives the core away
                }
            }
        }

        fn look(&self, cpu: usize, pid: Pid, t: &mut Tally) {
            let g = self.list.read_lock_on(cpu);
            t.lookups += 1;
            match self.list.lookup(pid, &g) {
                Some(payload) if self.check_payload && !payload.is_for(pid) => t.corrupt += 1,
                Some(_) => {}
                None => t.misses += 1,
            }
        }

        /// After every CPU's `run_cpu`: remove the stable pids (on behalf of `cpu`, the
        /// caller's), wait for all callbacks, empty the quarantine, and report.
        pub fn finish(&self, cpu: usize) -> TortureReport {
            let mut misses = 0;
            for pid in 1..=STABLE {
                if !self.list.remove_on(cpu, pid) {
                    misses += 1;
                }
            }
            self.list.flush_quarantine(Some(cpu));
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            TortureReport {
                flavor: self.list.rcu().name(),
                cpus: self.cpus,
                rounds: load(&self.rounds),
                walks: load(&self.walks),
                nodes: load(&self.nodes),
                lookups: load(&self.lookups),
                inserts: load(&self.inserts),
                removes: load(&self.removes),
                grace_periods: self.list.rcu().completed() - self.completed_at_start,
                misses: load(&self.misses) + misses,
                corrupt: load(&self.corrupt),
                stale: load(&self.stale),
                poison: self.list.poison_report(),
                stats: self.list.stats(),
            }
        }

        /// Run on threads playing CPUs `0..cpus`, then `finish` (host only). Each thread takes
        /// its CPU offline when done, so later grace periods do not wait for a CPU nobody plays.
        #[cfg(not(target_os = "none"))]
        pub fn run_on_threads(&self) -> TortureReport
        where
            R: Send,
        {
            let start = std::sync::Barrier::new(self.cpus);
            std::thread::scope(|s| {
                for cpu in 0..self.cpus {
                    let start = &start;
                    s.spawn(move || {
                        start.wait();
                        self.run_cpu(cpu);
                        // Nobody ticks this CPU once its thread ends: run its callbacks (and
                        // wait for everyone's queued so far), then leave.
                        self.list.rcu().callbacks_barrier(Some(cpu));
                        self.list.rcu().cpu_offline(cpu);
                    });
                }
            });
            self.finish(0)
        }
    }
}

#[cfg(test)]
mod tests {
    //! Threads play CPUs by naming them (`remove_on(cpu, ..)`, `read_lock_on(cpu)`), as in the
    //! RCU core's tests: nothing installs per-CPU areas, so tests may run in parallel.
    use super::torture::{FIRST_FRESH, Torture};
    use super::*;
    use std::sync::Arc;
    use std::vec::Vec;

    /// A payload that counts its drops.
    struct Counted(Arc<AtomicUsize>, u64);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn pids<T: Send + Sync, R: ListRcu>(list: &ProcessList<T, R>, cpu: usize) -> Vec<Pid> {
        let g = list.read_lock_on(cpu);
        list.iter(&g).map(|(pid, _)| pid).collect()
    }

    /// The kernel's list is a `static` on the global RCU: the constructor is a `const fn`.
    #[test]
    fn a_list_on_the_global_rcu_can_be_a_static() {
        static LIST: ProcessList<u64> = ProcessList::new(GlobalRcu);
        assert!(LIST.is_empty());
        assert_eq!(LIST.stats().inserted, 0);
    }

    #[test]
    fn insert_lookup_iterate_remove() {
        let rcu = Rcu::new();
        rcu.cpu_online(0);
        let list: ProcessList<u64, &Rcu> = ProcessList::new(&rcu);
        for pid in 1..=3 {
            assert!(list.insert(pid, u64::from(pid) * 10).is_ok());
        }
        assert_eq!(list.insert(2, 99), Err(99), "pid 2 is taken");
        assert_eq!(pids(&list, 0), [3, 2, 1], "newest first");
        assert_eq!(list.len(), 3);
        {
            let g = list.read_lock_on(0);
            assert_eq!(list.lookup(2, &g), Some(&20));
            assert_eq!(list.lookup(7, &g), None);
            let mut sum = 0;
            list.for_each(&g, |pid, v| sum += u64::from(pid) + v);
            assert_eq!(sum, 6 + 60);
        }
        assert!(list.remove_on(0, 2));
        assert!(!list.remove_on(0, 2), "already gone");
        assert_eq!(pids(&list, 0), [3, 1]);
        let s = list.stats();
        assert_eq!((s.len, s.inserted, s.removed), (2, 3, 1));
        assert_eq!(list.flush_quarantine(Some(0)), usize::from(POISONING));
        assert_eq!(list.stats().retired, 0);
        assert_eq!(list.poison_report().sightings, 0);
    }

    /// A reader holds a payload across a removal: the node is neither dropped nor poisoned
    /// until the reader's CPU has passed a quiescent state, however often the writer ticks.
    #[test]
    fn a_removed_node_outlives_the_readers_that_saw_it() {
        let rcu = Rcu::new();
        rcu.cpu_online(0);
        rcu.cpu_online(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let list: ProcessList<Counted, &Rcu> = ProcessList::new(&rcu);
        assert!(list.insert(5, Counted(drops.clone(), 55)).is_ok());
        let g = list.read_lock_on(1);
        let held = list.lookup(5, &g).unwrap();
        assert!(list.remove_on(0, 5));
        for _ in 0..20 {
            rcu.tick(0);
        }
        assert_eq!(held.1, 55, "the payload is intact under the reader");
        assert_eq!(drops.load(Ordering::Relaxed), 0, "dropped under a reader");
        assert!(
            !POISONING || list.writer.lock().waiting(),
            "reclaimed under a reader"
        );
        drop(g);
        rcu.tick(1);
        rcu.tick(0);
        rcu.tick(0);
        assert_eq!(
            drops.load(Ordering::Relaxed),
            1,
            "dropped once the reader left"
        );
        list.flush_quarantine(Some(0));
        assert_eq!(list.stats().retired, 0);
        drop(list);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
    }

    /// The callback poisons the node (magic, pid and payload bytes) and the quarantine keeps
    /// it readable; a reader that still stands on it counts a sighting with the node's pid.
    #[test]
    fn the_callback_poisons_and_a_late_reader_is_reported() {
        if !POISONING {
            return;
        }
        let rcu = Rcu::new();
        rcu.cpu_online(0);
        let list: ProcessList<u64, &Rcu> = ProcessList::new(&rcu);
        assert!(list.insert(7, 0x1234).is_ok());
        let node = {
            let g = list.read_lock_on(0);
            NonNull::from(list.list.iter(&g).next().unwrap())
        };
        assert!(list.remove_on(0, 7));
        list.rcu().callbacks_barrier(Some(0));
        // SAFETY: the node is in quarantine (not freed before flush_quarantine).
        let n = unsafe { node.as_ref() };
        assert_eq!(n.magic.load(Ordering::Relaxed), POISON_TAG << 32 | 7);
        assert_eq!(n.pid(), POISON_PID);
        // SAFETY: as above; the payload's bytes are plain memory now.
        let bytes = unsafe { *n.payload.get().cast::<[u8; 8]>() };
        assert_eq!(bytes, [POISON_BYTE; 8]);
        // What a reader the grace period missed would do next: check the node.
        let magic = n.check().unwrap_err();
        list.poison.saw(magic, n.pid(), Some(3));
        assert_eq!(
            list.poison_report(),
            PoisonReport {
                sightings: 1,
                first: Some(PoisonSighting {
                    pid: 7,
                    cpu: Some(3)
                })
            }
        );
        assert_eq!(list.flush_quarantine(Some(0)), 1);
    }

    /// The quarantine keeps at most its size of poisoned nodes; the oldest go first.
    #[test]
    fn the_quarantine_is_bounded_and_frees_the_oldest() {
        if !POISONING {
            return;
        }
        let rcu = Rcu::new();
        rcu.cpu_online(0);
        let drops = Arc::new(AtomicUsize::new(0));
        let list: ProcessList<Counted, &Rcu> = ProcessList::with_quarantine(&rcu, 4);
        for pid in 1..=10 {
            assert!(list.insert(pid, Counted(drops.clone(), 0)).is_ok());
        }
        for pid in 1..=10 {
            assert!(list.remove_on(0, pid));
            rcu.synchronize_on(Some(0));
            rcu.process_callbacks(0);
        }
        assert_eq!(
            drops.load(Ordering::Relaxed),
            10,
            "every payload dropped at poisoning"
        );
        let s = list.stats();
        assert!(s.retired <= 5, "{s:?}");
        assert_eq!(s.freed as usize + s.retired, 10, "{s:?}");
        let q = list.writer.lock();
        // SAFETY: the first quarantined node is allocated.
        let oldest = unsafe { &*q.first }.magic.load(Ordering::Relaxed) as u32;
        assert!(
            oldest > 5,
            "pid {oldest} should have left the quarantine first"
        );
        drop(q);
        list.flush_quarantine(Some(0));
        assert_eq!(list.stats().freed, 10);
    }

    #[test]
    fn dropping_the_list_drops_every_payload_once() {
        let rcu = Rcu::new();
        rcu.cpu_online(0);
        let drops = Arc::new(AtomicUsize::new(0));
        let list: ProcessList<Counted, &Rcu> = ProcessList::new(&rcu);
        for pid in 1..=8 {
            assert!(list.insert(pid, Counted(drops.clone(), 0)).is_ok());
        }
        assert!(list.remove_on(0, 3));
        assert!(list.remove_on(0, 4));
        // Two removed, their callbacks not run yet. With poisoning the list still holds them,
        // and Drop must wait for their callbacks (an rcu_barrier, while cpu0's tick, on another
        // thread, runs them) before it frees them; without, the callbacks free them on their
        // own, and the barrier is ours.
        let dropped = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !dropped.load(Ordering::Acquire) {
                    rcu.tick(0);
                    std::thread::yield_now();
                }
            });
            drop(list);
            if !POISONING {
                rcu.barrier_on(None);
            }
            dropped.store(true, Ordering::Release);
        });
        assert_eq!(drops.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn real_rcu_passes_the_process_list_torture() {
        let t = Torture::new(Rcu::new(), 4, 300, true, DEFAULT_QUARANTINE);
        let report = t.run_on_threads();
        std::println!("{report}");
        assert!(report.passed(), "{report}");
        assert!(report.rounds >= 4 * 300, "{report}");
        assert!(
            report.removes > 0 && report.inserts == report.removes,
            "{report}"
        );
        let s = report.stats;
        assert_eq!(s.len, 0, "{report}");
        assert_eq!(s.inserted, s.removed, "{report}");
        assert_eq!(s.retired, 0, "{report}");
        if POISONING {
            assert_eq!(s.freed, s.removed, "{report}");
        }
    }

    /// The same torture on the broken RCU must meet poison: bounded runs, longer each time.
    /// The quarantine keeps every node until the end, so no reader ever reads freed memory.
    #[test]
    fn broken_rcu_is_caught_by_the_poison_check() {
        if !POISONING {
            return;
        }
        for attempt in 1..=5 {
            let t = Torture::new(BrokenRcu::new(), 4, 500 * attempt, false, usize::MAX);
            let report = t.run_on_threads();
            std::println!("{report}");
            if report.caught() {
                let first = report.poison.first.expect("a sighting has a first one");
                assert!(
                    (FIRST_FRESH..t.next_fresh()).contains(&first.pid),
                    "pid {} was never removed: {report}",
                    first.pid
                );
                assert!(first.cpu.is_some_and(|c| c < 4), "{report}");
                assert_eq!(report.stats.retired, 0, "{report}");
                return;
            }
        }
        panic!("the poison check did not catch an RCU whose grace periods are empty");
    }
}
