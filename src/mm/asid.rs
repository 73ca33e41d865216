//! Address-space identifiers (ASIDs): a small number per address space that tags its TLB
//! entries, so switching between processes needs no TLB flush (chapter 20, "Address spaces,
//! ASIDs and TLB maintenance on several CPUs").
//!
//! The CPU has 8 or 16 bits of ASID (ID_AA64MMFR0_EL1.ASIDBits, and TCR_EL1.AS must ask for 16),
//! far fewer than the address spaces a kernel creates over its life. So ASIDs are handed out in
//! *generations*, as Linux does on arm64: an address space's context id is
//! `generation << bits | asid` (the generation is kept pre-shifted, in the bits above the ASID).
//! While the current generation has free ASIDs, a new address space takes the next one. When
//! none is left, the allocator rolls over: it starts a new generation, forgets every assignment
//! except the ASID each CPU is running right now (those stay *reserved*, since those CPUs keep
//! using them), and marks every CPU as owing a full local TLB flush, which each does at its next
//! switch. An address space whose id is from an old generation gets a new ASID (or its old one,
//! if it was reserved) the next time a CPU switches to it.
//!
//! The fast path of a switch is lock-free: if the address space's id is of the current
//! generation, one compare-exchange on this CPU's `active` slot installs it. That exchange is
//! what a concurrent roll-over synchronises with: the roll-over swaps each slot to 0 to read it,
//! so either the fast path's exchange sees the 0 and falls back to the locked path, or the
//! roll-over sees the new id and reserves it.
//!
//! The algorithm is portable: host tests and a loom model (`loom_two_cpus_across_a_rollover`)
//! run it; src/mm/addrspace.rs calls it from `activate` and does the TLB flushes it asks for.

use alloc::vec;
use alloc::vec::Vec;

use crate::sync::shim::{AtomicU8, AtomicU64, Ordering};

/// What a switch to an address space needs done on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switch {
    /// The ASID to put in TTBR0 next to the table.
    pub asid: u16,
    /// A roll-over happened since this CPU last switched: flush its whole TLB first, or entries
    /// of an ASID's previous owner could be used for its new one.
    pub flush_local_tlb: bool,
}

/// What the lock protects.
struct State {
    /// One bit per ASID of the current generation: taken. Bit 0 (ASID 0, for "no user space")
    /// is always taken.
    map: Vec<u64>,
    /// Where the search for a free ASID resumes.
    next: usize,
    /// Per CPU: the context id it was running at the last roll-over, still valid for it.
    reserved: Vec<u64>,
}

impl State {
    fn test_and_set(&mut self, asid: usize) -> bool {
        let (word, bit) = (asid / 64, 1u64 << (asid % 64));
        let was = self.map[word] & bit != 0;
        self.map[word] |= bit;
        was
    }

    fn clear(&mut self, asid: usize) {
        self.map[asid / 64] &= !(1u64 << (asid % 64));
    }

    fn find_free(&self, from: usize, count: usize) -> Option<usize> {
        (from.max(1)..count).find(|&a| self.map[a / 64] & (1u64 << (a % 64)) == 0)
    }
}

#[cfg(not(loom))]
type StateLock = crate::sync::IrqSafeSpinLock<State, crate::sync::spinlock::TtasLock>;
/// Under loom the lock is loom's own, so the model sees the order the lock imposes.
#[cfg(loom)]
type StateLock = loom::sync::Mutex<State>;

/// An ASID allocator for `cpus` CPUs with `bits`-bit ASIDs.
pub struct AsidAllocator {
    bits: u32,
    /// The current generation, pre-shifted: a multiple of `1 << bits`, never 0.
    generation: AtomicU64,
    /// Per CPU: the context id it runs (0 right after a roll-over took it away).
    active: Vec<AtomicU64>,
    /// Per CPU: a roll-over happened; flush the whole local TLB at the next switch.
    flush_pending: Vec<AtomicU8>,
    state: StateLock,
    rollovers: AtomicU64,
}

impl AsidAllocator {
    pub fn new(bits: u32, cpus: usize) -> Self {
        assert!((2..=16).contains(&bits), "{bits}-bit ASIDs");
        let count = 1usize << bits;
        assert!(
            count > cpus + 1,
            "{count} ASIDs cannot serve {cpus} CPUs across a roll-over"
        );
        let mut state = State {
            map: vec![0; count.div_ceil(64)],
            next: 1,
            reserved: vec![0; cpus],
        };
        state.test_and_set(0);
        AsidAllocator {
            bits,
            generation: AtomicU64::new(1 << bits),
            active: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
            flush_pending: (0..cpus).map(|_| AtomicU8::new(0)).collect(),
            #[cfg(not(loom))]
            state: StateLock::named("asid", state),
            #[cfg(loom)]
            state: StateLock::new(state),
            rollovers: AtomicU64::new(0),
        }
    }

