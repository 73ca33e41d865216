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
//!
//! The algorithm is `lock_with`/`unlock_with`, which take the caller's node; `RawSpinLock`
//! feeds them from the per-CPU pool. Loom's models (the tests at the bottom) feed them nodes
//! their threads own instead, since a static pool cannot hold loom's atomics.

use core::ptr;

#[cfg(not(loom))]
use super::RawSpinLock;
#[cfg(not(loom))]
use crate::config::MAX_CPUS;
#[cfg(not(loom))]
use crate::percpu::{self, CacheAligned, PerCpu};
use crate::sync::shim::{
    AtomicPtr, AtomicU8, Ordering, const_unless_loom, cpu_relax, wait_while_u8,
};

/// MCS locks one CPU can hold at the same time.
pub const NODES_PER_CPU: usize = 4;

/// One waiter's place in a queue, on its own cache line.
#[repr(C, align(64))]
pub struct McsNode {
    next: AtomicPtr<McsNode>,
    /// 1 while waiting; the predecessor stores 0 to hand the lock over.
    locked: AtomicU8,
    /// 1 while this node is in use by its CPU (the per-CPU pool's bookkeeping).
    busy: AtomicU8,
}

impl McsNode {
    const_unless_loom! {
        pub const fn new() -> Self {
            McsNode {
                next: AtomicPtr::new(ptr::null_mut()),
                locked: AtomicU8::new(0),
                busy: AtomicU8::new(0),
            }
        }
    }
}

impl Default for McsNode {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(loom))]
static NODES: PerCpu<[McsNode; NODES_PER_CPU]> =
    PerCpu::new([const { CacheAligned([const { McsNode::new() }; NODES_PER_CPU]) }; MAX_CPUS]);

/// A free node of this CPU. Only this CPU takes or frees its nodes, so plain loads and stores
/// suffice.
#[cfg(not(loom))]
#[inline]
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
    #[cfg_attr(loom, allow(dead_code))]
    holder: AtomicPtr<McsNode>,
}

impl McsLock {
    const_unless_loom! {
        /// An unlocked lock.
        pub const fn new() -> Self {
            McsLock {
                tail: AtomicPtr::new(ptr::null_mut()),
                holder: AtomicPtr::new(ptr::null_mut()),
            }
        }
    }

    // lab:mcs begin
    /// Queue `node` and spin on it until the lock is ours.
    ///
    /// # Safety
    /// `node` must stay where it is, and be passed to nothing else, until `unlock_with(node)`
    /// returns: successors write into it, and the caller's predecessor hands over through it.
    #[inline]
    pub unsafe fn lock_with(&self, node: &McsNode) {
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        node.locked.store(1, Ordering::Relaxed);
        let me = node as *const McsNode as *mut McsNode;
        // AcqRel: release our node's initialisation to the successor that will find it; acquire
        // the previous tail's so we may write its `next`.
        let previous = self.tail.swap(me, Ordering::AcqRel);
        if !previous.is_null() {
            // SAFETY: a queued node stays valid (its owner keeps it, as `lock_with` demands)
            // until its owner has handed the lock on, which cannot happen before we link here.
            unsafe { (*previous).next.store(me, Ordering::Release) };
            while node.locked.load(Ordering::Acquire) != 0 {
                wait_while_u8(&node.locked, 1);
            }
        }
    }

