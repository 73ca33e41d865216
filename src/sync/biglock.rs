//! The big kernel lock and its kind: a lock that belongs to a *task*, which the task may take
//! again while it holds it, and which the scheduler lets go of while its holder is off the CPU
//! (chapter 24, "One big kernel lock").
//!
//! Linux 2.0 ran the whole kernel under one lock, `kernel_flag`, and kept two properties of it
//! until the lock was removed in 2.6.39:
//! - **Recursive.** Code that held the lock called code that took it again (a system call
//!   reaching a helper that "locked the kernel" for itself). A plain spin lock would spin on
//!   itself for ever there, so the lock counts how deep its holder is (`depth`) and only the
//!   outermost `unlock` lets go.
//! - **Dropped across sleeps.** A holder that sleeps (waiting for a disk, a child, a pipe) would
//!   otherwise stop every CPU's kernel for as long as it sleeps. `schedule` gives up every big
//!   lock its task holds before switching away (`release_for_switch`) and takes them back,
//!   at the same depth, when the task runs again (`Held::reacquire`). The price: whatever the
//!   holder saw before it slept may have changed when it wakes, so the kernel code under the
//!   lock must look again after every sleep, exactly as with no lock at all.
//!
//! *When* in the switch the lock goes is the difference between Linux 2.0 and 2.2. In 2.0 the
//! lock belonged to the CPU: the scheduler ran under it, `switch_to` swapped the two tasks'
//! depths, and the lock left the CPU only when the task switched to went back to user mode (or
//! was the idle task). 2.2 gave the scheduler its own lock and let the big lock go at the top of
//! `schedule`, so the switch itself ran outside it. A lock marked `set_carried_through_switch`
//! behaves as in 2.0: `release_for_switch` leaves it locked, *carried* by the CPU, and whatever
//! task lands on the CPU after the switch either adopts it (it held the lock when it slept) or
//! lets it go (`Held::reacquire`, and `settle_after_switch` for a task's first run). An unmarked
//! lock behaves as in 2.2.
//!
//! Underneath is a test-then-test-and-set lock (`TtasLock`), as Linux's `kernel_flag` was a
//! plain spin lock: whichever waiter is running when the lock comes free takes it. A ticket
//! lock was tried first and collapsed when CPUs outnumber the cores that run them (four vCPUs
//! on two host cores): the lock was handed in order to a waiter whose vCPU the host had
//! descheduled, and every CPU behind it spun for the host's time slice. A fork bomb under
//! `locking=bkl` took 61 s instead of under one, with 232 s of waiting for 6 s of holding.
//! A waiter spins with preemption disabled, so that it is never switched away in the middle of
//! its own bookkeeping.
//!
//! The subsystem strategy uses the same kind of lock, one per subsystem. Big locks are
//! registered (`register`) in the kernel's lock order; a task that held several gets them back
//! in that order, and the lock validator sees every outermost acquisition and release, so a
//! wrong order between two of them is reported as it would be between spin locks.
//!
//! `set_broken_reacquire` turns on the deliberately broken variant the stress test must catch
//! (src/ktest/biglock.rs): after a switch the task runs on without taking the lock back.

use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::sync::lockdep::LockClass;
use crate::sync::lockstat;
use crate::sync::preempt;
use crate::sync::spinlock::{RawSpinLock, validate};

/// Unfair on purpose (see the module doc). Under loom, whose atomics no `const` can build, the
/// uninstrumented default lock, as for every kernel `SpinLock` there.
#[cfg(not(loom))]
type BigRawLock = crate::sync::spinlock::TtasLock;
#[cfg(loom)]
type BigRawLock = crate::sync::spinlock::DefaultRawLock;

/// The owner word of a lock that a CPU carries through a switch: no task holds it, and only
/// the task that lands on `holder_cpu` next may adopt or release it. Task words are addresses
/// of aligned counters, so none is 1.
const CARRIED: usize = 1;

/// A lock held by a task, recursively, and dropped while the task is off the CPU.
pub struct BigLock {
    /// The spin lock underneath (`BigRawLock`).
    raw: BigRawLock,
    /// The holder's task word (`arch::task_word`, unique to the running task), 0 when free.
    owner: AtomicUsize,
    /// How many times the holder has taken it; touched only by the holder.
    depth: AtomicU32,
    /// The holder's per-CPU pointer, for the validator's watchdog report.
    holder_cpu: AtomicUsize,
    /// The validator recorded the outermost acquisition, so it must hear of its release.
    tracked: AtomicBool,
    /// Outermost acquisitions, those that found the lock taken, and counter ticks spent
    /// waiting in them (read only on contention, so the uncontended path reads no clock).
    acquisitions: AtomicU64,
    contentions: AtomicU64,
    wait_ticks: AtomicU64,
    broken_reacquire: AtomicBool,
    /// Stays locked through a switch, as Linux 2.0's lock did (see the module doc).
    carried: AtomicBool,
    class: LockClass,
    /// The lock statistics' record of this lock (empty unless built with `lockstat`).
    stats: lockstat::PerLock,
}

