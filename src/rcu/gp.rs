//! Readers, quiescent states and grace periods: the heart of RCU (chapter 18, "RCU").
//!
//! A reader marks its CPU busy with a per-CPU nesting count and never blocks or gets
//! preempted inside (so `read_lock` also disables preemption). A CPU whose count is zero at a
//! point the kernel reports (the tick, the idle loop, a context switch) is in a *quiescent
//! state*: it holds no reference to anything RCU protects. A *grace period* is over once every
//! online CPU has passed a quiescent state after the period began; anything unpublished before
//! it began can then be freed, because every reader that could have seen it has finished.
//!
//! The state is a sequence word and a small tree of CPU masks:
//! - `gp_seq` counts half-periods: even while no grace period runs, odd while one does. The
//!   number of completed grace periods is `gp_seq / 2`. A writer that needs "one whole grace
//!   period from now" snapshots it and waits for [`Rcu::snapshot`]'s target: the end of the
//!   next grace period that starts after the snapshot (if one is already running it may have
//!   begun before the writer's update, so it does not count).
//! - `leaves`: one word per group of 16 CPUs (a *leaf*; CPUs 0-15 are leaf 0, 16-31 leaf 1,
//!   and so on up to `MAX_CPUS`). A leaf's word holds two masks: its online CPUs in the high
//!   half and, while a grace period runs, the CPUs that still owe it a quiescent state in the
//!   low half. Starting a grace period copies a leaf's online half into its pending half in one
//!   atomic step, so a CPU coming online or going offline either is counted or is not, never
//!   half of each.
//! - `root`: one bit per leaf the running grace period still waits for. The CPU that clears the
//!   last pending bit of a leaf clears that leaf's root bit; the one that clears the last root
//!   bit ends the grace period.
//!
//! Why a tree and not one big mask: the copy from online to pending must be one atomic step
//! with respect to CPUs coming and going, so both masks of a CPU must share a word, and a word
//! has 64 bits: 32 CPUs at most. A leaf takes 16, as Linux's tree RCU does by default, so that
//! no more than 16 CPUs fight over one word's cache line when they report; the root then has one
//! bit per leaf, and the CPU that finishes a leaf is the only one of its group to touch it.
//!
//! Three rules keep a report from getting lost and the period from ending early:
//! - The starter sets a root bit for every leaf *before* it fills any leaf's pending half. A
//!   leaf whose CPUs all report at once, while a later leaf is not yet filled, clears only its
//!   own root bit; the unfilled leaf's bit still holds the period open.
//! - Every root bit is cleared exactly once: by the CPU whose report or offlining took its
//!   leaf's pending half from non-zero to zero, or by the starter itself when the leaf had no
//!   CPU online to copy. A report before its leaf is filled finds no pending bit and changes
//!   nothing; the CPU reports again at its next tick.
//! - A CPU speaks only in its own leaf, with one read-modify-write, so two CPUs of one leaf
//!   clearing their bits at once are ordered by the word, and exactly one of them sees the
//!   other's bit already gone.
//!
//! The cost grows with the CPUs that take part, not with the limit: a report touches its own
//! leaf (and the root once per leaf per period); a start touches each of the `MAX_CPUS / 16`
//! leaves once, four words in a kernel built for 64 CPUs.
//!
//! Memory ordering, the reason it works: a reader's loads come before its CPU's next
//! quiescent-state report in program order; the report is a read-modify-write (AcqRel) on its
//! leaf, so the CPU that clears the leaf's last bit happens after every reader counted in the
//! leaf; its clearing of the root bit is an AcqRel read-modify-write on `root`, so the CPU that
//! clears the last root bit, and the `gp_seq` increment it makes, happen after every reader
//! that was running when the period began. The writer sees that increment
//! with an acquire load and only then frees. In the other direction the writer's snapshot is a
//! read-modify-write on `gp_seq` too, so whoever starts the grace period has seen the writer's
//! unpublish, and so has every CPU whose report is counted: a reader that starts after its
//! CPU's report cannot find the old pointer.
//!
//! Under loom (`make loom`) `gp_seq`, the leaves and the root are loom's atomics; the models at
//! the bottom run a reader against a writer that frees, with the real and with the broken RCU,
//! with the reader in the writer's leaf and in another; and CPUs of two leaves reporting and
//! going offline while a grace period starts.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicPtr as PlainAtomicPtr, AtomicU32, compiler_fence};

use super::callback::CallbackQueue;
use crate::config::MAX_CPUS;
use crate::cpumask::CpuMask;
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::sync::preempt;
use crate::sync::shim::{AtomicU64, Ordering, const_unless_loom};

