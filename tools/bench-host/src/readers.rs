//! Read-mostly data: readers walking a 64-entry list under quartet's RCU, its rwlock and spin
//! lock, std's and parking_lot's rwlocks, crossbeam-epoch and arc-swap, and with no protection
//! at all (chapter 18's claim, measured on real cores).
//!
//! quartet's variants walk the kernel's own process list (`ProcessList` on the global RCU, as
//! src/bench/rcu.rs does), with one outer RCU section per run so that the lock variants can
//! borrow its iterator; the `rcu` variant enters its own, nested, around every walk. The
//! crossbeam-epoch and arc-swap variants walk a list of the same 64 heap nodes linked their
//! way. Every walk sums pid ^ payload; a wrong sum is counted and reported. No writer runs:
//! this measures what the read side costs, which is the whole argument for RCU.

use std::hint::black_box;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use crossbeam_epoch::{self as epoch, Atomic, Owned};
use quartet::rcu::{self, RcuReadGuard};
use quartet::sync::{RwLock, SpinLock};
use quartet::task::proclist::{GlobalRcu, ProcessList};

use super::Setup;
use super::run::{Timed, on_threads};

pub const ENTRIES: u32 = 64;

type List = ProcessList<u64, GlobalRcu>;

fn payload_of(pid: u32) -> u64 {
    u64::from(pid) * 3
}

/// What every complete walk sums to.
pub fn expected_sum() -> u64 {
    (1..=ENTRIES).fold(0, |sum, pid| {
        sum.wrapping_add(u64::from(pid) ^ payload_of(pid))
    })
}

/// One walk of quartet's list: the same machine code under every quartet protection.
#[inline(never)]
fn walk(list: &List, guard: &RcuReadGuard<'_>) -> u64 {
    list.iter(guard).fold(0u64, |sum, (pid, value)| {
        sum.wrapping_add(u64::from(pid) ^ *value)
    })
}

/// The same entries as a crossbeam-epoch list.
struct EpochNode {
    pid: u32,
    payload: u64,
    next: Atomic<EpochNode>,
}

struct EpochList {
    head: Atomic<EpochNode>,
}

impl EpochList {
    fn build() -> Self {
        let list = EpochList {
            head: Atomic::null(),
        };
        // SAFETY: nothing else can see the list while it is built.
        let guard = unsafe { epoch::unprotected() };
        for pid in 1..=ENTRIES {
            let node = Owned::new(EpochNode {
                pid,
                payload: payload_of(pid),
                next: Atomic::null(),
            });
            node.next
                .store(list.head.load(Ordering::Relaxed, guard), Ordering::Relaxed);
            list.head.store(node, Ordering::Release);
        }
        list
    }

    #[inline(never)]
    fn walk(&self) -> u64 {
        let guard = epoch::pin();
        let mut sum = 0u64;
        let mut p = self.head.load(Ordering::Acquire, &guard);
        // SAFETY: nodes are freed only in Drop, and the pin keeps any retired one alive.
        while let Some(node) = unsafe { p.as_ref() } {
            sum = sum.wrapping_add(u64::from(node.pid) ^ node.payload);
            p = node.next.load(Ordering::Acquire, &guard);
        }
        sum
    }
}

impl Drop for EpochList {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader is left, so the nodes can be freed at once.
        unsafe {
            let guard = epoch::unprotected();
            let mut p = self.head.load(Ordering::Relaxed, guard);
            while !p.is_null() {
                let next = p.deref().next.load(Ordering::Relaxed, guard);
                drop(p.into_owned());
                p = next;
            }
        }
    }
}

/// The same entries behind arc-swap: readers load the current snapshot of an immutable list.
struct ChainNode {
    pid: u32,
    payload: u64,
    next: Option<Box<ChainNode>>,
}

struct Chain(Option<Box<ChainNode>>);

impl Chain {
    fn build() -> Self {
        let mut head = None;
        for pid in 1..=ENTRIES {
            head = Some(Box::new(ChainNode {
                pid,
                payload: payload_of(pid),
                next: head,
            }));
        }
        Chain(head)
    }
}

#[inline(never)]
fn walk_snapshot(current: &ArcSwap<Chain>) -> u64 {
    let snapshot = current.load();
    let mut sum = 0u64;
    let mut p = snapshot.0.as_deref();
    while let Some(node) = p {
        sum = sum.wrapping_add(u64::from(node.pid) ^ node.payload);
        p = node.next.as_deref();
    }
    sum
}

/// Everything the readers walk, built once.
pub struct Readers {
    list: &'static List,
    rwlock: RwLock<()>,
    spin: SpinLock<()>,
    std_rwlock: std::sync::RwLock<()>,
    parking_lot_rwlock: parking_lot::RwLock<()>,
    epoch: EpochList,
    arc_swap: ArcSwap<Chain>,
}

