//! Threads play CPUs by naming them (`remove_on(cpu, ..)`, `read_lock_on(cpu)`), as in the
//! RCU core's tests: nothing installs per-CPU areas, so tests may run in parallel.
use super::poison::POISON_TAG;
use super::torture::{FIRST_FRESH, Torture};
use super::*;
use crate::rcu::{BrokenRcu, Rcu};
use std::sync::Arc;
use std::vec::Vec;

/// A payload that counts its drops.
struct Counted(Arc<AtomicUsize>, u64);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn pids<T: Send + Sync, R: ListRcu>(list: &ProcessList<T, R>, cpu: usize) -> Vec<Pid> {
    let g = list.read_lock_on(cpu);
    list.iter(&g).map(|(pid, _)| pid).collect()
}

/// The kernel's list is a `static` on the global RCU: the constructor is a `const fn`.
#[test]
fn a_list_on_the_global_rcu_can_be_a_static() {
    static LIST: ProcessList<u64> = ProcessList::new(GlobalRcu);
    assert!(LIST.is_empty());
    assert_eq!(LIST.stats().inserted, 0);
}

#[test]
fn insert_lookup_iterate_remove() {
    let rcu = Rcu::new();
    rcu.cpu_online(0);
    let list: ProcessList<u64, &Rcu> = ProcessList::new(&rcu);
    for pid in 1..=3 {
        assert!(list.insert(pid, u64::from(pid) * 10).is_ok());
    }
    assert_eq!(list.insert(2, 99), Err(99), "pid 2 is taken");
    assert_eq!(pids(&list, 0), [3, 2, 1], "newest first");
    assert_eq!(list.len(), 3);
    {
        let g = list.read_lock_on(0);
        assert_eq!(list.lookup(2, &g), Some(&20));
        assert_eq!(list.lookup(7, &g), None);
        let mut sum = 0;
        list.for_each(&g, |pid, v| sum += u64::from(pid) + v);
        assert_eq!(sum, 6 + 60);
    }
    assert!(list.remove_on(0, 2));
    assert!(!list.remove_on(0, 2), "already gone");
    assert_eq!(pids(&list, 0), [3, 1]);
    let s = list.stats();
    assert_eq!((s.len, s.inserted, s.removed), (2, 3, 1));
    assert_eq!(list.flush_quarantine(Some(0)), usize::from(POISONING));
    assert_eq!(list.stats().retired, 0);
    assert_eq!(list.poison_report().sightings, 0);
}

/// A reader holds a payload across a removal: the node is neither dropped nor poisoned
/// until the reader's CPU has passed a quiescent state, however often the writer ticks.
#[test]
fn a_removed_node_outlives_the_readers_that_saw_it() {
    let rcu = Rcu::new();
    rcu.cpu_online(0);
    rcu.cpu_online(1);
    let drops = Arc::new(AtomicUsize::new(0));
    let list: ProcessList<Counted, &Rcu> = ProcessList::new(&rcu);
    assert!(list.insert(5, Counted(drops.clone(), 55)).is_ok());
    let g = list.read_lock_on(1);
    let held = list.lookup(5, &g).unwrap();
    assert!(list.remove_on(0, 5));
    for _ in 0..20 {
        rcu.tick(0);
    }
    assert_eq!(held.1, 55, "the payload is intact under the reader");
    assert_eq!(drops.load(Ordering::Relaxed), 0, "dropped under a reader");
    assert!(
        !POISONING || list.writer.lock().waiting(),
        "reclaimed under a reader"
    );
    drop(g);
    rcu.tick(1);
    rcu.tick(0);
    rcu.tick(0);
    assert_eq!(
        drops.load(Ordering::Relaxed),
        1,
        "dropped once the reader left"
    );
    list.flush_quarantine(Some(0));
    assert_eq!(list.stats().retired, 0);
    drop(list);
    assert_eq!(drops.load(Ordering::Relaxed), 1);
}

/// The callback poisons the node (magic, pid and payload bytes) and the quarantine keeps
/// it readable; a reader that still stands on it counts a sighting with the node's pid.
#[test]
fn the_callback_poisons_and_a_late_reader_is_reported() {
    if !POISONING {
        return;
    }
    let rcu = Rcu::new();
    rcu.cpu_online(0);
    let list: ProcessList<u64, &Rcu> = ProcessList::new(&rcu);
    assert!(list.insert(7, 0x1234).is_ok());
    let node = {
        let g = list.read_lock_on(0);
        NonNull::from(list.list.iter(&g).next().unwrap())
    };
    assert!(list.remove_on(0, 7));
    list.rcu().callbacks_barrier(Some(0));
    // SAFETY: the node is in quarantine (not freed before flush_quarantine).
    let n = unsafe { node.as_ref() };
    assert_eq!(n.magic.load(Ordering::Relaxed), POISON_TAG << 32 | 7);
    assert_eq!(n.pid(), POISON_PID);
    // SAFETY: as above; the payload's bytes are plain memory now.
    let bytes = unsafe { *n.payload.get().cast::<[u8; 8]>() };
    assert_eq!(bytes, [POISON_BYTE; 8]);
    // What a reader the grace period missed would do next: check the node.
    let magic = n.check().unwrap_err();
    list.poison.saw(magic, n.pid(), Some(3));
    assert_eq!(
        list.poison_report(),
        PoisonReport {
            sightings: 1,
            first: Some(PoisonSighting {
                pid: 7,
                cpu: Some(3)
            })
        }
    );
    assert_eq!(list.flush_quarantine(Some(0)), 1);
}