/// CPUs per leaf: a leaf's word holds their pending bits (low half) and online bits (high half).
pub const CPUS_PER_LEAF: usize = 16;
/// Leaves for `MAX_CPUS` CPUs.
pub const LEAVES: usize = MAX_CPUS.div_ceil(CPUS_PER_LEAF);

const _: () = assert!(LEAVES <= 64, "the root has one bit per leaf");

const _: () = assert!(
    CPUS_PER_LEAF <= 32,
    "both halves of a leaf share one 64-bit word"
);

/// Pending CPUs live in the low half of a leaf's word, online CPUs in the high half.
const ONLINE_SHIFT: u32 = 32;
const PENDING_MASK: u64 = (1 << ONLINE_SHIFT) - 1;

/// `cpu`'s leaf, and its pending bit in the leaf's word.
fn leaf_and_bit(cpu: usize) -> (usize, u64) {
    assert!(cpu < MAX_CPUS, "cpu{cpu} is beyond MAX_CPUS");
    (cpu / CPUS_PER_LEAF, 1 << (cpu % CPUS_PER_LEAF))
}

#[cfg(not(loom))]
const fn empty_leaves() -> [AtomicU64; LEAVES] {
    [const { AtomicU64::new(0) }; LEAVES]
}

/// Loom's atomics are built at run time, inside the model.
#[cfg(loom)]
fn empty_leaves() -> [AtomicU64; LEAVES] {
    core::array::from_fn(|_| AtomicU64::new(0))
}

/// One RCU domain. The kernel has one ([`super::global`]); tests build their own so that they
/// do not share state while running in parallel.
pub struct Rcu {
    /// Even: idle; odd: a grace period is running. Completed grace periods = gp_seq / 2.
    gp_seq: AtomicU64,
    /// Per leaf of `CPUS_PER_LEAF` CPUs: online CPUs (high half) and CPUs the running grace period still
    /// waits for (low half).
    leaves: [AtomicU64; LEAVES],
    /// One bit per leaf the running grace period still waits for.
    root: AtomicU64,
    /// Read-side nesting per CPU. Only the CPU itself changes it; an interrupt handler on the
    /// same CPU (the tick) reads it, which program order makes safe.
    nesting: PerCpu<AtomicU32>,
    /// Per-CPU `call_rcu` callbacks (src/rcu/callback.rs).
    pub(super) callbacks: PerCpu<CallbackQueue>,
    /// How a waiting CPU passes time: a `fn()` stored as a pointer; null means `cpu_relax`.
    wait_hook: PlainAtomicPtr<()>,
}

impl Default for Rcu {
    fn default() -> Self {
        Self::new()
    }
}

impl Rcu {
    const_unless_loom! {
        /// No CPU online, no grace period run yet.
        pub const fn new() -> Self {
            Rcu {
                gp_seq: AtomicU64::new(0),
                leaves: empty_leaves(),
                root: AtomicU64::new(0),
                nesting: PerCpu::new([const { CacheAligned(AtomicU32::new(0)) }; MAX_CPUS]),
                callbacks: PerCpu::new(CallbackQueue::per_cpu()),
                wait_hook: PlainAtomicPtr::new(core::ptr::null_mut()),
            }
        }
    }

    // ----- CPUs ------------------------------------------------------------------------------

    /// `cpu` takes part in grace periods from now on. Call it on the CPU itself before it
    /// runs its first reader (the kernel: on each CPU's boot path).
    pub fn cpu_online(&self, cpu: usize) {
        let (leaf, b) = leaf_and_bit(cpu);
        self.leaves[leaf].fetch_or(b << ONLINE_SHIFT, Ordering::AcqRel);
    }

    /// `cpu` leaves: no grace period waits for it any more, and any running one stops waiting
    /// for it. It must not be inside a reader and must run no more readers until it comes
    /// back online. Its queued callbacks stay queued until it processes them again. (The
    /// kernel has no CPU hot-unplug yet; host tests use this when a thread playing a CPU ends.)
    pub fn cpu_offline(&self, cpu: usize) {
        self.assert_not_reading(cpu, "cpu_offline");
        let (leaf, b) = leaf_and_bit(cpu);
        let old = self.leaves[leaf].fetch_and(!(b | b << ONLINE_SHIFT), Ordering::AcqRel);
        if old & b != 0 && old & PENDING_MASK & !b == 0 {
            self.leaf_done(leaf);
        }
    }

