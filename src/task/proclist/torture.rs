//! The process-list torture test (chapter 18, "RCU"), portable: the host tests run it on
//! threads playing CPUs ([`Torture::run_on_threads`]), the kernel on its CPUs
//! (src/ktest/proclist.rs).
//!
//! Every CPU both reads and writes. A round is a walk over the whole list, a few lookups of
//! pids that are never removed (`1..=STABLE`) and of the CPU's own live pids, then one write:
//! insert a fresh pid, or, once the CPU owns [`OWN`] of them, remove its oldest and check that
//! its own next reader no longer finds it. Readers dawdle at random on nodes, so that writers
//! change the list under them. Each CPU does its share of rounds and then keeps going (up to
//! `CAP_FACTOR` times its share) until every CPU has done its share: under QEMU four vCPUs share
//! two host cores, and a CPU that stopped early would leave the others racing nobody. A round
//! ends with the CPU's `tick` (a quiescent state, and its ready callbacks run). Bounded in
//! rounds, not in time.
//!
//! With a correct RCU no reader may meet poison, miss a pid that is on the list, see a payload
//! that is not its pid's, or find a node its own CPU removed. With the broken RCU the poison
//! check must fire (the broken runs do not read payloads: see src/task/proclist/poison.rs).

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::{ListRcu, Pid, PoisonReport, ProcListStats, ProcessList};
use crate::rcu::RcuReadGuard;
// xorshift: each CPU dawdles differently.
use crate::rcu::torture::Rng;

/// Pids `1..=STABLE` are on the list for the whole run.
pub const STABLE: Pid = 32;
/// The first fresh pid a CPU inserts; fresh pids are never reused.
pub const FIRST_FRESH: Pid = 1000;
/// Fresh pids a CPU owns at most before it removes its oldest.
pub const OWN: usize = 4;
/// A CPU's rounds are capped at this many times its share.
const CAP_FACTOR: u64 = 8;
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// What the torture list holds: the pid again and a check word derived from it.
pub struct Payload {
    pid: Pid,
    check: u64,
}

impl Payload {
    fn new(pid: Pid) -> Self {
        Payload {
            pid,
            check: u64::from(pid).wrapping_mul(GOLDEN),
        }
    }

    fn is_for(&self, pid: Pid) -> bool {
        self.pid == pid && self.check == u64::from(pid).wrapping_mul(GOLDEN)
    }
}

/// One run over an RCU `R`.
pub struct Torture<R: ListRcu> {
    list: ProcessList<Payload, R>,
    cpus: usize,
    share: u64,
    check_payload: bool,
    next_pid: AtomicU32,
    done: AtomicUsize,
    completed_at_start: u64,
    rounds: AtomicU64,
    walks: AtomicU64,
    nodes: AtomicU64,
    lookups: AtomicU64,
    inserts: AtomicU64,
    removes: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
    stale: AtomicU64,
}

/// What a run found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TortureReport {
    pub flavor: &'static str,
    pub cpus: usize,
    pub rounds: u64,
    pub walks: u64,
    /// Nodes visited by walks.
    pub nodes: u64,
    pub lookups: u64,
    pub inserts: u64,
    pub removes: u64,
    pub grace_periods: u64,
    /// Lookups that did not find a pid that was on the list.
    pub misses: u64,
    /// Payloads that did not belong to their pid.
    pub corrupt: u64,
    /// Pids a CPU still found right after it removed them itself.
    pub stale: u64,
    pub poison: PoisonReport,
    /// The list after `finish`: empty, everything removed and freed.
    pub stats: ProcListStats,
}

impl TortureReport {
    pub fn passed(&self) -> bool {
        self.poison.sightings == 0 && self.misses == 0 && self.corrupt == 0 && self.stale == 0
    }

    /// The poison check fired: what a broken RCU must produce.
    pub fn caught(&self) -> bool {
        self.poison.sightings > 0
    }
}

