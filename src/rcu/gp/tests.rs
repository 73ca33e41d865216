//! Threads play CPUs by naming them (`read_lock_on(cpu)`, `synchronize_on(Some(cpu))`)
//! rather than with `percpu::install`: the preempt count and the IRQ nesting are per-CPU
//! statics that tests running in parallel would share if they installed the same ids. The
//! one test that checks the preempt count installs cpu0, whose count no other test uses.
use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64 as StdU64};

fn on_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

#[test]
fn sections_nest_and_disable_preemption() {
    let _cpus = crate::percpu::playing_cpus();
    let rcu = Rcu::new();
    on_thread(|| {
        percpu::install(0);
        let outer = rcu.read_lock();
        let inner = rcu.read_lock();
        assert_eq!(outer.cpu(), Some(0));
        assert_eq!(rcu.nesting(0), 2);
        assert!(!preempt::preemptible());
        drop(inner);
        assert!(
            !rcu.note_quiescent_state(0),
            "still inside the outer section"
        );
        drop(outer);
        assert_eq!(rcu.nesting(0), 0);
        assert!(preempt::preemptible());
        assert!(rcu.note_quiescent_state(0));
    });
}

#[test]
fn a_grace_period_waits_for_every_online_cpu() {
    let rcu = Rcu::new();
    for cpu in 0..3 {
        rcu.cpu_online(cpu);
    }
    assert_eq!(rcu.online_mask(), CpuMask::all(3));
    let target = rcu.snapshot();
    assert_eq!(target, 2);
    assert!(rcu.start_grace_period());
    assert!(!rcu.start_grace_period(), "one at a time");
    on_thread(|| rcu.note_quiescent_state(0));
    on_thread(|| rcu.note_quiescent_state(1));
    assert!(!rcu.is_done(target), "cpu2 has not reported");
    on_thread(|| {
        let g = rcu.read_lock_on(2);
        assert!(
            !rcu.note_quiescent_state(2),
            "a tick inside a reader is no report"
        );
        drop(g);
        assert!(rcu.note_quiescent_state(2));
    });
    assert!(rcu.is_done(target));
    assert_eq!(rcu.completed(), 1);
}

#[test]
fn a_grace_period_already_running_does_not_count() {
    let rcu = Rcu::new();
    rcu.cpu_online(0);
    assert!(rcu.start_grace_period());
    let target = rcu.snapshot();
    assert_eq!(target, 4, "the running one may predate the update");
    on_thread(|| rcu.note_quiescent_state(0));
    assert!(!rcu.is_done(target));
    assert!(rcu.start_grace_period());
    on_thread(|| rcu.note_quiescent_state(0));
    assert!(rcu.is_done(target));
}

/// A CPU without a working interrupt interface idles in WFE, which only an event ends:
/// a grace period that starts while it sleeps must wake it, or it never reports.
#[test]
fn starting_a_grace_period_sends_an_event() {
    let rcu = Rcu::new();
    rcu.cpu_online(0);
    rcu.cpu_online(1);
    on_thread(|| {
        let before = crate::arch::host::events_sent();
        assert!(rcu.start_grace_period());
        assert!(
            crate::arch::host::events_sent() > before,
            "a grace period started without SEV: CPUs waiting in WFE sleep through it"
        );
    });
}

#[test]
fn with_no_cpu_online_a_grace_period_ends_at_once() {
    let rcu = Rcu::new();
    rcu.synchronize_on(None);
    assert_eq!(rcu.completed(), 1);
}

#[test]
fn going_offline_releases_a_waiting_grace_period() {
    let rcu = Rcu::new();
    rcu.cpu_online(0);
    rcu.cpu_online(5);
    assert!(rcu.start_grace_period());
    on_thread(|| rcu.note_quiescent_state(0));
    rcu.cpu_offline(5);
    assert_eq!(rcu.completed(), 1);
    assert_eq!(rcu.online_mask(), CpuMask::only(0));
}

/// CPUs spread over the leaves (the first two CPUs, the first of the second leaf and the
/// last CPU; fewer where `MAX_CPUS` is small).
fn cpus_in_several_leaves() -> Vec<usize> {
    let mut cpus = vec![0, 1, CPUS_PER_LEAF.min(MAX_CPUS - 1), MAX_CPUS - 1];
    cpus.dedup();
    cpus
}

