//! An RCU-protected pointer: Linux's `rcu_assign_pointer` and `rcu_dereference`
//! (chapter 18, "RCU").
//!
//! A writer prepares a new object completely, then *publishes* it with one release store: a
//! reader that loads the pointer with acquire ordering sees the object as it was prepared,
//! never half-built. (Linux readers rely on the address dependency alone; Rust's memory model
//! has no "consume", so the load is an acquire, which on AArch64 is `LDAR`.) The old object
//! stays valid for readers that already hold it until a grace period has passed; only then may
//! the writer free it (`synchronize`, then free; or `call_rcu`).

use core::marker::PhantomData;

use super::RcuReadGuard;
use crate::sync::shim::{AtomicPtr, Ordering, const_unless_loom};

/// A pointer to a `T` that readers follow inside read-side sections and writers replace.
pub struct RcuPointer<T> {
    ptr: AtomicPtr<T>,
    /// Readers on several CPUs share the `T`, and a writer may free it on another CPU.
    _owns: PhantomData<alloc::boxed::Box<T>>,
}

impl<T> RcuPointer<T> {
    const_unless_loom! {
        /// A pointer to `initial` (which may be null).
        ///
        /// Taking a raw pointer is safe; following it is what `publish`'s contract covers, so
        /// `initial` must meet that contract too before any reader runs.
        pub const fn new(initial: *mut T) -> Self {
            RcuPointer {
                ptr: AtomicPtr::new(initial),
                _owns: PhantomData,
            }
        }
    }

    /// The current object, for as long as the read-side section lasts (`rcu_dereference`).
    pub fn read<'g>(&self, _guard: &'g RcuReadGuard<'_>) -> Option<&'g T> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: a published object stays valid until a grace period after it is replaced
        // (`publish`'s contract), and the guard keeps this CPU inside a read-side section, so
        // no such grace period can end while the reference lives.
        unsafe { p.as_ref() }
    }

    /// The raw current pointer, loaded as a reader does: for callers that manage the read-side
    /// section themselves (the torture test, the loom models) and for writers.
    pub fn load(&self) -> *mut T {
        self.ptr.load(Ordering::Acquire)
    }

    /// Publish `new` and return the object it replaces (`rcu_assign_pointer`). Free the
    /// returned object only after a grace period (`synchronize`, then free; or `call_rcu`).
    ///
    /// # Safety
    /// Writers are serialised (they hold the lock that protects this pointer), `new` is null
    /// or points at a fully initialised `T`, and it stays valid until it is itself replaced
    /// and a grace period of the `Rcu` every reader uses has elapsed.
    pub unsafe fn publish(&self, new: *mut T) -> *mut T {
        self.ptr.swap(new, Ordering::AcqRel)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::rcu::Rcu;

    #[test]
    fn readers_see_the_published_object_and_writers_get_the_old_one_back() {
        let rcu = Rcu::new();
        let first = Box::into_raw(Box::new(1u32));
        let p = RcuPointer::new(first);
        std::thread::scope(|s| {
            s.spawn(|| {
                rcu.cpu_online(0);
                let g = rcu.read_lock_on(0);
                assert_eq!(p.read(&g), Some(&1));
                drop(g);
                // SAFETY: single writer here; the new box is initialised and freed below only
                // after it is replaced and a grace period has passed.
                let old = unsafe { p.publish(Box::into_raw(Box::new(2u32))) };
                rcu.synchronize_on(Some(0));
                // SAFETY: `old` came from Box::into_raw, was unpublished and a grace period
                // has passed.
                drop(unsafe { Box::from_raw(old) });
                let g = rcu.read_lock_on(0);
                assert_eq!(p.read(&g), Some(&2));
                drop(g);
                // SAFETY: as above, with no reader left at all.
                let last = unsafe { p.publish(core::ptr::null_mut()) };
                rcu.synchronize_on(Some(0));
                // SAFETY: as above.
                drop(unsafe { Box::from_raw(last) });
                let g = rcu.read_lock_on(0);
                assert_eq!(p.read(&g), None);
            });
        });
    }
}