impl fmt::Display for TortureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "proclist-torture: {}: {} CPUs, {} rounds, {} walks ({} nodes), {} lookups, \
             {} inserts, {} removes, {} grace periods",
            self.flavor,
            self.cpus,
            self.rounds,
            self.walks,
            self.nodes,
            self.lookups,
            self.inserts,
            self.removes,
            self.grace_periods
        )?;
        writeln!(
            f,
            "proclist-torture: {} misses, {} corrupt payloads, {} stale finds, {}",
            self.misses, self.corrupt, self.stale, self.poison
        )?;
        let s = &self.stats;
        writeln!(
            f,
            "proclist-torture: list after: {} left, {} inserted, {} removed, {} retired, \
             {} freed from quarantine",
            s.len, s.inserted, s.removed, s.retired, s.freed
        )?;
        if self.passed() {
            write!(f, "proclist-torture: {}: PASS", self.flavor)
        } else {
            write!(f, "!!! proclist-torture: {}: FAIL", self.flavor)
        }
    }
}

/// Per-CPU tallies, added to the shared ones once at the end.
#[derive(Default)]
struct Tally {
    rounds: u64,
    walks: u64,
    nodes: u64,
    lookups: u64,
    inserts: u64,
    removes: u64,
    misses: u64,
    corrupt: u64,
    stale: u64,
}

