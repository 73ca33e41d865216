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
mod tests {
    //! Threads play CPUs by naming them (`read_lock_on(cpu)`, `synchronize_on(Some(cpu))`)
    //! rather than with `percpu::install`: the preempt count and the IRQ nesting are per-CPU
    //! statics that tests running in parallel would share if they installed the same ids. The
    //! one test that checks the preempt count installs cpu0, whose count no other test uses.
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64 as StdU64};

    fn on_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| s.spawn(f).join().unwrap())
    }

    #[test]
    fn sections_nest_and_disable_preemption() {
        let _cpus = crate::percpu::playing_cpus();
        let rcu = Rcu::new();
        on_thread(|| {
            percpu::install(0);
            let outer = rcu.read_lock();
            let inner = rcu.read_lock();
            assert_eq!(outer.cpu(), Some(0));
            assert_eq!(rcu.nesting(0), 2);
            assert!(!preempt::preemptible());
            drop(inner);
            assert!(
                !rcu.note_quiescent_state(0),
                "still inside the outer section"
            );
            drop(outer);
            assert_eq!(rcu.nesting(0), 0);
            assert!(preempt::preemptible());
            assert!(rcu.note_quiescent_state(0));
        });
    }

    #[test]
    fn a_grace_period_waits_for_every_online_cpu() {
        let rcu = Rcu::new();
        for cpu in 0..3 {
            rcu.cpu_online(cpu);
        }
        assert_eq!(rcu.online_mask(), CpuMask::all(3));
        let target = rcu.snapshot();
        assert_eq!(target, 2);
        assert!(rcu.start_grace_period());
        assert!(!rcu.start_grace_period(), "one at a time");
        on_thread(|| rcu.note_quiescent_state(0));
        on_thread(|| rcu.note_quiescent_state(1));
        assert!(!rcu.is_done(target), "cpu2 has not reported");
        on_thread(|| {
            let g = rcu.read_lock_on(2);
            assert!(
                !rcu.note_quiescent_state(2),
                "a tick inside a reader is no report"
            );
            drop(g);
            assert!(rcu.note_quiescent_state(2));
        });
        assert!(rcu.is_done(target));
        assert_eq!(rcu.completed(), 1);
    }

    #[test]
    fn a_grace_period_already_running_does_not_count() {
        let rcu = Rcu::new();
        rcu.cpu_online(0);
        assert!(rcu.start_grace_period());
        let target = rcu.snapshot();
        assert_eq!(target, 4, "the running one may predate the update");
        on_thread(|| rcu.note_quiescent_state(0));
        assert!(!rcu.is_done(target));
        assert!(rcu.start_grace_period());
        on_thread(|| rcu.note_quiescent_state(0));
        assert!(rcu.is_done(target));
    }

    /// A CPU without a working interrupt interface idles in WFE, which only an event ends:
    /// a grace period that starts while it sleeps must wake it, or it never reports.
    #[test]
    fn starting_a_grace_period_sends_an_event() {
        let rcu = Rcu::new();
        rcu.cpu_online(0);
        rcu.cpu_online(1);
        on_thread(|| {
            let before = crate::arch::host::events_sent();
            assert!(rcu.start_grace_period());
            assert!(
                crate::arch::host::events_sent() > before,
                "a grace period started without SEV: CPUs waiting in WFE sleep through it"
            );
        });
    }

    #[test]
    fn with_no_cpu_online_a_grace_period_ends_at_once() {
        let rcu = Rcu::new();
        rcu.synchronize_on(None);
        assert_eq!(rcu.completed(), 1);
    }

    #[test]
    fn going_offline_releases_a_waiting_grace_period() {
        let rcu = Rcu::new();
        rcu.cpu_online(0);
        rcu.cpu_online(5);
        assert!(rcu.start_grace_period());
        on_thread(|| rcu.note_quiescent_state(0));
        rcu.cpu_offline(5);
        assert_eq!(rcu.completed(), 1);
        assert_eq!(rcu.online_mask(), CpuMask::only(0));
    }

    /// CPUs spread over the leaves (the first two CPUs, the first of the second leaf and the
    /// last CPU; fewer where `MAX_CPUS` is small).
    fn cpus_in_several_leaves() -> Vec<usize> {
        let mut cpus = vec![0, 1, CPUS_PER_LEAF.min(MAX_CPUS - 1), MAX_CPUS - 1];
        cpus.dedup();
        cpus
    }

    /// CPUs in different leaves (0-15, 16-31, ...): the period ends only once the last CPU to
    /// report has, whatever the order the CPUs and their leaves report in.
    #[test]
    fn a_grace_period_waits_for_every_leaf() {
        let cpus = cpus_in_several_leaves();
        let n = cpus.len();
        let orders: Vec<Vec<usize>> = vec![
            (0..n).collect(),
            (0..n).rev().collect(),
            (0..n).map(|i| (i + 1) % n).collect(),
        ];
        for order in orders {
            let rcu = Rcu::new();
            for &cpu in &cpus {
                rcu.cpu_online(cpu);
            }
            assert_eq!(rcu.online_mask(), cpus.iter().copied().collect());
            let target = rcu.snapshot();
            assert!(rcu.start_grace_period());
            for (i, &slot) in order.iter().enumerate() {
                assert!(
                    !rcu.is_done(target),
                    "order {order:?}: done before cpu{} reported",
                    cpus[slot]
                );
                on_thread(|| rcu.note_quiescent_state(cpus[slot]));
                // A second report from the same CPU changes nothing.
                on_thread(|| rcu.note_quiescent_state(cpus[slot]));
                assert_eq!(rcu.completed(), u64::from(i == n - 1), "order {order:?}");
            }
            assert!(rcu.is_done(target), "order {order:?}: every CPU reported");
        }
    }

    /// A leaf with no CPU online is finished by the starter; one with CPUs is not.
    #[test]
    fn leaves_without_online_cpus_do_not_hold_a_grace_period() {
        let top = MAX_CPUS - 1;
        let rcu = Rcu::new();
        rcu.cpu_online(top);
        assert!(rcu.start_grace_period());
        assert_eq!(rcu.completed(), 0, "cpu{top} has not reported");
        on_thread(|| rcu.note_quiescent_state(top));
        assert_eq!(rcu.completed(), 1);
        // And a report before any grace period started counts for nothing later.
        on_thread(|| rcu.note_quiescent_state(top));
        assert!(rcu.start_grace_period());
        assert_eq!(rcu.completed(), 1);
        rcu.cpu_offline(top);
        assert_eq!(rcu.completed(), 2, "its last CPU left: the leaf is done");
    }

    /// A CPU that comes online while a grace period runs is not waited for, in any leaf.
    #[test]
    fn a_cpu_coming_online_during_a_grace_period_is_not_waited_for() {
        let top = MAX_CPUS - 1;
        let rcu = Rcu::new();
        rcu.cpu_online(0);
        assert!(rcu.start_grace_period());
        rcu.cpu_online(top);
        rcu.cpu_online(1);
        on_thread(|| rcu.note_quiescent_state(0));
        assert_eq!(rcu.completed(), 1);
        assert_eq!(rcu.online_mask(), CpuMask::all(2).with(top));
        assert!(rcu.start_grace_period());
        on_thread(|| rcu.note_quiescent_state(0));
        on_thread(|| rcu.note_quiescent_state(1));
        assert_eq!(
            rcu.completed(),
            1,
            "cpu{top} counts from the next period on"
        );
        on_thread(|| rcu.note_quiescent_state(top));
        assert_eq!(rcu.completed(), 2);
    }

    #[test]
    #[should_panic(expected = "synchronize_rcu inside an RCU read-side critical section")]
    fn synchronize_inside_a_reader_is_refused() {
        let rcu = Rcu::new();
        rcu.cpu_online(3);
        let _g = rcu.read_lock_on(3);
        rcu.synchronize_on(Some(3));
    }

    #[test]
    #[should_panic(expected = "context switch inside an RCU read-side critical section")]
    fn a_context_switch_inside_a_reader_is_refused() {
        let rcu = Rcu::new();
        let _g = rcu.read_lock_on(4);
        rcu.context_switch(4);
    }

    #[test]
    #[should_panic(expected = "rcu_read_unlock without rcu_read_lock on cpu2")]
    fn an_unbalanced_unlock_is_refused() {
        Rcu::new().raw_read_unlock(2);
    }

    /// A reader on cpu1 holds its section while cpu0 synchronizes: synchronize must not
    /// return before the reader leaves and its CPU reports.
    #[test]
    fn synchronize_waits_for_a_reader_in_progress() {
        let rcu = Rcu::new();
        rcu.cpu_online(0);
        rcu.cpu_online(1);
        let in_section = AtomicBool::new(false);
        let left = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let g = rcu.read_lock_on(1);
                in_section.store(true, Ordering::Release);
                for _ in 0..50 {
                    std::thread::yield_now();
                }
                left.store(true, Ordering::SeqCst);
                drop(g);
                // The tick, until the writer is done.
                while rcu.completed() == 0 {
                    rcu.tick(1);
                    std::thread::yield_now();
                }
            });
            s.spawn(|| {
                while !in_section.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                rcu.synchronize_on(Some(0));
                assert!(
                    left.load(Ordering::SeqCst),
                    "synchronize returned while a reader was still inside"
                );
            });
        });
    }

    static HOOK_CALLS: StdU64 = StdU64::new(0);

    #[test]
    fn the_wait_hook_is_used_while_waiting() {
        fn hook() {
            HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
            std::thread::yield_now();
        }
        let rcu = Rcu::new();
        rcu.set_wait_hook(hook);
        rcu.cpu_online(0);
        rcu.cpu_online(1);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    rcu.tick(1);
                    std::thread::yield_now();
                }
            });
            s.spawn(|| {
                for _ in 0..5 {
                    rcu.synchronize_on(Some(0));
                }
                done.store(true, Ordering::Release);
            });
        });
        assert_eq!(rcu.completed(), 5);
        assert!(HOOK_CALLS.load(Ordering::Relaxed) > 0);
    }
}

