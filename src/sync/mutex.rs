//! The mutex: a lock whose waiters spin a little, then sleep (chapter 17, "Spin or block").
//!
//! One word says everything: the owner's token (`Sleeper::current_token`), or 0 when free, with
//! bit 0 as the "waiters" flag, set when someone may sleep in the wait queue. Tokens keep bit 0
//! clear so the two fit together, and one compare-exchange can read and change both.
//!
//! - **Fast path** (no contention): `lock` is one compare-exchange 0 -> token (acquire) and
//!   `unlock` one compare-exchange token -> 0 (release). Exactly a spin lock's cost.
//! - **Spinning**: if the owner is running on a CPU it will probably let go soon, sooner than
//!   two context switches. So a waiter spins while `Sleeper::token_is_running(owner)`, a bounded
//!   number of times, hoping to take the lock without sleeping (Linux's "optimistic spinning").
//! - **Sleeping**: otherwise the waiter queues, sets the waiters flag and sleeps. The flag makes
//!   the owner's unlock fail its fast path and take the slow one, which hands the lock back with
//!   the flag still set (if others wait) and wakes the longest waiter.
//!
//! Why no wakeup is lost: a waiter sets the flag *after* queueing (its condition in
//! `WaitQueue::wait_until` does it), and an owner that sees the flag takes the queue lock before
//! it releases. Either the waiter's flag reached the word before the owner's fast-path
//! compare-exchange (which then fails, so the owner wakes it from the slow path), or after: then
//! that compare-exchange had already released the lock, and the waiter's own check, which
//! reads the word to set the flag, finds it free and takes it instead of sleeping. The slow
//! unlock clears the flag only when the queue is empty, under the queue lock; a waiter that
//! queues after that finds the word free or sets the flag again itself. The loom models at the
//! bottom check this reasoning, and a twin that forgets the wake must deadlock.
//!
//! A woken waiter is not handed the lock: it competes again, and a spinner may take the lock
//! first ("stealing"). That keeps the lock busy instead of idle while the woken task is
//! scheduled, at the cost of fairness; the waiter then queues again at the back.
//!
//! Only the owner may unlock, and the mutex checks: unlocking from another task panics, naming
//! both. `MutexGuard` is not `Send`, so only `RawMutex::unlock` and `Mutex::force_unlock` can
//! try it. `BrokenMutex` at the bottom is the deliberately broken twin the tests must catch.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
// Statistics are plain atomics even under loom: they take part in no model.
use core::sync::atomic::{AtomicU32, AtomicU64};

use super::lockdep::LockClass;
use super::lockstat::{self, Acquire};
use super::shim::{Ordering, const_unless_loom};
use super::sleep::{AtomicUsize, Sleeper};
use super::waitqueue::WaitQueue;

/// Bit 0 of the owner word: someone may be asleep in the wait queue.
const WAITERS: usize = 1;

/// How many times a waiter looks at a running owner before it sleeps, unless set otherwise
/// (`RawMutex::set_spin_limit`). Each look is a `cpu_relax`, a few nanoseconds on the target:
/// the whole spin costs less than the two context switches a sleep costs.
pub const SPIN_LIMIT: u32 = 100;

/// The owner's token in an owner word.
fn holder(word: usize) -> usize {
    word & !WAITERS
}

/// How a mutex's acquisitions went (for the benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MutexStats {
    /// Taken by the fast path's single compare-exchange.
    pub fast: u64,
    /// Taken while spinning on a running owner.
    pub spun: u64,
    /// Taken after queueing (perhaps without sleeping, if the lock came free meanwhile).
    pub queued: u64,
    /// Sleeps in all, over the queued acquisitions.
    pub sleeps: u64,
}

