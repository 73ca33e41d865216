use crate::config::MAX_CPUS;
use crate::rcu::{BrokenRcu, CPUS_PER_LEAF, Rcu, RcuFlavor, RcuHead, RcuPointer};
use crate::sync::shim::Ordering;
use loom::cell::UnsafeCell;
use loom::sync::Arc;

pub(in crate::rcu) const POISON: u64 = 0xdead_dead;

pub(in crate::rcu) struct Obj {
    pub(in crate::rcu) value: UnsafeCell<u64>,
    pub(in crate::rcu) head: RcuHead,
}

pub(in crate::rcu) fn obj(value: u64) -> *mut Obj {
    Box::into_raw(Box::new(Obj {
        value: UnsafeCell::new(value),
        head: RcuHead::new(),
    }))
}

/// "Free" by poisoning: a write that must come after every reader's access.
pub(in crate::rcu) fn poison(o: *mut Obj) {
    // SAFETY: `o` lives until the end of the model; loom checks the access itself.
    unsafe { (*o).value.with_mut(|v| *v = POISON) };
}

/// cpu0 reads the current object once, inside a read-side section, then goes offline
/// (its last quiescent state). cpu1 publishes a new object, then `free_old` must make the
/// old one safe to free and free it.
pub(in crate::rcu) fn reader_never_sees_freed_data<F: RcuFlavor + Send + 'static>(
    make: fn() -> F,
    free_old: fn(&F, *mut Obj),
) {
    reader_on_cpu_never_sees_freed_data(make, free_old, 0);
}

/// The first CPU of the second leaf (the last CPU if there is one leaf).
const FAR: usize = if CPUS_PER_LEAF < MAX_CPUS {
    CPUS_PER_LEAF
} else {
    MAX_CPUS - 1
};

/// As above, with the reader on CPU `reader` (the writer is cpu1).
fn reader_on_cpu_never_sees_freed_data<F: RcuFlavor + Send + 'static>(
    make: fn() -> F,
    free_old: fn(&F, *mut Obj),
    reader: usize,
) {
    loom::model(move || {
        let rcu = Arc::new(make());
        rcu.cpu_online(reader);
        rcu.cpu_online(1);
        let first = obj(1);
        let ptr = Arc::new(RcuPointer::new(first));
        let reader = {
            let (rcu, ptr) = (Arc::clone(&rcu), Arc::clone(&ptr));
            loom::thread::spawn(move || {
                rcu.read_lock(reader);
                let p = ptr.load();
                // SAFETY: both objects outlive the model's threads; whether the access is
                // ordered before the free is what loom checks.
                let v = unsafe { (*p).value.with(|v| *v) };
                rcu.read_unlock(reader);
                rcu.cpu_offline(reader);
                assert_ne!(v, POISON, "reader saw freed data");
            })
        };
        // SAFETY: the only writer; the new object is whole and outlives the model.
        let old = unsafe { ptr.publish(obj(2)) };
        free_old(&rcu, old);
        reader.join().unwrap();
        // SAFETY: both came from Box::into_raw and nothing uses them any more.
        unsafe {
            drop(Box::from_raw(old));
            drop(Box::from_raw(ptr.load()));
        }
    });
}

fn synchronize_then_free<F: RcuFlavor>(rcu: &F, old: *mut Obj) {
    rcu.synchronize(1);
    poison(old);
}

#[test]
fn loom_rcu_reader_never_sees_data_freed_after_synchronize() {
    reader_never_sees_freed_data(Rcu::new, synchronize_then_free::<Rcu>);
}

/// The reader's CPU in another leaf than the writer's: its leaf's root bit is what holds
/// the grace period open.
#[test]
fn loom_rcu_reader_in_another_leaf_never_sees_data_freed_after_synchronize() {
    reader_on_cpu_never_sees_freed_data(Rcu::new, synchronize_then_free::<Rcu>, FAR);
}

/// The bug: synchronize returns at once, so the free can overlap the reader.
#[test]
#[should_panic(expected = "Causality violation")]
fn loom_rcu_broken_synchronize_is_caught() {
    reader_never_sees_freed_data(BrokenRcu::new, synchronize_then_free::<BrokenRcu>);
}

impl Rcu {
    /// After the model's threads, with nobody owing a report: every grace period that
    /// started has ended. The waiter may have started a second one (its look at `gp_seq`
    /// can be stale, and an extra period is harmless), so the count is not fixed; a period
    /// still open or a leaf still owed would be a lost report.
    fn assert_settled(&self) {
        assert!(
            self.completed() >= 1,
            "synchronize returned before a grace period"
        );
        assert!(
            !self.gp_in_progress(),
            "gp_seq {} is odd: a grace period never ended",
            self.gp_seq()
        );
        let root = self.root.load(Ordering::Relaxed);
        assert_eq!(
            root, 0,
            "leaves {root:#x} still owed after the period ended"
        );
    }
}

/// The reporting path across leaves: cpu0 synchronizes (starting the grace period, filling
/// the leaves one by one, reporting itself) while `FAR`, in another leaf, reports at every
/// step until the period is over. In every interleaving each period that starts ends once,
/// and after `FAR`'s access before its counted report (loom checks the `UnsafeCell`).
#[test]
fn loom_rcu_reports_from_two_leaves_end_the_grace_period_once() {
    loom::model(|| {
        let rcu = Arc::new(Rcu::new());
        rcu.cpu_online(0);
        rcu.cpu_online(FAR);
        let far_data = Arc::new(UnsafeCell::new(0u64));
        let far = {
            let (rcu, far_data) = (Arc::clone(&rcu), Arc::clone(&far_data));
            loom::thread::spawn(move || {
                // What a reader on FAR did before its quiescent state.
                // SAFETY: the cell outlives both threads; loom checks the access's ordering.
                far_data.with_mut(|v| unsafe { *v = 1 });
                while rcu.completed() == 0 {
                    rcu.note_quiescent_state(FAR);
                    loom::thread::yield_now();
                }
            })
        };
        rcu.synchronize_on(Some(0));
        // Ordered after FAR's write only through FAR's leaf and the root.
        // SAFETY: as above; this read must be ordered after FAR's write.
        far_data.with(|v| assert_eq!(unsafe { *v }, 1));
        far.join().unwrap();
        // A second period the waiter may have started can still be running here (FAR
        // stopped reporting once one ended); a double end would have panicked in leaf_done
        // or end_grace_period.
        assert!(rcu.completed() >= 1);
    });
}

/// A CPU of another leaf goes offline while cpu0 synchronizes: whichever comes first,
/// synchronize returns and each period that started ended exactly once.
#[test]
fn loom_rcu_going_offline_in_another_leaf_during_a_grace_period() {
    loom::model(|| {
        let rcu = Arc::new(Rcu::new());
        rcu.cpu_online(0);
        rcu.cpu_online(FAR);
        let far = {
            let rcu = Arc::clone(&rcu);
            loom::thread::spawn(move || rcu.cpu_offline(FAR))
        };
        rcu.synchronize_on(Some(0));
        far.join().unwrap();
        rcu.assert_settled();
        assert_eq!(rcu.online_mask(), crate::cpumask::CpuMask::only(0));
    });
}