    /// Take the lock with `node` only if nobody holds or waits for it.
    ///
    /// # Safety
    /// As for `lock_with`, if this returns true.
    #[inline]
    pub unsafe fn try_lock_with(&self, node: &McsNode) -> bool {
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        let me = node as *const McsNode as *mut McsNode;
        self.tail
            .compare_exchange(ptr::null_mut(), me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Hand the lock to the next waiter, or leave it free.
    ///
    /// # Safety
    /// The caller holds the lock, taken with this same `node`.
    #[inline]
    pub unsafe fn unlock_with(&self, node: &McsNode) {
        let me = node as *const McsNode as *mut McsNode;
        let mut next = node.next.load(Ordering::Acquire);
        if next.is_null() {
            // Nobody queued behind us that we know of: try to empty the queue.
            if self
                .tail
                .compare_exchange(me, ptr::null_mut(), Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            // Someone swapped in after us but has not linked yet: wait for the link.
            loop {
                next = node.next.load(Ordering::Acquire);
                if !next.is_null() {
                    break;
                }
                cpu_relax();
            }
        }
        // SAFETY: `next` is a queued node; its owner waits for exactly this store.
        unsafe { (*next).locked.store(0, Ordering::Release) };
    }

    pub fn is_locked(&self) -> bool {
        !self.tail.load(Ordering::Relaxed).is_null()
    }
    // lab:mcs end
}

impl Default for McsLock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the tail swap orders CPUs into a queue; a CPU enters only when it found the queue
// empty or when its predecessor handed over with a release store of `locked = 0`, which its
// acquire load observes. Unlock hands over to exactly one successor (or empties the queue).
#[cfg(not(loom))]
unsafe impl RawSpinLock for McsLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = McsLock::new();

    #[inline]
    fn lock(&self) {
        let node = take_node();
        // SAFETY: the node is static and marked busy, so nobody else uses it until `unlock`.
        unsafe { self.lock_with(node) };
        self.holder
            .store(node as *const _ as *mut _, Ordering::Relaxed);
    }

    fn try_lock(&self) -> bool {
        let node = take_node();
        // SAFETY: as in `lock`.
        if unsafe { self.try_lock_with(node) } {
            self.holder
                .store(node as *const _ as *mut _, Ordering::Relaxed);
            true
        } else {
            node.busy.store(0, Ordering::Relaxed);
            false
        }
    }

    #[inline]
    unsafe fn unlock(&self) {
        let me = self.holder.load(Ordering::Relaxed);
        // SAFETY: the caller holds the lock, so `holder` is our own node, set in lock/try_lock.
        let node = unsafe { &*me };
        // SAFETY: we hold the lock, taken with this node.
        unsafe { self.unlock_with(node) };
        // Only now may the node serve another lock: until the handover, a successor could
        // still be writing its link into it.
        node.busy.store(0, Ordering::Relaxed);
    }

    fn is_locked(&self) -> bool {
        McsLock::is_locked(self)
    }
}

/// Loom models (`make loom`): two threads, each with its own queue node, as in the ticket lock's
/// models (whose doc says why two).
#[cfg(all(test, loom))]
mod tests {
    use super::{McsLock, McsNode};
    use crate::sync::shim::Ordering;
    use core::ptr;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    struct Counted {
        lock: McsLock,
        count: UnsafeCell<u32>,
    }

    // SAFETY: `count` is only touched under `lock`, which is exactly what these models verify.
    unsafe impl Sync for Counted {}

    type Unlock = fn(&McsLock, &McsNode);

    impl Counted {
        fn add_one(&self, unlock: Unlock) {
            // The node lives on this thread's stack until `unlock` has returned.
            let node = McsNode::new();
            // SAFETY: `node` stays put and is used for nothing else until `unlock` returns.
            unsafe { self.lock.lock_with(&node) };
            // SAFETY: we hold the lock (if the lock is wrong, loom reports this access).
            self.count.with_mut(|c| unsafe { *c += 1 });
            unlock(&self.lock, &node);
        }
    }

    fn unlock(lock: &McsLock, node: &McsNode) {
        // SAFETY: called only by `add_one`, which holds the lock, taken with `node`.
        unsafe { lock.unlock_with(node) }
    }

    fn count_to_two(unlock: Unlock) {
        loom::model(move || {
            let shared = Arc::new(Counted {
                lock: McsLock::new(),
                count: UnsafeCell::new(0),
            });
            let other = {
                let shared = Arc::clone(&shared);
                loom::thread::spawn(move || shared.add_one(unlock))
            };
            shared.add_one(unlock);
            other.join().unwrap();
            // SAFETY: the other thread has been joined.
            let total = shared.count.with(|c| unsafe { *c });
            assert_eq!(total, 2, "an update was lost");
            assert!(!shared.lock.is_locked(), "the queue was left non-empty");
        });
    }

    #[test]
    fn loom_mcs_excludes() {
        count_to_two(unlock);
    }

    #[test]
    fn loom_mcs_try_lock_excludes() {
        loom::model(|| {
            let shared = Arc::new(Counted {
                lock: McsLock::new(),
                count: UnsafeCell::new(0),
            });
            let other = {
                let shared = Arc::clone(&shared);
                loom::thread::spawn(move || shared.add_one(unlock))
            };
            let node = McsNode::new();
            let mut expected = 1;
            // SAFETY: `node` stays put and is used for nothing else until `unlock` returns.
            if unsafe { shared.lock.try_lock_with(&node) } {
                // SAFETY: try_lock_with succeeded, so we hold the lock.
                shared.count.with_mut(|c| unsafe { *c += 1 });
                unlock(&shared.lock, &node);
                expected += 1;
            }
            other.join().unwrap();
            // SAFETY: the other thread has been joined.
            assert_eq!(shared.count.with(|c| unsafe { *c }), expected);
        });
    }

    /// The bug of the chapter's second exercise: an unlock that finds no successor linked and
    /// gives up when the tail has moved, instead of waiting for the link. A waiter that had
    /// swapped itself in but not yet linked is never woken. It spins for ever, and loom reports
    /// that the execution never ends.
    #[test]
    #[should_panic(expected = "maximum number of branches")]
    fn loom_mcs_unlock_without_waiting_for_the_link_is_caught() {
        fn impatient_unlock(lock: &McsLock, node: &McsNode) {
            let me = node as *const McsNode as *mut McsNode;
            let next = node.next.load(Ordering::Acquire);
            if next.is_null() {
                let _ = lock.tail.compare_exchange(
                    me,
                    ptr::null_mut(),
                    Ordering::Release,
                    Ordering::Relaxed,
                );
                return;
            }
            // SAFETY: `next` is a queued node; its owner waits for exactly this store.
            unsafe { (*next).locked.store(0, Ordering::Release) };
        }
        count_to_two(impatient_unlock);
    }
}
