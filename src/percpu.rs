//! Per-CPU data: each CPU finds its own area through TPIDR_EL1 (chapter 3, "Waking the other
//! cores"; the per-CPU chapter builds on it).
//!
//! Every CPU has a `CpuArea` (logical id, MPIDR, stack bounds, state, counters), padded to a
//! cache line so that two CPUs updating their own areas never fight over one line. The boot
//! path puts the area's address in TPIDR_EL1, a register each CPU has its own copy of, so
//! `this_cpu()` is one register read: no lookup, no lock. `PerCpu<T>` gives any subsystem the
//! same shape: one cache-line-padded slot per CPU, indexed by the current CPU's id.

use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::config::{CACHE_LINE, MAX_CPUS};
use crate::cpumask::{AtomicCpuMask, CpuMask};

/// What a CPU knows about itself.
#[repr(C, align(64))]
pub struct CpuArea {
    /// Logical CPU id: the position of this CPU's node in the device tree.
    pub id: usize,
    pub mpidr: AtomicU64,
    /// Exception level the CPU entered the kernel at (2 on the Pi and with virtualization=on).
    pub entry_el: AtomicU64,
    pub stack_bottom: AtomicUsize,
    pub stack_top: AtomicUsize,
    /// A copy of the running task's word (src/sync/preempt.rs), kept by `arch::set_task_word`:
    /// the entry from user mode reloads TPIDR_EL0 from here, since the user owns that register
    /// while it runs.
    pub task_word: AtomicUsize,
    /// Where the CPU is in its life: see `CpuState`. Changed only by compare-exchange once the
    /// CPU has been asked to start, so the CPU and the boot CPU's timeout cannot both win.
    state: AtomicU8,
    /// Work items run through `smp::on_each_cpu`.
    pub calls_run: AtomicU64,
}

const _: () = assert!(core::mem::align_of::<CpuArea>() == CACHE_LINE);
// The exception vectors read these fields by offset (src/arch/aarch64/exception.rs, user.rs),
// and `set_task_word` writes the last one (cpu.rs).
#[cfg(target_os = "none")]
const _: () = {
    use crate::arch::aarch64::exception::{
        PERCPU_ID_OFFSET, PERCPU_STACK_BOTTOM_OFFSET, PERCPU_TASK_WORD_OFFSET,
    };
    assert!(core::mem::offset_of!(CpuArea, id) == PERCPU_ID_OFFSET);
    assert!(core::mem::offset_of!(CpuArea, stack_bottom) == PERCPU_STACK_BOTTOM_OFFSET);
    assert!(core::mem::offset_of!(CpuArea, task_word) == PERCPU_TASK_WORD_OFFSET);
};

impl CpuArea {
    const fn new(id: usize) -> Self {
        CpuArea {
            id,
            mpidr: AtomicU64::new(0),
            entry_el: AtomicU64::new(0),
            stack_bottom: AtomicUsize::new(0),
            stack_top: AtomicUsize::new(0),
            task_word: AtomicUsize::new(0),
            state: AtomicU8::new(CpuState::Off as u8),
            calls_run: AtomicU64::new(0),
        }
    }

    pub fn is_online(&self) -> bool {
        self.state.load(Ordering::Acquire) == CpuState::Online as u8
    }

    pub fn state(&self) -> CpuState {
        match self.state.load(Ordering::Acquire) {
            1 => CpuState::Starting,
            2 => CpuState::Online,
            3 => CpuState::Abandoned,
            _ => CpuState::Off,
        }
    }

    /// The boot CPU, about to start this CPU.
    pub fn mark_starting(&self) {
        self.state
            .store(CpuState::Starting as u8, Ordering::Relaxed);
    }

    /// The boot CPU, when starting this CPU failed outright.
    pub fn mark_off(&self) {
        self.state.store(CpuState::Off as u8, Ordering::Relaxed);
    }