impl Readers {
    pub fn build() -> Self {
        // Leaked on purpose: emptying it takes grace periods, which need a tick this program
        // does not have, and the process ends right after the benchmarks anyway.
        let list: &'static List = Box::leak(Box::new(ProcessList::new(GlobalRcu)));
        for pid in 1..=ENTRIES {
            assert!(list.insert(pid, payload_of(pid)).is_ok());
        }
        Readers {
            list,
            rwlock: RwLock::new(()),
            spin: SpinLock::named("bench spinlock", ()),
            std_rwlock: std::sync::RwLock::new(()),
            parking_lot_rwlock: parking_lot::RwLock::new(()),
            epoch: EpochList::build(),
            arc_swap: ArcSwap::from_pointee(Chain::build()),
        }
    }
}

/// The protections, by the names the results use. `rcu`, `rwlock`, `spinlock` and
/// `unprotected` are the kernel suite's names.
pub const PROTECTIONS: &[(&str, &str)] = &[
    ("rcu", "rcu"),
    ("unprotected", "unprotected"),
    ("crossbeam-epoch", "crossbeam-epoch"),
    ("arc-swap", "arc-swap"),
    ("rwlock", "rwlock"),
    ("std::sync::RwLock", "std-rwlock"),
    ("parking_lot::RwLock", "parking-lot-rwlock"),
    ("spinlock", "spinlock"),
];

/// One protected walk; `outer` is the run's own RCU section.
#[inline(always)]
fn protected_walk(r: &Readers, which: usize, outer: &RcuReadGuard<'_>) -> u64 {
    match which {
        0 => {
            let guard = rcu::rcu_read_lock();
            let sum = walk(black_box(r.list), &guard);
            rcu::rcu_read_unlock(guard);
            sum
        }
        1 => walk(black_box(r.list), outer),
        2 => r.epoch.walk(),
        3 => walk_snapshot(&r.arc_swap),
        4 => {
            let _read = r.rwlock.read();
            walk(black_box(r.list), outer)
        }
        5 => {
            let _read = r.std_rwlock.read().expect("no reader panics");
            walk(black_box(r.list), outer)
        }
        6 => {
            let _read = r.parking_lot_rwlock.read();
            walk(black_box(r.list), outer)
        }
        _ => {
            let _held = r.spin.lock();
            walk(black_box(r.list), outer)
        }
    }
}

/// Each protection as its own monomorphic loop, so the choice costs no branch inside it.
fn walks_until<const WHICH: usize>(r: &Readers, stop: &super::run::Stop, wrong: &mut u64) -> u64 {
    let expected = expected_sum();
    let outer = rcu::rcu_read_lock();
    let mut walks = 0;
    while !stop.now() {
        *wrong += u64::from(protected_walk(r, WHICH, &outer) != expected);
        walks += 1;
    }
    drop(outer);
    walks
}

/// A timed run of protection `which` on `threads` threads: (timing, walks that summed wrong).
pub fn timed(r: &Readers, which: usize, threads: usize, setup: &Setup) -> (Timed, u64) {
    let wrong = std::sync::atomic::AtomicU64::new(0);
    let timed = on_threads(threads, &setup.cores, setup.window, &|_, stop| {
        let mut bad = 0;
        let walks = match which {
            0 => walks_until::<0>(r, stop, &mut bad),
            1 => walks_until::<1>(r, stop, &mut bad),
            2 => walks_until::<2>(r, stop, &mut bad),
            3 => walks_until::<3>(r, stop, &mut bad),
            4 => walks_until::<4>(r, stop, &mut bad),
            5 => walks_until::<5>(r, stop, &mut bad),
            6 => walks_until::<6>(r, stop, &mut bad),
            _ => walks_until::<7>(r, stop, &mut bad),
        };
        wrong.fetch_add(bad, Ordering::Relaxed);
        walks
    });
    (timed, wrong.into_inner())
}

/// One walk under protection `which`, for criterion on the calling thread (CPU 0).
pub fn bench_one(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    r: &Readers,
    which: usize,
    id: &str,
) -> u64 {
    let expected = expected_sum();
    let outer = rcu::rcu_read_lock();
    let mut wrong = 0u64;
    macro_rules! bench {
        ($w:literal) => {
            group.bench_function(id, |b| {
                b.iter(|| wrong += u64::from(protected_walk(r, $w, &outer) != expected))
            })
        };
    }
    match which {
        0 => bench!(0),
        1 => bench!(1),
        2 => bench!(2),
        3 => bench!(3),
        4 => bench!(4),
        5 => bench!(5),
        6 => bench!(6),
        _ => bench!(7),
    };
    drop(outer);
    wrong
}