/// Loom models (`make loom`): a reader against a writer that frees, with the real RCU and with
/// the broken one, the reader in the writer's leaf and in another; and a grace period that
/// starts while a CPU of another leaf reports or goes offline. The freed object's payload is a loom `UnsafeCell`, so loom reports any
/// reader access that the free is not ordered after ("Causality violation"), whether or not
/// the poison value happens to be read.
#[cfg(all(test, loom))]
pub(super) mod tests {
    use crate::config::MAX_CPUS;
    use crate::rcu::{BrokenRcu, CPUS_PER_LEAF, Rcu, RcuFlavor, RcuHead, RcuPointer};
    use crate::sync::shim::Ordering;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    pub(in crate::rcu) const POISON: u64 = 0xdead_dead;

    pub(in crate::rcu) struct Obj {
        pub(in crate::rcu) value: UnsafeCell<u64>,
        pub(in crate::rcu) head: RcuHead,
    }

    pub(in crate::rcu) fn obj(value: u64) -> *mut Obj {
        Box::into_raw(Box::new(Obj {
            value: UnsafeCell::new(value),
            head: RcuHead::new(),
        }))
    }

    /// "Free" by poisoning: a write that must come after every reader's access.
    pub(in crate::rcu) fn poison(o: *mut Obj) {
        // SAFETY: `o` lives until the end of the model; loom checks the access itself.
        unsafe { (*o).value.with_mut(|v| *v = POISON) };
    }