    /// This CPU, first thing in Rust: claim to be online. False if the boot CPU had already
    /// given up on it, in which case it must not run the kernel.
    pub fn claim_online(&self) -> bool {
        let claimed = self
            .state
            .compare_exchange(
                CpuState::Starting as u8,
                CpuState::Online as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if claimed {
            ONLINE.set(self.id, Ordering::Release);
        }
        claimed
    }

    /// The boot CPU marks itself online: nobody started it, so nobody can give up on it.
    pub fn mark_boot_cpu_online(&self) {
        self.state.store(CpuState::Online as u8, Ordering::Release);
        ONLINE.set(self.id, Ordering::Release);
    }

    /// The boot CPU, after its wait timed out: give up on this CPU. False if the CPU came online
    /// at the last moment, in which case it counts as online.
    pub fn abandon(&self) -> bool {
        self.state
            .compare_exchange(
                CpuState::Starting as u8,
                CpuState::Abandoned as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The boot CPU, done waiting for this CPU (on time or not): keep it or give up on it. True
    /// if the CPU is online, and then its bit is already in `online_mask()`; false if it is now
    /// abandoned (or was never started).
    ///
    /// The CPU sets its mask bit a few instructions after its claim wins, and a host can
    /// deschedule a vCPU between the two. The boot CPU counts the mask right after this, so
    /// seeing `Online` is not enough: it waits for the bit. Without the wait, a busy host once
    /// printed `3/4 CPUs online` and then let the fourth CPU run the kernel anyway.
    pub fn keep_or_abandon(&self) -> bool {
        if self.abandon() || !self.is_online() {
            return false;
        }
        // Bounded by the claimant's next few instructions: its claim has already succeeded.
        while !ONLINE.contains(self.id, Ordering::Acquire) {
            core::hint::spin_loop();
        }
        true
    }

    /// True if `addr` lies inside this CPU's stack.
    pub fn stack_contains(&self, addr: usize) -> bool {
        (self.stack_bottom.load(Ordering::Relaxed)..self.stack_top.load(Ordering::Relaxed))
            .contains(&addr)
    }
}

static CPU_AREAS: [CpuArea; MAX_CPUS] = {
    let mut areas = [const { CpuArea::new(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        areas[i] = CpuArea::new(i);
        i += 1;
    }
    areas
};

/// The CPUs whose state is `Online`, kept beside the areas so that "every online CPU" is a walk
/// over a mask (one step per online CPU) rather than over all `MAX_CPUS` areas. A CPU's bit is
/// set right after its state becomes `Online`, and never cleared (no CPU goes offline yet).
static ONLINE: AtomicCpuMask = AtomicCpuMask::new(CpuMask::EMPTY);

/// The online CPUs.
pub fn online_mask() -> CpuMask {
    ONLINE.load(Ordering::Acquire)
}

/// The area of logical CPU `id`.
pub fn cpu(id: usize) -> &'static CpuArea {
    &CPU_AREAS[id]
}

/// How many CPUs this machine can have: the device tree's count, set once at boot before any
/// other CPU starts. Until then, and on the host (where tests play any id), every slot up to
/// `MAX_CPUS`. Statistics walk this many slots, not `MAX_CPUS`: a 4-CPU board built for 64
/// would otherwise sum sixty zeros for every `cpus` or `lockstat`.
static POSSIBLE: AtomicUsize = AtomicUsize::new(MAX_CPUS);

/// The number of CPU slots that can ever be in use (see `set_possible_cpus`).
#[inline]
pub fn possible_cpus() -> usize {
    POSSIBLE.load(Ordering::Relaxed)
}

/// Boot's count of the CPUs the tree lists (at least 1, at most `MAX_CPUS`). Called before the
/// other CPUs start, so every reader sees the final value; ids at or above it never come online.
pub fn set_possible_cpus(count: usize) {
    POSSIBLE.store(count.clamp(1, MAX_CPUS), Ordering::Relaxed);
}

/// All areas that can be in use, online or not.
pub fn all_cpus() -> impl Iterator<Item = &'static CpuArea> {
    CPU_AREAS[..possible_cpus()].iter()
}

/// The address of CPU `id`'s area: what its TPIDR_EL1 holds.
pub fn area_address(id: usize) -> usize {
    &CPU_AREAS[id] as *const CpuArea as usize
}

/// Make the calling CPU logical CPU `id` (writes TPIDR_EL1).
pub fn install(id: usize) {
    crate::arch::set_percpu_pointer(area_address(id));
    // TPIDR_EL0 holds garbage after reset: point it at this CPU's preempt count.
    crate::sync::preempt::use_cpu_count(id);
}

/// The calling CPU's area, or None before `install` ran on it.
#[inline]
pub fn try_this_cpu() -> Option<&'static CpuArea> {
    let p = crate::arch::percpu_pointer();
    // On the target TPIDR_EL1 holds 0 or an area's address: boot.rs writes 0 or the address
    // `start_secondaries` put in the boot block, and `install` the address it computed. So a
    // non-zero value is trusted as it is, with no range check: this runs in every lock and
    // every RCU reader. Host tests write arbitrary values (a thread playing a CPU holder), so
    // the host keeps the checked path below.
    #[cfg(target_os = "none")]
    {
        if p == 0 {
            return None;
        }
        // SAFETY: per the above, `p` is the address of an element of `CPU_AREAS`, a static.
        Some(unsafe { &*(p as *const CpuArea) })
    }
    #[cfg(not(target_os = "none"))]
    checked_area(p)
}

/// The area at `p`, if `p` is an area's address.
#[cfg(not(target_os = "none"))]
fn checked_area(p: usize) -> Option<&'static CpuArea> {
    let base = CPU_AREAS.as_ptr() as usize;
    let end = base + core::mem::size_of_val(&CPU_AREAS);
    if p < base || p >= end || !(p - base).is_multiple_of(core::mem::size_of::<CpuArea>()) {
        return None;
    }
    Some(&CPU_AREAS[(p - base) / core::mem::size_of::<CpuArea>()])
}

/// The calling CPU's area.
///
/// # Panics
/// If this CPU has no area yet: per-CPU setup is part of every CPU's boot path, so this is a
/// bug in the boot order, not a runtime condition.
#[inline]
pub fn this_cpu() -> &'static CpuArea {
    try_this_cpu().expect("this_cpu() before percpu::install() on this CPU")
}

