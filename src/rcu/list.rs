//! An intrusive RCU list: readers walk it without a lock while one writer at a time changes it
//! (chapter 18, "RCU"; the process list is its showcase).
//!
//! Each object embeds an [`RcuLink`] (its `next` pointer) and implements [`RcuListed`] to say
//! where. The list owns nothing: the writer allocates an object, links it in, and after
//! unlinking it frees it only once a grace period has passed.
//!
//! The ordering rules, as in Linux's `list_add_rcu` / `list_del_rcu`:
//! - **add**: fill in the object (its `next` too) first, then link it with one release store,
//!   so a reader that finds it sees it whole.
//! - **delete**: point the predecessor past the object with a release store, and leave the
//!   object's own `next` alone: a reader standing on it still gets back onto the list.
//! - **replace**: the new object's `next` takes the old one's, then one release store swaps it
//!   in; readers see either the old or the new object, never neither.
//! - **readers**: every `next` is loaded with acquire ordering (Rust has no consume).
//!
//! Writers must be serialised by a lock of the caller's (the process list's writer lock):
//! two writers splicing at once would lose one's update. That is the `unsafe` contract of the
//! writer methods, together with the objects' lifetimes.

use core::marker::PhantomData;
use core::ptr::NonNull;

use super::RcuReadGuard;
use crate::sync::shim::{AtomicPtr, Ordering, const_unless_loom};

/// The link an object on an [`RcuList`] embeds.
pub struct RcuLink<T> {
    next: AtomicPtr<T>,
}

impl<T> Default for RcuLink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> RcuLink<T> {
    const_unless_loom! {
        pub const fn new() -> Self {
            RcuLink {
                next: AtomicPtr::new(core::ptr::null_mut()),
            }
        }
    }
}

/// Objects that can sit on an [`RcuList`].
///
/// # Safety
/// `rcu_link` must return the same embedded link every time, and the object must be on at
/// most one list through it.
pub unsafe trait RcuListed: Sized {
    fn rcu_link(&self) -> &RcuLink<Self>;
}

/// A singly linked RCU list of `T`s, newest first unless `push_back` is used.
pub struct RcuList<T: RcuListed> {
    head: AtomicPtr<T>,
    _owns: PhantomData<alloc::boxed::Box<T>>,
}

impl<T: RcuListed> Default for RcuList<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: RcuListed> RcuList<T> {
    const_unless_loom! {
        pub const fn new() -> Self {
            RcuList {
                head: AtomicPtr::new(core::ptr::null_mut()),
                _owns: PhantomData,
            }
        }
    }