    #[cfg(not(loom))]
    fn lock(&self) -> impl core::ops::DerefMut<Target = State> + '_ {
        self.state.lock()
    }
    #[cfg(loom)]
    fn lock(&self) -> impl core::ops::DerefMut<Target = State> + '_ {
        self.state.lock().unwrap()
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// How many ASIDs there are, ASID 0 included.
    pub fn count(&self) -> usize {
        1 << self.bits
    }

    pub fn rollovers(&self) -> u64 {
        self.rollovers.load(Ordering::Relaxed)
    }

    pub fn asid_of(&self, id: u64) -> u16 {
        (id & ((1 << self.bits) - 1)) as u16
    }

    fn is_current(&self, id: u64) -> bool {
        id != 0 && (id >> self.bits) == (self.generation.load(Ordering::Relaxed) >> self.bits)
    }

    /// CPU `cpu` runs no user address space any more (a kernel thread, or its process exited):
    /// it no longer holds its last ASID, so that ASID can be released. The next `switch_to` on
    /// the CPU takes the slow path, as after a roll-over.
    pub fn deactivate(&self, cpu: usize) {
        self.active[cpu].store(0, Ordering::Relaxed);
    }

    /// CPU `cpu` switches to the address space whose context id lives in `context` (0 for one
    /// that never ran). Call with IRQs masked, so the CPU does not change under it.
    pub fn switch_to(&self, cpu: usize, context: &AtomicU64) -> Switch {
        let id = context.load(Ordering::Relaxed);
        let old_active = self.active[cpu].load(Ordering::Relaxed);
        // Fast path: a current-generation id, and no roll-over has taken this CPU's slot (it
        // would be 0). The exchange fails if a roll-over swaps the slot meanwhile.
        if old_active != 0
            && self.is_current(id)
            && self.active[cpu]
                .compare_exchange(old_active, id, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Switch {
                asid: self.asid_of(id),
                flush_local_tlb: false,
            };
        }
        let mut state = self.lock();
        let mut id = context.load(Ordering::Relaxed);
        if !self.is_current(id) {
            id = self.new_context(&mut state, id);
            context.store(id, Ordering::Relaxed);
        }
        let flush_local_tlb = self.flush_pending[cpu].swap(0, Ordering::Relaxed) != 0;
        self.active[cpu].store(id, Ordering::Relaxed);
        Switch {
            asid: self.asid_of(id),
            flush_local_tlb,
        }
    }

    /// A context id of the current generation for an address space whose id is `old`.
    fn new_context(&self, state: &mut State, old: u64) -> u64 {
        let generation = self.generation.load(Ordering::Relaxed);
        if old != 0 {
            let asid = self.asid_of(old) as usize;
            let renewed = generation | asid as u64;
            // Running on some CPU at the roll-over: its ASID stayed reserved for it.
            let mut hit = false;
            for r in state.reserved.iter_mut().filter(|r| **r == old) {
                *r = renewed;
                hit = true;
            }
            if hit {
                return renewed;
            }
            // Its old ASID is still free in this generation: keep it.
            if !state.test_and_set(asid) {
                return renewed;
            }
        }
        let (asid, generation) = match state.find_free(state.next, self.count()) {
            Some(asid) => (asid, generation),
            None => {
                let generation = self.rollover(state);
                let asid = state
                    .find_free(1, self.count())
                    .expect("a roll-over leaves free ASIDs");
                (asid, generation)
            }
        };
        state.test_and_set(asid);
        state.next = asid;
        generation | asid as u64
    }

    /// Start a new generation: keep only each CPU's running ASID, flush every TLB lazily.
    fn rollover(&self, state: &mut State) -> u64 {
        let generation =
            self.generation.fetch_add(1 << self.bits, Ordering::Relaxed) + (1 << self.bits);
        state.map.iter_mut().for_each(|w| *w = 0);
        state.test_and_set(0);
        for cpu in 0..self.active.len() {
            let mut id = self.active[cpu].swap(0, Ordering::Relaxed);
            // 0: the CPU has not switched since the last roll-over; what it runs is what it
            // had reserved then.
            if id == 0 {
                id = state.reserved[cpu];
            }
            state.test_and_set(self.asid_of(id) as usize);
            state.reserved[cpu] = id;
        }
        for pending in &self.flush_pending {
            pending.store(1, Ordering::Relaxed);
        }
        self.rollovers.fetch_add(1, Ordering::Relaxed);
        generation
    }

    /// An address space with context id `id` is gone. If its ASID is of the current generation
    /// and no CPU still holds it (as the last one it ran, or reserved), it is free again: the
    /// caller must have invalidated the ASID's TLB entries on every CPU first (`tlbi aside1is`).
    /// Otherwise it stays taken until the next roll-over. True if it was freed.
    pub fn release(&self, id: u64) -> bool {
        let mut state = self.lock();
        if !self.is_current(id)
            || self.active.iter().any(|a| a.load(Ordering::Relaxed) == id)
            || state.reserved.contains(&id)
        {
            return false;
        }
        state.clear(self.asid_of(id) as usize);
        true
    }

    /// ASIDs taken in the current generation, ASID 0 included (for the shell and tests).
    pub fn in_use(&self) -> usize {
        self.lock()
            .map
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fresh_spaces_get_distinct_asids_and_keep_them() {
        let a = AsidAllocator::new(4, 2);
        let ids: Vec<AtomicU64> = (0..15).map(|_| AtomicU64::new(0)).collect();
        let mut seen = std::collections::HashSet::new();
        for ctx in &ids {
            let s = a.switch_to(0, ctx);
            assert!(s.asid != 0, "ASID 0 is never handed out");
            assert!(seen.insert(s.asid), "ASID {} handed out twice", s.asid);
            assert!(!s.flush_local_tlb);
        }
        assert_eq!(a.rollovers(), 0);
        // Switching back to a space of this generation takes the fast path and keeps its ASID.
        let again = a.switch_to(0, &ids[3]);
        assert_eq!(again.asid, a.asid_of(ids[3].load(Ordering::Relaxed)));
        assert_eq!(a.in_use(), 16);
    }

    #[test]
    fn a_rollover_flushes_every_cpu_once_and_keeps_running_asids() {
        let a = AsidAllocator::new(2, 2); // ASIDs 1..=3
        let (x, y, z, w) = (
            AtomicU64::new(0),
            AtomicU64::new(0),
            AtomicU64::new(0),
            AtomicU64::new(0),
        );
        let on_cpu1 = a.switch_to(1, &x).asid;
        a.switch_to(0, &y);
        a.switch_to(0, &z);
        // Three taken: the fourth space rolls over. cpu0 was running z, cpu1 x: both reserved.
        let s = a.switch_to(0, &w);
        assert_eq!(a.rollovers(), 1);
        assert!(s.flush_local_tlb, "the CPU that rolled over flushes too");
        assert_ne!(s.asid, on_cpu1, "cpu1 still runs x with its ASID");
        assert_ne!(s.asid, a.asid_of(z.load(Ordering::Relaxed)));
        // cpu1 owes a flush; x keeps its reserved ASID in the new generation.
        let back = a.switch_to(1, &x);
        assert!(back.flush_local_tlb);
        assert_eq!(back.asid, on_cpu1);
        assert!(
            !a.switch_to(1, &x).flush_local_tlb,
            "one flush per roll-over"
        );
        // y ran nowhere at the roll-over: it gets an ASID again when it next runs.
        let y_again = a.switch_to(0, &y);
        assert!(y_again.asid != 0);
        assert!(a.is_current(y.load(Ordering::Relaxed)));
    }

    #[test]
    fn released_asids_are_reused_only_when_no_cpu_holds_them() {
        let a = AsidAllocator::new(3, 1);
        let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
        a.switch_to(0, &x);
        let xid = x.load(Ordering::Relaxed);
        assert!(!a.release(xid), "cpu0 still has x as its active id");
        a.switch_to(0, &y);
        let before = a.in_use();
        assert!(a.release(xid));
        assert_eq!(a.in_use(), before - 1);
        assert!(
            !a.release(xid + (1 << 3)),
            "an id of another generation frees nothing"
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Two CPUs switch between four address spaces with three ASIDs, so a roll-over happens
    /// under every interleaving loom tries. Each CPU models its own TLB as the (ASID, address
    /// space) pairs it may hold: a switch that does not flush must never find its ASID cached
    /// for a different address space, which is exactly "two live spaces share an ASID within one
    /// generation" as the hardware would experience it.
    #[test]
    fn loom_two_cpus_across_a_rollover() {
        loom::model(|| {
            let asids = Arc::new(AsidAllocator::new(2, 2));
            let spaces: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
            let cpu = |id: usize, plan: &'static [usize]| {
                let (asids, spaces) = (asids.clone(), spaces.clone());
                move || {
                    let mut tlb: Vec<(u16, usize)> = Vec::new();
                    for &space in plan {
                        let s = asids.switch_to(id, &spaces[space]);
                        if s.flush_local_tlb {
                            tlb.clear();
                        }
                        if let Some(&(_, other)) = tlb
                            .iter()
                            .find(|&&(a, owner)| a == s.asid && owner != space)
                        {
                            panic!(
                                "cpu{id}: ASID {} given to space {space} while its TLB holds entries of space {other}",
                                s.asid
                            );
                        }
                        tlb.push((s.asid, space));
                    }
                }
            };
            // Each CPU later runs a space the other started (as threads of one process would),
            // whose ASID a roll-over may have renewed, onto an ASID this CPU once cached for
            // another space.
            let other = loom::thread::spawn(cpu(1, &[2, 3, 1]));
            cpu(0, &[0, 1, 3, 0])();
            other.join().unwrap();
            assert!(
                asids.rollovers() >= 1,
                "four spaces on three ASIDs roll over"
            );
        });
    }
}
