//! rcutorture, portable: readers check how old the object they hold is while a writer keeps
//! replacing it (chapter 18, "RCU").
//!
//! Every object carries a *pipe count*, its age in grace periods since it was removed. The
//! writer publishes a fresh object (count 0), sets the removed one to 1, and adds 1 to every
//! removed object after each grace period that follows (directly after `synchronize`, or from
//! its `call_rcu` callback, which queues itself again); at 10 the object is recycled. Readers,
//! inside a read-side section, take the current object, dawdle a little, then read its count
//! into a histogram, the `Reader Pipe:` line Linux's rcutorture prints. A reader may see 0
//! (current) or 1 (removed, but no grace period ended since); 2 or more means a grace period
//! ended while the reader still held the object: RCU is broken.
//!
//! The objects come from a pool inside [`Torture`] and are recycled, never freed, so a broken
//! RCU makes the histogram wrong but never touches freed memory; that is what lets the
//! deliberately broken [`BrokenRcu`](super::BrokenRcu) run the same test and be caught.
//!
//! The test is a value, not a thread manager: build a [`Torture`], run [`Torture::run_cpu`]
//! once on each CPU `0..cpus` at the same time (CPU 0 writes, the others read), then read
//! [`Torture::report`]. On the host, [`Torture::spread`] has the threads play CPU ids far apart
//! (0, 21, 42, 63 for four of 64), so that the grace periods wait on several of RCU's leaves. The host tests run it on threads ([`Torture::run_on_threads`]); the
//! kernel can run it on its CPUs with `smp::on_each_cpu`, against `rcu::global()`.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::{RcuFlavor, RcuHead};

/// Buckets 0..=10; the last one also counts anything older.
pub const PIPE_LEN: usize = 10;
/// Objects in flight at once: the current one and the removed ones still ageing.
const POOL: usize = 32;
/// The CPU that writes; every other CPU reads.
const WRITER_CPU: usize = 0;

struct TortureObject {
    pipe: AtomicU32,
    free: AtomicBool,
    head: RcuHead,
    /// The `Torture` whose callbacks age this object (set when the writer starts).
    owner: AtomicPtr<()>,
}

/// One torture run over an RCU flavour `R`.
pub struct Torture<R: RcuFlavor> {
    rcu: R,
    cpus: usize,
    /// Run slot `i` plays CPU `i * stride` (1 in the kernel: the slots are the CPUs).
    stride: usize,
    updates: u64,
    current: AtomicPtr<TortureObject>,
    objects: [TortureObject; POOL],
    readers_ready: AtomicUsize,
    /// Where the writer's next search for a free object starts (only the writer uses it).
    next_free: AtomicUsize,
    stop: AtomicBool,
    pipe: [AtomicU64; PIPE_LEN + 1],
    reads: AtomicU64,
    updates_done: AtomicU64,
    callbacks_run: AtomicU64,
    grace_periods: AtomicU64,
}

/// What a run found, printed in rcutorture's style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TortureReport {
    pub flavor: &'static str,
    pub cpus: usize,
    pub reads: u64,
    pub updates: u64,
    pub grace_periods: u64,
    pub callbacks: u64,
    /// `pipe[i]`: reads that saw an object of age `i` (the last bucket: `PIPE_LEN` or more).
    pub pipe: [u64; PIPE_LEN + 1],
}

impl TortureReport {
    /// Reads that saw an object survive a full grace period after its removal.
    pub fn failures(&self) -> u64 {
        self.pipe[2..].iter().sum()
    }

    pub fn passed(&self) -> bool {
        self.failures() == 0
    }
}

impl fmt::Display for TortureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rcu-torture: {}: {} CPUs, {} updates, {} grace periods, {} callbacks, {} reads",
            self.flavor, self.cpus, self.updates, self.grace_periods, self.callbacks, self.reads
        )?;
        write!(f, "rcu-torture: Reader Pipe:")?;
        for n in &self.pipe {
            write!(f, " {n}")?;
        }
        writeln!(f)?;
        if self.passed() {
            write!(f, "rcu-torture: {}: PASS", self.flavor)
        } else {
            write!(
                f,
                "!!! rcu-torture: {}: FAIL: {} reads saw an object outlive a grace period after \
                 its removal",
                self.flavor,
                self.failures()
            )
        }
    }
}