    /// Walk the list inside a read-side section. The references live as long as the guard.
    pub fn iter<'g>(&'g self, _guard: &'g RcuReadGuard<'_>) -> Iter<'g, T> {
        Iter {
            next: self.head.load(Ordering::Acquire),
            _list: PhantomData,
        }
    }

    /// Link `node` in at the front.
    ///
    /// # Safety
    /// The caller holds the list's writer lock; `node` is fully initialised, on no list, and
    /// stays valid until it is unlinked and a grace period has passed.
    pub unsafe fn push_front(&self, node: NonNull<T>) {
        // SAFETY: `node` is valid (contract).
        let link = unsafe { node.as_ref() }.rcu_link();
        link.next
            .store(self.head.load(Ordering::Relaxed), Ordering::Relaxed);
        self.head.store(node.as_ptr(), Ordering::Release);
    }

    /// Link `node` in at the end (O(length)).
    ///
    /// # Safety
    /// As for `push_front`.
    pub unsafe fn push_back(&self, node: NonNull<T>) {
        // SAFETY: `node` is valid (contract).
        unsafe { node.as_ref() }
            .rcu_link()
            .next
            .store(core::ptr::null_mut(), Ordering::Relaxed);
        let mut slot = &self.head;
        loop {
            let p = slot.load(Ordering::Relaxed);
            if p.is_null() {
                slot.store(node.as_ptr(), Ordering::Release);
                return;
            }
            // SAFETY: linked objects are valid while linked (contract of the writer who linked
            // them), and we hold the writer lock so none is being unlinked.
            slot = unsafe { &(*p).rcu_link().next };
        }
    }

    /// The slot (head or a `next`) that points at `node`, if `node` is on the list.
    ///
    /// # Safety
    /// The caller holds the writer lock.
    unsafe fn slot_of(&self, node: NonNull<T>) -> Option<&AtomicPtr<T>> {
        let mut slot = &self.head;
        loop {
            let p = slot.load(Ordering::Relaxed);
            if p.is_null() {
                return None;
            }
            if p == node.as_ptr() {
                return Some(slot);
            }
            // SAFETY: as in push_back.
            slot = unsafe { &(*p).rcu_link().next };
        }
    }

    /// Unlink `node`; false if it is not on the list. Readers already on it may still be, so
    /// free it only after a grace period; its `next` stays intact until then.
    ///
    /// # Safety
    /// The caller holds the list's writer lock.
    pub unsafe fn remove(&self, node: NonNull<T>) -> bool {
        // SAFETY: forwarded contract.
        let Some(slot) = (unsafe { self.slot_of(node) }) else {
            return false;
        };
        // SAFETY: `node` is on the list, hence valid.
        let next = unsafe { node.as_ref() }
            .rcu_link()
            .next
            .load(Ordering::Relaxed);
        // Release: a reader that follows the new link must also see the successor as it was
        // published (this store, not the successor's original insertion, is what it reads).
        slot.store(next, Ordering::Release);
        true
    }

    /// Put `new` where `old` is; false (and nothing changed) if `old` is not on the list.
    /// Free `old` only after a grace period.
    ///
    /// # Safety
    /// The caller holds the list's writer lock; `new` meets `push_front`'s contract.
    pub unsafe fn replace(&self, old: NonNull<T>, new: NonNull<T>) -> bool {
        // SAFETY: forwarded contract.
        let Some(slot) = (unsafe { self.slot_of(old) }) else {
            return false;
        };
        // SAFETY: `old` is on the list and `new` is valid (contract).
        let (old_ref, new_ref) = unsafe { (old.as_ref(), new.as_ref()) };
        new_ref.rcu_link().next.store(
            old_ref.rcu_link().next.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        slot.store(new.as_ptr(), Ordering::Release);
        true
    }

    /// Unlink every object and hand each to `f` (to be freed after a grace period).
    ///
    /// # Safety
    /// The caller holds the list's writer lock.
    pub unsafe fn drain(&self, mut f: impl FnMut(NonNull<T>)) {
        let mut p = self.head.swap(core::ptr::null_mut(), Ordering::AcqRel);
        while let Some(node) = NonNull::new(p) {
            // SAFETY: the objects were linked, hence valid; readers may still walk them, so
            // their links stay as they are.
            p = unsafe { node.as_ref() }
                .rcu_link()
                .next
                .load(Ordering::Relaxed);
            f(node);
        }
    }
}

/// A reader's walk over an [`RcuList`].
pub struct Iter<'g, T> {
    next: *mut T,
    _list: PhantomData<&'g T>,
}

