//! One process on the list, and what becomes of it a grace period after its removal (chapter
//! 18, "RCU").
//!
//! A writer fills a [`ProcNode`] in completely before it links the node, so a reader that finds
//! it sees it whole. Once a writer has unlinked it, the node is handed to `call_rcu`, and
//! `reclaim` runs when the grace period is over: without poisoning it drops the payload and
//! frees the node; with poisoning (src/task/proclist/poison.rs) it drops the payload and
//! poisons the node, and the list frees the node later, from its quarantine.

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::Pid;
use super::poison::{MAGIC_LIVE, POISON_BYTE, POISON_PID, POISON_TAG, POISONING};
use crate::rcu::{RcuHead, RcuLink, RcuListed};

/// One process on the list: its pid, the payload, the link, and what reclaiming it needs.
///
/// `repr(C)` with the magic first: whatever reuses the memory after the real free (the buddy
/// allocator writes its free-list link into a block's first word) overwrites the magic first.
#[repr(C)]
pub struct ProcNode<T> {
    /// [`MAGIC_LIVE`] from creation until the grace period after removal; then poison.
    pub(super) magic: AtomicU64,
    pub(super) link: RcuLink<ProcNode<T>>,
    /// Atomic so that poisoning it never races with a reader in the language's sense.
    pub(super) pid: AtomicU32,
    /// Set (release) by the callback once the payload is dropped and the node poisoned.
    pub(super) reclaimed: AtomicBool,
    /// Initialised from creation until the callback drops it.
    pub(super) payload: UnsafeCell<MaybeUninit<T>>,
    pub(super) head: RcuHead,
    /// The next node in the list's quarantine (only under the writer lock).
    pub(super) retired_next: AtomicPtr<ProcNode<T>>,
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
    pub(super) fn new(pid: Pid, payload: T) -> Self {
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
    pub(super) fn check(&self) -> Result<Pid, u64> {
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
    pub(super) unsafe fn payload(&self) -> &T {
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
pub(super) unsafe fn free_live<T>(node: NonNull<ProcNode<T>>) {
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
pub(super) unsafe fn reclaim<T>(head: *mut RcuHead) {
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