impl BigLock {
    /// A big lock called `name` (the validator's and the statistics' name for it).
    #[track_caller]
    pub const fn named(name: &'static str) -> Self {
        BigLock {
            raw: BigRawLock::UNLOCKED,
            owner: AtomicUsize::new(0),
            depth: AtomicU32::new(0),
            holder_cpu: AtomicUsize::new(0),
            tracked: AtomicBool::new(false),
            acquisitions: AtomicU64::new(0),
            contentions: AtomicU64::new(0),
            wait_ticks: AtomicU64::new(0),
            broken_reacquire: AtomicBool::new(false),
            carried: AtomicBool::new(false),
            class: LockClass::at(name, Location::caller()),
            stats: lockstat::PerLock::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.class.name()
    }

    fn me() -> usize {
        let word = crate::arch::task_word();
        assert!(
            word != 0,
            "a big lock needs a task: this flow has no task word yet"
        );
        word
    }

    /// Take the lock, or go one level deeper if this task already holds it.
    #[track_caller]
    pub fn lock(&self) {
        // Every change of owner and depth runs with preemption off: a switch in the middle
        // would release or restore a half-updated state (see `release_for_switch`).
        preempt::preempt_disable();
        let me = Self::me();
        if self.owner.load(Ordering::Relaxed) == me {
            self.depth.fetch_add(1, Ordering::Relaxed);
        } else {
            self.acquire_outermost(me, Location::caller());
            self.depth.store(1, Ordering::Relaxed);
        }
        preempt::preempt_enable();
    }

    /// Come one level up; the outermost unlock lets the lock go.
    pub fn unlock(&self) {
        preempt::preempt_disable();
        let me = Self::me();
        if self.owner.load(Ordering::Relaxed) != me && self.broken_reacquire.load(Ordering::Relaxed)
        {
            // The broken variant's holder lost the lock at a switch without knowing: its
            // unlocks have nothing to let go of.
            preempt::preempt_enable();
            return;
        }
        assert_eq!(
            self.owner.load(Ordering::Relaxed),
            me,
            "unlock of big lock `{}` by a task that does not hold it",
            self.name()
        );
        if self.depth.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.release_outermost();
        }
        preempt::preempt_enable();
    }

    /// Does the running task hold it?
    pub fn held_by_current(&self) -> bool {
        let word = crate::arch::task_word();
        word != 0 && self.owner.load(Ordering::Relaxed) == word
    }