    /// The online CPUs.
    pub fn online_mask(&self) -> CpuMask {
        let mut mask = CpuMask::EMPTY;
        for (leaf, word) in self.leaves.iter().enumerate() {
            let mut online = word.load(Ordering::Relaxed) >> ONLINE_SHIFT;
            while online != 0 {
                mask.set(leaf * CPUS_PER_LEAF + online.trailing_zeros() as usize);
                online &= online - 1;
            }
        }
        mask
    }

    /// True if `cpu` takes part in grace periods.
    pub fn is_online(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && {
            let (leaf, b) = leaf_and_bit(cpu);
            self.leaves[leaf].load(Ordering::Relaxed) & (b << ONLINE_SHIFT) != 0
        }
    }

    // ----- readers ---------------------------------------------------------------------------

    /// Enter a read-side critical section on `cpu` (the calling CPU). Sections nest. Prefer
    /// the guards ([`Rcu::read_lock`], [`Rcu::read_lock_on`]), which unlock on drop and lend
    /// references; this raw pair is for callers that cannot hold a guard (the torture test).
    #[inline]
    pub fn raw_read_lock(&self, cpu: usize) {
        preempt::preempt_disable();
        self.enter(cpu);
    }

    /// Count a reader on `cpu`, whose preemption is already off.
    #[inline]
    fn enter(&self, cpu: usize) {
        let n = self.nesting.for_cpu(cpu);
        n.store(n.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        // Keep the compiler from hoisting the section's loads above the count that the tick,
        // interrupting this CPU, reads. The CPU itself sees its own accesses in order.
        compiler_fence(Ordering::SeqCst);
    }

    /// Leave the section `raw_read_lock` entered.
    ///
    /// # Panics
    /// If `cpu` is not in a read-side section: an unbalanced unlock would let a grace period
    /// end under a reader.
    #[inline]
    pub fn raw_read_unlock(&self, cpu: usize) {
        compiler_fence(Ordering::SeqCst);
        let n = self.nesting.for_cpu(cpu);
        let v = n.load(Ordering::Relaxed);
        assert!(v > 0, "rcu_read_unlock without rcu_read_lock on cpu{cpu}");
        n.store(v - 1, Ordering::Relaxed);
        preempt::preempt_enable();
    }

    /// Enter a read-side section on the calling CPU. References obtained through the guard
    /// (`RcuPointer::read`, `RcuList::iter`) cannot outlive it. Before per-CPU setup (only the
    /// boot CPU runs, so nobody can free anything under it) the guard counts nothing.
    #[inline]
    pub fn read_lock(&self) -> RcuReadGuard<'_> {
        // Preemption off before asking which CPU this is: a task preempted between the
        // question and the count could be moved, and would then count itself as a reader on
        // a CPU it no longer runs on, whose quiescent states would end grace periods under it.
        preempt::preempt_disable();
        let cpu = percpu::current_id();
        match cpu {
            Some(cpu) => self.enter(cpu),
            // No per-CPU area: nothing counted, and nothing for the guard to undo.
            None => preempt::preempt_enable(),
        }
        RcuReadGuard {
            rcu: self,
            cpu,
            _not_send: PhantomData,
        }
    }