/// CPUs in different leaves (0-15, 16-31, ...): the period ends only once the last CPU to
/// report has, whatever the order the CPUs and their leaves report in.
#[test]
fn a_grace_period_waits_for_every_leaf() {
    let cpus = cpus_in_several_leaves();
    let n = cpus.len();
    let orders: Vec<Vec<usize>> = vec![
        (0..n).collect(),
        (0..n).rev().collect(),
        (0..n).map(|i| (i + 1) % n).collect(),
    ];
    for order in orders {
        let rcu = Rcu::new();
        for &cpu in &cpus {
            rcu.cpu_online(cpu);
        }
        assert_eq!(rcu.online_mask(), cpus.iter().copied().collect());
        let target = rcu.snapshot();
        assert!(rcu.start_grace_period());
        for (i, &slot) in order.iter().enumerate() {
            assert!(
                !rcu.is_done(target),
                "order {order:?}: done before cpu{} reported",
                cpus[slot]
            );
            on_thread(|| rcu.note_quiescent_state(cpus[slot]));
            // A second report from the same CPU changes nothing.
            on_thread(|| rcu.note_quiescent_state(cpus[slot]));
            assert_eq!(rcu.completed(), u64::from(i == n - 1), "order {order:?}");
        }
        assert!(rcu.is_done(target), "order {order:?}: every CPU reported");
    }
}

/// A leaf with no CPU online is finished by the starter; one with CPUs is not.
#[test]
fn leaves_without_online_cpus_do_not_hold_a_grace_period() {
    let top = MAX_CPUS - 1;
    let rcu = Rcu::new();
    rcu.cpu_online(top);
    assert!(rcu.start_grace_period());
    assert_eq!(rcu.completed(), 0, "cpu{top} has not reported");
    on_thread(|| rcu.note_quiescent_state(top));
    assert_eq!(rcu.completed(), 1);
    // And a report before any grace period started counts for nothing later.
    on_thread(|| rcu.note_quiescent_state(top));
    assert!(rcu.start_grace_period());
    assert_eq!(rcu.completed(), 1);
    rcu.cpu_offline(top);
    assert_eq!(rcu.completed(), 2, "its last CPU left: the leaf is done");
}

/// A CPU that comes online while a grace period runs is not waited for, in any leaf.
#[test]
fn a_cpu_coming_online_during_a_grace_period_is_not_waited_for() {
    let top = MAX_CPUS - 1;
    let rcu = Rcu::new();
    rcu.cpu_online(0);
    assert!(rcu.start_grace_period());
    rcu.cpu_online(top);
    rcu.cpu_online(1);
    on_thread(|| rcu.note_quiescent_state(0));
    assert_eq!(rcu.completed(), 1);
    assert_eq!(rcu.online_mask(), CpuMask::all(2).with(top));
    assert!(rcu.start_grace_period());
    on_thread(|| rcu.note_quiescent_state(0));
    on_thread(|| rcu.note_quiescent_state(1));
    assert_eq!(
        rcu.completed(),
        1,
        "cpu{top} counts from the next period on"
    );
    on_thread(|| rcu.note_quiescent_state(top));
    assert_eq!(rcu.completed(), 2);
}

#[test]
#[should_panic(expected = "synchronize_rcu inside an RCU read-side critical section")]
fn synchronize_inside_a_reader_is_refused() {
    let rcu = Rcu::new();
    rcu.cpu_online(3);
    let _g = rcu.read_lock_on(3);
    rcu.synchronize_on(Some(3));
}

#[test]
#[should_panic(expected = "context switch inside an RCU read-side critical section")]
fn a_context_switch_inside_a_reader_is_refused() {
    let rcu = Rcu::new();
    let _g = rcu.read_lock_on(4);
    rcu.context_switch(4);
}

#[test]
#[should_panic(expected = "rcu_read_unlock without rcu_read_lock on cpu2")]
fn an_unbalanced_unlock_is_refused() {
    Rcu::new().raw_read_unlock(2);
}

/// A reader on cpu1 holds its section while cpu0 synchronizes: synchronize must not
/// return before the reader leaves and its CPU reports.
#[test]
fn synchronize_waits_for_a_reader_in_progress() {
    let rcu = Rcu::new();
    rcu.cpu_online(0);
    rcu.cpu_online(1);
    let in_section = AtomicBool::new(false);
    let left = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let g = rcu.read_lock_on(1);
            in_section.store(true, Ordering::Release);
            for _ in 0..50 {
                std::thread::yield_now();
            }
            left.store(true, Ordering::SeqCst);
            drop(g);
            // The tick, until the writer is done.
            while rcu.completed() == 0 {
                rcu.tick(1);
                std::thread::yield_now();
            }
        });
        s.spawn(|| {
            while !in_section.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            rcu.synchronize_on(Some(0));
            assert!(
                left.load(Ordering::SeqCst),
                "synchronize returned while a reader was still inside"
            );
        });
    });
}

static HOOK_CALLS: StdU64 = StdU64::new(0);

#[test]
fn the_wait_hook_is_used_while_waiting() {
    fn hook() {
        HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
        std::thread::yield_now();
    }
    let rcu = Rcu::new();
    rcu.set_wait_hook(hook);
    rcu.cpu_online(0);
    rcu.cpu_online(1);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                rcu.tick(1);
                std::thread::yield_now();
            }
        });
        s.spawn(|| {
            for _ in 0..5 {
                rcu.synchronize_on(Some(0));
            }
            done.store(true, Ordering::Release);
        });
    });
    assert_eq!(rcu.completed(), 5);
    assert!(HOOK_CALLS.load(Ordering::Relaxed) > 0);
}