    /// The running task's depth in it (0: not held by this task).
    pub fn depth_of_current(&self) -> u32 {
        if self.held_by_current() {
            self.depth.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// (outermost acquisitions, contended ones, counter ticks spent waiting) since boot.
    pub fn stats(&self) -> (u64, u64, u64) {
        (
            self.acquisitions.load(Ordering::Relaxed),
            self.contentions.load(Ordering::Relaxed),
            self.wait_ticks.load(Ordering::Relaxed),
        )
    }

    /// Turn the broken variant on or off (tests only): after a switch the task does not take
    /// the lock back, and runs on as if it held it (its unlocks then do nothing).
    pub fn set_broken_reacquire(&self, on: bool) {
        self.broken_reacquire.store(on, Ordering::SeqCst);
    }

    /// Carry the lock through switches (Linux 2.0) or let it go before them (2.2). Set before
    /// any task takes it, at boot.
    pub fn set_carried_through_switch(&self, on: bool) {
        self.carried.store(on, Ordering::Relaxed);
    }

    /// Is it carried through switches?
    pub fn is_carried_through_switch(&self) -> bool {
        self.carried.load(Ordering::Relaxed)
    }

    /// Does this CPU carry it through the switch it is in the middle of?
    fn carried_by_this_cpu(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == CARRIED
            && self.holder_cpu.load(Ordering::Relaxed) == crate::arch::percpu_pointer()
    }

    fn address(&self) -> usize {
        self as *const Self as usize
    }

    /// Called with preemption off: a waiter spins with it off (see the module doc), and the
    /// holder's bookkeeping must not be cut by a switch. The holder runs preemptible after.
    fn acquire_outermost(&self, me: usize, site: &'static Location<'static>) {
        let spin = if validate::active() {
            validate::before_spin(
                &self.class,
                self.address(),
                self.holder_cpu.load(Ordering::Relaxed),
                site,
            )
        } else {
            validate::Spin::Untracked
        };
        if self.raw.try_lock() {
            lockstat::acquired(
                &self.class,
                &self.stats,
                lockstat::Acquire::UNCONTENDED,
                false,
            );
        } else {
            if spin.tracked() {
                validate::contended(&self.class);
            }
            let waiting = lockstat::begin_acquire();
            let start = crate::arch::counter();
            self.raw.lock();
            self.contentions.fetch_add(1, Ordering::Relaxed);
            self.wait_ticks.fetch_add(
                crate::arch::counter().saturating_sub(start),
                Ordering::Relaxed,
            );
            lockstat::acquired(&self.class, &self.stats, waiting, true);
        }
        validate::after_spin(spin);
        self.acquisitions.fetch_add(1, Ordering::Relaxed);
        self.tracked.store(spin.tracked(), Ordering::Relaxed);
        self.holder_cpu
            .store(crate::arch::percpu_pointer(), Ordering::Relaxed);
        self.owner.store(me, Ordering::Relaxed);
    }

    fn release_outermost(&self) {
        lockstat::released(&self.class, &self.stats);
        if self.tracked.swap(false, Ordering::Relaxed) {
            validate::before_release(&self.class, self.address());
        }
        self.owner.store(0, Ordering::Relaxed);
        self.holder_cpu.store(0, Ordering::Relaxed);
        // SAFETY: the owner check in the callers is the proof that this task holds the lock.
        unsafe { self.raw.unlock() };
    }

    /// Let go of every level this task holds (before it switches away); the depth to restore.
    /// A carried lock stays locked: the task no longer holds it, the CPU does.
    fn release_all(&self) -> u32 {
        if !self.held_by_current() {
            return 0;
        }
        let depth = self.depth.swap(0, Ordering::Relaxed);
        if self.carried.load(Ordering::Relaxed) {
            // The validator's records are per CPU and a switch refuses to run with one held;
            // to the validator the task has let go, and the task landing here takes it anew.
            if self.tracked.swap(false, Ordering::Relaxed) {
                validate::before_release(&self.class, self.address());
            }
            self.owner.store(CARRIED, Ordering::Relaxed);
        } else {
            self.release_outermost();
        }
        depth
    }

    /// The task landing after a switch takes over the lock its CPU carried, at `depth`: no
    /// other CPU could have had it in between, so there is nothing to wait for.
    #[track_caller]
    fn adopt(&self, depth: u32) {
        let tracked = validate::active()
            && validate::after_try_lock(&self.class, self.address(), Location::caller());
        self.tracked.store(tracked, Ordering::Relaxed);
        self.owner.store(Self::me(), Ordering::Relaxed);
        self.depth.store(depth, Ordering::Relaxed);
    }

    /// The task landing after a switch did not hold the lock its CPU carried: let it go.
    fn let_go_carried(&self) {
        lockstat::released(&self.class, &self.stats);
        self.owner.store(0, Ordering::Relaxed);
        self.holder_cpu.store(0, Ordering::Relaxed);
        // SAFETY: `carried_by_this_cpu` showed this CPU holds the raw lock, and only the task
        // running on it after the switch, which is us, acts on it.
        unsafe { self.raw.unlock() };
    }

    /// Take the lock back at `depth` (after the switch).
    fn reacquire(&self, depth: u32) {
        if self.broken_reacquire.load(Ordering::Relaxed) {
            // BROKEN on purpose: the task carries on inside its critical section without the
            // lock, as a kernel that forgot to take it back after a sleep would.
            return;
        }
        self.acquire_outermost(Self::me(), Location::caller());
        self.depth.store(depth, Ordering::Relaxed);
    }
}

/// One level of a big lock, or of none, let go when dropped: what a lock site that is coarse
/// under one strategy and absent under another holds.
#[must_use = "the lock is let go as soon as the hold is dropped"]
pub struct Hold {
    lock: Option<&'static BigLock>,
    /// Not `Send`: the level belongs to the task that took it.
    _not_send: core::marker::PhantomData<*const ()>,
}

impl Hold {
    /// Take one level of `lock`, if there is one.
    #[track_caller]
    pub fn take(lock: Option<&'static BigLock>) -> Hold {
        if let Some(lock) = lock {
            lock.lock();
        }
        Hold {
            lock,
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(lock) = self.lock {
            lock.unlock();
        }
    }
}

/// How many big locks the kernel may register.
pub const MAX_BIG_LOCKS: usize = 12;

static REGISTERED: [AtomicPtr<BigLock>; MAX_BIG_LOCKS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_BIG_LOCKS];
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Make `lock` one the scheduler releases around switches. Register in the kernel's lock
/// order: a task that held several takes them back in this order. Registering one lock twice
/// does nothing; false if the table is full.
pub fn register(lock: &'static BigLock) -> bool {
    let ptr = lock as *const BigLock as *mut BigLock;
    let n = COUNT.load(Ordering::Acquire);
    if REGISTERED[..n]
        .iter()
        .any(|slot| slot.load(Ordering::Relaxed) == ptr)
    {
        return true;
    }
    if n == MAX_BIG_LOCKS {
        return false;
    }
    REGISTERED[n].store(ptr, Ordering::Release);
    COUNT.store(n + 1, Ordering::Release);
    true
}

/// Which big locks a task gave up at a switch, and how deep it held each.
#[must_use = "the locks must be taken back when the task runs again"]
pub struct Held {
    depths: [u32; MAX_BIG_LOCKS],
}

/// A task's first run after the switch that started it: it holds no big lock, so it lets go
/// of any its CPU carried through that switch.
pub fn settle_after_switch() {
    Held {
        depths: [0; MAX_BIG_LOCKS],
    }
    .reacquire();
}

/// Let go of every registered big lock the running task holds (`schedule` calls this before
/// it switches away); one marked `set_carried_through_switch` stays locked by the CPU.
pub fn release_for_switch() -> Held {
    let mut held = Held {
        depths: [0; MAX_BIG_LOCKS],
    };
    let n = COUNT.load(Ordering::Acquire);
    if n == 0 || crate::arch::task_word() == 0 {
        return held;
    }
    preempt::preempt_disable();
    // Innermost first: the reverse of the order they are taken in.
    for i in (0..n).rev() {
        // SAFETY: registered pointers come from `&'static BigLock`.
        let lock = unsafe { &*REGISTERED[i].load(Ordering::Acquire) };
        held.depths[i] = lock.release_all();
    }
    preempt::preempt_enable();
    held
}

impl Held {
    /// Take back, in the registered order, every lock given up at the switch; adopt a lock
    /// this CPU carried through the switch if this task held it, and let it go if not.
    pub fn reacquire(self) {
        let n = COUNT.load(Ordering::Acquire);
        if n == 0 {
            return;
        }
        preempt::preempt_disable();
        let lock = |i: usize| {
            // SAFETY: as in `release_for_switch`.
            unsafe { &*REGISTERED[i].load(Ordering::Acquire) }
        };
        // First let go of what this task did not hold: it must not make other CPUs wait while
        // this task takes back locks that come before it in the order.
        for i in 0..n {
            let lock = lock(i);
            if lock.carried_by_this_cpu()
                && (self.depths[i] == 0 || lock.broken_reacquire.load(Ordering::Relaxed))
            {
                lock.let_go_carried();
            }
        }
        // Only a task can have given up a lock (`release_for_switch` gives up nothing without a
        // task word), so a flow without one, which cannot adopt, finds every depth 0 here.
        for (i, &depth) in self.depths[..n].iter().enumerate() {
            if depth == 0 {
                continue;
            }
            let lock = lock(i);
            if lock.carried_by_this_cpu() {
                lock.adopt(depth);
            } else {
                lock.reacquire(depth);
            }
        }
        preempt::preempt_enable();
    }

    /// Did the task hold any big lock?
    pub fn any(&self) -> bool {
        self.depths.iter().any(|&d| d > 0)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Host threads play tasks: each needs a task word of its own, which is the address of
    /// its preempt count (preempt_disable writes there).
    fn as_task() {
        let count: &'static AtomicU32 = Box::leak(Box::new(AtomicU32::new(0)));
        crate::arch::set_task_word(count as *const AtomicU32 as usize);
    }

    #[test]
    fn the_holder_may_take_it_again_and_only_the_outermost_unlock_lets_go() {
        static LOCK: BigLock = BigLock::named("test: nested");
        as_task();
        LOCK.lock();
        LOCK.lock();
        assert_eq!(LOCK.depth_of_current(), 2);
        LOCK.unlock();
        assert!(LOCK.held_by_current(), "one level left");
        LOCK.unlock();
        assert!(!LOCK.held_by_current());
        assert!(!LOCK.raw.is_locked());
        assert_eq!(LOCK.stats().0, 1, "one outermost acquisition");
    }

    #[test]
    fn another_task_waits_for_the_outermost_unlock() {
        static LOCK: BigLock = BigLock::named("test: exclusion");
        as_task();
        LOCK.lock();
        LOCK.lock();
        let inside = Arc::new(AtomicBool::new(false));
        let seen = inside.clone();
        let other = std::thread::spawn(move || {
            as_task();
            LOCK.lock();
            let was_inside = seen.load(Ordering::SeqCst);
            LOCK.unlock();
            was_inside
        });
        inside.store(true, Ordering::SeqCst);
        LOCK.unlock();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!other.is_finished(), "the other task got in at depth 1");
        inside.store(false, Ordering::SeqCst);
        LOCK.unlock();
        assert!(
            !other.join().unwrap(),
            "the other task got in while we held it"
        );
        assert_eq!(LOCK.stats().1, 1, "its wait was counted as a contention");
    }

    #[test]
    fn a_switch_gives_up_the_lock_and_takes_it_back_at_the_same_depth() {
        static A: BigLock = BigLock::named("test: switch a");
        static B: BigLock = BigLock::named("test: switch b");
        assert!(register(&A) && register(&B));
        as_task();
        A.lock();
        A.lock();
        B.lock();
        let held = release_for_switch();
        assert!(held.any());
        assert!(!A.held_by_current() && !B.held_by_current());
        // While "off the CPU", another task can take both.
        std::thread::spawn(|| {
            as_task();
            A.lock();
            B.lock();
            B.unlock();
            A.unlock();
        })
        .join()
        .unwrap();
        held.reacquire();
        assert_eq!((A.depth_of_current(), B.depth_of_current()), (2, 1));
        B.unlock();
        A.unlock();
        A.unlock();
        assert!(!A.raw.is_locked() && !B.raw.is_locked());
        let none = release_for_switch();
        assert!(!none.any(), "a task holding nothing gives nothing up");
        none.reacquire();
    }

    #[test]
    fn a_carried_lock_stays_locked_through_the_switch_and_the_next_task_adopts_or_frees_it() {
        static LOCK: BigLock = BigLock::named("test: carried");
        assert!(register(&LOCK));
        LOCK.set_carried_through_switch(true);
        let _cpus = crate::percpu::playing_cpus();
        crate::percpu::install(3);
        as_task();
        let sleeper = crate::arch::task_word();
        LOCK.lock();
        LOCK.lock();
        let held = release_for_switch();
        assert!(
            !LOCK.held_by_current(),
            "no task holds it across the switch"
        );
        assert!(
            LOCK.raw.is_locked(),
            "the CPU carries it: nobody else may take it"
        );
        assert!(LOCK.carried_by_this_cpu());
        // The sleeper itself lands (woken before it left, or nothing else to run): it adopts.
        held.reacquire();
        assert_eq!(LOCK.depth_of_current(), 2);
        assert_eq!(LOCK.stats().0, 1, "adopting is not a new acquisition");

        // It sleeps again, and a task that held nothing lands on this CPU: it lets go.
        let held = release_for_switch();
        as_task();
        settle_after_switch();
        assert!(!LOCK.raw.is_locked(), "the task that landed let go of it");
        // Another CPU takes it meanwhile; the sleeper, woken there, waits its turn.
        let other = std::thread::spawn(|| {
            as_task();
            LOCK.lock();
            std::thread::sleep(std::time::Duration::from_millis(20));
            LOCK.unlock();
        });
        while !LOCK.raw.is_locked() && !other.is_finished() {
            std::thread::yield_now();
        }
        crate::arch::set_task_word(sleeper);
        held.reacquire();
        other.join().unwrap();
        assert_eq!(LOCK.depth_of_current(), 2, "taken back at its depth");
        LOCK.unlock();
        LOCK.unlock();
        assert!(!LOCK.raw.is_locked());
    }

    #[test]
    fn four_tasks_that_switch_inside_never_overlap() {
        static LOCK: BigLock = BigLock::named("test: four");
        assert!(register(&LOCK));
        let inside = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (inside, overlaps) = (inside.clone(), overlaps.clone());
                std::thread::spawn(move || {
                    as_task();
                    for round in 0..2000 {
                        LOCK.lock();
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        if round % 7 == 0 {
                            // A "sleep" inside: the lock goes and comes back.
                            inside.fetch_sub(1, Ordering::SeqCst);
                            let held = release_for_switch();
                            std::thread::yield_now();
                            held.reacquire();
                            inside.fetch_add(1, Ordering::SeqCst);
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        LOCK.unlock();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    }
}