/// The quarantine keeps at most its size of poisoned nodes; the oldest go first.
#[test]
fn the_quarantine_is_bounded_and_frees_the_oldest() {
    if !POISONING {
        return;
    }
    let rcu = Rcu::new();
    rcu.cpu_online(0);
    let drops = Arc::new(AtomicUsize::new(0));
    let list: ProcessList<Counted, &Rcu> = ProcessList::with_quarantine(&rcu, 4);
    for pid in 1..=10 {
        assert!(list.insert(pid, Counted(drops.clone(), 0)).is_ok());
    }
    for pid in 1..=10 {
        assert!(list.remove_on(0, pid));
        rcu.synchronize_on(Some(0));
        rcu.process_callbacks(0);
    }
    assert_eq!(
        drops.load(Ordering::Relaxed),
        10,
        "every payload dropped at poisoning"
    );
    let s = list.stats();
    assert!(s.retired <= 5, "{s:?}");
    assert_eq!(s.freed as usize + s.retired, 10, "{s:?}");
    let q = list.writer.lock();
    // SAFETY: the first quarantined node is allocated.
    let oldest = unsafe { &*q.first }.magic.load(Ordering::Relaxed) as u32;
    assert!(
        oldest > 5,
        "pid {oldest} should have left the quarantine first"
    );
    drop(q);
    list.flush_quarantine(Some(0));
    assert_eq!(list.stats().freed, 10);
}

#[test]
fn dropping_the_list_drops_every_payload_once() {
    let rcu = Rcu::new();
    rcu.cpu_online(0);
    let drops = Arc::new(AtomicUsize::new(0));
    let list: ProcessList<Counted, &Rcu> = ProcessList::new(&rcu);
    for pid in 1..=8 {
        assert!(list.insert(pid, Counted(drops.clone(), 0)).is_ok());
    }
    assert!(list.remove_on(0, 3));
    assert!(list.remove_on(0, 4));
    // Two removed, their callbacks not run yet. With poisoning the list still holds them,
    // and Drop must wait for their callbacks (an rcu_barrier, while cpu0's tick, on another
    // thread, runs them) before it frees them; without, the callbacks free them on their
    // own, and the barrier is ours.
    let dropped = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !dropped.load(Ordering::Acquire) {
                rcu.tick(0);
                std::thread::yield_now();
            }
        });
        drop(list);
        if !POISONING {
            rcu.barrier_on(None);
        }
        dropped.store(true, Ordering::Release);
    });
    assert_eq!(drops.load(Ordering::Relaxed), 8);
}

#[test]
fn real_rcu_passes_the_process_list_torture() {
    let t = Torture::new(Rcu::new(), 4, 300, true, DEFAULT_QUARANTINE);
    let report = t.run_on_threads();
    std::println!("{report}");
    assert!(report.passed(), "{report}");
    assert!(report.rounds >= 4 * 300, "{report}");
    assert!(
        report.removes > 0 && report.inserts == report.removes,
        "{report}"
    );
    let s = report.stats;
    assert_eq!(s.len, 0, "{report}");
    assert_eq!(s.inserted, s.removed, "{report}");
    assert_eq!(s.retired, 0, "{report}");
    if POISONING {
        assert_eq!(s.freed, s.removed, "{report}");
    }
}

/// The same torture on the broken RCU must meet poison: bounded runs, longer each time.
/// The quarantine keeps every node until the end, so no reader ever reads freed memory.
#[test]
fn broken_rcu_is_caught_by_the_poison_check() {
    if !POISONING {
        return;
    }
    for attempt in 1..=5 {
        let t = Torture::new(BrokenRcu::new(), 4, 500 * attempt, false, usize::MAX);
        let report = t.run_on_threads();
        std::println!("{report}");
        if report.caught() {
            let first = report.poison.first.expect("a sighting has a first one");
            assert!(
                (FIRST_FRESH..t.next_fresh()).contains(&first.pid),
                "pid {} was never removed: {report}",
                first.pid
            );
            assert!(first.cpu.is_some_and(|c| c < 4), "{report}");
            assert_eq!(report.stats.retired, 0, "{report}");
            return;
        }
    }
    panic!("the poison check did not catch an RCU whose grace periods are empty");
}
