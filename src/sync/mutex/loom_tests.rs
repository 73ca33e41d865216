use super::*;
use crate::sync::sleep::ThreadSleeper;
use loom::cell::UnsafeCell as Cell;
// std's Arc, not loom's: a model that must deadlock unwinds through its drops, and a loom
// Arc dropped after loom has stopped the execution panics again and aborts the test.
use std::sync::Arc;

type Raw = RawMutex<ThreadSleeper>;

struct Counted {
    lock: Raw,
    count: Cell<u32>,
}

// SAFETY: `count` is only touched under `lock`, which is exactly what these models verify.
unsafe impl Sync for Counted {}

impl Counted {
    fn add_one(&self, unlock: fn(&Raw)) {
        self.lock.lock();
        // SAFETY: we hold the lock (if the lock is wrong, loom reports this access).
        self.count.with_mut(|c| unsafe { *c += 1 });
        unlock(&self.lock);
    }
}

fn unlock(lock: &Raw) {
    lock.unlock();
}

/// `threads` threads (the model's main thread included) each add one, with the mutex's
/// spin limit set to `spins`.
fn everyone_adds_one(threads: u32, spins: u32, unlock: fn(&Raw)) {
    loom::model(move || {
        let shared = Arc::new(Counted {
            lock: RawMutex::new(),
            count: Cell::new(0),
        });
        shared.lock.set_spin_limit(spins);
        let others: Vec<_> = (1..threads)
            .map(|_| {
                let shared = Arc::clone(&shared);
                loom::thread::spawn(move || shared.add_one(unlock))
            })
            .collect();
        shared.add_one(unlock);
        for t in others {
            t.join().unwrap();
        }
        // SAFETY: every other thread has been joined.
        assert_eq!(shared.count.with(|c| unsafe { *c }), threads);
        assert!(!shared.lock.is_locked());
    });
}

#[test]
fn loom_mutex_sleepers_exclude_and_finish() {
    everyone_adds_one(2, 0, unlock);
}

#[test]
fn loom_mutex_spinners_exclude_and_finish() {
    everyone_adds_one(2, 2, unlock);
}

#[test]
fn loom_mutex_three_sleepers_exclude_and_finish() {
    everyone_adds_one(3, 0, unlock);
}

/// The bug: an unlock that finds the waiters flag set clears the word but wakes nobody.
/// The sleeper never wakes; loom finds the schedule and reports the deadlock.
#[test]
#[should_panic(expected = "deadlock")]
fn loom_mutex_unlock_without_wake_is_caught() {
    fn unlock_without_wake(lock: &Raw) {
        let me = ThreadSleeper::current_token();
        if lock
            .owner
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            lock.owner.store(0, Ordering::Release);
        }
    }
    everyone_adds_one(2, 0, unlock_without_wake);
}

/// The bug: `BrokenMutex`'s load-then-store fast path lets both threads in, and loom sees
/// their unordered accesses to the cell.
#[test]
#[should_panic(expected = "Causality violation")]
fn loom_broken_mutex_fast_path_is_caught() {
    loom::model(|| {
        let m = Arc::new(BrokenMutex::<Cell<u32>, ThreadSleeper>::new(Cell::new(0)));
        m.raw.set_spin_limit(0);
        let other = {
            let m = Arc::clone(&m);
            loom::thread::spawn(move || {
                // SAFETY: none: the broken lock may let both threads in; loom reports it.
                m.lock().with_mut(|c| unsafe { *c += 1 });
            })
        };
        // SAFETY: as above.
        m.lock().with_mut(|c| unsafe { *c += 1 });
        other.join().unwrap();
    });
}