    /// cpu0 reads the current object once, inside a read-side section, then goes offline
    /// (its last quiescent state). cpu1 publishes a new object, then `free_old` must make the
    /// old one safe to free and free it.
    pub(in crate::rcu) fn reader_never_sees_freed_data<F: RcuFlavor + Send + 'static>(
        make: fn() -> F,
        free_old: fn(&F, *mut Obj),
    ) {
        reader_on_cpu_never_sees_freed_data(make, free_old, 0);
    }

    /// The first CPU of the second leaf (the last CPU if there is one leaf).
    const FAR: usize = if CPUS_PER_LEAF < MAX_CPUS {
        CPUS_PER_LEAF
    } else {
        MAX_CPUS - 1
    };

    /// As above, with the reader on CPU `reader` (the writer is cpu1).
    fn reader_on_cpu_never_sees_freed_data<F: RcuFlavor + Send + 'static>(
        make: fn() -> F,
        free_old: fn(&F, *mut Obj),
        reader: usize,
    ) {
        loom::model(move || {
            let rcu = Arc::new(make());
            rcu.cpu_online(reader);
            rcu.cpu_online(1);
            let first = obj(1);
            let ptr = Arc::new(RcuPointer::new(first));
            let reader = {
                let (rcu, ptr) = (Arc::clone(&rcu), Arc::clone(&ptr));
                loom::thread::spawn(move || {
                    rcu.read_lock(reader);
                    let p = ptr.load();
                    // SAFETY: both objects outlive the model's threads; whether the access is
                    // ordered before the free is what loom checks.
                    let v = unsafe { (*p).value.with(|v| *v) };
                    rcu.read_unlock(reader);
                    rcu.cpu_offline(reader);
                    assert_ne!(v, POISON, "reader saw freed data");
                })
            };
            // SAFETY: the only writer; the new object is whole and outlives the model.
            let old = unsafe { ptr.publish(obj(2)) };
            free_old(&rcu, old);
            reader.join().unwrap();
            // SAFETY: both came from Box::into_raw and nothing uses them any more.
            unsafe {
                drop(Box::from_raw(old));
                drop(Box::from_raw(ptr.load()));
            }
        });
    }

    fn synchronize_then_free<F: RcuFlavor>(rcu: &F, old: *mut Obj) {
        rcu.synchronize(1);
        poison(old);
    }

    #[test]
    fn loom_rcu_reader_never_sees_data_freed_after_synchronize() {
        reader_never_sees_freed_data(Rcu::new, synchronize_then_free::<Rcu>);
    }

    /// The reader's CPU in another leaf than the writer's: its leaf's root bit is what holds
    /// the grace period open.
    #[test]
    fn loom_rcu_reader_in_another_leaf_never_sees_data_freed_after_synchronize() {
        reader_on_cpu_never_sees_freed_data(Rcu::new, synchronize_then_free::<Rcu>, FAR);
    }

    /// The bug: synchronize returns at once, so the free can overlap the reader.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_rcu_broken_synchronize_is_caught() {
        reader_never_sees_freed_data(BrokenRcu::new, synchronize_then_free::<BrokenRcu>);
    }

    impl Rcu {
        /// After the model's threads, with nobody owing a report: every grace period that
        /// started has ended. The waiter may have started a second one (its look at `gp_seq`
        /// can be stale, and an extra period is harmless), so the count is not fixed; a period
        /// still open or a leaf still owed would be a lost report.
        fn assert_settled(&self) {
            assert!(
                self.completed() >= 1,
                "synchronize returned before a grace period"
            );
            assert!(
                !self.gp_in_progress(),
                "gp_seq {} is odd: a grace period never ended",
                self.gp_seq()
            );
            let root = self.root.load(Ordering::Relaxed);
            assert_eq!(
                root, 0,
                "leaves {root:#x} still owed after the period ended"
            );
        }
    }

    /// The reporting path across leaves: cpu0 synchronizes (starting the grace period, filling
    /// the leaves one by one, reporting itself) while `FAR`, in another leaf, reports at every
    /// step until the period is over. In every interleaving each period that starts ends once,
    /// and after `FAR`'s access before its counted report (loom checks the `UnsafeCell`).
    #[test]
    fn loom_rcu_reports_from_two_leaves_end_the_grace_period_once() {
        loom::model(|| {
            let rcu = Arc::new(Rcu::new());
            rcu.cpu_online(0);
            rcu.cpu_online(FAR);
            let far_data = Arc::new(UnsafeCell::new(0u64));
            let far = {
                let (rcu, far_data) = (Arc::clone(&rcu), Arc::clone(&far_data));
                loom::thread::spawn(move || {
                    // What a reader on FAR did before its quiescent state.
                    // SAFETY: the cell outlives both threads; loom checks the access's ordering.
                    far_data.with_mut(|v| unsafe { *v = 1 });
                    while rcu.completed() == 0 {
                        rcu.note_quiescent_state(FAR);
                        loom::thread::yield_now();
                    }
                })
            };
            rcu.synchronize_on(Some(0));
            // Ordered after FAR's write only through FAR's leaf and the root.
            // SAFETY: as above; this read must be ordered after FAR's write.
            far_data.with(|v| assert_eq!(unsafe { *v }, 1));
            far.join().unwrap();
            // A second period the waiter may have started can still be running here (FAR
            // stopped reporting once one ended); a double end would have panicked in leaf_done
            // or end_grace_period.
            assert!(rcu.completed() >= 1);
        });
    }

    /// A CPU of another leaf goes offline while cpu0 synchronizes: whichever comes first,
    /// synchronize returns and each period that started ended exactly once.
    #[test]
    fn loom_rcu_going_offline_in_another_leaf_during_a_grace_period() {
        loom::model(|| {
            let rcu = Arc::new(Rcu::new());
            rcu.cpu_online(0);
            rcu.cpu_online(FAR);
            let far = {
                let rcu = Arc::clone(&rcu);
                loom::thread::spawn(move || rcu.cpu_offline(FAR))
            };
            rcu.synchronize_on(Some(0));
            far.join().unwrap();
            rcu.assert_settled();
            assert_eq!(rcu.online_mask(), crate::cpumask::CpuMask::only(0));
        });
    }
}