/// The counters behind `MutexStats`. Only the holder updates them, so each update is a load
/// and a store, not an atomic add: the mutex itself orders them. Right after the owner word,
/// they are usually in the cache line the acquiring compare-exchange has just made this CPU's.
struct Counters {
    fast: AtomicU64,
    spun: AtomicU64,
    queued: AtomicU64,
    sleeps: AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Counters {
            fast: AtomicU64::new(0),
            spun: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
        }
    }

    fn bump(counter: &AtomicU64, by: u64) {
        let n = counter.load(core::sync::atomic::Ordering::Relaxed);
        counter.store(n + by, core::sync::atomic::Ordering::Relaxed);
    }

    fn snapshot(&self) -> MutexStats {
        let get = |c: &AtomicU64| c.load(core::sync::atomic::Ordering::Relaxed);
        MutexStats {
            fast: get(&self.fast),
            spun: get(&self.spun),
            queued: get(&self.queued),
            sleeps: get(&self.sleeps),
        }
    }
}

/// The mutex algorithm without data: `lock` and a checked `unlock`.
#[repr(C)]
pub struct RawMutex<S: Sleeper> {
    /// The owner's token, or 0, with `WAITERS` in bit 0.
    owner: AtomicUsize,
    counters: Counters,
    /// Looks at a running owner before sleeping: 0 makes a pure sleeping lock.
    spin_limit: AtomicU32,
    waiters: WaitQueue<S>,
    /// Where the mutex was built (and its name, if any): the key of its lock statistics
    /// (chapter 9). The validator does not check mutexes.
    class: LockClass,
    /// Lock statistics' record of this mutex; empty without the `lockstat` feature.
    stat: lockstat::PerLock,
}

impl<S: Sleeper> RawMutex<S> {
    const_unless_loom! {
        /// An unlocked mutex, whose statistics' class is the caller's location.
        #[track_caller]
        pub const fn new() -> Self {
            Self::named("")
        }
    }

    const_unless_loom! {
        /// An unlocked mutex with a name for lock statistics (`lockstat`).
        #[track_caller]
        pub const fn named(name: &'static str) -> Self {
            RawMutex {
                owner: AtomicUsize::new(0),
                counters: Counters::new(),
                spin_limit: AtomicU32::new(SPIN_LIMIT),
                waiters: Self::wait_queue(),
                class: LockClass::at(name, core::panic::Location::caller()),
                stat: lockstat::PerLock::new(),
            }
        }
    }

    const_unless_loom! {
        /// One validator class for every mutex's queue lock (src/sync/waitqueue.rs). Built here,
        /// in a function without `#[track_caller]`: called from `named`, the queue's class
        /// would be the mutex's caller, one class per mutex and the mutex's own.
        const fn wait_queue() -> WaitQueue<S> {
            WaitQueue::named("mutex wait queue")
        }
    }

    fn me() -> usize {
        let me = S::current_token();
        debug_assert!(
            me != 0 && me & WAITERS == 0,
            "Sleeper::current_token gave {me:#x}: tokens must be nonzero with bit 0 clear"
        );
        me
    }