impl<'g, T: RcuListed + 'g> Iterator for Iter<'g, T> {
    type Item = &'g T;

    fn next(&mut self) -> Option<&'g T> {
        // SAFETY: the iterator borrows a read guard for 'g, and writers free unlinked objects
        // only after a grace period (their contract), which cannot end while the guard lives.
        let node = unsafe { self.next.as_ref() }?;
        self.next = node.rcu_link().next.load(Ordering::Acquire);
        Some(node)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::rcu::Rcu;
    use crate::sync::SpinLock;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    struct Node {
        link: RcuLink<Node>,
        key: u64,
        /// key * 3, checked by readers: a half-built or poisoned node breaks it.
        check: AtomicU64,
    }

    // SAFETY: `link` is the one embedded link.
    unsafe impl RcuListed for Node {
        fn rcu_link(&self) -> &RcuLink<Node> {
            &self.link
        }
    }

    fn node(key: u64) -> NonNull<Node> {
        NonNull::from(Box::leak(Box::new(Node {
            link: RcuLink::new(),
            key,
            check: AtomicU64::new(key * 3),
        })))
    }

    const POISON: u64 = 0xdead_dead;

    /// Poison, then free: a reader that outlived its grace period reads poison first (and a
    /// use after the free proper would show up under a sanitizer).
    fn poison_and_free(n: NonNull<Node>) {
        // SAFETY: the caller unlinked `n` and waited a grace period; it came from node().
        unsafe {
            n.as_ref().check.store(POISON, Ordering::Relaxed);
            drop(Box::from_raw(n.as_ptr()));
        }
    }

    fn keys(list: &RcuList<Node>, rcu: &Rcu) -> Vec<u64> {
        let g = rcu.read_lock_on(0);
        list.iter(&g).map(|n| n.key).collect()
    }

    #[test]
    fn add_delete_replace_as_a_reader_sees_them() {
        let rcu = Rcu::new();
        let list = RcuList::new();
        let writer: SpinLock<()> = SpinLock::new(());
        std::thread::scope(|s| {
            s.spawn(|| {
                let (a, b, c, d) = (node(1), node(2), node(3), node(4));
                rcu.cpu_online(0);
                let _w = writer.lock();
                // SAFETY: we hold `writer`; the nodes are fresh and freed only after a grace
                // period.
                unsafe {
                    list.push_front(b);
                    list.push_front(a);
                    list.push_back(c);
                }
                assert_eq!(keys(&list, &rcu), [1, 2, 3]);
                // SAFETY: as above.
                assert!(unsafe { list.remove(b) });
                // SAFETY: as above.
                let again = unsafe { list.remove(b) };
                assert!(!again, "already gone");
                assert_eq!(keys(&list, &rcu), [1, 3]);
                // SAFETY: as above.
                assert!(unsafe { list.replace(c, d) });
                assert_eq!(keys(&list, &rcu), [1, 4]);
                rcu.synchronize_on(Some(0));
                poison_and_free(b);
                poison_and_free(c);
                let mut rest = Vec::new();
                // SAFETY: as above.
                unsafe { list.drain(|n| rest.push(n)) };
                assert_eq!(keys(&list, &rcu), Vec::<u64>::new());
                rcu.synchronize_on(Some(0));
                rest.into_iter().for_each(poison_and_free);
            });
        });
    }

    /// Readers on three CPUs walk the list while a writer on a fourth replaces and deletes
    /// nodes, freeing (poisoning first) after synchronize: no reader may meet poison or a
    /// half-built node.
    #[test]
    fn readers_never_meet_a_freed_node() {
        let rcu = Rcu::new();
        let list: RcuList<Node> = RcuList::new();
        let writer: SpinLock<()> = SpinLock::new(());
        let stop = AtomicBool::new(false);
        for cpu in 0..4 {
            rcu.cpu_online(cpu);
        }
        std::thread::scope(|s| {
            for cpu in 1..4 {
                let (rcu, list, stop) = (&rcu, &list, &stop);
                s.spawn(move || {
                    let mut walks = 0u64;
                    while !stop.load(Ordering::Acquire) {
                        let g = rcu.read_lock_on(cpu);
                        for n in list.iter(&g) {
                            let c = n.check.load(Ordering::Relaxed);
                            assert_eq!(c, n.key * 3, "reader on cpu{cpu} met a freed node");
                        }
                        drop(g);
                        walks += 1;
                        rcu.tick(cpu);
                        std::thread::yield_now();
                    }
                    walks
                });
            }
            s.spawn(|| {
                let mut live: Vec<NonNull<Node>> = Vec::new();
                for i in 0..200u64 {
                    let w = writer.lock();
                    let gone = if live.len() < 8 {
                        // SAFETY: we hold `writer`; fresh node, freed after a grace period.
                        unsafe { list.push_front(node(i)) };
                        live.push(list.head_for_test());
                        None
                    } else if i % 2 == 0 {
                        let old = live.remove((i as usize / 2) % live.len());
                        // SAFETY: as above.
                        assert!(unsafe { list.remove(old) });
                        Some(old)
                    } else {
                        let idx = (i as usize) % live.len();
                        let new = node(i);
                        // SAFETY: as above.
                        assert!(unsafe { list.replace(live[idx], new) });
                        Some(core::mem::replace(&mut live[idx], new))
                    };
                    drop(w);
                    if let Some(old) = gone {
                        rcu.synchronize_on(Some(0));
                        poison_and_free(old);
                    }
                }
                let w = writer.lock();
                let mut rest = Vec::new();
                // SAFETY: as above.
                unsafe { list.drain(|n| rest.push(n)) };
                drop(w);
                // The readers still tick, so this grace period ends.
                rcu.synchronize_on(Some(0));
                rest.into_iter().for_each(poison_and_free);
                stop.store(true, Ordering::Release);
            });
        });
    }

    impl RcuList<Node> {
        fn head_for_test(&self) -> NonNull<Node> {
            NonNull::new(self.head.load(Ordering::Relaxed)).unwrap()
        }
    }
}

