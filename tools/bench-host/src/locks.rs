//! The locks: quartet's spin locks, rwlock (as a writer) and mutex beside spin's, parking_lot's
//! and std's, and the floor (chapter 9, "On real cores").
//!
//! Every lock protects one counter; a round is lock, add one, unlock, as in the kernel's
//! src/bench/locks.rs. Single-thread rounds go to criterion (`uncontended`); contended runs
//! are timed windows on 1..N pinned threads (`locks`), and the counter the lock protects must
//! equal what the threads say they did, or the run is not reported.

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use quartet::sync::preempt;
use quartet::sync::sleep::ThreadSleeper;
use quartet::sync::spinlock::{McsLock, RawSpinLock, SpinLock, TasLock, TicketLock, TtasLock};
use quartet::sync::{Mutex, RwLock};

/// The operations a benchmark needs, so every lock runs the same loop.
pub trait BenchLock: Sync + Send + Sized {
    fn create() -> Self;
    /// Lock, count, unlock.
    fn round(&self);
    /// The count, read under the lock.
    fn done(&self) -> u64;
}

macro_rules! bench_lock {
    ($ty:ty, |$l:ident| $lock:expr) => {
        impl BenchLock for $ty {
            fn create() -> Self {
                <$ty>::new(0)
            }
            #[inline(always)]
            fn round(&self) {
                let $l = self;
                *$lock += 1;
            }
            fn done(&self) -> u64 {
                let $l = self;
                *$lock
            }
        }
    };
}

bench_lock!(spin::mutex::TicketMutex<u64>, |l| l.lock());
bench_lock!(spin::mutex::SpinMutex<u64>, |l| l.lock());
bench_lock!(parking_lot::Mutex<u64>, |l| l.lock());
bench_lock!(std::sync::Mutex<u64>, |l| l
    .lock()
    .expect("no benchmark thread panics holding it"));
bench_lock!(SpinLock<u64, TasLock>, |l| l.lock());
bench_lock!(SpinLock<u64, TtasLock>, |l| l.lock());
bench_lock!(SpinLock<u64, TicketLock>, |l| l.lock());
bench_lock!(SpinLock<u64, McsLock>, |l| l.lock());
bench_lock!(RwLock<u64>, |l| l.write());
bench_lock!(Mutex<u64, ThreadSleeper>, |l| l.lock());

/// No lock can cost less than this: one atomic read-modify-write to take it and one release
/// store to give it back (quartet's own `arch::atomic::swap`, the kernel's LDXR/STXR or SWP on
/// an AArch64 host), around the same count. Nothing waits on it: it is measured alone.
pub struct Floor {
    word: AtomicU64,
    count: AtomicU64,
}

impl BenchLock for Floor {
    fn create() -> Self {
        Floor {
            word: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
    #[inline(always)]
    fn round(&self) {
        let was = quartet::arch::atomic::swap(&self.word, 1, Ordering::Acquire);
        debug_assert_eq!(was, 0, "the floor is measured on one thread");
        // Only this thread writes the count: a load and a store, as under a lock.
        self.count
            .store(self.count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.word.store(0, Ordering::Release);
    }
    fn done(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// quartet's ticket algorithm with nothing around it, as `ticket-raw` in the kernel's suite:
/// `SpinLock` also turns preemption off and records its holder, which spin's locks do not.
pub struct RawTicket {
    raw: TicketLock,
    count: UnsafeCell<u64>,
}

// SAFETY: `count` is reached only between `raw.lock()` and `raw.unlock()`.
unsafe impl Sync for RawTicket {}

impl BenchLock for RawTicket {
    fn create() -> Self {
        RawTicket {
            raw: <TicketLock as RawSpinLock>::UNLOCKED,
            count: UnsafeCell::new(0),
        }
    }
    #[inline(always)]
    fn round(&self) {
        self.raw.lock();
        // SAFETY: the lock is held.
        unsafe { *self.count.get() += 1 };
        // SAFETY: this thread took it just above.
        unsafe { self.raw.unlock() };
    }
    fn done(&self) -> u64 {
        self.raw.lock();
        // SAFETY: the lock is held.
        let n = unsafe { *self.count.get() };
        // SAFETY: as above.
        unsafe { self.raw.unlock() };
        n
    }
}

/// spin's ticket lock with preemption off while held: what quartet's `SpinLock` does around
/// its algorithm, so `ticket` has a like-for-like partner.
pub struct PreemptingSpinTicket(spin::mutex::TicketMutex<u64>);

impl BenchLock for PreemptingSpinTicket {
    fn create() -> Self {
        PreemptingSpinTicket(spin::mutex::TicketMutex::new(0))
    }
    #[inline(always)]
    fn round(&self) {
        preempt::preempt_disable();
        *self.0.lock() += 1;
        preempt::preempt_enable();
    }
    fn done(&self) -> u64 {
        *self.0.lock()
    }
}

/// One lock of the suite: its name in the results, its criterion id (file-name safe), and
/// where it is measured.
pub struct Entry {
    pub name: &'static str,
    pub id: &'static str,
    pub contended: bool,
    pub uncontended: fn(&mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, &str),
    pub run: fn(usize, &super::Setup) -> Option<super::run::Timed>,
}

macro_rules! entry {
    ($name:expr, $id:expr, $contended:expr, $ty:ty) => {
        Entry {
            name: $name,
            id: $id,
            contended: $contended,
            uncontended: uncontended::<$ty>,
            run: contended::<$ty>,
        }
    };
}

/// The baseline first, as in the kernel's table.
pub const LOCKS: &[Entry] = &[
    entry!(
        "spin::TicketMutex",
        "spin-ticket",
        true,
        spin::mutex::TicketMutex<u64>
    ),
    entry!(
        "spin::SpinMutex",
        "spin-spin",
        true,
        spin::mutex::SpinMutex<u64>
    ),
    entry!(
        "parking_lot::Mutex",
        "parking-lot-mutex",
        true,
        parking_lot::Mutex<u64>
    ),
    entry!("std::sync::Mutex", "std-mutex", true, std::sync::Mutex<u64>),
    entry!("tas", "tas", true, SpinLock<u64, TasLock>),
    entry!("ttas", "ttas", true, SpinLock<u64, TtasLock>),
    entry!("ticket", "ticket", true, SpinLock<u64, TicketLock>),
    entry!("mcs", "mcs", true, SpinLock<u64, McsLock>),
    entry!("rwlock-write", "rwlock-write", true, RwLock<u64>),
    entry!("mutex", "mutex", true, Mutex<u64, ThreadSleeper>),
    entry!("floor", "floor", false, Floor),
    entry!("ticket-raw", "ticket-raw", false, RawTicket),
    entry!(
        "spin::TicketMutex+preempt",
        "spin-ticket-preempt",
        false,
        PreemptingSpinTicket
    ),
];

fn uncontended<L: BenchLock>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
) {
    let lock = L::create();
    group.bench_function(id, |b| b.iter(|| black_box(&lock).round()));
    assert!(lock.done() > 0, "{id}: criterion ran no rounds");
}

/// Every thread takes the lock as often as it can until the window closes. None if the lock
/// lost counts (then its throughput means nothing, and main() says so).
fn contended<L: BenchLock>(threads: usize, setup: &super::Setup) -> Option<super::run::Timed> {
    let lock = L::create();
    let timed = super::run::on_threads(threads, &setup.cores, setup.window, &|_, stop| {
        let mut mine = 0;
        while !stop.now() {
            black_box(&lock).round();
            mine += 1;
        }
        mine
    });
    (lock.done() == timed.total_ops()).then_some(timed)
}
