//! The MCS queued lock: every waiter spins on its own cache line (the locks chapter).
//!
//! The lock word is a pointer to the last waiter's queue node (the tail). To lock, a CPU
//! swaps its own node in as the new tail; if there was a previous tail, it links itself behind
//! it and waits on its own node's `locked` flag, a line no other waiter touches. To unlock, the
//! holder hands the lock to its successor by setting that successor's flag: one cache line
//! moves, from the holder to the next CPU, instead of every waiter fighting over one line.
//! Waiters are served in arrival order, like the ticket lock.
//!
//! Queue nodes are per CPU, `NODES_PER_CPU` of them, so a CPU can hold that many MCS locks at
//! once (Linux keeps four: task, softirq, hardirq, NMI). The holder records which node it used.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use super::RawSpinLock;
use crate::arch::wait;
use crate::config::MAX_CPUS;
use crate::percpu::{self, CacheAligned, PerCpu};

/// MCS locks one CPU can hold at the same time.
pub const NODES_PER_CPU: usize = 4;

/// One waiter's place in a queue, on its own cache line.
#[repr(C, align(64))]
pub struct McsNode {
    next: AtomicPtr<McsNode>,
    /// 1 while waiting; the predecessor stores 0 to hand the lock over.
    locked: AtomicU8,
    /// 1 while this node is in use by its CPU.
    busy: AtomicU8,
}

impl McsNode {
    const fn new() -> Self {
        McsNode {
            next: AtomicPtr::new(ptr::null_mut()),
            locked: AtomicU8::new(0),
            busy: AtomicU8::new(0),
        }
    }
}

static NODES: PerCpu<[McsNode; NODES_PER_CPU]> =
    PerCpu::new([const { CacheAligned([const { McsNode::new() }; NODES_PER_CPU]) }; MAX_CPUS]);

/// A free node of this CPU. Only this CPU takes or frees its nodes, so plain loads and stores
/// suffice.
fn take_node() -> &'static McsNode {
    let nodes = NODES.get();
    let node = nodes
        .iter()
        .find(|n| n.busy.load(Ordering::Relaxed) == 0)
        .unwrap_or_else(|| {
            panic!(
                "cpu{} holds more than {NODES_PER_CPU} MCS locks",
                percpu::this_cpu().id
            )
        });
    node.busy.store(1, Ordering::Relaxed);
    node
}

pub struct McsLock {
    tail: AtomicPtr<McsNode>,
    /// The holder's node, written only by the holder, read by it again in `unlock`.
    holder: AtomicPtr<McsNode>,
}

// SAFETY: the tail swap orders CPUs into a queue; a CPU enters only when it found the queue
// empty or when its predecessor handed over with a release store of `locked = 0`, which its
// acquire load observes. Unlock hands over to exactly one successor (or empties the queue).
unsafe impl RawSpinLock for McsLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = McsLock {
        tail: AtomicPtr::new(ptr::null_mut()),
        holder: AtomicPtr::new(ptr::null_mut()),
    };

    fn lock(&self) {
        let node = take_node();
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        node.locked.store(1, Ordering::Relaxed);
        let me = node as *const McsNode as *mut McsNode;
        // AcqRel: release our node's initialisation to the successor that will find it; acquire
        // the previous tail's so we may write its `next`.
        let previous = self.tail.swap(me, Ordering::AcqRel);
        if !previous.is_null() {
            // SAFETY: a node stays valid (it is static) and queued until its owner has handed
            // the lock on, which cannot happen before we link ourselves here.
            unsafe { (*previous).next.store(me, Ordering::Release) };
            while node.locked.load(Ordering::Acquire) != 0 {
                wait::wait_while_u8(&node.locked, 1);
            }
        }
        self.holder.store(me, Ordering::Relaxed);
    }

    fn try_lock(&self) -> bool {
        let node = take_node();
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        let me = node as *const McsNode as *mut McsNode;
        if self
            .tail
            .compare_exchange(ptr::null_mut(), me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.holder.store(me, Ordering::Relaxed);
            true
        } else {
            node.busy.store(0, Ordering::Relaxed);
            false
        }
    }

    unsafe fn unlock(&self) {
        let me = self.holder.load(Ordering::Relaxed);
        // SAFETY: the caller holds the lock, so `holder` is our own node, set in lock/try_lock.
        let node = unsafe { &*me };
        let mut next = node.next.load(Ordering::Acquire);
        if next.is_null() {
            // Nobody queued behind us that we know of: try to empty the queue.
            if self
                .tail
                .compare_exchange(me, ptr::null_mut(), Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                node.busy.store(0, Ordering::Relaxed);
                return;
            }
            // Someone swapped in after us but has not linked yet: wait for the link.
            loop {
                next = node.next.load(Ordering::Acquire);
                if !next.is_null() {
                    break;
                }
                crate::arch::cpu_relax();
            }
        }
        // SAFETY: `next` is a queued node; its owner waits for exactly this store.
        unsafe { (*next).locked.store(0, Ordering::Release) };
        node.busy.store(0, Ordering::Relaxed);
    }

    fn is_locked(&self) -> bool {
        !self.tail.load(Ordering::Relaxed).is_null()
    }
}