    /// Take the mutex, spinning on a running owner a while, else sleeping.
    #[inline]
    pub fn lock(&self) {
        S::might_sleep();
        let me = Self::me();
        if self
            .owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            Counters::bump(&self.counters.fast, 1);
            lockstat::acquired(&self.class, &self.stat, Acquire::UNCONTENDED, false);
            return;
        }
        self.lock_slow(me);
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, me: usize) {
        // Taking a mutex this task already holds would spin on itself (it is a running
        // owner), then sleep until it wakes itself: never.
        assert!(
            holder(self.owner.load(Ordering::Relaxed)) != me,
            "mutex locked again by the task that holds it (token {me:#x}): it would wait for itself forever"
        );
        // The wait lock statistics see runs from here to holding the mutex, sleeps included.
        let waiting = lockstat::begin_acquire();
        if self.spin(me) {
            Counters::bump(&self.counters.spun, 1);
            lockstat::acquired(&self.class, &self.stat, waiting, true);
            return;
        }
        let sleeps = self.waiters.wait_until(|| self.acquire_or_flag(me));
        Counters::bump(&self.counters.queued, 1);
        Counters::bump(&self.counters.sleeps, sleeps as u64);
        lockstat::acquired(&self.class, &self.stat, waiting, true);
    }

    /// Optimistic spinning: true if we took the lock. Gives up at once when the owner is not
    /// running (it cannot let go before it is scheduled again), and after `SPIN_LIMIT` looks.
    fn spin(&self, me: usize) -> bool {
        let limit = self.spin_limit.load(core::sync::atomic::Ordering::Relaxed);
        for _ in 0..limit {
            let word = self.owner.load(Ordering::Relaxed);
            if holder(word) == 0 {
                // Free, perhaps with sleepers queued: we take it ahead of them and keep the
                // flag, so our unlock still wakes one.
                if self
                    .owner
                    .compare_exchange(word, me | word, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if !S::token_is_running(holder(word)) {
                return false;
            }
            S::cpu_relax();
        }
        false
    }

    // lab:mutex begin
    /// The wait queue's condition: take the lock if it is free, else make sure the waiters
    /// flag is set before we sleep (so the owner's unlock will look in the queue).
    fn acquire_or_flag(&self, me: usize) -> bool {
        let mut word = self.owner.load(Ordering::Relaxed);
        loop {
            let (new, taken) = if holder(word) == 0 {
                // Keep the flag: others may still be queued behind us.
                (me | word, true)
            } else if word & WAITERS == 0 {
                (word | WAITERS, false)
            } else {
                return false;
            };
            match self
                .owner
                .compare_exchange(word, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return taken,
                Err(now) => word = now,
            }
        }
    }
    // lab:mutex end

    /// Take the mutex only if it is free right now.
    pub fn try_lock(&self) -> bool {
        let me = Self::me();
        let word = self.owner.load(Ordering::Relaxed);
        let taken = holder(word) == 0
            && self
                .owner
                .compare_exchange(word, me | word, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
        if taken {
            lockstat::acquired(&self.class, &self.stat, Acquire::UNCONTENDED, false);
        }
        taken
    }

    /// How many looks at a running owner before sleeping (`SPIN_LIMIT` unless set): 0 never
    /// spins, a large number almost never sleeps. For the benchmarks that ask "spin or block?",
    /// and for the loom models, which check the sleeping path and the spinning path apart.
    pub fn set_spin_limit(&self, looks: u32) {
        self.spin_limit
            .store(looks, core::sync::atomic::Ordering::Relaxed);
    }

    /// Let go, waking a sleeper if the waiters flag says there may be one.
    ///
    /// # Panics
    /// If the calling task does not own the mutex (another task owns it, or nobody does).
    /// The panic names the caller's location.
    #[inline]
    #[track_caller]
    pub fn unlock(&self) {
        let me = Self::me();
        // Statistics first, while we still hold it; a caller that does not own the mutex gets
        // to the panic below without having touched them.
        if lockstat::ENABLED && holder(self.owner.load(Ordering::Relaxed)) == me {
            lockstat::released(&self.class, &self.stat);
        }
        if self
            .owner
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.unlock_slow(me, true);
    }

    // lab:mutex begin
    /// The fast path failed: the waiters flag is set, or we are not the owner.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn unlock_slow(&self, me: usize, check_owner: bool) {
        // Only the owner changes the token bits while the mutex is held, so if they say `me`
        // they stay `me` until we store below, and if not, we are not the owner.
        let word = self.owner.load(Ordering::Relaxed);
        if check_owner && holder(word) != me {
            not_the_owner(me, holder(word));
        }
        self.waiters.locked(|waiters| {
            // With the queue locked, nobody can queue and set the flag unseen: an empty queue
            // means nobody sleeps (a waiter queues before it sets the flag, and a woken one
            // queues again before it looks). Release hands our critical section to the next
            // owner, whose acquiring compare-exchange reads this store.
            let next = if waiters.is_empty() { 0 } else { WAITERS };
            self.owner.store(next, Ordering::Release);
            waiters.wake_one();
        });
    }
    // lab:mutex end

    pub fn is_locked(&self) -> bool {
        holder(self.owner.load(Ordering::Relaxed)) != 0
    }

    /// The owner's token, if any (for reports; stale as soon as it returns).
    pub fn owner_token(&self) -> Option<usize> {
        match holder(self.owner.load(Ordering::Relaxed)) {
            0 => None,
            t => Some(t),
        }
    }

    /// True if the calling task owns the mutex.
    pub fn is_owned_by_current(&self) -> bool {
        self.owner_token() == Some(S::current_token())
    }

    /// Tasks in the wait queue right now.
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }

    pub fn stats(&self) -> MutexStats {
        self.counters.snapshot()
    }

    /// The key of the mutex's lock statistics: where it was built, and its name.
    pub fn class(&self) -> &LockClass {
        &self.class
    }
}