impl<R: ListRcu> Torture<R> {
    /// A run on CPUs `0..cpus`, each doing `share` rounds (more while others finish).
    /// `check_payload`: readers read payloads (never with a broken RCU). `quarantine`:
    /// poisoned nodes kept before the oldest is freed.
    pub fn new(rcu: R, cpus: usize, share: u64, check_payload: bool, quarantine: usize) -> Self {
        let completed_at_start = rcu.completed();
        let list = ProcessList::with_quarantine(rcu, quarantine);
        for pid in 1..=STABLE {
            assert!(
                list.insert(pid, Payload::new(pid)).is_ok(),
                "pid {pid} twice"
            );
        }
        Torture {
            list,
            cpus,
            share,
            check_payload,
            next_pid: AtomicU32::new(FIRST_FRESH),
            done: AtomicUsize::new(0),
            completed_at_start,
            rounds: AtomicU64::new(0),
            walks: AtomicU64::new(0),
            nodes: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            removes: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    pub fn list(&self) -> &ProcessList<Payload, R> {
        &self.list
    }

    /// Pids handed out so far: `FIRST_FRESH..next_fresh()`.
    pub fn next_fresh(&self) -> Pid {
        self.next_pid.load(Ordering::Relaxed)
    }

    /// This CPU's part (every CPU reads and writes). Returns once every CPU did its share
    /// (or this one reached its cap) and its own pids are removed. The callbacks of its
    /// removals may still be queued: its tick runs them (`finish` waits for them all).
    pub fn run_cpu(&self, cpu: usize) {
        assert!(cpu < self.cpus, "cpu{cpu} is not part of this run");
        let rcu = self.list.rcu();
        rcu.cpu_online(cpu);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ ((cpu as u64 + 1) * 0x1234_5678_9abc_def1));
        let mut own = [0 as Pid; OWN];
        let mut n_own = 0;
        let mut t = Tally::default();
        let mut counted = false;
        loop {
            {
                let g = self.list.read_lock_on(cpu);
                self.walk(&g, &mut rng, &mut t);
            }
            for _ in 0..2 {
                let stable = 1 + (rng.next() % u64::from(STABLE)) as Pid;
                self.look(cpu, stable, &mut t);
                if n_own > 0 {
                    let mine = own[(rng.next() % n_own as u64) as usize];
                    self.look(cpu, mine, &mut t);
                }
            }
            if n_own < OWN {
                let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
                if self.list.insert(pid, Payload::new(pid)).is_err() {
                    t.misses += 1; // a fresh pid cannot be on the list
                }
                own[n_own] = pid;
                n_own += 1;
                t.inserts += 1;
            } else {
                let pid = own[0];
                own.copy_within(1.., 0);
                n_own -= 1;
                if !self.list.remove_on(cpu, pid) {
                    t.misses += 1;
                }
                t.removes += 1;
                let g = self.list.read_lock_on(cpu);
                if self.list.lookup(pid, &g).is_some() {
                    t.stale += 1;
                }
            }
            // Between read-side sections this CPU is quiescent: report it, run callbacks.
            rcu.tick(cpu);
            t.rounds += 1;
            if !counted && t.rounds >= self.share {
                counted = true;
                self.done.fetch_add(1, Ordering::AcqRel);
            }
            if counted
                && (self.done.load(Ordering::Acquire) >= self.cpus
                    || t.rounds >= self.share * CAP_FACTOR)
            {
                break;
            }
        }
        for &pid in &own[..n_own] {
            if !self.list.remove_on(cpu, pid) {
                t.misses += 1;
            }
            t.removes += 1;
        }
        for (total, n) in [
            (&self.rounds, t.rounds),
            (&self.walks, t.walks),
            (&self.nodes, t.nodes),
            (&self.lookups, t.lookups),
            (&self.inserts, t.inserts),
            (&self.removes, t.removes),
            (&self.misses, t.misses),
            (&self.corrupt, t.corrupt),
            (&self.stale, t.stale),
        ] {
            total.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn walk(&self, g: &RcuReadGuard<'_>, rng: &mut Rng, t: &mut Tally) {
        t.walks += 1;
        for (pid, payload) in self.list.iter(g) {
            t.nodes += 1;
            if self.check_payload && !payload.is_for(pid) {
                t.corrupt += 1;
            }
            // Dawdle now and then, with the next node's address already loaded: the time
            // a writer needs to unlink (and a broken RCU to free) the node we go to next.
            let r = rng.next();
            if r.is_multiple_of(4) {
                for _ in 0..(r >> 40) % 64 {
                    core::hint::spin_loop();
                }
            }
            if r % 256 == 1 {
                crate::arch::cpu_relax(); // on the host this gives the core away
            }
        }
    }

    fn look(&self, cpu: usize, pid: Pid, t: &mut Tally) {
        let g = self.list.read_lock_on(cpu);
        t.lookups += 1;
        match self.list.lookup(pid, &g) {
            Some(payload) if self.check_payload && !payload.is_for(pid) => t.corrupt += 1,
            Some(_) => {}
            None => t.misses += 1,
        }
    }

    /// After every CPU's `run_cpu`: remove the stable pids (on behalf of `cpu`, the
    /// caller's), wait for all callbacks, empty the quarantine, and report.
    pub fn finish(&self, cpu: usize) -> TortureReport {
        let mut misses = 0;
        for pid in 1..=STABLE {
            if !self.list.remove_on(cpu, pid) {
                misses += 1;
            }
        }
        self.list.flush_quarantine(Some(cpu));
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TortureReport {
            flavor: self.list.rcu().name(),
            cpus: self.cpus,
            rounds: load(&self.rounds),
            walks: load(&self.walks),
            nodes: load(&self.nodes),
            lookups: load(&self.lookups),
            inserts: load(&self.inserts),
            removes: load(&self.removes),
            grace_periods: self.list.rcu().completed() - self.completed_at_start,
            misses: load(&self.misses) + misses,
            corrupt: load(&self.corrupt),
            stale: load(&self.stale),
            poison: self.list.poison_report(),
            stats: self.list.stats(),
        }
    }

    /// Run on threads playing CPUs `0..cpus`, then `finish` (host only). Each thread takes
    /// its CPU offline when done, so later grace periods do not wait for a CPU nobody plays.
    #[cfg(not(target_os = "none"))]
    pub fn run_on_threads(&self) -> TortureReport
    where
        R: Send,
    {
        let start = std::sync::Barrier::new(self.cpus);
        std::thread::scope(|s| {
            for cpu in 0..self.cpus {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    self.run_cpu(cpu);
                    // Nobody ticks this CPU once its thread ends: run its callbacks (and
                    // wait for everyone's queued so far), then leave.
                    self.list.rcu().callbacks_barrier(Some(cpu));
                    self.list.rcu().cpu_offline(cpu);
                });
            }
        });
        self.finish(0)
    }
}
