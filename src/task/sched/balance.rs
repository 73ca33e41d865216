//! Load balancing: an idle CPU pulls work from a busy one (chapter 16, "Scheduling on several
//! CPUs").
//!
//! `spawn` queues a new task on the CPU that spawns it, so without balancing one CPU would run
//! everything. Instead, an idle CPU pulls one waiting task from the busiest CPU (`pull`, from
//! the idle loop): bounded work, one task per look, never a task still switching away (its
//! registers and stack are in use until its old CPU finishes the switch) or pinned elsewhere.
//! The puller never holds two run-queue locks at once, so two CPUs pulling from each other
//! cannot deadlock.

use core::sync::atomic::Ordering;

use super::runqueue::SCHED;

/// An idle CPU's load balancing: take one waiting task from the CPU with the most, if any may
/// run here and is not still switching away. Returns whether a task was pulled. Bounded: one
/// look at each CPU's count, at most one queue locked (one another CPU holds is skipped, not
/// waited for), one task.
pub(super) fn pull(me: usize) -> bool {
    let busiest = crate::smp::online_cpus()
        .filter(|&c| c != me)
        .map(|c| (c, SCHED.for_cpu(c).queued.load(Ordering::Relaxed)))
        .filter(|&(_, n)| n > 0)
        .max_by_key(|&(_, n)| n);
    let Some((victim, _)) = busiest else {
        return false;
    };
    let stolen = {
        let v = SCHED.for_cpu(victim);
        // Never wait for a busy victim: its owner or another idle CPU has the queue, and this
        // idle loop comes back soon. With 63 idle CPUs pulling from the one busy CPU, waiting
        // here queued them all on one lock, for seconds when vCPUs outnumber host cores.
        let Some(mut q) = v.queue.try_lock() else {
            return false;
        };
        let t = q.steal_for(me, |t| !t.on_cpu.load(Ordering::Acquire));
        if let Some(t) = &t {
            // Under the victim's lock: from here a wake looks for it on our CPU.
            t.cpu.store(me as u32, Ordering::Relaxed);
        }
        v.queued.store(q.len(), Ordering::Release);
        t
    };
    let Some(task) = stolen else {
        return false;
    };
    task.migrations.fetch_add(1, Ordering::Relaxed);
    let s = SCHED.for_cpu(me);
    s.counters.migrations.fetch_add(1, Ordering::Relaxed);
    let mut q = s.queue.lock();
    q.push(task);
    s.queued.store(q.len(), Ordering::Release);
    true
}