impl<S: Sleeper> Default for RawMutex<S> {
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

#[cold]
#[track_caller]
fn not_the_owner(me: usize, owner: usize) -> ! {
    if owner == 0 {
        panic!("mutex unlocked by task {me:#x}, which does not own it: it is not locked");
    }
    panic!("mutex unlocked by task {me:#x}, which does not own it: task {owner:#x} does");
}

/// Data of type `T` that one task at a time may use; others sleep (through `Sleeper` `S`).
pub struct Mutex<T: ?Sized, S: Sleeper> {
    raw: RawMutex<S>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands the data to one task at a time, so `T: Send` suffices.
unsafe impl<T: ?Sized + Send, S: Sleeper> Sync for Mutex<T, S> {}

impl<T, S: Sleeper> Mutex<T, S> {
    const_unless_loom! {
        /// A mutex whose lock statistics' class is the caller's location.
        #[track_caller]
        pub const fn new(data: T) -> Self {
            Self::named("", data)
        }
    }

    const_unless_loom! {
        /// A mutex with a name for lock statistics (`lockstat`).
        #[track_caller]
        pub const fn named(name: &'static str, data: T) -> Self {
            Mutex {
                raw: RawMutex::named(name),
                data: UnsafeCell::new(data),
            }
        }
    }

    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized, S: Sleeper> Mutex<T, S> {
    /// Wait (spinning, then sleeping) until the data is ours.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T, S> {
        self.raw.lock();
        MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        }
    }

    /// The data, if nobody holds the mutex right now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T, S>> {
        self.raw.try_lock().then(|| MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        })
    }

    /// Unlock without a guard, for a task that gave its guard up with `mem::forget`.
    ///
    /// # Safety
    /// The calling task owns the mutex, and nothing borrowed through its forgotten guard is
    /// used again. A caller that does not own the mutex is caught: the call panics before
    /// touching anything.
    #[track_caller]
    pub unsafe fn force_unlock(&self) {
        self.raw.unlock();
    }

    /// With `&mut self` nobody else can hold the mutex: no locking needed.
    /// A raw pointer to the data, for a reader that can prove no writer runs meanwhile (the
    /// scheduler's switch hook reads a process's address-space root this way: its only writer,
    /// the process's own thread, is not running while the CPU switches to it). Using the pointer
    /// is the caller's unsafe promise.
    pub fn data_ptr(&self) -> *mut T {
        self.data.get()
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// See `RawMutex::set_spin_limit`.
    pub fn set_spin_limit(&self, looks: u32) {
        self.raw.set_spin_limit(looks);
    }

    pub fn is_owned_by_current(&self) -> bool {
        self.raw.is_owned_by_current()
    }

    /// Tasks asleep (or about to be) waiting for the mutex.
    pub fn waiters(&self) -> usize {
        self.raw.waiters()
    }

    pub fn stats(&self) -> MutexStats {
        self.raw.stats()
    }

    /// See `RawMutex::class`.
    pub fn class(&self) -> &LockClass {
        self.raw.class()
    }
}