/// A small xorshift generator: each reader dawdles a different, varying time. The process-list
/// torture (src/task/proclist/torture.rs) uses it too.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl<R: RcuFlavor> Torture<R> {
    /// A run on CPUs `0..cpus` (at least 2: one writer, readers on the rest) with `updates`
    /// replacements of the current object.
    pub fn new(rcu: R, cpus: usize, updates: u64) -> Self {
        assert!(
            cpus >= 2,
            "the torture test needs a writer CPU and a reader CPU"
        );
        Torture {
            rcu,
            cpus,
            stride: 1,
            updates,
            current: AtomicPtr::new(core::ptr::null_mut()),
            objects: core::array::from_fn(|_| TortureObject {
                pipe: AtomicU32::new(0),
                free: AtomicBool::new(true),
                head: RcuHead::new(),
                owner: AtomicPtr::new(core::ptr::null_mut()),
            }),
            readers_ready: AtomicUsize::new(0),
            next_free: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            pipe: core::array::from_fn(|_| AtomicU64::new(0)),
            reads: AtomicU64::new(0),
            updates_done: AtomicU64::new(0),
            callbacks_run: AtomicU64::new(0),
            grace_periods: AtomicU64::new(0),
        }
    }

    /// Spread the run's CPUs over the whole id range: slot `i` plays CPU `i * stride`, with the
    /// widest stride that keeps the last slot below `MAX_CPUS` (host tests name their CPUs).
    pub fn spread(mut self) -> Self {
        self.stride = ((crate::config::MAX_CPUS - 1) / (self.cpus - 1)).max(1);
        self
    }

    /// The CPU id run slot `slot` plays.
    pub fn cpu_of(&self, slot: usize) -> usize {
        slot * self.stride
    }

    /// Run slot `slot`'s part (the CPU it plays: `cpu_of(slot)`; in the kernel the slot is the
    /// CPU): slot 0 writes, the others read. Returns when the writer is done.
    pub fn run_cpu(&self, slot: usize) {
        assert!(slot < self.cpus, "cpu{slot} is not part of this run");
        let cpu = self.cpu_of(slot);
        self.rcu.cpu_online(cpu);
        if cpu == WRITER_CPU {
            self.writer(cpu);
        } else {
            self.reader(cpu);
        }
    }

    /// What the run found (complete once every CPU's `run_cpu` has returned).
    pub fn report(&self) -> TortureReport {
        TortureReport {
            flavor: self.rcu.name(),
            cpus: self.cpus,
            reads: self.reads.load(Ordering::Acquire),
            updates: self.updates_done.load(Ordering::Acquire),
            grace_periods: self.grace_periods.load(Ordering::Acquire),
            callbacks: self.callbacks_run.load(Ordering::Acquire),
            pipe: core::array::from_fn(|i| self.pipe[i].load(Ordering::Acquire)),
        }
    }

    fn reader(&self, cpu: usize) {
        let mut hist = [0u64; PIPE_LEN + 1];
        let mut reads = 0;
        // Wrapping: past cpu14 the product no longer fits in 64 bits.
        let mut rng =
            Rng(0x9e37_79b9_7f4a_7c15 ^ (cpu as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
        self.readers_ready.fetch_add(1, Ordering::Release);
        while !self.stop.load(Ordering::Acquire) {
            self.rcu.read_lock(cpu);
            let p = self.current.load(Ordering::Acquire);
            // SAFETY: objects live in the pool for the whole run; a "freed" one is only
            // recycled, so the reference is always to a valid object.
            if let Some(obj) = unsafe { p.as_ref() } {
                let r = rng.next();
                for _ in 0..r % 64 {
                    core::hint::spin_loop();
                }
                if r.is_multiple_of(8) {
                    // A long reader: on the host this gives the core away for a while.
                    crate::arch::cpu_relax();
                }
                let age = (obj.pipe.load(Ordering::Relaxed) as usize).min(PIPE_LEN);
                hist[age] += 1;
                reads += 1;
            }
            self.rcu.read_unlock(cpu);
            // Between sections the CPU is quiescent: report it, as the kernel's tick would.
            self.rcu.tick(cpu);
        }
        for (total, n) in self.pipe.iter().zip(hist) {
            total.fetch_add(n, Ordering::Release);
        }
        self.reads.fetch_add(reads, Ordering::Release);
    }

    fn writer(&self, cpu: usize) {
        let me = self as *const Self as *mut ();
        for obj in &self.objects {
            obj.owner.store(me, Ordering::Relaxed);
        }
        while self.readers_ready.load(Ordering::Acquire) < self.cpus - 1 {
            self.rcu.tick(cpu);
            crate::arch::cpu_relax();
        }
        let start = self.rcu.completed();
        // Objects removed on the synchronize path, ageing one step per grace period.
        let mut removed = [0usize; POOL];
        let mut n_removed = 0;
        for i in 0..self.updates {
            let new = self.allocate(cpu);
            self.objects[new].pipe.store(0, Ordering::Relaxed);
            let obj = &self.objects[new] as *const TortureObject as *mut TortureObject;
            let old = self.current.swap(obj, Ordering::AcqRel);
            // SAFETY: pool objects live as long as `self`.
            if let Some(old) = unsafe { old.as_ref() } {
                old.pipe.store(1, Ordering::Relaxed);
                if i % 2 == 0 {
                    removed[n_removed] = self.index_of(old);
                    n_removed += 1;
                    self.rcu.synchronize(cpu);
                    n_removed = self.age(&mut removed, n_removed);
                } else {
                    // SAFETY: the head belongs to a pool object that outlives the run and is
                    // queued once at a time (it is requeued only from its own callback).
                    unsafe { self.rcu.call_rcu(cpu, &old.head, age_callback::<R>) };
                }
            }
            self.updates_done.fetch_add(1, Ordering::Release);
            self.rcu.tick(cpu);
            // Pace the writer, as rcutorture's does: a writer far faster than the readers
            // recycles every object before a reader looks at it, and a broken RCU goes unseen.
            for _ in 0..256 {
                core::hint::spin_loop();
            }
            crate::arch::cpu_relax();
        }
        // Let every removed object finish ageing, so no callback refers to the pool after the
        // run; the readers keep reporting quiescent states meanwhile.
        loop {
            if n_removed > 0 {
                self.rcu.synchronize(cpu);
                n_removed = self.age(&mut removed, n_removed);
            }
            self.rcu.tick(cpu);
            let current = self.current.load(Ordering::Relaxed);
            let all_free = self
                .objects
                .iter()
                .all(|o| core::ptr::eq(o, current) || o.free.load(Ordering::Acquire));
            if n_removed == 0 && all_free {
                break;
            }
            crate::arch::cpu_relax();
        }
        self.grace_periods
            .store(self.rcu.completed() - start, Ordering::Release);
        self.stop.store(true, Ordering::Release);
    }

    /// A free pool object (waiting for callbacks to free one if needed), now taken. The
    /// search goes round the pool from the last one taken, so a recycled object rests as
    /// long as possible (with its high age) before it is reused.
    fn allocate(&self, cpu: usize) -> usize {
        let from = self.next_free.load(Ordering::Relaxed);
        loop {
            let found = (0..POOL).map(|k| (from + k) % POOL).find(|&i| {
                self.objects[i]
                    .free
                    .compare_exchange(true, false, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            });
            if let Some(i) = found {
                self.next_free.store((i + 1) % POOL, Ordering::Relaxed);
                return i;
            }
            self.rcu.tick(cpu);
            crate::arch::cpu_relax();
        }
    }

    fn index_of(&self, obj: &TortureObject) -> usize {
        self.objects
            .iter()
            .position(|o| core::ptr::eq(o, obj))
            .expect("a torture object from another pool")
    }

    /// A grace period ended: every object removed on the synchronize path is one older;
    /// those of age `PIPE_LEN` go back to the pool. Returns how many are still ageing.
    fn age(&self, removed: &mut [usize; POOL], n: usize) -> usize {
        let mut kept = 0;
        for k in 0..n {
            let obj = &self.objects[removed[k]];
            if obj.grow_older() {
                removed[kept] = removed[k];
                kept += 1;
            }
        }
        kept
    }

    /// Run on threads playing CPUs `0..cpus` and return the report (host only). The threads
    /// name their CPUs instead of installing per-CPU areas, so runs in parallel tests do not
    /// share the per-CPU preempt and IRQ-nesting counts.
    #[cfg(not(target_os = "none"))]
    pub fn run_on_threads(&self) -> TortureReport
    where
        R: Send,
    {
        std::thread::scope(|s| {
            for cpu in 0..self.cpus {
                s.spawn(move || self.run_cpu(cpu));
            }
        });
        self.report()
    }
}

impl TortureObject {
    /// One grace period older; true while it must keep ageing, false once back in the pool.
    fn grow_older(&self) -> bool {
        let age = self.pipe.load(Ordering::Relaxed) + 1;
        self.pipe.store(age, Ordering::Relaxed);
        if age as usize >= PIPE_LEN {
            self.free.store(true, Ordering::Release);
            false
        } else {
            true
        }
    }
}

/// The `call_rcu` path: a grace period ended for this object; age it and queue it again.
unsafe fn age_callback<R: RcuFlavor>(head: *mut RcuHead) {
    // SAFETY: only `head` fields of pool objects are queued with this callback.
    let obj = unsafe {
        &*RcuHead::container::<TortureObject>(head, core::mem::offset_of!(TortureObject, head))
    };
    // SAFETY: the writer set `owner` to its `Torture<R>` before queueing, and the run does not
    // end before every object is back in the pool, so the torture is alive.
    let torture = unsafe { &*(obj.owner.load(Ordering::Relaxed) as *const Torture<R>) };
    torture.callbacks_run.fetch_add(1, Ordering::Relaxed);
    if obj.grow_older() {
        // SAFETY: the head was just taken off the callback list and is queued once again.
        unsafe {
            torture
                .rcu
                .call_rcu(WRITER_CPU, &obj.head, age_callback::<R>)
        };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::rcu::{BrokenRcu, Rcu};

    #[test]
    fn real_rcu_passes_the_torture_test() {
        let t = Torture::new(Rcu::new(), 3, 300);
        let report = t.run_on_threads();
        std::println!("{report}");
        assert!(report.passed(), "{report}");
        assert_eq!(report.updates, 300);
        assert!(report.reads > 0, "{report}");
        assert!(report.grace_periods >= 150, "{report}");
        assert!(report.callbacks >= 149 * (PIPE_LEN as u64 - 1), "{report}");
    }

    /// The same test with the CPUs spread over RCU's leaves (0, 21, 42, 63 of 64): every grace
    /// period waits for several leaves, each finished by its own last reporter. A grace period
    /// that never ends (a lost report) would hang the run, so it runs on its own thread and
    /// must finish within a generous bound.
    #[test]
    fn real_rcu_passes_the_torture_test_across_leaves() {
        let t: &'static Torture<Rcu> = std::boxed::Box::leak(std::boxed::Box::new(
            Torture::new(Rcu::new(), 4, 300).spread(),
        ));
        let mut leaves: std::vec::Vec<usize> = (0..4)
            .map(|s| t.cpu_of(s) / crate::rcu::CPUS_PER_LEAF)
            .collect();
        leaves.dedup();
        if crate::config::MAX_CPUS > crate::rcu::CPUS_PER_LEAF {
            assert!(leaves.len() > 1, "the run's CPUs all sit in one leaf");
        }
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The receiver is gone only if the test already failed on its timeout.
            let _ = done.send(t.run_on_threads());
        });
        let cpus: std::vec::Vec<usize> = (0..4).map(|s| t.cpu_of(s)).collect();
        let report = match finished.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(report) => report,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
                "the torture run on CPUs {cpus:?} did not finish in 120 s: stuck at {} updates, \
                 {} grace periods, gp_seq {} (a grace period that never ends)",
                t.updates_done.load(Ordering::Relaxed),
                t.rcu.completed(),
                t.rcu.gp_seq()
            ),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!(
                "the torture run on CPUs {cpus:?} died (a CPU's thread panicked, above) at {} \
                 updates, gp_seq {}",
                t.updates_done.load(Ordering::Relaxed),
                t.rcu.gp_seq()
            ),
        };
        std::println!("{report}");
        assert!(report.passed(), "{report}");
        assert_eq!(report.updates, 300);
        assert!(report.grace_periods >= 150, "{report}");
    }

    #[test]
    fn broken_rcu_is_caught_by_the_torture_test() {
        // Bounded retries: on a busy host one short run might not overlap at all.
        for _ in 0..5 {
            let t = Torture::new(BrokenRcu::new(), 3, 1000);
            let report = t.run_on_threads();
            std::println!("{report}");
            if !report.passed() {
                assert!(report.to_string().contains("!!! rcu-torture: broken: FAIL"));
                return;
            }
        }
        panic!("the torture test did not catch an RCU whose grace periods are empty");
    }

    #[test]
    fn the_report_reads_like_rcutorture() {
        let mut pipe = [0; PIPE_LEN + 1];
        pipe[0] = 90;
        pipe[1] = 10;
        let report = TortureReport {
            flavor: "rcu",
            cpus: 4,
            reads: 100,
            updates: 5,
            grace_periods: 6,
            callbacks: 7,
            pipe,
        };
        assert_eq!(
            report.to_string(),
            "rcu-torture: rcu: 4 CPUs, 5 updates, 6 grace periods, 7 callbacks, 100 reads\n\
             rcu-torture: Reader Pipe: 90 10 0 0 0 0 0 0 0 0 0\n\
             rcu-torture: rcu: PASS"
        );
        let mut broken = report.clone();
        broken.pipe[3] = 2;
        assert_eq!(broken.failures(), 2);
        assert!(broken.to_string().ends_with(
            "!!! rcu-torture: rcu: FAIL: 2 reads saw an object outlive a grace period after its removal"
        ));
    }
}