    /// Enter a read-side section on `cpu`, which must be the calling CPU (host tests name it
    /// explicitly instead of installing a per-CPU area).
    pub fn read_lock_on(&self, cpu: usize) -> RcuReadGuard<'_> {
        self.raw_read_lock(cpu);
        RcuReadGuard {
            rcu: self,
            cpu: Some(cpu),
            _not_send: PhantomData,
        }
    }

    /// `cpu`'s read-side nesting depth.
    pub fn nesting(&self, cpu: usize) -> u32 {
        self.nesting.for_cpu(cpu).load(Ordering::Relaxed)
    }

    fn assert_not_reading(&self, cpu: usize, what: &str) {
        let depth = self.nesting(cpu);
        assert!(
            depth == 0,
            "{what} inside an RCU read-side critical section on cpu{cpu} (depth {depth}): \
             it would wait for its own reader forever"
        );
    }

    // ----- quiescent states ------------------------------------------------------------------

    // lab:rcu-gp begin
    /// Report that `cpu` (the calling CPU) passed a quiescent state, if it did: a CPU inside a
    /// read-side section (the tick interrupted a reader) reports nothing and `false` comes
    /// back. Cheap when no grace period waits for this CPU: one load.
    pub fn note_quiescent_state(&self, cpu: usize) -> bool {
        debug_assert!(
            percpu::current_id().is_none_or(|me| me == cpu),
            "cpu{:?} reported a quiescent state for cpu{cpu}",
            percpu::current_id()
        );
        if self.nesting(cpu) != 0 {
            return false;
        }
        let (leaf, b) = leaf_and_bit(cpu);
        let word = &self.leaves[leaf];
        // A relaxed look first: a report only counts through the read-modify-write below, and
        // one missed here is simply made at the next tick.
        if word.load(Ordering::Relaxed) & b != 0 {
            let old = word.fetch_and(!b, Ordering::AcqRel);
            // Only the CPU that took the leaf's pending half to zero speaks for the leaf.
            if old & b != 0 && old & PENDING_MASK & !b == 0 {
                self.leaf_done(leaf);
            }
        }
        true
    }

    /// Every CPU of `leaf` has reported (or left): clear its root bit, and end the grace period
    /// if it was the last. Called exactly once per leaf per grace period.
    fn leaf_done(&self, leaf: usize) {
        let b = 1 << leaf;
        let old = self.root.fetch_and(!b, Ordering::AcqRel);
        // Not a debug assertion: once per leaf per period is cheap, and a double report is a
        // period ended early, which must be loud in every build (loom's runs are release).
        assert!(old & b != 0, "leaf {leaf} reported done twice");
        if old == b {
            self.end_grace_period();
        }
    }
    // lab:rcu-gp end

    // ----- grace periods ---------------------------------------------------------------------

    /// The grace-period sequence (odd while one runs).
    pub fn gp_seq(&self) -> u64 {
        self.gp_seq.load(Ordering::Acquire)
    }

    /// Grace periods completed so far.
    pub fn completed(&self) -> u64 {
        self.gp_seq() / 2
    }

    pub fn gp_in_progress(&self) -> bool {
        self.gp_seq() & 1 != 0
    }

    // lab:rcu-gp begin
    /// The `gp_seq` value at which a full grace period will have elapsed since now. A
    /// read-modify-write rather than a load, so that whoever starts that grace period has
    /// seen everything this CPU did before (its unpublish).
    pub fn snapshot(&self) -> u64 {
        let s = self.gp_seq.fetch_add(0, Ordering::AcqRel);
        (s + 3) & !1
    }
    // lab:rcu-gp end

    /// True once `gp_seq` reached `target` (from [`Rcu::snapshot`]); everything the grace
    /// periods waited for happens before the caller's next step.
    pub fn is_done(&self, target: u64) -> bool {
        self.gp_seq.load(Ordering::Acquire) >= target
    }

    // lab:rcu-gp begin
    /// Start a grace period unless one is running. True if this call started one.
    pub fn start_grace_period(&self) -> bool {
        let s = self.gp_seq.load(Ordering::Relaxed);
        if s & 1 != 0
            || self
                .gp_seq
                .compare_exchange(s, s + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        // Every leaf owes the period until it is filled: the root first, so that a leaf that
        // finishes at once cannot end the period while a later leaf is still empty. The root
        // is 0 here (the last period ended when it became 0), and nothing else writes it while
        // no leaf has a pending bit.
        const ALL_LEAVES: u64 = if LEAVES == 64 {
            u64::MAX
        } else {
            (1 << LEAVES) - 1
        };
        let stale = self.root.swap(ALL_LEAVES, Ordering::AcqRel);
        debug_assert!(
            stale == 0,
            "a grace period started with leaves {stale:#x} still owed"
        );
        let mut anyone = false;
        for (leaf, word) in self.leaves.iter().enumerate() {
            // Copy the leaf's online CPUs into its pending half, in one step with respect to
            // CPUs coming and going. Until this lands, their reports change nothing.
            let mut online = 0;
            let _ = word.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                online = c >> ONLINE_SHIFT;
                Some((c & !PENDING_MASK) | online)
            });
            if online == 0 {
                // Nobody here to report: the starter speaks for the leaf.
                self.leaf_done(leaf);
            } else {
                anyone = true;
            }
        }
        if anyone {
            // A CPU without a working interrupt interface idles in WFE, and no tick ends that
            // wait: without an event it would sleep through the grace period it owes a report.
            crate::arch::send_event();
        }
        true
    }

    fn end_grace_period(&self) {
        let old = self.gp_seq.fetch_add(1, Ordering::AcqRel);
        assert!(old & 1 == 1, "ended a grace period that was not running");
        crate::arch::send_event();
    }
    // lab:rcu-gp end

    /// Wait for a full grace period, on behalf of the calling CPU (if it has a per-CPU id yet).
    pub fn synchronize(&self) {
        // Preemption off while checking, so that the CPU checked is the one we are on.
        preempt::preempt_disable();
        if let Some(cpu) = percpu::current_id() {
            self.assert_not_reading(cpu, "synchronize_rcu");
        }
        preempt::preempt_enable();
        // The caller may be preempted and moved to another CPU while it waits, so each report
        // is for the CPU it is on at that moment, made with preemption off: a CPU only ever
        // speaks for itself.
        self.wait_for_grace_period(|| {
            preempt::preempt_disable();
            if let Some(cpu) = percpu::current_id() {
                self.note_quiescent_state(cpu);
            }
            preempt::preempt_enable();
        });
    }

    /// Wait until every CPU online now has passed a quiescent state, so that every reader
    /// that might have seen something unpublished before the call has finished. `cpu` is the
    /// caller's CPU: it counts as quiescent while it waits.
    ///
    /// # Panics
    /// If called inside a read-side section on `cpu`: it would wait for itself forever.
    pub fn synchronize_on(&self, cpu: Option<usize>) {
        if let Some(cpu) = cpu {
            self.assert_not_reading(cpu, "synchronize_rcu");
        }
        self.wait_for_grace_period(|| {
            if let Some(cpu) = cpu {
                self.note_quiescent_state(cpu);
            }
        });
    }

    // lab:rcu-gp begin
    /// Start grace periods and wait until one that began after this call has ended; `report`
    /// reports the waiter's own CPU quiescent (it is in no reader while it waits).
    fn wait_for_grace_period(&self, report: impl Fn()) {
        let target = self.snapshot();
        loop {
            if self.is_done(target) {
                return;
            }
            self.start_grace_period();
            report();
            if self.is_done(target) {
                return;
            }
            self.wait();
        }
    }
    // lab:rcu-gp end

    // ----- the kernel's hooks ----------------------------------------------------------------

    /// The timer tick on `cpu`: a quiescent state unless it interrupted a reader, then the
    /// callbacks whose grace period is over.
    pub fn tick(&self, cpu: usize) {
        self.note_quiescent_state(cpu);
        self.process_callbacks(cpu);
    }

    /// The idle loop on `cpu`, before it waits for an interrupt: idle is never inside a
    /// reader, so this always reports.
    pub fn idle(&self, cpu: usize) {
        self.assert_not_reading(cpu, "the idle loop");
        self.tick(cpu);
    }

    /// A context switch on `cpu`. Readers disable preemption, so none can be running.
    ///
    /// # Panics
    /// If a reader is: it blocked or yielded inside its section.
    pub fn context_switch(&self, cpu: usize) {
        self.assert_not_reading(cpu, "context switch");
        self.note_quiescent_state(cpu);
    }

    /// Choose how waiting CPUs pass time in `synchronize` and `rcu_barrier`: the kernel's WFI
    /// for now, sleeping once there is a scheduler. The default is `cpu_relax`.
    pub fn set_wait_hook(&self, hook: fn()) {
        self.wait_hook.store(hook as *mut (), Ordering::Release);
    }

    pub(super) fn wait(&self) {
        let p = self.wait_hook.load(Ordering::Acquire);
        if p.is_null() {
            crate::arch::cpu_relax();
        } else {
            // SAFETY: the only non-null values ever stored are `fn()` pointers (set_wait_hook).
            let hook = unsafe { core::mem::transmute::<*mut (), fn()>(p) };
            hook();
        }
    }
}

/// A read-side critical section on one CPU; it ends when the guard is dropped. Not `Send`:
/// the section belongs to the CPU that entered it.
#[must_use = "the read-side section ends as soon as the guard is dropped"]
pub struct RcuReadGuard<'a> {
    rcu: &'a Rcu,
    cpu: Option<usize>,
    _not_send: PhantomData<*const ()>,
}

impl RcuReadGuard<'_> {
    /// The CPU the section runs on (None before per-CPU setup).
    pub fn cpu(&self) -> Option<usize> {
        self.cpu
    }
}

impl Drop for RcuReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(cpu) = self.cpu {
            self.rcu.raw_read_unlock(cpu);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

/// Loom models (`make loom`): a reader against a writer that frees, with the real RCU and with
/// the broken one, the reader in the writer's leaf and in another; and a grace period that
/// starts while a CPU of another leaf reports or goes offline. The freed object's payload is a loom `UnsafeCell`, so loom reports any
/// reader access that the free is not ordered after ("Causality violation"), whether or not
/// the poison value happens to be read.
#[cfg(all(test, loom))]
#[path = "gp/loom_tests.rs"]
pub(super) mod tests;
