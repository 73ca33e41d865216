//! Host tests of lock statistics: host threads play CPUs (`percpu::install`), the clock is the
//! host's nanosecond stand-in.

use std::sync::{Arc, Barrier, mpsc};
use std::time::Duration;

use super::*;
use crate::sync::lockdep;
use crate::sync::mutex::Mutex;
use crate::sync::sleep::ThreadSleeper;
use crate::sync::spinlock::{RawSpinLock, SpinLock, TicketLock};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The statistics are one global table and `reset` clears all of it: these tests take turns.
/// (Other modules' tests lock other classes and never read the table.)
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The row of the class registered at `slot`, if it was acquired since the last reset.
fn row_of(slot: usize) -> Option<ClassStats> {
    snapshot()
        .into_iter()
        .find(|s| s.class.is_some_and(|c| c.id as usize == slot))
}

/// Run `f` on a thread that plays CPU `cpu`.
fn on_cpu<T: Send + 'static>(cpu: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    let _cpus = crate::percpu::playing_cpus();
    std::thread::spawn(move || {
        crate::percpu::install(cpu);
        f()
    })
    .join()
    .unwrap()
}

const MS: u64 = 1_000_000;

/// A ticket lock that counts its failed tries, so a test holding it knows when another thread
/// has found it taken (and is about to spin), instead of hoping a sleep was long enough.
struct Watched {
    inner: TicketLock,
    failed_tries: AtomicUsize,
}

// SAFETY: every operation is the ticket lock's; the counter only watches.
unsafe impl RawSpinLock for Watched {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = Watched {
        inner: TicketLock::new(),
        failed_tries: AtomicUsize::new(0),
    };
    fn lock(&self) {
        self.inner.lock();
    }
    fn try_lock(&self) -> bool {
        let taken = self.inner.try_lock();
        if !taken {
            self.failed_tries.fetch_add(1, Ordering::SeqCst);
        }
        taken
    }
    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock, which is the ticket lock.
        unsafe { self.inner.unlock() }
    }
    fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

/// Wait until someone has found `lock` taken.
fn until_someone_waits<T>(lock: &SpinLock<T, Watched>) {
    while lock.raw().failed_tries.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
}

#[test]
fn uncontended_acquisitions_are_counted_with_their_hold_times() {
    let _serial = serial();
    let lock: Arc<SpinLock<u32>> = Arc::new(SpinLock::named("lockstat test: counts", 0));
    let slot = lockdep::class_slot(lock.class()).expect("the class table has room");
    let l = Arc::clone(&lock);
    on_cpu(0, move || {
        for _ in 0..10 {
            *l.lock() += 1;
        }
        let g = l.lock();
        std::thread::sleep(Duration::from_millis(5));
        drop(g);
        let g = l.try_lock().expect("free");
        std::thread::sleep(Duration::from_millis(1));
        drop(g);
    });
    let s = row_of(slot).expect("the class was acquired");
    assert_eq!(s.label(), "lockstat_test:_counts");
    assert_eq!(s.acquisitions, 12, "10 locks, 1 lock, 1 try_lock");
    assert_eq!(s.contentions, 0);
    assert_eq!((s.wait_total_ns, s.wait_max_ns), (0, 0));
    assert_eq!(s.bounces, 0, "one CPU only");
    assert!(s.hold_max_ns >= 5 * MS, "the 5 ms hold is the max: {s:?}");
    assert!(
        s.hold_max_ns < s.hold_total_ns,
        "the max is one of several holds: {s:?}"
    );
    assert!(
        s.hold_total_ns >= 6 * MS,
        "both long holds are in the total: {s:?}"
    );
}

#[test]
fn reset_clears_every_counter() {
    let _serial = serial();
    let lock: SpinLock<()> = SpinLock::named("lockstat test: reset", ());
    let slot = lockdep::class_slot(lock.class()).expect("the class table has room");
    drop(lock.lock());
    assert_eq!(row_of(slot).map(|s| s.acquisitions), Some(1));
    reset();
    assert_eq!(row_of(slot), None, "no acquisitions since the reset");
    drop(lock.lock());
    assert_eq!(row_of(slot).map(|s| s.acquisitions), Some(1));
}