/// The calling CPU's logical id, if it has one yet.
#[inline]
pub fn current_id() -> Option<usize> {
    try_this_cpu().map(|c| c.id)
}

/// The logical id of the CPU whose TPIDR_EL1 value is `pointer` (as SpinLock records holders).
pub fn id_of_pointer(pointer: usize) -> Option<usize> {
    let offset = pointer.checked_sub(area_address(0))?;
    let id = offset / core::mem::size_of::<CpuArea>();
    (id < MAX_CPUS && area_address(id) == pointer).then_some(id)
}

/// A CPU's life at boot: Off -> Starting (boot CPU) -> Online (the CPU itself) or Abandoned
/// (the boot CPU, after its timeout). Only one of the last two can happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CpuState {
    Off = 0,
    Starting = 1,
    Online = 2,
    Abandoned = 3,
}

/// One value per CPU, each on its own cache line.
#[repr(C, align(64))]
pub struct CacheAligned<T>(pub T);

/// A `T` for every CPU. `get` is this CPU's; `for_cpu` reaches another CPU's (so `T` is
/// usually an atomic or otherwise `Sync`).
pub struct PerCpu<T> {
    slots: [CacheAligned<T>; MAX_CPUS],
}

impl<T> PerCpu<T> {
    /// Build from one padded value per CPU:
    /// `PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS])`.
    pub const fn new(slots: [CacheAligned<T>; MAX_CPUS]) -> Self {
        PerCpu { slots }
    }

    /// This CPU's value.
    #[inline]
    pub fn get(&self) -> &T {
        &self.slots[this_cpu().id].0
    }

    /// CPU `id`'s value.
    pub fn for_cpu(&self, id: usize) -> &T {
        &self.slots[id].0
    }

