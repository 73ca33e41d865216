//! The lock-order graph and the search for a cycle (chapter 12, "The lock validator").
//!
//! Taking B while holding A adds the edge A -> B between their classes. The graph is a
//! `MAX_CLASSES` x `MAX_CLASSES` matrix: each class's outgoing edges are a `u64` bitset in its
//! class slot (src/sync/lockdep/class.rs), and each edge keeps who created it (the two sites
//! and the CPU) for the report. When a new edge closes a cycle (A -> B and later B -> A, or
//! A -> B -> C -> A), some interleaving of those code paths deadlocks. `add_edge` finds that
//! with a breadth-first search over the bitsets (`path`, no heap), on the first acquisition that
//! creates the cycle, and reports it with the sites of every edge on it.

use core::panic::Location;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use super::class::{ClassInfo, LockClass};
use super::report::Report;
use super::{Lockdep, MAX_CLASSES, MAX_REPORT_EDGES, Site, load_site, site_ptr};

/// The dependency `from` -> `to`: CPU `cpu` took `to` at `taken_at` while holding `from`, which
/// it had taken at `held_since`. `None` sites were still being written by another CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: ClassInfo,
    pub to: ClassInfo,
    pub taken_at: Option<Site>,
    pub held_since: Option<Site>,
    pub cpu: usize,
}

/// Who created an edge.
pub(super) struct EdgeSlot {
    pub(super) taken_at: AtomicPtr<Location<'static>>,
    pub(super) held_since: AtomicPtr<Location<'static>>,
    pub(super) cpu: AtomicU8,
}

impl EdgeSlot {
    pub(super) const fn new() -> Self {
        EdgeSlot {
            taken_at: AtomicPtr::new(core::ptr::null_mut()),
            held_since: AtomicPtr::new(core::ptr::null_mut()),
            cpu: AtomicU8::new(0),
        }
    }
}

impl Lockdep {
    /// Add `from` -> `to` if nobody beat us to it; if ours closes a cycle, report it (once).
    pub(super) fn add_edge(
        &self,
        from: usize,
        to: usize,
        cpu: usize,
        held_since: *mut Location<'static>,
        taken_at: Site,
    ) -> Option<Report> {
        let e = &self.edges[from][to];
        // Sites first, then the bit, so whoever sees the bit finds the sites.
        if e.taken_at
            .compare_exchange(
                core::ptr::null_mut(),
                site_ptr(taken_at),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            e.held_since.store(held_since, Ordering::Release);
            e.cpu.store(cpu as u8, Ordering::Release);
        }
        // SeqCst: two CPUs adding A -> B and B -> A at once must not both miss the other's edge.
        let before = self.classes[from].after.fetch_or(1 << to, Ordering::SeqCst);
        if before & (1 << to) != 0 || !self.warnings_on() {
            return None;
        }
        // Our edge is new. Is there already a path back from `to` to `from`?
        let mut path = [0u8; MAX_CLASSES];
        let nodes = self.path(to, from, &mut path)?;
        if !self.claim_warning() {
            return None;
        }
        let mut edges = [None; MAX_REPORT_EDGES];
        edges[0] = Some(self.edge(from, to));
        let total = nodes; // the new edge plus the path's nodes - 1 edges
        let mut len = 1;
        for w in path[..nodes].windows(2) {
            if len == MAX_REPORT_EDGES {
                break;
            }
            edges[len] = Some(self.edge(w[0] as usize, w[1] as usize));
            len += 1;
        }
        Some(Report::LockOrderCycle {
            cpu,
            edges,
            len,
            total,
        })
    }

    pub(super) fn edge(&self, from: usize, to: usize) -> Edge {
        let e = &self.edges[from][to];
        Edge {
            from: self.info(from),
            to: self.info(to),
            taken_at: load_site(&e.taken_at),
            held_since: load_site(&e.held_since),
            cpu: e.cpu.load(Ordering::Acquire) as usize,
        }
    }

    /// Breadth-first search from `start` to `goal` over the edges; writes the shortest path's
    /// nodes (both ends included) into `path` and returns how many. Bitsets, no heap.
    pub(super) fn path(
        &self,
        start: usize,
        goal: usize,
        path: &mut [u8; MAX_CLASSES],
    ) -> Option<usize> {
        let mut parent = [u8::MAX; MAX_CLASSES];
        let mut seen: u64 = 1 << start;
        let mut frontier: u64 = 1 << start;
        while frontier != 0 {
            let mut next = 0u64;
            let mut f = frontier;
            while f != 0 {
                let u = f.trailing_zeros() as usize;
                f &= f - 1;
                let mut out = self.classes[u].after.load(Ordering::SeqCst) & !seen;
                seen |= out;
                next |= out;
                while out != 0 {
                    let v = out.trailing_zeros() as usize;
                    out &= out - 1;
                    parent[v] = u as u8;
                    if v == goal {
                        // Walk the parents back, then reverse into `path`.
                        let mut n = 0;
                        let mut at = goal;
                        loop {
                            path[n] = at as u8;
                            n += 1;
                            if at == start {
                                break;
                            }
                            at = parent[at] as usize;
                        }
                        path[..n].reverse();
                        return Some(n);
                    }
                }
            }
            frontier = next;
        }
        None
    }

    /// True if `to` was ever taken while `from` was held.
    pub fn has_edge(&self, from: &LockClass, to: &LockClass) -> bool {
        match (self.class_index(from), self.class_index(to)) {
            (Some(a), Some(b)) => self.classes[a].after.load(Ordering::Relaxed) & (1 << b) != 0,
            _ => false,
        }
    }
}