/// CPU 0 holds the lock while CPU 1 asks for it: one contention, one wait no longer than the
/// holder's hold, and every change of CPU is a bounce.
#[test]
fn a_waiter_on_another_cpu_counts_a_contention_its_wait_and_bounces() {
    // In this order: the tests that call `on_cpu` hold `serial` while it takes `playing_cpus`.
    let _serial = serial();
    let _cpus = crate::percpu::playing_cpus();
    let lock: Arc<SpinLock<u64, Watched>> =
        Arc::new(SpinLock::named("lockstat test: contended", 0));
    let slot = lockdep::class_slot(lock.class()).expect("the class table has room");
    let (held_tx, held_rx) = mpsc::channel();
    let scene = std::time::Instant::now();
    let done = Arc::new(Barrier::new(2));
    let holder = {
        let lock = Arc::clone(&lock);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            crate::percpu::install(0);
            let mut g = lock.lock();
            held_tx.send(()).unwrap();
            until_someone_waits(&lock);
            std::thread::sleep(Duration::from_millis(20));
            *g += 1;
            drop(g);
            done.wait(); // the waiter has had its turn
            *lock.lock() += 1; // back on CPU 0: a bounce
        })
    };
    let waiter = {
        let lock = Arc::clone(&lock);
        std::thread::spawn(move || {
            crate::percpu::install(1);
            held_rx.recv().unwrap();
            *lock.lock() += 1; // held by CPU 0: waits; last released on CPU 0: a bounce
            done.wait();
        })
    };
    waiter.join().unwrap();
    holder.join().unwrap();
    let scene_ns = scene.elapsed().as_nanos() as u64;
    assert_eq!(*lock.lock(), 3);
    let s = row_of(slot).expect("the class was acquired");
    // The last `lock()` above runs on a thread that plays no CPU: it counts, but is no bounce.
    assert_eq!(s.acquisitions, 4);
    assert_eq!(s.contentions, 1, "{s:?}");
    assert!(s.wait_total_ns > 0, "{s:?}");
    assert_eq!(s.wait_max_ns, s.wait_total_ns, "one wait: {s:?}");
    // Not bounded by the hold: a waiting host thread yields, and may get its core back
    // long after the release. But it is bounded by the whole scene.
    assert!(s.wait_max_ns <= scene_ns, "{s:?} in {scene_ns} ns");
    assert!(s.hold_max_ns >= 20 * MS, "{s:?}");
    assert_eq!(s.bounces, 2, "cpu0 -> cpu1 -> cpu0: {s:?}");
}

#[test]
fn a_mutex_counts_its_wait_including_sleep() {
    let _serial = serial();
    let m: Arc<Mutex<u32, ThreadSleeper>> = Arc::new(Mutex::named("lockstat test: mutex", 0));
    m.set_spin_limit(0); // a waiter sleeps at once
    let slot = lockdep::class_slot(m.class()).expect("the class table has room");
    let g = m.lock();
    let waiter = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || *m.lock() += 1)
    };
    while m.waiters() == 0 {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(10));
    drop(g);
    waiter.join().unwrap();
    let s = row_of(slot).expect("the class was acquired");
    assert_eq!(s.label(), "lockstat_test:_mutex");
    assert_eq!((s.acquisitions, s.contentions), (2, 1), "{s:?}");
    assert!(
        s.wait_max_ns >= 10 * MS,
        "the waiter slept through the 10 ms: {s:?}"
    );
    assert!(s.hold_max_ns >= 10 * MS, "{s:?}");
}

#[test]
fn a_non_owner_unlock_leaves_the_statistics_alone() {
    let _serial = serial();
    let m: Arc<Mutex<(), ThreadSleeper>> = Arc::new(Mutex::named("lockstat test: owner", ()));
    let slot = lockdep::class_slot(m.class()).expect("the class table has room");
    let g = m.lock();
    let other = Arc::clone(&m);
    let refused = std::thread::spawn(move || {
        // SAFETY: deliberately not the owner: the unlock must panic before touching anything.
        unsafe { other.force_unlock() }
    })
    .join();
    assert!(refused.is_err(), "a non-owner's unlock panics");
    std::thread::sleep(Duration::from_millis(2));
    drop(g);
    let s = row_of(slot).expect("the class was acquired");
    assert!(
        s.hold_max_ns >= 2 * MS,
        "one hold, counted by the owner's unlock: {s:?}"
    );
}

#[test]
fn bench_lines_put_the_most_contended_first() {
    let _serial = serial();
    reset();
    let quiet: SpinLock<()> = SpinLock::named("lockstat test: quiet", ());
    for _ in 0..5 {
        drop(quiet.lock());
    }
    let busy: Arc<SpinLock<(), Watched>> = Arc::new(SpinLock::named("lockstat test: busy", ()));
    let g = busy.lock();
    let waiter = {
        let busy = Arc::clone(&busy);
        std::thread::spawn(move || drop(busy.lock()))
    };
    until_someone_waits(&busy);
    std::thread::sleep(Duration::from_millis(10));
    drop(g);
    waiter.join().unwrap();
    let lines = bench_lines("run=7", 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "bench suite=lockstat run=7 class=lockstat_test:_busy acq=2 contended=1 wait_ns="
        ),
        "{lines:?}"
    );
    assert!(lines[0].contains(" bounces=0"), "{lines:?}");
    for key in [
        "wait_ns",
        "wait_max_ns",
        "hold_ns",
        "hold_max_ns",
        "bounces",
    ] {
        let value = lines[0]
            .split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in {}", lines[0]));
        assert!(value.parse::<u64>().is_ok(), "{key}={value}");
    }
    // Other tests' locks may be acquired meanwhile, but none waited 10 ms: the quiet lock is
    // second or lower, and the busy one first.
    assert!(!lines[0].contains("quiet"));
}

#[test]
fn unnamed_classes_are_labelled_by_where_they_were_built() {
    let _serial = serial();
    let lock: SpinLock<()> = SpinLock::new(());
    let slot = lockdep::class_slot(lock.class()).expect("the class table has room");
    drop(lock.lock());
    let label = row_of(slot).expect("acquired").label();
    assert!(
        label.starts_with("lock@src/sync/lockstat/tests.rs:") && !label.contains(' '),
        "{label}"
    );
}