/// The data while the mutex is held; unlocks when dropped.
pub struct MutexGuard<'a, T: ?Sized, S: Sleeper> {
    mutex: &'a Mutex<T, S>,
    /// Not `Send`: the guard unlocks as the task that locked, so it must stay with that task.
    _not_send: PhantomData<*const ()>,
}

impl<T: ?Sized, S: Sleeper> Deref for MutexGuard<'_, T, S> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while its task holds the mutex.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized, S: Sleeper> DerefMut for MutexGuard<'_, T, S> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while its task holds the mutex, and is not shared.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized, S: Sleeper> Drop for MutexGuard<'_, T, S> {
    fn drop(&mut self) {
        self.mutex.raw.unlock();
    }
}

/// A deliberately broken mutex: never use it (the stress tests must catch it).
///
/// Its fast path checks that the word is 0 with one load and takes it with a separate store,
/// where the real one has a single compare-exchange. Two tasks can both see 0 before either
/// stores, and both enter. It cannot check its owner on unlock either (two tasks may both
/// believe they own it), so it breaks by losing updates, which the tests count, rather than
/// by the owner check's panic. Everything else is the real mutex's code.
pub struct BrokenMutex<T, S: Sleeper> {
    raw: RawMutex<S>,
    data: UnsafeCell<T>,
}

// SAFETY: deliberately unsound: `lock` does not give mutual exclusion. Only the tests use it,
// on data whose corruption they detect and expect.
unsafe impl<T: Send, S: Sleeper> Sync for BrokenMutex<T, S> {}

impl<T, S: Sleeper> BrokenMutex<T, S> {
    const_unless_loom! {
        pub const fn new(data: T) -> Self {
            BrokenMutex {
                raw: RawMutex::new(),
                data: UnsafeCell::new(data),
            }
        }
    }

    pub fn lock(&self) -> BrokenMutexGuard<'_, T, S> {
        let me = RawMutex::<S>::me();
        if self.raw.owner.load(Ordering::Acquire) == 0 {
            // The bug: another task may take the mutex between the load above and the store
            // below. Some dawdling widens the window so that the host test, whose threads run
            // in parallel on the host's cores, sees lost updates quickly. Not a yield: on a
            // busy host a yield costs a time slice, and the test would crawl.
            for i in 0..64u32 {
                core::hint::black_box(i);
            }
            self.raw.owner.store(me, Ordering::Relaxed);
        } else {
            self.raw.lock_slow(me);
        }
        BrokenMutexGuard {
            mutex: self,
            me,
            _not_send: PhantomData,
        }
    }

    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

pub struct BrokenMutexGuard<'a, T, S: Sleeper> {
    mutex: &'a BrokenMutex<T, S>,
    me: usize,
    _not_send: PhantomData<*const ()>,
}

impl<T, S: Sleeper> Deref for BrokenMutexGuard<'_, T, S> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: none, deliberately: the broken lock may let another task in (see the type).
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T, S: Sleeper> DerefMut for BrokenMutexGuard<'_, T, S> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: none, deliberately: the broken lock may let another task in (see the type).
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T, S: Sleeper> Drop for BrokenMutexGuard<'_, T, S> {
    fn drop(&mut self) {
        let raw = &self.mutex.raw;
        if raw
            .owner
            .compare_exchange(self.me, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            raw.unlock_slow(self.me, false);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

/// Loom models (`make loom`): threads lock, add one to a loom cell (which panics on any access
/// not ordered after the previous holder's), and unlock. Every thread must finish: a lost
/// wakeup leaves a thread asleep for ever, which loom reports as a deadlock.
///
/// The sleeping path and the spinning path are checked apart. A loom thread that spins yields
/// to loom's scheduler at each look, and loom then runs the owner, which lets go: with a spin
/// limit above 0, a waiter would hardly ever reach the queue while the owner still holds the
/// lock, and the wakeup logic would go unchecked.
#[cfg(all(test, loom))]
#[path = "mutex/loom_tests.rs"]
mod tests;