    /// Every possible CPU's value, in id order (`possible_cpus` of them: no CPU beyond those
    /// ever writes its slot).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots[..possible_cpus()].iter().map(|s| &s.0)
    }
}

/// Host tests play CPUs: a thread that calls `install(id)` shares CPU `id`'s area, preempt count
/// and per-CPU slots (MCS nodes, lock statistics) with every other thread playing `id`, and the
/// test harness runs tests at once. So every test that plays a CPU holds this guard for its whole
/// run (or around each `as_cpu`-style call), and no two of them play at the same time. Taken by
/// the test's own thread, never by the threads it spawns, so it cannot deadlock them.
#[cfg(all(test, not(loom)))]
pub(crate) fn playing_cpus() -> std::sync::MutexGuard<'static, ()> {
    static PLAYING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that panicked while playing (should_panic ones do) leaves nothing half-done that
    // the next test would trip over: its threads have ended.
    PLAYING.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn each_thread_sees_its_own_area() {
        let _cpus = crate::percpu::playing_cpus();
        let handles: Vec<_> = (0..4)
            .map(|id| {
                std::thread::spawn(move || {
                    install(id);
                    assert_eq!(this_cpu().id, id);
                    assert_eq!(current_id(), Some(id));
                    assert_eq!(id_of_pointer(crate::arch::percpu_pointer()), Some(id));
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn a_late_cpu_and_the_timeout_cannot_both_win() {
        let area = CpuArea::new(5);
        area.mark_starting();
        assert!(
            area.abandon(),
            "the timeout wins while the CPU has not claimed"
        );
        assert!(
            !area.claim_online(),
            "a CPU that arrives after being abandoned must park"
        );
        assert_eq!(area.state(), CpuState::Abandoned);
        let area = CpuArea::new(6);
        area.mark_starting();
        assert!(area.claim_online());
        assert!(
            !area.abandon(),
            "a CPU that made it just in time stays online"
        );
        assert!(area.is_online());
    }

    #[test]
    fn a_cpu_is_kept_only_once_it_is_in_the_online_mask() {
        // The window between a CPU's claim and its mask bit, held open: the claim is made by
        // hand, and the bit arrives from another thread 50 ms later.
        let area: &'static CpuArea = Box::leak(Box::new(CpuArea::new(11)));
        area.mark_starting();
        area.state.store(CpuState::Online as u8, Ordering::Release);
        assert!(!online_mask().contains(11));
        let late_bit = std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            ONLINE.set(11, Ordering::Release);
        });
        assert!(area.keep_or_abandon(), "a CPU that claimed in time is kept");
        assert!(
            online_mask().contains(11),
            "kept, so the count that follows must include it"
        );
        late_bit.join().unwrap();

        let area = CpuArea::new(12);
        area.mark_starting();
        assert!(
            !area.keep_or_abandon(),
            "a CPU that never claimed is given up"
        );
        assert!(!area.claim_online(), "and parks if it arrives later");
        assert!(!online_mask().contains(12));
        let area = CpuArea::new(13);
        assert!(!area.keep_or_abandon(), "a CPU never started is not kept");
    }

    #[test]
    fn no_area_before_install() {
        std::thread::spawn(|| assert!(try_this_cpu().is_none()))
            .join()
            .unwrap();
    }

    #[test]
    fn per_cpu_slots_sit_on_separate_cache_lines() {
        let _cpus = crate::percpu::playing_cpus();
        let counters: PerCpu<AtomicU64> =
            PerCpu::new([const { CacheAligned(AtomicU64::new(0)) }; MAX_CPUS]);
        let a = counters.for_cpu(0) as *const _ as usize;
        let b = counters.for_cpu(1) as *const _ as usize;
        assert!(b - a >= CACHE_LINE);
        assert_eq!(a % CACHE_LINE, 0);
        std::thread::spawn(move || {
            install(3);
            counters.get().fetch_add(7, Ordering::Relaxed);
            let values: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            let mut expected = [0; MAX_CPUS];
            expected[3] = 7;
            assert_eq!(values, expected);
        })
        .join()
        .unwrap();
    }
}
