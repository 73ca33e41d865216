//! A run queue: the tasks waiting for one CPU, first come first served (chapter 16,
//! "Scheduling on several CPUs").
//!
//! Round robin is the whole policy: `rotate` takes the first task this CPU may run and puts the
//! yielding one at the back, so N tasks that keep yielding run in a fixed cycle. A task whose
//! affinity excludes the CPU is passed over, not dropped (the load balancer of the next step
//! will move it). The queue is plain Rust over any `Queued` item: the host tests below drive it
//! with strings, the scheduler with `Arc<Task>`, always under the CPU's run-queue lock.

use alloc::collections::VecDeque;

use super::state::CpuMask;

/// What a run queue needs to know about an item.
pub trait Queued {
    /// The CPUs the item may run on.
    fn affinity(&self) -> CpuMask;
}

/// A FIFO of runnable tasks for one CPU.
pub struct RunQueue<T> {
    tasks: VecDeque<T>,
}

impl<T: Queued> RunQueue<T> {
    pub const fn new() -> Self {
        RunQueue {
            tasks: VecDeque::new(),
        }
    }

    /// Make room for `n` more tasks now, so that queueing does not allocate later.
    pub fn reserve(&mut self, n: usize) {
        self.tasks.reserve(n);
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Add a runnable task at the back.
    pub fn push(&mut self, task: T) {
        self.tasks.push_back(task);
    }

    /// Take the first task that may run on `cpu`.
    pub fn pop_for(&mut self, cpu: usize) -> Option<T> {
        let i = self.tasks.iter().position(|t| t.affinity().contains(cpu))?;
        self.tasks.remove(i)
    }

    /// A yield: take the next task for `cpu` and, if there is one, queue `yielding` behind the
    /// rest. With nothing else to run, `yielding` comes back as `Err` and keeps the CPU.
    pub fn rotate(&mut self, cpu: usize, yielding: T) -> Result<T, T> {
        match self.pop_for(cpu) {
            Some(next) => {
                self.push(yielding);
                Ok(next)
            }
            None => Err(yielding),
        }
    }

    /// Take the first task that may run on `cpu` and that `movable` accepts: what an idle CPU
    /// pulls from a busy one (the load balancer passes over tasks still switching away).
    pub fn steal_for(&mut self, cpu: usize, movable: impl Fn(&T) -> bool) -> Option<T> {
        let i = self
            .tasks
            .iter()
            .position(|t| t.affinity().contains(cpu) && movable(t))?;
        self.tasks.remove(i)
    }

    /// The queued tasks, front first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.tasks.iter()
    }
}

impl<T: Queued> Default for RunQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct T(&'static str, CpuMask);
    impl Queued for T {
        fn affinity(&self) -> CpuMask {
            self.1
        }
    }
    fn t(name: &'static str) -> T {
        T(name, CpuMask::ALL)
    }

    #[test]
    fn fifo_order() {
        let mut q = RunQueue::new();
        for n in ["a", "b", "c"] {
            q.push(t(n));
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop_for(0), Some(t("a")));
        assert_eq!(q.pop_for(0), Some(t("b")));
        assert_eq!(q.pop_for(0), Some(t("c")));
        assert_eq!(q.pop_for(0), None);
        assert!(q.is_empty());
    }

    /// The scheduler's yield, simulated: the boot flow spawns A, B, C and yields; each task,
    /// when it runs, records its name and yields again. The order must be the exact cycle the
    /// in-kernel test task_yield_interleaves_exactly expects.
    #[test]
    fn yielding_tasks_run_in_an_exact_cycle() {
        let mut q = RunQueue::new();
        for n in ["A", "B", "C"] {
            q.push(t(n));
        }
        let mut running = t("main");
        let mut order = String::new();
        for _ in 0..12 {
            running = match q.rotate(0, running) {
                Ok(next) => next,
                Err(same) => same,
            };
            order.push_str(running.0);
        }
        assert_eq!(order, "ABCmainABCmainABCmain");
    }

    #[test]
    fn a_lone_task_keeps_the_cpu() {
        let mut q: RunQueue<T> = RunQueue::new();
        assert_eq!(q.rotate(0, t("only")), Err(t("only")));
        assert!(q.is_empty(), "a failed yield queues nothing");
    }

    #[test]
    fn stealing_skips_pinned_and_unmovable_tasks() {
        let mut q = RunQueue::new();
        q.push(T("pinned0", CpuMask::only(0)));
        q.push(t("busy"));
        q.push(t("free"));
        assert_eq!(q.steal_for(1, |x| x.0 != "busy"), Some(t("free")));
        assert_eq!(q.steal_for(1, |x| x.0 != "busy"), None);
        assert_eq!(q.len(), 2, "what may not move stays queued");
    }

    #[test]
    fn tasks_pinned_elsewhere_are_passed_over_not_lost() {
        let mut q = RunQueue::new();
        q.push(T("pinned1", CpuMask::only(1)));
        q.push(t("any"));
        assert_eq!(q.pop_for(0), Some(t("any")));
        assert_eq!(q.pop_for(0), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_for(1), Some(T("pinned1", CpuMask::only(1))));
    }
}