/// Loom model (`make loom`): publishing a node must make its contents visible to a reader
/// that finds it. The payload is a loom `UnsafeCell`, so a publish without release ordering
/// shows up as a causality violation.
#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use crate::rcu::Rcu;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    struct Node {
        link: RcuLink<Node>,
        payload: UnsafeCell<u64>,
    }

    // SAFETY: `link` is the one embedded link.
    unsafe impl RcuListed for Node {
        fn rcu_link(&self) -> &RcuLink<Node> {
            &self.link
        }
    }

    // SAFETY: the payload is only written before publication (checked by loom).
    unsafe impl Sync for Node {}

    fn reader_sees_whole_nodes(publish: fn(&RcuList<Node>, NonNull<Node>)) {
        loom::model(move || {
            let rcu = Arc::new(Rcu::new());
            let list: Arc<RcuList<Node>> = Arc::new(RcuList::new());
            let reader = {
                let (rcu, list) = (Arc::clone(&rcu), Arc::clone(&list));
                loom::thread::spawn(move || {
                    let g = rcu.read_lock_on(0);
                    for n in list.iter(&g) {
                        // SAFETY: loom checks that this read is ordered after the write.
                        let v = unsafe { n.payload.with(|p| *p) };
                        assert_eq!(v, 7, "reader saw a half-built node");
                    }
                })
            };
            let node = Box::new(Node {
                link: RcuLink::new(),
                payload: UnsafeCell::new(0),
            });
            // SAFETY: not published yet: this thread is its only user.
            unsafe { node.payload.with_mut(|p| *p = 7) };
            let node = NonNull::from(Box::leak(node));
            publish(&list, node);
            reader.join().unwrap();
            // SAFETY: the reader is done; the node came from Box::leak.
            unsafe { drop(Box::from_raw(node.as_ptr())) };
        });
    }

    #[test]
    fn loom_rcu_list_add_publishes_whole_nodes() {
        // SAFETY: the only writer; the node is whole and outlives the reader.
        reader_sees_whole_nodes(|list, node| unsafe { list.push_front(node) });
    }

    /// The bug: linking the node with a relaxed store, as if publication needed no ordering.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_rcu_list_relaxed_publish_is_caught() {
        reader_sees_whole_nodes(|list, node| {
            list.head.store(node.as_ptr(), Ordering::Relaxed);
        });
    }
}
